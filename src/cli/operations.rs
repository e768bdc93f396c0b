//! The operator commands' one interface, with two implementations: [`Local`] opens the
//! database in this process and calls the API's own functions ([`crate::ops::api`]),
//! [`Remote`] asks a running daemon's API. Both return the same documents, so a command
//! is written once against [`Operations`] and prints the same either way.
//!
//! Which one a command gets ([`connect`]): the daemon's API when one answers on
//! `data_dir/listen.addr` (it holds the database; the token comes from `TOLLGATE_TOKEN`),
//! the database otherwise.

use std::cell::OnceCell;

use anyhow::Result;
use chrono::NaiveDate;

use super::client::{encode, running, Client};
use crate::billing::Period;
use crate::config::Config;
use crate::ingest::engine::Engine;
use crate::ops::api::credits::{self, CreditDoc, CreditInput};
use crate::ops::api::ops::{
    self, AccountDoc, BillDoc, CloseDoc, DeliveryDoc, Page, Paged, QuoteQuery, UsageDoc,
};
use crate::ops::api::pay::{
    self, AssignInput, PaymentDoc, PaymentInput, PaymentResultDoc, StatementDoc, SuspenseDoc,
};
use crate::ops::api::rerate::{self, RerateDoc, RerateInput};
use crate::ops::report;

/// What the operator commands ask of tollgate, in process or through the API.
pub trait Operations {
    /// A page of the accounts.
    fn accounts(&self, offset: u64, limit: u64) -> Result<Paged<AccountDoc>>;
    /// One account.
    fn account(&self, id: &str) -> Result<AccountDoc>;
    /// A page of the bills, of one period or all.
    fn bills(&self, period: Option<Period>, offset: u64, limit: u64) -> Result<Paged<BillDoc>>;
    /// One bill with its lines.
    fn bill(&self, number: &str) -> Result<BillDoc>;
    /// Delivers a bill again (a new delivery, sent at once).
    fn resend(&self, number: &str) -> Result<DeliveryDoc>;
    /// An account's usage dated in a period.
    fn usage(&self, account: &str, period: Period) -> Result<UsageDoc>;
    /// Closes a period and writes its invoices.
    fn close(&self, period: Period, issue_date: Option<NaiveDate>) -> Result<CloseDoc>;
    /// Issues a credit note on an invoice (and a corrected invoice).
    fn credit(&self, number: &str, input: &CreditInput) -> Result<CreditDoc>;
    /// Rerates a period against the current tariff and accounts.
    fn rerate(&self, period: Period, input: &RerateInput) -> Result<RerateDoc>;
    /// An account's statement as of a date.
    fn statement(&self, account: &str, as_of: NaiveDate) -> Result<StatementDoc>;
    /// A page of the payments received, of one account or all.
    fn payments(&self, account: Option<&str>, offset: u64, limit: u64)
        -> Result<Paged<PaymentDoc>>;
    /// Records a manual payment.
    fn record_payment(&self, input: &PaymentInput) -> Result<PaymentResultDoc>;
    /// A page of the suspense list.
    fn suspense(&self, offset: usize, limit: usize) -> Result<Paged<SuspenseDoc>>;
    /// Assigns a suspense item to an account (and invoice).
    fn assign(&self, id: u64, input: &AssignInput) -> Result<PaymentResultDoc>;
    /// What one record would cost, and which deck row prices it.
    fn quote(&self, q: &QuoteQuery) -> Result<serde_json::Value>;
    /// A report rendered in `format`.
    fn report(&self, req: &report::Request, format: report::Format) -> Result<String>;
}

/// The daemon's API when one runs, else the database.
pub fn connect(cfg: Config) -> Result<Box<dyn Operations>> {
    Ok(match running(&cfg)? {
        Some(client) => Box::new(Remote { client }),
        None => Box::new(Local::new(cfg)),
    })
}

/// The database, opened in this process on first use.
pub struct Local {
    cfg: Config,
    engine: OnceCell<Engine>,
}

impl Local {
    pub fn new(cfg: Config) -> Local {
        Local {
            cfg,
            engine: OnceCell::new(),
        }
    }

    fn engine(&self) -> Result<&Engine> {
        if let Some(e) = self.engine.get() {
            return Ok(e);
        }
        let e = Engine::open(self.cfg.clone())?;
        Ok(self.engine.get_or_init(|| e))
    }
}

/// `offset`/`limit` checked as the API checks them.
fn page(offset: u64, limit: u64) -> Result<(usize, usize)> {
    Ok(Page {
        offset: Some(offset),
        limit: Some(limit),
    }
    .resolve()?)
}

impl Operations for Local {
    fn accounts(&self, offset: u64, limit: u64) -> Result<Paged<AccountDoc>> {
        let e = self.engine()?;
        let (o, l) = page(offset, limit)?;
        Ok(ops::accounts(e, o, l))
    }

    fn account(&self, id: &str) -> Result<AccountDoc> {
        Ok(ops::account(self.engine()?, id)?)
    }

    fn bills(&self, period: Option<Period>, offset: u64, limit: u64) -> Result<Paged<BillDoc>> {
        let e = self.engine()?;
        let (o, l) = page(offset, limit)?;
        Ok(ops::bills(e, period, o, l)?)
    }

    fn bill(&self, number: &str) -> Result<BillDoc> {
        Ok(ops::bill(self.engine()?, number)?)
    }

    fn resend(&self, number: &str) -> Result<DeliveryDoc> {
        Ok(ops::resend(self.engine()?, number)?)
    }

    fn usage(&self, account: &str, period: Period) -> Result<UsageDoc> {
        Ok(ops::usage(self.engine()?, account, period)?)
    }

    fn close(&self, period: Period, issue_date: Option<NaiveDate>) -> Result<CloseDoc> {
        Ok(ops::close(self.engine()?, period, issue_date)?)
    }

    fn credit(&self, number: &str, input: &CreditInput) -> Result<CreditDoc> {
        Ok(credits::credit(self.engine()?, number, input)?)
    }

    fn rerate(&self, period: Period, input: &RerateInput) -> Result<RerateDoc> {
        Ok(rerate::rerate(self.engine()?, period, input)?)
    }

    fn statement(&self, account: &str, as_of: NaiveDate) -> Result<StatementDoc> {
        Ok(pay::statement(self.engine()?, account, as_of)?)
    }

    fn payments(
        &self,
        account: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Paged<PaymentDoc>> {
        let e = self.engine()?;
        let (o, l) = page(offset, limit)?;
        Ok(pay::payments(e, account, o, l)?)
    }

    fn record_payment(&self, input: &PaymentInput) -> Result<PaymentResultDoc> {
        Ok(pay::record(self.engine()?, input)?)
    }

    fn suspense(&self, offset: usize, limit: usize) -> Result<Paged<SuspenseDoc>> {
        Ok(pay::suspense(self.engine()?, offset, limit)?)
    }

    fn assign(&self, id: u64, input: &AssignInput) -> Result<PaymentResultDoc> {
        Ok(pay::assign(self.engine()?, id, input)?)
    }

    /// The tariff and accounts only: a quote does not open the database.
    fn quote(&self, q: &QuoteQuery) -> Result<serde_json::Value> {
        Ok(ops::quote(&Engine::load_reference(&self.cfg)?, q)?)
    }

    /// The ledger read-only; a broken tariff edit must not stop a report (only the
    /// currency is read from it).
    fn report(&self, req: &report::Request, format: report::Format) -> Result<String> {
        let cfg = &self.cfg;
        let ledger = crate::store::Ledger::open_read_only(&cfg.data_dir)?;
        let currency = crate::rate::tariff::Source::load(&cfg.tariff_plans)
            .map(|s| s.currency)
            .unwrap_or_default();
        let accounts = if matches!(req.by, Some(report::By::Plan)) {
            Some(crate::rate::accounts::Accounts::load(&cfg.accounts_file)?)
        } else {
            None
        };
        Ok(report::generate(&ledger, &currency, accounts.as_ref(), req)?.render(format))
    }
}

/// A running daemon's API.
pub struct Remote {
    client: Client,
}

impl Operations for Remote {
    fn accounts(&self, offset: u64, limit: u64) -> Result<Paged<AccountDoc>> {
        Ok(self
            .client
            .list(&format!("/api/v1/accounts?offset={offset}&limit={limit}"))?)
    }

    fn account(&self, id: &str) -> Result<AccountDoc> {
        Ok(self
            .client
            .get(&format!("/api/v1/accounts/{}", encode(id)))?)
    }

    fn bills(&self, period: Option<Period>, offset: u64, limit: u64) -> Result<Paged<BillDoc>> {
        Ok(self.client.list(&format!(
            "/api/v1/bills?offset={offset}&limit={limit}{}",
            period.map(|p| format!("&period={p}")).unwrap_or_default()
        ))?)
    }

    fn bill(&self, number: &str) -> Result<BillDoc> {
        Ok(self
            .client
            .get(&format!("/api/v1/bills/{}", encode(number)))?)
    }

    fn resend(&self, number: &str) -> Result<DeliveryDoc> {
        Ok(self
            .client
            .post(&format!("/api/v1/bills/{}/resend", encode(number)))?)
    }

    fn usage(&self, account: &str, period: Period) -> Result<UsageDoc> {
        Ok(self.client.get(&format!(
            "/api/v1/accounts/{}/usage?period={period}",
            encode(account)
        ))?)
    }

    fn close(&self, period: Period, issue_date: Option<NaiveDate>) -> Result<CloseDoc> {
        let q = issue_date
            .map(|d| format!("?issueDate={}", encode(&d.to_string())))
            .unwrap_or_default();
        Ok(self
            .client
            .post(&format!("/api/v1/cycles/{period}/close{q}"))?)
    }

    fn credit(&self, number: &str, input: &CreditInput) -> Result<CreditDoc> {
        Ok(self
            .client
            .post_json(&format!("/api/v1/bills/{}/credit", encode(number)), input)?)
    }

    fn rerate(&self, period: Period, input: &RerateInput) -> Result<RerateDoc> {
        Ok(self
            .client
            .post_json(&format!("/api/v1/cycles/{period}/rerate"), input)?)
    }

    fn statement(&self, account: &str, as_of: NaiveDate) -> Result<StatementDoc> {
        Ok(self.client.get(&format!(
            "/api/v1/accounts/{}/statement?date={as_of}",
            encode(account)
        ))?)
    }

    fn payments(
        &self,
        account: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<Paged<PaymentDoc>> {
        Ok(self.client.list(&format!(
            "/api/v1/payments?offset={offset}&limit={limit}{}",
            account
                .map(|a| format!("&account={}", encode(a)))
                .unwrap_or_default()
        ))?)
    }

    fn record_payment(&self, input: &PaymentInput) -> Result<PaymentResultDoc> {
        Ok(self.client.post_json("/api/v1/payments", input)?)
    }

    fn suspense(&self, offset: usize, limit: usize) -> Result<Paged<SuspenseDoc>> {
        Ok(self.client.list(&format!(
            "/api/v1/payments/suspense?offset={offset}&limit={limit}"
        ))?)
    }

    fn assign(&self, id: u64, input: &AssignInput) -> Result<PaymentResultDoc> {
        Ok(self
            .client
            .post_json(&format!("/api/v1/payments/suspense/{id}/assign"), input)?)
    }

    fn quote(&self, q: &QuoteQuery) -> Result<serde_json::Value> {
        Ok(self.client.get(&format!(
            "/api/v1/quote?account={}&service={}&to={}&at={}&usage={}",
            encode(&q.account),
            encode(&q.service),
            encode(q.to.as_deref().unwrap_or("")),
            encode(&q.at),
            q.usage.unwrap_or(1)
        ))?)
    }

    fn report(&self, req: &report::Request, format: report::Format) -> Result<String> {
        let by = req
            .by
            .map(|b| format!("&by={}", b.name()))
            .unwrap_or_default();
        Ok(self.client.text(&format!(
            "/api/v1/reports/{}?period={}{by}&format={}&top={}",
            req.kind.name(),
            req.period,
            format.name(),
            req.top
        ))?)
    }
}
