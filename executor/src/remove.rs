//! `remove-device`: takes a SCSI disk (or the multipath map over it) away
//! cleanly: refuse when mounted or held, flush, remove the map, delete every
//! SCSI path through sysfs, and check they are gone.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cmd;
use crate::error::{Error, Result};
use crate::inventory::holders;
use crate::mounts;
use crate::sysfs::Root;

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RemoveOptions {
    /// Proceed although mounted or held (the map flush is still not forced).
    pub force: bool,
    /// Attempts at flushing the multipath map.
    pub map_tries: u32,
    /// Pause between attempts.
    pub retry_delay: Duration,
    /// Timeout of each external command.
    pub cmd_timeout: Duration,
}

impl Default for RemoveOptions {
    fn default() -> Self {
        Self {
            force: false,
            map_tries: 5,
            retry_delay: Duration::from_secs(1),
            cmd_timeout: Duration::from_secs(30),
        }
    }
}

/// What `plan` found: the device stack to take down.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Stack {
    /// The device asked for (kernel name).
    pub device: String,
    /// The multipath map over it (kernel name, dm name).
    pub map: Option<(String, String)>,
    /// SCSI paths to delete.
    pub paths: Vec<String>,
    /// Why removal would be refused: mountpoints and holders. Empty = free.
    pub in_use: Vec<String>,
}

/// What was done.
#[derive(Debug, Clone, Serialize)]
pub struct Removal {
    /// The stack that was taken down.
    pub stack: Stack,
    /// Devices whose buffers were flushed.
    pub flushed: Vec<String>,
    /// The dm name of the removed multipath map.
    pub map_removed: Option<String>,
    /// SCSI paths deleted.
    pub deleted: Vec<String>,
    /// The WWID taken out of /etc/multipath/wwids with the map (`multipath
    /// -w`): the LUN leaves this host, so nothing of it stays in the host's
    /// multipath configuration — wait-for-device may have put it there.
    pub wwid_forgotten: Option<String>,
    /// Flush failures that did not stop the removal (e.g. forced).
    pub warnings: Vec<String>,
}

/// Resolves a user's device argument (`/dev/sdc`, `sdc`, `/dev/mapper/X`,
/// `/dev/dm-3`, a /dev/disk/by-id link) to a kernel name under /sys/block.
pub fn resolve(root: &Root, arg: &str) -> Result<String> {
    let arg = arg.trim();
    let direct = arg.trim_start_matches("/dev/");
    if !direct.contains('/') && root.exists(format!("/sys/block/{direct}")) {
        return Ok(direct.to_string());
    }
    if let Some(name) = arg.strip_prefix("/dev/mapper/") {
        for dm in root
            .list("/sys/block")
            .into_iter()
            .filter(|n| n.starts_with("dm-"))
        {
            if root.attr(format!("/sys/block/{dm}/dm/name")).as_deref() == Some(name) {
                return Ok(dm);
            }
        }
    }
    if arg.starts_with('/') {
        if let Some(real) = root.real(arg) {
            let name = real.rsplit('/').next().unwrap_or_default();
            if root.exists(format!("/sys/block/{name}")) {
                return Ok(name.to_string());
            }
        }
    }
    Err(Error::NotFound(format!(
        "{arg}: not a whole block device under /sys/block (partitions are removed with their disk)"
    )))
}

fn describe_holder(h: &crate::inventory::Holder) -> String {
    match &h.dm_name {
        Some(n) => format!("held by {} ({n})", h.name),
        None => format!("held by {}", h.name),
    }
}

/// True for the dm uuid kpartx gives a partition of a multipath map
/// (`part1-mpath-3600…`).
fn is_kpartx_partition(dm_uuid: &str) -> bool {
    dm_uuid
        .split_once('-')
        .is_some_and(|(p, rest)| p.starts_with("part") && rest.starts_with("mpath-"))
}

/// Appends to `out` why the device at `sys` is in use: its mountpoints and
/// its holders, except the multipath map `map` above it; a kpartx
/// partition map counts only through its own use.
fn usage(
    root: &Root,
    mt: &mounts::MountTable,
    dev_name: &str,
    sys: &str,
    map: Option<&str>,
    out: &mut Vec<String>,
) {
    if let Some(d) = root.attr(format!("{sys}/dev")) {
        for m in mt.get(&d).into_iter().flatten() {
            out.push(format!("{dev_name} mounted at {m}"));
        }
    }
    for h in holders(root, &format!("{sys}/holders")) {
        if map == Some(h.name.as_str()) {
            continue;
        }
        if h.dm_uuid.as_deref().is_some_and(is_kpartx_partition) {
            let name = h.dm_name.clone().unwrap_or_else(|| h.name.clone());
            usage(
                root,
                mt,
                &name,
                &format!("/sys/block/{}", h.name),
                None,
                out,
            );
            continue;
        }
        out.push(format!("{dev_name} {}", describe_holder(&h)));
    }
}

/// Works out the stack of `arg` and whether it is in use, without touching
/// anything.
pub fn plan(root: &Root, arg: &str) -> Result<Stack> {
    let name = resolve(root, arg)?;
    let is_scsi = |n: &str| {
        root.link_name(format!("/sys/block/{n}/device"))
            .is_some_and(|l| l.parse::<crate::hctl::Hctl>().is_ok())
    };
    let uuid = root
        .attr(format!("/sys/block/{name}/dm/uuid"))
        .unwrap_or_default();
    let (top, map) = if uuid.starts_with("mpath-") {
        let dm_name = root
            .attr(format!("/sys/block/{name}/dm/name"))
            .unwrap_or_default();
        (name.clone(), Some((name.clone(), dm_name)))
    } else if is_scsi(&name) {
        let m = holders(root, &format!("/sys/block/{name}/holders"))
            .into_iter()
            .find(|h| h.is_multipath())
            .map(|h| (h.name.clone(), h.dm_name.clone().unwrap_or_default()));
        match m {
            Some(m) => (m.0.clone(), Some(m)),
            None => (name.clone(), None),
        }
    } else {
        return Err(Error::Invalid(format!(
            "{name} is neither a SCSI disk nor a multipath map; remove-device only takes those"
        )));
    };
    let paths: Vec<String> = match &map {
        Some((dm, _)) => root
            .list(format!("/sys/block/{dm}/slaves"))
            .into_iter()
            .filter(|s| is_scsi(s))
            .collect(),
        None => vec![name.clone()],
    };
    // In use: the top device or its partitions mounted, or anything stacked
    // on them (LVM, md, a used kpartx partition) other than the map itself.
    // kpartx's own partition maps of the map are not a use: `multipath -f`
    // removes them with the map, unless they are mounted or held themselves.
    let mt = mounts::read(root);
    let mut in_use = Vec::new();
    let map_kname = map.as_ref().map(|(dm, _)| dm.clone());
    let mut check = |dev_name: &str, sys: &str| {
        usage(root, &mt, dev_name, sys, map_kname.as_deref(), &mut in_use);
    };
    let mut devs = vec![top.clone()];
    devs.extend(paths.iter().filter(|p| **p != top).cloned());
    for d in &devs {
        let sys = format!("/sys/block/{d}");
        check(d, &sys);
        for p in root.list(&sys) {
            if root.exists(format!("{sys}/{p}/partition")) {
                check(&p, &format!("{sys}/{p}"));
            }
        }
    }
    Ok(Stack {
        device: name,
        map,
        paths,
        in_use,
    })
}

/// Removes the device stack of `arg` (see the module doc).
pub fn remove(root: &Root, arg: &str, opts: &RemoveOptions) -> Result<Removal> {
    let stack = plan(root, arg)?;
    if !stack.in_use.is_empty() && !opts.force {
        return Err(Error::InUse {
            device: arg.to_string(),
            holders: stack.in_use.join(", "),
        });
    }
    let mut r = Removal {
        stack: stack.clone(),
        flushed: Vec::new(),
        map_removed: None,
        deleted: Vec::new(),
        wwid_forgotten: None,
        warnings: Vec::new(),
    };
    let mut to_flush: Vec<String> = stack.map.iter().map(|(dm, _)| dm.clone()).collect();
    to_flush.extend(stack.paths.iter().cloned());
    for d in to_flush {
        let node = root.path(format!("/dev/{d}"));
        let node = node.to_string_lossy();
        match cmd::run("blockdev", &["--flushbufs", &node], opts.cmd_timeout) {
            Ok(_) => r.flushed.push(d),
            Err(e) if opts.force => r.warnings.push(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    if let Some((dm, dm_name)) = &stack.map {
        let wwid = root
            .attr(format!("/sys/block/{dm}/dm/uuid"))
            .and_then(|u| u.strip_prefix("mpath-").map(str::to_string));
        flush_map(dm_name, opts)?;
        r.map_removed = Some(dm_name.clone());
        if let Some(w) = wwid.filter(|w| crate::wait::listed_wwids(root).contains(w)) {
            // Before the paths go: multipath resolves the WWID itself.
            match cmd::run("multipath", &["-w", &w], opts.cmd_timeout) {
                Ok(_) => r.wwid_forgotten = Some(w),
                Err(e) => r
                    .warnings
                    .push(format!("WWID {w} left in /etc/multipath/wwids: {e}")),
            }
        }
    }
    for p in &stack.paths {
        tracing::info!(device = %p, "deleting SCSI device");
        root.write(format!("/sys/block/{p}/device/delete"), "1")?;
        r.deleted.push(p.clone());
    }
    // Deletion is synchronous in the kernel, the /dev node follows through
    // devtmpfs: check both are gone.
    let t0 = Instant::now();
    for p in &stack.paths {
        while (root.exists(format!("/sys/block/{p}")) || root.exists(format!("/dev/{p}")))
            && t0.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if root.exists(format!("/sys/block/{p}")) {
            return Err(Error::Invalid(format!(
                "{p} still present 10 s after deleting it"
            )));
        }
    }
    Ok(r)
}

/// `multipath -f MAP` with bounded retries (dmsetup remove when the
/// multipath tool is missing); a map still open is reported, never forced.
fn flush_map(dm_name: &str, opts: &RemoveOptions) -> Result<()> {
    let mut last = String::new();
    for attempt in 1..=opts.map_tries.max(1) {
        let res = match cmd::run("multipath", &["-f", dm_name], opts.cmd_timeout) {
            Err(Error::Command { status, .. }) if status == "not started" => {
                cmd::run("dmsetup", &["remove", dm_name], opts.cmd_timeout)
            }
            other => other,
        };
        match res {
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::warn!(map = dm_name, attempt, error = %e, "multipath flush failed");
                last = e.to_string();
            }
        }
        if attempt < opts.map_tries {
            std::thread::sleep(opts.retry_delay);
        }
    }
    Err(Error::MapBusy {
        map: dm_name.to_string(),
        tries: opts.map_tries.max(1),
        detail: last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kpartx_partition_uuids() {
        assert!(is_kpartx_partition("part1-mpath-36001405abc"));
        assert!(is_kpartx_partition("part12-mpath-36001405abc"));
        assert!(!is_kpartx_partition("mpath-36001405abc"));
        assert!(!is_kpartx_partition("LVM-abcdef"));
        assert!(!is_kpartx_partition("part1-LVM-abc"));
    }
}
