#![no_main]
//! Fuzzes the XFS log scan (journal::inspect's reader of the log): the
//! bytes are a log of 1024+ basic blocks placed after one 4 KiB block, with
//! a geometry taken from the first bytes (v1/v2, UUID). It must never panic,
//! loop or read outside the region.

use fsdetect::sig::xfs_log::{log_verdict, LogGeometry, BBSIZE, MIN_LOG_BBS};
use fsdetect::{MemSource, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let mut uuid = [0u8; 16];
    uuid.iter_mut().zip(rest.iter()).for_each(|(u, b)| *u = *b);
    // The log: the input repeated to at least the smallest accepted size,
    // so short inputs still reach the scan.
    let bbs = MIN_LOG_BBS + u64::from(flags >> 1) * 8;
    let len = (bbs * BBSIZE) as usize;
    let mut dev = vec![0u8; 4096 + len];
    if !rest.is_empty() {
        for (i, b) in dev[4096..].iter_mut().enumerate() {
            *b = rest[i % rest.len()];
        }
    }
    let src = MemSource::new(dev);
    let reader = Reader::new(&src);
    let g = LogGeometry {
        offset: 4096,
        bbs,
        v2: flags & 1 == 1,
        uuid,
    };
    let _ = log_verdict(&reader.whole(), &g);
});
