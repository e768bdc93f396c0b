//! Rating one file on the worker pool: chunking, parallel rating, duplicate records,
//! rejects, and the per-file totals handed to the ledger.
//!
//! ```text
//! mapped file ─► chunks on line boundaries, grouped into segments of SEGMENT_BYTES
//! per segment: crossbeam queue ─► W workers
//!   each worker: parse → rate → spill one record per rated CDR into account-range
//!   partitions + record-id hashes into hash partitions + rejects
//! ─► fold (parallel per partition, see totals.rs) into the file's running sums; the
//!    spill buffers are reused by the next segment
//! ─► collector: sorted totals, duplicate record ids (exact re-check of repeated
//!    hashes), absolute line numbers ─► FileOutcome
//! ```
//! Hot path rules: no allocation, lock or log per record; metrics per file. Memory per
//! file: the mapped pages, spill buffers bounded by the segment size, one sum per
//! distinct key and 8 bytes (an id hash) per record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use rustc_hash::FxHashSet;

use crate::ingest::totals::{Agg, FileTotals};
use crate::rate::accounts::AccountIndex;
use crate::rate::cdr::{Column, HeaderError, Layout};
use crate::rate::rating::{line_key, Rater, Reason};
use crate::rate::tariff::Tariff;

/// Bytes a file's content is read from (a memory map, or a buffer in tests).
pub type Data = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// `(month index, local day of month 1..=31, service index)`.
pub type DayKey = (u32, u8, u8);

/// Per-day totals of one worker (or of a whole file): for each month touched, a flat
/// array of 31 days × 3 services. A file touches a handful of months, so the lookup is
/// a compare with the last month used, else a search of those seen; no hashing and no
/// allocation per record.
#[derive(Debug, Default, Clone)]
pub struct Daily {
    /// `(month index, local day number of the month's first day, totals by day × service)`.
    months: Vec<(u32, i32, Box<[Agg; 93]>)>,
    last: usize,
}

impl Daily {
    /// Adds one rated record (`day` is the local day number, `month` its billing month).
    #[inline]
    pub fn add(&mut self, month: u32, day: i32, service: u8, a: &Agg) {
        let i = match self.months.get(self.last) {
            Some(m) if m.0 == month => self.last,
            // Records out of time order change month often: the months seen are
            // searched here (a handful), only a new one takes the cold path.
            _ => match self.months.iter().position(|m| m.0 == month) {
                Some(i) => {
                    self.last = i;
                    i
                }
                None => self.slot(month),
            },
        };
        let m = &mut self.months[i];
        let idx = ((day - m.1) as usize) * 3 + service as usize;
        m.2[idx].add(a);
    }

    /// Removes one record again (duplicate record ids found by the collector).
    pub fn sub(&mut self, month: u32, day: i32, service: u8, a: &Agg) {
        let i = self.slot(month);
        let m = &mut self.months[i];
        let e = &mut m.2[((day - m.1) as usize) * 3 + service as usize];
        e.count -= a.count;
        e.usage -= a.usage;
        e.billed -= a.billed;
        e.charge_micros -= a.charge_micros;
    }

    #[cold]
    fn slot(&mut self, month: u32) -> usize {
        let i = match self.months.iter().position(|m| m.0 == month) {
            Some(i) => i,
            None => {
                let (y, mo) = ((month / 12) as i64, month % 12 + 1);
                let first = crate::rate::cdr::time::days_from_civil(y, mo, 1) as i32;
                self.months
                    .push((month, first, Box::new([Agg::default(); 93])));
                self.months.len() - 1
            }
        };
        self.last = i;
        i
    }

    /// Adds another worker's totals into this one.
    pub fn merge(&mut self, o: &Daily) {
        for (month, _, days) in &o.months {
            let i = self.slot(*month);
            for (mine, theirs) in self.months[i].2.iter_mut().zip(days.iter()) {
                mine.add(theirs);
            }
        }
    }

    /// Non-empty entries, sorted by key.
    pub fn entries(&self) -> Vec<(DayKey, Agg)> {
        let mut out = Vec::new();
        for (month, _, days) in &self.months {
            for (i, a) in days.iter().enumerate() {
                if a.count > 0 {
                    out.push(((*month, (i / 3 + 1) as u8, (i % 3) as u8), *a));
                }
            }
        }
        out.sort_by_key(|e| e.0);
        out
    }
}

/// A rejected line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// 1-based line number in the file.
    pub line: u64,
    pub reason: Reason,
    /// Byte range of the line in the file (without terminator).
    pub start: usize,
    pub end: usize,
}

/// Everything rating produced for one file.
#[derive(Debug, Default)]
pub struct FileOutcome {
    /// Totals sorted by key (account, month, line key), one entry per key.
    pub totals: FileTotals,
    /// Totals per (month, local day, service), sorted by key; they add up to `totals`.
    pub daily: Vec<(DayKey, Agg)>,
    pub rejects: Vec<Reject>,
    /// Records: non-blank lines after the header.
    pub lines: u64,
    pub rated: u64,
    pub rejected_by_reason: [u64; 9],
    pub charge_micros: i64,
    /// Per-chunk processing time in nanoseconds.
    pub chunk_nanos: Vec<u64>,
    /// Wall time of the parallel rating phase and of the serial collection phase.
    pub rate_seconds: f64,
    pub collect_seconds: f64,
    /// Lines rejected as `duplicate_record` because an earlier file committed their
    /// record id inside the window, ascending.
    pub cross_duplicates: Vec<u64>,
    /// The file's entries for the cross-file index (its rated records less the
    /// duplicates), when the check is on.
    pub index: Option<crate::ingest::dedup::FileIndex>,
}

/// The cross-file duplicate check of one file ([`Pool::rate_file_with`]).
pub struct Cross<'a> {
    /// The in-memory filter, probed with the file's ids (the engine adds them once the
    /// file commits).
    pub filter: &'a mut crate::ingest::dedup::Filter,
    /// The exact check: which of these record ids an earlier file committed inside the
    /// window.
    pub exact: &'a ExactCheck<'a>,
    /// A bigger filter (rebuilt from the index), for when the file's ids do not fit:
    /// called with the ids held and the ids to add.
    pub grow: &'a GrowFilter<'a>,
}

/// See [`Cross::grow`].
pub type GrowFilter<'a> =
    dyn Fn(u64, u64) -> Result<crate::ingest::dedup::Filter, String> + Sync + 'a;

/// The exact cross-file check: for each record id, whether an earlier file committed it
/// inside the window (or why the index could not be read).
pub type ExactCheck<'a> = dyn Fn(&[&[u8]]) -> Result<Vec<bool>, String> + Sync + 'a;

/// Why a whole file could not be rated.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("bad header: {0}")]
    Header(#[from] HeaderError),
    #[error("header line is not valid UTF-8 or longer than max_line_bytes")]
    HeaderUnreadable,
    #[error("cancelled by shutdown")]
    Cancelled,
    #[error("rating worker failed: {0}")]
    Worker(String),
    #[error("cross-file duplicate index: {0}")]
    Index(String),
}

/// Input bytes per segment: the spill buffers hold one segment's records (about 40
/// bytes per record, 60 to 80 input bytes per record) before they are folded into the
/// file's running sums and reused.
pub const SEGMENT_BYTES: usize = 128 << 20;

/// Settings for rating a file.
#[derive(Clone)]
pub struct Settings {
    pub columns: Option<Vec<Option<Column>>>,
    pub chunk_bytes: usize,
    pub max_line_bytes: usize,
    /// Input bytes per segment ([`SEGMENT_BYTES`] in the daemon; tests use less).
    pub segment_bytes: usize,
}

/// A worker's per-file state, carried from segment to segment.
struct WorkerState {
    spill: crate::ingest::totals::Spill,
    daily: Daily,
}

/// One segment of a file for the pool.
struct Job {
    data: Data,
    /// One state per worker; each worker takes one when it starts on the segment.
    states: std::sync::Mutex<Vec<WorkerState>>,
    tariff: Arc<Tariff>,
    accounts: Arc<AccountIndex>,
    layout: Layout,
    now: i64,
    max_line: usize,
    chunks: Receiver<(u32, usize, usize)>,
    results: Sender<Result<WorkerOut, String>>,
    cancel: Arc<AtomicBool>,
}

struct ChunkOut {
    idx: u32,
    /// Physical lines, blank ones included.
    lines: u32,
    blank: u32,
    rejects: Vec<(u32, Reason, usize, usize)>,
    /// Where every [`MARK_EVERY`]th line starts, from the chunk's start: a line's number
    /// from its offset by counting at most that many lines.
    marks: Vec<u32>,
    nanos: u64,
}

/// Lines between two [`ChunkOut::marks`].
const MARK_EVERY: u32 = 64;

struct WorkerOut {
    /// Rated records and their record-id hashes, partitioned, and per-day sums.
    state: WorkerState,
    chunks: Vec<ChunkOut>,
}

/// A pool of rating threads fed through crossbeam channels.
pub struct Pool {
    senders: Vec<Sender<Arc<Job>>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

impl Pool {
    /// Starts `workers` rating threads.
    pub fn new(workers: usize) -> Pool {
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for i in 0..workers.max(1) {
            let (tx, rx) = bounded::<Arc<Job>>(1);
            senders.push(tx);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("tollgate-rate-{i}"))
                    .spawn(move || {
                        for job in rx {
                            let out =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    work(&job)
                                }))
                                .map_err(|p| {
                                    p.downcast_ref::<&str>()
                                        .map(|s| s.to_string())
                                        .or_else(|| p.downcast_ref::<String>().cloned())
                                        .unwrap_or_else(|| "panic".into())
                                });
                            let _ = job.results.send(out);
                        }
                    })
                    .expect("spawn rating thread"),
            );
        }
        Pool { senders, handles }
    }

    /// Rates a whole file. `now` is the processing time used by the `future_time` check.
    pub fn rate_file(
        &self,
        data: Data,
        tariff: Arc<Tariff>,
        accounts: Arc<AccountIndex>,
        settings: &Settings,
        now: i64,
        cancel: Arc<AtomicBool>,
    ) -> Result<FileOutcome, FileError> {
        self.rate_file_with(data, tariff, accounts, settings, now, cancel, None)
    }

    /// [`Pool::rate_file`] with the cross-file duplicate check when `cross` is given.
    #[allow(clippy::too_many_arguments)]
    pub fn rate_file_with(
        &self,
        data: Data,
        tariff: Arc<Tariff>,
        accounts: Arc<AccountIndex>,
        settings: &Settings,
        now: i64,
        cancel: Arc<AtomicBool>,
        cross: Option<Cross<'_>>,
    ) -> Result<FileOutcome, FileError> {
        let bytes: &[u8] = (*data).as_ref();
        let Some((layout, body_start, first_line)) = file_layout(bytes, settings)? else {
            return Ok(FileOutcome::default());
        };
        // Chunks on line boundaries.
        let mut chunks = Vec::new();
        let mut pos = body_start;
        while pos < bytes.len() {
            let target = (pos + settings.chunk_bytes).min(bytes.len());
            let end = if target >= bytes.len() {
                bytes.len()
            } else {
                memchr::memchr(b'\n', &bytes[target - 1..]).map_or(bytes.len(), |i| target + i)
            };
            chunks.push((chunks.len() as u32, pos, end));
            pos = end;
        }
        // Partition layout from an estimate of the record count (short CDR lines are
        // ~60 bytes); a wrong estimate only changes speed, never results.
        let body = bytes.len() - body_start;
        let segment_bytes = settings.segment_bytes.max(1);
        let expected = body / 60 + 1;
        let expected_segment = body.min(segment_bytes) / 60 + 1;
        let workers = self.senders.len();
        let spill_layout =
            crate::ingest::totals::Layout::new(accounts.len(), expected_segment, expected);
        let share = |n: usize| n / workers + n / (4 * workers);
        let mut states: Vec<WorkerState> = (0..workers)
            .map(|_| WorkerState {
                spill: crate::ingest::totals::Spill::new(
                    spill_layout,
                    share(expected_segment),
                    share(expected),
                    cross.is_some(),
                ),
                daily: Daily::default(),
            })
            .collect();
        let mut totals = crate::ingest::totals::Totals::new(spill_layout);
        totals.reserve_for(expected);
        let mut chunk_outs: Vec<ChunkOut> = Vec::with_capacity(chunks.len());
        let (mut rate_seconds, mut fold_seconds) = (0.0, 0.0);
        let mut rest = &chunks[..];
        while !rest.is_empty() {
            // The next segment: whole chunks up to segment_bytes (at least one).
            let seg_start = rest[0].1;
            let n = rest
                .iter()
                .position(|c| c.2 - seg_start > segment_bytes)
                .unwrap_or(rest.len())
                .max(1);
            let (segment, tail) = rest.split_at(n);
            rest = tail;
            let started = Instant::now();
            let (ctx, crx) = unbounded();
            for c in segment {
                ctx.send(*c).expect("queue open");
            }
            drop(ctx);
            let (rtx, rrx) = unbounded();
            let job = Arc::new(Job {
                states: std::sync::Mutex::new(std::mem::take(&mut states)),
                data: data.clone(),
                tariff: tariff.clone(),
                accounts: accounts.clone(),
                layout: layout.clone(),
                now,
                max_line: settings.max_line_bytes,
                chunks: crx,
                results: rtx,
                cancel: cancel.clone(),
            });
            for s in &self.senders {
                s.send(job.clone())
                    .map_err(|_| FileError::Worker("pool stopped".into()))?;
            }
            drop(job);
            for _ in 0..workers {
                match rrx.recv() {
                    Ok(Ok(o)) => {
                        states.push(o.state);
                        chunk_outs.extend(o.chunks);
                    }
                    Ok(Err(m)) => return Err(FileError::Worker(m)),
                    Err(_) => return Err(FileError::Worker("worker disappeared".into())),
                }
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(FileError::Cancelled);
            }
            rate_seconds += started.elapsed().as_secs_f64();
            if rest.is_empty() {
                break;
            }
            let t = Instant::now();
            let mut spills: Vec<&mut crate::ingest::totals::Spill> =
                states.iter_mut().map(|s| &mut s.spill).collect();
            totals.fold(&mut spills, workers);
            fold_seconds += t.elapsed().as_secs_f64();
        }
        let t = Instant::now();
        let mut out = collect(
            bytes, &chunks, first_line, totals, states, chunk_outs, &tariff, &accounts, &layout,
            now, cross,
        )?;
        out.rate_seconds = rate_seconds;
        out.collect_seconds = fold_seconds + t.elapsed().as_secs_f64();
        Ok(out)
    }
}

/// The column layout of a file's records, the byte offset where they start and the
/// 1-based number of their first line: from the header line, or from the configured
/// `columns` for header-less files. `None` for an empty file when a header is expected.
pub fn file_layout(
    bytes: &[u8],
    settings: &Settings,
) -> Result<Option<(Layout, usize, u64)>, FileError> {
    Ok(Some(match &settings.columns {
        Some(cols) => (Layout::from_columns(cols), 0usize, 1u64),
        None => {
            if bytes.is_empty() {
                return Ok(None);
            }
            let end = memchr::memchr(b'\n', bytes).unwrap_or(bytes.len());
            if end > settings.max_line_bytes {
                return Err(FileError::HeaderUnreadable);
            }
            let mut header = &bytes[..end];
            if header.last() == Some(&b'\r') {
                header = &header[..header.len() - 1];
            }
            // A UTF-8 byte order mark before the header is tolerated.
            let header = header.strip_prefix(b"\xef\xbb\xbf").unwrap_or(header);
            (
                Layout::from_header(header)?,
                (end + 1).min(bytes.len()),
                2u64,
            )
        }
    }))
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.senders.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// The worker loop for one segment: take chunks until none are left.
fn work(job: &Job) -> WorkerOut {
    let bytes: &[u8] = (*job.data).as_ref();
    let mut rater = Rater::new(&job.tariff, &job.accounts, job.layout.clone(), job.now);
    let table = job.tariff.table();
    let WorkerState {
        mut spill,
        mut daily,
    } = job
        .states
        .lock()
        .expect("states lock")
        .pop()
        .expect("one state per worker");
    let mut chunks = Vec::new();
    while let Ok((idx, start, end)) = job.chunks.recv() {
        if job.cancel.load(Ordering::Relaxed) {
            break;
        }
        let t0 = Instant::now();
        let mut rejects = Vec::new();
        let mut line_no = 0u32;
        let mut blank = 0u32;
        // Each line is scanned (its end and its commas, one pass) one line ahead of
        // rating, so its account slot is loading while the line before is rated.
        let mut scanner = crate::rate::cdr::LineScanner::new(bytes, start, end);
        let mut cur = rater.scan_ahead(&mut scanner, bytes);
        let mut marks = Vec::new();
        while let Some((line_start, line_end)) = cur {
            cur = rater.scan_ahead(&mut scanner, bytes);
            if line_no.is_multiple_of(MARK_EVERY) {
                marks.push((line_start - start) as u32);
            }
            let line = &bytes[line_start..line_end];
            if line.is_empty() {
                // A blank line is not a record: skipped, but it keeps its line number.
                rater.skip_ahead();
                blank += 1;
                line_no += 1;
                continue;
            }
            let res = if line.len() > job.max_line {
                rater.skip_ahead();
                Err(Reason::Malformed)
            } else {
                rater.rate_ahead(line)
            };
            match res {
                Ok((r, id)) => {
                    let row = &table.rows[r.row as usize];
                    let key = (
                        r.account,
                        r.month,
                        line_key(r.service, row.destination.to_native(), row.band),
                    );
                    daily.add(
                        r.month,
                        r.day,
                        r.service as u8,
                        &Agg::one(r.usage, r.billed, r.charge_micros),
                    );
                    spill.push(
                        crate::ingest::totals::Rec {
                            key,
                            count: 1,
                            usage: r.usage,
                            billed: r.billed,
                            charge_micros: r.charge_micros,
                        },
                        id,
                        line_start,
                    );
                    if spill.keeps_ids() {
                        spill.push_id(id, rater.rated_id(line));
                    }
                }
                Err(reason) => rejects.push((line_no, reason, line_start, line_end)),
            }
            line_no += 1;
        }
        let nanos = t0.elapsed().as_nanos() as u64;
        crate::telemetry::WORKER_BUSY_NANOS.fetch_add(nanos, Ordering::Relaxed);
        chunks.push(ChunkOut {
            idx,
            lines: line_no,
            blank,
            rejects,
            marks,
            nanos,
        });
    }
    WorkerOut {
        state: WorkerState { spill, daily },
        chunks,
    }
}

/// The lines (number, start, end) that start at `starts` (sorted byte offsets of rated
/// lines, from the id spill), in file order. A line's number is its chunk's first line
/// number (`bases`) plus the marked lines before it plus the newlines from the last mark
/// to it (fewer than [`MARK_EVERY`] lines).
fn lines_at(
    bytes: &[u8],
    chunks: &[(u32, usize, usize)],
    outs: &[ChunkOut],
    bases: &[u64],
    starts: &[u64],
) -> Vec<(u64, usize, usize)> {
    starts
        .iter()
        .map(|&start| {
            let start = start as usize;
            let c = chunks.partition_point(|ch| ch.1 <= start) - 1;
            let (_, chunk_start, chunk_end) = chunks[c];
            let marks = &outs[c].marks;
            let m = marks.partition_point(|&o| chunk_start + o as usize <= start) - 1;
            let from = chunk_start + marks[m] as usize;
            let line_no = bases[c]
                + m as u64 * MARK_EVERY as u64
                + memchr::memchr_iter(b'\n', &bytes[from..start]).count() as u64;
            let end =
                memchr::memchr(b'\n', &bytes[start..chunk_end]).map_or(chunk_end, |i| start + i);
            let line = &bytes[start..end];
            (
                line_no,
                start,
                start + line.strip_suffix(b"\r").unwrap_or(line).len(),
            )
        })
        .collect()
}

/// A candidate duplicate rated again: line number, byte range, rating, record id and
/// its hash.
type Candidate = (u64, usize, usize, crate::rate::rating::Rated, Vec<u8>, u64);

/// Merges worker outputs into the file outcome and resolves duplicate record ids: those
/// repeated inside the file and, with `cross`, those an earlier file committed.
#[allow(clippy::too_many_arguments)]
fn collect(
    bytes: &[u8],
    chunks: &[(u32, usize, usize)],
    first_line: u64,
    mut totals: crate::ingest::totals::Totals,
    states: Vec<WorkerState>,
    mut chunk_outs: Vec<ChunkOut>,
    tariff: &Tariff,
    accounts: &AccountIndex,
    layout: &Layout,
    now: i64,
    mut cross: Option<Cross<'_>>,
) -> Result<FileOutcome, FileError> {
    let mut out = FileOutcome::default();
    let threads = states.len();
    let mut daily = Daily::default();
    let mut spills = Vec::with_capacity(threads);
    for s in states {
        daily.merge(&s.daily);
        spills.push(s.spill);
    }
    // The last fold; the sums are sorted once the file's duplicates are known (below).
    totals.fold_last(&mut spills, threads);
    // The filter grows (a rebuild from the index) only when the ids this file adds,
    // counted exactly, would fill it past its load.
    if let Some(c) = cross.as_mut() {
        let adding: u64 = spills.iter().map(|s| s.id_count()).sum();
        if c.filter.lacks_room_for(adding) {
            *c.filter = (c.grow)(c.filter.len(), adding).map_err(FileError::Index)?;
        }
    }
    let probe = cross.as_ref().map(|c| crate::ingest::totals::Probe {
        shards: c.filter.shards(),
    });
    let t_scan = Instant::now();
    let scan = crate::ingest::totals::scan_ids(&mut spills, threads, probe);
    let scan_seconds = t_scan.elapsed().as_secs_f64();
    drop(spills);
    let crate::ingest::totals::IdScan {
        parts,
        id_bytes,
        repeated,
        maybe,
        candidate_starts,
        sorted,
    } = scan;
    // Without the cross-file index the id buffers are done with.
    let parts = if cross.is_some() { parts } else { Vec::new() };
    // The spill buffers are gone: their pages go back before the totals are encoded
    // into the commit batch (see release_freed_memory).
    crate::ingest::totals::release_freed_memory();
    // Absolute line numbers.
    chunk_outs.sort_by_key(|c| c.idx);
    debug_assert_eq!(chunk_outs.len(), chunks.len());
    let mut base = first_line;
    let mut bases = Vec::with_capacity(chunk_outs.len());
    let mut rejects = Vec::new();
    for c in &chunk_outs {
        bases.push(base);
        for &(l, reason, s, e) in &c.rejects {
            rejects.push(Reject {
                line: base + l as u64,
                reason,
                start: s,
                end: e,
            });
        }
        out.lines += (c.lines - c.blank) as u64;
        out.chunk_nanos.push(c.nanos);
        base += c.lines as u64;
    }
    // Duplicate record ids: a hash seen twice, or one the filter may hold, is a
    // candidate; candidates are confirmed by comparing the record ids themselves, in
    // file order: a repeat inside the file against the ids before it, the first of its
    // id against the ids earlier files committed (the exact check on the store).
    // The totals of the duplicates, taken out when the totals are finished below.
    let mut subs: Vec<(crate::ingest::totals::AggKey, Agg)> = Vec::new();
    // (hash, line start) of every duplicate: they stay out of the index.
    let mut dup_at: Vec<(u64, u64)> = Vec::new();
    drop(repeated);
    if !candidate_starts.is_empty() {
        // The rated lines whose id hash is a candidate (where the id spill says they
        // start), found and rated again on `threads` threads, each over a run of the
        // candidates in file order; then, in file order, the first of each id against
        // the ids before it.
        let per = candidate_starts.len().div_ceil(threads.max(1));
        let rerated: Vec<Vec<Candidate>> = std::thread::scope(|s| {
            let handles: Vec<_> = candidate_starts
                .chunks(per.max(1))
                .map(|starts| {
                    let (chunk_outs, bases) = (&chunk_outs, &bases);
                    s.spawn(move || {
                        let mut rater = Rater::new(tariff, accounts, layout.clone(), now);
                        lines_at(bytes, chunks, chunk_outs, bases, starts)
                            .into_iter()
                            .filter_map(|(line_no, line_start, line_end)| {
                                let (r, _) = rater.rate_in(bytes, line_start, line_end).ok()?;
                                let line = &bytes[line_start..line_end];
                                let rid = rater.record_id(line).expect("line rated");
                                let h = xxhash_rust::xxh3::xxh3_64(&rid);
                                Some((line_no, line_start, line_end, r, rid, h))
                            })
                            .collect()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("candidate thread panicked"))
                .collect()
        });
        let table = tariff.table();
        let mut first_seen: rustc_hash::FxHashSet<Vec<u8>> = FxHashSet::default();
        // (line, start, end, rating, id hash, repeated in the file, index in `ask`).
        let mut rated = Vec::with_capacity(candidate_starts.len());
        let mut ask: Vec<Vec<u8>> = Vec::new();
        for (line_no, line_start, line_end, r, rid, h) in rerated.into_iter().flatten() {
            let again = first_seen.contains(&rid);
            let mut asked = usize::MAX;
            if !again {
                if maybe.contains(&h) {
                    asked = ask.len();
                    ask.push(rid.clone());
                }
                first_seen.insert(rid);
            }
            rated.push((line_no, line_start, line_end, r, h, again, asked));
        }
        let earlier = match (&cross, ask.is_empty()) {
            (Some(c), false) => {
                let ids: Vec<&[u8]> = ask.iter().map(Vec::as_slice).collect();
                let t = Instant::now();
                let got = (c.exact)(&ids).map_err(FileError::Index)?;
                tracing::debug!(
                    ids = ids.len(),
                    seconds = t.elapsed().as_secs_f64(),
                    "cross-file index: exact check"
                );
                if got.len() != ids.len() {
                    return Err(FileError::Index(
                        "exact check answered the wrong count".into(),
                    ));
                }
                got
            }
            _ => Vec::new(),
        };
        for (line_no, line_start, line_end, r, h, again, asked) in rated {
            let earlier = asked != usize::MAX && earlier[asked];
            if !(again || earlier) {
                continue;
            }
            let row = &table.rows[r.row as usize];
            let key = (
                r.account,
                r.month,
                line_key(r.service, row.destination.to_native(), row.band),
            );
            subs.push((key, Agg::one(r.usage, r.billed, r.charge_micros)));
            daily.sub(
                r.month,
                r.day,
                r.service as u8,
                &Agg::one(r.usage, r.billed, r.charge_micros),
            );
            rejects.push(Reject {
                line: line_no,
                reason: Reason::DuplicateRecord,
                start: line_start,
                end: line_end,
            });
            if earlier {
                out.cross_duplicates.push(line_no);
            }
            dup_at.push((h, line_start as u64));
        }
        rejects.sort_by_key(|r| r.line);
    }
    let totals = totals
        .finish_without(subs, threads)
        .map_err(|k| FileError::Worker(format!("a duplicate's total {k:?} was not counted")))?;
    if cross.is_some() {
        let t_encode = Instant::now();
        let mut index = encode_index(parts, id_bytes, &dup_at, threads);
        index.filter_adds = sorted;
        out.index = Some(index);
        crate::ingest::totals::release_freed_memory();
        tracing::debug!(
            scan_seconds,
            maybes = maybe.len(),
            encode_seconds = t_encode.elapsed().as_secs_f64(),
            "cross-file index: id scan (repeats, filter probe and insert), encoding"
        );
    }
    for r in &rejects {
        out.rejected_by_reason[r.reason as usize] += 1;
    }
    out.rated = out.lines - rejects.len() as u64;
    out.charge_micros = totals.iter().map(|e| e.1.charge_micros).sum();
    out.totals = totals;
    out.daily = daily.entries();
    out.rejects = rejects;
    Ok(out)
}

/// Encodes the file's entries of the cross-file index from the id buffers (per id
/// partition, per worker: hash and line start of each rated record) and the record ids
/// the workers kept beside them (`id_bytes`, entries already encoded, same order),
/// leaving out the duplicates (`dup_at`: hash and line start). Per partition, on
/// `threads` threads: the bytes of each disk bucket counted, then every entry copied to
/// its bucket's place in one buffer (both walks sequential over the kept ids; the
/// writes land in a buffer of the partition's size). Frees the buffers as it goes.
fn encode_index(
    parts: Vec<Vec<Vec<crate::ingest::totals::IdAt>>>,
    id_bytes: Vec<Vec<Vec<u8>>>,
    dup_at: &[(u64, u64)],
    threads: usize,
) -> crate::ingest::dedup::FileIndex {
    use crate::ingest::dedup::{disk_bucket, entry_len, IndexPart, BUCKET_BITS_DISK};
    assert_eq!(
        parts.len(),
        id_bytes.len(),
        "record ids kept per id partition"
    );
    let n_parts = parts.len().max(1);
    let part_bits = n_parts.trailing_zeros();
    let threads = threads.max(1);
    type Job = (usize, Vec<Vec<crate::ingest::totals::IdAt>>, Vec<Vec<u8>>);
    let mut jobs: Vec<Vec<Job>> = (0..threads).map(|_| Vec::new()).collect();
    for (p, (bufs, kept)) in parts.into_iter().zip(id_bytes).enumerate() {
        jobs[p % threads].push((p, bufs, kept));
    }
    let mut done: Vec<(usize, IndexPart, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|mine| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (p, bufs, kept) in mine {
                        let part_of = |h: u64| h.checked_shr(64 - part_bits).unwrap_or(0) as usize;
                        let dups: FxHashSet<u64> = dup_at
                            .iter()
                            .filter(|d| part_of(d.0) == p)
                            .map(|d| d.1)
                            .collect();
                        let local_bits = BUCKET_BITS_DISK - part_bits;
                        let first = (p as u32) << local_bits;
                        // Every entry is asked twice, and every partition of a file with
                        // in-file duplicates has some: the set is asked only past a map.
                        let marks = crate::ingest::totals::Prefilter::new(dups.iter().copied(), 18);
                        let keep = |line: u64| {
                            dups.is_empty() || !marks.may_hold(line) || !dups.contains(&line)
                        };
                        // Bytes per bucket; then each non-empty bucket's value is its
                        // format byte and its entries.
                        let mut size = vec![0usize; 1usize << local_bits];
                        let mut n = 0u64;
                        // Every entry of the partition, in spill order: its hash, line
                        // start and bytes (plain loops: a flat_map over the workers'
                        // buffers did not optimise into one).
                        for (ids, bytes) in bufs.iter().zip(&kept) {
                            let mut at = 0usize;
                            for &(h, line) in ids {
                                let len = entry_len(&bytes[at..]);
                                if keep(line) {
                                    size[(disk_bucket(h) - first) as usize] += len;
                                    n += 1;
                                }
                                at += len;
                            }
                        }
                        let mut part = IndexPart {
                            buf: Vec::new(),
                            chunks: Vec::new(),
                        };
                        let mut total = 0usize;
                        let mut next = size;
                        for (b, s) in next.iter_mut().enumerate() {
                            if *s > 0 {
                                part.chunks.push((first + b as u32, total, total + 1 + *s));
                                total += 1 + *s;
                                *s = total - *s; // where this bucket's entries go
                            }
                        }
                        part.buf = vec![0u8; total];
                        for &(_, start, _) in &part.chunks {
                            part.buf[start] = crate::ingest::dedup::VALUE_FORMAT;
                        }
                        for (ids, bytes) in bufs.iter().zip(&kept) {
                            let mut from = 0usize;
                            for &(h, line) in ids {
                                let len = entry_len(&bytes[from..]);
                                if keep(line) {
                                    let at = &mut next[(disk_bucket(h) - first) as usize];
                                    part.buf[*at..*at + len]
                                        .copy_from_slice(&bytes[from..from + len]);
                                    *at += len;
                                }
                                from += len;
                            }
                        }
                        drop((bufs, kept));
                        out.push((p, part, n));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("index encoding thread panicked"))
            .collect()
    });
    done.sort_by_key(|d| d.0);
    let ids = done.iter().map(|d| d.2).sum();
    crate::ingest::dedup::FileIndex {
        parts: done.into_iter().map(|d| d.1).collect(),
        ids,
        filter_adds: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rating does not depend on the order of the records: the lines of a backlog file
    /// (random times over March to October 2026, both DST switches, mixed offsets, every
    /// bad kind) rated in file order, sorted by start time, shuffled, and each by a
    /// fresh rater, give the same result per line.
    #[test]
    fn rating_is_the_same_in_any_order() {
        use crate::demo::synth::{self, CdrBatch, Shape, Spec, SplitMix64, WorkspaceOptions};
        let dir = tempfile::tempdir().unwrap();
        let spec = Spec {
            seed: 11,
            accounts: 2_000,
            prefixes: 400,
            bad_ratio_ppm: 17_000,
        };
        let ws =
            synth::write_workspace_with(dir.path(), &spec, &WorkspaceOptions { rate_changes: 12 })
                .unwrap();
        let tariff = Tariff::load(&ws.plans, &dir.path().join("data")).unwrap();
        let list = crate::rate::accounts::Accounts::load(&ws.accounts).unwrap();
        let accounts = AccountIndex::build(&list, &tariff).unwrap();
        let mut file = Vec::new();
        let batch = CdrBatch {
            year: 2026,
            month: 3,
            records: 30_000,
            file_tag: "O".into(),
        };
        synth::write_cdrs_shaped(&mut file, &spec, &batch, Shape::Backlog { months: 8 }).unwrap();
        let text = String::from_utf8(file).unwrap();
        let mut lines = text.lines();
        let layout = Layout::from_header(lines.next().unwrap().as_bytes()).unwrap();
        let lines: Vec<&str> = lines.collect();
        let now = 1_900_000_000;
        let rate_all = |order: &[usize]| {
            let mut rater = Rater::new(&tariff, &accounts, layout.clone(), now);
            let mut out = vec![None; lines.len()];
            for &i in order {
                out[i] = Some(rater.rate_line(lines[i].as_bytes()));
            }
            out
        };
        let in_file: Vec<usize> = (0..lines.len()).collect();
        let want = rate_all(&in_file);
        let rated = want.iter().filter(|r| matches!(r, Some(Ok(_)))).count();
        assert!(rated > 29_000, "{rated}");
        let mut by_time = in_file.clone();
        by_time.sort_by_key(|&i| match &want[i] {
            Some(Ok((r, _))) => r.start,
            _ => i64::MIN,
        });
        assert_eq!(rate_all(&by_time), want);
        let mut shuffled = in_file.clone();
        let mut rng = SplitMix64::new(5);
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        assert_eq!(rate_all(&shuffled), want);
        for (i, line) in lines.iter().enumerate().step_by(7) {
            let mut fresh = Rater::new(&tariff, &accounts, layout.clone(), now);
            assert_eq!(Some(fresh.rate_line(line.as_bytes())), want[i], "{line}");
        }
    }

    #[test]
    fn daily_adds_merges_and_subtracts_by_local_day() {
        let one = |charge| Agg {
            count: 1,
            usage: 60,
            billed: 60,
            charge_micros: charge,
        };
        let oct = 2026 * 12 + 9;
        let nov = oct + 1;
        // Local day numbers: 2026-10-01 and 2026-10-31, 2026-11-01.
        let d_oct1 = crate::rate::cdr::time::days_from_civil(2026, 10, 1) as i32;
        let (mut a, mut b) = (Daily::default(), Daily::default());
        a.add(oct, d_oct1, 0, &one(10));
        a.add(oct, d_oct1 + 30, 1, &one(20));
        a.add(nov, d_oct1 + 31, 2, &one(30));
        a.add(oct, d_oct1, 0, &one(5));
        b.add(oct, d_oct1, 0, &one(1));
        a.merge(&b);
        a.sub(oct, d_oct1, 0, &one(5));
        let e = a.entries();
        let keys: Vec<(DayKey, u64, i64)> = e
            .iter()
            .map(|(k, v)| (*k, v.count, v.charge_micros))
            .collect();
        assert_eq!(
            keys,
            vec![
                ((oct, 1, 0), 2, 11),
                ((oct, 31, 1), 1, 20),
                ((nov, 1, 2), 1, 30)
            ]
        );
        // A day whose records were all removed again is not emitted.
        a.sub(oct, d_oct1 + 30, 1, &one(20));
        assert_eq!(a.entries().len(), 2);
    }
}
