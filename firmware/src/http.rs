//! A small HTTP/1.1 GET client, sans-IO (RFC 9110, RFC 9112).
//!
//! - [`write_request`] builds a `GET`/`HEAD` with an optional
//!   `Range: bytes=N-` or `bytes=N-M` (RFC 9110 §14.2), keep-alive or
//!   `Connection: close`.
//! - [`Response`] is fed the bytes as they arrive and hands back the parsed
//!   head and the body bytes, checking them against `Content-Length`: more
//!   bytes than announced is an error, fewer at end of stream is a cut.
//! - [`Fetch`] is the resume policy across connections for a whole file or
//!   one byte window of it (a block-map range): which bytes to ask for,
//!   whether a `206` continues exactly where we stopped, when a `200` means
//!   start over (whole files only), and how many failures are allowed
//!   ([`MAX_FAILURES`], counted over everything one [`Fetch`] chain moves).
//!
//! Chunked transfer coding is refused: an image server must send a length,
//! or a cut download could not be told from a complete one.

use core::{fmt, net::Ipv4Addr, time::Duration};

/// The largest response head accepted.
pub const MAX_HEAD: usize = 4096;
/// The most header fields parsed in a response head.
pub const MAX_HEADERS: usize = 32;
/// The largest request built.
pub const MAX_REQUEST: usize = 512;
/// Failed attempts (connect errors, cuts, stalls, 5xx) before giving up.
pub const MAX_FAILURES: u8 = 3;
/// No byte for this long and the transfer counts as stalled.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before retrying after a failure.
pub const RETRY_DELAY: Duration = Duration::from_secs(2);
/// The User-Agent sent.
pub const USER_AGENT: &str = concat!("ze-installer/", env!("CARGO_PKG_VERSION"));

/// The request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD` (the reachability probe)
    Head,
}

/// Why an HTTP exchange failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The request did not fit [`MAX_REQUEST`] bytes.
    RequestTooLarge,
    /// The response head is larger than [`MAX_HEAD`].
    HeadTooLarge,
    /// The response head is not HTTP.
    Malformed,
    /// `Transfer-Encoding` other than identity.
    Chunked,
    /// No `Content-Length` on a response with a body.
    NoLength,
    /// `Content-Length` or `Content-Range` is not a number or disagrees.
    BadLength,
    /// The server sent more body bytes than it announced.
    Overrun,
    /// The stream ended `missing` bytes before the announced length.
    Cut {
        /// Bytes that were announced but never came.
        missing: u64,
    },
    /// The stream ended inside the response head.
    NoHead,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::RequestTooLarge => f.write_str("request too large"),
            HttpError::HeadTooLarge => write!(f, "response head over {MAX_HEAD} bytes"),
            HttpError::Malformed => f.write_str("malformed HTTP response"),
            HttpError::Chunked => f.write_str(
                "chunked transfer coding is not supported (the server must send Content-Length)",
            ),
            HttpError::NoLength => f.write_str("response without Content-Length"),
            HttpError::BadLength => f.write_str("invalid Content-Length or Content-Range"),
            HttpError::Overrun => f.write_str("server sent more bytes than its Content-Length"),
            HttpError::Cut { missing } => write!(f, "connection closed {missing} bytes early"),
            HttpError::NoHead => f.write_str("connection closed before a response"),
        }
    }
}

/// `Content-Range: bytes <first>-<last>/<total>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// First byte position.
    pub first: u64,
    /// Last byte position (inclusive).
    pub last: u64,
    /// Complete length, when the server knows it.
    pub total: Option<u64>,
}

impl ContentRange {
    /// How many bytes the range holds; `None` when that overflows a u64.
    pub fn span(&self) -> Option<u64> {
        self.last.checked_sub(self.first)?.checked_add(1)
    }
}

/// The parts of a response head the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// `Content-Length`.
    pub content_length: Option<u64>,
    /// `Content-Range`, on a 206.
    pub range: Option<ContentRange>,
    /// The server will close the connection after this response
    /// (`Connection: close`, or HTTP/1.0 without keep-alive).
    pub close: bool,
}

fn push(buf: &mut [u8], len: &mut usize, bytes: &[u8]) -> Result<(), HttpError> {
    let dst = buf
        .get_mut(*len..*len + bytes.len())
        .ok_or(HttpError::RequestTooLarge)?;
    dst.copy_from_slice(bytes);
    *len += bytes.len();
    Ok(())
}

struct Cursor<'a> {
    buf: &'a mut [u8],
    len: usize,
    err: bool,
}

impl fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if push(self.buf, &mut self.len, s.as_bytes()).is_err() {
            self.err = true;
            return Err(fmt::Error);
        }
        Ok(())
    }
}

/// The bytes a request asks for: from `first` to `last` (inclusive), or
/// to the end of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub first: u64,
    /// Last byte, inclusive; `None` is the end of the file.
    pub last: Option<u64>,
}

/// What one request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// `GET` or `HEAD`.
    pub method: Method,
    /// The path: starts with `/` and is URL-safe (the caller builds it
    /// from validated names).
    pub path: &'a str,
    /// `Range`; `None` (or from byte 0 to the end) asks for all of it.
    pub range: Option<ByteRange>,
    /// Keep the connection open for the next request.
    pub keep_alive: bool,
}

/// Build `req` for `host:port` into `buf`.
pub fn write_request<'b>(
    buf: &'b mut [u8],
    host: Ipv4Addr,
    port: u16,
    req: &Request<'_>,
) -> Result<&'b [u8], HttpError> {
    let mut c = Cursor {
        buf,
        len: 0,
        err: false,
    };
    let m = match req.method {
        Method::Get => "GET",
        Method::Head => "HEAD",
    };
    let path = req.path;
    let r = fmt::Write::write_fmt(&mut c, format_args!("{m} {path} HTTP/1.1\r\nHost: {host}"));
    let r = r.and_then(|()| {
        if port != 80 {
            fmt::Write::write_fmt(&mut c, format_args!(":{port}"))
        } else {
            Ok(())
        }
    });
    let r = r.and_then(|()| {
        fmt::Write::write_fmt(
            &mut c,
            format_args!("\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n"),
        )
    });
    let r = r.and_then(|()| match req.range {
        Some(ByteRange {
            first,
            last: Some(last),
        }) => fmt::Write::write_fmt(&mut c, format_args!("Range: bytes={first}-{last}\r\n")),
        Some(ByteRange { first, last: None }) if first > 0 => {
            fmt::Write::write_fmt(&mut c, format_args!("Range: bytes={first}-\r\n"))
        }
        _ => Ok(()),
    });
    let r = r.and_then(|()| {
        fmt::Write::write_str(
            &mut c,
            if req.keep_alive {
                "\r\n"
            } else {
                "Connection: close\r\n\r\n"
            },
        )
    });
    if r.is_err() || c.err {
        return Err(HttpError::RequestTooLarge);
    }
    let len = c.len;
    c.buf.get(..len).ok_or(HttpError::RequestTooLarge)
}

fn number(value: &[u8]) -> Option<u64> {
    let s = core::str::from_utf8(value).ok()?.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn content_range(value: &[u8]) -> Option<ContentRange> {
    let s = core::str::from_utf8(value).ok()?.trim();
    let s = s.strip_prefix("bytes ")?.trim_start();
    let (span, total) = s.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let first = number(first.as_bytes())?;
    let last = number(last.as_bytes())?;
    let total = match total {
        "*" => None,
        t => Some(number(t.as_bytes())?),
    };
    if last < first || total.is_some_and(|t| last >= t) {
        return None;
    }
    Some(ContentRange { first, last, total })
}

/// Parse a complete response head (through the blank line).
pub fn parse_head(bytes: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let used = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::Malformed),
    };
    let status = resp.code.ok_or(HttpError::Malformed)?;
    let mut head = Head {
        status,
        content_length: None,
        range: None,
        // HTTP/1.0 closes unless it says keep-alive.
        close: resp.version == Some(0),
    };
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = number(h.value).ok_or(HttpError::BadLength)?;
            if head.content_length.is_some_and(|old| old != n) {
                return Err(HttpError::BadLength);
            }
            head.content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("content-range") {
            head.range = Some(content_range(h.value).ok_or(HttpError::BadLength)?);
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = core::str::from_utf8(h.value).map_err(|_| HttpError::Malformed)?;
            for token in v.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    head.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") && resp.version == Some(0) {
                    head.close = false;
                }
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = core::str::from_utf8(h.value).map_err(|_| HttpError::Malformed)?;
            if !v.trim().eq_ignore_ascii_case("identity") {
                return Err(HttpError::Chunked);
            }
        }
    }
    // `bytes 0-18446744073709551615/*` spans 2^64 bytes: checked, so a
    // lying server cannot overflow the count.
    if let (Some(r), Some(len)) = (head.range, head.content_length)
        && r.span() != Some(len)
    {
        return Err(HttpError::BadLength);
    }
    Ok(Some((head, used)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body { remaining: u64 },
    Done,
}

/// One response being received.
#[derive(Debug)]
pub struct Response {
    head: [u8; MAX_HEAD],
    head_len: usize,
    state: State,
    expect_body: bool,
}

/// What one call to [`Response::feed`] produced.
#[derive(Debug)]
pub struct Fed<'a> {
    /// The head, on the call that completed it.
    pub head: Option<Head>,
    /// Body bytes in this chunk.
    pub body: &'a [u8],
}

impl Response {
    /// A response to a request of `method` (no body after `HEAD`).
    pub fn new(method: Method) -> Self {
        Response {
            head: [0; MAX_HEAD],
            head_len: 0,
            state: State::Head,
            expect_body: method == Method::Get,
        }
    }

    /// Whether the whole body has arrived.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feed the next bytes from the connection.
    pub fn feed<'a>(&mut self, data: &'a [u8]) -> Result<Fed<'a>, HttpError> {
        match self.state {
            State::Head => {
                let before = self.head_len;
                let room = MAX_HEAD - before;
                let take = data.len().min(room);
                let (src, dst) = (
                    data.get(..take).unwrap_or_default(),
                    self.head.get_mut(before..before + take).unwrap_or_default(),
                );
                dst.copy_from_slice(src);
                self.head_len += take;
                let parsed = parse_head(self.head.get(..self.head_len).unwrap_or_default())?;
                let Some((head, used)) = parsed else {
                    if self.head_len == MAX_HEAD {
                        return Err(HttpError::HeadTooLarge);
                    }
                    return Ok(Fed {
                        head: None,
                        body: &[],
                    });
                };
                let from_this_chunk = used - before;
                let has_body = self.expect_body
                    && !(100..200).contains(&head.status)
                    && head.status != 204
                    && head.status != 304;
                self.state = if has_body {
                    let len = head.content_length.ok_or(HttpError::NoLength)?;
                    State::Body { remaining: len }
                } else {
                    State::Done
                };
                let rest = data.get(from_this_chunk..).unwrap_or_default();
                let body = self.take_body(rest)?;
                Ok(Fed {
                    head: Some(head),
                    body,
                })
            }
            State::Body { .. } => Ok(Fed {
                head: None,
                body: self.take_body(data)?,
            }),
            State::Done if data.is_empty() || !self.expect_body => Ok(Fed {
                head: None,
                body: &[],
            }),
            State::Done => Err(HttpError::Overrun),
        }
    }

    fn take_body<'a>(&mut self, data: &'a [u8]) -> Result<&'a [u8], HttpError> {
        match self.state {
            State::Body { remaining } => {
                let n = data.len() as u64;
                if n > remaining {
                    return Err(HttpError::Overrun);
                }
                self.state = if n == remaining {
                    State::Done
                } else {
                    State::Body {
                        remaining: remaining - n,
                    }
                };
                Ok(data)
            }
            State::Done if data.is_empty() || !self.expect_body => Ok(&[]),
            State::Done => Err(HttpError::Overrun),
            State::Head => Ok(&[]),
        }
    }

    /// The peer closed the connection: fine only if everything arrived.
    pub fn end_of_stream(&self) -> Result<(), HttpError> {
        match self.state {
            State::Done => Ok(()),
            State::Body { remaining } => Err(HttpError::Cut { missing: remaining }),
            State::Head => Err(HttpError::NoHead),
        }
    }
}

/// What the server's status means for the installer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 200 or 206.
    Ok,
    /// 404 or 410: the file is not there (the server is reachable).
    NotFound,
    /// 5xx: the server has a problem; worth retrying.
    ServerError,
    /// Anything else: a request the server will not serve.
    Refused,
}

/// Classify a status code.
pub fn classify(status: u16) -> StatusClass {
    match status {
        200 | 206 => StatusClass::Ok,
        404 | 410 => StatusClass::NotFound,
        500..=599 => StatusClass::ServerError,
        _ => StatusClass::Refused,
    }
}

/// How a response head continues a [`Fetch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The body continues at the current offset.
    Continue,
    /// The server sent the whole file from byte 0: the caller must discard
    /// what it has (hash, written bytes) and start over.
    Restart,
}

/// Why a fetch cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// The server answered 404/410.
    NotFound(u16),
    /// The server refused the request (4xx other than 404, 416, 3xx).
    Refused(u16),
    /// The server answered a resume with something that does not fit
    /// (a different total size, a range starting elsewhere).
    Inconsistent,
    /// The server answered a range request with the whole file (200).
    RangeIgnored,
    /// Failures used up; the last one is carried.
    GaveUp(Failure),
}

/// One failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// TCP connect or send/receive failed.
    Net(ze_hal::os::NetError),
    /// No byte within [`STALL_TIMEOUT`].
    Stalled,
    /// The response broke the protocol or was cut.
    Http(HttpError),
    /// 5xx status.
    Status(u16),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Net(e) => write!(f, "{e}"),
            Failure::Stalled => write!(f, "stalled: no data for {} s", STALL_TIMEOUT.as_secs()),
            Failure::Http(e) => write!(f, "{e}"),
            Failure::Status(s) => write!(f, "HTTP {s}"),
        }
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::NotFound(s) => write!(f, "HTTP {s} (not found)"),
            FetchError::Refused(s) => write!(f, "HTTP {s}"),
            FetchError::Inconsistent => {
                f.write_str("the server's answer to a resume does not match the first response")
            }
            FetchError::RangeIgnored => f.write_str(
                "the server ignored Range and sent the whole file: the block map needs an HTTP server with Range support",
            ),
            FetchError::GaveUp(last) => write!(f, "failed {MAX_FAILURES} times, last: {last}"),
        }
    }
}

/// The resume policy of one file download, or of one byte window of a
/// file, across connections.
#[derive(Debug, Clone)]
pub struct Fetch {
    offset: u64,
    /// The window's end (exclusive), once known: the file's size for a
    /// whole file.
    end: Option<u64>,
    /// The file's size, once known.
    total: Option<u64>,
    /// A window: only a 206 for exactly the bytes asked for will do.
    ranged: bool,
    failures: u8,
}

impl Default for Fetch {
    fn default() -> Self {
        Self::new()
    }
}

impl Fetch {
    /// A whole file, from byte 0.
    pub fn new() -> Self {
        Fetch {
            offset: 0,
            end: None,
            total: None,
            ranged: false,
            failures: 0,
        }
    }

    /// Bytes `start..end` of a file of `total` bytes (when known), after
    /// `failures` failed attempts of earlier windows of the same transfer.
    pub fn window(start: u64, end: u64, total: Option<u64>, failures: u8) -> Self {
        Fetch {
            offset: start,
            end: Some(end.max(start)),
            total,
            ranged: true,
            failures,
        }
    }

    /// The byte to request from.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The file's size, once a response announced it.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// Bytes still to come, once known.
    pub fn missing(&self) -> Option<u64> {
        Some(self.end?.saturating_sub(self.offset))
    }

    /// Whether this is a window of the file rather than all of it.
    pub fn is_window(&self) -> bool {
        self.ranged
    }

    /// Failed attempts so far.
    pub fn failures(&self) -> u8 {
        self.failures
    }

    /// Whether every byte has been received.
    pub fn is_complete(&self) -> bool {
        self.end == Some(self.offset)
    }

    /// The `Range` of the next request.
    pub fn request_range(&self) -> Option<ByteRange> {
        match (self.ranged, self.end) {
            (true, Some(end)) => Some(ByteRange {
                first: self.offset,
                last: Some(end.saturating_sub(1)),
            }),
            _ if self.offset > 0 => Some(ByteRange {
                first: self.offset,
                last: None,
            }),
            _ => None,
        }
    }

    /// Judge a response head.
    pub fn on_head(&mut self, head: &Head) -> Result<Start, Result<FetchError, Failure>> {
        match classify(head.status) {
            StatusClass::NotFound => return Err(Ok(FetchError::NotFound(head.status))),
            StatusClass::ServerError => return Err(Err(Failure::Status(head.status))),
            StatusClass::Refused => return Err(Ok(FetchError::Refused(head.status))),
            StatusClass::Ok => {}
        }
        let len = head
            .content_length
            .ok_or(Err(Failure::Http(HttpError::NoLength)))?;
        if head.status == 200 {
            if self.ranged {
                return Err(Ok(FetchError::RangeIgnored));
            }
            if self.total.is_some_and(|t| t != len) {
                return Err(Ok(FetchError::Inconsistent));
            }
            self.total = Some(len);
            self.end = Some(len);
            let restart = self.offset > 0;
            self.offset = 0;
            return Ok(if restart {
                Start::Restart
            } else {
                Start::Continue
            });
        }
        // 206: must continue exactly where we are, for the same file, up to
        // the end asked for.
        let range = head.range.ok_or(Ok(FetchError::Inconsistent))?;
        if range.first != self.offset {
            return Err(Ok(FetchError::Inconsistent));
        }
        let total = match (range.total, self.total) {
            (Some(t), Some(known)) if t != known => return Err(Ok(FetchError::Inconsistent)),
            (Some(t), _) => t,
            (None, Some(known)) if self.ranged => known,
            (None, _) => return Err(Ok(FetchError::Inconsistent)),
        };
        let end = range
            .last
            .checked_add(1)
            .ok_or(Ok(FetchError::Inconsistent))?;
        let wanted = if self.ranged { self.end } else { Some(total) };
        if Some(end) != wanted || end > total {
            return Err(Ok(FetchError::Inconsistent));
        }
        self.total = Some(total);
        self.end = Some(end);
        Ok(Start::Continue)
    }

    /// `n` body bytes were received and kept.
    pub fn on_body(&mut self, n: usize) {
        self.offset += n as u64;
    }

    /// An attempt failed; `Ok(())` means retry (from [`Fetch::offset`]).
    pub fn on_failure(&mut self, failure: Failure) -> Result<(), FetchError> {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= MAX_FAILURES {
            Err(FetchError::GaveUp(failure))
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ze_hal::os::NetError;

    fn req(method: Method, port: u16, path: &str, from: u64) -> std::string::String {
        let mut buf = [0u8; MAX_REQUEST];
        let range = Some(ByteRange {
            first: from,
            last: None,
        });
        let req = Request {
            method,
            path,
            range,
            keep_alive: false,
        };
        let r = write_request(&mut buf, Ipv4Addr::new(10, 0, 2, 2), port, &req).unwrap();
        std::string::String::from_utf8(r.to_vec()).unwrap()
    }

    #[test]
    fn i3_requests() {
        assert_eq!(
            req(Method::Get, 8080, "/install/image/ze.img", 0),
            std::format!(
                "GET /install/image/ze.img HTTP/1.1\r\nHost: 10.0.2.2:8080\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            )
        );
        let r = req(Method::Get, 80, "/install/image/ze.img", 1_048_576);
        assert!(r.contains("Host: 10.0.2.2\r\n"));
        assert!(r.contains("\r\nRange: bytes=1048576-\r\n"));
        assert!(req(Method::Head, 80, "/x", 0).starts_with("HEAD /x HTTP/1.1\r\n"));
        let mut small = [0u8; 20];
        let x = Request {
            method: Method::Get,
            path: "/x",
            range: None,
            keep_alive: false,
        };
        assert_eq!(
            write_request(&mut small, Ipv4Addr::LOCALHOST, 80, &x),
            Err(HttpError::RequestTooLarge)
        );
        // A window over a kept-alive connection.
        let mut buf = [0u8; MAX_REQUEST];
        let w = Request {
            method: Method::Get,
            path: "/install/image/ze.img",
            range: Some(ByteRange {
                first: 4096,
                last: Some(8191),
            }),
            keep_alive: true,
        };
        let r = write_request(&mut buf, Ipv4Addr::LOCALHOST, 80, &w).unwrap();
        let r = core::str::from_utf8(r).unwrap();
        assert!(r.contains("\r\nRange: bytes=4096-8191\r\n"), "{r}");
        assert!(!r.contains("Connection"), "{r}");
        assert!(r.ends_with("\r\n\r\n"));
    }

    /// Feed `chunks` and collect (head, body).
    fn run(method: Method, chunks: &[&[u8]]) -> Result<(Head, std::vec::Vec<u8>, bool), HttpError> {
        let mut r = Response::new(method);
        let mut head = None;
        let mut body = std::vec::Vec::new();
        for c in chunks {
            let fed = r.feed(c)?;
            if fed.head.is_some() {
                head = fed.head;
            }
            body.extend_from_slice(fed.body);
        }
        let complete = r.end_of_stream().is_ok();
        Ok((head.ok_or(HttpError::NoHead)?, body, complete))
    }

    #[test]
    fn head_and_body_split_anywhere() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
        for split in 0..full.len() {
            let (a, b) = full.split_at(split);
            let (head, body, done) = run(Method::Get, &[a, b]).unwrap();
            assert_eq!(head.status, 200);
            assert_eq!(head.content_length, Some(5));
            assert_eq!(body, b"hello");
            assert!(done, "split at {split}");
        }
        // One byte at a time.
        let bytes: std::vec::Vec<&[u8]> = full.chunks(1).collect();
        assert_eq!(run(Method::Get, &bytes).unwrap().1, b"hello");
    }

    #[test]
    fn i18_lies_and_cuts() {
        // Content-Length says 10, 4 arrive, then EOF: a cut.
        let mut r = Response::new(Method::Get);
        r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd")
            .unwrap();
        assert_eq!(r.end_of_stream(), Err(HttpError::Cut { missing: 6 }));
        // Content-Length says 3, 5 arrive: overrun.
        let e = run(
            Method::Get,
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcde"],
        );
        assert_eq!(e.unwrap_err(), HttpError::Overrun);
        // Bytes after a complete body in a later chunk.
        let mut r = Response::new(Method::Get);
        r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
            .unwrap();
        assert_eq!(r.feed(b"junk").unwrap_err(), HttpError::Overrun);
        // Two different Content-Length headers.
        let e = run(
            Method::Get,
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"],
        );
        assert_eq!(e.unwrap_err(), HttpError::BadLength);
        for bad in [&b"-1"[..], b"1e3", b"", b"99999999999999999999999"] {
            let mut head = b"HTTP/1.1 200 OK\r\nContent-Length: ".to_vec();
            head.extend_from_slice(bad);
            head.extend_from_slice(b"\r\n\r\n");
            assert_eq!(
                run(Method::Get, &[&head]).unwrap_err(),
                HttpError::BadLength
            );
        }
        // No length at all on a GET.
        let e = run(Method::Get, &[b"HTTP/1.1 200 OK\r\n\r\nabc"]);
        assert_eq!(e.unwrap_err(), HttpError::NoLength);
        // Chunked.
        let e = run(
            Method::Get,
            &[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
        );
        assert_eq!(e.unwrap_err(), HttpError::Chunked);
        // Closed before the head ended.
        let mut r = Response::new(Method::Get);
        r.feed(b"HTTP/1.1 200 OK\r\nContent-").unwrap();
        assert_eq!(r.end_of_stream(), Err(HttpError::NoHead));
    }

    #[test]
    fn garbage_and_huge_heads_are_errors() {
        assert_eq!(
            run(Method::Get, &[b"SSH-2.0-OpenSSH\r\n\r\n"]).unwrap_err(),
            HttpError::Malformed
        );
        let mut r = Response::new(Method::Get);
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        while big.len() < MAX_HEAD + 10 {
            big.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaa\r\n");
        }
        let mut res = Ok(());
        for c in big.chunks(100) {
            if let Err(e) = r.feed(c) {
                res = Err(e);
                break;
            }
        }
        assert_eq!(res, Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn i9_404_and_head_responses() {
        let (head, body, done) = run(
            Method::Get,
            &[b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"],
        )
        .unwrap();
        assert_eq!((head.status, body.len(), done), (404, 9, true));
        assert_eq!(classify(404), StatusClass::NotFound);
        assert_eq!(classify(503), StatusClass::ServerError);
        assert_eq!(classify(403), StatusClass::Refused);
        // HEAD: Content-Length describes the GET, no body follows.
        let (head, body, done) = run(
            Method::Head,
            &[b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n"],
        )
        .unwrap();
        assert_eq!(
            (head.content_length, body.len(), done),
            (Some(67_108_864), 0, true)
        );
    }

    #[test]
    fn content_range_parsing() {
        assert_eq!(
            content_range(b"bytes 100-199/200"),
            Some(ContentRange {
                first: 100,
                last: 199,
                total: Some(200)
            })
        );
        assert_eq!(content_range(b"bytes 0-0/*").unwrap().total, None);
        for bad in [
            &b"bytes 5-4/10"[..],
            b"bytes 0-10/10",
            b"items 0-1/2",
            b"bytes 0-/2",
            b"bytes -1-2/3",
        ] {
            assert_eq!(content_range(bad), None, "{:?}", core::str::from_utf8(bad));
        }
        // Content-Range and Content-Length must agree.
        let e = run(Method::Get, &[b"HTTP/1.1 206 Partial\r\nContent-Range: bytes 10-19/20\r\nContent-Length: 5\r\n\r\n"]);
        assert_eq!(e.unwrap_err(), HttpError::BadLength);
    }

    fn head(status: u16, len: u64, range: Option<(u64, u64, u64)>) -> Head {
        Head {
            status,
            content_length: Some(len),
            range: range.map(|(first, last, total)| ContentRange {
                first,
                last,
                total: Some(total),
            }),
            close: false,
        }
    }

    #[test]
    fn w4_windows_need_exactly_their_206() {
        let mut f = Fetch::window(4096, 8192, Some(100_000), 0);
        assert_eq!(
            f.request_range(),
            Some(ByteRange {
                first: 4096,
                last: Some(8191)
            })
        );
        assert_eq!(
            f.on_head(&head(200, 100_000, None)),
            Err(Ok(FetchError::RangeIgnored))
        );
        assert_eq!(
            f.on_head(&head(206, 4096, Some((4096, 9000, 100_000)))),
            Err(Ok(FetchError::Inconsistent)),
            "more than asked"
        );
        assert_eq!(
            f.on_head(&head(206, 4096, Some((4096, 8191, 90_000)))),
            Err(Ok(FetchError::Inconsistent)),
            "another file size"
        );
        assert_eq!(
            f.on_head(&head(206, 4096, Some((4096, 8191, 100_000)))),
            Ok(Start::Continue)
        );
        // Cut after 1000 bytes: resume inside the window.
        f.on_body(1000);
        assert_eq!(f.missing(), Some(3096));
        f.on_failure(Failure::Stalled).unwrap();
        assert_eq!(
            f.request_range(),
            Some(ByteRange {
                first: 5096,
                last: Some(8191)
            })
        );
        assert_eq!(
            f.on_head(&head(206, 3096, Some((5096, 8191, 100_000)))),
            Ok(Start::Continue)
        );
        f.on_body(3096);
        assert!(f.is_complete());
        // Failures carry over from earlier windows.
        let mut g = Fetch::window(0, 10, None, 2);
        assert!(g.on_failure(Failure::Stalled).is_err());
    }

    #[test]
    fn connection_close_and_http_1_0_are_seen() {
        let close = |bytes: &[u8]| parse_head(bytes).unwrap().unwrap().0.close;
        assert!(!close(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(close(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(close(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!close(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
        ));
    }

    #[test]
    fn a_range_spanning_2_to_the_64_bytes_is_refused_not_overflowed() {
        let e = parse_head(
            b"HTTP/1.1 206 P\r\nContent-Range: bytes 0-18446744073709551615/*\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(e, Err(HttpError::BadLength));
    }

    #[test]
    fn i18_fetch_resumes_with_range_and_restarts_on_200() {
        let mut f = Fetch::new();
        assert_eq!(f.on_head(&head(200, 100, None)), Ok(Start::Continue));
        f.on_body(40);
        assert_eq!(
            f.on_failure(Failure::Http(HttpError::Cut { missing: 60 })),
            Ok(())
        );
        assert_eq!(f.offset(), 40);
        // The server honours Range.
        assert_eq!(
            f.on_head(&head(206, 60, Some((40, 99, 100)))),
            Ok(Start::Continue)
        );
        f.on_body(60);
        assert!(f.is_complete());
        // A server that ignores Range sends 200: start over.
        let mut f = Fetch::new();
        f.on_head(&head(200, 100, None)).unwrap();
        f.on_body(40);
        f.on_failure(Failure::Stalled).unwrap();
        assert_eq!(f.on_head(&head(200, 100, None)), Ok(Start::Restart));
        assert_eq!(f.offset(), 0);
    }

    #[test]
    fn fetch_rejects_inconsistent_resumes() {
        let mut f = Fetch::new();
        f.on_head(&head(200, 100, None)).unwrap();
        f.on_body(40);
        // Range starting elsewhere.
        assert_eq!(
            f.on_head(&head(206, 50, Some((50, 99, 100)))),
            Err(Ok(FetchError::Inconsistent))
        );
        // The file changed size.
        assert_eq!(
            f.on_head(&head(206, 60, Some((40, 99, 120)))),
            Err(Ok(FetchError::Inconsistent))
        );
        assert_eq!(
            f.on_head(&head(200, 120, None)),
            Err(Ok(FetchError::Inconsistent))
        );
    }

    #[test]
    fn i10_three_failures_give_up() {
        let mut f = Fetch::new();
        assert_eq!(f.on_failure(Failure::Net(NetError::Refused)), Ok(()));
        assert_eq!(f.on_failure(Failure::Status(503)), Ok(()));
        let last = Failure::Stalled;
        assert_eq!(f.on_failure(last), Err(FetchError::GaveUp(last)));
        assert_eq!(
            std::format!("{}", FetchError::GaveUp(last)),
            "failed 3 times, last: stalled: no data for 10 s"
        );
    }

    #[test]
    fn i9_status_classes_for_fetch() {
        let mut f = Fetch::new();
        assert_eq!(
            f.on_head(&head(404, 9, None)),
            Err(Ok(FetchError::NotFound(404)))
        );
        assert_eq!(
            f.on_head(&head(500, 0, None)),
            Err(Err(Failure::Status(500)))
        );
        assert_eq!(
            f.on_head(&head(403, 0, None)),
            Err(Ok(FetchError::Refused(403)))
        );
    }
}
