//! What billing hands the payments ledger: the posting of an issued invoice, built from
//! the typed document (never from its re-parsed JSON).

use crate::billing::model::{Invoice, Line};
use crate::payments::credit_note::CreditNotePosting;
use crate::payments::InvoicePosting;
use crate::store::LedgerError;

/// The payments posting of an invoice (not a credit note): its total, its fee lines and
/// where it comes from (`close P`, `final invoice`, `reissue`).
pub fn posting(inv: &Invoice) -> InvoicePosting {
    let fees = inv
        .lines
        .iter()
        .filter_map(|l| match l {
            Line::Fee {
                fee_id,
                description,
                amount,
                ..
            } => Some((fee_id.clone(), *amount, description.clone())),
            _ => None,
        })
        .collect();
    let reissue = inv.replaces.is_some();
    InvoicePosting {
        number: inv.number.clone(),
        account: inv.account_id.clone(),
        issue_date: inv.issue_date,
        due_date: Some(inv.due_date),
        total: inv.total,
        fees,
        source: if inv.final_invoice {
            "final invoice".to_owned()
        } else if reissue {
            "reissue".to_owned()
        } else {
            format!("close {}", inv.period)
        },
        reissue,
        payment_reference: inv.payment_reference.clone(),
    }
}

/// The payments posting of a credit note: its (negative) total on the invoice it credits.
pub fn credit_note_posting(inv: &Invoice) -> Result<CreditNotePosting, LedgerError> {
    let credited = inv.credited_invoice.as_ref().ok_or_else(|| {
        LedgerError::Refused(format!("credit note {} names no invoice", inv.number))
    })?;
    Ok(CreditNotePosting {
        number: inv.number.clone(),
        account: inv.account_id.clone(),
        credited_invoice: credited.number.clone(),
        issue_date: inv.issue_date,
        total: inv.total,
        reason: inv.reason.clone(),
    })
}
