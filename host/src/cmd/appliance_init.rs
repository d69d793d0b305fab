//! `ze appliance init <name>`: define an appliance (checklist A1, A2).

use crate::{
    appliance::{
        Appliance,
        config::{self, SEED_CONFIG_FILE, SshCredentials, TLS_CERT_FILE, TLS_KEY_FILE, dir_of},
        size::ByteSize,
        tls,
    },
    cli::ApplianceInit,
    credentials, fsutil, prompt, timefmt,
};
use anyhow::{Context, bail};
use std::{
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::Path,
};

/// The seed config `init` writes: what bootstrap mode would run, so a
/// fresh image is reachable the same way.
pub fn default_seed_config(name: &str) -> String {
    format!(
        r#"# Seed configuration of appliance "{name}", written by `ze appliance init`.
# `ze appliance build` checks its syntax and bakes it into the image's
# database as file/template/ze.conf; the appliance runs it until an
# operator commits a configuration of their own (`ze config edit`).
#
# As written it does what bootstrap mode does: a DHCP client on every
# ethernet interface (a dhcpclient block without `interface` lines takes
# every physical ethernet NIC), and SSH on every interface with the
# credentials from appliance.json.
dhcpclient {{
}}
sshserver {{
    listen 0.0.0.0:22;
}}
"#
    )
}

/// Run `ze appliance init`.
pub fn run(args: &ApplianceInit) -> anyhow::Result<()> {
    let dir = dir_of(&args.name)?;
    let json_path = dir.join(config::FILE_NAME);
    let previous = match fs::read_to_string(&json_path) {
        Ok(_) if !args.force => bail!(
            "{} already exists: pass --force to replace it (ze.conf, tls/ and the images are kept)",
            json_path.display()
        ),
        Ok(text) => Some(Appliance::parse(&text).unwrap_or_default()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!("cannot read {}: {e}", json_path.display()),
    };

    let mut appliance = previous.clone().unwrap_or_default();
    if let Some(arch) = args.arch {
        appliance.image.arch = arch;
    }
    if let Some(profile) = args.kernel_profile {
        appliance.image.kernel_profile = profile;
    }
    if let Some(size) = args.size {
        crate::appliance::disk::DiskLayout::plan(
            size.0,
            appliance.image.arch,
            crate::appliance::disk::Identities::placeholder(),
        )
        .context("--size")?;
        appliance.image.size_bytes = size.0;
    }

    let username = match &args.ssh_username {
        Some(u) => u.clone(),
        None if args.ssh_password_stdin => {
            bail!("--ssh-password-stdin takes standard input: pass --ssh-username NAME too")
        }
        None if prompt::stdin_is_terminal() => {
            credentials::username_from_terminal("SSH username: ")?
        }
        None => {
            bail!("no terminal to ask on: pass --ssh-username NAME and --ssh-password-file FILE")
        }
    };
    credentials::validate_username(&username).context("--ssh-username")?;
    let password = crate::cmd::ssh_password(
        args.ssh_password.as_deref(),
        args.ssh_password_file.as_deref(),
        args.ssh_password_stdin,
    )?;
    appliance.ssh = Some(SshCredentials {
        username: username.clone(),
        password_hash: credentials::hash_password(&password)?,
    });
    let seed_name = appliance
        .seed_config
        .clone()
        .unwrap_or_else(|| SEED_CONFIG_FILE.to_string());
    appliance.seed_config = Some(seed_name.clone());

    fs::create_dir_all(config::appliances_dir()?)?;
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => bail!("cannot create {}: {e}", dir.display()),
    }

    let mut out = std::io::stdout().lock();
    let seed_path = dir.join(&seed_name);
    let seed_note = if seed_path.exists() {
        "kept"
    } else {
        fsutil::write_atomic(
            &seed_path,
            default_seed_config(&args.name).as_bytes(),
            0o644,
        )
        .with_context(|| format!("cannot write {}", seed_path.display()))?;
        "new"
    };
    let tls_note = if dir.join(TLS_CERT_FILE).exists() && dir.join(TLS_KEY_FILE).exists() {
        "kept".to_string()
    } else {
        write_tls(&dir, &args.name)?
    };

    let mut text = serde_json::to_vec_pretty(&appliance)?;
    text.push(b'\n');
    fsutil::write_atomic(&json_path, &text, 0o600)
        .with_context(|| format!("cannot write {}", json_path.display()))?;

    writeln!(
        out,
        "{} {}",
        if previous.is_some() {
            "replaced"
        } else {
            "created"
        },
        json_path.display()
    )?;
    writeln!(
        out,
        "  image:        {}, kernel profile {}, {}",
        appliance.image.arch,
        appliance.image.kernel_profile,
        ByteSize(appliance.image.size_bytes)
    )?;
    writeln!(
        out,
        "  ssh:          {username} (password stored as a bcrypt hash)"
    )?;
    writeln!(out, "  seed config:  {} ({seed_note})", seed_path.display())?;
    writeln!(
        out,
        "  tls:          {} ({tls_note})",
        dir.join(TLS_CERT_FILE).display()
    )?;
    writeln!(out, "next: ze appliance build {}", args.name)?;
    Ok(())
}

fn write_tls(dir: &Path, name: &str) -> anyhow::Result<String> {
    let now = timefmt::now();
    let id = tls::self_signed(name, now)?;
    let tls_dir = dir.join("tls");
    fs::create_dir_all(&tls_dir)?;
    fs::set_permissions(&tls_dir, fs::Permissions::from_mode(0o700))?;
    fsutil::write_atomic(&dir.join(TLS_KEY_FILE), id.key_pem.as_bytes(), 0o600)?;
    fsutil::write_atomic(&dir.join(TLS_CERT_FILE), id.cert_pem.as_bytes(), 0o644)?;
    let (y, m, d) = timefmt::date(now);
    Ok(format!(
        "new, self-signed for {name}, valid until {:04}-{m:02}-{:02}",
        y + i64::from(tls::VALID_YEARS),
        d.min(28)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a1_the_default_seed_config_parses() {
        let text = default_seed_config("prod");
        let doc = crate::config::brace::parse(&text).unwrap();
        assert!(doc.get("sshserver").is_some());
        assert!(doc.get("dhcpclient").is_some());
    }
}
