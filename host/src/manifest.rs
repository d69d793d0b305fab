//! The build manifest (`build.json`): which image this is.
//!
//! `ze appliance build` writes it twice: beside the image with the image's
//! sha256 and its block map's, and baked into the image at
//! `/perm/ze/build.json` without them (the digest of an image cannot be
//! inside the image).

use serde::{Deserialize, Serialize};

/// Where an appliance keeps its baked manifest.
pub const BAKED_PATH: &str = "/perm/ze/build.json";
/// The environment variable that overrides [`BAKED_PATH`].
pub const PATH_ENV: &str = "ZE_BUILD_JSON";

/// What `build.json` says about an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Manifest {
    /// The image file name, `ze-<YYYYMMDD-HHMMSS>.img`.
    pub image: String,
    /// When it was built, `YYYYMMDD-HHMMSS` (UTC).
    pub built: String,
    /// The appliance (`ze appliance init <name>`) it was built from.
    pub appliance: String,
    /// The version of the ze that built it.
    pub ze_version: String,
    /// `amd64` or `arm64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// The image's sha256, hex; only in the external copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The sha256 of `<image>.bmap`, the image's block map, hex; only in
    /// the external copy, and absent from manifests older than the map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmap_sha256: Option<String>,
}

impl Manifest {
    /// Parse `build.json` text.
    pub fn parse(text: &str) -> Result<Manifest, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The `image:` and `appliance:` lines of `ze version`.
    pub fn version_lines(&self) -> String {
        format!(
            "image: {} (built {})\nappliance: {}\n",
            self.image, self.built, self.appliance
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a9_version_lines_in_the_spec_form() {
        let m = Manifest::parse(
            r#"{"image":"ze-20260617-160000.img","built":"20260617-160000","appliance":"prod","ze-version":"0.1.0"}"#,
        )
        .unwrap();
        assert_eq!(
            m.version_lines(),
            "image: ze-20260617-160000.img (built 20260617-160000)\nappliance: prod\n"
        );
        assert!(m.sha256.is_none());
        assert!(m.bmap_sha256.is_none(), "old manifests have no map digest");
        let text = serde_json::to_string(&m).unwrap();
        assert!(!text.contains("sha256"));
        let external = Manifest {
            sha256: Some("ab".into()),
            bmap_sha256: Some("cd".into()),
            ..m
        };
        let text = serde_json::to_string(&external).unwrap();
        assert!(
            text.contains(r#""sha256":"ab","bmap-sha256":"cd""#),
            "{text}"
        );
        assert_eq!(Manifest::parse(&text).unwrap(), external);
    }
}
