//! The private-address guard for outbound requests (STYLE §4, SSRF):
//! webhooks, Web Push endpoints and the Delta Chat proxy.
//!
//! What this module owns: the rule of which IP addresses a request may not
//! reach ([`is_forbidden`]), and a DNS resolver for the HTTP client
//! ([`GuardedResolver`]) that applies the rule to every resolution, so a name
//! that resolved to a public address at config load and to `127.0.0.1` later
//! (DNS rebinding) is still refused. IP literals never reach a resolver; the
//! config validation and the HTTP transport check them directly.
//!
//! The rule: every block of the IANA IPv4 and IPv6 Special-Purpose Address
//! Registries is refused ([`SPECIAL_V4`], [`SPECIAL_V6`]), including the
//! blocks the registries mark globally reachable (AS112, AMT, the anycast
//! relays): no webhook receiver or push service lives there, so refusing
//! them costs nothing. Multicast and the deprecated site-local and
//! IPv4-compatible forms are refused too, and so is every IPv6 address
//! outside 2000::/3, the only range IANA allocates global unicast from.
//! Three forms carry an IPv4 address and are judged by it instead:
//! IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` (RFC 6052, the
//! well-known prefix, globally reachable) and 6to4 `2002:AABB:CCDD::/48`
//! (RFC 3056): a public embedded address is allowed, a special one refused.
//! The local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215) is refused whole:
//! its embedding depends on a prefix length only the local network knows.
//!
//! Invariant: with `allow_private = false`, no connection is ever opened to
//! an address in any of those blocks.
//!
//! Callers: `config.rs` (literal check and load-time resolution),
//! `push::jobs` (endpoint literals at intake) and `delivery::http` (the
//! client's resolver, literals at request time).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The IANA IPv4 Special-Purpose Address Registry (RFC 6890 and later
/// additions), plus multicast: (network, prefix length, name).
pub const SPECIAL_V4: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "this network"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private use"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "shared address space"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link local"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private use"),
    // Holds the service continuity prefix, the dummy address, the PCP and
    // TURN anycast addresses and NAT64 discovery.
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignments"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation (TEST-NET-1)"),
    (Ipv4Addr::new(192, 31, 196, 0), 24, "AS112-v4"),
    (Ipv4Addr::new(192, 52, 193, 0), 24, "AMT"),
    (Ipv4Addr::new(192, 88, 99, 0), 24, "deprecated 6to4 relay anycast"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private use"),
    (Ipv4Addr::new(192, 175, 48, 0), 24, "direct delegation AS112 service"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation (TEST-NET-2)"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation (TEST-NET-3)"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    // Includes the limited broadcast address 255.255.255.255.
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved"),
];

/// The IANA IPv6 Special-Purpose Address Registry, plus multicast and the
/// deprecated forms, refused whole: (network, prefix length, name). The
/// embedding forms (IPv4-mapped, NAT64 well-known prefix, 6to4) are judged
/// by their IPv4 address instead (see the module docs).
pub const SPECIAL_V6: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1), 128, "loopback"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128, "unspecified"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96, "IPv4-compatible (deprecated)"),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "IPv4-IPv6 translation, local use"),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, "discard only"),
    (Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0), 64, "dummy prefix"),
    // Teredo, PCP/TURN/DNS-SD anycast, benchmarking, AMT, AS112-v6,
    // ORCHIDv2, drone remote ID.
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, "IETF protocol assignments"),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "documentation"),
    (Ipv6Addr::new(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0), 48, "direct delegation AS112 service"),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, "documentation"),
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, "segment routing SIDs"),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "unique local"),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local unicast"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "site-local (deprecated)"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

/// The IPv4 address carried by an IPv4-mapped, NAT64 well-known-prefix
/// or 6to4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let last32 = Ipv4Addr::from(bits as u32);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return Some(last32);
    }
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

/// Whether a request may not connect to `ip` unless private addresses are
/// allowed.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    SPECIAL_V4.iter().any(|&(net, len, _)| in_v4(ip, net, len))
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return forbidden_v4(v4);
    }
    let global_unicast = in_v6(ip, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);
    !global_unicast || SPECIAL_V6.iter().any(|&(net, len, _)| in_v6(ip, net, len))
}

/// A resolver for the HTTP client that drops forbidden addresses and fails
/// when none is left.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// `delivery.allow_private_addresses`.
    pub allow_private: bool,
}

/// Error of [`GuardedResolver`] when every address of a name is forbidden.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to private or internal addresses (refused)")]
pub struct RefusedAddress {
    /// The host name.
    pub host: String,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || !is_forbidden(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(RefusedAddress { host }) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// First and last address of a CIDR block written as text.
    fn bounds(cidr: &str) -> (IpAddr, IpAddr) {
        let (net, len) = cidr.split_once('/').unwrap();
        let len: u32 = len.parse().unwrap();
        match net.parse::<IpAddr>().unwrap() {
            IpAddr::V4(n) => {
                let host = u32::MAX.checked_shr(len).unwrap_or(0);
                let first = u32::from(n) & !host;
                (Ipv4Addr::from(first).into(), Ipv4Addr::from(first | host).into())
            }
            IpAddr::V6(n) => {
                let host = u128::MAX.checked_shr(len).unwrap_or(0);
                let first = u128::from(n) & !host;
                (Ipv6Addr::from(first).into(), Ipv6Addr::from(first | host).into())
            }
        }
    }

    /// Every entry of the IANA IPv4 Special-Purpose Address Registry
    /// (iana-ipv4-special-registry, 2024 edition), written out here from
    /// the registry rather than from the table under test.
    const IANA_V4: &[(&str, &str)] = &[
        ("0.0.0.0/8", "this network"),
        ("0.0.0.0/32", "this host on this network"),
        ("10.0.0.0/8", "private use"),
        ("100.64.0.0/10", "shared address space"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link local"),
        ("172.16.0.0/12", "private use"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.0.0/29", "IPv4 service continuity prefix"),
        ("192.0.0.8/32", "IPv4 dummy address"),
        ("192.0.0.9/32", "port control protocol anycast"),
        ("192.0.0.10/32", "TURN anycast"),
        ("192.0.0.170/32", "NAT64/DNS64 discovery"),
        ("192.0.0.171/32", "NAT64/DNS64 discovery"),
        ("192.0.2.0/24", "documentation (TEST-NET-1)"),
        ("192.31.196.0/24", "AS112-v4"),
        ("192.52.193.0/24", "AMT"),
        ("192.88.99.0/24", "deprecated 6to4 relay anycast"),
        ("192.88.99.2/32", "6a44-relay anycast"),
        ("192.168.0.0/16", "private use"),
        ("192.175.48.0/24", "direct delegation AS112 service"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation (TEST-NET-2)"),
        ("203.0.113.0/24", "documentation (TEST-NET-3)"),
        ("240.0.0.0/4", "reserved"),
        ("255.255.255.255/32", "limited broadcast"),
        // Not in the registry, refused all the same.
        ("224.0.0.0/4", "multicast"),
    ];

    /// Every entry of the IANA IPv6 Special-Purpose Address Registry
    /// (iana-ipv6-special-registry, 2025 edition) that is refused whole,
    /// plus multicast and the deprecated forms.
    const IANA_V6: &[(&str, &str)] = &[
        ("::1/128", "loopback"),
        ("::/128", "unspecified"),
        ("64:ff9b:1::/48", "IPv4-IPv6 translation, local use"),
        ("100::/64", "discard only"),
        ("100:0:0:1::/64", "dummy IPv6 prefix"),
        ("2001::/23", "IETF protocol assignments"),
        ("2001::/32", "TEREDO"),
        ("2001:1::1/128", "port control protocol anycast"),
        ("2001:1::2/128", "TURN anycast"),
        ("2001:1::3/128", "DNS-SD service registration protocol anycast"),
        ("2001:2::/48", "benchmarking"),
        ("2001:3::/32", "AMT"),
        ("2001:4:112::/48", "AS112-v6"),
        ("2001:10::/28", "deprecated ORCHID"),
        ("2001:20::/28", "ORCHIDv2"),
        ("2001:30::/28", "drone remote ID protocol entity tags"),
        ("2001:db8::/32", "documentation"),
        ("2620:4f:8000::/48", "direct delegation AS112 service"),
        ("3fff::/20", "documentation"),
        ("5f00::/16", "segment routing SIDs"),
        ("fc00::/7", "unique local"),
        ("fe80::/10", "link-local unicast"),
        // Not in the registry, refused all the same.
        ("::/96", "IPv4-compatible (deprecated)"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    ];

    #[test]
    fn every_ipv4_special_purpose_block_is_refused() {
        for (cidr, name) in IANA_V4 {
            let (first, last) = bounds(cidr);
            assert!(is_forbidden(first), "{cidr} ({name}): first address {first}");
            assert!(is_forbidden(last), "{cidr} ({name}): last address {last}");
        }
    }

    #[test]
    fn every_ipv6_special_purpose_block_is_refused() {
        for (cidr, name) in IANA_V6 {
            let (first, last) = bounds(cidr);
            assert!(is_forbidden(first), "{cidr} ({name}): first address {first}");
            assert!(is_forbidden(last), "{cidr} ({name}): last address {last}");
        }
    }

    #[test]
    fn addresses_just_outside_the_blocks_are_allowed() {
        for ip in [
            "1.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.31.195.255",
            "192.31.197.0",
            "192.52.192.255",
            "192.52.194.0",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "192.175.47.255",
            "192.175.49.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
            "93.184.215.14",
            "2000::",
            "2001:200::",
            "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db9::",
            "2620:4f:7fff:ffff:ffff:ffff:ffff:ffff",
            "2620:4f:8001::",
            "3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2606:4700::1111",
        ] {
            assert!(!is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn ipv6_outside_global_unicast_is_refused() {
        for ip in ["1::1", "400::1", "4000::1", "8000::1", "e000::1", "fe00::1"] {
            assert!(is_forbidden(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn embedded_ipv4_decides_for_mapped_nat64_and_6to4() {
        // (address, embedded IPv4 it must be judged by)
        for (ip, refused) in [
            ("::ffff:127.0.0.1", true),
            ("::ffff:10.0.0.1", true),
            ("::ffff:198.18.0.1", true),
            ("::ffff:8.8.8.8", false),
            ("64:ff9b::7f00:1", true),         // 127.0.0.1
            ("64:ff9b::a9fe:a9fe", true),      // 169.254.169.254
            ("64:ff9b::c0a8:101", true),       // 192.168.1.1
            ("64:ff9b::c612:1", true),         // 198.18.0.1
            ("64:ff9b::808:808", false),       // 8.8.8.8
            ("2002:7f00:1::1", true),          // 127.0.0.1
            ("2002:a00:1::1", true),           // 10.0.0.1
            ("2002:c0a8:101:1::5", true),      // 192.168.1.1
            ("2002:a9fe:a9fe::", true),        // 169.254.169.254
            ("2002:6440:1::1", true),          // 100.64.0.1
            ("2002:808:808::1", false),        // 8.8.8.8
            ("::127.0.0.1", true),             // IPv4-compatible, refused whole
            ("::8.8.8.8", true),
        ] {
            assert_eq!(is_forbidden(ip.parse().unwrap()), refused, "{ip}");
        }
    }

    #[test]
    fn the_tables_match_the_registry_lists() {
        // Each table entry is one of the registry blocks above (no stray
        // entries that a test does not cover).
        let listed = |list: &[(&str, &str)], cidr: String| list.iter().any(|(c, _)| *c == cidr);
        for (net, len, name) in SPECIAL_V4 {
            assert!(listed(IANA_V4, format!("{net}/{len}")), "{net}/{len} ({name}) is not in IANA_V4");
        }
        for (net, len, name) in SPECIAL_V6 {
            assert!(listed(IANA_V6, format!("{net}/{len}")), "{net}/{len} ({name}) is not in IANA_V6");
        }
    }
}
