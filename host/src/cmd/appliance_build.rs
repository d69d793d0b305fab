//! `ze appliance build <name>` (checklist A1, A2, A9, W1).

use crate::{
    appliance::{
        Appliance,
        artifacts::{self, FoundKernel},
        binary, bios,
        config::{SEED_CONFIG_FILE, TLS_CERT_FILE, TLS_KEY_FILE},
        disk::{DiskLayout, Identities},
        grub, image,
        size::{ByteSize, human},
        tools,
    },
    cli::ApplianceBuild,
    timefmt,
};
use anyhow::{Context, bail};
use std::{io::Write, path::PathBuf};

/// The environment variable that overrides `image.size-bytes` (spec:
/// End-to-End QEMU Verification, Environment Knobs).
pub const SIZE_ENV: &str = "ZE_INSTALL_IMAGE_SIZE";

/// Everything resolved for a build; each part may have failed, so
/// `--check` can list every problem at once.
#[derive(Debug)]
pub struct Resolved {
    /// The appliance name.
    pub name: String,
    /// Its definition.
    pub appliance: Appliance,
    /// Its directory.
    pub dir: PathBuf,
    /// The image size and where it came from.
    pub size: anyhow::Result<(u64, &'static str)>,
    /// The kernel.
    pub kernel: anyhow::Result<FoundKernel>,
    /// The static ze.
    pub ze: anyhow::Result<binary::Source>,
    /// The seed config text, checked.
    pub seed: anyhow::Result<String>,
    /// Credentials and TLS files.
    pub secrets: anyhow::Result<()>,
    /// Missing programs, one line each.
    pub missing_tools: Vec<String>,
}

impl Resolved {
    /// Every problem, one line each.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut push = |what: &str, r: Option<&anyhow::Error>| {
            if let Some(e) = r {
                out.push(format!("{what}: {e:#}"));
            }
        };
        push("image size", self.size.as_ref().err());
        push("kernel", self.kernel.as_ref().err());
        push("static ze", self.ze.as_ref().err());
        push("seed config", self.seed.as_ref().err());
        push("credentials", self.secrets.as_ref().err());
        out.extend(self.missing_tools.iter().cloned());
        out
    }
}

fn size_of(args: &ApplianceBuild, appliance: &Appliance) -> anyhow::Result<(u64, &'static str)> {
    let (size, from) = if let Some(s) = args.size {
        (s.0, "--size")
    } else if let Some(v) = std::env::var_os(SIZE_ENV).filter(|v| !v.is_empty()) {
        let text = v.to_string_lossy();
        let s: ByteSize = text
            .parse()
            .map_err(|e: String| anyhow::anyhow!("{SIZE_ENV}: {e}"))?;
        (s.0, SIZE_ENV)
    } else {
        (appliance.image.size_bytes, "appliance.json")
    };
    DiskLayout::plan(size, appliance.image.arch, Identities::placeholder())
        .with_context(|| format!("size from {from}"))?;
    Ok((size, from))
}

/// Resolve every input of a build.
pub fn resolve(args: &ApplianceBuild) -> anyhow::Result<Resolved> {
    let (appliance, json) = Appliance::load(&args.name)?;
    let dir = json
        .parent()
        .map(PathBuf::from)
        .context("appliance.json has no directory")?;
    let arch = appliance.image.arch;
    let size = size_of(args, &appliance);
    let kernel =
        artifacts::find_kernel(args.kernel.as_deref(), arch, appliance.image.kernel_profile);
    let ze = binary::resolve(args.ze.as_deref(), arch).and_then(|s| {
        if matches!(s, binary::Source::Cargo { .. }) {
            let missing = binary::missing_for_cargo(arch);
            if !missing.is_empty() {
                bail!("a static build is needed but:\n  {}", missing.join("\n  "));
            }
        }
        Ok(s)
    });
    let seed_name = appliance
        .seed_config
        .clone()
        .unwrap_or_else(|| SEED_CONFIG_FILE.to_string());
    let seed_path = dir.join(&seed_name);
    let seed = std::fs::read_to_string(&seed_path)
        .with_context(|| format!("cannot read {}", seed_path.display()))
        .and_then(|text| {
            // Checked as `ze start` will read it: every plugin known, every
            // setting valid. The database is the image's own.
            let env = crate::daemon::PluginEnv {
                database: Some(std::path::PathBuf::from("/perm/ze/database.zefs")),
                running: None,
                ..Default::default()
            };
            crate::daemon::Daemon::from_text_with(&text, crate::plugins::PLUGINS, &env)
                .map_err(|e| anyhow::anyhow!("{}:{e}", seed_path.display()))?;
            Ok(text)
        });
    let secrets = (|| {
        let ssh = appliance.ssh.as_ref().with_context(|| {
            format!(
                "appliance.json has no ssh section: run `ze appliance init --force {}`",
                args.name
            )
        })?;
        ssh.validate()?;
        for f in [TLS_CERT_FILE, TLS_KEY_FILE] {
            let p = dir.join(f);
            if !p.is_file() {
                bail!(
                    "{} is missing: `ze appliance init --force {}` makes a new TLS identity",
                    p.display(),
                    args.name
                );
            }
        }
        Ok(())
    })();
    let mut missing_tools = grub::missing(arch);
    missing_tools.extend(bios::missing(arch));
    for t in [tools::MKE2FS, tools::DEBUGFS] {
        if !t.present() {
            missing_tools.push(t.missing_line());
        }
    }
    Ok(Resolved {
        name: args.name.clone(),
        appliance,
        dir,
        size,
        kernel,
        ze,
        seed,
        secrets,
        missing_tools,
    })
}

/// Run `ze appliance build`.
pub fn run(args: &ApplianceBuild) -> anyhow::Result<()> {
    let r = resolve(args)?;
    let mut out = std::io::stdout().lock();
    let problems = r.problems();
    if args.check {
        if problems.is_empty() {
            writeln!(
                out,
                "all prerequisites for building appliance {} are present",
                r.name
            )?;
            summary(&r, &mut out, true)?;
            return Ok(());
        }
        bail!("missing prerequisites:\n  {}", problems.join("\n  "));
    }
    if !problems.is_empty() {
        bail!(
            "cannot build appliance {}:\n  {}\n(`ze appliance build --check {}` lists the same)",
            r.name,
            problems.join("\n  "),
            r.name
        );
    }
    let (size, _) = *r.size.as_ref().expect("checked");
    writeln!(out, "building appliance {}", r.name)?;
    summary(&r, &mut out, args.dry_run)?;
    if args.dry_run {
        let layout = DiskLayout::plan(size, r.appliance.image.arch, Identities::placeholder())?;
        writeln!(out, "  layout:")?;
        for (i, p) in layout.table.partitions.iter().enumerate() {
            writeln!(
                out,
                "    p{} {:<7} {:>10} at {}",
                i + 1,
                p.name,
                ByteSize(p.size()).to_string(),
                ByteSize(p.offset())
            )?;
        }
        writeln!(out, "dry run: nothing was built")?;
        return Ok(());
    }
    let ze_source = r.ze.as_ref().expect("checked");
    let ze = binary::obtain(ze_source, r.appliance.image.arch)?;
    let inputs = image::Inputs {
        name: r.name.clone(),
        appliance: r.appliance.clone(),
        dir: r.dir.clone(),
        size,
        kernel: r.kernel.as_ref().expect("checked").path.clone(),
        ze,
        seed_config: r.seed.as_ref().expect("checked").clone(),
        now: timefmt::now(),
    };
    let built = image::build(&inputs, &mut out)?;
    writeln!(out, "image:      {}", built.image.display())?;
    writeln!(out, "manifest:   {}", built.manifest_path.display())?;
    writeln!(
        out,
        "sha256:     {}",
        built.manifest.sha256.as_deref().unwrap_or("")
    )?;
    writeln!(out, "block map:  {}", built.bmap_path.display())?;
    writeln!(
        out,
        "            {}, sha256 {}",
        built.bmap.summary(),
        built.bmap.sha256
    )?;
    writeln!(
        out,
        "allocated:  {} of {} nominal",
        human(built.allocated),
        ByteSize(size)
    )?;
    Ok(())
}

/// The resolved inputs; `planned` when nothing will be built (`--check`,
/// `--dry-run`).
fn summary(r: &Resolved, out: &mut dyn Write, planned: bool) -> anyhow::Result<()> {
    let a = &r.appliance.image;
    if let Ok((size, from)) = &r.size {
        writeln!(out, "  directory:  {}", r.dir.display())?;
        writeln!(
            out,
            "  image:      {} ({} kernel profile), {} (from {from})",
            a.arch,
            a.kernel_profile,
            ByteSize(*size)
        )?;
    }
    if let Ok(k) = &r.kernel {
        writeln!(out, "  kernel:     {}", k.describe())?;
    }
    if let Ok(z) = &r.ze {
        writeln!(out, "  ze binary:  {}", z.describe(a.arch, planned))?;
    }
    if let Some(ssh) = &r.appliance.ssh {
        writeln!(out, "  ssh user:   {}", ssh.username)?;
    }
    Ok(())
}
