//! End-to-end tests of ppsync against ppsim (one integration binary).

mod support;

mod api_answers;
mod bad_input;
mod cli;
mod daemon;
mod dialects;
mod engine;
mod firms;
mod fleet;
mod kill;
mod odd_records;
mod probe;
mod security;
mod status_http;
