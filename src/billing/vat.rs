//! VAT: which category and rate each invoice line gets, and the breakdown per
//! (category, rate).
//!
//! Per customer (the seller is established in `seller.country`, NL):
//!
//! | customer                                         | category | rate                     |
//! |--------------------------------------------------|----------|--------------------------|
//! | in the seller's country (or no country given)    | S        | `billing.vat_rate`       |
//! | consumer (or business without VAT ID) elsewhere in the EU | S | `billing.vat_rates.<CC>` (OSS) |
//! | business with a VAT ID elsewhere in the EU       | AE       | 0, "Reverse charge"      |
//! | outside the EU                                   | O        | 0, "Not subject to VAT"  |
//!
//! A line may override its category (`[[billing.vat_override]]`: exempt `E` or zero
//! rated `Z`) when the customer's regime is S; under AE and O every line follows the
//! regime (EN 16931 allows no other category beside O).
//!
//! Rounding: VAT is computed once per (category, rate) over the summed line amounts in
//! cents, half-up to cents ([`crate::rate::money::vat_cents`]).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::rate::accounts::{Account, CustomerType};
use crate::rate::money::{vat_cents, Cents};

/// The 27 EU member states (ISO 3166 alpha-2; Greece is `GR`, its VAT prefix `EL`).
pub const EU: [&str; 27] = [
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT",
    "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// Is `country` an EU member state?
pub fn in_eu(country: &str) -> bool {
    EU.contains(&country)
}

/// UNCL 5305 VAT category codes used by tollgate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Category {
    /// Standard rate.
    S,
    /// Zero rated.
    Z,
    /// Exempt.
    E,
    /// Reverse charge (the customer accounts for the VAT).
    AE,
    /// Outside the scope of VAT.
    O,
}

impl Category {
    pub fn code(self) -> &'static str {
        match self {
            Category::S => "S",
            Category::Z => "Z",
            Category::E => "E",
            Category::AE => "AE",
            Category::O => "O",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Some(match s {
            "S" => Category::S,
            "Z" => Category::Z,
            "E" => Category::E,
            "AE" => Category::AE,
            "O" => Category::O,
            _ => return None,
        })
    }
}

/// A line override from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// `voice`, `sms`, `data` or `subscription`.
    pub service: String,
    /// Exact destination of usage lines (or plan id of subscription lines); `None` = all.
    pub destination: Option<String>,
    /// `E` or `Z`.
    pub category: Category,
    /// Exemption reason printed on the invoice.
    pub reason: String,
}

/// VAT rules from the configuration.
#[derive(Debug, Clone)]
pub struct VatRules {
    /// The seller's country: customers there are domestic.
    pub home: String,
    /// Domestic standard rate (`billing.vat_rate`).
    pub home_rate: Decimal,
    /// Standard rates of other EU states for consumers (`billing.vat_rates`).
    pub rates: BTreeMap<String, Decimal>,
    pub overrides: Vec<Override>,
}

/// How a customer is taxed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regime {
    pub category: Category,
    pub rate: Decimal,
    /// Wording the invoice must carry (reverse charge, outside scope), empty otherwise.
    pub note: String,
}

/// The VAT treatment of one line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Treatment {
    pub category: Category,
    pub rate: Decimal,
    /// Exemption reason (E, Z with a reason, AE, O), empty for S.
    pub reason: String,
}

/// One row of the VAT breakdown, as in the invoice JSON (`vat_breakdown`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakdownRow {
    pub category: String,
    pub rate: String,
    pub taxable_amount: Cents,
    pub vat_amount: Cents,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exemption_reason_code: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub exemption_reason: String,
}

/// A customer's VAT situation could not be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("account {account}: {message}")]
pub struct VatError {
    pub account: String,
    pub message: String,
}

pub const REVERSE_CHARGE_NOTE: &str = "btw verlegd / Reverse charge";
pub const OUTSIDE_SCOPE_NOTE: &str = "Not subject to EU VAT (customer outside the EU)";

impl VatRules {
    /// The regime of an account (`None`: an account no longer in the accounts file is
    /// taxed as domestic).
    pub fn regime(&self, account_id: &str, acc: Option<&Account>) -> Result<Regime, VatError> {
        let country = acc.map(|a| a.country.as_str()).unwrap_or("");
        if country.is_empty() || country == self.home {
            return Ok(Regime {
                category: Category::S,
                rate: self.home_rate,
                note: String::new(),
            });
        }
        if !in_eu(country) {
            return Ok(Regime {
                category: Category::O,
                rate: Decimal::ZERO,
                note: OUTSIDE_SCOPE_NOTE.into(),
            });
        }
        let acc = acc.expect("a country implies an account");
        if acc.customer_type == CustomerType::Business && !acc.vat_id.is_empty() {
            return Ok(Regime {
                category: Category::AE,
                rate: Decimal::ZERO,
                note: REVERSE_CHARGE_NOTE.into(),
            });
        }
        match self.rates.get(country) {
            Some(r) => Ok(Regime {
                category: Category::S,
                rate: *r,
                note: String::new(),
            }),
            None => Err(VatError {
                account: account_id.to_owned(),
                message: format!(
                    "customer in {country} is taxed at {country}'s rate, but billing.vat_rates has no `{country}`"
                ),
            }),
        }
    }

    /// The treatment of one line under `regime`: `service` is `voice`, `sms`, `data` or
    /// `subscription`; `destination` the usage line's destination or the plan id.
    pub fn line(&self, regime: &Regime, service: &str, destination: &str) -> Treatment {
        let base = |reason: &str| Treatment {
            category: regime.category,
            rate: regime.rate,
            reason: reason.to_owned(),
        };
        match regime.category {
            Category::AE => base("Reverse charge"),
            Category::O => base("Not subject to VAT"),
            _ => {
                for o in &self.overrides {
                    if o.service == service
                        && o.destination.as_deref().is_none_or(|d| d == destination)
                    {
                        return Treatment {
                            category: o.category,
                            rate: Decimal::ZERO,
                            reason: o.reason.clone(),
                        };
                    }
                }
                base("")
            }
        }
    }
}

/// VATEX code for an exemption category.
pub fn vatex(c: Category) -> &'static str {
    match c {
        Category::AE => "VATEX-EU-AE",
        Category::O => "VATEX-EU-O",
        _ => "",
    }
}

/// Sums line amounts (cents) per treatment and computes each group's VAT, half-up to
/// cents. Returns the rows (in category, rate order) and (net, vat) totals in cents.
pub fn breakdown(lines: &[(Treatment, i64)]) -> (Vec<(Treatment, i64, i64)>, i64, i64) {
    let mut groups: BTreeMap<(Category, Decimal), (i64, String)> = BTreeMap::new();
    for (t, cents) in lines {
        let g = groups
            .entry((t.category, t.rate.normalize()))
            .or_insert_with(|| (0, t.reason.clone()));
        g.0 += cents;
    }
    let (mut net, mut vat) = (0, 0);
    let rows = groups
        .into_iter()
        .map(|((category, rate), (taxable, reason))| {
            let v = vat_cents(taxable, rate);
            net += taxable;
            vat += v;
            (
                Treatment {
                    category,
                    rate,
                    reason,
                },
                taxable,
                v,
            )
        })
        .collect();
    (rows, net, vat)
}

/// A breakdown row for the invoice JSON.
pub fn row(t: &Treatment, taxable: i64, vat: i64) -> BreakdownRow {
    BreakdownRow {
        category: t.category.code().into(),
        rate: t.rate.normalize().to_string(),
        taxable_amount: Cents(taxable),
        vat_amount: Cents(vat),
        exemption_reason_code: vatex(t.category).into(),
        exemption_reason: t.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> VatRules {
        VatRules {
            home: "NL".into(),
            home_rate: Decimal::from(21),
            rates: [("BE", 21), ("DE", 19)]
                .into_iter()
                .map(|(c, r)| (c.to_string(), Decimal::from(r)))
                .collect(),
            overrides: vec![Override {
                service: "voice".into(),
                destination: Some("Helpdesk".into()),
                category: Category::E,
                reason: "Exempt service".into(),
            }],
        }
    }

    fn acc(country: &str, business: bool, vat_id: &str) -> Account {
        Account {
            account_id: "A".into(),
            country: country.into(),
            customer_type: if business {
                CustomerType::Business
            } else {
                CustomerType::Consumer
            },
            vat_id: vat_id.into(),
            ..Account::default()
        }
    }

    #[test]
    fn regimes() {
        let r = rules();
        let reg = |a: &Account| r.regime("A", Some(a)).map(|g| (g.category, g.rate));
        let d = Decimal::from;
        assert_eq!(reg(&acc("NL", false, "")), Ok((Category::S, d(21))));
        assert_eq!(reg(&acc("", false, "")), Ok((Category::S, d(21))));
        assert_eq!(
            reg(&acc("NL", true, "NL123456789B01")),
            Ok((Category::S, d(21)))
        );
        assert_eq!(reg(&acc("DE", false, "")), Ok((Category::S, d(19))));
        // A business without a VAT ID cannot be reverse charged: taxed like a consumer.
        assert_eq!(reg(&acc("BE", true, "")), Ok((Category::S, d(21))));
        assert_eq!(
            reg(&acc("BE", true, "BE0123456789")),
            Ok((Category::AE, d(0)))
        );
        assert_eq!(reg(&acc("US", false, "")), Ok((Category::O, d(0))));
        assert_eq!(reg(&acc("CH", true, "")), Ok((Category::O, d(0))));
        let e = r.regime("A", Some(&acc("FR", false, ""))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "account A: customer in FR is taxed at FR's rate, but billing.vat_rates has no `FR`"
        );
        assert_eq!(r.regime("gone", None).unwrap().category, Category::S);
    }

    #[test]
    fn overrides_apply_under_s_only() {
        let r = rules();
        let s = r.regime("A", Some(&acc("NL", false, ""))).unwrap();
        assert_eq!(r.line(&s, "voice", "Helpdesk").category, Category::E);
        assert_eq!(r.line(&s, "voice", "Germany").category, Category::S);
        assert_eq!(r.line(&s, "sms", "Helpdesk").category, Category::S);
        let ae = r
            .regime("A", Some(&acc("BE", true, "BE0123456789")))
            .unwrap();
        assert_eq!(r.line(&ae, "voice", "Helpdesk").category, Category::AE);
    }

    #[test]
    fn breakdown_rounds_once_per_group() {
        let s21 = Treatment {
            category: Category::S,
            rate: Decimal::from(21),
            reason: String::new(),
        };
        let e = Treatment {
            category: Category::E,
            rate: Decimal::ZERO,
            reason: "Exempt".into(),
        };
        // Per line 0.05 * 21 % = 0.0105 -> 0.01 each (0.03 in total); once over the
        // sum 0.15 * 21 % = 0.0315 -> 0.03. And 0.50: 0.105 -> 0.11 (half-up).
        let (rows, net, vat) = breakdown(&[
            (s21.clone(), 5),
            (e.clone(), 700),
            (s21.clone(), 5),
            (s21.clone(), 5),
        ]);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].1, rows[0].2), (15, 3));
        assert_eq!((rows[1].1, rows[1].2), (700, 0));
        assert_eq!((net, vat), (715, 3));
        let (rows, _, vat) = breakdown(&[(s21.clone(), 25), (s21, 25)]);
        assert_eq!((rows[0].1, vat), (50, 11));
        let r = row(&rows[0].0, rows[0].1, rows[0].2);
        assert_eq!(
            (
                r.category.as_str(),
                r.rate.as_str(),
                r.vat_amount.to_string().as_str()
            ),
            ("S", "21", "0.11")
        );
    }
}
