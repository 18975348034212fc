//! Which network address a request comes from, for the per-address login
//! limit: the peer of the TCP connection, unless that peer is a proxy the
//! operator trusts, in which case the address that proxy reports in
//! `X-Forwarded-For`.
//!
//! **Decision.** `X-Forwarded-For` is written by whoever sends the request,
//! so it is believed only from peers listed in the `trusted_proxies` setting
//! (addresses or networks such as `10.0.0.0/8`). The header is read from the
//! right: each trusted proxy appends the address it received the request
//! from, so the first address from the right that is not a trusted proxy is
//! the client as far as anyone trustworthy saw it; whatever a client wrote
//! to the left of it is ignored. With no trusted proxies (the default) the
//! header is ignored entirely and the peer address counts: a server behind a
//! proxy that is not listed sees every login come from the proxy, which is
//! safe (logins are throttled harder, never looser) and shows in the logs as
//! 429s.

use std::net::IpAddr;
use std::str::FromStr;

/// An address or a network (`192.0.2.7`, `10.0.0.0/8`, `fd00::/8`): an
/// [`ipnet::IpNet`] that also reads a bare address (as a network of that one
/// address) and matches IPv4-mapped IPv6 addresses as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet(ipnet::IpNet);

impl IpNet {
    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&canonical(ip))
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let net = match s.parse::<ipnet::IpNet>() {
            Ok(net) => net,
            Err(_) if !s.contains('/') => s
                .parse::<IpAddr>()
                .map(ipnet::IpNet::from)
                .map_err(|_| format!("{s:?} is not an IP address or network (e.g. 10.0.0.0/8)"))?,
            Err(_) => {
                return Err(format!(
                    "{s:?} is not a network: an address, `/` and a prefix length \
                     (0 to 32 for IPv4, 0 to 128 for IPv6)"
                ));
            }
        };
        Ok(IpNet(match net {
            ipnet::IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
                Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len().saturating_sub(96))
                    .map(ipnet::IpNet::V4)
                    .map_err(|e| format!("{s:?}: {e}"))?,
                None => net,
            },
            v4 => v4,
        }))
    }
}

impl<'de> serde::Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address; others unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The address a request comes from: `peer` (the TCP connection's), or, when
/// `peer` is a trusted proxy, the rightmost address of `forwarded_for` (the
/// `X-Forwarded-For` values, in header order) that is not a trusted proxy.
/// A malformed entry stops the walk: the last trustworthy address seen counts.
pub fn client_address<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>().map(canonical) else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("net")).collect()
    }

    #[test]
    fn networks_contain_their_addresses_and_no_others() {
        let ten: IpNet = "10.0.0.0/8".parse().expect("net");
        assert!(ten.contains(ip("10.1.2.3")));
        assert!(ten.contains(ip("::ffff:10.1.2.3")));
        assert!(!ten.contains(ip("11.0.0.1")));
        assert!(!ten.contains(ip("fd00::1")));
        let one: IpNet = "192.0.2.7".parse().expect("address");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let any: IpNet = "0.0.0.0/0".parse().expect("all");
        assert!(any.contains(ip("203.0.113.9")));
        let v6: IpNet = "fd00::/8".parse().expect("v6");
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", "::/129"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_header_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let client = ip("203.0.113.9");
        assert_eq!(client_address(client, ["1.2.3.4"], &[]), client);
        assert_eq!(
            client_address(client, ["1.2.3.4"], &nets(&["10.0.0.0/8"])),
            client
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_address_counts() {
        let proxies = nets(&["10.0.0.0/8"]);
        let proxy = ip("10.0.0.2");
        // What a client wrote on the left is ignored.
        assert_eq!(
            client_address(proxy, ["6.6.6.6, 203.0.113.9"], &proxies),
            ip("203.0.113.9")
        );
        // Two proxies in a row, the header split over two lines.
        assert_eq!(
            client_address(proxy, ["6.6.6.6, 203.0.113.9", "10.0.0.7"], &proxies),
            ip("203.0.113.9")
        );
        // No header: the proxy itself.
        assert_eq!(client_address(proxy, [], &proxies), proxy);
        // Garbage from the right stops the walk at the last good hop.
        assert_eq!(
            client_address(proxy, ["203.0.113.9, junk"], &proxies),
            proxy
        );
    }
}
