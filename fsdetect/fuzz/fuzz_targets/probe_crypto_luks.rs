#![no_main]
//! Fuzzes the `crypto_LUKS` prober on arbitrary bytes as a whole device and as a
//! region: it must never panic, loop or read outside the region.

use fsdetect::{sig, MemSource, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(info) = sig::idinfo("crypto_LUKS") else { return };
    let src = MemSource::new(data.to_vec());
    let reader = Reader::new(&src);
    let _ = (info.probe)(&reader.whole());
    if data.len() > 1024 {
        if let Ok(w) = reader.region(512, data.len() as u64 - 1024) {
            let _ = (info.probe)(&w);
        }
    }
});
