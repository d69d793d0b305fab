//! The sans-IO DHCP [`Client`] wired to one interface's packet socket: the
//! I/O half shared by the installer ([`crate::run::network::dhcp_lease`], until a
//! first lease) and the appliance's `dhcpclient` plugin (for good, with
//! renew and rebind). The policy — how long to wait, what to do with a
//! lease — stays with the caller.

use crate::{
    dhcp::{self, Client},
    frame,
};
use core::time::Duration;
use ze_hal::{
    os::{LinkInfo, NetError, Os, PacketConn},
    time::Instant,
};

/// A receive never waits less than this, so a client whose timer is
/// already due does not spin.
const MIN_WAIT: Duration = Duration::from_millis(10);

/// One interface's DHCP client and its socket.
pub struct DhcpPort<P> {
    sock: P,
    /// The protocol state: the caller polls its events and timeout.
    pub client: Client,
    out: [u8; frame::HEADERS + dhcp::MAX_MESSAGE],
    inp: [u8; 1600],
}

impl<P> core::fmt::Debug for DhcpPort<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DhcpPort")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl<P: PacketConn> DhcpPort<P> {
    /// Open `link`'s packet socket and start a client whose transaction
    /// ids are seeded from the clock, the MAC and the interface index (two
    /// NICs of one machine, started in the same millisecond, still differ).
    pub fn open<O: Os<Packet = P>>(os: &mut O, link: &LinkInfo) -> Result<Self, NetError> {
        let sock = os.packet_open(link.index)?;
        let start = os.now();
        let seed = (start.as_millis() as u32)
            ^ u32::from_be_bytes([link.mac[2], link.mac[3], link.mac[4], link.mac[5]])
            ^ link.index.rotate_left(16);
        Ok(Self {
            sock,
            client: Client::new(link.mac, seed, start),
            out: [0; frame::HEADERS + dhcp::MAX_MESSAGE],
            inp: [0; 1600],
        })
    }

    /// Send what the client has to send at `now`, if anything.
    pub fn transmit(&mut self, now: Instant) -> Result<(), NetError> {
        let payload = self.out.get_mut(frame::HEADERS..).unwrap_or_default();
        if let Some(tx) = self.client.poll_transmit(now, payload)
            && let Some(pkt) = frame::wrap(
                &mut self.out,
                tx.src,
                tx.dst,
                dhcp::CLIENT_PORT,
                dhcp::SERVER_PORT,
                tx.len,
            )
        {
            self.sock.send(pkt)?;
        }
        Ok(())
    }

    /// Wait up to `wait` (at least [`MIN_WAIT`]) for one frame and hand it
    /// to the client when it is a reply from a DHCP server, stamped with
    /// `clock()` at arrival. Frames of other traffic are dropped.
    pub fn receive(&mut self, wait: Duration, clock: impl Fn() -> Instant) -> Result<(), NetError> {
        match self.sock.recv(&mut self.inp, wait.max(MIN_WAIT)) {
            Ok(n) => {
                if let Some(d) = frame::unwrap(self.inp.get(..n).unwrap_or_default())
                    && d.dst_port == dhcp::CLIENT_PORT
                    && d.src_port == dhcp::SERVER_PORT
                {
                    self.client.handle(clock(), d.payload);
                }
                Ok(())
            }
            Err(NetError::TimedOut) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
