//! Rejects files (read with the `csv` crate) and invoice sums.

use std::fs;
use std::path::Path;

/// A rejects file as (line, reason, raw record) rows; checks the header.
pub fn read_rejects(path: &Path) -> Vec<(u64, String, Vec<u8>)> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut recs = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes.as_slice())
        .into_byte_records()
        .map(|r| r.unwrap_or_else(|e| panic!("{}: {e}", path.display())));
    let header = recs.next().expect("rejects header");
    assert_eq!(
        header.iter().collect::<Vec<_>>(),
        [&b"line"[..], b"reason", b"record"],
        "{}: header",
        path.display()
    );
    recs.map(|r| {
        assert_eq!(r.len(), 3, "{}: row {r:?}", path.display());
        (
            std::str::from_utf8(&r[0])
                .unwrap()
                .parse()
                .expect("line number"),
            String::from_utf8(r[1].to_vec()).expect("reason"),
            r[2].to_vec(),
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
