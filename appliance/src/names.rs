//! Validation of the user-chosen names and initiator identities.
//!
//! Names become file names and LIO object names, so they are restricted to a
//! safe alphabet: `[A-Za-z0-9_.-]{1,64}` and never `.` or `..`.

use crate::error::Error;

/// Checks an object name (`what` says which kind, for the error message).
pub fn validate_name(what: &str, name: &str) -> Result<(), Error> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if name.is_empty() || name.len() > 64 || !ok_chars || name == "." || name == ".." {
        return Err(Error::BadName {
            what: what.to_string(),
            found: name.to_string(),
        });
    }
    Ok(())
}

/// Checks an iSCSI initiator name (`iqn.`, `eui.` or `naa.` form, RFC 3720
/// 3.2.6) and returns it lower-cased, because iSCSI names compare
/// case-insensitively and LIO stores ACLs lower-case.
pub fn normalize_iqn(iqn: &str) -> Result<String, Error> {
    let lower = iqn.trim().to_ascii_lowercase();
    let prefix_ok = ["iqn.", "eui.", "naa."]
        .iter()
        .any(|p| lower.starts_with(p) && lower.len() > p.len());
    let chars_ok = lower
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
    if !prefix_ok || !chars_ok || lower.len() > 223 {
        return Err(Error::Invalid(format!(
            "expected an iSCSI name like iqn.2004-10.com.example:host1 (or eui./naa. form, \
             at most 223 characters of [a-z0-9.-:]), found {iqn:?}"
        )));
    }
    Ok(lower)
}

/// Checks a Fibre Channel WWPN (16 hex digits, optionally `0x`-prefixed or
/// separated by `:`/`-`) and returns it as lower-case `aa:bb:..` form so the
/// same port written two ways is one identity.
pub fn normalize_wwpn(wwpn: &str) -> Result<String, Error> {
    let t = wwpn.trim();
    let t = t.strip_prefix("0x").unwrap_or(t);
    let hex: String = t.chars().filter(|c| *c != ':' && *c != '-').collect();
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!(
            "expected a WWPN of 16 hex digits like 21:00:00:24:ff:4c:9a:01, found {wwpn:?}"
        )));
    }
    let hex = hex.to_ascii_lowercase();
    let pairs: Vec<&str> = (0..8).map(|i| &hex[i * 2..i * 2 + 2]).collect();
    Ok(pairs.join(":"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "pg-gold_1.v2", &"x".repeat(64)] {
            validate_name("clone", good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(validate_name("clone", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn iqns() {
        assert_eq!(
            normalize_iqn("IQN.2004-10.com.Example:Host1").unwrap(),
            "iqn.2004-10.com.example:host1"
        );
        assert!(normalize_iqn("host1").is_err());
        assert!(normalize_iqn("iqn.").is_err());
        assert!(normalize_iqn("iqn.x y").is_err());
    }

    #[test]
    fn wwpns() {
        let want = "21:00:00:24:ff:4c:9a:01";
        for w in [
            "21:00:00:24:FF:4C:9A:01",
            "0x21000024ff4c9a01",
            "21-00-00-24-ff-4c-9a-01",
        ] {
            assert_eq!(normalize_wwpn(w).unwrap(), want);
        }
        assert!(normalize_wwpn("21:00").is_err());
        assert!(normalize_wwpn("zz00000000000000").is_err());
    }
}
