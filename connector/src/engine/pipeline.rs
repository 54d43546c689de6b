//! The mount pipeline, one stage after another over one list of items:
//! open the devices → discover what is on them → give every partition a
//! node → import volume groups → find the original layout → mount → import
//! pools. Every change to the host goes through the [`Journal`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use hostfs::clonefs::{ClonePath, CloneRoot, DirJournal, PathError, ResolvedDir};

use super::error::{EngineError, ErrorKind};
use super::fs_kind::{self, MountPlan, UuidCollision};
use super::journal::Journal;
use super::types::MountOptions;
use crate::config::Config;
use crate::discover::{self, Candidate, Member, MemberKind};
use crate::fstab;
use crate::layout::{self, Planned};
use crate::manifest::{Layout, Manifest, MountInfo, Skipped, UnresolvedEntry};
use crate::mounter;
use crate::partmap;
use crate::state::{Action, StateStore};
use crate::tools::{self, DEFAULT_TIMEOUT};
use crate::zfs;

/// How much of a clone's `/etc/fstab` is read at most.
pub const FSTAB_CAP: u64 = 1024 * 1024;
/// How long reading it may take.
const FSTAB_DEADLINE: Duration = Duration::from_secs(5);
/// Most entries of one kind recorded in a manifest (a hostile fstab must not
/// grow the state store without bound).
const MANIFEST_LIST_CAP: usize = 256;

/// A filesystem to mount and the node it is reached by.
struct Item {
    cand: Candidate,
    node: PathBuf,
    via_loop: bool,
}

/// Everything the stages share.
pub struct Run<'a> {
    /// Paths.
    pub cfg: &'a Config,
    /// The state store (other volumes' records, for reserved names).
    pub store: &'a StateStore,
    /// The volume's name.
    pub volume: &'a str,
    /// The choices of this mount.
    pub opts: &'a MountOptions,
    notes: Vec<String>,
    skipped: Vec<Skipped>,
    unresolved: Vec<UnresolvedEntry>,
    /// Candidates this run has mounted (a btrfs mounted again for another
    /// subvolume is not an fsid collision).
    mounted_cands: HashSet<usize>,
}

impl<'a> Run<'a> {
    /// A run for one volume.
    pub fn new(
        cfg: &'a Config,
        store: &'a StateStore,
        volume: &'a str,
        opts: &'a MountOptions,
    ) -> Self {
        Self {
            cfg,
            store,
            volume,
            opts,
            notes: Vec::new(),
            skipped: Vec::new(),
            unresolved: Vec::new(),
            mounted_cands: HashSet::new(),
        }
    }

    fn volume_path(&self) -> PathBuf {
        self.cfg.volumes_root.join(self.volume)
    }
}

/// Directories created by `ensure_dir`, journaled before each is made.
struct DirSteps<'j, 'a> {
    j: &'j mut Journal<'a>,
    root: PathBuf,
}

impl DirJournal for DirSteps<'_, '_> {
    fn will_create(&mut self, p: &ClonePath) -> std::result::Result<(), String> {
        self.j
            .begin(Action::MakeDir {
                root: self.root.clone(),
                path: p.to_string(),
            })
            .map_err(|e| format!("{e:#}"))
    }
    fn created(&mut self, _p: &ClonePath, by_us: bool) -> std::result::Result<(), String> {
        let r = if by_us {
            self.j.finish(None)
        } else {
            // Someone else made it meanwhile: not ours to remove.
            self.j.forget_last()
        };
        r.map_err(|e| format!("{e:#}"))
    }
}

/// Creates (journaled) and opens directory `p` inside the trusted `root`.
fn ensure_dir(j: &mut Journal<'_>, root: &Path, p: &ClonePath) -> Result<ResolvedDir> {
    let r = CloneRoot::open(root).with_context(|| format!("opening {}", root.display()))?;
    let mut steps = DirSteps {
        j,
        root: root.to_path_buf(),
    };
    Ok(r.ensure_dir(p, &mut steps)?)
}

/// Mounts `node` on `dir` (journaled by mount id), as `plan` says.
fn mount_at(j: &mut Journal<'_>, node: &Path, dir: &ResolvedDir, plan: &MountPlan) -> Result<()> {
    let devno = devno_of(node)?;
    let target = dir.host_path().to_path_buf();
    let pending = Action::Mount {
        source: node.to_path_buf(),
        source_devno: devno.clone(),
        target: target.clone(),
        fstype: plan.fstype.clone(),
        options: plan.options(),
        mnt_id: None,
        mnt_unique: None,
    };
    j.step(pending, |_| {
        let id = mount_syscall(node, dir, plan).with_context(|| {
            format!(
                "mounting {} ({}) on {}",
                node.display(),
                plan.fstype,
                target.display()
            )
        })?;
        Ok((
            Action::Mount {
                source: node.to_path_buf(),
                // The mount's own device number as mountinfo shows it (btrfs
                // and FUSE show an anonymous 0:N, not the node's): what undo
                // compares.
                source_devno: format!("{}:{}", id.major, id.minor),
                target: target.clone(),
                fstype: plan.fstype.clone(),
                options: plan.options(),
                mnt_id: Some(id.mnt_id),
                mnt_unique: id.unique_id,
            },
            (),
        ))
    })
}

fn devno_of(node: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(node).with_context(|| format!("{} is gone", node.display()))?;
    let r = md.rdev();
    Ok(format!("{}:{}", rustix::fs::major(r), rustix::fs::minor(r)))
}

/// After a failed [`mount_at`]: undoes its pending step, if it got as far
/// as recording one (never an older, unrelated step).
fn undo_pending_mount(j: &mut Journal<'_>) -> Result<()> {
    let pending = matches!(
        j.rec.steps.last(),
        Some(crate::state::Step {
            action: Action::Mount { .. },
            done: false
        })
    );
    if pending {
        j.undo_last(false, &mut super::journal::UndoLog::default())?;
    }
    Ok(())
}

/// The kernel mount itself; a FUSE type (ntfs-3g) goes through its helper
/// onto the resolved directory's verified host path.
fn mount_syscall(
    node: &Path,
    dir: &ResolvedDir,
    plan: &MountPlan,
) -> Result<hostfs::mountfd::MountId> {
    use hostfs::mountfd::{mount_on_with, MountOptions as Flags};
    if plan.fstype == "ntfs-3g" {
        let t = dir.host_path().to_string_lossy().into_owned();
        let n = node.to_string_lossy().into_owned();
        let opts = plan.options();
        tools::run(
            "mount",
            &["-t", "ntfs-3g", "-o", &opts, &n, &t],
            DEFAULT_TIMEOUT,
        )?;
        let devno = devno_of(node).unwrap_or_default();
        return mountinfo::current()?
            .into_iter()
            .filter(|m| m.mount_point == dir.host_path())
            .map(|m| hostfs::mountfd::MountId {
                mnt_id: m.id,
                unique_id: None,
                major: m.major,
                minor: m.minor,
                host_path: m.mount_point.clone(),
                mount_options: m.mount_options.clone(),
            })
            .next_back()
            .ok_or_else(|| {
                anyhow!("ntfs-3g mounted {n} ({devno}) but the mount is not in mountinfo")
            });
    }
    let flags = Flags {
        read_only: plan.read_only,
        nosuid: plan.nosuid_nodev,
        nodev: plan.nosuid_nodev,
        noexec: plan.noexec,
    };
    let extra = atime_flags(plan);
    let id =
        mount_on_with(dir, node, &plan.fstype, flags, extra, &plan.data_string()).map_err(|e| {
            let text = e.to_string();
            let errno = match &e {
                hostfs::mountfd::MountError::Mount { errno, .. } => Some(*errno),
                _ => None,
            };
            let ro = text.contains("EROFS") || text.contains("EACCES") || text.contains("ead-only");
            let text = if ro && !plan.read_only {
                format!("{text}; the device is read-only: mount the volume read-only")
            } else {
                text
            };
            match errno {
                Some(errno) => anyhow!(MountRefused { errno, text }),
                None => anyhow!("{text}"),
            }
        })?;
    Ok(id)
}

/// mount(2) itself returned an error: nothing was mounted.
#[derive(Debug, thiserror::Error)]
#[error("{text}")]
struct MountRefused {
    errno: rustix::io::Errno,
    text: String,
}

/// The errno of a mount(2) that failed (nothing was mounted then), if that
/// is what `e` is.
fn refused_errno(e: &anyhow::Error) -> Option<rustix::io::Errno> {
    e.chain()
        .find_map(|c| c.downcast_ref::<MountRefused>())
        .map(|r| r.errno)
}

/// The access-time mount flags a plan asks for (the kernel refuses them in
/// the data string).
fn atime_flags(plan: &MountPlan) -> rustix::mount::MountFlags {
    use crate::fstab_options::Atime;
    use rustix::mount::MountFlags as F;
    let mut f = match plan.atime {
        Some(Atime::NoAtime) => F::NOATIME,
        Some(Atime::Relatime) => F::RELATIME,
        Some(Atime::StrictAtime) => F::STRICTATIME,
        None => F::empty(),
    };
    f.set(F::NODIRATIME, plan.nodiratime);
    f
}

/// Runs the whole mount for `devices` (already claimed) and returns the manifest.
pub fn mount_steps(
    run: &mut Run<'_>,
    j: &mut Journal<'_>,
    devices: &[PathBuf],
) -> Result<Manifest> {
    let mut items: Vec<Item> = Vec::new();
    let mut members: Vec<(Member, PathBuf)> = Vec::new();
    // Discover: what is on each device.
    let mut found_any = false;
    for device in devices {
        if !run.opts.read_only && device_is_read_only(device) {
            bail!(EngineError::invalid(format!(
                "{} is a read-only device: it cannot be mounted read-write",
                device.display()
            ))
            .with_hint("mount the volume read-only"));
        }
        let disk = if std::fs::metadata(device)?.file_type().is_file() {
            run.notes.push(format!(
                "{} is an image file: attached through a loop device",
                device.display()
            ));
            j.attach_loop(device, 0, 0, run.opts.read_only)?
        } else {
            device.to_path_buf()
        };
        let src = fsdetect::FileSource::open(&disk)
            .with_context(|| format!("opening {}", disk.display()))?;
        let report =
            fsdetect::probe_disk(&src).with_context(|| format!("probing {}", disk.display()))?;
        drop(src);
        if let Some(t) = &report.table {
            if t.gpt_header == Some(fsdetect::GptHeader::Backup) {
                run.notes.push(format!(
                    "{}: the primary GPT header is damaged; the backup GPT at the end of the device was used",
                    device.display()
                ));
            }
            for w in &t.warnings {
                run.notes.push(format!("{}: {w}", device.display()));
            }
        }
        let found = discover::classify(&report);
        found_any |= !found.candidates.is_empty() || !found.members.is_empty();
        // Nodes: the kernel's partition, kpartx's map, or an offset loop.
        for c in found.candidates {
            let (node, via_loop) =
                node_for(j, &disk, c.partition, c.offset, c.size, run.opts.read_only)?;
            items.push(Item {
                cand: c,
                node,
                via_loop,
            });
        }
        for m in found.members {
            let (node, _) = node_for(j, &disk, m.partition, m.offset, m.size, run.opts.read_only)?;
            members.push((m, node));
        }
        for mut sk in found.skipped {
            if devices.len() > 1 {
                sk.source = format!("{} {}", device.display(), sk.source);
            }
            run.skipped.push(sk);
        }
    }
    if !found_any {
        bail!(EngineError::new(
            ErrorKind::Invalid,
            format!(
                "nothing mountable on {}",
                nothing_mounted(devices, &run.skipped, &run.notes)
            )
        ));
    }
    if items.iter().any(|i| i.via_loop) {
        run.notes.push("the kernel created no partition nodes: partitions were mapped with offset loop devices".into());
    }
    // Volume groups: imported clone-safely, their LVs become items.
    let pvs: Vec<(&Member, PathBuf)> = members
        .iter()
        .filter(|(m, _)| m.kind == MemberKind::Lvm)
        .map(|(m, n)| (m, n.clone()))
        .collect();
    if !pvs.is_empty() {
        let (lvs, skipped, notes) =
            super::stage_lvm::import_vgs(run.store, run.volume, run.opts, j, &pvs)?;
        items.extend(lvs.into_iter().map(|(mut cand, node)| {
            discover::fill_lv_uuid_from_dm(&mut cand, &node);
            Item {
                cand,
                node,
                via_loop: false,
            }
        }));
        run.skipped.extend(skipped);
        run.notes.extend(notes);
    }
    // Layout: the original tree, if one filesystem holds an fstab whose "/" is itself.
    let cands: Vec<Candidate> = items.iter().map(|i| i.cand.clone()).collect();
    let mut plan: Option<(Vec<Planned>, Vec<UnresolvedEntry>)> = None;
    let mut not_used: Vec<String> = Vec::new();
    'search: for i in fstab_search_order(&cands) {
        let item = &items[i];
        for found in read_fstab(run, j, item, i, &cands)? {
            let (entries, problems) = fstab::parse_bytes(&found.bytes);
            match layout::from_fstab(&entries, &cands, i) {
                Ok(mut p) => {
                    run.notes.extend(problems);
                    if let Some(place) = &found.place {
                        run.notes.push(format!(
                            "{}: the original root's /etc/fstab was found in {place}",
                            item.cand.describe()
                        ));
                    }
                    root_from_found_subvolume(run, &item.cand, &found, &mut p.0);
                    plan = Some(p);
                    break 'search;
                }
                Err(why) => not_used.push(format!(
                    "{}: its /etc/fstab{} was found but not used: {why}",
                    item.cand.describe(),
                    found
                        .place
                        .as_deref()
                        .map(|w| format!(" (in {w})"))
                        .unwrap_or_default()
                )),
            }
        }
    }
    let (layout_kind, planned, unresolved) = match plan {
        Some((p, u)) => (Layout::Fstab, p, u),
        None => {
            if !not_used.is_empty() {
                not_used.push(
                    "no usable /etc/fstab: the filesystems are mounted flat, one directory each"
                        .into(),
                );
            }
            (Layout::Flat, layout::flat(&cands), Vec::new())
        }
    };
    run.notes.extend(not_used);
    run.unresolved.extend(unresolved);
    // Filesystems the clone's fstab does not name (a hypervisor's VM disks
    // on thin LVs, a data disk mounted by hand) still get a path: one
    // directory each, by the flat layout's names, beside the tree at
    // `<volumes root>/<volume>@unplaced` ('@' is never in a volume name),
    // so nothing is created inside the clone's own filesystems.
    let unplaced: Vec<Planned> = if layout_kind == Layout::Fstab {
        let used: HashSet<usize> = planned.iter().map(|p| p.cand).collect();
        layout::flat(&cands)
            .into_iter()
            .filter(|p| !used.contains(&p.cand))
            .collect()
    } else {
        Vec::new()
    };
    // Mount: the volume directory, then every filesystem, parents first.
    std::fs::create_dir_all(&run.cfg.volumes_root)
        .with_context(|| format!("creating {}", run.cfg.volumes_root.display()))?;
    let vpath = run.volume_path();
    let vol_rel = ClonePath::parse(run.volume).map_err(|e| anyhow!("{e}"))?;
    ensure_dir(j, &run.cfg.volumes_root, &vol_rel)?;
    let mut mounted_uuids = mounter::mounted_uuids();
    let mut mounts = Vec::new();
    for p in &planned {
        let item = &items[p.cand];
        match mount_one(run, j, &vpath, p, item, layout_kind, &mut mounted_uuids) {
            Ok(Some(mi)) => mounts.push(mi),
            Ok(None) => {}
            // Refused mount point: listed in `unresolved`, the rest goes on.
            Err(e) if is_skip(&e) => {}
            Err(e) if p.nofail && !p.mount_point.is_root() => {
                tracing::warn!(
                    source = %item.cand.describe(),
                    mount_point = %p.mount_point,
                    "skipped a nofail fstab entry whose mount failed: {e:#}"
                );
                run.skipped.push(Skipped {
                    source: item.cand.describe(),
                    what: item.cand.signature.fs_type.clone(),
                    reason: format!(
                        "the fstab entry for {} says nofail and its mount failed: {e:#}",
                        p.mount_point
                    ),
                })
            }
            Err(e) => {
                return Err(e.context(match &p.original {
                    Some(o) => format!("the clone's fstab entry for {o} could not be mounted"),
                    None => format!("{} could not be mounted", item.cand.describe()),
                }))
            }
        }
    }
    if !unplaced.is_empty() {
        let rel =
            ClonePath::parse(&format!("{}@unplaced", run.volume)).map_err(|e| anyhow!("{e}"))?;
        let epath = ensure_dir(j, &run.cfg.volumes_root, &rel)?
            .host_path()
            .to_path_buf();
        let mut placed = 0;
        for p in &unplaced {
            let item = &items[p.cand];
            match mount_one(run, j, &epath, p, item, Layout::Flat, &mut mounted_uuids) {
                Ok(Some(mi)) => {
                    placed += 1;
                    mounts.push(mi)
                }
                Ok(None) => {}
                Err(e) if is_skip(&e) => {}
                // Not part of the original tree: a failure is reported and
                // the volume goes on.
                Err(e) => run.skipped.push(Skipped {
                    source: item.cand.describe(),
                    what: item.cand.signature.fs_type.clone(),
                    reason: format!(
                        "not named by the clone's /etc/fstab, and mounting it under {} failed: {e:#}",
                        epath.display()
                    ),
                }),
            }
        }
        if placed > 0 {
            run.notes.push(format!(
                "{placed} filesystem(s) the clone's /etc/fstab does not name are mounted under {}, one directory each",
                epath.display()
            ));
        }
    }
    // Pools.
    let vdevs: Vec<(&Member, PathBuf)> = members
        .iter()
        .filter(|(m, _)| m.kind == MemberKind::Zfs)
        .map(|(m, n)| (m, n.clone()))
        .collect();
    if !vdevs.is_empty() {
        import_pools(run, j, &vpath, &vdevs, &mut mounts)?;
    }
    if mounts.is_empty() {
        bail!(EngineError::new(
            ErrorKind::Invalid,
            format!(
                "nothing could be mounted from {}",
                nothing_mounted(devices, &run.skipped, &run.notes)
            )
        ));
    }
    let mut m = Manifest {
        volume: run.volume.to_string(),
        devices: devices.iter().map(|d| partmap::display_path(d)).collect(),
        path: vpath,
        read_only: run.opts.read_only,
        layout: layout_kind,
        mounts,
        skipped: std::mem::take(&mut run.skipped),
        unresolved: std::mem::take(&mut run.unresolved),
        notes: std::mem::take(&mut run.notes),
    };
    cap_manifest(&mut m);
    Ok(m)
}

/// Keeps a manifest's lists bounded, saying how much was left out.
fn cap_manifest(m: &mut Manifest) {
    let cut = |len: usize, what: &str, notes: &mut Vec<String>| {
        if len > MANIFEST_LIST_CAP {
            notes.push(format!(
                "{} more {what} not listed (the manifest keeps {MANIFEST_LIST_CAP})",
                len - MANIFEST_LIST_CAP
            ));
        }
    };
    let mut extra = Vec::new();
    cut(m.skipped.len(), "skipped items", &mut extra);
    cut(m.unresolved.len(), "unresolved fstab entries", &mut extra);
    cut(m.notes.len(), "notes", &mut extra);
    m.skipped.truncate(MANIFEST_LIST_CAP);
    m.unresolved.truncate(MANIFEST_LIST_CAP);
    m.notes.truncate(MANIFEST_LIST_CAP);
    m.notes.extend(extra);
}

/// Mounts one planned filesystem; `None` when it was skipped (with the reason
/// recorded).
fn mount_one(
    run: &mut Run<'_>,
    j: &mut Journal<'_>,
    vpath: &Path,
    p: &Planned,
    item: &Item,
    layout_kind: Layout,
    mounted_uuids: &mut HashSet<String>,
) -> Result<Option<MountInfo>> {
    let c = &item.cand;
    let t = c.signature.fs_type.as_str();
    let kind =
        fs_kind::lookup(t).ok_or_else(|| anyhow!("{t} is not a filesystem goldmount mounts"))?;
    // The target, resolved inside the volume by fd (a symlink in the clone
    // is followed as on the original host, never out of the volume).
    let dir = if run.opts.read_only && layout_kind == Layout::Fstab && !p.mount_point.is_root() {
        match CloneRoot::open(vpath).and_then(|r| r.resolve_dir(&p.mount_point)) {
            Ok(d) => d,
            Err(PathError::NotFound { .. }) => {
                run.skipped.push(Skipped {
                    source: c.describe(),
                    what: t.to_string(),
                    reason: format!(
                        "mount point {} does not exist in the read-only root",
                        p.mount_point
                    ),
                });
                return Ok(None);
            }
            Err(e) => return Err(refused(run, p, c, e)),
        }
    } else {
        match ensure_dir(j, vpath, &p.mount_point) {
            Ok(d) => d,
            Err(e) => match e.downcast::<PathError>() {
                Ok(pe) => return Err(refused(run, p, c, pe)),
                Err(e) => return Err(e),
            },
        }
    };
    if dir.host_path() != vpath.join(p.mount_point.as_relative()) && !p.mount_point.is_root() {
        run.notes.push(format!(
            "{} is a symbolic link inside the clone: {} was mounted where it leads, {}",
            p.mount_point,
            c.describe(),
            dir.host_path().display()
        ));
    }
    let uuid = c.signature.uuid();
    let dup = uuid.as_ref().is_some_and(|u| mounted_uuids.contains(u));
    let ro = run.opts.read_only;
    let ctx = crate::fstab_options::Context {
        read_only: ro,
        selinux: crate::fstab_options::selinux_enabled(),
    };
    let mut carried = p
        .options
        .as_deref()
        .map(|o| crate::fstab_options::carry(t, o, ctx))
        .unwrap_or_default();
    // `/` of a btrfs whose fstab was found in a subvolume its line does not
    // name: that subvolume (the original host's kernel command line said so).
    if let Some(sv) = &p.subvolume {
        if carried.subvol.is_none() && carried.subvolid.is_none() {
            carried.data.push(sv.option());
        }
    }
    let again = run.mounted_cands.contains(&p.cand);
    let plan_for = |dup: bool| {
        kind.plan(ro, dup, run.opts.allow_suid_dev)
            .with_fstab(&carried)
    };
    let mut plan = plan_for(dup);
    if let Err(e) = mount_at(j, &item.node, &dir, &plan) {
        // Undo rather than forget: the mount may have happened even though
        // it could not be identified. When mount(2) itself failed on a
        // btrfs this run already mounted (another subvolume), nothing was
        // mounted and the device stays held by the first mount: forget the
        // pending step (its undo would wait for the device to be released).
        if again && refused_errno(&e).is_some() && pending_mount(j) {
            j.forget_last()?;
        } else {
            undo_pending_mount(j)?;
        }
        if let Some(sv) = p.subvolume.as_ref().filter(|_| missing_subvolume(&e)) {
            let why = format!(
                "btrfs subvolume {sv} is not in this filesystem (the kernel found no subvolume at that path or id: {e:#})"
            );
            if !p.mount_point.is_root() {
                run.unresolved.push(UnresolvedEntry {
                    spec: c.describe(),
                    mountpoint: p
                        .original
                        .clone()
                        .unwrap_or_else(|| p.mount_point.to_string()),
                    reason: format!("{why}; not mounted"),
                });
                return Err(anyhow!(SkipMount(why)));
            }
            return Err(anyhow!(
                "{why}; the original root cannot be assembled without it"
            ));
        }
        match kind.uuid_collision {
            // Another clone of the same gold may have mounted its XFS meanwhile.
            UuidCollision::NoUuid if !dup => {
                plan = plan_for(true);
                mount_at(j, &item.node, &dir, &plan).map_err(|e2| e2.context(format!("{e:#}")))?;
            }
            UuidCollision::BtrfsFsid if run.opts.btrfs_new_fsid && !ro && !again => {
                // Kernels without temp-fsid (< 6.7) refuse a second device with
                // a mounted fsid: give the clone its own (metadata_uuid) and retry.
                give_btrfs_new_fsid(run, item)?;
                mount_at(j, &item.node, &dir, &plan).map_err(|e2| e2.context(format!("{e:#}")))?;
            }
            UuidCollision::BtrfsFsid if dup && !again => {
                return Err(e.context(
                    "this kernel refuses a second btrfs with an fsid that is already mounted (the gold copy \
                     or another clone); the btrfs_new_fsid option gives the clone its own fsid (btrfstune -m, \
                     changes the clone)",
                ))
            }
            _ if !carried.kept.is_empty() => {
                return Err(e.context(format!(
                    "with the options carried over from the clone's fstab: {}",
                    carried.kept.join(",")
                )))
            }
            _ => return Err(e),
        }
    }
    if kind.uuid_collision == UuidCollision::NoUuid && run.opts.regen_xfs_uuid && !ro {
        // The mount replayed the log; now give the clone its own UUID.
        let mut log = super::journal::UndoLog::default();
        j.undo_last(false, &mut log)?;
        let n = item.node.to_string_lossy();
        tools::run("xfs_admin", &["-U", "generate", &n], DEFAULT_TIMEOUT)
            .with_context(|| format!("regenerating the XFS UUID of {}", c.describe()))?;
        plan = plan_for(false);
        mount_at(j, &item.node, &dir, &plan)?;
        run.notes.push(format!(
            "{}: XFS UUID regenerated (as the regen_xfs_uuid option asked)",
            c.describe()
        ));
    }
    let subvolume = (t == "btrfs").then(|| mounted_root(j)).flatten();
    if t == "btrfs" && dup && !again {
        if let Some(temp) = btrfs_temp_fsid(&item.node) {
            run.notes.push(format!(
                "{}: its btrfs fsid {} is already mounted on this host (the gold copy or another clone): the kernel mounted it with a temporary fsid {temp} (temp-fsid); the clone's data is unchanged",
                c.describe(),
                uuid.as_deref().unwrap_or("?")
            ));
        }
    }
    run.mounted_cands.insert(p.cand);
    if let Some(u) = &uuid {
        mounted_uuids.insert(u.clone());
    }
    if ro {
        if let Some(n) = unreplayed_journal(c, &item.node, dir.host_path()) {
            run.notes.push(n);
        }
    }
    Ok(Some(MountInfo {
        source: item.node.clone(),
        fs_type: t.to_string(),
        uuid: if run.opts.regen_xfs_uuid && t == "xfs" {
            None
        } else {
            uuid
        },
        label: c.signature.label(),
        partition: c.partition,
        original_mountpoint: p.original.clone(),
        mount_path: dir.host_path().to_path_buf(),
        options: plan.options(),
        via_offset_loop: item.via_loop,
        fstab_options_kept: carried.kept,
        fstab_options_dropped: carried.dropped,
        subvolume,
    }))
}

/// Whether a btrfs the kernel would not mount is one whose fsid is mounted
/// on this host already (the gold or another clone) while the options ask
/// for the clone to get its own fsid.
fn btrfs_fsid_taken(run: &Run<'_>, item: &Item) -> bool {
    item.cand.signature.fs_type == "btrfs"
        && run.opts.btrfs_new_fsid
        && !run.opts.read_only
        && item
            .cand
            .signature
            .uuid()
            .is_some_and(|u| mounter::mounted_uuids().contains(&u))
}

/// `btrfstune -m`: the clone's btrfs gets a new fsid (the old one kept as
/// its metadata_uuid), as the btrfs_new_fsid option asks; said in a note.
fn give_btrfs_new_fsid(run: &mut Run<'_>, item: &Item) -> Result<()> {
    let n = item.node.to_string_lossy();
    tools::run("btrfstune", &["-m", &n], DEFAULT_TIMEOUT)
        .with_context(|| format!("giving the btrfs of {} a new fsid", item.cand.describe()))?;
    run.notes.push(format!(
        "{}: btrfs fsid changed (btrfstune -m, as the btrfs_new_fsid option asked)",
        item.cand.describe()
    ));
    Ok(())
}

/// True when a failed mount's error is the kernel saying the subvolume
/// asked for is not there (`ENOENT`: no such path or id) or is no
/// subvolume (`EINVAL`: a plain directory).
fn missing_subvolume(e: &anyhow::Error) -> bool {
    matches!(
        refused_errno(e),
        Some(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL)
    )
}

/// True when the newest journal step is a mount not yet done.
fn pending_mount(j: &Journal<'_>) -> bool {
    matches!(
        j.rec.steps.last(),
        Some(crate::state::Step {
            action: Action::Mount { .. },
            done: false
        })
    )
}

/// The root inside its filesystem of the mount just made (the last step of
/// the journal): for btrfs, the subvolume it shows.
fn mounted_root(j: &Journal<'_>) -> Option<String> {
    let Some(crate::state::Step {
        action: Action::Mount {
            mnt_id: Some(id), ..
        },
        ..
    }) = j.rec.steps.last()
    else {
        return None;
    };
    mountinfo::current()
        .ok()?
        .into_iter()
        .find(|m| m.id == *id)
        .map(|m| m.root.to_string_lossy().into_owned())
}

/// The temporary fsid the kernel (>= 6.7, temp-fsid) gave the btrfs on
/// `node` because its fsid was already mounted, from
/// `/sys/fs/btrfs/<fsid>/{devices/<dev>,temp_fsid}`; `None` when it has
/// its own fsid or the kernel does not say.
fn btrfs_temp_fsid(node: &Path) -> Option<String> {
    let real = std::fs::canonicalize(node).ok()?;
    let dev = real.file_name()?.to_owned();
    for fs in std::fs::read_dir("/sys/fs/btrfs").ok()?.flatten() {
        let dir = fs.path();
        if !dir.join("devices").join(&dev).exists() {
            continue;
        }
        let temp = std::fs::read_to_string(dir.join("temp_fsid")).unwrap_or_default();
        if temp.trim() == "1" {
            return Some(fs.file_name().to_string_lossy().into_owned());
        }
    }
    None
}

/// The note for a read-only mount of a filesystem whose journal holds
/// changes a read-only mount does not replay (an XFS log is read for it,
/// ~10 reads; ext3/4, jbd and btrfs were decided by the probe).
fn unreplayed_journal(c: &Candidate, node: &Path, at: &Path) -> Option<String> {
    let t = c.signature.fs_type.as_str();
    let journal = match &c.signature.journal {
        Some(jn) if jn.state == fsdetect::JournalState::NotInspected => {
            let inspected = fsdetect::FileSource::open(node).and_then(|src| {
                let size = fsdetect::BlockSource::size(&src);
                fsdetect::journal::inspect(&src, 0, size, &c.signature)
            });
            match inspected {
                Ok(i) => i.journal,
                Err(e) => Some(fsdetect::Journal::internal(
                    fsdetect::JournalState::Unknown,
                    format!("reading its log failed: {e}"),
                )),
            }
        }
        other => other.clone(),
    };
    fs_kind::unreplayed_journal_note(t, at, journal.as_ref(), true)
}

/// A mount point the clone's content would lead outside the volume (or that
/// is not a directory): refused and listed; the rest of the tree goes on.
fn refused(run: &mut Run<'_>, p: &Planned, c: &Candidate, e: PathError) -> anyhow::Error {
    let reason = format!("mount point {} refused: {e}", p.mount_point);
    run.unresolved.push(UnresolvedEntry {
        spec: c.describe(),
        mountpoint: p.mount_point.to_string(),
        reason: if matches!(e, PathError::Escapes { .. }) {
            format!("{reason} (it would lead outside the volume)")
        } else {
            reason.clone()
        },
    });
    anyhow!(SkipMount(reason))
}

/// Marker: the mount was refused and listed; not an error of the volume.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SkipMount(String);

/// An `/etc/fstab` found on a filesystem, and where.
struct FoundFstab {
    bytes: Vec<u8>,
    /// The btrfs subvolume (an immediate child of the top level) it was
    /// found in by looking through them; `None`: in what a plain mount
    /// shows (the default subvolume).
    subvolume: Option<String>,
    /// Where, for the manifest's note (btrfs only).
    place: Option<String>,
}

/// Most top-level entries of a btrfs looked at for subvolumes holding a
/// root (a clone's top level is untrusted; installers put 2 to 10 there).
const SUBVOLUME_SCAN_CAP: usize = 64;
/// Most fstabs of one btrfs's subvolumes kept for the layout to try.
const SUBVOLUME_FSTABS_CAP: usize = 8;

/// Looks for `/etc/fstab` on an item through a temporary read-only,
/// `nosuid,nodev` mount without journal replay, read by fd with a size and
/// time cap. Problems with the file become notes; empty when there is none.
///
/// A btrfs is looked at as its installer left it: first its default
/// subvolume (what a plain mount shows; openSUSE's is a snapshot), then,
/// when that holds none, the subvolumes right under its top level
/// (`subvolid=5`: Fedora's `root`, Ubuntu's `@`) that look like a root, in
/// name order, at most [`SUBVOLUME_SCAN_CAP`] entries looked at.
fn read_fstab(
    run: &mut Run<'_>,
    j: &mut Journal<'_>,
    item: &Item,
    i: usize,
    cands: &[Candidate],
) -> Result<Vec<FoundFstab>> {
    let t = item.cand.signature.fs_type.as_str();
    let Some(kind) = fs_kind::lookup(t).filter(|k| k.may_hold_fstab) else {
        return Ok(Vec::new());
    };
    let staging = run.cfg.staging_dir();
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    let rel = ClonePath::parse(&format!("{}-{i}", run.volume)).map_err(|e| anyhow!("{e}"))?;
    let mark = j.rec.steps.len();
    let dir = ensure_dir(j, &staging, &rel)?;
    let mut plan = kind.plan(true, true, false);
    let mut found = Vec::new();
    let mut mounted = mount_at(j, &item.node, &dir, &plan);
    if mounted.is_err() && btrfs_fsid_taken(run, item) {
        // The gold (or another clone) holds this btrfs's fsid and the
        // kernel has no temp-fsid: the option that gives the clone its own
        // fsid is applied now, so the search (and the tree) can see it.
        undo_pending_mount(j)?;
        give_btrfs_new_fsid(run, item)?;
        mounted = mount_at(j, &item.node, &dir, &plan);
    }
    match mounted {
        Ok(()) => {
            let default_root = (t == "btrfs").then(|| mounted_root(j)).flatten();
            if let Some(bytes) = fstab_at(run, item, dir.host_path(), None) {
                found.push(FoundFstab {
                    bytes,
                    subvolume: None,
                    place: default_root.map(|r| format!("its default btrfs subvolume {r}")),
                });
            } else if t == "btrfs" {
                // The top level, where installers create their subvolumes.
                j.undo_last(false, &mut super::journal::UndoLog::default())?;
                plan.carried = vec!["subvolid=5".into()];
                match mount_at(j, &item.node, &dir, &plan) {
                    Ok(()) => found = btrfs_root_subvolumes(run, item, i, cands, dir.host_path()),
                    Err(e) => {
                        undo_pending_mount(j)?;
                        tracing::info!(
                            "cannot look through the btrfs subvolumes of {}: {e:#}",
                            item.cand.describe()
                        );
                    }
                }
            }
        }
        Err(e) => {
            undo_pending_mount(j)?;
            tracing::info!(
                "cannot look for /etc/fstab on {}: {e:#}",
                item.cand.describe()
            );
        }
    }
    // Undo the staging mount and its directory right away.
    let mut log = super::journal::UndoLog::default();
    while j.rec.steps.len() > mark {
        j.undo_last(false, &mut log)?;
    }
    Ok(found)
}

/// `etc/fstab` under `host_dir` (a trusted staging path or a directory
/// resolved inside it), read by fd, capped; a problem with it becomes a note.
fn fstab_at(
    run: &mut Run<'_>,
    item: &Item,
    host_dir: &Path,
    place: Option<&str>,
) -> Option<Vec<u8>> {
    let fstab = ClonePath::parse("/etc/fstab").ok()?;
    match CloneRoot::open(host_dir)
        .map_err(hostfs::clonefs::ReadError::Path)
        .and_then(|r| r.read_file(&fstab, FSTAB_CAP, FSTAB_DEADLINE))
    {
        Ok(b) => Some(b),
        Err(hostfs::clonefs::ReadError::NotFound { .. }) => None,
        Err(hostfs::clonefs::ReadError::Path(PathError::NotFound { .. })) => None,
        Err(e) => {
            run.notes.push(match place {
                None => format!(
                    "{}: /etc/fstab not used: {e}; its filesystems are mounted flat",
                    item.cand.describe()
                ),
                Some(p) => format!("{}: /etc/fstab in {p} not used: {e}", item.cand.describe()),
            });
            None
        }
    }
}

/// The fstabs of the subvolumes right under a btrfs top level mounted at
/// `top` that look like a root: a subvolume (a directory whose inode is
/// 256, btrfs's subvolume root) with `etc/fstab` and `usr` or `bin`, or
/// whose fstab's `/` line names this filesystem. Names are read from the
/// directory (untrusted: single components, looked at by fd, at most
/// [`SUBVOLUME_SCAN_CAP`] in name order).
fn btrfs_root_subvolumes(
    run: &mut Run<'_>,
    item: &Item,
    i: usize,
    cands: &[Candidate],
    top: &Path,
) -> Vec<FoundFstab> {
    use rustix::fs::{statat, AtFlags, FileType, Mode, OFlags};
    const SUBVOLUME_ROOT_INO: u64 = 256;
    let Ok(root) = CloneRoot::open(top) else {
        return Vec::new();
    };
    let Ok(dirfd) = rustix::fs::openat(
        root.as_fd(),
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return Vec::new();
    };
    let Ok(entries) = rustix::fs::Dir::read_from(&dirfd) else {
        return Vec::new();
    };
    // Read a bounded number of names (a hostile top level may hold millions).
    let mut names: Vec<String> = entries
        .take(SUBVOLUME_SCAN_CAP * 64)
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    let mut found = Vec::new();
    for name in names.into_iter().take(SUBVOLUME_SCAN_CAP) {
        let Ok(st) = statat(&dirfd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory
            || st.st_ino != SUBVOLUME_ROOT_INO
        {
            continue;
        }
        let Ok(rel) = ClonePath::parse(&name) else {
            continue;
        };
        let Ok(sub) = root.resolve_dir(&rel) else {
            continue;
        };
        // What was resolved is what was looked at (same device and inode).
        let same = rustix::fs::fstat(sub.as_fd())
            .is_ok_and(|s| s.st_dev == st.st_dev && s.st_ino == st.st_ino);
        if !same {
            continue;
        }
        let place = format!("btrfs subvolume {name}");
        let Some(bytes) = fstab_at(run, item, sub.host_path(), Some(&place)) else {
            continue;
        };
        let has = |n: &str| statat(sub.as_fd(), n, AtFlags::SYMLINK_NOFOLLOW).is_ok();
        let names_itself = || {
            fstab::parse_bytes(&bytes)
                .0
                .iter()
                .any(|e| e.mountpoint == "/" && layout::resolve(e, cands) == Ok(i))
        };
        if !(has("etc") && (has("usr") || has("bin") || names_itself())) {
            continue;
        }
        found.push(FoundFstab {
            bytes,
            subvolume: Some(name),
            place: Some(format!("{place} (the default subvolume holds none)")),
        });
        if found.len() == SUBVOLUME_FSTABS_CAP {
            break;
        }
    }
    found
}

/// When the fstab came from a btrfs subvolume and its `/` line names no
/// subvolume (the original host's kernel command line did, with
/// `rootflags=subvol=`), `/` is mounted from that subvolume, not from the
/// default one a plain mount gives.
fn root_from_found_subvolume(
    run: &mut Run<'_>,
    c: &Candidate,
    found: &FoundFstab,
    planned: &mut [Planned],
) {
    let Some(name) = &found.subvolume else {
        return;
    };
    if let Some(root) = planned
        .iter_mut()
        .find(|p| p.mount_point.is_root() && p.subvolume.is_none())
    {
        root.subvolume = Some(layout::Subvolume::Path(
            crate::fstab_options::normalise_subvol(name),
        ));
        run.notes.push(format!(
            "{}: the fstab's / line names no btrfs subvolume; / is mounted from subvolume {name}, where the fstab was found",
            c.describe()
        ));
    }
}

/// The order in which filesystems are mounted aside to look for the
/// original root's `/etc/fstab`: the ones that name themselves root (LV,
/// label or GPT partition name containing "root", or the label `/`) first,
/// then the rest in discovery order. Each look costs a mount and an unmount;
/// on a typical disk `/boot` and data partitions come before the root LV.
/// The first filesystem whose fstab maps `/` onto itself still wins, so the
/// order only changes the answer when two filesystems each claim to be the
/// root, and then the one that is also called root is the better guess.
fn fstab_search_order(cands: &[Candidate]) -> Vec<usize> {
    let rootish = |c: &Candidate| {
        let named = |s: &str| s.to_ascii_lowercase().contains("root");
        c.lv.as_ref().is_some_and(|(_, lv)| named(lv))
            || c.signature.label().is_some_and(|l| l == "/" || named(&l))
            || c.part_name.as_deref().is_some_and(named)
    };
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by_key(|&i| !rootish(&cands[i]));
    order
}

/// True for a block device the kernel marks read-only (`/sys/dev/block/M:m/ro`).
fn device_is_read_only(device: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(md) = std::fs::metadata(device) else {
        return false;
    };
    if !md.file_type().is_block_device() {
        return false;
    }
    let r = md.rdev();
    std::fs::read_to_string(format!(
        "/sys/dev/block/{}:{}/ro",
        rustix::fs::major(r),
        rustix::fs::minor(r)
    ))
    .map(|s| s.trim() == "1")
    .unwrap_or(false)
}

/// The device node of a partition (the kernel's, kpartx's, or an offset
/// loop device) or of the whole device; and whether a loop was needed.
fn node_for(
    j: &mut Journal<'_>,
    disk: &Path,
    partition: Option<u32>,
    offset: u64,
    size: u64,
    read_only: bool,
) -> Result<(PathBuf, bool)> {
    match partition {
        None => Ok((disk.to_path_buf(), false)),
        Some(n) => match partmap::kernel_partition_node(disk, n, offset)
            .or_else(|| partmap::kpartx_partition_node(disk, n, offset, size))
        {
            Some(node) => Ok((node, false)),
            None => Ok((j.attach_loop(disk, offset, size, read_only)?, true)),
        },
    }
}

/// "DEVICES: why each thing was skipped" for the nothing-to-mount errors,
/// with what the probe noticed about the partition table.
fn nothing_mounted(devices: &[PathBuf], skipped: &[Skipped], notes: &[String]) -> String {
    let names: Vec<String> = devices.iter().map(|d| d.display().to_string()).collect();
    let mut why: Vec<String> = skipped
        .iter()
        .map(|s| format!("{}: {}", s.source, s.reason))
        .collect();
    why.extend(
        notes
            .iter()
            .filter(|n| !n.contains("attached through a loop device"))
            .cloned(),
    );
    if why.is_empty() {
        format!("{} (no filesystem found)", names.join(", "))
    } else {
        format!("{}: {}", names.join(", "), why.join("; "))
    }
}

/// Imports each ZFS pool of the clone by GUID under a unique name (mounting
/// nothing), then mounts its datasets under the volume path one by one,
/// each journaled: the mount point resolved inside the volume by fd (a
/// clone's `mountpoint` property or symlink cannot lead out of it; such a
/// dataset is skipped and listed), `nosuid,nodev` unless allowed.
fn import_pools(
    run: &mut Run<'_>,
    j: &mut Journal<'_>,
    vpath: &Path,
    vdevs: &[(&Member, PathBuf)],
    mounts: &mut Vec<MountInfo>,
) -> Result<()> {
    let mut pools: Vec<(u64, String, Vec<PathBuf>)> = Vec::new();
    for (m, node) in vdevs {
        let guid = m.signature.uuid().and_then(|u| u.parse::<u64>().ok());
        let Some(guid) = guid else {
            run.skipped.push(Skipped {
                source: m.describe(),
                what: "zfs_member".into(),
                reason: "no pool GUID in its label".into(),
            });
            continue;
        };
        let name = m.signature.label().unwrap_or_else(|| "pool".into());
        match pools.iter_mut().find(|p| p.0 == guid) {
            Some(p) => p.2.push(node.clone()),
            None => pools.push((guid, name, vec![node.clone()])),
        }
    }
    for (guid, name, devices) in pools {
        if run.opts.read_only {
            run.skipped.push(Skipped {
                source: format!("ZFS pool {name}"),
                what: "zfs_member".into(),
                reason: "read-only import of ZFS pools is not supported yet".into(),
            });
            continue;
        }
        let new_name = zfs::unique_pool_name(&name, run.volume);
        // Recorded with the clone's GUID before the import; once imported
        // (and reguided) with the GUID the pool has now, which undo checks
        // before exporting. A crash between reguid and that record leaves
        // the step pending: undo then knows the pool by its devices.
        let pending = Action::ImportPool {
            name: new_name.clone(),
            guid,
            devices: devices.clone(),
        };
        let reguid = run.opts.zfs_reguid;
        let pool = j.step(pending, |_| {
            let p = zfs::import_clone(&devices, guid, &new_name, vpath, reguid)
                .with_context(|| format!("importing ZFS pool {name} of the clone"))?;
            let done = Action::ImportPool {
                name: new_name.clone(),
                guid: p.guid,
                devices: devices.clone(),
            };
            Ok((done, p))
        })?;
        if let Some(why) = &pool.reguided_before_import {
            run.notes
                .push(format!("ZFS pool {name} imported as {new_name}: {why}"));
        } else if pool.reguided {
            run.notes.push(format!(
                "ZFS pool {name} imported as {new_name} with a new GUID {} (zfs_reguid; the clone's was {guid})",
                pool.guid
            ));
        }
        let flags = zfs::MountFlags {
            read_only: run.opts.read_only,
            nosuid_nodev: !run.opts.allow_suid_dev,
        };
        for ds in pool.datasets {
            let Some(target) = ds.target else {
                if let Some(why) = ds.skipped {
                    run.skipped.push(Skipped {
                        source: ds.name,
                        what: "zfs dataset".into(),
                        reason: why,
                    });
                }
                continue;
            };
            let dir = {
                let mut steps = DirSteps {
                    j: &mut *j,
                    root: vpath.to_path_buf(),
                };
                zfs::resolve_target(vpath, &target, &mut steps)
                    .with_context(|| format!("mount point of ZFS dataset {}", ds.name))?
            };
            let dir = match dir {
                Ok(d) => d,
                Err(why) => {
                    run.skipped.push(Skipped {
                        source: ds.name,
                        what: "zfs dataset".into(),
                        reason: format!("{why}; not mounted"),
                    });
                    continue;
                }
            };
            if zfs::plain_host_path(vpath, &target).as_deref() != Some(dir.host_path()) {
                run.notes.push(format!(
                    "ZFS dataset {}: its mount point {target} leads through a symbolic link inside the clone; it was mounted where that leads inside the volume, {}",
                    ds.name,
                    dir.host_path().display()
                ));
            }
            if let Err(e) = mount_dataset_at(j, &ds.name, &dir, flags) {
                undo_pending_mount(j)?;
                return Err(e);
            }
            mounts.push(MountInfo {
                source: PathBuf::from(&ds.name),
                fs_type: "zfs".into(),
                uuid: Some(pool.guid.to_string()),
                label: Some(name.clone()),
                partition: None,
                original_mountpoint: Some(target),
                mount_path: dir.host_path().to_path_buf(),
                options: flags.options(),
                via_offset_loop: false,
                fstab_options_kept: Vec::new(),
                fstab_options_dropped: Vec::new(),
                subvolume: None,
            });
        }
    }
    Ok(())
}

/// Mounts ZFS dataset `dataset` on `dir`, journaled like every mount (by
/// mount id once made; before that by the dataset name as mountinfo shows
/// it as the source).
fn mount_dataset_at(
    j: &mut Journal<'_>,
    dataset: &str,
    dir: &ResolvedDir,
    flags: zfs::MountFlags,
) -> Result<()> {
    let target = dir.host_path().to_path_buf();
    let action = |devno: String, id: Option<&hostfs::mountfd::MountId>| Action::Mount {
        source: PathBuf::from(dataset),
        source_devno: devno,
        target: target.clone(),
        fstype: "zfs".into(),
        options: flags.options(),
        mnt_id: id.map(|i| i.mnt_id),
        mnt_unique: id.and_then(|i| i.unique_id),
    };
    j.step(action(String::new(), None), |_| {
        let id = zfs::mount_dataset(dir, dataset, flags)?;
        Ok((action(format!("{}:{}", id.major, id.minor), Some(&id)), ()))
    })
}

/// True for the error a refused mount point produces (listed, not fatal).
pub fn is_skip(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<SkipMount>().is_some())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use fsdetect::{Signature, Usage};

    fn cand(
        part: Option<u32>,
        label: Option<&str>,
        part_name: Option<&str>,
        lv: Option<&str>,
    ) -> Candidate {
        let mut s = Signature::new("ext4", Usage::Filesystem, 0);
        if let Some(l) = label {
            s.set("LABEL", l);
        }
        Candidate {
            partition: part,
            offset: 0,
            size: 0,
            part_uuid: None,
            part_name: part_name.map(str::to_string),
            signature: s,
            lv: lv.map(|l| ("vg".to_string(), l.to_string())),
            vg_uuid: None,
            lv_uuid: None,
        }
    }

    #[test]
    fn filesystems_called_root_are_searched_for_fstab_first() {
        let c = vec![
            cand(Some(1), Some("boot"), None, None),
            cand(Some(3), Some("data"), None, None),
            cand(None, None, None, Some("home")),
            cand(None, None, None, Some("lv_Root")),
            cand(Some(4), Some("/"), None, None),
            cand(Some(5), None, Some("Linux root (x86-64)"), None),
        ];
        assert_eq!(fstab_search_order(&c), vec![3, 4, 5, 0, 1, 2]);
        let plain = vec![
            cand(Some(1), None, None, None),
            cand(Some(2), None, None, None),
        ];
        assert_eq!(
            fstab_search_order(&plain),
            vec![0, 1],
            "discovery order kept"
        );
    }
}
