//! Credit notes (full, chosen lines, or a net amount) and reissues: the correction of an
//! issued invoice, posted against it in the batch that stores the note.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::close::*;
use super::draft::*;
use super::files::*;
use super::model::*;
use super::numbering::*;
use super::refused;
use crate::billing::vat::{Category, Treatment};
use crate::config::Config;
use crate::rate::accounts::Accounts;
use crate::rate::money::{format_cents, vat_cents, Cents};
use crate::store::{Ledger, LedgerError, Txn};

/// What was credited on an invoice so far (cents, positive).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credited {
    /// Credit note numbers.
    pub credit_notes: Vec<String>,
    /// Per 1-based line index: net credited.
    pub lines: BTreeMap<usize, i64>,
    /// Per `category/rate`: net and VAT credited.
    pub groups: BTreeMap<String, (i64, i64)>,
}

/// What to credit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditWhat {
    /// Everything still creditable.
    Full,
    /// These 1-based lines, each as far as still creditable.
    Lines(Vec<usize>),
    /// A net amount in cents (invoices with one VAT group only).
    Amount(i64),
}

pub(crate) fn group_key(c: Category, r: Decimal) -> String {
    format!("{}/{}", c.code(), r.normalize())
}

/// The documents a credit issued: the credit note and, with `reissue`, the new invoice.
#[derive(Debug)]
pub struct CreditOutcome {
    pub credit_note: Invoice,
    pub reissued: Option<Invoice>,
    pub files: Vec<PathBuf>,
}

/// The stored itemised annex of a document, if it has one.
pub(crate) fn stored_annex(
    ledger: &Ledger,
    number: &str,
) -> Result<Option<crate::billing::annex::Annex>, LedgerError> {
    match ledger.annex(number)? {
        Some(a) => serde_json::from_slice(&a)
            .map(Some)
            .map_err(|e| LedgerError::Corrupt {
                path: ledger.path().to_owned(),
                key: format!("annex/{number}"),
                message: e.to_string(),
            }),
        None => Ok(None),
    }
}

pub(crate) fn load_invoice(ledger: &Ledger, number: &str) -> Result<Invoice, LedgerError> {
    stored_invoice(ledger, number)?.ok_or_else(|| refused(format!("no invoice {number}")))
}

/// Stores a document issued outside a close and posts it to the payments ledger in the
/// same batch: an invoice as the close does ([`crate::payments::post_invoice`]), a credit
/// note against the invoice it credits ([`crate::payments::credit_note::post_credit_note`]).
/// `extra` collects the entries posted so far in this transaction.
pub(crate) fn put(
    txn: &mut Txn,
    inv: &Invoice,
    dir: &str,
    extra: &mut Vec<crate::payments::Entry>,
) -> Result<(), LedgerError> {
    let json = serde_json::to_vec_pretty(inv).expect("invoice serializes");
    txn.put_document(&inv.number, &json, dir)?;
    let ledger = txn.ledger();
    let tx = txn.pay()?;
    if inv.is_credit_note() {
        crate::payments::credit_note::post_credit_note(
            ledger,
            tx,
            extra,
            &super::posting::credit_note_posting(inv)?,
        )
    } else {
        extra.extend(crate::payments::post_invoice(
            &super::posting::posting(inv),
            tx,
        ));
        Ok(())
    }
}

/// What the payment block of an invoice asks for: the total less the credit on the
/// account that pays it first (see [`crate::payments::derive()`]). A direct-debit
/// invoice pre-notifies that amount (what its collection will take); a transfer invoice
/// states it as `amount` and its EPC QR code asks for it (no QR code when nothing is left
/// to pay); a card invoice names the card saved for the account now (its last four
/// digits), the one `collect` will charge. `extra` = entries of the running transaction.
pub fn prenotify(
    cfg: &Config,
    ledger: &Ledger,
    extra: &[crate::payments::Entry],
    inv: &mut Invoice,
) -> Result<(), LedgerError> {
    let Some(pay) = inv.payment.as_mut() else {
        return Ok(());
    };
    let add = crate::payments::Entry {
        id: 0,
        account: inv.account_id.clone(),
        date: inv.issue_date,
        kind: crate::payments::Kind::Invoice,
        amount: inv.total,
        invoice: Some(inv.number.clone()),
        due_date: Some(inv.due_date),
        source: String::new(),
        text: String::new(),
    };
    let open = crate::payments::open_after(ledger, &inv.account_id, extra, add, &inv.number)?;
    let open = open.max(0);
    pay.amount = Some(Cents(open));
    if pay.method == "card" {
        if let Some(card) = crate::payments::psp::saved_card(ledger, &inv.account_id)? {
            pay.card_last4 = card.last4;
            pay.card_brand = card.brand;
        }
    }
    if pay.method == "transfer" {
        pay.epc_qr = (open > 0).then(|| {
            crate::billing::documents::qr::epc_qr_payload(
                &cfg.seller.bic,
                &cfg.seller.name,
                &pay.iban,
                open,
                inv.payment_reference.as_deref().unwrap_or(""),
            )
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
/// Issues a credit note on invoice `number` (and, with `reissue`, a corrected invoice
/// for the same lines under the current accounts and VAT rules). Never credits more
/// than is still creditable, per line and per VAT group; the last credit of a group
/// takes exactly its remaining VAT so that rounding never credits a cent too much.
pub fn credit(
    cfg: &Config,
    ledger: &Ledger,
    accounts: &Accounts,
    number: &str,
    what: CreditWhat,
    reason: &str,
    reissue: bool,
    issue: NaiveDate,
) -> Result<CreditOutcome, LedgerError> {
    flush_pending(cfg, ledger)?;
    if reason.trim().is_empty() {
        return Err(refused("a credit note needs a --reason"));
    }
    if reissue && what != CreditWhat::Full {
        return Err(refused(
            "--reissue replaces the whole invoice: credit it in full (no --lines or --amount)",
        ));
    }
    let (credit_note, reissued) = ledger.issue(|txn| {
        credit_in(
            txn,
            cfg,
            accounts,
            number,
            what,
            reason,
            reissue.then_some(Reissue::Copy),
            issue,
        )
    })?;
    metrics::counter!(crate::telemetry::CREDIT_NOTES).increment(1);
    if reissued.is_some() {
        metrics::counter!(crate::telemetry::INVOICES).increment(1);
    }
    let files = flush_pending(cfg, ledger)?;
    Ok(CreditOutcome {
        credit_note,
        reissued,
        files,
    })
}

/// What a reissue bills.
pub(crate) enum Reissue<'a> {
    /// The original's lines again, under the current accounts and VAT rules
    /// (`invoice credit --reissue`).
    Copy,
    /// Lines built anew by the close code (a rerate, [`crate::billing::rerate`]).
    Lines(Replacement<'a>),
}

/// The replacement lines of a reissue, with its late-record count and chart.
pub(crate) struct Replacement<'a> {
    pub(crate) draft: Draft<'a>,
    pub(crate) late_records: u64,
    pub(crate) usage_by_day: Vec<crate::billing::annex::DayUsage>,
}

/// The credit note (and the reissue) of [`credit`], staged in a running transaction:
/// a rerate issues many in one batch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn credit_in<'a>(
    txn: &mut Txn,
    cfg: &'a Config,
    accounts: &'a Accounts,
    number: &str,
    what: CreditWhat,
    reason: &str,
    reissue: Option<Reissue<'a>>,
    issue: NaiveDate,
) -> Result<(Invoice, Option<Invoice>), LedgerError> {
    let orig = load_invoice(txn.ledger(), number)?;
    if orig.is_credit_note() {
        return Err(refused(format!(
            "{number} is a credit note, not an invoice"
        )));
    }
    let mut done: Credited = match txn.ledger().credits(number)? {
        Some(v) => serde_json::from_slice(&v).map_err(|e| LedgerError::Corrupt {
            path: txn.ledger().path().to_owned(),
            key: format!("credits/{number}"),
            message: e.to_string(),
        })?,
        None => Credited::default(),
    };
    // Remaining per group.
    let mut group_left: BTreeMap<String, (i64, i64, Category, Decimal)> = BTreeMap::new();
    for r in &orig.vat_breakdown {
        let c = Category::parse(&r.category).unwrap_or(Category::S);
        let rate: Decimal = r.rate.parse().unwrap_or(Decimal::ZERO);
        let k = group_key(c, rate);
        let (cn, cv) = done.groups.get(&k).copied().unwrap_or((0, 0));
        group_left.insert(k, (r.taxable_amount.0 - cn, r.vat_amount.0 - cv, c, rate));
    }
    let mut lines: Vec<Line> = Vec::new();
    let mut take: BTreeMap<String, i64> = BTreeMap::new();
    // Fee lines credited by this note: (line, cents).
    let mut fees_credited: Vec<(usize, i64)> = Vec::new();
    let credit_line = |i: usize, l: &Line, cents: i64| {
        let (c, r) = l.vat();
        Line::Credit {
            description: format!("Credit of line {i}: {}", l.description()),
            line: Some(i),
            amount: Cents(-cents),
            vat_category: c.code().into(),
            vat_rate: r.normalize().to_string(),
        }
    };
    match &what {
        CreditWhat::Full | CreditWhat::Lines(_) => {
            let chosen: Vec<usize> = match &what {
                CreditWhat::Lines(v) => {
                    for &i in v {
                        if i == 0 || i > orig.lines.len() {
                            return Err(refused(format!(
                                "invoice {number} has lines 1..={}, not {i}",
                                orig.lines.len()
                            )));
                        }
                    }
                    let mut v = v.clone();
                    v.sort_unstable();
                    v.dedup();
                    v
                }
                _ => (1..=orig.lines.len()).collect(),
            };
            // Allowance lines (negative: a discount on the usage of their service) are
            // credited with that usage, never apart: a usage line of a service an
            // allowance discounted, or that allowance line, brings every line of the
            // service still creditable (the usage at full price and its allowances:
            // together what the customer paid for the service).
            if let CreditWhat::Lines(v) = &what {
                let left =
                    |i: usize| orig.lines[i - 1].cents() - done.lines.get(&i).copied().unwrap_or(0);
                let discounted: std::collections::BTreeSet<&str> = orig
                    .lines
                    .iter()
                    .enumerate()
                    .filter(|(j, l)| matches!(l, Line::Allowance { .. }) && left(j + 1) != 0)
                    .map(|(_, l)| line_service(l))
                    .collect();
                for s in discounted {
                    let of_s: Vec<usize> = (1..=orig.lines.len())
                        .filter(|&j| {
                            let l = &orig.lines[j - 1];
                            matches!(l, Line::Usage { .. } | Line::Allowance { .. })
                                && line_service(l) == s
                                && left(j) != 0
                        })
                        .collect();
                    if of_s.iter().any(|j| v.contains(j)) && !of_s.iter().all(|j| v.contains(j)) {
                        return Err(refused(format!(
                            "invoice {number}: an allowance discounted its {s} usage, so lines {} are credited together",
                            of_s.iter().map(|j| j.to_string()).collect::<Vec<_>>().join(",")
                        )));
                    }
                }
            }
            // Negative lines (allowances) first, so the usage they discounted can be
            // credited in full within its VAT group; the note lists them in line order.
            let mut order = chosen.clone();
            order.sort_by_key(|&i| orig.lines[i - 1].cents() >= 0);
            let mut credited: BTreeMap<usize, Line> = BTreeMap::new();
            for i in order {
                let l = &orig.lines[i - 1];
                let left_line = l.cents() - done.lines.get(&i).copied().unwrap_or(0);
                // A late-payment fee line: outside VAT, limited by what is left on
                // the line only; credited as a (negative) fee line, after VAT.
                if let Line::Fee {
                    fee_id,
                    fee,
                    invoice,
                    description,
                    ..
                } = l
                {
                    if left_line <= 0 {
                        if matches!(what, CreditWhat::Lines(_)) {
                            return Err(refused(format!(
                                "line {i} of invoice {number} has nothing left to credit"
                            )));
                        }
                        continue;
                    }
                    *done.lines.entry(i).or_default() += left_line;
                    fees_credited.push((i, left_line));
                    credited.insert(
                        i,
                        Line::Fee {
                            fee_id: fee_id.clone(),
                            fee: fee.clone(),
                            invoice: invoice.clone(),
                            description: format!("Credit of line {i}: {description}"),
                            amount: Cents(-left_line),
                        },
                    );
                    continue;
                }
                let (c, r) = l.vat();
                let k = group_key(c, r);
                let cents = if l.cents() < 0 {
                    // An allowance: what is left of it, whole (it raises the group's
                    // room for the usage it discounted), unless nothing is left of the
                    // group at all.
                    if group_left.get(&k).map_or(0, |g| g.0) <= 0 {
                        0
                    } else {
                        left_line.min(0)
                    }
                } else {
                    let left_group =
                        group_left.get(&k).map_or(0, |g| g.0) - take.get(&k).copied().unwrap_or(0);
                    left_line.min(left_group).max(0)
                };
                if cents == 0 {
                    if matches!(what, CreditWhat::Lines(_)) {
                        return Err(refused(format!(
                            "line {i} of invoice {number} has nothing left to credit"
                        )));
                    }
                    continue;
                }
                *take.entry(k).or_default() += cents;
                *done.lines.entry(i).or_default() += cents;
                credited.insert(i, credit_line(i, l, cents));
            }
            lines.extend(credited.into_values());
            if let Some((k, t)) = take.iter().find(|(_, t)| **t <= 0) {
                return Err(refused(format!(
                    "invoice {number}: the chosen lines credit {} in VAT group {k}: a credit note cannot raise what is owed",
                    format_cents(*t)
                )));
            }
        }
        CreditWhat::Amount(cents) => {
            if *cents <= 0 {
                return Err(refused("--amount must be more than 0"));
            }
            if group_left.len() != 1 {
                return Err(refused(format!(
                    "invoice {number} has {} VAT groups: credit it by --lines",
                    group_left.len()
                )));
            }
            let (k, (left, _, c, r)) = group_left.iter().next().expect("one group");
            if cents > left {
                return Err(refused(format!(
                    "only {} (net) of invoice {number} is still creditable, not {}",
                    format_cents(*left),
                    format_cents(*cents)
                )));
            }
            take.insert(k.clone(), *cents);
            lines.push(Line::Credit {
                description: format!("Credit: {}", reason.trim()),
                line: None,
                amount: Cents(-cents),
                vat_category: c.code().into(),
                vat_rate: r.normalize().to_string(),
            });
        }
    }
    if lines.is_empty() {
        return Err(refused(format!(
            "invoice {number} has nothing left to credit (credit notes so far: {})",
            done.credit_notes.join(", ")
        )));
    }
    // VAT per group: half-up on the credited net, the remainder on the last credit.
    let mut breakdown = Vec::new();
    let (mut net, mut vat) = (0i64, 0i64);
    for (k, cents) in &take {
        let (left_net, left_vat, c, r) = group_left[k];
        let v = if *cents == left_net {
            left_vat
        } else {
            vat_cents(*cents, r).min(left_vat)
        };
        let e = done.groups.entry(k.clone()).or_default();
        e.0 += cents;
        e.1 += v;
        net += cents;
        vat += v;
        let reason = orig
            .vat_breakdown
            .iter()
            .find(|b| b.category == c.code())
            .map(|b| b.exemption_reason.clone())
            .unwrap_or_default();
        breakdown.push(crate::billing::vat::row(
            &Treatment {
                category: c,
                rate: r,
                reason,
            },
            -cents,
            -v,
        ));
    }
    let fee_cents: i64 = fees_credited.iter().map(|f| f.1).sum();
    let (counter, prefix) = credit_series(&cfg.numbering, issue.year());
    let n = txn.next(&counter)?;
    let cn = Invoice {
        number: format_number(&prefix, cfg.numbering.yearly_reset, issue.year(), n),
        account_id: orig.account_id.clone(),
        period: orig.period.clone(),
        currency: orig.currency.clone(),
        issue_date: issue,
        due_date: issue,
        seller: orig.seller.clone(),
        customer: orig.customer.clone(),
        lines,
        net_total: Cents(-net),
        vat_rate: orig.vat_rate.clone(),
        vat_total: Cents(-vat),
        total: Cents(-(net + vat + fee_cents)),
        late_records: 0,
        document_type: "credit_note".into(),
        period_start: orig.period_start.clone(),
        period_end: orig.period_end.clone(),
        vat_breakdown: breakdown,
        vat_note: orig.vat_note.clone(),
        credited_invoice: Some(DocRef {
            number: orig.number.clone(),
            issue_date: orig.issue_date,
        }),
        replaces: None,
        reason: reason.trim().to_owned(),
        final_invoice: false,
        payment_reference: None,
        payment: None,
        usage_by_day: Vec::new(),
        itemised: None,
    };
    // A direct-debit invoice not collected yet: the credit note pre-notifies what its
    // collection will take now.
    let mut extra = Vec::new();
    let mut cn = cn;
    if let (Some(sepa), Some(a)) = (&cfg.sepa, accounts.get(&orig.account_id)) {
        let uncollected = crate::payments::collection(txn.ledger(), &orig.number)?.is_none();
        if a.payment_method == crate::rate::accounts::PaymentMethod::DirectDebit && uncollected {
            let add = crate::payments::Entry {
                id: 0,
                account: orig.account_id.clone(),
                date: cn.issue_date,
                kind: crate::payments::Kind::CreditNote,
                amount: cn.total,
                invoice: Some(orig.number.clone()),
                due_date: None,
                source: String::new(),
                text: String::new(),
            };
            let open = crate::payments::open_after(
                txn.ledger(),
                &orig.account_id,
                &extra,
                add,
                &orig.number,
            )?;
            cn.payment = Some(PaymentInfo {
                method: "direct_debit".into(),
                iban: crate::rate::iban::mask_iban(&a.iban),
                epc_qr: None,
                mandate_id: Some(a.mandate_id.clone()),
                creditor_id: Some(sepa.creditor_id.clone()),
                collection_date: Some(orig.due_date.to_string()),
                amount: Some(Cents(open.max(0))),
                card_last4: None,
                card_brand: None,
            });
        }
    }
    done.credit_notes.push(cn.number.clone());
    put(txn, &cn, &orig.period, &mut extra)?;
    super::delivery::queue(cfg, txn.pay()?, &cn);
    txn.put_credits(
        number,
        &serde_json::to_vec(&done).expect("credits serialize"),
    );
    let reissued = if let Some(how) = reissue {
        let acc = accounts.get(&orig.account_id);
        // A fee line is billed again for what this credit note took off it (it is still
        // owed; the full credit cancelled it on the original).
        let fee_again = |d: &mut Draft, i: usize, l: &Line| {
            if let Some(&(_, cents)) = fees_credited.iter().find(|f| f.0 == i + 1) {
                let mut l = l.clone();
                if let Line::Fee { amount, .. } = &mut l {
                    *amount = Cents(cents);
                }
                d.lines.push(l);
            }
        };
        let (d, late, days) = match how {
            Reissue::Copy => {
                let mut d = Draft::new(cfg, &orig.account_id, acc)?;
                for (i, l) in orig.lines.iter().enumerate() {
                    d.copy(l, &orig.lines);
                    fee_again(&mut d, i, l);
                }
                (d, orig.late_records, orig.usage_by_day.clone())
            }
            Reissue::Lines(r) => {
                let mut d = r.draft;
                for (i, l) in orig.lines.iter().enumerate() {
                    fee_again(&mut d, i, l);
                }
                (d, r.late_records, r.usage_by_day)
            }
        };
        let (counter, prefix) = invoice_series(&cfg.numbering, issue.year());
        let n = txn.next(&counter)?;
        let start = NaiveDate::parse_from_str(&orig.period_start, "%Y-%m-%d");
        let end = NaiveDate::parse_from_str(&orig.period_end, "%Y-%m-%d");
        let bounds = match (start, end) {
            (Ok(s), Ok(e)) => (s, e),
            _ => period_bounds(orig.period.parse().map_err(refused)?),
        };
        let mut inv = d.finish(
            format_number(&prefix, cfg.numbering.yearly_reset, issue.year(), n),
            &orig.period,
            bounds,
            &orig.currency,
            issue,
            late,
        );
        inv.replaces = Some(DocRef {
            number: orig.number.clone(),
            issue_date: orig.issue_date,
        });
        inv.reason = reason.trim().to_owned();
        inv.final_invoice = orig.final_invoice;
        attach_payment(cfg, acc, &mut inv);
        // A copy bills the same records as the original: its chart, and its annex
        // renumbered (a rerate's replacement brings its own chart; the original's annex
        // is kept only where its line amounts are still the same, see `reissue_annex`).
        inv.usage_by_day = days;
        if let Some(a) = acc {
            let orig_annex = stored_annex(txn.ledger(), &orig.number)?;
            if let Some((state, annex)) =
                crate::billing::itemise::reissue_annex(a, &orig, orig_annex.as_ref(), &inv)
            {
                inv.itemised = Some(state);
                if let Some(annex) = annex {
                    txn.put_annex(
                        &inv.number,
                        &serde_json::to_vec_pretty(&annex).expect("annex serializes"),
                    );
                }
            }
        }
        prenotify(cfg, txn.ledger(), &extra, &mut inv)?;
        put(txn, &inv, &orig.period, &mut extra)?;
        super::delivery::queue(cfg, txn.pay()?, &inv);
        Some(inv)
    } else {
        None
    };
    Ok((cn, reissued))
}
