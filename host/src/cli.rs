//! The `ze` command line. Doc comments here are the `--help` text.

use argh::FromArgs;
use std::path::PathBuf;

/// ze: install, provision and build network appliances.
#[derive(FromArgs, Debug)]
#[argh(
    note = "Run the servers of a config file with `ze <config-file>`, or read the config from standard input with `ze -` (the config ends at a NUL byte or at end of input; end of input shuts the servers down). See docs/daemon.md.",
    note = "Environment: ZE_CONFIG_DIR sets the config directory; ZE_SYSROOT resolves every system path under another root (for tests and image builds).",
    note = "Exit status: 0 success, 1 failure, 2 bad usage."
)]
pub struct Ze {
    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Install(Install),
    Uninstall(Uninstall),
    Init(Init),
    Version(Version),
    Appliance(Appliance),
    Start(Start),
    Cli(Cli),
    Machines(Machines),
}

/// install ze on this host (binary, systemd service)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "install")]
pub struct Install {
    #[argh(subcommand)]
    pub what: InstallWhat,
}

// argh cannot parse into a boxed variant, and the enum is made once a run.
#[allow(clippy::large_enum_variant)]
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum InstallWhat {
    Local(InstallLocal),
    Systemd(InstallSystemd),
    Remote(Box<InstallRemote>),
}

/// copy the running ze binary to <prefix>/bin/ze and create the config directory
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "local",
    note = "Without --prefix, on a terminal, a menu offers 1) /usr/local (recommended), 2) /usr (system), 3) /opt/ze (self-contained); Enter picks 1.",
    note = "The config directory is /etc/ze for /usr/local and /usr, and <prefix>/etc/ze otherwise. It is created only when it holds no database.zefs yet.",
    note = "Next step: `ze init` to create the database."
)]
pub struct InstallLocal {
    /// installation prefix; the binary goes to <prefix>/bin/ze (default: ask)
    #[argh(option)]
    pub prefix: Option<PathBuf>,
    /// print what would be done without making changes
    #[argh(switch)]
    pub dry_run: bool,
}

/// install, enable and optionally start the ze systemd service
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "systemd",
    note = "Requires <config-dir>/database.zefs (run `ze init` first). Creates the system user and group ze if missing, gives them the config directory and the database, writes /etc/systemd/system/ze.service, then runs `systemctl daemon-reload` and `systemctl enable ze.service`.",
    note = "The unit sets XDG_RUNTIME_DIR=/run/ze, so the daemon socket is /run/ze/ze.socket."
)]
pub struct InstallSystemd {
    /// print the unit and every action without making changes (needs neither root nor systemd)
    #[argh(switch)]
    pub dry_run: bool,
    /// config directory written into the unit (default: ZE_CONFIG_DIR, else derived from the binary's location)
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// replace an existing /etc/systemd/system/ze.service
    #[argh(switch)]
    pub force: bool,
    /// start the service after enabling it
    #[argh(switch)]
    pub start: bool,
}

/// run DHCP (PXE), TFTP and the HTTP image server on one interface to provision targets
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "remote",
    note = "The server address is the interface's first IPv4 address; if it has none, the address from --network is added (the first host for a network address such as 192.168.1.0/24) and removed on exit.",
    note = "Boot files are served from <pxe-dir>/boot (vmlinuz, initrd.img.gz) and <pxe-dir>/tftp (ipxe.efi, ipxe.pxe, staged from --ipxe-dir when missing). Leases are kept in <pxe-dir>/state.",
    note = "The password comes from exactly one of --ssh-password-file, --ssh-password-stdin and --ssh-password (which any local user can read in `ps` while the command runs); with none, it is asked for twice without echo on a terminal. It is stored only as a bcrypt hash (cost 10).",
    note = "Logs are at info level; set ze.log or ZE_LOG (and ze.log.<plugin>) to change it. SIGINT/SIGTERM stop the servers. See docs/install-remote.md.",
    note = "Without --proxy-dhcp, run only on an isolated provisioning network with no other DHCP server; on a network that has one, pass --proxy-dhcp (the site's server keeps handing out addresses). Subnets behind DHCP relays: --relay-network."
)]
pub struct InstallRemote {
    /// network interface to serve on (all three servers bind to it)
    #[argh(option)]
    pub interface: String,
    /// provisioning subnet in CIDR form, /8 to /30 (e.g. 192.168.50.0/24); with --proxy-dhcp, the site's subnet the interface is on
    #[argh(option)]
    pub network: String,
    /// proxyDHCP: hand out no addresses (the network's own DHCP server does) and only tell PXE clients what to boot
    #[argh(switch)]
    pub proxy_dhcp: bool,
    /// a subnet behind a DHCP relay, CIDR[,router=IP] (repeatable; router defaults to the first host and is full mode only)
    #[argh(option)]
    pub relay_network: Vec<String>,
    /// disk image to install (served at /install/image/<file name>)
    #[argh(option)]
    pub image: PathBuf,
    /// admin user name for the installed target
    #[argh(option)]
    pub ssh_username: String,
    /// admin password; visible to every local user in `ps` while the command runs: prefer --ssh-password-file or --ssh-password-stdin (bcrypt-hashed before use, never written in plaintext)
    #[argh(option)]
    pub ssh_password: Option<String>,
    /// read the admin password from the first line of FILE
    #[argh(option)]
    pub ssh_password_file: Option<PathBuf>,
    /// read the admin password from the first line of standard input
    #[argh(switch)]
    pub ssh_password_stdin: bool,
    /// server IPv4 address (default: the interface's first IPv4, else from --network)
    #[argh(option)]
    pub address: Option<std::net::Ipv4Addr>,
    /// installer kernel, copied to <pxe-dir>/boot/vmlinuz
    #[argh(option)]
    pub kernel: Option<PathBuf>,
    /// installer initrd, copied to <pxe-dir>/boot/initrd.img.gz
    #[argh(option)]
    pub initrd: Option<PathBuf>,
    /// PXE serve root, relative to the working directory (default: build/pxe)
    #[argh(option, default = "PathBuf::from(\"build/pxe\")")]
    pub pxe_dir: PathBuf,
    /// machine records: one <mac>.conf per machine with its image, disk, host name and install once|always|never (default: <pxe-dir>/machines)
    #[argh(option)]
    pub machines: Option<PathBuf>,
    /// what a machine without a record gets: follow (the install of this command line, the default) or ignore (no answer at all)
    #[argh(option, default = "String::from(\"follow\")")]
    pub unknown: String,
    /// where to stage missing iPXE binaries from (default: /usr/lib/ipxe, Debian's ipxe package)
    #[argh(option, default = "PathBuf::from(\"/usr/lib/ipxe\")")]
    pub ipxe_dir: PathBuf,
    /// print the steps and the generated config without changing anything
    #[argh(switch)]
    pub dry_run: bool,
}

/// remove what `ze install` put on this host
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "uninstall",
    note = "Remove the service before the binary: `ze uninstall systemd`, then `ze uninstall local`."
)]
pub struct Uninstall {
    #[argh(subcommand)]
    pub what: UninstallWhat,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum UninstallWhat {
    Local(UninstallLocal),
    Systemd(UninstallSystemd),
}

/// remove the ze binary, and with --purge the config directory and database
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "local",
    note = "Refuses while /etc/systemd/system/ze.service exists: run `ze uninstall systemd` first.",
    note = "Without --yes, lists what will be removed and asks for confirmation."
)]
pub struct UninstallLocal {
    /// installation prefix (default: detected from the running binary)
    #[argh(option)]
    pub prefix: Option<PathBuf>,
    /// also remove the config directory and the database
    #[argh(switch)]
    pub purge: bool,
    /// print what would be done without making changes
    #[argh(switch)]
    pub dry_run: bool,
    /// do not ask for confirmation
    #[argh(switch)]
    pub yes: bool,
}

/// stop, disable and remove the ze systemd service
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "systemd",
    note = "Without --yes, lists what will be removed and asks for confirmation."
)]
pub struct UninstallSystemd {
    /// also remove the system user and group ze
    #[argh(switch)]
    pub purge: bool,
    /// print what would be done without making changes
    #[argh(switch)]
    pub dry_run: bool,
    /// do not ask for confirmation
    #[argh(switch)]
    pub yes: bool,
}

/// create the config database (database.zefs) with one admin user
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "init",
    note = "On a terminal, asks for the username and for the password (twice, without echo). The password is stored only as a bcrypt hash (cost 10).",
    note = "The config directory is --config, else ZE_CONFIG_DIR, else derived from the binary's location (/etc/ze for /usr/local/bin/ze and /usr/bin/ze, <prefix>/etc/ze otherwise). It must exist: `ze install local` creates it."
)]
pub struct Init {
    /// config directory holding database.zefs
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// admin username (default: ask on the terminal)
    #[argh(option)]
    pub username: Option<String>,
    /// read the password from the first line of standard input
    #[argh(switch)]
    pub password_stdin: bool,
    /// replace an existing database.zefs (its contents are lost)
    #[argh(switch)]
    pub force: bool,
}

/// print ze's version, build date and commit, and the installed image
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "version",
    note = "On an appliance, /perm/ze/build.json adds the `image:` and `appliance:` lines (ZE_BUILD_JSON overrides the path)."
)]
pub struct Version {}

/// define appliances and build their artifacts: disk image, installer kernel and initrd, ISO
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "appliance")]
pub struct Appliance {
    #[argh(subcommand)]
    pub what: ApplianceWhat,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum ApplianceWhat {
    Kernel(ApplianceKernel),
    Initrd(ApplianceInitrd),
    Init(ApplianceInit),
    Build(ApplianceBuild),
    Iso(ApplianceIso),
}

/// build the installer kernel: Linux from Debian's linux-source (or --source) with ze's config fragments
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "kernel",
    note = "With NAME, the arch and profile come from ~/.config/ze/appliances/NAME/appliance.json; --arch and --profile override them.",
    note = "Output: <output>/Image and <output>/config. Finished kernels are cached under $XDG_CACHE_HOME/ze/installer-kernel/<key>/ (default ~/.cache/ze/) and reused while the source and the fragments are unchanged.",
    note = "Fails, naming each one, when a symbol of the profile's *.require list does not end up =y."
)]
pub struct ApplianceKernel {
    /// driver profile: qemu (virtio, e1000; default) or hardware (bare-metal NICs, AHCI, NVMe, USB, framebuffer, exFAT)
    #[argh(option)]
    pub profile: Option<crate::appliance::KernelProfile>,
    /// target architecture: amd64 or arm64 (default: the host's)
    #[argh(option)]
    pub arch: Option<crate::appliance::Arch>,
    /// kernel version: Debian's /usr/src/linux-source-V.tar.xz (default: the version in ze's kernel-config/linux.version)
    #[argh(option)]
    pub version: Option<String>,
    /// kernel source instead of --version: a .tar.xz/.tar.gz of a Linux tree, or an unconfigured tree
    #[argh(option)]
    pub source: Option<PathBuf>,
    /// extra config fragment merged after the profile (repeatable), for site-specific drivers
    #[argh(option)]
    pub fragment: Vec<PathBuf>,
    /// output directory (default: build/kernel)
    #[argh(option, default = "PathBuf::from(\"build/kernel\")")]
    pub output: PathBuf,
    /// parallel make jobs (default: the number of CPUs)
    #[argh(option)]
    pub jobs: Option<usize>,
    /// list missing prerequisites and exit (non-zero when something is missing)
    #[argh(switch)]
    pub check: bool,
    /// print what would be built and where, without building
    #[argh(switch)]
    pub dry_run: bool,
    /// appliance whose appliance.json gives the arch and profile
    #[argh(positional)]
    pub name: Option<String>,
}

/// build the installer firmware and pack it as build/initrd/initrd.img.gz
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "initrd",
    note = "The initrd is a gzip-compressed newc cpio holding exactly one file, init (mode 0755): the static, libc-free installer firmware. It is built like `make firmware` (cargo with --target and the flags of linker/rustflags), so it needs the ze source tree and a Rust toolchain; --firmware packs a prebuilt binary instead.",
    note = "The result must stay within the 192 KiB budget; the command fails when it does not."
)]
pub struct ApplianceInitrd {
    /// target architecture: amd64 (default) or arm64
    #[argh(option)]
    pub arch: Option<String>,
    /// the ze source tree to build from (default: the working directory or its nearest parent that is one)
    #[argh(option)]
    pub source: Option<PathBuf>,
    /// pack this prebuilt firmware binary instead of building it
    #[argh(option)]
    pub firmware: Option<PathBuf>,
    /// where to write the initrd (default: build/initrd/initrd.img.gz)
    #[argh(option)]
    pub output: Option<PathBuf>,
    /// print the build command and the output path without doing anything
    #[argh(switch)]
    pub dry_run: bool,
}

/// define an appliance: appliance.json with image settings and SSH credentials, a seed config, a TLS identity
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "init",
    note = "Writes $XDG_CONFIG_HOME/ze/appliances/NAME/ (default ~/.config/ze/appliances/NAME/): appliance.json, ze.conf (the seed config, baked into images as file/template/ze.conf) and tls/cert.pem + tls/key.pem (self-signed for NAME).",
    note = "Defaults: image.arch the host's, image.kernel-profile qemu, image.size-bytes 2 GiB. Without --ssh-username, asks on the terminal; the password comes from exactly one of --ssh-password-file, --ssh-password-stdin and --ssh-password (which any local user can read in `ps` while the command runs), else it is asked for twice without echo. The password is stored only as a bcrypt hash (cost 10).",
    note = "Refuses to replace an existing appliance.json without --force; --force keeps ze.conf, tls/ and the images.",
    note = "Next step: `ze appliance build NAME`."
)]
pub struct ApplianceInit {
    /// SSH login name baked into every image (default: ask)
    #[argh(option)]
    pub ssh_username: Option<String>,
    /// SSH password, stored only as a bcrypt hash; visible to every local user in `ps` while the command runs: prefer --ssh-password-file or --ssh-password-stdin (default: ask without echo)
    #[argh(option)]
    pub ssh_password: Option<String>,
    /// read the SSH password from the first line of FILE
    #[argh(option)]
    pub ssh_password_file: Option<PathBuf>,
    /// read the SSH password from the first line of standard input
    #[argh(switch)]
    pub ssh_password_stdin: bool,
    /// target architecture: amd64 or arm64 (default: the host's)
    #[argh(option)]
    pub arch: Option<crate::appliance::Arch>,
    /// installer kernel profile: qemu or hardware (default: qemu)
    #[argh(option)]
    pub kernel_profile: Option<crate::appliance::KernelProfile>,
    /// image size, e.g. 2G or 768M (default: 2 GiB)
    #[argh(option)]
    pub size: Option<crate::appliance::size::ByteSize>,
    /// replace an existing appliance.json
    #[argh(switch)]
    pub force: bool,
    /// the appliance name: 1 to 64 of a-z, 0-9, '-' and '_'
    #[argh(positional)]
    pub name: String,
}

/// build the appliance disk image ze-<YYYYMMDD-HHMMSS>.img, its block map and build.json
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "build",
    note = "Layout: GPT; p1 ESP (FAT32, GRUB + one kernel per slot), p2 root-a and p3 root-b (squashfs with a static ze as /sbin/init), p4 perm (ext4: ze/database.zefs, ze/build.json). See docs/appliance.md.",
    note = "Size: --size, else ZE_INSTALL_IMAGE_SIZE, else image.size-bytes. Kernel: --kernel, else the ze appliance kernel cache for the appliance's arch and profile, else build/kernel/Image. ze: --ze, else the running ze when it is static, else a static cargo build of this source tree (target/static).",
    note = "The image is written under a hidden name and renamed when complete; the file is sparse. Beside it goes <image>.bmap, its block map in bmaptool's bmap 2.0 format (`bmaptool copy` finds it), whose sha256 build.json records as bmap-sha256."
)]
pub struct ApplianceBuild {
    /// image size, e.g. 2G or 768M (overrides ZE_INSTALL_IMAGE_SIZE and appliance.json)
    #[argh(option)]
    pub size: Option<crate::appliance::size::ByteSize>,
    /// kernel for the image (default: the cache, then build/kernel/Image)
    #[argh(option)]
    pub kernel: Option<PathBuf>,
    /// static ze binary for the image's root (default: see below)
    #[argh(option)]
    pub ze: Option<PathBuf>,
    /// list missing prerequisites and exit (non-zero when something is missing)
    #[argh(switch)]
    pub check: bool,
    /// print the inputs and the partition layout without building
    #[argh(switch)]
    pub dry_run: bool,
    /// the appliance to build
    #[argh(positional)]
    pub name: String,
}

/// build a hybrid UEFI install ISO that writes the newest image to a disk
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "iso",
    note = "The ISO holds the installer kernel and initrd, the image's block map and only its mapped data (gzip), its sha256, ze/install.json and a random 32-hex media id; its boot loader (BOOTX64.EFI or BOOTAA64.EFI, after image.arch) boots `ze.source=iso ze.media-id=<id>` with the image's and the map's sha256, and ze.target when given.",
    note = "Kernel: --kernel, else the ze appliance kernel cache for the appliance's arch and profile, else build/kernel/Image. Initrd: --initrd, else build/initrd/initrd.img.gz (`ze appliance initrd`).",
    note = "With more than one fixed disk on the target, pass --target: the installer refuses to choose."
)]
pub struct ApplianceIso {
    /// list missing prerequisites and exit (non-zero when something is missing)
    #[argh(switch)]
    pub check: bool,
    /// the whole disk the installer writes, e.g. /dev/vda (ze.target=)
    #[argh(option)]
    pub target: Option<String>,
    /// installer kernel (default: the cache, then build/kernel/Image)
    #[argh(option)]
    pub kernel: Option<PathBuf>,
    /// installer initrd (default: build/initrd/initrd.img.gz)
    #[argh(option)]
    pub initrd: Option<PathBuf>,
    /// image to install (default: the appliance's newest ze-*.img)
    #[argh(option)]
    pub image: Option<PathBuf>,
    /// where to write the ISO (default: the image's name with .iso, beside it)
    #[argh(option)]
    pub output: Option<PathBuf>,
    /// print the inputs without building
    #[argh(switch)]
    pub dry_run: bool,
    /// the appliance
    #[argh(positional)]
    pub name: String,
}

/// run ze: the configuration in database.zefs, or bootstrap mode (the systemd unit's ExecStart)
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "start",
    note = "The config is file/active/ze.conf from database.zefs, else file/template/ze.conf, else bootstrap mode: a DHCP client on every ethernet interface and SSH on all interfaces, with the users of database.zefs.",
    note = "SIGHUP reloads (a committed config takes over); SIGTERM and SIGINT stop. The control socket for `ze cli` is daemon {{ socket PATH; }} or $XDG_RUNTIME_DIR/ze.socket.",
    note = "The config directory is --config, else ZE_CONFIG_DIR, else derived from the binary's location."
)]
pub struct Start {
    /// config directory holding database.zefs
    #[argh(option)]
    pub config: Option<PathBuf>,
    /// print the mode and the configuration that would run, and exit
    #[argh(switch)]
    pub dry_run: bool,
}

/// the operator CLI of a running `ze start`, over its control socket
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "cli",
    note = "Without COMMAND, reads commands from standard input (interactive on a terminal). Commands: show version, show interfaces, show configuration [candidate], config edit, commit, exit.",
    note = "The socket is --socket, else $XDG_RUNTIME_DIR/ze.socket, else /run/ze/ze.socket."
)]
pub struct Cli {
    /// the control socket
    #[argh(option)]
    pub socket: Option<PathBuf>,
    /// one command to run, e.g. `show version`
    #[argh(positional, greedy)]
    pub command: Vec<String>,
}

/// manage the machine records of `ze install remote`: per-machine image, disk, host name, install once|always|never
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "machines",
    note = "Records are <machines-dir>/<mac with dashes>.conf (default <pxe-dir>/machines); the status comes from <pxe-dir>/state/fleet.json. A running server reads changed records within a second. See docs/fleet.md."
)]
pub struct Machines {
    #[argh(subcommand)]
    pub what: MachinesWhat,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum MachinesWhat {
    List(MachinesList),
    Status(MachinesStatus),
    Show(MachinesShow),
    Add(MachinesAdd),
    Reinstall(MachinesReinstall),
    Remove(MachinesRemove),
}

/// list every machine record, with its status
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "list",
    note = "Bad records are listed on standard error with file:line:column and what is wrong, and the exit status is 1: the servers ignore them."
)]
pub struct MachinesList {
    /// PXE serve root, relative to the working directory (default: build/pxe)
    #[argh(option, default = "PathBuf::from(\"build/pxe\")")]
    pub pxe_dir: PathBuf,
    /// the records directory (default: <pxe-dir>/machines)
    #[argh(option)]
    pub machines: Option<PathBuf>,
}

/// the status table of every machine the servers saw (as `ze install remote` draws it on a terminal)
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "status",
    note = "The table is read from <pxe-dir>/state/fleet.json, which the servers save at most once a second. The same figures are served live as GET /install/status (JSON), GET / (a web page) and GET /metrics."
)]
pub struct MachinesStatus {
    /// PXE serve root, relative to the working directory (default: build/pxe)
    #[argh(option, default = "PathBuf::from(\"build/pxe\")")]
    pub pxe_dir: PathBuf,
    /// redraw every second until interrupted (on a terminal)
    #[argh(switch)]
    pub watch: bool,
    /// table width in columns (default: the terminal's, else 120)
    #[argh(option)]
    pub width: Option<usize>,
}

/// print one machine's record and its status
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "show")]
pub struct MachinesShow {
    /// PXE serve root, relative to the working directory (default: build/pxe)
    #[argh(option, default = "PathBuf::from(\"build/pxe\")")]
    pub pxe_dir: PathBuf,
    /// the records directory (default: <pxe-dir>/machines)
    #[argh(option)]
    pub machines: Option<PathBuf>,
    /// the machine's MAC, e.g. 52:54:00:12:34:56 or 52-54-00-12-34-56
    #[argh(positional)]
    pub mac: String,
}

/// write a machine's record
#[derive(FromArgs, Debug)]
#[argh(
    subcommand,
    name = "add",
    note = "Refuses to replace an existing record without --force; --force replaces it whole, the installed mark included. The password is stored only as a bcrypt hash (cost 10)."
)]
pub struct MachinesAdd {
    /// PXE serve root, relative to the working directory (default: build/pxe)
    #[argh(option, default = "PathBuf::from(\"build/pxe\")")]
    pub pxe_dir: PathBuf,
    /// the records directory (default: <pxe-dir>/machines)
    #[argh(option)]
    pub machines: Option<PathBuf>,
    /// the image to install: a plain file name of the image directory
    #[argh(option)]
    pub image: String,
    /// the whole disk to write (ze.target), e.g. /dev/vda
    #[argh(option)]
    pub target: Option<String>,
    /// the machine's host name (RFC 1123)
    #[argh(option)]
    pub hostname: Option<String>,
    /// once, always (default) or never
    #[argh(option, default = "crate::provision::machines::Install::Always")]
    pub install: crate::provision::machines::Install,
    /// this machine's admin user instead of the command line's
    #[argh(option)]
    pub ssh_username: Option<String>,
    /// its password; visible to every local user in `ps` while the command runs: prefer --ssh-password-file or --ssh-password-stdin (bcrypt-hashed, never written in plaintext)
    #[argh(option)]
    pub ssh_password: Option<String>,
    /// read that password from the first line of FILE
    #[argh(option)]
    pub ssh_password_file: Option<PathBuf>,
    /// read that password from the first line of standard input
    #[argh(switch)]
    pub ssh_password_stdin: bool,
    /// replace an existing record
    #[argh(switch)]
    pub force: bool,
    /// print the record that would be written, and write nothing
    #[argh(switch)]
    pub dry_run: bool,
    /// the machine's MAC, e.g. 52:54:00:12:34:56 or 52-54-00-12-34-56
    #[argh(positional)]
    pub mac: String,
}

/// clear a machine's installed mark: its next network boot installs again
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "reinstall")]
pub struct MachinesReinstall {
    /// PXE serve root, relative to the working directory (default: build/pxe)
    #[argh(option, default = "PathBuf::from(\"build/pxe\")")]
    pub pxe_dir: PathBuf,
    /// the records directory (default: <pxe-dir>/machines)
    #[argh(option)]
    pub machines: Option<PathBuf>,
    /// print what would change, and change nothing
    #[argh(switch)]
    pub dry_run: bool,
    /// the machine's MAC, e.g. 52:54:00:12:34:56 or 52-54-00-12-34-56
    #[argh(positional)]
    pub mac: String,
}

/// remove a machine's record: it follows the command line again
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "remove")]
pub struct MachinesRemove {
    /// PXE serve root, relative to the working directory (default: build/pxe)
    #[argh(option, default = "PathBuf::from(\"build/pxe\")")]
    pub pxe_dir: PathBuf,
    /// the records directory (default: <pxe-dir>/machines)
    #[argh(option)]
    pub machines: Option<PathBuf>,
    /// print what would be removed, and remove nothing
    #[argh(switch)]
    pub dry_run: bool,
    /// the machine's MAC, e.g. 52:54:00:12:34:56 or 52-54-00-12-34-56
    #[argh(positional)]
    pub mac: String,
}
