//! Issue 10's benchmark in the lab guest: one `POST /v1/mounts` → the LVM
//! gold copy's fstab tree mounted, per stage, next to the floor — the same
//! kernel steps run by hand (`iscsiadm` login, a targeted sysfs scan, wait
//! for the disk, `vgimportclone`, `vgchange -ay`, four `mount`s) on another
//! clone of the same gold in the same boot; a 1 GiB vs a 1 TiB (sparse)
//! gold; 8 one-call mounts at once. Release builds of the appliance and
//! goldmountd (`*_RELEASE_BIN`, set by `cargo xtask lab --bench`).
//! Figures are printed as `BENCH` lines into the scenario log. Run with
//! `cargo xtask lab --bench lab_bench_onecall`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use appliance::lio::{Lio, LioConfig};
use goldmount_tests::lab::*;
use serde_json::{json, Value};

const PORTAL: &str = "127.0.0.1:3260";
const APPLIANCE_LISTEN: &str = "127.0.0.1:8497";
const CONNECTOR_LISTEN: &str = "127.0.0.1:8498";
const TARGET_IQN: &str = "iqn.2026-12.io.goldmount.lab:bench";
/// Every HTTP call is bounded by this (8 concurrent LVM mounts under TCG
/// take minutes).
const CALL_TIMEOUT: Duration = Duration::from_secs(1000);
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const BOOT_UUID: &str = "3f0e6a56-2a8d-4c55-9a0b-5d3c1e2f4a10";

// ---------------------------------------------------------------- release binaries

/// Points the usual variables at the release builds for this process (the
/// appliance helper and goldmountd read them).
fn use_release_bins() {
    for (rel, var) in [
        ("GOLDMOUNT_RELEASE_BIN", "GOLDMOUNT_BIN"),
        ("GOLDMOUNTD_RELEASE_BIN", "GOLDMOUNTD_BIN"),
        ("GOLDMOUNT_APPLIANCE_RELEASE_BIN", "GOLDMOUNT_APPLIANCE_BIN"),
    ] {
        let bin = std::env::var(rel)
            .unwrap_or_else(|_| panic!("{rel} unset: run with `cargo xtask lab --bench`"));
        assert!(
            bin.contains("/release/"),
            "{rel}={bin} is not a release build"
        );
        std::env::set_var(var, bin);
    }
}

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

/// The disk size of a gold: `None` is lab_onecall's 432 MiB disk (PV
/// partition 360 MiB); `Some(bytes)` a sparse disk of that size whose PV
/// partition takes everything after /boot and /srv/data.
type GoldSize = Option<u64>;

/// The gold host's disk (as lab_onecall builds it): GPT; p1 ext4 /boot, p2
/// LVM PV of `vg_gold` {root xfs with /etc/fstab, home ext4}, p3 ext4
/// LABEL=data.
fn build_lvm_gold(dir: &Path, name: &str, size: GoldSize) -> PathBuf {
    let img = dir.join(name);
    let bytes = size.unwrap_or(432 * MIB);
    fs::File::create(&img).unwrap().set_len(bytes).unwrap();
    let layout: &[&str] = if size.is_none() {
        &[
            "-n1:2048:+32M",
            "-t1:8300",
            "-n2:0:+360M",
            "-t2:8e00",
            "-n3:0:+32M",
            "-t3:8300",
        ]
    } else {
        &[
            "-n1:2048:+32M",
            "-t1:8300",
            "-n3:0:+32M",
            "-t3:8300",
            "-n2:0:0",
            "-t2:8e00",
        ]
    };
    let mut args: Vec<&str> = layout.to_vec();
    args.push(img.to_str().unwrap());
    run("sgdisk", &args);
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

/// `goldmountd --config FILE serve`, killed on drop; its log is kept (the
/// stage breakdown is read from it) and echoed into the scenario log.
struct Goldmountd {
    child: Option<Child>,
    log: PathBuf,
}

impl Goldmountd {
    fn start(config: &Path, log: &Path) -> Self {
        let bin = std::env::var("GOLDMOUNTD_BIN").unwrap();
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

    /// The log's length now: where the next call's lines begin.
    fn log_len(&self) -> usize {
        fs::read(&self.log).map(|b| b.len()).unwrap_or(0)
    }

    fn log_since(&self, off: usize) -> String {
        let b = fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&b[off.min(b.len())..]).into_owned()
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
        let stem = log.file_stem().unwrap().to_string_lossy().into_owned();
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

    /// `call`, timed, expecting `want`.
    fn timed(&self, method: &str, path: &str, body: Option<&Value>, want: u16) -> (Value, f64) {
        let t = Instant::now();
        let (s, v) = self.call(method, path, body);
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(s, want, "{method} {path}: {v:#}");
        (v, secs)
    }
}

// ---------------------------------------------------------------- the lab set-up

/// Everything one benchmark needs: a reflink XFS holding the golds, the
/// appliance (iSCSI on LIO) with its golds imported, goldmountd registered
/// as host `labhost`. Dropped: whatever is left is force-unmounted and
/// unpresented, the session logged out, LIO wiped.
struct Bench {
    api: Api,
    daemon: Goldmountd,
    scratch: PathBuf,
    media: PathBuf,
    lio: Lio,
    initiator: String,
    dm_before: Vec<String>,
    // Dropped last, in this order.
    _app: ApplianceProc,
    _xfs: ReflinkXfs,
}

impl Bench {
    fn start(scratch: &Path, xfs_mib: u64, golds: &[(&str, GoldSize)]) -> Self {
        use_release_bins();
        std::env::set_var("LVM_SUPPRESS_FD_WARNINGS", "1");
        let dm_before = dm_names();
        let xfs = ReflinkXfs::create(scratch, xfs_mib);
        let mut imgs = Vec::new();
        for (name, size) in golds {
            let t = Instant::now();
            imgs.push((
                name.to_string(),
                build_lvm_gold(&xfs.mnt, &format!("{name}.img"), *size),
            ));
            eprintln!("gold {name} built in {:.1} s", t.elapsed().as_secs_f64());
        }
        let pki = scratch.join("pki");
        run(
            &std::env::var("GOLDMOUNT_BIN").unwrap(),
            &["certs", "init", pki.to_str().unwrap()],
        );
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
                TARGET_IQN,
                "--portal",
                PORTAL,
                "--client-cert",
                pki.join("client.pem").to_str().unwrap(),
                "--client-key",
                pki.join("client-key.pem").to_str().unwrap(),
                "--mount-deadline-secs",
                "900",
                "--lun-wait-secs",
                "120",
            ],
            &app_log,
        );
        let api = Api::new(&app.base, &app_log);
        let me = Bench {
            api,
            daemon,
            scratch: scratch.to_path_buf(),
            media: scratch.join("media"),
            lio: Lio::new(LioConfig::new(TARGET_IQN, vec![PORTAL.parse().unwrap()])),
            initiator: initiator.clone(),
            dm_before,
            _app: app,
            _xfs: xfs,
        };
        let ca = fs::read_to_string(pki.join("ca.pem")).unwrap();
        let (s, h) = me.api.call(
            "PUT",
            "/v1/hosts/labhost",
            Some(&json!({"iqns": [initiator],
                         "callback_url": format!("https://{CONNECTOR_LISTEN}"),
                         "callback_ca_pem": ca})),
        );
        assert_eq!(s, 201, "{h}");
        for (name, img) in &imgs {
            let (s, g) = me.api.call(
                "POST",
                "/v1/gold-copies",
                Some(&json!({"name": name, "source": img})),
            );
            assert_eq!(s, 201, "{g}");
        }
        me
    }

    /// Checks nothing is left of the runs: no session, no LIO disk on the
    /// host, no dm device, no mount, no mount/presentation/clone record.
    fn assert_clean(&self) {
        assert!(!has_session(TARGET_IQN), "session left");
        assert_eq!(lio_disks(), Vec::<(String, String)>::new(), "disks left");
        assert_eq!(dm_names(), self.dm_before, "dm devices left");
        assert!(mounts_under(&self.scratch.join("host")).is_empty());
        assert!(mounts_under(&self.media).is_empty());
        for p in ["/v1/mounts", "/v1/presentations", "/v1/clones"] {
            let (s, v) = self.api.call("GET", p, None);
            assert_eq!((s, v.clone()), (200, json!([])), "{p}: {v}");
        }
    }
}

impl Drop for Bench {
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
        for m in mounts_under(&self.media).iter().rev() {
            let _ = try_run("umount", &["-l", m], CMD_TIMEOUT);
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
        logout(TARGET_IQN, PORTAL);
        wipe_lio(&self.lio, std::slice::from_ref(&self.initiator));
    }
}

// ---------------------------------------------------------------- goldmountd's stages

/// Seconds of the day of a log line's RFC 3339 UTC timestamp.
fn line_secs(line: &str) -> Option<f64> {
    let t = line.get(11..26)?;
    let h: f64 = t.get(0..2)?.parse().ok()?;
    let m: f64 = t.get(3..5)?.parse().ok()?;
    let s: f64 = t.get(6..)?.trim_end_matches('Z').parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// goldmountd's stages of one mount, from its debug log, each ending at
/// the first line (after the previous stage's end) that contains the
/// marker. The first stage starts at the TLS handshake of the appliance's
/// call.
const STAGES: [(&str, &str); 6] = [
    ("login", "iscsi::adm: logged in"),
    ("scan", "executor::rescan: scsi scan"),
    ("wait", "device verified"),
    ("probe", "LVM stage: importing"),
    ("import", "imported volume group"),
    ("mount", "goldmountd::api: mount volume="),
];

/// (stage, seconds) for the stages found in `log`.
fn stages(log: &str) -> Vec<(&'static str, f64)> {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines
        .iter()
        .find(|l| l.contains("decided upon suite"))
        .or(lines.first())
        .and_then(|l| line_secs(l));
    let Some(mut prev) = start else {
        return Vec::new();
    };
    let mut i = 0;
    let mut out = Vec::new();
    for (name, marker) in STAGES {
        if let Some(j) = lines[i..].iter().position(|l| l.contains(marker)) {
            if let Some(t) = line_secs(lines[i + j]) {
                out.push((name, t - prev));
                prev = t;
                i += j;
            }
        }
    }
    out
}

// ---------------------------------------------------------------- one run of each

/// One `POST /v1/mounts`: wall time, the appliance's timings (s) and
/// goldmountd's stages.
struct GmRun {
    wall: f64,
    clone: f64,
    present: f64,
    connector: f64,
    stages: Vec<(&'static str, f64)>,
    autoactivated: bool,
}

/// Mounts `volume` from `gold` with one call (the first on this host, so
/// it logs in), checks the tree, then deletes it (untimed; logs out).
/// `None` (and a `BENCH … FAILED` line) when the call did not answer 201:
/// a failure is a figure too, counted, not hidden in a panic.
fn goldmount_run(b: &Bench, gold: &str, volume: &str) -> Option<GmRun> {
    forget_lvm_autoactivation_records();
    assert!(!has_session(TARGET_IQN));
    let off = b.daemon.log_len();
    let req = json!({"gold": gold, "host": "labhost", "volume": volume});
    let t = Instant::now();
    let (status, m) = b.api.call("POST", "/v1/mounts", Some(&req));
    let wall = t.elapsed().as_secs_f64();
    if status != 201 {
        eprintln!(
            "BENCH goldmount {volume} ({gold}) FAILED after {wall:.2} s: {status} {}",
            m["error"]
        );
        assert!(!has_session(TARGET_IQN), "a failed mount logs out again");
        return None;
    }
    let log = b.daemon.log_since(off);
    let tree = PathBuf::from(m["manifest"]["path"].as_str().unwrap());
    check_tree(&tree);
    let t = &m["timings"];
    let s = |k: &str| t[k].as_f64().unwrap_or(f64::NAN) / 1000.0;
    let run = GmRun {
        wall,
        clone: s("clone_ms"),
        present: s("present_ms"),
        connector: s("connector_ms"),
        stages: stages(&log),
        autoactivated: log.contains("activated before import"),
    };
    eprintln!(
        "BENCH goldmount {volume} ({gold}): wall {:.2} s = clone {:.2} + present {:.2} + connector {:.2}; stages {:?}; autoactivation undone: {}",
        run.wall, run.clone, run.present, run.connector, run.stages, run.autoactivated
    );
    let (r, secs) = b
        .api
        .timed("DELETE", &format!("/v1/mounts/{volume}"), None, 200);
    eprintln!("delete {volume}: {secs:.2} s {r}");
    assert!(!has_session(TARGET_IQN), "the last unmount logs out");
    Some(run)
}

fn check_tree(tree: &Path) {
    assert_eq!(
        fs::read_to_string(tree.join("etc/fstab")).unwrap(),
        gold_fstab()
    );
    for (rel, data) in gold_files() {
        assert!(
            fs::read(tree.join(rel)).unwrap() == data,
            "{}: {rel} differs from the gold copy",
            tree.display()
        );
    }
}

/// The hand-run floor's steps, seconds each.
struct FloorRun {
    clone: f64,
    present: f64,
    /// (step, seconds) on the host, in order.
    steps: Vec<(&'static str, f64)>,
}

impl FloorRun {
    fn host(&self) -> f64 {
        self.steps.iter().map(|(_, s)| s).sum()
    }
    fn total(&self) -> f64 {
        self.clone + self.present + self.host()
    }
}

/// Times `f`.
fn timed<T>(steps: &mut Vec<(&'static str, f64)>, name: &'static str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let v = f();
    steps.push((name, t.elapsed().as_secs_f64()));
    v
}

/// The minimal hand-run sequence on another clone of `gold`: clone and
/// present through the appliance API, then `iscsiadm --login`, a targeted
/// scan (`echo C T L` into the host's `scan`), wait for the disk (and udev), undo udev's autoactivation of the
/// clone if it happened, `vgimportclone`, `vgchange -ay`, four `mount`s of
/// the known tree. Then everything is taken down again (untimed).
fn floor_run(b: &Bench, gold: &str, clone: &str) -> FloorRun {
    forget_lvm_autoactivation_records();
    assert!(!has_session(TARGET_IQN));
    let (_, clone_s) = b.api.timed(
        "POST",
        "/v1/clones",
        Some(&json!({"name": clone, "gold": gold})),
        201,
    );
    let (p, present_s) = b.api.timed(
        "POST",
        "/v1/presentations",
        Some(&json!({"clone": clone, "host": "labhost"})),
        201,
    );
    let lun = u32::try_from(p["lun"].as_u64().unwrap()).unwrap();
    let wwn = p["wwn"].as_str().unwrap().to_string();
    assert_eq!(p["target_iqn"], TARGET_IQN, "{p}");
    let vg = format!("vg_{clone}");
    let at = b.media.join(clone);
    fs::create_dir_all(&at).unwrap();
    let mut steps = Vec::new();
    // The node record with manual scan (a host that never logged in to the
    // target needs it before a login that must not scan every LUN; goldmount
    // creates it too, and deletes it at its last logout): timed as its own
    // step, so the ratio can be read with and without it.
    timed(&mut steps, "node record", || {
        let _ = try_run(
            "iscsiadm",
            &["-m", "node", "-T", TARGET_IQN, "-p", PORTAL, "-o", "new"],
            CMD_TIMEOUT,
        );
        set_manual_scan(TARGET_IQN, PORTAL);
    });
    timed(&mut steps, "login", || login(TARGET_IQN, PORTAL));
    timed(&mut steps, "scan", || {
        let (h, c, t) = session_scsi_address(TARGET_IQN).expect("the session's SCSI host");
        scan_lun(h, c, t, lun);
    });
    let sd = timed(&mut steps, "wait", || {
        let sd = wait_until(&format!("disk {wwn}"), Duration::from_secs(120), || {
            disk_with_wwid(&wwn)
        });
        run("udevadm", &["settle", "-t", "60"]);
        sd
    });
    let part = |n: u32| format!("/dev/{sd}{n}");
    let pv = part(2);
    timed(&mut steps, "undo autoactivation", || {
        for lv in ["vg_gold-home", "vg_gold-root"] {
            if Path::new("/dev/mapper").join(lv).exists() {
                eprintln!("BENCH floor: udev autoactivated {lv}");
                run("dmsetup", &["remove", "--retry", lv]);
            }
        }
    });
    timed(&mut steps, "vgimportclone", || {
        lvm(&["vgimportclone", "--devices", &pv, "--basevgname", &vg, &pv])
    });
    timed(&mut steps, "vgchange -ay", || {
        lvm(&["vgchange", "--devices", &pv, "-ay", &vg])
    });
    let a = at.to_str().unwrap().to_string();
    let mounts = [
        (format!("/dev/mapper/{vg}-root"), a.clone(), true),
        (part(1), format!("{a}/boot"), false),
        (format!("/dev/mapper/{vg}-home"), format!("{a}/home"), false),
        (part(3), format!("{a}/srv/data"), false),
    ];
    timed(&mut steps, "mount x4", || {
        for (dev, to, xfs) in &mounts {
            if *xfs {
                run("mount", &["-o", "nouuid", dev, to]);
            } else {
                run("mount", &[dev, to]);
            }
        }
    });
    let run_ = FloorRun {
        clone: clone_s,
        present: present_s,
        steps,
    };
    eprintln!(
        "BENCH floor {clone} ({gold}): total {:.2} s = clone {:.2} + present {:.2} + host {:.2}; steps {:?}",
        run_.total(),
        run_.clone,
        run_.present,
        run_.host(),
        run_.steps
    );
    check_tree(&at);
    // Take it all down again.
    for (_, to, _) in mounts.iter().rev() {
        run("umount", &[to]);
    }
    lvm(&["vgchange", "--devices", &pv, "-an", &vg]);
    delete_disk(Path::new(&format!("/dev/{sd}")));
    logout(TARGET_IQN, PORTAL);
    // As goldmount's last logout does: the next run starts without a record.
    let _ = try_run(
        "iscsiadm",
        &["-m", "node", "-T", TARGET_IQN, "-p", PORTAL, "-o", "delete"],
        CMD_TIMEOUT,
    );
    b.api
        .timed("DELETE", &format!("/v1/presentations/{clone}"), None, 204);
    b.api
        .timed("DELETE", &format!("/v1/clones/{clone}"), None, 204);
    run_
}

// ---------------------------------------------------------------- figures

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn fmt_runs(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Median per stage over runs.
fn median_stages(runs: &[Vec<(&'static str, f64)>], names: &[&'static str]) -> Vec<(String, f64)> {
    names
        .iter()
        .map(|n| {
            let v: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.iter().find(|(s, _)| s == n).map(|(_, x)| *x))
                .collect();
            (n.to_string(), median(&v))
        })
        .collect()
}

/// Rounds of each side, order alternating (round 0 goldmount first).
const ROUNDS: usize = 3;

/// Scenario: one call → mounted vs the hand-run floor, 3 rounds each in
/// alternating order after one warm-up of each, on the lab_onecall gold.
#[test]
#[ignore = "needs the lab kernel"]
fn bench_onecall_vs_hand_run_floor() {
    let scratch = require_lab();
    let b = Bench::start(&scratch, 1024, &[("pg-gold", None)]);
    let w = goldmount_run(&b, "pg-gold", "warmgm");
    let f = floor_run(&b, "pg-gold", "warmfloor");
    eprintln!(
        "BENCH warm-up (cold caches, not in the medians): goldmount {:?} s, floor {:.2} s",
        w.map(|w| w.wall),
        f.total()
    );
    let mut gm = Vec::new();
    let mut fl = Vec::new();
    for r in 0..ROUNDS {
        if r % 2 == 0 {
            gm.extend(goldmount_run(&b, "pg-gold", &format!("gm{r}")));
            fl.push(floor_run(&b, "pg-gold", &format!("floor{r}")));
        } else {
            fl.push(floor_run(&b, "pg-gold", &format!("floor{r}")));
            gm.extend(goldmount_run(&b, "pg-gold", &format!("gm{r}")));
        }
    }
    b.assert_clean();
    eprintln!(
        "BENCH goldmount runs that mounted: {} of {ROUNDS}",
        gm.len()
    );
    let gm_wall: Vec<f64> = gm.iter().map(|r| r.wall).collect();
    let gm_conn: Vec<f64> = gm.iter().map(|r| r.connector).collect();
    let gm_clone: Vec<f64> = gm.iter().map(|r| r.clone).collect();
    let gm_present: Vec<f64> = gm.iter().map(|r| r.present).collect();
    let fl_total: Vec<f64> = fl.iter().map(FloorRun::total).collect();
    let fl_host: Vec<f64> = fl.iter().map(FloorRun::host).collect();
    let fl_clone: Vec<f64> = fl.iter().map(|r| r.clone).collect();
    let fl_present: Vec<f64> = fl.iter().map(|r| r.present).collect();
    eprintln!("BENCH | side | runs (s) | median s |");
    eprintln!(
        "BENCH | goldmount POST /v1/mounts wall | {} | {:.2} |",
        fmt_runs(&gm_wall),
        median(&gm_wall)
    );
    eprintln!(
        "BENCH | goldmount clone / present / connector | {} ; {} ; {} | {:.2} / {:.2} / {:.2} |",
        fmt_runs(&gm_clone),
        fmt_runs(&gm_present),
        fmt_runs(&gm_conn),
        median(&gm_clone),
        median(&gm_present),
        median(&gm_conn)
    );
    eprintln!(
        "BENCH | floor total (API clone + present + host steps) | {} | {:.2} |",
        fmt_runs(&fl_total),
        median(&fl_total)
    );
    eprintln!(
        "BENCH | floor clone / present / host | {} ; {} ; {} | {:.2} / {:.2} / {:.2} |",
        fmt_runs(&fl_clone),
        fmt_runs(&fl_present),
        fmt_runs(&fl_host),
        median(&fl_clone),
        median(&fl_present),
        median(&fl_host)
    );
    let gm_stage_names: Vec<&'static str> = STAGES.iter().map(|(n, _)| *n).collect();
    for (n, s) in median_stages(
        &gm.iter().map(|r| r.stages.clone()).collect::<Vec<_>>(),
        &gm_stage_names,
    ) {
        eprintln!("BENCH | goldmountd stage {n} | | {s:.2} |");
    }
    let fl_names = [
        "node record",
        "login",
        "scan",
        "wait",
        "undo autoactivation",
        "vgimportclone",
        "vgchange -ay",
        "mount x4",
    ];
    for (n, s) in median_stages(
        &fl.iter().map(|r| r.steps.clone()).collect::<Vec<_>>(),
        &fl_names,
    ) {
        eprintln!("BENCH | floor step {n} | | {s:.2} |");
    }
    eprintln!(
        "BENCH autoactivation undone by goldmountd in {} of {} runs",
        gm.iter().filter(|r| r.autoactivated).count(),
        gm.len()
    );
    eprintln!(
        "BENCH ratio whole call: goldmount {:.2} s / floor {:.2} s = {:.2}x (target <= 1.3x)",
        median(&gm_wall),
        median(&fl_total),
        median(&gm_wall) / median(&fl_total)
    );
    eprintln!(
        "BENCH ratio host side: connector {:.2} s / floor host steps {:.2} s = {:.2}x",
        median(&gm_conn),
        median(&fl_host),
        median(&gm_conn) / median(&fl_host)
    );
    let fl_no_record: Vec<f64> = fl
        .iter()
        .map(|r| {
            r.total()
                - r.steps
                    .iter()
                    .filter(|(n, _)| *n == "node record")
                    .map(|(_, s)| s)
                    .sum::<f64>()
        })
        .collect();
    eprintln!(
        "BENCH ratio whole call, floor without its node record: goldmount {:.2} s / floor {:.2} s = {:.2}x",
        median(&gm_wall),
        median(&fl_no_record),
        median(&gm_wall) / median(&fl_no_record)
    );
}

/// Scenario: one call → mounted for a 1 GiB and a 1 TiB (sparse) gold of
/// the same layout, 3 runs each, order alternating.
#[test]
#[ignore = "needs the lab kernel"]
fn bench_onecall_1gib_vs_1tib_gold() {
    let scratch = require_lab();
    let b = Bench::start(
        &scratch,
        2048,
        &[("gold-1g", Some(GIB)), ("gold-1t", Some(1024 * GIB))],
    );
    let _ = goldmount_run(&b, "gold-1g", "warm");
    let mut small = Vec::new();
    let mut big = Vec::new();
    for r in 0..ROUNDS {
        if r % 2 == 0 {
            small.extend(goldmount_run(&b, "gold-1g", &format!("g{r}")));
            big.extend(goldmount_run(&b, "gold-1t", &format!("t{r}")));
        } else {
            big.extend(goldmount_run(&b, "gold-1t", &format!("t{r}")));
            small.extend(goldmount_run(&b, "gold-1g", &format!("g{r}")));
        }
    }
    b.assert_clean();
    eprintln!(
        "BENCH runs that mounted: 1 GiB {} of {ROUNDS}, 1 TiB {} of {ROUNDS}",
        small.len(),
        big.len()
    );
    let names: Vec<&'static str> = STAGES.iter().map(|(n, _)| *n).collect();
    for (label, runs) in [("1 GiB", &small), ("1 TiB", &big)] {
        let wall: Vec<f64> = runs.iter().map(|r| r.wall).collect();
        let conn: Vec<f64> = runs.iter().map(|r| r.connector).collect();
        let clone: Vec<f64> = runs.iter().map(|r| r.clone).collect();
        let present: Vec<f64> = runs.iter().map(|r| r.present).collect();
        eprintln!(
            "BENCH | {label} | wall {} | median wall {:.2} | clone {:.2} | present {:.2} | connector {:.2} |",
            fmt_runs(&wall),
            median(&wall),
            median(&clone),
            median(&present),
            median(&conn)
        );
        for (n, s) in median_stages(
            &runs.iter().map(|r| r.stages.clone()).collect::<Vec<_>>(),
            &names,
        ) {
            eprintln!("BENCH | {label} stage {n} | {s:.2} |");
        }
    }
    let ws: Vec<f64> = small.iter().map(|r| r.wall).collect();
    let wb: Vec<f64> = big.iter().map(|r| r.wall).collect();
    eprintln!(
        "BENCH ratio 1 TiB / 1 GiB median wall: {:.2} / {:.2} = {:.3} (target within 10%)",
        median(&wb),
        median(&ws),
        median(&wb) / median(&ws)
    );
}

/// Scenario: 8 one-call mounts at once (8 volumes, 8 clones of the same
/// gold): all succeed; total wall vs 8x a single one measured just before.
#[test]
#[ignore = "needs the lab kernel"]
fn bench_onecall_8_concurrent() {
    const N: usize = 8;
    let scratch = require_lab();
    let b = Bench::start(&scratch, 1024, &[("pg-gold", None)]);
    let _ = goldmount_run(&b, "pg-gold", "warm");
    let single = goldmount_run(&b, "pg-gold", "single")
        .or_else(|| goldmount_run(&b, "pg-gold", "single2"))
        .expect("a single one-call mount (two tries)");
    forget_lvm_autoactivation_records();
    let t = Instant::now();
    let answers: Vec<(u16, Value, f64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..N)
            .map(|i| {
                let api = &b.api;
                s.spawn(move || {
                    let t = Instant::now();
                    let (st, v) = api.call(
                        "POST",
                        "/v1/mounts",
                        Some(&json!({"gold": "pg-gold", "host": "labhost",
                                     "volume": format!("c{i}")})),
                    );
                    (st, v, t.elapsed().as_secs_f64())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let total = t.elapsed().as_secs_f64();
    let ok = answers.iter().filter(|(s, _, _)| *s == 201).count();
    for (i, (s, v, secs)) in answers.iter().enumerate() {
        let tm = &v["timings"];
        eprintln!(
            "BENCH concurrent c{i}: {s} in {secs:.2} s (clone {} ms, present {} ms, connector {} ms)",
            tm["clone_ms"], tm["present_ms"], tm["connector_ms"]
        );
        if *s != 201 {
            eprintln!("c{i} failed: {v:#}");
        }
    }
    for (_, v, _) in answers.iter().filter(|(s, _, _)| *s == 201) {
        check_tree(Path::new(v["manifest"]["path"].as_str().unwrap()));
    }
    let per: Vec<f64> = answers.iter().map(|(_, _, s)| *s).collect();
    eprintln!(
        "BENCH | {N} concurrent | ok {ok}/{N} | total {total:.2} s | median per call {:.2} s | max {:.2} s | single {:.2} s | total / ({N} x single) = {:.2} |",
        median(&per),
        per.iter().cloned().fold(0.0, f64::max),
        single.wall,
        total / (N as f64 * single.wall)
    );
    let t = Instant::now();
    std::thread::scope(|s| {
        for i in 0..N {
            let api = &b.api;
            s.spawn(move || {
                let (st, v) = api.call("DELETE", &format!("/v1/mounts/c{i}"), None);
                assert_eq!(st, 200, "DELETE c{i}: {v}");
            });
        }
    });
    eprintln!(
        "BENCH {N} concurrent DELETEs: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(ok, N, "every concurrent mount succeeds");
    b.assert_clean();
}
