//! `account statement`, `payments`, `collect` and `dunning`: the money side.
//!
//! Statement, payments list, manual payment, suspense and assignment go through the
//! daemon's API when one runs (same documents, same output); import, refund, collection
//! and dunning open the database.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::args::{AccountCmd, DunningCmd, PaymentsCmd};
use super::operations::connect;
use super::{date_or_today, failures, parse_date, print};
use crate::config::Config;
use crate::ingest::engine::Engine;
use crate::ops::api::pay::{self, AmountInput, AssignInput, PaymentInput};
use crate::payments::{collect as sdd, dunning as dun, psp, receipts};
use crate::rate::money::format_cents;

/// `account statement`: text, or the JSON document.
pub fn account(cfg: Config, cmd: AccountCmd) -> Result<ExitCode> {
    let AccountCmd::Statement {
        account,
        date,
        json,
    } = cmd;
    let as_of = date_or_today(date, "--date")?;
    let doc = connect(cfg)?.statement(&account, as_of)?;
    if json {
        print::pretty(&doc)?;
    } else {
        print!("{}", pay::statement_text(&doc));
    }
    Ok(ExitCode::SUCCESS)
}

/// `payments …`.
pub fn payments(cfg: Config, cmd: PaymentsCmd) -> Result<ExitCode> {
    match cmd {
        PaymentsCmd::List {
            account,
            offset,
            limit,
        } => {
            let page = connect(cfg)?.payments(account.as_deref(), offset, limit)?;
            print::payments(&page, offset);
        }
        PaymentsCmd::Record {
            account,
            amount,
            date,
            invoice,
            text,
        } => {
            let input = PaymentInput {
                account: account.clone(),
                total_amount: AmountInput {
                    unit: None,
                    value: amount.clone(),
                },
                payment_date: Some(date_or_today(date, "--date")?.to_string()),
                bill_no: invoice,
                description: (!text.is_empty()).then_some(text),
            };
            let doc = connect(cfg)?.record_payment(&input)?;
            println!(
                "recorded {amount} for {account}: {} on the invoice, {} on account",
                doc.on_bill.value, doc.on_account.value
            );
        }
        PaymentsCmd::Suspense => {
            // Every item, a page of 1000 at a time.
            let (ops, limit) = (connect(cfg)?, 1000);
            let mut offset = 0;
            loop {
                let page = ops.suspense(offset, limit)?;
                for s in &page.items {
                    print::line(s)?;
                }
                offset += page.items.len();
                if page.items.is_empty() || offset >= page.total {
                    break;
                }
            }
        }
        PaymentsCmd::Assign {
            id,
            account,
            invoice,
        } => {
            let input = AssignInput {
                account: account.clone(),
                bill_no: invoice,
            };
            let doc = connect(cfg)?.assign(id, &input)?;
            println!(
                "assigned suspense {id} to {account}: {} on the invoice, {} on account",
                doc.on_bill.value, doc.on_account.value
            );
        }
        PaymentsCmd::Import { files } => {
            let (engine, currency) = open(cfg)?;
            let (cfg, ledger) = (&engine.cfg, &engine.ledger);
            let accounts = &engine.reference().accounts;
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
                match receipts::import(cfg, ledger, accounts, &currency, &f, &bytes) {
                    Ok(rep) => println!("{}: {}", f.display(), serde_json::to_string(&rep)?),
                    Err(e) => {
                        eprintln!("refused: {e}");
                        failed += 1;
                    }
                }
            }
            return Ok(failures(failed));
        }
        PaymentsCmd::Refund {
            account,
            amount,
            date,
            payment: None,
        } => {
            let (engine, _) = open(cfg)?;
            let cents = rate_amount(&amount)?;
            let left = receipts::refund(
                &engine.ledger,
                &engine.reference().accounts,
                &account,
                cents,
                date_or_today(date, "--date")?,
            )?;
            println!(
                "refunded {amount} to {account}; balance now {}",
                format_cents(left)
            );
        }
        PaymentsCmd::Refund {
            account,
            amount,
            date,
            payment: Some(payment),
        } => {
            let (engine, _) = open(cfg)?;
            let cents = rate_amount(&amount)?;
            let provider = psp::provider(psp::psp(&engine.cfg)?)?;
            let left = psp::refund(
                &engine.ledger,
                &engine.reference().accounts,
                &account,
                &payment,
                cents,
                date_or_today(date, "--date")?,
                provider.as_ref(),
            )?;
            println!(
                "refunded {amount} to {account} through {} (payment {payment}); balance now {}",
                provider.name(),
                format_cents(left)
            );
        }
        PaymentsCmd::Card {
            account,
            customer,
            payment_method,
        } => {
            let (engine, _) = open(cfg)?;
            let p = psp::psp(&engine.cfg)?;
            let provider = match p.provider {
                crate::config::PspProvider::Stripe => "stripe",
            };
            // The card's last digits for the invoices, when the provider tells them.
            let info = psp::provider(p)
                .map(|pr| psp::card_info(pr.as_ref(), &payment_method))
                .unwrap_or_default();
            psp::save_card(
                &engine.ledger,
                &engine.reference().accounts,
                &account,
                psp::SavedCard {
                    provider: provider.into(),
                    customer,
                    payment_method,
                    saved: chrono::Utc::now().date_naive().to_string(),
                    source: "cli".into(),
                    last4: info.last4,
                    brand: info.brand,
                },
            )?;
            println!("saved the card of {account}; collect charges it for due invoices");
        }
        PaymentsCmd::PayLink { invoice } => {
            psp::psp(&cfg)?;
            match psp::pay_link(&cfg, &invoice) {
                Some(l) => println!("{l}"),
                None => anyhow::bail!(
                    "no pay link: the link key cannot be read (psp.link_secret_file or psp.secret_key_file)"
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `collect`: the SEPA direct debit file of the invoices due, then (with `[psp]`) the
/// card charges.
pub fn collect(cfg: Config, date: &str, out: Option<&Path>) -> Result<ExitCode> {
    let (engine, currency) = open(cfg)?;
    let day = parse_date(date, "--date")?;
    if engine.cfg.sepa.is_some() || engine.cfg.psp.is_none() {
        let Some(out) = out else {
            anyhow::bail!("--out FILE is required for the direct debit file ([sepa])");
        };
        let rep = sdd::collect(
            &engine.cfg,
            &engine.ledger,
            &engine.reference().accounts,
            &currency,
            day,
            out,
        )?;
        match (&rep.msg_id, rep.rewritten) {
            (None, _) => println!("nothing due for collection on {date}; no file written"),
            (Some(m), true) => println!(
                "nothing new due on {date}; rewrote batch {m} to {}",
                out.display()
            ),
            (Some(m), false) => println!(
                "batch {m}: {} debits ({} FRST, {} RCUR), total {} {currency}, collection date {date}, written to {}",
                rep.transactions, rep.frst, rep.rcur, rep.total, out.display()
            ),
        }
    }
    let mut code = ExitCode::SUCCESS;
    if let Some(p) = &engine.cfg.psp {
        let provider = psp::provider(p)?;
        let rep = psp::collect_cards(
            &engine.cfg,
            &engine.ledger,
            &engine.reference().accounts,
            &currency,
            day,
            provider.as_ref(),
        )?;
        println!(
            "cards: {} charged, total {} {currency}; {} declined, {} pending, {} failed, {} due without a saved card",
            rep.charged, rep.total, rep.declined, rep.pending, rep.failed, rep.no_card
        );
        for m in &rep.messages {
            println!("  {m}");
        }
        if rep.failed > 0 {
            code = ExitCode::from(1);
        }
    }
    Ok(code)
}

/// `dunning run` / `dunning outbox`.
pub fn dunning(cfg: Config, cmd: DunningCmd) -> Result<ExitCode> {
    let (engine, currency) = open(cfg)?;
    match cmd {
        DunningCmd::Run { date } => {
            let rep = dun::run(
                &engine.cfg,
                &engine.ledger,
                &engine.reference().accounts,
                &currency,
                parse_date(&date, "--date")?,
            )?;
            print::line(&rep)?;
        }
        DunningCmd::Outbox => {
            for m in dun::outbox(&engine.ledger)?
                .into_iter()
                .filter(|m| m.document.is_none())
            {
                print::line(&serde_json::json!({
                    "id": m.id, "account": m.account, "invoice": m.invoice, "kind": m.kind,
                    "language": m.language, "status": m.status, "created": m.created, "subject": m.subject,
                }))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The database, and the tariff's currency.
fn open(cfg: Config) -> Result<(Engine, String)> {
    let engine = Engine::open(cfg)?;
    let currency = engine.currency();
    Ok((engine, currency))
}

/// An `--amount` in cents.
fn rate_amount(s: &str) -> Result<i64> {
    crate::rate::money::parse_cents(s).map_err(|m| anyhow::anyhow!("--amount: {m}"))
}
