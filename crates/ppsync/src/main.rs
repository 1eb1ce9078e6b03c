//! The `ppsync` binary: parse, set up logging, run, map the outcome to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    ppsync::memory::cap_malloc_arenas();
    let cli = ppsync::cli::Cli::parse();
    // Both reqwest (TLS) and sqlx link aws-lc-rs; installing it explicitly avoids the
    // "cannot determine the CryptoProvider" panic if another provider ever joins the graph.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // The daemon logs its cycles (info), the demo warnings; a one-shot command reports its own outcome on
    // stderr (one `error:` line, `skipped R:` lines), so by default only errors are logged beside
    // it (product.md §10); PPSYNC_LOG shows more.
    let level = match cli.command {
        ppsync::cli::Command::Run => "info",
        ppsync::cli::Command::Demo(_) => "warn",
        _ => "error",
    };
    let format = match ppsync::logging::log_format(
        cli.json_logs,
        std::env::var_os("PPSYNC_LOG_FORMAT").as_deref(),
    ) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = std::env::var("PPSYNC_LOG")
        .unwrap_or_else(|_| format!("{level},sqlx::postgres::notice=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("warn")))
        .with_writer(std::io::stderr);
    match format {
        ppsync::logging::LogFormat::Json => builder.json().init(),
        ppsync::logging::LogFormat::Text => builder
            .with_ansi(ppsync::logging::colours(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").as_deref(),
            ))
            .init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(ppsync::cli::run(cli)) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        // The reader of our output went away (`ppsync status | head`): its choice, not a failure.
        Err(e)
            if e.downcast_ref::<std::io::Error>().map(std::io::Error::kind)
                == Some(std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!(
                "error: {}",
                msg.split_whitespace().collect::<Vec<_>>().join(" ")
            );
            ExitCode::from(2)
        }
    }
}
