//! Records boot and scenario times in BENCHMARKS.md under the lab's own
//! section, leaving every other section as it is.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::boot::BootReport;
use super::plan::GuestResults;

/// Our section's heading; everything up to the next `## ` belongs to us.
pub const SECTION: &str = "## Lab: boot and scenario times";

/// Rewrites the lab section of `<ws>/BENCHMARKS.md` with this run's figures
/// when the run was the whole default set; a filtered run writes its table
/// to `<out>/times.md` instead, so that running one scenario does not
/// replace the table of all of them.
pub fn record(
    ws: &Path,
    out: &Path,
    scenarios: &[String],
    results: &GuestResults,
    report: &BootReport,
    filters: &[String],
) -> Result<()> {
    let path = if filters.is_empty() {
        ws.join("BENCHMARKS.md")
    } else {
        out.join("times.md")
    };
    let old = std::fs::read_to_string(&path).unwrap_or_else(|_| "# Benchmarks\n".to_string());
    let mut sec = String::new();
    let _ = writeln!(sec, "{SECTION}\n");
    let _ = writeln!(
        sec,
        "Command: `cargo xtask lab{}{}` (QEMU TCG, 2 vCPU, 2 GiB, Debian 6.1 kernel via virtme-ng; host: 2 cores).",
        if filters.is_empty() { "" } else { " " },
        filters.join(" ")
    );
    let _ = writeln!(
        sec,
        "TCG timing is noisy: compare ratios within one boot, not absolute times across runs.\n"
    );
    let _ = writeln!(sec, "| step | seconds | result |\n|---|---:|---|");
    let boot = report
        .boot_secs
        .map_or("-".to_string(), |s| format!("{s:.1}"));
    let _ = writeln!(sec, "| boot (vng start → guest runner) | {boot} | |");
    let _ = writeln!(
        sec,
        "| guest setup (modules, configfs, udevd, iscsid) | {:.1} | {} |",
        results.setup_secs,
        results.setup_error.as_deref().map_or("ok", |_| "FAILED")
    );
    for name in scenarios {
        match results.scenarios.iter().find(|r| &r.name == name) {
            Some(r) => {
                let _ = writeln!(
                    sec,
                    "| {name} | {:.1} | {} |",
                    r.secs,
                    if r.passed { "pass" } else { "FAIL" }
                );
            }
            None => {
                let _ = writeln!(sec, "| {name} | - | did not run |");
            }
        }
    }
    let _ = writeln!(
        sec,
        "| whole run (vng start → exit) | {:.1} | |",
        report.wall_secs
    );
    let new = replace_section(&old, &sec);
    std::fs::write(&path, new).with_context(|| format!("writing {}", path.display()))
}

fn replace_section(doc: &str, section: &str) -> String {
    let Some(start) = doc.find(SECTION) else {
        let mut s = doc.trim_end().to_string();
        s.push_str("\n\n");
        s.push_str(section);
        return s;
    };
    let after = &doc[start + SECTION.len()..];
    let end = after
        .find("\n## ")
        .map_or(doc.len(), |i| start + SECTION.len() + i + 1);
    format!("{}{}\n{}", &doc[..start], section, &doc[end..])
        .trim_end()
        .to_string()
        + "\n"
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn replaces_only_our_section() {
        let doc = format!("# B\n\n## Other\nx\n\n{SECTION}\n\nold\n\n## Later\ny\n");
        let new = replace_section(&doc, &format!("{SECTION}\n\nnew\n"));
        assert!(new.contains("## Other\nx"));
        assert!(new.contains("new"));
        assert!(!new.contains("old"));
        assert!(new.contains("## Later\ny"));
    }

    #[test]
    fn appends_when_missing() {
        let new = replace_section("# B\n", &format!("{SECTION}\n\nnew\n"));
        assert!(new.starts_with("# B\n\n## Lab"));
    }
}
