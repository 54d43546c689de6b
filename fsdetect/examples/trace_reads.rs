//! `trace_reads [--sector-size N] IMG...`: probes each image and prints every
//! read that reached it (offset, length), then the totals. For tuning the
//! read plan (`fsdetect::sig::read_plan`) against real images.

use std::process::ExitCode;

use fsdetect::{BlockSource, FileSource, TracedSource};

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
        let t = TracedSource::new(src);
        match fsdetect::probe_disk(&t) {
            Ok(r) => {
                println!("{path}: size {} -> {:?}", t.size(), r.io);
                for (off, len) in t.reads() {
                    println!(
                        "  {off:>12} +{len:<9} [{:#x}..{:#x})",
                        off,
                        off + len as u64
                    );
                }
            }
            Err(e) => println!("{path}: error {e}"),
        }
    }
    ExitCode::SUCCESS
}
