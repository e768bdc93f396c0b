//! Rerating through the API (operator): `POST /api/v1/cycles/{period}/rerate` does what
//! `tollgate rerate` does ([`crate::billing::rerate`]) and answers the document both
//! print from ([`RerateDoc`]). Its own router and OpenAPI fragment, like `credits`.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::ops::{ApiError, ErrorBody, Money};
use super::{blocking, period, ApiState, Operator};
use crate::billing::rerate::{Current, Outcome, Request, Totals};
use crate::billing::Period;
use crate::ingest::engine::Engine;

/// The routes of this module.
pub fn router() -> Router<ApiState> {
    Router::new().route("/cycles/{period}/rerate", post(post_rerate))
}

/// The OpenAPI fragment of these routes.
#[derive(OpenApi)]
#[openapi(
    paths(post_rerate),
    components(schemas(
        RerateInput,
        RerateDoc,
        RerateTotals,
        RerateAccount,
        RerateCorrection,
        RerateSkipped
    ))
)]
pub struct RerateApiDoc;

/// What to rerate (the options of `tollgate rerate`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RerateInput {
    /// Only these accounts (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// Compute and report, write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Needed for a closed period: credit every invoice whose re-rated lines differ and
    /// issue a corrected one.
    #[serde(default)]
    pub correct: bool,
    /// Issue date `YYYY-MM-DD` of credit notes and corrected invoices (default: today in
    /// the tariff time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "2026-12-05")]
    pub issue_date: Option<String>,
}

/// Records and their rated charge (6 decimals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RerateTotals {
    pub records: u64,
    pub charge: Money,
}

/// An account whose unbilled usage of the period changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RerateAccount {
    pub account_id: String,
    pub old: RerateTotals,
    pub new: RerateTotals,
}

/// An invoice corrected by a credit note and a corrected invoice (numbers absent on a
/// dry run; no `reissuedBillNo` when nothing is billed any more).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RerateCorrection {
    pub account_id: String,
    /// The invoice credited (the close's, or the reissue that replaced it last).
    pub bill_no: String,
    pub old_amount: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credit_note_bill_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissued_bill_no: Option<String>,
    /// Total of the corrected invoice (a dry run: net + VAT of the re-rated lines).
    pub new_amount: Money,
}

/// Left alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RerateSkipped {
    pub account_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_no: Option<String>,
    pub reason: String,
}

/// The outcome of a rerate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RerateDoc {
    #[schema(example = "2026-10")]
    pub period: String,
    /// `open` or `closed`.
    pub state: String,
    /// The tariff version (SHA-256 of its sources) the records were priced with.
    pub tariff_version: String,
    pub dry_run: bool,
    /// Files re-rated and the period's records found in them.
    pub files: usize,
    pub records: u64,
    /// Accounts whose unbilled usage of the period changed, old and new.
    pub accounts: Vec<RerateAccount>,
    /// Closed period: invoices corrected.
    pub corrections: Vec<RerateCorrection>,
    /// Closed period: invoices whose re-rated lines are the same (left alone).
    pub unchanged: Vec<String>,
    pub skipped: Vec<RerateSkipped>,
    /// The documents written, as their JSON files.
    pub written: Vec<String>,
}

impl RerateDoc {
    fn of(o: &Outcome, currency: &str) -> RerateDoc {
        let m = |v: String| Money {
            unit: currency.to_owned(),
            value: v,
        };
        let t = |x: &Totals| RerateTotals {
            records: x.records,
            charge: m(x.charge.to_string()),
        };
        RerateDoc {
            period: o.period.clone(),
            state: if o.closed { "closed" } else { "open" }.into(),
            tariff_version: o.tariff_version.clone(),
            dry_run: o.dry_run,
            files: o.files,
            records: o.records,
            accounts: o
                .accounts
                .iter()
                .map(|a| RerateAccount {
                    account_id: a.account_id.clone(),
                    old: t(&a.old),
                    new: t(&a.new),
                })
                .collect(),
            corrections: o
                .corrections
                .iter()
                .map(|c| RerateCorrection {
                    account_id: c.account_id.clone(),
                    bill_no: c.invoice.clone(),
                    old_amount: m(c.old_total.to_string()),
                    credit_note_bill_no: c.credit_note.clone(),
                    reissued_bill_no: c.reissued.clone(),
                    new_amount: m(c.new_total.to_string()),
                })
                .collect(),
            unchanged: o.unchanged.clone(),
            skipped: o
                .skipped
                .iter()
                .map(|s| RerateSkipped {
                    account_id: s.account_id.clone(),
                    bill_no: s.invoice.clone(),
                    reason: s.reason.clone(),
                })
                .collect(),
            written: o
                .files_written
                .iter()
                .map(|f| f.display().to_string())
                .collect(),
        }
    }

    /// What `tollgate rerate` prints.
    pub fn render(&self) -> String {
        let mut s = format!(
            "rerate {} ({}) against tariff {}: {} files, {} records of the period{}",
            self.period,
            self.state,
            self.tariff_version,
            self.files,
            self.records,
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        );
        for a in &self.accounts {
            s.push_str(&format!(
                "\n{}: {} records {} -> {} records {}",
                a.account_id, a.old.records, a.old.charge.value, a.new.records, a.new.charge.value
            ));
        }
        if self.accounts.is_empty() {
            s.push_str("\nno account's unbilled usage of the period changed");
        }
        if self.state == "closed" {
            for c in &self.corrections {
                let issued = match (&c.credit_note_bill_no, &c.reissued_bill_no) {
                    (Some(cn), Some(r)) => format!("credit note {cn}, corrected invoice {r}"),
                    (Some(cn), None) => format!("credit note {cn}, nothing billed any more"),
                    _ => "would be credited and reissued".into(),
                };
                s.push_str(&format!(
                    "\ninvoice {} ({}): {}: {} -> {}",
                    c.bill_no, c.account_id, issued, c.old_amount.value, c.new_amount.value
                ));
            }
            s.push_str(&format!(
                "\n{} invoices corrected, {} unchanged",
                self.corrections.len(),
                self.unchanged.len()
            ));
        }
        for k in &self.skipped {
            s.push_str(&format!(
                "\nskipped {}{}: {}",
                k.account_id,
                k.bill_no
                    .as_deref()
                    .map(|b| format!(" (invoice {b})"))
                    .unwrap_or_default(),
                k.reason
            ));
        }
        for f in &self.written {
            s.push_str(&format!("\nwrote {f}"));
        }
        s
    }
}

/// Rerates a period with the engine's current tariff and accounts, as the CLI does
/// without a daemon. Blocking.
pub fn rerate(engine: &Engine, p: Period, input: &RerateInput) -> Result<RerateDoc, ApiError> {
    use chrono::Datelike;
    let r = engine.reference();
    let issue = match &input.issue_date {
        Some(d) => chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .ok()
            .filter(|d| (2000..=9999).contains(&d.year()))
            .ok_or_else(|| {
                ApiError::bad_request("issue date is not YYYY-MM-DD (years 2000..=9999)")
            })?,
        None => chrono::Utc::now().with_timezone(&r.tariff.tz).date_naive(),
    };
    let req = Request {
        period: p,
        accounts: input.accounts.clone(),
        dry_run: input.dry_run,
        correct: input.correct,
        issue,
    };
    let current = Current {
        tariff: &r.tariff,
        accounts: &r.accounts,
        index: &r.index,
        accounts_hash: &r.accounts_hash,
    };
    let out = crate::billing::rerate::rerate(&engine.cfg, &engine.ledger, &current, &req)?;
    tracing::info!(
        period = %out.period,
        accounts = out.accounts.len(),
        corrections = out.corrections.len(),
        dry_run = out.dry_run,
        "rerate"
    );
    Ok(RerateDoc::of(&out, r.tariff.currency()))
}

/// Rerates a period (operator), as `tollgate rerate`: the period's records re-derived
/// from the `done/` files and priced with the current tariff and accounts. An open
/// period's unbilled usage is replaced; a closed period needs `correct` and gets a credit
/// note and a corrected invoice for every invoice whose lines differ. All of it in one
/// atomic write, or nothing.
#[utoipa::path(post, path = "/api/v1/cycles/{period}/rerate", tag = "bills",
    params(("period" = String, Path, description = "period YYYY-MM", example = "2026-10")),
    request_body = RerateInput,
    responses(
        (status = 200, description = "rerated (or, with dryRun, what a rerate would do)", body = RerateDoc),
        (status = 400, description = "bad period or issue date", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 403, description = "not an operator token", body = ErrorBody),
        (status = 409, description = "refused: a closed period without correct, a file erased or rewritten, a period billed by a later close", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "the body is not a rerate request", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn post_rerate(
    _op: Operator,
    State(st): State<ApiState>,
    p: Result<Path<String>, PathRejection>,
    body: Result<Json<RerateInput>, JsonRejection>,
) -> Result<Response, ApiError> {
    let p = period(&p?.0)?;
    let input = body?.0;
    let e = st.engine.clone();
    let doc = blocking(move || rerate(&e, p, &input)).await?;
    Ok(Json(doc).into_response())
}
