//! The ledger: tollgate's only door to RocksDB.
//!
//! Column families:
//!
//! | cf        | key                                   | value                                  |
//! |-----------|---------------------------------------|----------------------------------------|
//! | `meta`    | `seq`, `last_closed`, `counter/<YYYY>` | u64 LE / period / u64 LE              |
//! | `meta`    | `my/link/<sha256>`, `my/session/<sha256>` | self-service sign-in link / session JSON |
//! | `files`   | file name                              | [`Checkpoint`] JSON                    |
//! | `hashes`  | content hash (hex)                     | file name                              |
//! | `usage`   | `account_id \0 YYYY-MM`                | [`LineSet`] (merge operator: sums)     |
//! | `invoices`| invoice number                         | invoice JSON                           |
//! | `closes`  | period `YYYY-MM`                       | [`CloseRecord`] JSON                   |
//! | `billed`  | `account_id \0 YYYY-MM`                | [`LineSet`] billed by closes (sums)    |
//! | `entries` | `account \0 id` (u64 BE)              | payments ledger entry JSON (`payments::Entry`) |
//! | `payrefs` | `ref/<reference>`, `e2e/<id>`          | invoice number                         |
//! | `bank`    | bank entry identity                    | import record JSON                     |
//! | `suspense`| suspense id                            | unmatched bank credit JSON             |
//! | `dunning` | `invoice \0 step`                      | dunning step record JSON               |
//! | `fees`    | fee id                                 | pending fee JSON (billed at next close)|
//! | `outbox`  | message id (u64 BE)                    | notification JSON (pending / sent)     |
//! | `collections` | `inv/<number>`, `mandate/<id>`, `batch/<date>/<msgid>` | direct debit state |
//! | `credits` | original invoice number                | what was credited on it (JSON)         |
//! | `finals`  | account id                             | its off-cycle final invoice (JSON)     |
//! | `pending` | document number                        | directory its files go to (until written) |
//! | `daily`   | local date `YYYY-MM-DD`                | [`DayTotals`] (merge operator: sums)   |
//! | `dedup`   | `i` bucket (u32 BE) day (u32 BE) seq (u64 BE); `x` file name | a file's record ids in that bucket; its cross-file duplicate lines (see `dedup.rs`) |
//!
//! The payments column families are written through [`Ledger::transact`]: one synced
//! WriteBatch per logical operation (an import, a collection run, a dunning run).
//!
//! `daily` holds the rated totals per local day and service; it is written in the same
//! batch as the file's usage and is never deleted by a close (reports read closed
//! periods too).
//!
//! Counters (`meta`): `counter/<YYYY>` or `counter/all` (invoice series),
//! `counter-credit/<YYYY>` or `counter-credit/all` (credit notes in their own series).
//! A number is taken from its counter in the same batch that stores the document, so a
//! series has no gap and no number is used twice, whatever moment the process dies.
//!
//! Invariants: a file's usage deltas, its checkpoint and its content hash are written
//! in ONE synced WriteBatch; a close writes its invoices, the deletion of the usage it
//! billed, the number counter and its close record in ONE synced WriteBatch. Both run
//! under the same writer lock, so a close never races a file commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use integer_encoding::VarInt;
use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, MergeOperands, Options, WriteBatch, WriteOptions, DB,
};
use serde::{Deserialize, Serialize};

use crate::rate::money::{Cents, Micros};

mod dedup;
pub use dedup::decode_ids as decode_index_value;

const CF_META: &str = "meta";
const CF_FILES: &str = "files";
const CF_HASHES: &str = "hashes";
const CF_USAGE: &str = "usage";
const CF_INVOICES: &str = "invoices";
const CF_CLOSES: &str = "closes";
const CF_BILLED: &str = "billed";
const CF_DAILY: &str = "daily";
const CF_CREDITS: &str = "credits";
const CF_FINALS: &str = "finals";
const CF_PENDING: &str = "pending";
/// Itemised annexes (traffic detail) by invoice number; erased after the dispute window.
const CF_ANNEX: &str = "annex";
/// The cross-file duplicate index and each file's cross-file duplicate lines (`dedup.rs`).
const CF_DEDUP: &str = "dedup";
/// Bits of a record id's XXH3-64 hash (its top bits) that pick its bucket in `dedup`.
pub const DEDUP_BUCKET_BITS: u32 = 18;
const CFS: [&str; 21] = [
    CF_META,
    CF_FILES,
    CF_HASHES,
    CF_USAGE,
    CF_INVOICES,
    CF_CLOSES,
    CF_BILLED,
    "entries",
    "payrefs",
    "bank",
    "suspense",
    "dunning",
    "fees",
    "outbox",
    "collections",
    CF_DAILY,
    CF_CREDITS,
    CF_FINALS,
    CF_PENDING,
    CF_ANNEX,
    CF_DEDUP,
];

/// A raw (key, value) pair.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A write of a self-service record: key under `meta/my/`, value (`None` deletes).
pub type MyWrite = (String, Option<Vec<u8>>);

/// The payments column families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayCf {
    Entries,
    Refs,
    Bank,
    Suspense,
    Dunning,
    Fees,
    Outbox,
    Collections,
}

impl PayCf {
    fn name(self) -> &'static str {
        match self {
            PayCf::Entries => "entries",
            PayCf::Refs => "payrefs",
            PayCf::Bank => "bank",
            PayCf::Suspense => "suspense",
            PayCf::Dunning => "dunning",
            PayCf::Fees => "fees",
            PayCf::Outbox => "outbox",
            PayCf::Collections => "collections",
        }
    }
}

/// The writes of one payments operation, committed together by [`Ledger::transact`].
/// `next_id` hands out ids from the ledger-wide payments counter (`meta/pay_seq`).
#[derive(Debug, Default)]
pub struct Tx {
    ops: Vec<(PayCf, Vec<u8>, Option<Vec<u8>>)>,
    next: u64,
    used: u64,
}

impl Tx {
    /// Puts a value.
    pub fn put(&mut self, cf: PayCf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((cf, key.into(), Some(value.into())));
    }
    /// Deletes a key.
    pub fn delete(&mut self, cf: PayCf, key: impl Into<Vec<u8>>) {
        self.ops.push((cf, key.into(), None));
    }
    /// A fresh id (entries, suspense items, outbox messages, fees).
    pub fn next_id(&mut self) -> u64 {
        self.used += 1;
        self.next + self.used - 1
    }
    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Version of the on-disk layout, stored under `meta/format`.
pub const STORE_FORMAT: u64 = 1;

/// RocksDB figures for metrics ([`Ledger::db_stats`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DbStats {
    /// SST files plus memtables, bytes.
    pub size: u64,
    /// Cumulative write stall, microseconds.
    pub stall_micros: u64,
    /// What compactions still have to rewrite to bring every level to its target size
    /// (RocksDB's estimate), bytes: the store's compaction debt.
    pub pending_compaction_bytes: u64,
    /// Compactions running now.
    pub running_compactions: u64,
}

/// A ledger error.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("database {0} is in use by another tollgate process (is the daemon running? stop it or use its HTTP endpoint)")]
    Busy(PathBuf),
    #[error("database {path}: {message}")]
    Db { path: PathBuf, message: String },
    #[error("database {path}: corrupt value under {key}: {message}")]
    Corrupt {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("{0}")]
    Refused(String),
}

/// Totals of one invoice line key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineTotals {
    pub count: u64,
    pub usage: u64,
    pub billed: u64,
    pub charge_micros: i64,
}

impl LineTotals {
    pub fn add(&mut self, o: &LineTotals) {
        self.count += o.count;
        self.usage += o.usage;
        self.billed += o.billed;
        self.charge_micros += o.charge_micros;
    }
}

/// One usage merge: key `account \0 YYYY-MM`, value an encoded [`LineSet`].
pub type UsageDelta = (Vec<u8>, Vec<u8>);

/// Line key: (service index, destination, band).
pub type LineId = (u8, String, String);

/// Usage totals of one account in one month, by line key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineSet(pub BTreeMap<LineId, LineTotals>);

impl LineSet {
    /// Version 1: fixed-width numbers; still read (stored values and merge operands
    /// written before version 2).
    const V1: u8 = 1;
    /// Version 2: variable-length numbers (half the bytes of a rated file's usage batch).
    const VERSION: u8 = 2;

    /// Binary encoding: version byte, then per line: service u8, destination (length as
    /// a LEB128 varint, then the bytes), band (u8 length, bytes), then count, usage and
    /// billed as LEB128 varints and the charge as a zigzag varint.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.0.len() * 32);
        out.push(Self::VERSION);
        for ((s, d, b), t) in &self.0 {
            Self::encode_entry(&mut out, *s, d, b, t);
        }
        out
    }

    /// The start of an encoded set (entries follow, in any order; equal keys add up).
    pub fn encode_header() -> Vec<u8> {
        vec![Self::VERSION]
    }

    /// Bytes [`LineSet::encode_entry`] appends for this destination, band and totals.
    pub fn entry_len(dest: &str, band: &str, t: &LineTotals) -> usize {
        let d = dest.len().min(u16::MAX as usize);
        1 + d.required_space()
            + d
            + 1
            + band.len().min(u8::MAX as usize)
            + t.count.required_space()
            + t.usage.required_space()
            + t.billed.required_space()
            + t.charge_micros.required_space()
    }

    /// Appends one entry to an encoded set. Destinations are cut at 65535 bytes and
    /// bands at 255 bytes (tariff validation keeps them far shorter).
    pub fn encode_entry(out: &mut Vec<u8>, service: u8, dest: &str, band: &str, t: &LineTotals) {
        Self::encode_entry_head(out, service, dest, band);
        Self::encode_entry_totals(out, t);
    }

    /// The first part of [`LineSet::encode_entry`]: service, destination and band (the
    /// same bytes for every entry of one line key, so an encoder may keep them).
    pub fn encode_entry_head(out: &mut Vec<u8>, service: u8, dest: &str, band: &str) {
        let d = &dest.as_bytes()[..dest.len().min(u16::MAX as usize)];
        let b = &band.as_bytes()[..band.len().min(u8::MAX as usize)];
        out.push(service);
        var_into(out, d.len());
        out.extend_from_slice(d);
        out.push(b.len() as u8);
        out.extend_from_slice(b);
    }

    /// The second part of [`LineSet::encode_entry`]: the totals.
    #[inline]
    pub fn encode_entry_totals(out: &mut Vec<u8>, t: &LineTotals) {
        // Four varints of at most 10 bytes each, written into a stack buffer first.
        let mut buf = [0u8; 40];
        let mut n = t.count.encode_var(&mut buf);
        n += t.usage.encode_var(&mut buf[n..]);
        n += t.billed.encode_var(&mut buf[n..]);
        n += t.charge_micros.encode_var(&mut buf[n..]);
        out.extend_from_slice(&buf[..n]);
    }

    /// Adds an encoded set (either version) into this one.
    pub fn merge_encoded(&mut self, mut b: &[u8]) -> Result<(), String> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
            if b.len() < n {
                return Err("truncated line set".into());
            }
            let (h, t) = b.split_at(n);
            *b = t;
            Ok(h)
        }
        fn u64_at(b: &mut &[u8]) -> Result<u64, String> {
            Ok(u64::from_le_bytes(take(b, 8)?.try_into().expect("8 bytes")))
        }
        fn var<V: VarInt>(b: &mut &[u8]) -> Result<V, String> {
            let (v, n) = V::decode_var(b).ok_or("truncated or overlong varint in line set")?;
            *b = &b[n..];
            Ok(v)
        }
        let version = take(&mut b, 1)?[0];
        if version != Self::V1 && version != Self::VERSION {
            return Err("unknown line set version".into());
        }
        while !b.is_empty() {
            let s = take(&mut b, 1)?[0];
            let dl = if version == Self::V1 {
                u16::from_le_bytes(take(&mut b, 2)?.try_into().expect("2 bytes")) as usize
            } else {
                var::<usize>(&mut b)?
            };
            let d = String::from_utf8(take(&mut b, dl)?.to_vec()).map_err(|e| e.to_string())?;
            let bl = take(&mut b, 1)?[0] as usize;
            let band = String::from_utf8(take(&mut b, bl)?.to_vec()).map_err(|e| e.to_string())?;
            let t = if version == Self::V1 {
                LineTotals {
                    count: u64_at(&mut b)?,
                    usage: u64_at(&mut b)?,
                    billed: u64_at(&mut b)?,
                    charge_micros: u64_at(&mut b)? as i64,
                }
            } else {
                LineTotals {
                    count: var(&mut b)?,
                    usage: var(&mut b)?,
                    billed: var(&mut b)?,
                    charge_micros: var(&mut b)?,
                }
            };
            self.0.entry((s, d, band)).or_default().add(&t);
        }
        Ok(())
    }

    pub fn decode(b: &[u8]) -> Result<LineSet, String> {
        let mut s = LineSet::default();
        s.merge_encoded(b)?;
        Ok(s)
    }
}

/// Appends `v` as a varint.
fn var_into(out: &mut Vec<u8>, v: impl VarInt) {
    let mut buf = [0u8; 10];
    let n = v.encode_var(&mut buf);
    out.extend_from_slice(&buf[..n]);
}

fn usage_merge(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut set = LineSet::default();
    if let Some(e) = existing {
        set.merge_encoded(e).ok()?;
    }
    for op in operands {
        set.merge_encoded(op).ok()?;
    }
    Some(set.encode())
}

/// Rated totals of one local day, by service index (voice, sms, data).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayTotals(pub [LineTotals; 3]);

/// One daily merge: key `YYYY-MM-DD`, value an encoded [`DayTotals`].
pub type DailyDelta = (Vec<u8>, Vec<u8>);

impl DayTotals {
    const VERSION: u8 = 1;
    const LEN: usize = 1 + 3 * 32;

    /// Version byte, then per service count, usage, billed (u64 LE) and charge (i64 LE).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::LEN);
        out.push(Self::VERSION);
        for t in &self.0 {
            out.extend_from_slice(&t.count.to_le_bytes());
            out.extend_from_slice(&t.usage.to_le_bytes());
            out.extend_from_slice(&t.billed.to_le_bytes());
            out.extend_from_slice(&t.charge_micros.to_le_bytes());
        }
        out
    }

    /// Adds an encoded value into this one.
    pub fn merge_encoded(&mut self, b: &[u8]) -> Result<(), String> {
        if b.len() != Self::LEN || b[0] != Self::VERSION {
            return Err("bad day totals".into());
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        for (s, t) in self.0.iter_mut().enumerate() {
            let o = 1 + s * 32;
            t.add(&LineTotals {
                count: u(o),
                usage: u(o + 8),
                billed: u(o + 16),
                charge_micros: u(o + 24) as i64,
            });
        }
        Ok(())
    }

    pub fn decode(b: &[u8]) -> Result<DayTotals, String> {
        let mut d = DayTotals::default();
        d.merge_encoded(b)?;
        Ok(d)
    }

    /// All services together.
    pub fn total(&self) -> LineTotals {
        let mut t = LineTotals::default();
        for s in &self.0 {
            t.add(s);
        }
        t
    }
}

fn daily_merge(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let mut d = DayTotals::default();
    if let Some(e) = existing {
        d.merge_encoded(e).ok()?;
    }
    for op in operands {
        d.merge_encoded(op).ok()?;
    }
    Some(d.encode())
}

/// A file's checkpoint: what was committed for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: u32,
    pub name: String,
    pub size: u64,
    /// XXH3-128 of the content, hex.
    pub content_hash: String,
    pub lines: u64,
    pub rated: u64,
    pub rejected: BTreeMap<String, u64>,
    /// Sum of the file's rated charges, 6 decimals.
    pub charge: Micros,
    pub tariff_version: String,
    pub accounts_hash: String,
    /// Unix time used by the `future_time` check.
    pub rated_at: i64,
    pub committed_at: String,
    /// Commit sequence number (assigned by the ledger).
    pub seq: u64,
    /// Billing months the file touched.
    pub months: Vec<String>,
}

/// A committed close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseRecord {
    pub period: String,
    pub closed_at: String,
    pub issue_date: String,
    /// File commit sequence number at the time of the close.
    pub seq: u64,
    pub invoices: Vec<String>,
    pub net_total: Cents,
    pub vat_total: Cents,
    pub total: Cents,
    pub late_records: u64,
}

impl CloseRecord {
    /// One line for operators: `2026-10: 3 invoices (2026-000001 .. 2026-000003), net … + VAT … = …`.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} invoices ({} .. {}), net {} + VAT {} = {} ({} late records)",
            self.period,
            self.invoices.len(),
            self.invoices.first().map_or("-", String::as_str),
            self.invoices.last().map_or("-", String::as_str),
            self.net_total,
            self.vat_total,
            self.total,
            self.late_records
        )
    }
}

/// The usage and daily merges of one file, staged for [`Ledger::commit_file_batch`].
/// The ingest engine encodes the file's totals straight into it, one (account, month)
/// value at a time, so that no other copy of the encoded usage exists. Nothing is
/// written before the commit: a batch dropped is a file not counted.
pub struct FileBatch<'a> {
    batch: WriteBatch,
    usage: &'a rocksdb::ColumnFamily,
    daily: &'a rocksdb::ColumnFamily,
    /// The file's cross-file index values (written with the file's seq at the commit).
    index: dedup::StagedIndex,
}

impl FileBatch<'_> {
    /// Stages one usage merge: key `account \0 YYYY-MM`, value an encoded [`LineSet`].
    pub fn merge_usage(&mut self, key: &[u8], value: &[u8]) {
        self.batch.merge_cf(self.usage, key, value);
    }

    /// Stages one daily merge: key `YYYY-MM-DD`, value an encoded [`DayTotals`].
    pub fn merge_daily(&mut self, key: &[u8], value: &[u8]) {
        self.batch.merge_cf(self.daily, key, value);
    }

    /// Bytes staged so far.
    pub fn size_in_bytes(&self) -> usize {
        self.batch.size_in_bytes()
    }
}

/// Result of [`Ledger::commit_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    Committed(u64),
    /// A file of this name was committed before.
    DuplicateName(Box<Checkpoint>),
    /// The same content was committed before under this name.
    DuplicateContent(String),
}

/// Usage rows billed by a close.
#[derive(Debug, Clone)]
pub struct UsageRow {
    pub account: String,
    pub month: String,
    pub lines: LineSet,
}

/// Invoices produced by a close, in number order.
pub struct CloseBatch {
    pub invoices: Vec<(String, Vec<u8>)>,
    /// Itemised annexes (invoice number, annex JSON), stored beside the invoices.
    pub annexes: Vec<(String, Vec<u8>)>,
    pub record: CloseRecord,
}

/// A write transaction for issuing documents outside a close (credit notes, reissues,
/// final invoices): reads see the committed state; everything staged commits in one
/// synced batch under the writer lock ([`Ledger::issue`]).
pub struct Txn<'a> {
    ledger: &'a Ledger,
    batch: WriteBatch,
    counters: BTreeMap<String, u64>,
    numbers: Vec<String>,
    /// Payments ledger writes (entries of the documents issued), same batch.
    pay: Option<Tx>,
}

impl<'a> Txn<'a> {
    /// The payments ledger part of this transaction: the entries posted for the
    /// documents it issues commit in the same batch as the documents.
    pub fn pay(&mut self) -> Result<&mut Tx, LedgerError> {
        if self.pay.is_none() {
            self.pay = Some(Tx {
                next: u64_value(self.ledger.get(CF_META, b"pay_seq")?) + 1,
                ..Tx::default()
            });
        }
        Ok(self.pay.as_mut().expect("just set"))
    }

    /// The ledger, for reads.
    pub fn ledger(&self) -> &'a Ledger {
        self.ledger
    }

    /// Takes the next number of a counter (committed with the batch).
    pub fn next(&mut self, counter: &str) -> Result<u64, LedgerError> {
        let cur = match self.counters.get(counter) {
            Some(v) => *v,
            None => u64_value(self.ledger.get(CF_META, counter.as_bytes())?),
        };
        self.counters.insert(counter.to_owned(), cur + 1);
        Ok(cur + 1)
    }

    /// Stores a document and marks its files as pending in `dir` (relative to invoice_dir).
    /// Stages the itemised annex (JSON) of a document issued in this transaction.
    pub fn put_annex(&mut self, number: &str, json: &[u8]) {
        self.batch
            .put_cf(self.ledger.cf(CF_ANNEX), number.as_bytes(), json);
    }

    pub fn put_document(
        &mut self,
        number: &str,
        json: &[u8],
        dir: &str,
    ) -> Result<(), LedgerError> {
        if self.ledger.invoice(number)?.is_some() || self.numbers.iter().any(|n| n == number) {
            return Err(LedgerError::Refused(format!(
                "document number {number} exists already: numbers are never reused"
            )));
        }
        self.numbers.push(number.to_owned());
        self.batch
            .put_cf(self.ledger.cf(CF_INVOICES), number.as_bytes(), json);
        self.batch.put_cf(
            self.ledger.cf(CF_PENDING),
            number.as_bytes(),
            dir.as_bytes(),
        );
        Ok(())
    }

    /// Records what was credited on an original invoice.
    pub fn put_credits(&mut self, original: &str, json: &[u8]) {
        self.batch
            .put_cf(self.ledger.cf(CF_CREDITS), original.as_bytes(), json);
    }

    /// Records the rerates of a period's unbilled usage ([`Ledger::rerated`]).
    pub fn put_rerated(&mut self, period: &str, json: &[u8]) {
        self.batch.put_cf(
            self.ledger.cf(CF_META),
            format!("rerated/{period}").as_bytes(),
            json,
        );
    }

    /// Records an account's final invoice.
    pub fn put_final(&mut self, account: &str, json: &[u8]) {
        self.batch
            .put_cf(self.ledger.cf(CF_FINALS), account.as_bytes(), json);
    }

    /// Replaces a usage row (`account`, `month`) with `lines` (a rerate: the writer
    /// lock is held, so no file commit merges into it meanwhile).
    pub fn put_usage(&mut self, account: &str, month: &str, lines: &LineSet) {
        self.batch.put_cf(
            self.ledger.cf(CF_USAGE),
            usage_key(account, month),
            lines.encode(),
        );
    }

    /// Deletes a usage row (billed by this transaction, or emptied by a rerate).
    pub fn delete_usage(&mut self, account: &str, month: &str) {
        self.batch
            .delete_cf(self.ledger.cf(CF_USAGE), usage_key(account, month));
    }
}

fn usage_key(account: &str, month: &str) -> Vec<u8> {
    let mut k = account.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(month.as_bytes());
    k
}

/// Outcome of a close request.
pub enum Closed {
    New(CloseRecord),
    Already(CloseRecord),
}

/// The RocksDB-backed ledger.
pub struct Ledger {
    db: DB,
    /// The DB options, kept for their statistics (write stall time).
    opts: Options,
    path: PathBuf,
    writer: Mutex<()>,
    /// Serializes self-service updates (sign-in links, sessions): [`Ledger::my_update`].
    my_lock: Mutex<()>,
    /// Index values of commit days before this one are dropped by compactions.
    dedup_first_day: std::sync::Arc<std::sync::atomic::AtomicU32>,
}

fn u64_value(v: Option<Vec<u8>>) -> u64 {
    v.and_then(|v| v.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

impl Ledger {
    /// Opens (creating if needed) the database under `data_dir/db`.
    pub fn open(data_dir: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open_with(data_dir, false)
    }

    /// Opens the database read-only (reports): works while a daemon holds it, sees what
    /// was committed up to the moment of opening, and writes nothing.
    pub fn open_read_only(data_dir: &Path) -> Result<Ledger, LedgerError> {
        Ledger::open_with(data_dir, true)
    }

    fn open_with(data_dir: &Path, read_only: bool) -> Result<Ledger, LedgerError> {
        let path = data_dir.join("db");
        if read_only && !path.join("CURRENT").exists() {
            return Err(LedgerError::Refused(format!(
                "database {} does not exist yet (nothing was rated)",
                path.display()
            )));
        }
        std::fs::create_dir_all(&path).map_err(|e| LedgerError::Db {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(5);
        // The WAL is handed to the disk every 1 MiB as it is written (sync_file_range),
        // so the fsync that ends a file's commit finds little left to write: a 10 M-record
        // file's batch is ~170 MB with the cross-file index (commit 0.38-0.42 s -> 0.33-0.35
        // s). Durability is unchanged: every commit still syncs.
        opts.set_wal_bytes_per_sync(1 << 20);
        // Table files are opened at start by this many threads per column family (the
        // default, 16, started ~300 short-lived threads for 19 families).
        opts.set_max_file_opening_threads(2);
        opts.enable_statistics();
        let mut block = BlockBasedOptions::default();
        block.set_format_version(5);
        opts.set_block_based_table_factory(&block);
        // Read-only opens cannot create column families: open those that exist (a store
        // from before the `daily` family has none until a daemon opened it read-write).
        let existing: Vec<String> = if read_only {
            DB::list_cf(&opts, &path).unwrap_or_default()
        } else {
            CFS.iter().map(|s| s.to_string()).collect()
        };
        let dedup_first_day = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let cfs = CFS
            .iter()
            .filter(|name| existing.iter().any(|e| e.as_str() == **name))
            .map(|name| {
                let mut o = Options::default();
                o.set_block_based_table_factory(&block);
                if *name == CF_USAGE || *name == CF_BILLED {
                    o.set_merge_operator_associative("tollgate_usage_v1", usage_merge);
                }
                if *name == CF_DAILY {
                    o.set_merge_operator_associative("tollgate_daily_v1", daily_merge);
                }
                if *name == CF_DEDUP {
                    dedup::set_expiry_filter(&mut o, dedup_first_day.clone());
                }
                ColumnFamilyDescriptor::new(*name, o)
            });
        let opened = if read_only {
            DB::open_cf_descriptors_read_only(&opts, &path, cfs, false)
        } else {
            DB::open_cf_descriptors(&opts, &path, cfs)
        };
        let db = opened.map_err(|e| {
            let m = e.to_string();
            if m.contains("lock") || m.contains("Resource temporarily unavailable") {
                LedgerError::Busy(path.clone())
            } else {
                LedgerError::Db {
                    path: path.clone(),
                    message: m,
                }
            }
        })?;
        let ledger = Ledger {
            db,
            opts,
            path,
            writer: Mutex::new(()),
            my_lock: Mutex::new(()),
            dedup_first_day,
        };
        let format = ledger.get(CF_META, b"format")?;
        match format {
            None if read_only => {}
            None => ledger.put_meta(b"format", &STORE_FORMAT.to_le_bytes())?,
            Some(v) if u64_value(Some(v.clone())) == STORE_FORMAT => {}
            Some(v) => {
                return Err(LedgerError::Refused(format!(
                    "database {} has format {}, this tollgate reads {STORE_FORMAT}",
                    ledger.path.display(),
                    u64_value(Some(v))
                )))
            }
        }
        Ok(ledger)
    }

    fn err(&self, e: rocksdb::Error) -> LedgerError {
        LedgerError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    /// Daily totals, if the family exists (always, except in a read-only open of a store
    /// written before it was added).
    fn daily_cf(&self) -> Option<&rocksdb::ColumnFamily> {
        self.db.cf_handle(CF_DAILY)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column family exists")
    }

    fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        self.db.get_cf(self.cf(cf), key).map_err(|e| self.err(e))
    }

    fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<(), LedgerError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_cf_opt(self.cf(CF_META), key, value, &wo)
            .map_err(|e| self.err(e))
    }

    fn json<T: for<'de> Deserialize<'de>>(&self, key: &str, v: &[u8]) -> Result<T, LedgerError> {
        serde_json::from_slice(v).map_err(|e| LedgerError::Corrupt {
            path: self.path.clone(),
            key: key.to_owned(),
            message: e.to_string(),
        })
    }

    fn write(&self, batch: WriteBatch) -> Result<(), LedgerError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo).map_err(|e| self.err(e))
    }

    /// The checkpoint of a committed file.
    pub fn file(&self, name: &str) -> Result<Option<Checkpoint>, LedgerError> {
        match self.get(CF_FILES, name.as_bytes())? {
            None => Ok(None),
            Some(v) => self.json(&format!("files/{name}"), &v).map(Some),
        }
    }

    /// The name under which this content was committed.
    pub fn file_by_hash(&self, hash: &str) -> Result<Option<String>, LedgerError> {
        Ok(self
            .get(CF_HASHES, hash.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// All checkpoints, by name.
    pub fn files(&self) -> Result<Vec<Checkpoint>, LedgerError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_FILES), rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push(self.json(&format!("files/{}", String::from_utf8_lossy(&k)), &v)?);
        }
        Ok(out)
    }

    /// Commits a file's usage (`account \0 YYYY-MM` → encoded [`LineSet`]), its daily
    /// totals (`YYYY-MM-DD` → encoded [`DayTotals`]) and its checkpoint atomically (one
    /// synced WriteBatch). Refuses names and contents committed before.
    pub fn commit_file(
        &self,
        cp: Checkpoint,
        usage: &[UsageDelta],
        daily: &[DailyDelta],
        count_content: bool,
    ) -> Result<Commit, LedgerError> {
        let mut batch = self.file_batch(0);
        for (key, value) in usage {
            batch.merge_usage(key, value);
        }
        for (key, value) in daily {
            batch.merge_daily(key, value);
        }
        self.commit_file_batch(cp, batch, count_content)
    }

    /// An empty batch for a file's usage and daily merges, with room for about
    /// `capacity_bytes` of them (a guess: the batch grows past it).
    pub fn file_batch(&self, capacity_bytes: usize) -> FileBatch<'_> {
        FileBatch {
            batch: WriteBatch::with_capacity_bytes(capacity_bytes),
            usage: self.cf(CF_USAGE),
            daily: self.cf(CF_DAILY),
            index: dedup::StagedIndex::default(),
        }
    }

    /// Commits a file's usage and daily merges, built beforehand (outside the writer
    /// lock) in `batch`, with its checkpoint: one synced WriteBatch, as
    /// [`Ledger::commit_file`].
    pub fn commit_file_batch(
        &self,
        mut cp: Checkpoint,
        file: FileBatch<'_>,
        count_content: bool,
    ) -> Result<Commit, LedgerError> {
        let _w = self.writer.lock().expect("writer lock");
        if let Some(old) = self.file(&cp.name)? {
            return Ok(Commit::DuplicateName(Box::new(old)));
        }
        if count_content {
            if let Some(name) = self.file_by_hash(&cp.content_hash)? {
                return Ok(Commit::DuplicateContent(name));
            }
        }
        let seq = u64_value(self.get(CF_META, b"seq")?) + 1;
        cp.seq = seq;
        let mut batch = file.batch;
        self.stage_index(&mut batch, file.index, &cp.name, seq);
        batch.put_cf(
            self.cf(CF_FILES),
            cp.name.as_bytes(),
            serde_json::to_vec(&cp).expect("checkpoint serializes"),
        );
        if count_content {
            batch.put_cf(
                self.cf(CF_HASHES),
                cp.content_hash.as_bytes(),
                cp.name.as_bytes(),
            );
        }
        batch.put_cf(self.cf(CF_META), b"seq", seq.to_le_bytes());
        self.write(batch)?;
        Ok(Commit::Committed(seq))
    }

    /// Unbilled usage of every account, or of one account, in key order.
    pub fn unbilled(&self, account: Option<&str>) -> Result<Vec<UsageRow>, LedgerError> {
        let mut out = Vec::new();
        let mode = match account {
            Some(a) => rocksdb::IteratorMode::From(a.as_bytes(), rocksdb::Direction::Forward),
            None => rocksdb::IteratorMode::Start,
        };
        for item in self.db.iterator_cf(self.cf(CF_USAGE), mode) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let Some(sep) = k.iter().position(|&b| b == 0) else {
                continue;
            };
            let acc = String::from_utf8_lossy(&k[..sep]).into_owned();
            if account.is_some_and(|a| a != acc) {
                break;
            }
            let lines = LineSet::decode(&v).map_err(|message| LedgerError::Corrupt {
                path: self.path.clone(),
                key: format!("usage/{acc}"),
                message,
            })?;
            out.push(UsageRow {
                account: acc,
                month: String::from_utf8_lossy(&k[sep + 1..]).into_owned(),
                lines,
            });
        }
        Ok(out)
    }

    /// Usage of one account in one month: (unbilled, billed by closes).
    pub fn account_month(
        &self,
        account: &str,
        month: &str,
    ) -> Result<(LineSet, LineSet), LedgerError> {
        let mut key = account.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(month.as_bytes());
        let mut out = [LineSet::default(), LineSet::default()];
        for (i, cf) in [CF_USAGE, CF_BILLED].into_iter().enumerate() {
            if let Some(v) = self.get(cf, &key)? {
                out[i] = LineSet::decode(&v).map_err(|message| LedgerError::Corrupt {
                    path: self.path.clone(),
                    key: format!("{cf}/{account}"),
                    message,
                })?;
            }
        }
        let [unbilled, billed] = out;
        Ok((unbilled, billed))
    }

    /// Invoice numbers in number order: `offset`/`limit` page and the total count.
    pub fn invoice_numbers(
        &self,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<String>, usize), LedgerError> {
        let mut out = Vec::new();
        let mut total = 0;
        for item in self
            .db
            .iterator_cf(self.cf(CF_INVOICES), rocksdb::IteratorMode::Start)
        {
            let (k, _) = item.map_err(|e| self.err(e))?;
            if total >= offset && out.len() < limit {
                out.push(String::from_utf8_lossy(&k).into_owned());
            }
            total += 1;
        }
        Ok((out, total))
    }

    /// Daily totals of the dates starting with `prefix` (`YYYY-MM` for a month, empty
    /// for all), in date order.
    pub fn daily(&self, prefix: &str) -> Result<Vec<(String, DayTotals)>, LedgerError> {
        let mut out = Vec::new();
        let mode = rocksdb::IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward);
        let Some(cf) = self.daily_cf() else {
            return Ok(out);
        };
        for item in self.db.iterator_cf(cf, mode) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            let date = String::from_utf8_lossy(&k).into_owned();
            let t = DayTotals::decode(&v).map_err(|message| LedgerError::Corrupt {
                path: self.path.clone(),
                key: format!("daily/{date}"),
                message,
            })?;
            out.push((date, t));
        }
        Ok(out)
    }

    /// Accounts with unbilled usage dated in a month up to `up_to` (`YYYY-MM`), or in any
    /// month, in key order (keys only, nothing decoded).
    pub fn unbilled_accounts(&self, up_to: Option<&str>) -> Result<Vec<String>, LedgerError> {
        let mut out: Vec<String> = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_USAGE), rocksdb::IteratorMode::Start)
        {
            let (k, _) = item.map_err(|e| self.err(e))?;
            let Some(sep) = k.iter().position(|&b| b == 0) else {
                continue;
            };
            if up_to.is_some_and(|m| &k[sep + 1..] > m.as_bytes()) {
                continue;
            }
            let acc = String::from_utf8_lossy(&k[..sep]);
            if out.last().map(String::as_str) != Some(&*acc) {
                out.push(acc.into_owned());
            }
        }
        Ok(out)
    }

    /// Calls `f(account, lines)` for every unbilled usage row of `month` (`YYYY-MM`),
    /// without collecting them.
    pub fn for_each_usage_of_month(
        &self,
        month: &str,
        mut f: impl FnMut(&str, &LineSet),
    ) -> Result<(), LedgerError> {
        let mut lines = LineSet::default();
        for item in self
            .db
            .iterator_cf(self.cf(CF_USAGE), rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let Some(sep) = k.iter().position(|&b| b == 0) else {
                continue;
            };
            if &k[sep + 1..] != month.as_bytes() {
                continue;
            }
            let acc = String::from_utf8_lossy(&k[..sep]);
            lines.0.clear();
            lines
                .merge_encoded(&v)
                .map_err(|message| LedgerError::Corrupt {
                    path: self.path.clone(),
                    key: format!("usage/{acc}"),
                    message,
                })?;
            f(&acc, &lines);
        }
        Ok(())
    }

    /// All close records, in period order.
    pub fn closes(&self) -> Result<Vec<CloseRecord>, LedgerError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_CLOSES), rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push(self.json(&format!("closes/{}", String::from_utf8_lossy(&k)), &v)?);
        }
        Ok(out)
    }

    /// RocksDB figures for metrics, summed over the column families.
    pub fn db_stats(&self) -> DbStats {
        let mut stats = DbStats::default();
        let int = |cf, p: &str| {
            self.db
                .property_int_value_cf(cf, p)
                .ok()
                .flatten()
                .unwrap_or(0)
        };
        for name in CFS {
            let Some(cf) = self.db.cf_handle(name) else {
                continue;
            };
            stats.size += int(cf, "rocksdb.total-sst-files-size")
                + int(cf, "rocksdb.cur-size-all-mem-tables");
            stats.pending_compaction_bytes += int(cf, "rocksdb.estimate-pending-compaction-bytes");
        }
        stats.running_compactions = self
            .db
            .property_int_value("rocksdb.num-running-compactions")
            .ok()
            .flatten()
            .unwrap_or(0);
        stats.stall_micros = self
            .opts
            .get_ticker_count(rocksdb::statistics::Ticker::StallMicros);
        stats
    }

    /// The last closed period, if any.
    pub fn last_closed(&self) -> Result<Option<String>, LedgerError> {
        Ok(self
            .get(CF_META, b"last_closed")?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The close record of a period.
    pub fn close_record(&self, period: &str) -> Result<Option<CloseRecord>, LedgerError> {
        match self.get(CF_CLOSES, period.as_bytes())? {
            None => Ok(None),
            Some(v) => self.json(&format!("closes/{period}"), &v).map(Some),
        }
    }

    /// The stored itemised annex (JSON) of an invoice.
    pub fn annex(&self, number: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        match self.db.cf_handle(CF_ANNEX) {
            Some(cf) => self
                .db
                .get_cf(cf, number.as_bytes())
                .map_err(|e| self.err(e)),
            None => Ok(None),
        }
    }

    /// Numbers of the invoices that have a stored itemised annex.
    pub fn annex_numbers(&self) -> Result<Vec<String>, LedgerError> {
        let Some(cf) = self.db.cf_handle(CF_ANNEX) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
            let (k, _) = item.map_err(|e| self.err(e))?;
            out.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(out)
    }

    /// The rerates of a period's unbilled usage (`meta/rerated/<period>`, JSON): which
    /// snapshot re-derives the records they replaced.
    pub fn rerated(&self, period: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        self.get(CF_META, format!("rerated/{period}").as_bytes())
    }

    /// Every period's rerate record: (period, JSON), periods in order.
    pub fn rerates(&self) -> Result<Vec<(String, Vec<u8>)>, LedgerError> {
        let prefix = b"rerated/";
        let mut out = Vec::new();
        let mode = rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_META), mode) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((
                String::from_utf8_lossy(&k[prefix.len()..]).into_owned(),
                v.to_vec(),
            ));
        }
        Ok(out)
    }

    /// A privacy record (`meta/privacy/<key>`): rewritten files, erasures.
    pub fn privacy_note(&self, key: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        self.get(CF_META, format!("privacy/{key}").as_bytes())
    }

    /// Stores privacy records and erases or replaces annexes in ONE synced batch under
    /// the writer lock.
    pub fn privacy_commit(
        &self,
        notes: &[(String, Vec<u8>)],
        annexes: &[(String, Option<Vec<u8>>)],
    ) -> Result<(), LedgerError> {
        let _w = self.writer.lock().expect("writer lock");
        let mut batch = WriteBatch::default();
        for (k, v) in notes {
            batch.put_cf(self.cf(CF_META), format!("privacy/{k}").as_bytes(), v);
        }
        for (number, v) in annexes {
            match v {
                Some(v) => batch.put_cf(self.cf(CF_ANNEX), number.as_bytes(), v),
                None => batch.delete_cf(self.cf(CF_ANNEX), number.as_bytes()),
            }
        }
        self.write(batch)
    }

    /// A self-service record (`meta/my/<key>`: sign-in links, sessions).
    pub fn my_get(&self, key: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        self.get(CF_META, format!("my/{key}").as_bytes())
    }

    /// Self-service records whose key starts with `prefix` (under `meta/my/`); keys are
    /// returned without the `my/`.
    pub fn my_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, LedgerError> {
        let full = format!("my/{prefix}");
        let mut out = Vec::new();
        let mode = rocksdb::IteratorMode::From(full.as_bytes(), rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.cf(CF_META), mode) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(full.as_bytes()) {
                break;
            }
            out.push((String::from_utf8_lossy(&k[3..]).into_owned(), v.to_vec()));
        }
        Ok(out)
    }

    /// Reads the self-service record `key` and applies the writes `f` decides on
    /// (`None` deletes) in ONE synced batch, serialized with every other self-service
    /// update: a single-use record read here is consumed at most once. Never takes the
    /// writer lock (a sign-in does not wait for a file commit).
    pub fn my_update<T>(
        &self,
        key: &str,
        f: impl FnOnce(Option<Vec<u8>>) -> (T, Vec<MyWrite>),
    ) -> Result<T, LedgerError> {
        let _one = self.my_lock.lock().expect("self-service lock");
        let (out, writes) = f(self.my_get(key)?);
        if !writes.is_empty() {
            let mut batch = WriteBatch::default();
            for (k, v) in writes {
                let k = format!("my/{k}");
                match v {
                    Some(v) => batch.put_cf(self.cf(CF_META), k.as_bytes(), v),
                    None => batch.delete_cf(self.cf(CF_META), k.as_bytes()),
                }
            }
            self.write(batch)?;
        }
        Ok(out)
    }

    /// The last file commit sequence number.
    pub fn seq(&self) -> Result<u64, LedgerError> {
        Ok(u64_value(self.get(CF_META, b"seq")?))
    }

    /// A stored document's JSON.
    pub fn invoice(&self, number: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        self.get(CF_INVOICES, number.as_bytes())
    }

    /// Runs `f` under the writer lock and commits what it staged in one synced batch.
    /// Nothing is written when `f` fails.
    pub fn issue<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        F: FnOnce(&mut Txn) -> Result<T, LedgerError>,
    {
        let _w = self.writer.lock().expect("writer lock");
        let mut txn = Txn {
            ledger: self,
            batch: WriteBatch::default(),
            counters: BTreeMap::new(),
            numbers: Vec::new(),
            pay: None,
        };
        let out = f(&mut txn)?;
        let Txn {
            mut batch,
            counters,
            pay,
            ..
        } = txn;
        for (k, v) in counters {
            batch.put_cf(self.cf(CF_META), k.as_bytes(), v.to_le_bytes());
        }
        if let Some(tx) = pay {
            self.add_tx(&mut batch, tx);
        }
        self.write(batch)?;
        Ok(out)
    }

    /// What was credited on an original invoice (JSON), if anything.
    pub fn credits(&self, original: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        self.get(CF_CREDITS, original.as_bytes())
    }

    /// The final invoice record of an account (JSON), if it had one.
    pub fn final_of(&self, account: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        self.get(CF_FINALS, account.as_bytes())
    }

    /// Accounts that had their final invoice.
    pub fn finals(&self) -> Result<std::collections::BTreeSet<String>, LedgerError> {
        let mut out = std::collections::BTreeSet::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_FINALS), rocksdb::IteratorMode::Start)
        {
            let (k, _) = item.map_err(|e| self.err(e))?;
            out.insert(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(out)
    }

    /// Documents whose files may not be written yet: (number, directory).
    pub fn pending(&self) -> Result<Vec<(String, String)>, LedgerError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_PENDING), rocksdb::IteratorMode::Start)
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push((
                String::from_utf8_lossy(&k).into_owned(),
                String::from_utf8_lossy(&v).into_owned(),
            ));
        }
        Ok(out)
    }

    /// Forgets pending marks once the files are durable.
    pub fn clear_pending(&self, numbers: &[String]) -> Result<(), LedgerError> {
        if numbers.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for n in numbers {
            batch.delete_cf(self.cf(CF_PENDING), n.as_bytes());
        }
        self.write(batch)
    }

    /// Every stored document number, in key order.
    pub fn document_numbers(&self) -> Result<Vec<String>, LedgerError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_INVOICES), rocksdb::IteratorMode::Start)
        {
            let (k, _) = item.map_err(|e| self.err(e))?;
            out.push(String::from_utf8_lossy(&k).into_owned());
        }
        Ok(out)
    }

    /// The value of a number counter.
    pub fn counter(&self, key: &str) -> Result<u64, LedgerError> {
        Ok(u64_value(self.get(CF_META, key.as_bytes())?))
    }

    /// Closes `period` atomically. `make` receives the usage rows of months up to and
    /// including the period, the next free number of the counter `counter_key`, the
    /// commit sequence and the payments transaction of the batch (the caller posts its
    /// invoices' entries into it), and returns the invoices and the close record; all of
    /// it, the deletion of that usage, the number counter and `last_closed` commit in one
    /// synced batch.
    pub fn close<F>(&self, period: &str, counter_key: &str, make: F) -> Result<Closed, LedgerError>
    where
        F: FnOnce(Vec<UsageRow>, u64, u64, &mut Tx) -> Result<CloseBatch, LedgerError>,
    {
        let _w = self.writer.lock().expect("writer lock");
        if let Some(rec) = self.close_record(period)? {
            return Ok(Closed::Already(rec));
        }
        if let Some(last) = self.last_closed()? {
            if period <= last.as_str() {
                return Err(LedgerError::Refused(format!(
                    "periods close forward only: {period} is not after the last closed period {last}"
                )));
            }
        }
        let rows: Vec<UsageRow> = self
            .unbilled(None)?
            .into_iter()
            .filter(|r| r.month.as_str() <= period)
            .collect();
        let keys: Vec<(Vec<u8>, Vec<u8>)> = rows
            .iter()
            .map(|r| (usage_key(&r.account, &r.month), r.lines.encode()))
            .collect();
        let next = u64_value(self.get(CF_META, counter_key.as_bytes())?) + 1;
        let seq = u64_value(self.get(CF_META, b"seq")?);
        let mut tx = Tx {
            next: u64_value(self.get(CF_META, b"pay_seq")?) + 1,
            ..Tx::default()
        };
        let batch_out = make(rows, next, seq, &mut tx)?;
        let mut batch = WriteBatch::default();
        for (k, lines) in keys {
            batch.delete_cf(self.cf(CF_USAGE), &k);
            // The billed usage moves, by the month it was rated for, to `billed`.
            batch.merge_cf(self.cf(CF_BILLED), &k, lines);
        }
        for (number, json) in &batch_out.invoices {
            if self.invoice(number)?.is_some() {
                return Err(LedgerError::Refused(format!(
                    "document number {number} exists already: numbers are never reused"
                )));
            }
            batch.put_cf(self.cf(CF_INVOICES), number.as_bytes(), json);
        }
        for (number, json) in &batch_out.annexes {
            batch.put_cf(self.cf(CF_ANNEX), number.as_bytes(), json);
        }
        self.add_tx(&mut batch, tx);
        let used = batch_out.invoices.len() as u64;
        batch.put_cf(
            self.cf(CF_META),
            counter_key.as_bytes(),
            (next - 1 + used).to_le_bytes(),
        );
        batch.put_cf(self.cf(CF_META), b"last_closed", period.as_bytes());
        batch.put_cf(
            self.cf(CF_CLOSES),
            period.as_bytes(),
            serde_json::to_vec(&batch_out.record).expect("close record serializes"),
        );
        self.write(batch)?;
        Ok(Closed::New(batch_out.record))
    }

    fn add_tx(&self, batch: &mut WriteBatch, tx: Tx) {
        for (cf, k, v) in tx.ops {
            match v {
                Some(v) => batch.put_cf(self.cf(cf.name()), k, v),
                None => batch.delete_cf(self.cf(cf.name()), k),
            }
        }
        if tx.used > 0 {
            batch.put_cf(
                self.cf(CF_META),
                b"pay_seq",
                (tx.next + tx.used - 1).to_le_bytes(),
            );
        }
    }

    /// Runs one payments operation under the writer lock: `f` reads committed state
    /// through the ledger and records its writes in a [`Tx`]; they commit in ONE synced
    /// WriteBatch, or not at all when `f` fails.
    pub fn transact<T, E>(&self, f: impl FnOnce(&Ledger, &mut Tx) -> Result<T, E>) -> Result<T, E>
    where
        E: From<LedgerError>,
    {
        let _w = self.writer.lock().expect("writer lock");
        let mut tx = Tx {
            next: u64_value(self.get(CF_META, b"pay_seq")?) + 1,
            ..Tx::default()
        };
        let out = f(self, &mut tx)?;
        if !tx.is_empty() {
            let mut batch = WriteBatch::default();
            self.add_tx(&mut batch, tx);
            self.write(batch)?;
        }
        Ok(out)
    }

    /// A value of a payments column family.
    pub fn pay_get(&self, cf: PayCf, key: &[u8]) -> Result<Option<Vec<u8>>, LedgerError> {
        self.get(cf.name(), key)
    }

    /// All (key, value) pairs of a payments column family whose key starts with `prefix`.
    pub fn pay_scan(&self, cf: PayCf, prefix: &[u8]) -> Result<Vec<KeyValue>, LedgerError> {
        let mut out = Vec::new();
        let mode = rocksdb::IteratorMode::From(prefix, rocksdb::Direction::Forward);
        for item in self.db.iterator_cf(self.cf(cf.name()), mode) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Decodes a JSON value of a payments column family, naming the key when corrupt.
    pub fn pay_json<T: for<'de> Deserialize<'de>>(
        &self,
        cf: PayCf,
        key: &[u8],
        v: &[u8],
    ) -> Result<T, LedgerError> {
        self.json(
            &format!("{}/{}", cf.name(), String::from_utf8_lossy(key)),
            v,
        )
    }

    /// Path of the database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(entries: &[(u8, &str, &str, u64, i64)]) -> LineSet {
        let mut s = LineSet::default();
        for &(sv, d, b, c, ch) in entries {
            s.0.insert(
                (sv, d.into(), b.into()),
                LineTotals {
                    count: c,
                    usage: c * 10,
                    billed: c * 60,
                    charge_micros: ch,
                },
            );
        }
        s
    }

    #[test]
    fn line_set_round_trip_and_merge() {
        let a = set(&[
            (0, "Netherlands Mobile", "peak", 2, 1_500),
            (1, "SMS", "any", 1, 90_000),
        ]);
        assert_eq!(LineSet::decode(&a.encode()).unwrap(), a);
        let mut m = a.clone();
        m.merge_encoded(&set(&[(0, "Netherlands Mobile", "peak", 1, 500)]).encode())
            .unwrap();
        assert_eq!(
            m.0[&(0, "Netherlands Mobile".into(), "peak".into())].count,
            3
        );
        assert_eq!(
            m.0[&(0, "Netherlands Mobile".into(), "peak".into())].charge_micros,
            2_000
        );
        assert!(LineSet::decode(&[9]).is_err());
        assert!(LineSet::decode(&a.encode()[..10]).is_err());
    }

    /// Version 2 is exact for extreme values and negative charges and sized exactly by
    /// `entry_len`; version 1 values (written before it) still decode and merge with it.
    #[test]
    fn line_set_versions() {
        let t = LineTotals {
            count: u64::MAX,
            usage: 0,
            billed: 1 << 40,
            charge_micros: i64::MIN,
        };
        let mut v2 = LineSet::encode_header();
        LineSet::encode_entry(&mut v2, 2, "Überall", "off", &t);
        assert_eq!(v2.len(), 1 + LineSet::entry_len("Überall", "off", &t));
        let got = LineSet::decode(&v2).unwrap();
        assert_eq!(got.0[&(2, "Überall".into(), "off".into())], t);
        // The same line in version 1, byte by byte.
        let mut v1 = vec![1u8, 0];
        v1.extend_from_slice(&(3u16).to_le_bytes());
        v1.extend_from_slice(b"SMS");
        v1.push(3);
        v1.extend_from_slice(b"any");
        for n in [2u64, 2, 2, (-7i64) as u64] {
            v1.extend_from_slice(&n.to_le_bytes());
        }
        let mut m = LineSet::decode(&v1).unwrap();
        m.merge_encoded(&set(&[(0, "SMS", "any", 1, 5)]).encode())
            .unwrap();
        assert_eq!(
            m.0[&(0, "SMS".into(), "any".into())],
            LineTotals {
                count: 3,
                usage: 12,
                billed: 62,
                charge_micros: -2,
            }
        );
        // A cut varint is an error, not a panic.
        assert!(LineSet::decode(&v2[..v2.len() - 1]).is_err());
        assert!(LineSet::decode(&[2, 0, 0x80]).is_err());
    }

    fn cp(name: &str, hash: &str) -> Checkpoint {
        Checkpoint {
            format: 1,
            name: name.into(),
            size: 1,
            content_hash: hash.into(),
            lines: 1,
            rated: 1,
            rejected: BTreeMap::new(),
            charge: Micros::ZERO,
            tariff_version: "t".into(),
            accounts_hash: "a".into(),
            rated_at: 0,
            committed_at: "2026-01-01T00:00:00Z".into(),
            seq: 0,
            months: vec![],
        }
    }

    /// The cross-file index reads values of both formats in one store: format 1 (varint
    /// length and bytes, written before format 2) and format 2 (crate::ingest::dedup::
    /// encode_entry). The exact lookup finds every id written in either and nothing
    /// else (not an id that differs by a leading zero or by case); the filter's scan
    /// hands out the hash of every id's own bytes with its commit day.
    #[test]
    fn dedup_index_reads_values_of_both_formats() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path()).unwrap();
        let long = vec![b'x'; 200];
        let old: Vec<&[u8]> = vec![b"K-1", b"0a1b2c3d-0000-4000-8000-00000000abcd", b"plain"];
        let new: Vec<&[u8]> = vec![
            b"K-2",
            b"0A1B2C3D-0000-4000-8000-00000000ABCD",
            b"K-007",
            b"18446744073709551615",
            b"9999999999999999999",
            &long,
        ];
        let bucket =
            |id: &[u8]| (xxhash_rust::xxh3::xxh3_64(id) >> (64 - DEDUP_BUCKET_BITS)) as u32;
        // One value per bucket: its format byte, then its ids' entries.
        let part = |ids: &[&[u8]], format: u8| {
            let mut by: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
            for id in ids {
                let v = by.entry(bucket(id)).or_insert_with(|| vec![format]);
                if format == 1 {
                    v.extend_from_slice(&(id.len() as u64).encode_var_vec());
                    v.extend_from_slice(id);
                } else {
                    crate::ingest::dedup::encode_entry(v, id);
                }
            }
            let (mut buf, mut chunks) = (Vec::new(), Vec::new());
            for (b, v) in by {
                chunks.push((b, buf.len(), buf.len() + v.len()));
                buf.extend_from_slice(&v);
            }
            (buf, chunks)
        };
        for (name, ids, format, day) in [("old", &old, 1, 20_400), ("new", &new, 2, 20_401)] {
            let mut batch = l.file_batch(0);
            let (buf, chunks) = part(ids, format);
            batch.add_index_part(day, buf, chunks);
            assert!(matches!(
                l.commit_file_batch(cp(name, name), batch, true).unwrap(),
                Commit::Committed(_)
            ));
        }
        let asked: Vec<&[u8]> = vec![
            b"K-1",
            b"K-2",
            b"K-3",
            b"K-01",
            b"K-07",
            b"K-007",
            b"k-1",
            b"plain",
            b"0a1b2c3d-0000-4000-8000-00000000abcd",
            b"0A1B2C3D-0000-4000-8000-00000000ABCD",
            b"0a1b2c3d-0000-4000-8000-00000000ABCD",
            b"0A1B2C3D-0000-4000-8000-00000000abcd",
            b"18446744073709551615",
            b"9999999999999999999",
            b"999999999999999999",
            &long,
            &long[1..],
        ];
        let found = l.dedup_lookup(&asked, 0).unwrap();
        let held: Vec<&[u8]> = asked
            .iter()
            .zip(&found)
            .filter(|(_, f)| **f)
            .map(|(a, _)| *a)
            .collect();
        let mut want: Vec<&[u8]> = old.iter().chain(&new).copied().collect();
        want.sort();
        let mut got = held.clone();
        got.sort();
        assert_eq!(got, want);
        // Ids of the second day only, from that day on.
        let later = l.dedup_lookup(&asked, 20_401).unwrap();
        assert_eq!(later.iter().filter(|f| **f).count(), new.len());
        let mut scanned = Vec::new();
        l.dedup_scan(0, 1 << DEDUP_BUCKET_BITS, 0, |h, day| {
            scanned.push((h, day))
        })
        .unwrap();
        scanned.sort();
        let mut hashes: Vec<(u64, u32)> = old
            .iter()
            .map(|id| (xxhash_rust::xxh3::xxh3_64(id), 20_400))
            .chain(
                new.iter()
                    .map(|id| (xxhash_rust::xxh3::xxh3_64(id), 20_401)),
            )
            .collect();
        hashes.sort();
        assert_eq!(scanned, hashes);
    }

    #[test]
    fn commits_merge_and_refuse_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(dir.path()).unwrap();
        let u = vec![(
            b"A\x002026-10".to_vec(),
            set(&[(0, "X", "any", 1, 10)]).encode(),
        )];
        let mut day = DayTotals::default();
        day.0[2] = LineTotals {
            count: 3,
            usage: 100,
            billed: 1024,
            charge_micros: 7,
        };
        let d = vec![(b"2026-10-05".to_vec(), day.encode())];
        assert_eq!(
            l.commit_file(cp("f1", "h1"), &u, &[], true).unwrap(),
            Commit::Committed(1)
        );
        assert_eq!(
            l.commit_file(cp("f2", "h2"), &u, &d, true).unwrap(),
            Commit::Committed(2)
        );
        assert!(matches!(
            l.commit_file(cp("f1", "h9"), &u, &d, true).unwrap(),
            Commit::DuplicateName(_)
        ));
        assert_eq!(
            l.commit_file(cp("f3", "h1"), &u, &d, true).unwrap(),
            Commit::DuplicateContent("f1".into())
        );
        let rows = l.unbilled(None).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].lines.0[&(0, "X".into(), "any".into())].charge_micros,
            20
        );
        drop(l);
        // Reopen: state persisted; a second open while held is refused as busy.
        let l = Ledger::open(dir.path()).unwrap();
        assert!(matches!(
            Ledger::open(dir.path()),
            Err(LedgerError::Busy(_))
        ));
        assert_eq!(l.file("f2").unwrap().unwrap().seq, 2);
        // Daily totals were merged once (f2 only: refused commits add nothing).
        let days = l.daily("2026-10").unwrap();
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].0, "2026-10-05");
        assert_eq!(days[0].1 .0[2].count, 3);
        assert_eq!(days[0].1.total().charge_micros, 7);
        assert!(l.daily("2026-11").unwrap().is_empty());
        let size = l.db_stats().size;
        assert!(size > 0);
    }
}
