//! Delivery of issued documents (docs/delivery.md) against a real SMTP server on
//! loopback: Python `aiosmtpd` from the venv of tools/pyenv.sh, running
//! tests/fixtures/smtp_sink.py, which parses every message it accepts with Python's
//! email package and keeps each attachment's bytes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::daemon::{run, Daemon, TIMEOUT};
use crate::common::tools;
use crate::common::workspace::Ws;

const SINK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smtp_sink.py");
const SELLER: &str = "Tollgate Telecom B.V.";
const SELLER_IBAN: &str = "NL91ABNA0417164300";

/// The SMTP server (killed on drop).
struct Sink {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Sink {
    fn start() -> Option<Sink> {
        let py = tools::venv_python("aiosmtpd", "tools/pyenv.sh 'aiosmtpd==1.4.6'")?;
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(py)
            .arg(SINK)
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("smtp sink starts");
        let t0 = Instant::now();
        let port = loop {
            if let Ok(p) = std::fs::read_to_string(dir.path().join("port")) {
                break p.trim().parse().unwrap();
            }
            assert!(t0.elapsed() < TIMEOUT, "smtp sink did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        Some(Sink { child, dir, port })
    }

    /// Every message accepted so far, in arrival order.
    fn mails(&self) -> Vec<Value> {
        let mut n = 1;
        let mut out = Vec::new();
        while let Ok(t) = std::fs::read_to_string(self.dir.path().join(format!("{n}.json"))) {
            let mut v: Value = serde_json::from_str(&t).unwrap();
            v["n"] = n.into();
            out.push(v);
            n += 1;
        }
        out
    }

    fn to(&self, addr: &str) -> Vec<Value> {
        self.mails()
            .into_iter()
            .filter(|m| m["rcpt"] == serde_json::json!([addr]))
            .collect()
    }

    fn attachment(&self, mail: &Value, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(format!("{}.{name}", mail["n"]))).unwrap()
    }

    fn control(&self, name: &str, on: bool) {
        let p = self.dir.path().join(name);
        if on {
            std::fs::write(p, "").unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&[Value]) -> bool) {
        let t0 = Instant::now();
        while !cond(&self.mails()) {
            assert!(t0.elapsed() < TIMEOUT, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace(sink: &Sink, accounts: &str) -> Ws {
    let ws = Ws::hand();
    std::fs::write(ws.root.join("accounts.csv"), accounts).unwrap();
    let mut cfg = std::fs::read_to_string(&ws.config).unwrap();
    cfg.push_str(&format!(
        r#"
[outbox]
smtp = "127.0.0.1:{}"
from = "billing@tollgate.example"

[delivery]
pay_url = "https://pay.tollgate.example/pay/{{invoice}}"
peppol_outbox = "peppol-out"
reply_to = "klantenservice@tollgate.example"
max_attempts = 3
retry_seconds = 2
"#,
        sink.port
    ));
    std::fs::write(&ws.config, cfg).unwrap();
    ws
}

fn deliver(ws: &Ws) -> (Option<i32>, Value) {
    let out = run(&["deliver", "--config", ws.config_arg()]);
    let v = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("deliver output is not JSON ({e}): {out:#?}"));
    (out.code(), v)
}

fn report(sent: u64, failed: u64, interrupted: u64, not_delivered: u64, waiting: u64) -> Value {
    serde_json::json!({
        "sent": sent, "failed": failed, "interrupted": interrupted,
        "not_delivered": not_delivered, "waiting": waiting
    })
}

fn show(ws: &Ws, number: &str) -> Value {
    let out = run(&["bills", "show", "--config", ws.config_arg(), number]).ok();
    serde_json::from_str(&out.stdout).unwrap()
}

/// A bill's deliveries without their ids.
fn states(ws: &Ws, number: &str) -> Value {
    let mut v = show(ws, number)["delivery"].clone();
    for d in v.as_array_mut().unwrap() {
        d.as_object_mut().unwrap().remove("id");
    }
    v
}

fn file(ws: &Ws, number: &str, ext: &str) -> Vec<u8> {
    std::fs::read(ws.invoices("2026-10").join(format!("{number}.{ext}"))).unwrap()
}

fn peppol_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

const ACCOUNTS: &str = "\
account_id,plan,name,street,postcode,city,country,email,language,customer_type,vat_id,delivery,peppol_id
A1,flat,Alice Jansen,Damrak 1,1012 LG,Amsterdam,NL,alice@example.com,nl,consumer,,,
A2,flat,Bob Smith,1 High St,SW1A 1AA,London,GB,bob@example.com,en,consumer,,,
A3,flat,Carla Post,Kerkstraat 2,1017 GA,Amsterdam,NL,carla@example.com,nl,consumer,,none,
B1,flat,Bakker B.V.,Markt 3,5611 EB,Eindhoven,NL,,nl,business,NL123456789B01,peppol,0106:12345678
";

/// A close's invoices reach every customer the way their account says: Alice (nl) and
/// Bob (en) by email with the stored PDF and UBL attached, Bakker B.V. through the
/// Peppol folder, Carla (`none`) not at all; a second run sends nothing again; a credit
/// note goes out through the daemon; `bills resend` sends once more.
#[test]
fn documents_reach_each_customer_as_the_account_says() {
    let Some(sink) = Sink::start() else { return };
    let ws = workspace(&sink, ACCOUNTS);
    ws.close("2026-10", "2026-11-01").ok();

    // Nothing is sent by the close itself: the messages wait in the outbox.
    assert_eq!(sink.mails().len(), 0);
    assert_eq!(
        states(&ws, "2026-000001"),
        serde_json::json!([{"status": "queued", "attempts": 0}])
    );

    let (code, rep) = deliver(&ws);
    assert_eq!(rep, report(3, 0, 0, 1, 0));
    assert_eq!(code, Some(0));
    let mails = sink.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");

    // Alice, in Dutch.
    let alice = &sink.to("alice@example.com")[0];
    assert_eq!(
        alice["subject"],
        format!("Uw factuur 2026-000001 van {SELLER}")
    );
    assert_eq!(
        alice["from"],
        format!("\"{SELLER}\" <billing@tollgate.example>")
    );
    assert_eq!(alice["reply_to"], "klantenservice@tollgate.example");
    assert_eq!(alice["mail_from"], "billing@tollgate.example");
    let id = &show(&ws, "2026-000001")["delivery"][0]["id"];
    assert_eq!(
        alice["message_id"],
        format!("<tollgate-doc-{id}@tollgate.example>")
    );
    let text = alice["text"].as_str().unwrap().replace("\r\n", "\n");
    let text = text.as_str();
    assert!(text.starts_with("Beste Alice Jansen,\n\nIn de bijlage vindt u factuur 2026-000001 van Tollgate Telecom B.V. over 01-10-2026 t/m 31-10-2026"), "{text}");
    assert!(
        text.contains(
            "Totaalbedrag: EUR 12,10 (inclusief EUR 2,10 btw)\nVervaldatum: 15-11-2026\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "Wilt u EUR 12,10 uiterlijk 15-11-2026 overmaken onder vermelding van betalingskenmerk"
        ),
        "{text}"
    );
    assert!(
        text.contains("\nOnline betalen: https://pay.tollgate.example/pay/2026-000001\n"),
        "{text}"
    );
    assert!(
        !text.contains(SELLER_IBAN) && !text.contains("0417164300"),
        "{text}"
    );
    assert_eq!(
        alice["attachments"],
        serde_json::json!([
            {"filename": "2026-000001.pdf", "content_type": "application/pdf"},
            {"filename": "2026-000001.xml", "content_type": "application/xml"}
        ])
    );
    assert_eq!(
        sink.attachment(alice, "2026-000001.pdf"),
        file(&ws, "2026-000001", "pdf")
    );
    assert_eq!(
        sink.attachment(alice, "2026-000001.xml"),
        file(&ws, "2026-000001", "xml")
    );

    // Bob, in English.
    let bob = &sink.to("bob@example.com")[0];
    assert_eq!(
        bob["subject"],
        format!("Your invoice 2026-000002 from {SELLER}")
    );
    let text = bob["text"].as_str().unwrap().replace("\r\n", "\n");
    let text = text.as_str();
    assert!(
        text.starts_with("Dear Bob Smith,\n\nAttached is invoice 2026-000002"),
        "{text}"
    );
    assert!(
        text.contains("Total: EUR 10.00 (no VAT)\nDue date: 15 November 2026\n"),
        "{text}"
    );
    assert!(
        text.contains("\nPay online: https://pay.tollgate.example/pay/2026-000002\n"),
        "{text}"
    );
    assert_eq!(
        sink.attachment(bob, "2026-000002.pdf"),
        file(&ws, "2026-000002", "pdf")
    );
    assert_eq!(
        sink.attachment(bob, "2026-000002.xml"),
        file(&ws, "2026-000002", "xml")
    );

    // Bakker B.V.: the UBL into the Peppol folder, its endpoint the peppol_id.
    let out = ws.root.join("peppol-out");
    assert_eq!(peppol_files(&out), ["0106_12345678_2026-000004.xml"]);
    let ubl = std::fs::read(out.join("0106_12345678_2026-000004.xml")).unwrap();
    assert_eq!(ubl, file(&ws, "2026-000004", "xml"));
    assert!(String::from_utf8_lossy(&ubl)
        .contains(r#"<cbc:EndpointID schemeID="0106">12345678</cbc:EndpointID>"#));

    // The states, as `bills show` (and GET /api/v1/bills/{billNo}) show them.
    let d = &show(&ws, "2026-000001")["delivery"][0];
    assert_eq!(
        (&d["status"], &d["channel"], &d["to"], &d["attempts"]),
        (
            &"sent".into(),
            &"email".into(),
            &"alice@example.com".into(),
            &1.into()
        )
    );
    assert!(
        d["sentAt"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{d}"
    );
    assert_eq!(
        states(&ws, "2026-000003"),
        serde_json::json!([{"status": "none", "channel": "none", "attempts": 0}])
    );
    let d = &show(&ws, "2026-000004")["delivery"][0];
    assert_eq!(
        (&d["status"], &d["channel"], &d["to"]),
        (&"sent".into(), &"peppol".into(), &"0106:12345678".into())
    );

    // A second run sends nothing again.
    assert_eq!(deliver(&ws).1, report(0, 0, 0, 0, 0));
    assert_eq!(sink.mails().len(), 2);
    assert_eq!(peppol_files(&out).len(), 1);

    // A credit note, issued with the daemon stopped, goes out through the daemon.
    run(&[
        "invoice",
        "credit",
        "--config",
        ws.config_arg(),
        "2026-000001",
        "--reason",
        "Dubbel berekend",
        "--issue-date",
        "2026-11-05",
    ])
    .ok();
    let d = Daemon::start(&ws);
    sink.wait_for("the credit note", |m| m.len() == 3);
    std::thread::sleep(Duration::from_millis(300));
    d.stop();
    let cn = &sink.mails()[2];
    assert_eq!(cn["rcpt"], serde_json::json!(["alice@example.com"]));
    let number = cn["attachments"][0]["filename"]
        .as_str()
        .unwrap()
        .trim_end_matches(".pdf")
        .to_owned();
    assert_eq!(
        cn["subject"],
        format!("Uw creditnota {number} van {SELLER}")
    );
    let text = cn["text"].as_str().unwrap().replace("\r\n", "\n");
    let text = text.as_str();
    assert!(
        text.contains(
            "Deze creditnota van EUR 12,10 (inclusief btw) corrigeert factuur 2026-000001."
        ),
        "{text}"
    );
    assert!(!text.contains("Online betalen"), "{text}");
    assert_eq!(
        sink.attachment(cn, &format!("{number}.pdf")),
        file(&ws, &number, "pdf")
    );
    assert_eq!(
        sink.attachment(cn, &format!("{number}.xml")),
        file(&ws, &number, "xml")
    );

    // `bills resend`: a new delivery, sent at once; the first keeps its history.
    let first = show(&ws, "2026-000002")["delivery"][0]["id"].clone();
    let out = run(&[
        "bills",
        "resend",
        "--config",
        ws.config_arg(),
        "2026-000002",
    ])
    .ok();
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (&doc["status"], &doc["resendOf"]),
        (&"sent".into(), &first),
        "{doc}"
    );
    assert_eq!(sink.to("bob@example.com").len(), 2);
    let states = show(&ws, "2026-000002")["delivery"].clone();
    assert_eq!(states.as_array().unwrap().len(), 2);
    assert_eq!(states[0]["status"], "sent");

    // The statement names each open bill's latest delivery.
    let out = run(&[
        "account",
        "statement",
        "A2",
        "--config",
        ws.config_arg(),
        "--date",
        "2026-11-02",
    ])
    .ok();
    assert!(
        out.stdout.contains("  open [delivery sent]\n"),
        "{}",
        out.stdout
    );
    let out = run(&[
        "account",
        "statement",
        "A2",
        "--config",
        ws.config_arg(),
        "--date",
        "2026-11-02",
        "--json",
    ])
    .ok();
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["openItems"][0]["delivery"], states[1], "{doc}");
}

/// A message the server refuses is `failed` with the server's reply and retried after
/// the back-off; after `max_attempts` it stays failed without a next attempt.
#[test]
fn a_refused_message_is_failed_with_the_reply_then_retried() {
    let Some(sink) = Sink::start() else { return };
    let ws = workspace(
        &sink,
        "account_id,plan,name,country,email,language\nA1,flat,Alice Jansen,NL,alice@example.com,nl\n",
    );
    ws.close("2026-10", "2026-11-01").ok();
    sink.control("reject", true);
    let (code, rep) = deliver(&ws);
    assert_eq!((code, rep), (Some(1), report(0, 1, 0, 0, 0)));
    let d = &show(&ws, "2026-000001")["delivery"][0];
    assert_eq!(d["status"], "failed");
    assert_eq!(d["attempts"], 1);
    assert!(
        d["error"].as_str().unwrap().contains("554")
            && d["error"]
                .as_str()
                .unwrap()
                .contains("rejected by test policy"),
        "{d}"
    );
    assert!(d["nextAttempt"].is_string(), "{d}");
    // Not before the back-off (2 s): an immediate run waits.
    assert_eq!(deliver(&ws).1, report(0, 0, 0, 0, 1));
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(deliver(&ws).1, report(0, 1, 0, 0, 0));
    assert_eq!(show(&ws, "2026-000001")["delivery"][0]["attempts"], 2);
    sink.control("reject", false);
    // The back-off doubles: 4 s after the second attempt.
    std::thread::sleep(Duration::from_millis(4100));
    assert_eq!(deliver(&ws).1, report(1, 0, 0, 0, 0));
    let d = &show(&ws, "2026-000001")["delivery"][0];
    assert_eq!((&d["status"], &d["attempts"]), (&"sent".into(), &3.into()));
    assert!(
        d.get("error").is_none() && d.get("nextAttempt").is_none(),
        "{d}"
    );
    assert_eq!(sink.mails().len(), 1);

    // Three refusals (max_attempts = 3): failed for good, only `bills resend` retries.
    sink.control("reject", true);
    run(&[
        "bills",
        "resend",
        "--config",
        ws.config_arg(),
        "2026-000001",
    ]);
    for wait in [2100, 4100] {
        std::thread::sleep(Duration::from_millis(wait));
        deliver(&ws);
    }
    let d = &show(&ws, "2026-000001")["delivery"][1];
    assert_eq!(
        (&d["status"], &d["attempts"]),
        (&"failed".into(), &3.into()),
        "{d}"
    );
    assert!(d.get("nextAttempt").is_none(), "{d}");
    assert_eq!(deliver(&ws).1, report(0, 0, 0, 0, 0));
}

/// kill -9 while the server holds the reply to DATA: the message it already has is
/// `interrupted` and never sent again by itself; the one before stays sent once, the
/// one after is sent once by the next run; `bills resend` sends it again on purpose.
#[test]
fn kill_9_during_a_delivery_run_never_sends_twice_and_loses_nothing() {
    let Some(sink) = Sink::start() else { return };
    let ws = workspace(
        &sink,
        "account_id,plan,name,country,email,language\n\
         A1,flat,Alice Jansen,NL,alice@example.com,nl\n\
         H1,flat,Hank Hang,GB,hang@example.com,en\n\
         Z1,flat,Zoe Zee,NL,zoe@example.com,nl\n",
    );
    ws.close("2026-10", "2026-11-01").ok();
    let mut child = Command::new(crate::common::daemon::bin())
        .args(["deliver", "--config", ws.config_arg()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The server has Hank's message and holds its reply: kill the sender now.
    sink.wait_for("hank's message", |m| m.len() == 2);
    std::thread::sleep(Duration::from_millis(100));
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert_eq!(show(&ws, "2026-000002")["delivery"][0]["status"], "sending");
    assert_eq!(show(&ws, "2026-000003")["delivery"][0]["status"], "queued");

    let (code, rep) = deliver(&ws);
    assert_eq!((code, rep), (Some(1), report(1, 0, 1, 0, 0)));
    for addr in ["alice@example.com", "hang@example.com", "zoe@example.com"] {
        assert_eq!(sink.to(addr).len(), 1, "{addr}");
    }
    let d = &show(&ws, "2026-000002")["delivery"][0];
    assert_eq!(
        (&d["status"], &d["attempts"]),
        (&"interrupted".into(), &1.into())
    );
    assert!(d["error"].as_str().unwrap().contains("bills resend"), "{d}");
    assert_eq!(deliver(&ws).1, report(0, 0, 0, 0, 0));
    assert_eq!(sink.mails().len(), 3);

    // On purpose: the server answers now.
    let out = run(&[
        "bills",
        "resend",
        "--config",
        ws.config_arg(),
        "2026-000002",
    ])
    .ok();
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["status"], "sent");
    assert_eq!(sink.to("hang@example.com").len(), 2);
}

/// The accounts columns: bad values are refused naming file, line and column.
#[test]
fn delivery_columns_are_validated_naming_file_and_line() {
    let ws = Ws::hand();
    let cases = [
        (
            "A1,flat,,a@x.nl,business,post,",
            "column `delivery`: `post` is not email, peppol or none",
        ),
        (
            "A1,flat,,,consumer,email,",
            "column `delivery`: email needs an address in the `email` column",
        ),
        (
            "A1,flat,,a@x.nl,business,peppol,",
            "column `delivery`: peppol needs the `peppol_id` column",
        ),
        (
            "A1,flat,,,business,peppol,0106:1234567",
            "column `peppol_id`: `0106:1234567` is not 0106:<8-digit KvK number>",
        ),
        (
            "A1,flat,,,business,peppol,9944:NL12345678B01",
            "column `peppol_id`: `9944:NL12345678B01` is not",
        ),
        (
            "A1,flat,,,business,peppol,0088:1234567890123",
            "column `peppol_id`: `0088:1234567890123` is not",
        ),
        (
            "A1,flat,,,consumer,,0106:12345678",
            "column `peppol_id`: only business accounts",
        ),
    ];
    let path: PathBuf = ws.root.join("accounts.csv");
    for (row, want) in cases {
        std::fs::write(
            &path,
            format!("account_id,plan,name,email,customer_type,delivery,peppol_id\n{row}\n"),
        )
        .unwrap();
        let out = run(&["accounts", "list", "--config", ws.config_arg()]);
        assert_ne!(out.code(), Some(0), "{row}");
        let expect = format!("accounts {}:2: {want}", path.display());
        assert!(out.stderr.contains(&expect), "{row}: {}", out.stderr);
    }
    std::fs::write(
        &path,
        "account_id,plan,customer_type,delivery,peppol_id\nA1,flat,business,peppol,9944:NL123456789B01\n",
    )
    .unwrap();
    run(&["accounts", "list", "--config", ws.config_arg()]).ok();
}
