//! Called-number normalization to E.164 digits (rating rule 2). No I/O.
//!
//! `+` followed by digits → those digits; otherwise every character must be a digit;
//! `00…` → drop the `00`; `0…` → national prefix + the rest; anything else as is
//! (short codes). Empty is allowed only for data.

/// Longest normalized number accepted (E.164 allows 15; leave room for routing prefixes).
pub const MAX_DIGITS: usize = 32;

/// A normalized number: the national prefix (or nothing) followed by digits of the raw
/// field, borrowed, never copied. Copying the digits into a buffer and returning that
/// buffer by value cost a store-forwarding stall per record (byte-sized stores read back
/// as one wide load).
#[derive(Clone, Copy, Default)]
pub struct Digits<'a> {
    head: &'a [u8],
    body: &'a [u8],
}

impl<'a> Digits<'a> {
    /// Digits that are already normalized (for lookups outside rating).
    pub fn plain(digits: &'a [u8]) -> Digits<'a> {
        Digits {
            head: &[],
            body: digits,
        }
    }

    /// The digits as two ASCII parts: prefix, then the rest.
    #[inline]
    pub fn parts(&self) -> (&'a [u8], &'a [u8]) {
        (self.head, self.body)
    }

    /// Number of digits.
    #[inline]
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// Whether there are no digits (a data record without a number).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The digits in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        [self.head, self.body].concat()
    }
}

impl std::fmt::Display for Digits<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(self.head).unwrap_or("?"))?;
        f.write_str(std::str::from_utf8(self.body).unwrap_or("?"))
    }
}

impl std::fmt::Debug for Digits<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Normalizes `raw`; `None` means `bad_number`. `allow_empty` is true for data records.
/// Always inlined: a result returned through memory was stored in parts and read back
/// whole, a store-forwarding stall per record.
#[inline(always)]
pub fn normalize<'a>(
    raw: &'a [u8],
    national_prefix: &'a [u8],
    allow_empty: bool,
) -> Option<Digits<'a>> {
    if raw.is_empty() {
        return allow_empty.then_some(Digits::default());
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
    if head.len() + body.len() > MAX_DIGITS {
        return None;
    }
    Some(Digits { head, body })
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
        normalize(s.as_bytes(), b"31", false).map(|d| d.to_string())
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
