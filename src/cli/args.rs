//! The clap types of `tollgate`: one global `--config`, the subcommands, and the parse
//! that keeps the error messages of the time when every subcommand declared its own
//! required `--config`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Telecom usage rating and billing daemon"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// The configuration file (every command but `demo` needs it); before or after the
    /// subcommand.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the daemon in the foreground (SIGTERM/SIGINT stop it gracefully).
    Run,
    /// Rate files once through the daemon's pipeline and commit path, then exit.
    Ingest {
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
    /// Re-rate a period's records from the done/ files against the current tariff and
    /// accounts: an open period's unbilled usage is replaced; a closed period's changed
    /// invoices are credited and reissued (with --correct). Through the API when a daemon runs.
    Rerate {
        /// The period, YYYY-MM.
        #[arg(long)]
        period: String,
        /// Only this account (repeatable; default: all).
        #[arg(long = "account")]
        accounts: Vec<String>,
        /// Show what would change; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// A closed period: credit every invoice whose re-rated lines differ and issue a
        /// corrected invoice.
        #[arg(long)]
        correct: bool,
        /// Issue date of credit notes and corrected invoices (YYYY-MM-DD, default today).
        #[arg(long)]
        issue_date: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
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
    /// direct-debit accounts, and charge those of card accounts (`[psp]`).
    Collect {
        /// Collection date (invoices due on or before it are collected), YYYY-MM-DD.
        #[arg(long)]
        date: String,
        /// The pain.008 file; needed when direct debits are due.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Deliver the issued documents waiting in the outbox (email with PDF and UBL, or
    /// the Peppol folder) and retry failed ones that are due. Opens the database: refused
    /// while a daemon runs (the daemon delivers by itself).
    Deliver,
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
pub enum ReportKind {
    Usage,
    Revenue,
    Rejects,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReportBy {
    Day,
    Destination,
    Service,
    Plan,
    Account,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Csv,
    Json,
    Html,
}

#[derive(Subcommand)]
pub enum CycleCmd {
    /// Close a billing period and write its invoices.
    Close {
        /// The period, YYYY-MM.
        #[arg(long)]
        period: String,
        /// Issue date (default: today in the tariff time zone).
        #[arg(long)]
        issue_date: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum BillsCmd {
    /// One line per bill: number, account, period, net, VAT, total, currency.
    List {
        /// Only this period, YYYY-MM.
        #[arg(long)]
        period: Option<String>,
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, default_value_t = 1000)]
        limit: u64,
    },
    /// One bill with its lines and its deliveries (JSON).
    Show {
        /// Bill number, YYYY-NNNNNN.
        number: String,
    },
    /// Deliver a bill to its customer again (email or Peppol, as the account says); a new
    /// delivery, sent at once (operator role through the API).
    Resend {
        /// Bill (or credit note) number.
        number: String,
    },
}

#[derive(Subcommand)]
pub enum AccountsCmd {
    /// One line per account: id, plan, name, country.
    List {
        #[arg(long, default_value_t = 0)]
        offset: u64,
        #[arg(long, default_value_t = 1000)]
        limit: u64,
    },
    /// One account (JSON).
    Show { id: String },
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Add a token to `api_tokens_file` and print it (once; only its SHA-256 is stored).
    Add {
        /// A name for the token (1-64 of A-Z a-z 0-9 . _ @ -).
        name: String,
        #[arg(long, value_parser = ["viewer", "operator"])]
        role: String,
    },
}

#[derive(Subcommand)]
pub enum AccountCmd {
    /// Print an account's ledger, open items, pending fees and balance.
    Statement {
        account: String,
        /// As of this date (statuses such as overdue), default today.
        #[arg(long)]
        date: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum PaymentsCmd {
    /// Import camt.053 statements / camt.054 notifications (each file all or nothing).
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Record a manual payment.
    Record {
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
    Suspense,
    /// List payments received, in posting order.
    List {
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
        account: String,
        #[arg(long)]
        amount: String,
        #[arg(long)]
        date: Option<String>,
        /// Refund through the payment provider, against this card/online payment
        /// (`[psp]`; e.g. pi_…); without it the refund is paid out by the operator.
        #[arg(long)]
        payment: Option<String>,
    },
    /// Save the provider customer and payment method a `card` account is charged on by
    /// `collect` (what the SetupIntent webhook saves; see docs/payments-online.md).
    Card {
        #[arg(long)]
        account: String,
        /// The provider's customer id (cus_…).
        #[arg(long)]
        customer: String,
        /// The saved payment method (pm_…).
        #[arg(long)]
        payment_method: String,
    },
    /// Print an invoice's pay link (`[psp]`).
    PayLink { invoice: String },
}

#[derive(Subcommand)]
pub enum DunningCmd {
    /// Run the dunning schedule as of a date and deliver the outbox.
    Run {
        #[arg(long)]
        date: String,
    },
    /// List the notifications in the outbox.
    Outbox,
}

#[derive(Subcommand)]
pub enum PrivacyCmd {
    /// Remove an account's traffic detail (done/ and rejects lines, itemised annexes) and
    /// pseudonymise its numbers elsewhere; invoices and totals stay (fiscal records).
    Erase {
        #[arg(long)]
        account: String,
    },
    /// Everything held about an account, as JSON on stdout (data-subject access).
    Export {
        #[arg(long)]
        account: String,
    },
    /// Erase the traffic detail whose dispute window ended (the daemon runs this daily).
    Retention {
        /// As of this date (default: today in the tariff zone), YYYY-MM-DD.
        #[arg(long)]
        date: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum InvoiceCmd {
    /// Issue a credit note on an invoice: in full, for some lines, or for a net amount.
    Credit {
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
        account: String,
        /// Last day of service and issue date (default: today in the tariff time zone).
        #[arg(long)]
        date: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum TariffCmd {
    /// Validate the plans and decks.
    Check,
    /// Write the compiled archive.
    Compile,
}

/// The commands that run without a configuration file.
const WITHOUT_CONFIG: &[&str] = &["demo"];

/// The subcommand after which `--config` used to be declared later than the other
/// required options (it keeps that place in usage lines).
const CONFIG_LAST: &[&str] = &["add"];

impl Cli {
    /// Parses `std::env::args_os()`; exits with clap's message and code 2 on a usage error,
    /// as clap did when every subcommand declared its own required `--config`.
    pub fn parse_args() -> Cli {
        Cli::parse_from_args(std::env::args_os().collect())
    }

    fn parse_from_args(args: Vec<OsString>) -> Cli {
        let parsed = Cli::command()
            .try_get_matches_from(&args)
            .and_then(|mut m| {
                let free = m
                    .subcommand_name()
                    .is_some_and(|n| WITHOUT_CONFIG.contains(&n));
                Cli::from_arg_matches_mut(&mut m).map(|cli| (cli, free))
            });
        match parsed {
            Ok((cli, free)) if free || cli.config.is_some() => cli,
            Ok(_) => strict_error(&args).exit(),
            Err(e) if config_before_subcommand(&args) => e.exit(),
            Err(e) => {
                use clap::error::ErrorKind::*;
                let strict = strict_error(&args);
                match strict.kind() {
                    // Help and version are the global parser's (with the subcommands' texts).
                    DisplayHelp | DisplayHelpOnMissingArgumentOrSubcommand | DisplayVersion => {
                        e.exit()
                    }
                    _ => strict.exit(),
                }
            }
        }
    }
}

/// Whether `--config` stands before the subcommand's name (the spelling that has no
/// per-subcommand equivalent, so its errors are the global parser's).
fn config_before_subcommand(args: &[OsString]) -> bool {
    let mut it = args.iter().skip(1).map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if a == "--config" || a.starts_with("--config=") {
            return true;
        }
        if a == "--log-format" {
            it.next();
        } else if !a.starts_with('-') {
            return false;
        }
    }
    false
}

/// The error of the parser where every subcommand but `demo` requires its own `--config`.
fn strict_error(args: &[OsString]) -> clap::Error {
    match strict(Cli::command()).try_get_matches_from(args) {
        Err(e) => e,
        // Not reached: the global parser accepted these arguments without `--config`.
        Ok(_) => Cli::command().error(
            clap::error::ErrorKind::MissingRequiredArgument,
            "--config is required",
        ),
    }
}

/// `cmd` with a required `--config` declared on each leaf subcommand that needs one.
fn strict(cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    if !names.is_empty() {
        return names.iter().fold(cmd, |c, n| c.mut_subcommand(n, strict));
    }
    if WITHOUT_CONFIG.contains(&cmd.get_name()) {
        return cmd;
    }
    let config = Arg::new("config")
        .long("config")
        .value_name("CONFIG")
        .required(true)
        .action(ArgAction::Set)
        .value_parser(clap::value_parser!(PathBuf));
    let args: Vec<Arg> = cmd.get_arguments().cloned().collect();
    // A new command to put `--config` where it was declared; clap names are `'static`
    // (this runs once, on the way to a usage error).
    let name: &'static str = Box::leak(cmd.get_name().to_owned().into_boxed_str());
    let mut leaf = clap::Command::new(name);
    if let Some(about) = cmd.get_about() {
        leaf = leaf.about(about.clone());
    }
    if !CONFIG_LAST.contains(&cmd.get_name()) {
        leaf = leaf.arg(config.clone());
    }
    leaf = leaf.args(args);
    if CONFIG_LAST.contains(&cmd.get_name()) {
        leaf = leaf.arg(config);
    }
    leaf
}
