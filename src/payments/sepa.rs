//! SEPA building blocks, I/O-free: the Dutch 16-digit structured payment reference
//! (betalingskenmerk) and the SEPA Core Direct Debit file (pain.008.001.02). The IBAN,
//! BIC and creditor-id checks are [`crate::rate::iban`]; the EPC QR code is
//! [`crate::billing::documents::qr`].

use std::fmt::Write as _;

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

/// Escapes text for XML character data and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => o.push(' '),
            c => o.push(c),
        }
    }
    o
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
    let mut x = String::new();
    let e = xml_escape;
    let _ = write!(
        x,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:pain.008.001.02\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\">\n\
  <CstmrDrctDbtInitn>\n\
    <GrpHdr>\n\
      <MsgId>{}</MsgId>\n\
      <CreDtTm>{}</CreDtTm>\n\
      <NbOfTxs>{}</NbOfTxs>\n\
      <CtrlSum>{}</CtrlSum>\n\
      <InitgPty><Nm>{}</Nm></InitgPty>\n\
    </GrpHdr>\n",
        e(msg_id),
        e(created),
        debits.len(),
        format_cents(total),
        e(&sepa_text(&creditor.name, 70))
    );
    for seq in ["FRST", "RCUR"] {
        let group: Vec<&Debit> = debits.iter().filter(|d| d.sequence == seq).collect();
        if group.is_empty() {
            continue;
        }
        let sum: i64 = group.iter().map(|d| d.amount_cents).sum();
        let _ = write!(
            x,
            "    <PmtInf>\n\
      <PmtInfId>{}-{seq}</PmtInfId>\n\
      <PmtMtd>DD</PmtMtd>\n\
      <BtchBookg>true</BtchBookg>\n\
      <NbOfTxs>{}</NbOfTxs>\n\
      <CtrlSum>{}</CtrlSum>\n\
      <PmtTpInf>\n\
        <SvcLvl><Cd>SEPA</Cd></SvcLvl>\n\
        <LclInstrm><Cd>CORE</Cd></LclInstrm>\n\
        <SeqTp>{seq}</SeqTp>\n\
      </PmtTpInf>\n\
      <ReqdColltnDt>{}</ReqdColltnDt>\n\
      <Cdtr><Nm>{}</Nm></Cdtr>\n\
      <CdtrAcct><Id><IBAN>{}</IBAN></Id></CdtrAcct>\n\
      <CdtrAgt><FinInstnId><BIC>{}</BIC></FinInstnId></CdtrAgt>\n\
      <ChrgBr>SLEV</ChrgBr>\n\
      <CdtrSchmeId><Id><PrvtId><Othr><Id>{}</Id><SchmeNm><Prtry>SEPA</Prtry></SchmeNm></Othr></PrvtId></Id></CdtrSchmeId>\n",
            e(msg_id),
            group.len(),
            format_cents(sum),
            e(collection_date),
            e(&sepa_text(&creditor.name, 70)),
            e(&creditor.iban),
            e(&creditor.bic),
            e(&creditor.id)
        );
        for d in group {
            let agent = if d.debtor_bic.is_empty() {
                "<Othr><Id>NOTPROVIDED</Id></Othr>".to_owned()
            } else {
                format!("<BIC>{}</BIC>", e(&d.debtor_bic))
            };
            let _ = write!(
                x,
                "      <DrctDbtTxInf>\n\
        <PmtId><EndToEndId>{}</EndToEndId></PmtId>\n\
        <InstdAmt Ccy=\"EUR\">{}</InstdAmt>\n\
        <DrctDbtTx><MndtRltdInf><MndtId>{}</MndtId><DtOfSgntr>{}</DtOfSgntr></MndtRltdInf></DrctDbtTx>\n\
        <DbtrAgt><FinInstnId>{agent}</FinInstnId></DbtrAgt>\n\
        <Dbtr><Nm>{}</Nm></Dbtr>\n\
        <DbtrAcct><Id><IBAN>{}</IBAN></Id></DbtrAcct>\n\
        <RmtInf><Ustrd>{}</Ustrd></RmtInf>\n\
      </DrctDbtTxInf>\n",
                e(&d.end_to_end_id),
                format_cents(d.amount_cents),
                e(&d.mandate_id),
                e(&d.mandate_date),
                e(&sepa_text(&d.debtor_name, 70)),
                e(&d.debtor_iban),
                e(&sepa_text(&d.remittance, 140))
            );
        }
        x.push_str("    </PmtInf>\n");
    }
    x.push_str("  </CstmrDrctDbtInitn>\n</Document>\n");
    x
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
    fn sepa_texts() {
        assert_eq!(sepa_text("Jöns & Zoon", 70), "Jons   Zoon");
        assert_eq!(sepa_text("", 70), "-");
        assert_eq!(sepa_text("abcdef", 3), "abc");
        assert_eq!(xml_escape("a<b&\"c'"), "a&lt;b&amp;&quot;c&apos;");
    }
}
