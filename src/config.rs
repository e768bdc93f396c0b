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

use crate::billing::vat::{Category, Override, VatRules};
use crate::rate::cdr::Column;

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
    dedup_window_days: Option<i64>,
    #[serde(default)]
    poll_interval_ms: Option<i64>,
    #[serde(default)]
    api_tokens_file: Option<PathBuf>,
    billing: RawBilling,
    seller: Seller,
    #[serde(default)]
    numbering: Option<RawNumbering>,
    #[serde(default)]
    privacy: Option<RawPrivacy>,
    #[serde(default)]
    sepa: Option<RawSepa>,
    #[serde(default)]
    dunning: Option<RawDunning>,
    #[serde(default)]
    outbox: Option<RawOutbox>,
    #[serde(default)]
    delivery: Option<RawDelivery>,
    #[serde(default)]
    selfservice: Option<RawSelfService>,
    #[serde(default)]
    psp: Option<RawPsp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    #[serde(default)]
    pay_url: Option<String>,
    #[serde(default)]
    peppol_outbox: Option<PathBuf>,
    #[serde(default)]
    reply_to: Option<String>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    retry_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPsp {
    provider: String,
    #[serde(default)]
    api_base: Option<String>,
    secret_key_file: PathBuf,
    webhook_secret_file: PathBuf,
    return_url: String,
    #[serde(default)]
    publishable_key: Option<String>,
    #[serde(default)]
    public_url: Option<String>,
    #[serde(default)]
    link_secret_file: Option<PathBuf>,
    #[serde(default)]
    js_url: Option<String>,
    #[serde(default)]
    webhook_tolerance_s: Option<i64>,
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
    #[serde(default)]
    smtp_tls: Option<String>,
    #[serde(default)]
    smtp_ca_file: Option<PathBuf>,
    #[serde(default)]
    smtp_credentials_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelfService {
    public_url: String,
    #[serde(default)]
    session_minutes: Option<i64>,
}

/// The customer's self-service page `/my/` (`[selfservice]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfService {
    /// The address customers reach the daemon at (`https://my.example.nl`, no trailing
    /// slash); sign-in links start with it.
    pub public_url: String,
    /// Cookies carry `Secure`: true when `public_url` is `https://` (TLS ends at a
    /// proxy in front of the daemon).
    pub secure_cookies: bool,
    /// A session ends this long after sign-in.
    pub session: Duration,
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

/// The payment service provider (`[psp]`): online payment of open invoices, card
/// autopay and card refunds. Secrets are file paths, read when used, never kept here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Psp {
    /// The provider; `stripe` is the one implementation.
    pub provider: PspProvider,
    /// The provider's API, without a trailing slash (`https://api.stripe.com`).
    pub api_base: String,
    /// File holding the secret API key (`sk_…`).
    pub secret_key_file: PathBuf,
    /// File holding the webhook endpoint's signing secret (`whsec_…`).
    pub webhook_secret_file: PathBuf,
    /// The link under the pay page's thank-you text (where the customer goes on to).
    pub return_url: String,
    /// The publishable key (`pk_…`) the pay page hands to Stripe.js; not a secret.
    pub publishable_key: String,
    /// The daemon as customers reach it (pay links start with it), no trailing slash.
    pub public_url: String,
    /// File with the key that signs pay links; `None`: derived from the secret API key.
    pub link_secret_file: Option<PathBuf>,
    /// Stripe.js.
    pub js_url: String,
    /// How old a webhook's signed timestamp may be.
    pub webhook_tolerance: Duration,
}

/// A payment service provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PspProvider {
    Stripe,
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

/// Delivery of every issued document (`[delivery]`, docs/delivery.md). When absent,
/// documents are not queued for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The "pay online" link, `{invoice}` replaced by the invoice number; no link when unset.
    pub pay_url: Option<String>,
    /// Folder a Peppol access point picks UBL documents up from (required for `peppol`
    /// accounts to be delivered).
    pub peppol_outbox: Option<PathBuf>,
    /// `Reply-To` of the invoice emails.
    pub reply_to: Option<String>,
    /// Attempts before a delivery is left `failed` for `bills resend` (default 5).
    pub max_attempts: u32,
    /// Back-off after the first failure; doubles per attempt (default 300 s).
    pub retry: Duration,
}

/// Where notifications and document emails go (`[outbox]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbox {
    /// SMTP relay `host:port`.
    pub smtp: Option<String>,
    /// Sender address.
    pub from: String,
    /// Optional `http://host:port/path` receiving each notification as JSON (POST).
    pub webhook: Option<String>,
    /// How the connection to the relay is secured (`smtp_tls`, default `none`).
    pub smtp_tls: SmtpTls,
    /// PEM file with the certificate(s) the relay's certificate must chain to
    /// (`smtp_ca_file`: a private relay's CA or its self-signed certificate); only
    /// these are trusted then. Without it, the Mozilla roots (webpki-roots).
    pub smtp_ca_file: Option<PathBuf>,
    /// File with the relay's user name (first line) and password (second line)
    /// (`smtp_credentials_file`): read at each connection, never logged, never kept in
    /// the config.
    pub smtp_credentials_file: Option<PathBuf>,
}

/// How the SMTP connection to the relay is secured (`[outbox] smtp_tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpTls {
    /// `none`: plain SMTP, as to a relay on the same host (the default).
    #[default]
    None,
    /// `opportunistic`: STARTTLS when the relay offers it, else plain.
    Opportunistic,
    /// `starttls`: STARTTLS required; a relay that does not offer it gets nothing.
    Starttls,
    /// `implicit`: TLS from the first byte (SMTPS, usually port 465).
    Implicit,
}

impl SmtpTls {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::None => "none",
            SmtpTls::Opportunistic => "opportunistic",
            SmtpTls::Starttls => "starttls",
            SmtpTls::Implicit => "implicit",
        }
    }
}

/// Reads `[outbox] smtp_credentials_file`: the user name on the first line, the
/// password on the second (line ends trimmed, nothing else). Errors name the file,
/// never its content (`<path>: <reason>`).
pub fn read_smtp_credentials(path: &Path) -> Result<(String, String), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    match (lines.next(), lines.next(), lines.find(|l| !l.is_empty())) {
        (Some(u), Some(p), None) if !u.is_empty() && !p.is_empty() => {
            Ok((u.to_owned(), p.to_owned()))
        }
        _ => Err(format!(
            "{}: want the user name on the first line and the password on the second",
            path.display()
        )),
    }
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
struct RawPrivacy {
    #[serde(default)]
    dispute_window_months: Option<u32>,
    #[serde(default)]
    itemised_omit: Option<Vec<String>>,
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

/// Privacy settings (`[privacy]`).
#[derive(Debug, Clone)]
pub struct Privacy {
    /// Months after an invoice's due date during which its traffic detail is kept (the
    /// invoice can be disputed); afterwards the daemon erases it. Default 6.
    pub dispute_window_months: u32,
    /// Prefixes of normalized (E.164 digit) called numbers that are free to the caller
    /// (freephone, helplines, emergency): left out of itemised annexes. Default
    /// `["31800", "116", "112"]` (NL 0800, EU 116xxx helplines, 112).
    pub itemised_omit: Vec<String>,
}

/// Default [`Privacy::itemised_omit`].
pub const DEFAULT_ITEMISED_OMIT: [&str; 3] = ["31800", "116", "112"];

impl Default for Privacy {
    fn default() -> Privacy {
        Privacy {
            dispute_window_months: 6,
            itemised_omit: DEFAULT_ITEMISED_OMIT.map(String::from).to_vec(),
        }
    }
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
    /// Days (counted from an earlier file's commit day, UTC) during which a record id
    /// rated from that file makes a later record with the same id `duplicate_record`;
    /// 0 turns the cross-file check off.
    pub dedup_window_days: u32,
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
    /// Delivery of issued documents (`[delivery]`).
    pub delivery: Option<Delivery>,
    /// The customer self-service page; `None`: `/my/` answers 404.
    pub selfservice: Option<SelfService>,
    /// Online and card payments (`[psp]`); `None`: no pay links, no card autopay.
    pub psp: Option<Psp>,
    pub numbering: Numbering,
    /// Retention of traffic detail and itemisation rules (`[privacy]`).
    pub privacy: Privacy,
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
                crate::rate::cdr::columns_from_names(names.iter().map(String::as_str))
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
        let dedup_window_days = raw.dedup_window_days.unwrap_or(62);
        if !(0..=366).contains(&dedup_window_days) {
            return Err(key_err(
                "dedup_window_days",
                format!("{dedup_window_days} is out of range 0..=366"),
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
                    creditor_id: crate::rate::iban::check_creditor_id(&r.creditor_id)
                        .map_err(|m| key_err("sepa.creditor_id", m))?,
                    creditor_name: r.creditor_name.trim().to_owned(),
                    creditor_iban: crate::rate::iban::check_iban(&r.creditor_iban)
                        .map_err(|m| key_err("sepa.creditor_iban", m))?,
                    creditor_bic: crate::rate::iban::check_bic(&r.creditor_bic)
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
                    Some(v) => crate::rate::money::parse_cents(v)
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
                let smtp_tls = match r.smtp_tls.as_deref() {
                    None | Some("none") => SmtpTls::None,
                    Some("opportunistic") => SmtpTls::Opportunistic,
                    Some("starttls") => SmtpTls::Starttls,
                    Some("implicit") => SmtpTls::Implicit,
                    Some(o) => {
                        return Err(key_err(
                            "outbox.smtp_tls",
                            format!("`{o}` is not none, opportunistic, starttls or implicit"),
                        ))
                    }
                };
                let smtp_ca_file = match &r.smtp_ca_file {
                    None => None,
                    Some(p) => {
                        let p = resolve("outbox.smtp_ca_file", p)?;
                        if smtp_tls == SmtpTls::None {
                            return Err(key_err(
                                "outbox.smtp_ca_file",
                                "has no effect with smtp_tls = \"none\"".to_owned(),
                            ));
                        }
                        let pem = std::fs::read_to_string(&p).map_err(|e| {
                            key_err("outbox.smtp_ca_file", format!("{}: {e}", p.display()))
                        })?;
                        if !pem.contains("-----BEGIN CERTIFICATE-----") {
                            return Err(key_err(
                                "outbox.smtp_ca_file",
                                format!("{}: no PEM certificate in it", p.display()),
                            ));
                        }
                        Some(p)
                    }
                };
                let smtp_credentials_file = match &r.smtp_credentials_file {
                    None => None,
                    Some(p) => {
                        let p = resolve("outbox.smtp_credentials_file", p)?;
                        // Credentials only over TLS: never in clear, also not after a
                        // STARTTLS offer stripped by someone in between.
                        if !matches!(smtp_tls, SmtpTls::Starttls | SmtpTls::Implicit) {
                            return Err(key_err(
                                "outbox.smtp_credentials_file",
                                format!(
                                    "credentials go to the relay only over TLS: set smtp_tls = \"starttls\" or \"implicit\" (it is \"{}\")",
                                    smtp_tls.as_str()
                                ),
                            ));
                        }
                        read_smtp_credentials(&p)
                            .map_err(|e| key_err("outbox.smtp_credentials_file", e))?;
                        Some(p)
                    }
                };
                if r.smtp.is_none()
                    && (r.smtp_tls.is_some()
                        || smtp_ca_file.is_some()
                        || smtp_credentials_file.is_some())
                {
                    return Err(key_err(
                        "outbox.smtp",
                        "smtp_tls, smtp_ca_file and smtp_credentials_file need an smtp relay"
                            .to_owned(),
                    ));
                }
                Some(Outbox {
                    smtp: r.smtp.clone(),
                    from: r.from.clone(),
                    webhook: r.webhook.clone(),
                    smtp_tls,
                    smtp_ca_file,
                    smtp_credentials_file,
                })
            }
        };
        let selfservice = match &raw.selfservice {
            None => None,
            Some(r) => {
                let url = r.public_url.trim_end_matches('/').to_owned();
                let secure = url.starts_with("https://");
                if !secure && !url.starts_with("http://") || url.len() <= "https://".len() {
                    return Err(key_err(
                        "selfservice.public_url",
                        format!("`{}` is not an http:// or https:// URL", r.public_url),
                    ));
                }
                if outbox.as_ref().and_then(|o| o.smtp.as_ref()).is_none() {
                    return Err(key_err(
                        "selfservice",
                        "sign-in links go by email: set [outbox] smtp".to_owned(),
                    ));
                }
                let minutes = r.session_minutes.unwrap_or(60);
                if !(5..=24 * 60).contains(&minutes) {
                    return Err(key_err(
                        "selfservice.session_minutes",
                        format!("{minutes} is not between 5 and 1440"),
                    ));
                }
                Some(SelfService {
                    public_url: url,
                    secure_cookies: secure,
                    session: Duration::from_secs(minutes as u64 * 60),
                })
            }
        };
        crate::rate::accounts::check_vat_id(&s.vat_id, &s.country)
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
            if !crate::billing::vat::in_eu(cc) || *cc == s.country {
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
        let mut privacy = Privacy::default();
        if let Some(p) = &raw.privacy {
            if let Some(m) = p.dispute_window_months {
                if !(1..=120).contains(&m) {
                    return Err(key_err(
                        "privacy.dispute_window_months",
                        format!("{m} is not a number of months in 1..=120"),
                    ));
                }
                privacy.dispute_window_months = m;
            }
            if let Some(list) = &p.itemised_omit {
                for (i, d) in list.iter().enumerate() {
                    if d.is_empty() || !d.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(key_err(
                            &format!("privacy.itemised_omit[{i}]"),
                            format!("`{d}` is not a prefix of digits (E.164, without +)"),
                        ));
                    }
                }
                privacy.itemised_omit = list.clone();
            }
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

        let delivery = match &raw.delivery {
            None => None,
            Some(r) => {
                if let Some(u) = &r.pay_url {
                    if !(u.starts_with("https://") || u.starts_with("http://"))
                        || !u.contains("{invoice}")
                    {
                        return Err(key_err(
                            "delivery.pay_url",
                            format!("`{u}` is not an http(s):// URL with `{{invoice}}` in it"),
                        ));
                    }
                }
                if let Some(a) = &r.reply_to {
                    if !a.contains('@') {
                        return Err(key_err(
                            "delivery.reply_to",
                            format!("`{a}` is not an email address"),
                        ));
                    }
                }
                let max_attempts = r.max_attempts.unwrap_or(5);
                if !(1..=100).contains(&max_attempts) {
                    return Err(key_err(
                        "delivery.max_attempts",
                        format!("{max_attempts} is not 1..=100"),
                    ));
                }
                let retry = r.retry_seconds.unwrap_or(300);
                if retry > 86_400 {
                    return Err(key_err(
                        "delivery.retry_seconds",
                        format!("{retry} is more than a day (86400)"),
                    ));
                }
                Some(Delivery {
                    pay_url: r.pay_url.clone(),
                    peppol_outbox: match &r.peppol_outbox {
                        Some(p) => Some(resolve("delivery.peppol_outbox", p)?),
                        None => None,
                    },
                    reply_to: r.reply_to.clone(),
                    max_attempts,
                    retry: Duration::from_secs(retry),
                })
            }
        };
        let psp = match &raw.psp {
            None => None,
            Some(r) => {
                let provider = match r.provider.as_str() {
                    "stripe" => PspProvider::Stripe,
                    other => {
                        return Err(key_err(
                            "psp.provider",
                            format!("`{other}` is not a supported provider (stripe)"),
                        ))
                    }
                };
                let url = |key: &str, v: &str| -> Result<String, ConfigError> {
                    if v.starts_with("https://") || v.starts_with("http://") {
                        Ok(v.trim_end_matches('/').to_owned())
                    } else {
                        Err(key_err(key, format!("`{v}` is not an http(s):// URL")))
                    }
                };
                let api_base = url(
                    "psp.api_base",
                    r.api_base.as_deref().unwrap_or("https://api.stripe.com"),
                )?;
                let js_url = match &r.js_url {
                    Some(j) => url("psp.js_url", j)?,
                    None if api_base == "https://api.stripe.com" => {
                        "https://js.stripe.com/v3/".to_owned()
                    }
                    None => format!("{api_base}/js.stripe.com/v3/"),
                };
                let tolerance = r.webhook_tolerance_s.unwrap_or(300);
                if !(1..=3600).contains(&tolerance) {
                    return Err(key_err(
                        "psp.webhook_tolerance_s",
                        format!("{tolerance} is out of range 1..=3600"),
                    ));
                }
                let publishable_key = r.publishable_key.clone().unwrap_or_default();
                if !publishable_key.is_empty() && !publishable_key.starts_with("pk_") {
                    return Err(key_err(
                        "psp.publishable_key",
                        "must start with pk_ (never put the secret key here)".into(),
                    ));
                }
                Some(Psp {
                    provider,
                    api_base,
                    secret_key_file: resolve("psp.secret_key_file", &r.secret_key_file)?,
                    webhook_secret_file: resolve(
                        "psp.webhook_secret_file",
                        &r.webhook_secret_file,
                    )?,
                    return_url: url("psp.return_url", &r.return_url)?,
                    publishable_key,
                    public_url: url(
                        "psp.public_url",
                        &r.public_url
                            .clone()
                            .unwrap_or_else(|| format!("http://{listen}")),
                    )?,
                    link_secret_file: match &r.link_secret_file {
                        Some(p) => Some(resolve("psp.link_secret_file", p)?),
                        None => None,
                    },
                    js_url,
                    webhook_tolerance: Duration::from_secs(tolerance as u64),
                })
            }
        };

        Ok(Config {
            psp,
            sepa,
            dunning,
            outbox,
            delivery,
            selfservice,
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
            dedup_window_days: dedup_window_days as u32,
            poll_interval: Duration::from_millis(poll_ms as u64),
            api_tokens_file: match &raw.api_tokens_file {
                Some(p) => Some(resolve("api_tokens_file", p)?),
                None => None,
            },
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
            privacy,
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
    fn smtp_credentials_are_two_lines_and_errors_never_show_them() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("creds");
        let read = |text: &str| {
            std::fs::write(&f, text).unwrap();
            read_smtp_credentials(&f)
        };
        let ok = |u: &str, p: &str| Ok((u.to_owned(), p.to_owned()));
        assert_eq!(read("billing\ns3cret\n"), ok("billing", "s3cret"));
        assert_eq!(read("billing\r\ns3 cret \r\n\n"), ok("billing", "s3 cret "));
        assert_eq!(read("billing\ns3cret"), ok("billing", "s3cret"));
        for bad in ["", "billing\n", "\ns3cret\n", "billing\ns3cret\nextra\n"] {
            let e = read(bad).unwrap_err();
            assert_eq!(
                e,
                format!(
                    "{}: want the user name on the first line and the password on the second",
                    f.display()
                )
            );
        }
        assert!(read_smtp_credentials(&dir.path().join("none"))
            .unwrap_err()
            .starts_with(&format!("{}: ", dir.path().join("none").display())));
    }

    #[test]
    fn smtp_keys_need_a_relay() {
        let text = EXAMPLE.to_owned() + "\n[outbox]\nfrom = \"b@x.nl\"\nsmtp_tls = \"starttls\"\n";
        let e = parse(&text).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "key `outbox.smtp`: smtp_tls, smtp_ca_file and smtp_credentials_file need an smtp relay"
            ),
            "{e}"
        );
        let text = EXAMPLE.to_owned()
            + "\n[outbox]\nfrom = \"b@x.nl\"\nsmtp = \"127.0.0.1:25\"\nsmtp_tls = \"implicit\"\n";
        assert_eq!(
            parse(&text).unwrap().outbox.unwrap().smtp_tls,
            SmtpTls::Implicit
        );
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
        let src = crate::rate::tariff::Source::load(&c.tariff_plans).unwrap();
        assert_eq!(src.plans.len(), 2);
        let accounts = crate::rate::accounts::Accounts::load(&c.accounts_file).unwrap();
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
