//! `ppsim`: run the PracticePanther v2 simulator standalone.

use clap::Parser;
use ppsim::{Sim, SimConfig};

/// An independent simulator of the PracticePanther v2 REST API.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 8750)]
    port: u16,
    /// Seed of the firm and of the change generator.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Size of the firm: 1.0 = the seed firm (11,171 accounts).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Requests allowed per 5 simulated minutes (0 = unlimited).
    #[arg(long, default_value_t = 300)]
    budget: u32,
    /// Sim clock at start (RFC 3339); default 2026-11-02T14:00:00Z.
    #[arg(long)]
    start: Option<String>,
    /// How many firms to serve, each with its own data, credentials, tokens and budget.
    #[arg(long, default_value_t = 1)]
    firms: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg = SimConfig {
        seed: args.seed,
        scale: args.scale,
        budget_limit: args.budget,
        firms: args.firms,
        ..SimConfig::default()
    };
    if let Some(s) = args.start {
        cfg.start = chrono::DateTime::parse_from_rfc3339(&s)
            .map_err(|e| anyhow::anyhow!("--start {s:?} is not RFC 3339: {e}"))?
            .with_timezone(&chrono::Utc);
    }
    let t = std::time::Instant::now();
    let sim = Sim::bind(cfg, ([127, 0, 0, 1], args.port).into()).await?;
    let url = sim.url();
    println!(
        "ppsim listening on {url} ({} firm{} built in {:.1?})",
        sim.firms(),
        if sim.firms() == 1 { "" } else { "s" },
        t.elapsed()
    );
    let mut first = None;
    for firm in sim.all_firms() {
        let counts = firm.counts();
        println!();
        println!(
            "firm {}: {} accounts, {} contacts, {} matters, {} tasks, {} invoices",
            firm.index(),
            counts["accounts"],
            counts["contacts"],
            counts["matters"],
            counts["tasks"],
            counts["invoices"]
        );
        println!("  client_id:     {}", firm.client_id());
        println!("  client_secret: {}", firm.client_secret());
        let token = firm.grant();
        println!("  refresh_token: {token}");
        first.get_or_insert(token);
    }
    let token = first.unwrap_or_else(|| sim.grant());
    let (id, secret) = (sim.client_id(), sim.client_secret());
    println!();
    println!("# get an access token (firm 0), then list matters changed since a time:");
    println!(
        "curl -s -X POST {url}/oauth/token -d grant_type=refresh_token -d refresh_token={token} \\\n  -d client_id={id} -d client_secret={secret}"
    );
    println!(
        "curl -s -H \"Authorization: Bearer $ACCESS\" '{url}/api/v2/matters?updated_since=2026-11-01T00:00:00Z&$top=5'"
    );
    println!("# a new refresh token any time: curl -s -X POST '{url}/_sim/grant?firm=0'");
    tokio::signal::ctrl_c().await?;
    sim.shutdown();
    Ok(())
}
