//! `ppsim`: run the PracticePanther v2 simulator standalone.

use clap::Parser;
use ppsim::{DialectPatch, Opt, Sim, SimConfig, Since};

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
    /// Size of each firm: 1.0 = the seed firm (11,171 accounts).
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
    /// Silent server-driven page size of every list (`none` = uncapped, invoices too; default:
    /// only invoices, 2500).
    #[arg(long, value_name = "N|none")]
    page_cap: Option<Cap>,
    /// `$top` on every endpoint that takes parameters: honour, ignore or reject (400).
    #[arg(long, value_name = "honour|ignore|reject")]
    top: Option<Opt>,
    /// `$skip` likewise.
    #[arg(long, value_name = "honour|ignore|reject")]
    skip: Option<Opt>,
    /// `$orderby` likewise.
    #[arg(long, value_name = "honour|ignore|reject")]
    orderby: Option<Opt>,
    /// How `updated_since` filters: `>=`, `>`, or not at all.
    #[arg(long, value_name = "inclusive|exclusive|ignore")]
    updated_since: Option<Since>,
    /// Send 429s without a `Retry-After` header.
    #[arg(long)]
    no_retry_after: bool,
    /// Move the clock only by `POST /_sim/advance` (no real time flows): a client whose clock
    /// follows the simulator's (a soak, a bench) sees simulated days pass in seconds.
    #[arg(long)]
    frozen_clock: bool,
}

/// `--page-cap`: a record count, or `none` for uncapped.
#[derive(Clone, Copy, Debug)]
struct Cap(Option<usize>);

impl std::str::FromStr for Cap {
    type Err = String;

    fn from_str(s: &str) -> Result<Cap, String> {
        if s.trim().eq_ignore_ascii_case("none") {
            return Ok(Cap(None));
        }
        s.trim()
            .parse()
            .map(|n| Cap(Some(n)))
            .map_err(|_| format!("{s:?} is not a record count or `none`"))
    }
}

impl Args {
    /// The dialect the flags ask for, laid over every endpoint at spawn.
    fn dialect(&self) -> DialectPatch {
        DialectPatch {
            page_cap: self.page_cap.map(|c| c.0),
            top: self.top,
            skip: self.skip,
            orderby: self.orderby,
            updated_since: self.updated_since,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut cfg = SimConfig {
        seed: args.seed,
        scale: args.scale,
        budget_limit: args.budget,
        firms: args.firms,
        dialect: args.dialect(),
        retry_after: !args.no_retry_after,
        frozen_clock: args.frozen_clock,
        ..SimConfig::default()
    };
    if let Some(s) = args.start {
        cfg.start = chrono::DateTime::parse_from_rfc3339(&s)
            .map_err(|e| anyhow::anyhow!("--start {s:?} is not RFC 3339: {e}"))?
            .with_timezone(&chrono::Utc);
    }
    if !cfg.dialect.is_empty() || !cfg.retry_after {
        println!(
            "dialect: {} retry_after={}",
            serde_json::to_string(&cfg.dialect)?,
            cfg.retry_after
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_flags() {
        let a = Args::try_parse_from(["ppsim"]).unwrap();
        assert!(a.dialect().is_empty());
        assert!(!a.no_retry_after);
        let a = Args::try_parse_from([
            "ppsim",
            "--page-cap",
            "100",
            "--top",
            "reject",
            "--skip",
            "Ignore",
            "--orderby",
            "honour",
            "--updated-since",
            "exclusive",
            "--no-retry-after",
        ])
        .unwrap();
        assert_eq!(
            a.dialect(),
            DialectPatch {
                page_cap: Some(Some(100)),
                top: Some(Opt::Reject),
                skip: Some(Opt::Ignore),
                orderby: Some(Opt::Honour),
                updated_since: Some(Since::Exclusive),
            }
        );
        assert!(a.no_retry_after);
        let a = Args::try_parse_from(["ppsim", "--page-cap", "none"]).unwrap();
        assert_eq!(a.dialect().page_cap, Some(None));
        assert!(Args::try_parse_from(["ppsim", "--top", "maybe"]).is_err());
        assert!(Args::try_parse_from(["ppsim", "--page-cap", "-1"]).is_err());
    }
}
