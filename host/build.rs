//! Stamp the build with its date and git commit for `ze version`.
//!
//! `SOURCE_DATE_EPOCH` (reproducible builds) wins over the clock; the commit
//! comes from `git rev-parse` and is `unknown` outside a git checkout.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // Where HEAD and the branch refs live, as git says: in a linked
    // worktree HEAD is under `.git/worktrees/<name>/` and the refs in the
    // main checkout's `.git`. (A path that does not exist would make cargo
    // rerun this script on every build.)
    let head = git(&["rev-parse", "--git-path", "HEAD"]);
    let common = git(&["rev-parse", "--git-common-dir"]);
    let watched = head.into_iter().chain(
        common
            .iter()
            .flat_map(|d| [format!("{d}/refs/heads"), format!("{d}/packed-refs")]),
    );
    for path in watched {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");

    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=ZE_BUILD_EPOCH={epoch}");

    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ZE_GIT_COMMIT={commit}");
}

/// What `git args` prints, trimmed; `None` outside a checkout or without git.
fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}
