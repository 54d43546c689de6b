//! `cargo xtask bench docker`: what the Docker volume plugin costs a
//! container, against the same container on a plain local volume in the
//! same run (issue 11, "Benchmarks").
//!
//! A throwaway environment under `/tmp/gmbd<pid>`: the release appliance
//! (loop backend, its data on an XFS with `reflink=1` as on an appliance)
//! holding the three-filesystem gold (GPT: `/`, `/boot`, `/srv/data`), the
//! release goldmountd with `[docker]` under the unique driver name
//! `gmbench<pid>` (registered with the appliance), and a private dockerd
//! (`../shared/DOCKER.md`) with an offline busybox image.
//!
//! * Single: `docker volume create` then `docker run --rm -v V:/data IMG cat
//!   /data/srv/data/records.csv` until the first byte of its output, for a
//!   goldmount volume (`-d gmbench<pid> -o source=gold`) and a local volume
//!   (the same file written into it beforehand, off the clock), in
//!   alternating order, `--rounds` times each after one warm-up each. The
//!   goldmount runs are broken down into the plugin's stages from
//!   goldmountd's `/metrics` (scraped on its root-only control socket
//!   before and after each run: the histogram sums and counts of
//!   `goldmount_docker_request_duration_seconds` and
//!   `goldmount_docker_stage_duration_seconds`).
//! * Burst: `--containers` (8) volumes created and containers run at once,
//!   each reading its own clone; total wall against N × the single median;
//!   the engine mounts' mean time and how much they overlapped (their summed
//!   time over the burst's wall time), from `/metrics` too.
//!
//! Everything is torn down on every path that returns or unwinds (a guard's
//! `Drop`): containers and volumes removed through dockerd, dockerd stopped
//! and its cgroups removed, goldmountd stopped, what is left on the
//! appliance unpresented and deleted, loop devices detached, the pool
//! unmounted — then checked, and a leftover fails the benchmark.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::Value;

use super::daemon::{build, free_port, Bins};
use crate::golddisk;
use crate::prereqs::{self, run};

/// The gold copy's name on the appliance.
const GOLD: &str = "gold";
/// The image the containers run.
const IMAGE: &str = "gm-busybox:bench";
/// The file every container reads (through the `/srv/data` submount).
const FILE: &str = "srv/data/records.csv";
/// Give up on a process that does not come up within this.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `bench docker`.
pub struct DockerArgs {
    /// Timed single runs per volume kind (default 5).
    pub rounds: usize,
    /// Bursts per volume kind (default 3).
    pub burst_rounds: usize,
    /// Containers started at once in a burst (default 8).
    pub containers: usize,
}

impl DockerArgs {
    /// Parses `[--rounds N] [--burst-rounds N] [--containers N]`.
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut me = Self {
            rounds: 5,
            burst_rounds: 3,
            containers: 8,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let slot = match a.as_str() {
                "--rounds" => &mut me.rounds,
                "--burst-rounds" => &mut me.burst_rounds,
                "--containers" => &mut me.containers,
                other => bail!(
                    "bench docker: unknown option {other:?} (expected --rounds N, --burst-rounds N, --containers N)"
                ),
            };
            let v = it.next().with_context(|| format!("{a} needs a value"))?;
            *slot = v
                .parse()
                .with_context(|| format!("{a} expects a number, found {v:?}"))?;
            ensure!(*slot > 0, "{a} must be at least 1");
        }
        Ok(me)
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// SIGTERM to `child` (its own pid only), then SIGKILL after `grace`.
fn stop_child(child: &mut Child, grace: Duration) {
    if let Ok(None) = child.try_wait() {
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let t0 = Instant::now();
        while matches!(child.try_wait(), Ok(None)) && t0.elapsed() < grace {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Mount points at or under `dir` (from `/proc/self/mountinfo`).
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    let prefix = format!("{dir}/");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == dir || m.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// Loop devices whose backing file is under `dir`.
fn loops_backed_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if Path::new(b.trim_end()).starts_with(dir) {
                out.push(format!("/dev/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out
}

/// Lazily unmounts every mount at or under `dir`, deepest first.
fn umount_all_under(dir: &Path) {
    let mut left = mounts_under(dir);
    left.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in left {
        let _ = Command::new("umount").args(["-l", &m]).status();
    }
}

/// The docker CLI talking to the private engine; cheap to clone into threads.
#[derive(Clone)]
struct Docker {
    host: String,
}

impl Docker {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(args).env("DOCKER_HOST", &self.host);
        c
    }

    fn output(&self, args: &[&str]) -> Result<Output> {
        self.cmd(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running docker {args:?}"))
    }

    /// `docker ARGS`, which must succeed: its stdout.
    fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.output(args)?;
        ensure!(
            out.status.success(),
            "docker {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `docker run --rm -v VOLUME:/data IMG cat /data/FILE`: seconds from
    /// the spawn to the first byte of output and to the exit; the output
    /// must be `want`.
    fn read_run(&self, volume: &str, want: &str) -> Result<(f64, f64)> {
        let mount = format!("{volume}:/data");
        let path = format!("/data/{FILE}");
        let args = ["run", "--rm", "-v", &mount, IMAGE, "cat", &path];
        let t0 = Instant::now();
        let mut child = self
            .cmd(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning docker run")?;
        let mut stdout = child.stdout.take().context("docker run has no stdout")?;
        let mut first = [0u8; 1];
        let n = stdout.read(&mut first).context("reading docker run")?;
        let first_s = t0.elapsed().as_secs_f64();
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest)?;
        let out = child.wait_with_output()?;
        let exit_s = t0.elapsed().as_secs_f64();
        ensure!(
            out.status.success(),
            "docker {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let mut got = first[..n].to_vec();
        got.extend(rest);
        ensure!(
            got == want.as_bytes(),
            "docker {args:?}: expected {want:?}, read {:?}",
            String::from_utf8_lossy(&got)
        );
        Ok((first_s, exit_s))
    }
}

/// The appliance's HTTP API with its token (curl, as the other benches).
struct ApplianceApi {
    url: String,
    token: PathBuf,
}

impl ApplianceApi {
    /// `METHOD path [json]`: (status, body).
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
        let token = std::fs::read_to_string(&self.token)
            .with_context(|| format!("reading {}", self.token.display()))?;
        let mut c = Command::new("curl");
        c.args([
            "-s",
            "--max-time",
            "30",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ])
        .arg("-H")
        .arg(format!("Authorization: Bearer {}", token.trim()));
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let out = c
            .arg(format!("{}{path}", self.url))
            .output()
            .context("running curl")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let code = code.trim().parse().unwrap_or(0);
        Ok((code, body.to_string()))
    }

    /// The `name` field of every item `GET path` lists (`key`: which field).
    fn names(&self, path: &str, key: &str) -> Result<Vec<String>> {
        let (code, body) = self.call("GET", path, None)?;
        ensure!(code == 200, "GET {path}: HTTP {code}: {body}");
        let v: Value = serde_json::from_str(&body)
            .with_context(|| format!("GET {path}: expected a JSON list, found {body:?}"))?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i[key].as_str().map(str::to_string))
            .collect())
    }
}

/// The plugin's histograms in one `/metrics` text: (operation, stage) →
/// (count, sum of seconds); the stage is empty for the whole request.
#[derive(Debug, Clone, Default)]
struct Scrape(BTreeMap<(String, String), (f64, f64)>);

/// `name="value"` pairs of a sample's label set (values hold no quotes here).
fn labels(set: &str) -> BTreeMap<&str, &str> {
    set.split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim(), v.trim().trim_matches('"')))
        })
        .collect()
}

impl Scrape {
    /// The plugin's request and stage histograms of an OpenMetrics text.
    fn parse(text: &str) -> Self {
        let mut m: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
        for line in text.lines() {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let Some((name, set)) = series.strip_suffix('}').and_then(|s| s.split_once('{')) else {
                continue;
            };
            let (family, part) = match name.rsplit_once('_') {
                Some((f, p @ ("sum" | "count"))) => (f, p),
                _ => continue,
            };
            if !matches!(
                family,
                "goldmount_docker_request_duration_seconds"
                    | "goldmount_docker_stage_duration_seconds"
            ) {
                continue;
            }
            let l = labels(set);
            let Some(op) = l.get("operation") else {
                continue;
            };
            let stage = l.get("stage").copied().unwrap_or_default();
            let slot = m.entry(((*op).to_string(), stage.to_string())).or_default();
            match part {
                "count" => slot.0 = value,
                _ => slot.1 = value,
            }
        }
        Self(m)
    }

    /// What happened between `before` and this scrape.
    fn since(&self, before: &Scrape) -> Scrape {
        Scrape(
            self.0
                .iter()
                .map(|(k, (c, s))| {
                    let (c0, s0) = before.0.get(k).copied().unwrap_or_default();
                    (k.clone(), (c - c0, s - s0))
                })
                .collect(),
        )
    }

    /// (count, seconds) of `op`'s `stage` (`""`: the whole request).
    fn get(&self, op: &str, stage: &str) -> (f64, f64) {
        self.0
            .get(&(op.to_string(), stage.to_string()))
            .copied()
            .unwrap_or_default()
    }
}

/// A private dockerd (DOCKER.md's recipe).
struct Dockerd {
    child: Child,
    dir: PathBuf,
    cgroup: String,
}

/// The whole throwaway environment; [`Env::teardown`] (also run on drop)
/// takes it all away.
struct Env {
    dir: PathBuf,
    pool: PathBuf,
    driver: String,
    socket: PathBuf,
    mounts_root: PathBuf,
    volumes_root: PathBuf,
    appliance_data: PathBuf,
    appliance: Option<Child>,
    api: Option<ApplianceApi>,
    goldmountd: Option<Child>,
    daemon_log: PathBuf,
    dockerd: Option<Dockerd>,
    docker: Docker,
    torn_down: bool,
}

impl Env {
    fn new(tag: &str) -> Result<Self> {
        let dir = PathBuf::from("/tmp").join(format!("gmbd{}", std::process::id()));
        ensure!(
            !dir.exists(),
            "{} exists already: another run of this bench in this process?",
            dir.display()
        );
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pool = dir.join("p");
        Ok(Self {
            socket: PathBuf::from("/run/docker/plugins").join(format!("{tag}.sock")),
            driver: tag.to_string(),
            mounts_root: dir.join("mnt"),
            volumes_root: dir.join("volumes"),
            appliance_data: pool.join("appliance"),
            daemon_log: dir.join("goldmountd.log"),
            docker: Docker {
                host: format!("unix://{}/d/docker.sock", dir.display()),
            },
            pool,
            dir,
            appliance: None,
            api: None,
            goldmountd: None,
            dockerd: None,
            torn_down: false,
        })
    }

    fn api(&self) -> Result<&ApplianceApi> {
        self.api.as_ref().context("the appliance is not running")
    }

    /// An XFS with reflink=1 for the appliance's images, as on an appliance.
    fn make_pool(&self) -> Result<()> {
        let img = self.dir.join("pool.xfs");
        std::fs::File::create(&img)?.set_len(3 << 30)?;
        let img = img.to_string_lossy();
        run("mkfs.xfs", &["-q", "-f", "-m", "reflink=1", &img])?;
        std::fs::create_dir_all(&self.pool)?;
        run("mount", &["-o", "loop", &img, &self.pool.to_string_lossy()])?;
        Ok(())
    }

    fn start_appliance(&mut self, bins: &Bins) -> Result<()> {
        let golds = self.pool.join("golds");
        std::fs::create_dir_all(&golds)?;
        let disk = golddisk::build(&golds, "gold.img").map_err(|e| anyhow!(e))?;
        let port = free_port()?;
        let log = std::fs::File::create(self.dir.join("appliance.log"))?;
        let child = Command::new(&bins.appliance)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&self.appliance_data)
            .args(["--backend", "loop", "--import-from"])
            .arg(&golds)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", bins.appliance.display()))?;
        self.appliance = Some(child);
        let api = ApplianceApi {
            url: format!("http://127.0.0.1:{port}"),
            token: self.appliance_data.join("api-token"),
        };
        let t0 = Instant::now();
        while !(api.token.exists() && api.names("/v1/gold-copies", "name").is_ok()) {
            if let Some(Ok(Some(st))) = self.appliance.as_mut().map(Child::try_wait) {
                bail!(
                    "the appliance exited ({st}); log:\n{}",
                    std::fs::read_to_string(self.dir.join("appliance.log")).unwrap_or_default()
                );
            }
            ensure!(t0.elapsed() < START_TIMEOUT, "the appliance did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
        let body = serde_json::json!({ "name": GOLD, "source": disk }).to_string();
        let (code, text) = api.call("POST", "/v1/gold-copies", Some(&body))?;
        ensure!(
            (200..300).contains(&code),
            "importing the gold: HTTP {code}: {text}"
        );
        self.api = Some(api);
        Ok(())
    }

    fn start_goldmountd(&mut self, bins: &Bins) -> Result<()> {
        let tls = self.dir.join("tls");
        let out = Command::new(&bins.goldmountd)
            .arg("dev-pki")
            .arg(&tls)
            .output()
            .context("running goldmountd dev-pki")?;
        ensure!(
            out.status.success(),
            "goldmountd dev-pki failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let api = self.api()?;
        let t = |f: &str| tls.join(f).display().to_string();
        let text = format!(
            "[control]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\nshutdown_grace_secs = 20\nunix_socket = \"{d}/control.sock\"\n\n\
             [engine]\nvolumes_root = \"{}\"\nstate_path = \"{d}/state/state.redb\"\nrun_dir = \"{d}/run\"\n\n\
             [appliance]\nurl = \"{}\"\ntoken_file = \"{}\"\n\n\
             [docker]\nname = \"{}\"\nmounts_root = \"{}\"\nlun_wait_secs = 60\n\n\
             [log]\nformat = \"json\"\nlevel = \"info\"\n",
            t("server.pem"),
            t("server-key.pem"),
            t("ca.pem"),
            self.volumes_root.display(),
            api.url,
            api.token.display(),
            self.driver,
            self.mounts_root.display(),
            d = self.dir.display(),
        );
        let config = self.dir.join("goldmountd.toml");
        std::fs::write(&config, text)?;
        let log = std::fs::File::create(&self.daemon_log)?;
        let child = Command::new(&bins.goldmountd)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env_remove("GOLDMOUNT_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", bins.goldmountd.display()))?;
        self.goldmountd = Some(child);
        let t0 = Instant::now();
        loop {
            let registered = !self.api()?.names("/v1/hosts", "name")?.is_empty();
            if registered && std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(st))) = self.goldmountd.as_mut().map(Child::try_wait) {
                bail!(
                    "goldmountd exited ({st}); log:\n{}",
                    std::fs::read_to_string(&self.daemon_log).unwrap_or_default()
                );
            }
            ensure!(
                t0.elapsed() < START_TIMEOUT,
                "goldmountd did not register and serve {} within {START_TIMEOUT:?}; log:\n{}",
                self.socket.display(),
                std::fs::read_to_string(&self.daemon_log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_dockerd(&mut self) -> Result<()> {
        let dir = self.dir.join("d");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("daemon.json"),
            format!("{{\"deprecated-key-path\":\"{}/key.json\"}}", dir.display()),
        )?;
        let cgroup = format!("gm-bench-{}", std::process::id());
        let d = |s: &str| format!("{}/{s}", dir.display());
        let log = std::fs::File::create(dir.join("dockerd.log"))?;
        let child = Command::new("dockerd")
            .args([
                "--config-file",
                &d("daemon.json"),
                "--host",
                &self.docker.host,
            ])
            .args(["--data-root", &d("data"), "--exec-root", &d("exec")])
            .args(["--pidfile", &d("dockerd.pid")])
            .args(["--iptables=false", "--ip6tables=false", "--bridge=none"])
            .args(["--storage-driver=overlay2", "--cgroup-parent"])
            .arg(format!("/{cgroup}"))
            .args(["--shutdown-timeout", "2", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning dockerd (apt-get install docker.io)")?;
        self.dockerd = Some(Dockerd {
            child,
            dir: dir.clone(),
            cgroup,
        });
        let t0 = Instant::now();
        while !self.docker.output(&["version"])?.status.success() {
            if let Some(Ok(Some(st))) = self.dockerd.as_mut().map(|d| d.child.try_wait()) {
                bail!("dockerd exited ({st}); see {}", d("dockerd.log"));
            }
            ensure!(
                t0.elapsed() < START_TIMEOUT,
                "dockerd not ready; see {}",
                d("dockerd.log")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.import_busybox()
    }

    /// An offline busybox image (no registry here).
    fn import_busybox(&self) -> Result<()> {
        let root = self.dir.join("rootfs");
        std::fs::create_dir_all(root.join("bin"))?;
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .context("copying /bin/busybox (apt-get install busybox-static)")?;
        for l in ["sh", "cat", "echo", "ls", "sleep"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(l))?;
        }
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .context("running tar")?;
        let out = self
            .docker
            .cmd(&["import", "-c", "ENV PATH=/bin", "-", IMAGE])
            .stdin(tar.stdout.take().context("tar has no stdout")?)
            .output()
            .context("running docker import")?;
        ensure!(tar.wait()?.success(), "tar of the busybox rootfs failed");
        ensure!(
            out.status.success(),
            "docker import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Everything up.
    fn start(&mut self, bins: &Bins) -> Result<()> {
        self.make_pool()?;
        self.start_appliance(bins)?;
        self.start_goldmountd(bins)?;
        self.start_dockerd()
    }

    /// Nothing of a volume left: no mount, engine tree, presentation,
    /// clone or loop device of a clone.
    fn check_clean(&self) -> Result<()> {
        let mut left = mounts_under(&self.mounts_root);
        left.extend(mounts_under(&self.volumes_root));
        left.extend(loops_backed_under(&self.appliance_data.join("clones")));
        let api = self.api()?;
        left.extend(
            api.names("/v1/presentations", "clone")?
                .into_iter()
                .map(|c| format!("presentation of {c}")),
        );
        left.extend(
            api.names("/v1/clones", "name")?
                .into_iter()
                .map(|c| format!("clone {c}")),
        );
        ensure!(
            left.is_empty(),
            "left behind after docker volume rm: {left:?}"
        );
        Ok(())
    }

    /// The plugin's histograms from goldmountd's `/metrics` (on its
    /// root-only control socket).
    fn scrape(&self) -> Result<Scrape> {
        let sock = self.dir.join("control.sock");
        let out = Command::new("curl")
            .args(["-sf", "--max-time", "30", "--unix-socket"])
            .arg(&sock)
            .arg("http://localhost/metrics")
            .output()
            .context("running curl")?;
        ensure!(
            out.status.success(),
            "GET /metrics on {} failed ({}): {}",
            sock.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let m = Scrape::parse(&String::from_utf8_lossy(&out.stdout));
        ensure!(
            !m.0.is_empty() || String::from_utf8_lossy(&out.stdout).contains("goldmount_docker_requests"),
            "goldmountd's /metrics has no goldmount_docker_* families: is it older than the plugin metrics?"
        );
        Ok(m)
    }

    fn stop_dockerd(&mut self, problems: &mut Vec<String>) {
        let Some(mut d) = self.dockerd.take() else {
            return;
        };
        if let Ok(ids) = self.docker.ok(&["ps", "-aq"]) {
            for id in ids.split_whitespace() {
                let _ = self.docker.output(&["rm", "-f", id]);
            }
        }
        if let Ok(vols) = self.docker.ok(&["volume", "ls", "-q"]) {
            for v in vols.split_whitespace() {
                if let Ok(o) = self.docker.output(&["volume", "rm", v]) {
                    if !o.status.success() {
                        problems.push(format!(
                            "docker volume rm {v}: {}",
                            String::from_utf8_lossy(&o.stderr).trim()
                        ));
                    }
                }
            }
        }
        stop_child(&mut d.child, Duration::from_secs(20));
        // Whatever survived (shims, containers) in the bench's cgroups.
        let mut cgroups = Vec::new();
        for base in std::iter::once(PathBuf::from("/sys/fs/cgroup")).chain(
            std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        ) {
            let p = base.join(&d.cgroup);
            if p.is_dir() {
                let mut stack = vec![p];
                while let Some(dir) = stack.pop() {
                    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                        if e.path().is_dir() {
                            stack.push(e.path());
                        }
                    }
                    cgroups.push(dir);
                }
            }
        }
        cgroups.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for cg in &cgroups {
            let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap_or_default();
            for pid in procs
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        if !cgroups.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
        for cg in &cgroups {
            if std::fs::remove_dir(cg).is_err() && cg.exists() {
                problems.push(format!("cgroup {} could not be removed", cg.display()));
            }
        }
        umount_all_under(&d.dir);
    }

    /// Takes everything down (idempotent); what could not be cleaned.
    fn teardown(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        self.torn_down = true;
        let mut problems = Vec::new();
        // Volumes go through dockerd while the plugin still serves.
        self.stop_dockerd(&mut problems);
        if let Some(mut g) = self.goldmountd.take() {
            stop_child(&mut g, Duration::from_secs(30));
        }
        if self.socket.exists() {
            problems.push(format!("goldmountd left {}", self.socket.display()));
            let _ = std::fs::remove_file(&self.socket);
        }
        let mut host = mounts_under(&self.mounts_root);
        host.extend(mounts_under(&self.volumes_root));
        if !host.is_empty() {
            problems.push(format!("mounts left by the plugin: {host:?}"));
            umount_all_under(&self.mounts_root);
            umount_all_under(&self.volumes_root);
        }
        if let Some(api) = &self.api {
            match (
                api.names("/v1/presentations", "clone"),
                api.names("/v1/clones", "name"),
            ) {
                (Ok(p), Ok(c)) => {
                    if !p.is_empty() || !c.is_empty() {
                        problems.push(format!(
                            "left on the appliance: presentations {p:?}, clones {c:?}"
                        ));
                    }
                    for clone in p {
                        let _ = api.call(
                            "DELETE",
                            &format!("/v1/presentations/{clone}?force=true"),
                            None,
                        );
                    }
                    for clone in c {
                        let _ = api.call("DELETE", &format!("/v1/clones/{clone}"), None);
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    problems.push(format!("cannot list the appliance's objects: {e:#}"))
                }
            }
        }
        if let Some(mut a) = self.appliance.take() {
            stop_child(&mut a, Duration::from_secs(10));
        }
        // Loop devices over the appliance's images (the pool's own one is
        // cleared by its unmount).
        let loops = loops_backed_under(&self.pool);
        if !loops.is_empty() {
            problems.push(format!("loop devices left: {loops:?}"));
            for l in &loops {
                let _ = Command::new("losetup").args(["-d", l]).status();
            }
        }
        let _ = Command::new("umount").arg(&self.pool).status();
        umount_all_under(&self.dir);
        let left_mounts = mounts_under(&self.dir);
        let left_loops = loops_backed_under(&self.dir);
        if left_mounts.is_empty() && left_loops.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            problems.push(format!(
                "still there after teardown: mounts {left_mounts:?}, loop devices {left_loops:?} (kept {})",
                self.dir.display()
            ));
        }
        problems
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for p in self.teardown() {
            eprintln!("bench docker teardown: {p}");
        }
    }
}

/// One single run's figures (seconds).
#[derive(Debug, Clone, Copy)]
struct Single {
    create: f64,
    /// `docker run` spawned → first byte.
    first_byte: f64,
    /// `docker run` spawned → exited.
    run_exit: f64,
    remove: f64,
}

impl Single {
    /// Create start → first byte (the two commands back to back).
    fn total(&self) -> f64 {
        self.create + self.first_byte
    }
}

/// The goldmount stages of one single run (seconds, summed over the
/// run's requests, from `/metrics`; NaN when a request did not show).
#[derive(Debug, Clone, Copy)]
struct Stages {
    /// `docker volume create` (dockerd + plugin Create), client-timed.
    create: f64,
    /// The plugin's Create request (gold check, clone, present).
    create_req: f64,
    /// Create: the appliance's clone.
    clone: f64,
    /// Create: the appliance's presentation.
    present: f64,
    /// The plugin's Mount requests.
    mount: f64,
    /// Mount: the engine's attach, probe, import and mount of the tree.
    engine_mount: f64,
    /// Mount: the publication at the mountpoint.
    publish: f64,
    /// The plugin's Unmount requests (unpublish + unmount).
    unmount: f64,
    /// The plugin's Remove request (teardown, unpresent, delete clone).
    remove: f64,
    /// `docker run` spawned → first byte, less the plugin's Mounts
    /// (Docker's own part: container create and start, `cat`).
    to_first_byte: f64,
    /// Mount requests in the run.
    mounts: usize,
}

fn stages(m: &Scrape, first_byte: f64, create: f64) -> Stages {
    let or_nan = |(count, secs): (f64, f64)| if count > 0.0 { secs } else { f64::NAN };
    let mount = or_nan(m.get("mount", ""));
    Stages {
        create,
        create_req: or_nan(m.get("create", "")),
        clone: or_nan(m.get("create", "appliance_clone")),
        present: or_nan(m.get("create", "appliance_present")),
        mount,
        engine_mount: or_nan(m.get("mount", "engine_mount")),
        publish: or_nan(m.get("mount", "publish")),
        unmount: or_nan(m.get("unmount", "")),
        remove: or_nan(m.get("remove", "")),
        to_first_byte: first_byte - mount,
        mounts: m.get("mount", "").0.round() as usize,
    }
}

/// A goldmount volume (`Some(driver)`) or a local one (`None`): create, then
/// the read run; the file is put into a local volume off the clock.
fn single(env: &Env, driver: Option<&str>, name: &str, want: &str) -> Result<Single> {
    let d = &env.docker;
    let t0 = Instant::now();
    match driver {
        Some(drv) => {
            d.ok(&[
                "volume",
                "create",
                "-d",
                drv,
                "-o",
                &format!("source={GOLD}"),
                name,
            ])?;
        }
        None => {
            d.ok(&["volume", "create", name])?;
        }
    }
    let create = t0.elapsed().as_secs_f64();
    if driver.is_none() {
        put_local_file(d, name, want)?;
    }
    let (first_byte, run_exit) = d.read_run(name, want)?;
    let t = Instant::now();
    d.ok(&["volume", "rm", name])?;
    let remove = t.elapsed().as_secs_f64();
    Ok(Single {
        create,
        first_byte,
        run_exit,
        remove,
    })
}

/// Writes `FILE` into a local volume's directory on the host.
fn put_local_file(d: &Docker, name: &str, text: &str) -> Result<()> {
    let mp = d.ok(&["volume", "inspect", "-f", "{{.Mountpoint}}", name])?;
    let path = Path::new(mp.trim()).join(FILE);
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p)?;
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// One burst's figures (seconds).
struct Burst {
    /// First create started → last container exited.
    total: f64,
    /// Per container: create start → first byte.
    per: Vec<f64>,
    /// The plugin's engine mounts during the burst (goldmount only):
    /// how many and their summed seconds.
    engine_mounts: (f64, f64),
}

impl Burst {
    /// The engine mounts' mean time.
    fn mean_engine_mount(&self) -> f64 {
        let (n, secs) = self.engine_mounts;
        if n > 0.0 {
            secs / n
        } else {
            f64::NAN
        }
    }

    /// The engine mounts' summed time over the burst's wall time: about 1
    /// when they ran one after another, up to N when fully side by side
    /// at single-mount speed.
    fn engine_overlap(&self) -> f64 {
        self.engine_mounts.1 / self.total
    }
}

fn burst(env: &Env, driver: Option<&str>, tag: &str, n: usize, want: &str) -> Result<Burst> {
    let before = env.scrape()?;
    let names: Vec<String> = (0..n).map(|i| format!("{tag}{i}")).collect();
    let t0 = Instant::now();
    let per = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| {
                let d = env.docker.clone();
                s.spawn(move || -> Result<f64> {
                    let t = Instant::now();
                    match driver {
                        Some(drv) => d.ok(&[
                            "volume",
                            "create",
                            "-d",
                            drv,
                            "-o",
                            &format!("source={GOLD}"),
                            name,
                        ])?,
                        None => {
                            let o = d.ok(&["volume", "create", name])?;
                            put_local_file(&d, name, want)?;
                            o
                        }
                    };
                    let create = t.elapsed().as_secs_f64();
                    let (first, _) = d.read_run(name, want)?;
                    Ok(create + first)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow!("a burst thread panicked"))
                    .and_then(|r| r)
            })
            .collect::<Vec<Result<f64>>>()
    });
    let total = t0.elapsed().as_secs_f64();
    let mut rm_errors = Vec::new();
    for name in &names {
        if let Err(e) = env.docker.ok(&["volume", "rm", name]) {
            rm_errors.push(format!("{e:#}"));
        }
    }
    let failed: Vec<String> = per
        .iter()
        .zip(&names)
        .filter_map(|(r, n)| r.as_ref().err().map(|e| format!("{n}: {e:#}")))
        .collect();
    ensure!(
        failed.is_empty(),
        "{} of {n} containers failed: {failed:?}",
        failed.len()
    );
    ensure!(
        rm_errors.is_empty(),
        "docker volume rm failed: {rm_errors:?}"
    );
    let engine_mounts = env.scrape()?.since(&before).get("mount", "engine_mount");
    Ok(Burst {
        total,
        per: per.into_iter().filter_map(Result::ok).collect(),
        engine_mounts,
    })
}

/// All figures of one bench run.
struct Figures {
    warm_gm: Single,
    warm_local: Single,
    gm: Vec<Single>,
    local: Vec<Single>,
    stages: Vec<Stages>,
    bursts_gm: Vec<Burst>,
    bursts_local: Vec<Burst>,
}

fn measure(env: &Env, args: &DockerArgs) -> Result<Figures> {
    let want = golddisk::FILES
        .iter()
        .find(|(p, _)| *p == FILE)
        .map(|(_, c)| *c)
        .context("the gold disk has no records.csv")?;
    let drv = Some(env.driver.as_str());
    // Warm-up: the plugin's first use (Activate, Capabilities), page cache.
    let warm_gm = single(env, drv, "warmg", want)?;
    env.check_clean()?;
    let warm_local = single(env, None, "warml", want)?;
    let mut gm = Vec::new();
    let mut local = Vec::new();
    let mut st = Vec::new();
    for i in 0..args.rounds {
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_gm in order {
            if is_gm {
                let name = format!("g{i}");
                let before = env.scrape()?;
                let s = single(env, drv, &name, want)?;
                st.push(stages(
                    &env.scrape()?.since(&before),
                    s.first_byte,
                    s.create,
                ));
                gm.push(s);
                env.check_clean()?;
            } else {
                local.push(single(env, None, &format!("l{i}"), want)?);
            }
        }
    }
    let mut bursts_gm = Vec::new();
    let mut bursts_local = Vec::new();
    for i in 0..args.burst_rounds {
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_gm in order {
            if is_gm {
                bursts_gm.push(burst(env, drv, &format!("bg{i}x"), args.containers, want)?);
                env.check_clean()?;
            } else {
                bursts_local.push(burst(env, None, &format!("bl{i}x"), args.containers, want)?);
            }
        }
    }
    Ok(Figures {
        warm_gm,
        warm_local,
        gm,
        local,
        stages: st,
        bursts_gm,
        bursts_local,
    })
}

fn col<T>(v: &[T], f: impl Fn(&T) -> f64) -> Vec<f64> {
    v.iter().map(f).collect()
}

fn print(f: &Figures, args: &DockerArgs) {
    let row = |kind: &str, i: &str, s: &Single| {
        println!(
            "{kind:>10} {i:>6} {:>9.3} {:>13.3} {:>13.3} {:>10.3} {:>9.3}",
            s.create,
            s.first_byte,
            s.total(),
            s.run_exit,
            s.remove
        );
    };
    println!(
        "\nsingle: docker volume create + docker run --rm -v V:/data {IMAGE} cat /data/{FILE} (seconds; {} rounds each, alternating order, after one warm-up each)",
        args.rounds
    );
    println!(
        "{:>10} {:>6} {:>9} {:>13} {:>13} {:>10} {:>9}",
        "volume", "run", "create", "run->1st byte", "create->byte", "run exit", "rm"
    );
    row("goldmount", "warm", &f.warm_gm);
    row("local", "warm", &f.warm_local);
    for (i, (g, l)) in f.gm.iter().zip(&f.local).enumerate() {
        row("goldmount", &i.to_string(), g);
        row("local", &i.to_string(), l);
    }
    let med = |v: &[Single], c: fn(&Single) -> f64| median(&col(v, c));
    for (kind, v) in [("goldmount", &f.gm), ("local", &f.local)] {
        println!(
            "{kind:>10} {:>6} {:>9.3} {:>13.3} {:>13.3} {:>10.3} {:>9.3}",
            "median",
            med(v, |s| s.create),
            med(v, |s| s.first_byte),
            med(v, Single::total),
            med(v, |s| s.run_exit),
            med(v, |s| s.remove)
        );
    }
    let g = med(&f.gm, Single::total);
    let l = med(&f.local, Single::total);
    println!(
        "goldmount overhead (median create -> first byte): {:.3} s vs {:.3} s = {:.2}x, +{:.3} s",
        g,
        l,
        g / l,
        g - l
    );

    println!("\ngoldmount stages per run, from goldmountd's /metrics (seconds, summed over the run's plugin requests; create and ->1st byte client-timed, ->1st byte less the Mounts)");
    let names = [
        "create",
        "Create req",
        "clone",
        "present",
        "Mount req",
        "engine mount",
        "publish",
        "Unmount req",
        "Remove req",
        "->1st byte",
    ];
    let get: [fn(&Stages) -> f64; 10] = [
        |s| s.create,
        |s| s.create_req,
        |s| s.clone,
        |s| s.present,
        |s| s.mount,
        |s| s.engine_mount,
        |s| s.publish,
        |s| s.unmount,
        |s| s.remove,
        |s| s.to_first_byte,
    ];
    print!("{:>6}", "run");
    for n in names {
        print!(" {n:>12}");
    }
    println!(" {:>7}", "mounts");
    for (i, s) in f.stages.iter().enumerate() {
        print!("{i:>6}");
        for g in get {
            print!(" {:>12.3}", g(s));
        }
        println!(" {:>7}", s.mounts);
    }
    print!("{:>6}", "median");
    for g in get {
        print!(" {:>12.3}", median(&col(&f.stages, g)));
    }
    println!();

    println!(
        "\nburst: {n} volumes created and {n} containers run at once (seconds; {} bursts each, alternating)",
        args.burst_rounds,
        n = args.containers
    );
    println!(
        "{:>10} {:>6} {:>9} {:>14} {:>14} {:>16} {:>14}",
        "volume", "burst", "total", "median per c.", "max per c.", "mean engine m", "total/(N*1)"
    );
    let n = args.containers as f64;
    for (kind, bursts, single) in [
        ("goldmount", &f.bursts_gm, g),
        ("local", &f.bursts_local, l),
    ] {
        for (i, b) in bursts.iter().enumerate() {
            println!(
                "{kind:>10} {i:>6} {:>9.3} {:>14.3} {:>14.3} {:>16.3} {:>14.2}",
                b.total,
                median(&b.per),
                max(&b.per),
                b.mean_engine_mount(),
                b.total / (n * single)
            );
        }
        let tot = median(&col(bursts, |b| b.total));
        println!(
            "{kind:>10}: median burst {tot:.3} s for {n} containers vs {n} x single {:.3} s = {:.3} s: {:.2} of linear ({})",
            single,
            n * single,
            tot / (n * single),
            if tot <= n * single { "<= linear" } else { "ABOVE linear" }
        );
        if bursts.iter().any(|b| b.engine_mounts.0 > 0.0) {
            let overlap: Vec<String> = bursts
                .iter()
                .map(|b| format!("{:.2}", b.engine_overlap()))
                .collect();
            println!(
                "{kind:>10}: engine mount in a burst, mean {:.3} s vs single median {:.3} s; summed engine-mount time / burst wall: {} (1 = one after another, {n} = all side by side at single speed)",
                median(&col(bursts, Burst::mean_engine_mount)),
                median(&col(&f.stages, |s| s.engine_mount)),
                overlap.join(", ")
            );
        }
    }
}

/// Entry point of `cargo xtask bench docker`.
pub fn bench_docker(args: &DockerArgs, target: &Path) -> Result<()> {
    ensure!(
        rustix::process::geteuid().is_root(),
        "bench docker needs root (dockerd, loop devices, mounts)"
    );
    prereqs::ensure_apt(&[
        "docker.io",
        "busybox-static",
        "gdisk",
        "e2fsprogs",
        "xfsprogs",
        "util-linux",
        "curl",
    ])?;
    let bins = build(target, None)?;
    let tag = format!("gmbench{}", std::process::id());
    let t0 = Instant::now();
    let mut env = Env::new(&tag)?;
    let result = env.start(&bins).and_then(|()| {
        eprintln!(
            "bench docker: environment up in {:.1} s (driver {tag}, {})",
            t0.elapsed().as_secs_f64(),
            env.dir.display()
        );
        measure(&env, args)
    });
    let problems = env.teardown();
    let figures = result?;
    println!(
        "release goldmountd ({}) serving the Docker plugin {tag}; appliance (loop backend, reflink XFS); dockerd {}",
        bins.goldmountd.display(),
        run("dockerd", &["--version"]).unwrap_or_default().trim()
    );
    print(&figures, args);
    ensure!(
        problems.is_empty(),
        "teardown left things behind: {problems:?}"
    );
    println!(
        "\nteardown: no mount, loop device, presentation, clone, cgroup or plugin socket left"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const TEXT: &str = r#"# HELP goldmount_docker_stage_duration_seconds Time a stage took.
# TYPE goldmount_docker_stage_duration_seconds histogram
goldmount_docker_stage_duration_seconds_sum{operation="mount",stage="engine_mount"} 1.5
goldmount_docker_stage_duration_seconds_count{operation="mount",stage="engine_mount"} 2
goldmount_docker_stage_duration_seconds_bucket{le="0.04",operation="mount",stage="engine_mount"} 0
goldmount_docker_stage_duration_seconds_sum{stage="appliance_clone",operation="create"} 0.25
goldmount_docker_stage_duration_seconds_count{stage="appliance_clone",operation="create"} 1
goldmount_docker_request_duration_seconds_sum{operation="mount"} 1.75
goldmount_docker_request_duration_seconds_count{operation="mount"} 2
goldmount_docker_requests_total{operation="mount",result="ok"} 2
goldmount_operation_duration_seconds_sum{kind="mount"} 9.0
# EOF"#;

    #[test]
    fn the_plugins_histograms_are_read_from_metrics() {
        let m = Scrape::parse(TEXT);
        assert_eq!(m.get("mount", "engine_mount"), (2.0, 1.5));
        assert_eq!(m.get("create", "appliance_clone"), (1.0, 0.25));
        assert_eq!(m.get("mount", ""), (2.0, 1.75));
        assert_eq!(m.0.len(), 3, "{m:?}");
        assert_eq!(m.get("remove", ""), (0.0, 0.0));
    }

    #[test]
    fn stages_are_the_difference_of_two_scrapes() {
        let before = Scrape::parse(TEXT);
        let after = Scrape::parse(
            &TEXT
                .replace("engine_mount\"} 2\n", "engine_mount\"} 3\n")
                .replace("engine_mount\"} 1.5", "engine_mount\"} 2.25")
                .replace("{operation=\"mount\"} 2\n", "{operation=\"mount\"} 3\n")
                .replace("{operation=\"mount\"} 1.75", "{operation=\"mount\"} 2.75"),
        );
        let d = after.since(&before);
        assert_eq!(d.get("mount", "engine_mount"), (1.0, 0.75));
        let s = stages(&d, 1.25, 0.1);
        assert_eq!(s.mounts, 1);
        assert!((s.mount - 1.0).abs() < 1e-9);
        assert!((s.engine_mount - 0.75).abs() < 1e-9);
        assert!((s.to_first_byte - 0.25).abs() < 1e-9);
        assert!(s.clone.is_nan(), "no clone in the difference: {s:?}");
        assert!(s.create_req.is_nan());
    }
}
