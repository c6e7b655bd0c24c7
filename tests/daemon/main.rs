//! Integration tests, one binary for the area: the daemon as a process: config errors, echo, reload, drain, timeouts, workers.
//! How to add a test: see tests/README.md.

#[path = "../support/mod.rs"]
mod support;

mod access_log;
mod config;
mod config_check;
mod deb_upgrade;
mod drain;
mod echo;
mod logfile;
mod reload;
mod reload_checks;
mod socket_activation;
mod timeouts;
mod titles;
mod upgrade;
mod upgrade_notify;
mod workers;
