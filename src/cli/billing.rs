//! `cycle close`, `rerate`, `bills`, `usage`, `invoice` and `report`: the billing side.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use super::args::{BillsCmd, CycleCmd, InvoiceCmd, ReportBy, ReportFormat, ReportKind};
use super::operations::connect;
use super::{parse_date, parse_period, print};
use crate::config::Config;
use crate::ingest::engine::Engine;
use crate::ops::api::credits::CreditInput;
use crate::ops::report::{self, By, Format, Kind};

/// `cycle close`: the period's invoices, and a summary.
pub fn cycle(cfg: Config, cmd: CycleCmd) -> Result<ExitCode> {
    let CycleCmd::Close { period, issue_date } = cmd;
    let period = parse_period(&period)?;
    let issue = issue_date
        .map(|d| parse_date(&d, "--issue-date"))
        .transpose()?;
    println!("{}", connect(cfg)?.close(period, issue)?.render());
    Ok(ExitCode::SUCCESS)
}

/// `rerate`: what changed (text, or the JSON document with `--json`).
pub fn rerate(
    cfg: Config,
    period: &str,
    input: &crate::ops::api::rerate::RerateInput,
    json: bool,
) -> Result<ExitCode> {
    let period = parse_period(period)?;
    let doc = connect(cfg)?.rerate(period, input)?;
    if json {
        print::pretty(&doc)?;
    } else {
        println!("{}", doc.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// `bills list` / `bills show`.
pub fn bills(cfg: Config, cmd: BillsCmd) -> Result<ExitCode> {
    match cmd {
        BillsCmd::List {
            period,
            offset,
            limit,
        } => {
            let period = period.as_deref().map(parse_period).transpose()?;
            let page = connect(cfg)?.bills(period, offset, limit)?;
            print::bills(&page, offset);
        }
        BillsCmd::Show { number } => print::pretty(&connect(cfg)?.bill(&number)?)?,
        BillsCmd::Resend { number } => print::pretty(&connect(cfg)?.resend(&number)?)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `deliver`: one delivery run over the outbox; prints what it did (JSON).
pub fn deliver(cfg: Config) -> Result<ExitCode> {
    let engine = Engine::open(cfg)?;
    let rep = crate::billing::delivery::run(
        &engine.cfg,
        &engine.ledger,
        &engine.reference().accounts,
        chrono::Utc::now(),
    )?;
    print::line(&rep)?;
    Ok(if rep.failed + rep.interrupted > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `usage`: an account's usage in a period.
pub fn usage(cfg: Config, account: &str, period: &str) -> Result<ExitCode> {
    let period = parse_period(period)?;
    print::pretty(&connect(cfg)?.usage(account, period)?)?;
    Ok(ExitCode::SUCCESS)
}

/// `invoice credit` (through the API when a daemon runs) / `invoice final` (the database).
pub fn invoice(cfg: Config, cmd: InvoiceCmd) -> Result<ExitCode> {
    match cmd {
        InvoiceCmd::Credit {
            number,
            reason,
            lines,
            amount,
            reissue,
            issue_date,
        } => {
            let input = CreditInput {
                reason,
                lines,
                amount,
                reissue,
                issue_date,
            };
            println!("{}", connect(cfg)?.credit(&number, &input)?.render());
        }
        InvoiceCmd::Final { account, date } => {
            let engine = Engine::open(cfg)?;
            let reference = engine.reference();
            let date = super::date_or_today_in(date, "--date", reference.tariff.tz)?;
            let (inv, files) = crate::billing::final_invoice(
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
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `report`: written to stdout as rendered (CSV, JSON or HTML).
pub fn report(
    cfg: Config,
    kind: ReportKind,
    period: &str,
    by: Option<ReportBy>,
    format: ReportFormat,
    top: usize,
) -> Result<ExitCode> {
    let req = report::Request {
        kind: match kind {
            ReportKind::Usage => Kind::Usage,
            ReportKind::Revenue => Kind::Revenue,
            ReportKind::Rejects => Kind::Rejects,
        },
        period: parse_period(period)?,
        by: by.map(|b| match b {
            ReportBy::Day => By::Day,
            ReportBy::Destination => By::Destination,
            ReportBy::Service => By::Service,
            ReportBy::Plan => By::Plan,
            ReportBy::Account => By::Account,
        }),
        top,
    };
    let format = match format {
        ReportFormat::Csv => Format::Csv,
        ReportFormat::Json => Format::Json,
        ReportFormat::Html => Format::Html,
    };
    let out = connect(cfg)?.report(&req, format)?;
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
