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
        Sink::start_with("plain", &[])
    }

    /// A sink in `mode` (`plain`, `starttls`, `implicit`) with `files` in its folder
    /// first (`cert.pem`, `key.pem`, `auth`: see smtp_sink.py).
    fn start_with(mode: &str, files: &[(&str, &[u8])]) -> Option<Sink> {
        let py = tools::venv_python("aiosmtpd", "tools/pyenv.sh 'aiosmtpd==1.4.6'")?;
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let child = Command::new(py)
            .arg(SINK)
            .arg(dir.path())
            .arg(mode)
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
    workspace_with(sink, accounts, "")
}

/// [`workspace`] with more `[outbox]` keys, and an operator token for the API.
fn workspace_with(sink: &Sink, accounts: &str, outbox: &str) -> Ws {
    let ws = Ws::hand_with("api_tokens_file = \"tokens.csv\"\n");
    std::fs::write(
        ws.root.join("tokens.csv"),
        format!("name,role,sha256\nops,operator,{}\n", sha256_hex(OPERATOR)),
    )
    .unwrap();
    std::fs::write(ws.root.join("accounts.csv"), accounts).unwrap();
    let mut cfg = std::fs::read_to_string(&ws.config).unwrap();
    cfg.push_str(&format!(
        r#"
[outbox]
smtp = "127.0.0.1:{}"
from = "billing@tollgate.example"
{outbox}

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

// ------------------------------------------------------------------ TLS to the relay

const OPERATOR: &str = "delivery-test-operator-token";
const SMTP_USER: &str = "billing";
const SMTP_PASSWORD: &str = "s3cret-pa55-never-logged";

fn sha256_hex(t: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(t.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A relay certificate for 127.0.0.1 signed by a CA of its own (named after `dir`),
/// made with the openssl CLI in `dir`: `ca.pem`, `cert.pem`, `key.pem` (P-256 keys,
/// valid two days).
fn relay_certificate(openssl: &Path, dir: &Path) {
    let ca = format!(
        "/CN=tollgate test relay CA {}",
        dir.file_name().unwrap().to_string_lossy()
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
         extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2";
    let steps = [
        format!("req -x509 {ec} -keyout ca.key -out ca.pem"),
        format!("req {ec} -keyout key.pem -out leaf.csr"),
        "x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem \
         -days 2 -extfile ext.cnf"
            .to_owned(),
    ];
    for (i, args) in steps.iter().enumerate() {
        let mut cmd = Command::new(openssl);
        cmd.current_dir(dir).args(args.split_whitespace());
        match i {
            0 => cmd.args(["-subj", ca.as_str()]),
            1 => cmd.args(["-subj", "/CN=127.0.0.1"]),
            _ => &mut cmd,
        };
        let out = cmd.output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args}: {out:?}");
    }
}

/// The relay side of a TLS test: certificate files and the credentials it checks.
fn tls_files(certs: &Path) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("cert.pem", std::fs::read(certs.join("cert.pem")).unwrap()),
        ("key.pem", std::fs::read(certs.join("key.pem")).unwrap()),
        (
            "auth",
            format!("{SMTP_USER}\n{SMTP_PASSWORD}\n").into_bytes(),
        ),
    ]
}

fn start_sink(mode: &str, files: &[(&'static str, Vec<u8>)]) -> Option<Sink> {
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    Sink::start_with(mode, &refs)
}

/// A workspace with one Dutch email account, closed (2026-10) and its CA and credentials
/// files written; `outbox` are the extra `[outbox]` keys.
fn tls_workspace(sink: &Sink, certs: &Path, password: &str, outbox: &str) -> Ws {
    let ws = workspace_with(
        sink,
        "account_id,plan,name,country,email,language\nA1,flat,Alice Jansen,NL,alice@example.com,nl\n",
        outbox,
    );
    std::fs::copy(certs.join("ca.pem"), ws.root.join("relay-ca.pem")).unwrap();
    std::fs::write(
        ws.root.join("smtp.credentials"),
        format!("{SMTP_USER}\n{password}\n"),
    )
    .unwrap();
    ws.close("2026-10", "2026-11-01").ok();
    ws
}

/// `[outbox] smtp_tls`: STARTTLS (required) with a private CA and credentials from a
/// file, implicit TLS, opportunistic STARTTLS to a plain relay; `starttls` refuses a
/// relay that does not offer it, an unknown CA and refused credentials, each a failed
/// delivery with a clear reason and nothing sent; the password is never printed.
#[test]
fn the_relay_connection_is_secured_as_configured() {
    let Some(openssl) = tools::require("openssl", "apt-get install openssl") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (ours, other) = (tmp.path().join("ours"), tmp.path().join("other"));
    relay_certificate(&openssl, &ours);
    relay_certificate(&openssl, &other);
    let files = tls_files(&ours);
    let secure = "smtp_tls = \"starttls\"\nsmtp_ca_file = \"relay-ca.pem\"\n\
                  smtp_credentials_file = \"smtp.credentials\"\n";
    let failed = |ws: &Ws| {
        let (code, rep) = deliver(ws);
        assert_eq!((code, rep), (Some(1), report(0, 1, 0, 0, 0)));
        let d = show(ws, "2026-000001")["delivery"][0].clone();
        assert_eq!(
            (&d["status"], &d["attempts"]),
            (&"failed".into(), &1.into()),
            "{d}"
        );
        assert!(d["nextAttempt"].is_string(), "{d}");
        d["error"].as_str().unwrap().to_owned()
    };

    // STARTTLS required, the relay's CA, credentials: over TLS 1.3, authenticated.
    let Some(sink) = start_sink("starttls", &files) else {
        return;
    };
    let ws = tls_workspace(&sink, &ours, SMTP_PASSWORD, secure);
    let out = run(&["deliver", "--config", ws.config_arg()]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        !out.stdout.contains(SMTP_PASSWORD) && !out.stderr.contains(SMTP_PASSWORD),
        "{out:?}"
    );
    let m = &sink.mails()[0];
    assert_eq!(
        (&m["tls"], &m["login"], &m["rcpt"]),
        (
            &"TLSv1.3".into(),
            &SMTP_USER.into(),
            &serde_json::json!(["alice@example.com"])
        )
    );
    assert_eq!(
        sink.attachment(m, "2026-000001.pdf"),
        file(&ws, "2026-000001", "pdf")
    );
    assert_eq!(show(&ws, "2026-000001")["delivery"][0]["status"], "sent");
    let shown = run(&["bills", "show", "--config", ws.config_arg(), "2026-000001"]).ok();
    assert!(!shown.stdout.contains(SMTP_PASSWORD));

    // The same relay, a wrong password: refused by the relay, the password not in the
    // reason, nothing sent.
    let ws = tls_workspace(&sink, &ours, "wrong-password", secure);
    let err = failed(&ws);
    let port = sink.port;
    assert!(
        err.starts_with(&format!("smtp 127.0.0.1:{port}: authentication refused: "))
            && err.contains("535"),
        "{err}"
    );
    assert!(!err.contains("wrong-password"), "{err}");
    assert_eq!(sink.mails().len(), 1);

    // A certificate from a CA the config does not name: refused before anything is sent.
    let ws = tls_workspace(&sink, &other, SMTP_PASSWORD, secure);
    let err = failed(&ws);
    assert!(
        err.starts_with(&format!("smtp 127.0.0.1:{port}: STARTTLS failed: "))
            && err.contains("UnknownIssuer"),
        "{err}"
    );
    assert_eq!(sink.mails().len(), 1);
    drop(sink);

    // `starttls` and a relay without STARTTLS: refused, with the reason, nothing sent.
    let Some(plain) = Sink::start() else { return };
    let ws = tls_workspace(&plain, &ours, SMTP_PASSWORD, secure);
    let err = failed(&ws);
    assert_eq!(
        err,
        format!(
            "smtp 127.0.0.1:{}: the relay does not offer STARTTLS and [outbox] smtp_tls = \
             \"starttls\" requires it; nothing was sent",
            plain.port
        )
    );
    assert_eq!(plain.mails().len(), 0);
    // `opportunistic` to the same relay: sent in plain (what the setting accepts).
    let ws = tls_workspace(
        &plain,
        &ours,
        SMTP_PASSWORD,
        "smtp_tls = \"opportunistic\"\n",
    );
    assert_eq!(deliver(&ws).1, report(1, 0, 0, 0, 0));
    assert_eq!(
        (&plain.mails()[0]["tls"], &plain.mails()[0]["login"]),
        (&Value::Null, &Value::Null)
    );
    drop(plain);

    // Implicit TLS (SMTPS), the relay's CA.
    let Some(smtps) = start_sink("implicit", &files[..2]) else {
        return;
    };
    let ws = tls_workspace(
        &smtps,
        &ours,
        SMTP_PASSWORD,
        "smtp_tls = \"implicit\"\nsmtp_ca_file = \"relay-ca.pem\"\n",
    );
    assert_eq!(deliver(&ws).1, report(1, 0, 0, 0, 0));
    assert_eq!(smtps.mails()[0]["tls"], "TLSv1.3");
}

/// The `[outbox]` TLS keys are checked at load, naming the key; credentials never go to
/// a relay without TLS.
#[test]
fn smtp_tls_settings_are_validated_naming_the_key() {
    let ws = Ws::hand();
    std::fs::write(
        ws.root.join("creds"),
        format!("{SMTP_USER}\n{SMTP_PASSWORD}\n"),
    )
    .unwrap();
    std::fs::write(ws.root.join("one-line"), "billing\n").unwrap();
    std::fs::write(ws.root.join("not-pem"), "hello\n").unwrap();
    let base = std::fs::read_to_string(&ws.config).unwrap();
    let cases = [
        (
            "smtp_tls = \"tls\"\n",
            "key `outbox.smtp_tls`: `tls` is not none, opportunistic, starttls or implicit",
        ),
        (
            "smtp_tls = \"opportunistic\"\nsmtp_credentials_file = \"creds\"\n",
            "key `outbox.smtp_credentials_file`: credentials go to the relay only over TLS: set smtp_tls = \"starttls\" or \"implicit\" (it is \"opportunistic\")",
        ),
        (
            "smtp_credentials_file = \"creds\"\n",
            "(it is \"none\")",
        ),
        (
            "smtp_tls = \"starttls\"\nsmtp_credentials_file = \"one-line\"\n",
            "one-line: want the user name on the first line and the password on the second",
        ),
        (
            "smtp_tls = \"starttls\"\nsmtp_ca_file = \"not-pem\"\n",
            "not-pem: no PEM certificate in it",
        ),
        (
            "smtp_ca_file = \"not-pem\"\n",
            "key `outbox.smtp_ca_file`: has no effect with smtp_tls = \"none\"",
        ),
    ];
    for (keys, want) in cases {
        std::fs::write(
            &ws.config,
            format!("{base}\n[outbox]\nsmtp = \"127.0.0.1:25\"\nfrom = \"b@x.nl\"\n{keys}"),
        )
        .unwrap();
        let out = run(&["accounts", "list", "--config", ws.config_arg()]);
        assert_ne!(out.code(), Some(0), "{keys}");
        assert!(
            out.stderr.contains(want),
            "{keys}: want {want:?} in {}",
            out.stderr
        );
        assert!(!out.stderr.contains(SMTP_PASSWORD), "{}", out.stderr);
    }
}

// ------------------------------------------------------- metrics, API, statement

/// POST with the operator token: (status, body).
fn post(d: &Daemon, path: &str) -> (u16, Value) {
    let auth = format!("Bearer {OPERATOR}");
    let r = crate::common::http_request(d.addr, "POST", path, &[("Authorization", &auth)], b"");
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

fn get(d: &Daemon, path: &str) -> Value {
    let (status, body) = crate::common::http_get_auth(d.addr, path, Some(OPERATOR));
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// The daemon's delivery metrics count each attempt by channel and show what waits;
/// `GET /api/v1/bills/{billNo}` and the statement API carry the delivery state with
/// exact fields; a resend through the API replaces the delivery still waiting for its
/// retry (sent once, not twice).
#[test]
fn delivery_metrics_and_the_api_show_each_state() {
    let Some(sink) = Sink::start() else { return };
    let ws = workspace(&sink, ACCOUNTS);
    ws.close("2026-10", "2026-11-01").ok();
    sink.control("reject", true);
    // The daemon delivers at start: Alice and Bob refused, Bakker's UBL into the folder.
    let d = Daemon::start(&ws);
    d.wait_until("the first delivery run", || {
        d.metrics()
            .get("tollgate_delivery_queued_documents", &[])
            .is_some()
    });
    let m = d.metrics();
    let c = |name: &str, channel: &str| m.counter(name, &[("channel", channel)]);
    assert_eq!(c("tollgate_delivery_sent_total", "peppol"), 1.0);
    assert_eq!(c("tollgate_delivery_sent_total", "email"), 0.0);
    assert_eq!(c("tollgate_delivery_failed_total", "email"), 2.0);
    assert_eq!(c("tollgate_delivery_failed_total", "peppol"), 0.0);
    assert_eq!(c("tollgate_delivery_interrupted_total", "email"), 0.0);
    assert_eq!(m.get("tollgate_delivery_queued_documents", &[]), Some(2.0));
    assert_eq!(
        m.get("tollgate_delivery_needs_operator_documents", &[]),
        Some(0.0)
    );
    let age = m
        .get("tollgate_delivery_oldest_queued_age_seconds", &[])
        .unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");

    // The bill through the API: exactly these fields.
    let bill = get(&d, "/api/v1/bills/2026-000001");
    let first = bill["delivery"][0].clone();
    assert_eq!(bill["delivery"].as_array().unwrap().len(), 1, "{bill}");
    assert_eq!(
        keys(&first),
        [
            "attempts",
            "channel",
            "error",
            "id",
            "nextAttempt",
            "status",
            "to"
        ]
    );
    assert_eq!(
        (
            &first["status"],
            &first["channel"],
            &first["to"],
            &first["attempts"]
        ),
        (
            &"failed".into(),
            &"email".into(),
            &"alice@example.com".into(),
            &1.into()
        )
    );
    assert_eq!(
        first["error"],
        "permanent error (554): 5.7.1 rejected by test policy"
    );
    let peppol = get(&d, "/api/v1/bills/2026-000004")["delivery"][0].clone();
    assert_eq!(
        keys(&peppol),
        ["attempts", "channel", "id", "sentAt", "status", "to"]
    );
    assert_eq!(
        (&peppol["status"], &peppol["channel"], &peppol["to"]),
        (&"sent".into(), &"peppol".into(), &"0106:12345678".into())
    );
    // The statement API: each open bill's latest delivery.
    let st = get(&d, "/api/v1/accounts/A1/statement?date=2026-11-02");
    assert_eq!(st["openItems"][0]["billNo"], "2026-000001", "{st}");
    assert_eq!(st["openItems"][0]["delivery"], first, "{st}");

    // The relay takes mail again; the operator resends Alice's invoice at once.
    sink.control("reject", false);
    let (status, doc) = post(&d, "/api/v1/bills/2026-000001/resend");
    assert_eq!(status, 200, "{doc}");
    assert_eq!(
        (&doc["status"], &doc["resendOf"], &doc["attempts"]),
        (&"sent".into(), &first["id"], &1.into()),
        "{doc}"
    );
    let states = get(&d, "/api/v1/bills/2026-000001")["delivery"].clone();
    assert_eq!(states[0]["status"], "superseded", "{states}");
    assert_eq!(
        states[0]["error"],
        format!("replaced by resend {} before it was sent", doc["id"])
    );
    assert!(states[0].get("nextAttempt").is_none(), "{states}");
    // Bob's retry comes after the 2 s back-off at the next tick (10 s): by then Alice
    // still has exactly one message.
    sink.wait_for("bob's retry", |m| {
        m.iter()
            .any(|m| m["rcpt"] == serde_json::json!(["bob@example.com"]))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.to("alice@example.com").len(), 1);
    assert_eq!(sink.to("bob@example.com").len(), 1);
    let m = d.metrics();
    let c = |name: &str, channel: &str| m.counter(name, &[("channel", channel)]);
    assert_eq!(c("tollgate_delivery_sent_total", "email"), 2.0);
    assert_eq!(c("tollgate_delivery_failed_total", "email"), 2.0);
    assert_eq!(m.get("tollgate_delivery_queued_documents", &[]), Some(0.0));
    assert_eq!(
        m.get("tollgate_delivery_oldest_queued_age_seconds", &[]),
        Some(0.0)
    );
    d.stop();
}

// ------------------------------------------------------------------ the email text

const ALLOWANCE_PLANS: &str = r#"timezone = "Europe/Amsterdam"
national_prefix = "31"
currency = "EUR"

[[plan]]
id = "bundel"
monthly_fee = "25.00"
deck = "deck.csv"

[[plan.allowance]]
name = "300 min bellen"
service = "voice"
destinations = ["Netherlands"]
units = 18000
"#;

/// The email lists the invoice in the customer's terms (documents::units): usage per
/// service with its count and call time / volume, the allowance as included and used,
/// the subscription; Dutch and English, exact text as received by the SMTP server.
#[test]
fn the_email_lists_usage_and_allowances_in_the_customer_terms() {
    let Some(sink) = Sink::start() else { return };
    let ws = workspace(
        &sink,
        "account_id,plan,name,country,email,language\n\
         A1,bundel,Alice Jansen,NL,alice@example.com,nl\n\
         A2,bundel,Bob Smith,GB,bob@example.com,en\n",
    );
    std::fs::write(ws.root.join("tariffs/plans.toml"), ALLOWANCE_PLANS).unwrap();
    let f = ws.root.join("oct.csv");
    let mut rows = Vec::new();
    for a in ["A1", "A2"] {
        // NL 90 s (billed 120 s: 1.30) and 60 s (0.70), both in the allowance; UK 30 s
        // (0.60); 3 SMS (0.30); 1 MiB of data (1.00) in one session.
        rows.push(format!(
            "{a}v1,{a},voice,+31611111111,+31612345678,2026-10-02T10:00:00Z,90,0"
        ));
        rows.push(format!(
            "{a}v2,{a},voice,+31611111111,+31612345678,2026-10-03T10:00:00Z,60,0"
        ));
        rows.push(format!(
            "{a}v3,{a},voice,+31611111111,+447700900123,2026-10-04T10:00:00Z,30,0"
        ));
        for i in 1..=3 {
            rows.push(format!(
                "{a}s{i},{a},sms,+31611111111,+31612345678,2026-10-05T10:0{i}:00Z,,"
            ));
        }
        rows.push(format!(
            "{a}d1,{a},data,+31611111111,,2026-10-06T10:00:00Z,,1048576"
        ));
    }
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    std::fs::write(&f, crate::common::cdr_file(&rows)).unwrap();
    ws.ingest(&[&f]).ok();
    ws.close("2026-10", "2026-11-01").ok();
    assert_eq!(deliver(&ws).1, report(2, 0, 0, 0, 0));

    let text = |addr: &str| {
        sink.to(addr)[0]["text"]
            .as_str()
            .unwrap()
            .replace("\r\n", "\n")
    };
    let alice = text("alice@example.com");
    assert!(
        alice.contains(
            "Specificatie (bedragen exclusief btw):\n\
             - Abonnement bundel (EUR 25,00)\n\
             - Bellen: 3 gesprekken, 0:03:30 (EUR 2,60)\n\
             - SMS: 3 sms'jes (EUR 0,30)\n\
             - Data: 1 sessie, 1,0 MB (EUR 1,00)\n\
             - 300 min bellen: 300 min inbegrepen, 3 min verbruikt (EUR -2,00)\n\n"
        ),
        "{alice}"
    );
    let bob = text("bob@example.com");
    assert!(
        bob.contains(
            "Summary (amounts excluding VAT):\n\
             - Subscription bundel (EUR 25.00)\n\
             - Calls: 3 calls, 0:03:30 (EUR 2.60)\n\
             - SMS: 3 SMS (EUR 0.30)\n\
             - Data: 1 session, 1.0 MB (EUR 1.00)\n\
             - 300 min bellen: 300 min included, 3 min used (EUR -2.00)\n\n"
        ),
        "{bob}"
    );
    // The figures are the invoice's own lines (net 26.90, VAT 5.65).
    let inv = &ws.read_invoices("2026-10")[0];
    assert_eq!(
        (&inv["net_total"], &inv["vat_total"], &inv["total"]),
        (&"26.90".into(), &"5.65".into(), &"32.55".into())
    );
    assert!(
        alice.contains("Totaalbedrag: EUR 32,55 (inclusief EUR 5,65 btw)\n"),
        "{alice}"
    );
}

// ------------------------------------------------- final and corrected invoices

/// The two kinds of document the other tests do not issue: a final invoice (the
/// account's own words, its short period) and a correction (`rerate --correct`: a
/// credit note and the reissued invoice naming the one it replaces) each reach the
/// customer once.
#[test]
fn final_invoices_and_corrections_are_delivered_too() {
    let Some(sink) = Sink::start() else { return };
    let ws = workspace(
        &sink,
        "account_id,plan,name,country,email,language\n\
         A1,flat,Alice Jansen,NL,alice@example.com,nl\n\
         A2,flat,Bob Smith,GB,bob@example.com,en\n",
    );
    let f = ws.root.join("oct.csv");
    std::fs::write(
        &f,
        crate::common::cdr_file(&[
            "b1,A2,voice,+31611111111,+447700900123,2026-10-02T10:00:00Z,60,0",
        ]),
    )
    .unwrap();
    ws.ingest(&[&f]).ok();
    run(&[
        "invoice",
        "final",
        "--config",
        ws.config_arg(),
        "--account",
        "A1",
        "--date",
        "2026-10-20",
    ])
    .ok();
    ws.close("2026-10", "2026-11-01").ok();
    assert_eq!(deliver(&ws).1, report(2, 0, 0, 0, 0));
    let alice = &sink.to("alice@example.com")[0];
    assert_eq!(
        alice["subject"],
        format!("Uw eindfactuur 2026-000001 van {SELLER}")
    );
    let text = alice["text"].as_str().unwrap().replace("\r\n", "\n");
    assert!(
        text.contains("In de bijlage vindt u eindfactuur 2026-000001 van Tollgate Telecom B.V. over 01-10-2026 t/m 20-10-2026,"),
        "{text}"
    );
    assert_eq!(
        sink.to("bob@example.com")[0]["subject"],
        format!("Your invoice 2026-000002 from {SELLER}")
    );

    // The UK rate was wrong: 1.20 -> 0.90 a minute; the correction goes out as a credit
    // note and the reissued invoice.
    let deck = ws.root.join("tariffs/deck.csv");
    let text = std::fs::read_to_string(&deck).unwrap();
    std::fs::write(
        &deck,
        text.replace(
            "44,United Kingdom,voice,any,0,1.20,",
            "44,United Kingdom,voice,any,0,0.90,",
        ),
    )
    .unwrap();
    run(&[
        "rerate",
        "--config",
        ws.config_arg(),
        "--period",
        "2026-10",
        "--correct",
        "--issue-date",
        "2026-11-15",
    ])
    .ok();
    assert_eq!(deliver(&ws).1, report(2, 0, 0, 0, 0));
    let bob = sink.to("bob@example.com");
    assert_eq!(bob.len(), 3);
    let subjects: Vec<&str> = bob[1..]
        .iter()
        .map(|m| m["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        [
            format!("Your credit note CN-2026-000001 from {SELLER}"),
            format!("Your corrected invoice 2026-000003 from {SELLER}"),
        ]
    );
    let text = bob[2]["text"].as_str().unwrap().replace("\r\n", "\n");
    assert!(
        text.contains("This invoice replaces invoice 2026-000002.\nTotal: EUR 10.90 (no VAT)\n"),
        "{text}"
    );
    assert!(
        text.contains("- Calls: 1 call, 0:01:00 (EUR 0.90)\n"),
        "{text}"
    );
    assert_eq!(sink.to("alice@example.com").len(), 1);
}
