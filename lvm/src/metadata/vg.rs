//! The VG model built from parsed metadata text: VG identity and sequence
//! number, its PVs, its LVs and their segments. Linear/striped segments are
//! understood; every other segment type is kept with the reason goldmount
//! does not handle it, so the plan can say so before lvm2 runs.

use serde::Serialize;

use super::text::{Section, Value};
use crate::error::{LvmError, Result};

/// A PV as the VG metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PvMeta {
    /// Key inside the metadata (`pv0`, `pv1`…), used by segments.
    pub key: String,
    /// PV UUID.
    pub id: String,
    /// The device path when it was last written: a hint only.
    pub device_hint: Option<String>,
    /// Device size in 512-byte sectors.
    pub dev_size: u64,
    /// First extent, in sectors.
    pub pe_start: u64,
    /// Number of extents.
    pub pe_count: u64,
    /// Status flags (`ALLOCATABLE`, `MISSING`…).
    pub status: Vec<String>,
}

/// One stripe of a striped segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stripe {
    /// UUID of the PV holding the stripe.
    pub pv_uuid: String,
    /// First extent on that PV.
    pub start_extent: u64,
}

/// What a segment maps to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SegmentKind {
    /// `striped` (one stripe = linear).
    Striped {
        /// Stripe size in sectors (absent for linear).
        stripe_size: Option<u64>,
        /// The stripes in order.
        stripes: Vec<Stripe>,
    },
    /// Any other segment type.
    Unsupported {
        /// The `type` string (thin, raid1, mirror, cache, snapshot…).
        segtype: String,
        /// Why goldmount does not handle it.
        reason: String,
    },
}

/// One segment of an LV.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// First logical extent.
    pub start_extent: u64,
    /// Length in extents.
    pub extent_count: u64,
    /// Mapping.
    pub kind: SegmentKind,
}

/// A logical volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LvMeta {
    /// LV name.
    pub name: String,
    /// LV UUID.
    pub id: String,
    /// Status flags (`READ`, `WRITE`, `VISIBLE`).
    pub status: Vec<String>,
    /// Whether users see it (hidden LVs are sub-volumes of others).
    pub visible: bool,
    /// Segments in order.
    pub segments: Vec<Segment>,
    /// Size in extents (sum of the segments).
    pub extents: u64,
    /// `None` when every segment is linear/striped, else why it is not.
    pub unsupported: Option<String>,
    /// The first segment's type (`striped` for linear and striped, `thin`,
    /// `thin-pool`, `raid1`…): what lvm2 builds for it on activation.
    pub segtype: String,
}

impl LvMeta {
    /// Why this LV holds no filesystem of its own (a pool whose blocks
    /// belong to the LVs built on it), or `None`. Reading a pool's device
    /// would show the first thin LV's blocks: it must never be probed or
    /// mounted.
    pub fn holds_no_data(&self) -> Option<&'static str> {
        match self.segtype.as_str() {
            "thin-pool" => {
                Some("a thin pool: its blocks belong to its thin LVs, which are mounted instead")
            }
            "cache-pool" => Some("a cache pool: it caches another LV, which is mounted instead"),
            "vdo-pool" => Some("a VDO pool: its VDO LV is mounted instead"),
            "error" | "zero" => Some("error/zero segments carry no data"),
            _ => None,
        }
    }
}

/// A volume group's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VgMetadata {
    /// VG name.
    pub name: String,
    /// VG UUID.
    pub id: String,
    /// Sequence number: bumped by every metadata change.
    pub seqno: u64,
    /// Extent size in 512-byte sectors.
    pub extent_size: u64,
    /// Status flags.
    pub status: Vec<String>,
    /// Flags.
    pub flags: Vec<String>,
    /// `lock_type` for shared VGs (lvmlockd), if any.
    pub lock_type: Option<String>,
    /// PVs.
    pub pvs: Vec<PvMeta>,
    /// LVs, hidden ones included.
    pub lvs: Vec<LvMeta>,
    /// `creation_host` of the text (the host that last wrote it).
    pub creation_host: Option<String>,
}

impl VgMetadata {
    /// The LVs users see.
    pub fn visible_lvs(&self) -> impl Iterator<Item = &LvMeta> {
        self.lvs.iter().filter(|l| l.visible)
    }
}

fn req_str(s: &Section, key: &str, ctx: &str) -> Result<String> {
    match s.value(key) {
        Some(Value::Str(v)) => Ok(v.clone()),
        Some(_) => Err(LvmError::Invalid(format!("{ctx}: {key} is not a string"))),
        None => Err(LvmError::Invalid(format!("{ctx}: {key} is missing"))),
    }
}

fn opt_str(s: &Section, key: &str) -> Option<String> {
    match s.value(key) {
        Some(Value::Str(v)) => Some(v.clone()),
        _ => None,
    }
}

fn req_u64(s: &Section, key: &str, ctx: &str) -> Result<u64> {
    match s.value(key) {
        Some(Value::Int(v)) => u64::try_from(*v)
            .map_err(|_| LvmError::Invalid(format!("{ctx}: {key} = {v} is negative"))),
        Some(_) => Err(LvmError::Invalid(format!("{ctx}: {key} is not an integer"))),
        None => Err(LvmError::Invalid(format!("{ctx}: {key} is missing"))),
    }
}

fn str_list(s: &Section, key: &str) -> Vec<String> {
    match s.value(key) {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|v| match v {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Why goldmount does not map a segment type itself.
fn unsupported_reason(segtype: &str) -> String {
    let why = match segtype {
        t if t.starts_with("thin") => {
            "thin provisioning needs the pool's metadata LV and thin-pool target"
        }
        t if t.starts_with("raid") => {
            "RAID LVs need the dm-raid target and their rmeta/rimage sub-LVs"
        }
        "mirror" => "old-style mirrors need the dm-mirror target and a mirror log",
        t if t.starts_with("cache") || t == "writecache" => {
            "cached LVs need their cache pool and the dm-cache target"
        }
        "snapshot" => "old-style snapshots need their origin and COW LV (dm-snapshot)",
        "vdo" | "vdo-pool" => "VDO LVs need the kvdo target",
        "integrity" => "integrity LVs need the dm-integrity target",
        "error" | "zero" => "error/zero segments carry no data",
        _ => "unknown segment type",
    };
    format!("segment type {segtype}: {why}; only linear and striped LVs are planned")
}

fn segment(name: &str, s: &Section, pv_ids: &[(String, String)]) -> Result<Segment> {
    let ctx = format!("segment {name}");
    let start_extent = req_u64(s, "start_extent", &ctx)?;
    let extent_count = req_u64(s, "extent_count", &ctx)?;
    let segtype = req_str(s, "type", &ctx)?;
    if segtype != "striped" {
        return Ok(Segment {
            start_extent,
            extent_count,
            kind: SegmentKind::Unsupported {
                reason: unsupported_reason(&segtype),
                segtype,
            },
        });
    }
    let stripe_count = req_u64(s, "stripe_count", &ctx)?;
    let Some(Value::List(items)) = s.value("stripes") else {
        return Err(LvmError::Invalid(format!("{ctx}: stripes list is missing")));
    };
    if items.len() as u64 != stripe_count.saturating_mul(2) {
        return Err(LvmError::Invalid(format!(
            "{ctx}: stripe_count = {stripe_count} but stripes has {} entries",
            items.len()
        )));
    }
    let mut stripes = Vec::new();
    for pair in items.chunks(2) {
        let (Some(Value::Str(pv)), Some(Value::Int(start))) = (pair.first(), pair.get(1)) else {
            return Err(LvmError::Invalid(format!(
                "{ctx}: stripes must be \"pvN\", extent pairs"
            )));
        };
        let pv_uuid = pv_ids
            .iter()
            .find(|(k, _)| k == pv)
            .map(|(_, id)| id.clone())
            .ok_or_else(|| LvmError::Invalid(format!("{ctx}: stripe on unknown PV {pv}")))?;
        let start_extent = u64::try_from(*start)
            .map_err(|_| LvmError::Invalid(format!("{ctx}: negative stripe start {start}")))?;
        stripes.push(Stripe {
            pv_uuid,
            start_extent,
        });
    }
    let stripe_size = match s.value("stripe_size") {
        Some(Value::Int(v)) => u64::try_from(*v).ok(),
        _ => None,
    };
    Ok(Segment {
        start_extent,
        extent_count,
        kind: SegmentKind::Striped {
            stripe_size,
            stripes,
        },
    })
}

fn lv(name: &str, s: &Section, pv_ids: &[(String, String)]) -> Result<LvMeta> {
    let ctx = format!("LV {name}");
    let id = req_str(s, "id", &ctx)?;
    let status = str_list(s, "status");
    let mut segments = Vec::new();
    for (k, seg) in s.sections() {
        if k.starts_with("segment") {
            segments.push(segment(&format!("{name}/{k}"), seg, pv_ids)?);
        }
    }
    if let Some(Value::Int(n)) = s.value("segment_count") {
        if *n != segments.len() as i64 {
            return Err(LvmError::Invalid(format!(
                "{ctx}: segment_count = {n} but {} segments are present",
                segments.len()
            )));
        }
    }
    let extents = segments
        .iter()
        .fold(0u64, |a, s| a.saturating_add(s.extent_count));
    let unsupported = segments.iter().find_map(|s| match &s.kind {
        SegmentKind::Unsupported { reason, .. } => Some(reason.clone()),
        SegmentKind::Striped { .. } => None,
    });
    let segtype = segments
        .first()
        .map(|s| match &s.kind {
            SegmentKind::Striped { .. } => "striped".to_string(),
            SegmentKind::Unsupported { segtype, .. } => segtype.clone(),
        })
        .unwrap_or_default();
    Ok(LvMeta {
        name: name.to_string(),
        id,
        segtype,
        visible: status.iter().any(|s| s == "VISIBLE"),
        status,
        segments,
        extents,
        unsupported,
    })
}

/// Builds the VG model from a parsed metadata text: the one top-level section
/// is the VG (the other top-level entries are `contents`, `version`, …).
pub fn vg_from_tree(top: &Section) -> Result<VgMetadata> {
    let mut vgs = top.sections();
    let Some((name, s)) = vgs.next() else {
        return Err(LvmError::Invalid("no volume group section".into()));
    };
    if let Some((other, _)) = vgs.next() {
        return Err(LvmError::Invalid(format!(
            "two top-level sections ({name}, {other}); metadata holds one VG"
        )));
    }
    let ctx = format!("VG {name}");
    let id = req_str(s, "id", &ctx)?;
    let seqno = req_u64(s, "seqno", &ctx)?;
    let extent_size = req_u64(s, "extent_size", &ctx)?;
    let mut pvs = Vec::new();
    if let Some(pv_sec) = s.section("physical_volumes") {
        for (key, p) in pv_sec.sections() {
            let pctx = format!("{ctx} PV {key}");
            pvs.push(PvMeta {
                key: key.to_string(),
                id: req_str(p, "id", &pctx)?,
                device_hint: opt_str(p, "device"),
                dev_size: req_u64(p, "dev_size", &pctx).unwrap_or(0),
                pe_start: req_u64(p, "pe_start", &pctx)?,
                pe_count: req_u64(p, "pe_count", &pctx)?,
                status: str_list(p, "status"),
            });
        }
    }
    if pvs.is_empty() {
        return Err(LvmError::Invalid(format!("{ctx}: no physical_volumes")));
    }
    let pv_ids: Vec<(String, String)> = pvs.iter().map(|p| (p.key.clone(), p.id.clone())).collect();
    let mut lvs = Vec::new();
    if let Some(lv_sec) = s.section("logical_volumes") {
        for (lv_name, l) in lv_sec.sections() {
            lvs.push(lv(lv_name, l, &pv_ids)?);
        }
    }
    Ok(VgMetadata {
        name: name.to_string(),
        id,
        seqno,
        extent_size,
        status: str_list(s, "status"),
        flags: str_list(s, "flags"),
        lock_type: opt_str(s, "lock_type"),
        pvs,
        lvs,
        creation_host: opt_str(top, "creation_host"),
    })
}
