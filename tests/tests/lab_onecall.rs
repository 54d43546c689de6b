//! Issue 10 §4 in the lab guest — "one API call and the copy appears
//! mounted moments later": the reference appliance (iSCSI backend on LIO)
//! and goldmountd (binary from `GOLDMOUNTD_BIN`, certificates from
//! `goldmount certs init`) both run in the guest; one `POST /v1/mounts`
//! clones a three-filesystem LVM gold copy, presents the clone and has
//! goldmountd log in, scan exactly that LUN, import the clone's VG safely,
//! mount the original fstab tree and publish it. Run with
//! `cargo xtask lab lab_onecall`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use appliance::lio::{Lio, LioConfig};
use goldmount_tests::lab::*;
use serde_json::{json, Value};

const PORTAL: &str = "127.0.0.1:3260";
const APPLIANCE_LISTEN: &str = "127.0.0.1:8495";
const CONNECTOR_LISTEN: &str = "127.0.0.1:8496";
/// Every HTTP call of the scenario is bounded by this (the appliance's
/// own mount deadline is shorter).
const CALL_TIMEOUT: Duration = Duration::from_secs(330);
const MIB: u64 = 1 << 20;
const BOOT_UUID: &str = "3f0e6a56-2a8d-4c55-9a0b-5d3c1e2f4a10";

// ---------------------------------------------------------------- the gold copy

/// Deterministic pseudo-random bytes (xorshift).
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

fn lvm(args: &[&str]) -> String {
    run("lvm", args)
}

fn wait_path(p: &Path) {
    wait_until(&p.display().to_string(), Duration::from_secs(30), || {
        p.exists().then_some(())
    });
}

/// The gold host's disk (as in lab_mount): GPT; p1 ext4 /boot, p2 LVM PV of
/// `vg_gold` {root xfs with /etc/fstab, home ext4}, p3 ext4 LABEL=data.
fn build_lvm_gold(dir: &Path) -> PathBuf {
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
    let l = run("losetup", &["-f", "-P", "--show", img.to_str().unwrap()])
        .trim()
        .to_string();
    let _ = try_run("udevadm", &["settle", "-t", "10"], CMD_TIMEOUT);
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
    run("losetup", &["-d", &l]);
    run("sync", &[]);
    img
}

// ---------------------------------------------------------------- host facts

/// Mount points at or under `root`.
fn mounts_under(root: &Path) -> Vec<String> {
    let r = root.to_string_lossy().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| *m == r || m.starts_with(&format!("{r}/")))
        .collect()
}

/// Names from `dmsetup ls`.
fn dm_names() -> Vec<String> {
    let out = run("dmsetup", &["ls"]);
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| !l.contains("No devices found"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    v.sort();
    v
}

fn has_session(iqn: &str) -> bool {
    !session_scsi_addresses(iqn).is_empty()
}

// ---------------------------------------------------------------- goldmountd

/// `goldmountd --config FILE` (binary from `GOLDMOUNTD_BIN`), killed on drop
/// (after whatever a failed scenario left is force-unmounted through it).
struct Goldmountd {
    child: Option<Child>,
    log: PathBuf,
}

impl Goldmountd {
    fn start(config: &Path, log: &Path) -> Self {
        let bin = std::env::var("GOLDMOUNTD_BIN").expect("GOLDMOUNTD_BIN (set by cargo xtask lab)");
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(&bin)
            .args(["--config", config.to_str().unwrap(), "serve"])
            .env("GOLDMOUNT_LOG", "debug")
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {bin}: {e}"));
        let mut me = Goldmountd {
            child: Some(child),
            log: log.to_path_buf(),
        };
        wait_until("goldmountd listening", Duration::from_secs(60), || {
            if let Some(Ok(Some(st))) = me.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "goldmountd exited early ({st}); log:\n{}",
                    fs::read_to_string(&me.log).unwrap_or_default()
                );
            }
            std::net::TcpStream::connect(CONNECTOR_LISTEN)
                .ok()
                .map(|_| ())
        });
        me
    }
}

impl Drop for Goldmountd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        eprintln!(
            "----- goldmountd log ({}) -----\n{}",
            self.log.display(),
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

// ---------------------------------------------------------------- the appliance API

/// Raw calls to the appliance with its token: (status, JSON body).
struct Api {
    base: String,
    auth: String,
    agent: ureq::Agent,
}

impl Api {
    /// The token file [`ApplianceProc::start`] wrote beside `log`.
    fn new(base: &str, log: &Path) -> Self {
        let stem = log.file_name().unwrap().to_string_lossy().into_owned();
        let stem = stem
            .rsplit_once('.')
            .map_or(stem.clone(), |(s, _)| s.to_string());
        let token_file = fs::read_dir(log.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{stem}.token-"))
            })
            .expect("the appliance's token file");
        let token = fs::read_to_string(token_file).unwrap().trim().to_string();
        Api {
            base: base.to_string(),
            auth: format!("Bearer {token}"),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(10))
                .timeout(CALL_TIMEOUT)
                .build(),
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let r = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &self.auth);
        let res = match body {
            Some(b) => r.send_json(b.clone()),
            None => r.call(),
        };
        let resp = match res {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = resp.status();
        let text = resp.into_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `POST /v1/mounts`, timed.
    fn mount(&self, body: &Value) -> (u16, Value, Duration) {
        let t = Instant::now();
        let (s, v) = self.call("POST", "/v1/mounts", Some(body));
        (s, v, t.elapsed())
    }
}

/// Whatever a failed scenario left mounted through the appliance goes first
/// (forced), then the session and LIO.
struct Cleanup<'a> {
    api: &'a Api,
    lio: Lio,
    iqn: String,
    initiator: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let (200, Value::Array(ms)) = self.api.call("GET", "/v1/mounts", None) {
            for m in ms {
                if let Some(v) = m["volume"].as_str() {
                    let r = self
                        .api
                        .call("DELETE", &format!("/v1/mounts/{v}?force=true"), None);
                    eprintln!("cleanup: DELETE /v1/mounts/{v}?force=true -> {r:?}");
                }
            }
        }
        if let (200, Value::Array(ps)) = self.api.call("GET", "/v1/presentations", None) {
            for p in ps {
                if let Some(c) = p["clone"].as_str() {
                    let _ =
                        self.api
                            .call("DELETE", &format!("/v1/presentations/{c}?force=true"), None);
                }
            }
        }
        logout(&self.iqn, PORTAL);
        wipe_lio(&self.lio, std::slice::from_ref(&self.initiator));
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn print_timing(what: &str, wall: Duration, m: &Value) {
    let t = &m["timings"];
    eprintln!(
        "TIMING {what}: wall {} ms = clone {} ms + present {} ms + connector PUT {} ms \
         (appliance total {} ms)",
        ms(wall),
        t["clone_ms"],
        t["present_ms"],
        t["connector_ms"],
        t["total_ms"]
    );
}

/// Scenario: one `POST /v1/mounts` → the LVM gold copy's clone mounted at a
/// path with the original fstab tree; the same call again → 200, the same
/// answer; a second volume of another clone shares the iSCSI session; a
/// clone presented to a host whose initiator is not this one never appears
/// → 502 naming the WWN, nothing left; the first `DELETE /v1/mounts` keeps
/// the session, the last logs out; nothing left on the host.
#[test]
#[ignore = "needs the lab kernel"]
fn one_call_mounts_the_lvm_gold_fstab_tree_and_deletes_everything() {
    let scratch = require_lab();
    std::env::set_var("LVM_SUPPRESS_FD_WARNINGS", "1");
    let dm_before = dm_names();
    let xfs = ReflinkXfs::create(&scratch, 1024);
    let t = Instant::now();
    let img = build_lvm_gold(&xfs.mnt);
    eprintln!("gold built in {} ms", ms(t.elapsed()));

    // Certificates and goldmountd.
    let pki = scratch.join("pki");
    let out = run(
        &std::env::var("GOLDMOUNT_BIN").expect("GOLDMOUNT_BIN (set by cargo xtask lab)"),
        &["certs", "init", pki.to_str().unwrap()],
    );
    eprintln!("{out}");
    let host_dir = scratch.join("host");
    fs::create_dir_all(&host_dir).unwrap();
    let config = scratch.join("goldmountd.toml");
    fs::write(
        &config,
        format!(
            "[control]\nlisten = \"{CONNECTOR_LISTEN}\"\ncert = \"{p}/server.pem\"\n\
             key = \"{p}/server-key.pem\"\nclient_ca = \"{p}/ca.pem\"\n\
             client_subject = \"goldmount-appliance\"\n\
             [engine]\nvolumes_root = \"{h}/volumes\"\nstate_path = \"{h}/state/state.redb\"\n\
             run_dir = \"{h}/run\"\n[log]\nlevel = \"info\"\n",
            p = pki.display(),
            h = host_dir.display()
        ),
    )
    .unwrap();
    let daemon = Goldmountd::start(&config, &scratch.join("goldmountd.log"));

    // The appliance: iSCSI on LIO, its client certificate for goldmountd.
    let iqn = "iqn.2026-12.io.goldmount.lab:onecall".to_string();
    let initiator = initiator_iqn();
    let data = xfs.mnt.join("data");
    let app_log = scratch.join("appliance.log");
    let app = ApplianceProc::start(
        APPLIANCE_LISTEN,
        &[
            "--backend",
            "iscsi",
            "--data-dir",
            data.to_str().unwrap(),
            "--import-from",
            xfs.mnt.to_str().unwrap(),
            "--target-iqn",
            &iqn,
            "--portal",
            PORTAL,
            "--client-cert",
            pki.join("client.pem").to_str().unwrap(),
            "--client-key",
            pki.join("client-key.pem").to_str().unwrap(),
            "--mount-deadline-secs",
            "240",
            "--lun-wait-secs",
            "20",
        ],
        &app_log,
    );
    let api = Api::new(&app.base, &app_log);
    let _cleanup = Cleanup {
        api: &api,
        lio: Lio::new(LioConfig::new(&iqn, vec![PORTAL.parse().unwrap()])),
        iqn: iqn.clone(),
        initiator: initiator.clone(),
    };
    let ca = fs::read_to_string(pki.join("ca.pem")).unwrap();
    let callback = format!("https://{CONNECTOR_LISTEN}");
    let (s, h) = api.call(
        "PUT",
        "/v1/hosts/labhost",
        Some(&json!({"iqns": [initiator], "callback_url": callback, "callback_ca_pem": ca})),
    );
    assert_eq!(s, 201, "{h}");
    let (s, g) = api.call(
        "POST",
        "/v1/gold-copies",
        Some(&json!({"name": "pg-gold", "source": img})),
    );
    assert_eq!(s, 201, "{g}");
    assert!(!has_session(&iqn), "no session before the first mount");

    // One call: mounted at the path with the original fstab tree.
    let media = scratch.join("media");
    let path1 = media.join("pgsql1");
    let req1 = json!({"gold": "pg-gold", "host": "labhost", "volume": "pgsql1", "path": path1});
    let (s, m1, wall) = api.mount(&req1);
    assert_eq!(s, 201, "{m1:#}");
    print_timing(
        "POST /v1/mounts pgsql1 (login + scan + LVM import + 4 mounts + publish)",
        wall,
        &m1,
    );
    eprintln!("answer pgsql1: {m1}");
    assert_eq!(m1["manifest"]["layout"], "fstab", "{m1}");
    let mut originals: Vec<String> = m1["manifest"]["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["original_mountpoint"].as_str().map(str::to_string))
        .collect();
    originals.sort();
    assert_eq!(originals, ["/", "/boot", "/home", "/srv/data"], "{m1}");
    assert_eq!(m1["publication"]["target"], path1.to_str().unwrap());
    assert_eq!(
        fs::read_to_string(path1.join("etc/fstab")).unwrap(),
        gold_fstab()
    );
    for (rel, data) in gold_files() {
        assert!(
            fs::read(path1.join(rel)).unwrap() == data,
            "{rel} differs from the gold copy"
        );
    }
    let wwn1 = m1["presentation"]["wwn"].as_str().unwrap().to_string();
    let disk1 = disk_with_wwid(&wwn1).expect("pgsql1's disk");
    assert!(has_session(&iqn), "goldmountd logged in");

    // The same call again: 200 and the same answer.
    let (s, again, wall) = api.mount(&req1);
    assert_eq!((s, &again), (200, &m1));
    eprintln!("TIMING repeated POST /v1/mounts pgsql1: {} ms", ms(wall));

    // A second volume of another clone of the same gold, same target.
    let req2 = json!({"gold": "pg-gold", "host": "labhost", "volume": "pgsql2"});
    let (s, m2, wall) = api.mount(&req2);
    assert_eq!(s, 201, "{m2:#}");
    print_timing("POST /v1/mounts pgsql2 (session shared)", wall, &m2);
    let tree2 = PathBuf::from(m2["manifest"]["path"].as_str().unwrap());
    for (rel, data) in gold_files() {
        assert!(fs::read(tree2.join(rel)).unwrap() == data, "pgsql2: {rel}");
    }
    assert_eq!(session_scsi_addresses(&iqn).len(), 1, "one shared session");
    let wwn2 = m2["presentation"]["wwn"].as_str().unwrap().to_string();
    let disk2 = disk_with_wwid(&wwn2).expect("pgsql2's disk");

    // A clone presented to another host's initiator never appears on this
    // one: the connector's error names the WWN; the appliance undoes.
    let (s, h) = api.call(
        "PUT",
        "/v1/hosts/ghost",
        Some(&json!({"iqns": ["iqn.2026-12.io.goldmount.lab:ghost"],
                     "callback_url": callback, "callback_ca_pem": ca})),
    );
    assert_eq!(s, 201, "{h}");
    let (s, e, wall) = api.mount(&json!({"gold": "pg-gold", "host": "ghost", "volume": "ghost1"}));
    eprintln!("LUN never appears: {s} in {} ms: {e:#}", ms(wall));
    assert_eq!(
        (s, e["code"].as_str()),
        (502, Some("connector_failed")),
        "{e}"
    );
    let body = &e["connector_failure"]["connector"]["body"];
    let msg = body["message"].as_str().unwrap_or_default();
    let (s, clones) = api.call("GET", "/v1/clones", None);
    assert_eq!(s, 200);
    assert_eq!(
        clones.as_array().unwrap().len(),
        2,
        "the ghost clone is deleted again: {clones}"
    );
    assert_eq!(e["connector_failure"]["left"], json!([]), "{e}");
    let (s, p) = api.call("GET", "/v1/presentations/ghost1", None);
    assert_eq!(s, 404, "{p}");
    assert!(
        msg.contains("naa.6001405"),
        "the connector's error names the WWN: {msg}"
    );
    assert!(has_session(&iqn), "the shared session is untouched");

    // Unmount: in use (a file held open through the publication) it is
    // refused by the connector (409 naming the holder, nothing undone);
    // released, a plain DELETE takes the first down, the session stays.
    let held = fs::File::open(path1.join("etc/fstab")).unwrap();
    let (s, r) = api.call("DELETE", "/v1/mounts/pgsql1", None);
    eprintln!("DELETE pgsql1 in use: {s} {r}");
    assert_eq!((s, r["code"].as_str()), (409, Some("conflict")), "{r}");
    assert!(path1.join("etc/fstab").exists(), "nothing undone");
    drop(held);
    let t = Instant::now();
    let (s, r) = api.call("DELETE", "/v1/mounts/pgsql1", None);
    assert_eq!(s, 200, "{r}");
    eprintln!(
        "TIMING DELETE /v1/mounts/pgsql1: {} ms; {r}",
        ms(t.elapsed())
    );
    assert!(
        !Path::new("/sys/block").join(&disk1).exists(),
        "pgsql1's disk is gone"
    );
    assert!(disk_with_wwid(&wwn1).is_none());
    assert!(has_session(&iqn), "pgsql2 still uses the session");
    assert!(
        mounts_under(&path1).is_empty(),
        "{:?}",
        mounts_under(&path1)
    );

    let t = Instant::now();
    let (s, r) = api.call("DELETE", "/v1/mounts/pgsql2", None);
    assert_eq!(s, 200, "{r}");
    eprintln!(
        "TIMING DELETE /v1/mounts/pgsql2: {} ms; {r}",
        ms(t.elapsed())
    );
    assert!(
        !Path::new("/sys/block").join(&disk2).exists(),
        "pgsql2's disk is gone"
    );
    assert!(!has_session(&iqn), "the last unmount logged out");

    // Nothing left.
    for w in [&wwn1, &wwn2] {
        assert!(disk_with_wwid(w).is_none(), "{w} left behind");
    }
    assert_eq!(
        lio_disks(),
        Vec::<(String, String)>::new(),
        "LIO disks left"
    );
    assert_eq!(dm_names(), dm_before, "dm devices left");
    assert!(
        mounts_under(&host_dir).is_empty(),
        "{:?}",
        mounts_under(&host_dir)
    );
    assert!(
        mounts_under(&media).is_empty(),
        "{:?}",
        mounts_under(&media)
    );
    for p in ["/v1/mounts", "/v1/presentations", "/v1/clones"] {
        let (s, v) = api.call("GET", p, None);
        assert_eq!((s, v.clone()), (200, json!([])), "{p}: {v}");
    }
    drop(_cleanup);
    drop(app);
    drop(daemon);
    drop(xfs);
}
