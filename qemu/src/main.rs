//! `ze-qemu`: the installer's end-to-end harness (see `docs/installer.md`).
//!
//! - `ze-qemu test`: every QEMU case of `make ze-install-qemu-test`;
//! - `ze-qemu iso-test`: the ISO install cases of
//!   `make ze-install-iso-qemu-test` (`iso.rs`);
//! - `ze-qemu hw-test`: the hardware-kernel cases of
//!   `make ze-install-hw-qemu-test` (`hardware.rs`): USB stick, NVMe,
//!   AHCI, e1000e, the EFI framebuffer, the UEFI boot entry;
//! - `ze-qemu iso-bench`: the ISO install against the HTTP install of the
//!   same appliance image;
//! - `ze-qemu map-bench`: the block-map install against the whole stream,
//!   in QEMU and on the host against `bmaptool copy`;
//! - `ze-qemu image`: build a test GPT image with ext4 as partition 4;
//! - `ze-qemu serve`: serve an image and a database like the harness does;
//! - `ze-qemu demo`: one install, shown live, with a summary.

mod bench;
mod demo;
mod fleet;
mod hardware;
mod image;
mod iso;
mod login;
mod map;
mod mapbench;
mod network;
mod provision;
mod screen;
mod server;
mod suite;
mod ventoy;
mod vm;

use argh::FromArgs;
use std::{path::PathBuf, process::ExitCode, time::Duration};

/// ze's installer harness: QEMU boots of the real kernel and initrd.
#[derive(FromArgs, Debug)]
struct Args {
    #[argh(subcommand)]
    command: Cmd,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Cmd {
    Test(Test),
    Image(Image),
    Serve(Serve),
    Demo(Demo),
    Bench(Bench),
    IsoTest(IsoTest),
    HwTest(HwTest),
    IsoBench(IsoBench),
    MapBench(MapBench),
    ApplianceTest(ApplianceTest),
}

/// the whole chain over HTTP: build an appliance image, install it with the installer in QEMU, boot the written disk under OVMF, log in over SSH (ZE_INSTALL_* knobs apply)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "appliance-test")]
struct ApplianceTest {
    /// the installer initrd (default: build/initrd/initrd.img.gz)
    #[argh(option)]
    initrd: Option<PathBuf>,
    /// run only the cases whose names contain this (repeatable)
    #[argh(option)]
    only: Vec<String>,
    /// print the serial consoles live
    #[argh(switch)]
    verbose: bool,
}

/// build an appliance image and its ISO, install it from the ISO in QEMU + OVMF, boot the result (ZE_INSTALL_* knobs apply)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "iso-test")]
struct IsoTest {
    /// the initrd the ISO carries (default: build/initrd/initrd.img.gz)
    #[argh(option)]
    initrd: Option<PathBuf>,
    /// run only the cases whose names contain this (repeatable)
    #[argh(option)]
    only: Vec<String>,
    /// machines at once (default: ZE_INSTALL_JOBS or 2)
    #[argh(option)]
    jobs: Option<usize>,
    /// print the serial consoles live
    #[argh(switch)]
    verbose: bool,
    /// list the cases and exit
    #[argh(switch)]
    list: bool,
}

/// the hardware-kernel cases: an image and ISO with the hardware kernel, installed from a USB stick onto NVMe by its by-id name and booted with the same NVRAM, HTTP installs over e1000e onto NVMe and AHCI (ZE_INSTALL_* knobs apply)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "hw-test")]
struct HwTest {
    /// the initrd the ISO carries (default: build/initrd/initrd.img.gz)
    #[argh(option)]
    initrd: Option<PathBuf>,
    /// run only the cases whose names contain this (repeatable)
    #[argh(option)]
    only: Vec<String>,
    /// machines at once (default: ZE_INSTALL_JOBS or 2)
    #[argh(option)]
    jobs: Option<usize>,
    /// print the serial consoles live
    #[argh(switch)]
    verbose: bool,
    /// list the cases and exit
    #[argh(switch)]
    list: bool,
}

/// measure the ISO install against the HTTP install of the same appliance image, in QEMU
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "iso-bench")]
struct IsoBench {
    /// the initrd (default: build/initrd/initrd.img.gz)
    #[argh(option)]
    initrd: Option<PathBuf>,
    /// runs of each (default 5; medians are reported)
    #[argh(option, default = "5")]
    runs: usize,
    /// only the ISO installs (no HTTP install to compare with)
    #[argh(switch)]
    iso_only: bool,
}

/// measure the block-map install against the whole stream (QEMU) and against bmaptool copy (host)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "map-bench")]
struct MapBench {
    /// the initrd (default: build/initrd/initrd.img.gz)
    #[argh(option)]
    initrd: Option<PathBuf>,
    /// runs of each (default 5; medians are reported)
    #[argh(option, default = "5")]
    runs: usize,
}

/// run the QEMU install and fault cases (ZE_INSTALL_* knobs apply)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "test")]
struct Test {
    /// the initrd to boot (default: build/initrd/initrd.img.gz)
    #[argh(option)]
    initrd: Option<PathBuf>,
    /// run only the cases whose names contain this (repeatable)
    #[argh(option)]
    only: Vec<String>,
    /// machines at once (default: ZE_INSTALL_JOBS or 2)
    #[argh(option)]
    jobs: Option<usize>,
    /// print the serial consoles live
    #[argh(switch)]
    verbose: bool,
    /// list the cases and exit
    #[argh(switch)]
    list: bool,
}

/// build a test image: GPT, partition 4 ext4
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "image")]
struct Image {
    /// where to write it
    #[argh(option)]
    output: PathBuf,
    /// size, e.g. 64M (default 64M)
    #[argh(option, default = "String::from(\"64M\")")]
    size: String,
}

/// serve an image and a database on 127.0.0.1 until interrupted
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "serve")]
struct Serve {
    /// the image, served as /install/image/<name>
    #[argh(option)]
    image: PathBuf,
    /// the database, served as /install/database.zefs (default: a test database)
    #[argh(option)]
    zefs: Option<PathBuf>,
}

/// the main job on a virtual target: ze install remote in a namespace, a QEMU machine network-boots (OVMF, TFTP, iPXE, HTTP), installs, reboots into the appliance, and the demo logs in over SSH
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "demo")]
struct Demo {
    /// the initrd to boot (default: build/initrd/initrd.img.gz)
    #[argh(option)]
    initrd: Option<PathBuf>,
}

/// measure the installer against busybox-static + a script: initrd size, start-up, pipeline throughput
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "bench")]
struct Bench {
    /// the initrd to measure (default: build/initrd/initrd.img.gz)
    #[argh(option)]
    initrd: Option<PathBuf>,
    /// runs per measurement (default 5; medians are reported)
    #[argh(option, default = "5")]
    runs: usize,
    /// mebibytes moved by the pipeline benchmark (default 256)
    #[argh(option, default = "256")]
    pipeline_mib: u64,
}

fn work_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("ze-{name}-{}", std::process::id()))
}

fn keep() -> bool {
    std::env::var_os("ZE_INSTALL_KEEP").is_some_and(|v| !v.is_empty())
}

fn kvm_note() {
    if std::path::Path::new("/dev/kvm").exists() {
        eprintln!(
            "ze-qemu: /dev/kvm exists but is not used: KVM guests hang on these machines, TCG is used"
        );
    }
}

fn test(t: Test) -> anyhow::Result<bool> {
    let cases: Vec<&suite::Case> = suite::CASES
        .iter()
        .chain(map::CASES)
        .chain(network::CASES)
        .collect();
    if t.list {
        for c in &cases {
            println!("{}", c.name);
        }
        return Ok(true);
    }
    let root = suite::root()?;
    let initrd = t
        .initrd
        .unwrap_or_else(|| root.join("build/initrd/initrd.img.gz"));
    let work = work_dir("install-qemu-test");
    kvm_note();
    let ctx = suite::Ctx::from_env(initrd, work.clone(), t.verbose)?;
    eprintln!(
        "ze-install-qemu-test: kernel {}, initrd {} ({} bytes), image {} bytes, work {}",
        ctx.kernel.display(),
        ctx.initrd.display(),
        std::fs::metadata(&ctx.initrd).map(|m| m.len()).unwrap_or(0),
        ctx.image.len(),
        work.display()
    );
    let jobs = t
        .jobs
        .or_else(|| std::env::var("ZE_INSTALL_JOBS").ok()?.parse().ok())
        .unwrap_or(2);
    let failed = suite::run(&ctx, &cases, &t.only, jobs);
    if keep() || failed > 0 {
        eprintln!(
            "ze-install-qemu-test: work directory kept: {}",
            work.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(failed == 0)
}

fn iso_test(t: IsoTest) -> anyhow::Result<bool> {
    if t.list {
        for c in iso::CASES {
            println!("{}", c.name);
        }
        return Ok(true);
    }
    run_appliance_cases(
        "ze-install-iso-qemu-test",
        iso::CASES,
        None,
        t.initrd,
        &t.only,
        t.jobs,
        t.verbose,
    )
}

fn hw_test(t: HwTest) -> anyhow::Result<bool> {
    if t.list {
        for c in hardware::CASES {
            println!("{}", c.name);
        }
        return Ok(true);
    }
    run_appliance_cases(
        "ze-install-hw-qemu-test",
        hardware::CASES,
        Some(hardware::flavour()?),
        t.initrd,
        &t.only,
        t.jobs,
        t.verbose,
    )
}

fn appliance_test(t: ApplianceTest) -> anyhow::Result<bool> {
    run_appliance_cases(
        "ze-install-qemu-test (appliance)",
        &[iso::HTTP_CASES, fleet::CASES].concat(),
        None,
        t.initrd,
        &t.only,
        Some(1),
        t.verbose,
    )
}

/// Build the appliance image and its ISO once (with `flavour`'s kernel
/// and target, default the qemu kernel and none), then run `cases`.
fn run_appliance_cases(
    label: &str,
    cases: &[iso::Case],
    flavour: Option<iso::Flavour>,
    initrd: Option<PathBuf>,
    only: &[String],
    jobs: Option<usize>,
    verbose: bool,
) -> anyhow::Result<bool> {
    let work = work_dir(
        label
            .trim_start_matches("ze-")
            .replace([' ', '(', ')'], "")
            .as_str(),
    );
    kvm_note();
    let started = std::time::Instant::now();
    let ctx = match flavour {
        Some(f) => iso::Ctx::prepare_with(initrd, work.clone(), verbose, &f),
        None => iso::Ctx::prepare(initrd, work.clone(), verbose),
    };
    let failed = match &ctx {
        Ok(ctx) => {
            let jobs = jobs
                .or_else(|| std::env::var("ZE_INSTALL_JOBS").ok()?.parse().ok())
                .unwrap_or(2);
            iso::run(ctx, label, cases, only, jobs)
        }
        Err(_) => 1,
    };
    if keep() || failed > 0 {
        eprintln!("{label}: work directory kept: {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    ctx?;
    println!(
        "{label}: {:.1} s in all (image, ISO and machines)",
        started.elapsed().as_secs_f64()
    );
    Ok(failed == 0)
}

fn iso_bench(b: IsoBench) -> anyhow::Result<bool> {
    let work = work_dir("iso-bench");
    kvm_note();
    let r = iso::Ctx::prepare(b.initrd, work.clone(), false)
        .and_then(|ctx| iso::bench(&ctx, b.runs.max(1), b.iso_only));
    if keep() || r.is_err() {
        eprintln!("iso-bench: work directory kept: {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    r.map(|()| true)
}

fn map_bench(b: MapBench) -> anyhow::Result<bool> {
    let work = work_dir("map-bench");
    kvm_note();
    let r = iso::Ctx::prepare(b.initrd, work.clone(), false)
        .and_then(|ctx| mapbench::bench(&ctx, b.runs.max(1)));
    if keep() || r.is_err() {
        eprintln!("map-bench: work directory kept: {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    r.map(|()| true)
}

fn serve(s: Serve) -> anyhow::Result<bool> {
    let srv = server::Server::start()?;
    let name = s
        .image
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("ze.img")
        .to_string();
    srv.put(&format!("/install/image/{name}"), std::fs::read(&s.image)?);
    let zefs = match &s.zefs {
        Some(p) => std::fs::read(p)?,
        None => suite::make_zefs()?,
    };
    srv.put(suite::ZEFS_PATH, zefs);
    srv.verbose(true);
    println!(
        "serving /install/image/{name} and {} on 127.0.0.1:{}; boot with ze.server=10.0.2.2 ze.port={} ze.image={name}",
        suite::ZEFS_PATH,
        srv.port(),
        srv.port()
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn main() -> ExitCode {
    let args: Args = argh::from_env();
    let r = match args.command {
        Cmd::Test(t) => test(t),
        Cmd::Image(i) => suite::parse_size(&i.size)
            .and_then(|size| image::build(&i.output, size))
            .map(|()| true),
        Cmd::Serve(s) => serve(s),
        Cmd::Demo(d) => demo::run(d.initrd),
        Cmd::IsoTest(t) => iso_test(t),
        Cmd::HwTest(t) => hw_test(t),
        Cmd::IsoBench(b) => iso_bench(b),
        Cmd::MapBench(b) => map_bench(b),
        Cmd::ApplianceTest(t) => appliance_test(t),
        Cmd::Bench(b) => suite::root().and_then(|root| {
            let initrd = b
                .initrd
                .unwrap_or_else(|| root.join("build/initrd/initrd.img.gz"));
            bench::bench(initrd, b.runs, b.pipeline_mib).map(|()| true)
        }),
    };
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ze-qemu: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
