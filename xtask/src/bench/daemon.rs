//! `cargo xtask bench daemon`: the release goldmountd on this host — its
//! resident memory when idle (issue 10: at most 20 MiB) and after one API
//! call, and how long it takes from start to "registered" on an appliance
//! (the release `goldmount-appliance` with its loop backend, on loopback).
//!
//! Every run gets a throwaway directory (development certificates from
//! `goldmountd dev-pki`, its own state, run dir and volumes root, as
//! `daemon/tests/binary.rs` does); `/healthz` is asked with curl and the
//! client certificate; memory is `VmRSS` / `VmHWM` of `/proc/PID/status`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// How long the daemon stays idle before its memory is read.
const IDLE: Duration = Duration::from_secs(5);
/// Give up on a daemon that does not answer within this.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The budget for idle RSS.
const RSS_BUDGET_KIB: u64 = 20 * 1024;

/// Options of `bench daemon`.
pub struct DaemonArgs {
    /// Runs of each measurement (default 5).
    pub rounds: usize,
    /// Release binaries already built (`--bin-dir DIR`): no cargo build,
    /// e.g. the ones a running `cargo xtask lab --bench` uses.
    pub bin_dir: Option<PathBuf>,
}

impl DaemonArgs {
    /// Parses `[--rounds N] [--bin-dir DIR]`.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut rounds = 5;
        let mut bin_dir = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--rounds" => {
                    let v = it.next().context("--rounds needs a value")?;
                    rounds = v
                        .parse()
                        .with_context(|| format!("--rounds expects a number, found {v:?}"))?;
                }
                "--bin-dir" => {
                    bin_dir = Some(PathBuf::from(it.next().context("--bin-dir needs a value")?));
                }
                other => bail!(
                    "bench daemon: unknown option {other:?} (expected --rounds N, --bin-dir DIR)"
                ),
            }
        }
        ensure!(rounds > 0, "--rounds must be at least 1");
        Ok(Self { rounds, bin_dir })
    }
}

/// The release binaries under test (also the Docker bench's).
pub(super) struct Bins {
    pub(super) goldmountd: PathBuf,
    pub(super) appliance: PathBuf,
}

/// Builds (or takes from `bin_dir`) the release goldmountd and appliance —
/// the same package set as the lab's bench build, so one build serves all.
pub(super) fn build(target: &Path, bin_dir: Option<&Path>) -> Result<Bins> {
    if let Some(dir) = bin_dir {
        let canon = |name: &str| {
            let p = dir.join(name);
            std::fs::canonicalize(&p).with_context(|| format!("{}: no such binary", p.display()))
        };
        return Ok(Bins {
            goldmountd: canon("goldmountd")?,
            appliance: canon("goldmount-appliance")?,
        });
    }
    let st = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-q",
            // The same set as `cargo xtask lab --bench` builds, so that
            // one build (same feature unification) serves both.
            "-p",
            "connector",
            "--bin",
            "goldmount",
            "-p",
            "goldmountd",
            "--bin",
            "goldmountd",
            "-p",
            "appliance",
            "--bin",
            "goldmount-appliance",
        ])
        .status()
        .context("building the release goldmountd and appliance")?;
    ensure!(st.success(), "cargo build --release failed ({st})");
    let canon = |name: &str| {
        let p = target.join("release").join(name);
        std::fs::canonicalize(&p).with_context(|| format!("{}: not built", p.display()))
    };
    Ok(Bins {
        goldmountd: canon("goldmountd")?,
        appliance: canon("goldmount-appliance")?,
    })
}

pub(super) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .context("binding a free port")?
        .local_addr()?
        .port())
}

/// A child process killed (by its own pid) and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One throwaway goldmountd set-up: certificates, config, port.
struct Setup {
    dir: PathBuf,
    port: u16,
    config: PathBuf,
}

impl Setup {
    /// `appliance`: `(url, token file)` to add an `[appliance]` section.
    fn new(bins: &Bins, dir: &Path, appliance: Option<(&str, &Path)>) -> Result<Self> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tls = dir.join("tls");
        let out = Command::new(&bins.goldmountd)
            .arg("dev-pki")
            .arg(&tls)
            .args(["--hostname", "localhost", "--san", "127.0.0.1"])
            .output()
            .context("running goldmountd dev-pki")?;
        ensure!(
            out.status.success(),
            "goldmountd dev-pki failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port()?;
        let mut text = format!(
            "[control]\nlisten = \"127.0.0.1:{port}\"\ncert = \"{t}/server.pem\"\n\
             key = \"{t}/server-key.pem\"\nclient_ca = \"{t}/ca.pem\"\n\
             client_subject = \"goldmount-appliance\"\nshutdown_grace_secs = 5\n\n\
             [engine]\nvolumes_root = \"{d}/volumes\"\nstate_path = \"{d}/state.redb\"\n\
             run_dir = \"{d}/run\"\n\n[log]\nformat = \"json\"\nlevel = \"info\"\n",
            t = tls.display(),
            d = dir.display()
        );
        if let Some((url, token)) = appliance {
            text.push_str(&format!(
                "\n[appliance]\nurl = \"{url}\"\ntoken_file = \"{}\"\n",
                token.display()
            ));
        }
        let config = dir.join("config.toml");
        std::fs::write(&config, text)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            port,
            config,
        })
    }

    fn spawn(&self, bins: &Bins) -> Result<Proc> {
        let log = std::fs::File::create(self.dir.join("goldmountd.log"))?;
        let child = Command::new(&bins.goldmountd)
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env_remove("GOLDMOUNT_LOG")
            .env_remove("GOLDMOUNT_STATE")
            .env_remove("GOLDMOUNT_VOLUMES_ROOT")
            .env_remove("GOLDMOUNT_RUN_DIR")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", bins.goldmountd.display()))?;
        Ok(Proc(child))
    }

    /// `GET path` over mutual TLS with the development client certificate;
    /// `None` while it does not answer 200.
    fn get(&self, path: &str) -> Option<String> {
        let tls = self.dir.join("tls");
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "5", "--cacert"])
            .arg(tls.join("ca.pem"))
            .arg("--cert")
            .arg(tls.join("client.pem"))
            .arg("--key")
            .arg(tls.join("client-key.pem"))
            .arg(format!("https://localhost:{}{path}", self.port))
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Polls `GET path` until `ok` accepts the body; the seconds it took
    /// since `since`.
    fn wait_for(
        &self,
        p: &mut Proc,
        path: &str,
        since: Instant,
        ok: impl Fn(&str) -> bool,
    ) -> Result<f64> {
        loop {
            if let Some(body) = self.get(path) {
                if ok(&body) {
                    return Ok(since.elapsed().as_secs_f64());
                }
            }
            if let Some(st) = p.0.try_wait()? {
                bail!(
                    "goldmountd exited ({st}); log:\n{}",
                    std::fs::read_to_string(self.dir.join("goldmountd.log")).unwrap_or_default()
                );
            }
            ensure!(
                since.elapsed() < START_TIMEOUT,
                "GET {path} did not answer as expected within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `VmRSS` and `VmHWM` (KiB) of `pid`.
fn memory_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("/proc/{pid}/status has no {name}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// One memory run's figures.
struct MemRun {
    healthy_s: f64,
    idle_rss: u64,
    after_call_rss: u64,
    hwm: u64,
}

fn memory_run(bins: &Bins, dir: &Path) -> Result<MemRun> {
    let s = Setup::new(bins, dir, None)?;
    let t0 = Instant::now();
    let mut p = s.spawn(bins)?;
    let healthy_s = s.wait_for(&mut p, "/healthz", t0, |_| true)?;
    std::thread::sleep(IDLE);
    let (idle_rss, _) = memory_kib(p.0.id())?;
    let volumes = s
        .get("/v1/volumes")
        .context("GET /v1/volumes did not answer 200")?;
    ensure!(
        volumes.trim_start().starts_with('['),
        "GET /v1/volumes: expected a JSON list, found {volumes:?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    let (after_call_rss, hwm) = memory_kib(p.0.id())?;
    Ok(MemRun {
        healthy_s,
        idle_rss,
        after_call_rss,
        hwm,
    })
}

/// The appliance (loop backend) on a free loopback port with its token.
fn start_appliance(bins: &Bins, dir: &Path) -> Result<(Proc, String, PathBuf)> {
    let data = dir.join("appliance");
    std::fs::create_dir_all(&data)?;
    let token = dir.join("api-token");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        // The appliance refuses a token file others can read.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&token)
            .with_context(|| format!("creating {}", token.display()))?;
        writeln!(f, "bench-daemon-registration-token-0123456789")?;
    }
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("appliance.log"))?;
    let child = Command::new(&bins.appliance)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(&data)
        .arg("--token-file")
        .arg(&token)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("spawning {}", bins.appliance.display()))?;
    let mut p = Proc(child);
    let t0 = Instant::now();
    loop {
        let ok = Command::new("curl")
            .args(["-sf", "--max-time", "2", &format!("{url}/healthz")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
        if let Some(st) = p.0.try_wait()? {
            bail!(
                "the appliance exited ({st}); log:\n{}",
                std::fs::read_to_string(dir.join("appliance.log")).unwrap_or_default()
            );
        }
        ensure!(
            t0.elapsed() < START_TIMEOUT,
            "the appliance did not answer /healthz"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((p, url, token))
}

/// The appliance's `GET /v1/hosts` (with its token) lists a host.
fn appliance_has_host(url: &str, token: &Path) -> Result<bool> {
    let t = std::fs::read_to_string(token)?;
    let out = Command::new("curl")
        .args([
            "-sf",
            "--max-time",
            "5",
            "-H",
            &format!("Authorization: Bearer {}", t.trim()),
            &format!("{url}/v1/hosts"),
        ])
        .output()?;
    let body = String::from_utf8_lossy(&out.stdout);
    Ok(out.status.success() && body.contains("\"name\""))
}

/// One registration run's figures (seconds since goldmountd was spawned).
struct RegRun {
    /// `/healthz` says `"state":"registered"`.
    registered_s: f64,
    /// The appliance lists the host (checked right after).
    listed: bool,
}

fn registration_run(bins: &Bins, dir: &Path) -> Result<RegRun> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let (_app, url, token) = start_appliance(bins, &dir.join("app"))?;
    let s = Setup::new(bins, &dir.join("daemon"), Some((&url, &token)))?;
    let t0 = Instant::now();
    let mut p = s.spawn(bins)?;
    let registered_s = s.wait_for(&mut p, "/healthz", t0, |b| {
        b.contains("\"state\":\"registered\"")
    })?;
    let listed = appliance_has_host(&url, &token)?;
    Ok(RegRun {
        registered_s,
        listed,
    })
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Entry point of `cargo xtask bench daemon`.
pub fn bench_daemon(args: &DaemonArgs, target: &Path) -> Result<()> {
    let bins = build(target, args.bin_dir.as_deref())?;
    let root = std::fs::canonicalize(".")?
        .join(target)
        .join("bench-daemon");
    let mut mem = Vec::new();
    for i in 0..args.rounds {
        mem.push(memory_run(&bins, &root.join(format!("mem{i}")))?);
    }
    let mut reg = Vec::new();
    for i in 0..args.rounds {
        reg.push(registration_run(&bins, &root.join(format!("reg{i}")))?);
    }
    let _ = std::fs::remove_dir_all(&root);
    println!(
        "release goldmountd ({}), {} runs each",
        bins.goldmountd.display(),
        args.rounds
    );
    println!(
        "{:>4} {:>12} {:>14} {:>20} {:>12} {:>16}",
        "run", "healthy s", "idle RSS MiB", "after 1 call MiB", "peak MiB", "registered s"
    );
    for (i, (m, r)) in mem.iter().zip(&reg).enumerate() {
        println!(
            "{:>4} {:>12.3} {:>14.2} {:>20.2} {:>12.2} {:>16.3}{}",
            i,
            m.healthy_s,
            mib(m.idle_rss),
            mib(m.after_call_rss),
            mib(m.hwm),
            r.registered_s,
            if r.listed {
                ""
            } else {
                "  (appliance did not list the host!)"
            }
        );
    }
    let col = |f: &dyn Fn(&MemRun) -> f64| median(&mem.iter().map(f).collect::<Vec<_>>());
    let idle = col(&|m| mib(m.idle_rss));
    let reg_med = median(&reg.iter().map(|r| r.registered_s).collect::<Vec<_>>());
    println!(
        "median: healthy after {:.3} s; idle RSS {:.2} MiB (budget {:.0} MiB: {}); after one call {:.2} MiB; peak {:.2} MiB; start -> registered {:.3} s",
        col(&|m| m.healthy_s),
        idle,
        mib(RSS_BUDGET_KIB),
        if idle <= mib(RSS_BUDGET_KIB) { "ok" } else { "OVER" },
        col(&|m| mib(m.after_call_rss)),
        col(&|m| mib(m.hwm)),
        reg_med
    );
    ensure!(
        reg.iter().all(|r| r.listed),
        "the appliance did not list the host after a registration"
    );
    Ok(())
}
