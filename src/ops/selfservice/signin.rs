//! Sign-in links, sessions and the per-address / per-client limits of `/my/`.
//!
//! A link token and a session token are 32 bytes from the operating system's RNG (64 hex
//! digits); only their SHA-256 is stored (`meta/my/link/<sha256>`,
//! `meta/my/session/<sha256>`), so a copy of the database opens nothing. A link is
//! consumed in the same synced batch that creates its session ([`Ledger::my_update`]), so
//! it opens at most one session, whatever runs concurrently or crashes. Times are Unix
//! seconds passed in by the caller (the tests move the clock).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Ledger, LedgerError, MyWrite};

/// A sign-in link is valid this long after it was asked for.
pub const LINK_SECONDS: i64 = 15 * 60;
/// The window of the request limits.
pub const LIMIT_WINDOW_SECONDS: i64 = 15 * 60;
/// Link requests per address (normalized, known or not) per window.
pub const LIMIT_PER_ADDRESS: usize = 3;
/// Link requests per client IP address per window.
pub const LIMIT_PER_CLIENT: usize = 10;

/// A stored sign-in link (`meta/my/link/<sha256>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub account: String,
    /// The address it was sent to (the account's, lower case, at the time).
    pub email: String,
    /// Unix seconds.
    pub expires: i64,
}

/// A stored session (`meta/my/session/<sha256>`): one account, its CSRF token, its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub account: String,
    /// Every form of the session carries it (64 hex digits).
    pub csrf: String,
    /// Unix seconds.
    pub expires: i64,
}

/// 32 random bytes as 64 hex digits.
pub fn random_token() -> Result<String, String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
    Ok(hex(&b))
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// The stored key of a token: its SHA-256. Anything that is not 64 hex digits is no
/// token (and is never looked up).
fn key(kind: &str, token: &str) -> Option<String> {
    (token.len() == 64
        && token
            .bytes()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
    .then(|| format!("{kind}/{}", hex(&Sha256::digest(token.as_bytes()))))
}

/// Constant-time equality of two tokens.
pub fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// What became of a sign-in link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumed {
    /// A session was opened: its cookie token and the session.
    Session(String, Session),
    /// Unknown, already used or expired (the customer asks for a new one).
    Invalid,
}

/// Stores new links (one per account) and deletes expired links and sessions, in one
/// synced batch. Returns the tokens, in the order of `accounts`.
pub fn create_links(
    ledger: &Ledger,
    accounts: &[String],
    email: &str,
    now: i64,
) -> Result<Vec<String>, LedgerError> {
    let mut writes = expired(ledger, now)?;
    let mut tokens = Vec::new();
    for a in accounts {
        let t = random_token().map_err(LedgerError::Refused)?;
        let k = key("link", &t).expect("a fresh token is a token");
        let link = Link {
            account: a.clone(),
            email: email.to_owned(),
            expires: now + LINK_SECONDS,
        };
        writes.push((k, Some(serde_json::to_vec(&link).expect("serializes"))));
        tokens.push(t);
    }
    if writes.is_empty() {
        return Ok(tokens);
    }
    ledger.my_update("", |_| ((), writes))?;
    Ok(tokens)
}

/// Deletions of every expired link and session.
fn expired(ledger: &Ledger, now: i64) -> Result<Vec<MyWrite>, LedgerError> {
    #[derive(Deserialize)]
    struct Expires {
        expires: i64,
    }
    let mut out = Vec::new();
    for prefix in ["link/", "session/"] {
        for (k, v) in ledger.my_scan(prefix)? {
            match serde_json::from_slice::<Expires>(&v) {
                Ok(e) if e.expires > now => {}
                _ => out.push((k, None)),
            }
        }
    }
    Ok(out)
}

/// Consumes a link: valid → deleted and a session stored, in one synced batch; expired →
/// deleted; unknown (or used) → nothing. `still_valid` checks the account still has the
/// address the link went to.
pub fn consume(
    ledger: &Ledger,
    token: &str,
    now: i64,
    session_seconds: i64,
    still_valid: impl FnOnce(&Link) -> bool,
) -> Result<Consumed, LedgerError> {
    let Some(k) = key("link", token) else {
        return Ok(Consumed::Invalid);
    };
    let (cookie, csrf) = (
        random_token().map_err(LedgerError::Refused)?,
        random_token().map_err(LedgerError::Refused)?,
    );
    let sk = key("session", &cookie).expect("a fresh token is a token");
    ledger.my_update(&k, |v| {
        let link = v.and_then(|v| serde_json::from_slice::<Link>(&v).ok());
        match link {
            None => (Consumed::Invalid, Vec::new()),
            Some(l) if l.expires <= now || !still_valid(&l) => {
                (Consumed::Invalid, vec![(k.clone(), None)])
            }
            Some(l) => {
                let s = Session {
                    account: l.account,
                    csrf,
                    expires: now + session_seconds,
                };
                let json = serde_json::to_vec(&s).expect("serializes");
                (
                    Consumed::Session(cookie, s),
                    vec![(k.clone(), None), (sk, Some(json))],
                )
            }
        }
    })
}

/// The session of a cookie token, if it exists and has not expired.
pub fn session(ledger: &Ledger, token: &str, now: i64) -> Result<Option<Session>, LedgerError> {
    let Some(k) = key("session", token) else {
        return Ok(None);
    };
    Ok(ledger
        .my_get(&k)?
        .and_then(|v| serde_json::from_slice::<Session>(&v).ok())
        .filter(|s| s.expires > now))
}

/// Ends a session (sign out).
pub fn end(ledger: &Ledger, token: &str) -> Result<(), LedgerError> {
    if let Some(k) = key("session", token) {
        ledger.my_update(&k, |v| {
            ((), v.map(|_| vec![(k.clone(), None)]).unwrap_or_default())
        })?;
    }
    Ok(())
}

/// Sliding-window request counters per address and per client, in memory (a restart
/// forgets them; the windows are 15 minutes).
#[derive(Debug, Default)]
pub struct Limits {
    seen: Mutex<HashMap<String, Vec<i64>>>,
}

impl Limits {
    /// Counts a request under `key` at `now`; false when `max` requests were counted in
    /// the window already (the request is then not counted).
    pub fn allow(&self, key: &str, max: usize, now: i64) -> bool {
        let mut seen = self.seen.lock().expect("limits lock");
        if seen.len() > 100_000 {
            seen.retain(|_, v| v.iter().any(|t| *t > now - LIMIT_WINDOW_SECONDS));
        }
        let v = seen.entry(key.to_owned()).or_default();
        v.retain(|t| *t > now - LIMIT_WINDOW_SECONDS);
        if v.len() >= max {
            return false;
        }
        v.push(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger() -> (tempfile::TempDir, Ledger) {
        let d = tempfile::tempdir().unwrap();
        let l = Ledger::open(d.path()).unwrap();
        (d, l)
    }

    #[test]
    fn a_link_opens_one_session_once_and_only_within_15_minutes() {
        let (_d, l) = ledger();
        let t0 = 1_800_000_000;
        let toks = create_links(&l, &["A1".into(), "A2".into()], "a@x.nl", t0).unwrap();
        assert_eq!(toks.len(), 2);
        // Only hashes are stored.
        let stored = l.my_scan("link/").unwrap();
        assert_eq!(stored.len(), 2);
        assert!(stored
            .iter()
            .all(|(k, v)| !k.contains(&toks[0]) && !String::from_utf8_lossy(v).contains(&toks[0])));
        // Valid at the last second, once.
        let c = consume(&l, &toks[0], t0 + LINK_SECONDS - 1, 3600, |_| true).unwrap();
        let Consumed::Session(cookie, s) = c else {
            panic!("{c:?}")
        };
        assert_eq!(s.account, "A1");
        assert_eq!(s.expires, t0 + LINK_SECONDS - 1 + 3600);
        assert_eq!(
            consume(&l, &toks[0], t0 + 1, 3600, |_| true).unwrap(),
            Consumed::Invalid
        );
        // Expired at exactly 15 minutes; and then gone.
        assert_eq!(
            consume(&l, &toks[1], t0 + LINK_SECONDS, 3600, |_| true).unwrap(),
            Consumed::Invalid
        );
        assert!(l.my_scan("link/").unwrap().is_empty());
        // The session ends with its time and with sign-out.
        let now = t0 + LINK_SECONDS;
        assert_eq!(session(&l, &cookie, now).unwrap().unwrap().account, "A1");
        assert_eq!(session(&l, &cookie, s.expires).unwrap(), None);
        let mut tampered = cookie.clone();
        tampered.replace_range(0..1, if cookie.starts_with('0') { "1" } else { "0" });
        assert_eq!(session(&l, &tampered, now).unwrap(), None);
        assert_eq!(session(&l, "../../etc/passwd", now).unwrap(), None);
        end(&l, &cookie).unwrap();
        assert_eq!(session(&l, &cookie, now).unwrap(), None);
    }

    #[test]
    fn a_link_whose_address_changed_opens_nothing() {
        let (_d, l) = ledger();
        let toks = create_links(&l, &["A1".into()], "a@x.nl", 100).unwrap();
        assert_eq!(
            consume(&l, &toks[0], 101, 3600, |link| link.email == "b@x.nl").unwrap(),
            Consumed::Invalid
        );
        assert!(l.my_scan("link/").unwrap().is_empty());
    }

    #[test]
    fn creating_links_purges_expired_links_and_sessions() {
        let (_d, l) = ledger();
        let old = create_links(&l, &["A1".into()], "a@x.nl", 100).unwrap();
        let Consumed::Session(_, _) = consume(&l, &old[0], 101, 3600, |_| true).unwrap() else {
            panic!()
        };
        create_links(&l, &["A1".into()], "a@x.nl", 1000).unwrap();
        assert_eq!(l.my_scan("session/").unwrap().len(), 1);
        assert_eq!(l.my_scan("link/").unwrap().len(), 1);
        create_links(&l, &["A1".into()], "a@x.nl", 3701).unwrap();
        assert_eq!(l.my_scan("session/").unwrap().len(), 0);
        assert_eq!(l.my_scan("link/").unwrap().len(), 1);
    }

    #[test]
    fn limits_count_per_key_in_a_sliding_window() {
        let lim = Limits::default();
        for i in 0..3 {
            assert!(lim.allow("a", 3, 1000 + i));
        }
        assert!(!lim.allow("a", 3, 1003));
        assert!(lim.allow("b", 3, 1003));
        assert!(!lim.allow("a", 3, 1000 + LIMIT_WINDOW_SECONDS - 1));
        assert!(lim.allow("a", 3, 1000 + LIMIT_WINDOW_SECONDS));
    }

    #[test]
    fn tokens_compare_in_constant_time_and_never_empty() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("", ""));
        assert!(!same("abc", "abcd"));
    }
}
