//! Operations end to end, on the real binary: the metric set, a real Prometheus server
//! scraping the daemon and answering PromQL, the shipped Prometheus configs, `tollgate
//! report`, the daily totals behind it, and the live dashboard in headless Chromium.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::tools;
use crate::common::*;
use serde_json::Value;

/// October 2026 (Europe/Amsterdam): four rated records over three local days, one
/// duplicate record id, one malformed line; one record that is November locally.
///
/// | line | record                                   | local day  | charge |
/// |------|------------------------------------------|------------|--------|
/// | r1   | A1 voice NL 90 s (billed 120)            | 2026-10-05 | 1.30   |
/// | r2   | A1 voice UK 30 s (billed 30)             | 2026-10-05 | 0.60   |
/// | r3   | A2 sms                                   | 2026-10-06 | 0.10   |
/// | r4   | A2 voice NL 60 s at 23:30Z on Oct 31     | 2026-11-01 | 0.70   |
/// | r5   | A1 data 1 MiB at 22:30Z on Oct 6         | 2026-10-07 | 1.00   |
/// | r1   | again: duplicate_record                  |            |        |
/// | bad  | malformed                                |            |        |
const OCTOBER: &[&str] = &[
    "r1,A1,voice,+31611111111,+31612345678,2026-10-05T10:00:00Z,90,",
    "r2,A1,voice,+31611111111,+441234567890,2026-10-05T11:00:00Z,30,",
    "r3,A2,sms,+31611111111,+31612345678,2026-10-06T09:00:00Z,,",
    "r4,A2,voice,+31611111111,+31201234567,2026-10-31T23:30:00Z,60,",
    "r5,A1,data,+31611111111,,2026-10-06T22:30:00Z,,1048576",
    "r1,A1,voice,+31611111111,+31612345678,2026-10-05T10:00:00Z,90,",
    "bad,line",
];

/// Report arguments compared through the API and directly (`{this}` = this month).
const REPORTS: &[&str] = &[
    "usage --period 2026-10",
    "usage --period 2026-10 --by day --format json",
    "usage --period 2026-10 --by account --format html",
    "revenue --period 2026-10 --by destination --format csv --top 2",
    "revenue --period 2026-10 --by plan --format json",
    "revenue --period 2026-11 --format html",
    "rejects --period {this} --format json",
    "rejects --period {this} --by day --format csv",
    "rejects --period {this} --format html",
];

/// September 2026: one record, A3 voice NL 120 s (billed 120) = 1.30.
const SEPTEMBER: &[&str] = &["s1,A3,voice,+31611111111,+31612345678,2026-09-10T10:00:00Z,120,"];

/// `tollgate report KIND --config … ARGS…` (through the API while a daemon runs, with
/// the viewer token).
fn report_out(ws: &Ws, args: &[&str]) -> Out {
    let mut a = vec!["report"];
    a.extend_from_slice(&args[..1]);
    a.extend_from_slice(&["--config", ws.config_arg()]);
    a.extend_from_slice(&args[1..]);
    run_env(&a, &[("TOLLGATE_TOKEN", VIEWER_TOKEN)])
}

fn report(ws: &Ws, args: &[&str]) -> String {
    report_out(ws, args).ok().stdout
}

fn report_json(ws: &Ws, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend_from_slice(&["--format", "json"]);
    serde_json::from_str(&report(ws, &a)).expect("report JSON")
}

/// The viewer token the dashboard tests present (its SHA-256 is in the tokens file).
const VIEWER_TOKEN: &str = "tg_dashboard-viewer-token";

/// The operator token of the same tokens file.
const OPERATOR_TOKEN: &str = "tg_operations-operator-token";

/// A hand workspace with a tokens file holding [`VIEWER_TOKEN`] as a viewer and
/// [`OPERATOR_TOKEN`] as an operator.
fn ws_with_viewer() -> Ws {
    use sha2::{Digest, Sha256};
    let ws = Ws::hand_with("api_tokens_file = \"tokens.csv\"\n");
    let h = |t: &str| -> String {
        Sha256::digest(t.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    std::fs::write(
        ws.root.join("tokens.csv"),
        format!(
            "name,role,sha256\ndash,viewer,{}\nops,operator,{}\n",
            h(VIEWER_TOKEN),
            h(OPERATOR_TOKEN)
        ),
    )
    .unwrap();
    ws
}

/// `POST /api/v1/cycles/{period}/close` with the operator token.
fn close_via_api(d: &Daemon, period: &str, issue: &str) -> Value {
    let r = http_request(
        d.addr,
        "POST",
        &format!("/api/v1/cycles/{period}/close?issueDate={issue}"),
        &[("Authorization", &format!("Bearer {OPERATOR_TOKEN}"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// `apt-get install` of promtool and the Prometheus server.
const PROMETHEUS: &str = "apt-get install prometheus";

/// `promtool check metrics` on a scrape (None when promtool is missing).
fn promtool_check_metrics(scrape: &str) -> Option<()> {
    let promtool = tools::require("promtool", PROMETHEUS)?;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(scrape.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\nscrape:\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}

fn rated_workspace() -> (Ws, Daemon) {
    let ws = ws_with_viewer();
    let d = Daemon::start(&ws);
    ws.drop_file("oct.csv", &cdr_file(OCTOBER));
    ws.drop_file("sep.csv", &cdr_file(SEPTEMBER));
    d.wait_until("both files done", || {
        ws.done().join("oct.csv").exists() && ws.done().join("sep.csv").exists()
    });
    (ws, d)
}

#[test]
fn metrics_cover_records_files_workers_and_rocksdb() {
    let (ws, d) = rated_workspace();
    // RocksDB figures and worker utilisation are refreshed every 5 s.
    let m = d.wait_for("rocksdb size gauge", || {
        let m = d.metrics();
        (m.get("tollgate_rocksdb_size_bytes", &[]).unwrap_or(0.0) > 0.0).then_some(m)
    });
    assert_eq!(m.rated(), Some(6.0), "{}", m.text);
    assert_eq!(
        m.rejected_by_reason(),
        vec![
            ("duplicate_record".to_string(), 1.0),
            ("malformed".to_string(), 1.0)
        ]
    );
    assert_eq!(
        m.counter("tollgate_files_total", &[("outcome", "done")]),
        2.0
    );
    assert_eq!(m.get("tollgate_workers", &[]), Some(2.0));
    // The cross-file check is on by default: the filter holds the 6 rated ids (the
    // in-file duplicate's id once: a file's hashes are added sorted, a repeat once), in
    // a filter sized for 16 Mi more (1.58 bytes an id at its sized load: 16 Mi ids in
    // 6-byte buckets of 4 slots, 95 % full, 26.49 MB).
    assert_eq!(m.get("tollgate_dedup_ids", &[]), Some(6.0));
    let bytes = m.get("tollgate_dedup_filter_bytes", &[]).unwrap();
    assert!((26.4e6..26.6e6).contains(&bytes), "{bytes}");
    assert!(m.get("tollgate_worker_busy_seconds_total", &[]).unwrap() > 0.0);
    let u = m.get("tollgate_worker_utilization_ratio", &[]).unwrap();
    assert!((0.0..=1.0).contains(&u), "{u}");
    assert!(m
        .get("tollgate_rocksdb_write_stall_seconds_total", &[])
        .is_some());
    // Two small files stay in the memtables: nothing to compact, nothing compacting.
    assert_eq!(
        m.get("tollgate_rocksdb_pending_compaction_bytes", &[]),
        Some(0.0)
    );
    assert_eq!(
        m.get("tollgate_rocksdb_running_compactions", &[]),
        Some(0.0)
    );
    assert!(m.get("tollgate_last_file_timestamp_seconds", &[]).unwrap() > 1.7e9);
    assert_eq!(
        m.get("tollgate_file_processing_seconds_count", &[]),
        Some(2.0)
    );
    // The tariff in service, as an info gauge.
    let info = m.all("tollgate_tariff_info");
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].1, 1.0);
    assert_eq!(info[0].0[0].0, "version");
    assert_eq!(info[0].0[0].1.len(), 16);
    // Micro units of the rated charges: 1.30 + 0.60 + 0.10 + 0.70 + 1.00 + 1.30.
    assert_eq!(
        m.get("tollgate_rated_charge_micros_total", &[]),
        Some(5_000_000.0)
    );
    // Bytes of the two files; an empty inbox.
    let size = |n: &str| std::fs::metadata(ws.done().join(n)).unwrap().len() as f64;
    assert_eq!(
        m.get("tollgate_ingested_bytes_total", &[]),
        Some(size("oct.csv") + size("sep.csv"))
    );
    // The watcher refreshes the backlog gauges at every inbox scan.
    let m = d.wait_for("an empty backlog", || {
        let m = d.metrics();
        (m.get("tollgate_spool_backlog_files", &[]) == Some(0.0)).then_some(m)
    });
    assert_eq!(m.get("tollgate_spool_backlog_bytes", &[]), Some(0.0));
    assert_eq!(
        m.get("tollgate_spool_oldest_file_age_seconds", &[]),
        Some(0.0)
    );
    assert_eq!(m.counter("tollgate_invoices_issued_total", &[]), 0.0);
    // A close through the API: its duration, the invoices it issued, when.
    let c = close_via_api(&d, "2026-09", "2026-10-01");
    assert_eq!(c["billCount"], 3);
    let m = d.metrics();
    assert_eq!(m.counter("tollgate_invoices_issued_total", &[]), 3.0);
    assert_eq!(m.get("tollgate_cycle_close_seconds_count", &[]), Some(1.0));
    assert!(m.get("tollgate_cycle_close_seconds_sum", &[]).unwrap() > 0.0);
    assert!(
        m.get("tollgate_last_cycle_close_timestamp_seconds", &[])
            .unwrap()
            > 1.7e9
    );
    // A credit through the API with a reissue: one credit note, one more invoice.
    assert_eq!(m.counter("tollgate_credit_notes_issued_total", &[]), 0.0);
    let r = http_request(
        d.addr,
        "POST",
        "/api/v1/bills/2026-000001/credit",
        &[
            ("Authorization", &format!("Bearer {OPERATOR_TOKEN}")),
            ("Content-Type", "application/json"),
        ],
        br#"{"reason": "wrong plan", "reissue": true, "issueDate": "2026-10-02"}"#,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let m = d.metrics();
    assert_eq!(m.counter("tollgate_credit_notes_issued_total", &[]), 1.0);
    assert_eq!(m.counter("tollgate_invoices_issued_total", &[]), 4.0);
    // Every series has a unit or `_total`/`_ratio`/`_info` in its name, and the whole
    // scrape (histograms of files and closes included) passes promtool.
    for line in m.text.lines().filter(|l| l.starts_with("# TYPE tollgate_")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            [
                "_total",
                "_seconds",
                "_bytes",
                "_files",
                "_ids",
                "_ratio",
                "_info",
                "_workers",
                "_compactions"
            ]
            .iter()
            .any(|u| name.ends_with(u)),
            "{name}: no unit in the name"
        );
    }
    promtool_check_metrics(&m.text);
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn shipped_prometheus_configs_pass_promtool() {
    let Some(promtool) = tools::require("promtool", PROMETHEUS) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(&args)
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a PromQL instant query; returns the `data.result` array.
fn promql(addr: SocketAddr, q: &str) -> Option<Vec<Value>> {
    let enc: String = q
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    drop(stream);
    let (status, body) = http_get(addr, &format!("/api/v1/query?query={enc}"));
    if status != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    (v["status"] == "success").then(|| v["data"]["result"].as_array().cloned().unwrap_or_default())
}

fn sample_value(r: &[Value]) -> Option<f64> {
    r.first()?["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_server_scrapes_the_daemon_and_answers_promql() {
    let Some(prometheus) = tools::require("prometheus", PROMETHEUS) else {
        return;
    };
    let ws = Ws::hand();
    let d = Daemon::start(&ws);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: tollgate\n    static_configs:\n      - targets: [\"{}\"]\n",
            d.addr
        ),
    )
    .unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let mut prom = Command::new(prometheus)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut prom);
    let prom_log =
        || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    let wait = |what: &str, f: &mut dyn FnMut() -> bool| {
        let t0 = Instant::now();
        while !f() {
            assert!(
                t0.elapsed() < Duration::from_secs(90),
                "timed out waiting for {what}; prometheus log:\n{}",
                prom_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Prometheus has scraped the idle daemon at least once: the series exists at 0.
    wait("a first scrape", &mut || {
        promql(addr, "tollgate_records_total{outcome=\"rated\"}").and_then(|r| sample_value(&r))
            == Some(0.0)
    });
    ws.drop_file("oct.csv", &cdr_file(OCTOBER));
    d.wait_until("file done", || ws.done().join("oct.csv").exists());
    // r1, r2, r3, r4, r5 rated (the duplicate and the malformed line rejected).
    wait("the rated count in Prometheus", &mut || {
        promql(addr, "tollgate_records_total{outcome=\"rated\"}").and_then(|r| sample_value(&r))
            == Some(5.0)
    });
    let r = promql(addr, "rate(tollgate_records_total{outcome=\"rated\"}[1m])").unwrap();
    let rate = sample_value(&r).unwrap();
    assert!(rate > 0.0, "rated record rate {rate}: {r:?}");
    let r = promql(
        addr,
        "sum(tollgate_records_total{outcome=\"rejected\"}) / sum(tollgate_records_total)",
    )
    .unwrap();
    assert_eq!(sample_value(&r), Some(2.0 / 7.0));
    let r = promql(
        addr,
        "max_over_time(tollgate_records_total{outcome=\"rated\"}[5m])",
    )
    .unwrap();
    assert_eq!(sample_value(&r), Some(5.0));
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn reports_usage_revenue_and_rejects_open_then_closed() {
    let (ws, d) = rated_workspace();
    // The daemon holds the database: reports go through its API.
    let r = report_json(&ws, &["usage", "--period", "2026-10", "--by", "day"]);
    assert_eq!(r["closed"], false);
    assert_eq!(r["source"], "unbilled usage");
    assert_eq!(r["currency"], "EUR");
    let t = &r["totals"];
    assert_eq!(t["records"], 4);
    assert_eq!(t["voice_records"], 2);
    assert_eq!(t["billed_minutes"], "2.50");
    assert_eq!(t["avg_call_seconds"], "60.0");
    assert_eq!(t["sms"], 1);
    assert_eq!(t["data_bytes"], 1048576);
    assert_eq!(t["revenue"], "3.000000");
    assert_eq!(r["previous"]["records"], 1);
    assert_eq!(r["previous"]["revenue"], "1.300000");
    assert_eq!(r["change"]["records_pct"], "300.0");
    assert_eq!(r["change"]["billed_minutes_pct"], "25.0");
    // (3.00 - 1.30) / 1.30 = 130.769… %
    assert_eq!(r["change"]["revenue_pct"], "130.8");
    let days: Vec<(String, u64, String)> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["key"].as_str().unwrap().to_owned(),
                x["records"].as_u64().unwrap(),
                x["revenue"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        days,
        vec![
            ("2026-10-05".into(), 2, "1.900000".into()),
            ("2026-10-06".into(), 1, "0.100000".into()),
            ("2026-10-07".into(), 1, "1.000000".into()),
        ]
    );
    let keys = |v: &Value| -> Vec<(String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x["key"].as_str().unwrap().to_owned(),
                    x["revenue"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        keys(&r["top_destinations"]),
        vec![
            ("Netherlands".into(), "1.300000".into()),
            ("Mobile data".into(), "1.000000".into()),
            ("United Kingdom".into(), "0.600000".into()),
            ("SMS".into(), "0.100000".into()),
        ]
    );
    assert_eq!(
        keys(&r["top_accounts"]),
        vec![
            ("A1".into(), "2.900000".into()),
            ("A2".into(), "0.100000".into())
        ]
    );
    // The local day decides the month: r4 (23:30Z on Oct 31) is November 1st.
    let nov = report_json(&ws, &["revenue", "--period", "2026-11", "--by", "day"]);
    assert_eq!(
        keys(&nov["rows"]),
        vec![("2026-11-01".into(), "0.700000".into())]
    );
    // By plan and service; CSV.
    let csv = report(
        &ws,
        &[
            "revenue", "--period", "2026-10", "--by", "plan", "--format", "csv",
        ],
    );
    assert_eq!(
        csv,
        "plan,records,voice_records,billed_minutes,avg_call_seconds,sms,data_bytes,revenue\n\
         flat,4,2,2.50,60.0,1,1048576,3.000000\n\
         total,4,2,2.50,60.0,1,1048576,3.000000\n"
    );
    let csv = report(&ws, &["usage", "--period", "2026-10", "--format", "csv"]);
    assert_eq!(
        csv,
        "service,records,voice_records,billed_minutes,avg_call_seconds,sms,data_bytes,revenue\n\
         voice,2,2,2.50,60.0,0,0,1.900000\n\
         data,1,0,0.00,,0,1048576,1.000000\n\
         sms,1,0,0.00,,1,0,0.100000\n\
         total,4,2,2.50,60.0,1,1048576,3.000000\n"
    );
    // HTML: self-contained, with SVG charts and the figures.
    let html = report(&ws, &["revenue", "--period", "2026-10", "--format", "html"]);
    assert!(html.starts_with("<!doctype html>"));
    assert_eq!(
        html.matches("<svg").count(),
        3,
        "days, destinations, accounts"
    );
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    assert!(html.contains("EUR 3.00") || html.contains(">3.00<") || html.contains("3.00 EUR"));
    assert!(html.contains("+130.8 %"), "month-on-month change shown");
    // Rejects: files committed this month (UTC).
    let this_month = chrono::Utc::now().format("%Y-%m").to_string();
    let rj = report_json(&ws, &["rejects", "--period", &this_month]);
    assert_eq!(rj["files"], 2);
    assert_eq!(rj["lines"], 8);
    assert_eq!(rj["rated"], 6);
    assert_eq!(rj["rejected"], 2);
    assert_eq!(rj["reject_pct"], "25.00");
    assert_eq!(
        rj["by_reason"],
        serde_json::json!([["duplicate_record", 1], ["malformed", 1]])
    );
    let out = run(&[
        "report",
        "rejects",
        "--config",
        ws.config_arg(),
        "--period",
        "2026-10",
        "--by",
        "destination",
    ]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("TOLLGATE_TOKEN"),
        "a running daemon needs a token: {out:?}"
    );
    let refused = report_out(
        &ws,
        &["rejects", "--period", "2026-10", "--by", "destination"],
    );
    assert_eq!(refused.code(), Some(2));
    assert_eq!(
        refused.stderr.trim(),
        "tollgate: rejects are counted per file and reason: grouping by destination is not available (only by day; without a grouping the rows are reasons)"
    );
    // The route itself (viewer token): the CLI's bytes in the format's media type.
    let auth = format!("Bearer {VIEWER_TOKEN}");
    let api = |path: &str| http_request(d.addr, "GET", path, &[("Authorization", &auth)], b"");
    let by_plan = api("/api/v1/reports/revenue?period=2026-10&by=plan");
    assert_eq!(by_plan.status, 200, "{}", by_plan.text());
    assert_eq!(by_plan.header("content-type"), Some("application/json"));
    assert_eq!(by_plan.json()["totals"]["revenue"], "3.000000");
    assert_eq!(by_plan.json()["rows"][0]["key"], "flat");
    let csv = api("/api/v1/reports/usage?period=2026-10&format=csv");
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(
        csv.text(),
        "service,records,voice_records,billed_minutes,avg_call_seconds,sms,data_bytes,revenue\n\
         voice,2,2,2.50,60.0,0,0,1.900000\n\
         data,1,0,0.00,,0,1048576,1.000000\n\
         sms,1,0,0.00,,1,0,0.100000\n\
         total,4,2,2.50,60.0,1,1048576,3.000000\n"
    );
    let html = api("/api/v1/reports/revenue?period=2026-10&format=html&top=1");
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(html.text().contains("Top 1 destinations by revenue"));
    let rj = api(&format!(
        "/api/v1/reports/rejects?period={this_month}&by=day"
    ));
    assert_eq!(rj.json()["rows"][0]["lines"], 8);
    // Errors: JSON bodies with a code, never echoing what looks like a number.
    let no_token = http_request(
        d.addr,
        "GET",
        "/api/v1/reports/usage?period=2026-10",
        &[],
        b"",
    );
    assert_eq!(no_token.status, 401);
    assert_eq!(no_token.json()["code"], "unauthorized");
    for (path, status, code) in [
        (
            "/api/v1/reports/rejects?period=2026-10&by=destination",
            400,
            "bad_request",
        ),
        ("/api/v1/reports/profit?period=2026-10", 404, "not_found"),
        ("/api/v1/reports/usage", 400, "bad_request"),
        ("/api/v1/reports/usage?period=2026-13", 400, "bad_request"),
        (
            "/api/v1/reports/usage?period=2026-10&format=pdf",
            400,
            "bad_request",
        ),
        (
            "/api/v1/reports/usage?period=2026-10&by=colour",
            400,
            "bad_request",
        ),
        (
            "/api/v1/reports/usage?period=2026-10&top=-1",
            400,
            "bad_request",
        ),
        (
            "/api/v1/reports/31612345678?period=2026-10",
            404,
            "not_found",
        ),
        (
            "/api/v1/reports/usage?period=31612345678",
            400,
            "bad_request",
        ),
        (
            "/api/v1/reports/usage?period=2026-10&format=%2B31612345678",
            400,
            "bad_request",
        ),
        (
            "/api/v1/reports/usage?period=2026-10&by=31612345678",
            400,
            "bad_request",
        ),
        ("/api/v1/dashboard?period=31612345678", 400, "bad_request"),
    ] {
        let r = api(path);
        assert_eq!(
            (r.status, r.header("content-type")),
            (status, Some("application/json")),
            "{path}: {}",
            r.text()
        );
        assert_eq!(r.json()["code"], code, "{path}");
        assert!(
            !r.text().contains("31612345678"),
            "{path} echoes a number: {}",
            r.text()
        );
    }
    // Every report through the API, byte for byte, to compare with the direct path below.
    let via_api: Vec<String> = REPORTS
        .iter()
        .map(|a| {
            report(
                &ws,
                &a.replace("{this}", &this_month)
                    .split(' ')
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    assert_eq!(d.stop().code(), Some(0));
    assert_eq!(
        by_plan.text(),
        report(
            &ws,
            &["revenue", "--period", "2026-10", "--by", "plan", "--format", "json"]
        )
    );
    for (a, api) in REPORTS.iter().zip(&via_api) {
        let a = a.replace("{this}", &this_month);
        let direct = report(&ws, &a.split(' ').collect::<Vec<_>>());
        assert_eq!(
            api, &direct,
            "`tollgate report {a}` differs through the API"
        );
    }
    assert_eq!(
        report_out(
            &ws,
            &["rejects", "--period", "2026-10", "--by", "destination"]
        )
        .stderr,
        refused.stderr
    );

    // Closed periods: the daily totals survive the close; groups come from the invoices.
    ws.close("2026-09", "2026-10-01");
    ws.close("2026-10", "2026-11-02");
    let r = report_json(
        &ws,
        &["revenue", "--period", "2026-10", "--by", "destination"],
    );
    assert_eq!(r["closed"], true);
    assert_eq!(r["source"], "invoices");
    assert_eq!(r["totals"]["revenue"], "3.000000");
    assert_eq!(r["totals"]["avg_call_seconds"], "60.0");
    assert_eq!(
        keys(&r["rows"]),
        vec![
            ("Netherlands".into(), "1.300000".into()),
            ("Mobile data".into(), "1.000000".into()),
            ("United Kingdom".into(), "0.600000".into()),
            ("SMS".into(), "0.100000".into()),
        ]
    );
    assert_eq!(r["rows"][0]["avg_call_seconds"], Value::Null);
    let inv = &r["invoiced"];
    assert_eq!(inv["invoices"], 3);
    assert_eq!(inv["subscriptions"], "30.00");
    assert_eq!(inv["net_total"], "33.00");
    let sep = report_json(&ws, &["usage", "--period", "2026-09"]);
    assert_eq!(sep["totals"]["records"], 1);
    assert_eq!(sep["closed"], true);
    assert_eq!(
        keys(&sep["top_accounts"]),
        vec![("A3".into(), "1.300000".into())]
    );
}

#[test]
fn daily_totals_count_a_redone_file_once() {
    // A file committed, the daemon killed before the move to done/ could not double
    // count: the daily totals are in the same batch as the checkpoint.
    let ws = Ws::hand();
    let p1 = ws.root.join("oct.csv");
    std::fs::write(&p1, cdr_file(OCTOBER)).unwrap();
    let out = ws.ingest(&[p1.as_path()]);
    assert_eq!(out.code(), Some(0));
    // The same content under another name is a duplicate file: nothing is added.
    let p2 = ws.root.join("oct-again.csv");
    std::fs::write(&p2, cdr_file(OCTOBER)).unwrap();
    assert_eq!(ws.ingest(&[p2.as_path()]).code(), Some(1));
    let r = report_json(&ws, &["usage", "--period", "2026-10"]);
    assert_eq!(r["totals"]["records"], 4);
    assert_eq!(r["totals"]["revenue"], "3.000000");
}

fn dashboard(d: &Daemon, q: &str) -> Value {
    let (status, body) =
        http_get_auth(d.addr, &format!("/api/v1/dashboard{q}"), Some(VIEWER_TOKEN));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn dashboard_json_has_the_live_figures() {
    let (ws, d) = rated_workspace();
    let v = dashboard(&d, "");
    assert_eq!(v["records_rated"], 6);
    assert_eq!(v["records_rejected"], 2);
    assert_eq!(v["files"]["done"], 2);
    assert_eq!(v["files"]["failed"], 0);
    assert_eq!(v["currency"], "EUR");
    assert_eq!(v["workers"], 2);
    // No close yet: the latest month with rated records.
    assert_eq!(v["period"], "2026-11");
    assert_eq!(v["period_revenue"], "0.700000");
    let minutes = v["last_hour"].as_array().unwrap();
    assert_eq!(minutes.len(), 60);
    let recs: u64 = minutes.iter().map(|m| m["records"].as_u64().unwrap()).sum();
    assert_eq!(recs, 8, "6 rated + 2 rejected in the last hour");
    let rejects = &v["rejects"];
    assert_eq!(rejects[0], serde_json::json!(["duplicate_record", 1]));
    assert_eq!(rejects[1], serde_json::json!(["malformed", 1]));
    let oct = dashboard(&d, "?period=2026-10");
    let days: Vec<(String, i64)> = oct["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["date"].as_str().unwrap().to_owned(),
                x["revenue_cents"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        vec![
            ("2026-10-05".into(), 190),
            ("2026-10-06".into(), 10),
            ("2026-10-07".into(), 100)
        ]
    );
    let (status, _) = http_get_auth(
        d.addr,
        "/api/v1/dashboard?period=2026-13",
        Some(VIEWER_TOKEN),
    );
    assert_eq!(status, 400);
    // The figures need a token; the page does not.
    assert_eq!(d.get("/api/v1/dashboard").0, 401);
    // The page itself: plain HTML with its script, no external assets.
    let (status, page) = d.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("/api/v1/dashboard") && page.contains("Authorization"));
    assert!(!page.contains("src=\"http"));
    // A restart keeps the totals (seeded from the checkpoints).
    assert_eq!(d.stop().code(), Some(0));
    let d = Daemon::start(&ws);
    let v = dashboard(&d, "");
    assert_eq!(v["records_rated"], 6);
    assert_eq!(v["files"]["done"], 2);
    assert_eq!(d.stop().code(), Some(0));
}

/// Where the dashboard screenshot is kept: `$CARGO_TARGET_DIR/tmp/dashboard.png`.
fn screenshot_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png")
}

#[test]
fn dashboard_renders_in_headless_chromium() {
    let Some(browser) = tools::require_any(
        &["chromium", "chromium-browser", "google-chrome"],
        "apt-get install chromium",
    ) else {
        return;
    };
    let ws = ws_with_viewer();
    let d = Daemon::start(&ws);
    // November: day n has n voice calls of 60 s to NL (0.70 each) → 325 records, 227.50.
    let mut rows = Vec::new();
    for day in 1..=25 {
        for i in 0..day {
            rows.push(format!(
                "n{day}-{i},A{},voice,+31611111111,+31612345678,2026-11-{day:02}T12:00:00Z,60,",
                1 + i % 3
            ));
        }
    }
    rows.push("broken".into());
    rows.push("n1-0,A1,voice,+31611111111,+31612345678,2026-11-01T12:00:00Z,60,".into());
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    ws.drop_file("nov.csv", &cdr_file(&refs));
    d.wait_until("file done", || ws.done().join("nov.csv").exists());
    // October closed (three subscriptions of 10.00 + 21 % VAT): the last close; the
    // open period is November.
    let c = close_via_api(&d, "2026-10", "2026-11-01");
    assert_eq!(c["taxIncludedAmount"]["value"], "36.30");
    let url = format!("http://{}/#token={VIEWER_TOKEN}", d.addr);
    let profile = tempfile::tempdir().unwrap();
    let base = |extra: &[String]| -> std::process::Output {
        let mut c = Command::new(&browser);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--virtual-time-budget=10000",
            "--window-size=1280,1100",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(&url);
        c.output().expect("run chromium")
    };
    let out = base(&["--dump-dom".into()]);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("id=\"status\" class=\"\">updated "),
        "the page loaded its figures; chromium stderr:\n{}\nDOM:\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "<b id=\"rated\">325</b>",
        "<b id=\"rejected\">2</b>",
        "<b id=\"files-done\">1</b>",
        "<b id=\"backlog-files\">0 files</b>",
        "<span id=\"period\">2026-11</span>",
        "227.50 EUR",
        "data-exact=\"227.500000\"",
        "<tr data-reason=\"duplicate_record\"><td>duplicate_record</td><td class=\"n\">1</td></tr>",
        "<tr data-reason=\"malformed\"><td>malformed</td><td class=\"n\">1</td></tr>",
        "<b id=\"oldest-age\">0 s</b>",
        "<span id=\"period-state\">open</span>",
        ": 3 invoices, total 36.30 EUR</p>",
    ] {
        assert!(dom.contains(needle), "missing {needle:?} in DOM:\n{dom}");
    }
    assert!(
        dom.contains("<p id=\"last-close\">2026-10 closed 20"),
        "last close in DOM:\n{dom}"
    );
    // Throughput now: 327 records read within the last minute, so a rate above zero.
    let rps = &dom[dom.find("<b id=\"rps\">").unwrap() + 12..];
    let rps: f64 = rps[..rps.find('<').unwrap()]
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(rps > 0.0, "records/s {rps}");
    // The last hour: one bar per minute, the file's minute with its 327 records.
    let hour_svg = &dom[dom.find("id=\"hour\"").unwrap()..];
    let hour_svg = &hour_svg[..hour_svg.find("</svg>").unwrap()];
    assert_eq!(hour_svg.matches("<rect").count(), 60);
    assert!(hour_svg.contains(": 327 records, 1 files"), "{hour_svg}");
    // 25 bars of revenue per day; the 25th day is the highest (17.50).
    let days_svg = &dom[dom.find("id=\"days\"").unwrap()..];
    let days_svg = &days_svg[..days_svg.find("</svg>").unwrap()];
    assert_eq!(days_svg.matches("<rect").count(), 25);
    assert!(days_svg.contains("2026-11-25: 17.50 EUR, 25 records"));
    // The token from the URL fragment was used as a bearer token (sessionStorage) —
    // the fragment was removed from the address bar.
    assert!(!dom.contains(VIEWER_TOKEN));

    let shot = screenshot_path();
    let _ = std::fs::remove_file(&shot);
    let out = base(&[format!("--screenshot={}", shot.display())]);
    assert!(
        shot.exists() && std::fs::metadata(&shot).unwrap().len() > 10_000,
        "no screenshot at {}: {}",
        shot.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("dashboard screenshot: {}", shot.display());
    assert_eq!(d.stop().code(), Some(0));
}
