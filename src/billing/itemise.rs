//! Rated detail of a close, derived again by re-rating the files it bills: the itemised
//! annex of opted-in accounts and every account's usage per day (the PDF's chart).
//!
//! Nothing is stored per record while rating (the hot path stays as it is). A committed
//! file's rated records are a pure function of its bytes (kept in `spool_dir/done/`),
//! the tariff archive `data_dir/tariffs/<tariff_version>.rkyv`, the accounts snapshot
//! `data_dir/accounts/<accounts_hash>.csv` and `rated_at`, all named by its checkpoint.
//!
//! **Which records a close bills.** A close of period P records the file commit sequence
//! S it saw (under the writer lock, so files with `seq <= S` were committed before it).
//! It bills every rated record of a file with `seq <= S` dated (billing month, tariff
//! zone) in a month `m <= P`, except records an earlier close already billed (a close of
//! P' with sequence S' bills the records with `seq <= S'` and `m <= P'`) and records of an
//! account whose off-cycle final invoice, issued before this close at sequence F, billed
//! everything of that account with `seq <= F`. Within a file a repeated record id counts
//! once (the first line that rated), as in [`crate::ingest::pipeline`].
//!
//! **Verification.** Per account, the re-rated records must reproduce what the close
//! bills: record count and charge over all lines, and for itemised accounts count,
//! billed units and charge per invoice line key (service, destination, band). An account
//! that does not match (a `done/` file missing, erased or changed, a snapshot missing)
//! gets neither chart nor annex; its invoice says the annex is unavailable, and why.
//!
//! **Rounding.** Per-record charges are the rating charges (6 decimals, half-up, see
//! [`crate::rate::rating::charge_micros`]); an invoice line is `round_half_up(sum of its
//! records' charges, 2)`. The annex lists each record's 6-decimal charge and, per line,
//! the exact sum and the line amount, so the annex reproduces every usage line. Records
//! to numbers free to the caller ([`crate::config::Privacy::itemised_omit`]) are left out
//! of the list and shown per line as one count and sum, so the sums still add up.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::billing::annex::{
    display_number, hidden_digits, mask, Annex, AnnexAllowance, AnnexDraw, AnnexLine, AnnexRecord,
    DayUsage, Itemised,
};
use crate::config::Config;
use crate::ingest::pipeline::Settings;
use crate::rate::accounts::{AccountIndex, Accounts};
use crate::rate::allowance::{Draw, Drawn, RecordId};
use crate::rate::cdr::Column;
use crate::rate::money::{format_micros, micros_to_cents, Cents, Micros};
use crate::rate::rating::{band_name, Rater};
use crate::rate::service::Service;
use crate::rate::tariff::Tariff;
use crate::store::{Checkpoint, Ledger, LedgerError, LineId, LineTotals, UsageRow};

/// Month index (`year * 12 + month - 1`) of a `YYYY-MM` label.
fn month_index(label: &str) -> Option<u32> {
    let (y, m) = label.split_once('-')?;
    let y: u32 = y.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    (1..=12).contains(&m).then_some(y * 12 + m - 1)
}

/// The document being derived (a close, or an account's final invoice): its period,
/// sequence, what earlier documents billed, and the days its chart covers.
#[derive(Debug, Clone)]
pub struct Window {
    /// Month index of the period (`u32::MAX` for a final invoice: every month).
    pub period: u32,
    /// File commit sequence at the close.
    pub seq: u64,
    /// Earlier closes: (month index of the period, sequence).
    pub earlier: Vec<(u32, u64)>,
    /// Final invoices issued before this close: account → the sequence at that time
    /// (`u64::MAX` when a final record predates this bookkeeping).
    pub finals: HashMap<String, u64>,
    /// First local day of the usage-per-day chart, and how many days it covers.
    pub chart_first: chrono::NaiveDate,
    pub chart_days: u32,
    /// The plans' allowances (the tariff in service) and the months whose records draw
    /// on them (inclusive; empty when `.0 > .1`): a close's period, or for a final
    /// invoice every month after the last close up to its own.
    pub allowances: Option<Arc<AllowancePlans>>,
    pub allow_months: (u32, u32),
    /// Rerates of open periods' usage ([`RerateSnapshot`]), in the order they were
    /// made: the records they replaced are re-derived with their snapshot.
    pub rerated: Vec<RerateSnapshot>,
}

/// The snapshot a rerate priced a period's unbilled records with (`meta/rerated/<P>`):
/// records dated in `period`, of files committed at or before `seq`, of `accounts` (all
/// when empty), are re-derived with tariff `tariff_version` and accounts snapshot
/// `accounts_hash` instead of their file's own, so the close reproduces the rows the
/// rerate wrote (charts, annexes and allowances kept).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RerateSnapshot {
    pub period: String,
    pub tariff_version: String,
    pub accounts_hash: String,
    pub seq: u64,
    #[serde(default)]
    pub accounts: Vec<String>,
    /// Month index of `period` (set when read).
    #[serde(skip)]
    pub(crate) month: u32,
}

impl RerateSnapshot {
    /// The rerate snapshots of the ledger (periods in order, each period's in the order
    /// they were made) that may apply to a document billing months up to `period` (month index)
    /// after the closes `earlier`: a rerate whose records an earlier close of that
    /// month or a later one billed in full applies no more.
    fn within(
        ledger: &Ledger,
        period: u32,
        earlier: &[(u32, u64)],
    ) -> Result<Vec<RerateSnapshot>, LedgerError> {
        let mut out = Vec::new();
        for (label, v) in ledger.rerates()? {
            let list: Vec<RerateSnapshot> =
                serde_json::from_slice(&v).map_err(|e| LedgerError::Corrupt {
                    path: ledger.path().to_owned(),
                    key: format!("meta/rerated/{label}"),
                    message: e.to_string(),
                })?;
            for mut r in list {
                let Some(m) = month_index(&r.period) else {
                    continue;
                };
                r.month = m;
                if m <= period && !earlier.iter().any(|&(em, es)| em >= m && r.seq <= es) {
                    out.push(r);
                }
            }
        }
        Ok(out)
    }
}

impl Window {
    /// The rerate snapshot a record of `month`, `account`, in the file committed at
    /// `file_seq` is re-derived with: the last rerate that replaced it, if any.
    fn rerate_of(&self, file_seq: u64, month: u32, account: &str) -> Option<usize> {
        self.rerated.iter().rposition(|r| {
            file_seq <= r.seq
                && r.month == month
                && (r.accounts.is_empty() || r.accounts.iter().any(|a| a == account))
        })
    }
}

/// The allowances of the plans in service, by plan id.
#[derive(Debug, Default)]
pub struct AllowancePlans {
    by_id: HashMap<String, u32>,
    /// Per plan (same index as `list`): its id.
    ids: Vec<String>,
    list: Vec<crate::rate::tariff::PlanAllowances>,
    /// Per plan and service: the allowances of that service.
    service_mask: Vec<[u64; 3]>,
}

impl AllowancePlans {
    /// The allowances of `tariff`'s plans; `None` when no plan has any.
    pub fn of(tariff: &Tariff) -> Option<AllowancePlans> {
        let mut a = AllowancePlans::default();
        for (i, p) in tariff.allowances.iter().enumerate() {
            if p.list.is_empty() {
                continue;
            }
            let id = tariff.table().plans[i].id.as_str().to_owned();
            a.by_id.insert(id.clone(), a.list.len() as u32);
            a.ids.push(id);
            let mut m = [0u64; 3];
            for (j, x) in p.list.iter().enumerate() {
                m[x.service as usize] |= 1 << j;
            }
            a.service_mask.push(m);
            a.list.push(p.clone());
        }
        (!a.list.is_empty()).then_some(a)
    }

    /// The index of a plan with allowances.
    pub fn plan(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// The allowances of plan `i` (an index from [`AllowancePlans::plan`]), plan order.
    pub fn list(&self, i: u32) -> &[crate::rate::tariff::Allowance] {
        &self.list[i as usize].list
    }

    /// The allowances of plan `i` a record of `service` can draw on.
    pub fn service_mask(&self, i: u32, service: Service) -> u64 {
        self.service_mask[i as usize][service as usize]
    }

    /// Per plan, per row of `tariff`: the allowances the row matches (by destination and
    /// band name; only rows of the plan's own deck, never a fallback plan's); and per
    /// row its invoice line (destination and band) interned in `groups`. `tariff` may be
    /// the snapshot a file was rated with: the plan is found in it by id and its own deck
    /// is the one its tries reach there ([`ArchivedTable::plan_deck`]), whatever paths
    /// the snapshot's decks had; a plan the snapshot does not have owns none of its rows.
    ///
    /// [`ArchivedTable::plan_deck`]: crate::rate::tariff::ArchivedTable::plan_deck
    pub fn rows(
        &self,
        tariff: &Tariff,
        (groups, group_ids): (&mut Vec<LineId>, &mut HashMap<LineId, u32>),
    ) -> (Vec<Vec<u64>>, Vec<u32>) {
        let (mut masks, mut group) = (Vec::new(), Vec::new());
        let t = tariff.table();
        for (p, id) in self.list.iter().zip(&self.ids) {
            let own = tariff.plan_index(id).and_then(|i| t.plan_deck(i));
            masks.push(
                t.rows
                    .iter()
                    .map(|r| {
                        if Some(r.deck.to_native()) != own {
                            return 0; // another plan's deck (a fallback's)
                        }
                        let dest = t.destinations[r.destination.to_native() as usize].as_str();
                        let band = band_name(tariff, r.band);
                        p.list
                            .iter()
                            .enumerate()
                            .filter(|(_, x)| {
                                x.destinations
                                    .as_ref()
                                    .is_none_or(|d| d.iter().any(|d| d == dest))
                                    && x.bands.as_ref().is_none_or(|b| b.iter().any(|b| b == band))
                            })
                            .fold(0u64, |m, (j, _)| m | 1 << j)
                    })
                    .collect(),
            );
        }
        // The invoice line of each row, per service (rows carry no service: the line
        // key is completed with the record's service when it draws).
        for r in t.rows.iter() {
            let id: LineId = (
                0,
                t.destinations[r.destination.to_native() as usize]
                    .as_str()
                    .to_owned(),
                band_name(tariff, r.band).to_owned(),
            );
            let n = groups.len() as u32;
            let g = *group_ids.entry(id.clone()).or_insert_with(|| {
                groups.push(id);
                n
            });
            group.push(g);
        }
        (masks, group)
    }
}

impl Window {
    /// This window with the allowances of `tariff`'s plans drawn by records dated in the
    /// months `from..=to` (month indexes).
    pub fn with_allowances(mut self, tariff: &Tariff, from: u32, to: u32) -> Window {
        self.allowances = AllowancePlans::of(tariff).map(Arc::new);
        self.allow_months = (from, to);
        self
    }

    /// Month index of a `YYYY-MM` label.
    pub fn month(label: &str) -> Option<u32> {
        month_index(label)
    }
}

/// Days since 1970-01-01 of a date (the rater's local day numbers).
fn day_number(d: chrono::NaiveDate) -> i32 {
    use chrono::Datelike;
    crate::rate::cdr::time::days_from_civil(d.year() as i64, d.month(), d.day()) as i32
}

impl Window {
    /// The window of a new close of `period` at sequence `seq`, from the ledger's closes
    /// and final invoices.
    pub fn of(ledger: &Ledger, period: &str, seq: u64) -> Result<Window, LedgerError> {
        let p = month_index(period).expect("validated period");
        let mut earlier = Vec::new();
        for c in ledger.closes()? {
            if let Some(m) = month_index(&c.period) {
                if m < p {
                    earlier.push((m, c.seq));
                }
            }
        }
        let mut finals = HashMap::new();
        for account in ledger.finals()? {
            let Some(v) = ledger.final_of(&account)? else {
                continue;
            };
            let r: crate::billing::model::FinalRecord =
                serde_json::from_slice(&v).map_err(|e| LedgerError::Corrupt {
                    path: ledger.path().to_owned(),
                    key: format!("finals/{account}"),
                    message: e.to_string(),
                })?;
            // Issued before this close unless a close of this period or later preceded it.
            let before = r
                .last_closed
                .as_deref()
                .is_none_or(|c| month_index(c).is_some_and(|m| m < p));
            if before {
                finals.insert(account, r.seq.unwrap_or(u64::MAX));
            }
        }
        let (first, last) = crate::billing::model::period_bounds(
            period
                .parse()
                .map_err(|e: String| LedgerError::Refused(e))?,
        );
        let rerated = RerateSnapshot::within(ledger, p, &earlier)?;
        Ok(Window {
            period: p,
            seq,
            earlier,
            finals,
            chart_first: first,
            chart_days: (last - first).num_days() as u32 + 1,
            allowances: None,
            allow_months: (1, 0),
            rerated,
        })
    }

    /// The window of an account's off-cycle final invoice at sequence `seq`: every
    /// unbilled month (all closes so far are earlier), charted from `first` to `last`.
    pub fn for_final(
        ledger: &Ledger,
        seq: u64,
        first: chrono::NaiveDate,
        last: chrono::NaiveDate,
    ) -> Result<Window, LedgerError> {
        let mut earlier = Vec::new();
        for c in ledger.closes()? {
            if let Some(m) = month_index(&c.period) {
                earlier.push((m, c.seq));
            }
        }
        let rerated = RerateSnapshot::within(ledger, u32::MAX, &earlier)?;
        Ok(Window {
            period: u32::MAX,
            seq,
            earlier,
            finals: HashMap::new(),
            chart_first: first,
            chart_days: ((last - first).num_days() + 1).max(0) as u32,
            allowances: None,
            allow_months: (1, 0),
            rerated,
        })
    }

    /// True when a record of month `month` in the file committed at `file_seq` is not
    /// billed by an earlier close (accounts' final invoices aside).
    pub fn open_month(&self, file_seq: u64, month: u32) -> bool {
        file_seq <= self.seq
            && month <= self.period
            && !self
                .earlier
                .iter()
                .any(|&(p, s)| file_seq <= s && month <= p)
    }

    /// True when this close bills a record of `month`, of an account whose final invoice
    /// (if any) was at `final_seq`, in the file committed at `file_seq`.
    pub fn bills(&self, file_seq: u64, month: u32, final_seq: Option<u64>) -> bool {
        self.open_month(file_seq, month) && final_seq.is_none_or(|f| file_seq > f)
    }
}

/// One record of an itemised account, as re-rated.
#[derive(Debug, Clone)]
struct Item {
    start: i64,
    seq: u64,
    line: u64,
    service: Service,
    digits: String,
    usage: u64,
    billed: u64,
    charge_micros: i64,
    line_id: LineId,
}

/// Per billed account: what its records add up to, per day of the period, and (for
/// itemised accounts) every record.
#[derive(Debug, Default, Clone)]
struct Acc {
    count: u64,
    charge: i64,
    /// Records and charge per day of the window's chart.
    days: Vec<(u32, i64)>,
    items: Vec<Item>,
    /// Records that draw on an allowance: (month index, record).
    draws: Vec<(u32, Draw)>,
}

impl Acc {
    fn new(days: u32) -> Acc {
        Acc {
            days: vec![(0, 0); days as usize],
            ..Acc::default()
        }
    }
}

/// Whether an invoice gets an itemisation state at all: the account opted in and the
/// invoice has a usage line.
fn wants_annex(acc: &crate::rate::accounts::Account, inv: &crate::billing::model::Invoice) -> bool {
    acc.itemised
        && inv
            .lines
            .iter()
            .any(|l| matches!(l, crate::billing::model::Line::Usage { .. }))
}

/// What a close derived per account.
#[derive(Debug, Default)]
pub struct Derived {
    accounts: HashMap<String, Acc>,
    /// Accounts whose derived records do not reproduce their billed usage, with the reason.
    failed: HashMap<String, String>,
    /// Files that could not be re-rated, with the reason.
    pub file_errors: Vec<String>,
    /// Records re-rated (all accounts) and files read, for the log.
    pub records: u64,
    pub files: usize,
    /// Files re-rated under the writer lock (committed after the preparation, or all of
    /// them when the preparation could not be used).
    pub late_files: usize,
    /// First day of the chart.
    chart_first: Option<chrono::NaiveDate>,
    groups: Vec<LineId>,
    allowances: Option<Arc<AllowancePlans>>,
    /// Periods the allowances apply to.
    allow_months: u64,
    /// What each account on an allowance plan drew.
    drawn: HashMap<String, AccountDrawn>,
}

/// What an account's records drew from its plan's allowances over a document's months.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountDrawn {
    /// The plan's allowances, in plan order.
    pub allowances: Vec<crate::rate::tariff::Allowance>,
    /// Periods the allowances apply to (1 for a close).
    pub months: u64,
    /// Units each allowance gave.
    pub used: Vec<u64>,
    /// Value (6 decimals) each allowance gave per invoice line: (allowance, line, micros).
    pub value: Vec<(usize, LineId, i64)>,
    /// Records covered: (file sequence, line) → what each took (for the annex).
    pub covered: HashMap<(u64, u64), crate::rate::allowance::Covered>,
}

impl AccountDrawn {
    /// Draws each month's records (rule 1–3, [`crate::rate::allowance::draw`]) and adds
    /// up the months. `groups` names the lines of the records' groups.
    pub fn of(
        allowances: &[crate::rate::tariff::Allowance],
        months: u64,
        mut draws: Vec<(u32, Draw)>,
        groups: &[LineId],
    ) -> AccountDrawn {
        let units: Vec<u64> = allowances.iter().map(|a| a.units).collect();
        let mut out = AccountDrawn {
            allowances: allowances.to_vec(),
            months,
            used: vec![0; units.len()],
            ..AccountDrawn::default()
        };
        draws.sort_unstable_by_key(|d| d.0);
        let mut value: BTreeMap<(usize, LineId), i64> = BTreeMap::new();
        for chunk in draws.chunk_by_mut(|a, b| a.0 == b.0) {
            let mut recs: Vec<Draw> = chunk.iter().map(|d| d.1.clone()).collect();
            let d: Drawn = crate::rate::allowance::draw(&units, &mut recs);
            for (u, x) in out.used.iter_mut().zip(&d.used) {
                *u += x;
            }
            for (i, g, v) in d.value {
                let mut id = groups[(g >> 2) as usize].clone();
                id.0 = (g & 3) as u8;
                *value.entry((i, id)).or_default() += v;
            }
            for c in d.covered {
                out.covered.insert(c.tag, c);
            }
        }
        out.value = value.into_iter().map(|((i, id), v)| (i, id, v)).collect();
        out
    }
}

/// Re-rating state of one thread.
struct Part {
    acc: Vec<Acc>,
    records: u64,
    errors: Vec<String>,
}

/// The accounts a close bills, in a dense order, and which of them are itemised.
struct Slots {
    ids: Vec<String>,
    by_id: FxHashMap<String, u32>,
    itemised: Vec<bool>,
    finals: Vec<Option<u64>>,
    /// Index into the window's [`AllowancePlans`] of the account's plan, `u32::MAX`
    /// when it has no allowances.
    plan: Vec<u32>,
}

/// A tariff and accounts snapshot a file was rated with, with its accounts mapped to
/// slots.
struct Snapshot {
    tariff: Arc<Tariff>,
    index: AccountIndex,
    slot: Vec<u32>,
    /// Per allowance plan, per row of this tariff: the allowances the row matches
    /// (by destination and band name; only rows of the plan's own deck).
    masks: Vec<Vec<u64>>,
    /// Per row: its invoice line as an index into [`Prepared::groups`].
    group: Vec<u32>,
}

/// Re-rates the files a new document bills and derives, for every billed account, its
/// records per day and, for the itemised ones, every record; then verifies them against
/// `rows` (what the document bills). [`prepare`] + [`Prepared::complete`] in one go.
pub fn derive(
    cfg: &Config,
    ledger: &Ledger,
    accounts: &Accounts,
    window: &Window,
    rows: &[UsageRow],
) -> Derived {
    let ids: Vec<&str> = rows.iter().map(|r| r.account.as_str()).collect();
    prepare(cfg, ledger, accounts, window.clone(), ids).complete(
        cfg,
        ledger,
        accounts,
        window.clone(),
        rows,
    )
}

/// Rated detail derived before the writer lock is taken: the files of `window` re-rated
/// for the accounts given. [`Prepared::complete`] finishes it under the lock, re-rating
/// only the files committed in between (or everything again when something else
/// changed), so the lock is held for the verification, not for the re-rating.
pub struct Prepared {
    window: Window,
    slots: Slots,
    acc: Vec<Acc>,
    records: u64,
    /// Files re-rated: (name, committed content hash, content hash expected then).
    files: Vec<(String, String, String)>,
    file_errors: Vec<String>,
    /// Files re-rated by [`Prepared::complete`] (under the lock).
    pub late_files: usize,
    /// The invoice lines records drawing on allowances belong to (interned).
    groups: Vec<LineId>,
    group_ids: HashMap<LineId, u32>,
}

/// Re-rates, for the accounts `ids` (and without holding any lock), the files `window`
/// bills.
pub fn prepare<'a>(
    cfg: &Config,
    ledger: &Ledger,
    accounts: &Accounts,
    window: Window,
    ids: impl IntoIterator<Item = &'a str>,
) -> Prepared {
    let mut slots = Slots {
        ids: Vec::new(),
        by_id: FxHashMap::default(),
        itemised: Vec::new(),
        finals: Vec::new(),
        plan: Vec::new(),
    };
    for id in ids {
        if slots.by_id.contains_key(id) {
            continue;
        }
        slots.by_id.insert(id.to_owned(), slots.ids.len() as u32);
        slots.ids.push(id.to_owned());
        slots
            .itemised
            .push(accounts.get(id).is_some_and(|a| a.itemised));
        slots.finals.push(window.finals.get(id).copied());
        slots.plan.push(
            window
                .allowances
                .as_ref()
                .zip(accounts.get(id))
                .and_then(|(a, acc)| a.by_id.get(&acc.plan).copied())
                .unwrap_or(u32::MAX),
        );
    }
    let mut p = Prepared {
        acc: vec![Acc::new(window.chart_days); slots.ids.len()],
        window,
        slots,
        records: 0,
        files: Vec::new(),
        file_errors: Vec::new(),
        late_files: 0,
        groups: Vec::new(),
        group_ids: HashMap::new(),
    };
    p.rerate_files(cfg, ledger, 0);
    p
}

impl Prepared {
    /// Re-rates the window's files committed after sequence `after` into `self`.
    fn rerate_files(&mut self, cfg: &Config, ledger: &Ledger, after: u64) -> usize {
        if self.slots.ids.is_empty() {
            return 0;
        }
        let window = &self.window;
        let slots = &self.slots;
        let groups = &mut self.groups;
        let group_ids = &mut self.group_ids;
        // A file a rerate read for a month may hold records that rate only now (its
        // rejected lines): read it too.
        let rerated = |cp: &Checkpoint| {
            window.rerated.iter().any(|r| {
                cp.seq <= r.seq
                    && cp.rejected.values().sum::<u64>() > 0
                    && window.open_month(cp.seq, r.month)
            })
        };
        let files: Vec<Checkpoint> = match ledger.files() {
            Ok(f) => {
                f.into_iter()
                    .filter(|cp| cp.seq > after)
                    .filter(|cp| {
                        (cp.rated > 0
                            && cp.months.iter().any(|m| {
                                month_index(m).is_some_and(|m| window.open_month(cp.seq, m))
                            }))
                            || rerated(cp)
                    })
                    .collect()
            }
            Err(e) => {
                self.file_errors
                    .push(format!("cannot list committed files: {e}"));
                Vec::new()
            }
        };
        // The lines each file had rejected at ingest as cross-file duplicates.
        let excluded: Vec<Vec<u64>> = files
            .iter()
            .map(|cp| match ledger.cross_duplicates(&cp.name) {
                Ok(l) => l,
                Err(e) => {
                    self.file_errors.push(format!("{}: {e}", cp.name));
                    Vec::new()
                }
            })
            .collect();
        // Files rewritten by an erasure have a recorded new content hash.
        let hashes: Vec<String> = files
            .iter()
            .map(|cp| crate::billing::privacy::expected_hash(ledger, &cp.name, &cp.content_hash))
            .collect();
        // Snapshots by (tariff version, accounts hash), loaded once.
        let mut snaps: BTreeMap<(String, String), Result<Arc<Snapshot>, String>> = BTreeMap::new();
        let keys = files
            .iter()
            .map(|cp| (cp.tariff_version.clone(), cp.accounts_hash.clone()))
            .chain(
                window
                    .rerated
                    .iter()
                    .map(|r| (r.tariff_version.clone(), r.accounts_hash.clone())),
            )
            .collect::<Vec<_>>();
        for key in keys {
            if let std::collections::btree_map::Entry::Vacant(v) = snaps.entry(key) {
                let (version, hash) = v.key();
                let s = snapshot(
                    &cfg.data_dir,
                    version,
                    hash,
                    slots,
                    window.allowances.as_deref(),
                    (groups, group_ids),
                )
                .map(Arc::new);
                v.insert(s);
            }
        }
        let settings = Settings {
            columns: cfg.columns.clone(),
            chunk_bytes: cfg.chunk_bytes,
            max_line_bytes: cfg.max_line_bytes,
            segment_bytes: crate::ingest::pipeline::SEGMENT_BYTES,
        };
        let done = cfg.spool_dir.join("done");
        let next = AtomicUsize::new(0);
        let parts = Mutex::new(Vec::new());
        let first_day = day_number(window.chart_first);
        let threads = cfg.workers.clamp(1, files.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut part = Part {
                        acc: vec![Acc::new(window.chart_days); slots.ids.len()],
                        records: 0,
                        errors: Vec::new(),
                    };
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(cp) = files.get(i) else { break };
                        // The file's own snapshot for its records no rerate replaced,
                        // and each rerate's that may have replaced some for its own.
                        let mut passes =
                            vec![(None, (cp.tariff_version.clone(), cp.accounts_hash.clone()))];
                        for (k, r) in window.rerated.iter().enumerate() {
                            if cp.seq <= r.seq {
                                passes.push((
                                    Some(k),
                                    (r.tariff_version.clone(), r.accounts_hash.clone()),
                                ));
                            }
                        }
                        for (pass, key) in passes {
                            let snap = match &snaps[&key] {
                                Ok(s) => s.clone(),
                                Err(e) => {
                                    part.errors.push(format!("{}: {e}", cp.name));
                                    continue;
                                }
                            };
                            if let Err(e) = rerate(
                                &done.join(&cp.name),
                                cp,
                                &excluded[i],
                                &hashes[i],
                                &snap,
                                &settings,
                                window,
                                slots,
                                first_day,
                                pass,
                                &mut part,
                            ) {
                                part.errors.push(format!("{}: {e}", cp.name));
                            }
                        }
                    }
                    parts.lock().expect("parts lock").push(part);
                });
            }
        });
        for mut part in parts.into_inner().expect("parts lock") {
            self.records += part.records;
            self.file_errors.append(&mut part.errors);
            for (a, p) in self.acc.iter_mut().zip(part.acc) {
                a.count += p.count;
                a.charge += p.charge;
                for (x, y) in a.days.iter_mut().zip(p.days) {
                    x.0 += y.0;
                    x.1 += y.1;
                }
                a.items.extend(p.items);
                a.draws.extend(p.draws);
            }
        }
        let n = files.len();
        for (cp, h) in files.into_iter().zip(hashes) {
            self.files.push((cp.name, cp.content_hash, h));
        }
        n
    }

    /// Finishes the derivation under the writer lock: `window` and `rows` are what the
    /// document bills now. When only files were committed since [`prepare`], they are
    /// re-rated and added; when anything else changed (a close or final invoice in
    /// between, an account not prepared, a file rewritten by an erasure) everything is
    /// re-rated again. Then the detail is verified against `rows`.
    pub fn complete(
        self,
        cfg: &Config,
        ledger: &Ledger,
        accounts: &Accounts,
        window: Window,
        rows: &[UsageRow],
    ) -> Derived {
        let w = &self.window;
        let same = w.period == window.period
            && w.earlier == window.earlier
            && w.finals == window.finals
            && w.chart_first == window.chart_first
            && w.chart_days == window.chart_days
            && w.rerated == window.rerated
            && w.seq <= window.seq
            && rows
                .iter()
                .all(|r| self.slots.by_id.contains_key(&r.account))
            && self.files.iter().all(|(name, committed, used)| {
                crate::billing::privacy::expected_hash(ledger, name, committed) == *used
            });
        let mut p = if same {
            let mut p = self;
            let after = p.window.seq;
            p.window = window;
            p.late_files = p.rerate_files(cfg, ledger, after);
            p
        } else {
            let ids: Vec<&str> = rows.iter().map(|r| r.account.as_str()).collect();
            let mut p = prepare(cfg, ledger, accounts, window, ids);
            p.late_files = p.files.len();
            p
        };
        p.file_errors.sort();
        p.verify(rows)
    }

    /// Verifies the derived detail against what the document bills.
    fn verify(self, rows: &[UsageRow]) -> Derived {
        let Prepared {
            window,
            slots,
            mut acc,
            records,
            files,
            file_errors,
            late_files,
            groups,
            group_ids: _,
        } = self;
        let mut d = Derived {
            chart_first: Some(window.chart_first),
            groups,
            allowances: window.allowances.clone(),
            allow_months: (u64::from(window.allow_months.1) + 1)
                .saturating_sub(u64::from(window.allow_months.0)),
            records,
            files: files.len(),
            late_files,
            file_errors,
            ..Derived::default()
        };
        if rows.is_empty() {
            return d;
        }
        let mut billed: Vec<BTreeMap<LineId, LineTotals>> = vec![BTreeMap::new(); slots.ids.len()];
        for r in rows {
            let i = slots.by_id[&r.account] as usize;
            for (k, t) in &r.lines.0 {
                billed[i].entry(k.clone()).or_default().add(t);
            }
        }
        let why = |what: String| {
            if d.file_errors.is_empty() {
                what
            } else {
                format!("{what} ({})", d.file_errors.join("; "))
            }
        };
        let mut failed = HashMap::new();
        for (i, a) in acc.iter_mut().enumerate() {
            let b = &billed[i];
            let count: u64 = b.values().map(|t| t.count).sum();
            let charge: i64 = b.values().map(|t| t.charge_micros).sum();
            if count != a.count || charge != a.charge {
                failed.insert(
                    slots.ids[i].clone(),
                    why(format!(
                        "the traffic detail held ({} records, {}) does not reproduce the billed usage ({} records, {})",
                        a.count,
                        format_micros(a.charge as i128),
                        count,
                        format_micros(charge as i128)
                    )),
                );
                continue;
            }
            if slots.itemised[i] {
                let mut sums: BTreeMap<&LineId, LineTotals> = BTreeMap::new();
                for it in &a.items {
                    sums.entry(&it.line_id).or_default().add(&LineTotals {
                        count: 1,
                        usage: it.usage,
                        billed: it.billed,
                        charge_micros: it.charge_micros,
                    });
                }
                let same = sums.len() == b.len()
                    && sums.iter().all(|(k, t)| {
                        b.get(*k).is_some_and(|x| {
                            x.count == t.count
                                && x.billed == t.billed
                                && x.charge_micros == t.charge_micros
                        })
                    });
                if !same {
                    failed.insert(
                        slots.ids[i].clone(),
                        why("the re-rated records do not reproduce the invoice lines".into()),
                    );
                    continue;
                }
                a.items.sort_by_key(|x| (x.start, x.seq, x.line));
            }
        }
        if let Some(plans) = &d.allowances {
            let months = d.allow_months;
            for (i, a) in acc.iter_mut().enumerate() {
                let plan = slots.plan[i];
                if plan == u32::MAX || failed.contains_key(&slots.ids[i]) {
                    continue;
                }
                let draws = std::mem::take(&mut a.draws);
                d.drawn.insert(
                    slots.ids[i].clone(),
                    AccountDrawn::of(&plans.list[plan as usize].list, months, draws, &d.groups),
                );
            }
        }
        d.failed = failed;
        d.accounts = slots.ids.into_iter().zip(acc).collect();
        d
    }
}

fn snapshot(
    data_dir: &Path,
    version: &str,
    hash: &str,
    slots: &Slots,
    allowances: Option<&AllowancePlans>,
    (groups, group_ids): (&mut Vec<LineId>, &mut HashMap<LineId, u32>),
) -> Result<Snapshot, String> {
    let tariff = Tariff::open(&crate::rate::tariff::archive_path(data_dir, version))
        .map_err(|e| format!("tariff {version} is not held: {e}"))?;
    let path = data_dir.join("accounts").join(format!("{hash}.csv"));
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("accounts snapshot {} is not held: {e}", path.display()))?;
    let accounts = Accounts::parse(&path, &bytes).map_err(|e| e.to_string())?;
    let index = AccountIndex::build(&accounts, &tariff).map_err(|e| e.to_string())?;
    let slot = (0..index.len() as u32)
        .map(|i| slots.by_id.get(index.id(i)).copied().unwrap_or(u32::MAX))
        .collect();
    let (masks, group) = match allowances {
        Some(a) => a.rows(&tariff, (groups, group_ids)),
        None => (Vec::new(), Vec::new()),
    };
    Ok(Snapshot {
        tariff: Arc::new(tariff),
        index,
        slot,
        masks,
        group,
    })
}

/// Re-rates one `done/` file, adding the records this close bills to `part`.
#[allow(clippy::too_many_arguments)]
fn rerate(
    path: &Path,
    cp: &Checkpoint,
    excluded: &[u64],
    content_hash: &str,
    snap: &Snapshot,
    settings: &Settings,
    window: &Window,
    slots: &Slots,
    first_day: i32,
    pass: Option<usize>,
    part: &mut Part,
) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "the spooled file is no longer in done/".to_string(),
        _ => format!("cannot read {}: {e}", path.display()),
    })?;
    if crate::fsutil::content_hash(&bytes) != content_hash {
        return Err("the file in done/ differs from the committed content".into());
    }
    let Some((layout, body, first_line)) =
        crate::ingest::pipeline::file_layout(&bytes, settings).map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let tariff: &Tariff = &snap.tariff;
    let table = tariff.table();
    let mut rater = Rater::new(tariff, &snap.index, layout, cp.rated_at);
    let called = rater.layout.pos[Column::CalledNumber as usize] as usize;
    // The called number of an itemised record (the rater keeps its split fields private).
    let mut own = crate::rate::cdr::Splitter::new();
    // Record ids of rated lines: the first line per id hash, and the exact ids of hashes
    // seen more than once (a repeated record id counts once, at its first rated line).
    let mut ids = FirstRated::default();
    let mut excluded = excluded.iter().peekable();
    let mut line_no = first_line;
    let mut pos = body;
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
        let slot = snap.slot[r.account as usize];
        let called_digits = (slot != u32::MAX && slots.itemised[slot as usize])
            .then(|| {
                own.split(line).ok()?;
                rater.normalize(own.field(line, called), r.service)
            })
            .flatten()
            .map(|d| d.to_string());
        if !ids.first(&mut rater, &bytes, id, start, line) {
            continue; // duplicate_record: not counted at ingest either
        }
        if excluded_line(&mut excluded, this) {
            continue; // duplicate_record of an earlier file's record, at ingest
        }
        if slot == u32::MAX {
            continue;
        }
        let s = slot as usize;
        if !window.bills(cp.seq, r.month, slots.finals[s]) {
            continue;
        }
        // Each record in the pass of the snapshot that prices it (see `RerateSnapshot`).
        if (pass.is_some() || !window.rerated.is_empty())
            && window.rerate_of(cp.seq, r.month, &slots.ids[s]) != pass
        {
            continue;
        }
        part.records += 1;
        let a = &mut part.acc[s];
        a.count += 1;
        a.charge += r.charge_micros;
        if let Some(x) = usize::try_from(r.day - first_day)
            .ok()
            .and_then(|d| a.days.get_mut(d))
        {
            x.0 += 1;
            x.1 += r.charge_micros;
        }
        let plan = slots.plan[s];
        if plan != u32::MAX && (window.allow_months.0..=window.allow_months.1).contains(&r.month) {
            let a = window.allowances.as_deref().expect("allowance plans");
            let mask = snap.masks[plan as usize][r.row as usize]
                & a.service_mask[plan as usize][r.service as usize];
            if mask != 0 && r.billed > 0 {
                let row = &table.rows[r.row as usize];
                part.acc[s].draws.push((
                    r.month,
                    Draw {
                        start: r.start,
                        id: RecordId::new(&rater.record_id(line).unwrap_or_default()),
                        billed: r.billed,
                        charge_micros: r.charge_micros,
                        rate_nanos: row.rate_nanos.to_native(),
                        per: row.per.to_native(),
                        mask,
                        group: (snap.group[r.row as usize] << 2) | r.service as u32,
                        tag: (cp.seq, this),
                    },
                ));
            }
        }
        let a = &mut part.acc[s];
        if slots.itemised[s] {
            let row = &table.rows[r.row as usize];
            a.items.push(Item {
                start: r.start,
                seq: cp.seq,
                line: this,
                service: r.service,
                digits: called_digits.unwrap_or_default(),
                usage: r.usage,
                billed: r.billed,
                charge_micros: r.charge_micros,
                line_id: (
                    r.service as u8,
                    table.destinations[row.destination.to_native() as usize]
                        .as_str()
                        .to_owned(),
                    band_name(tariff, row.band).to_owned(),
                ),
            });
        }
    }
    Ok(())
}

impl Derived {
    /// What the account drew from its plan's allowances: `Ok(None)` when its plan (in the
    /// tariff in service) has none; `Err` (why) when its records could not be re-derived,
    /// so the allowances cannot be applied.
    pub fn drawn(
        &self,
        account: &str,
        plan: &str,
    ) -> Result<Option<std::borrow::Cow<'_, AccountDrawn>>, String> {
        let Some(plans) = &self.allowances else {
            return Ok(None);
        };
        let Some(&i) = plans.by_id.get(plan) else {
            return Ok(None);
        };
        if let Some(why) = self.failed.get(account) {
            return Err(why.clone());
        }
        Ok(Some(match self.drawn.get(account) {
            Some(d) => std::borrow::Cow::Borrowed(d),
            // No usage dated in the months: every allowance unused.
            None => std::borrow::Cow::Owned(AccountDrawn::of(
                &plans.list[i as usize].list,
                self.allow_months,
                Vec::new(),
                &[],
            )),
        }))
    }

    /// Why an account's detail is unavailable, if it is.
    pub fn failure(&self, account: &str) -> Option<&str> {
        self.failed.get(account).map(String::as_str)
    }

    /// The account's usage per local day of the window's chart (days with records),
    /// when its detail was verified.
    pub fn days(&self, account: &str) -> Vec<DayUsage> {
        if self.failed.contains_key(account) {
            return Vec::new();
        }
        let (Some(a), Some(first)) = (self.accounts.get(account), self.chart_first) else {
            return Vec::new();
        };
        a.days
            .iter()
            .enumerate()
            .filter(|(_, d)| d.0 > 0)
            .map(|(i, d)| DayUsage {
                date: (first + chrono::Duration::days(i as i64)).to_string(),
                records: d.0 as u64,
                charge: Micros(d.1),
            })
            .collect()
    }

    /// The annex of an itemised account's invoice, matched to its usage lines, or why
    /// there is none. `None` for accounts without the opt-in.
    pub fn annex(
        &self,
        cfg: &Config,
        tariff: &Tariff,
        acc: &crate::rate::accounts::Account,
        inv: &crate::billing::model::Invoice,
    ) -> Option<(Itemised, Option<Annex>)> {
        if !wants_annex(acc, inv) {
            return None;
        }
        let unavailable = Itemised::unavailable;
        if let Some(why) = self.failed.get(&acc.account_id) {
            return unavailable(why.clone());
        }
        let items: &[Item] = self.accounts.get(&acc.account_id).map_or(&[], |a| &a.items);
        let drawn = self.drawn.get(&acc.account_id);
        let omit = &cfg.privacy.itemised_omit;
        let mut lines = Vec::new();
        let (mut listed, mut omitted) = (0u64, 0u64);
        // What the records gave each allowance, per VAT group of their usage line:
        // (allowance, category, rate) → (units, value).
        let mut given: BTreeMap<(usize, String, String), (u64, i64)> = BTreeMap::new();
        for (i, l) in inv.lines.iter().enumerate() {
            let crate::billing::model::Line::Usage {
                service,
                destination,
                band,
                unit,
                amount,
                vat_category,
                vat_rate,
                ..
            } = l
            else {
                continue;
            };
            let s = Service::from_bytes(service.as_bytes())? as u8;
            let mut records = Vec::new();
            let (mut sum, mut om_n, mut om_c) = (0i64, 0u64, 0i64);
            for it in items.iter().filter(|it| {
                it.line_id.0 == s && &it.line_id.1 == destination && &it.line_id.2 == band
            }) {
                sum += it.charge_micros;
                let cov = drawn.and_then(|d| d.covered.get(&(it.seq, it.line)));
                let mut draws = Vec::new();
                if let (Some(c), Some(d)) = (cov, drawn) {
                    for (a, units, value) in c.took() {
                        let g = given
                            .entry((a, vat_category.clone(), vat_rate.clone()))
                            .or_default();
                        g.0 += units;
                        g.1 += value;
                        draws.push(AnnexDraw {
                            name: d
                                .allowances
                                .get(a)
                                .map_or_else(String::new, |x| x.name.clone()),
                            units,
                            value: Micros(value),
                        });
                    }
                }
                if !it.digits.is_empty() && omit.iter().any(|p| it.digits.starts_with(p.as_str())) {
                    om_n += 1;
                    om_c += it.charge_micros;
                    continue;
                }
                let local = chrono::DateTime::from_timestamp(it.start, 0)
                    .map(|t| {
                        t.with_timezone(&tariff.tz)
                            .format("%Y-%m-%d %H:%M:%S")
                            .to_string()
                    })
                    .unwrap_or_default();
                records.push(AnnexRecord {
                    time: local,
                    number: mask(&display_number(&it.digits), acc.masking),
                    usage: if it.service == Service::Sms {
                        1
                    } else {
                        it.usage
                    },
                    billed: it.billed,
                    charge: Micros(it.charge_micros),
                    covered: cov.map_or(0, |c| c.units),
                    allowances: draws,
                    charge_after_allowances: cov.map(|c| Micros(c.charge_micros)),
                });
            }
            if Cents(micros_to_cents(sum as i128)) != *amount {
                return unavailable(format!(
                    "line {}: the records add up to {}, not to the line amount {amount}",
                    i + 1,
                    format_micros(sum as i128)
                ));
            }
            listed += records.len() as u64;
            omitted += om_n;
            lines.push(AnnexLine {
                line: i + 1,
                service: service.clone(),
                destination: destination.clone(),
                band: band.clone(),
                unit: unit.clone(),
                records,
                omitted_records: om_n,
                omitted_charge: Micros(om_c),
                charge_sum: Micros(sum),
                amount: *amount,
            });
        }
        let plan = drawn.map_or(&[][..], |d| &d.allowances[..]);
        let allowances = match annex_allowances(inv, plan, &given) {
            Ok(a) => a,
            Err(why) => return unavailable(why),
        };
        Some((
            Itemised::attached(listed, omitted),
            Some(Annex {
                invoice: inv.number.clone(),
                account_id: acc.account_id.clone(),
                period: inv.period.clone(),
                timezone: tariff.tz.name().to_owned(),
                masking: if acc.masking == 0 {
                    "none".into()
                } else {
                    format!("last{}", acc.masking)
                },
                omitted_prefixes: omit.clone(),
                lines,
                allowances,
            }),
        ))
    }
}

/// The annex's account of the invoice's allowance lines: each line (in invoice order;
/// the draft writes them per allowance in plan order, then per VAT group) with the units
/// and exact value the listed records gave it, which must round to the line's amount
/// (`-round_half_up_2(value)`), else the annex is unavailable and says why. An invoice
/// without allowance lines has none.
fn annex_allowances(
    inv: &crate::billing::model::Invoice,
    plan: &[crate::rate::tariff::Allowance],
    given: &BTreeMap<(usize, String, String), (u64, i64)>,
) -> Result<Vec<AnnexAllowance>, String> {
    let mut out = Vec::new();
    // The plan index of the allowance line: the next allowance of that name from the
    // last one used (a repeated name is a later allowance).
    let mut at = 0usize;
    for (i, l) in inv.lines.iter().enumerate() {
        let crate::billing::model::Line::Allowance {
            name,
            unit,
            amount,
            vat_category,
            vat_rate,
            ..
        } = l
        else {
            continue;
        };
        let seen = |a: usize| {
            out.iter()
                .any(|x: &(usize, String, String, AnnexAllowance)| {
                    x.0 == a && &x.1 == vat_category && &x.2 == vat_rate
                })
        };
        let idx = (at..plan.len()).find(|&a| &plan[a].name == name && !seen(a));
        let (units, value) = idx
            .and_then(|a| given.get(&(a, vat_category.clone(), vat_rate.clone())))
            .copied()
            .unwrap_or((0, 0));
        if Cents(-micros_to_cents(value as i128)) != *amount {
            return Err(format!(
                "line {}: the covered records add up to {}, not to the line amount {amount}",
                i + 1,
                format_micros(-value as i128)
            ));
        }
        if let Some(a) = idx {
            at = a;
        }
        out.push((
            idx.unwrap_or(usize::MAX),
            vat_category.clone(),
            vat_rate.clone(),
            AnnexAllowance {
                line: i + 1,
                name: name.clone(),
                unit: unit.clone(),
                units,
                value: Micros(value),
                amount: *amount,
            },
        ));
    }
    Ok(out.into_iter().map(|x| x.3).collect())
}

/// The itemisation of a reissued invoice, from the original's: a reissue bills the same
/// records again, so its annex is the original's stored annex with the reissue's number
/// and line numbers (matched by service, destination and band; the amounts must be the
/// same), masked at least as much as the account asks for now, and its usage per day is
/// the original's. `None` when the account (now) has no itemised opt-in or the reissue
/// has no usage line. The annex is unavailable, and says why, when the original had none
/// or it was erased since.
pub fn reissue_annex(
    acc: &crate::rate::accounts::Account,
    orig: &crate::billing::model::Invoice,
    orig_annex: Option<&Annex>,
    inv: &crate::billing::model::Invoice,
) -> Option<(Itemised, Option<Annex>)> {
    use crate::billing::model::Line;
    if !wants_annex(acc, inv) {
        return None;
    }
    let unavailable = Itemised::unavailable;
    let Some(a) = orig_annex else {
        let why = match &orig.itemised {
            Some(it) if it.status == "attached" => format!(
                "the traffic detail of invoice {} was erased (dispute window or erasure request)",
                orig.number
            ),
            Some(it) => format!("invoice {} had no annex: {}", orig.number, it.reason),
            None => format!(
                "invoice {} was issued without the itemised opt-in; its records were not itemised",
                orig.number
            ),
        };
        return unavailable(why);
    };
    let hide = hidden_digits(&a.masking).max(acc.masking);
    let mut lines = Vec::new();
    let (mut listed, mut omitted) = (0u64, 0u64);
    for (i, l) in inv.lines.iter().enumerate() {
        let Line::Usage {
            service,
            destination,
            band,
            amount,
            ..
        } = l
        else {
            continue;
        };
        let Some(o) = a
            .lines
            .iter()
            .find(|o| &o.service == service && &o.destination == destination && &o.band == band)
        else {
            return unavailable(format!(
                "line {}: invoice {} has no annex line for it",
                i + 1,
                orig.number
            ));
        };
        if &o.amount != amount {
            return unavailable(format!(
                "line {}: the records add up to {}, not to the line amount {amount}",
                i + 1,
                o.charge_sum
            ));
        }
        let mut o = o.clone();
        o.line = i + 1;
        for r in &mut o.records {
            r.number = mask(&r.number, hide);
        }
        listed += o.records.len() as u64;
        omitted += o.omitted_records;
        lines.push(o);
    }
    if lines.len() != a.lines.len() {
        return unavailable(format!(
            "invoice {} itemises usage lines the reissue does not bill",
            orig.number
        ));
    }
    // The allowance lines are copied in order: the k-th of the reissue is the k-th of
    // the original (an annex written before allowances were itemised has none).
    let mut allowances = Vec::new();
    if !a.allowances.is_empty() {
        let copied: Vec<(usize, &Line)> = inv
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(l, Line::Allowance { .. }))
            .collect();
        if copied.len() != a.allowances.len() {
            return unavailable(format!(
                "invoice {} itemises allowance lines the reissue does not bill",
                orig.number
            ));
        }
        for ((i, l), o) in copied.into_iter().zip(&a.allowances) {
            if l.amount() != o.amount {
                return unavailable(format!(
                    "line {}: the covered records add up to {}, not to the line amount {}",
                    i + 1,
                    format_micros(-o.value.0 as i128),
                    l.amount()
                ));
            }
            let mut o = o.clone();
            o.line = i + 1;
            allowances.push(o);
        }
    }
    Some((
        Itemised::attached(listed, omitted),
        Some(Annex {
            invoice: inv.number.clone(),
            account_id: inv.account_id.clone(),
            period: inv.period.clone(),
            timezone: a.timezone.clone(),
            masking: if hide == 0 {
                "none".into()
            } else {
                format!("last{hide}")
            },
            omitted_prefixes: a.omitted_prefixes.clone(),
            lines,
            allowances,
        }),
    ))
}

/// Whether line `line` is the next of the ascending `excluded` lines (lines rejected
/// at ingest as duplicates of an earlier file's records); lines are asked in order.
pub(crate) fn excluded_line(
    excluded: &mut std::iter::Peekable<std::slice::Iter<'_, u64>>,
    line: u64,
) -> bool {
    while excluded.next_if(|&&l| l < line).is_some() {}
    excluded.next_if(|&&l| l == line).is_some()
}

/// The record ids of one file's re-rating: a record id counts once per file, at its
/// first rated line, as at ingest (a later line with the same id is `duplicate_record`).
/// Lines whose id hashes collide but whose ids differ are told apart exactly.
#[derive(Default)]
pub(crate) struct FirstRated {
    /// Id hash → start of the first rated line with it.
    first: FxHashMap<u64, usize>,
    /// Id hash → the distinct ids seen with it, once a hash repeats.
    repeated: FxHashMap<u64, FxHashSet<Vec<u8>>>,
}

impl FirstRated {
    /// True when `line` (starting at `start` in `bytes`, id hash `id`) is the first rated
    /// line of its record id in the file.
    pub(crate) fn first(
        &mut self,
        rater: &mut Rater,
        bytes: &[u8],
        id: u64,
        start: usize,
        line: &[u8],
    ) -> bool {
        use std::collections::hash_map::Entry;
        let f = match self.first.entry(id) {
            Entry::Vacant(v) => {
                v.insert(start);
                return true;
            }
            Entry::Occupied(o) => *o.get(),
        };
        let rid = rater.record_id(line).unwrap_or_default();
        let set = self.repeated.entry(id).or_insert_with(|| {
            let fnl = memchr::memchr(b'\n', &bytes[f..]).map_or(bytes.len(), |i| f + i);
            let mut fl = &bytes[f..fnl];
            if fl.last() == Some(&b'\r') {
                fl = &fl[..fl.len() - 1];
            }
            let mut set = FxHashSet::default();
            set.insert(rater.record_id(fl).unwrap_or_default());
            set
        });
        set.insert(rid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_replaces_trailing_digits() {
        assert_eq!(mask("+31612345678", 4), "+3161234xxxx");
        assert_eq!(mask("+31612345678", 0), "+31612345678");
        assert_eq!(mask("112", 4), "xxx");
        assert_eq!(display_number("31612345678"), "+31612345678");
        assert_eq!(display_number("1200"), "1200");
    }

    #[test]
    fn window_rules() {
        let oct = 2026 * 12 + 9;
        let w = Window {
            period: oct,
            seq: 10,
            earlier: vec![(oct - 1, 4)],
            finals: HashMap::new(),
            chart_first: chrono::NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
            chart_days: 31,
            allowances: None,
            allow_months: (1, 0),
            rerated: Vec::new(),
        };
        // committed before the close, dated up to the period
        assert!(w.bills(5, oct, None));
        assert!(w.bills(5, oct - 1, None)); // late: after September's close
        assert!(!w.bills(4, oct - 1, None)); // billed by September's close
        assert!(w.bills(4, oct, None)); // October usage in a file September's close saw
        assert!(!w.bills(11, oct, None)); // committed after the close
        assert!(!w.bills(5, oct + 1, None)); // dated after the period
        assert!(!w.bills(6, oct, Some(6))); // billed by a final invoice
        assert!(w.bills(7, oct, Some(6)));
        assert_eq!(month_index("2026-10"), Some(oct));
        assert_eq!(month_index("2026-13"), None);
    }
}
