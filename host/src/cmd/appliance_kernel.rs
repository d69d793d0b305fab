//! `ze appliance kernel` (checklist A3–A5, A8).

use crate::{
    appliance::{
        Appliance, Arch, KernelProfile,
        kernel::{self, Fragment, Request, Source},
    },
    cli::ApplianceKernel,
};
use anyhow::{Context, bail};
use std::{io::Write, path::Path};

/// Turn the flags (and the appliance definition, when named) into a request.
pub fn request(args: &ApplianceKernel) -> anyhow::Result<Request> {
    let from_appliance = match &args.name {
        Some(name) => Some(Appliance::load(name)?.0.image),
        None => None,
    };
    let arch = args
        .arch
        .or(from_appliance.as_ref().map(|i| i.arch))
        .unwrap_or_else(Arch::host);
    let profile = args
        .profile
        .or(from_appliance.as_ref().map(|i| i.kernel_profile))
        .unwrap_or(KernelProfile::Qemu);
    let source = Source::resolve(
        args.version.as_deref(),
        args.source.as_deref(),
        Path::new(kernel::DEBIAN_SOURCE_DIR),
    )?;
    let extra = args
        .fragment
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("--fragment {}", p.display()))?;
            if !text.lines().any(|l| kernel::parse_line(l).is_some()) {
                bail!("--fragment {}: holds no CONFIG_ lines", p.display());
            }
            Ok(Fragment {
                name: p.display().to_string(),
                text,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let jobs = match args.jobs {
        Some(0) => bail!("--jobs must be at least 1"),
        Some(n) => n,
        None => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    };
    Ok(Request {
        arch,
        profile,
        source,
        extra,
        jobs,
        output: args.output.clone(),
    })
}

/// Run `ze appliance kernel`.
pub fn run(args: &ApplianceKernel) -> anyhow::Result<()> {
    let req = request(args)?;
    let mut out = std::io::stdout().lock();
    if args.check {
        let missing = kernel::missing_prerequisites(&req);
        if missing.is_empty() {
            writeln!(
                out,
                "all prerequisites for the {} {} kernel are present",
                req.arch, req.profile
            )?;
            return Ok(());
        }
        bail!("missing prerequisites:\n  {}", missing.join("\n  "));
    }
    let paths = req.paths()?;
    if args.dry_run {
        writeln!(
            out,
            "would build the installer kernel for {} (profile {})",
            req.arch, req.profile
        )?;
        writeln!(out, "  source:    {}", req.source.describe())?;
        for f in req.fragments() {
            writeln!(out, "  fragment:  {}", f.name)?;
        }
        writeln!(out, "  cache key: {}", paths.key)?;
        let cached = paths.entry.join("Image").is_file();
        writeln!(
            out,
            "  cache:     {} ({})",
            paths.entry.display(),
            if cached {
                "present: reused"
            } else {
                "absent: built"
            }
        )?;
        writeln!(
            out,
            "  output:    {}/Image, {}/config",
            req.output.display(),
            req.output.display()
        )?;
        writeln!(out, "dry run: nothing was built")?;
        return Ok(());
    }
    let built = kernel::build(&req, &mut out)?;
    let size = std::fs::metadata(&built.image)
        .map(|m| m.len())
        .unwrap_or(0);
    writeln!(
        out,
        "kernel {} ({} bytes, {} profile, {}){}",
        built.image.display(),
        size,
        req.profile,
        req.arch,
        if built.reused { ", from the cache" } else { "" }
    )?;
    writeln!(out, "config {}", built.config.display())?;
    Ok(())
}
