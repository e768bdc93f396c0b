//! The operations behind the API, shared by the HTTP handlers and the CLI's direct
//! (no daemon) path, so both produce the same documents.
//!
//! Every function here is blocking (RocksDB, files): the HTTP handlers call them through
//! `spawn_blocking`. Names follow TM Forum where they fit (TMF635 usage, TMF678 customer
//! bill); money is `{"unit": "EUR", "value": "12.34"}` with a decimal string.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub use crate::billing::delivery::DeliveryDoc;
use crate::billing::{close_cycle, Invoice, Line, Period};
use crate::ingest::engine::{Engine, Reference};
use crate::rate::accounts::{Account, AccountIndex, Accounts};
use crate::rate::money::format_micros;
use crate::rate::service::Service;
use crate::store::{LedgerError, LineSet};

/// An API error: HTTP status, a stable code and a message for people. Messages never
/// carry subscriber numbers or internal details such as stack traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Individual errors (e.g. every problem of a refused tariff).
    pub errors: Vec<String>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad_request", m)
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        ApiError::new(404, "not_found", m)
    }
    pub fn unprocessable(code: &'static str, m: impl Into<String>) -> ApiError {
        ApiError::new(422, code, m)
    }
    /// An internal error: logged in full, answered with a generic message.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "API request failed");
        ApiError::new(500, "internal", "internal error; see the daemon log")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        match e {
            LedgerError::Refused(m) => ApiError::new(409, "conflict", m),
            LedgerError::Busy(_) => ApiError::new(503, "busy", "the database is busy"),
            other => ApiError::internal(other),
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable code, e.g. `unauthorized`, `not_found`, `invalid_accounts`.
    pub code: String,
    /// The HTTP status as a number.
    pub status: u16,
    /// What went wrong, for people.
    pub message: String,
    /// Individual problems, when there are several (file, line and reason each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl From<&ApiError> for ErrorBody {
    fn from(e: &ApiError) -> ErrorBody {
        ErrorBody {
            code: e.code.to_owned(),
            status: e.status,
            message: e.message.clone(),
            errors: e.errors.clone(),
        }
    }
}

/// An amount of money: currency and a decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Money {
    /// ISO 4217 currency code.
    #[schema(example = "EUR")]
    pub unit: String,
    /// Decimal string (cents for bills, 6 decimals for rated usage).
    #[schema(example = "12.34")]
    pub value: String,
}

impl Money {
    fn new(unit: &str, value: impl Into<String>) -> Money {
        Money {
            unit: unit.to_owned(),
            value: value.into(),
        }
    }
}

/// `offset`/`limit` of a list request.
#[derive(Debug, Clone, Copy, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Items to skip (default 0).
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<u64>,
    /// Items to return (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
}

impl Page {
    /// (offset, limit) after defaults and checks.
    pub fn resolve(&self) -> Result<(usize, usize), ApiError> {
        let offset = self.offset.unwrap_or(0);
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::bad_request(format!(
                "limit {limit} is outside 1..=1000"
            )));
        }
        if offset > 1_000_000_000 {
            return Err(ApiError::bad_request(format!(
                "offset {offset} is above 1000000000"
            )));
        }
        Ok((offset as usize, limit as usize))
    }
}

/// One page of a list, with the total count (sent as `X-Total-Count`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: usize,
}

fn page<T: Clone>(all: &[T], offset: usize, limit: usize) -> Vec<T> {
    all.iter().skip(offset).take(limit).cloned().collect()
}

// ---------------------------------------------------------------------------
// Accounts
// ---------------------------------------------------------------------------

/// A customer account (a line of the accounts file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountDoc {
    pub id: String,
    pub href: String,
    pub plan: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// ISO 3166 alpha-2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `nl` or `en`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// `/api/v1/accounts/{id}` with the id percent-encoded.
fn account_href(id: &str) -> String {
    let mut out = String::from("/api/v1/accounts/");
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl From<&Account> for AccountDoc {
    fn from(a: &Account) -> AccountDoc {
        AccountDoc {
            id: a.account_id.clone(),
            href: account_href(&a.account_id),
            plan: a.plan.clone(),
            name: opt(&a.name),
            street: opt(&a.street),
            postcode: opt(&a.postcode),
            city: opt(&a.city),
            country: opt(&a.country),
            email: opt(&a.email),
            language: opt(&a.language),
        }
    }
}

/// The body of `PUT /api/v1/accounts/{id}`: the whole account (absent fields are empty).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    /// Optional; must equal the id in the path when given.
    #[serde(default)]
    pub id: Option<String>,
    /// Ignored (accepted so that a fetched account can be sent back as is).
    #[serde(default)]
    pub href: Option<String>,
    pub plan: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub street: Option<String>,
    #[serde(default)]
    pub postcode: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    /// `consumer` (default) or `business`.
    #[serde(default)]
    pub customer_type: Option<String>,
    /// `transfer` (default) or `direct_debit`.
    #[serde(default)]
    pub payment_method: Option<String>,
    #[serde(default)]
    pub iban: Option<String>,
    #[serde(default)]
    pub bic: Option<String>,
    #[serde(default)]
    pub mandate_id: Option<String>,
    /// `YYYY-MM-DD`.
    #[serde(default)]
    pub mandate_date: Option<String>,
    /// VAT identification number (business accounts only).
    #[serde(default)]
    pub vat_id: Option<String>,
    /// Peppol electronic address `scheme:id` (business accounts only).
    #[serde(default)]
    pub peppol_endpoint: Option<String>,
    /// Opt-in to an itemised bill (default false).
    #[serde(default)]
    pub itemised: Option<bool>,
    /// `none` or `last1` .. `last8` (default `last4`).
    #[serde(default)]
    pub masking: Option<String>,
    /// `email`, `peppol` or `none` (default: `email` when there is an address).
    #[serde(default)]
    pub delivery: Option<String>,
    /// Peppol participant id `0106:<KvK>` or `9944:<Dutch VAT ID>` (business accounts).
    #[serde(default)]
    pub peppol_id: Option<String>,
}

/// Accounts in id order.
pub fn accounts(engine: &Engine, offset: usize, limit: usize) -> Paged<AccountDoc> {
    let r = engine.reference();
    let list = &r.accounts.list;
    Paged {
        items: list
            .iter()
            .skip(offset)
            .take(limit)
            .map(AccountDoc::from)
            .collect(),
        total: list.len(),
    }
}

/// One account.
pub fn account(engine: &Engine, id: &str) -> Result<AccountDoc, ApiError> {
    engine
        .reference()
        .accounts
        .get(id)
        .map(AccountDoc::from)
        .ok_or_else(|| ApiError::not_found(format!("no account `{id}`")))
}

/// Creates or replaces an account: the accounts file is rewritten atomically (every
/// column kept, accounts in id order), validated exactly as at load (with the tariff in
/// service for the plan), and the engine reloads it. Returns the account and whether it
/// was created. The caller serializes upserts.
pub fn upsert_account(
    engine: &Engine,
    id: &str,
    input: AccountInput,
) -> Result<(AccountDoc, bool), ApiError> {
    if let Some(body_id) = &input.id {
        if body_id != id {
            return Err(ApiError::bad_request(format!(
                "the body's id `{body_id}` differs from the path's `{id}`"
            )));
        }
    }
    let path = &engine.cfg.accounts_file;
    let bytes = std::fs::read(path).map_err(ApiError::internal)?;
    let current = Accounts::parse(path, &bytes).map_err(|e| {
        ApiError::new(
            409,
            "accounts_file_broken",
            format!("the accounts file does not load, fix it first: {e}"),
        )
    })?;
    let s = |o: &Option<String>| o.as_deref().unwrap_or("").trim().to_owned();
    // The new row, column by column; every column the body does not carry is empty
    // (PUT replaces the account). Validation is the loader's, below.
    let row: Vec<String> = crate::rate::accounts::COLUMNS
        .iter()
        .map(|c| match *c {
            "account_id" => id.to_owned(),
            "plan" => input.plan.trim().to_owned(),
            "name" => s(&input.name),
            "street" => s(&input.street),
            "postcode" => s(&input.postcode),
            "city" => s(&input.city),
            "country" => s(&input.country),
            "email" => s(&input.email),
            "language" => s(&input.language),
            "customer_type" => s(&input.customer_type),
            "payment_method" => s(&input.payment_method),
            "iban" => s(&input.iban),
            "bic" => s(&input.bic),
            "mandate_id" => s(&input.mandate_id),
            "mandate_date" => s(&input.mandate_date),
            "vat_id" => s(&input.vat_id),
            "peppol_endpoint" => s(&input.peppol_endpoint),
            "itemised" => match input.itemised {
                Some(true) => "yes".into(),
                Some(false) | None => String::new(),
            },
            "masking" => s(&input.masking),
            "delivery" => s(&input.delivery),
            "peppol_id" => s(&input.peppol_id),
            _ => String::new(),
        })
        .collect();
    let mut rows: Vec<Vec<String>> = current.list.iter().map(|a| a.to_row().to_vec()).collect();
    let created = match rows.binary_search_by(|r| r[0].as_str().cmp(id)) {
        Ok(i) => {
            rows[i] = row;
            false
        }
        Err(i) => {
            rows.insert(i, row);
            true
        }
    };
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(crate::rate::accounts::COLUMNS)
        .map_err(ApiError::internal)?;
    for r in &rows {
        w.write_record(r).map_err(ApiError::internal)?;
    }
    let out = w
        .into_inner()
        .map_err(|e| ApiError::internal(e.into_error()))?;
    // Validate the new file as the loader will, before it replaces the old one.
    let parsed = Accounts::parse(path, &out)
        .map_err(|e| ApiError::unprocessable("invalid_account", format!("account refused: {e}")))?;
    let r = engine.reference();
    AccountIndex::build(&parsed, &r.tariff)
        .map_err(|e| ApiError::unprocessable("invalid_account", format!("account refused: {e}")))?;
    // Written in canonical form: every column, defaults spelled out; the delivery
    // columns (the last two, issue 15) only when an account uses them, so files of
    // accounts without them are written as before.
    let cols = crate::rate::accounts::COLUMNS.len();
    let keep = if parsed
        .list
        .iter()
        .any(|a| a.to_row()[cols - 2..].iter().any(|v| !v.is_empty()))
    {
        cols
    } else {
        cols - 2
    };
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(&crate::rate::accounts::COLUMNS[..keep])
        .map_err(ApiError::internal)?;
    for a in &parsed.list {
        w.write_record(&a.to_row()[..keep])
            .map_err(ApiError::internal)?;
    }
    let out = w
        .into_inner()
        .map_err(|e| ApiError::internal(e.into_error()))?;
    crate::fsutil::write_atomic(path, &out).map_err(ApiError::internal)?;
    if let Err(e) = engine.reload(false) {
        // The accounts file is valid; the tariff sources beside it are not.
        return Err(ApiError {
            errors: e.to_string().lines().map(str::to_owned).collect(),
            ..ApiError::new(
                409,
                "reload_refused",
                "the account was saved but the reload was refused; the snapshot in service stays",
            )
        });
    }
    let doc = engine
        .reference()
        .accounts
        .get(id)
        .map(AccountDoc::from)
        .ok_or_else(|| ApiError::internal("upserted account missing after reload"))?;
    tracing::info!(account = %id, created, "account upserted");
    Ok((doc, created))
}

// ---------------------------------------------------------------------------
// Usage
// ---------------------------------------------------------------------------

/// One line key of an account's usage in a period (TMF635 usage, aggregated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageItem {
    /// `rated` (not billed yet) or `billed` (by a closed cycle).
    pub status: String,
    pub service: String,
    pub destination: String,
    pub band: String,
    /// Unit of the volumes: seconds, messages or bytes.
    pub unit: String,
    /// Number of records.
    pub quantity: u64,
    /// Usage as recorded.
    pub usage_volume: u64,
    /// Usage after increments (what is charged).
    pub billed_volume: u64,
    /// Sum of the records' charges (6 decimals, not rounded to cents).
    pub charge: Money,
}

/// An account's usage dated in a period, per line key, billed and not yet billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageDoc {
    pub account_id: String,
    pub period: String,
    /// Rated but not billed yet, then billed; each by service, destination, band.
    pub usage: Vec<UsageItem>,
    pub rated_charge: Money,
    pub billed_charge: Money,
    /// While the period is open and the account's plan has allowances: each allowance,
    /// in plan order, drawn so far by the close's rule (docs/billing.md#allowances).
    /// Absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowances: Vec<AllowanceUse>,
}

/// An allowance of the account's plan in an open period: what the records so far drew.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowanceUse {
    pub name: String,
    pub service: String,
    /// seconds, messages or bytes.
    pub unit: String,
    pub included: u64,
    pub used: u64,
    pub remaining: u64,
}

/// The allowances of an open period drawn so far: the account's records dated in it
/// re-derived from `done/` and drawn as the close would.
fn allowances_so_far(
    engine: &Engine,
    r: &crate::ingest::engine::Reference,
    account: &str,
    p: &str,
) -> Result<Vec<AllowanceUse>, ApiError> {
    use crate::billing::itemise::{derive, Window};
    let Some(acc) = r.accounts.get(account) else {
        return Ok(Vec::new());
    };
    let has = r
        .tariff
        .plan_index(&acc.plan)
        .and_then(|i| r.tariff.plan_allowances(i))
        .is_some();
    let open = engine.ledger.close_record(p)?.is_none()
        && engine
            .ledger
            .last_closed()?
            .is_none_or(|last| last.as_str() < p);
    if !has || !open {
        return Ok(Vec::new());
    }
    let Some(m) = Window::month(p) else {
        return Ok(Vec::new());
    };
    let window =
        Window::of(&engine.ledger, p, engine.ledger.seq()?)?.with_allowances(&r.tariff, m, m);
    let rows: Vec<crate::store::UsageRow> = engine
        .ledger
        .unbilled(Some(account))?
        .into_iter()
        .filter(|u| u.month.as_str() <= p)
        .collect();
    let d = derive(&engine.cfg, &engine.ledger, &r.accounts, &window, &rows);
    let drawn = match d.drawn(account, &acc.plan) {
        Ok(Some(x)) => x,
        Ok(None) => return Ok(Vec::new()),
        Err(why) => {
            return Err(ApiError::new(
                409,
                "conflict",
                format!("the allowances cannot be derived: {why}"),
            ))
        }
    };
    Ok(drawn
        .allowances
        .iter()
        .zip(&drawn.used)
        .map(|(a, &used)| AllowanceUse {
            name: a.name.clone(),
            service: a.service.name().into(),
            unit: a.service.unit().into(),
            included: a.units,
            used,
            remaining: a.units.saturating_sub(used),
        })
        .collect())
}

/// Usage of `account` dated in `period`.
pub fn usage(engine: &Engine, account: &str, period: Period) -> Result<UsageDoc, ApiError> {
    let r = engine.reference();
    let currency = r.tariff.currency().to_owned();
    let p = period.to_string();
    let (unbilled, billed) = engine.ledger.account_month(account, &p)?;
    if r.accounts.get(account).is_none() && unbilled.0.is_empty() && billed.0.is_empty() {
        return Err(ApiError::not_found(format!("no account `{account}`")));
    }
    let mut items = Vec::new();
    let mut sums = [0i128; 2];
    for (i, (status, set)) in [("rated", &unbilled), ("billed", &billed)]
        .into_iter()
        .enumerate()
    {
        let set: &LineSet = set;
        for ((s, dest, band), t) in &set.0 {
            let service = Service::from_index(*s).unwrap_or(Service::Voice);
            sums[i] += t.charge_micros as i128;
            items.push(UsageItem {
                status: status.into(),
                service: service.name().into(),
                destination: dest.clone(),
                band: band.clone(),
                unit: service.unit().into(),
                quantity: t.count,
                usage_volume: t.usage,
                billed_volume: t.billed,
                charge: Money::new(&currency, format_micros(t.charge_micros as i128)),
            });
        }
    }
    let allowances = allowances_so_far(engine, &r, account, &p)?;
    Ok(UsageDoc {
        account_id: account.to_owned(),
        period: p,
        usage: items,
        rated_charge: Money::new(&currency, format_micros(sums[0])),
        billed_charge: Money::new(&currency, format_micros(sums[1])),
        allowances,
    })
}

// ---------------------------------------------------------------------------
// Quote
// ---------------------------------------------------------------------------

/// The query of `GET /api/v1/quote` (the options of `tollgate quote`).
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuoteQuery {
    /// Account id.
    #[param(example = "A1")]
    pub account: String,
    /// voice, sms or data.
    #[param(pattern = "^(voice|sms|data)$", example = "voice")]
    pub service: String,
    /// Called number (empty for data).
    #[serde(default)]
    pub to: Option<String>,
    /// Start time, RFC 3339.
    #[param(format = DateTime, example = "2026-10-05T10:00:00Z")]
    pub at: String,
    /// Seconds (voice) or bytes (data); ignored for sms. Default 1.
    #[param(minimum = 0)]
    #[serde(default)]
    pub usage: Option<u64>,
}

/// What one record would cost, and the deck row that prices it (as `tollgate quote`).
pub fn quote(r: &Reference, q: &QuoteQuery) -> Result<serde_json::Value, ApiError> {
    let usage = q.usage.unwrap_or(1);
    if usage > 1_000_000_000_000_000 {
        // The same limit as the `bad_usage` check of a CDR.
        return Err(ApiError::unprocessable(
            "not_rated",
            format!("bad_usage: {usage} is above 10^15 units"),
        ));
    }
    let text = crate::ingest::engine::quote(
        r,
        &q.account,
        &q.service,
        q.to.as_deref().unwrap_or(""),
        &q.at,
        usage,
    )
    .map_err(|m| ApiError::unprocessable("not_rated", m))?;
    serde_json::from_str(&text).map_err(ApiError::internal)
}

// ---------------------------------------------------------------------------
// Bills
// ---------------------------------------------------------------------------

/// A reference to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountRef {
    pub id: String,
    pub href: String,
}

/// The dates a bill covers (first and last day, local dates of the tariff zone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillingPeriod {
    #[schema(example = "2026-10-01")]
    pub start_date_time: String,
    #[schema(example = "2026-10-31")]
    pub end_date_time: String,
}

/// VAT of a bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaxItem {
    /// Always `VAT`.
    pub tax_category: String,
    /// Percent, decimal string.
    pub tax_rate: String,
    pub tax_amount: Money,
}

/// One line of a bill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BillLine {
    /// `usage`, `subscription`, `fee` (late-payment fee, outside VAT) or `credit` (credit note line).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<String>,
    /// Records (usage lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<u64>,
    /// Billed units (usage lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub amount: Money,
}

impl BillLine {
    /// A line that is not usage: a subscription, fee or credit.
    fn other(kind: &str, plan: Option<&String>, description: &str, amount: Money) -> BillLine {
        BillLine {
            kind: kind.into(),
            service: None,
            destination: None,
            band: None,
            quantity: None,
            usage: None,
            unit: None,
            plan: plan.cloned(),
            description: Some(description.to_owned()),
            amount,
        }
    }
}

/// A customer bill (TMF678 names); `lines` only on `GET /api/v1/bills/{billNo}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BillDoc {
    pub id: String,
    pub href: String,
    #[schema(example = "2026-000001")]
    pub bill_no: String,
    pub billing_account: AccountRef,
    #[schema(example = "2026-10")]
    pub period: String,
    pub billing_period: BillingPeriod,
    /// Issue date.
    pub bill_date: String,
    pub payment_due_date: String,
    /// Net amount.
    pub tax_excluded_amount: Money,
    pub tax_included_amount: Money,
    /// What the customer owes (equals the tax-included amount).
    pub amount_due: Money,
    pub tax_item: Vec<TaxItem>,
    /// Records dated before the period, billed here because they arrived late.
    pub late_records: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<BillLine>>,
    /// Its deliveries to the customer, oldest first (only on `GET /api/v1/bills/{billNo}`,
    /// and only once one was queued; docs/delivery.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Vec<DeliveryDoc>>,
}

fn bill_doc(inv: &Invoice, with_lines: bool) -> BillDoc {
    let c = inv.currency.as_str();
    let (start, end) = match inv.period.parse::<Period>() {
        Ok(p) => {
            let first = chrono::NaiveDate::from_ymd_opt(p.year, p.month, 1).expect("valid");
            let next = first + chrono::Months::new(1);
            (
                first.to_string(),
                next.pred_opt().expect("valid").to_string(),
            )
        }
        Err(_) => (String::new(), String::new()),
    };
    BillDoc {
        id: inv.number.clone(),
        href: format!("/api/v1/bills/{}", inv.number),
        bill_no: inv.number.clone(),
        billing_account: AccountRef {
            id: inv.account_id.clone(),
            href: account_href(&inv.account_id),
        },
        period: inv.period.clone(),
        billing_period: BillingPeriod {
            start_date_time: start,
            end_date_time: end,
        },
        bill_date: inv.issue_date.to_string(),
        payment_due_date: inv.due_date.to_string(),
        tax_excluded_amount: Money::new(c, inv.net_total),
        tax_included_amount: Money::new(c, inv.total),
        amount_due: Money::new(c, inv.total),
        tax_item: vec![TaxItem {
            tax_category: "VAT".into(),
            tax_rate: inv.vat_rate.clone(),
            tax_amount: Money::new(c, inv.vat_total),
        }],
        late_records: inv.late_records,
        delivery: None,
        lines: with_lines.then(|| {
            inv.lines
                .iter()
                .map(|l| match l {
                    Line::Usage {
                        service,
                        destination,
                        band,
                        quantity,
                        usage,
                        unit,
                        amount,
                        ..
                    } => BillLine {
                        kind: "usage".into(),
                        service: Some(service.clone()),
                        destination: Some(destination.clone()),
                        band: Some(band.clone()),
                        quantity: Some(*quantity),
                        usage: Some(*usage),
                        unit: Some(unit.clone()),
                        plan: None,
                        description: None,
                        amount: Money::new(c, amount),
                    },
                    Line::Fee {
                        description,
                        amount,
                        ..
                    }
                    | Line::Credit {
                        description,
                        amount,
                        ..
                    } => BillLine::other(
                        if matches!(l, Line::Fee { .. }) {
                            "fee"
                        } else {
                            "credit"
                        },
                        None,
                        description,
                        Money::new(c, amount),
                    ),
                    Line::Allowance { amount, .. } => {
                        BillLine::other("allowance", None, &l.description(), Money::new(c, amount))
                    }
                    Line::Subscription {
                        plan,
                        description,
                        amount,
                        ..
                    } => BillLine::other(
                        "subscription",
                        Some(plan),
                        description,
                        Money::new(c, amount),
                    ),
                })
                .collect()
        }),
    }
}

fn invoice(engine: &Engine, number: &str) -> Result<Option<Invoice>, ApiError> {
    // A stored document that does not decode is an error naming it (`invoices/<number>`).
    Ok(crate::billing::files::stored_invoice(
        &engine.ledger,
        number,
    )?)
}

/// Bills of a period (or of every period), in number order.
pub fn bills(
    engine: &Engine,
    period: Option<Period>,
    offset: usize,
    limit: usize,
) -> Result<Paged<BillDoc>, ApiError> {
    let (numbers, total) = match period {
        Some(p) => match engine.ledger.close_record(&p.to_string())? {
            Some(rec) => (page(&rec.invoices, offset, limit), rec.invoices.len()),
            None => (Vec::new(), 0),
        },
        None => engine.ledger.invoice_numbers(offset, limit)?,
    };
    let mut items = Vec::with_capacity(numbers.len());
    for n in numbers {
        let inv = invoice(engine, &n)?
            .ok_or_else(|| ApiError::internal(format!("invoice {n} listed but missing")))?;
        items.push(bill_doc(&inv, false));
    }
    Ok(Paged { items, total })
}

/// One bill with its lines.
pub fn bill(engine: &Engine, number: &str) -> Result<BillDoc, ApiError> {
    let mut doc = invoice(engine, number)?
        .map(|inv| bill_doc(&inv, true))
        .ok_or_else(|| ApiError::not_found(format!("no bill `{number}`")))?;
    let states = crate::billing::delivery::states(&engine.ledger, &doc.bill_no)?;
    doc.delivery = (!states.is_empty()).then_some(states);
    Ok(doc)
}

/// Queues a bill's delivery again and runs a delivery at once; the new delivery's state.
pub fn resend(engine: &Engine, number: &str) -> Result<DeliveryDoc, ApiError> {
    use crate::billing::delivery;
    if invoice(engine, number)?.is_none() {
        return Err(ApiError::not_found(format!("no bill `{number}`")));
    }
    let queued = delivery::resend(&engine.cfg, &engine.ledger, number)?;
    let r = engine.reference();
    delivery::run(&engine.cfg, &engine.ledger, &r.accounts, chrono::Utc::now())?;
    Ok(delivery::states(&engine.ledger, number)?
        .into_iter()
        .find(|d| d.id == queued.id)
        .unwrap_or(queued))
}

/// The file beside a bill's JSON with this extension (`xml` for UBL, `pdf`), if it exists.
pub fn bill_file(engine: &Engine, number: &str, ext: &str) -> Result<PathBuf, ApiError> {
    let inv = invoice(engine, number)?
        .ok_or_else(|| ApiError::not_found(format!("no bill `{number}`")))?;
    // Both parts come from the ledger, never from the request.
    let path = engine
        .cfg
        .invoice_dir
        .join(&inv.period)
        .join(format!("{}.{ext}", inv.number));
    if path.is_file() {
        Ok(path)
    } else {
        Err(ApiError::not_found(format!(
            "bill {number} has no {} document",
            if ext == "xml" { "UBL" } else { "PDF" }
        )))
    }
}

// ---------------------------------------------------------------------------
// Cycle close
// ---------------------------------------------------------------------------

/// The result of a cycle close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloseDoc {
    pub period: String,
    /// False when the period had been closed before (its invoice files were re-checked).
    pub new: bool,
    pub closed_at: String,
    pub issue_date: String,
    pub bill_count: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_bill_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_bill_no: Option<String>,
    pub tax_excluded_amount: Money,
    pub tax_amount: Money,
    pub tax_included_amount: Money,
    pub late_records: u64,
    /// Where the invoice files are.
    pub invoice_dir: String,
    /// The one-line summary the CLI prints.
    pub summary: String,
}

impl CloseDoc {
    /// What `tollgate cycle close` prints.
    pub fn render(&self) -> String {
        if self.new {
            format!("closed {}, in {}", self.summary, self.invoice_dir)
        } else {
            format!(
                "{} was already closed on {}: {} invoices, files checked in {}",
                self.period, self.closed_at, self.bill_count, self.invoice_dir
            )
        }
    }
}

/// Closes a period (issue date: given, or today in the tariff zone). Runs under the
/// ledger's writer lock, so it never interleaves with a file commit.
pub fn close(
    engine: &Engine,
    period: Period,
    issue_date: Option<chrono::NaiveDate>,
) -> Result<CloseDoc, ApiError> {
    use chrono::Datelike;
    if let Some(d) = issue_date {
        if !(2000..=9999).contains(&d.year()) {
            return Err(ApiError::bad_request(format!(
                "issue date {d} is outside the years 2000..=9999"
            )));
        }
    }
    let r = engine.reference();
    let issue =
        issue_date.unwrap_or_else(|| chrono::Utc::now().with_timezone(&r.tariff.tz).date_naive());
    let s = close_cycle(
        &engine.cfg,
        &engine.ledger,
        &r.tariff,
        &r.accounts,
        period,
        issue,
    )?;
    let rec = &s.record;
    if s.new {
        // close_cycle records the close metrics.
        tracing::info!(period = %rec.period, invoices = rec.invoices.len(), "cycle closed");
    }
    let c = r.tariff.currency().to_owned();
    Ok(CloseDoc {
        period: rec.period.clone(),
        new: s.new,
        closed_at: rec.closed_at.clone(),
        issue_date: rec.issue_date.clone(),
        bill_count: rec.invoices.len(),
        first_bill_no: rec.invoices.first().cloned(),
        last_bill_no: rec.invoices.last().cloned(),
        tax_excluded_amount: Money::new(&c, rec.net_total),
        tax_amount: Money::new(&c, rec.vat_total),
        tax_included_amount: Money::new(&c, rec.total),
        late_records: rec.late_records,
        invoice_dir: s.dir.display().to_string(),
        summary: rec.summary(),
    })
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

/// A CDR file the daemon knows: committed (with its checkpoint), failed, being rated or waiting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileDoc {
    pub name: String,
    /// `committed`, `failed`, `processing` or `waiting`.
    pub status: String,
    /// Bytes.
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rated: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<u64>,
    /// Rejected records by reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejects_by_reason: Option<BTreeMap<String, u64>>,
    /// Sum of the rated charges (6 decimals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge: Option<Money>,
    /// The one tariff version (SHA-256 of the sources) the whole file was rated with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tariff_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<String>,
    /// Billing months the file touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub months: Option<Vec<String>>,
    /// Why a failed file failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The query of `GET /api/v1/files`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilesQuery {
    /// Only files with this status.
    pub status: Option<FileStatus>,
}

/// File states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileStatus {
    Committed,
    Failed,
    Processing,
    Waiting,
}

/// Files: committed (by commit sequence), then failed, processing, waiting (by name).
pub fn files(
    engine: &Engine,
    status: Option<FileStatus>,
    offset: usize,
    limit: usize,
) -> Result<Paged<FileDoc>, ApiError> {
    let want = |s: FileStatus| status.is_none_or(|w| w == s);
    let mut all = Vec::new();
    if want(FileStatus::Committed) {
        let c = engine.currency();
        let mut cps = engine.ledger.files()?;
        cps.sort_by_key(|cp| cp.seq);
        for cp in cps {
            all.push(FileDoc {
                name: cp.name,
                status: "committed".into(),
                size: cp.size,
                seq: Some(cp.seq),
                lines: Some(cp.lines),
                rated: Some(cp.rated),
                rejected: Some(cp.lines - cp.rated),
                rejects_by_reason: Some(cp.rejected),
                charge: Some(Money::new(&c, cp.charge)),
                tariff_version: Some(cp.tariff_version),
                accounts_hash: Some(cp.accounts_hash),
                committed_at: Some(cp.committed_at),
                months: Some(cp.months),
                reason: None,
            });
        }
    }
    let sp = &engine.spool;
    for (st, dir, label) in [
        (FileStatus::Failed, &sp.failed, "failed"),
        (FileStatus::Processing, &sp.work, "processing"),
        (FileStatus::Waiting, &sp.inbox, "waiting"),
    ] {
        if !want(st) {
            continue;
        }
        let listed = crate::ingest::spool::Spool::list(dir).map_err(ApiError::internal)?;
        let mut listed: Vec<_> = listed
            .into_iter()
            .filter(|w| !(st == FileStatus::Failed && w.name.ends_with(".error")))
            .collect();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        for w in listed {
            let reason = (st == FileStatus::Failed).then(|| {
                std::fs::read_to_string(dir.join(format!("{}.error", w.name)))
                    .map(|s| s.trim_end().to_owned())
                    .unwrap_or_default()
            });
            all.push(FileDoc {
                name: w.name,
                status: label.into(),
                size: w.size,
                seq: None,
                lines: None,
                rated: None,
                rejected: None,
                rejects_by_reason: None,
                charge: None,
                tariff_version: None,
                accounts_hash: None,
                committed_at: None,
                months: None,
                reason,
            });
        }
    }
    Ok(Paged {
        total: all.len(),
        items: page(&all, offset, limit),
    })
}

// ---------------------------------------------------------------------------
// Tariff reload
// ---------------------------------------------------------------------------

/// The tariff and accounts in service after a reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReloadDoc {
    /// `reloaded` (something changed) or `unchanged`.
    pub outcome: String,
    /// SHA-256 of the tariff sources in service.
    pub tariff_version: String,
    /// XXH3-128 of the accounts file in service.
    pub accounts_hash: String,
    pub accounts: usize,
}

/// Compiles the tariff sources and reloads the accounts, swapping them in for the next
/// file (as SIGHUP). A broken source is refused with its errors; the snapshot in service stays.
pub fn reload(engine: &Engine) -> Result<ReloadDoc, ApiError> {
    match engine.reload(true) {
        Ok(changed) => {
            let r = engine.reference();
            tracing::info!(
                tariff = &r.tariff.version()[..16],
                changed,
                "reload requested through the API"
            );
            Ok(ReloadDoc {
                outcome: if changed { "reloaded" } else { "unchanged" }.into(),
                tariff_version: r.tariff.version().to_owned(),
                accounts_hash: r.accounts_hash.clone(),
                accounts: r.accounts.list.len(),
            })
        }
        Err(e) => {
            tracing::error!(error = %e, "reload refused; the tariff and accounts in service stay");
            Err(ApiError {
                errors: e.to_string().lines().map(str::to_owned).collect(),
                ..ApiError::unprocessable(
                    "reload_refused",
                    "the tariff or accounts sources were refused; the snapshot in service stays",
                )
            })
        }
    }
}

impl std::error::Error for ApiError {}
