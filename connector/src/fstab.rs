//! Parsing a clone's `/etc/fstab` and deciding which entries name local
//! filesystems that could be on the clone (network filesystems, swap and
//! pseudo filesystems are ignored).

/// How an fstab entry names its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// `UUID=` or `/dev/disk/by-uuid/`.
    Uuid(String),
    /// `LABEL=` or `/dev/disk/by-label/`.
    Label(String),
    /// `PARTUUID=` or `/dev/disk/by-partuuid/`.
    PartUuid(String),
    /// `PARTLABEL=` or `/dev/disk/by-partlabel/`.
    PartLabel(String),
    /// `/dev/mapper/vg-lv` or `/dev/vg/lv`.
    Lv {
        /// Volume group as the original host named it.
        vg: String,
        /// Logical volume.
        lv: String,
    },
    /// Another device path (`/dev/sda1`…): cannot be trusted on another host.
    Path(String),
}

/// One fstab line that could describe a filesystem of the clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The first field as written.
    pub raw_spec: String,
    /// Parsed device reference.
    pub spec: Spec,
    /// Mountpoint.
    pub mountpoint: String,
    /// Filesystem type field.
    pub fstype: String,
    /// Options field.
    pub options: String,
}

/// Types that are never on the clone's disks.
const IGNORED_TYPES: &[&str] = &[
    "swap",
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "fuse.sshfs",
    "sshfs",
    "9p",
    "tmpfs",
    "proc",
    "sysfs",
    "devpts",
    "devtmpfs",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "hugetlbfs",
    "mqueue",
    "pstore",
    "bpf",
    "efivarfs",
    "autofs",
    "none",
    "iso9660",
    "udf",
];

/// Decodes fstab's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let oct: String = chars.clone().take(3).collect();
            if oct.len() == 3 && oct.chars().all(|d| ('0'..='7').contains(&d)) {
                if let Ok(v) = u8::from_str_radix(&oct, 8) {
                    out.push(v as char);
                    for _ in 0..3 {
                        chars.next();
                    }
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

fn strip_quotes(s: &str) -> String {
    s.trim_matches('"').to_string()
}

/// Parses the device field of an fstab line.
pub fn parse_spec(raw: &str) -> Spec {
    let kv = |p: &str| raw.strip_prefix(p).map(strip_quotes);
    if let Some(v) = kv("UUID=") {
        return Spec::Uuid(v.to_lowercase());
    }
    if let Some(v) = kv("LABEL=") {
        return Spec::Label(v);
    }
    if let Some(v) = kv("PARTUUID=") {
        return Spec::PartUuid(v.to_lowercase());
    }
    if let Some(v) = kv("PARTLABEL=") {
        return Spec::PartLabel(v);
    }
    if let Some(v) = raw.strip_prefix("/dev/disk/by-uuid/") {
        return Spec::Uuid(v.to_lowercase());
    }
    if let Some(v) = raw.strip_prefix("/dev/disk/by-label/") {
        return Spec::Label(unescape(&v.replace("\\x20", " ")));
    }
    if let Some(v) = raw.strip_prefix("/dev/disk/by-partuuid/") {
        return Spec::PartUuid(v.to_lowercase());
    }
    if let Some(v) = raw.strip_prefix("/dev/disk/by-partlabel/") {
        return Spec::PartLabel(v.to_string());
    }
    if let Some(v) = raw.strip_prefix("/dev/mapper/") {
        if let Some((vg, lv)) = lvm::dm::split_dm_name(v) {
            return Spec::Lv { vg, lv };
        }
    }
    if let Some(v) = raw.strip_prefix("/dev/") {
        let parts: Vec<&str> = v.split('/').collect();
        if parts.len() == 2 && !["disk", "mapper"].contains(&parts[0]) {
            return Spec::Lv {
                vg: parts[0].to_string(),
                lv: parts[1].to_string(),
            };
        }
    }
    Spec::Path(raw.to_string())
}

/// Parses the bytes of a clone's fstab: [`parse`] line by line, except that
/// a line that is not valid UTF-8 is skipped and reported with its number
/// (one bad byte must not drop the whole file). Also reports more than one
/// entry for `/`.
pub fn parse_bytes(bytes: &[u8]) -> (Vec<Entry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        match std::str::from_utf8(line) {
            Ok(text) => entries.extend(parse(text)),
            Err(e) => problems.push(format!(
                "line {} of the clone's /etc/fstab is not valid UTF-8 (byte {}): that line was ignored",
                i + 1,
                e.valid_up_to() + 1
            )),
        }
    }
    let roots = entries.iter().filter(|e| e.mountpoint == "/").count();
    if roots > 1 {
        problems.push(format!(
            "the clone's /etc/fstab has more than one entry for / ({roots}); the first one is used"
        ));
    }
    (entries, problems)
}

/// Parses fstab text into the entries that could be local filesystems, in
/// file order. Comments, blank lines, malformed lines, swap, network and
/// pseudo filesystems are dropped; `noauto` entries are kept (the caller
/// decides).
pub fn parse(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let fstype = f[2].to_string();
        let mountpoint = unescape(f[1]);
        if IGNORED_TYPES.contains(&fstype.as_str()) || !mountpoint.starts_with('/') {
            continue;
        }
        let raw_spec = unescape(f[0]);
        out.push(Entry {
            spec: parse_spec(&raw_spec),
            raw_spec,
            mountpoint,
            fstype,
            options: f
                .get(3)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "defaults".into()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_a_typical_fstab() {
        let t = "# /etc/fstab\n\
            /dev/mapper/vg_gold-root / xfs defaults 0 0\n\
            UUID=3F0E6A56-2a8d-4c55-9a0b-5d3c1e2f4a10 /boot ext4 defaults 1 2\n\
            /dev/vg_gold/home /home ext4 defaults 1 2\n\
            LABEL=data\\040disk /srv/data ext4 noauto 0 0\n\
            PARTUUID=abcd-01 /boot/efi vfat umask=0077 0 1\n\
            /dev/mapper/my--vg-lv--1 /var ext4 defaults 0 0\n\
            UUID=1234 none swap sw 0 0\n\
            server:/export /mnt/nfs nfs defaults 0 0\n\
            tmpfs /tmp tmpfs defaults 0 0\n\
            /dev/sda3 /opt ext4 defaults 0 0\n\
            /dev/disk/by-label/my\\040label /a ext4 defaults\n\
            broken\n";
        let e = parse(t);
        let specs: Vec<&Spec> = e.iter().map(|e| &e.spec).collect();
        assert_eq!(
            specs,
            vec![
                &Spec::Lv {
                    vg: "vg_gold".into(),
                    lv: "root".into()
                },
                &Spec::Uuid("3f0e6a56-2a8d-4c55-9a0b-5d3c1e2f4a10".into()),
                &Spec::Lv {
                    vg: "vg_gold".into(),
                    lv: "home".into()
                },
                &Spec::Label("data disk".into()),
                &Spec::PartUuid("abcd-01".into()),
                &Spec::Lv {
                    vg: "my-vg".into(),
                    lv: "lv-1".into()
                },
                &Spec::Path("/dev/sda3".into()),
                &Spec::Label("my label".into()),
            ]
        );
        assert_eq!(e[0].mountpoint, "/");
        assert_eq!(e[3].options, "noauto");
    }

    #[test]
    fn a_bad_byte_drops_one_line_and_says_which() {
        let mut t = b"UUID=a / xfs defaults\nUUID=b /boot ext4 defaults\n".to_vec();
        t.extend_from_slice(b"UUID=c /h\xffme ext4 defaults\nUUID=d / ext4 defaults\n");
        let (e, problems) = parse_bytes(&t);
        assert_eq!(e.len(), 3);
        assert!(problems[0].contains("line 3"), "{problems:?}");
        assert!(
            problems[1].contains("more than one entry for /"),
            "{problems:?}"
        );
    }
}
