//! The engine: one open ledger, the tariff and accounts in service, the worker pool,
//! and the processing of one CDR file from bytes to a committed checkpoint.
//!
//! Used identically by `run` (spooled files) and `ingest` (files given on the command
//! line): the same pipeline and the same commit path.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::config::Config;
use crate::ingest::pipeline::{Data, FileError, FileOutcome, Pool, Settings};
use crate::ingest::spool::Spool;
use crate::rate::accounts::{AccountIndex, Accounts, AccountsError};
use crate::rate::money::{format_micros, Micros};
use crate::rate::rating::{band_name, month_label, split_line_key, Reason};
use crate::rate::tariff::{Tariff, TariffError};
use crate::store::{Checkpoint, Commit, Ledger, LedgerError, LineSet, LineTotals};
use crate::telemetry as m;

/// Errors starting the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Tariff(#[from] TariffError),
    #[error(transparent)]
    Accounts(#[from] AccountsError),
    #[error("spool {path}: {source}")]
    Spool {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The tariff and accounts a file is rated with; swapped as a whole.
pub struct Reference {
    pub tariff: Arc<Tariff>,
    pub accounts: Arc<Accounts>,
    pub index: Arc<AccountIndex>,
    pub accounts_hash: String,
    /// Size and modification time of every source file, to notice edits cheaply.
    pub fingerprint: Vec<(std::path::PathBuf, u64, std::time::SystemTime)>,
}

/// Size and modification time of the accounts file, the plans file and every deck.
fn fingerprint(
    cfg: &Config,
    tariff: &Tariff,
) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut paths = vec![cfg.accounts_file.clone(), cfg.tariff_plans.clone()];
    // The decks where the sources name them now (not the archive's compile-time paths).
    paths.extend(tariff.deck_paths());
    paths
        .into_iter()
        .map(|p| {
            let md = std::fs::metadata(&p).ok();
            let len = md.as_ref().map_or(u64::MAX, |m| m.len());
            let mtime = md
                .and_then(|m| m.modified().ok())
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
            (p, len, mtime)
        })
        .collect()
}

/// What happened to one file.
#[derive(Debug)]
pub enum FileResult {
    /// Rated and committed now.
    Committed(Report),
    /// Committed before (a restart finishing a file left in `work/`).
    AlreadyCommitted(Checkpoint),
    /// Refused as a duplicate file (`duplicate_file`); nothing was counted.
    Duplicate(String),
    /// The file as a whole could not be processed; nothing was counted.
    Failed(String),
    /// Shutdown interrupted rating; nothing was counted.
    Cancelled,
}

/// The figures of a committed file.
#[derive(Debug, Clone)]
pub struct Report {
    pub checkpoint: Checkpoint,
    pub seconds: f64,
    pub chunk_nanos: Vec<u64>,
    pub rejects_file: Option<std::path::PathBuf>,
    /// Wall time of each phase: (name, seconds).
    pub phases: Vec<(&'static str, f64)>,
}

/// The engine shared by the daemon's tasks and the CLI commands.
pub struct Engine {
    pub cfg: Config,
    pub ledger: Arc<Ledger>,
    pub spool: Spool,
    pub pool: Pool,
    reference: RwLock<Arc<Reference>>,
    /// Serializes reloads (file processor, SIGHUP, `POST /api/v1/tariffs/reload`,
    /// account upserts) so that a check-then-swap never interleaves with another.
    reload_lock: std::sync::Mutex<()>,
    settings: Settings,
    /// The live figures the dashboard shows, added to once per file.
    pub live: crate::ingest::live::Live,
    /// The cross-file duplicate filter (`None` when `dedup_window_days` is 0); built
    /// from the index by the first file (or [`Engine::dedup_warm`]), so that commands
    /// that never ingest do not read the index.
    dedup: Option<std::sync::Mutex<Option<crate::ingest::dedup::Filter>>>,
}

/// Ids a cross-file filter has room for at least (its memory: ~2 MB).
const DEDUP_MIN_IDS: u64 = 1 << 20;
/// Room a rebuilt filter keeps beyond the ids it holds (a rebuild reads the whole index):
/// an eighth more, and at least [`DEDUP_FILE_ROOM`] ids more.
const DEDUP_HEADROOM: f64 = 1.125;
/// Ids a rebuilt filter has room for beyond those it holds, at least: a 10 M-record file
/// fits without a rebuild (~26 MB of filter).
const DEDUP_FILE_ROOM: u64 = 16 << 20;
/// The file (in the data directory) the cross-file filter is kept in between processes
/// ([`Engine::keep_dedup_filter`]).
pub const DEDUP_SNAPSHOT: &str = "dedup-filter.snapshot";
/// A filter that must grow for a file is rebuilt for this many times the ids it will
/// hold after the file.
const DEDUP_GROWTH: f64 = 1.5;
/// Days since 1970-01-01 (UTC) of a Unix time.
fn day_of(unix: i64) -> u32 {
    unix.div_euclid(86_400).max(0) as u32
}

impl Engine {
    /// Opens the ledger, compiles the tariff if its archive is missing or stale, loads
    /// the accounts and starts the worker pool.
    pub fn open(cfg: Config) -> Result<Engine, EngineError> {
        // Opening the database (syncs) and loading tariff and accounts (parsing) are
        // independent: do them side by side.
        let (ledger, reference) = std::thread::scope(|s| {
            let reference = s.spawn(|| Engine::load_reference(&cfg));
            let ledger = Ledger::open(&cfg.data_dir);
            let reference = reference.join().expect("reference loader panicked");
            (ledger, reference)
        });
        let ledger = Arc::new(ledger?);
        let reference = Arc::new(reference?);
        let spool = Spool::open(&cfg.spool_dir).map_err(|source| EngineError::Spool {
            path: cfg.spool_dir.clone(),
            source,
        })?;
        let settings = Settings {
            columns: cfg.columns.clone(),
            chunk_bytes: cfg.chunk_bytes,
            max_line_bytes: cfg.max_line_bytes,
            segment_bytes: crate::ingest::pipeline::SEGMENT_BYTES,
        };
        let pool = Pool::new(cfg.workers);
        let dedup = (cfg.dedup_window_days > 0).then(|| std::sync::Mutex::new(None));
        metrics::gauge!(m::TARIFF_INFO, "version" => reference.tariff.version()[..16].to_owned())
            .set(1.0);
        Ok(Engine {
            cfg,
            ledger,
            spool,
            pool,
            reference: RwLock::new(reference),
            reload_lock: std::sync::Mutex::new(()),
            settings,
            live: crate::ingest::live::Live::new(),
            dedup,
        })
    }

    /// The daily upkeep of the cross-file index: ids whose window ended leave the
    /// disk (a compaction of the index) and, once the filter is stale, the filter (it
    /// is read from the index again).
    pub fn dedup_upkeep(&self, now: i64) {
        if let Some(f) = &self.dedup {
            let today = day_of(now);
            let mut f = f.lock().expect("dedup filter");
            if f.as_ref().is_some_and(|held| held.stale(today)) {
                // The stale filter is dropped before its successor is read: memory
                // stays at one filter. A failed read leaves none; the next file reads it.
                *f = None;
                match self.build_filter_on(today) {
                    Ok(new) => *f = Some(new),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "cross-file duplicate filter not read again (the next file does)"
                    ),
                }
            }
            let window = self.cfg.dedup_window_days.max(1);
            self.ledger
                .dedup_expire(today.saturating_sub(window - 1), true);
            if let Some(held) = f.as_ref() {
                set_dedup_gauges(held);
            }
        }
    }

    /// Ids the cross-file filter holds (`None` when the check is off or the filter was
    /// not read from the index yet): the `tollgate_dedup_ids` gauge.
    pub fn dedup_held(&self) -> Option<u64> {
        let f = self.dedup.as_ref()?.lock().expect("dedup filter");
        f.as_ref().map(|f| f.len())
    }

    /// Builds the cross-file filter now, when the check is on and it is not built yet
    /// (the daemon, at start: its first file does not wait for the index to be read).
    pub fn dedup_warm(&self) -> Result<(), EngineError> {
        if let Some(f) = &self.dedup {
            let mut f = f.lock().expect("dedup filter");
            if f.is_none() {
                *f = Some(self.build_filter_on(day_of(chrono::Utc::now().timestamp()))?);
            }
        }
        Ok(())
    }

    /// The filter of the ids committed inside the window that ends on `today`: the
    /// snapshot the last process kept, when it still holds (see
    /// [`Engine::keep_dedup_filter`]), else read from the index.
    fn build_filter_on(&self, today: u32) -> Result<crate::ingest::dedup::Filter, EngineError> {
        if let Some(f) = self.take_dedup_snapshot(today) {
            set_dedup_gauges(&f);
            return Ok(f);
        }
        rebuild_filter(
            &self.ledger,
            self.cfg.dedup_window_days,
            today,
            0,
            self.cfg.workers,
        )
        .map_err(EngineError::Ledger)
    }

    /// Where the cross-file filter is kept between processes.
    fn dedup_snapshot_path(&self) -> std::path::PathBuf {
        self.cfg.data_dir.join(DEDUP_SNAPSHOT)
    }

    /// Keeps the cross-file filter for the next process that opens the store (a
    /// one-shot `tollgate ingest`, the daemon after a restart), which then reads it in
    /// a fraction of a second instead of reading the whole index again (~6 s at 108 M
    /// ids held on the reference VM). Written only when the filter holds every file
    /// committed so far (its seq is the store's); without fsync (the snapshot's checksum
    /// refuses a torn file, which is then read from the index). Called at a clean exit;
    /// a crash leaves no snapshot, since the next process takes (removes) it first.
    pub fn keep_dedup_filter(&self) {
        let Some(f) = &self.dedup else { return };
        let f = f.lock().expect("dedup filter");
        let Some(f) = f.as_ref() else { return };
        let path = self.dedup_snapshot_path();
        match self.ledger.seq() {
            Ok(seq) if seq == f.seq() => {}
            other => {
                tracing::info!(
                    store_seq = ?other.ok(),
                    filter_seq = f.seq(),
                    "cross-file duplicate filter not kept: it does not match the store"
                );
                return;
            }
        }
        let t = Instant::now();
        match crate::fsutil::write_renamed_with(&path, |file| f.write_snapshot(file)) {
            Ok(()) => tracing::info!(
                path = %path.display(),
                ids = f.len(),
                seq = f.seq(),
                seconds = t.elapsed().as_secs_f64(),
                "cross-file duplicate filter kept for the next start"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "cross-file duplicate filter not kept (the next start reads the index)"
            ),
        }
    }

    /// The filter a previous process kept, when it holds: its file is removed first
    /// (so that a crash of this process cannot leave a snapshot behind that misses the
    /// files it commits), then it is used only if it is intact, made for this window,
    /// holds every file the store committed (same last seq) and is not stale. Anything
    /// else is logged and the index is read instead.
    fn take_dedup_snapshot(&self, today: u32) -> Option<crate::ingest::dedup::Filter> {
        let path = self.dedup_snapshot_path();
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cross-file filter snapshot unreadable");
                return None;
            }
        };
        let t = Instant::now();
        let taken =
            std::fs::remove_file(&path).and_then(|()| crate::fsutil::sync_dir(&self.cfg.data_dir));
        if let Err(e) = taken {
            tracing::warn!(path = %path.display(), error = %e, "cross-file filter snapshot not taken: cannot remove it");
            return None;
        }
        let refused = |why: String| {
            tracing::info!(path = %path.display(), why, "cross-file filter snapshot not used: reading the index");
            None
        };
        let len = match file.metadata() {
            Ok(m) => m.len(),
            Err(e) => return refused(e.to_string()),
        };
        let f = match crate::ingest::dedup::Filter::read_snapshot(file, len) {
            Ok(f) => f,
            Err(why) => return refused(why),
        };
        if f.window_days() != self.cfg.dedup_window_days.max(1) {
            return refused(format!("made for a window of {} days", f.window_days()));
        }
        match self.ledger.seq() {
            Ok(seq) if seq == f.seq() => {}
            Ok(seq) => {
                return refused(format!(
                    "holds the files up to seq {}, the store has {seq}",
                    f.seq()
                ))
            }
            Err(e) => return refused(e.to_string()),
        }
        if f.stale(today) {
            return refused("stale: ids whose window ended must leave it".into());
        }
        tracing::info!(
            ids = f.len(),
            bytes = f.bytes(),
            seq = f.seq(),
            seconds = t.elapsed().as_secs_f64(),
            "cross-file duplicate filter read from its snapshot"
        );
        Some(f)
    }

    /// Loads tariff and accounts as configured.
    pub fn load_reference(cfg: &Config) -> Result<Reference, EngineError> {
        let tariff = Arc::new(Tariff::load(&cfg.tariff_plans, &cfg.data_dir)?);
        let bytes = std::fs::read(&cfg.accounts_file).map_err(|e| AccountsError::File {
            path: cfg.accounts_file.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let accounts_hash = crate::fsutil::content_hash(&bytes);
        // Keep the snapshot a checkpoint's `accounts_hash` names, so rated detail can be
        // derived again later (itemised invoices, disputes). Written (and synced) on a
        // second thread while the accounts are parsed: the parse is the longer of the two
        // and the start of every ingest waits for it.
        let snapshot = cfg
            .data_dir
            .join("accounts")
            .join(format!("{accounts_hash}.csv"));
        // Whether this call wrote the snapshot (then it is removed again when the
        // accounts turn out invalid: no checkpoint will ever name them).
        let keep_snapshot = || -> Result<bool, AccountsError> {
            if snapshot.exists() {
                return Ok(false);
            }
            let io = |e: std::io::Error| AccountsError::File {
                path: snapshot.clone(),
                message: format!("cannot keep a snapshot: {e}"),
            };
            std::fs::create_dir_all(snapshot.parent().expect("has parent")).map_err(io)?;
            crate::fsutil::write_atomic(&snapshot, &bytes).map_err(io)?;
            Ok(true)
        };
        let (parsed, kept) = std::thread::scope(|s| {
            let kept = s.spawn(keep_snapshot);
            let parsed = Accounts::parse(&cfg.accounts_file, &bytes).and_then(|a| {
                let index = AccountIndex::build(&a, &tariff)?;
                Ok((a, index))
            });
            (parsed, kept.join().expect("snapshot thread panicked"))
        });
        let (accounts, index) = match parsed {
            Ok(p) => p,
            Err(e) => {
                if let Ok(true) = kept {
                    let _ = std::fs::remove_file(&snapshot);
                }
                return Err(e.into());
            }
        };
        kept?;
        let (accounts, index) = (Arc::new(accounts), Arc::new(index));
        let fingerprint = fingerprint(cfg, &tariff);
        Ok(Reference {
            tariff,
            accounts,
            index,
            accounts_hash,
            fingerprint,
        })
    }

    /// Closes the database and stops the pool for a process that exits next, keeping
    /// the cross-file filter for the next one ([`Engine::keep_dedup_filter`]); the
    /// tariff and accounts in memory are left to the operating system (freeing 100k
    /// accounts one allocation at a time costs more than reclaiming the pages at exit).
    pub fn close_for_exit(self) {
        self.keep_dedup_filter();
        let Engine { reference, .. } = self;
        std::mem::forget(reference);
    }

    /// The tariff and accounts in service.
    pub fn reference(&self) -> Arc<Reference> {
        self.reference.read().expect("reference lock").clone()
    }

    /// The currency of the tariff in service.
    pub fn currency(&self) -> String {
        self.reference().tariff.currency().to_owned()
    }

    /// Reloads tariff and accounts when a source file changed (or always, with `force`)
    /// and swaps them in for the next file. A file is always rated with one snapshot.
    /// On an error the snapshot in service stays and the error is returned.
    pub fn reload(&self, force: bool) -> Result<bool, EngineError> {
        let _one = self.reload_lock.lock().expect("reload lock");
        let current = self.reference();
        if !force && fingerprint(&self.cfg, &current.tariff) == current.fingerprint {
            return Ok(false);
        }
        match Engine::load_reference(&self.cfg) {
            Ok(new) => {
                let changed = new.tariff.version() != current.tariff.version()
                    || new.accounts_hash != current.accounts_hash;
                if new.tariff.version() != current.tariff.version() {
                    metrics::gauge!(m::TARIFF_INFO, "version" => current.tariff.version()[..16].to_owned()).set(0.0);
                    metrics::gauge!(m::TARIFF_INFO, "version" => new.tariff.version()[..16].to_owned()).set(1.0);
                }
                *self.reference.write().expect("reference lock") = Arc::new(new);
                metrics::counter!(m::RELOADS, "outcome" => "ok").increment(1);
                Ok(changed)
            }
            Err(e) => {
                // Remember the broken sources so the error is not retried for every file.
                let mut kept = Reference {
                    tariff: current.tariff.clone(),
                    accounts: current.accounts.clone(),
                    index: current.index.clone(),
                    accounts_hash: current.accounts_hash.clone(),
                    fingerprint: Vec::new(),
                };
                kept.fingerprint = fingerprint(&self.cfg, &kept.tariff);
                *self.reference.write().expect("reference lock") = Arc::new(kept);
                metrics::counter!(m::RELOADS, "outcome" => "error").increment(1);
                Err(e)
            }
        }
    }

    /// Rates and commits one file. `name` is the file's identity in the ledger.
    /// `recovering` is true for a file found in `work/` at start: if its name and content
    /// were committed, it was committed by us before a crash, not dropped twice.
    pub fn process(
        &self,
        path: &Path,
        name: &str,
        recovering: bool,
        cancel: Arc<AtomicBool>,
    ) -> FileResult {
        self.process_at(
            path,
            name,
            recovering,
            cancel,
            chrono::Utc::now().timestamp(),
        )
    }

    /// [`Engine::process`] at the processing time `now` (Unix seconds): the
    /// `future_time` check and the commit day of the cross-file index (tests move it).
    pub fn process_at(
        &self,
        path: &Path,
        name: &str,
        recovering: bool,
        cancel: Arc<AtomicBool>,
        now: i64,
    ) -> FileResult {
        let mut outcome = None;
        let result = self.process_inner(path, name, recovering, cancel, now, &mut outcome);
        record_metrics(&self.live, &result, outcome.as_ref());
        result
    }

    fn process_inner(
        &self,
        path: &Path,
        name: &str,
        recovering: bool,
        cancel: Arc<AtomicBool>,
        now: i64,
        stats: &mut Option<(u64, FileOutcome)>,
    ) -> FileResult {
        let t0 = Instant::now();
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => return FileResult::Failed(format!("cannot open: {e}")),
        };
        let size = match file.metadata() {
            Ok(md) => md.len(),
            Err(e) => return FileResult::Failed(format!("cannot stat: {e}")),
        };
        let data: Data = if size == 0 {
            Arc::new(Vec::<u8>::new())
        } else {
            // SAFETY: the file was claimed into work/ (or named by the operator for
            // `ingest`); nobody writes it while it is rated. A concurrent truncation
            // would be a SIGBUS, which the spool protocol (rename-in) rules out.
            match unsafe { memmap2::Mmap::map(&file) } {
                Ok(map) => {
                    let _ = map.advise(memmap2::Advice::Sequential);
                    Arc::new(map)
                }
                Err(e) => return FileResult::Failed(format!("cannot map: {e}")),
            }
        };
        let bytes: &[u8] = (*data).as_ref();
        match self.ledger.file(name) {
            Ok(Some(cp)) if recovering && cp.content_hash == crate::fsutil::content_hash(bytes) => {
                return FileResult::AlreadyCommitted(cp)
            }
            Ok(Some(cp)) => {
                return FileResult::Duplicate(format!(
                    "duplicate_file: a file named {name} was committed before (seq {}, {})",
                    cp.seq, cp.committed_at
                ))
            }
            Ok(None) => {}
            Err(e) => return FileResult::Failed(e.to_string()),
        }
        // Empty and header-only files carry no records: their content never counts as a duplicate.
        let has_records = match self.settings.columns {
            Some(_) => !bytes.is_empty(),
            None => memchr::memchr(b'\n', bytes)
                .is_some_and(|i| bytes[i + 1..].iter().any(|b| !b.is_ascii_whitespace())),
        };
        let t_checks = t0.elapsed().as_secs_f64();
        let reference = self.reference();
        let today = day_of(now);
        // The cross-file filter, held while the file is rated (one file at a time);
        // read from the index when missing or stale (ids whose window ended leave it),
        // grown (read again, bigger) when the file's ids would not fit.
        let mut held = self.dedup.as_ref().map(|f| f.lock().expect("dedup filter"));
        if let Some(h) = held.as_deref_mut() {
            if h.as_ref().is_none_or(|f| f.stale(today)) {
                *h = None;
                match self.build_filter_on(today) {
                    Ok(f) => *h = Some(f),
                    Err(e) => return FileResult::Failed(e.to_string()),
                }
            }
        }
        let mut filter = held.as_deref_mut().and_then(Option::as_mut);
        let (window, workers) = (self.cfg.dedup_window_days, self.cfg.workers);
        let grow = |held: u64, adding: u64| {
            let want = ((held + adding) as f64 * DEDUP_GROWTH) as u64;
            rebuild_filter(&self.ledger, window, today, want, workers).map_err(|e| e.to_string())
        };
        let first_day = filter.as_deref().map_or(0, |f| f.first_day(today));
        let ledger = &self.ledger;
        let exact = move |ids: &[&[u8]]| {
            ledger
                .dedup_lookup(ids, first_day)
                .map_err(|e| e.to_string())
        };
        // The content hash is computed on this thread while the pool rates the file (this
        // thread would only wait); a file whose content was committed before is then
        // refused before anything of it is written.
        let (content_hash, outcome) = std::thread::scope(|s| {
            let hash = s.spawn(|| crate::fsutil::content_hash(bytes));
            let cross = filter
                .as_deref_mut()
                .map(|f| crate::ingest::pipeline::Cross {
                    filter: f,
                    exact: &exact,
                    grow: &grow,
                });
            let outcome = self.pool.rate_file_with(
                data.clone(),
                reference.tariff.clone(),
                reference.index.clone(),
                &self.settings,
                now,
                cancel,
                cross,
            );
            (hash.join().expect("hashing panicked"), outcome)
        });
        if has_records {
            match self.ledger.file_by_hash(&content_hash) {
                Ok(Some(other)) => {
                    return FileResult::Duplicate(format!(
                        "duplicate_file: the same content was committed as {other}"
                    ))
                }
                Ok(None) => {}
                Err(e) => return FileResult::Failed(e.to_string()),
            }
        }
        let mut outcome = match outcome {
            Ok(o) => o,
            Err(FileError::Cancelled) => return FileResult::Cancelled,
            Err(e) => return FileResult::Failed(e.to_string()),
        };
        // The rejects file is written (and synced) on a thread of its own while the usage
        // is encoded into the commit batch: both before the commit, one core each.
        let t_deltas = Instant::now();
        let totals = std::mem::take(&mut outcome.totals);
        // The usage is encoded straight into the commit batch, releasing the totals as it
        // goes. Sized for 40 bytes a total (about 31 on both benchmark files: an entry's
        // destination and band names, its varints, the (account, month) key shared by a
        // handful): growing past the reservation copied the whole batch once; reserved
        // but unused bytes are never touched. The cross-file index values join the
        // batch at the commit: their bytes, and ~32 a value for key and framing.
        let index_bytes = outcome.index.as_ref().map_or(0, |i| {
            i.parts
                .iter()
                .map(|p| p.buf.len() + p.chunks.len() * 32)
                .sum::<usize>()
        });
        let mut batch = self
            .ledger
            .file_batch(totals.len() * 40 + index_bytes + 4096);
        let rejects_path = self.spool.rejects_path(name);
        let max_line = self.cfg.max_line_bytes;
        let (rejects, months) = std::thread::scope(|s| {
            let rejects = s.spawn(|| {
                let t = Instant::now();
                let r = write_rejects(&rejects_path, max_line, bytes, &outcome.rejects);
                (r, t.elapsed().as_secs_f64())
            });
            let months = stage_usage(&reference, totals, &mut batch);
            crate::ingest::totals::release_freed_memory();
            (rejects.join().expect("rejects writer panicked"), months)
        });
        let (rejects_file, rejects_seconds) = match rejects {
            (Ok(p), t) => (p, t),
            (Err(e), _) => return FileResult::Failed(format!("cannot write rejects: {e}")),
        };
        for (key, value) in daily_deltas(&outcome) {
            batch.merge_daily(&key, &value);
        }
        let mut filter_adds = Vec::new();
        if let Some(mut index) = outcome.index.take() {
            filter_adds = std::mem::take(&mut index.filter_adds);
            for part in index.parts {
                batch.add_index_part(today, part.buf, part.chunks);
            }
            batch.set_cross_duplicates(std::mem::take(&mut outcome.cross_duplicates));
        }
        let mut rejected = BTreeMap::new();
        for r in Reason::ALL {
            let n = outcome.rejected_by_reason[r as usize];
            if n > 0 {
                rejected.insert(r.code().to_owned(), n);
            }
        }
        let cp = Checkpoint {
            format: 1,
            name: name.to_owned(),
            size,
            content_hash,
            lines: outcome.lines,
            rated: outcome.rated,
            rejected,
            charge: Micros(outcome.charge_micros),
            tariff_version: reference.tariff.version().to_owned(),
            accounts_hash: reference.accounts_hash.clone(),
            rated_at: now,
            committed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            seq: 0,
            months,
        };
        let t_commit = Instant::now();
        let deltas_seconds = (t_commit - t_deltas).as_secs_f64();
        // The file's ids join the filter on a second thread while its batch is written
        // and synced (a commit that refuses the file leaves them there: an id the filter
        // holds without the index costs an exact lookup, never a wrong reject).
        let committed = std::thread::scope(|s| {
            if let Some(f) = filter.as_deref_mut() {
                s.spawn(move || {
                    for part in &filter_adds {
                        f.add_sorted(part);
                    }
                    tracing::debug!(
                        held = f.len(),
                        stashed = f.stashed(),
                        "cross-file filter after the file's ids"
                    );
                });
            }
            self.ledger
                .commit_file_batch(cp.clone(), batch, has_records)
        });
        if let (Ok(Commit::Committed(seq)), Some(f)) = (&committed, filter.as_deref_mut()) {
            // The file's ids were added above (the thread is joined).
            f.holds_through(*seq);
        }
        let result = match committed {
            Ok(Commit::Committed(seq)) => {
                let mut checkpoint = cp;
                checkpoint.seq = seq;
                FileResult::Committed(Report {
                    checkpoint,
                    seconds: t0.elapsed().as_secs_f64(),
                    chunk_nanos: outcome.chunk_nanos.clone(),
                    rejects_file,
                    phases: vec![
                        ("map_check", t_checks),
                        ("rate", outcome.rate_seconds),
                        ("collect", outcome.collect_seconds),
                        ("rejects", rejects_seconds),
                        ("deltas", deltas_seconds),
                        ("commit", t_commit.elapsed().as_secs_f64()),
                    ],
                })
            }
            Ok(Commit::DuplicateName(old)) => FileResult::Duplicate(format!(
                "duplicate_file: a file named {name} was committed before (seq {})",
                old.seq
            )),
            Ok(Commit::DuplicateContent(other)) => FileResult::Duplicate(format!(
                "duplicate_file: the same content was committed as {other}"
            )),
            Err(e) => FileResult::Failed(e.to_string()),
        };
        if let Some(f) = filter.as_deref() {
            set_dedup_gauges(f);
        }
        drop(held);
        *stats = Some((size, outcome));
        result
    }
}

/// Writes the rejects file of a file (atomically, synced): `line,reason,record` with each
/// record cut at `max_line` bytes; removes a stale one when nothing was rejected.
fn write_rejects(
    path: &std::path::Path,
    max_line: usize,
    bytes: &[u8],
    rejects: &[crate::ingest::pipeline::Reject],
) -> std::io::Result<Option<std::path::PathBuf>> {
    if rejects.is_empty() {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        return Ok(None);
    }
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    w.write_record(["line", "reason", "record"])?;
    for r in rejects {
        let end = r.end.min(r.start + max_line);
        w.write_record([
            r.line.to_string().as_bytes(),
            r.reason.code().as_bytes(),
            &bytes[r.start..end],
        ])?;
    }
    let buf = w.into_inner().map_err(|e| e.into_error())?;
    crate::fsutil::write_atomic(path, &buf)?;
    Ok(Some(path.to_path_buf()))
}

/// Encodes a file's usage into `batch`: one merge `(account \0 YYYY-MM, LineSet bytes)`
/// per account and month, straight from the sorted totals, in key order, with one key
/// and one value buffer reused throughout; each run of totals is released as soon as it
/// is encoded. Returns the months touched, sorted.
///
/// Memory: the batch holds the only encoded copy (about 20 bytes per key), and the
/// totals shrink while it grows, so the peak of a file spanning more months (more
/// (account, month) values) is not the sum of the two. (The encoded values used to be
/// collected first, one key and one value allocation per (account, month), then copied
/// into the batch while the totals were still held.)
fn stage_usage(
    r: &Reference,
    totals: crate::ingest::totals::FileTotals,
    batch: &mut crate::store::FileBatch<'_>,
) -> Vec<String> {
    let table = r.tariff.table();
    // The labels of the months seen (a file spans a handful): formatting one per
    // (account, month) value cost more than encoding its lines.
    let mut labels: Vec<(u32, String)> = Vec::new();
    // The encoded (service, destination, band) head of each line key seen, in `heads`
    // at (offset, length): a file repeats a few thousand line keys over millions of
    // totals.
    let mut head_at: rustc_hash::FxHashMap<u32, (u32, u32)> = Default::default();
    let mut heads: Vec<u8> = Vec::new();
    let mut k: Vec<u8> = Vec::with_capacity(64);
    let mut value: Vec<u8> = Vec::with_capacity(4096);
    // An (account, month) never spans two runs: runs are ranges of accounts.
    for run in totals.into_runs() {
        let mut rest = &run[..];
        while let Some(&((account, month, _), _)) = rest.first() {
            let n = rest
                .iter()
                .position(|e| (e.0 .0, e.0 .1) != (account, month))
                .unwrap_or(rest.len());
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let label = match labels.iter().position(|l| l.0 == month) {
                Some(i) => &labels[i].1,
                None => {
                    labels.push((month, month_label(month)));
                    &labels[labels.len() - 1].1
                }
            };
            k.clear();
            k.extend_from_slice(r.index.id(account).as_bytes());
            k.push(0);
            k.extend_from_slice(label.as_bytes());
            value.clear();
            value.extend_from_slice(&LineSet::encode_header());
            for &((_, _, key), a) in group {
                let (at, len) = *head_at.entry(key).or_insert_with(|| {
                    let (service, dest, band) = split_line_key(key);
                    let at = heads.len();
                    LineSet::encode_entry_head(
                        &mut heads,
                        service as u8,
                        table.destinations[dest as usize].as_str(),
                        band_name(&r.tariff, band),
                    );
                    (at as u32, (heads.len() - at) as u32)
                });
                value.extend_from_slice(&heads[at as usize..(at + len) as usize]);
                LineSet::encode_entry_totals(
                    &mut value,
                    &LineTotals {
                        count: a.count,
                        usage: a.usage,
                        billed: a.billed,
                        charge_micros: a.charge_micros,
                    },
                );
            }
            batch.merge_usage(&k, &value);
        }
        drop(run);
    }
    let mut months: Vec<u32> = labels.iter().map(|l| l.0).collect();
    months.sort_unstable();
    months.into_iter().map(month_label).collect()
}

/// Builds the cross-file filter from the index: the ids committed from the first day
/// of the window ending `today` on, each shard sized for its ids with headroom, and the
/// whole for `capacity` ids at least. Read on `threads` threads, shard by shard.
fn rebuild_filter(
    ledger: &Ledger,
    window_days: u32,
    today: u32,
    capacity: u64,
    threads: usize,
) -> Result<crate::ingest::dedup::Filter, LedgerError> {
    use crate::ingest::dedup::{Filter, SHARDS};
    let t = Instant::now();
    let first_day = today.saturating_sub(window_days.max(1) - 1);
    ledger.dedup_expire(first_day, false);
    // Files commit under the filter's lock (this process holds the store's): none
    // commits while the index is read.
    let seq = ledger.seq()?;
    let per = 1u32 << (crate::store::DEDUP_BUCKET_BITS - SHARDS.trailing_zeros());
    let failed: std::sync::Mutex<Option<LedgerError>> = Default::default();
    // Shards hold about the same number of ids: each reserves what the last one read.
    let last = std::sync::atomic::AtomicUsize::new(0);
    let f = Filter::from_ids(
        window_days,
        DEDUP_HEADROOM,
        DEDUP_FILE_ROOM,
        capacity.max(DEDUP_MIN_IDS),
        threads,
        |s| {
            let mut ids =
                Vec::with_capacity(last.load(std::sync::atomic::Ordering::Relaxed) * 21 / 20);
            match ledger.dedup_scan(s as u32 * per, (s as u32 + 1) * per, first_day, |h, _| {
                ids.push(h)
            }) {
                Ok(_) => {
                    last.store(ids.len(), std::sync::atomic::Ordering::Relaxed);
                    Ok(ids)
                }
                Err(e) => {
                    let m = e.to_string();
                    *failed.lock().expect("lock") = Some(e);
                    Err(m)
                }
            }
        },
    );
    match (f, failed.into_inner().expect("lock")) {
        (Ok(mut f), _) => {
            f.built_on(today);
            f.holds_through(seq);
            tracing::info!(
                ids = f.len(),
                bytes = f.bytes(),
                stashed = f.stashed(),
                seconds = t.elapsed().as_secs_f64(),
                "cross-file duplicate filter built from the index"
            );
            set_dedup_gauges(&f);
            Ok(f)
        }
        (Err(_), Some(e)) => Err(e),
        (Err(m), None) => Err(LedgerError::Refused(m)),
    }
}

fn set_dedup_gauges(f: &crate::ingest::dedup::Filter) {
    metrics::gauge!(m::DEDUP_IDS).set(f.len() as f64);
    metrics::gauge!(m::DEDUP_BYTES).set(f.bytes() as f64);
}

/// Daily deltas of a file for the ledger: one `(YYYY-MM-DD, DayTotals bytes)` per local day.
fn daily_deltas(o: &FileOutcome) -> Vec<crate::store::DailyDelta> {
    let mut out: Vec<(Vec<u8>, crate::store::DayTotals)> = Vec::new();
    for &((month, mday, service), a) in &o.daily {
        let key = format!("{}-{mday:02}", month_label(month)).into_bytes();
        if out.last().is_none_or(|l| l.0 != key) {
            out.push((key, crate::store::DayTotals::default()));
        }
        out.last_mut().expect("pushed above").1 .0[service as usize] = LineTotals {
            count: a.count,
            usage: a.usage,
            billed: a.billed,
            charge_micros: a.charge_micros,
        };
    }
    out.into_iter().map(|(k, d)| (k, d.encode())).collect()
}

fn record_metrics(
    live: &crate::ingest::live::Live,
    result: &FileResult,
    stats: Option<&(u64, FileOutcome)>,
) {
    let outcome = match (result, stats) {
        (FileResult::Committed(r), Some((size, o))) => {
            let size = *size;
            metrics::counter!(m::RECORDS, "outcome" => "rated").increment(o.rated);
            for reason in Reason::ALL {
                let n = o.rejected_by_reason[reason as usize];
                if n > 0 {
                    metrics::counter!(m::RECORDS, "outcome" => "rejected", "reason" => reason.code())
                        .increment(n);
                }
            }
            metrics::gauge!(m::LAST_FILE).set(chrono::Utc::now().timestamp() as f64);
            live.file_committed(o.rated, &o.rejected_by_reason, size, o.charge_micros);
            metrics::counter!(m::BYTES).increment(size);
            metrics::counter!(m::CHARGED).increment(o.charge_micros.max(0) as u64);
            metrics::histogram!(m::FILE_SECONDS).record(r.seconds);
            for &ns in &o.chunk_nanos {
                metrics::histogram!(m::CHUNK_SECONDS).record(ns as f64 / 1e9);
            }
            "done"
        }
        (FileResult::Duplicate(_), _) => "duplicate",
        (FileResult::Failed(_), _) => "failed",
        _ => return,
    };
    live.file_finished(outcome);
    metrics::counter!(m::FILES, "outcome" => outcome).increment(1);
}

/// One JSON line of figures for a committed file (used by `ingest --stats` and tools).
pub fn stats_json(r: &Report) -> String {
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1_000, 3_600_000_000_000, 3)
        .expect("histogram bounds");
    for &ns in &r.chunk_nanos {
        let _ = h.record(ns.max(1_000));
    }
    let cp = &r.checkpoint;
    serde_json::json!({
        "file": cp.name,
        "lines": cp.lines,
        "rated": cp.rated,
        "rejected": cp.lines - cp.rated,
        "bytes": cp.size,
        "seconds": r.seconds,
        "records_per_second": (cp.lines as f64 / r.seconds).round(),
        "mb_per_second": ((cp.size as f64 / 1e6 / r.seconds) * 10.0).round() / 10.0,
        "chunks": r.chunk_nanos.len(),
        "chunk_p50_ms": h.value_at_quantile(0.5) as f64 / 1e6,
        "chunk_p99_ms": h.value_at_quantile(0.99) as f64 / 1e6,
        "peak_rss_mb": peak_rss_bytes() as f64 / 1e6,
        "phases_s": r.phases.iter().map(|(k, v)| (k.to_string(), serde_json::json!((v * 1000.0).round() / 1000.0))).collect::<serde_json::Map<_, _>>(),
    })
    .to_string()
}

/// Peak resident set size of this process, in bytes.
pub fn peak_rss_bytes() -> u64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc == 0 {
        ru.ru_maxrss as u64 * 1024
    } else {
        0
    }
}

/// Prices one usage event for `tollgate quote`: the charge and the deck row.
pub fn quote(
    r: &Reference,
    account: &str,
    service: &str,
    to: &str,
    at: &str,
    usage: u64,
) -> Result<String, String> {
    use crate::rate::rating::Rater;
    use crate::rate::service::Service;
    let service = Service::from_bytes(service.as_bytes())
        .ok_or_else(|| format!("unknown_service: `{service}` is not voice, sms or data"))?;
    let start = crate::rate::cdr::time::parse_rfc3339(at.as_bytes())
        .ok_or_else(|| format!("bad_time: `{at}` is not RFC 3339"))?;
    let (acc, plan_index) = r
        .index
        .find(account.as_bytes())
        .ok_or_else(|| format!("unknown_account: no account `{account}`"))?;
    let layout = crate::rate::cdr::Layout::from_columns(&crate::rate::cdr::Column::ALL.map(Some));
    let mut rater = Rater::new(&r.tariff, &r.index, layout, chrono::Utc::now().timestamp());
    let digits = rater.normalize(to.as_bytes(), service).ok_or_else(|| {
        format!(
            "bad_number: `{}` cannot be normalized",
            crate::rate::cdr::number::redact(to.as_bytes())
        )
    })?;
    let usage = if service == Service::Sms { 1 } else { usage };
    let p = rater
        .price(plan_index, service, &digits, start, usage)
        .map_err(|e| format!("{}: no deck row prices this record", e.code()))?;
    let t = r.tariff.table();
    let row = p.row;
    let plan = &r.accounts.list[acc as usize].plan;
    let local = chrono::DateTime::from_timestamp(start, 0)
        .expect("parsed time is in range")
        .with_timezone(&r.tariff.tz);
    let active: Vec<&str> = t
        .bands
        .iter()
        .enumerate()
        .filter(|(i, _)| p.active_bands & (1 << i) != 0)
        .map(|(_, b)| b.name.as_str())
        .collect();
    Ok(serde_json::to_string_pretty(&serde_json::json!({
        "account_id": account,
        "plan": plan,
        "service": service.name(),
        "number": digits.to_string(),
        "local_time": local.to_rfc3339(),
        "active_bands": active,
        "usage": usage,
        "billed": p.billed,
        "unit": service.unit(),
        "charge": format_micros(p.charge_micros as i128),
        "currency": t.currency.as_str(),
        "month": month_label(p.month),
        "row": {
            "deck": r.tariff.deck_paths()[row.deck.to_native() as usize].display().to_string(),
            "line": row.line.to_native(),
            "prefix": row.prefix.as_str(),
            "destination": t.destinations[row.destination.to_native() as usize].as_str(),
            "band": band_name(&r.tariff, row.band),
            "connect_fee": crate::rate::money::format_nanos(row.connect_fee_nanos.to_native()),
            "rate": crate::rate::money::format_nanos(row.rate_nanos.to_native()),
            "per": row.per.to_native(),
            "first_increment": row.first_increment.to_native(),
            "next_increment": row.next_increment.to_native(),
            "valid_from": if row.valid_from.to_native() == crate::rate::tariff::ALWAYS { serde_json::Value::Null } else {
                let (y, m, d) = crate::rate::cdr::time::civil_from_days(row.valid_from.to_native() as i64);
                serde_json::Value::String(format!("{y:04}-{m:02}-{d:02}"))
            },
        }
    }))
    .expect("json"))
}
