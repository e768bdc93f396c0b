//! The customer's self-service page `/my/` (see docs/selfservice.md).
//!
//! A customer asks for a sign-in link for their account's email address
//! (`POST /my/link`); the answer is the same whether the address is known or not, and
//! the mail goes out on a blocking thread after the answer, so neither the page nor
//! its timing tells. The link (`GET /my/signin?token=…`) shows one button; pressing it
//! (`POST /my/signin`) consumes the link and opens a session of THAT ONE ACCOUNT
//! ([`signin`]). Every later request takes the account from the session and only from
//! it: no route takes an account id, and a document is served only when the stored
//! document's account is the session's (anything else is the same 404 as a document
//! that does not exist).
//!
//! Cookies: `tg_my` (the session, `HttpOnly; SameSite=Strict; Path=/my/`, `Secure` when
//! `[selfservice] public_url` is `https://`) and `tg_my_pre` (the CSRF token of the two
//! forms before sign-in, compared with the form's hidden field). Each session has its
//! own CSRF token, carried by every form; a POST without it is refused (403).
//!
//! Must not: take an account from a request, log an email address or a token, run
//! ledger or SMTP work on the runtime (all of it goes through `spawn_blocking`).

pub mod page;
pub mod psp;
pub mod signin;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;

use crate::config::SelfService;
use crate::ingest::engine::Engine;
use crate::payments::Kind;
use page::Lang;
use signin::{Consumed, Limits, Session};

/// The session cookie.
pub const SESSION_COOKIE: &str = "tg_my";
/// The CSRF cookie of the forms before sign-in.
pub const PRE_COOKIE: &str = "tg_my_pre";

/// State of the `/my/` handlers.
#[derive(Clone)]
pub struct MyState {
    engine: Arc<Engine>,
    cfg: SelfService,
    limits: Arc<Limits>,
}

/// The `/my/` routes; none when `[selfservice]` is not configured (404).
pub fn router(engine: Arc<Engine>) -> Router {
    let Some(cfg) = engine.cfg.selfservice.clone() else {
        return Router::new();
    };
    let st = MyState {
        engine,
        cfg,
        limits: Arc::new(Limits::default()),
    };
    Router::new()
        .route("/my", get(|| async { Redirect::to("/my/") }))
        .route("/my/", get(home))
        .route("/my/link", post(ask_link))
        .route("/my/signin", get(confirm).post(sign_in))
        .route("/my/signout", post(sign_out))
        .route("/my/bills/{bill_no}/pdf", get(pdf))
        .route("/my/bills/{bill_no}/ubl", get(ubl))
        .route("/my/bills/{bill_no}/pay", post(pay))
        .route("/my/card", post(card))
        .route("/my/card/done", get(card_done))
        .route("/my/{*rest}", get(not_found).post(not_found))
        .layer(axum::middleware::map_response(headers))
        .with_state(st)
}

/// Headers of every `/my/` response: nothing cached, no framing, no referrer (a link's
/// token never leaves in a Referer), only inline styles and same-origin forms (the card
/// page sets its own policy, which also lets the provider's script in).
async fn headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
    }
    r
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The language of a visitor before sign-in: English when the browser's first choice
/// is English, else Dutch.
fn visitor_lang(h: &HeaderMap) -> Lang {
    let first = h
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if first.starts_with("en") {
        Lang::En
    } else {
        Lang::Nl
    }
}

/// The language of an account: its `language` column, else nl for Dutch (or unknown)
/// countries and en for the rest (as the dunning notices).
fn account_lang(engine: &Engine, account: &str) -> Lang {
    match engine
        .reference()
        .accounts
        .get(account)
        .map(crate::payments::dunning::lang)
    {
        Some("en") => Lang::En,
        _ => Lang::Nl,
    }
}

/// A cookie's value from the `Cookie` headers.
fn cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl MyState {
    fn brand(&self) -> String {
        self.engine.cfg.seller.name.clone()
    }

    fn set_cookie(&self, name: &str, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.cfg.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/my/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
        ))
        .expect("cookie is ASCII")
    }

    /// The CSRF token of the forms before sign-in: the visitor's cookie, or a new one to set.
    fn pre_csrf(&self, h: &HeaderMap) -> (String, Option<HeaderValue>) {
        match cookie(h, PRE_COOKIE).filter(|c| c.len() == 64) {
            Some(c) => (c, None),
            None => {
                let t = signin::random_token().unwrap_or_default();
                let c = self.set_cookie(PRE_COOKIE, &t, 3600);
                (t, Some(c))
            }
        }
    }

    fn html(&self, status: StatusCode, body: String, cookies: Vec<HeaderValue>) -> Response {
        let mut r = (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response();
        for c in cookies {
            r.headers_mut().append(header::SET_COOKIE, c);
        }
        r
    }

    fn message(&self, status: StatusCode, lang: Lang, title: &str, text: &str) -> Response {
        let back = format!(r#"<p><a href="/my/">{}</a></p>"#, lang.t("back"));
        self.html(
            status,
            page::message(lang, &self.brand(), title, text, &back),
            Vec::new(),
        )
    }

    fn not_found(&self, lang: Lang) -> Response {
        self.message(StatusCode::NOT_FOUND, lang, lang.t("not_found"), "")
    }

    fn forbidden(&self, lang: Lang) -> Response {
        self.message(StatusCode::FORBIDDEN, lang, lang.t("forbidden"), "")
    }
}

/// The signed-in customer: the session of the `tg_my` cookie (unknown, tampered or
/// expired → none).
struct Signed {
    session: Session,
    token: String,
}

async fn signed(st: &MyState, h: &HeaderMap) -> Option<Signed> {
    let token = cookie(h, SESSION_COOKIE)?;
    let ledger = st.engine.ledger.clone();
    let t = token.clone();
    let s = tokio::task::spawn_blocking(move || signin::session(&ledger, &t, now()))
        .await
        .ok()?
        .ok()??;
    Some(Signed { session: s, token })
}

/// The client's IP address (the TCP peer).
struct ClientIp(String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<ClientIp, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_default(),
        ))
    }
}

async fn not_found(State(st): State<MyState>, h: HeaderMap) -> Response {
    st.not_found(visitor_lang(&h))
}

/// `GET /my/`: the account page, or the sign-in form.
async fn home(State(st): State<MyState>, h: HeaderMap) -> Response {
    let Some(s) = signed(&st, &h).await else {
        let lang = visitor_lang(&h);
        let (csrf, set) = st.pre_csrf(&h);
        return st.html(
            StatusCode::OK,
            page::signin_form(lang, &st.brand(), &csrf),
            set.into_iter().collect(),
        );
    };
    let engine = st.engine.clone();
    let session = s.session.clone();
    let brand = st.brand();
    match tokio::task::spawn_blocking(move || account_page(&engine, &session, brand)).await {
        Ok(Ok(html)) => st.html(StatusCode::OK, html, Vec::new()),
        Ok(Err(e)) => {
            tracing::error!(target: "tollgate::my", error = %e, "cannot build the account page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response(),
    }
}

/// Builds the account page of the session's account (blocking: ledger reads).
fn account_page(engine: &Engine, s: &Session, brand: String) -> Result<String, String> {
    use crate::ops::api::{ops, pay};
    let account = s.account.as_str();
    let lang = account_lang(engine, account);
    let name = engine
        .reference()
        .accounts
        .get(account)
        .map(|a| a.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| account.to_owned());
    let today = chrono::Utc::now().date_naive();
    let currency = engine.currency();
    // Usage: every month with unbilled usage, else the current month.
    let mut months: Vec<String> = engine
        .ledger
        .unbilled(Some(account))
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|r| r.account == account)
        .map(|r| r.month)
        .collect();
    months.sort();
    months.dedup();
    if months.is_empty() {
        months.push(today.format("%Y-%m").to_string());
    }
    let mut usage = Vec::new();
    let mut allowances = Vec::new();
    for m in &months {
        let p: crate::billing::Period = m.parse()?;
        let doc = ops::usage(engine, account, p).map_err(|e| e.message)?;
        let lines = doc
            .usage
            .iter()
            .filter(|u| u.status == "rated")
            .map(|u| page::UsageLine {
                service: u.service.clone(),
                destination: u.destination.clone(),
                band: u.band.clone(),
                unit: u.unit.clone(),
                count: u.quantity,
                volume: u.billed_volume,
                micros: parse_micros(&u.charge.value),
            })
            .collect();
        usage.push((m.clone(), lines));
        allowances.extend(allowances_of(&doc));
    }
    let st = pay::statement(engine, account, today).map_err(|e| e.message)?;
    let cents = |m: &ops::Money| crate::rate::money::parse_cents(&m.value).unwrap_or(0);
    let dir = &engine.cfg.invoice_dir;
    let invoices = st
        .open_items
        .iter()
        .rev()
        .map(|i| {
            let files = crate::billing::files::stored_invoice(&engine.ledger, &i.bill_no)
                .ok()
                .flatten()
                .map(|inv| dir.join(&inv.period))
                .map(|d| {
                    (
                        d.join(format!("{}.pdf", i.bill_no)).is_file(),
                        d.join(format!("{}.xml", i.bill_no)).is_file(),
                    )
                })
                .unwrap_or((false, false));
            page::InvoiceRow {
                number: i.bill_no.clone(),
                date: i.bill_date.clone(),
                due: i.payment_due_date.clone(),
                total: cents(&i.total),
                open: cents(&i.open),
                status: i.status.clone(),
                has_pdf: files.0,
                has_ubl: files.1,
            }
        })
        .collect();
    let payments = st
        .entries
        .iter()
        .rev()
        .filter_map(|e| {
            let kind = match e.kind.as_str() {
                k if k == Kind::Payment.name() => "k_payment",
                k if k == Kind::Refund.name() => "k_refund",
                k if k == Kind::Return.name() => "k_return",
                _ => return None,
            };
            Some(page::PaymentRow {
                date: e.date.clone(),
                kind,
                cents: -cents(&e.amount),
                invoice: e.bill_no.clone(),
            })
        })
        .collect();
    let end = chrono::DateTime::from_timestamp(s.expires, 0)
        .map(|t| t.format("%H:%M").to_string())
        .unwrap_or_default();
    Ok(page::account(&page::AccountPage {
        lang,
        brand,
        account: account.to_owned(),
        name,
        csrf: s.csrf.clone(),
        currency,
        balance: cents(&st.balance),
        usage,
        allowances,
        invoices,
        payments,
        psp: psp::configured(&engine.cfg),
        card_setup: psp::card_setup_offered(engine, account),
        saved_card: psp::saved_card(engine, account),
        session_end: end,
    }))
}

/// Micros from a 6-decimal string (the usage document's charges).
fn parse_micros(s: &str) -> i128 {
    let neg = s.starts_with('-');
    let (i, f) = s
        .trim_start_matches('-')
        .split_once('.')
        .unwrap_or((s.trim_start_matches('-'), ""));
    let f = format!("{f:0<6}");
    let v = i.parse::<i128>().unwrap_or(0) * 1_000_000 + f[..6].parse::<i128>().unwrap_or(0);
    if neg {
        -v
    } else {
        v
    }
}

/// The usage data's `allowances` (`[{name, included, used, remaining}]`), when the
/// plans have them; read through the document's JSON so the page shows them as soon as
/// the usage data carries them. `unit` is taken when present, else `seconds` for names
/// mentioning minutes/calls, `bytes` for data, otherwise a count.
fn allowances_of(doc: &crate::ops::api::ops::UsageDoc) -> Vec<page::Allowance> {
    let v = serde_json::to_value(doc).unwrap_or_default();
    let Some(list) = v.get("allowances").and_then(|a| a.as_array()) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|a| {
            let n = |k: &str| a.get(k).and_then(|x| x.as_u64());
            let name = a.get("name")?.as_str()?.to_owned();
            let unit = a
                .get("unit")
                .and_then(|u| u.as_str())
                .unwrap_or("messages")
                .to_owned();
            Some(page::Allowance {
                name,
                unit,
                included: n("included")?,
                used: n("used")?,
                remaining: n("remaining")?,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct LinkForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /my/link`: sends sign-in links to the address, when it is an account's.
async fn ask_link(
    State(st): State<MyState>,
    ClientIp(ip): ClientIp,
    h: HeaderMap,
    form: Result<Form<LinkForm>, FormRejection>,
) -> Response {
    let lang = visitor_lang(&h);
    let Ok(Form(f)) = form else {
        return st.forbidden(lang);
    };
    if !cookie(&h, PRE_COOKIE).is_some_and(|c| signin::same(&c, &f.csrf)) {
        return st.forbidden(lang);
    }
    let t = now();
    if !st
        .limits
        .allow(&format!("ip/{ip}"), signin::LIMIT_PER_CLIENT, t)
    {
        return st.message(
            StatusCode::TOO_MANY_REQUESTS,
            lang,
            lang.t("signin_title"),
            lang.t("too_many"),
        );
    }
    let email = f.email.trim().to_lowercase();
    let allowed = !email.is_empty()
        && email.len() <= 254
        && st
            .limits
            .allow(&format!("address/{email}"), signin::LIMIT_PER_ADDRESS, t);
    if allowed {
        // After the answer, on a blocking thread: the answer and its timing are the same
        // for known and unknown addresses.
        let engine = st.engine.clone();
        let cfg = st.cfg.clone();
        tokio::task::spawn_blocking(move || send_links(&engine, &cfg, &email, t));
    }
    st.message(StatusCode::OK, lang, lang.t("sent_title"), lang.t("sent"))
}

/// Stores a link per account with this address and mails them in one message.
fn send_links(engine: &Engine, cfg: &SelfService, email: &str, t: i64) {
    let r = engine.reference();
    let accounts: Vec<&crate::rate::accounts::Account> = r
        .accounts
        .list
        .iter()
        .filter(|a| !a.email.is_empty() && a.email.trim().eq_ignore_ascii_case(email))
        .collect();
    if accounts.is_empty() {
        return;
    }
    let ids: Vec<String> = accounts.iter().map(|a| a.account_id.clone()).collect();
    let tokens = match signin::create_links(&engine.ledger, &ids, email, t) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(target: "tollgate::my", error = %e, "cannot store sign-in links");
            return;
        }
    };
    let lang = account_lang(engine, &ids[0]);
    let (subject, intro, outro) = match lang {
        Lang::Nl => (
            format!("Inloggen bij {}", engine.cfg.seller.name),
            "U vroeg een link aan om in te loggen op uw account. De link is 15 minuten geldig en werkt één keer.",
            "Heeft u dit niet aangevraagd? Dan kunt u deze e-mail negeren.",
        ),
        Lang::En => (
            format!("Sign in to {}", engine.cfg.seller.name),
            "You asked for a link to sign in to your account. The link works once, within 15 minutes.",
            "If you did not ask for it, you can ignore this email.",
        ),
    };
    let mut body = format!("{intro}\n\n");
    for (a, tok) in accounts.iter().zip(&tokens) {
        let label = if lang == Lang::Nl {
            "Klantnummer"
        } else {
            "Account"
        };
        body.push_str(&format!(
            "{label} {}:\n{}/my/signin?token={tok}\n\n",
            a.account_id, cfg.public_url
        ));
    }
    body.push_str(outro);
    body.push('\n');
    let Some(ob) = engine.cfg.outbox.as_ref() else {
        return;
    };
    if ob.smtp.is_none() {
        return;
    }
    match crate::payments::dunning::send_text_mail(ob, email, &subject, &body, None) {
        Ok(()) => tracing::info!(target: "tollgate::my", links = tokens.len(), "sign-in link sent"),
        Err(e) => {
            tracing::warn!(target: "tollgate::my", error = %e, "cannot send a sign-in link")
        }
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// `GET /my/signin?token=…`: a page with one button (the link is used up by the POST).
async fn confirm(
    State(st): State<MyState>,
    h: HeaderMap,
    q: Result<Query<TokenQuery>, QueryRejection>,
) -> Response {
    let lang = visitor_lang(&h);
    let token = q.map(|q| q.0.token).unwrap_or_default();
    let (csrf, set) = st.pre_csrf(&h);
    st.html(
        StatusCode::OK,
        page::confirm(lang, &st.brand(), &token, &csrf),
        set.into_iter().collect(),
    )
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /my/signin`: consumes the link, opens the session, back to `/my/`.
async fn sign_in(
    State(st): State<MyState>,
    h: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let lang = visitor_lang(&h);
    let Ok(Form(f)) = form else {
        return st.forbidden(lang);
    };
    if !cookie(&h, PRE_COOKIE).is_some_and(|c| signin::same(&c, &f.csrf)) {
        return st.forbidden(lang);
    }
    let engine = st.engine.clone();
    let secs = st.cfg.session.as_secs() as i64;
    let r = tokio::task::spawn_blocking(move || {
        let refs = engine.reference();
        signin::consume(&engine.ledger, &f.token, now(), secs, |l| {
            refs.accounts
                .get(&l.account)
                .is_some_and(|a| a.email.trim().eq_ignore_ascii_case(&l.email))
        })
    })
    .await;
    match r {
        Ok(Ok(Consumed::Session(cookie_token, s))) => {
            tracing::info!(target: "tollgate::my", account = %s.account, "signed in");
            let mut resp = Redirect::to("/my/").into_response();
            resp.headers_mut().append(
                header::SET_COOKIE,
                st.set_cookie(SESSION_COOKIE, &cookie_token, secs),
            );
            resp
        }
        Ok(Ok(Consumed::Invalid)) => {
            let form = format!(r#"<p><a href="/my/">{}</a></p>"#, lang.t("new_link"));
            st.html(
                StatusCode::GONE,
                page::message(
                    lang,
                    &st.brand(),
                    lang.t("signin_title"),
                    lang.t("invalid_link"),
                    &form,
                ),
                Vec::new(),
            )
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response(),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The session and a matching CSRF token of a POST, or the response refusing it.
async fn checked_post(
    st: &MyState,
    h: &HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Signed, Response> {
    let Some(s) = signed(st, h).await else {
        return Err(Redirect::to("/my/").into_response());
    };
    let lang = account_lang(&st.engine, &s.session.account);
    match form {
        Ok(Form(f)) if signin::same(&f.csrf, &s.session.csrf) => Ok(s),
        _ => Err(st.forbidden(lang)),
    }
}

/// `POST /my/signout`.
async fn sign_out(
    State(st): State<MyState>,
    h: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let s = match checked_post(&st, &h, form).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let ledger = st.engine.ledger.clone();
    let _ = tokio::task::spawn_blocking(move || signin::end(&ledger, &s.token)).await;
    let mut r = Redirect::to("/my/").into_response();
    r.headers_mut()
        .append(header::SET_COOKIE, st.set_cookie(SESSION_COOKIE, "", 0));
    r
}

/// A document of the session's account: the stored invoice names its account and its
/// folder; anything else (another account's, unknown, malformed) is the same 404.
async fn document(st: MyState, h: HeaderMap, no: String, ext: &'static str) -> Response {
    let Some(s) = signed(&st, &h).await else {
        return Redirect::to("/my/").into_response();
    };
    let lang = account_lang(&st.engine, &s.session.account);
    let engine = st.engine.clone();
    let account = s.session.account.clone();
    let found = tokio::task::spawn_blocking(move || {
        let inv = crate::billing::files::stored_invoice(&engine.ledger, &no)
            .ok()
            .flatten()
            .filter(|inv| inv.account_id == account)?;
        // Both parts of the path come from the stored document, never from the request.
        let path = engine
            .cfg
            .invoice_dir
            .join(&inv.period)
            .join(format!("{}.{ext}", inv.number));
        std::fs::read(&path).ok().map(|b| (inv.number, b))
    })
    .await
    .ok()
    .flatten();
    let Some((number, bytes)) = found else {
        return st.not_found(lang);
    };
    let mime = if ext == "pdf" {
        "application/pdf"
    } else {
        "application/xml"
    };
    (
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{number}.{ext}\""),
            ),
        ],
        Body::from(bytes),
    )
        .into_response()
}

async fn pdf(State(st): State<MyState>, h: HeaderMap, Path(no): Path<String>) -> Response {
    document(st, h, no, "pdf").await
}

async fn ubl(State(st): State<MyState>, h: HeaderMap, Path(no): Path<String>) -> Response {
    document(st, h, no, "xml").await
}

/// `POST /my/bills/{billNo}/pay`: to the payment provider for the open amount of an
/// invoice of the session's account.
async fn pay(
    State(st): State<MyState>,
    h: HeaderMap,
    Path(no): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let s = match checked_post(&st, &h, form).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let lang = account_lang(&st.engine, &s.session.account);
    let engine = st.engine.clone();
    let account = s.session.account.clone();
    let r = tokio::task::spawn_blocking(move || {
        let today = chrono::Utc::now().date_naive();
        let st = crate::ops::api::pay::statement(&engine, &account, today).ok()?;
        let item = st.open_items.into_iter().find(|i| i.bill_no == no)?;
        let open = crate::rate::money::parse_cents(&item.open.value).ok()?;
        Some(psp::pay_url(
            &engine,
            &account,
            &item.bill_no,
            crate::rate::money::Cents(open),
        ))
    })
    .await
    .ok()
    .flatten();
    match r {
        None => st.not_found(lang),
        Some(Ok(url)) => Redirect::to(&url).into_response(),
        Some(Err(_)) => st.message(
            StatusCode::SERVICE_UNAVAILABLE,
            lang,
            lang.t("pay_now"),
            lang.t("psp_unavailable"),
        ),
    }
}

/// `POST /my/card`: the card page of the session's account (card accounts only): a
/// SetupIntent on the account's provider customer, confirmed in the browser by the
/// provider's script.
async fn card(
    State(st): State<MyState>,
    h: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let s = match checked_post(&st, &h, form).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let lang = account_lang(&st.engine, &s.session.account);
    let engine = st.engine.clone();
    let account = s.session.account.clone();
    let nonce = signin::random_token().unwrap_or_default();
    let n = nonce.clone();
    let r = tokio::task::spawn_blocking(move || psp::start_card_setup(&engine, &account, &n))
        .await
        .unwrap_or_else(|_| Err(psp::CardError::Unavailable("the task failed".into())));
    let setup = match r {
        Ok(x) => x,
        Err(e) => return card_refusal(&st, lang, e),
    };
    let Some(p) = st.engine.cfg.psp.as_ref() else {
        return card_refusal(&st, lang, psp::CardError::NoProvider);
    };
    let name = st
        .engine
        .reference()
        .accounts
        .get(&s.session.account)
        .map(|a| a.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| s.session.account.clone());
    let who = format!("{name} · {}", s.session.account);
    let html = page::card_page(&page::CardPage {
        lang,
        brand: &st.brand(),
        who: &who,
        csrf: &s.session.csrf,
        client_secret: &setup.client_secret,
        publishable_key: &p.publishable_key,
        js_url: &p.js_url,
        nonce: &nonce,
    });
    let mut r = st.html(StatusCode::OK, html, Vec::new());
    if let Ok(v) = HeaderValue::from_str(&psp::card_page_csp(&p.js_url, &p.api_base, &nonce)) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// The page answering a card that could not be saved (the reason is logged, never a
/// secret: provider errors carry Stripe's message only).
fn card_refusal(st: &MyState, lang: Lang, e: psp::CardError) -> Response {
    match e {
        psp::CardError::NotOffered => st.message(
            StatusCode::CONFLICT,
            lang,
            lang.t("save_card"),
            lang.t("card_not_card_account"),
        ),
        psp::CardError::NotFound => st.not_found(lang),
        psp::CardError::NoProvider => st.message(
            StatusCode::SERVICE_UNAVAILABLE,
            lang,
            lang.t("save_card"),
            lang.t("psp_unavailable"),
        ),
        psp::CardError::NotConfirmed(m) => {
            tracing::info!(target: "tollgate::my", reason = %m, "card not saved");
            st.message(
                StatusCode::CONFLICT,
                lang,
                lang.t("save_card"),
                lang.t("card_not_confirmed"),
            )
        }
        psp::CardError::Unavailable(m) => {
            tracing::warn!(target: "tollgate::my", error = %m, "card setup: provider or ledger");
            st.message(
                StatusCode::SERVICE_UNAVAILABLE,
                lang,
                lang.t("save_card"),
                lang.t("psp_unavailable"),
            )
        }
    }
}

#[derive(Deserialize)]
struct SetupQuery {
    #[serde(default)]
    setup_intent: String,
}

/// `GET /my/card/done?setup_intent=…`: where the card page returns. The SetupIntent is
/// read back from the provider and its card saved only when it names the session's
/// account and customer and has succeeded; another account's is the same 404.
async fn card_done(
    State(st): State<MyState>,
    h: HeaderMap,
    q: Result<Query<SetupQuery>, QueryRejection>,
) -> Response {
    let Some(s) = signed(&st, &h).await else {
        return Redirect::to("/my/").into_response();
    };
    let lang = account_lang(&st.engine, &s.session.account);
    let setup = q.map(|q| q.0.setup_intent).unwrap_or_default();
    let engine = st.engine.clone();
    let account = s.session.account.clone();
    let r = tokio::task::spawn_blocking(move || psp::finish_card_setup(&engine, &account, &setup))
        .await
        .unwrap_or_else(|_| Err(psp::CardError::Unavailable("the task failed".into())));
    match r {
        Ok(card) => {
            tracing::info!(target: "tollgate::my", account = %s.session.account, "card saved");
            st.message(
                StatusCode::OK,
                lang,
                lang.t("card_saved_title"),
                &page::card_saved(lang, card.last4.as_deref(), &card.saved),
            )
        }
        Err(e) => card_refusal(&st, lang, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("tg_my_pre=aa; tg_my=bb; x=1"),
        );
        assert_eq!(cookie(&h, "tg_my").as_deref(), Some("bb"));
        assert_eq!(cookie(&h, "tg_my_pre").as_deref(), Some("aa"));
        assert_eq!(cookie(&h, "tg"), None);
    }

    #[test]
    fn usage_charges_parse_exactly() {
        assert_eq!(parse_micros("1.900000"), 1_900_000);
        assert_eq!(parse_micros("-0.000001"), -1);
        assert_eq!(parse_micros("12"), 12_000_000);
    }
}
