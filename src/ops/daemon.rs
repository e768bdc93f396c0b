//! The long-running daemon: spool watcher (tokio), file processor (its own thread,
//! feeding the rating pool), HTTP endpoint (metrics, health, the `/api/v1` operator API),
//! and graceful shutdown.
//!
//! `run(engine, shutdown)` returns when `shutdown` resolves: the watcher stops, the
//! file being rated is abandoned (it stays in `work/` and is redone at the next start;
//! nothing of it was committed), and the HTTP server stops.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{bounded, Receiver, TryRecvError};
use tokio::sync::oneshot;

use crate::ingest::engine::{Engine, FileResult};
use crate::ingest::spool::Spool;
use crate::telemetry as m;

/// A started daemon's address, reported once the HTTP endpoint is bound.
pub type Bound = oneshot::Sender<SocketAddr>;

/// Runs the daemon until `shutdown` resolves.
pub async fn run(
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()>,
    bound: Option<Bound>,
) -> anyhow::Result<()> {
    let handle = m::install();
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(engine.cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", engine.cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening on http://{addr}");
    // SIGHUP is taken over before anyone can know the daemon is up (listen.addr, `bound`):
    // until then its default action would end the process.
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    let addr_file = engine.cfg.data_dir.join("listen.addr");
    let _ = std::fs::write(&addr_file, format!("{addr}\n"));
    if let Some(b) = bound {
        let _ = b.send(addr);
    }
    let (stop_http_tx, stop_http_rx) = oneshot::channel::<()>();
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "listening beyond loopback: the API is protected by tokens only; put TLS in front of it");
    }
    engine.live.seed(&engine.ledger);
    let app = crate::ops::http::router(crate::ops::http::HttpState {
        metrics: handle.clone(),
        ready: ready.clone(),
    })
    .merge(crate::ops::api::router(crate::ops::api::ApiState::new(
        engine.clone(),
    )))
    .merge(crate::ops::api::psp::router(engine.clone()))
    .merge(crate::ops::dashboard::page_router())
    .merge(crate::ops::selfservice::router(engine.clone()));
    let server = tokio::spawn(async move {
        // The peer address is the client of the self-service page's per-client limit.
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stop_http_rx.await;
        })
        .await
    });

    let cancel = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    let (scan_tx, scan_rx) = bounded::<Vec<String>>(1);
    let processor = {
        let engine = engine.clone();
        let cancel = cancel.clone();
        let ready = ready.clone();
        let hup = hup.clone();
        std::thread::Builder::new()
            .name("tollgate-files".into())
            .spawn(move || process_loop(&engine, scan_rx, &cancel, &ready, &hup))?
    };

    let hangup = {
        let hup = hup.clone();
        tokio::spawn(async move {
            let Ok(mut s) = hangups else {
                return;
            };
            while s.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading tariff and accounts");
                hup.store(true, Ordering::SeqCst);
            }
        })
    };

    let upkeep = {
        let handle = handle.clone();
        let ledger = engine.ledger.clone();
        let workers = engine.cfg.workers;
        metrics::gauge!(m::WORKERS).set(workers as f64);
        tokio::spawn(async move {
            let mut t = tokio::time::interval(Duration::from_secs(5));
            let mut last = (
                std::time::Instant::now(),
                m::WORKER_BUSY_NANOS.load(Ordering::Relaxed),
            );
            loop {
                t.tick().await;
                handle.run_upkeep();
                let l = ledger.clone();
                if let Ok(db) = tokio::task::spawn_blocking(move || l.db_stats()).await {
                    metrics::gauge!(m::DB_SIZE).set(db.size as f64);
                    metrics::gauge!(m::DB_PENDING_COMPACTION)
                        .set(db.pending_compaction_bytes as f64);
                    metrics::gauge!(m::DB_RUNNING_COMPACTIONS).set(db.running_compactions as f64);
                    m::DB_STALL_MICROS.store(db.stall_micros, Ordering::Relaxed);
                }
                let now = (
                    std::time::Instant::now(),
                    m::WORKER_BUSY_NANOS.load(Ordering::Relaxed),
                );
                let wall = (now.0 - last.0).as_nanos() as f64 * workers as f64;
                if wall > 0.0 {
                    let busy = now.1.saturating_sub(last.1) as f64;
                    metrics::gauge!(m::WORKER_UTILIZATION).set((busy / wall).min(1.0));
                }
                last = now;
            }
        })
    };

    // Dunning (when configured) and traffic data retention, once a day each.
    let dunning = engine
        .cfg
        .dunning
        .is_some()
        .then(|| daily(engine.clone(), run_dunning));
    let retention = daily(engine.clone(), run_retention);
    // Document delivery (when configured): at start (a message left `sending` by a
    // killed process becomes `interrupted`) and every DAEMON_TICK, so a close, a credit
    // note or a final invoice issued through the API goes out within seconds.
    let delivery = engine.cfg.delivery.is_some().then(|| {
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(crate::billing::delivery::DAEMON_TICK);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                t.tick().await;
                let e = engine.clone();
                let done = tokio::task::spawn_blocking(move || {
                    let r = e.reference();
                    crate::billing::delivery::run(
                        &e.cfg,
                        &e.ledger,
                        &r.accounts,
                        chrono::Utc::now(),
                    )
                })
                .await;
                if let Ok(Err(e)) = done {
                    tracing::error!(error = %e, "document delivery run failed");
                }
            }
        })
    });

    // For the end of the shutdown: once no file is being processed, the cross-file
    // filter is kept for the next start.
    let keeper = engine.clone();
    let watcher = {
        let spool = engine.spool.clone();
        let every = engine.cfg.poll_interval;
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                t.tick().await;
                let s = spool.clone();
                let listed = tokio::task::spawn_blocking(move || {
                    let (waiting, bad) = Spool::list_all(&s.inbox)?;
                    for raw in bad {
                        match s.fail_bad_name(&raw) {
                            Ok(to) => tracing::warn!(file = %to.display(), "file name is not UTF-8; moved to failed/"),
                            Err(e) => tracing::error!(error = %e, "cannot move a file with a non-UTF-8 name"),
                        }
                    }
                    Ok::<_, std::io::Error>(waiting)
                })
                .await;
                let Ok(Ok(waiting)) = listed else {
                    tracing::warn!(dir = %spool.inbox.display(), "cannot list the inbox");
                    continue;
                };
                let bytes: u64 = waiting.iter().map(|w| w.size).sum();
                let oldest = waiting
                    .iter()
                    .map(|w| w.modified)
                    .min()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .map_or(0.0, |d| d.as_secs_f64());
                metrics::gauge!(m::BACKLOG_FILES).set(waiting.len() as f64);
                metrics::gauge!(m::BACKLOG_BYTES).set(bytes as f64);
                metrics::gauge!(m::OLDEST_AGE).set(oldest);
                engine.live.set_backlog(waiting.len() as u64, bytes, oldest);
                if !waiting.is_empty() {
                    // Dropped when the processor is busy: the next tick offers again.
                    if let Err(crossbeam_channel::TrySendError::Disconnected(_)) =
                        scan_tx.try_send(waiting.into_iter().map(|w| w.name).collect())
                    {
                        break;
                    }
                }
            }
        })
    };

    shutdown.await;
    tracing::info!("shutting down");
    watcher.abort();
    upkeep.abort();
    retention.abort();
    if let Some(d) = dunning {
        d.abort();
    }
    if let Some(d) = delivery {
        d.abort();
    }
    hangup.abort();
    cancel.store(true, Ordering::SeqCst);
    let _ = tokio::task::spawn_blocking(move || processor.join()).await;
    let _ = tokio::task::spawn_blocking(move || keeper.keep_dedup_filter()).await;
    let _ = stop_http_tx.send(());
    let _ = server.await;
    let _ = std::fs::remove_file(addr_file);
    tracing::info!("stopped");
    Ok(())
}

/// One daily retention run (traffic detail past the dispute window); false when it
/// failed (it is retried a minute later).
fn run_retention(engine: &Engine, today: chrono::NaiveDate) -> bool {
    // The cross-file duplicate index forgets the ids whose window ended.
    engine.dedup_upkeep(chrono::Utc::now().timestamp());
    match crate::billing::privacy::retention(&engine.cfg, &engine.ledger, today) {
        Ok(rep) => {
            tracing::info!(
                date = %today, files = rep.files.len(), rejects = rep.rejects.len(),
                annexes = rep.annexes.len(), "traffic data retention run"
            );
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "traffic data retention run failed");
            false
        }
    }
}

/// Runs `job` on a blocking thread at start and then whenever the local date (tariff
/// time zone) changes; a run that reports failure is retried a minute later.
fn daily(
    engine: Arc<Engine>,
    job: fn(&Engine, chrono::NaiveDate) -> bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut t = tokio::time::interval(Duration::from_secs(60));
        let mut last: Option<chrono::NaiveDate> = None;
        loop {
            t.tick().await;
            let today = chrono::Utc::now()
                .with_timezone(&engine.reference().tariff.tz)
                .date_naive();
            if last == Some(today) {
                continue;
            }
            let e = engine.clone();
            let done = tokio::task::spawn_blocking(move || job(&e, today)).await;
            if matches!(done, Ok(true)) {
                last = Some(today);
            }
        }
    })
}

/// One daily dunning run; false when it failed (it is retried a minute later).
fn run_dunning(engine: &Engine, today: chrono::NaiveDate) -> bool {
    let r = engine.reference();
    let currency = r.tariff.currency().to_owned();
    match crate::payments::dunning::run(&engine.cfg, &engine.ledger, &r.accounts, &currency, today)
    {
        Ok(rep) => {
            tracing::info!(
                date = %today, steps = rep.steps.len(), fees = rep.fees.len(),
                sent = rep.messages_sent, pending = rep.messages_pending, "dunning run"
            );
            true
        }
        Err(e) => {
            tracing::error!(error = %e, "dunning run failed");
            false
        }
    }
}

/// Recovers `work/`, then processes inbox files as the watcher offers them.
fn process_loop(
    engine: &Engine,
    scans: Receiver<Vec<String>>,
    cancel: &Arc<AtomicBool>,
    ready: &AtomicBool,
    hup: &AtomicBool,
) {
    match Spool::list(&engine.spool.work) {
        Ok(left) => {
            for w in left {
                if cancel.load(Ordering::SeqCst) {
                    return;
                }
                tracing::info!(file = %w.name, "recovering a file left in work/");
                handle_file(engine, &w.name, true, cancel);
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot list work/"),
    }
    ready.store(true, Ordering::Release);
    loop {
        if cancel.load(Ordering::SeqCst) {
            return;
        }
        if hup.swap(false, Ordering::SeqCst) {
            reload(engine, true);
        }
        let names = match scans.recv_timeout(Duration::from_millis(100)) {
            Ok(n) => n,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        };
        for name in names {
            if cancel.load(Ordering::SeqCst) {
                return;
            }
            match engine.spool.claim(&name) {
                Ok(true) => handle_file(engine, &name, false, cancel),
                Ok(false) => {}
                Err(e) => tracing::error!(file = %name, error = %e, "cannot claim"),
            }
        }
        // Drain a stale offer made while we were busy.
        if let Err(TryRecvError::Disconnected) = scans.try_recv() {
            return;
        }
    }
}

/// Picks up edited tariff or accounts files (and SIGHUP requests) before a file.
fn reload(engine: &Engine, force: bool) {
    match engine.reload(force) {
        Ok(true) => {
            let r = engine.reference();
            tracing::info!(
                tariff = &r.tariff.version()[..16],
                accounts = r.accounts.list.len(),
                "tariff and accounts reloaded"
            );
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "reload refused; the tariff and accounts in service stay")
        }
    }
}

fn handle_file(engine: &Engine, name: &str, recovering: bool, cancel: &Arc<AtomicBool>) {
    if !recovering {
        reload(engine, false);
    }
    let path = engine.spool.work.join(name);
    match engine.process(&path, name, recovering, cancel.clone()) {
        FileResult::Committed(r) => {
            let cp = &r.checkpoint;
            tracing::info!(
                file = %name, seq = cp.seq, lines = cp.lines, rated = cp.rated,
                rejected = cp.lines - cp.rated, seconds = r.seconds, "file committed"
            );
            if let Err(e) = engine.spool.finish(name) {
                tracing::error!(file = %name, error = %e, "committed but cannot move to done/");
            }
        }
        FileResult::AlreadyCommitted(cp) => {
            tracing::info!(file = %name, seq = cp.seq, "file was committed before; moving to done/");
            if let Err(e) = engine.spool.finish(name) {
                tracing::error!(file = %name, error = %e, "cannot move to done/");
            }
        }
        FileResult::Duplicate(reason) | FileResult::Failed(reason) => {
            tracing::warn!(file = %name, %reason, "file failed");
            if let Err(e) = engine.spool.fail(name, &reason) {
                tracing::error!(file = %name, error = %e, "cannot move to failed/");
            }
        }
        FileResult::Cancelled => {
            tracing::info!(file = %name, "rating abandoned by shutdown; the file stays in work/ and is redone at the next start");
        }
    }
}
