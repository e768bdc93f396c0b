//! Money received and returned: bank statement import (camt.053/054) with matching,
//! returned debits, suspense and its assignment, manual payments, refunds of credit.

use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::*;
use crate::config::Config;
use crate::rate::accounts::{Account, Accounts};
use crate::rate::money::{format_cents, Cents};
use crate::store::{Ledger, LedgerError, PayCf, Tx};

/// Which invoice a bank credit pays: payment reference, then end-to-end id, then an
/// invoice number in the remittance text. Returns (invoice, account, how).
fn match_credit(
    ledger: &Ledger,
    t: &crate::payments::camt::BankTx,
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
    refs.extend(crate::payments::sepa::find_payment_references(&t.text));
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
/// rest on account (credit). Returns (on the invoice, on account). Bank credits, manual
/// and provider payments all go through here.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_payment(
    ledger: &Ledger,
    tx: &mut Tx,
    extra: &mut Vec<Entry>,
    account: &str,
    invoice: Option<&str>,
    amount: i64,
    date: NaiveDate,
    source: &str,
    text: &str,
) -> Result<(i64, i64), LedgerError> {
    let as_of = date;
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
        date,
        kind: Kind::Payment,
        amount: Cents::ZERO,
        invoice: None,
        due_date: None,
        source: source.to_owned(),
        text: text.to_owned(),
    };
    if on_invoice > 0 {
        extra.push(post(
            tx,
            Entry {
                amount: Cents(-on_invoice),
                invoice: invoice.map(str::to_owned),
                ..base.clone()
            },
        ));
    }
    if rest > 0 {
        extra.push(post(
            tx,
            Entry {
                amount: Cents(-rest),
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
    pub amount: Cents,
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
    let stmts = crate::payments::camt::parse(bytes)
        .map_err(|m| PayError::Refused(format!("{file}: {m}")))?;
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
                crate::rate::iban::mask_iban(&s.iban),
                ours.iter()
                    .map(|i| crate::rate::iban::mask_iban(i))
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
                                t.date,
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
                            put_suspense(
                                tx,
                                Suspense {
                                    id: 0,
                                    identity: t.identity.clone(),
                                    date: t.date.to_string(),
                                    amount: Cents(t.amount_cents),
                                    name: t.name.clone(),
                                    iban: t.iban.clone(),
                                    text: t.text.clone(),
                                    file: file.clone(),
                                },
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
                                date: t.date,
                                kind: Kind::Return,
                                amount: Cents(t.amount_cents),
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
                            crate::payments::dunning::queue_return_notice(
                                cfg,
                                tx,
                                a,
                                &inv,
                                t.amount_cents,
                                &t.date.to_string(),
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

/// Puts money nobody could be matched to on the suspense list (assigns its id).
pub(crate) fn put_suspense(tx: &mut Tx, mut item: Suspense) -> u64 {
    item.id = tx.next_id();
    tx.put(
        PayCf::Suspense,
        item.id.to_be_bytes().to_vec(),
        serde_json::to_vec(&item).expect("json"),
    );
    item.id
}

/// The suspense list.
pub fn suspense(ledger: &Ledger) -> Result<Vec<Suspense>, LedgerError> {
    ledger
        .pay_scan(PayCf::Suspense, b"")?
        .into_iter()
        .map(|(k, v)| ledger.pay_json(PayCf::Suspense, &k, &v))
        .collect()
}

pub(crate) fn check_account<'a>(
    accounts: &'a Accounts,
    account: &str,
) -> Result<&'a Account, PayError> {
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
        let amount = s.amount.0;
        let date = NaiveDate::parse_from_str(&s.date, "%Y-%m-%d").map_err(|_| {
            PayError::Refused(format!(
                "suspense item {id}: date `{}` is not YYYY-MM-DD",
                s.date
            ))
        })?;
        let mut extra = Vec::new();
        Ok(apply_payment(
            ledger,
            tx,
            &mut extra,
            account,
            invoice,
            amount,
            date,
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
            ledger, tx, &mut extra, account, invoice, amount, date, "manual", text,
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
        post_refund(
            ledger,
            tx,
            account,
            amount,
            date,
            "manual",
            "refund of credit balance",
        )
    })
}

/// Posts a refund of `amount` out of the account's credit balance (refused when the
/// credit is smaller); returns the balance after it. Manual refunds and refunds through
/// the payment provider share it.
pub(crate) fn post_refund(
    ledger: &Ledger,
    tx: &mut Tx,
    account: &str,
    amount: i64,
    date: NaiveDate,
    source: &str,
    text: &str,
) -> Result<i64, PayError> {
    let balance = check_credit(ledger, account, amount, date)?;
    post(
        tx,
        Entry {
            id: 0,
            account: account.to_owned(),
            date,
            kind: Kind::Refund,
            amount: Cents(amount),
            invoice: None,
            due_date: None,
            source: source.to_owned(),
            text: text.to_owned(),
        },
    );
    Ok(balance + amount)
}

/// The account's balance when its credit covers a refund of `amount`, else refused.
pub(crate) fn check_credit(
    ledger: &Ledger,
    account: &str,
    amount: i64,
    date: NaiveDate,
) -> Result<i64, PayError> {
    let (balance, _) = derive(account, entries(ledger, account, &[])?, date);
    if -balance < amount {
        return refused(format!(
            "account {account} has a credit of {}, less than the refund of {}",
            format_cents((-balance).max(0)),
            format_cents(amount)
        ));
    }
    Ok(balance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoice_numbers_in_text() {
        assert_eq!(
            invoice_numbers("pay 2026-000012 and 2026-0000123, x2026-000001"),
            vec!["2026-000012", "2026-000001"]
        );
        assert_eq!(invoice_numbers("2026-000001"), vec!["2026-000001"]);
    }
}
