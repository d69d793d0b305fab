//! Checks shared by the firmware's flow tests.
#![allow(dead_code)]

use ze_hal::{PowerAction, fake::FakeOs};
use ze_installer::{
    install::{HEAD_LEN, IO_CHUNK},
    run::{self, Buffers},
};

/// Boot the installer on `os` with buffers from the heap, as PID 1 has
/// them on its stack.
pub fn boot(os: &mut FakeOs) -> PowerAction {
    let mut head: Box<[u8; HEAD_LEN]> = vec![0u8; HEAD_LEN].try_into().unwrap();
    let mut io: Box<[u8; IO_CHUNK]> = vec![0u8; IO_CHUNK].try_into().unwrap();
    let mut bufs = Buffers {
        head: &mut head,
        io: &mut io,
    };
    run::boot(os, &mut bufs)
}

/// The write order every install must keep on `/dev/vda`, from the fake
/// OS's event log: the first MiB is zeroed before anything else, the rest
/// of the image follows, and the real first MiB is written last and
/// synced. Returns the indexes of the last write past the head and of the
/// final head write, for the caller's own checks around them.
pub fn assert_head_written_last(ev: &[String]) -> (usize, usize) {
    let offset = |e: &str| -> Option<usize> {
        e.strip_prefix("write /dev/vda ")?
            .split('+')
            .next()?
            .parse()
            .ok()
    };
    let first_tail = ev
        .iter()
        .position(|e| offset(e).is_some_and(|o| o >= HEAD_LEN))
        .unwrap();
    let last_tail = ev
        .iter()
        .rposition(|e| offset(e).is_some_and(|o| o >= HEAD_LEN))
        .unwrap();
    let heads: Vec<usize> = ev
        .iter()
        .enumerate()
        .filter(|(_, e)| e.starts_with("write /dev/vda 0+"))
        .map(|(i, _)| i)
        .collect();
    assert!(
        heads[0] < first_tail,
        "the first MiB is zeroed before anything else"
    );
    let head = *heads.last().unwrap();
    assert_eq!(ev[head], format!("write /dev/vda 0+{HEAD_LEN}"));
    assert!(last_tail < head, "the first MiB is written last");
    assert_eq!(ev[head + 1], "sync /dev/vda");
    (last_tail, head)
}
