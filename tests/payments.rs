//! Getting paid, end to end through the real binary: invoices from a cycle close, a
//! camt.053 with exact, partial, over- and unmatched payments, idempotent and refused
//! imports, suspense assignment, a refund, a direct-debit run (pain.008 validated against
//! the official XSD) with one return, reminders to a local SMTP server, a consumer's
//! 14-day letter then collection costs on the next invoice, a business's interest and
//! compensation — balances checked to the cent at each step.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::*;

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

fn camt(kind: &str, id: &str, iban: &str, entries: &[String]) -> String {
    let (body, part) = if kind == "053" {
        ("BkToCstmrStmt", "Stmt")
    } else {
        ("BkToCstmrDbtCdtNtfctn", "Ntfctn")
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Document xmlns=\"urn:iso:std:iso:20022:tech:xsd:camt.{kind}.001.02\">\
         <{body}><GrpHdr><MsgId>{id}</MsgId><CreDtTm>2026-10-20T18:00:00</CreDtTm></GrpHdr>\
         <{part}><Id>{id}</Id><CreDtTm>2026-10-20T18:00:00</CreDtTm>\
         <Acct><Id><IBAN>{iban}</IBAN></Id><Ccy>EUR</Ccy></Acct>{}</{part}></{body}></Document>\n",
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
    statement(ws, account, date)["balance"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// (invoice, open, status) of an account's items.
fn items(ws: &Ws, account: &str, date: &str) -> Vec<(String, String, String)> {
    statement(ws, account, date)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["invoice"].as_str().unwrap().to_owned(),
                i["open"].as_str().unwrap().to_owned(),
                i["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn import(ws: &Ws, file: &Path) -> serde_json::Value {
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

/// The pain.008.001.02 XSD shipped by the `sepaxml` PyPI package in the test venv.
fn pain008_xsd() -> Option<PathBuf> {
    let venv = std::env::var("TOLLGATE_VENV").unwrap_or_else(|_| "/var/tmp/tollgate-venv".into());
    let lib = Path::new(&venv).join("lib");
    for e in std::fs::read_dir(&lib).ok()?.flatten() {
        let p = e
            .path()
            .join("site-packages/sepaxml/schemas/pain.008.001.02.xsd");
        if p.is_file() {
            return Some(p);
        }
    }
    None
}

fn validate_xsd(xml: &Path) {
    let Some(xsd) = pain008_xsd() else {
        if std::env::var_os("TOLLGATE_REQUIRE_XSD").is_some() {
            panic!("pain.008.001.02.xsd not found: run tools/pyenv.sh sepaxml");
        }
        eprintln!(
            "SKIPPED: XSD validation of {} (no sepaxml venv; run tools/pyenv.sh)",
            xml.display()
        );
        return;
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
    assert!(
        out.status.success(),
        "{} does not validate against {}:\n{}",
        xml.display(),
        xsd.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn whole_months_of_getting_paid() {
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
    let f1 = write(&ws, "stmt1.xml", &stmt1);
    let rep = import(&ws, &f1);
    assert_eq!(rep["matched"], 1, "{rep}");
    assert_eq!(rep["partial"], 1, "{rep}");
    assert_eq!(rep["overpaid"], 1, "{rep}");
    assert_eq!(rep["suspense"], 1, "{rep}");
    assert_eq!(rep["credited"], "37.10", "{rep}");
    assert_eq!(balance(&ws, "C1", "2026-10-11"), "0.00");
    assert_eq!(balance(&ws, "C2", "2026-10-11"), "7.10");
    assert_eq!(balance(&ws, "C3", "2026-10-11"), "-7.90");
    assert_eq!(items(&ws, "C1", "2026-10-11")[0].2, "paid");
    assert_eq!(
        items(&ws, "C2", "2026-10-11")[0],
        (number("C2"), "7.10".into(), "partially_paid".into())
    );

    // The same statement again changes nothing.
    let rep = import(&ws, &f1);
    assert_eq!(rep["duplicates"], 4, "{rep}");
    assert_eq!(rep["credited"], "0.00", "{rep}");
    assert_eq!(balance(&ws, "C2", "2026-10-11"), "7.10");

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
        let p = write(&ws, name, &text);
        let out = run(&[
            "payments",
            "import",
            "--config",
            cfg(&ws),
            p.to_str().unwrap(),
        ]);
        assert_eq!(out.code(), Some(1), "{name}: {}", out.stdout);
        assert!(out.stderr.contains(want), "{name}: {}", out.stderr);
        assert!(out.stderr.contains(name), "{name}: {}", out.stderr);
    }
    assert_eq!(balance(&ws, "C2", "2026-10-11"), "7.10");

    // The unmatched 3.33 is assigned to C2's invoice by the operator.
    let out = run(&["payments", "suspense", "--config", cfg(&ws)]).ok();
    let s: serde_json::Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!(s["amount"], "3.33");
    assert_eq!(s["iban"], "DE****************3000");
    let id = s["id"].to_string();
    run(&[
        "payments",
        "assign",
        "--config",
        cfg(&ws),
        &id,
        "--account",
        "C2",
        "--invoice",
        &number("C2"),
    ])
    .ok();
    assert_eq!(balance(&ws, "C2", "2026-10-11"), "3.77");
    assert!(run(&["payments", "suspense", "--config", cfg(&ws)])
        .ok()
        .stdout
        .is_empty());

    // Refund part of C3's credit; more than the credit is refused.
    run(&[
        "payments",
        "refund",
        "--config",
        cfg(&ws),
        "--account",
        "C3",
        "--amount",
        "5.00",
        "--date",
        "2026-10-12",
    ])
    .ok();
    assert_eq!(balance(&ws, "C3", "2026-10-12"), "-2.90");
    let out = run(&[
        "payments",
        "refund",
        "--config",
        cfg(&ws),
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

    // --- Direct debit run on the due date: D1 and D2, both first collections.
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
        cfg(&ws),
        "--date",
        "2026-10-15",
        "--out",
        dd.to_str().unwrap(),
    ])
    .ok();
    assert!(out.stdout.contains("nothing new due"), "{}", out.stdout);
    assert_eq!(std::fs::read_to_string(&dd).unwrap(), xml);
    assert_eq!(items(&ws, "D1", "2026-10-15")[0].1, "12.10");

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
    let rep = import(&ws, &write(&ws, "stmt2.xml", &stmt2));
    assert_eq!(rep["collections_settled"], 2, "{rep}");
    assert_eq!(balance(&ws, "D1", "2026-10-16"), "0.00");
    assert_eq!(balance(&ws, "D2", "2026-10-16"), "0.00");
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
    let rep = import(&ws, &write(&ws, "ret.xml", &ret));
    assert_eq!(rep["returns"], 1, "{rep}");
    assert_eq!(balance(&ws, "D2", "2026-10-18"), "12.10");
    assert_eq!(
        items(&ws, "D2", "2026-10-18")[0],
        (number("D2"), "12.10".into(), "overdue".into())
    );

    // --- Dunning, 18 October (due + 3): reminders for B1, C2 (3.77 open) and D2, and the
    // return notice for D2; all to the SMTP server, each once.
    let rep = dunning(&ws, "2026-10-18");
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
    let rep = dunning(&ws, "2026-10-18");
    assert_eq!(rep["steps"].as_array().unwrap().len(), 0, "{rep}");
    assert_eq!(smtp.mails().len(), 4);

    // D2 pays by transfer before the next step: that cancels it.
    run(&[
        "payments",
        "record",
        "--config",
        cfg(&ws),
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
    assert_eq!(balance(&ws, "D2", "2026-10-20"), "0.00");

    // --- 25 October (due + 10): the consumer's 14-day letter (costs 40.00 stated, term
    // until 25 + 2 (receipt) + 14 = 10 November); the business's formal notice (40.00
    // compensation) and interest since the due date.
    let rep = dunning(&ws, "2026-10-25");
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
    let rep = dunning(&ws, "2026-11-10");
    assert!(
        rep["fees"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| !f.as_str().unwrap().contains("collection_costs")),
        "{rep}"
    );
    let rep = dunning(&ws, "2026-11-11");
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
    let b1 = statement(&ws, "B1", "2026-11-11");
    let pf = b1["pending_fees"].as_array().unwrap();
    let interest = pf.iter().find(|f| f["kind"] == "interest").unwrap();
    assert_eq!(interest["amount"], "0.09", "{interest}");
    assert_eq!(interest["from"], "2026-10-15");
    assert_eq!(interest["to"], "2026-11-11");
    assert!(pf
        .iter()
        .any(|f| f["kind"] == "compensation" && f["amount"] == "40.00"));
    // Pending fees are not in the balance until invoiced.
    assert_eq!(b1["balance"], "12.10");

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
    assert_eq!(balance(&ws, "C2", "2026-11-12"), "55.87"); // 3.77 + 52.10
    assert_eq!(balance(&ws, "B1", "2026-11-12"), "64.29"); // 12.10 + 52.19
    assert_eq!(balance(&ws, "C3", "2026-11-12"), "9.20"); // −2.90 credit + 12.10
    assert_eq!(balance(&ws, "C1", "2026-11-12"), "12.10");
    assert_eq!(balance(&ws, "D2", "2026-11-12"), "12.10");
    let c3 = items(&ws, "C3", "2026-11-12");
    assert_eq!(c3[1].1, "9.20");
    assert_eq!(c3[1].2, "partially_paid");
    // Fees were consumed by the close.
    assert!(statement(&ws, "C2", "2026-11-12")["pending_fees"]
        .as_array()
        .unwrap()
        .is_empty());
    // The text statement names every entry kind.
    let text = run(&[
        "account",
        "statement",
        "C2",
        "--config",
        cfg(&ws),
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
        cfg(&ws),
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
