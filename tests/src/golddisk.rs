//! A realistic gold disk image made by the real tools: GPT with `/boot`
//! (ext4), a root XFS holding an `/etc/fstab` that names the others by
//! PARTUUID=, UUID= and LABEL=, and a data ext4 — the shape of a small
//! production server's disk. Used by the connector's host tests and
//! `cargo xtask demo`.
//!
//! Needs root (it loop-mounts the filesystems to fill them), sgdisk,
//! mkfs.ext4 and mkfs.xfs. Errors carry the failing command and its stderr.
//!
//! Several test crates include this file by `#[path]`, each using a part.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1024 * 1024;

/// UUID of the root XFS.
pub const ROOT_UUID: &str = "7d1c9f2e-5b4a-4e3d-8c2b-1a0f9e8d7c6b";
/// UUID of the /boot ext4.
pub const BOOT_UUID: &str = "3f0e6a56-2a8d-4c55-9a0b-5d3c1e2f4a10";
/// GPT partition GUID of /boot (named by PARTUUID= in the fstab).
pub const BOOT_PARTUUID: &str = "11111111-2222-4333-8444-555555555501";
/// Size of the whole disk.
pub const DISK_SIZE: u64 = 500 * MIB;

/// Files the gold disk holds, relative to the assembled root, with contents.
pub const FILES: &[(&str, &str)] = &[
    ("etc/hostname", "gold-host\n"),
    ("boot/vmlinuz", "kernel image of the gold host\n"),
    ("srv/data/records.csv", "id,name\n1,gold\n"),
];

/// The fstab written into the root filesystem.
pub fn fstab_text() -> String {
    format!(
        "# gold host fstab\nUUID={ROOT_UUID} / xfs defaults 0 0\n\
         PARTUUID={BOOT_PARTUUID} /boot ext4 defaults 0 2\n\
         LABEL=data /srv/data ext4 defaults 0 2\n\
         UUID=0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e none swap sw 0 0\n\
         server:/home /home nfs defaults 0 0\n\
         /dev/sdq1 /opt ext4 defaults 0 0\n"
    )
}

/// vfat volume id of the ESP of [`build_with_esp`] (fstab `UUID=B2C4-1F3E`).
pub const ESP_UUID: &str = "B2C4-1F3E";

/// The fourth partition of [`build_with_esp`]: an EFI system partition as
/// Debian writes its line, or (for kernels without vfat) a Windows data
/// partition mounted through ntfs-3g as desktop installs write its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Esp {
    /// vfat at `/boot/efi`: `umask=0077,shortname=winnt`.
    Vfat,
    /// NTFS (label `win`) at `/srv/win`: `umask=0077,uid=0,gid=0`.
    Ntfs,
}

impl Esp {
    /// Where the original host mounted it.
    pub fn mountpoint(self) -> &'static str {
        match self {
            Esp::Vfat => "/boot/efi",
            Esp::Ntfs => "/srv/win",
        }
    }
    /// The options its fstab line carries that goldmount keeps.
    pub fn kept(self) -> &'static [&'static str] {
        match self {
            Esp::Vfat => &["umask=0077", "shortname=winnt"],
            Esp::Ntfs => &["umask=0077", "uid=0", "gid=0"],
        }
    }
    /// Its fstab line: the kept options plus `suid` and a systemd option
    /// that must be dropped.
    pub fn fstab_line(self) -> String {
        let (spec, fstype) = match self {
            Esp::Vfat => (format!("UUID={ESP_UUID}"), "vfat"),
            Esp::Ntfs => ("LABEL=win".to_string(), "ntfs-3g"),
        };
        format!(
            "{spec} {} {fstype} {},suid,x-systemd.automount 0 1\n",
            self.mountpoint(),
            self.kept().join(",")
        )
    }
}

/// A file on the fourth partition of [`build_with_esp`], relative to it.
pub const ESP_FILE: (&str, &str) = ("EFI/debian/grubx64.efi", "grub of the gold host\n");

/// The fstab of [`build_with_esp`]: the same tree plus the fourth
/// partition's line, and a data line with options of its own.
pub fn esp_fstab_text(esp: Esp) -> String {
    format!(
        "# gold host fstab\nUUID={ROOT_UUID} / xfs defaults 0 0\n\
         PARTUUID={BOOT_PARTUUID} /boot ext4 defaults 0 2\n\
         {}\
         LABEL=data /srv/data ext4 noatime,errors=remount-ro,dev,x-systemd.device-timeout=5 0 2\n",
        esp.fstab_line()
    )
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn path_str(p: &Path) -> Result<&str, String> {
    p.to_str()
        .ok_or_else(|| format!("non-UTF-8 path {}", p.display()))
}

/// Copies `fs_img` into `disk` at `offset`, skipping zero blocks (stays sparse).
fn write_into(disk: &Path, offset: u64, fs_img: &Path) -> Result<(), String> {
    let data = fs::read(fs_img).map_err(|e| format!("reading {}: {e}", fs_img.display()))?;
    let f = fs::OpenOptions::new()
        .write(true)
        .open(disk)
        .map_err(|e| e.to_string())?;
    for (i, chunk) in data.chunks(MIB as usize).enumerate() {
        if chunk.iter().any(|&b| b != 0) {
            f.write_all_at(chunk, offset + (i as u64) * MIB)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Makes a filesystem image of `size_mib`, fills it through a temporary loop
/// mount with `fill`, and copies it into `disk` at `offset_mib`.
fn filesystem(
    dir: &Path,
    disk: &Path,
    name: &str,
    size_mib: u64,
    offset_mib: u64,
    mkfs: &[&str],
    fill: &dyn Fn(&Path) -> std::io::Result<()>,
) -> Result<(), String> {
    let img = dir.join(format!("{name}.fs"));
    fs::File::create(&img)
        .and_then(|f| f.set_len(size_mib * MIB))
        .map_err(|e| e.to_string())?;
    let mut args: Vec<&str> = mkfs[1..].to_vec();
    args.push(path_str(&img)?);
    run(mkfs[0], &args)?;
    let mnt = dir.join(format!("{name}.mnt"));
    fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
    // A copy of the gold may be mounted on this host already (another test):
    // XFS refuses a second mount of its UUID unless told `nouuid`.
    let xfs = mkfs[0] == "mkfs.xfs";
    let mut margs: Vec<&str> = if xfs { vec!["-o", "nouuid"] } else { vec![] };
    margs.extend([path_str(&img)?, path_str(&mnt)?]);
    run("mount", &margs)?;
    let filled = fill(&mnt).map_err(|e| format!("filling {name}: {e}"));
    run("umount", &[path_str(&mnt)?])?;
    filled?;
    let _ = fs::remove_dir(&mnt);
    write_into(disk, offset_mib * MIB, &img)?;
    fs::remove_file(&img).map_err(|e| e.to_string())
}

/// Builds the gold disk as `dir/<name>` and returns its path.
pub fn build(dir: &Path, name: &str) -> Result<PathBuf, String> {
    build_disk(dir, name, None)
}

/// The gold disk with a fourth partition of 32 MiB (see [`Esp`]) holding
/// [`ESP_FILE`], named by [`esp_fstab_text`] with options to carry over.
pub fn build_with_esp(dir: &Path, name: &str, esp: Esp) -> Result<PathBuf, String> {
    build_disk(dir, name, Some(esp))
}

fn build_disk(dir: &Path, name: &str, esp: Option<Esp>) -> Result<PathBuf, String> {
    let disk = dir.join(name);
    fs::File::create(&disk)
        .and_then(|f| f.set_len(DISK_SIZE))
        .map_err(|e| e.to_string())?;
    let part1 = format!("-u1:{BOOT_PARTUUID}");
    run(
        "sgdisk",
        &[
            "-U",
            "5e1c0a2b-3d4f-4a6b-9c8d-7e6f5a4b3c2d",
            "-n1:2048:+64M",
            "-t1:8300",
            "-c1:boot",
            &part1,
            "-n2:0:+320M",
            "-t2:8300",
            "-c2:root",
            "-n3:0:+64M",
            "-t3:8300",
            "-c3:data",
            path_str(&disk)?,
        ],
    )?;
    if let Some(kind) = esp {
        let (ptype, pname) = match kind {
            Esp::Vfat => ("-t4:ef00", "-c4:EFI System Partition"),
            Esp::Ntfs => ("-t4:0700", "-c4:win"),
        };
        run("sgdisk", &["-n4:0:+32M", ptype, pname, path_str(&disk)?])?;
        let volid = ESP_UUID.replace('-', "");
        let mkfs: Vec<&str> = match kind {
            Esp::Vfat => vec!["mkfs.vfat", "-i", &volid, "-n", "ESP"],
            Esp::Ntfs => vec!["mkntfs", "-q", "-F", "-f", "-L", "win"],
        };
        filesystem(dir, &disk, "esp", 32, 449, &mkfs, &|m| {
            fs::create_dir_all(m.join("EFI/debian"))?;
            fs::write(m.join(ESP_FILE.0), ESP_FILE.1)
        })?;
    }
    filesystem(
        dir,
        &disk,
        "boot",
        64,
        1,
        &["mkfs.ext4", "-q", "-F", "-L", "boot", "-U", BOOT_UUID],
        &|m| {
            if esp == Some(Esp::Vfat) {
                fs::create_dir_all(m.join("efi"))?;
            }
            fs::write(m.join("vmlinuz"), FILES[1].1)
        },
    )?;
    let root_uuid = format!("uuid={ROOT_UUID}");
    filesystem(
        dir,
        &disk,
        "root",
        320,
        65,
        &["mkfs.xfs", "-q", "-f", "-L", "root", "-m", &root_uuid],
        &|m| {
            for d in ["etc", "boot", "srv/data", "home", "opt"] {
                fs::create_dir_all(m.join(d))?;
            }
            if esp == Some(Esp::Ntfs) {
                fs::create_dir_all(m.join("srv/win"))?;
            }
            let fstab = match esp {
                Some(kind) => esp_fstab_text(kind),
                None => fstab_text(),
            };
            fs::write(m.join("etc/fstab"), fstab)?;
            fs::write(m.join("etc/hostname"), FILES[0].1)
        },
    )?;
    filesystem(
        dir,
        &disk,
        "data",
        64,
        385,
        &["mkfs.ext4", "-q", "-F", "-L", "data"],
        &|m| fs::write(m.join("records.csv"), FILES[2].1),
    )?;
    Ok(disk)
}
