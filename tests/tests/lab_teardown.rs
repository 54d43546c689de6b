//! Lab scenarios for issue 9 ("Teardown when the storage is gone"):
//! `remove-device` (the executor library the CLI calls) on a LUN whose paths
//! died — one of two paths, every path with `no_path_retry queue`, the only
//! path of a single-path LUN. Each scenario has its own LIO target; a path
//! is killed by dropping its portal's TCP traffic on `lo` (tc flower), the
//! initiator's short NOP-out and replacement timeouts turn the SCSI device
//! transport-offline, and the removal must leave the host clean: no map, no
//! kpartx maps, no SCSI paths, no /etc/multipath/wwids entry — within a
//! bound, so a hang fails the scenario instead of CI.
//! Run with `cargo xtask lab lab_teardown`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use appliance::lio::{Backstore, Lio, LioConfig};
use executor::remove::{Removal, RemoveOptions};
use executor::rescan::ScanTarget;
use executor::wait::{MultipathPolicy, WaitSpec};
use executor::Root;
use goldmount_tests::lab::*;

const P1: &str = "127.0.0.1:3260";
const P2: &str = "127.0.0.2:3260";
const IMG: u64 = 16 << 20;
/// The whole removal must be done by then (the scenario fails otherwise).
const REMOVE_BOUND: Duration = Duration::from_secs(120);
/// iSCSI replacement timeout of the "blocked" scenario: long, so the
/// removal happens while the paths are still blocked.
const LONG_REPLACEMENT: u32 = 600;
/// Time for a killed path to become transport-offline (NOP-out 2+2 s,
/// replacement 5 s, TCG slowness).
const OFFLINE_WAIT: Duration = Duration::from_secs(90);

/// Runs `f` on a thread of its own and panics when it has not returned
/// within `limit`: a hang fails the scenario with a message.
fn bounded<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("{what} did not finish within {limit:?} (hung)"),
    }
}

/// An MBR with one Linux partition from sector 2048 to the end: udev's
/// kpartx rule makes a partition map over the multipath map.
fn write_mbr(file: &Path, size: u64) {
    let mut mbr = [0u8; 512];
    let e = &mut mbr[446..462];
    e[4] = 0x83;
    e[8..12].copy_from_slice(&2048u32.to_le_bytes());
    e[12..16].copy_from_slice(&((size / 512 - 2048) as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(file).unwrap();
    f.write_all_at(&mbr, 0).unwrap();
    f.sync_all().unwrap();
}

/// Drops TCP traffic to and from `addr` port 3260 (`None`: every address)
/// on `lo`, both directions; removed by [`PathFault::drop`].
struct PathFault;

impl PathFault {
    fn kill(addrs: &[Option<&str>]) -> Self {
        for m in ["sch_ingress", "cls_flower", "act_gact"] {
            let _ = try_run("modprobe", &[m], CMD_TIMEOUT);
        }
        let _ = try_run("tc", &["qdisc", "del", "dev", "lo", "clsact"], CMD_TIMEOUT);
        run("tc", &["qdisc", "add", "dev", "lo", "clsact"]);
        for a in addrs {
            for (ip_key, port_key) in [("dst_ip", "dst_port"), ("src_ip", "src_port")] {
                let mut args = vec![
                    "filter", "add", "dev", "lo", "egress", "protocol", "ip", "flower", "ip_proto",
                    "tcp",
                ];
                if let Some(a) = a {
                    args.extend([ip_key, a]);
                }
                args.extend([port_key, "3260", "action", "drop"]);
                run("tc", &args);
            }
        }
        eprintln!("{}", run("tc", &["filter", "show", "dev", "lo", "egress"]));
        PathFault
    }
}

impl Drop for PathFault {
    fn drop(&mut self) {
        let _ = try_run("tc", &["qdisc", "del", "dev", "lo", "clsact"], CMD_TIMEOUT);
    }
}

/// A LUN of its own LIO target, logged in over `portals` with short
/// failure-detection timeouts, waited for (as a map when several portals).
struct Fixture {
    lio: Lio,
    iqn: String,
    portals: Vec<&'static str>,
    initiator: String,
    backstore: String,
    wwn: String,
    node: String,
    paths: Vec<String>,
}

impl Fixture {
    fn new(
        scratch: &Path,
        tag: &str,
        n: u8,
        portals: &[&'static str],
        replacement_secs: u32,
    ) -> Self {
        let iqn = format!("iqn.2026-12.io.goldmount.lab:teardown-{tag}");
        let lio = Lio::new(LioConfig::new(
            &iqn,
            portals.iter().map(|p| p.parse().unwrap()).collect(),
        ));
        let initiator = initiator_iqn();
        let file: PathBuf = scratch.join(format!("{tag}.img"));
        write_pattern(&file, IMG, tag);
        write_mbr(&file, IMG);
        let serial = format!("{n:02x}0e5a1c-0000-4000-8000-00000000d{n:03x}");
        let b = Backstore {
            name: format!("gm_td_{tag}"),
            file,
            size: IMG,
            unit_serial: serial.clone(),
        };
        lio.ensure_target().unwrap();
        lio.ensure_acl(&initiator).unwrap();
        let wwn = lio.ensure_backstore(&b).unwrap();
        lio.map_lun(0, &b.name, std::slice::from_ref(&initiator))
            .unwrap();
        let mut fx = Fixture {
            lio,
            iqn: iqn.clone(),
            portals: portals.to_vec(),
            initiator,
            backstore: b.name.clone(),
            wwn: wwn.clone(),
            node: String::new(),
            paths: Vec::new(),
        };
        discover(portals[0]);
        let replacement = replacement_secs.to_string();
        for p in portals {
            for (k, v) in [
                ("node.session.scan", "manual"),
                ("node.session.timeo.replacement_timeout", &replacement),
                ("node.conn[0].timeo.noop_out_interval", "2"),
                ("node.conn[0].timeo.noop_out_timeout", "2"),
            ] {
                run(
                    "iscsiadm",
                    &[
                        "-m", "node", "-T", &iqn, "-p", p, "-o", "update", "-n", k, "-v", v,
                    ],
                );
            }
            login(&iqn, p);
        }
        let root = Root::host();
        for s in executor::iscsi_sysfs::sessions(&root)
            .into_iter()
            .filter(|s| s.target_name == iqn)
        {
            executor::rescan::scan(
                &root,
                &ScanTarget::IscsiSession {
                    session: s.id,
                    lun: 0,
                },
            )
            .unwrap();
        }
        let spec = WaitSpec {
            wwid: wwn.clone(),
            serial: Some(serial),
            location: None,
            timeout: Duration::from_secs(90),
            multipath: if portals.len() > 1 {
                MultipathPolicy::Require
            } else {
                MultipathPolicy::Never
            },
        };
        let f = executor::wait::wait(&root, &spec).unwrap();
        eprintln!("attached: {f:?}");
        fx.node = f.node.clone();
        fx.paths = f.paths.iter().map(|p| p.name.clone()).collect();
        assert_eq!(fx.paths.len(), portals.len(), "{f:?}");
        let _ = try_run("udevadm", &["settle", "-t", "60"], CMD_TIMEOUT);
        fx
    }

    fn hex(&self) -> String {
        self.wwn.trim_start_matches("naa.").to_string()
    }

    /// The sdX behind `portal`.
    fn path_via(&self, portal: &str) -> String {
        let root = Root::host();
        let s = executor::iscsi_sysfs::sessions(&root)
            .into_iter()
            .find(|s| s.target_name == self.iqn && s.portal == portal)
            .unwrap_or_else(|| panic!("no session to {portal}"));
        self.paths
            .iter()
            .find(|p| {
                root.real(format!("/sys/block/{p}"))
                    .and_then(|r| executor::iscsi_sysfs::session_in_path(&r))
                    == Some(s.id)
            })
            .unwrap_or_else(|| panic!("no path over session {}", s.id))
            .clone()
    }

    /// dm devices of this LUN: the map and kpartx's partition maps.
    fn dm_devices(&self) -> Vec<(String, String)> {
        let hex = self.hex();
        let mut v: Vec<(String, String)> = fs::read_dir("/sys/block")
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let u = fs::read_to_string(e.path().join("dm/uuid")).ok()?;
                let u = u.trim().to_string();
                u.contains(&hex)
                    .then(|| (e.file_name().to_string_lossy().into_owned(), u))
            })
            .collect();
        v.sort();
        v
    }

    /// What is left of the LUN on the host (empty = clean).
    fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = self
            .dm_devices()
            .into_iter()
            .map(|(d, u)| format!("dm {d} ({u})"))
            .collect();
        left.extend(
            lio_disks()
                .into_iter()
                .filter(|(_, w)| *w == self.wwn)
                .map(|(d, _)| format!("SCSI disk {d}")),
        );
        let listed = format!("/3{}/", self.hex());
        let wwids = fs::read_to_string("/etc/multipath/wwids").unwrap_or_default();
        if wwids.lines().any(|l| l.trim() == listed) {
            left.push(format!("{listed} in /etc/multipath/wwids"));
        }
        left
    }

    /// Removes the device with the library `goldmount-executor
    /// remove-device` runs, bounded; returns the report and its duration.
    fn remove(&self) -> (Removal, Duration) {
        let node = self.node.clone();
        let t0 = Instant::now();
        let r = bounded("remove-device", REMOVE_BOUND, move || {
            executor::remove::remove(&Root::host(), &node, &RemoveOptions::default())
        });
        let took = t0.elapsed();
        let r = r.unwrap_or_else(|e| panic!("remove-device {}: {e}", self.node));
        eprintln!(
            "removal after {:.2}s: {}",
            took.as_secs_f64(),
            serde_json::to_string_pretty(&r).unwrap()
        );
        (r, took)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for p in &self.portals {
            logout(&self.iqn, p);
            let _ = try_run(
                "iscsiadm",
                &["-m", "node", "-T", &self.iqn, "-p", p, "-o", "delete"],
                CMD_TIMEOUT,
            );
        }
        let _ = self.lio.unmap_lun(0);
        let _ = self.lio.remove_acl(&self.initiator);
        let _ = self.lio.remove_backstore(&self.backstore);
        remove_lio_target(&self.lio);
    }
}

/// Waits until `dev`'s SCSI state is offline or transport-offline.
fn wait_offline(dev: &str) -> String {
    wait_until(&format!("{dev} to go offline"), OFFLINE_WAIT, || {
        let s = fs::read_to_string(format!("/sys/block/{dev}/device/state")).ok()?;
        let s = s.trim().to_string();
        (s == "offline" || s == "transport-offline").then_some(s)
    })
}

fn multipath_table(dm: &str) -> String {
    let name = fs::read_to_string(format!("/sys/block/{dm}/dm/name")).unwrap();
    run("dmsetup", &["table", name.trim()])
}

/// (a) One of two paths dies: remove-device flushes through the map,
/// skips the dead path, and leaves nothing.
#[test]
#[ignore = "needs the lab kernel"]
fn teardown_one_path_down() {
    let scratch = require_lab();
    let t_start = Instant::now();
    let _mpd = Multipathd::start();
    let fx = Fixture::new(&scratch, "one", 1, &[P1, P2], 5);
    let before = fx.dm_devices();
    eprintln!("dm devices before: {before:?}");
    assert!(!before.is_empty());
    let dead = fx.path_via(P2);
    let live = fx.path_via(P1);
    let t_fault = Instant::now();
    let _fault = PathFault::kill(&[Some("127.0.0.2")]);
    let st = wait_offline(&dead);
    let to_offline = t_fault.elapsed();
    eprintln!(
        "{dead} {st} after {:.1}s; {live} {}",
        to_offline.as_secs_f64(),
        fs::read_to_string(format!("/sys/block/{live}/device/state")).unwrap()
    );
    let (r, took) = fx.remove();
    let left = fx.leftovers();
    eprintln!(
        "FIGURE one-path-down: offline after {:.1}s, remove-device {:.2}s, clean host {:.1}s after the fault (scenario {:.0}s)",
        to_offline.as_secs_f64(),
        took.as_secs_f64(),
        t_fault.elapsed().as_secs_f64(),
        t_start.elapsed().as_secs_f64()
    );
    assert!(left.is_empty(), "left behind: {left:?}");
    let dm = before[0].0.clone();
    assert!(r.map_removed.is_some(), "{r:?}");
    assert_eq!(r.flushed, [dm], "{r:?}");
    assert!(r.skipped.iter().any(|s| s.device == dead), "{r:?}");
    assert!(!r.skipped.iter().any(|s| s.device == live), "{r:?}");
    assert_eq!(r.unsynced, None);
    let mut deleted = r.deleted.clone();
    deleted.sort();
    let mut paths = fx.paths.clone();
    paths.sort();
    assert_eq!(deleted, paths);
    assert!(r.delete_unfinished.is_empty(), "{r:?}");
    assert!(r.wwid_forgotten.is_some(), "{r:?}");
}

/// (b) Every path dies under `no_path_retry queue`: remove-device still
/// finishes within the bound, with the unsynced-data warning.
#[test]
#[ignore = "needs the lab kernel"]
fn teardown_all_paths_down_queueing() {
    let scratch = require_lab();
    let t_start = Instant::now();
    let _mpd = Multipathd::start_with_conf("overrides {\n    no_path_retry queue\n}\n");
    let fx = Fixture::new(&scratch, "all", 2, &[P1, P2], 5);
    let before = fx.dm_devices();
    eprintln!("dm devices before: {before:?}");
    let dm = before[0].0.clone();
    let table = multipath_table(&dm);
    eprintln!("table: {table}");
    assert!(table.contains("queue_if_no_path"), "{table}");
    let t_fault = Instant::now();
    let _fault = PathFault::kill(&[None]);
    for p in &fx.paths {
        wait_offline(p);
    }
    let to_offline = t_fault.elapsed();
    let (r, took) = fx.remove();
    let left = fx.leftovers();
    eprintln!(
        "FIGURE all-paths-down: offline after {:.1}s, remove-device {:.2}s, clean host {:.1}s after the fault (scenario {:.0}s)",
        to_offline.as_secs_f64(),
        took.as_secs_f64(),
        t_fault.elapsed().as_secs_f64(),
        t_start.elapsed().as_secs_f64()
    );
    assert!(left.is_empty(), "left behind: {left:?}");
    let w = r.unsynced.clone().unwrap_or_default();
    assert!(
        w.contains("could not be written: no path is up"),
        "no unsynced warning: {r:?}"
    );
    assert!(r.flushed.is_empty(), "{r:?}");
    assert!(r.map_removed.is_some(), "{r:?}");
    assert_eq!(r.deleted.len(), 2, "{r:?}");
}

/// (c) A single-path LUN (no map) whose only path dies.
#[test]
#[ignore = "needs the lab kernel"]
fn teardown_single_path_down() {
    let scratch = require_lab();
    let t_start = Instant::now();
    let _mpd = Multipathd::start();
    let fx = Fixture::new(&scratch, "single", 3, &[P1], 5);
    assert!(fx.node.starts_with("/dev/sd"), "{}", fx.node);
    let sd = fx.paths[0].clone();
    let t_fault = Instant::now();
    let _fault = PathFault::kill(&[None]);
    let st = wait_offline(&sd);
    let to_offline = t_fault.elapsed();
    eprintln!("{sd} {st} after {:.1}s", to_offline.as_secs_f64());
    let (r, took) = fx.remove();
    let left = fx.leftovers();
    eprintln!(
        "FIGURE single-path-down: offline after {:.1}s, remove-device {:.2}s, clean host {:.1}s after the fault (scenario {:.0}s)",
        to_offline.as_secs_f64(),
        took.as_secs_f64(),
        t_fault.elapsed().as_secs_f64(),
        t_start.elapsed().as_secs_f64()
    );
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(r.deleted, std::slice::from_ref(&sd));
    assert!(r.flushed.is_empty(), "{r:?}");
    assert_eq!(
        r.skipped.first().map(|s| s.device.as_str()),
        Some(sd.as_str())
    );
    assert!(r.unsynced.is_some(), "{r:?}");
    assert!(!Path::new("/dev").join(&sd).exists());
}

/// (d) Every path of a queueing map has just died and is still *blocked*
/// (the transport is recovering; the replacement timeout is 10 minutes
/// away): remove-device does not wait for it to give up — nothing is
/// flushed, queueing is turned off, the map and both paths go.
#[test]
#[ignore = "needs the lab kernel"]
fn teardown_all_paths_blocked_queueing() {
    let scratch = require_lab();
    let t_start = Instant::now();
    let _mpd = Multipathd::start_with_conf("overrides {\n    no_path_retry queue\n}\n");
    let fx = Fixture::new(&scratch, "blocked", 4, &[P1, P2], LONG_REPLACEMENT);
    let t_fault = Instant::now();
    let _fault = PathFault::kill(&[None]);
    for p in &fx.paths {
        wait_until(&format!("{p} to be blocked"), OFFLINE_WAIT, || {
            let s = fs::read_to_string(format!("/sys/block/{p}/device/state")).ok()?;
            (s.trim() == "blocked").then_some(())
        });
    }
    let to_blocked = t_fault.elapsed();
    let (r, took) = fx.remove();
    let left = fx.leftovers();
    eprintln!(
        "FIGURE all-paths-blocked: blocked after {:.1}s, remove-device {:.2}s, clean host {:.1}s after the fault (scenario {:.0}s)",
        to_blocked.as_secs_f64(),
        took.as_secs_f64(),
        t_fault.elapsed().as_secs_f64(),
        t_start.elapsed().as_secs_f64()
    );
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        r.path_states.iter().all(|p| p.scsi_state == "blocked"),
        "{r:?}"
    );
    assert!(r.flushed.is_empty(), "{r:?}");
    assert!(r.unsynced.is_some(), "{r:?}");
    assert_eq!(r.deleted.len(), 2, "{r:?}");
    assert!(r.delete_unfinished.is_empty(), "{r:?}");
}
