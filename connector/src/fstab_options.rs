//! Which options of a clone's fstab line are carried over to goldmount's
//! mount of that filesystem: an allow-list of options that describe the
//! data's owner and view (`umask=0077` on an ESP, `noatime`, `acl`, SELinux
//! contexts…), each value validated strictly because it comes from an
//! untrusted clone. Everything else is dropped with the reason, and nothing
//! from the clone can loosen goldmount's own safety options (`nosuid,nodev`,
//! read-only when the volume is read-only).
//!
//! Decisions: `errors=remount-ro` is kept for ext2/3/4 (it only makes the
//! filesystem stop writing on an error); `errors=panic` is dropped (an error
//! in a clone must never panic this host). `nosuid`, `nodev` and `noexec`
//! are kept: they only restrict. `data=` is dropped on read-only mounts
//! (ext4 refuses it without the journal, which a read-only mount does not
//! load). btrfs `subvol=`/`subvolid=` are applied (validated, the path
//! normalised without its leading `/`; the kernel resolves it inside that
//! filesystem only and refuses what is not a subvolume): several lines on
//! one btrfs mount it once per subvolume.

use crate::manifest::DroppedOption;

/// Longest options field looked at; the rest is dropped as a whole.
const MAX_FIELD: usize = 4096;
/// Longest single option carried.
const MAX_OPTION: usize = 256;
/// Most options looked at on one line.
const MAX_OPTIONS: usize = 64;

/// Access-time behaviour asked by the fstab line (a per-mount flag, not a
/// filesystem option: `MS_NOATIME`, `MS_RELATIME`, `MS_STRICTATIME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Atime {
    /// `noatime`.
    NoAtime,
    /// `relatime` (also the kernel's default).
    Relatime,
    /// `strictatime`.
    StrictAtime,
}

/// What the mount of one fstab entry takes from its options field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carried {
    /// Filesystem options for the kernel's data string (validated).
    pub data: Vec<String>,
    /// The line says `ro`: mount read-only even when the volume is writable.
    pub read_only: bool,
    /// `noatime`/`relatime`/`strictatime` (the last one written wins).
    pub atime: Option<Atime>,
    /// `nodiratime`.
    pub nodiratime: bool,
    /// `noexec`.
    pub noexec: bool,
    /// `nosuid` (goldmount sets it anyway unless told otherwise).
    pub nosuid: bool,
    /// `nodev` (likewise).
    pub nodev: bool,
    /// btrfs `subvol=`, normalised (no leading `/`, no empty or `.`
    /// components; `""` is the top level). Applied: it is in `data`.
    pub subvol: Option<String>,
    /// btrfs `subvolid=`. Applied: it is in `data`.
    pub subvolid: Option<u64>,
    /// The options carried over, as written (for the manifest).
    pub kept: Vec<String>,
    /// The options not carried over, with the reason (for the manifest).
    pub dropped: Vec<DroppedOption>,
}

/// What the decision depends on besides the line itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    /// The volume is mounted read-only (a `rw` in the fstab never changes that).
    pub read_only: bool,
    /// This host's kernel runs SELinux (otherwise it refuses `context=`).
    pub selinux: bool,
}

/// True when this host's kernel runs SELinux.
pub fn selinux_enabled() -> bool {
    std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

/// What an allowed option does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// Goes into the data string.
    Data,
    /// `data=` of ext3/4: data string, but not on a read-only mount.
    JournalData,
    /// SELinux context: data string when the host runs SELinux.
    SeLinux,
    /// `ro`.
    ReadOnly,
    /// An access-time flag.
    Atime(Atime),
    /// `nodiratime`.
    NoDirAtime,
    /// `noexec`.
    NoExec,
    /// `nosuid`.
    NoSuid,
    /// `nodev`.
    NoDev,
    /// btrfs `subvol=`.
    Subvol,
    /// btrfs `subvolid=`.
    SubvolId,
}

/// Whether an option takes a value, and how it is checked.
type Check = fn(&str) -> Result<(), String>;

/// One allowed option.
struct Allowed {
    key: &'static str,
    /// blkid types it is carried for; empty: every type.
    fs: &'static [&'static str],
    /// `None`: a flag without value; `Some`: a value checked by this.
    value: Option<Check>,
    effect: Effect,
}

const FAT_LIKE: &[&str] = &["vfat", "exfat", "ntfs"];
const VFAT: &[&str] = &["vfat"];
const VFAT_EXFAT: &[&str] = &["vfat", "exfat"];
const EXT: &[&str] = &["ext2", "ext3", "ext4"];
const EXT_JOURNAL: &[&str] = &["ext3", "ext4"];
const ACL: &[&str] = &["ext2", "ext3", "ext4", "btrfs"];
const BTRFS: &[&str] = &["btrfs"];
const ANY: &[&str] = &[];

/// The allow-list.
const ALLOWED: &[Allowed] = &[
    Allowed {
        key: "ro",
        fs: ANY,
        value: None,
        effect: Effect::ReadOnly,
    },
    Allowed {
        key: "noatime",
        fs: ANY,
        value: None,
        effect: Effect::Atime(Atime::NoAtime),
    },
    Allowed {
        key: "relatime",
        fs: ANY,
        value: None,
        effect: Effect::Atime(Atime::Relatime),
    },
    Allowed {
        key: "strictatime",
        fs: ANY,
        value: None,
        effect: Effect::Atime(Atime::StrictAtime),
    },
    Allowed {
        key: "nodiratime",
        fs: ANY,
        value: None,
        effect: Effect::NoDirAtime,
    },
    Allowed {
        key: "noexec",
        fs: ANY,
        value: None,
        effect: Effect::NoExec,
    },
    Allowed {
        key: "nosuid",
        fs: ANY,
        value: None,
        effect: Effect::NoSuid,
    },
    Allowed {
        key: "nodev",
        fs: ANY,
        value: None,
        effect: Effect::NoDev,
    },
    Allowed {
        key: "umask",
        fs: FAT_LIKE,
        value: Some(mask),
        effect: Effect::Data,
    },
    Allowed {
        key: "fmask",
        fs: FAT_LIKE,
        value: Some(mask),
        effect: Effect::Data,
    },
    Allowed {
        key: "dmask",
        fs: FAT_LIKE,
        value: Some(mask),
        effect: Effect::Data,
    },
    Allowed {
        key: "uid",
        fs: FAT_LIKE,
        value: Some(id),
        effect: Effect::Data,
    },
    Allowed {
        key: "gid",
        fs: FAT_LIKE,
        value: Some(id),
        effect: Effect::Data,
    },
    Allowed {
        key: "shortname",
        fs: VFAT,
        value: Some(shortname),
        effect: Effect::Data,
    },
    Allowed {
        key: "utf8",
        fs: VFAT,
        value: None,
        effect: Effect::Data,
    },
    Allowed {
        key: "iocharset",
        fs: VFAT_EXFAT,
        value: Some(charset),
        effect: Effect::Data,
    },
    Allowed {
        key: "codepage",
        fs: VFAT,
        value: Some(codepage),
        effect: Effect::Data,
    },
    Allowed {
        key: "acl",
        fs: ACL,
        value: None,
        effect: Effect::Data,
    },
    Allowed {
        key: "noacl",
        fs: ACL,
        value: None,
        effect: Effect::Data,
    },
    Allowed {
        key: "user_xattr",
        fs: EXT,
        value: None,
        effect: Effect::Data,
    },
    Allowed {
        key: "errors",
        fs: EXT,
        value: Some(ext_errors),
        effect: Effect::Data,
    },
    Allowed {
        key: "data",
        fs: EXT_JOURNAL,
        value: Some(ext_data),
        effect: Effect::JournalData,
    },
    Allowed {
        key: "compress",
        fs: BTRFS,
        value: Some(compress),
        effect: Effect::Data,
    },
    Allowed {
        key: "compress-force",
        fs: BTRFS,
        value: Some(compress),
        effect: Effect::Data,
    },
    Allowed {
        key: "subvol",
        fs: BTRFS,
        value: Some(subvol),
        effect: Effect::Subvol,
    },
    Allowed {
        key: "subvolid",
        fs: BTRFS,
        value: Some(subvolid),
        effect: Effect::SubvolId,
    },
    Allowed {
        key: "context",
        fs: ANY,
        value: Some(se_context),
        effect: Effect::SeLinux,
    },
    Allowed {
        key: "fscontext",
        fs: ANY,
        value: Some(se_context),
        effect: Effect::SeLinux,
    },
    Allowed {
        key: "defcontext",
        fs: ANY,
        value: Some(se_context),
        effect: Effect::SeLinux,
    },
    Allowed {
        key: "rootcontext",
        fs: ANY,
        value: Some(se_context),
        effect: Effect::SeLinux,
    },
];

/// `compress` takes its value optionally; every other option either always
/// or never has one.
fn value_optional(key: &str) -> bool {
    matches!(key, "compress" | "compress-force")
}

fn mask(v: &str) -> Result<(), String> {
    let ok = (1..=4).contains(&v.len())
        && v.bytes().all(|b| (b'0'..=b'7').contains(&b))
        && u32::from_str_radix(v, 8).is_ok_and(|m| m <= 0o777);
    ok.then_some(())
        .ok_or_else(|| "expected an octal mask from 0 to 0777".into())
}

fn id(v: &str) -> Result<(), String> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return match v.parse::<u32>() {
            Ok(n) if n != u32::MAX => Ok(()),
            _ => Err("expected a numeric id below 4294967295".into()),
        };
    }
    Err("names a user or group of the original host; only numeric ids are carried".into())
}

fn shortname(v: &str) -> Result<(), String> {
    matches!(v, "lower" | "win95" | "winnt" | "mixed")
        .then_some(())
        .ok_or_else(|| "expected lower, win95, winnt or mixed".into())
}

fn charset(v: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(()).ok_or_else(|| {
        "expected a character set name (letters, digits, - and _, at most 32)".into()
    })
}

fn codepage(v: &str) -> Result<(), String> {
    let ok = (1..=4).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_digit())
        && v.parse::<u16>().is_ok_and(|n| n > 0);
    ok.then_some(())
        .ok_or_else(|| "expected a code page number from 1 to 9999".into())
}

fn ext_errors(v: &str) -> Result<(), String> {
    match v {
        "remount-ro" => Ok(()),
        "panic" => Err("would panic this host when the clone's filesystem has an error".into()),
        _ => Err("only errors=remount-ro is carried".into()),
    }
}

fn ext_data(v: &str) -> Result<(), String> {
    matches!(v, "journal" | "ordered" | "writeback")
        .then_some(())
        .ok_or_else(|| "expected journal, ordered or writeback".into())
}

fn compress(v: &str) -> Result<(), String> {
    let bad = || "expected zlib[:1-9], lzo, zstd[:1-15], no or none".to_string();
    let (alg, level) = match v.split_once(':') {
        Some((a, l)) => (a, Some(l)),
        None => (v, None),
    };
    let max = match alg {
        "zlib" => 9,
        "zstd" => 15,
        "lzo" | "no" | "none" => 0,
        _ => return Err(bad()),
    };
    match level {
        None => Ok(()),
        Some(l) if (1..=2).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_digit()) => {
            match l.parse::<u8>() {
                Ok(n) if n >= 1 && n <= max => Ok(()),
                _ => Err(bad()),
            }
        }
        Some(_) => Err(bad()),
    }
}

fn subvol(v: &str) -> Result<(), String> {
    let ok = (1..=MAX_SUBVOL).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.@+/-".contains(&b))
        && !v.split('/').any(|c| c == "..");
    ok.then_some(()).ok_or_else(|| {
        format!(
            "expected a subvolume path (letters, digits, _ . @ + - /, no .., at most {MAX_SUBVOL})"
        )
    })
}

/// Longest `subvol=` path carried (the kernel's own limit is PATH_MAX; an
/// installer's is a few dozen bytes: `@/.snapshots/1/snapshot`).
const MAX_SUBVOL: usize = 255;

/// A valid `subvol=` value in one spelling: without leading `/`, without
/// empty or `.` components (`/@//home/.` → `@/home`; `/` → `""`, the top
/// level). What the kernel mounts is the same either way; the normal form
/// tells two lines naming one subvolume apart from two subvolumes.
pub fn normalise_subvol(v: &str) -> String {
    v.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

fn subvolid(v: &str) -> Result<(), String> {
    let ok = (1..=20).contains(&v.len())
        && v.bytes().all(|b| b.is_ascii_digit())
        && v.parse::<u64>().is_ok();
    ok.then_some(())
        .ok_or_else(|| "expected a subvolume id (a number)".into())
}

fn se_context(v: &str) -> Result<(), String> {
    let inner = match v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(i) => i,
        None => v,
    };
    let ok = (3..=255).contains(&inner.len())
        && inner.contains(':')
        && inner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:,-".contains(&b))
        // A comma (category list) must be inside quotes or it splits the option.
        && (!inner.contains(',') || inner.len() + 2 == v.len());
    ok.then_some(()).ok_or_else(|| {
        "expected an SELinux context user:role:type[:level] (letters, digits, _ . : , -; quoted if it has a comma)".into()
    })
}

/// Splits an options field at commas outside double quotes (an SELinux
/// context with categories is written `context="…:s0:c1,c2"`).
fn split_options(field: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in field.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&field[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&field[start..]);
    out.into_iter().filter(|o| !o.is_empty()).collect()
}

/// Why an option outside the allow-list is dropped, for the kinds that
/// could harm the host or mean nothing here.
fn known_drop(key: &str, value: Option<&str>) -> Option<String> {
    Some(match key {
        "suid" | "dev" | "exec" => format!(
            "{key} would override goldmount's safety options for clone data (nosuid,nodev)"
        ),
        "defaults" | "auto" | "noauto" | "nofail" | "_netdev" | "user" | "users" | "nouser"
        | "owner" | "group" | "sw" | "pri" => {
            "a mount(8)/systemd keyword, not a filesystem option (goldmount decides when to mount, and skips a failed nofail entry itself)".into()
        }
        "loop" | "offset" | "sizelimit" | "encryption" => {
            "loop device setup of the original host: goldmount maps devices itself".into()
        }
        k if k.starts_with("x-systemd.") => {
            "a systemd option of the original host: means nothing to this mount".into()
        }
        k if k.starts_with("x-") || k == "comment" => {
            "a userspace-only option (x-*, comment=): means nothing to the kernel".into()
        }
        _ if value.is_some_and(|v| v.starts_with('/')) => format!(
            "its value is a path on the original host ({}): never carried",
            value.unwrap_or_default()
        ),
        _ => return None,
    })
}

/// Sorts the options field of a clone's fstab line into what goldmount's
/// mount of filesystem type `fs_type` (blkid TYPE) carries over and what it
/// drops, with the reason for each drop.
pub fn carry(fs_type: &str, field: &str, ctx: Context) -> Carried {
    let mut c = Carried::default();
    let drop = |c: &mut Carried, option: &str, reason: String| {
        c.dropped.push(DroppedOption {
            option: option.chars().take(MAX_OPTION).collect(),
            reason,
        })
    };
    let (field, overflow) = match field.get(..MAX_FIELD) {
        Some(head) if field.len() > MAX_FIELD => (head, true),
        _ => (field, false),
    };
    if overflow {
        drop(
            &mut c,
            "…",
            format!("the options field is longer than {MAX_FIELD} bytes: the rest was not read"),
        );
    }
    let opts = split_options(field);
    for (n, opt) in opts.iter().enumerate() {
        if n == MAX_OPTIONS {
            drop(
                &mut c,
                "…",
                format!(
                    "{} more options not read (at most {MAX_OPTIONS} are)",
                    opts.len() - MAX_OPTIONS
                ),
            );
            break;
        }
        if opt.len() > MAX_OPTION {
            drop(&mut c, opt, format!("longer than {MAX_OPTION} bytes"));
            continue;
        }
        if !opt.bytes().all(|b| b.is_ascii_graphic()) {
            drop(
                &mut c,
                opt,
                "contains characters other than printable ASCII".into(),
            );
            continue;
        }
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (*opt, None),
        };
        if key == "rw" && value.is_none() {
            if ctx.read_only {
                drop(
                    &mut c,
                    opt,
                    "the volume is read-only: the fstab's rw does not make it writable".into(),
                );
            } else {
                c.kept.push(opt.to_string());
            }
            continue;
        }
        let rules: Vec<&Allowed> = ALLOWED.iter().filter(|a| a.key == key).collect();
        if rules.is_empty() {
            let why = known_drop(key, value).unwrap_or_else(|| {
                "not on goldmount's allow-list (only options that describe the data's owner and view are carried)".into()
            });
            drop(&mut c, opt, why);
            continue;
        }
        let Some(rule) = rules
            .into_iter()
            .find(|a| a.fs.is_empty() || a.fs.contains(&fs_type))
        else {
            drop(&mut c, opt, format!("not an option of {fs_type}"));
            continue;
        };
        match (rule.value, value) {
            (None, Some(_)) => {
                drop(&mut c, opt, format!("{key} takes no value"));
                continue;
            }
            (Some(_), None) if !value_optional(key) => {
                drop(&mut c, opt, format!("{key} needs a value"));
                continue;
            }
            (Some(check), Some(v)) => {
                if let Err(why) = check(v) {
                    drop(&mut c, opt, format!("invalid value: {why}"));
                    continue;
                }
            }
            _ => {}
        }
        match rule.effect {
            Effect::Data => c.data.push(opt.to_string()),
            Effect::JournalData if ctx.read_only => {
                drop(&mut c, opt, "a read-only mount does not load the journal, and ext4 refuses data= without it".into());
                continue;
            }
            Effect::JournalData => c.data.push(opt.to_string()),
            Effect::SeLinux if !ctx.selinux => {
                drop(
                    &mut c,
                    opt,
                    "this host does not run SELinux: the kernel would refuse the option".into(),
                );
                continue;
            }
            Effect::SeLinux => c.data.push(opt.to_string()),
            Effect::ReadOnly => c.read_only = true,
            Effect::Atime(a) => c.atime = Some(a),
            Effect::NoDirAtime => c.nodiratime = true,
            Effect::NoExec => c.noexec = true,
            Effect::NoSuid => c.nosuid = true,
            Effect::NoDev => c.nodev = true,
            Effect::Subvol => {
                let norm = normalise_subvol(value.unwrap_or_default());
                // The last one written wins, as in the kernel.
                c.data.retain(|d| !d.starts_with("subvol="));
                c.data.push(format!("subvol=/{norm}"));
                c.subvol = Some(norm);
            }
            Effect::SubvolId => {
                c.data.retain(|d| !d.starts_with("subvolid="));
                c.subvolid = value.and_then(|v| v.parse().ok());
                c.data.extend(c.subvolid.map(|n| format!("subvolid={n}")));
            }
        }
        c.kept.push(opt.to_string());
    }
    c
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const RW: Context = Context {
        read_only: false,
        selinux: false,
    };

    fn reason<'a>(c: &'a Carried, opt: &str) -> &'a str {
        c.dropped
            .iter()
            .find(|d| d.option == opt)
            .map(|d| d.reason.as_str())
            .unwrap_or_else(|| panic!("{opt} not dropped: {c:?}"))
    }

    #[test]
    fn an_esp_line_keeps_its_owner_and_view() {
        // Debian/Ubuntu's ESP line, and Fedora's.
        let c = carry("vfat", "umask=0077,shortname=winnt", RW);
        assert_eq!(c.data, vec!["umask=0077", "shortname=winnt"]);
        assert_eq!(c.kept, c.data);
        assert!(c.dropped.is_empty());
        let c = carry(
            "vfat",
            "umask=0077,shortname=winnt,x-systemd.automount,nofail",
            RW,
        );
        assert_eq!(c.data, vec!["umask=0077", "shortname=winnt"]);
        assert!(reason(&c, "x-systemd.automount").contains("systemd"));
        assert!(reason(&c, "nofail").contains("mount(8)"));
        let c = carry(
            "vfat",
            "rw,uid=1000,gid=100,fmask=0133,dmask=022,utf8,iocharset=iso8859-1,codepage=437",
            RW,
        );
        assert_eq!(
            c.data,
            vec![
                "uid=1000",
                "gid=100",
                "fmask=0133",
                "dmask=022",
                "utf8",
                "iocharset=iso8859-1",
                "codepage=437"
            ]
        );
        assert_eq!(c.kept[0], "rw");
    }

    #[test]
    fn values_from_the_clone_are_validated() {
        let c = carry(
            "vfat",
            "umask=1777,umask=0x1f,uid=root,uid=4294967295,gid=-1,shortname=dos,iocharset=../../x,codepage=99999,umask=",
            RW,
        );
        assert!(c.data.is_empty(), "{c:?}");
        assert_eq!(c.dropped.len(), 9, "{c:?}");
        assert!(reason(&c, "umask=1777").contains("octal mask"));
        assert!(reason(&c, "uid=root").contains("original host"));
        assert!(reason(&c, "uid=4294967295").contains("below"));
        assert!(reason(&c, "iocharset=../../x").contains("character set"));
        assert!(reason(&c, "umask=").contains("octal"));
        let long = format!("iocharset={}", "a".repeat(300));
        let c = carry("vfat", &long, RW);
        assert!(c.dropped[0].reason.contains("longer than 256"));
        assert!(c.dropped[0].option.len() <= 256);
        let c = carry("vfat", "umask=0077,\u{e9}t\u{e9}=1", RW);
        assert_eq!(c.data, vec!["umask=0077"]);
        assert!(c.dropped[0].reason.contains("printable ASCII"));
        let many = vec!["noatime"; 100].join(",");
        let c = carry("ext4", &many, RW);
        assert_eq!(c.kept.len(), 64);
        assert!(c.dropped[0].reason.contains("36 more options"));
    }

    #[test]
    fn what_could_harm_the_host_is_dropped() {
        let c = carry(
            "ext4",
            "defaults,suid,dev,exec,loop=/dev/loop0,offset=1048576,_netdev,user,users,owner,noauto,x-gvfs-show,comment=x,journal_path=/dev/sdb1,errors=panic,usrjquota=aquota.user",
            RW,
        );
        assert!(c.kept.is_empty() && c.data.is_empty(), "{c:?}");
        assert!(reason(&c, "suid").contains("nosuid,nodev"));
        assert!(reason(&c, "dev").contains("nosuid,nodev"));
        assert!(reason(&c, "exec").contains("safety"));
        assert!(reason(&c, "loop=/dev/loop0").contains("loop device"));
        assert!(reason(&c, "offset=1048576").contains("loop device"));
        assert!(reason(&c, "journal_path=/dev/sdb1").contains("path on the original host"));
        assert!(reason(&c, "errors=panic").contains("panic this host"));
        assert!(reason(&c, "usrjquota=aquota.user").contains("allow-list"));
        assert!(reason(&c, "x-gvfs-show").contains("userspace"));
        assert!(reason(&c, "defaults").contains("keyword"));
        // Restrictive flags are kept.
        let c = carry("ext4", "nosuid,nodev,noexec", RW);
        assert!(c.nosuid && c.nodev && c.noexec);
    }

    #[test]
    fn ext4_xfs_and_btrfs_lines_as_installers_write_them() {
        // Ubuntu's root, Debian's root.
        let c = carry("ext4", "defaults", RW);
        assert!(c.kept.is_empty() && c.dropped.len() == 1);
        let c = carry(
            "ext4",
            "errors=remount-ro,noatime,acl,user_xattr,data=ordered",
            RW,
        );
        assert_eq!(
            c.data,
            vec!["errors=remount-ro", "acl", "user_xattr", "data=ordered"]
        );
        assert_eq!(c.atime, Some(Atime::NoAtime));
        assert_eq!(c.kept.len(), 5);
        // data= cannot go with the journal a read-only mount does not load.
        let ro = Context {
            read_only: true,
            selinux: false,
        };
        let c = carry("ext4", "rw,data=journal,relatime", ro);
        assert!(c.data.is_empty());
        assert_eq!(c.atime, Some(Atime::Relatime));
        assert!(reason(&c, "rw").contains("read-only"));
        assert!(reason(&c, "data=journal").contains("journal"));
        // XFS knows neither acl nor user_xattr; atime flags go to every type.
        let c = carry("xfs", "defaults,noatime,nodiratime,acl,inode64", RW);
        assert!(c.data.is_empty());
        assert!(c.nodiratime && c.atime == Some(Atime::NoAtime));
        assert!(reason(&c, "acl").contains("not an option of xfs"));
        // Fedora's btrfs lines.
        let c = carry(
            "btrfs",
            "subvol=root,compress=zstd:1,x-systemd.device-timeout=0",
            RW,
        );
        assert_eq!(c.data, vec!["subvol=/root", "compress=zstd:1"]);
        assert_eq!(c.subvol.as_deref(), Some("root"));
        assert_eq!(c.kept[0], "subvol=root");
        let c = carry(
            "btrfs",
            "subvolid=256,compress-force,compress=zstd:16,subvol=../x,ssd",
            RW,
        );
        assert_eq!(c.subvolid, Some(256));
        assert_eq!(c.subvol, None);
        assert_eq!(c.data, vec!["subvolid=256", "compress-force"]);
        assert!(reason(&c, "compress=zstd:16").contains("zstd[:1-15]"));
        assert!(reason(&c, "subvol=../x").contains("no .."));
        assert!(reason(&c, "ssd").contains("allow-list"));
        // `ro` of the line makes that mount read-only.
        assert!(carry("ext4", "ro,noatime", RW).read_only);
        assert!(reason(&carry("ext4", "noatime=1", RW), "noatime=1").contains("no value"));
    }

    #[test]
    fn btrfs_subvolumes_are_applied_in_one_spelling() {
        // openSUSE writes absolute paths, Ubuntu `@`, Fedora `root`.
        let c = carry("btrfs", "subvol=/@/.snapshots", RW);
        assert_eq!(c.data, vec!["subvol=/@/.snapshots"]);
        assert_eq!(c.subvol.as_deref(), Some("@/.snapshots"));
        assert_eq!(normalise_subvol("//@//home/./"), "@/home");
        assert_eq!(normalise_subvol("/"), "");
        // The last subvol= wins, once; read-only volumes select it too.
        let ro = Context {
            read_only: true,
            selinux: false,
        };
        let c = carry("btrfs", "subvol=a,subvol=/b,subvolid=0257,subvolid=258", ro);
        assert_eq!(c.data, vec!["subvol=/b", "subvolid=258"]);
        assert_eq!((c.subvol.as_deref(), c.subvolid), (Some("b"), Some(258)));
        // Untrusted values: climbing, commas smuggled in quotes, NUL, too long,
        // ids that are not numbers; and subvol= means nothing to ext4.
        let long = format!("subvol={}", "a".repeat(256));
        for bad in [
            "subvol=@/../../etc",
            "subvol=..",
            "subvol=\"a,b\"",
            "subvol=a\0b",
            "subvol=",
            long.as_str(),
            "subvolid=-1",
            "subvolid=0x100",
            "subvolid=99999999999999999999",
        ] {
            let c = carry("btrfs", bad, RW);
            assert!(c.subvol.is_none() && c.subvolid.is_none(), "{bad}: {c:?}");
            assert!(c.data.is_empty() && c.dropped.len() == 1, "{bad}: {c:?}");
        }
        assert!(reason(&carry("ext4", "subvol=root", RW), "subvol=root")
            .contains("not an option of ext4"));
    }

    #[test]
    fn selinux_contexts_are_carried_only_where_selinux_runs() {
        let field =
            "context=\"system_u:object_r:httpd_sys_content_t:s0:c1,c2\",defcontext=system_u:object_r:tmp_t:s0";
        assert_eq!(
            split_options(field),
            vec![
                "context=\"system_u:object_r:httpd_sys_content_t:s0:c1,c2\"",
                "defcontext=system_u:object_r:tmp_t:s0"
            ]
        );
        let se = Context {
            read_only: false,
            selinux: true,
        };
        let c = carry("xfs", field, se);
        assert_eq!(c.data.len(), 2, "{c:?}");
        let c = carry("xfs", field, RW);
        assert!(c.data.is_empty());
        assert!(c.dropped[0].reason.contains("SELinux"));
        let c = carry("xfs", "context=system_u:object_r:x_t:s0;rm", se);
        assert!(c.dropped[0].reason.contains("SELinux context"));
    }
}
