//! Times full listings of the seed-scale firm over HTTP:
//! `cargo run -p ppsim --release --example bench_listing`.

use std::time::Instant;

use ppsim::{Sim, SimConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let t = Instant::now();
    let sim = Sim::spawn(SimConfig {
        budget_limit: 0,
        ..SimConfig::default()
    })
    .await?;
    println!("firm built in {:.2?}: {:?}", t.elapsed(), sim.counts());
    let http = reqwest::Client::new();
    let pair: serde_json::Value = http
        .post(format!("{}/oauth/token", sim.url()))
        .form(&[
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", sim.grant()),
            ("client_id", sim.client_id()),
            ("client_secret", sim.client_secret()),
        ])
        .send()
        .await?
        .json()
        .await?;
    let tok = pair["access_token"].as_str().unwrap_or_default().to_owned();
    for path in ["accounts", "contacts", "matters", "tasks", "invoices"] {
        let mut best = f64::MAX;
        let mut bytes = 0;
        let mut records = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let body = http
                .get(format!("{}/api/v2/{path}", sim.url()))
                .bearer_auth(&tok)
                .send()
                .await?
                .bytes()
                .await?;
            best = best.min(t.elapsed().as_secs_f64());
            bytes = body.len();
            records = serde_json::from_slice::<Vec<serde_json::Value>>(&body)?.len();
        }
        println!(
            "GET /api/v2/{path:<9} {records:>6} records {:>6.1} MB  best of 5: {:>6.1} ms",
            bytes as f64 / 1e6,
            best * 1e3
        );
    }
    Ok(())
}
