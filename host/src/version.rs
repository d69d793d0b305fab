//! The text `ze version` and the operator CLI's `show version` print:
//! version, build date and commit, and on an appliance the installed image
//! from its baked manifest (checklist A9).

use crate::{build, context::Context, manifest, timefmt};
use std::{io, path::PathBuf};

/// The text `ze version` prints.
pub fn text(ctx: &Context) -> String {
    let mut out = format!(
        "ze {} (built {})\ncommit: {}\n",
        build::VERSION,
        timefmt::rfc3339(build::epoch()),
        build::COMMIT
    );
    let path = match std::env::var_os(manifest::PATH_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => ctx.real(manifest::BAKED_PATH),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => match manifest::Manifest::parse(&text) {
            Ok(m) => out.push_str(&m.version_lines()),
            Err(e) => out.push_str(&format!(
                "image: unknown ({} is not valid: {e})\n",
                path.display()
            )),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => out.push_str(&format!(
            "image: unknown (cannot read {}: {e})\n",
            path.display()
        )),
    }
    out
}
