//! Pure parsers for SCSI VPD pages 0x83 (device identification) and 0x80
//! (unit serial number), the identities a presented clone is verified by.
//!
//! Input is the raw page as the kernel exposes it in
//! `/sys/block/sdX/device/vpd_pg83` / `vpd_pg80` (header included).

use serde::Serialize;

/// What a 0x83 designator names (SPC-4 "association").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Association {
    /// The logical unit itself: the only kind that identifies a LUN.
    LogicalUnit,
    /// The target port the command came through.
    TargetPort,
    /// The SCSI target device.
    TargetDevice,
    /// Reserved value.
    Reserved,
}

/// A decoded identification descriptor of VPD page 0x83.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Designator {
    /// NAA (types 2/3/5/6), hex, e.g. `6001405…` (16 or 32 digits).
    Naa {
        /// Lowercase hex of the designator.
        hex: String,
        /// What it names.
        association: Association,
    },
    /// EUI-64 based (8, 12 or 16 bytes), hex.
    Eui64 {
        /// Lowercase hex.
        hex: String,
        /// What it names.
        association: Association,
    },
    /// T10 vendor identification: 8-byte vendor id + vendor specific text.
    T10 {
        /// The designator text as ASCII (trailing spaces/NULs removed).
        text: String,
        /// What it names.
        association: Association,
    },
    /// SCSI name string (e.g. an iSCSI name with `,t,0x1` suffix).
    ScsiName {
        /// The string, up to its NUL terminator.
        name: String,
        /// What it names.
        association: Association,
    },
    /// Any other designator type (relative target port, port group, …).
    Other {
        /// Designator type number.
        kind: u8,
        /// Lowercase hex of the designator.
        hex: String,
        /// What it names.
        association: Association,
    },
}

impl Designator {
    /// What the designator names.
    pub fn association(&self) -> Association {
        match self {
            Designator::Naa { association, .. }
            | Designator::Eui64 { association, .. }
            | Designator::T10 { association, .. }
            | Designator::ScsiName { association, .. }
            | Designator::Other { association, .. } => *association,
        }
    }

    /// The designator in the kernel's `device/wwid` spelling (`naa.…`,
    /// `eui.…`, `t10.…`, or the SCSI name), None for other types.
    pub fn wwid(&self) -> Option<String> {
        match self {
            Designator::Naa { hex, .. } => Some(format!("naa.{hex}")),
            Designator::Eui64 { hex, .. } => Some(format!("eui.{hex}")),
            Designator::T10 { text, .. } => Some(format!("t10.{text}")),
            Designator::ScsiName { name, .. } => Some(name.clone()),
            Designator::Other { .. } => None,
        }
    }

    /// Every common spelling of this identity, lowercase: kernel wwid
    /// (`naa.6001…`), udev/multipath WWID (`36001…`, `2…` for EUI-64,
    /// `1…` for T10, `8…` for name strings) and bare or `0x` hex (`wwn-0x…`
    /// links). Used to match what the appliance announced, however spelled.
    pub fn aliases(&self) -> Vec<String> {
        match self {
            Designator::Naa { hex, .. } => vec![
                format!("naa.{hex}"),
                format!("3{hex}"),
                format!("0x{hex}"),
                hex.clone(),
            ],
            Designator::Eui64 { hex, .. } => vec![
                format!("eui.{hex}"),
                format!("2{hex}"),
                format!("0x{hex}"),
                hex.clone(),
            ],
            Designator::T10 { text, .. } => {
                let t = text.to_ascii_lowercase();
                let squeezed = t.split_whitespace().collect::<Vec<_>>().join("_");
                vec![format!("t10.{t}"), format!("1{squeezed}")]
            }
            Designator::ScsiName { name, .. } => {
                let n = name.to_ascii_lowercase();
                vec![n.clone(), format!("8{n}")]
            }
            Designator::Other { .. } => Vec::new(),
        }
    }

    fn rank(&self) -> (u8, usize) {
        match self {
            Designator::ScsiName { name, .. } => (4, name.len()),
            Designator::Naa { hex, .. } => (3, hex.len()),
            Designator::Eui64 { hex, .. } => (2, hex.len()),
            Designator::T10 { text, .. } => (1, text.len()),
            Designator::Other { .. } => (0, 0),
        }
    }
}

/// Why a VPD page could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VpdError {
    /// Shorter than its 4-byte header.
    #[error("VPD page is {0} bytes, shorter than its header")]
    Short(usize),
    /// The page code is not the one expected.
    #[error("expected VPD page 0x{expected:02x}, got 0x{got:02x}")]
    WrongPage {
        /// Page asked for.
        expected: u8,
        /// Page code in the header.
        got: u8,
    },
    /// A descriptor runs past the end of the page.
    #[error("designator at offset {0} runs past the end of the page")]
    Truncated(usize),
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(b: &[u8]) -> String {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end])
        .trim_end_matches([' ', '\0'])
        .to_string()
}

fn page_body(page: &[u8], code: u8) -> Result<&[u8], VpdError> {
    if page.len() < 4 {
        return Err(VpdError::Short(page.len()));
    }
    if page[1] != code {
        return Err(VpdError::WrongPage {
            expected: code,
            got: page[1],
        });
    }
    let len = usize::from(u16::from_be_bytes([page[2], page[3]]));
    // The kernel may hand out a page cut to its buffer: parse what is there.
    Ok(&page[4..page.len().min(4 + len)])
}

/// Parses VPD page 0x83 into its designators, in page order.
pub fn parse_pg83(page: &[u8]) -> Result<Vec<Designator>, VpdError> {
    let body = page_body(page, 0x83)?;
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= body.len() {
        let code_set = body[off] & 0x0f;
        let association = match (body[off + 1] >> 4) & 0x3 {
            0 => Association::LogicalUnit,
            1 => Association::TargetPort,
            2 => Association::TargetDevice,
            _ => Association::Reserved,
        };
        let kind = body[off + 1] & 0x0f;
        let len = usize::from(body[off + 3]);
        let start = off + 4;
        let Some(d) = body.get(start..start + len) else {
            return Err(VpdError::Truncated(off + 4));
        };
        let des = match kind {
            3 => Designator::Naa {
                hex: hex(d),
                association,
            },
            2 => Designator::Eui64 {
                hex: hex(d),
                association,
            },
            1 => Designator::T10 {
                text: text(d),
                association,
            },
            8 if code_set == 3 || code_set == 2 => Designator::ScsiName {
                name: text(d),
                association,
            },
            _ => Designator::Other {
                kind,
                hex: hex(d),
                association,
            },
        };
        out.push(des);
        off = start + len;
    }
    Ok(out)
}

/// Parses VPD page 0x80 into the unit serial number (trimmed).
pub fn parse_pg80(page: &[u8]) -> Result<String, VpdError> {
    let body = page_body(page, 0x80)?;
    Ok(text(body).trim().to_string())
}

/// The best logical-unit designator, in the order the kernel prefers for
/// `device/wwid`: SCSI name string, then NAA, EUI-64, T10 vendor id; the
/// longer designator wins within a type.
pub fn primary(designators: &[Designator]) -> Option<&Designator> {
    designators
        .iter()
        .filter(|d| d.association() == Association::LogicalUnit && d.rank().0 > 0)
        .max_by_key(|d| d.rank())
}

/// Lowercases and strips the decorations people put on a WWID (`wwn-`,
/// `scsi-`, `/dev/disk/by-id/`) so it can be compared with
/// [`Designator::aliases`].
pub fn normalize_wanted(wwid: &str) -> String {
    let w = wwid.trim().to_ascii_lowercase();
    let w = w.strip_prefix("/dev/disk/by-id/").unwrap_or(&w);
    let w = w
        .strip_prefix("wwn-")
        .or_else(|| w.strip_prefix("scsi-"))
        .unwrap_or(w);
    w.to_string()
}

/// True when `wanted` (any spelling) names one of the logical-unit
/// designators, or equals the kernel's `wwid` string.
pub fn matches(wanted: &str, designators: &[Designator], kernel_wwid: Option<&str>) -> bool {
    let w = normalize_wanted(wanted);
    if w.is_empty() {
        return false;
    }
    if kernel_wwid.is_some_and(|k| k.trim().to_ascii_lowercase() == w) {
        return true;
    }
    designators
        .iter()
        .filter(|d| d.association() == Association::LogicalUnit)
        .any(|d| d.aliases().contains(&w))
}
