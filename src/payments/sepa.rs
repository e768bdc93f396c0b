//! SEPA building blocks, I/O-free: the Dutch 16-digit structured payment reference
//! (betalingskenmerk) and the SEPA Core Direct Debit file (pain.008.001.02). The IBAN,
//! BIC and creditor-id checks are [`crate::rate::iban`]; the EPC QR code is
//! [`crate::billing::documents::qr`].

use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use crate::rate::money::format_cents;

/// Weights of the Dutch payment reference check digit, from the rightmost digit leftwards
/// (the powers of 2 mod 11); they repeat after ten digits.
const REF_WEIGHTS: [u32; 10] = [2, 4, 8, 5, 10, 9, 7, 3, 6, 1];

/// Check digit of the 15 digits of a 16-digit Dutch payment reference (weighted mod 11):
/// A = Σ digit × weight (weights above, from the right); C = 11 − (A mod 11); C = 10 → 1,
/// C = 11 → 0.
pub fn reference_check_digit(digits15: &str) -> u32 {
    let a: u32 = digits15
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, d)| (d - b'0') as u32 * REF_WEIGHTS[i % 10])
        .sum();
    match 11 - a % 11 {
        10 => 1,
        11 => 0,
        c => c,
    }
}

/// The structured payment reference of an invoice: the digits of its number, left-padded
/// with zeros to 15 digits, behind their check digit (`2026-000001` → `3000002026000001`).
/// `None` when the number has more than 15 digits.
pub fn payment_reference(invoice_number: &str) -> Option<String> {
    let digits: String = invoice_number
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let body = format!("{digits:0>15}");
    Some(format!("{}{body}", reference_check_digit(&body)))
}

/// True when `s` is 16 digits whose first is the check digit of the other 15.
pub fn is_payment_reference(s: &str) -> bool {
    s.len() == 16
        && s.bytes().all(|b| b.is_ascii_digit())
        && reference_check_digit(&s[1..]) == (s.as_bytes()[0] - b'0') as u32
}

/// Every valid 16-digit payment reference in a free text (digits may be grouped by
/// spaces or dots, as people type them), in order of appearance.
pub fn find_payment_references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut run = String::new();
    let mut flush = |run: &mut String| {
        if run.len() >= 16 {
            for i in 0..=run.len() - 16 {
                let cand = &run[i..i + 16];
                if is_payment_reference(cand) && !out.contains(&cand.to_owned()) {
                    out.push(cand.to_owned());
                }
            }
        }
        run.clear();
    };
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_digit() {
            run.push(c);
        } else if (c == ' ' || c == '.')
            && !run.is_empty()
            && chars.get(i + 1).is_some_and(char::is_ascii_digit)
        {
            continue;
        } else {
            flush(&mut run);
        }
    }
    flush(&mut run);
    out
}

/// Reduces text to the SEPA basic Latin character set (a-z A-Z 0-9 / - ? : ( ) . , ' +
/// and space); other characters become a space after removing common diacritics.
pub fn sepa_text(s: &str, max: usize) -> String {
    let mut o = String::new();
    for c in s.chars() {
        let c = match c {
            'á' | 'à' | 'ä' | 'â' | 'å' | 'ã' => 'a',
            'é' | 'è' | 'ë' | 'ê' => 'e',
            'í' | 'ì' | 'ï' | 'î' => 'i',
            'ó' | 'ò' | 'ö' | 'ô' | 'õ' => 'o',
            'ú' | 'ù' | 'ü' | 'û' => 'u',
            'Á' | 'À' | 'Ä' | 'Â' | 'Å' => 'A',
            'É' | 'È' | 'Ë' | 'Ê' => 'E',
            'Ó' | 'Ò' | 'Ö' | 'Ô' => 'O',
            'Ú' | 'Ù' | 'Ü' | 'Û' => 'U',
            'ç' => 'c',
            'ñ' => 'n',
            c if c.is_ascii_alphanumeric() || "/-?:().,'+ ".contains(c) => c,
            _ => ' ',
        };
        o.push(c);
        if o.len() >= max {
            break;
        }
    }
    let t = o.trim().to_owned();
    if t.is_empty() {
        "-".into()
    } else {
        t
    }
}

/// The creditor side of a collection.
#[derive(Debug, Clone)]
pub struct Creditor {
    pub id: String,
    pub name: String,
    pub iban: String,
    pub bic: String,
}

/// One direct debit transaction.
#[derive(Debug, Clone)]
pub struct Debit {
    pub end_to_end_id: String,
    pub amount_cents: i64,
    pub mandate_id: String,
    pub mandate_date: String,
    pub debtor_name: String,
    pub debtor_iban: String,
    /// Empty: the debtor agent is given as `NOTPROVIDED` (IBAN-only, allowed in SEPA).
    pub debtor_bic: String,
    pub remittance: String,
    /// `FRST` or `RCUR`.
    pub sequence: &'static str,
}

/// Writes a pain.008.001.02 SEPA Core Direct Debit initiation: one payment information
/// block per sequence type (FRST, then RCUR), all due on `collection_date`.
pub fn pain008(
    msg_id: &str,
    created: &str,
    collection_date: &str,
    creditor: &Creditor,
    debits: &[Debit],
) -> String {
    let total: i64 = debits.iter().map(|d| d.amount_cents).sum();
    let mut x = Pain::default();
    x.decl();
    x.open_with(
        0,
        "Document",
        &[
            ("xmlns", "urn:iso:std:iso:20022:tech:xsd:pain.008.001.02"),
            ("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"),
        ],
    );
    x.open(0, "CstmrDrctDbtInitn");
    x.open(0, "GrpHdr");
    x.line(0, &[("MsgId", msg_id)]);
    x.line(0, &[("CreDtTm", created)]);
    x.line(0, &[("NbOfTxs", &debits.len().to_string())]);
    x.line(0, &[("CtrlSum", &format_cents(total))]);
    x.line(
        0,
        &[("InitgPty", ""), ("Nm", &sepa_text(&creditor.name, 70))],
    );
    x.close(0, "GrpHdr");
    for seq in ["FRST", "RCUR"] {
        let group: Vec<&Debit> = debits.iter().filter(|d| d.sequence == seq).collect();
        if group.is_empty() {
            continue;
        }
        let sum: i64 = group.iter().map(|d| d.amount_cents).sum();
        x.open(2, "PmtInf");
        x.line(0, &[("PmtInfId", &format!("{msg_id}-{seq}"))]);
        x.line(0, &[("PmtMtd", "DD")]);
        x.line(0, &[("BtchBookg", "true")]);
        x.line(0, &[("NbOfTxs", &group.len().to_string())]);
        x.line(0, &[("CtrlSum", &format_cents(sum))]);
        x.open(0, "PmtTpInf");
        x.line(0, &[("SvcLvl", ""), ("Cd", "SEPA")]);
        x.line(0, &[("LclInstrm", ""), ("Cd", "CORE")]);
        x.line(0, &[("SeqTp", seq)]);
        x.close(0, "PmtTpInf");
        x.line(0, &[("ReqdColltnDt", collection_date)]);
        x.line(0, &[("Cdtr", ""), ("Nm", &sepa_text(&creditor.name, 70))]);
        x.line(0, &[("CdtrAcct", ""), ("Id", ""), ("IBAN", &creditor.iban)]);
        x.line(
            0,
            &[("CdtrAgt", ""), ("FinInstnId", ""), ("BIC", &creditor.bic)],
        );
        x.line(0, &[("ChrgBr", "SLEV")]);
        x.start("CdtrSchmeId");
        x.start("Id");
        x.start("PrvtId");
        x.start("Othr");
        x.leaf("Id", &creditor.id);
        x.start("SchmeNm");
        x.leaf("Prtry", "SEPA");
        for t in ["SchmeNm", "Othr", "PrvtId", "Id", "CdtrSchmeId"] {
            x.end(t);
        }
        x.raw("\n");
        for d in group {
            x.open(3, "DrctDbtTxInf");
            x.line(0, &[("PmtId", ""), ("EndToEndId", &d.end_to_end_id)]);
            x.start_with("InstdAmt", &[("Ccy", "EUR")]);
            x.text(&format_cents(d.amount_cents));
            x.end("InstdAmt");
            x.raw("\n");
            x.start("DrctDbtTx");
            x.start("MndtRltdInf");
            x.leaf("MndtId", &d.mandate_id);
            x.leaf("DtOfSgntr", &d.mandate_date);
            x.end("MndtRltdInf");
            x.end("DrctDbtTx");
            x.raw("\n");
            if d.debtor_bic.is_empty() {
                x.line(
                    0,
                    &[
                        ("DbtrAgt", ""),
                        ("FinInstnId", ""),
                        ("Othr", ""),
                        ("Id", "NOTPROVIDED"),
                    ],
                );
            } else {
                x.line(
                    0,
                    &[("DbtrAgt", ""), ("FinInstnId", ""), ("BIC", &d.debtor_bic)],
                );
            }
            x.line(0, &[("Dbtr", ""), ("Nm", &sepa_text(&d.debtor_name, 70))]);
            x.line(0, &[("DbtrAcct", ""), ("Id", ""), ("IBAN", &d.debtor_iban)]);
            x.line(
                0,
                &[("RmtInf", ""), ("Ustrd", &sepa_text(&d.remittance, 140))],
            );
            x.close(0, "DrctDbtTxInf");
        }
        x.close(2, "PmtInf");
    }
    x.close(1, "CstmrDrctDbtInitn");
    x.close(0, "Document");
    String::from_utf8(x.0.into_inner()).expect("quick-xml writes UTF-8")
}

/// The pain.008 file through quick-xml (its escaping), laid out byte for byte as the file
/// always was: a line per element or small wrapper, indented only at `<PmtInf>` (4),
/// `<DrctDbtTxInf>` (6) and the closing `</CstmrDrctDbtInitn>` (2).
struct Pain(quick_xml::Writer<Vec<u8>>);

impl Default for Pain {
    fn default() -> Self {
        Pain(quick_xml::Writer::new(Vec::new()))
    }
}

impl Pain {
    fn ev(&mut self, e: Event) {
        self.0.write_event(e).expect("writing to memory");
    }
    fn decl(&mut self) {
        self.ev(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        self.raw("\n");
    }
    /// Layout white space (never escaped: only spaces and newlines).
    fn raw(&mut self, s: &str) {
        self.ev(Event::Text(BytesText::from_escaped(s)));
    }
    fn indent(&mut self, depth: usize) {
        self.raw(&"  ".repeat(depth));
    }
    fn start(&mut self, tag: &str) {
        self.ev(Event::Start(BytesStart::new(tag)));
    }
    fn start_with(&mut self, tag: &str, attrs: &[(&str, &str)]) {
        let mut s = BytesStart::new(tag);
        for a in attrs {
            s.push_attribute(*a);
        }
        self.ev(Event::Start(s));
    }
    fn end(&mut self, tag: &str) {
        self.ev(Event::End(BytesEnd::new(tag)));
    }
    /// Character data: control characters (not allowed in XML 1.0) become spaces, then
    /// quick-xml escapes it.
    fn text(&mut self, s: &str) {
        let clean: String = s
            .chars()
            .map(|c| {
                if (c as u32) < 0x20 && c != '\n' && c != '\t' {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        self.ev(Event::Text(BytesText::new(&clean)));
    }
    fn leaf(&mut self, tag: &str, text: &str) {
        self.start(tag);
        self.text(text);
        self.end(tag);
    }
    /// `<tag ...>` on a line of its own.
    fn open_with(&mut self, depth: usize, tag: &str, attrs: &[(&str, &str)]) {
        self.indent(depth);
        self.start_with(tag, attrs);
        self.raw("\n");
    }
    fn open(&mut self, depth: usize, tag: &str) {
        self.open_with(depth, tag, &[]);
    }
    fn close(&mut self, depth: usize, tag: &str) {
        self.indent(depth);
        self.end(tag);
        self.raw("\n");
    }
    /// One line of nested elements, the last one holding the text: `[("A", ""), ("B",
    /// "t")]` is `<A><B>t</B></A>`.
    fn line(&mut self, depth: usize, path: &[(&str, &str)]) {
        self.indent(depth);
        let (last, outer) = path.split_last().expect("a path");
        for (t, _) in outer {
            self.start(t);
        }
        self.leaf(last.0, last.1);
        for (t, _) in outer.iter().rev() {
            self.end(t);
        }
        self.raw("\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_reference_check_digit() {
        // Public example of the Betaalvereniging / XMLdation: (5)000 0567 8901 2345.
        assert_eq!(reference_check_digit("000056789012345"), 5);
        assert!(is_payment_reference("5000056789012345"));
        assert!(!is_payment_reference("4000056789012345"));
        // Remainder 1 → C = 10 → 1; remainder 0 → C = 11 → 0.
        // "000000000000005": A = 5 × 2 = 10 → C = 1.
        assert_eq!(reference_check_digit("000000000000005"), 1);
        // "000000000000000": A = 0 → C = 11 → 0.
        assert_eq!(reference_check_digit("000000000000000"), 0);
        // Weights repeat after ten digits: a 1 in position 11 from the right weighs 2.
        assert_eq!(
            reference_check_digit("000010000000000"),
            reference_check_digit("000000000000001")
        );
        // 2026-000001 → 15 digits 000002026000001; from the right: 1×2 + 6×7 + 2×3 + 2×1
        // = 52; 52 mod 11 = 8 → 11 − 8 = 3.
        assert_eq!(
            payment_reference("2026-000001").unwrap(),
            "3000002026000001"
        );
        assert!(is_payment_reference(
            &payment_reference("2026-123456").unwrap()
        ));
        assert_eq!(payment_reference("1234567890123456"), None);
    }

    #[test]
    fn references_in_text() {
        assert_eq!(
            find_payment_references("Betaling 5000 0567 8901 2345 dank"),
            vec!["5000056789012345".to_owned()]
        );
        assert_eq!(
            find_payment_references("ref 5000.0567.8901.2345"),
            vec!["5000056789012345".to_owned()]
        );
        assert!(find_payment_references("4000056789012345 and 12").is_empty());
    }

    #[test]
    fn pain008_layout_and_escaping() {
        let c = Creditor {
            id: "NL00ZZZ123456780000".into(),
            name: "Tollgate Telecom B.V. & Zn <x>".into(),
            iban: "NL91ABNA0417164300".into(),
            bic: "ABNANL2A".into(),
        };
        let debit = |e2e: &str, cents, mandate: &str, name: &str, bic: &str, seq| Debit {
            end_to_end_id: e2e.into(),
            amount_cents: cents,
            mandate_id: mandate.into(),
            mandate_date: "2026-01-02".into(),
            debtor_name: name.into(),
            debtor_iban: "DE89370400440532013000".into(),
            debtor_bic: bic.into(),
            remittance: "Invoice 2026-000001".into(),
            sequence: seq,
        };
        let d = [
            debit("E2E-1", 12345, "M'1\u{1}\"", "Zoë Dvořák", "", "FRST"),
            debit("E2E-2", -5, "M2", "A&B", "INGBNL2A", "RCUR"),
        ];
        let x = pain008("MSG<1>", "2026-12-05T10:00:00", "2026-12-10", &c, &d);
        let expected = include_str!("../../tests/fixtures/pain008_layout.xml");
        assert_eq!(x, expected);
    }

    #[test]
    fn sepa_texts() {
        assert_eq!(sepa_text("Jöns & Zoon", 70), "Jons   Zoon");
        assert_eq!(sepa_text("", 70), "-");
        assert_eq!(sepa_text("abcdef", 3), "abc");
    }
}
