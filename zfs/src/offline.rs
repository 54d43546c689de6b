//! Changing a clone pool's GUID before the kernel sees it, through the
//! `goldmount-zfs-reguid` helper (libzpool in its own process): what lets a
//! clone be imported while its gold, or another clone that kept the gold's
//! GUID, is imported on this host (openzfs/zfs#11404).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Result, ZfsError};

/// The helper's program name; installed next to `goldmount`.
pub const HELPER: &str = "goldmount-zfs-reguid";

/// Environment variable naming the helper explicitly (tests, packagers).
pub const HELPER_ENV: &str = "GOLDMOUNT_ZFS_REGUID";

/// libzpool's import reads every label and may replay the intent log, then
/// syncs twice: as slow as a kernel import.
const TIMEOUT: Duration = Duration::from_secs(600);

/// What the helper did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reguided {
    /// The pool's name on its labels (unchanged).
    pub pool: String,
    /// The GUID before (the gold's).
    pub old_guid: u64,
    /// The GUID the clone's labels carry now.
    pub new_guid: u64,
}

/// Where the helper is: [`HELPER_ENV`], else next to this program (or one
/// directory up, for test binaries under `target/*/deps`), else on `PATH`.
pub fn helper_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(HELPER_ENV) {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            dirs.push(d.to_path_buf());
            if let Some(up) = d.parent() {
                dirs.push(up.to_path_buf());
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|d| d.join(HELPER))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Gives the pool with GUID `guid` on exactly `devices` a new GUID, with the
/// pool exported before and after. `holder` is the imported pool that holds
/// `guid` (for the error message). Writes only to `devices`.
pub fn reguid_offline(devices: &[PathBuf], guid: u64, holder: &str) -> Result<Reguided> {
    let err = |why: String| ZfsError::OfflineReguid {
        guid,
        holder: holder.to_string(),
        why,
    };
    let helper = helper_path().ok_or_else(|| {
        err(format!(
            "{HELPER} was not found next to this program or on PATH; install goldmount's binaries together"
        ))
    })?;
    let helper_s = helper.to_string_lossy().into_owned();
    let guid_s = guid.to_string();
    let dev_s: Vec<String> = devices
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    let mut args: Vec<&str> = vec!["--guid", &guid_s];
    for d in &dev_s {
        args.extend(["--device", d.as_str()]);
    }
    tracing::info!(guid, devices = ?dev_s, holder, "changing the clone pool's GUID before import");
    let out = toolrun::run(&helper_s, &args, TIMEOUT).map_err(|e| match e {
        toolrun::ToolError::Failed {
            stderr,
            status,
            stdout,
            ..
        } => {
            let said = stderr.trim().trim_start_matches("goldmount-zfs-reguid: ");
            err(if said.is_empty() {
                format!(
                    "{HELPER} ended with {status} and said nothing (stdout {:?})",
                    stdout.trim()
                )
            } else {
                said.to_string()
            })
        }
        other => err(other.to_string()),
    })?;
    parse_output(&out.stdout).ok_or_else(|| {
        err(format!(
            "{HELPER} printed {:?}, not {{\"pool\":…,\"old_guid\":…,\"new_guid\":…}}",
            out.stdout.trim()
        ))
    })
}

/// Parses the helper's one line of JSON.
fn parse_output(s: &str) -> Option<Reguided> {
    #[derive(serde::Deserialize)]
    struct Line {
        pool: String,
        old_guid: u64,
        new_guid: u64,
    }
    let l: Line = serde_json::from_str(s.trim()).ok()?;
    Some(Reguided {
        pool: l.pool,
        old_guid: l.old_guid,
        new_guid: l.new_guid,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_the_helpers_line() {
        let r = parse_output(
            "{\"pool\":\"tank \\\"x\\\"\",\"old_guid\":1,\"new_guid\":18446744073709551615}\n",
        )
        .unwrap();
        assert_eq!(r.pool, "tank \"x\"");
        assert_eq!((r.old_guid, r.new_guid), (1, u64::MAX));
        assert!(parse_output("imported\n").is_none());
    }
}
