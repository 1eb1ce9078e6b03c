//! ppsync keeps a firm's PracticePanther data mirrored in its own database, incrementally.
//!
//! Component map (ARCHITECTURE.md has the invariants):
//! - [`resource`]: the one table of mirrored resources.
//! - [`api`]: the API client (tokens, budget, retry policy, streamed listings).
//! - [`record`]: a received record made ready for the store.
//! - [`store`]: the mirror's database (SQLite or PostgreSQL), migrations, state, run history, firms.
//! - [`sync`]: the engine: cursors, listings, paging, reconciliation.
//! - [`daemon`]: one firm's schedule; [`fleet`]: many firms over many instances (advisory locks).
//! - [`config`], [`cli`], [`demo`]: the application shell.

/// `println!` for a command's output, returning the write's error instead of panicking: a reader
/// that stops early (`ppsync status | head`) closes the pipe, and `main` ends quietly on that.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

pub mod api;
pub mod app;
pub mod calendar;
pub mod check;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod deadlines;
pub mod demo;
pub mod fleet;
pub mod logging;
mod login;
pub mod memory;
pub mod notify;
pub mod probe;
pub mod progress;
pub mod record;
pub mod report;
pub mod resource;
pub mod status;
pub mod store;
pub mod sync;
pub mod tap;
pub mod time;
