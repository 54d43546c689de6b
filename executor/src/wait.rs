//! `wait-for-device`: waits for the disk the appliance announced (by WWID,
//! optionally serial and place), verifies its identity as read from the
//! device, repairs a stale device left on a reused LUN number once, and
//! returns the node to use (the multipath map when multipathd owns it).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::hctl::Hctl;
use crate::inventory::{holders, DmInfo};
use crate::iscsi_sysfs;
use crate::rescan::{self, ScanTarget};
use crate::sysfs::Root;
use crate::uevent::Listener;
use crate::vpd;

/// Whether to return a multipath map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultipathPolicy {
    /// Wait for the map when multipathd runs and the LUN is multipathed:
    /// its WWID is in /etc/multipath/wwids, more than one path is up, or the
    /// path came through an iSCSI target this host has several sessions to,
    /// or an FC target with several online ports (the other paths are on
    /// their way). Else the path.
    #[default]
    Auto,
    /// The map must appear (fail on timeout otherwise).
    Require,
    /// Always return the SCSI path, even when a map holds it.
    Never,
}

/// What to wait for.
#[derive(Debug, Clone)]
pub struct WaitSpec {
    /// WWID in any common spelling (naa.…, 36…, 0x…, wwn-0x…, eui.…).
    pub wwid: String,
    /// VPD 0x80 unit serial to check as well.
    pub serial: Option<String>,
    /// Where the LUN is expected (H:C:T:L, iSCSI session + LUN, FC rport +
    /// LUN). With it, a device at that place with another identity is
    /// detected as stale and repaired.
    pub location: Option<ScanTarget>,
    /// Give up after this long.
    pub timeout: Duration,
    /// Map or path.
    pub multipath: MultipathPolicy,
}

/// A SCSI path of the found device.
#[derive(Debug, Clone, Serialize)]
pub struct PathInfo {
    /// Kernel name (sdc).
    pub name: String,
    /// SCSI address.
    pub hctl: Hctl,
}

/// The verified device.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// The node to use: /dev/mapper/<map> or /dev/sdX.
    pub node: String,
    /// Kernel name of that node (dm-3 or sdc).
    pub device: String,
    /// The SCSI paths carrying the LUN.
    pub paths: Vec<PathInfo>,
    /// The multipath map, when one holds the paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multipath: Option<DmInfo>,
    /// WWID read from the device (kernel spelling).
    pub wwid: String,
    /// Serial read from the device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// Stale devices deleted and rescanned on the way.
    pub repaired: Vec<String>,
    /// What was done to make multipathd take the LUN when it did not on its
    /// own (`multipath -a`, `multipathd add path`), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub claimed: Vec<String>,
    /// Whether kernel uevents woke us (false: sysfs polling).
    pub event_driven: bool,
    /// Time taken.
    pub elapsed_ms: u64,
}

/// An identity as read from a device's VPD pages.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// Page 0x83 designators.
    pub designators: Vec<vpd::Designator>,
    /// `device/wwid`.
    pub kernel_wwid: Option<String>,
    /// Page 0x80 serial.
    pub serial: Option<String>,
}

impl Identity {
    /// Reads the identity of SCSI disk `name` from sysfs (the VPD pages the
    /// kernel read from the device at scan or last rescan).
    pub fn read(root: &Root, name: &str) -> Self {
        let d = format!("/sys/block/{name}/device");
        Identity {
            designators: root
                .bytes(format!("{d}/vpd_pg83"))
                .and_then(|p| vpd::parse_pg83(&p).ok())
                .unwrap_or_default(),
            kernel_wwid: root.attr_nonempty(format!("{d}/wwid")),
            serial: root
                .bytes(format!("{d}/vpd_pg80"))
                .and_then(|p| vpd::parse_pg80(&p).ok())
                .filter(|s| !s.is_empty()),
        }
    }

    /// The primary WWID (kernel spelling), falling back to `device/wwid`.
    pub fn wwid(&self) -> String {
        vpd::primary(&self.designators)
            .and_then(|d| d.wwid())
            .or_else(|| self.kernel_wwid.clone())
            .unwrap_or_else(|| "(none)".into())
    }

    /// "wwid X serial Y" for messages.
    pub fn describe(&self) -> String {
        match &self.serial {
            Some(s) => format!("wwid {} serial {s}", self.wwid()),
            None => format!("wwid {} (no serial)", self.wwid()),
        }
    }

    fn wwid_matches(&self, wanted: &str) -> bool {
        vpd::matches(wanted, &self.designators, self.kernel_wwid.as_deref())
    }

    fn matches(&self, spec: &WaitSpec) -> bool {
        self.wwid_matches(&spec.wwid)
            && spec
                .serial
                .as_ref()
                .is_none_or(|s| self.serial.as_deref() == Some(s.trim()))
    }
}

fn describe_spec(spec: &WaitSpec) -> String {
    match &spec.serial {
        Some(s) => format!("wwid {} serial {s}", spec.wwid),
        None => format!("wwid {}", spec.wwid),
    }
}

/// Asks the kernel to re-read the device's VPD pages (`device/rescan`): the
/// sysfs copies are from scan time, and a LUN number reused for another
/// clone keeps the old ones until then.
pub fn refresh(root: &Root, name: &str) {
    if let Err(e) = root.write(format!("/sys/block/{name}/device/rescan"), "1") {
        tracing::warn!(device = name, error = %e, "VPD refresh (device/rescan) failed");
    }
}

/// SCSI disks: (name, H:C:T:L), sorted by name.
pub fn scsi_disks(root: &Root) -> Vec<(String, Hctl)> {
    root.list("/sys/block")
        .into_iter()
        .filter_map(|n| {
            let h = root
                .link_name(format!("/sys/block/{n}/device"))?
                .parse()
                .ok()?;
            Some((n, h))
        })
        .collect()
}

/// One place a LUN may sit: host, (channel, target) when known, LUN.
type Slot = (u32, Option<(u32, u32)>, u64);

/// Where the LUN may sit, as a predicate on addresses.
struct Place {
    slots: Vec<Slot>,
}

impl Place {
    fn resolve(root: &Root, loc: &ScanTarget) -> Result<Self> {
        let plan = rescan::plan(root, loc)?;
        let lun =
            match loc {
                ScanTarget::Hctl(h) => h.lun,
                ScanTarget::IscsiSession { lun, .. } | ScanTarget::FcTarget { lun, .. } => *lun,
                ScanTarget::Wildcard { .. } => return Err(Error::Invalid(
                    "a wildcard is not a place to wait at; give H:C:T:L, a session or an FC target"
                        .into(),
                )),
            };
        let slots = plan
            .iter()
            .map(|w| {
                let f: Vec<&str> = w.line.split(' ').collect();
                let ct = match (
                    f.first().and_then(|c| c.parse().ok()),
                    f.get(1).and_then(|t| t.parse().ok()),
                ) {
                    (Some(c), Some(t)) => Some((c, t)),
                    _ => None,
                };
                (w.host, ct, lun)
            })
            .collect();
        Ok(Place { slots })
    }

    fn contains(&self, h: &Hctl) -> bool {
        self.slots.iter().any(|(host, ct, lun)| {
            *host == h.host
                && *lun == h.lun
                && ct.is_none_or(|(c, t)| c == h.channel && t == h.target)
        })
    }
}

/// The state kept across looks.
struct Waiter<'a> {
    root: &'a Root,
    spec: &'a WaitSpec,
    place: Option<Place>,
    verified: HashSet<String>,
    repaired_at: HashSet<Hctl>,
    repaired: Vec<String>,
    last: String,
    /// When the paths were first seen without the map we want.
    map_wanted_since: Option<Instant>,
    claimed: Vec<String>,
    /// multipathd refused the paths as blacklisted: `Auto` uses the path.
    blacklisted: bool,
}

/// How long multipathd gets to build a map on its own (find_multipaths
/// `no`, `greedy`, or `yes` with two paths up) before goldmount asks it.
const CLAIM_GRACE: Duration = Duration::from_secs(2);

enum Look {
    Found(Box<Found>),
    Pending(String),
}

impl Waiter<'_> {
    fn look(&mut self) -> Result<Look> {
        let root = self.root;
        let mut good: Vec<(String, Hctl, Identity)> = Vec::new();
        for (name, hctl) in scsi_disks(root) {
            let at_place = self.place.as_ref().is_some_and(|p| p.contains(&hctl));
            let cached = Identity::read(root, &name);
            if !at_place && !cached.wwid_matches(&self.spec.wwid) {
                continue; // not ours: never touch other LUNs
            }
            let key = format!("{name}@{hctl}");
            let (id, changed) = if self.verified.contains(&key) {
                (cached.clone(), false)
            } else {
                refresh(root, &name);
                self.verified.insert(key.clone());
                let fresh = Identity::read(root, &name);
                let changed = fresh.describe() != cached.describe();
                (fresh, changed)
            };
            let ok = id.matches(self.spec);
            if ok && (!changed || self.repaired_at.contains(&hctl)) {
                good.push((name, hctl, id));
                continue;
            }
            // Wrong identity where ours should be, the right WWID with a
            // wrong serial, or an identity that changed under an existing
            // device (LUN number reused: its page cache may still hold the
            // old clone's blocks): a stale device. Delete it and scan that
            // LUN again, once; after that a mismatch is real.
            if changed {
                tracing::warn!(device = %name, %hctl, was = %cached.describe(), now = %id.describe(), "identity changed under an existing device");
            }
            if self.repaired_at.contains(&hctl) {
                return Err(Error::Mismatch {
                    device: name,
                    hctl: hctl.to_string(),
                    expected: describe_spec(self.spec),
                    found: id.describe(),
                });
            }
            tracing::warn!(device = %name, %hctl, found = %id.describe(), "stale device: deleting and rescanning");
            root.write(format!("/sys/block/{name}/device/delete"), "1")?;
            self.verified.remove(&key);
            if root.is_host() {
                wait_gone(root, &name, Duration::from_secs(10));
            }
            rescan::scan(root, &ScanTarget::Hctl(hctl))?;
            self.repaired_at.insert(hctl);
            let note = if changed {
                format!(
                    "deleted stale {name} ({hctl}, identity changed from {} to {}) and rescanned it",
                    cached.describe(),
                    id.describe()
                )
            } else {
                format!(
                    "deleted stale {name} ({hctl}, {}) and rescanned it",
                    id.describe()
                )
            };
            self.repaired.push(note.clone());
            return Ok(Look::Pending(note));
        }
        if good.is_empty() {
            return Ok(Look::Pending(match self.repaired.last() {
                Some(r) => format!("{r}; nothing with the expected identity came back"),
                None => "no SCSI disk with that identity yet".into(),
            }));
        }
        let paths: Vec<PathInfo> = good
            .iter()
            .map(|(n, h, _)| PathInfo {
                name: n.clone(),
                hctl: *h,
            })
            .collect();
        let (first, _, id) = &good[0];
        let map = if self.spec.multipath == MultipathPolicy::Never {
            None
        } else {
            good.iter().find_map(|(n, _, _)| {
                holders(root, &format!("/sys/block/{n}/holders"))
                    .into_iter()
                    .find(|h| h.is_multipath())
            })
        };
        let names = paths
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let (device, node, dm) = match map {
            Some(h) => {
                let name = h.dm_name.clone().unwrap_or_default();
                let node = if name.is_empty() {
                    format!("/dev/{}", h.name)
                } else {
                    format!("/dev/mapper/{name}")
                };
                (
                    h.name.clone(),
                    node,
                    Some(DmInfo {
                        name,
                        uuid: h.dm_uuid.clone().unwrap_or_default(),
                    }),
                )
            }
            None => {
                let expected = match self.spec.multipath {
                    MultipathPolicy::Never => None,
                    _ => more_paths_expected(root, first),
                };
                let want_map = match self.spec.multipath {
                    MultipathPolicy::Require => true,
                    MultipathPolicy::Never => false,
                    MultipathPolicy::Auto => {
                        !self.blacklisted
                            && multipathd_running(root)
                            && (paths.len() > 1 || in_wwids_file(root, id) || expected.is_some())
                    }
                };
                if want_map {
                    let since = *self.map_wanted_since.get_or_insert_with(Instant::now);
                    if root.is_host()
                        && self.claimed.is_empty()
                        && since.elapsed() >= CLAIM_GRACE
                        && multipathd_running(root)
                    {
                        let path_names: Vec<&str> = paths.iter().map(|p| p.name.as_str()).collect();
                        let claim = claim_for_multipath(&path_names, in_wwids_file(root, id));
                        self.claimed = claim.steps;
                        self.blacklisted = claim.blacklisted;
                    }
                    return Ok(Look::Pending(format!(
                        "path(s) {names} up, waiting for the multipath map{}{}",
                        match expected {
                            Some(why) => format!(" ({why}: more paths are coming)"),
                            None => String::new(),
                        },
                        if self.claimed.is_empty() {
                            String::new()
                        } else {
                            format!("; asked multipathd: {}", self.claimed.join("; "))
                        }
                    )));
                }
                (first.clone(), format!("/dev/{first}"), None)
            }
        };
        if root.is_host() {
            if !root.exists(&node) {
                return Ok(Look::Pending(format!("{device} up, {node} not there yet")));
            }
            if root.exists("/run/udev/control") {
                let dev = root
                    .attr(format!("/sys/block/{device}/dev"))
                    .unwrap_or_default();
                if !root.exists(format!("/run/udev/data/b{dev}")) {
                    return Ok(Look::Pending(format!(
                        "{node} up, udev not done with it yet"
                    )));
                }
            }
        }
        Ok(Look::Found(Box::new(Found {
            node,
            device,
            paths,
            multipath: dm,
            wwid: id.wwid(),
            serial: id.serial.clone(),
            repaired: self.repaired.clone(),
            claimed: self.claimed.clone(),
            event_driven: false,
            elapsed_ms: 0,
        })))
    }
}

fn wait_gone(root: &Root, name: &str, max: Duration) {
    let t0 = Instant::now();
    while root.exists(format!("/sys/block/{name}")) && t0.elapsed() < max {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True when multipathd runs (pid file, else a process named multipathd).
pub fn multipathd_running(root: &Root) -> bool {
    if let Some(pid) = root.attr_nonempty("/run/multipathd.pid") {
        if root.exists(format!("/proc/{pid}")) {
            return true;
        }
    }
    root.list("/proc")
        .iter()
        .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        .any(|p| root.attr(format!("/proc/{p}/comm")).as_deref() == Some("multipathd"))
}

/// Why SCSI disk `name` is one of several paths to its LUN even while it is
/// the only one up: several logged-in iSCSI sessions to its target, or
/// several online FCP ports of its FC target (same WWNN). None otherwise.
/// With multipathd running, the device to hand out is then the map: handing
/// out the first path would let a mount win the race against multipathd and
/// leave the LUN on a single path, its partitions visible twice to LVM.
fn more_paths_expected(root: &Root, name: &str) -> Option<String> {
    match iscsi_sessions_to_target(root, name) {
        n if n > 1 => return Some(format!("{n} iSCSI sessions to this target")),
        _ => {}
    }
    match fc_ports_of_target(root, name) {
        n if n > 1 => Some(format!("{n} online FC ports of this target")),
        _ => None,
    }
}

/// Online remote ports with the FCP target role that share the WWNN of the
/// remote port FC disk `name` came through (0 when it is not an FC disk):
/// the ports of one array a host is zoned to, each a path to its LUNs.
fn fc_ports_of_target(root: &Root, name: &str) -> usize {
    let Some(real) = root.real(format!("/sys/block/{name}")) else {
        return 0;
    };
    let Some(rport) = real.split('/').find(|c| c.starts_with("rport-")) else {
        return 0;
    };
    let node = |r: &str| {
        root.attr(format!("/sys/class/fc_remote_ports/{r}/node_name"))
            .and_then(|n| fc::normalize_wwn(&n))
    };
    let Some(own) = node(rport) else {
        return 0;
    };
    root.list("/sys/class/fc_remote_ports")
        .iter()
        .filter(|r| node(r).as_deref() == Some(own.as_str()))
        .filter(|r| {
            let d = format!("/sys/class/fc_remote_ports/{r}");
            root.attr(format!("{d}/port_state"))
                .is_some_and(|s| s.eq_ignore_ascii_case("online"))
                && root
                    .attr(format!("{d}/roles"))
                    .is_some_and(|s| s.contains("FCP Target"))
        })
        .count()
}

/// Logged-in iSCSI sessions to the target that SCSI disk `name` came
/// through (0 when it is not an iSCSI disk).
fn iscsi_sessions_to_target(root: &Root, name: &str) -> usize {
    let Some(own) = root
        .real(format!("/sys/block/{name}"))
        .and_then(|real| iscsi_sysfs::session_in_path(&real))
        .and_then(|id| iscsi_sysfs::session(root, id))
    else {
        return 0;
    };
    iscsi_sysfs::sessions(root)
        .iter()
        .filter(|s| s.target_name == own.target_name && s.state == "LOGGED_IN")
        .count()
}

/// Asks multipathd to take the LUN whose verified paths are `paths` when it
/// has not built the map on its own: with Debian's default
/// `find_multipaths strict` (and RHEL's `yes` while one path is up)
/// multipathd only maps WWIDs listed in /etc/multipath/wwids. As os-brick
/// does: `multipath -a /dev/<path>` lists the WWID (skipped when listed),
/// then `multipathd add path <path>` for each path. Failures are logged and
/// reported, never fatal: the wait goes on and times out naming what it saw.
/// When multipathd answers "blacklisted" for every path, the host's
/// configuration excludes this LUN from multipath: the WWID listed here is
/// taken out again and the claim says so (the caller then uses the path).
fn claim_for_multipath(paths: &[&str], listed: bool) -> Claim {
    const T: Duration = Duration::from_secs(20);
    let mut claim = Claim::default();
    let Some(first) = paths.first() else {
        return claim;
    };
    let mut step = |prog: &str, args: &[&str]| -> Option<String> {
        let line = format!("{prog} {}", args.join(" "));
        match crate::cmd::run(prog, args, T) {
            Ok(o) => {
                let out = o.stdout.trim().to_string();
                tracing::info!(cmd = %line, %out, "asked multipathd to take the LUN");
                claim.steps.push(if out.is_empty() || out == "ok" {
                    line
                } else {
                    format!("{line} ({out})")
                });
                Some(out)
            }
            Err(e) => {
                tracing::warn!(cmd = %line, error = %e, "multipath claim step failed");
                claim.steps.push(format!("{line} (failed: {e})"));
                None
            }
        }
    };
    let dev = format!("/dev/{first}");
    let added = !listed && step("multipath", &["-a", &dev]).is_some();
    let mut blacklisted = true;
    let mut raced = Vec::new();
    for p in paths {
        let mut out = step("multipathd", &["add", "path", p]);
        if out.is_none() {
            // multipathd may be taking the path on its own right now (it
            // reacts to the wwids change and the path's uevent) and refuses
            // a second add meanwhile: look again after a moment, ask once more.
            std::thread::sleep(Duration::from_secs(1));
            if held_by_multipath(p) {
                raced.push(p.to_string());
            } else {
                out = step("multipathd", &["add", "path", p]);
                if out.is_some() {
                    raced.push(p.to_string());
                }
            }
        }
        blacklisted &= out.is_some_and(|out| out.contains("blacklisted"));
    }
    if blacklisted && added {
        step("multipath", &["-w", &dev]);
    }
    claim.blacklisted = blacklisted;
    for p in raced {
        // The first, refused attempt is not the outcome: say what happened.
        let line = format!("multipathd add path {p}");
        if let Some(i) = claim.steps.iter().position(|s| s.starts_with(&line)) {
            claim.steps[i] = format!("{line} (refused while multipathd was taking it; taken)");
            if claim.steps.get(i + 1).is_some_and(|s| s.starts_with(&line)) {
                claim.steps.remove(i + 1);
            }
        }
    }
    claim
}

/// True when a multipath map holds SCSI disk `sd` (on the live host).
fn held_by_multipath(sd: &str) -> bool {
    crate::inventory::holders(&Root::host(), &format!("/sys/block/{sd}/holders"))
        .iter()
        .any(crate::inventory::Holder::is_multipath)
}

/// What [`claim_for_multipath`] did.
#[derive(Default)]
struct Claim {
    /// Each command with its outcome.
    steps: Vec<String>,
    /// multipathd refused every path as blacklisted.
    blacklisted: bool,
}

fn in_wwids_file(root: &Root, id: &Identity) -> bool {
    listed_wwids(root).iter().any(|w| id.wwid_matches(w))
}

/// The WWIDs /etc/multipath/wwids lists (`/<wwid>/` lines; `multipath -w`
/// comments a line out, and a commented line lists nothing).
pub(crate) fn listed_wwids(root: &Root) -> Vec<String> {
    root.attr("/etc/multipath/wwids")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix('/')?.strip_suffix('/'))
        .map(str::to_string)
        .collect()
}

/// Waits for the device described by `spec`.
pub fn wait(root: &Root, spec: &WaitSpec) -> Result<Found> {
    let t0 = Instant::now();
    let deadline = t0 + spec.timeout;
    let place = spec
        .location
        .as_ref()
        .map(|l| Place::resolve(root, l))
        .transpose()?;
    let listener = if root.is_host() {
        Listener::open()
            .map_err(|e| tracing::info!(error = %e, "no uevent socket, polling sysfs"))
            .ok()
    } else {
        None
    };
    let mut w = Waiter {
        root,
        spec,
        place,
        verified: HashSet::new(),
        repaired_at: HashSet::new(),
        repaired: Vec::new(),
        last: String::new(),
        map_wanted_since: None,
        claimed: Vec::new(),
        blacklisted: false,
    };
    loop {
        match w.look()? {
            Look::Found(mut f) => {
                f.event_driven = listener.is_some();
                f.elapsed_ms = t0.elapsed().as_millis() as u64;
                return Ok(*f);
            }
            Look::Pending(note) => {
                tracing::debug!(%note, "waiting");
                w.last = note;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::WaitTimeout {
                expected: describe_spec(spec),
                secs: spec.timeout.as_secs_f64(),
                last: w.last,
            });
        }
        let left = deadline - now;
        match &listener {
            // Events wake us at once; the periodic look is a safety net for
            // events lost to a full socket buffer.
            Some(l) => {
                l.wait(left.min(Duration::from_millis(500)));
            }
            None => std::thread::sleep(left.min(Duration::from_millis(100))),
        }
    }
}
