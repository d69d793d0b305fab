//! The imageserver's block maps (checklist W2, W3, R7, R9, R15) against
//! real curl and bmaptool, in network namespaces the tests create: a map
//! derived for an image that has none is the one `ze appliance build`'s
//! builder writes, is kept in the state directory and reused; the map
//! and then the image's ranges come over one keep-alive connection with
//! exactly the image's bytes; a `bmaptool create` map beside the image is
//! served as it is; and every kind of bad map is refused at startup,
//! naming the file and what is wrong, after which a good map is served
//! again (drop-and-survive).

mod pxe_support;

use pxe_support::*;
use sha2::{Digest, Sha256};
use std::{
    fs,
    io::Write,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    time::Duration,
};
use ze_installer::bmap::Bmap;

const SERVER: &str = "192.0.2.1";
const IMAGE: &str = "ze-20260101-000000.img";
const MIB: u64 = 1 << 20;

/// An image directory, a boot directory and a state directory.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    /// An 8 MiB + 1000 byte image: a head, holes, a written extent with
    /// zero blocks inside it, and data in the short last block.
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(&d.join("boot/vmlinuz"), &pattern(10_000, 1));
        write(&d.join("boot/initrd.img.gz"), &pattern(1000, 2));
        fs::create_dir_all(d.join("img")).unwrap();
        let f = fs::File::create(d.join("img").join(IMAGE)).unwrap();
        let len = 8 * MIB + 1000;
        f.set_len(len).unwrap();
        f.write_all_at(&pattern(3 * 4096 + 17, 3), 0).unwrap();
        let mut extent = pattern(64 * 4096, 4);
        for zero in [0usize, 5, 6, 7, 30, 63] {
            extent[zero * 4096..(zero + 1) * 4096].fill(0);
        }
        f.write_all_at(&extent, 2 * MIB).unwrap();
        f.write_all_at(b"tail", len - 4).unwrap();
        f.sync_all().unwrap();
        Site { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn image(&self) -> PathBuf {
        self.path("img").join(IMAGE)
    }

    fn beside(&self) -> PathBuf {
        self.path("img").join(format!("{IMAGE}.bmap"))
    }

    fn config(&self) -> String {
        format!(
            "daemon {{ drain-timeout 2; }}\nimageserver {{ interface zs0; address {SERVER}; image-dir {}; boot-dir {}; state-dir {}; }}\n",
            self.path("img").display(),
            self.path("boot").display(),
            self.path("state").display()
        )
    }

    /// What `ze appliance build` would write for the image now.
    fn derived(&self) -> ze::bmap::BlockMap {
        ze::bmap::derive(&fs::File::open(self.image()).unwrap(), &mut |_, _| {}).unwrap()
    }

    /// The image's sha256, hex.
    fn sha256(&self) -> String {
        ze::digest::sha256_hex(&fs::read(self.image()).unwrap())
    }
}

fn stop(mut d: Logged) -> String {
    d.signal(rustix::process::Signal::TERM);
    d.wait_exit(Duration::from_secs(10));
    d.text()
}

/// Start `ze -` with `config` expecting it to refuse; returns its output.
fn refused(ns: &Netns, config: &str) -> String {
    let mut cmd = ns.cmd(ze_bin().to_str().unwrap());
    cmd.arg("-");
    let mut d = Logged::spawn(cmd);
    let stdin = d.stdin.as_mut().unwrap();
    stdin.write_all(config.as_bytes()).unwrap();
    stdin.write_all(&[0]).unwrap();
    stdin.flush().unwrap();
    let code = d.wait_exit(Duration::from_secs(30));
    let text = d.text();
    assert_eq!(code, Some(1), "{text}");
    assert!(!text.contains("ze: started"), "{text}");
    text
}

/// GET `path` with curl from the client side: (status line, body).
fn get(pair: &VethPair, path: &str) -> (String, Vec<u8>) {
    let url = format!("http://{SERVER}{path}");
    let r = pair
        .client
        .run("curl", &["-sS", "-D", "/dev/stderr", "-o", "-", &url]);
    let head = String::from_utf8_lossy(&r.stderr).into_owned();
    (head.lines().next().unwrap_or("").to_string(), r.stdout)
}

fn veth(tag: &str) -> VethPair {
    let pair = VethPair::new(tag, Some("192.0.2.1/24"));
    pair.client
        .ip(&["addr", "add", "192.0.2.200/24", "dev", "zc0"]);
    pair
}

/// The one line of `log` that starts with `prefix`.
fn line<'a>(log: &'a str, prefix: &str) -> &'a str {
    let found: Vec<&str> = log.lines().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(found.len(), 1, "{prefix:?} in\n{log}");
    found[0]
}

#[test]
fn w2_r15_a_derived_map_is_the_builders_kept_and_reused_and_ranges_come_over_one_connection() {
    if !prerequisites("bmap_derived", &["curl"]) {
        return;
    }
    let site = Site::new();
    let pair = veth("bmd");
    let want = site.derived();
    let sha256 = site.sha256();
    assert!(want.range_count >= 5, "the image has several ranges");

    let d = start_daemon(&pair.server, &site.config());
    let log = d.text();
    // R15: the spec's fields in their order, then the map's.
    assert_eq!(
        line(&log, "imageserver: image to install "),
        format!(
            "imageserver: image to install image={IMAGE} built=unknown ze-version=unknown sha256={sha256} bmap={} mapped={}",
            want.sha256, want.mapped_bytes
        )
    );
    let cache = site.path("state").join(format!(
        "imageserver-{IMAGE}-{}-",
        fs::metadata(site.image()).unwrap().len()
    ));
    let source = line(&log, "imageserver: block map ");
    assert!(source.starts_with(&format!(
        "imageserver: block map source=derived file={}",
        cache.display()
    )));
    assert!(source.ends_with(&format!("-{sha256}.bmap ranges={}", want.range_count)));
    assert!(log.contains("derived the block map"), "{log}");
    let cached: Vec<PathBuf> = fs::read_dir(site.path("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!(fs::read(&cached[0]).unwrap(), want.text());
    let kept_at = fs::metadata(&cached[0]).unwrap().modified().unwrap();

    // The map, byte for byte what the builder writes; boot.ipxe names it.
    let (status, body) = get(&pair, &format!("/install/image/{IMAGE}.bmap"));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body == want.text());
    let (_, script) = get(&pair, "/install/boot/boot.ipxe");
    let script = String::from_utf8(script).unwrap();
    assert!(
        script.contains(&format!(
            " ze.image={IMAGE} ze.sha256={sha256} ze.bmap-sha256={} ${{ze_console}}\n",
            want.sha256
        )),
        "{script}"
    );

    // R9: the map, then every range, on one connection (curl --next),
    // each range exactly the image's bytes and its sha256.
    let image = fs::read(site.image()).unwrap();
    let map = Bmap::parse(want.text()).unwrap();
    let out = site.path("ranges");
    fs::create_dir(&out).unwrap();
    let map_url = format!("http://{SERVER}/install/image/{IMAGE}.bmap");
    let img_url = format!("http://{SERVER}/install/image/{IMAGE}");
    let mut args: Vec<String> = vec![
        "-sv".into(),
        "-o".into(),
        out.join("map").display().to_string(),
        map_url,
    ];
    let ranges: Vec<_> = map.ranges().collect();
    for (i, r) in ranges.iter().enumerate() {
        let (start, end) = (
            r.start(map.block_size),
            r.end(map.block_size, map.image_size),
        );
        args.extend([
            "--next".into(),
            "-r".into(),
            format!("{start}-{}", end - 1),
            "-o".into(),
            out.join(i.to_string()).display().to_string(),
            img_url.clone(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = pair.client.run("curl", &args);
    let verbose = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{verbose}");
    assert_eq!(
        verbose.matches("Re-using existing connection").count(),
        ranges.len(),
        "{verbose}"
    );
    assert!(fs::read(out.join("map")).unwrap() == want.text());
    for (i, r) in ranges.iter().enumerate() {
        let got = fs::read(out.join(i.to_string())).unwrap();
        let (start, end) = (
            r.start(map.block_size) as usize,
            r.end(map.block_size, map.image_size) as usize,
        );
        assert!(got == image[start..end], "range {i}");
        assert_eq!(
            <[u8; 32]>::from(Sha256::digest(&got)),
            r.sha256,
            "range {i}"
        );
    }
    // HEAD and a range of the map itself; a map of another name is not
    // there; the server still serves after them.
    let r = pair.client.run(
        "curl",
        &[
            "-sS",
            "-I",
            &format!("http://{SERVER}/install/image/{IMAGE}.bmap"),
        ],
    );
    let head = String::from_utf8_lossy(&r.stdout);
    assert!(
        head.contains(&format!("Content-Length: {}", want.text().len())),
        "{head}"
    );
    assert!(head.contains("Content-Type: application/xml"), "{head}");
    for bad in [
        "/install/image/other.img.bmap".to_string(),
        format!("/install/image/{IMAGE}.bmap.bmap"),
        format!("/install/image/{IMAGE}.BMAP"),
        "/install/image/.bmap".to_string(),
    ] {
        assert_eq!(get(&pair, &bad).0, "HTTP/1.1 404 Not Found", "{bad}");
    }
    assert!(get(&pair, &format!("/install/image/{IMAGE}.bmap")).1 == want.text());
    let log = stop(d);
    let ports: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(&format!("path=/install/image/{IMAGE} ")) && l.contains("status=206")
        })
        .filter_map(|l| l.split("client=").nth(1)?.split(' ').next())
        .collect();
    assert_eq!(ports.len(), ranges.len(), "{log}");
    assert!(
        ports.iter().all(|p| *p == ports[0]),
        "one connection: {ports:?}"
    );

    // The next start reuses the kept map without deriving it again.
    let d = start_daemon(&pair.server, &site.config());
    let log = stop(d);
    assert!(line(&log, "imageserver: block map ").starts_with(&format!(
        "imageserver: block map source=cached file={}",
        cached[0].display()
    )));
    assert!(!log.contains("derived the block map"), "{log}");
    assert!(log.contains(&format!("bmap={} ", want.sha256)), "{log}");
    assert_eq!(
        fs::metadata(&cached[0]).unwrap().modified().unwrap(),
        kept_at
    );

    // A changed image (same name and length) never gets the stale map.
    fs::OpenOptions::new()
        .write(true)
        .open(site.image())
        .unwrap()
        .write_all_at(b"new data in a hole", 5 * MIB)
        .unwrap();
    let changed = site.derived();
    assert_ne!(changed.sha256, want.sha256);
    let d = start_daemon(&pair.server, &site.config());
    assert!(d.text().contains("derived the block map"));
    assert!(get(&pair, &format!("/install/image/{IMAGE}.bmap")).1 == changed.text());
    let log = stop(d);
    assert!(log.contains(&format!("bmap={} ", changed.sha256)), "{log}");
    assert_eq!(fs::read_dir(site.path("state")).unwrap().count(), 2);
}

#[test]
fn w2_w3_a_bmaptool_map_beside_the_image_is_served_and_bad_maps_are_refused() {
    if !prerequisites("bmap_beside", &["curl", "bmaptool"]) {
        return;
    }
    let site = Site::new();
    let pair = veth("bmb");
    let image = site.image();
    let beside = site.beside();
    // W3, bmaptool → ze: `bmaptool create -o <image>.bmap <image>`.
    let create = |out: &Path| {
        sh(
            "bmaptool",
            &[
                "create",
                "-o",
                out.to_str().unwrap(),
                image.to_str().unwrap(),
            ],
        )
    };
    create(&beside);
    let tool = fs::read(&beside).unwrap();
    let parsed = Bmap::parse(&tool).expect("the installer's parser takes bmaptool's map");
    assert_eq!(parsed.image_size, fs::metadata(&image).unwrap().len());
    // bmaptool maps whole extents, zero blocks included: more than ze.
    assert!(parsed.mapped_bytes > site.derived().mapped_bytes);
    let tool_sha = ze::digest::sha256_hex(&tool);

    let serves_the_tool_map = |tool: &[u8]| {
        let d = start_daemon(&pair.server, &site.config());
        let log = d.text();
        assert!(
            line(&log, "imageserver: block map ").starts_with(&format!(
                "imageserver: block map source=image-dir file={}",
                beside.display()
            )),
            "{log}"
        );
        assert!(log.contains(&format!(" bmap={} mapped=", ze::digest::sha256_hex(tool))));
        assert!(get(&pair, &format!("/install/image/{IMAGE}.bmap")).1 == tool);
        let (_, script) = get(&pair, "/install/boot/boot.ipxe");
        assert!(String::from_utf8_lossy(&script).contains(&format!(
            " ze.bmap-sha256={} ",
            ze::digest::sha256_hex(tool)
        )));
        let log = stop(d);
        assert!(!log.contains("derived the block map"), "{log}");
        assert_eq!(
            fs::read_dir(site.path("state")).map_or(0, |d| d.count()),
            0,
            "nothing derived"
        );
    };
    serves_the_tool_map(&tool);
    assert_eq!(
        tool_sha,
        ze::digest::sha256_hex(&fs::read(&beside).unwrap())
    );

    // Each bad map stops the server with the file and the problem named;
    // the good map is then served again.
    let other = site.path("other.img");
    fs::File::create(&other).unwrap().set_len(4 * MIB).unwrap();
    let bmap_of_other = {
        sh(
            "bmaptool",
            &[
                "create",
                "-o",
                site.path("other.bmap").to_str().unwrap(),
                other.to_str().unwrap(),
            ],
        );
        fs::read(site.path("other.bmap")).unwrap()
    };
    let len = fs::metadata(&image).unwrap().len();
    let mut tampered = tool.clone();
    let at = tampered.windows(8).position(|w| w == b"chksum=\"").unwrap() + 8;
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    let cases: [(&str, &[u8], String); 4] = [
        (
            "truncated",
            &tool[..tool.len() / 2],
            "block map is truncated".into(),
        ),
        ("not a map", b"\x89PNG\r\n\x1a\n", "block map is not".into()),
        (
            "another image's",
            &bmap_of_other,
            format!(
                "the map is for an image of {} bytes; this one has {len}",
                4 * MIB
            ),
        ),
        ("tampered", &tampered, "<BmapFileChecksum>".into()),
    ];
    for (what, bad, want) in &cases {
        fs::write(&beside, bad).unwrap();
        let out = refused(&pair.server, &site.config());
        assert!(
            out.contains(&format!(
                "ze: error: imageserver did not start: {} is not a usable block map of {}: ",
                beside.display(),
                image.display()
            )),
            "{what}: {out}"
        );
        assert!(out.contains(want.as_str()), "{what}: {want:?} not in {out}");
        assert!(
            out.contains("remake it (`bmaptool create -o "),
            "{what}: {out}"
        );
        fs::write(&beside, &tool).unwrap();
        serves_the_tool_map(&tool);
    }
    // Maps that parse but do not describe the image: caught by the
    // startup pass over it.
    let f = fs::OpenOptions::new().write(true).open(&image).unwrap();
    let original = fs::read(&image).unwrap();
    for (what, at, want) in [
        (
            "a stale range",
            1u64,
            "range 1 (blocks 0-3) has another sha256 than the map says",
        ),
        (
            "data outside the map",
            5 * MIB,
            "block 1280 holds data but is in no range of the map",
        ),
    ] {
        let change = b"changed after bmaptool create";
        f.write_all_at(change, at).unwrap();
        let out = refused(&pair.server, &site.config());
        assert!(
            out.contains(&format!(
                "{} is not a usable block map of {}: {want}",
                beside.display(),
                image.display()
            )),
            "{what}: {out}"
        );
        let span = at as usize..at as usize + change.len();
        f.write_all_at(&original[span], at).unwrap();
        serves_the_tool_map(&tool);
    }
}
