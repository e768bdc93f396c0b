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

use crate::cdr::Column;

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
    #[serde(default)]
    api_tokens_file: Option<PathBuf>,
    billing: RawBilling,
    seller: Seller,
    #[serde(default)]
    sepa: Option<RawSepa>,
    #[serde(default)]
    dunning: Option<RawDunning>,
    #[serde(default)]
    outbox: Option<RawOutbox>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSepa {
    creditor_id: String,
    creditor_name: String,
    creditor_iban: String,
    creditor_bic: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDunning {
    #[serde(default)]
    receipt_days: Option<i64>,
    commercial_interest_rate: String,
    #[serde(default)]
    business_compensation: Option<String>,
    #[serde(default)]
    step: Vec<RawStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    kind: String,
    days_after_due: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbox {
    #[serde(default)]
    smtp: Option<String>,
    from: String,
    #[serde(default)]
    webhook: Option<String>,
}

/// The creditor side of SEPA direct debits (`[sepa]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sepa {
    /// SEPA creditor identifier (checked mod 97).
    pub creditor_id: String,
    pub creditor_name: String,
    /// The account collections are credited to (checked mod 97); bank statements for
    /// this IBAN or the seller's are accepted.
    pub creditor_iban: String,
    pub creditor_bic: String,
}

/// The kind of a dunning step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A friendly reminder.
    Reminder,
    /// Consumers: the formal 14-day letter stating the collection costs (BW 6:96).
    /// Businesses: the notice charging the fixed compensation; interest runs from the due date.
    FormalNotice,
    /// The last notice before handing over to collection.
    FinalNotice,
}

impl StepKind {
    pub fn name(self) -> &'static str {
        match self {
            StepKind::Reminder => "reminder",
            StepKind::FormalNotice => "formal_notice",
            StepKind::FinalNotice => "final_notice",
        }
    }
}

/// One step of the dunning schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub kind: StepKind,
    pub days_after_due: u32,
}

/// The dunning schedule and late-payment settings (`[dunning]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dunning {
    /// Days after sending at which a letter counts as received (the 14-day term starts
    /// the day after receipt).
    pub receipt_days: u32,
    /// Statutory commercial interest, percent per year (businesses).
    pub commercial_interest_rate: Decimal,
    /// Fixed compensation for businesses, cents (statutory minimum 40.00).
    pub business_compensation_cents: i64,
    /// Steps in increasing `days_after_due`.
    pub steps: Vec<Step>,
}

/// Where notifications go (`[outbox]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbox {
    /// SMTP relay `host:port` (plain SMTP, as to a local relay).
    pub smtp: Option<String>,
    /// Sender address.
    pub from: String,
    /// Optional `http://host:port/path` receiving each notification as JSON (POST).
    pub webhook: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBilling {
    vat_rate: String,
    payment_terms_days: i64,
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
    /// API bearer tokens (`name,role,sha256` CSV); `None`: every `/api` call is refused.
    pub api_tokens_file: Option<PathBuf>,
    pub billing: Billing,
    pub seller: Seller,
    /// Creditor side of SEPA direct debits; required by `collect`.
    pub sepa: Option<Sepa>,
    /// Dunning schedule; the daemon runs dunning daily when present.
    pub dunning: Option<Dunning>,
    /// Notification delivery.
    pub outbox: Option<Outbox>,
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

        let sepa = match &raw.sepa {
            None => None,
            Some(r) => {
                if r.creditor_name.trim().is_empty() {
                    return Err(key_err("sepa.creditor_name", "must not be empty".into()));
                }
                Some(Sepa {
                    creditor_id: crate::sepa::check_creditor_id(&r.creditor_id)
                        .map_err(|m| key_err("sepa.creditor_id", m))?,
                    creditor_name: r.creditor_name.trim().to_owned(),
                    creditor_iban: crate::sepa::check_iban(&r.creditor_iban)
                        .map_err(|m| key_err("sepa.creditor_iban", m))?,
                    creditor_bic: crate::sepa::check_bic(&r.creditor_bic)
                        .map_err(|m| key_err("sepa.creditor_bic", m))?,
                })
            }
        };
        let dunning = match &raw.dunning {
            None => None,
            Some(r) => {
                let receipt_days = r.receipt_days.unwrap_or(2);
                if !(0..=30).contains(&receipt_days) {
                    return Err(key_err(
                        "dunning.receipt_days",
                        format!("{receipt_days} is out of range 0..=30"),
                    ));
                }
                let rate: Decimal = r.commercial_interest_rate.trim().parse().map_err(|_| {
                    key_err(
                        "dunning.commercial_interest_rate",
                        format!(
                            "`{}` is not a decimal percentage",
                            r.commercial_interest_rate
                        ),
                    )
                })?;
                if rate < Decimal::ZERO || rate > Decimal::from(100) {
                    return Err(key_err(
                        "dunning.commercial_interest_rate",
                        format!("{rate} is outside 0..=100"),
                    ));
                }
                let comp = match &r.business_compensation {
                    None => 4000,
                    Some(v) => crate::money::parse_cents(v)
                        .map_err(|m| key_err("dunning.business_compensation", m))?,
                };
                if comp < 4000 {
                    return Err(key_err(
                        "dunning.business_compensation",
                        "must be at least the statutory 40.00".into(),
                    ));
                }
                let mut steps = Vec::new();
                for (i, st) in r.step.iter().enumerate() {
                    let key = format!("dunning.step[{i}]");
                    let kind = match st.kind.as_str() {
                        "reminder" => StepKind::Reminder,
                        "formal_notice" => StepKind::FormalNotice,
                        "final_notice" => StepKind::FinalNotice,
                        k => {
                            return Err(key_err(
                                &format!("{key}.kind"),
                                format!("`{k}` is not reminder, formal_notice or final_notice"),
                            ))
                        }
                    };
                    if !(1..=365).contains(&st.days_after_due) {
                        return Err(key_err(
                            &format!("{key}.days_after_due"),
                            format!("{} is out of range 1..=365", st.days_after_due),
                        ));
                    }
                    if steps.iter().any(|s: &Step| s.kind == kind) {
                        return Err(key_err(
                            &format!("{key}.kind"),
                            format!("`{}` appears twice", st.kind),
                        ));
                    }
                    if let Some(prev) = steps.last() {
                        if st.days_after_due as u32 <= prev.days_after_due {
                            return Err(key_err(
                                &format!("{key}.days_after_due"),
                                "steps must be in increasing days_after_due".into(),
                            ));
                        }
                    }
                    steps.push(Step {
                        kind,
                        days_after_due: st.days_after_due as u32,
                    });
                }
                Some(Dunning {
                    receipt_days: receipt_days as u32,
                    commercial_interest_rate: rate,
                    business_compensation_cents: comp,
                    steps,
                })
            }
        };
        let outbox = match &raw.outbox {
            None => None,
            Some(r) => {
                if let Some(s) = &r.smtp {
                    if s.rsplit_once(':')
                        .and_then(|(_, p)| p.parse::<u16>().ok())
                        .is_none()
                    {
                        return Err(key_err("outbox.smtp", format!("`{s}` is not host:port")));
                    }
                }
                if let Some(w) = &r.webhook {
                    if !w.starts_with("http://") {
                        return Err(key_err(
                            "outbox.webhook",
                            format!("`{w}` is not an http:// URL"),
                        ));
                    }
                }
                if !r.from.contains('@') {
                    return Err(key_err(
                        "outbox.from",
                        format!("`{}` is not an email address", r.from),
                    ));
                }
                Some(Outbox {
                    smtp: r.smtp.clone(),
                    from: r.from.clone(),
                    webhook: r.webhook.clone(),
                })
            }
        };

        Ok(Config {
            sepa,
            dunning,
            outbox,
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
            api_tokens_file: match &raw.api_tokens_file {
                Some(p) => Some(resolve("api_tokens_file", p)?),
                None => None,
            },
            billing: Billing {
                vat_rate,
                payment_terms_days: raw.billing.payment_terms_days as u32,
            },
            seller: raw.seller,
        })
    }
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
        ] {
            assert!(EXAMPLE.contains(from), "example lacks {from}");
            let e = parse(&EXAMPLE.replace(from, to)).unwrap_err().to_string();
            assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
        }
    }

    #[test]
    fn payment_tables() {
        let text = format!(
            "{EXAMPLE}\n[sepa]\ncreditor_id = \"NL69ZZZ123456780000\"\ncreditor_name = \"T\"\n\
             creditor_iban = \"NL91ABNA0417164300\"\ncreditor_bic = \"ABNANL2A\"\n\
             [dunning]\ncommercial_interest_rate = \"10.15\"\n\
             [[dunning.step]]\nkind = \"reminder\"\ndays_after_due = 3\n\
             [[dunning.step]]\nkind = \"formal_notice\"\ndays_after_due = 10\n"
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.sepa.unwrap().creditor_id, "NL69ZZZ123456780000");
        let d = c.dunning.unwrap();
        assert_eq!(d.steps.len(), 2);
        assert_eq!(d.receipt_days, 2);
        assert_eq!(d.business_compensation_cents, 4000);
        let e = parse(&text.replace("NL69ZZZ", "NL68ZZZ"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`sepa.creditor_id`"), "{e}");
        let e = parse(&text.replace("days_after_due = 10", "days_after_due = 2"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`dunning.step[1].days_after_due`"), "{e}");
        // Old configs (no tables) still load.
        assert!(parse(EXAMPLE).unwrap().sepa.is_none());
    }

    #[test]
    fn missing_key_is_named() {
        let text = EXAMPLE.replace("accounts_file", "# accounts_file");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("accounts_file"), "{e}");
    }
}
