//! The grant of one transfer: which volume an agent serves, and to which key, until when, from where.
//!
//! An orchestrator (operator or CLI) writes one grant per transfer into the agents' grants ConfigMap
//! (key: [`crate::pvc::grant_name`], value: [`TransferGrant::render`]):
//!
//! ```text
//! volume <pod UID>/<volume name under the kubelet root>
//! key ssh-ed25519 AAAA… dr-syncer-transfer
//! not-after 2026-12-06T08:00:00Z
//! from 10.0.0.21,10.0.0.0/24
//! ```
//!
//! The key is generated for this transfer alone; its private half exists only in the mover's Secret for
//! the transfer's lifetime. The agent of the node that holds the volume accepts that key (with
//! `expiry-time` and `from=` in its authorized_keys) and its forced command serves the volume only to a
//! login with that key, before `not-after` and from one of the `from` addresses: another transfer's key,
//! the cluster's probe key or a key copied out of a DR namespace reads nothing else. `from` is omitted
//! (any address) only when no address is known.
//!
//! The same [`KeyBinding`] travels into the agent's allow-list entry (see the agent's `allow` module).

use std::{net::IpAddr, time::SystemTime};

use crate::keys::PublicKey;

/// The longest `from` list accepted.
pub const MAX_FROM: usize = 64;

/// Which key may read a granted volume, until when, and from which addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBinding {
    /// The transfer's public key.
    pub key: PublicKey,
    /// Logins after this time are refused.
    pub not_after: SystemTime,
    /// Client addresses (`*`, an IP address or `address/prefix`); empty: any address.
    pub from: Vec<String>,
}

fn rfc3339(t: SystemTime) -> String {
    crate::keys::format_utc(t, "%Y-%m-%dT%H:%M:%SZ", "1970-01-01T00:00:00Z")
}

fn parse_time(text: &str) -> Result<SystemTime, String> {
    let ts: k8s_openapi::jiff::Timestamp = text.parse().map_err(|_| format!("invalid time {text:?}"))?;
    let secs = u64::try_from(ts.as_second()).map_err(|_| format!("invalid time {text:?}"))?;
    Ok(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// One `from` entry, checked: `None` for `*`, else the network address and its prefix length (the full
/// length for a single address).
fn parse_entry(entry: &str) -> Result<Option<(IpAddr, u32)>, String> {
    if entry == "*" {
        return Ok(None);
    }
    let (address, prefix) = match entry.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (entry, None),
    };
    let ip: IpAddr = address
        .parse()
        .map_err(|_| format!("{entry:?} is not an IP address, a CIDR range or *"))?;
    if let IpAddr::V6(v6) = ip
        && v6.to_ipv4_mapped().is_some()
    {
        // sshd compares an IPv4 client with IPv4 entries only.
        return Err(format!("{entry:?}: write the IPv4 address itself"));
    }
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match prefix {
        None => max,
        Some(p) => match p.parse::<u32>() {
            Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("{entry:?} has an invalid prefix length")),
        },
    };
    // OpenSSH refuses a whole `from=` list when one range has host bits set.
    if host_part(ip, bits) != 0 {
        return Err(format!(
            "{entry:?} has host bits set: name the network address of the range"
        ));
    }
    Ok(Some((ip, bits)))
}

/// An address as a number.
fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The bits of `ip` after the first `bits` (the host part of a range).
fn host_part(ip: IpAddr, bits: u32) -> u128 {
    let host_mask = match ip {
        IpAddr::V4(_) => u128::from(u32::MAX.checked_shr(bits).unwrap_or(0)),
        IpAddr::V6(_) => u128::MAX.checked_shr(bits).unwrap_or(0),
    };
    number(ip) & host_mask
}

/// Check one `from` entry: `*`, an IP address, or `address/prefix` with a prefix the family allows and
/// no host bits set.
///
/// # Errors
/// A message naming the entry.
pub fn check_address(entry: &str) -> Result<(), String> {
    parse_entry(entry).map(|_| ())
}

/// Whether `client` is one of `from` (empty: any). Entries that do not check never match.
pub fn address_matches(from: &[String], client: &str) -> bool {
    if from.is_empty() {
        return true;
    }
    let Ok(client) = client.parse::<IpAddr>() else {
        return false;
    };
    // An IPv4 client on an IPv6 socket shows as ::ffff:a.b.c.d.
    let client = match client {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
        v4 => v4,
    };
    from.iter().any(|entry| match parse_entry(entry) {
        Ok(None) => true,
        // The client's network part is the range's address (whose host part is zero).
        Ok(Some((net, bits))) => {
            net.is_ipv4() == client.is_ipv4() && number(client) - host_part(client, bits) == number(net)
        }
        Err(_) => false,
    })
}

impl KeyBinding {
    /// Whether a login with `key` from `client` (an IP address; `None` when unknown) at `now` may read
    /// the bound volume.
    pub fn admits(&self, key: &PublicKey, client: Option<&str>, now: SystemTime) -> bool {
        self.key.blob() == key.blob()
            && now < self.not_after
            && (self.from.is_empty() || client.is_some_and(|c| address_matches(&self.from, c)))
    }

    /// The binding as lines (`key …`, `not-after …`, `from …` when addresses are known).
    pub fn to_lines(&self) -> String {
        let mut out = format!(
            "key {}\nnot-after {}\n",
            self.key.to_openssh(),
            rfc3339(self.not_after)
        );
        if !self.from.is_empty() {
            out.push_str(&format!("from {}\n", self.from.join(",")));
        }
        out
    }

    /// The `authorized_keys` options of the binding: `expiry-time` and, with addresses, `from`.
    pub fn authorized_keys_options(&self) -> String {
        let mut out = format!("expiry-time=\"{}\"", crate::keys::expiry_time(self.not_after));
        if !self.from.is_empty() {
            out.push_str(&format!(",from=\"{}\"", self.from.join(",")));
        }
        out
    }

    /// Parse binding lines (as [`Self::to_lines`] writes them; blank lines ignored). `key` and
    /// `not-after` are required; an unknown or repeated line is refused.
    ///
    /// # Errors
    /// A message saying what is wrong (never the line's content beyond its keyword).
    pub fn parse_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let (mut key, mut not_after, mut from) = (None, None, None);
        for line in lines.into_iter().map(str::trim).filter(|l| !l.is_empty()) {
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            let rest = rest.trim();
            let slot_taken = match word {
                "key" => key
                    .replace(PublicKey::parse(rest).map_err(|e| format!("key: {e}"))?)
                    .is_some(),
                "not-after" => not_after.replace(parse_time(rest)?).is_some(),
                "from" => {
                    let list: Vec<String> = rest.split(',').map(|s| s.trim().to_string()).collect();
                    if list.len() > MAX_FROM {
                        return Err(format!("from: more than {MAX_FROM} addresses"));
                    }
                    for entry in &list {
                        check_address(entry).map_err(|e| format!("from: {e}"))?;
                    }
                    from.replace(list).is_some()
                }
                other => return Err(format!("unknown line {other:?}")),
            };
            if slot_taken {
                return Err(format!("{word} given twice"));
            }
        }
        Ok(KeyBinding {
            key: key.ok_or("no key line")?,
            not_after: not_after.ok_or("no not-after line")?,
            from: from.unwrap_or_default(),
        })
    }
}

/// One transfer's grant: the volume and the binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferGrant {
    /// The UID of the pod that has the volume mounted (empty for a [`HostPathGrant`]).
    pub pod_uid: String,
    /// The volume's name under the kubelet root (the PV name for a PVC).
    pub volume: String,
    /// For a `hostPath` PV: its node and directory (then `pod_uid` is empty and `volume` the PV name).
    pub host_path: Option<HostPathGrant>,
    /// Who may read it.
    pub binding: KeyBinding,
}

/// A `hostPath` PV's data: on which node, in which directory (as the PV says; the agent serves it only
/// below its own `--host-path-prefix` directories). Rendered `host-path <node> <pv> <path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPathGrant {
    /// The node holding the directory.
    pub node: String,
    /// The directory on the node (`hostPath.path`).
    pub path: String,
}

fn check_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && s != "."
        && s != ".."
}

impl TransferGrant {
    /// The ConfigMap value.
    pub fn render(&self) -> String {
        match &self.host_path {
            Some(h) => format!(
                "host-path {} {} {}\n{}",
                h.node,
                self.volume,
                h.path,
                self.binding.to_lines()
            ),
            None => format!(
                "volume {}/{}\n{}",
                self.pod_uid,
                self.volume,
                self.binding.to_lines()
            ),
        }
    }

    /// Parse a ConfigMap value written by [`Self::render`].
    ///
    /// # Errors
    /// A message saying what is wrong (a value of an older orchestrator, `<pod UID>/<volume>` alone,
    /// names no key and is refused).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let first = lines.next().ok_or("empty grant")?;
        if let Some(rest) = first.strip_prefix("host-path ") {
            let mut parts = rest.split(' ').filter(|p| !p.is_empty());
            let (Some(node), Some(pv), Some(path), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err("the first line is not `host-path <node> <pv> <path>`".into());
            };
            if !check_name_part(node) || !check_name_part(pv) {
                return Err("the host-path grant's node or PV is not a name".into());
            }
            super::host_path::check_absolute(path).map_err(|e| format!("host-path: {e}"))?;
            return Ok(TransferGrant {
                pod_uid: String::new(),
                volume: pv.into(),
                host_path: Some(HostPathGrant {
                    node: node.into(),
                    path: path.into(),
                }),
                binding: KeyBinding::parse_lines(lines)?,
            });
        }
        let Some(volume) = first.strip_prefix("volume ") else {
            return Err(if first.contains('/') && !first.contains(' ') {
                "the grant names no key (written by an older dr-syncer): not served".to_string()
            } else {
                "the first line is not `volume <pod UID>/<volume>`".to_string()
            });
        };
        let (uid, volume) = volume
            .trim()
            .split_once('/')
            .filter(|(u, v)| check_name_part(u) && check_name_part(v))
            .ok_or("the volume is not <pod UID>/<volume>")?;
        Ok(TransferGrant {
            pod_uid: uid.into(),
            volume: volume.into(),
            host_path: None,
            binding: KeyBinding::parse_lines(lines)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::keys::KeyPair;

    fn binding(from: &[&str]) -> KeyBinding {
        KeyBinding {
            key: KeyPair::generate_ed25519("t").unwrap().public_key(),
            not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            from: from.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_grant_renders_and_parses_back() {
        let g = TransferGrant {
            pod_uid: "1234-abcd".into(),
            volume: "pvc-9f".into(),
            host_path: None,
            binding: binding(&["10.0.0.21", "10.1.0.0/16"]),
        };
        let text = g.render();
        assert!(
            text.starts_with("volume 1234-abcd/pvc-9f\nkey ssh-ed25519 "),
            "{text}"
        );
        assert!(text.contains("not-after 2027-01-15T08:00:00Z\n"), "{text}");
        assert!(text.ends_with("from 10.0.0.21,10.1.0.0/16\n"), "{text}");
        assert_eq!(TransferGrant::parse(&text).unwrap(), g);
        let open = TransferGrant {
            binding: binding(&[]),
            ..g
        };
        assert!(!open.render().contains("from"));
        assert_eq!(TransferGrant::parse(&open.render()).unwrap(), open);
        let host = TransferGrant {
            pod_uid: String::new(),
            volume: "pvc-1".into(),
            host_path: Some(HostPathGrant {
                node: "prod-a".into(),
                path: "/var/local-path-provisioner/pvc-1_shop_data".into(),
            }),
            binding: binding(&["10.0.0.21"]),
        };
        let text = host.render();
        assert!(
            text.starts_with("host-path prod-a pvc-1 /var/local-path-provisioner/pvc-1_shop_data\nkey "),
            "{text}"
        );
        assert_eq!(TransferGrant::parse(&text).unwrap(), host);
        for bad in [
            "host-path prod-a pvc-1 relative/x\n",
            "host-path prod-a pvc-1 /x/../etc\n",
            "host-path prod-a pvc-1\n",
            "host-path prod-a pvc-1 /x /y\n",
            "host-path ../n pvc-1 /x\n",
        ] {
            let with_key = format!("{bad}{}", host.binding.to_lines());
            assert!(TransferGrant::parse(&with_key).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grants_without_a_key_or_with_bad_lines_are_refused() {
        let good = TransferGrant {
            pod_uid: "u".into(),
            volume: "v".into(),
            host_path: None,
            binding: binding(&["10.0.0.1"]),
        }
        .render();
        let cases = [
            ("uid/pv", "names no key"),
            ("", "empty"),
            ("volume ../x\n", "not <pod UID>"),
            ("volume u/v/w\n", "not <pod UID>"),
            ("volume u/v\nnot-after 2027-01-01T00:00:00Z\n", "no key"),
            (&good.replace("not-after", "not-before"), "unknown line"),
            (&good.replace("10.0.0.1", "10.0.0.1;touch /x"), "from:"),
            (&good.replace("10.0.0.1", "10.0.0.0/33"), "prefix"),
            (&good.replace("10.0.0.1", "203.0.113.7/24"), "host bits"),
            (
                &good.replace("10.0.0.1", "::ffff:10.0.0.1"),
                "IPv4 address itself",
            ),
            (&format!("{good}key {}\n", binding(&[]).key.to_openssh()), "twice"),
        ];
        for (text, want) in cases {
            let err = TransferGrant::parse(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_binding_admits_only_its_key_in_time_from_its_addresses() {
        let b = binding(&["10.0.0.21", "10.1.0.0/16", "fd00::/8"]);
        let other = KeyPair::generate_ed25519("o").unwrap().public_key();
        let before = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let after = b.not_after + Duration::from_secs(1);
        assert!(b.admits(&b.key, Some("10.0.0.21"), before));
        assert!(b.admits(&b.key, Some("10.1.200.3"), before));
        assert!(b.admits(&b.key, Some("::ffff:10.1.0.9"), before));
        assert!(b.admits(&b.key, Some("fd12::1"), before));
        assert!(!b.admits(&b.key, Some("10.0.0.22"), before), "another address");
        assert!(!b.admits(&b.key, None, before), "an unknown address");
        assert!(!b.admits(&other, Some("10.0.0.21"), before), "another key");
        assert!(!b.admits(&b.key, Some("10.0.0.21"), after), "expired");
        assert!(!b.admits(&b.key, Some("10.0.0.21"), b.not_after), "at not-after");
        let open = binding(&[]);
        assert!(open.admits(&open.key, None, before));
        assert!(check_address("203.0.113.0/24").is_ok() && check_address("fd00::/8").is_ok());
        assert!(check_address("0.0.0.0/0").is_ok() && check_address("10.0.0.1/32").is_ok());
        assert!(address_matches(&["*".into()], "192.168.1.1"));
        assert!(address_matches(&["0.0.0.0/0".into()], "192.168.1.1"));
        assert!(!address_matches(&["10.0.0.1".into()], "not-an-ip"));
        assert_eq!(
            b.authorized_keys_options(),
            "expiry-time=\"20270115080000Z\",from=\"10.0.0.21,10.1.0.0/16,fd00::/8\""
        );
    }
}
