//! The lease file: bound and released leases, so a target keeps its address
//! across server restarts. One lease per line, replaced atomically; the
//! leases of every subnet share the file, each going back to the pool its
//! address belongs to (a file written for one subnet loads unchanged):
//!
//! ```text
//! # ze dhcpserver leases v1: <ip> <client key, hex> <expires, UNIX seconds> <bound|released>
//! 192.0.2.2 01525400123456 1764100000 bound
//! ```

use super::{
    pool::{ClientKey, Lease, LeasePool, LeaseState},
    server::DhcpServer,
};
use std::{fmt::Write as _, net::Ipv4Addr};

/// The first line of every lease file.
pub const HEADER: &str =
    "# ze dhcpserver leases v1: <ip> <client key, hex> <expires, UNIX seconds> <bound|released>";

/// The lease file text for `pools` (offers are not written).
pub fn render<'a>(pools: impl Iterator<Item = &'a LeasePool>) -> String {
    let mut rows: Vec<(&ClientKey, &Lease)> = pools
        .flat_map(LeasePool::leases)
        .filter(|(_, l)| l.state != LeaseState::Offered)
        .collect();
    rows.sort_by_key(|(_, l)| u32::from(l.ip));
    let mut out = String::with_capacity(HEADER.len() + 1 + rows.len() * 48);
    out.push_str(HEADER);
    out.push('\n');
    for (key, lease) in rows {
        let _ = write!(out, "{} ", lease.ip);
        out.push_str(&crate::digest::hex(key));
        let state = if lease.state == LeaseState::Bound {
            "bound"
        } else {
            "released"
        };
        let _ = writeln!(out, " {} {state}", lease.expires);
    }
    out
}

/// Give each lease to the pool of `server` its address belongs to;
/// returns how many were taken (leases in no pool, or clashing with one
/// already restored, are skipped).
pub fn restore(server: &mut DhcpServer, leases: Vec<(ClientKey, Lease)>) -> usize {
    leases
        .into_iter()
        .filter(|(key, lease)| {
            server
                .pool_for(lease.ip)
                .is_some_and(|pool| pool.restore(key.clone(), *lease))
        })
        .count()
}

/// One lease file line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub why: &'static str,
}

/// Parse lease file text; returns the leases and the lines skipped.
pub fn parse(text: &str) -> (Vec<(ClientKey, Lease)>, Vec<BadLine>) {
    let mut leases = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok(l) => leases.push(l),
            Err(why) => bad.push(BadLine { line: line_no, why }),
        }
    }
    (leases, bad)
}

fn parse_line(line: &str) -> Result<(ClientKey, Lease), &'static str> {
    let mut parts = line.split_ascii_whitespace();
    let (Some(ip), Some(key), Some(expires), Some(state), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err("expected four fields");
    };
    let ip: Ipv4Addr = ip.parse().map_err(|_| "bad address")?;
    if key.is_empty() || key.len() % 2 != 0 || key.len() > 2 * 255 {
        return Err("bad client key");
    }
    let key = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&key[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| "bad client key")?;
    let expires: u64 = expires.parse().map_err(|_| "bad expiry")?;
    let state = match state {
        "bound" => LeaseState::Bound,
        "released" => LeaseState::Released,
        _ => return Err("bad state"),
    };
    Ok((key, Lease { ip, expires, state }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_lines() {
        let mut pool = LeasePool::new(
            "10.0.0.2".parse().unwrap(),
            "10.0.0.9".parse().unwrap(),
            &[],
            16,
        );
        let a = pool.offer(&[1, 0x52, 0x54, 0, 1, 2, 3], None, 100).unwrap();
        pool.commit(&[1, 0x52, 0x54, 0, 1, 2, 3], a, 100, 3600)
            .unwrap();
        let b = pool.offer(b"b", None, 100).unwrap();
        pool.commit(b"b", b, 100, 60).unwrap();
        pool.release(b"b", b, 120);
        pool.offer(b"offered-only", None, 100).unwrap();
        let text = render(std::iter::once(&pool));
        assert_eq!(
            text,
            format!("{HEADER}\n10.0.0.2 01525400010203 3700 bound\n10.0.0.3 62 120 released\n")
        );
        let (leases, bad) = parse(&format!(
            "{text}garbage\n10.0.0.4 zz 1 bound\n10.0.0.5 0102 x bound\n10.0.0.6 0102 1 odd\n"
        ));
        assert_eq!(leases.len(), 2);
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [4, 5, 6, 7]);
        let mut back = LeasePool::new(
            "10.0.0.2".parse().unwrap(),
            "10.0.0.9".parse().unwrap(),
            &[],
            16,
        );
        for (k, l) in leases {
            assert!(back.restore(k, l));
        }
        assert_eq!(back.offer(b"b", None, 130), Some(b));
    }

    #[test]
    fn n2_one_file_for_every_subnet_and_old_files_still_load() {
        use crate::provision::dhcp::server::{Mode, ServerSettings, Subnet};
        let subnet = |net: &str, first: &str, last: &str| Subnet {
            net: net.parse().unwrap(),
            routers: vec![],
            dns_servers: vec![],
            domain: None,
            pool: LeasePool::new(first.parse().unwrap(), last.parse().unwrap(), &[], 16),
        };
        let server = || {
            DhcpServer::new(
                ServerSettings {
                    address: "192.0.2.1".parse().unwrap(),
                    lease_secs: 600,
                    pxe: None,
                },
                Mode::Full(vec![
                    subnet("192.0.2.0/24", "192.0.2.2", "192.0.2.9"),
                    subnet("198.51.100.0/24", "198.51.100.10", "198.51.100.19"),
                ]),
            )
        };
        // A file a one-subnet server wrote (the v1 format, unchanged).
        let old =
            format!("{HEADER}\n192.0.2.2 01525400010203 3700 bound\n192.0.2.3 62 120 released\n");
        let mut s = server();
        let (leases, bad) = parse(&old);
        assert!(bad.is_empty());
        assert_eq!(restore(&mut s, leases), 2);
        // The same client leases on the relayed subnet too; both lines are
        // written, and go back to their own pools.
        let key = [1, 0x52, 0x54, 0, 1, 2, 3];
        let ip: Ipv4Addr = "198.51.100.10".parse().unwrap();
        let pool = s.pool_for(ip).unwrap();
        assert_eq!(pool.offer(&key, None, 100), Some(ip));
        pool.commit(&key, ip, 100, 600).unwrap();
        let text = render(s.pools());
        assert_eq!(
            text,
            format!("{old}198.51.100.10 01525400010203 700 bound\n")
        );
        let mut back = server();
        let (leases, _) = parse(&text);
        // A line for an address in no subnet is skipped.
        let mut leases = leases;
        leases.push((
            b"x".to_vec(),
            Lease {
                ip: "203.0.113.5".parse().unwrap(),
                expires: 9,
                state: LeaseState::Bound,
            },
        ));
        assert_eq!(restore(&mut back, leases), 3);
        assert_eq!(render(back.pools()), text);
    }
}
