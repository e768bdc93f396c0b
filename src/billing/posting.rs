//! What billing hands the payments ledger: the posting of an issued invoice, built from
//! the typed document (never from its re-parsed JSON).

use crate::billing::model::{Invoice, Line};
use crate::payments::InvoicePosting;
use crate::rate::money::parse_cents;
use crate::store::LedgerError;

/// The payments posting of an invoice (not a credit note): its total, its fee lines and
/// where it comes from (`close P`, `final invoice`, `reissue`).
pub fn posting(inv: &Invoice) -> Result<InvoicePosting, LedgerError> {
    let cents = |what: &str, s: &str| {
        parse_cents(s)
            .map_err(|e| LedgerError::Refused(format!("invoice {}: {what} `{s}`: {e}", inv.number)))
    };
    let mut fees = Vec::new();
    for l in &inv.lines {
        if let Line::Fee {
            fee_id,
            description,
            amount,
            ..
        } = l
        {
            fees.push((
                fee_id.clone(),
                cents("fee amount", amount)?,
                description.clone(),
            ));
        }
    }
    let reissue = inv.replaces.is_some();
    Ok(InvoicePosting {
        number: inv.number.clone(),
        account: inv.account_id.clone(),
        issue_date: inv.issue_date.clone(),
        due_date: Some(inv.due_date.clone()),
        total_cents: cents("total", &inv.total)?,
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
    })
}
