//! Cycle close and invoices: unbilled usage up to a period → numbered, taxed invoices.
//!
//! Rounding (see [`crate::money`]): a line amount is the sum of its records' 6-decimal
//! charges rounded half-up to cents; net = sum of line amounts; VAT = net × rate / 100
//! rounded half-up to cents; total = net + VAT.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::accounts::Accounts;
use crate::config::{Config, Seller};
use crate::ledger::{CloseBatch, CloseRecord, Closed, Ledger, LedgerError, LineId, LineTotals};
use crate::money::{format_cents, micros_to_cents, vat_cents};
use crate::rating::Service;
use crate::tariff::Tariff;

/// A billing period `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    pub year: i32,
    pub month: u32,
}

impl std::str::FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Period, String> {
        let bad = || format!("`{s}` is not a period YYYY-MM");
        if s.len() != 7 || s.as_bytes()[4] != b'-' {
            return Err(bad());
        }
        let year: i32 = s[..4].parse().map_err(|_| bad())?;
        let month: u32 = s[5..].parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || !(1970..=9999).contains(&year) {
            return Err(bad());
        }
        Ok(Period { year, month })
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// An invoice line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Line {
    Usage {
        service: String,
        destination: String,
        band: String,
        /// Number of records.
        quantity: u64,
        /// Billed units (seconds, messages or bytes) after increments.
        usage: u64,
        unit: String,
        amount: String,
    },
    Subscription {
        plan: String,
        description: String,
        amount: String,
    },
    /// A late-payment fee from dunning (collection costs, compensation, interest):
    /// outside the scope of VAT, added to the total after VAT.
    Fee {
        fee_id: String,
        fee: String,
        invoice: String,
        description: String,
        amount: String,
    },
}

/// How the invoice is to be paid (from the account's payment columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentInfo {
    /// `transfer` or `direct_debit`.
    pub method: String,
    /// Transfer: the IBAN to pay to; direct debit: the customer's IBAN, masked.
    pub iban: String,
    /// Transfer: the EPC QR payload (EPC069-12) a banking app scans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epc_qr: Option<String>,
    /// Direct debit: the pre-notification of mandate, amount and collection date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mandate_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creditor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
}

/// The customer block of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Customer {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub street: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub postcode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub city: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub country: String,
}

/// An invoice, as written to `invoice_dir/<period>/<number>.json` and kept in RocksDB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub number: String,
    pub account_id: String,
    pub period: String,
    pub currency: String,
    pub issue_date: String,
    pub due_date: String,
    pub seller: Seller,
    pub customer: Customer,
    pub lines: Vec<Line>,
    pub net_total: String,
    pub vat_rate: String,
    pub vat_total: String,
    pub total: String,
    /// Records dated before the period, billed now because they arrived after their own close.
    pub late_records: u64,
    /// Dutch 16-digit structured payment reference (betalingskenmerk), see [`crate::sepa`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentInfo>,
}

/// An account's billable lines and its count of late records.
type AccountUsage = (BTreeMap<LineId, LineTotals>, u64);

/// The result of closing a period.
#[derive(Debug)]
pub struct CloseSummary {
    pub record: CloseRecord,
    /// False when the period had been closed before (files were checked and rewritten).
    pub new: bool,
    pub dir: PathBuf,
}

/// Closes `period`: bills all unbilled usage dated up to its end plus each account's
/// monthly fee, numbers the invoices, commits atomically, then writes the JSON files.
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
    let p = period.to_string();
    let due = issue_date + chrono::Duration::days(cfg.billing.payment_terms_days as i64);
    let table = tariff.table();
    let currency = table.currency.as_str().to_owned();
    let closed = ledger.close(&p, issue_date.year(), |rows, first_number, seq| {
        // Late-payment fees waiting for the next invoice, per account.
        let mut fees: BTreeMap<String, Vec<crate::payments::PendingFee>> = BTreeMap::new();
        for f in crate::payments::pending_fees(ledger, None)? {
            if f.amount != "0.00" {
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
            let fee = acc
                .and_then(|a| tariff.plan_index(&a.plan))
                .map(|i| table.plans[i as usize].monthly_fee_cents.to_native())
                .unwrap_or(0);
            let account_fees = fees.remove(&account_id).unwrap_or_default();
            if lines.is_empty() && fee == 0 && account_fees.is_empty() {
                continue;
            }
            let mut out_lines = Vec::new();
            let mut net = 0i64;
            for ((s, dest, band), t) in &lines {
                let cents = micros_to_cents(t.charge_micros as i128);
                net += cents;
                let service = Service::from_index(*s).unwrap_or(Service::Voice);
                out_lines.push(Line::Usage {
                    service: service.name().into(),
                    destination: dest.clone(),
                    band: band.clone(),
                    quantity: t.count,
                    usage: t.billed,
                    unit: service.unit().into(),
                    amount: format_cents(cents),
                });
            }
            if fee != 0 {
                let plan = acc.map(|a| a.plan.clone()).unwrap_or_default();
                net += fee;
                out_lines.push(Line::Subscription {
                    description: format!("Subscription {plan}, {p}"),
                    plan,
                    amount: format_cents(fee),
                });
            }
            let vat = vat_cents(net, cfg.billing.vat_rate);
            let mut fee_total = 0;
            for f in account_fees {
                fee_total += crate::money::parse_cents(&f.amount).unwrap_or(0);
                out_lines.push(Line::Fee {
                    fee_id: f.id,
                    fee: f.kind,
                    invoice: f.invoice,
                    description: f.description,
                    amount: f.amount,
                });
            }
            let inv_number = format!("{:04}-{:06}", issue_date.year(), number);
            let payment_reference = crate::sepa::payment_reference(&inv_number);
            let payment =
                acc.map(|a| payment_info(cfg, a, &payment_reference, net + vat + fee_total, due));
            let inv = Invoice {
                payment_reference,
                payment,
                number: inv_number,
                account_id: account_id.clone(),
                period: p.clone(),
                currency: currency.clone(),
                issue_date: issue_date.to_string(),
                due_date: due.to_string(),
                seller: cfg.seller.clone(),
                customer: acc
                    .map(|a| Customer {
                        name: a.name.clone(),
                        street: a.street.clone(),
                        postcode: a.postcode.clone(),
                        city: a.city.clone(),
                        country: a.country.clone(),
                    })
                    .unwrap_or_default(),
                lines: out_lines,
                net_total: format_cents(net),
                vat_rate: cfg.billing.vat_rate.normalize().to_string(),
                vat_total: format_cents(vat),
                total: format_cents(net + vat + fee_total),
                late_records: late,
            };
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
            net_total: format_cents(net_sum),
            vat_total: format_cents(vat_sum),
            total: format_cents(net_sum + vat_sum),
            late_records: late_sum,
        };
        Ok(CloseBatch { invoices, record })
    })?;
    let (record, new) = match closed {
        Closed::New(r) => (r, true),
        Closed::Already(r) => (r, false),
    };
    let dir = cfg.invoice_dir.join(&p);
    write_invoice_files(ledger, &dir, &record)?;
    if new {
        use crate::telemetry as m;
        metrics::counter!(m::INVOICES).increment(record.invoices.len() as u64);
        metrics::histogram!(m::CLOSE_SECONDS).record(t0.elapsed().as_secs_f64());
        metrics::gauge!(m::LAST_CLOSE).set(chrono::Utc::now().timestamp() as f64);
    }
    Ok(CloseSummary { record, new, dir })
}

/// The payment block of an invoice for an account.
fn payment_info(
    cfg: &Config,
    a: &crate::accounts::Account,
    reference: &Option<String>,
    total_cents: i64,
    due: NaiveDate,
) -> PaymentInfo {
    use crate::accounts::PaymentMethod;
    match (a.payment_method, &cfg.sepa) {
        (PaymentMethod::DirectDebit, Some(sepa)) => PaymentInfo {
            method: "direct_debit".into(),
            iban: crate::sepa::mask_iban(&a.iban),
            epc_qr: None,
            mandate_id: Some(a.mandate_id.clone()),
            creditor_id: Some(sepa.creditor_id.clone()),
            collection_date: Some(due.to_string()),
            amount: Some(format_cents(total_cents)),
        },
        _ => {
            let iban = cfg.seller.iban.replace(' ', "");
            PaymentInfo {
                method: "transfer".into(),
                epc_qr: (total_cents > 0).then(|| {
                    crate::sepa::epc_qr_payload(
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
            }
        }
    }
}

/// Writes (or rewrites) the JSON file of every invoice of a close from the ledger. Files
/// appear whole (temp file + rename) and are durable when this returns.
pub fn write_invoice_files(
    ledger: &Ledger,
    dir: &Path,
    record: &CloseRecord,
) -> Result<(), LedgerError> {
    let io = |e: std::io::Error| {
        LedgerError::Refused(format!("cannot write invoices to {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    for n in &record.invoices {
        let json = ledger.invoice(n)?.ok_or_else(|| {
            LedgerError::Refused(format!(
                "invoice {n} of {} missing from the ledger",
                record.period
            ))
        })?;
        let path = dir.join(format!("{n}.json"));
        let rewritten = std::fs::read(&path).ok().as_deref() != Some(json.as_slice());
        if rewritten {
            crate::fsutil::write_renamed(&path, &json).map_err(io)?;
        }
        // The EPC QR code beside the invoice (bank transfer invoices). Encoding costs
        // about 1 ms, so it is redone only when the JSON was (re)written or it is missing.
        let qr = dir.join(format!("{n}.qr.svg"));
        if rewritten || !qr.exists() {
            if let Ok(inv) = serde_json::from_slice::<Invoice>(&json) {
                if let Some(payload) = inv.payment.and_then(|p| p.epc_qr) {
                    let svg = crate::sepa::qr_svg(&payload).map_err(LedgerError::Refused)?;
                    crate::fsutil::write_renamed(&qr, svg.as_bytes()).map_err(io)?;
                }
            }
        }
    }
    // One filesystem flush for the whole close instead of two fsyncs per invoice. The
    // ledger is the record: re-running the close re-checks and rewrites every file.
    crate::fsutil::sync_fs(dir).map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        let p: Period = "2026-10".parse().unwrap();
        assert_eq!(
            p,
            Period {
                year: 2026,
                month: 10
            }
        );
        assert_eq!(p.to_string(), "2026-10");
        for bad in ["2026-13", "2026-1", "26-10", "2026/10", "abcd-ef"] {
            assert!(bad.parse::<Period>().is_err(), "{bad}");
        }
    }
}
