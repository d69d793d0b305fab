//! HTTP downloads with resume and retries (checklist I10, I18): one
//! [`Download`] per file, carrying the resume policy ([`Fetch`]), the
//! progress line and where the file is fetched from; the bytes go to a
//! [`Sink`].

use crate::{
    console::{Progress, say},
    http::{self, Failure, Fetch, HttpError, Method, Response, Start},
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
    fn total(&mut self, total: u64) -> Result<(), Fatal>;
    /// Bytes at `offset`.
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Fatal>;
}

/// How one attempt ended, when it did not complete.
enum Attempt {
    /// Worth retrying (connect error, cut, stall, 5xx).
    Failed(Failure),
    /// Retrying cannot help.
    Fatal(Fatal),
}

/// One file being downloaded from `http://server:port/path`.
#[derive(Debug)]
pub struct Download<'a> {
    server: Ipv4Addr,
    port: u16,
    path: &'a str,
    /// `image` or `database`, for the console lines.
    what: &'static str,
    fetch: Fetch,
    progress: Option<Progress>,
}

impl<'a> Download<'a> {
    /// A download of `path` from `server:port`, named `what` on the console.
    pub fn new(server: Ipv4Addr, port: u16, path: &'a str, what: &'static str) -> Self {
        Download {
            server,
            port,
            path,
            what,
            fetch: Fetch::new(),
            progress: None,
        }
    }

    /// Download the whole file into `sink`, resuming after cuts and
    /// retrying up to [`http::MAX_FAILURES`] times; returns its size.
    pub fn run<O: Os, S: Sink<O>>(
        &mut self,
        os: &mut O,
        sink: &mut S,
        io: &mut [u8],
    ) -> Result<u64, Fatal> {
        let what = self.what;
        loop {
            match self.attempt(os, sink, io) {
                Ok(()) if self.fetch.is_complete() => break,
                Ok(()) => {
                    let missing = self
                        .fetch
                        .total()
                        .unwrap_or(0)
                        .saturating_sub(self.fetch.offset());
                    let failure = Failure::Http(HttpError::Cut { missing });
                    self.fetch
                        .on_failure(failure)
                        .map_err(|error| Fatal::Download { what, error })?;
                }
                Err(Attempt::Fatal(f)) => return Err(f),
                Err(Attempt::Failed(failure)) => {
                    say!(
                        os,
                        "{what}: attempt {} failed at byte {}: {failure}",
                        self.fetch.failures() + 1,
                        self.fetch.offset()
                    );
                    self.fetch
                        .on_failure(failure)
                        .map_err(|error| Fatal::Download { what, error })?;
                    say!(os, "{what}: retrying in {} s", http::RETRY_DELAY.as_secs());
                    os.sleep(http::RETRY_DELAY);
                }
            }
        }
        let total = self.fetch.offset();
        if let Some(p) = &self.progress {
            let mut line = p.line(os.now(), total);
            os.consoles_write(line.finish());
        }
        Ok(total)
    }

    /// One connection: request from the current offset and feed the sink
    /// until the body ends.
    fn attempt<O: Os, S: Sink<O>>(
        &mut self,
        os: &mut O,
        sink: &mut S,
        io: &mut [u8],
    ) -> Result<(), Attempt> {
        let (server, port, path, what) = (self.server, self.port, self.path, self.what);
        let failed = |f| Attempt::Failed(f);
        let mut tcp = os
            .tcp_connect(server, port, CONNECT_TIMEOUT)
            .map_err(|e| failed(Failure::Net(e)))?;
        let mut req = [0u8; http::MAX_REQUEST];
        let req = http::write_request(
            &mut req,
            Method::Get,
            server,
            port,
            path,
            self.fetch.offset(),
        )
        .map_err(|e| failed(Failure::Http(e)))?;
        tcp.send_all(req, http::STALL_TIMEOUT)
            .map_err(|e| failed(Failure::Net(e)))?;
        let mut resp = Response::new(Method::Get);
        loop {
            let n = match tcp.recv(io, http::STALL_TIMEOUT) {
                Ok(0) => {
                    return resp.end_of_stream().map_err(|e| failed(Failure::Http(e)));
                }
                Ok(n) => n,
                Err(NetError::TimedOut) => return Err(failed(Failure::Stalled)),
                Err(e) => return Err(failed(Failure::Net(e))),
            };
            let fed = resp
                .feed(io.get(..n).unwrap_or_default())
                .map_err(|e| failed(Failure::Http(e)))?;
            if let Some(head) = fed.head {
                let resumed_at = self.fetch.offset();
                match self.fetch.on_head(&head) {
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
                let total = self.fetch.total().unwrap_or(0);
                sink.total(total).map_err(Attempt::Fatal)?;
                let offset = self.fetch.offset();
                if resumed_at > 0 && offset > 0 {
                    say!(os, "{what}: resuming at byte {offset} of {total}");
                } else if self.progress.is_none() {
                    say!(os, "{what}: http://{server}:{port}{path} ({total} bytes)");
                }
                if self.progress.is_none() || offset == 0 {
                    self.progress = Some(Progress::new(what, os.now(), offset, Some(total)));
                }
            }
            if !fed.body.is_empty() {
                sink.write(self.fetch.offset(), fed.body)
                    .map_err(Attempt::Fatal)?;
                self.fetch.on_body(fed.body.len());
                if let Some(p) = self.progress.as_mut()
                    && let Some(mut line) = p.update(os.now(), self.fetch.offset())
                {
                    os.consoles_write(line.finish());
                }
            }
            if resp.is_done() {
                return Ok(());
            }
        }
    }
}
