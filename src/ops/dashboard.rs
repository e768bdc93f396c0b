//! The live dashboard: the page at `/` (embedded HTML + script, no build step), the
//! figures behind `GET /api/v1/dashboard` (served by [`crate::ops::api::analytics`]) and the
//! daemon's in-memory throughput history.
//!
//! The history is a ring of 10-second slots covering the last hour, filled once per
//! committed file (never per record). Totals since the daemon started are seeded from
//! the ledger's checkpoints, so a restart does not reset "files processed" or the
//! rejects by reason (failed and duplicate files are not in the ledger: they count from
//! the start of this process).
//!
//! The page reads an API token from the URL fragment (`/#token=…`) or a prompt, keeps it
//! in `sessionStorage` and sends it as `Authorization: Bearer …`, ready for the bearer
//! authentication of the `/api` routes.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use utoipa::ToSchema;

use crate::billing::Period;
use crate::ingest::engine::Engine;
use crate::ingest::live::{Live, Minute};
use crate::rate::money::{format_micros, micros_to_cents};
use crate::rate::rating::Reason;
use crate::store::{Ledger, LedgerError};

const PAGE: &str = include_str!("dashboard.html");

/// Rated records and revenue of one day of the period.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Day {
    /// Local date (tariff time zone), `YYYY-MM-DD`.
    #[schema(example = "2026-10-05")]
    pub date: String,
    pub records: u64,
    /// Exact, 6 decimals.
    #[schema(example = "1.900000")]
    pub revenue: String,
    /// Rounded half-up to cents.
    pub revenue_cents: i64,
}

/// The last committed close.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LastClose {
    pub period: String,
    /// RFC 3339.
    pub closed_at: String,
    pub invoices: usize,
    /// Total invoiced including VAT, cents.
    pub total: String,
}

/// The JSON of `GET /api/v1/dashboard`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Dashboard {
    /// Time of this snapshot (RFC 3339, UTC).
    pub now: String,
    /// When this daemon process started.
    pub started_at: String,
    pub workers: usize,
    /// First 16 hex digits of the tariff version in service.
    pub tariff_version: String,
    pub currency: String,
    /// Records (rated + rejected) per second over the last minute, 1 decimal.
    pub records_per_second: f64,
    /// Per minute over the last hour, oldest first (60 entries).
    pub last_hour: Vec<Minute>,
    pub files: FilesOut,
    /// Rated records (all committed files, seeded from the ledger at start).
    pub records_rated: u64,
    pub records_rejected: u64,
    pub bytes: u64,
    /// `[reason, rejected records]`, most frequent first, every reason.
    pub rejects: Vec<(String, u64)>,
    pub spool: SpoolOut,
    /// The period of `days`: the open one, or the one asked for.
    pub period: String,
    pub period_closed: bool,
    pub period_records: u64,
    /// Exact, 6 decimals.
    pub period_revenue: String,
    /// Rated revenue per local day of `period`, in date order.
    pub days: Vec<Day>,
    /// Null before the first close.
    pub last_close: Option<LastClose>,
}

/// Files by outcome.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FilesOut {
    pub done: u64,
    pub failed: u64,
    pub duplicate: u64,
}

/// The spool backlog.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SpoolOut {
    /// Files waiting in `inbox/`.
    pub backlog_files: u64,
    pub backlog_bytes: u64,
    /// Age of the oldest waiting file in seconds, 1 decimal (0 when none waits).
    pub oldest_file_age_seconds: f64,
}

/// The open period: the month after the last close; before any close, the latest month
/// with rated records, else the current month.
pub fn open_period(ledger: &Ledger) -> Result<String, LedgerError> {
    if let Some(last) = ledger.last_closed()? {
        let p: Period = last.parse().map_err(LedgerError::Refused)?;
        let (y, m) = if p.month == 12 {
            (p.year + 1, 1)
        } else {
            (p.year, p.month + 1)
        };
        return Ok(format!("{y:04}-{m:02}"));
    }
    Ok(ledger
        .daily("")?
        .last()
        .map(|(d, _)| d[..7].to_owned())
        .unwrap_or_else(|| chrono::Utc::now().format("%Y-%m").to_string()))
}

/// Builds the dashboard figures of `period` (default: the open period).
pub fn snapshot(engine: &Engine, period: Option<Period>) -> Result<Dashboard, LedgerError> {
    let ledger = &engine.ledger;
    let period = match period {
        Some(p) => p.to_string(),
        None => open_period(ledger)?,
    };
    let mut days = Vec::new();
    let (mut records, mut micros) = (0u64, 0i64);
    for (date, d) in ledger.daily(&format!("{period}-"))? {
        let t = d.total();
        records += t.count;
        micros += t.charge_micros;
        days.push(Day {
            date,
            records: t.count,
            revenue: format_micros(t.charge_micros as i128),
            revenue_cents: micros_to_cents(t.charge_micros as i128),
        });
    }
    let last_close = ledger
        .closes()?
        .into_iter()
        .max_by(|a, b| a.closed_at.cmp(&b.closed_at))
        .map(|c| LastClose {
            period: c.period,
            closed_at: c.closed_at,
            invoices: c.invoices.len(),
            total: c.total.to_string(),
        });
    let period_closed = ledger.close_record(&period)?.is_some();
    let reference = engine.reference();
    let now = chrono::Utc::now();
    let s = engine.live.lock();
    let (rps, last_hour) = Live::throughput(&s, now.timestamp());
    let mut rejects: Vec<(String, u64)> = Reason::ALL
        .iter()
        .map(|r| (r.code().to_owned(), s.rejected[*r as usize]))
        .collect();
    rejects.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(Dashboard {
        now: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        started_at: chrono::DateTime::from_timestamp(s.started, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default(),
        workers: engine.cfg.workers,
        tariff_version: reference.tariff.version()[..16].to_owned(),
        currency: reference.tariff.currency().to_owned(),
        records_per_second: (rps * 10.0).round() / 10.0,
        last_hour,
        files: FilesOut {
            done: s.files[0],
            failed: s.files[1],
            duplicate: s.files[2],
        },
        records_rated: s.rated,
        records_rejected: s.rejected.iter().sum(),
        bytes: s.bytes,
        rejects,
        spool: SpoolOut {
            backlog_files: s.backlog_files,
            backlog_bytes: s.backlog_bytes,
            oldest_file_age_seconds: (s.oldest_age_seconds * 10.0).round() / 10.0,
        },
        period,
        period_closed,
        period_records: records,
        period_revenue: format_micros(micros as i128),
        days,
        last_close,
    })
}

/// The page alone (it holds no data; its figures come from the JSON route).
pub fn page_router() -> Router {
    Router::new().route("/", get(page))
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE,
    )
}
