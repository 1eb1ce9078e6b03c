//! `ppsync demo` (product.md §9) — wired once the simulator crate lands.

#[derive(clap::Args, Debug)]
pub struct DemoArgs {}

pub async fn run(_args: DemoArgs) -> anyhow::Result<i32> {
    anyhow::bail!("the demo needs the simulator, which is not built into this binary yet")
}
