//! Document numbers: the gap-free series of invoices and credit notes (yearly or
//! running), taken from their counter in the batch that stores the document.

use crate::config::Numbering;

/// Formats a document number.
pub fn format_number(prefix: &str, yearly: bool, year: i32, n: u64) -> String {
    if yearly {
        format!("{prefix}{year:04}-{n:06}")
    } else {
        format!("{prefix}{n:08}")
    }
}

/// Counter key and number prefix of the invoice series.
pub fn invoice_series(n: &Numbering, year: i32) -> (String, String) {
    let key = if n.yearly_reset {
        format!("counter/{year:04}")
    } else {
        "counter/all".into()
    };
    (key, n.prefix.clone())
}

/// Counter key and number prefix of the credit note series.
pub fn credit_series(n: &Numbering, year: i32) -> (String, String) {
    if n.credit_shared {
        return invoice_series(n, year);
    }
    let key = if n.yearly_reset {
        format!("counter-credit/{year:04}")
    } else {
        "counter-credit/all".into()
    };
    (key, n.credit_prefix.clone())
}
