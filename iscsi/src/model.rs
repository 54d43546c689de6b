//! What the crate reports: portals, sessions, ifaces and node records, the
//! same shapes whichever reader (libopeniscsiusr or sysfs/iscsiadm) filled them.

use std::fmt;
use std::str::FromStr;

use crate::error::IscsiError;

/// The iSCSI well-known port, used when a portal string has none.
pub const DEFAULT_PORT: u16 = 3260;

/// An iSCSI portal: IP address (or host name) and TCP port. Displays the way
/// `iscsiadm -p` expects it (`[v6]:port` for IPv6).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Portal {
    /// Address without brackets.
    pub address: String,
    /// TCP port.
    pub port: u16,
}

impl Portal {
    /// A portal from its parts.
    pub fn new(address: impl Into<String>, port: u16) -> Self {
        Portal {
            address: address.into(),
            port,
        }
    }
}

impl fmt::Display for Portal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.address.contains(':') {
            write!(f, "[{}]:{}", self.address, self.port)
        } else {
            write!(f, "{}:{}", self.address, self.port)
        }
    }
}

impl FromStr for Portal {
    type Err = IscsiError;

    /// Accepts `ip`, `ip:port`, `[v6]`, `[v6]:port` and a bare IPv6 address;
    /// a `,tpgt` suffix (as iscsiadm prints it) is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IscsiError::BadPortal(s.to_string());
        let s0 = s.trim();
        let s0 = s0.split_once(',').map_or(s0, |(p, _)| p);
        if s0.is_empty() {
            return Err(bad());
        }
        let (addr, port) = if let Some(rest) = s0.strip_prefix('[') {
            let (a, tail) = rest.split_once(']').ok_or_else(bad)?;
            match tail.strip_prefix(':') {
                Some(p) => (a, Some(p)),
                None if tail.is_empty() => (a, None),
                None => return Err(bad()),
            }
        } else if s0.matches(':').count() > 1 {
            (s0, None) // bare IPv6
        } else {
            match s0.split_once(':') {
                Some((a, p)) => (a, Some(p)),
                None => (s0, None),
            }
        };
        // A host name, an IPv4 address or an IPv6 address (with a zone):
        // iscsiadm resolves names itself; anything else is not a portal.
        let addr_char = |c: char| c.is_ascii_alphanumeric() || ".-_:%".contains(c);
        if addr.is_empty() || !addr.chars().all(addr_char) || addr.starts_with('-') {
            return Err(bad());
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => DEFAULT_PORT,
        };
        Ok(Portal::new(addr, port))
    }
}

/// Which reader produced an answer: the library is preferred, sysfs (and
/// iscsiadm for records) is the fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// open-iscsi's libopeniscsiusr, loaded at run time.
    Library,
    /// `/sys/class/iscsi_*` (sessions) or `iscsiadm` output (ifaces, nodes).
    Fallback,
}

/// One logged-in iSCSI session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Session id: the N of `sessionN` and of `iscsiadm -m session -r N`.
    pub sid: u32,
    /// Target IQN.
    pub target_iqn: String,
    /// Target portal group tag, when known.
    pub tpgt: Option<i32>,
    /// The portal the connection is established to.
    pub portal: Portal,
    /// The portal the session was created with (differs after a redirect).
    pub persistent_portal: Portal,
    /// open-iscsi iface name (`default` for software iSCSI).
    pub iface_name: String,
    /// Transport name (`tcp`, `iser`, offload drivers).
    pub transport: String,
    /// Initiator IQN this session logged in with.
    pub initiator_iqn: String,
}

/// An open-iscsi iface: which initiator identity and NIC a session uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    /// Iface name (`default`, `iser`, or a configured name).
    pub name: String,
    /// Transport name.
    pub transport: String,
    /// Initiator IQN configured on this iface (empty: the global one).
    pub initiator_iqn: String,
    /// Bound IP address, empty when unbound.
    pub ip_address: String,
    /// Bound hardware address, empty when unbound.
    pub hw_address: String,
    /// Bound network device, empty when unbound.
    pub netdev: String,
}

/// A node record of open-iscsi's database: a target reachable at a portal
/// through an iface (created by discovery or by `-o new`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Target IQN.
    pub target_iqn: String,
    /// Portal of the record.
    pub portal: Portal,
    /// Target portal group tag (-1 when unknown).
    pub tpgt: i32,
    /// Iface name, when the reader knows it.
    pub iface_name: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn portal_forms() {
        let p: Portal = "127.0.0.2:3261".parse().unwrap();
        assert_eq!(p, Portal::new("127.0.0.2", 3261));
        assert_eq!(p.to_string(), "127.0.0.2:3261");
        let p: Portal = "10.0.0.1".parse().unwrap();
        assert_eq!(p.port, 3260);
        let p: Portal = "[fe80::1]:3262".parse().unwrap();
        assert_eq!(p.address, "fe80::1");
        assert_eq!(p.to_string(), "[fe80::1]:3262");
        let p: Portal = "fe80::2".parse().unwrap();
        assert_eq!((p.address.as_str(), p.port), ("fe80::2", 3260));
        let p: Portal = "127.0.0.1:3260,1".parse().unwrap();
        assert_eq!(p, Portal::new("127.0.0.1", 3260));
        let p: Portal = "array-a.example.com:3260".parse().unwrap();
        assert_eq!(p.address, "array-a.example.com");
        let p: Portal = "[fe80::1%eth0]".parse().unwrap();
        assert_eq!(p.address, "fe80::1%eth0");
        for bad in [
            "",
            ":3260",
            "1.2.3.4:x",
            "[::1",
            "[::1]x",
            "1.2.3.4:70000",
            "a b:3260",
            "/etc/passwd",
            "-oProxy:3260",
            "host;rm",
        ] {
            assert!(bad.parse::<Portal>().is_err(), "{bad:?} accepted");
        }
    }
}
