#![no_main]
//! Fuzzes the MBR/GPT readers (512- and 4096-byte sectors) and the whole-disk
//! probe built on them: no panic, no endless extended-partition chain.

use fsdetect::{probe_disk, table, MemSource, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for sector in [512u32, 4096] {
        let src = MemSource::with_sector_size(data.to_vec(), sector);
        let reader = Reader::new(&src);
        let _ = table::read_table(&reader.whole());
    }
    let _ = probe_disk(&MemSource::new(data.to_vec()));
});
