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
    fn missing_key_is_named() {
        let text = EXAMPLE.replace("accounts_file", "# accounts_file");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("accounts_file"), "{e}");
    }
}
