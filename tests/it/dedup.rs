//! Duplicate records across files (issue 14, part 3): a record whose id an earlier file
//! committed inside `dedup_window_days` is `duplicate_record`, across daemon restarts,
//! and rated again once the window ended.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::common::{read_rejects, Daemon, Ws};
use tollgate::demo::synth::{write_cdrs, CdrBatch, Spec};
use tollgate::ingest::engine::DEDUP_SNAPSHOT;

const SPEC: Spec = Spec {
    seed: 3,
    accounts: 50,
    prefixes: 100,
    bad_ratio_ppm: 0,
};

/// A file of `records` good records of October 2026, ids `<tag>-1`…: its header and lines.
fn lines(records: u64, tag: &str) -> (String, Vec<String>) {
    let mut buf = Vec::new();
    let stats = write_cdrs(
        &mut buf,
        &SPEC,
        &CdrBatch {
            year: 2026,
            month: 10,
            records,
            file_tag: tag.into(),
        },
    )
    .unwrap();
    assert_eq!(stats.bad_total(), 0);
    let text = String::from_utf8(buf).unwrap();
    let mut it = text.lines().map(str::to_owned);
    let header = it.next().unwrap();
    (header, it.collect())
}

fn file(header: &str, rows: &[String]) -> Vec<u8> {
    let mut s = String::from(header);
    for r in rows {
        s.push('\n');
        s.push_str(r);
    }
    s.push('\n');
    s.into_bytes()
}

/// The (line, reason) pairs of a rejects file.
fn rejected(path: &Path) -> Vec<(u64, String)> {
    read_rejects(path)
        .into_iter()
        .map(|(l, r, _)| (l, r))
        .collect()
}

#[test]
fn cross_file_duplicates_are_rejected_across_a_daemon_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Ws::synth(
        &tmp.path().join("ws"),
        &SPEC,
        "poll_interval_ms = 50\ndedup_window_days = 62\n",
    );
    let (header, a) = lines(3000, "A");
    let d = Daemon::start(&ws);
    d.wait_until("/readyz 200", || d.get("/readyz").0 == 200);
    ws.drop_file("a.csv", &file(&header, &a));
    d.wait_until("a.csv done", || ws.done().join("a.csv").exists());
    assert!(!ws.rejects("a.csv").exists());
    assert_eq!(d.stop().code(), Some(0));

    // After a restart (the filter is read back from the snapshot the stopped daemon
    // kept): 1000 new records, 500 re-sent from a.csv, and one new record repeated
    // inside the file.
    assert!(ws.data().join(DEDUP_SNAPSHOT).exists());
    let d = Daemon::start(&ws);
    d.wait_until("/readyz 200", || d.get("/readyz").0 == 200);
    let mut b: Vec<String> = a[..1000]
        .iter()
        .map(|l| l.replacen("A-", "B-", 1))
        .collect();
    b.extend(a[2000..2500].iter().cloned());
    b.push(b[4].clone());
    ws.drop_file("b.csv", &file(&header, &b));
    d.wait_until("b.csv done", || ws.done().join("b.csv").exists());
    let m = d.metrics();
    assert_eq!(
        m.counter("tollgate_records_total", &[("outcome", "rated")]),
        1000.0
    );
    assert_eq!(
        m.counter(
            "tollgate_records_total",
            &[("outcome", "rejected"), ("reason", "duplicate_record")]
        ),
        501.0
    );
    assert!(d
        .log()
        .contains("cross-file duplicate filter read from its snapshot"));
    assert_eq!(d.stop().code(), Some(0));
    let want: Vec<(u64, String)> = (1002..=1502)
        .map(|l| (l, "duplicate_record".to_owned()))
        .collect();
    assert_eq!(rejected(&ws.rejects("b.csv")), want);

    // b.csv's new ids entered the index, its duplicates did not enter it twice; a
    // re-sent id of a.csv that b.csv did not repeat is still held.
    let c = vec![
        b[7].clone(),
        a[2100].clone(),
        a[10].clone(),
        a[2999].replacen("A-", "C-", 1),
    ];
    let path = tmp.path().join("c.csv");
    std::fs::write(&path, file(&header, &c)).unwrap();
    let out = ws.ingest(&[&path]).ok();
    assert!(
        out.stdout
            .contains("committed seq 3: 4 lines, 1 rated, 3 rejected"),
        "{out:#?}"
    );
    assert_eq!(
        rejected(&ws.rejects("c.csv")),
        vec![
            (2, "duplicate_record".into()),
            (3, "duplicate_record".into()),
            (4, "duplicate_record".into())
        ]
    );

    // A quoted record id is the id inside the quotes, in the index and in the check.
    let quoted = |l: &str| {
        let (id, rest) = l.split_once(',').unwrap();
        format!("\"{id}\",{rest}")
    };
    let q_line = a[2998].replacen("A-", "Q-", 1);
    let d = vec![quoted(&a[20]), quoted(&q_line)];
    let path = tmp.path().join("d.csv");
    std::fs::write(&path, file(&header, &d)).unwrap();
    let out = ws.ingest(&[&path]).ok();
    assert!(
        out.stdout
            .contains("committed seq 4: 2 lines, 1 rated, 1 rejected"),
        "{out:#?}"
    );
    let path = tmp.path().join("e.csv");
    std::fs::write(&path, file(&header, &[q_line])).unwrap();
    let out = ws.ingest(&[&path]).ok();
    assert!(
        out.stdout
            .contains("committed seq 5: 1 lines, 0 rated, 1 rejected"),
        "{out:#?}"
    );
}

/// The filter a process keeps for the next one (`data/dedup-filter.snapshot`) is used
/// only while it holds every committed file: one kept before the last commit, a damaged
/// one, or none (a killed daemon took it at start and left nothing) make the next
/// process read the index, and the duplicates are found all the same.
#[test]
fn a_kept_filter_is_used_only_while_it_holds_every_committed_file() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Ws::synth(
        &tmp.path().join("ws"),
        &SPEC,
        "poll_interval_ms = 50\ndedup_window_days = 62\n",
    );
    let (header, a) = lines(2000, "A");
    let snap = ws.data().join(DEDUP_SNAPSHOT);
    let ingest = |name: &str, rows: &[String], want: &str, log: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, file(&header, rows)).unwrap();
        let out = ws.ingest(&[&p]).ok();
        assert!(out.stdout.contains(want), "{name}: {out:#?}");
        assert!(out.stderr.contains(log), "{name}: wanted `{log}`: {out:#?}");
        assert!(snap.exists(), "{name}: no filter kept");
    };
    const BUILT: &str = "cross-file duplicate filter built from the index";
    ingest(
        "a.csv",
        &a[..1000],
        "committed seq 1: 1000 lines, 1000 rated",
        BUILT,
    );
    let kept_after_a = std::fs::read(&snap).unwrap();
    ingest(
        "b.csv",
        &a[1000..],
        "committed seq 2: 1000 lines, 1000 rated",
        "cross-file duplicate filter read from its snapshot",
    );
    // The filter kept after a.csv misses b.csv's ids: refused, the index is read.
    std::fs::write(&snap, &kept_after_a).unwrap();
    let c = [
        a[1000].clone(),
        a[0].clone(),
        a[1999].replacen("A-", "C-", 1),
    ];
    ingest(
        "c.csv",
        &c,
        "committed seq 3: 3 lines, 1 rated, 2 rejected",
        "holds the files up to seq 1, the store has 2",
    );
    assert_eq!(
        rejected(&ws.rejects("c.csv")),
        vec![
            (2, "duplicate_record".to_owned()),
            (3, "duplicate_record".to_owned())
        ]
    );
    // A damaged snapshot fails its checksum.
    let mut damaged = std::fs::read(&snap).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x10;
    std::fs::write(&snap, &damaged).unwrap();
    let d = [a[1500].clone(), a[1998].replacen("A-", "D-", 1)];
    ingest(
        "d.csv",
        &d,
        "committed seq 4: 2 lines, 1 rated, 1 rejected",
        "checksum differs",
    );
    // The daemon takes the snapshot at start; killed after a commit, it leaves none,
    // and the next process reads the index (which holds e.csv's ids).
    let daemon = Daemon::start(&ws);
    daemon.wait_until("/readyz 200", || daemon.get("/readyz").0 == 200);
    assert!(!snap.exists());
    let e_new = a[1997].replacen("A-", "E-", 1);
    ws.drop_file("e.csv", &file(&header, &[e_new.clone(), a[5].clone()]));
    daemon.wait_until("e.csv done", || ws.done().join("e.csv").exists());
    daemon.kill9();
    assert!(!snap.exists());
    ingest(
        "f.csv",
        &[e_new, a[1996].replacen("A-", "F-", 1)],
        "committed seq 6: 2 lines, 1 rated, 1 rejected",
        BUILT,
    );
    assert_eq!(
        rejected(&ws.rejects("f.csv")),
        vec![(2, "duplicate_record".to_owned())]
    );
}

/// Runs one file through an engine at the processing time `now`: (rated, rejected).
fn process(engine: &tollgate::ingest::engine::Engine, path: &Path, now: i64) -> (u64, u64) {
    let name = path.file_name().unwrap().to_str().unwrap();
    match engine.process_at(path, name, false, Arc::new(AtomicBool::new(false)), now) {
        tollgate::ingest::engine::FileResult::Committed(r) => {
            (r.checkpoint.rated, r.checkpoint.lines - r.checkpoint.rated)
        }
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn a_record_resent_after_the_window_is_rated_again() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = Ws::synth(&tmp.path().join("ws"), &SPEC, "dedup_window_days = 3\n");
    let cfg = tollgate::config::Config::load(Path::new(ws.config_arg())).unwrap();
    let engine = tollgate::ingest::engine::Engine::open(cfg).unwrap();
    let (header, a) = lines(200, "A");
    // 2026-11-10T12:00:00Z: a.csv's commit day.
    let t0 = 1_794_312_000i64;
    let day = 86_400;
    let write = |name: &str, rows: &[String]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, file(&header, rows)).unwrap();
        p
    };
    assert_eq!(process(&engine, &write("a.csv", &a), t0), (200, 0));
    // 101 ids of a.csv on the last day of its window: all duplicates.
    let mut b = a[..100].to_vec();
    b.push(a[150].clone());
    let mut b2 = b.clone();
    b2.reverse();
    assert_eq!(
        process(&engine, &write("b.csv", &b), t0 + 2 * day),
        (0, 101)
    );
    // The day after: a.csv's window ended, its ids are rated again (and held anew).
    assert_eq!(
        process(&engine, &write("c.csv", &b2), t0 + 3 * day),
        (101, 0)
    );
    let mut d = b.clone();
    d.push(a[199].clone());
    assert_eq!(
        process(&engine, &write("d.csv", &d), t0 + 3 * day + 1),
        (1, 101)
    );
    // The window is counted from the commit day, not the second: the last second of
    // c.csv's third day still holds its ids, the first of the fourth does not.
    let mut e = b.clone();
    e.push(a[198].clone());
    let c_day_start = (t0 + 3 * day) / day * day;
    assert_eq!(
        process(&engine, &write("e.csv", &e), c_day_start + 3 * day - 1),
        (1, 101)
    );
    let mut f = b.clone();
    f.push(a[197].clone());
    assert_eq!(
        process(&engine, &write("f.csv", &f), c_day_start + 3 * day),
        (102, 0)
    );
}

/// Ids whose window ended leave the in-memory filter when it is read from the index
/// again, `ceil(window / 6)` days after it was read, not before; meanwhile an expired id
/// the filter still holds is asked of the exact check, which rates it.
#[test]
fn the_filter_forgets_expired_ids_when_it_is_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    // A 12-day window: the filter is read again every 2 days.
    let ws = Ws::synth(&tmp.path().join("ws"), &SPEC, "dedup_window_days = 12\n");
    let cfg = tollgate::config::Config::load(Path::new(ws.config_arg())).unwrap();
    let engine = tollgate::ingest::engine::Engine::open(cfg).unwrap();
    let (header, a) = lines(200, "A");
    let (_, b) = lines(100, "B");
    let (_, d) = lines(10, "D");
    let write = |name: &str, rows: &[String]| {
        let p = tmp.path().join(name);
        std::fs::write(&p, file(&header, rows)).unwrap();
        p
    };
    // Day D = 2026-11-10 (noon UTC).
    let t0 = 1_794_312_000i64;
    let day = 86_400;
    assert_eq!(engine.dedup_held(), None);
    assert_eq!(process(&engine, &write("a.csv", &a), t0), (200, 0));
    assert_eq!(engine.dedup_held(), Some(200));
    // D+11, the last day of a.csv's window: the filter (read on D) is stale and read
    // again; a.csv's ids are still in it, and b.csv's join it.
    assert_eq!(
        process(&engine, &write("b.csv", &b), t0 + 11 * day),
        (100, 0)
    );
    assert_eq!(engine.dedup_held(), Some(300));
    // D+12: a.csv's window ended. The filter, read on D+11, still holds its ids: the
    // exact check is asked and answers "not a duplicate".
    assert_eq!(
        process(&engine, &write("c.csv", &a[..50]), t0 + 12 * day),
        (50, 0)
    );
    assert_eq!(engine.dedup_held(), Some(350));
    // D+13: read again from the index (the window now starts on D+2): a.csv's ids leave,
    // b.csv's and c.csv's stay, d.csv's join.
    assert_eq!(
        process(&engine, &write("d.csv", &d), t0 + 13 * day),
        (10, 0)
    );
    assert_eq!(engine.dedup_held(), Some(160));
    // The ids c.csv sent again are duplicates still; a.csv's others are not.
    let mut e = a[..5].to_vec();
    e.extend_from_slice(&a[100..105]);
    assert_eq!(
        process(&engine, &write("e.csv", &e), t0 + 13 * day + 60),
        (5, 5)
    );
}
