//! The invoice PDF as a file (issue 15, section 4): a Polish consumer's name and address
//! print and read back exactly (an embedded Unicode font, not WinAnsi), and every PDF of a
//! close is a PDF/A-3 hybrid e-invoice that offline checkers accept: `qpdf --check`,
//! `pdfinfo` (PDF 1.7, the PDF/A-3B identification in its XMP), `pdffonts` (every font
//! embedded), `pdfdetach` (the UBL `.xml` beside it, byte for byte, as associated file).
//! veraPDF, the PDF/A validator, does not install offline here (no Debian or PyPI
//! package carries it).

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::tools;
use crate::common::{cdr_file, Ws};

const ACCOUNTS: &str = "\
account_id,plan,name,street,postcode,city,country,email,language,customer_type,vat_id,peppol_endpoint,itemised,masking
A1,flat,Alice Jansen,Damrak 1,1012 LG,Amsterdam,NL,alice@example.com,nl,,,,yes,last4
P1,flat,Zoë Dvořák-Łukasiewicz,ul. Świętokrzyska 14,00-116,Warszawa,PL,zoe@example.pl,en,consumer,,,,
";

const CDRS: &[&str] = &[
    "a1,A1,voice,+31611111111,+31612345678,2026-10-05T10:00:00Z,60,0",
    "a2,A1,sms,+31611111111,+31612345678,2026-10-06T10:00:00Z,,",
    "p1,P1,voice,+48221234567,+31612345678,2026-10-05T11:00:00Z,60,0",
    "p2,P1,sms,+48221234567,+31612345678,2026-10-07T11:00:00Z,,",
];

const POPPLER: &str = "apt-get install poppler-utils";
const QPDF: &str = "apt-get install qpdf";

/// Runs `tool args…`, asserting that it succeeded; its stdout.
fn run(tool: &Path, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?}: {}{}",
        tool.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn polish_names_print_and_every_pdf_is_a_pdf_a3_with_its_ubl() {
    let ws = Ws::hand();
    fs::write(ws.root.join("accounts.csv"), ACCOUNTS).unwrap();
    let mut cfg = fs::read_to_string(&ws.config).unwrap();
    cfg.push_str("\n[billing.vat_rates]\nPL = \"23\"\n");
    fs::write(&ws.config, cfg).unwrap();
    let f = ws.root.join("oct.csv");
    fs::write(&f, cdr_file(CDRS)).unwrap();
    ws.ingest(&[&f]).ok();
    let out = ws.close("2026-10", "2026-11-01").ok();
    assert!(
        out.stdout.contains("closed 2026-10: 2 invoices"),
        "{out:#?}"
    );
    let dir = ws.invoices("2026-10");
    let p1 = ws
        .read_invoices("2026-10")
        .into_iter()
        .find(|d| d["account_id"] == "P1")
        .expect("P1's invoice");
    let p1 = p1["number"].as_str().unwrap().to_owned();

    // The names read back exactly: each is one cell of `pdftotext -layout`'s columns.
    if let Some(pdftotext) = tools::require("pdftotext", POPPLER) {
        let pdf = dir.join(format!("{p1}.pdf"));
        let text = run(&pdftotext, &["-layout", pdf.to_str().unwrap(), "-"]);
        let cells: Vec<&str> = text
            .lines()
            .flat_map(|l| l.split("  ").map(str::trim).filter(|c| !c.is_empty()))
            .collect();
        for want in [
            "Zoë Dvořák-Łukasiewicz",
            "ul. Świętokrzyska 14",
            "00-116 Warszawa PL",
            "Account P1",
        ] {
            assert!(cells.contains(&want), "{want:?} not a cell of:\n{text}");
        }
        assert!(!text.contains('?'), "a character printed as '?':\n{text}");
    }

    let pdfs: Vec<String> = crate::common::list_names(&dir)
        .into_iter()
        .filter(|n| n.ends_with(".pdf"))
        .collect();
    assert_eq!(pdfs.len(), 2, "{pdfs:?}");
    for name in &pdfs {
        let pdf = dir.join(name);
        let path = pdf.to_str().unwrap();
        let number = name.trim_end_matches(".pdf");
        if let Some(qpdf) = tools::require("qpdf", QPDF) {
            let check = run(&qpdf, &["--check", path]);
            assert!(
                check.contains("No syntax or stream encoding errors found"),
                "qpdf --check {name}:\n{check}"
            );
            // The UBL is an associated file of the document (/AF, /AFRelationship).
            let qdf = ws.root.join(format!("{number}.qdf"));
            run(
                &qpdf,
                &[
                    "--qdf",
                    "--object-streams=disable",
                    path,
                    qdf.to_str().unwrap(),
                ],
            );
            let raw = String::from_utf8_lossy(&fs::read(&qdf).unwrap()).into_owned();
            for want in [
                "/AFRelationship /Alternative",
                "/Subtype /text#2fxml",
                "/AF [",
            ] {
                assert!(raw.contains(want), "{want} not in {name}");
            }
        }
        if let Some(pdfinfo) = tools::require("pdfinfo", POPPLER) {
            let info = run(&pdfinfo, &[path]);
            assert!(
                info.lines()
                    .any(|l| l.starts_with("PDF version:") && l.ends_with("1.7")),
                "{info}"
            );
            assert!(
                info.contains("Page size:       595 x 842 pts (A4)"),
                "{info}"
            );
            let xmp: String = run(&pdfinfo, &["-meta", path]).split_whitespace().collect();
            assert!(
                xmp.contains("<pdfaid:part>3</pdfaid:part>")
                    && xmp.contains("<pdfaid:conformance>B</pdfaid:conformance>"),
                "no PDF/A-3B identification in {name}'s XMP: {xmp}"
            );
        }
        if let Some(pdffonts) = tools::require("pdffonts", POPPLER) {
            let fonts = run(&pdffonts, &[path]);
            let rows: Vec<&str> = fonts.lines().skip(2).collect();
            assert!(!rows.is_empty(), "{fonts}");
            for row in rows {
                // name, type…, encoding, emb, sub, uni, object ID
                let cols: Vec<&str> = row.split_whitespace().collect();
                let n = cols.len();
                assert!(
                    n >= 7 && cols[n - 5..n - 2] == ["yes", "yes", "yes"],
                    "a font not embedded as a subset with a Unicode map in {name}:\n{fonts}"
                );
                assert!(cols[0].contains("+LiberationSans"), "{fonts}");
            }
        }
        if let Some(pdfdetach) = tools::require("pdfdetach", POPPLER) {
            let list = run(&pdfdetach, &["-list", path]);
            assert_eq!(
                list,
                format!("1 embedded files\n1: {number}.xml\n"),
                "{name}"
            );
            let out = ws.root.join(format!("{number}.detached.xml"));
            run(
                &pdfdetach,
                &["-save", "1", "-o", out.to_str().unwrap(), path],
            );
            assert!(
                fs::read(&out).unwrap() == fs::read(dir.join(format!("{number}.xml"))).unwrap(),
                "the UBL in {name} differs from {number}.xml"
            );
        }
    }
    println!(
        "OK: {} PDFs pass qpdf --check, pdfinfo, pdffonts, pdfdetach",
        pdfs.len()
    );
}

/// Quantities in the customer's terms (issue 15, section 4): the PDF prints call time as
/// h:mm:ss, data in MB/GB with the language's decimal sign and counts with their noun
/// (nl: "gesprekken", "sms'jes"; en: "call", "SMS"), on the usage lines and in the annex;
/// the JSON keeps the exact units.
#[test]
fn quantities_print_in_the_customers_terms() {
    let ws = Ws::hand();
    fs::write(
        ws.root.join("accounts.csv"),
        "\
account_id,plan,name,street,postcode,city,country,email,language,itemised,masking
N1,flat,Noor de Vries,Damrak 1,1012 LG,Amsterdam,NL,noor@example.nl,nl,yes,last4
E1,flat,Emma Smith,Damrak 2,1012 LG,Amsterdam,NL,emma@example.nl,en,,
",
    )
    .unwrap();
    let f = ws.root.join("oct.csv");
    fs::write(
        &f,
        cdr_file(&[
            // UK calls are billed per second, data per 1024 bytes
            "n1,N1,voice,+31611111111,+447700900123,2026-10-05T10:00:00Z,3725,",
            "n2,N1,voice,+31611111111,+447700900123,2026-10-06T10:00:00Z,59,",
            "n3,N1,sms,+31611111111,+31612345678,2026-10-06T11:00:00Z,,",
            "n4,N1,sms,+31611111111,+31612345678,2026-10-06T12:00:00Z,,",
            "n5,N1,data,+31611111111,,2026-10-07T10:00:00Z,,1499999232",
            "e1,E1,voice,+31622222222,+447700900123,2026-10-05T10:00:00Z,60,",
            "e2,E1,sms,+31622222222,+31612345678,2026-10-06T11:00:00Z,,",
            "e3,E1,data,+31622222222,,2026-10-07T10:00:00Z,,850000896",
        ]),
    )
    .unwrap();
    ws.ingest(&[&f]).ok();
    let out = ws.close("2026-10", "2026-11-01").ok();
    assert!(
        out.stdout.contains("closed 2026-10: 2 invoices"),
        "{out:#?}"
    );
    let docs = ws.read_invoices("2026-10");
    let number = |acc: &str| {
        docs.iter().find(|d| d["account_id"] == acc).unwrap()["number"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // The JSON keeps the exact units.
    let n1 = docs.iter().find(|d| d["account_id"] == "N1").unwrap();
    let voice = n1["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["service"] == "voice")
        .unwrap();
    assert_eq!(
        (&voice["quantity"], &voice["usage"], &voice["unit"]),
        (
            &serde_json::json!(2),
            &serde_json::json!(3784),
            &serde_json::json!("seconds")
        )
    );
    let Some(pdftotext) = tools::require("pdftotext", POPPLER) else {
        return;
    };
    let text = |acc: &str| {
        let pdf = ws.invoices("2026-10").join(format!("{}.pdf", number(acc)));
        run(&pdftotext, &["-layout", pdf.to_str().unwrap(), "-"])
    };
    let (nl, en) = (text("N1"), text("E1"));
    for want in [
        // usage lines
        "Bellen United Kingdom: 2 gesprekken, 1:03:04",
        "SMS: 2 sms'jes",
        "Data Mobile data: 1 sessie, 1,5 GB",
        // the annex: per record, and exact charges with a decimal comma
        "Regel 1: Bellen United Kingdom",
        "1:02:05",
        "0:00:59",
        "EUR 74,500000",
        "1 sms",
        "Som: EUR 75,680000 = EUR 75,68",
    ] {
        assert!(nl.contains(want), "N1's PDF lacks {want:?}:\n{nl}");
    }
    for want in [
        "Calls United Kingdom: 1 call, 0:01:00",
        "SMS: 1 SMS",
        "Data Mobile data: 1 session, 850 MB",
    ] {
        assert!(en.contains(want), "E1's PDF lacks {want:?}:\n{en}");
    }
    for unwanted in ["seconds", "bytes", "records", "messages"] {
        assert!(!nl.contains(unwanted), "{unwanted:?} in N1's PDF:\n{nl}");
        assert!(!en.contains(unwanted), "{unwanted:?} in E1's PDF:\n{en}");
    }
}
