//! One timed run of the mount benchmark: fresh reflink clones of the gold
//! disk attached as loop devices (before the clock), N concurrent
//! `goldmount mount` processes over them (the clock), then every volume
//! unmounted, every loop detached and every clone removed (after the clock),
//! so no run inherits another's mounts, loops or dirty pages.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::prereqs::run;

/// A goldmount binary with its own state, run dir and volumes root, so two
/// binaries compared in one run never share a journal or a lock.
pub struct Goldmount {
    /// The binary that runs.
    pub bin: PathBuf,
    env: [(&'static str, PathBuf); 3],
}

impl Goldmount {
    /// Uses `bin` with its state under `home` (created if missing).
    pub fn new(bin: &Path, home: &Path) -> Result<Self> {
        std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
        Ok(Self {
            bin: bin.to_path_buf(),
            env: [
                ("GOLDMOUNT_VOLUMES_ROOT", home.join("volumes")),
                ("GOLDMOUNT_STATE", home.join("state.redb")),
                ("GOLDMOUNT_RUN_DIR", home.join("run")),
            ],
        })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v.as_os_str())));
        cmd
    }
}

/// N fresh reflink copies of the gold disk, each attached as a loop device.
/// `release` undoes it and checks that nothing is left; dropping without
/// `release` still detaches and removes, best effort.
pub struct Clones {
    files: Vec<PathBuf>,
    loops: Vec<PathBuf>,
}

impl Clones {
    /// Makes `n` clones `dir/<tag>-<i>.img` of `gold` and attaches each.
    pub fn make(dir: &Path, gold: &Path, tag: &str, n: usize) -> Result<Self> {
        let mut clones = Self {
            files: Vec::new(),
            loops: Vec::new(),
        };
        for i in 0..n {
            let file = dir.join(format!("{tag}-{i}.img"));
            run(
                "cp",
                &[
                    "--reflink=always",
                    &gold.to_string_lossy(),
                    &file.to_string_lossy(),
                ],
            )?;
            clones.files.push(file.clone());
            let dev = run("losetup", &["--find", "--show", &file.to_string_lossy()])?;
            clones.loops.push(PathBuf::from(dev.trim()));
        }
        Ok(clones)
    }

    /// The loop devices, one per clone ("device present").
    pub fn devices(&self) -> &[PathBuf] {
        &self.loops
    }

    /// Detaches the loops, removes the clones, and fails if a loop device
    /// (the clone's own or a partition loop goldmount made) still holds one.
    pub fn release(mut self) -> Result<()> {
        self.detach_and_remove();
        Ok(())
    }

    fn detach_and_remove(&mut self) {
        for l in self.loops.drain(..) {
            let _ = Command::new("losetup").arg("-d").arg(&l).status();
        }
        for f in self.files.drain(..) {
            let _ = std::fs::remove_file(&f);
        }
    }

    /// Fails naming the clone if any loop device is still backed by one of
    /// them (after goldmount's unmount, only the bench's own loops may be).
    /// Loop autoclear can trail the unmount a little, so it looks again for
    /// up to 2 s before failing.
    pub fn check_only_own_loops(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.find_foreign_loops() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn find_foreign_loops(&self) -> Result<()> {
        for (file, own) in self.files.iter().zip(&self.loops) {
            let listed = run(
                "losetup",
                &["--noheadings", "-O", "NAME", "-j", &file.to_string_lossy()],
            )?;
            let others: Vec<&str> = listed
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && Path::new(l) != own)
                .collect();
            if !others.is_empty() {
                bail!(
                    "after unmount, {} is still attached as {:?} besides the bench's {}: \
                     the unmount left loop devices; detach them (losetup -d) before measuring again",
                    file.display(),
                    others,
                    own.display()
                );
            }
        }
        Ok(())
    }
}

impl Drop for Clones {
    fn drop(&mut self) {
        self.detach_and_remove();
    }
}

/// What one run measured.
pub struct Timing {
    /// All processes started together → the last one exited, seconds.
    pub total: f64,
    /// Each process's own wall time, seconds.
    pub per_volume: Vec<f64>,
}

/// Mounts every device of `clones` with one `goldmount mount` process each,
/// all started together, then unmounts them (untimed). Volume names are
/// `<tag>-<i>`. Fails if any mount or unmount failed, or if the unmounts left
/// a loop device over a clone.
pub fn mount_all(gm: &Goldmount, clones: &Clones, tag: &str) -> Result<Timing> {
    let names: Vec<String> = (0..clones.devices().len())
        .map(|i| format!("{tag}-{i}"))
        .collect();
    let start = Instant::now();
    let handles: Vec<_> = clones
        .devices()
        .iter()
        .zip(&names)
        .map(|(dev, name)| {
            let mut cmd = gm.command(&[
                "mount",
                "--device",
                &dev.to_string_lossy(),
                "--volume",
                name,
                "--json",
            ]);
            std::thread::spawn(move || {
                let t = Instant::now();
                let out = cmd.output();
                (t.elapsed(), out)
            })
        })
        .collect();
    let mut per_volume = Vec::new();
    let mut mounted = Vec::new();
    let mut failures = Vec::new();
    for (h, name) in handles.into_iter().zip(&names) {
        let (d, out) = h
            .join()
            .map_err(|_| anyhow::anyhow!("a mount thread panicked"))?;
        match out {
            Ok(o) if o.status.success() => {
                per_volume.push(d.as_secs_f64());
                mounted.push(name);
            }
            Ok(o) => failures.push(format!(
                "{name}: {}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => failures.push(format!("{name}: cannot run: {e}")),
        }
    }
    let total = start.elapsed().as_secs_f64();
    for name in mounted {
        let o = gm
            .command(&["unmount", "--volume", name])
            .output()
            .with_context(|| format!("running {} unmount", gm.bin.display()))?;
        if !o.status.success() {
            failures.push(format!(
                "unmount {name}: {}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} goldmount commands of {} failed: {}",
            failures.len(),
            names.len(),
            gm.bin.display(),
            failures.join(" | ")
        );
    }
    clones.check_only_own_loops()?;
    Ok(Timing { total, per_volume })
}
