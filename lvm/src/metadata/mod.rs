//! Pure-Rust reader of LVM2 on-disk metadata, used to plan an import before
//! any lvm2 command touches the clone: which VG a device belongs to, which PVs
//! that VG needs, which LVs it has. Reads only; never panics on bad input.

pub mod crc;
pub mod label;
pub mod mda;
pub mod text;
pub mod vg;

use serde::Serialize;

pub use label::{parse_label, DiskArea, PvLabel, LABEL_SCAN_SIZE};
pub use mda::{parse_mda_header, MdaHeader, RawLocn};
pub use vg::{LvMeta, PvMeta, Segment, SegmentKind, Stripe, VgMetadata};

use crate::error::{LvmError, Result};

/// What one metadata area of a PV held.
#[derive(Debug, Clone, Serialize)]
pub struct MdaInfo {
    /// The area as listed in the PV header.
    pub area: DiskArea,
    /// Sequence number of its VG metadata, when it held valid metadata.
    pub seqno: Option<u64>,
    /// Why it was not used (bad checksum, ignored, empty…), if it was not.
    pub problem: Option<String>,
}

/// Everything read from one physical volume.
#[derive(Debug, Clone, Serialize)]
pub struct PvInfo {
    /// Label and PV header.
    pub label: PvLabel,
    /// Each metadata area and what it held.
    pub mdas: Vec<MdaInfo>,
    /// The newest valid VG metadata on this PV (highest seqno across its
    /// areas); `None` for a PV without metadata areas or an orphan PV.
    pub metadata: Option<VgMetadata>,
}

impl PvInfo {
    /// The PV UUID.
    pub fn uuid(&self) -> &str {
        &self.label.pv_uuid
    }
}

/// Reads `len` bytes at `off`, or a Truncated/Read error naming `what`.
pub(crate) fn read_at(
    src: &dyn fsdetect::BlockSource,
    what: &'static str,
    off: u64,
    len: u64,
) -> Result<Vec<u8>> {
    let end = off.saturating_add(len);
    if end > src.size() {
        return Err(LvmError::Truncated {
            what,
            offset: off,
            need: len,
            size: src.size(),
        });
    }
    let mut buf = vec![0u8; len as usize];
    src.read_exact_at(off, &mut buf)
        .map_err(|source| LvmError::Read {
            what: format!("{what} at {off}"),
            source,
        })?;
    Ok(buf)
}

/// Parses VG metadata text (as stored in a metadata area or written by
/// `vgcfgbackup`) into the VG model. Syntax errors carry line and column.
pub fn parse_metadata_text(text: &str) -> Result<VgMetadata> {
    vg::vg_from_tree(&text::parse(text)?)
}

/// Reads one metadata area: header, text, checksum, parse.
fn read_mda(src: &dyn fsdetect::BlockSource, area: DiskArea) -> Result<Option<VgMetadata>> {
    let head = read_at(
        src,
        "metadata area header",
        area.offset,
        mda::MDA_HEADER_SIZE,
    )?;
    let h = parse_mda_header(&head, area)?;
    let Some(locn) = h.text else {
        return Ok(None);
    };
    if locn.flags & mda::RAW_LOCN_IGNORED != 0 {
        return Err(LvmError::NoMetadata(format!(
            "metadata area at {} is marked ignored",
            area.offset
        )));
    }
    let raw = mda::read_text(src, &h, locn)?;
    let text = String::from_utf8_lossy(&raw);
    parse_metadata_text(text.trim_end_matches('\0')).map(Some)
}

/// Reads the label, PV header and every metadata area of a device and keeps
/// the newest valid metadata (highest seqno; the mda header checksum and the
/// text checksum are verified). A damaged area is recorded in
/// [`PvInfo::mdas`] and skipped when another area is good; when every area
/// is damaged the first area's error is returned.
pub fn read_pv(src: &dyn fsdetect::BlockSource) -> Result<PvInfo> {
    let len = (LABEL_SCAN_SIZE as u64).min(src.size());
    let head = read_at(src, "LVM label", 0, len)?;
    let label = parse_label(&head)?;
    let mut mdas = Vec::new();
    let mut best: Option<VgMetadata> = None;
    let mut first_err = None;
    let mut empty = 0usize;
    for &area in &label.metadata_areas {
        match read_mda(src, area) {
            Ok(Some(vg)) => {
                mdas.push(MdaInfo {
                    area,
                    seqno: Some(vg.seqno),
                    problem: None,
                });
                if let Some(b) = &best {
                    if b.id != vg.id {
                        return Err(LvmError::Corrupt {
                            what: "metadata areas",
                            offset: area.offset,
                            reason: format!(
                                "areas of one PV disagree on the VG: {} ({}) vs {} ({})",
                                b.name, b.id, vg.name, vg.id
                            ),
                        });
                    }
                }
                if !matches!(&best, Some(b) if b.seqno >= vg.seqno) {
                    best = Some(vg);
                }
            }
            Ok(None) => {
                empty += 1;
                mdas.push(MdaInfo {
                    area,
                    seqno: None,
                    problem: Some("empty (PV not in a VG)".into()),
                });
            }
            Err(e) => {
                tracing::warn!(offset = area.offset, error = %e, "skipping damaged LVM metadata area");
                mdas.push(MdaInfo {
                    area,
                    seqno: None,
                    problem: Some(e.to_string()),
                });
                first_err.get_or_insert(e);
            }
        }
    }
    if best.is_none() && empty == 0 {
        if let Some(e) = first_err {
            return Err(e);
        }
    }
    Ok(PvInfo {
        label,
        mdas,
        metadata: best,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const TEXT: &str = "vg_t {\nid = \"prtgaL-Wd7I-1hAD-W4v3-12O1-AYMY-ghgBJe\"\nseqno = 3\nextent_size = 8192\nphysical_volumes {\npv0 {\nid = \"abcdef-ghij-klmn-opqr-stuv-wxyz-012345\"\ndev_size = 131072\npe_start = 2048\npe_count = 15\n}\n}\nlogical_volumes {\nroot {\nid = \"JUbFGH-T1Di-neVy-8gc7-x0jO-used-9tZ0xD\"\nstatus = [\"READ\", \"WRITE\", \"VISIBLE\"]\nsegment_count = 1\nsegment1 {\nstart_extent = 0\nextent_count = 2\ntype = \"striped\"\nstripe_count = 1\nstripes = [\"pv0\", 0]\n}\n}\n}\n}\ncontents = \"Text Format Volume Group\"\n";

    fn device(texts: &[(u64, &str)]) -> Vec<u8> {
        let mdas: Vec<(u64, u64)> = texts.iter().map(|&(o, _)| (o, 1 << 16)).collect();
        let mut dev = vec![0u8; 1 << 20];
        dev[..LABEL_SCAN_SIZE].copy_from_slice(&label::tests::make_label(1, &mdas));
        for &(o, t) in texts {
            let mut body = t.as_bytes().to_vec();
            body.push(0);
            let h = mda::tests::make_header(o, 1 << 16, Some((512, &body)));
            dev[o as usize..o as usize + 512].copy_from_slice(&h);
            dev[o as usize + 512..o as usize + 512 + body.len()].copy_from_slice(&body);
        }
        dev
    }

    #[test]
    fn newest_of_two_areas_wins() {
        let newer = TEXT.replace("seqno = 3", "seqno = 9");
        let dev = device(&[(4096, TEXT), (1 << 19, &newer)]);
        let pv = read_pv(&fsdetect::MemSource::new(dev)).unwrap();
        let vg = pv.metadata.unwrap();
        assert_eq!((vg.name.as_str(), vg.seqno), ("vg_t", 9));
        assert_eq!(vg.lvs[0].name, "root");
        assert_eq!(vg.lvs[0].unsupported, None);
        assert_eq!(pv.mdas.len(), 2);
    }

    #[test]
    fn one_damaged_area_is_skipped_all_damaged_is_an_error() {
        let mut dev = device(&[(4096, TEXT), (1 << 19, TEXT)]);
        dev[4096 + 600] ^= 0x20;
        let pv = read_pv(&fsdetect::MemSource::new(dev.clone())).unwrap();
        assert!(pv.mdas[0].problem.as_deref().unwrap().contains("bad crc"));
        assert_eq!(pv.metadata.unwrap().seqno, 3);
        dev[(1 << 19) + 600] ^= 0x20;
        let e = read_pv(&fsdetect::MemSource::new(dev)).unwrap_err();
        assert!(
            matches!(
                e,
                LvmError::BadCrc {
                    what: "metadata text",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn unsupported_segments_are_reported() {
        let t = TEXT.replace(
            "type = \"striped\"\nstripe_count = 1\nstripes = [\"pv0\", 0]",
            "type = \"thin\"\nthin_pool = \"pool\"",
        );
        let vg = parse_metadata_text(&t).unwrap();
        assert!(vg.lvs[0].unsupported.as_deref().unwrap().contains("thin"));
        // A thin LV holds data (lvm2 activates it, goldmount mounts it);
        // its pool does not.
        assert_eq!(vg.lvs[0].segtype, "thin");
        assert_eq!(vg.lvs[0].holds_no_data(), None);
        let pool = TEXT.replace(
            "type = \"striped\"\nstripe_count = 1\nstripes = [\"pv0\", 0]",
            "type = \"thin-pool\"\nmetadata = \"pool_tmeta\"\npool = \"pool_tdata\"",
        );
        let vg = parse_metadata_text(&pool).unwrap();
        assert_eq!(vg.lvs[0].segtype, "thin-pool");
        assert!(vg.lvs[0].holds_no_data().unwrap().contains("thin pool"));
        let linear = parse_metadata_text(TEXT).unwrap();
        assert_eq!(linear.lvs[0].segtype, "striped");
        assert_eq!(linear.lvs[0].holds_no_data(), None);
    }
}
