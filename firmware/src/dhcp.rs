//! A DHCPv4 client as a sans-IO state machine (RFC 2131 §4.4), over
//! smoltcp's wire codec (`smoltcp::wire::DhcpRepr`).
//!
//! ```text
//!  Init ──DISCOVER──▶ Selecting ──OFFER/REQUEST──▶ Requesting ──ACK──▶ Bound
//!   ▲                                                  │NAK/timeout      │ T1
//!   └──────────────────────────────────────────────────┘                 ▼
//!   └───────────────── lease expired ◀── Rebinding ◀──T2── Renewing (unicast)
//! ```
//!
//! Time and randomness come in as arguments: `handle(now, bytes)`,
//! `poll_transmit(now, buf)`, `poll_timeout()`, `poll_event()`. The client
//! writes and reads DHCP messages (UDP payloads); [`crate::frame`] wraps them
//! in IPv4/UDP for a raw packet socket, and a host program can send them
//! through an ordinary UDP socket instead (renewals are unicast).

use core::{net::Ipv4Addr, time::Duration};
use smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr, EthernetAddress};
use ze_hal::{os::MacAddr, time::Instant};

/// DHCP server port.
pub const SERVER_PORT: u16 = 67;
/// DHCP client port.
pub const CLIENT_PORT: u16 = 68;
/// Buffer for one DHCP message we send (options included).
pub const MAX_MESSAGE: usize = 576;
/// First DISCOVER/REQUEST retransmission delay; doubles up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest retransmission delay while acquiring.
pub const MAX_RETRY: Duration = Duration::from_secs(8);
/// REQUESTs sent for one OFFER before starting over.
pub const REQUEST_TRIES: u32 = 4;
/// Shortest retransmission delay while renewing/rebinding (RFC 2131 §4.4.5).
pub const MIN_RENEW_RETRY: Duration = Duration::from_secs(60);
/// Lease time assumed when the server gives none.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3600);

/// Options we ask the server for: subnet mask, router, DNS, lease time,
/// server id, renewal and rebinding times.
const PARAMETERS: &[u8] = &[1, 3, 6, 51, 54, 58, 59];

/// An acquired lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Our address.
    pub addr: Ipv4Addr,
    /// Prefix length of our subnet.
    pub prefix: u8,
    /// Default gateway, if the server named one.
    pub router: Option<Ipv4Addr>,
    /// The server that granted the lease.
    pub server: Ipv4Addr,
    /// DNS servers (unused by the installer, kept for the appliance).
    pub dns: heapless::Vec<Ipv4Addr, 3>,
    /// Lease duration.
    pub duration: Duration,
    /// When the lease was granted.
    pub acquired: Instant,
    /// Renewal time T1 (from `acquired`).
    pub t1: Duration,
    /// Rebinding time T2 (from `acquired`).
    pub t2: Duration,
}

impl Lease {
    fn expires(&self) -> Instant {
        self.acquired + self.duration
    }
}

/// Something the owner of the client must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A lease was granted or renewed: configure (or keep) it.
    Bound(Lease),
    /// The lease expired or the server refused it: remove the address.
    Lost,
}

/// A message to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// IPv4 source: 0.0.0.0 until bound, our address when renewing.
    pub src: Ipv4Addr,
    /// IPv4 destination: broadcast, or the server when renewing.
    pub dst: Ipv4Addr,
    /// Bytes of DHCP message written to the buffer.
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Offer {
    addr: Ipv4Addr,
    server: Ipv4Addr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Send a DISCOVER at `at`.
    Init { at: Instant },
    /// DISCOVER sent; waiting for OFFERs, resend at `retry_at`.
    Selecting { retry_at: Instant, delay: Duration },
    /// REQUEST for `offer`; resend at `retry_at`.
    Requesting {
        offer: Offer,
        retry_at: Instant,
        tries: u32,
        send_now: bool,
    },
    /// Lease held; renew at T1.
    Bound { lease: Lease },
    /// Unicast REQUEST to the server; resend at `retry_at`.
    Renewing { lease: Lease, retry_at: Instant },
    /// Broadcast REQUEST to any server; resend at `retry_at`.
    Rebinding { lease: Lease, retry_at: Instant },
}

/// The DHCP client of one interface.
#[derive(Debug)]
pub struct Client {
    mac: MacAddr,
    xid: u32,
    rng: u32,
    state: State,
    event: Option<Event>,
}

fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    // Contiguous: after the leading ones, only zeros.
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

fn classful_prefix(addr: Ipv4Addr) -> u8 {
    match addr.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

impl Client {
    /// A client for the interface with hardware address `mac`. `seed`
    /// makes transaction ids unpredictable (the runner passes the clock's
    /// low bits and the MAC).
    pub fn new(mac: MacAddr, seed: u32, now: Instant) -> Self {
        let mut c = Client {
            mac,
            xid: 0,
            rng: seed | 1,
            state: State::Init { at: now },
            event: None,
        };
        c.xid = c.next_random();
        c
    }

    fn next_random(&mut self) -> u32 {
        // xorshift32: enough to make transaction ids differ between boots.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        x
    }

    /// The lease held, if any.
    pub fn lease(&self) -> Option<&Lease> {
        match &self.state {
            State::Bound { lease }
            | State::Renewing { lease, .. }
            | State::Rebinding { lease, .. } => Some(lease),
            _ => None,
        }
    }

    /// The current transaction id.
    pub fn xid(&self) -> u32 {
        self.xid
    }

    /// Take the next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.event.take()
    }

    /// When the client next wants [`Client::poll_transmit`] called.
    pub fn poll_timeout(&self) -> Instant {
        match &self.state {
            State::Init { at } => *at,
            State::Selecting { retry_at, .. } => *retry_at,
            State::Requesting {
                retry_at, send_now, ..
            } => {
                if *send_now {
                    Instant::from_millis(0)
                } else {
                    *retry_at
                }
            }
            State::Bound { lease } => lease.acquired + lease.t1,
            State::Renewing { retry_at, lease } | State::Rebinding { retry_at, lease } => {
                (*retry_at).min(lease.expires())
            }
        }
    }

    fn repr(&self, kind: DhcpMessageType) -> DhcpRepr<'static> {
        DhcpRepr {
            message_type: kind,
            transaction_id: self.xid,
            secs: 0,
            client_hardware_address: EthernetAddress(self.mac),
            client_ip: Ipv4Addr::UNSPECIFIED,
            your_ip: Ipv4Addr::UNSPECIFIED,
            server_ip: Ipv4Addr::UNSPECIFIED,
            router: None,
            subnet_mask: None,
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            // Ask for broadcast replies: until bound we cannot receive
            // unicast to an address we do not have (RFC 2131 §4.1).
            broadcast: true,
            requested_ip: None,
            client_identifier: Some(EthernetAddress(self.mac)),
            server_identifier: None,
            parameter_request_list: Some(PARAMETERS),
            dns_servers: None,
            max_size: Some(MAX_MESSAGE as u16),
            lease_duration: None,
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        }
    }

    fn emit(repr: &DhcpRepr<'_>, buf: &mut [u8]) -> Option<usize> {
        let len = repr.buffer_len();
        let out = buf.get_mut(..len)?;
        out.fill(0);
        let mut packet = DhcpPacket::new_unchecked(out);
        repr.emit(&mut packet).ok()?;
        Some(len)
    }

    /// Write the message due at `now` into `buf`, if any.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        if now < self.poll_timeout() {
            return None;
        }
        match self.state.clone() {
            State::Init { .. } => {
                self.xid = self.next_random();
                let len = Self::emit(&self.repr(DhcpMessageType::Discover), buf)?;
                self.state = State::Selecting {
                    retry_at: now + FIRST_RETRY,
                    delay: FIRST_RETRY,
                };
                Some(Transmit {
                    src: Ipv4Addr::UNSPECIFIED,
                    dst: Ipv4Addr::BROADCAST,
                    len,
                })
            }
            State::Selecting { delay, .. } => {
                let len = Self::emit(&self.repr(DhcpMessageType::Discover), buf)?;
                let delay = (delay * 2).min(MAX_RETRY);
                self.state = State::Selecting {
                    retry_at: now + delay,
                    delay,
                };
                Some(Transmit {
                    src: Ipv4Addr::UNSPECIFIED,
                    dst: Ipv4Addr::BROADCAST,
                    len,
                })
            }
            State::Requesting { offer, tries, .. } => {
                if tries >= REQUEST_TRIES {
                    self.state = State::Init { at: now };
                    return self.poll_transmit(now, buf);
                }
                let mut repr = self.repr(DhcpMessageType::Request);
                repr.requested_ip = Some(offer.addr);
                repr.server_identifier = Some(offer.server);
                let len = Self::emit(&repr, buf)?;
                let delay = (FIRST_RETRY * (1 << tries.min(3))).min(MAX_RETRY);
                self.state = State::Requesting {
                    offer,
                    retry_at: now + delay,
                    tries: tries + 1,
                    send_now: false,
                };
                Some(Transmit {
                    src: Ipv4Addr::UNSPECIFIED,
                    dst: Ipv4Addr::BROADCAST,
                    len,
                })
            }
            State::Bound { lease } => {
                self.state = State::Renewing {
                    lease,
                    retry_at: now,
                };
                self.poll_transmit(now, buf)
            }
            State::Renewing { lease, .. } | State::Rebinding { lease, .. }
                if now >= lease.expires() =>
            {
                self.state = State::Init { at: now };
                self.event = Some(Event::Lost);
                None
            }
            State::Renewing { lease, .. } if now >= lease.acquired + lease.t2 => {
                self.state = State::Rebinding {
                    lease,
                    retry_at: now,
                };
                self.poll_transmit(now, buf)
            }
            State::Renewing { lease, .. } => {
                let mut repr = self.repr(DhcpMessageType::Request);
                repr.client_ip = lease.addr;
                repr.broadcast = false;
                let len = Self::emit(&repr, buf)?;
                let until_t2 = (lease.acquired + lease.t2).saturating_since(now);
                let retry_at = now + (until_t2 / 2).max(MIN_RENEW_RETRY);
                let t = Transmit {
                    src: lease.addr,
                    dst: lease.server,
                    len,
                };
                self.state = State::Renewing { lease, retry_at };
                Some(t)
            }
            State::Rebinding { lease, .. } => {
                let mut repr = self.repr(DhcpMessageType::Request);
                repr.client_ip = lease.addr;
                repr.broadcast = false;
                let len = Self::emit(&repr, buf)?;
                let until_end = lease.expires().saturating_since(now);
                let retry_at = now + (until_end / 2).max(MIN_RENEW_RETRY);
                let t = Transmit {
                    src: lease.addr,
                    dst: Ipv4Addr::BROADCAST,
                    len,
                };
                self.state = State::Rebinding { lease, retry_at };
                Some(t)
            }
        }
    }

    /// Handle a DHCP message (a UDP payload from port 67).
    pub fn handle(&mut self, now: Instant, bytes: &[u8]) {
        let Ok(packet) = DhcpPacket::new_checked(bytes) else {
            return;
        };
        let Ok(repr) = DhcpRepr::parse(&packet) else {
            return;
        };
        if repr.transaction_id != self.xid || repr.client_hardware_address.0 != self.mac {
            return;
        }
        match (&self.state, repr.message_type) {
            (State::Selecting { .. }, DhcpMessageType::Offer) => {
                let (Some(server), addr) = (repr.server_identifier, repr.your_ip) else {
                    return;
                };
                if addr.is_unspecified() || addr.is_broadcast() || addr.is_multicast() {
                    return;
                }
                self.state = State::Requesting {
                    offer: Offer { addr, server },
                    retry_at: now,
                    tries: 0,
                    send_now: true,
                };
            }
            (State::Requesting { offer, .. }, DhcpMessageType::Ack) => {
                if repr.server_identifier.is_some_and(|s| s != offer.server) {
                    return;
                }
                let server = offer.server;
                if let Some(lease) = Self::lease_from(now, &repr, server) {
                    self.event = Some(Event::Bound(lease.clone()));
                    self.state = State::Bound { lease };
                }
            }
            (
                State::Renewing { lease, .. } | State::Rebinding { lease, .. },
                DhcpMessageType::Ack,
            ) => {
                let server = repr.server_identifier.unwrap_or(lease.server);
                if let Some(new) = Self::lease_from(now, &repr, server) {
                    let changed = new.addr != lease.addr;
                    self.event = Some(if changed {
                        Event::Lost
                    } else {
                        Event::Bound(new.clone())
                    });
                    self.state = if changed {
                        State::Init { at: now }
                    } else {
                        State::Bound { lease: new }
                    };
                }
            }
            (
                State::Requesting { .. } | State::Renewing { .. } | State::Rebinding { .. },
                DhcpMessageType::Nak,
            ) => {
                let had_lease = self.lease().is_some();
                self.state = State::Init { at: now };
                if had_lease {
                    self.event = Some(Event::Lost);
                }
            }
            _ => {}
        }
    }

    fn lease_from(now: Instant, repr: &DhcpRepr<'_>, server: Ipv4Addr) -> Option<Lease> {
        let addr = repr.your_ip;
        if addr.is_unspecified() {
            return None;
        }
        let prefix = match repr.subnet_mask {
            Some(mask) => prefix_of(mask)?,
            None => classful_prefix(addr),
        };
        let duration = repr
            .lease_duration
            .map(|s| Duration::from_secs(u64::from(s)))
            .unwrap_or(DEFAULT_LEASE);
        let t1 = repr
            .renew_duration
            .map(|s| Duration::from_secs(u64::from(s)))
            .filter(|t| *t < duration)
            .unwrap_or(duration / 2);
        let t2 = repr
            .rebind_duration
            .map(|s| Duration::from_secs(u64::from(s)))
            .filter(|t| *t < duration && *t >= t1)
            .unwrap_or(duration * 7 / 8)
            .max(t1);
        Some(Lease {
            addr,
            prefix,
            router: repr.router.filter(|r| !r.is_unspecified()),
            server,
            dns: repr.dns_servers.clone().unwrap_or_default(),
            duration,
            acquired: now,
            t1,
            t2,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::vec::Vec;

    pub const MAC: MacAddr = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const YOU: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 50);

    fn t(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// A server reply to `xid` built with smoltcp (as a server would).
    pub fn reply(kind: DhcpMessageType, xid: u32, mac: MacAddr, lease: Option<u32>) -> Vec<u8> {
        let repr = DhcpRepr {
            message_type: kind,
            transaction_id: xid,
            secs: 0,
            client_hardware_address: EthernetAddress(mac),
            client_ip: Ipv4Addr::UNSPECIFIED,
            your_ip: if kind == DhcpMessageType::Nak {
                Ipv4Addr::UNSPECIFIED
            } else {
                YOU
            },
            server_ip: SERVER,
            router: Some(SERVER),
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            broadcast: true,
            requested_ip: None,
            client_identifier: None,
            server_identifier: Some(SERVER),
            parameter_request_list: None,
            dns_servers: None,
            max_size: None,
            lease_duration: lease,
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        };
        let mut buf = std::vec![0u8; repr.buffer_len()];
        repr.emit(&mut DhcpPacket::new_unchecked(&mut buf[..]))
            .unwrap();
        buf
    }

    fn sent(c: &mut Client, now: Instant) -> Option<(Transmit, DhcpMessageType, Vec<u8>)> {
        let mut buf = [0u8; MAX_MESSAGE];
        let tx = c.poll_transmit(now, &mut buf)?;
        let bytes = buf[..tx.len].to_vec();
        let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
        let kind = DhcpRepr::parse(&p).unwrap().message_type;
        Some((tx, kind, bytes))
    }

    #[test]
    fn i8_discover_offer_request_ack() {
        let mut c = Client::new(MAC, 0x1234_5678, t(0));
        let (tx, kind, bytes) = sent(&mut c, t(0)).unwrap();
        assert_eq!(kind, DhcpMessageType::Discover);
        assert_eq!(
            (tx.src, tx.dst),
            (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)
        );
        let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
        let r = DhcpRepr::parse(&p).unwrap();
        assert!(r.broadcast);
        assert_eq!(r.parameter_request_list, Some(PARAMETERS));
        // Nothing more until the retry time.
        assert!(sent(&mut c, t(500)).is_none());
        c.handle(
            t(600),
            &reply(DhcpMessageType::Offer, c.xid(), MAC, Some(600)),
        );
        let (_, kind, bytes) = sent(&mut c, t(600)).unwrap();
        assert_eq!(kind, DhcpMessageType::Request);
        let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
        let r = DhcpRepr::parse(&p).unwrap();
        assert_eq!(r.requested_ip, Some(YOU));
        assert_eq!(r.server_identifier, Some(SERVER));
        c.handle(
            t(700),
            &reply(DhcpMessageType::Ack, c.xid(), MAC, Some(600)),
        );
        let Some(Event::Bound(lease)) = c.poll_event() else {
            panic!("no lease")
        };
        assert_eq!(lease.addr, YOU);
        assert_eq!(lease.prefix, 24);
        assert_eq!(lease.router, Some(SERVER));
        assert_eq!(lease.t1, Duration::from_secs(300));
        assert_eq!(lease.t2, Duration::from_secs(525));
        assert_eq!(c.poll_timeout(), t(700) + Duration::from_secs(300));
    }

    #[test]
    fn discover_retransmits_with_backoff() {
        let mut c = Client::new(MAC, 7, t(0));
        sent(&mut c, t(0)).unwrap();
        let mut at = Vec::new();
        for _ in 0..6 {
            let now = c.poll_timeout();
            assert!(sent(&mut c, now).is_some());
            at.push(now.as_millis());
        }
        assert_eq!(at, [1_000, 3_000, 7_000, 15_000, 23_000, 31_000]);
    }

    #[test]
    fn offers_for_someone_else_are_ignored() {
        let mut c = Client::new(MAC, 99, t(0));
        sent(&mut c, t(0)).unwrap();
        let xid = c.xid();
        c.handle(t(1), &reply(DhcpMessageType::Offer, xid ^ 1, MAC, None));
        c.handle(
            t(1),
            &reply(DhcpMessageType::Offer, xid, [1, 2, 3, 4, 5, 6], None),
        );
        c.handle(t(1), &reply(DhcpMessageType::Ack, xid, MAC, None));
        c.handle(t(1), &[0u8; 10]);
        c.handle(t(1), &[]);
        assert!(sent(&mut c, t(2)).is_none(), "still selecting, nothing due");
        // The right one is taken.
        c.handle(t(3), &reply(DhcpMessageType::Offer, xid, MAC, None));
        assert_eq!(sent(&mut c, t(3)).unwrap().1, DhcpMessageType::Request);
    }

    fn bound(lease_secs: u32) -> Client {
        let mut c = Client::new(MAC, 5, t(0));
        sent(&mut c, t(0)).unwrap();
        c.handle(
            t(10),
            &reply(DhcpMessageType::Offer, c.xid(), MAC, Some(lease_secs)),
        );
        sent(&mut c, t(10)).unwrap();
        c.handle(
            t(20),
            &reply(DhcpMessageType::Ack, c.xid(), MAC, Some(lease_secs)),
        );
        assert!(matches!(c.poll_event(), Some(Event::Bound(_))));
        c
    }

    #[test]
    fn renew_is_unicast_then_rebind_is_broadcast_then_lost() {
        let mut c = bound(1000);
        let t1 = c.poll_timeout();
        assert_eq!(t1, t(20) + Duration::from_secs(500));
        let (tx, kind, bytes) = sent(&mut c, t1).unwrap();
        assert_eq!(kind, DhcpMessageType::Request);
        assert_eq!((tx.src, tx.dst), (YOU, SERVER));
        let p = DhcpPacket::new_checked(&bytes[..]).unwrap();
        let r = DhcpRepr::parse(&p).unwrap();
        assert_eq!(r.client_ip, YOU);
        assert_eq!(r.requested_ip, None);
        // No answer: at T2 it rebinds by broadcast.
        let t2 = t(20) + Duration::from_secs(875);
        let mut now = t1;
        let mut last = None;
        while now < t2 {
            now = c.poll_timeout().max(now + Duration::from_millis(1));
            if let Some((tx, _, _)) = sent(&mut c, now) {
                last = Some(tx.dst);
            }
        }
        assert_eq!(last, Some(Ipv4Addr::BROADCAST));
        // No answer until expiry: the lease is lost.
        let end = t(20) + Duration::from_secs(1000);
        while c.poll_event().is_none() && now <= end + Duration::from_secs(1) {
            now = c.poll_timeout().max(now + Duration::from_millis(1));
            sent(&mut c, now);
        }
        assert!(c.lease().is_none());
    }

    #[test]
    fn renew_ack_extends_and_nak_drops() {
        let mut c = bound(1000);
        let t1 = c.poll_timeout();
        sent(&mut c, t1).unwrap();
        c.handle(t1, &reply(DhcpMessageType::Ack, c.xid(), MAC, Some(1000)));
        let Some(Event::Bound(l)) = c.poll_event() else {
            panic!()
        };
        assert_eq!(l.acquired, t1);
        let t1b = c.poll_timeout();
        sent(&mut c, t1b).unwrap();
        c.handle(t1b, &reply(DhcpMessageType::Nak, c.xid(), MAC, None));
        assert_eq!(c.poll_event(), Some(Event::Lost));
        assert_eq!(sent(&mut c, t1b).unwrap().1, DhcpMessageType::Discover);
    }

    #[test]
    fn request_gives_up_after_tries_and_rediscovers() {
        let mut c = Client::new(MAC, 11, t(0));
        sent(&mut c, t(0)).unwrap();
        c.handle(t(5), &reply(DhcpMessageType::Offer, c.xid(), MAC, None));
        let mut kinds = Vec::new();
        let mut now = t(5);
        for _ in 0..6 {
            if let Some((_, k, _)) = sent(&mut c, now) {
                kinds.push(k);
            }
            now = c.poll_timeout();
        }
        use DhcpMessageType::*;
        assert_eq!(
            kinds,
            [Request, Request, Request, Request, Discover, Discover]
        );
    }

    /// A captured reply with its transaction id set to `xid`.
    fn captured(bytes: &[u8], xid: u32) -> Vec<u8> {
        let mut b = bytes.to_vec();
        b[4..8].copy_from_slice(&xid.to_be_bytes());
        b
    }

    const SLIRP_OFFER: &[u8] = include_bytes!("../testdata/dhcp/slirp-offer.bin");
    const SLIRP_ACK: &[u8] = include_bytes!("../testdata/dhcp/slirp-ack.bin");
    const DNSMASQ_OFFER: &[u8] = include_bytes!("../testdata/dhcp/dnsmasq-offer.bin");
    const DNSMASQ_ACK: &[u8] = include_bytes!("../testdata/dhcp/dnsmasq-ack.bin");

    fn lease_from_captures(offer: &[u8], ack: &[u8]) -> Lease {
        let mut c = Client::new(MAC, 0xdead_beef, t(0));
        sent(&mut c, t(0)).unwrap();
        c.handle(t(5), &captured(offer, c.xid()));
        let (_, kind, _) = sent(&mut c, t(5)).unwrap();
        assert_eq!(kind, DhcpMessageType::Request);
        c.handle(t(9), &captured(ack, c.xid()));
        match c.poll_event() {
            Some(Event::Bound(l)) => l,
            other => panic!("no lease: {other:?}"),
        }
    }

    #[test]
    fn i8_captured_qemu_slirp_offer_and_ack() {
        let l = lease_from_captures(SLIRP_OFFER, SLIRP_ACK);
        assert_eq!(l.addr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(l.prefix, 24);
        assert_eq!(l.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(l.server, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(l.duration, Duration::from_secs(86_400));
        assert_eq!(l.dns.as_slice(), [Ipv4Addr::new(10, 0, 2, 3)]);
    }

    #[test]
    fn i8_captured_dnsmasq_offer_and_ack() {
        let l = lease_from_captures(DNSMASQ_OFFER, DNSMASQ_ACK);
        assert_eq!(l.addr.octets()[..3], [198, 51, 100]);
        assert_eq!(l.prefix, 24);
        assert_eq!(l.router, Some(Ipv4Addr::new(198, 51, 100, 1)));
        assert_eq!(l.server, Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(l.duration, Duration::from_secs(600));
        // dnsmasq sends T1 and T2 explicitly (300 s and 525 s).
        assert_eq!(l.t1, Duration::from_secs(300));
        assert_eq!(l.t2, Duration::from_secs(525));
    }

    #[test]
    fn captured_offer_with_the_wrong_xid_is_ignored() {
        let mut c = Client::new(MAC, 3, t(0));
        sent(&mut c, t(0)).unwrap();
        // As captured: another client's transaction.
        c.handle(t(1), SLIRP_OFFER);
        assert!(sent(&mut c, t(2)).is_none());
    }

    #[test]
    fn truncated_and_corrupted_offers_never_panic_and_never_bind() {
        for cap in [SLIRP_OFFER, DNSMASQ_OFFER] {
            for cut in (0..cap.len()).step_by(7) {
                let mut c = Client::new(MAC, 77, t(0));
                sent(&mut c, t(0)).unwrap();
                c.handle(t(1), &captured(&cap[..cut.max(8)], c.xid()));
            }
            // Every option length byte set to every interesting value.
            let mut c = Client::new(MAC, 78, t(0));
            sent(&mut c, t(0)).unwrap();
            let base = captured(cap, c.xid());
            let mut i = 240;
            while i + 1 < base.len() && base[i] != 255 {
                for len in [0u8, 1, 3, 5, 255] {
                    let mut b = base.clone();
                    b[i + 1] = len;
                    c.handle(t(1), &b);
                }
                i += 2 + usize::from(base[i + 1]);
            }
        }
    }

    #[test]
    fn masks() {
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 255, 0)), Some(24));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(prefix_of(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
        assert_eq!(prefix_of(Ipv4Addr::new(255, 0, 255, 0)), None);
        assert_eq!(classful_prefix(Ipv4Addr::new(10, 0, 2, 15)), 8);
        assert_eq!(classful_prefix(Ipv4Addr::new(192, 0, 2, 15)), 24);
    }
}
