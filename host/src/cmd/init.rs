//! `ze init`: create `database.zefs` with one admin user (checklist L6).

use crate::{cli::Init, context::Context, credentials, prompt, timefmt, zefs};
use anyhow::{Context as _, bail};
use std::os::unix::fs::MetadataExt;

/// Run `ze init`.
pub fn run(ctx: &Context, args: &Init) -> anyhow::Result<()> {
    let dir = ctx.config_dir(args.config.as_deref())?;
    let real_dir = ctx.real(&dir);
    if !real_dir.exists() {
        bail!(
            "config directory {} does not exist: run `ze install local` first, or pass --config DIR",
            dir.display()
        );
    }
    if !real_dir.is_dir() {
        bail!("config directory {} is not a directory", dir.display());
    }
    let db_path = dir.join(zefs::FILE_NAME);
    let real_db = ctx.real(&db_path);
    let old_owner = match std::fs::symlink_metadata(&real_db) {
        Ok(_) if !args.force => {
            bail!(
                "{} already exists: pass --force to replace it (its contents are lost)",
                db_path.display()
            );
        }
        Ok(meta) => Some((meta.uid(), meta.gid())),
        Err(_) => None,
    };

    let username = match &args.username {
        Some(u) => u.clone(),
        None if prompt::stdin_is_terminal() && !args.password_stdin => {
            credentials::username_from_terminal("Username: ")?
        }
        None => bail!("no terminal to ask on: pass --username NAME (and --password-stdin)"),
    };
    credentials::validate_username(&username)?;
    let password = if args.password_stdin {
        credentials::password_from_stdin("--password-stdin")?
    } else if prompt::stdin_is_terminal() {
        credentials::password_from_terminal()?
    } else {
        bail!(
            "no terminal to ask for the password: pass --password-stdin and write the password to standard input"
        );
    };

    let db = zefs::new_database(&username, &password, timefmt::now())?;
    let bytes = db.to_bytes();
    match old_owner {
        Some(owner) => crate::fsutil::write_atomic_owned(&real_db, &bytes, zefs::FILE_MODE, owner),
        None => crate::fsutil::write_atomic(&real_db, &bytes, zefs::FILE_MODE),
    }
    .with_context(|| format!("cannot write {}; nothing was changed", db_path.display()))?;
    println!(
        "{} {} with user {username} (role {})",
        if old_owner.is_some() {
            "replaced"
        } else {
            "created"
        },
        db_path.display(),
        zefs::ADMIN_ROLE
    );
    Ok(())
}
