//! Partition tables: the common model for MBR ("dos") and GPT.

/// Which scheme a table uses, named as blkid's PTTYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum TableKind {
    /// MBR, including extended/logical partitions.
    Dos,
    /// GUID partition table.
    Gpt,
    /// A protective MBR with no usable GPT header behind it (blkid's
    /// "PMBR"): the disk was GPT, both headers are gone; no partitions.
    Pmbr,
}

impl TableKind {
    /// blkid's PTTYPE word.
    pub fn as_str(self) -> &'static str {
        match self {
            TableKind::Dos => "dos",
            TableKind::Gpt => "gpt",
            TableKind::Pmbr => "PMBR",
        }
    }
}

/// Which GPT header the table was read from. A bad primary with a good
/// backup is still a usable disk, but the operator should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum GptHeader {
    /// The header at LBA 1.
    Primary,
    /// The header at the last LBA (the primary was missing or corrupt).
    Backup,
}

/// Where an entry sits in the table's structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum PartitionKind {
    /// An MBR primary partition (numbers 1–4).
    Primary,
    /// An MBR extended partition (a container; not probed for contents).
    Extended,
    /// A logical partition inside an extended one (numbers 5+).
    Logical,
    /// A GPT entry.
    Gpt,
}

/// The partition type as stored: an MBR system id or a GPT type GUID.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum PartitionType {
    /// MBR system id (0x83 Linux, 0x8e LVM, 0xfd RAID…).
    Mbr(u8),
    /// GPT type GUID, lowercase text form.
    Gpt(String),
}

/// One partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Partition {
    /// Partition number as the kernel names it (MBR logicals start at 5).
    pub number: u32,
    /// Start in bytes from the start of the disk.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
    /// Primary/extended/logical/GPT.
    pub kind: PartitionKind,
    /// Raw type.
    pub part_type: PartitionType,
    /// Human name of the type for the common ones ("Linux filesystem", "Linux LVM", "EFI System"…).
    pub type_name: Option<String>,
    /// GPT partition GUID, or blkid's MBR PART_ENTRY_UUID (`<disk id>-<nn>`).
    pub uuid: Option<String>,
    /// GPT partition name.
    pub name: Option<String>,
    /// MBR boot indicator (0x80) or GPT attribute bits.
    pub flags: u64,
    /// Why this entry cannot be used as it stands (e.g. it ends past the end of
    /// the disk). Such partitions are listed but not probed.
    pub problem: Option<String>,
}

/// A partition table found on a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct PartitionTable {
    /// dos or gpt.
    pub kind: TableKind,
    /// blkid's PTUUID: the GPT disk GUID, or the MBR disk id as 8 hex digits.
    pub uuid: Option<String>,
    /// For GPT, which header was used.
    pub gpt_header: Option<GptHeader>,
    /// Entries in table order.
    pub partitions: Vec<Partition>,
    /// Things that were wrong but did not prevent reading the table (bad
    /// primary GPT CRC, an extended chain that loops…).
    pub warnings: Vec<String>,
}

/// Reads the partition table of a region, trying the schemes in libblkid's
/// order (dos before gpt: the dos reader steps aside for a protective MBR).
pub fn read_table(w: &crate::reader::Window<'_>) -> crate::error::Result<Option<PartitionTable>> {
    // MBR, and the GPT header and a 128-entry array at 512- or 4096-byte sectors.
    w.prefetch(&[(0, 40 * 1024)])?;
    if let Some(t) = crate::mbr::probe(w)? {
        return Ok(Some(t));
    }
    crate::gpt::probe(w)
}
