//! The live gold of the lab scenarios that run beside it (`lab_docker`,
//! `lab_csi`): the production host's LVM gold disk (the three-filesystem
//! gold of [`crate::lvmgold`]) on a LIO target of its own, `vg_gold`
//! active and its fstab tree mounted, plus the checks and the appliance
//! cleanup those scenarios share. One copy, so that both scenarios stand
//! on the same set-up and tear it down the same way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use appliance::client::Client;
use appliance::lio::{naa_wwn_for_serial, Backstore, Lio, LioConfig, OWNER_ALIAS_PREFIX};

use crate::lab::{
    login, logout, remove_lio_target, run, session_scsi_addresses, try_run, wait_disk, CMD_TIMEOUT,
};
use crate::lvmgold;

/// The portal of every lab target (production and appliance): LIO on the
/// guest's loopback.
pub const PORTAL: &str = "127.0.0.1:3260";

/// How long the live gold's disk may take to appear after login.
const DISK_WAIT: Duration = Duration::from_secs(60);

/// The production storage's target that exports the live gold's disk.
/// Each scenario has its own, so that one boot can run several of them
/// one after the other without one's leftovers matching another's names.
#[derive(Debug, Clone, Copy)]
pub struct ProdTarget {
    /// The production target's IQN.
    pub iqn: &'static str,
    /// The fileio backstore holding the disk image; the appliance cleanup
    /// never removes it.
    pub backstore: &'static str,
    /// The backstore's unit serial, from which the disk's WWN follows.
    pub serial: &'static str,
}

/// Names from `dmsetup ls`, sorted: compared before and after a scenario
/// step to see which dm devices it made or left.
pub fn dm_names() -> Vec<String> {
    let out = run("dmsetup", &["ls"]);
    let mut v: Vec<String> = out
        .lines()
        .filter(|l| !l.contains("No devices found"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// The devices a dm device sits on (`dmsetup deps -o devname`): shows that
/// the live gold's LVs stay on the live PV while clones come and go.
pub fn dm_deps(name: &str) -> String {
    run("dmsetup", &["deps", "-o", "devname", name])
        .trim()
        .to_string()
}

/// Whether this host has an iSCSI session (with SCSI devices) to `iqn`:
/// the scenarios check that goldmount logs in and out of the appliance
/// and never touches the production target's session.
pub fn has_session(iqn: &str) -> bool {
    !session_scsi_addresses(iqn).is_empty()
}

/// Panics unless the gold's files (and its fstab) are there under `root`,
/// unchanged: the live tree and every clone must read as the gold.
pub fn assert_tree_is_the_gold(root: &Path, what: &str) {
    assert_eq!(
        fs::read_to_string(root.join("etc/fstab"))
            .unwrap_or_else(|e| panic!("{what}: etc/fstab: {e}")),
        lvmgold::fstab(),
        "{what}: etc/fstab"
    );
    for (rel, data) in lvmgold::files() {
        let got = fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{what}: {rel}: {e}"));
        assert!(got == data, "{what}: {rel} differs from the gold");
    }
}

// ---------------------------------------------------------------- the live gold

/// The production host's disk: a fileio LUN of our own target, logged in,
/// `vg_gold` active and the whole fstab tree mounted — as the original
/// host runs it, so that clones with the same VG name, UUIDs and labels
/// must come up beside it. Taken down on drop (mounts, VG, session, LIO),
/// whatever state it reached.
pub struct LiveGold {
    prod: ProdTarget,
    lio: Lio,
    initiator: String,
    img: PathBuf,
    root: PathBuf,
    disk: Option<PathBuf>,
    mounted: Vec<PathBuf>,
    configured: bool,
}

impl LiveGold {
    /// The live gold of image `img` on target `prod`, for `initiator`, to be
    /// mounted under `root`; nothing is configured until [`Self::attach`].
    pub fn new(prod: ProdTarget, img: &Path, initiator: &str, root: &Path) -> Self {
        LiveGold {
            prod,
            lio: Lio::new(LioConfig::new(prod.iqn, vec![PORTAL.parse().unwrap()])),
            initiator: initiator.to_string(),
            img: img.to_path_buf(),
            root: root.to_path_buf(),
            disk: None,
            mounted: Vec::new(),
            configured: false,
        }
    }

    /// Exports the image as LUN 0 of the production target, logs in
    /// (automatic scan, as a host configured for its storage does) and
    /// waits for the disk.
    pub fn attach(&mut self) -> PathBuf {
        self.configured = true;
        let size = fs::metadata(&self.img).unwrap().len();
        let b = Backstore {
            name: self.prod.backstore.into(),
            file: self.img.clone(),
            size,
            unit_serial: self.prod.serial.into(),
        };
        self.lio.ensure_target().unwrap();
        let wwn = self.lio.ensure_backstore(&b).unwrap();
        assert_eq!(wwn, naa_wwn_for_serial(self.prod.serial));
        self.lio.ensure_acl(&self.initiator).unwrap();
        self.lio
            .map_lun(
                0,
                self.prod.backstore,
                std::slice::from_ref(&self.initiator),
            )
            .unwrap();
        run("iscsiadm", &["-m", "discovery", "-t", "st", "-p", PORTAL]);
        login(self.prod.iqn, PORTAL);
        let disk = wait_disk(&wwn, DISK_WAIT);
        eprintln!("live gold disk: {} ({wwn})", disk.display());
        self.disk = Some(disk.clone());
        disk
    }

    /// The live gold's disk, once [`Self::attach`] found it: the device
    /// clones must never be confused with.
    pub fn disk(&self) -> &Path {
        self.disk.as_deref().expect("the live gold's disk")
    }

    /// The live gold's PV (partition 2 of its disk): the device its LVs must
    /// stay on.
    pub fn pv(&self) -> PathBuf {
        lvmgold::partition(self.disk(), 2)
    }

    /// Activates `vg_gold` the way the original host does at boot (every
    /// LV of the VG, by name; `--devices` only so that a devices file an
    /// earlier scenario of this boot left cannot hide the PV) and mounts
    /// its fstab tree under `root`.
    pub fn activate_and_mount(&mut self) {
        let pv = self.pv();
        run(
            "lvm",
            &[
                "vgchange",
                "-ay",
                "--devices",
                pv.to_str().unwrap(),
                lvmgold::VG,
            ],
        );
        let disk = self.disk().to_path_buf();
        let mounts = [
            (lvmgold::lv_path("root"), self.root.clone()),
            (lvmgold::partition(&disk, 1), self.root.join("boot")),
            (lvmgold::lv_path("home"), self.root.join("home")),
            (lvmgold::partition(&disk, 3), self.root.join("srv/data")),
        ];
        for (dev, at) in mounts {
            fs::create_dir_all(&at).unwrap();
            run("mount", &[dev.to_str().unwrap(), at.to_str().unwrap()]);
            self.mounted.push(at);
        }
    }
}

impl Drop for LiveGold {
    fn drop(&mut self) {
        for m in self.mounted.iter().rev() {
            let m = m.to_str().unwrap();
            if let Err(e) = try_run("umount", &[m], CMD_TIMEOUT) {
                eprintln!("live gold teardown: {e}; detaching lazily");
                let _ = try_run("umount", &["-l", m], CMD_TIMEOUT);
            }
        }
        if let Some(disk) = &self.disk {
            let pv = lvmgold::partition(disk, 2);
            let pv = pv.to_str().unwrap();
            if let Err(e) = try_run(
                "lvm",
                &["vgchange", "-q", "--devices", pv, "-an", lvmgold::VG],
                CMD_TIMEOUT,
            ) {
                eprintln!("live gold teardown: {e}");
            }
        }
        if !self.configured {
            return;
        }
        logout(self.prod.iqn, PORTAL);
        let _ = try_run(
            "iscsiadm",
            &[
                "-m",
                "node",
                "-T",
                self.prod.iqn,
                "-p",
                PORTAL,
                "-o",
                "delete",
            ],
            CMD_TIMEOUT,
        );
        if let Err(e) = self.lio.unmap_lun(0) {
            eprintln!("live gold teardown: unmap_lun: {e}");
        }
        if let Err(e) = self.lio.remove_acl(&self.initiator) {
            eprintln!("live gold teardown: remove_acl: {e}");
        }
        if let Err(e) = self.lio.remove_backstore(self.prod.backstore) {
            eprintln!("live gold teardown: remove_backstore: {e}");
        }
        remove_lio_target(&self.lio);
    }
}

// ---------------------------------------------------------------- the appliance

/// The token file [`crate::appliance_proc::ApplianceProc::start`] wrote
/// beside `log`: the scenarios read the appliance's API token from it.
pub fn token_file_beside(log: &Path) -> PathBuf {
    let stem = log.file_stem().unwrap().to_string_lossy().into_owned();
    fs::read_dir(log.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{stem}.token-"))
        })
        .expect("the appliance's token file")
}

/// Whatever a failed run left on the appliance goes (presentations forced,
/// clones), then our session to its target and its LIO configuration —
/// never the production target's backstore. Dropped after whatever took
/// the clones off this host (goldmountd's guard, the CSI node's engine),
/// so that the next scenario of the boot starts clean.
pub struct ApplianceCleanup {
    client: Client,
    lio: Lio,
    appliance_iqn: &'static str,
    initiator: String,
    prod_backstore: &'static str,
}

impl ApplianceCleanup {
    /// The cleanup of the appliance `client` talks to, whose LIO target is
    /// `appliance_iqn` on [`PORTAL`], for this host's `initiator`; `prod`'s
    /// backstore is left alone.
    pub fn new(
        client: Client,
        appliance_iqn: &'static str,
        initiator: &str,
        prod: ProdTarget,
    ) -> Self {
        ApplianceCleanup {
            client,
            lio: Lio::new(LioConfig::new(appliance_iqn, vec![PORTAL.parse().unwrap()])),
            appliance_iqn,
            initiator: initiator.to_string(),
            prod_backstore: prod.backstore,
        }
    }
}

impl Drop for ApplianceCleanup {
    fn drop(&mut self) {
        match self.client.list_presentations() {
            Ok(ps) => {
                for p in ps {
                    eprintln!("appliance cleanup: unpresenting {}", p.clone);
                    if let Err(e) = self.client.unpresent_forced(&p.clone) {
                        eprintln!("appliance cleanup: unpresent {}: {e}", p.clone);
                    }
                }
            }
            Err(e) => eprintln!("appliance cleanup: listing presentations: {e}"),
        }
        if let Ok(cs) = self.client.list_clones() {
            for c in cs {
                eprintln!("appliance cleanup: deleting clone {}", c.name);
                if let Err(e) = self.client.delete_clone(&c.name) {
                    eprintln!("appliance cleanup: delete clone {}: {e}", c.name);
                }
            }
        }
        logout(self.appliance_iqn, PORTAL);
        if let Ok(d) = fs::read_dir(self.lio.tpg_dir().join("lun")) {
            for e in d.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(n) = n.strip_prefix("lun_").and_then(|n| n.parse::<u32>().ok()) {
                    if let Err(e) = self.lio.unmap_lun(n) {
                        eprintln!("appliance cleanup: unmap_lun({n}): {e}");
                    }
                }
            }
        }
        if self.lio.acl_dir(&self.initiator).exists() {
            if let Err(e) = self.lio.remove_acl(&self.initiator) {
                eprintln!("appliance cleanup: remove_acl: {e}");
            }
        }
        let core = self.lio.config().configfs_root.join("core");
        for hba in fs::read_dir(&core).into_iter().flatten().flatten() {
            for dev in fs::read_dir(hba.path()).into_iter().flatten().flatten() {
                let name = dev.file_name().to_string_lossy().into_owned();
                let alias = fs::read_to_string(dev.path().join("alias")).unwrap_or_default();
                if alias.starts_with(OWNER_ALIAS_PREFIX) && name != self.prod_backstore {
                    if let Err(e) = self.lio.remove_backstore(&name) {
                        eprintln!("appliance cleanup: remove_backstore({name}): {e}");
                    }
                }
            }
        }
        remove_lio_target(&self.lio);
    }
}
