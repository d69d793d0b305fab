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
    collections::{BTreeSet, HashMap, HashSet},
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

/// Why a DECLINE is not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineRefused {
    /// The address is not in this server's pool.
    NotInPool,
    /// The client neither holds nor was offered the address.
    NotTheClients,
}

impl DeclineRefused {
    /// Text for the log.
    pub fn reason(self) -> &'static str {
        match self {
            DeclineRefused::NotInPool => "DECLINE ignored: the address is not in the pool",
            DeclineRefused::NotTheClients => {
                "DECLINE ignored: the client neither holds nor was offered this address"
            }
        }
    }
}

/// The pool: a range of addresses, the addresses never to hand out, and
/// the lease table. Every lease is indexed by client, by address and by
/// expiry, so each request costs O(log n) even when the table is full.
#[derive(Debug, Clone)]
pub struct LeasePool {
    start: u32,
    end: u32,
    excluded: HashSet<u32>,
    declined: HashMap<u32, u64>,
    leases: HashMap<ClientKey, Lease>,
    by_ip: HashMap<u32, ClientKey>,
    /// (end of the lease or hold, address) of every lease; a released
    /// lease ends when it was released.
    by_expiry: BTreeSet<(u64, u32)>,
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
            by_expiry: BTreeSet::new(),
            cursor: start,
            max_leases: max_leases.max(1),
            changed: false,
        }
    }

    /// How many addresses the range holds.
    pub fn size(&self) -> u64 {
        u64::from(self.end.saturating_sub(self.start)) + 1
    }

    /// How many addresses of the range may be handed out.
    fn usable(&self) -> u64 {
        let excluded = self
            .excluded
            .iter()
            .filter(|&&n| (self.start..=self.end).contains(&n))
            .count() as u64;
        self.size() - excluded
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

    /// Store `lease` for `key`, keeping the indexes in step.
    fn put(&mut self, key: &[u8], lease: Lease) {
        if let Some(old) = self.leases.get(key).copied() {
            self.by_expiry.remove(&(old.expires, u32::from(old.ip)));
            if old.ip != lease.ip {
                self.by_ip.remove(&u32::from(old.ip));
            }
        }
        self.by_expiry.insert((lease.expires, u32::from(lease.ip)));
        self.by_ip.insert(u32::from(lease.ip), key.to_vec());
        if lease.state != LeaseState::Offered {
            self.changed = true;
        }
        self.leases.insert(key.to_vec(), lease);
    }

    /// Drop the lease of `key`.
    fn remove(&mut self, key: &[u8]) -> Option<Lease> {
        let lease = self.leases.remove(key)?;
        self.by_expiry.remove(&(lease.expires, u32::from(lease.ip)));
        self.by_ip.remove(&u32::from(lease.ip));
        if lease.state != LeaseState::Offered {
            self.changed = true;
        }
        Some(lease)
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

    /// Give `lease.ip` to `key`, evicting whatever record held it, and
    /// making room in a full table by dropping the oldest ended lease.
    fn assign(&mut self, key: &[u8], lease: Lease, now: u64) -> Result<(), Refusal> {
        let n = u32::from(lease.ip);
        if let Some(owner) = self.by_ip.get(&n).cloned()
            && owner.as_slice() != key
        {
            self.remove(&owner);
        }
        if !self.leases.contains_key(key) && self.leases.len() >= self.max_leases {
            let (ends, ip) = *self.by_expiry.first().ok_or(Refusal::Full)?;
            if ends > now {
                return Err(Refusal::Full);
            }
            if let Some(owner) = self.by_ip.get(&ip).cloned() {
                self.remove(&owner);
            }
        }
        self.put(key, lease);
        Ok(())
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
            if !(lease.state == LeaseState::Bound && lease.expires > now) {
                self.put(
                    key,
                    Lease {
                        ip: lease.ip,
                        expires: hold,
                        state: LeaseState::Offered,
                    },
                );
            }
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

    /// An address no active lease holds: one never leased, from a cursor
    /// that moves through the range, else the one whose lease ended first.
    fn next_free(&mut self, key: &[u8], now: u64) -> Option<Ipv4Addr> {
        let unleased = self.usable().saturating_sub(self.by_ip.len() as u64);
        if unleased > 0 && self.leases.len() < self.max_leases {
            let mut n = self.cursor;
            for _ in 0..self.size() {
                let here = n;
                n = if n >= self.end { self.start } else { n + 1 };
                if !self.by_ip.contains_key(&here)
                    && self.check(key, Ipv4Addr::from(here), now).is_ok()
                {
                    self.cursor = n;
                    return Some(Ipv4Addr::from(here));
                }
            }
        }
        // Reuse the lease that ended first (declined addresses are skipped).
        self.by_expiry
            .iter()
            .take_while(|(ends, _)| *ends <= now)
            .map(|&(_, ip)| Ipv4Addr::from(ip))
            .find(|&ip| self.check(key, ip, now).is_ok())
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
        {
            self.remove(key);
        }
    }

    /// RELEASE: the client gives `ip` back. The record stays, so the client
    /// gets the same address next time unless someone else needs it.
    pub fn release(&mut self, key: &[u8], ip: Ipv4Addr, now: u64) -> bool {
        match self.leases.get(key).copied() {
            Some(l) if l.ip == ip && l.state == LeaseState::Bound => {
                self.put(
                    key,
                    Lease {
                        ip,
                        expires: now,
                        state: LeaseState::Released,
                    },
                );
                true
            }
            _ => false,
        }
    }

    /// DECLINE: `ip` is in use by someone we do not know of; keep it out of
    /// the pool for [`DECLINE_HOLD_SECS`]. Believed only from the client
    /// that holds or was offered `ip` (as Kea does): a DECLINE from anyone
    /// else is refused, so forged DECLINEs cannot empty the pool or NAK a
    /// bound client's renewal.
    pub fn decline(&mut self, key: &[u8], ip: Ipv4Addr, now: u64) -> Result<(), DeclineRefused> {
        if !self.in_pool(ip) {
            return Err(DeclineRefused::NotInPool);
        }
        let own = self
            .leases
            .get(key)
            .is_some_and(|l| l.ip == ip && l.state != LeaseState::Released);
        if !own {
            return Err(DeclineRefused::NotTheClients);
        }
        self.remove(key);
        // Bounded like the lease table: drop holds that are over first.
        if self.declined.len() >= self.max_leases {
            self.declined.retain(|_, &mut until| until > now);
        }
        if self.declined.len() < self.max_leases {
            self.declined.insert(u32::from(ip), now + DECLINE_HOLD_SECS);
        }
        Ok(())
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
        self.put(&key, lease);
        self.changed = false;
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
        // Offers lapse after the hold; the one that ended first goes to
        // someone else (a's hold was renewed at 1001).
        assert_eq!(
            p.offer(b"e", None, 1000 + OFFER_HOLD_SECS + 2),
            Some(ip("10.0.0.2"))
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
        assert_eq!(p.decline(b"b", a, 100), Ok(()));
        assert_eq!(p.commit(b"c", a, 101, 100), Err(Refusal::Declined));
        assert_eq!(p.commit(b"c", a, 100 + DECLINE_HOLD_SECS + 1, 100), Ok(()));
    }

    #[test]
    fn decline_counts_only_from_the_holder_or_the_offeree() {
        let mut p = pool();
        let a = p.offer(b"a", None, 0).unwrap();
        p.commit(b"a", a, 0, 100).unwrap();
        let b = p.offer(b"b", None, 0).unwrap();
        // Strangers: for a bound address, an offered one, a free one.
        let free = ip("10.0.0.5");
        for target in [a, b, free] {
            assert_eq!(
                p.decline(b"mallory", target, 10),
                Err(DeclineRefused::NotTheClients)
            );
        }
        assert_eq!(
            p.decline(b"a", ip("10.0.0.3"), 10),
            Err(DeclineRefused::NotInPool),
            "the server's own address"
        );
        // The holder may still renew, the offeree still request.
        assert_eq!(p.commit(b"a", a, 20, 100), Ok(()));
        assert_eq!(p.commit(b"b", b, 20, 100), Ok(()));
        // A client's DECLINE of another of its addresses counts for nothing.
        assert_eq!(p.decline(b"a", b, 30), Err(DeclineRefused::NotTheClients));
        // The holder's own DECLINE is believed; a released lease's is not.
        assert_eq!(p.decline(b"a", a, 40), Ok(()));
        assert_eq!(p.commit(b"a", a, 41, 100), Err(Refusal::Declined));
        assert!(p.release(b"b", b, 50));
        assert_eq!(p.decline(b"b", b, 51), Err(DeclineRefused::NotTheClients));
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
    fn a_full_pool_answers_in_bounded_time() {
        // A /16 pool fully held by offers: each further DISCOVER must not
        // scan the range.
        let mut p = LeasePool::new(ip("10.0.0.1"), ip("10.0.255.254"), &[], 1 << 20);
        for i in 0..65_534u32 {
            assert!(p.offer(&i.to_be_bytes(), None, 0).is_some(), "{i}");
        }
        let t0 = std::time::Instant::now();
        for i in 0..20_000u32 {
            assert_eq!(p.offer(&(1_000_000 + i).to_be_bytes(), None, 1), None);
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            t0.elapsed()
        );
        // Once the holds end, the oldest address is reused.
        assert!(p.offer(b"late", None, OFFER_HOLD_SECS + 1).is_some());
        assert_eq!(p.len(), 65_534);
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
