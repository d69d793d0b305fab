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
}

/// install ze on this host (binary, systemd service)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "install")]
pub struct Install {
    #[argh(subcommand)]
    pub what: InstallWhat,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum InstallWhat {
    Local(InstallLocal),
    Systemd(InstallSystemd),
    Remote(InstallRemote),
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
    note = "The password is stored only as a bcrypt hash (cost 10). Logs are at info level; set ze.log or ZE_LOG (and ze.log.<plugin>) to change it. SIGINT/SIGTERM stop the servers. See docs/install-remote.md.",
    note = "Run only on an isolated provisioning network with no other DHCP server."
)]
pub struct InstallRemote {
    /// network interface to serve on (all three servers bind to it)
    #[argh(option)]
    pub interface: String,
    /// provisioning subnet in CIDR form, /8 to /30 (e.g. 192.168.50.0/24)
    #[argh(option)]
    pub network: String,
    /// disk image to install (served at /install/image/<file name>)
    #[argh(option)]
    pub image: PathBuf,
    /// admin user name for the installed target
    #[argh(option)]
    pub ssh_username: String,
    /// admin password (bcrypt-hashed before it is used; never written in plaintext)
    #[argh(option)]
    pub ssh_password: String,
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
