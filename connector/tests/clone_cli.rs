//! `goldmount clone` / `unclone` against the real appliance
//! (`goldmount-appliance serve`, loop backend, API token) with an ext4
//! gold image made by mkfs.ext4: in-process steps without goldmountd, the
//! appliance's one call with goldmountd (the real binary) running, an
//! unknown gold copy, a failure after the clone was made, and storage
//! profiles (`GOLD@profile`) resolved from the config file or by goldmountd.
//! Needs root (loop devices, mounts); panics with what to install.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use registration::ApplianceClient;
use serde_json::{json, Value};

fn require_root() {
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata("/proc/self").unwrap().uid(),
        0,
        "these tests need root (loop devices, mounts)"
    );
}

fn run(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e} (apt-get install e2fsprogs mount)"));
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `goldmount-appliance` and `goldmountd`: from `GOLDMOUNT_APPLIANCE_BIN` /
/// `GOLDMOUNTD_BIN`, else built once into this workspace's target directory.
fn binaries() -> &'static (PathBuf, PathBuf) {
    static BINS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_goldmount"))
            .parent()
            .unwrap()
            .to_path_buf();
        let given = (
            std::env::var_os("GOLDMOUNT_APPLIANCE_BIN").map(PathBuf::from),
            std::env::var_os("GOLDMOUNTD_BIN").map(PathBuf::from),
        );
        if let (Some(a), Some(d)) = given {
            return (a, d);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
            .args([
                "build",
                "-q",
                "-p",
                "appliance",
                "--bin",
                "goldmount-appliance",
                "-p",
                "goldmountd",
                "--bin",
                "goldmountd",
            ])
            .status()
            .unwrap();
        assert!(
            st.success(),
            "building goldmount-appliance and goldmountd failed"
        );
        (dir.join("goldmount-appliance"), dir.join("goldmountd"))
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A killed-on-drop child process with its log.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, log: &Path) -> Self {
        let f = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        Proc {
            child,
            log: log.to_path_buf(),
        }
    }
    fn alive(&mut self) {
        if let Some(st) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited ({st}):\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A test bed: scratch directory, the appliance with gold copy `g` (ext4,
/// label `golddata`, holding `hello`), a config for the CLI (and goldmountd).
struct Bed {
    dir: PathBuf,
    config: PathBuf,
    data: PathBuf,
    client: ApplianceClient,
    daemon: Option<Proc>,
    appliance: Option<Proc>,
}

impl Bed {
    fn new(tag: &str, with_daemon: bool) -> Self {
        Self::with_config(tag, with_daemon, "")
    }

    /// A bed whose config file ends with `extra` (e.g. `[profiles.NAME]`).
    fn with_config(tag: &str, with_daemon: bool, extra: &str) -> Self {
        require_root();
        let (appliance_bin, daemon_bin) = binaries().clone();
        let dir = PathBuf::from(format!(
            "/tmp/gm-clone-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("content")).unwrap();
        std::fs::write(dir.join("content/hello"), "from the gold copy\n").unwrap();
        let img = dir.join("gold.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(32 << 20)
            .unwrap();
        run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-L",
                "golddata",
                "-d",
                dir.join("content").to_str().unwrap(),
                img.to_str().unwrap(),
            ],
        );
        let pki = pki::init_dev_pki(&dir.join("tls"), &pki::DevPkiOptions::default()).unwrap();
        let data = dir.join("data");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut appliance = Proc::spawn(
            Command::new(&appliance_bin).args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
                data.to_str().unwrap(),
                "--backend",
                "loop",
                "--import-from",
                dir.to_str().unwrap(),
                "--client-cert",
                pki.client_cert.to_str().unwrap(),
                "--client-key",
                pki.client_key.to_str().unwrap(),
                "--mount-deadline-secs",
                "60",
            ]),
            &dir.join("appliance.log"),
        );
        let token_file = data.join("api-token");
        wait_until("the appliance's /healthz", 20, || {
            appliance.alive();
            ureq_healthz(&url).then_some(())
        });
        let token = std::fs::read_to_string(&token_file).unwrap();
        let client = ApplianceClient::new(&url, None, Some(token.trim().to_string())).unwrap();
        let (s, g) = client
            .call(
                "POST",
                "/v1/gold-copies",
                Some(&json!({"name": "g", "source": img})),
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(s, 201, "{g}");

        let host = dir.join("host");
        let control_port = free_port();
        let socket = host.join("goldmountd.sock");
        let mut text = format!(
            "[engine]\nvolumes_root = \"{h}/volumes\"\nstate_path = \"{h}/state/state.redb\"\n\
             run_dir = \"{h}/run\"\n[appliance]\nurl = \"{url}\"\ntoken_file = \"{t}\"\n",
            h = host.display(),
            t = token_file.display()
        );
        if with_daemon {
            text.push_str(&format!(
                "callback_url = \"https://127.0.0.1:{control_port}\"\nserver_ca = \"{ca}\"\n\
                 [control]\nlisten = \"127.0.0.1:{control_port}\"\ncert = \"{c}\"\nkey = \"{k}\"\n\
                 client_ca = \"{ca}\"\nunix_socket = \"{s}\"\n",
                ca = pki.ca_cert.display(),
                c = pki.server_cert.display(),
                k = pki.server_key.display(),
                s = socket.display()
            ));
        }
        text.push_str(extra);
        let config = dir.join("config.toml");
        std::fs::write(&config, text).unwrap();
        let mut bed = Bed {
            dir: dir.clone(),
            config,
            data,
            client,
            daemon: None,
            appliance: Some(appliance),
        };
        if with_daemon {
            let mut d = Proc::spawn(
                Command::new(&daemon_bin)
                    .args(["--config", bed.config.to_str().unwrap(), "serve"])
                    .env("GOLDMOUNT_LOG", "debug")
                    .env_remove("GOLDMOUNT_VOLUMES_ROOT")
                    .env_remove("GOLDMOUNT_STATE")
                    .env_remove("GOLDMOUNT_RUN_DIR"),
                &dir.join("goldmountd.log"),
            );
            // goldmountd registers this host with its callback at start.
            wait_until("goldmountd's socket and registration", 30, || {
                d.alive();
                let (_, hosts) = bed.get("/v1/hosts");
                let called_back = hosts
                    .as_array()
                    .is_some_and(|a| a.iter().any(|h| h["callback_url"].is_string()));
                (socket.exists() && called_back).then_some(())
            });
            bed.daemon = Some(d);
        }
        bed
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.client
            .call("GET", path, None, Duration::from_secs(30))
            .unwrap()
    }

    fn goldmount(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_goldmount"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("GOLDMOUNT_APPLIANCE_TOKEN")
            .env_remove("GOLDMOUNT_VOLUMES_ROOT")
            .env_remove("GOLDMOUNT_STATE")
            .env_remove("GOLDMOUNT_RUN_DIR")
            .env("GOLDMOUNT_LOG", "info")
            .output()
            .unwrap()
    }

    /// Runs `goldmount ARGS --json`, expecting success; the JSON answer.
    fn ok(&self, args: &[&str]) -> Value {
        let out = self.goldmount(&[args, &["--json"]].concat());
        assert!(
            out.status.success(),
            "goldmount {args:?}: {out:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs `goldmount ARGS`, expecting exit status `code`; its stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.goldmount(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "goldmount {args:?}: {err}");
        err
    }

    fn media(&self, name: &str) -> PathBuf {
        self.dir.join("media").join(name)
    }

    /// Nothing left anywhere: no clone, presentation or mount on the
    /// appliance, no clone image nor loop device over one, no mount under
    /// the scratch directory, no volume or clone record on the host.
    fn assert_clean(&self) {
        for p in ["/v1/clones", "/v1/presentations", "/v1/mounts"] {
            let (s, v) = self.get(p);
            assert_eq!((s, &v), (200, &json!([])), "{p}");
        }
        let clones = self.data.join("clones");
        if clones.exists() {
            let left: Vec<_> = std::fs::read_dir(&clones).unwrap().flatten().collect();
            assert!(left.is_empty(), "clone images left: {left:?}");
        }
        assert_eq!(loops_backed_under(&self.data), Vec::<String>::new());
        assert_eq!(mounts_under(&self.dir), Vec::<String>::new());
        let list = self.ok(&["list"]);
        assert_eq!(list, json!([]), "volumes left on the host");
        let records = self.dir.join("host/state/state.redb.clones");
        if records.exists() {
            let left: Vec<_> = std::fs::read_dir(&records).unwrap().flatten().collect();
            assert!(left.is_empty(), "clone records left: {left:?}");
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        // Whatever a failed test left: unclone by force while the
        // appliance (and goldmountd) still run, then stop them.
        if let (200, Value::Array(vols)) = self
            .client
            .call("GET", "/v1/mounts", None, Duration::from_secs(10))
            .unwrap_or((0, Value::Null))
        {
            for v in vols {
                if let Some(n) = v["volume"].as_str() {
                    let _ = self.goldmount(&["unclone", "--volume", n, "--force"]);
                }
            }
        }
        let recs = self.dir.join("host/state/state.redb.clones");
        if let Ok(rd) = std::fs::read_dir(&recs) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(v) = n.strip_suffix(".json") {
                    let _ = self.goldmount(&["unclone", "--volume", v, "--force"]);
                }
            }
        }
        self.daemon.take();
        self.appliance.take();
        for m in mounts_under(&self.dir).iter().rev() {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        for l in loops_backed_under(&self.data) {
            let dev = l.split(' ').next().unwrap_or_default().to_string();
            let _ = Command::new("losetup").args(["-d", &dev]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ureq_healthz(url: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(url.trim_start_matches("http://")) else {
        return false;
    };
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut b = String::new();
    let _ = s.read_to_string(&mut b);
    b.starts_with("HTTP/1.1 200")
}

/// Mount points at or under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
        .map(str::to_string)
        .collect()
}

/// Loop devices whose backing file is under `dir`.
fn loops_backed_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if Path::new(b.trim_end()).starts_with(dir) {
                out.push(format!("/dev/{n} {}", b.trim_end()));
            }
        }
    }
    out
}

fn without_created(mut v: Value) -> Value {
    v.as_object_mut().unwrap().remove("created");
    v
}

#[test]
fn without_goldmountd_the_cli_clones_presents_mounts_and_takes_it_all_back() {
    let bed = Bed::new("local", false);
    let path = bed.media("v1");
    let p = path.to_str().unwrap();
    let t = Instant::now();
    let a = bed.ok(&["clone", "g", "--volume", "v1", "--path", p]);
    let wall = t.elapsed();
    eprintln!("clone → mounted (in-process) in {wall:?}: {a:#}");
    assert_eq!(
        (a["mounted_by"].as_str(), a["created"].as_bool()),
        (Some("goldmount"), Some(true))
    );
    assert_eq!(a["clone"], "v1");
    assert_eq!(a["presentation"]["transport"], "loop");
    assert_eq!(a["path"], p);
    assert_eq!(
        std::fs::read_to_string(path.join("golddata/hello")).unwrap(),
        "from the gold copy\n"
    );
    assert!(
        mounts_under(&path).contains(&p.to_string()),
        "published at --path"
    );

    // The same request again: the same answer; another one: refused, nothing changed.
    let again = bed.ok(&["clone", "g", "--volume", "v1", "--path", p]);
    assert_eq!(again["created"], false);
    assert_eq!(without_created(again), without_created(a.clone()));
    let err = bed.fails(&["clone", "g", "--volume", "v1", "--read-only"], 3);
    assert!(
        err.contains("already cloned") && err.contains("unclone"),
        "{err}"
    );
    let (_, clones) = bed.get("/v1/clones");
    assert_eq!(clones.as_array().unwrap().len(), 1, "{clones}");
    let (_, pres) = bed.get("/v1/presentations");
    assert_eq!(pres[0]["clone"], "v1");

    // In use: unclone refuses without --force and changes nothing.
    let held = std::fs::File::open(path.join("golddata/hello")).unwrap();
    let err = bed.fails(&["unclone", "--volume", "v1"], 3);
    eprintln!("unclone while in use: {err}");
    assert_eq!(
        std::fs::read_to_string(path.join("golddata/hello")).unwrap(),
        "from the gold copy\n"
    );
    drop(held);

    let u = bed.ok(&["unclone", "--volume", "v1"]);
    eprintln!("unclone: {u:#}");
    assert_eq!(u["clone"], "v1");
    let undone: Vec<&str> = u["undone"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(undone.contains(&"deleted clone v1"), "{undone:?}");
    bed.assert_clean();
    assert!(!path.join("golddata/hello").exists());
    let u = bed.ok(&["unclone", "--volume", "v1"]);
    assert_eq!(u["not_cloned"], true);
}

#[test]
fn with_goldmountd_the_appliance_makes_the_one_call_and_takes_it_back() {
    let bed = Bed::new("daemon", true);
    let path = bed.media("d1");
    let p = path.to_str().unwrap();
    let t = Instant::now();
    let a = bed.ok(&["clone", "g", "--volume", "d1", "--path", p]);
    eprintln!(
        "clone → mounted (through goldmountd) in {:?}: {a:#}",
        t.elapsed()
    );
    assert_eq!(
        (a["mounted_by"].as_str(), a["created"].as_bool()),
        (Some("goldmountd"), Some(true))
    );
    assert_eq!(a["path"], p);
    assert_eq!(
        std::fs::read_to_string(path.join("golddata/hello")).unwrap(),
        "from the gold copy\n"
    );
    let (s, mounts) = bed.get("/v1/mounts");
    assert_eq!(s, 200);
    assert_eq!(mounts.as_array().unwrap().len(), 1, "{mounts}");
    assert_eq!(mounts[0]["volume"], "d1");
    assert_eq!(mounts[0]["phase"], "mounted");
    let again = bed.ok(&["clone", "g", "--volume", "d1", "--path", p]);
    assert_eq!(without_created(again), without_created(a));
    assert!(
        !bed.dir
            .join("host/state/state.redb.clones/d1.json")
            .exists(),
        "the appliance keeps the record of its one call"
    );

    let u = bed.ok(&["unclone", "--volume", "d1"]);
    eprintln!("unclone: {u:#}");
    assert_eq!(u["mounted_by"], "goldmountd");
    bed.assert_clean();
}

#[test]
fn an_unknown_gold_copy_lists_the_ones_there_are_and_creates_nothing() {
    let mut bed = Bed::new("unknown", false);
    let err = bed.fails(&["clone", "nosuch", "--volume", "u1"], 4);
    eprintln!("{err}");
    assert!(
        err.contains("no gold copy \"nosuch\"") && err.contains("it has: g"),
        "{err}"
    );
    bed.assert_clean();

    // The appliance down: its URL and what to check.
    bed.appliance.take();
    let err = bed.fails(&["clone", "g", "--volume", "u2"], 1);
    eprintln!("{err}");
    assert!(
        err.contains("cannot reach the appliance at http://127.0.0.1:")
            && err.contains("is goldmount-appliance serving at http://127.0.0.1:")
            && !err.contains("/v1/"),
        "{err}"
    );
    assert_eq!(bed.ok(&["list"]), json!([]));
}

#[test]
fn a_failure_after_the_clone_was_made_undoes_mount_presentation_and_clone() {
    let bed = Bed::new("undo", false);
    // A system path is refused before anything is asked of the appliance.
    let err = bed.fails(&["clone", "g", "--volume", "f1", "--path", "/etc/x"], 2);
    assert!(err.contains("/etc"), "{err}");
    bed.assert_clean();
    assert!(!Path::new("/etc/x").exists());

    // A non-empty directory: the publication fails after clone, present
    // and mount — all three undone, newest first.
    let busy = bed.media("full");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep"), "mine\n").unwrap();
    let err = bed.fails(
        &[
            "clone",
            "g",
            "--volume",
            "f2",
            "--path",
            busy.to_str().unwrap(),
        ],
        3,
    );
    eprintln!("{err}");
    assert!(err.contains("not empty") || err.contains("empty"), "{err}");
    let unmounted = err.find("unmounted volume f2").expect(&err);
    let unpresented = err.find("unpresented clone f2").expect(&err);
    let deleted = err.find("deleted clone f2").expect(&err);
    assert!(unmounted < unpresented && unpresented < deleted, "{err}");
    assert!(!err.contains("LEFT IN PLACE"), "{err}");
    assert_eq!(
        std::fs::read_to_string(busy.join("keep")).unwrap(),
        "mine\n"
    );
    bed.assert_clean();
}

const GOLD_PROFILE: &str = "[profiles.gold]\nclass = \"gold\"\nread_only = true\n";

/// One `METHOD path` with a JSON body on goldmountd's root-only socket.
fn on_socket(socket: &Path, method: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The appliance's clone `name`.
fn clone_on_appliance(bed: &Bed, name: &str) -> Value {
    let (_, clones) = bed.get("/v1/clones");
    clones
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no clone {name} on the appliance: {clones}"))
}

/// The host's status of volume `name` (`goldmount list`).
fn listed(bed: &Bed, name: &str) -> Value {
    let list = bed.ok(&["list"]);
    list.as_array()
        .unwrap()
        .iter()
        .find(|v| v["volume"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no volume {name} on the host: {list}"))
}

#[test]
fn without_goldmountd_a_profile_of_the_config_file_sets_class_and_read_only() {
    let bed = Bed::with_config("prof", false, GOLD_PROFILE);

    // An unknown profile: refused before anything is made — no clone, and
    // not even this host's registration.
    let err = bed.fails(&["clone", "g@silver", "--volume", "p0"], 4);
    eprintln!("{err}");
    assert!(
        err.contains("unknown profile \"silver\": known profiles are default, gold")
            && err.contains("nothing was created"),
        "{err}"
    );
    let (_, hosts) = bed.get("/v1/hosts");
    assert_eq!(hosts, json!([]), "an unknown profile registered the host");
    bed.assert_clean();
    // `@` and --profile disagreeing: refused before anything is asked.
    let err = bed.fails(
        &["clone", "g@gold", "--profile", "default", "--volume", "p0"],
        2,
    );
    assert!(err.contains("--profile"), "{err}");
    bed.assert_clean();

    // GOLD@gold: the class on the appliance's clone, read-only in the
    // engine's manifest and in the answer.
    let a = bed.ok(&["clone", "g@gold", "--volume", "p1"]);
    eprintln!("{a:#}");
    assert_eq!(
        (
            a["profile"].as_str(),
            a["class"].as_str(),
            a["read_only"].as_bool()
        ),
        (Some("gold"), Some("gold"), Some(true))
    );
    assert_eq!(a["manifest"]["read_only"], true);
    assert_eq!(clone_on_appliance(&bed, "p1")["class"], "gold");
    let st = listed(&bed, "p1");
    assert_eq!(st["manifest"]["read_only"], true, "{st}");
    // --profile is the same as @; the same request again answers the same.
    let again = bed.ok(&["clone", "g", "--profile", "gold", "--volume", "p1"]);
    assert_eq!(without_created(again), without_created(a));
    // The same volume with another profile: refused, nothing changed.
    let err = bed.fails(&["clone", "g", "--volume", "p1"], 3);
    assert!(
        err.contains("profile gold") && err.contains("profile default"),
        "{err}"
    );

    // --read-write wins over the profile's read_only; the class stays.
    let b = bed.ok(&["clone", "g@gold", "--volume", "p2", "--read-write"]);
    assert_eq!(
        (
            b["read_only"].as_bool(),
            b["manifest"]["read_only"].as_bool()
        ),
        (Some(false), Some(false))
    );
    assert_eq!(clone_on_appliance(&bed, "p2")["class"], "gold");
    // No @: the default profile (empty here) — no class, read-write;
    // --read-only wins over it.
    let c = bed.ok(&["clone", "g", "--volume", "p3", "--read-only"]);
    assert_eq!(
        (
            c["profile"].as_str(),
            c["read_only"].as_bool(),
            c["manifest"]["read_only"].as_bool()
        ),
        (Some("default"), Some(true), Some(true))
    );
    assert_eq!(clone_on_appliance(&bed, "p3")["class"], Value::Null);

    for v in ["p1", "p2", "p3"] {
        bed.ok(&["unclone", "--volume", v]);
    }
    bed.assert_clean();
}

#[test]
fn with_goldmountd_the_daemon_resolves_the_profile_from_its_own_set() {
    let bed = Bed::with_config("dprof", true, GOLD_PROFILE);
    let socket = bed.dir.join("host/goldmountd.sock");
    // A profile only goldmountd knows (stored by PUT, not in the file).
    let put = on_socket(&socket, "PUT", "/v1/profiles/ro", r#"{"read_only": true}"#);
    assert!(put.starts_with("HTTP/1.1 201"), "{put}");

    let err = bed.fails(&["clone", "g@silver", "--volume", "q0"], 4);
    eprintln!("{err}");
    assert!(
        err.contains("known profiles are default, gold, ro") && err.contains("goldmountd"),
        "{err}"
    );
    bed.assert_clean();

    // Only read-only: the appliance's one call carries it.
    let a = bed.ok(&["clone", "g@ro", "--volume", "q1"]);
    eprintln!("{a:#}");
    assert_eq!(
        (
            a["mounted_by"].as_str(),
            a["profile"].as_str(),
            a["read_only"].as_bool()
        ),
        (Some("goldmountd"), Some("ro"), Some(true))
    );
    assert_eq!(a["manifest"]["read_only"], true);
    // A class: the one call cannot carry it, so the steps are taken here.
    let out = bed.goldmount(&["clone", "g@gold", "--volume", "q2", "--json"]);
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{note}");
    assert!(note.contains("cannot carry"), "{note}");
    let b: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            b["mounted_by"].as_str(),
            b["class"].as_str(),
            b["read_only"].as_bool()
        ),
        (Some("goldmount"), Some("gold"), Some(true))
    );
    assert_eq!(b["manifest"]["read_only"], true);
    assert_eq!(clone_on_appliance(&bed, "q2")["class"], "gold");

    // After a DELETE of the stored profile the name is unknown to a new
    // clone; the volume made with it keeps its settings.
    let del = on_socket(&socket, "DELETE", "/v1/profiles/ro", "");
    assert!(del.starts_with("HTTP/1.1 200"), "{del}");
    let err = bed.fails(&["clone", "g@ro", "--volume", "q3"], 4);
    assert!(err.contains("unknown profile \"ro\""), "{err}");
    let st = listed(&bed, "q1");
    assert_eq!(st["manifest"]["read_only"], true, "{st}");

    for v in ["q1", "q2"] {
        bed.ok(&["unclone", "--volume", v]);
    }
    bed.assert_clean();
}
