//! CRC32 (IEEE, for GPT) and CRC32C (Castagnoli, for ext4/xfs/btrfs/LUKS2
//! metadata), table-driven and std-only.

const fn make_table(poly: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { poly ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC32_TABLE: [u32; 256] = make_table(0xEDB8_8320);
static CRC32C_TABLE: [u32; 256] = make_table(0x82F6_3B78);

fn update(table: &[u32; 256], mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// Standard CRC-32 (zlib/GPT): initial value and final xor 0xFFFFFFFF.
pub fn crc32(data: &[u8]) -> u32 {
    !update(&CRC32_TABLE, !0, data)
}

/// lvm2's `INITIAL_CRC`: the seed of LVM's CRC-32 variant.
pub const LVM_INITIAL_CRC: u32 = 0xf597_a6cf;

/// LVM's CRC-32 (lvm2 `calc_crc`, copied by libblkid): the reflected IEEE
/// polynomial without pre/post inversion, continued from `crc` (start with
/// [`LVM_INITIAL_CRC`]) so text that wraps a circular buffer can be chained.
pub fn lvm_crc_update(crc: u32, data: &[u8]) -> u32 {
    update(&CRC32_TABLE, crc, data)
}

/// Raw CRC-32C update without pre/post inversion, for formats that seed it
/// themselves (ext4 uses seed !0 and no final xor; btrfs/xfs use the standard form).
pub fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    update(&CRC32C_TABLE, seed, data)
}

/// Standard CRC-32C (iSCSI/btrfs/xfs): initial value and final xor 0xFFFFFFFF.
pub fn crc32c(data: &[u8]) -> u32 {
    !crc32c_raw(!0, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32(b""), 0);
    }
}
