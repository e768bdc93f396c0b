//! Tariff sources: the plans TOML and its CSV decks, parsed and validated.
//!
//! Errors name the file, the line and (for decks) the column. Nothing here is used
//! while rating: [`super::compile`] turns a [`Source`] into the rkyv table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::rate::money::{parse_cents, parse_fixed};
use crate::rate::service::Service;

/// A tariff source error, with position.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("{path}:{line}:{column}: column `{name}`: {message}")]
    Field {
        path: PathBuf,
        line: u64,
        column: usize,
        name: &'static str,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlans {
    timezone: String,
    national_prefix: String,
    currency: String,
    #[serde(default, rename = "band")]
    bands: Vec<RawBand>,
    #[serde(default, rename = "plan")]
    plans: Vec<RawPlan>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBand {
    name: String,
    #[serde(default)]
    dates: Vec<String>,
    #[serde(default)]
    days: Vec<String>,
    from: Option<String>,
    to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    id: String,
    monthly_fee: String,
    deck: PathBuf,
    fallback: Option<String>,
    #[serde(default, rename = "allowance")]
    allowances: Vec<toml::Spanned<RawAllowance>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllowance {
    name: toml::Spanned<String>,
    service: toml::Spanned<String>,
    destinations: Option<toml::Spanned<Vec<toml::Spanned<String>>>>,
    bands: Option<toml::Spanned<Vec<toml::Spanned<String>>>>,
    units: toml::Spanned<i64>,
}

/// A date condition of a band: every year on `month-day`, or once when `year` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateSpec {
    pub year: Option<i32>,
    pub month: u32,
    pub day: u32,
}

/// A named time window. All given conditions must hold for the band to be active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    pub name: String,
    /// Empty: any date.
    pub dates: Vec<DateSpec>,
    /// Bit `i` set: weekday `i` (Monday = 0) qualifies. `0x7f` when `days` is absent.
    pub days: u8,
    /// Local minutes since midnight, `from <= t < to`; wraps midnight when `from > to`.
    pub window: Option<(u16, u16)>,
}

/// A tariff plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub id: String,
    pub monthly_fee_cents: i64,
    pub deck: usize,
    pub fallback: Option<usize>,
    /// Included allowances, in priority order (the order written).
    pub allowances: Vec<Allowance>,
}

/// An allowance (bundle) of a plan: `units` per period of `service`, drawn by the
/// records a row of the plan's own deck priced with a matching destination and band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowance {
    pub name: String,
    pub service: Service,
    /// Deck destination names; `None` = every destination.
    pub destinations: Option<Vec<String>>,
    /// Band names (`any` included); `None` = every band.
    pub bands: Option<Vec<String>>,
    /// Seconds, messages or bytes per period (> 0).
    pub units: u64,
    /// 1-based line of its `[[plan.allowance]]` table in the plans file.
    pub line: u64,
}

impl Allowance {
    /// Whether a record of `service` priced by a row of `destination` and band `band`
    /// (a band name, or `any`) draws on this allowance.
    pub fn matches(&self, service: Service, destination: &str, band: &str) -> bool {
        self.service == service
            && self
                .destinations
                .as_ref()
                .is_none_or(|d| d.iter().any(|x| x == destination))
            && self
                .bands
                .as_ref()
                .is_none_or(|b| b.iter().any(|x| x == band))
    }
}

/// Most allowances a plan may have.
pub const MAX_ALLOWANCES: usize = 64;

/// One deck row, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub prefix: String,
    pub destination: String,
    pub service: Service,
    /// Index into [`Source::bands`], or `None` for `any`.
    pub band: Option<usize>,
    /// Price with 9 decimals.
    pub connect_fee_nanos: i64,
    /// Price per `per` units with 9 decimals.
    pub rate_nanos: i64,
    pub per: u64,
    pub first_increment: u64,
    pub next_increment: u64,
    /// Days since 1970-01-01 of the local date the row applies from.
    pub valid_from: Option<i32>,
    /// 1-based line in the deck file.
    pub line: u64,
}

/// A deck file and its rows.
#[derive(Debug, Clone)]
pub struct Deck {
    pub path: PathBuf,
    pub rows: Vec<Row>,
}

/// All tariff sources, validated.
#[derive(Debug, Clone)]
pub struct Source {
    pub plans_path: PathBuf,
    pub timezone: chrono_tz::Tz,
    pub national_prefix: String,
    pub currency: String,
    pub bands: Vec<Band>,
    pub plans: Vec<Plan>,
    pub decks: Vec<Deck>,
    /// SHA-256 over the plans file and every deck, in hex: the tariff version.
    pub version: String,
}

/// Most bands a tariff may define.
pub const MAX_BANDS: usize = 32;
/// Deepest fallback chain (plan → fallback → … ) searched.
pub const MAX_FALLBACK_DEPTH: usize = 3;

const DECK_COLUMNS: [&str; 10] = [
    "prefix",
    "destination",
    "service",
    "band",
    "connect_fee",
    "rate",
    "per",
    "first_increment",
    "next_increment",
    "valid_from",
];

fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

fn parse_date(s: &str) -> Option<(i32, u32, u32)> {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    use chrono::Datelike;
    (s.len() == 10).then(|| (d.year(), d.month(), d.day()))
}

impl Source {
    /// Reads and validates the plans file and all decks it names.
    pub fn load(plans_path: &Path) -> Result<Source, SourceError> {
        use sha2::Digest;
        let file_err = |path: &Path, message: String| SourceError::File {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(plans_path)
            .map_err(|e| file_err(plans_path, format!("cannot read: {e}")))?;
        let mut hasher = sha2::Sha256::new();
        hasher.update(b"tollgate-tariff-v1\0");
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
        let raw: RawPlans = toml::from_str(&text)
            .map_err(|e| file_err(plans_path, e.to_string().trim_end().replace('\n', " ")))?;
        let timezone: chrono_tz::Tz = raw.timezone.parse().map_err(|_| {
            file_err(
                plans_path,
                format!(
                    "key `timezone`: `{}` is not an IANA time zone",
                    raw.timezone
                ),
            )
        })?;
        if raw.national_prefix.is_empty()
            || !raw.national_prefix.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(file_err(
                plans_path,
                format!(
                    "key `national_prefix`: `{}` must be digits",
                    raw.national_prefix
                ),
            ));
        }
        if raw.currency.len() != 3 || !raw.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(file_err(
                plans_path,
                format!("key `currency`: `{}` is not an ISO 4217 code", raw.currency),
            ));
        }

        let mut bands = Vec::new();
        for (i, b) in raw.bands.iter().enumerate() {
            let key = |k: &str| format!("band {} (`{}`): key `{k}`", i + 1, b.name);
            if b.name.is_empty() || b.name == "any" {
                return Err(file_err(
                    plans_path,
                    format!("{}: `{}` is reserved or empty", key("name"), b.name),
                ));
            }
            if bands.iter().any(|x: &Band| x.name == b.name) {
                return Err(file_err(
                    plans_path,
                    format!("{}: defined twice", key("name")),
                ));
            }
            let mut dates = Vec::new();
            for d in &b.dates {
                let spec = if d.len() == 5 {
                    parse_date(&format!("2000-{d}")).map(|(_, month, day)| DateSpec {
                        year: None,
                        month,
                        day,
                    })
                } else {
                    parse_date(d).map(|(y, month, day)| DateSpec {
                        year: Some(y),
                        month,
                        day,
                    })
                };
                dates.push(spec.ok_or_else(|| {
                    file_err(
                        plans_path,
                        format!("{}: `{d}` is not MM-DD or YYYY-MM-DD", key("dates")),
                    )
                })?);
            }
            let mut days = if b.days.is_empty() { 0x7f } else { 0 };
            for d in &b.days {
                let i = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
                    .iter()
                    .position(|x| x.eq_ignore_ascii_case(d))
                    .ok_or_else(|| {
                        file_err(
                            plans_path,
                            format!("{}: `{d}` is not mon..sun", key("days")),
                        )
                    })?;
                days |= 1 << i;
            }
            let window = match (&b.from, &b.to) {
                (None, None) => None,
                (Some(f), Some(t)) => {
                    let f = parse_hhmm(f).ok_or_else(|| {
                        file_err(plans_path, format!("{}: `{f}` is not HH:MM", key("from")))
                    })?;
                    let t = parse_hhmm(t).ok_or_else(|| {
                        file_err(plans_path, format!("{}: `{t}` is not HH:MM", key("to")))
                    })?;
                    if f == t {
                        return Err(file_err(
                            plans_path,
                            format!("{}: equals `from`", key("to")),
                        ));
                    }
                    Some((f, t))
                }
                _ => {
                    return Err(file_err(
                        plans_path,
                        format!("band {} (`{}`): `from` and `to` go together", i + 1, b.name),
                    ))
                }
            };
            bands.push(Band {
                name: b.name.clone(),
                dates,
                days,
                window,
            });
        }
        if bands.len() > MAX_BANDS {
            return Err(file_err(plans_path, format!("more than {MAX_BANDS} bands")));
        }

        if raw.plans.is_empty() {
            return Err(file_err(plans_path, "no [[plan]] defined".into()));
        }
        let base = plans_path.parent().unwrap_or(Path::new("."));
        let mut plans = Vec::new();
        let mut decks: Vec<Deck> = Vec::new();
        let mut deck_index: HashMap<PathBuf, usize> = HashMap::new();
        let plan_ids: HashMap<&str, usize> = raw
            .plans
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), i))
            .collect();
        for (i, p) in raw.plans.iter().enumerate() {
            let key = |k: &str| format!("plan `{}`: key `{k}`", p.id);
            if p.id.is_empty() || p.id.contains(|c: char| c.is_control() || c == ',') {
                return Err(file_err(
                    plans_path,
                    format!("{}: `{}` is not a usable id", key("id"), p.id),
                ));
            }
            if plan_ids[p.id.as_str()] != i {
                return Err(file_err(
                    plans_path,
                    format!("{}: `{}` defined twice", key("id"), p.id),
                ));
            }
            let fee = parse_cents(&p.monthly_fee)
                .map_err(|m| file_err(plans_path, format!("{}: {m}", key("monthly_fee"))))?;
            if fee < 0 {
                return Err(file_err(
                    plans_path,
                    format!("{}: must not be negative", key("monthly_fee")),
                ));
            }
            let fallback = match &p.fallback {
                None => None,
                Some(f) => Some(*plan_ids.get(f.as_str()).ok_or_else(|| {
                    file_err(plans_path, format!("{}: no plan `{f}`", key("fallback")))
                })?),
            };
            let deck_path = base.join(&p.deck);
            let deck = match deck_index.get(&deck_path) {
                Some(&d) => d,
                None => {
                    let bytes = std::fs::read(&deck_path).map_err(|e| {
                        file_err(&deck_path, format!("cannot read (plan `{}`): {e}", p.id))
                    })?;
                    hasher.update(p.deck.to_string_lossy().as_bytes());
                    hasher.update((bytes.len() as u64).to_le_bytes());
                    hasher.update(&bytes);
                    let rows = parse_deck(&deck_path, &bytes, &bands)?;
                    decks.push(Deck {
                        path: deck_path.clone(),
                        rows,
                    });
                    deck_index.insert(deck_path, decks.len() - 1);
                    decks.len() - 1
                }
            };
            let allowances = parse_allowances(plans_path, &text, p, &decks[deck], &bands)?;
            plans.push(Plan {
                id: p.id.clone(),
                monthly_fee_cents: fee,
                deck,
                fallback,
                allowances,
            });
        }
        // Fallback chains: no cycles, at most MAX_FALLBACK_DEPTH hops.
        for (i, p) in plans.iter().enumerate() {
            let mut seen = vec![i];
            let mut cur = p.fallback;
            while let Some(f) = cur {
                if seen.contains(&f) {
                    return Err(file_err(
                        plans_path,
                        format!(
                            "plan `{}`: key `fallback`: the chain loops back to `{}`",
                            p.id, plans[f].id
                        ),
                    ));
                }
                seen.push(f);
                if seen.len() > MAX_FALLBACK_DEPTH + 1 {
                    return Err(file_err(
                        plans_path,
                        format!(
                            "plan `{}`: key `fallback`: chain deeper than {MAX_FALLBACK_DEPTH}",
                            p.id
                        ),
                    ));
                }
                cur = plans[f].fallback;
            }
        }
        let version = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        Ok(Source {
            plans_path: plans_path.to_owned(),
            timezone,
            national_prefix: raw.national_prefix,
            currency: raw.currency,
            bands,
            plans,
            decks,
            version,
        })
    }
}

/// 1-based line of a byte offset in `text`.
fn line_of(text: &str, offset: usize) -> u64 {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64
        + 1
}

/// Validates a plan's `[[plan.allowance]]` tables against its deck: errors name the
/// plans file and the line of the offending value.
fn parse_allowances(
    path: &Path,
    text: &str,
    plan: &RawPlan,
    deck: &Deck,
    bands: &[Band],
) -> Result<Vec<Allowance>, SourceError> {
    let err = |offset: usize, message: String| SourceError::Line {
        path: path.to_owned(),
        line: line_of(text, offset),
        message: format!("plan `{}`: {message}", plan.id),
    };
    if plan.allowances.len() > MAX_ALLOWANCES {
        return Err(err(
            plan.allowances[MAX_ALLOWANCES].span().start,
            format!("more than {MAX_ALLOWANCES} allowances"),
        ));
    }
    let mut out = Vec::new();
    for a in &plan.allowances {
        let line = line_of(text, a.span().start);
        let a = a.get_ref();
        let name = a.name.get_ref().trim();
        if name.is_empty() || name.contains(|c: char| c.is_control()) {
            return Err(err(
                a.name.span().start,
                "allowance key `name`: must not be empty".into(),
            ));
        }
        if out.iter().any(|x: &Allowance| x.name == name) {
            return Err(err(
                a.name.span().start,
                format!("allowance key `name`: `{name}` defined twice"),
            ));
        }
        let service = Service::from_bytes(a.service.get_ref().as_bytes()).ok_or_else(|| {
            err(
                a.service.span().start,
                format!(
                    "allowance `{name}`: key `service`: `{}` is not voice, sms or data",
                    a.service.get_ref()
                ),
            )
        })?;
        let list = |key: &str,
                    l: &Option<toml::Spanned<Vec<toml::Spanned<String>>>>,
                    known: &dyn Fn(&str) -> bool|
         -> Result<Option<Vec<String>>, SourceError> {
            let Some(l) = l else { return Ok(None) };
            if l.get_ref().is_empty() {
                return Err(err(
                    l.span().start,
                    format!(
                        "allowance `{name}`: key `{key}`: empty list (leave the key out for all)"
                    ),
                ));
            }
            let mut v = Vec::new();
            for x in l.get_ref() {
                if !known(x.get_ref()) {
                    return Err(err(
                        x.span().start,
                        format!(
                            "allowance `{name}`: key `{key}`: no {} row of deck {} has `{}`",
                            service.name(),
                            deck.path.display(),
                            x.get_ref()
                        ),
                    ));
                }
                v.push(x.get_ref().clone());
            }
            Ok(Some(v))
        };
        let destinations = list("destinations", &a.destinations, &|d| {
            deck.rows
                .iter()
                .any(|r| r.service == service && r.destination == d)
        })?;
        let band_name = |b: Option<usize>| b.map_or("any", |i| bands[i].name.as_str());
        let bands = list("bands", &a.bands, &|b| {
            deck.rows
                .iter()
                .any(|r| r.service == service && band_name(r.band) == b)
        })?;
        let units = *a.units.get_ref();
        if units <= 0 {
            return Err(err(
                a.units.span().start,
                format!("allowance `{name}`: key `units`: {units} must be greater than 0"),
            ));
        }
        out.push(Allowance {
            name: name.to_owned(),
            service,
            destinations,
            bands,
            units: units as u64,
            line,
        });
    }
    Ok(out)
}

/// Parses and validates one deck.
pub fn parse_deck(path: &Path, bytes: &[u8], bands: &[Band]) -> Result<Vec<Row>, SourceError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes);
    let line_err = |line: u64, message: String| SourceError::Line {
        path: path.to_owned(),
        line,
        message,
    };
    let header = rdr
        .byte_headers()
        .map_err(|e| line_err(1, format!("header: {e}")))?
        .clone();
    let mut pos = [usize::MAX; 10];
    for (i, h) in header.iter().enumerate() {
        let h = String::from_utf8_lossy(h);
        let h = h.trim();
        let c = DECK_COLUMNS.iter().position(|c| *c == h).ok_or_else(|| {
            line_err(
                1,
                format!("unknown column `{h}` (expected {})", DECK_COLUMNS.join(",")),
            )
        })?;
        if pos[c] != usize::MAX {
            return Err(line_err(1, format!("column `{h}` named twice")));
        }
        pos[c] = i;
    }
    if let Some(m) = (0..10).find(|&c| pos[c] == usize::MAX) {
        return Err(line_err(1, format!("missing column `{}`", DECK_COLUMNS[m])));
    }
    let mut rows = Vec::new();
    let mut seen: HashMap<(String, Service, Option<usize>, Option<i32>), u64> = HashMap::new();
    let mut rec = csv::ByteRecord::new();
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                return Err(line_err(line, format!("not valid CSV: {e}")));
            }
        }
        let line = rec.position().map_or(0, |p| p.line());
        let field = |c: usize| -> Result<&str, SourceError> {
            std::str::from_utf8(&rec[pos[c]])
                .map(str::trim)
                .map_err(|_| SourceError::Field {
                    path: path.to_owned(),
                    line,
                    column: pos[c] + 1,
                    name: DECK_COLUMNS[c],
                    message: "not UTF-8".into(),
                })
        };
        let bad = |c: usize, message: String| SourceError::Field {
            path: path.to_owned(),
            line,
            column: pos[c] + 1,
            name: DECK_COLUMNS[c],
            message,
        };
        let prefix = field(0)?;
        if !prefix.bytes().all(|b| b.is_ascii_digit())
            || prefix.len() > crate::rate::cdr::number::MAX_DIGITS
        {
            return Err(bad(
                0,
                format!("`{prefix}` must be digits (at most 32) or empty"),
            ));
        }
        let destination = field(1)?;
        if destination.is_empty() {
            return Err(bad(1, "must not be empty".into()));
        }
        let service = Service::from_bytes(field(2)?.as_bytes()).ok_or_else(|| {
            bad(
                2,
                format!("`{}` is not voice, sms or data", field(2).unwrap_or("")),
            )
        })?;
        let band_name = field(3)?;
        let band = if band_name == "any" {
            None
        } else {
            Some(
                bands
                    .iter()
                    .position(|b| b.name == band_name)
                    .ok_or_else(|| {
                        bad(
                            3,
                            format!("`{band_name}` is not a band of the plans file nor `any`"),
                        )
                    })?,
            )
        };
        let money = |c: usize| -> Result<i64, SourceError> {
            let v = parse_fixed(field(c)?, 9).map_err(|m| bad(c, m))?;
            if !(0..=1_000_000 * crate::rate::money::NANOS_PER_UNIT).contains(&v) {
                return Err(bad(c, "must be between 0 and 1000000".into()));
            }
            Ok(v)
        };
        let connect_fee_nanos = money(4)?;
        let rate_nanos = money(5)?;
        let int = |c: usize, min: u64| -> Result<u64, SourceError> {
            let s = field(c)?;
            let v: u64 = s
                .parse()
                .map_err(|_| bad(c, format!("`{s}` is not a whole number")))?;
            if v < min || v > 1_000_000_000_000 {
                return Err(bad(c, format!("{v} is out of range {min}..=1000000000000")));
            }
            Ok(v)
        };
        let per = int(6, 1)?;
        let first_increment = int(7, 0)?;
        let next_increment = int(8, 1)?;
        let vf = field(9)?;
        let valid_from = if vf.is_empty() {
            None
        } else {
            let (y, m, d) =
                parse_date(vf).ok_or_else(|| bad(9, format!("`{vf}` is not YYYY-MM-DD")))?;
            Some(crate::rate::cdr::time::days_from_civil(y as i64, m, d) as i32)
        };
        let key = (prefix.to_owned(), service, band, valid_from);
        if let Some(first) = seen.insert(key, line) {
            return Err(line_err(
                line,
                format!("same prefix, service, band and valid_from as line {first}"),
            ));
        }
        rows.push(Row {
            prefix: prefix.to_owned(),
            destination: destination.to_owned(),
            service,
            band,
            connect_fee_nanos,
            rate_nanos,
            per,
            first_increment,
            next_increment,
            valid_from,
            line,
        });
    }
    Ok(rows)
}
