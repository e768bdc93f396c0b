//! The `tollgate` command line: parse → load config → run → exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};

use tollgate::billing::{close_cycle, Period};
use tollgate::config::Config;
use tollgate::engine::{Engine, FileResult};

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Telecom usage rating and billing daemon"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon in the foreground (SIGTERM/SIGINT stop it gracefully).
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Rate files once through the daemon's pipeline and commit path, then exit.
    Ingest {
        #[arg(long)]
        config: PathBuf,
        /// Print one JSON line of figures per file (records/s, chunk latency, peak RSS).
        #[arg(long)]
        stats: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Billing cycles.
    Cycle {
        #[command(subcommand)]
        cmd: CycleCmd,
    },
    /// Check or compile the tariff plans and decks.
    Tariff {
        #[command(subcommand)]
        cmd: TariffCmd,
    },
    /// What one record would cost, and which deck row prices it.
    Quote {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        account: String,
        #[arg(long)]
        service: String,
        /// Called number (empty for data).
        #[arg(long, default_value = "")]
        to: String,
        /// Start time, RFC 3339.
        #[arg(long)]
        at: String,
        /// Usage: seconds (voice), bytes (data); ignored for sms.
        #[arg(long, default_value_t = 1)]
        usage: u64,
    },
    /// Usage, revenue or rejects of a period, as CSV, JSON or HTML (works while the daemon runs).
    Report {
        #[arg(value_enum)]
        kind: ReportKind,
        #[arg(long)]
        config: PathBuf,
        /// The period, YYYY-MM.
        #[arg(long)]
        period: String,
        /// Row grouping (default: service; rejects: reason).
        #[arg(long, value_enum)]
        by: Option<ReportBy>,
        #[arg(long, value_enum, default_value_t = ReportFormat::Csv)]
        format: ReportFormat,
        /// Length of the top destinations and accounts lists.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// The end-to-end demo on an embedded default workspace.
    Demo {
        /// Workspace directory (default: a new directory under the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// CDRs per month.
        #[arg(long, default_value_t = 400_000)]
        records: u64,
        /// Number of accounts.
        #[arg(long, default_value_t = 5_000)]
        accounts: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportKind {
    Usage,
    Revenue,
    Rejects,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportBy {
    Day,
    Destination,
    Service,
    Plan,
    Account,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Csv,
    Json,
    Html,
}

#[derive(Subcommand)]
enum CycleCmd {
    /// Close a billing period and write its invoices.
    Close {
        #[arg(long)]
        config: PathBuf,
        /// The period, YYYY-MM.
        #[arg(long)]
        period: String,
        /// Issue date (default: today in the tariff time zone).
        #[arg(long)]
        issue_date: Option<String>,
    },
}

#[derive(Subcommand)]
enum TariffCmd {
    /// Validate the plans and decks.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Write the compiled archive.
    Compile {
        #[arg(long)]
        config: PathBuf,
    },
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn load(config: &std::path::Path) -> anyhow::Result<Config> {
    Ok(Config::load(config)?)
}

fn run(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Run { config } => {
            let cfg = load(&config)?;
            tollgate::telemetry::install();
            let engine = Arc::new(Engine::open(cfg)?);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(tollgate::daemon::run(engine, shutdown_signal(), None))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ingest {
            config,
            stats,
            files,
        } => ingest(&config, stats, &files),
        Cmd::Cycle {
            cmd:
                CycleCmd::Close {
                    config,
                    period,
                    issue_date,
                },
        } => {
            let cfg = load(&config)?;
            let period: Period = period.parse().map_err(anyhow::Error::msg)?;
            let engine = Engine::open(cfg)?;
            let reference = engine.reference();
            let issue = match issue_date {
                Some(d) => chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                    .with_context(|| format!("--issue-date `{d}` is not YYYY-MM-DD"))?,
                None => chrono::Utc::now()
                    .with_timezone(&reference.tariff.tz)
                    .date_naive(),
            };
            let s = close_cycle(
                &engine.cfg,
                &engine.ledger,
                &reference.tariff,
                &reference.accounts,
                period,
                issue,
            )?;
            let r = &s.record;
            if s.new {
                println!("closed {}, in {}", r.summary(), s.dir.display());
            } else {
                println!(
                    "{} was already closed on {}: {} invoices, files checked in {}",
                    r.period,
                    r.closed_at,
                    r.invoices.len(),
                    s.dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Tariff { cmd } => {
            let (config, compile) = match cmd {
                TariffCmd::Check { config } => (config, false),
                TariffCmd::Compile { config } => (config, true),
            };
            let cfg = load(&config)?;
            let t0 = std::time::Instant::now();
            let src = tollgate::tariff::Source::load(&cfg.tariff_plans)?;
            let rows: usize = src.decks.iter().map(|d| d.rows.len()).sum();
            println!(
                "tariff {}: {} plans, {} decks, {} rows, {} bands, version {}",
                cfg.tariff_plans.display(),
                src.plans.len(),
                src.decks.len(),
                rows,
                src.bands.len(),
                &src.version[..16]
            );
            if compile {
                let path = tollgate::tariff::compile(&src, &cfg.data_dir)?;
                tollgate::tariff::Tariff::open(&path)?;
                println!(
                    "compiled to {} in {:.3} s",
                    path.display(),
                    t0.elapsed().as_secs_f64()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Quote {
            config,
            account,
            service,
            to,
            at,
            usage,
        } => {
            let cfg = load(&config)?;
            let reference = Engine::load_reference(&cfg)?;
            println!(
                "{}",
                tollgate::engine::quote(&reference, &account, &service, &to, &at, usage)
                    .map_err(anyhow::Error::msg)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Report {
            kind,
            config,
            period,
            by,
            format,
            top,
        } => {
            use tollgate::report::{self, By, Format, Kind};
            let cfg = load(&config)?;
            let period: Period = period.parse().map_err(anyhow::Error::msg)?;
            let by = by.map(|b| match b {
                ReportBy::Day => By::Day,
                ReportBy::Destination => By::Destination,
                ReportBy::Service => By::Service,
                ReportBy::Plan => By::Plan,
                ReportBy::Account => By::Account,
            });
            let format = match format {
                ReportFormat::Csv => Format::Csv,
                ReportFormat::Json => Format::Json,
                ReportFormat::Html => Format::Html,
            };
            let ledger = tollgate::ledger::Ledger::open_read_only(&cfg.data_dir)?;
            let out = match kind {
                ReportKind::Rejects => {
                    report::render_rejects(&report::rejects_report(&ledger, period, by)?, format)
                }
                ReportKind::Usage | ReportKind::Revenue => {
                    let kind = if matches!(kind, ReportKind::Revenue) {
                        Kind::Revenue
                    } else {
                        Kind::Usage
                    };
                    // A broken tariff edit must not stop a report: only the currency is read.
                    let currency = tollgate::tariff::Source::load(&cfg.tariff_plans)
                        .map(|s| s.currency)
                        .unwrap_or_default();
                    let accounts = if matches!(by, Some(By::Plan)) {
                        Some(tollgate::accounts::Accounts::load(&cfg.accounts_file)?)
                    } else {
                        None
                    };
                    let r = report::usage_report(
                        &ledger,
                        accounts.as_ref(),
                        &currency,
                        kind,
                        period,
                        by,
                        top,
                    )?;
                    report::render_usage(&r, format)
                }
            };
            use std::io::Write;
            std::io::stdout().write_all(out.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo {
            dir,
            records,
            accounts,
        } => {
            tollgate::demo::run(dir, records, accounts)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn ingest(config: &std::path::Path, stats: bool, files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let cfg = load(config)?;
    let engine = Engine::open(cfg)?;
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
                    println!("{}", tollgate::engine::stats_json(&r));
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
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
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
