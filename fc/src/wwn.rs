//! World wide names as users and sysfs spell them.

/// Normalizes a WWN to 16 lowercase hex digits. Accepts sysfs's `0x5001438…`,
/// colon-separated `50:01:43:…` and bare hex; anything else (or all zeros,
/// which sysfs uses for "unknown") is None.
pub fn normalize_wwn(raw: &str) -> Option<String> {
    let s = raw.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let hex: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
    if hex.len() != 16 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    if hex.chars().all(|c| c == '0') {
        return None;
    }
    Some(hex)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn spellings() {
        let want = Some("50014380186af83c".to_string());
        assert_eq!(normalize_wwn("0x50014380186af83c\n"), want);
        assert_eq!(normalize_wwn("50:01:43:80:18:6A:F8:3C"), want);
        assert_eq!(normalize_wwn("50014380186AF83C"), want);
        assert_eq!(normalize_wwn("0x0000000000000000"), None);
        assert_eq!(normalize_wwn("0x5001"), None);
        assert_eq!(normalize_wwn("zz014380186af83c"), None);
    }
}
