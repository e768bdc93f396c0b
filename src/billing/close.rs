//! The cycle close: a period's unbilled usage, monthly fees and pending fees become
//! numbered, taxed invoices in one synced batch, then their files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{Datelike, NaiveDate};

use super::credit::prenotify;
use super::draft::*;
use super::files::*;
use super::model::*;
use super::numbering::*;
use crate::config::Config;
use crate::rate::accounts::{Account, Accounts};
use crate::rate::money::Cents;
use crate::rate::tariff::Tariff;
use crate::store::{CloseBatch, CloseRecord, Closed, Ledger, LedgerError, LineId, LineTotals};

/// An account's billable lines and its count of late records.
pub type AccountUsage = (BTreeMap<LineId, LineTotals>, u64);

/// The result of closing a period.
#[derive(Debug)]
pub struct CloseSummary {
    pub record: CloseRecord,
    /// False when the period had been closed before (files were checked and rewritten).
    pub new: bool,
    pub dir: PathBuf,
}

/// Closes `period`: bills all unbilled usage dated up to its end plus each account's
/// monthly fee, numbers the invoices, commits atomically, then writes the files.
/// Closing an already closed period only (re)writes its invoice files.
pub fn close_cycle(
    cfg: &Config,
    ledger: &Ledger,
    tariff: &Tariff,
    accounts: &Accounts,
    period: Period,
    issue_date: NaiveDate,
) -> Result<CloseSummary, LedgerError> {
    let t0 = std::time::Instant::now();
    flush_pending(cfg, ledger)?;
    let p = period.to_string();
    let bounds = period_bounds(period);
    let table = tariff.table();
    let currency = table.currency.as_str().to_owned();
    let (counter, prefix) = invoice_series(&cfg.numbering, issue_date.year());
    // Per-day usage of every billed account and the itemised annexes are re-derived from
    // the files this close bills. The re-rating runs before the writer lock (ingest keeps
    // committing meanwhile); under the lock only files committed since are re-rated, and
    // the detail is verified against the rows the close bills.
    let open = ledger.close_record(&p)?.is_none()
        && ledger
            .last_closed()?
            .is_none_or(|last| last.as_str() < p.as_str());
    let pm = crate::billing::itemise::Window::month(&p).expect("valid period");
    let prepared = if open {
        let t = std::time::Instant::now();
        let window = crate::billing::itemise::Window::of(ledger, &p, ledger.seq()?)?
            .with_allowances(tariff, pm, pm);
        let ids = ledger.unbilled_accounts(Some(&p))?;
        let prep = crate::billing::itemise::prepare(
            cfg,
            ledger,
            accounts,
            window,
            ids.iter().map(String::as_str),
        );
        tracing::info!(
            period = %p,
            seconds = t.elapsed().as_secs_f64(),
            "close: rated detail re-derived before the writer lock"
        );
        Some(prep)
    } else {
        None
    };
    let closed = ledger.close(&p, &counter, |rows, first_number, seq, tx| {
        let finals = ledger.finals()?;
        let window =
            crate::billing::itemise::Window::of(ledger, &p, seq)?.with_allowances(tariff, pm, pm);
        let t_derive = std::time::Instant::now();
        let derived = match prepared {
            Some(prep) => prep.complete(cfg, ledger, accounts, window, &rows),
            None => crate::billing::itemise::derive(cfg, ledger, accounts, &window, &rows),
        };
        tracing::info!(
            period = %p,
            files = derived.files,
            records = derived.records,
            late_files = derived.late_files,
            seconds_under_lock = t_derive.elapsed().as_secs_f64(),
            "close: rated detail derived"
        );
        for e in &derived.file_errors {
            tracing::warn!(period = %p, "close: traffic detail unavailable: {e}");
        }
        let mut annexes = Vec::new();
        // Late-payment fees waiting for the next invoice, per account.
        let mut fees: BTreeMap<String, Vec<crate::payments::PendingFee>> = BTreeMap::new();
        for f in crate::payments::pending_fees(ledger, None)? {
            if f.amount != Cents::ZERO {
                fees.entry(f.account.clone()).or_default().push(f);
            }
        }
        // Group rows by account (rows are in account order already).
        let mut per_account: BTreeMap<String, AccountUsage> = BTreeMap::new();
        for r in rows {
            let e = per_account.entry(r.account.clone()).or_default();
            let late = r.month.as_str() < p.as_str();
            for (k, t) in r.lines.0 {
                if late {
                    e.1 += t.count;
                }
                e.0.entry(k).or_default().add(&t);
            }
        }
        for a in &accounts.list {
            per_account.entry(a.account_id.clone()).or_default();
        }
        let mut invoices = Vec::new();
        let mut number = first_number;
        let (mut net_sum, mut vat_sum, mut late_sum) = (0i64, 0i64, 0u64);
        for (account_id, (lines, late)) in per_account {
            let acc = accounts.get(&account_id);
            let fee = monthly_fee(tariff, acc, finals.contains(&account_id));
            let account_fees = fees.remove(&account_id).unwrap_or_default();
            if lines.is_empty() && fee == 0 && account_fees.is_empty() {
                continue;
            }
            let drawn = match acc {
                Some(a) => match derived.drawn(&account_id, &a.plan) {
                    Ok(d) => d,
                    Err(why) => {
                        return Err(super::refused(format!(
                            "account {account_id}: its plan's allowances cannot be applied: {why}"
                        )))
                    }
                },
                None => None,
            };
            let mut d = draft_account(cfg, acc, &account_id, &p, &lines, drawn.as_deref(), fee)?;
            // Late-payment fees: outside the scope of VAT, added after VAT.
            for f in account_fees {
                d.fee(f);
            }
            let mut inv = d.finish(
                format_number(
                    &prefix,
                    cfg.numbering.yearly_reset,
                    issue_date.year(),
                    number,
                ),
                &p,
                bounds,
                &currency,
                issue_date,
                late,
            );
            let net = inv.net_total.0;
            let vat = inv.vat_total.0;
            let fee_total = inv.total.0 - net - vat;
            attach_payment(cfg, acc, &mut inv);
            inv.usage_by_day = derived.days(&account_id);
            if let Some((state, annex)) = acc.and_then(|a| derived.annex(cfg, tariff, a, &inv)) {
                inv.itemised = Some(state);
                if let Some(annex) = annex {
                    annexes.push((
                        inv.number.clone(),
                        serde_json::to_vec_pretty(&annex).expect("annex serializes"),
                    ));
                }
            }
            prenotify(cfg, ledger, &[], &mut inv)?;
            // The payments ledger posts each invoice (and its fee lines) in the same batch.
            crate::payments::post_invoice(&super::posting::posting(&inv), tx);
            super::delivery::queue(cfg, tx, &inv);
            number += 1;
            net_sum += net + fee_total;
            vat_sum += vat;
            late_sum += late;
            let json = serde_json::to_vec_pretty(&inv).expect("invoice serializes");
            invoices.push((inv.number, json));
        }
        let record = CloseRecord {
            period: p.clone(),
            closed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            issue_date: issue_date.to_string(),
            seq,
            invoices: invoices.iter().map(|(n, _)| n.clone()).collect(),
            net_total: Cents(net_sum),
            vat_total: Cents(vat_sum),
            total: Cents(net_sum + vat_sum),
            late_records: late_sum,
        };
        Ok(CloseBatch {
            invoices,
            annexes,
            record,
        })
    })?;
    let (record, new) = match closed {
        Closed::New(r) => (r, true),
        Closed::Already(r) => (r, false),
    };
    let dir = cfg.invoice_dir.join(&p);
    write_invoice_files(ledger, &dir, &record, cfg.psp.as_ref())?;
    if new {
        use crate::telemetry as m;
        metrics::counter!(m::INVOICES).increment(record.invoices.len() as u64);
        metrics::histogram!(m::CLOSE_SECONDS).record(t0.elapsed().as_secs_f64());
        metrics::gauge!(m::LAST_CLOSE).set(chrono::Utc::now().timestamp() as f64);
    }
    Ok(CloseSummary { record, new, dir })
}

/// An account's monthly fee in cents (its plan's, in the tariff given); none once the
/// account had its final invoice, or without a known account or plan.
pub(crate) fn monthly_fee(tariff: &Tariff, acc: Option<&Account>, had_final: bool) -> i64 {
    acc.filter(|_| !had_final)
        .and_then(|a| tariff.plan_index(&a.plan))
        .map(|i| {
            tariff.table().plans[i as usize]
                .monthly_fee_cents
                .to_native()
        })
        .unwrap_or(0)
}

/// The draft of an account's invoice of `period` as the close builds it, before its
/// late-payment fee lines: one usage line per line key, then the subscription line
/// (`fee` cents, when not zero). Shared by the close and the rerate of a closed period
/// ([`crate::billing::rerate`]), so both price an account's records the same way.
pub(crate) fn draft_account<'a>(
    cfg: &'a Config,
    acc: Option<&'a Account>,
    account_id: &str,
    period: &str,
    lines: &BTreeMap<LineId, LineTotals>,
    drawn: Option<&crate::billing::itemise::AccountDrawn>,
    fee: i64,
) -> Result<Draft<'a>, LedgerError> {
    let mut d = Draft::new(cfg, account_id, acc)?;
    for (k, t) in lines {
        d.usage(k, t);
    }
    if let Some(drawn) = drawn {
        d.allowances(drawn);
    }
    if fee != 0 {
        let plan = acc.map(|a| a.plan.clone()).unwrap_or_default();
        d.subscription(&plan, format!("Subscription {plan}, {period}"), fee);
    }
    Ok(d)
}

/// Sets an invoice's payment reference and payment block (from the account's payment
/// columns) for its `total`. Credit notes carry neither.
pub fn attach_payment(cfg: &Config, acc: Option<&Account>, inv: &mut Invoice) {
    if inv.is_credit_note() {
        return;
    }
    inv.payment_reference = crate::payments::sepa::payment_reference(&inv.number);
    let (total, due) = (inv.total.0, inv.due_date);
    inv.payment = acc.map(|a| payment_info(cfg, a, &inv.payment_reference, total, due));
}

/// The payment block of an invoice for an account.
pub(crate) fn payment_info(
    cfg: &Config,
    a: &crate::rate::accounts::Account,
    reference: &Option<String>,
    total_cents: i64,
    due: NaiveDate,
) -> PaymentInfo {
    use crate::rate::accounts::PaymentMethod;
    match (a.payment_method, &cfg.sepa) {
        (PaymentMethod::DirectDebit, Some(sepa)) => PaymentInfo {
            method: "direct_debit".into(),
            iban: crate::rate::iban::mask_iban(&a.iban),
            epc_qr: None,
            mandate_id: Some(a.mandate_id.clone()),
            creditor_id: Some(sepa.creditor_id.clone()),
            collection_date: Some(due.to_string()),
            amount: Some(Cents(total_cents)),
            card_last4: None,
            card_brand: None,
        },
        // Charged off-session by `collect` on the due date; the saved card's digits are
        // filled in by `credit::prenotify`, which reads the ledger.
        (PaymentMethod::Card, _) => PaymentInfo {
            method: "card".into(),
            iban: String::new(),
            epc_qr: None,
            mandate_id: None,
            creditor_id: None,
            collection_date: Some(due.to_string()),
            amount: Some(Cents(total_cents)),
            card_last4: None,
            card_brand: None,
        },
        _ => {
            let iban = cfg.seller.iban.replace(' ', "");
            PaymentInfo {
                method: "transfer".into(),
                epc_qr: (total_cents > 0).then(|| {
                    crate::billing::documents::qr::epc_qr_payload(
                        &cfg.seller.bic,
                        &cfg.seller.name,
                        &iban,
                        total_cents,
                        reference.as_deref().unwrap_or(""),
                    )
                }),
                iban,
                mandate_id: None,
                creditor_id: None,
                collection_date: None,
                amount: None,
                card_last4: None,
                card_brand: None,
            }
        }
    }
}
