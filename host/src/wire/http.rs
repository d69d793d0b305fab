//! HTTP/1.1 requests as the image server reads them: the request head
//! (RFC 9112 §2–3, parsed by `httparse`), the request target turned into
//! safe path segments (RFC 3986 §2.1 percent-decoding, no dot segments),
//! and the `Range` header (RFC 9110 §14.1.2, one byte range).

use std::fmt;

/// The longest request head accepted (request line and headers).
pub const MAX_HEAD_LEN: usize = 8 * 1024;
/// The most header fields accepted.
pub const MAX_HEADERS: usize = 32;
/// The most path segments in a target.
pub const MAX_SEGMENTS: usize = 16;

/// Why a request head is unacceptable, with the status to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Syntax error in the head (400).
    Malformed(&'static str),
    /// The head exceeds [`MAX_HEAD_LEN`] or [`MAX_HEADERS`] (431).
    TooLarge,
    /// A request body was announced; this server takes none (400).
    BodyNotAccepted,
    /// An HTTP version other than 1.0 and 1.1 (505).
    Version,
}

impl Error {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Error::Malformed(_) | Error::BodyNotAccepted => 400,
            Error::TooLarge => 431,
            Error::Version => 505,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed(what) => write!(f, "malformed request: {what}"),
            Error::TooLarge => write!(
                f,
                "request head larger than {MAX_HEAD_LEN} bytes or {MAX_HEADERS} fields"
            ),
            Error::BodyNotAccepted => f.write_str("request bodies are not accepted"),
            Error::Version => f.write_str("only HTTP/1.0 and HTTP/1.1 are served"),
        }
    }
}

impl std::error::Error for Error {}

/// The request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method<'a> {
    Get,
    Head,
    /// Anything else (answered 405).
    Other(&'a str),
}

impl Method<'_> {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Other(m) => m,
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method<'a>,
    /// The request target as sent (origin form, `/install/...`).
    pub target: &'a str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// The `Range` header value, if any.
    pub range: Option<&'a str>,
    /// Bytes the head took, including the final empty line.
    pub head_len: usize,
}

/// Parse the head at the start of `buf`. `Ok(None)` means more bytes are
/// needed (and `buf` is still shorter than [`MAX_HEAD_LEN`]).
pub fn parse_head(buf: &[u8]) -> Result<Option<Request<'_>>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD_LEN {
                Err(Error::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Error::TooLarge),
        Err(httparse::Error::Version) => return Err(Error::Version),
        Err(_) => return Err(Error::Malformed("bad request line or header syntax")),
    };
    if head_len > MAX_HEAD_LEN {
        return Err(Error::TooLarge);
    }
    let method = match req.method.ok_or(Error::Malformed("no method"))? {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        other => Method::Other(other),
    };
    let target = req.path.ok_or(Error::Malformed("no target"))?;
    let minor_version = req.version.ok_or(Error::Version)?;
    let mut keep_alive = minor_version == 1;
    let mut range = None;
    let mut seen_host = false;
    for h in req.headers.iter() {
        let name = h.name;
        let value = std::str::from_utf8(h.value)
            .map_err(|_| Error::Malformed("header value is not UTF-8"))?
            .trim();
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") && minor_version == 0 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("range") {
            if range.is_some() {
                return Err(Error::Malformed("more than one Range header"));
            }
            range = Some(value);
        } else if name.eq_ignore_ascii_case("host") {
            if seen_host {
                return Err(Error::Malformed("more than one Host header"));
            }
            seen_host = true;
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || (name.eq_ignore_ascii_case("content-length") && value != "0")
        {
            return Err(Error::BodyNotAccepted);
        }
    }
    // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400.
    if minor_version == 1 && !seen_host {
        return Err(Error::Malformed("HTTP/1.1 request without Host"));
    }
    Ok(Some(Request {
        method,
        target,
        minor_version,
        keep_alive,
        range,
        head_len,
    }))
}

/// Why a target does not name a servable path (answered 400 or 404).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Not origin form (`/…`).
    NotOriginForm,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A segment that is `.`, `..`, empty in the middle, or decodes to
    /// something holding `/`, `\` or NUL.
    UnsafeSegment,
    /// Not UTF-8 after decoding.
    NotUtf8,
    /// More than [`MAX_SEGMENTS`] segments.
    TooDeep,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotOriginForm => "target does not start with '/'",
            PathError::BadEscape => "bad percent escape",
            PathError::UnsafeSegment => {
                "path segment is '.', '..', empty or holds '/', '\\' or NUL"
            }
            PathError::NotUtf8 => "path is not UTF-8",
            PathError::TooDeep => "too many path segments",
        })
    }
}

impl std::error::Error for PathError {}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decode the path of an origin-form target into segments. The query is
/// dropped. Each segment is percent-decoded on its own, so `%2f` can never
/// introduce a separator, and `.`/`..` (also as `%2e%2e`) are refused
/// rather than resolved.
pub fn path_segments(target: &str) -> Result<Vec<String>, PathError> {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PathError::NotOriginForm);
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let raw: Vec<&str> = rest.split('/').collect();
    if raw.len() > MAX_SEGMENTS {
        return Err(PathError::TooDeep);
    }
    let mut out = Vec::with_capacity(raw.len());
    for seg in raw {
        let bytes = seg.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hi = bytes.get(i + 1).copied().and_then(hex);
                let lo = bytes.get(i + 2).copied().and_then(hex);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadEscape);
                };
                decoded.push(hi << 4 | lo);
                i += 3;
            } else {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
        let text = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
        if text.is_empty() || text == "." || text == ".." || text.contains(['/', '\\', '\0']) {
            return Err(PathError::UnsafeSegment);
        }
        out.push(text);
    }
    Ok(out)
}

/// What a `Range` header asks of a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// Serve everything (no header, a header we do not honour such as
    /// several ranges or another unit, or a syntax error: RFC 9110
    /// §14.2 lets a server ignore it).
    Full,
    /// Serve bytes `start..=end` with 206.
    Partial { start: u64, end: u64 },
    /// 416: no byte of the range exists.
    Unsatisfiable,
}

/// Interpret a `Range` header value for a representation of `len` bytes.
pub fn parse_range(value: Option<&str>, len: u64) -> RangeRequest {
    let Some(value) = value else {
        return RangeRequest::Full;
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    let spec = spec.trim();
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeRequest::Full;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last N bytes.
        let Some(n) = num(last) else {
            return RangeRequest::Full;
        };
        if n == 0 || len == 0 {
            return RangeRequest::Unsatisfiable;
        }
        return RangeRequest::Partial {
            start: len.saturating_sub(n),
            end: len - 1,
        };
    }
    let Some(start) = num(first) else {
        return RangeRequest::Full;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match num(last) {
            Some(e) if e >= start => e,
            _ => return RangeRequest::Full,
        }
    };
    if start >= len {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial {
        start,
        end: end.min(len - 1),
    }
}

/// The reason phrase of a status code this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request iPXE 1.0.0+git-20190125 sends for the boot script, as
    /// captured in the OVMF boot test.
    const IPXE_GET: &[u8] = b"GET /install/boot/boot.ipxe HTTP/1.1\r\nConnection: keep-alive\r\nUser-Agent: iPXE/1.0.0+git-20190125.36a4c85-5.1\r\nHost: 192.0.2.1\r\n\r\n";

    #[test]
    fn parses_ipxe_and_curl_requests() {
        let r = parse_head(IPXE_GET).unwrap().unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.target, "/install/boot/boot.ipxe");
        assert!(r.keep_alive);
        assert_eq!(r.head_len, IPXE_GET.len());
        let curl = b"HEAD /install/image/a.img HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\nConnection: close\r\n\r\n";
        let r = parse_head(curl).unwrap().unwrap();
        assert_eq!(r.method, Method::Head);
        assert_eq!(r.range, Some("bytes=0-9"));
        assert!(!r.keep_alive);
        let old = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!old.keep_alive);
        let old = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(old.keep_alive);
    }

    #[test]
    fn partial_heads_wait_for_more_until_the_limit() {
        for n in 0..IPXE_GET.len() {
            assert_eq!(parse_head(&IPXE_GET[..n]), Ok(None), "prefix {n}");
        }
        let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\nX: ".to_vec();
        huge.resize(MAX_HEAD_LEN + 1, b'a');
        assert_eq!(parse_head(&huge), Err(Error::TooLarge));
        let mut many = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many), Err(Error::TooLarge));
    }

    #[test]
    fn bad_heads() {
        for (bytes, status) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], 400),
            (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nRange: a\r\nRange: b\r\n\r\n",
                400,
            ),
            (b"G\x00T / HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n", 400),
        ] {
            let e = parse_head(bytes).unwrap_err();
            assert_eq!(
                e.status(),
                status,
                "{:?}: {e}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn path_escapes_are_refused() {
        assert_eq!(
            path_segments("/install/image/ze-1.img?x=1").unwrap(),
            ["install", "image", "ze-1.img"]
        );
        assert_eq!(
            path_segments("/install/boot/a%20b").unwrap(),
            ["install", "boot", "a b"]
        );
        assert_eq!(path_segments("/").unwrap(), Vec::<String>::new());
        for bad in [
            "/install/boot/../../etc/passwd",
            "/install/boot/%2e%2e/%2e%2e/etc/passwd",
            "/install/boot/%2E%2E",
            "/install/boot/a%2fb",
            "/install/boot/a%5cb",
            "/install/boot/a%00b",
            "/install/boot/./x",
            "/install//boot",
            "/install/boot/",
            "/install/boot/%zz",
            "/install/boot/%2",
            "/install/boot/%ff",
            "install/boot/x",
            "http://x/install",
        ] {
            assert!(path_segments(bad).is_err(), "{bad}");
        }
        let deep = "/a".repeat(MAX_SEGMENTS + 1);
        assert_eq!(path_segments(&deep), Err(PathError::TooDeep));
    }

    #[test]
    fn ranges() {
        use RangeRequest::*;
        let r = |v: &str| parse_range(Some(v), 100);
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(r("bytes=0-9"), Partial { start: 0, end: 9 });
        assert_eq!(r("bytes=90-"), Partial { start: 90, end: 99 });
        assert_eq!(r("bytes=90-1000"), Partial { start: 90, end: 99 });
        assert_eq!(r("bytes=-10"), Partial { start: 90, end: 99 });
        assert_eq!(r("bytes=-1000"), Partial { start: 0, end: 99 });
        assert_eq!(r("bytes=100-"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(r("bytes=5-1"), Full);
        assert_eq!(r("bytes=0-1,5-6"), Full);
        assert_eq!(r("items=0-1"), Full);
        assert_eq!(r("bytes=a-b"), Full);
        assert_eq!(r("bytes=99999999999999999999-"), Full);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
    }
}
