//! Skeleton binary: says it is not built yet instead of pretending to work.

fn main() -> std::process::ExitCode {
    eprintln!("goldmount-appliance: not implemented yet");
    std::process::ExitCode::from(1)
}
