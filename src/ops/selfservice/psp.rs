//! Where the self-service page meets the payment provider: "pay now" per open invoice
//! and "save my card".
//!
//! "Pay now" sends the customer to the invoice's signed pay link
//! ([`crate::payments::psp::pay_link`]): the pay page creates the provider payment for
//! exactly the open amount when it is opened, and the webhook posts it.
//!
//! "Save my card" (card accounts only) starts a SetupIntent (`usage=off_session`) on the
//! account's provider customer, created once and reused; the card page confirms it in
//! the browser with the provider's script; the return route reads the SetupIntent back
//! from the provider and saves its payment method for the session's account only when
//! the SetupIntent names that account and its customer and has succeeded
//! ([`crate::payments::psp::finish_card_setup`]). The `setup_intent.succeeded` webhook
//! saves the same card (whichever comes first; the second changes nothing but the date).
//! `tollgate collect` then charges it off-session. Each function gets the account from
//! the session, never from the request.

use crate::config::Config;
use crate::ingest::engine::Engine;
use crate::payments::psp::{self as provider_psp, SavedCard, Setup};
use crate::payments::PayError;
use crate::rate::accounts::PaymentMethod;
use crate::rate::money::Cents;

/// Is a payment provider configured (`[psp]`)? Decides whether "pay now" shows.
pub fn configured(cfg: &Config) -> bool {
    cfg.psp.is_some()
}

/// Whether the page offers "save my card": a payment provider is configured and the
/// account pays by card (`payment_method = card`).
pub fn card_setup_offered(engine: &Engine, account: &str) -> bool {
    configured(&engine.cfg)
        && engine
            .reference()
            .accounts
            .get(account)
            .is_some_and(|a| a.payment_method == PaymentMethod::Card)
}

/// The card saved for the account: (last four digits when known, date saved).
pub fn saved_card(engine: &Engine, account: &str) -> Option<(Option<String>, String)> {
    provider_psp::saved_card(&engine.ledger, account)
        .ok()
        .flatten()
        .map(|c| (c.last4, c.saved))
}

/// Where "pay now" sends the customer for `invoice` of `account`: the invoice's pay
/// page, which asks the provider for exactly the open amount (the route has checked that
/// the invoice is the session account's and open).
pub fn pay_url(
    engine: &Engine,
    _account: &str,
    invoice: &str,
    _open: Cents,
) -> Result<String, String> {
    crate::payments::psp::pay_link(&engine.cfg, invoice).ok_or_else(|| {
        "the payment provider is not configured or its link key is unreadable".into()
    })
}

/// Why a card could not be saved.
#[derive(Debug)]
pub enum CardError {
    /// No payment provider configured (`[psp]`).
    NoProvider,
    /// Not a card account.
    NotOffered,
    /// The SetupIntent is not this account's, or unknown.
    NotFound,
    /// The SetupIntent has not succeeded.
    NotConfirmed(String),
    /// The provider could not be reached or the ledger failed (logged).
    Unavailable(String),
}

fn card_error(e: PayError) -> CardError {
    match e {
        PayError::NotFound(_) => CardError::NotFound,
        PayError::Refused(m) if m.contains("not confirmed") => CardError::NotConfirmed(m),
        PayError::Refused(m) if m.contains("not card") => CardError::NotOffered,
        other => CardError::Unavailable(other.to_string()),
    }
}

/// Starts saving a card for the session's account: a SetupIntent on its provider
/// customer (created once, then reused). `nonce` is fresh per request.
pub fn start_card_setup(engine: &Engine, account: &str, nonce: &str) -> Result<Setup, CardError> {
    let p = engine.cfg.psp.as_ref().ok_or(CardError::NoProvider)?;
    if !card_setup_offered(engine, account) {
        return Err(CardError::NotOffered);
    }
    let provider = provider_psp::provider(p).map_err(|e| CardError::Unavailable(e.to_string()))?;
    provider_psp::start_card_setup(
        &engine.ledger,
        &engine.reference().accounts,
        account,
        nonce,
        provider.as_ref(),
    )
    .map_err(card_error)
}

/// Saves the card of the SetupIntent `setup_id` for the session's account, after reading
/// it back from the provider.
pub fn finish_card_setup(
    engine: &Engine,
    account: &str,
    setup_id: &str,
) -> Result<SavedCard, CardError> {
    let p = engine.cfg.psp.as_ref().ok_or(CardError::NoProvider)?;
    if !card_setup_offered(engine, account) {
        return Err(CardError::NotOffered);
    }
    let provider = provider_psp::provider(p).map_err(|e| CardError::Unavailable(e.to_string()))?;
    provider_psp::finish_card_setup(
        &engine.ledger,
        &engine.reference().accounts,
        account,
        setup_id,
        chrono::Utc::now().date_naive(),
        provider.as_ref(),
    )
    .map_err(card_error)
}

/// `scheme://host[:port]` of a URL (for the card page's Content-Security-Policy).
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    let ok = matches!(scheme, "http" | "https")
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    ok.then(|| format!("{scheme}://{host}"))
}

/// The card page's Content-Security-Policy: scripts only with this response's nonce or
/// from the provider's script origin; connections and frames only to the provider.
pub fn card_page_csp(js_url: &str, api_base: &str, nonce: &str) -> String {
    csp(js_url, api_base, nonce, "")
}

/// The pay page's (`GET /pay/{invoice}`) policy: the card page's, and connections to the
/// daemon itself too (the page's script posts the SetupIntent to `/pay/…/confirm`).
pub fn pay_page_csp(js_url: &str, api_base: &str, nonce: &str) -> String {
    csp(js_url, api_base, nonce, "'self' ")
}

fn csp(js_url: &str, api_base: &str, nonce: &str, connect_self: &str) -> String {
    let js = origin(js_url).unwrap_or_default();
    let api = origin(api_base).unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}' {js}; connect-src {connect_self}{api} {js}; frame-src {js} https://*.stripe.com; img-src 'self' {js}; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_and_authority_only() {
        assert_eq!(
            origin("https://js.stripe.com/v3/").as_deref(),
            Some("https://js.stripe.com")
        );
        assert_eq!(
            origin("http://127.0.0.1:8420/js.stripe.com/v3/").as_deref(),
            Some("http://127.0.0.1:8420")
        );
        assert_eq!(origin("javascript:alert(1)"), None);
        assert_eq!(origin("https://a.example;script-src *"), None);
        assert_eq!(
            card_page_csp("https://js.stripe.com/v3/", "https://api.stripe.com", "n0"),
            "default-src 'none'; script-src 'nonce-n0' https://js.stripe.com; connect-src https://api.stripe.com https://js.stripe.com; frame-src https://js.stripe.com https://*.stripe.com; img-src 'self' https://js.stripe.com; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        assert_eq!(
            pay_page_csp("https://js.stripe.com/v3/", "https://api.stripe.com", "n1"),
            "default-src 'none'; script-src 'nonce-n1' https://js.stripe.com; connect-src 'self' https://api.stripe.com https://js.stripe.com; frame-src https://js.stripe.com https://*.stripe.com; img-src 'self' https://js.stripe.com; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
    }
}
