//! The per-worker, per-file totals table: an open-addressing hash table with linear
//! probing and entries stored inline, built for the rating hot path.
//!
//! A file touches millions of (account, month, line key) totals, far more than the CPU
//! caches hold, so each update is a cache miss. The worker therefore updates in batches:
//! it rates a few records, prefetches the slot each one will touch, then applies them —
//! the misses overlap instead of queueing. One entry is one probe target (key and sums
//! side by side), so an update costs one miss, not the two of a control-byte table.

use crate::pipeline::{Agg, AggKey};

/// Records rated ahead of their table updates.
pub const BATCH: usize = 16;

const EMPTY: u32 = u32::MAX;

#[derive(Clone, Copy)]
#[repr(C)]
struct Entry {
    key: AggKey,
    agg: Agg,
}

/// Totals keyed by (account, month, line key); account `u32::MAX` is reserved.
pub struct Totals {
    entries: Vec<Entry>,
    mask: usize,
    len: usize,
    pending: [(AggKey, Agg); BATCH],
    n_pending: usize,
}

#[inline]
fn hash(k: &AggKey) -> u64 {
    let a = (k.0 as u64) << 32 | k.1 as u64;
    mix64(a ^ mix64(k.2 as u64 ^ 0x5851_F42D_4C95_7F2D))
}

/// The MurmurHash3 64-bit finalizer: every input bit affects every output bit, so the
/// low bits used as a slot index are well spread even for keys that differ only in a
/// few high bits (dense account indices, account ids that share a prefix).
#[inline]
pub(crate) fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl Default for Totals {
    fn default() -> Self {
        Totals::with_capacity(1 << 12)
    }
}

impl Totals {
    /// An empty table with room for `n` keys before it grows.
    pub fn with_capacity(n: usize) -> Totals {
        let cap = (n * 2).next_power_of_two().max(16);
        Totals {
            entries: vec![
                Entry {
                    key: (EMPTY, 0, 0),
                    agg: Agg::default()
                };
                cap
            ],
            mask: cap - 1,
            len: 0,
            pending: [((0, 0, 0), Agg::default()); BATCH],
            n_pending: 0,
        }
    }

    /// Number of distinct keys (pending updates not included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no key was added yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.n_pending == 0
    }

    /// Queues an update and prefetches its slot; applies the batch when full.
    #[inline]
    pub fn add(&mut self, key: AggKey, agg: Agg) {
        debug_assert_ne!(key.0, EMPTY);
        prefetch(&self.entries[hash(&key) as usize & self.mask]);
        self.pending[self.n_pending] = (key, agg);
        self.n_pending += 1;
        if self.n_pending == BATCH {
            self.flush();
        }
    }

    /// Applies the queued updates.
    #[inline]
    pub fn flush(&mut self) {
        if (self.len + self.n_pending) * 2 > self.entries.len() {
            self.grow();
        }
        for i in 0..self.n_pending {
            let (key, agg) = self.pending[i];
            self.apply(key, &agg);
        }
        self.n_pending = 0;
    }

    #[inline]
    fn apply(&mut self, key: AggKey, agg: &Agg) {
        let mut i = hash(&key) as usize & self.mask;
        loop {
            let e = &mut self.entries[i];
            if e.key == key {
                e.agg.add(agg);
                return;
            }
            if e.key.0 == EMPTY {
                e.key = key;
                e.agg = *agg;
                self.len += 1;
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    #[cold]
    fn grow(&mut self) {
        let old = std::mem::take(&mut self.entries);
        let cap = old.len() * 2;
        self.entries = vec![
            Entry {
                key: (EMPTY, 0, 0),
                agg: Agg::default()
            };
            cap
        ];
        self.mask = cap - 1;
        self.len = 0;
        for e in old.iter().filter(|e| e.key.0 != EMPTY) {
            self.apply(e.key, &e.agg);
        }
    }

    /// All totals, sorted by key.
    pub fn into_sorted(mut self) -> Vec<(AggKey, Agg)> {
        self.flush();
        let mut v: Vec<(AggKey, Agg)> = self
            .entries
            .into_iter()
            .filter(|e| e.key.0 != EMPTY)
            .map(|e| (e.key, e.agg))
            .collect();
        v.sort_unstable_by_key(|e| e.0);
        v
    }
}

#[inline(always)]
fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults and reads nothing observable.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const T as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn agrees_with_a_btree_map() {
        let mut t = Totals::with_capacity(4);
        let mut want: BTreeMap<AggKey, Agg> = BTreeMap::new();
        let mut x = 12345u64;
        for i in 0..50_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = ((x % 997) as u32, (x % 3) as u32, (x % 31) as u32);
            let agg = Agg {
                count: 1,
                usage: i,
                billed: i * 2,
                charge_micros: (x % 1000) as i64,
            };
            t.add(key, agg);
            want.entry(key).or_default().add(&agg);
        }
        let got = t.into_sorted();
        assert_eq!(got, want.into_iter().collect::<Vec<_>>());
    }
}
