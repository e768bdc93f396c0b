//! The `tollgate` command line: parse → load config → run → exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};

use tollgate::billing::{close_cycle, CreditWhat, Period};
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
    /// Invoices are final: correct them with credit notes; bill a closed account now.
    Invoice {
        #[command(subcommand)]
        cmd: InvoiceCmd,
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
enum InvoiceCmd {
    /// Issue a credit note on an invoice: in full, for some lines, or for a net amount.
    Credit {
        #[arg(long)]
        config: PathBuf,
        /// The invoice number.
        number: String,
        /// Why (printed on the credit note).
        #[arg(long)]
        reason: String,
        /// Credit only these lines (1-based, comma-separated), as far as still creditable.
        #[arg(long, value_delimiter = ',', conflicts_with = "amount")]
        lines: Option<Vec<usize>>,
        /// Credit this net amount (excluding VAT), e.g. 5.00.
        #[arg(long)]
        amount: Option<String>,
        /// Then issue a corrected invoice for the same lines (needs a full credit).
        #[arg(long, conflicts_with_all = ["lines", "amount"])]
        reissue: bool,
        /// Issue date (default: today in the tariff time zone).
        #[arg(long)]
        issue_date: Option<String>,
    },
    /// Off-cycle final invoice for a closed account: unbilled usage and the pro-rated fee.
    Final {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        account: String,
        /// Last day of service and issue date (default: today in the tariff time zone).
        #[arg(long)]
        date: Option<String>,
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
            let t0 = std::time::Instant::now();
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
                metrics::counter!(tollgate::telemetry::INVOICES).increment(r.invoices.len() as u64);
                metrics::histogram!(tollgate::telemetry::CLOSE_SECONDS)
                    .record(t0.elapsed().as_secs_f64());
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
        Cmd::Invoice { cmd } => invoice(cmd),
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

fn date_arg(
    arg: Option<String>,
    flag: &str,
    tz: chrono_tz::Tz,
) -> anyhow::Result<chrono::NaiveDate> {
    match arg {
        Some(d) => chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d")
            .with_context(|| format!("{flag} `{d}` is not YYYY-MM-DD")),
        None => Ok(chrono::Utc::now().with_timezone(&tz).date_naive()),
    }
}

fn invoice(cmd: InvoiceCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        InvoiceCmd::Credit {
            config,
            number,
            reason,
            lines,
            amount,
            reissue,
            issue_date,
        } => {
            let cfg = load(&config)?;
            let engine = Engine::open(cfg)?;
            let reference = engine.reference();
            let issue = date_arg(issue_date, "--issue-date", reference.tariff.tz)?;
            let what = match (lines, amount) {
                (Some(l), _) => CreditWhat::Lines(l),
                (None, Some(a)) => CreditWhat::Amount(
                    tollgate::money::parse_cents(&a)
                        .map_err(|m| anyhow::anyhow!("--amount: {m}"))?,
                ),
                (None, None) => CreditWhat::Full,
            };
            let out = tollgate::billing::credit(
                &engine.cfg,
                &engine.ledger,
                &reference.accounts,
                &number,
                what,
                &reason,
                reissue,
                issue,
            )?;
            let cn = &out.credit_note;
            println!(
                "credit note {} on invoice {}: net {} + VAT {} = {}",
                cn.number, number, cn.net_total, cn.vat_total, cn.total
            );
            if let Some(r) = &out.reissued {
                println!(
                    "reissued as invoice {}: net {} + VAT {} = {}",
                    r.number, r.net_total, r.vat_total, r.total
                );
            }
            for f in &out.files {
                println!("wrote {}", f.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        InvoiceCmd::Final {
            config,
            account,
            date,
        } => {
            let cfg = load(&config)?;
            let engine = Engine::open(cfg)?;
            let reference = engine.reference();
            let date = date_arg(date, "--date", reference.tariff.tz)?;
            let (inv, files) = tollgate::billing::final_invoice(
                &engine.cfg,
                &engine.ledger,
                &reference.tariff,
                &reference.accounts,
                &account,
                date,
            )?;
            println!(
                "final invoice {} for {}: net {} + VAT {} = {}",
                inv.number, account, inv.net_total, inv.vat_total, inv.total
            );
            for f in &files {
                println!("wrote {}", f.display());
            }
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
