//! The cross-file duplicate index in memory: a cuckoo filter over record-id hashes that
//! answers "maybe seen in an earlier file" or "certainly not".
//!
//! The exact index is on disk (the `dedup` column family, written in each file's commit
//! batch: see `store`); this filter only keeps the exact check away from the records
//! that cannot be duplicates. A "maybe" is settled by comparing the record id bytes
//! with the ids stored for its hash bucket, so a false positive costs a lookup, never a
//! wrong reject.
//!
//! Layout: 64 shards by the top 6 bits of the 64-bit id hash (the collector's id
//! partitions are ranges of the same bits, so each partition probes and fills its own
//! shards, in parallel and without a lock). A shard is an array of buckets of 4 slots of
//! 12 bits, packed: 48 bits, 6 bytes a bucket. A slot holds a 12-bit fingerprint (the
//! low 12 bits of the hash): every id costs 1.5 bytes at full load, 1.58 at the load a
//! shard is sized for, ≤ 2 bytes per id held from 75 % load on. An id's first bucket
//! comes from the 32 bits below the shard bits (`i1 = bits · m >> 32`, so hashes in
//! ascending order walk a shard's buckets in order); its second lies in the same chunk
//! of [`CHUNK`] buckets (96 KB,
//! well inside a core's L2 cache; the last chunk takes the remainder, up to twice that):
//! `i2 = base + (H(fp) − (i1 − base)) mod len`, an involution for any chunk length, so
//! shards are sized to their ids, not to a power of two. A file's hashes, sorted, probe
//! and fill the filter a chunk at a time: every access after a chunk's first lands in
//! cache. An insert that finds both buckets full moves fingerprints to their other bucket
//! (cuckoo kicks, inside the chunk); after 500 kicks the homeless slot goes to a small
//! stash that every probe also reads, so nothing is ever dropped (no false negatives).
//!
//! Expiry: the filter is read from the index (the ids committed inside the window) and
//! read again once [`Filter::stale`] says `ceil(window / 6)` days have passed since: an
//! id whose window ended stays in the filter at most that long. It is never a wrong
//! answer: the exact check reads only index values of the window, so an expired id's
//! "maybe" costs a lookup and is answered "not a duplicate". (Slots carried a 3-bit
//! epoch before, cleared in place when it died: a fifth of the filter's memory for
//! what a read of the index every `ceil(window / 6)` days does as well.)

/// Shards, by the top [`SHARD_BITS`] bits of the id hash.
pub const SHARD_BITS: u32 = 6;
pub const SHARDS: usize = 1 << SHARD_BITS;
const SLOTS: u32 = 4;
const SLOT_BITS: u32 = 12;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
const BUCKET_BITS: u64 = SLOT_BITS as u64 * SLOTS as u64;
const BUCKET_MASK: u64 = (1 << BUCKET_BITS) - 1;
const MAX_KICKS: usize = 500;
/// Load a shard is sized for.
const TARGET_LOAD: f64 = 0.95;

/// Buckets of a chunk: an id's two buckets lie in the same chunk.
pub const CHUNK: u64 = 1 << CHUNK_BITS;
const CHUNK_BITS: u32 = 14;

/// The fingerprint of a hash: its low 12 bits, never 0 (0 is a free slot).
#[inline]
fn fingerprint(h: u64) -> u64 {
    let f = h & 0xfff;
    f | (f == 0) as u64
}

/// One shard: packed buckets, a count and the stash.
pub struct Shard {
    /// 6 bytes per bucket, plus 8 so that every bucket can be read as a u64.
    bytes: Vec<u8>,
    /// Buckets (at least 1).
    m: u64,
    len: u64,
    /// Slots that found no bucket: (bucket, slot).
    stash: Vec<(u64, u64)>,
    rng: u64,
}

impl Shard {
    fn with_buckets(m: u64) -> Shard {
        let m = m.max(1);
        let mut bytes = vec![0u8; (m * BUCKET_BITS).div_ceil(8) as usize + 8];
        // Every page written once now: a zeroed allocation maps the shared zero page,
        // and the first insert into a page a probe had read replaced it under a TLB
        // flush of every core (seen as a tenth of the id scan's time).
        for i in (0..bytes.len()).step_by(4096) {
            bytes[i] = std::hint::black_box(0);
        }
        Shard {
            bytes,
            m,
            len: 0,
            stash: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15 ^ m,
        }
    }

    #[inline]
    fn at(b: u64) -> (usize, u32) {
        let bit = b * BUCKET_BITS;
        ((bit >> 3) as usize, (bit & 7) as u32)
    }

    #[inline]
    fn read(&self, b: u64) -> u64 {
        let (off, sh) = Shard::at(b);
        let w = u64::from_le_bytes(self.bytes[off..off + 8].try_into().expect("8 bytes"));
        (w >> sh) & BUCKET_MASK
    }

    #[inline]
    fn write(&mut self, b: u64, v: u64) {
        let (off, sh) = Shard::at(b);
        let cell: &mut [u8; 8] = (&mut self.bytes[off..off + 8]).try_into().expect("8 bytes");
        let w = u64::from_le_bytes(*cell);
        let w = (w & !(BUCKET_MASK << sh)) | (v << sh);
        *cell = w.to_le_bytes();
    }

    /// The first bucket of `h`: from the 32 bits below the shard bits, so that it grows
    /// with the hash.
    #[inline]
    fn index(&self, h: u64) -> u64 {
        (((h >> (64 - SHARD_BITS - 32)) & 0xffff_ffff) * self.m) >> 32
    }

    /// The chunk of bucket `i`: its number, first bucket and length. A shard of fewer
    /// than two chunks' buckets is one chunk; otherwise every chunk has [`CHUNK`] buckets
    /// but the last, which has the rest too.
    #[inline]
    fn chunk(&self, i: u64) -> (u64, u64, u64) {
        if self.m < 2 * CHUNK {
            return (0, 0, self.m);
        }
        let last = (self.m >> CHUNK_BITS) - 1;
        let c = (i >> CHUNK_BITS).min(last);
        let base = c << CHUNK_BITS;
        (c, base, if c == last { self.m - base } else { CHUNK })
    }

    /// The other bucket of a fingerprint in bucket `i`: `base + (H(fp) − (i − base)) mod
    /// len` in `i`'s chunk, an involution for any length; `H(fp)` is range-reduced by a
    /// multiply and a shift, and the `mod` is one conditional subtraction (no division).
    #[inline]
    fn alt(&self, i: u64, fp: u64) -> u64 {
        let (_, base, len) = self.chunk(i);
        let hf = ((fp.wrapping_mul(0x5bd1_e995_9e37_79b9) >> 32) * len) >> 32;
        let a = hf + len - (i - base);
        base + if a >= len { a - len } else { a }
    }

    /// Asks for every cache line of the chunk of bucket `i`.
    fn prefetch_chunk(&self, i: u64) {
        let (_, base, len) = self.chunk(i);
        let (from, to) = (Shard::at(base).0, Shard::at(base + len).0 + 8);
        for off in (from..to).step_by(64) {
            crate::rate::hint::prefetch(self.bytes.as_ptr().wrapping_add(off));
        }
    }

    /// Asks for the two buckets of `h` (a probe follows a few ids later).
    #[inline]
    fn prefetch(&self, h: u64) {
        let i1 = self.index(h);
        let i2 = self.alt(i1, fingerprint(h));
        crate::rate::hint::prefetch(self.bytes.as_ptr().wrapping_add(Shard::at(i1).0));
        crate::rate::hint::prefetch(self.bytes.as_ptr().wrapping_add(Shard::at(i2).0));
    }

    #[inline]
    fn has(v: u64, fp: u64) -> bool {
        (0..SLOTS).any(|k| (v >> (k * SLOT_BITS)) & SLOT_MASK == fp)
    }

    /// Whether `h` may have been inserted.
    #[inline]
    pub fn contains(&self, h: u64) -> bool {
        let fp = fingerprint(h);
        let i1 = self.index(h);
        let i2 = self.alt(i1, fp);
        Shard::has(self.read(i1), fp)
            || Shard::has(self.read(i2), fp)
            || (!self.stash.is_empty()
                && self
                    .stash
                    .iter()
                    .any(|&(b, s)| (b == i1 || b == i2) && s == fp))
    }

    /// Puts `slot` into a free slot of bucket `b`; false when it is full.
    #[inline]
    fn put(&mut self, b: u64, slot: u64) -> bool {
        let v = self.read(b);
        for k in 0..SLOTS {
            if (v >> (k * SLOT_BITS)) & SLOT_MASK == 0 {
                self.write(b, v | slot << (k * SLOT_BITS));
                return true;
            }
        }
        false
    }

    /// Adds `h`.
    pub fn insert(&mut self, h: u64) {
        let fp = fingerprint(h);
        let slot = fp;
        let i1 = self.index(h);
        let i2 = self.alt(i1, fp);
        self.len += 1;
        if self.put(i1, slot) || self.put(i2, slot) {
            return;
        }
        // Both full: a slot of either whose other bucket has room moves there (one
        // step, 8 reads in the chunk) before the random walk of cuckoo kicks.
        for b in [i1, i2] {
            let v = self.read(b);
            for k in 0..SLOTS {
                let victim = (v >> (k * SLOT_BITS)) & SLOT_MASK;
                if self.put(self.alt(b, victim), victim) {
                    let v = self.read(b);
                    self.write(
                        b,
                        (v & !(SLOT_MASK << (k * SLOT_BITS))) | slot << (k * SLOT_BITS),
                    );
                    return;
                }
            }
        }
        let (mut b, mut slot) = (if self.rng & 1 == 0 { i1 } else { i2 }, slot);
        for _ in 0..MAX_KICKS {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let k = (self.rng % SLOTS as u64) as u32;
            let v = self.read(b);
            let victim = (v >> (k * SLOT_BITS)) & SLOT_MASK;
            self.write(
                b,
                (v & !(SLOT_MASK << (k * SLOT_BITS))) | slot << (k * SLOT_BITS),
            );
            slot = victim;
            b = self.alt(b, victim);
            if self.put(b, slot) {
                return;
            }
        }
        self.stash.push((b, slot));
    }

    fn bytes(&self) -> usize {
        self.bytes.capacity() + self.stash.capacity() * 16
    }
}

/// The filter: 64 shards, the window, and the day its ids were read from the index.
pub struct Filter {
    shards: Vec<Shard>,
    window_days: u32,
    /// Days after [`Filter::built_on`] the filter is [`Filter::stale`]: `ceil(window / 6)`.
    refresh_days: u32,
    /// The day the filter's ids were read from the index.
    built_day: u32,
    /// The last file commit (its seq) whose ids the filter holds, every earlier one's
    /// inside the window too ([`Filter::holds_through`]).
    seq: u64,
}

impl Filter {
    /// An empty filter sized for `capacity` ids, for a window of `window_days` (≥ 1).
    pub fn new(capacity: u64, window_days: u32) -> Filter {
        let per_shard = capacity.div_ceil(SHARDS as u64);
        let m = ((per_shard as f64 / (SLOTS as f64 * TARGET_LOAD)).ceil() as u64).max(1);
        let window_days = window_days.max(1);
        Filter {
            shards: (0..SHARDS).map(|_| Shard::with_buckets(m)).collect(),
            window_days,
            refresh_days: window_days.div_ceil(6),
            built_day: 0,
            seq: 0,
        }
    }

    /// Says that the filter holds the ids of every file committed up to seq `seq`
    /// (inside the window): set when it is read from the index (the last seq committed
    /// then) and after each commit whose ids were added.
    pub fn holds_through(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// See [`Filter::holds_through`].
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The window the filter was built for, in days.
    pub fn window_days(&self) -> u32 {
        self.window_days
    }

    /// Writes the filter as a snapshot ([`Filter::read_snapshot`] reads it back): the
    /// magic `TGDEDUPF`, format 1, window, build day, shard count, seq;
    /// per shard its buckets, ids, kick state, stash and packed bytes; then the XXH3-128
    /// of all of that, so that a torn or altered file is refused, never half read. All
    /// integers little-endian.
    pub fn write_snapshot(&self, out: impl std::io::Write) -> std::io::Result<()> {
        let mut w = Hashing {
            inner: std::io::BufWriter::with_capacity(1 << 20, out),
            hash: twox_hash::XxHash3_128::new(),
        };
        w.put(SNAPSHOT_MAGIC)?;
        w.put(&SNAPSHOT_FORMAT.to_le_bytes())?;
        for v in [self.window_days, self.built_day, self.shards.len() as u32] {
            w.put(&v.to_le_bytes())?;
        }
        w.put(&self.seq.to_le_bytes())?;
        for s in &self.shards {
            for v in [
                s.m,
                s.len,
                s.rng,
                s.stash.len() as u64,
                s.bytes.len() as u64,
            ] {
                w.put(&v.to_le_bytes())?;
            }
            for &(b, slot) in &s.stash {
                w.put(&b.to_le_bytes())?;
                w.put(&slot.to_le_bytes())?;
            }
            w.put(&s.bytes)?;
        }
        let sum = w.hash.finish_128();
        use std::io::Write;
        w.inner.write_all(&sum.to_le_bytes())?;
        w.inner.flush()
    }

    /// Reads a snapshot of `len` bytes written by [`Filter::write_snapshot`]; refuses
    /// (saying why) a file of another format, with lengths that do not add up, or whose
    /// checksum differs.
    pub fn read_snapshot(input: impl std::io::Read, len: u64) -> Result<Filter, String> {
        let mut r = Hashing {
            inner: std::io::BufReader::with_capacity(1 << 20, input),
            hash: twox_hash::XxHash3_128::new(),
        };
        let mut left = len
            .checked_sub(16)
            .ok_or_else(|| "shorter than a snapshot".to_string())?;
        let mut magic = [0u8; 8];
        r.take(&mut magic, &mut left)?;
        if &magic != SNAPSHOT_MAGIC || r.u32(&mut left)? != SNAPSHOT_FORMAT {
            return Err("not a filter snapshot of this format".into());
        }
        let (window_days, built_day, shards) =
            (r.u32(&mut left)?, r.u32(&mut left)?, r.u32(&mut left)?);
        if shards as usize != SHARDS || window_days == 0 {
            return Err("not a filter of this layout".into());
        }
        let seq = r.u64(&mut left)?;
        let mut out = Vec::with_capacity(SHARDS);
        for _ in 0..SHARDS {
            let (m, held, rng, stashed, bytes) = (
                r.u64(&mut left)?,
                r.u64(&mut left)?,
                r.u64(&mut left)?,
                r.u64(&mut left)?,
                r.u64(&mut left)?,
            );
            let want = m
                .checked_mul(BUCKET_BITS)
                .map(|b| b.div_ceil(8) + 8)
                .filter(|_| m > 0);
            let body = stashed.checked_mul(16).and_then(|s| s.checked_add(bytes));
            if want != Some(bytes) || body.is_none_or(|n| n > left) {
                return Err("shard lengths do not add up".into());
            }
            let mut stash = Vec::with_capacity(stashed as usize);
            for _ in 0..stashed {
                let b = r.u64(&mut left)?;
                stash.push((b, r.u64(&mut left)?));
            }
            let mut packed = vec![0u8; bytes as usize];
            r.take(&mut packed, &mut left)?;
            out.push(Shard {
                bytes: packed,
                m,
                len: held,
                stash,
                rng,
            });
        }
        if left != 0 {
            return Err("bytes after the last shard".into());
        }
        let sum = r.hash.finish_128();
        let mut stored = [0u8; 16];
        std::io::Read::read_exact(&mut r.inner, &mut stored).map_err(|e| e.to_string())?;
        if u128::from_le_bytes(stored) != sum {
            return Err("checksum differs".into());
        }
        // The refresh interval follows from the window, as in [`Filter::new`].
        Ok(Filter {
            shards: out,
            window_days,
            refresh_days: window_days.div_ceil(6),
            built_day,
            seq,
        })
    }

    /// The first commit day still inside the window that ends on `today`.
    pub fn first_day(&self, today: u32) -> u32 {
        today.saturating_sub(self.window_days - 1)
    }

    /// Says that the filter's ids were read from the index on `today`: the ids of the
    /// window ending that day, and no older one.
    pub fn built_on(&mut self, today: u32) {
        self.built_day = today;
    }

    /// True when `ceil(window / 6)` days or more have passed since the filter's ids were
    /// read from the index: time to read them again, leaving out the ids whose window
    /// ended meanwhile.
    pub fn stale(&self, today: u32) -> bool {
        today >= self.built_day.saturating_add(self.refresh_days)
    }

    /// Whether `h` may be held.
    pub fn contains(&self, h: u64) -> bool {
        self.shards[(h >> (64 - SHARD_BITS)) as usize].contains(h)
    }

    /// Adds `h`.
    pub fn insert(&mut self, h: u64) {
        self.shards[(h >> (64 - SHARD_BITS)) as usize].insert(h)
    }

    /// A filter for `window_days` whose shards are built by `shard(s)` from the ids of
    /// shard s (the rebuild from the store at start or when it grows), each sized for
    /// its ids times `headroom` (≥ 1) and at least its share of `room` ids more.
    pub fn from_ids(
        window_days: u32,
        headroom: f64,
        room: u64,
        min_capacity: u64,
        threads: usize,
        shard: impl Fn(usize) -> Result<Vec<u64>, String> + Sync,
    ) -> Result<Filter, String> {
        let mut f = Filter::new(0, window_days);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let built: std::sync::Mutex<Vec<(usize, Shard)>> = Default::default();
        let failed: std::sync::Mutex<Option<String>> = Default::default();
        std::thread::scope(|sc| {
            for _ in 0..threads.clamp(1, SHARDS) {
                sc.spawn(|| loop {
                    let s = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if s >= SHARDS {
                        break;
                    }
                    match shard(s) {
                        Ok(ids) => {
                            let cap = ((ids.len() as f64 * headroom) as u64)
                                .max(ids.len() as u64 + room.div_ceil(SHARDS as u64))
                                .max(min_capacity.div_ceil(SHARDS as u64));
                            let m =
                                ((cap as f64 / (SLOTS as f64 * TARGET_LOAD)).ceil() as u64).max(1);
                            let mut sh = Shard::with_buckets(m);
                            for (i, &h) in ids.iter().enumerate() {
                                if let Some(&a) = ids.get(i + AHEAD) {
                                    sh.prefetch(a);
                                }
                                sh.insert(h);
                            }
                            built.lock().expect("lock").push((s, sh));
                        }
                        Err(e) => {
                            *failed.lock().expect("lock") = Some(e);
                            break;
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().expect("lock") {
            return Err(e);
        }
        for (s, sh) in built.into_inner().expect("lock") {
            f.shards[s] = sh;
        }
        Ok(f)
    }

    /// Adds the hashes of `sorted` (ascending; a hash repeated in it once), a chunk at a
    /// time (see [`probe_sorted`]).
    pub fn add_sorted(&mut self, sorted: &[u64]) {
        for (s, from, to) in chunk_runs(&self.shards, 0, sorted) {
            let (sh, run) = (&mut self.shards[s], &sorted[from..to]);
            if run.len() > 64 {
                sh.prefetch_chunk(sh.index(run[0]));
            }
            for (k, &h) in run.iter().enumerate() {
                if let Some(&a) = run.get(k + AHEAD) {
                    sh.prefetch(a);
                }
                if k == 0 || run[k - 1] != h {
                    sh.insert(h);
                }
            }
        }
    }

    /// The shards, in hash order (shard s holds the hashes whose top bits are s).
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// True when adding `more` ids would fill the filter past the load it is sized for.
    pub fn lacks_room_for(&self, more: u64) -> bool {
        (self.len() + more) as f64 > self.slots() as f64 * TARGET_LOAD
    }

    /// Ids held (read from the index or inserted since; an id inserted twice counts
    /// twice).
    pub fn len(&self) -> u64 {
        self.shards.iter().map(|s| s.len).sum()
    }

    /// True when no id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots held in the shards' stashes (inserts that found no bucket).
    pub fn stashed(&self) -> usize {
        self.shards.iter().map(|s| s.stash.len()).sum()
    }

    /// Slots the shards have.
    pub fn slots(&self) -> u64 {
        self.shards.iter().map(|s| s.m * SLOTS as u64).sum()
    }

    /// Bytes of memory the filter holds.
    pub fn bytes(&self) -> usize {
        self.shards.iter().map(Shard::bytes).sum::<usize>()
            + self.shards.capacity() * std::mem::size_of::<Shard>()
    }

    /// True when the filter is fuller than it is sized for: time to build a bigger one.
    pub fn needs_growth(&self) -> bool {
        self.len() as f64 > self.slots() as f64 * 0.97
            || self.shards.iter().any(|s| s.stash.len() > 64)
    }
}

/// The first bytes of a filter snapshot, and its format ([`Filter::write_snapshot`]).
const SNAPSHOT_MAGIC: &[u8; 8] = b"TGDEDUPF";
const SNAPSHOT_FORMAT: u32 = 1;

/// A snapshot's writer or reader and the hash of the bytes that went through it.
struct Hashing<T> {
    inner: T,
    hash: twox_hash::XxHash3_128,
}

impl<W: std::io::Write> Hashing<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hash.write(b);
        self.inner.write_all(b)
    }
}

impl<R: std::io::Read> Hashing<R> {
    /// Fills `buf`, of the `left` bytes that may still be read.
    fn take(&mut self, buf: &mut [u8], left: &mut u64) -> Result<(), String> {
        *left = left
            .checked_sub(buf.len() as u64)
            .ok_or_else(|| "shorter than its lengths say".to_string())?;
        self.inner.read_exact(buf).map_err(|e| e.to_string())?;
        self.hash.write(buf);
        Ok(())
    }

    fn u32(&mut self, left: &mut u64) -> Result<u32, String> {
        let mut b = [0u8; 4];
        self.take(&mut b, left)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self, left: &mut u64) -> Result<u64, String> {
        let mut b = [0u8; 8];
        self.take(&mut b, left)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Probes every hash of `sorted` (ascending: the hashes of one id partition) against
/// `shards` (that partition's shards, starting at shard number `base`), a chunk at a
/// time: the run of hashes whose first bucket is in one chunk, after the whole chunk was
/// asked for, so that every access after the chunk's first lands in cache. Returns the
/// hashes that may have been held before (ascending, each once). The two buckets of a
/// hash are prefetched 8 hashes (`AHEAD`) before it is probed.
pub fn probe_sorted(shards: &[Shard], base: usize, sorted: &[u64]) -> Vec<u64> {
    let mut maybe = Vec::new();
    // Shards holding nothing answer "no" to every probe.
    if shards.iter().all(|s| s.len == 0) {
        return maybe;
    }
    for (s, from, to) in chunk_runs(shards, base, sorted) {
        let (sh, run) = (&shards[s], &sorted[from..to]);
        if run.len() > 64 {
            sh.prefetch_chunk(sh.index(run[0]));
        }
        for (k, &h) in run.iter().enumerate() {
            if let Some(&a) = run.get(k + AHEAD) {
                sh.prefetch(a);
            }
            if sh.contains(h) && maybe.last() != Some(&h) {
                maybe.push(h);
            }
        }
    }
    maybe
}

/// The runs `(shard - base, from, to)` of `sorted` (ascending hashes of shards `base..`)
/// whose first buckets lie in one chunk of one shard, in order.
fn chunk_runs(shards: &[Shard], base: usize, sorted: &[u64]) -> Vec<(usize, usize, usize)> {
    let shard = |h: u64| (h >> (64 - SHARD_BITS)) as usize - base;
    let mut runs = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let s = shard(sorted[i]);
        let sh = &shards[s];
        let c = sh.chunk(sh.index(sorted[i])).0;
        let mut j = i + 1;
        while j < sorted.len() && shard(sorted[j]) == s && sh.chunk(sh.index(sorted[j])).0 == c {
            j += 1;
        }
        runs.push((s, i, j));
        i = j;
    }
    runs
}

/// Hashes probed ahead of the one being probed.
const AHEAD: usize = 8;

/// The record-id bucket on disk of a hash: its top [`BUCKET_BITS_DISK`] bits.
#[inline]
pub fn disk_bucket(h: u64) -> u32 {
    (h >> (64 - BUCKET_BITS_DISK)) as u32
}

/// Bits of the hash that pick the on-disk bucket: 2^18 buckets, so that a 10 M-record
/// file writes ~40 ids per value and a lookup reads ~400 ids per 100 M held.
pub const BUCKET_BITS_DISK: u32 = crate::store::DEDUP_BUCKET_BITS;

/// A file's index entries, encoded for the commit: one value per disk bucket the file
/// touches ([`VALUE_FORMAT`], then per record one entry of [`encode_entry`]), built per
/// id partition (the partitions are ranges of buckets, in order).
#[derive(Debug, Default)]
pub struct FileIndex {
    /// Per partition: the values back to back, and (bucket, start, end) of each, by
    /// bucket.
    pub parts: Vec<IndexPart>,
    /// Ids encoded.
    pub ids: u64,
    /// The file's id hashes, per id partition, ascending (its duplicates too): what it
    /// adds to the filter ([`Filter::add_sorted`]) while its batch commits.
    pub filter_adds: Vec<Vec<u64>>,
}

/// The values of one id partition.
#[derive(Debug, Default)]
pub struct IndexPart {
    pub buf: Vec<u8>,
    pub chunks: Vec<(u32, usize, usize)>,
}

/// The format byte of the index values this version writes: per record id, one entry
/// of [`encode_entry`]. Values of format 1 (per id: varint length, id bytes), written
/// before, are still read.
pub const VALUE_FORMAT: u8 = 2;

/// Entry tags (the first byte of an entry): `0..=0x7f`, an id of that many bytes
/// follows; [`RAW_LONG`], a varint length and the id's bytes follow; `NUMBER + p`
/// (`p` ≤ [`MAX_PREFIX`]), the id is `p` bytes of prefix then a decimal number, stored as
/// the prefix and a varint; [`UUID_LOWER`] / [`UUID_UPPER`], the id is a UUID in
/// canonical text (8-4-4-4-12 hex digits, lower or upper case), stored as its 16 bytes.
const RAW_LONG: u8 = 0x80;
const NUMBER: u8 = 0x81;
const MAX_PREFIX: usize = 62;
const UUID_LOWER: u8 = 0xc0;
const UUID_UPPER: u8 = 0xc1;
/// Byte offsets of the dashes of a UUID's text.
const UUID_DASHES: [usize; 4] = [8, 13, 18, 23];

/// Appends one encoded entry (format [`VALUE_FORMAT`]). Every id has exactly one
/// encoding (the first of these that applies): a UUID as 16 bytes; an id ending in a
/// decimal number of 1 to 19 digits without a leading zero, after at most 62 bytes of
/// prefix not ending in a digit, as the prefix and the number; any other id as its
/// bytes. So two ids are equal exactly when their entries are, and an entry is read back
/// to the id's bytes ([`decode_entry`]). `K-1234567` takes 6 bytes (10 as bytes with a
/// length), a UUID 17 (37).
#[inline]
pub fn encode_entry(buf: &mut Vec<u8>, id: &[u8]) {
    if id.len() == 36 {
        if let Some((tag, bytes)) = uuid_bytes(id) {
            buf.push(tag);
            buf.extend_from_slice(&bytes);
            return;
        }
    }
    if let Some((p, n)) = prefixed_number(id) {
        if p <= 5 && id.len() >= 8 {
            // The common short entry (`K-1234567`: 6 bytes) is built in an array and
            // appended as 16 bytes, then cut to its length: fixed-size copies, where
            // appending its parts called memcpy twice per record.
            let mut e = [0u8; 24];
            e[0] = NUMBER + p as u8;
            e[1..9].copy_from_slice(&id[..8]);
            let len = 1 + p + write_varint(&mut e[1 + p..], n);
            let at = buf.len();
            buf.extend_from_slice(&e[..16]);
            buf.truncate(at + len);
            return;
        }
        buf.push(NUMBER + p as u8);
        buf.extend_from_slice(&id[..p]);
        push_varint(buf, n);
        return;
    }
    if id.len() < RAW_LONG as usize {
        buf.push(id.len() as u8);
    } else {
        buf.push(RAW_LONG);
        push_varint(buf, id.len() as u64);
    }
    buf.extend_from_slice(id);
}

/// A varint, written in place: `integer_encoding`'s `encode_var` into a buffer and a copy
/// made the rating phase ~0.05 s slower on 10 M records (`tools/ab.sh`, both shapes).
#[inline]
fn push_varint(buf: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        buf.push((n as u8) | 0x80);
        n >>= 7;
    }
    buf.push(n as u8);
}

/// A varint at the start of `out` (room for 10 bytes); returns its length.
#[inline]
fn write_varint(out: &mut [u8], mut n: u64) -> usize {
    let mut k = 0;
    while n >= 0x80 {
        out[k] = (n as u8) | 0x80;
        n >>= 7;
        k += 1;
    }
    out[k] = n as u8;
    k + 1
}

/// A varint at the start of `buf`: its value and length (at most 10 bytes).
#[inline]
fn read_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let mut n = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        n |= ((b & 0x7f) as u64) << (7 * i);
        if b & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

/// `(prefix length, number)` when `id` is a prefix of at most [`MAX_PREFIX`] bytes then
/// its whole trailing run of decimal digits: 1 to 19 of them (below 2^64), without a
/// leading zero unless the number is `0`.
///
/// It runs once per rated record (the id spill), so the common case, an id of 8 bytes
/// or more ending in 1 to 7 digits (`K-1234567`), reads the last 8 bytes as one word:
/// which bytes are digits (no carry between bytes, so exact for any byte), how many
/// end the id, and their number in three multiplies. Anything else takes the byte-wise
/// path; both give the same answer for every id (a test compares them).
#[inline]
fn prefixed_number(id: &[u8]) -> Option<(usize, u64)> {
    if let Some(last) = id.last_chunk::<8>() {
        let x = u64::from_le_bytes(*last) ^ 0x3030_3030_3030_3030;
        // High bit of each byte that is not a digit: x > 9 as a 7-bit sum (no carry
        // leaves a byte: at most 0x7f + 0x76), or x ≥ 0x80.
        let not_digit =
            (((x & 0x7f7f_7f7f_7f7f_7f7f) + 0x7676_7676_7676_7676) | x) & 0x8080_8080_8080_8080;
        if not_digit != 0 {
            // The id's last bytes are the word's high bytes.
            let digits = (not_digit.leading_zeros() / 8) as usize;
            let p = id.len() - digits;
            if digits == 0 || p > MAX_PREFIX || (digits > 1 && id[p] == b'0') {
                return None;
            }
            // The digits' values, below them zeros: the number of an 8-digit field.
            let mut v = x & (u64::MAX << (64 - 8 * digits));
            v = (v.wrapping_mul(10) + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
            v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_ffff_0000_ffff;
            v = (v.wrapping_mul(10_000) + (v >> 32)) & 0xffff_ffff;
            return Some((p, v));
        }
    }
    prefixed_number_bytewise(id)
}

/// [`prefixed_number`] a byte at a time.
fn prefixed_number_bytewise(id: &[u8]) -> Option<(usize, u64)> {
    let digits = id.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let p = id.len() - digits;
    if digits == 0 || digits > 19 || p > MAX_PREFIX || (digits > 1 && id[p] == b'0') {
        return None;
    }
    Some((
        p,
        id[p..].iter().fold(0u64, |n, d| n * 10 + (d - b'0') as u64),
    ))
}

/// The tag and 16 bytes of a UUID in canonical text, all lower or all upper case (one
/// of only digits counts as lower).
fn uuid_bytes(id: &[u8]) -> Option<(u8, [u8; 16])> {
    let (mut lower, mut upper) = (true, true);
    let mut out = [0u8; 16];
    let mut nibbles = 0usize;
    for (i, &c) in id.iter().enumerate() {
        if UUID_DASHES.contains(&i) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => {
                upper = false;
                c - b'a' + 10
            }
            b'A'..=b'F' => {
                lower = false;
                c - b'A' + 10
            }
            _ => return None,
        };
        out[nibbles / 2] |= v << (4 * (1 - nibbles % 2));
        nibbles += 1;
    }
    match (nibbles == 32, lower, upper) {
        (true, true, _) => Some((UUID_LOWER, out)),
        (true, false, true) => Some((UUID_UPPER, out)),
        _ => None,
    }
}

/// The length of the encoded entry at the start of `buf`, which [`encode_entry`] wrote.
#[inline]
pub fn entry_len(buf: &[u8]) -> usize {
    entry_len_checked(buf).expect("an entry encode_entry wrote")
}

/// The length of the entry at the start of `buf`; `None` when `buf` does not start with
/// a whole entry (a corrupt value).
#[inline]
pub fn entry_len_checked(buf: &[u8]) -> Option<usize> {
    let (&tag, rest) = buf.split_first()?;
    let len = match tag {
        0..=0x7f => 1 + tag as usize,
        RAW_LONG => {
            let (n, used) = read_varint(rest)?;
            1 + used + usize::try_from(n).ok()?
        }
        NUMBER..=0xbf => {
            let p = (tag - NUMBER) as usize;
            1 + p + read_varint(rest.get(p..)?)?.1
        }
        UUID_LOWER | UUID_UPPER => 17,
        _ => return None,
    };
    (len <= buf.len()).then_some(len)
}

/// The id of a whole entry ([`entry_len_checked`] long): its bytes, borrowed from the
/// entry or written into `scratch`.
pub fn decode_entry<'a>(entry: &'a [u8], scratch: &'a mut [u8; 96]) -> Option<&'a [u8]> {
    let (&tag, rest) = entry.split_first()?;
    match tag {
        0..=0x7f => rest.get(..tag as usize),
        RAW_LONG => {
            let (n, used) = read_varint(rest)?;
            rest.get(used..used + usize::try_from(n).ok()?)
        }
        NUMBER..=0xbf => {
            let p = (tag - NUMBER) as usize;
            let prefix = rest.get(..p)?;
            let (n, _) = read_varint(&rest[p..])?;
            scratch[..p].copy_from_slice(prefix);
            let mut digits = itoa::Buffer::new();
            let digits = digits.format(n).as_bytes();
            let len = p + digits.len();
            scratch[p..len].copy_from_slice(digits);
            Some(&scratch[..len])
        }
        UUID_LOWER | UUID_UPPER => {
            let bytes = rest.get(..16)?;
            let hex = if tag == UUID_LOWER {
                b"0123456789abcdef"
            } else {
                b"0123456789ABCDEF"
            };
            let mut at = 0;
            for (i, b) in bytes.iter().enumerate() {
                if [4, 6, 8, 10].contains(&i) {
                    scratch[at] = b'-';
                    at += 1;
                }
                scratch[at] = hex[(b >> 4) as usize];
                scratch[at + 1] = hex[(b & 15) as usize];
                at += 2;
            }
            Some(&scratch[..36])
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes())
    }

    /// No false negatives; the false-positive rate of a filter at its sized load is
    /// what 2 buckets × 4 slots of 12-bit fingerprints give (≈ 8 · 0.95 / 4096 ≈ 0.19 %),
    /// and it costs at most 2 bytes per id held.
    #[test]
    fn holds_every_id_with_few_false_positives_in_two_bytes_an_id() {
        let n = 2_000_000u64;
        let mut f = Filter::new(n, 62);
        for i in 0..n {
            f.insert(hash(i));
        }
        assert_eq!(f.len(), n);
        for i in 0..n {
            assert!(f.contains(hash(i)), "id {i} lost");
        }
        let probes = 1_000_000u64;
        let fp = (0..probes).filter(|i| f.contains(hash(n + i))).count() as f64 / probes as f64;
        assert!(fp < 0.0025, "false-positive rate {fp}");
        assert!(
            fp > 0.0010,
            "false-positive rate {fp} (fingerprints unused?)"
        );
        // 6-byte buckets sized for 95 % load: 1.58 bytes per id.
        let per_id = f.bytes() as f64 / n as f64;
        assert!((1.57..1.60).contains(&per_id), "{per_id} bytes per id");
        assert!(!f.needs_growth());
    }

    /// A shard of several chunks (the last one longer): both buckets of every id in one
    /// chunk, the alternate bucket an involution, every id held at the sized load with
    /// nothing in the stash, and the false-positive rate of one chunk.
    #[test]
    fn chunked_shard_holds_every_id_at_its_load() {
        let m = 3 * CHUNK + 5_000;
        let mut sh = Shard::with_buckets(m);
        assert_eq!(sh.chunk(0), (0, 0, CHUNK));
        assert_eq!(sh.chunk(CHUNK), (1, CHUNK, CHUNK));
        assert_eq!(sh.chunk(m - 1), (2, 2 * CHUNK, CHUNK + 5_000));
        for i in (0..m).step_by(7) {
            for fp in [1, 77, 0xfff] {
                let a = sh.alt(i, fp);
                assert!(a < m);
                assert_eq!(sh.chunk(a).0, sh.chunk(i).0, "bucket {i} fp {fp}");
                assert_eq!(sh.alt(a, fp), i, "bucket {i} fp {fp}");
            }
        }
        let n = (m as f64 * SLOTS as f64 * TARGET_LOAD) as u64;
        let mut hs: Vec<u64> = (0..n).map(hash).collect();
        hs.sort_unstable();
        for &h in &hs {
            sh.insert(h);
        }
        assert!(hs.iter().all(|&h| sh.contains(h)));
        assert!(sh.stash.len() <= 2, "stash {}", sh.stash.len());
        let fp = (n..n + 200_000).filter(|&i| sh.contains(hash(i))).count();
        assert!((200..500).contains(&fp), "{fp} false positives in 200 000");
    }

    /// A filter is stale `ceil(window / 6)` days after its ids were read, not before.
    #[test]
    fn stale_a_sixth_of_the_window_after_it_was_read() {
        let mut f = Filter::new(1000, 62);
        let d0 = 20_001u32;
        f.built_on(d0);
        assert_eq!(f.first_day(d0), d0 - 61);
        assert!(!f.stale(d0));
        assert!(!f.stale(d0 + 10));
        assert!(f.stale(d0 + 11));
        assert!(f.stale(d0 + 400));
        let mut g = Filter::new(1000, 1);
        g.built_on(d0);
        assert_eq!(g.first_day(d0), d0);
        assert!(!g.stale(d0));
        assert!(g.stale(d0 + 1));
    }

    /// An overfull shard keeps every id (stash), and says it needs to grow.
    #[test]
    fn overfull_keeps_every_id() {
        let mut f = Filter::new(64 * 10, 62);
        let n = 64 * 60;
        for i in 0..n {
            f.insert(hash(i));
        }
        assert!((0..n).all(|i| f.contains(hash(i))));
        assert!(f.needs_growth());
    }

    /// A snapshot reads back as the same filter (every id, the stash, the counts, the
    /// window, build day and seq, and the same answers to ids never inserted); a torn,
    /// altered or foreign file is refused, saying why.
    #[test]
    fn a_snapshot_reads_back_the_same_filter_and_refuses_damage() {
        let mut f = Filter::new(64 * 10, 30);
        let n = 64 * 60;
        for i in 0..n {
            f.insert(hash(i));
        }
        assert!(f.stashed() > 0, "the test wants a stash");
        f.built_on(20_000);
        f.holds_through(17);
        let mut buf = Vec::new();
        f.write_snapshot(&mut buf).unwrap();
        let g = Filter::read_snapshot(&buf[..], buf.len() as u64).unwrap();
        assert_eq!(
            (g.len(), g.stashed(), g.slots()),
            (f.len(), f.stashed(), f.slots())
        );
        assert_eq!((g.window_days(), g.seq(), g.built_day), (30, 17, 20_000));
        assert_eq!(g.refresh_days, 5);
        assert!((0..n).all(|i| g.contains(hash(i))));
        assert!((n..n + 100_000).all(|i| g.contains(hash(i)) == f.contains(hash(i))));
        // Inserts go on from the same kick state.
        let (mut f, mut g) = (f, g);
        for i in n..n + 500 {
            f.insert(hash(i));
            g.insert(hash(i));
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        f.write_snapshot(&mut a).unwrap();
        g.write_snapshot(&mut b).unwrap();
        assert_eq!(a, b);

        let refused = |bytes: &[u8]| Filter::read_snapshot(bytes, bytes.len() as u64).err();
        let mut flipped = buf.clone();
        flipped[buf.len() / 2] ^= 0x40;
        assert_eq!(refused(&flipped).as_deref(), Some("checksum differs"));
        let mut sum = buf.clone();
        *sum.last_mut().unwrap() ^= 1;
        assert_eq!(refused(&sum).as_deref(), Some("checksum differs"));
        assert_eq!(
            refused(&buf[..buf.len() - 1]).as_deref(),
            Some("shard lengths do not add up")
        );
        assert_eq!(
            refused(&buf[..40]).as_deref(),
            Some("shorter than its lengths say")
        );
        assert_eq!(
            refused(&buf[..3]).as_deref(),
            Some("shorter than a snapshot")
        );
        let mut longer = buf.clone();
        longer.extend_from_slice(&[0; 8]);
        assert_eq!(
            refused(&longer).as_deref(),
            Some("bytes after the last shard")
        );
        let mut other = buf.clone();
        other[7] = b'G';
        assert_eq!(
            refused(&other).as_deref(),
            Some("not a filter snapshot of this format")
        );
    }

    #[test]
    fn probe_reports_only_earlier_ids_then_add_holds_all() {
        let mut f = Filter::new(100_000, 62);
        for i in 0..50_000 {
            f.insert(hash(i));
        }
        let hs: Vec<u64> = (40_000..60_000).map(hash).collect();
        let (mut all, mut adds) = (Vec::new(), Vec::new());
        for s in 0..SHARDS {
            let mut mine: Vec<u64> = hs
                .iter()
                .copied()
                .filter(|h| (h >> 58) as usize == s)
                .collect();
            mine.sort_unstable();
            all.extend(probe_sorted(&f.shards()[s..s + 1], s, &mine));
            adds.push(mine);
        }
        let earlier: Vec<u64> = (40_000..50_000).map(hash).collect();
        assert!(earlier.iter().all(|h| all.contains(h)));
        assert!(all.len() < 10_000 + 100, "{}", all.len());
        // Nothing added by the probe; added afterwards, every hash once (repeats too).
        assert_eq!(f.len(), 50_000);
        for mut mine in adds {
            if let Some(&h) = mine.first() {
                mine.insert(0, h);
            }
            f.add_sorted(&mine);
        }
        assert_eq!(f.len(), 70_000);
        assert!((40_000..60_000).all(|i| f.contains(hash(i))));
    }

    /// The word-at-a-time reading of an id's trailing number agrees with the byte-wise
    /// one: every byte value at every one of the last 9 positions of ids of 8 to 12
    /// bytes around digit runs of every length (a wrong answer would give an id a second
    /// encoding, and an index written before would miss it).
    #[test]
    fn trailing_numbers_read_a_word_at_a_time_agree() {
        let bases: [&[u8]; 8] = [
            b"K-1234567",
            b"K-12345678",
            b"X00000001",
            b"ab-0000000",
            b"12345678",
            b"switch-7-001",
            b"A-9999999",
            b"\xca9\xcf12345",
        ];
        for base in bases {
            for i in base.len().saturating_sub(9)..base.len() {
                for v in 0..=255u8 {
                    let mut id = base.to_vec();
                    id[i] = v;
                    assert_eq!(
                        prefixed_number(&id),
                        prefixed_number_bytewise(&id),
                        "{:?}",
                        String::from_utf8_lossy(&id)
                    );
                }
            }
        }
    }

    #[test]
    fn values_round_trip() {
        let mut buf = vec![VALUE_FORMAT];
        let long = vec![b'x'; 300];
        for id in [&b"A-1"[..], b"", &long] {
            encode_entry(&mut buf, id);
        }
        // Encoded here, read by the store's reader.
        let decode = crate::store::decode_index_value;
        let ids = decode(&buf).unwrap();
        assert_eq!(ids, vec![b"A-1".to_vec(), Vec::new(), long]);
        assert!(decode(&[3, 0]).is_none());
        assert!(decode(&[1, 5, b'a']).is_none());
        // A cut entry, a tag no entry has.
        assert!(decode(&[VALUE_FORMAT, 5, b'a']).is_none());
        assert!(decode(&[VALUE_FORMAT, 0x82, b'K']).is_none());
        assert!(decode(&[VALUE_FORMAT, 0xc0, 1, 2]).is_none());
        assert!(decode(&[VALUE_FORMAT, 0xc2]).is_none());
    }

    fn entry(id: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_entry(&mut v, id);
        assert_eq!(entry_len(&v), v.len(), "{:?}", String::from_utf8_lossy(id));
        let mut scratch = [0u8; 96];
        assert_eq!(decode_entry(&v, &mut scratch), Some(id));
        v
    }

    /// Each kind of entry, its exact bytes, and ids that differ only in what a compact
    /// entry could lose (a leading zero, case, digits beyond 19) keep entries of their
    /// own.
    #[test]
    fn entries_are_compact_and_one_per_id() {
        assert_eq!(
            entry(b"K-1234567"),
            vec![0x83, b'K', b'-', 0x87, 0xad, 0x4b]
        );
        assert_eq!(entry(b"0"), vec![0x81, 0]);
        assert_eq!(entry(b"K-0"), vec![0x83, b'K', b'-', 0]);
        assert_eq!(entry(b"K-007"), vec![5, b'K', b'-', b'0', b'0', b'7']);
        assert_eq!(entry(b""), vec![0]);
        assert_eq!(entry(b"abc"), vec![3, b'a', b'b', b'c']);
        let max = b"9999999999999999999";
        assert_eq!(entry(max)[0], 0x81);
        assert_eq!(
            entry(b"18446744073709551615")[0],
            20,
            "20 digits stay bytes"
        );
        let lower = b"0a1b2c3d-0000-4000-8000-00000000abcd";
        let upper = b"0A1B2C3D-0000-4000-8000-00000000ABCD";
        let mixed = b"0a1b2c3d-0000-4000-8000-00000000ABCD";
        let e = entry(lower);
        assert_eq!(e.len(), 17);
        assert_eq!(&e[..5], &[0xc0, 0x0a, 0x1b, 0x2c, 0x3d]);
        assert_eq!(entry(upper)[0], 0xc1);
        assert_eq!(entry(mixed)[0], 36, "mixed case: bytes");
        let digits_only = b"12345678-1234-1234-1234-123456789012";
        assert_eq!(entry(digits_only)[0], 0xc0);
        let prefix63 = [b'a'; 63];
        let mut over = prefix63.to_vec();
        over.extend_from_slice(b"12");
        assert_eq!(entry(&over)[0], 65, "a prefix over 62 bytes: bytes");
        let long = vec![b'x'; 300];
        assert_eq!(&entry(&long)[..3], &[0x80, 0xac, 0x02]);
        let near: [&[u8]; 12] = [
            b"K-1", b"K-01", b"K-001", b"k-1", b"0", b"00", b"1", b"01", lower, upper, mixed,
            b"K-1 ",
        ];
        for (i, a) in near.iter().enumerate() {
            for b in &near[i + 1..] {
                assert_ne!(entry(a), entry(b), "{a:?} {b:?}");
            }
        }
    }

    proptest::proptest! {
        /// Any id reads back from its entry, and two ids share an entry only when equal
        /// (ids drawn from the shapes the compact entries cover, and any bytes).
        #[test]
        fn entries_read_back_and_tell_ids_apart(
            a in "([A-Za-z:/-]{0,4}[0-9]{0,21}|[0-9a-fA-F]{8}-[0-9a-f]{4}-[0-9A-F]{4}-[0-9a-f]{4}-[0-9a-fA-F]{12})",
            b in "([A-Za-z:/-]{0,4}[0-9]{0,21}|[0-9a-fA-F]{8}-[0-9a-f]{4}-[0-9A-F]{4}-[0-9a-f]{4}-[0-9a-fA-F]{12})",
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let (ea, eb, er) = (entry(a.as_bytes()), entry(b.as_bytes()), entry(&raw));
            proptest::prop_assert_eq!(ea == eb, a == b);
            proptest::prop_assert_eq!(prefixed_number(&raw), prefixed_number_bytewise(&raw));
            proptest::prop_assert_eq!(prefixed_number(a.as_bytes()), prefixed_number_bytewise(a.as_bytes()));
            proptest::prop_assert_eq!(ea == er, a.as_bytes() == &raw[..]);
        }
    }
}
