//! A credit note posted against the invoice it credits, and the late-payment fees that
//! follow the reduced debt.

use chrono::NaiveDate;

use super::*;
use crate::rate::money::{format_cents, parse_cents};
use crate::store::{Ledger, LedgerError, PayCf, Tx};

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
            let now = before.min(crate::payments::dunning::collection_costs(item.open_cents));
            if now != before {
                fee.amount = format_cents(now);
                tx.put(PayCf::Fees, id, serde_json::to_vec(&fee).expect("json"));
            }
        }
    }
    if cancelled {
        for mut m in crate::payments::dunning::outbox(ledger)? {
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
