//! The address pool and its leases (RFC 2131 §4.3.1 address selection,
//! §3.1 lease binding). Sans-IO: every call takes the time as seconds
//! since the UNIX epoch, so leases survive a restart with the lease file.
//!
//! A client is known by its client identifier (option 61) or, without one,
//! by its hardware type and address — the same bytes a `01:<mac>` client
//! identifier holds, so EDK2 (no option 61), iPXE and Linux (option 61 =
//! 01 + MAC) get the same lease on one machine.
//!
//! Memory is bounded: at most `max_leases` records. When the table is full
//! a new client can only take the record of an expired lease, so a flood
//! of DISCOVERs from random MACs cannot grow it or push out a bound lease.

use std::{
    collections::{HashMap, HashSet},
    net::Ipv4Addr,
};

/// How long an OFFER holds its address for the client (seconds).
pub const OFFER_HOLD_SECS: u64 = 60;
/// How long a DECLINEd address stays out of the pool (seconds).
pub const DECLINE_HOLD_SECS: u64 = 600;
/// The most lease records kept, by default.
pub const DEFAULT_MAX_LEASES: usize = 65_536;

/// The key a client is known by.
pub type ClientKey = Vec<u8>;

/// Where a lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Offered, not yet requested; held for [`OFFER_HOLD_SECS`].
    Offered,
    /// Acknowledged.
    Bound,
    /// Released by the client; kept so the client gets the same address.
    Released,
}

/// One client's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    /// Seconds since the epoch when the lease (or offer hold) ends.
    pub expires: u64,
    pub state: LeaseState,
}

impl Lease {
    /// Whether the address is still taken at `now`.
    pub fn active(&self, now: u64) -> bool {
        self.state != LeaseState::Released && self.expires > now
    }
}

/// Why a REQUEST cannot be acknowledged (the server answers NAK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address is not in this server's pool.
    NotInPool,
    /// Another client holds the address.
    Taken,
    /// The address was declined recently.
    Declined,
    /// The lease table is full.
    Full,
}

impl Refusal {
    /// Text for option 56 and the log.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotInPool => "address not in pool",
            Refusal::Taken => "address in use by another client",
            Refusal::Declined => "address declined recently",
            Refusal::Full => "lease table full",
        }
    }
}

/// The pool: a range of addresses, the addresses never to hand out, and
/// the lease table.
#[derive(Debug, Clone)]
pub struct LeasePool {
    start: u32,
    end: u32,
    excluded: HashSet<u32>,
    declined: HashMap<u32, u64>,
    leases: HashMap<ClientKey, Lease>,
    by_ip: HashMap<u32, ClientKey>,
    cursor: u32,
    max_leases: usize,
    changed: bool,
}

impl LeasePool {
    /// A pool of `start..=end`, never handing out `excluded` (the server's
    /// own address), holding at most `max_leases` records.
    pub fn new(start: Ipv4Addr, end: Ipv4Addr, excluded: &[Ipv4Addr], max_leases: usize) -> Self {
        let (start, end) = (u32::from(start), u32::from(end));
        LeasePool {
            start,
            end,
            excluded: excluded.iter().map(|&a| u32::from(a)).collect(),
            declined: HashMap::new(),
            leases: HashMap::new(),
            by_ip: HashMap::new(),
            cursor: start,
            max_leases: max_leases.max(1),
            changed: false,
        }
    }

    /// How many addresses the range holds.
    pub fn size(&self) -> u64 {
        u64::from(self.end.saturating_sub(self.start)) + 1
    }

    /// Whether `ip` is one this pool may hand out.
    pub fn in_pool(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        (self.start..=self.end).contains(&n) && !self.excluded.contains(&n)
    }

    /// The lease of `key`, if any.
    pub fn lease(&self, key: &[u8]) -> Option<&Lease> {
        self.leases.get(key)
    }

    /// How many lease records are kept.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether no lease is kept.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Every lease record.
    pub fn leases(&self) -> impl Iterator<Item = (&ClientKey, &Lease)> {
        self.leases.iter()
    }

    /// Whether bound leases changed since the last [`LeasePool::take_changed`].
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Whether `ip` can go to `key` at `now`.
    fn check(&self, key: &[u8], ip: Ipv4Addr, now: u64) -> Result<(), Refusal> {
        let n = u32::from(ip);
        if !self.in_pool(ip) {
            return Err(Refusal::NotInPool);
        }
        if self.declined.get(&n).is_some_and(|&until| until > now) {
            return Err(Refusal::Declined);
        }
        match self.by_ip.get(&n) {
            Some(owner) if owner.as_slice() != key => {
                if self.leases.get(owner).is_some_and(|l| l.active(now)) {
                    Err(Refusal::Taken)
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// Give `ip` to `key` with `lease`, evicting whatever held it.
    fn assign(&mut self, key: &[u8], lease: Lease, now: u64) -> Result<(), Refusal> {
        let n = u32::from(lease.ip);
        if !self.leases.contains_key(key) && self.leases.len() >= self.max_leases {
            self.evict_one_expired(now)?;
        }
        if let Some(owner) = self.by_ip.get(&n).cloned()
            && owner.as_slice() != key
        {
            self.leases.remove(&owner);
        }
        if let Some(old) = self.leases.get(key)
            && old.ip != lease.ip
        {
            self.by_ip.remove(&u32::from(old.ip));
        }
        self.by_ip.insert(n, key.to_vec());
        if lease.state != LeaseState::Offered {
            self.changed = true;
        }
        self.leases.insert(key.to_vec(), lease);
        Ok(())
    }

    /// Drop one record whose lease is over, to make room.
    fn evict_one_expired(&mut self, now: u64) -> Result<(), Refusal> {
        // The oldest expiry goes first; nothing still active is evicted.
        let victim = self
            .leases
            .iter()
            .filter(|(_, l)| !l.active(now))
            .min_by_key(|(_, l)| l.expires)
            .map(|(k, _)| k.clone());
        match victim {
            Some(k) => {
                if let Some(l) = self.leases.remove(&k) {
                    self.by_ip.remove(&u32::from(l.ip));
                    if l.state != LeaseState::Offered {
                        self.changed = true;
                    }
                }
                Ok(())
            }
            None => Err(Refusal::Full),
        }
    }

    /// Choose an address for a DISCOVER from `key` (RFC 2131 §4.3.1): its
    /// current or last address, else the requested one if free, else the
    /// next free one. Holds it as Offered for [`OFFER_HOLD_SECS`]. `None`
    /// when the pool or the table is exhausted.
    pub fn offer(&mut self, key: &[u8], requested: Option<Ipv4Addr>, now: u64) -> Option<Ipv4Addr> {
        let hold = now + OFFER_HOLD_SECS;
        if let Some(lease) = self.leases.get(key).copied()
            && self.check(key, lease.ip, now).is_ok()
        {
            let updated = match lease.state {
                LeaseState::Bound if lease.expires > now => lease,
                _ => Lease {
                    ip: lease.ip,
                    expires: hold,
                    state: LeaseState::Offered,
                },
            };
            self.leases.insert(key.to_vec(), updated);
            return Some(lease.ip);
        }
        let candidate = requested
            .filter(|&ip| self.check(key, ip, now).is_ok())
            .or_else(|| self.next_free(key, now))?;
        let lease = Lease {
            ip: candidate,
            expires: hold,
            state: LeaseState::Offered,
        };
        self.assign(key, lease, now).ok()?;
        Some(candidate)
    }

    /// The next address from the cursor that no active lease holds:
    /// addresses never leased first, then ones whose lease is over.
    fn next_free(&mut self, key: &[u8], now: u64) -> Option<Ipv4Addr> {
        let size = self.size();
        // With at most `max_leases` records, an address without a record
        // turns up within that many steps; bound the scan by both.
        let limit = size.min(
            self.max_leases as u64 + self.excluded.len() as u64 + self.declined.len() as u64 + 1,
        );
        let mut reusable = None;
        let mut n = self.cursor;
        for _ in 0..limit {
            let ip = Ipv4Addr::from(n);
            n = if n >= self.end { self.start } else { n + 1 };
            if !self.by_ip.contains_key(&u32::from(ip)) {
                if self.check(key, ip, now).is_ok() {
                    self.cursor = n;
                    return Some(ip);
                }
            } else if reusable.is_none() && self.check(key, ip, now).is_ok() {
                reusable = Some(ip);
            }
        }
        if reusable.is_none() && limit < size {
            // Everything scanned is taken; look for any expired record.
            reusable = self
                .leases
                .values()
                .filter(|l| !l.active(now))
                .map(|l| l.ip)
                .find(|&ip| self.check(key, ip, now).is_ok());
        }
        reusable
    }

    /// Bind `ip` to `key` for `lease_secs` (REQUEST → ACK).
    pub fn commit(
        &mut self,
        key: &[u8],
        ip: Ipv4Addr,
        now: u64,
        lease_secs: u64,
    ) -> Result<(), Refusal> {
        self.check(key, ip, now)?;
        self.assign(
            key,
            Lease {
                ip,
                expires: now.saturating_add(lease_secs),
                state: LeaseState::Bound,
            },
            now,
        )
    }

    /// The client chose another server: drop our offer to it.
    pub fn withdraw_offer(&mut self, key: &[u8]) {
        if self
            .leases
            .get(key)
            .is_some_and(|l| l.state == LeaseState::Offered)
            && let Some(l) = self.leases.remove(key)
        {
            self.by_ip.remove(&u32::from(l.ip));
        }
    }

    /// RELEASE: the client gives `ip` back. The record stays, so the client
    /// gets the same address next time unless someone else needs it.
    pub fn release(&mut self, key: &[u8], ip: Ipv4Addr, now: u64) -> bool {
        match self.leases.get_mut(key) {
            Some(l) if l.ip == ip && l.state == LeaseState::Bound => {
                l.state = LeaseState::Released;
                l.expires = now;
                self.changed = true;
                true
            }
            _ => false,
        }
    }

    /// DECLINE: `ip` is in use by someone we do not know of; keep it out of
    /// the pool for [`DECLINE_HOLD_SECS`].
    pub fn decline(&mut self, key: &[u8], ip: Ipv4Addr, now: u64) -> bool {
        if !self.in_pool(ip) {
            return false;
        }
        if self.leases.get(key).is_some_and(|l| l.ip == ip)
            && let Some(l) = self.leases.remove(key)
        {
            self.by_ip.remove(&u32::from(l.ip));
            self.changed = true;
        }
        // Bounded like the lease table: drop holds that are over first.
        if self.declined.len() >= self.max_leases {
            self.declined.retain(|_, &mut until| until > now);
        }
        if self.declined.len() < self.max_leases {
            self.declined.insert(u32::from(ip), now + DECLINE_HOLD_SECS);
        }
        true
    }

    /// Load a lease read back from the lease file. Leases outside the pool
    /// or clashing with one already loaded are skipped (returns false).
    pub fn restore(&mut self, key: ClientKey, lease: Lease) -> bool {
        if !self.in_pool(lease.ip)
            || lease.state == LeaseState::Offered
            || self.by_ip.contains_key(&u32::from(lease.ip))
            || self.leases.contains_key(&key)
            || self.leases.len() >= self.max_leases
        {
            return false;
        }
        self.by_ip.insert(u32::from(lease.ip), key.clone());
        self.leases.insert(key, lease);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn pool() -> LeasePool {
        LeasePool::new(ip("10.0.0.1"), ip("10.0.0.5"), &[ip("10.0.0.3")], 100)
    }

    #[test]
    fn offers_skip_the_server_and_are_sticky() {
        let mut p = pool();
        let a = p.offer(b"a", None, 1000).unwrap();
        assert_eq!(a, ip("10.0.0.1"));
        assert_eq!(
            p.offer(b"a", None, 1001),
            Some(a),
            "same client, same offer"
        );
        let got: Vec<_> = [b"b", b"c", b"d"]
            .iter()
            .map(|k| p.offer(*k, None, 1000).unwrap())
            .collect();
        assert_eq!(got, [ip("10.0.0.2"), ip("10.0.0.4"), ip("10.0.0.5")]);
        assert_eq!(p.offer(b"e", None, 1000), None, "pool exhausted");
        // Offers lapse after the hold; the address goes to someone else.
        assert_eq!(
            p.offer(b"e", None, 1000 + OFFER_HOLD_SECS + 2),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn requested_address_is_honoured_when_free() {
        let mut p = pool();
        assert_eq!(p.offer(b"a", Some(ip("10.0.0.4")), 0), Some(ip("10.0.0.4")));
        assert_eq!(p.offer(b"b", Some(ip("10.0.0.4")), 0), Some(ip("10.0.0.1")));
        assert_eq!(
            p.offer(b"c", Some(ip("10.0.0.3")), 0),
            Some(ip("10.0.0.2")),
            "server address never"
        );
        assert_eq!(
            p.offer(b"d", Some(ip("192.0.2.1")), 0),
            Some(ip("10.0.0.5"))
        );
    }

    #[test]
    fn commit_release_decline() {
        let mut p = pool();
        let a = p.offer(b"a", None, 0).unwrap();
        p.commit(b"a", a, 0, 100).unwrap();
        assert_eq!(p.commit(b"b", a, 10, 100), Err(Refusal::Taken));
        assert_eq!(
            p.commit(b"b", ip("10.0.0.3"), 10, 100),
            Err(Refusal::NotInPool)
        );
        assert_eq!(
            p.commit(b"b", ip("10.9.0.3"), 10, 100),
            Err(Refusal::NotInPool)
        );
        assert!(p.take_changed());
        // The bound client keeps its address on a new DISCOVER.
        assert_eq!(p.offer(b"a", None, 50), Some(a));
        assert_eq!(p.lease(b"a").unwrap().state, LeaseState::Bound);
        assert!(p.release(b"a", a, 60));
        assert_eq!(
            p.offer(b"a", None, 70),
            Some(a),
            "released client gets its address back"
        );
        // After expiry another client may take it.
        p.commit(b"a", a, 80, 10).unwrap();
        assert_eq!(p.commit(b"b", a, 95, 100), Ok(()));
        assert!(p.lease(b"a").is_none());
        // Declined addresses stay out for a while.
        assert!(p.decline(b"b", a, 100));
        assert_eq!(p.commit(b"c", a, 101, 100), Err(Refusal::Declined));
        assert_eq!(p.commit(b"c", a, 100 + DECLINE_HOLD_SECS + 1, 100), Ok(()));
    }

    #[test]
    fn withdrawn_offer_frees_the_address() {
        let mut p = pool();
        let a = p.offer(b"a", None, 0).unwrap();
        p.withdraw_offer(b"a");
        assert_eq!(p.offer(b"b", Some(a), 1), Some(a));
    }

    #[test]
    fn exhaustion_table_stays_bounded_and_known_clients_keep_leases() {
        let mut p = LeasePool::new(ip("10.0.0.1"), ip("10.255.255.254"), &[], 1000);
        let known = p.offer(b"known", None, 0).unwrap();
        p.commit(b"known", known, 0, 3600).unwrap();
        let mut given = 0;
        for i in 0..5000u32 {
            if let Some(a) = p.offer(&i.to_be_bytes(), None, 10) {
                assert!(p.in_pool(a));
                given += 1;
            }
        }
        assert_eq!(given, 999, "table capped at max_leases");
        assert!(p.len() <= 1000);
        assert_eq!(p.offer(b"known", None, 20), Some(known));
        // Once the offers lapse, new clients get addresses again.
        assert!(p.offer(b"late", None, 10 + OFFER_HOLD_SECS + 1).is_some());
        assert!(p.len() <= 1000);
        assert_eq!(p.lease(b"known").unwrap().ip, known);
    }

    #[test]
    fn restore_skips_foreign_and_clashing_leases() {
        let mut p = pool();
        let bound = |a: &str| Lease {
            ip: ip(a),
            expires: 100,
            state: LeaseState::Bound,
        };
        assert!(p.restore(b"a".to_vec(), bound("10.0.0.1")));
        assert!(!p.restore(b"b".to_vec(), bound("10.0.0.1")));
        assert!(!p.restore(b"c".to_vec(), bound("10.0.0.3")));
        assert!(!p.restore(b"d".to_vec(), bound("10.1.0.1")));
        assert_eq!(p.offer(b"a", None, 50), Some(ip("10.0.0.1")));
    }
}
