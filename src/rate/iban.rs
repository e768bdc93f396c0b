//! Bank identifiers, syntax only and I/O-free: IBAN (ISO 13616) and SEPA creditor-id
//! checks (ISO 7064 mod 97-10), BIC shape, and the masked IBAN shown to people.
//!
//! They sit in the rating core because the accounts CSV (`rate::accounts`) validates its
//! payment columns on load; the payments side uses the same checks for bank files.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
