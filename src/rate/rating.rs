//! Rating one record against a tariff table: the checks, the bands, the row, the charge.
//!
//! Hot path: no allocation, no logging, no I/O. A [`Rater`] is owned by one worker
//! thread and keeps tables indexed by time (UTC offsets, per-day band masks), so a
//! record costs the same in any order.

use chrono::{Offset, TimeZone};

use crate::rate::accounts::AccountIndex;
use crate::rate::cdr::number::{normalize, Digits};
use crate::rate::cdr::time::{civil_from_days, TimeParser};
use crate::rate::cdr::{parse_u64, Column, Layout, Splitter};
use crate::rate::service::Service;
use crate::rate::tariff::{ArchivedRowDef, Tariff, ANY_BAND};

/// Why a record was rejected. The order of the variants is the order of the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    Malformed = 0,
    UnknownService,
    BadTime,
    FutureTime,
    BadUsage,
    UnknownAccount,
    BadNumber,
    NoRate,
    DuplicateRecord,
}

impl Reason {
    pub const ALL: [Reason; 9] = [
        Reason::Malformed,
        Reason::UnknownService,
        Reason::BadTime,
        Reason::FutureTime,
        Reason::BadUsage,
        Reason::UnknownAccount,
        Reason::BadNumber,
        Reason::NoRate,
        Reason::DuplicateRecord,
    ];

    /// The stable reason code written to rejects files and metric labels.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Malformed => "malformed",
            Reason::UnknownService => "unknown_service",
            Reason::BadTime => "bad_time",
            Reason::FutureTime => "future_time",
            Reason::BadUsage => "bad_usage",
            Reason::UnknownAccount => "unknown_account",
            Reason::BadNumber => "bad_number",
            Reason::NoRate => "no_rate",
            Reason::DuplicateRecord => "duplicate_record",
        }
    }
}

/// Records whose usage would price above this are refused as `bad_usage` (10^15 units).
pub const MAX_USAGE: u64 = 1_000_000_000_000_000;

/// Rule 4: billed units for `usage` with increments `first`/`next` (usage > 0).
#[inline]
pub fn billed_units(usage: u64, first: u64, next: u64) -> u64 {
    if usage <= first {
        first
    } else {
        first + (usage - first).div_ceil(next) * next
    }
}

/// Highest charge of one record (1 000 000 currency units); a record pricing above it is
/// refused as `bad_usage`, so sums of charges can never overflow.
pub const MAX_CHARGE_MICROS: i64 = 1_000_000 * 1_000_000;

/// Rule 4: charge in micro-units for `billed` units of a row, rounded half-up to 6 decimals.
/// `None` above [`MAX_CHARGE_MICROS`].
#[inline]
pub fn charge_micros(
    connect_fee_nanos: i64,
    rate_nanos: i64,
    per: u64,
    billed: u64,
) -> Option<i64> {
    let num = connect_fee_nanos as u128 * per as u128 + rate_nanos as u128 * billed as u128;
    let den = per as u128 * 1000;
    let q = if num <= u64::MAX as u128 && den <= u64::MAX as u128 {
        let (n, d) = (num as u64, den as u64);
        (n / d + u64::from((n % d) * 2 >= d)) as u128
    } else {
        num / den + u128::from((num % den) * 2 >= den)
    };
    (q <= MAX_CHARGE_MICROS as u128).then_some(q as i64)
}

/// A rated record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rated {
    pub account: u32,
    /// Billing month: `year * 12 + (month - 1)` in the tariff time zone.
    pub month: u32,
    pub service: Service,
    /// Index of the pricing row in the tariff table.
    pub row: u32,
    /// Usage as recorded (seconds, bytes, or 1 for sms).
    pub usage: u64,
    /// Billed units after increments (0 for zero usage).
    pub billed: u64,
    pub charge_micros: i64,
    pub start: i64,
    /// Local day number (days since 1970-01-01 in the tariff time zone).
    pub day: i32,
}

/// The line key of an invoice: (service, destination, band of the chosen row).
#[inline]
pub fn line_key(service: Service, destination: u32, band: u8) -> u32 {
    (destination << 10) | ((band as u32) << 2) | service as u32
}

/// Splits a line key into (service, destination index, band).
pub fn split_line_key(k: u32) -> (Service, u32, u8) {
    (
        Service::from_index((k & 3) as u8).expect("valid service"),
        k >> 10,
        ((k >> 2) & 0xff) as u8,
    )
}

/// Formats a month index as `YYYY-MM`.
pub fn month_label(month: u32) -> String {
    format!("{:04}-{:02}", month / 12, month % 12 + 1)
}

const OFFSET_SLOTS: usize = 1024;
const DAY_SLOTS: usize = 64;
const BUCKET: i64 = 900;
/// Quarter hours covered by [`LocalClock`]'s direct offset table: 2^18 (7.5 years,
/// 1 MiB of address space per rater of which only the pages a file's span touches are
/// ever written: 35 KiB for three months).
const SPAN_BUCKETS: usize = 1 << 18;
/// Local days covered by the direct day table (11 years, 64 KiB).
const SPAN_DAYS: usize = 1 << 12;
/// An offset table entry: 0 = not computed yet; `TRANSITION` = the offset changes inside
/// the quarter hour; otherwise the offset in seconds plus `OFFSET_BIAS` (offsets are
/// within ±26 hours, so the entry is never 0 or `TRANSITION`).
const TRANSITION: u32 = 1;
const OFFSET_BIAS: i32 = 1 << 20;

#[derive(Clone, Copy)]
struct DayInfo {
    day: i32,
    month: u32,
    /// Bands whose date and weekday conditions hold on this day.
    mask: u64,
}

type BandDays = (Vec<(i32, u8, u8)>, u8);

/// Local-time evaluation for one tariff: UTC offsets and day facts (billing month, band
/// masks) plus the band windows.
///
/// Records come in any order (a backlog of several months, switches merged), so the
/// per-record lookups cost the same in any order: two tables indexed directly, one by
/// UTC quarter hour (the offset) and one by local day (month and band masks), each
/// covering a window placed around the first record a rater sees and filled on first
/// use. A record outside the windows (years away from the first) takes small hashed
/// caches instead. Every entry is a pure function of its index, so results do not
/// depend on the order of the records.
pub struct LocalClock {
    tz: chrono_tz::Tz,
    /// Quarter hour of `span_offsets[0]` (`i64::MIN` until the first lookup).
    span_base: i64,
    span_offsets: Box<[u32]>,
    /// Local day of `span_days[0]`.
    span_day_base: i64,
    span_days: Box<[DayInfo]>,
    offsets: Box<[(i64, i32)]>,
    days: Box<[DayInfo]>,
    /// Per band: its `(year or 0, month, day)` dates and its weekday mask.
    band_dates: Vec<BandDays>,
    windows: Vec<(u8, u16, u16)>,
    no_window_mask: u64,
}

impl LocalClock {
    pub fn new(tariff: &Tariff) -> LocalClock {
        let t = tariff.table();
        let mut windows = Vec::new();
        let mut no_window_mask = 0u64;
        let mut band_dates = Vec::new();
        for (i, b) in t.bands.iter().enumerate() {
            if b.has_window {
                windows.push((i as u8, b.from_min.to_native(), b.to_min.to_native()));
            } else {
                no_window_mask |= 1 << i;
            }
            band_dates.push((
                b.dates
                    .iter()
                    .map(|d| (d.0.to_native(), d.1, d.2))
                    .collect(),
                b.days,
            ));
        }
        let unset = DayInfo {
            day: i32::MIN,
            month: 0,
            mask: 0,
        };
        LocalClock {
            tz: tariff.tz,
            span_base: i64::MIN,
            span_offsets: vec![0u32; SPAN_BUCKETS].into_boxed_slice(),
            span_day_base: i64::MIN,
            span_days: vec![unset; SPAN_DAYS].into_boxed_slice(),
            offsets: vec![(i64::MIN, 0); OFFSET_SLOTS].into_boxed_slice(),
            days: vec![
                DayInfo {
                    day: i32::MIN,
                    month: 0,
                    mask: 0
                };
                DAY_SLOTS
            ]
            .into_boxed_slice(),
            band_dates,
            windows,
            no_window_mask,
        }
    }

    fn offset_at(&self, ts: i64) -> i32 {
        match chrono::DateTime::from_timestamp(ts, 0) {
            Some(dt) => self
                .tz
                .offset_from_utc_datetime(&dt.naive_utc())
                .fix()
                .local_minus_utc(),
            None => 0,
        }
    }

    /// UTC offset in seconds at `ts`.
    #[inline]
    pub fn offset(&mut self, ts: i64) -> i32 {
        let bucket = ts.div_euclid(BUCKET);
        if self.span_base == i64::MIN {
            self.place_windows(ts);
        }
        let i = bucket.wrapping_sub(self.span_base) as u64;
        if let Some(&e) = self.span_offsets.get(i as usize) {
            if e > TRANSITION {
                return e as i32 - OFFSET_BIAS;
            }
            return self.fill_offset(i as usize, bucket, ts);
        }
        self.offset_hashed(bucket, ts)
    }

    /// Centres both direct tables on the first record's time.
    #[cold]
    fn place_windows(&mut self, ts: i64) {
        self.span_base = ts.div_euclid(BUCKET) - (SPAN_BUCKETS / 2) as i64;
        self.span_day_base = ts.div_euclid(86_400) - (SPAN_DAYS / 2) as i64;
    }

    /// Computes (and keeps) the offset table entry `i`, for quarter hour `bucket`.
    #[cold]
    fn fill_offset(&mut self, i: usize, bucket: i64, ts: i64) -> i32 {
        if self.span_offsets[i] == 0 {
            let start = self.offset_at(bucket * BUCKET);
            let end = self.offset_at(bucket * BUCKET + BUCKET - 1);
            self.span_offsets[i] = if start == end {
                (start + OFFSET_BIAS) as u32
            } else {
                TRANSITION
            };
        }
        match self.span_offsets[i] {
            // A transition inside this quarter hour: the exact offset every time.
            TRANSITION => self.offset_at(ts),
            e => e as i32 - OFFSET_BIAS,
        }
    }

    /// The offset of a time outside the direct table (a small hashed cache).
    #[cold]
    fn offset_hashed(&mut self, bucket: i64, ts: i64) -> i32 {
        let slot = (bucket as usize) % OFFSET_SLOTS;
        let e = self.offsets[slot];
        if e.0 == bucket {
            return e.1;
        }
        let start = self.offset_at(bucket * BUCKET);
        let end = self.offset_at(bucket * BUCKET + BUCKET - 1);
        if start == end {
            self.offsets[slot] = (bucket, start);
            start
        } else {
            // A transition inside this quarter hour: never cached.
            self.offset_at(ts)
        }
    }

    /// Local day number, minute of day, billing month and active bands at `ts`.
    #[inline]
    pub fn at(&mut self, ts: i64) -> (i32, u32, u64) {
        let local = ts + self.offset(ts) as i64;
        let day = local.div_euclid(86_400) as i32;
        let minute = (local.rem_euclid(86_400) / 60) as u16;
        let i = (day as i64).wrapping_sub(self.span_day_base) as u64;
        let info = match self.span_days.get(i as usize) {
            Some(e) if e.day == day => *e,
            Some(_) => {
                let info = self.day_info(day);
                self.span_days[i as usize] = info;
                info
            }
            None => self.day_hashed(day),
        };
        let mut active = info.mask & self.no_window_mask;
        for &(i, from, to) in &self.windows {
            let inside = if from < to {
                from <= minute && minute < to
            } else {
                minute >= from || minute < to
            };
            if inside {
                active |= info.mask & (1 << i);
            }
        }
        (day, info.month, active)
    }

    /// The facts of a day outside the direct table (a small hashed cache).
    #[cold]
    fn day_hashed(&mut self, day: i32) -> DayInfo {
        let slot = (day as usize) % DAY_SLOTS;
        let mut info = self.days[slot];
        if info.day != day {
            info = self.day_info(day);
            self.days[slot] = info;
        }
        info
    }

    #[cold]
    fn day_info(&self, day: i32) -> DayInfo {
        let (y, m, d) = civil_from_days(day as i64);
        let weekday = (day as i64 + 3).rem_euclid(7) as u8; // 1970-01-01 was a Thursday
        let mut mask = 0u64;
        for (i, (dates, days)) in self.band_dates.iter().enumerate() {
            let date_ok = dates.is_empty()
                || dates.iter().any(|&(yy, mm, dd)| {
                    (yy == 0 || yy as i64 == y) && mm as u32 == m && dd as u32 == d
                });
            if date_ok && days & (1 << weekday) != 0 {
                mask |= 1 << i;
            }
        }
        DayInfo {
            day,
            month: (y * 12 + m as i64 - 1) as u32,
            mask,
        }
    }
}

/// Rates lines of one file for one worker.
pub struct Rater<'t> {
    pub tariff: &'t Tariff,
    pub accounts: &'t AccountIndex,
    pub layout: Layout,
    pub clock: LocalClock,
    /// Two splitters used as a queue of depth two: [`Rater::scan_ahead`] (the workers)
    /// or [`Rater::split_ahead`] splits the next line while the current one is still to
    /// be rated (see `pipeline::work`).
    splitters: [Splitter; 2],
    /// Split results of the queued lines, by slot.
    split_n: [Result<usize, crate::rate::cdr::Malformed>; 2],
    /// Slot the next `scan_ahead`/`split_ahead` writes, and slot the next `rate_ahead`
    /// (or `skip_ahead`) reads.
    write_slot: usize,
    read_slot: usize,
    times: TimeParser,
    national: &'t [u8],
    future_limit: i64,
}

/// What [`Rater::price`] found for one usage event.
#[derive(Clone, Copy)]
pub struct Priced<'t> {
    pub row_index: u32,
    pub row: &'t ArchivedRowDef,
    pub month: u32,
    /// Local day number (days since 1970-01-01 in the tariff time zone).
    pub day: i32,
    pub billed: u64,
    pub charge_micros: i64,
    pub active_bands: u64,
}

impl<'t> Rater<'t> {
    /// A rater for files processed at `now` (Unix seconds; used by `future_time`).
    pub fn new(
        tariff: &'t Tariff,
        accounts: &'t AccountIndex,
        layout: Layout,
        now: i64,
    ) -> Rater<'t> {
        Rater {
            tariff,
            accounts,
            layout,
            clock: LocalClock::new(tariff),
            splitters: [Splitter::new(), Splitter::new()],
            split_n: [Ok(0), Ok(0)],
            write_slot: 0,
            read_slot: 0,
            times: TimeParser::default(),
            national: tariff.table().national_prefix.as_bytes(),
            future_limit: now + 86_400,
        }
    }

    /// Normalizes a called number with the tariff's national prefix.
    #[inline]
    pub fn normalize<'a>(&self, raw: &'a [u8], service: Service) -> Option<Digits<'a>>
    where
        't: 'a,
    {
        normalize(raw, self.national, service == Service::Data)
    }

    /// Rules 3 and 4 for one usage event of an account on `plan`.
    #[inline]
    pub fn price(
        &mut self,
        plan: u32,
        service: Service,
        digits: &Digits<'_>,
        start: i64,
        usage: u64,
    ) -> Result<Priced<'t>, Reason> {
        price(
            self.tariff,
            &mut self.clock,
            plan,
            service,
            digits,
            start,
            usage,
        )
    }

    /// Rates one line (without its terminator); returns the record id hash with the result.
    #[inline]
    pub fn rate_line(&mut self, line: &[u8]) -> Result<(Rated, u64), Reason> {
        self.rate_in(line, 0, line.len())
    }

    /// Rates the line `buf[start..end]`; faster than [`Rater::rate_line`] on a line inside
    /// a larger buffer (see [`Rater::split_ahead`]).
    #[inline]
    pub fn rate_in(
        &mut self,
        buf: &[u8],
        start: usize,
        end: usize,
    ) -> Result<(Rated, u64), Reason> {
        self.split_ahead(buf, start, end);
        self.rate_ahead(&buf[start..end])
    }

    /// Splits the line `buf[start..end]` into the queue (at most two lines ahead of
    /// [`Rater::rate_ahead`]) and returns its account id field when the line is unquoted
    /// and well-formed, so the caller can prefetch the account's slot while rating the
    /// line before it. `buf` is the whole chunk or file: see [`Splitter::split_within`].
    ///
    /// [`Splitter::split_within`]: crate::rate::cdr::Splitter::split_within
    #[inline]
    pub fn split_ahead<'a>(
        &'a mut self,
        buf: &'a [u8],
        start: usize,
        end: usize,
    ) -> Option<&'a [u8]> {
        let w = self.write_slot;
        self.write_slot ^= 1;
        let sp = &mut self.splitters[w];
        let n = sp.split_within(buf, start, end);
        self.split_n[w] = n;
        match n {
            Ok(n) if n == self.layout.n_fields && !sp.is_quoted() => Some(sp.field(
                &buf[start..end],
                self.layout.pos[Column::AccountId as usize] as usize,
            )),
            _ => None,
        }
    }

    /// Takes the next line of `sc` (a scanner over `buf`) into the queue, like
    /// [`Rater::split_ahead`], and starts loading its account's slot when the line is
    /// unquoted and well-formed, so the cache miss overlaps with rating the line before.
    /// Returns the line's bounds in `buf`. Every line taken must then be rated with
    /// [`Rater::rate_ahead`] or passed over with [`Rater::skip_ahead`], in order.
    #[inline]
    pub fn scan_ahead(
        &mut self,
        sc: &mut crate::rate::cdr::LineScanner,
        buf: &[u8],
    ) -> Option<(usize, usize)> {
        let w = self.write_slot;
        let sp = &mut self.splitters[w];
        let start = sc.next_start();
        let end = sp.scan(sc, buf)?;
        let n = sp.scanned();
        self.write_slot ^= 1;
        self.split_n[w] = n;
        if n == Ok(self.layout.n_fields) && !sp.is_quoted() {
            if let Some((s, e)) = sp.range(self.layout.pos[Column::AccountId as usize] as usize) {
                self.accounts.prefetch(&buf[start + s..start + e]);
            }
        }
        Some((start, end))
    }

    /// Passes over the oldest queued line without rating it (a blank or oversized line).
    #[inline]
    pub fn skip_ahead(&mut self) {
        self.read_slot ^= 1;
    }

    /// Rates the oldest line queued by [`Rater::scan_ahead`] or [`Rater::split_ahead`];
    /// `line` must be that line.
    #[inline]
    pub fn rate_ahead(&mut self, line: &[u8]) -> Result<(Rated, u64), Reason> {
        let r = self.read_slot;
        self.read_slot ^= 1;
        let n = self.split_n[r].map_err(|_| Reason::Malformed)?;
        if n != self.layout.n_fields {
            return Err(Reason::Malformed);
        }
        let pos = self.layout.pos;
        let sp = &self.splitters[r];
        let f = |c: Column| sp.field(line, pos[c as usize] as usize);
        let service = Service::from_bytes(f(Column::Service)).ok_or(Reason::UnknownService)?;
        let start = self
            .times
            .parse(f(Column::StartTime))
            .ok_or(Reason::BadTime)?;
        if start > self.future_limit {
            return Err(Reason::FutureTime);
        }
        let usage = match service {
            Service::Voice => parse_u64(f(Column::DurationS)).ok_or(Reason::BadUsage)?,
            Service::Data => parse_u64(f(Column::VolumeBytes)).ok_or(Reason::BadUsage)?,
            Service::Sms => 1,
        };
        if usage > MAX_USAGE {
            return Err(Reason::BadUsage);
        }
        let (account, plan) = self
            .accounts
            .find(f(Column::AccountId))
            .ok_or(Reason::UnknownAccount)?;
        let digits = normalize(
            f(Column::CalledNumber),
            self.national,
            service == Service::Data,
        )
        .ok_or(Reason::BadNumber)?;
        let id_hash = xxhash_rust::xxh3::xxh3_64(f(Column::RecordId));
        let p = price(
            self.tariff,
            &mut self.clock,
            plan,
            service,
            &digits,
            start,
            usage,
        )?;
        Ok((
            Rated {
                account,
                month: p.month,
                service,
                row: p.row_index,
                usage,
                billed: p.billed,
                charge_micros: p.charge_micros,
                start,
                day: p.day,
            },
            id_hash,
        ))
    }

    /// The record id of the line [`Rater::rate_ahead`] rated last (`line`, as given to
    /// it): the bytes its record-id hash was computed from. Valid until the next
    /// [`Rater::scan_ahead`] or [`Rater::split_ahead`].
    #[inline]
    pub fn rated_id<'a>(&'a self, line: &'a [u8]) -> &'a [u8] {
        self.splitters[self.read_slot ^ 1]
            .field(line, self.layout.pos[Column::RecordId as usize] as usize)
    }

    /// The record-id hash [`Rater::rate_line`] would return for `line` when it rates;
    /// only splits the line (a cheap filter before rating it again).
    pub fn record_id_hash(&mut self, line: &[u8]) -> Option<u64> {
        self.record_id_hash_in(line, 0, line.len())
    }

    /// [`Rater::record_id_hash`] of the line `buf[start..end]`.
    pub fn record_id_hash_in(&mut self, buf: &[u8], start: usize, end: usize) -> Option<u64> {
        let sp = &mut self.splitters[0];
        if sp.split_within(buf, start, end).ok()? != self.layout.n_fields {
            return None;
        }
        Some(xxhash_rust::xxh3::xxh3_64(sp.field(
            &buf[start..end],
            self.layout.pos[Column::RecordId as usize] as usize,
        )))
    }

    /// The record id of a line that rated (for exact duplicate checks).
    pub fn record_id(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        let sp = &mut self.splitters[0];
        sp.split(line).ok()?;
        Some(
            sp.field(line, self.layout.pos[Column::RecordId as usize] as usize)
                .to_vec(),
        )
    }
}

/// Rules 3 and 4 for one usage event (see [`Rater::price`]); a free function so that
/// rating can hold the split fields of the line while it prices. Always inlined into
/// rating, like `normalize`, so its result never makes a round trip through memory.
#[inline(always)]
fn price<'t>(
    tariff: &'t Tariff,
    clock: &mut LocalClock,
    plan: u32,
    service: Service,
    digits: &Digits<'_>,
    start: i64,
    usage: u64,
) -> Result<Priced<'t>, Reason> {
    let (day, month, active) = clock.at(start);
    let (row_index, row) = tariff
        .lookup(plan, service, digits, active, day)
        .ok_or(Reason::NoRate)?;
    let billed = match (service, usage) {
        (_, 0) => 0,
        (Service::Sms, _) => 1,
        _ => billed_units(
            usage,
            row.first_increment.to_native(),
            row.next_increment.to_native(),
        ),
    };
    let charge = if billed == 0 {
        0
    } else {
        charge_micros(
            row.connect_fee_nanos.to_native(),
            row.rate_nanos.to_native(),
            row.per.to_native(),
            billed,
        )
        .ok_or(Reason::BadUsage)?
    };
    Ok(Priced {
        row_index,
        row,
        month,
        day,
        billed,
        charge_micros: charge,
        active_bands: active,
    })
}

/// The band name of a row (`any` when it applies in every band).
pub fn band_name(tariff: &Tariff, band: u8) -> &str {
    if band == ANY_BAND {
        "any"
    } else {
        tariff.table().bands[band as usize].name.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increments() {
        // 30/6: 10 s -> 30 s, 31 s -> 36 s; 60/60: 61 s -> 120 s
        assert_eq!(billed_units(10, 30, 6), 30);
        assert_eq!(billed_units(31, 30, 6), 36);
        assert_eq!(billed_units(61, 60, 60), 120);
        assert_eq!(billed_units(60, 60, 60), 60);
        assert_eq!(billed_units(1, 0, 1), 1);
        assert_eq!(billed_units(7, 0, 5), 10);
    }

    #[test]
    fn charges_round_half_up_to_six_decimals() {
        // 0.045/min for 36 s: 0.027
        assert_eq!(charge_micros(0, 45_000_000, 60, 36), Some(27_000));
        // 0.10/min for 1 s: 0.0016666.. -> 0.001667
        assert_eq!(charge_micros(0, 100_000_000, 60, 1), Some(1_667));
        // exactly half: 0.0000005 -> 0.000001
        assert_eq!(charge_micros(0, 1_000, 2, 1), Some(1));
        assert_eq!(charge_micros(0, 999, 2, 1), Some(0));
        assert_eq!(charge_micros(15_000_000, 0, 60, 60), Some(15_000));
        // large values take the u128 path; above the cap the record cannot be priced
        assert_eq!(
            charge_micros(0, 1_000_000_000, 1, 1_000_000),
            Some(MAX_CHARGE_MICROS)
        );
        assert_eq!(charge_micros(0, 1_000_000_000, 1, 1_000_001), None);
        assert_eq!(
            charge_micros(0, 1_000_000_000_000_000, 1, 1_000_000_000_000),
            None
        );
    }

    #[test]
    fn line_keys_round_trip() {
        let k = line_key(Service::Data, 123_456, 7);
        assert_eq!(split_line_key(k), (Service::Data, 123_456, 7));
        assert_eq!(month_label(2026 * 12 + 9), "2026-10");
    }
}
