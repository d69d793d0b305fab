//! `ze machines list|show|add|reinstall|remove` (checklist F2): the
//! machine records of `ze install remote`, managed offline or while a
//! server runs (it reads changed records within a second). Every write
//! goes through `provision::machines::edit`, the writer the server uses
//! for the installed mark.

use crate::{
    cli::{
        MachinesAdd, MachinesList, MachinesReinstall, MachinesRemove, MachinesShow, MachinesStatus,
    },
    credentials,
    provision::{
        mac::Mac,
        machines::{self, Edit, Edited, Install, Record, Ssh, record},
        status::{Machine, human_bytes, persist},
    },
    timefmt::rfc3339,
};
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};

/// The records and state directories of `--pxe-dir` and `--machines`.
fn dirs(pxe_dir: &Path, machines: &Option<PathBuf>) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    let pxe = cwd.join(pxe_dir);
    let records = machines
        .as_ref()
        .map(|m| cwd.join(m))
        .unwrap_or_else(|| pxe.join("machines"));
    Ok((records, pxe.join("state")))
}

fn parse_mac(text: &str) -> anyhow::Result<Mac> {
    text.parse().map_err(anyhow::Error::from)
}

/// The saved status rows; a state file that cannot be read is a warning.
fn status(state: &Path) -> Vec<Machine> {
    persist::read(state).unwrap_or_else(|e| {
        eprintln!("ze: warning: {e}; showing no status");
        Vec::new()
    })
}

/// Rows of cells as aligned columns.
fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `ze machines status`: the terminal view of the saved table.
pub fn status_table(a: &MachinesStatus) -> anyhow::Result<()> {
    use std::io::{IsTerminal as _, Write as _};
    let (_, state) = dirs(&a.pxe_dir, &None)?;
    let terminal = std::io::stdout().is_terminal();
    let width = || {
        a.width.unwrap_or_else(|| {
            rustix::termios::tcgetwinsize(std::io::stdout())
                .ok()
                .filter(|w| w.ws_col > 0)
                .map_or(120, |w| usize::from(w.ws_col))
        })
    };
    let render = || {
        crate::provision::views::tty::render_rows(
            &status(&state),
            width(),
            crate::timefmt::now_ms(),
        )
    };
    if !(a.watch && terminal) {
        print!("{}", render());
        return Ok(());
    }
    let mut drawn = 0;
    loop {
        let text = render();
        let mut out = std::io::stdout().lock();
        if drawn > 0 {
            write!(out, "\r\x1b[{drawn}F\x1b[J")?;
        }
        out.write_all(text.as_bytes())?;
        out.flush()?;
        drawn = text.matches('\n').count();
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// `ze machines list`.
pub fn list(a: &MachinesList) -> anyhow::Result<()> {
    let (dir, state) = dirs(&a.pxe_dir, &a.machines)?;
    let loaded = machines::load(&dir);
    let rows = status(&state);
    let stage = |mac: &Mac| {
        rows.iter()
            .find(|m| m.mac == *mac)
            .map_or("-".to_string(), |m| m.stage.to_string())
    };
    if loaded.records.is_empty() && loaded.errors.is_empty() {
        println!("no machine records in {}", dir.display());
    } else if !loaded.records.is_empty() {
        let mut table = vec![
            [
                "MAC",
                "IMAGE",
                "INSTALL",
                "INSTALLED",
                "HOSTNAME",
                "TARGET",
                "STAGE",
            ]
            .map(String::from)
            .to_vec(),
        ];
        let dash = || "-".to_string();
        for (mac, r) in &loaded.records {
            table.push(vec![
                mac.to_string(),
                r.image.clone(),
                r.install.to_string(),
                r.installed.as_ref().map_or_else(dash, |i| rfc3339(i.at)),
                r.hostname.clone().unwrap_or_else(dash),
                r.target.clone().unwrap_or_else(dash),
                stage(mac),
            ]);
        }
        print!("{}", columns(&table));
    }
    for e in &loaded.errors {
        eprintln!("ze: warning: {e}");
    }
    if !loaded.errors.is_empty() {
        bail!(
            "{} bad record(s) in {}: the servers ignore them until they are fixed",
            loaded.errors.len(),
            dir.display()
        );
    }
    Ok(())
}

/// `ze machines show MAC`.
pub fn show(a: &MachinesShow) -> anyhow::Result<()> {
    let mac = parse_mac(&a.mac)?;
    let (dir, state) = dirs(&a.pxe_dir, &a.machines)?;
    let file = machines::record_path(&dir, mac);
    let row = status(&state).into_iter().find(|m| m.mac == mac);
    match machines::read_record(&file) {
        Ok(r) => print!("{}:\n{}", file.display(), record::render(mac, &r)),
        Err(machines::RecordError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            if row.is_none() {
                bail!(
                    "{mac}: no record ({} does not exist) and no status in {}",
                    file.display(),
                    persist::path(&state).display()
                );
            }
            println!("{mac}: no record: it follows the command line of `ze install remote`");
        }
        Err(e) => bail!("{e}; the servers ignore this record until it is fixed"),
    }
    if let Some(m) = row {
        print!("{}", describe(&m, &persist::path(&state)));
    }
    Ok(())
}

fn describe(m: &Machine, from: &Path) -> String {
    let mut out = format!("\nstatus (from {}):\n", from.display());
    let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<9}{v}\n"));
    let mut stage = m.stage.to_string();
    if m.total > 0 {
        stage.push_str(&format!(
            " ({} of {}{})",
            human_bytes(m.bytes),
            human_bytes(m.total),
            if m.map { " mapped" } else { "" }
        ));
    }
    line("stage", stage);
    line("ip", m.ip.map_or("-".into(), |ip| ip.to_string()));
    line("hostname", m.hostname.clone().unwrap_or_else(|| "-".into()));
    line("started", rfc3339((m.started / 1000) as i64));
    line("updated", rfc3339((m.updated / 1000) as i64));
    if let Some(e) = &m.error {
        line("error", e.clone());
    }
    out.push_str("  timeline:\n");
    for s in &m.timeline {
        out.push_str(&format!(
            "    {}  {:<9} {}\n",
            rfc3339((s.at / 1000) as i64),
            s.stage,
            s.detail
        ));
    }
    out
}

/// Print what an edit did (or would do).
fn print_edit(done: &Edited, mac: Mac, dry_run: bool) {
    let verb = |now: &str, then: &str| {
        if dry_run {
            then.to_string()
        } else {
            now.to_string()
        }
    };
    match &done.edit {
        Edit::Write(r) => {
            println!("{} {}:", verb("wrote", "would write"), done.file.display());
            print!("{}", record::render(mac, r));
        }
        Edit::Remove => println!(
            "{} {}",
            verb("removed", "would remove"),
            done.file.display()
        ),
        Edit::Keep | Edit::Refuse(_) => {}
    }
    if dry_run {
        println!("dry run: nothing was changed");
    }
}

/// `ze machines add MAC --image …`.
pub fn add(a: &MachinesAdd) -> anyhow::Result<()> {
    let mac = parse_mac(&a.mac)?;
    let (dir, _) = dirs(&a.pxe_dir, &a.machines)?;
    record::check_image(&a.image).map_err(|e| anyhow::anyhow!("--image {e}"))?;
    if let Some(t) = &a.target {
        record::check_target(t).map_err(|e| anyhow::anyhow!("--target {e}"))?;
    }
    if let Some(h) = &a.hostname {
        record::check_hostname(h).map_err(|e| anyhow::anyhow!("--hostname {e}"))?;
    }
    let password_given =
        a.ssh_password.is_some() || a.ssh_password_file.is_some() || a.ssh_password_stdin;
    let ssh = match &a.ssh_username {
        None if password_given => bail!("a password for the machine needs --ssh-username"),
        None => None,
        // One source of the password, as for `ze install remote`; a
        // terminal is asked when there is none.
        Some(u) => Some((
            u,
            crate::cmd::ssh_password(
                a.ssh_password.as_deref(),
                a.ssh_password_file.as_deref(),
                a.ssh_password_stdin,
            )?,
        )),
    };
    let ssh = match ssh {
        None => None,
        Some((u, p)) => {
            credentials::validate_username(u).context("--ssh-username")?;
            Some(Ssh {
                username: u.clone(),
                password_hash: credentials::hash_password(&p).context("--ssh-password")?,
            })
        }
    };
    let new = Record {
        image: a.image.clone(),
        target: a.target.clone(),
        hostname: a.hostname.clone(),
        ssh,
        install: a.install,
        installed: None,
    };
    let done = machines::edit(&dir, mac, a.dry_run, |current| {
        match current {
        Some(_) if !a.force => Edit::Refuse(
            "a record exists: pass --force to replace it (its installed mark goes too), or edit the file"
                .into(),
        ),
        _ => Edit::Write(new),
    }
    })?;
    print_edit(&done, mac, a.dry_run);
    Ok(())
}

/// `ze machines reinstall MAC`.
pub fn reinstall(a: &MachinesReinstall) -> anyhow::Result<()> {
    let mac = parse_mac(&a.mac)?;
    let (dir, _) = dirs(&a.pxe_dir, &a.machines)?;
    let done = machines::edit(&dir, mac, a.dry_run, |current| match current {
        None => Edit::Refuse(
            "no record: a machine without one installs on every network boot already".into(),
        ),
        Some(Err(e)) => Edit::Refuse(format!("{e}; fix the record first")),
        Some(Ok(r)) if r.installed.is_none() => Edit::Keep,
        Some(Ok(r)) => Edit::Write(Record {
            installed: None,
            ..r.clone()
        }),
    })?;
    match (&done.edit, &done.before) {
        (Edit::Keep, _) => println!(
            "{mac} is not marked installed: its next network boot installs already ({})",
            done.file.display()
        ),
        (_, Some(r)) if r.install == Install::Never => eprintln!(
            "ze: warning: {}: install never: the servers still do not answer {mac} (set install once or always)",
            done.file.display()
        ),
        _ => {}
    }
    print_edit(&done, mac, a.dry_run);
    Ok(())
}

/// `ze machines remove MAC`.
pub fn remove(a: &MachinesRemove) -> anyhow::Result<()> {
    let mac = parse_mac(&a.mac)?;
    let (dir, _) = dirs(&a.pxe_dir, &a.machines)?;
    let done = machines::edit(&dir, mac, a.dry_run, |current| match current {
        None => Edit::Refuse("no record to remove".into()),
        Some(_) => Edit::Remove,
    })?;
    print_edit(&done, mac, a.dry_run);
    Ok(())
}
