//! The live figures of a running engine: totals since the daemon started (seeded from
//! the ledger's checkpoints) and a ring of 10-second slots covering the last hour. The
//! engine holds them and adds a file's figures once per file (never per record); the
//! dashboard ([`crate::ops::dashboard`]) reads them.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use utoipa::ToSchema;

use crate::rate::rating::Reason;
use crate::store::Ledger;

/// Seconds per history slot.
pub const SLOT_SECONDS: i64 = 10;
/// Slots kept: one hour.
pub const SLOTS: usize = 360;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Unix time / SLOT_SECONDS.
    index: i64,
    rated: u64,
    rejected: u64,
    files: u64,
    bytes: u64,
}

#[derive(Debug, Default)]
pub struct LiveState {
    pub started: i64,
    pub rated: u64,
    pub rejected: [u64; 9],
    pub bytes: u64,
    pub charge_micros: i64,
    /// done, failed, duplicate.
    pub files: [u64; 3],
    slots: VecDeque<Slot>,
    pub backlog_files: u64,
    pub backlog_bytes: u64,
    pub oldest_age_seconds: f64,
}

/// The daemon's live figures.
#[derive(Debug, Default)]
pub struct Live {
    state: Mutex<LiveState>,
}

impl Live {
    /// New figures, started now.
    pub fn new() -> Live {
        let l = Live::default();
        l.state.lock().expect("live lock").started = chrono::Utc::now().timestamp();
        l
    }

    fn slot(s: &mut LiveState, now: i64) -> &mut Slot {
        let index = now.div_euclid(SLOT_SECONDS);
        if s.slots.back().is_none_or(|b| b.index != index) {
            s.slots.push_back(Slot {
                index,
                ..Slot::default()
            });
            while s.slots.len() > SLOTS {
                s.slots.pop_front();
            }
        }
        s.slots.back_mut().expect("pushed above")
    }

    /// A committed file's figures (once per file).
    pub fn file_committed(&self, rated: u64, rejected: &[u64; 9], bytes: u64, charge: i64) {
        let now = chrono::Utc::now().timestamp();
        let mut s = self.state.lock().expect("live lock");
        s.rated += rated;
        for (t, n) in s.rejected.iter_mut().zip(rejected) {
            *t += n;
        }
        s.bytes += bytes;
        s.charge_micros += charge;
        let rej: u64 = rejected.iter().sum();
        let slot = Live::slot(&mut s, now);
        slot.rated += rated;
        slot.rejected += rej;
        slot.bytes += bytes;
    }

    /// A finished file's outcome: `done`, `failed` or `duplicate`.
    pub fn file_finished(&self, outcome: &str) {
        let now = chrono::Utc::now().timestamp();
        let mut s = self.state.lock().expect("live lock");
        let i = match outcome {
            "done" => 0,
            "failed" => 1,
            _ => 2,
        };
        s.files[i] += 1;
        Live::slot(&mut s, now).files += 1;
    }

    /// The spool backlog, as the watcher last saw it.
    pub fn set_backlog(&self, files: u64, bytes: u64, oldest_age_seconds: f64) {
        let mut s = self.state.lock().expect("live lock");
        s.backlog_files = files;
        s.backlog_bytes = bytes;
        s.oldest_age_seconds = oldest_age_seconds;
    }

    /// Seeds the totals from the ledger's checkpoints (at daemon start).
    pub fn seed(&self, ledger: &Ledger) {
        let Ok(files) = ledger.files() else { return };
        let mut s = self.state.lock().expect("live lock");
        for cp in files {
            s.files[0] += 1;
            s.rated += cp.rated;
            s.bytes += cp.size;
            s.charge_micros += cp.charge.0;
            for (code, n) in &cp.rejected {
                if let Some(r) = Reason::ALL.iter().position(|r| r.code() == code.as_str()) {
                    s.rejected[r] += n;
                }
            }
        }
    }

    /// The figures, locked for reading.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state.lock().expect("live lock")
    }

    /// Throughput now (records per second over the last minute) and per minute over the
    /// last hour (oldest first; minutes without files are zero).
    pub fn throughput(s: &LiveState, now: i64) -> (f64, Vec<Minute>) {
        let current = now.div_euclid(SLOT_SECONDS);
        let per_minute = 60 / SLOT_SECONDS;
        let last_minute: u64 = s
            .slots
            .iter()
            .filter(|x| x.index > current - per_minute)
            .map(|x| x.rated + x.rejected)
            .sum();
        let window = (now - s.started).clamp(1, 60) as f64;
        let this_minute = now.div_euclid(60);
        let mut minutes: Vec<Minute> = (0..60)
            .map(|i| {
                let m = this_minute - 59 + i;
                Minute {
                    minute: chrono::DateTime::from_timestamp(m * 60, 0)
                        .map(|t| t.format("%H:%M").to_string())
                        .unwrap_or_default(),
                    records: 0,
                    rejected: 0,
                    files: 0,
                    bytes: 0,
                }
            })
            .collect();
        for x in &s.slots {
            let m = (x.index * SLOT_SECONDS).div_euclid(60);
            let i = m - (this_minute - 59);
            if (0..60).contains(&i) {
                let e = &mut minutes[i as usize];
                e.records += x.rated + x.rejected;
                e.rejected += x.rejected;
                e.files += x.files;
                e.bytes += x.bytes;
            }
        }
        (last_minute as f64 / window, minutes)
    }
}

/// Records, rejects, files and bytes of one minute.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Minute {
    /// `HH:MM` (UTC).
    #[schema(example = "14:05")]
    pub minute: String,
    /// Records read (rated + rejected) by files committed in this minute.
    pub records: u64,
    pub rejected: u64,
    /// Files finished (done, failed or duplicate).
    pub files: u64,
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_over_slots() {
        let mut s = LiveState {
            started: 1_000_000 - 3600,
            ..LiveState::default()
        };
        let now = 1_000_000i64;
        // 600 records 30 s ago, 60 records two minutes ago.
        Live::slot(&mut s, now - 30).rated = 600;
        // (slots are pushed in time order in the daemon; here out of order is fine for sums)
        s.slots.push_front(Slot {
            index: (now - 120).div_euclid(SLOT_SECONDS),
            rated: 50,
            rejected: 10,
            files: 1,
            bytes: 5,
        });
        let (rps, minutes) = Live::throughput(&s, now);
        assert_eq!(rps, 10.0);
        assert_eq!(minutes.len(), 60);
        assert_eq!(minutes.iter().map(|m| m.records).sum::<u64>(), 660);
        assert_eq!(minutes.iter().map(|m| m.rejected).sum::<u64>(), 10);
    }
}
