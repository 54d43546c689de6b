//! btrfs layouts as today's installers write them (Fedora's `root`/`home`,
//! Ubuntu's `@`/`@home`, openSUSE's snapshot as the default subvolume),
//! mounted by `goldmount mount` on this machine's kernel: the fstab is found
//! inside a subvolume, each line is mounted with its subvolume (one btrfs
//! mounted once per subvolume), a clone mounts next to its gold, a hostile
//! fstab cannot lead outside the filesystem, and teardown leaves nothing.
//! Fixtures are made with the real tools (mkfs.btrfs, btrfs subvolume,
//! sgdisk) through a loop mount in the builder only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::{
    loops_backed_by, mount_lines_under, mounts_under, sparse_copy, tool, write_into, Env, MIB,
};
use serde_json::Value;

const BOOT_UUID: &str = "3b1c7f0e-5a2d-4e6b-9c8f-0d1e2f3a4b5c";
/// The btrfs UUID of each layout (mkfs.btrfs refuses a UUID the kernel
/// already knows, and the tests run in parallel).
fn btrfs_uuid(d: Distro) -> &'static str {
    match d {
        Distro::Fedora => "8d7c6b5a-4f3e-4d2c-9b1a-0f9e8d7c6b51",
        Distro::Ubuntu => "8d7c6b5a-4f3e-4d2c-9b1a-0f9e8d7c6b52",
        Distro::OpenSuse => "8d7c6b5a-4f3e-4d2c-9b1a-0f9e8d7c6b53",
        Distro::Hostile => "8d7c6b5a-4f3e-4d2c-9b1a-0f9e8d7c6b54",
        Distro::Rootflags => "8d7c6b5a-4f3e-4d2c-9b1a-0f9e8d7c6b55",
    }
}
const BOOT_MIB: u64 = 64;
const BTRFS_MIB: u64 = 320;

/// Which installer's layout.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Distro {
    /// Anaconda (Fedora 33+): subvolumes `root` and `home`, top level default.
    Fedora,
    /// Ubiquity/subiquity on btrfs: `@` and `@home`.
    Ubuntu,
    /// openSUSE: `@/.snapshots/1/snapshot` set as the default subvolume,
    /// `/` without `subvol=`, the rest under `@/`.
    OpenSuse,
    /// Fedora's layout whose `/` line names no subvolume (the kernel command
    /// line's `rootflags=subvol=root` did).
    Rootflags,
    /// Fedora's layout with lines a hostile clone adds, a decoy subvolume
    /// and a symlink at the top level pointing far out.
    Hostile,
}

/// The clone's fstab, exactly as each installer writes it.
fn fstab(d: Distro) -> String {
    let b = btrfs_uuid(d);
    let boot = format!("UUID={BOOT_UUID} /boot                   ext4    defaults        1 2\n");
    match d {
        Distro::Fedora => format!(
            "\n#\n# /etc/fstab\n# Created by anaconda on Tue Oct 15 09:12:31 2024\n#\n\
             UUID={b} /                       btrfs   subvol=root,compress=zstd:1 0 0\n{boot}\
             UUID={b} /home                   btrfs   subvol=home,compress=zstd:1 0 0\n"
        ),
        Distro::Ubuntu => format!(
            "# <file system> <mount point>   <type>  <options>       <dump>  <pass>\n\
             UUID={b} /               btrfs   defaults,subvol=@ 0       1\n\
             UUID={BOOT_UUID} /boot           ext4    defaults        0       2\n\
             UUID={b} /home           btrfs   defaults,subvol=@home 0       2\n"
        ),
        Distro::OpenSuse => format!(
            "UUID={b}  /                       btrfs  defaults                      0  0\n\
             UUID={b}  /.snapshots             btrfs  subvol=/@/.snapshots          0  0\n\
             UUID={b}  /home                   btrfs  subvol=/@/home                0  0\n{boot}"
        ),
        Distro::Rootflags => format!(
            "UUID={b} / btrfs compress=zstd:1 0 0\n{boot}UUID={b} /home btrfs subvol=home 0 0\n"
        ),
        Distro::Hostile => format!(
            "UUID={b} / btrfs subvol=root,compress=zstd:1 0 0\n{boot}\
             UUID={b} /home btrfs subvol=home 0 0\n\
             UUID={b} /srv btrfs subvol=no-such-subvolume 0 0\n\
             UUID={b} /mnt btrfs subvol=@/../../../../etc 0 0\n\
             UUID={b} /opt btrfs subvol=escape 0 0\n\
             UUID={b} /var btrfs subvolid=4242 0 0\n"
        ),
    }
}

fn subvol(path: &Path) {
    tool(
        "btrfs",
        &["-q", "subvolume", "create", path.to_str().unwrap()],
    );
}

/// A root tree: etc/fstab, etc/hostname, usr/, bin -> usr/bin, mount points.
fn root_tree(r: &Path, d: Distro) {
    for p in [
        "etc",
        "usr/bin",
        "boot",
        "home",
        "srv",
        "mnt",
        "opt",
        "var",
        ".snapshots",
    ] {
        fs::create_dir_all(r.join(p)).unwrap();
    }
    symlink("usr/bin", r.join("bin")).unwrap();
    fs::write(r.join("etc/fstab"), fstab(d)).unwrap();
    fs::write(r.join("etc/hostname"), format!("{d:?}-root\n")).unwrap();
}

/// Fills the btrfs mounted at `m` as the installer of `d` leaves it.
fn fill_btrfs(m: &Path, d: Distro) {
    match d {
        Distro::Fedora | Distro::Hostile | Distro::Rootflags => {
            subvol(&m.join("root"));
            subvol(&m.join("home"));
            root_tree(&m.join("root"), d);
            fs::create_dir_all(m.join("home/alice")).unwrap();
            fs::write(
                m.join("home/alice/notes.txt"),
                "alice's home on subvolume home\n",
            )
            .unwrap();
            fs::write(m.join("top-level-marker"), "top level\n").unwrap();
            if d == Distro::Hostile {
                // A decoy that sorts first: an fstab, but no root (no usr/bin,
                // and its / names another filesystem).
                subvol(&m.join("aaa-decoy"));
                fs::create_dir_all(m.join("aaa-decoy/etc")).unwrap();
                fs::write(
                    m.join("aaa-decoy/etc/fstab"),
                    "UUID=00000000-0000-4000-8000-000000000000 / ext4 defaults 0 0\n",
                )
                .unwrap();
                // subvol=escape: the kernel resolves it inside this btrfs only.
                symlink("../../../../../../..", m.join("escape")).unwrap();
            }
        }
        Distro::Ubuntu => {
            subvol(&m.join("@"));
            subvol(&m.join("@home"));
            root_tree(&m.join("@"), d);
            fs::create_dir_all(m.join("@home/bob")).unwrap();
            fs::write(m.join("@home/bob/notes.txt"), "bob's home on @home\n").unwrap();
        }
        Distro::OpenSuse => {
            subvol(&m.join("@"));
            subvol(&m.join("@/.snapshots"));
            fs::create_dir_all(m.join("@/.snapshots/1")).unwrap();
            let snap = m.join("@/.snapshots/1/snapshot");
            subvol(&snap);
            subvol(&m.join("@/home"));
            root_tree(&snap, d);
            fs::write(
                m.join("@/.snapshots/1/info.xml"),
                "<snapshot><num>1</num></snapshot>\n",
            )
            .unwrap();
            fs::write(m.join("@/home/carol.txt"), "carol's home on @/home\n").unwrap();
            tool(
                "btrfs",
                &["-q", "subvolume", "set-default", snap.to_str().unwrap()],
            );
        }
    }
}

/// Makes a filesystem image, fills it through a loop mount, writes it into
/// `disk` at `offset_mib`.
fn filesystem(
    dir: &Path,
    disk: &Path,
    name: &str,
    mib: u64,
    offset_mib: u64,
    mkfs: &[&str],
    fill: &dyn Fn(&Path),
) {
    let img = dir.join(format!("{name}.fs"));
    fs::File::create(&img).unwrap().set_len(mib * MIB).unwrap();
    let mut args = mkfs[1..].to_vec();
    args.push(img.to_str().unwrap());
    tool(mkfs[0], &args);
    let mnt = dir.join(format!("{name}.mnt"));
    fs::create_dir_all(&mnt).unwrap();
    tool(
        "mount",
        &["-o", "loop", img.to_str().unwrap(), mnt.to_str().unwrap()],
    );
    fill(&mnt);
    tool("umount", &[mnt.to_str().unwrap()]);
    fs::remove_dir(&mnt).unwrap();
    write_into(disk, offset_mib * MIB, &img);
    fs::remove_file(&img).unwrap();
}

/// A GPT disk: p1 /boot ext4, p2 btrfs laid out as `d`'s installer does.
fn gold(dir: &Path, d: Distro) -> PathBuf {
    let disk = dir.join(format!("{d:?}-gold.img").to_lowercase());
    fs::File::create(&disk)
        .unwrap()
        .set_len((1 + BOOT_MIB + BTRFS_MIB + 1) * MIB)
        .unwrap();
    tool(
        "sgdisk",
        &[
            "-n1:2048:+64M",
            "-t1:8300",
            "-c1:boot",
            "-n2:0:+320M",
            "-t2:8300",
            "-c2:system",
            disk.to_str().unwrap(),
        ],
    );
    filesystem(
        dir,
        &disk,
        "boot",
        BOOT_MIB,
        1,
        &["mkfs.ext4", "-q", "-F", "-U", BOOT_UUID],
        &|m| fs::write(m.join("vmlinuz"), format!("kernel of the {d:?} gold\n")).unwrap(),
    );
    filesystem(
        dir,
        &disk,
        "btrfs",
        BTRFS_MIB,
        1 + BOOT_MIB,
        &[
            "mkfs.btrfs",
            "-q",
            "-f",
            "-L",
            "system",
            "-U",
            btrfs_uuid(d),
        ],
        &|m| fill_btrfs(m, d),
    );
    disk
}

fn mount_of<'a>(m: &'a Value, original: &str) -> &'a Value {
    m["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["original_mountpoint"] == original)
        .unwrap_or_else(|| panic!("no mount for {original}: {m:#}"))
}

fn read(p: PathBuf) -> String {
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// mountinfo's `major:minor` of the mount at `target` (one btrfs mounted
/// twice shows one anonymous device number).
fn devno_at(target: &Path) -> String {
    let line = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(target.to_str().unwrap()))
        .unwrap_or_else(|| panic!("nothing mounted at {}", target.display()))
        .to_string();
    line.split(' ').nth(2).unwrap().to_string()
}

/// Everything goldmount made for `volumes` of `images` is gone.
fn assert_torn_down(env: &Env, images: &[&Path], volumes: &[&str]) {
    assert_eq!(
        mounts_under(env.path()),
        0,
        "mounts left: {:?}",
        mount_lines_under(env.path())
    );
    for img in images {
        assert_eq!(
            loops_backed_by(img),
            0,
            "loop devices left for {}",
            img.display()
        );
    }
    let listed = env.listed();
    for v in volumes {
        assert!(
            !listed.iter().any(|l| l == v),
            "{v} still listed: {listed:?}"
        );
        assert!(!env.root().join(v).exists(), "{v}: volume directory left");
    }
}

#[test]
fn fedora_btrfs_subvolumes_assemble_the_tree_and_a_clone_mounts_next_to_its_gold() {
    let env = Env::new();
    let gold_img = gold(env.path(), Distro::Fedora);
    let clone_img = env.path().join("fedora-clone.img");
    sparse_copy(&gold_img, &clone_img);

    let m = env.mount_json(&gold_img, "fedora", &[]);
    assert_eq!(m["layout"], "fstab", "{m:#}");
    let vol = env.root().join("fedora");
    assert_eq!(read(vol.join("etc/hostname")), "Fedora-root\n");
    assert_eq!(
        read(vol.join("boot/vmlinuz")),
        "kernel of the Fedora gold\n"
    );
    assert_eq!(
        read(vol.join("home/alice/notes.txt")),
        "alice's home on subvolume home\n"
    );
    // / is the subvolume, not the top level.
    assert!(!vol.join("top-level-marker").exists() && !vol.join("root").exists());
    let root = mount_of(&m, "/");
    let home = mount_of(&m, "/home");
    assert_eq!(root["subvolume"], "/root", "{m:#}");
    assert_eq!(home["subvolume"], "/home", "{m:#}");
    assert_eq!(mount_of(&m, "/boot")["subvolume"], Value::Null);
    assert_eq!(m["mounts"].as_array().unwrap().len(), 3);
    assert!(
        root["options"].as_str().unwrap().contains("subvol=/root"),
        "{m:#}"
    );
    assert!(
        root["options"]
            .as_str()
            .unwrap()
            .contains("compress=zstd:1"),
        "{m:#}"
    );
    assert!(
        root["fstab_options_kept"]
            .to_string()
            .contains("subvol=root"),
        "{m:#}"
    );
    let notes = m["notes"].to_string();
    assert!(notes.contains("found in btrfs subvolume root"), "{notes}");
    assert!(m["unresolved"].as_array().unwrap().is_empty(), "{m:#}");
    // One btrfs, mounted once per subvolume: one superblock (device number).
    assert_eq!(devno_at(&vol), devno_at(&vol.join("home")));

    // A clone next to its mounted gold: same fsid. This kernel (>= 6.7)
    // gives the clone a temporary fsid; older ones refuse (then goldmount
    // says to use btrfs_new_fsid).
    let c = env.mount_run(&clone_img, "fedora-clone", &[]);
    let temp_fsid = std::path::Path::new("/sys/fs/btrfs")
        .read_dir()
        .unwrap()
        .any(|e| e.unwrap().path().join("temp_fsid").exists());
    if !temp_fsid {
        assert!(!c.status.success());
        assert!(c.stderr.contains("btrfs_new_fsid"), "{}", c.stderr);
        eprintln!("path taken: this kernel has no temp-fsid; the clone was refused with the btrfs_new_fsid hint");
        env.gm_ok(&["unmount", "--volume", "fedora"]);
        assert_torn_down(&env, &[&gold_img, &clone_img], &["fedora"]);
        return;
    }
    let c = c.ok().json();
    let cnotes = c["notes"].to_string();
    assert!(
        cnotes.contains("temporary fsid") && cnotes.contains(btrfs_uuid(Distro::Fedora)),
        "the clone's manifest says temp-fsid was used: {cnotes}"
    );
    eprintln!(
        "path taken: temp-fsid (kernel {})",
        read(PathBuf::from("/proc/sys/kernel/osrelease")).trim()
    );
    let cvol = env.root().join("fedora-clone");
    assert_eq!(mount_of(&c, "/")["subvolume"], "/root");
    assert_eq!(mount_of(&c, "/home")["subvolume"], "/home");
    assert_eq!(
        read(cvol.join("home/alice/notes.txt")),
        "alice's home on subvolume home\n"
    );
    // Two superblocks: gold and clone; each one mounted for / and /home.
    assert_ne!(devno_at(&vol), devno_at(&cvol));
    assert_eq!(devno_at(&cvol), devno_at(&cvol.join("home")));
    // A write in the clone stays in the clone, in both subvolumes.
    fs::write(cvol.join("home/alice/notes.txt"), "changed in the clone\n").unwrap();
    fs::write(cvol.join("etc/clone-only"), "x").unwrap();
    assert_eq!(
        read(vol.join("home/alice/notes.txt")),
        "alice's home on subvolume home\n"
    );
    assert!(!vol.join("etc/clone-only").exists());
    assert_eq!(
        read(cvol.join("home/alice/notes.txt")),
        "changed in the clone\n"
    );

    env.gm_ok(&["unmount", "--volume", "fedora-clone"]);
    env.gm_ok(&["unmount", "--volume", "fedora"]);
    assert_torn_down(&env, &[&gold_img, &clone_img], &["fedora", "fedora-clone"]);
    // The clone kept the write (it was mounted read-write), the gold did not.
    let again = env.mount_json(&clone_img, "fedora-clone", &["--read-only"]);
    assert_eq!(again["layout"], "fstab");
    assert_eq!(
        read(cvol.join("home/alice/notes.txt")),
        "changed in the clone\n"
    );
    env.gm_ok(&["unmount", "--volume", "fedora-clone"]);
    assert_torn_down(&env, &[&clone_img], &["fedora-clone"]);
}

#[test]
fn ubuntu_at_subvolumes_read_only() {
    let env = Env::new();
    let img = gold(env.path(), Distro::Ubuntu);
    let before = fs::read(&img).unwrap();
    let m = env.mount_json(&img, "ubuntu", &["--read-only"]);
    assert_eq!(m["layout"], "fstab", "{m:#}");
    let vol = env.root().join("ubuntu");
    assert_eq!(read(vol.join("etc/hostname")), "Ubuntu-root\n");
    assert_eq!(
        read(vol.join("home/bob/notes.txt")),
        "bob's home on @home\n"
    );
    assert_eq!(
        read(vol.join("boot/vmlinuz")),
        "kernel of the Ubuntu gold\n"
    );
    assert_eq!(mount_of(&m, "/")["subvolume"], "/@");
    assert_eq!(mount_of(&m, "/home")["subvolume"], "/@home");
    for x in m["mounts"].as_array().unwrap() {
        let o = x["options"].as_str().unwrap();
        assert!(o.starts_with("ro,"), "{o}");
    }
    assert!(
        m["notes"]
            .to_string()
            .contains("found in btrfs subvolume @"),
        "{m:#}"
    );
    assert!(fs::write(vol.join("home/bob/x"), "x").is_err(), "read-only");
    env.gm_ok(&["unmount", "--volume", "ubuntu"]);
    assert_torn_down(&env, &[&img], &["ubuntu"]);
    assert!(
        fs::read(&img).unwrap() == before,
        "a read-only mount changed the image"
    );
}

#[test]
fn opensuse_default_subvolume_snapshot_holds_the_root() {
    let env = Env::new();
    let img = gold(env.path(), Distro::OpenSuse);
    let m = env.mount_json(&img, "suse", &[]);
    assert_eq!(m["layout"], "fstab", "{m:#}");
    let vol = env.root().join("suse");
    assert_eq!(read(vol.join("etc/hostname")), "OpenSuse-root\n");
    assert_eq!(read(vol.join("home/carol.txt")), "carol's home on @/home\n");
    assert_eq!(
        read(vol.join(".snapshots/1/info.xml")),
        "<snapshot><num>1</num></snapshot>\n"
    );
    assert_eq!(
        read(vol.join("boot/vmlinuz")),
        "kernel of the OpenSuse gold\n"
    );
    // `/` has no subvol=: the default subvolume, which the kernel names.
    assert_eq!(
        mount_of(&m, "/")["subvolume"],
        "/@/.snapshots/1/snapshot",
        "{m:#}"
    );
    assert_eq!(mount_of(&m, "/home")["subvolume"], "/@/home");
    assert_eq!(mount_of(&m, "/.snapshots")["subvolume"], "/@/.snapshots");
    let notes = m["notes"].to_string();
    assert!(
        notes.contains("default btrfs subvolume /@/.snapshots/1/snapshot"),
        "{notes}"
    );
    env.gm_ok(&["unmount", "--volume", "suse"]);
    assert_torn_down(&env, &[&img], &["suse"]);
}

#[test]
fn hostile_subvolume_options_stay_inside_the_filesystem() {
    let env = Env::new();
    let img = gold(env.path(), Distro::Hostile);
    let m = env.mount_json(&img, "hostile", &[]);
    assert_eq!(m["layout"], "fstab", "{m:#}");
    let vol = env.root().join("hostile");
    // The decoy sorts first but is no root; `root` is.
    assert_eq!(read(vol.join("etc/hostname")), "Hostile-root\n");
    assert_eq!(
        read(vol.join("home/alice/notes.txt")),
        "alice's home on subvolume home\n"
    );
    let un = m["unresolved"].as_array().unwrap();
    let reason = |mp: &str| {
        un.iter()
            .find(|u| u["mountpoint"] == mp)
            .unwrap_or_else(|| panic!("{mp} not unresolved: {m:#}"))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        reason("/srv").contains("subvolume /no-such-subvolume is not in this filesystem"),
        "{}",
        reason("/srv")
    );
    assert!(
        reason("/mnt").contains("refused") && reason("/mnt").contains("no .."),
        "{}",
        reason("/mnt")
    );
    assert!(
        reason("/var").contains("subvolume id 4242 is not in this filesystem"),
        "{}",
        reason("/var")
    );
    assert_eq!(un.len(), 3, "{m:#}");
    // subvol=escape follows the clone's symlink inside the btrfs only: the
    // kernel stops at the filesystem's top level, never the host's /.
    let opt = mount_of(&m, "/opt");
    assert_eq!(opt["subvolume"], "/", "{m:#}");
    assert_eq!(read(vol.join("opt/top-level-marker")), "top level\n");
    assert!(!vol.join("opt/proc").exists() && !vol.join("opt/etc/passwd").exists());
    assert!(
        !vol.join("srv").read_dir().unwrap().any(|_| true),
        "nothing mounted on /srv"
    );
    // Every mount of this clone's devices is inside the test's directory
    // (other tests mount elsewhere meanwhile: only ours are looked at).
    let ours: Vec<String> = common::loops_under(env.path())
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let of_clone: Vec<_> = common::mounts()
        .into_iter()
        .filter(|l| ours.contains(&l.source))
        .collect();
    assert_eq!(
        of_clone.len(),
        4,
        "/, /boot, /home, /opt and nothing else: {of_clone:?}"
    );
    assert!(
        of_clone
            .iter()
            .all(|l| l.target.starts_with(env.root().join("hostile"))),
        "{of_clone:?}"
    );
    env.gm_ok(&["unmount", "--volume", "hostile"]);
    assert_torn_down(&env, &[&img], &["hostile"]);
}

#[test]
fn a_root_line_without_subvol_takes_the_subvolume_its_fstab_was_found_in() {
    let env = Env::new();
    let img = gold(env.path(), Distro::Rootflags);
    let m = env.mount_json(&img, "rootflags", &[]);
    assert_eq!(m["layout"], "fstab", "{m:#}");
    let vol = env.root().join("rootflags");
    assert_eq!(read(vol.join("etc/hostname")), "Rootflags-root\n");
    assert!(
        !vol.join("top-level-marker").exists(),
        "/ is not the top level"
    );
    assert_eq!(mount_of(&m, "/")["subvolume"], "/root", "{m:#}");
    assert!(
        m["notes"].to_string().contains("names no btrfs subvolume"),
        "{m:#}"
    );
    env.gm_ok(&["unmount", "--volume", "rootflags"]);
    assert_torn_down(&env, &[&img], &["rootflags"]);
}
