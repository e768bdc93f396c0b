//! The payments ledger: per account, entries for invoices, credit notes, payments,
//! refunds, returned debits and fees, in exact cents. Balances and open items are
//! derived from the entries each time, never stored.
//!
//! Also: bank statement import (camt.053/054) with matching, manual payments, suspense
//! assignment, refunds of credit balances and the SEPA direct debit collection run.
//!
//! Sign convention: a positive amount increases what the customer owes (invoice, fee,
//! refund, returned debit); a negative amount decreases it (payment, credit note).
//! Balance > 0: the customer owes; balance < 0: credit on the account.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::accounts::{Account, Accounts, PaymentMethod};
use crate::config::Config;
use crate::ledger::{Ledger, LedgerError, PayCf, Tx};
use crate::money::{format_cents, parse_cents};

/// A payments error: refused input or a storage failure.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    Refused(String),
    /// The thing named (a suspense item) does not exist.
    #[error("{0}")]
    NotFound(String),
}

fn refused<T>(m: impl Into<String>) -> Result<T, PayError> {
    Err(PayError::Refused(m.into()))
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Invoice,
    CreditNote,
    Payment,
    Refund,
    /// A direct debit returned by the customer's bank (reverses its payment).
    Return,
    Fee,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Invoice => "invoice",
            Kind::CreditNote => "credit_note",
            Kind::Payment => "payment",
            Kind::Refund => "refund",
            Kind::Return => "return",
            Kind::Fee => "fee",
        }
    }
}

/// One ledger entry (`entries` column family, key `account \0 id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: u64,
    pub account: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub kind: Kind,
    /// Signed amount with 2 decimals (see the module doc).
    pub amount: String,
    /// The invoice this entry belongs to; `None` = on account (e.g. an over-payment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice: Option<String>,
    /// Due date (invoice entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<String>,
    /// Where it came from: `close`, a bank entry identity, `manual`, …
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

impl Entry {
    pub fn cents(&self) -> i64 {
        parse_cents(&self.amount).unwrap_or(0)
    }
}

fn entry_key(account: &str, id: u64) -> Vec<u8> {
    let mut k = account.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Adds an entry to a transaction (assigns its id).
pub fn post(tx: &mut Tx, mut e: Entry) -> Entry {
    e.id = tx.next_id();
    tx.put(
        PayCf::Entries,
        entry_key(&e.account, e.id),
        serde_json::to_vec(&e).expect("entry serializes"),
    );
    e
}

/// Posts a closed invoice (called by the ledger inside the close batch): the invoice
/// entry (total minus fee lines), one fee entry per fee line (and the pending fee is
/// consumed), and the lookups `inv/<number>` → account and `ref/<reference>` → number.
pub fn post_invoice(json: &[u8], tx: &mut Tx) -> Result<Vec<Entry>, String> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let number = s("number").ok_or("invoice without number")?;
    let account = s("account_id").ok_or("invoice without account_id")?;
    let total = parse_cents(&s("total").ok_or("invoice without total")?)?;
    let issue = s("issue_date").unwrap_or_default();
    let mut fees = 0;
    let mut fee_entries = Vec::new();
    for l in v
        .get("lines")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
    {
        if l.get("kind").and_then(|k| k.as_str()) == Some("fee") {
            let amount = parse_cents(l.get("amount").and_then(|a| a.as_str()).unwrap_or("0"))?;
            let id = l.get("fee_id").and_then(|a| a.as_str()).unwrap_or("");
            fees += amount;
            fee_entries.push((
                id.to_owned(),
                amount,
                l.get("description")
                    .and_then(|d| d.as_str())
                    .unwrap_or("")
                    .to_owned(),
            ));
        }
    }
    // A reissue bills again fee lines its credit note cancelled: their pending fees were
    // consumed when first billed, and one with the same id now (interest accruing
    // since) is not the one it bills.
    let reissue = v.get("replaces").is_some_and(|r| !r.is_null());
    let mut posted = Vec::new();
    posted.push(post(
        tx,
        Entry {
            id: 0,
            account: account.clone(),
            date: issue.clone(),
            kind: Kind::Invoice,
            amount: format_cents(total - fees),
            invoice: Some(number.clone()),
            due_date: s("due_date"),
            source: if v.get("final_invoice").and_then(|f| f.as_bool()) == Some(true) {
                "final invoice".to_owned()
            } else if reissue {
                "reissue".to_owned()
            } else {
                format!("close {}", s("period").unwrap_or_default())
            },
            text: String::new(),
        },
    ));
    for (id, amount, text) in fee_entries {
        posted.push(post(
            tx,
            Entry {
                id: 0,
                account: account.clone(),
                date: issue.clone(),
                kind: Kind::Fee,
                amount: format_cents(amount),
                invoice: Some(number.clone()),
                due_date: None,
                source: id.clone(),
                text,
            },
        ));
        if !reissue {
            tx.delete(PayCf::Fees, id.into_bytes());
        }
    }
    tx.put(PayCf::Refs, format!("inv/{number}"), account.into_bytes());
    if let Some(r) = s("payment_reference") {
        tx.put(PayCf::Refs, format!("ref/{r}"), number.into_bytes());
    }
    Ok(posted)
}

/// What would be open on `invoice` once `add` is posted too (the committed entries of
/// the account, the running transaction's `extra`, then `add`), oldest-due-first credit
/// allocation included: the amount a direct debit of that invoice collects. Used to
/// pre-notify it on a new invoice (`add` = its invoice entry) or on a credit note
/// (`add` = the credit note entry).
pub fn open_after(
    ledger: &Ledger,
    account: &str,
    extra: &[Entry],
    add: Entry,
    invoice: &str,
) -> Result<i64, LedgerError> {
    let mut es = entries(ledger, account, extra)?;
    es.push(add);
    let (_, items) = derive(account, es, NaiveDate::MIN);
    Ok(items
        .iter()
        .find(|i| i.invoice == invoice)
        .map_or(0, |i| i.open_cents))
}

/// Posts a credit note (called inside the batch that stores it, [`Ledger::issue`]): a
/// `credit_note` entry with its (negative) total on the credited invoice, which reduces
/// that invoice's open amount; on an invoice already paid the excess becomes credit on
/// the account (see [`derive()`]), refundable or paying the next invoice. Then the
/// invoice's pending late-payment fees follow the reduced debt: all of them are dropped
/// when the invoice is now fully credited (nothing was owed), collection costs are
/// dropped when nothing is open any more and otherwise recomputed on the open amount
/// (never more than before); interest already accrued stays (later accrual runs on the
/// reduced amount). Dunning messages of a fully credited invoice still waiting in the
/// outbox are cancelled.
pub fn post_credit_note(
    ledger: &Ledger,
    tx: &mut Tx,
    extra: &mut Vec<Entry>,
    json: &[u8],
) -> Result<(), LedgerError> {
    let corrupt = |message: String| LedgerError::Corrupt {
        path: ledger.path().to_owned(),
        key: "invoices/(credit note)".into(),
        message,
    };
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    let number = s("number").ok_or_else(|| corrupt("credit note without number".into()))?;
    let account = s("account_id").ok_or_else(|| corrupt("credit note without account".into()))?;
    let original = v
        .get("credited_invoice")
        .and_then(|c| c.get("number"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| corrupt(format!("credit note {number} names no invoice")))?
        .to_owned();
    let total = parse_cents(&s("total").unwrap_or_default()).map_err(corrupt)?;
    let date = s("issue_date").unwrap_or_default();
    extra.push(post(
        tx,
        Entry {
            id: 0,
            account: account.clone(),
            date: date.clone(),
            kind: Kind::CreditNote,
            amount: format_cents(total),
            invoice: Some(original.clone()),
            due_date: None,
            source: format!("credit note {number}"),
            text: s("reason").unwrap_or_default(),
        },
    ));
    let as_of = NaiveDate::parse_from_str(&date, "%Y-%m-%d").unwrap_or(NaiveDate::MIN);
    let (_, items) = derive(&account, entries(ledger, &account, extra)?, as_of);
    let Some(item) = items.iter().find(|i| i.invoice == original) else {
        // An invoice issued before the payments ledger existed: nothing to settle.
        return Ok(());
    };
    let cancelled = item.status == Status::Credited;
    for kind in ["costs", "compensation", "interest"] {
        let id = format!("{kind}/{original}");
        let Some(raw) = ledger.pay_get(PayCf::Fees, id.as_bytes())? else {
            continue;
        };
        let mut fee: PendingFee = ledger.pay_json(PayCf::Fees, id.as_bytes(), &raw)?;
        if cancelled || (kind == "costs" && item.open_cents <= 0) {
            tx.delete(PayCf::Fees, id.into_bytes());
        } else if kind == "costs" {
            let before = parse_cents(&fee.amount).unwrap_or(0);
            let now = before.min(crate::dunning::collection_costs(item.open_cents));
            if now != before {
                fee.amount = format_cents(now);
                tx.put(PayCf::Fees, id, serde_json::to_vec(&fee).expect("json"));
            }
        }
    }
    if cancelled {
        for mut m in crate::dunning::outbox(ledger)? {
            if m.invoice == original && m.status == "pending" && m.kind != "return" {
                m.status = "cancelled".into();
                tx.put(
                    PayCf::Outbox,
                    m.id.to_be_bytes().to_vec(),
                    serde_json::to_vec(&m).expect("json"),
                );
            }
        }
    }
    Ok(())
}

/// Status of an invoice as of a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    PartiallyPaid,
    Paid,
    Overdue,
    /// Nothing open and nothing paid: credit notes cancelled it.
    Credited,
}

/// One invoice with what is credited, paid and open (derived).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub invoice: String,
    pub issue_date: String,
    pub due_date: String,
    /// The invoice's total (its invoice and fee entries).
    pub total: String,
    /// Credit notes on it (positive; at most `total`).
    pub credited: String,
    /// What payments settled: `total - credited - open`.
    pub paid: String,
    pub open: String,
    pub status: Status,
    /// Direct debit state: `pending`, `settled` or `returned`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    #[serde(skip)]
    pub open_cents: i64,
}

/// A pending fee (billed as its own line on the next invoice; not yet in the balance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingFee {
    /// `costs/<invoice>`, `compensation/<invoice>`, `interest/<invoice>`.
    pub id: String,
    pub account: String,
    pub invoice: String,
    /// `collection_costs`, `compensation`, `interest`.
    pub kind: String,
    pub amount: String,
    pub description: String,
    /// Interest: the exact accrued amount (not rounded) and the span it covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accrued: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// The derived state of an account.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub account: String,
    pub as_of: String,
    pub currency: String,
    /// > 0: owed by the customer; < 0: credit on the account.
    pub balance: String,
    pub entries: Vec<Entry>,
    pub items: Vec<Item>,
    pub pending_fees: Vec<PendingFee>,
    #[serde(skip)]
    pub balance_cents: i64,
}

/// Direct debit state of an invoice (`collections` `inv/<number>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    pub end_to_end_id: String,
    pub msg_id: String,
    pub date: String,
    pub amount: String,
    pub sequence: String,
    /// `pending`, `settled`, `returned`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_reason: Option<String>,
}

/// The committed entries of an account, plus `extra` (entries of the running transaction).
pub fn entries(ledger: &Ledger, account: &str, extra: &[Entry]) -> Result<Vec<Entry>, LedgerError> {
    let mut prefix = account.as_bytes().to_vec();
    prefix.push(0);
    let mut out = Vec::new();
    for (k, v) in ledger.pay_scan(PayCf::Entries, &prefix)? {
        out.push(ledger.pay_json::<Entry>(PayCf::Entries, &k, &v)?);
    }
    out.extend(extra.iter().filter(|e| e.account == account).cloned());
    Ok(out)
}

/// Pending fees of an account (or of all accounts with `None`).
pub fn pending_fees(
    ledger: &Ledger,
    account: Option<&str>,
) -> Result<Vec<PendingFee>, LedgerError> {
    let mut out = Vec::new();
    for (k, v) in ledger.pay_scan(PayCf::Fees, b"")? {
        let f: PendingFee = ledger.pay_json(PayCf::Fees, &k, &v)?;
        if account.is_none_or(|a| a == f.account) {
            out.push(f);
        }
    }
    Ok(out)
}

/// The collection state of an invoice.
pub fn collection(ledger: &Ledger, invoice: &str) -> Result<Option<Collection>, LedgerError> {
    let k = format!("inv/{invoice}");
    match ledger.pay_get(PayCf::Collections, k.as_bytes())? {
        None => Ok(None),
        Some(v) => ledger
            .pay_json(PayCf::Collections, k.as_bytes(), &v)
            .map(Some),
    }
}

/// Derives balance and open items from entries.
///
/// Per invoice: total = its invoice and fee entries; credited = its credit notes;
/// open = total + every other entry belonging to it (credit notes, payments, returns).
/// When that goes below zero (a credit note on a paid invoice, an over-assigned
/// payment) the excess goes back to the account as credit. Entries on account (no
/// invoice) are a credit when negative; the credit pays open invoices oldest due date
/// first. An invoice is `paid` when nothing is open, `credited` when nothing is open and
/// nothing was paid (credit notes cancelled it), `overdue` when open after its due date
/// (as of `as_of`), `partially_paid` when some of it is paid or credited, else `open`.
pub fn derive(account: &str, entries: Vec<Entry>, as_of: NaiveDate) -> (i64, Vec<Item>) {
    struct Acc {
        issue: String,
        due: String,
        total: i64,
        credited: i64,
        open: i64,
    }
    let mut inv: BTreeMap<String, Acc> = BTreeMap::new();
    let mut free = 0i64;
    let mut balance = 0i64;
    for e in &entries {
        let c = e.cents();
        balance += c;
        match &e.invoice {
            None => free += c,
            Some(n) => {
                let a = inv.entry(n.clone()).or_insert(Acc {
                    issue: String::new(),
                    due: String::new(),
                    total: 0,
                    credited: 0,
                    open: 0,
                });
                if e.kind == Kind::Invoice {
                    a.issue = e.date.clone();
                    a.due = e.due_date.clone().unwrap_or_default();
                }
                match e.kind {
                    Kind::Invoice | Kind::Fee => a.total += c,
                    Kind::CreditNote => a.credited -= c,
                    _ => {}
                }
                a.open += c;
            }
        }
    }
    // Over-allocated invoices give the excess back to the account.
    for a in inv.values_mut() {
        if a.open < 0 {
            free += a.open;
            a.open = 0;
        }
    }
    let mut order: Vec<&String> = inv.keys().collect();
    order.sort_by(|x, y| (&inv[*x].due, *x).cmp(&(&inv[*y].due, *y)));
    let order: Vec<String> = order.into_iter().cloned().collect();
    for n in &order {
        if free >= 0 {
            break;
        }
        let a = inv.get_mut(n).expect("key");
        let take = a.open.min(-free);
        a.open -= take;
        free += take;
    }
    let items = order
        .iter()
        .map(|n| {
            let a = &inv[n];
            let credited = a.credited.min(a.total).max(0);
            let paid = a.total - credited - a.open;
            let due = NaiveDate::parse_from_str(&a.due, "%Y-%m-%d").ok();
            let status = if a.open <= 0 && paid <= 0 && credited > 0 {
                Status::Credited
            } else if a.open <= 0 {
                Status::Paid
            } else if due.is_some_and(|d| d < as_of) {
                Status::Overdue
            } else if paid > 0 {
                Status::PartiallyPaid
            } else {
                Status::Open
            };
            Item {
                invoice: n.clone(),
                issue_date: a.issue.clone(),
                due_date: a.due.clone(),
                total: format_cents(a.total),
                credited: format_cents(credited),
                paid: format_cents(paid),
                open: format_cents(a.open),
                status,
                collection: None,
                open_cents: a.open,
            }
        })
        .collect();
    let _ = account;
    (balance, items)
}

/// The derived view of one account as of a date.
pub fn view(
    ledger: &Ledger,
    account: &str,
    as_of: NaiveDate,
    currency: &str,
    extra: &[Entry],
) -> Result<View, LedgerError> {
    let es = entries(ledger, account, extra)?;
    let (balance, mut items) = derive(account, es.clone(), as_of);
    for it in &mut items {
        it.collection = collection(ledger, &it.invoice)?.map(|c| c.status);
    }
    Ok(View {
        account: account.to_owned(),
        as_of: as_of.to_string(),
        currency: currency.to_owned(),
        balance: format_cents(balance),
        entries: es,
        items,
        pending_fees: pending_fees(ledger, Some(account))?,
        balance_cents: balance,
    })
}

/// Which invoice a bank credit pays: payment reference, then end-to-end id, then an
/// invoice number in the remittance text. Returns (invoice, account, how).
fn match_credit(
    ledger: &Ledger,
    t: &crate::camt::BankTx,
) -> Result<Option<(String, String, &'static str)>, LedgerError> {
    let account_of = |n: &str| -> Result<Option<String>, LedgerError> {
        Ok(ledger
            .pay_get(PayCf::Refs, format!("inv/{n}").as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    };
    let mut refs: Vec<String> = t
        .references
        .iter()
        .map(|r| r.chars().filter(|c| !c.is_whitespace()).collect())
        .collect();
    refs.extend(crate::sepa::find_payment_references(&t.text));
    for r in refs {
        if let Some(n) = ledger.pay_get(PayCf::Refs, format!("ref/{r}").as_bytes())? {
            let n = String::from_utf8_lossy(&n).into_owned();
            if let Some(a) = account_of(&n)? {
                return Ok(Some((n, a, "payment reference")));
            }
        }
    }
    if let Some(e2e) = &t.end_to_end_id {
        if let Some(n) = ledger.pay_get(PayCf::Refs, format!("e2e/{e2e}").as_bytes())? {
            let n = String::from_utf8_lossy(&n).into_owned();
            if let Some(a) = account_of(&n)? {
                return Ok(Some((n, a, "end-to-end id")));
            }
        }
    }
    for n in invoice_numbers(&t.text) {
        if let Some(a) = account_of(&n)? {
            return Ok(Some((n, a, "invoice number")));
        }
    }
    Ok(None)
}

/// Invoice numbers `YYYY-NNNNNN` in a text.
fn invoice_numbers(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 11 <= b.len() {
        let w = &b[i..i + 11];
        let boundary = (i == 0 || !b[i - 1].is_ascii_digit())
            && (i + 11 == b.len() || !b[i + 11].is_ascii_digit());
        if boundary
            && w[..4].iter().all(u8::is_ascii_digit)
            && w[4] == b'-'
            && w[5..].iter().all(u8::is_ascii_digit)
        {
            out.push(String::from_utf8_lossy(w).into_owned());
            i += 11;
        } else {
            i += 1;
        }
    }
    out
}

/// Posts a payment of `amount` for `account`: up to the open amount on `invoice`, the
/// rest on account (credit). Returns the entries posted.
#[allow(clippy::too_many_arguments)]
fn apply_payment(
    ledger: &Ledger,
    tx: &mut Tx,
    extra: &mut Vec<Entry>,
    account: &str,
    invoice: Option<&str>,
    amount: i64,
    date: &str,
    source: &str,
    text: &str,
) -> Result<(i64, i64), LedgerError> {
    let as_of = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap_or_default();
    let open = match invoice {
        None => 0,
        Some(n) => {
            let (_, items) = derive(account, entries(ledger, account, extra)?, as_of);
            items
                .iter()
                .find(|i| i.invoice == n)
                .map_or(0, |i| i.open_cents.max(0))
        }
    };
    let on_invoice = amount.min(open);
    let rest = amount - on_invoice;
    let base = Entry {
        id: 0,
        account: account.to_owned(),
        date: date.to_owned(),
        kind: Kind::Payment,
        amount: String::new(),
        invoice: None,
        due_date: None,
        source: source.to_owned(),
        text: text.to_owned(),
    };
    if on_invoice > 0 {
        extra.push(post(
            tx,
            Entry {
                amount: format_cents(-on_invoice),
                invoice: invoice.map(str::to_owned),
                ..base.clone()
            },
        ));
    }
    if rest > 0 {
        extra.push(post(
            tx,
            Entry {
                amount: format_cents(-rest),
                ..base
            },
        ));
    }
    Ok((on_invoice, rest))
}

/// A bank credit that could not be matched (`suspense`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspense {
    pub id: u64,
    pub identity: String,
    pub date: String,
    pub amount: String,
    pub name: String,
    pub iban: String,
    pub text: String,
    pub file: String,
}

/// What one import did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub statements: usize,
    pub transactions: usize,
    /// Credits matched in full to an open invoice.
    pub matched: usize,
    /// Credits smaller than the open amount.
    pub partial: usize,
    /// Credits larger than the open amount (the rest is credit on the account).
    pub overpaid: usize,
    /// Direct debit settlements matched by end-to-end id.
    pub collections_settled: usize,
    pub returns: usize,
    pub suspense: usize,
    /// Seen before (same bank entry identity): not applied again.
    pub duplicates: usize,
    /// Not booked, or debits that are not returns of our collections.
    pub skipped: usize,
    pub credited: String,
}

/// Imports a camt.053/054 file. All of it is checked first (XML, our IBAN, the currency);
/// anything wrong refuses the whole file. Then every transaction not seen before is
/// applied, all in ONE ledger transaction.
pub fn import(
    cfg: &Config,
    ledger: &Ledger,
    accounts: &Accounts,
    currency: &str,
    path: &Path,
    bytes: &[u8],
) -> Result<ImportReport, PayError> {
    let file = path.display().to_string();
    let stmts = crate::camt::parse(bytes).map_err(|m| PayError::Refused(format!("{file}: {m}")))?;
    let mut ours = vec![cfg.seller.iban.replace(' ', "").to_ascii_uppercase()];
    if let Some(s) = &cfg.sepa {
        ours.push(s.creditor_iban.clone());
    }
    for s in &stmts {
        if !ours.contains(&s.iban) {
            return refused(format!(
                "{file}: {} {} is for account {}, not ours ({}); nothing imported",
                s.kind,
                s.id,
                crate::sepa::mask_iban(&s.iban),
                ours.iter()
                    .map(|i| crate::sepa::mask_iban(i))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(c) = &s.currency {
            if c != currency {
                return refused(format!(
                    "{file}: {} {}: account currency {c} is not {currency}; nothing imported",
                    s.kind, s.id
                ));
            }
        }
        for t in &s.txs {
            if t.currency != currency {
                return refused(format!(
                    "{file}: {} {} entry {}: currency {} is not {currency}; nothing imported",
                    s.kind, s.id, t.entry_no, t.currency
                ));
            }
        }
    }
    ledger.transact(|ledger, tx| {
        let mut r = ImportReport {
            statements: stmts.len(),
            ..ImportReport::default()
        };
        let mut extra: Vec<Entry> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut credited = 0i64;
        for s in &stmts {
            for t in &s.txs {
                r.transactions += 1;
                if !seen.insert(t.identity.clone())
                    || ledger
                        .pay_get(PayCf::Bank, t.identity.as_bytes())?
                        .is_some()
                {
                    r.duplicates += 1;
                    continue;
                }
                let mut outcome = "skipped";
                if !t.booked || t.reversal && t.credit {
                    r.skipped += 1;
                } else if t.credit {
                    match match_credit(ledger, t)? {
                        Some((inv, acc, how)) => {
                            let (on, rest) = apply_payment(
                                ledger,
                                tx,
                                &mut extra,
                                &acc,
                                Some(&inv),
                                t.amount_cents,
                                &t.date,
                                &t.identity,
                                &format!("bank, by {how}"),
                            )?;
                            credited += t.amount_cents;
                            if how == "end-to-end id" {
                                if let Some(mut c) = collection(ledger, &inv)? {
                                    if c.end_to_end_id
                                        == t.end_to_end_id.clone().unwrap_or_default()
                                    {
                                        c.status = "settled".into();
                                        tx.put(
                                            PayCf::Collections,
                                            format!("inv/{inv}"),
                                            serde_json::to_vec(&c).expect("json"),
                                        );
                                        r.collections_settled += 1;
                                    }
                                }
                            }
                            if rest > 0 && on > 0 {
                                r.overpaid += 1;
                                outcome = "overpaid";
                            } else if rest > 0 {
                                r.overpaid += 1;
                                outcome = "credit";
                            } else {
                                let (_, items) =
                                    derive(&acc, entries(ledger, &acc, &extra)?, NaiveDate::MIN);
                                let open = items
                                    .iter()
                                    .find(|i| i.invoice == inv)
                                    .map_or(0, |i| i.open_cents);
                                if open > 0 {
                                    r.partial += 1;
                                    outcome = "partial";
                                } else {
                                    r.matched += 1;
                                    outcome = "matched";
                                }
                            }
                        }
                        None => {
                            let id = tx.next_id();
                            let item = Suspense {
                                id,
                                identity: t.identity.clone(),
                                date: t.date.clone(),
                                amount: format_cents(t.amount_cents),
                                name: t.name.clone(),
                                iban: t.iban.clone(),
                                text: t.text.clone(),
                                file: file.clone(),
                            };
                            tx.put(
                                PayCf::Suspense,
                                id.to_be_bytes().to_vec(),
                                serde_json::to_vec(&item).expect("json"),
                            );
                            r.suspense += 1;
                            outcome = "suspense";
                        }
                    }
                } else {
                    // A debit: a returned direct debit of ours, by end-to-end id.
                    let inv = match &t.end_to_end_id {
                        Some(e) => ledger
                            .pay_get(PayCf::Refs, format!("e2e/{e}").as_bytes())?
                            .map(|v| String::from_utf8_lossy(&v).into_owned()),
                        None => None,
                    };
                    let acc = match &inv {
                        Some(n) => ledger
                            .pay_get(PayCf::Refs, format!("inv/{n}").as_bytes())?
                            .map(|v| String::from_utf8_lossy(&v).into_owned()),
                        None => None,
                    };
                    if let (Some(inv), Some(acc)) = (inv, acc) {
                        extra.push(post(
                            tx,
                            Entry {
                                id: 0,
                                account: acc.clone(),
                                date: t.date.clone(),
                                kind: Kind::Return,
                                amount: format_cents(t.amount_cents),
                                invoice: Some(inv.clone()),
                                due_date: None,
                                source: t.identity.clone(),
                                text: format!(
                                    "direct debit returned{}",
                                    t.return_reason
                                        .as_ref()
                                        .map(|c| format!(" ({c})"))
                                        .unwrap_or_default()
                                ),
                            },
                        ));
                        if let Some(mut c) = collection(ledger, &inv)? {
                            c.status = "returned".into();
                            c.return_reason = t.return_reason.clone();
                            tx.put(
                                PayCf::Collections,
                                format!("inv/{inv}"),
                                serde_json::to_vec(&c).expect("json"),
                            );
                        }
                        if let Some(a) = accounts.get(&acc) {
                            crate::dunning::queue_return_notice(
                                cfg,
                                tx,
                                a,
                                &inv,
                                t.amount_cents,
                                &t.date,
                            );
                        }
                        r.returns += 1;
                        outcome = "return";
                    } else {
                        r.skipped += 1;
                    }
                }
                tx.put(
                    PayCf::Bank,
                    t.identity.clone(),
                    serde_json::to_vec(&serde_json::json!({
                        "file": file, "statement": s.id, "entry": t.entry_no, "outcome": outcome,
                    }))
                    .expect("json"),
                );
            }
        }
        r.credited = format_cents(credited);
        Ok(r)
    })
}

/// The suspense list.
pub fn suspense(ledger: &Ledger) -> Result<Vec<Suspense>, LedgerError> {
    ledger
        .pay_scan(PayCf::Suspense, b"")?
        .into_iter()
        .map(|(k, v)| ledger.pay_json(PayCf::Suspense, &k, &v))
        .collect()
}

fn check_account<'a>(accounts: &'a Accounts, account: &str) -> Result<&'a Account, PayError> {
    accounts
        .get(account)
        .ok_or_else(|| PayError::Refused(format!("unknown account `{account}`")))
}

fn check_invoice(ledger: &Ledger, account: &str, invoice: &str) -> Result<(), PayError> {
    match ledger.pay_get(PayCf::Refs, format!("inv/{invoice}").as_bytes())? {
        Some(a) if a == account.as_bytes() => Ok(()),
        Some(_) => refused(format!(
            "invoice {invoice} is not an invoice of account {account}"
        )),
        None => refused(format!("no invoice {invoice}")),
    }
}

/// Assigns a suspense item to an account (and optionally an invoice).
pub fn assign(
    ledger: &Ledger,
    accounts: &Accounts,
    id: u64,
    account: &str,
    invoice: Option<&str>,
) -> Result<(i64, i64), PayError> {
    check_account(accounts, account)?;
    if let Some(n) = invoice {
        check_invoice(ledger, account, n)?;
    }
    ledger.transact(|ledger, tx| {
        let key = id.to_be_bytes();
        let Some(v) = ledger.pay_get(PayCf::Suspense, &key)? else {
            return Err(PayError::NotFound(format!(
                "no suspense item {id} (see `tollgate payments suspense`)"
            )));
        };
        let s: Suspense = ledger.pay_json(PayCf::Suspense, &key, &v)?;
        tx.delete(PayCf::Suspense, key.to_vec());
        let amount = parse_cents(&s.amount).map_err(PayError::Refused)?;
        let mut extra = Vec::new();
        Ok(apply_payment(
            ledger,
            tx,
            &mut extra,
            account,
            invoice,
            amount,
            &s.date,
            &s.identity,
            &format!("bank, assigned from suspense {id}"),
        )?)
    })
}

/// The largest manual payment or refund: 1 000 000 000.00 (keeps every sum far inside
/// 64-bit cents).
pub const MAX_MANUAL_CENTS: i64 = 100_000_000_000;

/// Records a manual payment (cash, a payment outside the statements).
pub fn record(
    ledger: &Ledger,
    accounts: &Accounts,
    account: &str,
    amount: i64,
    date: NaiveDate,
    invoice: Option<&str>,
    text: &str,
) -> Result<(i64, i64), PayError> {
    check_account(accounts, account)?;
    if amount <= 0 {
        return refused("the amount must be positive");
    }
    if amount > MAX_MANUAL_CENTS {
        return refused(format!(
            "the amount must be at most {} (a larger sum is not a manual payment)",
            format_cents(MAX_MANUAL_CENTS)
        ));
    }
    if let Some(n) = invoice {
        check_invoice(ledger, account, n)?;
    }
    ledger.transact(|ledger, tx| {
        let mut extra = Vec::new();
        Ok(apply_payment(
            ledger,
            tx,
            &mut extra,
            account,
            invoice,
            amount,
            &date.to_string(),
            "manual",
            text,
        )?)
    })
}

/// Refunds (part of) a credit balance.
pub fn refund(
    ledger: &Ledger,
    accounts: &Accounts,
    account: &str,
    amount: i64,
    date: NaiveDate,
) -> Result<i64, PayError> {
    check_account(accounts, account)?;
    if amount <= 0 {
        return refused("the amount must be positive");
    }
    ledger.transact(|ledger, tx| {
        let (balance, _) = derive(account, entries(ledger, account, &[])?, date);
        if -balance < amount {
            return refused(format!(
                "account {account} has a credit of {}, less than the refund of {}",
                format_cents((-balance).max(0)),
                format_cents(amount)
            ));
        }
        post(
            tx,
            Entry {
                id: 0,
                account: account.to_owned(),
                date: date.to_string(),
                kind: Kind::Refund,
                amount: format_cents(amount),
                invoice: None,
                due_date: None,
                source: "manual".into(),
                text: "refund of credit balance".into(),
            },
        );
        Ok(balance + amount)
    })
}

/// What a collection run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectReport {
    pub msg_id: Option<String>,
    pub transactions: usize,
    pub total: String,
    pub frst: usize,
    pub rcur: usize,
    /// True when nothing new was due and an earlier batch of the same date was rewritten.
    pub rewritten: bool,
}

/// Writes a pain.008.001.02 file for every open invoice of a direct-debit account due
/// on or before `date`, never collected before, to be collected on `date`. The run is
/// recorded (collection state per invoice, end-to-end ids, mandates used, the XML) in
/// one batch before the file is written; re-running for the same date with nothing new
/// rewrites the last batch of that date.
pub fn collect(
    cfg: &Config,
    ledger: &Ledger,
    accounts: &Accounts,
    currency: &str,
    date: NaiveDate,
    out: &Path,
) -> Result<CollectReport, PayError> {
    let Some(sepa) = &cfg.sepa else {
        return refused(format!(
            "config {}: a [sepa] table (creditor_id, creditor_name, creditor_iban, creditor_bic) is required for collect",
            cfg.source.display()
        ));
    };
    if currency != "EUR" {
        return refused(format!(
            "SEPA direct debits are in EUR, the tariff currency is {currency}"
        ));
    }
    let d = date.to_string();
    let (report, xml) = ledger.transact(|ledger, tx| {
        let mut debits = Vec::new();
        let mut first_seen = std::collections::HashSet::new();
        for a in accounts
            .list
            .iter()
            .filter(|a| a.payment_method == PaymentMethod::DirectDebit)
        {
            let (_, items) = derive(&a.account_id, entries(ledger, &a.account_id, &[])?, date);
            for it in items {
                if it.open_cents <= 0
                    || it.due_date.as_str() > d.as_str()
                    || collection(ledger, &it.invoice)?.is_some()
                {
                    continue;
                }
                let used = ledger
                    .pay_get(
                        PayCf::Collections,
                        format!("mandate/{}", a.mandate_id).as_bytes(),
                    )?
                    .is_some();
                let sequence = if used || !first_seen.insert(a.mandate_id.clone()) {
                    "RCUR"
                } else {
                    "FRST"
                };
                debits.push((
                    it.invoice.clone(),
                    crate::sepa::Debit {
                        end_to_end_id: format!("TG-{}", it.invoice),
                        amount_cents: it.open_cents,
                        mandate_id: a.mandate_id.clone(),
                        mandate_date: a.mandate_date.clone(),
                        debtor_name: if a.name.is_empty() {
                            a.account_id.clone()
                        } else {
                            a.name.clone()
                        },
                        debtor_iban: a.iban.clone(),
                        debtor_bic: a.bic.clone(),
                        remittance: format!(
                            "Invoice {} {}",
                            it.invoice,
                            crate::sepa::payment_reference(&it.invoice).unwrap_or_default()
                        ),
                        sequence,
                    },
                ));
            }
        }
        if debits.is_empty() {
            let prefix = format!("batch/{d}/");
            let last = ledger
                .pay_scan(PayCf::Collections, prefix.as_bytes())?
                .pop();
            return Ok(match last {
                Some((k, v)) => (
                    CollectReport {
                        msg_id: Some(String::from_utf8_lossy(&k[prefix.len()..]).into_owned()),
                        transactions: 0,
                        total: "0.00".into(),
                        frst: 0,
                        rcur: 0,
                        rewritten: true,
                    },
                    Some(v),
                ),
                None => (
                    CollectReport {
                        msg_id: None,
                        transactions: 0,
                        total: "0.00".into(),
                        frst: 0,
                        rcur: 0,
                        rewritten: false,
                    },
                    None,
                ),
            });
        }
        let msg_id = format!("TG-{}-{:06}", date.format("%Y%m%d"), tx.next_id());
        let created = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
        let creditor = crate::sepa::Creditor {
            id: sepa.creditor_id.clone(),
            name: sepa.creditor_name.clone(),
            iban: sepa.creditor_iban.clone(),
            bic: sepa.creditor_bic.clone(),
        };
        let list: Vec<crate::sepa::Debit> = debits.iter().map(|(_, d)| d.clone()).collect();
        let xml = crate::sepa::pain008(&msg_id, &created, &d, &creditor, &list);
        for (inv, dd) in &debits {
            let c = Collection {
                end_to_end_id: dd.end_to_end_id.clone(),
                msg_id: msg_id.clone(),
                date: d.clone(),
                amount: format_cents(dd.amount_cents),
                sequence: dd.sequence.into(),
                status: "pending".into(),
                return_reason: None,
            };
            tx.put(
                PayCf::Collections,
                format!("inv/{inv}"),
                serde_json::to_vec(&c).expect("json"),
            );
            tx.put(
                PayCf::Refs,
                format!("e2e/{}", dd.end_to_end_id),
                inv.clone().into_bytes(),
            );
            tx.put(
                PayCf::Collections,
                format!("mandate/{}", dd.mandate_id),
                msg_id.clone().into_bytes(),
            );
        }
        tx.put(
            PayCf::Collections,
            format!("batch/{d}/{msg_id}"),
            xml.clone().into_bytes(),
        );
        let total: i64 = list.iter().map(|x| x.amount_cents).sum();
        Ok::<_, PayError>((
            CollectReport {
                msg_id: Some(msg_id),
                transactions: list.len(),
                total: format_cents(total),
                frst: list.iter().filter(|x| x.sequence == "FRST").count(),
                rcur: list.iter().filter(|x| x.sequence == "RCUR").count(),
                rewritten: false,
            },
            Some(xml.into_bytes()),
        ))
    })?;
    if let Some(xml) = xml {
        crate::fsutil::write_renamed(out, &xml)
            .map_err(|e| PayError::Refused(format!("cannot write {}: {e}", out.display())))?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: Kind, amount: &str, invoice: Option<&str>, due: Option<&str>) -> Entry {
        Entry {
            id: 0,
            account: "A".into(),
            date: "2026-10-01".into(),
            kind,
            amount: amount.into(),
            invoice: invoice.map(Into::into),
            due_date: due.map(Into::into),
            source: "t".into(),
            text: String::new(),
        }
    }

    #[test]
    fn derivation_of_items_and_balance() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let es = vec![
            e(Kind::Invoice, "12.10", Some("I1"), Some("2026-10-15")),
            e(Kind::Invoice, "20.00", Some("I2"), Some("2026-11-15")),
            e(Kind::Payment, "-5.00", Some("I1"), None),
            e(Kind::Payment, "-10.00", None, None),
        ];
        let (bal, items) = derive("A", es.clone(), d("2026-10-10"));
        assert_eq!(bal, 1710);
        // The credit of 10.00 pays I1 (oldest) first: 7.10 open → 0, 2.90 to I2.
        assert_eq!(items[0].open, "0.00");
        assert_eq!(items[0].status, Status::Paid);
        assert_eq!(items[1].open, "17.10");
        assert_eq!(items[1].status, Status::PartiallyPaid);
        let (_, items) = derive("A", es[..3].to_vec(), d("2026-10-16"));
        assert_eq!(items[0].status, Status::Overdue);
        assert_eq!(items[0].open, "7.10");
        assert_eq!(items[1].status, Status::Open);
        // A returned debit reopens.
        let mut es2 = es[..1].to_vec();
        es2.push(e(Kind::Payment, "-12.10", Some("I1"), None));
        es2.push(e(Kind::Return, "12.10", Some("I1"), None));
        let (bal, items) = derive("A", es2, d("2026-10-16"));
        assert_eq!(bal, 1210);
        assert_eq!(items[0].status, Status::Overdue);
    }

    #[test]
    fn credit_notes_reduce_the_open_item_and_overflow_into_credit() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let inv = e(Kind::Invoice, "12.10", Some("I1"), Some("2026-10-15"));
        // Part of an open invoice credited: 6.05 open, nothing paid.
        let es = vec![inv.clone(), e(Kind::CreditNote, "-6.05", Some("I1"), None)];
        let (bal, items) = derive("A", es, d("2026-10-10"));
        assert_eq!(bal, 605);
        let i = &items[0];
        assert_eq!(
            (
                i.total.as_str(),
                i.credited.as_str(),
                i.paid.as_str(),
                i.open.as_str()
            ),
            ("12.10", "6.05", "0.00", "6.05")
        );
        assert_eq!(i.status, Status::Open);
        // Paid, then credited in full: the payment becomes credit on the account.
        let paid = vec![
            inv.clone(),
            e(Kind::Payment, "-12.10", Some("I1"), None),
            e(Kind::CreditNote, "-12.10", Some("I1"), None),
        ];
        let (bal, items) = derive("A", paid.clone(), d("2026-10-20"));
        assert_eq!(bal, -1210);
        let i = &items[0];
        assert_eq!(
            (i.credited.as_str(), i.paid.as_str(), i.open.as_str()),
            ("12.10", "0.00", "0.00")
        );
        assert_eq!(i.status, Status::Credited);
        // … which pays the next invoice.
        let mut next = paid;
        next.push(e(Kind::Invoice, "20.00", Some("I2"), Some("2026-11-15")));
        let (bal, items) = derive("A", next, d("2026-11-01"));
        assert_eq!(bal, 790);
        assert_eq!(
            (items[1].paid.as_str(), items[1].open.as_str()),
            ("12.10", "7.90")
        );
        assert_eq!(items[1].status, Status::PartiallyPaid);
        // Paid, then credited in part: paid = total − credited, the rest is credit.
        let es = vec![
            inv,
            e(Kind::Payment, "-12.10", Some("I1"), None),
            e(Kind::CreditNote, "-2.42", Some("I1"), None),
        ];
        let (bal, items) = derive("A", es, d("2026-10-20"));
        assert_eq!(bal, -242);
        assert_eq!(
            (items[0].paid.as_str(), items[0].status),
            ("9.68", Status::Paid)
        );
    }

    #[test]
    fn invoice_numbers_in_text() {
        assert_eq!(
            invoice_numbers("pay 2026-000012 and 2026-0000123, x2026-000001"),
            vec!["2026-000012", "2026-000001"]
        );
        assert_eq!(invoice_numbers("2026-000001"), vec!["2026-000001"]);
    }
}
