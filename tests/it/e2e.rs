//! End-to-end tests of the real `tollgate` binary: the daemon on a spool, the HTTP
//! endpoint, `ingest`, and `cycle close`, with hand-computed expectations.
//!
//! The hand-made workspace (see `common::HAND_PLANS`, `HAND_DECK`, `HAND_ACCOUNTS`)
//! has round prices, so every amount below is computed by hand in the comments.

use std::fs;

use crate::common;
use crate::common::tools;
use crate::common::{cdr_file, read_rejects, run, usage_sums, Daemon, Ws, HAND_DECK};
use serde_json::{json, Value};

const FILES: &str = "tollgate_files_total";

fn seller() -> Value {
    json!({
        "name": "Tollgate Telecom B.V.",
        "street": "Stationsplein 1",
        "postcode": "1012 AB",
        "city": "Amsterdam",
        "country": "NL",
        "kvk": "12345678",
        "vat_id": "NL123456789B01",
        "iban": "NL91ABNA0417164300",
        "bic": "ABNANL2A"
    })
}

fn customer(account: &str) -> Value {
    match account {
        "A1" => json!({
            "name": "Alice Jansen",
            "street": "Damrak 1",
            "postcode": "1012 LG",
            "city": "Amsterdam",
            "country": "NL",
            "customer_type": "consumer"
        }),
        "A2" => json!({ "name": "Bob de Vries", "customer_type": "consumer" }),
        _ => json!({ "customer_type": "consumer" }),
    }
}

fn usage(service: &str, destination: &str, quantity: u64, usage: u64, amount: &str) -> Value {
    let unit = match service {
        "voice" => "seconds",
        "sms" => "messages",
        _ => "bytes",
    };
    json!({
        "kind": "usage",
        "service": service,
        "destination": destination,
        "band": "any",
        "quantity": quantity,
        "usage": usage,
        "unit": unit,
        "amount": amount,
        "vat_category": "S",
        "vat_rate": "21"
    })
}

fn subscription(period: &str) -> Value {
    json!({
        "kind": "subscription",
        "plan": "flat",
        "description": format!("Subscription flat, {period}"),
        "amount": "10.00",
        "vat_category": "S",
        "vat_rate": "21"
    })
}

#[allow(clippy::too_many_arguments)]
fn invoice(
    number: &str,
    account: &str,
    period: &str,
    issue: &str,
    due: &str,
    lines: Vec<Value>,
    totals: (&str, &str, &str),
    late: u64,
) -> Value {
    json!({
        "number": number,
        "account_id": account,
        "period": period,
        "currency": "EUR",
        "issue_date": issue,
        "due_date": due,
        "seller": seller(),
        "customer": customer(account),
        "lines": lines,
        "net_total": totals.0,
        "vat_rate": "21",
        "vat_total": totals.1,
        "total": totals.2,
        "late_records": late,
        "payment_reference": tollgate::payments::sepa::payment_reference(number).unwrap(),
        "payment": {
            "method": "transfer",
            "iban": seller()["iban"],
            "epc_qr": tollgate::billing::documents::qr::epc_qr_payload(
                seller()["bic"].as_str().unwrap(),
                seller()["name"].as_str().unwrap(),
                seller()["iban"].as_str().unwrap(),
                common::cents_of(totals.2),
                &tollgate::payments::sepa::payment_reference(number).unwrap(),
            ),
            // What is asked: the total (no credit on these accounts).
            "amount": totals.2,
        },
        "document_type": "invoice",
        "period_start": format!("{period}-01"),
        "period_end": format!("{period}-{}", match &period[5..] {
            "02" => "28",
            "04" | "06" | "09" | "11" => "30",
            _ => "31",
        }),
        "vat_breakdown": [{
            "category": "S",
            "rate": "21",
            "taxable_amount": totals.0,
            "vat_amount": totals.1
        }]
    })
}

/// Compares invoices one by one so that a failure names the invoice that differs.
fn assert_invoices(got: &[Value], want: &[Value]) {
    let n = |v: &[Value]| {
        v.iter()
            .map(|i| i["number"].to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(n(got), n(want), "invoice numbers");
    for (g, w) in got.iter().zip(want) {
        // usage_by_day (the PDF's chart, re-derived at the close) is checked for
        // consistency here and exactly in tests/invoices.rs: every record of the period
        // is on its day, late records are not charted.
        let mut g = g.clone();
        if let Some(days) = g.as_object_mut().and_then(|o| o.remove("usage_by_day")) {
            let charted: u64 = days
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["records"].as_u64().unwrap())
                .sum();
            let quantity: u64 = g["lines"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|l| l["quantity"].as_u64())
                .sum();
            assert_eq!(
                charted + g["late_records"].as_u64().unwrap(),
                quantity,
                "usage_by_day of {}: {days}",
                w["number"]
            );
        }
        let g = &g;
        assert_eq!(
            g,
            w,
            "invoice {} differs:\n got: {}\nwant: {}",
            w["number"],
            serde_json::to_string_pretty(g).unwrap(),
            serde_json::to_string_pretty(w).unwrap()
        );
    }
}

/// Expected rejects file content for (line, reason, raw line) rows whose raw line
/// contains commas but no quotes (so the CSV writer quotes it once).
fn rejects_text(rows: &[(u64, &str, &str)]) -> String {
    let mut s = String::from("line,reason,record\n");
    for (line, reason, raw) in rows {
        s.push_str(&format!("{line},{reason},\"{raw}\"\n"));
    }
    s
}

// File A of the first test. Header is line 1; one bad row of each reason.
const A_R1: &str = "r1,A1,voice,+31611111111,+31612345678,2026-10-05T10:00:00Z,61,0";
const A_X1: &str = "x1,A9,voice,+31611111111,+31612345678,2026-10-05T11:00:00Z,10,0";
const A_R2: &str = "r2,A1,voice,+31611111111,0612345678,2026-10-06T10:00:00Z,30,0";
const A_X2: &str = "x2,A1,fax,+31611111111,+31612345678,2026-10-06T11:00:00Z,10,0";
const A_R3: &str = "r3,A1,sms,+31611111111,+447700900123,2026-10-07T10:00:00Z,,";
const A_X3: &str = "x3,A1,voice,+31611111111,+31612345678,yesterday,10,0";
const A_R4: &str = "r4,A2,voice,+31622222222,00447700900123,2026-10-08T10:00:00Z,90,0";
const A_X4: &str = "x4,A2,voice,+31622222222,+31612345678,2026-10-08T11:00:00Z,-5,0";
const A_R5: &str = "r5,A2,data,+31622222222,,2026-10-09T10:00:00Z,0,1048576";
const A_X5: &str = "x5,A2,voice,+31622222222,12ab34,2026-10-09T11:00:00Z,10,0";
const A_R6: &str = "r6,A3,voice,+31633333333,+4930123456,2026-10-10T10:00:00Z,10,0";
const A_X6: &str = "x6,A3,voice,+31633333333,+4930123456,2026-10-10T11:00:00Z,10";
const A_R7: &str = "r7,A3,voice,+31633333333,+4930123456,2026-10-11T10:00:00Z,10,0";
const A_X7: &str = "x7,A3,voice,+31633333333,+8881234567,2026-10-11T11:00:00Z,10,0";
const A_R8: &str = "r8,A3,voice,+31633333333,+4930123456,2026-10-12T10:00:00Z,10,0";
const A_X8: &str = "x8,A3,voice,+31633333333,+4930123456,2099-01-01T00:00:00Z,10,0";
const A_X9: &str = "r1,A2,voice,+31622222222,+31612345678,2026-10-13T10:00:00Z,60,0";

#[test]
fn daemon_rates_spooled_files_and_closes_a_cycle() {
    let ws = Ws::hand();
    let d = Daemon::start(&ws);
    assert!(
        d.log().contains(&format!("listening on http://{}", d.addr)),
        "log lacks the listening line:\n{}",
        d.log()
    );

    let file_a = cdr_file(&[
        A_R1, A_X1, A_R2, A_X2, A_R3, A_X3, A_R4, A_X4, A_R5, A_X5, A_R6, A_X6, A_R7, A_X7, A_R8,
        A_X8, A_X9,
    ]);
    let file_b = cdr_file(&[
        "r9,A1,data,+31611111111,,2026-10-15T00:00:00Z,0,524288",
        "r10,A2,sms,+31622222222,+31612345678,2026-10-16T00:00:00Z,0,0",
        "r11,A2,sms,+31622222222,+31612345678,2026-10-17T00:00:00Z,0,0",
        // 23:59:59 local time (CET) on the last day of October.
        "r12,A3,voice,+31633333333,+447700900123,2026-10-31T22:59:59Z,24,0",
        // A zero-second call: billed 0, charged 0, still one record.
        "r13,A3,voice,+31633333333,+31201234567,2026-10-20T12:00:00+02:00,0,0",
    ]);
    // A file mediation is still writing: hidden, so never touched.
    fs::create_dir_all(ws.inbox()).unwrap();
    fs::write(ws.inbox().join(".cdr-c.csv.tmp"), &file_b[..40]).unwrap();
    ws.drop_file("cdr-a.csv", &file_a);
    ws.drop_file("cdr-b.csv", &file_b);
    d.wait_until("both files in done/", || {
        ws.names("done") == ["cdr-a.csv", "cdr-b.csv"]
    });
    assert_eq!(ws.names("inbox"), Vec::<String>::new());
    assert_eq!(
        fs::read(ws.inbox().join(".cdr-c.csv.tmp")).unwrap(),
        &file_b[..40]
    );
    assert_eq!(ws.names("work"), Vec::<String>::new());
    assert_eq!(ws.names("failed"), Vec::<String>::new());
    // Moved, not copied: the done file is the dropped file.
    assert_eq!(fs::read(ws.done().join("cdr-a.csv")).unwrap(), file_a);

    let rejects = fs::read_to_string(ws.rejects("cdr-a.csv")).expect("rejects of cdr-a.csv");
    assert_eq!(
        rejects,
        rejects_text(&[
            (3, "unknown_account", A_X1),
            (5, "unknown_service", A_X2),
            (7, "bad_time", A_X3),
            (9, "bad_usage", A_X4),
            (11, "bad_number", A_X5),
            (13, "malformed", A_X6),
            (15, "no_rate", A_X7),
            (17, "future_time", A_X8),
            (18, "duplicate_record", A_X9),
        ])
    );
    assert!(
        !ws.rejects("cdr-b.csv").exists(),
        "cdr-b.csv had no rejects"
    );

    d.wait_until("backlog gauge back to 0", || {
        d.metrics().get("tollgate_spool_backlog_files", &[]) == Some(0.0)
    });
    let m = d.metrics();
    assert_eq!(m.rated(), Some(13.0), "{}", m.text);
    let rejected = m.rejected_by_reason();
    assert_eq!(
        rejected,
        [
            "bad_number",
            "bad_time",
            "bad_usage",
            "duplicate_record",
            "future_time",
            "malformed",
            "no_rate",
            "unknown_account",
            "unknown_service"
        ]
        .map(|r| (r.to_string(), 1.0))
    );
    assert_eq!(m.get(FILES, &[("outcome", "done")]), Some(2.0));
    assert_eq!(m.counter(FILES, &[("outcome", "failed")]), 0.0);
    assert_eq!(m.counter(FILES, &[("outcome", "duplicate")]), 0.0);
    assert_eq!(
        m.get("tollgate_ingested_bytes_total", &[]),
        Some((file_a.len() + file_b.len()) as f64)
    );
    assert_eq!(
        m.get("tollgate_file_processing_seconds_count", &[]),
        Some(2.0)
    );
    assert_eq!(
        m.get("tollgate_file_processing_seconds_bucket", &[("le", "+Inf")]),
        Some(2.0)
    );

    assert_eq!(d.get("/readyz"), (200, "ready\n".into()));
    assert_eq!(d.get("/healthz"), (200, "ok\n".into()));
    assert_eq!(d.get("/nope").0, 404);

    let addr_file = ws.data().join("listen.addr");
    let status = d.stop();
    assert_eq!(status.code(), Some(0), "SIGTERM exit status {status}");
    assert!(
        !addr_file.exists(),
        "listen.addr left behind after a clean stop"
    );

    let out = ws.close("2026-10", "2026-11-01").ok();
    assert!(
        out.stdout.contains(
            "closed 2026-10: 3 invoices (2026-000001 .. 2026-000003), net 36.10 + VAT 7.59 = 43.69 (0 late records)"
        ),
        "{out:#?}"
    );
    let (p, i, due) = ("2026-10", "2026-11-01", "2026-11-15");
    assert_invoices(
        &ws.read_invoices(p),
        &[
            // NL 61 s -> 120 s: 0.10 + 0.60*2 = 1.30; 30 s -> 60 s: 0.70.
            // 524288 bytes = 0.5 MiB at 1.00/MiB: 0.50. Net 12.60, VAT 2.646 -> 2.65.
            invoice(
                "2026-000001",
                "A1",
                p,
                i,
                due,
                vec![
                    usage("voice", "Netherlands", 2, 180, "2.00"),
                    usage("sms", "SMS", 1, 1, "0.10"),
                    usage("data", "Mobile data", 1, 524_288, "0.50"),
                    subscription(p),
                ],
                ("12.60", "2.65", "15.25"),
                0,
            ),
            // UK 90 s at 1.20/min per second: 1.80. Net 13.00, VAT 2.73.
            invoice(
                "2026-000002",
                "A2",
                p,
                i,
                due,
                vec![
                    usage("voice", "United Kingdom", 1, 90, "1.80"),
                    usage("sms", "SMS", 2, 2, "0.20"),
                    usage("data", "Mobile data", 1, 1_048_576, "1.00"),
                    subscription(p),
                ],
                ("13.00", "2.73", "15.73"),
                0,
            ),
            // Germany 3 x 10 s at 0.05/min: 3 x 0.008333 = 0.024999 -> 0.02 (the line
            // sum is rounded, not each record). UK 24 s: 0.48. Net 10.50, VAT 2.205 ->
            // 2.21 (half up).
            invoice(
                "2026-000003",
                "A3",
                p,
                i,
                due,
                vec![
                    usage("voice", "Germany", 3, 30, "0.02"),
                    usage("voice", "Netherlands", 1, 0, "0.00"),
                    usage("voice", "United Kingdom", 1, 24, "0.48"),
                    subscription(p),
                ],
                ("10.50", "2.21", "12.71"),
                0,
            ),
        ],
    );
}

#[test]
fn duplicate_file_is_refused() {
    let ws = Ws::hand();
    let d = Daemon::start(&ws);
    let first = cdr_file(&[
        "d1,A1,voice,+31611111111,+31612345678,2026-10-05T10:00:00Z,60,0",
        "d2,A2,sms,+31622222222,+31612345678,2026-10-05T10:00:00Z,,",
        "d3,NOPE,sms,+31622222222,+31612345678,2026-10-05T10:00:00Z,,",
    ]);
    ws.drop_file("a.csv", &first);
    d.wait_until("a.csv in done/", || ws.names("done") == ["a.csv"]);
    let rejects_before = fs::read(ws.rejects("a.csv")).expect("rejects of a.csv");

    // The same content under another name.
    ws.drop_file("b.csv", &first);
    d.wait_until("b.csv in failed/", || {
        ws.names("failed") == ["b.csv", "b.csv.error"]
    });
    let err = fs::read_to_string(ws.failed().join("b.csv.error")).unwrap();
    let line = err.lines().next().unwrap_or("");
    assert!(line.starts_with("duplicate_file"), "{err:?}");
    assert!(
        line.contains("a.csv"),
        "the error should name the original file: {err:?}"
    );
    assert_eq!(fs::read(ws.failed().join("b.csv")).unwrap(), first);

    // The same name again, with new content.
    let second = cdr_file(&[
        "e1,A3,sms,+31633333333,+31612345678,2026-10-06T10:00:00Z,,",
        "e2,A3,fax,+31633333333,+31612345678,2026-10-06T10:00:00Z,,",
    ]);
    ws.drop_file("a.csv", &second);
    d.wait_until("the second a.csv in failed/", || {
        ws.names("failed") == ["a.csv", "a.csv.error", "b.csv", "b.csv.error"]
    });
    let err = fs::read_to_string(ws.failed().join("a.csv.error")).unwrap();
    assert!(err.starts_with("duplicate_file"), "{err:?}");
    assert_eq!(fs::read(ws.failed().join("a.csv")).unwrap(), second);
    assert_eq!(ws.names("done"), ["a.csv"]);
    assert_eq!(fs::read(ws.done().join("a.csv")).unwrap(), first);
    // Refused files leave the first file's rejects alone and write none of their own.
    assert_eq!(fs::read(ws.rejects("a.csv")).unwrap(), rejects_before);
    assert!(!ws.rejects("b.csv").exists());

    let m = d.metrics();
    assert_eq!(m.rated(), Some(2.0), "{}", m.text);
    assert_eq!(
        m.rejected_by_reason(),
        [("unknown_account".to_string(), 1.0)]
    );
    assert_eq!(m.get(FILES, &[("outcome", "done")]), Some(1.0));
    assert_eq!(m.get(FILES, &[("outcome", "duplicate")]), Some(2.0));
    assert_eq!(m.counter(FILES, &[("outcome", "failed")]), 0.0);
    assert_eq!(d.stop().code(), Some(0));

    // Only the first file is billed: 0.70 for A1, 0.10 for A2, nothing for A3.
    ws.close("2026-10", "2026-11-01").ok();
    let inv = ws.read_invoices("2026-10");
    let got: Vec<(String, (u64, u64, i64), String)> = inv
        .iter()
        .map(|i| {
            (
                i["account_id"].as_str().unwrap().to_owned(),
                usage_sums(i),
                i["net_total"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("A1".to_string(), (1, 60, 70), "10.70".to_string()),
            ("A2".to_string(), (1, 1, 10), "10.10".to_string()),
            ("A3".to_string(), (0, 0, 0), "10.00".to_string()),
        ]
    );
}

#[test]
fn bad_input_never_kills_the_daemon() {
    let ws = Ws::hand();
    let d = Daemon::start(&ws);
    let mut rng = tollgate::demo::synth::SplitMix64::new(0x5eed);

    // Random bytes including NULs: not a CDR file at all.
    let mut garbage: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
    garbage[0] = 0;
    garbage[100] = 0;
    // One garbage line inside a valid file: random bytes (with NULs) but no line
    // break, comma or quote, so it is one field -> malformed.
    let mut garbage_line: Vec<u8> = (0..300)
        .map(|_| rng.next_u64() as u8)
        .map(|b| {
            if matches!(b, b'\n' | b'\r' | b',' | b'"') {
                0
            } else {
                b
            }
        })
        .collect();
    garbage_line[7] = 0;
    // A 200 KB line that would rate as a 10-second call but for its length.
    let mut huge = b"m3,A1,voice,+31611111111,+31612345678,2026-10-05T10:00:00Z,10,".to_vec();
    huge.resize(200_000, b'9');
    let truncated = b"m6,A2,voice,+31622222222,+316123".to_vec();

    let mut mixed = cdr_file(&["m1,A1,sms,+31611111111,+31612345678,2026-10-05T10:00:00Z,,"]);
    mixed.extend_from_slice(&garbage_line);
    mixed.push(b'\n');
    mixed.extend_from_slice(b"m2,A2,sms,+31622222222,+31612345678,2026-10-05T10:00:00Z,,\n");
    mixed.extend_from_slice(&huge);
    mixed.push(b'\n');
    mixed.extend_from_slice(b"m4,A3,sms,+31633333333,+31612345678,2026-10-05T10:00:00Z,,\n");
    mixed.extend_from_slice(b"m5,A1,data,+31611111111,,2026-10-05T10:00:00Z,0,1024\n");
    mixed.extend_from_slice(&truncated); // no final line break

    let crlf = format!(
        "{}\r\n{}\r\n{}\r\n{}\r\n",
        common::CDR_HEADER,
        "c1,A1,voice,+31611111111,+31612345678,2026-10-05T10:00:00Z,60,0",
        "c2,A1,fax,+31611111111,+31612345678,2026-10-05T10:00:00Z,60,0",
        "c3,A2,sms,+31622222222,+31612345678,2026-10-05T10:00:00Z,,"
    );
    let bom = format!(
        "\u{feff}{}\n{}\n",
        common::CDR_HEADER,
        "b1,A3,sms,+31633333333,+31612345678,2026-10-05T10:00:00Z,,"
    );
    let quoted = cdr_file(&[
        r#""q1","A1","sms","+31611111111","+31612345678","2026-10-05T10:00:00Z","","""#,
        r#"q2,A1,sms,"+3161111,+31612345678,2026-10-05T10:00:00Z,,"#,
        "q3,A2,sms,+31622222222,+31612345678,2026-10-05T10:00:00Z,,",
    ]);
    let no_called =
        b"record_id,account_id,service,calling_number,start_time,duration_s,volume_bytes\n\
n1,A1,voice,+31611111111,2026-10-05T10:00:00Z,60,0\n"
            .to_vec();

    ws.drop_file("empty.csv", b"");
    ws.drop_file("header-only.csv", cdr_file(&[]).as_slice());
    ws.drop_file("garbage.bin", &garbage);
    ws.drop_file("mixed.csv", &mixed);
    ws.drop_file("crlf.csv", crlf.as_bytes());
    ws.drop_file("bom.csv", bom.as_bytes());
    ws.drop_file("quoted.csv", &quoted);
    ws.drop_file("no-called.csv", &no_called);

    let done = [
        "bom.csv",
        "crlf.csv",
        "empty.csv",
        "header-only.csv",
        "mixed.csv",
        "quoted.csv",
    ];
    let failed = [
        "garbage.bin",
        "garbage.bin.error",
        "no-called.csv",
        "no-called.csv.error",
    ];
    d.wait_until("every file in done/ or failed/", || {
        ws.names("done").len() + ws.names("failed").len() >= done.len() + failed.len()
    });
    assert_eq!(ws.names("done"), done);
    assert_eq!(ws.names("failed"), failed);
    assert!(d.alive(), "daemon died; log:\n{}", d.log());
    assert_eq!(d.get("/healthz"), (200, "ok\n".into()));

    let err = fs::read_to_string(ws.failed().join("no-called.csv.error")).unwrap();
    assert_eq!(err, "bad header: header lacks column `called_number`\n");
    let err = fs::read_to_string(ws.failed().join("garbage.bin.error")).unwrap();
    assert!(
        err.starts_with("bad header: ") || err.starts_with("header line"),
        "{err:?}"
    );
    assert_eq!(err.lines().count(), 1, "{err:?}");

    for name in ["empty.csv", "header-only.csv", "bom.csv"] {
        assert!(!ws.rejects(name).exists(), "{name} has no bad rows");
    }
    let mut huge_kept = huge.clone();
    huge_kept.truncate(65_536); // default max_line_bytes
    assert_eq!(
        read_rejects(&ws.rejects("mixed.csv")),
        vec![
            (3, "malformed".to_string(), garbage_line.clone()),
            (5, "malformed".to_string(), huge_kept),
            (8, "malformed".to_string(), truncated.clone()),
        ]
    );
    assert_eq!(
        read_rejects(&ws.rejects("crlf.csv")),
        vec![(
            3,
            "unknown_service".to_string(),
            b"c2,A1,fax,+31611111111,+31612345678,2026-10-05T10:00:00Z,60,0".to_vec()
        )]
    );
    assert_eq!(
        read_rejects(&ws.rejects("quoted.csv")),
        vec![(
            3,
            "malformed".to_string(),
            br#"q2,A1,sms,"+3161111,+31612345678,2026-10-05T10:00:00Z,,"#.to_vec()
        )]
    );

    // good rows: mixed 4, crlf 2, bom 1, quoted 2.
    let m = d.metrics();
    assert_eq!(m.rated(), Some(9.0), "{}", m.text);
    assert_eq!(
        m.rejected_by_reason(),
        [
            ("malformed".to_string(), 4.0),
            ("unknown_service".to_string(), 1.0)
        ]
    );
    assert_eq!(m.get(FILES, &[("outcome", "done")]), Some(6.0));
    assert_eq!(m.get(FILES, &[("outcome", "failed")]), Some(2.0));

    // Still working after all that.
    ws.drop_file(
        "after.csv",
        &cdr_file(&["z1,A3,sms,+31633333333,+31612345678,2026-10-07T10:00:00Z,,"]),
    );
    d.wait_until("after.csv in done/", || {
        ws.done().join("after.csv").exists()
    });
    assert_eq!(d.metrics().rated(), Some(10.0));
    assert_eq!(d.stop().code(), Some(0));

    // Every good row is billed: 10 records in total.
    ws.close("2026-10", "2026-11-01").ok();
    let q: u64 = ws
        .read_invoices("2026-10")
        .iter()
        .map(|i| usage_sums(i).0)
        .sum();
    assert_eq!(q, 10);
}

#[test]
fn ingest_refuses_while_daemon_runs() {
    let ws = Ws::hand();
    let file = ws.root.join("one.csv");
    fs::write(
        &file,
        cdr_file(&["i1,A1,sms,+31611111111,+31612345678,2026-10-05T10:00:00Z,,"]),
    )
    .unwrap();
    let d = Daemon::start(&ws);
    let out = ws.ingest(&[&file]);
    assert_ne!(out.code(), Some(0), "{out:#?}");
    assert!(out.stderr.contains("in use"), "{out:#?}");
    // A close goes through the running daemon's API, which needs a token.
    let out = ws.close("2026-10", "2026-11-01");
    assert_ne!(out.code(), Some(0), "{out:#?}");
    assert!(out.stderr.contains("set TOLLGATE_TOKEN"), "{out:#?}");
    assert!(!ws.invoices("2026-10").exists());
    // The daemon is unharmed by the attempts.
    assert_eq!(d.get("/healthz").0, 200);
    assert_eq!(d.stop().code(), Some(0));

    // Nothing was committed by the refused attempt: the file goes in now.
    let out = ws.ingest(&[&file]).ok();
    assert!(
        out.stdout.contains(&format!(
            "{}: committed seq 1: 1 lines, 1 rated, 0 rejected",
            file.display()
        )),
        "{out:#?}"
    );
}

#[test]
fn ingest_exit_codes() {
    let ws = Ws::hand();
    let good = ws.root.join("good.csv");
    fs::write(
        &good,
        cdr_file(&[
            "g1,A1,sms,+31611111111,+31612345678,2026-10-05T10:00:00Z,,",
            "g2,A2,voice,+31622222222,+31612345678,2026-10-05T10:00:00Z,60,0",
            "g3,A2,voice,+31622222222,+31612345678,2026-10-05T10:00:00Z,abc,0",
        ]),
    )
    .unwrap();
    let out = ws.ingest(&[&good]).ok();
    assert!(
        out.stdout.contains(&format!(
            "{}: committed seq 1: 3 lines, 2 rated, 1 rejected (rejects in {})",
            good.display(),
            ws.rejects("good.csv").display()
        )),
        "{out:#?}"
    );
    assert_eq!(
        read_rejects(&ws.rejects("good.csv")),
        vec![(
            4,
            "bad_usage".to_string(),
            b"g3,A2,voice,+31622222222,+31612345678,2026-10-05T10:00:00Z,abc,0".to_vec()
        )]
    );
    // ingest leaves the file where it is.
    assert!(good.exists());

    let out = ws.ingest(&[&good]);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(out.stderr.contains("duplicate_file"), "{out:#?}");

    let copy = ws.root.join("copy.csv");
    fs::copy(&good, &copy).unwrap();
    let out = ws.ingest(&[&copy]);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(out.stderr.contains("duplicate_file"), "{out:#?}");
    assert!(out.stderr.contains("good.csv"), "{out:#?}");

    // One good file and one missing: the good one commits, the exit code says failure.
    let other = ws.root.join("other.csv");
    fs::write(
        &other,
        cdr_file(&["o1,A3,sms,+31633333333,+31612345678,2026-10-05T10:00:00Z,,"]),
    )
    .unwrap();
    let missing = ws.root.join("missing.csv");
    let out = ws.ingest(&[&missing, &other]);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(out.stderr.contains("missing.csv"), "{out:#?}");
    assert!(
        out.stdout
            .contains("other.csv: committed seq 2: 1 lines, 1 rated, 0 rejected"),
        "{out:#?}"
    );

    let bad_header = ws.root.join("bad-header.csv");
    fs::write(&bad_header, "record_id,account_id\nx,A1\n").unwrap();
    let out = ws.ingest(&[&bad_header]);
    assert_eq!(out.code(), Some(1), "{out:#?}");
    assert!(out.stderr.contains("bad header"), "{out:#?}");

    // Exactly the two committed files are billed.
    ws.close("2026-10", "2026-11-01").ok();
    let q: Vec<u64> = ws
        .read_invoices("2026-10")
        .iter()
        .map(|i| usage_sums(i).0)
        .collect();
    assert_eq!(q, [1, 1, 1]);
}

#[test]
fn promtool_accepts_the_metrics() {
    let Some(promtool) = tools::require("promtool", "apt-get install prometheus") else {
        return;
    };
    let ws = Ws::hand();
    let d = Daemon::start(&ws);
    // Exercise every kind of series: counters with labels, the histograms, gauges.
    ws.drop_file(
        "p.csv",
        &cdr_file(&[
            "p1,A1,sms,+31611111111,+31612345678,2026-10-05T10:00:00Z,,",
            "p2,A1,fax,+31611111111,+31612345678,2026-10-05T10:00:00Z,,",
        ]),
    );
    ws.drop_file("q.csv", b"not,a,header\n");
    d.wait_until("files processed", || {
        ws.done().join("p.csv").exists() && ws.failed().join("q.csv").exists()
    });
    let (status, body) = d.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        body.contains("tollgate_file_processing_seconds_bucket"),
        "{body}"
    );

    let mut child = std::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(body.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}\nstdout: {}\nstderr: {}\nscrape:\n{body}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn cycle_close_is_forward_only_and_idempotent() {
    let ws = Ws::hand();
    let d = Daemon::start(&ws);
    ws.drop_file(
        "oct-1.csv",
        &cdr_file(&[
            "o1,A1,voice,+31611111111,+31612345678,2026-10-10T10:00:00Z,60,0",
            "o2,A2,sms,+31622222222,+31612345678,2026-10-11T10:00:00Z,,",
            // November usage: not billed when October closes.
            "o3,A3,sms,+31633333333,+31612345678,2026-11-03T10:00:00Z,,",
        ]),
    );
    d.wait_until("oct-1.csv in done/", || {
        ws.done().join("oct-1.csv").exists()
    });
    assert_eq!(d.stop().code(), Some(0));

    let out = ws.close("2026-10", "2026-11-01").ok();
    assert!(
        out.stdout.contains(
            "closed 2026-10: 3 invoices (2026-000001 .. 2026-000003), net 30.80 + VAT 6.47 = 37.27 (0 late records)"
        ),
        "{out:#?}"
    );
    let (p, i, due) = ("2026-10", "2026-11-01", "2026-11-15");
    assert_invoices(
        &ws.read_invoices(p),
        &[
            // 0.70 + 10.00 = 10.70, VAT 2.247 -> 2.25.
            invoice(
                "2026-000001",
                "A1",
                p,
                i,
                due,
                vec![
                    usage("voice", "Netherlands", 1, 60, "0.70"),
                    subscription(p),
                ],
                ("10.70", "2.25", "12.95"),
                0,
            ),
            // 0.10 + 10.00, VAT 2.121 -> 2.12.
            invoice(
                "2026-000002",
                "A2",
                p,
                i,
                due,
                vec![usage("sms", "SMS", 1, 1, "0.10"), subscription(p)],
                ("10.10", "2.12", "12.22"),
                0,
            ),
            invoice(
                "2026-000003",
                "A3",
                p,
                i,
                due,
                vec![subscription(p)],
                ("10.00", "2.10", "12.10"),
                0,
            ),
        ],
    );
    let october_files = ws.invoice_bytes("2026-10");

    // October records arrive after October was closed, with November ones.
    let d = Daemon::start(&ws);
    ws.drop_file(
        "late.csv",
        &cdr_file(&[
            "l1,A1,voice,+31611111111,+31612345678,2026-10-20T10:00:00Z,61,0",
            "l2,A1,sms,+31611111111,+31612345678,2026-10-21T10:00:00Z,,",
            // 2026-11-01 00:30 in Amsterdam: November, not late.
            "l3,A3,voice,+31633333333,+447700900123,2026-10-31T23:30:00Z,30,0",
            "l4,A2,sms,+31622222222,+31612345678,2026-11-02T09:00:00Z,,",
        ]),
    );
    d.wait_until("late.csv in done/", || ws.done().join("late.csv").exists());
    assert_eq!(d.metrics().rated(), Some(4.0));
    assert_eq!(d.stop().code(), Some(0));

    let out = ws.close("2026-11", "2026-12-01").ok();
    assert!(
        out.stdout.contains(
            "closed 2026-11: 3 invoices (2026-000004 .. 2026-000006), net 32.20 + VAT 6.76 = 38.96 (2 late records)"
        ),
        "{out:#?}"
    );
    let (p, i, due) = ("2026-11", "2026-12-01", "2026-12-15");
    assert_invoices(
        &ws.read_invoices(p),
        &[
            // Late: 61 s -> 120 s = 1.30, and an sms 0.10. Net 11.40, VAT 2.394 -> 2.39.
            invoice(
                "2026-000004",
                "A1",
                p,
                i,
                due,
                vec![
                    usage("voice", "Netherlands", 1, 120, "1.30"),
                    usage("sms", "SMS", 1, 1, "0.10"),
                    subscription(p),
                ],
                ("11.40", "2.39", "13.79"),
                2,
            ),
            invoice(
                "2026-000005",
                "A2",
                p,
                i,
                due,
                vec![usage("sms", "SMS", 1, 1, "0.10"), subscription(p)],
                ("10.10", "2.12", "12.22"),
                0,
            ),
            // UK 30 s at 0.02/s = 0.60, the sms of 3 November 0.10. Net 10.70, VAT
            // 2.247 -> 2.25.
            invoice(
                "2026-000006",
                "A3",
                p,
                i,
                due,
                vec![
                    usage("voice", "United Kingdom", 1, 30, "0.60"),
                    usage("sms", "SMS", 1, 1, "0.10"),
                    subscription(p),
                ],
                ("10.70", "2.25", "12.95"),
                0,
            ),
        ],
    );
    let november_files = ws.invoice_bytes("2026-11");

    // Closing again is idempotent and changes nothing.
    let out = ws.close("2026-10", "2026-11-20").ok();
    assert!(
        out.stdout.contains("2026-10 was already closed on"),
        "{out:#?}"
    );
    assert!(out.stdout.contains(": 3 invoices"), "{out:#?}");
    assert_eq!(ws.invoice_bytes("2026-10"), october_files);
    let out = ws.close("2026-11", "2026-12-20").ok();
    assert!(
        out.stdout.contains("2026-11 was already closed on"),
        "{out:#?}"
    );
    assert_eq!(ws.invoice_bytes("2026-11"), november_files);

    // A deleted invoice file is rewritten identically from the ledger.
    fs::remove_file(ws.invoices("2026-11").join("2026-000005.json")).unwrap();
    ws.close("2026-11", "2026-12-01").ok();
    assert_eq!(ws.invoice_bytes("2026-11"), november_files);

    // An earlier, never closed period is refused.
    let out = ws.close("2026-09", "2026-10-01");
    assert_ne!(out.code(), Some(0), "{out:#?}");
    assert!(out.stderr.contains("forward only"), "{out:#?}");
    assert!(!ws.invoices("2026-09").exists());

    // More late October usage, this time through `ingest`: one 6-second call to
    // Germany at 0.05/min is exactly 0.005000, which rounds half up to 0.01.
    let late2 = ws.root.join("late-2.csv");
    fs::write(
        &late2,
        cdr_file(&["h1,A1,voice,+31611111111,+4930123456,2026-10-25T10:00:00Z,6,0"]),
    )
    .unwrap();
    ws.ingest(&[&late2]).ok();

    // A new issue year restarts the numbering: 2027-000001.
    let out = ws.close("2026-12", "2027-01-04").ok();
    assert!(
        out.stdout.contains(
            "closed 2026-12: 3 invoices (2027-000001 .. 2027-000003), net 30.01 + VAT 6.30 = 36.31 (1 late records)"
        ),
        "{out:#?}"
    );
    let (p, i, due) = ("2026-12", "2027-01-04", "2027-01-18");
    assert_invoices(
        &ws.read_invoices(p),
        &[
            // Net 10.01, VAT 2.1021 -> 2.10.
            invoice(
                "2027-000001",
                "A1",
                p,
                i,
                due,
                vec![usage("voice", "Germany", 1, 6, "0.01"), subscription(p)],
                ("10.01", "2.10", "12.11"),
                1,
            ),
            invoice(
                "2027-000002",
                "A2",
                p,
                i,
                due,
                vec![subscription(p)],
                ("10.00", "2.10", "12.10"),
                0,
            ),
            invoice(
                "2027-000003",
                "A3",
                p,
                i,
                due,
                vec![subscription(p)],
                ("10.00", "2.10", "12.10"),
                0,
            ),
        ],
    );
}

#[test]
fn a_file_with_a_non_utf8_name_does_not_sit_in_the_inbox_forever() {
    // Spooled files are processed or refused; none may stay in inbox/ with no trace.
    use std::os::unix::ffi::OsStrExt;
    let ws = Ws::hand();
    let d = Daemon::start(&ws);
    let name = std::ffi::OsStr::from_bytes(b"cdr-\xff.csv");
    let bytes = cdr_file(&["u1,A1,sms,+31611111111,+31612345678,2026-10-05T10:00:00Z,,"]);
    fs::create_dir_all(ws.inbox()).unwrap();
    fs::write(ws.inbox().join(".cdr.tmp"), &bytes).unwrap();
    fs::rename(ws.inbox().join(".cdr.tmp"), ws.inbox().join(name)).unwrap();
    // A normal file dropped after it is processed, so the daemon has had many polls.
    ws.drop_file(
        "after.csv",
        &cdr_file(&["u2,A2,sms,+31622222222,+31612345678,2026-10-05T10:00:00Z,,"]),
    );
    d.wait_until("after.csv in done/", || {
        ws.done().join("after.csv").exists()
    });
    let t0 = std::time::Instant::now();
    while ws.inbox().join(name).exists() && t0.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(common::POLL);
    }
    assert!(
        !ws.inbox().join(name).exists(),
        "cdr-\\xff.csv is still in inbox/ after 10 s: not processed, not moved to failed/; \
         backlog gauge {:?}; daemon log:\n{}",
        d.metrics().get("tollgate_spool_backlog_files", &[]),
        d.log()
    );
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn rejects_and_line_numbers_stay_exact_across_many_chunks() {
    // 3000 rows over ~45 chunks of 4 KiB rated by 2 workers. Row i (1-based) is line
    // i + 1. Every 97th row has service `fax`; row 1500 is a valid 10 KB voice record
    // (longer than a chunk); row 2500 repeats the record id of row 10.
    let ws = Ws::hand();
    let d = Daemon::start(&ws);
    let mut rows = Vec::new();
    let mut want_rejects = Vec::new();
    let mut sms = [0u64; 3];
    for i in 1..=3000u64 {
        let acc = (i % 3) as usize;
        let id = if i == 2500 {
            "k10".to_string()
        } else {
            format!("k{i}")
        };
        let row = if i % 97 == 0 {
            want_rejects.push((i + 1, "unknown_service".to_string()));
            format!(
                "{id},A{},fax,+31600000000,+31612345678,2026-10-05T10:00:00Z,,",
                acc + 1
            )
        } else if i == 1500 {
            format!(
                "{id},A{},voice,+31600000000,+31612345678,2026-10-05T10:00:00Z,60,{}",
                acc + 1,
                "7".repeat(10_000)
            )
        } else {
            if i == 2500 {
                want_rejects.push((i + 1, "duplicate_record".to_string()));
            } else {
                sms[acc] += 1;
            }
            format!(
                "{id},A{},sms,+31600000000,+31612345678,2026-10-{:02}T10:00:00Z,,",
                acc + 1,
                1 + i % 28
            )
        };
        rows.push(row);
    }
    want_rejects.sort();
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    let file = cdr_file(&refs);
    assert!(file.len() > 40 * 4096);
    ws.drop_file("many.csv", &file);
    d.wait_until("many.csv in done/", || ws.done().join("many.csv").exists());

    let got: Vec<(u64, String)> = read_rejects(&ws.rejects("many.csv"))
        .into_iter()
        .map(|(line, reason, raw)| {
            // The record is the raw line of that number.
            assert_eq!(raw, rows[(line - 2) as usize].as_bytes(), "line {line}");
            (line, reason)
        })
        .collect();
    assert_eq!(got, want_rejects);
    assert_eq!(want_rejects.len(), 31);
    let m = d.metrics();
    assert_eq!(m.rated(), Some(2969.0));
    assert_eq!(
        m.rejected_by_reason(),
        [
            ("duplicate_record".to_string(), 1.0),
            ("unknown_service".to_string(), 30.0)
        ]
    );
    assert_eq!(d.stop().code(), Some(0));

    ws.close("2026-10", "2026-11-01").ok();
    let inv = ws.read_invoices("2026-10");
    let amount = |n: u64| format!("{}.{:02}", n * 10 / 100, n * 10 % 100);
    // Row 1500 belongs to account index 0 (1500 % 3), which is A1: NL 60 s = 0.70.
    assert_eq!(inv[0]["account_id"], "A1");
    assert_eq!(
        inv[0]["lines"][0],
        usage("voice", "Netherlands", 1, 60, "0.70")
    );
    for (k, acc) in ["A1", "A2", "A3"].iter().enumerate() {
        let inv = &inv[k];
        assert_eq!(inv["account_id"], *acc);
        let lines = inv["lines"].as_array().unwrap();
        let sms_line = lines
            .iter()
            .find(|l| l["service"] == "sms")
            .unwrap_or_else(|| panic!("{acc}: no sms line"));
        assert_eq!(
            *sms_line,
            usage("sms", "SMS", sms[k], sms[k], &amount(sms[k])),
            "{acc}"
        );
    }
}

#[test]
fn quote_names_the_row_and_the_charge() {
    let ws = Ws::hand();
    // UK, 1/1 increments, 1.20/min: 61 s -> 1.22; the row is line 3 of deck.csv.
    let out = run(&[
        "quote",
        "--config",
        ws.config_arg(),
        "--account",
        "A1",
        "--service",
        "voice",
        "--to",
        "0044201234567",
        "--at",
        "2026-10-05T10:00:00+02:00",
        "--usage",
        "61",
    ])
    .ok();
    let q: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(q["charge"], "1.220000");
    assert_eq!(q["billed"], 61);
    assert_eq!(q["month"], "2026-10");
    assert_eq!(q["number"], "44201234567");
    assert_eq!(q["row"]["line"], 3);
    assert_eq!(q["row"]["prefix"], "44");
    assert_eq!(q["row"]["destination"], "United Kingdom");
    assert_eq!(q["row"]["rate"], "1.2000");
    assert!(q["row"]["deck"].as_str().unwrap().ends_with("deck.csv"));
    // Zero usage costs nothing; sms ignores usage.
    let out = run(&[
        "quote",
        "--config",
        ws.config_arg(),
        "--account",
        "A1",
        "--service",
        "sms",
        "--to",
        "+31612345678",
        "--at",
        "2026-10-05T10:00:00Z",
        "--usage",
        "99",
    ])
    .ok();
    let q: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (q["charge"].as_str(), q["billed"].as_u64()),
        (Some("0.100000"), Some(1))
    );
    // Refusals carry the reject reason and never the full number.
    let out = run(&[
        "quote",
        "--config",
        ws.config_arg(),
        "--account",
        "NOPE",
        "--service",
        "voice",
        "--to",
        "0612345678",
        "--at",
        "2026-10-05T10:00:00Z",
        "--usage",
        "1",
    ]);
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("unknown_account"), "{}", out.stderr);
    let out = run(&[
        "quote",
        "--config",
        ws.config_arg(),
        "--account",
        "A1",
        "--service",
        "voice",
        "--to",
        "06123x5678",
        "--at",
        "2026-10-05T10:00:00Z",
        "--usage",
        "1",
    ]);
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("bad_number"), "{}", out.stderr);
    assert!(!out.stderr.contains("06123x5678"), "{}", out.stderr);
}

#[test]
fn config_and_tariff_errors_name_the_key_file_and_line() {
    let ws = Ws::hand_with("wrokers = 3");
    let out = run(&["tariff", "check", "--config", ws.config_arg()]);
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("wrokers"), "{}", out.stderr);
    let ws = Ws::hand();
    std::fs::write(
        ws.root.join("tariffs/deck.csv"),
        HAND_DECK.replace(
            "44,United Kingdom,voice,any,0,1.20",
            "44,United Kingdom,voise,any,0,1.20",
        ),
    )
    .unwrap();
    let out = run(&["tariff", "check", "--config", ws.config_arg()]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains("deck.csv:3:3: column `service`: `voise` is not voice, sms or data"),
        "{}",
        out.stderr
    );
    // The daemon refuses to start on the broken tariff, with the same message.
    let out = run(&["run", "--config", ws.config_arg()]);
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("deck.csv:3:3"), "{}", out.stderr);
}

#[test]
fn a_changed_tariff_is_compiled_and_used_for_later_files_only() {
    let ws = Ws::hand();
    // 60 s to the UK at 1.20/min = 1.20.
    let f1 = ws.root.join("one.csv");
    fs::write(
        &f1,
        cdr_file(&["u1,A1,voice,+31612345678,+442071234567,2026-10-05T10:00:00Z,60,"]),
    )
    .unwrap();
    ws.ingest(&[&f1]).ok();
    assert!(f1.exists(), "ingest leaves its input where it is");
    // The operator raises the UK rate to 2.40/min; the next run compiles a new archive.
    fs::write(
        ws.root.join("tariffs/deck.csv"),
        HAND_DECK.replace(
            "44,United Kingdom,voice,any,0,1.20",
            "44,United Kingdom,voice,any,0,2.40",
        ),
    )
    .unwrap();
    let f2 = ws.root.join("two.csv");
    fs::write(
        &f2,
        cdr_file(&["u2,A1,voice,+31612345678,+442071234567,2026-10-06T10:00:00Z,60,"]),
    )
    .unwrap();
    ws.ingest(&[&f2]).ok();
    let archives = fs::read_dir(ws.data().join("tariffs")).unwrap().count();
    assert_eq!(archives, 2, "one archive per tariff version");
    ws.close("2026-10", "2026-11-01").ok();
    let inv = ws.read_invoices("2026-10");
    let a1 = inv.iter().find(|i| i["account_id"] == "A1").unwrap();
    let uk = a1["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["destination"] == "United Kingdom")
        .unwrap();
    // The first call keeps the price it was rated with; the second has the new one.
    assert_eq!(
        (uk["quantity"].as_u64(), uk["amount"].as_str()),
        (Some(2), Some("3.60"))
    );
}

#[test]
fn edited_accounts_are_picked_up_and_a_broken_edit_is_refused() {
    let ws = Ws::hand();
    let d = Daemon::start(&ws);
    let write_accounts = |text: &str| {
        let tmp = ws.root.join(".accounts.csv.new");
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, ws.root.join("accounts.csv")).unwrap();
    };
    let row = |id: &str, acc: &str| {
        format!("{id},{acc},sms,+31612345678,0612345678,2026-10-05T10:00:00Z,,")
    };
    // A new customer is added while the daemon runs: their first CDRs are rated.
    write_accounts(&format!("{}A4,flat,,,,,,\n", common::HAND_ACCOUNTS));
    ws.drop_file("new.csv", &cdr_file(&[&row("n1", "A4")]));
    d.wait_until("new.csv in done/", || ws.names("done") == ["new.csv"]);
    assert!(!ws.rejects("new.csv").exists(), "A4 must be known");
    // A broken edit is refused: the accounts in service stay, A4 included.
    write_accounts(&format!(
        "{}A4,flat,,,,,,\nA5,flat,,,,,Netherlands,\n",
        common::HAND_ACCOUNTS
    ));
    ws.drop_file(
        "after-broken.csv",
        &cdr_file(&[&row("b1", "A4"), &row("b2", "A5")]),
    );
    d.wait_until("after-broken.csv in done/", || ws.names("done").len() == 2);
    assert_eq!(
        read_rejects(&ws.rejects("after-broken.csv")),
        vec![(
            3,
            "unknown_account".to_string(),
            row("b2", "A5").into_bytes()
        )]
    );
    let m = d.metrics();
    assert_eq!(
        m.get("tollgate_reference_reloads_total", &[("outcome", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        m.get("tollgate_reference_reloads_total", &[("outcome", "error")]),
        Some(1.0)
    );
    assert!(d.log().contains("reload refused"), "{}", d.log());
    // Fixed, then SIGHUP: reloaded without waiting for a file.
    write_accounts(&format!(
        "{}A4,flat,,,,,,\nA5,flat,,,,,NL,\n",
        common::HAND_ACCOUNTS
    ));
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(d.pid, libc::SIGHUP) };
    d.wait_until("the SIGHUP reload", || {
        d.metrics()
            .get("tollgate_reference_reloads_total", &[("outcome", "ok")])
            == Some(2.0)
    });
    assert_eq!(d.stop().code(), Some(0));
}
