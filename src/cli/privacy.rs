//! `privacy`: erasure, data-subject export and retention of traffic data.

use std::process::ExitCode;

use anyhow::Result;

use super::args::PrivacyCmd;
use super::print;
use crate::billing::privacy;
use crate::config::Config;
use crate::ingest::engine::Engine;

pub fn privacy(cfg: Config, cmd: PrivacyCmd) -> Result<ExitCode> {
    let engine = Engine::open(cfg)?;
    let r = engine.reference();
    let (cfg, ledger, accounts) = (&engine.cfg, &engine.ledger, &r.accounts);
    let table = r.tariff.table();
    match cmd {
        PrivacyCmd::Erase { account } => {
            let national = table.national_prefix.as_str();
            print::pretty(&privacy::erase(cfg, ledger, accounts, national, &account)?)?;
        }
        PrivacyCmd::Export { account } => {
            let today = super::date_or_today_in(None, "--date", r.tariff.tz)?;
            let currency = table.currency.as_str();
            print::pretty(&privacy::export(
                cfg, ledger, accounts, currency, &account, today,
            )?)?;
        }
        PrivacyCmd::Retention { date } => {
            let d = super::date_or_today_in(date, "--date", r.tariff.tz)?;
            print::pretty(&privacy::retention(cfg, ledger, d)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
