//! Issue 5 end to end in the lab guest: the `goldmount` CLI (binary from
//! `GOLDMOUNT_BIN`, built by xtask) mounts clones that the reference appliance
//! presents over iSCSI (LIO on 127.0.0.1, targeted scans), next to a live copy
//! of their gold disk that is itself mounted with goldmount — so the gold's VG
//! name, PV/VG UUIDs and XFS UUID are all in use on the host. Run with
//! `cargo xtask lab lab_mount` (add `--scenario-timeout 900` for the bench).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use appliance::lio::{Lio, LioConfig};
use goldmount_tests::gmcli::*;
use goldmount_tests::lab::*;

const PORTAL: &str = "127.0.0.1:3260";
/// The appliance's second portal (a second path for multipath).
const PORTAL2: &str = "127.0.0.2:3260";
const DISK_WAIT: Duration = Duration::from_secs(90);
const MIB: u64 = 1 << 20;

/// The gold disk's partition 2 (the LVM PV) starts here (sgdisk layout below).
const P2_OFFSET: u64 = 33 * MIB;
const BOOT_UUID: &str = "3f0e6a56-2a8d-4c55-9a0b-5d3c1e2f4a10";

// ---------------------------------------------------------------- goldmount

/// `goldmount mount --wwid W… --volume V --json` → the manifest.
fn gm_mount(volume: &str, wwids: &[&str]) -> serde_json::Value {
    let mut extra = Vec::new();
    for w in wwids {
        extra.extend(["--wwid", w]);
    }
    gm_mount_with(volume, &extra)
}

/// `vgs` rows (name uuid seqno attr lv_count); `all` ignores the devices file.
fn host_vgs(all: bool) -> BTreeSet<String> {
    let mut a = vec![
        "vgs",
        "--noheadings",
        "-o",
        "vg_name,vg_uuid,vg_seqno,vg_attr,lv_count",
    ];
    if all {
        a.extend(["--devicesfile", ""]);
    }
    lvm(&a)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect()
}

// ---------------------------------------------------------------- files

/// Deterministic pseudo-random bytes (xorshift), so checksums mean something.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            if e.file_name() != "lost+found" {
                files_under(&p, out);
            }
        } else if ft.is_file() {
            out.push(p);
        }
    }
}

/// relative path → sha256 of every regular file under `root` (sha256sum).
fn tree_sums(root: &Path) -> BTreeMap<String, String> {
    let mut files = Vec::new();
    files_under(root, &mut files);
    let mut sums = BTreeMap::new();
    for chunk in files.chunks(64) {
        let args: Vec<&str> = chunk.iter().map(|p| p.to_str().unwrap()).collect();
        for line in run("sha256sum", &args).lines() {
            let (sum, path) = line.split_once("  ").unwrap();
            let rel = Path::new(path).strip_prefix(root).unwrap();
            sums.insert(rel.to_string_lossy().into_owned(), sum.to_string());
        }
    }
    sums
}

/// Files of the gold host's tree, relative to `/`.
fn gold_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("etc/hostname", b"gold-host\n".to_vec()),
        ("boot/vmlinuz", noise(96 << 10, 1)),
        ("home/alice/notes.txt", b"alice's notes\n".to_vec()),
        ("home/alice/blob.bin", noise(1 << 20, 2)),
        ("srv/data/records.csv", b"id,name\n1,gold\n".to_vec()),
        ("srv/data/big.bin", noise(2 << 20, 3)),
    ]
}

fn gold_fstab() -> String {
    format!(
        "# gold host\n/dev/mapper/vg_gold-root / xfs defaults 0 0\n\
         UUID={BOOT_UUID} /boot ext4 defaults 0 2\n\
         /dev/vg_gold/home /home ext4 defaults 0 2\n\
         LABEL=data /srv/data ext4 defaults 0 2\n"
    )
}

fn wait_path(p: &Path) {
    wait_until(&p.display().to_string(), Duration::from_secs(30), || {
        p.exists().then_some(())
    });
}

fn losetup_p(img: &Path) -> String {
    let l = run("losetup", &["-f", "-P", "--show", img.to_str().unwrap()])
        .trim()
        .to_string();
    let _ = try_run("udevadm", &["settle", "-t", "10"], CMD_TIMEOUT);
    l
}

/// The gold host's disk, built with the real tools: GPT; p1 ext4 /boot
/// (fixed UUID), p2 LVM PV of `vg_gold` {root xfs with /etc/fstab, home
/// ext4}, p3 ext4 LABEL=data for /srv/data. Returns the image and the LVM
/// metadata-area position (offset, size) inside p2.
fn build_lvm_gold(dir: &Path) -> (PathBuf, u64, u64) {
    let img = dir.join("prod.img");
    fs::File::create(&img).unwrap().set_len(432 * MIB).unwrap();
    run(
        "sgdisk",
        &[
            "-n1:2048:+32M",
            "-t1:8300",
            "-n2:0:+360M",
            "-t2:8e00",
            "-n3:0:+32M",
            "-t3:8300",
            img.to_str().unwrap(),
        ],
    );
    let l = losetup_p(&img);
    let p = |n: u32| format!("{l}p{n}");
    for n in 1..=3 {
        wait_path(Path::new(&p(n)));
    }
    let p2 = p(2);
    run(
        "mkfs.ext4",
        &["-q", "-F", "-L", "boot", "-U", BOOT_UUID, &p(1)],
    );
    lvm(&["pvcreate", "-q", "--devices", &p2, &p2]);
    lvm(&["vgcreate", "-q", "--devices", &p2, "vg_gold", &p2]);
    for (lv, size) in [("root", "304M"), ("home", "32M")] {
        lvm(&[
            "lvcreate",
            "-q",
            "--devices",
            &p2,
            "-y",
            "-L",
            size,
            "-n",
            lv,
            "vg_gold",
        ]);
    }
    run(
        "mkfs.xfs",
        &["-q", "-f", "-L", "root", "/dev/mapper/vg_gold-root"],
    );
    run(
        "mkfs.ext4",
        &["-q", "-F", "-L", "home", "/dev/mapper/vg_gold-home"],
    );
    run("mkfs.ext4", &["-q", "-F", "-L", "data", &p(3)]);
    let mnt = dir.join("build-root");
    fs::create_dir_all(&mnt).unwrap();
    let m = mnt.to_str().unwrap();
    run("mount", &["/dev/mapper/vg_gold-root", m]);
    for d in ["etc", "boot", "home", "srv/data", "opt"] {
        fs::create_dir_all(mnt.join(d)).unwrap();
    }
    fs::write(mnt.join("etc/fstab"), gold_fstab()).unwrap();
    let sub = [
        (p(1), mnt.join("boot")),
        ("/dev/mapper/vg_gold-home".to_string(), mnt.join("home")),
        (p(3), mnt.join("srv/data")),
    ];
    for (dev, at) in &sub {
        run("mount", &[dev, at.to_str().unwrap()]);
    }
    for (rel, data) in gold_files() {
        let f = mnt.join(rel);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, data).unwrap();
    }
    for (_, at) in sub.iter().rev() {
        run("umount", &[at.to_str().unwrap()]);
    }
    run("umount", &[m]);
    lvm(&["vgchange", "-q", "--devices", &p2, "-an", "vg_gold"]);
    let pv = lvm::read_pv(&fsdetect::FileSource::open(Path::new(&p2)).unwrap()).unwrap();
    let mda = pv.label.metadata_areas[0];
    run("losetup", &["-d", &l]);
    run("sync", &[]);
    (img, mda.offset, mda.size)
}

// ---------------------------------------------------------------- appliance + iSCSI

/// The appliance (iSCSI backend, data on reflink XFS) and our session to
/// its target; logs out and wipes LIO on drop.
struct Rig {
    app: ApplianceProc,
    lio: Lio,
    iqn: String,
    initiator: String,
    portals: Vec<&'static str>,
    /// SCSI (host, channel, target) of each session, once logged in.
    addrs: Vec<(u32, u32, u32)>,
    disks: Vec<PathBuf>,
}

impl Rig {
    fn start(scratch: &Path, xfs: &ReflinkXfs, port: u16, tag: &str) -> Rig {
        Rig::start_on(scratch, xfs, port, tag, &[PORTAL])
    }

    /// The appliance listening on every portal of `portals` (one session,
    /// so one path, per portal).
    fn start_on(
        scratch: &Path,
        xfs: &ReflinkXfs,
        port: u16,
        tag: &str,
        portals: &[&'static str],
    ) -> Rig {
        let iqn = format!("iqn.2026-11.io.goldmount.lab:{tag}");
        let initiator = initiator_iqn();
        let data = xfs.mnt.join("data");
        let mut args = vec![
            "--backend",
            "iscsi",
            "--data-dir",
            data.to_str().unwrap(),
            "--import-from",
            xfs.mnt.to_str().unwrap(),
            "--target-iqn",
            &iqn,
        ];
        for p in portals {
            args.extend(["--portal", p]);
        }
        let app = ApplianceProc::start(
            &format!("127.0.0.1:{port}"),
            &args,
            &scratch.join("appliance.log"),
        );
        app.post(
            "/v1/hosts",
            serde_json::json!({"name": "labhost", "iqns": [initiator]}),
        );
        Rig {
            app,
            lio: Lio::new(LioConfig::new(
                &iqn,
                portals.iter().map(|p| p.parse().unwrap()).collect(),
            )),
            iqn,
            initiator,
            portals: portals.to_vec(),
            addrs: Vec::new(),
            disks: Vec::new(),
        }
    }

    fn import_gold(&self, name: &str, src: &Path) -> PathBuf {
        let g = self.app.post(
            "/v1/gold-copies",
            serde_json::json!({"name": name, "source": src}),
        );
        PathBuf::from(g["file"].as_str().unwrap())
    }

    /// Creates clone `name` of `gold` and presents it: (lun, wwn, clone file).
    fn clone_and_present(&self, name: &str, gold: &str) -> (u32, String, PathBuf) {
        let c = self.app.post(
            "/v1/clones",
            serde_json::json!({"name": name, "gold": gold}),
        );
        assert_eq!(c["copy_mode"], "reflink", "clone {name}: {c}");
        let p = self.app.post(
            "/v1/presentations",
            serde_json::json!({"clone": name, "host": "labhost"}),
        );
        let lun = u32::try_from(p["lun"].as_u64().unwrap()).unwrap();
        (
            lun,
            p["wwn"].as_str().unwrap().to_string(),
            PathBuf::from(c["file"].as_str().unwrap()),
        )
    }

    /// Logs in once per portal (manual scan), then a targeted scan of each
    /// LUN on every session; waits for a disk of each LUN and its udev link.
    fn attach(&mut self, luns: &[(u32, &str)]) -> Vec<PathBuf> {
        if self.addrs.is_empty() {
            for p in &self.portals {
                discover(p);
                set_manual_scan(&self.iqn, p);
                login(&self.iqn, p);
            }
            let n = self.portals.len();
            self.addrs = wait_until("the iSCSI sessions", DISK_WAIT, || {
                let a = session_scsi_addresses(&self.iqn);
                (a.len() == n).then_some(a)
            });
        }
        for (h, c, t) in self.addrs.clone() {
            for (lun, _) in luns {
                scan_lun(h, c, t, *lun);
            }
        }
        let devs: Vec<PathBuf> = luns
            .iter()
            .map(|(_, w)| {
                if self.portals.len() > 1 {
                    // Several paths: multipathd takes the by-id links over
                    // for its map, so only the SCSI disk itself is awaited.
                    let sd = wait_until(&format!("a disk with wwid {w}"), DISK_WAIT, || {
                        disk_with_wwid(w)
                    });
                    PathBuf::from("/dev").join(sd)
                } else {
                    wait_disk(w, DISK_WAIT)
                }
            })
            .collect();
        self.disks.extend(devs.iter().cloned());
        devs
    }

    /// The host deletes the disk, the appliance unpresents and deletes the clone.
    fn detach(&mut self, dev: &Path, clone: &str) {
        delete_disk(dev);
        self.disks.retain(|d| d != dev);
        self.retire(clone);
    }

    /// The appliance unpresents and deletes the clone (its disks already
    /// gone; the lab host has no connector daemon to confirm it: forced).
    fn retire(&self, clone: &str) {
        let st = self
            .app
            .delete(&format!("/v1/presentations/{clone}?force=true"));
        assert!(st == 200 || st == 204, "unpresent {clone} -> {st}");
        let st = self.app.delete(&format!("/v1/clones/{clone}"));
        assert!(st == 200 || st == 204, "delete clone {clone} -> {st}");
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for d in std::mem::take(&mut self.disks) {
            let name = d.file_name().unwrap().to_string_lossy().into_owned();
            let _ = fs::write(format!("/sys/block/{name}/device/delete"), "1");
        }
        for p in &self.portals {
            logout(&self.iqn, p);
        }
        self.app.kill();
        wipe_lio(&self.lio, std::slice::from_ref(&self.initiator));
    }
}

/// Partition `n` of a SCSI disk (`/dev/sdb` → `/dev/sdb2`).
fn part(disk: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}{n}", disk.display()))
}

/// Mount paths by original mountpoint from a manifest.
fn by_original(m: &serde_json::Value) -> BTreeMap<String, serde_json::Value> {
    m["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|mi| Some((mi["original_mountpoint"].as_str()?.to_string(), mi.clone())))
        .collect()
}

/// VG names of the LVs a manifest mounted (`/dev/mapper/<vg>-<lv>`; a
/// partition — kpartx's `/dev/mapper/<map>-part<N>` on multipath — is not one).
fn manifest_vgs(m: &serde_json::Value) -> BTreeSet<String> {
    m["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|mi| mi["partition"].is_null())
        .filter_map(|mi| {
            let s = mi["source"].as_str()?;
            let dm = s.strip_prefix("/dev/mapper/")?;
            // lvm doubles dashes inside names; our names have none.
            dm.rsplit_once('-').map(|(vg, _)| vg.to_string())
        })
        .collect()
}

/// The common start of the LVM scenarios: gold disk built, host VG, guard,
/// appliance with the gold copy, the live gold presented and mounted as
/// volume `gold`.
struct LvmStage {
    gold_file: PathBuf,
    mda: (u64, u64),
    live_dev: PathBuf,
    host_img_loop: String,
}

impl Drop for LvmStage {
    /// The host's LVM as it was, even when the scenario panicked: a guard or
    /// an active host VG left behind would change the next scenario.
    fn drop(&mut self) {
        let _ = gm(&["guard", "remove"]);
        let _ = try_run("lvm", &["vgchange", "-q", "-an", "vg_host"], CMD_TIMEOUT);
        let _ = try_run("losetup", &["-d", &self.host_img_loop], CMD_TIMEOUT);
    }
}

fn lvm_stage(
    scratch: &Path,
    xfs: &ReflinkXfs,
    rig: &mut Rig,
    vols: &Volumes,
    root: &Path,
) -> LvmStage {
    let t = Instant::now();
    let (img, mda_off, mda_size) = build_lvm_gold(&xfs.mnt);
    eprintln!("gold disk built in {:.1}s", t.elapsed().as_secs_f64());
    // A VG of the host's own, active, that nothing may touch.
    let host_img = scratch.join("host.img");
    fs::File::create(&host_img)
        .unwrap()
        .set_len(32 * MIB)
        .unwrap();
    let hl = run("losetup", &["-f", "--show", host_img.to_str().unwrap()])
        .trim()
        .to_string();
    lvm(&["pvcreate", "-q", &hl]);
    lvm(&["vgcreate", "-q", "vg_host", &hl]);
    lvm(&["lvcreate", "-q", "-y", "-L", "8M", "-n", "lv", "vg_host"]);
    let mut stage = LvmStage {
        gold_file: PathBuf::new(),
        mda: (mda_off, mda_size),
        live_dev: PathBuf::new(),
        host_img_loop: hl,
    };
    gm(&["guard", "install"]).unwrap_or_else(|e| panic!("{e}"));
    let st = gm(&["guard", "status", "--json"]).unwrap();
    let st: serde_json::Value = serde_json::from_str(&st).unwrap();
    assert_eq!(st["installed"], true, "guard: {st}");

    stage.gold_file = rig.import_gold("gold", &img);
    let (lun, wwn, _) = rig.clone_and_present("live", "gold");
    stage.live_dev = rig.attach(&[(lun, &wwn)]).remove(0);
    if rig.portals.len() > 1 {
        // Every path up before the mount (goldmount would wait for the map
        // anyway: several sessions to the target).
        wait_paths(&wwn, rig.portals.len());
    }
    vols.add("gold");
    let t = Instant::now();
    let m = gm_mount("gold", &[&wwn]);
    eprintln!("live gold mounted in {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(m["layout"], "fstab", "{m}");
    assert_eq!(
        manifest_vgs(&m),
        BTreeSet::from(["vg_gold".to_string()]),
        "the live gold keeps its VG name: {m}"
    );
    assert_eq!(
        fs::read_to_string(root.join("gold/etc/hostname")).unwrap(),
        "gold-host\n"
    );
    stage
}

/// The LVM metadata area of partition 2: label sector + mda, straight from
/// the device (buffers flushed first).
fn lvm_area(dev: &Path, off: u64, len: u64) -> Vec<u8> {
    let _ = try_run(
        "blockdev",
        &["--flushbufs", dev.to_str().unwrap()],
        CMD_TIMEOUT,
    );
    read_at(dev, off, len as usize)
}

fn seqno(dev: &Path) -> u64 {
    let _ = try_run(
        "blockdev",
        &["--flushbufs", dev.to_str().unwrap()],
        CMD_TIMEOUT,
    );
    lvm::read_pv(&fsdetect::FileSource::open(dev).unwrap())
        .unwrap()
        .metadata
        .unwrap()
        .seqno
}

/// Runs `goldmount mount` for every (volume, wwid) at once, one process
/// each; returns the manifests and each process's wall time.
fn mount_concurrently(jobs: &[(String, String)]) -> Vec<(serde_json::Value, f64)> {
    let handles: Vec<_> = jobs
        .iter()
        .cloned()
        .map(|(vol, wwid)| {
            std::thread::spawn(move || {
                let t = Instant::now();
                let r = gm(&[
                    "mount",
                    "--wwid",
                    &wwid,
                    "--volume",
                    &vol,
                    "--json",
                    "--timeout",
                    "60",
                ]);
                (vol, r, t.elapsed().as_secs_f64())
            })
        })
        .collect();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for h in handles {
        let (vol, r, secs) = h.join().unwrap();
        match r {
            Ok(s) => out.push((serde_json::from_str(&s).unwrap(), secs)),
            Err(e) => errors.push(format!("{vol}: {e}")),
        }
    }
    assert!(
        errors.is_empty(),
        "concurrent mounts failed:\n{}",
        errors.join("\n")
    );
    out
}

// ---------------------------------------------------------------- scenarios

/// Scenario 1: three clones of an LVM+GPT gold disk mounted concurrently next
/// to the mounted live gold: full trees, unique VG names, identical contents,
/// isolated writes, host VGs untouched, clean teardown, gold metadata unchanged.
#[test]
#[ignore = "needs the lab kernel"]
fn mount_three_lvm_clones_concurrently_next_to_gold() {
    let scratch = require_lab();
    let root = gm_env(&scratch);
    let xfs = ReflinkXfs::create(&scratch, 1536);
    let mut rig = Rig::start(&scratch, &xfs, 8481, "e2e-lvm");
    let vols = Volumes::new();
    let st = lvm_stage(&scratch, &xfs, &mut rig, &vols, &root);
    let live_p2 = part(&st.live_dev, 2);
    let (mda_off, mda_size) = st.mda;
    let area_len = mda_off + mda_size;
    let gold_area = read_at(&st.gold_file, P2_OFFSET, area_len as usize);
    let live_area = lvm_area(&live_p2, 0, area_len);
    let live_seq = seqno(&live_p2);
    let vgs_before = host_vgs(false);
    let vgs_all_before = host_vgs(true);
    eprintln!("host vgs: {vgs_before:?}\nall: {vgs_all_before:?}");
    assert!(vgs_before.iter().any(|l| l.starts_with("vg_host ")));
    let dm_before = dm_names();
    let gold_sums = tree_sums(&root.join("gold"));
    let expected: BTreeSet<String> = gold_files()
        .iter()
        .map(|(p, _)| p.to_string())
        .chain(["etc/fstab".to_string()])
        .collect();
    assert_eq!(
        gold_sums.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "the live gold tree"
    );

    // Three clones presented at once, one targeted scan each.
    let mut present = Vec::new();
    for c in ["c1", "c2", "c3"] {
        let (lun, wwn, _) = rig.clone_and_present(c, "gold");
        present.push((c.to_string(), lun, wwn));
    }
    let luns: Vec<(u32, &str)> = present.iter().map(|(_, l, w)| (*l, w.as_str())).collect();
    let devs = rig.attach(&luns);
    for (c, _, _) in &present {
        vols.add(c);
    }
    let jobs: Vec<(String, String)> = present
        .iter()
        .map(|(c, _, w)| (c.clone(), w.clone()))
        .collect();
    let t = Instant::now();
    let results = mount_concurrently(&jobs);
    let all = t.elapsed().as_secs_f64();
    eprintln!(
        "device present -> all mounted, 3 concurrent: {all:.1}s (per process {:?})",
        results.iter().map(|r| r.1).collect::<Vec<_>>()
    );

    for (m, _) in &results {
        eprintln!("notes of {}: {}", m["volume"], m["notes"]);
    }
    // The clones' own active LVs are not host PVs missing from the devices
    // file: with three clones up, the guard still reads as installed.
    let guard: serde_json::Value =
        serde_json::from_str(&gm(&["guard", "status", "--json"]).unwrap()).unwrap();
    eprintln!("guard status with the clones up: {guard}");
    assert_eq!(
        guard["installed"], true,
        "guard with the clones up: {guard}"
    );
    let mut vg_names = BTreeSet::new();
    let mut vg_of = Vec::new();
    for ((m, _), (c, _, _)) in results.iter().zip(&present) {
        assert_eq!(m["layout"], "fstab", "{c}: {m}");
        let tree = by_original(m);
        for mp in ["/", "/boot", "/home", "/srv/data"] {
            let mi = tree
                .get(mp)
                .unwrap_or_else(|| panic!("{c}: {mp} not mounted: {m}"));
            let path = mi["mount_path"].as_str().unwrap();
            assert!(
                mounts_under(Path::new(path)).iter().any(|x| x == path),
                "{c}: {path} is not a mount point"
            );
        }
        assert_eq!(
            tree["/"]["mount_path"].as_str().unwrap(),
            root.join(c).to_str().unwrap()
        );
        assert!(
            tree["/"]["options"].as_str().unwrap().contains("nouuid"),
            "{c}: the root XFS shares the gold's UUID, nouuid expected: {m}"
        );
        let vgs = manifest_vgs(m);
        assert_eq!(vgs.len(), 1, "{c}: {vgs:?}");
        let vg = vgs.into_iter().next().unwrap();
        assert_ne!(vg, "vg_gold", "{c} was not renamed");
        assert!(vg_names.insert(vg.clone()), "{c}: VG name {vg} used twice");
        vg_of.push(vg.clone());
        let sums = tree_sums(&root.join(c));
        assert_eq!(sums, gold_sums, "{c}: contents differ from the gold");
    }
    eprintln!("clone VGs: {vg_names:?}");
    // lvm itself agrees: each clone's PV is in its own VG.
    for (dev, vg) in devs.iter().zip(&vg_of) {
        let p2 = part(dev, 2);
        let out = lvm(&[
            "pvs",
            "--noheadings",
            "-o",
            "vg_name",
            "--devices",
            p2.to_str().unwrap(),
        ]);
        assert_eq!(out.trim(), vg.as_str(), "pvs of {}", p2.display());
    }
    let during: BTreeSet<String> = host_vgs(true)
        .into_iter()
        .filter(|l| !vg_names.iter().any(|v| l.starts_with(&format!("{v} "))))
        .collect();
    assert_eq!(
        during, vgs_all_before,
        "host VGs changed while clones were up"
    );
    assert_eq!(host_vgs(false), vgs_before);

    // A write in c1 reaches neither the gold nor c2/c3.
    let w = root.join("c1/home/alice/written-by-c1.txt");
    fs::write(&w, "only in c1\n").unwrap();
    fs::write(root.join("c1/srv/data/records.csv"), "changed in c1\n").unwrap();
    run("sync", &[]);
    for other in ["gold", "c2", "c3"] {
        assert!(!root
            .join(other)
            .join("home/alice/written-by-c1.txt")
            .exists());
        assert_eq!(
            tree_sums(&root.join(other)),
            gold_sums,
            "{other} changed after a write in c1"
        );
    }
    assert_ne!(tree_sums(&root.join("c1")), gold_sums);

    // Teardown of the clones.
    for (c, _, _) in &present {
        let out = gm(&["unmount", "--volume", c]).unwrap_or_else(|e| panic!("{e}"));
        eprintln!("unmount {c}: {out}");
        assert!(
            mounts_under(&root.join(c)).is_empty(),
            "{c} left mounts: {:?}",
            mounts_under(&root.join(c))
        );
        assert!(!root.join(c).exists(), "{c}: volume dir left behind");
    }
    let dm_after = dm_names();
    assert!(
        dm_after
            .iter()
            .all(|n| !vg_names.iter().any(|v| n.starts_with(v.as_str()))),
        "clone dm devices left: {dm_after:?}"
    );
    assert_eq!(dm_after, dm_before, "dm devices changed");
    for dev in &devs {
        assert!(dm_on_disk(dev).is_empty(), "dm on {}", dev.display());
    }
    for ((c, _, _), dev) in present.iter().zip(&devs) {
        rig.detach(dev, c);
    }
    assert_eq!(host_vgs(true), vgs_all_before, "host VGs after teardown");
    assert_eq!(host_vgs(false), vgs_before);
    assert_eq!(
        seqno(&live_p2),
        live_seq,
        "seqno of vg_gold on the gold LUN"
    );
    assert!(
        lvm_area(&live_p2, 0, area_len) == live_area,
        "LVM label/metadata bytes of the gold LUN changed"
    );
    assert!(
        read_at(&st.gold_file, P2_OFFSET, area_len as usize) == gold_area,
        "LVM label/metadata bytes of the appliance's gold copy changed"
    );
    assert_eq!(tree_sums(&root.join("gold")), gold_sums);

    // The live gold goes too; the host is as before.
    gm(&["unmount", "--volume", "gold"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(mounts_under(&root).is_empty(), "{:?}", mounts_under(&root));
    assert!(dm_on_disk(&st.live_dev).is_empty());
    let list = gm(&["list", "--json"]).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&list).unwrap(),
        serde_json::json!([])
    );
    gm(&["guard", "remove"]).unwrap_or_else(|e| panic!("{e}"));
    drop(st);
    drop(vols);
    drop(rig);
    drop(xfs);
}

/// Scenario 2: a whole-LUN XFS clone (no partition table) while the gold XFS
/// (same UUID) is mounted: the clone mounts with nouuid, both are readable,
/// writes stay apart.
#[test]
#[ignore = "needs the lab kernel"]
fn mount_xfs_only_clone_while_gold_xfs_mounted() {
    let scratch = require_lab();
    let root = gm_env(&scratch);
    let xfs = ReflinkXfs::create(&scratch, 1024);
    let mut rig = Rig::start(&scratch, &xfs, 8482, "e2e-xfs");
    let vols = Volumes::new();
    let img = xfs.mnt.join("xfs-gold.img");
    fs::File::create(&img).unwrap().set_len(320 * MIB).unwrap();
    run(
        "mkfs.xfs",
        &[
            "-q",
            "-f",
            "-L",
            "pgdata",
            "-m",
            "uuid=5a0c1e2d-3b4a-4c5d-8e6f-7a8b9c0d1e2f",
            img.to_str().unwrap(),
        ],
    );
    let mnt = scratch.join("build");
    fs::create_dir_all(&mnt).unwrap();
    run("mount", &[img.to_str().unwrap(), mnt.to_str().unwrap()]);
    fs::write(mnt.join("PG_VERSION"), "15\n").unwrap();
    fs::write(mnt.join("base.bin"), noise(1 << 20, 9)).unwrap();
    run("umount", &[mnt.to_str().unwrap()]);
    rig.import_gold("xgold", &img);
    let (l0, w0, _) = rig.clone_and_present("xlive", "xgold");
    let (l1, w1, _) = rig.clone_and_present("x1", "xgold");
    let devs = rig.attach(&[(l0, &w0), (l1, &w1)]);
    vols.add("xgold");
    vols.add("x1");
    let g = gm_mount("xgold", &[&w0]);
    let c = gm_mount("x1", &[&w1]);
    let (gm0, cm0) = (&g["mounts"][0], &c["mounts"][0]);
    assert_eq!(gm0["fs_type"], "xfs");
    assert_eq!(cm0["fs_type"], "xfs");
    assert_eq!(g["mounts"].as_array().unwrap().len(), 1, "{g}");
    assert!(
        !gm0["options"].as_str().unwrap().contains("nouuid"),
        "the gold needs no nouuid: {g}"
    );
    assert!(
        cm0["options"].as_str().unwrap().contains("nouuid"),
        "the clone needs nouuid: {c}"
    );
    assert_eq!(gm0["uuid"], cm0["uuid"]);
    let (gp, cp) = (
        PathBuf::from(gm0["mount_path"].as_str().unwrap()),
        PathBuf::from(cm0["mount_path"].as_str().unwrap()),
    );
    assert!(gp.starts_with(root.join("xgold")) && cp.starts_with(root.join("x1")));
    assert_eq!(tree_sums(&gp), tree_sums(&cp));
    assert_eq!(fs::read_to_string(cp.join("PG_VERSION")).unwrap(), "15\n");
    fs::write(cp.join("clone-only"), "x1\n").unwrap();
    run("sync", &[]);
    assert!(!gp.join("clone-only").exists());
    for v in ["x1", "xgold"] {
        gm(&["unmount", "--volume", v]).unwrap_or_else(|e| panic!("{e}"));
    }
    assert!(mounts_under(&root).is_empty(), "{:?}", mounts_under(&root));
    for (dev, c) in devs.iter().zip(["xlive", "x1"]) {
        rig.detach(dev, c);
    }
    drop(vols);
    drop(rig);
    drop(xfs);
}

/// True while this host has an iSCSI session to `iqn`.
fn has_session(iqn: &str) -> bool {
    !session_scsi_addresses(iqn).is_empty()
}

/// Scenario: the appliance's presentation document is all goldmount gets.
/// It logs in (no session existed), scans exactly the LUN, verifies it by
/// WWN and mounts it; a second volume on the same target shares the
/// session; a repeated request answers the same manifest; the first
/// unmount removes its LUN's device and keeps the shared session, the last
/// logs out. A presentation whose WWN does not match the LUN fails, naming
/// the WWN, and leaves no session, no device and no record behind.
#[test]
#[ignore = "needs the lab kernel"]
fn mount_by_presentation_logs_in_and_tears_down() {
    let scratch = require_lab();
    let root = gm_env(&scratch);
    let xfs = ReflinkXfs::create(&scratch, 1024);
    // The rig's own login is never used: goldmount logs in itself.
    let rig = Rig::start(&scratch, &xfs, 8489, "e2e-present");
    let vols = Volumes::new();
    let img = xfs.mnt.join("pres-gold.img");
    fs::File::create(&img).unwrap().set_len(300 * MIB).unwrap();
    run(
        "mkfs.xfs",
        &["-q", "-f", "-L", "presdata", img.to_str().unwrap()],
    );
    let mnt = scratch.join("pres-build");
    fs::create_dir_all(&mnt).unwrap();
    run("mount", &[img.to_str().unwrap(), mnt.to_str().unwrap()]);
    fs::write(mnt.join("PG_VERSION"), "16\n").unwrap();
    run("umount", &[mnt.to_str().unwrap()]);
    rig.import_gold("pgold", &img);
    let mut docs = Vec::new();
    let mut wwns = Vec::new();
    for c in ["pc1", "pc2", "pc3"] {
        let cl = rig.app.post(
            "/v1/clones",
            serde_json::json!({"name": c, "gold": "pgold"}),
        );
        assert_eq!(cl["copy_mode"], "reflink", "{cl}");
        let p = rig.app.post(
            "/v1/presentations",
            serde_json::json!({"clone": c, "host": "labhost"}),
        );
        let f = scratch.join(format!("{c}.presentation.json"));
        fs::write(&f, p.to_string()).unwrap();
        wwns.push(p["wwn"].as_str().unwrap().to_string());
        docs.push(f);
    }
    assert!(!has_session(&rig.iqn), "no session before goldmount");
    let mount = |vol: &str, doc: &Path| -> Result<String, String> {
        gm(&[
            "mount",
            "--volume",
            vol,
            "--json",
            "--timeout",
            "60",
            "--presentation",
            doc.to_str().unwrap(),
        ])
    };
    vols.add("pv1");
    vols.add("pv2");
    let t0 = Instant::now();
    let m1 = mount("pv1", &docs[0]).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "presentation → mounted in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let m1: serde_json::Value = serde_json::from_str(&m1).unwrap();
    assert!(has_session(&rig.iqn), "goldmount logged in");
    let p1 = PathBuf::from(m1["mounts"][0]["mount_path"].as_str().unwrap());
    assert!(p1.starts_with(root.join("pv1")), "{m1}");
    assert_eq!(fs::read_to_string(p1.join("PG_VERSION")).unwrap(), "16\n");
    let d1 = disk_with_wwid(&wwns[0]).expect("pc1's disk");
    // Exactly the presented LUN was scanned: pc2's and pc3's are not here.
    assert!(disk_with_wwid(&wwns[1]).is_none() && disk_with_wwid(&wwns[2]).is_none());
    let again = mount("pv1", &docs[0]).unwrap_or_else(|e| panic!("{e}"));
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again, m1, "a repeated request answers the same manifest");
    let m2 = mount("pv2", &docs[1]).unwrap_or_else(|e| panic!("{e}"));
    let m2: serde_json::Value = serde_json::from_str(&m2).unwrap();
    let p2 = PathBuf::from(m2["mounts"][0]["mount_path"].as_str().unwrap());
    assert_eq!(fs::read_to_string(p2.join("PG_VERSION")).unwrap(), "16\n");
    assert_eq!(
        session_scsi_addresses(&rig.iqn).len(),
        1,
        "one shared session"
    );
    // A LUN that never appears (the presentation names a LUN number the
    // target does not map): a clear error naming the WWN, nothing left.
    let mut lie: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&docs[2]).unwrap()).unwrap();
    lie["lun"] = serde_json::json!(9);
    let bad = scratch.join("lie.json");
    fs::write(&bad, lie.to_string()).unwrap();
    let e = gm(&[
        "mount",
        "--volume",
        "pv3",
        "--timeout",
        "10",
        "--presentation",
        bad.to_str().unwrap(),
    ])
    .expect_err("a WWN that matches nothing must fail");
    assert!(e.contains("did not appear") && e.contains(&wwns[2]), "{e}");
    assert!(disk_with_wwid(&wwns[2]).is_none(), "nothing scanned in");
    assert!(gm(&["list", "--json"]).unwrap().contains("pv2"));
    assert!(
        !gm(&["list", "--json"]).unwrap().contains("pv3"),
        "no record left"
    );
    let out = gm(&["unmount", "--volume", "pv1"]).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("unmount pv1: {out}");
    assert!(
        !Path::new("/sys/block").join(&d1).exists(),
        "pc1's SCSI device is removed on unmount"
    );
    assert!(has_session(&rig.iqn), "pv2 still uses the session");
    let out = gm(&["unmount", "--volume", "pv2"]).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("unmount pv2: {out}");
    assert!(!has_session(&rig.iqn), "the last volume logged out");
    for w in &wwns {
        assert!(disk_with_wwid(w).is_none(), "{w} left behind");
    }
    assert!(mounts_under(&root).is_empty(), "{:?}", mounts_under(&root));
    assert_eq!(gm(&["list", "--json"]).unwrap().trim(), "[]");
    for c in ["pc1", "pc2", "pc3"] {
        rig.retire(c);
    }
    drop(vols);
    drop(rig);
    drop(xfs);
}

/// Scenario 3: a VG across two LUNs of one clone set, on a host without the
/// guard whose udev has autoactivated the clone under the gold's name. With
/// one LUN the VG is reported as incomplete (and the host's activation
/// named) and goldmount activates nothing; with both (`--wwid A --wwid B`)
/// it undoes the host's activation and the LV mounts with the gold's
/// contents.
#[test]
#[ignore = "needs the lab kernel"]
fn mount_vg_spanning_two_luns() {
    let scratch = require_lab();
    let root = gm_env(&scratch);
    let xfs = ReflinkXfs::create(&scratch, 1024);
    let mut rig = Rig::start(&scratch, &xfs, 8483, "e2e-span");
    let vols = Volumes::new();
    let (a, b) = (xfs.mnt.join("span-a.img"), xfs.mnt.join("span-b.img"));
    for i in [&a, &b] {
        fs::File::create(i).unwrap().set_len(64 * MIB).unwrap();
    }
    let la = run("losetup", &["-f", "--show", a.to_str().unwrap()])
        .trim()
        .to_string();
    let lb = run("losetup", &["-f", "--show", b.to_str().unwrap()])
        .trim()
        .to_string();
    let devs = format!("{la},{lb}");
    lvm(&["pvcreate", "-q", "--devices", &devs, &la, &lb]);
    lvm(&["vgcreate", "-q", "--devices", &devs, "vg_span", &la, &lb]);
    // Linear, 100 MiB: it must continue on the second PV.
    lvm(&[
        "lvcreate",
        "-q",
        "--devices",
        &devs,
        "-y",
        "-L",
        "100M",
        "-n",
        "data",
        "vg_span",
    ]);
    run(
        "mkfs.ext4",
        &["-q", "-F", "-L", "spandata", "/dev/mapper/vg_span-data"],
    );
    let mnt = scratch.join("build");
    fs::create_dir_all(&mnt).unwrap();
    run(
        "mount",
        &["/dev/mapper/vg_span-data", mnt.to_str().unwrap()],
    );
    let big = noise(24 << 20, 5);
    fs::write(mnt.join("big.bin"), &big).unwrap();
    fs::write(mnt.join("hello"), "span\n").unwrap();
    run("umount", &[mnt.to_str().unwrap()]);
    lvm(&["vgchange", "-q", "--devices", &devs, "-an", "vg_span"]);
    run("losetup", &["-d", &la]);
    run("losetup", &["-d", &lb]);
    rig.import_gold("span-a", &a);
    rig.import_gold("span-b", &b);
    let (l0, w0, _) = rig.clone_and_present("sa1", "span-a");
    let (l1, w1, _) = rig.clone_and_present("sb1", "span-b");
    let disks = rig.attach(&[(l0, &w0), (l1, &w1)]);
    // No guard in this scenario, and the host behaves as one that never had
    // the gold: its own udev rules (69-lvm.rules) see both LUNs arrive and
    // autoactivate the clone's VG under the gold's name — the trap
    // goldmount must survive. (Whether it springs unprovoked depends on
    // lvm2's records of the gold built above and on event timing.)
    forget_lvm_autoactivation_records();
    for d in &disks {
        host_udev_event(d, "add");
    }
    let by_udev = dm_on_disk(&disks[0]);
    eprintln!("dm devices on the clone after the host's udev ran: {by_udev:?}");
    assert!(
        !by_udev.is_empty(),
        "the host's udev rules did not autoactivate the unguarded clone; the trap was not set"
    );

    // One LUN only: refused with the reason, nothing activated, no state.
    vols.add("half");
    let e = gm(&["mount", "--wwid", &w0, "--volume", "half", "--json"]).unwrap_err();
    eprintln!("one LUN of two: {e}");
    assert!(
        e.contains("missing") || e.contains("Missing"),
        "the error should name the missing PV: {e}"
    );
    assert!(
        e.contains("already activated"),
        "the error should say the host activated the clone: {e}"
    );
    assert_eq!(
        dm_on_disk(&disks[0]),
        by_udev,
        "goldmount activated (or removed) part of a VG it refused"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&gm(&["list", "--json"]).unwrap()).unwrap(),
        serde_json::json!([])
    );

    vols.add("s1");
    let m = gm_mount("s1", &[&w0, &w1]);
    assert!(
        m["notes"]
            .to_string()
            .contains("undid an accidental activation"),
        "the host had activated the clone; goldmount must have undone it first: {m}"
    );
    let mounts = m["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 1, "{m}");
    let p = PathBuf::from(mounts[0]["mount_path"].as_str().unwrap());
    assert_eq!(fs::read_to_string(p.join("hello")).unwrap(), "span\n");
    assert!(fs::read(p.join("big.bin")).unwrap() == big);
    assert!(!dm_on_disk(&disks[0]).is_empty() && !dm_on_disk(&disks[1]).is_empty());
    gm(&["unmount", "--volume", "s1"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(dm_on_disk(&disks[0]).is_empty() && dm_on_disk(&disks[1]).is_empty());
    assert!(mounts_under(&root).is_empty());
    for (dev, c) in disks.iter().zip(["sa1", "sb1"]) {
        rig.detach(dev, c);
    }
    drop(vols);
    drop(rig);
    drop(xfs);
}

/// Scenario: the clone reaches the host over two portals and multipathd
/// owns it (kpartx, as Debian's multipath-tools installs it, maps its GPT
/// partitions). `goldmount mount --wwid` takes the multipath map from the
/// executor's verified wait, not one of its paths, assembles the gold's
/// fstab tree from kpartx's partition maps (checked against the table and
/// the map's dm table), and unmounts without a trace; then the executor's
/// remove-device takes the map, kpartx's partition maps and both paths
/// away.
#[test]
#[ignore = "needs the lab kernel"]
fn mount_multipath_clone_fstab_tree() {
    let scratch = require_lab();
    let root = gm_env(&scratch);
    let xfs = ReflinkXfs::create(&scratch, 1024);
    let _mpd = Multipathd::start();
    let mut rig = Rig::start_on(&scratch, &xfs, 8486, "e2e-mpath", &[PORTAL, PORTAL2]);
    let vols = Volumes::new();
    let img = goldmount_tests::golddisk::build(&xfs.mnt, "mpgold.img").unwrap();
    rig.import_gold("mpgold", &img);
    let (lun, wwn, _) = rig.clone_and_present("mp1", "mpgold");
    rig.attach(&[(lun, &wwn)]);
    let hex = wwn.trim_start_matches("naa.");
    // Both paths up; no map yet (find_multipaths strict, a new WWID): the
    // map is goldmount's to ask for.
    wait_paths(&wwn, 2);
    assert_eq!(dm_with_uuid(&format!("mpath-3{hex}")), None);

    vols.add("mp1");
    let m = gm_mount("mp1", &[&wwn]);
    let map = map_of(&wwn, 2);
    let paths = slaves_of(&map);
    eprintln!("map {map} over {paths:?}; holders: {:?}", holders_of(&map));
    let dev = m["devices"][0].as_str().unwrap().to_string();
    assert!(
        dev.starts_with("/dev/mapper/"),
        "the manifest names the map by its dm name: {m}"
    );
    let dev_kname = fs::canonicalize(&dev)
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        dev_kname, map,
        "goldmount should mount from the map, not a path: {m}"
    );
    assert_eq!(m["layout"], "fstab", "{m}");
    // kpartx mapped the map's partitions (Debian's multipath-tools rules):
    // goldmount mounts those, no offset loops of its own.
    assert_eq!(holders_of(&map).len(), 3, "kpartx partition maps of {map}");
    for mi in m["mounts"].as_array().unwrap() {
        assert_eq!(mi["via_offset_loop"], false, "{mi}");
        let src = mi["source"].as_str().unwrap();
        assert!(
            src.starts_with("/dev/mapper/") && src.contains("-part"),
            "not a kpartx partition map: {mi}"
        );
    }
    let vol = PathBuf::from(m["path"].as_str().unwrap());
    for (rel, content) in goldmount_tests::golddisk::FILES {
        assert_eq!(
            fs::read_to_string(vol.join(rel)).unwrap(),
            *content,
            "{rel} in the multipath clone"
        );
    }
    // A write through the map reaches the clone, not the gold.
    fs::write(vol.join("srv/data/mp1.txt"), "written over multipath\n").unwrap();
    gm(&["unmount", "--volume", "mp1"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(mounts_under(&root).is_empty());
    let left: Vec<String> = holders_of(&map)
        .into_iter()
        .filter(|h| h.starts_with("loop"))
        .collect();
    assert!(left.is_empty(), "loop devices left on the map: {left:?}");

    // remove-device: map (with any kpartx partition maps) and both paths.
    let r = executor::remove::remove(
        &executor::sysfs::Root::host(),
        &format!("/dev/{map}"),
        &Default::default(),
    )
    .unwrap_or_else(|e| panic!("remove-device of the unmounted map: {e}"));
    eprintln!("removal: {r:?}");
    assert!(r.map_removed.is_some(), "{r:?}");
    assert_eq!(
        r.wwid_forgotten.as_deref(),
        Some(format!("3{hex}").as_str()),
        "the WWID goldmount listed for multipathd leaves with the LUN: {r:?}"
    );
    assert_eq!(
        dm_with_uuid(&format!("mpath-3{hex}")),
        None,
        "map left behind"
    );
    for p in &paths {
        assert!(
            !Path::new("/sys/block").join(p).exists(),
            "path {p} left behind"
        );
    }
    rig.disks.clear();
    rig.retire("mp1");
    drop(vols);
    drop(rig);
    drop(xfs);
}

/// Flushes every unused multipath map when dropped (after the volumes are
/// unmounted, before the rig deletes the paths): a map left without paths
/// would queue I/O for the scenarios after this one.
struct FlushMaps;

impl Drop for FlushMaps {
    fn drop(&mut self) {
        let _ = try_run("multipath", &["-F"], CMD_TIMEOUT);
    }
}

/// Waits until `n` SCSI disks (paths) carry `wwn`.
fn wait_paths(wwn: &str, n: usize) {
    wait_until(&format!("{n} paths of {wwn}"), DISK_WAIT, || {
        let count = fs::read_dir("/sys/block")
            .ok()?
            .flatten()
            .filter(|e| {
                fs::read_to_string(e.path().join("device/wwid")).is_ok_and(|w| w.trim() == wwn)
            })
            .count();
        (count == n).then_some(())
    });
}

/// The multipath map (kernel name) over `wwn`, once it has `paths` paths.
fn map_of(wwn: &str, paths: usize) -> String {
    let hex = wwn.trim_start_matches("naa.");
    wait_until(&format!("the multipath map of {wwn}"), DISK_WAIT, || {
        let dm = dm_with_uuid(&format!("mpath-3{hex}"))?;
        (fs::read_dir(format!("/sys/block/{dm}/slaves"))
            .ok()?
            .count()
            == paths)
            .then_some(dm)
    })
}

/// The kernel names a dm device is stacked on (its `slaves`).
fn slaves_of(dev: &str) -> Vec<String> {
    stack_links(dev, "slaves")
}

/// Kernel names in `/sys/block/<dev>/<dir>` (`holders` or `slaves`).
fn stack_links(dev: &str, dir: &str) -> Vec<String> {
    fs::read_dir(format!("/sys/block/{dev}/{dir}"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn kname(p: &str) -> String {
    fs::canonicalize(p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Scenario: LVM on multipath. The gold disk (GPT, VG `vg_gold` on p2) and a
/// clone of it are each presented on two portals, so each is a multipath map
/// with kpartx partition maps; the live gold is mounted by goldmount from its
/// map, then the clone from its map. The clone's VG is renamed, and its LVs
/// must sit on the clone map's partition map — not on one path's partition,
/// which would lose the second path and let lvm see the PV twice. The host's
/// VGs and the gold's LVM metadata do not change; teardown leaves the maps
/// free for `remove-device`.
#[test]
#[ignore = "needs the lab kernel"]
fn mount_lvm_clone_on_multipath_next_to_gold() {
    let scratch = require_lab();
    let root = gm_env(&scratch);
    let xfs = ReflinkXfs::create(&scratch, 1536);
    let _mpd = Multipathd::start();
    let mut rig = Rig::start_on(&scratch, &xfs, 8487, "e2e-mplvm", &[PORTAL, PORTAL2]);
    let _flush = FlushMaps;
    let vols = Volumes::new();
    let st = lvm_stage(&scratch, &xfs, &mut rig, &vols, &root);
    let live_wwn = fs::read_to_string(format!(
        "/sys/block/{}/device/wwid",
        st.live_dev.file_name().unwrap().to_string_lossy()
    ))
    .unwrap()
    .trim()
    .to_string();
    let gold_map = map_of(&live_wwn, 2);
    let gold_vol = gm(&["list", "--json"]).unwrap();
    assert!(
        gold_vol.contains(&format!("/dev/{gold_map}")),
        "the live gold should be mounted from its map {gold_map}: {gold_vol}"
    );
    let gold_sums = tree_sums(&root.join("gold"));
    let vgs_before = host_vgs(false);
    let dm_before = dm_names();
    let gold_p2 = holders_of(&gold_map)
        .into_iter()
        .find(|h| {
            fs::read_to_string(format!("/sys/block/{h}/dm/uuid"))
                .map(|u| u.trim().starts_with("part2-mpath-"))
                .unwrap_or(false)
        })
        .map(|h| PathBuf::from("/dev").join(h))
        .unwrap_or_else(|| panic!("no kpartx partition 2 on the gold's map {gold_map}"));
    let gold_seq = seqno(&gold_p2);

    let (lun, wwn, _) = rig.clone_and_present("mc1", "gold");
    rig.attach(&[(lun, &wwn)]);
    wait_paths(&wwn, 2);

    vols.add("mc1");
    let m = gm_mount("mc1", &[&wwn]);
    let map = map_of(&wwn, 2);
    let paths = slaves_of(&map);
    eprintln!("clone map {map} over {paths:?}; gold map {gold_map}");
    eprintln!("notes: {}", m["notes"]);
    assert!(
        m["devices"][0]
            .as_str()
            .unwrap()
            .starts_with("/dev/mapper/"),
        "the manifest names the map by its dm name: {m}"
    );
    assert_eq!(
        kname(m["devices"][0].as_str().unwrap()),
        map,
        "goldmount should mount from the map, not a path: {m}"
    );
    assert_eq!(m["layout"], "fstab", "{m}");
    let vgs = manifest_vgs(&m);
    assert_eq!(vgs.len(), 1, "{m}");
    let vg = vgs.into_iter().next().unwrap();
    assert_ne!(vg, "vg_gold", "the clone's VG was not renamed: {m}");
    let tree = by_original(&m);
    for mp in ["/", "/boot", "/home", "/srv/data"] {
        assert!(tree.contains_key(mp), "{mp} not mounted: {m}");
    }
    assert_eq!(tree_sums(&root.join("mc1")), gold_sums, "contents differ");

    // Every LV of the clone sits on the clone map's partition 2 (kpartx).
    let p2: Vec<String> = holders_of(&map)
        .into_iter()
        .filter(|h| {
            fs::read_to_string(format!("/sys/block/{h}/dm/uuid"))
                .map(|u| u.trim().starts_with("part2-mpath-"))
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(
        p2.len(),
        1,
        "kpartx partition 2 of {map}: {:?}",
        holders_of(&map)
    );
    let p2 = p2[0].clone();
    let mut lvs = 0;
    for mi in m["mounts"].as_array().unwrap() {
        let src = mi["source"].as_str().unwrap();
        if !src.starts_with(&format!("/dev/mapper/{vg}-")) {
            continue;
        }
        lvs += 1;
        let lv = kname(src);
        assert_eq!(
            slaves_of(&lv),
            vec![p2.clone()],
            "{src} ({lv}) is not on {p2}"
        );
    }
    assert_eq!(lvs, 2, "root and home LVs expected: {m}");
    // Nothing holds a path's own partitions (where the kernel made them).
    for p in &paths {
        for e in fs::read_dir(format!("/sys/block/{p}")).unwrap().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(p.as_str()) {
                let held: Vec<_> = fs::read_dir(e.path().join("holders"))
                    .map(|d| d.flatten().map(|h| h.file_name()).collect())
                    .unwrap_or_default();
                assert!(held.is_empty(), "path partition {n} is held by {held:?}");
            }
        }
    }

    // A write in the clone stays there.
    fs::write(root.join("mc1/home/alice/mp.txt"), "only in mc1\n").unwrap();
    run("sync", &[]);
    assert_eq!(tree_sums(&root.join("gold")), gold_sums, "the gold changed");
    assert_eq!(host_vgs(false), vgs_before, "host VGs changed");

    gm(&["unmount", "--volume", "mc1"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(mounts_under(&root.join("mc1")).is_empty());
    assert!(
        holders_of(&p2).is_empty(),
        "{p2} still held: {:?}",
        holders_of(&p2)
    );
    assert!(
        dm_names().iter().all(|n| !n.starts_with(vg.as_str())),
        "clone LVs left: {:?}",
        dm_names()
    );
    let r = executor::remove::remove(
        &executor::sysfs::Root::host(),
        &format!("/dev/{map}"),
        &Default::default(),
    )
    .unwrap_or_else(|e| panic!("remove-device of the clone's map: {e}"));
    assert!(r.map_removed.is_some(), "{r:?}");
    for p in &paths {
        assert!(!Path::new("/sys/block").join(p).exists(), "path {p} left");
    }
    rig.disks.retain(|d| !paths.iter().any(|p| d.ends_with(p)));
    assert_eq!(
        dm_names(),
        dm_before,
        "dm devices after the clone's teardown"
    );
    assert_eq!(host_vgs(false), vgs_before);
    assert_eq!(
        seqno(&gold_p2),
        gold_seq,
        "seqno of vg_gold on the gold's map"
    );

    // The gold: unmounted, its map removed the same way.
    gm(&["unmount", "--volume", "gold"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(mounts_under(&root).is_empty(), "{:?}", mounts_under(&root));
    let r = executor::remove::remove(
        &executor::sysfs::Root::host(),
        &format!("/dev/{gold_map}"),
        &Default::default(),
    )
    .unwrap_or_else(|e| panic!("remove-device of the gold's map: {e}"));
    assert!(r.map_removed.is_some(), "{r:?}");
    rig.disks.clear();
    rig.retire("mc1");
    drop(st);
    drop(vols);
    drop(rig);
    drop(xfs);
}

/// Kernel names of what is stacked on `dev` (its `holders`).
fn holders_of(dev: &str) -> Vec<String> {
    stack_links(dev, "holders")
}

/// Scenario 4: a clone whose LVM metadata text is zeroed (the mda header's
/// checksum no longer matches): the ext4 partition next to it mounts, the
/// manifest says why the VG was skipped, and no dm device is created.
#[test]
#[ignore = "needs the lab kernel"]
fn mount_clone_with_corrupt_lvm_metadata() {
    let scratch = require_lab();
    let root = gm_env(&scratch);
    let xfs = ReflinkXfs::create(&scratch, 1536);
    let mut rig = Rig::start(&scratch, &xfs, 8484, "e2e-corrupt");
    let vols = Volumes::new();
    let (img, mda_off, mda_size) = build_lvm_gold(&xfs.mnt);
    rig.import_gold("gold", &img);
    let (lun, wwn, file) = rig.clone_and_present("bad", "gold");
    // Zero the metadata text area of the clone (after the 512-byte mda header).
    let f = fs::OpenOptions::new().write(true).open(&file).unwrap();
    std::os::unix::fs::FileExt::write_all_at(
        &f,
        &vec![0u8; (mda_size - 512) as usize],
        P2_OFFSET + mda_off + 512,
    )
    .unwrap();
    f.sync_all().unwrap();
    drop(f);
    let dev = rig.attach(&[(lun, &wwn)]).remove(0);
    let dm_before = dm_names();
    vols.add("bad");
    let m = gm_mount("bad", &[&wwn]);
    let skipped = m["skipped"].as_array().unwrap();
    let lvm_skip = skipped
        .iter()
        .find(|s| s["what"] == "LVM2_member")
        .unwrap_or_else(|| panic!("no skipped LVM2_member entry: {m}"));
    let reason = lvm_skip["reason"].as_str().unwrap();
    eprintln!("skipped VG: {reason}");
    assert!(
        reason.contains("nothing was activated"),
        "reason should say nothing was activated: {reason}"
    );
    assert!(
        reason.to_lowercase().contains("crc") || reason.to_lowercase().contains("checksum"),
        "reason should name the checksum failure: {reason}"
    );
    assert!(
        dm_on_disk(&dev).is_empty(),
        "dm device on the corrupt clone"
    );
    assert_eq!(dm_names(), dm_before);
    // What is not on LVM still mounts (flat: no fstab is reachable).
    let types: Vec<&str> = m["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|mi| mi["fs_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, vec!["ext4", "ext4"], "{m}");
    gm(&["unmount", "--volume", "bad"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(mounts_under(&root).is_empty());
    rig.detach(&dev, "bad");
    drop(vols);
    drop(rig);
    drop(xfs);
}

/// Scenario 5 (benchmark): time from "device present" (every clone's disk and
/// udev link exist) to "all mounted" for the three-filesystem LVM clone, with
/// 1, 3 and 8 concurrent `goldmount mount` processes, the live gold mounted
/// (so every clone is renamed and its XFS mounted nouuid). Prints a table.
#[test]
#[ignore = "needs the lab kernel"]
fn scale_bench_concurrent_lvm_clones() {
    let scratch = require_lab();
    let root = gm_env(&scratch);
    let xfs = ReflinkXfs::create(&scratch, 1536);
    let mut rig = Rig::start(&scratch, &xfs, 8485, "e2e-bench");
    let vols = Volumes::new();
    let st = lvm_stage(&scratch, &xfs, &mut rig, &vols, &root);
    let rounds: Vec<usize> = std::env::var("GOLDMOUNT_LAB_BENCH_N")
        .ok()
        .map(|s| s.split(',').map(|n| n.parse().unwrap()).collect())
        .unwrap_or_else(|| vec![1, 3, 8]);
    let mut rows = Vec::new();
    for n in rounds {
        let mut present = Vec::new();
        for i in 0..n {
            let c = format!("b{n}x{i}");
            let (lun, wwn, _) = rig.clone_and_present(&c, "gold");
            present.push((c, lun, wwn));
        }
        let luns: Vec<(u32, &str)> = present.iter().map(|(_, l, w)| (*l, w.as_str())).collect();
        let devs = rig.attach(&luns);
        for (c, _, _) in &present {
            vols.add(c);
        }
        let jobs: Vec<(String, String)> = present
            .iter()
            .map(|(c, _, w)| (c.clone(), w.clone()))
            .collect();
        let t = Instant::now();
        let res = mount_concurrently(&jobs);
        let total = t.elapsed().as_secs_f64();
        for (m, _) in &res {
            assert_eq!(by_original(m).len(), 4, "{m}");
        }
        let mut per: Vec<f64> = res.iter().map(|r| r.1).collect();
        per.sort_by(f64::total_cmp);
        rows.push((n, total, per[per.len() / 2], per[per.len() - 1]));
        eprintln!("bench n={n}: total {total:.1}s, per process {per:?}");
        for (c, _, _) in &present {
            gm(&["unmount", "--volume", c]).unwrap_or_else(|e| panic!("{e}"));
        }
        for ((c, _, _), dev) in present.iter().zip(&devs) {
            rig.detach(dev, c);
        }
    }
    let mut table = String::from(
        "| concurrent clones | device present → all mounted (s) | median per process (s) | max per process (s) | total / n (s) |\n|---:|---:|---:|---:|---:|\n",
    );
    for (n, total, med, max) in &rows {
        table.push_str(&format!(
            "| {n} | {total:.1} | {med:.1} | {max:.1} | {:.1} |\n",
            total / *n as f64
        ));
    }
    eprintln!("\n===== lab_mount bench (QEMU TCG, 2 vCPU) =====\n{table}");
    gm(&["unmount", "--volume", "gold"]).unwrap_or_else(|e| panic!("{e}"));
    gm(&["guard", "remove"]).unwrap_or_else(|e| panic!("{e}"));
    drop(st);
    drop(vols);
    drop(rig);
    drop(xfs);
}
