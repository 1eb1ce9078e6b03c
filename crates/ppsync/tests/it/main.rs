//! End-to-end tests of ppsync against ppsim (one integration binary).

mod support;

mod cli;
mod daemon;
mod engine;
mod status_http;
