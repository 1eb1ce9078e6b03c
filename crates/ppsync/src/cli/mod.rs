//! The command line (product.md §6): the clap types and the dispatch; each subcommand's thin
//! function over the library is in the module named after it.
//! Exit codes: 0 everything done, 1 some resources skipped, 2 nothing could be done.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod auth;
mod check;
mod deadlines;
mod export;
mod firm;
mod generated;
mod health;
mod init;
mod notify;
mod report;
mod run;
mod status;
mod sync;

pub use sync::select;

use auth::auth;
use deadlines::deadlines;
use export::export;
use firm::{firm_command, load};
use health::health;
use init::init;
use notify::notify;
use report::report;
use run::daemon;
use status::status;
use sync::{probe, sync};

#[derive(Parser, Debug)]
#[command(
    name = "ppsync",
    version,
    about = "Mirror a firm's PracticePanther data into its own database, incrementally"
)]
pub struct Cli {
    /// Configuration file [default: ppsync.toml, or $PPSYNC_CONFIG]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log as JSON lines (for the daemon; or PPSYNC_LOG_FORMAT=json)
    #[arg(long, global = true)]
    pub json_logs: bool,
    /// A registered firm (`ppsync firm list`) instead of the default one
    #[arg(long, global = true, value_name = "NAME", env = "PPSYNC_FIRM")]
    pub firm: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write an annotated configuration file
    Init {
        /// Overwrite an existing file
        #[arg(long)]
        force: bool,
    },
    /// Authorize ppsync with PracticePanther
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Run one pass now
    Sync(SyncArgs),
    /// Show each resource's cursor, counts and last run
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print a resource's stored records, sorted by id
    Export(ExportArgs),
    /// Requests and records per pass, against what a full pull would cost
    Report {
        /// Only the last N passes
        #[arg(long)]
        last: Option<usize>,
    },
    /// The daemon: every resource on its tier, daily reconciliation, notifications, /status
    Run,
    /// Deadlines coming due (open tasks, events, matters' statute and custom date fields), in
    /// the firm's time zone, from the mirror
    Deadlines {
        /// How many days ahead (with --overdue: back)
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long, conflicts_with = "ics")]
        json: bool,
        /// Print an iCalendar feed (one event per deadline, stable UIDs) instead of a table; the
        /// daemon serves the same at /deadlines.ics
        #[arg(long)]
        ics: bool,
        /// Only this kind (a source's name: "Task", "Event", "45 Day Deadline", ...)
        #[arg(long)]
        kind: Option<String>,
        /// Only matters whose name contains this (or with this id)
        #[arg(long)]
        matter: Option<String>,
        /// Only deadlines assigned to a user whose name contains this
        #[arg(long)]
        user: Option<String>,
        /// Deadlines already past instead (open tasks still not completed, ...)
        #[arg(long)]
        overdue: bool,
    },
    /// Start an in-process simulator, backfill it, run a simulated day, print the report
    Demo(crate::demo::DemoArgs),
    /// Measure the live API's dialect, endpoint by endpoint (page caps, which OData options it
    /// honours, how updated_since compares), in at most 6 requests an endpoint; stores it
    Probe {
        /// Only these resources (repeatable); default: every enabled resource
        #[arg(long = "resource", value_name = "R")]
        resources: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Register, list or unregister firms (many firms in one database)
    #[command(subcommand)]
    Firm(FirmCommand),
    /// Notifications set aside as dead (listed by `ppsync status`)
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Ask the running daemon's status endpoint a health route: exit 0 on 200 (for probes)
    Health {
        /// /livez (the process serves), /readyz (backfilled, nothing behind) or /healthz
        #[arg(long, default_value = "/livez", value_name = "PATH")]
        route: String,
    },
    /// Print a shell completion script (e.g. `ppsync completions bash > /etc/bash_completion.d/ppsync`)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, ppsync(1), in roff
    Man,
    /// The mirror as a Singer tap: SCHEMA, RECORD and STATE messages on stdout (--config: the
    /// tap's JSON, {"ppsync_config": PATH, "settle_seconds": N}, or ppsync's TOML)
    Tap(crate::tap::TapArgs),
    /// Check the set-up: config, database, credentials (one API request), notification sinks;
    /// then print the settings in force, secrets hidden. Exit 0 only when all pass
    Check {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum NotifyCommand {
    /// Send dead notifications again: back to pending, with their full number of tries
    Retry {
        /// Notification ids (as `ppsync status` lists them)
        #[arg(value_name = "ID")]
        ids: Vec<String>,
        /// Every dead notification
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum FirmCommand {
    /// Register a firm: its API credentials and any settings of its own
    Add {
        /// Lowercase letters, digits and _ (it names the firm's PostgreSQL schema or SQLite file)
        name: String,
        #[arg(long, env = "PPSYNC_FIRM_CLIENT_ID", value_name = "ID")]
        client_id: String,
        #[arg(
            long,
            env = "PPSYNC_FIRM_CLIENT_SECRET",
            value_name = "SECRET",
            hide_env_values = true
        )]
        client_secret: String,
        /// A config key for this firm only, e.g. budget.requests=200 or schedule.high=30m (repeatable)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        settings: Vec<String>,
    },
    /// The registered firms, with their token and sync state
    List {
        #[arg(long)]
        json: bool,
    },
    /// Unregister a firm (its mirror is kept; `ppsync run` stops serving it)
    Remove { name: String },
}

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Authorization-code flow: open the printed URL; the redirect is caught on loopback
    Login {
        /// Paste the code (or the whole redirect URL) instead of listening for the redirect
        #[arg(long)]
        paste: bool,
    },
    /// Store a refresh token obtained elsewhere (it is redeemed at once, proving it works)
    Import {
        #[arg(long, value_name = "T")]
        refresh_token: String,
    },
    /// Whether credentials are stored, and when the access token expires
    Status,
}

#[derive(Args, Debug)]
pub struct SyncArgs {
    /// Only these resources (repeatable); default: every enabled resource
    #[arg(long = "resource", value_name = "R")]
    pub resources: Vec<String>,
    /// Complete listings: repairs anything missed and marks vanished records deleted
    #[arg(long)]
    pub full: bool,
    /// Leave the by-id reads of emails and payments queued (the daemon works them off)
    #[arg(long)]
    pub no_details: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Resource (table) name, e.g. matters or call_logs
    pub resource: String,
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Include records marked deleted (jsonl: they carry `_ppsync_deleted_at`)
    #[arg(long)]
    pub include_deleted: bool,
    /// Write to this file instead of stdout
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// An error that maps to an exit code (2 unless said otherwise).
#[derive(Debug)]
pub struct Exit(pub i32);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}
impl std::error::Error for Exit {}

pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let at = (cli.config.clone(), cli.firm.clone());
    match cli.command {
        Command::Init { force } => init(cli.config, force),
        Command::Auth(cmd) => auth(load(&at)?, cmd).await,
        Command::Sync(args) => sync(load(&at)?, args).await,
        Command::Status { json } => status(load(&at)?, json).await,
        Command::Export(args) => export(load(&at)?, args).await,
        Command::Firm(cmd) => firm_command(load(&at)?, cmd).await,
        Command::Report { last } => report(load(&at)?, last).await,
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Probe { resources, json } => probe(load(&at)?, &resources, json).await,
        Command::Run => daemon(load(&at)?).await,
        Command::Deadlines {
            days,
            json,
            ics,
            kind,
            matter,
            user,
            overdue,
        } => {
            let filter = deadlines::Filter {
                days,
                kind,
                matter,
                user,
                overdue,
            };
            let format = match (json, ics) {
                (true, _) => deadlines::Format::Json,
                (_, true) => deadlines::Format::Ics,
                _ => deadlines::Format::Table,
            };
            deadlines(load(&at)?, filter, format).await
        }
        Command::Notify(cmd) => notify(load(&at)?, cmd).await,
        Command::Health { route } => health(load(&at)?, &route).await,
        Command::Completions { shell } => generated::completions(shell),
        Command::Man => generated::man(),
        Command::Tap(args) => {
            let tap = crate::tap::TapConfig::resolve(at.0.as_deref())?;
            let at = (tap.ppsync_config, at.1.or(tap.firm));
            crate::tap::run(load(&at)?, tap.settle, args).await
        }
        Command::Check { json } => check::check(&at, json).await,
    }
}
