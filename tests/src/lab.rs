//! Helpers for the real-kernel lab scenarios (`cargo xtask lab`), which run as
//! root inside a QEMU guest with LIO, open-iscsi, udev and XFS available.
//!
//! These are test helpers: they panic with a precise message (command, stderr,
//! what was expected) instead of returning errors, so a failing scenario's log
//! says exactly which step broke.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Default timeout for one external command in a scenario.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(120);

/// The scenario's scratch directory, or a loud panic when not in the lab:
/// these tests need the lab kernel and must never silently pass elsewhere.
pub fn require_lab() -> PathBuf {
    if std::env::var_os("GOLDMOUNT_LAB").is_none() {
        panic!("this scenario needs the lab kernel: run it with `cargo xtask lab [NAME]`");
    }
    let scratch = std::env::var_os("GOLDMOUNT_LAB_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/mnt/goldmount-lab/scratch"));
    fs::create_dir_all(&scratch).unwrap();
    scratch
}

/// Runs `prog args…` with a timeout (the workspace's runner, `toolrun`);
/// each command and its status go to the scenario log; `Err` carries the
/// status, stderr and stdout.
pub fn try_run(prog: &str, args: &[&str], timeout: Duration) -> Result<String, String> {
    let tool = toolrun::Tool::new(prog).args(args).timeout(timeout);
    let out = tool.run_any_status().map_err(|e| {
        eprintln!("$ {} -> {e}", tool.cmdline());
        e.to_string()
    })?;
    eprintln!("$ {} -> {}", tool.cmdline(), out.status);
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "{} failed ({}): {}{}",
            tool.cmdline(),
            out.status,
            out.stderr.trim(),
            out.stdout.trim()
        ))
    }
}

/// Removes lvm2's event-autoactivation records (`/run/lvm/pvs_online`,
/// `vgs_online`, `pvs_lookup`), as on a host that has never seen these PVs:
/// with a record of the gold's PV, pvscan takes a clone for a duplicate and
/// leaves it alone, which hides the autoactivation trap.
pub fn forget_lvm_autoactivation_records() {
    for d in ["pvs_online", "vgs_online", "pvs_lookup"] {
        if let Ok(entries) = fs::read_dir(Path::new("/run/lvm").join(d)) {
            for e in entries.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// Sends the kernel event `action` (add, change) for block device `dev`
/// through the host's own udev rules and waits until they have run. With
/// lvm2's 69-lvm.rules that is `pvscan --cache --checkcomplete` and, once a
/// VG is complete, `vgchange -aay` (straight from udev where systemd is
/// absent): exactly how a host autoactivates a clone LUN.
pub fn host_udev_event(dev: &Path, action: &str) {
    let sysname = dev.file_name().unwrap().to_str().unwrap().to_string();
    run(
        "udevadm",
        &[
            "trigger",
            &format!("--action={action}"),
            "--settle",
            &format!("/sys/class/block/{sysname}"),
        ],
    );
    run("udevadm", &["settle", "-t", "60"]);
}

/// [`try_run`] that panics on failure.
pub fn run(prog: &str, args: &[&str]) -> String {
    try_run(prog, args, CMD_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `f` every 100 ms until it yields a value; panics after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            eprintln!("waited {:.2}s for {what}", start.elapsed().as_secs_f64());
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// This guest's iSCSI initiator name.
pub fn initiator_iqn() -> String {
    let s = fs::read_to_string("/etc/iscsi/initiatorname.iscsi").unwrap();
    s.lines()
        .find_map(|l| l.trim().strip_prefix("InitiatorName="))
        .map(str::to_string)
        .expect("InitiatorName= in /etc/iscsi/initiatorname.iscsi")
}

/// A file of `size` bytes whose every 4 KiB block starts with `tag` and the
/// block number, so content checks at any offset are meaningful.
pub fn write_pattern(path: &Path, size: u64, tag: &str) {
    let mut f = fs::File::create(path).unwrap();
    let mut block = vec![0u8; 4096];
    for n in 0..size / 4096 {
        block.fill(0);
        let head = format!("{tag} block {n}\n");
        block[..head.len()].copy_from_slice(head.as_bytes());
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
}

/// Reads `len` bytes at `off` from a file or block device.
pub fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, off)
        .unwrap_or_else(|e| panic!("read {} @{off}: {e}", path.display()));
    buf
}

/// Writes `data` at `off` to a block device and flushes it to the target.
pub fn write_dev_at(dev: &Path, off: u64, data: &[u8]) {
    let mut f = fs::OpenOptions::new().write(true).open(dev).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

/// An XFS filesystem with reflink support on a loop file: where thin clones
/// (`cp --reflink=always`) are possible.
pub struct ReflinkXfs {
    /// Mount point.
    pub mnt: PathBuf,
    loopdev: String,
}

impl ReflinkXfs {
    /// Creates a sparse `size`-byte image under `scratch`, formats and mounts it.
    pub fn create(scratch: &Path, size_mib: u64) -> Self {
        let img = scratch.join("xfs.img");
        let f = fs::File::create(&img).unwrap();
        f.set_len(size_mib << 20).unwrap();
        let loopdev = run("losetup", &["-f", "--show", img.to_str().unwrap()])
            .trim()
            .to_string();
        run("mkfs.xfs", &["-q", "-f", "-m", "reflink=1", &loopdev]);
        let mnt = scratch.join("xfs");
        fs::create_dir_all(&mnt).unwrap();
        run("mount", &[&loopdev, mnt.to_str().unwrap()]);
        Self { mnt, loopdev }
    }
}

impl Drop for ReflinkXfs {
    fn drop(&mut self) {
        let _ = try_run("umount", &[self.mnt.to_str().unwrap()], CMD_TIMEOUT);
        let _ = try_run("losetup", &["-d", &self.loopdev], CMD_TIMEOUT);
    }
}

/// Whether `path` has extents shared with another file (a real reflink
/// clone), from FIEMAP flags as `filefrag -v` prints them.
pub fn has_shared_extents(path: &Path) -> bool {
    run("filefrag", &["-v", path.to_str().unwrap()]).contains("shared")
}

/// open-iscsi: SendTargets discovery against `portal` (`ip:port`).
pub fn discover(portal: &str) -> String {
    run("iscsiadm", &["-m", "discovery", "-t", "st", "-p", portal])
}

/// Sets `node.session.scan=manual` so login creates no SCSI devices by itself:
/// only targeted scans do, as the connector will.
pub fn set_manual_scan(target_iqn: &str, portal: &str) {
    run(
        "iscsiadm",
        &[
            "-m",
            "node",
            "-T",
            target_iqn,
            "-p",
            portal,
            "-o",
            "update",
            "-n",
            "node.session.scan",
            "-v",
            "manual",
        ],
    );
}

/// Logs in to `target_iqn` at `portal`.
pub fn login(target_iqn: &str, portal: &str) {
    run(
        "iscsiadm",
        &["-m", "node", "-T", target_iqn, "-p", portal, "--login"],
    );
}

/// Logs out (ignores "no session").
pub fn logout(target_iqn: &str, portal: &str) {
    let _ = try_run(
        "iscsiadm",
        &["-m", "node", "-T", target_iqn, "-p", portal, "--logout"],
        CMD_TIMEOUT,
    );
}

/// SCSI address (host, channel, target id) of the session to `target_iqn`,
/// read from sysfs (`/sys/class/iscsi_session/session*/`).
pub fn session_scsi_address(target_iqn: &str) -> Option<(u32, u32, u32)> {
    session_scsi_addresses(target_iqn).into_iter().next()
}

/// The SCSI addresses of every session to `target_iqn` (one per portal
/// logged in), sorted.
pub fn session_scsi_addresses(target_iqn: &str) -> Vec<(u32, u32, u32)> {
    let Ok(entries) = fs::read_dir("/sys/class/iscsi_session") else {
        return Vec::new();
    };
    let mut out: Vec<(u32, u32, u32)> = entries
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let name = fs::read_to_string(p.join("targetname")).unwrap_or_default();
            if name.trim() != target_iqn {
                return None;
            }
            let tid: u32 = fs::read_to_string(p.join("target_id"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            // .../hostN/sessionM/iscsi_session/sessionM: the hostN component.
            let real = fs::canonicalize(&p).ok()?;
            let host = real.components().find_map(|c| {
                c.as_os_str()
                    .to_str()?
                    .strip_prefix("host")?
                    .parse::<u32>()
                    .ok()
            })?;
            Some((host, 0, tid))
        })
        .collect();
    out.sort();
    out
}

/// The kernel name of the dm device whose uuid is `uuid` (a multipath map
/// is `mpath-3<naa hex>`).
pub fn dm_with_uuid(uuid: &str) -> Option<String> {
    fs::read_dir("/sys/block").ok()?.flatten().find_map(|e| {
        let u = fs::read_to_string(e.path().join("dm/uuid")).ok()?;
        (u.trim() == uuid).then(|| e.file_name().to_string_lossy().into_owned())
    })
}

/// multipathd as a stock Debian 12 host runs it: `find_multipaths` left at
/// the default, `strict` — a map is made only for a WWID listed in
/// /etc/multipath/wwids, so goldmount's wait has to ask for it — no friendly
/// names; stopped at the end with its config removed.
pub struct Multipathd;

impl Multipathd {
    /// Starts it and waits for its socket.
    pub fn start() -> Self {
        Self::start_with_blacklist("")
    }

    /// Starts it with `entries` added to multipath.conf's blacklist section
    /// (e.g. a `device { vendor … }` block the host's admin wrote).
    pub fn start_with_blacklist(entries: &str) -> Self {
        if !Path::new("/sbin/multipathd").exists() {
            panic!("multipathd missing: apt-get install multipath-tools");
        }
        run("modprobe", &["dm_multipath"]);
        fs::write(
            "/etc/multipath.conf",
            format!(
                "defaults {{\n    user_friendly_names no\n}}\n\
                 blacklist {{\n    devnode \"^(ram|loop|fd|md|dm-|sr|scd|st|nbd)[0-9]*\"\n{entries}}}\n"
            ),
        )
        .unwrap();
        fs::create_dir_all("/etc/multipath").unwrap();
        run("multipathd", &[]);
        wait_until("multipathd socket", Duration::from_secs(60), || {
            try_run("multipathd", &["show", "status"], CMD_TIMEOUT)
                .ok()
                .map(|_| ())
        });
        Multipathd
    }
}

impl Drop for Multipathd {
    fn drop(&mut self) {
        let _ = try_run("multipathd", &["shutdown"], CMD_TIMEOUT);
        let _ = fs::remove_file("/etc/multipath.conf");
    }
}

/// A targeted scan of exactly one LUN: `echo "C T L" > .../hostN/scan`.
pub fn scan_lun(host: u32, channel: u32, target: u32, lun: u32) {
    let path = format!("/sys/class/scsi_host/host{host}/scan");
    fs::write(&path, format!("{channel} {target} {lun}"))
        .unwrap_or_else(|e| panic!("write {path}: {e}"));
}

/// The `sdX` whose `/sys/block/sdX/device/wwid` equals `wwid`.
pub fn disk_with_wwid(wwid: &str) -> Option<String> {
    fs::read_dir("/sys/block").ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let w = fs::read_to_string(e.path().join("device/wwid")).ok()?;
        (w.trim() == wwid).then_some(name)
    })
}

/// All SCSI disks whose wwid is `naa.6001405…` (LIO devices).
pub fn lio_disks() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = fs::read_dir("/sys/block")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let w = fs::read_to_string(e.path().join("device/wwid")).ok()?;
                    let w = w.trim().to_string();
                    w.starts_with("naa.6001405")
                        .then(|| (e.file_name().to_string_lossy().into_owned(), w))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Waits for the disk with `wwid` and its udev `/dev/disk/by-id/wwn-0x…` link
/// (checking the link resolves to that disk). Returns `/dev/sdX`.
pub fn wait_disk(wwid: &str, timeout: Duration) -> PathBuf {
    let sd = wait_until(&format!("a disk with wwid {wwid}"), timeout, || {
        disk_with_wwid(wwid)
    });
    let link = Path::new("/dev/disk/by-id").join(appliance::lio::by_id_wwn_link(wwid));
    let dev = PathBuf::from("/dev").join(&sd);
    wait_until(&format!("udev link {}", link.display()), timeout, || {
        let _ = try_run("udevadm", &["settle", "-t", "5"], Duration::from_secs(10));
        (fs::canonicalize(&link).ok()? == dev).then_some(())
    });
    dev
}

/// Deletes a SCSI disk from the initiator side (what detach does).
pub fn delete_disk(dev: &Path) {
    let name = dev.file_name().unwrap().to_string_lossy().into_owned();
    let p = format!("/sys/block/{name}/device/delete");
    fs::write(&p, "1").unwrap_or_else(|e| panic!("write {p}: {e}"));
    wait_until(
        &format!("{name} to disappear"),
        Duration::from_secs(30),
        || (!Path::new("/sys/block").join(&name).exists()).then_some(()),
    );
}

/// Removes a target directory tree that [`appliance::lio::Lio`] built (portals,
/// TPG, target) once ACLs and LUNs are gone: scenario cleanup only.
pub fn remove_lio_target(lio: &appliance::lio::Lio) {
    let tpg = lio.tpg_dir();
    if tpg.join("enable").exists() {
        let _ = fs::write(tpg.join("enable"), "0");
    }
    if let Ok(d) = fs::read_dir(tpg.join("np")) {
        for e in d.flatten() {
            let _ = fs::remove_dir(e.path());
        }
    }
    let _ = fs::remove_dir(&tpg);
    let _ = fs::remove_dir(lio.target_dir());
}

/// A `goldmount-appliance serve` process (binary from `GOLDMOUNT_APPLIANCE_BIN`,
/// built by xtask), killed on drop; its log is echoed into the scenario log.
/// Its API token is written beside the log (`<log>.token-…`, mode 0600)
/// and sent with every request.
pub struct ApplianceProc {
    child: Option<std::process::Child>,
    log: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    args: Vec<String>,
    /// `Bearer <token>`.
    auth: String,
}

impl ApplianceProc {
    /// Starts `serve` with `args` (after `serve`), listening on `listen`, and
    /// waits for `/healthz`.
    pub fn start(listen: &str, args: &[&str], log: &Path) -> Self {
        use std::io::{Read, Write};
        use std::os::unix::fs::OpenOptionsExt;
        let mut raw = [0u8; 16];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut raw))
            .expect("reading /dev/urandom");
        let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        // One file per process, even when two share a log.
        let token_file = log.with_extension(format!("token-{}", &token[..8]));
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&token_file)
            .and_then(|mut f| writeln!(f, "{token}"))
            .unwrap_or_else(|e| panic!("writing {}: {e}", token_file.display()));
        let mut me = Self {
            child: None,
            log: log.to_path_buf(),
            base: format!("http://{listen}"),
            args: std::iter::once("serve".to_string())
                .chain(["--listen".to_string(), listen.to_string()])
                .chain([
                    "--token-file".to_string(),
                    token_file.to_string_lossy().into_owned(),
                ])
                .chain(args.iter().map(|s| s.to_string()))
                .collect(),
            auth: format!("Bearer {token}"),
        };
        me.spawn();
        me
    }

    fn spawn(&mut self) {
        let bin = std::env::var("GOLDMOUNT_APPLIANCE_BIN")
            .expect("GOLDMOUNT_APPLIANCE_BIN (set by cargo xtask lab)");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&bin)
            .args(&self.args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {bin}: {e}"));
        self.child = Some(child);
        let url = format!("{}/healthz", self.base);
        wait_until("appliance /healthz", Duration::from_secs(60), || {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!(
                        "appliance exited early ({st}); log:\n{}",
                        fs::read_to_string(&self.log).unwrap_or_default()
                    );
                }
            }
            ureq::get(&url).call().ok().map(|_| ())
        });
    }

    /// Kills the process (SIGKILL: a crash, the harshest restart).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill and start again with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// POST JSON, expecting 200/201; returns the response body.
    pub fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let url = format!("{}{path}", self.base);
        match ureq::post(&url)
            .set("Authorization", &self.auth)
            .send_json(body.clone())
        {
            Ok(r) => r.into_json().unwrap(),
            Err(ureq::Error::Status(code, r)) => panic!(
                "POST {path} {body} -> {code}: {}",
                r.into_string().unwrap_or_default()
            ),
            Err(e) => panic!("POST {path}: {e}"),
        }
    }

    /// GET, expecting 200.
    pub fn get(&self, path: &str) -> serde_json::Value {
        let url = format!("{}{path}", self.base);
        match ureq::get(&url).set("Authorization", &self.auth).call() {
            Ok(r) => r.into_json().unwrap(),
            Err(ureq::Error::Status(code, r)) => {
                panic!(
                    "GET {path} -> {code}: {}",
                    r.into_string().unwrap_or_default()
                )
            }
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    /// DELETE; returns the HTTP status.
    pub fn delete(&self, path: &str) -> u16 {
        let url = format!("{}{path}", self.base);
        match ureq::delete(&url).set("Authorization", &self.auth).call() {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("DELETE {path}: {e}"),
        }
    }
}

impl Drop for ApplianceProc {
    fn drop(&mut self) {
        self.kill();
        eprintln!(
            "----- appliance log ({}) -----\n{}",
            self.log.display(),
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

/// Removes every goldmount-owned backstore and the target of `lio` (what a
/// host reboot does to LIO's in-kernel configuration). Scenario use only.
pub fn wipe_lio(lio: &appliance::lio::Lio, initiators: &[String]) {
    if let Ok(d) = fs::read_dir(lio.tpg_dir().join("lun")) {
        for e in d.flatten() {
            if let Some(n) = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("lun_"))
                .and_then(|n| n.parse::<u32>().ok())
            {
                lio.unmap_lun(n).unwrap();
            }
        }
    }
    for i in initiators {
        lio.remove_acl(i).unwrap();
    }
    let core = lio.config().configfs_root.join("core");
    for hba in fs::read_dir(&core).unwrap().flatten() {
        for dev in fs::read_dir(hba.path()).into_iter().flatten().flatten() {
            let alias = fs::read_to_string(dev.path().join("alias")).unwrap_or_default();
            if alias.starts_with(appliance::lio::OWNER_ALIAS_PREFIX) {
                lio.remove_backstore(&dev.file_name().to_string_lossy())
                    .unwrap();
            }
        }
    }
    remove_lio_target(lio);
}

impl Multipathd {
    /// Starts multipathd like [`Multipathd::start`], with `sections`
    /// (e.g. an `overrides { no_path_retry queue }` block) appended to
    /// multipath.conf.
    pub fn start_with_conf(sections: &str) -> Self {
        if !Path::new("/sbin/multipathd").exists() {
            panic!("multipathd missing: apt-get install multipath-tools");
        }
        run("modprobe", &["dm_multipath"]);
        fs::write(
            "/etc/multipath.conf",
            format!(
                "defaults {{\n    user_friendly_names no\n}}\n\
                 blacklist {{\n    devnode \"^(ram|loop|fd|md|dm-|sr|scd|st|nbd)[0-9]*\"\n}}\n{sections}"
            ),
        )
        .unwrap();
        fs::create_dir_all("/etc/multipath").unwrap();
        run("multipathd", &[]);
        wait_until("multipathd socket", Duration::from_secs(60), || {
            try_run("multipathd", &["show", "status"], CMD_TIMEOUT)
                .ok()
                .map(|_| ())
        });
        Multipathd
    }
}

/// User processes in uninterruptible sleep (state `D` in
/// `/proc/PID/stat`) whose name, command line or wchan contains one of
/// `words`, as `pid comm wchan=… cmdline`: what a teardown that hangs on
/// dead storage leaves behind (an `umount`, a `sync`, goldmount itself).
pub fn d_state_procs(words: &[&str]) -> Vec<String> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) S …": comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        if stat[close + 1..].split_whitespace().next() != Some("D") {
            continue;
        }
        let cmdline = fs::read(e.path().join("cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        let wchan = fs::read_to_string(e.path().join("wchan")).unwrap_or_default();
        let hay = format!("{comm} {cmdline} {wchan}");
        if words.iter().any(|w| hay.contains(w)) {
            out.push(format!("{pid} {comm} wchan={wchan} {}", cmdline.trim()));
        }
    }
    out
}
