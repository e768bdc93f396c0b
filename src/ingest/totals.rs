//! Per-file totals and duplicate-id candidates, built in two passes so that rating never
//! waits on memory.
//!
//! A file touches about one (account, month, line key) total per record — far more
//! totals than the CPU caches hold — so updating a hash table per record costs a cache
//! and TLB miss per record. Instead:
//!
//! 1. **Spill** (on the rating workers, per record): append one fixed-size [`Rec`] to one
//!    of `P` partition buffers chosen by account index range, and the record-id hash to
//!    one of `Q` buffers chosen by its top bits. Writes are sequential: the buffer tails
//!    stay in cache.
//! 2. **Fold** (after every segment of the file, in parallel over the partitions): each
//!    account partition's running sums — a small hash table, one entry per key — are
//!    small enough to stay inside the cache while every worker's new records for the
//!    partition are added to them. The spill buffers are then emptied and reused by the
//!    next segment, so their pages are touched once per file run, not once per record,
//!    and their size is bounded by the segment, not the file.
//! 3. **Finish**: each partition's sums, less the records of duplicates found meanwhile
//!    ([`Totals::finish_without`]), are sorted by key in place; account partitions
//!    are ranges, so the sorted partitions in partition order are the file's totals
//!    sorted by key ([`FileTotals`]: moved, never copied, and released run by run by the
//!    encoder of the commit batch). Id partitions yield the hashes seen more than once.
//!
//! Memory: one [`Rec`] (40 bytes) per record of the current segment, the running sums
//! (48 bytes and an index slot or two per distinct key), and one id hash (8 bytes) per
//! record of the file — the one structure that grows with the file, since a duplicate
//! may repeat any earlier id.

use std::borrow::BorrowMut;

use rustc_hash::FxHashSet;

/// Per-(account, month, line key) totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Agg {
    pub count: u64,
    pub usage: u64,
    pub billed: u64,
    pub charge_micros: i64,
}

impl Agg {
    /// The totals of one record.
    #[inline]
    pub fn one(usage: u64, billed: u64, charge_micros: i64) -> Agg {
        Agg {
            count: 1,
            usage,
            billed,
            charge_micros,
        }
    }

    /// Adds another total into this one.
    #[inline]
    pub fn add(&mut self, o: &Agg) {
        self.count += o.count;
        self.usage += o.usage;
        self.billed += o.billed;
        self.charge_micros += o.charge_micros;
    }
}

/// `(account index, month index, line key)`.
pub type AggKey = (u32, u32, u32);

/// Records per partition the layout aims at: a partition's records and its sums fit the
/// per-core cache while it is sorted.
const TARGET_PER_PARTITION: usize = 16 * 1024;
/// Upper bound on the number of partitions (buffer tails that must stay cached).
const MAX_PARTITIONS: usize = 4096;
/// Upper bound on the number of id partitions. Every rated record appends to the tail of
/// one account partition and one id partition; with 1024 id tails per worker the tails
/// outgrew the L1 cache and the appends stalled rating. 64 tails fit beside the account
/// tails; finding repeats in a bigger partition costs less than those stalls did.
const MAX_ID_PARTITIONS: usize = 64;

/// One rated record's contribution to its total, or (in the running sums) a total of
/// `count` records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Rec {
    pub key: AggKey,
    /// Records summed (1 when spilled); fills what would be padding.
    pub count: u32,
    pub usage: u64,
    pub billed: u64,
    pub charge_micros: i64,
}

/// How records and ids are spread over partitions; the same for every worker of a file.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Account partition = account index >> `account_shift`.
    account_shift: u32,
    account_parts: usize,
    /// Id partition = hash >> `id_shift`.
    id_shift: u32,
    id_parts: usize,
}

fn parts_for(records: usize) -> usize {
    (records / TARGET_PER_PARTITION)
        .next_power_of_two()
        .clamp(1, MAX_PARTITIONS)
}

impl Layout {
    /// A layout for segments of about `segment_records` records and files of about
    /// `file_records` records over `n_accounts` dense account indices (`0..n_accounts`).
    pub fn new(n_accounts: usize, segment_records: usize, file_records: usize) -> Layout {
        let bits = parts_for(segment_records).trailing_zeros();
        // Smallest shift that maps every account index into at most 2^bits partitions.
        let account_bits = usize::BITS - n_accounts.saturating_sub(1).leading_zeros();
        let account_shift = account_bits.saturating_sub(bits);
        let account_parts = (n_accounts.saturating_sub(1) >> account_shift) + 1;
        let id_parts = parts_for(file_records).min(MAX_ID_PARTITIONS);
        Layout {
            account_shift,
            account_parts,
            id_shift: 64 - id_parts.trailing_zeros(),
            id_parts,
        }
    }

    /// Number of account partitions.
    pub fn account_parts(&self) -> usize {
        self.account_parts
    }
}

/// One worker's spill buffers for one file.
pub struct Spill {
    layout: Layout,
    recs: Vec<Vec<Rec>>,
    /// (record-id hash, byte offset of the line) per rated record.
    ids: Vec<Vec<IdAt>>,
    /// With the cross-file index: per id partition, the record ids of `ids` in the same
    /// order, each as the index stores it (varint length, id bytes), copied while the
    /// line is in cache so that the index values are built without reading the file
    /// again.
    id_bytes: Vec<Vec<u8>>,
}

/// A rated record's id hash and the byte offset of its line in the file (to read the id
/// again for the cross-file index, without a second pass over the file).
pub type IdAt = (u64, u64);

impl Spill {
    /// Empty buffers for `layout`; `segment_hint` and `file_hint` are this worker's
    /// expected share of a segment and of the file; `keep_ids`: the record ids are kept
    /// too ([`Spill::push_id`], for the cross-file index).
    pub fn new(layout: Layout, segment_hint: usize, file_hint: usize, keep_ids: bool) -> Spill {
        let per_rec = segment_hint / layout.account_parts + 16;
        let per_id = file_hint / layout.id_parts + 16;
        Spill {
            id_bytes: if keep_ids {
                (0..layout.id_parts)
                    .map(|_| Vec::with_capacity(per_id * 12))
                    .collect()
            } else {
                Vec::new()
            },
            layout,
            recs: (0..layout.account_parts)
                .map(|_| Vec::with_capacity(per_rec))
                .collect(),
            ids: (0..layout.id_parts)
                .map(|_| Vec::with_capacity(per_id))
                .collect(),
        }
    }

    /// Adds one rated record (`rec.count` is 1), its record-id hash and where its line
    /// starts.
    #[inline]
    pub fn push(&mut self, rec: Rec, id_hash: u64, line_start: usize) {
        let p = (rec.key.0 >> self.layout.account_shift) as usize;
        let recs = &mut self.recs[p];
        recs.push(rec);
        prefetch_ahead(recs, REC_AHEAD);
        // A shift by 64 (a single partition) is not defined for u64: use checked_shr.
        let q = id_hash.checked_shr(self.layout.id_shift).unwrap_or(0) as usize;
        let ids = &mut self.ids[q];
        ids.push((id_hash, line_start as u64));
        prefetch_ahead(ids, ID_AHEAD);
    }

    /// Record-id hashes spilled (the rated records of the file so far).
    pub fn id_count(&self) -> u64 {
        self.ids.iter().map(|v| v.len() as u64).sum()
    }

    /// Whether the record ids are kept ([`Spill::push_id`]).
    #[inline]
    pub fn keeps_ids(&self) -> bool {
        !self.id_bytes.is_empty()
    }

    /// Keeps the record id of the record [`Spill::push`] added last (same `id_hash`),
    /// encoded as an index entry; only when [`Spill::keeps_ids`].
    #[inline]
    pub fn push_id(&mut self, id_hash: u64, id: &[u8]) {
        let q = id_hash.checked_shr(self.layout.id_shift).unwrap_or(0) as usize;
        let bytes = &mut self.id_bytes[q];
        crate::ingest::dedup::encode_entry(bytes, id);
        // The partition's next cache line, before an append lands in it.
        if bytes.len() + 64 < bytes.capacity() {
            crate::rate::hint::prefetch(bytes.as_ptr().wrapping_add(bytes.len() + 64));
        }
    }
}

/// Records and ids past a partition's tail whose cache line [`Spill::push`] asks for in
/// advance (a line and a half ahead).
const REC_AHEAD: usize = 3;
const ID_AHEAD: usize = 6;

/// Asks for the cache line `ahead` elements past the end of `v`, when it is inside the
/// buffer's capacity. A partition's next record lands there a hundred-odd records
/// later; without the hint its write missed the cache, and the stores of rating queued
/// up behind it. (A read prefetch: the write-intent hint needs the PRFCHW target
/// feature, which a baseline x86-64 build does not assume; the line still arrives
/// before the store.)
#[inline(always)]
fn prefetch_ahead<T>(v: &Vec<T>, ahead: usize) {
    if v.len() + ahead < v.capacity() {
        crate::rate::hint::prefetch(v.as_ptr().wrapping_add(v.len() + ahead));
    }
}

/// One fold job: partition number, its running sums, every worker's new records.
type FoldJob = (usize, PartSums, Vec<Vec<Rec>>);

/// The running sums of one file, per account partition.
pub struct Totals {
    layout: Layout,
    parts: Vec<PartSums>,
    /// Entries each partition's sums reserve at their first fold (see
    /// [`Totals::reserve_for`]).
    reserve: usize,
}

impl Totals {
    /// No totals yet.
    pub fn new(layout: Layout) -> Totals {
        Totals {
            layout,
            parts: (0..layout.account_parts)
                .map(|_| PartSums::default())
                .collect(),
            reserve: 0,
        }
    }

    /// Has each partition's sums reserve room for a quarter of its share of `records` at
    /// their first fold, so that they do not move to a bigger buffer while the file is
    /// folded (a move copies the sums into fresh pages): a file's distinct (account,
    /// month, line) keys were 12 % of its records on the tidy benchmark file and 22 % on
    /// the backlog file. Reserved room that stays unused is never touched, but it is
    /// address space the process commits: a quarter keeps that close to what is used.
    pub fn reserve_for(&mut self, records: usize) {
        self.reserve = records / self.layout.account_parts.max(1) / 4;
    }

    /// Moves every record spilled so far into the running sums, on `threads` threads.
    /// The spills' record buffers are left empty with their capacity kept.
    pub fn fold<S: BorrowMut<Spill>>(&mut self, spills: &mut [S], threads: usize) {
        self.fold_then(spills, threads, false);
    }

    /// [`Totals::fold`]; with `last` (the last fold of a file), the spills' record
    /// buffers are released instead of kept for another segment.
    fn fold_then<S: BorrowMut<Spill>>(&mut self, spills: &mut [S], threads: usize, last: bool) {
        let threads = threads.max(1);
        // Deal partitions round-robin: skewed partitions (popular accounts) spread out.
        let mut jobs: Vec<Vec<FoldJob>> = (0..threads).map(|_| Vec::new()).collect();
        for p in 0..self.layout.account_parts {
            if spills.iter_mut().all(|s| s.borrow_mut().recs[p].is_empty()) {
                continue;
            }
            let bufs = spills
                .iter_mut()
                .map(|s| std::mem::take(&mut s.borrow_mut().recs[p]))
                .collect();
            jobs[p % threads].push((p, std::mem::take(&mut self.parts[p]), bufs));
        }
        let reserve = self.reserve;
        let done = on_threads(jobs, move |(p, mut sums, mut bufs): FoldJob| {
            if sums.entries.capacity() == 0 {
                sums.entries.reserve_exact(reserve);
            }
            for buf in &bufs {
                sums.add_all(buf);
            }
            if last {
                bufs = Vec::new();
            } else {
                bufs.iter_mut().for_each(Vec::clear);
            }
            (p, sums, bufs)
        });
        for (p, sums, bufs) in done {
            self.parts[p] = sums;
            for (s, b) in spills.iter_mut().zip(bufs) {
                s.borrow_mut().recs[p] = b;
            }
        }
        if last {
            for s in spills.iter_mut() {
                s.borrow_mut().recs.iter_mut().for_each(|r| *r = Vec::new());
            }
        }
    }

    /// The last fold of a file: what is left is folded and the spills' record buffers
    /// are released (their id buffers are left for [`scan_ids`]). The sums keep their
    /// index until [`Totals::finish_without`].
    pub fn fold_last<S: BorrowMut<Spill>>(&mut self, spills: &mut [S], threads: usize) {
        self.fold_then(spills, threads, true);
    }

    /// Folds what is left and returns the totals sorted by key ([`Totals::fold_last`],
    /// then [`Totals::finish_without`] nothing).
    #[cfg(test)]
    pub fn finish<S: BorrowMut<Spill>>(mut self, spills: &mut [S], threads: usize) -> FileTotals {
        self.fold_last(spills, threads);
        self.finish_without(Vec::new(), threads)
            .expect("nothing to take out")
    }

    /// The totals sorted by key, after taking out `subs` (the records of duplicates
    /// found once the file was folded): on `threads` threads, per partition, each sub is
    /// found through the partition's index (a sub costs a lookup, not a search of the
    /// sorted totals), totals left at zero records are dropped, then the partition is
    /// sorted. Fails, naming the key, when a sub has no total or takes more records out
    /// than it holds.
    pub fn finish_without(
        self,
        subs: Vec<(AggKey, Agg)>,
        threads: usize,
    ) -> Result<FileTotals, AggKey> {
        let threads = threads.max(1);
        let mut per_part: Vec<Vec<(AggKey, Agg)>> = vec![Vec::new(); self.parts.len()];
        for s in subs {
            let p = (s.0 .0 >> self.layout.account_shift) as usize;
            per_part.get_mut(p).ok_or(s.0)?.push(s);
        }
        type Job = (usize, PartSums, Vec<(AggKey, Agg)>);
        let mut jobs: Vec<Vec<Job>> = (0..threads).map(|_| Vec::new()).collect();
        for (p, (sums, subs)) in self.parts.into_iter().zip(per_part).enumerate() {
            if !sums.entries.is_empty() || !subs.is_empty() {
                jobs[p % threads].push((p, sums, subs));
            }
        }
        let mut done = on_threads(jobs, |(p, mut sums, subs): Job| {
            let mut emptied = false;
            for (key, a) in subs {
                let e = match sums.find(&key) {
                    Some(i) => &mut sums.entries[i].1,
                    None => return (p, Err(key)),
                };
                let Some(count) = e.count.checked_sub(a.count) else {
                    return (p, Err(key));
                };
                e.count = count;
                e.usage -= a.usage;
                e.billed -= a.billed;
                e.charge_micros -= a.charge_micros;
                emptied |= count == 0;
            }
            sums.index = Vec::new();
            if emptied {
                sums.entries.retain(|e| e.1.count > 0);
            }
            // One 128-bit compare instead of three.
            sums.entries.sort_unstable_by_key(|e| {
                (e.0 .0 as u128) << 64 | (e.0 .1 as u128) << 32 | e.0 .2 as u128
            });
            (p, Ok(sums.entries))
        });
        done.sort_unstable_by_key(|d| d.0);
        // Account partitions are ranges of accounts: in partition order, sorted sums are
        // sorted by key. They are moved, not copied: a copy doubled the memory the
        // totals take at their peak.
        let mut parts = Vec::with_capacity(done.len());
        for (_, run) in done {
            let run = run?;
            if !run.is_empty() {
                parts.push(run);
            }
        }
        Ok(FileTotals { parts })
    }
}

/// Runs `f` on every job, each list of jobs on a thread of its own; the results in no
/// particular order.
fn on_threads<J: Send, R: Send>(jobs: Vec<Vec<J>>, f: impl Fn(J) -> R + Sync) -> Vec<R> {
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|mine| s.spawn(move || mine.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("totals thread panicked"))
            .collect()
    })
}

/// The totals of one file, sorted by key, one entry per key: sorted runs of ascending
/// keys (one per account partition, in partition order), so that the encoder can
/// release each run as soon as it is written into the commit batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileTotals {
    /// Non-empty runs; every key of a run is below every key of the next.
    parts: Vec<Vec<(AggKey, Agg)>>,
}

impl FileTotals {
    /// Every total in key order.
    pub fn iter(&self) -> impl Iterator<Item = &(AggKey, Agg)> + '_ {
        self.parts.iter().flatten()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    /// No keys at all.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The total of `key`.
    #[cfg(test)]
    pub fn get(&self, key: &AggKey) -> Option<&Agg> {
        // The first run whose last key is not below `key`.
        let p = self
            .parts
            .partition_point(|run| run.last().is_some_and(|l| l.0 < *key));
        let run = self.parts.get(p)?;
        let i = run.binary_search_by_key(key, |e| e.0).ok()?;
        Some(&run[i].1)
    }

    /// The runs, in key order, each sorted by key; for consumers that release them
    /// one by one.
    pub fn into_runs(self) -> std::vec::IntoIter<Vec<(AggKey, Agg)>> {
        self.parts.into_iter()
    }
}

/// The record-id hashes every worker spilled that occur more than once, found on
/// `threads` threads. Empties the spills' id buffers.
#[cfg(test)]
pub fn repeated_ids<S: BorrowMut<Spill>>(spills: &mut [S], threads: usize) -> FxHashSet<u64> {
    scan_ids(spills, threads, None).repeated
}

/// The cross-file filter handed to [`scan_ids`]: its shards.
pub struct Probe<'a> {
    pub shards: &'a [crate::ingest::dedup::Shard],
}

/// What [`scan_ids`] found, with the id buffers it took (per id partition, per worker).
#[derive(Default)]
pub struct IdScan {
    pub parts: Vec<Vec<Vec<IdAt>>>,
    /// The kept record ids ([`Spill::push_id`]), per id partition, per worker (empty
    /// when the spills kept none).
    pub id_bytes: Vec<Vec<Vec<u8>>>,
    /// Hashes seen more than once in the file.
    pub repeated: FxHashSet<u64>,
    /// Hashes the cross-file filter may hold from earlier files.
    pub maybe: FxHashSet<u64>,
    /// Where the lines of every repeated or maybe-held hash start, sorted: the rated
    /// records a duplicate check must look at again, found without a pass over the file.
    pub candidate_starts: Vec<u64>,
    /// With a probe: each id partition's hashes, sorted (what the file adds to the
    /// filter once it is committed).
    pub sorted: Vec<Vec<u64>>,
}

/// Takes the spills' id buffers and finds, per id partition on `threads` threads, the
/// hashes repeated in the file and, with a `probe`, those the cross-file filter may
/// hold (each partition probes its own shards of the filter; the file's hashes are
/// returned sorted, to be added when the file commits).
pub fn scan_ids<S: BorrowMut<Spill>>(
    spills: &mut [S],
    threads: usize,
    probe: Option<Probe<'_>>,
) -> IdScan {
    let Some(layout) = spills.first_mut().map(|s| s.borrow_mut().layout) else {
        return IdScan::default();
    };
    let threads = threads.max(1);
    let parts: Vec<Vec<Vec<IdAt>>> = (0..layout.id_parts)
        .map(|p| {
            spills
                .iter_mut()
                .map(|s| std::mem::take(&mut s.borrow_mut().ids[p]))
                .collect()
        })
        .collect();
    let id_bytes: Vec<Vec<Vec<u8>>> = if spills.iter_mut().all(|s| s.borrow_mut().keeps_ids()) {
        (0..layout.id_parts)
            .map(|p| {
                spills
                    .iter_mut()
                    .map(|s| std::mem::take(&mut s.borrow_mut().id_bytes[p]))
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    };
    type Job<'s, 'b> = (
        &'b [Vec<IdAt>],
        Option<(&'s [crate::ingest::dedup::Shard], usize)>,
    );
    let mut jobs: Vec<Vec<Job<'_, '_>>> = (0..threads).map(|_| Vec::new()).collect();
    let keep_sorted = probe.is_some();
    let per = crate::ingest::dedup::SHARDS / layout.id_parts;
    let mut shard_runs: Vec<Option<(&[crate::ingest::dedup::Shard], usize)>> = match probe {
        Some(p) => p
            .shards
            .chunks(per)
            .enumerate()
            .map(|(i, c)| Some((c, i * per)))
            .collect(),
        None => (0..layout.id_parts).map(|_| None).collect(),
    };
    for (p, bufs) in parts.iter().enumerate() {
        let shards = shard_runs[p].take();
        if bufs.iter().any(|b| !b.is_empty()) {
            jobs[p % threads].push((bufs, shards));
        }
    }
    type Found = (Vec<u64>, Vec<u64>, Vec<u64>, Vec<Vec<u64>>);
    let found: Vec<Found> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|mine| {
                s.spawn(move || {
                    let mut repeated = Vec::new();
                    let mut maybe = Vec::new();
                    let mut starts = Vec::new();
                    let mut kept = Vec::new();
                    for (bufs, shards) in mine {
                        let (r0, m0) = (repeated.len(), maybe.len());
                        let sorted = sorted_hashes(bufs, layout.id_shift);
                        if let Some((shards, base)) = shards {
                            maybe.extend(crate::ingest::dedup::probe_sorted(shards, base, &sorted));
                        }
                        repeats_in(&sorted, &mut repeated);
                        if keep_sorted {
                            kept.push(sorted);
                        }
                        starts_of(bufs, &repeated[r0..], &maybe[m0..], &mut starts);
                    }
                    (repeated, maybe, starts, kept)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("totals thread panicked"))
            .collect()
    });
    let mut scan = IdScan {
        parts,
        id_bytes,
        ..IdScan::default()
    };
    for (r, m, starts, kept) in found {
        scan.repeated.extend(r);
        scan.maybe.extend(m);
        scan.candidate_starts.extend(starts);
        scan.sorted.extend(kept);
    }
    scan.candidate_starts.sort_unstable();
    scan
}

/// Appends where the lines of one id partition start whose hash is in `repeated` or
/// `maybe` (that partition's candidates). The partition's ids were just read, so this
/// second walk runs in cache; a partition without candidates is not walked.
fn starts_of(bufs: &[Vec<IdAt>], repeated: &[u64], maybe: &[u64], out: &mut Vec<u64>) {
    if repeated.is_empty() && maybe.is_empty() {
        return;
    }
    let marks = Prefilter::new(repeated.iter().chain(maybe).copied(), 16);
    let wanted: FxHashSet<u64> = repeated.iter().chain(maybe).copied().collect();
    for buf in bufs {
        for e in buf {
            if marks.may_hold(e.0) && wanted.contains(&e.0) {
                out.push(e.1);
            }
        }
    }
}

/// A map of 2^`bits` bits over a set of values: it answers "not in the set" for almost
/// every other value without asking the set (a hash set's probe misses the cache; the
/// map, 8 to 32 KB, stays in it). A value's bit comes from its Fibonacci hash, so line
/// offsets mark as evenly as id hashes do.
pub(crate) struct Prefilter {
    bits: Vec<u64>,
    shift: u32,
}

impl Prefilter {
    /// The map of `values`, 2^`bits` bits (6..=32).
    pub(crate) fn new(values: impl IntoIterator<Item = u64>, bits: u32) -> Prefilter {
        let mut p = Prefilter {
            bits: vec![0u64; 1 << (bits - 6)],
            shift: 64 - bits,
        };
        for v in values {
            let (w, b) = p.slot(v);
            p.bits[w] |= b;
        }
        p
    }

    #[inline]
    fn slot(&self, v: u64) -> (usize, u64) {
        let x = v.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift;
        ((x >> 6) as usize, 1u64 << (x & 63))
    }

    /// False when `v` is certainly not one of the values.
    #[inline]
    pub(crate) fn may_hold(&self, v: u64) -> bool {
        let (w, b) = self.slot(v);
        self.bits[w] & b != 0
    }
}

/// The running sums of one account partition: one entry per key in the order keys first
/// came, found through an open-addressing index of entry numbers (plus one; 0 is free)
/// kept at most half full. The sums are read back from memory once per segment: each
/// record costs a probe in the index and an entry read, both loaded ahead of the add by
/// [`PartSums::add_all`], instead of the sort and merge the fold did before (a counting
/// sort by account, a small sort per account, then a merge of every running sum after
/// every segment).
#[derive(Default)]
struct PartSums {
    /// Laid out as the finished totals are, so that finishing moves them, not copies.
    entries: Vec<(AggKey, Agg)>,
    index: Vec<u32>,
}

/// The hash of a key; its top bits pick the index slot (Fibonacci hashing).
#[inline]
fn key_hash(k: &AggKey) -> u64 {
    let x = ((k.0 as u64) << 32 | k.2 as u64) ^ (k.1 as u64).rotate_left(20);
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// How far ahead of the record being added [`PartSums::add_all`] loads the index slot
/// of a record, and (half as far) the entry that slot names.
const FOLD_AHEAD: usize = 16;

impl PartSums {
    /// Adds `recs` in order, as [`PartSums::add`] each, loading ahead of the adds what they
    /// will touch: the index slot of the record [`FOLD_AHEAD`] on, and the entry named by
    /// the first slot of the record half as far on (the slot loaded by then). Without
    /// this each add waited for its slot, then for its entry.
    fn add_all(&mut self, recs: &[Rec]) {
        for (i, r) in recs.iter().enumerate() {
            if !self.index.is_empty() {
                let shift = 64 - self.index.len().trailing_zeros();
                if let Some(far) = recs.get(i + FOLD_AHEAD) {
                    let slot = (key_hash(&far.key) >> shift) as usize;
                    crate::rate::hint::prefetch(self.index.as_ptr().wrapping_add(slot));
                }
                if let Some(near) = recs.get(i + FOLD_AHEAD / 2) {
                    let e = self.index[(key_hash(&near.key) >> shift) as usize] as usize;
                    if e != 0 {
                        crate::rate::hint::prefetch(self.entries.as_ptr().wrapping_add(e - 1));
                    }
                }
            }
            self.add(r);
        }
    }

    #[inline]
    fn add(&mut self, r: &Rec) {
        if (self.entries.len() + 1) * 2 > self.index.len() {
            self.grow();
        }
        let shift = 64 - self.index.len().trailing_zeros();
        let mask = self.index.len() - 1;
        let mut i = (key_hash(&r.key) >> shift) as usize;
        loop {
            let e = self.index[i];
            if e == 0 {
                self.entries.push((
                    r.key,
                    Agg {
                        count: r.count as u64,
                        usage: r.usage,
                        billed: r.billed,
                        charge_micros: r.charge_micros,
                    },
                ));
                self.index[i] = self.entries.len() as u32;
                return;
            }
            let (key, s) = &mut self.entries[e as usize - 1];
            if *key == r.key {
                s.count += r.count as u64;
                s.usage += r.usage;
                s.billed += r.billed;
                s.charge_micros += r.charge_micros;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// The entry of `key`, if it has one.
    fn find(&self, key: &AggKey) -> Option<usize> {
        if self.index.is_empty() {
            return None;
        }
        let shift = 64 - self.index.len().trailing_zeros();
        let mask = self.index.len() - 1;
        let mut i = (key_hash(key) >> shift) as usize;
        loop {
            let e = self.index[i];
            if e == 0 {
                return None;
            }
            if self.entries[e as usize - 1].0 == *key {
                return Some(e as usize - 1);
            }
            i = (i + 1) & mask;
        }
    }

    #[cold]
    #[allow(clippy::slow_vector_initialization)] // on purpose: see the index below
    fn grow(&mut self) {
        let cap = (self.index.len() * 2).max(256);
        let shift = 64 - cap.trailing_zeros();
        // Written, not a zeroed allocation (clippy's suggestion): that maps the shared
        // zero page, which the probes below read, and the first write to each page then
        // replaced it under a TLB flush of every core (the fold's threads run on all).
        let mut index = Vec::with_capacity(cap);
        index.resize(cap, 0u32);
        for (n, e) in self.entries.iter().enumerate() {
            let mut i = (key_hash(&e.0) >> shift) as usize;
            while index[i] != 0 {
                i = (i + 1) & (cap - 1);
            }
            index[i] = n as u32 + 1;
        }
        self.index = index;
    }
}

/// The record-id hashes of one id partition (`bufs`, whose hashes share the bits above
/// `id_shift`), ascending: a least-significant-digit radix sort by the 24 bits below
/// the partition's bits (two stable counting passes of 12 bits, both counted in one
/// read), after which only hashes sharing all of those bits can be out of order: each
/// such run (a handful in a partition of 150 000) is sorted on its own. Sorted, the
/// hashes walk the cross-file filter in order and repeats are neighbours. (A counting
/// sort by 12 bits and a sort of each of the 4 096 runs of a few dozen hashes cost
/// twice as much: the small sorts' compares and branches.)
fn sorted_hashes(bufs: &[Vec<IdAt>], id_shift: u32) -> Vec<u64> {
    const BITS: u32 = 12;
    const DIGITS: usize = 1 << BITS;
    let major = id_shift.saturating_sub(BITS);
    let minor = major.saturating_sub(BITS);
    let digit = |h: u64, shift: u32| (h >> shift) as usize & (DIGITS - 1);
    let n: usize = bufs.iter().map(Vec::len).sum();
    let mut at_major = vec![0usize; DIGITS];
    let mut at_minor = vec![0usize; DIGITS];
    for e in bufs.iter().flatten() {
        at_major[digit(e.0, major)] += 1;
        at_minor[digit(e.0, minor)] += 1;
    }
    let starts = |at: &mut [usize]| {
        let mut sum = 0;
        for c in at.iter_mut() {
            (*c, sum) = (sum, sum + *c);
        }
    };
    starts(&mut at_major);
    starts(&mut at_minor);
    let mut by_minor = vec![0u64; n];
    for e in bufs.iter().flatten() {
        let d = digit(e.0, minor);
        by_minor[at_minor[d]] = e.0;
        at_minor[d] += 1;
    }
    let mut out = vec![0u64; n];
    for &h in &by_minor {
        let d = digit(h, major);
        out[at_major[d]] = h;
        at_major[d] += 1;
    }
    drop(by_minor);
    // Runs of hashes equal in the sorted bits, in any order among themselves.
    let mut k = 0;
    while k < n {
        let prefix = out[k] >> minor;
        let mut end = k + 1;
        while end < n && out[end] >> minor == prefix {
            end += 1;
        }
        if end - k > 1 {
            out[k..end].sort_unstable();
        }
        k = end;
    }
    out
}

/// Appends the hashes that occur more than once in `sorted` (ascending), each once.
fn repeats_in(sorted: &[u64], out: &mut Vec<u64>) {
    for k in 1..sorted.len() {
        if sorted[k] == sorted[k - 1] && (k < 2 || sorted[k - 2] != sorted[k]) {
            out.push(sorted[k]);
        }
    }
}

/// Hands the pages jemalloc holds for memory freed since to the operating system now,
/// instead of over the following seconds (jemalloc's decay). Called between the phases
/// of a file, after the spill buffers, then the totals, are dropped: RocksDB allocates
/// the commit batch and the memtable with the C allocator, which cannot reuse pages
/// jemalloc keeps, so without this the file's peak RSS was its totals *plus* the batch
/// and memtable, growing with the (account, month) keys a file spans. A no-op (jemalloc
/// idle) where jemalloc is not the global allocator (the library's tests).
pub fn release_freed_memory() {
    // `arena.<MALLCTL_ARENAS_ALL>.purge`: every arena.
    const PURGE_ALL: &std::ffi::CStr = c"arena.4096.purge";
    // SAFETY: a void control: no old value is read and no new value is written (null
    // pointers, length 0), as jemalloc(3) specifies for `arena.<i>.purge`; the name is
    // a NUL-terminated string that outlives the call.
    let _ = unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_ALL.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// Spread over several workers, segments and any layout, the sums equal a plain map's
    /// and the repeated ids are exactly those pushed more than once; with room reserved
    /// for none, a fiftieth or all of the records (the sums outgrow a small reservation).
    #[test]
    fn agrees_with_plain_maps() {
        for (n_accounts, records, workers, segment) in [
            (997usize, 50_000usize, 3usize, 50_000usize),
            (997, 50_000, 3, 7_000),
            (1, 10, 1, 3),
            (5, 100_000, 2, 100_000),
            (5, 100_000, 2, 30_000),
            (100_000, 300_000, 2, 65_536),
        ] {
            let layout = Layout::new(n_accounts, segment, records);
            let mut spills: Vec<Spill> = (0..workers)
                .map(|_| Spill::new(layout, 0, 0, false))
                .collect();
            let mut totals = Totals::new(layout);
            totals.reserve_for([records, 0, records / 50][records % 3]);
            let mut want: BTreeMap<AggKey, Agg> = BTreeMap::new();
            let mut seen: HashMap<u64, u32> = HashMap::new();
            let mut x = 12345u64 + records as u64;
            for i in 0..records as u64 {
                let r = xorshift(&mut x);
                let key = (
                    (r % n_accounts as u64) as u32,
                    (r % 3) as u32,
                    (r % 31) as u32,
                );
                let rec = Rec {
                    key,
                    count: 1,
                    usage: i,
                    billed: i * 2,
                    charge_micros: (r % 1000) as i64 - 500,
                };
                // Ids: mostly unique, some repeated; top bits vary too.
                let id = if i % 97 == 0 {
                    42 << 50
                } else {
                    xorshift(&mut x)
                };
                spills[(i as usize) % workers].push(rec, id, i as usize);
                if (i as usize + 1).is_multiple_of(segment) {
                    totals.fold(&mut spills, 2);
                    assert!(spills.iter().all(|s| s.recs.iter().all(Vec::is_empty)));
                }
                want.entry(key).or_default().add(&Agg {
                    count: 1,
                    usage: rec.usage,
                    billed: rec.billed,
                    charge_micros: rec.charge_micros,
                });
                *seen.entry(id).or_default() += 1;
            }
            let got = totals.finish(&mut spills, 2);
            assert!(spills
                .iter()
                .all(|s| s.recs.iter().all(|r| r.capacity() == 0)));
            let repeated = repeated_ids(&mut spills, 2);
            let want: Vec<(AggKey, Agg)> = want.into_iter().collect();
            assert_eq!(got.len(), want.len());
            assert_eq!(got.iter().copied().collect::<Vec<_>>(), want);
            // Every key is found through the runs; others are not.
            for (k, a) in &want {
                assert_eq!(got.get(k).copied(), Some(*a));
            }
            assert_eq!(got.get(&(n_accounts as u32, 0, 0)), None);
            assert_eq!(got.get(&(0, 0, 31)), None);
            let want_rep: FxHashSet<u64> =
                seen.into_iter().filter(|e| e.1 > 1).map(|e| e.0).collect();
            assert_eq!(repeated, want_rep);
        }
    }

    /// Totals over several runs: lookups find every key in its run; duplicates taken out
    /// after the fold drop the totals they empty (and the runs left empty), the rest
    /// keep their order; a sub without its total, or taking out more records than the
    /// total holds, fails naming the key.
    #[test]
    fn totals_without_duplicates_across_runs() {
        let a = |count, charge| Agg {
            count,
            usage: 60 * count,
            billed: 60 * count,
            charge_micros: charge,
        };
        // 16 accounts in 4 partitions of 4.
        let l = Layout::new(16, 1 << 16, 1 << 16);
        assert_eq!(l.account_parts, 4);
        let build = || {
            let mut spills = vec![Spill::new(l, 0, 0, false), Spill::new(l, 0, 0, false)];
            for (i, (key, charge)) in [
                ((8, 5, 0), 50),
                ((0, 5, 1), 10),
                ((3, 5, 1), 5),
                ((8, 4, 9), 10),
                ((4, 5, 1), 30),
                ((3, 5, 1), 15),
                ((8, 4, 9), 10),
                ((8, 4, 9), 20),
            ]
            .into_iter()
            .enumerate()
            {
                let rec = Rec {
                    key,
                    count: 1,
                    usage: 60,
                    billed: 60,
                    charge_micros: charge,
                };
                spills[i % 2].push(rec, i as u64, 0);
            }
            let mut t = Totals::new(l);
            t.fold_last(&mut spills, 2);
            t
        };
        let t = build().finish_without(Vec::new(), 2).unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(t.get(&(4, 5, 1)).map(|x| x.charge_micros), Some(30));
        assert_eq!(t.get(&(8, 4, 9)), Some(&a(3, 40)));
        assert_eq!(t.get(&(3, 5, 2)), None);
        assert_eq!(t.get(&(9, 0, 0)), None);
        assert_eq!(t.clone().into_runs().len(), 3);
        let bad = |subs| build().finish_without(subs, 2).err();
        assert_eq!(bad(vec![((3, 5, 2), a(1, 0))]), Some((3, 5, 2)));
        assert_eq!(bad(vec![((16, 5, 1), a(1, 0))]), Some((16, 5, 1)));
        assert_eq!(
            bad(vec![((0, 5, 1), a(1, 10)), ((0, 5, 1), a(1, 10))]),
            Some((0, 5, 1))
        );
        // Out of order; two of one key; one run emptied, one total of another.
        let t = build()
            .finish_without(
                vec![
                    ((8, 5, 0), a(1, 50)),
                    ((3, 5, 1), a(1, 5)),
                    ((4, 5, 1), a(1, 30)),
                    ((3, 5, 1), a(1, 15)),
                ],
                2,
            )
            .unwrap();
        assert_eq!(
            t.iter()
                .map(|e| (e.0, e.1.count, e.1.charge_micros))
                .collect::<Vec<_>>(),
            vec![((0, 5, 1), 1, 10), ((8, 4, 9), 3, 40)]
        );
        assert_eq!(t.into_runs().len(), 2);
    }

    /// The radix sort of a partition's hashes equals a plain sort: random hashes, hashes
    /// alike in every sorted bit (a long run left to the run sort), exact repeats, one
    /// partition (shift 64) and one of 64 (shift 58), and no hashes at all.
    #[test]
    fn sorted_hashes_are_sorted() {
        let mut x = 99u64;
        for (id_shift, parts) in [(64u32, 1u64), (58, 64)] {
            let top = |h: u64| if parts == 1 { h } else { (h >> 6) | (17 << 58) };
            let mut all: Vec<u64> = (0..50_000).map(|_| top(xorshift(&mut x))).collect();
            let alike = top(xorshift(&mut x)) & !((1u64 << (id_shift - 24)) - 1);
            all.extend((0..300).map(|i| alike | ((i * 7919) % (1 << (id_shift - 24)))));
            all.extend(all[..500].to_vec());
            let bufs: Vec<Vec<IdAt>> = all
                .chunks(7000)
                .map(|c| c.iter().map(|&h| (h, 0)).collect())
                .collect();
            let mut want = all.clone();
            want.sort_unstable();
            assert_eq!(sorted_hashes(&bufs, id_shift), want);
        }
        assert!(sorted_hashes(&[], 58).is_empty());
    }

    #[test]
    fn layout_covers_every_account() {
        for n in [1usize, 2, 3, 1000, 100_000, 1 << 20, (1 << 20) + 1] {
            for recs in [0usize, 1, 1 << 20, 1 << 30] {
                let l = Layout::new(n, recs, recs);
                assert!(l.account_parts <= MAX_PARTITIONS, "{n} {recs}");
                assert_eq!(((n - 1) >> l.account_shift) + 1, l.account_parts);
                assert!(l.id_parts.is_power_of_two() && l.id_parts <= MAX_PARTITIONS);
            }
        }
    }

    #[test]
    fn empty_finish() {
        assert!(repeated_ids::<Spill>(&mut [], 2).is_empty());
        let l = Layout::new(10, 0, 0);
        let mut spills = vec![Spill::new(l, 0, 0, false), Spill::new(l, 0, 0, false)];
        let t = Totals::new(l).finish(&mut spills, 2);
        assert!(t.is_empty() && repeated_ids(&mut spills, 2).is_empty());
        assert_eq!(t.len(), 0);
        assert_eq!(t.get(&(0, 0, 0)), None);
    }

    /// Counts are summed in 64 bits: a key with more records than a u32 holds adds up.
    #[test]
    fn counts_beyond_u32_add_up() {
        let l = Layout::new(4, 10, 10);
        let mut totals = Totals::new(l);
        let big = Rec {
            key: (2, 1, 7),
            count: u32::MAX - 1,
            usage: 10,
            billed: 20,
            charge_micros: -5,
        };
        totals.parts[(2 >> l.account_shift) as usize].add(&big);
        let mut spills = vec![Spill::new(l, 0, 0, false)];
        for _ in 0..3 {
            spills[0].push(
                Rec {
                    count: 1,
                    usage: 1,
                    billed: 2,
                    charge_micros: 3,
                    ..big
                },
                9,
                0,
            );
        }
        let t = totals.finish(&mut spills, 1);
        assert_eq!(
            t.iter().copied().collect::<Vec<_>>(),
            vec![(
                (2, 1, 7),
                Agg {
                    count: u32::MAX as u64 + 2,
                    usage: 13,
                    billed: 26,
                    charge_micros: 4,
                }
            )]
        );
    }
}
