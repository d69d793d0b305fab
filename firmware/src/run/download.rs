//! HTTP downloads with resume and retries (checklist I10, I18, W4): a
//! [`Download`] is one file on one server, fetched whole or one byte
//! window at a time (the ranges of a block map) over one keep-alive
//! connection. The resume policy is [`Fetch`]'s; the bytes go to a
//! [`Sink`].
//!
//! A connection is kept after a complete response unless the server says
//! `Connection: close`. A kept connection the server has closed in the
//! meantime (its idle timeout) is noticed when the next request gets no
//! byte back, and that request is sent once more on a new connection
//! without counting as a failure.

use crate::{
    console::say,
    http::{self, Failure, Fetch, HttpError, Method, Request, Response, Start},
    install::Fatal,
};
use core::{net::Ipv4Addr, time::Duration};
use ze_hal::os::{NetError, Os, TcpConn};

/// Timeout for a TCP connect of a download.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where downloaded bytes go.
pub trait Sink<O: Os> {
    /// The server sent the whole file again: forget what was received.
    fn restart(&mut self, os: &mut O) -> Result<(), Fatal>;
    /// The file's size is known.
    fn total(&mut self, os: &mut O, total: u64) -> Result<(), Fatal>;
    /// Bytes at `offset` of the file.
    fn write(&mut self, os: &mut O, offset: u64, bytes: &[u8]) -> Result<(), Fatal>;
}

/// How one attempt ended, when it did not complete.
enum Attempt {
    /// Worth retrying (connect error, cut, stall, 5xx).
    Failed(Failure),
    /// A kept connection was closed by the server before this request
    /// got an answer: send it again on a new one.
    Stale,
    /// Retrying cannot help.
    Fatal(Fatal),
}

/// One file on `http://server:port/path`.
pub struct Download<'a, O: Os> {
    server: Ipv4Addr,
    port: u16,
    path: &'a str,
    /// `image`, `database`, `block map`: names the file on the console.
    what: &'static str,
    conn: Option<O::Tcp>,
    /// Failed attempts over every window fetched so far.
    failures: u8,
    announced: bool,
    /// The next response continues after a failed attempt.
    resuming: bool,
    /// Requests sent (for the summary line).
    pub requests: u32,
    /// TCP connections opened.
    pub connections: u32,
}

impl<O: Os> core::fmt::Debug for Download<'_, O> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Download")
            .field("path", &self.path)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl<'a, O: Os> Download<'a, O> {
    /// A download of `path` from `server:port`, named `what` on the console.
    pub fn new(server: Ipv4Addr, port: u16, path: &'a str, what: &'static str) -> Self {
        Download {
            server,
            port,
            path,
            what,
            conn: None,
            failures: 0,
            announced: false,
            resuming: false,
            requests: 0,
            connections: 0,
        }
    }

    /// The whole file into `sink`; returns its size.
    pub fn whole<S: Sink<O>>(
        &mut self,
        os: &mut O,
        sink: &mut S,
        io: &mut [u8],
    ) -> Result<u64, Fatal> {
        let mut fetch = Fetch::new();
        self.run(os, &mut fetch, sink, io)?;
        Ok(fetch.offset())
    }

    /// Bytes `start..end` of the file, which has `total` bytes, into
    /// `sink` (at their offsets in the file).
    pub fn window<S: Sink<O>>(
        &mut self,
        os: &mut O,
        (start, end): (u64, u64),
        total: u64,
        sink: &mut S,
        io: &mut [u8],
    ) -> Result<(), Fatal> {
        let mut fetch = Fetch::window(start, end, Some(total), self.failures);
        self.run(os, &mut fetch, sink, io)
    }

    /// Fetch until `fetch` is complete, retrying up to
    /// [`http::MAX_FAILURES`] times over the life of this download.
    fn run<S: Sink<O>>(
        &mut self,
        os: &mut O,
        fetch: &mut Fetch,
        sink: &mut S,
        io: &mut [u8],
    ) -> Result<(), Fatal> {
        let what = self.what;
        let mut stale_retry = true;
        loop {
            let failure = match self.attempt(os, fetch, sink, io) {
                Ok(()) if fetch.is_complete() => break,
                Ok(()) => Failure::Http(HttpError::Cut {
                    missing: fetch.missing().unwrap_or(0),
                }),
                Err(Attempt::Stale) if stale_retry => {
                    stale_retry = false;
                    continue;
                }
                Err(Attempt::Stale) => Failure::Http(HttpError::NoHead),
                Err(Attempt::Fatal(f)) => return Err(f),
                Err(Attempt::Failed(failure)) => failure,
            };
            say!(
                os,
                "{what}: attempt {} failed at byte {}: {failure}",
                fetch.failures() + 1,
                fetch.offset()
            );
            fetch
                .on_failure(failure)
                .map_err(|error| Fatal::Download { what, error })?;
            say!(os, "{what}: retrying in {} s", http::RETRY_DELAY.as_secs());
            os.sleep(http::RETRY_DELAY);
            self.resuming = true;
        }
        self.failures = fetch.failures();
        Ok(())
    }

    /// One request and its response; the connection is kept for the next
    /// request when the response allows it.
    fn attempt<S: Sink<O>>(
        &mut self,
        os: &mut O,
        fetch: &mut Fetch,
        sink: &mut S,
        io: &mut [u8],
    ) -> Result<(), Attempt> {
        let (server, port, path, what) = (self.server, self.port, self.path, self.what);
        let failed = Attempt::Failed;
        let (mut tcp, reused) = match self.conn.take() {
            Some(c) => (c, true),
            None => {
                let c = os
                    .tcp_connect(server, port, CONNECT_TIMEOUT)
                    .map_err(|e| failed(Failure::Net(e)))?;
                self.connections += 1;
                (c, false)
            }
        };
        let mut buf = [0u8; http::MAX_REQUEST];
        let req = Request {
            method: Method::Get,
            path,
            range: fetch.request_range(),
            keep_alive: true,
        };
        let req = http::write_request(&mut buf, server, port, &req).map_err(|e| {
            Attempt::Fatal(Fatal::Download {
                what,
                error: http::FetchError::GaveUp(Failure::Http(e)),
            })
        })?;
        self.requests += 1;
        if let Err(e) = tcp.send_all(req, http::STALL_TIMEOUT) {
            return Err(if reused {
                Attempt::Stale
            } else {
                failed(Failure::Net(e))
            });
        }
        let mut resp = Response::new(Method::Get);
        let mut answered = false;
        let mut close = false;
        loop {
            let n = match tcp.recv(io, http::STALL_TIMEOUT) {
                Ok(0) if reused && !answered => return Err(Attempt::Stale),
                Ok(0) => {
                    return resp.end_of_stream().map_err(|e| failed(Failure::Http(e)));
                }
                Ok(n) => n,
                Err(NetError::TimedOut) => return Err(failed(Failure::Stalled)),
                Err(NetError::Reset) if reused && !answered => return Err(Attempt::Stale),
                Err(e) => return Err(failed(Failure::Net(e))),
            };
            answered = true;
            let fed = resp
                .feed(io.get(..n).unwrap_or_default())
                .map_err(|e| failed(Failure::Http(e)))?;
            if let Some(head) = fed.head {
                close = head.close;
                match fetch.on_head(&head) {
                    Ok(Start::Continue) => {}
                    Ok(Start::Restart) => {
                        say!(
                            os,
                            "{what}: the server ignored Range; starting over from byte 0"
                        );
                        sink.restart(os).map_err(Attempt::Fatal)?;
                    }
                    Err(Ok(error)) => {
                        return Err(Attempt::Fatal(Fatal::Download { what, error }));
                    }
                    Err(Err(f)) => return Err(failed(f)),
                }
                let total = fetch.total().unwrap_or(0);
                sink.total(os, total).map_err(Attempt::Fatal)?;
                if core::mem::take(&mut self.resuming) && fetch.offset() > 0 {
                    say!(os, "{what}: resuming at byte {} of {total}", fetch.offset());
                } else if !self.announced {
                    self.announced = true;
                    let by_range = if fetch.is_window() { ", by range" } else { "" };
                    say!(
                        os,
                        "{what}: http://{server}:{port}{path} ({total} bytes{by_range})"
                    );
                }
            }
            if !fed.body.is_empty() {
                sink.write(os, fetch.offset(), fed.body)
                    .map_err(Attempt::Fatal)?;
                fetch.on_body(fed.body.len());
            }
            if resp.is_done() {
                if !close {
                    self.conn = Some(tcp);
                }
                return Ok(());
            }
        }
    }
}
