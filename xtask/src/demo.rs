//! `cargo xtask demo`: the main job until attach/mount exist — build a sample
//! GPT disk with several filesystems using the real tools, then show what
//! `goldmount probe` finds on it, next to `blkid -p` for the same regions.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::prereqs;

const MIB: u64 = 1024 * 1024;

/// One partition of the sample disk: GPT type code, name, size, and the mkfs
/// command that fills it (run on a scratch file, then copied in place).
struct PartSpec {
    name: &'static str,
    type_code: &'static str,
    size_mib: u64,
    mkfs: &'static [&'static str],
}

const PARTS: &[PartSpec] = &[
    PartSpec {
        name: "EFI",
        type_code: "ef00",
        size_mib: 64,
        mkfs: &["mkfs.vfat", "-F", "32", "-n", "EFI", "-i", "1234ABCD"],
    },
    PartSpec {
        name: "boot",
        type_code: "8300",
        size_mib: 128,
        mkfs: &[
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "boot",
            "-U",
            "3f0e6a56-2a8d-4c55-9a0b-5d3c1e2f4a10",
        ],
    },
    PartSpec {
        name: "root",
        type_code: "8300",
        size_mib: 320,
        mkfs: &[
            "mkfs.xfs",
            "-q",
            "-f",
            "-L",
            "root",
            "-m",
            "uuid=7d1c9f2e-5b4a-4e3d-8c2b-1a0f9e8d7c6b",
        ],
    },
    PartSpec {
        name: "swap",
        type_code: "8200",
        size_mib: 32,
        mkfs: &[
            "mkswap",
            "-L",
            "swap",
            "-U",
            "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e",
        ],
    },
];

fn run(prog: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(prog)
        .args(args)
        .output()
        .with_context(|| format!("running {prog}"))?;
    ensure!(
        out.status.success(),
        "{prog} {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Copies `src` into `disk` at `offset`, skipping all-zero blocks so the
/// sample disk stays sparse.
fn copy_into(src: &Path, disk: &File, offset: u64) -> Result<()> {
    let mut f = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut buf = vec![0u8; MIB as usize];
    let mut pos = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            disk.write_all_at(&buf[..n], offset + pos)?;
        }
        pos += n as u64;
    }
    Ok(())
}

fn build_sample_disk(dir: &Path) -> Result<(PathBuf, Vec<(u64, u64)>)> {
    let disk_path = dir.join("sample-disk.img");
    let total: u64 = PARTS.iter().map(|p| p.size_mib).sum::<u64>() + 4;
    let disk = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&disk_path)?;
    disk.set_len(total * MIB)?;
    let mut sgdisk_args: Vec<String> =
        vec!["-U".into(), "5e1c0a2b-3d4f-4a6b-9c8d-7e6f5a4b3c2d".into()];
    for (i, p) in PARTS.iter().enumerate() {
        let n = i + 1;
        sgdisk_args.push(format!("-n{n}:0:+{}M", p.size_mib));
        sgdisk_args.push(format!("-t{n}:{}", p.type_code));
        sgdisk_args.push(format!("-c{n}:{}", p.name));
    }
    sgdisk_args.push(disk_path.to_string_lossy().into_owned());
    let args: Vec<&str> = sgdisk_args.iter().map(String::as_str).collect();
    run("sgdisk", &args)?;
    let mut regions = Vec::new();
    let mut start = MIB; // sgdisk aligns the first partition at 1 MiB
    for p in PARTS {
        let fs_img = dir.join(format!("{}.fs", p.name));
        File::create(&fs_img)?.set_len(p.size_mib * MIB)?;
        let mut args: Vec<&str> = p.mkfs[1..].to_vec();
        let fs_str = fs_img.to_string_lossy().into_owned();
        args.push(&fs_str);
        run(p.mkfs[0], &args)?;
        copy_into(&fs_img, &disk, start)?;
        std::fs::remove_file(&fs_img)?;
        regions.push((start, p.size_mib * MIB));
        start += p.size_mib * MIB;
    }
    Ok((disk_path, regions))
}

fn goldmount_bin() -> Result<PathBuf> {
    let st = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "connector",
            "--bin",
            "goldmount",
        ])
        .status()
        .context("building goldmount")?;
    ensure!(st.success(), "building goldmount failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    Ok(target.join("release/goldmount"))
}

/// Entry point of `cargo xtask demo`.
pub fn main(_args: &[String]) -> Result<()> {
    prereqs::ensure_apt(&["gdisk", "e2fsprogs", "xfsprogs", "dosfstools", "util-linux"])?;
    let gm = goldmount_bin()?;
    let dir = PathBuf::from("target/demo");
    std::fs::create_dir_all(&dir)?;
    let (disk, regions) = build_sample_disk(&dir)?;
    println!(
        "== sample disk: {} (GPT: EFI vfat, boot ext4, root xfs, swap)\n",
        disk.display()
    );
    println!("$ goldmount probe {}", disk.display());
    print!(
        "{}",
        String::from_utf8_lossy(&Command::new(&gm).arg("probe").arg(&disk).output()?.stdout)
    );
    println!("\n== per-partition, goldmount probe --format udev vs blkid -p -o udev:");
    let mut all_same = true;
    for (i, (off, size)) in regions.iter().enumerate() {
        let (o, s) = (off.to_string(), size.to_string());
        let ours = Command::new(&gm)
            .args(["probe", "--format", "udev", "--offset", &o, "--size", &s])
            .arg(&disk)
            .output()?;
        let theirs = Command::new("blkid")
            .args(["-p", "-o", "udev", "-O", &o, "-S", &s])
            .arg(&disk)
            .output()?;
        let same = ours.stdout == theirs.stdout;
        all_same &= same;
        println!(
            "-- partition {} ({}): {}",
            i + 1,
            PARTS[i].name,
            if same { "identical" } else { "DIFFERENT" }
        );
        print!("{}", String::from_utf8_lossy(&ours.stdout));
    }
    println!(
        "\n$ goldmount probe --json {} | (I/O summary)",
        disk.display()
    );
    let json = Command::new(&gm)
        .args(["probe", "--json"])
        .arg(&disk)
        .output()?;
    let text = String::from_utf8_lossy(&json.stdout);
    if let Some(pos) = text.find("\"io\"") {
        println!(
            "{}",
            text[pos..].lines().take(4).collect::<Vec<_>>().join("\n")
        );
    }
    ensure!(all_same, "goldmount and blkid disagree on the sample disk");
    println!("\nall partitions identical to blkid; the sample disk was only read, never written");
    Ok(())
}
