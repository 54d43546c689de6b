//! LVM's CRC-32 variant: the reflected IEEE polynomial (0xEDB88320), seeded
//! with 0xf597a6cf and without the final xor. lvm2 (lib/misc/crc.c) uses it for
//! the label, the metadata-area header and the metadata text; a running value
//! can be continued across pieces (text that wraps around the circular buffer).

/// lvm2's `INITIAL_CRC`.
pub const INITIAL_CRC: u32 = 0xf597_a6cf;

const fn table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static TABLE: [u32; 256] = table();

/// Continues the CRC `crc` over `data` (start with [`INITIAL_CRC`]).
pub fn crc_update(crc: u32, data: &[u8]) -> u32 {
    data.iter().fold(crc, |c, &b| {
        TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// The CRC of `data` from the initial seed.
pub fn lvm_crc(data: &[u8]) -> u32 {
    crc_update(INITIAL_CRC, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_the_seed_and_pieces_chain() {
        assert_eq!(lvm_crc(&[]), INITIAL_CRC);
        let data = b"vg_gold {\nid = \"x\"\n}\n";
        let (a, b) = data.split_at(7);
        assert_eq!(crc_update(lvm_crc(a), b), lvm_crc(data));
    }

    #[test]
    fn matches_zlib_crc32_relation() {
        // With seed 0xffffffff and a final xor this is the zlib CRC-32; check
        // that known vector so the table itself is proven right.
        let c = crc_update(0xffff_ffff, b"123456789") ^ 0xffff_ffff;
        assert_eq!(c, 0xcbf4_3926);
    }
}
