//! GUID partition tables, validated the way libblkid 2.38's `gpt` and `PMBR`
//! probers validate them, so PTTYPE/PTUUID agree with `blkid -p`:
//!
//! - a protective MBR (0x55AA and a 0xEE entry) is required — blkid -p does
//!   not force GPT, so a GPT without one is not reported;
//! - the header at LBA 1 is used when its signature, size, CRC32, MyLBA,
//!   usable range and entry array (size and CRC32) are all right; otherwise
//!   the one at the last LBA, and the table says so;
//! - with a protective MBR but no valid header at all the disk is "PMBR"
//!   (no partitions), as blkid prints it.

use crate::bytes::{guid_string, le32, le64, slice, utf16_to_utf8};
use crate::checksum::crc32;
use crate::error::Result;
use crate::mbr::{check_partitions, GPT_PROTECTIVE};
use crate::reader::Window;
use crate::table::{GptHeader, Partition, PartitionKind, PartitionTable, PartitionType, TableKind};

/// "EFI PART".
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Bytes of the header that are defined (and the minimum HeaderSize).
const HEADER_MIN: u32 = 92;
/// The only entry size libblkid accepts.
const ENTRY_SIZE: u32 = 128;
/// Largest entry array we read (libblkid allows up to 4 GiB; 256 Ki entries
/// is 2000 times what any tool writes, and the bytes must fit in memory).
const MAX_ENTRY_ARRAY: u64 = 32 * 1024 * 1024;

/// A header that passed every check, with its entry array.
struct Header {
    first_usable: u64,
    last_usable: u64,
    disk_guid: [u8; 16],
    entries: Vec<u8>,
    num_entries: u32,
}

/// Reads the GPT of a region: `Ok(None)` when there is neither a GPT nor a
/// lone protective MBR.
pub fn probe(w: &Window<'_>) -> Result<Option<PartitionTable>> {
    let ssz = u64::from(w.sector_size().max(512));
    if w.len() < ssz {
        return Ok(None);
    }
    let last_lba = w.len() / ssz - 1;
    if !has_protective_mbr(w)? {
        return Ok(None);
    }
    let mut warnings = Vec::new();
    let primary = read_header(w, 1, last_lba, ssz)?;
    let (header, which) = match primary {
        Ok(h) => (Some(h), GptHeader::Primary),
        Err(why_primary) => match read_header(w, last_lba, last_lba, ssz)? {
            Ok(h) => {
                warnings.push(format!(
                    "primary GPT header at LBA 1 is unusable ({why_primary}); using the backup header at LBA {last_lba}"
                ));
                (Some(h), GptHeader::Backup)
            }
            Err(why_backup) => {
                warnings.push(format!(
                    "protective MBR but no usable GPT: primary header at LBA 1: {why_primary}; backup header at LBA {last_lba}: {why_backup}"
                ));
                (None, GptHeader::Primary)
            }
        },
    };
    let Some(header) = header else {
        // The PMBR prober finds its 0x55AA magic by reading the whole first
        // KiB, like every libblkid magic.
        if w.len() < 1024 {
            return Ok(None);
        }
        return Ok(Some(PartitionTable {
            kind: TableKind::Pmbr,
            uuid: None,
            gpt_header: None,
            partitions: Vec::new(),
            warnings,
        }));
    };
    let mut table = PartitionTable {
        kind: TableKind::Gpt,
        uuid: guid_string(&header.disk_guid),
        gpt_header: Some(which),
        partitions: entries(&header, ssz, w.len()),
        warnings,
    };
    check_partitions(&mut table, w.len());
    Ok(Some(table))
}

/// libblkid's `is_pmbr_valid`: sector 0 has the boot signature and one of
/// its four entries has type 0xEE (a hybrid MBR counts too).
fn has_protective_mbr(w: &Window<'_>) -> Result<bool> {
    let Some(mbr) = w.read_if_present(0, 512)? else {
        return Ok(false);
    };
    if slice(&mbr, 510, 2) != Some(&[0x55, 0xaa][..]) {
        return Ok(false);
    }
    Ok((0..4).any(|i| mbr.get(0x1be + 16 * i + 4) == Some(&GPT_PROTECTIVE)))
}

/// Reads and checks the header at `lba` and its entry array. The inner
/// error says what is wrong, for the table's warnings; I/O errors are outer.
fn read_header(
    w: &Window<'_>,
    lba: u64,
    last_lba: u64,
    ssz: u64,
) -> Result<std::result::Result<Header, String>> {
    let Some(sector) = w.read_if_present(lba * ssz, ssz as usize)? else {
        return Ok(Err("it is past the end of the disk".into()));
    };
    if slice(&sector, 0, 8) != Some(&SIGNATURE[..]) {
        return Ok(Err("no \"EFI PART\" signature".into()));
    }
    let hsz = le32(&sector, 12).unwrap_or(0);
    if hsz < HEADER_MIN || u64::from(hsz) > ssz {
        return Ok(Err(format!("header size {hsz} is invalid")));
    }
    let mut hdr = sector[..hsz as usize].to_vec();
    let stored_crc = le32(&hdr, 16).unwrap_or(0);
    hdr[16..20].fill(0);
    let crc = crc32(&hdr);
    if crc != stored_crc {
        return Ok(Err(format!(
            "header CRC32 is {stored_crc:#010x}, computed {crc:#010x}"
        )));
    }
    let field = |off| le64(&sector, off).unwrap_or(0);
    let my_lba = field(24);
    if my_lba != lba {
        return Ok(Err(format!("it says it is at LBA {my_lba}")));
    }
    let (fu, lu) = (field(40), field(48));
    if lu < fu || fu > last_lba || lu > last_lba {
        return Ok(Err(format!(
            "usable LBAs {fu}..{lu} do not fit the disk (last LBA {last_lba})"
        )));
    }
    if fu < lba && lba < lu {
        return Ok(Err(format!("it lies inside the usable LBAs {fu}..{lu}")));
    }
    let num_entries = le32(&sector, 80).unwrap_or(0);
    let entry_size = le32(&sector, 84).unwrap_or(0);
    let esz = u64::from(num_entries) * u64::from(entry_size);
    if esz == 0 || esz >= u64::from(u32::MAX) || entry_size != ENTRY_SIZE {
        return Ok(Err(format!(
            "entry array of {num_entries} entries of {entry_size} bytes is invalid"
        )));
    }
    if esz > MAX_ENTRY_ARRAY {
        return Ok(Err(format!(
            "entry array of {esz} bytes is larger than the {MAX_ENTRY_ARRAY} bytes accepted"
        )));
    }
    let entries_lba = field(72);
    let entries = match entries_lba.checked_mul(ssz) {
        Some(off) => w.read_if_present(off, esz as usize)?,
        None => None,
    };
    let Some(entries) = entries else {
        return Ok(Err(format!(
            "entry array at LBA {entries_lba} ({esz} bytes) is past the end of the disk"
        )));
    };
    let stored_crc = le32(&sector, 88).unwrap_or(0);
    let crc = crc32(&entries);
    if crc != stored_crc {
        return Ok(Err(format!(
            "entry array CRC32 is {stored_crc:#010x}, computed {crc:#010x}"
        )));
    }
    let mut disk_guid = [0u8; 16];
    disk_guid.copy_from_slice(slice(&sector, 56, 16).unwrap_or(&[0; 16]));
    Ok(Ok(Header {
        first_usable: fu,
        last_usable: lu,
        disk_guid,
        entries: entries.to_vec(),
        num_entries,
    }))
}

/// The used entries, numbered by slot as the kernel numbers them. Entries
/// outside the usable area are kept with a problem (blkid drops them; the
/// kernel does not), so they are listed but never probed.
fn entries(h: &Header, ssz: u64, disk_len: u64) -> Vec<Partition> {
    let mut out = Vec::new();
    for (i, e) in h
        .entries
        .chunks_exact(ENTRY_SIZE as usize)
        .take(h.num_entries as usize)
        .enumerate()
    {
        let Some(type_guid) = guid_string(&e[0..16]) else {
            continue;
        };
        let start = le64(e, 32).unwrap_or(0);
        let end = le64(e, 40).unwrap_or(0);
        let size_lba = end.wrapping_sub(start).wrapping_add(1);
        let problem = if end < start {
            Some(format!(
                "ends at LBA {end}, before it starts at LBA {start}"
            ))
        } else if end.saturating_add(1).saturating_mul(ssz) > disk_len {
            None // check_partitions says where it ends and how big the disk is
        } else if start < h.first_usable || end > h.last_usable {
            Some(format!(
                "LBAs {start}..{end} lie outside the usable area {}..{}",
                h.first_usable, h.last_usable
            ))
        } else {
            None
        };
        let name = String::from_utf8_lossy(&utf16_to_utf8(&e[56..128], false)).into_owned();
        out.push(Partition {
            number: i as u32 + 1,
            start: start.saturating_mul(ssz),
            size: if end < start {
                0
            } else {
                size_lba.saturating_mul(ssz)
            },
            kind: PartitionKind::Gpt,
            type_name: type_name(&type_guid).map(str::to_string),
            part_type: PartitionType::Gpt(type_guid),
            uuid: guid_string(&e[16..32]),
            name: (!name.is_empty()).then_some(name),
            flags: le64(e, 48).unwrap_or(0),
            problem,
        });
    }
    out
}

/// The name fdisk/sgdisk give a GPT type GUID (lowercase text form).
pub fn type_name(type_guid: &str) -> Option<&'static str> {
    GPT_TYPE_NAMES
        .iter()
        .find(|(g, _)| g.eq_ignore_ascii_case(type_guid))
        .map(|(_, n)| *n)
}

/// util-linux's GPT type names (include/pt-gpt-partnames.h, 2.38).
static GPT_TYPE_NAMES: &[(&str, &str)] = &[
    ("c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "EFI System"),
    (
        "024dee41-33e7-11d3-9d69-0008c781f39f",
        "MBR partition scheme",
    ),
    ("d3bfe2de-3daf-11df-ba40-e3a556d89593", "Intel Fast Flash"),
    ("21686148-6449-6e6f-744e-656564454649", "BIOS boot"),
    (
        "f4019732-066e-4e12-8273-346c5641494f",
        "Sony boot partition",
    ),
    (
        "bfbfafe7-a34f-448a-9a5b-6213eb736c22",
        "Lenovo boot partition",
    ),
    ("9e1a2d38-c612-4316-aa26-8b49521e5a8b", "PowerPC PReP boot"),
    ("7412f7d5-a156-4b13-81dc-867174929325", "ONIE boot"),
    ("d4e6e2cd-4469-46f3-b5cb-1bff57afc149", "ONIE config"),
    ("e3c9e316-0b5c-4db8-817d-f92df00215ae", "Microsoft reserved"),
    (
        "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7",
        "Microsoft basic data",
    ),
    (
        "5808c8aa-7e8f-42e0-85d2-e1e90434cfb3",
        "Microsoft LDM metadata",
    ),
    ("af9b60a0-1431-4f62-bc68-3311714a69ad", "Microsoft LDM data"),
    (
        "de94bba4-06d1-4d40-a16a-bfd50179d6ac",
        "Windows recovery environment",
    ),
    (
        "37affc90-ef7d-4e96-91c3-2d7ae055b174",
        "IBM General Parallel Fs",
    ),
    (
        "e75caf8f-f680-4cee-afa3-b001e56efc2d",
        "Microsoft Storage Spaces",
    ),
    ("75894c1e-3aeb-11d3-b7c1-7b03a0000000", "HP-UX data"),
    ("e2a1e728-32e3-11d6-a682-7b03a0000000", "HP-UX service"),
    ("0657fd6d-a4ab-43c4-84e5-0933c84b4f4f", "Linux swap"),
    ("0fc63daf-8483-4772-8e79-3d69d8477de4", "Linux filesystem"),
    ("3b8f8425-20e0-4f3b-907f-1a25a76f98e8", "Linux server data"),
    ("44479540-f297-41b2-9af7-d131d5f0458a", "Linux root (x86)"),
    (
        "4f68bce3-e8cd-4db1-96e7-fbcaf984b709",
        "Linux root (x86-64)",
    ),
    ("6523f8ae-3eb1-4e2a-a05a-18b695ae656f", "Linux root (Alpha)"),
    ("d27f46ed-2919-4cb8-bd25-9531f3c16534", "Linux root (ARC)"),
    ("69dad710-2ce4-4e3c-b16c-21a1d49abed3", "Linux root (ARM)"),
    (
        "b921b045-1df0-41c3-af44-4c6f280d3fae",
        "Linux root (ARM-64)",
    ),
    ("993d8d3d-f80e-4225-855a-9daf8ed7ea97", "Linux root (IA-64)"),
    (
        "77055800-792c-4f94-b39a-98c91b762bb6",
        "Linux root (LoongArch-64)",
    ),
    (
        "37c58c8a-d913-4156-a25f-48b1b64e07f0",
        "Linux root (MIPS-32 LE)",
    ),
    (
        "700bda43-7a34-4507-b179-eeb93d7a7ca3",
        "Linux root (MIPS-64 LE)",
    ),
    ("1de3f1ef-fa98-47b5-8dcd-4a860a654d78", "Linux root (PPC)"),
    ("912ade1d-a839-4913-8964-a10eee08fbd2", "Linux root (PPC64)"),
    (
        "c31c45e6-3f39-412e-80fb-4809c4980599",
        "Linux root (PPC64LE)",
    ),
    (
        "60d5a7fe-8e7d-435c-b714-3dd8162144e1",
        "Linux root (RISC-V-32)",
    ),
    (
        "72ec70a6-cf74-40e6-bd49-4bda08e8f224",
        "Linux root (RISC-V-64)",
    ),
    ("08a7acea-624c-4a20-91e8-6e0fa67d23f9", "Linux root (S390)"),
    ("5eead9a9-fe09-4a1e-a1d7-520d00531306", "Linux root (S390X)"),
    (
        "c50cdd70-3862-4cc3-90e1-809a8c93ee2c",
        "Linux root (TILE-Gx)",
    ),
    ("8da63339-0007-60c0-c436-083ac8230908", "Linux reserved"),
    ("933ac7e1-2eb4-4f13-b844-0e14e2aef915", "Linux home"),
    ("a19d880f-05fc-4d3b-a006-743f0f84911e", "Linux RAID"),
    ("e6d6d379-f507-44c2-a23c-238f2a3df928", "Linux LVM"),
    (
        "4d21b016-b534-45c2-a9fb-5c16e091fd2d",
        "Linux variable data",
    ),
    (
        "7ec6f557-3bc5-4aca-b293-16ef5df639d1",
        "Linux temporary data",
    ),
    ("75250d76-8cc6-458e-bd66-bd47cc81a812", "Linux /usr (x86)"),
    (
        "8484680c-9521-48c6-9c11-b0720656f69e",
        "Linux /usr (x86-64)",
    ),
    ("e18cf08c-33ec-4c0d-8246-c6c6fb3da024", "Linux /usr (Alpha)"),
    ("7978a683-6316-4922-bbee-38bff5a2fecc", "Linux /usr (ARC)"),
    ("7d0359a3-02b3-4f0a-865c-654403e70625", "Linux /usr (ARM)"),
    (
        "b0e01050-ee5f-4390-949a-9101b17104e9",
        "Linux /usr (ARM-64)",
    ),
    ("4301d2a6-4e3b-4b2a-bb94-9e0b2c4225ea", "Linux /usr (IA-64)"),
    (
        "e611c702-575c-4cbe-9a46-434fa0bf7e3f",
        "Linux /usr (LoongArch-64)",
    ),
    (
        "0f4868e9-9952-4706-979f-3ed3a473e947",
        "Linux /usr (MIPS-32 LE)",
    ),
    (
        "c97c1f32-ba06-40b4-9f22-236061b08aa8",
        "Linux /usr (MIPS-64 LE)",
    ),
    ("7d14fec5-cc71-415d-9d6c-06bf0b3c3eaf", "Linux /usr (PPC)"),
    ("2c9739e2-f068-46b3-9fd0-01c5a9afbcca", "Linux /usr (PPC64)"),
    (
        "15bb03af-77e7-4d4a-b12b-c0d084f7491c",
        "Linux /usr (PPC64LE)",
    ),
    (
        "b933fb22-5c3f-4f91-af90-e2bb0fa50702",
        "Linux /usr (RISC-V-32)",
    ),
    (
        "beaec34b-8442-439b-a40b-984381ed097d",
        "Linux /usr (RISC-V-64)",
    ),
    ("cd0f869b-d0fb-4ca0-b141-9ea87cc78d66", "Linux /usr (S390)"),
    ("8a4f5770-50aa-4ed3-874a-99b710db6fea", "Linux /usr (S390X)"),
    (
        "55497029-c7c1-44cc-aa39-815ed1558630",
        "Linux /usr (TILE-Gx)",
    ),
    (
        "d13c5d3b-b5d1-422a-b29f-9454fdc89d76",
        "Linux root verity (x86)",
    ),
    (
        "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5",
        "Linux root verity (x86-64)",
    ),
    (
        "fc56d9e9-e6e5-4c06-be32-e74407ce09a5",
        "Linux root verity (Alpha)",
    ),
    (
        "24b2d975-0f97-4521-afa1-cd531e421b8d",
        "Linux root verity (ARC)",
    ),
    (
        "7386cdf2-203c-47a9-a498-f2ecce45a2d6",
        "Linux root verity (ARM)",
    ),
    (
        "df3300ce-d69f-4c92-978c-9bfb0f38d820",
        "Linux root verity (ARM-64)",
    ),
    (
        "86ed10d5-b607-45bb-8957-d350f23d0571",
        "Linux root verity (IA-64)",
    ),
    (
        "f3393b22-e9af-4613-a948-9d3bfbd0c535",
        "Linux root verity (LoongArch-64)",
    ),
    (
        "d7d150d2-2a04-4a33-8f12-16651205ff7b",
        "Linux root verity (MIPS-32 LE)",
    ),
    (
        "16b417f8-3e06-4f57-8dd2-9b5232f41aa6",
        "Linux root verity (MIPS-64 LE)",
    ),
    (
        "98cfe649-1588-46dc-b2f0-add147424925",
        "Linux root verity (PPC)",
    ),
    (
        "9225a9a3-3c19-4d89-b4f6-eeff88f17631",
        "Linux root verity (PPC64)",
    ),
    (
        "906bd944-4589-4aae-a4e4-dd983917446a",
        "Linux root verity (PPC64LE)",
    ),
    (
        "ae0253be-1167-4007-ac68-43926c14c5de",
        "Linux root verity (RISC-V-32)",
    ),
    (
        "b6ed5582-440b-4209-b8da-5ff7c419ea3d",
        "Linux root verity (RISC-V-64)",
    ),
    (
        "7ac63b47-b25c-463b-8df8-b4a94e6c90e1",
        "Linux root verity (S390)",
    ),
    (
        "b325bfbe-c7be-4ab8-8357-139e652d2f6b",
        "Linux root verity (S390X)",
    ),
    (
        "966061ec-28e4-4b2e-b4a5-1f0a825a1d84",
        "Linux root verity (TILE-Gx)",
    ),
    (
        "8f461b0d-14ee-4e81-9aa9-049b6fb97abd",
        "Linux /usr verity (x86)",
    ),
    (
        "77ff5f63-e7b6-4633-acf4-1565b864c0e6",
        "Linux /usr verity (x86-64)",
    ),
    (
        "8cce0d25-c0d0-4a44-bd87-46331bf1df67",
        "Linux /usr verity (Alpha)",
    ),
    (
        "fca0598c-d880-4591-8c16-4eda05c7347c",
        "Linux /usr verity (ARC)",
    ),
    (
        "c215d751-7bcd-4649-be90-6627490a4c05",
        "Linux /usr verity (ARM)",
    ),
    (
        "6e11a4e7-fbca-4ded-b9e9-e1a512bb664e",
        "Linux /usr verity (ARM-64)",
    ),
    (
        "6a491e03-3be7-4545-8e38-83320e0ea880",
        "Linux /usr verity (IA-64)",
    ),
    (
        "f46b2c26-59ae-48f0-9106-c50ed47f673d",
        "Linux /usr verity (LoongArch-64)",
    ),
    (
        "46b98d8d-b55c-4e8f-aab3-37fca7f80752",
        "Linux /usr verity (MIPS-32 LE)",
    ),
    (
        "3c3d61fe-b5f3-414d-bb71-8739a694a4ef",
        "Linux /usr verity (MIPS-64 LE)",
    ),
    (
        "df765d00-270e-49e5-bc75-f47bb2118b09",
        "Linux /usr verity (PPC)",
    ),
    (
        "bdb528a5-a259-475f-a87d-da53fa736a07",
        "Linux /usr verity (PPC64)",
    ),
    (
        "ee2b9983-21e8-4153-86d9-b6901a54d1ce",
        "Linux /usr verity (PPC64LE)",
    ),
    (
        "cb1ee4e3-8cd0-4136-a0a4-aa61a32e8730",
        "Linux /usr verity (RISC-V-32)",
    ),
    (
        "8f1056be-9b05-47c4-81d6-be53128e5b54",
        "Linux /usr verity (RISC-V-64)",
    ),
    (
        "b663c618-e7bc-4d6d-90aa-11b756bb1797",
        "Linux /usr verity (S390)",
    ),
    (
        "31741cc4-1a2a-4111-a581-e00b447d2d06",
        "Linux /usr verity (S390X)",
    ),
    (
        "2fb4bf56-07fa-42da-8132-6b139f2026ae",
        "Linux /usr verity (TILE-Gx)",
    ),
    (
        "5996fc05-109c-48de-808b-23fa0830b676",
        "Linux root verity sign. (x86)",
    ),
    (
        "41092b05-9fc8-4523-994f-2def0408b176",
        "Linux root verity sign. (x86-64)",
    ),
    (
        "d46495b7-a053-414f-80f7-700c99921ef8",
        "Linux root verity sign. (Alpha)",
    ),
    (
        "143a70ba-cbd3-4f06-919f-6c05683a78bc",
        "Linux root verity sign. (ARC)",
    ),
    (
        "42b0455f-eb11-491d-98d3-56145ba9d037",
        "Linux root verity sign. (ARM)",
    ),
    (
        "6db69de6-29f4-4758-a7a5-962190f00ce3",
        "Linux root verity sign. (ARM-64)",
    ),
    (
        "e98b36ee-32ba-4882-9b12-0ce14655f46a",
        "Linux root verity sign. (IA-64)",
    ),
    (
        "5afb67eb-ecc8-4f85-ae8e-ac1e7c50e7d0",
        "Linux root verity sign. (LoongArch-64)",
    ),
    (
        "c919cc1f-4456-4eff-918c-f75e94525ca5",
        "Linux root verity sign. (MIPS-32 LE)",
    ),
    (
        "904e58ef-5c65-4a31-9c57-6af5fc7c5de7",
        "Linux root verity sign. (MIPS-64 LE)",
    ),
    (
        "1b31b5aa-add9-463a-b2ed-bd467fc857e7",
        "Linux root verity sign. (PPC)",
    ),
    (
        "f5e2c20c-45b2-4ffa-bce9-2a60737e1aaf",
        "Linux root verity sign. (PPC64)",
    ),
    (
        "d4a236e7-e873-4c07-bf1d-bf6cf7f1c3c6",
        "Linux root verity sign. (PPC64LE)",
    ),
    (
        "3a112a75-8729-4380-b4cf-764d79934448",
        "Linux root verity sign. (RISC-V-32)",
    ),
    (
        "efe0f087-ea8d-4469-821a-4c2a96a8386a",
        "Linux root verity sign. (RISC-V-64)",
    ),
    (
        "3482388e-4254-435a-a241-766a065f9960",
        "Linux root verity sign. (S390)",
    ),
    (
        "c80187a5-73a3-491a-901a-017c3fa953e9",
        "Linux root verity sign. (S390X)",
    ),
    (
        "b3671439-97b0-4a53-90f7-2d5a8f3ad47b",
        "Linux root verity sign. (TILE-Gx)",
    ),
    (
        "974a71c0-de41-43c3-be5d-5c5ccd1ad2c0",
        "Linux /usr verity sign. (x86)",
    ),
    (
        "e7bb33fb-06cf-4e81-8273-e543b413e2e2",
        "Linux /usr verity sign. (x86-64)",
    ),
    (
        "5c6e1c76-076a-457a-a0fe-f3b4cd21ce6e",
        "Linux /usr verity sign. (Alpha)",
    ),
    (
        "94f9a9a1-9971-427a-a400-50cb297f0f35",
        "Linux /usr verity sign. (ARC)",
    ),
    (
        "d7ff812f-37d1-4902-a810-d76ba57b975a",
        "Linux /usr verity sign. (ARM)",
    ),
    (
        "c23ce4ff-44bd-4b00-b2d4-b41b3419e02a",
        "Linux /usr verity sign. (ARM-64)",
    ),
    (
        "8de58bc2-2a43-460d-b14e-a76e4a17b47f",
        "Linux /usr verity sign. (IA-64)",
    ),
    (
        "b024f315-d330-444c-8461-44bbde524e99",
        "Linux /usr verity sign. (LoongArch-64)",
    ),
    (
        "3e23ca0b-a4bc-4b4e-8087-5ab6a26aa8a9",
        "Linux /usr verity sign. (MIPS-32 LE)",
    ),
    (
        "f2c2c7ee-adcc-4351-b5c6-ee9816b66e16",
        "Linux /usr verity sign. (MIPS-64 LE)",
    ),
    (
        "7007891d-d371-4a80-86a4-5cb875b9302e",
        "Linux /usr verity sign. (PPC)",
    ),
    (
        "0b888863-d7f8-4d9e-9766-239fce4d58af",
        "Linux /usr verity sign. (PPC64)",
    ),
    (
        "c8bfbd1e-268e-4521-8bba-bf314c399557",
        "Linux /usr verity sign. (PPC64LE)",
    ),
    (
        "c3836a13-3137-45ba-b583-b16c50fe5eb4",
        "Linux /usr verity sign. (RISC-V-32)",
    ),
    (
        "d2f9000a-7a18-453f-b5cd-4d32f77a7b32",
        "Linux /usr verity sign. (RISC-V-64)",
    ),
    (
        "17440e4f-a8d0-467f-a46e-3912ae6ef2c5",
        "Linux /usr verity sign. (S390)",
    ),
    (
        "3f324816-667b-46ae-86ee-9b0c0c6c11b4",
        "Linux /usr verity sign. (S390X)",
    ),
    (
        "4ede75e2-6ccc-4cc8-b9c7-70334b087510",
        "Linux /usr verity sign. (TILE-Gx)",
    ),
    (
        "7ffec5c9-2d00-49b7-8941-3ea10a5586b7",
        "Linux plain dm-crypt",
    ),
    ("ca7d7ccb-63ed-4c53-861c-1742536059cc", "Linux LUKS"),
    (
        "bc13c2ff-59e6-4262-a352-b275fd6f7172",
        "Linux extended boot",
    ),
    ("773f91ef-66d4-49b5-bd83-d683bf40ad16", "Linux user's home"),
    ("516e7cb4-6ecf-11d6-8ff8-00022d09712b", "FreeBSD data"),
    ("83bd6b9d-7f41-11dc-be0b-001560b84f0f", "FreeBSD boot"),
    ("516e7cb5-6ecf-11d6-8ff8-00022d09712b", "FreeBSD swap"),
    ("516e7cb6-6ecf-11d6-8ff8-00022d09712b", "FreeBSD UFS"),
    ("516e7cba-6ecf-11d6-8ff8-00022d09712b", "FreeBSD ZFS"),
    ("516e7cb8-6ecf-11d6-8ff8-00022d09712b", "FreeBSD Vinum"),
    ("48465300-0000-11aa-aa11-00306543ecac", "Apple HFS/HFS+"),
    ("7c3457ef-0000-11aa-aa11-00306543ecac", "Apple APFS"),
    ("55465300-0000-11aa-aa11-00306543ecac", "Apple UFS"),
    ("52414944-0000-11aa-aa11-00306543ecac", "Apple RAID"),
    ("52414944-5f4f-11aa-aa11-00306543ecac", "Apple RAID offline"),
    ("426f6f74-0000-11aa-aa11-00306543ecac", "Apple boot"),
    ("4c616265-6c00-11aa-aa11-00306543ecac", "Apple label"),
    ("5265636f-7665-11aa-aa11-00306543ecac", "Apple TV recovery"),
    ("53746f72-6167-11aa-aa11-00306543ecac", "Apple Core storage"),
    ("69646961-6700-11aa-aa11-00306543ecac", "Apple Silicon boot"),
    (
        "52637672-7900-11aa-aa11-00306543ecac",
        "Apple Silicon recovery",
    ),
    ("6a82cb45-1dd2-11b2-99a6-080020736631", "Solaris boot"),
    ("6a85cf4d-1dd2-11b2-99a6-080020736631", "Solaris root"),
    (
        "6a898cc3-1dd2-11b2-99a6-080020736631",
        "Solaris /usr & Apple ZFS",
    ),
    ("6a87c46f-1dd2-11b2-99a6-080020736631", "Solaris swap"),
    ("6a8b642b-1dd2-11b2-99a6-080020736631", "Solaris backup"),
    ("6a8ef2e9-1dd2-11b2-99a6-080020736631", "Solaris /var"),
    ("6a90ba39-1dd2-11b2-99a6-080020736631", "Solaris /home"),
    (
        "6a9283a5-1dd2-11b2-99a6-080020736631",
        "Solaris alternate sector",
    ),
    ("6a945a3b-1dd2-11b2-99a6-080020736631", "Solaris reserved 1"),
    ("6a9630d1-1dd2-11b2-99a6-080020736631", "Solaris reserved 2"),
    ("6a980767-1dd2-11b2-99a6-080020736631", "Solaris reserved 3"),
    ("6a96237f-1dd2-11b2-99a6-080020736631", "Solaris reserved 4"),
    ("6a8d2ac7-1dd2-11b2-99a6-080020736631", "Solaris reserved 5"),
    ("49f48d32-b10e-11dc-b99b-0019d1879648", "NetBSD swap"),
    ("49f48d5a-b10e-11dc-b99b-0019d1879648", "NetBSD FFS"),
    ("49f48d82-b10e-11dc-b99b-0019d1879648", "NetBSD LFS"),
    (
        "2db519c4-b10f-11dc-b99b-0019d1879648",
        "NetBSD concatenated",
    ),
    ("2db519ec-b10f-11dc-b99b-0019d1879648", "NetBSD encrypted"),
    ("49f48daa-b10e-11dc-b99b-0019d1879648", "NetBSD RAID"),
    ("fe3a2a5d-4f32-41a7-b725-accc3285a309", "ChromeOS kernel"),
    ("3cb8e202-3b7e-47dd-8a3c-7ff2a13cfcec", "ChromeOS root fs"),
    ("2e0a753d-9e48-43b0-8337-b15192cb1b5e", "ChromeOS reserved"),
    ("85d5e45a-237c-11e1-b4b3-e89a8f7fc3a7", "MidnightBSD data"),
    ("85d5e45e-237c-11e1-b4b3-e89a8f7fc3a7", "MidnightBSD boot"),
    ("85d5e45b-237c-11e1-b4b3-e89a8f7fc3a7", "MidnightBSD swap"),
    ("0394ef8b-237e-11e1-b4b3-e89a8f7fc3a7", "MidnightBSD UFS"),
    ("85d5e45d-237c-11e1-b4b3-e89a8f7fc3a7", "MidnightBSD ZFS"),
    ("85d5e45c-237c-11e1-b4b3-e89a8f7fc3a7", "MidnightBSD Vinum"),
    ("45b0969e-9b03-4f30-b4c6-b4b80ceff106", "Ceph Journal"),
    (
        "45b0969e-9b03-4f30-b4c6-5ec00ceff106",
        "Ceph Encrypted Journal",
    ),
    ("4fbd7e29-9d25-41b8-afd0-062c0ceff05d", "Ceph OSD"),
    ("4fbd7e29-9d25-41b8-afd0-5ec00ceff05d", "Ceph crypt OSD"),
    (
        "89c57f98-2fe5-4dc0-89c1-f3ad0ceff2be",
        "Ceph disk in creation",
    ),
    (
        "89c57f98-2fe5-4dc0-89c1-5ec00ceff2be",
        "Ceph crypt disk in creation",
    ),
    ("aa31e02a-400f-11db-9590-000c2911d1b8", "VMware VMFS"),
    ("9d275380-40ad-11db-bf97-000c2911d1b8", "VMware Diagnostic"),
    ("381cfccc-7288-11e0-92ee-000c2911d0b2", "VMware Virtual SAN"),
    ("77719a0c-a4a0-11e3-a47e-000c29745a24", "VMware Virsto"),
    ("9198effc-31c0-11db-8f78-000c2911d1b8", "VMware Reserved"),
    ("824cc7a0-36a8-11e3-890a-952519ad3f61", "OpenBSD data"),
    ("cef5a9ad-73bc-4601-89f3-cdeeeee321a1", "QNX6 file system"),
    ("c91818f9-8025-47af-89d2-f030d7000c2c", "Plan 9 partition"),
    ("5b193300-fc78-40cd-8002-e86c45580b47", "HiFive FSBL"),
    ("2e54b353-1271-4842-806f-e436d6af6985", "HiFive BBL"),
    ("42465331-3ba3-10f1-802a-4861696b7521", "Haiku BFS"),
    (
        "6828311a-ba55-42a4-bcde-a89bb5edecae",
        "Marvell Armada 3700 Boot partition",
    ),
];
