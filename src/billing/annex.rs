//! The rated detail a document carries: usage per day (for the PDF's chart), whether the
//! itemised annex is attached, and the annex itself with its masking of called numbers.
//! Derived by [`super::itemise`]; read by the documents and by privacy erasure.

use serde::{Deserialize, Serialize};

use crate::rate::money::{Cents, Micros};

/// Usage of one local day of the period (the PDF's chart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayUsage {
    pub date: String,
    pub records: u64,
    /// Sum of the day's rated charges, 6 decimals.
    pub charge: Micros,
}

/// The itemisation state of an invoice (in its JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Itemised {
    /// `attached` (the annex is `<number>.annex.json` and PDF pages) or `unavailable`.
    pub status: String,
    /// Records listed in the annex.
    pub records: u64,
    /// Records to numbers free to the caller, left out of the list.
    pub omitted: u64,
    /// Why the annex is unavailable.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl Itemised {
    /// An annex listing `records` records (and omitting `omitted`) is attached.
    pub(crate) fn attached(records: u64, omitted: u64) -> Itemised {
        Itemised {
            status: "attached".into(),
            records,
            omitted,
            reason: String::new(),
        }
    }

    /// The state of an invoice whose annex cannot be given, and why.
    pub(crate) fn unavailable(reason: String) -> Option<(Itemised, Option<Annex>)> {
        Some((
            Itemised {
                status: "unavailable".into(),
                records: 0,
                omitted: 0,
                reason,
            },
            None,
        ))
    }
}

/// One record in the annex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnexRecord {
    /// Local start time (`YYYY-MM-DD HH:MM:SS`) in `Annex::timezone`.
    pub time: String,
    /// The called number (E.164 with `+`, short codes as dialled), masked per the account.
    pub number: String,
    /// Usage as recorded: seconds, messages or bytes.
    pub usage: u64,
    /// Billed units after increments.
    pub billed: u64,
    /// The record's charge, 6 decimals.
    pub charge: Micros,
    /// Units an allowance of the plan covered (absent: none, the charge stands).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub covered: u64,
    /// Which allowances covered them, in plan order (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowances: Vec<AnnexDraw>,
    /// The record's charge after the allowances, 6 decimals (absent when none covered
    /// it): 0 when fully covered, else the uncovered units at the rate, half-up to 6
    /// decimals, without the connect fee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charge_after_allowances: Option<Micros>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What one allowance covered of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnexDraw {
    /// The allowance's name, as on the invoice line.
    pub name: String,
    /// Units it covered.
    pub units: u64,
    /// Its share of the record's value (charge − charge after allowances), 6 decimals.
    pub value: Micros,
}

/// An allowance line of the invoice, reproduced from the records the annex lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnexAllowance {
    /// 1-based line of the invoice.
    pub line: usize,
    pub name: String,
    pub unit: String,
    /// Units the records of this line's VAT group took from the allowance.
    pub units: u64,
    /// Exact sum of their shares of the value (listed and omitted records), 6 decimals.
    pub value: Micros,
    /// The invoice line's amount: `-value` rounded half-up to cents.
    pub amount: Cents,
}

/// The records of one usage line of the invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnexLine {
    /// 1-based line of the invoice.
    pub line: usize,
    pub service: String,
    pub destination: String,
    pub band: String,
    pub unit: String,
    pub records: Vec<AnnexRecord>,
    /// Records to free numbers left out of the list, and their charge (6 decimals).
    pub omitted_records: u64,
    pub omitted_charge: Micros,
    /// Exact sum of every record's charge (listed and omitted), 6 decimals.
    pub charge_sum: Micros,
    /// The invoice line's amount: `charge_sum` rounded half-up to cents.
    pub amount: Cents,
}

/// The itemised annex of an invoice (`<number>.annex.json`, stored in the ledger).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annex {
    pub invoice: String,
    pub account_id: String,
    pub period: String,
    /// Time zone of the times (the tariff's; accounts carry none).
    pub timezone: String,
    /// `none` or `lastN`: trailing digits replaced by `x`.
    pub masking: String,
    /// Called-number prefixes (E.164 digits) left out: free to the caller.
    pub omitted_prefixes: Vec<String>,
    pub lines: Vec<AnnexLine>,
    /// The invoice's allowance lines (absent for plans without allowances).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowances: Vec<AnnexAllowance>,
}

/// Masks the last `keep_hidden` digits of a number with `x`.
pub fn mask(number: &str, hidden: u8) -> String {
    let n = number.chars().count();
    let hide = (hidden as usize).min(n);
    number
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i >= n - hide && c.is_ascii_digit() {
                'x'
            } else {
                c
            }
        })
        .collect()
}

/// How a normalized number is shown: `+` and the digits for numbers longer than 6
/// digits (E.164), short codes as they are.
pub fn display_number(digits: &str) -> String {
    if digits.len() > 6 {
        format!("+{digits}")
    } else {
        digits.to_owned()
    }
}

/// Digits an annex's `masking` hides (`none` = 0, `lastN` = N).
pub fn hidden_digits(masking: &str) -> u8 {
    masking
        .strip_prefix("last")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
