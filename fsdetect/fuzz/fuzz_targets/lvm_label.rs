#![no_main]
//! Fuzzes the LVM2 label + PV header parser directly (first 4 sectors).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fsdetect::sig::lvm2::parse_label(data);
});
