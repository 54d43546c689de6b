//! `probe IMG...`: prints what `blkid -p -o udev IMG...` (util-linux 2.38)
//! prints: each path's values, a blank line between paths, and like blkid it
//! stops at the first path where nothing (2) or an ambivalent result (8) is
//! found, exiting with that status (0 when every path had a result; 4 when a
//! path cannot be probed).
//!
//! It exists so the benchmark can time fsdetect the way it times blkid, one
//! process per run, where the `goldmount probe` command is not available.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let paths: Vec<String> = std::env::args().skip(1).collect();
    if paths.is_empty() {
        eprintln!("usage: probe IMAGE_OR_DEVICE...");
        return ExitCode::from(4);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut printed_any = false;
    let mut status = 0u8;
    for path in &paths {
        let report = fsdetect::FileSource::open(path).and_then(|src| fsdetect::probe_disk(&src));
        let report = match report {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{path}: {e}");
                status = 4;
                break;
            }
        };
        let (text, rc) = fsdetect::udev::format_udev(&report);
        if !text.is_empty() {
            let sep: &[u8] = if printed_any { b"\n" } else { b"" };
            if out.write_all(sep).is_err() || out.write_all(text.as_bytes()).is_err() {
                return ExitCode::from(4);
            }
            printed_any = true;
        }
        status = u8::try_from(rc).unwrap_or(4);
        if status != 0 {
            break;
        }
    }
    if out.flush().is_err() {
        return ExitCode::from(4);
    }
    ExitCode::from(status)
}
