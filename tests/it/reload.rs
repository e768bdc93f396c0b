//! Tariff hot reload under load: files are dropped while the deck flips between two
//! price versions and the daemon is told to reload (SIGHUP and `POST
//! /api/v1/tariffs/reload`) over and over. No record is lost or rated twice, and every
//! file's checkpoint names exactly one tariff version whose prices its total matches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

/// Version (first 16 hex digits) of the workspace's tariff as it is on disk now.
fn version_on_disk(ws: &Ws) -> String {
    let out = run(&["tariff", "check", "--config", ws.config_arg()]).ok();
    out.stdout
        .split("version ")
        .nth(1)
        .expect("version in tariff check output")
        .trim()
        .to_owned()
}

fn write_deck(ws: &Ws, deck: &str) {
    let path = ws.root.join("tariffs/deck.csv");
    let tmp = ws.root.join("tariffs/.deck.csv.tmp");
    std::fs::write(&tmp, deck).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

#[test]
fn files_rated_while_the_tariff_reloads_use_one_version_each() {
    let ws = Ws::hand_with("api_tokens_file = \"tokens.csv\"\n");
    let op = ws.add_token("ops", "operator");
    // Version 1: NL voice 0.10 + 0.60 / 60 s; version 2: 0.10 + 1.20 / 60 s. A 60 s call
    // costs 0.700000 or 1.300000.
    let v1_deck = HAND_DECK.to_owned();
    let v2_deck = HAND_DECK.replace(
        "31,Netherlands,voice,any,0.10,0.60",
        "31,Netherlands,voice,any,0.10,1.20",
    );
    write_deck(&ws, &v2_deck);
    let v2 = version_on_disk(&ws);
    write_deck(&ws, &v1_deck);
    let v1 = version_on_disk(&ws);
    assert_ne!(v1, v2);
    let price = |version: &str| -> i64 {
        if version.starts_with(&v1) {
            700_000
        } else if version.starts_with(&v2) {
            1_300_000
        } else {
            panic!("file rated with unknown tariff version {version}")
        }
    };

    let d = Daemon::start(&ws);
    let addr = d.addr;
    let pid = d.pid;
    let stop = Arc::new(AtomicBool::new(false));
    let reloader = {
        let stop = stop.clone();
        let root = ws.root.clone();
        let op = op.clone();
        std::thread::spawn(move || {
            let mut reloads = (0u32, 0u32);
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let deck = if i.is_multiple_of(2) {
                    &v2_deck
                } else {
                    &v1_deck
                };
                let tmp = root.join("tariffs/.deck.csv.tmp");
                std::fs::write(&tmp, deck).unwrap();
                std::fs::rename(&tmp, root.join("tariffs/deck.csv")).unwrap();
                if i.is_multiple_of(3) {
                    // SAFETY: kill(2) on our own child's pid.
                    unsafe { libc::kill(pid, libc::SIGHUP) };
                    reloads.0 += 1;
                } else {
                    let r = http_request(
                        addr,
                        "POST",
                        "/api/v1/tariffs/reload",
                        &[("Authorization", &format!("Bearer {op}"))],
                        b"",
                    );
                    assert_eq!(r.status, 200, "{}", r.text());
                    reloads.1 += 1;
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(15));
            }
            reloads
        })
    };

    let accounts = ["A1", "A2", "A3"];
    let mut sizes = Vec::new();
    let mut per_account = [0u64; 3];
    for f in 0..30u64 {
        let k = 300 + 41 * f;
        let rows: Vec<String> = (0..k)
            .map(|j| {
                let a = ((f + j) % 3) as usize;
                per_account[a] += 1;
                format!(
                    "f{f}-{j},{},voice,31612345678,31201234567,2026-10-{:02}T10:00:00Z,60,",
                    accounts[a],
                    1 + j % 28
                )
            })
            .collect();
        let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
        ws.drop_file(&format!("load-{f:02}.csv"), &cdr_file(&refs));
        sizes.push(k);
        std::thread::sleep(Duration::from_millis(40));
    }
    let auth = format!("Bearer {op}");
    let get = |path: &str| -> Value {
        let r = http_request(addr, "GET", path, &[("Authorization", &auth)], b"");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        r.json()
    };
    d.wait_until("all files committed", || {
        get("/api/v1/files?status=committed&limit=1000")
            .as_array()
            .unwrap()
            .len()
            == sizes.len()
    });
    stop.store(true, Ordering::SeqCst);
    let (hups, posts) = reloader.join().unwrap();
    assert!(
        hups >= 5 && posts >= 10,
        "only {hups} SIGHUPs and {posts} API reloads"
    );

    let files = get("/api/v1/files?status=committed&limit=1000");
    let mut used = std::collections::BTreeSet::new();
    let mut rated_total = 0;
    for f in files.as_array().unwrap() {
        let name = f["name"].as_str().unwrap();
        let i: usize = name[5..7].parse().unwrap();
        let k = sizes[i];
        assert_eq!(f["lines"], k, "{name}");
        assert_eq!(f["rated"], k, "{name}");
        let version = f["tariffVersion"].as_str().unwrap();
        let want = k as i64 * price(version);
        assert_eq!(
            f["charge"]["value"],
            format!("{}.{:06}", want / 1_000_000, want % 1_000_000),
            "{name} rated with {version}: its total matches that version's price"
        );
        used.insert(version[..16].to_owned());
        rated_total += k;
    }
    assert_eq!(
        used.len(),
        2,
        "every file was rated with the same version; reloads did not interleave with files"
    );
    assert_eq!(rated_total, sizes.iter().sum::<u64>());
    // Nothing lost, nothing counted twice: the ledger's per-account totals.
    for (a, want) in accounts.iter().zip(per_account) {
        let u = get(&format!("/api/v1/accounts/{a}/usage?period=2026-10"));
        let q: u64 = u["usage"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["quantity"].as_u64().unwrap())
            .sum();
        assert_eq!(q, want, "{a}");
    }
    assert!(ws.names("failed").is_empty(), "{:?}", ws.names("failed"));
    assert_eq!(d.stop().code(), Some(0));
}

/// Regression: `listen.addr` was written before the SIGHUP handler was installed, so a
/// SIGHUP in that window (the reload test sends one at once) ended the daemon with the
/// signal's default action. Each of these hangups arrives right after the address does.
#[test]
fn sighup_as_soon_as_the_address_is_known_does_not_end_the_daemon() {
    for _ in 0..5 {
        let ws = Ws::hand();
        let d = Daemon::start(&ws);
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(d.pid, libc::SIGHUP) };
        std::thread::sleep(Duration::from_millis(200));
        assert!(d.alive(), "the daemon ended on SIGHUP:\n{}", d.log());
        assert_eq!(d.get("/healthz").0, 200);
        d.stop();
    }
}

/// Regression: the daemon noticed an edited deck by the paths its compiled archive keeps
/// (where the decks were when it was compiled). Once the deployment had moved it watched
/// files no longer there, and an edited deck went unnoticed until a SIGHUP: the next
/// files were rated with the old prices. It watches the decks the sources name now.
#[test]
fn an_edited_deck_is_noticed_after_the_deployment_moved() {
    let tmp = tempfile::Builder::new()
        .prefix("tollgate-e2e-")
        .tempdir()
        .unwrap();
    let before = tmp.path().join("deployment");
    std::fs::create_dir_all(before.join("tariffs")).unwrap();
    std::fs::write(before.join("tariffs/plans.toml"), HAND_PLANS).unwrap();
    std::fs::write(before.join("tariffs/deck.csv"), HAND_DECK).unwrap();
    std::fs::write(before.join("accounts.csv"), HAND_ACCOUNTS).unwrap();
    std::fs::write(
        before.join("tollgate.toml"),
        hand_config("api_tokens_file = \"tokens.csv\"\n"),
    )
    .unwrap();
    let config = before.join("tollgate.toml");
    run(&["tariff", "compile", "--config", config.to_str().unwrap()]).ok();
    let after = tmp.path().join("moved");
    std::fs::rename(&before, &after).unwrap();
    let ws = Ws::at(&after);
    let op = ws.add_token("ops", "operator");
    // `quote` names the deck where it is now, not where the archive was compiled.
    let q = run(&[
        "quote",
        "--config",
        ws.config_arg(),
        "--account",
        "A1",
        "--service",
        "voice",
        "--to",
        "0031201234567",
        "--at",
        "2026-10-05T10:00:00+02:00",
        "--usage",
        "60",
    ])
    .ok();
    let q: Value = serde_json::from_str(&q.stdout).unwrap();
    assert_eq!(
        (&q["charge"], &q["row"]["deck"]),
        (
            &serde_json::json!("0.700000"),
            &serde_json::json!(after.join("tariffs/deck.csv").to_str().unwrap())
        )
    );
    let d = Daemon::start(&ws);
    // NL 60 s: 0.10 + 0.60 = 0.70; after the edit 0.10 + 1.20 = 1.30.
    let call = |id: &str| {
        cdr_file(&[&format!(
            "{id},A1,voice,31612345678,31201234567,2026-10-02T10:00:00Z,60,"
        )])
    };
    ws.drop_file("a.csv", &call("a"));
    d.wait_until("a.csv committed", || ws.names("done").len() == 1);
    write_deck(
        &ws,
        &HAND_DECK.replace(
            "31,Netherlands,voice,any,0.10,0.60",
            "31,Netherlands,voice,any,0.10,1.20",
        ),
    );
    ws.drop_file("b.csv", &call("b"));
    d.wait_until("b.csv committed", || ws.names("done").len() == 2);
    let r = http_request(
        d.addr,
        "GET",
        "/api/v1/files?status=committed&limit=10",
        &[("Authorization", &format!("Bearer {op}"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut charges: Vec<(String, String)> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["charge"]["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    charges.sort();
    assert_eq!(
        charges,
        [
            ("a.csv".to_owned(), "0.700000".to_owned()),
            ("b.csv".to_owned(), "1.300000".to_owned())
        ]
    );
    assert_eq!(d.stop().code(), Some(0));
}
