//! `cargo xtask demo`: the product's one-call flow on this machine (loop
//! backend; this host has no iSCSI target).
//!
//! 1. a gold disk made by the real tools (GPT: /boot ext4, a root XFS whose
//!    /etc/fstab names the others, a data ext4);
//! 2. `goldmount certs init`: a dev CA, goldmountd's server certificate and
//!    the appliance's client certificate;
//! 3. `goldmount-appliance serve` (loop backend, HTTPS, API token) on a
//!    reflink XFS, and `goldmountd` with a throwaway config whose
//!    `[appliance]` section makes it register this host;
//! 4. the gold copy imported, then one `goldmount-appliance mount` per
//!    clone (`POST /v1/mounts`: clone, present, goldmountd mounts and
//!    publishes at `--path`), timed; the trees side by side; a write in one
//!    reaching no other;
//! 5. one `goldmount-appliance unmount` each, checked to leave nothing;
//!    goldmountd and the appliance stopped with SIGTERM; the work directory
//!    removed — also after a failure or Ctrl-C, saying what could not be.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use super::host;
use super::procs::{self, check_interrupt, Service};
use crate::golddisk;
use crate::prereqs;

/// Size of the reflink XFS the appliance keeps its gold copy and clones on.
const POOL_BYTES: u64 = 2 << 30;
/// The clones' volume names (and the last part of their paths).
const VOLUMES: [&str; 3] = ["pgsql1", "pgsql2", "pgsql3"];
/// The gold copy's name on the appliance.
const GOLD: &str = "pg-gold";
/// The record the write test changes, relative to a volume's root.
const RECORD: &str = "srv/data/records.csv";

/// How a GET authenticates.
#[derive(Clone, Copy)]
enum Auth {
    /// Not at all (the appliance's `/healthz`).
    None,
    /// With the appliance's API token.
    Token,
    /// With the appliance's client certificate (goldmountd's mutual TLS).
    ClientCert,
}

/// The three binaries the flow runs.
struct Bins {
    goldmount: PathBuf,
    goldmountd: PathBuf,
    appliance: PathBuf,
}

/// One run: where it works, what it started, what it must undo.
struct Demo {
    dir: PathBuf,
    bins: Bins,
    tls: PathBuf,
    appliance: Option<Service>,
    daemon: Option<Service>,
    /// `https://127.0.0.1:PORT` of the appliance.
    server: String,
    /// `https://127.0.0.1:PORT` of goldmountd's control API.
    control: String,
    /// Volumes a mount was asked for and not yet unmounted.
    mounted: BTreeSet<String>,
}

/// Runs `cargo xtask demo`.
pub fn run() -> Result<()> {
    procs::catch_interrupts()?;
    prereqs::ensure_apt(&[
        "gdisk",
        "e2fsprogs",
        "xfsprogs",
        "util-linux",
        "mount",
        "curl",
        "diffutils",
    ])?;
    ensure!(
        rustix::process::geteuid().is_root(),
        "the demo needs root (loop devices, mounts): run it as root"
    );
    let t0 = Instant::now();
    let release = super::build(&["connector", "appliance", "goldmountd"])?;
    let built = t0.elapsed();
    let dir = super::target_dir().join("demo");
    let swept = host::sweep(&dir);
    if !swept.is_empty() {
        println!("swept what an earlier run left: {}", swept.join(", "));
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the earlier run's {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut demo = Demo {
        dir: dir.clone(),
        bins: Bins {
            goldmount: release.join("goldmount"),
            goldmountd: release.join("goldmountd"),
            appliance: release.join("goldmount-appliance"),
        },
        tls: dir.join("tls"),
        appliance: None,
        daemon: None,
        server: String::new(),
        control: String::new(),
        mounted: BTreeSet::new(),
    };
    println!(
        "(binaries built in {:.1} s; DEMO={})",
        built.as_secs_f64(),
        dir.display()
    );
    let t1 = Instant::now();
    let outcome = demo.flow();
    if let Err(e) = &outcome {
        eprintln!("\nxtask demo failed: {e:#}\ntaking everything down");
        demo.print_logs();
    }
    let left = demo.teardown(outcome.is_ok());
    match (outcome, left.is_empty()) {
        (Ok(()), true) => {
            println!(
                "\ndemo complete in {:.1} s (plus {:.1} s of cargo build); nothing left",
                t1.elapsed().as_secs_f64(),
                built.as_secs_f64()
            );
            Ok(())
        }
        (Ok(()), false) => bail!("the demo ran but left: {}", left.join("; ")),
        (Err(e), true) => Err(e),
        (Err(e), false) => Err(e.context(format!("and it left: {}", left.join("; ")))),
    }
}

/// A JSON string literal, which is also a TOML basic string.
fn toml_str(p: &Path) -> String {
    Value::String(p.to_string_lossy().into_owned()).to_string()
}

/// A loopback port nothing listens on right now.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

impl Demo {
    /// `s` with the work directory written `$DEMO`.
    fn short(&self, s: &str) -> String {
        s.replace(&*self.dir.to_string_lossy(), "$DEMO")
    }

    fn path_str<'a>(&self, p: &'a Path) -> Result<&'a str> {
        p.to_str()
            .with_context(|| format!("expected a UTF-8 path, found {}", p.display()))
    }

    /// Prints and runs `prog args…`; its stdout.
    fn show(&self, prog: &Path, args: &[&str]) -> Result<String> {
        let name = prog.file_name().unwrap_or_default().to_string_lossy();
        println!("$ {name} {}", self.short(&args.join(" ")));
        procs::output(prog, args)
    }

    /// `goldmount-appliance ARGS… --server … --ca … --token-file …`,
    /// printed without the connection arguments; its JSON answer.
    fn appliance_cli(&self, args: &[&str], echo: bool) -> Result<Value> {
        let ca = self.tls.join("ca.pem");
        let token = self.token_file();
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--server",
            &self.server,
            "--ca",
            self.path_str(&ca)?,
            "--token-file",
            self.path_str(&token)?,
        ]);
        if echo {
            println!("$ goldmount-appliance {}", self.short(&args.join(" ")));
        }
        let out = procs::output(&self.bins.appliance, &all)?;
        if out.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&out)
            .with_context(|| format!("goldmount-appliance {args:?}: expected JSON, got {out:?}"))
    }

    fn token_file(&self) -> PathBuf {
        self.dir.join("appliance/api-token")
    }

    /// GET `url` with curl, trusting the dev CA, authenticated as `auth`
    /// says; its JSON answer.
    fn get(&self, url: &str, auth: Auth) -> Result<Value> {
        let ca = self.tls.join("ca.pem");
        let mut args: Vec<String> = vec![
            "-sS".into(),
            "--fail-with-body".into(),
            "--max-time".into(),
            "20".into(),
            "--cacert".into(),
            ca.to_string_lossy().into_owned(),
        ];
        match auth {
            Auth::None => {}
            Auth::Token => {
                // From a file: the token stays off the command line.
                args.push("-H".into());
                args.push(format!("@{}", self.dir.join("auth.header").display()));
            }
            Auth::ClientCert => {
                for (flag, f) in [("--cert", "client.pem"), ("--key", "client-key.pem")] {
                    args.push(flag.into());
                    args.push(self.tls.join(f).to_string_lossy().into_owned());
                }
            }
        }
        args.push(url.into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = procs::output(Path::new("curl"), &args)?;
        serde_json::from_str(&out).with_context(|| format!("GET {url}: expected JSON, got {out:?}"))
    }

    fn flow(&mut self) -> Result<()> {
        println!("\n== 1. a gold disk, made by sgdisk, mkfs.ext4 and mkfs.xfs");
        let gold = golddisk::build(&self.dir, "pg-gold.img").map_err(anyhow::Error::msg)?;
        let gold_s = self.path_str(&gold)?.to_string();
        self.show(&self.bins.goldmount, &["probe", &gold_s])
            .map(|o| print!("{o}"))?;
        check_interrupt()?;

        println!("\n== 2. a development PKI for the control API");
        let tls = self.path_str(&self.tls)?.to_string();
        self.show(&self.bins.goldmount, &["certs", "init", &tls])
            .map(|o| print!("{}", self.short(&o)))?;
        check_interrupt()?;

        println!("\n== 3. the appliance (loop backend, HTTPS) and goldmountd (mutual TLS)");
        self.start_appliance()?;
        check_interrupt()?;
        let host = self.start_daemon()?;
        check_interrupt()?;

        println!("\n== 4. the gold copy, imported");
        let g = self.appliance_cli(&["gold", "import", GOLD, &gold_s], true)?;
        println!(
            "  gold copy {GOLD}: {} MiB, imported by {} (clones of it are reflinks on the XFS pool)",
            g["size"].as_u64().unwrap_or(0) >> 20,
            g["copy_mode"].as_str().unwrap_or("?")
        );
        let gold_file = match g["file"].as_str().map(PathBuf::from) {
            Some(f) if f.is_absolute() => f,
            Some(f) => self.dir.join("appliance").join(f),
            None => bail!("gold import answered without a file: {g}"),
        };
        check_interrupt()?;

        println!("\n== 5. one call per clone: clone, present, goldmountd mounts and publishes");
        let media = self.dir.join("media");
        let mut answers = Vec::new();
        for v in VOLUMES {
            let path = media.join(v);
            let path_s = self.path_str(&path)?.to_string();
            self.mounted.insert(v.to_string());
            let t = Instant::now();
            let m = self.appliance_cli(
                &[
                    "mount", GOLD, "--host", &host, "--volume", v, "--path", &path_s,
                ],
                true,
            )?;
            let wall = t.elapsed();
            let tm = &m["timings"];
            println!(
                "  {v}: {} ms for the call (appliance: clone {} ms, present {} ms, \
                 goldmountd {} ms, total {} ms)",
                ms(wall),
                tm["clone_ms"],
                tm["present_ms"],
                tm["connector_ms"],
                tm["total_ms"]
            );
            check_layout(v, &m)?;
            answers.push((v, path, m));
            check_interrupt()?;
        }
        if let Some((v, _, m)) = answers.first() {
            println!("\nfilesystems of {v}, assembled from its own /etc/fstab:");
            for mnt in m["manifest"]["mounts"].as_array().into_iter().flatten() {
                println!(
                    "  {:<10} {:<5} label {:<6} {}{}",
                    mnt["original_mountpoint"].as_str().unwrap_or("?"),
                    mnt["fs_type"].as_str().unwrap_or("?"),
                    mnt["label"].as_str().unwrap_or("-"),
                    mnt["source"].as_str().unwrap_or("?"),
                    match mnt["partition"].as_u64() {
                        Some(n) if mnt["via_offset_loop"] == true =>
                            format!(" (partition {n}, offset loop device)"),
                        Some(n) => format!(" (partition {n})"),
                        None => String::new(),
                    }
                );
            }
        }
        println!("\nthe published trees, side by side:");
        let trees: Vec<(String, Vec<String>)> = answers
            .iter()
            .map(|(_, p, _)| (self.short(&p.to_string_lossy()), super::tree(p, 3)))
            .collect();
        print_columns(&trees);
        for (v, _, _) in &answers {
            let want = ["etc/fstab", "etc/hostname", "boot/vmlinuz", RECORD];
            for f in want {
                ensure!(
                    trees.iter().all(|(_, t)| t.iter().any(|l| l == f)),
                    "{v}: expected {f} in the published tree"
                );
            }
        }
        check_interrupt()?;

        println!("\n== 6. a write in pgsql1 reaches neither pgsql2, pgsql3 nor the gold copy");
        std::fs::write(
            media.join("pgsql1").join(RECORD),
            "id,name\n1,changed in pgsql1\n",
        )
        .context("writing into pgsql1")?;
        for v in VOLUMES {
            let text = std::fs::read_to_string(media.join(v).join(RECORD))
                .with_context(|| format!("reading {v}/{RECORD}"))?;
            println!("  {v}/{RECORD}: {:?}", text.lines().nth(1).unwrap_or(""));
            let expected = if v == "pgsql1" {
                "id,name\n1,changed in pgsql1\n"
            } else {
                golddisk::FILES[2].1
            };
            ensure!(
                text == expected,
                "{v}/{RECORD}: expected {expected:?}, found {text:?}"
            );
        }
        check_interrupt()?;

        println!("\n== 7. one call per clone takes it all down");
        for v in VOLUMES {
            let t = Instant::now();
            self.appliance_cli(&["unmount", v], true)?;
            self.mounted.remove(v);
            println!(
                "  {v}: unmounted, unpresented and deleted in {} ms",
                ms(t.elapsed())
            );
        }
        self.check_nothing_mounted(&media)?;
        let same = Command::new("cmp")
            .args(["-s"])
            .arg(&gold_file)
            .arg(&gold)
            .status()
            .context("running cmp")?;
        ensure!(
            same.success(),
            "the appliance's gold copy {} differs from the image it was imported from",
            gold_file.display()
        );
        println!("  the gold copy is byte for byte the image it was imported from");
        Ok(())
    }

    /// The reflink XFS, then `goldmount-appliance serve` on it; waits until
    /// it answers over HTTPS.
    fn start_appliance(&mut self) -> Result<()> {
        let pool = self.dir.join("appliance.xfs");
        std::fs::File::create(&pool)
            .and_then(|f| f.set_len(POOL_BYTES))
            .with_context(|| format!("creating {}", pool.display()))?;
        procs::output(
            Path::new("mkfs.xfs"),
            &["-q", "-f", "-m", "reflink=1", self.path_str(&pool)?],
        )?;
        let data = self.dir.join("appliance");
        std::fs::create_dir_all(&data)?;
        procs::output(
            Path::new("mount"),
            &[self.path_str(&pool)?, self.path_str(&data)?],
        )?;
        let port = free_port()?;
        self.server = format!("https://127.0.0.1:{port}");
        let listen = format!("127.0.0.1:{port}");
        let f = |n: &str| self.tls.join(n).to_string_lossy().into_owned();
        let args = [
            "serve".to_string(),
            "--backend".into(),
            "loop".into(),
            "--listen".into(),
            listen,
            "--data-dir".into(),
            self.path_str(&data)?.into(),
            "--import-from".into(),
            self.path_str(&self.dir)?.into(),
            "--tls-cert".into(),
            f("server.pem"),
            "--tls-key".into(),
            f("server-key.pem"),
            "--client-cert".into(),
            f("client.pem"),
            "--client-key".into(),
            f("client-key.pem"),
            "--mount-deadline-secs".into(),
            "120".into(),
        ];
        println!("$ goldmount-appliance {} &", self.short(&args.join(" ")));
        let mut cmd = Command::new(&self.bins.appliance);
        cmd.args(&args).env_remove("GOLDMOUNT_APPLIANCE_TOKEN");
        self.appliance = Some(Service::start(
            "goldmount-appliance",
            cmd,
            &self.dir.join("appliance.log"),
        )?);
        let t = Instant::now();
        let health = format!("{}/healthz", self.server);
        loop {
            if let Some(a) = self.appliance.as_mut() {
                a.check_running()?;
            }
            check_interrupt()?;
            if self.token_file().exists() && self.get(&health, Auth::None).is_ok() {
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                bail!(
                    "the appliance did not answer on {health} within 30 s (log: {})",
                    self.dir.join("appliance.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let token = std::fs::read_to_string(self.token_file())
            .with_context(|| format!("reading {}", self.token_file().display()))?;
        let mut h = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(self.dir.join("auth.header"))?;
        writeln!(h, "Authorization: Bearer {}", token.trim())?;
        println!(
            "  appliance answers on {} after {} ms (API token in $DEMO/appliance/api-token)",
            self.server,
            ms(t.elapsed())
        );
        Ok(())
    }

    /// goldmountd with a throwaway config; waits until it has registered
    /// this host with the appliance and returns the host's name there.
    fn start_daemon(&mut self) -> Result<String> {
        let port = free_port()?;
        self.control = format!("https://127.0.0.1:{port}");
        let d = self.dir.join("goldmountd");
        std::fs::create_dir_all(&d)?;
        let t = |n: &str| toml_str(&self.tls.join(n));
        let config = format!(
            "[control]\nlisten = \"127.0.0.1:{port}\"\ncert = {}\nkey = {}\nclient_ca = {}\n\
             client_subject = \"goldmount-appliance\"\nshutdown_grace_secs = 10\n\n\
             [engine]\nvolumes_root = {}\nstate_path = {}\nrun_dir = {}\n\n\
             [appliance]\nurl = \"{}\"\nca = {}\ntoken_file = {}\ncallback_url = \"{}\"\n\
             server_ca = {}\nretry_max_secs = 2\n",
            t("server.pem"),
            t("server-key.pem"),
            t("ca.pem"),
            toml_str(&d.join("volumes")),
            toml_str(&d.join("state/state.redb")),
            toml_str(&d.join("run")),
            self.server,
            t("ca.pem"),
            toml_str(&self.token_file()),
            self.control,
            t("ca.pem"),
        );
        let cfg = d.join("config.toml");
        std::fs::write(&cfg, &config).with_context(|| format!("writing {}", cfg.display()))?;
        println!("{}:", self.short(&cfg.to_string_lossy()));
        for l in config.lines().filter(|l| !l.is_empty()) {
            println!("  {}", self.short(l));
        }
        println!(
            "$ goldmountd --config {} &",
            self.short(&cfg.to_string_lossy())
        );
        let mut cmd = Command::new(&self.bins.goldmountd);
        cmd.arg("--config").arg(&cfg);
        for v in [
            "GOLDMOUNT_CONFIG",
            "GOLDMOUNT_LOG",
            "GOLDMOUNT_STATE",
            "GOLDMOUNT_VOLUMES_ROOT",
            "GOLDMOUNT_RUN_DIR",
            "GOLDMOUNT_APPLIANCE_TOKEN",
            "NOTIFY_SOCKET",
        ] {
            cmd.env_remove(v);
        }
        self.daemon = Some(Service::start(
            "goldmountd",
            cmd,
            &self.dir.join("goldmountd.log"),
        )?);
        let t0 = Instant::now();
        let health = format!("{}/healthz", self.control);
        let mut last = Value::Null;
        loop {
            if let Some(d) = self.daemon.as_mut() {
                d.check_running()?;
            }
            check_interrupt()?;
            if let Ok(h) = self.get(&health, Auth::ClientCert) {
                if h["registration"]["state"] == "registered" {
                    last = h;
                    break;
                }
                last = h;
            }
            if t0.elapsed() > Duration::from_secs(60) {
                bail!(
                    "goldmountd did not register with the appliance within 60 s; last /healthz: \
                     {last}"
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let host = last["registration"]["host"]
            .as_str()
            .context("/healthz says registered but names no host")?
            .to_string();
        println!(
            "  goldmountd registered this host as {host:?} {} ms after it started \
             (its /healthz: registration {})",
            ms(t0.elapsed()),
            last["registration"]["state"]
        );
        let hosts = self.appliance_cli(&["host", "list"], true)?;
        let known = hosts
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["name"] == host.as_str())
            .with_context(|| format!("the appliance does not list host {host:?}: {hosts}"))?;
        println!(
            "  the appliance knows {host}: iqns {}, callback {}",
            known["iqns"],
            known["callback_url"].as_str().unwrap_or("none")
        );
        Ok(host)
    }

    /// After the unmounts: the appliance lists no clone, presentation or
    /// mount, goldmountd no volume; nothing is mounted under the paths or
    /// goldmountd's directories, no loop device is backed by a clone.
    fn check_nothing_mounted(&self, media: &Path) -> Result<()> {
        for what in ["clones", "presentations", "mounts"] {
            let v = self.get(&format!("{}/v1/{what}", self.server), Auth::Token)?;
            ensure!(
                v == Value::Array(vec![]),
                "the appliance still lists {what}: {v}"
            );
        }
        let v = self.get(&format!("{}/v1/volumes", self.control), Auth::ClientCert)?;
        ensure!(
            v == Value::Array(vec![]),
            "goldmountd still lists volumes: {v}"
        );
        let mut left = Vec::new();
        for d in [media.to_path_buf(), self.dir.join("goldmountd")] {
            left.extend(
                host::mounts_under(&d)
                    .into_iter()
                    .map(|m| m.display().to_string()),
            );
        }
        left.extend(
            host::loops_under(&self.dir.join("appliance/clones"))
                .into_iter()
                .map(|(d, b)| format!("{} -> {}", d.display(), b.display())),
        );
        ensure!(left.is_empty(), "left behind: {}", left.join(", "));
        println!(
            "  the appliance lists no clone, presentation or mount; goldmountd no volume; \
             no mount under $DEMO/media or goldmountd's directories; no loop device of a clone"
        );
        Ok(())
    }

    /// Ends of the services' logs, for a failed run (the files go with the
    /// work directory).
    fn print_logs(&self) {
        for (name, s) in [("appliance", &self.appliance), ("goldmountd", &self.daemon)] {
            if let Some(s) = s {
                eprintln!("--- the end of the {name}'s log:\n{}", s.log_tail(15));
            }
        }
    }

    /// Undoes everything, in order, whatever happened: the volumes still
    /// mounted (by the appliance, forced), goldmountd and the appliance
    /// (SIGTERM), the pool, then any mount or loop device left under the
    /// work directory, then the directory. Returns what is left.
    fn teardown(&mut self, clean_run: bool) -> Vec<String> {
        println!("\n== teardown");
        let live = self
            .appliance
            .as_mut()
            .is_some_and(|a| a.check_running().is_ok())
            && self
                .daemon
                .as_mut()
                .is_some_and(|d| d.check_running().is_ok());
        for v in std::mem::take(&mut self.mounted) {
            if !live {
                break;
            }
            match self.appliance_cli(&["unmount", &v, "--force"], true) {
                Ok(_) => println!("  {v}: unmounted"),
                Err(e) => println!("  {v}: {e:#}"),
            }
        }
        let mut left = Vec::new();
        for (name, svc) in [
            ("goldmountd", self.daemon.take()),
            ("goldmount-appliance", self.appliance.take()),
        ] {
            let Some(mut svc) = svc else { continue };
            let pid = svc.pid();
            match svc.stop(Duration::from_secs(15)) {
                Ok(Some((st, took))) => {
                    println!("  {name} stopped with SIGTERM ({st}) in {} ms", ms(took));
                    if clean_run && !st.success() {
                        left.push(format!("{name} exited with {st} (expected 0 at SIGTERM)"));
                    }
                }
                Ok(None) => {}
                Err(e) => left.push(format!("{name} (pid {pid:?}): {e:#}")),
            }
        }
        let data = self.dir.join("appliance");
        if host::mounts_under(&data).contains(&data) {
            match procs::output(Path::new("umount"), &[data.to_string_lossy().as_ref()]) {
                Ok(_) => println!("  unmounted the appliance's pool"),
                Err(e) => println!("  {e:#}"),
            }
        }
        let swept = host::sweep(&self.dir);
        if !swept.is_empty() {
            println!("  swept: {}", swept.join(", "));
            if clean_run {
                left.push(format!(
                    "had to sweep after a clean run: {}",
                    swept.join(", ")
                ));
            }
        }
        left.extend(host::leftovers(&self.dir));
        if left.iter().all(|l| !l.starts_with("mount ")) {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                left.push(format!("{} not removed: {e}", self.dir.display()));
            }
        } else {
            left.push(format!("{} kept (mounts under it)", self.dir.display()));
        }
        if left.is_empty() {
            println!(
                "  no mount or loop device under $DEMO, no goldmountd or appliance process; \
                 $DEMO removed"
            );
        } else {
            for l in &left {
                println!("  LEFT: {l}");
            }
        }
        left
    }
}

/// The manifest of `v` is the gold host's fstab layout: /, /boot and
/// /srv/data.
fn check_layout(v: &str, m: &Value) -> Result<()> {
    let man = &m["manifest"];
    ensure!(
        man["layout"] == "fstab",
        "{v}: expected the fstab layout, got {}",
        man["layout"]
    );
    let points: Vec<&str> = man["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["original_mountpoint"].as_str())
        .collect();
    for p in ["/", "/boot", "/srv/data"] {
        ensure!(
            points.contains(&p),
            "{v}: expected a filesystem for {p}, got {points:?}"
        );
    }
    Ok(())
}

/// Prints lists as columns, each headed by its title.
fn print_columns(cols: &[(String, Vec<String>)]) {
    let width = cols
        .iter()
        .flat_map(|(t, l)| std::iter::once(t.len()).chain(l.iter().map(String::len)))
        .max()
        .unwrap_or(0)
        + 2;
    let rows = cols.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
    let line = |cells: Vec<&str>| {
        let s: String = cells.iter().map(|c| format!("{c:<width$}")).collect();
        println!("  {}", s.trim_end());
    };
    line(cols.iter().map(|(t, _)| t.as_str()).collect());
    for r in 0..rows {
        line(
            cols.iter()
                .map(|(_, l)| l.get(r).map(String::as_str).unwrap_or(""))
                .collect(),
        );
    }
}
