//! LIO (the Linux SCSI target) configured through configfs directly.
//!
//! The appliance presents gold copies and clones as iSCSI LUNs. Instead of
//! shelling out to targetcli (Python, needs D-Bus, ~2 s per call under TCG) we
//! write the kernel's configfs tree ourselves:
//!
//! ```text
//! <root>/core/fileio_<N>/<backstore>/{control,enable,alias,wwn/vpd_unit_serial}
//! <root>/iscsi/<iqn>/tpgt_1/{enable,attrib/*,np/<ip:port>}
//! <root>/iscsi/<iqn>/tpgt_1/lun/lun_<L>/<backstore> -> core/fileio_<N>/<backstore>
//! <root>/iscsi/<iqn>/tpgt_1/acls/<initiator>/lun_<L>/<backstore> -> tpgt_1/lun/lun_<L>
//! ```
//!
//! Every operation is idempotent (it reads before it writes, because several
//! configfs attributes reject a second identical write) and only ever touches
//! objects it created: our one target, and backstores whose `alias` carries
//! [`OWNER_ALIAS_PREFIX`].

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tracing::{debug, info};

/// Default mount point of LIO's configfs tree.
pub const DEFAULT_CONFIGFS_ROOT: &str = "/sys/kernel/config/target";

/// The one target portal group tag we use; LIO requires at least one TPG.
const TPG: &str = "tpgt_1";

/// Marks a backstore as created by goldmount (written to its `alias`), so that
/// removals never touch storage objects somebody else configured.
pub const OWNER_ALIAS_PREFIX: &str = "goldmount:";

/// IEEE company id LIO uses in NAA designators unless told otherwise
/// (`wwn/company_id`): 0x001405, "Linux-IO / Datera".
pub const LIO_COMPANY_ID: u32 = 0x001405;

/// Where and as what the appliance's iSCSI target lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LioConfig {
    /// Root of LIO's configfs tree; [`DEFAULT_CONFIGFS_ROOT`] on a real host.
    pub configfs_root: PathBuf,
    /// The target IQN this appliance owns (e.g. `iqn.2026-11.io.goldmount:appliance`).
    pub target_iqn: String,
    /// Network portals of the TPG (`127.0.0.1:3260` in the lab).
    pub portals: Vec<SocketAddr>,
}

impl LioConfig {
    /// A config rooted at the standard configfs location.
    pub fn new(target_iqn: impl Into<String>, portals: Vec<SocketAddr>) -> Self {
        Self {
            configfs_root: PathBuf::from(DEFAULT_CONFIGFS_ROOT),
            target_iqn: target_iqn.into(),
            portals,
        }
    }
}

/// A file-backed (fileio) storage object: one gold copy or clone image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backstore {
    /// configfs name of the storage object; `[A-Za-z0-9_.:-]`, unique per appliance.
    pub name: String,
    /// The image file backing it.
    pub file: PathBuf,
    /// Size in bytes presented to initiators.
    pub size: u64,
    /// VPD 0x80 unit serial; the NAA WWN (VPD 0x83) is derived from its hex digits.
    pub unit_serial: String,
}

/// Why a configfs operation failed; always names the path and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum LioError {
    /// configfs (or LIO's part of it) is not there: module not loaded or not mounted.
    #[error("LIO configfs root {path} is missing: mount configfs and `modprobe target_core_mod iscsi_target_mod target_core_file`")]
    NoConfigfs {
        /// The configured root.
        path: PathBuf,
    },
    /// A kernel call on a configfs path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we tried (mkdir, rmdir, write "…", symlink → …, read).
        op: String,
        /// The configfs path.
        path: PathBuf,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A name that would escape its configfs directory or that LIO rejects.
    #[error("invalid {what} {value:?}: {why}")]
    InvalidName {
        /// Which kind of name (backstore, IQN).
        what: &'static str,
        /// The offending value.
        value: String,
        /// What is allowed.
        why: &'static str,
    },
    /// An object of that name exists but is not ours (no goldmount alias).
    #[error(
        "{path} exists but was not created by goldmount (alias {alias:?}); refusing to touch it"
    )]
    NotOurs {
        /// The foreign object.
        path: PathBuf,
        /// Its alias as read.
        alias: String,
    },
    /// An object exists with a different configuration than requested.
    #[error("{path}: expected {expected}, found {found}")]
    Mismatch {
        /// The object.
        path: PathBuf,
        /// What the caller asked for.
        expected: String,
        /// What configfs reports.
        found: String,
    },
    /// A backstore that map_lun was asked to use does not exist.
    #[error("backstore {name:?} not found under {root}/core (call ensure_backstore first)")]
    NoSuchBackstore {
        /// The requested backstore.
        name: String,
        /// The configfs root searched.
        root: PathBuf,
    },
    /// An ACL that map_lun was asked to use does not exist.
    #[error("ACL {path} not found (call ensure_acl first)")]
    NoSuchAcl {
        /// The expected ACL directory.
        path: PathBuf,
    },
    /// The backstore is still exported through a LUN of our target.
    #[error("backstore {name:?} is still mapped as {lun}; unmap it first")]
    StillMapped {
        /// The backstore.
        name: String,
        /// The LUN directory referencing it.
        lun: PathBuf,
    },
}

/// Handle on our LIO target; cheap, stateless (configfs is the state).
#[derive(Debug, Clone)]
pub struct Lio {
    cfg: LioConfig,
}

fn io_err(op: impl Into<String>, path: &Path) -> impl FnOnce(io::Error) -> LioError + '_ {
    let op = op.into();
    move |source| LioError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates a configfs directory unless it exists; configfs fills in children.
fn mkdir_once(path: &Path) -> Result<bool, LioError> {
    if path.is_dir() {
        return Ok(false);
    }
    match fs::create_dir(path) {
        Ok(()) => {
            debug!(path = %path.display(), "configfs mkdir");
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err("mkdir", path)(e)),
    }
}

fn rmdir_if_present(path: &Path) -> Result<(), LioError> {
    match fs::remove_dir(path) {
        Ok(()) => {
            debug!(path = %path.display(), "configfs rmdir");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("rmdir", path)(e)),
    }
}

fn read_attr(path: &Path) -> Result<String, LioError> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(io_err("read", path))
}

fn write_attr(path: &Path, value: &str) -> Result<(), LioError> {
    debug!(path = %path.display(), value, "configfs write");
    fs::write(path, value).map_err(io_err(format!("write {value:?} to"), path))
}

/// Writes `value` only if the attribute reads back differently (LIO rejects
/// some repeated writes, e.g. enabling an enabled TPG).
fn set_attr(path: &Path, value: &str) -> Result<(), LioError> {
    if read_attr(path)? == value {
        return Ok(());
    }
    write_attr(path, value)
}

fn check_name(what: &'static str, value: &str) -> Result<(), LioError> {
    let ok = !value.is_empty()
        && value != "."
        && value != ".."
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(LioError::InvalidName {
            what,
            value: value.to_string(),
            why: "use only ASCII letters, digits, '_', '-', '.', ':'",
        })
    }
}

/// The NAA designator LIO reports in VPD page 0x83 (and Linux shows in
/// `/sys/block/sdX/device/wwid`) for a device whose `vpd_unit_serial` is
/// `unit_serial`, with LIO's default company id.
///
/// Mirrors `spc_gen_naa_6h_vendor_specific()` in the kernel's
/// `target_core_spc.c`: NAA type 6 (IEEE Registered Extended), the 24-bit
/// company id 0x001405, then the first 25 hexadecimal digits of the serial,
/// skipping every character that is not a hex digit, zero-padded to 16 bytes.
pub fn naa_wwn_for_serial(unit_serial: &str) -> String {
    naa_wwn_for_serial_with_company(unit_serial, LIO_COMPANY_ID)
}

/// [`naa_wwn_for_serial`] for a device whose `wwn/company_id` was changed.
pub fn naa_wwn_for_serial_with_company(unit_serial: &str, company_id: u32) -> String {
    // 32 nibbles = 16 bytes: NAA (1) + company id (6) + vendor specific (25).
    let mut nibbles: Vec<u8> = Vec::with_capacity(32);
    nibbles.push(0x6);
    for shift in [20u32, 16, 12, 8, 4, 0] {
        // Each value is masked to 4 bits, so the cast cannot truncate.
        nibbles.push(((company_id >> shift) & 0xf) as u8);
    }
    nibbles.extend(
        unit_serial
            .chars()
            .filter_map(|c| c.to_digit(16))
            .map(|d| d as u8)
            .take(25),
    );
    nibbles.resize(32, 0);
    let hex: String = nibbles
        .iter()
        .filter_map(|n| char::from_digit(u32::from(*n), 16))
        .collect();
    format!("naa.{hex}")
}

/// The `/dev/disk/by-id/` link name udev creates for a LIO LUN (`wwn-0x…`).
pub fn by_id_wwn_link(naa_wwn: &str) -> String {
    format!("wwn-0x{}", naa_wwn.trim_start_matches("naa."))
}

impl Lio {
    /// A handle for the target described by `cfg`; touches nothing yet.
    pub fn new(cfg: LioConfig) -> Self {
        Self { cfg }
    }

    /// The configuration this handle was made with.
    pub fn config(&self) -> &LioConfig {
        &self.cfg
    }

    fn root(&self) -> &Path {
        &self.cfg.configfs_root
    }

    /// `<root>/iscsi/<iqn>`.
    pub fn target_dir(&self) -> PathBuf {
        self.root().join("iscsi").join(&self.cfg.target_iqn)
    }

    /// `<root>/iscsi/<iqn>/tpgt_1`.
    pub fn tpg_dir(&self) -> PathBuf {
        self.target_dir().join(TPG)
    }

    /// `…/tpgt_1/np/<ip:port>` (IPv6 as `[addr]:port`, as LIO expects).
    pub fn portal_dir(&self, portal: &SocketAddr) -> PathBuf {
        self.tpg_dir().join("np").join(portal.to_string())
    }

    /// `…/tpgt_1/acls/<initiator>`.
    pub fn acl_dir(&self, initiator_iqn: &str) -> PathBuf {
        self.tpg_dir().join("acls").join(initiator_iqn)
    }

    /// `…/tpgt_1/lun/lun_<lun>`.
    pub fn lun_dir(&self, lun: u32) -> PathBuf {
        self.tpg_dir().join("lun").join(format!("lun_{lun}"))
    }

    fn ensure_root(&self) -> Result<(), LioError> {
        if self.root().is_dir() {
            Ok(())
        } else {
            Err(LioError::NoConfigfs {
                path: self.root().to_path_buf(),
            })
        }
    }

    /// Creates the target, its TPG, portals and access attributes, and enables
    /// the TPG. Explicit ACLs only (no demo mode), no CHAP: the appliance
    /// controls which initiator sees which LUN.
    pub fn ensure_target(&self) -> Result<(), LioError> {
        check_name("target IQN", &self.cfg.target_iqn)?;
        self.ensure_root()?;
        // mkdir of the fabric directory loads/registers iscsi_target_mod.
        mkdir_once(&self.root().join("iscsi"))?;
        if mkdir_once(&self.target_dir())? {
            info!(iqn = %self.cfg.target_iqn, "created iSCSI target");
        }
        let tpg = self.tpg_dir();
        mkdir_once(&tpg)?;
        for portal in &self.cfg.portals {
            if mkdir_once(&self.portal_dir(portal))? {
                info!(%portal, "created iSCSI portal");
            }
        }
        let attrib = tpg.join("attrib");
        for (name, value) in [
            ("authentication", "0"),
            ("generate_node_acls", "0"),
            ("cache_dynamic_acls", "0"),
            ("demo_mode_write_protect", "0"),
            ("prod_mode_write_protect", "0"),
        ] {
            set_attr(&attrib.join(name), value)?;
        }
        set_attr(&tpg.join("enable"), "1")
    }

    /// Finds `core/<hba>/<name>` for a fileio backstore of that name.
    fn find_backstore(&self, name: &str) -> Result<Option<PathBuf>, LioError> {
        let core = self.root().join("core");
        let entries = match fs::read_dir(&core) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("read_dir", &core)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err("read_dir", &core))?;
            let hba = entry.file_name();
            if !hba.to_string_lossy().starts_with("fileio_") {
                continue;
            }
            let dev = entry.path().join(name);
            if dev.is_dir() {
                return Ok(Some(dev));
            }
        }
        Ok(None)
    }

    /// Lowest `fileio_<N>` not in use: one HBA per backstore, as rtslib does,
    /// so removing ours never empties someone else's HBA.
    fn free_hba(&self) -> PathBuf {
        let core = self.root().join("core");
        let mut n = 0u32;
        while core.join(format!("fileio_{n}")).exists() {
            n += 1;
        }
        core.join(format!("fileio_{n}"))
    }

    fn check_ours(dev: &Path) -> Result<(), LioError> {
        let alias = read_attr(&dev.join("alias"))?;
        if alias.starts_with(OWNER_ALIAS_PREFIX) {
            Ok(())
        } else {
            Err(LioError::NotOurs {
                path: dev.to_path_buf(),
                alias,
            })
        }
    }

    /// Creates (or verifies) a fileio storage object for `b` and enables it.
    /// Returns the NAA WWN the kernel will report for it, as in
    /// `/sys/block/sdX/device/wwid`.
    pub fn ensure_backstore(&self, b: &Backstore) -> Result<String, LioError> {
        check_name("backstore name", &b.name)?;
        if b.unit_serial.is_empty() || b.unit_serial.len() > 254 {
            return Err(LioError::InvalidName {
                what: "unit serial",
                value: b.unit_serial.clone(),
                why: "must be 1..=254 bytes",
            });
        }
        self.ensure_root()?;
        mkdir_once(&self.root().join("core"))?;
        let dev = match self.find_backstore(&b.name)? {
            Some(dev) => {
                Self::check_ours(&dev)?;
                dev
            }
            None => {
                let hba = self.free_hba();
                mkdir_once(&hba)?;
                let dev = hba.join(&b.name);
                mkdir_once(&dev)?;
                write_attr(
                    &dev.join("alias"),
                    &format!("{OWNER_ALIAS_PREFIX}{}", b.name),
                )?;
                info!(name = %b.name, dev = %dev.display(), "created fileio backstore");
                dev
            }
        };
        let enabled = read_attr(&dev.join("enable"))? == "1";
        if enabled {
            let info = read_attr(&dev.join("info"))?;
            let want_file = format!("File: {}", b.file.display());
            let want_size = format!("Size: {}", b.size);
            if !info.contains(&want_file) || !info.contains(&want_size) {
                return Err(LioError::Mismatch {
                    path: dev,
                    expected: format!("{want_file} {want_size}"),
                    found: info,
                });
            }
        } else {
            write_attr(
                &dev.join("control"),
                &format!("fd_dev_name={},fd_dev_size={}", b.file.display(), b.size),
            )?;
        }
        // The serial can only change while no LUN exports the device.
        let serial_path = dev.join("wwn").join("vpd_unit_serial");
        let current = read_attr(&serial_path)?;
        let current = current
            .strip_prefix("T10 VPD Unit Serial Number:")
            .unwrap_or(&current)
            .trim();
        if current != b.unit_serial {
            write_attr(&serial_path, &b.unit_serial)?;
        }
        if !enabled {
            write_attr(&dev.join("enable"), "1")?;
        }
        let company = dev.join("wwn").join("company_id");
        let company_id = match fs::read_to_string(&company) {
            Ok(s) => parse_company_id(&s).unwrap_or(LIO_COMPANY_ID),
            Err(_) => LIO_COMPANY_ID,
        };
        Ok(naa_wwn_for_serial_with_company(&b.unit_serial, company_id))
    }

    /// Creates the ACL that lets `initiator_iqn` log in (no LUNs yet).
    pub fn ensure_acl(&self, initiator_iqn: &str) -> Result<(), LioError> {
        check_name("initiator IQN", initiator_iqn)?;
        self.ensure_root()?;
        if mkdir_once(&self.acl_dir(initiator_iqn))? {
            info!(initiator = initiator_iqn, "created ACL");
        }
        Ok(())
    }

    /// Exports backstore `backstore_name` as LUN `lun` of our TPG and maps it
    /// (same LUN number, read-write) into each listed initiator's ACL.
    pub fn map_lun(
        &self,
        lun: u32,
        backstore_name: &str,
        initiator_iqns: &[String],
    ) -> Result<(), LioError> {
        check_name("backstore name", backstore_name)?;
        let dev =
            self.find_backstore(backstore_name)?
                .ok_or_else(|| LioError::NoSuchBackstore {
                    name: backstore_name.to_string(),
                    root: self.root().to_path_buf(),
                })?;
        Self::check_ours(&dev)?;
        for iqn in initiator_iqns {
            check_name("initiator IQN", iqn)?;
            if !self.acl_dir(iqn).is_dir() {
                return Err(LioError::NoSuchAcl {
                    path: self.acl_dir(iqn),
                });
            }
        }
        let lun_dir = self.lun_dir(lun);
        mkdir_once(&lun_dir)?;
        match lun_backing(&lun_dir)? {
            Some((_, target)) if same_object(&target, &dev) => {}
            Some((_, target)) => {
                return Err(LioError::Mismatch {
                    path: lun_dir,
                    expected: dev.display().to_string(),
                    found: target.display().to_string(),
                })
            }
            None => {
                let link = lun_dir.join(backstore_name);
                std::os::unix::fs::symlink(&dev, &link)
                    .map_err(io_err(format!("symlink -> {}", dev.display()), &link))?;
                info!(lun, backstore = backstore_name, "exported LUN");
            }
        }
        for iqn in initiator_iqns {
            let mapped = self.acl_dir(iqn).join(format!("lun_{lun}"));
            mkdir_once(&mapped)?;
            match lun_backing(&mapped)? {
                Some((_, target)) if same_object(&target, &lun_dir) => {}
                Some((_, target)) => {
                    return Err(LioError::Mismatch {
                        path: mapped,
                        expected: lun_dir.display().to_string(),
                        found: target.display().to_string(),
                    })
                }
                None => {
                    let link = mapped.join(backstore_name);
                    std::os::unix::fs::symlink(&lun_dir, &link)
                        .map_err(io_err(format!("symlink -> {}", lun_dir.display()), &link))?;
                    info!(lun, initiator = %iqn, "mapped LUN");
                }
            }
            set_attr(&mapped.join("write_protect"), "0")?;
        }
        Ok(())
    }

    /// Removes LUN `lun` from every ACL of our TPG and then from the TPG.
    /// Absent LUNs are fine (idempotent).
    pub fn unmap_lun(&self, lun: u32) -> Result<(), LioError> {
        let lun_dir = self.lun_dir(lun);
        let acls = self.tpg_dir().join("acls");
        if let Ok(entries) = fs::read_dir(&acls) {
            for acl in entries {
                let acl = acl.map_err(io_err("read_dir", &acls))?;
                let mapped_luns = fs::read_dir(acl.path()).map_err(io_err("read_dir", &acls))?;
                for mapped in mapped_luns {
                    let mapped = mapped.map_err(io_err("read_dir", &acls))?.path();
                    let is_lun = mapped
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("lun_"));
                    if !is_lun || !mapped.is_dir() {
                        continue;
                    }
                    if let Some((link, target)) = lun_backing(&mapped)? {
                        if same_object(&target, &lun_dir) {
                            remove_link(&link)?;
                            rmdir_if_present(&mapped)?;
                            info!(lun, acl = %acl.path().display(), "unmapped LUN");
                        }
                    }
                }
            }
        }
        if lun_dir.is_dir() {
            if let Some((link, _)) = lun_backing(&lun_dir)? {
                remove_link(&link)?;
            }
            rmdir_if_present(&lun_dir)?;
            info!(lun, "removed LUN");
        }
        Ok(())
    }

    /// Deletes our backstore `name` (and its HBA once empty). Refuses while a
    /// LUN of our target still exports it, and refuses foreign objects.
    pub fn remove_backstore(&self, name: &str) -> Result<(), LioError> {
        check_name("backstore name", name)?;
        let Some(dev) = self.find_backstore(name)? else {
            return Ok(());
        };
        Self::check_ours(&dev)?;
        let luns = self.tpg_dir().join("lun");
        if let Ok(entries) = fs::read_dir(&luns) {
            for lun in entries {
                let lun = lun.map_err(io_err("read_dir", &luns))?.path();
                if let Some((_, target)) = lun_backing(&lun)? {
                    if same_object(&target, &dev) {
                        return Err(LioError::StillMapped {
                            name: name.to_string(),
                            lun,
                        });
                    }
                }
            }
        }
        rmdir_if_present(&dev)?;
        info!(name, "removed backstore");
        if let Some(hba) = dev.parent() {
            let empty = fs::read_dir(hba)
                .map(|mut d| {
                    d.all(|e| {
                        e.map(|e| !e.path().is_dir() || e.file_name() == "hba_info")
                            .unwrap_or(false)
                    })
                })
                .unwrap_or(false);
            if empty {
                rmdir_if_present(hba)?;
            }
        }
        Ok(())
    }

    /// Deletes the ACL of `initiator_iqn`, unmapping its LUNs first.
    pub fn remove_acl(&self, initiator_iqn: &str) -> Result<(), LioError> {
        check_name("initiator IQN", initiator_iqn)?;
        let acl = self.acl_dir(initiator_iqn);
        let entries = match fs::read_dir(&acl) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err("read_dir", &acl)(e)),
        };
        for mapped in entries {
            let mapped = mapped.map_err(io_err("read_dir", &acl))?.path();
            let is_lun = mapped
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("lun_"));
            if is_lun && mapped.is_dir() {
                if let Some((link, _)) = lun_backing(&mapped)? {
                    remove_link(&link)?;
                }
                rmdir_if_present(&mapped)?;
            }
        }
        rmdir_if_present(&acl)?;
        info!(initiator = initiator_iqn, "removed ACL");
        Ok(())
    }
}

fn parse_company_id(s: &str) -> Option<u32> {
    let s = s.trim();
    let hex = s.strip_prefix("0x").unwrap_or(s);
    u32::from_str_radix(hex, 16).ok()
}

/// The symlink inside a LUN (or mapped-LUN) directory and where it points.
fn lun_backing(dir: &Path) -> Result<Option<(PathBuf, PathBuf)>, LioError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read_dir", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err("read_dir", dir))?;
        let ft = entry.file_type().map_err(io_err("stat", &entry.path()))?;
        if ft.is_symlink() {
            let link = entry.path();
            let target = fs::read_link(&link).map_err(io_err("readlink", &link))?;
            let target = if target.is_absolute() {
                target
            } else {
                dir.join(target)
            };
            return Ok(Some((link, target)));
        }
    }
    Ok(None)
}

/// configfs returns relative link targets (`../../../../core/...`); compare by
/// canonical path where possible.
fn same_object(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn remove_link(link: &Path) -> Result<(), LioError> {
    match fs::remove_file(link) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("unlink", link)(e)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// A fresh, empty directory for path-planning tests (no configfs semantics).
    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lio-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn naa_from_uuid_serial() {
        // LIO's default serial is a UUID; dashes are skipped, 25 hex digits kept.
        assert_eq!(
            naa_wwn_for_serial("3a4f1c2e-9b7d-4e21-8f00-123456789abc"),
            "naa.60014053a4f1c2e9b7d4e218f0012345"
        );
    }

    #[test]
    fn naa_skips_non_hex_and_pads() {
        // 'g', 'z', '-' are skipped; short serials are zero-padded.
        assert_eq!(
            naa_wwn_for_serial("gz-1f"),
            format!("naa.60014051f{}", "0".repeat(23))
        );
        assert_eq!(
            naa_wwn_for_serial(""),
            format!("naa.6001405{}", "0".repeat(25))
        );
        // Upper case digits come out lower case, as the kernel prints them.
        assert_eq!(
            naa_wwn_for_serial("ABCDEF"),
            format!("naa.6001405abcdef{}", "0".repeat(19))
        );
    }

    #[test]
    fn naa_is_always_32_hex_digits() {
        for s in [
            "",
            "1",
            "0123456789abcdef0123456789abcdef0123",
            "gm-clone-7",
        ] {
            let w = naa_wwn_for_serial(s);
            assert_eq!(w.len(), 4 + 32, "{w}");
            assert!(w[4..].chars().all(|c| c.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn naa_other_company() {
        assert_eq!(
            naa_wwn_for_serial_with_company("1", 0xabcdef),
            "naa.6abcdef1000000000000000000000000"
        );
    }

    #[test]
    fn by_id_link_name() {
        assert_eq!(
            by_id_wwn_link("naa.60014051f0000000000000000000000"),
            "wwn-0x60014051f0000000000000000000000"
        );
    }

    #[test]
    fn paths_are_planned_under_root() {
        let lio = Lio::new(LioConfig {
            configfs_root: PathBuf::from("/cfg"),
            target_iqn: "iqn.2026-11.io.goldmount:t".into(),
            portals: vec![
                "127.0.0.1:3260".parse().unwrap(),
                "[::1]:3260".parse().unwrap(),
            ],
        });
        assert_eq!(
            lio.tpg_dir(),
            Path::new("/cfg/iscsi/iqn.2026-11.io.goldmount:t/tpgt_1")
        );
        assert_eq!(
            lio.portal_dir(&lio.config().portals[1]),
            Path::new("/cfg/iscsi/iqn.2026-11.io.goldmount:t/tpgt_1/np/[::1]:3260")
        );
        assert_eq!(
            lio.lun_dir(3),
            Path::new("/cfg/iscsi/iqn.2026-11.io.goldmount:t/tpgt_1/lun/lun_3")
        );
    }

    #[test]
    fn names_that_escape_are_rejected() {
        for bad in ["", "..", "a/b", "x y"] {
            assert!(check_name("backstore name", bad).is_err(), "{bad:?}");
        }
        check_name("initiator IQN", "iqn.1993-08.org.debian:01:abc").unwrap();
    }

    #[test]
    fn missing_root_is_a_typed_error() {
        let lio = Lio::new(LioConfig {
            configfs_root: scratch("missing").join("nope"),
            target_iqn: "iqn.2026-11.io.goldmount:t".into(),
            portals: vec![],
        });
        assert!(matches!(
            lio.ensure_target(),
            Err(LioError::NoConfigfs { .. })
        ));
    }

    #[test]
    fn free_hba_skips_used_indices() {
        let dir = scratch("hba");
        fs::create_dir_all(dir.join("core/fileio_0")).unwrap();
        fs::create_dir_all(dir.join("core/fileio_1")).unwrap();
        let lio = Lio::new(LioConfig {
            configfs_root: dir.clone(),
            target_iqn: "iqn.2026-11.io.goldmount:t".into(),
            portals: vec![],
        });
        assert_eq!(lio.free_hba(), dir.join("core/fileio_2"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn company_id_parses() {
        assert_eq!(parse_company_id("0x001405\n"), Some(0x001405));
        assert_eq!(parse_company_id("001405"), Some(0x001405));
    }
}
