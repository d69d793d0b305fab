//! `ze appliance iso <name>` (checklist A7, A8, W7).

use crate::{
    appliance::{
        Appliance, artifacts, grub,
        iso::{self, validate_target},
        size::human,
        tools,
    },
    cli::ApplianceIso,
    timefmt,
};
use anyhow::{Context, bail};
use std::{io::Write, path::PathBuf};

/// Run `ze appliance iso`.
pub fn run(args: &ApplianceIso) -> anyhow::Result<()> {
    let (appliance, json) = Appliance::load(&args.name)?;
    let dir = json
        .parent()
        .map(PathBuf::from)
        .context("appliance.json has no directory")?;
    let arch = appliance.image.arch;
    let mut problems: Vec<String> = Vec::new();
    let target = match &args.target {
        Some(t) => match validate_target(t) {
            Ok(()) => Some(t.clone()),
            Err(e) => {
                problems.push(format!("{e:#}"));
                None
            }
        },
        None => None,
    };
    let kernel =
        artifacts::find_kernel(args.kernel.as_deref(), arch, appliance.image.kernel_profile)
            .map_err(|e| problems.push(format!("kernel: {e:#}")))
            .ok();
    let initrd = artifacts::find_initrd(args.initrd.as_deref())
        .map_err(|e| problems.push(format!("initrd: {e:#}")))
        .ok();
    let image = match &args.image {
        Some(p) if p.is_file() => Some(p.clone()),
        Some(p) => {
            problems.push(format!("--image {}: no such file", p.display()));
            None
        }
        None => iso::newest_image(&dir)
            .map_err(|e| problems.push(format!("image: {e:#}")))
            .ok(),
    };
    // What the ISO will carry, for --check and --dry-run: the image's
    // block map, which must agree with its build.json. (A build maps it
    // itself.)
    let manifest = image.as_deref().and_then(iso::manifest_for);
    let map = match &image {
        Some(i) if args.check || args.dry_run => {
            iso::map_image(i, manifest.as_ref(), &mut std::io::sink())
                .map_err(|e| problems.push(format!("image: {e:#}")))
                .ok()
        }
        _ => None,
    };
    problems.extend(grub::missing(arch));
    if !tools::XORRISO.present() {
        problems.push(tools::XORRISO.missing_line());
    }

    let mut out = std::io::stdout().lock();
    let show = |out: &mut dyn Write| -> anyhow::Result<()> {
        if let Some(k) = &kernel {
            writeln!(out, "  kernel:     {}", k.describe())?;
        }
        if let Some(i) = &initrd {
            writeln!(out, "  initrd:     {}", i.display())?;
        }
        if let Some(i) = &image {
            writeln!(out, "  image:      {}", i.display())?;
        }
        if let Some(m) = &map {
            writeln!(
                out,
                "  block map:  {}; the ISO carries only the mapped data",
                m.summary()
            )?;
        }
        writeln!(
            out,
            "  boot:       EFI/BOOT/{} ({})",
            arch.efi_loader(),
            grub::platform(arch)
        )?;
        if let Some(t) = &target {
            writeln!(out, "  target:     {t}")?;
        }
        Ok(())
    };
    if args.check {
        if problems.is_empty() {
            writeln!(
                out,
                "all prerequisites for the install ISO of appliance {} are present",
                args.name
            )?;
            show(&mut out)?;
            return Ok(());
        }
        bail!("missing prerequisites:\n  {}", problems.join("\n  "));
    }
    if !problems.is_empty() {
        bail!(
            "cannot build the install ISO of appliance {}:\n  {}",
            args.name,
            problems.join("\n  ")
        );
    }
    let (kernel, initrd, image) = (
        kernel.clone().expect("checked"),
        initrd.clone().expect("checked"),
        image.clone().expect("checked"),
    );
    let output = match &args.output {
        Some(p) => p.clone(),
        None => image.with_extension("iso"),
    };
    writeln!(out, "building the install ISO of appliance {}", args.name)?;
    show(&mut out)?;
    writeln!(out, "  output:     {}", output.display())?;
    if args.dry_run {
        writeln!(out, "dry run: nothing was built")?;
        return Ok(());
    }
    let inputs = iso::Inputs {
        name: args.name.clone(),
        appliance,
        image,
        manifest,
        kernel: kernel.path,
        initrd,
        target,
        output,
        now: timefmt::now(),
    };
    let built = iso::build(&inputs, &mut out)?;
    writeln!(
        out,
        "iso:        {} ({})",
        built.path.display(),
        human(built.size)
    )?;
    writeln!(out, "media id:   {}", built.metadata.media_id)?;
    writeln!(out, "cmdline:    {}", built.metadata.kernel_cmdline)?;
    Ok(())
}
