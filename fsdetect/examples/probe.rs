//! `probe IMG...`: prints `blkid -p -o udev IMG...`-equivalent output for each
//! path, concatenated like blkid does, and exits with the status of the last
//! path (0 found, 2 nothing, 8 ambivalent; 4 when a path cannot be probed).
//!
//! It exists so the benchmark can time fsdetect the way it times blkid: one
//! process per round, probing every image, until the `goldmount probe`
//! command is available to take its place.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut status = 2u8;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: probe IMAGE_OR_DEVICE...");
        return ExitCode::from(4);
    }
    for path in &paths {
        let report = fsdetect::FileSource::open(path).and_then(|src| fsdetect::probe_disk(&src));
        match report {
            Ok(report) => {
                let (text, rc) = fsdetect::udev::format_udev(&report);
                if out.write_all(text.as_bytes()).is_err() {
                    return ExitCode::from(4);
                }
                status = u8::try_from(rc).unwrap_or(4);
            }
            Err(e) => {
                eprintln!("{path}: {e}");
                status = 4;
            }
        }
    }
    if out.flush().is_err() {
        return ExitCode::from(4);
    }
    ExitCode::from(status)
}
