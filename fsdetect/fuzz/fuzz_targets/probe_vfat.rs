#![no_main]
//! Fuzzes the `vfat` prober on arbitrary bytes as a whole device and as a
//! region (with its dependent reads planned): it must never panic, loop or
//! read outside the region.

use fsdetect::{sig, MemSource, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(info) = sig::idinfo("vfat") else { return };
    let src = MemSource::new(data.to_vec());
    let reader = Reader::new(&src);
    let _ = (info.probe)(&reader.whole());
    // Its dependent-read planning, from the boot sector the probe cached.
    if let Some(plan) = info.plan {
        reader.whole().plan(&plan(&reader.whole()));
    }
    if data.len() > 1024 {
        if let Ok(w) = reader.region(512, data.len() as u64 - 1024) {
            let _ = (info.probe)(&w);
            if let Some(plan) = info.plan {
                w.plan(&plan(&w));
                let _ = (info.probe)(&w);
            }
        }
    }
});
