//! Skeleton binary: says it is not built yet instead of pretending to work.

fn main() -> std::process::ExitCode {
    eprintln!("goldmount-executor: not implemented yet (see the attach issue)");
    std::process::ExitCode::from(1)
}
