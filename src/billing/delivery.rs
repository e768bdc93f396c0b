//! Delivery of every issued document (invoice, credit note, reissue, final invoice) to
//! its customer, through the outbox (docs/delivery.md).
//!
//! - **Queued in the document's batch.** [`queue`] puts one outbox message (status
//!   `queued`, `document` = the number) into the payments part of the batch that stores
//!   the document (`Ledger::close`, `Ledger::issue`): a committed document always has
//!   its delivery, a crash never loses one. Nothing is queued without `[delivery]`.
//! - **Sent after the commit** by [`run`] (`tollgate deliver`, and the daemon every
//!   [`DAEMON_TICK`]): the attachments are rendered from the stored document (the same
//!   pure functions that write the files, so they are byte-identical to the `.pdf` and
//!   `.xml` beside it, and delivery never waits for or races with the file writer).
//!   The account's `delivery` column (at send time) picks the channel: `email` (lettre,
//!   SMTP relay of `[outbox]`), `peppol` (the UBL into `[delivery] peppol_outbox`, temp
//!   file + fsync + rename + directory fsync), `none` (status `none`: posted by the
//!   operator).
//! - **At most once without a resend.** Before the SMTP `DATA` command (after `MAIL`
//!   and `RCPT` were accepted) and before the Peppol rename, the message is marked
//!   `sending` in a synced write; the outcome (`sent`, or `failed` with the server's
//!   reply) is recorded at once. A run that finds a message still `sending` (the process
//!   died in that window: the server may or may not have it) marks it `interrupted` and
//!   never sends it again by itself: `bills resend` does. A failure the server stated
//!   (a 4xx/5xx reply) is retried with back-off (`retry_seconds`, doubling) up to
//!   `max_attempts`; a connection lost after `DATA` is `interrupted` too.
//!
//! Must not: send anything inside a batch, or hand-write MIME (lettre builds it).

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use super::model::Invoice;
use crate::config::Config;
use crate::payments::dunning::{outbox, Message};
use crate::rate::accounts::{Account, Accounts, DeliveryMethod};
use crate::store::{Ledger, LedgerError, PayCf, Tx};

/// How often the daemon runs [`run`] (retries, and documents a close or an API call
/// issued since the last run).
pub const DAEMON_TICK: Duration = Duration::from_secs(10);

/// One run at a time in a process (the daemon's tick and an API call may overlap):
/// a `sending` message seen by a run is then always one a dead process left behind.
static RUN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The delivery kind of a document: `invoice`, `credit_note`, `final_invoice`, `reissue`.
pub fn kind_of(inv: &Invoice) -> &'static str {
    if inv.is_credit_note() {
        "credit_note"
    } else if inv.replaces.is_some() {
        "reissue"
    } else if inv.final_invoice {
        "final_invoice"
    } else {
        "invoice"
    }
}

fn put(tx: &mut Tx, m: &Message) {
    tx.put(
        PayCf::Outbox,
        m.id.to_be_bytes().to_vec(),
        serde_json::to_vec(m).expect("json"),
    );
}

fn queued(tx: &mut Tx, inv: &Invoice, created: &str, resend_of: Option<u64>) -> u64 {
    let id = tx.next_id();
    put(
        tx,
        &Message {
            id,
            account: inv.account_id.clone(),
            invoice: inv.number.clone(),
            kind: kind_of(inv).to_owned(),
            created: created.to_owned(),
            status: "queued".into(),
            document: Some(inv.number.clone()),
            resend_of,
            queued_at: Some(now_text(Utc::now())),
            ..Message::default()
        },
    );
    id
}

/// Queues the delivery of `inv` in the batch that stores it (no-op without `[delivery]`).
pub fn queue(cfg: &Config, tx: &mut Tx, inv: &Invoice) {
    if cfg.delivery.is_some() {
        queued(tx, inv, &inv.issue_date.to_string(), None);
    }
}

/// The delivery state of one outbox message, as `bills show`, the statement and
/// `GET /api/v1/bills/{billNo}` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDoc {
    /// The outbox message id.
    pub id: u64,
    /// `queued`, `sending`, `sent`, `failed`, `interrupted`, `none` or `superseded`
    /// (replaced by a resend before it went out).
    pub status: String,
    /// `email`, `peppol` or `none` (once a run looked at it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The address or the Peppol participant id it went to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub attempts: u32,
    /// The server's reply (or the local error) of the last failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When a failed delivery is tried again (absent: no automatic retry left).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// The message this one resends (`bills resend`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resend_of: Option<u64>,
}

impl From<&Message> for DeliveryDoc {
    fn from(m: &Message) -> DeliveryDoc {
        DeliveryDoc {
            id: m.id,
            status: m.status.clone(),
            channel: m.channel.clone(),
            to: (!m.to.is_empty()).then(|| m.to.clone()),
            attempts: m.attempts,
            error: m.error.clone(),
            next_attempt: m.next_attempt.clone(),
            sent_at: m.sent_at.clone(),
            resend_of: m.resend_of,
        }
    }
}

/// Every delivery of every document, by document number (one outbox scan).
pub fn all_states(
    ledger: &Ledger,
) -> Result<std::collections::BTreeMap<String, Vec<DeliveryDoc>>, LedgerError> {
    let mut out: std::collections::BTreeMap<String, Vec<DeliveryDoc>> = Default::default();
    for m in outbox(ledger)? {
        if let Some(d) = &m.document {
            out.entry(d.clone())
                .or_default()
                .push(DeliveryDoc::from(&m));
        }
    }
    Ok(out)
}

/// The deliveries of one document, oldest first (empty: never queued).
pub fn states(ledger: &Ledger, number: &str) -> Result<Vec<DeliveryDoc>, LedgerError> {
    Ok(all_states(ledger)?.remove(number).unwrap_or_default())
}

/// Queues `number` again (a new message; the earlier ones keep their history), in its
/// own synced batch; an earlier delivery of it still waiting (`queued`, or `failed`
/// with a retry to come) becomes `superseded` in the same batch, so one resend sends
/// the document once. Refused without `[delivery]` or for an unknown document.
pub fn resend(cfg: &Config, ledger: &Ledger, number: &str) -> Result<DeliveryDoc, LedgerError> {
    if cfg.delivery.is_none() {
        return Err(super::refused(format!(
            "config {}: no [delivery] table; documents are not delivered",
            cfg.source.display()
        )));
    }
    let inv = super::files::stored_invoice(ledger, number)?
        .ok_or_else(|| super::refused(format!("no document {number}")))?;
    // Not while a run is under way in this process (it may hold an earlier message).
    let _one = RUN.lock().unwrap_or_else(|p| p.into_inner());
    let earlier: Vec<Message> = outbox(ledger)?
        .into_iter()
        .filter(|m| m.document.as_deref() == Some(number))
        .collect();
    let last = earlier.last().map(|m| m.id);
    let today = Utc::now().date_naive().to_string();
    let id = ledger.transact(|_, tx| {
        let id = queued(tx, &inv, &today, last);
        // The resend replaces a delivery still waiting (queued, or failed with a retry
        // to come): without this, the earlier one would go out too and the customer
        // would get the document twice from one resend.
        for m in &earlier {
            if m.status == "queued" || (m.status == "failed" && m.next_attempt.is_some()) {
                let mut m = m.clone();
                m.status = "superseded".into();
                m.next_attempt = None;
                m.error = Some(format!("replaced by resend {id} before it was sent"));
                put(tx, &m);
            }
        }
        Ok::<_, LedgerError>(id)
    })?;
    let m: Message = ledger.pay_json(
        PayCf::Outbox,
        &id.to_be_bytes(),
        &ledger
            .pay_get(PayCf::Outbox, &id.to_be_bytes())?
            .ok_or_else(|| super::refused("resend not stored"))?,
    )?;
    Ok(DeliveryDoc::from(&m))
}

/// What a delivery run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub sent: usize,
    pub failed: usize,
    /// Found `sending`: left by a process that died while sending; not sent again.
    pub interrupted: usize,
    /// `none` accounts (posted by the operator).
    pub not_delivered: usize,
    /// Still queued (no SMTP relay or Peppol folder configured) or waiting for a retry.
    pub waiting: usize,
}

fn now_text(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Retry times to the millisecond (compared as text: one format throughout).
fn stamp_ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn save(ledger: &Ledger, m: &Message) -> Result<(), LedgerError> {
    ledger.transact(|_, tx| {
        put(tx, m);
        Ok::<_, LedgerError>(())
    })
}

/// Delivers every queued document and every failed one whose retry time has come, as
/// of `now`. Each state change is its own synced write (see the module doc).
pub fn run(
    cfg: &Config,
    ledger: &Ledger,
    accounts: &Accounts,
    now: DateTime<Utc>,
) -> Result<RunReport, LedgerError> {
    let _one = RUN.lock().unwrap_or_else(|p| p.into_inner());
    let mut r = RunReport::default();
    let Some(dl) = &cfg.delivery else {
        return Ok(r);
    };
    for mut m in outbox(ledger)? {
        if m.document.is_none() {
            continue;
        }
        match m.status.as_str() {
            "sending" => {
                count(crate::telemetry::DELIVERY_INTERRUPTED, &m);
                m.status = "interrupted".into();
                m.error = Some(
                    "the process stopped while sending: the message may have arrived; \
                     not sent again without `bills resend`"
                        .into(),
                );
                save(ledger, &m)?;
                r.interrupted += 1;
                continue;
            }
            "queued" => {}
            "failed"
                if m.next_attempt
                    .as_deref()
                    .is_some_and(|t| t <= stamp_ms(now).as_str()) => {}
            "failed" if m.next_attempt.is_some() => {
                r.waiting += 1;
                continue;
            }
            _ => continue,
        }
        attempt(cfg, dl, ledger, accounts, &mut m, now, &mut r)?;
    }
    let b = backlog(&outbox(ledger)?, now);
    metrics::gauge!(crate::telemetry::DELIVERY_QUEUED).set(b.queued as f64);
    metrics::gauge!(crate::telemetry::DELIVERY_OLDEST_AGE).set(b.oldest_age_seconds as f64);
    metrics::gauge!(crate::telemetry::DELIVERY_NEEDS_OPERATOR).set(b.needs_operator as f64);
    if r != RunReport::default() {
        tracing::info!(
            sent = r.sent,
            failed = r.failed,
            interrupted = r.interrupted,
            not_delivered = r.not_delivered,
            waiting = r.waiting,
            "document delivery run"
        );
    }
    Ok(r)
}

/// How an attempt ended.
enum Outcome {
    Sent,
    /// Definitely not delivered (refused before `DATA`, or a 4xx/5xx reply): retried.
    Failed(String),
    /// Unknown (connection lost after `DATA`): never retried automatically.
    Unknown(String),
    /// Nothing to send with (no relay / folder configured): stays queued.
    NotConfigured,
}

fn attempt(
    cfg: &Config,
    dl: &crate::config::Delivery,
    ledger: &Ledger,
    accounts: &Accounts,
    m: &mut Message,
    now: DateTime<Utc>,
    r: &mut RunReport,
) -> Result<(), LedgerError> {
    let number = m.document.clone().expect("a document message");
    let inv = super::files::stored_invoice(ledger, &number)?
        .ok_or_else(|| super::refused(format!("outbox message {}: no document {number}", m.id)))?;
    let Some(acc) = accounts.get(&m.account) else {
        return finish(
            ledger,
            dl,
            m,
            now,
            r,
            Outcome::Failed(format!("account {} is not in the accounts file", m.account)),
        );
    };
    m.language = language(acc).to_owned();
    let outcome = match acc.delivery {
        DeliveryMethod::None => {
            m.channel = Some("none".into());
            m.status = "none".into();
            save(ledger, m)?;
            r.not_delivered += 1;
            return Ok(());
        }
        DeliveryMethod::Email => {
            let Some(ob) = cfg.outbox.as_ref().filter(|o| o.smtp.is_some()) else {
                r.waiting += 1;
                return Ok(());
            };
            m.channel = Some("email".into());
            m.to = acc.email.clone();
            let (subject, body) = texts(cfg, ledger, acc, &inv)?;
            m.subject = subject;
            m.body = body;
            let (xml, pdf) = render(cfg, ledger, &inv)?;
            send_email(cfg, dl, ledger, m, ob, &inv, &pdf, &xml, now)?
        }
        DeliveryMethod::Peppol => match &dl.peppol_outbox {
            None => Outcome::NotConfigured,
            Some(dir) => {
                m.channel = Some("peppol".into());
                m.to = acc.peppol_id.clone();
                let (xml, _) = render(cfg, ledger, &inv)?;
                let path = dir.join(peppol_file_name(&acc.peppol_id, &inv.number));
                mark_sending(ledger, m, now)?;
                match std::fs::create_dir_all(dir)
                    .and_then(|_| crate::fsutil::write_atomic(&path, &xml))
                {
                    Ok(()) => Outcome::Sent,
                    Err(e) => Outcome::Failed(format!("cannot write {}: {e}", path.display())),
                }
            }
        },
    };
    finish(ledger, dl, m, now, r, outcome)
}

fn mark_sending(ledger: &Ledger, m: &mut Message, now: DateTime<Utc>) -> Result<(), LedgerError> {
    m.status = "sending".into();
    m.attempts += 1;
    m.sending_at = Some(now_text(now));
    save(ledger, m)
}

fn finish(
    ledger: &Ledger,
    dl: &crate::config::Delivery,
    m: &mut Message,
    now: DateTime<Utc>,
    r: &mut RunReport,
    outcome: Outcome,
) -> Result<(), LedgerError> {
    // Attempts that failed before the `sending` mark count here.
    let counted = m.status == "sending";
    match outcome {
        Outcome::NotConfigured => {
            r.waiting += 1;
            return Ok(());
        }
        Outcome::Sent => {
            m.status = "sent".into();
            let t = now_text(Utc::now());
            m.sent_at = Some(t.clone());
            if m.channel.as_deref() == Some("email") {
                m.email_sent_at = Some(t);
            }
            m.error = None;
            m.next_attempt = None;
            r.sent += 1;
            count(crate::telemetry::DELIVERY_SENT, m);
        }
        Outcome::Failed(e) => {
            if !counted {
                m.attempts += 1;
            }
            tracing::warn!(message = m.id, document = ?m.document, error = %e, "document delivery failed");
            m.status = "failed".into();
            m.error = Some(e);
            m.next_attempt = (m.attempts < dl.max_attempts).then(|| {
                let factor = 1u32 << (m.attempts - 1).min(16);
                let wait = dl.retry * factor;
                stamp_ms(now + chrono::Duration::from_std(wait).unwrap_or_default())
            });
            r.failed += 1;
            count(crate::telemetry::DELIVERY_FAILED, m);
        }
        Outcome::Unknown(e) => {
            tracing::warn!(message = m.id, document = ?m.document, error = %e, "document delivery interrupted");
            m.status = "interrupted".into();
            m.error = Some(format!(
                "{e} (after DATA: the message may have arrived; not sent again without `bills resend`)"
            ));
            m.next_attempt = None;
            r.interrupted += 1;
            count(crate::telemetry::DELIVERY_INTERRUPTED, m);
        }
    }
    save(ledger, m)
}

/// One attempt's outcome into its counter, labelled with the channel (`unknown` when
/// the account was not found).
fn count(name: &'static str, m: &Message) {
    let channel = m.channel.clone().unwrap_or_else(|| "unknown".into());
    metrics::counter!(name, "channel" => channel).increment(1);
}

/// What waits in the outbox, for the gauges (docs/operations.md).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Backlog {
    /// Deliveries not done yet: `queued`, or `failed` with a retry to come.
    pub queued: u64,
    /// Seconds since the oldest of those was queued (0 when none).
    pub oldest_age_seconds: i64,
    /// Documents whose latest delivery is `failed` without a retry left, or `interrupted`.
    pub needs_operator: u64,
}

/// The backlog of `messages` (the outbox; notifications are skipped) as of `now`. A
/// message stored before `queued_at` was kept counts from 00:00 UTC of its `created` day.
pub fn backlog(messages: &[Message], now: DateTime<Utc>) -> Backlog {
    let mut b = Backlog::default();
    let mut latest: std::collections::BTreeMap<&str, &Message> = Default::default();
    for m in messages {
        let Some(doc) = m.document.as_deref() else {
            continue;
        };
        let e = latest.entry(doc).or_insert(m);
        if m.id > e.id {
            *e = m;
        }
        let waiting = m.status == "queued" || (m.status == "failed" && m.next_attempt.is_some());
        if !waiting {
            continue;
        }
        b.queued += 1;
        let since = m
            .queued_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .or_else(|| {
                m.created
                    .parse::<NaiveDate>()
                    .ok()
                    .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
            });
        if let Some(since) = since {
            b.oldest_age_seconds = b.oldest_age_seconds.max((now - since).num_seconds().max(0));
        }
    }
    b.needs_operator = latest
        .values()
        .filter(|m| m.status == "interrupted" || (m.status == "failed" && m.next_attempt.is_none()))
        .count() as u64;
    b
}

/// The UBL and the PDF of a stored document: the bytes its files hold (the same
/// rendering as [`super::files::write_document`]).
fn render(cfg: &Config, ledger: &Ledger, inv: &Invoice) -> Result<(Vec<u8>, Vec<u8>), LedgerError> {
    let annex = match ledger.annex(&inv.number)? {
        Some(a) => Some(
            serde_json::from_slice::<crate::billing::annex::Annex>(&a).map_err(|e| {
                LedgerError::Corrupt {
                    path: ledger.path().to_owned(),
                    key: format!("annex/{}", inv.number),
                    message: e.to_string(),
                }
            })?,
        ),
        None => None,
    };
    let xml = crate::billing::documents::ubl::render(inv);
    let pay_url = cfg
        .psp
        .as_ref()
        .and_then(|p| crate::payments::psp::pay_link_for(p, &inv.number));
    let pdf = crate::billing::documents::pdf::render(inv, annex.as_ref(), &xml, pay_url.as_deref())
        .map_err(|e| super::refused(format!("document {}: {e}", inv.number)))?;
    Ok((xml, pdf))
}

/// The Peppol pick-up file name: `<scheme>_<id>_<document number>.xml`, only
/// `[A-Za-z0-9._-]` (anything else becomes `_`), e.g. `0106_12345678_2026-000123.xml`.
pub fn peppol_file_name(peppol_id: &str, number: &str) -> String {
    let raw = format!("{}_{}.xml", peppol_id.replacen(':', "_", 1), number);
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn language(a: &Account) -> &'static str {
    match a.language.as_str() {
        "en" => "en",
        "nl" => "nl",
        _ if a.country.is_empty() || a.country == "NL" => "nl",
        _ => "en",
    }
}

/// An amount as the customer reads it, as the attached PDF writes it
/// (`documents::pdf::money` without the currency): `1.234,56` in Dutch, `1234.56` in
/// English.
fn amount(cents: i64, lang: &str) -> String {
    crate::billing::documents::pdf::money("", cents, lang)
        .trim_start()
        .to_owned()
}

fn date(d: NaiveDate, lang: &str) -> String {
    if lang == "nl" {
        d.format("%d-%m-%Y").to_string()
    } else {
        d.format("%-d %B %Y").to_string()
    }
}

/// Subject and text of a document email in the account's language. Names the amounts
/// and the due date; never an IBAN in clear (the customer's is masked, the seller's is
/// on the attached invoice); a pay link only for an open amount of a transfer invoice.
fn texts(
    cfg: &Config,
    ledger: &Ledger,
    acc: &Account,
    inv: &Invoice,
) -> Result<(String, String), LedgerError> {
    let l = language(acc);
    let nl = l == "nl";
    let seller = &cfg.seller.name;
    let n = &inv.number;
    let kind = kind_of(inv);
    let subject = match (kind, nl) {
        ("credit_note", true) => format!("Uw creditnota {n} van {seller}"),
        ("credit_note", false) => format!("Your credit note {n} from {seller}"),
        ("final_invoice", true) => format!("Uw eindfactuur {n} van {seller}"),
        ("final_invoice", false) => format!("Your final invoice {n} from {seller}"),
        ("reissue", true) => format!("Uw gecorrigeerde factuur {n} van {seller}"),
        ("reissue", false) => format!("Your corrected invoice {n} from {seller}"),
        (_, true) => format!("Uw factuur {n} van {seller}"),
        (_, false) => format!("Your invoice {n} from {seller}"),
    };
    let mut b = String::new();
    let name = &acc.name;
    b.push_str(&match (nl, name.is_empty()) {
        (true, true) => "Beste klant,\n\n".to_owned(),
        (true, false) => format!("Beste {name},\n\n"),
        (false, true) => "Dear customer,\n\n".to_owned(),
        (false, false) => format!("Dear {name},\n\n"),
    });
    let what = match (kind, nl) {
        ("credit_note", true) => "creditnota",
        ("credit_note", false) => "credit note",
        ("final_invoice", true) => "eindfactuur",
        ("final_invoice", false) => "final invoice",
        (_, true) => "factuur",
        (_, false) => "invoice",
    };
    b.push_str(&if nl {
        format!(
            "In de bijlage vindt u {what} {n} van {seller} over {} t/m {}, als PDF en als UBL-bestand voor uw administratie.\n\n",
            period_day(&inv.period_start, l),
            period_day(&inv.period_end, l)
        )
    } else {
        format!(
            "Attached is {what} {n} from {seller} for {} to {}, as a PDF and as a UBL file for your accounts.\n\n",
            period_day(&inv.period_start, l),
            period_day(&inv.period_end, l)
        )
    });
    let c = &inv.currency;
    if inv.is_credit_note() {
        let total = -inv.total.0;
        let orig = inv
            .credited_invoice
            .as_ref()
            .map_or("", |d| d.number.as_str());
        b.push_str(&if nl {
            format!("Deze creditnota van {c} {} (inclusief btw) corrigeert factuur {orig}. Het bedrag wordt verrekend met wat u nog moet betalen; wat overblijft, storten wij terug.\n", amount(total.abs(), l))
        } else {
            format!("This credit note of {c} {} (VAT included) corrects invoice {orig}. The amount is set off against what you still owe; we refund what is left.\n", amount(total.abs(), l))
        });
    } else {
        if let Some(r) = &inv.replaces {
            b.push_str(&if nl {
                format!("Deze factuur vervangt factuur {}.\n", r.number)
            } else {
                format!("This invoice replaces invoice {}.\n", r.number)
            });
        }
        let vat = match (inv.vat_total.0, nl) {
            (0, true) => "geen btw".to_owned(),
            (0, false) => "no VAT".to_owned(),
            (v, true) => format!("inclusief {c} {} btw", amount(v, l)),
            (v, false) => format!("including {c} {} VAT", amount(v, l)),
        };
        b.push_str(&if nl {
            format!(
                "Totaalbedrag: {c} {} ({vat})\nVervaldatum: {}\n\n",
                amount(inv.total.0, l),
                date(inv.due_date, l)
            )
        } else {
            format!(
                "Total: {c} {} ({vat})\nDue date: {}\n\n",
                amount(inv.total.0, l),
                date(inv.due_date, l)
            )
        });
        let spec = specification(inv, l);
        if !spec.is_empty() {
            b.push_str(if nl {
                "Specificatie (bedragen exclusief btw):\n"
            } else {
                "Summary (amounts excluding VAT):\n"
            });
            for line in spec {
                b.push_str("- ");
                b.push_str(&line);
                b.push('\n');
            }
            b.push('\n');
        }
        let open = crate::payments::view(ledger, &acc.account_id, inv.issue_date, c, &[])?
            .items
            .iter()
            .find(|i| i.invoice == *n)
            .map_or(0, |i| i.open.0);
        let reference = inv.payment_reference.clone().unwrap_or_default();
        match &inv.payment {
            Some(p) if p.method == "direct_debit" => {
                let when = p
                    .collection_date
                    .as_deref()
                    .and_then(|d| d.parse().ok())
                    .map_or_else(String::new, |d| date(d, l));
                let amt = p.amount.map_or(open, |a| a.0);
                b.push_str(&if nl {
                    format!("Wij schrijven {c} {} rond {when} automatisch af van uw rekening {}. U hoeft zelf niets te doen.\n", amount(amt, l), p.iban)
                } else {
                    format!("We will collect {c} {} by direct debit from your account {} on or around {when}. You need not do anything.\n", amount(amt, l), p.iban)
                });
            }
            Some(p) if p.method == "card" && open > 0 => {
                let when = p
                    .collection_date
                    .as_deref()
                    .and_then(|d| d.parse().ok())
                    .map_or_else(|| date(inv.due_date, l), |d| date(d, l));
                let amt = amount(p.amount.map_or(open, |a| a.0.min(open)), l);
                let card = match (nl, p.card_last4.as_deref()) {
                    (true, Some(x)) => format!("uw betaalkaart eindigend op {x}"),
                    (true, None) => "uw betaalkaart".to_owned(),
                    (false, Some(x)) => format!("your card ending {x}"),
                    (false, None) => "your card".to_owned(),
                };
                b.push_str(&if nl {
                    format!("Wij schrijven {c} {amt} op {when} automatisch af van {card}. U hoeft zelf niets te doen.\n")
                } else {
                    format!("{c} {amt} will be charged to {card} on {when}. You need not do anything.\n")
                });
            }
            _ if open <= 0 => b.push_str(if nl {
                "U hoeft niets te betalen: het bedrag is al voldaan.\n"
            } else {
                "Nothing to pay: the amount is settled already.\n"
            }),
            _ => {
                b.push_str(&if nl {
                    format!("Wilt u {c} {} uiterlijk {} overmaken onder vermelding van betalingskenmerk {reference}? De rekeninggegevens en een QR-code staan op de factuur.\n", amount(open, l), date(inv.due_date, l))
                } else {
                    format!("Please transfer {c} {} by {} quoting payment reference {reference}. The bank details and a QR code are on the invoice.\n", amount(open, l), date(inv.due_date, l))
                });
                // `[delivery] pay_url` when set, else the signed pay link of `[psp]`.
                let link = match cfg.delivery.as_ref().and_then(|d| d.pay_url.as_ref()) {
                    Some(url) => Some(url.replace(
                        "{invoice}",
                        &percent_encoding::utf8_percent_encode(n, UNRESERVED).to_string(),
                    )),
                    None => cfg
                        .psp
                        .as_ref()
                        .and_then(|p| crate::payments::psp::pay_link_for(p, n)),
                };
                if let Some(link) = link {
                    b.push_str(&if nl {
                        format!("\nOnline betalen: {link}\n")
                    } else {
                        format!("\nPay online: {link}\n")
                    });
                }
            }
        }
    }
    b.push_str(&if nl {
        format!("\nMet vriendelijke groet,\n{seller}\n")
    } else {
        format!("\nKind regards,\n{seller}\n")
    });
    Ok((subject, b))
}

/// The invoice's lines as the email lists them, in the customer's terms
/// (`documents::units`): the subscriptions, the usage per service summed over its
/// destinations ("Bellen: 3 gesprekken, 0:04:30 (EUR 2,60)"), each allowance as the PDF
/// words it ("300 min bellen: 300 min inbegrepen, 245 min verbruikt (EUR -14,70)") and
/// the fees. Net amounts, exact cents (sums of the lines' cents; nothing is rounded
/// here). Credit lines are not listed (a credit note says what it corrects).
fn specification(inv: &Invoice, l: &str) -> Vec<String> {
    use crate::billing::documents::{pdf, units};
    use crate::billing::model::Line;
    let nl = l == "nl";
    let c = &inv.currency;
    let money = |cents: i64| format!("{c} {}", amount(cents, l));
    let mut subs = Vec::new();
    // (service, records, units, cents) in first-seen order.
    let mut usage: Vec<(&str, u64, u64, i64)> = Vec::new();
    let mut rest = Vec::new();
    for line in &inv.lines {
        match line {
            Line::Subscription { plan, amount, .. } => subs.push(format!(
                "{} {plan} ({})",
                if nl { "Abonnement" } else { "Subscription" },
                money(amount.0)
            )),
            Line::Usage {
                service,
                quantity,
                usage: u,
                amount,
                ..
            } => match usage.iter_mut().find(|x| x.0 == service.as_str()) {
                Some(x) => {
                    x.1 += quantity;
                    x.2 += u;
                    x.3 += amount.0;
                }
                None => usage.push((service.as_str(), *quantity, *u, amount.0)),
            },
            Line::Allowance {
                name,
                included,
                used,
                unit,
                amount,
                ..
            } => rest.push(format!(
                "{} ({})",
                pdf::allowance_text(l, name, unit, *included, *used),
                money(amount.0)
            )),
            Line::Fee {
                description,
                amount,
                ..
            } => rest.push(format!("{description} ({})", money(amount.0))),
            Line::Credit { .. } => {}
        }
    }
    let service_name = |s: &str| match (s, nl) {
        ("voice", true) => "Bellen".to_owned(),
        ("voice", false) => "Calls".to_owned(),
        ("sms", _) => "SMS".to_owned(),
        ("data", _) => "Data".to_owned(),
        (other, _) => other.to_owned(),
    };
    let mut out = subs;
    out.extend(usage.into_iter().map(|(s, records, u, cents)| {
        format!(
            "{}: {} ({})",
            service_name(s),
            units::summary(s, records, u, l),
            money(cents)
        )
    }));
    out.extend(rest);
    out
}

/// What a pay link leaves unencoded in the invoice number: RFC 3986 unreserved.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn period_day(d: &str, l: &str) -> String {
    d.parse().map_or_else(|_| d.to_owned(), |d| date(d, l))
}

/// Sends one document email: the connection (TLS and authentication as `[outbox]`
/// says) and MAIL and RCPT first (a failure there is a plain failure), then the durable
/// `sending` mark, then DATA and the message.
#[allow(clippy::too_many_arguments)]
fn send_email(
    cfg: &Config,
    dl: &crate::config::Delivery,
    ledger: &Ledger,
    m: &mut Message,
    ob: &crate::config::Outbox,
    inv: &Invoice,
    pdf: &[u8],
    xml: &[u8],
    now: DateTime<Utc>,
) -> Result<Outcome, LedgerError> {
    use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
    use lettre::transport::smtp::extension::{MailBodyParameter, MailParameter};
    let from = ob.from.as_str();
    let domain = from.rsplit_once('@').map_or("tollgate", |(_, d)| d);
    let built = build_mail(cfg, dl, m, inv, pdf, xml, from, domain);
    let mail = match built {
        Ok(mail) => mail,
        Err(e) => return Ok(Outcome::Failed(e)),
    };
    let bytes = mail.formatted();
    let envelope = mail.envelope();
    // Connected, secured (`smtp_tls`) and authenticated; a failure here handed nothing over.
    let mut conn = match crate::payments::mail::connect(ob) {
        Ok(c) => c,
        Err(e) => return Ok(Outcome::Failed(e)),
    };
    let mut params = Vec::new();
    if !bytes.is_ascii() {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let before = conn
        .command(Mail::new(envelope.from().cloned(), params))
        .and_then(|_| {
            envelope
                .to()
                .iter()
                .try_for_each(|t| conn.command(Rcpt::new(t.clone(), vec![])).map(|_| ()))
        });
    if let Err(e) = before {
        conn.abort();
        return Ok(Outcome::Failed(e.to_string()));
    }
    // From here on the server may take the message: record that first.
    mark_sending(ledger, m, now)?;
    let out = conn.command(Data).and_then(|_| conn.message(&bytes));
    let outcome = match out {
        Ok(_) => Outcome::Sent,
        // The server answered 4xx/5xx: it did not take the message.
        Err(e) if e.is_transient() || e.is_permanent() => Outcome::Failed(e.to_string()),
        Err(e) => Outcome::Unknown(e.to_string()),
    };
    if matches!(outcome, Outcome::Sent) {
        let _ = conn.quit();
    } else {
        conn.abort();
    }
    Ok(outcome)
}

/// The email of one document: text, PDF and UBL (lettre's MIME builder).
#[allow(clippy::too_many_arguments)]
fn build_mail(
    cfg: &Config,
    dl: &crate::config::Delivery,
    m: &Message,
    inv: &Invoice,
    pdf: &[u8],
    xml: &[u8],
    from: &str,
    domain: &str,
) -> Result<lettre::Message, String> {
    use lettre::message::header::ContentType;
    use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
    let from: lettre::Address = from.parse().map_err(|e| format!("from: {e}"))?;
    let to: Mailbox = m.to.parse().map_err(|e| format!("to `{}`: {e}", m.to))?;
    let mut b = lettre::Message::builder()
        .from(Mailbox::new(Some(cfg.seller.name.clone()), from))
        .to(to)
        .subject(&m.subject)
        .message_id(Some(format!("<tollgate-doc-{}@{domain}>", m.id)));
    if let Some(r) = &dl.reply_to {
        b = b.reply_to(r.parse().map_err(|e| format!("reply_to: {e}"))?);
    }
    let pdf_type = ContentType::parse("application/pdf").map_err(|e| e.to_string())?;
    let xml_type = ContentType::parse("application/xml").map_err(|e| e.to_string())?;
    b.multipart(
        MultiPart::mixed()
            .singlepart(SinglePart::plain(m.body.clone()))
            .singlepart(Attachment::new(format!("{}.pdf", inv.number)).body(pdf.to_vec(), pdf_type))
            .singlepart(
                Attachment::new(format!("{}.xml", inv.number)).body(xml.to_vec(), xml_type),
            ),
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peppol_file_names_keep_to_a_safe_character_set() {
        assert_eq!(
            peppol_file_name("0106:12345678", "2026-000123"),
            "0106_12345678_2026-000123.xml"
        );
        assert_eq!(
            peppol_file_name("9944:NL123456789B01", "CN/2026 7"),
            "9944_NL123456789B01_CN_2026_7.xml"
        );
    }

    #[test]
    fn amounts_and_dates_in_the_customer_language() {
        assert_eq!(amount(1210, "nl"), "12,10");
        assert_eq!(amount(123_456_789, "en"), "1234567.89");
        assert_eq!(amount(123_456_789, "nl"), "1.234.567,89");
        assert_eq!(amount(-123_456, "nl"), "-1.234,56");
        assert_eq!(amount(-5, "nl"), "-0,05");
        let d = NaiveDate::from_ymd_opt(2026, 11, 5).unwrap();
        assert_eq!(date(d, "nl"), "05-11-2026");
        assert_eq!(date(d, "en"), "5 November 2026");
    }

    fn msg(id: u64, doc: &str, status: &str, retry: bool, queued_at: Option<&str>) -> Message {
        Message {
            id,
            document: Some(doc.into()),
            status: status.into(),
            next_attempt: retry.then(|| "2026-12-05T10:00:00.000Z".into()),
            created: "2026-12-01".into(),
            queued_at: queued_at.map(Into::into),
            ..Message::default()
        }
    }

    #[test]
    fn the_backlog_counts_what_waits_and_what_needs_the_operator() {
        let now: DateTime<Utc> = "2026-12-05T09:00:00Z".parse().unwrap();
        let msgs = [
            // Waiting: queued 10 min ago; failed with a retry, queued 1 h ago.
            msg(1, "A", "queued", false, Some("2026-12-05T08:50:00Z")),
            msg(2, "B", "failed", true, Some("2026-12-05T08:00:00Z")),
            // Failed for good, then resent and sent: nothing for the operator.
            msg(3, "C", "failed", false, Some("2026-12-04T08:00:00Z")),
            msg(4, "C", "sent", false, Some("2026-12-05T08:30:00Z")),
            // The operator's: failed for good; interrupted.
            msg(5, "D", "failed", false, None),
            msg(6, "E", "interrupted", false, None),
            // Neither: sent, none, superseded, and a dunning notice (no document).
            msg(7, "F", "sent", false, None),
            msg(8, "G", "none", false, None),
            msg(9, "H", "superseded", false, None),
        ];
        let mut notice = msg(10, "X", "pending", false, None);
        notice.document = None;
        let mut all = msgs.to_vec();
        all.push(notice);
        assert_eq!(
            backlog(&all, now),
            Backlog {
                queued: 2,
                oldest_age_seconds: 3600,
                needs_operator: 2
            }
        );
        // A message stored before `queued_at` was kept counts from its `created` day.
        let old = [msg(1, "A", "queued", false, None)];
        assert_eq!(backlog(&old, now).oldest_age_seconds, 4 * 86_400 + 9 * 3600);
        assert_eq!(backlog(&[], now), Backlog::default());
    }

    #[test]
    fn pay_links_encode_only_what_a_url_needs() {
        let e = |s: &str| percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string();
        assert_eq!(e("2026-000001"), "2026-000001");
        assert_eq!(e("CN-2026/1 a"), "CN-2026%2F1%20a");
    }
}
