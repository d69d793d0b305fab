//! `imageserver`: the HTTP/1.1 server of the install (RFC 9110/9112):
//! keep-alive, `GET` and `HEAD`, one byte `Range` (206/416), bodies sent
//! with `sendfile(2)`.
//!
//! ```text
//! imageserver {
//!     image-dir /home/op/.config/ze/appliances/prod;   # where the images are
//!     image ze-20260617-160000.img;   # optional: default the lexicographically last .img
//!     boot-dir /srv/pxe/boot;         # vmlinuz, initrd.img.gz, optional static boot.ipxe
//!     state-dir /srv/pxe/state;       # optional: where derived block maps are kept
//!     ssh-username admin;             # with ssh-password-hash: /install/database.zefs
//!     ssh-password-hash "$2b$10$…";
//!     interface br0;                  # optional: bind to this interface
//!     address 192.0.2.1;              # optional: listen address (default all)
//!     port 80;
//!     max-connections 512;            # at once; at the cap the idle longest is closed
//!     max-connections-per-client 16;  # at once from one address
//!     head-timeout 10;                # seconds for the first byte, and for a whole head
//!     idle-timeout 30;                # seconds a keep-alive connection may idle
//! }
//! ```
//!
//! Routes: `/install/image/<name>` (`.img` files of image-dir only; just
//! the configured one when `image` is set), `/install/image/<image>.bmap`
//! (the block map of the image `ze.image` names: see [`imagemap`]),
//! `/install/boot/<file>` (files
//! of boot-dir), `/install/boot/boot.ipxe` (the file if boot-dir has one,
//! else generated per request), `/install/database.zefs` (built at start
//! from the credentials; the password is only ever a bcrypt hash here).
//! Nothing outside these roots is served: the path is percent-decoded per
//! segment with dot segments refused, and files are opened beneath their
//! root by the kernel (`openat2(RESOLVE_BENEATH)`).
//!
//! The rooms: [`site`] (what is served and how a path resolves),
//! [`conn`] (connections, keep-alive, ranges, sendfile), [`bootscript`]
//! (the generated `boot.ipxe`), [`imagemap`] (the image's block map:
//! given, cached or derived).

pub mod bootscript;
pub mod conn;
pub mod imagemap;
pub mod site;

pub use site::{DATABASE_NAME, ImageInfo, NAME, build_database, latest_image};

use crate::{
    config::schema::{Block, ConfigError},
    daemon::{Plugin, PluginKind, Service},
    provision::{
        fleet::{FleetConfig, FleetLink},
        servefs::Root,
    },
    timefmt,
};
use anyhow::Context as _;
use conn::ImageService;
use imagemap::MapSource;
use site::Site;
use socket2::{Domain, Protocol, Socket, Type};
use std::{
    net::{Ipv4Addr, SocketAddrV4, TcpListener},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

/// The registry entry.
pub const KIND: PluginKind = PluginKind {
    name: NAME,
    configure,
};
/// Connections at once, by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Connections at once from one client address, by default.
pub const DEFAULT_MAX_PER_CLIENT: usize = 16;
/// Seconds for a new connection's first byte and for a whole request head.
pub const DEFAULT_HEAD_SECS: u64 = 10;
/// How long a keep-alive connection may idle, by default (seconds).
pub const DEFAULT_IDLE_SECS: u64 = 30;

/// An `imageserver { … }` block, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    pub image_dir: PathBuf,
    pub image: Option<String>,
    pub boot_dir: PathBuf,
    pub state_dir: Option<PathBuf>,
    pub ssh_username: Option<String>,
    pub ssh_password_hash: Option<String>,
    pub interface: Option<String>,
    pub address: Ipv4Addr,
    pub port: u16,
    pub max_connections: usize,
    pub max_per_client: usize,
    pub head: Duration,
    pub idle: Duration,
    /// The status table and the machine records.
    pub fleet: FleetConfig,
}

fn configure(
    block: &Block<'_>,
    _env: &crate::daemon::PluginEnv,
) -> Result<Box<dyn Plugin>, ConfigError> {
    Ok(Box::new(ImagePlugin {
        config: read_config(block)?,
    }))
}

/// Read an `imageserver` block.
pub fn read_config(block: &Block<'_>) -> Result<ImageConfig, ConfigError> {
    let required = |name: &str| {
        block
            .abs_path(name)?
            .ok_or_else(|| block.error(block.pos(), name, "missing: this setting is required"))
    };
    let image_dir = required("image-dir")?;
    let boot_dir = required("boot-dir")?;
    let image = match block.one("image")? {
        None => None,
        Some(node) => {
            let key = block.child_key("image");
            let a = crate::config::schema::leaf_args(node, &key, 1, "one file name")?;
            if !bootscript::is_plain_name(&a[0]) {
                return Err(ConfigError::new(
                    node.pos,
                    key,
                    format!(
                        "{:?} must be a plain file name (letters, digits, '.', '-', '_', '+')",
                        a[0]
                    ),
                ));
            }
            Some(a[0].clone())
        }
    };
    let ssh_username = block.str("ssh-username")?.map(str::to_string);
    let hash_node = block.one("ssh-password-hash")?;
    let ssh_password_hash = match hash_node {
        None => None,
        Some(node) => {
            let key = block.child_key("ssh-password-hash");
            let a = crate::config::schema::leaf_args(node, &key, 1, "one bcrypt hash")?;
            if !(a[0].starts_with("$2b$") || a[0].starts_with("$2a$") || a[0].starts_with("$2y$"))
                || a[0].len() != 60
            {
                return Err(ConfigError::new(
                    node.pos,
                    key,
                    "expected a bcrypt hash ($2b$10$…, 60 characters); ze install remote writes it from --ssh-password",
                ));
            }
            Some(a[0].clone())
        }
    };
    if let Some(u) = &ssh_username
        && let Err(e) = crate::credentials::validate_username(u)
    {
        return Err(block.error(block.pos(), "ssh-username", e.to_string()));
    }
    if ssh_username.is_some() != ssh_password_hash.is_some() {
        return Err(block.error(
            block.pos(),
            if ssh_username.is_some() {
                "ssh-password-hash"
            } else {
                "ssh-username"
            },
            "ssh-username and ssh-password-hash go together",
        ));
    }
    let state_dir = block.abs_path("state-dir")?;
    Ok(ImageConfig {
        fleet: crate::provision::fleet::read_config(block, state_dir.clone())?,
        image_dir,
        image,
        boot_dir,
        state_dir,
        ssh_username,
        ssh_password_hash,
        interface: block.str("interface")?.map(str::to_string),
        address: block.ipv4("address")?.unwrap_or(Ipv4Addr::UNSPECIFIED),
        port: block.number("port", 1..=65535)?.map_or(80, |n| n as u16),
        max_connections: block
            .number("max-connections", 1..=4096)?
            .map_or(DEFAULT_MAX_CONNECTIONS, |n| n as usize),
        max_per_client: block
            .number("max-connections-per-client", 1..=4096)?
            .map_or(DEFAULT_MAX_PER_CLIENT, |n| n as usize),
        head: Duration::from_secs(
            block
                .number("head-timeout", 1..=3600)?
                .unwrap_or(DEFAULT_HEAD_SECS),
        ),
        idle: Duration::from_secs(
            block
                .number("idle-timeout", 1..=3600)?
                .unwrap_or(DEFAULT_IDLE_SECS),
        ),
    })
}

#[derive(Debug)]
struct ImagePlugin {
    config: ImageConfig,
}

fn log_image(info: &ImageInfo) {
    tracing::info!(
        target: NAME,
        image = info.name.as_str(),
        built = info.built.as_deref().unwrap_or("unknown"),
        "ze-version" = info.ze_version.as_deref().unwrap_or("unknown"),
        sha256 = info.sha256.as_str(),
        bmap = info.map.sha256.as_str(),
        mapped = info.map.mapped_bytes,
        "image to install"
    );
    let (source, file) = match &info.map.source {
        MapSource::ImageDir(p) => ("image-dir", Some(p)),
        MapSource::Cached(p) => ("cached", Some(p)),
        MapSource::Derived(p) => ("derived", p.as_ref()),
    };
    tracing::info!(
        target: NAME,
        source,
        file = %file.map_or_else(|| "-".into(), |p| p.display().to_string()),
        ranges = info.map.range_count,
        "block map"
    );
}

impl Plugin for ImagePlugin {
    fn start(self: Box<Self>) -> anyhow::Result<Box<dyn Service>> {
        let c = self.config;
        let image_root = Root::open(&c.image_dir).context("the image directory")?;
        let boot_root = Root::open(&c.boot_dir).context("the boot directory")?;
        let database = match (&c.ssh_username, &c.ssh_password_hash) {
            (Some(u), Some(h)) => Some(Arc::new(build_database(u, h, timefmt::now())?)),
            _ => None,
        };
        let site = Site {
            image_root,
            boot_root,
            configured_image: c.image.clone(),
            state_dir: c.state_dir.clone(),
            database,
            port: c.port,
            idle: c.idle,
            image_cache: Mutex::new(Default::default()),
            fleet: FleetLink::open(&c.fleet),
        };
        if let Some(m) = &site.fleet.machines {
            tracing::info!(target: NAME, machines = %m.dir().display(), records = m.len(), unknown = c.fleet.unknown.as_str(), "per-machine boot scripts");
        }
        let name = site.current_image()?;
        let info = site.image_info(&name)?;
        log_image(&info);
        for f in [bootscript::KERNEL, bootscript::INITRD] {
            if let Err(e) = site.boot_root.open_file(f) {
                tracing::warn!(
                    target: NAME,
                    file = %c.boot_dir.join(f).display(),
                    "boot file not servable: {e}"
                );
            }
        }
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        if let Some(i) = &c.interface {
            s.bind_device(Some(i.as_bytes())).with_context(|| {
                format!("cannot bind to interface {i} (does it exist? are you root?)")
            })?;
        }
        let addr = SocketAddrV4::new(c.address, c.port);
        s.bind(&addr.into())
            .with_context(|| format!("cannot listen on TCP {addr}"))?;
        s.listen(conn::LISTEN_BACKLOG)?;
        let listener: TcpListener = s.into();
        listener.set_nonblocking(true)?;
        tracing::info!(target: NAME, listen = %addr, "listening");
        Ok(Box::new(ImageService::new(
            listener,
            Arc::new(site),
            conn::Limits {
                max_connections: c.max_connections,
                per_client: c.max_per_client,
                head: c.head,
            },
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::brace;

    #[test]
    fn latest_image_is_the_lexicographically_last_plain_img() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "ze-20260101-000000.img",
            "ze-20261231-235959.img",
            "zz bad.img",
            "notes.txt",
        ] {
            std::fs::write(d.path().join(n), "x").unwrap();
        }
        std::fs::create_dir(d.path().join("zzz.img")).unwrap();
        assert_eq!(
            latest_image(d.path()).unwrap().as_deref(),
            Some("ze-20261231-235959.img")
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(latest_image(empty.path()).unwrap(), None);
    }

    #[test]
    fn r9_r12_database_holds_the_hash_never_a_plaintext() {
        let hash = crate::credentials::hash_password("hunter2").unwrap();
        let bytes = build_database("admin", &hash, 1_781_712_000).unwrap();
        assert!(!bytes.windows(7).any(|w| w == b"hunter2"));
        let db = crate::zefs::Zefs::parse(&bytes).unwrap();
        let user = db.user("admin").unwrap();
        assert_eq!(user.role, "admin");
        assert!(crate::credentials::verify_password(
            "hunter2",
            &user.password_hash
        ));
    }

    #[test]
    fn config_errors() {
        let read = |t: &str| {
            let doc = brace::parse(t).unwrap();
            let b = Block::new(&doc.nodes[0], NAME).unwrap();
            read_config(&b).and_then(|c| b.finish().map(|_| c))
        };
        let ok = "imageserver { image-dir /i; boot-dir /b; }";
        assert_eq!(read(ok).unwrap().port, 80);
        assert_eq!(
            read("imageserver { image-dir /i; boot-dir /b; image \"a b.img\"; }")
                .unwrap_err()
                .to_string(),
            "1:42: imageserver.image: \"a b.img\" must be a plain file name (letters, digits, '.', '-', '_', '+')"
        );
        assert_eq!(
            read("imageserver { image-dir /i; boot-dir /b; ssh-username admin; }")
                .unwrap_err()
                .to_string(),
            "1:1: imageserver.ssh-password-hash: ssh-username and ssh-password-hash go together"
        );
        assert_eq!(
            read("imageserver { image-dir /i; boot-dir /b; ssh-username admin; ssh-password-hash plain; }").unwrap_err().to_string(),
            "1:62: imageserver.ssh-password-hash: expected a bcrypt hash ($2b$10$…, 60 characters); ze install remote writes it from --ssh-password"
        );
        assert_eq!(
            read("imageserver { boot-dir /b; }")
                .unwrap_err()
                .to_string(),
            "1:1: imageserver.image-dir: missing: this setting is required"
        );
    }
}
