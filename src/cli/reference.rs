//! `tariff`, `quote` and `accounts`: the reference data and what it prices.

use std::process::ExitCode;

use anyhow::Result;

use super::args::{AccountsCmd, TariffCmd};
use super::operations::connect;
use super::print;
use crate::config::Config;
use crate::ops::api::ops::QuoteQuery;
use crate::rate::tariff;

/// `tariff check` / `tariff compile`.
pub fn tariff(cfg: Config, cmd: TariffCmd) -> Result<ExitCode> {
    let compile = matches!(cmd, TariffCmd::Compile);
    let t0 = std::time::Instant::now();
    let src = tariff::Source::load(&cfg.tariff_plans)?;
    let rows: usize = src.decks.iter().map(|d| d.rows.len()).sum();
    println!(
        "tariff {}: {} plans, {} decks, {} rows, {} bands, version {}",
        cfg.tariff_plans.display(),
        src.plans.len(),
        src.decks.len(),
        rows,
        src.bands.len(),
        &src.version[..16]
    );
    if compile {
        let path = tariff::compile(&src, &cfg.data_dir)?;
        tariff::Tariff::open(&path)?;
        println!(
            "compiled to {} in {:.3} s",
            path.display(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `quote`: the price of one record, and the deck row behind it.
pub fn quote(
    cfg: Config,
    account: String,
    service: String,
    to: String,
    at: String,
    usage: u64,
) -> Result<ExitCode> {
    let q = QuoteQuery {
        account,
        service,
        to: Some(to),
        at,
        usage: Some(usage),
    };
    print::pretty(&connect(cfg)?.quote(&q)?)?;
    Ok(ExitCode::SUCCESS)
}

/// `accounts list` / `accounts show`.
pub fn accounts(cfg: Config, cmd: AccountsCmd) -> Result<ExitCode> {
    let ops = connect(cfg)?;
    match cmd {
        AccountsCmd::List { offset, limit } => {
            print::accounts(&ops.accounts(offset, limit)?, offset)
        }
        AccountsCmd::Show { id } => print::pretty(&ops.account(&id)?)?,
    }
    Ok(ExitCode::SUCCESS)
}
