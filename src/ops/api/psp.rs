//! The payment provider's two doors into the daemon, outside the bearer-token API:
//!
//! - `GET /pay/{invoice}?t=<token>`: the pay link. A wrong token, an unknown invoice
//!   and no `[psp]` all answer the same 404. With nothing open the page says so;
//!   otherwise a provider payment for exactly the open amount is created (idempotency key
//!   `tollgate-pay-<invoice>-<open cents>-<entries of the account>`: reloading the page
//!   while nothing changed asks the provider for the same payment) and the page hands it
//!   to the provider's script (Stripe.js), which takes the card and returns the customer
//!   to `psp.return_url`.
//! - `POST /api/v1/psp/stripe/webhook`: Stripe's events, `Stripe-Signature` verified
//!   (400 and nothing done otherwise); `payment_intent.succeeded` posts the payment once
//!   per payment id, `setup_intent.succeeded` with `metadata[account]` saves the card.
//!
//! Neither logs the query string (the token) nor a secret; the page is sent with
//! `Referrer-Policy: no-referrer` and `Cache-Control: no-store`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::ingest::engine::Engine;
use crate::payments::psp::{self, stripe, PaymentRequest, Posted, Received, SavedCard};
use crate::payments::PayError;
use crate::rate::money::format_cents;

/// Largest webhook body accepted (Stripe's events are a few KiB).
pub const WEBHOOK_BODY_LIMIT: usize = 512 * 1024;

/// The pay page and the webhook, unauthenticated (the token and the signature are
/// their authentication), logged like the API.
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/pay/{invoice}", get(pay_page))
        .route("/api/v1/psp/stripe/webhook", post(stripe_webhook))
        .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT))
        .layer(axum::middleware::from_fn(super::access_log))
        .with_state(engine)
}

fn page(status: StatusCode, lang: &str, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head>\n<body style=\"font-family: sans-serif; max-width: 32em; margin: 2em auto\">\n\
         <h1>{title}</h1>\n{body}\n</body></html>\n",
        title = crate::ops::report::esc(title),
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "en",
        "Not found",
        "<p>This pay link is not valid. Use the link in your invoice e-mail or on the invoice.</p>",
    )
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

fn pay(engine: &Engine, invoice: &str, token: &str) -> Response {
    let Some(p) = &engine.cfg.psp else {
        return not_found();
    };
    let key = match psp::link_key(p) {
        Ok(k) => k,
        Err(e) => {
            tracing::error!(error = %e, "pay link: the link key cannot be read");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    if !psp::token_ok(&key, invoice, token) {
        return not_found();
    }
    let ledger = &engine.ledger;
    let lookup = psp::account_of(ledger, invoice).and_then(|a| match a {
        None => Ok(None),
        Some(a) => {
            let open = psp::open_amount(ledger, &a, invoice)?;
            let n = crate::payments::entries(ledger, &a, &[])?.len();
            Ok(Some((a, open, n)))
        }
    });
    let (account, open, n) = match lookup {
        Ok(Some(x)) => x,
        Ok(None) => return not_found(),
        Err(e) => {
            tracing::error!(error = %e, "pay link: ledger");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let nl = engine
        .reference()
        .accounts
        .get(&account)
        .is_some_and(|a| a.language == "nl");
    let lang = if nl { "nl" } else { "en" };
    let currency = engine.currency();
    let inv = crate::ops::report::esc(invoice);
    if open <= 0 {
        let (t, b) = if nl {
            (
                "Niets te betalen",
                format!("<p>Op factuur {inv} staat niets meer open. Dank u wel.</p>"),
            )
        } else {
            (
                "Nothing to pay",
                format!("<p>Nothing is open on invoice {inv}. Thank you.</p>"),
            )
        };
        return page(StatusCode::OK, lang, t, &b);
    }
    let provider = match psp::provider(p) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(error = %e, "pay link: provider");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let req = PaymentRequest {
        invoice: invoice.to_owned(),
        account: account.clone(),
        amount_cents: open,
        currency: currency.clone(),
        idempotency_key: format!("tollgate-pay-{invoice}-{open}-{n}"),
    };
    let payment = match provider.create_payment(&req) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "pay link: the provider did not create a payment");
            let (t, b) = if nl {
                (
                    "Betalen lukt nu niet",
                    "<p>De betaaldienst is nu niet bereikbaar. Probeer het later opnieuw.</p>",
                )
            } else {
                (
                    "Paying does not work right now",
                    "<p>The payment service cannot be reached. Please try again later.</p>",
                )
            };
            return page(StatusCode::BAD_GATEWAY, lang, t, b);
        }
    };
    let amount = format_cents(open);
    let esc = crate::ops::report::esc;
    let (title, what, button) = if nl {
        (
            format!("Factuur {invoice} betalen"),
            format!("Te betalen: {currency} {amount}"),
            "Betalen",
        )
    } else {
        (
            format!("Pay invoice {invoice}"),
            format!("To pay: {currency} {amount}"),
            "Pay",
        )
    };
    let body = format!(
        "<p id=\"amount\">{what}</p>\n\
         <form id=\"pay\" data-payment=\"{pid}\" data-client-secret=\"{cs}\" data-key=\"{pk}\" data-return=\"{ret}\">\n\
         <div id=\"card\"></div>\n<p id=\"error\" role=\"alert\"></p>\n<button type=\"submit\">{button}</button>\n</form>\n\
         <script src=\"{js}\"></script>\n<script>\n\
         const f = document.getElementById('pay');\n\
         const stripe = Stripe(f.dataset.key);\n\
         const card = stripe.elements().create('card');\n\
         card.mount('#card');\n\
         f.addEventListener('submit', async (e) => {{\n\
         \x20 e.preventDefault();\n\
         \x20 const r = await stripe.confirmCardPayment(f.dataset.clientSecret, {{payment_method: {{card}}}});\n\
         \x20 if (r.error) {{ document.getElementById('error').textContent = r.error.message; }}\n\
         \x20 else {{ window.location = f.dataset.return; }}\n\
         }});\n</script>",
        what = esc(&what),
        pid = esc(&payment.id),
        cs = esc(&payment.client_secret),
        pk = esc(&p.publishable_key),
        ret = esc(&p.return_url),
        js = esc(&p.js_url),
    );
    page(StatusCode::OK, lang, &title, &body)
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
        stripe::Event::SetupSucceeded {
            account: Some(account),
            customer: Some(customer),
            payment_method: Some(pm),
            setup,
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
