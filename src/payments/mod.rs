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

pub mod camt;
pub mod collect;
pub mod credit_note;
pub mod dunning;
pub mod mail;
pub mod psp;
pub mod receipts;
pub mod sepa;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::rate::money::Cents;
use crate::store::{Ledger, LedgerError, PayCf, Tx};

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

pub(crate) fn refused<T>(m: impl Into<String>) -> Result<T, PayError> {
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
    pub date: NaiveDate,
    pub kind: Kind,
    /// Signed amount with 2 decimals (see the module doc).
    pub amount: Cents,
    /// The invoice this entry belongs to; `None` = on account (e.g. an over-payment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice: Option<String>,
    /// Due date (invoice entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<NaiveDate>,
    /// Where it came from: `close`, a bank entry identity, `manual`, …
    pub source: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

impl Entry {
    pub fn cents(&self) -> i64 {
        self.amount.0
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

/// What the payments ledger needs of an issued invoice, built by the billing side from
/// the typed document ([`crate::billing::Invoice`]).
#[derive(Debug, Clone)]
pub struct InvoicePosting {
    pub number: String,
    pub account: String,
    pub issue_date: NaiveDate,
    pub due_date: Option<NaiveDate>,
    /// The invoice total, fee lines included.
    pub total: Cents,
    /// Fee lines: (fee id, amount, description).
    pub fees: Vec<(String, Cents, String)>,
    /// `close P`, `final invoice` or `reissue`.
    pub source: String,
    /// A reissue bills again fee lines its credit note cancelled.
    pub reissue: bool,
    pub payment_reference: Option<String>,
}

/// Posts an issued invoice (inside the batch that stores it): the invoice entry (total
/// minus fee lines), one fee entry per fee line (and the pending fee is consumed), and
/// the lookups `inv/<number>` → account and `ref/<reference>` → number.
pub fn post_invoice(inv: &InvoicePosting, tx: &mut Tx) -> Vec<Entry> {
    let fees: Cents = inv.fees.iter().map(|f| f.1).sum();
    let entry = |kind, amount, due_date, source, text| Entry {
        id: 0,
        account: inv.account.clone(),
        date: inv.issue_date,
        kind,
        amount,
        invoice: Some(inv.number.clone()),
        due_date,
        source,
        text,
    };
    let mut posted = vec![post(
        tx,
        entry(
            Kind::Invoice,
            inv.total - fees,
            inv.due_date,
            inv.source.clone(),
            String::new(),
        ),
    )];
    for (id, amount, text) in &inv.fees {
        posted.push(post(
            tx,
            entry(Kind::Fee, *amount, None, id.clone(), text.clone()),
        ));
        // A reissue bills again fee lines its credit note cancelled: their pending fees
        // were consumed when first billed, and one with the same id now (interest
        // accruing since) is not the one it bills.
        if !inv.reissue {
            tx.delete(PayCf::Fees, id.as_bytes().to_vec());
        }
    }
    tx.put(
        PayCf::Refs,
        format!("inv/{}", inv.number),
        inv.account.as_bytes().to_vec(),
    );
    if let Some(r) = &inv.payment_reference {
        tx.put(
            PayCf::Refs,
            format!("ref/{r}"),
            inv.number.as_bytes().to_vec(),
        );
    }
    posted
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
    pub total: Cents,
    /// Credit notes on it (positive; at most `total`).
    pub credited: Cents,
    /// What payments settled: `total - credited - open`.
    pub paid: Cents,
    pub open: Cents,
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
    pub amount: Cents,
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
    pub balance: Cents,
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
    pub amount: Cents,
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
                    a.issue = e.date.to_string();
                    a.due = e.due_date.map(|d| d.to_string()).unwrap_or_default();
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
                total: Cents(a.total),
                credited: Cents(credited),
                paid: Cents(paid),
                open: Cents(a.open),
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
        balance: Cents(balance),
        entries: es,
        items,
        pending_fees: pending_fees(ledger, Some(account))?,
        balance_cents: balance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: Kind, amount: &str, invoice: Option<&str>, due: Option<&str>) -> Entry {
        Entry {
            id: 0,
            account: "A".into(),
            date: "2026-10-01".parse().unwrap(),
            kind,
            amount: amount.parse().unwrap(),
            invoice: invoice.map(Into::into),
            due_date: due.map(|d| d.parse().unwrap()),
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
        assert_eq!(items[0].open.to_string(), "0.00");
        assert_eq!(items[0].status, Status::Paid);
        assert_eq!(items[1].open.to_string(), "17.10");
        assert_eq!(items[1].status, Status::PartiallyPaid);
        let (_, items) = derive("A", es[..3].to_vec(), d("2026-10-16"));
        assert_eq!(items[0].status, Status::Overdue);
        assert_eq!(items[0].open.to_string(), "7.10");
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
                i.total.to_string().as_str(),
                i.credited.to_string().as_str(),
                i.paid.to_string().as_str(),
                i.open.to_string().as_str()
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
            (
                i.credited.to_string().as_str(),
                i.paid.to_string().as_str(),
                i.open.to_string().as_str()
            ),
            ("12.10", "0.00", "0.00")
        );
        assert_eq!(i.status, Status::Credited);
        // … which pays the next invoice.
        let mut next = paid;
        next.push(e(Kind::Invoice, "20.00", Some("I2"), Some("2026-11-15")));
        let (bal, items) = derive("A", next, d("2026-11-01"));
        assert_eq!(bal, 790);
        assert_eq!(
            (
                items[1].paid.to_string().as_str(),
                items[1].open.to_string().as_str()
            ),
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
            (items[0].paid.to_string().as_str(), items[0].status),
            ("9.68", Status::Paid)
        );
    }
}
