//! Where each filesystem goes under the volume path: the original host's tree
//! from the clone's own fstab, or one readable directory per filesystem.

use std::collections::HashSet;

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
        Spec::Path(p) => {
            return Err(format!(
                "{p} is a device path of the original host and cannot be resolved here"
            ))
        }
    };
    hit.ok_or_else(|| format!("no filesystem of this clone matches {}", e.raw_spec))
}

/// The original tree from `entries` (the root candidate's fstab). Returns the
/// plan (parents before children) and the entries that did not resolve.
/// `None` when the fstab has no resolvable `/` entry naming `root_cand`.
pub fn from_fstab(
    entries: &[Entry],
    cands: &[Candidate],
    root_cand: usize,
) -> Option<(Vec<Planned>, Vec<UnresolvedEntry>)> {
    let root_entry = entries.iter().find(|e| e.mountpoint == "/")?;
    if resolve(root_entry, cands).ok()? != root_cand {
        return None;
    }
    let mut planned = Vec::new();
    let mut unresolved = Vec::new();
    let mut used = HashSet::new();
    for e in entries {
        let mount_point = match ClonePath::parse(&e.mountpoint) {
            Ok(p) => p,
            Err(why) => {
                unresolved.push(UnresolvedEntry {
                    spec: e.raw_spec.clone(),
                    mountpoint: e.mountpoint.clone(),
                    reason: format!(
                        "mount point refused: it would lead outside the volume ({why})"
                    ),
                });
                continue;
            }
        };
        if mount_point.is_root() && planned.iter().any(|p: &Planned| p.mount_point.is_root()) {
            unresolved.push(UnresolvedEntry {
                spec: e.raw_spec.clone(),
                mountpoint: e.mountpoint.clone(),
                reason: "a second entry for / in the clone's fstab: the first one is used".into(),
            });
            continue;
        }
        match resolve(e, cands) {
            Ok(i) if used.insert(i) => {
                planned.push(Planned {
                    cand: i,
                    mount_point,
                    original: Some(e.mountpoint.clone()),
                    nofail: e.options.split(',').any(|o| o == "nofail"),
                });
            }
            Ok(_) => unresolved.push(UnresolvedEntry {
                spec: e.raw_spec.clone(),
                mountpoint: e.mountpoint.clone(),
                reason: "names a filesystem already mounted elsewhere in this tree".into(),
            }),
            Err(reason) => unresolved.push(UnresolvedEntry {
                spec: e.raw_spec.clone(),
                mountpoint: e.mountpoint.clone(),
                reason,
            }),
        }
    }
    // Parents before children; a stable sort keeps fstab order otherwise.
    planned.sort_by_key(|p| {
        if p.mount_point.is_root() {
            0
        } else {
            p.mount_point.components().len()
        }
    });
    Some((planned, unresolved))
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
        assert!(from_fstab(&entries, &c, 0).is_none());
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
