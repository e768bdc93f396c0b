//! An invoice being drafted: its lines (usage per line key, subscriptions, fees), then
//! `finish` with the VAT breakdown and totals. Shared by the close, reissues and final
//! invoices.

use chrono::NaiveDate;

use super::model::*;
use super::refused;
use crate::billing::vat::{Category, Regime, Treatment};
use crate::config::Config;
use crate::rate::accounts::Account;
use crate::rate::money::{micros_to_cents, Cents};
use crate::rate::service::Service;
use crate::store::{LedgerError, LineId, LineTotals};

/// Everything needed to price lines into a document.
pub(crate) struct Draft<'a> {
    pub(crate) cfg: &'a Config,
    pub(crate) account_id: String,
    pub(crate) acc: Option<&'a Account>,
    pub(crate) regime: Regime,
    pub(crate) lines: Vec<Line>,
}

impl<'a> Draft<'a> {
    /// A late-payment fee waiting for this invoice: outside the scope of VAT, added
    /// after VAT.
    pub(crate) fn fee(&mut self, f: crate::payments::PendingFee) {
        self.lines.push(Line::Fee {
            fee_id: f.id,
            fee: f.kind,
            invoice: f.invoice,
            description: f.description,
            amount: f.amount,
        });
    }

    pub(crate) fn new(
        cfg: &'a Config,
        account_id: &str,
        acc: Option<&'a Account>,
    ) -> Result<Draft<'a>, LedgerError> {
        let regime = cfg.billing.vat.regime(account_id, acc).map_err(refused)?;
        Ok(Draft {
            cfg,
            account_id: account_id.to_owned(),
            acc,
            regime,
            lines: Vec::new(),
        })
    }

    pub(crate) fn treatment(&self, service: &str, destination: &str) -> Treatment {
        self.cfg
            .billing
            .vat
            .line(&self.regime, service, destination)
    }

    pub(crate) fn usage(&mut self, (s, dest, band): &LineId, t: &LineTotals) {
        let cents = micros_to_cents(t.charge_micros as i128);
        let service = Service::from_index(*s).unwrap_or(Service::Voice);
        let tr = self.treatment(service.name(), dest);
        self.lines.push(Line::Usage {
            service: service.name().into(),
            destination: dest.clone(),
            band: band.clone(),
            quantity: t.count,
            usage: t.billed,
            unit: service.unit().into(),
            amount: Cents(cents),
            vat_category: tr.category.code().into(),
            vat_rate: tr.rate.normalize().to_string(),
        });
    }

    /// The plan's allowances (rule 4 of docs/billing.md#allowances): one line per
    /// allowance, in plan order, even when unused; its amount is
    /// `-round_half_up_2(Σ values of what it covered)`, per VAT category of the usage it
    /// discounted (one line per category when it discounted several; each part carries
    /// the allowance's `included` and `used`). Called by every draft that bills usage (the
    /// close, final invoices, and whatever recomputes a period's invoices).
    pub(crate) fn allowances(&mut self, drawn: &crate::billing::itemise::AccountDrawn) {
        for (i, a) in drawn.allowances.iter().enumerate() {
            let mut parts: std::collections::BTreeMap<(String, String), i64> = Default::default();
            for (_, (s, dest, _), v) in drawn.value.iter().filter(|x| x.0 == i) {
                let service = Service::from_index(*s).unwrap_or(Service::Voice);
                let tr = self.treatment(service.name(), dest);
                *parts
                    .entry((tr.category.code().into(), tr.rate.normalize().to_string()))
                    .or_default() += v;
            }
            if parts.is_empty() {
                let dest = a
                    .destinations
                    .as_ref()
                    .and_then(|d| d.first())
                    .map_or("", String::as_str);
                let tr = self.treatment(a.service.name(), dest);
                parts.insert(
                    (tr.category.code().into(), tr.rate.normalize().to_string()),
                    0,
                );
            }
            for ((vat_category, vat_rate), micros) in parts {
                self.lines.push(Line::Allowance {
                    name: a.name.clone(),
                    included: a.units * drawn.months,
                    used: drawn.used[i],
                    unit: a.service.unit().into(),
                    amount: Cents(-micros_to_cents(micros as i128)),
                    vat_category,
                    vat_rate,
                });
            }
        }
    }

    pub(crate) fn subscription(&mut self, plan: &str, description: String, cents: i64) {
        let tr = self.treatment("subscription", plan);
        self.lines.push(Line::Subscription {
            plan: plan.to_owned(),
            description,
            amount: Cents(cents),
            vat_category: tr.category.code().into(),
            vat_rate: tr.rate.normalize().to_string(),
        });
    }

    /// Re-prices a copied line (of the document `all`) under this draft's regime.
    pub(crate) fn copy(&mut self, l: &Line, all: &[Line]) {
        match l {
            Line::Usage {
                service,
                destination,
                ..
            } => {
                let tr = self.treatment(service, destination);
                let mut l = l.clone();
                if let Line::Usage {
                    vat_category,
                    vat_rate,
                    ..
                } = &mut l
                {
                    *vat_category = tr.category.code().into();
                    *vat_rate = tr.rate.normalize().to_string();
                }
                self.lines.push(l);
            }
            Line::Subscription {
                plan, description, ..
            } => self.subscription(plan, description.clone(), l.cents()),
            // Credit lines are not copied. Late-payment fee lines are copied by the
            // reissue for what its credit note took off them (`credit`), not here.
            // Allowance lines keep their amounts (the reissue bills the same records) and
            // take the VAT of the usage they discount under this regime: that of a usage
            // line of the same service that had the allowance's VAT on the original.
            Line::Allowance { .. } => {
                let mut l = l.clone();
                let old = l.vat();
                let usage = all.iter().find(|u| {
                    matches!(u, Line::Usage { .. })
                        && line_service(u) == line_service(&l)
                        && u.vat() == old
                });
                // An unused one discounts nothing: it follows the customer when every
                // line does (reverse charge, outside scope), else keeps its VAT.
                let tr = match usage {
                    Some(Line::Usage {
                        service,
                        destination,
                        ..
                    }) => Some(self.treatment(service, destination)),
                    _ if self.regime.category != Category::S => {
                        Some(self.treatment(line_service(&l), ""))
                    }
                    _ => None,
                };
                if let (
                    Some(tr),
                    Line::Allowance {
                        vat_category,
                        vat_rate,
                        ..
                    },
                ) = (tr, &mut l)
                {
                    *vat_category = tr.category.code().into();
                    *vat_rate = tr.rate.normalize().to_string();
                }
                self.lines.push(l);
            }
            Line::Credit { .. } | Line::Fee { .. } => {}
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn finish(
        self,
        number: String,
        period: &str,
        bounds: (NaiveDate, NaiveDate),
        currency: &str,
        issue: NaiveDate,
        late: u64,
    ) -> Invoice {
        let due = issue + chrono::Duration::days(self.cfg.billing.payment_terms_days as i64);
        // Fee lines are outside the scope of VAT: not in the breakdown, added after VAT.
        let fees: i64 = self
            .lines
            .iter()
            .filter(|l| matches!(l, Line::Fee { .. }))
            .map(Line::cents)
            .sum();
        let treated: Vec<(Treatment, i64)> = self
            .lines
            .iter()
            .filter(|l| !matches!(l, Line::Fee { .. }))
            .map(|l| {
                let (category, rate) = l.vat();
                let reason = match category {
                    Category::S => String::new(),
                    _ => {
                        self.cfg
                            .billing
                            .vat
                            .line(&self.regime, line_service(l), line_destination(l))
                            .reason
                    }
                };
                (
                    Treatment {
                        category,
                        rate,
                        reason,
                    },
                    l.cents(),
                )
            })
            .collect();
        let (rows, net, vat) = crate::billing::vat::breakdown(&treated);
        Invoice {
            number,
            account_id: self.account_id,
            period: period.to_owned(),
            currency: currency.to_owned(),
            issue_date: issue,
            due_date: due,
            seller: self.cfg.seller.clone(),
            customer: Customer::of(self.acc),
            lines: self.lines,
            net_total: Cents(net),
            vat_rate: self.regime.rate.normalize().to_string(),
            vat_total: Cents(vat),
            total: Cents(net + vat + fees),
            late_records: late,
            document_type: invoice_type(),
            period_start: bounds.0.to_string(),
            period_end: bounds.1.to_string(),
            vat_breakdown: rows
                .iter()
                .map(|(t, n, v)| crate::billing::vat::row(t, *n, *v))
                .collect(),
            vat_note: self.regime.note.clone(),
            credited_invoice: None,
            replaces: None,
            reason: String::new(),
            final_invoice: false,
            payment_reference: None,
            payment: None,
            usage_by_day: Vec::new(),
            itemised: None,
        }
    }
}

pub(crate) fn line_service(l: &Line) -> &str {
    match l {
        Line::Usage { service, .. } => service,
        Line::Allowance { unit, .. } => match unit.as_str() {
            "messages" => "sms",
            "bytes" => "data",
            _ => "voice",
        },
        _ => "subscription",
    }
}

pub(crate) fn line_destination(l: &Line) -> &str {
    match l {
        Line::Usage { destination, .. } => destination,
        Line::Subscription { plan, .. } => plan,
        Line::Allowance { name, .. } => name,
        Line::Credit { .. } | Line::Fee { .. } => "",
    }
}
