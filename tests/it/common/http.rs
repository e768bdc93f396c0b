//! HTTP/1.1 to the daemon on loopback, through `ureq` (the crate's own HTTP client).
//!
//! Every request is sent with `Connection: close`, without ureq's automatic `User-Agent`
//! and `Accept` headers and without following redirects, so the daemon sees the request
//! the test wrote and the test sees the answer as the daemon gave it (any status).

use std::net::SocketAddr;
use std::time::Duration;

use ureq::config::AutoHeaderValue;
use ureq::http;

/// A response of [`http_request`].
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// The client: no pool, no redirects, every status an answer, generous timeouts.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(0)
        .user_agent(AutoHeaderValue::None)
        .accept(AutoHeaderValue::None)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A GET: (status, body as UTF-8).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_get_auth(addr, path, None)
}

/// GET with an optional `Authorization: Bearer` token: (status, body as UTF-8).
pub fn http_get_auth(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    let r = http_request(addr, "GET", path, &headers, b"");
    (r.status, String::from_utf8(r.body).expect("UTF-8 body"))
}

/// A request with `headers` as given; `Content-Length` is sent for a body, and always
/// for PUT and POST (0 when empty).
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("Connection", "close");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let result = if !body.is_empty() || method == "PUT" || method == "POST" {
        agent().run(req.body(body).expect("request"))
    } else {
        agent().run(req.body(()).expect("request"))
    };
    let resp = result.unwrap_or_else(|e| panic!("{method} http://{addr}{path}: {e}"));
    let status = resp.status().as_u16();
    let headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).trim().to_owned(),
            )
        })
        .collect();
    let body = resp
        .into_body()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .unwrap_or_else(|e| panic!("{method} http://{addr}{path}: body: {e}"));
    Resp {
        status,
        headers,
        body,
    }
}
