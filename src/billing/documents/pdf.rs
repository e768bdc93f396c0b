//! The invoice PDF a person reads in ten seconds, in the customer's language (`nl`, `en`).
//!
//! Page 1, top to bottom: what to pay, by when and how; usage by category (calls, SMS,
//! data, subscription) with a small bar chart of the amounts; the VAT table; the fields
//! of VAT Directive art. 226 (number, dates, period, both parties with addresses, VAT
//! IDs, KvK, reverse-charge wording). Then every invoice line. A hybrid e-invoice:
//! PDF/A-3b written by `krilla`, with the subset of Liberation Sans it uses embedded
//! (every name and address of the EU's languages prints; see `fonts`) and the
//! invoice's UBL document embedded as an associated file (`<number>.xml`,
//! `AFRelationship /Alternative`, as Factur-X/ZUGFeRD do), so one file serves a person
//! and an accounting system. No images (the EPC QR code of a transfer invoice is drawn
//! as filled rectangles in the payment box); deterministic bytes (the dates in it are
//! the issue date, the document ID is derived from the content).

use crate::billing::annex::Annex;
use crate::billing::documents::{fonts, units};
use crate::billing::model::{Invoice, Line};
use crate::rate::money::{format_cents, format_micros, Cents};
use chrono::Datelike;

/// Texts in one language.
struct Words {
    invoice: &'static str,
    credit_note: &'static str,
    to_pay: &'static str,
    by: &'static str,
    how: &'static str,
    payee: &'static str,
    scan: &'static str,
    pay_online: &'static str,
    less: &'static str,
    account_credit: &'static str,
    reference: &'static str,
    direct_debit: &'static str,
    card: &'static str,
    on: &'static str,
    from: &'static str,
    mandate: &'static str,
    creditor_id: &'static str,
    credited: &'static str,
    usage: &'static str,
    calls: &'static str,
    sms: &'static str,
    data: &'static str,
    subscription: &'static str,
    other: &'static str,
    vat: &'static str,
    category: &'static str,
    rate: &'static str,
    taxable: &'static str,
    number: &'static str,
    date: &'static str,
    due: &'static str,
    period: &'static str,
    customer: &'static str,
    seller: &'static str,
    net: &'static str,
    total: &'static str,
    lines: &'static str,
    line: &'static str,
    credits: &'static str,
    replaces: &'static str,
    reason: &'static str,
    by_day: &'static str,
    annex: &'static str,
    annex_unavailable: &'static str,
    annex_erased: &'static str,
    time: &'static str,
    called: &'static str,
    usage_col: &'static str,
    charge: &'static str,
    omitted: &'static str,
    line_sum: &'static str,
    /// A covered record's sub-line: "from <allowance>: <units>", "after allowances".
    from_allowance: &'static str,
    after_allowance: &'static str,
    allowances: &'static str,
}

const NL: Words = Words {
    invoice: "Factuur",
    credit_note: "Creditnota",
    to_pay: "Te betalen",
    by: "uiterlijk",
    how: "Overmaken naar",
    payee: "t.n.v.",
    scan: "Betaal met uw bank-app: scan de QR-code",
    pay_online: "Online betalen",
    less: "min",
    account_credit: "tegoed op uw rekening",
    reference: "betalingskenmerk",
    direct_debit: "Automatische incasso",
    card: "Betaalkaart",
    on: "op",
    from: "Van rekening",
    mandate: "machtiging",
    creditor_id: "incassant-ID",
    credited: "Gecrediteerd",
    usage: "Gebruik per soort",
    calls: "Bellen",
    sms: "SMS",
    data: "Data",
    subscription: "Abonnement",
    other: "Overig",
    vat: "Btw",
    category: "Categorie",
    rate: "Tarief",
    taxable: "Grondslag",
    number: "Factuurnummer",
    date: "Factuurdatum",
    due: "Vervaldatum",
    period: "Periode",
    customer: "Klant",
    seller: "Leverancier",
    net: "Totaal excl. btw",
    total: "Totaal incl. btw",
    lines: "Specificatie",
    line: "Regel",
    credits: "Crediteert factuur",
    replaces: "Vervangt factuur",
    reason: "Reden",
    by_day: "Verbruik over de maand (per dag)",
    annex: "Bijlage: gespecificeerd gebruik",
    annex_unavailable: "Gespecificeerde bijlage niet beschikbaar",
    annex_erased: "Gespecificeerde bijlage gewist (bewaartermijn verkeersgegevens)",
    time: "Datum en tijd",
    called: "Gebeld nummer",
    usage_col: "Gebruik",
    charge: "Bedrag",
    omitted: "naar gratis nummers niet vermeld, samen",
    line_sum: "Som",
    from_allowance: "uit bundel",
    after_allowance: "na bundel",
    allowances: "Bundels: wat de gemarkeerde records gebruikten",
};

const EN: Words = Words {
    invoice: "Invoice",
    credit_note: "Credit note",
    to_pay: "To pay",
    by: "by",
    how: "Transfer to",
    payee: "in the name of",
    scan: "Pay with your banking app: scan the QR code",
    pay_online: "Pay online",
    less: "less",
    account_credit: "credit on your account",
    reference: "payment reference",
    direct_debit: "Direct debit",
    card: "Card payment",
    on: "on",
    from: "From account",
    mandate: "mandate",
    creditor_id: "creditor ID",
    credited: "Credited",
    usage: "Usage by category",
    calls: "Calls",
    sms: "SMS",
    data: "Data",
    subscription: "Subscription",
    other: "Other",
    vat: "VAT",
    category: "Category",
    rate: "Rate",
    taxable: "Taxable amount",
    number: "Invoice number",
    date: "Invoice date",
    due: "Due date",
    period: "Period",
    customer: "Customer",
    seller: "Supplier",
    net: "Total excl. VAT",
    total: "Total incl. VAT",
    lines: "Details",
    line: "Line",
    credits: "Credits invoice",
    replaces: "Replaces invoice",
    reason: "Reason",
    by_day: "Usage over the month (per day)",
    annex: "Annex: itemised usage",
    annex_unavailable: "Itemised annex unavailable",
    annex_erased: "Itemised annex erased (traffic data retention)",
    time: "Date and time",
    called: "Called number",
    usage_col: "Usage",
    charge: "Charge",
    omitted: "to free numbers not listed, together",
    line_sum: "Sum",
    from_allowance: "from allowance",
    after_allowance: "after allowance",
    allowances: "Allowances: what the marked records used",
};

/// An allowance line for people: "300 min national: 300 min included, 245 min used"
/// (`nl`: "inbegrepen", "verbruikt"). Kept apart from the usage lines' quantity
/// formatting on purpose (one formatter to fold in later).
pub fn allowance_text(lang: &str, name: &str, unit: &str, included: u64, used: u64) -> String {
    let q = |n: u64| allowance_quantity(lang, unit, n);
    match lang {
        "nl" => format!("{name}: {} inbegrepen, {} verbruikt", q(included), q(used)),
        _ => format!("{name}: {} included, {} used", q(included), q(used)),
    }
}

/// A quantity of an allowance's unit: seconds as whole minutes, with the seconds left
/// over when not whole (`245 min 30 s`, never rounded); messages as a count (`SMS`);
/// bytes in decimal megabytes or, from 1 000 000 000 bytes, gigabytes (10^6 and 10^9
/// bytes), half-up to at most 2 decimals, trailing zeros dropped (`2,1 MB` in Dutch).
pub fn allowance_quantity(lang: &str, unit: &str, n: u64) -> String {
    match unit {
        "seconds" if n.is_multiple_of(60) => format!("{} min", n / 60),
        "seconds" => format!("{} min {} s", n / 60, n % 60),
        "messages" => format!("{n} SMS"),
        "bytes" => {
            let (div, name) = if n >= 1_000_000_000 {
                (10_000_000u128, "GB")
            } else {
                (10_000u128, "MB")
            };
            let h = crate::rate::money::div_round_half_up(n as i128, div as i128) as u128;
            let mut s = format!("{}.{:02}", h / 100, h % 100);
            while s.ends_with('0') {
                s.pop();
            }
            if s.ends_with('.') {
                s.pop();
            }
            if lang == "nl" {
                s = s.replace('.', ",");
            }
            format!("{s} {name}")
        }
        _ => format!("{n} {unit}"),
    }
}

/// The language of a document: the customer's, else Dutch in NL (or no country), else English.
pub fn language(inv: &Invoice) -> &'static str {
    match inv.customer.language.as_str() {
        "nl" => "nl",
        "en" => "en",
        _ if inv.customer.country.is_empty() || inv.customer.country == "NL" => "nl",
        _ => "en",
    }
}

/// An amount for people: `1234.50` in English, `1.234,50` in Dutch, with the currency.
pub fn money(cur: &str, cents: i64, lang: &str) -> String {
    localised(cur, format_cents(cents), lang)
}

/// A record's exact charge (6 decimals) for people, as `money` writes amounts:
/// `EUR 0.036000` in English, `EUR 0,036000` in Dutch.
pub fn money_micros(cur: &str, micros: i64, lang: &str) -> String {
    localised(cur, format_micros(i128::from(micros)), lang)
}

/// A decimal string (`-1234.5678`) with the currency and, in Dutch, a decimal comma and
/// points between thousands.
fn localised(cur: &str, s: String, lang: &str) -> String {
    if lang != "nl" {
        return format!("{cur} {s}");
    }
    let (sign, body) = match s.strip_prefix('-') {
        Some(b) => ("-", b),
        None => ("", s.as_str()),
    };
    let (int, frac) = body.split_once('.').expect("decimals");
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push('.');
        }
        grouped.push(c);
    }
    format!("{cur} {sign}{grouped},{frac}")
}

/// One page's drawing, in PDF points from the bottom-left corner of an A4 page, kept
/// until `assemble` writes it.
struct Page {
    ops: Vec<Op>,
}

enum Op {
    Text {
        x: f32,
        y: f32,
        size: f32,
        bold: bool,
        s: String,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        grey: f32,
    },
    /// Black rectangles filled as one path (`x`, `y`, `w`, `h` each).
    Dark(Vec<[f32; 4]>),
}

impl Page {
    fn text(&mut self, x: f32, y: f32, size: u32, bold: bool, s: &str) {
        self.ops.push(Op::Text {
            x,
            y,
            size: size as f32,
            bold,
            s: s.to_owned(),
        });
    }
    /// Text ending at `right` (amounts, aligned on their last digit).
    fn text_right(&mut self, right: f32, y: f32, size: u32, bold: bool, s: &str) {
        let x = right - fonts::face(bold).width(s) * size as f32;
        self.text(x, y, size, bold, s);
    }
    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, grey: f32) {
        self.ops.push(Op::Rect { x, y, w, h, grey });
    }
}

/// Side of the EPC QR code on page 1, quiet zone included, in points (about 33 mm; the
/// modules of an invoice's payload, version 6 to 9, are 1.5 to 1.9 pt).
const QR_SIDE: f32 = 94.0;

/// Draws a QR code as vector modules: a white square (the 4-module quiet zone around the
/// code) with its top-left corner at (`x`, `top`), then one filled rectangle per
/// horizontal run of dark modules.
fn qr_code(p: &mut Page, x: f32, top: f32, n: usize, dark: &[bool]) {
    p.rect(x, top - QR_SIDE, QR_SIDE, QR_SIDE, 1.0);
    let s = QR_SIDE / (n + 8) as f32;
    let runs = crate::billing::documents::qr::qr_runs(n, dark)
        .into_iter()
        .map(|(row, col, len)| {
            [
                x + (col + 4) as f32 * s,
                top - (row + 5) as f32 * s,
                len as f32 * s,
                s,
            ]
        })
        .collect();
    p.ops.push(Op::Dark(runs));
}

fn cents(c: &Cents) -> i64 {
    c.0
}

/// The sentence of a card invoice (nl/en): "Wordt op 2026-10-15 afgeschreven van uw
/// betaalkaart eindigend op 4242." / "Will be charged to your card ending 4242 on
/// 2026-10-15." (without a saved card: "your card"). Also the e-mail's.
pub fn card_sentence(lang: &str, last4: Option<&str>, when: &str) -> String {
    match (lang == "nl", last4) {
        (true, Some(x)) => {
            format!("Wordt op {when} afgeschreven van uw betaalkaart eindigend op {x}.")
        }
        (true, None) => format!("Wordt op {when} afgeschreven van uw betaalkaart."),
        (false, Some(x)) => format!("Will be charged to your card ending {x} on {when}."),
        (false, None) => format!("Will be charged to your card on {when}."),
    }
}

/// Renders the PDF of an invoice or credit note, with the itemised annex's pages when
/// one is held and `ubl` (the document's UBL XML) embedded. An error says why the PDF
/// could not be written as PDF/A-3b (not expected: every character is given a glyph).
/// `pay_url`: the invoice's pay link (`[psp]`), one line under the payment box of a
/// transfer invoice with something to pay.
pub fn render(
    inv: &Invoice,
    annex: Option<&Annex>,
    ubl: &[u8],
    pay_url: Option<&str>,
) -> Result<Vec<u8>, String> {
    let lang = language(inv);
    let w = if lang == "nl" { &NL } else { &EN };
    let cur = inv.currency.as_str();
    let m = |c: i64| money(cur, c, lang);
    let credit = inv.is_credit_note();
    let mut pages = Vec::new();
    let mut p = Page { ops: Vec::new() };
    let mut y = 800.0;

    // Heading and what to pay.
    let title = if credit { w.credit_note } else { w.invoice };
    p.text(50.0, y, 20, true, &format!("{title} {}", inv.number));
    y -= 30.0;
    // The EPC QR code of a transfer invoice with something to pay, right in the box.
    let qr = (!credit)
        .then_some(inv.payment.as_ref())
        .flatten()
        .filter(|pay| pay.method == "transfer")
        .and_then(|pay| pay.epc_qr.as_deref());
    // A card invoice: charged to the saved card on the due date (no bank details).
    let card = (!credit)
        .then_some(inv.payment.as_ref())
        .flatten()
        .filter(|pay| pay.method == "card");
    let transfer = !credit
        && inv
            .payment
            .as_ref()
            .is_none_or(|pay| pay.method != "direct_debit" && pay.method != "card");
    // What a transfer invoice asks for: its total less credit on the account.
    let to_pay = inv
        .payment
        .as_ref()
        .and_then(|pay| pay.amount.as_ref())
        .map_or_else(|| cents(&inv.total), cents);
    let from_credit = cents(&inv.total) - to_pay;
    let box_height = match (qr, transfer) {
        _ if card.is_some() => 52.0,
        (Some(_), _) => QR_SIDE + 8.0,
        (None, true) if from_credit > 0 => 86.0,
        (None, true) => 70.0,
        (None, false) => 52.0,
    };
    p.rect(45.0, y + 14.0 - box_height, 505.0, box_height, 0.92);
    if credit {
        p.text(
            55.0,
            y - 4.0,
            14,
            true,
            &format!("{}: {}", w.credited, m(-cents(&inv.total))),
        );
        p.text(
            55.0,
            y - 24.0,
            10,
            false,
            &format!(
                "{} {}",
                w.credits,
                inv.credited_invoice
                    .as_ref()
                    .map_or("", |r| r.number.as_str())
            ),
        );
    } else if let Some(c) = card {
        // "Card payment: € 12,10 on 2026-10-15", then whose card is charged when.
        let when = c
            .collection_date
            .clone()
            .unwrap_or_else(|| inv.due_date.to_string());
        p.text(
            55.0,
            y - 4.0,
            14,
            true,
            &format!(
                "{}: {} {} {when}",
                w.card,
                m(c.amount.as_ref().map_or_else(|| cents(&inv.total), cents)),
                w.on
            ),
        );
        p.text(
            55.0,
            y - 24.0,
            10,
            false,
            &card_sentence(lang, c.card_last4.as_deref(), &when),
        );
    } else if let Some(dd) = inv
        .payment
        .as_ref()
        .filter(|pay| pay.method == "direct_debit")
    {
        // The SEPA pre-notification: amount, collection date, account, mandate, creditor.
        p.text(
            55.0,
            y - 4.0,
            14,
            true,
            &format!(
                "{}: {} {} {}",
                w.direct_debit,
                m(dd.amount.as_ref().map_or_else(|| cents(&inv.total), cents)),
                w.on,
                dd.collection_date
                    .clone()
                    .unwrap_or_else(|| inv.due_date.to_string())
            ),
        );
        p.text(
            55.0,
            y - 24.0,
            10,
            false,
            &format!(
                "{} {}, {} {}, {} {}",
                w.from,
                dd.iban,
                w.mandate,
                dd.mandate_id.as_deref().unwrap_or(""),
                w.creditor_id,
                dd.creditor_id.as_deref().unwrap_or("")
            ),
        );
    } else {
        // Bank transfer: amount and date, then where to, to whom and with which reference,
        // one per line, left of the QR code.
        p.text(
            55.0,
            y - 4.0,
            14,
            true,
            &format!("{}: {} {} {}", w.to_pay, m(to_pay), w.by, inv.due_date),
        );
        let reference = match &inv.payment_reference {
            Some(r) => format!("{} {r}", w.reference),
            None => inv.number.clone(),
        };
        let iban = inv
            .payment
            .as_ref()
            .map_or(inv.seller.iban.as_str(), |pay| pay.iban.as_str());
        let rows = [
            format!("{} {iban} (BIC {})", w.how, inv.seller.bic),
            format!("{} {}", w.payee, inv.seller.name),
            reference,
        ];
        for (i, r) in rows.iter().enumerate() {
            p.text(55.0, y - 24.0 - 13.0 * i as f32, 10, false, r);
        }
        if from_credit > 0 {
            p.text(
                55.0,
                y - 64.0,
                8,
                false,
                &format!(
                    "{} {} {} {} {}",
                    w.total,
                    m(cents(&inv.total)),
                    w.less,
                    m(from_credit),
                    w.account_credit
                ),
            );
        }
        if let Some(payload) = qr {
            p.text(55.0, y - 78.0, 8, false, w.scan);
            // A payload that cannot be encoded (longer than a QR code holds) leaves the
            // code out; the text above still says how to pay.
            if let Ok((n, dark)) = crate::billing::documents::qr::qr_modules(payload) {
                qr_code(&mut p, 452.0, y + 10.0, n, &dark);
            }
        }
    }
    y -= box_height + 8.0;
    if let Some(url) = pay_url.filter(|_| transfer && to_pay > 0) {
        p.text(50.0, y, 9, false, &format!("{}: {url}", w.pay_online));
        y -= 16.0;
    }

    // Usage by category with a bar chart of the amounts.
    p.text(50.0, y, 12, true, w.usage);
    y -= 18.0;
    let mut cats: [(&str, i64); 5] = [
        (w.calls, 0),
        (w.sms, 0),
        (w.data, 0),
        (w.subscription, 0),
        (w.other, 0),
    ];
    for l in &inv.lines {
        let i = match l {
            Line::Usage { service, .. } => match service.as_str() {
                "voice" => 0,
                "sms" => 1,
                _ => 2,
            },
            Line::Subscription { .. } => 3,
            Line::Credit { .. } | Line::Fee { .. } | Line::Allowance { .. } => 4,
        };
        cats[i].1 += l.cents();
    }
    let max = cats.iter().map(|c| c.1.abs()).max().unwrap_or(0).max(1);
    let top = y;
    for (name, c) in cats.iter().filter(|c| c.1 != 0 || c.0 != w.other) {
        p.text(55.0, y, 10, false, name);
        p.text(160.0, y, 10, false, &m(*c));
        if inv.usage_by_day.is_empty() {
            let len = 250.0 * (c.abs() as f32) / (max as f32);
            p.rect(280.0, y - 1.0, len.max(0.5), 9.0, 0.55);
        }
        y -= 15.0;
    }
    if !inv.usage_by_day.is_empty() {
        y = y.min(day_chart(&mut p, inv, w, top) - 4.0);
    }
    y -= 10.0;

    // VAT table.
    p.text(50.0, y, 12, true, w.vat);
    y -= 16.0;
    for (x, h) in [
        (55.0, w.category),
        (140.0, w.rate),
        (230.0, w.taxable),
        (360.0, w.vat),
    ] {
        p.text(x, y, 9, true, h);
    }
    y -= 14.0;
    for r in &inv.vat_breakdown {
        p.text(55.0, y, 10, false, &r.category);
        p.text(140.0, y, 10, false, &format!("{} %", r.rate));
        p.text(230.0, y, 10, false, &m(cents(&r.taxable_amount)));
        p.text(360.0, y, 10, false, &m(cents(&r.vat_amount)));
        y -= 14.0;
    }
    for (label, amount, bold) in [
        (w.net, &inv.net_total, false),
        (w.vat, &inv.vat_total, false),
        (w.total, &inv.total, true),
    ] {
        p.text(55.0, y, 10, bold, &format!("{label}: {}", m(cents(amount))));
        y -= if bold { 16.0 } else { 14.0 };
    }
    if !inv.vat_note.is_empty() {
        p.text(55.0, y, 10, true, &inv.vat_note);
        y -= 16.0;
    }
    y -= 6.0;

    // Art. 226 fields.
    let facts = [
        (w.number, inv.number.clone()),
        (w.date, inv.issue_date.to_string()),
        (w.due, inv.due_date.to_string()),
        (
            w.period,
            format!("{} - {}", inv.period_start, inv.period_end),
        ),
    ];
    for (k, v) in facts {
        p.text(55.0, y, 9, true, k);
        p.text(160.0, y, 9, false, &v);
        y -= 12.0;
    }
    if let Some(r) = &inv.credited_invoice {
        p.text(
            55.0,
            y,
            9,
            false,
            &format!("{} {} ({})", w.credits, r.number, r.issue_date),
        );
        y -= 12.0;
    }
    if let Some(r) = &inv.replaces {
        p.text(
            55.0,
            y,
            9,
            false,
            &format!("{} {} ({})", w.replaces, r.number, r.issue_date),
        );
        y -= 12.0;
    }
    if !inv.reason.is_empty() {
        p.text(55.0, y, 9, false, &format!("{}: {}", w.reason, inv.reason));
        y -= 12.0;
    }
    y -= 8.0;
    let s = &inv.seller;
    let c = &inv.customer;
    let seller = [
        s.name.clone(),
        s.street.clone(),
        format!("{} {} {}", s.postcode, s.city, s.country),
        format!("KvK {}", s.kvk),
        format!(
            "{} {}",
            if lang == "nl" { "BTW-id" } else { "VAT ID" },
            s.vat_id
        ),
        format!("IBAN {} BIC {}", s.iban, s.bic),
    ];
    let name = if c.name.is_empty() {
        inv.account_id.clone()
    } else {
        c.name.clone()
    };
    let mut customer = vec![
        name,
        c.street.clone(),
        format!("{} {} {}", c.postcode, c.city, c.country),
        format!(
            "{} {}",
            if lang == "nl" {
                "Klantnummer"
            } else {
                "Account"
            },
            inv.account_id
        ),
    ];
    if !c.vat_id.is_empty() {
        customer.push(format!(
            "{} {}",
            if lang == "nl" { "BTW-id" } else { "VAT ID" },
            c.vat_id
        ));
    }
    p.text(55.0, y, 9, true, w.seller);
    p.text(310.0, y, 9, true, w.customer);
    y -= 12.0;
    // Each column wrapped to its width (a long name or street continues on the next
    // line instead of running off the page).
    let column = |rows: &[String], width: f32| -> Vec<String> {
        rows.iter()
            .flat_map(|t| wrap_to(t.trim(), width, 9, false))
            .collect()
    };
    let (seller, customer) = (column(&seller, 245.0), column(&customer, 235.0));
    for i in 0..seller.len().max(customer.len()) {
        if let Some(t) = seller.get(i) {
            p.text(55.0, y, 9, false, t);
        }
        if let Some(t) = customer.get(i) {
            p.text(310.0, y, 9, false, t);
        }
        y -= 11.0;
    }
    y -= 14.0;

    // Every line, continuing on further pages.
    p.text(50.0, y, 12, true, w.lines);
    y -= 16.0;
    if let Some(it) = &inv.itemised {
        let note = match (it.status.as_str(), annex) {
            ("attached", Some(_)) => None,
            ("attached", None) => Some(w.annex_erased.to_owned()),
            _ => Some(format!("{}: {}", w.annex_unavailable, it.reason)),
        };
        if let Some(note) = note {
            for chunk in wrap(&note, 110) {
                p.text(55.0, y, 8, true, &chunk);
                y -= 11.0;
            }
        }
    }
    for l in &inv.lines {
        if y < 50.0 {
            pages.push(std::mem::replace(&mut p, Page { ops: Vec::new() }));
            y = 800.0;
        }
        let d = line_text(l, w, lang);
        let d = if d.chars().count() > 80 {
            format!("{}...", d.chars().take(77).collect::<String>())
        } else {
            d
        };
        p.text(55.0, y, 8, false, &d);
        let (cat, rate) = l.vat();
        p.text(
            430.0,
            y,
            8,
            false,
            &format!("{} {}%", cat.code(), rate.normalize()),
        );
        p.text_right(AMOUNT_RIGHT, y, 8, false, &m(l.cents()));
        y -= 11.0;
    }
    pages.push(p);
    if let Some(a) = annex {
        annex_pages(&mut pages, inv, a, w, lang);
    }
    assemble(inv, &pages, ubl)
}

/// A line of the specification in the customer's terms: a usage line as service,
/// destination (band) and its records and units (`units::summary`: "Bellen Nederland:
/// 2 gesprekken, 0:03:00"); other lines as their description.
fn line_text(l: &Line, w: &Words, lang: &str) -> String {
    match l {
        Line::Usage {
            service,
            destination,
            band,
            quantity,
            usage,
            ..
        } => format!(
            "{}{}: {}",
            what(service, destination, w),
            band_suffix(band),
            units::summary(service, *quantity, *usage, lang)
        ),
        Line::Allowance {
            name,
            included,
            used,
            unit,
            ..
        } => allowance_text(lang, name, unit, *included, *used),
        _ => l.description(),
    }
}

/// The customer's word for a service (`voice` is "Bellen" / "Calls").
fn service_name<'a>(service: &'a str, w: &Words) -> &'a str {
    match service {
        "voice" => w.calls,
        "sms" => w.sms,
        "data" => w.data,
        other => other,
    }
}

/// Service and destination ("Bellen Nederland"), the destination alone when it starts
/// with the service's name ("SMS Netherlands", not "SMS SMS Netherlands").
fn what(service: &str, destination: &str, w: &Words) -> String {
    let name = service_name(service, w);
    let first = destination.split(' ').next().unwrap_or("");
    if first.eq_ignore_ascii_case(name) || first.eq_ignore_ascii_case(service) {
        destination.to_owned()
    } else {
        format!("{name} {destination}")
    }
}

/// " (band)" for a time band other than `any`.
fn band_suffix(band: &str) -> String {
    if band == "any" {
        String::new()
    } else {
        format!(" ({band})")
    }
}

/// Splits a text into lines at most `width` points wide at `size` at spaces; a word
/// wider than that alone is cut between characters.
fn wrap_to(s: &str, width: f32, size: u32, bold: bool) -> Vec<String> {
    let face = fonts::face(bold);
    let fits = |t: &str| face.width(t) * size as f32 <= width;
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in s.split(' ') {
        let joined = if line.is_empty() {
            word.to_owned()
        } else {
            format!("{line} {word}")
        };
        if fits(&joined) {
            line = joined;
            continue;
        }
        if !line.is_empty() {
            out.push(std::mem::take(&mut line));
        }
        for c in word.chars() {
            line.push(c);
            if !fits(&line) && line.chars().count() > 1 {
                line.pop();
                out.push(std::mem::replace(&mut line, c.to_string()));
            }
        }
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}

/// Splits a text into pieces of at most `n` characters at spaces.
fn wrap(s: &str, n: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    for word in s.split(' ') {
        let last = out.last_mut().expect("one line");
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > n {
            out.push(word.to_owned());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    out
}

/// A column chart of the charges per day of the period, right of the category list;
/// returns the lowest y it drew at.
/// The chart runs from the first day of the period's month (or the document's first
/// day, when a final invoice starts later in that month) to its last day.
fn day_chart(p: &mut Page, inv: &Invoice, w: &Words, top: f32) -> f32 {
    let day = |s: &str| s.get(8..10).and_then(|d| d.parse::<usize>().ok());
    let last = day(&inv.period_end).unwrap_or(31).clamp(1, 31);
    let first = if inv.period_start.starts_with(&inv.period) {
        day(&inv.period_start).unwrap_or(1).clamp(1, last)
    } else {
        1
    };
    let micros: Vec<i128> = (first..=last)
        .map(|d| {
            let date = format!("{}-{d:02}", inv.period);
            inv.usage_by_day
                .iter()
                .find(|u| u.date == date)
                .map_or(0, |u| i128::from(u.charge.0))
        })
        .collect();
    let max = micros.iter().copied().max().unwrap_or(0).max(1);
    let (x0, width, height) = (300.0f32, 240.0f32, 48.0f32);
    p.text(x0, top, 9, true, w.by_day);
    let base = top - 12.0 - height;
    let days = last - first + 1;
    let col = width / days as f32;
    for (i, v) in micros.iter().enumerate() {
        if *v > 0 {
            let h = (height * (*v as f32) / (max as f32)).max(0.8);
            p.rect(x0 + i as f32 * col, base, (col - 1.0).max(0.5), h, 0.55);
        }
    }
    p.rect(x0, base - 0.5, width, 0.5, 0.3);
    p.text(x0, base - 9.0, 7, false, &first.to_string());
    p.text(x0 + width - 8.0, base - 9.0, 7, false, &last.to_string());
    let peak = micros.iter().copied().max().unwrap_or(0);
    p.text(
        x0 + width / 2.0 - 20.0,
        base - 9.0,
        7,
        false,
        &format!(
            "max {}",
            money(
                &inv.currency,
                crate::rate::money::micros_to_cents(peak),
                language(inv)
            )
        ),
    );
    base - 12.0
}

/// The itemised annex: every listed record per usage line, the records to free numbers
/// left out (count and charge), the exact sum and the line amount it rounds to.
fn annex_pages(pages: &mut Vec<Page>, inv: &Invoice, a: &Annex, w: &Words, lang: &str) {
    let cur = inv.currency.as_str();
    let mut p = Page { ops: Vec::new() };
    let mut y = 800.0;
    p.text(50.0, y, 14, true, &format!("{} - {}", w.annex, inv.number));
    y -= 16.0;
    p.text(
        55.0,
        y,
        8,
        false,
        &format!(
            "{} {} - {}: {} - {}: {}",
            inv.account_id,
            inv.period,
            w.time,
            a.timezone,
            w.called,
            if a.masking == "none" {
                "-".to_owned()
            } else {
                a.masking.clone()
            }
        ),
    );
    y -= 18.0;
    for l in &a.lines {
        if y < 90.0 {
            pages.push(std::mem::replace(&mut p, Page { ops: Vec::new() }));
            y = 800.0;
        }
        p.text(
            55.0,
            y,
            9,
            true,
            &format!(
                "{} {}: {}{}",
                w.line,
                l.line,
                what(&l.service, &l.destination, w),
                band_suffix(&l.band)
            ),
        );
        y -= 12.0;
        // Time and number from the left; usage and charge aligned on their last digit.
        p.text(60.0, y, 8, true, w.time);
        p.text(170.0, y, 8, true, w.called);
        p.text_right(ANNEX_USAGE_RIGHT, y, 8, true, w.usage_col);
        p.text_right(AMOUNT_RIGHT, y, 8, true, w.charge);
        y -= 11.0;
        for r in &l.records {
            if y < 50.0 {
                pages.push(std::mem::replace(&mut p, Page { ops: Vec::new() }));
                y = 800.0;
            }
            p.text(60.0, y, 8, false, &r.time);
            p.text(170.0, y, 8, false, &r.number);
            p.text_right(
                ANNEX_USAGE_RIGHT,
                y,
                8,
                false,
                &units::quantity(&l.service, r.usage, lang),
            );
            p.text_right(
                AMOUNT_RIGHT,
                y,
                8,
                false,
                &money_micros(cur, r.charge.0, lang),
            );
            y -= 10.0;
            // A record an allowance covered: which, how much, and what it costs after.
            if let Some(after) = r.charge_after_allowances {
                if y < 50.0 {
                    pages.push(std::mem::replace(&mut p, Page { ops: Vec::new() }));
                    y = 800.0;
                }
                let from: Vec<String> = r
                    .allowances
                    .iter()
                    .map(|d| format!("{}: {}", d.name, allowance_quantity(lang, &l.unit, d.units)))
                    .collect();
                p.text(
                    170.0,
                    y,
                    7,
                    false,
                    &format!("* {} {}", w.from_allowance, from.join(", ")),
                );
                p.text_right(
                    AMOUNT_RIGHT,
                    y,
                    7,
                    false,
                    &format!("{} {}", w.after_allowance, money_micros(cur, after.0, lang)),
                );
                y -= 10.0;
            }
        }
        if l.omitted_records > 0 {
            p.text(
                60.0,
                y,
                8,
                false,
                &format!(
                    "{} {} {}",
                    units::count(&l.service, l.omitted_records, lang),
                    w.omitted,
                    money_micros(cur, l.omitted_charge.0, lang)
                ),
            );
            y -= 10.0;
        }
        p.text_right(
            AMOUNT_RIGHT,
            y,
            8,
            true,
            &format!(
                "{}: {} = {}",
                w.line_sum,
                money_micros(cur, l.charge_sum.0, lang),
                money(cur, l.amount.0, lang)
            ),
        );
        y -= 16.0;
    }
    // The allowance lines, reproduced from the marked records.
    if !a.allowances.is_empty() {
        if y < 90.0 {
            pages.push(std::mem::replace(&mut p, Page { ops: Vec::new() }));
            y = 800.0;
        }
        p.text(55.0, y, 9, true, w.allowances);
        y -= 12.0;
        for x in &a.allowances {
            if y < 50.0 {
                pages.push(std::mem::replace(&mut p, Page { ops: Vec::new() }));
                y = 800.0;
            }
            p.text(
                60.0,
                y,
                8,
                false,
                &format!(
                    "{} {}: {} ({})",
                    w.line,
                    x.line,
                    x.name,
                    allowance_quantity(lang, &x.unit, x.units)
                ),
            );
            p.text_right(
                AMOUNT_RIGHT,
                y,
                8,
                true,
                &format!(
                    "{}: {} = {}",
                    w.line_sum,
                    money_micros(cur, -x.value.0, lang),
                    money(cur, x.amount.0, lang)
                ),
            );
            y -= 10.0;
        }
    }
    pages.push(p);
}

/// Where amounts end on the page (the right edge of the grey payment box, less its
/// padding), and the usage column of the annex.
const AMOUNT_RIGHT: f32 = 545.0;
const ANNEX_USAGE_RIGHT: f32 = 360.0;

/// A4 in points.
const PAGE_WIDTH: f32 = 595.0;
const PAGE_HEIGHT: f32 = 842.0;

/// Writes the pages as a PDF/A-3b document with the UBL XML embedded as an associated
/// file. krilla draws from the top-left corner, the layout from the bottom-left.
fn assemble(inv: &Invoice, pages: &[Page], ubl: &[u8]) -> Result<Vec<u8>, String> {
    use krilla::color::luma;
    use krilla::configure::{Archival, Configuration, ConfigurationBuilder};
    use krilla::embed::{AssociationKind, EmbeddedFile, MimeType};
    use krilla::geom::{PathBuilder, Point, Rect};
    use krilla::metadata::{DateTime, Metadata};
    use krilla::page::PageSettings;
    use krilla::paint::Fill;

    static CONFIGURATION: std::sync::LazyLock<Configuration> = std::sync::LazyLock::new(|| {
        ConfigurationBuilder::new()
            .with_archival_validator(Archival::A3_B)
            .finish()
            .expect("PDF/A-3b is a valid configuration")
    });
    let settings = krilla::SerializeSettings {
        configuration: *CONFIGURATION,
        enable_tagging: false,
        ..Default::default()
    };
    let mut doc = krilla::Document::new_with(settings);
    let d = inv.issue_date;
    let date = DateTime::new(d.year().clamp(0, 9999) as u16)
        .month(d.month() as u8)
        .day(d.day() as u8);
    let lang = language(inv);
    let w = if lang == "nl" { &NL } else { &EN };
    let title = if inv.is_credit_note() {
        w.credit_note
    } else {
        w.invoice
    };
    doc.set_metadata(
        Metadata::new()
            .title(format!("{title} {}", inv.number))
            .authors(vec![inv.seller.name.clone()])
            .language(lang.to_owned())
            .creator("tollgate".to_owned())
            .creation_date(date)
            .document_id(inv.number.clone()),
    );
    doc.embed_file(EmbeddedFile {
        path: format!("{}.xml", inv.number),
        mime_type: MimeType::new("text/xml"),
        description: Some(format!("{title} {} (UBL 2.1, EN 16931)", inv.number)),
        association_kind: AssociationKind::Alternative,
        data: ubl.to_vec().into(),
        modification_date: Some(date),
        compress: Some(true),
        location: None,
    })
    .ok_or("the UBL document was embedded twice")?;
    let size = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT).expect("A4");
    for p in pages {
        let mut page = doc.start_page_with(size.clone());
        let mut surface = page.surface();
        let mut grey = f32::NAN;
        let mut fill = |surface: &mut krilla::surface::Surface, g: f32| {
            if g != grey {
                grey = g;
                surface.set_fill(Some(Fill {
                    paint: luma::Color::new((g.clamp(0.0, 1.0) * 255.0).round() as u8).into(),
                    ..Default::default()
                }));
            }
        };
        for op in &p.ops {
            match op {
                Op::Text {
                    x,
                    y,
                    size,
                    bold,
                    s,
                } => {
                    fill(&mut surface, 0.0);
                    let face = fonts::face(*bold);
                    let (text, glyphs) = face.layout(s);
                    surface.draw_glyphs(
                        Point::from_xy(*x, PAGE_HEIGHT - y),
                        &glyphs,
                        face.font.clone(),
                        &text,
                        *size,
                        false,
                    );
                }
                Op::Rect { x, y, w, h, grey } => {
                    let mut pb = PathBuilder::new();
                    if let Some(r) = Rect::from_xywh(*x, PAGE_HEIGHT - y - h, *w, *h) {
                        pb.push_rect(r);
                    }
                    if let Some(path) = pb.finish() {
                        fill(&mut surface, *grey);
                        surface.draw_path(&path);
                    }
                }
                Op::Dark(rects) => {
                    let mut pb = PathBuilder::new();
                    for [x, y, w, h] in rects {
                        if let Some(r) = Rect::from_xywh(*x, PAGE_HEIGHT - y - h, *w, *h) {
                            pb.push_rect(r);
                        }
                    }
                    if let Some(path) = pb.finish() {
                        fill(&mut surface, 0.0);
                        surface.draw_path(&path);
                    }
                }
            }
        }
        surface.finish();
        page.finish();
    }
    doc.finish()
        .map_err(|e| format!("cannot write the PDF/A-3b: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_invoice_names_the_card_and_the_day_it_is_charged() {
        assert_eq!(
            card_sentence("en", Some("4242"), "2026-10-15"),
            "Will be charged to your card ending 4242 on 2026-10-15."
        );
        assert_eq!(
            card_sentence("nl", Some("4242"), "2026-10-15"),
            "Wordt op 2026-10-15 afgeschreven van uw betaalkaart eindigend op 4242."
        );
        assert_eq!(
            card_sentence("en", None, "2026-10-15"),
            "Will be charged to your card on 2026-10-15."
        );
        assert_eq!(
            card_sentence("nl", None, "2026-10-15"),
            "Wordt op 2026-10-15 afgeschreven van uw betaalkaart."
        );
    }

    #[test]
    fn wrap_to_width_at_spaces_and_inside_overlong_words() {
        // Liberation Sans at 10 pt: "a" 5.56 pt, space 2.78 pt
        assert_eq!(wrap_to("aaa aaa", 40.0, 10, false), ["aaa aaa"]);
        assert_eq!(wrap_to("aaa aaa", 30.0, 10, false), ["aaa", "aaa"]);
        assert_eq!(wrap_to("aaaaaaa", 20.0, 10, false), ["aaa", "aaa", "a"]);
        assert_eq!(wrap_to("", 20.0, 10, false), [""]);
    }

    #[test]
    fn usage_lines_in_the_customers_terms() {
        let line = |service: &str, destination: &str, band: &str, q: u64, u: u64| Line::Usage {
            service: service.into(),
            destination: destination.into(),
            band: band.into(),
            quantity: q,
            usage: u,
            unit: String::new(),
            amount: Cents(0),
            vat_category: String::new(),
            vat_rate: String::new(),
        };
        assert_eq!(
            line_text(&line("voice", "Nederland", "peak", 2, 3_725), &NL, "nl"),
            "Bellen Nederland (peak): 2 gesprekken, 1:02:05"
        );
        assert_eq!(
            line_text(&line("sms", "SMS Netherlands", "any", 16, 16), &EN, "en"),
            "SMS Netherlands: 16 SMS"
        );
        assert_eq!(
            line_text(
                &line("data", "Mobile data", "any", 1, 1_050_000_000),
                &NL,
                "nl"
            ),
            "Data Mobile data: 1 sessie, 1,1 GB"
        );
    }

    #[test]
    fn allowance_texts() {
        assert_eq!(
            allowance_text("en", "300 min national", "seconds", 18000, 14700),
            "300 min national: 300 min included, 245 min used"
        );
        assert_eq!(
            allowance_text("nl", "Bundel", "seconds", 18000, 14730),
            "Bundel: 300 min inbegrepen, 245 min 30 s verbruikt"
        );
        assert_eq!(allowance_quantity("nl", "bytes", 2_097_152), "2,1 MB");
        assert_eq!(allowance_quantity("en", "bytes", 10_000_000_000), "10 GB");
        assert_eq!(allowance_quantity("en", "bytes", 1_234_567_890), "1.23 GB");
        assert_eq!(allowance_quantity("en", "messages", 1000), "1000 SMS");
    }

    #[test]
    fn money_per_language() {
        assert_eq!(money("EUR", 123456, "nl"), "EUR 1.234,56");
        assert_eq!(money("EUR", -1307, "nl"), "EUR -13,07");
        assert_eq!(money("EUR", 5, "nl"), "EUR 0,05");
        assert_eq!(money("EUR", 123456, "en"), "EUR 1234.56");
        assert_eq!(money_micros("EUR", 2_274_000, "nl"), "EUR 2,274000");
        assert_eq!(money_micros("EUR", 1_234_036_000, "nl"), "EUR 1.234,036000");
        assert_eq!(money_micros("EUR", -36_000, "en"), "EUR -0.036000");
    }
}
