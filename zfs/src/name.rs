//! Pool names: ZFS's naming rules and the unique name a clone's pool gets.

/// Longest pool name goldmount generates (ZFS allows 255 bytes for a whole
/// dataset name, and the pool name is the prefix of every dataset's).
pub const MAX_POOL_NAME: usize = 120;

/// A unique pool name for a clone's pool: `<base>-<volume>`, reduced to the
/// characters ZFS allows, prefixed with `gm-` when ZFS would reject it
/// otherwise. Volume names are unique on a host, so two clones of one gold
/// pool never get the same name; [`crate::ensure_name_free`] catches a host
/// pool that happens to be called the same.
pub fn unique_pool_name(base: &str, volume: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_-.:".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut name = format!("{}-{}", clean(base), clean(volume));
    if pool_name_check(&name).is_err() {
        name = format!("gm-{name}");
    }
    if name.len() > MAX_POOL_NAME {
        // Keep the volume part whole: it is what makes the name unique.
        let v = clean(volume);
        let keep = MAX_POOL_NAME.saturating_sub(v.len() + 4);
        let b: String = clean(base).chars().take(keep).collect();
        name = format!("gm-{b}-{v}");
        name.truncate(MAX_POOL_NAME);
    }
    name
}

/// ZFS's pool name rules (zfs_namecheck.c `pool_namecheck` and libzfs
/// `zpool_name_valid` for a pool being created or imported): `Err` names
/// the rule the name breaks.
pub fn pool_name_check(name: &str) -> Result<(), &'static str> {
    let Some(first) = name.chars().next() else {
        return Err("empty");
    };
    if name.len() > 255 {
        return Err("longer than 255 bytes");
    }
    if !first.is_ascii_alphabetic() {
        return Err("must begin with a letter");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.: ".contains(c))
    {
        return Err("only letters, digits, '_', '-', '.', ':' and ' ' are allowed");
    }
    let b = name.as_bytes();
    if b[0] == b'c' && b.get(1).is_some_and(u8::is_ascii_digit) {
        return Err("c<digit>… looks like a disk name");
    }
    if ["mirror", "raidz", "draid", "spare"]
        .iter()
        .any(|p| name.starts_with(p))
        || name == "log"
    {
        return Err("reserved (mirror, raidz, draid, spare, log)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_valid_and_distinct() {
        let a = unique_pool_name("tank", "pg1");
        let b = unique_pool_name("tank", "pg2");
        assert_eq!(a, "tank-pg1");
        assert_ne!(a, b);
        for (base, vol) in [
            ("mirror", "v"),
            ("c0t0d0", "v"),
            ("1pool", "v"),
            ("spare", "x"),
            ("tank/with/slash", "v1"),
            ("p", "väl ü"),
            (&"x".repeat(300), "vol-9"),
        ] {
            let n = unique_pool_name(base, vol);
            assert_eq!(pool_name_check(&n), Ok(()), "{n:?} from {base:?}/{vol:?}");
            assert!(n.len() <= MAX_POOL_NAME, "{n}");
        }
        assert_eq!(unique_pool_name("mirror", "v"), "gm-mirror-v");
        assert!(unique_pool_name(&"x".repeat(300), "vol-9").ends_with("-vol-9"));
    }

    #[test]
    fn pool_name_rules() {
        assert!(pool_name_check("tank").is_ok());
        assert!(pool_name_check("").is_err());
        assert!(pool_name_check("raidz2x").is_err());
        assert!(pool_name_check("log").is_err());
        assert!(pool_name_check("logs").is_ok());
        assert!(pool_name_check("c1d0").is_err());
        assert!(pool_name_check("a/b").is_err());
        assert!(pool_name_check("a%b").is_err());
    }
}
