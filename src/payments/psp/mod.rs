//! Online and card payments through a payment service provider (`[psp]`; Stripe is the
//! one implementation, [`stripe`]).
//!
//! - **Pay links**: `GET /pay/<invoice>?t=<token>` on the daemon; the token is an
//!   HMAC-SHA256 of the invoice number under the link key (128 bits, compared in constant
//!   time), so nobody reaches another customer's invoice by guessing ([`pay_link`]).
//!   Paying on it charges exactly the invoice's open amount, once ([`online`]).
//! - **Payments received** ([`record`]): posted to the ledger exactly once per provider
//!   payment id (its identity `psp/<provider>/<id>` is written in the same WriteBatch in
//!   the `bank` column family, like a bank transaction's); on the invoice up to its open
//!   amount, the rest as credit, through the same code as bank credits; a payment
//!   naming no invoice of ours goes to suspense.
//! - **Card autopay** ([`collect_cards`]): due invoices of `payment_method = card`
//!   accounts with a saved card (`collections` `card/<account>`) are charged off-session,
//!   one idempotency key per invoice and attempt, the attempt recorded before the call.
//! - **Refunds** of card payments through the provider ([`refund`]).

pub mod online;
pub mod stripe;

use std::path::Path;

use chrono::NaiveDate;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::receipts::{apply_payment, put_suspense, Suspense};
use super::*;
use crate::config::{Config, Psp, PspProvider};
use crate::rate::accounts::{Accounts, PaymentMethod};
use crate::rate::money::{format_cents, Cents};
use crate::store::{Ledger, LedgerError, PayCf, Tx};

/// A provider call that did not work.
#[derive(Debug, thiserror::Error)]
pub enum PspError {
    /// Configuration or a secret file (the message names the key and path, never the secret).
    #[error("{0}")]
    Config(String),
    /// The provider refused the request (4xx): retrying the same will not help.
    #[error("{0}")]
    Refused(String),
    /// The provider could not be reached or failed (transport, 5xx, 429): retry later.
    #[error("{0}")]
    Unavailable(String),
}

impl From<PspError> for PayError {
    fn from(e: PspError) -> PayError {
        PayError::Refused(format!("payment provider: {e}"))
    }
}

/// A payment to ask the provider for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    pub invoice: String,
    pub account: String,
    pub amount_cents: i64,
    /// ISO 4217, as the tariff has it (`EUR`).
    pub currency: String,
    /// Same key, same provider payment (the provider answers a repeat with the first result).
    pub idempotency_key: String,
}

/// The outcome of an off-session charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    Succeeded {
        id: String,
        amount: i64,
    },
    Declined {
        id: Option<String>,
        code: String,
    },
    /// Neither yet (e.g. the bank asks for authentication): the webhook settles it.
    Pending {
        id: String,
        status: String,
        /// For the provider's script when the customer is there to authenticate
        /// (`requires_action` on the pay page); empty otherwise.
        client_secret: String,
    },
}

/// A card-saving session to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupRequest {
    /// The account's provider customer (the card is attached to it).
    pub customer: String,
    /// `metadata[account]`.
    pub account: String,
    /// `metadata[invoice]`: the invoice of the pay page it was made for (none on `/my/card`).
    pub invoice: Option<String>,
    /// `usage=off_session` (the card is kept for automatic payments) or `on_session`
    /// (one payment while the customer is there).
    pub off_session: bool,
    pub idempotency_key: String,
}

/// A card-saving session the customer completes on the card page (a Stripe SetupIntent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    pub id: String,
    /// Handed to the provider's script on the card page (not a server secret).
    pub client_secret: String,
}

/// A card-saving session as the provider has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupState {
    pub id: String,
    /// `succeeded` once the card is confirmed.
    pub status: String,
    pub customer: Option<String>,
    pub payment_method: Option<String>,
    /// `metadata[account]`, set when it was created.
    pub account: Option<String>,
    /// `metadata[invoice]` (pay-page SetupIntents only).
    pub invoice: Option<String>,
    /// `off_session` or `on_session`.
    pub usage: Option<String>,
}

/// A provider payment as the provider has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentState {
    pub id: String,
    /// `succeeded`, `processing`, `requires_action`, `requires_payment_method`, …
    pub status: String,
    /// Handed to the provider's script (not a server secret).
    pub client_secret: String,
    pub payment_method: Option<String>,
    /// `amount` in cents.
    pub amount_cents: i64,
    /// `metadata[invoice]` and `metadata[account]`, set when it was created.
    pub invoice: Option<String>,
    pub account: Option<String>,
}

/// What a card looks like to its holder: never more than the last four digits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardInfo {
    pub last4: Option<String>,
    /// `visa`, `mastercard`, … (the provider's word).
    pub brand: Option<String>,
}

/// What tollgate needs of a payment provider.
pub trait Provider {
    /// `stripe`: names identities (`psp/stripe/<id>`).
    fn name(&self) -> &'static str;
    /// Charges a saved payment method off-session.
    fn charge_saved(
        &self,
        r: &PaymentRequest,
        customer: &str,
        method: &str,
    ) -> Result<Charge, PspError>;
    /// Creates the provider customer of an account (saved cards hang on it).
    fn create_customer(
        &self,
        account: &str,
        email: &str,
        idempotency_key: &str,
    ) -> Result<String, PspError>;
    /// Charges a saved payment method of `customer` while the customer is on the pay
    /// page (on-session: the bank may ask the customer to authenticate, `Pending` with
    /// `requires_action` and the client secret).
    fn charge_on_session(
        &self,
        r: &PaymentRequest,
        customer: &str,
        method: &str,
    ) -> Result<Charge, PspError>;
    /// Creates a payment the customer completes at their bank with iDEAL
    /// (`payment_method_types[]=ideal`, not confirmed here: the browser confirms it and
    /// is sent to the bank); answers it as it is then (`requires_payment_method` and the
    /// client secret for the provider's script).
    fn create_ideal(&self, r: &PaymentRequest) -> Result<PaymentState, PspError>;
    /// A payment as it is now.
    fn payment(&self, id: &str) -> Result<PaymentState, PspError>;
    /// Cancels a payment not completed; returns its status after.
    fn cancel_payment(&self, id: &str) -> Result<String, PspError>;
    /// Starts saving a card (`metadata[account]`, `metadata[invoice]`, `usage`).
    fn create_setup(&self, r: &SetupRequest) -> Result<Setup, PspError>;
    /// A card-saving session as it is now.
    fn setup(&self, id: &str) -> Result<SetupState, PspError>;
    /// The last digits and brand of a saved payment method.
    fn card(&self, payment_method: &str) -> Result<CardInfo, PspError>;
    /// Refunds (part of) a payment; returns the refund's id.
    fn refund(
        &self,
        payment: &str,
        amount_cents: i64,
        idempotency_key: &str,
    ) -> Result<String, PspError>;
}

/// Reads a secret file: trimmed, not empty. Errors name the key and the path only.
pub fn read_secret(key: &str, path: &Path) -> Result<String, PspError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| PspError::Config(format!("{key} {}: {e}", path.display())))?;
    let s = text.trim();
    if s.is_empty() {
        return Err(PspError::Config(format!(
            "{key} {}: the file is empty",
            path.display()
        )));
    }
    Ok(s.to_owned())
}

/// The `[psp]` table or a refusal naming it.
pub fn psp(cfg: &Config) -> Result<&Psp, PayError> {
    cfg.psp.as_ref().ok_or_else(|| {
        PayError::Refused(format!(
            "config {}: no [psp] table; online and card payments are off",
            cfg.source.display()
        ))
    })
}

/// The configured provider, its secret key read now.
pub fn provider(p: &Psp) -> Result<Box<dyn Provider>, PspError> {
    match p.provider {
        PspProvider::Stripe => Ok(Box::new(stripe::Stripe::new(
            &p.api_base,
            read_secret("psp.secret_key_file", &p.secret_key_file)?,
        ))),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// The key pay-link tokens are made with: HMAC-SHA256(`link_secret_file`'s content, or
/// else the secret API key's, `"tollgate pay link v1"`).
pub fn link_key(p: &Psp) -> Result<Vec<u8>, PspError> {
    let base = match &p.link_secret_file {
        Some(f) => read_secret("psp.link_secret_file", f)?,
        None => read_secret("psp.secret_key_file", &p.secret_key_file)?,
    };
    Ok(hmac(base.as_bytes(), &[b"tollgate pay link v1"]))
}

/// The token of an invoice's pay link: the first 128 bits of HMAC-SHA256(link key,
/// invoice number), hex.
pub fn pay_token(key: &[u8], invoice: &str) -> String {
    hex(&hmac(key, &[b"pay\0", invoice.as_bytes()])[..16])
}

/// Whether `token` is the invoice's pay-link token (constant-time compare).
pub fn token_ok(key: &[u8], invoice: &str, token: &str) -> bool {
    bool::from(pay_token(key, invoice).as_bytes().ct_eq(token.as_bytes()))
}

/// The pay link of an invoice, `<psp.public_url>/pay/<invoice>?t=<token>`; `None` when
/// no `[psp]` is configured or its key file cannot be read. For the PDF and the
/// delivery e-mail: the link works for as long as the invoice has something open
/// (afterwards it says so) and the link key stays the same.
pub fn pay_link(cfg: &Config, invoice: &str) -> Option<String> {
    pay_link_for(cfg.psp.as_ref()?, invoice)
}

/// [`pay_link`] with the `[psp]` table.
pub fn pay_link_for(p: &Psp, invoice: &str) -> Option<String> {
    let key = link_key(p).ok()?;
    Some(format!(
        "{}/pay/{}?t={}",
        p.public_url,
        invoice_segment(invoice),
        pay_token(&key, invoice)
    ))
}

/// An invoice number as a path segment of the pay routes (percent-encoded; invoice
/// numbers are letters, digits and '-', and '-' stays readable).
pub fn invoice_segment(invoice: &str) -> String {
    percent_encoding::utf8_percent_encode(invoice, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2D", "-")
}

/// The account an invoice belongs to.
pub fn account_of(ledger: &Ledger, invoice: &str) -> Result<Option<String>, LedgerError> {
    Ok(ledger
        .pay_get(PayCf::Refs, format!("inv/{invoice}").as_bytes())?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// What is open on an invoice of `account` (0 when nothing, or no such invoice).
pub fn open_amount(ledger: &Ledger, account: &str, invoice: &str) -> Result<i64, LedgerError> {
    Ok(online::state(ledger, account, invoice)?.0)
}

/// A payment the provider says it received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub provider: String,
    pub payment: String,
    pub amount_cents: i64,
    pub currency: String,
    /// From the payment's metadata (we put them there); checked against our records.
    pub invoice: Option<String>,
    pub account: Option<String>,
    pub date: NaiveDate,
    /// `online` (pay link) or `card autopay`.
    pub how: String,
}

/// What posting a received payment did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Posted {
    /// On the invoice (up to its open amount) and the rest as credit.
    Applied {
        account: String,
        invoice: String,
        on_invoice: Cents,
        credit: Cents,
    },
    /// Names no invoice of ours: on the suspense list.
    Suspense { id: u64 },
    /// Posted before (same provider payment id): nothing changed.
    Duplicate,
    /// Not in the tariff currency: recorded, not posted (see the log).
    WrongCurrency,
}

/// The record of a provider payment (`bank` column family, `psp/<provider>/<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRecord {
    pub provider: String,
    pub payment: String,
    pub amount: Cents,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice: Option<String>,
    pub date: String,
    pub outcome: String,
    /// Refunded through the provider so far.
    #[serde(default)]
    pub refunded: Cents,
}

fn identity(provider: &str, payment: &str) -> String {
    format!("psp/{provider}/{payment}")
}

/// The record of a provider payment.
pub fn payment_record(
    ledger: &Ledger,
    provider: &str,
    payment: &str,
) -> Result<Option<PaymentRecord>, LedgerError> {
    let k = identity(provider, payment);
    match ledger.pay_get(PayCf::Bank, k.as_bytes())? {
        None => Ok(None),
        Some(v) => ledger.pay_json(PayCf::Bank, k.as_bytes(), &v).map(Some),
    }
}

/// Posts a received payment inside a transaction, once per provider payment id.
pub(crate) fn post_received(
    ledger: &Ledger,
    tx: &mut Tx,
    extra: &mut Vec<Entry>,
    currency: &str,
    r: &Received,
) -> Result<Posted, LedgerError> {
    let key = identity(&r.provider, &r.payment);
    if ledger.pay_get(PayCf::Bank, key.as_bytes())?.is_some() {
        return Ok(Posted::Duplicate);
    }
    let mut rec = PaymentRecord {
        provider: r.provider.clone(),
        payment: r.payment.clone(),
        amount: Cents(r.amount_cents),
        currency: r.currency.clone(),
        account: None,
        invoice: None,
        date: r.date.to_string(),
        outcome: String::new(),
        refunded: Cents::ZERO,
    };
    let matched = match &r.invoice {
        Some(n) => account_of(ledger, n)?
            .filter(|a| r.account.as_ref().is_none_or(|want| want == a))
            .map(|a| (n.clone(), a)),
        None => None,
    };
    let posted = if !r.currency.eq_ignore_ascii_case(currency) {
        Posted::WrongCurrency
    } else if let Some((inv, acc)) = matched {
        let (on, rest) = apply_payment(
            ledger,
            tx,
            extra,
            &acc,
            Some(&inv),
            r.amount_cents,
            r.date,
            &key,
            &format!("{} via {} {}", r.how, r.provider, r.payment),
        )?;
        // A card collection of this invoice is settled by its payment.
        if let Some(mut c) = collection(ledger, &inv)? {
            if c.sequence == CARD && c.msg_id == r.payment && c.status == "pending" {
                c.status = "settled".into();
                tx.put(
                    PayCf::Collections,
                    format!("inv/{inv}"),
                    serde_json::to_vec(&c).expect("json"),
                );
            }
        }
        rec.account = Some(acc.clone());
        rec.invoice = Some(inv.clone());
        Posted::Applied {
            account: acc,
            invoice: inv,
            on_invoice: Cents(on),
            credit: Cents(rest),
        }
    } else {
        let id = put_suspense(
            tx,
            Suspense {
                id: 0,
                identity: key.clone(),
                date: r.date.to_string(),
                amount: Cents(r.amount_cents),
                name: String::new(),
                iban: String::new(),
                text: format!(
                    "{} payment {}{}",
                    r.provider,
                    r.payment,
                    r.invoice
                        .as_ref()
                        .map(|n| format!(" for invoice {n}"))
                        .unwrap_or_default()
                ),
                file: format!("{} webhook", r.provider),
            },
        );
        Posted::Suspense { id }
    };
    rec.outcome = match &posted {
        Posted::Applied { .. } => "applied",
        Posted::Suspense { .. } => "suspense",
        Posted::Duplicate => "duplicate",
        Posted::WrongCurrency => "wrong_currency",
    }
    .into();
    tx.put(PayCf::Bank, key, serde_json::to_vec(&rec).expect("json"));
    Ok(posted)
}

/// Posts a received payment in its own batch (the webhook).
pub fn record(ledger: &Ledger, currency: &str, r: &Received) -> Result<Posted, PayError> {
    ledger.transact(|ledger, tx| {
        let mut extra = Vec::new();
        Ok(post_received(ledger, tx, &mut extra, currency, r)?)
    })
}

/// The card an account is charged on (`collections` `card/<account>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCard {
    pub provider: String,
    pub customer: String,
    pub payment_method: String,
    pub saved: String,
    /// `cli`, or `setup_intent <id>`.
    pub source: String,
    /// The card's last four digits, when the provider told them (printed on invoices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last4: Option<String>,
    /// The card's brand (`visa`), when known (the UBL card account's network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
}

/// The saved card of an account.
pub fn saved_card(ledger: &Ledger, account: &str) -> Result<Option<SavedCard>, LedgerError> {
    let k = format!("card/{account}");
    match ledger.pay_get(PayCf::Collections, k.as_bytes())? {
        None => Ok(None),
        Some(v) => ledger
            .pay_json(PayCf::Collections, k.as_bytes(), &v)
            .map(Some),
    }
}

/// Saves (replaces) the card an account is charged on.
pub fn save_card(
    ledger: &Ledger,
    accounts: &Accounts,
    account: &str,
    card: SavedCard,
) -> Result<(), PayError> {
    card_account(accounts, account)?;
    if card.customer.is_empty() || card.payment_method.is_empty() {
        return refused("a saved card needs a provider customer and payment method");
    }
    ledger.transact(|_, tx| {
        tx.put(
            PayCf::Collections,
            format!("card/{account}"),
            serde_json::to_vec(&card).expect("json"),
        );
        Ok(())
    })
}

/// The provider customer of an account (`collections` `customer/<account>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRecord {
    pub provider: String,
    pub customer: String,
}

fn card_account<'a>(
    accounts: &'a Accounts,
    account: &str,
) -> Result<&'a crate::rate::accounts::Account, PayError> {
    let a = super::receipts::check_account(accounts, account)?;
    if a.payment_method != PaymentMethod::Card {
        return refused(format!(
            "account {account} pays by {}, not card (set payment_method = card in the accounts file)",
            a.payment_method.as_str()
        ));
    }
    Ok(a)
}

/// The provider customer of an account (any payment method: the pay page attaches the
/// card it takes to it too): the saved card's, else the one created before
/// (`customer/<account>`), else a new one (idempotency key `tollgate-customer-<account>`),
/// stored in its own batch before it is used. Serialized in the process, so two card
/// pages opened at once make one customer.
pub fn provider_customer(
    ledger: &Ledger,
    accounts: &Accounts,
    account: &str,
    provider: &dyn Provider,
) -> Result<String, PayError> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE.lock().unwrap_or_else(|e| e.into_inner());
    let a = super::receipts::check_account(accounts, account)?;
    if let Some(c) = saved_card(ledger, account)?.filter(|c| c.provider == provider.name()) {
        return Ok(c.customer);
    }
    let k = format!("customer/{account}");
    if let Some(v) = ledger.pay_get(PayCf::Collections, k.as_bytes())? {
        let r: CustomerRecord = ledger.pay_json(PayCf::Collections, k.as_bytes(), &v)?;
        if r.provider == provider.name() {
            return Ok(r.customer);
        }
    }
    let customer = provider.create_customer(
        account,
        a.email.trim(),
        &format!("tollgate-customer-{account}"),
    )?;
    let rec = CustomerRecord {
        provider: provider.name().into(),
        customer: customer.clone(),
    };
    ledger.transact(|_, tx| {
        tx.put(
            PayCf::Collections,
            k.clone(),
            serde_json::to_vec(&rec).expect("json"),
        );
        Ok::<_, PayError>(())
    })?;
    Ok(customer)
}

/// Starts saving a card for a card account: a SetupIntent (`usage=off_session`,
/// `metadata[account]`) on the account's provider customer. `nonce` makes the
/// idempotency key of this one request (`tollgate-setup-<account>-<nonce>`).
pub fn start_card_setup(
    ledger: &Ledger,
    accounts: &Accounts,
    account: &str,
    nonce: &str,
    provider: &dyn Provider,
) -> Result<Setup, PayError> {
    card_account(accounts, account)?;
    let customer = provider_customer(ledger, accounts, account, provider)?;
    Ok(provider.create_setup(&SetupRequest {
        customer,
        account: account.to_owned(),
        invoice: None,
        off_session: true,
        idempotency_key: format!("tollgate-setup-{account}-{nonce}"),
    })?)
}

/// A confirmed SetupIntent of `account`, read back from the provider: it must name that
/// account and the account's provider customer (and `invoice`, when given) and have
/// succeeded. Returns it with the customer and the payment method. Another account's or
/// an unknown SetupIntent is [`PayError::NotFound`]; one not confirmed (yet) is refused.
/// Nothing the browser says is trusted but the id.
pub(crate) fn checked_setup(
    ledger: &Ledger,
    accounts: &Accounts,
    account: &str,
    invoice: Option<&str>,
    setup_id: &str,
    provider: &dyn Provider,
) -> Result<(SetupState, String, String), PayError> {
    let not_found = || PayError::NotFound(format!("no card setup {setup_id} of account {account}"));
    let st = match provider.setup(setup_id) {
        Ok(s) => s,
        Err(PspError::Refused(_)) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    if st.account.as_deref() != Some(account)
        || invoice.is_some_and(|i| st.invoice.as_deref() != Some(i))
    {
        return Err(not_found());
    }
    let customer = provider_customer(ledger, accounts, account, provider)?;
    if st.customer.as_deref() != Some(customer.as_str()) {
        return Err(not_found());
    }
    let Some(pm) = st
        .payment_method
        .clone()
        .filter(|_| st.status == "succeeded")
    else {
        return refused(format!(
            "card setup {setup_id} is not confirmed (status {})",
            st.status
        ));
    };
    Ok((st, customer, pm))
}

/// Saves, for a card account, the card of a SetupIntent [`checked_setup`] returned (its
/// last digits and brand asked of the provider).
#[allow(clippy::too_many_arguments)]
pub(crate) fn save_setup_card(
    ledger: &Ledger,
    accounts: &Accounts,
    account: &str,
    setup: &SetupState,
    customer: String,
    payment_method: String,
    date: NaiveDate,
    provider: &dyn Provider,
) -> Result<SavedCard, PayError> {
    let info = card_info(provider, &payment_method);
    let card = SavedCard {
        provider: provider.name().into(),
        customer,
        payment_method,
        saved: date.to_string(),
        source: format!("setup_intent {}", setup.id),
        last4: info.last4,
        brand: info.brand,
    };
    save_card(ledger, accounts, account, card.clone())?;
    Ok(card)
}

/// The card of a confirmed SetupIntent, read back from the provider: saved for `account`
/// only when the SetupIntent names that account and its customer, and has succeeded
/// (`checked_setup`). Another account's or an unknown SetupIntent is
/// [`PayError::NotFound`]; one not confirmed (yet) is refused. Saving the same card twice
/// (the webhook and the return page) changes nothing but the date. The pay page keeps
/// the card it was paid with through the same two steps when the customer asked for it.
pub fn finish_card_setup(
    ledger: &Ledger,
    accounts: &Accounts,
    account: &str,
    setup_id: &str,
    date: NaiveDate,
    provider: &dyn Provider,
) -> Result<SavedCard, PayError> {
    card_account(accounts, account)?;
    let (st, customer, pm) = checked_setup(ledger, accounts, account, None, setup_id, provider)?;
    save_setup_card(ledger, accounts, account, &st, customer, pm, date, provider)
}

/// The card's last digits and brand, or nothing when the provider cannot tell now (the
/// card is saved all the same; invoices then say "your card").
pub fn card_info(provider: &dyn Provider, payment_method: &str) -> CardInfo {
    provider.card(payment_method).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the card's last digits could not be read");
        CardInfo::default()
    })
}

/// The `sequence` of a card collection's record.
pub const CARD: &str = "CARD";

/// What a card autopay run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct CardReport {
    pub charged: usize,
    pub total: Cents,
    pub declined: usize,
    /// Waiting for the provider (authentication, processing): the webhook settles them.
    pub pending: usize,
    /// Provider unreachable: tried again with the same idempotency key next run.
    pub failed: usize,
    /// Due invoices of card accounts without a saved card (not charged).
    pub no_card: usize,
    pub messages: Vec<String>,
}

/// Charges, off-session, every invoice with an open amount due on or before `date` of a
/// card account with a saved card, once: the attempt (idempotency key
/// `tollgate-<invoice>-<attempt>`) is recorded as a `pending` card collection before the
/// call; after it, one batch records the outcome — the payment posted (exactly once by
/// its id) and the collection `settled`, or the collection `returned` with the decline
/// code and a `card_declined` notice queued (like a returned debit). An attempt left
/// `pending` without a provider id (the call failed or the run was killed) is repeated
/// with the same key; anything else on record is never charged again automatically.
pub fn collect_cards(
    cfg: &Config,
    ledger: &Ledger,
    accounts: &Accounts,
    currency: &str,
    date: NaiveDate,
    provider: &dyn Provider,
) -> Result<CardReport, PayError> {
    let d = date.to_string();
    let mut rep = CardReport::default();
    for a in accounts
        .list
        .iter()
        .filter(|a| a.payment_method == PaymentMethod::Card)
    {
        let (_, items) = derive(&a.account_id, entries(ledger, &a.account_id, &[])?, date);
        let due: Vec<_> = items
            .into_iter()
            .filter(|it| it.open_cents > 0 && it.due_date.as_str() <= d.as_str())
            .collect();
        if due.is_empty() {
            continue;
        }
        let Some(card) = saved_card(ledger, &a.account_id)? else {
            rep.no_card += due.len();
            continue;
        };
        for it in due {
            let prior = collection(ledger, &it.invoice)?;
            // Paid on the pay page and not posted yet (the webhook posts it): not again.
            if let Some(why) = prior
                .is_none()
                .then(|| online::under_way(ledger, &a.account_id, &it.invoice))
                .transpose()?
                .flatten()
            {
                rep.pending += 1;
                rep.messages.push(format!("{}: {why}", it.invoice));
                continue;
            }
            let key = match &prior {
                None => {
                    let key = format!("tollgate-{}-1", it.invoice);
                    let c = Collection {
                        end_to_end_id: key.clone(),
                        msg_id: String::new(),
                        date: d.clone(),
                        amount: Cents(it.open_cents),
                        sequence: CARD.into(),
                        status: "pending".into(),
                        return_reason: None,
                    };
                    ledger.transact(|_, tx| {
                        tx.put(
                            PayCf::Collections,
                            format!("inv/{}", it.invoice),
                            serde_json::to_vec(&c).expect("json"),
                        );
                        Ok::<_, PayError>(())
                    })?;
                    key
                }
                Some(c) if c.sequence == CARD && c.status == "pending" && c.msg_id.is_empty() => {
                    c.end_to_end_id.clone()
                }
                Some(_) => continue,
            };
            // A repeat charges what the first attempt asked for (same key, same request).
            let amount = prior.as_ref().map_or(it.open_cents, |c| c.amount.0);
            let req = PaymentRequest {
                invoice: it.invoice.clone(),
                account: a.account_id.clone(),
                amount_cents: amount,
                currency: currency.to_owned(),
                idempotency_key: key.clone(),
            };
            let outcome = provider.charge_saved(&req, &card.customer, &card.payment_method);
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    rep.failed += 1;
                    rep.messages.push(format!("{}: {e}", it.invoice));
                    continue;
                }
            };
            ledger.transact(|ledger, tx| {
                let mut c = collection(ledger, &it.invoice)?.expect("recorded above");
                match &outcome {
                    Charge::Succeeded { id, amount } => {
                        c.msg_id = id.clone();
                        c.status = "settled".into();
                        let mut extra = Vec::new();
                        post_received(
                            ledger,
                            tx,
                            &mut extra,
                            currency,
                            &Received {
                                provider: provider.name().into(),
                                payment: id.clone(),
                                amount_cents: *amount,
                                currency: currency.to_owned(),
                                invoice: Some(it.invoice.clone()),
                                account: Some(a.account_id.clone()),
                                date,
                                how: "card autopay".into(),
                            },
                        )?;
                        rep.charged += 1;
                        rep.total += Cents(*amount);
                    }
                    Charge::Declined { id, code } => {
                        c.msg_id = id.clone().unwrap_or_else(|| "declined".into());
                        c.status = "returned".into();
                        c.return_reason = Some(code.clone());
                        crate::payments::dunning::queue_decline_notice(
                            cfg,
                            tx,
                            a,
                            &it.invoice,
                            amount,
                            &d,
                        );
                        rep.declined += 1;
                        rep.messages
                            .push(format!("{}: declined ({code})", it.invoice));
                    }
                    Charge::Pending { id, status, .. } => {
                        c.msg_id = id.clone();
                        rep.pending += 1;
                        rep.messages.push(format!("{}: {status}", it.invoice));
                    }
                }
                tx.put(
                    PayCf::Collections,
                    format!("inv/{}", it.invoice),
                    serde_json::to_vec(&c).expect("json"),
                );
                Ok::<_, PayError>(())
            })?;
        }
    }
    Ok(rep)
}

/// Refunds (part of) a provider payment of `account` through the provider, out of the
/// account's credit balance (the rule manual refunds follow); returns the balance after
/// it. The idempotency key is `tollgate-refund-<payment>-<refunded so far in cents>`, so
/// repeating a refund whose answer was lost asks for the same refund again.
#[allow(clippy::too_many_arguments)]
pub fn refund(
    ledger: &Ledger,
    accounts: &Accounts,
    account: &str,
    payment: &str,
    amount: i64,
    date: NaiveDate,
    provider: &dyn Provider,
) -> Result<i64, PayError> {
    super::receipts::check_account(accounts, account)?;
    if amount <= 0 {
        return refused("the amount must be positive");
    }
    let Some(rec) = payment_record(ledger, provider.name(), payment)? else {
        return refused(format!(
            "no {} payment {payment} was received",
            provider.name()
        ));
    };
    if rec.account.as_deref() != Some(account) {
        return refused(format!(
            "{} payment {payment} was not posted to account {account}",
            provider.name()
        ));
    }
    if rec.amount.0 - rec.refunded.0 < amount {
        return refused(format!(
            "{} payment {payment} of {} has {} left to refund, less than {}",
            provider.name(),
            rec.amount,
            Cents(rec.amount.0 - rec.refunded.0),
            format_cents(amount)
        ));
    }
    super::receipts::check_credit(ledger, account, amount, date)?;
    let key = format!("tollgate-refund-{payment}-{}", rec.refunded.0);
    let refund_id = provider.refund(payment, amount, &key)?;
    ledger.transact(|ledger, tx| {
        let mut rec = payment_record(ledger, provider.name(), payment)?.expect("checked");
        rec.refunded += Cents(amount);
        tx.put(
            PayCf::Bank,
            identity(provider.name(), payment),
            serde_json::to_vec(&rec).expect("json"),
        );
        super::receipts::post_refund(
            ledger,
            tx,
            account,
            amount,
            date,
            &identity(provider.name(), &refund_id),
            &format!("refund of {} payment {payment}", provider.name()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pay_tokens_are_per_invoice_and_checked_whole() {
        let key = hmac(b"sk_test_x", &[b"tollgate pay link v1"]);
        let t = pay_token(&key, "2026-000001");
        assert_eq!(t.len(), 32);
        assert!(token_ok(&key, "2026-000001", &t));
        assert!(!token_ok(&key, "2026-000002", &t));
        assert!(!token_ok(&key, "2026-000001", &t[..31]));
        assert!(!token_ok(&key, "2026-000001", ""));
        let other = hmac(b"sk_test_y", &[b"tollgate pay link v1"]);
        assert!(!token_ok(&other, "2026-000001", &t));
    }
}
