#![no_main]
//! Fuzzes the XDR nvlist decoder of ZFS vdev labels directly.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fsdetect::sig::zfs::parse_nvlist(data);
});
