//! `dhcpclient` on the appliance: the installer's sans-IO DHCPv4 client
//! ([`ze_installer::dhcp`]) run for good on one interface, with renew and
//! rebind (RFC 2131 §4.4.5), applying each lease through netlink (address
//! plus default route) and removing it when it is lost.
//!
//! Generic over [`ze_hal::os::Os`], so the whole loop runs under
//! `cargo test` against `hal::fake::FakeOs` with simulated time.

use core::{net::Ipv4Addr, time::Duration};
use ze_hal::os::{LinkInfo, NetError, Os};
use ze_installer::{
    dhcp::{Event, Lease},
    dhcp_port::DhcpPort,
};

/// The longest a receive waits, so that a stop request is seen promptly.
pub const POLL: Duration = Duration::from_secs(1);

/// What happened, for the caller to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A new lease was configured on the interface.
    Bound(Lease),
    /// The same lease was renewed; nothing changed on the interface.
    Renewed(Lease),
    /// The lease expired or was refused; the interface was flushed.
    Lost,
    /// Configuring the interface failed (netlink error), with the reason.
    ApplyFailed(String),
}

/// What is configured on the interface now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Applied {
    addr: Ipv4Addr,
    prefix: u8,
    router: Option<Ipv4Addr>,
}

fn applied(lease: &Lease) -> Applied {
    Applied {
        addr: lease.addr,
        prefix: lease.prefix,
        router: lease.router,
    }
}

fn apply<O: Os>(os: &mut O, index: u32, lease: &Lease) -> Result<(), ze_hal::Error> {
    os.flush(index)?;
    os.addr_add(index, lease.addr, lease.prefix)?;
    if let Some(router) = lease.router {
        os.route_add_default(index, router)?;
    }
    Ok(())
}

/// Run DHCP on `link` until `stop()` is true. The interface is brought up
/// first. Returns early only when the packet socket fails.
pub fn run<O: Os>(
    os: &mut O,
    link: &LinkInfo,
    stop: &dyn Fn() -> bool,
    report: &mut dyn FnMut(Report),
) -> Result<(), NetError> {
    if let Err(e) = os.link_up(link.index) {
        report(Report::ApplyFailed(format!(
            "cannot set {} up: {e}",
            link.name
        )));
    }
    let mut port = DhcpPort::open(os, link)?;
    let mut current: Option<Applied> = None;
    while !stop() {
        let now = os.now();
        port.transmit(now)?;
        while let Some(event) = port.client.poll_event() {
            match event {
                Event::Bound(lease) => {
                    let want = applied(&lease);
                    if current == Some(want) {
                        report(Report::Renewed(lease));
                        continue;
                    }
                    match apply(os, link.index, &lease) {
                        Ok(()) => {
                            current = Some(want);
                            report(Report::Bound(lease));
                        }
                        Err(e) => {
                            current = None;
                            report(Report::ApplyFailed(format!(
                                "cannot configure {}/{}: {e}",
                                lease.addr, lease.prefix
                            )));
                        }
                    }
                }
                Event::Lost => {
                    if current.take().is_some() {
                        let _ = os.flush(link.index);
                    }
                    report(Report::Lost);
                }
            }
        }
        let wait = port.client.poll_timeout().saturating_since(now).min(POLL);
        port.receive(wait, || os.now())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr, EthernetAddress};
    use std::{cell::RefCell, rc::Rc};
    use ze_hal::fake::{FakeOs, FakeSys};
    use ze_installer::{dhcp, frame};

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    fn reply(kind: DhcpMessageType, xid: u32, you: Ipv4Addr, lease_secs: u32) -> Vec<u8> {
        let repr = DhcpRepr {
            message_type: kind,
            transaction_id: xid,
            secs: 0,
            client_hardware_address: EthernetAddress(MAC),
            client_ip: Ipv4Addr::UNSPECIFIED,
            your_ip: you,
            server_ip: SERVER,
            router: Some(SERVER),
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            broadcast: true,
            requested_ip: None,
            client_identifier: None,
            server_identifier: Some(SERVER),
            parameter_request_list: None,
            dns_servers: None,
            max_size: None,
            lease_duration: Some(lease_secs),
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        };
        let mut buf = vec![0u8; frame::HEADERS + repr.buffer_len()];
        repr.emit(&mut DhcpPacket::new_unchecked(&mut buf[frame::HEADERS..]))
            .unwrap();
        let len = buf.len() - frame::HEADERS;
        frame::wrap(
            &mut buf,
            SERVER,
            Ipv4Addr::BROADCAST,
            dhcp::SERVER_PORT,
            dhcp::CLIENT_PORT,
            len,
        )
        .unwrap()
        .to_vec()
    }

    /// A machine with eth0 and a DHCP server that leases 192.0.2.50 for
    /// `lease_secs`, answering only while `serving` is true.
    fn machine(
        lease_secs: u32,
        serving: Rc<RefCell<bool>>,
        seen: Rc<RefCell<Vec<u8>>>,
    ) -> (FakeOs, LinkInfo) {
        let os = FakeOs::new(FakeSys::new());
        let link = LinkInfo {
            index: 2,
            name: "eth0".try_into().unwrap(),
            mac: MAC,
            up: false,
            carrier: true,
            loopback: false,
            kind: 1,
            link_kind: heapless::String::new(),
        };
        os.st().links.push(link.clone());
        os.st().packets = Some(Box::new(move |_, pkt| {
            let d = frame::unwrap(pkt).expect("an IPv4/UDP packet");
            let packet = DhcpPacket::new_checked(d.payload).unwrap();
            let repr = DhcpRepr::parse(&packet).unwrap();
            seen.borrow_mut().push(repr.message_type.into());
            if !*serving.borrow() {
                return vec![];
            }
            let kind = match repr.message_type {
                DhcpMessageType::Discover => DhcpMessageType::Offer,
                _ => DhcpMessageType::Ack,
            };
            vec![reply(
                kind,
                repr.transaction_id,
                Ipv4Addr::new(192, 0, 2, 50),
                lease_secs,
            )]
        }));
        (os, link)
    }

    #[test]
    fn binds_applies_renews_and_loses_the_lease() {
        let serving = Rc::new(RefCell::new(true));
        let seen = Rc::new(RefCell::new(Vec::new()));
        let (mut os, link) = machine(120, serving.clone(), seen.clone());
        let clock = os.clone();
        let reports = RefCell::new(Vec::new());
        // Run for 10 simulated minutes; stop answering after 3.
        let stop = || {
            let now = clock.st().now;
            if now > 180_000 {
                *serving.borrow_mut() = false;
            }
            now > 600_000
        };
        run(&mut os, &link, &stop, &mut |r| reports.borrow_mut().push(r)).unwrap();
        let reports = reports.into_inner();
        assert!(
            matches!(&reports[0], Report::Bound(l) if l.addr == Ipv4Addr::new(192, 0, 2, 50) && l.prefix == 24)
        );
        let renewals = reports
            .iter()
            .filter(|r| matches!(r, Report::Renewed(_)))
            .count();
        assert!(
            renewals >= 2,
            "a 120 s lease renews every 60 s: {reports:?}"
        );
        assert_eq!(reports.last(), Some(&Report::Lost), "{reports:?}");
        let st = os.st();
        let effects: Vec<&str> = st
            .events
            .iter()
            .map(String::as_str)
            .filter(|e| !e.starts_with("packet"))
            .collect();
        assert_eq!(
            effects,
            [
                "link up 2",
                "flush 2",
                "addr add 2 192.0.2.50/24",
                "route add default via 192.0.2.1 dev 2",
                "flush 2"
            ],
            "applied once, renewed without touching the interface, flushed when lost"
        );
        assert!(st.addrs.is_empty() && st.routes.is_empty());
        // DISCOVER (1), REQUEST (3) ... and REQUESTs while rebinding.
        let kinds = seen.borrow();
        assert_eq!(kinds[0], 1);
        assert!(kinds.iter().filter(|k| **k == 3).count() >= 3);
    }
}
