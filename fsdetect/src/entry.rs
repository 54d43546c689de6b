//! The partition-table entry behind a partition device (`/dev/sdb2`): what
//! `blkid -p` prints as `PART_ENTRY_*`, and udev turns into the
//! `by-partuuid`/`by-partlabel` links.
//!
//! A partition device holds no trace of its own entry, so, like libblkid's
//! `blkid_partitions_probe_partition`, this asks sysfs where the partition
//! lies (`partition`, `start`, `size`) and which disk holds it (`..`), reads
//! that disk's table and picks the entry with the same start and size.

use std::path::{Path, PathBuf};

use crate::error::{ProbeError, Result};
use crate::reader::Reader;
use crate::source::FileSource;
use crate::table::{read_table, Partition, PartitionKind, PartitionTable, PartitionType};

/// blkid counts partition offsets and sizes in 512-byte units, whatever the
/// disk's logical sector size.
const BLKID_SECTOR: u64 = 512;

/// The kernel gives an MBR extended partition a stub of 1 or 2 sectors;
/// libblkid accepts any size up to this for it.
const EXTENDED_STUB_MAX: u64 = 1024;

/// [`SysfsPartition::start`] of a device-mapper partition: sysfs has no
/// `start` for it, so it is matched by number and size.
pub const DM_NO_START: u64 = u64::MAX;

/// One partition device's entry in its disk's table, with blkid's values.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PartEntry {
    /// The table's PTTYPE word (`gpt`, `dos`).
    pub scheme: String,
    /// GPT partition name, trailing whitespace removed (blkid's NAME).
    pub name: Option<String>,
    /// GPT partition GUID, or `<disk id>-<nn>` on MBR.
    pub uuid: Option<String>,
    /// GPT type GUID, or the MBR system id as `0x83`.
    pub part_type: String,
    /// GPT attribute bits or the MBR boot indicator (0 prints nothing).
    pub flags: u64,
    /// The partition number (sdb*2*).
    pub number: u32,
    /// Start in 512-byte units.
    pub offset: u64,
    /// Size in 512-byte units (an extended partition's full size).
    pub size: u64,
    /// `(major, minor)` of the whole disk.
    pub disk: (u32, u32),
}

/// Where sysfs says a partition device lies on its disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsPartition {
    /// `partition`: the kernel's partition number.
    pub number: u32,
    /// `start`, in 512-byte units ([`DM_NO_START`] for a kpartx partition).
    pub start: u64,
    /// `size`, in 512-byte units.
    pub size: u64,
    /// `(major, minor)` of the disk, from `../dev`.
    pub disk: (u32, u32),
    /// The disk's device name (`DEVNAME` of `../uevent`, e.g. `sdb`).
    pub disk_name: String,
}

fn read_attr(path: PathBuf) -> Result<String> {
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| ProbeError::Sysfs {
            path,
            problem: format!("cannot read it: {e}"),
        })
}

fn parse_attr<T: std::str::FromStr>(path: PathBuf) -> Result<T> {
    let text = read_attr(path.clone())?;
    text.parse().map_err(|_| ProbeError::Sysfs {
        path,
        problem: format!("expected a number, found {text:?}"),
    })
}

/// `MAJ:MIN` as sysfs writes it in `dev`.
fn parse_devno(path: PathBuf) -> Result<(u32, u32)> {
    let text = read_attr(path.clone())?;
    text.split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or(ProbeError::Sysfs {
            path,
            problem: format!("expected MAJOR:MINOR, found {text:?}"),
        })
}

/// The partition number of a device-mapper partition (kpartx names its
/// maps' dm uuid `partN-<uuid of the whole map>`), as libblkid reads it.
fn dm_partno(dir: &Path) -> Option<u32> {
    let uuid = std::fs::read_to_string(dir.join("dm/uuid")).ok()?;
    let prefix = uuid.trim().split('-').next()?;
    if prefix.len() < 4 || !prefix[..4].eq_ignore_ascii_case("part") {
        return None;
    }
    prefix[4..].parse().ok().filter(|&n| n > 0)
}

/// A dm partition's whole disk: its first slave (the multipath map or disk
/// kpartx stacked it on), as libblkid's `get_dm_wholedisk` takes it.
fn dm_wholedisk(dir: &Path) -> Result<((u32, u32), String)> {
    let slaves = dir.join("slaves");
    let mut names: Vec<String> = std::fs::read_dir(&slaves)
        .map_err(|e| ProbeError::Sysfs {
            path: slaves.clone(),
            problem: format!("expected the device it is stacked on, cannot list it: {e}"),
        })?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let first = names.first().ok_or(ProbeError::Sysfs {
        path: slaves.clone(),
        problem: "expected the device it is stacked on, found no slave".to_string(),
    })?;
    let devno = parse_devno(slaves.join(first).join("dev"))?;
    Ok((devno, first.clone()))
}

/// Reads the sysfs directory of a block device (`/sys/dev/block/MAJ:MIN`, a
/// symlink into `/sys/devices/…/<disk>/<part>`). `Ok(None)` when it is not a
/// partition: a whole disk, a loop device, a dm device that kpartx did not
/// make. A kpartx partition (dm uuid `partN-…`) has no `start`: its start is
/// `u64::MAX` and [`match_entry`] matches it by number and size, as libblkid.
pub fn read_sysfs_partition(dir: &Path) -> Result<Option<SysfsPartition>> {
    if !dir.join("partition").exists() {
        let Some(number) = dm_partno(dir) else {
            return Ok(None);
        };
        let size = parse_attr(dir.join("size"))?;
        let (disk, disk_name) = dm_wholedisk(dir)?;
        return Ok(Some(SysfsPartition {
            number,
            start: DM_NO_START,
            size,
            disk,
            disk_name,
        }));
    }
    let number = parse_attr(dir.join("partition"))?;
    let start = parse_attr(dir.join("start"))?;
    let size = parse_attr(dir.join("size"))?;
    let disk = parse_devno(dir.join("../dev"))?;
    let uevent_path = dir.join("../uevent");
    let uevent = read_attr(uevent_path.clone())?;
    let disk_name = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .map(str::to_string)
        .ok_or(ProbeError::Sysfs {
            path: uevent_path,
            problem: "expected a DEVNAME= line, found none".to_string(),
        })?;
    Ok(Some(SysfsPartition {
        number,
        start,
        size,
        disk,
        disk_name,
    }))
}

/// C isspace() in the "C" locale (blkid_rtrim_whitespace).
fn rtrim_c_space(s: &str) -> &str {
    s.trim_end_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r'])
}

/// The entry sysfs's start and size name, as
/// `blkid_partlist_devno_to_partition` finds it: the same start and size,
/// or an extended partition at that start whose device is the kernel's stub.
pub fn match_entry(table: &PartitionTable, sp: &SysfsPartition) -> Option<PartEntry> {
    let size_fits = |p: &Partition| {
        p.size / BLKID_SECTOR == sp.size
            || (p.kind == PartitionKind::Extended && sp.size <= EXTENDED_STUB_MAX)
    };
    let found = table.partitions.iter().find(|p| {
        if sp.start == DM_NO_START {
            p.number == sp.number && size_fits(p)
        } else {
            p.start / BLKID_SECTOR == sp.start && size_fits(p)
        }
    })?;
    Some(entry_of(table, found, sp.disk))
}

/// blkid's PART_ENTRY_* values of one table entry.
fn entry_of(table: &PartitionTable, p: &Partition, disk: (u32, u32)) -> PartEntry {
    PartEntry {
        scheme: table.kind.as_str().to_string(),
        name: p
            .name
            .as_deref()
            .map(rtrim_c_space)
            .filter(|n| !n.is_empty())
            .map(str::to_string),
        uuid: p.uuid.clone(),
        part_type: match &p.part_type {
            PartitionType::Gpt(guid) => guid.clone(),
            PartitionType::Mbr(id) => format!("0x{id:x}"),
        },
        flags: p.flags,
        number: p.number,
        offset: p.start / BLKID_SECTOR,
        size: p.size / BLKID_SECTOR,
        disk,
    }
}

/// The table entry of block device `devno` when it is a partition, from the
/// real `/sys` and `/dev`. `Ok(None)` for a whole disk, or when the disk's
/// table has no entry where sysfs puts the partition (blkid then prints no
/// `PART_ENTRY_*` either).
pub fn partition_entry(devno: (u32, u32)) -> Result<Option<PartEntry>> {
    partition_entry_in(Path::new("/sys"), Path::new("/dev"), devno)
}

/// [`partition_entry`] with other roots for sysfs and the device nodes (tests
/// build a sysfs-like tree around an image file). The disk is opened like any
/// probed device: read-only, read-ahead off.
pub fn partition_entry_in(sys: &Path, dev: &Path, devno: (u32, u32)) -> Result<Option<PartEntry>> {
    let dir = sys.join(format!("dev/block/{}:{}", devno.0, devno.1));
    let Some(sp) = read_sysfs_partition(&dir)? else {
        return Ok(None);
    };
    let disk = FileSource::open(dev.join(&sp.disk_name))?;
    let reader = Reader::new(&disk);
    let Some(table) = read_table(&reader.whole())? else {
        return Ok(None);
    };
    Ok(match_entry(&table, &sp))
}
