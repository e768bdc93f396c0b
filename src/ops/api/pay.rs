//! The payments operations behind the API and the CLI's direct path (TMF676-flavoured
//! documents): an account's statement, the payments list, recording a manual payment,
//! the suspense list and assigning a suspense item. Like [`super::ops`], every function
//! is blocking and knows nothing about HTTP; both paths build the same documents.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ops::{AccountRef, ApiError, Money, Paged};
use crate::ingest::engine::Engine;
use crate::payments::{self as p, Kind, PayError};
use crate::rate::money::{format_cents, parse_cents, Cents};
use crate::store::PayCf;

impl From<PayError> for ApiError {
    fn from(e: PayError) -> ApiError {
        match e {
            PayError::Ledger(l) => l.into(),
            PayError::NotFound(m) => ApiError::not_found(m),
            PayError::Refused(m) => ApiError::unprocessable("payment_refused", m),
        }
    }
}

fn money(unit: &str, cents: i64) -> Money {
    Money {
        unit: unit.to_owned(),
        value: format_cents(cents),
    }
}

/// What a path segment or query value keeps unescaped (RFC 3986 unreserved characters).
pub const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An account id in a path: RFC 3986's unreserved characters stay, every other byte is
/// `%XX` (as `crate::cli::client::encode`, which calls this API).
fn account_ref(id: &str) -> AccountRef {
    AccountRef {
        id: id.to_owned(),
        href: format!(
            "/api/v1/accounts/{}",
            percent_encoding::utf8_percent_encode(id, UNRESERVED)
        ),
    }
}

/// Parses an optional `YYYY-MM-DD` (default: today, UTC).
pub fn date_or_today(d: Option<&str>, what: &str) -> Result<NaiveDate, ApiError> {
    match d {
        None => Ok(chrono::Utc::now().date_naive()),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map_err(|_| ApiError::bad_request(format!("{what} `{s}` is not YYYY-MM-DD"))),
    }
}

// ---------------------------------------------------------------------------
// Statement
// ---------------------------------------------------------------------------

/// One ledger entry of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntryDoc {
    pub id: u64,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `invoice`, `credit_note`, `payment`, `refund`, `return` or `fee`.
    pub kind: String,
    /// Signed: positive raises what the customer owes, negative lowers it.
    pub amount: Money,
    /// The balance after this entry (entries in posting order).
    pub running_balance: Money,
    /// The bill this entry belongs to; absent for entries on account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_no: Option<String>,
    /// Due date (invoice entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_due_date: Option<String>,
    /// Where it came from: `close 2026-10`, `credit note CN-…`, a bank entry, `manual`, …
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One open item: a bill with what is credited, paid and still open (derived).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenItemDoc {
    pub bill_no: String,
    pub bill_date: String,
    pub payment_due_date: String,
    /// The bill's total (with late-payment fee lines).
    pub total: Money,
    /// Credit notes on it.
    pub credited: Money,
    /// Settled by payments (`total − credited − open`).
    pub paid: Money,
    pub open: Money,
    /// `open`, `partially_paid`, `paid`, `overdue` or `credited`.
    pub status: String,
    /// Direct debit state: `pending`, `settled` or `returned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_debit: Option<String>,
    /// The bill's latest delivery to the customer, once one was queued (docs/delivery.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<crate::billing::delivery::DeliveryDoc>,
}

/// A late-payment fee waiting for the next bill (not in the balance yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingFeeDoc {
    /// `costs/<billNo>`, `compensation/<billNo>` or `interest/<billNo>`.
    pub id: String,
    /// `collection_costs`, `compensation` or `interest`.
    pub kind: String,
    /// The overdue bill it is for.
    pub bill_no: String,
    pub amount: Money,
    pub description: String,
    /// Interest: the exact accrued amount (not rounded) and the span it covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accrued: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// An account's statement: its ledger entries, open items, pending fees and balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatementDoc {
    pub account: AccountRef,
    /// Statuses (overdue) as of this date.
    pub as_of: String,
    /// Positive: owed by the customer; negative: credit on the account.
    pub balance: Money,
    pub entries: Vec<LedgerEntryDoc>,
    pub open_items: Vec<OpenItemDoc>,
    pub pending_fees: Vec<PendingFeeDoc>,
}

fn status_name(s: p::Status) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The statement of an account as of a date.
pub fn statement(
    engine: &Engine,
    account: &str,
    as_of: NaiveDate,
) -> Result<StatementDoc, ApiError> {
    if engine.reference().accounts.get(account).is_none() {
        return Err(ApiError::not_found(format!("no account `{account}`")));
    }
    let unit = engine.currency();
    let v = p::view(&engine.ledger, account, as_of, &unit, &[])?;
    let mut run = 0i64;
    let entries = v
        .entries
        .iter()
        .map(|e| {
            run += e.cents();
            LedgerEntryDoc {
                id: e.id,
                date: e.date.to_string(),
                kind: e.kind.name().to_owned(),
                amount: money(&unit, e.cents()),
                running_balance: money(&unit, run),
                bill_no: e.invoice.clone(),
                payment_due_date: e.due_date.map(|d| d.to_string()),
                source: e.source.clone(),
                description: (!e.text.is_empty()).then(|| e.text.clone()),
            }
        })
        .collect();
    let mut deliveries = crate::billing::delivery::all_states(&engine.ledger)?;
    let open_items = v
        .items
        .iter()
        .map(|it| OpenItemDoc {
            delivery: deliveries.remove(&it.invoice).and_then(|mut d| d.pop()),
            bill_no: it.invoice.clone(),
            bill_date: it.issue_date.clone(),
            payment_due_date: it.due_date.clone(),
            total: money(&unit, it.total.0),
            credited: money(&unit, it.credited.0),
            paid: money(&unit, it.paid.0),
            open: money(&unit, it.open_cents),
            status: status_name(it.status),
            direct_debit: it.collection.clone(),
        })
        .collect();
    let pending_fees = v
        .pending_fees
        .iter()
        .map(|f| PendingFeeDoc {
            id: f.id.clone(),
            kind: f.kind.clone(),
            bill_no: f.invoice.clone(),
            amount: money(&unit, f.amount.0),
            description: f.description.clone(),
            accrued: f.accrued.clone(),
            from: f.from.clone(),
            to: f.to.clone(),
        })
        .collect();
    Ok(StatementDoc {
        account: account_ref(account),
        as_of: v.as_of,
        balance: money(&unit, v.balance_cents),
        entries,
        open_items,
        pending_fees,
    })
}

/// The statement as text for operators (the CLI prints it from either path).
pub fn statement_text(d: &StatementDoc) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "Statement of account {} as of {} ({})",
        d.account.id, d.as_of, d.balance.unit
    );
    let _ = writeln!(
        o,
        "{:<10}  {:<11}  {:<11}  {:>10}  {:>10}  source",
        "date", "kind", "invoice", "amount", "balance"
    );
    for e in &d.entries {
        let _ = writeln!(
            o,
            "{:<10}  {:<11}  {:<11}  {:>10}  {:>10}  {}{}",
            e.date,
            e.kind,
            e.bill_no.as_deref().unwrap_or("-"),
            e.amount.value,
            e.running_balance.value,
            e.source,
            e.description
                .as_ref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(o, "\nOpen items");
    let _ = writeln!(
        o,
        "{:<11}  {:<10}  {:<10}  {:>10}  {:>10}  {:>10}  {:>10}  status",
        "invoice", "issued", "due", "total", "credited", "paid", "open"
    );
    for it in &d.open_items {
        let _ = writeln!(
            o,
            "{:<11}  {:<10}  {:<10}  {:>10}  {:>10}  {:>10}  {:>10}  {}{}",
            it.bill_no,
            it.bill_date,
            it.payment_due_date,
            it.total.value,
            it.credited.value,
            it.paid.value,
            it.open.value,
            it.status,
            it.direct_debit
                .as_ref()
                .map(|c| format!(" (direct debit {c})"))
                .unwrap_or_default()
                + &it
                    .delivery
                    .as_ref()
                    .map(|d| format!(" [delivery {}]", d.status))
                    .unwrap_or_default()
        );
    }
    if !d.pending_fees.is_empty() {
        let _ = writeln!(o, "\nFees for the next invoice");
        for f in &d.pending_fees {
            let _ = writeln!(o, "{:<24}  {:>10}  {}", f.id, f.amount.value, f.description);
        }
    }
    // The document may come from the daemon: its balance is parsed here, at the edge.
    let balance = match d.balance.value.parse::<Cents>() {
        Ok(Cents(b)) => format!(
            "{} {}",
            format_cents(b.abs()),
            if b > 0 {
                "owed by the customer"
            } else if b < 0 {
                "credit on the account"
            } else {
                "(settled)"
            }
        ),
        Err(e) => format!("{} ({e})", d.balance.value),
    };
    let _ = writeln!(o, "\nBalance: {balance}");
    o
}

// ---------------------------------------------------------------------------
// Payments
// ---------------------------------------------------------------------------

/// A payment received (TMF676 `Payment`, one per ledger entry: a bank credit paying an
/// invoice and leaving a rest is two, the rest on account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDoc {
    /// The ledger entry id.
    pub id: u64,
    pub account: AccountRef,
    /// `YYYY-MM-DD`.
    pub payment_date: String,
    /// Positive.
    pub total_amount: Money,
    /// The bill it pays; absent: on account (credit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_no: Option<String>,
    /// `manual`, or the bank entry identity of an imported statement.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The filter of the payments list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PaymentsQuery {
    /// Only payments of this account.
    #[param(example = "A1")]
    pub account: Option<String>,
}

fn payment_doc(unit: &str, e: &p::Entry) -> PaymentDoc {
    PaymentDoc {
        id: e.id,
        account: account_ref(&e.account),
        payment_date: e.date.to_string(),
        total_amount: money(unit, -e.cents()),
        bill_no: e.invoice.clone(),
        source: e.source.clone(),
        description: (!e.text.is_empty()).then(|| e.text.clone()),
    }
}

/// Payments in posting order (ledger entry id), optionally of one account.
pub fn payments(
    engine: &Engine,
    account: Option<&str>,
    offset: usize,
    limit: usize,
) -> Result<Paged<PaymentDoc>, ApiError> {
    let unit = engine.currency();
    let prefix = match account {
        Some(a) => {
            let mut k = a.as_bytes().to_vec();
            k.push(0);
            k
        }
        None => Vec::new(),
    };
    let l = &engine.ledger;
    let mut all = Vec::new();
    for (k, v) in l.pay_scan(PayCf::Entries, &prefix)? {
        let e: p::Entry = l.pay_json(PayCf::Entries, &k, &v)?;
        if e.kind == Kind::Payment {
            all.push(e);
        }
    }
    all.sort_by_key(|e| e.id);
    Ok(Paged {
        total: all.len(),
        items: all
            .iter()
            .skip(offset)
            .take(limit)
            .map(|e| payment_doc(&unit, e))
            .collect(),
    })
}

/// The body of `POST /api/v1/payments`: a manual payment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentInput {
    #[schema(example = "A1")]
    pub account: String,
    /// Positive, at most 2 decimals, in the tariff currency.
    pub total_amount: AmountInput,
    /// `YYYY-MM-DD` (default today).
    #[serde(default)]
    #[schema(example = "2026-10-20", pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub payment_date: Option<String>,
    /// Pay this bill up to its open amount (the rest becomes credit); default on account.
    #[serde(default)]
    pub bill_no: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// An amount given by the caller: a decimal string and, optionally, its currency (which
/// must then be the tariff currency).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AmountInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "EUR")]
    pub unit: Option<String>,
    /// Positive, at most 2 decimals.
    #[schema(example = "12.10", pattern = r"^[0-9]{1,10}(\.[0-9]{1,2})?$")]
    pub value: String,
}

/// What recording (or assigning) a payment did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResultDoc {
    pub account: AccountRef,
    pub total_amount: Money,
    /// The part on the bill.
    pub on_bill: Money,
    /// The rest, credit on the account.
    pub on_account: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_no: Option<String>,
    /// The suspense item assigned (assignments only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspense_id: Option<u64>,
}

/// Records a manual payment.
pub fn record(engine: &Engine, input: &PaymentInput) -> Result<PaymentResultDoc, ApiError> {
    let unit = engine.currency();
    if let Some(u) = input.total_amount.unit.as_deref().filter(|u| *u != unit) {
        return Err(ApiError::unprocessable(
            "payment_refused",
            format!("the amount is in {u}, the ledger keeps {unit}"),
        ));
    }
    let cents = parse_cents(&input.total_amount.value).map_err(|m| {
        ApiError::unprocessable("payment_refused", format!("totalAmount.value: {m}"))
    })?;
    let date = date_or_today(input.payment_date.as_deref(), "paymentDate")?;
    let r = engine.reference();
    let (on, rest) = p::receipts::record(
        &engine.ledger,
        &r.accounts,
        &input.account,
        cents,
        date,
        input.bill_no.as_deref(),
        input.description.as_deref().unwrap_or(""),
    )?;
    Ok(PaymentResultDoc {
        account: account_ref(&input.account),
        total_amount: money(&unit, cents),
        on_bill: money(&unit, on),
        on_account: money(&unit, rest),
        bill_no: input.bill_no.clone(),
        suspense_id: None,
    })
}

// ---------------------------------------------------------------------------
// Suspense
// ---------------------------------------------------------------------------

/// A bank credit that matched no invoice, waiting for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuspenseDoc {
    pub id: u64,
    pub date: String,
    pub amount: Money,
    /// The payer's name as the bank gave it.
    pub name: String,
    /// The payer's IBAN, masked.
    pub iban: String,
    /// Remittance text.
    pub text: String,
    /// The statement file it came from.
    pub file: String,
}

/// The suspense list in id order.
pub fn suspense(
    engine: &Engine,
    offset: usize,
    limit: usize,
) -> Result<Paged<SuspenseDoc>, ApiError> {
    let unit = engine.currency();
    let all = p::receipts::suspense(&engine.ledger)?;
    Ok(Paged {
        total: all.len(),
        items: all
            .iter()
            .skip(offset)
            .take(limit)
            .map(|s| SuspenseDoc {
                id: s.id,
                date: s.date.clone(),
                amount: money(&unit, s.amount.0),
                name: s.name.clone(),
                iban: crate::rate::iban::mask_iban(&s.iban),
                text: s.text.clone(),
                file: s.file.clone(),
            })
            .collect(),
    })
}

/// The body of `POST /api/v1/payments/suspense/{id}/assign`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssignInput {
    #[schema(example = "A1")]
    pub account: String,
    /// Pay this bill (the rest becomes credit); default on account.
    #[serde(default)]
    pub bill_no: Option<String>,
}

/// Assigns a suspense item to an account (and bill).
pub fn assign(engine: &Engine, id: u64, input: &AssignInput) -> Result<PaymentResultDoc, ApiError> {
    let unit = engine.currency();
    let r = engine.reference();
    let (on, rest) = p::receipts::assign(
        &engine.ledger,
        &r.accounts,
        id,
        &input.account,
        input.bill_no.as_deref(),
    )?;
    Ok(PaymentResultDoc {
        account: account_ref(&input.account),
        total_amount: money(&unit, on + rest),
        on_bill: money(&unit, on),
        on_account: money(&unit, rest),
        bill_no: input.bill_no.clone(),
        suspense_id: Some(id),
    })
}
