//! Paying online and by card, end to end against localstripe (a stateful Stripe emulator,
//! PyPI `localstripe`, installed into the venv by tools/test.sh): pay link → the pay page
//! (nothing asked of Stripe) → the card into a SetupIntent → the daemon charges exactly
//! the open amount → localstripe's signed webhook → the invoice paid; the pay page's
//! declines, 3-D Secure, replays and other accounts' SetupIntents; bad and stale signatures refused with nothing posted; a replayed
//! webhook changing nothing; an unknown payment to suspense; a daemon restart between
//! payment and webhook; card autopay by `collect` with a declined card (notice, no second
//! charge); a refund through the provider.
//!
//! iDEAL on the pay page: the choice (nl/en), one PaymentIntent of exactly the open amount
//! with `payment_method_types` ideal however often it is asked, the return page (not
//! paid, another invoice's or account's payment, thank you after the webhook), the
//! webhook once, `collect` leaving an iDEAL payment under way alone, a card paying after
//! it cancelling it, no iDEAL for a tariff not in EUR.
//!
//! localstripe emulates PaymentIntents, PaymentMethods, customers, refunds and sends
//! signed `payment_intent.*` webhooks, but no Checkout, no iDEAL, no idempotency keys and
//! no `setup_intent.succeeded` event: the tests sign those events themselves with the
//! endpoint secret (as Stripe would send them) and post them to the daemon. An iDEAL
//! PaymentIntent is made there (it takes `payment_method_types[]=ideal`, kept by the
//! launcher below) but cannot be confirmed: the test completes it as Stripe reports it,
//! a signed `payment_intent.succeeded` for that PaymentIntent.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::tools;
use crate::common::*;

const INSTALL: &str = "tools/pyenv.sh 'localstripe==1.15.10' (tools/test.sh does it)";
pub(crate) const SECRET_KEY: &str = "sk_test_tollgate";
pub(crate) const WEBHOOK_SECRET: &str = "whsec_tollgate_test";

/// localstripe on a loopback port, stopped on drop.
pub(crate) struct LocalStripe {
    child: Child,
    pub(crate) base: String,
}

impl LocalStripe {
    pub(crate) fn start(dir: &std::path::Path) -> Option<LocalStripe> {
        let py = tools::venv_python("localstripe", INSTALL)?;
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own `start()` listens on every interface; the tests bind loopback only.
        // localstripe takes a PaymentIntent's `payment_method_types` and drops it: kept
        // here (`card` when none is given, as Stripe answers) so the tests can ask for it.
        let child = Command::new(py)
            .args([
                "-c",
                "import sys\nfrom aiohttp import web\nfrom localstripe.server import app\n\
                 from localstripe.resources import PaymentIntent\n\
                 made = PaymentIntent.__init__\n\
                 def keep(self, *a, payment_method_types=None, **k):\n\
                 \x20   made(self, *a, **k)\n\
                 \x20   self.payment_method_types = payment_method_types or ['card']\n\
                 PaymentIntent.__init__ = keep\n\
                 web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None)",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("localstripe.out")).unwrap())
            .stderr(std::fs::File::create(dir.join("localstripe.err")).unwrap())
            .spawn()
            .expect("start localstripe");
        let ls = LocalStripe {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let t0 = Instant::now();
        while ls.get("/v1/customers").0 != 200 {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "localstripe did not start: {}",
                std::fs::read_to_string(dir.join("localstripe.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(ls)
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into()
    }

    pub(crate) fn get(&self, path: &str) -> (u16, serde_json::Value) {
        match Self::agent()
            .get(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {SECRET_KEY}"))
            .call()
        {
            Ok(mut r) => (
                r.status().as_u16(),
                serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap_or_default(),
            ),
            Err(_) => (0, serde_json::Value::Null),
        }
    }

    pub(crate) fn post(&self, path: &str, form: &[(&str, &str)]) -> serde_json::Value {
        let mut r = Self::agent()
            .post(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {SECRET_KEY}"))
            .send_form(form.iter().copied())
            .unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(status, 200, "POST {path}: {v}");
        v
    }

    pub(crate) fn id(v: &serde_json::Value) -> String {
        v["id"].as_str().unwrap().to_owned()
    }

    /// A card payment method with this number.
    pub(crate) fn card(&self, number: &str) -> String {
        Self::id(&self.post(
            "/v1/payment_methods",
            &[
                ("type", "card"),
                ("card[number]", number),
                ("card[exp_month]", "12"),
                ("card[exp_year]", "2030"),
                ("card[cvc]", "123"),
            ],
        ))
    }

    /// A customer with the card attached: (customer, payment method).
    pub(crate) fn customer_with_card(&self, number: &str) -> (String, String) {
        let cus = Self::id(&self.post("/v1/customers", &[("email", "k@example.com")]));
        let pm = self.card(number);
        self.post(
            &format!("/v1/payment_methods/{pm}/attach"),
            &[("customer", &cus)],
        );
        (cus, pm)
    }

    /// What Stripe.js's `confirmCardSetup` does with the card typed into the card form:
    /// the SetupIntent of `client_secret` confirmed with it; a card that asks for 3-D
    /// Secure is authenticated (localstripe's "Complete authentication"). Returns the
    /// SetupIntent.
    pub(crate) fn confirm_setup(&self, client_secret: &str, number: &str) -> serde_json::Value {
        let seti = client_secret.split("_secret_").next().unwrap().to_owned();
        let path = format!("/v1/setup_intents/{seti}/confirm");
        let v = self.post(
            &path,
            &[
                ("client_secret", client_secret),
                ("payment_method_data[type]", "card"),
                ("payment_method_data[card][number]", number),
                ("payment_method_data[card][exp_month]", "12"),
                ("payment_method_data[card][exp_year]", "2030"),
                ("payment_method_data[card][cvc]", "123"),
            ],
        );
        if v["status"] == "requires_action" {
            return self.post(&path, &[("client_secret", client_secret)]);
        }
        v
    }

    /// What Stripe.js's `confirmCardPayment(clientSecret)` does with localstripe when the
    /// customer completes (or fails) the bank's authentication.
    pub(crate) fn authenticate(&self, client_secret: &str, success: bool) -> serde_json::Value {
        let pi = client_secret.split("_secret_").next().unwrap().to_owned();
        self.post(
            &format!("/v1/payment_intents/{pi}/_authenticate?success={success}"),
            &[("client_secret", client_secret)],
        )
    }

    /// The PaymentIntents for an invoice.
    pub(crate) fn payments_for(&self, invoice: &str) -> Vec<serde_json::Value> {
        self.payment_intents()
            .into_iter()
            .filter(|p| p["metadata"]["invoice"] == invoice)
            .collect()
    }

    pub(crate) fn payment_intents(&self) -> Vec<serde_json::Value> {
        let (s, v) = self.get("/v1/payment_intents?limit=100");
        assert_eq!(s, 200, "{v}");
        v["data"].as_array().unwrap().clone()
    }
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ACCOUNTS: &str = "\
account_id,plan,name,email,language,country,customer_type,payment_method,iban,bic,mandate_id,mandate_date
C1,flat,Carla Smit,c1@example.com,nl,NL,consumer,transfer,,,,
C2,flat,Chris Brown,c2@example.com,en,NL,consumer,transfer,,,,
K1,flat,Kees Kaart,k1@example.com,nl,NL,consumer,card,,,,
K2,flat,Karin Geweigerd,k2@example.com,en,NL,consumer,card,,,,
K3,flat,Koen Zonder,k3@example.com,nl,NL,consumer,card,,,,
";

/// A workspace with [psp] pointing at `ls`, API tokens and the five accounts, September
/// closed on 1 October: C1 2026-000001, C2 …02, K1 …03, K2 …04, K3 …05, each 12.10,
/// due 15 October.
fn workspace(ls: &LocalStripe) -> Ws {
    let ws = Ws::hand_with("api_tokens_file = \"tokens.csv\"\n");
    std::fs::write(ws.root.join("accounts.csv"), ACCOUNTS).unwrap();
    std::fs::write(ws.root.join("stripe.key"), format!("{SECRET_KEY}\n")).unwrap();
    std::fs::write(ws.root.join("stripe-webhook.key"), WEBHOOK_SECRET).unwrap();
    let mut cfg = std::fs::read_to_string(&ws.config).unwrap();
    cfg.push_str(&format!(
        r#"
[psp]
provider = "stripe"
api_base = "{}"
secret_key_file = "stripe.key"
webhook_secret_file = "stripe-webhook.key"
return_url = "https://tollgate.example/paid"
publishable_key = "pk_test_tollgate"
public_url = "https://pay.tollgate.example"
"#,
        ls.base
    ));
    std::fs::write(&ws.config, cfg).unwrap();
    ws.close("2026-09", "2026-10-01").ok();
    ws
}

/// (invoice, open, status, paid) per item, and the balance, of an account's statement
/// (through the daemon when `tok` is given).
fn statement(ws: &Ws, account: &str, tok: Option<&str>) -> (Vec<[String; 4]>, String) {
    let args = [
        "account",
        "statement",
        account,
        "--config",
        ws.config_arg(),
        "--date",
        "2026-10-20",
        "--json",
    ];
    let out = match tok {
        Some(t) => run_env(&args, &[("TOLLGATE_TOKEN", t)]),
        None => run(&args),
    }
    .ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let items = v["openItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            [
                i["billNo"].as_str().unwrap().to_owned(),
                i["open"]["value"].as_str().unwrap().to_owned(),
                i["status"].as_str().unwrap().to_owned(),
                i["paid"]["value"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    (items, v["balance"]["value"].as_str().unwrap().to_owned())
}

fn item(inv: &str, open: &str, status: &str, paid: &str) -> Vec<[String; 4]> {
    vec![[inv.into(), open.into(), status.into(), paid.into()]]
}

fn pay_link(ws: &Ws, invoice: &str) -> String {
    let out = run(&["payments", "pay-link", invoice, "--config", ws.config_arg()]).ok();
    out.stdout.trim().to_owned()
}

/// The path and query of a pay link (the daemon is reached on loopback).
fn path_of(link: &str) -> String {
    link.strip_prefix("https://pay.tollgate.example")
        .unwrap_or_else(|| panic!("{link}"))
        .to_owned()
}

/// `/pay/<invoice>/<call>?t=…` of a pay link's path and query.
pub(crate) fn call_of(path: &str, call: &str) -> String {
    let (p, q) = path.split_once('?').unwrap();
    format!("{p}/{call}?{q}")
}

/// POSTs JSON to one of the pay page's calls, as its script does (same origin).
pub(crate) fn pay_call(addr: SocketAddr, path: &str, body: serde_json::Value) -> Resp {
    http_request(
        addr,
        "POST",
        path,
        &[
            ("Content-Type", "application/json"),
            ("Sec-Fetch-Site", "same-origin"),
        ],
        body.to_string().as_bytes(),
    )
}

/// What the pay page's script does when the customer types `number` and presses Pay: a
/// SetupIntent from the daemon, confirmed with the card as Stripe.js confirms it, then
/// the daemon asked to charge it. Returns the SetupIntent id and the daemon's answer.
pub(crate) fn pay_on_page(
    addr: SocketAddr,
    ls: &LocalStripe,
    path: &str,
    number: &str,
    remember: bool,
) -> (String, Resp) {
    let r = pay_call(
        addr,
        &call_of(path, "setup"),
        serde_json::json!({"remember": remember}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let cs = r.json()["client_secret"].as_str().unwrap().to_owned();
    let si = ls.confirm_setup(&cs, number);
    assert_eq!(si["status"], "succeeded", "{si}");
    let seti = LocalStripe::id(&si);
    let answer = pay_call(
        addr,
        &call_of(path, "confirm"),
        serde_json::json!({"setup_intent": seti}),
    );
    (seti, answer)
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A `payment_intent.succeeded` event as Stripe sends it.
fn succeeded(event: &str, pi: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": event, "object": "event", "type": "payment_intent.succeeded", "created": now(),
        "data": {"object": pi},
    }))
    .unwrap()
}

/// POSTs an event to the webhook, signed at `t` with `secret`.
pub(crate) fn post_event(addr: SocketAddr, body: &[u8], secret: &str, t: i64) -> Resp {
    let sig = tollgate::payments::psp::stripe::sign(body, secret.as_bytes(), t);
    http_request(
        addr,
        "POST",
        "/api/v1/psp/stripe/webhook",
        &[
            ("Stripe-Signature", &sig),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

/// Payment entries of an account (through the daemon with `tok`).
fn payments(ws: &Ws, tok: &str) -> usize {
    let out = run_env(
        &["payments", "list", "--config", ws.config_arg()],
        &[("TOLLGATE_TOKEN", tok)],
    )
    .ok();
    out.stdout
        .lines()
        .filter(|l| l.contains("psp/stripe/"))
        .count()
}

#[test]
fn pay_link_webhook_replays_signatures_suspense_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(ls) = LocalStripe::start(dir.path()) else {
        return;
    };
    let ws = workspace(&ls);
    let tok = ws.add_token("ops", "operator");
    let d = Daemon::start(&ws);
    // localstripe sends its signed payment_intent webhooks to the daemon.
    ls.post(
        "/_config/webhooks/tollgate",
        &[
            (
                "url",
                &format!("http://{}/api/v1/psp/stripe/webhook", d.addr),
            ),
            ("secret", WEBHOOK_SECRET),
            ("events[]", "payment_intent.succeeded"),
        ],
    );

    // --- The pay link of C1's invoice: 128-bit token, one line on the PDF.
    let link = pay_link(&ws, "2026-000001");
    let (path, t) = path_of(&link)
        .split_once("?t=")
        .map(|(p, t)| (p.to_owned(), t.to_owned()))
        .unwrap();
    assert_eq!(path, "/pay/2026-000001");
    assert_eq!(t.len(), 32, "{link}");
    // The PDF shows it under the payment box, in the customer's language.
    if let Some(pdftotext) = tools::require("pdftotext", "apt-get install poppler-utils") {
        let out = Command::new(pdftotext)
            .arg(ws.invoices("2026-09").join("2026-000001.pdf"))
            .arg("-")
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(&format!("Online betalen: {link}")), "{text}");
    }
    // A guessed or borrowed token reaches nothing: another invoice, a changed token.
    let other = path_of(&pay_link(&ws, "2026-000002"));
    let other_t = other.split_once("?t=").unwrap().1;
    for p in [
        format!("/pay/2026-000001?t={other_t}"),
        format!("/pay/2026-000002?t={t}"),
        format!("/pay/2026-000001?t={}0", &t[..31]),
        "/pay/2026-000001".to_owned(),
        format!("/pay/2099-000001?t={t}"),
    ] {
        let (s, body) = d.get(&p);
        assert_eq!(s, 404, "{p}: {body}");
        assert!(!body.contains("12.10"), "{body}");
    }
    assert!(ls.payment_intents().is_empty(), "no payment for a bad link");

    // --- Opening the link: the amount and the card form; nothing is asked of Stripe yet
    // (a mail scanner opening the link creates nothing).
    let r = http_request(d.addr, "GET", &path_of(&link), &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let csp = r.header("content-security-policy").unwrap().to_owned();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .unwrap()
        .to_owned();
    assert_eq!(
        csp,
        format!(
            "default-src 'none'; script-src 'nonce-{nonce}' {b}; connect-src 'self' {b} {b}; frame-src {b} https://*.stripe.com; img-src 'self' {b}; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            b = ls.base
        )
    );
    let page = r.text();
    assert!(page.contains("Te betalen: EUR 12.10"), "{page}");
    assert!(page.contains("Betaal EUR 12.10</button>"), "{page}");
    assert!(page.contains("data-key=\"pk_test_tollgate\""), "{page}");
    assert!(
        page.contains(&format!("<script nonce=\"{nonce}\" src=")),
        "{page}"
    );
    assert!(
        page.contains(&format!("data-confirm=\"/pay/2026-000001/confirm?t={t}\"")),
        "{page}"
    );
    // "Remember this card" only for card accounts: C1 pays by transfer.
    assert!(!page.contains("id=\"remember\""), "{page}");
    assert!(
        !page.contains(SECRET_KEY),
        "the secret key is never on the page"
    );
    assert!(ls.payment_intents().is_empty());
    assert!(ls.get("/v1/customers").1["data"]
        .as_array()
        .unwrap()
        .is_empty());

    // --- Paid on the page: the card into a SetupIntent, the daemon charges exactly the
    // open amount on C1's Stripe customer; localstripe's signed webhook posts it.
    let (seti, r) = pay_on_page(d.addr, &ls, &path_of(&link), "4242424242424242", false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"status": "succeeded",
            "message": "Dank u wel, uw betaling is ontvangen. Uw factuur staat zo op betaald."})
    );
    let pis = ls.payments_for("2026-000001");
    assert_eq!(pis.len(), 1, "{pis:?}");
    let (_, si) = ls.get(&format!("/v1/setup_intents/{seti}"));
    assert_eq!(
        (si["usage"].as_str(), si["metadata"]["invoice"].as_str()),
        (Some("on_session"), Some("2026-000001"))
    );
    assert_eq!(
        (
            pis[0]["amount"].as_i64(),
            pis[0]["currency"].as_str(),
            pis[0]["metadata"]["account"].as_str(),
            pis[0]["customer"].as_str(),
            pis[0]["payment_method"].as_str(),
            pis[0]["status"].as_str()
        ),
        (
            Some(1210),
            Some("eur"),
            Some("C1"),
            si["customer"].as_str(),
            si["payment_method"].as_str(),
            Some("succeeded")
        )
    );
    let pi = LocalStripe::id(&pis[0]);
    // The same confirm again (a double click, a retry): the same answer, no second charge.
    let again = pay_call(
        d.addr,
        &call_of(&path_of(&link), "confirm"),
        serde_json::json!({"setup_intent": seti}),
    );
    assert_eq!(again.json()["status"], "succeeded", "{}", again.text());
    assert_eq!(ls.payments_for("2026-000001").len(), 1);
    d.wait_until("the webhook of the payment", || {
        statement(&ws, "C1", Some(&tok)).1 == "0.00"
    });
    assert_eq!(
        statement(&ws, "C1", Some(&tok)),
        (item("2026-000001", "0.00", "paid", "12.10"), "0.00".into())
    );
    assert_eq!(payments(&ws, &tok), 1);
    // Paid: the link says so and creates nothing.
    let before = ls.payment_intents().len();
    let (s, body) = d.get(&path_of(&link));
    assert_eq!(s, 200);
    assert!(
        body.contains("Op factuur 2026-000001 staat niets meer open"),
        "{body}"
    );
    // … and so do its calls, charging nothing.
    let r = pay_call(
        d.addr,
        &call_of(&path_of(&link), "confirm"),
        serde_json::json!({"setup_intent": seti}),
    );
    assert_eq!(
        r.json(),
        serde_json::json!({"status": "nothing_open",
            "message": "Op factuur 2026-000001 staat niets meer open. Dank u wel."})
    );
    let r = pay_call(
        d.addr,
        &call_of(&path_of(&link), "setup"),
        serde_json::json!({}),
    );
    assert_eq!(r.json()["status"], "nothing_open", "{}", r.text());
    assert_eq!(ls.payment_intents().len(), before);

    // --- The same payment again (a replay, another event id): nothing changes.
    let (_, pi_obj) = ls.get(&format!("/v1/payment_intents/{pi}"));
    let r = post_event(
        d.addr,
        &succeeded("evt_replay", &pi_obj),
        WEBHOOK_SECRET,
        now(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["posted"]["outcome"], "duplicate");
    assert_eq!(payments(&ws, &tok), 1);
    assert_eq!(statement(&ws, "C1", Some(&tok)).1, "0.00");

    // --- Bad signatures are refused and post nothing (a payment for C2's invoice).
    let forged = serde_json::json!({
        "id": "pi_forgedPayment01", "object": "payment_intent", "amount": 1210,
        "amount_received": 1210, "currency": "eur", "status": "succeeded",
        "metadata": {"invoice": "2026-000002", "account": "C2"},
    });
    let body = succeeded("evt_forged", &forged);
    let wrong = post_event(d.addr, &body, "whsec_wrong", now());
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.json()["error"], "signature: no v1 signature matches");
    let stale = post_event(d.addr, &body, WEBHOOK_SECRET, now() - 301);
    assert_eq!(stale.status, 400);
    assert_eq!(
        stale.json()["error"],
        "signature: the signed timestamp is outside the tolerance"
    );
    let unsigned = http_request(d.addr, "POST", "/api/v1/psp/stripe/webhook", &[], &body);
    assert_eq!(unsigned.status, 400);
    assert_eq!(
        unsigned.json()["error"],
        "signature: no Stripe-Signature header"
    );
    let sig = tollgate::payments::psp::stripe::sign(&body, WEBHOOK_SECRET.as_bytes(), now());
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    let r = http_request(
        d.addr,
        "POST",
        "/api/v1/psp/stripe/webhook",
        &[("Stripe-Signature", &sig)],
        &tampered,
    );
    assert_eq!(r.status, 400);
    assert_eq!(payments(&ws, &tok), 1);
    assert_eq!(
        statement(&ws, "C2", Some(&tok)),
        (
            item("2026-000002", "12.10", "overdue", "0.00"),
            "12.10".into()
        )
    );

    // --- C2 pays through its link (localstripe delivers), then 5.00 more: credit.
    let c2 = path_of(&pay_link(&ws, "2026-000002"));
    let page = d.get(&c2).1;
    assert!(page.contains("To pay: EUR 12.10"), "{page}");
    let (_, r) = pay_on_page(d.addr, &ls, &c2, "4242424242424242", false);
    assert_eq!(
        r.json()["message"],
        "Thank you, payment received. Your invoice turns paid in a moment.",
        "{}",
        r.text()
    );
    d.wait_until("the webhook of C2's payment", || {
        statement(&ws, "C2", Some(&tok)).1 == "0.00"
    });
    let extra = serde_json::json!({
        "id": "pi_secondPayment01", "object": "payment_intent", "amount": 500,
        "amount_received": 500, "currency": "eur", "status": "succeeded",
        "metadata": {"invoice": "2026-000002", "account": "C2"},
    });
    let r = post_event(
        d.addr,
        &succeeded("evt_extra", &extra),
        WEBHOOK_SECRET,
        now(),
    );
    assert_eq!(
        r.json()["posted"],
        serde_json::json!({"outcome": "applied", "account": "C2", "invoice": "2026-000002",
            "on_invoice": "0.00", "credit": "5.00"}),
        "{}",
        r.text()
    );
    assert_eq!(
        statement(&ws, "C2", Some(&tok)),
        (item("2026-000002", "0.00", "paid", "12.10"), "-5.00".into())
    );
    assert_eq!(payments(&ws, &tok), 3);

    // --- A payment for no invoice of ours goes to suspense, once.
    let stray = serde_json::json!({
        "id": "pi_strayPayment01", "object": "payment_intent", "amount": 2500,
        "amount_received": 2500, "currency": "eur", "status": "succeeded",
        "metadata": {"invoice": "2099-000042"},
    });
    for _ in 0..2 {
        let r = post_event(
            d.addr,
            &succeeded("evt_stray", &stray),
            WEBHOOK_SECRET,
            now(),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let out = run_env(
        &["payments", "suspense", "--config", ws.config_arg()],
        &[("TOLLGATE_TOKEN", &tok)],
    )
    .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert!(lines[0].contains("\"value\":\"25.00\""), "{}", lines[0]);
    assert!(
        lines[0].contains("stripe payment pi_strayPayment01 for invoice 2099-000042"),
        "{}",
        lines[0]
    );

    // --- A card saved through the SetupIntent webhook (K3).
    let (cus, pm) = ls.customer_with_card("4242424242424242");
    let setup = serde_json::to_vec(&serde_json::json!({
        "id": "evt_setup", "type": "setup_intent.succeeded", "created": now(),
        "data": {"object": {"id": "seti_1", "object": "setup_intent", "status": "succeeded",
            "customer": cus, "payment_method": pm, "metadata": {"account": "K3"}}},
    }))
    .unwrap();
    let r = post_event(d.addr, &setup, WEBHOOK_SECRET, now());
    assert_eq!(r.json()["card_saved"], "K3", "{}", r.text());

    // --- K1 pays; the daemon stops before the webhook comes and Stripe delivers it after
    // the restart (localstripe does not retry: the test re-sends what Stripe would).
    // localstripe's webhook now goes nowhere (as if the daemon were down when it came).
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    ls.post(
        "/_config/webhooks/tollgate",
        &[
            ("url", &format!("http://{dead}/api/v1/psp/stripe/webhook")),
            ("secret", WEBHOOK_SECRET),
            ("events[]", "payment_intent.succeeded"),
        ],
    );
    let k1 = path_of(&pay_link(&ws, "2026-000003"));
    let (_, r) = pay_on_page(d.addr, &ls, &k1, "4242424242424242", false);
    assert_eq!(r.json()["status"], "succeeded", "{}", r.text());
    let pi3 = LocalStripe::id(&ls.payments_for("2026-000003")[0]);
    std::thread::sleep(Duration::from_millis(1500));
    d.stop();
    let d = Daemon::start(&ws);
    assert_eq!(
        statement(&ws, "K1", Some(&tok)).0,
        item("2026-000003", "12.10", "overdue", "0.00")
    );
    let (_, pi3_obj) = ls.get(&format!("/v1/payment_intents/{pi3}"));
    let r = post_event(
        d.addr,
        &succeeded("evt_k1", &pi3_obj),
        WEBHOOK_SECRET,
        now(),
    );
    assert_eq!(r.json()["posted"]["outcome"], "applied", "{}", r.text());
    assert_eq!(
        statement(&ws, "K1", Some(&tok)),
        (item("2026-000003", "0.00", "paid", "12.10"), "0.00".into())
    );
    d.stop();

    // K3's saved card is charged by collect: exactly the open amount.
    let out = run(&[
        "collect",
        "--config",
        ws.config_arg(),
        "--date",
        "2026-10-15",
    ])
    .ok();
    assert_eq!(
        out.stdout,
        "cards: 1 charged, total 12.10 EUR; 0 declined, 0 pending, 0 failed, 1 due without a saved card\n"
    );
    assert_eq!(
        statement(&ws, "K3", None),
        (item("2026-000005", "0.00", "paid", "12.10"), "0.00".into())
    );
}

#[test]
fn card_autopay_declines_without_a_second_charge_and_refunds_through_stripe() {
    let dir = tempfile::tempdir().unwrap();
    let Some(ls) = LocalStripe::start(dir.path()) else {
        return;
    };
    let ws = workspace(&ls);
    let cfg = ws.config_arg();
    let (cus1, pm1) = ls.customer_with_card("4242424242424242");
    // 4000000000000341 attaches, and every charge on it is declined.
    let (cus2, pm2) = ls.customer_with_card("4000000000000341");
    for (a, c, p) in [("K1", &cus1, &pm1), ("K2", &cus2, &pm2)] {
        let out = run(&[
            "payments",
            "card",
            "--config",
            cfg,
            "--account",
            a,
            "--customer",
            c,
            "--payment-method",
            p,
        ])
        .ok();
        assert_eq!(
            out.stdout,
            format!("saved the card of {a}; collect charges it for due invoices\n")
        );
    }
    // Only card accounts get a card.
    let out = run(&[
        "payments",
        "card",
        "--config",
        cfg,
        "--account",
        "C1",
        "--customer",
        &cus1,
        "--payment-method",
        &pm1,
    ]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("account C1 pays by transfer, not card"),
        "{}",
        out.stderr
    );

    let collect = |date: &str| {
        run(&["collect", "--config", cfg, "--date", date])
            .ok()
            .stdout
    };
    // Nothing due before 15 October.
    assert_eq!(
        collect("2026-10-14"),
        "cards: 0 charged, total 0.00 EUR; 0 declined, 0 pending, 0 failed, 0 due without a saved card\n"
    );
    assert!(ls.payment_intents().is_empty());
    // On the due date: K1 charged, K2 declined, K3 has no card.
    assert_eq!(
        collect("2026-10-15"),
        "cards: 1 charged, total 12.10 EUR; 1 declined, 0 pending, 0 failed, 1 due without a saved card\n  2026-000004: declined (card_declined)\n"
    );
    let pis = ls.payment_intents();
    assert_eq!(pis.len(), 2, "one charge each for K1 and K2");
    let mut amounts: Vec<_> = pis
        .iter()
        .map(|p| {
            (
                p["metadata"]["invoice"].as_str().unwrap().to_owned(),
                p["amount"].as_i64().unwrap(),
                p["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    amounts.sort();
    assert_eq!(
        amounts,
        vec![
            ("2026-000003".into(), 1210, "succeeded".into()),
            ("2026-000004".into(), 1210, "requires_payment_method".into()),
        ]
    );
    assert_eq!(
        statement(&ws, "K1", None),
        (item("2026-000003", "0.00", "paid", "12.10"), "0.00".into())
    );
    assert_eq!(
        statement(&ws, "K2", None),
        (
            item("2026-000004", "12.10", "overdue", "0.00"),
            "12.10".into()
        )
    );
    // The declined charge: the collection is `returned` with the code, a notice queued.
    let v: serde_json::Value = serde_json::from_str(
        &run(&[
            "account",
            "statement",
            "K2",
            "--config",
            cfg,
            "--date",
            "2026-10-20",
            "--json",
        ])
        .ok()
        .stdout,
    )
    .unwrap();
    assert_eq!(v["openItems"][0]["directDebit"], "returned", "{v}");
    let outbox = run(&["dunning", "outbox", "--config", cfg]).ok().stdout;
    let notices: Vec<&str> = outbox
        .lines()
        .filter(|l| l.contains("card_declined"))
        .collect();
    assert_eq!(notices.len(), 1, "{outbox}");
    assert!(
        notices[0].contains("\"subject\":\"Card payment declined: invoice 2026-000004\""),
        "{}",
        notices[0]
    );
    // The next run charges nobody again.
    assert_eq!(
        collect("2026-10-16"),
        "cards: 0 charged, total 0.00 EUR; 0 declined, 0 pending, 0 failed, 1 due without a saved card\n"
    );
    assert_eq!(ls.payment_intents().len(), 2);
    let outbox2 = run(&["dunning", "outbox", "--config", cfg]).ok().stdout;
    assert_eq!(outbox2.matches("card_declined").count(), 1);

    // --- A refund through Stripe: K1's invoice credited in full, the credit refunded.
    let pi1 = pis
        .iter()
        .find(|p| p["metadata"]["invoice"] == "2026-000003")
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .unwrap();
    let refund = |amount: &str| {
        run(&[
            "payments",
            "refund",
            "--config",
            cfg,
            "--account",
            "K1",
            "--amount",
            amount,
            "--date",
            "2026-10-20",
            "--payment",
            &pi1,
        ])
    };
    // No credit yet: refused, nothing asked of Stripe.
    let out = refund("12.10");
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains("account K1 has a credit of 0.00, less than the refund of 12.10"),
        "{}",
        out.stderr
    );
    run(&[
        "invoice",
        "credit",
        "2026-000003",
        "--config",
        cfg,
        "--reason",
        "goodwill",
        "--issue-date",
        "2026-10-19",
    ])
    .ok();
    assert_eq!(statement(&ws, "K1", None).1, "-12.10");
    let out = refund("12.11");
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains("has 12.10 left to refund, less than 12.11"),
        "{}",
        out.stderr
    );
    let out = refund("12.10").ok();
    assert_eq!(
        out.stdout,
        format!("refunded 12.10 to K1 through stripe (payment {pi1}); balance now 0.00\n")
    );
    assert_eq!(statement(&ws, "K1", None).1, "0.00");
    let (s, v) = ls.get(&format!("/v1/refunds?payment_intent={pi1}"));
    assert_eq!(s, 200, "{v}");
    let refunds = v["data"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "{v}");
    assert_eq!(refunds[0]["amount"], 1210);
    // Nothing left to refund on it.
    let out = refund("0.01");
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("has 0.00 left to refund"),
        "{}",
        out.stderr
    );
}

/// The pay page's calls at the HTTP level, as its script makes them: a bad token, a
/// cross-site request, a form post, a declined card (nothing posted, another card
/// pays), a replayed confirm (no second charge), another account's SetupIntent (404,
/// nothing charged), a 3-D Secure card (`requires_action`, authenticated, then paid),
/// "remember this card" (card accounts only; saved like `/my/card` saves it), the
/// `setup_intent.succeeded` of a one-payment card (not kept), and `collect` leaving an
/// invoice paid on the page alone while its webhook has not come.
#[test]
fn the_pay_page_charges_once_declines_authenticates_and_refuses_other_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let Some(ls) = LocalStripe::start(dir.path()) else {
        return;
    };
    let ws = workspace(&ls);
    let tok = ws.add_token("ops", "operator");
    let d = Daemon::start(&ws);
    ls.post(
        "/_config/webhooks/tollgate",
        &[
            (
                "url",
                &format!("http://{}/api/v1/psp/stripe/webhook", d.addr),
            ),
            ("secret", WEBHOOK_SECRET),
            ("events[]", "payment_intent.succeeded"),
        ],
    );
    let c1 = path_of(&pay_link(&ws, "2026-000001"));
    let c2 = path_of(&pay_link(&ws, "2026-000002"));
    let k1 = path_of(&pay_link(&ws, "2026-000003"));
    let k2 = path_of(&pay_link(&ws, "2026-000004"));
    let no_setups = |ls: &LocalStripe| {
        ls.get("/v1/setup_intents").1["data"]
            .as_array()
            .unwrap()
            .is_empty()
    };

    // --- Refused before anything is asked of Stripe: a wrong token, another invoice's
    // token, a browser's cross-site request, a form instead of JSON.
    let c2_t = c2.split_once("?t=").unwrap().1;
    for path in [
        "/pay/2026-000001/setup?t=00000000000000000000000000000000".to_owned(),
        format!("/pay/2026-000001/setup?t={c2_t}"),
        format!("/pay/2026-000001/confirm?t={c2_t}"),
        "/pay/2026-000001/confirm".to_owned(),
    ] {
        let r = pay_call(d.addr, &path, serde_json::json!({"setup_intent": "seti_x"}));
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.json()["status"], "not_found");
    }
    let r = http_request(
        d.addr,
        "POST",
        &call_of(&c1, "setup"),
        &[
            ("Content-Type", "application/json"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        b"{}",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = http_request(
        d.addr,
        "POST",
        &call_of(&c1, "setup"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"remember=true",
    );
    assert_eq!(r.status, 415, "{}", r.text());
    // "Remember this card" for a transfer account: refused, nothing made.
    let r = pay_call(
        d.addr,
        &call_of(&c1, "setup"),
        serde_json::json!({"remember": true}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"status": "not_card",
            "message": "Uw account betaalt niet per kaart: de kaart kan niet worden bewaard."})
    );
    assert!(no_setups(&ls));
    assert!(ls.payment_intents().is_empty());

    // --- C1: a card every charge of which is declined. Nothing posted, still open.
    let (declined_si, r) = pay_on_page(d.addr, &ls, &c1, "4000000000000341", false);
    assert_eq!(r.status, 402, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"status": "declined", "code": "card_declined",
            "message": "Uw kaart is geweigerd. Er is niets afgeschreven. Probeer het met een andere kaart."})
    );
    assert_eq!(ls.payments_for("2026-000001").len(), 1);
    assert_eq!(
        statement(&ws, "C1", Some(&tok)),
        (
            item("2026-000001", "12.10", "overdue", "0.00"),
            "12.10".into()
        )
    );
    // Another card pays: a second attempt, the open amount exactly.
    let (good_si, r) = pay_on_page(d.addr, &ls, &c1, "4242424242424242", false);
    assert_eq!(r.json()["status"], "succeeded", "{}", r.text());
    let pis = ls.payments_for("2026-000001");
    assert_eq!(pis.len(), 2, "{pis:?}");
    assert_eq!(
        pis.iter()
            .filter(|p| p["status"] == "succeeded" && p["amount"] == 1210)
            .count(),
        1,
        "{pis:?}"
    );
    // Replays of either confirm, before the webhook has come: no third charge.
    for si in [&good_si, &declined_si, &good_si] {
        let r = pay_call(
            d.addr,
            &call_of(&c1, "confirm"),
            serde_json::json!({"setup_intent": si}),
        );
        assert!(
            ["succeeded", "nothing_open"].contains(&r.json()["status"].as_str().unwrap()),
            "{}",
            r.text()
        );
    }
    d.wait_until("C1's webhook", || {
        statement(&ws, "C1", Some(&tok)).1 == "0.00"
    });
    assert_eq!(ls.payments_for("2026-000001").len(), 2);
    assert_eq!(
        statement(&ws, "C1", Some(&tok)),
        (item("2026-000001", "0.00", "paid", "12.10"), "0.00".into())
    );
    assert_eq!(payments(&ws, &tok), 1);

    // --- K1's SetupIntent posted to C2's confirm: 404, nothing charged; neither a made-up
    // nor a malformed id; nor C1's own (another invoice's) SetupIntent.
    let r = pay_call(d.addr, &call_of(&k1, "setup"), serde_json::json!({}));
    let k1_si = LocalStripe::id(&ls.confirm_setup(
        r.json()["client_secret"].as_str().unwrap(),
        "4242424242424242",
    ));
    for si in [
        k1_si.as_str(),
        good_si.as_str(),
        "seti_doesnotexist",
        "../v1/customers",
        "",
    ] {
        let r = pay_call(
            d.addr,
            &call_of(&c2, "confirm"),
            serde_json::json!({"setup_intent": si}),
        );
        assert_eq!(r.status, 404, "{si}: {}", r.text());
    }
    assert!(ls.payments_for("2026-000002").is_empty());
    // A SetupIntent not confirmed (yet): 409, nothing charged.
    let r = pay_call(d.addr, &call_of(&c2, "setup"), serde_json::json!({}));
    let cs = r.json()["client_secret"].as_str().unwrap().to_owned();
    let unconfirmed = cs.split("_secret_").next().unwrap().to_owned();
    let r = pay_call(
        d.addr,
        &call_of(&c2, "confirm"),
        serde_json::json!({"setup_intent": unconfirmed}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(
        r.json()["message"],
        "The card has not been confirmed (yet). Please try again."
    );
    assert!(ls.payments_for("2026-000002").is_empty());

    // --- C2 (English): a 3-D Secure card. The bank asks; the answer carries the client
    // secret; asking again changes nothing; once authenticated, paid.
    let (si3, r) = pay_on_page(d.addr, &ls, &c2, "4000002760003184", false);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["status"], "requires_action", "{v}");
    assert_eq!(v["message"], "Please confirm the payment with your bank.");
    let cs = v["client_secret"].as_str().unwrap().to_owned();
    let pis = ls.payments_for("2026-000002");
    assert_eq!(pis.len(), 1);
    assert_eq!(pis[0]["status"], "requires_action");
    assert_eq!(pis[0]["client_secret"].as_str(), Some(cs.as_str()));
    let again = pay_call(
        d.addr,
        &call_of(&c2, "confirm"),
        serde_json::json!({"setup_intent": si3}),
    );
    assert_eq!(again.json()["client_secret"].as_str(), Some(cs.as_str()));
    assert_eq!(ls.payments_for("2026-000002").len(), 1);
    assert_eq!(ls.authenticate(&cs, true)["status"], "succeeded");
    let r = pay_call(
        d.addr,
        &call_of(&c2, "confirm"),
        serde_json::json!({"setup_intent": si3}),
    );
    assert_eq!(
        r.json(),
        serde_json::json!({"status": "succeeded",
            "message": "Thank you, payment received. Your invoice turns paid in a moment."})
    );
    d.wait_until("C2's webhook", || {
        statement(&ws, "C2", Some(&tok)).1 == "0.00"
    });
    assert_eq!(ls.payments_for("2026-000002").len(), 1);
    assert_eq!(payments(&ws, &tok), 2);

    // --- K2 (a card account) pays once, without keeping the card; Stripe's
    // setup_intent.succeeded for that one-payment card keeps nothing either.
    assert!(d.get(&k2).1.contains("id=\"remember\""));
    let (k2_si, r) = pay_on_page(d.addr, &ls, &k2, "4242424242424242", false);
    assert_eq!(r.json()["status"], "succeeded", "{}", r.text());
    d.wait_until("K2's webhook", || {
        statement(&ws, "K2", Some(&tok)).1 == "0.00"
    });
    let (_, si) = ls.get(&format!("/v1/setup_intents/{k2_si}"));
    let event = serde_json::to_vec(&serde_json::json!({
        "id": "evt_k2_seti", "object": "event", "type": "setup_intent.succeeded",
        "created": now(), "data": {"object": si},
    }))
    .unwrap();
    let r = post_event(d.addr, &event, WEBHOOK_SECRET, now());
    assert_eq!(
        r.json()["ignored"],
        "setup_intent for one payment (usage on_session): no card kept",
        "{}",
        r.text()
    );

    // --- K1 pays and keeps the card ("remember this card": usage=off_session). Its
    // webhook does not come (localstripe's goes nowhere now), and `collect` on the due
    // date leaves the invoice alone: paid on the page, waiting for the provider.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    ls.post(
        "/_config/webhooks/tollgate",
        &[
            ("url", &format!("http://{dead}/api/v1/psp/stripe/webhook")),
            ("secret", WEBHOOK_SECRET),
            ("events[]", "payment_intent.succeeded"),
        ],
    );
    let (kept_si, r) = pay_on_page(d.addr, &ls, &k1, "5555555555554444", true);
    assert_eq!(r.json()["status"], "succeeded", "{}", r.text());
    let (_, si) = ls.get(&format!("/v1/setup_intents/{kept_si}"));
    assert_eq!(si["usage"], "off_session");
    let k1_pis = ls.payments_for("2026-000003");
    assert_eq!(k1_pis.len(), 1);
    d.stop();
    let ledger = tollgate::store::Ledger::open(&ws.data()).unwrap();
    let card = tollgate::payments::psp::saved_card(&ledger, "K1")
        .unwrap()
        .expect("K1's card kept");
    assert_eq!(
        (
            card.customer.as_str(),
            card.payment_method.as_str(),
            card.last4.as_deref(),
            card.source
        ),
        (
            si["customer"].as_str().unwrap(),
            si["payment_method"].as_str().unwrap(),
            Some("4444"),
            format!("setup_intent {kept_si}")
        )
    );
    assert_eq!(
        tollgate::payments::psp::saved_card(&ledger, "K2").unwrap(),
        None
    );
    drop(ledger);
    let out = run(&[
        "collect",
        "--config",
        ws.config_arg(),
        "--date",
        "2026-10-15",
    ])
    .ok();
    assert_eq!(
        out.stdout,
        "cards: 0 charged, total 0.00 EUR; 0 declined, 1 pending, 0 failed, 1 due without a saved card\n  2026-000003: paid on the pay page, waiting for the provider\n"
    );
    assert_eq!(ls.payments_for("2026-000003").len(), 1);
    // The webhook Stripe retries comes after all: K1 paid, once.
    let d = Daemon::start(&ws);
    let (_, pi) = ls.get(&format!(
        "/v1/payment_intents/{}",
        LocalStripe::id(&k1_pis[0])
    ));
    let r = post_event(
        d.addr,
        &succeeded("evt_k1_late", &pi),
        WEBHOOK_SECRET,
        now(),
    );
    assert_eq!(r.json()["posted"]["outcome"], "applied", "{}", r.text());
    assert_eq!(
        statement(&ws, "K1", Some(&tok)),
        (item("2026-000003", "0.00", "paid", "12.10"), "0.00".into())
    );
    d.stop();
}

/// iDEAL on the pay page (see the module documentation), through the daemon's own calls as
/// the page's script makes them; the bank's part is the signed webhook Stripe sends.
#[test]
fn ideal_on_the_pay_page_one_payment_intent_the_return_page_and_the_webhook_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some(ls) = LocalStripe::start(dir.path()) else {
        return;
    };
    let ws = workspace(&ls);
    let tok = ws.add_token("ops", "operator");
    let d = Daemon::start(&ws);
    let c1 = path_of(&pay_link(&ws, "2026-000001"));
    let c2 = path_of(&pay_link(&ws, "2026-000002"));
    let k1 = path_of(&pay_link(&ws, "2026-000003"));
    let c1_t = c1.split_once("?t=").unwrap().1.to_owned();
    let c2_t = c2.split_once("?t=").unwrap().1.to_owned();

    // --- The page offers iDEAL beside the card: first and chosen in Dutch, second in
    // English; the bank chooser's place, the call and the return address.
    let (s, nl) = d.get(&c1);
    assert_eq!(s, 200);
    assert!(
        nl.contains(&format!(
            " data-ideal=\"/pay/2026-000001/ideal?t={c1_t}\" data-return=\"https://pay.tollgate.example/pay/2026-000001/done?t={c1_t}\""
        )),
        "{nl}"
    );
    assert!(
        nl.contains(
            "<fieldset id=\"methods\"><legend>Betaalwijze</legend>\n\
             <label><input type=\"radio\" name=\"method\" value=\"ideal\" checked> iDEAL</label>\n\
             <label><input type=\"radio\" name=\"method\" value=\"card\"> Kaart</label>\n\
             </fieldset>\n<div id=\"ideal-box\"><p>Uw bank</p><div id=\"ideal-bank\"></div></div>\n\
             <div id=\"card-box\" hidden>\n<div id=\"card\"></div>\n"
        ),
        "{nl}"
    );
    assert!(
        nl.contains("elements.create('idealBank')") && nl.contains("stripe.confirmIdealPayment(")
    );
    let (_, en) = d.get(&c2);
    assert!(
        en.contains(
            "<fieldset id=\"methods\"><legend>Payment method</legend>\n\
             <label><input type=\"radio\" name=\"method\" value=\"card\" checked> Card</label>\n\
             <label><input type=\"radio\" name=\"method\" value=\"ideal\"> iDEAL</label>\n\
             </fieldset>\n<div id=\"ideal-box\" hidden><p>Your bank</p><div id=\"ideal-bank\"></div></div>\n\
             <div id=\"card-box\">\n<div id=\"card\"></div>\n"
        ),
        "{en}"
    );
    assert!(
        ls.payment_intents().is_empty(),
        "opening the page asks nothing"
    );

    // --- The call's gate: another invoice's token, a cross-site request, a form.
    let r = pay_call(
        d.addr,
        &format!("/pay/2026-000001/ideal?t={c2_t}"),
        serde_json::json!({}),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    let r = http_request(
        d.addr,
        "POST",
        &call_of(&c1, "ideal"),
        &[
            ("Content-Type", "application/json"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        b"{}",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = http_request(
        d.addr,
        "POST",
        &call_of(&c1, "ideal"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"",
    );
    assert_eq!(r.status, 415, "{}", r.text());
    assert!(ls.payment_intents().is_empty());

    // --- C1 chooses iDEAL: one PaymentIntent of exactly the open amount, iDEAL only,
    // not confirmed; asked again (a double click, a reload), the same one.
    let r = pay_call(d.addr, &call_of(&c1, "ideal"), serde_json::json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let cs = r.json()["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["status"], "ideal");
    let pis = ls.payments_for("2026-000001");
    assert_eq!(pis.len(), 1, "{pis:?}");
    let pi = &pis[0];
    assert_eq!(
        (
            &pi["amount"],
            &pi["currency"],
            &pi["payment_method_types"],
            &pi["metadata"]["account"],
            &pi["status"],
            pi["client_secret"].as_str()
        ),
        (
            &serde_json::json!(1210),
            &serde_json::json!("eur"),
            &serde_json::json!(["ideal"]),
            &serde_json::json!("C1"),
            &serde_json::json!("requires_payment_method"),
            Some(cs.as_str())
        )
    );
    let pi_id = LocalStripe::id(pi);
    for _ in 0..2 {
        let r = pay_call(d.addr, &call_of(&c1, "ideal"), serde_json::json!({}));
        assert_eq!(r.json()["client_secret"].as_str(), Some(cs.as_str()));
    }
    assert_eq!(ls.payment_intents().len(), 1);

    // --- Back from the bank before it paid: "did not go through", the way back.
    let done = |inv: &str, t: &str, pi: &str| {
        d.get(&format!(
            "/pay/{inv}/done?t={t}&payment_intent={pi}&redirect_status=failed"
        ))
    };
    let (s, page) = done("2026-000001", &c1_t, &pi_id);
    assert_eq!(s, 200);
    assert!(
        page.contains(&format!(
            "<p id=\"not-paid\">De betaling is niet gelukt.</p>\n<p><a id=\"again\" href=\"/pay/2026-000001?t={c1_t}\">Terug naar de betaalpagina</a></p>"
        )),
        "{page}"
    );
    // Another invoice's token, C1's payment on C2's page, a made-up or malformed id,
    // none at all: 404.
    let c2_pi = {
        let r = pay_call(d.addr, &call_of(&c2, "ideal"), serde_json::json!({}));
        assert_eq!(r.status, 200, "{}", r.text());
        LocalStripe::id(&ls.payments_for("2026-000002")[0])
    };
    for (inv, t, pi) in [
        ("2026-000001", c2_t.as_str(), pi_id.as_str()),
        ("2026-000002", c2_t.as_str(), pi_id.as_str()),
        ("2026-000001", c1_t.as_str(), c2_pi.as_str()),
        ("2026-000001", c1_t.as_str(), "pi_doesnotexist"),
        ("2026-000001", c1_t.as_str(), "..%2Fv1%2Fcustomers"),
        ("2026-000001", c1_t.as_str(), ""),
    ] {
        let (s, page) = done(inv, t, pi);
        assert_eq!(s, 404, "{inv} {pi}: {page}");
    }
    let (s, page) = done("2026-000002", &c2_t, &c2_pi);
    assert_eq!(s, 200);
    assert!(
        page.contains("<p id=\"not-paid\">The payment did not go through.</p>"),
        "{page}"
    );

    // --- The bank pays: Stripe's signed payment_intent.succeeded for that PaymentIntent
    // posts exactly one payment; a replay changes nothing; the return page thanks.
    let (_, mut paid) = ls.get(&format!("/v1/payment_intents/{pi_id}"));
    paid["status"] = "succeeded".into();
    paid["amount_received"] = 1210.into();
    let event = succeeded("evt_c1_ideal", &paid);
    let r = post_event(d.addr, &event, WEBHOOK_SECRET, now());
    assert_eq!(
        r.json()["posted"],
        serde_json::json!({"outcome": "applied", "account": "C1", "invoice": "2026-000001",
            "on_invoice": "12.10", "credit": "0.00"}),
        "{}",
        r.text()
    );
    let r = post_event(d.addr, &event, WEBHOOK_SECRET, now());
    assert_eq!(r.json()["posted"]["outcome"], "duplicate", "{}", r.text());
    assert_eq!(
        statement(&ws, "C1", Some(&tok)),
        (item("2026-000001", "0.00", "paid", "12.10"), "0.00".into())
    );
    assert_eq!(payments(&ws, &tok), 1);
    let (s, page) = done("2026-000001", &c1_t, &pi_id);
    assert_eq!(s, 200);
    assert!(
        page.contains("<p id=\"thanks\">Dank u wel, uw betaling is ontvangen; uw factuur staat zo op betaald.</p>"),
        "{page}"
    );
    // Nothing open now: no second PaymentIntent.
    let r = pay_call(d.addr, &call_of(&c1, "ideal"), serde_json::json!({}));
    assert_eq!(r.json()["status"], "nothing_open", "{}", r.text());
    assert_eq!(ls.payments_for("2026-000001").len(), 1);

    // --- K1 (a card account with a saved card) starts paying with iDEAL; `collect` on the
    // due date leaves the invoice alone while it is under way.
    let r = pay_call(d.addr, &call_of(&k1, "ideal"), serde_json::json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    let k1_ideal = LocalStripe::id(&ls.payments_for("2026-000003")[0]);
    d.stop();
    let (cus, pm) = ls.customer_with_card("4242424242424242");
    run(&[
        "payments",
        "card",
        "--config",
        ws.config_arg(),
        "--account",
        "K1",
        "--customer",
        &cus,
        "--payment-method",
        &pm,
    ])
    .ok();
    let out = run(&[
        "collect",
        "--config",
        ws.config_arg(),
        "--date",
        "2026-10-15",
    ])
    .ok();
    assert_eq!(
        out.stdout,
        "cards: 0 charged, total 0.00 EUR; 0 declined, 1 pending, 0 failed, 2 due without a saved card\n  2026-000003: iDEAL payment under way on the pay page, waiting for the bank\n"
    );
    assert_eq!(ls.payments_for("2026-000003").len(), 1);

    // --- K1 pays by card after all: the iDEAL payment is cancelled at Stripe first (it
    // cannot be completed at the bank any more), the card pays the open amount once.
    let d = Daemon::start(&ws);
    let (_, r) = pay_on_page(d.addr, &ls, &k1, "4242424242424242", false);
    assert_eq!(r.json()["status"], "succeeded", "{}", r.text());
    let pis = ls.payments_for("2026-000003");
    let status = |id: &str| {
        pis.iter()
            .find(|p| p["id"] == id)
            .map(|p| p["status"].as_str().unwrap().to_owned())
    };
    assert_eq!(pis.len(), 2, "{pis:?}");
    assert_eq!(status(&k1_ideal).as_deref(), Some("canceled"));
    assert_eq!(
        pis.iter()
            .filter(|p| p["status"] == "succeeded" && p["amount"] == 1210)
            .count(),
        1,
        "{pis:?}"
    );
    d.stop();

    // --- A tariff not in EUR: no iDEAL on the page, the call refused (409).
    let plans = ws.root.join("tariffs/plans.toml");
    let text = std::fs::read_to_string(&plans).unwrap();
    assert!(text.contains("currency = \"EUR\""), "{text}");
    std::fs::write(
        &plans,
        text.replace("currency = \"EUR\"", "currency = \"USD\""),
    )
    .unwrap();
    let d = Daemon::start(&ws);
    let (s, page) = d.get(&c2);
    assert_eq!(s, 200);
    assert!(page.contains("To pay: USD 12.10"), "{page}");
    assert!(
        !page.contains("id=\"methods\"") && !page.contains("data-ideal"),
        "{page}"
    );
    let r = pay_call(d.addr, &call_of(&c2, "ideal"), serde_json::json!({}));
    assert_eq!(
        (r.status, r.json()),
        (
            409,
            serde_json::json!({"status": "not_offered", "message": "iDEAL cannot be used for this invoice."})
        )
    );
    assert_eq!(ls.payments_for("2026-000002").len(), 1);
    d.stop();
}
