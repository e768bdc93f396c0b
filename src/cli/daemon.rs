//! `run`, `ingest` and `token`: the daemon, its pipeline run once, its API tokens.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::args::TokenCmd;
use crate::config::Config;
use crate::ingest::engine::{Engine, FileResult};

/// `run`: the daemon in the foreground until SIGTERM or SIGINT.
pub fn run(cfg: Config) -> Result<ExitCode> {
    crate::telemetry::install();
    let engine = Arc::new(Engine::open(cfg)?);
    // The cross-file filter is read from the index before the first file is taken.
    engine.dedup_warm()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(crate::ops::daemon::run(engine, shutdown_signal(), None))?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

/// `ingest`: rate and commit files once; code 1 when one failed.
pub fn ingest(cfg: Config, stats: bool, files: &[PathBuf]) -> Result<ExitCode> {
    let engine = Engine::open(cfg)?;
    engine.dedup_warm()?;
    let mut failed = 0;
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{} has no file name", path.display()))?;
        if !path.is_file() {
            eprintln!("{}: failed: not a readable file", path.display());
            failed += 1;
            continue;
        }
        match engine.process(path, &name, false, Arc::new(AtomicBool::new(false))) {
            FileResult::Committed(r) => {
                let cp = &r.checkpoint;
                // The close re-derives rated detail (itemised annexes) from done/.
                if let Err(e) = engine.spool.keep_done(path, &name) {
                    eprintln!(
                        "{}: warning: not kept in {}: {e} (no itemised annex for its records)",
                        path.display(),
                        engine.spool.done.display()
                    );
                }
                println!(
                    "{}: committed seq {}: {} lines, {} rated, {} rejected{}",
                    path.display(),
                    cp.seq,
                    cp.lines,
                    cp.rated,
                    cp.lines - cp.rated,
                    r.rejects_file
                        .as_ref()
                        .map(|p| format!(" (rejects in {})", p.display()))
                        .unwrap_or_default()
                );
                if stats {
                    println!("{}", crate::ingest::engine::stats_json(&r));
                }
            }
            FileResult::AlreadyCommitted(cp) => {
                println!(
                    "{}: already committed (seq {}), nothing to do",
                    path.display(),
                    cp.seq
                );
            }
            FileResult::Duplicate(reason) | FileResult::Failed(reason) => {
                eprintln!("{}: failed: {reason}", path.display());
                failed += 1;
            }
            FileResult::Cancelled => bail!("cancelled"),
        }
    }
    engine.close_for_exit();
    Ok(super::failures(failed))
}

/// `token add`: the new token on stdout (once), what was done on stderr.
pub fn token(cfg: Config, config: &Path, cmd: TokenCmd) -> Result<ExitCode> {
    let TokenCmd::Add { name, role } = cmd;
    let path = cfg
        .api_tokens_file
        .with_context(|| format!("{}: set `api_tokens_file` to add tokens", config.display()))?;
    let role: crate::ops::auth::Role = role.parse().map_err(anyhow::Error::msg)?;
    let token = crate::ops::auth::add(&path, &name, role)?;
    eprintln!(
        "added token `{name}` ({}) to {}; it is shown once, store it now:",
        role.name(),
        path.display()
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
