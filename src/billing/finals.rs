//! The off-cycle final invoice of a closed account: its unbilled usage and a pro-rated
//! fee, derived and verified like a close.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{Datelike, NaiveDate};

use super::close::*;
use super::credit::*;
use super::draft::*;
use super::files::*;
use super::model::*;
use super::numbering::*;
use super::refused;
use crate::config::Config;
use crate::rate::accounts::Accounts;
use crate::rate::money::div_round_half_up;
use crate::rate::tariff::Tariff;
use crate::store::{Ledger, LedgerError, LineId, LineTotals};

/// Bills an account off-cycle (account closed on `date`): all its unbilled usage, the
/// full fee of every month after the last closed period before `date`'s month, and the
/// fee of `date`'s month pro rata (days 1..=date of the month, half-up to cents). Later
/// closes bill the account no fee and only usage that arrives afterwards.
pub fn final_invoice(
    cfg: &Config,
    ledger: &Ledger,
    tariff: &Tariff,
    accounts: &Accounts,
    account_id: &str,
    date: NaiveDate,
) -> Result<(Invoice, Vec<PathBuf>), LedgerError> {
    flush_pending(cfg, ledger)?;
    let acc = accounts
        .get(account_id)
        .ok_or_else(|| refused(format!("no account {account_id} in the accounts file")))?;
    let table = tariff.table();
    let fee = tariff
        .plan_index(&acc.plan)
        .map(|i| table.plans[i as usize].monthly_fee_cents.to_native())
        .unwrap_or(0);
    let period = Period {
        year: date.year(),
        month: date.month(),
    };
    let p = period.to_string();
    // The chart covers the final invoice's own month up to `date` (from the first
    // unbilled day when that is later); the detail is re-derived before the writer lock
    // and completed under it (see `close_cycle`).
    let chart_of = |last: &Option<String>| -> Result<NaiveDate, LedgerError> {
        let first = match last {
            Some(c) => period_bounds(next_period(c.parse().map_err(refused)?)).0,
            None => period_bounds(period).0,
        };
        Ok(first.max(period_bounds(period).0))
    };
    // Allowances: each month from the first unbilled one to the final invoice's own
    // applies in full (records of closed months draw on nothing).
    let allow_of = |last: &Option<String>| -> Result<(u32, u32), LedgerError> {
        use crate::billing::itemise::Window;
        let own = Window::month(&p).expect("valid period");
        let first = match last {
            Some(c) => Window::month(c).map_or(own, |m| m + 1),
            None => own,
        };
        Ok((first.min(own), own))
    };
    let (af, at) = allow_of(&ledger.last_closed()?)?;
    let window = crate::billing::itemise::Window::for_final(
        ledger,
        ledger.seq()?,
        chart_of(&ledger.last_closed()?)?,
        date,
    )?
    .with_allowances(tariff, af, at);
    let prepared = crate::billing::itemise::prepare(cfg, ledger, accounts, window, [account_id]);
    let inv = ledger.issue(|txn| {
        let l = txn.ledger();
        if let Some(v) = l.final_of(account_id)? {
            let r: FinalRecord = serde_json::from_slice(&v).map_err(|e| LedgerError::Corrupt {
                path: l.path().to_owned(),
                key: format!("finals/{account_id}"),
                message: e.to_string(),
            })?;
            return Err(refused(format!(
                "account {account_id} had its final invoice {} on {}",
                r.invoice, r.date
            )));
        }
        let last = l.last_closed()?;
        if last.as_deref().is_some_and(|c| c >= p.as_str()) {
            return Err(refused(format!(
                "{p} is closed already: a final invoice must be dated after the last closed period"
            )));
        }
        let rows = l.unbilled(Some(account_id))?;
        let mut usage: BTreeMap<LineId, LineTotals> = BTreeMap::new();
        for r in &rows {
            txn.delete_usage(&r.account, &r.month);
            for (k, t) in &r.lines.0 {
                usage.entry(k.clone()).or_default().add(t);
            }
        }
        let (af, at) = allow_of(&last)?;
        let window =
            crate::billing::itemise::Window::for_final(l, l.seq()?, chart_of(&last)?, date)?
                .with_allowances(tariff, af, at);
        let derived = prepared.complete(cfg, l, accounts, window, &rows);
        let mut d = Draft::new(cfg, account_id, Some(acc))?;
        for (k, t) in &usage {
            d.usage(k, t);
        }
        match derived.drawn(account_id, &acc.plan) {
            Ok(Some(drawn)) => d.allowances(&drawn),
            Ok(None) => {}
            Err(why) => {
                return Err(refused(format!(
                    "account {account_id}: its plan's allowances cannot be applied: {why}"
                )))
            }
        }
        // Full fees of the months between the last close and this month.
        let mut m = match &last {
            Some(c) => next_period(c.parse().map_err(refused)?),
            None => period,
        };
        let start = period_bounds(m).0;
        if fee != 0 {
            while m < period {
                d.subscription(&acc.plan, format!("Subscription {}, {m}", acc.plan), fee);
                m = next_period(m);
            }
            let dim = period_bounds(period).1.day() as i64;
            let days = date.day() as i64;
            let cents = div_round_half_up(fee as i128 * days as i128, dim as i128) as i64;
            d.subscription(
                &acc.plan,
                format!(
                    "Subscription {}, {} to {} ({days}/{dim} days)",
                    acc.plan,
                    period_bounds(period).0,
                    date
                ),
                cents,
            );
        }
        // Late-payment fees waiting for the next invoice: this is the last one.
        for f in crate::payments::pending_fees(l, Some(account_id))? {
            if f.amount != crate::rate::money::Cents::ZERO {
                d.fee(f);
            }
        }
        if d.lines.is_empty() {
            return Err(refused(format!(
                "account {account_id} has no unbilled usage and no fee: nothing to bill"
            )));
        }
        let (counter, prefix) = invoice_series(&cfg.numbering, date.year());
        let n = txn.next(&counter)?;
        let mut inv = d.finish(
            format_number(&prefix, cfg.numbering.yearly_reset, date.year(), n),
            &p,
            (start, date),
            table.currency.as_str(),
            date,
            0,
        );
        inv.final_invoice = true;
        attach_payment(cfg, Some(acc), &mut inv);
        for e in &derived.file_errors {
            tracing::warn!(account = %account_id, "final invoice: traffic detail unavailable: {e}");
        }
        inv.usage_by_day = derived.days(account_id);
        if let Some((state, annex)) = derived.annex(cfg, tariff, acc, &inv) {
            inv.itemised = Some(state);
            if let Some(annex) = annex {
                txn.put_annex(
                    &inv.number,
                    &serde_json::to_vec_pretty(&annex).expect("annex serializes"),
                );
            }
        }
        prenotify(cfg, l, &[], &mut inv)?;
        put(txn, &inv, &p, &mut Vec::new())?;
        super::delivery::queue(cfg, txn.pay()?, &inv);
        let rec = FinalRecord {
            account_id: account_id.to_owned(),
            date: date.to_string(),
            invoice: inv.number.clone(),
            seq: Some(l.seq()?),
            last_closed: last.clone(),
        };
        txn.put_final(
            account_id,
            &serde_json::to_vec(&rec).expect("final serializes"),
        );
        Ok(inv)
    })?;
    metrics::counter!(crate::telemetry::INVOICES).increment(1);
    let files = flush_pending(cfg, ledger)?;
    Ok((inv, files))
}
