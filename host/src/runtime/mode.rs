//! Which configuration `ze start` runs (spec "Bootstrap Mode", checklist
//! B1, B5, B6): the committed `file/active/ze.conf`, else the seed
//! `file/template/ze.conf`, else a generated bootstrap config.

use super::bootstrap::{self, Link};
use crate::{
    config::brace,
    zefs::{Zefs, keys},
};
use anyhow::Context;
use std::fmt;

/// Where the running configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `file/active/ze.conf`: committed by an operator.
    Active,
    /// `file/template/ze.conf`: the seed config baked into the image.
    Template,
    /// Generated from the interfaces: no config in the database.
    Bootstrap,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Active => "active",
            Source::Template => "template",
            Source::Bootstrap => "bootstrap",
        })
    }
}

/// The configuration chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Where it came from.
    pub source: Source,
    /// The brace text.
    pub text: String,
}

/// Choose the configuration. `discover` lists the interfaces; it is only
/// called in bootstrap mode. A stored config that `validate` rejects (say,
/// written by a newer ze) is skipped with a warning rather than locking
/// the operator out: the next source is tried.
pub fn choose(
    db: &Zefs,
    discover: impl FnOnce() -> anyhow::Result<Vec<Link>>,
    validate: impl Fn(&str) -> anyhow::Result<()>,
    warn: &mut dyn FnMut(String),
) -> anyhow::Result<Chosen> {
    for (key, source) in [
        (keys::ACTIVE_CONFIG, Source::Active),
        (keys::TEMPLATE_CONFIG, Source::Template),
    ] {
        let Some(bytes) = db.get(key) else {
            continue;
        };
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t.to_string(),
            Err(_) => {
                warn(format!("{key} is not UTF-8; ignoring it"));
                continue;
            }
        };
        match validate(&text) {
            Ok(()) => return Ok(Chosen { source, text }),
            Err(e) => warn(format!(
                "{key} is not a valid configuration ({e:#}); ignoring it"
            )),
        }
    }
    let links = discover().context(
        "bootstrap mode needs netlink to discover the interfaces, and it is not available \
         (ze has no --web-only mode; commit a configuration instead)",
    )?;
    let doc = bootstrap::config_for(&links)?;
    Ok(Chosen {
        source: Source::Bootstrap,
        text: brace::write(&doc),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::bootstrap::{ARPHRD_ETHER, LinkKind};

    fn eth0() -> anyhow::Result<Vec<Link>> {
        Ok(vec![Link {
            name: "eth0".into(),
            kind: LinkKind::classify(ARPHRD_ETHER, None),
        }])
    }

    fn any(_: &str) -> anyhow::Result<()> {
        Ok(())
    }

    #[test]
    fn b1_bootstrap_when_the_database_has_no_config() {
        let db = Zefs::new();
        let c = choose(&db, eth0, any, &mut |_| {}).unwrap();
        assert_eq!(c.source, Source::Bootstrap);
        assert!(c.text.contains("interface eth0;"));
    }

    #[test]
    fn b6_active_beats_template_beats_bootstrap() {
        let mut db = Zefs::new();
        db.insert(keys::TEMPLATE_CONFIG, "sshserver { }\n").unwrap();
        let c = choose(&db, || panic!("no discovery needed"), any, &mut |_| {}).unwrap();
        assert_eq!(
            (c.source, c.text.as_str()),
            (Source::Template, "sshserver { }\n")
        );
        db.insert(keys::ACTIVE_CONFIG, "dhcpclient { }\n").unwrap();
        let c = choose(&db, || panic!("no discovery needed"), any, &mut |_| {}).unwrap();
        assert_eq!(
            (c.source, c.text.as_str()),
            (Source::Active, "dhcpclient { }\n")
        );
    }

    #[test]
    fn an_invalid_stored_config_falls_through_with_a_warning() {
        let mut db = Zefs::new();
        db.insert(keys::ACTIVE_CONFIG, "webserver { }\n").unwrap();
        let mut warnings = Vec::new();
        let c = choose(
            &db,
            eth0,
            |t| {
                if t.contains("webserver") {
                    anyhow::bail!("unknown plugin")
                } else {
                    Ok(())
                }
            },
            &mut |w| warnings.push(w),
        )
        .unwrap();
        assert_eq!(c.source, Source::Bootstrap);
        assert!(
            warnings[0].contains("file/active/ze.conf is not a valid configuration"),
            "{warnings:?}"
        );
    }

    #[test]
    fn b5_no_netlink_or_no_ethernet_is_a_clear_error() {
        let db = Zefs::new();
        let err = choose(&db, || anyhow::bail!("EPERM"), any, &mut |_| {}).unwrap_err();
        assert!(format!("{err:#}").contains("--web-only"), "{err:#}");
        let err = choose(&db, || Ok(vec![]), any, &mut |_| {}).unwrap_err();
        assert!(
            format!("{err:#}").contains("needs an ethernet interface"),
            "{err:#}"
        );
    }
}
