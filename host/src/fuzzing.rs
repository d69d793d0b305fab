//! Entry points shared by the `cargo fuzz` targets (`fuzz/fuzz_targets/`)
//! and the corpus replay test (`host/tests/fuzz_corpus.rs`): each feeds
//! arbitrary bytes to one parser and checks the properties that must hold
//! for every input — no panic, and parse → emit → parse gives the same.

use crate::{
    config::brace,
    daemon::Daemon,
    plugins::PLUGINS,
    provision::{
        dhcp::{
            pool::LeasePool,
            server::{DhcpServer, Mode, PxeSettings, ServerSettings, Subnet},
        },
        tftp::transfer::{self, Limits},
    },
    wire::{dhcp, http, tftp},
};
use std::net::{Ipv4Addr, SocketAddrV4};

/// DHCP: the wire parser, the emitter, and the server's decisions.
pub fn dhcp(data: &[u8]) {
    let Ok(repr) = dhcp::Repr::parse_bytes(data) else {
        return;
    };
    let bytes = repr.to_bytes();
    assert_eq!(bytes.len(), repr.buffer_len());
    let again = dhcp::Repr::parse_bytes(&bytes).expect("emitted DHCP must parse");
    assert_eq!(again, repr, "DHCP parse → emit → parse changed the message");
    let mut bootfiles = std::collections::BTreeMap::new();
    bootfiles.insert(0, "ipxe.pxe".to_string());
    bootfiles.insert(7, "ipxe.efi".to_string());
    let settings = ServerSettings {
        address: Ipv4Addr::new(192, 0, 2, 1),
        lease_secs: 60,
        pxe: Some(PxeSettings {
            next_server: None,
            bootfiles,
            boot_script_url: Some("http://192.0.2.1/install/boot/boot.ipxe".into()),
            script_mac: true,
        }),
    };
    let subnet = |net: &str, first: [u8; 4], last: [u8; 4]| Subnet {
        net: net.parse().expect("a network"),
        routers: vec![],
        dns_servers: vec![],
        domain: None,
        pool: LeasePool::new(
            Ipv4Addr::from(first),
            Ipv4Addr::from(last),
            &[Ipv4Addr::new(192, 0, 2, 1)],
            16,
        ),
    };
    let full = Mode::Full(vec![
        subnet("192.0.2.0/24", [192, 0, 2, 2], [192, 0, 2, 20]),
        subnet("198.51.100.0/24", [198, 51, 100, 2], [198, 51, 100, 20]),
    ]);
    let proxy = Mode::Proxy(vec!["192.0.2.0/24".parse().expect("a network")]);
    // From a client, and from a relay (port 67).
    let sources = [
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68),
        SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 254), 67),
    ];
    for mode in [full, proxy] {
        let mut server = DhcpServer::new(settings.clone(), mode);
        for now in [0, 30, 120] {
            for from in sources {
                let outcomes = [
                    server.handle(now, &repr, from),
                    server.handle_pxe_port(&repr, from),
                ];
                for outcome in outcomes {
                    if let Some((reply, _)) = outcome.reply {
                        let b = reply.to_bytes();
                        assert!(dhcp::Repr::parse_bytes(&b).is_ok(), "a reply must parse");
                    }
                }
            }
        }
    }
}

/// TFTP: every packet that parses emits to the same bytes; requests
/// negotiate without panicking.
pub fn tftp(data: &[u8]) {
    let Ok(repr) = tftp::Repr::parse(data) else {
        return;
    };
    assert_eq!(repr.to_bytes(), data, "TFTP parse → emit changed the bytes");
    if let tftp::Repr::Read(req) | tftp::Repr::Write(req) = &repr {
        let n = transfer::negotiate(req, 1 << 20, &Limits::default());
        assert!((8..=65_464).contains(&n.blksize));
        assert!((1..=transfer::MAX_WINDOW).contains(&n.windowsize));
    }
}

/// HTTP: the request head, the target's path segments and the Range header.
pub fn http_request(data: &[u8]) {
    let Ok(Some(req)) = http::parse_head(data) else {
        return;
    };
    assert!(req.head_len <= data.len());
    if let Ok(segments) = http::path_segments(req.target) {
        for s in &segments {
            assert!(!s.is_empty() && s != "." && s != "..");
            assert!(!s.contains(['/', '\\', '\0']));
        }
    }
    for len in [0, 1, 1000, u64::MAX] {
        if let http::RangeRequest::Partial { start, end } = http::parse_range(req.range, len) {
            assert!(start <= end && end < len);
        }
    }
}

/// Brace config: parse → write → parse gives the same tree; the daemon's
/// config readers never panic.
pub fn brace_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(doc) = brace::parse(text) else {
        return;
    };
    let written = brace::write(&doc);
    let back = brace::parse(&written).expect("written config must parse");
    assert_eq!(back, doc, "brace parse → write → parse changed the tree");
    let _ = Daemon::from_text(text, PLUGINS);
}
