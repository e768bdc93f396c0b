//! A credit note posted against the invoice it credits, and the late-payment fees that
//! follow the reduced debt.

use chrono::NaiveDate;

use super::*;
use crate::rate::money::Cents;
use crate::store::{Ledger, LedgerError, PayCf, Tx};

/// What the payments ledger needs of an issued credit note, built by the billing side
/// from the typed document ([`crate::billing::Invoice`]).
#[derive(Debug, Clone)]
pub struct CreditNotePosting {
    pub number: String,
    pub account: String,
    /// The invoice it credits.
    pub credited_invoice: String,
    pub issue_date: NaiveDate,
    /// The credit note's (negative) total.
    pub total: Cents,
    pub reason: String,
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
    note: &CreditNotePosting,
) -> Result<(), LedgerError> {
    let account = note.account.clone();
    let original = note.credited_invoice.clone();
    extra.push(post(
        tx,
        Entry {
            id: 0,
            account: account.clone(),
            date: note.issue_date,
            kind: Kind::CreditNote,
            amount: note.total,
            invoice: Some(original.clone()),
            due_date: None,
            source: format!("credit note {}", note.number),
            text: note.reason.clone(),
        },
    ));
    let as_of = note.issue_date;
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
            let before = fee.amount.0;
            let now = before.min(crate::payments::dunning::collection_costs(item.open_cents));
            if now != before {
                fee.amount = Cents(now);
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
