//! Rerating a period against the current tariff and accounts (`tollgate rerate`,
//! `POST /api/v1/cycles/{period}/rerate`).
//!
//! The records are re-derived from the `done/` files, as the close derives its detail
//! ([`crate::billing::itemise`]): the same rater ([`Rater::rate_in`], the code of ingest),
//! the same duplicate rule (a record id counts at its first rated line of a file), each
//! file's own `rated_at` (so a `future_time` reject stays one) — but the tariff and the
//! accounts are the ones in service now, not the file's snapshot.
//!
//! **Which records.** A record of a file committed at sequence `s`, dated in month `m`,
//! of account `a`, belongs to
//! - the **close** of P (P closed at sequence S) when that close billed it:
//!   [`Window::bills`] with the close's window (`s <= S`, `m <= P`, not billed by an
//!   earlier close or a final invoice issued before the close);
//! - P's **unbilled** usage when `m = P`, no close of P or later saw it (`s <= S'` for a
//!   close of P' >= P) and no final invoice of `a` billed it (`s <= F`).
//!
//! Records that were rejected at ingest (e.g. `no_rate`) and rate now are counted like
//! any other: a carrier that adds a missing destination expects those calls billed. A
//! file committed before P began (`rated_at` more than two days before the first of P)
//! cannot hold a record dated in P that rates (it would be `future_time`); a file is
//! read when it holds rated records of a month in question or, committed since then,
//! rejected lines.
//!
//! **Open P**: the unbilled usage rows `(account, P)` are replaced (put, or deleted when
//! nothing is left) in one synced batch; late records of P (files committed after a close
//! of an earlier period) are among them and billed at the next close as usual.
//! **Closed P** (`correct`): for every invoice of P's close — or the reissue that replaced
//! it last — whose usage and subscription lines differ from the lines the close code
//! (`close::draft_account`) builds from the re-rated records now, a credit note
//! in full and a corrected invoice (`credit::credit_in`, as `invoice credit
//! --reissue`), the reason naming the tariff version; P's unbilled rows (late records of
//! P, committed after the close) are replaced in the same batch. Accounts on an allowance
//! plan (current tariff) have their re-rated records dated in P drawn again
//! ([`AccountDrawn::of`], the close's rule), and their allowance lines compared too.
//! Whenever unbilled rows are replaced, the snapshot that priced them is recorded in the
//! batch ([`RerateSnapshot`]), so later re-derivations reproduce them. An invoice with nothing
//! left to credit (cancelled by credit notes) and an account with re-rated records of P
//! but no invoice of P are listed as skipped. Running it again finds the reissues equal
//! and changes nothing.
//!
//! **Refused** when a file it needs is no longer in `done/` (retention, erasure) or was
//! rewritten by a privacy erasure (its other records would no longer be the ones billed),
//! naming the file. The daily totals (reports of rated traffic) are not changed.
//!
//! **Atomic**: the re-rating runs without the writer lock; under it, when a file was
//! committed, a period closed or a final invoice issued meanwhile, everything is
//! re-rated again; then every write (usage rows, documents, numbers, ledger entries,
//! credits records, annexes) is one synced WriteBatch ([`Ledger::issue`]). Files are
//! written afterwards from the pending marks, as for a credit note.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use chrono::NaiveDate;
use rustc_hash::FxHashMap;

use super::annex::DayUsage;
use super::credit::{credit_in, load_invoice, Credited, Reissue, Replacement};
use super::itemise::{AccountDrawn, AllowancePlans, RerateSnapshot, Window};
use super::model::{period_bounds, FinalRecord, Invoice, Line, Period};
use super::refused;
use crate::config::Config;
use crate::ingest::pipeline::Settings;
use crate::rate::accounts::{AccountIndex, Accounts};
use crate::rate::allowance::{Draw, RecordId};
use crate::rate::cdr::time::days_from_civil;
use crate::rate::money::{Cents, Micros};
use crate::rate::rating::{band_name, Rater};
use crate::rate::tariff::Tariff;
use crate::store::{Checkpoint, Ledger, LedgerError, LineId, LineSet, LineTotals};

/// What to rerate.
#[derive(Debug, Clone)]
pub struct Request {
    pub period: Period,
    /// Only these accounts (all when empty).
    pub accounts: Vec<String>,
    /// Compute and report, write nothing.
    pub dry_run: bool,
    /// A closed period: issue credit notes and corrected invoices.
    pub correct: bool,
    /// Issue date of the credit notes and corrected invoices.
    pub issue: NaiveDate,
}

/// Records and their summed charge (6 decimals).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub records: u64,
    pub charge: Micros,
}

impl Totals {
    fn of(lines: &LineSet) -> Totals {
        Totals {
            records: lines.0.values().map(|t| t.count).sum(),
            charge: Micros(lines.0.values().map(|t| t.charge_micros).sum()),
        }
    }
}

/// An account whose unbilled usage of the period changed.
#[derive(Debug, Clone)]
pub struct AccountChange {
    pub account_id: String,
    pub old: Totals,
    pub new: Totals,
}

/// An invoice corrected (or, on a dry run, to be corrected).
#[derive(Debug, Clone)]
pub struct Correction {
    pub account_id: String,
    /// The invoice credited: the close's, or the reissue that replaced it last.
    pub invoice: String,
    pub old_total: Cents,
    /// Numbers issued (absent on a dry run).
    pub credit_note: Option<String>,
    pub reissued: Option<String>,
    /// Total of the corrected invoice (zero when nothing is billed any more).
    pub new_total: Cents,
}

/// An account or invoice the rerate left alone, and why.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub account_id: String,
    pub invoice: Option<String>,
    pub reason: String,
}

/// What a rerate found and did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub period: String,
    pub closed: bool,
    pub tariff_version: String,
    pub dry_run: bool,
    /// Files re-rated, and the records of the period found in them.
    pub files: usize,
    pub records: u64,
    /// Accounts whose unbilled usage of the period changed (old and new).
    pub accounts: Vec<AccountChange>,
    /// Closed period: invoices corrected, and invoices left alone because unchanged.
    pub corrections: Vec<Correction>,
    pub unchanged: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// Document files written.
    pub files_written: Vec<PathBuf>,
}

/// Month index (`year * 12 + month - 1`) of a `YYYY-MM` label.
fn month_index(label: &str) -> Option<u32> {
    let p: Period = label.parse().ok()?;
    Some(p.year as u32 * 12 + p.month - 1)
}

/// What the ledger looked like when the re-rating started: if any of it moved before the
/// writer lock is taken, the re-rating is done again under the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    seq: u64,
    closes: Vec<(String, u64)>,
    finals: Vec<(String, u64)>,
}

/// Which records the rerate looks at (see the module documentation).
struct Scope {
    period: u32,
    /// The file commit sequence the re-rating covers.
    seq: u64,
    /// The window of P's close, when P is closed.
    close: Option<Window>,
    /// Every close: (month index, sequence).
    closes: Vec<(u32, u64)>,
    /// Every final invoice: account → sequence.
    finals: HashMap<String, u64>,
    /// Only these accounts (all when empty).
    only: BTreeSet<String>,
}

/// A record's part: billed by P's close, or P's unbilled usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Part {
    Close,
    Unbilled,
}

impl Scope {
    fn part(&self, file_seq: u64, month: u32, account: &str) -> Option<Part> {
        if file_seq > self.seq {
            return None;
        }
        if let Some(w) = &self.close {
            if w.bills(file_seq, month, w.finals.get(account).copied()) {
                return Some(Part::Close);
            }
        }
        let unbilled = month == self.period
            && !self
                .closes
                .iter()
                .any(|&(m, s)| m >= self.period && file_seq <= s)
            && self.finals.get(account).is_none_or(|&f| file_seq > f);
        unbilled.then_some(Part::Unbilled)
    }

    /// Whether a file may hold records of the scope.
    fn wants(&self, cp: &Checkpoint, first_of_period: i64) -> bool {
        if cp.seq > self.seq {
            return false;
        }
        let month_in = |m: u32| {
            self.close.as_ref().is_some_and(|w| w.open_month(cp.seq, m)) || m == self.period
        };
        cp.months
            .iter()
            .any(|m| month_index(m).is_some_and(month_in))
            || (cp.rejected.values().sum::<u64>() > 0
                && cp.rated_at >= first_of_period - 2 * 86_400)
    }
}

/// What the re-rating produced: per (part, account, month) the line totals, and per
/// account the records per day of P's chart (close part).
#[derive(Debug, Default)]
struct Rerated {
    usage: BTreeMap<(Part, String, u32), LineSet>,
    days: BTreeMap<String, Vec<(u64, i64)>>,
    /// Per account on an allowance plan: its records billed by P's close and dated in
    /// P that match an allowance (month index, record), drawn in [`apply`].
    draws: BTreeMap<String, Vec<(u32, Draw)>>,
    /// The allowance plans and line groups the draws refer to.
    groups: Option<(AllowancePlans, Vec<LineId>)>,
    /// The file commit sequence the re-rating covers.
    seq: u64,
    files: usize,
    records: u64,
}

/// The allowances of the current tariff's plans, resolved per row and account.
struct Allowances {
    plans: AllowancePlans,
    /// Per allowance plan, per row: the allowances the row matches.
    masks: Vec<Vec<u64>>,
    /// Per row: its invoice line (index into `groups`).
    group: Vec<u32>,
    groups: Vec<LineId>,
    /// Per account index: its plan's index in `plans`, `u32::MAX` without allowances.
    plan_of: Vec<u32>,
}

impl Allowances {
    fn of(current: &Current) -> Option<Allowances> {
        let plans = AllowancePlans::of(current.tariff)?;
        let (mut groups, mut ids) = (Vec::new(), HashMap::new());
        let (masks, group) = plans.rows(current.tariff, (&mut groups, &mut ids));
        let plan_of = (0..current.index.len() as u32)
            .map(|i| {
                current
                    .accounts
                    .get(current.index.id(i))
                    .and_then(|a| plans.plan(&a.plan))
                    .unwrap_or(u32::MAX)
            })
            .collect();
        Some(Allowances {
            plans,
            masks,
            group,
            groups,
            plan_of,
        })
    }
}

fn seen(ledger: &Ledger) -> Result<Seen, LedgerError> {
    let closes = ledger
        .closes()?
        .into_iter()
        .map(|c| (c.period, c.seq))
        .collect();
    let mut finals = Vec::new();
    for a in ledger.finals()? {
        let seq = match ledger.final_of(&a)? {
            Some(v) => serde_json::from_slice::<FinalRecord>(&v)
                .map_err(|e| LedgerError::Corrupt {
                    path: ledger.path().to_owned(),
                    key: format!("finals/{a}"),
                    message: e.to_string(),
                })?
                .seq
                .unwrap_or(u64::MAX),
            None => continue,
        };
        finals.push((a, seq));
    }
    Ok(Seen {
        seq: ledger.seq()?,
        closes,
        finals,
    })
}

/// The reference the rerate prices with: the current tariff, accounts and their index.
pub struct Current<'a> {
    pub tariff: &'a Tariff,
    pub accounts: &'a Accounts,
    pub index: &'a AccountIndex,
    /// The hash naming the accounts snapshot (`data_dir/accounts/<hash>.csv`).
    pub accounts_hash: &'a str,
}

/// Rerates `req.period` (see the module documentation).
pub fn rerate(
    cfg: &Config,
    ledger: &Ledger,
    current: &Current,
    req: &Request,
) -> Result<Outcome, LedgerError> {
    super::files::flush_pending(cfg, ledger)?;
    let p = req.period.to_string();
    let record = ledger.close_record(&p)?;
    if record.is_none() {
        if let Some(last) = ledger.last_closed()? {
            if p.as_str() < last.as_str() {
                return Err(refused(format!(
                    "period {p} was never closed: its usage was billed by the close of {last} (periods close forward only); rerate that period"
                )));
            }
        }
    }
    if record.is_some() && !req.correct {
        return Err(refused(format!(
            "period {p} is closed: its invoices are final; rerun with --correct to credit every invoice whose re-rated lines differ and issue a corrected one"
        )));
    }
    let version = current.tariff.version().to_owned();
    let before = seen(ledger)?;
    let prepared = derive(cfg, ledger, current, req, &before)?;
    let out = ledger.issue(|txn| {
        let now = seen(txn.ledger())?;
        let rerated = if now == before {
            prepared
        } else {
            derive(cfg, txn.ledger(), current, req, &now)?
        };
        apply(cfg, txn, current, req, &version, rerated)
    })?;
    let mut out = out;
    if !out.dry_run {
        out.files_written = super::files::flush_pending(cfg, ledger)?;
        metrics::counter!(crate::telemetry::CREDIT_NOTES).increment(
            out.corrections
                .iter()
                .filter(|c| c.credit_note.is_some())
                .count() as u64,
        );
        metrics::counter!(crate::telemetry::INVOICES).increment(
            out.corrections
                .iter()
                .filter(|c| c.reissued.is_some())
                .count() as u64,
        );
    }
    Ok(out)
}

/// Re-rates the files the scope needs; refuses when one of them is gone or rewritten.
fn derive(
    cfg: &Config,
    ledger: &Ledger,
    current: &Current,
    req: &Request,
    seen: &Seen,
) -> Result<Rerated, LedgerError> {
    let p = req.period.to_string();
    let period = month_index(&p).expect("a valid period");
    let close = match ledger.close_record(&p)? {
        Some(c) => Some(Window::of(ledger, &p, c.seq)?),
        None => None,
    };
    let scope = Scope {
        period,
        seq: seen.seq,
        close,
        closes: seen
            .closes
            .iter()
            .filter_map(|(p, s)| Some((month_index(p)?, *s)))
            .collect(),
        finals: seen.finals.iter().cloned().collect(),
        only: req.accounts.iter().cloned().collect(),
    };
    let (first, _) = period_bounds(req.period);
    let first_of_period = first
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp();
    let files: Vec<Checkpoint> = ledger
        .files()?
        .into_iter()
        .filter(|cp| scope.wants(cp, first_of_period))
        .collect();
    let done = cfg.spool_dir.join("done");
    for cp in &files {
        let rewritten = crate::billing::privacy::expected_hash(ledger, &cp.name, &cp.content_hash)
            != cp.content_hash;
        if rewritten {
            return Err(refused(format!(
                "file {} was rewritten by a privacy erasure: its records are no longer the ones billed, so period {p} cannot be rerated",
                cp.name
            )));
        }
        if !done.join(&cp.name).exists() {
            return Err(refused(format!(
                "file {} is no longer in done/ (erased by retention or an erasure request): period {p} cannot be rerated",
                cp.name
            )));
        }
    }
    // The lines each file had rejected at ingest as cross-file duplicates stay out.
    let excluded: Vec<Vec<u64>> = files
        .iter()
        .map(|cp| ledger.cross_duplicates(&cp.name))
        .collect::<Result<_, _>>()?;
    let settings = Settings {
        columns: cfg.columns.clone(),
        chunk_bytes: cfg.chunk_bytes,
        max_line_bytes: cfg.max_line_bytes,
        segment_bytes: crate::ingest::pipeline::SEGMENT_BYTES,
    };
    let first_day = {
        use chrono::Datelike;
        days_from_civil(first.year() as i64, first.month(), first.day()) as i32
    };
    let allowances = Allowances::of(current);
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let threads = cfg.workers.clamp(1, files.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(cp) = files.get(i) else { break };
                let r = rerate_file(
                    &done.join(&cp.name),
                    cp,
                    &excluded[i],
                    current,
                    &settings,
                    &scope,
                    first_day,
                    allowances.as_ref(),
                );
                results.lock().expect("results lock").push((i, r));
            });
        }
    });
    let mut results = results.into_inner().expect("results lock");
    results.sort_by_key(|r| r.0);
    let mut out = Rerated {
        files: files.len(),
        seq: scope.seq,
        ..Rerated::default()
    };
    // The draws, resolved in apply against the groups of the current tariff.
    out.groups = allowances.map(|a| (a.plans, a.groups));
    for (i, r) in results {
        let f = r.map_err(|e| refused(format!("file {}: {e}", files[i].name)))?;
        out.records += f.records;
        for (k, lines) in f.usage {
            let e = out.usage.entry(k).or_default();
            for (id, t) in lines.0 {
                e.0.entry(id).or_default().add(&t);
            }
        }
        for (a, d) in f.draws {
            out.draws.entry(a).or_default().extend(d);
        }
        for (a, d) in f.days {
            let e = out.days.entry(a).or_insert_with(|| vec![(0, 0); d.len()]);
            for (x, y) in e.iter_mut().zip(d) {
                x.0 += y.0;
                x.1 += y.1;
            }
        }
    }
    Ok(out)
}

/// Days of P's chart (31 at most).
const CHART_DAYS: usize = 31;

/// Re-rates one file with the current reference.
#[allow(clippy::too_many_arguments)]
fn rerate_file(
    path: &Path,
    cp: &Checkpoint,
    excluded: &[u64],
    current: &Current,
    settings: &Settings,
    scope: &Scope,
    first_day: i32,
    allowances: Option<&Allowances>,
) -> Result<Rerated, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if crate::fsutil::content_hash(&bytes) != cp.content_hash {
        return Err("the file in done/ differs from the committed content".into());
    }
    let mut out = Rerated::default();
    let Some((layout, body, first_line)) =
        crate::ingest::pipeline::file_layout(&bytes, settings).map_err(|e| e.to_string())?
    else {
        return Ok(out);
    };
    let tariff = current.tariff;
    let table = tariff.table();
    let mut rater = Rater::new(tariff, current.index, layout, cp.rated_at);
    // Per (part, account index, month, row, service): totals; line keys are resolved at the end.
    let mut sums: FxHashMap<(Part, u32, u32, u32, u8), LineTotals> = FxHashMap::default();
    let mut days: FxHashMap<u32, Vec<(u64, i64)>> = FxHashMap::default();
    let mut ids = super::itemise::FirstRated::default();
    let mut pos = body;
    let mut line_no = first_line;
    let mut excluded = excluded.iter().peekable();
    while pos < bytes.len() {
        let nl = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
        let start = pos;
        let mut line = &bytes[pos..nl];
        pos = nl + 1;
        let this = line_no;
        line_no += 1;
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.is_empty() || line.len() > settings.max_line_bytes {
            continue;
        }
        let Ok((r, id)) = rater.rate_in(&bytes, start, start + line.len()) else {
            continue;
        };
        // A record id counts once per file, at its first rated line (as at ingest).
        if !ids.first(&mut rater, &bytes, id, start, line) {
            continue;
        }
        // Rejected at ingest as a duplicate of an earlier file's record.
        if super::itemise::excluded_line(&mut excluded, this) {
            continue;
        }
        let account = current.index.id(r.account);
        if !scope.only.is_empty() && !scope.only.contains(account) {
            continue;
        }
        let Some(part) = scope.part(cp.seq, r.month, account) else {
            continue;
        };
        out.records += 1;
        sums.entry((part, r.account, r.month, r.row, r.service as u8))
            .or_default()
            .add(&LineTotals {
                count: 1,
                usage: r.usage,
                billed: r.billed,
                charge_micros: r.charge_micros,
            });
        // A record of P billed by P's close draws on its plan's allowances (rule 1:
        // records dated in P only; late records draw on nothing).
        if let Some(a) = allowances.filter(|_| part == Part::Close && r.month == scope.period) {
            let plan = a.plan_of[r.account as usize];
            if plan != u32::MAX && r.billed > 0 {
                let mask =
                    a.masks[plan as usize][r.row as usize] & a.plans.service_mask(plan, r.service);
                if mask != 0 {
                    let row = &table.rows[r.row as usize];
                    out.draws.entry(account.to_owned()).or_default().push((
                        r.month,
                        Draw {
                            start: r.start,
                            id: RecordId::new(&rater.record_id(line).unwrap_or_default()),
                            billed: r.billed,
                            charge_micros: r.charge_micros,
                            rate_nanos: row.rate_nanos.to_native(),
                            per: row.per.to_native(),
                            mask,
                            group: (a.group[r.row as usize] << 2) | r.service as u32,
                            tag: (cp.seq, this),
                        },
                    ));
                }
            }
        }
        if part == Part::Close {
            let d = days
                .entry(r.account)
                .or_insert_with(|| vec![(0, 0); CHART_DAYS]);
            if let Some(x) = usize::try_from(r.day - first_day)
                .ok()
                .and_then(|i| d.get_mut(i))
            {
                x.0 += 1;
                x.1 += r.charge_micros;
            }
        }
    }
    for ((part, account, month, row, service), t) in sums {
        let row = &table.rows[row as usize];
        let id: LineId = (
            service,
            table.destinations[row.destination.to_native() as usize]
                .as_str()
                .to_owned(),
            band_name(tariff, row.band).to_owned(),
        );
        out.usage
            .entry((part, current.index.id(account).to_owned(), month))
            .or_default()
            .0
            .entry(id)
            .or_default()
            .add(&t);
    }
    for (a, d) in days {
        out.days.insert(current.index.id(a).to_owned(), d);
    }
    Ok(out)
}

/// Under the writer lock: compares, and stages the writes (unless a dry run).
fn apply(
    cfg: &Config,
    txn: &mut crate::store::Txn,
    current: &Current,
    req: &Request,
    version: &str,
    rerated: Rerated,
) -> Result<Outcome, LedgerError> {
    let ledger = txn.ledger();
    let p = req.period.to_string();
    let period = month_index(&p).expect("a valid period");
    let only: BTreeSet<&str> = req.accounts.iter().map(String::as_str).collect();
    let mut out = Outcome {
        period: p.clone(),
        closed: false,
        tariff_version: version.to_owned(),
        dry_run: req.dry_run,
        files: rerated.files,
        records: rerated.records,
        accounts: Vec::new(),
        corrections: Vec::new(),
        unchanged: Vec::new(),
        skipped: Vec::new(),
        files_written: Vec::new(),
    };
    // 1. P's unbilled usage rows: old (in the ledger) against new (re-rated).
    let mut new_rows: BTreeMap<String, LineSet> = BTreeMap::new();
    for ((part, account, month), lines) in &rerated.usage {
        if *part == Part::Unbilled && *month == period {
            new_rows.insert(account.clone(), lines.clone());
        }
    }
    let mut old_rows: BTreeMap<String, LineSet> = BTreeMap::new();
    ledger.for_each_usage_of_month(&p, |a, lines| {
        if only.is_empty() || only.contains(a) {
            old_rows.insert(a.to_owned(), lines.clone());
        }
    })?;
    let names: BTreeSet<String> = old_rows.keys().chain(new_rows.keys()).cloned().collect();
    let empty = LineSet::default();
    for a in &names {
        let old = old_rows.get(a).unwrap_or(&empty);
        let new = new_rows.get(a).unwrap_or(&empty);
        if old == new {
            continue;
        }
        out.accounts.push(AccountChange {
            account_id: a.clone(),
            old: Totals::of(old),
            new: Totals::of(new),
        });
        if !req.dry_run {
            if new.0.is_empty() {
                txn.delete_usage(a, &p);
            } else {
                txn.put_usage(a, &p, new);
            }
        }
    }
    // The rows replaced are re-derived (by the next close, the usage API, a final
    // invoice) with the snapshot that priced them now, in the same batch.
    if !req.dry_run && !out.accounts.is_empty() {
        let mut list: Vec<RerateSnapshot> = match ledger.rerated(&p)? {
            Some(v) => serde_json::from_slice(&v).map_err(|e| LedgerError::Corrupt {
                path: ledger.path().to_owned(),
                key: format!("meta/rerated/{p}"),
                message: e.to_string(),
            })?,
            None => Vec::new(),
        };
        list.push(RerateSnapshot {
            period: p.clone(),
            tariff_version: version.to_owned(),
            accounts_hash: current.accounts_hash.to_owned(),
            seq: rerated.seq,
            accounts: req.accounts.clone(),
            month: period,
        });
        txn.put_rerated(
            &p,
            &serde_json::to_vec(&list).expect("rerate records serialize"),
        );
    }
    // 2. A closed period: its invoices against the lines the close code builds now.
    let Some(record) = ledger.close_record(&p)? else {
        return Ok(out);
    };
    out.closed = true;
    // Per account: re-rated lines billed by the close (every month up to P) and late
    // records (months before P).
    let mut billed: BTreeMap<String, (BTreeMap<LineId, LineTotals>, u64)> = BTreeMap::new();
    for ((part, account, month), lines) in rerated.usage {
        if part != Part::Close {
            continue;
        }
        let e = billed.entry(account).or_default();
        for (id, t) in lines.0 {
            if month < period {
                e.1 += t.count;
            }
            e.0.entry(id).or_default().add(&t);
        }
    }
    // The reissue that replaced each invoice, followed to the last one.
    let mut replaced_by: HashMap<String, String> = HashMap::new();
    for n in ledger.document_numbers()? {
        if let Some(inv) = super::files::stored_invoice(ledger, &n)? {
            if let Some(r) = &inv.replaces {
                replaced_by.insert(r.number.clone(), inv.number.clone());
            }
        }
    }
    let finals = ledger.finals()?;
    let (first, _) = period_bounds(req.period);
    let reason = format!("rerate of {p} against tariff {version}");
    let mut invoiced: BTreeSet<String> = BTreeSet::new();
    for number in &record.invoices {
        let orig = load_invoice(ledger, number)?;
        if orig.final_invoice || (!only.is_empty() && !only.contains(orig.account_id.as_str())) {
            continue;
        }
        invoiced.insert(orig.account_id.clone());
        let mut effective = number.clone();
        while let Some(n) = replaced_by.get(&effective) {
            effective = n.clone();
        }
        let inv = load_invoice(ledger, &effective)?;
        if nothing_left(ledger, &inv)? {
            out.skipped.push(Skipped {
                account_id: inv.account_id.clone(),
                invoice: Some(effective.clone()),
                reason: format!("invoice {effective} was credited in full without a reissue"),
            });
            continue;
        }
        let acc = current.accounts.get(&inv.account_id);
        // An allowance plan (in the tariff in service, like the monthly fee): the
        // re-rated records of P drawn by the close's rule, same order.
        let drawn = acc.and_then(|a| {
            let (plans, groups) = rerated.groups.as_ref()?;
            let i = plans.plan(&a.plan)?;
            Some(AccountDrawn::of(
                plans.list(i),
                1,
                rerated
                    .draws
                    .get(&inv.account_id)
                    .cloned()
                    .unwrap_or_default(),
                groups,
            ))
        });
        let (lines, late) = billed.remove(&inv.account_id).unwrap_or_default();
        let fee = super::close::monthly_fee(current.tariff, acc, finals.contains(&inv.account_id));
        let draft = if lines.is_empty() && fee == 0 {
            None
        } else {
            Some(super::close::draft_account(
                cfg,
                acc,
                &inv.account_id,
                &p,
                &lines,
                drawn.as_ref(),
                fee,
            )?)
        };
        let now_lines: Vec<&Line> = draft.as_ref().map_or(Vec::new(), |d| {
            d.lines.iter().filter(|l| billable(l)).collect()
        });
        let was_lines: Vec<&Line> = inv.lines.iter().filter(|l| billable(l)).collect();
        if now_lines == was_lines {
            out.unchanged.push(effective);
            continue;
        }
        let usage_by_day: Vec<DayUsage> = rerated
            .days
            .get(&inv.account_id)
            .map(|d| {
                d.iter()
                    .enumerate()
                    .filter(|(_, d)| d.0 > 0)
                    .map(|(i, d)| DayUsage {
                        date: (first + chrono::Duration::days(i as i64)).to_string(),
                        records: d.0,
                        charge: Micros(d.1),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if req.dry_run {
            let new_total = match draft {
                Some(d) => preview_total(d, &inv),
                None => Cents::ZERO,
            };
            out.corrections.push(Correction {
                account_id: inv.account_id.clone(),
                invoice: effective,
                old_total: inv.total,
                credit_note: None,
                reissued: None,
                new_total,
            });
            continue;
        }
        let reissue = draft.map(|d| {
            Reissue::Lines(Replacement {
                draft: d,
                late_records: late,
                usage_by_day,
            })
        });
        let (cn, re) = credit_in(
            txn,
            cfg,
            current.accounts,
            &effective,
            super::credit::CreditWhat::Full,
            &reason,
            reissue,
            req.issue,
        )?;
        out.corrections.push(Correction {
            account_id: inv.account_id.clone(),
            invoice: effective,
            old_total: inv.total,
            credit_note: Some(cn.number),
            new_total: re.as_ref().map_or(Cents::ZERO, |r| r.total),
            reissued: re.map(|r| r.number),
        });
    }
    for account in billed.keys() {
        if !invoiced.contains(account) {
            out.skipped.push(Skipped {
                account_id: account.clone(),
                invoice: None,
                reason: format!(
                    "re-rated records billed by the close of {p} but no invoice of {p} to correct"
                ),
            });
        }
    }
    Ok(out)
}

/// The lines a rerate compares: what the close builds (usage, allowances, subscription).
fn billable(l: &Line) -> bool {
    matches!(
        l,
        Line::Usage { .. } | Line::Allowance { .. } | Line::Subscription { .. }
    )
}

/// True when an invoice has nothing left to credit (credited in full already).
fn nothing_left(ledger: &Ledger, inv: &Invoice) -> Result<bool, LedgerError> {
    let Some(v) = ledger.credits(&inv.number)? else {
        return Ok(false);
    };
    let done: Credited = serde_json::from_slice(&v).map_err(|e| LedgerError::Corrupt {
        path: ledger.path().to_owned(),
        key: format!("credits/{}", inv.number),
        message: e.to_string(),
    })?;
    Ok(inv.lines.iter().enumerate().all(|(i, l)| {
        l.cents() <= 0 || done.lines.get(&(i + 1)).copied().unwrap_or(0) >= l.cents()
    }))
}

/// The total a dry run's corrected invoice would have (its fee lines as the reissue
/// would carry them are left out: a dry run shows the re-rated lines and VAT).
fn preview_total(d: super::draft::Draft, inv: &Invoice) -> Cents {
    let bounds = (
        NaiveDate::parse_from_str(&inv.period_start, "%Y-%m-%d").unwrap_or(inv.issue_date),
        NaiveDate::parse_from_str(&inv.period_end, "%Y-%m-%d").unwrap_or(inv.issue_date),
    );
    d.finish(
        String::new(),
        &inv.period,
        bounds,
        &inv.currency,
        inv.issue_date,
        0,
    )
    .total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(close: Option<(u32, u64)>, closes: Vec<(u32, u64)>) -> Scope {
        let oct = 2026 * 12 + 9;
        Scope {
            period: oct,
            seq: 20,
            close: close.map(|(p, s)| Window {
                period: p,
                seq: s,
                earlier: closes.iter().copied().filter(|c| c.0 < p).collect(),
                finals: HashMap::new(),
                chart_first: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
                chart_days: 31,
                allowances: None,
                allow_months: (1, 0),
                rerated: Vec::new(),
            }),
            closes,
            finals: HashMap::from([("F".to_string(), 7)]),
            only: BTreeSet::new(),
        }
    }

    #[test]
    fn parts_of_an_open_period() {
        let oct = 2026 * 12 + 9;
        let s = scope(None, vec![(oct - 1, 4)]);
        assert_eq!(s.part(5, oct, "A"), Some(Part::Unbilled));
        assert_eq!(s.part(3, oct, "A"), Some(Part::Unbilled)); // October usage before September's close
        assert_eq!(s.part(5, oct - 1, "A"), None); // a late September record: not P's
        assert_eq!(s.part(5, oct + 1, "A"), None);
        assert_eq!(s.part(21, oct, "A"), None); // committed after the re-rating started
        assert_eq!(s.part(7, oct, "F"), None); // billed by F's final invoice
        assert_eq!(s.part(8, oct, "F"), Some(Part::Unbilled));
    }

    #[test]
    fn parts_of_a_closed_period() {
        let oct = 2026 * 12 + 9;
        let s = scope(Some((oct, 10)), vec![(oct - 1, 4), (oct, 10)]);
        assert_eq!(s.part(5, oct, "A"), Some(Part::Close));
        assert_eq!(s.part(5, oct - 1, "A"), Some(Part::Close)); // late, billed with October
        assert_eq!(s.part(4, oct - 1, "A"), None); // billed by September
        assert_eq!(s.part(11, oct, "A"), Some(Part::Unbilled)); // late record of October
        assert_eq!(s.part(11, oct - 1, "A"), None);
        assert_eq!(month_index("2026-10"), Some(oct));
    }
}
