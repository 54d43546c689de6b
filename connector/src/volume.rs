//! The mount → unmount life of a volume, every step journaled in the state
//! store before it is taken so that a crash is rolled back on the next run.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use crate::config::Config;
use crate::discover::{self, Candidate, Member, MemberKind};
use crate::fstab;
use crate::layout::{self, Planned};
use crate::lock::VolumeLock;
use crate::manifest::{Layout, Manifest, MountInfo, Skipped, UnresolvedEntry};
use crate::mounter::{self, UmountError};
use crate::partmap;
use crate::state::{Action, Phase, StateStore, Step, VolumeRecord};
use crate::tools::{self, DEFAULT_TIMEOUT};
use crate::zfs;

/// What the caller asked for.
#[derive(Debug, Clone)]
pub struct MountRequest {
    /// Volume name (`[A-Za-z0-9_.-]{1,64}`).
    pub volume: String,
    /// The LUNs' device nodes (several when a volume group spans LUNs of one
    /// clone set), or image files (attached through loop devices).
    pub devices: Vec<PathBuf>,
    /// Mount everything read-only, without journal/log replay.
    pub read_only: bool,
    /// Opt-in: give each XFS of the clone a new UUID (`xfs_admin -U generate`)
    /// after a log-replaying mount, so it no longer collides with its gold copy.
    pub regen_xfs_uuid: bool,
    /// Opt-in: give each imported ZFS pool of the clone a new pool GUID
    /// (`zpool reguid`, rewrites the clone's labels). OpenZFS never opens two
    /// pools with one GUID, so without it a second clone of the same gold
    /// pool (or the gold itself) cannot be imported while this one is.
    pub zfs_reguid: bool,
    /// Opt-in: when the kernel refuses a btrfs whose fsid is already mounted
    /// (no temp-fsid before Linux 6.7), change the clone's fsid with
    /// `btrfstune -m` (rewrites its superblocks' metadata_uuid) and retry.
    pub btrfs_new_fsid: bool,
}

/// What `unmount` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnmountReport {
    /// Volume name.
    pub volume: String,
    /// Steps undone, in order.
    pub undone: Vec<String>,
    /// True when the volume was not known (nothing to do).
    pub not_mounted: bool,
    /// Mounts detached lazily because `--force` was given and they were busy.
    pub forced: Vec<String>,
}

/// Volume names are path components and API identifiers.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name != "."
        && name != "..";
    if !ok {
        bail!("invalid volume name {name:?}: expected 1-64 characters from [A-Za-z0-9_.-]");
    }
    Ok(())
}

/// The state of one volume while it is being changed, saved after every step.
struct Journal<'a> {
    store: &'a StateStore,
    rec: VolumeRecord,
}

impl Journal<'_> {
    fn save(&self) -> Result<()> {
        self.store
            .put(&self.rec)
            .context("recording a step in the state store")
    }

    /// Records `action` as about to happen, runs `f`, records completion
    /// (with the action as `f` returns it, e.g. the loop device now known).
    fn step<T>(&mut self, action: Action, f: impl FnOnce() -> Result<(Action, T)>) -> Result<T> {
        self.rec.steps.push(Step {
            action,
            done: false,
        });
        self.save()?;
        let (done_action, v) = f()?;
        if let Some(last) = self.rec.steps.last_mut() {
            last.action = done_action;
            last.done = true;
        }
        self.save()?;
        Ok(v)
    }
}

/// Shared handles for one command.
pub struct Ctx {
    /// Paths.
    pub cfg: Config,
    /// The state database.
    pub store: StateStore,
}

impl Ctx {
    /// Opens the state store named by the config.
    pub fn open(cfg: Config) -> Result<Self> {
        let store = StateStore::open(&cfg.state_path)?;
        Ok(Self { cfg, store })
    }

    fn volume_path(&self, volume: &str) -> PathBuf {
        self.cfg.volumes_root.join(volume)
    }

    fn lock(&self, volume: &str) -> Result<VolumeLock> {
        VolumeLock::try_acquire(&self.cfg.lock_dir(), volume)?
            .ok_or_else(|| anyhow!("volume {volume} is being changed by another goldmount process; try again when it finishes"))
    }

    /// Rolls back volumes left half-done by a crashed goldmount (their lock is
    /// free but their phase is not `mounted`). Returns what was recovered.
    pub fn recover(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for rec in self.store.list()? {
            if rec.phase == Phase::Mounted {
                continue;
            }
            let Some(_lock) = VolumeLock::try_acquire(&self.cfg.lock_dir(), &rec.name)? else {
                continue;
            };
            tracing::warn!(volume = %rec.name, phase = ?rec.phase, "rolling back an interrupted operation");
            let name = rec.name.clone();
            let mut j = Journal {
                store: &self.store,
                rec,
            };
            undo_all(&mut j, true, &mut Vec::new(), &mut Vec::new())?;
            self.store.delete(&name)?;
            out.push(name);
        }
        Ok(out)
    }
}

/// Mounts everything on `req.devices` under the volume path and returns the
/// manifest. Idempotent: the same request again returns the same manifest.
pub fn mount(ctx: &Ctx, req: &MountRequest) -> Result<Manifest> {
    validate_name(&req.volume)?;
    if req.devices.is_empty() {
        bail!("no device given for volume {}", req.volume);
    }
    let mut devices = Vec::new();
    for d in &req.devices {
        let c = std::fs::canonicalize(d)
            .with_context(|| format!("device {} not found", d.display()))?;
        if devices.contains(&c) {
            bail!("device {} given twice", d.display());
        }
        devices.push(c);
    }
    let shown = |v: &[PathBuf]| {
        v.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    ctx.recover()?;
    let _lock = ctx.lock(&req.volume)?;
    if let Some(rec) = ctx.store.get(&req.volume)? {
        if rec.devices == devices && rec.read_only == req.read_only {
            if let Some(m) = rec.manifest {
                return Ok(m);
            }
        }
        bail!(
            "volume {} is already mounted from {}; unmount it first (goldmount unmount --volume {})",
            req.volume,
            shown(&rec.devices),
            req.volume
        );
    }
    for other in ctx.store.list()? {
        if let Some(d) = other.devices.iter().find(|d| devices.contains(d)) {
            bail!(
                "{} is already mounted as volume {}",
                d.display(),
                other.name
            );
        }
    }
    let mut j = Journal {
        store: &ctx.store,
        rec: VolumeRecord {
            name: req.volume.clone(),
            devices: devices.clone(),
            read_only: req.read_only,
            phase: Phase::Mounting,
            steps: Vec::new(),
            manifest: None,
        },
    };
    j.save()?;
    match mount_steps(ctx, &mut j, req, &devices) {
        Ok(m) => {
            j.rec.phase = Phase::Mounted;
            j.rec.manifest = Some(m.clone());
            j.save()?;
            Ok(m)
        }
        Err(e) => {
            let mut undone = Vec::new();
            let rollback = undo_all(&mut j, true, &mut undone, &mut Vec::new());
            let _ = ctx.store.delete(&req.volume);
            match rollback {
                Ok(()) => Err(e.context(format!("mounting volume {} failed; everything was rolled back", req.volume))),
                Err(re) => Err(e.context(format!(
                    "mounting volume {} failed and the rollback also failed ({re:#}); check mounts under {}",
                    req.volume,
                    ctx.volume_path(&req.volume).display()
                ))),
            }
        }
    }
}

fn attach_loop(
    j: &mut Journal<'_>,
    backing: &Path,
    offset: u64,
    size: u64,
    read_only: bool,
) -> Result<PathBuf> {
    let action = Action::AttachLoop {
        backing: backing.to_path_buf(),
        offset,
        size,
        read_only,
        device: None,
    };
    j.step(action, || {
        let (o, s) = (offset.to_string(), size.to_string());
        let b = backing.to_string_lossy();
        let mut args = vec!["--find", "--show", "--offset", &o];
        if size > 0 {
            args.extend(["--sizelimit", &s]);
        }
        if read_only {
            args.push("--read-only");
        }
        args.push(&b);
        let out = tools::run("losetup", &args, DEFAULT_TIMEOUT)?;
        let dev = PathBuf::from(out.stdout.trim());
        Ok((
            Action::AttachLoop {
                backing: backing.to_path_buf(),
                offset,
                size,
                read_only,
                device: Some(dev.clone()),
            },
            dev,
        ))
    })
}

/// Creates the missing directories up to `dir`, journaling each one this
/// process created so that teardown removes exactly those. One that another
/// goldmount process created in the meantime is not ours: its step is
/// dropped instead of failing the mount.
fn make_dirs(j: &mut Journal<'_>, dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut d = dir.to_path_buf();
    while !d.exists() {
        missing.push(d.clone());
        if !d.pop() {
            break;
        }
    }
    for m in missing.into_iter().rev() {
        let created = j.step(Action::MakeDir { path: m.clone() }, || {
            let created = match std::fs::create_dir(&m) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && m.is_dir() => false,
                Err(e) => return Err(e).with_context(|| format!("creating {}", m.display())),
            };
            Ok((Action::MakeDir { path: m.clone() }, created))
        })?;
        if !created {
            j.rec.steps.pop();
            j.save()?;
        }
    }
    Ok(())
}

/// Creates a directory all volumes share (the volumes root, the staging
/// dir) without journaling it: one volume's teardown must not remove it
/// while a concurrent goldmount process is creating its own entry in it.
fn shared_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn do_mount(
    j: &mut Journal<'_>,
    source: &Path,
    target: &Path,
    mtype: &str,
    options: &str,
) -> Result<()> {
    let action = Action::Mount {
        source: source.to_path_buf(),
        target: target.to_path_buf(),
        fstype: mtype.to_string(),
        options: options.to_string(),
    };
    j.step(action.clone(), || {
        mounter::mount(source, target, mtype, options).with_context(|| {
            format!(
                "mounting {} ({mtype}) on {}",
                source.display(),
                target.display()
            )
        })?;
        Ok((action, ()))
    })
}

/// Looks for `/etc/fstab` on a candidate through a temporary read-only mount
/// that does not replay journals (nothing is written to the clone).
fn read_fstab(
    j: &mut Journal<'_>,
    ctx: &Ctx,
    volume: &str,
    node: &Path,
    c: &Candidate,
    i: usize,
) -> Result<Option<String>> {
    let t = c.signature.fs_type.as_str();
    if !matches!(t, "ext2" | "ext3" | "ext4" | "xfs" | "btrfs") {
        return Ok(None);
    }
    let dir = ctx.cfg.staging_dir().join(format!("{volume}-{i}"));
    let mark = j.rec.steps.len();
    shared_dir(&ctx.cfg.staging_dir())?;
    make_dirs(j, &dir)?;
    let mut opts = mounter::options_for(t, true, false);
    if t == "xfs" {
        opts.push_str(",nouuid");
    }
    let text = match do_mount(j, node, &dir, &mounter::mount_type(t), &opts) {
        Ok(()) => std::fs::read_to_string(dir.join("etc/fstab")).ok(),
        Err(e) => {
            tracing::info!("cannot look for /etc/fstab on {}: {e:#}", c.describe());
            None
        }
    };
    // Undo the staging mount and its directories right away.
    while j.rec.steps.len() > mark {
        undo_last(j, false, &mut Vec::new(), &mut Vec::new())?;
    }
    Ok(text)
}

/// The device node of a partition (the kernel's, or an offset loop device)
/// or of the whole device. Returns the node and whether a loop was needed.
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
            None => Ok((attach_loop(j, disk, offset, size, read_only)?, true)),
        },
    }
}

/// True when the kernel has device-mapper (LVM activation needs it).
fn device_mapper_available() -> bool {
    Path::new("/dev/mapper/control").exists()
}

/// VG names other volumes' clones hold (so two clones never get the same one).
fn reserved_vg_names(ctx: &Ctx, volume: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for rec in ctx.store.list()? {
        if rec.name == volume {
            continue;
        }
        for s in rec.steps {
            if let Action::ImportVg { vg, .. } = s.action {
                if !vg.is_empty() {
                    names.push(vg);
                }
            }
        }
    }
    Ok(names)
}

/// Imports each complete VG found on the clone's PVs (renamed on collision,
/// activated on exactly its devices) and turns its LVs into candidates.
#[allow(clippy::too_many_arguments)]
fn import_vgs(
    ctx: &Ctx,
    j: &mut Journal<'_>,
    req: &MountRequest,
    pvs: &[(&Member, PathBuf)],
    cands: &mut Vec<Candidate>,
    nodes: &mut Vec<PathBuf>,
    via_loop: &mut Vec<bool>,
    skipped: &mut Vec<Skipped>,
    notes: &mut Vec<String>,
) -> Result<()> {
    let skip_all = |skipped: &mut Vec<Skipped>, reason: String| {
        for (m, _) in pvs {
            skipped.push(Skipped {
                source: m.describe(),
                what: "LVM2_member".into(),
                reason: reason.clone(),
            });
        }
    };
    if req.read_only {
        skip_all(
            skipped,
            "read-only mounts do not import volume groups (vgimportclone rewrites the clone's LVM metadata)".into(),
        );
        return Ok(());
    }
    if !device_mapper_available() {
        skip_all(
            skipped,
            "device-mapper is not available in this kernel: LVM volumes cannot be activated".into(),
        );
        return Ok(());
    }
    let ours = ctx.store.clone_devices().unwrap_or_default();
    match lvm::check_autoactivation_guard(&ours) {
        Ok(g) if g.installed => {}
        Ok(g) => notes.push(format!(
            "the LVM autoactivation guard is not installed ({}): the host may autoactivate clones when their LUNs appear; run `goldmount guard install`",
            g.problems.join("; ")
        )),
        Err(e) => notes.push(format!("cannot check the LVM autoactivation guard: {e}")),
    }
    let devs: Vec<PathBuf> = pvs.iter().map(|(_, n)| n.clone()).collect();
    let plan = match lvm::plan_devices(&devs) {
        Ok(p) => p,
        Err(e) => {
            skip_all(
                skipped,
                format!("LVM metadata cannot be used, nothing was activated: {e}"),
            );
            return Ok(());
        }
    };
    for pv in &plan.unassigned {
        skipped.push(Skipped {
            source: pv.device.display().to_string(),
            what: "LVM2_member".into(),
            reason: format!("PV {} has no volume group metadata", pv.pv_uuid),
        });
    }
    let reserved = reserved_vg_names(ctx, &req.volume)?;
    for vg in &plan.vgs {
        let original = vg.metadata.name.clone();
        if let Err(e) = vg.require_complete() {
            // Say so when the host's own LVM already activated (part of) it:
            // goldmount leaves that alone, an operator has to know.
            let by_host = lvm::dm::active_on(&vg.device_paths());
            let host_note = if by_host.is_empty() {
                String::new()
            } else {
                format!(
                    "; the host's LVM has already activated {} on these devices (autoactivation: run `goldmount guard install`; goldmount undoes it when the whole VG is mounted)",
                    by_host.join(", ")
                )
            };
            skipped.push(Skipped {
                source: format!("volume group {original}"),
                what: "LVM2_member".into(),
                reason: format!("not activated: {e}{host_note}"),
            });
            continue;
        }
        let devices = vg.device_paths();
        let opts = lvm::ImportOptions {
            volume: req.volume.clone(),
            reserved_names: reserved.clone(),
            ..Default::default()
        };
        let action = Action::ImportVg {
            vg: String::new(),
            original: original.clone(),
            devices: devices.clone(),
        };
        let imported = j.step(action, || {
            let r = lvm::Lvm::default()
                .import_clone_with(&devices, &opts)
                .with_context(|| format!("importing volume group {original} of the clone"))?;
            Ok((
                Action::ImportVg {
                    vg: r.name.clone(),
                    original: original.clone(),
                    devices: devices.clone(),
                },
                r,
            ))
        })?;
        if !imported.undone_activation.is_empty() {
            notes.push(format!(
                "undid an accidental activation of the clone by the host's LVM: {}",
                imported.undone_activation.join(", ")
            ));
        }
        if imported.renamed {
            notes.push(format!(
                "volume group {original} imported as {} (vgimportclone)",
                imported.name
            ));
        }
        for lv in &imported.lvs {
            let lvref = (original.clone(), lv.name.clone());
            if let Some(why) = &lv.unsupported {
                skipped.push(Skipped {
                    source: format!("logical volume {original}/{}", lv.name),
                    what: "lv".into(),
                    reason: why.clone(),
                });
                continue;
            }
            let probed = fsdetect::FileSource::open(&lv.dm_path).and_then(|src| {
                let size = fsdetect::BlockSource::size(&src);
                fsdetect::probe_region(&src, 0, size).map(|r| (r.content, size))
            });
            match probed {
                Ok((content, size)) => match discover::classify_volume(&content, size, lvref) {
                    Ok(c) => {
                        cands.push(c);
                        nodes.push(lv.dm_path.clone());
                        via_loop.push(false);
                    }
                    Err(sk) => skipped.push(sk),
                },
                Err(e) => skipped.push(Skipped {
                    source: format!("logical volume {original}/{}", lv.name),
                    what: "lv".into(),
                    reason: format!("cannot probe {}: {e}", lv.dm_path.display()),
                }),
            }
        }
    }
    Ok(())
}

/// Imports each ZFS pool of the clone by GUID under a unique name, with its
/// datasets mounted under the volume path.
fn import_pools(
    j: &mut Journal<'_>,
    req: &MountRequest,
    vpath: &Path,
    vdevs: &[(&Member, PathBuf)],
    mounts: &mut Vec<MountInfo>,
    skipped: &mut Vec<Skipped>,
) -> Result<()> {
    let mut pools: Vec<(u64, String, Vec<PathBuf>)> = Vec::new();
    for (m, node) in vdevs {
        let guid = m.signature.uuid().and_then(|u| u.parse::<u64>().ok());
        let Some(guid) = guid else {
            skipped.push(Skipped {
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
        if req.read_only {
            skipped.push(Skipped {
                source: format!("ZFS pool {name}"),
                what: "zfs_member".into(),
                reason: "read-only import of ZFS pools is not supported yet".into(),
            });
            continue;
        }
        let new_name = zfs::unique_pool_name(&name, &req.volume);
        let action = Action::ImportPool {
            name: new_name.clone(),
            guid,
            devices: devices.clone(),
        };
        let pool = j.step(action.clone(), || {
            let p = zfs::import_clone(&devices, guid, &new_name, vpath, req.zfs_reguid)
                .with_context(|| format!("importing ZFS pool {name} of the clone"))?;
            Ok((action, p))
        })?;
        for ds in pool.datasets {
            match (ds.mountpoint, ds.skipped) {
                (Some(mp), _) => mounts.push(MountInfo {
                    source: PathBuf::from(&ds.name),
                    fs_type: "zfs".into(),
                    uuid: Some(pool.guid.to_string()),
                    label: Some(name.clone()),
                    partition: None,
                    original_mountpoint: None,
                    mount_path: mp,
                    options: "zfs".into(),
                    via_offset_loop: false,
                }),
                (None, Some(why)) => skipped.push(Skipped {
                    source: ds.name,
                    what: "zfs dataset".into(),
                    reason: why,
                }),
                (None, None) => {}
            }
        }
    }
    Ok(())
}

/// "DEVICES: why each thing was skipped" for the nothing-to-mount errors.
fn nothing_mounted(devices: &[PathBuf], skipped: &[Skipped]) -> String {
    let names: Vec<String> = devices.iter().map(|d| d.display().to_string()).collect();
    let why: Vec<String> = skipped
        .iter()
        .map(|s| format!("{}: {}", s.source, s.reason))
        .collect();
    if why.is_empty() {
        format!("{} (no filesystem found)", names.join(", "))
    } else {
        format!("{}: {}", names.join(", "), why.join("; "))
    }
}

fn mount_steps(
    ctx: &Ctx,
    j: &mut Journal<'_>,
    req: &MountRequest,
    devices: &[PathBuf],
) -> Result<Manifest> {
    let mut notes = Vec::new();
    let mut cands = Vec::new();
    let mut cand_disks = Vec::new();
    let mut members = Vec::new();
    let mut member_disks = Vec::new();
    let mut skipped = Vec::new();
    for device in devices {
        let disk = if std::fs::metadata(device)?.file_type().is_file() {
            notes.push(format!(
                "{} is an image file: attached through a loop device",
                device.display()
            ));
            attach_loop(j, device, 0, 0, req.read_only)?
        } else {
            device.to_path_buf()
        };
        let src = fsdetect::FileSource::open(&disk)
            .with_context(|| format!("opening {}", disk.display()))?;
        let report =
            fsdetect::probe_disk(&src).with_context(|| format!("probing {}", disk.display()))?;
        drop(src);
        let found = discover::classify(&report);
        for c in found.candidates {
            cands.push(c);
            cand_disks.push(disk.clone());
        }
        for m in found.members {
            members.push(m);
            member_disks.push(disk.clone());
        }
        for mut sk in found.skipped {
            if devices.len() > 1 {
                sk.source = format!("{} {}", device.display(), sk.source);
            }
            skipped.push(sk);
        }
    }
    if cands.is_empty() && members.is_empty() {
        bail!(
            "nothing mountable on {}",
            nothing_mounted(devices, &skipped)
        );
    }
    // A device node per candidate and per member.
    let mut nodes = Vec::new();
    let mut via_loop = Vec::new();
    for (c, disk) in cands.iter().zip(&cand_disks) {
        let (node, looped) = node_for(j, disk, c.partition, c.offset, c.size, req.read_only)?;
        nodes.push(node);
        via_loop.push(looped);
    }
    let mut member_nodes = Vec::new();
    for (m, disk) in members.iter().zip(&member_disks) {
        let (node, looped) = node_for(j, disk, m.partition, m.offset, m.size, req.read_only)?;
        member_nodes.push(node);
        via_loop.push(looped);
    }
    if via_loop.iter().any(|v| *v) {
        notes.push("the kernel created no partition nodes: partitions were mapped with offset loop devices".into());
    }
    via_loop.truncate(cands.len());
    // Volume groups: imported clone-safely, their LVs become candidates.
    let lvm_devs: Vec<(&Member, PathBuf)> = members
        .iter()
        .zip(member_nodes.iter())
        .filter(|(m, _)| m.kind == MemberKind::Lvm)
        .map(|(m, n)| (m, n.clone()))
        .collect();
    if !lvm_devs.is_empty() {
        import_vgs(
            ctx,
            j,
            req,
            &lvm_devs,
            &mut cands,
            &mut nodes,
            &mut via_loop,
            &mut skipped,
            &mut notes,
        )?;
    }
    let zfs_devs: Vec<(&Member, PathBuf)> = members
        .iter()
        .zip(member_nodes.iter())
        .filter(|(m, _)| m.kind == MemberKind::Zfs)
        .map(|(m, n)| (m, n.clone()))
        .collect();
    // The original tree, if one filesystem holds an fstab whose "/" is itself.
    let vpath = ctx.volume_path(&req.volume);
    let mut plan: Option<(Vec<Planned>, Vec<UnresolvedEntry>)> = None;
    for (i, c) in cands.iter().enumerate() {
        if let Some(text) = read_fstab(j, ctx, &req.volume, &nodes[i], c, i)? {
            let entries = fstab::parse(&text);
            if let Some(p) = layout::from_fstab(&entries, &cands, i, &vpath) {
                plan = Some(p);
                break;
            }
        }
    }
    let (layout_kind, planned, unresolved) = match plan {
        Some((p, u)) => (Layout::Fstab, p, u),
        None => (Layout::Flat, layout::flat(&cands, &vpath), Vec::new()),
    };
    if layout_kind == Layout::Fstab {
        let used: HashSet<usize> = planned.iter().map(|p| p.cand).collect();
        for (i, c) in cands.iter().enumerate() {
            if !used.contains(&i) {
                skipped.push(Skipped {
                    source: c.describe(),
                    what: c.signature.fs_type.clone(),
                    reason: "not named by the clone's /etc/fstab; mount the volume without its fstab tree to reach it".into(),
                });
            }
        }
    }
    shared_dir(&ctx.cfg.volumes_root)?;
    make_dirs(j, &vpath)?;
    let mut mounted_uuids = mounter::mounted_uuids();
    let mut mounts = Vec::new();
    for p in &planned {
        let c = &cands[p.cand];
        let node = &nodes[p.cand];
        let t = c.signature.fs_type.as_str();
        if !p.target.exists() {
            if req.read_only && layout_kind == Layout::Fstab && p.target != vpath {
                skipped.push(Skipped {
                    source: c.describe(),
                    what: t.to_string(),
                    reason: format!(
                        "mount point {} does not exist in the read-only root",
                        p.target.display()
                    ),
                });
                continue;
            }
            make_dirs(j, &p.target)?;
        }
        let uuid = c.signature.uuid();
        let dup = uuid.as_ref().is_some_and(|u| mounted_uuids.contains(u));
        let mtype = mounter::mount_type(t);
        let mut options = mounter::options_for(t, req.read_only, dup);
        let first = do_mount(j, node, &p.target, &mtype, &options);
        if let Err(e) = first {
            // Another clone of the same gold may have mounted its XFS meanwhile.
            if t == "xfs" && !dup {
                j.rec.steps.pop();
                j.save()?;
                options = mounter::options_for(t, req.read_only, true);
                do_mount(j, node, &p.target, &mtype, &options)
                    .map_err(|e2| e2.context(format!("{e:#}")))?;
            } else if t == "btrfs" && req.btrfs_new_fsid && !req.read_only {
                // Kernels without temp-fsid (< 6.7) refuse a second device with
                // a mounted fsid: give the clone its own (metadata_uuid) and retry.
                j.rec.steps.pop();
                j.save()?;
                let n = node.to_string_lossy();
                tools::run("btrfstune", &["-m", &n], DEFAULT_TIMEOUT)
                    .with_context(|| format!("giving the btrfs of {} a new fsid", c.describe()))?;
                do_mount(j, node, &p.target, &mtype, &options)
                    .map_err(|e2| e2.context(format!("{e:#}")))?;
                notes.push(format!(
                    "{}: btrfs fsid changed (btrfstune -m, --btrfs-new-fsid)",
                    c.describe()
                ));
            } else if t == "btrfs" && dup {
                return Err(e.context(
                    "this kernel refuses a second btrfs with an fsid that is already mounted (the gold copy \
                     or another clone); --btrfs-new-fsid gives the clone its own fsid (btrfstune -m, \
                     changes the clone)",
                ));
            } else {
                return Err(e);
            }
        }
        if t == "xfs" && req.regen_xfs_uuid && !req.read_only {
            // The mount replayed the log; now give the clone its own UUID.
            undo_last(j, false, &mut Vec::new(), &mut Vec::new())?;
            let n = node.to_string_lossy();
            tools::run("xfs_admin", &["-U", "generate", &n], DEFAULT_TIMEOUT)
                .with_context(|| format!("regenerating the XFS UUID of {}", c.describe()))?;
            options = mounter::options_for(t, false, false);
            do_mount(j, node, &p.target, &mtype, &options)?;
            notes.push(format!(
                "{}: XFS UUID regenerated (--regen-uuid)",
                c.describe()
            ));
        }
        if let Some(u) = &uuid {
            mounted_uuids.insert(u.clone());
        }
        mounts.push(MountInfo {
            source: node.clone(),
            fs_type: t.to_string(),
            uuid: if req.regen_xfs_uuid && t == "xfs" {
                None
            } else {
                uuid
            },
            label: c.signature.label(),
            partition: c.partition,
            original_mountpoint: p.original.clone(),
            mount_path: p.target.clone(),
            options,
            via_offset_loop: via_loop[p.cand],
        });
    }
    if !zfs_devs.is_empty() {
        import_pools(j, req, &vpath, &zfs_devs, &mut mounts, &mut skipped)?;
    }
    if mounts.is_empty() {
        bail!(
            "nothing could be mounted from {}",
            nothing_mounted(devices, &skipped)
        );
    }
    Ok(Manifest {
        volume: req.volume.clone(),
        devices: devices.iter().map(|d| partmap::display_path(d)).collect(),
        path: vpath,
        read_only: req.read_only,
        layout: layout_kind,
        mounts,
        skipped,
        unresolved,
        notes,
    })
}

/// Undoes the newest step and drops it from the record.
fn undo_last(
    j: &mut Journal<'_>,
    lazy: bool,
    undone: &mut Vec<String>,
    forced: &mut Vec<String>,
) -> Result<()> {
    let Some(step) = j.rec.steps.last().cloned() else {
        return Ok(());
    };
    match &step.action {
        Action::Mount { target, .. } => {
            if mounter::is_mounted(target) {
                match mounter::umount(target, false) {
                    Ok(()) => undone.push(format!("unmounted {}", target.display())),
                    Err(UmountError::Busy { .. }) if lazy => {
                        mounter::umount(target, true)?;
                        forced.push(target.display().to_string());
                        undone.push(format!("lazily detached busy {}", target.display()));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Action::MakeDir { path } => match std::fs::remove_dir(path) {
            Ok(()) => undone.push(format!("removed {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("leaving {}: {e}", path.display()),
        },
        Action::ImportVg { devices, .. } => {
            // The VG's current name comes from the devices themselves (a crash
            // may have happened between vgimportclone and recording it).
            if devices.iter().all(|d| d.exists()) {
                if let Ok(plan) = lvm::plan_devices(devices) {
                    if let [vg] = plan.vgs.as_slice() {
                        let name = vg.metadata.name.clone();
                        lvm::deactivate(&name, devices)
                            .with_context(|| format!("deactivating volume group {name}"))?;
                        undone.push(format!("deactivated volume group {name}"));
                    }
                }
            }
        }
        Action::ImportPool { name, .. } => {
            let r =
                zfs::export(name, lazy).with_context(|| format!("exporting ZFS pool {name}"))?;
            if !r.not_imported {
                undone.push(format!("exported ZFS pool {name}"));
            }
            forced.extend(r.forced);
        }
        Action::AttachLoop {
            backing,
            offset,
            size,
            device,
            ..
        } => {
            let dev = device
                .clone()
                .or_else(|| partmap::find_loop(backing, *offset, *size));
            if let Some(dev) = dev {
                if dev.exists() {
                    let d = dev.to_string_lossy();
                    tools::run("losetup", &["-d", &d], DEFAULT_TIMEOUT)?;
                    undone.push(format!("detached {d}"));
                }
            }
        }
    }
    j.rec.steps.pop();
    j.save()
}

fn undo_all(
    j: &mut Journal<'_>,
    lazy: bool,
    undone: &mut Vec<String>,
    forced: &mut Vec<String>,
) -> Result<()> {
    while !j.rec.steps.is_empty() {
        undo_last(j, lazy, undone, forced)?;
    }
    Ok(())
}

/// Unmounts a volume and undoes every step, newest first. Refuses (changing
/// nothing) while something uses it, naming the holders, unless `force`.
pub fn unmount(ctx: &Ctx, volume: &str, force: bool) -> Result<UnmountReport> {
    validate_name(volume)?;
    ctx.recover()?;
    let _lock = ctx.lock(volume)?;
    let Some(rec) = ctx.store.get(volume)? else {
        return Ok(UnmountReport {
            volume: volume.to_string(),
            undone: Vec::new(),
            not_mounted: true,
            forced: Vec::new(),
        });
    };
    if !force {
        let mut busy = Vec::new();
        for s in &rec.steps {
            if let Action::Mount { target, .. } = &s.action {
                let h = mounter::holders(target);
                if !h.is_empty() {
                    busy.push(format!("{}: {}", target.display(), h.join("; ")));
                }
            }
        }
        if !busy.is_empty() {
            bail!(
                "volume {volume} is in use, nothing was changed: {} (use --force to detach lazily)",
                busy.join(" | ")
            );
        }
    }
    let mut j = Journal {
        store: &ctx.store,
        rec,
    };
    j.rec.phase = Phase::Unmounting;
    j.save()?;
    let mut undone = Vec::new();
    let mut forced = Vec::new();
    undo_all(&mut j, force, &mut undone, &mut forced)?;
    ctx.store.delete(volume)?;
    Ok(UnmountReport {
        volume: volume.to_string(),
        undone,
        not_mounted: false,
        forced,
    })
}
