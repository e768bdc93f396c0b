//! Paying an invoice on its pay page, finalized on the server (Stripe's "finalize
//! payments on the server" flow, with a SetupIntent taking the card):
//!
//! 1. [`start_setup`]: a SetupIntent on the account's provider customer, `metadata[account]`
//!    and `metadata[invoice]`, `usage=on_session` (one payment) or `off_session` (the
//!    customer asked to keep the card for automatic payments; card accounts only). The
//!    browser confirms it with the card form (Stripe.js `confirmCardSetup`).
//! 2. [`pay`]: the SetupIntent read back from the provider (it must name this account, its
//!    customer and this invoice, and have succeeded: nothing the browser says is trusted
//!    but the id), then a PaymentIntent for EXACTLY the open amount derived from the
//!    ledger now, on that customer and payment method, confirmed by the server
//!    (`confirm=true`). The bank may ask the customer to authenticate (3-D Secure):
//!    `requires_action` and the client secret go back to the browser, which completes it
//!    (`confirmCardPayment`) and asks again to see the outcome.
//!
//! **Never twice.** Every attempt is recorded (`collections` `pay/<invoice>`,
//! [`PayAttempt`]) in its own batch BEFORE the provider is called, with the state the
//! amount was derived from (`<open cents>-<entries of the account>`) and an idempotency
//! key per invoice, state and attempt (`tollgate-pay-<invoice>-<state>-<attempt>`); the
//! outcome is a second batch. While the account's state is the same, a request for an
//! invoice whose attempt succeeded, is processing or waits for authentication charges
//! nothing more (a double click, a retry, a reload, a second tab); one that died between
//! the two batches is repeated with the same key and the same card (the provider answers
//! with the first charge); only a declined or failed attempt lets a new one start (another
//! card). Requests for one invoice are handled one at a time (a second at once is told to
//! wait). `collect` does not charge a card for an invoice with such an attempt under way.
//!
//! **iDEAL** (tariffs in EUR): [`start_ideal`] makes, under the same attempt record and
//! key discipline, a PaymentIntent for exactly the open amount with
//! `payment_method_types[]=ideal`, not confirmed: the browser confirms it (Stripe.js
//! `confirmIdealPayment`) and goes to the customer's bank, which sends it back to
//! `/pay/<invoice>/done` ([`returned`]). The attempt is `open` while the customer may
//! still complete it at the bank; a repeat in the same state hands out the same payment;
//! a card paying after it, or an iDEAL payment after a card waiting for authentication,
//! cancels the earlier payment at the provider first (`supersede`), so the invoice is
//! never paid twice by one customer's clicks.
//!
//! The ledger is still posted only by the verified `payment_intent.succeeded` webhook,
//! once per payment id; nothing here posts an entry.

use std::collections::BTreeSet;
use std::sync::Mutex;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{
    card_account, checked_setup, payment_record, provider_customer, save_setup_card, Charge,
    PaymentRequest, Provider, PspError, Setup, SetupRequest,
};
use crate::payments::{derive, entries, PayError};
use crate::rate::accounts::{Accounts, PaymentMethod};
use crate::rate::money::Cents;
use crate::store::{Ledger, LedgerError, PayCf};

/// A pay page's payment attempt on an invoice (`collections` `pay/<invoice>`, the last
/// one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayAttempt {
    /// `<open cents>-<number of ledger entries of the account>` when it was made.
    pub state: String,
    /// 1, 2, … within the same state (a new one only after a decline or a failure).
    pub attempt: u32,
    /// `card` (not written: the records before iDEAL have none) or `ideal`.
    #[serde(default = "card", skip_serializing_if = "is_card")]
    pub method: String,
    pub amount: Cents,
    pub customer: String,
    pub payment_method: String,
    /// The SetupIntent the card came from.
    pub setup: String,
    /// The provider payment, once the provider named it.
    #[serde(default)]
    pub payment: String,
    /// `pending` (asked, no answer recorded), `succeeded`, `processing`,
    /// `requires_action`, `declined`, `failed`; iDEAL: `open` (made, the customer may
    /// complete it at the bank), `canceled`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub date: String,
}

/// The `method` of a card attempt.
pub const CARD: &str = "card";
/// The `method` of an iDEAL attempt.
pub const IDEAL: &str = "ideal";

fn card() -> String {
    CARD.into()
}

fn is_card(m: &str) -> bool {
    m == CARD
}

impl PayAttempt {
    /// Under way: a payment of this state must not be started again (`collect` skips it).
    fn under_way(&self) -> bool {
        matches!(
            self.status.as_str(),
            "pending" | "succeeded" | "processing" | "requires_action" | "open"
        )
    }

    /// A new iDEAL attempt (no customer, card or SetupIntent).
    fn ideal(state: &str, attempt: u32, open: i64, date: NaiveDate) -> PayAttempt {
        PayAttempt {
            state: state.to_owned(),
            attempt,
            method: IDEAL.into(),
            amount: Cents(open),
            customer: String::new(),
            payment_method: String::new(),
            setup: String::new(),
            payment: String::new(),
            status: "pending".into(),
            code: None,
            date: date.to_string(),
        }
    }

    /// The request this attempt asks the provider for: its amount, with the key
    /// `tollgate-pay-<invoice>-<state>-<attempt>` (a repeat is the same request).
    fn request(&self, currency: &str, account: &str, invoice: &str) -> PaymentRequest {
        PaymentRequest {
            invoice: invoice.to_owned(),
            account: account.to_owned(),
            amount_cents: self.amount.0,
            currency: currency.to_owned(),
            idempotency_key: format!("tollgate-pay-{invoice}-{}-{}", self.state, self.attempt),
        }
    }
}

/// What paying on the pay page did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Online {
    /// Nothing is open on the invoice: nothing was charged.
    NothingOpen,
    /// The provider took the payment; the webhook posts it.
    Succeeded,
    /// The provider is processing it; the webhook posts it.
    Processing,
    /// The bank asks the customer to authenticate, in the browser with this secret.
    RequiresAction { client_secret: String },
    /// The card was declined (the provider's code): nothing charged, another card may try.
    Declined { code: String },
    /// The customer did not complete the authentication: nothing charged.
    AuthenticationFailed,
    /// Another request for this invoice is being handled now.
    Busy,
    /// iDEAL: the payment is made; the browser confirms it with this secret and goes to
    /// the customer's bank.
    ToBank { client_secret: String },
}

/// Why a pay-page request was refused.
#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    /// The SetupIntent is unknown, or not this account's, customer's or invoice's.
    #[error("{0}")]
    NotFound(String),
    /// The SetupIntent has not succeeded.
    #[error("{0}")]
    NotConfirmed(String),
    /// "Remember this card" asked for an account that does not pay by card.
    #[error("{0}")]
    NotCardAccount(String),
    /// iDEAL asked where it is not offered (the tariff's currency is not EUR).
    #[error("{0}")]
    NotOffered(String),
    /// The provider refused or could not be reached, or the ledger failed (logged).
    #[error("{0}")]
    Unavailable(String),
}

impl From<PayError> for OnlineError {
    fn from(e: PayError) -> OnlineError {
        match e {
            PayError::NotFound(m) => OnlineError::NotFound(m),
            PayError::Refused(m) if m.contains("is not confirmed") => OnlineError::NotConfirmed(m),
            PayError::Refused(m) if m.contains(", not card") => OnlineError::NotCardAccount(m),
            other => OnlineError::Unavailable(other.to_string()),
        }
    }
}

impl From<LedgerError> for OnlineError {
    fn from(e: LedgerError) -> OnlineError {
        OnlineError::Unavailable(e.to_string())
    }
}

impl From<PspError> for OnlineError {
    fn from(e: PspError) -> OnlineError {
        OnlineError::Unavailable(format!("payment provider: {e}"))
    }
}

/// What is open on `invoice` of `account`, and the state it was derived from
/// (`<open cents>-<entries of the account>`: any entry posted since changes it).
pub fn state(ledger: &Ledger, account: &str, invoice: &str) -> Result<(i64, String), LedgerError> {
    let es = entries(ledger, account, &[])?;
    let n = es.len();
    let (_, items) = derive(account, es, NaiveDate::MIN);
    let open = items
        .iter()
        .find(|i| i.invoice == invoice)
        .map_or(0, |i| i.open_cents.max(0));
    Ok((open, format!("{open}-{n}")))
}

fn record_key(invoice: &str) -> String {
    format!("pay/{invoice}")
}

/// The last pay-page attempt on an invoice.
pub fn attempt(ledger: &Ledger, invoice: &str) -> Result<Option<PayAttempt>, LedgerError> {
    let k = record_key(invoice);
    match ledger.pay_get(PayCf::Collections, k.as_bytes())? {
        None => Ok(None),
        Some(v) => ledger
            .pay_json(PayCf::Collections, k.as_bytes(), &v)
            .map(Some),
    }
}

fn put(ledger: &Ledger, invoice: &str, a: &PayAttempt) -> Result<(), OnlineError> {
    ledger.transact(|_, tx| {
        tx.put(
            PayCf::Collections,
            record_key(invoice),
            serde_json::to_vec(a).expect("json"),
        );
        Ok::<_, PayError>(())
    })?;
    Ok(())
}

/// Whether a pay-page payment of `invoice` is under way in the account's current state
/// (asked, succeeded, processing, waiting for authentication, or an iDEAL payment made and
/// not completed at the bank, and no entry posted since): `collect` does not charge the
/// saved card for it. `Some` says what is under way, for `collect`'s line.
pub fn under_way(
    ledger: &Ledger,
    account: &str,
    invoice: &str,
) -> Result<Option<&'static str>, LedgerError> {
    let Some(a) = attempt(ledger, invoice)? else {
        return Ok(None);
    };
    if !a.under_way() || a.state != state(ledger, account, invoice)?.1 {
        return Ok(None);
    }
    Ok(Some(if a.method == IDEAL && a.status != "succeeded" {
        "iDEAL payment under way on the pay page, waiting for the bank"
    } else {
        "paid on the pay page, waiting for the provider"
    }))
}

/// The invoices with a request being handled in this process.
static BUSY: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// One request per invoice at a time: held while it is handled.
struct Turn(String);

impl Turn {
    fn take(invoice: &str) -> Option<Turn> {
        let mut b = BUSY.lock().unwrap_or_else(|e| e.into_inner());
        b.insert(invoice.to_owned())
            .then(|| Turn(invoice.to_owned()))
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        BUSY.lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.0);
    }
}

/// Starts taking a card on the pay page of `invoice` (of `account`): a SetupIntent on the
/// account's provider customer, `usage=off_session` when `remember` (card accounts only,
/// else [`OnlineError::NotCardAccount`]), else `on_session`. `None`: nothing is open
/// (nothing is asked of the provider). `nonce` makes the idempotency key of this one
/// request (`tollgate-pay-setup-<invoice>-<nonce>`).
#[allow(clippy::too_many_arguments)]
pub fn start_setup(
    ledger: &Ledger,
    accounts: &Accounts,
    account: &str,
    invoice: &str,
    remember: bool,
    nonce: &str,
    provider: &dyn Provider,
) -> Result<Option<Setup>, OnlineError> {
    if remember {
        card_account(accounts, account)?;
    }
    let (open, _) = state(ledger, account, invoice)?;
    if open <= 0 {
        return Ok(None);
    }
    let customer = provider_customer(ledger, accounts, account, provider)?;
    Ok(Some(provider.create_setup(&SetupRequest {
        customer,
        account: account.to_owned(),
        invoice: Some(invoice.to_owned()),
        off_session: remember,
        idempotency_key: format!("tollgate-pay-setup-{invoice}-{nonce}"),
    })?))
}

/// Pays `invoice` of `account` with the card of the SetupIntent `setup_id` (see the module
/// documentation): checks the SetupIntent, derives the open amount now, and charges it at
/// most once per state of the account. When the SetupIntent was made to keep the card
/// (`usage=off_session`) and the account pays by card, the card is saved as `/my/card`
/// saves it ([`super::finish_card_setup`]'s two steps), unless the payment was declined.
#[allow(clippy::too_many_arguments)]
pub fn pay(
    ledger: &Ledger,
    accounts: &Accounts,
    currency: &str,
    account: &str,
    invoice: &str,
    setup_id: &str,
    date: NaiveDate,
    provider: &dyn Provider,
) -> Result<Online, OnlineError> {
    let Some(_turn) = Turn::take(invoice) else {
        return Ok(Online::Busy);
    };
    let (setup, customer, pm) =
        checked_setup(ledger, accounts, account, Some(invoice), setup_id, provider)?;
    let (open, state) = state(ledger, account, invoice)?;
    if open <= 0 {
        return Ok(Online::NothingOpen);
    }
    let prior = attempt(ledger, invoice)?.filter(|a| a.state == state);
    let fresh = |n: u32| PayAttempt {
        state: state.clone(),
        attempt: n,
        method: CARD.into(),
        amount: Cents(open),
        customer: customer.clone(),
        payment_method: pm.clone(),
        setup: setup.id.clone(),
        payment: String::new(),
        status: "pending".into(),
        code: None,
        date: date.to_string(),
    };
    let outcome = match prior {
        None => charge(ledger, currency, account, invoice, fresh(1), provider)?,
        // An iDEAL payment the customer may still complete at the bank: cancelled first.
        Some(a) if a.method == IDEAL && matches!(a.status.as_str(), "pending" | "open") => {
            let next = a.attempt + 1;
            match settle_ideal(ledger, currency, account, invoice, a, provider)? {
                Some(o) => o,
                None => charge(ledger, currency, account, invoice, fresh(next), provider)?,
            }
        }
        Some(a) => match a.status.as_str() {
            "succeeded" => Online::Succeeded,
            "processing" => Online::Processing,
            // Asked before and no answer recorded: the same request again, same key.
            "pending" => charge(ledger, currency, account, invoice, a, provider)?,
            "requires_action" => {
                let p = provider.payment(&a.payment)?;
                match p.status.as_str() {
                    "succeeded" | "processing" => {
                        let mut a = a;
                        a.status = p.status.clone();
                        put(ledger, invoice, &a)?;
                        if p.status == "succeeded" {
                            Online::Succeeded
                        } else {
                            Online::Processing
                        }
                    }
                    "requires_action" | "requires_confirmation"
                        if p.payment_method.as_deref() == Some(pm.as_str()) =>
                    {
                        Online::RequiresAction {
                            client_secret: p.client_secret,
                        }
                    }
                    "requires_action" | "requires_confirmation" => {
                        // Another card now: the payment waiting for the first card's
                        // authentication is cancelled before a new one is made.
                        cancel(provider, &a.payment)?;
                        charge(
                            ledger,
                            currency,
                            account,
                            invoice,
                            fresh(a.attempt + 1),
                            provider,
                        )?
                    }
                    _ => {
                        // Authentication failed or abandoned: nothing was charged.
                        let mut a = a;
                        a.status = "declined".into();
                        a.code = Some("authentication_failed".into());
                        put(ledger, invoice, &a)?;
                        Online::AuthenticationFailed
                    }
                }
            }
            // Declined or failed before: a new attempt (another card, or the same again).
            _ => charge(
                ledger,
                currency,
                account,
                invoice,
                fresh(a.attempt + 1),
                provider,
            )?,
        },
    };
    let keep = setup.usage.as_deref() == Some("off_session")
        && accounts
            .get(account)
            .is_some_and(|a| a.payment_method == PaymentMethod::Card);
    if keep
        && !matches!(
            outcome,
            Online::Declined { .. } | Online::AuthenticationFailed
        )
    {
        save_setup_card(
            ledger, accounts, account, &setup, customer, pm, date, provider,
        )?;
    }
    Ok(outcome)
}

/// Records the attempt `a` as it stands (`pending`) before `call` asks the provider; a
/// refusal is recorded `failed` with the provider's reason. An unreachable provider leaves
/// it `pending`: the next request asks again with the same idempotency key.
fn ask<T>(
    ledger: &Ledger,
    invoice: &str,
    a: &mut PayAttempt,
    call: impl FnOnce(&PayAttempt) -> Result<T, PspError>,
) -> Result<T, OnlineError> {
    put(ledger, invoice, a)?;
    match call(a) {
        Ok(x) => Ok(x),
        Err(e @ PspError::Unavailable(_)) => Err(e.into()),
        Err(e) => {
            a.status = "failed".into();
            a.code = Some(e.to_string());
            put(ledger, invoice, a)?;
            Err(e.into())
        }
    }
}

/// Records the attempt `a` (`pending`), asks the provider, records the outcome.
fn charge(
    ledger: &Ledger,
    currency: &str,
    account: &str,
    invoice: &str,
    mut a: PayAttempt,
    provider: &dyn Provider,
) -> Result<Online, OnlineError> {
    let outcome = ask(ledger, invoice, &mut a, |a| {
        let req = a.request(currency, account, invoice);
        provider.charge_on_session(&req, &a.customer, &a.payment_method)
    })?;
    let online = match outcome {
        Charge::Succeeded { id, .. } => {
            a.payment = id;
            a.status = "succeeded".into();
            Online::Succeeded
        }
        Charge::Pending {
            id,
            status,
            client_secret,
        } => {
            a.payment = id;
            if status == "requires_action" {
                a.status = "requires_action".into();
                Online::RequiresAction { client_secret }
            } else {
                a.status = "processing".into();
                a.code = Some(status);
                Online::Processing
            }
        }
        Charge::Declined { id, code } => {
            a.payment = id.unwrap_or_default();
            a.status = "declined".into();
            a.code = Some(code.clone());
            Online::Declined { code }
        }
    };
    put(ledger, invoice, &a)?;
    Ok(online)
}

/// Cancels a payment not completed at the provider; it must be `canceled` after.
fn cancel(provider: &dyn Provider, payment: &str) -> Result<(), OnlineError> {
    let after = provider.cancel_payment(payment)?;
    if after != "canceled" {
        return Err(OnlineError::Unavailable(format!(
            "payment {payment} is {after} after cancelling it"
        )));
    }
    Ok(())
}

/// An earlier attempt whose payment the customer may still complete in the browser (a
/// card waiting for authentication, an iDEAL payment not completed at the bank), before
/// a new attempt replaces it: read back from the provider; succeeded or processing
/// meanwhile, that outcome (recorded); otherwise cancelled at the provider and recorded
/// `canceled` (`None`: go on with the new attempt).
fn supersede(
    ledger: &Ledger,
    invoice: &str,
    mut a: PayAttempt,
    provider: &dyn Provider,
) -> Result<Option<Online>, OnlineError> {
    let p = provider.payment(&a.payment)?;
    match p.status.as_str() {
        "succeeded" | "processing" => {
            a.status = p.status.clone();
            put(ledger, invoice, &a)?;
            return Ok(Some(if p.status == "succeeded" {
                Online::Succeeded
            } else {
                Online::Processing
            }));
        }
        "canceled" => {}
        _ => cancel(provider, &a.payment)?,
    }
    a.status = "canceled".into();
    put(ledger, invoice, &a)?;
    Ok(None)
}

/// An iDEAL attempt `pending` or `open` of the current state, before a card pays: a
/// `pending` one is asked again first (same key: the provider answers with the payment
/// it made), then it is [`supersede`]d.
fn settle_ideal(
    ledger: &Ledger,
    currency: &str,
    account: &str,
    invoice: &str,
    a: PayAttempt,
    provider: &dyn Provider,
) -> Result<Option<Online>, OnlineError> {
    let a = if a.status == "pending" {
        match open_ideal(ledger, currency, account, invoice, a, provider)? {
            Online::ToBank { .. } => attempt(ledger, invoice)?.expect("recorded"),
            other => return Ok(Some(other)),
        }
    } else {
        a
    };
    supersede(ledger, invoice, a, provider)
}

/// Starts paying `invoice` of `account` with iDEAL on its pay page (see the module
/// documentation): a PaymentIntent for exactly the open amount derived now,
/// `payment_method_types[]=ideal`, in `currency` (EUR only: iDEAL takes nothing else,
/// else [`OnlineError::NotOffered`]), at most one per state of the account: a repeat
/// while it is `open` hands out the same payment ([`Online::ToBank`] with its client
/// secret), one that succeeded or is processing answers so; a card payment waiting for
/// authentication is cancelled first; a `pending` card charge (no answer recorded) is
/// asked again first and decides.
pub fn start_ideal(
    ledger: &Ledger,
    currency: &str,
    account: &str,
    invoice: &str,
    date: NaiveDate,
    provider: &dyn Provider,
) -> Result<Online, OnlineError> {
    if !currency.eq_ignore_ascii_case("EUR") {
        return Err(OnlineError::NotOffered(format!(
            "iDEAL takes EUR only; the tariff's currency is {currency}"
        )));
    }
    let Some(_turn) = Turn::take(invoice) else {
        return Ok(Online::Busy);
    };
    let (open, state) = state(ledger, account, invoice)?;
    if open <= 0 {
        return Ok(Online::NothingOpen);
    }
    let next = match attempt(ledger, invoice)?.filter(|a| a.state == state) {
        None => 1,
        Some(a) => {
            let next = a.attempt + 1;
            match (a.method.as_str(), a.status.as_str()) {
                (_, "succeeded") => return Ok(Online::Succeeded),
                (_, "processing") => return Ok(Online::Processing),
                // Asked before and no answer recorded: the same request again, same key.
                (IDEAL, "pending") => {
                    return open_ideal(ledger, currency, account, invoice, a, provider)
                }
                (IDEAL, "open") => {
                    let p = provider.payment(&a.payment)?;
                    match p.status.as_str() {
                        "canceled" => next,
                        "succeeded" | "processing" => {
                            return Ok(supersede(ledger, invoice, a, provider)?
                                .expect("succeeded or processing"))
                        }
                        // Not completed at the bank (yet): the same payment again.
                        _ => {
                            return Ok(Online::ToBank {
                                client_secret: p.client_secret,
                            })
                        }
                    }
                }
                (_, "pending") => {
                    // A card charge with no answer recorded: asked again (same key) first.
                    match charge(ledger, currency, account, invoice, a, provider)? {
                        Online::Declined { .. } | Online::AuthenticationFailed => next,
                        Online::RequiresAction { .. } => {
                            let a = attempt(ledger, invoice)?.expect("recorded");
                            if let Some(o) = supersede(ledger, invoice, a, provider)? {
                                return Ok(o);
                            }
                            next
                        }
                        other => return Ok(other),
                    }
                }
                (_, "requires_action") => {
                    if let Some(o) = supersede(ledger, invoice, a, provider)? {
                        return Ok(o);
                    }
                    next
                }
                // Declined, failed or cancelled before: a new attempt.
                _ => next,
            }
        }
    };
    open_ideal(
        ledger,
        currency,
        account,
        invoice,
        PayAttempt::ideal(&state, next, open, date),
        provider,
    )
}

/// Records the iDEAL attempt `a` (`pending`), asks the provider for the payment, records
/// it `open` with the payment's id.
fn open_ideal(
    ledger: &Ledger,
    currency: &str,
    account: &str,
    invoice: &str,
    mut a: PayAttempt,
    provider: &dyn Provider,
) -> Result<Online, OnlineError> {
    let p = ask(ledger, invoice, &mut a, |a| {
        provider.create_ideal(&a.request(currency, account, invoice))
    })?;
    a.payment = p.id;
    let online = match p.status.as_str() {
        // A repeat the provider answers with a payment completed since.
        "succeeded" => Online::Succeeded,
        "processing" => Online::Processing,
        _ => Online::ToBank {
            client_secret: p.client_secret,
        },
    };
    a.status = match online {
        Online::Succeeded => "succeeded",
        Online::Processing => "processing",
        _ => "open",
    }
    .into();
    put(ledger, invoice, &a)?;
    Ok(online)
}

/// The customer back from the bank on `/pay/<invoice>/done` with `payment` (Stripe adds
/// `payment_intent=<id>` to the return URL): the payment read back from the provider
/// must name this invoice and account ([`OnlineError::NotFound`] otherwise: nothing the
/// browser says is trusted but the id). `true` when it was received: it succeeded or
/// is processing at the provider, or its webhook was recorded already. Nothing is
/// written: the webhook posts it.
pub fn returned(
    ledger: &Ledger,
    account: &str,
    invoice: &str,
    payment: &str,
    provider: &dyn Provider,
) -> Result<bool, OnlineError> {
    let not_found = || OnlineError::NotFound(format!("no payment {payment} of invoice {invoice}"));
    let p = match provider.payment(payment) {
        Ok(p) => p,
        Err(PspError::Refused(_)) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    if p.id != payment
        || p.invoice.as_deref() != Some(invoice)
        || p.account.as_deref() != Some(account)
    {
        return Err(not_found());
    }
    Ok(matches!(p.status.as_str(), "succeeded" | "processing")
        || payment_record(ledger, provider.name(), &p.id)?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_request_per_invoice_at_a_time() {
        let a = Turn::take("2026-000001").expect("free");
        assert!(Turn::take("2026-000001").is_none(), "busy while held");
        let b = Turn::take("2026-000002").expect("another invoice is free");
        drop(a);
        assert!(Turn::take("2026-000001").is_some(), "free again");
        drop(b);
    }

    #[test]
    fn attempts_under_way_block_a_second_charge() {
        let mut a = PayAttempt {
            state: "1210-3".into(),
            attempt: 1,
            method: CARD.into(),
            amount: Cents(1210),
            customer: "cus_1".into(),
            payment_method: "pm_1".into(),
            setup: "seti_1".into(),
            payment: String::new(),
            status: "pending".into(),
            code: None,
            date: "2026-10-20".into(),
        };
        for (s, under) in [
            ("pending", true),
            ("succeeded", true),
            ("processing", true),
            ("requires_action", true),
            ("open", true),
            ("declined", false),
            ("failed", false),
            ("canceled", false),
        ] {
            a.status = s.into();
            assert_eq!(a.under_way(), under, "{s}");
        }
    }

    #[test]
    fn card_attempts_are_stored_as_before_ideal_ones_say_so() {
        let a = PayAttempt::ideal(
            "1210-3",
            2,
            1210,
            NaiveDate::from_ymd_opt(2026, 10, 20).unwrap(),
        );
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v["method"], "ideal");
        assert_eq!(
            a.request("EUR", "C1", "2026-000001").idempotency_key,
            "tollgate-pay-2026-000001-1210-3-2"
        );
        let mut c = a.clone();
        c.method = CARD.into();
        let v = serde_json::to_value(&c).unwrap();
        assert!(v.get("method").is_none(), "{v}");
        let back: PayAttempt = serde_json::from_value(v).unwrap();
        assert_eq!(back.method, "card");
    }
}
