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
    /// `/dev/disk/by-id/dm-uuid-LVM-<VG UUID><LV UUID>` (what Ubuntu's
    /// installer writes for `/`): both UUIDs without dashes, as the original
    /// host's LVM had them (vgimportclone changes the VG's, not the LV's).
    LvmUuid {
        /// The VG UUID in the gold copy, 32 characters, no dashes.
        vg_uuid: String,
        /// The LV UUID, 32 characters, no dashes.
        lv_uuid: String,
    },
    /// A name that is known never to resolve on another host (a PV, the
    /// original host's hardware path or disk serial, a kernel device name…):
    /// why, for the manifest's `unresolved` list.
    Unresolvable(String),
    /// Another device path: cannot be trusted on another host.
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

/// Decodes udev's escapes in `/dev/disk/by-*` link names (`\x2f` for `/`,
/// `\x20` for a space…: udev writes every byte it does not allow in a link
/// name as `\xNN`). Invalid UTF-8 after decoding is replaced, never trusted.
pub fn udev_unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            let hex = b
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// True for a 32-character LVM UUID without dashes.
fn is_lvm_uuid(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Kernel device names of the original host (`sda1`, `nvme0n1p2`, `vdb`,
/// `dm-3`, `md0`…): names given by probe order and hardware.
fn kernel_device_kind(name: &str) -> Option<&'static str> {
    let starts = |p: &str| {
        name.strip_prefix(p)
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_alphanumeric()))
    };
    if starts("dm-") {
        return Some("a device-mapper minor number");
    }
    if name.starts_with("md") && name[2..].starts_with(|c: char| c.is_ascii_digit()) {
        return Some("an md RAID array (arrays are not assembled from clones)");
    }
    for p in [
        "sd", "vd", "hd", "xvd", "nvme", "mmcblk", "loop", "sr", "nbd", "rbd", "zd",
    ] {
        if starts(p) {
            return Some("a kernel disk name");
        }
    }
    None
}

/// What a `/dev/disk/by-id/<id>` link names.
fn parse_by_id(id: &str) -> Spec {
    if let Some(u) = id.strip_prefix("dm-uuid-LVM-") {
        if u.len() == 64 && is_lvm_uuid(&u[..32]) && is_lvm_uuid(&u[32..]) {
            return Spec::LvmUuid {
                vg_uuid: u[..32].to_string(),
                lv_uuid: u[32..].to_string(),
            };
        }
        if u.len() > 65 && is_lvm_uuid(&u[..32]) && is_lvm_uuid(&u[32..64]) {
            return Spec::Unresolvable(format!(
                "names an internal layer ({}) of an LVM volume, not a filesystem the original host mounted",
                &u[64..]
            ));
        }
        return Spec::Unresolvable(format!(
            "malformed LVM device-mapper UUID {u:?}: expected 64 characters (VG UUID and LV UUID without dashes)"
        ));
    }
    if let Some(n) = id.strip_prefix("dm-name-") {
        if n.starts_with("luks-") {
            return Spec::Unresolvable(format!(
                "names the dm-crypt mapping {n} of the original host: goldmount does not open encrypted volumes"
            ));
        }
        if let Some((vg, lv)) = lvm::dm::split_dm_name(n) {
            return Spec::Lv { vg, lv };
        }
        return Spec::Unresolvable(format!(
            "names the device-mapper device {n} of the original host, which is not an LVM volume (VG-LV)"
        ));
    }
    if let Some(u) = id.strip_prefix("dm-uuid-") {
        let what = if u.starts_with("CRYPT-") {
            "a dm-crypt mapping: goldmount does not open encrypted volumes".to_string()
        } else if u.starts_with("mpath-") || u.contains("-mpath-") {
            "a multipath device of the original host's SAN".to_string()
        } else {
            format!("a device-mapper device ({u}) that is not an LVM volume")
        };
        return Spec::Unresolvable(format!("names {what}"));
    }
    if let Some(u) = id.strip_prefix("lvm-pv-uuid-") {
        return Spec::Unresolvable(format!(
            "names the LVM physical volume {u}, not a filesystem: a PV cannot be mounted (its logical volumes can)"
        ));
    }
    if id.starts_with("md-uuid-") || id.starts_with("md-name-") {
        return Spec::Unresolvable(format!(
            "names the md RAID array {id} of the original host: arrays are not assembled from clones"
        ));
    }
    Spec::Unresolvable(format!(
        "names a disk of the original host by its hardware identity ({id}: serial number, WWN or bus); the clone is another device, so it cannot be matched"
    ))
}

/// What a `/dev/disk/by-<kind>/<rest>` link names.
fn parse_by_link(kind: &str, rest: &str) -> Spec {
    let v = udev_unescape(rest);
    match kind {
        "by-uuid" => Spec::Uuid(v.to_lowercase()),
        "by-label" => Spec::Label(v),
        "by-partuuid" => Spec::PartUuid(v.to_lowercase()),
        "by-partlabel" => Spec::PartLabel(v),
        "by-id" => parse_by_id(rest),
        "by-path" => Spec::Unresolvable(format!(
            "names a hardware path of the original host ({rest}: controller, port, LUN); the clone is reached through another path here"
        )),
        "by-diskseq" => Spec::Unresolvable(format!(
            "names the original host's disk sequence number {rest}, which counts that host's boots and hotplugs"
        )),
        other => Spec::Unresolvable(format!(
            "names a /dev/disk/{other} link of the original host, which cannot be matched on this host"
        )),
    }
}

/// Parses the device field of an fstab line (already fstab-unescaped).
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
    if let Some(v) = raw.strip_prefix("/dev/disk/") {
        return match v.split_once('/') {
            Some((kind, rest)) if !rest.is_empty() && !rest.contains('/') => {
                parse_by_link(kind, rest)
            }
            _ => Spec::Path(raw.to_string()),
        };
    }
    if let Some(v) = raw.strip_prefix("/dev/mapper/") {
        if let Some((vg, lv)) = lvm::dm::split_dm_name(v) {
            return Spec::Lv { vg, lv };
        }
    }
    if let Some(v) = raw.strip_prefix("/dev/") {
        let parts: Vec<&str> = v.split('/').collect();
        if parts.len() == 2 && parts[0] == "md" {
            return Spec::Unresolvable(format!(
                "names the md RAID array {v} of the original host: arrays are not assembled from clones"
            ));
        }
        if parts.len() == 2 && !["disk", "mapper"].contains(&parts[0]) {
            return Spec::Lv {
                vg: parts[0].to_string(),
                lv: parts[1].to_string(),
            };
        }
        if let [name] = parts.as_slice() {
            if let Some(what) = kernel_device_kind(name) {
                return Spec::Unresolvable(format!(
                    "{raw} is {what} on the original host: such names follow that host's hardware and probe order, so the clone's filesystems cannot be matched by it (name it by UUID= in the fstab)"
                ));
            }
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
                &Spec::Unresolvable(
                    "/dev/sda3 is a kernel disk name on the original host: such names follow that host's hardware and probe order, so the clone's filesystems cannot be matched by it (name it by UUID= in the fstab)".into()
                ),
                &Spec::Label("my label".into()),
            ]
        );
        assert_eq!(e[0].mountpoint, "/");
        assert_eq!(e[3].options, "noauto");
    }

    #[test]
    fn every_dev_disk_by_form_parses() {
        let vg = "Zx5bQk1mN2pL3oR4sT5uV6wX7yZ8aB9c";
        let lv = "dE0fG1hI2jK3lM4nO5pQ6rS7tU8vW9xY";
        let un = |raw: &str, want: &str| match parse_spec(raw) {
            Spec::Unresolvable(why) => assert!(why.contains(want), "{raw}: {why}"),
            other => panic!("{raw}: {other:?}"),
        };
        assert_eq!(
            parse_spec(&format!("/dev/disk/by-id/dm-uuid-LVM-{vg}{lv}")),
            Spec::LvmUuid {
                vg_uuid: vg.into(),
                lv_uuid: lv.into()
            }
        );
        assert_eq!(
            parse_spec("/dev/disk/by-id/dm-name-ubuntu--vg-ubuntu--lv"),
            Spec::Lv {
                vg: "ubuntu-vg".into(),
                lv: "ubuntu-lv".into()
            }
        );
        assert_eq!(
            parse_spec("/dev/disk/by-uuid/B2C4-1F3E"),
            Spec::Uuid("b2c4-1f3e".into())
        );
        assert_eq!(
            parse_spec("/dev/disk/by-label/data\\x2fbackup\\x20one"),
            Spec::Label("data/backup one".into())
        );
        assert_eq!(
            parse_spec("/dev/disk/by-partlabel/EFI\\x20System\\x20Partition"),
            Spec::PartLabel("EFI System Partition".into())
        );
        assert_eq!(
            parse_spec("/dev/disk/by-partuuid/5E1C0A2B-3D4F-4A6B-9C8D-7E6F5A4B3C2D"),
            Spec::PartUuid("5e1c0a2b-3d4f-4a6b-9c8d-7e6f5a4b3c2d".into())
        );
        un(
            &format!("/dev/disk/by-id/dm-uuid-LVM-{vg}{lv}-tpool"),
            "internal layer (-tpool)",
        );
        un(&format!("/dev/disk/by-id/dm-uuid-LVM-{vg}"), "malformed");
        un(
            "/dev/disk/by-id/lvm-pv-uuid-hV3bEk-Aq9z-Xc2D-Lm4N-oP6q-Rs8T-uV0wXy",
            "physical volume hV3bEk-Aq9z-Xc2D-Lm4N-oP6q-Rs8T-uV0wXy, not a filesystem",
        );
        un(
            "/dev/disk/by-id/dm-uuid-CRYPT-LUKS2-6f1c2b3a4d5e4f60a1b2c3d4e5f60718-luks-6f1c",
            "dm-crypt",
        );
        un("/dev/disk/by-id/dm-name-luks-6f1c2b3a", "dm-crypt");
        un("/dev/disk/by-id/dm-name-mpatha", "not an LVM volume");
        un("/dev/disk/by-id/dm-uuid-mpath-36001405abcdef", "multipath");
        un(
            "/dev/disk/by-id/md-uuid-1a2b3c4d:5e6f7a8b:9c0d1e2f:3a4b5c6d",
            "md RAID",
        );
        for hw in [
            "wwn-0x5000c500a1b2c3d4-part3",
            "ata-Samsung_SSD_860_EVO_500GB_S3Z1NB0K123456A-part1",
            "nvme-eui.0025388b91b2c3d4-part2",
            "scsi-36000c29d1e2f3a4b5c6d7e8f9a0b1c2d-part1",
            "virtio-b2c41f3e-part1",
        ] {
            un(&format!("/dev/disk/by-id/{hw}"), "hardware identity");
        }
        un(
            "/dev/disk/by-path/pci-0000:00:1f.2-ata-1-part2",
            "hardware path of the original host (pci-0000:00:1f.2-ata-1-part2",
        );
        un("/dev/disk/by-diskseq/12-part1", "disk sequence");
        un("/dev/disk/by-loop-ref/x", "by-loop-ref");
        for dev in [
            "/dev/sdb1",
            "/dev/nvme0n1p3",
            "/dev/vda1",
            "/dev/xvda2",
            "/dev/mmcblk0p2",
        ] {
            un(dev, "kernel disk name");
        }
        un("/dev/dm-3", "device-mapper minor");
        un("/dev/md0", "md RAID");
        un("/dev/md/root", "md RAID");
        assert_eq!(parse_spec("/dev/root"), Spec::Path("/dev/root".into()));
        assert_eq!(
            parse_spec("/dev/disk/by-uuid/a/b"),
            Spec::Path("/dev/disk/by-uuid/a/b".into())
        );
        assert_eq!(udev_unescape("a\\x5cb\\xzz\\x2"), "a\\b\\xzz\\x2");
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
