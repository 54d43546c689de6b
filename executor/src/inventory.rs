//! `local-devices`: the host's block devices as sysfs describes them (not
//! lsblk): size, geometry, SCSI identity, transport and path, holders,
//! partitions and mountpoints.

use serde::Serialize;

use crate::hctl::Hctl;
use crate::mounts::{self, MountTable};
use crate::sysfs::Root;
use crate::{iscsi_sysfs, vpd};

/// One whole block device (partitions are nested).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BlockDevice {
    /// Kernel name (sda, loop0, dm-2, nvme0n1).
    pub name: String,
    /// major:minor.
    pub dev: String,
    /// Size in bytes.
    pub size: u64,
    /// Logical sector size in bytes.
    pub logical_block_size: u32,
    /// Physical sector size in bytes.
    pub physical_block_size: u32,
    /// Read-only.
    pub read_only: bool,
    /// Removable media.
    pub removable: bool,
    /// How the device is attached: iscsi, fc, sas, scsi_debug, virtio, ata,
    /// usb, nvme, loop, dm, scsi, virtual.
    pub transport: String,
    /// SCSI vendor (`device/vendor`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// SCSI model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// SCSI revision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// `device/wwid` (kernel spelling, e.g. naa.6001405…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wwid: Option<String>,
    /// VPD 0x80 unit serial number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    /// SCSI address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hctl: Option<Hctl>,
    /// iSCSI session this disk came through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iscsi: Option<iscsi_sysfs::Session>,
    /// FC remote port this disk came through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fc: Option<FcPath>,
    /// Loop device backing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loop_backing: Option<LoopBacking>,
    /// Device-mapper name/uuid (for dm-N).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dm: Option<DmInfo>,
    /// Devices stacked on this one (`holders/`), with dm names.
    pub holders: Vec<Holder>,
    /// Devices this one is stacked on (`slaves/`).
    pub slaves: Vec<String>,
    /// Partitions.
    pub partitions: Vec<Partition>,
    /// Where the whole device is mounted.
    pub mountpoints: Vec<String>,
}

/// The FC remote port of a SCSI disk.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FcPath {
    /// rport-H:C-N.
    pub rport: String,
    /// Remote WWPN (normalized).
    pub wwpn: String,
    /// Remote WWNN (normalized).
    pub wwnn: String,
}

/// What backs a loop device.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoopBacking {
    /// Backing file path.
    pub file: String,
    /// Byte offset into it.
    pub offset: u64,
    /// Size limit in bytes (0 = none).
    pub sizelimit: u64,
    /// Detached automatically on last close.
    pub autoclear: bool,
}

/// Device-mapper facts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DmInfo {
    /// dm name (/dev/mapper/NAME).
    pub name: String,
    /// dm uuid (`mpath-<wwid>` for multipath maps, `LVM-…` for LVs).
    pub uuid: String,
}

/// A device stacked on another.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Holder {
    /// Kernel name (dm-3, md0).
    pub name: String,
    /// dm name when it is a device-mapper device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dm_name: Option<String>,
    /// dm uuid when it is a device-mapper device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dm_uuid: Option<String>,
}

impl Holder {
    /// True for a multipath map (`mpath-` dm uuid).
    pub fn is_multipath(&self) -> bool {
        self.dm_uuid
            .as_deref()
            .is_some_and(|u| u.starts_with("mpath-"))
    }
}

/// A partition of a block device.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Partition {
    /// Kernel name (sda1, loop0p2).
    pub name: String,
    /// major:minor.
    pub dev: String,
    /// Partition number.
    pub number: u32,
    /// Start in bytes.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
    /// Devices stacked on it.
    pub holders: Vec<Holder>,
    /// Where it is mounted.
    pub mountpoints: Vec<String>,
}

/// Lists the block devices under `root`. Detached loop devices (no backing
/// file, size 0) are left out unless `all`.
pub fn list(root: &Root, all: bool) -> Vec<BlockDevice> {
    let mounts = mounts::read(root);
    root.list("/sys/block")
        .into_iter()
        .filter_map(|name| device(root, &name, &mounts))
        .filter(|d| all || !(d.transport == "loop" && d.loop_backing.is_none() && d.size == 0))
        .collect()
}

/// Describes one block device by kernel name; None when it does not exist.
pub fn device(root: &Root, name: &str, mounts: &MountTable) -> Option<BlockDevice> {
    let b = format!("/sys/block/{name}");
    let dev = root.attr(format!("{b}/dev"))?;
    let real = root.real(&b).unwrap_or_default();
    let is_scsi = root.exists(format!("{b}/device/scsi_level"))
        || root.exists(format!("{b}/device/vpd_pg83"))
        || root
            .link_name(format!("{b}/device"))
            .is_some_and(|n| n.parse::<Hctl>().is_ok());
    let hctl = if is_scsi {
        root.link_name(format!("{b}/device"))
            .and_then(|n| n.parse().ok())
    } else {
        None
    };
    let num = |a: &str| {
        root.attr(format!("{b}/{a}"))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let dattr = |a: &str| {
        if hctl.is_some() {
            root.attr_nonempty(format!("{b}/device/{a}"))
        } else {
            None
        }
    };
    let iscsi = iscsi_sysfs::session_in_path(&real).and_then(|id| iscsi_sysfs::session(root, id));
    let fc = fc_path(root, &real);
    let loop_backing = root
        .attr_nonempty(format!("{b}/loop/backing_file"))
        .map(|file| LoopBacking {
            file,
            offset: num("loop/offset").unwrap_or(0),
            sizelimit: num("loop/sizelimit").unwrap_or(0),
            autoclear: root.attr(format!("{b}/loop/autoclear")).as_deref() == Some("1"),
        });
    let dm = root.attr(format!("{b}/dm/name")).map(|dm_name| DmInfo {
        name: dm_name,
        uuid: root.attr(format!("{b}/dm/uuid")).unwrap_or_default(),
    });
    let serial = if hctl.is_some() {
        root.bytes(format!("{b}/device/vpd_pg80"))
            .and_then(|p| vpd::parse_pg80(&p).ok())
            .filter(|s| !s.is_empty())
    } else {
        None
    };
    let transport = transport(root, name, &real, hctl);
    let partitions = root
        .list(&b)
        .into_iter()
        .filter(|p| root.exists(format!("{b}/{p}/partition")))
        .map(|p| {
            let pb = format!("{b}/{p}");
            let pdev = root.attr(format!("{pb}/dev")).unwrap_or_default();
            Partition {
                number: root
                    .attr(format!("{pb}/partition"))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
                start: root
                    .attr(format!("{pb}/start"))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 512,
                size: root
                    .attr(format!("{pb}/size"))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 512,
                holders: holders(root, &format!("{pb}/holders")),
                mountpoints: mounts.get(&pdev).cloned().unwrap_or_default(),
                dev: pdev,
                name: p,
            }
        })
        .collect();
    Some(BlockDevice {
        name: name.to_string(),
        size: num("size").unwrap_or(0) * 512,
        logical_block_size: num("queue/logical_block_size").unwrap_or(512) as u32,
        physical_block_size: num("queue/physical_block_size").unwrap_or(512) as u32,
        read_only: root.attr(format!("{b}/ro")).as_deref() == Some("1"),
        removable: root.attr(format!("{b}/removable")).as_deref() == Some("1"),
        transport,
        vendor: dattr("vendor"),
        model: dattr("model"),
        revision: dattr("rev"),
        wwid: dattr("wwid"),
        serial,
        hctl,
        iscsi,
        fc,
        loop_backing,
        dm,
        holders: holders(root, &format!("{b}/holders")),
        slaves: root.list(format!("{b}/slaves")),
        partitions,
        mountpoints: mounts.get(&dev).cloned().unwrap_or_default(),
        dev,
    })
}

/// The devices in a `holders/` directory, with their dm names.
pub fn holders(root: &Root, dir: &str) -> Vec<Holder> {
    root.list(dir)
        .into_iter()
        .map(|h| Holder {
            dm_name: root.attr(format!("/sys/block/{h}/dm/name")),
            dm_uuid: root.attr(format!("/sys/block/{h}/dm/uuid")),
            name: h,
        })
        .collect()
}

fn fc_path(root: &Root, real: &str) -> Option<FcPath> {
    let rport = real
        .split('/')
        .find(|c| c.starts_with("rport-"))?
        .to_string();
    let d = format!("/sys/class/fc_remote_ports/{rport}");
    Some(FcPath {
        wwpn: fc::normalize_wwn(&root.attr(format!("{d}/port_name")).unwrap_or_default())
            .unwrap_or_default(),
        wwnn: fc::normalize_wwn(&root.attr(format!("{d}/node_name")).unwrap_or_default())
            .unwrap_or_default(),
        rport,
    })
}

/// Classifies the transport from the device's resolved sysfs path (and the
/// SCSI host's driver name as the last resort).
pub fn transport(root: &Root, name: &str, real: &str, hctl: Option<Hctl>) -> String {
    let has = |s: &str| real.contains(s);
    let t = if name.starts_with("loop") {
        "loop"
    } else if name.starts_with("dm-") {
        "dm"
    } else if name.starts_with("nvme") {
        "nvme"
    } else if has("/session") {
        "iscsi"
    } else if has("/rport-") {
        "fc"
    } else if has("/end_device-") || has("/sas_") {
        "sas"
    } else if has("/usb") {
        "usb"
    } else if has("/ata") {
        "ata"
    } else if has("/virtio") {
        "virtio"
    } else if let Some(h) = hctl {
        let proc_name = root
            .attr(format!("/sys/class/scsi_host/host{}/proc_name", h.host))
            .unwrap_or_default();
        return if proc_name.is_empty() {
            "scsi".to_string()
        } else {
            proc_name
        };
    } else if has("/virtual/") {
        "virtual"
    } else {
        "unknown"
    };
    t.to_string()
}
