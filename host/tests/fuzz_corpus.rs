//! Replays every committed `cargo fuzz` corpus file (fuzz/corpus/<target>/)
//! through the same entry point the fuzz target uses, so what the fuzzer
//! found stays fixed under plain `cargo test`.

use std::{fs, path::PathBuf};

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no corpus", dir.display());
    for f in &files {
        let data = fs::read(f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
            std::panic::resume_unwind(Box::new(format!("{target}/{name}: {panic:?}")));
        }
    }
    eprintln!("{target}: {} corpus files replayed", files.len());
}

#[test]
fn corpus_dhcp_packet() {
    replay("dhcp_packet", ze::fuzzing::dhcp);
}

#[test]
fn corpus_tftp_packet() {
    replay("tftp_packet", ze::fuzzing::tftp);
}

#[test]
fn corpus_http_request() {
    replay("http_request", ze::fuzzing::http_request);
}

#[test]
fn corpus_brace_config() {
    replay("brace_config", ze::fuzzing::brace_config);
}
