//! The host's rtnetlink calls, as `std` functions over the hal's netlink
//! socket ([`ze_hal::linux::Netlink`]) and its message builders and
//! parsers ([`ze_hal::netlink`]), which the installer firmware uses too:
//! one implementation of the wire format for both halves of ze.
//!
//! - `ze install remote` and `dhcpserver`: an interface's IPv4 addresses,
//!   add one, remove it;
//! - `ze start` and `show interfaces`: every link with its kind, and every
//!   IPv4 address;
//! - `tftpserver`: an interface's MTU (from sysfs, with its index and state).

use std::{io, net::Ipv4Addr, path::Path};
use ze_hal::{
    linux::Netlink,
    netlink::{
        self, BufferTooSmall,
        consts::{RTM_NEWADDR, RTM_NEWLINK},
    },
    os::{AddrInfo, LinkInfo},
};

/// An IPv4 address configured on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

/// How many times a dump the kernel marks interrupted (the table changed
/// while it was read: `NLM_F_DUMP_INTR`, netlink(7)) is tried.
const DUMP_TRIES: usize = 3;
const EINTR: i32 = 4;
const ENOENT: i32 = 2;

fn io_error(e: ze_hal::Error) -> io::Error {
    match e {
        ze_hal::Error::Os(errno) => io::Error::from_raw_os_error(errno),
        ze_hal::Error::NotFound => io::Error::from_raw_os_error(ENOENT),
        other => io::Error::other(format!("netlink: {other}")),
    }
}

fn open() -> io::Result<Netlink> {
    Netlink::open().map_err(|e| {
        let e = io_error(e);
        io::Error::new(e.kind(), format!("netlink is not available: {e}"))
    })
}

/// Dump with `build` and keep what `parse` makes of each message, again
/// when the kernel says the table changed meanwhile.
fn dump<T>(
    nl: &mut Netlink,
    what: &str,
    build: fn(&mut [u8], u32) -> Result<&[u8], BufferTooSmall>,
    parse: impl Fn(&netlink::Message<'_>) -> Option<T>,
) -> io::Result<Vec<T>> {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut out = Vec::new();
        match nl.dump(build, &mut |m| out.extend(parse(m))) {
            Ok(()) => return Ok(out),
            Err(ze_hal::Error::Os(EINTR)) if tries < DUMP_TRIES => {}
            Err(e) => {
                let e = io_error(e);
                return Err(io::Error::new(
                    e.kind(),
                    format!("netlink {what} dump failed: {e}"),
                ));
            }
        }
    }
}

/// Every link of this machine (or network namespace), with its kind.
pub fn links() -> io::Result<Vec<LinkInfo>> {
    dump(&mut open()?, "link", netlink::get_links, |m| {
        (m.kind == RTM_NEWLINK)
            .then(|| netlink::parse_link(m.payload))
            .flatten()
    })
}

/// Every IPv4 address of every interface, in the kernel's order (an
/// interface's first address is its primary one).
pub fn addresses() -> io::Result<Vec<AddrInfo>> {
    dump(&mut open()?, "address", netlink::get_addrs, |m| {
        (m.kind == RTM_NEWADDR)
            .then(|| netlink::parse_addr(m.payload))
            .flatten()
    })
}

/// The IPv4 addresses of interface `index`, primary first.
pub fn ipv4_addrs(index: u32) -> io::Result<Vec<IfAddr>> {
    Ok(addresses()?
        .into_iter()
        .filter(|a| a.index == index)
        .map(|a| IfAddr {
            addr: a.addr,
            prefix: a.prefix,
        })
        .collect())
}

/// Add `a` to interface `index`; an address already there is an error
/// (`EEXIST`), so that what [`del_ipv4`] later removes is only what this
/// process added.
pub fn add_ipv4(index: u32, a: IfAddr) -> io::Result<()> {
    open()?
        .request(|buf, seq| netlink::addr_create(buf, seq, index, a.addr, a.prefix))
        .map_err(io_error)
}

/// Remove `a` from interface `index`.
pub fn del_ipv4(index: u32, a: IfAddr) -> io::Result<()> {
    let info = AddrInfo {
        index,
        addr: a.addr,
        prefix: a.prefix,
    };
    open()?
        .request(|buf, seq| netlink::addr_del(buf, seq, &info))
        .map_err(io_error)
}

/// The index of interface `name` (from sysfs).
pub fn ifindex(name: &str) -> io::Result<u32> {
    if name.is_empty() || name.contains('/') || name.len() > 15 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    let path = Path::new("/sys/class/net").join(name).join("ifindex");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface named {name}"),
            )
        } else {
            e
        }
    })?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other(format!("{} is not a number", path.display())))
}

/// The MTU of interface `name` (from sysfs).
pub fn mtu(name: &str) -> io::Result<u32> {
    let text = std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("mtu"))?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other("mtu is not a number"))
}

/// Whether interface `name` is administratively up (sysfs `flags` & IFF_UP).
pub fn is_up(name: &str) -> io::Result<bool> {
    let text = std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("flags"))?;
    let flags = u32::from_str_radix(text.trim().trim_start_matches("0x"), 16)
        .map_err(|_| io::Error::other("flags is not a number"))?;
    Ok(flags & 1 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked() {
        assert!(ifindex("").is_err());
        assert!(ifindex("../etc").is_err());
        assert_eq!(ifindex("lo").unwrap(), 1);
        assert_eq!(
            ifindex("ze-no-such-if").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(mtu("lo").unwrap() >= 1500);
        assert!(is_up("lo").unwrap());
    }

    #[test]
    fn the_live_dumps_see_loopback_and_its_address() {
        let lo = ifindex("lo").unwrap();
        assert!(links().unwrap().iter().any(|l| l.index == lo && l.loopback));
        let addrs = ipv4_addrs(lo).unwrap();
        assert!(
            addrs.contains(&IfAddr {
                addr: Ipv4Addr::LOCALHOST,
                prefix: 8
            }),
            "{addrs:?}"
        );
    }

    /// Add, refuse the same address again (EEXIST), list, remove: in a
    /// private network namespace, so the host is not touched.
    #[test]
    fn add_refuses_a_present_address_and_del_removes_it() {
        ze_hal::linux::in_new_network_namespace(|| {
            let lo = ifindex("lo").unwrap();
            let a = IfAddr {
                addr: Ipv4Addr::new(192, 0, 2, 7),
                prefix: 24,
            };
            add_ipv4(lo, a).unwrap();
            let again = add_ipv4(lo, a).unwrap_err();
            assert_eq!(again.raw_os_error(), Some(17), "{again}");
            assert!(ipv4_addrs(lo).unwrap().contains(&a));
            del_ipv4(lo, a).unwrap();
            assert!(!ipv4_addrs(lo).unwrap().contains(&a));
            let gone = del_ipv4(lo, a).unwrap_err();
            assert!(gone.raw_os_error().is_some(), "{gone}");
        })
        .expect("unshare(CLONE_NEWNET) (tests run as root)");
    }
}
