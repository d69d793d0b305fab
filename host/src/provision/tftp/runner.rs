//! One transfer on its own thread: its socket (the transfer ID, RFC 1350
//! §4) connected to the client, the file read ahead, each window built
//! first and sent with one `sendmmsg(2)`, and the receive loop that feeds
//! the [`Transfer`] state machine and watches its timers, the drain
//! deadline and the slot keeper's stop flag.

use super::{
    NAME,
    transfer::{self, Failure, Transfer},
};
use crate::{
    daemon::Shutdown,
    wire::tftp::{ErrorCode, Repr},
};
use std::{
    net::{SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// The most bytes of datagrams built for one `sendmmsg(2)`, so a large
/// block times a large window cannot make a transfer's buffer huge.
pub const BATCH_BYTES: usize = 256 * 1024;
/// The longest a transfer waits in `recv` before looking at its timers.
const RECV_SLICE: Duration = Duration::from_millis(100);
/// Bytes read from the file at a time for a transfer.
pub const READ_AHEAD: usize = 256 * 1024;

/// Reads a file through a buffer of at most [`READ_AHEAD`] bytes (less
/// for a smaller file): one `pread` per buffer instead of one per block.
struct ReadAhead<'a> {
    file: &'a std::fs::File,
    size: u64,
    cache: std::cell::RefCell<(u64, Vec<u8>)>,
}

impl<'a> ReadAhead<'a> {
    fn new(file: &'a std::fs::File, size: u64) -> Self {
        ReadAhead {
            file,
            size,
            cache: std::cell::RefCell::new((0, Vec::new())),
        }
    }
}

impl transfer::BlockSource for ReadAhead<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let mut cache = self.cache.borrow_mut();
        let (start, data) = &mut *cache;
        let end = *start + data.len() as u64;
        if offset < *start || offset + buf.len() as u64 > end {
            let rest = self.size.saturating_sub(offset).min(READ_AHEAD as u64) as usize;
            data.resize(rest.max(buf.len()), 0);
            let n = transfer::BlockSource::read_at(self.file, data, offset)?;
            data.truncate(n);
            *start = offset;
        }
        let from = (offset - *start) as usize;
        let n = buf.len().min(data.len().saturating_sub(from));
        buf[..n].copy_from_slice(&data[from..from + n]);
        Ok(n)
    }
}

/// Send one ERROR packet; failures are only logged at debug.
pub(super) fn send_error(
    socket: &UdpSocket,
    to: Option<SocketAddr>,
    code: ErrorCode,
    message: &str,
) {
    let bytes = Repr::Error { code, message }.to_bytes();
    let r = match to {
        Some(a) => socket.send_to(&bytes, a),
        None => socket.send(&bytes),
    };
    if let Err(e) = r {
        tracing::debug!(target: NAME, "cannot send error: {e}");
    }
}

/// Send the datagrams `out[i * slot..][..lens[i]]` with sendmmsg(2).
fn send_batch(socket: &UdpSocket, out: &[u8], slot: usize, lens: &[usize]) -> std::io::Result<()> {
    use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, sendmmsg};
    use std::io::IoSlice;
    let iovs: Vec<[IoSlice<'_>; 1]> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| [IoSlice::new(&out[i * slot..i * slot + n])])
        .collect();
    let mut done = 0;
    while done < iovs.len() {
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = (done..iovs.len())
            .map(|_| SendAncillaryBuffer::default())
            .collect();
        let mut msgs: Vec<MMsgHdr<'_>> = iovs[done..]
            .iter()
            .zip(controls.iter_mut())
            .map(|(iov, control)| MMsgHdr::new(iov, control))
            .collect();
        match sendmmsg(socket, &mut msgs, SendFlags::empty()) {
            Ok(0) => return Err(std::io::Error::other("sendmmsg sent nothing")),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// How a running transfer and the slot keeper talk.
pub(super) struct Flags {
    /// Set here once the client acknowledged something.
    pub(super) acked: Arc<AtomicBool>,
    /// Set there to make the transfer give up its slot.
    pub(super) stop: Arc<AtomicBool>,
}

pub(super) fn run_transfer(
    socket: UdpSocket,
    file: std::fs::File,
    mut t: Transfer,
    name: &str,
    client: SocketAddr,
    shutdown: &Shutdown,
    flags: &Flags,
) -> bool {
    // Returns whether the whole file was sent and acknowledged.
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let started = Instant::now();
    // A whole window is built first and sent with one sendmmsg(2): the
    // client is woken once per window, not once per block. A window of
    // more than BATCH_BYTES goes out in several batches.
    let slot = t.max_packet();
    let batch_max = (t.windowsize().clamp(1, u64::from(transfer::MAX_WINDOW)) as usize + 1)
        .min(BATCH_BYTES / slot)
        .max(1);
    let mut out = vec![0u8; slot * batch_max];
    let mut lens: Vec<usize> = Vec::with_capacity(batch_max);
    let mut inbuf = vec![0u8; 1024];
    let source = ReadAhead::new(&file, size);
    // recv blocks at most this long, so retransmission timers and the drain
    // deadline are looked at even when the client is silent.
    if let Err(e) = socket.set_read_timeout(Some(RECV_SLICE)) {
        tracing::warn!(target: NAME, "cannot set a receive timeout: {e}");
        return false;
    }
    loop {
        let now = Instant::now();
        lens.clear();
        while lens.len() < batch_max {
            let at = lens.len() * slot;
            match t.poll_transmit(now, &source, &mut out[at..at + slot]) {
                Ok(Some(n)) => lens.push(n),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(target: NAME, file = name, client = %client, "read failed: {e}");
                    send_error(&socket, None, ErrorCode::Undefined, "read error");
                    return false;
                }
            }
        }
        if let Err(e) = send_batch(&socket, &out, slot, &lens) {
            tracing::debug!(target: NAME, client = %client, "send failed: {e}");
        }
        if t.is_finished() {
            break;
        }
        if shutdown.drain_expired() {
            send_error(&socket, None, ErrorCode::Undefined, "server shutting down");
            tracing::info!(target: NAME, file = name, client = %client, "transfer cut short by shutdown");
            return false;
        }
        if flags.stop.load(Ordering::SeqCst) {
            return false; // evicted (logged there): the client never answered
        }
        if lens.len() == batch_max {
            continue; // the batch was full: more of the window is due
        }
        let n = match rustix::net::recv(&socket, &mut inbuf[..], rustix::net::RecvFlags::empty()) {
            Ok((n, _)) => n,
            Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::CONNREFUSED) => {
                // ICMP port unreachable: the client is gone.
                tracing::debug!(target: NAME, client = %client, "client port closed");
                return false;
            }
            Err(e) => {
                tracing::debug!(target: NAME, client = %client, "receive failed: {e}");
                continue;
            }
        };
        match Repr::parse(&inbuf[..n]) {
            Ok(Repr::Ack { block }) => {
                t.handle_ack(Instant::now(), block);
                if t.acknowledged() && !flags.acked.load(Ordering::Relaxed) {
                    flags.acked.store(true, Ordering::SeqCst);
                }
            }
            Ok(Repr::Error { code, message }) => t.handle_error(code.code(), message),
            Ok(other) => {
                tracing::debug!(target: NAME, client = %client, "ignored unexpected packet: {other:?}");
            }
            Err(e) => {
                tracing::debug!(target: NAME, client = %client, "ignored malformed packet: {e}")
            }
        }
    }
    let ms = started.elapsed().as_millis();
    let failure = t.failure();
    match failure {
        None => tracing::debug!(
            target: NAME,
            file = name,
            client = %client,
            bytes = size,
            blksize = t.blksize(),
            windowsize = t.windowsize(),
            retransmits = t.retransmits(),
            ms = ms as u64,
            "sent"
        ),
        Some(Failure::ClientError { code, message }) => tracing::debug!(
            target: NAME,
            file = name,
            client = %client,
            code = *code,
            "client ended the transfer: {message}"
        ),
        Some(Failure::Timeout) => {
            tracing::warn!(target: NAME, file = name, client = %client, "transfer timed out: no acknowledgement")
        }
        Some(Failure::Read(why)) => {
            tracing::warn!(target: NAME, file = name, client = %client, "transfer failed: {why}")
        }
    }
    failure.is_none()
}
