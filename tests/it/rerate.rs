//! `tollgate rerate` and `POST /api/v1/cycles/{period}/rerate` against the real binary:
//! an open period's unbilled usage replaced (dry run writes nothing), a closed period
//! refused without `--correct` and corrected with it (credit notes and reissues for the
//! changed invoices only, exactly once), erased or rewritten files refused by name, the
//! API's roles, and a SIGKILL at a random instant leaving all of a rerate or none.
//!
//! The hand-made tariff prices (see `common::workspace`): NL voice 0.10 + 0.60 / 60 s in
//! 60 s steps, UK voice 1.20 / 60 s, SMS 0.10, no France row (`no_rate`); plan `flat` 10.00
//! a month, VAT 21 %. The corrected tariff: UK 0.90 / 60 s and France 0.30 / 60 s.

use std::fs;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{json, Value};

/// October: A1 a 120 s NL call (1.30) and an SMS (0.10), A2 a 60 s UK call (1.20), A3 a
/// 60 s call to France (no rate yet: rejected as `no_rate`).
const OCT: &[&str] = &[
    "r1,A1,voice,31611111111,31201234567,2026-10-05T10:00:00Z,120,",
    "r2,A2,voice,31622222222,442071234567,2026-10-06T10:00:00Z,60,",
    "r3,A3,voice,31633333333,33123456789,2026-10-07T10:00:00Z,60,",
    "r4,A1,sms,31611111111,31612345678,2026-10-08T10:00:00Z,,",
];

/// The corrected tariff: UK 1.20 -> 0.90 a minute, France added at 0.30 a minute.
fn correct_tariff(ws: &Ws) {
    let deck = ws.root.join("tariffs/deck.csv");
    let text = fs::read_to_string(&deck).unwrap();
    let fixed = text.replace(
        "44,United Kingdom,voice,any,0,1.20,",
        "44,United Kingdom,voice,any,0,0.90,",
    );
    assert_ne!(fixed, text, "the UK row is in the hand deck");
    fs::write(
        &deck,
        format!("{fixed}33,France,voice,any,0,0.30,60,1,1,\n"),
    )
    .unwrap();
}

/// A hand workspace with October ingested.
fn october(extra: &str) -> Ws {
    let ws = Ws::hand_with(extra);
    let src = ws.root.join("oct.csv");
    fs::write(&src, cdr_file(OCT)).unwrap();
    let out = ws.ingest(&[&src]).ok();
    assert!(
        out.stdout.contains("4 lines, 3 rated, 1 rejected"),
        "{}",
        out.stdout
    );
    ws
}

fn rerate(ws: &Ws, extra: &[&str]) -> Out {
    let mut args = vec!["rerate", "--config", ws.config_arg(), "--period", "2026-10"];
    args.extend_from_slice(extra);
    run(&args)
}

/// The rated charge of an account's unbilled October usage (`tollgate usage`).
fn rated(ws: &Ws, account: &str) -> String {
    let out = run(&[
        "usage",
        "--config",
        ws.config_arg(),
        "--account",
        account,
        "--period",
        "2026-10",
    ])
    .ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    v["ratedCharge"]["value"].as_str().unwrap().to_owned()
}

/// The files of October's invoice directory.
fn documents(ws: &Ws) -> Vec<String> {
    list_names(&ws.invoices("2026-10"))
}

#[test]
fn open_period_usage_is_replaced_and_a_dry_run_writes_nothing() {
    let ws = october("");
    correct_tariff(&ws);
    assert_eq!(rated(&ws, "A2"), "1.200000");
    assert_eq!(rated(&ws, "A3"), "0.000000");

    let dry = rerate(&ws, &["--dry-run"]).ok();
    let lines: Vec<&str> = dry.stdout.lines().collect();
    assert!(
        lines[0].starts_with("rerate 2026-10 (open) against tariff ")
            && lines[0].ends_with(": 1 files, 4 records of the period (dry run: nothing written)"),
        "{}",
        dry.stdout
    );
    assert_eq!(
        &lines[1..],
        [
            "A2: 1 records 1.200000 -> 1 records 0.900000",
            "A3: 0 records 0.000000 -> 1 records 0.300000",
        ],
        "{}",
        dry.stdout
    );
    // Nothing written.
    assert_eq!(rated(&ws, "A2"), "1.200000");
    assert_eq!(rated(&ws, "A3"), "0.000000");

    let done = rerate(&ws, &["--json"]).ok();
    let v: Value = serde_json::from_str(&done.stdout).unwrap();
    assert_eq!(v["state"], "open");
    assert_eq!(v["dryRun"], false);
    assert_eq!(v["records"], 4);
    assert_eq!(
        v["accounts"],
        json!([
            {"accountId": "A2",
             "old": {"records": 1, "charge": {"unit": "EUR", "value": "1.200000"}},
             "new": {"records": 1, "charge": {"unit": "EUR", "value": "0.900000"}}},
            {"accountId": "A3",
             "old": {"records": 0, "charge": {"unit": "EUR", "value": "0.000000"}},
             "new": {"records": 1, "charge": {"unit": "EUR", "value": "0.300000"}}}
        ])
    );
    assert_eq!(v["corrections"], json!([]));
    let version = v["tariffVersion"].as_str().unwrap();
    assert_eq!(version.len(), 64, "{version}");
    assert_eq!(rated(&ws, "A1"), "1.400000");
    assert_eq!(rated(&ws, "A2"), "0.900000");
    assert_eq!(rated(&ws, "A3"), "0.300000");

    // Twice: nothing changes.
    let again = rerate(&ws, &[]).ok();
    assert!(
        again
            .stdout
            .ends_with("\nno account's unbilled usage of the period changed\n"),
        "{}",
        again.stdout
    );

    // The close bills the re-rated usage: A2 10.00 + 0.90, A3 10.00 + 0.30 (the call that
    // was rejected before), VAT 21 %.
    ws.close("2026-10", "2026-11-01").ok();
    let inv = ws.read_invoices("2026-10");
    let totals: Vec<(&str, &str, &str)> = inv
        .iter()
        .map(|i| {
            (
                i["account_id"].as_str().unwrap(),
                i["net_total"].as_str().unwrap(),
                i["total"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        totals,
        [
            ("A1", "11.40", "13.79"),
            ("A2", "10.90", "13.19"),
            ("A3", "10.30", "12.46")
        ]
    );
}

#[test]
fn closed_period_is_refused_without_correct_and_corrected_once_with_it() {
    let ws = october("");
    ws.close("2026-10", "2026-11-01").ok();
    correct_tariff(&ws);
    let before = documents(&ws);
    assert_eq!(before.len(), 12, "{before:?}"); // 3 invoices: json, pdf, qr.svg, xml

    let refused = rerate(&ws, &[]);
    assert_eq!(refused.code(), Some(2), "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("period 2026-10 is closed: its invoices are final; rerun with --correct"),
        "{}",
        refused.stderr
    );

    let dry = rerate(
        &ws,
        &["--correct", "--dry-run", "--issue-date", "2026-11-15"],
    )
    .ok();
    assert!(
        dry.stdout.contains(
            "\ninvoice 2026-000002 (A2): would be credited and reissued: 13.55 -> 13.19\ninvoice 2026-000003 (A3): would be credited and reissued: 12.10 -> 12.46\n2 invoices corrected, 1 unchanged\n"
        ),
        "{}",
        dry.stdout
    );
    assert_eq!(documents(&ws), before, "a dry run wrote documents");

    let out = rerate(&ws, &["--correct", "--issue-date", "2026-11-15", "--json"]).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let version = v["tariffVersion"].as_str().unwrap().to_owned();
    assert_eq!(v["state"], "closed");
    assert_eq!(
        v["corrections"],
        json!([
            {"accountId": "A2", "billNo": "2026-000002",
             "oldAmount": {"unit": "EUR", "value": "13.55"},
             "creditNoteBillNo": "CN-2026-000001", "reissuedBillNo": "2026-000004",
             "newAmount": {"unit": "EUR", "value": "13.19"}},
            {"accountId": "A3", "billNo": "2026-000003",
             "oldAmount": {"unit": "EUR", "value": "12.10"},
             "creditNoteBillNo": "CN-2026-000002", "reissuedBillNo": "2026-000005",
             "newAmount": {"unit": "EUR", "value": "12.46"}}
        ])
    );
    assert_eq!(v["unchanged"], json!(["2026-000001"]));
    assert_eq!(v["skipped"], json!([]));
    // Documents: JSON, UBL and PDF of two credit notes and two corrected invoices.
    let dir = ws.invoices("2026-10");
    for n in [
        "CN-2026-000001",
        "CN-2026-000002",
        "2026-000004",
        "2026-000005",
    ] {
        for ext in ["json", "xml", "pdf"] {
            assert!(dir.join(format!("{n}.{ext}")).exists(), "{n}.{ext}");
        }
    }
    let doc = |n: &str| -> Value {
        serde_json::from_slice(&fs::read(dir.join(format!("{n}.json"))).unwrap()).unwrap()
    };
    let reason = format!("rerate of 2026-10 against tariff {version}");
    let cn = doc("CN-2026-000002");
    assert_eq!(cn["document_type"], "credit_note");
    assert_eq!(cn["credited_invoice"]["number"], "2026-000003");
    assert_eq!(cn["total"], "-12.10");
    assert_eq!(cn["reason"], reason.as_str());
    let re = doc("2026-000005");
    assert_eq!(re["replaces"]["number"], "2026-000003");
    assert_eq!(re["reason"], reason.as_str());
    assert_eq!(re["issue_date"], "2026-11-15");
    assert_eq!(
        re["lines"],
        json!([
            {"kind": "usage", "service": "voice", "destination": "France", "band": "any",
             "quantity": 1, "usage": 60, "unit": "seconds", "amount": "0.30",
             "vat_category": "S", "vat_rate": "21"},
            {"kind": "subscription", "plan": "flat", "description": "Subscription flat, 2026-10",
             "amount": "10.00", "vat_category": "S", "vat_rate": "21"}
        ])
    );
    assert_eq!(
        (&re["net_total"], &re["vat_total"], &re["total"]),
        (&json!("10.30"), &json!("2.16"), &json!("12.46"))
    );
    assert_eq!(
        re["usage_by_day"],
        json!([{"date": "2026-10-07", "records": 1, "charge": "0.300000"}])
    );
    let a2 = doc("2026-000004");
    assert_eq!(a2["lines"][0]["amount"], "0.90");
    assert_eq!(a2["total"], "13.19");

    // Ledger entries: the original, its credit note, the corrected invoice.
    let st = run(&[
        "account",
        "statement",
        "A2",
        "--config",
        ws.config_arg(),
        "--date",
        "2026-11-20",
        "--json",
    ])
    .ok();
    let st: Value = serde_json::from_str(&st.stdout).unwrap();
    let entries: Vec<(String, String, String)> = st["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["billNo"].as_str().unwrap().to_owned(),
                e["amount"]["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let e = |k: &str, b: &str, a: &str| (k.to_owned(), b.to_owned(), a.to_owned());
    assert_eq!(
        entries,
        [
            e("invoice", "2026-000002", "13.55"),
            e("credit_note", "2026-000002", "-13.55"),
            e("invoice", "2026-000004", "13.19")
        ]
    );
    assert_eq!(st["balance"]["value"], "13.19");

    // Twice: the corrected invoices are what the tariff gives now; nothing is issued.
    let files = documents(&ws);
    let again = rerate(&ws, &["--correct", "--issue-date", "2026-11-15", "--json"]).ok();
    let v: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(v["corrections"], json!([]));
    assert_eq!(
        v["unchanged"],
        json!(["2026-000001", "2026-000004", "2026-000005"])
    );
    assert_eq!(documents(&ws), files);
}

#[test]
fn a_file_erased_or_rewritten_is_refused_by_name() {
    // Removed from done/ (as retention does).
    let ws = october("");
    ws.close("2026-10", "2026-11-01").ok();
    fs::remove_file(ws.done().join("oct.csv")).unwrap();
    let out = rerate(&ws, &["--correct"]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains(
            "file oct.csv is no longer in done/ (erased by retention or an erasure request): period 2026-10 cannot be rerated"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(documents(&ws).len(), 12);

    // Rewritten by a privacy erasure of A3.
    let ws = october("");
    run(&[
        "privacy",
        "erase",
        "--config",
        ws.config_arg(),
        "--account",
        "A3",
    ])
    .ok();
    let out = rerate(&ws, &[]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("file oct.csv was rewritten by a privacy erasure"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_api_route_needs_an_operator_token() {
    let ws = october("api_tokens_file = \"tokens.csv\"\n");
    let token = |name: &str, role: &str| ws.add_token(name, role);
    let op = token("ops", "operator");
    let viewer = token("dash", "viewer");
    correct_tariff(&ws);
    let d = Daemon::start(&ws);
    let post = |tok: &str, body: Value| {
        let auth = format!("Bearer {tok}");
        http_request(
            d.addr,
            "POST",
            "/api/v1/cycles/2026-10/rerate",
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
    };
    let usage = |account: &str| -> String {
        let (status, body) = http_get_auth(
            d.addr,
            &format!("/api/v1/accounts/{account}/usage?period=2026-10"),
            Some(&op),
        );
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["ratedCharge"]["value"].as_str().unwrap().to_owned()
    };
    let r = post(&viewer, json!({}));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(usage("A2"), "1.200000");

    let r = post(&op, json!({"dryRun": true, "accounts": ["A2"]}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["dryRun"], true);
    assert_eq!(v["records"], 1);
    assert_eq!(v["accounts"][0]["accountId"], "A2");
    assert_eq!(v["accounts"][0]["new"]["charge"]["value"], "0.900000");
    assert_eq!(v["accounts"].as_array().unwrap().len(), 1);

    let r = post(&op, json!({"unknown": 1}));
    assert_eq!(r.status, 422, "{}", r.text());

    assert_eq!(usage("A2"), "1.200000");

    let r = post(&op, json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["accounts"].as_array().unwrap().len(), 2);
    assert_eq!(usage("A2"), "0.900000");
    // The CLI through the daemon (TOLLGATE_TOKEN) sees the change made.
    let out = run_env(
        &["rerate", "--config", ws.config_arg(), "--period", "2026-10"],
        &[("TOLLGATE_TOKEN", &op)],
    )
    .ok();
    assert!(
        out.stdout
            .ends_with("\nno account's unbilled usage of the period changed\n"),
        "{}",
        out.stdout
    );
    d.stop();
    assert_eq!(rated(&ws, "A2"), "0.900000");
    assert_eq!(rated(&ws, "A3"), "0.300000");
}

/// Runs `rerate --correct` in a child and SIGKILLs it after `delay` (if still running).
/// Returns true when the kill landed.
fn rerate_killed_after(ws: &Ws, delay: Duration) -> bool {
    let mut child = std::process::Command::new(bin())
        .args([
            "rerate",
            "--config",
            ws.config_arg(),
            "--period",
            "2026-09",
            "--correct",
            "--issue-date",
            "2026-10-20",
        ])
        .env_remove("RUST_LOG")
        .env_remove("TOLLGATE_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    running
}

/// The credit notes and corrected invoices a dry run would issue now.
fn pending_corrections(ws: &Ws) -> usize {
    let out = run(&[
        "rerate",
        "--config",
        ws.config_arg(),
        "--period",
        "2026-09",
        "--correct",
        "--dry-run",
        "--json",
    ])
    .ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    v["corrections"].as_array().unwrap().len()
}

#[test]
fn sigkill_during_rerate_applies_all_of_it_or_none() {
    use tollgate::demo::synth::{write_cdrs, CdrBatch, Spec, SplitMix64};
    let tmp = tempfile::Builder::new()
        .prefix("tollgate-crash-rerate-")
        .tempdir()
        .unwrap();
    let spec = Spec {
        seed: 17,
        accounts: 1_000,
        prefixes: 300,
        bad_ratio_ppm: 0,
    };
    let src = tmp.path().join("cdrs-2026-09.csv");
    {
        let mut w = std::io::BufWriter::new(fs::File::create(&src).unwrap());
        write_cdrs(
            &mut w,
            &spec,
            &CdrBatch {
                year: 2026,
                month: 9,
                records: 20_000,
                file_tag: "rerate".into(),
            },
        )
        .unwrap();
    }
    // A closed September, then the plan fee of one plan corrected: its invoices change.
    let prepare = |name: &str| {
        let ws = Ws::synth(&tmp.path().join(name), &spec, "");
        ws.ingest(&[src.as_path()]).ok();
        ws.close("2026-09", "2026-10-01").ok();
        let plans = ws.root.join("tariffs/plans.toml");
        let text = fs::read_to_string(&plans).unwrap();
        let fixed = text.replacen("monthly_fee = \"12.50\"", "monthly_fee = \"11.50\"", 1);
        assert_ne!(fixed, text);
        fs::write(&plans, fixed).unwrap();
        ws
    };
    let control = prepare("control");
    let want_n = pending_corrections(&control);
    assert!(want_n > 50, "{want_n} invoices to correct");
    let t0 = Instant::now();
    run(&[
        "rerate",
        "--config",
        control.config_arg(),
        "--period",
        "2026-09",
        "--correct",
        "--issue-date",
        "2026-10-20",
    ])
    .ok();
    let seconds = t0.elapsed().as_secs_f64();
    let want = control.invoice_bytes("2026-09");
    assert_eq!(pending_corrections(&control), 0);

    let seed: u64 = std::env::var("TOLLGATE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let mut rng = SplitMix64::new(seed);
    println!("crash-rerate: TOLLGATE_CRASH_SEED={seed}; control rerate took {seconds:.2} s");
    let mut landed = 0;
    for run_no in 0..3 {
        let ws = prepare(&format!("kill-{run_no}"));
        // Most of a run is writing the documents after the commit: two runs aim at the
        // first 15 % (re-rating, the batch), one anywhere.
        let span = if run_no < 2 { 0.15 } else { 1.1 };
        let delay = Duration::from_secs_f64(seconds * span * rng.unit());
        let killed = rerate_killed_after(&ws, delay);
        landed += killed as u32;
        // All or nothing: every correction is still to be made, or none.
        let left = pending_corrections(&ws);
        println!(
            "crash-rerate: run {run_no}: SIGKILL after {:.0} ms ({}), corrections left {left}",
            delay.as_secs_f64() * 1e3,
            if killed { "killed" } else { "had finished" }
        );
        assert!(
            left == 0 || left == want_n,
            "run {run_no}: {left} of {want_n} corrections left: a partial rerate"
        );
        // The re-run completes it (or finds nothing to do); the documents are the
        // control's, byte for byte, each number once.
        run(&[
            "rerate",
            "--config",
            ws.config_arg(),
            "--period",
            "2026-09",
            "--correct",
            "--issue-date",
            "2026-10-20",
        ])
        .ok();
        let got = ws.invoice_bytes("2026-09");
        let names =
            |v: &[(String, Vec<u8>)]| -> Vec<String> { v.iter().map(|f| f.0.clone()).collect() };
        assert_eq!(names(&got), names(&want), "run {run_no}");
        for ((n, a), (_, b)) in got.iter().zip(&want) {
            assert!(a == b, "run {run_no}: {n} differs from the control");
        }
        drop(ws);
        let _ = fs::remove_dir_all(tmp.path().join(format!("kill-{run_no}")));
    }
    assert!(landed > 0, "no SIGKILL landed during a rerate");
}
