//! Where the self-service page meets the payment provider: "pay now" per open invoice
//! and "save my card".
//!
//! "Pay now" sends the customer to the invoice's signed pay link
//! ([`crate::payments::psp::pay_link`]): the pay page creates the provider payment for
//! exactly the open amount when it is opened, and the webhook posts it. Saving a card
//! online (a SetupIntent page) is not built yet: [`CARD_SETUP`] is false, so the page
//! does not show the button and `/my/card` answers 503; a card is attached through the
//! provider's `setup_intent.succeeded` webhook (docs/payments-online.md). Each function
//! gets the account from the session, never from the request.

use crate::config::Config;
use crate::ingest::engine::Engine;
use crate::rate::money::Cents;

/// Whether the page offers "save my card" (no SetupIntent page yet).
pub const CARD_SETUP: bool = false;

/// Is a payment provider configured (`[psp]`)? Decides whether "pay now" shows.
pub fn configured(cfg: &Config) -> bool {
    cfg.psp.is_some()
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

/// The provider's page that saves a card for `account` (not built yet, see [`CARD_SETUP`]).
pub fn card_setup_url(_engine: &Engine, _account: &str) -> Result<String, String> {
    Err("saving a card online is not available yet".into())
}
