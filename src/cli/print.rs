//! How the commands print their answers: JSON documents pretty or one per line, and
//! tab-separated pages with a header and a `# n of total … from offset o` footer.

use anyhow::Result;
use serde::Serialize;

use crate::ops::api::ops::{AccountDoc, BillDoc, Paged};
use crate::ops::api::pay::PaymentDoc;

/// A document as pretty JSON on a line of its own.
pub fn pretty<T: Serialize + ?Sized>(doc: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(doc)?);
    Ok(())
}

/// A document as compact JSON on one line.
pub fn line<T: Serialize + ?Sized>(doc: &T) -> Result<()> {
    println!("{}", serde_json::to_string(doc)?);
    Ok(())
}

/// A page as a tab-separated table: header, one line per item, footer.
fn table<T>(header: &str, page: &Paged<T>, what: &str, offset: u64, row: impl Fn(&T) -> String) {
    println!("{header}");
    for item in &page.items {
        println!("{}", row(item));
    }
    println!(
        "# {} of {} {what} from offset {offset}",
        page.items.len(),
        page.total
    );
}

/// `bills list`.
pub fn bills(page: &Paged<BillDoc>, offset: u64) {
    table(
        "billNo\taccount\tperiod\tnet\tvat\ttotal\tcurrency",
        page,
        "bills",
        offset,
        |b| {
            format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                b.bill_no,
                b.billing_account.id,
                b.period,
                b.tax_excluded_amount.value,
                b.tax_item
                    .first()
                    .map_or("0.00", |t| t.tax_amount.value.as_str()),
                b.amount_due.value,
                b.amount_due.unit
            )
        },
    );
}

/// `accounts list`.
pub fn accounts(page: &Paged<AccountDoc>, offset: u64) {
    table("id\tplan\tname\tcountry", page, "accounts", offset, |a| {
        format!(
            "{}\t{}\t{}\t{}",
            a.id,
            a.plan,
            a.name.as_deref().unwrap_or(""),
            a.country.as_deref().unwrap_or("")
        )
    });
}

/// `payments list`.
pub fn payments(page: &Paged<PaymentDoc>, offset: u64) {
    table(
        "id\tdate\taccount\tamount\tinvoice\tsource",
        page,
        "payments",
        offset,
        |p| {
            format!(
                "{}\t{}\t{}\t{}\t{}\t{}",
                p.id,
                p.payment_date,
                p.account.id,
                p.total_amount.value,
                p.bill_no.as_deref().unwrap_or("-"),
                p.source
            )
        },
    );
}
