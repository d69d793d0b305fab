//! Who holds a transfer slot: the requests waiting for one, the transfers
//! running (each with the flags it shares with its thread), and the
//! eviction rule — the oldest transfer whose client never acknowledged
//! anything gives way.

use super::{NAME, transfer};
use crate::provision::admission::Admission;
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

/// A request waiting for a slot: everything needed to start it.
pub(super) struct Waiting {
    pub(super) from: SocketAddr,
    pub(super) name: String,
    pub(super) file: std::fs::File,
    pub(super) negotiated: transfer::Negotiated,
    pub(super) size: u64,
}

/// A transfer holding a slot.
pub(super) struct Running {
    pub(super) from: SocketAddr,
    pub(super) started: Instant,
    /// Set by the transfer once its client acknowledged something.
    pub(super) acked: Arc<AtomicBool>,
    /// Set to make the transfer give up its slot.
    pub(super) stop: Arc<AtomicBool>,
}

/// The transfers holding slots (by id), and who waits for one.
pub(super) struct Slots {
    pub(super) admission: Admission<Waiting>,
    pub(super) running: HashMap<u64, Running>,
    pub(super) next_id: u64,
}

impl Slots {
    /// Whether a request from `from` repeats one that has not been
    /// answered yet (it waits, or its transfer was never acknowledged):
    /// the client missed our first packet, or the source is spoofed.
    pub(super) fn repeats(&self, from: SocketAddr) -> bool {
        self.running
            .values()
            .any(|r| r.from == from && !r.acked.load(Ordering::SeqCst))
            || self.admission.waiting().any(|w| w.from == from)
    }
}

pub(super) fn lock(slots: &Mutex<Slots>) -> MutexGuard<'_, Slots> {
    slots.lock().unwrap_or_else(|e| e.into_inner())
}

/// Make the oldest transfer never acknowledged (of `scope`'s address, or
/// of anyone) give up its slot; returns its address.
pub(super) fn evict(running: &mut HashMap<u64, Running>, scope: Option<IpAddr>) -> Option<IpAddr> {
    let (_, id) = running
        .iter()
        .filter(|(_, r)| scope.is_none_or(|s| s == r.from.ip()) && !r.acked.load(Ordering::SeqCst))
        .map(|(id, r)| (r.started, *id))
        .min()?;
    let r = running.remove(&id)?;
    r.stop.store(true, Ordering::SeqCst);
    tracing::debug!(
        target: NAME,
        client = %r.from,
        waited_ms = r.started.elapsed().as_millis() as u64,
        "a transfer never acknowledged gave up its slot to a new request"
    );
    Some(r.from.ip())
}
