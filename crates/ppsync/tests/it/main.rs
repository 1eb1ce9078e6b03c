//! End-to-end tests of ppsync against ppsim (one integration binary).

mod support;

mod api_answers;
mod auth_failed;
mod bad_input;
mod budget;
mod check;
mod cli;
mod daemon;
mod deadline_view;
mod deadlines;
mod deploy;
mod details;
mod dialects;
mod email;
mod engine;
mod firms;
mod fleet;
mod kill;
mod logging;
mod notify;
mod odd_records;
mod probe;
mod restart;
mod security;
mod soak;
mod status_http;
mod tap;
mod views;
