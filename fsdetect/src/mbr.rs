//! MBR ("dos") partition tables, read the way libblkid 2.38's `dos` prober
//! reads them, so that PTTYPE/PTUUID agree with `blkid -p` and the partition
//! list agrees with what the kernel creates.
//!
//! The order of the checks matters as much as the checks: a FAT or NTFS boot
//! sector also ends in 0x55AA and has "partition entries" at 446, a GPT disk
//! carries a protective MBR, and an LVM PV written over an empty MBR keeps the
//! old boot signature. Each of these is rejected here exactly where libblkid
//! rejects it.

use std::collections::HashSet;

use crate::bytes::{le16, le32, le64, slice};
use crate::error::{ProbeError, Result};
use crate::reader::Window;
use crate::table::{Partition, PartitionKind, PartitionTable, PartitionType, TableKind};

/// Offset of the four 16-byte entries in an MBR or EBR.
const PT_OFFSET: usize = 0x1be;
/// Offset of the 32-bit disk identifier (PTUUID).
const DISK_ID_OFFSET: usize = 440;
/// Type byte of a protective/hybrid MBR entry: the disk is GPT.
pub const GPT_PROTECTIVE: u8 = 0xee;
/// blkid stops walking an extended chain after this many EBRs in a row that
/// added no new data partition (its `ct_nodata` counter).
const MAX_EBRS_WITHOUT_DATA: u32 = 100;
/// Our own hard cap on EBRs visited in one chain, whatever they contain: the
/// kernel handles at most 256 partitions per disk, so a longer chain is junk.
const MAX_EBRS: usize = 1024;
/// At most this many overlap warnings are listed; the rest are counted.
const MAX_OVERLAP_WARNINGS: usize = 8;

/// One 16-byte entry of an MBR or EBR.
#[derive(Debug, Clone, Copy)]
struct Entry {
    boot_ind: u8,
    sys_ind: u8,
    /// Start in logical sectors (relative to the MBR or to an extended partition).
    start: u32,
    /// Size in logical sectors.
    size: u32,
}

/// The four entries of a 512-byte boot sector.
fn entries(sector: &[u8]) -> [Entry; 4] {
    std::array::from_fn(|i| {
        let off = PT_OFFSET + 16 * i;
        Entry {
            boot_ind: sector.get(off).copied().unwrap_or(0),
            sys_ind: sector.get(off + 4).copied().unwrap_or(0),
            start: le32(sector, off + 8).unwrap_or(0),
            size: le32(sector, off + 12).unwrap_or(0),
        }
    })
}

/// The 0x55AA boot signature at byte 510.
fn has_boot_signature(sector: &[u8]) -> bool {
    slice(sector, 510, 2) == Some(&[0x55, 0xaa][..])
}

/// DOS, W95 and Linux extended partitions: containers of an EBR chain.
pub fn is_extended(sys_ind: u8) -> bool {
    matches!(sys_ind, 0x05 | 0x0f | 0x85)
}

/// Reads the MBR table of a region, or `Ok(None)` when the region does not
/// hold one (including a protective MBR, which [`crate::gpt`] handles).
pub fn probe(w: &Window<'_>) -> Result<Option<PartitionTable>> {
    // libblkid matches magics by reading the whole KiB that holds them: a
    // region shorter than 1 KiB never has a "dos" table.
    let Some(kib) = w.read_if_present(0, 1024)? else {
        return Ok(None);
    };
    let mbr = &kib[..512];
    if !has_boot_signature(mbr) {
        return Ok(None);
    }
    // AIX physical volumes start with this magic and have no MBR.
    if mbr.starts_with(&[0xc9, 0xc2, 0xd4, 0xc1]) {
        return Ok(None);
    }
    let ents = entries(mbr);
    if ents.iter().any(|e| e.boot_ind != 0 && e.boot_ind != 0x80) {
        return Ok(None);
    }
    if ents.iter().any(|e| e.sys_ind == GPT_PROTECTIVE) {
        return Ok(None);
    }
    if is_fat_boot_sector(w, mbr)? {
        return Ok(None);
    }
    if found(crate::sig::ntfs::probe(w))? {
        return Ok(None);
    }
    // An LVM PV written over an MBR with no partitions: blkid calls it LVM.
    if ents.iter().all(|e| e.size == 0) && found(crate::sig::lvm2::probe(w))? {
        return Ok(None);
    }

    let disk_id = le32(mbr, DISK_ID_OFFSET).unwrap_or(0);
    let id_str = (disk_id != 0).then(|| format!("{disk_id:08x}"));
    let ssz = u64::from(w.sector_size().max(512));
    let mut table = PartitionTable {
        kind: TableKind::Dos,
        uuid: id_str.clone(),
        gpt_header: None,
        partitions: Vec::new(),
        warnings: Vec::new(),
    };
    let new_part = |number: u32, kind, e: &Entry, start: u64| Partition {
        number,
        start: start * ssz,
        size: u64::from(e.size) * ssz,
        kind,
        part_type: PartitionType::Mbr(e.sys_ind),
        type_name: type_name(e.sys_ind).map(str::to_string),
        uuid: id_str.as_ref().map(|id| format!("{id}-{number:02x}")),
        name: None,
        flags: u64::from(e.boot_ind),
        problem: None,
    };

    // Primaries keep their slot number; empty slots are not reused.
    for (i, e) in ents.iter().enumerate() {
        if e.size == 0 {
            continue;
        }
        let kind = if is_extended(e.sys_ind) {
            PartitionKind::Extended
        } else {
            PartitionKind::Primary
        };
        table
            .partitions
            .push(new_part(i as u32 + 1, kind, e, u64::from(e.start)));
    }
    // Logicals are numbered from 5, across every extended partition.
    let mut next = 5u32;
    for e in ents
        .iter()
        .filter(|e| e.size != 0 && is_extended(e.sys_ind))
    {
        let logicals = read_extended(w, e, ssz, &mut table)?;
        for (entry, abs_start) in logicals {
            table
                .partitions
                .push(new_part(next, PartitionKind::Logical, &entry, abs_start));
            next += 1;
        }
    }
    check_partitions(&mut table, w.len());
    Ok(Some(table))
}

/// Turns a prober result into "was it there", treating reads the region is
/// too small for as "not there" (what libblkid does with a failed read).
fn found<T>(r: Result<Option<T>>) -> Result<bool> {
    match r {
        Ok(v) => Ok(v.is_some()),
        Err(ProbeError::OutOfRange { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Walks the EBR chain of one extended partition and returns its data
/// partitions as (entry, absolute start in sectors). Stops at a missing or
/// unsigned EBR, on a loop, or at the caps, with a warning for the latter two.
fn read_extended(
    w: &Window<'_>,
    ext: &Entry,
    ssz: u64,
    table: &mut PartitionTable,
) -> Result<Vec<(Entry, u64)>> {
    let ex_start = u64::from(ext.start);
    let ex_size = u64::from(ext.size);
    let mut out: Vec<(Entry, u64)> = Vec::new();
    if ex_start == 0 {
        table.warnings.push(
            "extended partition starts at sector 0 (it would contain the MBR); ignored".into(),
        );
        return Ok(out);
    }
    let mut cur_start = ex_start;
    let mut cur_size = ex_size;
    let mut visited: HashSet<u64> = HashSet::new();
    let mut without_data = 0u32;
    loop {
        if !visited.insert(cur_start) {
            table.warnings.push(format!(
                "extended partition chain loops back to the EBR at sector {cur_start}; stopped after {} EBRs",
                visited.len()
            ));
            break;
        }
        if visited.len() > MAX_EBRS {
            table.warnings.push(format!(
                "extended partition chain is longer than {MAX_EBRS} EBRs; stopped"
            ));
            break;
        }
        without_data += 1;
        if without_data > MAX_EBRS_WITHOUT_DATA {
            table.warnings.push(format!(
                "{MAX_EBRS_WITHOUT_DATA} EBRs in a row without a new partition; stopped"
            ));
            break;
        }
        let Some(off) = cur_start.checked_mul(ssz) else {
            break;
        };
        // The 64 KiB before an EBR are usually the end of the partition
        // before it, whose tail (md 0.90/1.0 superblocks) is probed later:
        // one call for both instead of two.
        if off.checked_add(512).is_some_and(|end| end <= w.len()) {
            let lead = off.min(64 * 1024);
            w.prefetch(&[(off - lead, lead + 512)])?;
        }
        let Some(ebr) = w.read_if_present(off, 512)? else {
            table.warnings.push(format!(
                "EBR at sector {cur_start} is past the end of the disk; chain ends there"
            ));
            break;
        };
        if !has_boot_signature(&ebr) {
            break;
        }
        let ents = entries(&ebr);
        for (i, e) in ents.iter().enumerate() {
            if e.size == 0 || is_extended(e.sys_ind) {
                continue;
            }
            let start = u64::from(e.start);
            let size = u64::from(e.size);
            let abs_start = cur_start + start;
            // The 3rd and 4th slots count only if they fit the current EBR's
            // area and the extended partition (OS/2 uses all four).
            if i >= 2
                && (start + size > cur_size
                    || abs_start < ex_start
                    || abs_start + size > ex_start + ex_size)
            {
                continue;
            }
            let dup = out.iter().any(|(_, s)| *s == abs_start)
                || table.partitions.iter().any(|p| p.start == abs_start * ssz);
            if dup {
                continue;
            }
            out.push((*e, abs_start));
            without_data = 0;
        }
        // The first extended entry with a non-zero offset links to the next
        // EBR, relative to the start of the outer extended partition.
        let Some(link) = ents
            .iter()
            .find(|e| e.size != 0 && is_extended(e.sys_ind) && e.start != 0)
        else {
            break;
        };
        cur_start = ex_start + u64::from(link.start);
        cur_size = u64::from(link.size);
    }
    Ok(out)
}

/// Marks entries that do not fit the disk (they are listed, never probed) and
/// warns about partitions that overlap each other. Extended containers are
/// left out of the overlap check: logicals lie inside them by design.
pub(crate) fn check_partitions(table: &mut PartitionTable, disk_len: u64) {
    for p in &mut table.partitions {
        if p.problem.is_some() {
            continue;
        }
        match p.start.checked_add(p.size) {
            _ if p.start >= disk_len => {
                p.problem = Some(format!(
                    "starts at byte {} but the disk is only {disk_len} bytes",
                    p.start
                ))
            }
            Some(end) if end <= disk_len => {}
            end => {
                p.problem = Some(format!(
                    "ends at byte {} but the disk is only {disk_len} bytes",
                    end.map_or_else(|| "beyond 2^64".to_string(), |e| e.to_string())
                ))
            }
        }
    }
    let mut spans: Vec<(u64, u64, u32)> = table
        .partitions
        .iter()
        .filter(|p| p.kind != PartitionKind::Extended && p.size > 0)
        .map(|p| (p.start, p.start.saturating_add(p.size), p.number))
        .collect();
    spans.sort_unstable();
    let mut overlaps = 0usize;
    let mut reach: Option<(u64, u32)> = None;
    for (start, end, number) in spans {
        if let Some((far_end, far_number)) = reach {
            if start < far_end {
                overlaps += 1;
                if overlaps <= MAX_OVERLAP_WARNINGS {
                    table.warnings.push(format!(
                        "partition {number} overlaps partition {far_number}"
                    ));
                }
            }
        }
        if reach.is_none_or(|(far_end, _)| end > far_end) {
            reach = Some((end, number));
        }
    }
    if overlaps > MAX_OVERLAP_WARNINGS {
        table.warnings.push(format!(
            "{} more overlapping partitions",
            overlaps - MAX_OVERLAP_WARNINGS
        ));
    }
}

/// libblkid's `blkid_probe_is_vfat` as the dos prober uses it: the first
/// sector matches one of vfat's magics and its BPB is a plausible FAT one
/// (and it is not a BitLocker volume, which borrows the FAT layout).
fn is_fat_boot_sector(w: &Window<'_>, bs: &[u8]) -> Result<bool> {
    const MAGICS: [(usize, &[u8]); 9] = [
        (0x52, b"MSWIN"),
        (0x52, b"FAT32   "),
        (0x36, b"MSDOS"),
        (0x36, b"FAT16   "),
        (0x36, b"FAT12   "),
        (0x36, b"FAT     "),
        (0, b"\xeb"),
        (0, b"\xe9"),
        (0x1fe, b"\x55\xaa"),
    ];
    let Some(magic_len) = MAGICS
        .iter()
        .find(|(off, m)| slice(bs, *off, m.len()) == Some(*m))
        .map(|(_, m)| m.len())
    else {
        return Ok(false);
    };
    let b8 = |off: usize| u32::from(bs.get(off).copied().unwrap_or(0));
    let w16 = |off: usize| u32::from(le16(bs, off).unwrap_or(0));
    let w32 = |off: usize| le32(bs, off).unwrap_or(0);
    if magic_len <= 2 {
        if !has_boot_signature(bs) {
            return Ok(false);
        }
        // OS/2 puts a FAT-like pseudo BPB in front of JFS and HPFS.
        let fs_name = slice(bs, 0x36, 8);
        if fs_name == Some(b"JFS     ") || fs_name == Some(b"HPFS    ") {
            return Ok(false);
        }
    }
    let fats = b8(0x10);
    let reserved = w16(0x0e);
    let media = b8(0x15);
    let cluster_size = b8(0x0d);
    let sector_size = w16(0x0b);
    if fats == 0 || reserved == 0 || !(media >= 0xf8 || media == 0xf0) {
        return Ok(false);
    }
    if !cluster_size.is_power_of_two()
        || !sector_size.is_power_of_two()
        || !(512..=4096).contains(&sector_size)
    {
        return Ok(false);
    }
    let dir_entries = w16(0x11);
    let mut sectors = w16(0x13);
    if sectors == 0 {
        sectors = w32(0x20);
    }
    let fat16_length = w16(0x16);
    let fat32_length = w32(0x24);
    let fat_length = if fat16_length == 0 {
        fat32_length
    } else {
        fat16_length
    };
    // libblkid does this in 32-bit unsigned arithmetic; keep its wrap-around.
    let fat_size = fat_length.wrapping_mul(fats);
    let dir_size = (u64::from(dir_entries) * 32).div_ceil(u64::from(sector_size)) as u32;
    let clusters =
        sectors.wrapping_sub(reserved.wrapping_add(fat_size).wrapping_add(dir_size)) / cluster_size;
    let max = if fat16_length == 0 && fat32_length != 0 {
        0x0fff_fff6
    } else if clusters > 0xff4 {
        0xfff4
    } else {
        0xff4
    };
    if clusters > max {
        return Ok(false);
    }
    Ok(!is_bitlocker(w, bs)?)
}

/// libblkid's `blkid_probe_is_bitlocker`: a BitLocker boot sector whose FVE
/// metadata block (when the version has one) carries its signature.
fn is_bitlocker(w: &Window<'_>, bs: &[u8]) -> Result<bool> {
    let head = slice(bs, 0, 11).unwrap_or_default();
    let fve_offset = if head == b"\xeb\x52\x90-FVE-FS-" {
        return Ok(true);
    } else if head == b"\xeb\x58\x90-FVE-FS-" {
        le64(bs, 176).unwrap_or(0)
    } else if head == b"\xeb\x58\x90MSWIN4.1" {
        le64(bs, 440).unwrap_or(0)
    } else {
        return Ok(false);
    };
    if fve_offset == 0 {
        return Ok(false);
    }
    Ok(w.read_if_present(fve_offset, 12)?
        .is_some_and(|fve| fve.starts_with(b"-FVE-FS-")))
}

/// The name fdisk/sfdisk give an MBR partition type.
pub fn type_name(sys_ind: u8) -> Option<&'static str> {
    MBR_TYPE_NAMES
        .iter()
        .find(|(t, _)| *t == sys_ind)
        .map(|(_, n)| *n)
}

/// util-linux's MBR type names (include/pt-mbr-partnames.h, 2.38).
static MBR_TYPE_NAMES: &[(u8, &str)] = &[
    (0x00, "Empty"),
    (0x01, "FAT12"),
    (0x02, "XENIX root"),
    (0x03, "XENIX usr"),
    (0x04, "FAT16 <32M"),
    (0x05, "Extended"),
    (0x06, "FAT16"),
    (0x07, "HPFS/NTFS/exFAT"),
    (0x08, "AIX"),
    (0x09, "AIX bootable"),
    (0x0a, "OS/2 Boot Manager"),
    (0x0b, "W95 FAT32"),
    (0x0c, "W95 FAT32 (LBA)"),
    (0x0e, "W95 FAT16 (LBA)"),
    (0x0f, "W95 Ext'd (LBA)"),
    (0x10, "OPUS"),
    (0x11, "Hidden FAT12"),
    (0x12, "Compaq diagnostics"),
    (0x14, "Hidden FAT16 <32M"),
    (0x16, "Hidden FAT16"),
    (0x17, "Hidden HPFS/NTFS"),
    (0x18, "AST SmartSleep"),
    (0x1b, "Hidden W95 FAT32"),
    (0x1c, "Hidden W95 FAT32 (LBA)"),
    (0x1e, "Hidden W95 FAT16 (LBA)"),
    (0x24, "NEC DOS"),
    (0x27, "Hidden NTFS WinRE"),
    (0x39, "Plan 9"),
    (0x3c, "PartitionMagic recovery"),
    (0x40, "Venix 80286"),
    (0x41, "PPC PReP Boot"),
    (0x42, "SFS"),
    (0x4d, "QNX4.x"),
    (0x4e, "QNX4.x 2nd part"),
    (0x4f, "QNX4.x 3rd part"),
    (0x50, "OnTrack DM"),
    (0x51, "OnTrack DM6 Aux1"),
    (0x52, "CP/M"),
    (0x53, "OnTrack DM6 Aux3"),
    (0x54, "OnTrackDM6"),
    (0x55, "EZ-Drive"),
    (0x56, "Golden Bow"),
    (0x5c, "Priam Edisk"),
    (0x61, "SpeedStor"),
    (0x63, "GNU HURD or SysV"),
    (0x64, "Novell Netware 286"),
    (0x65, "Novell Netware 386"),
    (0x70, "DiskSecure Multi-Boot"),
    (0x75, "PC/IX"),
    (0x80, "Old Minix"),
    (0x81, "Minix / old Linux"),
    (0x82, "Linux swap / Solaris"),
    (0x83, "Linux"),
    (0x84, "OS/2 hidden or Intel hibernation"),
    (0x85, "Linux extended"),
    (0x86, "NTFS volume set"),
    (0x87, "NTFS volume set"),
    (0x88, "Linux plaintext"),
    (0x8e, "Linux LVM"),
    (0x93, "Amoeba"),
    (0x94, "Amoeba BBT"),
    (0x9f, "BSD/OS"),
    (0xa0, "IBM Thinkpad hibernation"),
    (0xa5, "FreeBSD"),
    (0xa6, "OpenBSD"),
    (0xa7, "NeXTSTEP"),
    (0xa8, "Darwin UFS"),
    (0xa9, "NetBSD"),
    (0xab, "Darwin boot"),
    (0xaf, "HFS / HFS+"),
    (0xb7, "BSDI fs"),
    (0xb8, "BSDI swap"),
    (0xbb, "Boot Wizard hidden"),
    (0xbc, "Acronis FAT32 LBA"),
    (0xbe, "Solaris boot"),
    (0xbf, "Solaris"),
    (0xc1, "DRDOS/sec (FAT-12)"),
    (0xc4, "DRDOS/sec (FAT-16 < 32M)"),
    (0xc6, "DRDOS/sec (FAT-16)"),
    (0xc7, "Syrinx"),
    (0xda, "Non-FS data"),
    (0xdb, "CP/M / CTOS / ..."),
    (0xde, "Dell Utility"),
    (0xdf, "BootIt"),
    (0xe1, "DOS access"),
    (0xe3, "DOS R/O"),
    (0xe4, "SpeedStor"),
    (0xea, "Linux extended boot"),
    (0xeb, "BeOS fs"),
    (0xee, "GPT"),
    (0xef, "EFI (FAT-12/16/32)"),
    (0xf0, "Linux/PA-RISC boot"),
    (0xf1, "SpeedStor"),
    (0xf4, "SpeedStor"),
    (0xf2, "DOS secondary"),
    (0xf8, "EBBR protective"),
    (0xfb, "VMware VMFS"),
    (0xfc, "VMware VMKCORE"),
    (0xfd, "Linux raid autodetect"),
    (0xfe, "LANstep"),
    (0xff, "BBT"),
];
