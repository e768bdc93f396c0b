//! Per-file totals and duplicate-id candidates, built in two passes so that rating never
//! waits on memory.
//!
//! A file touches about one (account, month, line key) total per record — far more
//! totals than the CPU caches hold — so updating a hash table per record costs a cache
//! and TLB miss per record. Instead:
//!
//! 1. **Spill** (on the rating workers, per record): append one fixed-size [`Rec`] to one
//!    of `P` partition buffers chosen by account index range, and the record-id hash to
//!    one of `P` buffers chosen by its top bits. Writes are sequential: the `P` buffer
//!    tails stay in cache.
//! 2. **Finish** (once per file, in parallel over the partitions): each partition —
//!    every worker's buffer for it — is small enough to sort and sum inside the cache.
//!    Account partitions are ranges, so concatenating their sorted sums in partition order
//!    gives totals sorted by key; id partitions yield the hashes seen more than once.
//!
//! Memory is one `Rec` (40 bytes) and one hash (8 bytes) per rated record until the file
//! is finished; no table ever has to grow or be rehashed.

use rustc_hash::FxHashSet;

use crate::pipeline::{Agg, AggKey};

/// Records per partition the layout aims at: a partition's records and its sums fit the
/// per-core cache while it is sorted.
const TARGET_PER_PARTITION: usize = 16 * 1024;
/// Upper bound on the number of partitions (buffer tails that must stay cached).
const MAX_PARTITIONS: usize = 4096;

/// One rated record's contribution to its total (the count is 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Rec {
    pub key: AggKey,
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

impl Layout {
    /// A layout for about `expected_records` records over `n_accounts` dense account
    /// indices (`0..n_accounts`).
    pub fn new(n_accounts: usize, expected_records: usize) -> Layout {
        let want = (expected_records / TARGET_PER_PARTITION)
            .next_power_of_two()
            .clamp(1, MAX_PARTITIONS);
        let bits = want.trailing_zeros();
        // Smallest shift that maps every account index into at most `want` partitions.
        let account_bits = usize::BITS - n_accounts.saturating_sub(1).leading_zeros();
        let account_shift = account_bits.saturating_sub(bits);
        let account_parts = (n_accounts.saturating_sub(1) >> account_shift) + 1;
        Layout {
            account_shift,
            account_parts,
            id_shift: 64 - bits,
            id_parts: want,
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
    ids: Vec<Vec<u64>>,
}

impl Spill {
    /// Empty buffers for `layout`; `hint_records` is this worker's expected share.
    pub fn new(layout: Layout, hint_records: usize) -> Spill {
        let per_rec = hint_records / layout.account_parts + 16;
        let per_id = hint_records / layout.id_parts + 16;
        Spill {
            layout,
            recs: (0..layout.account_parts)
                .map(|_| Vec::with_capacity(per_rec))
                .collect(),
            ids: (0..layout.id_parts)
                .map(|_| Vec::with_capacity(per_id))
                .collect(),
        }
    }

    /// Adds one rated record and its record-id hash.
    #[inline]
    pub fn push(&mut self, rec: Rec, id_hash: u64) {
        let p = (rec.key.0 >> self.layout.account_shift) as usize;
        self.recs[p].push(rec);
        // A shift by 64 (a single partition) is not defined for u64: use checked_shr.
        let q = id_hash.checked_shr(self.layout.id_shift).unwrap_or(0) as usize;
        self.ids[q].push(id_hash);
    }
}

/// Summed totals of some partitions, with their partition numbers.
type PartSums = Vec<(usize, Vec<(AggKey, Agg)>)>;

/// Sorts and sums every partition of the workers' spills, on `threads` threads.
/// Returns the totals sorted by key and the id hashes that occur more than once.
pub fn finish(spills: Vec<Spill>, threads: usize) -> (Vec<(AggKey, Agg)>, FxHashSet<u64>) {
    let Some(layout) = spills.first().map(|s| s.layout) else {
        return (Vec::new(), FxHashSet::default());
    };
    // Transpose to partition-major: partition p = every worker's buffer p.
    let mut rec_parts: Vec<Vec<Vec<Rec>>> = (0..layout.account_parts).map(|_| Vec::new()).collect();
    let mut id_parts: Vec<Vec<Vec<u64>>> = (0..layout.id_parts).map(|_| Vec::new()).collect();
    for s in spills {
        for (p, v) in s.recs.into_iter().enumerate() {
            if !v.is_empty() {
                rec_parts[p].push(v);
            }
        }
        for (p, v) in s.ids.into_iter().enumerate() {
            if !v.is_empty() {
                id_parts[p].push(v);
            }
        }
    }
    let threads = threads.max(1);
    // Deal partitions round-robin: skewed partitions (popular accounts) spread out.
    let mut rec_jobs: Vec<Vec<(usize, Vec<Vec<Rec>>)>> = (0..threads).map(|_| Vec::new()).collect();
    for (p, bufs) in rec_parts.into_iter().enumerate() {
        if !bufs.is_empty() {
            rec_jobs[p % threads].push((p, bufs));
        }
    }
    let mut id_jobs: Vec<Vec<Vec<Vec<u64>>>> = (0..threads).map(|_| Vec::new()).collect();
    for (p, bufs) in id_parts.into_iter().enumerate() {
        if !bufs.is_empty() {
            id_jobs[p % threads].push(bufs);
        }
    }
    let results: Vec<(PartSums, Vec<u64>)> = std::thread::scope(|s| {
        let handles: Vec<_> = rec_jobs
            .into_iter()
            .zip(id_jobs)
            .map(|(recs, ids)| {
                s.spawn(move || {
                    let sums = recs
                        .into_iter()
                        .map(|(p, bufs)| {
                            let base = (p as u32) << layout.account_shift;
                            (p, sum_partition(bufs, base, 1usize << layout.account_shift))
                        })
                        .collect::<Vec<_>>();
                    let mut repeated = Vec::new();
                    for bufs in ids {
                        repeated_in_partition(bufs, &mut repeated);
                    }
                    (sums, repeated)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("totals thread panicked"))
            .collect()
    });
    let mut by_part: Vec<Vec<(AggKey, Agg)>> =
        (0..layout.account_parts).map(|_| Vec::new()).collect();
    let mut repeated = FxHashSet::default();
    for (sums, reps) in results {
        for (p, v) in sums {
            by_part[p] = v;
        }
        repeated.extend(reps);
    }
    let mut totals = Vec::with_capacity(by_part.iter().map(Vec::len).sum());
    for v in by_part {
        totals.extend(v);
    }
    (totals, repeated)
}

/// Sorts one partition's records by key and sums equal keys. The partition holds the
/// accounts `base..base + span`: a counting sort by account (two linear passes inside
/// the cache), then a small sort of each account's records by (month, line key).
fn sum_partition(bufs: Vec<Vec<Rec>>, base: u32, span: usize) -> Vec<(AggKey, Agg)> {
    let n: usize = bufs.iter().map(Vec::len).sum();
    let mut starts = vec![0usize; span + 1];
    for r in bufs.iter().flatten() {
        starts[(r.key.0 - base) as usize + 1] += 1;
    }
    for i in 1..=span {
        starts[i] += starts[i - 1];
    }
    let mut sorted = vec![
        Rec {
            key: (0, 0, 0),
            usage: 0,
            billed: 0,
            charge_micros: 0,
        };
        n
    ];
    let mut next = starts.clone();
    for r in bufs.iter().flatten() {
        let a = (r.key.0 - base) as usize;
        sorted[next[a]] = *r;
        next[a] += 1;
    }
    drop(bufs);
    let mut out: Vec<(AggKey, Agg)> = Vec::with_capacity(n);
    for a in 0..span {
        let group = &mut sorted[starts[a]..starts[a + 1]];
        group.sort_unstable_by_key(|r| (r.key.1, r.key.2));
        for r in group.iter() {
            let agg = Agg {
                count: 1,
                usage: r.usage,
                billed: r.billed,
                charge_micros: r.charge_micros,
            };
            match out.last_mut() {
                Some(last) if last.0 == r.key => last.1.add(&agg),
                _ => out.push((r.key, agg)),
            }
        }
    }
    out
}

/// Appends the hashes of one id partition that occur more than once (each once).
/// Ids are hashes, so their low bits index an open-addressing set sized for the
/// partition (inside the cache); zero, the empty-slot marker, is counted aside.
fn repeated_in_partition(bufs: Vec<Vec<u64>>, out: &mut Vec<u64>) {
    let n: usize = bufs.iter().map(Vec::len).sum();
    let cap = (n * 2).next_power_of_two().max(16);
    let mask = cap - 1;
    let mut set = vec![0u64; cap];
    let mut zeros = 0usize;
    let first = out.len();
    for &id in bufs.iter().flatten() {
        if id == 0 {
            zeros += 1;
            continue;
        }
        let mut i = id as usize & mask;
        loop {
            let v = set[i];
            if v == 0 {
                set[i] = id;
                break;
            }
            if v == id {
                out.push(id);
                break;
            }
            i = (i + 1) & mask;
        }
    }
    if zeros > 1 {
        out.push(0);
    }
    // An id seen three times or more was pushed more than once.
    let tail = &mut out[first..];
    tail.sort_unstable();
    let mut w = first;
    for r in first..out.len() {
        if r == first || out[r] != out[w - 1] {
            out[w] = out[r];
            w += 1;
        }
    }
    out.truncate(w);
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

    /// Spread over several workers and any layout, the sums equal a plain map's and the
    /// repeated ids are exactly those pushed more than once.
    #[test]
    fn agrees_with_plain_maps() {
        for (n_accounts, records, workers) in [
            (997usize, 50_000usize, 3usize),
            (1, 10, 1),
            (5, 100_000, 2),
            (100_000, 300_000, 2),
        ] {
            let layout = Layout::new(n_accounts, records);
            let mut spills: Vec<Spill> = (0..workers).map(|_| Spill::new(layout, 0)).collect();
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
                spills[(i as usize) % workers].push(rec, id);
                want.entry(key).or_default().add(&Agg {
                    count: 1,
                    usage: rec.usage,
                    billed: rec.billed,
                    charge_micros: rec.charge_micros,
                });
                *seen.entry(id).or_default() += 1;
            }
            let (got, repeated) = finish(spills, 2);
            assert_eq!(got, want.into_iter().collect::<Vec<_>>());
            let want_rep: FxHashSet<u64> =
                seen.into_iter().filter(|e| e.1 > 1).map(|e| e.0).collect();
            assert_eq!(repeated, want_rep);
        }
    }

    #[test]
    fn layout_covers_every_account() {
        for n in [1usize, 2, 3, 1000, 100_000, 1 << 20, (1 << 20) + 1] {
            for recs in [0usize, 1, 1 << 20, 1 << 30] {
                let l = Layout::new(n, recs);
                assert!(l.account_parts <= MAX_PARTITIONS, "{n} {recs}");
                assert_eq!(((n - 1) >> l.account_shift) + 1, l.account_parts);
                assert!(l.id_parts.is_power_of_two() && l.id_parts <= MAX_PARTITIONS);
            }
        }
    }

    #[test]
    fn empty_finish() {
        let (t, r) = finish(Vec::new(), 2);
        assert!(t.is_empty() && r.is_empty());
        let l = Layout::new(10, 0);
        let (t, r) = finish(vec![Spill::new(l, 0), Spill::new(l, 0)], 2);
        assert!(t.is_empty() && r.is_empty());
    }
}
