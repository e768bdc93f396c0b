//! The operator API against the real binary: authentication (401/403), body limit (413),
//! pagination, every `/api/v1` path with exact values, and the CLI through the API
//! printing exactly what it prints without a daemon.

use crate::common::*;
use serde_json::{json, Value};

const TOKENS: &str = "api_tokens_file = \"tokens.csv\"\n";

/// `tollgate token add`: the token printed on stdout.
fn add_token(ws: &Ws, name: &str, role: &str) -> String {
    let out = run(&[
        "token",
        "add",
        name,
        "--role",
        role,
        "--config",
        ws.config_arg(),
    ])
    .ok();
    let token = out.stdout.trim().to_owned();
    assert!(
        token.starts_with("tg_") && token.len() == 67,
        "token {token:?}"
    );
    assert!(
        out.stderr
            .contains(&format!("added token `{name}` ({role})")),
        "{}",
        out.stderr
    );
    token
}

struct Api<'a> {
    d: &'a Daemon,
}

impl Api<'_> {
    fn req(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        http_request(self.d.addr, method, path, &headers, &bytes)
    }
    fn get(&self, path: &str, token: &str) -> Resp {
        self.req("GET", path, Some(token), None)
    }
    /// GET that must answer 200 with JSON.
    fn ok(&self, path: &str, token: &str) -> Value {
        let r = self.get(path, token);
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "GET {path}"
        );
        r.json()
    }
}

fn assert_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["status"], status, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
}

/// Four rated records and one reject, hand-priced (see `HAND_PLANS`/`HAND_DECK`):
/// A1 voice NL 90 s → 120 s billed → 0.10 + 0.60 × 2 = 1.30; A1 sms 0.10; A2 voice UK
/// 30 s → 0.60; A1 data 2 MiB → 2.00; A9 unknown.
fn hand_cdrs() -> Vec<u8> {
    cdr_file(&[
        "r1,A1,voice,31612345678,31201234567,2026-10-05T10:00:00Z,90,",
        "r2,A1,sms,31612345678,31201234567,2026-10-06T10:00:00Z,,",
        "r3,A2,voice,31612345679,442012345678,2026-10-07T10:00:00Z,30,",
        "r4,A1,data,31612345678,,2026-10-08T10:00:00Z,,2097152",
        "r5,A9,voice,31612345670,31201234567,2026-10-08T11:00:00Z,10,",
    ])
}

fn eur(v: &str) -> Value {
    json!({"unit": "EUR", "value": v})
}

/// A usage item: (status, service, destination, unit), (quantity, usage, billed), charge.
fn usage_item(key: (&str, &str, &str, &str), (q, u, b): (u64, u64, u64), charge: &str) -> Value {
    let (status, service, dest, unit) = key;
    json!({"status": status, "service": service, "destination": dest, "band": "any", "unit": unit,
           "quantity": q, "usageVolume": u, "billedVolume": b, "charge": eur(charge)})
}

fn a1_usage(status: &str) -> Vec<Value> {
    vec![
        usage_item(
            (status, "voice", "Netherlands", "seconds"),
            (1, 90, 120),
            "1.300000",
        ),
        usage_item((status, "sms", "SMS", "messages"), (1, 1, 1), "0.100000"),
        usage_item(
            (status, "data", "Mobile data", "bytes"),
            (1, 2097152, 2097152),
            "2.000000",
        ),
    ]
}

fn wait_committed(api: &Api, token: &str, n: usize) {
    api.d.wait_until("files committed", || {
        let v = api.ok("/api/v1/files?status=committed", token);
        v.as_array().unwrap().len() == n
    });
}

/// The daemon of [`auth_pagination_and_every_path_with_exact_values`], its workspace and
/// its operator and viewer tokens.
struct Paths {
    ws: Ws,
    d: Daemon,
    op: String,
    view: String,
}

/// Every `/api/v1` path with exact values, as named steps on one daemon.
#[test]
fn auth_pagination_and_every_path_with_exact_values() {
    let s = start_paths();
    paths_authentication(&s);
    paths_openapi_document(&s);
    paths_accounts_and_pagination(&s);
    paths_upsert(&s);
    paths_files_and_usage(&s);
    paths_quote(&s);
    paths_close_and_bills(&s);
    paths_tariff_reload(s);
}

/// A4 (upserted below) is a consumer in BE: taxed at BE's rate (issue 3, OSS).
fn start_paths() -> Paths {
    let ws = Ws::hand_with(TOKENS);
    let mut cfg = std::fs::read_to_string(&ws.config).unwrap();
    cfg.push_str("\n[billing.vat_rates]\nBE = \"21\"\n");
    std::fs::write(&ws.config, cfg).unwrap();
    let op = add_token(&ws, "ops", "operator");
    let view = add_token(&ws, "dash", "viewer");
    let d = Daemon::start(&ws);
    Paths { ws, d, op, view }
}

/// 401 without or with a wrong token, 403 for a viewer's writes, tokens added while running.
fn paths_authentication(s: &Paths) {
    let ws = &s.ws;
    let d = &s.d;
    let view = s.view.clone();
    let api = Api { d: &s.d };

    // --- authentication -------------------------------------------------------------
    let r = api.req("GET", "/api/v1/accounts", None, None);
    assert_error(&r, 401, "unauthorized");
    assert!(r
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Bearer")));
    assert_error(&api.get("/api/v1/accounts", "tg_0000"), 401, "unauthorized");
    assert_error(
        &api.get("/api/v1/accounts", &format!("{view}x")),
        401,
        "unauthorized",
    );
    assert_error(
        &api.get("/api/v1/nothing-here", "wrong"),
        401,
        "unauthorized",
    );
    assert_error(&api.get("/api/v1/nothing-here", &view), 404, "not_found");
    // Open endpoints stay open.
    assert_eq!(d.get("/healthz").0, 200);
    assert_eq!(d.get("/metrics").0, 200);
    // Viewer on operator routes: 403 (before any body is read).
    assert_error(
        &api.req("POST", "/api/v1/cycles/2026-10/close", Some(&view), None),
        403,
        "forbidden",
    );
    assert_error(
        &api.req("POST", "/api/v1/tariffs/reload", Some(&view), None),
        403,
        "forbidden",
    );
    assert_error(
        &api.req(
            "PUT",
            "/api/v1/accounts/A4",
            Some(&view),
            Some(&json!({"plan": "flat"})),
        ),
        403,
        "forbidden",
    );
    // A token added while the daemon runs works at once.
    let late = add_token(ws, "late", "viewer");
    assert_eq!(api.get("/api/v1/accounts", &late).status, 200);
}

/// The OpenAPI document the daemon serves.
fn paths_openapi_document(s: &Paths) {
    let view = s.view.clone();
    let api = Api { d: &s.d };

    // --- OpenAPI ----------------------------------------------------------------------
    let doc = api.ok("/api/v1/openapi.json", &view);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    for p in [
        "/api/v1/accounts",
        "/api/v1/accounts/{id}",
        "/api/v1/accounts/{id}/usage",
        "/api/v1/quote",
        "/api/v1/bills",
        "/api/v1/bills/{bill_no}",
        "/api/v1/bills/{bill_no}/ubl",
        "/api/v1/bills/{bill_no}/pdf",
        "/api/v1/cycles/{period}/close",
        "/api/v1/files",
        "/api/v1/tariffs/reload",
        "/api/v1/reports/{kind}",
        "/api/v1/dashboard",
        "/api/v1/openapi.json",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} missing from the OpenAPI document"
        );
    }
    // Reports in three media types, the JSON one with a real schema; the dashboard too.
    let ok = &doc["paths"]["/api/v1/reports/{kind}"]["get"]["responses"]["200"]["content"];
    assert_eq!(
        ok["application/json"]["schema"]["$ref"],
        "#/components/schemas/Report"
    );
    assert_eq!(ok["text/csv"]["schema"]["type"], "string");
    assert_eq!(ok["text/html"]["schema"]["type"], "string");
    assert_eq!(
        doc["components"]["schemas"]["Report"]["oneOf"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        doc["paths"]["/api/v1/dashboard"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/Dashboard"
    );
    for field in [
        "records_per_second",
        "last_hour",
        "spool",
        "days",
        "last_close",
        "rejects",
    ] {
        assert!(
            doc["components"]["schemas"]["Dashboard"]["properties"][field].is_object(),
            "Dashboard.{field} in the schema"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

/// Accounts, paged.
fn paths_accounts_and_pagination(s: &Paths) {
    let view = s.view.clone();
    let api = Api { d: &s.d };

    // --- accounts and pagination ----------------------------------------------------
    let r = api.get("/api/v1/accounts", &view);
    assert_eq!(r.header("x-total-count"), Some("3"));
    assert_eq!(r.header("x-result-count"), Some("3"));
    assert_eq!(
        r.json(),
        json!([
            {"id": "A1", "href": "/api/v1/accounts/A1", "plan": "flat", "name": "Alice Jansen",
             "street": "Damrak 1", "postcode": "1012 LG", "city": "Amsterdam", "country": "NL",
             "email": "alice@example.com"},
            {"id": "A2", "href": "/api/v1/accounts/A2", "plan": "flat", "name": "Bob de Vries"},
            {"id": "A3", "href": "/api/v1/accounts/A3", "plan": "flat"},
        ])
    );
    let r = api.get("/api/v1/accounts?offset=1&limit=1", &view);
    assert_eq!(r.header("x-total-count"), Some("3"));
    assert_eq!(r.header("x-result-count"), Some("1"));
    assert_eq!(r.json()[0]["id"], "A2");
    assert_eq!(api.ok("/api/v1/accounts?offset=5", &view), json!([]));
    assert_error(
        &api.get("/api/v1/accounts?limit=0", &view),
        400,
        "bad_request",
    );
    assert_error(
        &api.get("/api/v1/accounts?limit=1001", &view),
        400,
        "bad_request",
    );
    assert_error(
        &api.get("/api/v1/accounts?offset=-1", &view),
        400,
        "bad_request",
    );
    assert_eq!(api.ok("/api/v1/accounts/A2", &view)["name"], "Bob de Vries");
    assert_error(&api.get("/api/v1/accounts/NOPE", &view), 404, "not_found");
}

/// Accounts written through the API: created, changed, refused (400, 415, 422, 413).
fn paths_upsert(s: &Paths) {
    let ws = &s.ws;
    let d = &s.d;
    let op = s.op.clone();
    let view = s.view.clone();
    let api = Api { d: &s.d };

    // --- upsert -----------------------------------------------------------------------
    let a4 =
        json!({"plan": "flat", "name": "Dirk, \"D\" Bakker", "country": "BE", "language": "nl"});
    let r = api.req("PUT", "/api/v1/accounts/A4", Some(&op), Some(&a4));
    assert_eq!(r.status, 201, "{}", r.text());
    let want_a4 = json!({"id": "A4", "href": "/api/v1/accounts/A4", "plan": "flat",
        "name": "Dirk, \"D\" Bakker", "country": "BE", "language": "nl"});
    assert_eq!(r.json(), want_a4);
    assert_eq!(api.ok("/api/v1/accounts/A4", &view), want_a4);
    let file = std::fs::read_to_string(ws.root.join("accounts.csv")).unwrap();
    assert!(
        file.ends_with(
            "A4,flat,\"Dirk, \"\"D\"\" Bakker\",,,,BE,,nl,consumer,transfer,,,,,,,no,last4\n"
        ),
        "{file}"
    );
    // Replace: 200, and the fetched document can be sent back as is.
    let mut back = want_a4.clone();
    back["city"] = json!("Gent");
    let r = api.req("PUT", "/api/v1/accounts/A4", Some(&op), Some(&back));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(api.ok("/api/v1/accounts/A4", &view)["city"], "Gent");
    // Validation: the loader's message with the line; nothing is written.
    let r = api.req(
        "PUT",
        "/api/v1/accounts/A1",
        Some(&op),
        Some(&json!({"plan": "gold"})),
    );
    assert_error(&r, 422, "invalid_account");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("accounts.csv:2: column `plan`: no plan `gold` in the tariff"),
        "{}",
        r.text()
    );
    let r = api.req(
        "PUT",
        "/api/v1/accounts/A1",
        Some(&op),
        Some(&json!({"plan": "flat", "country": "Nederland"})),
    );
    assert_error(&r, 422, "invalid_account");
    assert!(
        r.text().contains("accounts.csv:2: column `country`"),
        "{}",
        r.text()
    );
    let r = api.req(
        "PUT",
        "/api/v1/accounts/A1",
        Some(&op),
        Some(&json!({"id": "A2", "plan": "flat"})),
    );
    assert_error(&r, 400, "bad_request");
    let r = api.req(
        "PUT",
        "/api/v1/accounts/A1",
        Some(&op),
        Some(&json!({"plan": "flat", "colour": "red"})),
    );
    assert_error(&r, 422, "invalid_body");
    let r = http_request(
        d.addr,
        "PUT",
        "/api/v1/accounts/A1",
        &[
            ("Authorization", &format!("Bearer {op}")),
            ("Content-Type", "text/plain"),
        ],
        b"{}",
    );
    assert_error(&r, 415, "unsupported_media_type");
    assert_eq!(
        std::fs::read_to_string(ws.root.join("accounts.csv"))
            .unwrap()
            .lines()
            .count(),
        5
    );
    // Body limit: 413, JSON.
    let big = json!({"plan": "flat", "name": "x".repeat(70 * 1024)});
    assert_error(
        &api.req("PUT", "/api/v1/accounts/A5", Some(&op), Some(&big)),
        413,
        "payload_too_large",
    );
    assert_error(&api.get("/api/v1/accounts/A5", &view), 404, "not_found");
}

/// A file, then files and usage.
fn paths_files_and_usage(s: &Paths) {
    let ws = &s.ws;
    let d = &s.d;
    let view = s.view.clone();
    let api = Api { d: &s.d };

    // --- a file, then files and usage ------------------------------------------------
    ws.drop_file("cdr-1.csv", &hand_cdrs());
    wait_committed(&api, &view, 1);
    let files = api.ok("/api/v1/files", &view);
    let f = &files[0];
    assert_eq!(f["name"], "cdr-1.csv");
    assert_eq!(f["status"], "committed");
    assert_eq!(
        (
            f["lines"].clone(),
            f["rated"].clone(),
            f["rejected"].clone()
        ),
        (json!(5), json!(4), json!(1))
    );
    assert_eq!(f["rejectsByReason"], json!({"unknown_account": 1}));
    assert_eq!(f["charge"], eur("4.000000"));
    assert_eq!(f["months"], json!(["2026-10"]));
    assert_eq!(f["tariffVersion"].as_str().unwrap().len(), 64);
    ws.drop_file("bad.csv", b"no,header\n1,2\n");
    d.wait_until("bad file failed", || {
        ws.names("failed").contains(&"bad.csv".to_string())
    });
    let r = api.get("/api/v1/files?status=failed", &view);
    assert_eq!(r.header("x-total-count"), Some("1"));
    let failed = r.json();
    assert_eq!(failed[0]["name"], "bad.csv");
    assert!(
        failed[0]["reason"].as_str().is_some_and(|m| !m.is_empty()),
        "{failed}"
    );
    assert_eq!(
        api.get("/api/v1/files?limit=1&offset=1", &view)
            .header("x-total-count"),
        Some("2")
    );
    assert_error(
        &api.get("/api/v1/files?status=lost", &view),
        400,
        "bad_request",
    );

    let usage = api.ok("/api/v1/accounts/A1/usage?period=2026-10", &view);
    assert_eq!(
        usage,
        json!({"accountId": "A1", "period": "2026-10", "usage": a1_usage("rated"),
               "ratedCharge": eur("3.400000"), "billedCharge": eur("0.000000")})
    );
    assert_eq!(
        api.ok("/api/v1/accounts/A3/usage?period=2026-10", &view)["usage"],
        json!([])
    );
    assert_error(
        &api.get("/api/v1/accounts/A1/usage?period=2026-13", &view),
        400,
        "bad_request",
    );
    assert_error(
        &api.get("/api/v1/accounts/A1/usage", &view),
        400,
        "bad_request",
    );
    assert_error(
        &api.get("/api/v1/accounts/NOPE/usage?period=2026-10", &view),
        404,
        "not_found",
    );
}

/// Quotes.
fn paths_quote(s: &Paths) {
    let view = s.view.clone();
    let api = Api { d: &s.d };

    // --- quote --------------------------------------------------------------------------
    let q = api.ok("/api/v1/quote?account=A1&service=voice&to=%2B31201234567&at=2026-10-05T10%3A00%3A00Z&usage=90", &view);
    assert_eq!(q["charge"], "1.300000");
    assert_eq!(q["billed"], 120);
    assert_eq!(q["row"]["destination"], "Netherlands");
    let r = api.get(
        "/api/v1/quote?account=A1&service=voice&to=%2Babc0612345678&at=2026-10-05T10%3A00%3A00Z",
        &view,
    );
    assert_error(&r, 422, "not_rated");
    assert!(
        !r.text().contains("0612345678"),
        "a subscriber number in an error: {}",
        r.text()
    );
    assert_error(
        &api.get("/api/v1/quote?account=A1", &view),
        400,
        "bad_request",
    );
}

/// Close, bills and their documents.
fn paths_close_and_bills(s: &Paths) {
    let ws = &s.ws;
    let op = s.op.clone();
    let view = s.view.clone();
    let api = Api { d: &s.d };

    // --- close, bills ---------------------------------------------------------------------
    let r = api.req(
        "POST",
        "/api/v1/cycles/2026-10/close?issueDate=2026-11-26",
        Some(&op),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let c = r.json();
    assert_eq!(c["new"], true);
    assert_eq!(c["period"], "2026-10");
    assert_eq!(c["issueDate"], "2026-11-26");
    assert_eq!(c["billCount"], 4);
    assert_eq!(
        (c["firstBillNo"].clone(), c["lastBillNo"].clone()),
        (json!("2026-000001"), json!("2026-000004"))
    );
    // A1 13.40 + A2 10.60 + A3 10.00 + A4 10.00 = 44.00; VAT 2.81 + 2.23 + 2.10 + 2.10 = 9.24.
    assert_eq!(c["taxExcludedAmount"], eur("44.00"));
    assert_eq!(c["taxAmount"], eur("9.24"));
    assert_eq!(c["taxIncludedAmount"], eur("53.24"));
    let again = api
        .req("POST", "/api/v1/cycles/2026-10/close", Some(&op), None)
        .json();
    assert_eq!(again["new"], false);
    assert_error(
        &api.req("POST", "/api/v1/cycles/2026-09/close", Some(&op), None),
        409,
        "conflict",
    );
    assert_error(
        &api.req("POST", "/api/v1/cycles/2026-9/close", Some(&op), None),
        400,
        "bad_request",
    );

    let r = api.get("/api/v1/bills?period=2026-10&offset=1&limit=2", &view);
    assert_eq!(r.header("x-total-count"), Some("4"));
    assert_eq!(r.header("x-result-count"), Some("2"));
    let page = r.json();
    assert_eq!(
        page.as_array()
            .unwrap()
            .iter()
            .map(|b| b["billNo"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["2026-000002", "2026-000003"]
    );
    assert_eq!(
        api.get("/api/v1/bills", &view).header("x-total-count"),
        Some("4")
    );
    assert_eq!(api.ok("/api/v1/bills?period=2026-11", &view), json!([]));
    let b = api.ok("/api/v1/bills/2026-000001", &view);
    assert_eq!(
        b,
        json!({
            "id": "2026-000001", "href": "/api/v1/bills/2026-000001", "billNo": "2026-000001",
            "billingAccount": {"id": "A1", "href": "/api/v1/accounts/A1"},
            "period": "2026-10",
            "billingPeriod": {"startDateTime": "2026-10-01", "endDateTime": "2026-10-31"},
            "billDate": "2026-11-26", "paymentDueDate": "2026-12-10",
            "taxExcludedAmount": eur("13.40"), "taxIncludedAmount": eur("16.21"), "amountDue": eur("16.21"),
            "taxItem": [{"taxCategory": "VAT", "taxRate": "21", "taxAmount": eur("2.81")}],
            "lateRecords": 0,
            "lines": [
                {"kind": "usage", "service": "voice", "destination": "Netherlands", "band": "any", "quantity": 1, "usage": 120, "unit": "seconds", "amount": eur("1.30")},
                {"kind": "usage", "service": "sms", "destination": "SMS", "band": "any", "quantity": 1, "usage": 1, "unit": "messages", "amount": eur("0.10")},
                {"kind": "usage", "service": "data", "destination": "Mobile data", "band": "any", "quantity": 1, "usage": 2097152, "unit": "bytes", "amount": eur("2.00")},
                {"kind": "subscription", "plan": "flat", "description": "Subscription flat, 2026-10", "amount": eur("10.00")},
            ]
        })
    );
    assert_error(
        &api.get("/api/v1/bills/2026-999999", &view),
        404,
        "not_found",
    );
    assert_error(
        &api.get("/api/v1/bills/..%2F..%2Fetc/ubl", &view),
        404,
        "not_found",
    );
    // The close wrote the UBL and PDF beside the JSON: served byte for byte.
    for (kind, ext, ctype) in [
        ("ubl", "xml", "application/xml"),
        ("pdf", "pdf", "application/pdf"),
    ] {
        let file = std::fs::read(ws.invoices("2026-10").join(format!("2026-000001.{ext}")))
            .unwrap_or_else(|e| panic!("{ext}: {e}"));
        let r = api.get(&format!("/api/v1/bills/2026-000001/{kind}"), &view);
        assert_eq!(
            (r.status, r.header("content-type"), r.body.as_slice()),
            (200, Some(ctype), file.as_slice()),
            "{kind}"
        );
    }
    // A document file that is missing is a 404, not an error.
    std::fs::remove_file(ws.invoices("2026-10").join("2026-000001.pdf")).unwrap();
    assert_error(
        &api.get("/api/v1/bills/2026-000001/pdf", &view),
        404,
        "not_found",
    );

    // Usage after the close: billed, nothing rated.
    assert_eq!(
        api.ok("/api/v1/accounts/A1/usage?period=2026-10", &view),
        json!({"accountId": "A1", "period": "2026-10", "usage": a1_usage("billed"),
               "ratedCharge": eur("0.000000"), "billedCharge": eur("3.400000")})
    );
}

/// Tariff reload; the log names routes, never numbers or tokens.
fn paths_tariff_reload(s: Paths) {
    let Paths { ws, d, op, view } = s;
    let api = Api { d: &d };

    // --- tariff reload -------------------------------------------------------------------
    let r = api.req("POST", "/api/v1/tariffs/reload", Some(&op), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let v1 = r.json();
    assert_eq!(v1["outcome"], "unchanged");
    assert_eq!(v1["accounts"], 4);
    let deck = ws.root.join("tariffs/deck.csv");
    std::fs::write(
        &deck,
        HAND_DECK.replace(
            "31,Netherlands,voice,any,0.10,0.60",
            "31,Netherlands,voice,any,0.10,zero",
        ),
    )
    .unwrap();
    let r = api.req("POST", "/api/v1/tariffs/reload", Some(&op), None);
    assert_error(&r, 422, "reload_refused");
    let errs = r.json()["errors"].clone();
    assert!(errs.to_string().contains("deck.csv:2"), "{errs}");
    assert!(d.log().contains("reload refused"), "{}", d.log());
    std::fs::write(
        &deck,
        HAND_DECK.replace("0.10,0.60,60,60,60", "0.10,1.20,60,60,60"),
    )
    .unwrap();
    let v2 = api
        .req("POST", "/api/v1/tariffs/reload", Some(&op), None)
        .json();
    assert_eq!(v2["outcome"], "reloaded");
    assert_ne!(v2["tariffVersion"], v1["tariffVersion"]);
    let q = api.ok("/api/v1/quote?account=A1&service=voice&to=31201234567&at=2026-10-05T10%3A00%3A00Z&usage=90", &view);
    assert_eq!(q["charge"], "2.500000");

    // Request logs name routes, never query strings or numbers.
    let log = d.log();
    assert!(log.contains("route=/api/v1/quote"), "{log}");
    for secret in ["31201234567", "0612345678", &op, &view] {
        assert!(!log.contains(secret), "the log holds {secret}");
    }
    d.stop();
}

#[test]
fn cli_through_the_api_prints_what_it_prints_directly() {
    let ws = Ws::hand_with(TOKENS);
    let op = add_token(&ws, "ops", "operator");
    let view = add_token(&ws, "dash", "viewer");
    let cfg = ws.config_arg().to_owned();
    let commands: Vec<Vec<&str>> = vec![
        vec!["accounts", "list", "--config", &cfg],
        vec![
            "accounts", "list", "--config", &cfg, "--offset", "1", "--limit", "1",
        ],
        vec!["accounts", "show", "--config", &cfg, "A1"],
        vec![
            "usage",
            "--config",
            &cfg,
            "--account",
            "A1",
            "--period",
            "2026-10",
        ],
        vec!["bills", "list", "--config", &cfg, "--period", "2026-10"],
        vec!["bills", "list", "--config", &cfg],
        vec!["bills", "show", "--config", &cfg, "2026-000002"],
        vec![
            "quote",
            "--config",
            &cfg,
            "--account",
            "A2",
            "--service",
            "voice",
            "--to",
            "+442012345678",
            "--at",
            "2026-10-07T12:00:00+02:00",
            "--usage",
            "75",
        ],
        vec![
            "cycle",
            "close",
            "--config",
            &cfg,
            "--period",
            "2026-10",
            "--issue-date",
            "2026-11-26",
        ],
    ];
    let d = Daemon::start(&ws);
    let api = Api { d: &d };
    ws.drop_file("cdr-1.csv", &hand_cdrs());
    wait_committed(&api, &view, 1);
    // Without a token the CLI refuses, naming the variable.
    let out = run(&["accounts", "list", "--config", &cfg]);
    assert_eq!(out.code(), Some(2));
    assert!(out.stderr.contains("TOLLGATE_TOKEN"), "{}", out.stderr);
    // A viewer cannot close.
    let out = run_env(
        &["cycle", "close", "--config", &cfg, "--period", "2026-10"],
        &[("TOLLGATE_TOKEN", &view)],
    );
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("needs an operator token"),
        "{}",
        out.stderr
    );
    let close = run_env(&commands[8], &[("TOLLGATE_TOKEN", &op)]).ok();
    assert!(close.stdout.starts_with("closed 2026-10: 3 invoices (2026-000001 .. 2026-000003), net 34.00 + VAT 7.14 = 41.14 (0 late records), in "), "{}", close.stdout);
    let via_api: Vec<String> = commands
        .iter()
        .map(|c| run_env(c, &[("TOLLGATE_TOKEN", &op)]).ok().stdout)
        .collect();
    assert!(
        via_api[8].starts_with("2026-10 was already closed on "),
        "{}",
        via_api[8]
    );
    assert!(via_api[4].starts_with("billNo\taccount\tperiod\tnet\tvat\ttotal\tcurrency\n2026-000001\tA1\t2026-10\t13.40\t2.81\t16.21\tEUR\n"), "{}", via_api[4]);
    assert_eq!(
        via_api[1],
        "id\tplan\tname\tcountry\nA2\tflat\tBob de Vries\t\n# 1 of 3 accounts from offset 1\n"
    );
    let errors_via_api = run_env(
        &["bills", "show", "--config", &cfg, "2026-000009"],
        &[("TOLLGATE_TOKEN", &op)],
    );
    d.stop();
    let direct: Vec<String> = commands.iter().map(|c| run(c).ok().stdout).collect();
    for (i, c) in commands.iter().enumerate() {
        assert_eq!(
            via_api[i],
            direct[i],
            "`tollgate {}` differs through the API",
            c.join(" ")
        );
    }
    let errors_direct = run(&["bills", "show", "--config", &cfg, "2026-000009"]);
    assert_eq!(errors_via_api.code(), Some(2));
    assert_eq!(errors_via_api.stderr, errors_direct.stderr);
    assert_eq!(
        errors_direct.stderr.trim(),
        "tollgate: no bill `2026-000009`"
    );
}

#[test]
fn json_logs_name_routes_and_never_numbers_or_tokens() {
    let ws = Ws::hand_with(TOKENS);
    let view = add_token(&ws, "dash", "viewer");
    let d = Daemon::start_with(&ws, &["--log-format", "json"]);
    let api = Api { d: &d };
    ws.drop_file("cdr-1.csv", &hand_cdrs());
    wait_committed(&api, &view, 1);
    let ok = api.get(
        "/api/v1/quote?account=A1&service=voice&to=0031201234567&at=2026-10-05T10%3A00%3A00Z",
        &view,
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    let bad = api.get(
        "/api/v1/quote?account=A1&service=voice&to=06-1234x5678&at=2026-10-05T10%3A00%3A00Z",
        &view,
    );
    assert_error(&bad, 422, "not_rated");
    assert!(!bad.text().contains("1234x5678"), "{}", bad.text());
    assert_eq!(api.get("/api/v1/accounts", "tg_wrong").status, 401);
    d.stop();
    let log = std::fs::read_to_string(d_log_path(&ws)).unwrap();
    let mut requests = Vec::new();
    for line in log.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if v["fields"]["message"] == "api request" {
            requests.push((
                v["fields"]["route"].as_str().unwrap().to_owned(),
                v["fields"]["status"].as_u64().unwrap(),
            ));
        }
    }
    assert!(
        requests.contains(&("/api/v1/quote".to_owned(), 200)),
        "{requests:?}"
    );
    assert!(
        requests.contains(&("/api/v1/quote".to_owned(), 422)),
        "{requests:?}"
    );
    assert!(
        requests.contains(&("/api/v1/accounts".to_owned(), 401)),
        "{requests:?}"
    );
    for secret in ["31201234567", "1234x5678", "31612345678", &view, "tg_wrong"] {
        assert!(!log.contains(secret), "the log holds {secret}:\n{log}");
    }
}

/// The stderr log of the first daemon started in a workspace.
fn d_log_path(ws: &Ws) -> std::path::PathBuf {
    ws.root.join("daemon-0.err")
}

/// A workspace with the hand CDRs rated and October closed (bills 2026-000001..3),
/// and an operator and a viewer token.
fn closed_october() -> (Ws, String, String) {
    let ws = Ws::hand_with(TOKENS);
    let op = add_token(&ws, "ops", "operator");
    let view = add_token(&ws, "dash", "viewer");
    let cdrs = ws.root.join("cdr-1.csv");
    std::fs::write(&cdrs, hand_cdrs()).unwrap();
    ws.ingest(&[&cdrs]).ok();
    ws.close("2026-10", "2026-11-26").ok();
    (ws, op, view)
}

#[test]
fn credit_notes_through_the_api_print_what_they_print_directly() {
    let (api_ws, op, view) = closed_october();
    let (direct_ws, _, _) = closed_october();
    let credits: &[&[&str]] = &[
        &["2026-000001", "--reason", "wrong rate", "--lines", "1"],
        &["2026-000001", "--reason", "goodwill", "--amount", "0.05"],
        &["2026-000002", "--reason", "wrong plan", "--reissue"],
        // Refused: more than is left; no such bill; a credit note is no invoice.
        &["2026-000001", "--reason", "again", "--amount", "999.00"],
        &["2026-999999", "--reason", "typo"],
        &["CN-2026-000001", "--reason", "credit a credit"],
    ];
    let args = |ws: &Ws, c: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = vec!["invoice".into(), "credit".into(), "--config".into()];
        a.push(ws.config_arg().into());
        a.extend(c.iter().map(|s| s.to_string()));
        a.extend(["--issue-date".into(), "2026-11-30".into()]);
        a
    };
    // Paths in the output name the workspace; of stderr only the error counts (the
    // direct path also logs).
    let norm = |ws: &Ws, s: &str| s.replace(ws.root.to_str().unwrap(), "<ws>");
    let error = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.starts_with("tollgate: "))
            .map(str::to_owned)
            .collect()
    };

    let d = Daemon::start(&api_ws);
    let api = Api { d: &d };
    // The route itself: operator only, JSON body checked.
    let body = json!({"reason": "x", "lines": [1]});
    assert_error(
        &api.req(
            "POST",
            "/api/v1/bills/2026-000001/credit",
            Some(&view),
            Some(&body),
        ),
        403,
        "forbidden",
    );
    assert_error(
        &api.req(
            "POST",
            "/api/v1/bills/2026-000001/credit",
            None,
            Some(&body),
        ),
        401,
        "unauthorized",
    );
    assert_error(
        &api.req(
            "POST",
            "/api/v1/bills/2026-000001/credit",
            Some(&op),
            Some(&json!({"reason": "x", "lines": [1], "amount": "1.00"})),
        ),
        400,
        "bad_request",
    );
    assert_error(
        &api.req(
            "POST",
            "/api/v1/bills/2026-000001/credit",
            Some(&op),
            Some(&json!({"reason": "x", "colour": "red"})),
        ),
        422,
        "invalid_body",
    );
    assert_error(
        &api.req(
            "POST",
            "/api/v1/bills/2026-000001/credit",
            Some(&op),
            Some(&json!({"reason": " "})),
        ),
        400,
        "bad_request",
    );
    let outs: Vec<Out> = credits
        .iter()
        .map(|c| {
            let a = args(&api_ws, c);
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            run_env(&refs, &[("TOLLGATE_TOKEN", &op)])
        })
        .collect();
    // A viewer token is refused by the CLI too.
    let a = args(&api_ws, credits[0]);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    let viewer = run_env(&refs, &[("TOLLGATE_TOKEN", &view)]);
    assert_eq!(viewer.code(), Some(2));
    assert!(
        viewer.stderr.contains("needs an operator token"),
        "{viewer:?}"
    );
    // The credit notes are bills of their own.
    let cn = api.ok("/api/v1/bills/CN-2026-000001", &view);
    assert_eq!(cn["taxExcludedAmount"], eur("-1.30"));
    assert_eq!(cn["taxIncludedAmount"], eur("-1.57"));
    d.stop();

    // A1's invoice: voice 1.30, SMS 0.10, data 2.00, subscription 10.00 = 13.40 + 21 %.
    // Line 1 (1.30): VAT 0.273 → 0.27. Then 0.05 of what is left: VAT 0.0105 → 0.01.
    // A2's invoice (UK voice 0.60 + 10.00 = 10.60, VAT 2.23) credited and reissued.
    assert_eq!(
        outs[0].stdout.lines().next(),
        Some("credit note CN-2026-000001 on invoice 2026-000001: net -1.30 + VAT -0.27 = -1.57")
    );
    assert_eq!(
        outs[1].stdout.lines().next(),
        Some("credit note CN-2026-000002 on invoice 2026-000001: net -0.05 + VAT -0.01 = -0.06")
    );
    let lines: Vec<&str> = outs[2].stdout.lines().take(2).collect();
    assert_eq!(
        lines,
        [
            "credit note CN-2026-000003 on invoice 2026-000002: net -10.60 + VAT -2.23 = -12.83",
            "reissued as invoice 2026-000004: net 10.60 + VAT 2.23 = 12.83"
        ]
    );
    assert!(
        outs[0].stdout.contains("wrote ")
            && outs[0]
                .stdout
                .contains("invoices/2026-10/CN-2026-000001.json"),
        "{}",
        outs[0].stdout
    );
    for o in &outs[..3] {
        assert_eq!(o.code(), Some(0), "{o:?}");
    }
    for o in &outs[3..] {
        assert_eq!(o.code(), Some(2), "{o:?}");
    }
    assert_eq!(outs[4].stderr.trim(), "tollgate: no bill `2026-999999`");

    // The same commands without a daemon, on a twin workspace: the same output.
    for (c, via_api) in credits.iter().zip(&outs) {
        let a = args(&direct_ws, c);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let direct = run(&refs);
        assert_eq!(
            (
                direct.code(),
                norm(&direct_ws, &direct.stdout),
                error(&direct.stderr)
            ),
            (
                via_api.code(),
                norm(&api_ws, &via_api.stdout),
                error(&via_api.stderr)
            ),
            "`invoice credit {}` differs through the API",
            c.join(" ")
        );
    }
}

/// A camt.053.001.02 statement with one credit of 7.77 that matches no invoice.
const UNMATCHED_CAMT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02"><BkToCstmrStmt><GrpHdr><MsgId>S1</MsgId><CreDtTm>2026-11-27T18:00:00</CreDtTm></GrpHdr><Stmt><Id>S1</Id><CreDtTm>2026-11-27T18:00:00</CreDtTm><Acct><Id><IBAN>NL91ABNA0417164300</IBAN></Id><Ccy>EUR</Ccy></Acct><Bal><Tp><CdOrPrtry><Cd>OPBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">100.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-11-27</Dt></Dt></Bal><Bal><Tp><CdOrPrtry><Cd>CLBD</Cd></CdOrPrtry></Tp><Amt Ccy="EUR">107.77</Amt><CdtDbtInd>CRDT</CdtDbtInd><Dt><Dt>2026-11-27</Dt></Dt></Bal><Ntry><Amt Ccy="EUR">7.77</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>2026-11-27</Dt></BookgDt><AcctSvcrRef>BANK-77</AcctSvcrRef><BkTxCd><Prtry><Cd>NTRF</Cd><Issr>BANK</Issr></Prtry></BkTxCd><NtryDtls><TxDtls><Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs><RltdPties><Dbtr><Nm>A Stranger</Nm></Dbtr><DbtrAcct><Id><IBAN>DE89370400440532013000</IBAN></Id></DbtrAcct></RltdPties><RmtInf><Ustrd>for my phone</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry></Stmt></BkToCstmrStmt></Document>
"#;

#[test]
fn payments_routes_with_exact_values_and_the_cli_through_them() {
    let ws = Ws::hand_with(TOKENS);
    let op = add_token(&ws, "ops", "operator");
    let view = add_token(&ws, "dash", "viewer");
    let cfg = ws.config_arg().to_owned();
    // Before the daemon: October rated and closed on 26 November (A1 16.21, A2 12.83,
    // A3 12.10, due 10 December; ledger entries 1–3), then a statement with one credit
    // nobody can be matched to (suspense item 4).
    let cdrs = ws.root.join("cdr-1.csv");
    std::fs::write(&cdrs, hand_cdrs()).unwrap();
    ws.ingest(&[&cdrs]).ok();
    ws.close("2026-10", "2026-11-26").ok();
    let camt = ws.root.join("stmt.xml");
    std::fs::write(&camt, UNMATCHED_CAMT).unwrap();
    run(&[
        "payments",
        "import",
        "--config",
        &cfg,
        camt.to_str().unwrap(),
    ])
    .ok();

    let d = Daemon::start(&ws);
    let api = Api { d: &d };
    let a1 = "/api/v1/accounts/A1/statement?date=2026-11-27";
    assert_error(&api.req("GET", a1, None, None), 401, "unauthorized");
    assert_eq!(
        api.ok(a1, &view),
        json!({
            "account": {"id": "A1", "href": "/api/v1/accounts/A1"},
            "asOf": "2026-11-27",
            "balance": eur("16.21"),
            "entries": [{"id": 1, "date": "2026-11-26", "kind": "invoice", "amount": eur("16.21"),
                "runningBalance": eur("16.21"), "billNo": "2026-000001",
                "paymentDueDate": "2026-12-10", "source": "close 2026-10"}],
            "openItems": [{"billNo": "2026-000001", "billDate": "2026-11-26",
                "paymentDueDate": "2026-12-10", "total": eur("16.21"), "credited": eur("0.00"),
                "paid": eur("0.00"), "open": eur("16.21"), "status": "open"}],
            "pendingFees": []
        })
    );
    assert_error(
        &api.get("/api/v1/accounts/NOPE/statement", &view),
        404,
        "not_found",
    );
    assert_error(
        &api.get("/api/v1/accounts/A1/statement?date=27-11-2026", &view),
        400,
        "bad_request",
    );

    // A manual payment: viewers may not, operators may; 20.00 pays 16.21 and leaves 3.79
    // credit (entries 5 and 6).
    let pay = json!({"account": "A1", "totalAmount": {"unit": "EUR", "value": "20.00"},
        "paymentDate": "2026-11-28", "billNo": "2026-000001", "description": "cash at the desk"});
    assert_error(
        &api.req("POST", "/api/v1/payments", None, Some(&pay)),
        401,
        "unauthorized",
    );
    assert_error(
        &api.req("POST", "/api/v1/payments", Some(&view), Some(&pay)),
        403,
        "forbidden",
    );
    let r = api.req("POST", "/api/v1/payments", Some(&op), Some(&pay));
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"account": {"id": "A1", "href": "/api/v1/accounts/A1"}, "totalAmount": eur("20.00"),
            "onBill": eur("16.21"), "onAccount": eur("3.79"), "billNo": "2026-000001"})
    );
    for (body, status, code) in [
        (
            json!({"account": "A1", "totalAmount": {"value": "-1.00"}}),
            422,
            "payment_refused",
        ),
        (
            json!({"account": "A1", "totalAmount": {"value": "1.001"}}),
            422,
            "payment_refused",
        ),
        (
            json!({"account": "A1", "totalAmount": {"unit": "USD", "value": "1.00"}}),
            422,
            "payment_refused",
        ),
        (
            json!({"account": "A1", "totalAmount": {"value": "1000000000.01"}}),
            422,
            "payment_refused",
        ),
        (
            json!({"account": "NOPE", "totalAmount": {"value": "1.00"}}),
            422,
            "payment_refused",
        ),
        (
            json!({"account": "A1", "totalAmount": {"value": "1.00"}, "billNo": "2026-000002"}),
            422,
            "payment_refused",
        ),
        (
            json!({"account": "A1", "totalAmount": {"value": "1.00"}, "paymentDate": "tomorrow"}),
            400,
            "bad_request",
        ),
        (
            json!({"account": "A1", "totalAmount": {"value": "1.00"}, "extra": 1}),
            422,
            "invalid_body",
        ),
    ] {
        assert_error(
            &api.req("POST", "/api/v1/payments", Some(&op), Some(&body)),
            status,
            code,
        );
    }
    let paid = json!([
        {"id": 5, "account": {"id": "A1", "href": "/api/v1/accounts/A1"}, "paymentDate": "2026-11-28",
         "totalAmount": eur("16.21"), "billNo": "2026-000001", "source": "manual",
         "description": "cash at the desk"},
        {"id": 6, "account": {"id": "A1", "href": "/api/v1/accounts/A1"}, "paymentDate": "2026-11-28",
         "totalAmount": eur("3.79"), "source": "manual", "description": "cash at the desk"}
    ]);
    assert_eq!(api.ok("/api/v1/payments", &view), paid);
    let r = api.get("/api/v1/payments?offset=1&limit=1", &view);
    assert_eq!(r.header("x-total-count"), Some("2"));
    assert_eq!(r.header("x-result-count"), Some("1"));
    assert_eq!(r.json(), json!([paid[1]]));
    assert_eq!(api.ok("/api/v1/payments?account=A2", &view), json!([]));
    assert_error(
        &api.get("/api/v1/payments?limit=0", &view),
        400,
        "bad_request",
    );
    let st = api.ok(a1, &view);
    assert_eq!(st["balance"], eur("-3.79"));
    assert_eq!(st["openItems"][0]["status"], "paid");
    assert_eq!(st["openItems"][0]["paid"], eur("16.21"));

    // The suspense list and an assignment.
    let item = json!({"id": 4, "date": "2026-11-27", "amount": eur("7.77"), "name": "A Stranger",
        "iban": "DE****************3000", "text": "for my phone",
        "file": camt.display().to_string()});
    let r = api.get("/api/v1/payments/suspense", &view);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-total-count"), Some("1"));
    assert_eq!(r.json(), json!([item]));
    let assign = json!({"account": "A3", "billNo": "2026-000003"});
    let path = "/api/v1/payments/suspense/4/assign";
    assert_error(
        &api.req("POST", path, Some(&view), Some(&assign)),
        403,
        "forbidden",
    );
    assert_error(
        &api.req(
            "POST",
            path,
            Some(&op),
            Some(&json!({"account": "A3", "billNo": "2026-000001"})),
        ),
        422,
        "payment_refused",
    );
    let r = api.req("POST", path, Some(&op), Some(&assign));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"account": {"id": "A3", "href": "/api/v1/accounts/A3"}, "totalAmount": eur("7.77"),
            "onBill": eur("7.77"), "onAccount": eur("0.00"), "billNo": "2026-000003", "suspenseId": 4})
    );
    assert_error(
        &api.req("POST", path, Some(&op), Some(&assign)),
        404,
        "not_found",
    );
    assert_error(
        &api.req(
            "POST",
            "/api/v1/payments/suspense/x/assign",
            Some(&op),
            Some(&assign),
        ),
        400,
        "bad_request",
    );
    assert_eq!(api.ok("/api/v1/payments/suspense", &view), json!([]));
    let a3 = api.ok("/api/v1/accounts/A3/statement?date=2026-12-11", &view);
    assert_eq!(a3["balance"], eur("4.33"));
    assert_eq!(a3["openItems"][0]["status"], "overdue");
    assert_eq!(a3["openItems"][0]["paid"], eur("7.77"));
    let doc = api.ok("/api/v1/openapi.json", &view);
    for p in [
        "/api/v1/accounts/{id}/statement",
        "/api/v1/payments",
        "/api/v1/payments/suspense",
        "/api/v1/payments/suspense/{id}/assign",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }

    // The CLI through the API prints what it prints directly.
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "account",
            "statement",
            "A1",
            "--config",
            &cfg,
            "--date",
            "2026-12-11",
        ],
        vec![
            "account",
            "statement",
            "A3",
            "--config",
            &cfg,
            "--date",
            "2026-12-11",
            "--json",
        ],
        vec!["payments", "list", "--config", &cfg],
        vec![
            "payments",
            "list",
            "--config",
            &cfg,
            "--account",
            "A3",
            "--limit",
            "1",
        ],
        vec!["payments", "suspense", "--config", &cfg],
    ];
    // Recording needs an operator token; through the API it prints as directly.
    let rec = [
        "payments",
        "record",
        "--config",
        &cfg,
        "--account",
        "A2",
        "--amount",
        "2.83",
        "--date",
        "2026-11-29",
        "--invoice",
        "2026-000002",
    ];
    let out = run_env(&rec, &[("TOLLGATE_TOKEN", &view)]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("needs an operator token"),
        "{}",
        out.stderr
    );
    let out = run_env(&rec, &[("TOLLGATE_TOKEN", &op)]).ok();
    assert_eq!(
        out.stdout,
        "recorded 2.83 for A2: 2.83 on the invoice, 0.00 on account\n"
    );
    let via_api: Vec<String> = commands
        .iter()
        .map(|c| run_env(c, &[("TOLLGATE_TOKEN", &view)]).ok().stdout)
        .collect();
    d.stop();
    let direct: Vec<String> = commands.iter().map(|c| run(c).ok().stdout).collect();
    for (i, c) in commands.iter().enumerate() {
        assert_eq!(
            via_api[i],
            direct[i],
            "`tollgate {}` differs through the API",
            c.join(" ")
        );
    }
    assert_eq!(
        via_api[2],
        "id\tdate\taccount\tamount\tinvoice\tsource\n5\t2026-11-28\tA1\t16.21\t2026-000001\tmanual\n\
         6\t2026-11-28\tA1\t3.79\t-\tmanual\n\
         7\t2026-11-27\tA3\t7.77\t2026-000003\tNL91ABNA0417164300/entry/BANK-77/0\n\
         8\t2026-11-29\tA2\t2.83\t2026-000002\tmanual\n# 4 of 4 payments from offset 0\n"
    );
    assert!(
        via_api[0].contains("Balance: 3.79 credit on the account"),
        "{}",
        via_api[0]
    );
    let out = run(&rec[..rec.len() - 2]
        .iter()
        .copied()
        .chain(["--text", "again"])
        .collect::<Vec<_>>())
    .ok();
    assert_eq!(
        out.stdout,
        "recorded 2.83 for A2: 0.00 on the invoice, 2.83 on account\n"
    );
    let st = run(&[
        "account",
        "statement",
        "A2",
        "--config",
        &cfg,
        "--date",
        "2026-11-29",
        "--json",
    ])
    .ok();
    let st: Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(st["balance"], eur("7.17")); // 12.83 − 2.83 − 2.83
}
