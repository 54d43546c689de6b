#![no_main]
//! Fuzzes LVM's text-format parser and the VG model built from it.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = lvm::parse_metadata_text(&text);
});
