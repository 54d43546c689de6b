//! LVM's CRC-32 variant: the reflected IEEE polynomial (0xEDB88320), seeded
//! with 0xf597a6cf and without the final xor. lvm2 (lib/misc/crc.c) uses it for
//! the label, the metadata-area header and the metadata text; a running value
//! can be continued across pieces (text that wraps around the circular buffer).

/// lvm2's `INITIAL_CRC`.
pub use fsdetect::checksum::LVM_INITIAL_CRC as INITIAL_CRC;

/// Continues the CRC `crc` over `data` (start with [`INITIAL_CRC`]).
pub use fsdetect::checksum::lvm_crc_update as crc_update;

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
