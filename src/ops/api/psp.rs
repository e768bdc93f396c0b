//! The payment provider's doors into the daemon, outside the bearer-token API:
//!
//! - `GET /pay/{invoice}?t=<token>`: the pay link. A wrong token, an unknown invoice
//!   and no `[psp]` all answer the same 404. With nothing open the page says so;
//!   otherwise it shows the open amount and the provider's card form (Stripe.js, with this
//!   response's CSP nonce). Opening it asks nothing of the provider.
//! - `POST /pay/{invoice}/setup?t=<token>` (JSON `{"remember": bool}`): a SetupIntent for
//!   the card form (`payments::psp::online::start_setup`), answered with its client
//!   secret.
//! - `POST /pay/{invoice}/confirm?t=<token>` (JSON `{"setup_intent": id}`): the server
//!   reads the confirmed SetupIntent back, charges exactly the open amount once
//!   (`payments::psp::online::pay`) and answers `{status, message, client_secret?}`.
//! - `POST /pay/{invoice}/ideal?t=<token>` (JSON `{}`; tariffs in EUR): a PaymentIntent
//!   for exactly the open amount with `payment_method_types[]=ideal`
//!   (`payments::psp::online::start_ideal`, the same attempt records), answered with its
//!   client secret; the page's script confirms it (`confirmIdealPayment`) and the
//!   browser goes to the bank, which sends it back to:
//! - `GET /pay/{invoice}/done?t=<token>&payment_intent=<id>`: the PaymentIntent read back
//!   (it must name this invoice and account, else 404), "thank you" or "did not go
//!   through" in the customer's language; it posts nothing (the webhook does).
//!
//!   The three POSTs take the same token, JSON only (a form cannot send it without the
//!   browser's CORS check, and no CORS is allowed) and refuse a browser's cross-site
//!   request (`Sec-Fetch-Site`).
//! - `POST /api/v1/psp/stripe/webhook`: Stripe's events, `Stripe-Signature` verified
//!   (400 and nothing done otherwise); `payment_intent.succeeded` posts the payment once
//!   per payment id, `setup_intent.succeeded` with `metadata[account]` saves the card
//!   (not one made for one payment, `usage=on_session`).
//!
//! None logs the query string (the token) nor a secret; the pages and answers are sent
//! with `Referrer-Policy: no-referrer` and `Cache-Control: no-store`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::config::Psp;
use crate::ingest::engine::Engine;
use crate::payments::psp::online::{self, Online, OnlineError};
use crate::payments::psp::{self, stripe, Posted, Received, SavedCard};
use crate::payments::PayError;
use crate::rate::accounts::PaymentMethod;
use crate::rate::money::format_cents;

/// Largest webhook body accepted (Stripe's events are a few KiB).
pub const WEBHOOK_BODY_LIMIT: usize = 512 * 1024;

/// The pay page, its two JSON calls and the webhook, unauthenticated (the token and the
/// signature are their authentication), logged like the API.
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/pay/{invoice}", get(pay_page))
        .route("/pay/{invoice}/setup", post(pay_setup))
        .route("/pay/{invoice}/confirm", post(pay_confirm))
        .route("/pay/{invoice}/ideal", post(pay_ideal))
        .route("/pay/{invoice}/done", get(pay_done))
        .route("/api/v1/psp/stripe/webhook", post(stripe_webhook))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
        .layer(axum::middleware::from_fn(super::access_log))
        .with_state(engine)
}

/// The policy of the pages without a script.
const PLAIN_CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn page(status: StatusCode, lang: &str, title: &str, body: &str) -> Response {
    page_with(status, lang, title, body, PLAIN_CSP.to_owned())
}

fn page_with(status: StatusCode, lang: &str, title: &str, body: &str, csp: String) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head>\n<body style=\"font-family: sans-serif; max-width: 32em; margin: 2em auto\">\n\
         <h1>{title}</h1>\n{body}\n</body></html>\n",
        title = crate::ops::report::esc(title),
    );
    let mut r = (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "en",
        "Not found",
        "<p>This pay link is not valid. Use the link in your invoice e-mail or on the invoice.</p>",
    )
}

/// Why a pay link does not open.
enum Refusal {
    /// Wrong token, unknown invoice, no `[psp]`: the same 404 for all.
    NotFound,
    /// The link key or the ledger cannot be read (logged).
    Broken(StatusCode),
}

/// The `[psp]` table and the account of `invoice` when `token` is its pay-link token.
fn open_link<'a>(
    engine: &'a Engine,
    invoice: &str,
    token: &str,
) -> Result<(&'a Psp, String), Refusal> {
    let Some(p) = &engine.cfg.psp else {
        return Err(Refusal::NotFound);
    };
    let key = psp::link_key(p).map_err(|e| {
        tracing::error!(error = %e, "pay link: the link key cannot be read");
        Refusal::Broken(StatusCode::SERVICE_UNAVAILABLE)
    })?;
    if !psp::token_ok(&key, invoice, token) {
        return Err(Refusal::NotFound);
    }
    match psp::account_of(&engine.ledger, invoice) {
        Ok(Some(a)) => Ok((p, a)),
        Ok(None) => Err(Refusal::NotFound),
        Err(e) => {
            tracing::error!(error = %e, "pay link: ledger");
            Err(Refusal::Broken(StatusCode::INTERNAL_SERVER_ERROR))
        }
    }
}

/// Whether the account's language is Dutch (else English).
fn dutch(engine: &Engine, account: &str) -> bool {
    engine
        .reference()
        .accounts
        .get(account)
        .is_some_and(|a| a.language == "nl")
}

async fn pay_page(
    State(engine): State<Arc<Engine>>,
    Path(invoice): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let token = q.get("t").cloned().unwrap_or_default();
    tokio::task::spawn_blocking(move || pay(&engine, &invoice, &token))
        .await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The pay page's script: takes the card into a SetupIntent (`confirmCardSetup`), has the
/// server charge it, completes an authentication the bank asks for
/// (`confirmCardPayment`) and shows the server's answer. Where iDEAL is offered (the
/// choice `#methods`): the bank chooser (`idealBank` element) beside the card form, and
/// Pay with iDEAL chosen has the server make the payment and confirms it with
/// `confirmIdealPayment`, which goes to the bank (back to `data-return`). A Stripe.js
/// that cannot make the bank chooser leaves the card form alone.
const PAY_SCRIPT: &str = r#"const f = document.getElementById('pay');
const stripe = Stripe(f.dataset.key);
const elements = stripe.elements();
const card = elements.create('card');
card.mount('#card');
const methods = document.getElementById('methods');
let idealBank = null;
function chosen() {
  const m = document.querySelector('input[name=method]:checked');
  return idealBank && m && m.value === 'ideal' ? 'ideal' : 'card';
}
function pick() {
  document.getElementById('ideal-box').hidden = chosen() !== 'ideal';
  document.getElementById('card-box').hidden = chosen() !== 'card';
}
if (methods) {
  try {
    idealBank = elements.create('idealBank');
    idealBank.mount('#ideal-bank');
  } catch (x) {
    idealBank = null;
    methods.hidden = true;
  }
  methods.addEventListener('change', pick);
  pick();
}
const button = document.getElementById('pay-button');
const error = document.getElementById('error');
async function ask(url, body) {
  const r = await fetch(url, {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  return await r.json();
}
function fail(m) { error.textContent = m || f.dataset.failed; button.disabled = false; }
function show(a) {
  if (a.status === 'succeeded' || a.status === 'processing' || a.status === 'nothing_open') {
    f.hidden = true;
    document.getElementById('thanks').textContent = a.message;
    document.getElementById('done').hidden = false;
  } else {
    fail(a.message);
  }
}
f.addEventListener('submit', async (e) => {
  e.preventDefault();
  button.disabled = true;
  error.textContent = '';
  try {
    if (chosen() === 'ideal') {
      const s = await ask(f.dataset.ideal, {});
      if (!s.client_secret) { show(s); return; }
      const r = await stripe.confirmIdealPayment(s.client_secret,
        {payment_method: {ideal: idealBank}, return_url: f.dataset.return});
      if (r && r.error) fail(r.error.message);
      return;
    }
    const remember = document.getElementById('remember');
    const s = await ask(f.dataset.setup, {remember: !!(remember && remember.checked)});
    if (!s.client_secret) { show(s); return; }
    const r = await stripe.confirmCardSetup(s.client_secret, {payment_method: {card}});
    if (r.error) { fail(r.error.message); return; }
    const id = {setup_intent: r.setupIntent.id};
    let a = await ask(f.dataset.confirm, id);
    if (a.status === 'requires_action') {
      await stripe.confirmCardPayment(a.client_secret);
      a = await ask(f.dataset.confirm, id);
    }
    show(a);
  } catch (x) {
    fail();
  }
});"#;

fn pay(engine: &Engine, invoice: &str, token: &str) -> Response {
    let (p, account) = match open_link(engine, invoice, token) {
        Ok(x) => x,
        Err(Refusal::NotFound) => return not_found(),
        Err(Refusal::Broken(s)) => return s.into_response(),
    };
    let open = match online::state(&engine.ledger, &account, invoice) {
        Ok((open, _)) => open,
        Err(e) => {
            tracing::error!(error = %e, "pay link: ledger");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let nl = dutch(engine, &account);
    let lang = if nl { "nl" } else { "en" };
    let currency = engine.currency();
    let esc = crate::ops::report::esc;
    if open <= 0 {
        let (t, b) = if nl {
            (
                "Niets te betalen",
                format!("<p>{}</p>", esc(&nothing_open(nl, invoice))),
            )
        } else {
            (
                "Nothing to pay",
                format!("<p>{}</p>", esc(&nothing_open(nl, invoice))),
            )
        };
        return page(StatusCode::OK, lang, t, &b);
    }
    let mut nonce = [0u8; 16];
    if getrandom::fill(&mut nonce).is_err() {
        tracing::error!("pay link: no randomness for the page's nonce");
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let nonce = psp::hex(&nonce);
    let amount = format_cents(open);
    let (title, what, button, remember, failed, back) = if nl {
        (
            format!("Factuur {invoice} betalen"),
            format!("Te betalen: {currency} {amount}"),
            format!("Betaal {currency} {amount}"),
            "Onthoud deze kaart en schrijf mijn volgende facturen er automatisch van af",
            "Betalen lukte niet. Probeer het opnieuw.",
            "Verder",
        )
    } else {
        (
            format!("Pay invoice {invoice}"),
            format!("To pay: {currency} {amount}"),
            format!("Pay {currency} {amount}"),
            "Remember this card and charge my next invoices to it automatically",
            "The payment did not go through. Please try again.",
            "Continue",
        )
    };
    // "Remember this card" only where a saved card is charged: card accounts.
    let offer = engine
        .reference()
        .accounts
        .get(&account)
        .is_some_and(|a| a.payment_method == PaymentMethod::Card);
    let tick = if offer {
        format!(
            "<p><label><input type=\"checkbox\" id=\"remember\"> {}</label></p>\n",
            esc(remember)
        )
    } else {
        String::new()
    };
    let seg = psp::invoice_segment(invoice);
    // iDEAL beside the card where the tariff is in EUR (iDEAL takes nothing else): first
    // and chosen for Dutch-language accounts, second for the others.
    let (ideal, methods) = if offers_ideal(&currency) {
        let ret = format!("{}/pay/{seg}/done?t={token}", p.public_url);
        let (legend, card_word) = if nl {
            ("Betaalwijze", "Kaart")
        } else {
            ("Payment method", "Card")
        };
        let radio = |value: &str, label: &str, on: bool| {
            format!(
                "<label><input type=\"radio\" name=\"method\" value=\"{value}\"{}> {label}</label>\n",
                if on { " checked" } else { "" }
            )
        };
        let (first, second) = (radio("ideal", "iDEAL", nl), radio("card", card_word, !nl));
        let choice = if nl { first + &second } else { second + &first };
        let bank = if nl { "Uw bank" } else { "Your bank" };
        (
            format!(
                " data-ideal=\"/pay/{seg}/ideal?t={t}\" data-return=\"{ret}\"",
                t = esc(token),
                ret = esc(&ret)
            ),
            Some((
                format!(
                    "<fieldset id=\"methods\"><legend>{legend}</legend>\n{choice}</fieldset>\n"
                ),
                format!(
                    "<div id=\"ideal-box\"{}><p>{bank}</p><div id=\"ideal-bank\"></div></div>\n",
                    if nl { "" } else { " hidden" }
                ),
                if nl { " hidden" } else { "" },
            )),
        )
    } else {
        (String::new(), None)
    };
    let form = match methods {
        None => format!("<div id=\"card\"></div>\n{tick}"),
        Some((choice, bank, hidden)) => format!(
            "{choice}{bank}<div id=\"card-box\"{hidden}>\n<div id=\"card\"></div>\n{tick}</div>\n"
        ),
    };
    let body = format!(
        "<p id=\"amount\">{what}</p>\n\
         <form id=\"pay\" data-key=\"{pk}\" data-setup=\"/pay/{seg}/setup?t={t}\" data-confirm=\"/pay/{seg}/confirm?t={t}\"{ideal} data-failed=\"{failed}\">\n\
         {form}<p id=\"error\" role=\"alert\"></p>\n<button type=\"submit\" id=\"pay-button\">{button}</button>\n</form>\n\
         <div id=\"done\" hidden><p id=\"thanks\"></p><p><a href=\"{ret}\">{back}</a></p></div>\n\
         <script nonce=\"{nonce}\" src=\"{js}\"></script>\n<script nonce=\"{nonce}\">\n{PAY_SCRIPT}\n</script>",
        what = esc(&what),
        pk = esc(&p.publishable_key),
        t = esc(token),
        failed = esc(failed),
        button = esc(&button),
        ret = esc(&p.return_url),
        js = esc(&p.js_url),
    );
    let csp = crate::ops::selfservice::psp::pay_page_csp(&p.js_url, &p.api_base, &nonce);
    page_with(StatusCode::OK, lang, &title, &body, csp)
}

/// Whether the pay page offers iDEAL: the tariff is in EUR (iDEAL takes nothing else).
fn offers_ideal(currency: &str) -> bool {
    currency.eq_ignore_ascii_case("EUR")
}

/// "Nothing is open on invoice N. Thank you." in the customer's language.
fn nothing_open(nl: bool, invoice: &str) -> String {
    if nl {
        format!("Op factuur {invoice} staat niets meer open. Dank u wel.")
    } else {
        format!("Nothing is open on invoice {invoice}. Thank you.")
    }
}

/// The customer's text for an answer of the pay page's calls.
fn text(nl: bool, what: &str) -> &'static str {
    match (nl, what) {
        (true, "paid") => "Dank u wel, uw betaling is ontvangen. Uw factuur staat zo op betaald.",
        (false, "paid") => "Thank you, payment received. Your invoice turns paid in a moment.",
        (true, "declined") => {
            "Uw kaart is geweigerd. Er is niets afgeschreven. Probeer het met een andere kaart."
        }
        (false, "declined") => {
            "Your card was declined. Nothing was charged. Please try another card."
        }
        (true, "authentication") => {
            "De betaling is niet bevestigd bij uw bank. Er is niets afgeschreven. Probeer het opnieuw."
        }
        (false, "authentication") => {
            "The payment was not confirmed with your bank. Nothing was charged. Please try again."
        }
        (true, "action") => "Bevestig de betaling bij uw bank.",
        (false, "action") => "Please confirm the payment with your bank.",
        (true, "busy") => "Uw betaling wordt verwerkt. Een ogenblik geduld.",
        (false, "busy") => "Your payment is being processed. Please wait a moment.",
        (true, "not_card") => "Uw account betaalt niet per kaart: de kaart kan niet worden bewaard.",
        (false, "not_card") => "Your account does not pay by card: the card cannot be kept.",
        (true, "not_confirmed") => "De kaart is (nog) niet bevestigd. Probeer het opnieuw.",
        (false, "not_confirmed") => "The card has not been confirmed (yet). Please try again.",
        (true, "not_offered") => "iDEAL kan voor deze factuur niet worden gebruikt.",
        (false, "not_offered") => "iDEAL cannot be used for this invoice.",
        (true, "not_found") => "Deze betaallink is niet geldig.",
        (false, "not_found") => "This pay link is not valid.",
        (true, _) => "De betaaldienst is nu niet bereikbaar. Probeer het later opnieuw.",
        (false, _) => "The payment service cannot be reached. Please try again later.",
    }
}

fn json(status: StatusCode, v: serde_json::Value) -> Response {
    let mut r = (status, Json(v)).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// A pay-page answer: `{status, message}`.
fn said(status: StatusCode, what: &str, nl: bool) -> Response {
    json(
        status,
        serde_json::json!({"status": what, "message": text(nl, what)}),
    )
}

/// The checks both JSON calls share: not a browser's cross-site request, a JSON body,
/// the pay link's token. `Err` is the answer.
fn gate<T>(
    engine: &Engine,
    h: &HeaderMap,
    invoice: &str,
    token: &str,
    body: Result<Json<T>, JsonRejection>,
) -> Result<(String, bool, T), Box<Response>> {
    let site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(site, Some("cross-site") | Some("same-site")) {
        return Err(Box::new(json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "cross-site request"}),
        )));
    }
    let account = match open_link(engine, invoice, token) {
        Ok((_, a)) => a,
        Err(Refusal::NotFound) => {
            return Err(Box::new(json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"status": "not_found", "message": text(false, "not_found")}),
            )))
        }
        Err(Refusal::Broken(s)) => return Err(Box::new(said(s, "unavailable", false))),
    };
    let nl = dutch(engine, &account);
    match body {
        Ok(Json(b)) => Ok((account, nl, b)),
        Err(e) => Err(Box::new(json(
            e.status(),
            serde_json::json!({"error": e.body_text()}),
        ))),
    }
}

fn refusal(e: OnlineError, nl: bool) -> Response {
    match e {
        OnlineError::NotFound(m) => {
            tracing::warn!(reason = %m, "pay page: setup intent refused");
            said(StatusCode::NOT_FOUND, "not_found", nl)
        }
        OnlineError::NotConfirmed(m) => {
            tracing::info!(reason = %m, "pay page: card not confirmed");
            said(StatusCode::CONFLICT, "not_confirmed", nl)
        }
        OnlineError::NotCardAccount(_) => said(StatusCode::CONFLICT, "not_card", nl),
        OnlineError::NotOffered(_) => said(StatusCode::CONFLICT, "not_offered", nl),
        OnlineError::Unavailable(m) => {
            tracing::warn!(error = %m, "pay page: provider or ledger");
            said(StatusCode::BAD_GATEWAY, "unavailable", nl)
        }
    }
}

#[derive(Deserialize)]
struct SetupBody {
    #[serde(default)]
    remember: bool,
}

async fn pay_setup(
    State(engine): State<Arc<Engine>>,
    Path(invoice): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
    body: Result<Json<SetupBody>, JsonRejection>,
) -> Response {
    let token = q.get("t").cloned().unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        let (account, nl, b) = match gate(&engine, &h, &invoice, &token, body) {
            Ok(x) => x,
            Err(r) => return *r,
        };
        let mut nonce = [0u8; 16];
        if getrandom::fill(&mut nonce).is_err() {
            return said(StatusCode::SERVICE_UNAVAILABLE, "unavailable", nl);
        }
        let p = engine.cfg.psp.as_ref().expect("open_link checked [psp]");
        let provider = match psp::provider(p) {
            Ok(x) => x,
            Err(e) => return refusal(e.into(), nl),
        };
        match online::start_setup(
            &engine.ledger,
            &engine.reference().accounts,
            &account,
            &invoice,
            b.remember,
            &psp::hex(&nonce),
            provider.as_ref(),
        ) {
            Ok(Some(s)) => json(
                StatusCode::OK,
                serde_json::json!({"status": "setup", "client_secret": s.client_secret}),
            ),
            Ok(None) => json(
                StatusCode::OK,
                serde_json::json!({"status": "nothing_open", "message": nothing_open(nl, &invoice)}),
            ),
            Err(e) => refusal(e, nl),
        }
    })
    .await
    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[derive(Deserialize)]
struct ConfirmBody {
    setup_intent: String,
}

async fn pay_confirm(
    State(engine): State<Arc<Engine>>,
    Path(invoice): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
    body: Result<Json<ConfirmBody>, JsonRejection>,
) -> Response {
    let token = q.get("t").cloned().unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        let (account, nl, b) = match gate(&engine, &h, &invoice, &token, body) {
            Ok(x) => x,
            Err(r) => return *r,
        };
        let p = engine.cfg.psp.as_ref().expect("open_link checked [psp]");
        let provider = match psp::provider(p) {
            Ok(x) => x,
            Err(e) => return refusal(e.into(), nl),
        };
        let r = online::pay(
            &engine.ledger,
            &engine.reference().accounts,
            &engine.currency(),
            &account,
            &invoice,
            &b.setup_intent,
            chrono::Utc::now().date_naive(),
            provider.as_ref(),
        );
        outcome(r, &invoice, nl)
    })
    .await
    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The answer of a pay-page payment call (`/confirm`, `/ideal`).
fn outcome(r: Result<Online, OnlineError>, invoice: &str, nl: bool) -> Response {
    match r {
        Ok(Online::Succeeded) => json(
            StatusCode::OK,
            serde_json::json!({"status": "succeeded", "message": text(nl, "paid")}),
        ),
        Ok(Online::Processing) => json(
            StatusCode::OK,
            serde_json::json!({"status": "processing", "message": text(nl, "paid")}),
        ),
        Ok(Online::NothingOpen) => json(
            StatusCode::OK,
            serde_json::json!({"status": "nothing_open", "message": nothing_open(nl, invoice)}),
        ),
        Ok(Online::RequiresAction { client_secret }) => json(
            StatusCode::OK,
            serde_json::json!({"status": "requires_action", "message": text(nl, "action"),
        "client_secret": client_secret}),
        ),
        Ok(Online::Declined { code }) => {
            tracing::info!(%invoice, %code, "pay page: card declined");
            json(
                StatusCode::PAYMENT_REQUIRED,
                serde_json::json!({"status": "declined", "code": code, "message": text(nl, "declined")}),
            )
        }
        Ok(Online::AuthenticationFailed) => json(
            StatusCode::PAYMENT_REQUIRED,
            serde_json::json!({"status": "authentication_failed", "message": text(nl, "authentication")}),
        ),
        Ok(Online::Busy) => said(StatusCode::CONFLICT, "busy", nl),
        Ok(Online::ToBank { client_secret }) => json(
            StatusCode::OK,
            serde_json::json!({"status": "ideal", "client_secret": client_secret}),
        ),
        Err(e) => refusal(e, nl),
    }
}

#[derive(Deserialize)]
struct IdealBody {}

async fn pay_ideal(
    State(engine): State<Arc<Engine>>,
    Path(invoice): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
    body: Result<Json<IdealBody>, JsonRejection>,
) -> Response {
    let token = q.get("t").cloned().unwrap_or_default();
    tokio::task::spawn_blocking(move || {
        let (account, nl, IdealBody {}) = match gate(&engine, &h, &invoice, &token, body) {
            Ok(x) => x,
            Err(r) => return *r,
        };
        let currency = engine.currency();
        if !offers_ideal(&currency) {
            return said(StatusCode::CONFLICT, "not_offered", nl);
        }
        let p = engine.cfg.psp.as_ref().expect("open_link checked [psp]");
        let provider = match psp::provider(p) {
            Ok(x) => x,
            Err(e) => return refusal(e.into(), nl),
        };
        let r = online::start_ideal(
            &engine.ledger,
            &currency,
            &account,
            &invoice,
            chrono::Utc::now().date_naive(),
            provider.as_ref(),
        );
        outcome(r, &invoice, nl)
    })
    .await
    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn pay_done(
    State(engine): State<Arc<Engine>>,
    Path(invoice): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let token = q.get("t").cloned().unwrap_or_default();
    let payment = q.get("payment_intent").cloned().unwrap_or_default();
    tokio::task::spawn_blocking(move || done(&engine, &invoice, &token, &payment))
        .await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The page the bank sends the customer back to after iDEAL.
fn done(engine: &Engine, invoice: &str, token: &str, payment: &str) -> Response {
    let (p, account) = match open_link(engine, invoice, token) {
        Ok(x) => x,
        Err(Refusal::NotFound) => return not_found(),
        Err(Refusal::Broken(s)) => return s.into_response(),
    };
    let nl = dutch(engine, &account);
    let lang = if nl { "nl" } else { "en" };
    let esc = crate::ops::report::esc;
    let received = psp::provider(p)
        .map_err(OnlineError::from)
        .and_then(|pr| online::returned(&engine.ledger, &account, invoice, payment, pr.as_ref()));
    match received {
        Ok(true) => {
            let (title, said, back) = if nl {
                (
                    "Dank u wel",
                    "Dank u wel, uw betaling is ontvangen; uw factuur staat zo op betaald.",
                    "Verder",
                )
            } else {
                (
                    "Thank you",
                    "Thank you, your payment was received; your invoice turns paid in a moment.",
                    "Continue",
                )
            };
            let body = format!(
                "<p id=\"thanks\">{said}</p>\n<p><a href=\"{ret}\">{back}</a></p>",
                ret = esc(&p.return_url)
            );
            page(StatusCode::OK, lang, title, &body)
        }
        Ok(false) => {
            let (title, said, again) = if nl {
                (
                    "Betaling niet gelukt",
                    "De betaling is niet gelukt.",
                    "Terug naar de betaalpagina",
                )
            } else {
                (
                    "Payment not completed",
                    "The payment did not go through.",
                    "Back to the payment page",
                )
            };
            let body = format!(
                "<p id=\"not-paid\">{said}</p>\n<p><a id=\"again\" href=\"/pay/{seg}?t={t}\">{again}</a></p>",
                seg = psp::invoice_segment(invoice),
                t = esc(token)
            );
            page(StatusCode::OK, lang, title, &body)
        }
        Err(OnlineError::NotFound(m)) => {
            tracing::warn!(reason = %m, "pay page: payment on return refused");
            not_found()
        }
        Err(e) => {
            tracing::warn!(error = %e, "pay page: payment on return not read");
            let (title, said) = if nl {
                ("Even geduld", text(true, "unavailable"))
            } else {
                ("Please wait", text(false, "unavailable"))
            };
            page(
                StatusCode::BAD_GATEWAY,
                lang,
                title,
                &format!("<p>{said}</p>"),
            )
        }
    }
}

fn answer(status: StatusCode, v: serde_json::Value) -> Response {
    (status, Json(v)).into_response()
}

async fn stripe_webhook(
    State(engine): State<Arc<Engine>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sig = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    tokio::task::spawn_blocking(move || webhook(&engine, sig.as_deref(), &body))
        .await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn webhook(engine: &Engine, sig: Option<&str>, body: &[u8]) -> Response {
    let Some(p) = &engine.cfg.psp else {
        return answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "no [psp] configured"}),
        );
    };
    let secret = match psp::read_secret("psp.webhook_secret_file", &p.webhook_secret_file) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "stripe webhook: no signing secret");
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"error": "the webhook signing secret cannot be read"}),
            );
        }
    };
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = stripe::verify_signature(sig, body, secret.as_bytes(), now, p.webhook_tolerance)
    {
        tracing::warn!(error = %e, "stripe webhook refused");
        return answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": format!("signature: {e}")}),
        );
    }
    let (id, event) = match stripe::parse_event(body) {
        Ok(x) => x,
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": format!("event: {e}")}),
            )
        }
    };
    let result: Result<serde_json::Value, PayError> = match event {
        stripe::Event::PaymentSucceeded {
            payment,
            amount_cents,
            currency,
            invoice,
            account,
            created,
        } => {
            let date = chrono::DateTime::from_timestamp(created, 0)
                .map(|d| d.date_naive())
                .unwrap_or_else(|| chrono::Utc::now().date_naive());
            let r = Received {
                provider: "stripe".into(),
                payment: payment.clone(),
                amount_cents,
                currency: currency.clone(),
                invoice,
                account,
                date,
                how: "online".into(),
            };
            psp::record(&engine.ledger, &engine.currency(), &r).map(|posted| {
                match &posted {
                    Posted::WrongCurrency => tracing::warn!(
                        %payment, %currency, "stripe payment not in the tariff currency: recorded, not posted"
                    ),
                    Posted::Suspense { id } => {
                        tracing::warn!(%payment, suspense = id, "stripe payment for no invoice of ours: suspense")
                    }
                    _ => {}
                }
                serde_json::json!({"received": true, "event": id, "posted": posted})
            })
        }
        stripe::Event::SetupSucceeded { usage: Some(u), .. } if u == "on_session" => Ok(
            serde_json::json!({"received": true, "event": id, "ignored": "setup_intent for one payment (usage on_session): no card kept"}),
        ),
        stripe::Event::SetupSucceeded {
            account: Some(account),
            customer: Some(customer),
            payment_method: Some(pm),
            setup,
            ..
        } => {
            // The card's last digits for the invoices (best effort: the card is saved
            // without them when the provider cannot tell now).
            let info = psp::provider(p)
                .map(|pr| psp::card_info(pr.as_ref(), &pm))
                .unwrap_or_default();
            psp::save_card(
                &engine.ledger,
                &engine.reference().accounts,
                &account,
                SavedCard {
                    provider: "stripe".into(),
                    customer,
                    payment_method: pm,
                    saved: chrono::Utc::now().date_naive().to_string(),
                    source: format!("setup_intent {setup}"),
                    last4: info.last4,
                    brand: info.brand,
                },
            )
        }
        .map(|()| serde_json::json!({"received": true, "event": id, "card_saved": account}))
        .or_else(|e| match e {
            // A refusal is permanent (unknown account, not a card account): acknowledged,
            // so the provider does not retry it for days.
            PayError::Refused(m) | PayError::NotFound(m) => {
                tracing::warn!(reason = %m, "stripe setup_intent not saved");
                Ok(serde_json::json!({"received": true, "event": id, "ignored": m}))
            }
            other => Err(other),
        }),
        stripe::Event::SetupSucceeded { .. } => Ok(
            serde_json::json!({"received": true, "event": id, "ignored": "setup_intent without metadata[account], customer or payment_method"}),
        ),
        stripe::Event::Other(kind) => {
            Ok(serde_json::json!({"received": true, "event": id, "ignored": kind}))
        }
    };
    match result {
        Ok(v) => answer(StatusCode::OK, v),
        Err(e) => {
            tracing::error!(error = %e, "stripe webhook: not posted");
            answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"error": "not posted; see the daemon log"}),
            )
        }
    }
}
