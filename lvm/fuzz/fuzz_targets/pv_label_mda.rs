#![no_main]
//! Fuzzes the whole on-disk path: label + PV header, metadata-area headers,
//! circular-buffer text reads, checksums and the text parser, with the input
//! as the device (`read_pv`), plus the label and mda-header parsers directly.

use libfuzzer_sys::fuzz_target;
use lvm::metadata::{parse_label, parse_mda_header, DiskArea};

fuzz_target!(|data: &[u8]| {
    let _ = parse_label(data);
    let _ = parse_mda_header(data, DiskArea { offset: 0, size: data.len() as u64 });
    let _ = lvm::read_pv(&fsdetect::MemSource::new(data.to_vec()));
});
