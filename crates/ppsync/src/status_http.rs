//! The daemon's HTTP status endpoint, under the name its callers use; it lives in
//! [`crate::status::http`].

pub(crate) use crate::status::http::same_bytes;
pub use crate::status::http::{FleetStatus, Hosts, StatusContext, serve, serve_fleet};
pub(crate) use crate::status::page::esc;
