//! Credit notes through the API (operator): `POST /api/v1/bills/{billNo}/credit` does
//! what `tollgate invoice credit` does — a credit note on an invoice (in full, for some
//! lines, or for a net amount) and, with `reissue`, the corrected invoice — and answers
//! the document both print from ([`CreditDoc`]). Kept in its own module with its own
//! router and OpenAPI fragment.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::ops::{ApiError, ErrorBody, Money};
use super::{blocking, ApiState, Operator};
use crate::billing::{CreditWhat, Invoice};
use crate::ingest::engine::Engine;
use crate::rate::money::Cents;

/// The routes of this module.
pub fn router() -> Router<ApiState> {
    Router::new().route("/bills/{bill_no}/credit", post(post_credit))
}

/// The OpenAPI fragment of these routes.
#[derive(OpenApi)]
#[openapi(
    paths(post_credit),
    components(schemas(CreditInput, CreditDoc, IssuedDoc))
)]
pub struct CreditsDoc;

/// What to credit (the options of `tollgate invoice credit`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreditInput {
    /// Why (printed on the credit note).
    #[schema(example = "wrong plan in October")]
    pub reason: String,
    /// Credit only these lines (1-based, as on the invoice: usage, subscription or
    /// late-payment fee lines), each as far as still creditable. Not with `amount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<Vec<usize>>,
    /// Credit this net amount (excluding VAT), e.g. `5.00`; invoices with one VAT group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "5.00")]
    pub amount: Option<String>,
    /// Then issue a corrected invoice for the same lines (needs a full credit).
    #[serde(default)]
    pub reissue: bool,
    /// Issue date `YYYY-MM-DD` (default: today in the tariff time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "2026-11-30")]
    pub issue_date: Option<String>,
}

/// A document issued by a credit (the credit note, or the reissued invoice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedDoc {
    #[schema(example = "CN-2026-000001")]
    pub bill_no: String,
    pub bill_date: String,
    /// Net amount (negative on a credit note).
    pub tax_excluded_amount: Money,
    pub tax_amount: Money,
    /// Everything, late-payment fee lines included (they are outside VAT).
    pub tax_included_amount: Money,
    /// The late-payment fee lines (collection costs, compensation, interest) in
    /// `taxIncludedAmount`; absent when the document has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_amount: Option<Money>,
}

impl IssuedDoc {
    fn of(inv: &Invoice) -> IssuedDoc {
        let m = |v: &Cents| Money {
            unit: inv.currency.clone(),
            value: v.to_string(),
        };
        IssuedDoc {
            bill_no: inv.number.clone(),
            bill_date: inv.issue_date.to_string(),
            tax_excluded_amount: m(&inv.net_total),
            tax_amount: m(&inv.vat_total),
            tax_included_amount: m(&inv.total),
            fee_amount: inv
                .lines
                .iter()
                .any(|l| matches!(l, crate::billing::Line::Fee { .. }))
                .then(|| {
                    let fees: i64 = inv
                        .lines
                        .iter()
                        .filter(|l| matches!(l, crate::billing::Line::Fee { .. }))
                        .map(crate::billing::Line::cents)
                        .sum();
                    m(&Cents(fees))
                }),
        }
    }

    /// `net N + VAT V [+ fees F] = T`.
    fn sum(&self) -> String {
        let fees = self
            .fee_amount
            .as_ref()
            .map(|f| format!(" + fees {}", f.value))
            .unwrap_or_default();
        format!(
            "net {} + VAT {}{fees} = {}",
            self.tax_excluded_amount.value, self.tax_amount.value, self.tax_included_amount.value
        )
    }
}

/// The outcome of a credit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditDoc {
    /// The invoice credited.
    pub credited_bill_no: String,
    pub credit_note: IssuedDoc,
    /// The corrected invoice, with `reissue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissued: Option<IssuedDoc>,
    /// The documents written, as their JSON files (UBL and PDF are written beside).
    pub files: Vec<String>,
}

impl CreditDoc {
    /// What `tollgate invoice credit` prints.
    pub fn render(&self) -> String {
        let cn = &self.credit_note;
        let mut s = format!(
            "credit note {} on invoice {}: {}",
            cn.bill_no,
            self.credited_bill_no,
            cn.sum()
        );
        if let Some(r) = &self.reissued {
            s.push_str(&format!("\nreissued as invoice {}: {}", r.bill_no, r.sum()));
        }
        for f in &self.files {
            s.push_str(&format!("\nwrote {f}"));
        }
        s
    }
}

/// Issues the credit note (and the reissue) under the ledger's writer lock, as the CLI
/// does without a daemon. Blocking.
pub fn credit(engine: &Engine, number: &str, input: &CreditInput) -> Result<CreditDoc, ApiError> {
    use chrono::Datelike;
    if input.reason.trim().is_empty() {
        return Err(ApiError::bad_request("a credit note needs a reason"));
    }
    let what = match (&input.lines, &input.amount) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "credit either lines or an amount, not both",
            ))
        }
        (Some(l), None) => CreditWhat::Lines(l.clone()),
        (None, Some(a)) => CreditWhat::Amount(
            crate::rate::money::parse_cents(a)
                .map_err(|m| ApiError::bad_request(format!("amount: {m}")))?,
        ),
        (None, None) => CreditWhat::Full,
    };
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
    if engine.ledger.invoice(number)?.is_none() {
        return Err(ApiError::not_found(format!("no bill `{number}`")));
    }
    let out = crate::billing::credit(
        &engine.cfg,
        &engine.ledger,
        &r.accounts,
        number,
        what,
        &input.reason,
        input.reissue,
        issue,
    )?;
    tracing::info!(credited = number, credit_note = %out.credit_note.number, "credit note issued");
    Ok(CreditDoc {
        credited_bill_no: number.to_owned(),
        credit_note: IssuedDoc::of(&out.credit_note),
        reissued: out.reissued.as_ref().map(IssuedDoc::of),
        files: out.files.iter().map(|f| f.display().to_string()).collect(),
    })
}

/// Issues a credit note on a bill (operator), as `tollgate invoice credit`: in full, for
/// some lines or for a net amount; with `reissue`, then the corrected invoice. Nothing
/// is ever credited twice: an amount above what is left is refused (409) with what is
/// left.
#[utoipa::path(post, path = "/api/v1/bills/{bill_no}/credit", tag = "bills",
    params(("bill_no" = String, Path, description = "invoice number", example = "2026-000001")),
    request_body = CreditInput,
    responses(
        (status = 201, description = "the credit note (and the reissued invoice) issued", body = CreditDoc),
        (status = 400, description = "bad request (no reason, lines and amount, bad amount or date)", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 403, description = "not an operator token", body = ErrorBody),
        (status = 404, description = "no such bill", body = ErrorBody),
        (status = 409, description = "refused: nothing left to credit, more than is left, a credit note, or a reissue without a full credit", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "the body is not a credit request", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn post_credit(
    _op: Operator,
    State(st): State<ApiState>,
    no: Result<Path<String>, PathRejection>,
    body: Result<Json<CreditInput>, JsonRejection>,
) -> Result<Response, ApiError> {
    let no = no?.0;
    let input = body?.0;
    let e = st.engine.clone();
    let doc = blocking(move || credit(&e, &no, &input)).await?;
    Ok((StatusCode::CREATED, Json(doc)).into_response())
}
