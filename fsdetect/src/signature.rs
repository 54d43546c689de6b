//! What a prober found: a signature with blkid-named values, in blkid's order.

use crate::journal::Journal;

/// blkid's USAGE: what the thing on the device is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Usage {
    /// A mountable filesystem (ext4, xfs, vfat…).
    Filesystem,
    /// A RAID member (md).
    Raid,
    /// An encrypted container (LUKS).
    Crypto,
    /// Anything else: swap, LVM2_member, jbd…
    Other,
}

impl Usage {
    /// The word blkid prints for USAGE.
    pub fn as_str(self) -> &'static str {
        match self {
            Usage::Filesystem => "filesystem",
            Usage::Raid => "raid",
            Usage::Crypto => "crypto",
            Usage::Other => "other",
        }
    }
}

/// One NAME=value pair. Values are raw bytes because labels need not be UTF-8;
/// the udev formatter encodes them exactly like blkid.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Tag {
    /// blkid's value name (LABEL, UUID, UUID_SUB, VERSION, BLOCK_SIZE…).
    pub name: String,
    /// The value as found on disk (labels) or formatted as blkid does (UUIDs).
    #[cfg_attr(feature = "serde", serde(serialize_with = "lossy_bytes"))]
    pub value: Vec<u8>,
}

#[cfg(feature = "serde")]
fn lossy_bytes<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(v))
}

/// A signature found at a region: blkid's TYPE and USAGE plus the values its
/// prober set, in the order blkid sets them (so `-o udev` output can be
/// reproduced line by line), and details blkid does not print.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Signature {
    /// blkid TYPE (ext4, xfs, LVM2_member, zfs_member…).
    pub fs_type: String,
    /// blkid USAGE.
    pub usage: Usage,
    /// Byte offset of the superblock/magic within the region.
    pub offset: u64,
    /// Values in blkid's order, without TYPE and USAGE (appended by
    /// [`Signature::blkid_tags`]).
    pub tags: Vec<Tag>,
    /// Facts beyond blkid's output (e.g. a ZFS pool GUID in hex, the LVM
    /// label sector) for callers and the JSON tree.
    pub details: Vec<Tag>,
    /// Whether the journal/log holds changes a mount would replay; `None`
    /// for formats without one (ext2, vfat, swap…). Decided from the
    /// superblock the probe read (ext3/4, jbd, btrfs); XFS says
    /// [`JournalState::NotInspected`] until [`crate::journal::inspect`]
    /// reads its log.
    ///
    /// [`JournalState::NotInspected`]: crate::journal::JournalState::NotInspected
    pub journal: Option<Journal>,
}

impl Signature {
    /// A signature with no values yet.
    pub fn new(fs_type: &str, usage: Usage, offset: u64) -> Self {
        Self {
            fs_type: fs_type.to_string(),
            usage,
            offset,
            tags: Vec::new(),
            details: Vec::new(),
            journal: None,
        }
    }

    /// Sets a blkid value (replacing an earlier one of the same name in place,
    /// as blkid does).
    pub fn set(&mut self, name: &str, value: impl Into<Vec<u8>>) -> &mut Self {
        let value = value.into();
        match self.tags.iter_mut().find(|t| t.name == name) {
            Some(t) => t.value = value,
            None => self.tags.push(Tag {
                name: name.to_string(),
                value,
            }),
        }
        self
    }

    /// Sets a value blkid does not report.
    pub fn set_detail(&mut self, name: &str, value: impl Into<Vec<u8>>) -> &mut Self {
        self.details.push(Tag {
            name: name.to_string(),
            value: value.into(),
        });
        self
    }

    /// A blkid value by name.
    pub fn tag(&self, name: &str) -> Option<&[u8]> {
        self.tags
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.value.as_slice())
    }

    /// A blkid value or detail by name, as (lossy) UTF-8.
    pub fn get_str(&self, name: &str) -> Option<String> {
        self.tags
            .iter()
            .chain(self.details.iter())
            .find(|t| t.name == name)
            .map(|t| String::from_utf8_lossy(&t.value).into_owned())
    }

    /// UUID, if the format has one and it is set.
    pub fn uuid(&self) -> Option<String> {
        self.get_str("UUID")
    }

    /// LABEL, if set.
    pub fn label(&self) -> Option<String> {
        self.get_str("LABEL")
    }

    /// All values as blkid reports them: the prober's, then TYPE, then USAGE.
    pub fn blkid_tags(&self) -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = self
            .tags
            .iter()
            .map(|t| (t.name.clone(), t.value.clone()))
            .collect();
        v.push(("TYPE".into(), self.fs_type.as_bytes().to_vec()));
        v.push(("USAGE".into(), self.usage.as_str().as_bytes().to_vec()));
        v
    }
}
