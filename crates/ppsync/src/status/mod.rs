//! A mirror's status: one typed [`Snapshot`] read from the store, and its renderings — the CLI's
//! table and JSON ([`text`]), the HTTP endpoint's `/status`, `/healthz` and routes ([`http`]), the
//! HTML page ([`page`]) and `/metrics` ([`metrics`]). The JSON names are the snapshot's field
//! names everywhere.

pub mod http;
pub mod metrics;
pub mod page;
pub mod snapshot;
pub mod text;

pub use http::{FleetStatus, Hosts, StatusContext, serve, serve_fleet};
pub use snapshot::Snapshot;
