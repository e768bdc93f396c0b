//! The command line: the clap types ([`args`]), the operations interface with its
//! in-process and daemon implementations ([`operations`]), the daemon's API client
//! ([`client`]), the commands by concern, and the printing of their answers ([`print`]).
//!
//! Every command but `demo` reads the configuration given by the global `--config`
//! (before or after the subcommand). Errors end the process with code 2 (`main`); a
//! command that partly failed (a file not ingested or imported) returns code 1.

pub mod args;
mod billing;
pub mod client;
mod daemon;
pub mod operations;
mod payments;
mod print;
mod privacy;
mod reference;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::NaiveDate;

use crate::config::Config;
use args::Cmd;
pub use args::{Cli, LogFormat};

/// Logs on stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let Cli { config, cmd, .. } = cli;
    if let Cmd::Demo {
        dir,
        records,
        accounts,
    } = cmd
    {
        crate::demo::run(dir, records, accounts)?;
        return Ok(ExitCode::SUCCESS);
    }
    // `Cli::parse_args` lets only `demo` through without `--config`.
    let path: PathBuf = config.context("--config is required")?;
    let cfg = Config::load(&path)?;
    match cmd {
        Cmd::Run => daemon::run(cfg),
        Cmd::Ingest { stats, files } => daemon::ingest(cfg, stats, &files),
        Cmd::Token { cmd } => daemon::token(cfg, &path, cmd),
        Cmd::Tariff { cmd } => reference::tariff(cfg, cmd),
        Cmd::Quote {
            account,
            service,
            to,
            at,
            usage,
        } => reference::quote(cfg, account, service, to, at, usage),
        Cmd::Accounts { cmd } => reference::accounts(cfg, cmd),
        Cmd::Cycle { cmd } => billing::cycle(cfg, cmd),
        Cmd::Bills { cmd } => billing::bills(cfg, cmd),
        Cmd::Usage { account, period } => billing::usage(cfg, &account, &period),
        Cmd::Invoice { cmd } => billing::invoice(cfg, cmd),
        Cmd::Rerate {
            period,
            accounts,
            dry_run,
            correct,
            issue_date,
            json,
        } => {
            let input = crate::ops::api::rerate::RerateInput {
                accounts,
                dry_run,
                correct,
                issue_date,
            };
            billing::rerate(cfg, &period, &input, json)
        }
        Cmd::Report {
            kind,
            period,
            by,
            format,
            top,
        } => billing::report(cfg, kind, &period, by, format, top),
        Cmd::Account { cmd } => payments::account(cfg, cmd),
        Cmd::Payments { cmd } => payments::payments(cfg, cmd),
        Cmd::Collect { date, out } => payments::collect(cfg, &date, out.as_deref()),
        Cmd::Dunning { cmd } => payments::dunning(cfg, cmd),
        Cmd::Deliver => billing::deliver(cfg),
        Cmd::Privacy { cmd } => privacy::privacy(cfg, cmd),
        Cmd::Demo { .. } => unreachable!("ran above"),
    }
}

/// A `YYYY-MM-DD` option.
fn parse_date(d: &str, what: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(d, "%Y-%m-%d")
        .with_context(|| format!("{what} `{d}` is not YYYY-MM-DD"))
}

/// A `YYYY-MM-DD` option, default today (UTC).
fn date_or_today(d: Option<String>, what: &str) -> Result<NaiveDate> {
    match d {
        Some(d) => parse_date(&d, what),
        None => Ok(chrono::Utc::now().date_naive()),
    }
}

/// A `YYYY-MM-DD` option, default today in the tariff's time zone.
fn date_or_today_in(d: Option<String>, what: &str, tz: chrono_tz::Tz) -> Result<NaiveDate> {
    match d {
        Some(d) => parse_date(&d, what),
        None => Ok(chrono::Utc::now().with_timezone(&tz).date_naive()),
    }
}

/// A `YYYY-MM` period option.
fn parse_period(p: &str) -> Result<crate::billing::Period> {
    p.parse().map_err(anyhow::Error::msg)
}

/// Code 0 when nothing failed, else 1.
fn failures(failed: usize) -> ExitCode {
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
