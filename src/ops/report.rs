//! `tollgate report usage|revenue|rejects`: period reports for analysts and pricing
//! managers, as CSV, JSON or a self-contained HTML page with inline SVG charts.
//!
//! Sources (all read-only, the daemon may be running):
//! - totals, `--by day` and `--by service`: the ledger's `daily` column family (rated
//!   records by local day and service; exact, kept after a close);
//! - `--by destination|account|plan` and the top lists: the unbilled usage of the month
//!   while the period is open, the period's invoices once it is closed (invoices also
//!   carry records of earlier months that arrived late);
//! - rejects: file checkpoints, by the UTC month (and day) the file was committed.
//!
//! Money stays integer (micro units) until it is printed: JSON and CSV carry exact
//! 6-decimal strings, HTML shows amounts rounded half-up to cents.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::billing::{Invoice, Line, Period};
use crate::rate::accounts::Accounts;
use crate::rate::money::{micros_to_cents, Micros};
use crate::rate::service::Service;
use crate::store::{DayTotals, Ledger, LedgerError, LineTotals};

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Usage,
    Revenue,
    Rejects,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Usage => "usage",
            Kind::Revenue => "revenue",
            Kind::Rejects => "rejects",
        }
    }
}

/// Grouping of the report rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum By {
    Day,
    Destination,
    Service,
    Plan,
    Account,
}

impl By {
    pub fn name(self) -> &'static str {
        match self {
            By::Day => "day",
            By::Destination => "destination",
            By::Service => "service",
            By::Plan => "plan",
            By::Account => "account",
        }
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Json,
    Html,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Html => "html",
        }
    }

    /// The media type of a rendered report (what the API answers with).
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
            Format::Html => "text/html; charset=utf-8",
        }
    }
}

/// A report error.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The request cannot be answered as asked (e.g. rejects by destination).
    #[error("{0}")]
    Usage(String),
    /// Stored data that does not read back (an invoice document).
    #[error("{0}")]
    Data(String),
}

/// Running sums of rated records (integers only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acc {
    pub records: u64,
    pub voice_records: u64,
    /// Voice seconds as recorded (`None`-like 0 with `voice_known = false` for invoice data).
    pub voice_seconds: u64,
    pub voice_billed_seconds: u64,
    pub sms: u64,
    pub data_bytes: u64,
    pub charge_micros: i64,
    /// False when the figures come from invoices (only billed units are known there).
    pub durations_unknown: bool,
}

impl Acc {
    fn add_service(&mut self, service: u8, t: &LineTotals) {
        self.records += t.count;
        self.charge_micros += t.charge_micros;
        match Service::from_index(service) {
            Some(Service::Voice) => {
                self.voice_records += t.count;
                self.voice_seconds += t.usage;
                self.voice_billed_seconds += t.billed;
            }
            Some(Service::Sms) => self.sms += t.count,
            Some(Service::Data) => self.data_bytes += t.usage,
            None => {}
        }
    }

    fn add(&mut self, o: &Acc) {
        self.records += o.records;
        self.voice_records += o.voice_records;
        self.voice_seconds += o.voice_seconds;
        self.voice_billed_seconds += o.voice_billed_seconds;
        self.sms += o.sms;
        self.data_bytes += o.data_bytes;
        self.charge_micros += o.charge_micros;
        self.durations_unknown |= o.durations_unknown;
    }

    fn day(d: &DayTotals) -> Acc {
        let mut a = Acc::default();
        for (s, t) in d.0.iter().enumerate() {
            a.add_service(s as u8, t);
        }
        a
    }

    /// Billed voice minutes, 2 decimals, half-up.
    pub fn billed_minutes(&self) -> Decimal {
        fixed(
            Decimal::from(self.voice_billed_seconds) / Decimal::from(60),
            2,
        )
    }

    /// Average recorded voice call duration in seconds, 1 decimal, half-up.
    pub fn avg_call_seconds(&self) -> Option<Decimal> {
        if self.voice_records == 0 || self.durations_unknown {
            return None;
        }
        Some(fixed(
            Decimal::from(self.voice_seconds) / Decimal::from(self.voice_records),
            1,
        ))
    }

    fn figures(&self) -> Figures {
        Figures {
            records: self.records,
            voice_records: self.voice_records,
            billed_minutes: self.billed_minutes().to_string(),
            avg_call_seconds: self.avg_call_seconds().map(|d| d.to_string()),
            sms: self.sms,
            data_bytes: self.data_bytes,
            revenue: Micros(self.charge_micros),
        }
    }
}

/// Printed figures of a row or a total.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct Figures {
    /// Rated records.
    pub records: u64,
    /// Rated voice calls.
    pub voice_records: u64,
    /// Billed voice minutes (after increments), 2 decimals, half-up.
    #[schema(example = "2.50")]
    pub billed_minutes: String,
    /// Recorded voice seconds per call, 1 decimal, half-up; null when there are no
    /// calls or only billed units are known (invoice data).
    #[schema(example = "60.0")]
    pub avg_call_seconds: Option<String>,
    /// Rated SMS.
    pub sms: u64,
    /// Recorded data volume in bytes.
    pub data_bytes: u64,
    /// Rated usage charges, exact (6 decimals).
    #[schema(value_type = String, example = "3.000000")]
    pub revenue: Micros,
}

/// One report row.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Row {
    /// The group: a local date, destination, service, plan or account id.
    pub key: String,
    #[serde(flatten)]
    pub figures: Figures,
    #[serde(skip)]
    acc: Acc,
}

/// Month-on-month change in percent (1 decimal, half-up); null when the previous
/// period is zero.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Change {
    #[schema(example = "300.0")]
    pub records_pct: Option<String>,
    pub billed_minutes_pct: Option<String>,
    pub revenue_pct: Option<String>,
}

/// What a closed period invoiced (amounts in cents, as on the invoices).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Invoiced {
    pub invoices: usize,
    /// Subscription (monthly fee) lines.
    pub subscriptions: String,
    pub net_total: String,
    pub vat_total: String,
    pub total: String,
    /// Records of earlier months billed by this close.
    pub late_records: u64,
}

/// A usage or revenue report.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageReport {
    /// `usage` (rows sorted by records) or `revenue` (rows sorted by revenue).
    #[schema(value_type = String, example = "usage")]
    pub report: &'static str,
    /// `YYYY-MM`.
    pub period: String,
    /// The month compared with.
    pub previous_period: String,
    /// ISO 4217 currency of the amounts.
    pub currency: String,
    /// Whether the period was closed (billed).
    pub closed: bool,
    /// Where rows grouped by destination, account or plan come from: `unbilled usage`
    /// (open period) or `invoices` (closed period).
    #[schema(value_type = String, example = "unbilled usage")]
    pub source: &'static str,
    /// The grouping of `rows`: day, destination, service, plan or account.
    #[schema(value_type = String, example = "service")]
    pub by: &'static str,
    /// Rated records dated in the period (local days of the tariff time zone).
    pub totals: Figures,
    /// The same figures for the previous period.
    pub previous: Figures,
    pub change: Change,
    /// Grouped rows (days in date order, otherwise by records or revenue, descending).
    pub rows: Vec<Row>,
    /// One row per local day with rated records, in date order.
    pub days: Vec<Row>,
    /// The top destinations by revenue.
    pub top_destinations: Vec<Row>,
    /// The top accounts by revenue.
    pub top_accounts: Vec<Row>,
    /// What the close invoiced; null while the period is open.
    pub invoiced: Option<Invoiced>,
}

/// A rejects report row: one reason, or one UTC day with `by=day`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct RejectRow {
    pub key: String,
    /// Files committed that day (0 in rows by reason).
    pub files: u64,
    /// Their lines (0 in rows by reason).
    pub lines: u64,
    pub rejected: u64,
}

/// A rejects report over the files committed in a month (UTC).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RejectsReport {
    /// Always `rejects`.
    #[schema(value_type = String, example = "rejects")]
    pub report: &'static str,
    pub period: String,
    pub previous_period: String,
    /// `reason` or `day`.
    #[schema(value_type = String, example = "reason")]
    pub by: &'static str,
    pub files: u64,
    pub lines: u64,
    pub rated: u64,
    pub rejected: u64,
    /// rejected / lines in percent, 2 decimals.
    #[schema(example = "25.00")]
    pub reject_pct: String,
    /// Rejected records of the files committed in the previous month.
    pub previous_rejected: u64,
    /// Change of the rejected records in percent, 1 decimal; null when the previous
    /// month had none.
    pub change_pct: Option<String>,
    /// `[reason, rejected records]`, most frequent first.
    pub by_reason: Vec<(String, u64)>,
    pub rows: Vec<RejectRow>,
}

/// A built report of either shape.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
// One value per report request, moved once: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Report {
    Usage(UsageReport),
    Rejects(RejectsReport),
}

impl Report {
    /// The report as printed by `tollgate report` and answered by the API.
    pub fn render(&self, format: Format) -> String {
        match self {
            Report::Usage(r) => render_usage(r, format),
            Report::Rejects(r) => render_rejects(r, format),
        }
    }
}

/// What to report: the arguments of `tollgate report` and the query of
/// `GET /api/v1/reports/{kind}`.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    pub kind: Kind,
    pub period: Period,
    pub by: Option<By>,
    pub top: usize,
}

/// Builds a report: the one code path behind the CLI (database opened read-only) and
/// the API (the daemon's database). `currency` labels the amounts; `accounts` maps
/// accounts to plans for `by = plan`.
pub fn generate(
    ledger: &Ledger,
    currency: &str,
    accounts: Option<&Accounts>,
    req: &Request,
) -> Result<Report, ReportError> {
    Ok(match req.kind {
        Kind::Rejects => Report::Rejects(rejects_report(ledger, req.period, req.by)?),
        kind => Report::Usage(usage_report(
            ledger, accounts, currency, kind, req.period, req.by, req.top,
        )?),
    })
}

/// Rounds half-up (away from zero) to `dp` decimals and always prints `dp` decimals.
fn fixed(d: Decimal, dp: u32) -> Decimal {
    let mut r = d.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(dp);
    r
}

/// Period before `p`.
pub fn previous(p: Period) -> Period {
    if p.month == 1 {
        Period {
            year: p.year - 1,
            month: 12,
        }
    } else {
        Period {
            year: p.year,
            month: p.month - 1,
        }
    }
}

fn pct(cur: Decimal, prev: Decimal) -> Option<String> {
    if prev.is_zero() {
        return None;
    }
    Some(fixed((cur - prev) * Decimal::from(100) / prev, 1).to_string())
}

fn rows(map: BTreeMap<String, Acc>, kind: Kind) -> Vec<Row> {
    let mut v: Vec<Row> = map
        .into_iter()
        .map(|(key, acc)| Row {
            key,
            figures: acc.figures(),
            acc,
        })
        .collect();
    if kind == Kind::Revenue {
        v.sort_by(|a, b| {
            b.acc
                .charge_micros
                .cmp(&a.acc.charge_micros)
                .then(a.key.cmp(&b.key))
        });
    } else {
        v.sort_by(|a, b| b.acc.records.cmp(&a.acc.records).then(a.key.cmp(&b.key)));
    }
    v
}

fn top(map: &BTreeMap<String, Acc>, n: usize) -> Vec<Row> {
    let mut v = rows(map.clone(), Kind::Revenue);
    v.truncate(n);
    v
}

/// Builds a usage or revenue report for `period`.
pub fn usage_report(
    ledger: &Ledger,
    accounts: Option<&Accounts>,
    currency: &str,
    kind: Kind,
    period: Period,
    by: Option<By>,
    top_n: usize,
) -> Result<UsageReport, ReportError> {
    let p = period.to_string();
    let prev = previous(period).to_string();
    let close = ledger.close_record(&p)?;
    // Totals and days: the daily column family.
    let mut totals = Acc::default();
    let mut days = BTreeMap::new();
    let mut services: BTreeMap<String, Acc> = BTreeMap::new();
    for (date, d) in ledger.daily(&format!("{p}-"))? {
        let a = Acc::day(&d);
        totals.add(&a);
        days.insert(date, a);
        for (s, t) in d.0.iter().enumerate() {
            if t.count > 0 {
                let name = Service::from_index(s as u8).map_or("?", |s| s.name());
                services
                    .entry(name.to_owned())
                    .or_default()
                    .add_service(s as u8, t);
            }
        }
    }
    let mut prev_totals = Acc::default();
    for (_, d) in ledger.daily(&format!("{prev}-"))? {
        prev_totals.add(&Acc::day(&d));
    }
    // Destinations and accounts: unbilled usage while open, invoices once closed.
    let mut dests: BTreeMap<String, Acc> = BTreeMap::new();
    let mut accs: BTreeMap<String, Acc> = BTreeMap::new();
    let mut invoiced = None;
    let source;
    if let Some(rec) = &close {
        source = "invoices";
        let mut subs = 0i64;
        for number in &rec.invoices {
            let Some(json) = ledger.invoice(number)? else {
                continue;
            };
            let inv: Invoice = serde_json::from_slice(&json)
                .map_err(|e| ReportError::Data(format!("invoice {number} cannot be read: {e}")))?;
            for line in &inv.lines {
                match line {
                    Line::Usage {
                        service,
                        destination,
                        quantity,
                        usage,
                        amount,
                        ..
                    } => {
                        let s = Service::from_bytes(service.as_bytes()).map_or(0, |s| s as u8);
                        let cents = amount.0;
                        let t = LineTotals {
                            count: *quantity,
                            usage: *usage,
                            billed: *usage,
                            charge_micros: cents * 10_000,
                        };
                        let mut a = Acc {
                            durations_unknown: true,
                            ..Acc::default()
                        };
                        a.add_service(s, &t);
                        // Accounts with a subscription line only are not in the usage figures.
                        accs.entry(inv.account_id.clone()).or_default().add(&a);
                        dests.entry(destination.clone()).or_default().add(&a);
                    }
                    Line::Subscription { amount, .. } => {
                        subs += amount.0;
                    }
                    // Late-payment fees are not usage or subscription revenue.
                    Line::Fee { .. } => {}
                    // Allowances: the usage figures stay at full (rated) price; the
                    // discount is on the invoices (their net totals).
                    Line::Allowance { .. } => {}
                    // Credit notes are not in a close record; a credit line is no revenue.
                    Line::Credit { .. } => {}
                }
            }
        }
        invoiced = Some(Invoiced {
            invoices: rec.invoices.len(),
            subscriptions: crate::rate::money::format_cents(subs),
            net_total: rec.net_total.to_string(),
            vat_total: rec.vat_total.to_string(),
            total: rec.total.to_string(),
            late_records: rec.late_records,
        });
    } else {
        source = "unbilled usage";
        ledger.for_each_usage_of_month(&p, |account, lines| {
            let acc_entry = accs.entry(account.to_owned()).or_default();
            for ((s, dest, _band), t) in &lines.0 {
                acc_entry.add_service(*s, t);
                dests.entry(dest.clone()).or_default().add_service(*s, t);
            }
        })?;
    }
    let by_rows = match by {
        None | Some(By::Service) => rows(services, kind),
        Some(By::Day) => {
            let mut v = rows(days.clone(), kind);
            v.sort_by(|a, b| a.key.cmp(&b.key));
            v
        }
        Some(By::Destination) => rows(dests.clone(), kind),
        Some(By::Account) => rows(accs.clone(), kind),
        Some(By::Plan) => {
            let Some(list) = accounts else {
                return Err(ReportError::Usage(
                    "grouping by plan needs the accounts (accounts_file in the config)".into(),
                ));
            };
            let mut plans: BTreeMap<String, Acc> = BTreeMap::new();
            for (id, a) in &accs {
                let plan = list
                    .get(id)
                    .map_or("(unknown account)", |x| x.plan.as_str());
                plans.entry(plan.to_owned()).or_default().add(a);
            }
            rows(plans, kind)
        }
    };
    let mut day_rows = rows(days, kind);
    day_rows.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(UsageReport {
        report: if kind == Kind::Revenue {
            "revenue"
        } else {
            "usage"
        },
        period: p,
        previous_period: prev,
        currency: currency.to_owned(),
        closed: close.is_some(),
        source,
        by: by.map_or("service", By::name),
        change: Change {
            records_pct: pct(
                Decimal::from(totals.records),
                Decimal::from(prev_totals.records),
            ),
            billed_minutes_pct: pct(totals.billed_minutes(), prev_totals.billed_minutes()),
            revenue_pct: pct(
                Decimal::from(totals.charge_micros),
                Decimal::from(prev_totals.charge_micros),
            ),
        },
        totals: totals.figures(),
        previous: prev_totals.figures(),
        rows: by_rows,
        days: day_rows,
        top_destinations: top(&dests, top_n),
        top_accounts: top(&accs, top_n),
        invoiced,
    })
}

/// Builds a rejects report: files committed in the period (UTC), by reason or by day.
pub fn rejects_report(
    ledger: &Ledger,
    period: Period,
    by: Option<By>,
) -> Result<RejectsReport, ReportError> {
    if let Some(b) = by.filter(|b| *b != By::Day) {
        return Err(ReportError::Usage(format!(
            "rejects are counted per file and reason: grouping by {} is not available (only by day; without a grouping the rows are reasons)",
            b.name()
        )));
    }
    let p = period.to_string();
    let prev = previous(period).to_string();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut days: BTreeMap<String, RejectRow> = BTreeMap::new();
    let (mut files, mut lines, mut rated, mut prev_rejected) = (0u64, 0u64, 0u64, 0u64);
    for cp in ledger.files()? {
        let rejected: u64 = cp.rejected.values().sum();
        if cp.committed_at.starts_with(&prev) {
            prev_rejected += rejected;
        }
        if !cp.committed_at.starts_with(&p) {
            continue;
        }
        files += 1;
        lines += cp.lines;
        rated += cp.rated;
        for (r, n) in &cp.rejected {
            *reasons.entry(r.clone()).or_default() += n;
        }
        let day = cp.committed_at.get(..10).unwrap_or("").to_owned();
        let e = days.entry(day.clone()).or_insert_with(|| RejectRow {
            key: day,
            files: 0,
            lines: 0,
            rejected: 0,
        });
        e.files += 1;
        e.lines += cp.lines;
        e.rejected += rejected;
    }
    let rejected = lines - rated;
    let mut by_reason: Vec<(String, u64)> = reasons.into_iter().collect();
    by_reason.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let rows = match by {
        Some(By::Day) => days.into_values().collect(),
        _ => by_reason
            .iter()
            .map(|(r, n)| RejectRow {
                key: r.clone(),
                files: 0,
                lines: 0,
                rejected: *n,
            })
            .collect(),
    };
    let reject_pct = if lines == 0 {
        "0.00".to_owned()
    } else {
        fixed(
            Decimal::from(rejected) * Decimal::from(100) / Decimal::from(lines),
            2,
        )
        .to_string()
    };
    Ok(RejectsReport {
        report: "rejects",
        period: p,
        previous_period: prev,
        by: if by.is_some() { "day" } else { "reason" },
        files,
        lines,
        rated,
        rejected,
        reject_pct,
        previous_rejected: prev_rejected,
        change_pct: pct(Decimal::from(rejected), Decimal::from(prev_rejected)),
        by_reason,
        rows,
    })
}

// ---------------------------------------------------------------- rendering

fn csv_out(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).expect("write to memory");
    for r in rows {
        w.write_record(&r).expect("write to memory");
    }
    String::from_utf8(w.into_inner().expect("flush to memory")).expect("utf-8")
}

fn figure_cells(key: &str, f: &Figures) -> Vec<String> {
    vec![
        key.to_owned(),
        f.records.to_string(),
        f.voice_records.to_string(),
        f.billed_minutes.clone(),
        f.avg_call_seconds.clone().unwrap_or_default(),
        f.sms.to_string(),
        f.data_bytes.to_string(),
        f.revenue.to_string(),
    ]
}

/// Renders a usage/revenue report.
pub fn render_usage(r: &UsageReport, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(r).expect("report serializes") + "\n",
        Format::Csv => csv_out(
            &[
                r.by,
                "records",
                "voice_records",
                "billed_minutes",
                "avg_call_seconds",
                "sms",
                "data_bytes",
                "revenue",
            ],
            r.rows
                .iter()
                .map(|row| figure_cells(&row.key, &row.figures))
                .chain(std::iter::once(figure_cells("total", &r.totals))),
        ),
        Format::Html => html_usage(r),
    }
}

/// Renders a rejects report.
pub fn render_rejects(r: &RejectsReport, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(r).expect("report serializes") + "\n",
        Format::Csv => {
            if r.by == "day" {
                csv_out(
                    &["day", "files", "lines", "rejected"],
                    r.rows.iter().map(|x| {
                        vec![
                            x.key.clone(),
                            x.files.to_string(),
                            x.lines.to_string(),
                            x.rejected.to_string(),
                        ]
                    }),
                )
            } else {
                csv_out(
                    &["reason", "rejected"],
                    r.rows
                        .iter()
                        .map(|x| vec![x.key.clone(), x.rejected.to_string()])
                        .chain(std::iter::once(vec![
                            "total".into(),
                            r.rejected.to_string(),
                        ])),
                )
            }
        }
        Format::Html => html_rejects(r),
    }
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Cents, rounded half-up, with thousands separators (`1234567` micros → `1.23`).
fn money(micros: i64) -> String {
    let c = micros_to_cents(micros as i128);
    let s = crate::rate::money::format_cents(c);
    group_thousands(&s)
}

fn group_thousands(s: &str) -> String {
    let (sign, rest) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (int, frac) = rest
        .split_once('.')
        .map_or((rest, None), |(a, b)| (a, Some(b)));
    let mut out = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

/// A vertical bar chart (one bar per label) as inline SVG.
pub fn svg_columns(title: &str, items: &[(String, f64, String)], color: &str) -> String {
    let w = 860.0;
    let h = 260.0;
    let (left, bottom, top) = (60.0, 40.0, 30.0);
    let max = items.iter().map(|i| i.1).fold(0.0f64, f64::max).max(1e-9);
    let n = items.len().max(1) as f64;
    let bw = (w - left - 10.0) / n;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
    let _ = write!(
        s,
        r##"<text x="{left}" y="18" font-size="14" font-weight="bold" fill="#223">{}</text>"##,
        esc(title)
    );
    for k in 0..=4 {
        let y = top + (h - top - bottom) * (1.0 - k as f64 / 4.0);
        let v = max * k as f64 / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{w}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#555">{}</text>"##,
            left - 4.0,
            y + 3.0,
            compact(v)
        );
    }
    for (i, (label, v, shown)) in items.iter().enumerate() {
        let bh = (h - top - bottom) * v / max;
        let x = left + i as f64 * bw + bw * 0.1;
        let y = h - bottom - bh;
        let _ = write!(
            s,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{bh:.1}" fill="{color}"><title>{}: {}</title></rect>"#,
            bw * 0.8,
            esc(label),
            esc(shown)
        );
        if items.len() <= 16 || i % 2 == 0 {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle" fill="#333">{}</text>"##,
                x + bw * 0.4,
                h - bottom + 14.0,
                esc(label)
            );
        }
    }
    s.push_str("</svg>");
    s
}

/// A horizontal bar chart (top-N lists) as inline SVG.
pub fn svg_bars(title: &str, items: &[(String, f64, String)], color: &str) -> String {
    let w = 860.0;
    let row = 24.0;
    let h = 34.0 + row * items.len().max(1) as f64;
    let label_w = 240.0;
    let max = items.iter().map(|i| i.1).fold(0.0f64, f64::max).max(1e-9);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="100%" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = esc(title)
    );
    let _ = write!(
        s,
        r##"<text x="0" y="18" font-size="14" font-weight="bold" fill="#223">{}</text>"##,
        esc(title)
    );
    for (i, (label, v, shown)) in items.iter().enumerate() {
        let y = 30.0 + i as f64 * row;
        let bw = (w - label_w - 130.0) * v / max;
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end" fill="#333">{}</text><rect x="{label_w}" y="{y:.1}" width="{bw:.1}" height="{:.1}" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="12" fill="#333">{}</text>"##,
            label_w - 6.0,
            y + 15.0,
            esc(label),
            row - 6.0,
            label_w + bw + 6.0,
            y + 15.0,
            esc(shown)
        );
    }
    s.push_str("</svg>");
    s
}

fn compact(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:24px auto;max-width:920px;color:#223}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px}\
.kpis{display:flex;flex-wrap:wrap;gap:12px}.kpi{border:1px solid #ccd;border-radius:6px;padding:10px 14px;min-width:150px}\
.kpi b{display:block;font-size:20px}.kpi small{color:#667}.up{color:#187a3a}.down{color:#b3261e}\
table{border-collapse:collapse;width:100%;font-size:13px}td,th{border-bottom:1px solid #e3e3ea;padding:4px 6px;text-align:right}\
td:first-child,th:first-child{text-align:left}.note{color:#667;font-size:12px}";

fn change_html(p: &Option<String>) -> String {
    match p {
        None => "<small>no previous figure</small>".into(),
        Some(v) => {
            let cls = if v.starts_with('-') { "down" } else { "up" };
            let sign = if v.starts_with('-') { "" } else { "+" };
            format!("<small class=\"{cls}\">{sign}{v} % vs previous month</small>")
        }
    }
}

fn html_usage(r: &UsageReport) -> String {
    let t = &r.totals;
    let revenue_chart = r.report == "revenue";
    let mut s = String::new();
    let title = format!(
        "{} report {}",
        if revenue_chart { "Revenue" } else { "Usage" },
        r.period
    );
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body><h1>{}</h1>",
        esc(&title),
        esc(&title)
    );
    let _ = write!(
        s,
        "<p class=\"note\">Period {} ({}), compared with {}. Currency {}. Amounts rounded to cents for display.</p>",
        esc(&r.period),
        if r.closed { "closed" } else { "open" },
        esc(&r.previous_period),
        esc(&r.currency)
    );
    let avg = t
        .avg_call_seconds
        .clone()
        .map_or("–".to_owned(), |a| format!("{a} s"));
    let _ = write!(
        s,
        "<div class=\"kpis\">\
<div class=\"kpi\" id=\"kpi-revenue\">Rated revenue<b>{} {}</b>{}</div>\
<div class=\"kpi\" id=\"kpi-records\">Records<b>{}</b>{}</div>\
<div class=\"kpi\" id=\"kpi-minutes\">Billed minutes<b>{}</b>{}</div>\
<div class=\"kpi\" id=\"kpi-avg\">Average call<b>{}</b><small>{} calls</small></div>\
<div class=\"kpi\">SMS / data<b>{} / {}</b><small>messages / MB</small></div></div>",
        esc(&r.currency),
        money(t.revenue_micros()),
        change_html(&r.change.revenue_pct),
        group_thousands(&t.records.to_string()),
        change_html(&r.change.records_pct),
        group_thousands(&t.billed_minutes),
        change_html(&r.change.billed_minutes_pct),
        avg,
        group_thousands(&t.voice_records.to_string()),
        group_thousands(&t.sms.to_string()),
        group_thousands(&format!("{:.1}", t.data_bytes as f64 / 1e6)),
    );
    if let Some(i) = &r.invoiced {
        let _ = write!(
            s,
            "<p>Invoiced at close: {} invoices, subscriptions {}, net {} + VAT {} = <b>{}</b> {} ({} late records).</p>",
            i.invoices,
            esc(&i.subscriptions),
            esc(&i.net_total),
            esc(&i.vat_total),
            esc(&i.total),
            esc(&r.currency),
            i.late_records
        );
    }
    // Days chart.
    let day_items: Vec<(String, f64, String)> = r
        .days
        .iter()
        .map(|d| {
            let label = d.key.get(8..).unwrap_or(&d.key).to_owned();
            if revenue_chart {
                (
                    label,
                    d.acc.charge_micros as f64 / 1e6,
                    format!("{} {}", money(d.acc.charge_micros), r.currency),
                )
            } else {
                (
                    label,
                    d.acc.records as f64,
                    format!("{} records", d.acc.records),
                )
            }
        })
        .collect();
    s.push_str("<h2>Per day</h2>");
    s.push_str(&svg_columns(
        &format!(
            "{} per day, {}",
            if revenue_chart {
                "Rated revenue"
            } else {
                "Records"
            },
            r.period
        ),
        &day_items,
        "#3b6fb6",
    ));
    let bars = |rows: &[Row]| -> Vec<(String, f64, String)> {
        rows.iter()
            .map(|x| {
                (
                    x.key.clone(),
                    x.acc.charge_micros as f64 / 1e6,
                    format!("{} {}", money(x.acc.charge_micros), r.currency),
                )
            })
            .collect()
    };
    s.push_str("<h2>Top destinations</h2>");
    s.push_str(&svg_bars(
        &format!("Top {} destinations by revenue", r.top_destinations.len()),
        &bars(&r.top_destinations),
        "#d08a2e",
    ));
    s.push_str("<h2>Top accounts</h2>");
    s.push_str(&svg_bars(
        &format!("Top {} accounts by revenue", r.top_accounts.len()),
        &bars(&r.top_accounts),
        "#4f9a62",
    ));
    let _ = write!(
        s,
        "<h2>By {}</h2><table><tr><th>{}</th><th>records</th><th>billed minutes</th><th>avg call (s)</th><th>sms</th><th>data MB</th><th>revenue</th></tr>",
        r.by, r.by
    );
    for x in r
        .rows
        .iter()
        .chain(std::iter::once(&Row {
            key: "total".into(),
            figures: t.clone(),
            acc: Acc::default(),
        }))
        .take(501)
    {
        let f = &x.figures;
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td></tr>",
            esc(&x.key),
            group_thousands(&f.records.to_string()),
            group_thousands(&f.billed_minutes),
            f.avg_call_seconds.clone().unwrap_or_else(|| "–".into()),
            group_thousands(&f.sms.to_string()),
            f.data_bytes as f64 / 1e6,
            money(f.revenue_micros())
        );
    }
    s.push_str("</table>");
    if r.rows.len() > 500 {
        let _ = write!(
            s,
            "<p class=\"note\">First 500 of {} rows; use --format csv for all.</p>",
            r.rows.len()
        );
    }
    let _ = writeln!(
        s,
        "<p class=\"note\">Totals and days: rated records by local day (tariff time zone). Destinations and accounts: {}.</p></body></html>",
        r.source
    );
    s
}

impl Figures {
    fn revenue_micros(&self) -> i64 {
        self.revenue.0
    }
}

fn html_rejects(r: &RejectsReport) -> String {
    let mut s = String::new();
    let title = format!("Rejects report {}", r.period);
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{CSS}</style></head><body><h1>{t}</h1>",
        t = esc(&title)
    );
    let _ = write!(
        s,
        "<div class=\"kpis\"><div class=\"kpi\" id=\"kpi-rejected\">Rejected records<b>{}</b>{}</div><div class=\"kpi\">Reject ratio<b>{} %</b><small>of {} records</small></div><div class=\"kpi\">Files<b>{}</b><small>committed in {}</small></div></div>",
        group_thousands(&r.rejected.to_string()),
        change_html(&r.change_pct),
        r.reject_pct,
        group_thousands(&r.lines.to_string()),
        r.files,
        esc(&r.period)
    );
    let items: Vec<(String, f64, String)> = r
        .by_reason
        .iter()
        .map(|(k, n)| (k.clone(), *n as f64, n.to_string()))
        .collect();
    s.push_str(&svg_bars("Rejected records by reason", &items, "#b3261e"));
    if r.by == "day" {
        let items: Vec<(String, f64, String)> = r
            .rows
            .iter()
            .map(|d| {
                (
                    d.key.get(8..).unwrap_or(&d.key).to_owned(),
                    d.rejected as f64,
                    d.rejected.to_string(),
                )
            })
            .collect();
        s.push_str(&svg_columns("Rejected records per day", &items, "#b3261e"));
    }
    s.push_str("<table><tr><th>reason</th><th>rejected</th></tr>");
    for (k, n) in &r.by_reason {
        let _ = write!(s, "<tr><td>{}</td><td>{n}</td></tr>", esc(k));
    }
    s.push_str("</table><p class=\"note\">Files are counted in the month (UTC) they were committed.</p></body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_round_half_up() {
        let mut a = Acc::default();
        a.add_service(
            0,
            &LineTotals {
                count: 3,
                usage: 100,
                billed: 150,
                charge_micros: 1_234_567,
            },
        );
        assert_eq!(a.billed_minutes().to_string(), "2.50");
        // 100 / 3 = 33.333… → 33.3
        assert_eq!(a.avg_call_seconds().unwrap().to_string(), "33.3");
        assert_eq!(a.figures().revenue.to_string(), "1.234567");
        assert_eq!(money(1_234_567), "1.23");
        assert_eq!(money(1_235_000), "1.24");
        assert_eq!(group_thousands("1234567.89"), "1,234,567.89");
        assert_eq!(group_thousands("-123"), "-123");
        assert_eq!(pct(Decimal::from(110), Decimal::from(100)).unwrap(), "10.0");
        assert_eq!(pct(Decimal::from(1), Decimal::from(3)).unwrap(), "-66.7");
        assert_eq!(pct(Decimal::from(1), Decimal::ZERO), None);
        assert_eq!(
            previous(Period {
                year: 2026,
                month: 1
            })
            .to_string(),
            "2025-12"
        );
    }

    #[test]
    fn svg_is_escaped_and_closed() {
        let s = svg_bars("a<b", &[("x&y".into(), 2.0, "2".into())], "#000");
        assert!(s.contains("a&lt;b") && s.contains("x&amp;y") && s.ends_with("</svg>"));
    }
}
