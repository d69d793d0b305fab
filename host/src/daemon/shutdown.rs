//! The daemon's shutdown signal: a flag, a drain deadline, and an eventfd
//! that becomes readable when shutdown starts, so every server can wait on
//! its socket and on shutdown in one `poll(2)`.

use rustix::{
    event::{EventfdFlags, PollFd, PollFlags, Timespec, eventfd, poll},
    fd::{AsFd, BorrowedFd, OwnedFd},
    io::Errno,
};
use std::{
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// Shared by the daemon, its plugins and whatever triggers shutdown
/// (signals, end of standard input). Cloning shares the same signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    fired: AtomicBool,
    fd: OwnedFd,
    deadline: Mutex<Option<Instant>>,
}

/// Why [`Shutdown::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The watched descriptor is readable.
    Ready,
    /// Shutdown has started.
    Shutdown,
    /// The timeout passed.
    Timeout,
}

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> io::Result<Shutdown> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Shutdown {
            inner: Arc::new(Inner {
                fired: AtomicBool::new(false),
                fd,
                deadline: Mutex::new(None),
            }),
        })
    }

    /// Start shutting down: servers stop taking new work and have until
    /// now + `drain` to finish what is in flight. A later call can only
    /// shorten the deadline (a second Ctrl-C means "now").
    pub fn trigger(&self, drain: Duration) {
        let new = Instant::now() + drain;
        {
            let mut deadline = self
                .inner
                .deadline
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *deadline = Some(match *deadline {
                Some(old) if old < new => old,
                _ => new,
            });
        }
        if !self.inner.fired.swap(true, Ordering::SeqCst) {
            // The counter is never read back, so the fd stays readable.
            let _ = rustix::io::write(&self.inner.fd, &1u64.to_ne_bytes());
        }
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.inner.fired.load(Ordering::SeqCst)
    }

    /// When in-flight work must be done by, once shutdown has started.
    pub fn deadline(&self) -> Option<Instant> {
        *self
            .inner
            .deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the drain deadline has passed.
    pub fn drain_expired(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// The descriptor that is readable once shutdown has started.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }

    /// Wait until `fd` is readable, shutdown starts, or `timeout` passes
    /// (`None`: no timeout). Readiness of `fd` wins over shutdown so that a
    /// datagram that already arrived is not lost.
    pub fn wait(&self, fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<Wake> {
        wait_fds(fd, Some(self.fd()), timeout)
    }

    /// Like [`Shutdown::wait`] for several descriptors: `Ready` when any of
    /// them is readable (the caller reads each without blocking).
    pub fn wait_any(&self, fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<Wake> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let stop = self.fd();
        loop {
            let mut polled: Vec<PollFd<'_>> = fds
                .iter()
                .chain(std::iter::once(&stop))
                .map(|fd| PollFd::new(fd, PollFlags::IN))
                .collect();
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let ts = left.map(timespec);
            match poll(&mut polled, ts.as_ref()) {
                Ok(0) => return Ok(Wake::Timeout),
                Ok(_) => {
                    let (stop, socks) = polled.split_last().expect("the shutdown fd is polled");
                    let ready = PollFlags::IN | PollFlags::ERR | PollFlags::HUP;
                    if socks.iter().any(|p| p.revents().intersects(ready)) {
                        return Ok(Wake::Ready);
                    }
                    if !stop.revents().is_empty() {
                        return Ok(Wake::Shutdown);
                    }
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            if left == Some(Duration::ZERO) {
                return Ok(Wake::Timeout);
            }
        }
    }

    /// Sleep for `timeout` or until shutdown starts; true if it started.
    pub fn sleep(&self, timeout: Duration) -> bool {
        if self.is_triggered() {
            return true;
        }
        let mut fds = [PollFd::new(&self.inner.fd, PollFlags::IN)];
        let ts = timespec(timeout);
        loop {
            match poll(&mut fds, Some(&ts)) {
                Err(Errno::INTR) => continue,
                _ => return self.is_triggered(),
            }
        }
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// Wait until `fd` is readable, `stop` (if any) is readable, or the timeout
/// passes.
pub fn wait_fds(
    fd: BorrowedFd<'_>,
    stop: Option<BorrowedFd<'_>>,
    timeout: Option<Duration>,
) -> io::Result<Wake> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let mut fds = [
            PollFd::new(&fd, PollFlags::IN),
            PollFd::new(stop.as_ref().unwrap_or(&fd), PollFlags::IN),
        ];
        let n = if stop.is_some() { 2 } else { 1 };
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let ts = left.map(timespec);
        match poll(&mut fds[..n], ts.as_ref()) {
            Ok(0) => return Ok(Wake::Timeout),
            Ok(_) => {
                let ready = fds[0].revents();
                if ready.intersects(PollFlags::IN | PollFlags::ERR | PollFlags::HUP) {
                    return Ok(Wake::Ready);
                }
                if n == 2 && !fds[1].revents().is_empty() {
                    return Ok(Wake::Shutdown);
                }
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        if left == Some(Duration::ZERO) {
            return Ok(Wake::Timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn wait_sees_data_shutdown_and_timeout() {
        let s = Shutdown::new().unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let t0 = Instant::now();
        assert_eq!(
            s.wait(a.as_fd(), Some(Duration::from_millis(30))).unwrap(),
            Wake::Timeout
        );
        assert!(t0.elapsed() >= Duration::from_millis(30));
        b.send_to(b"x", a.local_addr().unwrap()).unwrap();
        assert_eq!(s.wait(a.as_fd(), None).unwrap(), Wake::Ready);
        let mut buf = [0; 4];
        a.recv(&mut buf).unwrap();
        assert!(!s.is_triggered());
        s.trigger(Duration::from_secs(10));
        assert!(s.is_triggered());
        assert_eq!(s.wait(a.as_fd(), None).unwrap(), Wake::Shutdown);
        assert!(s.sleep(Duration::from_secs(10)));
        // A second trigger shortens the deadline, never extends it.
        let first = s.deadline().unwrap();
        s.trigger(Duration::from_secs(100));
        assert_eq!(s.deadline().unwrap(), first);
        s.trigger(Duration::ZERO);
        assert!(s.deadline().unwrap() < first);
        assert!(s.drain_expired());
    }
}
