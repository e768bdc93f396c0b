//! The `tollgate` command line: parse → load config → run → exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};

use tollgate::ops::api::client::{encode, running_daemon, Client};
use tollgate::ops::api::ops;
use tollgate::billing::Period;
use tollgate::config::Config;
use tollgate::ingest::engine::{Engine, FileResult};

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
    /// Invoices (bills): list a period's or show one (through the daemon's API when it runs).
    Bills {
        #[command(subcommand)]
        cmd: BillsCmd,
    },
    /// Accounts: list or show (through the daemon's API when it runs).
    Accounts {
        #[command(subcommand)]
        cmd: AccountsCmd,
    },
    /// An account's usage dated in a period, per line, rated and billed (JSON).
    Usage {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        account: String,
        /// The period, YYYY-MM.
        #[arg(long)]
        period: String,
    },
    /// API bearer tokens.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Account statements.
    Account {
        #[command(subcommand)]
        cmd: AccountCmd,
    },
    /// Incoming payments: bank statements, manual payments, suspense, refunds.
    Payments {
        #[command(subcommand)]
        cmd: PaymentsCmd,
    },
    /// Write a SEPA Core Direct Debit file (pain.008.001.02) for all due invoices of
    /// direct-debit accounts.
    Collect {
        #[arg(long)]
        config: PathBuf,
        /// Collection date (invoices due on or before it are collected), YYYY-MM-DD.
        #[arg(long)]
        date: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Reminders and late fees.
    Dunning {
        #[command(subcommand)]
        cmd: DunningCmd,
    },
    /// Traffic data: retention, erasure and data-subject export.
    Privacy {
        #[command(subcommand)]
        cmd: PrivacyCmd,
    },
    /// Usage, revenue or rejects of a period, as CSV, JSON or HTML (through the API while
    /// a daemon runs).
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
enum BillsCmd {
    /// One line per bill: number, account, period, net, VAT, total, currency.
    List {
        #[arg(long)]
        config: PathBuf,
        /// Only this period, YYYY-MM.
        #[arg(long)]
        period: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, default_value_t = 1000)]
        limit: u64,
    },
    /// One bill with its lines (JSON).
    Show {
        #[arg(long)]
        config: PathBuf,
        /// Bill number, YYYY-NNNNNN.
        number: String,
    },
}

#[derive(Subcommand)]
enum AccountsCmd {
    /// One line per account: id, plan, name, country.
    List {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, default_value_t = 1000)]
        limit: u64,
    },
    /// One account (JSON).
    Show {
        #[arg(long)]
        config: PathBuf,
        id: String,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Add a token to `api_tokens_file` and print it (once; only its SHA-256 is stored).
    Add {
        /// A name for the token (1-64 of A-Z a-z 0-9 . _ @ -).
        name: String,
        #[arg(long, value_parser = ["viewer", "operator"])]
        role: String,
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Print an account's ledger, open items, pending fees and balance.
    Statement {
        account: String,
        #[arg(long)]
        config: PathBuf,
        /// As of this date (statuses such as overdue), default today.
        #[arg(long)]
        date: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PaymentsCmd {
    /// Import camt.053 statements / camt.054 notifications (each file all or nothing).
    Import {
        #[arg(long)]
        config: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Record a manual payment.
    Record {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        account: String,
        /// Amount, e.g. 12.10.
        #[arg(long)]
        amount: String,
        #[arg(long)]
        date: Option<String>,
        /// Pay this invoice (the rest becomes credit); default: on account.
        #[arg(long)]
        invoice: Option<String>,
        #[arg(long, default_value = "")]
        text: String,
    },
    /// List unmatched bank credits.
    Suspense {
        #[arg(long)]
        config: PathBuf,
    },
    /// List payments received, in posting order.
    List {
        #[arg(long)]
        config: PathBuf,
        /// Only this account's payments.
        #[arg(long)]
        account: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Assign a suspense item to an account (and invoice).
    Assign {
        #[arg(long)]
        config: PathBuf,
        /// Suspense id (see `payments suspense`).
        id: u64,
        #[arg(long)]
        account: String,
        #[arg(long)]
        invoice: Option<String>,
    },
    /// Refund (part of) an account's credit balance.
    Refund {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        account: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        date: Option<String>,
    },
}

#[derive(Subcommand)]
enum DunningCmd {
    /// Run the dunning schedule as of a date and deliver the outbox.
    Run {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        date: String,
    },
    /// List the notifications in the outbox.
    Outbox {
        #[arg(long)]
        config: PathBuf,
    },
}

fn parse_date(d: &str, what: &str) -> anyhow::Result<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
        .with_context(|| format!("{what} `{d}` is not YYYY-MM-DD"))
}

fn date_or_today(d: Option<String>, what: &str) -> anyhow::Result<chrono::NaiveDate> {
    match d {
        Some(d) => parse_date(&d, what),
        None => Ok(chrono::Utc::now().date_naive()),
    }
}

fn amount(s: &str) -> anyhow::Result<i64> {
    tollgate::rate::money::parse_cents(s).map_err(|m| anyhow::anyhow!("--amount: {m}"))
}

/// The payments commands that work through a running daemon's API as well as on the
/// database: `Ok(code)` when `cmd` was one of them (and ran), `Err(cmd)` otherwise.
fn payments_via_api(cmd: Cmd, cfg: Config) -> anyhow::Result<Result<ExitCode, Cmd>> {
    use tollgate::ops::api::pay;
    match cmd {
        Cmd::Account {
            cmd:
                AccountCmd::Statement {
                    account,
                    date,
                    json,
                    ..
                },
        } => {
            let as_of = date_or_today(date, "--date")?;
            let doc = match backend(cfg)? {
                Backend::Remote(c) => c.get::<pay::StatementDoc>(&format!(
                    "/api/v1/accounts/{}/statement?date={as_of}",
                    encode(&account)
                ))?,
                Backend::Local(e) => pay::statement(&e, &account, as_of)?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                print!("{}", pay::statement_text(&doc));
            }
        }
        Cmd::Payments {
            cmd:
                PaymentsCmd::List {
                    account,
                    offset,
                    limit,
                    ..
                },
        } => {
            let page = match backend(cfg)? {
                Backend::Remote(c) => c.list::<pay::PaymentDoc>(&format!(
                    "/api/v1/payments?offset={offset}&limit={limit}{}",
                    account
                        .as_deref()
                        .map(|a| format!("&account={}", encode(a)))
                        .unwrap_or_default()
                ))?,
                Backend::Local(e) => {
                    let (o, l) = ops::Page {
                        offset: Some(offset),
                        limit: Some(limit),
                    }
                    .resolve()?;
                    pay::payments(&e, account.as_deref(), o, l)?
                }
            };
            println!("id\tdate\taccount\tamount\tinvoice\tsource");
            for p in &page.items {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    p.id,
                    p.payment_date,
                    p.account.id,
                    p.total_amount.value,
                    p.bill_no.as_deref().unwrap_or("-"),
                    p.source
                );
            }
            println!(
                "# {} of {} payments from offset {offset}",
                page.items.len(),
                page.total
            );
        }
        Cmd::Payments {
            cmd:
                PaymentsCmd::Record {
                    account,
                    amount: a,
                    date,
                    invoice,
                    text,
                    ..
                },
        } => {
            let input = pay::PaymentInput {
                account: account.clone(),
                total_amount: pay::AmountInput {
                    unit: None,
                    value: a.clone(),
                },
                payment_date: Some(date_or_today(date, "--date")?.to_string()),
                bill_no: invoice,
                description: (!text.is_empty()).then_some(text),
            };
            let doc = match backend(cfg)? {
                Backend::Remote(c) => {
                    c.post_json::<_, pay::PaymentResultDoc>("/api/v1/payments", &input)?
                }
                Backend::Local(e) => pay::record(&e, &input)?,
            };
            println!(
                "recorded {a} for {account}: {} on the invoice, {} on account",
                doc.on_bill.value, doc.on_account.value
            );
        }
        Cmd::Payments {
            cmd: PaymentsCmd::Suspense { .. },
        } => {
            // Every item, a page of 1000 at a time.
            let (b, l) = (backend(cfg)?, 1000);
            let mut offset = 0;
            loop {
                let page = match &b {
                    Backend::Remote(c) => c.list::<pay::SuspenseDoc>(&format!(
                        "/api/v1/payments/suspense?offset={offset}&limit={l}"
                    ))?,
                    Backend::Local(e) => pay::suspense(e, offset, l)?,
                };
                for s in &page.items {
                    println!("{}", serde_json::to_string(s)?);
                }
                offset += page.items.len();
                if page.items.is_empty() || offset >= page.total {
                    break;
                }
            }
        }
        Cmd::Payments {
            cmd:
                PaymentsCmd::Assign {
                    id,
                    account,
                    invoice,
                    ..
                },
        } => {
            let input = pay::AssignInput {
                account: account.clone(),
                bill_no: invoice,
            };
            let doc = match backend(cfg)? {
                Backend::Remote(c) => c.post_json::<_, pay::PaymentResultDoc>(
                    &format!("/api/v1/payments/suspense/{id}/assign"),
                    &input,
                )?,
                Backend::Local(e) => pay::assign(&e, id, &input)?,
            };
            println!(
                "assigned suspense {id} to {account}: {} on the invoice, {} on account",
                doc.on_bill.value, doc.on_account.value
            );
        }
        other => return Ok(Err(other)),
    }
    Ok(Ok(ExitCode::SUCCESS))
}

fn payments(cmd: Cmd) -> anyhow::Result<ExitCode> {
    use tollgate::rate::money::format_cents;
    use tollgate::payments as p;
    let config = match &cmd {
        Cmd::Account {
            cmd: AccountCmd::Statement { config, .. },
        } => config,
        Cmd::Collect { config, .. } => config,
        Cmd::Dunning {
            cmd: DunningCmd::Run { config, .. } | DunningCmd::Outbox { config },
        } => config,
        Cmd::Payments { cmd } => match cmd {
            PaymentsCmd::Import { config, .. }
            | PaymentsCmd::Record { config, .. }
            | PaymentsCmd::Suspense { config }
            | PaymentsCmd::List { config, .. }
            | PaymentsCmd::Assign { config, .. }
            | PaymentsCmd::Refund { config, .. } => config,
        },
        _ => unreachable!("payments commands only"),
    };
    let cfg = load(config)?;
    // Statement, payments list, manual payment, suspense and assignment go through the
    // daemon's API when one runs (same documents, same output); the rest needs the
    // database itself.
    let cmd = match payments_via_api(cmd, cfg.clone())? {
        Ok(code) => return Ok(code),
        Err(cmd) => cmd,
    };
    let engine = Engine::open(cfg)?;
    let r = engine.reference();
    let currency = r.tariff.table().currency.as_str().to_owned();
    let (cfg, ledger, accounts) = (&engine.cfg, &engine.ledger, &r.accounts);
    match cmd {
        Cmd::Payments {
            cmd: PaymentsCmd::Import { files, .. },
        } => {
            let mut failed = 0;
            for f in files {
                let bytes = match std::fs::read(&f) {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("{}: refused: cannot read: {e}", f.display());
                        failed += 1;
                        continue;
                    }
                };
                match p::receipts::import(cfg, ledger, accounts, &currency, &f, &bytes) {
                    Ok(rep) => println!("{}: {}", f.display(), serde_json::to_string(&rep)?),
                    Err(e) => {
                        eprintln!("refused: {e}");
                        failed += 1;
                    }
                }
            }
            return Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        Cmd::Payments {
            cmd:
                PaymentsCmd::Refund {
                    account,
                    amount: a,
                    date,
                    ..
                },
        } => {
            let left = p::receipts::refund(
                ledger,
                accounts,
                &account,
                amount(&a)?,
                date_or_today(date, "--date")?,
            )?;
            println!(
                "refunded {a} to {account}; balance now {}",
                format_cents(left)
            );
        }
        Cmd::Collect { date, out, .. } => {
            let rep = p::collect::collect(
                cfg,
                ledger,
                accounts,
                &currency,
                parse_date(&date, "--date")?,
                &out,
            )?;
            match (&rep.msg_id, rep.rewritten) {
                (None, _) => println!("nothing due for collection on {date}; no file written"),
                (Some(m), true) => println!("nothing new due on {date}; rewrote batch {m} to {}", out.display()),
                (Some(m), false) => println!(
                    "batch {m}: {} debits ({} FRST, {} RCUR), total {} {currency}, collection date {date}, written to {}",
                    rep.transactions, rep.frst, rep.rcur, rep.total, out.display()
                ),
            }
        }
        Cmd::Dunning {
            cmd: DunningCmd::Run { date, .. },
        } => {
            let rep = tollgate::payments::dunning::run(
                cfg,
                ledger,
                accounts,
                &currency,
                parse_date(&date, "--date")?,
            )?;
            println!("{}", serde_json::to_string(&rep)?);
        }
        Cmd::Dunning {
            cmd: DunningCmd::Outbox { .. },
        } => {
            for m in tollgate::payments::dunning::outbox(ledger)? {
                println!(
                    "{}",
                    serde_json::to_string(&serde_json::json!({
                        "id": m.id, "account": m.account, "invoice": m.invoice, "kind": m.kind,
                        "language": m.language, "status": m.status, "created": m.created, "subject": m.subject,
                    }))?
                );
            }
        }
        _ => unreachable!("payments commands only"),
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Subcommand)]
enum PrivacyCmd {
    /// Remove an account's traffic detail (done/ and rejects lines, itemised annexes) and
    /// pseudonymise its numbers elsewhere; invoices and totals stay (fiscal records).
    Erase {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        account: String,
    },
    /// Everything held about an account, as JSON on stdout (data-subject access).
    Export {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        account: String,
    },
    /// Erase the traffic detail whose dispute window ended (the daemon runs this daily).
    Retention {
        #[arg(long)]
        config: PathBuf,
        /// As of this date (default: today in the tariff zone), YYYY-MM-DD.
        #[arg(long)]
        date: Option<String>,
    },
}

fn privacy(cmd: PrivacyCmd) -> anyhow::Result<ExitCode> {
    let config = match &cmd {
        PrivacyCmd::Erase { config, .. }
        | PrivacyCmd::Export { config, .. }
        | PrivacyCmd::Retention { config, .. } => config,
    };
    let cfg = load(config)?;
    let engine = Engine::open(cfg)?;
    let r = engine.reference();
    let (cfg, ledger, accounts) = (&engine.cfg, &engine.ledger, &r.accounts);
    let today = chrono::Utc::now().with_timezone(&r.tariff.tz).date_naive();
    match cmd {
        PrivacyCmd::Erase { account, .. } => {
            let national = r.tariff.table().national_prefix.as_str().to_owned();
            let rec = tollgate::billing::privacy::erase(cfg, ledger, accounts, &national, &account)?;
            println!("{}", serde_json::to_string_pretty(&rec)?);
        }
        PrivacyCmd::Export { account, .. } => {
            let currency = r.tariff.table().currency.as_str().to_owned();
            let v = tollgate::billing::privacy::export(cfg, ledger, accounts, &currency, &account, today)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        PrivacyCmd::Retention { date, .. } => {
            let d = match date {
                Some(d) => parse_date(&d, "--date")?,
                None => today,
            };
            let rep = tollgate::billing::privacy::retention(cfg, ledger, d)?;
            println!("{}", serde_json::to_string_pretty(&rep)?);
        }
    }
    Ok(ExitCode::SUCCESS)
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

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
        c @ (Cmd::Account { .. }
        | Cmd::Payments { .. }
        | Cmd::Collect { .. }
        | Cmd::Dunning { .. }) => payments(c),
        Cmd::Privacy { cmd } => privacy(cmd),
        Cmd::Run { config } => {
            let cfg = load(&config)?;
            tollgate::telemetry::install();
            let engine = Arc::new(Engine::open(cfg)?);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            rt.block_on(tollgate::ops::daemon::run(engine, shutdown_signal(), None))?;
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
            let issue = match &issue_date {
                Some(d) => Some(
                    chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                        .with_context(|| format!("--issue-date `{d}` is not YYYY-MM-DD"))?,
                ),
                None => None,
            };
            let doc = match backend(cfg)? {
                Backend::Remote(c) => {
                    let q = issue_date
                        .map(|d| format!("?issueDate={}", encode(&d)))
                        .unwrap_or_default();
                    c.post::<ops::CloseDoc>(&format!("/api/v1/cycles/{period}/close{q}"))?
                }
                Backend::Local(e) => ops::close(&e, period, issue)?,
            };
            println!("{}", doc.render());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bills { cmd } => bills(cmd),
        Cmd::Accounts { cmd } => accounts(cmd),
        Cmd::Usage {
            config,
            account,
            period,
        } => {
            let cfg = load(&config)?;
            let period: Period = period.parse().map_err(anyhow::Error::msg)?;
            let doc = match backend(cfg)? {
                Backend::Remote(c) => c.get::<ops::UsageDoc>(&format!(
                    "/api/v1/accounts/{}/usage?period={period}",
                    encode(&account)
                ))?,
                Backend::Local(e) => ops::usage(&e, &account, period)?,
            };
            println!("{}", serde_json::to_string_pretty(&doc)?);
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
            let src = tollgate::rate::tariff::Source::load(&cfg.tariff_plans)?;
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
                let path = tollgate::rate::tariff::compile(&src, &cfg.data_dir)?;
                tollgate::rate::tariff::Tariff::open(&path)?;
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
            let q = ops::QuoteQuery {
                account,
                service,
                to: Some(to),
                at,
                usage: Some(usage),
            };
            let doc: serde_json::Value = match running(&cfg)? {
                Some(c) => c.get(&format!(
                    "/api/v1/quote?account={}&service={}&to={}&at={}&usage={}",
                    encode(&q.account),
                    encode(&q.service),
                    encode(q.to.as_deref().unwrap_or("")),
                    encode(&q.at),
                    usage
                ))?,
                None => ops::quote(&Engine::load_reference(&cfg)?, &q)?,
            };
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Token {
            cmd: TokenCmd::Add { name, role, config },
        } => {
            let cfg = load(&config)?;
            let path = cfg.api_tokens_file.with_context(|| {
                format!("{}: set `api_tokens_file` to add tokens", config.display())
            })?;
            let role: tollgate::ops::auth::Role = role.parse().map_err(anyhow::Error::msg)?;
            let token = tollgate::ops::auth::add(&path, &name, role)?;
            eprintln!(
                "added token `{name}` ({}) to {}; it is shown once, store it now:",
                role.name(),
                path.display()
            );
            println!("{token}");
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
            use tollgate::ops::report::{self, By, Format, Kind};
            let cfg = load(&config)?;
            let period: Period = period.parse().map_err(anyhow::Error::msg)?;
            let kind = match kind {
                ReportKind::Usage => Kind::Usage,
                ReportKind::Revenue => Kind::Revenue,
                ReportKind::Rejects => Kind::Rejects,
            };
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
            let req = report::Request {
                kind,
                period,
                by,
                top,
            };
            let out = match running(&cfg)? {
                Some(c) => {
                    let by = req
                        .by
                        .map(|b| format!("&by={}", b.name()))
                        .unwrap_or_default();
                    c.text(&format!(
                        "/api/v1/reports/{}?period={period}{by}&format={}&top={top}",
                        kind.name(),
                        format.name()
                    ))?
                }
                None => {
                    let ledger = tollgate::store::Ledger::open_read_only(&cfg.data_dir)?;
                    // A broken tariff edit must not stop a report: only the currency is read.
                    let currency = tollgate::rate::tariff::Source::load(&cfg.tariff_plans)
                        .map(|s| s.currency)
                        .unwrap_or_default();
                    let accounts = if matches!(by, Some(By::Plan)) {
                        Some(tollgate::rate::accounts::Accounts::load(&cfg.accounts_file)?)
                    } else {
                        None
                    };
                    report::generate(&ledger, &currency, accounts.as_ref(), &req)?.render(format)
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

/// Where the operator commands get their answers.
enum Backend {
    /// A running daemon's API (it holds the database).
    Remote(Client),
    /// The database, opened directly.
    Local(Box<Engine>),
}

/// The API client of a running daemon, if one answers on the address in
/// `data_dir/listen.addr`; its token comes from `TOLLGATE_TOKEN`.
fn running(cfg: &Config) -> anyhow::Result<Option<Client>> {
    let Some(addr) = running_daemon(cfg) else {
        return Ok(None);
    };
    match std::env::var("TOLLGATE_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Ok(Some(Client::new(addr, t.trim().to_owned()))),
        _ => bail!(
            "a daemon is running at {addr} and holds the database: set TOLLGATE_TOKEN to an API token (`tollgate token add NAME --role viewer|operator`)"
        ),
    }
}

/// The daemon's API when one runs, else the database.
fn backend(cfg: Config) -> anyhow::Result<Backend> {
    Ok(match running(&cfg)? {
        Some(c) => Backend::Remote(c),
        None => Backend::Local(Box::new(Engine::open(cfg)?)),
    })
}

fn bills(cmd: BillsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        BillsCmd::List {
            config,
            period,
            offset,
            limit,
        } => {
            let cfg = load(&config)?;
            let p: Option<Period> = period
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            let page = match backend(cfg)? {
                Backend::Remote(c) => c.list::<ops::BillDoc>(&format!(
                    "/api/v1/bills?offset={offset}&limit={limit}{}",
                    p.map(|p| format!("&period={p}")).unwrap_or_default()
                ))?,
                Backend::Local(e) => {
                    let (o, l) = ops::Page {
                        offset: Some(offset),
                        limit: Some(limit),
                    }
                    .resolve()?;
                    ops::bills(&e, p, o, l)?
                }
            };
            println!("billNo\taccount\tperiod\tnet\tvat\ttotal\tcurrency");
            for b in &page.items {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    b.bill_no,
                    b.billing_account.id,
                    b.period,
                    b.tax_excluded_amount.value,
                    b.tax_item
                        .first()
                        .map_or("0.00", |t| t.tax_amount.value.as_str()),
                    b.amount_due.value,
                    b.amount_due.unit
                );
            }
            println!(
                "# {} of {} bills from offset {offset}",
                page.items.len(),
                page.total
            );
        }
        BillsCmd::Show { config, number } => {
            let cfg = load(&config)?;
            let doc = match backend(cfg)? {
                Backend::Remote(c) => {
                    c.get::<ops::BillDoc>(&format!("/api/v1/bills/{}", encode(&number)))?
                }
                Backend::Local(e) => ops::bill(&e, &number)?,
            };
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn accounts(cmd: AccountsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AccountsCmd::List {
            config,
            offset,
            limit,
        } => {
            let cfg = load(&config)?;
            let page = match backend(cfg)? {
                Backend::Remote(c) => c.list::<ops::AccountDoc>(&format!(
                    "/api/v1/accounts?offset={offset}&limit={limit}"
                ))?,
                Backend::Local(e) => {
                    let (o, l) = ops::Page {
                        offset: Some(offset),
                        limit: Some(limit),
                    }
                    .resolve()?;
                    ops::accounts(&e, o, l)
                }
            };
            println!("id\tplan\tname\tcountry");
            for a in &page.items {
                println!(
                    "{}\t{}\t{}\t{}",
                    a.id,
                    a.plan,
                    a.name.as_deref().unwrap_or(""),
                    a.country.as_deref().unwrap_or("")
                );
            }
            println!(
                "# {} of {} accounts from offset {offset}",
                page.items.len(),
                page.total
            );
        }
        AccountsCmd::Show { config, id } => {
            let cfg = load(&config)?;
            let doc = match backend(cfg)? {
                Backend::Remote(c) => {
                    c.get::<ops::AccountDoc>(&format!("/api/v1/accounts/{}", encode(&id)))?
                }
                Backend::Local(e) => ops::account(&e, &id)?,
            };
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
    }
    Ok(ExitCode::SUCCESS)
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
            let input = tollgate::ops::api::credits::CreditInput {
                reason,
                lines,
                amount,
                reissue,
                issue_date,
            };
            let doc = match backend(cfg)? {
                Backend::Remote(c) => c.post_json::<_, tollgate::ops::api::credits::CreditDoc>(
                    &format!("/api/v1/bills/{}/credit", encode(&number)),
                    &input,
                )?,
                Backend::Local(e) => tollgate::ops::api::credits::credit(&e, &number, &input)?,
            };
            println!("{}", doc.render());
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
                    println!("{}", tollgate::ingest::engine::stats_json(&r));
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
