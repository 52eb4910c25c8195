//! IP allowlist entries: strict parsing and matching (the allowlist family builds on this).
//!
//! IPv4 entries are written the one way people read them: exactly four decimal octets 0–255
//! and three dots, no leading zeros, no spaces, an optional `/0` to `/32` (a bare address is a
//! `/32`). IPv6 entries take `/0` to `/128`; an IPv4-mapped IPv6 entry (`::ffff:a.b.c.d`) is
//! refused in favour of its IPv4 form, and a client seen as `::ffff:a.b.c.d` is matched as
//! `a.b.c.d`. Host bits must be zero: `203.0.113.7/24` is refused, naming `203.0.113.0/24`.
//! Networks are `ipnet` values; this module adds only the stricter rules around them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// Most entries one list holds.
pub const MAX_ENTRIES: usize = 200;
/// Longest label, in characters.
pub const MAX_LABEL: usize = 64;

/// One entry of a list: a network and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(rename = "cidr")]
    pub net: IpNet,
    #[serde(default)]
    pub label: String,
}

/// An org's list: whether it is enforced, and its entries (kept while it is off).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowlist {
    pub enabled: bool,
    #[serde(default)]
    pub entries: Vec<Entry>,
}

impl Allowlist {
    /// Whether the list, as it stands, lets `ip` in: always while it is off.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.enabled || contains(&self.entries, ip)
    }
}

/// What enforcing an org's list needs, as of the list's version (0: the org never had
/// one): whether it is on and its networks, without labels. Read with the caller's state on
/// every request; copied beside each account for sign-in and into each MFA challenge, where
/// the write that acts on the copy checks the version (docs/allowlist.md, "Enforcement").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub version: u64,
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<IpNet>,
}

impl Rule {
    /// The rule of `list` at `version`.
    pub fn of(list: &Allowlist, version: u64) -> Self {
        Self {
            version,
            enabled: list.enabled,
            nets: if list.enabled {
                list.entries.iter().map(|e| e.net).collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Whether `ip` may reach the org: always while the list is off; else when a network of
    /// the list contains it (an IPv4-mapped IPv6 address as its IPv4 form).
    pub fn permits(&self, ip: IpAddr) -> bool {
        if !self.enabled {
            return true;
        }
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// What is wrong with one entry, at its index, for a field error at
/// `/entries/{index}/{field}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    pub index: usize,
    /// `cidr` or `label`.
    pub field: &'static str,
    pub message: String,
}

/// One IPv4 octet as people write it: 1 to 3 digits, no leading zero, at most 255.
fn octet(s: &str) -> Result<u8, String> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{s:?} is not a number from 0 to 255 (an IPv4 address is four of them, with three dots)"
        ));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!(
            "{s:?} has a leading zero, which some systems read as octal: write {}",
            s.trim_start_matches('0').parse::<u16>().unwrap_or(0)
        ));
    }
    s.parse::<u16>()
        .ok()
        .and_then(|n| u8::try_from(n).ok())
        .ok_or_else(|| format!("{s} is over 255"))
}

fn ipv4(s: &str) -> Result<Ipv4Addr, String> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4 {
        return Err(format!(
            "an IPv4 address has exactly four numbers and three dots; this has {}",
            parts.len()
        ));
    }
    let mut octets = [0u8; 4];
    for (o, p) in octets.iter_mut().zip(&parts) {
        *o = octet(p)?;
    }
    Ok(Ipv4Addr::from(octets))
}

fn prefix(s: &str, max: u8) -> Result<u8, String> {
    let ok = !s.is_empty()
        && s.len() <= 3
        && s.bytes().all(|b| b.is_ascii_digit())
        && !(s.len() > 1 && s.starts_with('0'));
    match s.parse::<u8>() {
        Ok(n) if ok && n <= max => Ok(n),
        _ => Err(format!(
            "the prefix length must be a number from 0 to {max}"
        )),
    }
}

/// Parses one entry's network. A bare address is a single-address network.
pub fn parse_cidr(raw: &str) -> Result<IpNet, String> {
    if raw.is_empty() {
        return Err("must not be empty".into());
    }
    if raw.chars().any(char::is_whitespace) {
        return Err("must not contain spaces".into());
    }
    let (addr, len) = match raw.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (raw, None),
    };
    let net = if addr.contains(':') {
        let a: Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("{addr:?} is not an IPv6 address"))?;
        if let Some(v4) = a.to_ipv4_mapped() {
            return Err(format!(
                "an IPv4-mapped IPv6 address: write the IPv4 form, {v4}"
            ));
        }
        let len = len.map_or(Ok(128), |l| prefix(l, 128))?;
        IpNet::V6(Ipv6Net::new(a, len).map_err(|e| e.to_string())?)
    } else {
        let a = ipv4(addr)?;
        let len = len.map_or(Ok(32), |l| prefix(l, 32))?;
        IpNet::V4(Ipv4Net::new(a, len).map_err(|e| e.to_string())?)
    };
    let network = net.trunc();
    if network != net {
        return Err(format!(
            "host bits are set: the network is {network} (or write the single address {}/{})",
            net.addr(),
            net.max_prefix_len()
        ));
    }
    Ok(net)
}

/// Parses a whole list of `(cidr, label)`: every bad entry reported, duplicates (the same
/// network written twice) refused, at most [`MAX_ENTRIES`].
pub fn parse_entries(raw: &[(String, String)]) -> Result<Vec<Entry>, Vec<EntryError>> {
    let mut errors = Vec::new();
    let mut out: Vec<Entry> = Vec::new();
    // Each network with the index of its first entry, for the duplicates' messages.
    let mut seen: Vec<(IpNet, usize)> = Vec::new();
    if raw.len() > MAX_ENTRIES {
        errors.push(EntryError {
            index: MAX_ENTRIES,
            field: "cidr",
            message: format!("a list holds at most {MAX_ENTRIES} entries"),
        });
    }
    for (index, (cidr, label)) in raw.iter().enumerate() {
        if label.chars().count() > MAX_LABEL || crate::text::hidden_char(label).is_some() {
            errors.push(EntryError {
                index,
                field: "label",
                message: format!(
                    "must be at most {MAX_LABEL} characters, without control or invisible characters"
                ),
            });
        }
        match parse_cidr(cidr) {
            Ok(net) => match seen.iter().find(|(n, _)| *n == net).map(|(_, i)| *i) {
                Some(first) => errors.push(EntryError {
                    index,
                    field: "cidr",
                    message: format!("{net} is listed already, as entry {first}"),
                }),
                None => {
                    seen.push((net, index));
                    out.push(Entry {
                        net,
                        label: label.clone(),
                    });
                }
            },
            Err(message) => errors.push(EntryError {
                index,
                field: "cidr",
                message,
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// `ip` as the list matches it: an IPv4-mapped IPv6 client is its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether some entry contains `ip`.
pub fn contains(entries: &[Entry], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    entries.iter().any(|e| e.net.contains(&ip))
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_is_written_one_way() {
        for (ok, net) in [
            ("203.0.113.7", "203.0.113.7/32"),
            ("203.0.113.0/24", "203.0.113.0/24"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("255.255.255.255", "255.255.255.255/32"),
        ] {
            assert_eq!(
                parse_cidr(ok).map(|n| n.to_string()),
                Ok(net.to_owned()),
                "{ok}"
            );
        }
        for (bad, says) in [
            ("010.0.0.1", "leading zero"),
            ("1.2.3", "four numbers"),
            ("1.2.3.4.5", "four numbers"),
            ("256.1.1.1", "over 255"),
            ("1.2.3.4/33", "from 0 to 32"),
            ("1.2.3.4/", "from 0 to 32"),
            ("1.2.3.4/08", "from 0 to 32"),
            (" 1.2.3.4", "spaces"),
            ("1.2.3.4 ", "spaces"),
            ("1.2.3.-4", "not a number"),
            ("1.2.3.0x4", "not a number"),
            ("1..3.4", "not a number"),
            ("", "empty"),
            ("203.0.113.7/24", "203.0.113.0/24"),
        ] {
            let e = parse_cidr(bad).expect_err(bad);
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn ipv6_takes_its_forms_but_not_mapped_ipv4() {
        for (ok, net) in [
            ("2001:db8::/32", "2001:db8::/32"),
            ("2001:db8::1", "2001:db8::1/128"),
            ("::/0", "::/0"),
        ] {
            assert_eq!(
                parse_cidr(ok).map(|n| n.to_string()),
                Ok(net.to_owned()),
                "{ok}"
            );
        }
        for (bad, says) in [
            ("::ffff:203.0.113.7", "203.0.113.7"),
            ("2001:db8::1/64", "2001:db8::/64"),
            ("2001:db8::/129", "from 0 to 128"),
            ("2001:db8:::1", "not an IPv6"),
        ] {
            let e = parse_cidr(bad).expect_err(bad);
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_list_reports_every_bad_entry_and_duplicates() {
        let raw: Vec<(String, String)> = [
            ("203.0.113.0/24", "office"),
            ("1.2.3", ""),
            ("203.0.113.0/24", "again"),
            ("10.0.0.1", &"x".repeat(65)),
        ]
        .iter()
        .map(|(c, l)| ((*c).to_owned(), (*l).to_owned()))
        .collect();
        let errors = parse_entries(&raw).expect_err("bad list");
        let at: Vec<(usize, &str)> = errors.iter().map(|e| (e.index, e.field)).collect();
        assert_eq!(at, [(1, "cidr"), (2, "cidr"), (3, "label")]);
        assert!(errors[1].message.contains("entry 0"), "{:?}", errors[1]);
        let many: Vec<(String, String)> = (0..=MAX_ENTRIES)
            .map(|i| (format!("10.0.{}.{}/32", i / 256, i % 256), String::new()))
            .collect();
        assert!(parse_entries(&many).is_err());
        assert!(parse_entries(&many[..MAX_ENTRIES]).is_ok());
    }

    #[test]
    fn edges_of_a_range_and_mapped_clients_match() {
        let list = parse_entries(&[
            ("203.0.113.0/24".to_owned(), String::new()),
            ("2001:db8::/32".to_owned(), String::new()),
        ])
        .unwrap_or_default();
        let ip = |s: &str| {
            s.parse::<IpAddr>()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        };
        for inside in [
            "203.0.113.0",
            "203.0.113.255",
            "::ffff:203.0.113.9",
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            assert!(contains(&list, ip(inside)), "{inside}");
        }
        for outside in [
            "203.0.112.255",
            "203.0.114.0",
            "::ffff:203.0.114.1",
            "2001:db9::",
            "127.0.0.1",
        ] {
            assert!(!contains(&list, ip(outside)), "{outside}");
        }
    }
}
