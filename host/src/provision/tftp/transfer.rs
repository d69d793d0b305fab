//! One TFTP read transfer as a state machine: option negotiation (RFC 2347
//! with blksize RFC 2348, timeout and tsize RFC 2349, windowsize RFC 7440),
//! then DATA blocks acknowledged by ACKs (RFC 1350 §6).
//!
//! Sans-IO: the runner feeds [`Transfer::handle_ack`] / [`Transfer::handle_error`]
//! and the time, sends what [`Transfer::poll_transmit`] writes, and sleeps
//! until [`Transfer::poll_timeout`].
//!
//! - Block numbers are 16 bits on the wire and wrap from 65535 to 0;
//!   inside, blocks are counted in 64 bits, so a file of any size works.
//! - A duplicate ACK never triggers a resend (the Sorcerer's Apprentice
//!   bug, RFC 1350 §7 note / RFC 1123 §4.2.3.1): only a timeout does.
//! - An ACK inside the window means the client lost what followed: the
//!   next window starts after it (RFC 7440 §4).
//! - Retransmission backs off and is bounded: the wait doubles after each
//!   timeout (timeout, 2×, 4×, …); the transfer fails after `retries`
//!   timeouts in a row, or after [`MAX_SILENCE`] without a word from the
//!   client, whichever comes first.
//! - Until the client's first acknowledgement the first packet is sent
//!   again only [`FIRST_ACK_RETRIES`] time(s), after the server's own
//!   timeout even if the client negotiated a longer one: a request that
//!   nobody follows up (a spoofed source, a client gone) holds its slot
//!   for about three timeouts and draws two packets, not six.
//! - A client may negotiate a `timeout` of at most
//!   [`MAX_NEGOTIATED_TIMEOUT`] seconds; a longer one is left out of the
//!   OACK (RFC 2349 lets a server decline the option, not change its
//!   value) and the server's own timeout applies.

use crate::wire::tftp::{DATA_HEADER_LEN, Repr, Request, data_header};
use std::{
    io,
    time::{Duration, Instant},
};

/// RFC 1350 block size.
pub const DEFAULT_BLKSIZE: usize = 512;
/// RFC 2348 bounds.
pub const MIN_BLKSIZE: u64 = 8;
pub const MAX_BLKSIZE: u64 = 65_464;
/// RFC 2349 timeout bounds (seconds).
pub const MIN_TIMEOUT: u64 = 1;
pub const MAX_TIMEOUT: u64 = 255;
/// The longest timeout (seconds) a client may negotiate with us.
pub const MAX_NEGOTIATED_TIMEOUT: u64 = 5;
/// The longest a transfer waits without hearing from its client.
pub const MAX_SILENCE: Duration = Duration::from_secs(15);
/// Retransmissions of the first packet before the client has answered.
pub const FIRST_ACK_RETRIES: u32 = 1;
/// RFC 7440 bounds; we answer at most [`MAX_WINDOW`].
pub const MAX_WINDOWSIZE_OPTION: u64 = 65_535;
pub const MAX_WINDOW: u16 = 64;

/// Server-side limits for negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest block to send (path MTU less IP, UDP, TFTP headers).
    pub max_blksize: usize,
    /// The retransmission timeout when the client names none.
    pub timeout: Duration,
    /// Timeouts in a row before giving up.
    pub retries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_blksize: MAX_BLKSIZE as usize,
            timeout: Duration::from_secs(1),
            retries: 5,
        }
    }
}

/// The outcome of negotiation: transfer parameters and the OACK options
/// (empty: no OACK, DATA 1 comes first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: usize,
    pub windowsize: u16,
    pub timeout: Duration,
    pub oack: Vec<(String, String)>,
}

fn number(v: &str) -> Option<u64> {
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Decide the options of `req` for a file of `size` bytes. Options with
/// values outside their RFC ranges, or that are not numbers, are ignored
/// (left out of the OACK), as RFC 2347 allows, and so is a timeout above
/// [`MAX_NEGOTIATED_TIMEOUT`]; blksize and windowsize are lowered to our
/// limits.
pub fn negotiate(req: &Request<'_>, size: u64, limits: &Limits) -> Negotiated {
    let mut n = Negotiated {
        blksize: DEFAULT_BLKSIZE,
        windowsize: 1,
        timeout: limits.timeout,
        oack: Vec::new(),
    };
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in &req.options {
        let lname = name.to_ascii_lowercase();
        if seen.contains(&lname) {
            continue;
        }
        seen.push(lname.clone());
        let v = number(value);
        match lname.as_str() {
            "blksize" => {
                if let Some(b) = v.filter(|b| (MIN_BLKSIZE..=MAX_BLKSIZE).contains(b)) {
                    n.blksize = (b as usize)
                        .min(limits.max_blksize)
                        .max(MIN_BLKSIZE as usize);
                    n.oack.push((lname, n.blksize.to_string()));
                }
            }
            "windowsize" => {
                if let Some(w) = v.filter(|w| (1..=MAX_WINDOWSIZE_OPTION).contains(w)) {
                    n.windowsize = (w as u16).min(MAX_WINDOW);
                    n.oack.push((lname, n.windowsize.to_string()));
                }
            }
            "timeout" => {
                if let Some(t) = v.filter(|t| (MIN_TIMEOUT..=MAX_NEGOTIATED_TIMEOUT).contains(t)) {
                    n.timeout = Duration::from_secs(t);
                    n.oack.push((lname, t.to_string()));
                }
            }
            // An empty file's size is left out: curl (7.88) rejects an
            // OACK with tsize 0, and RFC 2349 lets the server stay silent.
            "tsize" if v.is_some() && size > 0 => n.oack.push((lname, size.to_string())),
            _ => {}
        }
    }
    n
}

/// Where random-access reads come from (a file in the runner, bytes in
/// tests).
pub trait BlockSource {
    /// Fill `buf` from `offset`; fewer bytes only at the end of the data.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl BlockSource for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut done = 0;
        while done < buf.len() {
            match FileExt::read_at(self, &mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
}

impl BlockSource for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = (offset as usize).min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

/// Why a transfer ended without the client acknowledging the last block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No ACK after the allowed retransmissions.
    Timeout,
    /// The client sent an ERROR.
    ClientError { code: u16, message: String },
    /// The file could not be read, or changed size.
    Read(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// OACK to send (or sent, waiting for ACK 0).
    Negotiating {
        sent: bool,
        deadline: Option<Instant>,
        retries: u32,
    },
    /// Blocks `base..next` are sent and not yet acknowledged.
    Sending {
        base: u64,
        next: u64,
        deadline: Option<Instant>,
        retries: u32,
    },
    Done,
    Failed(Failure),
}

/// A read transfer of `size` bytes.
#[derive(Debug, Clone)]
pub struct Transfer {
    blksize: usize,
    windowsize: u64,
    timeout: Duration,
    /// The timeout until the client's first acknowledgement.
    first_timeout: Duration,
    retries: u32,
    /// Whether the client has acknowledged anything yet.
    acked: bool,
    /// Since when the transfer has been waiting without progress.
    silent_since: Option<Instant>,
    size: u64,
    last: u64,
    oack: Vec<(String, String)>,
    state: State,
    retransmits: u64,
}

impl Transfer {
    /// A transfer of `size` bytes with the negotiated parameters.
    pub fn new(n: Negotiated, size: u64, limits: &Limits) -> Transfer {
        let blksize = n.blksize.max(1);
        let state = if n.oack.is_empty() {
            State::Sending {
                base: 1,
                next: 1,
                deadline: None,
                retries: 0,
            }
        } else {
            State::Negotiating {
                sent: false,
                deadline: None,
                retries: 0,
            }
        };
        Transfer {
            blksize,
            windowsize: u64::from(n.windowsize.max(1)),
            timeout: n.timeout,
            first_timeout: n.timeout.min(limits.timeout),
            retries: limits.retries,
            acked: false,
            silent_since: None,
            size,
            // The last block is the first one shorter than blksize (maybe empty).
            last: size / blksize as u64 + 1,
            oack: n.oack,
            state,
            retransmits: 0,
        }
    }

    /// The largest datagram [`Transfer::poll_transmit`] writes.
    pub fn max_packet(&self) -> usize {
        let oack: usize = 2 + self
            .oack
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>();
        (DATA_HEADER_LEN + self.blksize).max(oack)
    }

    /// Whether the client acknowledged the last block.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Why the transfer failed, if it did.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.state {
            State::Failed(f) => Some(f),
            _ => None,
        }
    }

    /// Whether nothing more will happen.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done | State::Failed(_))
    }

    /// How many packets were sent again after a timeout.
    pub fn retransmits(&self) -> u64 {
        self.retransmits
    }

    /// The block size in use.
    pub fn blksize(&self) -> usize {
        self.blksize
    }

    /// The window size in use.
    pub fn windowsize(&self) -> u64 {
        self.windowsize
    }

    /// Whether the client has acknowledged anything (the OACK or a block).
    pub fn acknowledged(&self) -> bool {
        self.acked
    }

    /// The client made progress: timers start afresh.
    fn progress(&mut self) {
        self.acked = true;
        self.silent_since = None;
    }

    /// When to send again after the `retries`-th retransmission at `now`:
    /// the timeout doubled `retries` times, but never past
    /// [`MAX_SILENCE`] since the client was last heard from.
    fn next_deadline(&mut self, now: Instant, retries: u32) -> Instant {
        let base = if self.acked {
            self.timeout
        } else {
            self.first_timeout
        };
        let step = base.saturating_mul(1u32 << retries.min(16));
        let since = *self.silent_since.get_or_insert(now);
        (now + step).min(since + MAX_SILENCE)
    }

    /// Whether a `retries`-th retransmission at `now` is one too many.
    fn gives_up(&self, retries: u32, now: Instant) -> bool {
        let allowed = if self.acked {
            self.retries
        } else {
            self.retries.min(FIRST_ACK_RETRIES)
        };
        retries > allowed
            || self
                .silent_since
                .is_some_and(|s| now.saturating_duration_since(s) >= MAX_SILENCE)
    }

    /// When [`Transfer::poll_transmit`] has something to do again without
    /// input (a retransmission), if anything is outstanding.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Negotiating { deadline, .. } | State::Sending { deadline, .. } => deadline,
            _ => None,
        }
    }

    /// The client acknowledged wire block `block` at `now`.
    pub fn handle_ack(&mut self, _now: Instant, block: u16) {
        match self.state {
            State::Negotiating { sent: true, .. } if block == 0 => {
                self.progress();
                self.state = State::Sending {
                    base: 1,
                    next: 1,
                    deadline: None,
                    retries: 0,
                };
            }
            State::Sending { base, next, .. } => {
                // Which outstanding block (base..next) carries this number?
                // Blocks before `base` were acknowledged already: a
                // duplicate, ignored without any resend.
                let outstanding = next.saturating_sub(base);
                let offset = u64::from(block.wrapping_sub(base as u16));
                if offset >= outstanding {
                    return;
                }
                let acked = base + offset;
                self.progress();
                if acked >= self.last {
                    self.state = State::Done;
                    return;
                }
                self.state = State::Sending {
                    base: acked + 1,
                    next: acked + 1,
                    deadline: None,
                    retries: 0,
                };
            }
            _ => {}
        }
    }

    /// The client sent an ERROR: the transfer ends.
    pub fn handle_error(&mut self, code: u16, message: &str) {
        if !self.is_finished() {
            self.state = State::Failed(Failure::ClientError {
                code,
                message: message.chars().take(128).collect(),
            });
        }
    }

    /// Write the next datagram to send at `now` into `buf` (at least
    /// [`Transfer::max_packet`] bytes); `Ok(None)` when nothing is due.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        source: &(impl BlockSource + ?Sized),
        buf: &mut [u8],
    ) -> io::Result<Option<usize>> {
        match self.state.clone() {
            State::Negotiating {
                sent,
                deadline,
                retries,
            } => {
                let due = !sent || deadline.is_some_and(|d| now >= d);
                if !due {
                    return Ok(None);
                }
                let retries = if sent { retries + 1 } else { 0 };
                if sent && self.gives_up(retries, now) {
                    self.state = State::Failed(Failure::Timeout);
                    return Ok(None);
                }
                if sent {
                    self.retransmits += 1;
                }
                let options: Vec<(&str, &str)> = self
                    .oack
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let n = Repr::OptionAck { options }.emit(buf);
                let deadline = Some(self.next_deadline(now, retries));
                self.state = State::Negotiating {
                    sent: true,
                    deadline,
                    retries,
                };
                Ok(Some(n))
            }
            State::Sending {
                base,
                mut next,
                deadline,
                mut retries,
            } => {
                if deadline.is_some_and(|d| now >= d) {
                    retries += 1;
                    if self.gives_up(retries, now) {
                        self.state = State::Failed(Failure::Timeout);
                        return Ok(None);
                    }
                    self.retransmits += next - base;
                    next = base;
                } else if deadline.is_some() {
                    return Ok(None);
                }
                if next >= base + self.windowsize || next > self.last {
                    return Ok(None);
                }
                let n = self.emit_block(next, source, buf)?;
                next += 1;
                // The timer runs once the window (or the file) is out.
                let deadline = (next >= base + self.windowsize || next > self.last)
                    .then(|| self.next_deadline(now, retries));
                self.state = State::Sending {
                    base,
                    next,
                    deadline,
                    retries,
                };
                Ok(Some(n))
            }
            State::Done | State::Failed(_) => Ok(None),
        }
    }

    fn emit_block(
        &mut self,
        block: u64,
        source: &(impl BlockSource + ?Sized),
        buf: &mut [u8],
    ) -> io::Result<usize> {
        let offset = (block - 1) * self.blksize as u64;
        let want = (self.size.saturating_sub(offset)).min(self.blksize as u64) as usize;
        buf[..DATA_HEADER_LEN].copy_from_slice(&data_header(block as u16));
        let got = source.read_at(&mut buf[DATA_HEADER_LEN..DATA_HEADER_LEN + want], offset)?;
        if got != want {
            let why = format!(
                "file shrank while being sent (read {got} of {want} bytes at offset {offset})"
            );
            self.state = State::Failed(Failure::Read(why.clone()));
            return Err(io::Error::other(why));
        }
        Ok(DATA_HEADER_LEN + want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tftp::Repr as Tftp;

    fn req(options: Vec<(&'static str, &'static str)>) -> Request<'static> {
        Request {
            filename: "f",
            mode: "octet",
            options,
        }
    }

    #[test]
    fn negotiation_edges() {
        let l = Limits {
            max_blksize: 1468,
            ..Limits::default()
        };
        let n = |o| negotiate(&req(o), 1000, &l);
        assert!(n(vec![]).oack.is_empty());
        for bad in ["0", "7", "65465", "abc", "", "-1", "99999999999"] {
            let got = n(vec![("blksize", bad)]);
            assert_eq!(got.blksize, DEFAULT_BLKSIZE, "{bad}");
            assert!(got.oack.is_empty(), "{bad}");
        }
        assert_eq!(n(vec![("blksize", "8")]).blksize, 8);
        assert_eq!(
            n(vec![("BLKSIZE", "65464")]).oack,
            [("blksize".into(), "1468".into())]
        );
        for bad in ["0", "65536", "x"] {
            assert_eq!(n(vec![("windowsize", bad)]).windowsize, 1, "{bad}");
        }
        assert_eq!(n(vec![("windowsize", "65535")]).windowsize, MAX_WINDOW);
        assert_eq!(n(vec![("timeout", "0")]).timeout, l.timeout);
        assert_eq!(n(vec![("timeout", "256")]).oack, vec![]);
        assert_eq!(n(vec![("timeout", "3")]).timeout, Duration::from_secs(3));
        // A client may not make us wait minutes: above 5 s it is declined.
        assert_eq!(n(vec![("timeout", "5")]).timeout, Duration::from_secs(5));
        for long in ["6", "255"] {
            let got = n(vec![("timeout", long)]);
            assert_eq!((got.timeout, got.oack.len()), (l.timeout, 0), "{long}");
        }
        assert_eq!(
            n(vec![("tsize", "0")]).oack,
            [("tsize".into(), "1000".into())]
        );
        // Repeats: the first wins. Unknown options: ignored.
        let got = n(vec![
            ("blksize", "1024"),
            ("blksize", "8"),
            ("multicast", ""),
        ]);
        assert_eq!((got.blksize, got.oack.len()), (1024, 1));
    }

    /// Drive a transfer with a perfect client; return the bytes received.
    fn run_clean(data: &[u8], blksize: usize, windowsize: u16) -> (Vec<u8>, Transfer) {
        let l = Limits::default();
        let n = Negotiated {
            blksize,
            windowsize,
            timeout: Duration::from_secs(1),
            oack: vec![("blksize".into(), blksize.to_string())],
        };
        let mut t = Transfer::new(n, data.len() as u64, &l);
        let mut buf = vec![0; t.max_packet()];
        let now = Instant::now();
        let mut got = Vec::new();
        let mut expect: u16 = 1;
        for _ in 0..10_000_000 {
            let Some(len) = t.poll_transmit(now, data, &mut buf).unwrap() else {
                break;
            };
            match Tftp::parse(&buf[..len]).unwrap() {
                Tftp::OptionAck { .. } => t.handle_ack(now, 0),
                Tftp::Data { block, data: d } => {
                    assert_eq!(block, expect);
                    expect = expect.wrapping_add(1);
                    got.extend_from_slice(d);
                    if (got.len() as u64).is_multiple_of(windowsize as u64 * blksize as u64)
                        || d.len() < blksize
                    {
                        t.handle_ack(now, block);
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        (got, t)
    }

    #[test]
    fn sends_files_of_every_edge_size() {
        for size in [0usize, 1, 511, 512, 513, 1024, 4096 + 7] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            for w in [1, 4] {
                let (got, t) = run_clean(&data, 512, w);
                assert_eq!(got, data, "size {size} window {w}");
                assert!(t.is_done());
            }
        }
    }

    #[test]
    fn block_numbers_wrap_past_65535() {
        // 33 MiB at blksize 512: more than 65536 blocks.
        let data: Vec<u8> = (0..(33usize << 20) + 100)
            .map(|i| (i % 251) as u8)
            .collect();
        let (got, t) = run_clean(&data, 512, 1);
        assert!(t.is_done());
        assert_eq!(got.len(), data.len());
        assert!(got == data);
    }

    #[test]
    fn duplicate_acks_never_resend_sorcerers_apprentice() {
        let data = vec![7u8; 512 * 4];
        let n = Negotiated {
            blksize: 512,
            windowsize: 1,
            timeout: Duration::from_secs(1),
            oack: vec![],
        };
        let mut t = Transfer::new(n, data.len() as u64, &Limits::default());
        let mut buf = vec![0; t.max_packet()];
        let now = Instant::now();
        assert!(t.poll_transmit(now, &data[..], &mut buf).unwrap().is_some()); // DATA 1
        t.handle_ack(now, 1);
        assert!(t.poll_transmit(now, &data[..], &mut buf).unwrap().is_some()); // DATA 2
        for _ in 0..5 {
            t.handle_ack(now, 1); // duplicates of the old ACK
            assert_eq!(t.poll_transmit(now, &data[..], &mut buf).unwrap(), None);
        }
        // ACK before anything was sent, or far ahead: ignored.
        t.handle_ack(now, 9);
        assert_eq!(t.poll_transmit(now, &data[..], &mut buf).unwrap(), None);
        assert_eq!(t.retransmits(), 0);
    }

    #[test]
    fn timeouts_resend_the_window_then_give_up() {
        let data = vec![1u8; 512 * 10];
        let n = Negotiated {
            blksize: 512,
            windowsize: 4,
            timeout: Duration::from_secs(1),
            oack: vec![],
        };
        let l = Limits {
            retries: 2,
            ..Limits::default()
        };
        let mut t = Transfer::new(n, data.len() as u64, &l);
        let mut buf = vec![0; t.max_packet()];
        let t0 = Instant::now();
        let mut sent = 0;
        while t.poll_transmit(t0, &data[..], &mut buf).unwrap().is_some() {
            sent += 1;
        }
        assert_eq!(sent, 4);
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        // The client got blocks 1 and 2 only: the next window starts at 3.
        t.handle_ack(t0, 2);
        let first = t.poll_transmit(t0, &data[..], &mut buf).unwrap().unwrap();
        assert_eq!(
            Tftp::parse(&buf[..first]).unwrap(),
            Tftp::Data {
                block: 3,
                data: &data[..512]
            }
        );
        while t.poll_transmit(t0, &data[..], &mut buf).unwrap().is_some() {}
        // Silence: two retransmissions of the window, backing off (after
        // 1 s, then 2 s more), then failure 4 s after the second.
        for round in [1, 3] {
            let at = t0 + Duration::from_secs(round);
            let len = t.poll_transmit(at, &data[..], &mut buf).unwrap().unwrap();
            assert_eq!(
                Tftp::parse(&buf[..len]).unwrap(),
                Tftp::Data {
                    block: 3,
                    data: &data[..512]
                }
            );
            while t.poll_transmit(at, &data[..], &mut buf).unwrap().is_some() {}
        }
        assert_eq!(
            t.poll_transmit(t0 + Duration::from_millis(6999), &data[..], &mut buf)
                .unwrap(),
            None
        );
        assert_eq!(t.failure(), None);
        assert_eq!(
            t.poll_transmit(t0 + Duration::from_secs(7), &data[..], &mut buf)
                .unwrap(),
            None
        );
        assert_eq!(t.failure(), Some(&Failure::Timeout));
        assert_eq!(t.retransmits(), 8);
    }

    #[test]
    fn error_mid_transfer_and_oack_timeout() {
        let data = vec![0u8; 2048];
        let n = Negotiated {
            blksize: 512,
            windowsize: 1,
            timeout: Duration::from_secs(1),
            oack: vec![("tsize".into(), "2048".into())],
        };
        let mut t = Transfer::new(n.clone(), 2048, &Limits::default());
        let mut buf = vec![0; t.max_packet()];
        let now = Instant::now();
        let len = t.poll_transmit(now, &data[..], &mut buf).unwrap().unwrap();
        assert!(matches!(
            Tftp::parse(&buf[..len]).unwrap(),
            Tftp::OptionAck { .. }
        ));
        // EDK2 aborts after reading tsize.
        t.handle_error(8, "User aborted the transfer");
        assert!(matches!(
            t.failure(),
            Some(Failure::ClientError { code: 8, .. })
        ));
        assert_eq!(t.poll_transmit(now, &data[..], &mut buf).unwrap(), None);

        let l = Limits {
            retries: 1,
            ..Limits::default()
        };
        let mut t = Transfer::new(n, 2048, &l);
        t.poll_transmit(now, &data[..], &mut buf).unwrap().unwrap();
        // ACK 1 while negotiating is not the OACK's ACK 0.
        t.handle_ack(now, 1);
        assert!(
            t.poll_transmit(now + Duration::from_secs(1), &data[..], &mut buf)
                .unwrap()
                .is_some()
        );
        assert_eq!(
            t.poll_transmit(now + Duration::from_secs(3), &data[..], &mut buf)
                .unwrap(),
            None
        );
        assert_eq!(t.failure(), Some(&Failure::Timeout));
    }

    /// The times (seconds after `t0`) at which a transfer that hears
    /// nothing more sends, and when it gives up.
    fn silent_schedule(t: &mut Transfer, data: &[u8], t0: Instant) -> (Vec<u64>, u64) {
        let mut buf = vec![0; t.max_packet()];
        let mut sends = Vec::new();
        for ms in (0..=60_000u64).step_by(100) {
            let at = t0 + Duration::from_millis(ms);
            while t.poll_transmit(at, data, &mut buf).unwrap().is_some() {
                sends.push(ms / 1000);
            }
            if t.failure().is_some() {
                return (sends, ms / 1000);
            }
        }
        panic!("never gave up: {sends:?}");
    }

    #[test]
    fn an_unanswered_first_packet_is_sent_twice_and_the_slot_freed_in_3_s() {
        let data = vec![5u8; 2000];
        let l = Limits::default(); // timeout 1 s, retries 5
        // A request without options (DATA 1 first), and one whose client
        // negotiated timeout 5: until the first ACK the server's 1 s counts.
        for oack in [vec![], vec![("timeout".to_string(), "5".to_string())]] {
            let n = Negotiated {
                blksize: 512,
                windowsize: 1,
                timeout: Duration::from_secs(if oack.is_empty() { 1 } else { 5 }),
                oack,
            };
            let mut t = Transfer::new(n, data.len() as u64, &l);
            let (sends, gave_up) = silent_schedule(&mut t, &data, Instant::now());
            assert_eq!((sends, gave_up), (vec![0, 1], 3));
            assert!(!t.acknowledged());
        }
    }

    #[test]
    fn a_silent_client_mid_transfer_gets_backed_off_resends_for_15_s_at_most() {
        let data = vec![5u8; 5000];
        let n = Negotiated {
            blksize: 512,
            windowsize: 1,
            timeout: Duration::from_secs(1),
            oack: vec![],
        };
        let l = Limits {
            retries: 100,
            ..Limits::default()
        };
        let mut t = Transfer::new(n, data.len() as u64, &l);
        let mut buf = vec![0; t.max_packet()];
        let t0 = Instant::now();
        t.poll_transmit(t0, &data[..], &mut buf).unwrap().unwrap();
        t.handle_ack(t0, 1);
        assert!(t.acknowledged());
        // DATA 2 at 0, then after 1, 2, 4 and 8 s — but 15 s of silence
        // end it first, however many retries are allowed.
        let (sends, gave_up) = silent_schedule(&mut t, &data, t0);
        assert_eq!((sends, gave_up), (vec![0, 1, 3, 7], 15));
    }

    #[test]
    fn a_shrinking_file_fails_the_transfer() {
        let n = Negotiated {
            blksize: 512,
            windowsize: 1,
            timeout: Duration::from_secs(1),
            oack: vec![],
        };
        let mut t = Transfer::new(n, 1000, &Limits::default());
        let mut buf = vec![0; t.max_packet()];
        let short = [0u8; 100];
        assert!(
            t.poll_transmit(Instant::now(), &short[..], &mut buf)
                .is_err()
        );
        assert!(matches!(t.failure(), Some(Failure::Read(_))));
    }
}
