//! SEPA building blocks, I/O-free: IBAN and creditor-ID checks (ISO 7064 mod 97-10),
//! the Dutch 16-digit structured payment reference (betalingskenmerk), the EPC QR
//! payload (EPC069-12) and the SEPA Core Direct Debit file (pain.008.001.02).

use std::fmt::Write as _;

use crate::money::format_cents;

/// Remainder mod 97 of the digit string made from `s` (letters A..Z become 10..35).
fn mod97(s: &str) -> Option<u32> {
    let mut r: u32 = 0;
    for c in s.chars() {
        let v = match c {
            '0'..='9' => c as u32 - '0' as u32,
            'A'..='Z' => c as u32 - 'A' as u32 + 10,
            _ => return None,
        };
        r = if v >= 10 {
            (r * 100 + v) % 97
        } else {
            (r * 10 + v) % 97
        };
    }
    Some(r)
}

/// Checks an IBAN (spaces allowed, any case) and returns it normalized (no spaces,
/// upper case). The check: 15–34 characters, a country code, two check digits, an
/// alphanumeric account part, and (account part + country + check digits) mod 97 == 1.
pub fn check_iban(s: &str) -> Result<String, String> {
    let n: String = s
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    let b = n.as_bytes();
    if !(15..=34).contains(&b.len())
        || !b[..2].iter().all(u8::is_ascii_uppercase)
        || !b[2..4].iter().all(u8::is_ascii_digit)
        || !b[4..].iter().all(u8::is_ascii_alphanumeric)
    {
        return Err(format!("`{}` is not an IBAN", mask_iban(&n)));
    }
    if n.starts_with("NL") && n.len() != 18 {
        return Err(format!(
            "`{}` is not an IBAN: a Dutch IBAN has 18 characters",
            mask_iban(&n)
        ));
    }
    let rearranged = format!("{}{}", &n[4..], &n[..4]);
    if mod97(&rearranged) != Some(1) {
        return Err(format!(
            "`{}` is not a valid IBAN: check digits do not match (mod 97)",
            mask_iban(&n)
        ));
    }
    Ok(n)
}

/// An IBAN with all but the country code and the last 4 characters hidden
/// (`NL91ABNA0417164300` → `NL**************4300`), for messages and logs.
pub fn mask_iban(iban: &str) -> String {
    let n = iban.len();
    if n <= 6 {
        return "*".repeat(n);
    }
    format!("{}{}{}", &iban[..2], "*".repeat(n - 6), &iban[n - 4..])
}

/// Checks a BIC: 8 or 11 characters, 4 letters (bank), 2 letters (country), 2 and
/// optionally 3 alphanumerics. Returns it upper-cased.
pub fn check_bic(s: &str) -> Result<String, String> {
    let b = s.trim().to_ascii_uppercase();
    let ok = (b.len() == 8 || b.len() == 11)
        && b.as_bytes()[..6].iter().all(u8::is_ascii_uppercase)
        && b.as_bytes()[6..].iter().all(u8::is_ascii_alphanumeric);
    if ok {
        Ok(b)
    } else {
        Err(format!("`{b}` is not a BIC (8 or 11 characters)"))
    }
}

/// Checks a SEPA creditor identifier such as `NL69ZZZ123456780000`: country, two check
/// digits, a 3-character business code (not part of the check), then the national id;
/// (national id + country + check digits) mod 97 == 1.
pub fn check_creditor_id(s: &str) -> Result<String, String> {
    let n = s.trim().to_ascii_uppercase();
    let b = n.as_bytes();
    if !(8..=35).contains(&b.len())
        || !b[..2].iter().all(u8::is_ascii_uppercase)
        || !b[2..4].iter().all(u8::is_ascii_digit)
        || !b[4..].iter().all(u8::is_ascii_alphanumeric)
    {
        return Err(format!("`{n}` is not a SEPA creditor identifier"));
    }
    let check = format!("{}{}", &n[7..], &n[..4]);
    if mod97(&check) != Some(1) {
        return Err(format!(
            "`{n}` is not a valid SEPA creditor identifier: check digits do not match (mod 97)"
        ));
    }
    Ok(n)
}

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

/// The EPC QR payload (EPC069-12, version 002, UTF-8) for a credit transfer: fields on
/// separate lines: `BCD`, `002`, `1`, `SCT`, BIC, name (≤ 70), IBAN, `EUR<amount>`,
/// purpose (empty), structured reference (empty), unstructured remittance (≤ 140).
///
/// The Dutch payment reference is not an ISO 11649 creditor reference, so it travels in
/// the unstructured remittance field, where Dutch banking apps pass it on unchanged.
pub fn epc_qr_payload(
    bic: &str,
    name: &str,
    iban: &str,
    amount_cents: i64,
    remittance: &str,
) -> String {
    let name: String = name.chars().take(70).collect();
    let rem: String = remittance.chars().take(140).collect();
    format!(
        "BCD\n002\n1\nSCT\n{bic}\n{name}\n{iban}\nEUR{}\n\n\n{rem}",
        format_cents(amount_cents)
    )
}

/// Renders a payload as an SVG QR code (error correction level M, as EPC069-12 asks):
/// one path with a horizontal run per row of dark modules, a 4-module quiet zone, 5 px
/// per module.
pub fn qr_svg(payload: &str) -> Result<String, String> {
    let (w, colors) = qr_colors(payload)?;
    let size = (w + 8) * 5;
    let mut d = String::with_capacity(w * w);
    for y in 0..w {
        let mut x = 0;
        while x < w {
            if colors[y * w + x] == qrcode::Color::Dark {
                let start = x;
                while x < w && colors[y * w + x] == qrcode::Color::Dark {
                    x += 1;
                }
                let _ = write!(
                    d,
                    "M{} {}h{}v5h-{}z",
                    (start + 4) * 5,
                    (y + 4) * 5,
                    (x - start) * 5,
                    (x - start) * 5
                );
            } else {
                x += 1;
            }
        }
    }
    Ok(format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" viewBox=\"0 0 {size} {size}\" shape-rendering=\"crispEdges\"><rect width=\"{size}\" height=\"{size}\" fill=\"#fff\"/><path fill=\"#000\" d=\"{d}\"/></svg>\n"
    ))
}

/// The modules of the QR code (EC level M) of `payload`, row by row: exactly what
/// `qrcode::QrCode::with_error_correction_level(payload, M).to_colors()` gives (tested),
/// but the mask is chosen with a bit-grid penalty instead of the crate's, which boxes a
/// closure per module and was a third of the CPU time of a 100 000-invoice close.
pub fn qr_colors(payload: &str) -> Result<(usize, Vec<qrcode::Color>), String> {
    use qrcode::canvas::{Canvas, MaskPattern};
    let err = |e: qrcode::types::QrError| format!("cannot encode QR code: {e}");
    let level = qrcode::EcLevel::M;
    let bits = qrcode::bits::encode_auto(payload.as_bytes(), level).map_err(err)?;
    let version = bits.version();
    let (data, ec) =
        qrcode::ec::construct_codewords(&bits.into_bytes(), version, level).map_err(err)?;
    let mut canvas = Canvas::new(version, level);
    canvas.draw_all_functional_patterns();
    canvas.draw_data(&data, &ec);
    let w = version.width() as usize;
    if w > 128 {
        // Beyond the bit sets' width (not reached by EPC payloads): the crate's own choice.
        let code =
            qrcode::QrCode::with_error_correction_level(payload.as_bytes(), level).map_err(err)?;
        return Ok((code.width(), code.to_colors()));
    }
    let mut best: Option<(u16, Vec<qrcode::Color>)> = None;
    for pattern in [
        MaskPattern::Checkerboard,
        MaskPattern::HorizontalLines,
        MaskPattern::VerticalLines,
        MaskPattern::DiagonalLines,
        MaskPattern::LargeCheckerboard,
        MaskPattern::Fields,
        MaskPattern::Diamonds,
        MaskPattern::Meadow,
    ] {
        let mut c = canvas.clone();
        c.apply_mask(pattern);
        let colors = c.into_colors();
        let score = qr_penalty(w, &colors);
        // The first pattern with the lowest score wins (as `Iterator::min_by_key`).
        if best.as_ref().is_none_or(|(b, _)| score < *b) {
            best = Some((score, colors));
        }
    }
    Ok((w, best.expect("eight patterns").1))
}

/// The penalty score of a masked QR code (normal versions, width up to 128) as the
/// `qrcode` crate computes it (`Canvas::compute_total_penalty_scores`, the same rules and
/// the same u16 arithmetic): runs of 5+N equal modules in a row or column 3+N each; 3 per
/// 2x2 block of one color; 40 per finder-like `#.###.#` with no dark module in the 4
/// modules before or in the 4 after it, less 360 per direction (the three finder
/// patterns); the distance of the dark share from 50 % in half-percent steps. Rows and
/// columns are bit sets (bit x = module x dark).
fn qr_penalty(w: usize, colors: &[qrcode::Color]) -> u16 {
    let mut rows = vec![0u128; w];
    let mut cols = vec![0u128; w];
    let mut dark = 0usize;
    for y in 0..w {
        for x in 0..w {
            if colors[y * w + x] == qrcode::Color::Dark {
                rows[y] |= 1 << x;
                cols[x] |= 1 << y;
                dark += 1;
            }
        }
    }
    let low = |n: usize| -> u128 {
        if n >= 128 {
            u128::MAX
        } else {
            (1u128 << n) - 1
        }
    };
    let shr = |v: u128, n: usize| v.checked_shr(n as u32).unwrap_or(0);
    let mut total: u16 = 0;
    for lines in [&rows, &cols] {
        let (mut adjacent, mut finder) = (0u16, 0u16);
        for &l in lines.iter() {
            // Runs: a transition at t when module t differs from module t + 1.
            let mut t = (l ^ shr(l, 1)) & low(w - 1);
            let mut start = 0usize;
            loop {
                let end = if t == 0 {
                    w
                } else {
                    t.trailing_zeros() as usize + 1
                };
                let run = (end - start) as u16;
                if run >= 5 {
                    adjacent = adjacent.wrapping_add(run - 2);
                }
                if t == 0 {
                    break;
                }
                t &= t - 1;
                start = end;
            }
            // Finder-like patterns starting at j (dark, light, 3 dark, light, dark).
            let mut m = l
                & !shr(l, 1)
                & shr(l, 2)
                & shr(l, 3)
                & shr(l, 4)
                & !shr(l, 5)
                & shr(l, 6)
                & low(w.saturating_sub(6));
            while m != 0 {
                let j = m.trailing_zeros() as usize;
                m &= m - 1;
                let from = j.saturating_sub(4);
                let before = shr(l, from) & low(j - from) != 0;
                let after = shr(l, j + 7) & 0xf != 0;
                if !before || !after {
                    finder = finder.wrapping_add(40);
                }
            }
        }
        total = total
            .wrapping_add(adjacent)
            .wrapping_add(finder.wrapping_sub(360));
    }
    let mut blocks: u16 = 0;
    for y in 0..w - 1 {
        let (a, b) = (rows[y], rows[y + 1]);
        let same = !(a ^ b) & !(a ^ shr(a, 1)) & !(b ^ shr(b, 1)) & low(w - 1);
        blocks = blocks.wrapping_add(3 * same.count_ones() as u16);
    }
    let ratio = dark * 200 / (w * w);
    let balance = ratio.abs_diff(100) as u16;
    // The crate adds s1_a + s1_b + s2 + s3_a + s3_b + s4; u16 addition commutes.
    total.wrapping_add(blocks).wrapping_add(balance)
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

    /// The fast mask choice gives exactly the `qrcode` crate's modules: EPC payloads of
    /// every amount class and reference, and arbitrary text of every length up to the
    /// EPC maximum (versions 1 to 13).
    #[test]
    fn qr_modules_are_the_crates() {
        let crate_colors = |p: &str| {
            let c = qrcode::QrCode::with_error_correction_level(p.as_bytes(), qrcode::EcLevel::M)
                .unwrap();
            (c.width(), c.to_colors())
        };
        let mut payloads = Vec::new();
        for i in 0..400i64 {
            let cents = (i * 7919 + 1) * if i % 3 == 0 { 1 } else { 1013 };
            payloads.push(epc_qr_payload(
                "ABNANL2A",
                "Tollgate Telecom B.V.",
                "NL91ABNA0417164300",
                cents,
                &format!("{:016}", 1_000_000_000_000 + i * 104_729),
            ));
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in (1..=331).step_by(3).chain([600, 1000, 1200]) {
            let s: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (b' ' + (x % 95) as u8) as char
                })
                .collect();
            payloads.push(s);
        }
        for p in &payloads {
            assert_eq!(qr_colors(p).unwrap(), crate_colors(p), "{p:?}");
        }
    }

    #[test]
    fn ibans() {
        // Published example IBANs (ECBS / bank documentation).
        for ok in [
            "NL91ABNA0417164300",
            "NL91 ABNA 0417 1643 00",
            "nl91abna0417164300",
            "DE89370400440532013000",
            "GB29NWBK60161331926819",
            "BE68539007547034",
        ] {
            assert!(check_iban(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            check_iban("nl91 abna 0417 1643 00").unwrap(),
            "NL91ABNA0417164300"
        );
        let e = check_iban("NL92ABNA0417164300").unwrap_err();
        assert!(e.contains("mod 97"), "{e}");
        assert!(!e.contains("0417164300"), "full number leaked: {e}");
        assert!(check_iban("NL91ABNA041716430").is_err());
        assert!(check_iban("XX").is_err());
        assert!(check_iban("NL91ABNA04171643$0").is_err());
        assert_eq!(mask_iban("NL91ABNA0417164300"), "NL************4300");
    }

    #[test]
    fn creditor_ids_and_bics() {
        // The Bundesbank's published test creditor id, and a Dutch one for KvK 12345678
        // (check digits: 98 − (123456780000 2321 00 mod 97) = 69).
        assert!(check_creditor_id("DE98ZZZ09999999999").is_ok());
        assert!(check_creditor_id("NL69ZZZ123456780000").is_ok());
        assert!(check_creditor_id("NL68ZZZ123456780000").is_err());
        // The business code (ZZZ) is not part of the check.
        assert!(check_creditor_id("NL69ABC123456780000").is_ok());
        assert!(check_bic("ABNANL2A").is_ok());
        assert!(check_bic("deutdeff500").is_ok());
        assert!(check_bic("ABN").is_err());
    }

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
    fn epc_payload() {
        let p = epc_qr_payload(
            "ABNANL2A",
            "Tollgate Telecom B.V.",
            "NL91ABNA0417164300",
            1661,
            "3000002026000001",
        );
        assert_eq!(
            p,
            "BCD\n002\n1\nSCT\nABNANL2A\nTollgate Telecom B.V.\nNL91ABNA0417164300\nEUR16.61\n\n\n3000002026000001"
        );
        let svg = qr_svg(&p).unwrap();
        assert!(svg.starts_with("<?xml") && svg.contains("<svg"), "{svg}");
    }

    #[test]
    fn sepa_texts() {
        assert_eq!(sepa_text("Jöns & Zoon", 70), "Jons   Zoon");
        assert_eq!(sepa_text("", 70), "-");
        assert_eq!(sepa_text("abcdef", 3), "abc");
        assert_eq!(xml_escape("a<b&\"c'"), "a&lt;b&amp;&quot;c&apos;");
    }
}
