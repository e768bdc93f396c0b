//! The cross-file duplicate index on disk (column family `dedup`).
//!
//! | key | value |
//! |---|---|
//! | `i` bucket (u32 BE) commit day (u32 BE) seq (u64 BE) | format byte `2`, then per record id of that file in that bucket one entry ([`crate::ingest::dedup::encode_entry`]: the id's bytes, or a UUID as 16 bytes, or a prefix and a decimal number as a varint); format `1` values (written before: per id, varint length and id bytes) are still read |
//! | `x` file name | the file's lines rejected as cross-file duplicates: varint deltas, ascending |
//!
//! A bucket is the top 18 bits of the record id's XXH3-64 hash. Index values are written
//! in the file's commit batch (under the writer lock, where its seq is known), so a
//! file's ids are in the index exactly when the file is committed. A lookup reads the
//! values of one bucket (a prefix scan) and compares entries (an id has one encoding in
//! each format, so equal entries are equal ids): exact. Values of commit
//! days before the window are skipped by lookups and dropped by compactions (a
//! compaction filter reading the first day still held, [`Ledger::dedup_expire`]).
//! `x` records are kept with the file's checkpoint: rerating and itemising leave those
//! lines out, as ingest did.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use integer_encoding::VarInt;
use rocksdb::compaction_filter::Decision;
use rocksdb::{Options, WriteBatch};

use super::{Ledger, LedgerError, CF_DEDUP};

/// The index values of one file, staged until its seq is known.
#[derive(Default)]
pub(super) struct StagedIndex {
    day: u32,
    /// Per part: values back to back, and (bucket, start, end) of each.
    parts: Vec<StagedPart>,
    /// Lines rejected as cross-file duplicates.
    cross: Vec<u64>,
}

/// Values back to back, and (bucket, start, end) of each.
type StagedPart = (Vec<u8>, Vec<(u32, usize, usize)>);

/// Key of an index value.
fn index_key(bucket: u32, day: u32, seq: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = b'i';
    k[1..5].copy_from_slice(&bucket.to_be_bytes());
    k[5..9].copy_from_slice(&day.to_be_bytes());
    k[9..17].copy_from_slice(&seq.to_be_bytes());
    k
}

fn cross_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1);
    k.push(b'x');
    k.extend_from_slice(name.as_bytes());
    k
}

/// The compaction filter of the `dedup` family: index values of a commit day before
/// `first_day` are removed.
pub(super) fn set_expiry_filter(o: &mut Options, first_day: Arc<AtomicU32>) {
    o.set_compaction_filter(
        "tollgate_dedup_expiry_v1",
        move |_level: u32, key: &[u8], _value: &[u8]| {
            if key.len() == 17 && key[0] == b'i' {
                let day = u32::from_be_bytes(key[5..9].try_into().expect("4 bytes"));
                if day < first_day.load(Ordering::Relaxed) {
                    return Decision::Remove;
                }
            }
            Decision::Keep
        },
    );
}

impl super::FileBatch<'_> {
    /// Stages the file's cross-file index: values (format byte, then one entry per
    /// record) back to back in `buf`, `(bucket, start, end)` of each; they are
    /// written with the commit day `day` and the file's seq when it commits.
    pub fn add_index_part(&mut self, day: u32, buf: Vec<u8>, chunks: Vec<(u32, usize, usize)>) {
        self.index.day = day;
        if !chunks.is_empty() {
            self.index.parts.push((buf, chunks));
        }
    }

    /// Stages the lines rejected as cross-file duplicates (ascending).
    pub fn set_cross_duplicates(&mut self, lines: Vec<u64>) {
        self.index.cross = lines;
    }
}

impl Ledger {
    /// Puts a staged index into the commit batch of file `name`, committed as `seq`;
    /// each part is freed once copied into the batch.
    pub(super) fn stage_index(
        &self,
        batch: &mut WriteBatch,
        index: StagedIndex,
        name: &str,
        seq: u64,
    ) {
        let cf = self.cf(CF_DEDUP);
        for (buf, chunks) in index.parts {
            for (bucket, start, end) in chunks {
                batch.put_cf(cf, index_key(bucket, index.day, seq), &buf[start..end]);
            }
        }
        if !index.cross.is_empty() {
            let mut v = Vec::with_capacity(index.cross.len() * 2);
            let mut last = 0u64;
            let mut tmp = [0u8; 10];
            for &l in &index.cross {
                let n = (l - last).encode_var(&mut tmp);
                v.extend_from_slice(&tmp[..n]);
                last = l;
            }
            batch.put_cf(cf, cross_key(name), v);
        }
    }

    /// Which of `ids` a committed file of commit day `first_day` or later holds in the
    /// index: exact comparison of each id's entry in the format of the value read. The
    /// ids are taken in bucket order, the buckets split between two threads, each walking
    /// its buckets with one iterator (a seek per bucket asked).
    pub fn dedup_lookup(&self, ids: &[&[u8]], first_day: u32) -> Result<Vec<bool>, LedgerError> {
        let mut order: Vec<(u32, usize)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                (
                    (xxhash_rust::xxh3::xxh3_64(id) >> (64 - crate::store::DEDUP_BUCKET_BITS))
                        as u32,
                    i,
                )
            })
            .collect();
        order.sort_unstable();
        // Two runs of buckets (split where a bucket starts).
        let mut cut = order.len() / 2;
        while cut > 0 && cut < order.len() && order[cut].0 == order[cut - 1].0 {
            cut += 1;
        }
        let (left, right) = order.split_at(cut.min(order.len()));
        let found = std::thread::scope(|s| {
            let other = s.spawn(|| self.dedup_lookup_run(ids, right, first_day));
            let mine = self.dedup_lookup_run(ids, left, first_day);
            (mine, other.join().expect("index lookup thread panicked"))
        });
        let mut out = vec![false; ids.len()];
        for run in [found.0?, found.1?] {
            for i in run {
                out[i] = true;
            }
        }
        Ok(out)
    }

    /// The indices (into `ids`) of the ids of `order` (bucket, index; sorted) held.
    fn dedup_lookup_run(
        &self,
        ids: &[&[u8]],
        order: &[(u32, usize)],
        first_day: u32,
    ) -> Result<Vec<usize>, LedgerError> {
        let mut held_ids = Vec::new();
        let Some(&(last, _)) = order.last() else {
            return Ok(held_ids);
        };
        let cf = self.cf(CF_DEDUP);
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_upper_bound(index_key(last + 1, 0, 0).to_vec());
        // The buckets asked are scattered over the whole index and rarely asked again:
        // their blocks are not put in the block cache (doing so cost 0.28-0.30 s for
        // ~16 000 ids against 108 M held, 0.16-0.24 s without).
        ro.fill_cache(false);
        let mut it = self.db.raw_iterator_cf_opt(cf, ro);
        // Each id asked (by its place in `order`), encoded as values of format 1 and of
        // format 2 hold it.
        let entries: Vec<[Vec<u8>; 2]> = order
            .iter()
            .map(|&(_, i)| {
                let mut v1 = (ids[i].len() as u64).encode_var_vec();
                v1.extend_from_slice(ids[i]);
                let mut v2 = Vec::with_capacity(ids[i].len() + 2);
                crate::ingest::dedup::encode_entry(&mut v2, ids[i]);
                [v1, v2]
            })
            .collect();
        let mut at = 0usize;
        let mut rest = order;
        while let Some(&(bucket, _)) = rest.first() {
            let n = rest
                .iter()
                .position(|o| o.0 != bucket)
                .unwrap_or(rest.len());
            let (group, tail) = rest.split_at(n);
            rest = tail;
            let to = index_key(bucket + 1, 0, 0);
            // Places in `order` of the ids not found yet.
            let mut open: Vec<usize> = (at..at + group.len()).collect();
            at += group.len();
            // A bucket's keys are in commit-day order: the seek passes over the values
            // of the days before the window.
            it.seek(index_key(bucket, first_day, 0));
            while let Some((k, v)) = it.item() {
                if k >= &to[..] {
                    break;
                }
                let mut held = Vec::new();
                let format =
                    for_each_entry(v, |e| held.push(e)).ok_or_else(|| LedgerError::Corrupt {
                        path: self.path.clone(),
                        key: format!("dedup/{}", hex(k)),
                        message: "not an index value".into(),
                    })?;
                let f = usize::from(format == crate::ingest::dedup::VALUE_FORMAT);
                open.retain(|&o| {
                    let hit = held.iter().any(|h| *h == entries[o][f]);
                    if hit {
                        held_ids.push(order[o].1);
                    }
                    !hit
                });
                if open.is_empty() {
                    break;
                }
                it.next();
            }
            it.status().map_err(|e| self.err(e))?;
        }
        Ok(held_ids)
    }

    /// Calls `f(id hash, commit day)` for every id of the index in buckets
    /// `from..to` committed on `first_day` or later (the filter's rebuild at start).
    /// Returns the ids visited.
    pub fn dedup_scan(
        &self,
        from: u32,
        to: u32,
        first_day: u32,
        mut f: impl FnMut(u64, u32),
    ) -> Result<u64, LedgerError> {
        let cf = self.cf(CF_DEDUP);
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_upper_bound(index_key(to, 0, 0).to_vec());
        ro.fill_cache(false);
        // A raw iterator: keys and values are read in place (the plain iterator copied
        // each into two new allocations).
        let mut it = self.db.raw_iterator_cf_opt(cf, ro);
        it.seek(index_key(from, 0, 0));
        let mut n = 0u64;
        while let Some((k, v)) = it.item() {
            if k.len() == 17 {
                let day = u32::from_be_bytes(k[5..9].try_into().expect("4 bytes"));
                if day >= first_day {
                    let read = for_each_id(v, |id| f(xxhash_rust::xxh3::xxh3_64(id), day))
                        .ok_or_else(|| LedgerError::Corrupt {
                            path: self.path.clone(),
                            key: format!("dedup/{}", hex(k)),
                            message: "not an index value".into(),
                        })?;
                    n += read;
                }
            }
            it.next();
        }
        it.status().map_err(|e| self.err(e))?;
        Ok(n)
    }

    /// Index values of commit days before `first_day` are no longer read; with
    /// `compact`, they are removed from disk now (a compaction of the index), otherwise
    /// by the next compactions that reach them.
    pub fn dedup_expire(&self, first_day: u32, compact: bool) {
        self.dedup_first_day.store(first_day, Ordering::Relaxed);
        if compact {
            let cf = self.cf(CF_DEDUP);
            self.db
                .compact_range_cf(cf, Some(&b"i"[..]), Some(&b"j"[..]));
        }
    }

    /// The lines of file `name` rejected at ingest as cross-file duplicates (ascending).
    pub fn cross_duplicates(&self, name: &str) -> Result<Vec<u64>, LedgerError> {
        let Some(v) = self.get(CF_DEDUP, &cross_key(name))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut rest = &v[..];
        let mut last = 0u64;
        while !rest.is_empty() {
            let (d, n) = u64::decode_var(rest).ok_or_else(|| LedgerError::Corrupt {
                path: self.path.clone(),
                key: format!("dedup/x{name}"),
                message: "bad varint".into(),
            })?;
            last += d;
            out.push(last);
            rest = &rest[n..];
        }
        Ok(out)
    }
}

/// Calls `f` with each entry of an index value, in order (format 1: varint length and
/// id bytes; format 2: see [`crate::ingest::dedup::encode_entry`]); the value's format,
/// or `None` when it is not such a value (`f` may have been called for the entries
/// before the fault). In format 1 a length below 128 (one varint byte) is read without
/// the general decoder.
fn for_each_entry<'a>(v: &'a [u8], mut f: impl FnMut(&'a [u8])) -> Option<u8> {
    let (&fmt, mut rest) = v.split_first()?;
    match fmt {
        1 => {
            while let Some(&b) = rest.first() {
                let (len, used) = if b < 0x80 {
                    (b as usize, 1)
                } else {
                    usize::decode_var(rest)?
                };
                rest.get(used..used + len)?;
                f(&rest[..used + len]);
                rest = &rest[used + len..];
            }
        }
        crate::ingest::dedup::VALUE_FORMAT => {
            while !rest.is_empty() {
                let len = crate::ingest::dedup::entry_len_checked(rest)?;
                f(&rest[..len]);
                rest = &rest[len..];
            }
        }
        _ => return None,
    }
    Some(fmt)
}

/// Calls `f` with each id of an index value (of either format), in order; the ids read,
/// or `None` when it is not such a value (`f` may have been called for the ids before
/// the fault).
fn for_each_id(v: &[u8], mut f: impl FnMut(&[u8])) -> Option<u64> {
    let mut n = 0u64;
    let format1 = v.first() == Some(&1);
    let mut scratch = [0u8; 96];
    for_each_entry(v, |e| {
        // Whole entries only: `for_each_entry` measured each.
        let id = if format1 {
            let (len, used) = usize::decode_var(e).expect("checked by for_each_entry");
            &e[used..used + len]
        } else {
            crate::ingest::dedup::decode_entry(e, &mut scratch).expect("checked by for_each_entry")
        };
        f(id);
        n += 1;
    })?;
    Some(n)
}

/// The ids of an index value (of either format); `None` when it is not such a value.
pub fn decode_ids(v: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for_each_id(v, |id| out.push(id.to_vec()))?;
    Some(out)
}

fn hex(k: &[u8]) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both readers of an index value agree on good values of both formats (one-byte
    /// and longer lengths, every kind of format-2 entry) and refuse the same bad ones.
    #[test]
    fn index_values_read_alike() {
        let long = vec![b'x'; 200];
        let ids: [&[u8]; 6] = [
            b"K-1",
            b"",
            &long,
            b"uuid-0",
            b"0a1b2c3d-0000-4000-8000-00000000abcd",
            b"K-007",
        ];
        let mut v1 = vec![1u8];
        let mut v2 = vec![crate::ingest::dedup::VALUE_FORMAT];
        for id in ids {
            let mut tmp = [0u8; 10];
            let n = id.len().encode_var(&mut tmp);
            v1.extend_from_slice(&tmp[..n]);
            v1.extend_from_slice(id);
            crate::ingest::dedup::encode_entry(&mut v2, id);
        }
        assert!(v2.len() < v1.len());
        for v in [&v1, &v2] {
            let mut seen = Vec::new();
            assert_eq!(for_each_id(v, |id| seen.push(id.to_vec())), Some(6));
            assert_eq!(decode_ids(v).unwrap(), seen);
            let want: Vec<Vec<u8>> = ids.iter().map(|i| i.to_vec()).collect();
            assert_eq!(seen, want);
            let mut entries = 0;
            assert_eq!(for_each_entry(v, |_| entries += 1), Some(v[0]));
            assert_eq!(entries, 6);
        }
        for bad in [
            &[][..],
            &[3, 0][..],
            &[1, 5, b'a'][..],
            &[1, 0x80][..],
            &[2, 5, b'a'][..],
            &[2, 0x80][..],
            &[2, 0x83, b'K'][..],
            &[2, 0xff][..],
        ] {
            assert_eq!(for_each_id(bad, |_| {}), None, "{bad:?}");
            assert!(decode_ids(bad).is_none(), "{bad:?}");
        }
    }
}
