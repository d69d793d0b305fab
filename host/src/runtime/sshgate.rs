//! Who may be connected to the sshserver: connections not logged in yet,
//! capped in all ([`MAX_UNAUTHENTICATED`], the oldest evicted at the cap)
//! and per address ([`MAX_UNAUTHENTICATED_PER_ADDRESS`], beyond it the
//! new one is refused), apart from the logged-in sessions
//! ([`MAX_SESSIONS`]), which are taken only at login: connections that
//! never log in cannot take an operator's place.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
};
use tokio::sync::Notify;

/// The most logged-in sessions at once.
pub const MAX_SESSIONS: usize = 16;
/// The most connections at once that have not logged in yet.
pub const MAX_UNAUTHENTICATED: usize = 8;
/// The most connections at once from one address that have not logged in.
pub const MAX_UNAUTHENTICATED_PER_ADDRESS: usize = 4;

/// One connection's place at the [`Gate`].
#[derive(Debug)]
pub struct Slot {
    id: u64,
    ip: IpAddr,
    state: Mutex<SlotState>,
    /// Woken when the state changes.
    pub(super) wake: Notify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotState {
    /// Handshake or authentication under way.
    Unauthenticated,
    /// Logged in: holds a session.
    Session,
    /// Closed to make room for a newer connection.
    Evicted,
}

impl Slot {
    pub(super) fn state(&self) -> SlotState {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, state: SlotState) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
        self.wake.notify_one();
    }
}

/// Who may connect: connections not yet logged in, capped in all and per
/// address, and the logged-in sessions.
#[derive(Debug, Default)]
pub struct Gate {
    inner: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    /// Connections not logged in yet, oldest first.
    waiting: Vec<Arc<Slot>>,
    sessions: usize,
    next_id: u64,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection from `ip`, or why there is none. At
    /// [`MAX_UNAUTHENTICATED`] the oldest waiting connection is evicted.
    pub fn admit(&self, ip: IpAddr) -> Result<Arc<Slot>, String> {
        let mut g = self.lock();
        let from_ip = g.waiting.iter().filter(|s| s.ip == ip).count();
        if from_ip >= MAX_UNAUTHENTICATED_PER_ADDRESS {
            return Err(format!(
                "{from_ip} connections from this address have not logged in yet"
            ));
        }
        if g.waiting.len() >= MAX_UNAUTHENTICATED {
            let oldest = g.waiting.remove(0);
            tracing::warn!(target: "sshserver", from = %oldest.ip, "closed a connection that had not logged in yet, to make room for a new one");
            oldest.set(SlotState::Evicted);
        }
        let slot = Arc::new(Slot {
            id: g.next_id,
            ip,
            state: Mutex::new(SlotState::Unauthenticated),
            wake: Notify::new(),
        });
        g.next_id += 1;
        g.waiting.push(slot.clone());
        Ok(slot)
    }

    /// The connection logged in: it takes a session, if one is free.
    pub(super) fn promote(&self, slot: &Slot) -> bool {
        let mut g = self.lock();
        if slot.state() != SlotState::Unauthenticated || g.sessions >= MAX_SESSIONS {
            return false;
        }
        g.waiting.retain(|s| s.id != slot.id);
        g.sessions += 1;
        slot.set(SlotState::Session);
        true
    }

    /// The connection ended.
    pub(super) fn release(&self, slot: &Slot) {
        let mut g = self.lock();
        match slot.state() {
            SlotState::Session => g.sessions -= 1,
            _ => g.waiting.retain(|s| s.id != slot.id),
        }
    }

    /// (connections not logged in, sessions).
    pub fn counts(&self) -> (usize, usize) {
        let g = self.lock();
        (g.waiting.len(), g.sessions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_caps_connections_not_logged_in_and_keeps_sessions_apart() {
        let gate = Gate::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..MAX_UNAUTHENTICATED_PER_ADDRESS)
            .map(|_| gate.admit(a).unwrap())
            .collect();
        let err = gate.admit(a).unwrap_err();
        assert_eq!(
            err,
            "4 connections from this address have not logged in yet"
        );
        // Other addresses fill the rest; at the cap the oldest goes.
        let mut others = Vec::new();
        for n in 2..=5u8 {
            others.push(gate.admit(IpAddr::from([192, 0, 2, n])).unwrap());
        }
        assert_eq!(gate.counts(), (MAX_UNAUTHENTICATED, 0));
        let newest = gate.admit("192.0.2.99".parse().unwrap()).unwrap();
        assert_eq!(held[0].state(), SlotState::Evicted);
        assert_eq!(gate.counts(), (MAX_UNAUTHENTICATED, 0));
        // Logging in moves a connection to the sessions: its place frees.
        assert!(gate.promote(&newest));
        assert_eq!(gate.counts(), (MAX_UNAUTHENTICATED - 1, 1));
        assert!(
            !gate.promote(&held[0]),
            "an evicted connection cannot log in"
        );
        gate.release(&newest);
        for s in held.iter().chain(&others) {
            gate.release(s);
        }
        assert_eq!(gate.counts(), (0, 0));
        // Sessions are capped on their own.
        let mut sessions = Vec::new();
        for n in 0..MAX_SESSIONS {
            let s = gate.admit(IpAddr::from([198, 51, 100, n as u8])).unwrap();
            assert!(gate.promote(&s));
            sessions.push(s);
        }
        let late = gate.admit(a).unwrap();
        assert!(!gate.promote(&late));
        assert_eq!(gate.counts(), (1, MAX_SESSIONS));
    }
}
