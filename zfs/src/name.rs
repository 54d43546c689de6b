//! Pool names: ZFS's naming rules and the unique name a clone's pool gets.

/// Longest pool name goldmount generates (ZFS allows 255 bytes for a whole
/// dataset name, and the pool name is the prefix of every dataset's).
pub const MAX_POOL_NAME: usize = 120;

/// Hex digits of the hash suffix (40 bits).
const HASH_HEX: usize = 10;

/// A unique pool name for a clone's pool: `<base>-<volume>-<hash>`, where
/// `<base>` and `<volume>` are reduced to the characters ZFS allows (for a
/// person to read) and `<hash>` is a hash of the exact pair, so that pairs
/// that read alike — `("a-b", "c")` and `("a", "b-c")`, `("p q", "v")` and
/// `("p_q", "v")` — still get different names: two volumes never compute
/// the same name, and one volume's teardown cannot meet another's pool
/// under its own name. `gm-` is prefixed when ZFS would reject the name
/// otherwise; a long base is shortened (the hash still covers all of it).
/// [`crate::ensure_name_free`] catches a host pool that happens to be
/// called the same.
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
    let hash = format!("{:016x}", pair_hash(base, volume));
    let hash = &hash[..HASH_HEX];
    let (b, v) = (clean(base), clean(volume));
    let mut name = format!("{b}-{v}-{hash}");
    if pool_name_check(&name).is_err() {
        name = format!("gm-{name}");
    }
    if name.len() > MAX_POOL_NAME {
        // Keep the volume part (what a person looks for) and the hash
        // (what makes the name unique) whole; shorten the base, and the
        // volume too if it alone is too long.
        let fixed = "gm-".len() + 2 + HASH_HEX;
        let v: String = v.chars().take(MAX_POOL_NAME / 2).collect();
        let keep = MAX_POOL_NAME.saturating_sub(fixed + v.len());
        let b: String = b.chars().take(keep).collect();
        name = format!("gm-{b}-{v}-{hash}");
    }
    name
}

/// 64-bit FNV-1a over an unambiguous encoding of the pair (the base's
/// length first), so that no two pairs hash the same input, then mixed.
/// Stable across Rust versions and platforms, unlike `DefaultHasher`.
fn pair_hash(base: &str, volume: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let len = (base.len() as u64).to_le_bytes();
    let bytes = len.iter().chain(base.as_bytes()).chain(volume.as_bytes());
    let h = bytes.fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME));
    // FNV barely stirs the last bytes (volumes v0 and v1 differed in one
    // hex digit): finish with MurmurHash3's fmix64 so every input bit
    // moves about half of the output.
    let h = (h ^ (h >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let h = (h ^ (h >> 33)).wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
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

    /// Pairs that read alike after cleaning, or that join to the same
    /// text, get different names; every name is valid and short enough.
    #[test]
    fn unique_names_are_injective_valid_and_bounded() {
        let long = "x".repeat(300);
        let long_vol = "v".repeat(200);
        let pairs: Vec<(&str, &str)> = vec![
            ("tank", "pg1"),
            ("tank", "pg2"),
            ("a-b", "c"),
            ("a", "b-c"),
            ("a-b-", "c"),
            ("a", "-b-c"),
            ("", "a-b-c"),
            ("a-b-c", ""),
            ("p q", "v"),
            ("p_q", "v"),
            ("p/q", "v"),
            ("p", "q v"),
            ("p", "q_v"),
            ("mirror", "v"),
            ("gm-mirror", "v"),
            ("c0t0d0", "v"),
            ("1pool", "v"),
            ("spare", "x"),
            ("log", ""),
            ("tank/with/slash", "v1"),
            ("p", "väl ü"),
            ("p", "väl_ü"),
            ("p", "välü"),
            (&long, "vol-9"),
            (&long[1..], "vol-9"),
            (&long, &long_vol),
            (&long_vol, &long),
        ];
        let mut seen = std::collections::HashMap::new();
        for (base, vol) in &pairs {
            let n = unique_pool_name(base, vol);
            assert_eq!(pool_name_check(&n), Ok(()), "{n:?} from {base:?}/{vol:?}");
            assert!(n.len() <= MAX_POOL_NAME, "{n} is {} bytes", n.len());
            let prev = seen.insert(n.clone(), (*base, *vol));
            assert!(prev.is_none(), "{n} from {prev:?} and {base:?}/{vol:?}");
        }
        assert_eq!(
            unique_pool_name("tank", "pg1"),
            unique_pool_name("tank", "pg1")
        );
        // Readable: the cleaned base and volume come first.
        let n = unique_pool_name("tank", "pg1");
        assert!(
            n.starts_with("tank-pg1-") && n.len() == "tank-pg1-".len() + HASH_HEX,
            "{n}"
        );
        assert!(unique_pool_name("mirror", "v").starts_with("gm-mirror-v-"));
        assert!(unique_pool_name(&long, "vol-9").contains("-vol-9-"));
        // Fixed values: names are recorded in the state store and checked
        // by the lab, so the hash must not change between builds.
        assert_eq!(
            pair_hash("", ""),
            0x7bd3_144f_29c0_cc9e,
            "FNV-1a of eight zero bytes, mixed"
        );
        assert_eq!(
            unique_pool_name("goldpool", "zvol1"),
            "goldpool-zvol1-d51d7e8d1f"
        );
    }

    /// The same joined text split at every place (the collision the old
    /// `<base>-<volume>` had) gives a different name for every pair.
    #[test]
    fn every_split_of_one_text_gets_its_own_name() {
        let text = "gold-pool-vol-1-a";
        let mut pairs = std::collections::HashSet::new();
        for i in 0..=text.len() {
            let (a, b) = text.split_at(i);
            pairs.insert((a, b));
            pairs.insert((a.trim_end_matches('-'), b));
            pairs.insert((a, b.trim_start_matches('-')));
        }
        let names: std::collections::HashSet<String> =
            pairs.iter().map(|(a, b)| unique_pool_name(a, b)).collect();
        assert!(pairs.len() > 20, "{}", pairs.len());
        assert_eq!(pairs.len(), names.len());
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
