//! Who gets a slot: the admission of work that holds one while it runs (an
//! HTTP connection, a TFTP transfer), shared by the imageserver and the
//! tftpserver.
//!
//! - A cap for the whole server, and a cap per client address below it,
//!   so one address (or a few) cannot take every slot.
//! - When a cap is reached, the server may free a slot held by work that
//!   is only waiting on its client (an idle keep-alive connection, a
//!   transfer never acknowledged): the `evict` callback names one, oldest
//!   first, and the new work takes its place.
//! - Otherwise the work waits in a short queue instead of being refused;
//!   it is refused only after [`Caps::queue_wait`], or when the queue
//!   itself is full (as many waiting as there are slots, and at most the
//!   per-client cap from one address).
//!
//! Sans-IO: the caller keeps it under its own lock, passes the time in,
//! and reports finished work with [`Admission::finish`].

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    time::{Duration, Instant},
};

/// The limits of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Work running at once, in all.
    pub total: usize,
    /// Work running at once for one client address (at most `total`).
    pub per_client: usize,
    /// How long work may wait for a slot before it is refused.
    pub queue_wait: Duration,
}

/// What became of offered work.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer<T> {
    /// It holds a slot now: start it.
    Start(T),
    /// It waits for a slot; [`Admission::poll`] starts or refuses it.
    Queued,
    /// The queue is full (or holds all this client may queue): refuse it.
    Refused(T),
}

/// What [`Admission::poll`] decided about waiting work.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited<T> {
    /// It got a slot: start it.
    Start(IpAddr, T),
    /// It waited [`Caps::queue_wait`] without one: refuse it.
    Expired(IpAddr, T),
}

#[derive(Debug)]
struct Waiting<T> {
    client: IpAddr,
    since: Instant,
    item: T,
}

/// Slots in use per client, and the work waiting for one.
#[derive(Debug)]
pub struct Admission<T> {
    caps: Caps,
    running: HashMap<IpAddr, usize>,
    total: usize,
    queue: VecDeque<Waiting<T>>,
}

impl<T> Admission<T> {
    /// No work running, nothing waiting. `per_client` is lowered to `total`.
    pub fn new(caps: Caps) -> Self {
        let caps = Caps {
            total: caps.total.max(1),
            per_client: caps.per_client.clamp(1, caps.total.max(1)),
            ..caps
        };
        Admission {
            caps,
            running: HashMap::new(),
            total: 0,
            queue: VecDeque::new(),
        }
    }

    /// The limits in force.
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// Slots in use.
    pub fn running(&self) -> usize {
        self.total
    }

    /// Slots in use by `client`.
    pub fn running_for(&self, client: IpAddr) -> usize {
        self.running.get(&client).copied().unwrap_or(0)
    }

    /// Work waiting for a slot.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The waiting work, oldest first.
    pub fn waiting(&self) -> impl Iterator<Item = &T> {
        self.queue.iter().map(|w| &w.item)
    }

    /// Work of `client` ended (or was evicted): its slot is free.
    pub fn finish(&mut self, client: IpAddr) {
        if let Some(n) = self.running.get_mut(&client) {
            *n -= 1;
            self.total -= 1;
            if *n == 0 {
                self.running.remove(&client);
            }
        }
    }

    /// Take a slot for `client` if there is room, after evicting idle work
    /// where needed: `evict(Some(client))` when the client is at its cap,
    /// `evict(None)` when the server is. Each eviction frees one slot, so
    /// this ends after at most `total` of them.
    fn take(
        &mut self,
        client: IpAddr,
        evict: &mut impl FnMut(Option<IpAddr>) -> Option<IpAddr>,
    ) -> bool {
        for _ in 0..=self.caps.total {
            let scope = if self.running_for(client) >= self.caps.per_client {
                Some(client)
            } else if self.total >= self.caps.total {
                None
            } else {
                *self.running.entry(client).or_default() += 1;
                self.total += 1;
                return true;
            };
            match evict(scope) {
                Some(victim) if self.running_for(victim) > 0 => self.finish(victim),
                _ => return false,
            }
        }
        false
    }

    /// Offer work of `client` at `now`: it starts at once (maybe in the
    /// place of evicted idle work), or waits, or is refused when even the
    /// queue is full. Work already waiting goes first: new work of a
    /// client with waiting work queues behind it.
    pub fn offer(
        &mut self,
        client: IpAddr,
        now: Instant,
        item: T,
        mut evict: impl FnMut(Option<IpAddr>) -> Option<IpAddr>,
    ) -> Offer<T> {
        let ahead = self.queue.iter().any(|w| w.client == client)
            || (self.total >= self.caps.total && !self.queue.is_empty());
        if !ahead && self.take(client, &mut evict) {
            return Offer::Start(item);
        }
        let queued_by_client = self.queue.iter().filter(|w| w.client == client).count();
        if self.queue.len() >= self.caps.total || queued_by_client >= self.caps.per_client {
            return Offer::Refused(item);
        }
        self.queue.push_back(Waiting {
            client,
            since: now,
            item,
        });
        Offer::Queued
    }

    /// Start waiting work that fits now (oldest first, evicting idle work
    /// as [`Admission::offer`] does), and refuse work that has waited too
    /// long. Call it whenever a slot may have been freed, and now and then
    /// while anything waits.
    pub fn poll(
        &mut self,
        now: Instant,
        mut evict: impl FnMut(Option<IpAddr>) -> Option<IpAddr>,
    ) -> Vec<Waited<T>> {
        let mut out = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        while let Some(w) = self.queue.pop_front() {
            if now.saturating_duration_since(w.since) >= self.caps.queue_wait {
                out.push(Waited::Expired(w.client, w.item));
            } else if self.take(w.client, &mut evict) {
                out.push(Waited::Start(w.client, w.item));
            } else {
                kept.push_back(w);
            }
        }
        self.queue = kept;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    fn caps(total: usize, per_client: usize) -> Caps {
        Caps {
            total,
            per_client,
            queue_wait: Duration::from_secs(10),
        }
    }

    fn none(_: Option<IpAddr>) -> Option<IpAddr> {
        None
    }

    #[test]
    fn caps_per_client_and_in_all_then_the_queue_in_order() {
        let mut a = Admission::new(caps(4, 2));
        let t0 = Instant::now();
        assert_eq!(a.offer(ip(1), t0, 1, none), Offer::Start(1));
        assert_eq!(a.offer(ip(1), t0, 2, none), Offer::Start(2));
        // Client 1 is at its cap: it waits; client 2 still gets in.
        assert_eq!(a.offer(ip(1), t0, 3, none), Offer::Queued);
        assert_eq!(a.offer(ip(2), t0, 4, none), Offer::Start(4));
        assert_eq!(a.offer(ip(2), t0, 5, none), Offer::Start(5));
        assert_eq!(a.running(), 4);
        // The server is full: everybody waits, in order.
        assert_eq!(a.offer(ip(3), t0, 6, none), Offer::Queued);
        assert_eq!(a.offer(ip(1), t0, 7, none), Offer::Queued);
        // Client 1 may queue only as much as it may run.
        assert_eq!(a.offer(ip(1), t0, 8, none), Offer::Refused(8));
        assert!(a.poll(t0, none).is_empty());
        a.finish(ip(2));
        // Client 1 is still at its cap; 6 (client 3) fits.
        assert_eq!(a.poll(t0, none), vec![Waited::Start(ip(3), 6)]);
        a.finish(ip(1));
        assert_eq!(a.poll(t0, none), vec![Waited::Start(ip(1), 3)]);
        assert_eq!(a.queued(), 1);
        assert_eq!(a.waiting().copied().collect::<Vec<_>>(), [7]);
        // What waits too long is refused.
        assert_eq!(
            a.poll(t0 + Duration::from_secs(10), none),
            vec![Waited::Expired(ip(1), 7)]
        );
        assert_eq!(a.queued(), 0);
    }

    #[test]
    fn the_queue_holds_at_most_one_entry_per_slot() {
        let mut a = Admission::new(caps(2, 1));
        let t0 = Instant::now();
        for n in 1..=2 {
            assert_eq!(a.offer(ip(n), t0, n, none), Offer::Start(n));
        }
        for n in 3..=4 {
            assert_eq!(a.offer(ip(n), t0, n, none), Offer::Queued);
        }
        assert_eq!(a.offer(ip(5), t0, 5, none), Offer::Refused(5));
    }

    #[test]
    fn idle_work_is_evicted_for_new_work_the_clients_own_first() {
        let mut a = Admission::new(caps(3, 2));
        let t0 = Instant::now();
        let mut idle: Vec<IpAddr> = Vec::new();
        let mut evicted: Vec<Option<IpAddr>> = Vec::new();
        for (n, c) in [(1, 1), (2, 1), (3, 2)] {
            assert_eq!(a.offer(ip(c), t0, n, none), Offer::Start(n));
            idle.push(ip(c));
        }
        // Client 1 is at its cap: its own idle work goes, not client 2's.
        let mut evict = |scope: Option<IpAddr>| {
            evicted.push(scope);
            let i = idle.iter().position(|c| scope.is_none_or(|s| s == *c))?;
            Some(idle.remove(i))
        };
        assert_eq!(a.offer(ip(1), t0, 4, &mut evict), Offer::Start(4));
        // Server full: the oldest idle work of anyone goes.
        assert_eq!(a.offer(ip(3), t0, 5, &mut evict), Offer::Start(5));
        assert_eq!(evicted, [Some(ip(1)), None]);
        assert_eq!(a.running(), 3);
        assert_eq!(a.running_for(ip(1)), 1);
        assert_eq!(a.running_for(ip(2)), 1);
        // Nothing idle left: new work waits.
        assert_eq!(a.offer(ip(4), t0, 6, |_| None), Offer::Queued);
    }

    #[test]
    fn per_client_cap_is_never_above_the_total() {
        let a: Admission<()> = Admission::new(caps(4, 99));
        assert_eq!(a.caps().per_client, 4);
        let a: Admission<()> = Admission::new(caps(0, 0));
        assert_eq!((a.caps().total, a.caps().per_client), (1, 1));
    }
}
