//! Crash safety of the real binary: a daemon killed (SIGKILL) or stopped (SIGINT) in the
//! middle of a big file must, after a restart, bill exactly what a clean `ingest` of the
//! same file bills: nothing lost, nothing counted twice.
//!
//! The kill moment is random; set `TOLLGATE_CRASH_SEED` to replay a run (the seed is
//! printed).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{usage_sums, Daemon, Ws};
use tollgate::demo::synth::{write_cdrs, BatchStats, CdrBatch, Spec, SplitMix64};

const EXTRA: &str = "chunk_bytes = 65536\npoll_interval_ms = 50\ndedup_window_days = 62\n";
const PERIOD: &str = "2026-10";
const ISSUE: &str = "2026-11-01";

/// What a clean run produced.
struct Control {
    src: PathBuf,
    name: String,
    stats: BatchStats,
    /// Processing time of the file in the control `ingest` (rating + commit).
    seconds: f64,
    invoices: Vec<(String, Vec<u8>)>,
    rejects: Vec<u8>,
}

fn seed() -> u64 {
    match std::env::var("TOLLGATE_CRASH_SEED") {
        Ok(s) => s.parse().expect("TOLLGATE_CRASH_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    }
}

/// Writes the CDR file, ingests it into a fresh workspace and closes the period.
fn control(tmp: &Path, spec: &Spec, records: u64, name: &str) -> Control {
    let src = tmp.join(name);
    let stats = {
        let f = fs::File::create(&src).unwrap();
        let mut w = std::io::BufWriter::new(f);
        write_cdrs(
            &mut w,
            spec,
            &CdrBatch {
                year: 2026,
                month: 10,
                records,
                file_tag: "crash".into(),
            },
        )
        .unwrap()
    };
    let ws = Ws::synth(&tmp.join("control"), spec, EXTRA);
    let out = common::run(&[
        "ingest",
        "--stats",
        "--config",
        ws.config_arg(),
        src.to_str().unwrap(),
    ])
    .ok();
    let stats_line: serde_json::Value = out
        .stdout
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no --stats line: {out:#?}"));
    let seconds = stats_line["seconds"].as_f64().expect("stats seconds");
    assert!(
        out.stdout.contains(&format!(
            "committed seq 1: {} lines, {} rated, {} rejected",
            stats.lines,
            stats.good(),
            stats.bad_total()
        )),
        "{out:#?}\nexpected {}",
        stats.to_json()
    );
    ws.close(PERIOD, ISSUE).ok();
    let invoices = ws.invoice_bytes(PERIOD);
    assert_eq!(
        invoices.iter().filter(|f| f.0.ends_with(".json")).count(),
        spec.accounts,
        "one invoice per account"
    );
    assert_eq!(
        invoices.len(),
        3 * spec.accounts,
        "JSON, UBL and PDF per invoice"
    );
    Control {
        src,
        name: name.to_owned(),
        stats,
        seconds,
        invoices,
        rejects: fs::read(ws.rejects(name)).expect("control rejects"),
    }
}

/// How a killed run's file was recovered.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Recovery {
    /// Left in work/ uncommitted: rated again from scratch at the restart.
    Rerated,
    /// Committed but still in work/: moved to done/ without counting it again.
    AlreadyCommitted,
    /// Already in done/ when killed: nothing to do.
    NothingLeft,
}

/// Restarts the daemon on a workspace whose previous daemon died mid-file, waits for
/// recovery, checks the spool, the metrics and the bill against the control.
fn restart_and_compare(ws: &Ws, c: &Control, label: &str) -> Recovery {
    let in_work = ws.work().join(&c.name).exists();
    let in_done = ws.done().join(&c.name).exists();
    assert!(
        in_work ^ in_done,
        "{label}: the file must be in exactly one of work/ ({in_work}) and done/ ({in_done}); spool: inbox {:?} work {:?} done {:?} failed {:?}",
        ws.names("inbox"),
        ws.names("work"),
        ws.names("done"),
        ws.names("failed")
    );
    assert_eq!(ws.names("failed"), Vec::<String>::new(), "{label}");

    let d = Daemon::start(ws);
    d.wait_until("/readyz 200", || d.get("/readyz").0 == 200);
    // Ready means recovered: nothing left in work/.
    assert_eq!(
        ws.names("work"),
        Vec::<String>::new(),
        "{label}: ready before work/ was recovered"
    );
    assert_eq!(ws.names("done"), [c.name.as_str()], "{label}");
    assert_eq!(ws.names("inbox"), Vec::<String>::new(), "{label}");
    assert_eq!(
        ws.names("failed"),
        Vec::<String>::new(),
        "{label}: {}",
        d.log()
    );

    let log = d.log();
    let m = d.metrics();
    let recovery = if !in_work {
        Recovery::NothingLeft
    } else if log.contains("was committed before") {
        Recovery::AlreadyCommitted
    } else {
        Recovery::Rerated
    };
    let rated = m.counter("tollgate_records_total", &[("outcome", "rated")]);
    let done = m.counter("tollgate_files_total", &[("outcome", "done")]);
    match recovery {
        Recovery::Rerated => {
            assert!(
                log.contains("recovering a file left in work/"),
                "{label}: {log}"
            );
            assert_eq!(
                rated,
                c.stats.good() as f64,
                "{label}: rated after restart\n{log}"
            );
            assert_eq!(done, 1.0, "{label}");
        }
        Recovery::AlreadyCommitted | Recovery::NothingLeft => {
            assert_eq!(
                rated, 0.0,
                "{label}: a committed file was rated again\n{log}"
            );
            assert_eq!(done, 0.0, "{label}");
        }
    }
    assert_eq!(
        m.counter("tollgate_files_total", &[("outcome", "duplicate")]),
        0.0,
        "{label}"
    );
    assert_eq!(
        m.counter("tollgate_files_total", &[("outcome", "failed")]),
        0.0,
        "{label}"
    );
    assert_eq!(d.stop().code(), Some(0), "{label}");

    assert_eq!(
        fs::read(ws.rejects(&c.name)).expect("rejects"),
        c.rejects,
        "{label}: rejects file differs from the control's"
    );
    ws.close(PERIOD, ISSUE).ok();
    let got = ws.invoice_bytes(PERIOD);
    compare_invoices(&got, &c.invoices, label);
    recovery
}

/// Invoices must be byte-identical to the control's; on a difference, report the
/// totals and the first differing invoice in readable form.
fn compare_invoices(got: &[(String, Vec<u8>)], want: &[(String, Vec<u8>)], label: &str) {
    if got == want {
        return;
    }
    let sums = |v: &[(String, Vec<u8>)]| {
        v.iter().fold((0u64, 0u64, 0i64), |acc, (_, b)| {
            let inv: serde_json::Value = serde_json::from_slice(b).unwrap();
            let s = usage_sums(&inv);
            (acc.0 + s.0, acc.1 + s.1, acc.2 + s.2)
        })
    };
    let first = got
        .iter()
        .zip(want)
        .find(|(g, w)| g != w)
        .map(|(g, w)| {
            format!(
                "{} got:\n{}\n{} want:\n{}",
                g.0,
                String::from_utf8_lossy(&g.1),
                w.0,
                String::from_utf8_lossy(&w.1)
            )
        })
        .unwrap_or_default();
    panic!(
        "{label}: invoices differ from the control: {} vs {} invoices; usage (records, units, cents) {:?} vs {:?}\n{first}",
        got.len(),
        want.len(),
        sums(got),
        sums(want)
    );
}

/// The tests of this file measure time: they run one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn sigkill_mid_file_loses_nothing_and_counts_nothing_twice() {
    let _serial = serial();
    let t_start = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("tollgate-crash-")
        .tempdir()
        .unwrap();
    let spec = Spec {
        seed: 7,
        accounts: 1000,
        prefixes: 3000,
        bad_ratio_ppm: 1000,
    };
    let c = control(tmp.path(), &spec, 1_000_000, "cdrs-2026-10-big.csv");
    let seed = seed();
    let mut rng = SplitMix64::new(seed);
    println!(
        "crash: TOLLGATE_CRASH_SEED={seed}; control rated {} records in {:.2} s",
        c.stats.lines, c.seconds
    );

    // Kill windows, as fractions of the control's processing time after the claim.
    // The last one aims at the end: the commit and the move to done/.
    let windows = [
        (0.0, 0.25),
        (0.25, 0.5),
        (0.5, 0.75),
        (0.75, 1.0),
        (0.95, 1.15),
    ];
    // A later file re-sending 2 000 records of the big one beside 2 000 new ones: its
    // rejects show that the big file's ids are in the cross-file index exactly once
    // (none lost, none of its duplicates added), whatever moment the kill landed.
    let resent = resent_file(tmp.path(), &c.src);
    let resent_control = {
        let ws = Ws::synth(&tmp.path().join("control-resent"), &spec, EXTRA);
        ws.ingest(&[&c.src, &resent]).ok();
        let r = fs::read(ws.rejects("resent.csv")).expect("control rejects of resent.csv");
        drop(ws);
        let _ = fs::remove_dir_all(tmp.path().join("control-resent"));
        r
    };
    assert!(
        String::from_utf8_lossy(&resent_control)
            .matches("duplicate_record")
            .count()
            >= 1990,
        "the re-sent records are cross-file duplicates"
    );
    let mut recoveries = Vec::new();
    for (i, (lo, hi)) in windows.into_iter().enumerate() {
        let label = format!("run {i}");
        let ws = Ws::synth(&tmp.path().join(format!("kill-{i}")), &spec, EXTRA);
        let d = Daemon::start(&ws);
        d.wait_until("/readyz 200", || d.get("/readyz").0 == 200);
        ws.drop_copy(&c.name, &c.src);
        d.wait_until("the file claimed", || {
            ws.work().join(&c.name).exists() || ws.done().join(&c.name).exists()
        });
        let frac = lo + (hi - lo) * rng.unit();
        let delay = Duration::from_secs_f64(c.seconds * frac);
        std::thread::sleep(delay);
        d.kill9();
        let recovery = restart_and_compare(&ws, &c, &label);
        println!(
            "crash: {label}: SIGKILL {:.0} ms after the claim -> {recovery:?}; bill identical to the control",
            delay.as_secs_f64() * 1e3
        );
        recoveries.push(recovery);
        ws.ingest(&[&resent]).ok();
        assert_eq!(
            fs::read(ws.rejects("resent.csv")).expect("rejects of resent.csv"),
            resent_control,
            "{label}: the cross-file duplicates of a later file differ from the control's"
        );
        // Free the disk early: each workspace holds a copy of the file.
        drop(ws);
        let _ = fs::remove_dir_all(tmp.path().join(format!("kill-{i}")));
    }
    assert!(
        recoveries.contains(&Recovery::Rerated),
        "no kill landed mid-file ({recoveries:?}): make the file bigger so that the test tests something"
    );
    println!("crash: done in {:.1} s", t_start.elapsed().as_secs_f64());
}

/// `resent.csv`: the header and first 2 000 records of `src`, then the same records
/// under new ids.
fn resent_file(dir: &Path, src: &Path) -> PathBuf {
    let text = fs::read_to_string(src).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let first: Vec<&str> = lines.take(2000).collect();
    let mut out = String::from(header);
    for l in &first {
        out.push('\n');
        out.push_str(l);
    }
    for l in &first {
        out.push('\n');
        out.push_str(&l.replacen("crash-", "resent-", 1));
    }
    out.push('\n');
    let p = dir.join("resent.csv");
    fs::write(&p, out).unwrap();
    p
}

#[test]
fn sigint_mid_file_abandons_it_and_the_restart_redoes_it() {
    let _serial = serial();
    let tmp = tempfile::Builder::new()
        .prefix("tollgate-crash-")
        .tempdir()
        .unwrap();
    let spec = Spec {
        seed: 11,
        accounts: 200,
        prefixes: 500,
        bad_ratio_ppm: 1000,
    };
    let c = control(tmp.path(), &spec, 400_000, "cdrs-2026-10-int.csv");
    let ws = Ws::synth(&tmp.path().join("int"), &spec, EXTRA);
    let d = Daemon::start(&ws);
    d.wait_until("/readyz 200", || d.get("/readyz").0 == 200);
    ws.drop_copy(&c.name, &c.src);
    d.wait_until("the file claimed", || {
        ws.work().join(&c.name).exists() || ws.done().join(&c.name).exists()
    });
    std::thread::sleep(Duration::from_secs_f64(c.seconds * 0.2));
    let t0 = Instant::now();
    let status = d.stop_with(libc::SIGINT);
    let stop_ms = t0.elapsed().as_secs_f64() * 1e3;
    assert_eq!(status.code(), Some(0), "SIGINT exit status {status}");
    assert!(
        !ws.data().join("listen.addr").exists(),
        "listen.addr left behind"
    );
    let recovery = restart_and_compare(&ws, &c, "SIGINT run");
    println!("crash: SIGINT stopped the daemon in {stop_ms:.0} ms -> {recovery:?}; bill identical to the control");
}

/// Closes a period in a child process and SIGKILLs it after `delay` (if still running).
/// Returns true when the kill landed (the process had not finished).
fn close_killed_after(ws: &Ws, period: &str, issue: &str, delay: Duration) -> bool {
    let mut child = std::process::Command::new(common::bin())
        .args([
            "cycle",
            "close",
            "--config",
            ws.config_arg(),
            "--period",
            period,
            "--issue-date",
            issue,
        ])
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let running = child.try_wait().unwrap().is_none();
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
    running
}

/// Every `<number>.json` of the invoice directory, parsed: (number, account, period).
fn series(ws: &Ws) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for period in common::list_names(&ws.root.join("invoices")) {
        let dir = ws.invoices(&period);
        for n in fs::read_dir(&dir).unwrap() {
            let n = n.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !n.starts_with('.'),
                "temp file {n} left in {}",
                dir.display()
            );
            if let Some(num) = n.strip_suffix(".json") {
                let v: serde_json::Value =
                    serde_json::from_slice(&fs::read(dir.join(&n)).unwrap()).unwrap();
                assert_eq!(v["number"], num, "{n}");
                assert!(dir.join(format!("{num}.xml")).exists(), "{num}.xml missing");
                out.push((
                    num.to_owned(),
                    v["account_id"].as_str().unwrap().to_owned(),
                    period.clone(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn sigkill_during_close_leaves_no_gap_and_reuses_no_number() {
    let _serial = serial();
    let tmp = tempfile::Builder::new()
        .prefix("tollgate-crash-close-")
        .tempdir()
        .unwrap();
    let spec = Spec {
        seed: 13,
        accounts: 6_000,
        prefixes: 500,
        bad_ratio_ppm: 0,
    };
    let mut files = Vec::new();
    // Months well in the past: records within 24 h of now would be rejected as
    // `future_time` at one ingest and accepted at a later one.
    for month in [8, 9] {
        let f = tmp.path().join(format!("cdrs-2026-{month:02}.csv"));
        let mut w = std::io::BufWriter::new(fs::File::create(&f).unwrap());
        write_cdrs(
            &mut w,
            &spec,
            &CdrBatch {
                year: 2026,
                month,
                records: 40_000,
                file_tag: format!("close-{month}"),
            },
        )
        .unwrap();
        drop(w);
        files.push(f);
    }
    let closes = [("2026-08", "2026-09-01"), ("2026-09", "2026-10-01")];
    let prepare = |name: &str| {
        let ws = Ws::synth(&tmp.path().join(name), &spec, "");
        let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        ws.ingest(&refs).ok();
        ws
    };

    // Control: clean closes, timed.
    let control = prepare("control");
    let mut seconds = Vec::new();
    let mut want = Vec::new();
    for (p, i) in closes {
        let t0 = Instant::now();
        control.close(p, i).ok();
        seconds.push(t0.elapsed().as_secs_f64());
        want.push(control.invoice_bytes(p));
    }
    let want_series = series(&control);
    let n = want_series.len();
    // Accounts on a plan without fee and without usage get no invoice.
    assert!(
        n > spec.accounts && n <= 2 * spec.accounts,
        "{n} invoices for {} accounts over two months",
        spec.accounts
    );
    let numbers: Vec<String> = (1..=n).map(|i| format!("2026-{i:06}")).collect();
    assert_eq!(
        want_series.iter().map(|s| s.0.clone()).collect::<Vec<_>>(),
        numbers
    );

    let seed = seed();
    let mut rng = SplitMix64::new(seed);
    println!(
        "crash-close: TOLLGATE_CRASH_SEED={seed}; control closes took {:.2} s and {:.2} s",
        seconds[0], seconds[1]
    );
    let mut landed = 0;
    for run in 0..3 {
        let ws = prepare(&format!("kill-{run}"));
        for (k, (p, i)) in closes.into_iter().enumerate() {
            let delay = Duration::from_secs_f64(seconds[k] * 1.1 * rng.unit());
            let killed = close_killed_after(&ws, p, i, delay);
            landed += killed as u32;
            // The re-run completes the close (or finds it committed and rewrites files).
            let out = ws.close(p, i).ok();
            let after_commit = out.stdout.contains("was already closed");
            println!(
                "crash-close: run {run} {p}: SIGKILL after {:.0} ms ({}), re-run: {}",
                delay.as_secs_f64() * 1e3,
                if killed {
                    "killed mid-close"
                } else {
                    "close had finished"
                },
                if after_commit {
                    "already committed, files rewritten"
                } else {
                    "closed now"
                }
            );
            let got = ws.invoice_bytes(p);
            if got != want[k] {
                let names = |v: &[(String, Vec<u8>)]| -> Vec<String> {
                    v.iter().map(|f| f.0.clone()).collect()
                };
                let (g, w) = (names(&got), names(&want[k]));
                let differing: Vec<&String> = got
                    .iter()
                    .zip(want[k].iter())
                    .filter(|(a, b)| a != b)
                    .map(|(a, _)| &a.0)
                    .take(5)
                    .collect();
                if let Some((a, b)) = got
                    .iter()
                    .zip(want[k].iter())
                    .find(|(a, b)| a != b && a.0.ends_with(".json"))
                {
                    println!(
                        "got {}:\n{}\nwant:\n{}",
                        a.0,
                        String::from_utf8_lossy(&a.1),
                        String::from_utf8_lossy(&b.1)
                    );
                }
                panic!(
                    "run {run} {p}: documents differ from the control: {} vs {} files; only here: {:?}; only in the control: {:?}; differing: {:?}",
                    got.len(),
                    want[k].len(),
                    g.iter().filter(|n| !w.contains(n)).take(5).collect::<Vec<_>>(),
                    w.iter().filter(|n| !g.contains(n)).take(5).collect::<Vec<_>>(),
                    differing
                );
            }
        }
        // No gap, no reuse: exactly the control's numbers, each once, same accounts.
        assert_eq!(series(&ws), want_series, "run {run}");
        drop(ws);
        let _ = fs::remove_dir_all(tmp.path().join(format!("kill-{run}")));
    }
    assert!(landed > 0, "no SIGKILL landed during a close");
}
