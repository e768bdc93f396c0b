//! Configuration: raw serde structs in, one validated [`Config`] out.
//!
//! Every key is checked here, once, with a message naming the key; nothing else in
//! tollgate reads the configuration file or the environment. Relative paths are
//! resolved against the directory holding the configuration file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::cdr::Column;
use crate::vat::{Category, Override, VatRules};

/// A configuration error: the file could not be read, parsed, or a key has a bad value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: key `{key}`: {message}")]
    Key {
        path: PathBuf,
        key: String,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: PathBuf,
    spool_dir: PathBuf,
    tariff_plans: PathBuf,
    accounts_file: PathBuf,
    invoice_dir: PathBuf,
    listen: String,
    workers: i64,
    #[serde(default)]
    columns: Option<Vec<String>>,
    #[serde(default)]
    chunk_bytes: Option<i64>,
    #[serde(default)]
    max_line_bytes: Option<i64>,
    #[serde(default)]
    poll_interval_ms: Option<i64>,
    billing: RawBilling,
    seller: Seller,
    #[serde(default)]
    numbering: Option<RawNumbering>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBilling {
    vat_rate: String,
    payment_terms_days: i64,
    #[serde(default)]
    vat_rates: BTreeMap<String, String>,
    #[serde(default)]
    vat_override: Vec<RawOverride>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    service: String,
    #[serde(default)]
    destination: Option<String>,
    category: String,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNumbering {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    yearly_reset: Option<bool>,
    #[serde(default)]
    credit_series: Option<String>,
    #[serde(default)]
    credit_prefix: Option<String>,
}

/// Invoice and credit note number series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbering {
    /// Prefix of invoice numbers (default empty).
    pub prefix: String,
    /// Numbers restart at 1 every issue year and carry the year (default true).
    pub yearly_reset: bool,
    /// Credit notes take numbers from the invoice series (`shared`) instead of their own.
    pub credit_shared: bool,
    /// Prefix of credit note numbers in their own series (default `CN-`).
    pub credit_prefix: String,
}

impl Default for Numbering {
    fn default() -> Numbering {
        Numbering {
            prefix: String::new(),
            yearly_reset: true,
            credit_shared: false,
            credit_prefix: "CN-".into(),
        }
    }
}

/// The selling party, copied into every invoice as `seller`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Seller {
    pub name: String,
    pub street: String,
    pub postcode: String,
    pub city: String,
    pub country: String,
    pub kvk: String,
    pub vat_id: String,
    pub iban: String,
    pub bic: String,
}

/// Billing settings.
#[derive(Debug, Clone)]
pub struct Billing {
    /// VAT percentage, e.g. `21`.
    pub vat_rate: Decimal,
    /// Days between issue date and due date.
    pub payment_terms_days: u32,
    /// VAT rules (rates per EU country, line overrides).
    pub vat: VatRules,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The configuration file this was read from.
    pub source: PathBuf,
    pub data_dir: PathBuf,
    pub spool_dir: PathBuf,
    pub tariff_plans: PathBuf,
    pub accounts_file: PathBuf,
    pub invoice_dir: PathBuf,
    pub listen: SocketAddr,
    pub workers: usize,
    /// Column order for CDR files without a header line; `None` means files carry a header.
    pub columns: Option<Vec<Option<Column>>>,
    /// Target size of one unit of work for a rating worker.
    pub chunk_bytes: usize,
    /// Longest line accepted; a longer line is rejected as `malformed`.
    pub max_line_bytes: usize,
    /// How often the spool watcher looks at the inbox.
    pub poll_interval: Duration,
    pub billing: Billing,
    pub seller: Seller,
    pub numbering: Numbering,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Validates configuration text; `path` names it in errors and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let key_err = |key: &str, message: String| ConfigError::Key {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let resolve = |key: &str, p: &Path| -> Result<PathBuf, ConfigError> {
            if p.as_os_str().is_empty() {
                return Err(key_err(key, "must not be empty".into()));
            }
            Ok(if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            })
        };

        let listen: SocketAddr = raw.listen.parse().map_err(|_| {
            key_err(
                "listen",
                format!("`{}` is not an address such as 127.0.0.1:9464", raw.listen),
            )
        })?;
        if !(1..=256).contains(&raw.workers) {
            return Err(key_err(
                "workers",
                format!("{} is out of range 1..=256", raw.workers),
            ));
        }
        let columns = match raw.columns {
            None => None,
            Some(names) => Some(
                crate::cdr::columns_from_names(names.iter().map(String::as_str))
                    .map_err(|m| key_err("columns", m))?,
            ),
        };
        let chunk_bytes = raw.chunk_bytes.unwrap_or(1 << 20);
        if !(4096..=(256 << 20)).contains(&chunk_bytes) {
            return Err(key_err(
                "chunk_bytes",
                format!("{chunk_bytes} is out of range 4096..=268435456"),
            ));
        }
        let max_line_bytes = raw.max_line_bytes.unwrap_or(64 << 10);
        if !(256..=(16 << 20)).contains(&max_line_bytes) {
            return Err(key_err(
                "max_line_bytes",
                format!("{max_line_bytes} is out of range 256..=16777216"),
            ));
        }
        let poll_ms = raw.poll_interval_ms.unwrap_or(200);
        if !(10..=60_000).contains(&poll_ms) {
            return Err(key_err(
                "poll_interval_ms",
                format!("{poll_ms} is out of range 10..=60000"),
            ));
        }
        let vat_rate: Decimal = raw.billing.vat_rate.trim().parse().map_err(|_| {
            key_err(
                "billing.vat_rate",
                format!("`{}` is not a decimal percentage", raw.billing.vat_rate),
            )
        })?;
        if vat_rate < Decimal::ZERO || vat_rate > Decimal::from(100) {
            return Err(key_err(
                "billing.vat_rate",
                format!("{vat_rate} is outside 0..=100"),
            ));
        }
        if !(0..=365).contains(&raw.billing.payment_terms_days) {
            return Err(key_err(
                "billing.payment_terms_days",
                format!("{} is out of range 0..=365", raw.billing.payment_terms_days),
            ));
        }
        let s = &raw.seller;
        for (key, value) in [
            ("seller.name", &s.name),
            ("seller.street", &s.street),
            ("seller.postcode", &s.postcode),
            ("seller.city", &s.city),
            ("seller.country", &s.country),
            ("seller.kvk", &s.kvk),
            ("seller.vat_id", &s.vat_id),
            ("seller.iban", &s.iban),
            ("seller.bic", &s.bic),
        ] {
            if value.trim().is_empty() {
                return Err(key_err(key, "must not be empty".into()));
            }
        }
        if s.country.len() != 2 || !s.country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(key_err(
                "seller.country",
                format!("`{}` is not an ISO 3166 alpha-2 code such as NL", s.country),
            ));
        }

        crate::accounts::check_vat_id(&s.vat_id, &s.country)
            .map_err(|m| key_err("seller.vat_id", m))?;
        if !iban_ok(&s.iban) {
            return Err(key_err(
                "seller.iban",
                format!(
                    "`{}` is not an IBAN (no spaces, valid check digits)",
                    s.iban
                ),
            ));
        }
        let mut rates = BTreeMap::new();
        for (cc, r) in &raw.billing.vat_rates {
            let key = format!("billing.vat_rates.{cc}");
            if !crate::vat::in_eu(cc) || *cc == s.country {
                return Err(key_err(
                    &key,
                    format!("`{cc}` is not an EU member state other than the seller's country"),
                ));
            }
            let rate: Decimal = r
                .trim()
                .parse()
                .ok()
                .filter(|r| *r > Decimal::ZERO && *r <= Decimal::from(100))
                .ok_or_else(|| key_err(&key, format!("`{r}` is not a percentage in 0..=100")))?;
            rates.insert(cc.clone(), rate);
        }
        let mut overrides = Vec::new();
        for (i, o) in raw.billing.vat_override.iter().enumerate() {
            let key = |k: &str| format!("billing.vat_override[{i}].{k}");
            if !["voice", "sms", "data", "subscription"].contains(&o.service.as_str()) {
                return Err(key_err(
                    &key("service"),
                    format!("`{}` is not voice, sms, data or subscription", o.service),
                ));
            }
            let category = match Category::parse(&o.category) {
                Some(c @ (Category::E | Category::Z)) => c,
                _ => {
                    return Err(key_err(
                        &key("category"),
                        format!("`{}` is not E (exempt) or Z (zero rated)", o.category),
                    ))
                }
            };
            if o.reason.trim().is_empty() {
                return Err(key_err(&key("reason"), "must not be empty".into()));
            }
            overrides.push(Override {
                service: o.service.clone(),
                destination: o.destination.clone(),
                category,
                reason: o.reason.trim().to_owned(),
            });
        }
        let numbering = match &raw.numbering {
            None => Numbering::default(),
            Some(n) => {
                let d = Numbering::default();
                let credit_shared = match n.credit_series.as_deref() {
                    None | Some("own") => false,
                    Some("shared") => true,
                    Some(o) => {
                        return Err(key_err(
                            "numbering.credit_series",
                            format!("`{o}` is not own or shared"),
                        ))
                    }
                };
                let out = Numbering {
                    prefix: n.prefix.clone().unwrap_or(d.prefix),
                    yearly_reset: n.yearly_reset.unwrap_or(d.yearly_reset),
                    credit_shared,
                    credit_prefix: n.credit_prefix.clone().unwrap_or(d.credit_prefix),
                };
                for (key, p) in [
                    ("numbering.prefix", &out.prefix),
                    ("numbering.credit_prefix", &out.credit_prefix),
                ] {
                    if p.len() > 16
                        || !p
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    {
                        return Err(key_err(
                            key,
                            format!("`{p}` must be at most 16 letters, digits, `-` or `_`"),
                        ));
                    }
                }
                if !out.credit_shared && out.credit_prefix == out.prefix {
                    return Err(key_err(
                        "numbering.credit_prefix",
                        "must differ from numbering.prefix when credit notes have their own series"
                            .into(),
                    ));
                }
                out
            }
        };

        Ok(Config {
            source: path.to_owned(),
            data_dir: resolve("data_dir", &raw.data_dir)?,
            spool_dir: resolve("spool_dir", &raw.spool_dir)?,
            tariff_plans: resolve("tariff_plans", &raw.tariff_plans)?,
            accounts_file: resolve("accounts_file", &raw.accounts_file)?,
            invoice_dir: resolve("invoice_dir", &raw.invoice_dir)?,
            listen,
            workers: raw.workers as usize,
            columns,
            chunk_bytes: chunk_bytes as usize,
            max_line_bytes: max_line_bytes as usize,
            poll_interval: Duration::from_millis(poll_ms as u64),
            billing: Billing {
                vat_rate,
                payment_terms_days: raw.billing.payment_terms_days as u32,
                vat: VatRules {
                    home: raw.seller.country.clone(),
                    home_rate: vat_rate,
                    rates,
                    overrides,
                },
            },
            seller: raw.seller,
            numbering,
        })
    }
}

/// ISO 13616 IBAN check: 15-34 capitals/digits, country code, mod-97 remainder 1.
fn iban_ok(iban: &str) -> bool {
    let b = iban.as_bytes();
    if !(15..=34).contains(&b.len())
        || !b[..2].iter().all(u8::is_ascii_uppercase)
        || !b[2..4].iter().all(u8::is_ascii_digit)
        || !b
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return false;
    }
    let mut rem: u32 = 0;
    for &c in b[4..].iter().chain(&b[..4]) {
        let v = if c.is_ascii_digit() {
            (c - b'0') as u32
        } else {
            (c - b'A') as u32 + 10
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const EXAMPLE: &str = include_str!("../configs/tollgate.toml");

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/tollgate/tollgate.toml"), text)
    }

    #[test]
    fn shipped_example_is_valid() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.workers, 2);
        assert_eq!(c.billing.vat_rate, Decimal::from(21));
        assert_eq!(c.spool_dir, PathBuf::from("/etc/tollgate/spool"));
    }

    #[test]
    fn shipped_example_workspace_loads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let c = Config::load(&dir.join("tollgate.toml")).unwrap();
        let src = crate::tariff::Source::load(&c.tariff_plans).unwrap();
        assert_eq!(src.plans.len(), 2);
        let accounts = crate::accounts::Accounts::load(&c.accounts_file).unwrap();
        assert_eq!(accounts.list.len(), 2);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = EXAMPLE.replace("workers = 2", "workers = 2\nwrokers = 3");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("wrokers"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        for (from, to, key) in [
            ("workers = 2", "workers = 0", "workers"),
            (
                "vat_rate = \"21\"",
                "vat_rate = \"twenty\"",
                "billing.vat_rate",
            ),
            (
                "listen = \"127.0.0.1:9464\"",
                "listen = \"localhost\"",
                "listen",
            ),
            (
                "payment_terms_days = 14",
                "payment_terms_days = -1",
                "billing.payment_terms_days",
            ),
            ("kvk = \"12345678\"", "kvk = \"\"", "seller.kvk"),
            (
                "vat_id = \"NL123456789B01\"",
                "vat_id = \"NL123456789\"",
                "seller.vat_id",
            ),
            (
                "iban = \"NL91ABNA0417164300\"",
                "iban = \"NL92ABNA0417164300\"",
                "seller.iban",
            ),
        ] {
            assert!(EXAMPLE.contains(from), "example lacks {from}");
            let e = parse(&EXAMPLE.replace(from, to)).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
        }
    }

    #[test]
    fn vat_and_numbering_keys() {
        let c = parse(EXAMPLE).unwrap();
        assert_eq!(c.billing.vat.rates["BE"], Decimal::from(21));
        assert_eq!(c.billing.vat.rates["DE"], Decimal::from(19));
        assert_eq!(c.numbering, Numbering::default());
        for (bad, key) in [
            ("XX = \"20\"", "billing.vat_rates.XX"),
            ("NL = \"21\"", "billing.vat_rates.NL"),
            ("BE = \"abc\"", "billing.vat_rates.BE"),
        ] {
            let e = parse(&EXAMPLE.replace("BE = \"21\"", bad))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
        }
        for (add, key) in [
            (
                "[[billing.vat_override]]\nservice = \"fax\"\ncategory = \"E\"\nreason = \"x\"\n",
                "billing.vat_override[0].service",
            ),
            (
                "[[billing.vat_override]]\nservice = \"voice\"\ncategory = \"S\"\nreason = \"x\"\n",
                "billing.vat_override[0].category",
            ),
            (
                "[numbering]\ncredit_series = \"both\"\n",
                "numbering.credit_series",
            ),
            ("[numbering]\nprefix = \"INV 1\"\n", "numbering.prefix"),
            (
                "[numbering]\ncredit_prefix = \"\"\n",
                "numbering.credit_prefix",
            ),
        ] {
            let e = parse(&format!("{EXAMPLE}\n{add}")).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
        }
        let c = parse(&format!(
            "{EXAMPLE}\n[numbering]\nprefix = \"TG\"\nyearly_reset = false\ncredit_series = \"shared\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.numbering,
            Numbering {
                prefix: "TG".into(),
                yearly_reset: false,
                credit_shared: true,
                credit_prefix: "CN-".into()
            }
        );
    }

    #[test]
    fn missing_key_is_named() {
        let text = EXAMPLE.replace("accounts_file", "# accounts_file");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("accounts_file"), "{e}");
    }
}
