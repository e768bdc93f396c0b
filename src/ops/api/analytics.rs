//! Reports and the live dashboard's figures under `/api/v1` (viewer role):
//! `GET /api/v1/reports/{kind}` answers exactly what `tollgate report` prints (the same
//! [`crate::ops::report::generate`] and rendering), `GET /api/v1/dashboard` the figures the
//! page at `/` polls. Kept apart from the other routes so that each has its own router
//! and OpenAPI fragment, merged into the API's in [`super::router`] and
//! [`super::openapi_json`].

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::{IntoParams, OpenApi};

use super::ops::{ApiError, ErrorBody};
use super::{blocking, period, ApiState};
use crate::ops::dashboard::{self, Dashboard};
use crate::ops::report::{self, By, Format, Kind, Report, ReportError};

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> ApiError {
        match e {
            ReportError::Ledger(e) => e.into(),
            ReportError::Usage(m) => ApiError::bad_request(m),
            ReportError::Data(m) => ApiError::internal(m),
        }
    }
}

/// The routes of this module (authenticated and bounded by the API's layers).
pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/reports/{kind}", get(get_report))
        .route("/dashboard", get(get_dashboard))
}

/// The OpenAPI fragment of these routes.
#[derive(OpenApi)]
#[openapi(
    paths(get_report, get_dashboard),
    components(schemas(
        Kind,
        By,
        Format,
        Report,
        report::UsageReport,
        report::RejectsReport,
        report::Figures,
        report::Row,
        report::Change,
        report::Invoiced,
        report::RejectRow,
        Dashboard,
        crate::ingest::live::Minute,
        dashboard::Day,
        dashboard::LastClose,
        dashboard::FilesOut,
        dashboard::SpoolOut
    ))
)]
pub struct AnalyticsDoc;

/// The query of `GET /api/v1/reports/{kind}` (the options of `tollgate report`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// The period `YYYY-MM`.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}$", example = "2026-10")]
    pub period: String,
    /// Row grouping (default: service; rejects: by reason, or `day`).
    #[param(inline)]
    pub by: Option<By>,
    /// Output (default `json`); `csv` and `html` are the CLI's other formats.
    #[param(inline)]
    pub format: Option<Format>,
    /// Length of the top destinations and accounts lists (default 10).
    #[param(minimum = 0)]
    pub top: Option<usize>,
}

/// A usage, revenue or rejects report of a period: the bytes `tollgate report KIND
/// --period P [--by B] [--format F] [--top N]` prints. JSON by default; CSV and HTML
/// (self-contained, with inline SVG charts) with `format`.
#[utoipa::path(get, path = "/api/v1/reports/{kind}", tag = "reports",
    params(("kind" = Kind, Path, description = "usage, revenue or rejects"), ReportQuery),
    responses(
        (status = 200, description = "the report in the asked format",
            content(
                (Report = "application/json"),
                (String = "text/csv"),
                (String = "text/html"),
            )),
        (status = 400, description = "bad period, grouping, format or top; or a grouping the report does not have (rejects by destination)", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 404, description = "no such report", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn get_report(
    State(st): State<ApiState>,
    kind: Result<Path<String>, PathRejection>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let kind = match kind?.0.as_str() {
        "usage" => Kind::Usage,
        "revenue" => Kind::Revenue,
        "rejects" => Kind::Rejects,
        _ => {
            return Err(ApiError::not_found(
                "no such report (usage, revenue or rejects)",
            ))
        }
    };
    let q = q?.0;
    let req = report::Request {
        kind,
        period: period(&q.period)?,
        by: q.by,
        top: q.top.unwrap_or(10),
    };
    let format = q.format.unwrap_or(Format::Json);
    let e = st.engine.clone();
    let body = blocking(move || {
        // The snapshot in service names the currency and maps accounts to plans.
        let r = e.reference();
        let currency = r.tariff.currency();
        Ok(report::generate(&e.ledger, currency, Some(&r.accounts), &req)?.render(format))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}

/// The `period` of the dashboard's revenue chart.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DashboardQuery {
    /// `YYYY-MM` (default: the open period, the month after the last close; before any
    /// close the latest month with rated records).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}$", example = "2026-10")]
    pub period: Option<String>,
}

/// The live dashboard's figures: throughput now and per minute over the last hour,
/// records and files by outcome, rejects by reason, the spool backlog, rated revenue per
/// day of a period, the last cycle close.
#[utoipa::path(get, path = "/api/v1/dashboard", tag = "dashboard", params(DashboardQuery),
    responses(
        (status = 200, description = "the figures", body = Dashboard),
        (status = 400, description = "bad period", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn get_dashboard(
    State(st): State<ApiState>,
    q: Result<Query<DashboardQuery>, QueryRejection>,
) -> Result<Json<Dashboard>, ApiError> {
    let p = q?.0.period.as_deref().map(period).transpose()?;
    let e = st.engine.clone();
    Ok(Json(
        blocking(move || Ok(dashboard::snapshot(&e, p)?)).await?,
    ))
}
