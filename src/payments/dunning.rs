//! Dunning: reminders, the consumer's 14-day letter, statutory collection costs,
//! commercial interest and compensation for businesses, and the outbox that delivers
//! each notification once (SMTP via lettre, optional webhook).
//!
//! Rules (Dutch law, BW 6:96 and 6:119a):
//! - consumers: collection costs only after the formal letter (`formal_notice`) gave 14
//!   days counted from the day after receipt (`receipt_days` after sending); the letter
//!   states the amount; costs on the statutory scale ([`collection_costs`]).
//! - businesses: statutory commercial interest from the due date on the open amount,
//!   accrued at every run (simple interest, 365-day year, exact until billed, then
//!   rounded half-up to cents) plus the fixed compensation (40.00) at `formal_notice`.
//! - fees are pending until the next close bills them as their own lines (no VAT: they
//!   are compensation, not a supply).
//! - an invoice that is paid (or has a direct debit pending) is not dunned: paying
//!   before a step cancels it.
//! - steps are taken in order, one at a time: a step is due `days_after_due` after the
//!   due date and, when an earlier step was taken late, no sooner than the schedule's
//!   spacing after that step (so a late or restarted run never fires steps back to back).

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::config::{Config, StepKind};
use crate::payments::{PayError, PendingFee};
use crate::rate::accounts::{Account, Accounts, CustomerType};
use crate::rate::money::{format_cents, Cents};
use crate::store::{Ledger, LedgerError, PayCf, Tx};

/// Statutory collection costs (Besluit vergoeding voor buitengerechtelijke
/// incassokosten) on a principal, in cents: 15 % of the first 2 500, 10 % of the next
/// 2 500, 5 % of the next 5 000, 1 % of the next 190 000, 0.5 % above; at least 40.00,
/// at most 6 775.00. Computed exactly, rounded half-up to cents once at the end.
pub fn collection_costs(principal_cents: i64) -> i64 {
    if principal_cents <= 0 {
        return 0;
    }
    // (bracket size in cents, rate in per mille ×10 = basis points / 10)
    const SCALE: [(i64, i64); 5] = [
        (250_000, 1500),
        (250_000, 1000),
        (500_000, 500),
        (19_000_000, 100),
        (i64::MAX, 50),
    ];
    let mut rest = principal_cents;
    // Sum in cents × 10 000 (basis points), exact.
    let mut sum: i128 = 0;
    for (size, bp) in SCALE {
        let part = rest.min(size);
        sum += part as i128 * bp as i128;
        rest -= part;
        if rest == 0 {
            break;
        }
    }
    let cents = crate::rate::money::div_round_half_up(sum, 10_000) as i64;
    cents.clamp(4000, 677_500)
}

/// Interest for `days` days on `principal_cents` at `rate` percent a year (365-day
/// year), exact (in cents, unrounded).
pub fn interest(principal_cents: i64, rate: Decimal, days: i64) -> Decimal {
    Decimal::from(principal_cents) * rate / Decimal::from(100) * Decimal::from(days)
        / Decimal::from(365)
}

/// Interest on an invoice's open amount for the days `from..to` (each day on what was
/// open at its end), exact: the span is cut at every ledger entry date in it, so a
/// partial payment or a credit note lowers the interest from its date on.
fn accrue(
    entries: &[crate::payments::Entry],
    invoice: &str,
    rate: Decimal,
    from: NaiveDate,
    to: NaiveDate,
) -> Decimal {
    let day = |e: &crate::payments::Entry| Some(e.date);
    let mut cuts: Vec<NaiveDate> = entries
        .iter()
        .filter_map(day)
        .filter(|d| *d > from && *d < to)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut starts = vec![from];
    starts.extend(cuts);
    let mut sum = Decimal::ZERO;
    for (i, s) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(to);
        let upto: Vec<_> = entries
            .iter()
            .filter(|e| day(e).is_some_and(|d| d <= *s))
            .cloned()
            .collect();
        let account = entries.first().map(|e| e.account.as_str()).unwrap_or("");
        let (_, items) = crate::payments::derive(account, upto, *s);
        let open = items
            .iter()
            .find(|x| x.invoice == invoice)
            .map_or(0, |x| x.open_cents.max(0));
        sum += interest(open, rate, (end - *s).num_days());
    }
    sum
}

fn round_cents(d: Decimal) -> i64 {
    use rust_decimal::prelude::ToPrimitive;
    d.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
        .to_i64()
        .unwrap_or(0)
}

/// A step taken for an invoice (`dunning` column family, key `invoice \0 step`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub invoice: String,
    pub account: String,
    pub step: String,
    pub date: String,
    pub open: Cents,
    /// Formal letter: costs stated and the last day to pay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub costs: Option<Cents>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
    /// Interest accrual: accrued up to this date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accrued_to: Option<String>,
    pub message: Option<u64>,
}

/// A notification in the outbox (`outbox` column family). A message with `document`
/// set delivers an issued document (`billing::delivery`); dunning delivery skips those.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: u64,
    pub account: String,
    pub invoice: String,
    /// `reminder`, `formal_notice`, `final_notice`, `collection_costs`, `return`.
    pub kind: String,
    pub language: String,
    pub to: String,
    pub subject: String,
    pub body: String,
    pub created: String,
    /// `pending`, `sent`, `no_address`, `cancelled` (its invoice was credited in full
    /// before it went out).
    pub status: String,
    /// When every configured channel had it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// When the SMTP server accepted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_sent_at: Option<String>,
    /// When the webhook acknowledged it (2xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_sent_at: Option<String>,
    /// Document deliveries: the number of the document delivered (status `queued`,
    /// `sending`, `sent`, `failed`, `interrupted` or `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// Document deliveries: `email`, `peppol` or `none`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Document deliveries: attempts so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// Document deliveries: when a failed delivery is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<String>,
    /// Document deliveries: the server's reply (or local error) of the last failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Document deliveries: when the last attempt was marked `sending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_at: Option<String>,
    /// Document deliveries: the message this one resends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resend_of: Option<u64>,
    /// Document deliveries: when it was queued (RFC 3339, UTC; the age metric).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The language of an account's texts: its `language` column, else nl for Dutch (or unknown)
/// countries and en for the rest.
pub fn lang(a: &Account) -> &'static str {
    match a.language.as_str() {
        "en" => "en",
        "nl" => "nl",
        _ if a.country.is_empty() || a.country == "NL" => "nl",
        _ => "en",
    }
}

fn nl_date(d: &str) -> String {
    NaiveDate::parse_from_str(d, "%Y-%m-%d")
        .map(|d| d.format("%d-%m-%Y").to_string())
        .unwrap_or_else(|_| d.to_owned())
}

/// Texts of a notification in the customer's language. Never a full phone or account
/// number: the IBAN is masked; only the invoice number and amounts are named.
#[allow(clippy::too_many_arguments)]
fn texts(
    kind: &str,
    language: &str,
    name: &str,
    invoice: &str,
    open: &str,
    due: &str,
    reference: &str,
    seller_iban: &str,
    costs: Option<&str>,
    deadline: Option<&str>,
) -> (String, String) {
    let hello_nl = if name.is_empty() {
        "Beste klant".to_owned()
    } else {
        format!("Beste {name}")
    };
    let hello_en = if name.is_empty() {
        "Dear customer".to_owned()
    } else {
        format!("Dear {name}")
    };
    let iban = crate::rate::iban::mask_iban(seller_iban);
    let pay_nl = format!(
        "Maak het bedrag over naar {iban} onder vermelding van betalingskenmerk {reference}."
    );
    let pay_en =
        format!("Please transfer the amount to {iban} quoting payment reference {reference}.");
    match (kind, language) {
        ("reminder", "nl") => (
            format!("Herinnering: factuur {invoice}"),
            format!("{hello_nl},\n\nWe hebben de betaling van factuur {invoice} (vervaldatum {}) nog niet ontvangen. Openstaand: EUR {open}.\n{pay_nl}\nHeeft u al betaald? Dan kunt u deze herinnering als niet verzonden beschouwen.\n", nl_date(due)),
        ),
        ("reminder", _) => (
            format!("Reminder: invoice {invoice}"),
            format!("{hello_en},\n\nWe have not yet received payment of invoice {invoice} (due {due}). Open: EUR {open}.\n{pay_en}\nIf you have already paid, please disregard this reminder.\n"),
        ),
        ("formal_notice", "nl") => match costs {
            Some(c) => (
                format!("Aanmaning (veertiendagenbrief): factuur {invoice}"),
                format!("{hello_nl},\n\nFactuur {invoice} (vervaldatum {}) is nog niet betaald. Openstaand: EUR {open}.\nU krijgt de gelegenheid het bedrag binnen 14 dagen na de dag van ontvangst van deze brief te betalen, uiterlijk op {}.\nBetaalt u niet binnen deze termijn, dan brengen wij incassokosten van EUR {c} in rekening (wettelijke staffel, art. 6:96 BW).\n{pay_nl}\n", nl_date(due), nl_date(deadline.unwrap_or(""))),
            ),
            None => (
                format!("Aanmaning: factuur {invoice}"),
                format!("{hello_nl},\n\nFactuur {invoice} (vervaldatum {}) is nog niet betaald. Openstaand: EUR {open}.\nWij brengen de wettelijke vergoeding van EUR 40,00 in rekening en vanaf de vervaldatum de wettelijke handelsrente. Beide verschijnen op uw volgende factuur.\n{pay_nl}\n", nl_date(due)),
            ),
        },
        ("formal_notice", _) => match costs {
            Some(c) => (
                format!("Formal notice (14 days): invoice {invoice}"),
                format!("{hello_en},\n\nInvoice {invoice} (due {due}) is still unpaid. Open: EUR {open}.\nYou have 14 days from the day after you receive this letter to pay, that is until {} at the latest.\nIf you do not pay within this term, we will charge collection costs of EUR {c} (statutory scale, Dutch Civil Code 6:96).\n{pay_en}\n", deadline.unwrap_or("")),
            ),
            None => (
                format!("Formal notice: invoice {invoice}"),
                format!("{hello_en},\n\nInvoice {invoice} (due {due}) is still unpaid. Open: EUR {open}.\nWe charge the statutory compensation of EUR 40.00 and statutory commercial interest from the due date. Both will appear on your next invoice.\n{pay_en}\n"),
            ),
        },
        ("final_notice", "nl") => (
            format!("Laatste aanmaning: factuur {invoice}"),
            format!("{hello_nl},\n\nOndanks eerdere herinneringen is factuur {invoice} nog niet betaald. Openstaand: EUR {open}.\nBetaal binnen 7 dagen om verdere maatregelen te voorkomen.\n{pay_nl}\n"),
        ),
        ("final_notice", _) => (
            format!("Final notice: invoice {invoice}"),
            format!("{hello_en},\n\nDespite earlier reminders, invoice {invoice} is still unpaid. Open: EUR {open}.\nPlease pay within 7 days to avoid further action.\n{pay_en}\n"),
        ),
        ("collection_costs", "nl") => (
            format!("Incassokosten: factuur {invoice}"),
            format!("{hello_nl},\n\nDe betalingstermijn uit onze aanmaning is verstreken. Wij brengen incassokosten van EUR {} in rekening; deze verschijnen op uw volgende factuur. Openstaand op factuur {invoice}: EUR {open}.\n{pay_nl}\n", costs.unwrap_or("")),
        ),
        ("collection_costs", _) => (
            format!("Collection costs: invoice {invoice}"),
            format!("{hello_en},\n\nThe term of our formal notice has passed. We charge collection costs of EUR {}; they will appear on your next invoice. Open on invoice {invoice}: EUR {open}.\n{pay_en}\n", costs.unwrap_or("")),
        ),
        ("card_declined", "nl") => (
            format!("Betaling met kaart geweigerd: factuur {invoice}"),
            format!("{hello_nl},\n\nDe automatische betaling van EUR {open} voor factuur {invoice} met uw opgeslagen kaart is geweigerd. We proberen het niet opnieuw; het bedrag staat open.\n{pay_nl}\n"),
        ),
        ("card_declined", _) => (
            format!("Card payment declined: invoice {invoice}"),
            format!("{hello_en},\n\nThe automatic payment of EUR {open} for invoice {invoice} with your saved card was declined. We will not try again; the amount is open.\n{pay_en}\n"),
        ),
        ("return", "nl") => (
            format!("Incasso gestorneerd: factuur {invoice}"),
            format!("{hello_nl},\n\nDe automatische incasso van EUR {open} voor factuur {invoice} is door uw bank teruggeboekt. Het bedrag staat weer open.\n{pay_nl}\n"),
        ),
        (_, _) => (
            format!("Direct debit returned: invoice {invoice}"),
            format!("{hello_en},\n\nThe direct debit of EUR {open} for invoice {invoice} was returned by your bank. The amount is open again.\n{pay_en}\n"),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn queue(
    cfg: &Config,
    tx: &mut Tx,
    a: &Account,
    kind: &str,
    invoice: &str,
    open: &str,
    due: &str,
    date: &str,
    costs: Option<&str>,
    deadline: Option<&str>,
) -> u64 {
    let language = lang(a);
    let reference = crate::payments::sepa::payment_reference(invoice).unwrap_or_default();
    let (subject, body) = texts(
        kind,
        language,
        &a.name,
        invoice,
        open,
        due,
        &reference,
        &cfg.seller.iban,
        costs,
        deadline,
    );
    let id = tx.next_id();
    let m = Message {
        id,
        account: a.account_id.clone(),
        invoice: invoice.to_owned(),
        kind: kind.to_owned(),
        language: language.to_owned(),
        to: a.email.clone(),
        subject,
        body: format!("{body}\n{}\n", cfg.seller.name),
        created: date.to_owned(),
        status: if a.email.is_empty() {
            "no_address".into()
        } else {
            "pending".into()
        },
        ..Message::default()
    };
    tx.put(
        PayCf::Outbox,
        id.to_be_bytes().to_vec(),
        serde_json::to_vec(&m).expect("json"),
    );
    id
}

/// Queues the notice for a returned direct debit (called inside the import batch).
pub fn queue_return_notice(
    cfg: &Config,
    tx: &mut Tx,
    a: &Account,
    invoice: &str,
    cents: i64,
    date: &str,
) {
    queue(
        cfg,
        tx,
        a,
        "return",
        invoice,
        &format_cents(cents),
        date,
        date,
        None,
        None,
    );
}

/// Queues the notice of a declined card charge (like a returned debit's).
pub fn queue_decline_notice(
    cfg: &Config,
    tx: &mut Tx,
    a: &Account,
    invoice: &str,
    cents: i64,
    date: &str,
) {
    queue(
        cfg,
        tx,
        a,
        "card_declined",
        invoice,
        &format_cents(cents),
        date,
        date,
        None,
        None,
    );
}

/// What a dunning run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RunReport {
    pub date: String,
    pub steps: Vec<String>,
    pub fees: Vec<String>,
    pub messages_sent: usize,
    pub messages_pending: usize,
}

fn key(invoice: &str, step: &str) -> Vec<u8> {
    let mut k = invoice.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(step.as_bytes());
    k
}

/// Runs the dunning schedule as of `date` (one batch), then delivers the outbox.
pub fn run(
    cfg: &Config,
    ledger: &Ledger,
    accounts: &Accounts,
    currency: &str,
    date: NaiveDate,
) -> Result<RunReport, PayError> {
    let Some(dn) = &cfg.dunning else {
        return Err(PayError::Refused(format!(
            "config {}: no [dunning] table; dunning is off",
            cfg.source.display()
        )));
    };
    let ds = date.to_string();
    let mut report = ledger.transact(|ledger, tx| {
        let mut r = RunReport { date: ds.clone(), ..RunReport::default() };
        for a in &accounts.list {
            let v = crate::payments::view(ledger, &a.account_id, date, currency, &[])?;
            for it in &v.items {
                if it.open_cents <= 0 || it.collection.as_deref() == Some("pending") {
                    continue;
                }
                let Ok(due) = NaiveDate::parse_from_str(&it.due_date, "%Y-%m-%d") else { continue };
                if due >= date {
                    continue;
                }
                let get = |step: &str| -> Result<Option<StepRecord>, LedgerError> {
                    let k = key(&it.invoice, step);
                    match ledger.pay_get(PayCf::Dunning, &k)? {
                        None => Ok(None),
                        Some(v) => ledger.pay_json(PayCf::Dunning, &k, &v).map(Some),
                    }
                };
                let base = StepRecord {
                    invoice: it.invoice.clone(),
                    account: a.account_id.clone(),
                    step: String::new(),
                    date: ds.clone(),
                    open: it.open,
                    costs: None,
                    deadline: None,
                    accrued_to: None,
                    message: None,
                };
                let business = a.customer_type == CustomerType::Business;
                // Businesses: interest from the due date, accrued up to today.
                if business {
                    let rec = get("interest")?;
                    let from = rec
                        .as_ref()
                        .and_then(|r| r.accrued_to.clone())
                        .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
                        .unwrap_or(due);
                    let days = (date - from).num_days();
                    if days > 0 {
                        let fid = format!("interest/{}", it.invoice);
                        let mut fee = match ledger.pay_get(PayCf::Fees, fid.as_bytes())? {
                            Some(v) => ledger.pay_json::<PendingFee>(PayCf::Fees, fid.as_bytes(), &v)?,
                            None => PendingFee {
                                id: fid.clone(),
                                account: a.account_id.clone(),
                                invoice: it.invoice.clone(),
                                kind: "interest".into(),
                                amount: Cents::ZERO,
                                description: String::new(),
                                accrued: Some("0".into()),
                                from: Some(from.to_string()),
                                to: None,
                            },
                        };
                        let before: Decimal = match fee.accrued.as_deref() {
                            None => Decimal::ZERO,
                            Some(s) => s.parse().map_err(|e| LedgerError::Corrupt {
                                path: ledger.path().to_owned(),
                                key: format!("fees/{fid}"),
                                message: format!("accrued interest `{s}`: {e}"),
                            })?,
                        };
                        let acc = before + accrue(&v.entries, &it.invoice, dn.commercial_interest_rate, from, date);
                        fee.accrued = Some(acc.normalize().to_string());
                        fee.to = Some(ds.clone());
                        fee.amount = Cents(round_cents(acc));
                        let rate = dn.commercial_interest_rate.normalize();
                        let f = fee.from.clone().unwrap_or_default();
                        fee.description = if lang(a) == "nl" {
                            format!("Wettelijke handelsrente {rate}% over factuur {} van {} t/m {}", it.invoice, nl_date(&f), nl_date(&ds))
                        } else {
                            format!("Statutory commercial interest {rate}% on invoice {} from {f} to {ds}", it.invoice)
                        };
                        tx.put(PayCf::Fees, fid, serde_json::to_vec(&fee).expect("json"));
                        tx.put(
                            PayCf::Dunning,
                            key(&it.invoice, "interest"),
                            serde_json::to_vec(&StepRecord { step: "interest".into(), accrued_to: Some(ds.clone()), ..base.clone() }).expect("json"),
                        );
                        r.fees.push(format!("{} {} interest {} (accrued {})", a.account_id, it.invoice, fee.amount, fee.accrued.as_deref().unwrap_or("")));
                    }
                }
                // Consumers: collection costs once the formal letter's term has passed.
                if !business {
                    if let Some(letter) = get(StepKind::FormalNotice.name())? {
                        let deadline = letter.deadline.clone().unwrap_or_default();
                        if ds.as_str() > deadline.as_str() && get("collection_costs")?.is_none() {
                            // A letter that stated no costs allows none.
                            let stated = letter.costs.map_or(0, |c| c.0);
                            let costs = stated.min(collection_costs(it.open_cents));
                            let fid = format!("costs/{}", it.invoice);
                            let fee = PendingFee {
                                id: fid.clone(),
                                account: a.account_id.clone(),
                                invoice: it.invoice.clone(),
                                kind: "collection_costs".into(),
                                amount: Cents(costs),
                                description: if lang(a) == "nl" {
                                    format!("Incassokosten factuur {}", it.invoice)
                                } else {
                                    format!("Collection costs invoice {}", it.invoice)
                                },
                                accrued: None,
                                from: None,
                                to: None,
                            };
                            tx.put(PayCf::Fees, fid, serde_json::to_vec(&fee).expect("json"));
                            let c = Cents(costs);
                            let m = queue(cfg, tx, a, "collection_costs", &it.invoice, &it.open.to_string(), &it.due_date, &ds, Some(&c.to_string()), None);
                            tx.put(
                                PayCf::Dunning,
                                key(&it.invoice, "collection_costs"),
                                serde_json::to_vec(&StepRecord { step: "collection_costs".into(), costs: Some(c), message: Some(m), ..base.clone() }).expect("json"),
                            );
                            r.fees.push(format!("{} {} collection_costs {c}", a.account_id, it.invoice));
                            r.steps.push(format!("{} {} collection_costs", a.account_id, it.invoice));
                            continue;
                        }
                    }
                }
                // The next scheduled step that is due and not taken; when a run is late,
                // the spacing of the schedule is kept after the previous step.
                let mut last: Option<(NaiveDate, u32)> = None;
                for st in &dn.steps {
                    if due + chrono::Duration::days(st.days_after_due as i64) > date {
                        break;
                    }
                    if let Some(prev) = get(st.kind.name())? {
                        let taken = NaiveDate::parse_from_str(&prev.date, "%Y-%m-%d").unwrap_or(date);
                        last = Some((taken, st.days_after_due));
                        continue;
                    }
                    if let Some((taken, days)) = last {
                        if taken + chrono::Duration::days((st.days_after_due - days) as i64) > date {
                            break;
                        }
                    }
                    let mut rec = StepRecord { step: st.kind.name().into(), ..base.clone() };
                    if st.kind == StepKind::FormalNotice {
                        if business {
                            let fid = format!("compensation/{}", it.invoice);
                            let fee = PendingFee {
                                id: fid.clone(),
                                account: a.account_id.clone(),
                                invoice: it.invoice.clone(),
                                kind: "compensation".into(),
                                amount: Cents(dn.business_compensation_cents),
                                description: if lang(a) == "nl" {
                                    format!("Vergoeding incassokosten factuur {}", it.invoice)
                                } else {
                                    format!("Compensation for recovery costs invoice {}", it.invoice)
                                },
                                accrued: None,
                                from: None,
                                to: None,
                            };
                            tx.put(PayCf::Fees, fid, serde_json::to_vec(&fee).expect("json"));
                            r.fees.push(format!("{} {} compensation {}", a.account_id, it.invoice, fee.amount));
                        } else {
                            rec.costs = Some(Cents(collection_costs(it.open_cents)));
                            let deadline = date + chrono::Duration::days(dn.receipt_days as i64 + 14);
                            rec.deadline = Some(deadline.to_string());
                        }
                    }
                    let m = queue(cfg, tx, a, st.kind.name(), &it.invoice, &it.open.to_string(), &it.due_date, &ds, rec.costs.map(String::from).as_deref(), rec.deadline.as_deref());
                    rec.message = Some(m);
                    tx.put(PayCf::Dunning, key(&it.invoice, st.kind.name()), serde_json::to_vec(&rec).expect("json"));
                    r.steps.push(format!("{} {} {}", a.account_id, it.invoice, st.kind.name()));
                    break;
                }
            }
        }
        Ok::<_, PayError>(r)
    })?;
    let (sent, pending) = deliver(cfg, ledger)?;
    report.messages_sent = sent;
    report.messages_pending = pending;
    Ok(report)
}

/// The outbox, in id order.
pub fn outbox(ledger: &Ledger) -> Result<Vec<Message>, LedgerError> {
    ledger
        .pay_scan(PayCf::Outbox, b"")?
        .into_iter()
        .map(|(k, v)| ledger.pay_json(PayCf::Outbox, &k, &v))
        .collect()
}

/// Delivers the outbox: each message goes to every configured channel it has not
/// reached yet — SMTP (messages with an address), then the webhook (every message,
/// also those without an address, e.g. for a letter service) — and each success is
/// recorded at once in its own synced write (`email_sent_at`, `webhook_sent_at`), so a
/// channel that failed is retried at the next run without repeating the others. A
/// message is `sent` once every channel had it. Returns (sent now, still pending).
pub fn deliver(cfg: &Config, ledger: &Ledger) -> Result<(usize, usize), PayError> {
    let (mut sent, mut pending) = (0, 0);
    let ob = match &cfg.outbox {
        Some(ob) if ob.smtp.is_some() || ob.webhook.is_some() => ob,
        _ => {
            let waiting = outbox(ledger)?
                .iter()
                .filter(|m| m.status == "pending")
                .count();
            return Ok((0, waiting));
        }
    };
    let now = || chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let save = |m: &Message| {
        ledger.transact(|_, tx| {
            tx.put(
                PayCf::Outbox,
                m.id.to_be_bytes().to_vec(),
                serde_json::to_vec(m).expect("json"),
            );
            Ok::<_, LedgerError>(())
        })
    };
    for mut m in outbox(ledger)? {
        let addressed = m.status == "pending";
        let to_email = addressed && ob.smtp.is_some() && m.email_sent_at.is_none();
        let to_hook = (addressed || m.status == "no_address")
            && ob.webhook.is_some()
            && m.webhook_sent_at.is_none();
        if !to_email && !to_hook && !addressed {
            continue;
        }
        let mut failed = false;
        if to_email {
            match send_smtp(ob, &m) {
                Ok(()) => {
                    m.email_sent_at = Some(now());
                    save(&m)?;
                }
                Err(e) => {
                    tracing::warn!(message = m.id, account = %m.account, error = %e, "cannot send notification; it stays in the outbox");
                    failed = true;
                }
            }
        }
        if let (true, Some(url)) = (to_hook, &ob.webhook) {
            match post_webhook(url, &m) {
                Ok(()) => {
                    m.webhook_sent_at = Some(now());
                    save(&m)?;
                }
                Err(e) => {
                    tracing::warn!(message = m.id, error = %e, "webhook failed; the message stays in the outbox");
                    failed = true;
                }
            }
        }
        if addressed {
            if failed {
                pending += 1;
            } else {
                m.status = "sent".into();
                m.sent_at = Some(now());
                save(&m)?;
                sent += 1;
            }
        }
    }
    Ok((sent, pending))
}

fn send_smtp(ob: &crate::config::Outbox, m: &Message) -> Result<(), String> {
    let domain = ob.from.rsplit_once('@').map_or("tollgate", |(_, d)| d);
    send_text_mail(
        ob,
        &m.to,
        &m.subject,
        &m.body,
        Some(format!("<tollgate-{}@{domain}>", m.id)),
    )
}

/// Sends one plain-text email from `[outbox] from` through the `[outbox]` SMTP relay,
/// secured as configured ([`super::mail::connect`]): the path of dunning notices and
/// self-service sign-in links.
pub fn send_text_mail(
    ob: &crate::config::Outbox,
    to: &str,
    subject: &str,
    body: &str,
    message_id: Option<String>,
) -> Result<(), String> {
    use lettre::message::header::ContentType;
    use lettre::Message as Mail;
    let mail = Mail::builder()
        .from(ob.from.parse().map_err(|e| format!("from: {e}"))?)
        .to(to.parse().map_err(|e| format!("to: {e}"))?)
        .subject(subject)
        .message_id(message_id)
        .header(ContentType::TEXT_PLAIN)
        .body(body.to_owned())
        .map_err(|e| e.to_string())?;
    let mut conn = super::mail::connect(ob)?;
    let sent = conn.send(mail.envelope(), &mail.formatted());
    match sent {
        Ok(_) => {
            let _ = conn.quit();
            Ok(())
        }
        Err(e) => {
            conn.abort();
            Err(e.to_string())
        }
    }
}

/// What the webhook receives for a notification (JSON). It names the account and the
/// invoice, never a phone number, and no email address; IBANs in `body` are masked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// The outbox message id: the same on a retry, so a receiver can drop repeats.
    pub id: u64,
    /// `reminder`, `formal_notice`, `final_notice`, `collection_costs` or `return`.
    pub kind: String,
    pub account: String,
    pub invoice: String,
    pub language: String,
    /// The date of the dunning run (or the return) that created it.
    pub created: String,
    /// Whether the account has an email address (else: to be sent by post).
    pub email: bool,
    pub subject: String,
    pub body: String,
}

/// POSTs one notification as JSON (ureq, 10 s timeout); anything but 2xx is a failure.
fn post_webhook(url: &str, m: &Message) -> Result<(), String> {
    let event = WebhookEvent {
        id: m.id,
        kind: m.kind.clone(),
        account: m.account.clone(),
        invoice: m.invoice.clone(),
        language: m.language.clone(),
        created: m.created.clone(),
        email: m.status != "no_address",
        subject: m.subject.clone(),
        body: m.body.clone(),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let resp = agent
        .post(url)
        .header("content-type", "application/json")
        .header("x-tollgate-message-id", &m.id.to_string())
        .send(serde_json::to_string(&event).expect("json"))
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("webhook answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_cost_scale_at_every_boundary() {
        let c = |eur: &str| collection_costs(crate::rate::money::parse_cents(eur).unwrap());
        // Minimum 40.00 up to 266.67 (15 % of 266.67 = 40.0005 → 40.00).
        assert_eq!(c("0.01"), 4000);
        assert_eq!(c("100.00"), 4000);
        assert_eq!(c("266.66"), 4000);
        assert_eq!(c("266.67"), 4000);
        assert_eq!(c("266.70"), 4001); // 40.005 → 40.01 (half-up)
        assert_eq!(c("2500.00"), 37_500);
        assert_eq!(c("2500.01"), 37_500); // + 10 % of 0.01 = 0.001
        assert_eq!(c("2500.05"), 37_501); // + 0.005 → half-up
        assert_eq!(c("5000.00"), 62_500);
        assert_eq!(c("5000.10"), 62_501); // + 5 % of 0.10 = 0.005
        assert_eq!(c("10000.00"), 87_500);
        assert_eq!(c("10001.00"), 87_501);
        assert_eq!(c("200000.00"), 277_500);
        assert_eq!(c("200002.00"), 277_501);
        assert_eq!(c("1000000.00"), 677_500); // 2775 + 0.5 % of 800 000 = 6775
        assert_eq!(c("1000000.01"), 677_500); // capped
        assert_eq!(c("5000000.00"), 677_500);
        assert_eq!(collection_costs(0), 0);
    }

    #[test]
    fn interest_follows_the_open_amount_day_by_day() {
        use crate::payments::{Entry, Kind};
        let e = |date: &str, kind, amount: &str, due: Option<&str>| Entry {
            id: 0,
            account: "B".into(),
            date: date.parse().unwrap(),
            kind,
            amount: amount.parse().unwrap(),
            invoice: Some("I1".into()),
            due_date: due.map(|d| d.parse().unwrap()),
            source: "t".into(),
            text: String::new(),
        };
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let rate: Decimal = "10.15".parse().unwrap();
        let es = vec![
            e("2026-10-01", Kind::Invoice, "12.10", Some("2026-10-15")),
            e("2026-11-01", Kind::CreditNote, "-6.05", None),
            e("2026-11-05", Kind::Payment, "-6.05", None),
        ];
        // 25 Oct – 1 Nov on 12.10 (7 days), 1 – 5 Nov on 6.05 (4 days), then nothing open.
        assert_eq!(
            accrue(&es, "I1", rate, d("2026-10-25"), d("2026-11-11")),
            interest(1210, rate, 7) + interest(605, rate, 4)
        );
        // Without entries in the span: the plain formula.
        assert_eq!(
            accrue(&es[..1], "I1", rate, d("2026-10-15"), d("2026-11-11")),
            interest(1210, rate, 27)
        );
    }

    #[test]
    fn interest_is_exact() {
        // 100.00 at 10.15 % for 30 days = 10000 × 0.1015 × 30 / 365 cents = 83.4246… cents.
        let i = interest(10_000, "10.15".parse().unwrap(), 30);
        assert_eq!(round_cents(i), 83);
        assert_eq!(round_cents(interest(36_500, Decimal::from(10), 1)), 10);
    }

    #[test]
    fn texts_are_in_the_customer_language_and_mask_the_iban() {
        let (s, b) = texts(
            "formal_notice",
            "nl",
            "Alice",
            "2026-000001",
            "12.10",
            "2026-10-15",
            "3000002026000001",
            "NL91ABNA0417164300",
            Some("40.00"),
            Some("2026-11-05"),
        );
        assert!(s.contains("veertiendagenbrief"), "{s}");
        assert!(b.contains("EUR 40.00") && b.contains("05-11-2026"), "{b}");
        assert!(
            b.contains("NL************4300") && !b.contains("0417164300"),
            "{b}"
        );
        let (s, _) = texts(
            "reminder",
            "en",
            "",
            "2026-000001",
            "1.00",
            "2026-10-15",
            "r",
            "NL91ABNA0417164300",
            None,
            None,
        );
        assert_eq!(s, "Reminder: invoice 2026-000001");
    }
}
