//! The operator API under `/api/v1` (axum, on the daemon's runtime) and its OpenAPI
//! document.
//!
//! Every `/api` request needs `Authorization: Bearer <token>` ([`crate::ops::auth`]): missing
//! or unknown → 401, a viewer on an operator route → 403. Handlers never block the
//! runtime: ledger and file work runs in `spawn_blocking` through [`ops`], the same
//! functions the CLI calls when no daemon runs. A cycle close takes the ledger's writer
//! lock, like a file commit, so the two never interleave; a tariff reload swaps the
//! snapshot that the next file takes, so a file is always rated with one version.
//!
//! Error bodies are [`ops::ErrorBody`] JSON; they and the request log carry no
//! subscriber numbers (the log names the route, never the query string).

pub mod analytics;
pub mod credits;
pub mod ops;
pub mod pay;
pub mod psp;
pub mod rerate;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi};

use crate::billing::Period;
use crate::ingest::engine::Engine;
use crate::ops::auth::{Check, Role, Tokens};
use ops::{
    AccountDoc, AccountInput, ApiError, BillDoc, CloseDoc, ErrorBody, FileDoc, FilesQuery, Page,
    Paged, QuoteQuery, ReloadDoc, UsageDoc,
};

/// Largest accepted request body (an account upsert is a few hundred bytes).
pub const BODY_LIMIT: usize = 64 * 1024;

/// State of the API handlers.
#[derive(Clone)]
pub struct ApiState {
    pub engine: Arc<Engine>,
    pub tokens: Arc<Tokens>,
    /// Serializes account upserts (read, modify, write of the accounts file).
    upserts: Arc<std::sync::Mutex<()>>,
}

impl ApiState {
    pub fn new(engine: Arc<Engine>) -> ApiState {
        let tokens = Arc::new(Tokens::new(engine.cfg.api_tokens_file.clone()));
        ApiState {
            engine,
            tokens,
            upserts: Arc::new(std::sync::Mutex::new(())),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, Json(ErrorBody::from(&self))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tollgate\""),
            );
        }
        r
    }
}

fn rejection(status: StatusCode, text: String) -> ApiError {
    let code = match status.as_u16() {
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "invalid_body",
        _ => "bad_request",
    };
    ApiError::new(status.as_u16(), code, redact_numbers(&text))
}

/// axum's rejection texts quote what failed to parse (serde's "unknown variant `…`");
/// a run of 6 or more digits there could be a subscriber number, so it is masked.
fn redact_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 6 {
            out.push_str("<digits>");
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        rejection(r.status(), r.body_text())
    }
}
impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let status = r.status();
        let text = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!("request body larger than {BODY_LIMIT} bytes")
        } else {
            r.body_text()
        };
        rejection(status, text)
    }
}
impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        rejection(StatusCode::BAD_REQUEST, r.body_text())
    }
}

/// The authenticated caller (set by the auth middleware).
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// Extractor for operator-only handlers: 403 for a viewer.
pub struct Operator;

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Operator, ApiError> {
        match parts.extensions.get::<Caller>() {
            Some(c) if c.role >= Role::Operator => Ok(Operator),
            _ => Err(ApiError::new(
                403,
                "forbidden",
                "this operation needs an operator token",
            )),
        }
    }
}

/// Authenticates every `/api` request.
async fn authenticate(State(st): State<ApiState>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let tokens = st.tokens.clone();
    // The check may stat and re-read the tokens file.
    let check = tokio::task::spawn_blocking(move || tokens.check(header.as_deref()))
        .await
        .unwrap_or(Check::Unavailable);
    match check {
        Check::Allowed { name, role } => {
            let caller = Caller { name, role };
            req.extensions_mut().insert(caller.clone());
            let mut resp = next.run(req).await;
            resp.extensions_mut().insert(caller);
            resp
        }
        Check::Missing => ApiError::new(
            401,
            "unauthorized",
            "missing bearer token (Authorization: Bearer <token>)",
        )
        .into_response(),
        Check::Wrong => ApiError::new(401, "unauthorized", "unknown bearer token").into_response(),
        Check::Unavailable => ApiError::new(
            503,
            "tokens_unavailable",
            "the API tokens file cannot be used; see the daemon log",
        )
        .into_response(),
    }
}

/// One log line per API request: method, route (never the query string), status, caller.
pub(crate) async fn access_log(req: Request, next: Next) -> Response {
    let t0 = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "(unmatched)".to_owned());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let caller = resp
        .extensions()
        .get::<Caller>()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    tracing::info!(
        target: "tollgate::api",
        %method, %route, status, %caller, ms = t0.elapsed().as_secs_f64() * 1e3,
        "api request"
    );
    resp
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

fn paged<T: Serialize>(p: Paged<T>) -> Response {
    let n = p.items.len();
    let mut r = Json(p.items).into_response();
    let h = r.headers_mut();
    h.insert("x-total-count", HeaderValue::from(p.total as u64));
    h.insert("x-result-count", HeaderValue::from(n as u64));
    r
}

/// A `YYYY-MM` parameter. The message does not repeat the value: a caller may have put
/// anything there, a subscriber number included.
fn period(s: &str) -> Result<Period, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request("period is not YYYY-MM (month 01-12)"))
}

/// The `/api/v1` routes, authenticated, bounded and logged.
pub fn router(st: ApiState) -> Router {
    let v1 = Router::new()
        .route("/openapi.json", get(openapi))
        .route("/accounts", get(list_accounts))
        .route("/accounts/{id}", get(get_account).put(put_account))
        .route("/accounts/{id}/usage", get(get_usage))
        .route("/accounts/{id}/statement", get(get_statement))
        .route("/payments", get(list_payments).post(post_payment))
        .route("/payments/suspense", get(list_suspense))
        .route("/payments/suspense/{id}/assign", post(assign_suspense))
        .route("/quote", get(get_quote))
        .route("/bills", get(list_bills))
        .route("/bills/{bill_no}", get(get_bill))
        .route("/bills/{bill_no}/ubl", get(get_bill_ubl))
        .route("/bills/{bill_no}/pdf", get(get_bill_pdf))
        .route("/bills/{bill_no}/resend", post(resend_bill))
        .route("/cycles/{period}/close", post(close_cycle))
        .route("/files", get(list_files))
        .route("/tariffs/reload", post(reload_tariffs))
        .merge(analytics::router())
        .merge(credits::router())
        .merge(rerate::router())
        .fallback(|| async { ApiError::not_found("no such API path") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            st.clone(),
            authenticate,
        ))
        .layer(axum::middleware::from_fn(access_log))
        .with_state(st);
    Router::new().nest("/api/v1", v1)
}

#[derive(OpenApi)]
#[openapi(
    info(title = "tollgate operator API", description = "Accounts, usage, quotes, bills, cycle close, files, tariff reload, reports, the dashboard's figures, statements and payments. Every call needs `Authorization: Bearer <token>`; operator routes need an operator token."),
    paths(
        openapi, list_accounts, get_account, put_account, get_usage, get_quote, list_bills,
        get_bill, get_bill_ubl, get_bill_pdf, resend_bill, close_cycle, list_files, reload_tariffs,
        get_statement, list_payments, post_payment, list_suspense, assign_suspense
    ),
    components(schemas(
        ErrorBody, ops::Money, AccountDoc, AccountInput, UsageDoc, ops::UsageItem, ops::AllowanceUse, BillDoc,
        ops::BillLine, ops::DeliveryDoc, ops::TaxItem, ops::BillingPeriod, ops::AccountRef, CloseDoc, FileDoc,
        ops::FileStatus, ReloadDoc, pay::StatementDoc, pay::LedgerEntryDoc, pay::OpenItemDoc,
        pay::PendingFeeDoc, pay::PaymentDoc, pay::PaymentInput, pay::AmountInput, pay::PaymentResultDoc,
        pay::SuspenseDoc, pay::AssignInput
    )),
    modifiers(&BearerScheme),
    security(("bearer" = []))
)]
pub struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, o: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        o.components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
    }
}

/// The OpenAPI document (generated from the handlers and types).
pub fn openapi_json() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.merge(analytics::AnalyticsDoc::openapi());
        doc.merge(credits::CreditsDoc::openapi());
        doc.merge(rerate::RerateApiDoc::openapi());
        doc.to_pretty_json().expect("OpenAPI serializes")
    })
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses(
        (status = 200, description = "OpenAPI document", content_type = "application/json", body = Object),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

/// Accounts, in id order.
#[utoipa::path(get, path = "/api/v1/accounts", tag = "accounts", params(Page),
    responses(
        (status = 200, description = "a page of accounts", body = [AccountDoc],
            headers(("x-total-count" = u64, description = "accounts in total"),
                    ("x-result-count" = u64, description = "accounts in this page"))),
        (status = 400, description = "bad offset or limit", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn list_accounts(
    State(st): State<ApiState>,
    q: Result<Query<Page>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (offset, limit) = q?.0.resolve()?;
    let e = st.engine.clone();
    Ok(paged(
        blocking(move || Ok(ops::accounts(&e, offset, limit))).await?,
    ))
}

/// One account.
#[utoipa::path(get, path = "/api/v1/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "account id", example = "A1")),
    responses(
        (status = 200, description = "the account", body = AccountDoc),
        (status = 400, description = "bad path", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn get_account(
    State(st): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<AccountDoc>, ApiError> {
    let id = id?.0;
    let e = st.engine.clone();
    Ok(Json(blocking(move || ops::account(&e, &id)).await?))
}

/// Creates or replaces an account (operator). The accounts file is rewritten atomically
/// and reloaded; the next file is rated with it.
#[utoipa::path(put, path = "/api/v1/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "account id", example = "A1")),
    request_body = AccountInput,
    responses(
        (status = 200, description = "replaced", body = AccountDoc),
        (status = 201, description = "created", body = AccountDoc),
        (status = 400, description = "bad request (body id differs from the path)", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 403, description = "not an operator token", body = ErrorBody),
        (status = 409, description = "the accounts or tariff files on disk do not load", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "the account is invalid (the message names the line)", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn put_account(
    _op: Operator,
    State(st): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<AccountInput>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = id?.0;
    let input = body?.0;
    let e = st.engine.clone();
    let lock = st.upserts.clone();
    let (doc, created) = blocking(move || {
        let _one = lock.lock().expect("upsert lock");
        ops::upsert_account(&e, &id, input)
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(doc)).into_response())
}

/// The `period` query parameter.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeriodQuery {
    /// Billing period `YYYY-MM`.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}$", example = "2026-10")]
    pub period: String,
}

/// An account's usage dated in a period, per service, destination and band: rated (not
/// billed yet) and billed.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/usage", tag = "usage",
    params(("id" = String, Path, description = "account id", example = "A1"), PeriodQuery),
    responses(
        (status = 200, description = "usage of the period", body = UsageDoc),
        (status = 400, description = "bad period", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn get_usage(
    State(st): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<PeriodQuery>, QueryRejection>,
) -> Result<Json<UsageDoc>, ApiError> {
    let id = id?.0;
    let p = period(&q?.0.period)?;
    let e = st.engine.clone();
    Ok(Json(blocking(move || ops::usage(&e, &id, p)).await?))
}

/// What one record would cost and which deck row prices it (as `tollgate quote`).
#[utoipa::path(get, path = "/api/v1/quote", tag = "usage", params(QuoteQuery),
    responses(
        (status = 200, description = "the charge and the deck row", body = Object),
        (status = 400, description = "missing or malformed parameter", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 422, description = "not rateable (the reject reason and why)", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn get_quote(
    State(st): State<ApiState>,
    q: Result<Query<QuoteQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = q?.0;
    let e = st.engine.clone();
    Ok(Json(
        blocking(move || ops::quote(&e.reference(), &q)).await?,
    ))
}

/// The optional `period` filter of the bill list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BillsQuery {
    /// Only bills of this period `YYYY-MM` (default: every period).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}$", example = "2026-10")]
    pub period: Option<String>,
}

/// Bills in number order (TMF678 customer bills, without lines).
#[utoipa::path(get, path = "/api/v1/bills", tag = "bills", params(BillsQuery, Page),
    responses(
        (status = 200, description = "a page of bills", body = [BillDoc],
            headers(("x-total-count" = u64, description = "bills in total"),
                    ("x-result-count" = u64, description = "bills in this page"))),
        (status = 400, description = "bad period, offset or limit", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn list_bills(
    State(st): State<ApiState>,
    q: Result<Query<BillsQuery>, QueryRejection>,
    pg: Result<Query<Page>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = q?.0.period.as_deref().map(period).transpose()?;
    let (offset, limit) = pg?.0.resolve()?;
    let e = st.engine.clone();
    Ok(paged(
        blocking(move || ops::bills(&e, p, offset, limit)).await?,
    ))
}

/// One bill with its lines.
#[utoipa::path(get, path = "/api/v1/bills/{bill_no}", tag = "bills",
    params(("bill_no" = String, Path, description = "bill number YYYY-NNNNNN", example = "2026-000001")),
    responses(
        (status = 200, description = "the bill", body = BillDoc),
        (status = 400, description = "bad path", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 404, description = "no such bill", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn get_bill(
    State(st): State<ApiState>,
    no: Result<Path<String>, PathRejection>,
) -> Result<Json<BillDoc>, ApiError> {
    let no = no?.0;
    let e = st.engine.clone();
    Ok(Json(blocking(move || ops::bill(&e, &no)).await?))
}

/// Delivers a bill to its customer again (operator): a new delivery is queued and sent
/// at once (docs/delivery.md); the earlier ones keep their history.
#[utoipa::path(post, path = "/api/v1/bills/{bill_no}/resend", tag = "bills",
    params(("bill_no" = String, Path, description = "bill number YYYY-NNNNNN", example = "2026-000001")),
    responses(
        (status = 200, description = "the new delivery and its state after the attempt", body = ops::DeliveryDoc),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 403, description = "not an operator token", body = ErrorBody),
        (status = 404, description = "no such bill", body = ErrorBody),
        (status = 409, description = "refused: no [delivery] configured", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn resend_bill(
    _op: Operator,
    State(st): State<ApiState>,
    no: Result<Path<String>, PathRejection>,
) -> Result<Json<ops::DeliveryDoc>, ApiError> {
    let no = no?.0;
    let e = st.engine.clone();
    Ok(Json(blocking(move || ops::resend(&e, &no)).await?))
}

async fn bill_file(
    st: ApiState,
    no: String,
    ext: &'static str,
    mime: &'static str,
) -> Result<Response, ApiError> {
    let e = st.engine.clone();
    let (path, bytes) = blocking(move || {
        let path = ops::bill_file(&e, &no, ext)?;
        let bytes = std::fs::read(&path).map_err(ApiError::internal)?;
        Ok((path, bytes))
    })
    .await?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from(bytes),
    )
        .into_response())
}

/// The bill's UBL document, when one was written beside its JSON (`<billNo>.xml`).
#[utoipa::path(get, path = "/api/v1/bills/{bill_no}/ubl", tag = "bills",
    params(("bill_no" = String, Path, description = "bill number YYYY-NNNNNN", example = "2026-000001")),
    responses(
        (status = 200, description = "UBL 2.1 invoice", content_type = "application/xml", body = String),
        (status = 400, description = "bad path", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 404, description = "no such bill or no UBL document", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn get_bill_ubl(
    State(st): State<ApiState>,
    no: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    bill_file(st, no?.0, "xml", "application/xml").await
}

/// The bill's PDF, when one was written beside its JSON (`<billNo>.pdf`).
#[utoipa::path(get, path = "/api/v1/bills/{bill_no}/pdf", tag = "bills",
    params(("bill_no" = String, Path, description = "bill number YYYY-NNNNNN", example = "2026-000001")),
    responses(
        (status = 200, description = "PDF invoice", content_type = "application/pdf", body = String),
        (status = 400, description = "bad path", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 404, description = "no such bill or no PDF", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn get_bill_pdf(
    State(st): State<ApiState>,
    no: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    bill_file(st, no?.0, "pdf", "application/pdf").await
}

/// The optional issue date of a close.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct CloseQuery {
    /// Issue date `YYYY-MM-DD` (default: today in the tariff time zone).
    #[param(example = "2026-11-26")]
    pub issue_date: Option<String>,
}

/// Closes a billing period (operator): bills every unbilled record dated up to its end,
/// numbers and writes the invoices. Idempotent for a period already closed.
#[utoipa::path(post, path = "/api/v1/cycles/{period}/close", tag = "bills",
    params(("period" = String, Path, description = "period YYYY-MM", example = "2026-10"), CloseQuery),
    responses(
        (status = 200, description = "closed (or already closed: `new` is false)", body = CloseDoc),
        (status = 400, description = "bad period or issue date", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 403, description = "not an operator token", body = ErrorBody),
        (status = 409, description = "refused: periods close forward only", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn close_cycle(
    _op: Operator,
    State(st): State<ApiState>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<CloseQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = period(&p?.0)?;
    let issue = match q?.0.issue_date {
        Some(d) => Some(
            chrono::NaiveDate::parse_from_str(&d, "%Y-%m-%d")
                .map_err(|_| ApiError::bad_request(format!("issueDate `{d}` is not YYYY-MM-DD")))?,
        ),
        None => None,
    };
    let e = st.engine.clone();
    let doc = blocking(move || ops::close(&e, p, issue)).await?;
    Ok(Json(doc).into_response())
}

/// CDR files: committed (with counts, rejects by reason, charge and tariff version), failed
/// (with the reason), being rated, waiting.
#[utoipa::path(get, path = "/api/v1/files", tag = "files", params(FilesQuery, Page),
    responses(
        (status = 200, description = "a page of files", body = [FileDoc],
            headers(("x-total-count" = u64, description = "files in total"),
                    ("x-result-count" = u64, description = "files in this page"))),
        (status = 400, description = "bad status, offset or limit", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn list_files(
    State(st): State<ApiState>,
    q: Result<Query<FilesQuery>, QueryRejection>,
    pg: Result<Query<Page>, QueryRejection>,
) -> Result<Response, ApiError> {
    let status = q?.0.status;
    let (offset, limit) = pg?.0.resolve()?;
    let e = st.engine.clone();
    Ok(paged(
        blocking(move || ops::files(&e, status, offset, limit)).await?,
    ))
}

/// Compiles the tariff sources, reloads the accounts and swaps both in for the next
/// file (operator; as SIGHUP). A broken source is refused with its errors (422) and
/// the snapshot in service stays.
#[utoipa::path(post, path = "/api/v1/tariffs/reload", tag = "tariffs",
    responses(
        (status = 200, description = "in service now", body = ReloadDoc),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 403, description = "not an operator token", body = ErrorBody),
        (status = 422, description = "refused; `errors` names file, line and reason", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn reload_tariffs(_op: Operator, State(st): State<ApiState>) -> Result<Response, ApiError> {
    let e = st.engine.clone();
    let doc = blocking(move || ops::reload(&e)).await?;
    Ok(Json(doc).into_response())
}

/// The optional as-of date of a statement.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    /// Statuses (overdue) as of this date `YYYY-MM-DD` (default: today, UTC).
    #[param(example = "2026-10-20")]
    pub date: Option<String>,
}

/// An account's statement (TMF676-flavoured): ledger entries with running balance, open
/// items (credited, paid, open, status, direct debit state), fees waiting for the next
/// bill and the balance (positive: owed; negative: credit on the account).
#[utoipa::path(get, path = "/api/v1/accounts/{id}/statement", tag = "payments",
    params(("id" = String, Path, description = "account id", example = "A1"), StatementQuery),
    responses(
        (status = 200, description = "the statement", body = pay::StatementDoc),
        (status = 400, description = "bad date", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn get_statement(
    State(st): State<ApiState>,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<StatementQuery>, QueryRejection>,
) -> Result<Json<pay::StatementDoc>, ApiError> {
    let id = id?.0;
    let date = pay::date_or_today(q?.0.date.as_deref(), "date")?;
    let e = st.engine.clone();
    Ok(Json(blocking(move || pay::statement(&e, &id, date)).await?))
}

/// Payments received (manual and from bank statements), in posting order.
#[utoipa::path(get, path = "/api/v1/payments", tag = "payments", params(pay::PaymentsQuery, Page),
    responses(
        (status = 200, description = "a page of payments", body = [pay::PaymentDoc],
            headers(("x-total-count" = u64, description = "payments in total"),
                    ("x-result-count" = u64, description = "payments in this page"))),
        (status = 400, description = "bad offset or limit", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn list_payments(
    State(st): State<ApiState>,
    q: Result<Query<pay::PaymentsQuery>, QueryRejection>,
    pg: Result<Query<Page>, QueryRejection>,
) -> Result<Response, ApiError> {
    let account = q?.0.account;
    let (offset, limit) = pg?.0.resolve()?;
    let e = st.engine.clone();
    Ok(paged(
        blocking(move || pay::payments(&e, account.as_deref(), offset, limit)).await?,
    ))
}

/// Records a manual payment (operator): on the bill up to its open amount, the rest as
/// credit on the account; one synced ledger write.
#[utoipa::path(post, path = "/api/v1/payments", tag = "payments",
    request_body = pay::PaymentInput,
    responses(
        (status = 201, description = "recorded", body = pay::PaymentResultDoc),
        (status = 400, description = "bad payment date", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 403, description = "not an operator token", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "refused: unknown account or bill, bad amount or currency", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn post_payment(
    _op: Operator,
    State(st): State<ApiState>,
    body: Result<Json<pay::PaymentInput>, JsonRejection>,
) -> Result<Response, ApiError> {
    let input = body?.0;
    let e = st.engine.clone();
    let doc = blocking(move || pay::record(&e, &input)).await?;
    Ok((StatusCode::CREATED, Json(doc)).into_response())
}

/// Bank credits that matched no invoice, waiting for the operator.
#[utoipa::path(get, path = "/api/v1/payments/suspense", tag = "payments", params(Page),
    responses(
        (status = 200, description = "a page of suspense items", body = [pay::SuspenseDoc],
            headers(("x-total-count" = u64, description = "items in total"),
                    ("x-result-count" = u64, description = "items in this page"))),
        (status = 400, description = "bad offset or limit", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn list_suspense(
    State(st): State<ApiState>,
    pg: Result<Query<Page>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (offset, limit) = pg?.0.resolve()?;
    let e = st.engine.clone();
    Ok(paged(
        blocking(move || pay::suspense(&e, offset, limit)).await?,
    ))
}

/// Assigns a suspense item to an account and optionally a bill (operator).
#[utoipa::path(post, path = "/api/v1/payments/suspense/{id}/assign", tag = "payments",
    params(("id" = u64, Path, description = "suspense item id", example = 7)),
    request_body = pay::AssignInput,
    responses(
        (status = 200, description = "assigned", body = pay::PaymentResultDoc),
        (status = 400, description = "bad path", body = ErrorBody),
        (status = 401, description = "missing or unknown token", body = ErrorBody),
        (status = 403, description = "not an operator token", body = ErrorBody),
        (status = 404, description = "no such suspense item", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "refused: unknown account or bill", body = ErrorBody),
        (status = 503, description = "tokens file unusable", body = ErrorBody),
    ))]
async fn assign_suspense(
    _op: Operator,
    State(st): State<ApiState>,
    id: Result<Path<u64>, PathRejection>,
    body: Result<Json<pay::AssignInput>, JsonRejection>,
) -> Result<Json<pay::PaymentResultDoc>, ApiError> {
    let id = id?.0;
    let input = body?.0;
    let e = st.engine.clone();
    Ok(Json(blocking(move || pay::assign(&e, id, &input)).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_texts_mask_long_digit_runs() {
        assert_eq!(
            redact_numbers("format: unknown variant `+31612345678`, expected one of `csv`"),
            "format: unknown variant `+<digits>`, expected one of `csv`"
        );
        assert_eq!(
            redact_numbers("at line 1 column 12345: 123456"),
            "at line 1 column 12345: <digits>"
        );
        assert_eq!(redact_numbers(""), "");
    }
}
