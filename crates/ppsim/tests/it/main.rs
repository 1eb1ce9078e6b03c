//! ppsim's integration tests, one binary (each test file used to link ppsim again).

mod auth_budget;
mod dialect;
mod faults_changes;
mod firms;
mod lists;
mod support;
