//! What the imageserver serves: the image and boot roots, what is known
//! about the image to install (hashed and mapped once per name, length
//! and mtime), the credential database, and how a request path resolves
//! to a body.

use super::{
    bootscript::{self, BootScript},
    imagemap::{self, ServedMap},
};
use crate::{
    bmap,
    manifest::Manifest,
    provision::{
        fleet::FleetLink,
        mac::Mac,
        machines::{
            boot::{NextBoot, local_disk_script},
            record::Record,
        },
        servefs::{OpenError, Root},
        status::{self, Fetch},
        views,
    },
    wire::http,
};
use anyhow::Context as _;
use std::{
    collections::HashMap,
    fs::File,
    io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

/// The plugin's name: its config block and log target.
pub const NAME: &str = "imageserver";
/// The file name of the database route.
pub const DATABASE_NAME: &str = "database.zefs";

/// The image the server offers and what is known about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub name: String,
    pub len: u64,
    pub modified: Option<SystemTime>,
    pub sha256: String,
    pub built: Option<String>,
    pub ze_version: Option<String>,
    /// Its block map (`/install/image/<name>.bmap`).
    pub map: Arc<ServedMap>,
}

/// The lexicographically last `.img` file (plain name, regular file) in `dir`.
pub fn latest_image(dir: &Path) -> io::Result<Option<String>> {
    let mut best: Option<String> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.ends_with(".img") || !bootscript::is_plain_name(&name) {
            continue;
        }
        if !entry.file_type()?.is_file() {
            continue;
        }
        if best.as_ref().is_none_or(|b| name > *b) {
            best = Some(name);
        }
    }
    Ok(best)
}

/// The `database.zefs` served to installers: one admin user with the
/// given bcrypt hash, plus creation time and version (as `ze init` writes).
pub fn build_database(username: &str, password_hash: &str, now: i64) -> anyhow::Result<Vec<u8>> {
    Ok(crate::zefs::new_database_with_hash(username, password_hash, now)?.to_bytes())
}

/// Images whose digests and maps are kept at once (one per record's
/// image in a mixed rack; past this the cache starts over).
pub const MAX_CACHED_IMAGES: usize = 256;

/// What the request handlers share.
#[derive(Debug)]
pub(crate) struct Site {
    pub image_root: Root,
    pub boot_root: Root,
    pub configured_image: Option<String>,
    /// Where derived block maps are kept.
    pub state_dir: Option<PathBuf>,
    /// The command line's credential database, built once.
    pub database: Option<Arc<Vec<u8>>>,
    pub port: u16,
    pub idle: Duration,
    /// Images hashed so far, each checked by (length, mtime) before use.
    pub image_cache: Mutex<HashMap<String, ImageInfo>>,
    /// The status table and the machine records.
    pub fleet: FleetLink,
}

impl Site {
    pub fn image_info(&self, name: &str) -> anyhow::Result<ImageInfo> {
        let (mut file, meta) = self.image_root.open_file(name).map_err(|e| {
            anyhow::anyhow!("image {name} in {}: {e}", self.image_root.path().display())
        })?;
        let modified = meta.modified().ok();
        if let Some(info) = self
            .image_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            && info.len == meta.len()
            && info.modified == modified
        {
            return Ok(info.clone());
        }
        let beside = imagemap::beside(&self.image_root, name, meta.len())?;
        let sha256 = imagemap::hash_image(&mut file, name, meta.len(), beside.as_ref())?;
        let map = match beside {
            Some(b) => imagemap::served_beside(b),
            None => imagemap::cached_or_derived(
                self.state_dir.as_deref(),
                &file,
                name,
                modified,
                &sha256,
            )?,
        };
        let manifest_path = self.image_root.path().join("build.json");
        let manifest = match std::fs::read_to_string(&manifest_path) {
            Ok(text) => match Manifest::parse(&text) {
                Ok(m) if m.image == name => {
                    if let Some(sum) = &m.sha256
                        && !sum.eq_ignore_ascii_case(&sha256)
                    {
                        tracing::warn!(
                            target: NAME,
                            image = name,
                            manifest = %manifest_path.display(),
                            "build.json names another sha256 than the image has: the image changed after it was built"
                        );
                    }
                    Some(m)
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(target: NAME, manifest = %manifest_path.display(), "build.json is not valid: {e}");
                    None
                }
            },
            Err(_) => None,
        };
        let info = ImageInfo {
            name: name.to_string(),
            len: meta.len(),
            modified,
            sha256,
            built: manifest.as_ref().map(|m| m.built.clone()),
            ze_version: manifest.as_ref().map(|m| m.ze_version.clone()),
            map: Arc::new(map),
        };
        let mut cache = self.image_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED_IMAGES && !cache.contains_key(name) {
            cache.clear();
        }
        cache.insert(name.to_string(), info.clone());
        Ok(info)
    }

    /// The image `ze.image` names: the configured one, else the last `.img`.
    pub fn current_image(&self) -> anyhow::Result<String> {
        match &self.configured_image {
            Some(n) => Ok(n.clone()),
            None => latest_image(self.image_root.path())?
                .with_context(|| format!("no .img file in {}", self.image_root.path().display())),
        }
    }
}

/// A response body.
pub(crate) enum Body {
    File(File, u64),
    Bytes(Arc<Vec<u8>>),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::File(_, n) => *n,
            Body::Bytes(b) => b.len() as u64,
        }
    }
}

/// What a request resolved to.
pub(crate) enum Resolved {
    Body {
        body: Body,
        content_type: &'static str,
    },
    Error(u16, String),
}

fn content_type(name: &str) -> &'static str {
    if name.ends_with(".ipxe") {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

fn open_error(e: OpenError) -> Resolved {
    match e {
        OpenError::NotFound | OpenError::NotAFile => Resolved::Error(404, "not found\n".into()),
        OpenError::Forbidden => Resolved::Error(403, "forbidden\n".into()),
        OpenError::Io(e) => Resolved::Error(500, format!("{e}\n")),
    }
}

/// The machine a request is about: the `mac=` of its query when there is
/// one (400 when it is not a MAC), else the one the status table last saw
/// at `peer` (its lease, or its installer's first report).
fn requester(site: &Site, target: &str, peer: Ipv4Addr) -> Result<Option<Mac>, Resolved> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("mac=") {
            return v
                .parse::<Mac>()
                .map(Some)
                .map_err(|e| Resolved::Error(400, format!("mac: {e}\n")));
        }
    }
    Ok(site.fleet.status.as_ref().and_then(|f| f.mac_of(peer)))
}

fn bytes(body: Vec<u8>, content_type: &'static str) -> Resolved {
    Resolved::Body {
        body: Body::Bytes(Arc::new(body)),
        content_type,
    }
}

pub(crate) fn resolve(site: &Site, target: &str, local: Ipv4Addr, peer: Ipv4Addr) -> Resolved {
    if let Some(fleet) = &site.fleet.status {
        if target.starts_with(status::report::PREFIX) {
            let reply = views::report(fleet, target, peer);
            if reply.status == 200 {
                after_report(site, target);
            }
            return match reply.status {
                200 => bytes(reply.body.into_bytes(), reply.content_type),
                status => Resolved::Error(status, reply.body),
            };
        }
        if let Some(reply) = views::route(fleet, target, peer) {
            return bytes(reply.body.into_bytes(), reply.content_type);
        }
    }
    let segments = match http::path_segments(target) {
        Ok(s) => s,
        Err(e) => return Resolved::Error(400, format!("{e}\n")),
    };
    let mac = match requester(site, target, peer) {
        Ok(m) => m,
        Err(bad) => return bad,
    };
    let record = mac.and_then(|m| site.fleet.record(m));
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let (resolved, fetch) = match parts.as_slice() {
        ["install", "image", name] if name.ends_with(bmap::SUFFIX) => {
            let image = &name[..name.len() - bmap::SUFFIX.len()];
            let r = match current_map(site, image, record.as_ref()) {
                Ok(Some(map)) => Resolved::Body {
                    body: Body::Bytes(map.text.clone()),
                    content_type: "application/xml",
                },
                Ok(None) => Resolved::Error(404, "not found\n".into()),
                Err(e) => {
                    tracing::warn!(target: NAME, "cannot serve the block map: {e:#}");
                    Resolved::Error(500, format!("cannot serve the block map: {e:#}\n"))
                }
            };
            (r, Fetch::Map)
        }
        ["install", "image", name] => {
            let allowed = match &site.configured_image {
                Some(c) => c == name,
                None => name.ends_with(".img"),
            } || record.as_ref().is_some_and(|r| r.image == *name);
            let r = if !allowed {
                Resolved::Error(404, "not found\n".into())
            } else {
                match site.image_root.open_file(name) {
                    Ok((f, m)) => Resolved::Body {
                        body: Body::File(f, m.len()),
                        content_type: "application/octet-stream",
                    },
                    Err(e) => open_error(e),
                }
            };
            (r, Fetch::Image)
        }
        ["install", "boot", name] => match site.boot_root.open_file(name) {
            Ok((f, m)) => (
                Resolved::Body {
                    body: Body::File(f, m.len()),
                    content_type: content_type(name),
                },
                match *name {
                    bootscript::KERNEL => Fetch::Kernel,
                    bootscript::INITRD => Fetch::Initrd,
                    _ => Fetch::BootScript,
                },
            ),
            Err(OpenError::NotFound) if *name == "boot.ipxe" => {
                return boot_script(site, local, mac, record.as_ref());
            }
            Err(e) => (open_error(e), Fetch::BootScript),
        },
        ["install", db] if *db == DATABASE_NAME => {
            (database(site, record.as_ref()), Fetch::Database)
        }
        _ => return Resolved::Error(404, "not found\n".into()),
    };
    if let (Resolved::Body { .. }, Some(mac)) = (&resolved, mac) {
        site.fleet.event(mac, status::Event::Fetch(fetch));
    }
    resolved
}

/// After a report was taken: a `complete` marks an `install once`
/// record installed (checklist F4), with the image its record names.
fn after_report(site: &Site, target: &str) {
    let Ok((mac, status::report::Report::Complete)) = status::report::parse(target) else {
        return;
    };
    let Some(machines) = &site.fleet.machines else {
        return;
    };
    let Some(record) = machines.get(mac) else {
        return;
    };
    if let Err(e) = machines.mark_installed(mac, &record.image, crate::timefmt::now()) {
        tracing::warn!(target: NAME, mac = %mac, "cannot mark the machine installed: {e}");
    }
}

/// The credential database for a machine: its record's user when it has
/// one, else the command line's.
fn database(site: &Site, record: Option<&Record>) -> Resolved {
    if let Some(ssh) = record.and_then(|r| r.ssh.as_ref()) {
        return match build_database(&ssh.username, &ssh.password_hash, crate::timefmt::now()) {
            Ok(db) => bytes(db, "application/octet-stream"),
            Err(e) => Resolved::Error(500, format!("cannot build the database: {e:#}\n")),
        };
    }
    match &site.database {
        Some(bytes) => Resolved::Body {
            body: Body::Bytes(bytes.clone()),
            content_type: "application/octet-stream",
        },
        None => Resolved::Error(
            404,
            "no credentials configured (ssh-username, ssh-password-hash)\n".into(),
        ),
    }
}

/// The map of `image` when it is the image the server offers, or the one
/// the requesting machine's record names.
fn current_map(
    site: &Site,
    image: &str,
    record: Option<&Record>,
) -> anyhow::Result<Option<Arc<ServedMap>>> {
    if record.is_none_or(|r| r.image != image) && site.current_image()? != image {
        return Ok(None);
    }
    Ok(Some(site.image_info(image)?.map))
}

/// The generated `boot.ipxe` (checklist F1/F4): the command line's
/// install; with records, the machine's own — its image, disk and
/// digests — or its local disk once installed, or nothing. A machine not
/// named by `mac=` nor known by address gets a script that asks again
/// with its MAC.
fn boot_script(
    site: &Site,
    local: Ipv4Addr,
    mac: Option<Mac>,
    record: Option<&Record>,
) -> Resolved {
    let script = |text: String| bytes(text.into_bytes(), "text/plain; charset=utf-8");
    let Some(mac) = mac else {
        if site.fleet.per_machine() {
            return script(format!(
                "#!ipxe\n\
                 # generated by ze imageserver: each machine gets its own boot script\n\
                 chain http://{}/install/boot/boot.ipxe?mac=${{netX/mac:hexhyp}}\n",
                bootscript::url_host(local, site.port)
            ));
        }
        return match generated_script(site, local, None, None) {
            Ok(text) => script(text),
            Err(e) => script_error(e),
        };
    };
    match site.fleet.next_boot(record) {
        NextBoot::Install(r) => match generated_script(site, local, r, Some(mac)) {
            Ok(text) => {
                site.fleet
                    .event(mac, status::Event::Fetch(Fetch::BootScript));
                script(text)
            }
            Err(e) => script_error(e),
        },
        NextBoot::LocalDisk(done) => {
            site.fleet
                .event(mac, status::Event::Fetch(Fetch::LocalDisk));
            script(local_disk_script(mac, done))
        }
        NextBoot::Nothing(why) => {
            tracing::info!(target: NAME, mac = %mac, "boot.ipxe refused: {why}");
            Resolved::Error(403, format!("{mac}: {why}\n"))
        }
    }
}

fn script_error(e: anyhow::Error) -> Resolved {
    tracing::warn!(target: NAME, "cannot generate boot.ipxe: {e:#}");
    Resolved::Error(500, format!("cannot generate boot.ipxe: {e:#}\n"))
}

fn generated_script(
    site: &Site,
    local: Ipv4Addr,
    record: Option<&Record>,
    mac: Option<Mac>,
) -> anyhow::Result<String> {
    let name = match record {
        Some(r) => r.image.clone(),
        None => site.current_image()?,
    };
    let info = site
        .image_info(&name)
        .with_context(|| match (record, mac) {
            (Some(_), Some(mac)) => format!("the record of {mac} names image {name}"),
            _ => format!("image {name}"),
        })?;
    Ok(BootScript {
        server: local,
        port: site.port,
        image: &info.name,
        sha256: Some(&info.sha256),
        bmap_sha256: Some(&info.map.sha256),
        target: record.and_then(|r| r.target.as_deref()),
        mac,
    }
    .render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provision::{
        fleet::{FleetConfig, FleetLink},
        machines::{Install, boot::Unknown, record},
        status::{DhcpClient, DhcpMessage, Event, Stage},
    };
    use std::fs;

    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const HASH: &str = "$2b$04$0123456789012345678901uC8c5aXbLl4mJbHlb4m8n5dXf1wUjpa";

    fn text(r: Resolved) -> (u16, String) {
        match r {
            Resolved::Body {
                body: Body::Bytes(b),
                ..
            } => (200, String::from_utf8_lossy(&b).into_owned()),
            Resolved::Body { .. } => (200, "<file>".into()),
            Resolved::Error(status, t) => (status, t),
        }
    }

    struct Rack {
        _dir: tempfile::TempDir,
        site: Site,
        machines: PathBuf,
    }

    /// An image directory with two images, a records directory with a
    /// record per `install` kind, and the status table.
    fn rack(unknown: Unknown) -> Rack {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for d in ["images", "boot", "state", "machines"] {
            fs::create_dir(p.join(d)).unwrap();
        }
        fs::write(p.join("images/a.img"), vec![1u8; 8192]).unwrap();
        fs::write(p.join("images/b.img"), vec![2u8; 8192]).unwrap();
        let machines = p.join("machines");
        let put = |mac: &str, r: &record::Record| {
            let mac: Mac = mac.parse().unwrap();
            fs::write(
                crate::provision::machines::record_path(&machines, mac),
                record::render(mac, r),
            )
            .unwrap();
        };
        let mut once = record::Record::new("b.img");
        once.install = Install::Once;
        once.target = Some("/dev/nvme0n1".into());
        once.ssh = Some(record::Ssh {
            username: "ops".into(),
            password_hash: HASH.into(),
        });
        put("52:54:00:00:00:01", &once);
        let mut never = record::Record::new("b.img");
        never.install = Install::Never;
        put("52:54:00:00:00:02", &never);
        put("52:54:00:00:00:03", &record::Record::new("missing.img"));
        let site = Site {
            image_root: Root::open(&p.join("images")).unwrap(),
            boot_root: Root::open(&p.join("boot")).unwrap(),
            configured_image: Some("a.img".into()),
            state_dir: Some(p.join("state")),
            database: None,
            port: 80,
            idle: Duration::from_secs(1),
            image_cache: Mutex::new(HashMap::new()),
            fleet: FleetLink::open(&FleetConfig {
                state_dir: Some(p.join("state")),
                machines: Some(machines.clone()),
                unknown,
            }),
        };
        Rack {
            _dir: dir,
            site,
            machines,
        }
    }

    fn get(r: &Rack, target: &str, peer: &str) -> (u16, String) {
        text(resolve(&r.site, target, SERVER, peer.parse().unwrap()))
    }

    #[test]
    fn f1_f4_each_machine_gets_its_own_boot_script() {
        let r = rack(Unknown::Follow);
        let peer = "192.0.2.50";
        // Not named and not known by address: ask again with the MAC.
        let (status, s) = get(&r, "/install/boot/boot.ipxe", peer);
        assert_eq!(status, 200);
        assert!(
            s.contains("chain http://192.0.2.1/install/boot/boot.ipxe?mac=${netX/mac:hexhyp}\n"),
            "{s}"
        );
        // A record: its image, its disk, its digests.
        let (_, s) = get(&r, "/install/boot/boot.ipxe?mac=52-54-00-00-00-01", peer);
        assert!(s.contains(" ze.image=b.img "), "{s}");
        assert!(s.contains(" ze.target=/dev/nvme0n1 "), "{s}");
        let b = r.site.image_info("b.img").unwrap();
        assert!(s.contains(&format!("ze.sha256={}", b.sha256)), "{s}");
        assert!(
            s.contains(&format!("ze.bmap-sha256={}", b.map.sha256)),
            "{s}"
        );
        // No record: the command line's image.
        let (_, s) = get(&r, "/install/boot/boot.ipxe?mac=52-54-00-00-00-09", peer);
        assert!(s.contains(" ze.image=a.img "), "{s}");
        assert!(!s.contains("ze.target"), "{s}");
        // install never: refused with the reason.
        let (status, s) = get(&r, "/install/boot/boot.ipxe?mac=52-54-00-00-00-02", peer);
        assert_eq!(
            (status, s.as_str()),
            (403, "52:54:00:00:00:02: its record says install never\n")
        );
        // A record naming a missing image: an error naming the record,
        // and the other machines are still served.
        let (status, s) = get(&r, "/install/boot/boot.ipxe?mac=52-54-00-00-00-03", peer);
        assert_eq!(status, 500, "{s}");
        assert!(
            s.contains("the record of 52:54:00:00:00:03 names image missing.img"),
            "{s}"
        );
        let (status, _) = get(&r, "/install/boot/boot.ipxe?mac=52-54-00-00-00-01", peer);
        assert_eq!(status, 200);
        // A bad MAC is a 400.
        let (status, s) = get(&r, "/install/boot/boot.ipxe?mac=zz", peer);
        assert_eq!(status, 400, "{s}");
    }

    #[test]
    fn f1_f4_f5_the_machine_is_known_by_its_lease_and_installs_once() {
        let r = rack(Unknown::Follow);
        let fleet = r.site.fleet.status.clone().unwrap();
        let mac: Mac = "52:54:00:00:00:01".parse().unwrap();
        let peer = "192.0.2.11";
        fleet
            .event(
                mac,
                Event::Dhcp {
                    message: DhcpMessage::Ack,
                    ip: Some(peer.parse().unwrap()),
                    client: DhcpClient::Ipxe,
                    hostname: None,
                },
            )
            .unwrap();
        // Known by its address: its own script without asking again, its
        // own image and map and its own credentials.
        let (_, s) = get(&r, "/install/boot/boot.ipxe", peer);
        assert!(s.contains(" ze.image=b.img "), "{s}");
        assert_eq!(fleet.machine(mac).unwrap().stage, Stage::Ipxe);
        assert_eq!(get(&r, "/install/image/b.img", peer).0, 200);
        assert_eq!(
            get(&r, "/install/image/b.img", "192.0.2.12").0,
            404,
            "another machine's image"
        );
        assert_eq!(get(&r, "/install/image/b.img.bmap", peer).0, 200);
        let (status, db) = match resolve(
            &r.site,
            "/install/database.zefs",
            SERVER,
            peer.parse().unwrap(),
        ) {
            Resolved::Body {
                body: Body::Bytes(b),
                ..
            } => (200, b),
            _ => (0, Arc::new(vec![])),
        };
        assert_eq!(status, 200);
        let db = crate::zefs::Zefs::parse(&db).unwrap();
        assert!(db.user("ops").is_some(), "the record's user");
        assert_eq!(fleet.machine(mac).unwrap().stage, Stage::Database);
        // complete: the record is marked installed, the next boot goes to
        // the local disk.
        let (status, _) = get(&r, "/install/report/52-54-00-00-00-01/complete", peer);
        assert_eq!(status, 200);
        let rec = crate::provision::machines::read_record(
            &crate::provision::machines::record_path(&r.machines, mac),
        )
        .unwrap();
        assert_eq!(rec.installed.as_ref().unwrap().image, "b.img");
        let (_, s) = get(&r, "/install/boot/boot.ipxe", peer);
        assert!(s.contains("boot the local disk"), "{s}");
        assert!(s.contains("sanboot --no-describe --drive 0x80"), "{s}");
        // The views are served from the same table.
        let (status, json) = get(&r, "/install/status", peer);
        assert_eq!(status, 200);
        assert!(json.contains("\"52:54:00:00:00:01\""), "{json}");
        assert_eq!(get(&r, "/metrics", peer).0, 200);
        assert_eq!(get(&r, "/", peer).0, 200);
    }

    #[test]
    fn f1_unknown_ignore_refuses_machines_without_a_record() {
        let r = rack(Unknown::Ignore);
        let (status, s) = get(
            &r,
            "/install/boot/boot.ipxe?mac=52-54-00-00-00-09",
            "192.0.2.9",
        );
        assert_eq!(status, 403, "{s}");
        assert!(s.contains("no record"), "{s}");
        let (status, _) = get(
            &r,
            "/install/boot/boot.ipxe?mac=52-54-00-00-00-01",
            "192.0.2.9",
        );
        assert_eq!(status, 200);
    }
}
