//! UBL 2.1 `Invoice` and `CreditNote` documents per EN 16931, rendered from a stored
//! [`Invoice`] and written beside its JSON as `<number>.xml`.
//!
//! Customization ID `urn:cen.eu:en16931:2017`; for business customers with a Peppol
//! endpoint the Peppol BIS Billing 3.0 customization and profile, with both parties'
//! endpoint IDs (the seller's is its VAT ID under scheme 9944). Choices that keep every
//! document valid under the EN 16931 schematron:
//! - one line per invoice line, quantity 1 (`C62`) at the line amount, so that
//!   quantity × price = line amount exactly; the usage is in the item description;
//! - amounts of a credit note are positive (the document type carries the sign);
//! - a buyer without a name is named by its account id; a buyer without a country is in
//!   the seller's country (as for VAT);
//! - outside-scope (O) documents carry no VAT IDs and no rates (BR-O-02, BR-O-05); the
//!   seller is identified by its KvK number (scheme 0106);
//! - payment means: direct-debit invoices carry code 59 (SEPA direct debit), the mandate
//!   reference and the debited account (masked, as in the invoice JSON) in
//!   `PaymentMandate` and the SEPA creditor id as the seller's `PartyIdentification`
//!   (scheme `SEPA`, BT-90); other invoices code 58 (SEPA credit transfer) to the
//!   seller's IBAN with the payment reference (betalingskenmerk) as `PaymentID`;
//! - the itemised annex (traffic detail) is not embedded: it stays in the PDF and in
//!   `<number>.annex.json`, which are erased after the dispute window while the UBL
//!   document, a fiscal record, is kept.

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

use crate::billing::model::{Invoice, Line};
use crate::billing::vat::Category;
use crate::rate::money::{format_cents, Cents};

pub const EN16931: &str = "urn:cen.eu:en16931:2017";
pub const PEPPOL_CUSTOMIZATION: &str =
    "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0";
pub const PEPPOL_PROFILE: &str = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0";

/// The exemption reason of a document of late-payment fees only.
pub const FEES_OUTSIDE_SCOPE: &str =
    "Late-payment compensation (collection costs, interest): not subject to VAT";

struct X(Writer<Vec<u8>>);

impl X {
    fn ev(&mut self, e: Event) {
        self.0.write_event(e).expect("writing to memory");
    }
    fn open(&mut self, tag: &str) {
        self.ev(Event::Start(BytesStart::new(tag)));
    }
    fn open_with(&mut self, tag: &str, attrs: &[(&str, &str)]) {
        let mut s = BytesStart::new(tag);
        for a in attrs {
            s.push_attribute(*a);
        }
        self.ev(Event::Start(s));
    }
    fn close(&mut self, tag: &str) {
        self.ev(Event::End(BytesEnd::new(tag)));
    }
    fn leaf_with(&mut self, tag: &str, attrs: &[(&str, &str)], text: &str) {
        self.open_with(tag, attrs);
        self.ev(Event::Text(BytesText::new(text)));
        self.close(tag);
    }
    fn leaf(&mut self, tag: &str, text: &str) {
        self.leaf_with(tag, &[], text);
    }
    fn amount(&mut self, tag: &str, cur: &str, cents: i64) {
        self.leaf_with(tag, &[("currencyID", cur)], &format_cents(cents));
    }
}

fn cents(c: &Cents) -> i64 {
    c.0
}

/// Renders the UBL document of an invoice or credit note.
pub fn render(inv: &Invoice) -> Vec<u8> {
    let credit = inv.is_credit_note();
    // Credit notes are stored with negative amounts; UBL wants them positive.
    let sign = if credit { -1 } else { 1 };
    let amt = |c: &Cents| cents(c) * sign;
    let cur = inv.currency.as_str();
    // A document of late-payment fees only (a credit note taking back a fee, a final
    // invoice billing nothing else) is a document outside the scope of VAT: its fee
    // lines become its lines, under one O breakdown row (EN 16931 wants at least one
    // line). With other lines, fees stay out of the VAT document (see the totals).
    let fees: i64 = inv
        .lines
        .iter()
        .filter(|l| matches!(l, Line::Fee { .. }))
        .map(Line::cents)
        .sum();
    let fee_only = !inv.lines.is_empty() && inv.lines.iter().all(|l| matches!(l, Line::Fee { .. }));
    let breakdown = if fee_only {
        vec![crate::billing::vat::row(
            &crate::billing::vat::Treatment {
                category: Category::O,
                rate: rust_decimal::Decimal::ZERO,
                reason: FEES_OUTSIDE_SCOPE.into(),
            },
            fees,
            0,
        )]
    } else {
        inv.vat_breakdown.clone()
    };
    let net_total = if fee_only { Cents(fees) } else { inv.net_total };
    let outside = breakdown.iter().any(|r| r.category == "O");
    let peppol = !inv.customer.peppol_endpoint.is_empty();
    let root = if credit { "CreditNote" } else { "Invoice" };

    let mut x = X(Writer::new_with_indent(Vec::new(), b' ', 2));
    x.ev(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
    let ns = format!("urn:oasis:names:specification:ubl:schema:xsd:{root}-2");
    x.open_with(
        root,
        &[
            ("xmlns", ns.as_str()),
            (
                "xmlns:cac",
                "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
            ),
            (
                "xmlns:cbc",
                "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
            ),
        ],
    );
    if peppol {
        x.leaf("cbc:CustomizationID", PEPPOL_CUSTOMIZATION);
        x.leaf("cbc:ProfileID", PEPPOL_PROFILE);
    } else {
        x.leaf("cbc:CustomizationID", EN16931);
    }
    x.leaf("cbc:ID", &inv.number);
    x.leaf("cbc:IssueDate", &inv.issue_date.to_string());
    if credit {
        x.leaf("cbc:CreditNoteTypeCode", "381");
    } else {
        x.leaf("cbc:DueDate", &inv.due_date.to_string());
        x.leaf("cbc:InvoiceTypeCode", "380");
    }
    if !inv.vat_note.is_empty() {
        x.leaf("cbc:Note", &inv.vat_note);
    }
    if !inv.reason.is_empty() {
        x.leaf("cbc:Note", &format!("Reason: {}", inv.reason));
    }
    x.leaf("cbc:DocumentCurrencyCode", cur);
    x.leaf("cbc:BuyerReference", &inv.account_id);
    if !inv.period_start.is_empty() && !inv.period_end.is_empty() {
        x.open("cac:InvoicePeriod");
        x.leaf("cbc:StartDate", &inv.period_start);
        x.leaf("cbc:EndDate", &inv.period_end);
        x.close("cac:InvoicePeriod");
    }
    for r in inv.credited_invoice.iter().chain(inv.replaces.iter()) {
        x.open("cac:BillingReference");
        x.open("cac:InvoiceDocumentReference");
        x.leaf("cbc:ID", &r.number);
        x.leaf("cbc:IssueDate", &r.issue_date.to_string());
        x.close("cac:InvoiceDocumentReference");
        x.close("cac:BillingReference");
    }

    // Seller.
    let s = &inv.seller;
    x.open("cac:AccountingSupplierParty");
    x.open("cac:Party");
    if peppol {
        x.leaf_with("cbc:EndpointID", &[("schemeID", "9944")], &s.vat_id);
    }
    // BT-90: the SEPA creditor identifier of a direct-debit invoice.
    let debit = inv
        .payment
        .as_ref()
        .filter(|p| p.method == "direct_debit" && !credit);
    if let Some(cid) = debit.and_then(|p| p.creditor_id.as_deref()) {
        x.open("cac:PartyIdentification");
        x.leaf_with("cbc:ID", &[("schemeID", "SEPA")], cid);
        x.close("cac:PartyIdentification");
    }
    x.open("cac:PartyName");
    x.leaf("cbc:Name", &s.name);
    x.close("cac:PartyName");
    address(&mut x, &s.street, &s.city, &s.postcode, &s.country);
    if !outside {
        x.open("cac:PartyTaxScheme");
        x.leaf("cbc:CompanyID", &s.vat_id);
        tax_scheme(&mut x);
        x.close("cac:PartyTaxScheme");
    }
    x.open("cac:PartyLegalEntity");
    x.leaf("cbc:RegistrationName", &s.name);
    x.leaf_with("cbc:CompanyID", &[("schemeID", "0106")], &s.kvk);
    x.close("cac:PartyLegalEntity");
    x.close("cac:Party");
    x.close("cac:AccountingSupplierParty");

    // Buyer.
    let c = &inv.customer;
    let name = if c.name.is_empty() {
        inv.account_id.as_str()
    } else {
        c.name.as_str()
    };
    let country = if c.country.is_empty() {
        s.country.as_str()
    } else {
        c.country.as_str()
    };
    x.open("cac:AccountingCustomerParty");
    x.open("cac:Party");
    if let Some((scheme, id)) = c.peppol_endpoint.split_once(':') {
        x.leaf_with("cbc:EndpointID", &[("schemeID", scheme)], id);
    }
    x.open("cac:PartyIdentification");
    x.leaf("cbc:ID", &inv.account_id);
    x.close("cac:PartyIdentification");
    address(&mut x, &c.street, &c.city, &c.postcode, country);
    if !c.vat_id.is_empty() && !outside {
        x.open("cac:PartyTaxScheme");
        x.leaf("cbc:CompanyID", &c.vat_id);
        tax_scheme(&mut x);
        x.close("cac:PartyTaxScheme");
    }
    x.open("cac:PartyLegalEntity");
    x.leaf("cbc:RegistrationName", name);
    x.close("cac:PartyLegalEntity");
    x.close("cac:Party");
    x.close("cac:AccountingCustomerParty");

    // Payment.
    // Direct debit: SEPA direct debit (59) with the mandate (BT-89) and the debited
    // account (BT-91, masked as on the invoice's pre-notification). Transfer: SEPA
    // credit transfer (58) to the seller's account with the payment reference (BT-83).
    // Card: bank card (48, UNCL 4461) with the card account (BG-18) when the card's
    // last four digits are known (BT-87: never more; NetworkID is the brand).
    let reference = inv.payment_reference.as_deref().unwrap_or(&inv.number);
    let card = inv
        .payment
        .as_ref()
        .filter(|p| p.method == "card" && !credit);
    if let Some(p) = card {
        x.open("cac:PaymentMeans");
        x.leaf("cbc:PaymentMeansCode", "48");
        x.leaf("cbc:PaymentID", reference);
        if let Some(last4) = p.card_last4.as_deref() {
            x.open("cac:CardAccount");
            x.leaf("cbc:PrimaryAccountNumberID", last4);
            x.leaf(
                "cbc:NetworkID",
                &p.card_brand
                    .as_deref()
                    .map_or_else(|| "CARD".to_owned(), str::to_ascii_uppercase),
            );
            x.close("cac:CardAccount");
        }
        x.close("cac:PaymentMeans");
    } else if let Some(p) = debit {
        x.open("cac:PaymentMeans");
        x.leaf("cbc:PaymentMeansCode", "59");
        x.leaf("cbc:PaymentID", reference);
        x.open("cac:PaymentMandate");
        x.leaf("cbc:ID", p.mandate_id.as_deref().unwrap_or(""));
        x.open("cac:PayerFinancialAccount");
        x.leaf("cbc:ID", &p.iban);
        x.close("cac:PayerFinancialAccount");
        x.close("cac:PaymentMandate");
        x.close("cac:PaymentMeans");
    } else if !credit {
        x.open("cac:PaymentMeans");
        x.leaf("cbc:PaymentMeansCode", "58");
        x.leaf("cbc:PaymentID", reference);
        x.open("cac:PayeeFinancialAccount");
        x.leaf("cbc:ID", &s.iban);
        x.open("cac:FinancialInstitutionBranch");
        x.leaf("cbc:ID", &s.bic);
        x.close("cac:FinancialInstitutionBranch");
        x.close("cac:PayeeFinancialAccount");
        x.close("cac:PaymentMeans");
    }
    x.open("cac:PaymentTerms");
    let fee_note = if fees == 0 || fee_only {
        String::new()
    } else {
        format!(
            " (includes late-payment fees outside the scope of VAT: {cur} {})",
            format_cents(fees * sign)
        )
    };
    x.leaf(
        "cbc:Note",
        &if credit {
            format!(
                "Credit of {} {} on invoice {}{fee_note}: refunded or set off against the next invoice",
                cur,
                format_cents(amt(&inv.total)),
                inv.credited_invoice
                    .as_ref()
                    .map_or("", |r| r.number.as_str())
            )
        } else {
            match (card, debit) {
                (Some(p), _) => format!(
                    "{cur} {} will be charged to the card{} on {}{fee_note}",
                    p.amount.unwrap_or(inv.total),
                    p.card_last4
                        .as_deref()
                        .map(|l| format!(" ending {l}"))
                        .unwrap_or_default(),
                    p.collection_date
                        .clone()
                        .unwrap_or_else(|| inv.due_date.to_string())
                ),
                (None, Some(p)) => format!(
                    "{cur} {} will be collected by SEPA direct debit on {} under mandate {}{fee_note}",
                    inv.total,
                    p.collection_date
                        .clone()
                        .unwrap_or_else(|| inv.due_date.to_string()),
                    p.mandate_id.as_deref().unwrap_or("")
                ),
                (None, None) => format!(
                    "Pay {cur} {} by {} to {} quoting {}{fee_note}",
                    inv.total, inv.due_date, s.iban, reference
                ),
            }
        },
    );
    x.close("cac:PaymentTerms");

    // Allowances (bundles) are document-level allowances (BG-20), not negative lines:
    // they discount the usage lines as a whole, carry the VAT category of the usage they
    // discounted, and keep every line's price positive (BR-27). Unused ones (0.00) are
    // left out: they discount nothing.
    // On a credit note the credit of an allowance line (a positive amount in its JSON,
    // negative in the note's own orientation) is the same: a document-level allowance.
    let discount = |l: &Line| match l {
        Line::Allowance { .. } => true,
        Line::Credit { amount, .. } => amt(amount) < 0,
        _ => false,
    };
    let mut allowance_total = 0i64;
    for l in &inv.lines {
        if !discount(l) {
            continue;
        }
        let amount = &l.amount();
        if amount.0 == 0 {
            continue;
        }
        let a = -amt(amount);
        allowance_total += a;
        let (cat, rate) = l.vat();
        x.open("cac:AllowanceCharge");
        x.leaf("cbc:ChargeIndicator", "false");
        x.leaf("cbc:AllowanceChargeReason", &l.description());
        x.amount("cbc:Amount", cur, a);
        x.open("cac:TaxCategory");
        x.leaf("cbc:ID", cat.code());
        if cat != Category::O {
            x.leaf("cbc:Percent", &rate.normalize().to_string());
        }
        tax_scheme(&mut x);
        x.close("cac:TaxCategory");
        x.close("cac:AllowanceCharge");
    }

    // VAT.
    x.open("cac:TaxTotal");
    x.amount("cbc:TaxAmount", cur, amt(&inv.vat_total));
    for r in &breakdown {
        x.open("cac:TaxSubtotal");
        x.amount("cbc:TaxableAmount", cur, amt(&r.taxable_amount));
        x.amount("cbc:TaxAmount", cur, amt(&r.vat_amount));
        x.open("cac:TaxCategory");
        x.leaf("cbc:ID", &r.category);
        if r.category != "O" {
            x.leaf("cbc:Percent", &r.rate);
        }
        if !r.exemption_reason_code.is_empty() {
            x.leaf("cbc:TaxExemptionReasonCode", &r.exemption_reason_code);
        }
        if !r.exemption_reason.is_empty() {
            x.leaf("cbc:TaxExemptionReason", &r.exemption_reason);
        }
        tax_scheme(&mut x);
        x.close("cac:TaxCategory");
        x.close("cac:TaxSubtotal");
    }
    x.close("cac:TaxTotal");

    x.open("cac:LegalMonetaryTotal");
    x.amount(
        "cbc:LineExtensionAmount",
        cur,
        amt(&net_total) + allowance_total,
    );
    x.amount("cbc:TaxExclusiveAmount", cur, amt(&net_total));
    // Late-payment fees (issue 4) are outside the scope of VAT and not part of the VAT
    // invoice: the UBL totals are net + VAT; the payment note names the amount due.
    let with_vat = amt(&net_total) + amt(&inv.vat_total);
    x.amount("cbc:TaxInclusiveAmount", cur, with_vat);
    if allowance_total != 0 {
        x.amount("cbc:AllowanceTotalAmount", cur, allowance_total);
    }
    x.amount("cbc:PayableAmount", cur, with_vat);
    x.close("cac:LegalMonetaryTotal");

    let (line_tag, qty_tag) = if credit {
        ("cac:CreditNoteLine", "cbc:CreditedQuantity")
    } else {
        ("cac:InvoiceLine", "cbc:InvoicedQuantity")
    };
    for (i, l) in inv
        .lines
        .iter()
        .filter(|l| fee_only || !(matches!(l, Line::Fee { .. }) || discount(l)))
        .enumerate()
    {
        let a = l.cents() * sign;
        let (cat, rate) = l.vat();
        x.open(line_tag);
        x.leaf("cbc:ID", &(i + 1).to_string());
        x.leaf_with(qty_tag, &[("unitCode", "C62")], "1");
        x.amount("cbc:LineExtensionAmount", cur, a);
        x.open("cac:Item");
        x.leaf("cbc:Name", &l.description());
        x.open("cac:ClassifiedTaxCategory");
        x.leaf("cbc:ID", cat.code());
        if cat != Category::O {
            x.leaf("cbc:Percent", &rate.normalize().to_string());
        }
        tax_scheme(&mut x);
        x.close("cac:ClassifiedTaxCategory");
        x.close("cac:Item");
        x.open("cac:Price");
        x.amount("cbc:PriceAmount", cur, a);
        x.close("cac:Price");
        x.close(line_tag);
    }
    x.close(root);
    let mut out = x.0.into_inner();
    out.push(b'\n');
    out
}

fn address(x: &mut X, street: &str, city: &str, postcode: &str, country: &str) {
    x.open("cac:PostalAddress");
    if !street.is_empty() {
        x.leaf("cbc:StreetName", street);
    }
    if !city.is_empty() {
        x.leaf("cbc:CityName", city);
    }
    if !postcode.is_empty() {
        x.leaf("cbc:PostalZone", postcode);
    }
    x.open("cac:Country");
    x.leaf("cbc:IdentificationCode", country);
    x.close("cac:Country");
    x.close("cac:PostalAddress");
}

fn tax_scheme(x: &mut X) {
    x.open("cac:TaxScheme");
    x.leaf("cbc:ID", "VAT");
    x.close("cac:TaxScheme");
}
