//! `tollgate demo`: the main job on an embedded default.
//!
//! Builds a workspace from the synthetic generator (tariffs with thousands of
//! prefixes, accounts, the example configuration), starts the real daemon in this
//! process on a free port, drops three months of realistic CDRs (about 1 % bad rows)
//! into its spool the way mediation does (hidden temp file, then rename), waits until
//! every file is committed, scrapes `/metrics`, closes the three months and prints a
//! summary: throughput, rejects by reason, invoices and where everything is.

pub mod synth;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Datelike;

use self::synth::{CdrBatch, Spec};
use crate::billing::{close_cycle, Invoice, Period};
use crate::config::Config;
use crate::ingest::engine::Engine;

/// Runs the demo; `dir` defaults to a new directory under the temp dir.
pub fn run(dir: Option<PathBuf>, records_per_month: u64, accounts: usize) -> anyhow::Result<()> {
    let dir = match dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "tollgate-demo-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        )),
    };
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        anyhow::bail!("demo directory {} is not empty", dir.display());
    }
    std::fs::create_dir_all(&dir)?;
    let spec = Spec {
        seed: 2026,
        accounts,
        prefixes: 3000,
        bad_ratio_ppm: 10_000,
    };
    println!("tollgate demo: workspace {}", dir.display());
    let ws = synth::write_workspace(&dir, &spec).context("writing the demo workspace")?;
    add_bundle(&ws.plans).context("adding the demo's bundle to the basic plan")?;
    let cfg = Config::load(&ws.config)?;
    crate::telemetry::install();
    let engine = Arc::new(Engine::open(cfg.clone())?);
    let reference = engine.reference();
    println!(
        "  tariff {} ({} plans, {} deck rows), {} accounts",
        &reference.tariff.version()[..16],
        reference.tariff.table().plans.len(),
        reference.tariff.table().rows.len(),
        reference.accounts.list.len()
    );

    // The three calendar months before the current one (tariff time zone).
    let today = chrono::Utc::now()
        .with_timezone(&reference.tariff.tz)
        .date_naive();
    let mut months = Vec::new();
    let (mut y, mut m) = (today.year(), today.month());
    for _ in 0..3 {
        (y, m) = if m == 1 { (y - 1, 12) } else { (y, m - 1) };
        months.push(Period { year: y, month: m });
    }
    months.reverse();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let daemon = {
        let engine = engine.clone();
        rt.spawn(crate::ops::daemon::run(
            engine,
            async {
                let _ = stop_rx.await;
            },
            Some(bound_tx),
        ))
    };
    let addr = rt.block_on(bound_rx).context("daemon did not start")?;
    println!("  daemon listening on http://{addr} (metrics at /metrics)");

    // Generate CDR files (two per month) into a staging dir, then drop them atomically.
    let staging = dir.join("mediation");
    std::fs::create_dir_all(&staging)?;
    let mut injected: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut names = Vec::new();
    let mut total_lines = 0u64;
    let mut total_bytes = 0u64;
    for p in &months {
        for part in 1..=2u32 {
            let name = format!("cdr-{p}-{part}.csv");
            let path = staging.join(&name);
            let mut w = std::io::BufWriter::new(std::fs::File::create(&path)?);
            let stats = synth::write_cdrs(
                &mut w,
                &spec,
                &CdrBatch {
                    year: p.year,
                    month: p.month,
                    records: records_per_month / 2,
                    file_tag: format!("{p}-{part}"),
                },
            )?;
            w.flush()?;
            drop(w);
            total_lines += stats.lines;
            total_bytes += std::fs::metadata(&path)?.len();
            for (k, v) in stats.bad {
                *injected.entry(k).or_default() += v;
            }
            names.push(name);
        }
    }
    // A file dropped twice: the second copy must be refused as duplicate_file.
    let dup_src = staging.join(&names[0]);
    let t0 = Instant::now();
    for name in &names {
        drop_into(&staging.join(name), &engine.spool.inbox, name)?;
    }
    println!(
        "  dropped {} files ({} CDRs, {:.1} MB) into {}",
        names.len(),
        total_lines,
        total_bytes as f64 / 1e6,
        engine.spool.inbox.display()
    );
    let committed = wait_for(&engine, names.len(), Duration::from_secs(600))?;
    let secs = t0.elapsed().as_secs_f64();
    drop_into(&dup_src, &engine.spool.inbox, "cdr-again.csv")?;
    wait_until(Duration::from_secs(60), || {
        engine.spool.failed.join("cdr-again.csv.error").exists()
    })?;
    // Mediation re-sends records in a later file: the first 1 000 lines of the first
    // file again, under a new name. What was rated before is `duplicate_record` now (the
    // cross-file check, `dedup_window_days`); a bad row keeps its own reason.
    let resent_name = "cdr-resent.csv";
    let resent: String = std::fs::read_to_string(&dup_src)?
        .lines()
        .take(1001)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(staging.join(resent_name), resent)?;
    drop_into(&staging.join(resent_name), &engine.spool.inbox, resent_name)?;
    let resent = wait_for(&engine, names.len() + 1, Duration::from_secs(60))?
        .into_iter()
        .find(|c| c.name == resent_name);

    let metrics = scrape(addr)?;
    let rated: u64 = committed.iter().map(|c| c.rated).sum();
    let mut rejects: BTreeMap<String, u64> = BTreeMap::new();
    for c in &committed {
        for (k, v) in &c.rejected {
            *rejects.entry(k.clone()).or_default() += v;
        }
    }
    println!();
    println!("Rating");
    println!(
        "  {} records in {:.2} s from first drop to last commit: {:.0} records/s (spool polling included)",
        total_lines,
        secs,
        total_lines as f64 / secs
    );
    println!("  rated {rated}, rejected {}", total_lines - rated);
    for (reason, n) in &rejects {
        println!(
            "    {reason:<18} {n:>8}   (injected {})",
            injected.get(reason.as_str()).copied().unwrap_or(0)
        );
    }
    let err = std::fs::read_to_string(engine.spool.failed.join("cdr-again.csv.error"))
        .unwrap_or_default();
    println!(
        "  the same file dropped again as cdr-again.csv went to failed/: {}",
        err.trim()
    );
    if let Some(c) = resent {
        let dups = c.rejected.get("duplicate_record").copied().unwrap_or(0);
        println!(
            "  {} lines of {} sent again as {resent_name}: {} rated, {dups} rejected as duplicate_record, {} for their own reason (bad rows stay bad)",
            c.lines,
            names[0],
            c.rated,
            c.lines - c.rated - dups
        );
    }
    println!("  /metrics says:");
    for line in metrics.lines().filter(|l| {
        l.starts_with("tollgate_records_total{outcome=\"rated\"")
            || l.starts_with("tollgate_files_total")
            || l.starts_with("tollgate_ingested_bytes_total")
    }) {
        println!("    {line}");
    }

    println!();
    println!("Billing");
    for p in &months {
        let s = close_cycle(
            &cfg,
            &engine.ledger,
            &reference.tariff,
            &reference.accounts,
            *p,
            today,
        )?;
        println!(
            "  closed {} [{}]",
            s.record.summary(),
            reference.tariff.currency()
        );
    }
    let last = months.last().expect("three months");
    let rec = engine
        .ledger
        .close_record(&last.to_string())?
        .expect("closed");
    // Show a typical invoice: the first with a handful of lines, of the bundle plan
    // (allowance lines) when one has them.
    let mut shown = None;
    for n in &rec.invoices {
        let inv: Invoice = serde_json::from_slice(&engine.ledger.invoice(n)?.expect("stored"))?;
        if !(5..=14).contains(&inv.lines.len()) {
            continue;
        }
        let bundle = inv
            .lines
            .iter()
            .any(|l| matches!(l, crate::billing::Line::Allowance { .. }));
        if bundle {
            shown = Some(inv);
            break;
        }
        if shown.is_none() {
            shown = Some(inv);
        }
    }
    if let Some(inv) = shown {
        println!();
        println!(
            "  invoice {} for {} ({}), period {}:",
            inv.number, inv.account_id, inv.customer.name, inv.period
        );
        for l in &inv.lines {
            match l {
                crate::billing::Line::Usage {
                    service,
                    destination,
                    band,
                    quantity,
                    usage,
                    unit,
                    amount,
                    ..
                } => {
                    println!("    {service:<5} {destination:<28} {band:<8} {quantity:>6} x  {usage:>12} {unit:<8} {amount:>10}")
                }
                crate::billing::Line::Allowance { amount, .. } => {
                    println!("    {:<69} {amount:>10}", l.description())
                }
                crate::billing::Line::Subscription {
                    description,
                    amount,
                    ..
                }
                | crate::billing::Line::Fee {
                    description,
                    amount,
                    ..
                }
                | crate::billing::Line::Credit {
                    description,
                    amount,
                    ..
                } => {
                    println!("    {description:<69} {amount:>10}")
                }
            }
        }
        println!("    {:<69} {:>10}", "net", inv.net_total);
        println!(
            "    {:<69} {:>10}",
            format!("VAT {} %", inv.vat_rate),
            inv.vat_total
        );
        println!(
            "    {:<69} {:>10}",
            format!("total due by {}", inv.due_date),
            inv.total
        );
    }
    let _ = stop_tx.send(());
    rt.block_on(daemon)??;

    println!();
    println!("Where things are");
    println!("  config       {}", ws.config.display());
    println!("  invoices     {}", cfg.invoice_dir.display());
    println!("  rejects      {}", engine.spool.rejects.display());
    println!(
        "  done/failed  {} / {}",
        engine.spool.done.display(),
        engine.spool.failed.display()
    );
    println!("  database     {}", engine.ledger.path().display());
    Ok(())
}

/// The demo's `basic` plan sells a bundle, as carriers do: an hour of national calls and
/// 100 SMS included each month, then the deck's rates (drawn at the close; the invoice
/// shown lists the allowance lines).
fn add_bundle(plans: &std::path::Path) -> std::io::Result<()> {
    let text = std::fs::read_to_string(plans)?;
    let marker = "id = \"basic\"\n";
    let Some(at) = text.find(marker) else {
        return Err(std::io::Error::other("no basic plan in plans.toml"));
    };
    let end = text[at..].find("[[plan]]").map_or(text.len(), |i| at + i);
    let bundle = "[[plan.allowance]]\nname = \"60 min national\"\nservice = \"voice\"\n\
                  destinations = [\"Netherlands Fixed\", \"Netherlands Mobile\"]\nunits = 3600\n\
                  [[plan.allowance]]\nname = \"100 SMS\"\nservice = \"sms\"\nunits = 100\n";
    let mut out = String::with_capacity(text.len() + bundle.len());
    out.push_str(&text[..end]);
    out.push_str(bundle);
    out.push_str(&text[end..]);
    crate::fsutil::write_atomic(plans, out.as_bytes())
}

fn drop_into(src: &std::path::Path, inbox: &std::path::Path, name: &str) -> std::io::Result<()> {
    let tmp = inbox.join(format!(".{name}.part"));
    std::fs::copy(src, &tmp)?;
    std::fs::rename(&tmp, inbox.join(name))
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let t0 = Instant::now();
    while !f() {
        if t0.elapsed() > limit {
            anyhow::bail!("timed out after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn wait_for(
    engine: &Engine,
    n: usize,
    limit: Duration,
) -> anyhow::Result<Vec<crate::store::Checkpoint>> {
    let mut files = Vec::new();
    wait_until(limit, || {
        files = engine.ledger.files().unwrap_or_default();
        files.len() >= n
            && crate::ingest::spool::Spool::list(&engine.spool.work)
                .map(|l| l.is_empty())
                .unwrap_or(false)
    })?;
    Ok(files)
}

/// GET /metrics over plain HTTP/1.1.
pub fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or(body))
}
