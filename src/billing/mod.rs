//! Billing documents: cycle close, credit notes, reissues and off-cycle final invoices.
//!
//! Rounding (see [`crate::rate::money`]): a line amount is the sum of its records' 6-decimal
//! charges rounded half-up to cents; VAT is computed once per (category, rate) over the
//! summed line amounts, half-up to cents ([`crate::billing::vat`]); total = net + VAT. A pro-rated
//! fee is fee × days / days in month, half-up to cents.
//!
//! Numbers are taken from their series' counter in the same synced batch that stores the
//! document (gap-free, never reused). Files (`<number>.json` and the UBL `<number>.xml`)
//! are written after the commit and rewritten from the ledger when missing.

pub mod annex;
pub mod close;
pub mod credit;
pub mod delivery;
pub mod documents;
pub mod draft;
pub mod files;
pub mod finals;
pub mod itemise;
pub mod model;
pub mod numbering;
pub mod posting;
pub mod privacy;
pub mod rerate;
pub mod vat;

// The workflows' entry points and the model, under the names callers use.
pub use close::{attach_payment, close_cycle, AccountUsage, CloseSummary};
pub use credit::{credit, prenotify, CreditOutcome, CreditWhat, Credited};
pub use files::{flush_pending, write_document, write_invoice_files};
pub use finals::final_invoice;
pub use model::{
    next_period, period_bounds, Customer, DocRef, FinalRecord, Invoice, Line, PaymentInfo, Period,
};
pub use numbering::{credit_series, format_number, invoice_series};

use crate::store::LedgerError;

pub(crate) fn refused(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Refused(e.to_string())
}
