//! The reader and the orchestration against real lvm2 2.03 on loop devices.
//! This machine's kernel has no device-mapper, so lvm2 runs with
//! `--driverloaded n`: metadata is written and rewritten for real (pvcreate,
//! vgcreate, lvcreate, vgimportclone, lvmdevices), activation is covered by
//! the lab (tests/tests/lab_lvm.rs). Needs root, losetup and lvm2; a missing
//! tool fails the test loudly with its package name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use lvm::metadata::SegmentKind;
use lvm::{plan_devices, read_pv, ImportOptions, Lvm, LvmError};

fn need(tool: &str, package: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "{tool} is missing: apt-get install -y {package}");
}

fn sh(prog: &str, args: &[&str]) -> String {
    let o = Command::new(prog)
        .args(args)
        .env("LVM_SUPPRESS_FD_WARNINGS", "1")
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    assert!(
        o.status.success(),
        "{prog} {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A loop device over a sparse file, detached on drop.
struct Loop {
    dev: PathBuf,
    file: PathBuf,
}

impl Loop {
    fn new(file: &Path, size: u64) -> Loop {
        if !file.exists() {
            fs::File::create(file).unwrap().set_len(size).unwrap();
        }
        let dev = sh("losetup", &["-f", "--show", file.to_str().unwrap()]);
        Loop {
            dev: PathBuf::from(dev.trim()),
            file: file.to_path_buf(),
        }
    }
    fn s(&self) -> &str {
        self.dev.to_str().unwrap()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

fn lvm(args: &[&str]) -> String {
    let mut v = vec![args[0], "--driverloaded", "n"];
    v.extend_from_slice(&args[1..]);
    sh("lvm", &v)
}

fn host_lvm() -> Lvm {
    Lvm {
        driver_loaded: false,
        ..Lvm::default()
    }
}

fn setup() -> tempfile::TempDir {
    need("losetup", "mount");
    need("lvm", "lvm2");
    tempfile::tempdir().unwrap()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

/// Builds a two-PV VG with a linear and a striped LV; returns the loops.
fn two_pv_vg(dir: &Path, vg: &str) -> (Loop, Loop) {
    let a = Loop::new(&dir.join("a.img"), 64 << 20);
    let b = Loop::new(&dir.join("b.img"), 64 << 20);
    let devs = format!("{},{}", a.s(), b.s());
    lvm(&["pvcreate", "-q", "--devices", &devs, a.s(), b.s()]);
    lvm(&["vgcreate", "-q", "--devices", &devs, vg, a.s(), b.s()]);
    lvm(&[
        "lvcreate",
        "-q",
        "--devices",
        &devs,
        "-an",
        "-Zn",
        "-L",
        "8M",
        "-n",
        "root",
        vg,
        a.s(),
    ]);
    lvm(&[
        "lvcreate",
        "-q",
        "--devices",
        &devs,
        "-an",
        "-Zn",
        "-i",
        "2",
        "-I",
        "64k",
        "-L",
        "16M",
        "-n",
        "data",
        vg,
    ]);
    (a, b)
}

#[test]
fn reader_matches_lvm2_reports_and_backup_text() {
    let dir = setup();
    let vg = format!("vg_rd{}", std::process::id());
    let (a, b) = two_pv_vg(dir.path(), &vg);
    let devs = format!("{},{}", a.s(), b.s());
    let report = json(&lvm(&[
        "vgs",
        "--devices",
        &devs,
        "--reportformat",
        "json",
        "-o",
        "vg_uuid,vg_seqno",
        &vg,
    ]));
    let row = &report["report"][0]["vg"][0];
    let lvs = json(&lvm(&[
        "lvs",
        "--devices",
        &devs,
        "--reportformat",
        "json",
        "-o",
        "lv_name,lv_uuid,stripes",
        &vg,
    ]));
    let pvs = json(&lvm(&[
        "pvs",
        "--devices",
        &devs,
        "--reportformat",
        "json",
        "-o",
        "pv_name,pv_uuid",
    ]));

    for l in [&a, &b] {
        let pv = read_pv(&fsdetect::FileSource::open(&l.dev).unwrap()).unwrap();
        let want_uuid = pvs["report"][0]["pv"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pv_name"] == l.s())
            .unwrap()["pv_uuid"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(pv.uuid(), want_uuid);
        assert_eq!(pv.label.device_size, 64 << 20);
        let m = pv.metadata.unwrap();
        assert_eq!(m.name, vg);
        assert_eq!(m.id, row["vg_uuid"].as_str().unwrap());
        assert_eq!(m.seqno.to_string(), row["vg_seqno"].as_str().unwrap());
        assert_eq!(m.extent_size, 8192);
        assert_eq!(m.pvs.len(), 2);
        for want in lvs["report"][0]["lv"].as_array().unwrap() {
            let name = want["lv_name"].as_str().unwrap();
            let got = m.lvs.iter().find(|l| l.name == name).unwrap();
            assert_eq!(got.id, want["lv_uuid"].as_str().unwrap());
            assert!(got.visible && got.unsupported.is_none());
            let SegmentKind::Striped { stripes, .. } = &got.segments[0].kind else {
                panic!("{name} not striped");
            };
            assert_eq!(stripes.len().to_string(), want["stripes"].as_str().unwrap());
        }
    }

    // The same text through vgcfgbackup parses to the same model.
    let backup = dir.path().join("backup");
    lvm(&[
        "vgcfgbackup",
        "-q",
        "--devices",
        &devs,
        "-f",
        backup.to_str().unwrap(),
        &vg,
    ]);
    let from_backup = lvm::parse_metadata_text(&fs::read_to_string(&backup).unwrap()).unwrap();
    let from_disk = read_pv(&fsdetect::FileSource::open(&a.dev).unwrap())
        .unwrap()
        .metadata
        .unwrap();
    assert_eq!(from_backup.lvs, from_disk.lvs);
    assert_eq!(from_backup.seqno, from_disk.seqno);

    // Planning: both present → complete; one missing → named.
    let plan = plan_devices(&[a.dev.clone(), b.dev.clone()]).unwrap();
    assert_eq!(plan.vgs.len(), 1);
    assert!(plan.vgs[0].missing.is_empty());
    let b_uuid = read_pv(&fsdetect::FileSource::open(&b.dev).unwrap())
        .unwrap()
        .uuid()
        .to_string();
    let plan = plan_devices(std::slice::from_ref(&a.dev)).unwrap();
    assert_eq!(plan.vgs[0].missing, vec![b_uuid.clone()]);
    let e = plan.vgs[0].require_complete().unwrap_err();
    assert!(e.to_string().contains(&b_uuid), "{e}");
    let e = host_lvm()
        .import_clone(std::slice::from_ref(&a.dev), "x")
        .unwrap_err();
    assert!(matches!(e, LvmError::MissingPvs { .. }), "{e}");
}

#[test]
fn second_metadata_area_survives_a_zeroed_first_and_zeroed_all_is_an_error() {
    let dir = setup();
    let vg = format!("vg_mda{}", std::process::id());
    let a = Loop::new(&dir.path().join("a.img"), 64 << 20);
    lvm(&[
        "pvcreate",
        "-q",
        "--devices",
        a.s(),
        "--pvmetadatacopies",
        "2",
        a.s(),
    ]);
    lvm(&["vgcreate", "-q", "--devices", a.s(), &vg, a.s()]);
    let pv = read_pv(&fsdetect::FileSource::open(&a.dev).unwrap()).unwrap();
    assert_eq!(pv.label.metadata_areas.len(), 2);
    let seqno = pv.metadata.unwrap().seqno;
    drop(a);
    // Zero the first area's text region (after its 512-byte header).
    let img = dir.path().join("a.img");
    let f = fs::OpenOptions::new().write(true).open(&img).unwrap();
    let first = pv.label.metadata_areas[0];
    std::os::unix::fs::FileExt::write_all_at(
        &f,
        &vec![0u8; (first.size - 512) as usize],
        first.offset + 512,
    )
    .unwrap();
    let pv2 = read_pv(&fsdetect::FileSource::open(&img).unwrap()).unwrap();
    assert_eq!(pv2.metadata.unwrap().seqno, seqno);
    assert!(pv2.mdas[0].problem.as_deref().unwrap().contains("bad crc"));
    let second = pv.label.metadata_areas[1];
    std::os::unix::fs::FileExt::write_all_at(
        &f,
        &vec![0u8; (second.size - 512) as usize],
        second.offset + 512,
    )
    .unwrap();
    let e = read_pv(&fsdetect::FileSource::open(&img).unwrap()).unwrap_err();
    assert!(
        matches!(
            e,
            LvmError::BadCrc {
                what: "metadata text",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn import_clone_renames_with_vgimportclone_and_leaves_the_gold_alone() {
    let dir = setup();
    let vg = format!("vg_imp{}", std::process::id());
    let (a, b) = two_pv_vg(dir.path(), &vg);
    let gold_before: Vec<_> = [&a, &b]
        .iter()
        .map(|l| fs::read(&l.file).unwrap())
        .collect();
    let gold_seqno = read_pv(&fsdetect::FileSource::open(&a.dev).unwrap())
        .unwrap()
        .metadata
        .unwrap()
        .seqno;
    fs::copy(&a.file, dir.path().join("ca.img")).unwrap();
    fs::copy(&b.file, dir.path().join("cb.img")).unwrap();
    let ca = Loop::new(&dir.path().join("ca.img"), 0);
    let cb = Loop::new(&dir.path().join("cb.img"), 0);
    let clone = vec![ca.dev.clone(), cb.dev.clone()];

    let l = host_lvm();
    let opts = ImportOptions {
        volume: "c1".into(),
        skip_activation: true,
        ..ImportOptions::default()
    };
    let imp = l.import_clone_with(&clone, &opts).unwrap();
    assert_eq!(imp.original_name, vg);
    assert_eq!(imp.name, format!("{vg}_c1"));
    assert!(imp.renamed, "{imp:?}");
    assert_ne!(imp.uuid, imp.original_uuid);
    let names: Vec<_> = imp.lvs.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["root", "data"]);
    assert_eq!(
        imp.lvs[0].dm_path,
        PathBuf::from(format!("/dev/mapper/{vg}_c1-root"))
    );

    // The clone's PVs got new UUIDs; the gold's bytes did not change at all.
    let ca_pv = read_pv(&fsdetect::FileSource::open(&ca.dev).unwrap()).unwrap();
    let a_pv = read_pv(&fsdetect::FileSource::open(&a.dev).unwrap()).unwrap();
    assert_ne!(ca_pv.uuid(), a_pv.uuid());
    assert_eq!(a_pv.metadata.unwrap().seqno, gold_seqno);
    for (l, before) in [&a, &b].iter().zip(&gold_before) {
        assert!(fs::read(&l.file).unwrap() == *before, "gold image changed");
    }

    // Idempotent: a second import finds the VG already under its name.
    let again = l.import_clone_with(&clone, &opts).unwrap();
    assert_eq!(again.name, imp.name);
    assert!(!again.renamed);

    // A second clone cannot take the first one's name.
    fs::copy(&a.file, dir.path().join("da.img")).unwrap();
    fs::copy(&b.file, dir.path().join("db.img")).unwrap();
    let da = Loop::new(&dir.path().join("da.img"), 0);
    let db = Loop::new(&dir.path().join("db.img"), 0);
    let e = l
        .import_clone_with(
            &[da.dev.clone(), db.dev.clone()],
            &ImportOptions {
                new_name: Some(imp.name.clone()),
                skip_activation: true,
                ..ImportOptions::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, LvmError::NameTaken { .. }), "{e}");
    // ...and only one of its two devices is a partial VG.
    let e = l
        .import_clone(std::slice::from_ref(&da.dev), "c2")
        .unwrap_err();
    assert!(matches!(e, LvmError::MissingPvs { .. }), "{e}");
}

#[test]
fn guard_installs_lists_only_host_pvs_and_removes_exactly() {
    let dir = setup();
    let vg = format!("vg_grd{}", std::process::id());
    let a = Loop::new(&dir.path().join("a.img"), 64 << 20);
    lvm(&["pvcreate", "-q", "--devices", a.s(), a.s()]);
    lvm(&["vgcreate", "-q", "--devices", a.s(), &vg, a.s()]);
    fs::copy(&a.file, dir.path().join("c.img")).unwrap();
    let c = Loop::new(&dir.path().join("c.img"), 0);

    // A private LVM system dir whose filter sees only these two loops.
    let sys = dir.path().join("etc-lvm");
    fs::create_dir_all(&sys).unwrap();
    let conf = fs::read_to_string("/etc/lvm/lvm.conf").unwrap().replacen(
        "devices {",
        &format!(
            "devices {{\n\tfilter = [ \"a|^{}$|\", \"a|^{}$|\", \"r|.*|\" ]",
            a.s(),
            c.s()
        ),
        1,
    );
    fs::write(sys.join("lvm.conf"), &conf).unwrap();
    let l = Lvm {
        system_dir: Some(sys.clone()),
        driver_loaded: false,
        ..Lvm::default()
    };
    let st = l.check_autoactivation_guard(&[]).unwrap();
    assert!(!st.installed && !st.use_devicesfile, "{st:?}");

    // Without the clone excluded, the duplicate PV is refused.
    let e = l.install_autoactivation_guard(&[]).unwrap_err();
    assert!(e.to_string().contains("more than one device"), "{e}");
    assert_eq!(fs::read_to_string(sys.join("lvm.conf")).unwrap(), conf);

    let st = l
        .install_autoactivation_guard(std::slice::from_ref(&c.dev))
        .unwrap();
    assert!(
        st.installed && st.use_devicesfile && st.set_by_goldmount,
        "{st:?}"
    );
    let a_pvid = read_pv(&fsdetect::FileSource::open(&a.dev).unwrap())
        .unwrap()
        .uuid()
        .replace('-', "");
    assert_eq!(st.listed_pvids, vec![a_pvid]);
    // The host view now has the gold PV only; the clone is invisible.
    let seen: Vec<String> = l
        .host_pvs()
        .unwrap()
        .into_iter()
        .map(|r| r.pv_name)
        .collect();
    assert_eq!(seen, vec![a.s().to_string()]);
    // Idempotent.
    assert!(
        l.install_autoactivation_guard(std::slice::from_ref(&c.dev))
            .unwrap()
            .installed
    );

    let st = l.remove_autoactivation_guard().unwrap();
    assert!(!st.installed && !st.use_devicesfile, "{st:?}");
    assert_eq!(fs::read_to_string(sys.join("lvm.conf")).unwrap(), conf);
    assert!(!sys.join("devices/system.devices").exists());
    assert!(sys
        .join("devices/system.devices.goldmount-removed")
        .exists());
}
