//! The command line (product.md §6): one thin function per subcommand over the library.
//! Exit codes: 0 everything done, 1 some resources skipped, 2 nothing could be done.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, Config};
use crate::progress::{Bars, print_pass};
use crate::resource::{self, Resource};
use crate::store::Store;
use crate::time::{Clock, SystemClock};
use crate::{app, report};

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
    /// Log as JSON lines (for the daemon)
    #[arg(long, global = true)]
    pub json_logs: bool,
    /// A registered firm (`ppsync firm list`) instead of the default one [env: PPSYNC_FIRM]
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
    /// Open tasks and events coming due, from the mirror
    Deadlines {
        /// How many days ahead
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long)]
        json: bool,
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
        Command::Report { last } => {
            let (cfg, store) = app::open(&load(&at)?).await?;
            let text = report::render(&store, &cfg, last).await?;
            write!(std::io::stdout().lock(), "{text}")?;
            Ok(0)
        }
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Probe { resources, json } => probe(load(&at)?, &resources, json).await,
        Command::Run => daemon(load(&at)?).await,
        Command::Deadlines { days, json } => deadlines(load(&at)?, days, json).await,
        Command::Notify(cmd) => notify(load(&at)?, cmd).await,
    }
}

async fn notify(cfg: Config, cmd: NotifyCommand) -> anyhow::Result<i32> {
    let (_, store) = app::open(&cfg).await?;
    match cmd {
        NotifyCommand::Retry { ids, all } => {
            let n = if all && !ids.is_empty() {
                bail!("pass notification ids or --all, not both");
            } else if all {
                store.outbox_retry(None, chrono::Utc::now()).await?
            } else if ids.is_empty() {
                bail!(
                    "name the notifications to retry (`ppsync status` lists the dead ones by id), or pass --all"
                );
            } else {
                // Every id is checked before any is changed: a typo changes nothing.
                let known = store.outbox_status(&ids).await?;
                for id in &ids {
                    match known.get(id).map(String::as_str) {
                        None => bail!(
                            "no notification {id:?}: `ppsync status` lists the dead ones by id"
                        ),
                        Some("dead") => {}
                        Some(other) => bail!(
                            "notification {id:?} is {other}, not dead: only dead notifications are retried"
                        ),
                    }
                }
                store.outbox_retry(Some(&ids), chrono::Utc::now()).await?
            };
            if n == 0 {
                outln!("no dead notifications");
            } else {
                outln!(
                    "{n} notification{} back in the queue: `ppsync run` sends {} within a minute",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "it" } else { "them" }
                );
            }
            Ok(0)
        }
    }
}

async fn daemon(cfg: Config) -> anyhow::Result<i32> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let home = app::open_home(&cfg).await?;
    let fleet_mode = cfg.firm.is_some() || !home.firms().await?.is_empty();
    // One daemon per mirror: a SQLite file (one instance serves all its firms), or PostgreSQL's
    // default firm (registered firms are claimed by the fleet's own locks).
    let _lock = if home.backend() == crate::store::Backend::Sqlite || !fleet_mode {
        Some(home.lock_runs().await?)
    } else {
        None
    };
    if fleet_mode {
        return fleet(cfg, home, clock).await;
    }
    let engine = app::engine_on(&cfg, home, clock.clone()).await?;
    let shutdown = engine.shutdown.clone();
    let listener = match cfg.http_listen {
        Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!(
                "http.listen {addr}: cannot listen there; pick a free address or set it to \"off\""
            )
        })?),
        None => None,
    };
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: finishing the page in flight");
        signals.cancel();
    });
    let daemon_cfg = cfg.daemon();
    if let Some(listener) = listener {
        let ctx = crate::status_http::StatusContext {
            store: engine.store.clone(),
            client: engine.client.clone(),
            schedule: daemon_cfg.schedule.clone(),
            clock: clock.clone(),
            token: cfg.http_token.clone(),
            hosts: crate::status_http::Hosts::from_config(&cfg),
            notify_window: cfg.notify.window,
        };
        let stop = shutdown.clone();
        eprintln!("status on http://{}/", listener.local_addr()?);
        tokio::spawn(async move {
            if let Err(e) = crate::status_http::serve(listener, ctx, stop).await {
                tracing::error!(error = %format!("{e:#}"), "status endpoint stopped");
            }
        });
    }
    let daemon = crate::daemon::Daemon {
        engine: engine.clone(),
        cfg: daemon_cfg,
        shutdown,
        observer: None,
    };
    daemon.run().await?;
    engine.store.close().await;
    Ok(0)
}

async fn firm_command(cfg: Config, cmd: FirmCommand) -> anyhow::Result<i32> {
    use secrecy::ExposeSecret;
    let home = app::open_home(&cfg).await?;
    match cmd {
        FirmCommand::Add {
            name,
            client_id,
            client_secret,
            settings,
        } => {
            check_firm_name(&name)?;
            if client_id.trim().is_empty() || client_secret.trim().is_empty() {
                bail!(
                    "--client-id and --client-secret must not be empty: they are the firm's PracticePanther API credentials"
                );
            }
            let settings = config::settings_from_pairs(&settings)?;
            // Refused here, not at the first sync: a bad key or value in the firm's settings.
            cfg.for_firm(&name, &client_id, &client_secret, &settings)?;
            let row = crate::store::FirmRow {
                name: name.clone(),
                client_id,
                client_secret: client_secret.into(),
                settings,
                created_at: String::new(),
            };
            if !home.add_firm(&row, chrono::Utc::now()).await? {
                bail!(
                    "firm `{name}` is already registered: `ppsync firm remove {name}` first to register it anew"
                );
            }
            let store = home.firm(&name).await?;
            outln!(
                "registered firm {name} (mirror: {}); next: ppsync --firm {name} auth login (or auth import --refresh-token T)",
                store.location()
            );
            Ok(0)
        }
        FirmCommand::List { json } => {
            let mut out = Vec::new();
            for f in home.firms().await? {
                let store = home.firm(&f.name).await?;
                let tokens = store.token_status().await?;
                let last = store.cycles_last().await?;
                out.push(serde_json::json!({
                    "name": f.name,
                    "client_id": f.client_id,
                    "client_secret_set": !f.client_secret.expose_secret().is_empty(),
                    "settings": config::redact_settings(&f.settings),
                    "registered_at": f.created_at,
                    "mirror": store.location(),
                    "credentials_stored": tokens.is_some(),
                    "last_cycle": last.map(|c| serde_json::json!({
                        "started_at": c.started_at, "finished_at": c.finished_at,
                        "outcome": c.outcome, "instance": c.instance, "requests": c.requests,
                    })),
                }));
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&out)?);
            } else if out.is_empty() {
                outln!(
                    "no firms registered: `ppsync firm add NAME --client-id ID --client-secret SECRET`"
                );
            } else {
                outln!(
                    "{:<20} {:<24} {:<12} {:<28} instance",
                    "firm",
                    "client_id",
                    "credentials",
                    "last cycle"
                );
                for f in &out {
                    let last = &f["last_cycle"];
                    outln!(
                        "{:<20} {:<24} {:<12} {:<28} {}",
                        f["name"].as_str().unwrap_or(""),
                        f["client_id"].as_str().unwrap_or(""),
                        if f["credentials_stored"] == true {
                            "stored"
                        } else {
                            "none"
                        },
                        format!(
                            "{} {}",
                            last["finished_at"]
                                .as_str()
                                .map(|s| s.get(..19).unwrap_or(s))
                                .unwrap_or("never"),
                            last["outcome"].as_str().unwrap_or("")
                        ),
                        last["instance"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(0)
        }
        FirmCommand::Remove { name } => {
            check_firm_name(&name)?;
            if !home.remove_firm(&name).await? {
                bail!(
                    "firm `{name}` is not registered: `ppsync firm list` shows the registered ones"
                );
            }
            outln!(
                "unregistered firm {name}; its mirror is kept ({}): drop it yourself when no longer needed",
                match home.backend() {
                    crate::store::Backend::Postgres => format!("schema {name}"),
                    crate::store::Backend::Sqlite => "its SQLite file".to_string(),
                }
            );
            Ok(0)
        }
    }
}

/// `ppsync run` with firms registered: every firm (or the one `--firm` names), shared with the
/// other instances on the same PostgreSQL database.
async fn fleet(cfg: Config, home: Store, clock: Arc<dyn Clock>) -> anyhow::Result<i32> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: finishing the pages in flight");
        signals.cancel();
    });
    let instance: Arc<str> = cfg
        .instance_name
        .clone()
        .unwrap_or_else(crate::fleet::Fleet::default_instance_name)
        .into();
    eprintln!(
        "serving {} as instance {instance} (database {})",
        match &cfg.firm {
            Some(f) => format!("firm {f}"),
            None => "every registered firm".to_string(),
        },
        home.location()
    );
    let serving = crate::fleet::Serving::default();
    if let Some(addr) = cfg.http_listen {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!(
                "http.listen {addr}: cannot listen there; pick a free address or set it to \"off\""
            )
        })?;
        eprintln!("status on http://{}/", listener.local_addr()?);
        let status = crate::status_http::FleetStatus {
            instance: instance.clone(),
            firms: serving.clone(),
            token: cfg.http_token.clone(),
            hosts: crate::status_http::Hosts::from_config(&cfg),
        };
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::status_http::serve_fleet(listener, status, stop).await {
                tracing::error!(error = %format!("{e:#}"), "status endpoint stopped");
            }
        });
    }
    let fleet = crate::fleet::Fleet {
        only: cfg.firm.clone(),
        base: cfg,
        home: home.clone(),
        clock,
        instance,
        shutdown,
        serving,
    };
    fleet.run().await?;
    home.close().await;
    Ok(0)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn deadlines(cfg: Config, days: u32, json: bool) -> anyhow::Result<i32> {
    let (_, store) = app::open(&cfg).await?;
    let now = chrono::Utc::now();
    let list = store
        .deadlines(now, now + chrono::Duration::days(i64::from(days)))
        .await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    if list.is_empty() {
        outln!("nothing open comes due in the next {days} days");
    }
    for d in &list {
        outln!(
            "{}  {:<5} {:<12} {:<50} {}",
            d.due.get(..16).unwrap_or(&d.due),
            d.kind,
            d.status.as_deref().unwrap_or(""),
            d.subject.as_deref().unwrap_or(""),
            d.matter.as_deref().unwrap_or("")
        );
    }
    Ok(0)
}

/// The config, for the firm `--firm` names.
fn load((config, firm): &(Option<PathBuf>, Option<String>)) -> anyhow::Result<Config> {
    let mut cfg = Config::load(config.as_deref())?;
    if let Some(name) = firm {
        check_firm_name(name)?;
        cfg.firm = Some(name.clone());
    }
    Ok(cfg)
}

fn check_firm_name(name: &str) -> anyhow::Result<()> {
    if !crate::store::valid_schema(name)
        || name == "public"
        || name.ends_with(crate::store::SECRETS_SUFFIX)
    {
        bail!(
            "firm name {name:?} is not allowed: use up to 40 lowercase letters, digits and _, starting with a letter (not public, pg_*, or ending in {})",
            crate::store::SECRETS_SUFFIX
        );
    }
    Ok(())
}

fn init(path: Option<PathBuf>, force: bool) -> anyhow::Result<i32> {
    let path = path
        .or_else(|| std::env::var_os("PPSYNC_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    let exists = || {
        anyhow::anyhow!(
            "{} already exists: edit it, or pass --force to overwrite it",
            path.display()
        )
    };
    if path.exists() && !force {
        return Err(exists());
    }
    // The file will hold the client secret (and maybe a webhook secret, the status token): it is
    // readable by its owner only from the moment it exists.
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts.open(&path).and_then(|mut f| {
        // An existing file (--force) keeps its mode when opened: made private before it is written.
        #[cfg(unix)]
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        f.write_all(config::TEMPLATE.as_bytes())
    });
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(exists()),
        r => r.with_context(|| {
            format!(
                "cannot write {}: choose a writable --config path",
                path.display()
            )
        })?,
    }
    outln!(
        "wrote {}: set client_id and client_secret, then run `ppsync auth login`",
        path.display()
    );
    Ok(0)
}

async fn auth(cfg: Config, cmd: AuthCommand) -> anyhow::Result<i32> {
    use crate::api::TokenStore;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (cfg, store) = app::open(&cfg).await?;
    match cmd {
        AuthCommand::Status => match store.token_status().await? {
            Some((expires, saved)) => {
                let left = expires - clock.now();
                outln!(
                    "credentials stored (saved {saved}); access token {} {}",
                    if left > chrono::Duration::zero() {
                        "expires"
                    } else {
                        "expired"
                    },
                    expires.to_rfc3339()
                );
                Ok(0)
            }
            None => bail!(
                "no credentials stored: run `ppsync auth login` or `ppsync auth import --refresh-token T`"
            ),
        },
        AuthCommand::Import { refresh_token } => {
            cfg.require_credentials()?;
            if refresh_token.trim().is_empty() {
                bail!("--refresh-token is empty: pass the refresh token PracticePanther issued");
            }
            let client = app::client(&cfg, &store, clock).await?;
            let tokens = client.redeem_refresh_token(refresh_token.trim()).await?;
            store.save(&tokens).await?;
            outln!(
                "refresh token accepted and stored; access token valid until {}",
                tokens.expires_at.to_rfc3339()
            );
            Ok(0)
        }
        AuthCommand::Login { paste } => {
            cfg.require_credentials()?;
            let client = app::client(&cfg, &store, clock).await?;
            let state = format!("{:032x}", rand::random::<u128>());
            let url = client.authorize_url(&cfg.redirect_uri, &state);
            let code = if paste {
                eprintln!(
                    "Open this URL, approve access, then paste the code (or the whole redirect URL):\n\n  {url}\n"
                );
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                code_from_input(line.trim(), &state)?
            } else {
                crate::login::wait_for_redirect(&cfg.redirect_uri, &url, &state).await?
            };
            let tokens = client.exchange_code(&code, &cfg.redirect_uri).await?;
            store.save(&tokens).await?;
            outln!("authorized; credentials stored in {}", store.location());
            Ok(0)
        }
    }
}

/// Accepts a bare code or a redirect URL carrying `code` (and then checks `state`).
fn code_from_input(input: &str, state: &str) -> anyhow::Result<String> {
    if input.is_empty() {
        bail!("no code given: paste the `code` from the redirect URL");
    }
    if let Ok(u) = url::Url::parse(input) {
        let get = |k: &str| {
            u.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.to_string())
        };
        if get("state").is_some_and(|s| s != state) {
            bail!(
                "the redirect's state does not match this login: start `ppsync auth login` again"
            );
        }
        return get("code")
            .context("the pasted URL has no `code` parameter: paste the whole redirect URL");
    }
    Ok(input.to_string())
}

/// Resolves `--resource` names (all enabled ones when empty).
pub fn select(cfg: &Config, names: &[String]) -> anyhow::Result<Vec<&'static Resource>> {
    if names.is_empty() {
        return Ok(cfg.enabled_resources());
    }
    names
        .iter()
        .map(|n| resource::find(n).ok_or_else(|| anyhow::anyhow!(resource::unknown(n))))
        .collect()
}

async fn sync(cfg: Config, args: SyncArgs) -> anyhow::Result<i32> {
    // Names are checked before the database is touched; the firm's own settings then decide.
    select(&cfg, &args.resources)?;
    if cfg.firm.is_none() {
        cfg.require_credentials()?;
    }
    let (cfg, store) = app::open(&cfg).await?;
    let resources = select(&cfg, &args.resources)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut engine = app::engine_on(&cfg, store, clock).await?;
    let bars = Bars::new();
    engine.progress = Some(bars.clone());
    let report = engine.pass(&resources, args.full, "cli").await;
    // The pass is committed: a closed stdout must not keep its errors off stderr or the store open.
    let mut printed = print_pass(&report);
    let mut code = report.exit_code();
    let details = engine.detail_resources(&resources);
    if !args.no_details && !details.is_empty() && report.fatal.is_none() {
        // Records whose list leaves fields out are read by id, on background budget.
        let d = engine.fetch_details(&details, None).await;
        if d.requests > 0 || d.left > 0 {
            printed = printed.and_then(|()| {
                writeln!(
                    std::io::stdout().lock(),
                    "by-id reads: {} stored, {} gone, {} failed, {} requests, {} still queued",
                    d.stored,
                    d.gone,
                    d.failed,
                    d.requests,
                    d.left
                )
            });
        }
        if let Some(e) = &d.error {
            eprintln!("by-id reads stopped: {e}");
            if d.fatal {
                code = 2;
            }
        }
    }
    if let Some(f) = &report.fatal {
        eprintln!("error: {f}");
    }
    for o in report.outcomes.iter().filter(|o| o.error.is_some()) {
        if report.fatal.as_deref() != o.error.as_deref() {
            // An incomplete listing wrote what it could reach; a skipped one wrote nothing.
            let what = if o.incomplete {
                "incomplete"
            } else {
                "skipped"
            };
            eprintln!(
                "{what} {}: {}",
                o.resource,
                o.error.as_deref().unwrap_or("")
            );
        }
    }
    engine.store.close().await;
    printed?;
    Ok(code)
}

async fn probe(cfg: Config, names: &[String], json: bool) -> anyhow::Result<i32> {
    select(&cfg, names)?;
    if cfg.firm.is_none() {
        cfg.require_credentials()?;
    }
    let (cfg, store) = app::open(&cfg).await?;
    let resources = select(&cfg, names)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = app::engine_on(&cfg, store, clock).await?;
    let report = crate::probe::run(&engine, &resources).await;
    engine.store.close().await;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        write!(
            std::io::stdout().lock(),
            "{}",
            crate::probe::render(&report)
        )?;
    }
    // An endpoint the probe could not reach at all is a failure to report (exit 1; 2 when none).
    let failed = report
        .endpoints
        .iter()
        .filter(|e| e.error.is_some())
        .count();
    Ok(match failed {
        0 => 0,
        n if n == report.endpoints.len() => 2,
        _ => 1,
    })
}

async fn status(cfg: Config, json: bool) -> anyhow::Result<i32> {
    let (_, store) = app::open(&cfg).await?;
    crate::status::text::print(&cfg, &store, json).await?;
    Ok(0)
}

async fn export(cfg: Config, args: ExportArgs) -> anyhow::Result<i32> {
    let res = resource::find(&args.resource)
        .ok_or_else(|| anyhow::anyhow!(resource::unknown(&args.resource)))?;
    let (_, store) = app::open(&cfg).await?;
    let store: Store = store;
    let out: Box<dyn Write> = match &args.output {
        Some(p) => Box::new(std::fs::File::create(p).with_context(|| {
            format!(
                "cannot write the export to {}: choose a writable --output path",
                p.display()
            )
        })?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = std::io::BufWriter::new(out);
    match args.format {
        Format::Jsonl => {
            store
                .export(res, args.include_deleted, |r| match &r.deleted_at {
                    Some(at) => {
                        let mut v: serde_json::Value =
                            serde_json::from_str(&r.data).map_err(std::io::Error::other)?;
                        if let Some(m) = v.as_object_mut() {
                            m.insert(
                                "_ppsync_deleted_at".into(),
                                serde_json::Value::String(at.clone()),
                            );
                        }
                        writeln!(out, "{v}")
                    }
                    None => writeln!(out, "{}", r.data),
                })
                .await?;
        }
        Format::Csv => {
            // Every cell quoted (OWASP's advice: a spreadsheet that splits on `;` or tabs
            // cannot start a new cell inside one), and each neutralised (`csv_cell`).
            let mut w = csv::WriterBuilder::new()
                .quote_style(csv::QuoteStyle::Always)
                .from_writer(&mut out);
            let mut header = vec!["id", "created_at", "updated_at", "deleted_at"];
            header.extend(res.columns.iter().map(|c| c.name));
            header.push("data");
            w.write_record(&header).map_err(csv_io)?;
            store
                .export(res, args.include_deleted, |r| {
                    let mut rec = vec![
                        r.id,
                        r.created_at.unwrap_or_default(),
                        r.updated_at.unwrap_or_default(),
                        r.deleted_at.unwrap_or_default(),
                    ];
                    rec.extend(r.columns.iter().map(|c| c.clone().unwrap_or_default()));
                    rec.push(r.data);
                    for cell in &rec {
                        w.write_field(csv_cell(cell).as_bytes()).map_err(csv_io)?;
                    }
                    w.write_record(None::<&[u8]>).map_err(csv_io)
                })
                .await?;
            w.flush()?;
        }
    }
    out.flush()?;
    Ok(0)
}

/// A cell a spreadsheet would run as a formula (OWASP, CSV injection: one starting with `=`, `+`,
/// `-`, `@`, a tab or a carriage return) gets a leading `'`, which makes it text; a plain number
/// (`-12.5`, `+3`, `-1e5`) is left as it is, since it runs nothing.
fn csv_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') if !plain_number(cell) => {
            format!("'{cell}").into()
        }
        _ => cell.into(),
    }
}

/// An optional sign, digits with at most one decimal point, and an optional exponent: what the
/// store writes for its numeric columns. Not `f64::from_str`, which takes `inf` and `NaN`.
fn plain_number(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    (!int.is_empty() || !frac.is_empty())
        && digits(int)
        && digits(frac)
        && exponent.is_none_or(|e| !e.is_empty() && digits(e))
}

/// A CSV error as the I/O error it wraps, if it is one (a closed pipe must stay recognisable).
fn csv_io(e: csv::Error) -> std::io::Error {
    if !e.is_io_error() {
        return std::io::Error::other(e);
    }
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_numbers_kept() {
        for (cell, want) in [
            ("=1+1", "'=1+1"),
            (
                "=HYPERLINK(\"http://evil.example\")",
                "'=HYPERLINK(\"http://evil.example\")",
            ),
            ("+1 (555) 010-0199", "'+1 (555) 010-0199"),
            ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
            ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("-", "'-"),
            ("--1", "'--1"),
            ("-1-1", "'-1-1"),
            ("-1e", "'-1e"),
            ("-.", "'-."),
            ("-1.2.3", "'-1.2.3"),
            ("-inf", "'-inf"),
            ("-NaN", "'-NaN"),
            ("+Infinity", "'+Infinity"),
            ("-0x10", "'-0x10"),
            ("-12.5", "-12.5"),
            ("-12", "-12"),
            ("+3", "+3"),
            ("-1e5", "-1e5"),
            ("-2.5E-3", "-2.5E-3"),
            ("-.5", "-.5"),
            ("12", "12"),
            ("a=b", "a=b"),
            (" =1", " =1"),
            ("{\"a\":\"=1\"}", "{\"a\":\"=1\"}"),
            ("", ""),
        ] {
            assert_eq!(csv_cell(cell), want, "{cell:?}");
        }
    }
}
