//! The contract between the host half and the guest half of the lab: a plan
//! the host writes into the results dir, and the results the guest writes back.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Line prefix the guest prints on the console so the host can time the boot
/// and follow progress without waiting for the results file.
pub const MARKER: &str = "GOLDMOUNT-LAB";

/// What the guest must run.
#[derive(Debug, Serialize, Deserialize)]
pub struct Plan {
    /// Scenario test binaries (built on the host, run in the guest as is),
    /// by test-target name (`lab`, `lab_iscsi`, …).
    pub test_bins: Vec<(String, PathBuf)>,
    /// Extra binaries the scenarios need, passed as environment variables.
    pub env: Vec<(String, String)>,
    /// Scenarios as `<test target>::<exact test name>`, run one process
    /// each, in this order.
    pub scenarios: Vec<String>,
    /// Seconds each scenario may take before it is killed.
    pub scenario_timeout_secs: u64,
    /// The `--rwdir` folder: logs and `results.json` go here.
    pub results_dir: PathBuf,
}

/// One scenario's outcome.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScenarioResult {
    /// Exact test name.
    pub name: String,
    /// `true` only if the test binary exited 0 and ran exactly that test.
    pub passed: bool,
    /// Wall seconds inside the guest.
    pub secs: f64,
    /// Why it failed (exit status, timeout), empty when it passed.
    pub detail: String,
    /// Log file name inside the results dir.
    pub log: String,
}

/// Everything the guest reports back.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GuestResults {
    /// Seconds spent on guest setup (modules, configfs, daemons).
    pub setup_secs: f64,
    /// Setup failure, if any (then no scenario ran).
    pub setup_error: Option<String>,
    /// Per-scenario outcomes, in run order.
    pub scenarios: Vec<ScenarioResult>,
}
