//! Billing documents: cycle close, credit notes, reissues and off-cycle final invoices.
//!
//! Rounding (see [`crate::money`]): a line amount is the sum of its records' 6-decimal
//! charges rounded half-up to cents; VAT is computed once per (category, rate) over the
//! summed line amounts, half-up to cents ([`crate::vat`]); total = net + VAT. A pro-rated
//! fee is fee × days / days in month, half-up to cents.
//!
//! Numbers are taken from their series' counter in the same synced batch that stores the
//! document (gap-free, never reused). Files (`<number>.json` and the UBL `<number>.xml`)
//! are written after the commit and rewritten from the ledger when missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::accounts::{Account, Accounts};
use crate::config::{Config, Numbering, Seller};
use crate::ledger::{
    CloseBatch, CloseRecord, Closed, Ledger, LedgerError, LineId, LineTotals, Txn,
};
use crate::money::{div_round_half_up, format_cents, micros_to_cents, parse_cents, vat_cents};
use crate::rating::Service;
use crate::tariff::Tariff;
use crate::vat::{BreakdownRow, Category, Regime, Treatment};

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

/// An invoice line. Credit notes carry `credit` lines with negative amounts.
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
        #[serde(default)]
        vat_category: String,
        #[serde(default)]
        vat_rate: String,
    },
    Subscription {
        plan: String,
        description: String,
        amount: String,
        #[serde(default)]
        vat_category: String,
        #[serde(default)]
        vat_rate: String,
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
    Credit {
        description: String,
        /// 1-based line of the credited invoice; absent for an amount credit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<usize>,
        amount: String,
        vat_category: String,
        vat_rate: String,
    },
}

impl Line {
    /// Amount in cents.
    pub fn cents(&self) -> i64 {
        let a = match self {
            Line::Usage { amount, .. }
            | Line::Subscription { amount, .. }
            | Line::Credit { amount, .. }
            | Line::Fee { amount, .. } => amount,
        };
        parse_cents(a).unwrap_or(0)
    }

    /// (category, rate) of the line.
    /// Fee lines are outside the scope of VAT (never in the VAT breakdown).
    pub fn vat(&self) -> (Category, Decimal) {
        let (c, r) = match self {
            Line::Fee { .. } => return (Category::O, Decimal::ZERO),
            Line::Usage {
                vat_category,
                vat_rate,
                ..
            }
            | Line::Subscription {
                vat_category,
                vat_rate,
                ..
            }
            | Line::Credit {
                vat_category,
                vat_rate,
                ..
            } => (vat_category, vat_rate),
        };
        (
            Category::parse(c).unwrap_or(Category::S),
            r.parse().unwrap_or(Decimal::ZERO),
        )
    }

    /// A one-line description (English) for documents.
    pub fn description(&self) -> String {
        match self {
            Line::Usage {
                service,
                destination,
                band,
                quantity,
                usage,
                unit,
                ..
            } => {
                let band = if band == "any" {
                    String::new()
                } else {
                    format!(" ({band})")
                };
                format!("{service} {destination}{band}: {quantity} records, {usage} {unit}")
            }
            Line::Subscription { description, .. }
            | Line::Credit { description, .. }
            | Line::Fee { description, .. } => description.clone(),
        }
    }
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
    /// `amount` (both methods): what is asked, the total less credit on the account.
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
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub customer_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vat_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peppol_endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub language: String,
}

impl Customer {
    fn of(acc: Option<&Account>) -> Customer {
        acc.map(|a| Customer {
            name: a.name.clone(),
            street: a.street.clone(),
            postcode: a.postcode.clone(),
            city: a.city.clone(),
            country: a.country.clone(),
            customer_type: a.customer_type.name().into(),
            vat_id: a.vat_id.clone(),
            peppol_endpoint: a.peppol_endpoint.clone(),
            language: a.language.clone(),
        })
        .unwrap_or_default()
    }
}

/// A reference to an earlier document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocRef {
    pub number: String,
    pub issue_date: String,
}

fn invoice_type() -> String {
    "invoice".into()
}

/// An invoice or credit note, as written to `invoice_dir/<period>/<number>.json` and kept
/// in RocksDB. Fields after `late_records` were added by issue 3 (older stored documents
/// read with their defaults).
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
    /// The customer's VAT rate (0 under reverse charge and outside the EU).
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
    /// `invoice` or `credit_note`.
    #[serde(default = "invoice_type")]
    pub document_type: String,
    /// First and last day billed (a final invoice ends early).
    #[serde(default)]
    pub period_start: String,
    #[serde(default)]
    pub period_end: String,
    /// Taxable amount and VAT per (category, rate).
    #[serde(default)]
    pub vat_breakdown: Vec<BreakdownRow>,
    /// Wording the law requires (reverse charge, outside scope).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vat_note: String,
    /// Credit notes: the invoice they credit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credited_invoice: Option<DocRef>,
    /// Reissued invoices: the invoice they replace (credited in full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<DocRef>,
    /// Reason of a credit note or reissue.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// An off-cycle final invoice (account closed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub final_invoice: bool,
    /// Usage per local day of the period (days with records), for the PDF's chart;
    /// derived at the close ([`crate::itemise`]), absent when it could not be verified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage_by_day: Vec<crate::itemise::DayUsage>,
    /// Accounts with the itemised opt-in: whether the annex is attached, or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itemised: Option<crate::itemise::Itemised>,
}

impl Invoice {
    pub fn is_credit_note(&self) -> bool {
        self.document_type == "credit_note"
    }
}

/// Formats a document number.
pub fn format_number(prefix: &str, yearly: bool, year: i32, n: u64) -> String {
    if yearly {
        format!("{prefix}{year:04}-{n:06}")
    } else {
        format!("{prefix}{n:08}")
    }
}

/// Counter key and number prefix of the invoice series.
pub fn invoice_series(n: &Numbering, year: i32) -> (String, String) {
    let key = if n.yearly_reset {
        format!("counter/{year:04}")
    } else {
        "counter/all".into()
    };
    (key, n.prefix.clone())
}

/// Counter key and number prefix of the credit note series.
pub fn credit_series(n: &Numbering, year: i32) -> (String, String) {
    if n.credit_shared {
        return invoice_series(n, year);
    }
    let key = if n.yearly_reset {
        format!("counter-credit/{year:04}")
    } else {
        "counter-credit/all".into()
    };
    (key, n.credit_prefix.clone())
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

fn refused(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Refused(e.to_string())
}

/// First and last day of a period.
pub fn period_bounds(p: Period) -> (NaiveDate, NaiveDate) {
    let first = NaiveDate::from_ymd_opt(p.year, p.month, 1).expect("valid period");
    let next = if p.month == 12 {
        NaiveDate::from_ymd_opt(p.year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(p.year, p.month + 1, 1)
    }
    .expect("valid period");
    (first, next.pred_opt().expect("day before"))
}

/// Everything needed to price lines into a document.
struct Draft<'a> {
    cfg: &'a Config,
    account_id: String,
    acc: Option<&'a Account>,
    regime: Regime,
    lines: Vec<Line>,
}

impl<'a> Draft<'a> {
    fn new(
        cfg: &'a Config,
        account_id: &str,
        acc: Option<&'a Account>,
    ) -> Result<Draft<'a>, LedgerError> {
        let regime = cfg.billing.vat.regime(account_id, acc).map_err(refused)?;
        Ok(Draft {
            cfg,
            account_id: account_id.to_owned(),
            acc,
            regime,
            lines: Vec::new(),
        })
    }

    fn treatment(&self, service: &str, destination: &str) -> Treatment {
        self.cfg
            .billing
            .vat
            .line(&self.regime, service, destination)
    }

    fn usage(&mut self, (s, dest, band): &LineId, t: &LineTotals) {
        let cents = micros_to_cents(t.charge_micros as i128);
        let service = Service::from_index(*s).unwrap_or(Service::Voice);
        let tr = self.treatment(service.name(), dest);
        self.lines.push(Line::Usage {
            service: service.name().into(),
            destination: dest.clone(),
            band: band.clone(),
            quantity: t.count,
            usage: t.billed,
            unit: service.unit().into(),
            amount: format_cents(cents),
            vat_category: tr.category.code().into(),
            vat_rate: tr.rate.normalize().to_string(),
        });
    }

    fn subscription(&mut self, plan: &str, description: String, cents: i64) {
        let tr = self.treatment("subscription", plan);
        self.lines.push(Line::Subscription {
            plan: plan.to_owned(),
            description,
            amount: format_cents(cents),
            vat_category: tr.category.code().into(),
            vat_rate: tr.rate.normalize().to_string(),
        });
    }

    /// Re-prices a copied line under this draft's regime.
    fn copy(&mut self, l: &Line) {
        match l {
            Line::Usage {
                service,
                destination,
                ..
            } => {
                let tr = self.treatment(service, destination);
                let mut l = l.clone();
                if let Line::Usage {
                    vat_category,
                    vat_rate,
                    ..
                } = &mut l
                {
                    *vat_category = tr.category.code().into();
                    *vat_rate = tr.rate.normalize().to_string();
                }
                self.lines.push(l);
            }
            Line::Subscription {
                plan, description, ..
            } => self.subscription(plan, description.clone(), l.cents()),
            // Credit lines are not copied. Late-payment fee lines are copied by the
            // reissue for what its credit note took off them (`credit`), not here.
            Line::Credit { .. } | Line::Fee { .. } => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        self,
        number: String,
        period: &str,
        bounds: (NaiveDate, NaiveDate),
        currency: &str,
        issue: NaiveDate,
        late: u64,
    ) -> Invoice {
        let due = issue + chrono::Duration::days(self.cfg.billing.payment_terms_days as i64);
        // Fee lines are outside the scope of VAT: not in the breakdown, added after VAT.
        let fees: i64 = self
            .lines
            .iter()
            .filter(|l| matches!(l, Line::Fee { .. }))
            .map(Line::cents)
            .sum();
        let treated: Vec<(Treatment, i64)> = self
            .lines
            .iter()
            .filter(|l| !matches!(l, Line::Fee { .. }))
            .map(|l| {
                let (category, rate) = l.vat();
                let reason = match category {
                    Category::S => String::new(),
                    _ => {
                        self.cfg
                            .billing
                            .vat
                            .line(&self.regime, line_service(l), line_destination(l))
                            .reason
                    }
                };
                (
                    Treatment {
                        category,
                        rate,
                        reason,
                    },
                    l.cents(),
                )
            })
            .collect();
        let (rows, net, vat) = crate::vat::breakdown(&treated);
        Invoice {
            number,
            account_id: self.account_id,
            period: period.to_owned(),
            currency: currency.to_owned(),
            issue_date: issue.to_string(),
            due_date: due.to_string(),
            seller: self.cfg.seller.clone(),
            customer: Customer::of(self.acc),
            lines: self.lines,
            net_total: format_cents(net),
            vat_rate: self.regime.rate.normalize().to_string(),
            vat_total: format_cents(vat),
            total: format_cents(net + vat + fees),
            late_records: late,
            document_type: invoice_type(),
            period_start: bounds.0.to_string(),
            period_end: bounds.1.to_string(),
            vat_breakdown: rows
                .iter()
                .map(|(t, n, v)| crate::vat::row(t, *n, *v))
                .collect(),
            vat_note: self.regime.note.clone(),
            credited_invoice: None,
            replaces: None,
            reason: String::new(),
            final_invoice: false,
            payment_reference: None,
            payment: None,
            usage_by_day: Vec::new(),
            itemised: None,
        }
    }
}

fn line_service(l: &Line) -> &str {
    match l {
        Line::Usage { service, .. } => service,
        _ => "subscription",
    }
}

fn line_destination(l: &Line) -> &str {
    match l {
        Line::Usage { destination, .. } => destination,
        Line::Subscription { plan, .. } => plan,
        Line::Credit { .. } | Line::Fee { .. } => "",
    }
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
    let prepared = if open {
        let t = std::time::Instant::now();
        let window = crate::itemise::Window::of(ledger, &p, ledger.seq()?)?;
        let ids = ledger.unbilled_accounts(Some(&p))?;
        let prep = crate::itemise::prepare(
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
    let closed = ledger.close(&p, &counter, |rows, first_number, seq| {
        let finals = ledger.finals()?;
        let window = crate::itemise::Window::of(ledger, &p, seq)?;
        let t_derive = std::time::Instant::now();
        let derived = match prepared {
            Some(prep) => prep.complete(cfg, ledger, accounts, window, &rows),
            None => crate::itemise::derive(cfg, ledger, accounts, &window, &rows),
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
            // An account that had its final invoice pays no more fees.
            let fee = acc
                .filter(|_| !finals.contains(&account_id))
                .and_then(|a| tariff.plan_index(&a.plan))
                .map(|i| table.plans[i as usize].monthly_fee_cents.to_native())
                .unwrap_or(0);
            let account_fees = fees.remove(&account_id).unwrap_or_default();
            if lines.is_empty() && fee == 0 && account_fees.is_empty() {
                continue;
            }
            let mut d = Draft::new(cfg, &account_id, acc)?;
            for (k, t) in &lines {
                d.usage(k, t);
            }
            if fee != 0 {
                let plan = acc.map(|a| a.plan.clone()).unwrap_or_default();
                d.subscription(&plan, format!("Subscription {plan}, {p}"), fee);
            }
            // Late-payment fees: outside the scope of VAT, added after VAT.
            for f in account_fees {
                d.lines.push(Line::Fee {
                    fee_id: f.id,
                    fee: f.kind,
                    invoice: f.invoice,
                    description: f.description,
                    amount: f.amount,
                });
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
            let net = parse_cents(&inv.net_total).unwrap_or(0);
            let vat = parse_cents(&inv.vat_total).unwrap_or(0);
            let fee_total = parse_cents(&inv.total).unwrap_or(0) - net - vat;
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
    write_invoice_files(ledger, &dir, &record)?;
    if new {
        use crate::telemetry as m;
        metrics::counter!(m::INVOICES).increment(record.invoices.len() as u64);
        metrics::histogram!(m::CLOSE_SECONDS).record(t0.elapsed().as_secs_f64());
        metrics::gauge!(m::LAST_CLOSE).set(chrono::Utc::now().timestamp() as f64);
    }
    Ok(CloseSummary { record, new, dir })
}

/// Sets an invoice's payment reference and payment block (from the account's payment
/// columns) for its `total`. Credit notes carry neither.
pub fn attach_payment(cfg: &Config, acc: Option<&Account>, inv: &mut Invoice) {
    if inv.is_credit_note() {
        return;
    }
    inv.payment_reference = crate::sepa::payment_reference(&inv.number);
    let total = parse_cents(&inv.total).unwrap_or(0);
    let due = inv.due_date.parse::<NaiveDate>().ok();
    inv.payment = match (acc, due) {
        (Some(a), Some(due)) => Some(payment_info(cfg, a, &inv.payment_reference, total, due)),
        _ => None,
    };
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

/// Writes (or rewrites) the files of every invoice of a close from the ledger. Files
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
    remove_stale_temp_files(dir).map_err(io)?;
    // Rendering (PDF, UBL, the EPC QR code) is CPU work per document: one thread per
    // core takes the next number until all are written or one fails.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(record.invoices.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let failed = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(n) = record.invoices.get(i) else {
                    break;
                };
                if let Err(e) = write_document(ledger, dir, n) {
                    // Stop every thread; report the first failure (in number order).
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    let mut f = failed.lock().expect("failure lock");
                    if f.as_ref().is_none_or(|(j, _)| i < *j) {
                        *f = Some((i, e));
                    }
                    break;
                }
            });
        }
    });
    if let Some((_, e)) = failed.into_inner().expect("failure lock") {
        return Err(e);
    }
    // One filesystem flush for the whole close instead of two fsyncs per invoice. The
    // ledger is the record: re-running the close re-checks and rewrites every file.
    crate::fsutil::sync_fs(dir).map_err(io)?;
    Ok(())
}

/// Removes hidden temp files a killed writer left behind (`.<name>.tmp-<pid>`).
fn remove_stale_temp_files(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.starts_with('.') && n.contains(".tmp-") {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Writes `<number>.json`, `<number>.xml` (UBL), `<number>.pdf` and, for itemised
/// invoices, `<number>.annex.json` of a stored document into `dir` unless
/// they are there already with the same content (not flushed: the caller syncs).
pub fn write_document(ledger: &Ledger, dir: &Path, number: &str) -> Result<(), LedgerError> {
    let io = |e: std::io::Error| {
        LedgerError::Refused(format!("cannot write documents to {}: {e}", dir.display()))
    };
    let json = ledger
        .invoice(number)?
        .ok_or_else(|| refused(format!("document {number} missing from the ledger")))?;
    let inv: Invoice = serde_json::from_slice(&json).map_err(|e| LedgerError::Corrupt {
        path: ledger.path().to_owned(),
        key: format!("invoices/{number}"),
        message: e.to_string(),
    })?;
    let annex_json = ledger.annex(number)?;
    let annex: Option<crate::itemise::Annex> = match &annex_json {
        Some(a) => Some(serde_json::from_slice(a).map_err(|e| LedgerError::Corrupt {
            path: ledger.path().to_owned(),
            key: format!("annex/{number}"),
            message: e.to_string(),
        })?),
        None => None,
    };
    let xml = crate::ubl::render(&inv);
    let pdf = crate::pdf::render(&inv, annex.as_ref());
    let mut rewritten = false;
    for (ext, bytes) in [("json", &json), ("xml", &xml), ("pdf", &pdf)] {
        let path = dir.join(format!("{number}.{ext}"));
        if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
            crate::fsutil::write_renamed(&path, bytes).map_err(io)?;
            rewritten |= ext == "json";
        }
    }
    // The itemised annex beside the invoice while its traffic detail is held; removed
    // once it was erased (dispute window, erasure request).
    let annex_path = dir.join(format!("{number}.annex.json"));
    match &annex_json {
        Some(bytes) => {
            if std::fs::read(&annex_path).ok().as_deref() != Some(bytes.as_slice()) {
                crate::fsutil::write_renamed(&annex_path, bytes).map_err(io)?;
            }
        }
        None => match std::fs::remove_file(&annex_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        },
    }
    // The EPC QR code beside the invoice (bank transfer invoices). Encoding costs about
    // 1 ms, so it is redone only when the JSON was (re)written or it is missing.
    if let Some(payload) = inv.payment.and_then(|p| p.epc_qr) {
        let qr = dir.join(format!("{number}.qr.svg"));
        if rewritten || !qr.exists() {
            let svg = crate::sepa::qr_svg(&payload).map_err(LedgerError::Refused)?;
            crate::fsutil::write_renamed(&qr, svg.as_bytes()).map_err(io)?;
        }
    }
    Ok(())
}

/// Writes the files of documents committed outside a close whose files may be missing
/// (a crash between commit and writing), then forgets them.
pub fn flush_pending(cfg: &Config, ledger: &Ledger) -> Result<Vec<PathBuf>, LedgerError> {
    let pending = ledger.pending()?;
    let mut written = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for (number, dir) in &pending {
        let d = cfg.invoice_dir.join(dir);
        std::fs::create_dir_all(&d)
            .and_then(|_| remove_stale_temp_files(&d))
            .map_err(|e| refused(format!("cannot prepare {}: {e}", d.display())))?;
        write_document(ledger, &d, number)?;
        written.push(d.join(format!("{number}.json")));
        dirs.insert(d);
    }
    for d in &dirs {
        crate::fsutil::sync_fs(d)
            .map_err(|e| refused(format!("cannot flush {}: {e}", d.display())))?;
    }
    let numbers: Vec<String> = pending.into_iter().map(|(n, _)| n).collect();
    ledger.clear_pending(&numbers)?;
    Ok(written)
}

/// What was credited on an invoice so far (cents, positive).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credited {
    /// Credit note numbers.
    pub credit_notes: Vec<String>,
    /// Per 1-based line index: net credited.
    pub lines: BTreeMap<usize, i64>,
    /// Per `category/rate`: net and VAT credited.
    pub groups: BTreeMap<String, (i64, i64)>,
}

/// What to credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditWhat {
    /// Everything still creditable.
    Full,
    /// These 1-based lines, each as far as still creditable.
    Lines(Vec<usize>),
    /// A net amount in cents (invoices with one VAT group only).
    Amount(i64),
}

fn group_key(c: Category, r: Decimal) -> String {
    format!("{}/{}", c.code(), r.normalize())
}

/// The documents a credit issued: the credit note and, with `reissue`, the new invoice.
#[derive(Debug)]
pub struct CreditOutcome {
    pub credit_note: Invoice,
    pub reissued: Option<Invoice>,
    pub files: Vec<PathBuf>,
}

/// The stored itemised annex of a document, if it has one.
fn stored_annex(
    ledger: &Ledger,
    number: &str,
) -> Result<Option<crate::itemise::Annex>, LedgerError> {
    match ledger.annex(number)? {
        Some(a) => serde_json::from_slice(&a)
            .map(Some)
            .map_err(|e| LedgerError::Corrupt {
                path: ledger.path().to_owned(),
                key: format!("annex/{number}"),
                message: e.to_string(),
            }),
        None => Ok(None),
    }
}

fn load_invoice(ledger: &Ledger, number: &str) -> Result<Invoice, LedgerError> {
    let json = ledger
        .invoice(number)?
        .ok_or_else(|| refused(format!("no invoice {number}")))?;
    serde_json::from_slice(&json).map_err(|e| LedgerError::Corrupt {
        path: ledger.path().to_owned(),
        key: format!("invoices/{number}"),
        message: e.to_string(),
    })
}

/// Stores a document issued outside a close and posts it to the payments ledger in the
/// same batch: an invoice as the close does ([`crate::payments::post_invoice`]), a credit
/// note against the invoice it credits ([`crate::payments::post_credit_note`]).
/// `extra` collects the entries posted so far in this transaction.
fn put(
    txn: &mut Txn,
    inv: &Invoice,
    dir: &str,
    extra: &mut Vec<crate::payments::Entry>,
) -> Result<(), LedgerError> {
    let json = serde_json::to_vec_pretty(inv).expect("invoice serializes");
    txn.put_document(&inv.number, &json, dir)?;
    let ledger = txn.ledger();
    let tx = txn.pay()?;
    if inv.is_credit_note() {
        crate::payments::post_credit_note(ledger, tx, extra, &json)
    } else {
        let posted =
            crate::payments::post_invoice(&json, tx).map_err(|message| LedgerError::Corrupt {
                path: ledger.path().to_owned(),
                key: format!("invoices/{}", inv.number),
                message,
            })?;
        extra.extend(posted);
        Ok(())
    }
}

/// What the payment block of an invoice asks for: the total less the credit on the
/// account that pays it first (see [`crate::payments::derive()`]). A direct-debit
/// invoice pre-notifies that amount (what its collection will take); a transfer invoice
/// states it as `amount` and its EPC QR code asks for it (no QR code when nothing is left
/// to pay). `extra` = entries of the running transaction.
pub fn prenotify(
    cfg: &Config,
    ledger: &Ledger,
    extra: &[crate::payments::Entry],
    inv: &mut Invoice,
) -> Result<(), LedgerError> {
    let Some(pay) = inv.payment.as_mut() else {
        return Ok(());
    };
    let add = crate::payments::Entry {
        id: 0,
        account: inv.account_id.clone(),
        date: inv.issue_date.clone(),
        kind: crate::payments::Kind::Invoice,
        amount: inv.total.clone(),
        invoice: Some(inv.number.clone()),
        due_date: Some(inv.due_date.clone()),
        source: String::new(),
        text: String::new(),
    };
    let open = crate::payments::open_after(ledger, &inv.account_id, extra, add, &inv.number)?;
    let open = open.max(0);
    pay.amount = Some(format_cents(open));
    if pay.method == "transfer" {
        pay.epc_qr = (open > 0).then(|| {
            crate::sepa::epc_qr_payload(
                &cfg.seller.bic,
                &cfg.seller.name,
                &pay.iban,
                open,
                inv.payment_reference.as_deref().unwrap_or(""),
            )
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
/// Issues a credit note on invoice `number` (and, with `reissue`, a corrected invoice
/// for the same lines under the current accounts and VAT rules). Never credits more
/// than is still creditable, per line and per VAT group; the last credit of a group
/// takes exactly its remaining VAT so that rounding never credits a cent too much.
pub fn credit(
    cfg: &Config,
    ledger: &Ledger,
    accounts: &Accounts,
    number: &str,
    what: CreditWhat,
    reason: &str,
    reissue: bool,
    issue: NaiveDate,
) -> Result<CreditOutcome, LedgerError> {
    flush_pending(cfg, ledger)?;
    if reason.trim().is_empty() {
        return Err(refused("a credit note needs a --reason"));
    }
    if reissue && what != CreditWhat::Full {
        return Err(refused(
            "--reissue replaces the whole invoice: credit it in full (no --lines or --amount)",
        ));
    }
    let (credit_note, reissued) = ledger.issue(|txn| {
        let orig = load_invoice(txn.ledger(), number)?;
        if orig.is_credit_note() {
            return Err(refused(format!(
                "{number} is a credit note, not an invoice"
            )));
        }
        let mut done: Credited = match txn.ledger().credits(number)? {
            Some(v) => serde_json::from_slice(&v).map_err(|e| LedgerError::Corrupt {
                path: txn.ledger().path().to_owned(),
                key: format!("credits/{number}"),
                message: e.to_string(),
            })?,
            None => Credited::default(),
        };
        // Remaining per group.
        let mut group_left: BTreeMap<String, (i64, i64, Category, Decimal)> = BTreeMap::new();
        for r in &orig.vat_breakdown {
            let c = Category::parse(&r.category).unwrap_or(Category::S);
            let rate: Decimal = r.rate.parse().unwrap_or(Decimal::ZERO);
            let k = group_key(c, rate);
            let (cn, cv) = done.groups.get(&k).copied().unwrap_or((0, 0));
            group_left.insert(
                k,
                (
                    parse_cents(&r.taxable_amount).unwrap_or(0) - cn,
                    parse_cents(&r.vat_amount).unwrap_or(0) - cv,
                    c,
                    rate,
                ),
            );
        }
        let mut lines: Vec<Line> = Vec::new();
        let mut take: BTreeMap<String, i64> = BTreeMap::new();
        // Fee lines credited by this note: (line, cents).
        let mut fees_credited: Vec<(usize, i64)> = Vec::new();
        let credit_line = |i: usize, l: &Line, cents: i64| {
            let (c, r) = l.vat();
            Line::Credit {
                description: format!("Credit of line {i}: {}", l.description()),
                line: Some(i),
                amount: format_cents(-cents),
                vat_category: c.code().into(),
                vat_rate: r.normalize().to_string(),
            }
        };
        match &what {
            CreditWhat::Full | CreditWhat::Lines(_) => {
                let chosen: Vec<usize> = match &what {
                    CreditWhat::Lines(v) => {
                        for &i in v {
                            if i == 0 || i > orig.lines.len() {
                                return Err(refused(format!(
                                    "invoice {number} has lines 1..={}, not {i}",
                                    orig.lines.len()
                                )));
                            }
                        }
                        let mut v = v.clone();
                        v.sort_unstable();
                        v.dedup();
                        v
                    }
                    _ => (1..=orig.lines.len()).collect(),
                };
                for i in chosen {
                    let l = &orig.lines[i - 1];
                    let left_line = l.cents() - done.lines.get(&i).copied().unwrap_or(0);
                    // A late-payment fee line: outside VAT, limited by what is left on
                    // the line only; credited as a (negative) fee line, after VAT.
                    if let Line::Fee {
                        fee_id,
                        fee,
                        invoice,
                        description,
                        ..
                    } = l
                    {
                        if left_line <= 0 {
                            if matches!(what, CreditWhat::Lines(_)) {
                                return Err(refused(format!(
                                    "line {i} of invoice {number} has nothing left to credit"
                                )));
                            }
                            continue;
                        }
                        *done.lines.entry(i).or_default() += left_line;
                        fees_credited.push((i, left_line));
                        lines.push(Line::Fee {
                            fee_id: fee_id.clone(),
                            fee: fee.clone(),
                            invoice: invoice.clone(),
                            description: format!("Credit of line {i}: {description}"),
                            amount: format_cents(-left_line),
                        });
                        continue;
                    }
                    let (c, r) = l.vat();
                    let k = group_key(c, r);
                    let left_group =
                        group_left.get(&k).map_or(0, |g| g.0) - take.get(&k).copied().unwrap_or(0);
                    let cents = left_line.min(left_group);
                    if cents <= 0 {
                        if matches!(what, CreditWhat::Lines(_)) {
                            return Err(refused(format!(
                                "line {i} of invoice {number} has nothing left to credit"
                            )));
                        }
                        continue;
                    }
                    *take.entry(k).or_default() += cents;
                    *done.lines.entry(i).or_default() += cents;
                    lines.push(credit_line(i, l, cents));
                }
            }
            CreditWhat::Amount(cents) => {
                if *cents <= 0 {
                    return Err(refused("--amount must be more than 0"));
                }
                if group_left.len() != 1 {
                    return Err(refused(format!(
                        "invoice {number} has {} VAT groups: credit it by --lines",
                        group_left.len()
                    )));
                }
                let (k, (left, _, c, r)) = group_left.iter().next().expect("one group");
                if cents > left {
                    return Err(refused(format!(
                        "only {} (net) of invoice {number} is still creditable, not {}",
                        format_cents(*left),
                        format_cents(*cents)
                    )));
                }
                take.insert(k.clone(), *cents);
                lines.push(Line::Credit {
                    description: format!("Credit: {}", reason.trim()),
                    line: None,
                    amount: format_cents(-cents),
                    vat_category: c.code().into(),
                    vat_rate: r.normalize().to_string(),
                });
            }
        }
        if lines.is_empty() {
            return Err(refused(format!(
                "invoice {number} has nothing left to credit (credit notes so far: {})",
                done.credit_notes.join(", ")
            )));
        }
        // VAT per group: half-up on the credited net, the remainder on the last credit.
        let mut breakdown = Vec::new();
        let (mut net, mut vat) = (0i64, 0i64);
        for (k, cents) in &take {
            let (left_net, left_vat, c, r) = group_left[k];
            let v = if *cents == left_net {
                left_vat
            } else {
                vat_cents(*cents, r).min(left_vat)
            };
            let e = done.groups.entry(k.clone()).or_default();
            e.0 += cents;
            e.1 += v;
            net += cents;
            vat += v;
            let reason = orig
                .vat_breakdown
                .iter()
                .find(|b| b.category == c.code())
                .map(|b| b.exemption_reason.clone())
                .unwrap_or_default();
            breakdown.push(crate::vat::row(
                &Treatment {
                    category: c,
                    rate: r,
                    reason,
                },
                -cents,
                -v,
            ));
        }
        let fee_cents: i64 = fees_credited.iter().map(|f| f.1).sum();
        let (counter, prefix) = credit_series(&cfg.numbering, issue.year());
        let n = txn.next(&counter)?;
        let cn = Invoice {
            number: format_number(&prefix, cfg.numbering.yearly_reset, issue.year(), n),
            account_id: orig.account_id.clone(),
            period: orig.period.clone(),
            currency: orig.currency.clone(),
            issue_date: issue.to_string(),
            due_date: issue.to_string(),
            seller: orig.seller.clone(),
            customer: orig.customer.clone(),
            lines,
            net_total: format_cents(-net),
            vat_rate: orig.vat_rate.clone(),
            vat_total: format_cents(-vat),
            total: format_cents(-(net + vat + fee_cents)),
            late_records: 0,
            document_type: "credit_note".into(),
            period_start: orig.period_start.clone(),
            period_end: orig.period_end.clone(),
            vat_breakdown: breakdown,
            vat_note: orig.vat_note.clone(),
            credited_invoice: Some(DocRef {
                number: orig.number.clone(),
                issue_date: orig.issue_date.clone(),
            }),
            replaces: None,
            reason: reason.trim().to_owned(),
            final_invoice: false,
            payment_reference: None,
            payment: None,
            usage_by_day: Vec::new(),
            itemised: None,
        };
        // A direct-debit invoice not collected yet: the credit note pre-notifies what its
        // collection will take now.
        let mut extra = Vec::new();
        let mut cn = cn;
        if let (Some(sepa), Some(a)) = (&cfg.sepa, accounts.get(&orig.account_id)) {
            let uncollected = crate::payments::collection(txn.ledger(), &orig.number)?.is_none();
            if a.payment_method == crate::accounts::PaymentMethod::DirectDebit && uncollected {
                let add = crate::payments::Entry {
                    id: 0,
                    account: orig.account_id.clone(),
                    date: cn.issue_date.clone(),
                    kind: crate::payments::Kind::CreditNote,
                    amount: cn.total.clone(),
                    invoice: Some(orig.number.clone()),
                    due_date: None,
                    source: String::new(),
                    text: String::new(),
                };
                let open = crate::payments::open_after(
                    txn.ledger(),
                    &orig.account_id,
                    &extra,
                    add,
                    &orig.number,
                )?;
                cn.payment = Some(PaymentInfo {
                    method: "direct_debit".into(),
                    iban: crate::sepa::mask_iban(&a.iban),
                    epc_qr: None,
                    mandate_id: Some(a.mandate_id.clone()),
                    creditor_id: Some(sepa.creditor_id.clone()),
                    collection_date: Some(orig.due_date.clone()),
                    amount: Some(format_cents(open.max(0))),
                });
            }
        }
        done.credit_notes.push(cn.number.clone());
        put(txn, &cn, &orig.period, &mut extra)?;
        txn.put_credits(
            number,
            &serde_json::to_vec(&done).expect("credits serialize"),
        );
        let reissued = if reissue {
            let acc = accounts.get(&orig.account_id);
            let mut d = Draft::new(cfg, &orig.account_id, acc)?;
            for (i, l) in orig.lines.iter().enumerate() {
                d.copy(l);
                // A fee line is billed again for what this credit note took off it (it
                // is still owed; the full credit cancelled it on the original).
                if let Some(&(_, cents)) = fees_credited.iter().find(|f| f.0 == i + 1) {
                    let mut l = l.clone();
                    if let Line::Fee { amount, .. } = &mut l {
                        *amount = format_cents(cents);
                    }
                    d.lines.push(l);
                }
            }
            let (counter, prefix) = invoice_series(&cfg.numbering, issue.year());
            let n = txn.next(&counter)?;
            let start = NaiveDate::parse_from_str(&orig.period_start, "%Y-%m-%d");
            let end = NaiveDate::parse_from_str(&orig.period_end, "%Y-%m-%d");
            let bounds = match (start, end) {
                (Ok(s), Ok(e)) => (s, e),
                _ => period_bounds(orig.period.parse().map_err(refused)?),
            };
            let mut inv = d.finish(
                format_number(&prefix, cfg.numbering.yearly_reset, issue.year(), n),
                &orig.period,
                bounds,
                &orig.currency,
                issue,
                orig.late_records,
            );
            inv.replaces = Some(DocRef {
                number: orig.number.clone(),
                issue_date: orig.issue_date.clone(),
            });
            inv.reason = reason.trim().to_owned();
            inv.final_invoice = orig.final_invoice;
            attach_payment(cfg, acc, &mut inv);
            // The same records as the original: its chart, and its annex renumbered.
            inv.usage_by_day = orig.usage_by_day.clone();
            if let Some(a) = acc {
                let orig_annex = stored_annex(txn.ledger(), &orig.number)?;
                if let Some((state, annex)) =
                    crate::itemise::reissue_annex(a, &orig, orig_annex.as_ref(), &inv)
                {
                    inv.itemised = Some(state);
                    if let Some(annex) = annex {
                        txn.put_annex(
                            &inv.number,
                            &serde_json::to_vec_pretty(&annex).expect("annex serializes"),
                        );
                    }
                }
            }
            prenotify(cfg, txn.ledger(), &extra, &mut inv)?;
            put(txn, &inv, &orig.period, &mut extra)?;
            Some(inv)
        } else {
            None
        };
        Ok((cn, reissued))
    })?;
    metrics::counter!(crate::telemetry::CREDIT_NOTES).increment(1);
    if reissued.is_some() {
        metrics::counter!(crate::telemetry::INVOICES).increment(1);
    }
    let files = flush_pending(cfg, ledger)?;
    Ok(CreditOutcome {
        credit_note,
        reissued,
        files,
    })
}

/// The record of an account's final invoice (`finals` column family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalRecord {
    pub account_id: String,
    pub date: String,
    pub invoice: String,
    /// File commit sequence when it was issued: it billed the account's usage of files
    /// up to this sequence (absent in records written before this was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The last closed period when it was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_closed: Option<String>,
}

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
    let window = crate::itemise::Window::for_final(
        ledger,
        ledger.seq()?,
        chart_of(&ledger.last_closed()?)?,
        date,
    )?;
    let prepared = crate::itemise::prepare(cfg, ledger, accounts, window, [account_id]);
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
        let mut d = Draft::new(cfg, account_id, Some(acc))?;
        for (k, t) in &usage {
            d.usage(k, t);
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
            if f.amount != "0.00" {
                d.lines.push(Line::Fee {
                    fee_id: f.id,
                    fee: f.kind,
                    invoice: f.invoice,
                    description: f.description,
                    amount: f.amount,
                });
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
        let window = crate::itemise::Window::for_final(l, l.seq()?, chart_of(&last)?, date)?;
        let derived = prepared.complete(cfg, l, accounts, window, &rows);
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

fn next_period(p: Period) -> Period {
    if p.month == 12 {
        Period {
            year: p.year + 1,
            month: 1,
        }
    } else {
        Period {
            year: p.year,
            month: p.month + 1,
        }
    }
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
