//! The host's iSCSI initiator name: `/etc/iscsi/initiatorname.iscsi`,
//! cross-checked with the names live sessions logged in with (a session made
//! before the file was edited, or through an iface with its own name, shows
//! a different one; the appliance must know every name in use).

use std::path::Path;

use crate::error::IscsiError;
use crate::model::Session;

/// open-iscsi's initiator name file.
pub const INITIATOR_FILE: &str = "/etc/iscsi/initiatorname.iscsi";

/// Parses the `InitiatorName=` line (comments and blanks ignored).
pub fn parse_initiator_file(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix("InitiatorName="))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The configured initiator IQN; `None` when the file is absent (no
/// open-iscsi on this host) or has no name.
pub fn configured_iqn(path: &Path) -> Result<Option<String>, IscsiError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(parse_initiator_file(&t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(IscsiError::io(path, e)),
    }
}

/// The configured name next to the names sessions actually use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiatorIdentity {
    /// From the initiator name file.
    pub configured: Option<String>,
    /// Distinct, non-empty initiator names of live sessions, sorted.
    pub in_sessions: Vec<String>,
    /// Sessions whose initiator name differs from the configured one.
    pub mismatched: Vec<(u32, String)>,
}

impl InitiatorIdentity {
    /// Cross-checks `configured` against `sessions`.
    pub fn new(configured: Option<String>, sessions: &[Session]) -> Self {
        let mut in_sessions: Vec<String> = sessions
            .iter()
            .map(|s| s.initiator_iqn.clone())
            .filter(|n| !n.is_empty())
            .collect();
        in_sessions.sort();
        in_sessions.dedup();
        let mismatched = sessions
            .iter()
            .filter(|s| {
                !s.initiator_iqn.is_empty() && Some(&s.initiator_iqn) != configured.as_ref()
            })
            .map(|s| (s.sid, s.initiator_iqn.clone()))
            .collect();
        InitiatorIdentity {
            configured,
            in_sessions,
            mismatched,
        }
    }

    /// True when every session uses the configured name.
    pub fn consistent(&self) -> bool {
        self.mismatched.is_empty()
    }

    /// The name to register with the appliance: the configured one, or the
    /// sessions' only name when the file has none.
    pub fn primary(&self) -> Option<&str> {
        match (self.configured.as_deref(), self.in_sessions.as_slice()) {
            (Some(c), _) => Some(c),
            (None, [one]) => Some(one.as_str()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::model::Portal;

    fn se(sid: u32, iqn: &str) -> Session {
        Session {
            sid,
            target_iqn: "iqn.t".into(),
            tpgt: Some(1),
            portal: Portal::new("127.0.0.1", 3260),
            persistent_portal: Portal::new("127.0.0.1", 3260),
            iface_name: "default".into(),
            transport: "tcp".into(),
            initiator_iqn: iqn.into(),
        }
    }

    #[test]
    fn parses_debian_file() {
        let t = "## DO NOT EDIT OR REMOVE THIS FILE!\n## If you remove this file, the iSCSI daemon will not start.\n#InitiatorName=iqn.old:x\nInitiatorName=iqn.1993-08.org.debian:01:abcdef\n";
        assert_eq!(
            parse_initiator_file(t).as_deref(),
            Some("iqn.1993-08.org.debian:01:abcdef")
        );
        assert_eq!(parse_initiator_file("InitiatorName=\n"), None);
        assert_eq!(parse_initiator_file(""), None);
    }

    #[test]
    fn missing_file_is_none() {
        assert_eq!(configured_iqn(Path::new("/nonexistent/x")).unwrap(), None);
    }

    #[test]
    fn cross_check() {
        let id = InitiatorIdentity::new(
            Some("iqn.a".into()),
            &[se(1, "iqn.a"), se(2, "iqn.b"), se(3, "")],
        );
        assert!(!id.consistent());
        assert_eq!(id.mismatched, vec![(2, "iqn.b".to_string())]);
        assert_eq!(id.in_sessions, vec!["iqn.a", "iqn.b"]);
        assert_eq!(id.primary(), Some("iqn.a"));
        let id = InitiatorIdentity::new(None, &[se(1, "iqn.s")]);
        assert_eq!(id.primary(), Some("iqn.s"));
        assert!(InitiatorIdentity::new(Some("iqn.a".into()), &[se(1, "iqn.a")]).consistent());
    }
}
