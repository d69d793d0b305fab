//! What this binary is: version, build date and commit (set by build.rs).

/// The package version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit the binary was built from (`unknown` outside git).
pub const COMMIT: &str = env!("ZE_GIT_COMMIT");

/// When the binary was built, seconds since the UNIX epoch.
pub fn epoch() -> i64 {
    env!("ZE_BUILD_EPOCH").parse().unwrap_or(0)
}
