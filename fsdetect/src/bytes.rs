//! Bounds-checked little/big-endian field readers and the UUID/label helpers
//! every on-disk parser needs. Out-of-bounds reads return `None`, never panic.

/// Little-endian u16 at `off`.
pub fn le16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}
/// Little-endian u32 at `off`.
pub fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}
/// Little-endian u64 at `off`.
pub fn le64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}
/// Big-endian u16 at `off`.
pub fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}
/// Big-endian u32 at `off`.
pub fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}
/// Big-endian u64 at `off`.
pub fn be64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_be_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}
/// `len` bytes at `off`.
pub fn slice(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(len)?)
}

/// Formats 16 bytes the way blkid prints a UUID (`8-4-4-4-12`, lowercase, in
/// on-disk byte order). All-zero UUIDs are "not set" for blkid: `None`.
pub fn uuid_string(u: &[u8]) -> Option<String> {
    if u.len() != 16 || u.iter().all(|&b| b == 0) {
        return None;
    }
    let h: Vec<String> = u.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    ))
}

/// Formats a GUID stored mixed-endian (GPT, Microsoft): the first three
/// fields little-endian.
pub fn guid_string(g: &[u8]) -> Option<String> {
    if g.len() != 16 {
        return None;
    }
    let mut u = [0u8; 16];
    u.copy_from_slice(g);
    u[0..4].reverse();
    u[4..6].reverse();
    u[6..8].reverse();
    if u.iter().all(|&b| b == 0) {
        return None;
    }
    uuid_string(&u)
}

/// A fixed-size on-disk label: cut at the first NUL, trailing whitespace
/// removed (blkid_probe_set_label). Empty labels are "not set": `None`.
pub fn label_bytes(raw: &[u8]) -> Option<Vec<u8>> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let mut v = raw[..end].to_vec();
    // C isspace(): the ASCII whitespace set plus vertical tab.
    while v
        .last()
        .is_some_and(|c| c.is_ascii_whitespace() || *c == 0x0b)
    {
        v.pop();
    }
    if v.is_empty() {
        None
    } else {
        Some(v)
    }
}

/// Decodes UTF-16 (little- or big-endian) up to the first NUL into UTF-8 bytes,
/// replacing invalid sequences, as blkid_probe_set_utf8label does.
pub fn utf16_to_utf8(raw: &[u8], big_endian: bool) -> Vec<u8> {
    let units = raw.chunks_exact(2).map(|c| {
        if big_endian {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_le_bytes([c[0], c[1]])
        }
    });
    let units: Vec<u16> = units.take_while(|&u| u != 0).collect();
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect::<String>()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fields_and_uuids() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(le16(&b, 0), Some(0x0201));
        assert_eq!(be32(&b, 0), Some(0x0102_0304));
        assert_eq!(le64(&b, 1), None);
        assert_eq!(le16(&b, usize::MAX), None);
        assert_eq!(uuid_string(&[0u8; 16]), None);
        let u: Vec<u8> = (0..16).collect();
        assert_eq!(
            uuid_string(&u).unwrap(),
            "00010203-0405-0607-0809-0a0b0c0d0e0f"
        );
        assert_eq!(
            guid_string(&u).unwrap(),
            "03020100-0504-0706-0809-0a0b0c0d0e0f"
        );
        assert_eq!(label_bytes(b"abc  \0junk"), Some(b"abc".to_vec()));
        assert_eq!(label_bytes(b"   "), None);
    }
}
