//! Times the change generator: `cargo run -p ppsim --release --example bench_advance`.
use std::time::{Duration, Instant};

use ppsim::{Sim, SimConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sim = Sim::spawn(SimConfig {
        budget_limit: 0,
        ..SimConfig::default()
    })
    .await?;
    let mut total = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        let s = sim.advance(Duration::from_secs(900));
        let e = t.elapsed();
        total += e;
        if i < 3 {
            println!("advance {i}: {e:.2?} {s:?}");
        }
    }
    println!(
        "20 advances of 15 min: {total:.2?}, {:.1?} each",
        total / 20
    );
    Ok(())
}
