//! Called-number normalization to E.164 digits (rating rule 2). No I/O.
//!
//! `+` followed by digits → those digits; otherwise every character must be a digit;
//! `00…` → drop the `00`; `0…` → national prefix + the rest; anything else as is
//! (short codes). Empty is allowed only for data.

/// Longest normalized number accepted (E.164 allows 15; leave room for routing prefixes).
pub const MAX_DIGITS: usize = 32;

/// A normalized number held on the stack.
#[derive(Clone, Copy)]
pub struct Digits {
    buf: [u8; MAX_DIGITS],
    len: u8,
}

impl Digits {
    /// The normalized digits as ASCII bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl std::fmt::Debug for Digits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(self.as_bytes()).unwrap_or("?"))
    }
}

/// Normalizes `raw`; `None` means `bad_number`. `allow_empty` is true for data records.
#[inline]
pub fn normalize(raw: &[u8], national_prefix: &[u8], allow_empty: bool) -> Option<Digits> {
    let mut out = Digits {
        buf: [0; MAX_DIGITS],
        len: 0,
    };
    if raw.is_empty() {
        return allow_empty.then_some(out);
    }
    let (head, body): (&[u8], &[u8]) = if raw[0] == b'+' {
        (&[], &raw[1..])
    } else if raw.starts_with(b"00") {
        (&[], &raw[2..])
    } else if raw[0] == b'0' {
        (national_prefix, &raw[1..])
    } else {
        (&[], raw)
    };
    if body.is_empty() || !body.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len = head.len() + body.len();
    if len > MAX_DIGITS {
        return None;
    }
    out.buf[..head.len()].copy_from_slice(head);
    out.buf[head.len()..len].copy_from_slice(body);
    out.len = len as u8;
    Some(out)
}

/// Masks a subscriber number for logs and error messages: keeps the first 4 digits.
pub fn redact(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let keep: String = s.chars().take(4).collect();
    let hidden = s.chars().count().saturating_sub(4);
    format!("{keep}{}", "x".repeat(hidden))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Option<String> {
        normalize(s.as_bytes(), b"31", false)
            .map(|d| String::from_utf8(d.as_bytes().to_vec()).unwrap())
    }

    #[test]
    fn rule_2() {
        assert_eq!(norm("+31612345678").as_deref(), Some("31612345678"));
        assert_eq!(norm("0031612345678").as_deref(), Some("31612345678"));
        assert_eq!(norm("0612345678").as_deref(), Some("31612345678"));
        assert_eq!(norm("112").as_deref(), Some("112"));
        assert_eq!(norm("+").as_deref(), None);
        assert_eq!(norm("00").as_deref(), None);
        assert_eq!(norm("0").as_deref(), None);
        assert_eq!(norm("+31 6").as_deref(), None);
        assert_eq!(norm("12ab34").as_deref(), None);
        assert_eq!(norm("++31").as_deref(), None);
        assert_eq!(norm("").as_deref(), None);
        assert!(normalize(b"", b"31", true).is_some());
        assert_eq!(norm(&"1".repeat(33)), None);
        assert_eq!(norm(&"1".repeat(32)).map(|s| s.len()), Some(32));
    }

    #[test]
    fn redaction_hides_the_subscriber() {
        assert_eq!(redact(b"+31612345678"), "+316xxxxxxxx");
        assert_eq!(redact(b"112"), "112");
    }
}
