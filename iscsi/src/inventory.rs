//! Sessions, ifaces and node records with the library first and the
//! fallback second: libopeniscsiusr when it loads and answers, otherwise
//! sysfs (sessions) or `iscsiadm` output (ifaces, nodes). The answer says
//! which source it came from.

use crate::cmd::{self, Ctx};
use crate::error::IscsiError;
use crate::exitcode;
use crate::model::{Iface, Node, Portal, Session, Source};
use crate::sysfs::Sysfs;
use crate::usr;

/// Every logged-in session, from libopeniscsiusr or, if that is missing or
/// fails, from sysfs.
pub fn sessions() -> Result<(Vec<Session>, Source), IscsiError> {
    match usr::sessions() {
        Ok(s) => Ok((s, Source::Library)),
        Err(e) => {
            tracing::info!("libopeniscsiusr sessions unavailable ({e}); reading sysfs");
            Ok((Sysfs::default().sessions()?, Source::Fallback))
        }
    }
}

/// Every iface, from libopeniscsiusr or `iscsiadm -m iface`.
pub fn ifaces() -> Result<(Vec<Iface>, Source), IscsiError> {
    match usr::ifaces() {
        Ok(v) => Ok((v, Source::Library)),
        Err(e) => {
            tracing::info!("libopeniscsiusr ifaces unavailable ({e}); asking iscsiadm");
            let out = cmd::iscsiadm(
                &Ctx::new("list ifaces", None, None),
                &["-m", "iface"],
                &[],
                cmd::DEFAULT_TIMEOUT,
            )?;
            Ok((parse_iface_list(&out.stdout), Source::Fallback))
        }
    }
}

/// Every node record, from libopeniscsiusr or `iscsiadm -m node`.
pub fn nodes() -> Result<(Vec<Node>, Source), IscsiError> {
    match usr::nodes() {
        Ok(v) => Ok((v, Source::Library)),
        Err(e) => {
            tracing::info!("libopeniscsiusr nodes unavailable ({e}); asking iscsiadm");
            Ok((nodes_from_iscsiadm()?, Source::Fallback))
        }
    }
}

/// Node records as `iscsiadm -m node` lists them (no records: empty).
pub fn nodes_from_iscsiadm() -> Result<Vec<Node>, IscsiError> {
    match cmd::iscsiadm(
        &Ctx::new("list nodes", None, None),
        &["-m", "node"],
        &[],
        cmd::DEFAULT_TIMEOUT,
    ) {
        Ok(out) => Ok(parse_node_list(&out.stdout)),
        Err(e) if e.iscsiadm_code() == Some(exitcode::NO_OBJS_FOUND) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Parses `iscsiadm -m node`: `ADDR:PORT,TPGT IQN` per line.
pub fn parse_node_list(text: &str) -> Vec<Node> {
    let mut v: Vec<Node> = text
        .lines()
        .filter_map(|l| {
            let (portal, iqn) = l.trim().split_once(' ')?;
            let tpgt = portal
                .rsplit_once(',')
                .and_then(|(_, t)| t.parse().ok())
                .unwrap_or(-1);
            Some(Node {
                target_iqn: iqn.trim().to_string(),
                portal: portal.parse::<Portal>().ok()?,
                tpgt,
                iface_name: None,
            })
        })
        .collect();
    v.sort_by(|a, b| (&a.target_iqn, &a.portal).cmp(&(&b.target_iqn, &b.portal)));
    v
}

/// Parses `iscsiadm -m iface`:
/// `NAME TRANSPORT,HWADDR,IPADDR,NETDEV,INITIATORNAME` with `<empty>` holes.
pub fn parse_iface_list(text: &str) -> Vec<Iface> {
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(' ')?;
            let f: Vec<String> = rest
                .split(',')
                .map(|s| {
                    let s = s.trim();
                    if s == "<empty>" {
                        String::new()
                    } else {
                        s.to_string()
                    }
                })
                .collect();
            let get = |i: usize| f.get(i).cloned().unwrap_or_default();
            Some(Iface {
                name: name.to_string(),
                transport: get(0),
                hw_address: get(1),
                ip_address: get(2),
                netdev: get(3),
                initiator_iqn: get(4),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn node_list() {
        let t = "127.0.0.2:3260,1 iqn.2026-11.io.goldmount:appliance\n127.0.0.1:3260,1 iqn.2026-11.io.goldmount:appliance\n[fe80::1]:3260,2 iqn.x:y\n";
        let n = parse_node_list(t);
        assert_eq!(n.len(), 3);
        assert_eq!(n[0].portal, Portal::new("127.0.0.1", 3260));
        assert_eq!(n[0].tpgt, 1);
        assert_eq!(n[2].target_iqn, "iqn.x:y");
        assert_eq!(n[2].portal.address, "fe80::1");
    }

    #[test]
    fn iface_list() {
        let t = "default tcp,<empty>,<empty>,<empty>,<empty>\niser iser,<empty>,<empty>,<empty>,<empty>\nbound tcp,52:54:00:12:34:56,10.0.0.5,eth1,iqn.x:bound\n";
        let v = parse_iface_list(t);
        assert_eq!(v.len(), 3);
        assert_eq!(
            (v[0].name.as_str(), v[0].transport.as_str()),
            ("default", "tcp")
        );
        assert!(v[0].initiator_iqn.is_empty());
        assert_eq!(v[2].netdev, "eth1");
        assert_eq!(v[2].initiator_iqn, "iqn.x:bound");
    }
}
