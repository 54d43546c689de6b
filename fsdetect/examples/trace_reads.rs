//! `trace_reads [--sector-size N] IMG...`: probes each image and prints every
//! read that reached it (offset, length), then the totals. For tuning the
//! read plan (`fsdetect::sig::read_plan`) against real images.

use std::cell::RefCell;
use std::process::ExitCode;

use fsdetect::{BlockSource, FileSource};

/// A source that records the reads it serves.
struct Traced {
    inner: FileSource,
    log: RefCell<Vec<(u64, usize)>>,
}

impl BlockSource for Traced {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> fsdetect::Result<()> {
        self.log.borrow_mut().push((offset, buf.len()));
        self.inner.read_exact_at(offset, buf)
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn logical_sector_size(&self) -> u32 {
        self.inner.logical_sector_size()
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut ssz = None;
    if args.first().map(String::as_str) == Some("--sector-size") && args.len() > 1 {
        ssz = args[1].parse::<u32>().ok();
        args.drain(..2);
    }
    for path in &args {
        let src = match FileSource::open(path) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{path}: {e}");
                return ExitCode::from(4);
            }
        };
        let src = match ssz {
            Some(n) => src.with_sector_size(n),
            None => src,
        };
        let t = Traced {
            inner: src,
            log: RefCell::new(Vec::new()),
        };
        match fsdetect::probe_disk(&t) {
            Ok(r) => {
                println!("{path}: size {} -> {:?}", t.size(), r.io);
                for (off, len) in t.log.borrow().iter() {
                    println!(
                        "  {off:>12} +{len:<9} [{:#x}..{:#x})",
                        off,
                        off + *len as u64
                    );
                }
            }
            Err(e) => println!("{path}: error {e}"),
        }
    }
    ExitCode::SUCCESS
}
