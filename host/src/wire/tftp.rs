//! TFTP packets: RFC 1350 §5 (RRQ, WRQ, DATA, ACK, ERROR) and RFC 2347
//! (option extension: options in requests, OACK).
//!
//! ```text
//!  RRQ/WRQ  | 01/02 | filename | 0 | mode | 0 | opt1 | 0 | value1 | 0 | …
//!  DATA     | 03    | block (2) | data (0..blksize)
//!  ACK      | 04    | block (2)
//!  ERROR    | 05    | code (2)  | message | 0
//!  OACK     | 06    | opt1 | 0 | value1 | 0 | …
//! ```
//!
//! The opcode and the block and error numbers are 16-bit big-endian.
//! [`Repr::parse`] borrows from the datagram and checks every field:
//! strings must be NUL-terminated UTF-8, requests at most
//! [`MAX_REQUEST_LEN`] bytes (RFC 2347 §"Packet Formats") with at most
//! [`MAX_OPTIONS`] options. [`Repr::emit`] into a buffer of exactly
//! [`Repr::buffer_len`] bytes never panics.

use std::fmt;

/// Opcodes (RFC 1350 §5, RFC 2347).
pub mod opcode {
    pub const RRQ: u16 = 1;
    pub const WRQ: u16 = 2;
    pub const DATA: u16 = 3;
    pub const ACK: u16 = 4;
    pub const ERROR: u16 = 5;
    pub const OACK: u16 = 6;
}

/// The largest request (RRQ/WRQ) accepted, per RFC 2347.
pub const MAX_REQUEST_LEN: usize = 512;
/// The most option pairs accepted in a request or OACK.
pub const MAX_OPTIONS: usize = 16;
/// Bytes of a DATA header (opcode, block).
pub const DATA_HEADER_LEN: usize = 4;

/// TFTP error codes (RFC 1350 §5 "Error Codes", RFC 2347 code 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: not defined, see the message.
    Undefined,
    /// 1: file not found.
    FileNotFound,
    /// 2: access violation.
    AccessViolation,
    /// 3: disk full or allocation exceeded.
    DiskFull,
    /// 4: illegal TFTP operation.
    IllegalOperation,
    /// 5: unknown transfer ID.
    UnknownTransferId,
    /// 6: file already exists.
    FileExists,
    /// 7: no such user.
    NoSuchUser,
    /// 8: option negotiation failed (RFC 2347).
    OptionNegotiation,
    /// Anything else.
    Other(u16),
}

impl ErrorCode {
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::Undefined => 0,
            ErrorCode::FileNotFound => 1,
            ErrorCode::AccessViolation => 2,
            ErrorCode::DiskFull => 3,
            ErrorCode::IllegalOperation => 4,
            ErrorCode::UnknownTransferId => 5,
            ErrorCode::FileExists => 6,
            ErrorCode::NoSuchUser => 7,
            ErrorCode::OptionNegotiation => 8,
            ErrorCode::Other(c) => c,
        }
    }

    pub fn from_code(code: u16) -> ErrorCode {
        match code {
            0 => ErrorCode::Undefined,
            1 => ErrorCode::FileNotFound,
            2 => ErrorCode::AccessViolation,
            3 => ErrorCode::DiskFull,
            4 => ErrorCode::IllegalOperation,
            5 => ErrorCode::UnknownTransferId,
            6 => ErrorCode::FileExists,
            7 => ErrorCode::NoSuchUser,
            8 => ErrorCode::OptionNegotiation,
            c => ErrorCode::Other(c),
        }
    }
}

/// Why a datagram is not a valid TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the opcode and fixed fields need.
    Truncated,
    /// An opcode outside 1..=6.
    UnknownOpcode(u16),
    /// A string without its terminating NUL.
    Unterminated,
    /// A string that is not UTF-8.
    NotUtf8,
    /// An empty file name.
    EmptyFilename,
    /// A request longer than [`MAX_REQUEST_LEN`].
    RequestTooLong(usize),
    /// An option name without a value.
    OptionWithoutValue,
    /// More than [`MAX_OPTIONS`] options.
    TooManyOptions,
    /// Bytes after an ERROR message's NUL or an ACK's block number.
    TrailingBytes,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("packet is truncated"),
            Error::UnknownOpcode(op) => write!(f, "unknown opcode {op}"),
            Error::Unterminated => f.write_str("string is not NUL-terminated"),
            Error::NotUtf8 => f.write_str("string is not UTF-8"),
            Error::EmptyFilename => f.write_str("file name is empty"),
            Error::RequestTooLong(n) => {
                write!(f, "request is {n} bytes, more than {MAX_REQUEST_LEN}")
            }
            Error::OptionWithoutValue => f.write_str("option name without a value"),
            Error::TooManyOptions => write!(f, "more than {MAX_OPTIONS} options"),
            Error::TrailingBytes => f.write_str("unexpected bytes at the end"),
        }
    }
}

impl std::error::Error for Error {}

/// A read or write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The file name as sent.
    pub filename: &'a str,
    /// The transfer mode (`octet`, `netascii`, `mail`), as sent.
    pub mode: &'a str,
    /// Option pairs in order (RFC 2347); names as sent.
    pub options: Vec<(&'a str, &'a str)>,
}

impl Request<'_> {
    /// The value of option `name` (case-insensitive), first occurrence.
    pub fn option(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// A parsed TFTP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repr<'a> {
    Read(Request<'a>),
    Write(Request<'a>),
    Data { block: u16, data: &'a [u8] },
    Ack { block: u16 },
    Error { code: ErrorCode, message: &'a str },
    OptionAck { options: Vec<(&'a str, &'a str)> },
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Split NUL-terminated UTF-8 strings off the front of `rest`.
fn take_str<'a>(rest: &mut &'a [u8]) -> Result<&'a str, Error> {
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(Error::Unterminated)?;
    let s = std::str::from_utf8(&rest[..end]).map_err(|_| Error::NotUtf8)?;
    *rest = &rest[end + 1..];
    Ok(s)
}

fn take_options(mut rest: &[u8]) -> Result<Vec<(&str, &str)>, Error> {
    let mut options = Vec::new();
    while !rest.is_empty() {
        if options.len() == MAX_OPTIONS {
            return Err(Error::TooManyOptions);
        }
        let name = take_str(&mut rest)?;
        if rest.is_empty() {
            return Err(Error::OptionWithoutValue);
        }
        let value = take_str(&mut rest)?;
        options.push((name, value));
    }
    Ok(options)
}

impl<'a> Repr<'a> {
    /// Parse one datagram.
    pub fn parse(bytes: &'a [u8]) -> Result<Repr<'a>, Error> {
        if bytes.len() < 2 {
            return Err(Error::Truncated);
        }
        let op = be16(bytes);
        let body = &bytes[2..];
        match op {
            opcode::RRQ | opcode::WRQ => {
                if bytes.len() > MAX_REQUEST_LEN {
                    return Err(Error::RequestTooLong(bytes.len()));
                }
                let mut rest = body;
                let filename = take_str(&mut rest)?;
                if filename.is_empty() {
                    return Err(Error::EmptyFilename);
                }
                let mode = take_str(&mut rest)?;
                let request = Request {
                    filename,
                    mode,
                    options: take_options(rest)?,
                };
                Ok(if op == opcode::RRQ {
                    Repr::Read(request)
                } else {
                    Repr::Write(request)
                })
            }
            opcode::DATA => {
                if body.len() < 2 {
                    return Err(Error::Truncated);
                }
                Ok(Repr::Data {
                    block: be16(body),
                    data: &body[2..],
                })
            }
            opcode::ACK => match body.len() {
                0 | 1 => Err(Error::Truncated),
                2 => Ok(Repr::Ack { block: be16(body) }),
                _ => Err(Error::TrailingBytes),
            },
            opcode::ERROR => {
                if body.len() < 2 {
                    return Err(Error::Truncated);
                }
                let mut rest = &body[2..];
                let message = take_str(&mut rest)?;
                if !rest.is_empty() {
                    return Err(Error::TrailingBytes);
                }
                Ok(Repr::Error {
                    code: ErrorCode::from_code(be16(body)),
                    message,
                })
            }
            opcode::OACK => Ok(Repr::OptionAck {
                options: take_options(body)?,
            }),
            other => Err(Error::UnknownOpcode(other)),
        }
    }

    /// Bytes [`Repr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        let pairs =
            |o: &[(&str, &str)]| -> usize { o.iter().map(|(n, v)| n.len() + v.len() + 2).sum() };
        2 + match self {
            Repr::Read(r) | Repr::Write(r) => {
                r.filename.len() + r.mode.len() + 2 + pairs(&r.options)
            }
            Repr::Data { data, .. } => 2 + data.len(),
            Repr::Ack { .. } => 2,
            Repr::Error { message, .. } => 2 + message.len() + 1,
            Repr::OptionAck { options } => pairs(options),
        }
    }

    /// Write the packet into `out`, which holds at least
    /// [`Repr::buffer_len`] bytes; returns the bytes written.
    pub fn emit(&self, out: &mut [u8]) -> usize {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        let pairs = |put: &mut dyn FnMut(&[u8]), options: &[(&str, &str)]| {
            for (n, v) in options {
                put(n.as_bytes());
                put(&[0]);
                put(v.as_bytes());
                put(&[0]);
            }
        };
        match self {
            Repr::Read(r) | Repr::Write(r) => {
                let op = if matches!(self, Repr::Read(_)) {
                    opcode::RRQ
                } else {
                    opcode::WRQ
                };
                put(&op.to_be_bytes());
                put(r.filename.as_bytes());
                put(&[0]);
                put(r.mode.as_bytes());
                put(&[0]);
                pairs(&mut put, &r.options);
            }
            Repr::Data { block, data } => {
                put(&opcode::DATA.to_be_bytes());
                put(&block.to_be_bytes());
                put(data);
            }
            Repr::Ack { block } => {
                put(&opcode::ACK.to_be_bytes());
                put(&block.to_be_bytes());
            }
            Repr::Error { code, message } => {
                put(&opcode::ERROR.to_be_bytes());
                put(&code.code().to_be_bytes());
                put(message.as_bytes());
                put(&[0]);
            }
            Repr::OptionAck { options } => {
                put(&opcode::OACK.to_be_bytes());
                pairs(&mut put, options);
            }
        }
        at
    }

    /// The packet as a new byte vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0; self.buffer_len()];
        let n = self.emit(&mut out);
        out.truncate(n);
        out
    }
}

/// The DATA header for `block`; the payload follows it.
pub fn data_header(block: u16) -> [u8; DATA_HEADER_LEN] {
    let [a, b] = opcode::DATA.to_be_bytes();
    let [c, d] = block.to_be_bytes();
    [a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RRQ EDK2's PXE base code (OVMF) sends for `ipxe.efi`: first a
    /// `tsize` probe, as captured in the OVMF boot test.
    const OVMF_RRQ: &[u8] = b"\x00\x01ipxe.efi\x00octet\x00tsize\x000\x00blksize\x001468\x00";

    #[test]
    fn parses_captured_requests() {
        let r = Repr::parse(OVMF_RRQ).unwrap();
        let Repr::Read(req) = &r else { panic!() };
        assert_eq!(req.filename, "ipxe.efi");
        assert_eq!(req.mode, "octet");
        assert_eq!(req.option("TSIZE"), Some("0"));
        assert_eq!(req.option("blksize"), Some("1468"));
        assert_eq!(r.to_bytes(), OVMF_RRQ);
    }

    #[test]
    fn round_trips_every_kind() {
        let all = [
            Repr::Read(Request {
                filename: "a/b",
                mode: "octet",
                options: vec![("windowsize", "16")],
            }),
            Repr::Write(Request {
                filename: "x",
                mode: "netascii",
                options: vec![],
            }),
            Repr::Data {
                block: 65535,
                data: b"hello",
            },
            Repr::Data {
                block: 0,
                data: b"",
            },
            Repr::Ack { block: 7 },
            Repr::Error {
                code: ErrorCode::FileNotFound,
                message: "no",
            },
            Repr::OptionAck {
                options: vec![("blksize", "1468"), ("tsize", "42")],
            },
        ];
        for r in all {
            let bytes = r.to_bytes();
            assert_eq!(bytes.len(), r.buffer_len());
            assert_eq!(Repr::parse(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn short_packets_for_every_opcode() {
        for op in 0u16..=7 {
            for extra in 0..=4usize {
                let mut p = op.to_be_bytes().to_vec();
                p.extend(std::iter::repeat_n(b'a', extra));
                // Never panics; most are errors.
                let _ = Repr::parse(&p);
            }
        }
        assert_eq!(Repr::parse(b""), Err(Error::Truncated));
        assert_eq!(Repr::parse(b"\x00"), Err(Error::Truncated));
        assert_eq!(Repr::parse(b"\x00\x04\x00"), Err(Error::Truncated));
        assert_eq!(
            Repr::parse(b"\x00\x04\x00\x01\x00"),
            Err(Error::TrailingBytes)
        );
        assert_eq!(Repr::parse(b"\x00\x03\x00"), Err(Error::Truncated));
        assert_eq!(Repr::parse(b"\x00\x05\x00\x01no"), Err(Error::Unterminated));
        assert_eq!(Repr::parse(b"\x00\x09"), Err(Error::UnknownOpcode(9)));
    }

    #[test]
    fn bad_strings_in_requests() {
        assert_eq!(Repr::parse(b"\x00\x01file"), Err(Error::Unterminated));
        assert_eq!(
            Repr::parse(b"\x00\x01file\x00octet"),
            Err(Error::Unterminated)
        );
        assert_eq!(
            Repr::parse(b"\x00\x01\x00octet\x00"),
            Err(Error::EmptyFilename)
        );
        assert_eq!(
            Repr::parse(b"\x00\x01f\x00octet\x00blksize\x00"),
            Err(Error::OptionWithoutValue)
        );
        assert_eq!(
            Repr::parse(b"\x00\x01f\x00octet\x00blksize\x001468"),
            Err(Error::Unterminated)
        );
        assert_eq!(
            Repr::parse(b"\x00\x01\xff\x00octet\x00"),
            Err(Error::NotUtf8)
        );
        let mut huge = b"\x00\x01".to_vec();
        huge.extend(std::iter::repeat_n(b'a', 65536));
        huge.extend_from_slice(b"\x00octet\x00");
        assert_eq!(Repr::parse(&huge), Err(Error::RequestTooLong(huge.len())));
        let mut many = b"\x00\x01f\x00octet\x00".to_vec();
        for _ in 0..1000 {
            many.extend_from_slice(b"a\x00b\x00");
        }
        many.truncate(MAX_REQUEST_LEN);
        assert!(Repr::parse(&many).is_err());
        let mut seventeen = b"\x00\x01f\x00octet\x00".to_vec();
        for _ in 0..=MAX_OPTIONS {
            seventeen.extend_from_slice(b"a\x00b\x00");
        }
        assert_eq!(Repr::parse(&seventeen), Err(Error::TooManyOptions));
    }
}
