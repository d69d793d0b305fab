//! Replay the committed fuzz corpora (`fuzz/corpus/firmware_*`) through the
//! same entry points the fuzz targets use, so every input that ever found
//! new coverage (and every past crash) runs in a normal `cargo test`.

use std::path::PathBuf;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| run(&data));
        assert!(r.is_ok(), "{} fails on {}", target, path.display());
        n += 1;
    }
    assert!(
        n >= 5,
        "{target}: only {n} corpus files in {}",
        dir.display()
    );
}

#[test]
fn i1_cmdline_corpus() {
    replay("firmware_cmdline", ze_installer::fuzzing::cmdline);
}

#[test]
fn i8_dhcp_offer_corpus() {
    replay("firmware_dhcp_offer", ze_installer::fuzzing::dhcp_offer);
}

#[test]
fn i10_http_head_corpus() {
    replay("firmware_http_head", ze_installer::fuzzing::http_head);
}

#[test]
fn o1_gunzip_corpus() {
    replay("firmware_gunzip", ze_installer::fuzzing::gunzip);
}

#[test]
fn w6_bmap_corpus() {
    replay("firmware_bmap", ze_installer::fuzzing::bmap);
}
