//! Golden tests: one or more per rating rule, with hand-computed expectations.
//!
//! The fixture tariff (tests/fixtures/golden; Europe/Amsterdam; CEST = UTC+2 until
//! 2026-10-25 03:00 local, CET = UTC+1 after; CET before 2026-03-29 02:00 local):
//!
//! basic (fallback standard)                      standard
//!   31  Netherlands Fixed   peak 0.01+0.06/min 60/60      44  United Kingdom        any 0.015+0.20/min 1/1
//!   31  Netherlands Fixed   offpeak   0.03/min 60/60      447 United Kingdom Mobile any 0.30/min 60/1
//!   316 Netherlands Mobile  holiday   0.01/min 30/6
//!   316 Netherlands Mobile  peak      0.10/min 30/6
//!   316 Netherlands Mobile  peak      0.08/min 30/6 from 2026-10-15
//!   316 Netherlands Mobile  any       0.05/min 30/6
//!   sms  SMS           any 0.09 per message
//!   data Mobile data   any 0.01 per MiB, 1024/1024

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tollgate::ingest::pipeline::{Pool, Settings};
use tollgate::rate::accounts::{AccountIndex, Accounts};
use tollgate::rate::cdr::Layout;
use tollgate::rate::rating::{band_name, month_label, Rater};
use tollgate::rate::tariff::Tariff;

const PLANS: &str = include_str!("../fixtures/golden/plans.toml");

const BASIC: &str = include_str!("../fixtures/golden/basic.csv");

const STANDARD: &str = include_str!("../fixtures/golden/standard.csv");

const HEADER: &str =
    "record_id,account_id,service,calling_number,called_number,start_time,duration_s,volume_bytes";

struct Fixture {
    _dir: tempfile::TempDir,
    tariff: Arc<Tariff>,
    index: Arc<AccountIndex>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("tariffs/decks")).unwrap();
    std::fs::write(p.join("tariffs/plans.toml"), PLANS).unwrap();
    std::fs::write(p.join("tariffs/decks/basic.csv"), BASIC).unwrap();
    std::fs::write(p.join("tariffs/decks/standard.csv"), STANDARD).unwrap();
    std::fs::write(
        p.join("accounts.csv"),
        "account_id,plan\nA1,basic\nS1,standard\n",
    )
    .unwrap();
    let tariff = Arc::new(Tariff::load(&p.join("tariffs/plans.toml"), &p.join("data")).unwrap());
    let accounts = Accounts::load(&p.join("accounts.csv")).unwrap();
    let index = Arc::new(AccountIndex::build(&accounts, &tariff).unwrap());
    Fixture {
        _dir: dir,
        tariff,
        index,
    }
}

/// Rates one record; Ok((month, destination, band, billed, charge micros)) or the reason code.
fn rate(f: &Fixture, line: &str) -> Result<(String, String, String, u64, i64), &'static str> {
    let layout = Layout::from_header(HEADER.as_bytes()).unwrap();
    // "now" is fixed: 2026-11-26T12:00:00Z.
    let mut r = Rater::new(&f.tariff, &f.index, layout, 1_795_694_400);
    match r.rate_line(line.as_bytes()) {
        Ok((rated, _)) => {
            let t = f.tariff.table();
            let row = &t.rows[rated.row as usize];
            Ok((
                month_label(rated.month),
                t.destinations[row.destination.to_native() as usize].to_string(),
                band_name(&f.tariff, row.band).to_string(),
                rated.billed,
                rated.charge_micros,
            ))
        }
        Err(reason) => Err(reason.code()),
    }
}

fn voice(account: &str, to: &str, at: &str, secs: &str) -> String {
    format!("r1,{account},voice,+31612345678,{to},{at},{secs},")
}

fn ok(
    month: &str,
    dest: &str,
    band: &str,
    billed: u64,
    micros: i64,
) -> Result<(String, String, String, u64, i64), &'static str> {
    Ok((month.into(), dest.into(), band.into(), billed, micros))
}

#[test]
fn band_priority_holiday_beats_peak() {
    let f = fixture();
    // Monday 2026-10-05 10:00 CEST: holiday, peak and offpeak are all active; holiday wins.
    // 31 s at 30/6 -> 36 s; 0.01/min * 36/60 = 0.006
    assert_eq!(
        rate(&f, &voice("A1", "0612345678", "2026-10-05T08:00:00Z", "31")),
        ok("2026-10", "Netherlands Mobile", "holiday", 36, 6_000)
    );
    // 31 has no holiday row: the next active band in priority order, peak, prices it:
    // 0.01 connect + 60 s * 0.06/min = 0.07
    assert_eq!(
        rate(&f, &voice("A1", "0201234567", "2026-10-05T08:00:00Z", "60")),
        ok("2026-10", "Netherlands Fixed", "peak", 60, 70_000)
    );
}

#[test]
fn peak_window_and_weekend() {
    let f = fixture();
    // Tuesday 10:00 CEST: peak (0.10, the 2026-10-15 row is not valid yet): 36 s -> 0.06
    assert_eq!(
        rate(&f, &voice("A1", "0612345678", "2026-10-06T08:00:00Z", "31")),
        ok("2026-10", "Netherlands Mobile", "peak", 36, 60_000)
    );
    // Tuesday 19:00 CEST exactly: to is exclusive -> `any` row 0.05: 0.03
    assert_eq!(
        rate(&f, &voice("A1", "0612345678", "2026-10-06T17:00:00Z", "31")),
        ok("2026-10", "Netherlands Mobile", "any", 36, 30_000)
    );
    // Tuesday 08:00 CEST exactly: from is inclusive -> peak
    assert_eq!(
        rate(&f, &voice("A1", "0612345678", "2026-10-06T06:00:00Z", "31")),
        ok("2026-10", "Netherlands Mobile", "peak", 36, 60_000)
    );
    // Saturday 10:00: only offpeak is active; 316 has no offpeak row -> `any`
    assert_eq!(
        rate(&f, &voice("A1", "0612345678", "2026-10-10T08:00:00Z", "31")),
        ok("2026-10", "Netherlands Mobile", "any", 36, 30_000)
    );
    // Fixed line on Saturday: offpeak row 0.03/min, 60/60: 61 s -> 120 s -> 0.06
    assert_eq!(
        rate(&f, &voice("A1", "0201234567", "2026-10-10T08:00:00Z", "61")),
        ok("2026-10", "Netherlands Fixed", "offpeak", 120, 60_000)
    );
}

#[test]
fn valid_from_picks_the_latest_applicable_row() {
    let f = fixture();
    // Thursday 2026-10-15 10:00 CEST: both peak rows apply; the later valid_from (0.08) wins: 0.048
    assert_eq!(
        rate(&f, &voice("A1", "0612345678", "2026-10-15T08:00:00Z", "31")),
        ok("2026-10", "Netherlands Mobile", "peak", 36, 48_000)
    );
    // Wednesday 2026-10-14 18:30 CEST: the 2026-10-15 row does not apply yet: 0.06
    assert_eq!(
        rate(&f, &voice("A1", "0612345678", "2026-10-14T16:30:00Z", "31")),
        ok("2026-10", "Netherlands Mobile", "peak", 36, 60_000)
    );
    // valid_from is a LOCAL date: 2026-10-15T05:59:00Z is 07:59 CEST (not peak yet) ...
    assert_eq!(
        rate(&f, &voice("A1", "0612345678", "2026-10-15T05:59:00Z", "31")),
        ok("2026-10", "Netherlands Mobile", "any", 36, 30_000)
    );
    // ... and 2026-10-15T06:00:00Z is 08:00 CEST on the 15th: the new peak row.
    assert_eq!(
        rate(&f, &voice("A1", "0612345678", "2026-10-15T06:00:00Z", "31")),
        ok("2026-10", "Netherlands Mobile", "peak", 36, 48_000)
    );
}

#[test]
fn dst_days_use_the_local_offset() {
    let f = fixture();
    // Friday 2026-03-27 07:30Z = 08:30 CET: peak. 0.01 + 0.06 = 0.07
    assert_eq!(
        rate(&f, &voice("A1", "0201234567", "2026-03-27T07:30:00Z", "60")),
        ok("2026-03", "Netherlands Fixed", "peak", 60, 70_000)
    );
    // Monday 2026-03-30 06:30Z = 08:30 CEST (after the spring change): peak
    assert_eq!(
        rate(&f, &voice("A1", "0201234567", "2026-03-30T06:30:00Z", "60")),
        ok("2026-03", "Netherlands Fixed", "peak", 60, 70_000)
    );
    // Monday 2026-03-30 05:30Z = 07:30 CEST: offpeak 0.03
    assert_eq!(
        rate(&f, &voice("A1", "0201234567", "2026-03-30T05:30:00Z", "60")),
        ok("2026-03", "Netherlands Fixed", "offpeak", 60, 30_000)
    );
    // Monday 2026-10-26 07:30Z = 08:30 CET (after the autumn change): peak
    assert_eq!(
        rate(&f, &voice("A1", "0201234567", "2026-10-26T07:30:00Z", "60")),
        ok("2026-10", "Netherlands Fixed", "peak", 60, 70_000)
    );
    // Monday 2026-10-26 06:30Z = 07:30 CET: offpeak
    assert_eq!(
        rate(&f, &voice("A1", "0201234567", "2026-10-26T06:30:00Z", "60")),
        ok("2026-10", "Netherlands Fixed", "offpeak", 60, 30_000)
    );
    // Offsets in the record are honoured: 08:30+02:00 on 2026-10-26 is 06:30Z = 07:30 CET: offpeak
    assert_eq!(
        rate(
            &f,
            &voice("A1", "0201234567", "2026-10-26T08:30:00+02:00", "60")
        ),
        ok("2026-10", "Netherlands Fixed", "offpeak", 60, 30_000)
    );
}

#[test]
fn month_is_the_local_calendar_month() {
    let f = fixture();
    // 2026-10-31T23:30:00Z is 2026-11-01 00:30 CET: November.
    assert_eq!(
        rate(&f, &voice("A1", "0201234567", "2026-10-31T23:30:00Z", "60"))
            .unwrap()
            .0,
        "2026-11"
    );
    // 2026-10-31T22:30:00Z is 23:30 CET on October 31.
    assert_eq!(
        rate(&f, &voice("A1", "0201234567", "2026-10-31T22:30:00Z", "60"))
            .unwrap()
            .0,
        "2026-10"
    );
    // 2026-09-30T22:30:00Z is 2026-10-01 00:30 CEST: October.
    assert_eq!(
        rate(&f, &voice("A1", "0201234567", "2026-09-30T22:30:00Z", "60"))
            .unwrap()
            .0,
        "2026-10"
    );
}

#[test]
fn fallback_plan_and_longest_prefix() {
    let f = fixture();
    // basic has no 44 rows: standard prices it. 447 beats 44; 60/1: 61 s -> 61 s; 0.30 * 61/60 = 0.305
    assert_eq!(
        rate(
            &f,
            &voice("A1", "+447700900123", "2026-10-06T08:00:00Z", "61")
        ),
        ok("2026-10", "United Kingdom Mobile", "any", 61, 305_000)
    );
    // 441...: the 44 row, 1/1: 0.015 + 0.20 * 61/60 = 0.2183333.. -> 0.218333
    assert_eq!(
        rate(
            &f,
            &voice("A1", "00441234567890", "2026-10-06T08:00:00Z", "61")
        ),
        ok("2026-10", "United Kingdom", "any", 61, 218_333)
    );
    // 60/1 with 10 s: the first increment is billed in full: 60 s -> 0.30
    assert_eq!(
        rate(
            &f,
            &voice("A1", "+447700900123", "2026-10-06T08:00:00Z", "10")
        ),
        ok("2026-10", "United Kingdom Mobile", "any", 60, 300_000)
    );
    // standard has no fallback and no 31 rows: no_rate
    assert_eq!(
        rate(&f, &voice("S1", "0612345678", "2026-10-06T08:00:00Z", "10")),
        Err("no_rate")
    );
}

#[test]
fn increments_zero_usage_sms_and_data() {
    let f = fixture();
    // 30/6: 30 s -> 30, 36 s -> 36, 37 s -> 42. Saturday (`any` 0.05/min).
    assert_eq!(
        rate(&f, &voice("A1", "0612345678", "2026-10-10T08:00:00Z", "30"))
            .unwrap()
            .3,
        30
    );
    assert_eq!(
        rate(&f, &voice("A1", "0612345678", "2026-10-10T08:00:00Z", "36"))
            .unwrap()
            .3,
        36
    );
    assert_eq!(
        rate(&f, &voice("A1", "0612345678", "2026-10-10T08:00:00Z", "37")),
        ok("2026-10", "Netherlands Mobile", "any", 42, 35_000)
    );
    // Zero usage costs nothing, not even the connect fee (peak fixed has 0.01 connect).
    assert_eq!(
        rate(&f, &voice("A1", "0201234567", "2026-10-06T08:00:00Z", "0")),
        ok("2026-10", "Netherlands Fixed", "peak", 0, 0)
    );
    // sms: one message, 0.09; duration and volume are ignored.
    assert_eq!(
        rate(
            &f,
            "r,A1,sms,+31612345678,0612345678,2026-10-06T08:00:00Z,,"
        ),
        ok("2026-10", "SMS", "any", 1, 90_000)
    );
    // data: 1 500 000 bytes at 1024/1024 -> 1 500 160 bytes; 0.01 per MiB -> 0.01430664.. -> 0.014307
    assert_eq!(
        rate(&f, "r,A1,data,+31612345678,,2026-10-06T08:00:00Z,,1500000"),
        ok("2026-10", "Mobile data", "any", 1_500_160, 14_307)
    );
    // data: 1 byte -> first increment 1024 bytes: 0.01 * 1024 / 1048576 = 0.00000976.. -> 0.000010
    assert_eq!(
        rate(&f, "r,A1,data,+31612345678,,2026-10-06T08:00:00Z,,1"),
        ok("2026-10", "Mobile data", "any", 1024, 10)
    );
}

#[test]
fn number_normalization_forms() {
    let f = fixture();
    let at = "2026-10-10T08:00:00Z";
    for to in ["+31612345678", "0031612345678", "0612345678", "31612345678"] {
        assert_eq!(
            rate(&f, &voice("A1", to, at, "30")).unwrap().1,
            "Netherlands Mobile",
            "{to}"
        );
    }
    for to in ["12ab34", "+", "+31 6", "", "06-1234"] {
        assert_eq!(
            rate(&f, &voice("A1", to, at, "30")),
            Err("bad_number"),
            "{to:?}"
        );
    }
    // A short code is taken as is: "112" matches no prefix here.
    assert_eq!(rate(&f, &voice("A1", "112", at, "30")), Err("no_rate"));
}

#[test]
fn every_reject_reason_in_check_order() {
    let f = fixture();
    let at = "2026-10-06T08:00:00Z";
    assert_eq!(
        rate(
            &f,
            "r1,A1,voice,+31612345678,0612345678,2026-10-06T08:00:00Z,30"
        ),
        Err("malformed")
    );
    assert_eq!(
        rate(
            &f,
            "r1,A1,voice,\"+31612345678,0612345678,2026-10-06T08:00:00Z,30,"
        ),
        Err("malformed")
    );
    assert_eq!(
        rate(&f, &format!("r1,A1,fax,+316,0612345678,{at},30,")),
        Err("unknown_service")
    );
    assert_eq!(
        rate(&f, "r1,A1,voice,+316,0612345678,yesterday,30,"),
        Err("bad_time")
    );
    assert_eq!(
        rate(&f, "r1,A1,voice,+316,0612345678,2026-10-06T08:00:00,30,"),
        Err("bad_time")
    );
    // More than 24 h after "now" (2026-11-26T12:00Z) is future; exactly 24 h is not.
    assert_eq!(
        rate(&f, "r1,A1,voice,+316,0612345678,2026-11-27T12:00:01Z,30,"),
        Err("future_time")
    );
    assert_eq!(
        rate(&f, "r1,A1,voice,+316,0612345678,2026-11-27T12:00:00Z,30,").map(|r| r.3),
        Ok(30)
    );
    for usage in ["-5", "abc", "", "1.5", " 30"] {
        assert_eq!(
            rate(&f, &format!("r1,A1,voice,+316,0612345678,{at},{usage},")),
            Err("bad_usage"),
            "{usage:?}"
        );
    }
    assert_eq!(
        rate(&f, &format!("r1,A1,data,+316,,{at},,")),
        Err("bad_usage")
    );
    assert_eq!(
        rate(&f, &format!("r1,NOPE,voice,+316,0612345678,{at},30,")),
        Err("unknown_account")
    );
    assert_eq!(
        rate(&f, &format!("r1,A1,voice,+316,06x,{at},30,")),
        Err("bad_number")
    );
    assert_eq!(
        rate(&f, &format!("r1,S1,voice,+316,0612345678,{at},30,")),
        Err("no_rate")
    );
    // Order: each line has two defects; the earlier check names it.
    assert_eq!(
        rate(&f, "r1,A1,fax,+316,0612345678,yesterday,30,"),
        Err("unknown_service")
    );
    assert_eq!(
        rate(&f, "r1,A1,voice,+316,0612345678,yesterday,-1,"),
        Err("bad_time")
    );
    assert_eq!(
        rate(&f, &format!("r1,NOPE,voice,+316,0612345678,{at},-1,")),
        Err("bad_usage")
    );
    assert_eq!(
        rate(&f, &format!("r1,NOPE,voice,+316,06x,{at},30,")),
        Err("unknown_account")
    );
    assert_eq!(
        rate(&f, &format!("r1,S1,voice,+316,06x,{at},30,")),
        Err("bad_number")
    );
    // Quoted fields are unquoted before checks.
    assert_eq!(
        rate(
            &f,
            &format!("\"r1\",\"A1\",\"voice\",\"+316\",\"0612345678\",\"{at}\",\"31\",\"\"")
        )
        .map(|r| r.4),
        Ok(60_000)
    );
}

fn rate_file(
    f: &Fixture,
    text: &str,
    chunk_bytes: usize,
) -> tollgate::ingest::pipeline::FileOutcome {
    let pool = Pool::new(2);
    pool.rate_file(
        Arc::new(text.as_bytes().to_vec()),
        f.tariff.clone(),
        f.index.clone(),
        &Settings {
            columns: None,
            chunk_bytes,
            max_line_bytes: 1024,
            // Two chunks per segment: small chunks also exercise several segments.
            segment_bytes: 2 * chunk_bytes,
        },
        1_795_694_400,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap()
}

#[test]
fn duplicate_records_across_chunks_are_rejected_once() {
    let f = fixture();
    let mut text = format!("{HEADER}\n");
    for i in 0..400 {
        text.push_str(&format!(
            "id{i},A1,sms,+316,0612345678,2026-10-06T08:00:00Z,,\n"
        ));
    }
    // line 402: a repeat of id7 (far away, in another chunk); line 403: a rejected row with
    // an id seen before is not a duplicate (bad_time wins); line 404: id7 again.
    text.push_str("id7,A1,sms,+316,0612345678,2026-10-06T08:00:00Z,,\n");
    text.push_str("id8,A1,sms,+316,0612345678,never,,\n");
    text.push_str("id7,A1,sms,+316,0612345678,2026-10-06T08:00:00Z,,\n");
    for chunk in [4096, 1 << 20] {
        let o = rate_file(&f, &text, chunk);
        assert_eq!(o.lines, 403);
        assert_eq!(o.rated, 400);
        let rejects: Vec<(u64, &str)> = o
            .rejects
            .iter()
            .map(|r| (r.line, r.reason.code()))
            .collect();
        assert_eq!(
            rejects,
            vec![
                (402, "duplicate_record"),
                (403, "bad_time"),
                (404, "duplicate_record")
            ]
        );
        // 400 sms at 0.09 = 36.00
        assert_eq!(o.charge_micros, 36_000_000);
        let total: u64 = o.totals.iter().map(|e| e.1.count).sum();
        assert_eq!(total, 400);
    }
}

/// Duplicates are found where the id spill says their lines start, and numbered from
/// a mark every 64 lines of a chunk: blank lines, CRLF endings and repeats far apart in
/// chunks of any size give the line numbers a naive count gives.
#[test]
fn duplicate_line_numbers_hold_across_blank_lines_crlf_and_chunks() {
    let f = fixture();
    let mut text = format!("{HEADER}\n");
    let mut expected = Vec::new();
    let mut line = 1u64;
    let mut seen = std::collections::HashSet::new();
    let mut x = 0x9e37_79b9_u64;
    for i in 0..3000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(11) {
            text.push_str(if x.is_multiple_of(2) { "\n" } else { "\r\n" });
            line += 1;
        }
        // Every 7th record repeats an id from up to 500 records before.
        let id = if i % 7 == 3 && i > 0 {
            i - 1 - (x % i.min(500))
        } else {
            i
        };
        let end = if x.is_multiple_of(3) { "\r\n" } else { "\n" };
        text.push_str(&format!(
            "id{id},A1,sms,+316,0612345678,2026-10-06T08:00:00Z,,{end}"
        ));
        line += 1;
        if !seen.insert(id) {
            expected.push((line, "duplicate_record"));
        }
    }
    assert!(expected.len() > 300, "{} duplicates", expected.len());
    for chunk in [4096, 20_000, 1 << 20] {
        let o = rate_file(&f, &text, chunk);
        let rejects: Vec<(u64, &str)> = o
            .rejects
            .iter()
            .map(|r| (r.line, r.reason.code()))
            .collect();
        assert_eq!(rejects, expected, "chunk {chunk}");
        assert_eq!(o.rated, seen.len() as u64);
    }
}

/// A line over max_line_bytes is malformed even when it would rate, so its record id
/// does not make a later line with the same id a duplicate.
#[test]
fn an_over_long_line_never_takes_part_in_the_duplicate_check() {
    let f = fixture();
    let calling = "3".repeat(1100);
    let text = format!(
        "{HEADER}\nid1,A1,sms,{calling},0612345678,2026-10-06T08:00:00Z,,\nid1,A1,sms,+316,0612345678,2026-10-06T08:00:00Z,,\nid1,A1,sms,+316,0612345678,2026-10-06T08:00:00Z,,\n"
    );
    for chunk in [4096, 1 << 20] {
        let o = rate_file(&f, &text, chunk);
        let rejects: Vec<(u64, &str)> = o
            .rejects
            .iter()
            .map(|r| (r.line, r.reason.code()))
            .collect();
        assert_eq!(rejects, vec![(2, "malformed"), (4, "duplicate_record")]);
        assert_eq!((o.lines, o.rated), (3, 1));
        // one sms at 0.09
        assert_eq!(o.charge_micros, 90_000);
    }
}

#[test]
fn file_level_edge_cases() {
    let f = fixture();
    // Header only, empty file, CRLF, a truncated last line, a line over max_line_bytes.
    assert_eq!(rate_file(&f, &format!("{HEADER}\n"), 4096).lines, 0);
    assert_eq!(rate_file(&f, "", 4096).lines, 0);
    let long = "x".repeat(5000);
    let text = format!(
        "{HEADER}\r\nid1,A1,sms,+316,0612345678,2026-10-06T08:00:00Z,,\r\n{long}\nid2,A1,sms,+316,0612345678,2026-10-06T08:00:00Z,,\nid3,A1,sms,+316,0612345678,2026-10-06T08:0"
    );
    let o = rate_file(&f, &text, 4096);
    assert_eq!(o.lines, 4);
    assert_eq!(o.rated, 2);
    let rejects: Vec<(u64, &str)> = o
        .rejects
        .iter()
        .map(|r| (r.line, r.reason.code()))
        .collect();
    assert_eq!(rejects, vec![(3, "malformed"), (5, "malformed")]);
    // Blank lines are not records: skipped without a reject, but line numbers stay physical.
    let text = format!(
        "{HEADER}\n\nid1,A1,sms,+316,0612345678,2026-10-06T08:00:00Z,,\n\r\nid2,A1,fax,+316,0612345678,2026-10-06T08:00:00Z,,\n\n"
    );
    let o = rate_file(&f, &text, 4096);
    assert_eq!((o.lines, o.rated), (2, 1));
    let rejects: Vec<(u64, &str)> = o
        .rejects
        .iter()
        .map(|r| (r.line, r.reason.code()))
        .collect();
    assert_eq!(rejects, vec![(5, "unknown_service")]);
    // Binary garbage is rejected line by line, never fatal.
    let mut garbage = format!("{HEADER}\n").into_bytes();
    garbage.extend((0..3000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    let pool = Pool::new(1);
    let o = pool
        .rate_file(
            Arc::new(garbage),
            f.tariff.clone(),
            f.index.clone(),
            &Settings {
                columns: None,
                chunk_bytes: 4096,
                max_line_bytes: 1024,
                segment_bytes: tollgate::ingest::pipeline::SEGMENT_BYTES,
            },
            1_795_694_400,
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
    assert_eq!(o.rated, 0);
    assert_eq!(o.rejects.len() as u64, o.lines);
    // A header lacking a column fails the file.
    let e = pool
        .rate_file(
            Arc::new(b"record_id,account_id\n1,A1\n".to_vec()),
            f.tariff.clone(),
            f.index.clone(),
            &Settings {
                columns: None,
                chunk_bytes: 4096,
                max_line_bytes: 1024,
                segment_bytes: tollgate::ingest::pipeline::SEGMENT_BYTES,
            },
            1_795_694_400,
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap_err();
    assert_eq!(e.to_string(), "bad header: header lacks column `service`");
}

#[test]
fn headerless_files_use_configured_columns() {
    let f = fixture();
    let cols = tollgate::rate::cdr::columns_from_names(
        [
            "account_id",
            "_",
            "record_id",
            "service",
            "calling_number",
            "called_number",
            "start_time",
            "duration_s",
            "volume_bytes",
        ]
        .into_iter(),
    )
    .unwrap();
    let pool = Pool::new(1);
    let o = pool
        .rate_file(
            Arc::new(b"A1,ignored,r1,sms,+316,0612345678,2026-10-06T08:00:00Z,,\n".to_vec()),
            f.tariff.clone(),
            f.index.clone(),
            &Settings {
                columns: Some(cols),
                chunk_bytes: 4096,
                max_line_bytes: 1024,
                segment_bytes: tollgate::ingest::pipeline::SEGMENT_BYTES,
            },
            1_795_694_400,
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
    assert_eq!((o.lines, o.rated, o.charge_micros), (1, 1, 90_000));
}

#[test]
fn tariff_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("decks")).unwrap();
    std::fs::write(
        p.join("plans.toml"),
        PLANS.replace("decks/standard.csv", "decks/basic.csv"),
    )
    .unwrap();
    let bad = BASIC.replace(
        "316,Netherlands Mobile,voice,any,0,0.0500",
        "316,Netherlands Mobile,voice,any,0,0.05x0",
    );
    std::fs::write(p.join("decks/basic.csv"), bad).unwrap();
    let e = tollgate::rate::tariff::Source::load(&p.join("plans.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("decks/basic.csv:7:6: column `rate`: `0.05x0` is not a decimal number"),
        "{e}"
    );
    std::fs::write(
        p.join("decks/basic.csv"),
        BASIC.replace("holiday,0,0.0100", "weekend,0,0.0100"),
    )
    .unwrap();
    let e = tollgate::rate::tariff::Source::load(&p.join("plans.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.ends_with("decks/basic.csv:4:4: column `band`: `weekend` is not a band of the plans file nor `any`"), "{e}");
    std::fs::write(
        p.join("plans.toml"),
        PLANS.replace("fallback = \"standard\"", "fallback = \"gold\""),
    )
    .unwrap();
    let e = tollgate::rate::tariff::Source::load(&p.join("plans.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("plan `basic`: key `fallback`: no plan `gold`"),
        "{e}"
    );
}

/// The cross-file filter grows when a file's ids would fill it (called once, with the
/// ids held and the file's rated ids, counted exactly); every id of the file is then in
/// the grown filter and in the file's index values (kept by the workers, quoted ids
/// unquoted), and the next file's re-sent ids are asked of the exact check, which alone
/// decides.
#[test]
fn cross_file_filter_grows_for_a_file_and_holds_all_its_ids() {
    use std::sync::Mutex;
    use tollgate::ingest::dedup::Filter;
    use tollgate::ingest::pipeline::Cross;
    use tollgate::store::decode_index_value as decode_value;
    let f = fixture();
    let line = |i: u32| {
        let id = if i.is_multiple_of(7) {
            format!("\"id{i}\"")
        } else {
            format!("id{i}")
        };
        format!("{id},A1,sms,+316,0612345678,2026-10-06T08:00:00Z,,\n")
    };
    let mut first = format!("{HEADER}\n");
    for i in 0..5000 {
        first.push_str(&line(i));
    }
    // One bad row: rejected, so not counted among the ids to add.
    first.push_str("bad,A1,sms,+316,0612345678,never,,\n");
    let settings = Settings {
        columns: None,
        chunk_bytes: 4096,
        max_line_bytes: 1024,
        segment_bytes: 4 * 4096,
    };
    let pool = Pool::new(2);
    let mut filter = Filter::new(64, 62);
    let grown: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());
    let grow = |held: u64, adding: u64| {
        grown.lock().unwrap().push((held, adding));
        Ok(Filter::new((held + adding) * 2, 62))
    };
    let asked: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());
    let exact = |ids: &[&[u8]]| {
        asked.lock().unwrap().extend(ids.iter().map(|i| i.to_vec()));
        // Earlier files hold id3 and id14 only (the filter's other "maybe"s are not).
        Ok(ids.iter().map(|i| *i == b"id3" || *i == b"id14").collect())
    };
    let run = |text: &str, filter: &mut Filter| {
        pool.rate_file_with(
            Arc::new(text.as_bytes().to_vec()),
            f.tariff.clone(),
            f.index.clone(),
            &settings,
            1_795_694_400,
            Arc::new(AtomicBool::new(false)),
            Some(Cross {
                filter,
                exact: &exact,
                grow: &grow,
            }),
        )
        .unwrap()
    };
    // What the engine does while a file commits: its sorted hashes join the filter.
    let commit = |index: &tollgate::ingest::dedup::FileIndex, filter: &mut Filter| {
        for part in &index.filter_adds {
            filter.add_sorted(part);
        }
    };
    let o = run(&first, &mut filter);
    assert_eq!((o.rated, o.rejects.len()), (5000, 1));
    assert_eq!(*grown.lock().unwrap(), vec![(0, 5000)]);
    // Rating only probes; the ids are added at the commit.
    assert_eq!(filter.len(), 0);
    let index = o.index.unwrap();
    commit(&index, &mut filter);
    assert_eq!(filter.len(), 5000);
    let mut indexed: Vec<Vec<u8>> = Vec::new();
    assert_eq!(index.ids, 5000);
    for part in &index.parts {
        for &(_, s, e) in &part.chunks {
            indexed.extend(decode_value(&part.buf[s..e]).unwrap());
        }
    }
    indexed.sort();
    let mut want: Vec<Vec<u8>> = (0..5000).map(|i| format!("id{i}").into_bytes()).collect();
    want.sort();
    assert_eq!(indexed, want);
    for id in &want {
        assert!(filter.contains(xxhash_rust::xxh3::xxh3_64(id)));
    }
    // The ids of the first file were not asked (none was in the filter before it).
    assert!(asked.lock().unwrap().is_empty());

    // A second file: ids 0..40 again, 40 new ones; room enough now, no growth.
    let mut second = format!("{HEADER}\n");
    for i in (0..40).chain(10_000..10_040) {
        second.push_str(&line(i));
    }
    let o = run(&second, &mut filter);
    assert_eq!(grown.lock().unwrap().len(), 1);
    let mut asked = asked.lock().unwrap().clone();
    asked.sort();
    let resent: Vec<Vec<u8>> = (0..40).map(|i| format!("id{i}").into_bytes()).collect();
    assert!(resent.iter().all(|id| asked.contains(id)), "{asked:?}");
    assert_eq!(o.cross_duplicates, vec![5, 16]);
    assert_eq!(o.rated, 78);
    // Every rated id joins the filter at the commit, the two duplicates too (a second
    // copy only makes a later "maybe", never a reject).
    commit(&o.index.unwrap(), &mut filter);
    assert_eq!(filter.len(), 5080);
}
