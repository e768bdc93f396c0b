//! The CLI's side of the API: find a running daemon and call it.
//!
//! Rule: when `data_dir/listen.addr` names an address that accepts a connection, a
//! daemon runs and holds the database; the operator commands then go through its API
//! with the token from `TOLLGATE_TOKEN` ([`running`]). Otherwise they open the
//! database directly. Both paths produce the same documents ([`crate::ops::api::ops`]),
//! so the output is the same.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::bail;
use percent_encoding::utf8_percent_encode;

use crate::ops::api::pay::UNRESERVED;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::ops::api::ops::{ApiError, ErrorBody, Paged};

/// A connection to a running daemon's API.
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
}

/// The address of a running daemon, if one answers.
pub fn running_daemon(cfg: &Config) -> Option<SocketAddr> {
    let text = std::fs::read_to_string(cfg.data_dir.join("listen.addr")).ok()?;
    let mut addr: SocketAddr = text.trim().parse().ok()?;
    // A daemon listening on every interface is reached on loopback.
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .ok()
        .map(|_| addr)
}

/// The API client of a running daemon, if one answers on the address in
/// `data_dir/listen.addr`; its token comes from `TOLLGATE_TOKEN`.
pub fn running(cfg: &Config) -> anyhow::Result<Option<Client>> {
    let Some(addr) = running_daemon(cfg) else {
        return Ok(None);
    };
    match std::env::var("TOLLGATE_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Ok(Some(Client::new(addr, t.trim().to_owned()))),
        _ => bail!(
            "a daemon is running at {addr} and holds the database: set TOLLGATE_TOKEN to an API token (`tollgate token add NAME --role viewer|operator`)"
        ),
    }
}

/// Percent-encodes a path segment or query value.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

impl Client {
    /// A client for the daemon at `addr` with a bearer token.
    pub fn new(addr: SocketAddr, token: String) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(3600)))
            .build()
            .into();
        Client {
            base: format!("http://{addr}"),
            token,
            agent,
        }
    }

    fn call(&self, method: &str, path: &str) -> Result<(String, Option<usize>), ApiError> {
        self.call_with(method, path, None)
    }

    fn call_with(
        &self,
        method: &str,
        path: &str,
        json: Option<String>,
    ) -> Result<(String, Option<usize>), ApiError> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let sent = match (method, json) {
            ("POST", Some(body)) => self
                .agent
                .post(&url)
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .send(body),
            ("POST", None) => self
                .agent
                .post(&url)
                .header("authorization", &auth)
                .send_empty(),
            _ => self.agent.get(&url).header("authorization", &auth).call(),
        };
        let mut resp = sent.map_err(|e| {
            ApiError::new(503, "unreachable", format!("daemon at {}: {e}", self.base))
        })?;
        let status = resp.status().as_u16();
        let total = resp
            .headers()
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = resp.body_mut().read_to_string().map_err(|e| {
            ApiError::new(503, "unreachable", format!("daemon at {}: {e}", self.base))
        })?;
        if (200..300).contains(&status) {
            return Ok((body, total));
        }
        Err(match serde_json::from_str::<ErrorBody>(&body) {
            Ok(e) => ApiError {
                status,
                code: "remote",
                message: e.message,
                errors: e.errors,
            },
            Err(_) => ApiError::new(status, "remote", format!("daemon answered {status}")),
        })
    }

    fn parse<T: DeserializeOwned>(body: &str) -> Result<T, ApiError> {
        serde_json::from_str(body)
            .map_err(|e| ApiError::new(502, "bad_response", format!("unexpected answer: {e}")))
    }

    /// GET a JSON document.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        Self::parse(&self.call("GET", path)?.0)
    }

    /// GET a document as text, as the daemon sent it (a report in CSV, JSON or HTML).
    pub fn text(&self, path: &str) -> Result<String, ApiError> {
        Ok(self.call("GET", path)?.0)
    }

    /// GET a page of a list.
    pub fn list<T: DeserializeOwned>(&self, path: &str) -> Result<Paged<T>, ApiError> {
        let (body, total) = self.call("GET", path)?;
        let items: Vec<T> = Self::parse(&body)?;
        Ok(Paged {
            total: total.unwrap_or(items.len()),
            items,
        })
    }

    /// POST a JSON body, JSON answer.
    pub fn post_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let body = serde_json::to_string(body).map_err(ApiError::internal)?;
        Self::parse(&self.call_with("POST", path, Some(body))?.0)
    }

    /// POST without a body, JSON answer.
    pub fn post<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        Self::parse(&self.call("POST", path)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::encode;

    /// The hand-written encoder `encode` replaced: unreserved bytes as they are, every
    /// other byte of the UTF-8 as `%XX` (upper-case hex).
    fn by_hand(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    #[test]
    fn same_as_the_hand_written_encoder() {
        let all_ascii: String = (0u8..=127).map(char::from).collect();
        for s in [
            "",
            "A1",
            "2026-000002",
            "a b+c&d=e?f#g/h%i",
            "~._-",
            "ü€😀\u{7f}",
            "\0\t\r\n",
            "'\"<>[]{}|\\^`!$()*,;:@",
            "%41%zz",
            &all_ascii,
        ] {
            assert_eq!(encode(s), by_hand(s), "{s:?}");
        }
        assert_eq!(encode("a b/ü"), "a%20b%2F%C3%BC");
    }
}
