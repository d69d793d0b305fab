//! DHCP messages: RFC 2131 §2 (format), RFC 2132 (options), RFC 3396
//! (options longer than 255 bytes), RFC 3046 (relay agent information,
//! option 82), RFC 4578 (PXE client options 93, 94, 97).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------+---------------+---------------+---------------+
//! |     op (1)    |   htype (1)   |   hlen (1)    |   hops (1)    |
//! +---------------+---------------+---------------+---------------+
//! |                            xid (4)                            |
//! +-------------------------------+-------------------------------+
//! |           secs (2)            |           flags (2)           |
//! +-------------------------------+-------------------------------+
//! |    ciaddr (4)  |  yiaddr (4)  |  siaddr (4)  |  giaddr (4)    |
//! +---------------------------------------------------------------+
//! |                          chaddr (16)                          |
//! |                          sname  (64)                          |
//! |                          file   (128)                         |
//! +---------------------------------------------------------------+
//! |  magic cookie 99.130.83.99 (4) |  options (variable)  ... END |
//! +---------------------------------------------------------------+
//! ```
//!
//! [`Packet`] is a checked view: once [`Packet::new_checked`] accepted the
//! bytes, no accessor panics. [`Repr`] is the parsed message: options
//! gathered from the options field and, when option 52 says so, from
//! `file` and `sname` (RFC 2131 §4.1 order), with repeated codes joined
//! (RFC 3396). [`Repr::emit`] into a buffer of exactly
//! [`Repr::buffer_len`] bytes never panics.

use std::{fmt, net::Ipv4Addr};

mod field {
    use std::ops::Range;
    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const HOPS: usize = 3;
    pub const XID: Range<usize> = 4..8;
    pub const SECS: Range<usize> = 8..10;
    pub const FLAGS: Range<usize> = 10..12;
    pub const CIADDR: Range<usize> = 12..16;
    pub const YIADDR: Range<usize> = 16..20;
    pub const SIADDR: Range<usize> = 20..24;
    pub const GIADDR: Range<usize> = 24..28;
    pub const CHADDR: Range<usize> = 28..44;
    pub const SNAME: Range<usize> = 44..108;
    pub const FILE: Range<usize> = 108..236;
    pub const MAGIC: Range<usize> = 236..240;
    pub const OPTIONS: usize = 240;
}

/// The magic cookie that starts the options (RFC 2131 §3).
pub const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// Bytes before the options: the BOOTP header and the magic cookie.
pub const HEADER_LEN: usize = field::OPTIONS;
/// The smallest message a BOOTP relay or client must accept (RFC 1542
/// §2.1); shorter replies are padded to this size.
pub const MIN_MESSAGE_LEN: usize = 300;
/// The largest message every client must accept (RFC 2131 §2): the IP
/// minimum datagram, 576 bytes, less the IP and UDP headers.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 576 - 28;
/// Longest `sname` content that leaves room for the terminating NUL.
pub const SNAME_MAX: usize = 63;
/// Longest `file` content that leaves room for the terminating NUL; the
/// server puts longer bootfiles only in option 67.
pub const FILE_MAX: usize = 127;
/// Broadcast bit of `flags` (RFC 2131 §2, figure 2).
pub const FLAG_BROADCAST: u16 = 0x8000;
/// Hardware type of Ethernet (RFC 1700).
pub const HTYPE_ETHERNET: u8 = 1;

/// Option codes this crate reads or writes.
pub mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS_SERVER: u8 = 6;
    pub const HOST_NAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const BROADCAST_ADDRESS: u8 = 28;
    pub const VENDOR_SPECIFIC: u8 = 43;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const VENDOR_CLASS_ID: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const TFTP_SERVER_NAME: u8 = 66;
    pub const BOOTFILE_NAME: u8 = 67;
    pub const USER_CLASS: u8 = 77;
    pub const RELAY_AGENT_INFO: u8 = 82;
    pub const CLIENT_ARCH: u8 = 93;
    pub const CLIENT_NDI: u8 = 94;
    pub const CLIENT_UUID: u8 = 97;
    pub const END: u8 = 255;
}

/// What is wrong with a datagram that claims to be DHCP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the fixed header and magic cookie.
    Truncated(usize),
    /// The magic cookie is missing (a plain BOOTP message, or garbage).
    BadMagic,
    /// `op` is neither BOOTREQUEST (1) nor BOOTREPLY (2).
    BadOp(u8),
    /// `hlen` is larger than `chaddr` (16).
    BadHlen(u8),
    /// An option's tag or length runs past the end of its field.
    OptionTruncated {
        /// The option code.
        code: u8,
        /// Offset of the option's tag within the datagram.
        offset: usize,
    },
    /// Option 52 has a length other than 1 or a value other than 1, 2, 3.
    BadOverload,
    /// Option 52 appears inside an overloaded field.
    NestedOverload,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated(len) => {
                write!(
                    f,
                    "{len} bytes is shorter than a DHCP header ({HEADER_LEN})"
                )
            }
            Error::BadMagic => f.write_str("no DHCP magic cookie"),
            Error::BadOp(op) => write!(f, "op {op} is neither request (1) nor reply (2)"),
            Error::BadHlen(h) => write!(f, "hardware address length {h} exceeds 16"),
            Error::OptionTruncated { code, offset } => {
                write!(f, "option {code} at offset {offset} runs past its field")
            }
            Error::BadOverload => f.write_str("option 52 (overload) is malformed"),
            Error::NestedOverload => f.write_str("option 52 (overload) inside an overloaded field"),
        }
    }
}

impl std::error::Error for Error {}

/// `op`: who sent the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// BOOTREQUEST, from a client.
    Request,
    /// BOOTREPLY, from a server.
    Reply,
}

/// Option 53 (RFC 2132 §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover,
    Offer,
    Request,
    Decline,
    Ack,
    Nak,
    Release,
    Inform,
    /// Any other value (e.g. the leasequery types of RFC 4388).
    Other(u8),
}

impl MessageType {
    /// The value of option 53.
    pub fn code(self) -> u8 {
        match self {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
            MessageType::Other(c) => c,
        }
    }

    /// From the value of option 53.
    pub fn from_code(code: u8) -> MessageType {
        match code {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            c => MessageType::Other(c),
        }
    }

    /// The upper-case name used in log lines (`DISCOVER`, `OFFER`, …).
    pub fn name(self) -> &'static str {
        match self {
            MessageType::Discover => "DISCOVER",
            MessageType::Offer => "OFFER",
            MessageType::Request => "REQUEST",
            MessageType::Decline => "DECLINE",
            MessageType::Ack => "ACK",
            MessageType::Nak => "NAK",
            MessageType::Release => "RELEASE",
            MessageType::Inform => "INFORM",
            MessageType::Other(_) => "OTHER",
        }
    }
}

/// A checked view over the bytes of a DHCP message.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

fn addr(b: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(b[0], b[1], b[2], b[3])
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap bytes without checking them.
    pub fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap bytes after [`Packet::check`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let p = Packet::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// Whether the fixed header is complete and carries the magic cookie,
    /// so that no accessor can panic.
    pub fn check(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated(b.len()));
        }
        if b[field::MAGIC] != MAGIC {
            return Err(Error::BadMagic);
        }
        Ok(())
    }

    /// The underlying bytes.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn op_code(&self) -> u8 {
        self.buffer.as_ref()[field::OP]
    }
    pub fn htype(&self) -> u8 {
        self.buffer.as_ref()[field::HTYPE]
    }
    pub fn hlen(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }
    pub fn hops(&self) -> u8 {
        self.buffer.as_ref()[field::HOPS]
    }
    pub fn xid(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::XID];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    pub fn secs(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::SECS];
        u16::from_be_bytes([b[0], b[1]])
    }
    pub fn flags(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::FLAGS];
        u16::from_be_bytes([b[0], b[1]])
    }
    pub fn ciaddr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::CIADDR])
    }
    pub fn yiaddr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::YIADDR])
    }
    pub fn siaddr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::SIADDR])
    }
    pub fn giaddr(&self) -> Ipv4Addr {
        addr(&self.buffer.as_ref()[field::GIADDR])
    }
    /// All 16 bytes of `chaddr`.
    pub fn chaddr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::CHADDR]
    }
    pub fn sname(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SNAME]
    }
    pub fn file(&self) -> &[u8] {
        &self.buffer.as_ref()[field::FILE]
    }
    /// The options field: everything after the magic cookie.
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }
    pub fn set_op_code(&mut self, v: u8) {
        self.bytes_mut()[field::OP] = v;
    }
    pub fn set_htype(&mut self, v: u8) {
        self.bytes_mut()[field::HTYPE] = v;
    }
    pub fn set_hlen(&mut self, v: u8) {
        self.bytes_mut()[field::HLEN] = v;
    }
    pub fn set_hops(&mut self, v: u8) {
        self.bytes_mut()[field::HOPS] = v;
    }
    pub fn set_xid(&mut self, v: u32) {
        self.bytes_mut()[field::XID].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_secs(&mut self, v: u16) {
        self.bytes_mut()[field::SECS].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_flags(&mut self, v: u16) {
        self.bytes_mut()[field::FLAGS].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_ciaddr(&mut self, v: Ipv4Addr) {
        self.bytes_mut()[field::CIADDR].copy_from_slice(&v.octets());
    }
    pub fn set_yiaddr(&mut self, v: Ipv4Addr) {
        self.bytes_mut()[field::YIADDR].copy_from_slice(&v.octets());
    }
    pub fn set_siaddr(&mut self, v: Ipv4Addr) {
        self.bytes_mut()[field::SIADDR].copy_from_slice(&v.octets());
    }
    pub fn set_giaddr(&mut self, v: Ipv4Addr) {
        self.bytes_mut()[field::GIADDR].copy_from_slice(&v.octets());
    }
    pub fn set_chaddr(&mut self, v: &[u8; 16]) {
        self.bytes_mut()[field::CHADDR].copy_from_slice(v);
    }
    /// Write `v` NUL-padded into `sname` (64 bytes; longer is cut). A
    /// value that fills the field has no NUL, as a peer may have sent it.
    pub fn set_sname(&mut self, v: &[u8]) {
        let f = &mut self.bytes_mut()[field::SNAME];
        f.fill(0);
        let n = v.len().min(f.len());
        f[..n].copy_from_slice(&v[..n]);
    }
    /// Write `v` NUL-padded into `file` (128 bytes; longer is cut).
    pub fn set_file(&mut self, v: &[u8]) {
        let f = &mut self.bytes_mut()[field::FILE];
        f.fill(0);
        let n = v.len().min(f.len());
        f[..n].copy_from_slice(&v[..n]);
    }
    pub fn set_magic(&mut self) {
        self.bytes_mut()[field::MAGIC].copy_from_slice(&MAGIC);
    }
    pub fn options_mut(&mut self) -> &mut [u8] {
        &mut self.bytes_mut()[field::OPTIONS..]
    }
}

/// Iterate the options of one field: `(code, value, offset of the tag)`.
/// PAD is skipped, END stops; the end of the field without END also stops
/// (many clients omit it when the field is full).
#[derive(Debug)]
pub struct OptionIter<'a> {
    bytes: &'a [u8],
    at: usize,
    base: usize,
    done: bool,
}

impl<'a> OptionIter<'a> {
    /// Options in `bytes`, which start at `base` within the datagram (for
    /// error offsets).
    pub fn new(bytes: &'a [u8], base: usize) -> Self {
        OptionIter {
            bytes,
            at: 0,
            base,
            done: false,
        }
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<(u8, &'a [u8], usize), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let Some(&code) = self.bytes.get(self.at) else {
                self.done = true;
                return None;
            };
            let offset = self.base + self.at;
            match code {
                opt::PAD => self.at += 1,
                opt::END => {
                    self.done = true;
                    return None;
                }
                _ => {
                    let Some(&len) = self.bytes.get(self.at + 1) else {
                        self.done = true;
                        return Some(Err(Error::OptionTruncated { code, offset }));
                    };
                    let start = self.at + 2;
                    let end = start + usize::from(len);
                    let Some(value) = self.bytes.get(start..end) else {
                        self.done = true;
                        return Some(Err(Error::OptionTruncated { code, offset }));
                    };
                    self.at = end;
                    return Some(Ok((code, value, offset)));
                }
            }
        }
        None
    }
}

/// The options of a message, in first-seen order, one entry per code
/// (repeated codes joined, RFC 3396 §7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    list: Vec<(u8, Vec<u8>)>,
}

impl Options {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `code`.
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.list
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    /// Set `code` to `value`, replacing any earlier value.
    pub fn set(&mut self, code: u8, value: impl Into<Vec<u8>>) {
        let value = value.into();
        match self.list.iter_mut().find(|(c, _)| *c == code) {
            Some(slot) => slot.1 = value,
            None => self.list.push((code, value)),
        }
    }

    /// Append `more` to the value of `code` (RFC 3396 concatenation).
    fn append(&mut self, code: u8, more: &[u8]) {
        match self.list.iter_mut().find(|(c, _)| *c == code) {
            Some(slot) => slot.1.extend_from_slice(more),
            None => self.list.push((code, more.to_vec())),
        }
    }

    /// Remove `code`.
    pub fn remove(&mut self, code: u8) {
        self.list.retain(|(c, _)| *c != code);
    }

    /// Every option in order.
    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.list.iter().map(|(c, v)| (*c, v.as_slice()))
    }

    /// How many distinct codes.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn exact<const N: usize>(&self, code: u8) -> Option<[u8; N]> {
        self.get(code).and_then(|v| v.try_into().ok())
    }

    /// Option 53, if it is exactly one byte.
    pub fn message_type(&self) -> Option<MessageType> {
        self.exact::<1>(opt::MESSAGE_TYPE)
            .map(|[c]| MessageType::from_code(c))
    }

    /// Option 50, if it is exactly four bytes.
    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        self.exact::<4>(opt::REQUESTED_IP).map(Ipv4Addr::from)
    }

    /// Option 54, if it is exactly four bytes.
    pub fn server_id(&self) -> Option<Ipv4Addr> {
        self.exact::<4>(opt::SERVER_ID).map(Ipv4Addr::from)
    }

    /// Option 57, if it is two bytes and at least the RFC minimum (576).
    pub fn max_message_size(&self) -> Option<u16> {
        self.exact::<2>(opt::MAX_MESSAGE_SIZE)
            .map(u16::from_be_bytes)
            .filter(|&n| n >= 576)
    }

    /// Option 61, if it has the RFC 2132 §9.14 minimum length of 2.
    pub fn client_id(&self) -> Option<&[u8]> {
        self.get(opt::CLIENT_ID).filter(|v| v.len() >= 2)
    }

    /// Option 60, the vendor class identifier.
    pub fn vendor_class(&self) -> Option<&[u8]> {
        self.get(opt::VENDOR_CLASS_ID)
    }

    /// Option 93 (RFC 4578 §2.1): the client's architecture types, if the
    /// length is a non-zero multiple of two.
    pub fn client_arch(&self) -> Option<Vec<u16>> {
        let v = self.get(opt::CLIENT_ARCH)?;
        if v.is_empty() || v.len() % 2 != 0 {
            return None;
        }
        Some(
            v.chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect(),
        )
    }

    /// Option 97 (RFC 4578 §2.3), if it is 17 bytes with type 0.
    pub fn client_uuid(&self) -> Option<&[u8]> {
        self.get(opt::CLIENT_UUID)
            .filter(|v| v.len() == 17 && v[0] == 0)
    }

    /// Whether option 77 names `class`: either as the whole value (what
    /// iPXE sends, e.g. `iPXE`) or as one of the RFC 3004 length-prefixed
    /// instances.
    pub fn has_user_class(&self, class: &[u8]) -> bool {
        let Some(v) = self.get(opt::USER_CLASS) else {
            return false;
        };
        if v.starts_with(class) {
            return true;
        }
        let mut rest = v;
        while let Some((&len, tail)) = rest.split_first() {
            let len = usize::from(len);
            let Some(item) = tail.get(..len) else {
                return false;
            };
            if item.starts_with(class) {
                return true;
            }
            rest = &tail[len..];
        }
        false
    }

    /// Option 12, the client's host name, if it is printable ASCII.
    pub fn host_name(&self) -> Option<&str> {
        let v = self.get(opt::HOST_NAME)?;
        std::str::from_utf8(v)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()))
    }

    /// Bytes these options take on the wire, long ones split into
    /// 255-byte instances (RFC 3396 §5); END not included.
    pub fn wire_len(&self) -> usize {
        self.list
            .iter()
            .map(|(_, v)| {
                let chunks = v.len().div_ceil(255).max(1);
                chunks * 2 + v.len()
            })
            .sum()
    }

    /// Write the options followed by END into `out`, which must hold
    /// [`Options::wire_len`] + 1 bytes; returns the bytes written.
    fn emit(&self, out: &mut [u8]) -> usize {
        let mut at = 0;
        for (code, value) in &self.list {
            let mut chunks = value.chunks(255).peekable();
            if chunks.peek().is_none() {
                out[at] = *code;
                out[at + 1] = 0;
                at += 2;
            }
            for chunk in chunks {
                out[at] = *code;
                out[at + 1] = chunk.len() as u8;
                out[at + 2..at + 2 + chunk.len()].copy_from_slice(chunk);
                at += 2 + chunk.len();
            }
        }
        out[at] = opt::END;
        at + 1
    }
}

/// A parsed DHCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr {
    pub op: Op,
    pub htype: u8,
    pub hlen: u8,
    pub hops: u8,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: [u8; 16],
    /// `sname` up to its first NUL; empty when it carries options.
    pub sname: Vec<u8>,
    /// `file` up to its first NUL; empty when it carries options.
    pub file: Vec<u8>,
    pub options: Options,
}

fn until_nul(b: &[u8]) -> Vec<u8> {
    b.split(|&c| c == 0).next().unwrap_or_default().to_vec()
}

impl Repr {
    /// Parse a checked packet.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, Error> {
        let op = match packet.op_code() {
            1 => Op::Request,
            2 => Op::Reply,
            other => return Err(Error::BadOp(other)),
        };
        let hlen = packet.hlen();
        if usize::from(hlen) > field::CHADDR.len() {
            return Err(Error::BadHlen(hlen));
        }
        let mut options = Options::new();
        let mut overload = None;
        for item in OptionIter::new(packet.options(), field::OPTIONS) {
            let (code, value, _) = item?;
            if code == opt::OVERLOAD {
                match value {
                    [v @ 1..=3] if overload.is_none() => overload = Some(*v),
                    _ => return Err(Error::BadOverload),
                }
                continue;
            }
            options.append(code, value);
        }
        // RFC 2131 §4.1: `file` is read before `sname`.
        let uses_file = overload.is_some_and(|o| o & 1 != 0);
        let uses_sname = overload.is_some_and(|o| o & 2 != 0);
        let fields = [
            (uses_file, packet.file(), field::FILE.start),
            (uses_sname, packet.sname(), field::SNAME.start),
        ];
        for (used, bytes, base) in fields {
            if !used {
                continue;
            }
            for item in OptionIter::new(bytes, base) {
                let (code, value, _) = item?;
                if code == opt::OVERLOAD {
                    return Err(Error::NestedOverload);
                }
                options.append(code, value);
            }
        }
        let mut chaddr = [0; 16];
        chaddr.copy_from_slice(packet.chaddr());
        Ok(Repr {
            op,
            htype: packet.htype(),
            hlen,
            hops: packet.hops(),
            xid: packet.xid(),
            secs: packet.secs(),
            flags: packet.flags(),
            ciaddr: packet.ciaddr(),
            yiaddr: packet.yiaddr(),
            siaddr: packet.siaddr(),
            giaddr: packet.giaddr(),
            chaddr,
            sname: if uses_sname {
                Vec::new()
            } else {
                until_nul(packet.sname())
            },
            file: if uses_file {
                Vec::new()
            } else {
                until_nul(packet.file())
            },
            options,
        })
    }

    /// Parse bytes: [`Packet::new_checked`] then [`Repr::parse`].
    pub fn parse_bytes(bytes: &[u8]) -> Result<Repr, Error> {
        Repr::parse(&Packet::new_checked(bytes)?)
    }

    /// The client's hardware address: the first `hlen` bytes of `chaddr`.
    pub fn hardware_address(&self) -> &[u8] {
        &self.chaddr[..usize::from(self.hlen).min(16)]
    }

    /// Option 53.
    pub fn message_type(&self) -> Option<MessageType> {
        self.options.message_type()
    }

    /// Whether the client asked for broadcast replies.
    pub fn broadcast(&self) -> bool {
        self.flags & FLAG_BROADCAST != 0
    }

    /// Bytes [`Repr::emit`] writes: header, options, END, padded to
    /// [`MIN_MESSAGE_LEN`]. `sname` and `file` are written into their
    /// fields (cut to 64 and 128 bytes); options never overload them.
    pub fn buffer_len(&self) -> usize {
        (HEADER_LEN + self.options.wire_len() + 1).max(MIN_MESSAGE_LEN)
    }

    /// Write the message into `packet`, whose buffer must hold exactly
    /// [`Repr::buffer_len`] bytes (longer buffers are zero-filled after
    /// the options).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.buffer.as_mut().fill(0);
        packet.set_op_code(match self.op {
            Op::Request => 1,
            Op::Reply => 2,
        });
        packet.set_htype(self.htype);
        packet.set_hlen(self.hlen);
        packet.set_hops(self.hops);
        packet.set_xid(self.xid);
        packet.set_secs(self.secs);
        packet.set_flags(self.flags);
        packet.set_ciaddr(self.ciaddr);
        packet.set_yiaddr(self.yiaddr);
        packet.set_siaddr(self.siaddr);
        packet.set_giaddr(self.giaddr);
        packet.set_chaddr(&self.chaddr);
        packet.set_sname(&self.sname);
        packet.set_file(&self.file);
        packet.set_magic();
        self.options.emit(packet.options_mut());
    }

    /// The message as a new byte vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = vec![0; self.buffer_len()];
        self.emit(&mut Packet::new_unchecked(&mut buf[..]));
        buf
    }
}

/// `aa:bb:cc:dd:ee:ff` for a hardware address.
pub fn format_mac(hw: &[u8]) -> String {
    let mut s = String::with_capacity(hw.len() * 3);
    for (i, b) in hw.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DHCPDISCOVER captured from OVMF (EDK2 PXE base code, QEMU
    /// virtio-net, `romfile=`), sent to our server in the OVMF boot test.
    /// Options: 53 DISCOVER, 57 max size 1464, 55 request list, 97 UUID,
    /// 94 UNDI 3.16, 93 arch 7 (EFI BC), 60 `PXEClient:Arch:00007:UNDI:003000`.
    pub(crate) const OVMF_DISCOVER: &[u8] = include_bytes!("testdata/ovmf-discover.bin");
    /// A DHCPDISCOVER captured from QEMU's iPXE ROM under SeaBIOS: option 77
    /// `iPXE`, option 93 arch 0, option 175 iPXE encapsulated options.
    pub(crate) const IPXE_BIOS_DISCOVER: &[u8] = include_bytes!("testdata/ipxe-bios-discover.bin");
    /// A DHCPDISCOVER captured from Debian's `ipxe.efi` chainloaded by OVMF
    /// (option 77 `iPXE`, option 93 arch 7).
    pub(crate) const IPXE_EFI_DISCOVER: &[u8] = include_bytes!("testdata/ipxe-efi-discover.bin");
    /// A DHCPDISCOVER captured from busybox udhcpc 1.35.
    pub(crate) const UDHCPC_DISCOVER: &[u8] = include_bytes!("testdata/udhcpc-discover.bin");

    fn discover() -> Repr {
        let mut options = Options::new();
        options.set(opt::MESSAGE_TYPE, [1]);
        options.set(opt::CLIENT_ARCH, [0, 7]);
        options.set(
            opt::VENDOR_CLASS_ID,
            b"PXEClient:Arch:00007:UNDI:003000".to_vec(),
        );
        let mut chaddr = [0; 16];
        chaddr[..6].copy_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        Repr {
            op: Op::Request,
            htype: 1,
            hlen: 6,
            hops: 0,
            xid: 0xdead_beef,
            secs: 4,
            flags: FLAG_BROADCAST,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            sname: Vec::new(),
            file: Vec::new(),
            options,
        }
    }

    #[test]
    fn emit_parse_round_trip() {
        let repr = discover();
        let bytes = repr.to_bytes();
        assert_eq!(bytes.len(), MIN_MESSAGE_LEN);
        let back = Repr::parse_bytes(&bytes).unwrap();
        assert_eq!(back, repr);
        assert_eq!(back.message_type(), Some(MessageType::Discover));
        assert_eq!(back.options.client_arch(), Some(vec![7]));
        assert_eq!(format_mac(back.hardware_address()), "52:54:00:12:34:56");
    }

    #[test]
    fn long_options_split_and_join_rfc3396() {
        let mut repr = discover();
        let long: Vec<u8> = (0..600u32).map(|i| i as u8).collect();
        repr.options.set(opt::VENDOR_SPECIFIC, long.clone());
        repr.options.set(opt::HOST_NAME, Vec::new());
        let bytes = repr.to_bytes();
        assert_eq!(bytes.len(), repr.buffer_len());
        let back = Repr::parse_bytes(&bytes).unwrap();
        assert_eq!(back.options.get(opt::VENDOR_SPECIFIC), Some(&long[..]));
        assert_eq!(back.options.get(opt::HOST_NAME), Some(&[][..]));
        assert_eq!(back, repr);
    }

    #[test]
    fn captured_client_packets_parse_and_round_trip() {
        for (name, bytes, arch, ipxe) in [
            ("ovmf", OVMF_DISCOVER, Some(vec![7]), false),
            ("ipxe-bios", IPXE_BIOS_DISCOVER, Some(vec![0]), true),
            ("ipxe-efi", IPXE_EFI_DISCOVER, Some(vec![7]), true),
            ("udhcpc", UDHCPC_DISCOVER, None, false),
        ] {
            let repr = Repr::parse_bytes(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(repr.op, Op::Request, "{name}");
            assert_eq!(repr.message_type(), Some(MessageType::Discover), "{name}");
            assert_eq!(repr.options.client_arch(), arch, "{name}");
            assert_eq!(repr.options.has_user_class(b"iPXE"), ipxe, "{name}");
            let again = Repr::parse_bytes(&repr.to_bytes()).unwrap();
            assert_eq!(again, repr, "{name}");
        }
        let ovmf = Repr::parse_bytes(OVMF_DISCOVER).unwrap();
        assert!(ovmf.options.client_uuid().is_some());
        assert!(
            ovmf.options
                .vendor_class()
                .unwrap()
                .starts_with(b"PXEClient")
        );
    }

    #[test]
    fn overload_pulls_options_from_file_then_sname() {
        let repr = discover();
        let mut bytes = repr.to_bytes();
        // Put option 52 = 3 in the options field, option 12 in `file` and
        // option 15 in `sname`.
        let opts = HEADER_LEN;
        bytes[opts..opts + 4].copy_from_slice(&[opt::OVERLOAD, 1, 3, opt::MESSAGE_TYPE]);
        bytes[opts + 4..opts + 6].copy_from_slice(&[1, 1]);
        bytes[opts + 6] = opt::END;
        bytes[field::FILE.start..field::FILE.start + 5].copy_from_slice(&[12, 2, b'h', b'i', 255]);
        bytes[field::SNAME.start..field::SNAME.start + 5]
            .copy_from_slice(&[15, 2, b'l', b'n', 255]);
        let back = Repr::parse_bytes(&bytes).unwrap();
        assert_eq!(back.options.get(12), Some(&b"hi"[..]));
        assert_eq!(back.options.get(15), Some(&b"ln"[..]));
        assert!(back.file.is_empty() && back.sname.is_empty());
        let order: Vec<u8> = back.options.iter().map(|(c, _)| c).collect();
        assert_eq!(order, [53, 12, 15], "file is read before sname");

        // Overload inside an overloaded field, or with a bad value.
        bytes[field::FILE.start..field::FILE.start + 4].copy_from_slice(&[52, 1, 1, 255]);
        assert_eq!(Repr::parse_bytes(&bytes), Err(Error::NestedOverload));
        bytes[opts + 2] = 4;
        assert_eq!(Repr::parse_bytes(&bytes), Err(Error::BadOverload));
    }

    #[test]
    fn truncations_and_lies_are_errors_never_panics() {
        let bytes = discover().to_bytes();
        for len in 0..HEADER_LEN {
            assert_eq!(Repr::parse_bytes(&bytes[..len]), Err(Error::Truncated(len)));
        }
        let mut no_magic = bytes.clone();
        no_magic[236] = 0;
        assert_eq!(Repr::parse_bytes(&no_magic), Err(Error::BadMagic));
        // A tag as the last byte, with no length.
        let mut tail = bytes[..HEADER_LEN].to_vec();
        tail.push(opt::HOST_NAME);
        assert!(matches!(
            Repr::parse_bytes(&tail),
            Err(Error::OptionTruncated {
                code: 12,
                offset: 240
            })
        ));
        // Every option code with a length running past the end.
        for code in 1..=254u8 {
            let mut lie = bytes[..HEADER_LEN].to_vec();
            lie.extend_from_slice(&[code, 255, 1, 2, 3]);
            assert!(Repr::parse_bytes(&lie).is_err(), "code {code}");
        }
        // No END option: the end of the datagram ends the options.
        let mut no_end = bytes[..HEADER_LEN].to_vec();
        no_end.extend_from_slice(&[opt::MESSAGE_TYPE, 1, 1]);
        assert_eq!(
            Repr::parse_bytes(&no_end).unwrap().message_type(),
            Some(MessageType::Discover)
        );
        let mut bad_hlen = bytes.clone();
        bad_hlen[2] = 17;
        assert_eq!(Repr::parse_bytes(&bad_hlen), Err(Error::BadHlen(17)));
    }

    #[test]
    fn full_sname_and_file_without_nul_round_trip() {
        // Found by the fuzzer: a 64-byte sname with no terminator was cut to
        // 63 bytes on emit.
        let mut bytes = discover().to_bytes();
        bytes[field::SNAME].fill(b's');
        bytes[field::FILE].fill(b'f');
        let repr = Repr::parse_bytes(&bytes).unwrap();
        assert_eq!((repr.sname.len(), repr.file.len()), (64, 128));
        assert_eq!(Repr::parse_bytes(&repr.to_bytes()).unwrap(), repr);
    }

    #[test]
    fn typed_accessors_reject_wrong_lengths() {
        let mut o = Options::new();
        for (code, bad) in [
            (opt::MESSAGE_TYPE, vec![]),
            (opt::MESSAGE_TYPE, vec![1, 1]),
            (opt::REQUESTED_IP, vec![1, 2, 3]),
            (opt::SERVER_ID, vec![1, 2, 3, 4, 5]),
            (opt::MAX_MESSAGE_SIZE, vec![0, 200]),
            (opt::CLIENT_ID, vec![1]),
            (opt::CLIENT_ARCH, vec![0]),
            (opt::CLIENT_ARCH, vec![]),
            (opt::CLIENT_UUID, vec![0; 16]),
            (opt::CLIENT_UUID, vec![1; 17]),
        ] {
            o.set(code, bad);
        }
        assert_eq!(o.message_type(), None);
        assert_eq!(o.requested_ip(), None);
        assert_eq!(o.server_id(), None);
        assert_eq!(o.max_message_size(), None);
        assert_eq!(o.client_id(), None);
        assert_eq!(o.client_arch(), None);
        assert_eq!(o.client_uuid(), None);
    }

    #[test]
    fn user_class_forms() {
        let mut o = Options::new();
        o.set(opt::USER_CLASS, b"iPXE".to_vec());
        assert!(o.has_user_class(b"iPXE"));
        o.set(
            opt::USER_CLASS,
            [3, b'f', b'o', b'o', 4, b'i', b'P', b'X', b'E'].to_vec(),
        );
        assert!(o.has_user_class(b"iPXE"));
        o.set(opt::USER_CLASS, [9, b'i'].to_vec());
        assert!(!o.has_user_class(b"iPXE"));
        o.set(opt::USER_CLASS, Vec::new());
        assert!(!o.has_user_class(b"iPXE"));
    }
}
