//! IPv4 + UDP framing for DHCP over a raw packet socket (RFC 791, RFC 768),
//! with smoltcp's wire types.
//!
//! ```text
//! 0        20       28
//! | IPv4   | UDP    | payload (a DHCP message) |
//! ```
//!
//! The link layer (ethernet header) is added and removed by the kernel
//! (AF_PACKET, `SOCK_DGRAM`).

use core::net::Ipv4Addr;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket};

/// Bytes of IPv4 + UDP header in front of the payload.
pub const HEADERS: usize = 28;
/// Time to live of the packets we send.
pub const TTL: u8 = 64;

/// A received UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// IPv4 source.
    pub src: Ipv4Addr,
    /// IPv4 destination.
    pub dst: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// UDP payload.
    pub payload: &'a [u8],
}

/// Put IPv4 and UDP headers in front of the `len`-byte payload that is
/// already at `buf[HEADERS..]`; returns the whole packet.
pub fn wrap(
    buf: &mut [u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    src_port: u16,
    dst_port: u16,
    len: usize,
) -> Option<&[u8]> {
    let total = HEADERS.checked_add(len)?;
    let packet = buf.get_mut(..total)?;
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Udp,
        payload_len: 8 + len,
        hop_limit: TTL,
    };
    let caps = ChecksumCapabilities::default();
    let (ip_bytes, udp_bytes) = packet.split_at_mut(20);
    ip.emit(&mut Ipv4Packet::new_unchecked(&mut *ip_bytes), &caps);
    let mut u = UdpPacket::new_unchecked(&mut *udp_bytes);
    u.set_src_port(src_port);
    u.set_dst_port(dst_port);
    u.set_len(u16::try_from(8 + len).ok()?);
    u.set_checksum(0);
    u.fill_checksum(&src.into(), &dst.into());
    Some(packet)
}

/// Parse an IPv4/UDP packet; `None` for anything else (other protocols,
/// fragments, bad checksums, lengths that disagree).
pub fn unwrap(packet: &[u8]) -> Option<Datagram<'_>> {
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    if ip.version() != 4 || !ip.verify_checksum() || ip.next_header() != IpProtocol::Udp {
        return None;
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        return None;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let header_len = usize::from(ip.header_len());
    let total = usize::from(ip.total_len());
    let udp_bytes = packet.get(header_len..total)?;
    let udp = UdpPacket::new_checked(udp_bytes).ok()?;
    if !udp.verify_checksum(&src.into(), &dst.into())
        && udp.checksum() != pseudo_header_sum(src, dst, udp.len())
    {
        return None;
    }
    let len = usize::from(udp.len());
    Some(Datagram {
        src,
        dst,
        src_port: udp.src_port(),
        dst_port: udp.dst_port(),
        payload: udp_bytes.get(8..len)?,
    })
}

/// The folded, uncomplemented sum of the UDP pseudo-header (RFC 768).
///
/// A packet the kernel sends with checksum offload (`CHECKSUM_PARTIAL`)
/// carries only this sum in its checksum field until the NIC fills in
/// the rest. A packet socket sees such packets when the sender is on the
/// same machine (a veth pair, a bridge to a local DHCP server), before any
/// NIC touched them. The kernel marks them `TP_STATUS_CSUMNOTREADY` in
/// `PACKET_AUXDATA`, which rustix cannot read; the field holding exactly
/// this value is the same sign. Packets from the wire carry a complete
/// checksum and are verified as usual.
fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> u16 {
    let words = |a: Ipv4Addr| {
        let o = a.octets();
        u32::from(u16::from_be_bytes([o[0], o[1]])) + u32::from(u16::from_be_bytes([o[2], o[3]]))
    };
    let mut sum =
        words(src) + words(dst) + u32::from(u8::from(IpProtocol::Udp)) + u32::from(udp_len);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_then_unwrap() {
        let mut buf = [0u8; 128];
        buf[HEADERS..HEADERS + 5].copy_from_slice(b"hello");
        let src = Ipv4Addr::UNSPECIFIED;
        let dst = Ipv4Addr::BROADCAST;
        let pkt = wrap(&mut buf, src, dst, 68, 67, 5).unwrap().to_vec();
        assert_eq!(pkt.len(), 33);
        let d = unwrap(&pkt).unwrap();
        assert_eq!(
            d,
            Datagram {
                src,
                dst,
                src_port: 68,
                dst_port: 67,
                payload: b"hello"
            }
        );
    }

    #[test]
    fn offload_partial_checksum_from_a_local_veth_is_accepted_and_nothing_else() {
        // An OFFER from ze's dhcpserver across a veth pair, captured with
        // tcpdump: its UDP checksum field holds the pseudo-header sum.
        let pkt = include_bytes!("../testdata/dhcp/veth-offer-partial-csum-ipv4.bin");
        let d = unwrap(pkt).expect("a CHECKSUM_PARTIAL packet is accepted");
        assert_eq!((d.src_port, d.dst_port), (67, 68));
        // Any other wrong checksum is still refused.
        let mut bad = pkt.to_vec();
        bad[26] ^= 0x01;
        assert!(unwrap(&bad).is_none());
        // And a payload changed under a complete checksum is refused too.
        let mut buf = [0u8; 128];
        buf[HEADERS..HEADERS + 5].copy_from_slice(b"hello");
        let mut good = wrap(
            &mut buf,
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::BROADCAST,
            67,
            68,
            5,
        )
        .unwrap()
        .to_vec();
        good[HEADERS] ^= 0x20;
        assert!(unwrap(&good).is_none());
    }

    #[test]
    fn captured_slirp_offer_unwraps() {
        let pkt = include_bytes!("../testdata/dhcp/slirp-offer-ipv4.bin");
        let d = unwrap(pkt).unwrap();
        assert_eq!((d.src_port, d.dst_port), (67, 68));
        assert_eq!(d.src, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(
            d.payload,
            &include_bytes!("../testdata/dhcp/slirp-offer.bin")[..]
        );
    }

    #[test]
    fn corrupt_or_foreign_packets_are_dropped() {
        let mut buf = [0u8; 128];
        buf[HEADERS..HEADERS + 4].copy_from_slice(b"data");
        let pkt = wrap(
            &mut buf,
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::BROADCAST,
            67,
            68,
            4,
        )
        .unwrap()
        .to_vec();
        assert!(unwrap(&pkt).is_some());
        // Every truncation fails cleanly.
        for n in 0..pkt.len() {
            assert!(unwrap(&pkt[..n]).is_none(), "truncated to {n}");
        }
        // A flipped bit in the IP header or the payload.
        let mut bad = pkt.clone();
        bad[8] ^= 1;
        assert!(unwrap(&bad).is_none());
        let mut bad = pkt.clone();
        bad[30] ^= 1;
        assert!(unwrap(&bad).is_none());
        // UDP length longer than the IP payload.
        let mut bad = pkt.clone();
        bad[24..26].copy_from_slice(&200u16.to_be_bytes());
        assert!(unwrap(&bad).is_none());
        // Too small a buffer to wrap into.
        assert!(
            wrap(
                &mut [0u8; 20],
                Ipv4Addr::UNSPECIFIED,
                Ipv4Addr::BROADCAST,
                1,
                2,
                0
            )
            .is_none()
        );
    }
}
