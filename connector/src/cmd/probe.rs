//! `goldmount probe`: what is on a disk, read-only, in blkid's vocabulary.
//!
//! `--format udev` reproduces `blkid -p -o udev` byte for byte so the two can
//! be diffed — for a partition device that includes its entry in the disk's
//! table (`ID_PART_ENTRY_*`, found through sysfs as blkid finds it); `--json`
//! prints the whole tree (table, partitions, signatures, I/O counts); the
//! default is a short human-readable tree.
//!
//! Devices are read with the kernel's read-ahead off (see
//! [`fsdetect::ReadMode`]): on a LUN with a large optimal I/O size, read-ahead
//! turned 22 small reads into 16 MiB on the wire.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use fsdetect::{Content, DiskReport, FileSource, PartEntry, ProbeError, ReadMode};
use serde::Serialize;

/// Output formats of `goldmount probe`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// A short tree for people.
    Text,
    /// `ID_FS_*` / `ID_PART_TABLE_*` lines exactly like `blkid -p -o udev`.
    Udev,
    /// The whole tree as JSON, with I/O counts.
    Json,
}

/// Arguments of `goldmount probe`.
#[derive(Args, Debug)]
#[command(
    after_help = "Exit status (like blkid -p): 0 something was found on every path; \
2 nothing was found on at least one path; 8 a path holds ambivalent signatures \
(refuse to mount it; see wipefs(8)); 1 a path could not be probed (no such file, \
not a file or block device, permission denied, read error).\n\
Probing opens devices read-only and never writes."
)]
pub struct ProbeArgs {
    /// Block devices or image files.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Same as `--format json`.
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// Logical sector size for image files (block devices report their own).
    #[arg(long, value_name = "BYTES", value_parser = parse_sector_size)]
    sector_size: Option<u32>,
    /// Probe only the region starting at this byte offset (like blkid -O).
    #[arg(long, value_name = "BYTES")]
    offset: Option<u64>,
    /// Length of the region to probe (like blkid -S); default: to the end.
    #[arg(long, value_name = "BYTES")]
    size: Option<u64>,
    /// How block devices are read, for measurements: no-read-ahead (the
    /// default, POSIX_FADV_RANDOM), direct (O_DIRECT) or read-ahead (the
    /// kernel's read-ahead, as before).
    #[arg(long, value_enum, default_value_t = IoMode::NoReadAhead, hide = true)]
    io: IoMode,
}

/// `--io`: [`fsdetect::ReadMode`] on the command line.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum IoMode {
    NoReadAhead,
    Direct,
    ReadAhead,
}

impl From<IoMode> for ReadMode {
    fn from(m: IoMode) -> Self {
        match m {
            IoMode::NoReadAhead => ReadMode::NoReadAhead,
            IoMode::Direct => ReadMode::Direct,
            IoMode::ReadAhead => ReadMode::ReadAhead,
        }
    }
}

fn parse_sector_size(s: &str) -> std::result::Result<u32, String> {
    match s.parse::<u32>() {
        Ok(v) if (512..=65536).contains(&v) && v.is_power_of_two() => Ok(v),
        _ => Err(format!(
            "expected a power of two between 512 and 65536, got {s:?}"
        )),
    }
}

/// One probed path in `--json` output.
#[derive(Serialize)]
struct JsonEntry<'a> {
    path: &'a std::path::Path,
    #[serde(flatten)]
    report: &'a DiskReport,
    /// The device's entry in its disk's table, when it is a partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    partition_entry: Option<&'a PartEntry>,
}

/// One probed path: what is on it and, for a partition device, its entry.
struct Probed {
    report: DiskReport,
    entry: Option<PartEntry>,
}

/// Status of one path, ordered by severity for the combined exit code.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Found = 0,
    Nothing = 2,
    Ambivalent = 8,
    Error = 1,
}

impl Status {
    fn rank(self) -> u8 {
        match self {
            Status::Found => 0,
            Status::Nothing => 1,
            Status::Ambivalent => 2,
            Status::Error => 3,
        }
    }
}

fn probe_path(args: &ProbeArgs, path: &std::path::Path) -> Result<Probed, ProbeError> {
    let mut src = FileSource::open_with(path, args.io.into())?;
    if let (Some(ss), false) = (args.sector_size, src.is_block_device()) {
        src = src.with_sector_size(ss);
    }
    let report = match (args.offset, args.size) {
        (None, None) => fsdetect::probe_disk(&src)?,
        (off, size) => {
            let off = off.unwrap_or(0);
            let total = fsdetect::BlockSource::size(&src);
            let size = size.unwrap_or_else(|| total.saturating_sub(off));
            // A region is not a partition device: no entry, as blkid -O/-S.
            return Ok(Probed {
                report: fsdetect::probe_region(&src, off, size)?,
                entry: None,
            });
        }
    };
    // Like blkid, a partition whose entry cannot be found is still probed:
    // the entry is extra information, so say why and go on without it.
    let entry = match src.devno().map(fsdetect::entry::partition_entry) {
        Some(Ok(e)) => e,
        Some(Err(e)) => {
            eprintln!(
                "goldmount probe: {}: its partition table entry cannot be read: {e}",
                path.display()
            );
            None
        }
        None => None,
    };
    Ok(Probed { report, entry })
}

/// Runs `goldmount probe` and maps the results to blkid-style exit codes.
pub fn run(args: &ProbeArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("goldmount probe: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run_inner(args: &ProbeArgs) -> Result<u8> {
    let format = if args.json { Format::Json } else { args.format };
    let mut worst = Status::Found;
    let mut reports = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut printed_any = false;
    for path in &args.paths {
        let status = match probe_path(args, path) {
            Ok(Probed { report, entry }) => {
                let status = match &report.content {
                    Content::Ambivalent { .. } => Status::Ambivalent,
                    _ if report.found_anything() || entry.is_some() => Status::Found,
                    _ => Status::Nothing,
                };
                match format {
                    Format::Udev => {
                        let (text, _) =
                            fsdetect::udev::format_udev_with_entry(&report, entry.as_ref());
                        if !text.is_empty() {
                            if printed_any {
                                writeln!(out)?;
                            }
                            out.write_all(text.as_bytes())?;
                            printed_any = true;
                        }
                    }
                    Format::Text => {
                        out.write_all(render_text(path, &report, entry.as_ref()).as_bytes())?;
                    }
                    Format::Json => reports.push((path.clone(), report, entry)),
                }
                status
            }
            Err(e) => {
                eprintln!("goldmount probe: {e}");
                Status::Error
            }
        };
        if status.rank() > worst.rank() {
            worst = status;
        }
    }
    if format == Format::Json {
        let entries: Vec<JsonEntry<'_>> = reports
            .iter()
            .map(|(p, r, e)| JsonEntry {
                path: p,
                report: r,
                partition_entry: e.as_ref(),
            })
            .collect();
        serde_json::to_writer_pretty(&mut out, &entries).context("writing JSON")?;
        writeln!(out)?;
    }
    out.flush()?;
    Ok(worst as u8)
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn describe(content: &Content) -> String {
    match content {
        Content::Empty => "(no signature)".to_string(),
        Content::Found { signature } => {
            let mut s = signature.fs_type.clone();
            for key in ["LABEL", "UUID", "VERSION"] {
                if let Some(v) = signature.get_str(key) {
                    s.push_str(&format!(" {key}=\"{v}\""));
                }
            }
            s
        }
        Content::Ambivalent { signatures } => {
            let names: Vec<&str> = signatures.iter().map(|s| s.fs_type.as_str()).collect();
            format!("AMBIVALENT: {} (will not be mounted)", names.join(" + "))
        }
    }
}

/// "partition 2 of disk 8:16 (gpt "data", 21111111-…)".
fn describe_entry(e: &PartEntry) -> String {
    let mut s = format!(
        "partition {} of disk {}:{} ({}",
        e.number, e.disk.0, e.disk.1, e.scheme
    );
    if let Some(n) = &e.name {
        s.push_str(&format!(" \"{n}\""));
    }
    if let Some(u) = &e.uuid {
        s.push_str(&format!(" {u}"));
    }
    s.push(')');
    s
}

fn render_text(path: &std::path::Path, r: &DiskReport, entry: Option<&PartEntry>) -> String {
    let mut s = format!("{}: {} ", path.display(), human_size(r.size));
    if let Some(e) = entry {
        s.push_str(&describe_entry(e));
        s.push_str(", ");
    }
    match &r.table {
        Some(t) => {
            s.push_str(&format!(
                "{} table{}",
                t.kind.as_str(),
                t.uuid.as_ref().map(|u| format!(" {u}")).unwrap_or_default()
            ));
            if let Some(h) = t.gpt_header {
                s.push_str(&format!(" ({h:?} header)").to_lowercase());
            }
            if r.content != Content::Empty {
                s.push_str(&format!(", whole device: {}", describe(&r.content)));
            }
            s.push('\n');
            for w in &t.warnings {
                s.push_str(&format!("  warning: {w}\n"));
            }
            for p in &r.partitions {
                let part = &p.partition;
                s.push_str(&format!(
                    "  {:>3}  start {:>10}  size {:>10}  {:<22}",
                    part.number,
                    human_size(part.start),
                    human_size(part.size),
                    part.type_name
                        .clone()
                        .unwrap_or_else(|| format!("{:?}", part.part_type)),
                ));
                if let Some(n) = &part.name {
                    s.push_str(&format!(" \"{n}\""));
                }
                match (&part.problem, &p.content) {
                    (Some(problem), _) => s.push_str(&format!("  NOT PROBED: {problem}")),
                    (None, Some(c)) => s.push_str(&format!("  {}", describe(c))),
                    (None, None) => s.push_str("  (container)"),
                }
                s.push('\n');
            }
        }
        None => {
            s.push_str(&describe(&r.content));
            s.push('\n');
        }
    }
    s.push_str(&format!(
        "  [{} reads, {} bytes]\n",
        r.io.read_calls, r.io.bytes_read
    ));
    s
}
