//! The document model: the billing period, the invoice (and credit note) with its lines,
//! customer and payment block, exactly as stored in the `invoices` column family (the
//! fiscal record). Workflows ([`super::close`], [`mod@super::credit`], [`super::finals`])
//! build them; renderings ([`super::documents`]) read them.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::billing::vat::{BreakdownRow, Category};
use crate::config::Seller;
use crate::rate::accounts::Account;
use crate::rate::money::Cents;

/// A billing period `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    pub year: i32,
    pub month: u32,
}

impl std::str::FromStr for Period {
    type Err = String;
    fn from_str(s: &str) -> Result<Period, String> {
        let bad = || format!("`{s}` is not a period YYYY-MM");
        if s.len() != 7 || s.as_bytes()[4] != b'-' {
            return Err(bad());
        }
        let year: i32 = s[..4].parse().map_err(|_| bad())?;
        let month: u32 = s[5..].parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || !(1970..=9999).contains(&year) {
            return Err(bad());
        }
        Ok(Period { year, month })
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// An invoice line. Credit notes carry `credit` lines with negative amounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Line {
    Usage {
        service: String,
        destination: String,
        band: String,
        /// Number of records.
        quantity: u64,
        /// Billed units (seconds, messages or bytes) after increments.
        usage: u64,
        unit: String,
        amount: Cents,
        #[serde(default)]
        vat_category: String,
        #[serde(default)]
        vat_rate: String,
    },
    Subscription {
        plan: String,
        description: String,
        amount: Cents,
        #[serde(default)]
        vat_category: String,
        #[serde(default)]
        vat_rate: String,
    },
    /// A late-payment fee from dunning (collection costs, compensation, interest):
    /// outside the scope of VAT, added to the total after VAT.
    Fee {
        fee_id: String,
        fee: String,
        invoice: String,
        description: String,
        amount: Cents,
    },
    /// An allowance (bundle) of the plan: what the usage it covered was worth, as a
    /// negative amount. Shown even when unused ("0.00"); split into one line per VAT
    /// category when it discounted usage of several.
    Allowance {
        name: String,
        /// Units included (per period × periods billed): seconds, messages or bytes.
        included: u64,
        /// Units it covered.
        used: u64,
        unit: String,
        amount: Cents,
        vat_category: String,
        vat_rate: String,
    },
    Credit {
        description: String,
        /// 1-based line of the credited invoice; absent for an amount credit.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<usize>,
        amount: Cents,
        vat_category: String,
        vat_rate: String,
    },
}

impl Line {
    /// The line's amount.
    pub fn amount(&self) -> Cents {
        match self {
            Line::Usage { amount, .. }
            | Line::Subscription { amount, .. }
            | Line::Credit { amount, .. }
            | Line::Allowance { amount, .. }
            | Line::Fee { amount, .. } => *amount,
        }
    }

    /// Amount in cents.
    pub fn cents(&self) -> i64 {
        self.amount().0
    }

    /// (category, rate) of the line.
    /// Fee lines are outside the scope of VAT (never in the VAT breakdown).
    pub fn vat(&self) -> (Category, Decimal) {
        let (c, r) = match self {
            Line::Fee { .. } => return (Category::O, Decimal::ZERO),
            Line::Usage {
                vat_category,
                vat_rate,
                ..
            }
            | Line::Subscription {
                vat_category,
                vat_rate,
                ..
            }
            | Line::Allowance {
                vat_category,
                vat_rate,
                ..
            }
            | Line::Credit {
                vat_category,
                vat_rate,
                ..
            } => (vat_category, vat_rate),
        };
        (
            Category::parse(c).unwrap_or(Category::S),
            r.parse().unwrap_or(Decimal::ZERO),
        )
    }

    /// A one-line description (English) for documents.
    pub fn description(&self) -> String {
        match self {
            Line::Usage {
                service,
                destination,
                band,
                quantity,
                usage,
                unit,
                ..
            } => {
                let band = if band == "any" {
                    String::new()
                } else {
                    format!(" ({band})")
                };
                format!("{service} {destination}{band}: {quantity} records, {usage} {unit}")
            }
            Line::Allowance {
                name,
                included,
                used,
                unit,
                ..
            } => format!("Allowance {name}: {included} {unit} included, {used} {unit} used"),
            Line::Subscription { description, .. }
            | Line::Credit { description, .. }
            | Line::Fee { description, .. } => description.clone(),
        }
    }
}

/// How the invoice is to be paid (from the account's payment columns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentInfo {
    /// `transfer`, `direct_debit` or `card` (charged to the saved card on the due date).
    pub method: String,
    /// Transfer: the IBAN to pay to; direct debit: the customer's IBAN, masked.
    pub iban: String,
    /// Transfer: the EPC QR payload (EPC069-12) a banking app scans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epc_qr: Option<String>,
    /// Direct debit: the pre-notification of mandate, amount and collection date.
    /// `amount` (both methods): what is asked, the total less credit on the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mandate_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creditor_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Cents>,
    /// Card: the last four digits of the card saved when the document was issued (none
    /// saved yet: absent, and the invoice says "your card").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_last4: Option<String>,
    /// Card: its brand as the provider names it (`visa`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_brand: Option<String>,
}

/// The customer block of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Customer {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub street: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub postcode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub city: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub country: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub customer_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vat_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peppol_endpoint: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub language: String,
}

impl Customer {
    pub(crate) fn of(acc: Option<&Account>) -> Customer {
        acc.map(|a| Customer {
            name: a.name.clone(),
            street: a.street.clone(),
            postcode: a.postcode.clone(),
            city: a.city.clone(),
            country: a.country.clone(),
            customer_type: a.customer_type.name().into(),
            vat_id: a.vat_id.clone(),
            // The delivery id (`peppol_id`) is the endpoint when none is named apart.
            peppol_endpoint: if a.peppol_endpoint.is_empty() {
                a.peppol_id.clone()
            } else {
                a.peppol_endpoint.clone()
            },
            language: a.language.clone(),
        })
        .unwrap_or_default()
    }
}

/// A reference to an earlier document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocRef {
    pub number: String,
    pub issue_date: NaiveDate,
}

pub(crate) fn invoice_type() -> String {
    "invoice".into()
}

/// An invoice or credit note, as written to `invoice_dir/<period>/<number>.json` and kept
/// in RocksDB. Fields after `late_records` were added by issue 3 (older stored documents
/// read with their defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub number: String,
    pub account_id: String,
    pub period: String,
    pub currency: String,
    pub issue_date: NaiveDate,
    pub due_date: NaiveDate,
    pub seller: Seller,
    pub customer: Customer,
    pub lines: Vec<Line>,
    pub net_total: Cents,
    /// The customer's VAT rate (0 under reverse charge and outside the EU).
    pub vat_rate: String,
    pub vat_total: Cents,
    pub total: Cents,
    /// Records dated before the period, billed now because they arrived after their own close.
    pub late_records: u64,
    /// Dutch 16-digit structured payment reference (betalingskenmerk), see [`crate::payments::sepa`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentInfo>,
    /// `invoice` or `credit_note`.
    #[serde(default = "invoice_type")]
    pub document_type: String,
    /// First and last day billed (a final invoice ends early).
    #[serde(default)]
    pub period_start: String,
    #[serde(default)]
    pub period_end: String,
    /// Taxable amount and VAT per (category, rate).
    #[serde(default)]
    pub vat_breakdown: Vec<BreakdownRow>,
    /// Wording the law requires (reverse charge, outside scope).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vat_note: String,
    /// Credit notes: the invoice they credit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credited_invoice: Option<DocRef>,
    /// Reissued invoices: the invoice they replace (credited in full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<DocRef>,
    /// Reason of a credit note or reissue.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// An off-cycle final invoice (account closed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub final_invoice: bool,
    /// Usage per local day of the period (days with records), for the PDF's chart;
    /// derived at the close (by `itemise`), absent when it could not be verified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage_by_day: Vec<crate::billing::annex::DayUsage>,
    /// Accounts with the itemised opt-in: whether the annex is attached, or why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itemised: Option<crate::billing::annex::Itemised>,
}

impl Invoice {
    pub fn is_credit_note(&self) -> bool {
        self.document_type == "credit_note"
    }
}

/// First and last day of a period.
pub fn period_bounds(p: Period) -> (NaiveDate, NaiveDate) {
    let first = NaiveDate::from_ymd_opt(p.year, p.month, 1).expect("valid period");
    let next = if p.month == 12 {
        NaiveDate::from_ymd_opt(p.year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(p.year, p.month + 1, 1)
    }
    .expect("valid period");
    (first, next.pred_opt().expect("day before"))
}

/// The record of an account's final invoice (`finals` column family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalRecord {
    pub account_id: String,
    pub date: String,
    pub invoice: String,
    /// File commit sequence when it was issued: it billed the account's usage of files
    /// up to this sequence (absent in records written before this was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The last closed period when it was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_closed: Option<String>,
}

pub fn next_period(p: Period) -> Period {
    if p.month == 12 {
        Period {
            year: p.year + 1,
            month: 1,
        }
    } else {
        Period {
            year: p.year,
            month: p.month + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        let p: Period = "2026-10".parse().unwrap();
        assert_eq!(
            p,
            Period {
                year: 2026,
                month: 10
            }
        );
        assert_eq!(p.to_string(), "2026-10");
        for bad in ["2026-13", "2026-1", "26-10", "2026/10", "abcd-ef"] {
            assert!(bad.parse::<Period>().is_err(), "{bad}");
        }
    }
}
