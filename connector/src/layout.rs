//! Where each filesystem goes under the volume path: the original host's tree
//! from the clone's own fstab, or one readable directory per filesystem.

use std::collections::{HashMap, HashSet};

use hostfs::clonefs::ClonePath;

use crate::discover::Candidate;
use crate::fstab::{Entry, Spec};
use crate::manifest::UnresolvedEntry;

/// One planned mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Index into the candidate list.
    pub cand: usize,
    /// Mount point inside the volume (resolved against the volume's root
    /// directory fd when mounted, never joined as a string).
    pub mount_point: ClonePath,
    /// Mountpoint on the original host, when known from fstab.
    pub original: Option<String>,
    /// The fstab entry says `nofail`: a failed mount is skipped, not fatal.
    pub nofail: bool,
    /// The fstab entry's options field as written (`None` in the flat
    /// layout): what the allow-list in [`crate::fstab_options`] carries over.
    pub options: Option<String>,
    /// The btrfs subvolume this mount selects: the fstab line's `subvol=`
    /// (normalised) or `subvolid=`; for `/` whose line names none, where
    /// the fstab was found (set by the pipeline). `None`: the filesystem's
    /// default subvolume, as a plain mount gives.
    pub subvolume: Option<Subvolume>,
}

/// A btrfs subvolume named by an fstab line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subvolume {
    /// By path from the top level, normalised by
    /// [`crate::fstab_options::normalise_subvol`] (`""` is the top level).
    Path(String),
    /// By id (`subvolid=`; 5 is the top level).
    Id(u64),
}

impl Subvolume {
    /// The mount option that selects it.
    pub fn option(&self) -> String {
        match self {
            Subvolume::Path(p) => format!("subvol=/{p}"),
            Subvolume::Id(n) => format!("subvolid={n}"),
        }
    }
}

impl std::fmt::Display for Subvolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subvolume::Path(p) => write!(f, "/{p}"),
            Subvolume::Id(n) => write!(f, "id {n}"),
        }
    }
}

/// Most mounts of one filesystem an fstab may ask for (one per btrfs
/// subvolume; openSUSE writes about a dozen). A clone's fstab is untrusted:
/// it must not make goldmount mount one filesystem thousands of times.
pub const MAX_MOUNTS_PER_FILESYSTEM: usize = 64;

/// Which subvolume a btrfs fstab line selects (`None`: the default), or why
/// its `subvol=`/`subvolid=` was refused (the line is then not mounted:
/// another subvolume in its place would be a different tree).
fn btrfs_subvolume(options: &str) -> Result<Option<Subvolume>, String> {
    let ctx = crate::fstab_options::Context {
        read_only: false,
        selinux: false,
    };
    let c = crate::fstab_options::carry("btrfs", options, ctx);
    if let Some(d) = c
        .dropped
        .iter()
        .find(|d| d.option.starts_with("subvol=") || d.option.starts_with("subvolid="))
    {
        return Err(format!(
            "its btrfs subvolume option {} was refused ({}); not mounted with another subvolume in its place",
            d.option, d.reason
        ));
    }
    Ok(match (c.subvol, c.subvolid) {
        (Some(p), _) => Some(Subvolume::Path(p)),
        (None, Some(n)) => Some(Subvolume::Id(n)),
        (None, None) => None,
    })
}

/// Keeps names readable and safe as a single path component.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches('.').to_string();
    if s.is_empty() {
        "fs".to_string()
    } else {
        s
    }
}

/// A stable, readable name for a filesystem: its LV name, else its label,
/// else `p<N>`, else `disk`.
pub fn flat_name(c: &Candidate) -> String {
    if let Some((_, lv)) = &c.lv {
        return sanitize(lv);
    }
    if let Some(l) = c.signature.label() {
        return sanitize(&l);
    }
    match c.partition {
        Some(n) => format!("p{n}"),
        None => "disk".to_string(),
    }
}

/// Each filesystem at `<volume>/<name>`, names made unique with `-2`, `-3`…
pub fn flat(cands: &[Candidate]) -> Vec<Planned> {
    let mut used = HashSet::new();
    let mut out = Vec::new();
    for (i, c) in cands.iter().enumerate() {
        let base = flat_name(c);
        let mut name = base.clone();
        let mut n = 2;
        while !used.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        // `name` is sanitised to one safe component, so this cannot fail.
        if let Ok(mount_point) = ClonePath::parse(&name) {
            out.push(Planned {
                cand: i,
                mount_point,
                original: None,
                nofail: false,
                options: None,
                subvolume: None,
            });
        }
    }
    out
}

/// Which candidate an fstab entry names, or why none does.
pub fn resolve(e: &Entry, cands: &[Candidate]) -> Result<usize, String> {
    let find = |f: &dyn Fn(&Candidate) -> bool| cands.iter().position(f);
    let hit = match &e.spec {
        Spec::Uuid(u) => find(&|c| {
            c.signature
                .uuid()
                .is_some_and(|x| x.eq_ignore_ascii_case(u))
        }),
        Spec::Label(l) => find(&|c| c.signature.label().as_deref() == Some(l.as_str())),
        Spec::PartUuid(u) => find(&|c| {
            c.part_uuid
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(u))
        }),
        Spec::PartLabel(l) => find(&|c| c.part_name.as_deref() == Some(l.as_str())),
        Spec::Lv { vg, lv } => {
            match find(&|c| c.lv.as_ref().is_some_and(|(v, l)| v == vg && l == lv)) {
                Some(i) => Some(i),
                None => {
                    return Err(format!(
                        "logical volume {vg}/{lv} is not among this clone's filesystems"
                    ))
                }
            }
        }
        Spec::LvmUuid { vg_uuid, lv_uuid } => return resolve_lvm_uuid(vg_uuid, lv_uuid, cands),
        Spec::Unresolvable(why) => return Err(why.clone()),
        Spec::Path(p) => {
            return Err(format!(
                "{p} is a device path of the original host and cannot be resolved here"
            ))
        }
    };
    hit.ok_or_else(|| format!("no filesystem of this clone matches {}", e.raw_spec))
}

/// The logical volume a `dm-uuid-LVM-<VG UUID><LV UUID>` link names: the
/// one with that LV UUID whose VG had that UUID in the gold copy (when the
/// LVM stage said so; LV UUIDs alone are unique in practice, and a clash is
/// reported, never guessed).
fn resolve_lvm_uuid(vg_uuid: &str, lv_uuid: &str, cands: &[Candidate]) -> Result<usize, String> {
    let what = format!("LVM logical volume with VG UUID {vg_uuid} and LV UUID {lv_uuid}");
    if !cands.iter().any(|c| c.lv.is_some()) {
        return Err(format!(
            "names an {what}, and no logical volume of this clone was activated (see skipped)"
        ));
    }
    let same_lv: Vec<usize> = (0..cands.len())
        .filter(|&i| cands[i].lv_uuid.as_deref() == Some(lv_uuid))
        .collect();
    let hits: Vec<usize> = same_lv
        .iter()
        .copied()
        .filter(|&i| cands[i].vg_uuid.as_deref().is_none_or(|v| v == vg_uuid))
        .collect();
    match hits.as_slice() {
        [i] => Ok(*i),
        [] if !same_lv.is_empty() => Err(format!(
            "names an {what}; {} has that LV UUID but belonged to another VG on the original host",
            cands[same_lv[0]].describe()
        )),
        [] if cands.iter().all(|c| c.lv.is_none() || c.lv_uuid.is_none()) => Err(format!(
            "names an {what}, and the UUIDs of this clone's logical volumes are not known"
        )),
        [] => Err(format!(
            "names an {what}, which is not among this clone's filesystems"
        )),
        many => Err(format!(
            "names an {what}, and {} of this clone's logical volumes have it (clones of one gold in one volume?): not guessed",
            many.len()
        )),
    }
}

/// The original tree from `entries` (the root candidate's fstab). Returns the
/// plan (parents before children) and the entries that did not resolve; or,
/// when the fstab has no resolvable `/` entry naming `root_cand`, why it
/// cannot be used (for the manifest: an fstab is never dropped silently).
pub fn from_fstab(
    entries: &[Entry],
    cands: &[Candidate],
    root_cand: usize,
) -> Result<(Vec<Planned>, Vec<UnresolvedEntry>), String> {
    let Some(root_entry) = entries.iter().find(|e| e.mountpoint == "/") else {
        return Err(format!(
            "it has no usable entry for / ({} local filesystem entries)",
            entries.len()
        ));
    };
    match resolve(root_entry, cands) {
        Ok(i) if i == root_cand => {}
        Ok(i) => {
            return Err(format!(
                "its entry for / ({}) names {}, not the filesystem it was found on",
                root_entry.raw_spec,
                cands[i].describe()
            ))
        }
        Err(why) => {
            return Err(format!(
                "its entry for / ({}) does not resolve: {why}",
                root_entry.raw_spec
            ))
        }
    }
    if cands[root_cand].signature.fs_type == "btrfs" {
        if let Err(why) = btrfs_subvolume(&root_entry.options) {
            return Err(format!("its entry for / ({}): {why}", root_entry.raw_spec));
        }
    }
    let mut planned = Vec::new();
    let mut unresolved = Vec::new();
    let mut used = HashSet::new();
    let mut per_fs: HashMap<usize, usize> = HashMap::new();
    for e in entries {
        let unresolved_entry = |reason: String| UnresolvedEntry {
            spec: e.raw_spec.clone(),
            mountpoint: e.mountpoint.clone(),
            reason,
        };
        let mount_point = match ClonePath::parse(&e.mountpoint) {
            Ok(p) => p,
            Err(why) => {
                unresolved.push(unresolved_entry(format!(
                    "mount point refused: it would lead outside the volume ({why})"
                )));
                continue;
            }
        };
        if mount_point.is_root() && planned.iter().any(|p: &Planned| p.mount_point.is_root()) {
            unresolved.push(unresolved_entry(
                "a second entry for / in the clone's fstab: the first one is used".into(),
            ));
            continue;
        }
        let i = match resolve(e, cands) {
            Ok(i) => i,
            Err(reason) => {
                unresolved.push(unresolved_entry(reason));
                continue;
            }
        };
        // A btrfs is mounted once per subvolume its lines select.
        let subvolume = if cands[i].signature.fs_type == "btrfs" {
            match btrfs_subvolume(&e.options) {
                Ok(s) => s,
                Err(why) => {
                    unresolved.push(unresolved_entry(why));
                    continue;
                }
            }
        } else {
            None
        };
        if !used.insert((i, subvolume.clone())) {
            unresolved.push(unresolved_entry(match &subvolume {
                Some(s) => format!("names btrfs subvolume {s} of a filesystem already mounted elsewhere in this tree"),
                None => "names a filesystem already mounted elsewhere in this tree".into(),
            }));
            continue;
        }
        let n = per_fs.entry(i).or_default();
        *n += 1;
        if *n > MAX_MOUNTS_PER_FILESYSTEM {
            unresolved.push(unresolved_entry(format!(
                "more than {MAX_MOUNTS_PER_FILESYSTEM} entries of the clone's fstab name this filesystem: the rest are not mounted"
            )));
            continue;
        }
        planned.push(Planned {
            cand: i,
            mount_point,
            original: Some(e.mountpoint.clone()),
            nofail: e.options.split(',').any(|o| o == "nofail"),
            options: Some(e.options.clone()),
            subvolume,
        });
    }
    // Parents before children; a stable sort keeps fstab order otherwise.
    planned.sort_by_key(|p| {
        if p.mount_point.is_root() {
            0
        } else {
            p.mount_point.components().len()
        }
    });
    Ok((planned, unresolved))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use fsdetect::{Signature, Usage};

    fn cand(n: u32, t: &str, label: Option<&str>, uuid: &str) -> Candidate {
        let mut s = Signature::new(t, Usage::Filesystem, 0);
        if let Some(l) = label {
            s.set("LABEL", l);
        }
        s.set("UUID", uuid);
        Candidate {
            partition: Some(n),
            offset: 0,
            size: 0,
            part_uuid: Some(format!("pu-{n}")),
            part_name: None,
            signature: s,
            lv: None,
            vg_uuid: None,
            lv_uuid: None,
        }
    }

    #[test]
    fn flat_names_are_unique_and_readable() {
        let c = vec![
            cand(1, "ext4", Some("data"), "a"),
            cand(2, "ext4", Some("data"), "b"),
            cand(3, "xfs", None, "c"),
        ];
        let p = flat(&c);
        let t: Vec<_> = p.iter().map(|p| p.mount_point.to_string()).collect();
        assert_eq!(t, vec!["/data", "/data-2", "/p3"]);
    }

    #[test]
    fn fstab_tree_is_parent_first() {
        let c = vec![
            cand(1, "ext4", Some("boot"), "u1"),
            cand(2, "xfs", None, "u2"),
            cand(3, "ext4", Some("home"), "u3"),
        ];
        let entries = crate::fstab::parse(
            "LABEL=home /home ext4 defaults\nUUID=u2 / xfs defaults\nUUID=U1 /boot ext4 defaults\n/dev/sdz1 /opt ext4 defaults\n",
        );
        let (plan, unresolved) = from_fstab(&entries, &c, 1).unwrap();
        let t: Vec<_> = plan
            .iter()
            .map(|p| (p.cand, p.mount_point.to_string()))
            .collect();
        assert_eq!(t[0], (1, "/".to_string()));
        assert!(t.contains(&(0, "/boot".to_string())));
        assert!(t.contains(&(2, "/home".to_string())));
        assert_eq!(unresolved.len(), 1);
        assert!(unresolved[0].reason.contains("/dev/sdz1"));
        // A root entry that names another filesystem is not this root.
        assert!(from_fstab(&entries, &c, 0)
            .unwrap_err()
            .contains("names partition 2"));
    }

    #[test]
    fn mount_points_that_climb_out_are_refused() {
        let c = vec![cand(1, "xfs", None, "r"), cand(2, "ext4", None, "d")];
        let entries = crate::fstab::parse(
            "UUID=r / xfs defaults\nUUID=d /../../../etc ext4 defaults\nUUID=d /.. ext4 nofail\n",
        );
        let (plan, unresolved) = from_fstab(&entries, &c, 0).unwrap();
        assert_eq!(plan.len(), 1);
        assert_eq!(unresolved.len(), 2);
        assert!(unresolved
            .iter()
            .all(|u| u.reason.contains("outside the volume")));
        // A second entry for / is not stacked on the first.
        let twice = crate::fstab::parse("UUID=r / xfs defaults\nUUID=d / ext4 defaults\n");
        let (plan, unresolved) = from_fstab(&twice, &c, 0).unwrap();
        assert_eq!(plan.len(), 1);
        assert!(unresolved[0].reason.contains("second entry for /"));
    }

    #[test]
    fn one_btrfs_is_mounted_once_per_subvolume() {
        // As Anaconda writes it (Fedora 33+), plus lines a hostile clone adds.
        let c = vec![
            cand(1, "ext4", None, "b00t"),
            cand(2, "btrfs", Some("fedora"), "f5"),
        ];
        let text = "UUID=f5 / btrfs subvol=root,compress=zstd:1 0 0\n\
                    UUID=b00t /boot ext4 defaults 1 2\n\
                    UUID=f5 /home btrfs subvol=home,compress=zstd:1 0 0\n\
                    UUID=f5 /var/home btrfs subvol=/home/ 0 0\n\
                    UUID=f5 /srv btrfs subvol=@/../../etc 0 0\n\
                    UUID=f5 /top btrfs subvolid=5 0 0\n\
                    UUID=f5 /dflt btrfs defaults 0 0\n";
        let (plan, unresolved) = from_fstab(&crate::fstab::parse(text), &c, 1).unwrap();
        let t: Vec<_> = plan
            .iter()
            .map(|p| (p.cand, p.mount_point.to_string(), p.subvolume.clone()))
            .collect();
        let path = |s: &str| Some(Subvolume::Path(s.into()));
        assert_eq!(
            t,
            vec![
                (1, "/".into(), path("root")),
                (0, "/boot".into(), None),
                (1, "/home".into(), path("home")),
                (1, "/top".into(), Some(Subvolume::Id(5))),
                (1, "/dflt".into(), None),
            ]
        );
        assert_eq!(plan[0].subvolume.as_ref().unwrap().option(), "subvol=/root");
        let why: Vec<(&str, &str)> = unresolved
            .iter()
            .map(|u| (u.mountpoint.as_str(), u.reason.as_str()))
            .collect();
        assert_eq!(why.len(), 2, "{why:?}");
        assert!(
            why[0].0 == "/var/home"
                && why[0]
                    .1
                    .contains("subvolume /home of a filesystem already mounted")
        );
        assert!(why[1].0 == "/srv" && why[1].1.contains("refused") && why[1].1.contains("no .."));
        // A root line whose subvolume is refused: the fstab is not used.
        let bad = crate::fstab::parse("UUID=f5 / btrfs subvol=../x 0 0\n");
        assert!(from_fstab(&bad, &c, 1).unwrap_err().contains("refused"));
        // Thousands of lines on one btrfs are capped.
        let mut many = String::from("UUID=f5 / btrfs subvol=root 0 0\n");
        for n in 0..200 {
            many.push_str(&format!("UUID=f5 /s{n} btrfs subvol=s{n} 0 0\n"));
        }
        let (plan, unresolved) = from_fstab(&crate::fstab::parse(&many), &c, 1).unwrap();
        assert_eq!(plan.len(), MAX_MOUNTS_PER_FILESYSTEM);
        assert_eq!(unresolved.len(), 201 - MAX_MOUNTS_PER_FILESYSTEM);
        assert!(unresolved[0].reason.contains("more than 64"));
    }

    const VG: &str = "Zx5bQk1mN2pL3oR4sT5uV6wX7yZ8aB9c";
    const LV: &str = "dE0fG1hI2jK3lM4nO5pQ6rS7tU8vW9xY";

    /// An Ubuntu server disk after import: ESP (p1), /boot (p2), and the
    /// root LV of `ubuntu-vg`, whose VG vgimportclone gave a new UUID.
    fn ubuntu() -> Vec<Candidate> {
        let mut esp = cand(1, "vfat", Some("EFI System"), "B2C4-1F3E");
        esp.part_uuid = Some("5e1c0a2b-3d4f-4a6b-9c8d-7e6f5a4b3c2d".into());
        esp.part_name = Some("EFI System Partition".into());
        let mut boot = cand(
            2,
            "ext4",
            Some("data/backup"),
            "0e8f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
        );
        boot.part_name = Some("boot".into());
        let mut root = cand(0, "ext4", None, "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d");
        root.partition = None;
        root.part_uuid = None;
        root.lv = Some(("ubuntu-vg".into(), "ubuntu-lv".into()));
        let root = root.with_lvm_uuids(
            "Zx5bQk-1mN2-pL3o-R4sT-5uV6-wX7y-Z8aB9c",
            "dE0fG1-hI2j-K3lM-4nO5-pQ6r-S7tU-8vW9xY",
        );
        vec![esp, boot, root]
    }

    #[test]
    fn ubuntus_subiquity_fstab_assembles_the_tree() {
        // As curtin writes it (comments included), plus a swap file.
        let text = format!(
            "# /etc/fstab: static file system information.\n\
             # / was on /dev/ubuntu-vg/ubuntu-lv during curtin installation\n\
             /dev/disk/by-id/dm-uuid-LVM-{VG}{LV} / ext4 defaults 0 1\n\
             # /boot was on /dev/sda2 during curtin installation\n\
             /dev/disk/by-uuid/0e8f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b /boot ext4 defaults 0 1\n\
             # /boot/efi was on /dev/sda1 during curtin installation\n\
             /dev/disk/by-uuid/B2C4-1F3E /boot/efi vfat defaults 0 1\n\
             /swap.img\tnone\tswap\tsw\t0\t0\n"
        );
        let c = ubuntu();
        let (plan, unresolved) = from_fstab(&crate::fstab::parse(&text), &c, 2).unwrap();
        let t: Vec<_> = plan
            .iter()
            .map(|p| (p.cand, p.mount_point.to_string()))
            .collect();
        assert_eq!(
            t,
            vec![
                (2, "/".to_string()),
                (1, "/boot".to_string()),
                (0, "/boot/efi".to_string())
            ]
        );
        assert!(unresolved.is_empty(), "{unresolved:?}");
        assert_eq!(plan[2].options.as_deref(), Some("defaults"));
    }

    #[test]
    fn every_dev_disk_by_form_resolves_or_says_why() {
        let c = ubuntu();
        let r = |spec: &str| {
            let e = crate::fstab::parse(&format!("{spec} /x ext4 defaults 0 2\n"));
            resolve(&e[0], &c)
        };
        let err = |spec: &str, want: &str| {
            let why = r(spec).unwrap_err();
            assert!(why.contains(want), "{spec}: {why}");
        };
        assert_eq!(r(&format!("/dev/disk/by-id/dm-uuid-LVM-{VG}{LV}")), Ok(2));
        assert_eq!(r("/dev/disk/by-id/dm-name-ubuntu--vg-ubuntu--lv"), Ok(2));
        assert_eq!(r("/dev/mapper/ubuntu--vg-ubuntu--lv"), Ok(2));
        assert_eq!(r("/dev/ubuntu-vg/ubuntu-lv"), Ok(2));
        assert_eq!(r("/dev/disk/by-uuid/b2c4-1f3e"), Ok(0));
        assert_eq!(r("UUID=B2C4-1F3E"), Ok(0));
        assert_eq!(r("/dev/disk/by-label/EFI\\x20System"), Ok(0));
        assert_eq!(r("LABEL=EFI\\040System"), Ok(0));
        assert_eq!(r("/dev/disk/by-label/data\\x2fbackup"), Ok(1));
        assert_eq!(
            r("/dev/disk/by-partuuid/5E1C0A2B-3D4F-4A6B-9C8D-7E6F5A4B3C2D"),
            Ok(0)
        );
        assert_eq!(r("PARTUUID=5e1c0a2b-3d4f-4a6b-9c8d-7e6f5a4b3c2d"), Ok(0));
        assert_eq!(
            r("/dev/disk/by-partlabel/EFI\\x20System\\x20Partition"),
            Ok(0)
        );
        assert_eq!(r("PARTLABEL=boot"), Ok(1));
        // The VG UUID the clone's VG has after vgimportclone is not the one
        // the original host's fstab names.
        let new_vg = "Qq1wE2rT3yU4iO5pA6sD7fG8hJ9kL0zX";
        err(
            &format!("/dev/disk/by-id/dm-uuid-LVM-{new_vg}{LV}"),
            "belonged to another VG",
        );
        err(
            &format!("/dev/disk/by-id/dm-uuid-LVM-{VG}{new_vg}"),
            "not among this clone's filesystems",
        );
        err(
            "/dev/disk/by-id/dm-name-ubuntu--vg-swap",
            "ubuntu-vg/swap is not among",
        );
        err(
            "/dev/disk/by-id/lvm-pv-uuid-hV3bEk-Aq9z-Xc2D-Lm4N-oP6q-Rs8T-uV0wXy",
            "not a filesystem",
        );
        err(
            "/dev/disk/by-path/pci-0000:00:17.0-ata-1-part2",
            "hardware path",
        );
        err("/dev/disk/by-path/ip-10.0.0.5:3260-iscsi-iqn.2003-01.org.linux-iscsi.gold:sn.1-lun-0-part1", "hardware path");
        err(
            "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4-part2",
            "hardware identity",
        );
        err(
            "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi0-part2",
            "hardware identity",
        );
        err(
            "/dev/disk/by-id/ata-ST1000DM010-2EP102_Z9A1B2C3-part1",
            "hardware identity",
        );
        err(
            "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_1TB_S467NX0M123456-part2",
            "hardware identity",
        );
        err("/dev/sda2", "kernel disk name");
        err("/dev/nvme0n1p2", "kernel disk name");
        err(
            "/dev/disk/by-uuid/ffffffff-0000-4000-8000-000000000000",
            "no filesystem of this clone matches",
        );
        // LV UUID known only from the dm node (the LVM stage did not give the
        // original VG UUID): the LV UUID decides.
        let mut c2 = ubuntu();
        c2[2].vg_uuid = None;
        let e = crate::fstab::parse(&format!(
            "/dev/disk/by-id/dm-uuid-LVM-{VG}{LV} / ext4 defaults 0 1\n"
        ));
        assert_eq!(resolve(&e[0], &c2), Ok(2));
        // Two LVs with one LV UUID (two clones of one gold in one volume): not guessed.
        c2.push(c2[2].clone());
        assert!(resolve(&e[0], &c2)
            .unwrap_err()
            .contains("2 of this clone's logical volumes"));
        // Neither UUID known.
        c2.truncate(3);
        c2[2].lv_uuid = None;
        assert!(resolve(&e[0], &c2).unwrap_err().contains("not known"));
        // A read-only mount imports no VG: say so.
        let flat: Vec<Candidate> = ubuntu().into_iter().take(2).collect();
        assert!(resolve(&e[0], &flat)
            .unwrap_err()
            .contains("no logical volume of this clone was activated"));
    }

    #[test]
    fn an_fstab_that_is_not_used_says_why() {
        let c = ubuntu();
        let why = from_fstab(
            &crate::fstab::parse(
                "/dev/disk/by-path/pci-0000:00:10.0-scsi-0:0:0:0-part3 / ext4 defaults 0 1\n",
            ),
            &c,
            2,
        )
        .unwrap_err();
        assert!(
            why.contains("entry for /") && why.contains("hardware path"),
            "{why}"
        );
        let why = from_fstab(
            &crate::fstab::parse("UUID=B2C4-1F3E /boot/efi vfat umask=0077 0 1\n"),
            &c,
            2,
        )
        .unwrap_err();
        assert!(why.contains("no usable entry for /"), "{why}");
    }

    #[test]
    fn logical_volumes_resolve_by_their_original_vg_name() {
        let mut root = cand(0, "xfs", None, "r");
        root.lv = Some(("vg_gold".into(), "root".into()));
        let mut home = cand(0, "ext4", None, "h");
        home.lv = Some(("vg_gold".into(), "home".into()));
        let c = vec![root, home];
        let entries = crate::fstab::parse("/dev/mapper/vg_gold-root / xfs defaults\n/dev/vg_gold/home /home ext4 defaults\n/dev/vg_other/x /x ext4 defaults\n");
        let (plan, unresolved) = from_fstab(&entries, &c, 0).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[1].mount_point.to_string(), "/home");
        assert!(unresolved[0].reason.contains("vg_other/x"));
        assert_eq!(flat(&c)[1].mount_point.to_string(), "/home");
    }
}
