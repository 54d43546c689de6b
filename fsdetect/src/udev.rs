//! `blkid -p -o udev` output, byte for byte, so the two can be diffed.

use crate::entry::PartEntry;
use crate::probe::{Content, DiskReport};

/// libblkid's whitelist for udev-safe characters.
fn is_whitelisted(c: u8, extra: &[u8]) -> bool {
    c.is_ascii_alphanumeric() || b"#+-.:=@_".contains(&c) || extra.contains(&c)
}

/// C isspace() in the "C" locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Length of the valid UTF-8 sequence starting `s` (1 for ASCII), or 0 if invalid.
fn utf8_len(s: &[u8]) -> usize {
    let n = match s.first() {
        Some(&b) if b < 0x80 => return 1,
        Some(&b) if b & 0xe0 == 0xc0 => 2,
        Some(&b) if b & 0xf0 == 0xe0 => 3,
        Some(&b) if b & 0xf8 == 0xf0 => 4,
        _ => return 0,
    };
    match s.get(..n) {
        Some(seq) if std::str::from_utf8(seq).is_ok() => n,
        _ => 0,
    }
}

/// C strings end at the first NUL.
fn c_str(v: &[u8]) -> &[u8] {
    &v[..v.iter().position(|&b| b == 0).unwrap_or(v.len())]
}

/// blkid_encode_string: `\xNN` for everything outside the whitelist except
/// valid multi-byte UTF-8.
pub fn encode_string(v: &[u8]) -> String {
    let v = c_str(v);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        let n = utf8_len(&v[i..]);
        if n > 1 {
            out.extend_from_slice(&v[i..i + n]);
            i += n;
            continue;
        }
        let c = v[i];
        if c == b'\\' || !is_whitelisted(c, &[]) {
            out.extend_from_slice(format!("\\x{c:02x}").as_bytes());
        } else {
            out.push(c);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// blkid_safe_string as 2.38.1 behaves: trim whitespace, collapse inner runs
/// to '_', replace bytes that are not valid UTF-8 with '_'.
pub fn safe_string(v: &[u8]) -> String {
    let v = c_str(v);
    let mut end = v.len();
    while end > 0 && is_space(v[end - 1]) {
        end -= 1;
    }
    let mut i = 0;
    while i < end && is_space(v[i]) {
        i += 1;
    }
    let mut s = Vec::with_capacity(end);
    while i < end {
        if is_space(v[i]) {
            while i < end && is_space(v[i]) {
                i += 1;
            }
            s.push(b'_');
        }
        if i < end {
            s.push(v[i]);
            i += 1;
        }
    }
    // blkid 2.38.1 keeps every ASCII byte (punctuation and controls too) and
    // valid UTF-8; only bytes that are not valid UTF-8 become '_'.
    let mut i = 0;
    while i < s.len() {
        if s[i] < 0x80 {
            i += 1;
            continue;
        }
        let n = utf8_len(&s[i..]);
        if n > 1 {
            i += n;
            continue;
        }
        s[i] = b'_';
        i += 1;
    }
    String::from_utf8_lossy(&s).into_owned()
}

/// One NAME=value pair as blkid's print_udev_format prints it.
fn push_udev_line(out: &mut String, name: &str, value: &[u8]) {
    use std::fmt::Write;
    let _ = match name {
        // blkid 2.38 also encodes the iso9660/UDF identifier values.
        "TYPE" | "VERSION" | "SYSTEM_ID" | "PUBLISHER_ID" | "APPLICATION_ID" | "BOOT_SYSTEM_ID"
        | "VOLUME_ID" | "LOGICAL_VOLUME_ID" | "VOLUME_SET_ID" | "DATA_PREPARER_ID" => {
            writeln!(out, "ID_FS_{name}={}", encode_string(value))
        }
        "UUID" | "UUID_SUB" => writeln!(
            out,
            "ID_FS_{name}={}\nID_FS_{name}_ENC={}",
            safe_string(value),
            encode_string(value)
        ),
        n if n.starts_with("LABEL") => writeln!(
            out,
            "ID_FS_{name}={}\nID_FS_{name}_ENC={}",
            safe_string(value),
            encode_string(value)
        ),
        "PTUUID" => writeln!(
            out,
            "ID_PART_TABLE_UUID={}",
            String::from_utf8_lossy(c_str(value))
        ),
        "PTTYPE" => writeln!(
            out,
            "ID_PART_TABLE_TYPE={}",
            String::from_utf8_lossy(c_str(value))
        ),
        _ if !c_str(value).is_empty() => {
            writeln!(
                out,
                "ID_FS_{name}={}",
                String::from_utf8_lossy(c_str(value))
            )
        }
        _ => Ok(()),
    };
}

/// The whole `blkid -p -o udev` text for a probed disk or region. Returns the
/// text and blkid's exit status (0 found, 2 nothing, 8 ambivalent).
pub fn format_udev(report: &DiskReport) -> (String, i32) {
    format_udev_with_entry(report, None)
}

/// The same for a partition device, whose table entry on its disk (found
/// through sysfs, see [`crate::entry`]) blkid prints after everything else
/// as `ID_PART_ENTRY_*`. An entry alone is a find (exit status 0).
pub fn format_udev_with_entry(report: &DiskReport, entry: Option<&PartEntry>) -> (String, i32) {
    let mut out = String::new();
    match &report.content {
        Content::Ambivalent { signatures } => {
            let parts: Vec<String> = signatures
                .iter()
                .map(|s| {
                    let mut p = format!(
                        "{}:{}",
                        encode_string(s.usage.as_str().as_bytes()),
                        encode_string(s.fs_type.as_bytes())
                    );
                    if let Some(v) = s.tag("VERSION") {
                        p.push(':');
                        p.push_str(&encode_string(v));
                    }
                    p
                })
                .collect();
            out.push_str(&format!("ID_FS_AMBIVALENT={}\n", parts.join(" ")));
            return (out, 8);
        }
        Content::Found { signature } => {
            for (name, value) in signature.blkid_tags() {
                push_udev_line(&mut out, &name, &value);
            }
        }
        Content::Empty => {}
    }
    if let Some(t) = &report.table {
        if let Some(u) = &t.uuid {
            push_udev_line(&mut out, "PTUUID", u.as_bytes());
        }
        push_udev_line(&mut out, "PTTYPE", t.kind.as_str().as_bytes());
    }
    if let Some(e) = entry {
        push_entry_lines(&mut out, e);
    }
    let status = if report.found_anything() || entry.is_some() {
        0
    } else {
        2
    };
    (out, status)
}

/// libblkid's PART_ENTRY_* values in the order it sets them, printed as
/// blkid's print_udev_format does: NAME and TYPE encoded, the rest as is.
fn push_entry_lines(out: &mut String, e: &PartEntry) {
    use std::fmt::Write;
    let _ = writeln!(out, "ID_PART_ENTRY_SCHEME={}", e.scheme);
    if let Some(name) = &e.name {
        let _ = writeln!(out, "ID_PART_ENTRY_NAME={}", encode_string(name.as_bytes()));
    }
    if let Some(uuid) = &e.uuid {
        let _ = writeln!(out, "ID_PART_ENTRY_UUID={uuid}");
    }
    let _ = writeln!(
        out,
        "ID_PART_ENTRY_TYPE={}",
        encode_string(e.part_type.as_bytes())
    );
    if e.flags != 0 {
        let _ = writeln!(out, "ID_PART_ENTRY_FLAGS=0x{:x}", e.flags);
    }
    let _ = writeln!(out, "ID_PART_ENTRY_NUMBER={}", e.number);
    let _ = writeln!(out, "ID_PART_ENTRY_OFFSET={}", e.offset);
    let _ = writeln!(out, "ID_PART_ENTRY_SIZE={}", e.size);
    let _ = writeln!(out, "ID_PART_ENTRY_DISK={}:{}", e.disk.0, e.disk.1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_blkid() {
        assert_eq!(safe_string(b"my lab"), "my_lab");
        assert_eq!(encode_string(b"my lab"), "my\\x20lab");
        assert_eq!(safe_string(b"  a \t b  "), "a_b");
        assert_eq!(encode_string(b"a/b\\c"), "a\\x2fb\\x5cc");
        assert_eq!(safe_string("grüße".as_bytes()), "grüße");
        assert_eq!(encode_string("grüße".as_bytes()), "grüße");
        assert_eq!(safe_string(b"a*b"), "a*b");
        assert_eq!(safe_string(b"a\xffb"), "a_b");
        assert_eq!(safe_string(b"x\x05y"), "x\x05y");
        assert_eq!(encode_string(b"ab\0cd"), "ab");
    }

    #[test]
    fn entry_lines_in_blkid_order_with_encoded_name_and_type() {
        let report = DiskReport {
            size: 1 << 20,
            sector_size: 512,
            content: Content::Empty,
            table: None,
            partitions: Vec::new(),
            io: crate::IoStats::default(),
        };
        assert_eq!(format_udev_with_entry(&report, None), (String::new(), 2));
        let e = PartEntry {
            scheme: "gpt".into(),
            name: Some("Linux data ü/x".into()),
            uuid: Some("11111111-2222-4333-8444-555555555555".into()),
            part_type: "0fc63daf-8483-4772-8e79-3d69d8477de4".into(),
            flags: 0x8000_0000_0000_0004,
            number: 3,
            offset: 2048,
            size: 32768,
            disk: (8, 16),
        };
        let (text, rc) = format_udev_with_entry(&report, Some(&e));
        assert_eq!(rc, 0);
        assert_eq!(
            text,
            "ID_PART_ENTRY_SCHEME=gpt\n\
             ID_PART_ENTRY_NAME=Linux\\x20data\\x20ü\\x2fx\n\
             ID_PART_ENTRY_UUID=11111111-2222-4333-8444-555555555555\n\
             ID_PART_ENTRY_TYPE=0fc63daf-8483-4772-8e79-3d69d8477de4\n\
             ID_PART_ENTRY_FLAGS=0x8000000000000004\n\
             ID_PART_ENTRY_NUMBER=3\n\
             ID_PART_ENTRY_OFFSET=2048\n\
             ID_PART_ENTRY_SIZE=32768\n\
             ID_PART_ENTRY_DISK=8:16\n"
        );
        let mbr = PartEntry {
            scheme: "dos".into(),
            name: None,
            uuid: Some("0a1b2c3d-05".into()),
            part_type: "0x83".into(),
            flags: 0,
            ..e
        };
        let (text, _) = format_udev_with_entry(&report, Some(&mbr));
        assert!(text.starts_with("ID_PART_ENTRY_SCHEME=dos\nID_PART_ENTRY_UUID=0a1b2c3d-05\nID_PART_ENTRY_TYPE=0x83\nID_PART_ENTRY_NUMBER=3\n"), "{text}");
    }
}
