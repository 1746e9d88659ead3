//! How the SFU's media sockets are placed: the address to bind, the UDP port
//! range a firewall opens, and the public address to announce behind NAT.

use std::{fmt, net::IpAddr, str::FromStr};

use crate::Error;

/// An inclusive range of UDP ports, written `first-last` (e.g. `50000-50100`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// The first port of the range.
    pub first: u16,
    /// The last port of the range (inclusive).
    pub last: u16,
}

impl PortRange {
    /// Every port of the range, in order.
    pub fn ports(self) -> impl Iterator<Item = u16> {
        self.first..=self.last
    }
}

impl FromStr for PortRange {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = || Error::Config(format!("`{text}` is not a port range like 50000-50100"));
        let (first, last) = text.trim().split_once('-').ok_or_else(bad)?;
        let first: u16 = first.trim().parse().map_err(|_| bad())?;
        let last: u16 = last.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(Self { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Where participants' peer connections put their UDP sockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SfuConfig {
    /// The address media sockets bind to and gather host candidates on. The
    /// unspecified address means every non-loopback interface.
    pub bind_ip: IpAddr,
    /// The ports media sockets may use (one per participant); `None`: any
    /// ephemeral port.
    pub udp_ports: Option<PortRange>,
    /// The address announced to clients instead of the bound one, for servers
    /// behind 1:1 NAT (cloud VMs with a floating IP).
    pub public_ip: Option<IpAddr>,
}

impl Default for SfuConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::from([0, 0, 0, 0]),
            udp_ports: None,
            public_ip: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_and_print() {
        let range: PortRange = "50000-50100".parse().unwrap();
        assert_eq!(
            range,
            PortRange {
                first: 50000,
                last: 50100
            }
        );
        assert_eq!(range.to_string(), "50000-50100");
        assert_eq!(range.ports().count(), 101);
        assert_eq!(" 7-7 ".parse::<PortRange>().unwrap().ports().count(), 1);
        for bad in ["", "50000", "50100-50000", "0-10", "a-b", "1-70000"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }
}
