//! The `goldmount` command line.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("not written yet")
}
