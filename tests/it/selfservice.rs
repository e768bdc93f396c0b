//! The customer's self-service page `/my/` through the real daemon: sign-in links by
//! email (a real SMTP server, aiosmtpd), single use, rate limits, answers that do not
//! tell whether an address exists, sessions scoped to one account, CSRF on every form,
//! and a walk over every route with account A's session asking for account B's things by
//! every identifier (404). Then headless Chromium signs in through the mailed link, sees
//! the usage and downloads a PDF.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::mailbox::{free_port, Mailbox};
use crate::common::tools;
use crate::common::*;

const ACCOUNTS: &str = "\
account_id,plan,name,email,language,country
A1,flat,Alice Jansen,alice@example.com,en,NL
B1,flat,Bob de Vries,Bob@Example.com,nl,NL
";

/// The open month (now, Europe/Amsterdam is at most a day off: day 2 is safe... unless
/// the test runs in the first hours of a month, when the records are dated ahead).
fn this_month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

/// A workspace with A1 and B1: October billed (closed, issue 2026-11-01, due
/// 2026-11-15), A1 paid 5.00 of it, and unbilled usage in the current month.
fn workspace(smtp: u16, listen: &str, public_url: &str) -> (Ws, String, String) {
    let ws = Ws::hand();
    std::fs::write(ws.root.join("accounts.csv"), ACCOUNTS).unwrap();
    let cfg = std::fs::read_to_string(&ws.config).unwrap().replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{listen}\""),
    );
    std::fs::write(
        &ws.config,
        format!(
            "{cfg}\n[outbox]\nsmtp = \"127.0.0.1:{smtp}\"\nfrom = \"billing@tollgate.example\"\n\n\
             [selfservice]\npublic_url = \"{public_url}\"\n"
        ),
    )
    .unwrap();
    let oct = ws.root.join("oct.csv");
    std::fs::write(
        &oct,
        cdr_file(&[
            "o1,A1,voice,+31611111111,+31201234567,2026-10-10T10:00:00+02:00,60,",
            "o2,B1,voice,+31622222222,+442071234567,2026-10-10T10:00:00+02:00,60,",
        ]),
    )
    .unwrap();
    ws.ingest(&[&oct]).ok();
    ws.close("2026-10", "2026-11-01").ok();
    let invs = ws.read_invoices("2026-10");
    let number = |a: &str| {
        invs.iter()
            .find(|i| i["account_id"] == a)
            .unwrap_or_else(|| panic!("invoice of {a}"))["number"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (a, b) = (number("A1"), number("B1"));
    run(&[
        "payments",
        "record",
        "--config",
        ws.config_arg(),
        "--account",
        "A1",
        "--amount",
        "5.00",
        "--date",
        "2026-11-05",
        "--invoice",
        &a,
    ])
    .ok();
    let m = this_month();
    let now = ws.root.join("now.csv");
    std::fs::write(
        &now,
        cdr_file(&[
            &format!("n1,A1,voice,+31611111111,+31201234567,{m}-01T00:30:00+01:00,125,"),
            &format!("n2,A1,sms,+31611111111,+31201234567,{m}-01T00:31:00+01:00,,"),
            &format!("n3,A1,data,+31611111111,,{m}-01T00:32:00+01:00,,2097152"),
            &format!("n4,B1,voice,+31622222222,+442071234567,{m}-01T00:30:00+01:00,300,"),
        ]),
    )
    .unwrap();
    ws.ingest(&[&now]).ok();
    (ws, a, b)
}

/// A form body, every value percent-encoded.
pub(crate) fn form(fields: &[(&str, &str)]) -> Vec<u8> {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// A browser of one visitor: its cookies, kept between requests.
pub(crate) struct Visitor {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) cookies: Vec<(String, String)>,
    pub(crate) lang: &'static str,
}

impl Visitor {
    pub(crate) fn new(addr: std::net::SocketAddr) -> Visitor {
        Visitor {
            addr,
            cookies: Vec::new(),
            lang: "en-GB,en;q=0.9",
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, r: &Resp) {
        for (k, v) in &r.headers {
            if k != "set-cookie" {
                continue;
            }
            let (name, rest) = v.split_once('=').unwrap();
            let value = rest.split(';').next().unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    pub(crate) fn get(&mut self, path: &str) -> Resp {
        let c = self.cookie_header();
        let r = http_request(
            self.addr,
            "GET",
            path,
            &[("Cookie", &c), ("Accept-Language", self.lang)],
            b"",
        );
        self.keep(&r);
        r
    }

    pub(crate) fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let c = self.cookie_header();
        let r = http_request(
            self.addr,
            "POST",
            path,
            &[
                ("Cookie", &c),
                ("Accept-Language", self.lang),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            &form(fields),
        );
        self.keep(&r);
        r
    }

    pub(crate) fn cookie(&self, name: &str) -> String {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// Asks for a link for `email` (the sign-in form first, for its CSRF cookie).
    pub(crate) fn ask_link(&mut self, email: &str) -> Resp {
        if self.cookie("tg_my_pre").is_empty() {
            let r = self.get("/my/");
            assert_eq!(r.status, 200);
        }
        let csrf = self.cookie("tg_my_pre");
        self.post("/my/link", &[("email", email), ("csrf", &csrf)])
    }

    /// Follows a mailed link: the confirmation page, then its button.
    pub(crate) fn follow(&mut self, link_path: &str) -> Resp {
        let r = self.get(link_path);
        assert_eq!(r.status, 200, "{}", r.text());
        let token = link_path.split("token=").nth(1).unwrap();
        assert!(r
            .text()
            .contains(&format!("name=\"token\" value=\"{token}\"")));
        let csrf = self.cookie("tg_my_pre");
        self.post("/my/signin", &[("token", token), ("csrf", &csrf)])
    }
}

/// The path of the sign-in link in a mail (`/my/signin?token=…`) after `public_url`.
pub(crate) fn link_of(body: &str, public_url: &str) -> String {
    let start = body
        .find(&format!("{public_url}/my/signin?token="))
        .unwrap_or_else(|| panic!("no link in {body}"));
    let rest = &body[start + public_url.len()..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let path = rest[..end].to_owned();
    let token = path.split("token=").nth(1).unwrap();
    assert_eq!(token.len(), 64, "{path}");
    assert!(token.bytes().all(|c| c.is_ascii_hexdigit()));
    path
}

/// A session's CSRF token, from the sign-out form of its page.
pub(crate) fn csrf_of(page: &str) -> String {
    let at = page
        .find("action=\"/my/signout\"><input type=\"hidden\" name=\"csrf\" value=\"")
        .expect("sign-out form");
    let rest = &page[at..];
    let v = rest.split("value=\"").nth(1).unwrap();
    v[..64].to_owned()
}

#[test]
fn sign_in_by_link_scopes_the_session_to_one_account() {
    let Some(mb) = Mailbox::start() else { return };
    let public = "https://my.tollgate.example";
    let (ws, inv_a, inv_b) = workspace(mb.port, "127.0.0.1:0", public);
    let d = Daemon::start(&ws);
    let mut a = Visitor::new(d.addr);

    // The sign-in form sets the pre-session CSRF cookie: HttpOnly, SameSite=Strict,
    // Secure (public_url is https), scoped to /my/.
    let r = a.get("/my/");
    assert_eq!(r.status, 200);
    let set = r.header("set-cookie").unwrap().to_owned();
    assert!(set.starts_with("tg_my_pre="), "{set}");
    assert!(
        set.ends_with("; Path=/my/; Max-Age=3600; HttpOnly; SameSite=Strict; Secure"),
        "{set}"
    );
    assert!(r.text().contains("name=\"email\""));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));

    // Without the CSRF token, or with a wrong one: refused, nothing sent.
    let r = a.post("/my/link", &[("email", "alice@example.com")]);
    assert_eq!(r.status, 403);
    let r = a.post(
        "/my/link",
        &[("email", "alice@example.com"), ("csrf", &"0".repeat(64))],
    );
    assert_eq!(r.status, 403);

    // Known and unknown addresses get the same answer, byte for byte.
    let known = a.ask_link("  Alice@Example.com ");
    assert_eq!(known.status, 200);
    let mails = mb.wait_for(1);
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, "alice@example.com");
    assert_eq!(mails[0].subject, "Sign in to Tollgate Telecom B.V.");
    assert!(mails[0]
        .body
        .contains("Account A1:\nhttps://my.tollgate.example/my/signin?token="));
    assert!(mails[0]
        .body
        .contains("The link works once, within 15 minutes."));
    let link = link_of(&mails[0].body, public);

    // A GET of the link (a mail scanner) uses nothing up; the button does.
    let r = a.follow(&link);
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/my/"));
    let set = r.header("set-cookie").unwrap().to_owned();
    assert!(set.starts_with("tg_my="), "{set}");
    assert!(
        set.ends_with("; Path=/my/; Max-Age=3600; HttpOnly; SameSite=Strict; Secure"),
        "{set}"
    );
    let session = a.cookie("tg_my");
    assert_eq!(session.len(), 64);

    // The link works once.
    let mut other = Visitor::new(d.addr);
    let r = other.follow(&link);
    assert_eq!(r.status, 410);
    assert!(r
        .text()
        .contains("This link has expired or was used already."));
    assert!(other.cookie("tg_my").is_empty());
    // A tampered link opens nothing either.
    let mut t = link.clone();
    let last = t.pop().unwrap();
    t.push(if last == '0' { '1' } else { '0' });
    assert_eq!(other.follow(&t).status, 410);

    // The account page, in A1's language (en), with A1's figures only.
    let r = a.get("/my/");
    assert_eq!(r.status, 200);
    let page = r.text();
    for needle in [
        "<html lang=\"en\">",
        "Alice Jansen <span class=\"muted\">· Account A1</span>",
        // October: 10.00 + 0.70 + 21 % VAT = 12.95, 5.00 paid, 7.95 open and overdue.
        "<div class=\"big owed\">€7.95</div>",
        &format!("<td data-l=\"Number\">{inv_a}</td>"),
        "<td data-l=\"Total\" class=\"n\">€12.95</td>",
        "<td data-l=\"Open\" class=\"n\">€7.95</td>",
        "<span class=\"badge b-overdue\">overdue</span>",
        &format!("href=\"/my/bills/{inv_a}/pdf\""),
        &format!("href=\"/my/bills/{inv_a}/ubl\""),
        // The payment: 5 Nov 2026, on A1's invoice.
        "<td data-l=\"Date\">5 Nov 2026</td><td data-l=\"\">payment</td>",
        "<td data-l=\"Amount\" class=\"n\">€5.00</td>",
        // This month so far: 125 s → 3 minutes billed (1.90), one SMS (0.10), 2 MiB (2.00).
        "<td data-l=\"Volume\" class=\"n\">0:03:00</td><td data-l=\"Amount\" class=\"n\">€1.90</td>",
        "<td data-l=\"Volume\" class=\"n\">1 message</td><td data-l=\"Amount\" class=\"n\">€0.10</td>",
        "<td data-l=\"Volume\" class=\"n\">2.09 MB</td><td data-l=\"Amount\" class=\"n\">€2.00</td>",
        "<tfoot><tr><td colspan=\"5\">Total</td><td class=\"n\">€4.00</td></tr></tfoot>",
    ] {
        assert!(page.contains(needle), "missing {needle:?} in\n{page}");
    }
    // No payment provider configured: no pay or card buttons.
    assert!(!page.contains("/my/card"));
    assert!(!page.contains("/pay\""));
    for foreign in [
        "B1",
        "Bob",
        "United Kingdom",
        inv_b.as_str(),
        "13.55",
        "6.00",
    ] {
        assert!(!page.contains(foreign), "{foreign:?} on A1's page:\n{page}");
    }
    let csrf = csrf_of(&page);

    // A1's own documents, byte for byte.
    let r = a.get(&format!("/my/bills/{inv_a}/pdf"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/pdf"));
    assert_eq!(
        r.body,
        std::fs::read(ws.invoices("2026-10").join(format!("{inv_a}.pdf"))).unwrap()
    );
    let r = a.get(&format!("/my/bills/{inv_a}/ubl"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        std::fs::read(ws.invoices("2026-10").join(format!("{inv_a}.xml"))).unwrap()
    );

    // Every route, A1's session, B1's things by every identifier we can name: 404.
    let b_pdf = format!("{inv_b}.pdf");
    let ids = [
        inv_b.clone(),
        "B1".into(),
        b_pdf.clone(),
        format!("2026-10%2F{b_pdf}"),
        format!("..%2F2026-10%2F{inv_b}"),
        format!("..%2F..%2Finvoices%2F2026-10%2F{inv_b}"),
        "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd".into(),
        "..".into(),
        "*".into(),
        format!("{inv_b}%00"),
        format!("{inv_b}%20"),
        inv_b.to_lowercase(),
        "bob%40example.com".into(),
    ];
    for id in &ids {
        for kind in ["pdf", "ubl"] {
            let path = format!("/my/bills/{id}/{kind}");
            let r = a.get(&path);
            assert_eq!(r.status, 404, "{path}: {}", r.text());
            assert!(
                !r.body.starts_with(b"%PDF") && !r.text().contains("Bob"),
                "{path}"
            );
        }
        let path = format!("/my/bills/{id}/pay");
        assert_eq!(a.post(&path, &[("csrf", &csrf)]).status, 404, "{path}");
        // The card route takes no account: B1's identifiers open nothing (no provider
        // here: 503; with one, tests/it/card.rs asks with another account's SetupIntent).
        let path = format!("/my/card/done?setup_intent={id}");
        let r = a.get(&path);
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert!(!r.text().contains("Bob"), "{path}");
    }
    for path in [
        "/my/accounts/B1",
        "/my/accounts/B1/usage",
        "/my/accounts/B1/statement",
        "/my/usage?account=B1",
        "/my/payments?account=B1",
        "/my/B1",
        &format!("/my/{b_pdf}"),
        &format!("/my/invoices/2026-10/{b_pdf}"),
        &format!("/my/bills/{inv_b}"),
        "/my/bills/../../invoices/2026-10",
        "/my/%2e%2e/invoices/2026-10/",
    ] {
        let r = a.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(!r.text().contains("Bob"), "{path}");
    }
    // Query parameters change nothing: still A1's page.
    for path in ["/my/?account=B1", "/my/?account_id=B1&bill=2026-000002"] {
        let r = a.get(path);
        assert_eq!(r.status, 200);
        assert!(
            r.text().contains("Account A1") && !r.text().contains("Bob"),
            "{path}"
        );
    }
    // The operator API is not opened by a customer session.
    let r = a.get("/api/v1/accounts/B1/statement");
    assert_eq!(r.status, 401);

    // Forms of the session need its CSRF token.
    assert_eq!(a.post("/my/signout", &[]).status, 403);
    assert_eq!(
        a.post("/my/signout", &[("csrf", &"0".repeat(64))]).status,
        403
    );
    assert_eq!(a.post(&format!("/my/bills/{inv_a}/pay"), &[]).status, 403);
    assert_eq!(a.post("/my/card", &[("csrf", "")]).status, 403);
    // With it, but no provider configured: the provider is unavailable (503).
    assert_eq!(
        a.post(&format!("/my/bills/{inv_a}/pay"), &[("csrf", &csrf)])
            .status,
        503
    );
    assert_eq!(a.post("/my/card", &[("csrf", &csrf)]).status, 503);

    // A tampered session cookie is no session: the sign-in form, documents redirect.
    let mut forged = Visitor::new(d.addr);
    let mut bad = session.clone();
    let c0 = bad.remove(0);
    bad.insert(0, if c0 == 'a' { 'b' } else { 'a' });
    forged.cookies.push(("tg_my".into(), bad));
    let r = forged.get("/my/");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("name=\"email\"") && !r.text().contains("Alice"));
    let r = forged.get(&format!("/my/bills/{inv_a}/pdf"));
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/my/"));
    // A session cookie sent to another path is not used there either.
    forged.cookies = vec![("tg_my".into(), session.clone())];
    assert_eq!(forged.get("/api/v1/bills").status, 401);

    // Rate limits: per address 3 links per 15 minutes (the 4th is answered the same,
    // and sends nothing); per client 10 requests (the 11th: 429).
    let unknown = a.ask_link("nobody@example.com");
    assert_eq!(unknown.status, 200);
    assert_eq!(unknown.body, known.body);
    assert_eq!(a.ask_link("alice@example.com").body, known.body);
    assert_eq!(a.ask_link("alice@example.com").body, known.body);
    let fourth = a.ask_link("alice@example.com");
    assert_eq!((fourth.status, &fourth.body), (200, &known.body));
    // B1's address is another address (its first link); its mail is in B1's language.
    assert_eq!(a.ask_link("bob@example.com").status, 200);
    let mails = mb.wait_for(4);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let mails_after = mb.mails();
    assert_eq!(mails_after.len(), 4, "{mails_after:?}");
    assert_eq!(
        mails.iter().filter(|m| m.to == "alice@example.com").count(),
        3
    );
    let bob = mails.iter().find(|m| m.to == "bob@example.com").unwrap();
    assert_eq!(bob.subject, "Inloggen bij Tollgate Telecom B.V.");
    assert!(bob
        .body
        .contains("Klantnummer B1:\nhttps://my.tollgate.example/my/signin?token="));
    // Requests so far from this client: 3 refused without CSRF? No: 2 refused (not
    // counted), then alice, nobody, alice ×3, bob = 6 counted; 4 more pass, the 11th not.
    for i in 0..4 {
        let r = a.ask_link(&format!("x{i}@example.com"));
        assert_eq!(r.status, 200, "request {}", 7 + i);
    }
    let r = a.ask_link("y@example.com");
    assert_eq!(r.status, 429);
    assert!(r.text().contains("Too many requests from your connection."));

    // Sign-out ends the session on the server: the old cookie opens nothing.
    let r = a.post("/my/signout", &[("csrf", &csrf)]);
    assert_eq!(r.status, 303);
    let mut replay = Visitor::new(d.addr);
    replay.cookies.push(("tg_my".into(), session));
    let r = replay.get(&format!("/my/bills/{inv_a}/pdf"));
    assert_eq!(r.status, 303);
    // Only hashes of tokens are stored: the database holds neither the link nor the
    // session token.
    d.stop();
    let token = link.split("token=").nth(1).unwrap();
    for f in walk(&ws.data().join("db")) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(64).any(|w| w == token.as_bytes()),
            "{} holds the link token",
            f.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn without_a_selfservice_section_there_is_no_page() {
    let ws = Ws::hand();
    let d = Daemon::start(&ws);
    let (status, _) = d.get("/my/");
    assert_eq!(status, 404);
}

#[test]
fn selfservice_config_is_checked() {
    let ws = Ws::hand();
    let cfg = std::fs::read_to_string(&ws.config).unwrap();
    std::fs::write(
        &ws.config,
        format!("{cfg}\n[selfservice]\npublic_url = \"https://my.example\"\n"),
    )
    .unwrap();
    let out = run(&["accounts", "list", "--config", ws.config_arg()]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("selfservice")
            && out
                .stderr
                .contains("sign-in links go by email: set [outbox] smtp"),
        "{}",
        out.stderr
    );
}

/// Where the screenshots go (looked at by a person; tools/test.sh keeps them).
fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf()
}

/// Drives headless Chromium with Selenium (chromedriver): asks for a link, reads it from
/// the maildir, signs in, takes screenshots at desktop and phone widths, downloads the
/// first invoice's PDF. Prints JSON.
const BROWSER: &str = r##"
import json, mailbox, os, sys, time
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

base, maildir, downloads, shots, chromium, driver_bin = sys.argv[1:7]
opts = webdriver.ChromeOptions()
opts.binary_location = chromium
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--window-size=1280,1000", "--lang=en-GB"]:
    opts.add_argument(a)
opts.add_experimental_option("prefs", {"download.default_directory": downloads,
                                       "download.prompt_for_download": False,
                                       "intl.accept_languages": "en-GB,en"})
d = webdriver.Chrome(service=Service(driver_bin), options=opts)
out = {}
try:
    d.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    d.get(base + "/my/")
    d.find_element(By.ID, "email").send_keys("alice@example.com")
    submit(By.ID, "send")
    out["after_ask"] = d.find_element(By.TAG_NAME, "h1").text
    link = None
    for _ in range(200):
        if os.path.isdir(os.path.join(maildir, "new")):
            for m in mailbox.Maildir(maildir, create=False):
                body = m.get_payload(decode=True).decode("utf-8")
                for line in body.splitlines():
                    if "/my/signin?token=" in line:
                        link = line.strip()
        if link:
            break
        time.sleep(0.1)
    out["link"] = link
    d.get(link)
    submit(By.ID, "continue")
    out["url"] = d.current_url
    out["h1"] = d.find_element(By.TAG_NAME, "h1").text
    out["usage"] = d.find_element(By.CSS_SELECTOR, ".usage").text
    out["balance"] = d.find_element(By.ID, "balance").text
    cookies = d.get_cookies()
    out["cookies"] = [{k: c.get(k) for k in ("name", "httpOnly", "sameSite", "path")} for c in cookies]
    d.set_window_size(1280, 1500)
    d.save_screenshot(os.path.join(shots, "selfservice-desktop.png"))
    d.set_window_size(390, 1800)
    d.save_screenshot(os.path.join(shots, "selfservice-phone.png"))
    out["phone_widths"] = d.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    d.set_window_size(1280, 1000)
    d.find_element(By.CSS_SELECTOR, "#invoices a.doc").click()
    for _ in range(200):
        done = [f for f in os.listdir(downloads) if f.endswith(".pdf")]
        if done:
            break
        time.sleep(0.1)
    out["downloads"] = sorted(os.listdir(downloads))
finally:
    d.quit()
print(json.dumps(out))
"##;

#[test]
fn a_customer_signs_in_sees_usage_and_downloads_a_pdf_in_headless_chromium() {
    let Some((chromium, driver, python)) = tools::selenium() else {
        return;
    };
    let Some(mb) = Mailbox::start() else { return };
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let (ws, inv_a, _) = workspace(mb.port, &format!("127.0.0.1:{port}"), &public);
    let d = Daemon::start(&ws);
    assert_eq!(d.addr.port(), port);
    let downloads = tempfile::tempdir().unwrap();
    let shots = screenshot_dir();
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
        .arg(downloads.path())
        .arg(&shots)
        .arg(&chromium)
        .arg(&driver)
        .env("SE_AVOID_STATS", "true")
        .env("SE_OFFLINE", "true")
        .output()
        .expect("run the browser script");
    assert!(
        o.status.success(),
        "browser script failed:\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&o.stderr),
        d.log()
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["after_ask"], "Check your mailbox", "{v}");
    assert_eq!(v["url"], format!("{public}/my/"), "{v}");
    assert_eq!(v["h1"], "Alice Jansen · Account A1", "{v}");
    let usage = v["usage"].as_str().unwrap();
    for needle in [
        "0:03:00",
        "€1.90",
        "1 message",
        "€0.10",
        "2.09 MB",
        "€2.00",
        "€4.00",
    ] {
        assert!(usage.contains(needle), "{needle:?} not in {usage:?}");
    }
    assert!(v["balance"].as_str().unwrap().contains("€7.95"), "{v}");
    let session = v["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "tg_my")
        .unwrap_or_else(|| panic!("no session cookie: {v}"));
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Strict");
    assert_eq!(session["path"], "/my/");
    // Nothing wider than a phone's screen.
    let w = &v["phone_widths"];
    assert!(w[1].as_u64().unwrap() <= 390, "{v}");
    assert_eq!(w[0], w[1], "the page scrolls sideways on a phone: {v}");
    let pdf = format!("{inv_a}.pdf");
    assert_eq!(v["downloads"], serde_json::json!([pdf]), "{v}");
    assert_eq!(
        std::fs::read(downloads.path().join(&pdf)).unwrap(),
        std::fs::read(ws.invoices("2026-10").join(&pdf)).unwrap()
    );
    for s in ["selfservice-desktop.png", "selfservice-phone.png"] {
        let png = std::fs::read(shots.join(s)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{s}");
    }
}
