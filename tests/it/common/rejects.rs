//! Rejects files and invoice sums.

use std::fs;
use std::path::Path;

/// Parses RFC 4180 CSV bytes into records of raw byte fields.
pub fn parse_csv(b: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let mut records = Vec::new();
    let mut rec: Vec<Vec<u8>> = Vec::new();
    let mut field = Vec::new();
    let mut i = 0;
    let mut in_quotes = false;
    let mut any = false;
    while i < b.len() {
        let c = b[i];
        any = true;
        if in_quotes {
            if c == b'"' {
                if b.get(i + 1) == Some(&b'"') {
                    field.push(b'"');
                    i += 1;
                } else {
                    in_quotes = false;
                }
            } else {
                field.push(c);
            }
        } else {
            match c {
                b'"' => in_quotes = true,
                b',' => rec.push(std::mem::take(&mut field)),
                b'\r' if b.get(i + 1) == Some(&b'\n') => {}
                b'\n' => {
                    rec.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut rec));
                    any = false;
                }
                o => field.push(o),
            }
        }
        i += 1;
    }
    assert!(!in_quotes, "unterminated quoted field");
    if any {
        rec.push(field);
        records.push(rec);
    }
    records
}

/// A rejects file as (line, reason, raw record) rows; checks the header.
pub fn read_rejects(path: &Path) -> Vec<(u64, String, Vec<u8>)> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut recs = parse_csv(&bytes).into_iter();
    assert_eq!(
        recs.next().expect("rejects header"),
        vec![b"line".to_vec(), b"reason".to_vec(), b"record".to_vec()],
        "{}: header",
        path.display()
    );
    recs.map(|r| {
        assert_eq!(r.len(), 3, "{}: row {r:?}", path.display());
        (
            String::from_utf8(r[0].clone())
                .unwrap()
                .parse()
                .expect("line number"),
            String::from_utf8(r[1].clone()).expect("reason"),
            r[2].clone(),
        )
    })
    .collect()
}

/// Sums of an invoice's usage lines: (quantity, usage, amount in cents).
pub fn usage_sums(inv: &serde_json::Value) -> (u64, u64, i64) {
    let mut q = 0;
    let mut u = 0;
    let mut cents = 0;
    for l in inv["lines"].as_array().expect("lines") {
        if l["kind"] == "usage" {
            q += l["quantity"].as_u64().unwrap();
            u += l["usage"].as_u64().unwrap();
            cents += cents_of(l["amount"].as_str().unwrap());
        }
    }
    (q, u, cents)
}

/// `"12.34"` → 1234; panics unless the string has exactly two decimals.
pub fn cents_of(s: &str) -> i64 {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (i, f) = body
        .split_once('.')
        .unwrap_or_else(|| panic!("amount {s:?} has no decimals"));
    assert!(
        f.len() == 2
            && f.bytes().all(|b| b.is_ascii_digit())
            && !i.is_empty()
            && i.bytes().all(|b| b.is_ascii_digit()),
        "amount {s:?} is not D.DD"
    );
    let v = i.parse::<i64>().unwrap() * 100 + f.parse::<i64>().unwrap();
    if neg {
        -v
    } else {
        v
    }
}
