//! `cargo xtask demo|test|lab|bench`: the project's automation entry points.
//! This file only dispatches; each subcommand lives in its own module.
//!
//! Before a subcommand that builds the workspace runs, the build
//! prerequisites (`prereqs::BUILD_PACKAGES`: the C headers and libclang the
//! iscsi build script needs) are installed here, in one place, so that the
//! README's commands work on a fresh Debian 12 with nothing else run first.
//! xtask itself needs none of them: its dependency tree is pure Rust.

use anyhow::{bail, Result};

mod bench;
mod demo;
/// The sample gold disk, shared with the connector's host tests.
#[path = "../../tests/src/golddisk.rs"]
mod golddisk;
mod lab;
mod prereqs;
mod test;

const USAGE: &str = "usage: cargo xtask demo|test|lab|bench [ARGS…]
  demo    [--direct]: the main job end to end on this machine (the one-call
          flow; --direct: `goldmount mount` by hand, without goldmountd)
  test    [--no-lab] [--no-lint]: everything CI runs
  lab     [--install] [--zfs] [--bench] [SCENARIO…]: the real-kernel lab
  bench   [probe|mount|all]: the benchmarks of BENCHMARKS.md
demo, test, bench and `lab --install` first install the build prerequisites
with apt-get: {BUILD}";

/// Errors print as one chain of causes, never with a backtrace: CI keeps
/// only the end of the console, and that space belongs to the reason.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmd {
    Demo,
    Test,
    Lab,
    Bench,
}

/// What one invocation does, in order: the steps are run front to back, so
/// a test can check that the install comes before the subcommand's builds.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Print the usage and stop.
    Usage,
    /// `prereqs::ensure_apt` of these packages.
    Apt(&'static [&'static str]),
    /// The subcommand itself (which runs the cargo builds).
    Run(Cmd),
}

/// Whether the arguments only ask a subcommand for its usage: then nothing
/// is installed, so `--help` works on any machine and as any user.
fn asks_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "-h" || a == "--help")
}

/// Whether `cmd args…` will build the workspace and is one of the README's
/// commands that promise to install what they need. `lab` installs only
/// with `--install` (the guest side, `lab --guest`, never does).
fn installs_build_prereqs(cmd: Cmd, args: &[String]) -> bool {
    if asks_help(args) {
        return false;
    }
    match cmd {
        Cmd::Demo | Cmd::Test | Cmd::Bench => true,
        Cmd::Lab => args.iter().any(|a| a == "--install"),
    }
}

/// The steps of `cargo xtask ARGS…`.
fn plan(args: &[String]) -> Result<Vec<Step>> {
    let cmd = match args.first().map(String::as_str) {
        Some("demo") => Cmd::Demo,
        Some("test") => Cmd::Test,
        Some("lab") => Cmd::Lab,
        Some("bench") => Cmd::Bench,
        Some("-h" | "--help" | "help") => return Ok(vec![Step::Usage]),
        Some(cmd) => bail!("unknown subcommand {cmd:?}\n{}", usage()),
        None => bail!("{}", usage()),
    };
    let mut steps = Vec::new();
    if installs_build_prereqs(cmd, &args[1..]) {
        steps.push(Step::Apt(prereqs::BUILD_PACKAGES));
    }
    steps.push(Step::Run(cmd));
    Ok(steps)
}

fn usage() -> String {
    USAGE.replace("{BUILD}", &prereqs::BUILD_PACKAGES.join(" "))
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or_default();
    for step in plan(&args)? {
        match step {
            Step::Usage => println!("{}", usage()),
            Step::Apt(packages) => prereqs::ensure_apt(packages)?,
            Step::Run(Cmd::Demo) => demo::main(rest)?,
            Step::Run(Cmd::Test) => test::main(rest)?,
            Step::Run(Cmd::Lab) => lab::main(rest)?,
            Step::Run(Cmd::Bench) => bench::main(rest)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn steps(line: &str) -> Vec<Step> {
        let args: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        plan(&args).unwrap()
    }

    /// Every README command that builds the workspace installs the build
    /// prerequisites first: the install step is there, and it precedes the
    /// subcommand (which is where every `cargo build/test/clippy` runs).
    #[test]
    fn build_prereqs_come_before_every_building_command() {
        for (line, cmd) in [
            ("demo", Cmd::Demo),
            ("test", Cmd::Test),
            ("test --no-lab", Cmd::Test),
            ("test --no-lab --no-lint", Cmd::Test),
            ("lab --install", Cmd::Lab),
            ("lab --install --zfs lab_zfs", Cmd::Lab),
            ("lab lab_iscsi --install", Cmd::Lab),
            ("bench", Cmd::Bench),
            ("bench mount", Cmd::Bench),
            ("bench probe", Cmd::Bench),
        ] {
            assert_eq!(
                steps(line),
                [Step::Apt(prereqs::BUILD_PACKAGES), Step::Run(cmd)],
                "cargo xtask {line}"
            );
        }
    }

    /// Help installs nothing; the lab without `--install` (and its guest
    /// side) leaves the host's packages alone, as its usage says.
    #[test]
    fn help_and_the_plain_lab_install_nothing() {
        assert_eq!(steps("--help"), [Step::Usage]);
        assert_eq!(steps("-h"), [Step::Usage]);
        assert_eq!(steps("test --help"), [Step::Run(Cmd::Test)]);
        assert_eq!(steps("lab --install -h"), [Step::Run(Cmd::Lab)]);
        assert_eq!(steps("lab"), [Step::Run(Cmd::Lab)]);
        assert_eq!(steps("lab --guest /x/plan.json"), [Step::Run(Cmd::Lab)]);
    }

    #[test]
    fn unknown_or_missing_subcommand_is_a_usage_error() {
        let e = plan(&["frobnicate".to_string()]).unwrap_err().to_string();
        assert!(e.contains("unknown subcommand \"frobnicate\""), "{e}");
        assert!(e.contains("usage: cargo xtask"), "{e}");
        let e = plan(&[]).unwrap_err().to_string();
        assert!(e.contains("libopeniscsiusr-dev"), "{e}");
    }
}
