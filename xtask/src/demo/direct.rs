//! `cargo xtask demo --direct`: the engine without its front doors — the
//! appliance presents clones and `goldmount mount` is run by hand for each.
//!
//! 1. build a gold disk with the real tools (GPT: /boot ext4, root XFS with an
//!    /etc/fstab naming the others, data ext4);
//! 2. start the reference appliance (loop backend) on a reflink XFS, import the
//!    gold copy, register this host, make three thin clones and present them;
//! 3. `goldmount probe` one clone, then `goldmount mount --wwid` all three:
//!    each comes up as the gold host's tree, side by side;
//! 4. write into one clone and show it reaches neither the gold nor the others;
//! 5. tear everything down and show nothing is left.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::prereqs::{self, run};

use crate::golddisk;

const MIB: u64 = 1024 * 1024;
const PORT: u16 = 18470;

fn show(prog: &Path, args: &[&str]) -> Result<String> {
    let name = prog
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    println!("$ {name} {}", args.join(" "));
    let out = run(&prog.to_string_lossy(), args)?;
    print!("{out}");
    Ok(out)
}

fn build_binaries() -> Result<(PathBuf, PathBuf)> {
    let t = super::build(&["connector", "appliance"])?;
    Ok((t.join("goldmount"), t.join("goldmount-appliance")))
}

/// Everything the demo set up, undone in reverse on drop (also on failure).
struct Cleanup {
    appliance: Option<Child>,
    mounts: Vec<PathBuf>,
    loops: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut c) = self.appliance.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for l in self.loops.drain(..) {
            let _ = Command::new("losetup").arg("-d").arg(&l).status();
        }
        for m in self.mounts.drain(..).rev() {
            let _ = Command::new("umount").arg(&m).status();
        }
    }
}

/// Runs `cargo xtask demo --direct`.
pub fn demo() -> Result<()> {
    prereqs::ensure_apt(&["gdisk", "e2fsprogs", "xfsprogs", "dosfstools", "util-linux"])?;
    let (gm, ap) = build_binaries()?;
    let dir = super::target_dir().join("demo");
    let _ = Command::new("umount")
        .arg("-R")
        .arg(dir.join("appliance"))
        .stderr(Stdio::null())
        .status();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut cleanup = Cleanup {
        appliance: None,
        mounts: Vec::new(),
        loops: Vec::new(),
    };

    println!("== 1. a gold disk, made by sgdisk, mkfs.ext4 and mkfs.xfs");
    let gold = golddisk::build(&dir, "pg-gold.img").map_err(anyhow::Error::msg)?;
    show(&gm, &["probe", &gold.to_string_lossy()])?;

    println!("\n== 2. the reference appliance (loop backend) on a reflink XFS");
    let pool = dir.join("appliance.xfs");
    std::fs::File::create(&pool)?.set_len(2048 * MIB)?;
    run(
        "mkfs.xfs",
        &["-q", "-f", "-m", "reflink=1", &pool.to_string_lossy()],
    )?;
    let data = dir.join("appliance");
    std::fs::create_dir_all(&data)?;
    run("mount", &[&pool.to_string_lossy(), &data.to_string_lossy()])?;
    cleanup.mounts.push(data.clone());
    let listen = format!("127.0.0.1:{PORT}");
    let server = format!("http://{listen}");
    let log = std::fs::File::create(dir.join("appliance.log"))?;
    // The API needs a bearer token: the server generates it into its data
    // directory; the CLI calls below get it from the environment.
    let token_file = data.join("api-token");
    cleanup.appliance = Some(
        Command::new(&ap)
            .args([
                "serve",
                "--backend",
                "loop",
                "--listen",
                &listen,
                "--data-dir",
                &data.to_string_lossy(),
                // The gold disk is built in the demo directory.
                "--import-from",
                &std::fs::canonicalize(&dir)?.to_string_lossy(),
            ])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting goldmount-appliance")?,
    );
    let t0 = Instant::now();
    while std::fs::read_to_string(&token_file)
        .map(|t| std::env::set_var("GOLDMOUNT_APPLIANCE_TOKEN", t.trim()))
        .is_err()
        || run(
            &ap.to_string_lossy(),
            &["gold", "list", "--server", &server],
        )
        .is_err()
    {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!(
                "the appliance did not answer on {server} (see {})",
                dir.join("appliance.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    show(
        &ap,
        &[
            "gold",
            "import",
            "pg-gold",
            &gold.to_string_lossy(),
            "--server",
            &server,
        ],
    )?;
    let host = run("hostname", &[])?.trim().to_string();
    show(
        &ap,
        &[
            "host",
            "register",
            &host,
            "--iqn",
            "iqn.2026-11.dev.goldmount:demo",
            "--server",
            &server,
        ],
    )?;
    let mut backing = Vec::new();
    for i in 1..=3 {
        let name = format!("pg{i}");
        let t = Instant::now();
        run(
            &ap.to_string_lossy(),
            &[
                "clone", "create", &name, "--gold", "pg-gold", "--server", &server,
            ],
        )?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        let p: serde_json::Value = serde_json::from_str(&run(
            &ap.to_string_lossy(),
            &["present", &name, "--host", &host, "--server", &server],
        )?)?;
        let bf = p["backing_file"]
            .as_str()
            .context("presentation without backing_file")?
            .to_string();
        println!(
            "clone {name}: thin clone in {ms:.1} ms, presented as {} (backing {bf})",
            p["device"].as_str().unwrap_or("?")
        );
        if let Some(d) = p["device"].as_str() {
            cleanup.loops.push(PathBuf::from(d));
        }
        backing.push((name, bf));
    }

    println!("\n== 3. goldmount mounts the three clones side by side");
    let vroot = dir.join("volumes");
    std::env::set_var("GOLDMOUNT_VOLUMES_ROOT", &vroot);
    std::env::set_var("GOLDMOUNT_STATE", dir.join("state.redb"));
    std::env::set_var("GOLDMOUNT_RUN_DIR", dir.join("run"));
    for (name, bf) in &backing {
        let t = Instant::now();
        show(&gm, &["mount", "--loop-backing", bf, "--volume", name])?;
        println!(
            "   ({:.0} ms from device present to all mounted)",
            t.elapsed().as_secs_f64() * 1000.0
        );
    }
    show(&gm, &["list"])?;
    println!("\ntree of {}:", vroot.join("pg1").display());
    for l in super::tree(&vroot.join("pg1"), 3) {
        println!("  {l}");
    }

    println!("\n== 4. a write in pg1 reaches neither pg2, pg3 nor the gold copy");
    let rec = "srv/data/records.csv";
    std::fs::write(vroot.join("pg1").join(rec), "id,name\n1,changed in pg1\n")?;
    for (name, _) in &backing {
        let text = std::fs::read_to_string(vroot.join(name).join(rec))?;
        println!("  {name}/{rec}: {:?}", text.lines().nth(1).unwrap_or(""));
    }
    for (name, _) in backing.iter().skip(1) {
        ensure!(
            std::fs::read_to_string(vroot.join(name).join(rec))? == golddisk::FILES[2].1,
            "the write leaked into {name}"
        );
    }

    println!("\n== 5. teardown");
    for (name, _) in &backing {
        show(&gm, &["unmount", "--volume", name])?;
        // No connector daemon runs here to confirm the release (goldmount
        // just unmounted it): the appliance is told so with --force.
        show(&ap, &["unpresent", name, "--server", &server, "--force"])?;
        run(
            &ap.to_string_lossy(),
            &["clone", "delete", name, "--server", &server],
        )
        .ok();
    }
    cleanup.loops.clear();
    let gold_probe = run(
        &gm.to_string_lossy(),
        &["probe", "--format", "udev", &gold.to_string_lossy()],
    )?;
    ensure!(
        gold_probe.contains("ID_PART_TABLE_TYPE=gpt"),
        "the gold disk changed"
    );
    let left = std::fs::read_to_string("/proc/self/mountinfo")?
        .lines()
        .filter(|l| l.contains(&*vroot.to_string_lossy()))
        .count();
    ensure!(left == 0, "{left} mounts left under {}", vroot.display());
    println!(
        "no mounts left under {}; no loop devices left for the clones",
        vroot.display()
    );
    drop(cleanup);
    println!("\ndemo complete");
    Ok(())
}
