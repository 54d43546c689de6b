//! fsdetect vs `blkid -p` on the shared fixture set: read calls and bytes per
//! image (blkid counted with strace on the image's file descriptor, fsdetect
//! from its own `IoStats` and cross-checked with strace), whether the answers
//! are identical, and the wall time of probing the whole set N times with one
//! process per tool and round.
//!
//! `cargo bench -p fsdetect --bench probe_vs_blkid`; environment:
//! - `FSDETECT_BENCH_ROUNDS` (default 20): timed rounds;
//! - `FSDETECT_BENCH_IMAGES`: extra image paths, comma separated, probed too;
//! - `FSDETECT_BENCH_KEEP`: keep the fixture images (path printed at the end);
//! - `GOLDMOUNT_BIN`: a `goldmount` binary to time (`probe --format udev`)
//!   instead of the `probe` example.
//!
//! Needs root (loop devices for 4K-sector images), `strace` and `blkid`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use fsdetect::{probe_disk, FileSource, IoStats};

/// One probed path: a fixture image, or the loop device standing for it.
struct Target {
    name: String,
    path: PathBuf,
    sector_size: u32,
}

/// What strace saw a tool do on the target's file descriptor.
#[derive(Default, Clone, Copy)]
struct Traced {
    reads: u64,
    bytes: u64,
}

/// One row of the per-image table.
struct Row {
    name: String,
    blkid: Traced,
    blkid_parts: Option<Traced>,
    fsd: IoStats,
    fsd_syscalls: Traced,
    same: bool,
    blkid_out: String,
    blkid_rc: i32,
}

fn main() {
    // `cargo bench` passes `--bench`; ignore any arguments.
    let rounds: usize = std::env::var("FSDETECT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    require_tool("strace", "strace");
    require_tool("blkid", "util-linux");

    let mut fixtures = common::all_fixtures();
    if let Ok(extra) = std::env::var("FSDETECT_BENCH_IMAGES") {
        for p in extra.split(',').filter(|p| !p.is_empty()) {
            let path = PathBuf::from(p);
            fixtures.push(common::Fixture {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                path,
                sector_size: 512,
                needs_loop: false,
            });
        }
    }
    assert!(
        !fixtures.is_empty(),
        "no fixtures: tests/common/fx_*.rs are still empty and FSDETECT_BENCH_IMAGES is unset"
    );
    let mut loops = Vec::new();
    let mut targets = Vec::new();
    for fx in &fixtures {
        let path = if fx.needs_loop {
            let l = common::LoopDevice::attach(&fx.path, fx.sector_size);
            let dev = l.dev.clone();
            loops.push(l);
            dev
        } else {
            fx.path.clone()
        };
        targets.push(Target {
            name: fx.name.clone(),
            path,
            sector_size: fx.sector_size,
        });
    }
    let prober = Prober::find();
    println!(
        "fsdetect prober for the timed rounds: {}",
        prober.describe()
    );

    let rows: Vec<Row> = targets.iter().map(|t| measure(t, &prober)).collect();
    print_table(&rows);
    let answers: Vec<(String, i32)> = rows
        .iter()
        .map(|r| (r.blkid_out.clone(), r.blkid_rc))
        .collect();
    time_rounds(&targets, &prober, &answers, rounds);
    drop(loops);
    // FSDETECT_BENCH_KEEP=1 keeps the fixture images (for examples/trace_reads).
    if std::env::var_os("FSDETECT_BENCH_KEEP").is_some() {
        println!("fixtures kept in {}", common::scratch().display());
    } else {
        let _ = std::fs::remove_dir_all(common::scratch());
    }
}

fn require_tool(tool: &str, package: &str) {
    let ok = Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(ok, "{tool} is required: apt-get install -y {package}");
}

/// The whole-run output and status of probing several paths in one process
/// as blkid 2.38 prints them: non-empty outputs separated by a blank line,
/// the status of the last path. (blkid stops at the first path that is not
/// found; the timed runs are split so that such a path ends its run.)
fn combine(answers: &[(String, i32)]) -> (Vec<u8>, i32) {
    let mut out = String::new();
    let mut rc = 0;
    for (text, code) in answers {
        if !text.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(text);
        }
        rc = *code;
    }
    (out.into_bytes(), rc)
}

/// How the timed rounds run fsdetect in its own process.
struct Prober {
    program: PathBuf,
    args: Vec<String>,
}

impl Prober {
    /// `$GOLDMOUNT_BIN probe --format udev`, else `goldmount` built now from
    /// this checkout (release, next to this bench), else the `probe` example.
    /// Building here keeps the timed binary in step with the fsdetect the
    /// per-image numbers come from.
    fn find() -> Self {
        let goldmount_args = vec!["probe".into(), "--format".into(), "udev".into()];
        if let Some(bin) = std::env::var_os("GOLDMOUNT_BIN") {
            return Self {
                program: bin.into(),
                args: goldmount_args,
            };
        }
        // This binary is target/release/deps/probe_vs_blkid-HASH.
        let release = std::env::current_exe()
            .unwrap()
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .to_path_buf();
        let goldmount = release.join("goldmount");
        let built = cargo_build(&["-p", "connector", "--bin", "goldmount"]);
        let works = built
            && Command::new(&goldmount)
                .args(["probe", "--help"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
        if works {
            return Self {
                program: goldmount,
                args: goldmount_args,
            };
        }
        assert!(
            cargo_build(&["-p", "fsdetect", "--example", "probe"]),
            "building the probe example failed"
        );
        Self {
            program: release.join("examples/probe"),
            args: Vec::new(),
        }
    }

    fn describe(&self) -> String {
        format!("{} {}", self.program.display(), self.args.join(" "))
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        c
    }
}

/// `cargo build --release ARGS` with the cargo that runs this bench; false
/// (with its stderr shown) when the build fails.
fn cargo_build(args: &[&str]) -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--release"])
        .args(args)
        .output()
        .expect("run cargo");
    if !out.status.success() {
        eprintln!(
            "cargo build --release {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

/// Runs `cmd` under strace and counts read/pread64 calls on descriptors that
/// refer to `target` (strace -y prints each fd's path), summing what they
/// returned. `cmd` only describes what to run (program and arguments).
/// Returns the counts and the command's own output.
fn traced(cmd: Command, target: &Path) -> (Traced, Output) {
    let canon = std::fs::canonicalize(target).unwrap();
    let trace = common::scratch().join(format!("strace-{}.txt", std::process::id()));
    let prog = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let out = Command::new("strace")
        .args([
            "-f",
            "-y",
            "-s",
            "0",
            "-e",
            "trace=openat,read,pread64,close",
        ])
        .args(["-e", "signal=none", "-o"])
        .arg(&trace)
        .arg(prog)
        .args(args)
        .output()
        .expect("run strace");
    let text = std::fs::read_to_string(&trace).unwrap();
    let marker = format!("<{}>", canon.display());
    let mut t = Traced::default();
    for line in text.lines() {
        // "PID read(3</path>, ""..., 512) = 512" or "PID pread64(3</path>, ..., 512, 1024) = 512"
        let call = line
            .split_once(' ')
            .map(|(_, rest)| rest.trim_start())
            .unwrap_or(line);
        let is_read = call.starts_with("read(") || call.starts_with("pread64(");
        if !is_read {
            continue;
        }
        let fd_part = call.split_once(',').map(|(a, _)| a).unwrap_or("");
        if !fd_part.ends_with(&marker) {
            continue;
        }
        let ret = call
            .rsplit_once(" = ")
            .map(|(_, r)| r.split(' ').next().unwrap_or(""));
        if let Some(Ok(n)) = ret.map(str::parse::<i64>) {
            if n >= 0 {
                t.reads += 1;
                t.bytes += n as u64;
            }
        }
    }
    let _ = std::fs::remove_file(&trace);
    (t, out)
}

fn blkid_cmd(path: &Path, region: Option<(u64, u64)>) -> Command {
    let mut c = Command::new("blkid");
    c.args(["-p", "-o", "udev"]);
    if let Some((off, size)) = region {
        c.args(["-O", &off.to_string(), "-S", &size.to_string()]);
    }
    c.arg(path);
    c
}

fn measure(t: &Target, prober: &Prober) -> Row {
    let (blkid, out) = traced(blkid_cmd(&t.path, None), &t.path);
    let want = String::from_utf8_lossy(&out.stdout).into_owned();
    let want_rc = out.status.code().unwrap_or(-1);

    let src = FileSource::open(&t.path).unwrap();
    let src = if src.is_block_device() {
        src
    } else {
        src.with_sector_size(t.sector_size)
    };
    let report = probe_disk(&src).unwrap();
    let (got, got_rc) = fsdetect::udev::format_udev(&report);

    let mut pcmd = prober.command();
    pcmd.arg(&t.path);
    let (fsd_syscalls, _) = traced(pcmd, &t.path);

    // goldmount probes the partitions too; blkid needs one run per partition
    // (-O/-S) for the same answers, so count those runs as well.
    let mut parts: Option<Traced> = None;
    for p in report.partitions.iter().filter(|p| p.content.is_some()) {
        let (pt, _) = traced(
            blkid_cmd(&t.path, Some((p.partition.start, p.partition.size))),
            &t.path,
        );
        let acc = parts.get_or_insert(blkid);
        acc.reads += pt.reads;
        acc.bytes += pt.bytes;
    }
    if got != want || got_rc != want_rc {
        println!(
            "DIFFERENT ANSWER for {}:\n--- blkid (rc {want_rc}):\n{want}--- fsdetect (rc {got_rc}):\n{got}",
            t.name
        );
    }
    Row {
        name: t.name.clone(),
        blkid,
        blkid_parts: parts,
        fsd: report.io,
        fsd_syscalls,
        same: got == want && got_rc == want_rc,
        blkid_out: want,
        blkid_rc: want_rc,
    }
}

fn ratio(a: u64, b: u64) -> String {
    if b == 0 {
        "-".into()
    } else {
        format!("{:.3}", a as f64 / b as f64)
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| image | blkid reads | blkid bytes | fsdetect reads | fsdetect bytes | reads ratio | fsdetect syscalls (strace) | blkid+partitions reads | ratio vs that | same answer |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let (pr, prr) = match r.blkid_parts {
            Some(p) => (p.reads.to_string(), ratio(r.fsd.read_calls, p.reads)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.blkid.reads,
            r.blkid.bytes,
            r.fsd.read_calls,
            r.fsd.bytes_read,
            ratio(r.fsd.read_calls, r.blkid.reads),
            r.fsd_syscalls.reads,
            pr,
            prr,
            if r.same {
                format!("yes (rc {})", r.blkid_rc)
            } else {
                "NO".into()
            }
        );
    }
    let tb: u64 = rows.iter().map(|r| r.blkid.reads).sum();
    let tbb: u64 = rows.iter().map(|r| r.blkid.bytes).sum();
    let tf: u64 = rows.iter().map(|r| r.fsd.read_calls).sum();
    let tfb: u64 = rows.iter().map(|r| r.fsd.bytes_read).sum();
    println!(
        "| **total** | {tb} | {tbb} | {tf} | {tfb} | {} | {} | | | {}/{} |",
        ratio(tf, tb),
        rows.iter().map(|r| r.fsd_syscalls.reads).sum::<u64>(),
        rows.iter().filter(|r| r.same).count(),
        rows.len()
    );
    println!();
    let over: Vec<String> = rows
        .iter()
        .filter(|r| r.fsd.read_calls * 5 > r.blkid.reads)
        .map(|r| {
            format!(
                "{} ({} vs {}: {})",
                r.name,
                r.fsd.read_calls,
                r.blkid.reads,
                ratio(r.fsd.read_calls, r.blkid.reads)
            )
        })
        .collect();
    if over.is_empty() {
        println!("target <= 1/5 of blkid's read calls: met on every image");
    } else {
        println!(
            "target <= 1/5 of blkid's read calls: MISSED on {}: {}",
            over.len(),
            over.join(", ")
        );
    }
    let like: Vec<String> = rows
        .iter()
        .filter(|r| r.fsd.read_calls * 5 > r.blkid_parts.unwrap_or(r.blkid).reads)
        .map(|r| r.name.clone())
        .collect();
    println!(
        "same target, like for like (blkid also run on each partition with -O/-S, as goldmount probes them): {}",
        if like.is_empty() {
            "met on every image".to_string()
        } else {
            format!("MISSED on {}: {}", like.len(), like.join(", "))
        }
    );
    let mismatch: Vec<&str> = rows
        .iter()
        .filter(|r| !r.same)
        .map(|r| r.name.as_str())
        .collect();
    let syscall_mismatch: Vec<&str> = rows
        .iter()
        .filter(|r| r.fsd_syscalls.reads != r.fsd.read_calls)
        .map(|r| r.name.as_str())
        .collect();
    println!(
        "identical answers (stdout and exit status): {}",
        if mismatch.is_empty() {
            "yes, every image".to_string()
        } else {
            format!("NO on {}", mismatch.join(", "))
        }
    );
    println!(
        "fsdetect IoStats equal the prober binary's read syscalls under strace: {}",
        if syscall_mismatch.is_empty() {
            "yes".to_string()
        } else {
            format!("NO on {}", syscall_mismatch.join(", "))
        }
    );
}

/// Runs `make()` once per group of paths (each group on one command line);
/// returns each run's stdout and exit status, and the total wall time.
fn run_groups(
    make: &dyn Fn() -> Command,
    groups: &[Vec<&Path>],
) -> (Vec<(Vec<u8>, i32)>, Duration) {
    let start = Instant::now();
    let outs: Vec<(Vec<u8>, i32)> = groups
        .iter()
        .map(|g| {
            let out = make().args(g).output().expect("run prober");
            (out.stdout, out.status.code().unwrap_or(-1))
        })
        .collect();
    (outs, start.elapsed())
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Compares one whole-set run with the expected answers; on a difference,
/// says where (first differing line) so it can be looked into.
fn same_run(tool: &str, out: &[u8], rc: i32, want: &[u8], want_rc: i32) -> bool {
    if out == want && rc == want_rc {
        return true;
    }
    let (o, w) = (String::from_utf8_lossy(out), String::from_utf8_lossy(want));
    let first = o
        .lines()
        .zip(w.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(o.lines().count().min(w.lines().count()));
    println!(
        "{tool} whole-set run differs: exit {rc} (expected {want_rc}); {} lines (expected {}); first difference at line {}: {:?} vs expected {:?}",
        o.lines().count(),
        w.lines().count(),
        first + 1,
        o.lines().nth(first),
        w.lines().nth(first)
    );
    false
}

/// Times `rounds` rounds of each tool probing every target, and checks every
/// run printed what blkid printed for each image alone (`answers`).
///
/// blkid 2.38 stops at the first path with nothing found (or ambivalent), so
/// the paths are split into groups that each end at such a path; both tools
/// run one process per group, the same groups.
fn time_rounds(targets: &[Target], prober: &Prober, answers: &[(String, i32)], rounds: usize) {
    let mut groups: Vec<Vec<&Path>> = vec![Vec::new()];
    let mut group_answers: Vec<Vec<(String, i32)>> = vec![Vec::new()];
    for (t, a) in targets.iter().zip(answers) {
        groups.last_mut().unwrap().push(t.path.as_path());
        group_answers.last_mut().unwrap().push(a.clone());
        if a.1 != 0 {
            groups.push(Vec::new());
            group_answers.push(Vec::new());
        }
    }
    if groups.last().is_some_and(Vec::is_empty) {
        groups.pop();
        group_answers.pop();
    }
    // blkid keeps at most 128 device arguments.
    assert!(
        groups.iter().all(|g| g.len() < 128),
        "a group of more than 127 images"
    );
    let want: Vec<(Vec<u8>, i32)> = group_answers.iter().map(|a| combine(a)).collect();
    let blkid = || {
        let mut c = Command::new("blkid");
        c.args(["-p", "-o", "udev"]);
        c
    };
    let fsd = || prober.command();
    let check = |tool: &str, outs: &[(Vec<u8>, i32)]| -> bool {
        outs.iter()
            .zip(&want)
            .all(|((o, rc), (w, wrc))| same_run(tool, o, *rc, w, *wrc))
    };
    // Warm-up runs (page cache), checked like the timed ones.
    let mut differing_runs = 0;
    differing_runs += usize::from(!check("blkid", &run_groups(&blkid, &groups).0));
    differing_runs += usize::from(!check("fsdetect", &run_groups(&fsd, &groups).0));
    let mut tb = Vec::with_capacity(rounds);
    let mut tf = Vec::with_capacity(rounds);
    for round in 0..rounds.max(1) {
        // Alternate who goes first so neither always follows the other.
        let order: [bool; 2] = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_blkid in order {
            if is_blkid {
                let (outs, d) = run_groups(&blkid, &groups);
                differing_runs += usize::from(!check("blkid", &outs));
                tb.push(d);
            } else {
                let (outs, d) = run_groups(&fsd, &groups);
                differing_runs += usize::from(!check("fsdetect", &outs));
                tf.push(d);
            }
        }
    }
    let mb = median(&mut tb);
    let mf = median(&mut tf);
    println!(
        "timed: {} images in {} processes per tool per round (blkid stops at an image with nothing found), {} rounds",
        targets.len(),
        groups.len(),
        tb.len()
    );
    println!(
        "median per round: blkid -p -o udev {:.2} ms, fsdetect {:.2} ms; fsdetect/blkid = {:.3} ({})",
        mb.as_secs_f64() * 1e3,
        mf.as_secs_f64() * 1e3,
        mf.as_secs_f64() / mb.as_secs_f64(),
        if mf < mb { "faster" } else { "SLOWER" }
    );
    println!(
        "every run (both tools, warm-up and timed) printed exactly blkid's per-image answers: {}",
        if differing_runs == 0 {
            "yes".to_string()
        } else {
            format!("NO ({differing_runs} differing runs)")
        }
    );
}
