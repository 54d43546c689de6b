//! ZFS vdev labels (TYPE `zfs_member`), as libblkid 2.38 finds them.
//!
//! A vdev carries four 256 KiB labels, two at the start and two at the
//! 256 KiB-aligned end. Each label holds an XDR-encoded nvlist (pool name,
//! pool GUID, vdev GUID, the vdev tree) at 16 KiB and 128 uberblocks from
//! 128 KiB. blkid calls a device a ZFS member once it has seen at least four
//! uberblock magics, label by label, and then reads the values from the
//! nvlist of the label where it stopped — quirks included, which
//! [`blkid_values`] reproduces. [`parse_nvlist`] is a proper XDR decoder
//! for callers that want more than blkid prints (state, txg, vdev path).

use crate::bytes::{be32, be64, label_bytes, le64, slice};
use crate::error::Result;
use crate::reader::Window;
use crate::signature::{Signature, Usage};

const VDEV_LABEL_UBERBLOCK: u64 = 128 * 1024;
const VDEV_LABEL_NVPAIR: u64 = 16 * 1024;
const VDEV_LABEL_SIZE: u64 = 256 * 1024;
const UBERBLOCK_SIZE: usize = 1024;
const UBERBLOCKS_COUNT: usize = 128;
const UBERBLOCK_MAGIC: u64 = 0x00ba_b10c;
/// Uberblocks blkid wants to see before it believes it.
const ZFS_WANT: usize = 4;
/// blkid's idinfo `minsz`: smaller devices are never ZFS members.
pub(crate) const MIN_SIZE: u64 = 64 * 1024 * 1024;
/// Bytes of the nvlist blkid looks at.
const NVLIST_SCAN: usize = 4096;

const DATA_TYPE_UINT64: u32 = 8;
const DATA_TYPE_STRING: u32 = 9;
const DATA_TYPE_NVLIST: u32 = 19;

/// Probes a region for a ZFS vdev label.
pub fn probe(w: &Window<'_>) -> Result<Option<Signature>> {
    let size = w.len();
    if size < MIN_SIZE {
        return Ok(None);
    }
    let align = size % VDEV_LABEL_SIZE;
    let offsets = [
        0,
        VDEV_LABEL_SIZE,
        size - 2 * VDEV_LABEL_SIZE - align,
        size - VDEV_LABEL_SIZE - align,
    ];
    let mut found = 0usize;
    // (absolute offset of the last magic seen, byte-swapped?, version)
    let mut last: Option<(u64, bool, u64)> = None;
    let mut label_off = 0u64;
    for off in offsets {
        label_off = off;
        if w.covered_by_partition(off, VDEV_LABEL_SIZE) {
            continue;
        }
        // Only the label's uberblock array (its second half) is needed to
        // count uberblocks; the nvlist is read below for the label that wins.
        if off
            .checked_add(VDEV_LABEL_SIZE)
            .is_none_or(|end| end > size)
        {
            return Ok(None);
        }
        let Some(ubs) = w.read_if_present(
            off + VDEV_LABEL_UBERBLOCK,
            UBERBLOCKS_COUNT * UBERBLOCK_SIZE,
        )?
        else {
            return Ok(None);
        };
        let mut in_label = 0;
        for i in 0..UBERBLOCKS_COUNT {
            let ub = i * UBERBLOCK_SIZE;
            let Some(magic) = le64(&ubs, ub) else {
                continue;
            };
            // The magic is host-endian: either byte order is a hit.
            for swapped in [false, true] {
                let want = if swapped {
                    UBERBLOCK_MAGIC.swap_bytes()
                } else {
                    UBERBLOCK_MAGIC
                };
                if magic == want {
                    let v = le64(&ubs, ub + 8).unwrap_or(0);
                    let v = if swapped { v.swap_bytes() } else { v };
                    last = Some((off + VDEV_LABEL_UBERBLOCK + ub as u64, swapped, v));
                    in_label += 1;
                }
            }
        }
        found += in_label;
        if in_label > 0 && found >= ZFS_WANT {
            break;
        }
    }
    let Some((ub_off, swapped, version)) = last.filter(|_| found >= ZFS_WANT) else {
        return Ok(None);
    };
    let mut sig = Signature::new("zfs_member", Usage::Filesystem, ub_off);
    sig.set("VERSION", version.to_string());
    let nv_off = (label_off & !(VDEV_LABEL_SIZE - 1)) + VDEV_LABEL_NVPAIR;
    // The whole 112 KiB nvlist area in one read: blkid's values come from
    // its first NVLIST_SCAN bytes, the details from a full decode.
    if let Some(area) = w.read_if_present(nv_off, 112 * 1024)? {
        for (name, value) in blkid_values(&area[..NVLIST_SCAN]) {
            sig.set(name, value);
        }
        {
            if let Some(l) = parse_nvlist(&area) {
                if let Some(g) = l.pool_guid {
                    sig.set_detail("ZFS_POOL_GUID", g.to_string());
                    sig.set_detail("ZFS_POOL_GUID_HEX", format!("{g:016x}"));
                }
                if let Some(n) = &l.name {
                    sig.set_detail("ZFS_POOL_NAME", n.clone());
                }
                if let Some(s) = l.state {
                    sig.set_detail("ZFS_POOL_STATE", s.to_string());
                }
                if let Some(t) = l.txg {
                    sig.set_detail("ZFS_TXG", t.to_string());
                }
                if let Some(p) = &l.path {
                    sig.set_detail("ZFS_VDEV_PATH", p.clone());
                }
            }
        }
    }
    sig.set_detail("ZFS_ENDIAN", if swapped { "big" } else { "little" });
    Ok(Some(sig))
}

/// C `strncmp(buf+pos, lit, n) == 0`, bytes past the buffer read as NUL.
fn strncmp_eq(buf: &[u8], pos: usize, lit: &[u8], n: usize) -> bool {
    for i in 0..n {
        let a = pos
            .checked_add(i)
            .and_then(|p| buf.get(p))
            .copied()
            .unwrap_or(0);
        let b = lit.get(i).copied().unwrap_or(0);
        if a != b {
            return false;
        }
        if a == 0 {
            return true;
        }
    }
    true
}

/// The values libblkid 2.38's `zfs_extract_guid_name` sets from the first
/// 4 KiB of a label's nvlist, in the order it sets them: LABEL (pool name),
/// UUID (pool GUID, decimal), UUID_SUB (vdev GUID, decimal) as they appear
/// at the top level, and BLOCK_SIZE from any `ashift` (nested lists too).
/// Names are matched like blkid does, by `strncmp` over the stored length.
pub fn blkid_values(nv: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let buf = &nv[..nv.len().min(NVLIST_SCAN)];
    let mut left = buf.len().saturating_sub(12);
    let mut p = 12usize;
    let mut level = 0u32;
    while left > 12 {
        let (Some(size), Some(namelen)) = (be32(buf, p), be32(buf, p + 8)) else {
            break;
        };
        let mut step = size as u64;
        if size == 0 {
            if level == 0 {
                break;
            }
            level -= 1;
            step = 8;
        } else {
            let namesize = (u64::from(namelen) + 3) & !3;
            if step > left as u64 || namesize + 12 > step {
                break;
            }
            let max_value = step - (namesize + 12);
            let name = p + 12;
            let value = name + namesize as usize;
            let vtype = be32(buf, value);
            if max_value >= 16 && vtype == Some(DATA_TYPE_NVLIST) {
                step = 12 + namesize + 16;
                level += 1;
            } else {
                let n = namelen as usize;
                let is = |lit: &[u8]| strncmp_eq(buf, name, lit, n);
                if is(b"name") && max_value >= 12 && level == 0 {
                    let strlen = be32(buf, value + 8).unwrap_or(0);
                    if vtype == Some(DATA_TYPE_STRING) && u64::from(strlen) + 12 <= max_value {
                        if let Some(l) =
                            slice(buf, value + 12, strlen as usize).and_then(label_bytes)
                        {
                            out.push(("LABEL", l));
                        }
                    }
                } else if is(b"guid") && max_value >= 16 && level == 0 {
                    if let (Some(DATA_TYPE_UINT64), Some(v)) = (vtype, be64(buf, value + 8)) {
                        out.push(("UUID_SUB", v.to_string().into_bytes()));
                    }
                } else if is(b"pool_guid") && max_value >= 16 && level == 0 {
                    if let (Some(DATA_TYPE_UINT64), Some(v)) = (vtype, be64(buf, value + 8)) {
                        // blkid_probe_sprintf_uuid skips an all-zero id.
                        if v != 0 {
                            out.push(("UUID", v.to_string().into_bytes()));
                        }
                    }
                } else if is(b"ashift") && max_value >= 16 {
                    if let (Some(DATA_TYPE_UINT64), Some(v)) = (vtype, be64(buf, value + 8)) {
                        if v < 32 {
                            out.push(("BLOCK_SIZE", (1u64 << v).to_string().into_bytes()));
                        }
                    }
                }
            }
        }
        if step > left as u64 {
            break;
        }
        left -= step as usize;
        p += step as usize;
    }
    out
}

/// What a vdev label's nvlist says about the pool and this vdev.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZfsLabel {
    /// Pool name.
    pub name: Option<String>,
    /// Pool GUID (the same on every clone of the pool: the clone-import key).
    pub pool_guid: Option<u64>,
    /// This vdev's GUID.
    pub guid: Option<u64>,
    /// On-disk pool version (5000 for feature-flag pools).
    pub version: Option<u64>,
    /// Pool state (0 active, 1 exported, 2 destroyed, …).
    pub state: Option<u64>,
    /// Transaction group of the label.
    pub txg: Option<u64>,
    /// `vdev_tree.path` when the tree is a single leaf or its first child is.
    pub path: Option<String>,
    /// `vdev_tree.ashift`.
    pub ashift: Option<u64>,
}

/// One decoded nvpair value (only the kinds a vdev label needs).
enum Value<'a> {
    U64(u64),
    Str(&'a [u8]),
    List(Vec<(&'a [u8], Value<'a>)>),
    Lists(Vec<Vec<(&'a [u8], Value<'a>)>>),
    Other,
}

/// Bounded XDR reader: every read checks the buffer, recursion is capped.
struct Xdr<'a> {
    b: &'a [u8],
    pos: usize,
}

const MAX_DEPTH: u32 = 8;
const MAX_PAIRS: usize = 4096;

impl<'a> Xdr<'a> {
    fn u32(&mut self) -> Option<u32> {
        let v = be32(self.b, self.pos)?;
        self.pos += 4;
        Some(v)
    }
    fn u64(&mut self) -> Option<u64> {
        let v = be64(self.b, self.pos)?;
        self.pos += 8;
        Some(v)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        let s = slice(self.b, self.pos, len)?;
        self.pos = self.pos.checked_add(len.checked_add(3)? & !3)?;
        Some(s)
    }
    /// An nvlist body: version, flags, then pairs until a zero size.
    fn list(&mut self, depth: u32) -> Option<Vec<(&'a [u8], Value<'a>)>> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.u32()?; // nvl_version
        self.u32()?; // nvl_nvflag
        let mut pairs = Vec::new();
        loop {
            let start = self.pos;
            let size = self.u32()? as usize;
            let _decoded = self.u32()?;
            if size == 0 {
                return Some(pairs);
            }
            if pairs.len() >= MAX_PAIRS {
                return None;
            }
            let end = start.checked_add(size)?;
            if end > self.b.len() || size < 8 {
                return None;
            }
            let name = self.bytes()?;
            let dtype = self.u32()?;
            let nelem = self.u32()?;
            let value = match dtype {
                DATA_TYPE_UINT64 => Value::U64(self.u64()?),
                DATA_TYPE_STRING => Value::Str(self.bytes()?),
                DATA_TYPE_NVLIST => Value::List(self.list(depth + 1)?),
                20 /* DATA_TYPE_NVLIST_ARRAY */ => {
                    let mut v = Vec::new();
                    for _ in 0..nelem.min(64) {
                        v.push(self.list(depth + 1)?);
                    }
                    Value::Lists(v)
                }
                _ => Value::Other,
            };
            // Embedded lists are not counted in `size`; plain values are.
            if !matches!(value, Value::List(_) | Value::Lists(_)) {
                self.pos = end;
            }
            pairs.push((name, value));
        }
    }
}

fn get_u64(l: &[(&[u8], Value<'_>)], key: &[u8]) -> Option<u64> {
    l.iter().find_map(|(n, v)| match v {
        Value::U64(x) if *n == key => Some(*x),
        _ => None,
    })
}

fn get_str(l: &[(&[u8], Value<'_>)], key: &[u8]) -> Option<String> {
    l.iter().find_map(|(n, v)| match v {
        Value::Str(s) if *n == key => Some(String::from_utf8_lossy(s).into_owned()),
        _ => None,
    })
}

/// Decodes the XDR nvlist of a vdev label (the bytes at label offset 16 KiB:
/// a 4-byte encoding header, then the list). `None` when it is not an XDR
/// nvlist or is damaged; never panics on any input.
pub fn parse_nvlist(data: &[u8]) -> Option<ZfsLabel> {
    // nvs_header: encoding 1 = XDR, endian byte is irrelevant for XDR.
    if data.first() != Some(&1) {
        return None;
    }
    let mut x = Xdr { b: data, pos: 4 };
    let top = x.list(0)?;
    let mut out = ZfsLabel {
        name: get_str(&top, b"name"),
        pool_guid: get_u64(&top, b"pool_guid"),
        guid: get_u64(&top, b"guid"),
        version: get_u64(&top, b"version"),
        state: get_u64(&top, b"pool_state").or_else(|| get_u64(&top, b"state")),
        txg: get_u64(&top, b"txg"),
        ..ZfsLabel::default()
    };
    let tree = top.iter().find_map(|(n, v)| match v {
        Value::List(l) if *n == b"vdev_tree" => Some(l),
        _ => None,
    });
    if let Some(tree) = tree {
        out.ashift = get_u64(tree, b"ashift");
        out.path = get_str(tree, b"path").or_else(|| {
            tree.iter().find_map(|(n, v)| match v {
                Value::Lists(c) if *n == b"children" => c.first().and_then(|c| get_str(c, b"path")),
                _ => None,
            })
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn pair_u64(name: &str, v: u64) -> Vec<u8> {
        let mut p = Vec::new();
        let nl = name.len();
        let ns = (nl + 3) & !3;
        let size = 12 + ns + 16;
        p.extend((size as u32).to_be_bytes());
        p.extend(0u32.to_be_bytes());
        p.extend((nl as u32).to_be_bytes());
        p.extend(name.as_bytes());
        p.resize(12 + ns, 0);
        p.extend(DATA_TYPE_UINT64.to_be_bytes());
        p.extend(1u32.to_be_bytes());
        p.extend(v.to_be_bytes());
        p
    }

    #[test]
    fn blkid_values_and_parser_agree_on_a_small_list() {
        let mut nv = vec![1u8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        nv.extend(pair_u64("pool_guid", 42));
        nv.extend(pair_u64("guid", 7));
        nv.extend([0u8; 8]);
        let v = blkid_values(&nv);
        assert_eq!(v[0], ("UUID", b"42".to_vec()));
        assert_eq!(v[1], ("UUID_SUB", b"7".to_vec()));
        let l = parse_nvlist(&nv).unwrap();
        assert_eq!(l.pool_guid, Some(42));
        assert_eq!(l.guid, Some(7));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678u32;
        for len in [0usize, 3, 12, 40, 100, 4096, 5000] {
            for _ in 0..200 {
                let d: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        (seed >> 16) as u8 % 24
                    })
                    .collect();
                let _ = blkid_values(&d);
                let _ = parse_nvlist(&d);
            }
        }
    }
}
