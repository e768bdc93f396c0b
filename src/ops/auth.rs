//! API bearer tokens: the tokens file, `tollgate token add`, and the check of one request.
//!
//! The file named by `api_tokens_file` is CSV `name,role,sha256` (an optional header line
//! `name,role,sha256`; blank lines and lines starting with `#` are ignored). `sha256` is the
//! hex SHA-256 of the token; the token itself is printed once by `token add` and never
//! stored. Roles: `viewer` (read) and `operator` (read, close cycles, upsert accounts,
//! reload tariffs).
//!
//! The daemon re-reads the file when its inode, size or modification time change (one
//! `stat` per request), so tokens added or removed while it runs take effect at the next
//! request. A file that does not parse is never half-used: until it is fixed every `/api`
//! request is refused with 503 and the error is logged (fail closed: a typo must not keep a
//! revoked token alive). A configured file that does not exist yet holds no tokens.
//!
//! Checks compare SHA-256 digests in constant time over every entry ([`subtle`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// What a token may do. `Operator` includes everything a `Viewer` may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
}

impl Role {
    /// The role's name in the tokens file.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            o => Err(format!("role `{o}` is not viewer or operator")),
        }
    }
}

/// One line of the tokens file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    pub sha256: [u8; 32],
}

/// An error in the tokens file or while adding a token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("tokens file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("tokens file {path}:{line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

const HEADER: &str = "name,role,sha256";

/// Token names: 1–64 of `A-Z a-z 0-9 . _ @ -`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

/// Parses the tokens file; errors name the line.
pub fn parse(path: &Path, text: &str) -> Result<Vec<TokenEntry>, AuthError> {
    let mut out: Vec<TokenEntry> = Vec::new();
    let mut lines: Vec<usize> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') || (out.is_empty() && l == HEADER) {
            continue;
        }
        let err = |message: String| AuthError::Line {
            path: path.to_owned(),
            line,
            message,
        };
        let fields: Vec<&str> = l.split(',').map(str::trim).collect();
        if fields.len() != 3 {
            return Err(err(format!(
                "expected 3 fields `{HEADER}`, found {}",
                fields.len()
            )));
        }
        let name = fields[0];
        if !valid_name(name) {
            return Err(err(format!(
                "name `{name}` must be 1-64 characters of A-Z a-z 0-9 . _ @ -"
            )));
        }
        let role: Role = fields[1].parse().map_err(err)?;
        let sha256 = decode_hex32(fields[2])
            .ok_or_else(|| err("sha256 must be 64 hexadecimal digits".into()))?;
        if let Some(prev) = out.iter().position(|e| e.name == name) {
            return Err(err(format!(
                "token name `{name}` also on line {}",
                lines[prev]
            )));
        }
        lines.push(line);
        out.push(TokenEntry {
            name: name.to_owned(),
            role,
            sha256,
        });
    }
    Ok(out)
}

fn decode_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a token.
pub fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token: `tg_` and 64 hex digits (32 bytes from the operating system's RNG).
pub fn generate() -> Result<String, AuthError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| AuthError::File {
        path: PathBuf::new(),
        message: format!("no randomness from the operating system: {e}"),
    })?;
    Ok(format!("tg_{}", hex(&b)))
}

/// Adds a token named `name` with `role` to the tokens file (created, mode 0600, when
/// missing) and returns the token, which is stored nowhere. The file is rewritten
/// atomically, so a running daemon sees the old or the new file, never a partial line.
pub fn add(path: &Path, name: &str, role: Role) -> Result<String, AuthError> {
    let file_err = |message: String| AuthError::File {
        path: path.to_owned(),
        message,
    };
    if !valid_name(name) {
        return Err(file_err(format!(
            "name `{name}` must be 1-64 characters of A-Z a-z 0-9 . _ @ -"
        )));
    }
    let mut text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("{HEADER}\n"),
        Err(e) => return Err(file_err(format!("cannot read: {e}"))),
    };
    let entries = parse(path, &text)?;
    if entries.iter().any(|e| e.name == name) {
        return Err(file_err(format!("a token named `{name}` exists already")));
    }
    let token = generate()?;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "{name},{},{}\n",
        role.name(),
        hex(&digest(&token))
    ));
    write_private(path, text.as_bytes()).map_err(|e| file_err(format!("cannot write: {e}")))?;
    Ok(token)
}

/// Atomic write (temp file, fsync, rename, directory fsync) with mode 0600.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    crate::fsutil::sync_dir(dir)
}

/// The outcome of checking a request's `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// A known token; its name and role.
    Allowed { name: String, role: Role },
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A token that is not in the file.
    Wrong,
    /// The tokens file is broken (the error is logged, not returned to the client).
    Unavailable,
}

type Stamp = (u64, u64, std::time::SystemTime);

struct Loaded {
    stamp: Option<Stamp>,
    entries: Result<Arc<Vec<TokenEntry>>, String>,
}

/// The daemon's view of the tokens file, re-read when it changes.
pub struct Tokens {
    path: Option<PathBuf>,
    loaded: Mutex<Loaded>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(path).ok()?;
    Some((md.ino(), md.len(), md.modified().ok()?))
}

impl Tokens {
    /// Tokens from `path`; `None` (no `api_tokens_file`) refuses every request.
    pub fn new(path: Option<PathBuf>) -> Tokens {
        let t = Tokens {
            path,
            loaded: Mutex::new(Loaded {
                stamp: None,
                entries: Ok(Arc::new(Vec::new())),
            }),
        };
        let _ = t.entries();
        t
    }

    /// The entries in force, re-reading the file when it changed.
    fn entries(&self) -> Result<Arc<Vec<TokenEntry>>, String> {
        let Some(path) = &self.path else {
            return Ok(Arc::new(Vec::new()));
        };
        let now = stamp(path);
        let mut l = self.loaded.lock().expect("tokens lock");
        if now != l.stamp || (now.is_none() && l.entries.is_err()) {
            l.entries = match std::fs::read_to_string(path) {
                Ok(text) => parse(path, &text).map(Arc::new).map_err(|e| e.to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Arc::new(Vec::new())),
                Err(e) => Err(format!("tokens file {}: cannot read: {e}", path.display())),
            };
            l.stamp = now;
            match &l.entries {
                Ok(e) => {
                    tracing::info!(file = %path.display(), tokens = e.len(), "API tokens loaded")
                }
                Err(e) => {
                    tracing::error!(error = %e, "API tokens file refused; every /api request gets 503 until it is fixed")
                }
            }
        }
        l.entries.clone()
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&[u8]>) -> Check {
        let token = match authorization.and_then(bearer) {
            Some(t) => t,
            None => return Check::Missing,
        };
        let entries = match self.entries() {
            Ok(e) => e,
            Err(_) => return Check::Unavailable,
        };
        let presented = Sha256::digest(token);
        // Visit every entry and select the match without branching on secret data.
        let mut found = subtle::Choice::from(0u8);
        let mut index = 0u64;
        for (i, e) in entries.iter().enumerate() {
            let eq = presented.as_slice().ct_eq(&e.sha256);
            index = u64::conditional_select(&index, &(i as u64), eq);
            found |= eq;
        }
        if bool::from(found) {
            let e = &entries[index as usize];
            Check::Allowed {
                name: e.name.clone(),
                role: e.role,
            }
        } else {
            Check::Wrong
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
fn bearer(v: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = v.split_at(v.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let t = rest.trim_ascii();
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_then_check_each_case() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.csv");
        let tokens = Tokens::new(Some(path.clone()));
        assert_eq!(tokens.check(Some(b"Bearer x")), Check::Wrong);
        let op = add(&path, "ops", Role::Operator).unwrap();
        assert!(op.starts_with("tg_") && op.len() == 67, "{op}");
        let view = add(&path, "dash", Role::Viewer).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("name,role,sha256\nops,operator,"),
            "{text}"
        );
        assert!(!text.contains(&op[3..]), "the token itself is never stored");
        // Picked up without a restart.
        assert_eq!(
            tokens.check(Some(format!("Bearer {op}").as_bytes())),
            Check::Allowed {
                name: "ops".into(),
                role: Role::Operator
            }
        );
        assert_eq!(
            tokens.check(Some(format!("bearer  {view} ").as_bytes())),
            Check::Allowed {
                name: "dash".into(),
                role: Role::Viewer
            }
        );
        assert_eq!(tokens.check(None), Check::Missing);
        assert_eq!(tokens.check(Some(op.as_bytes())), Check::Missing);
        assert_eq!(tokens.check(Some(b"Basic abc")), Check::Missing);
        assert_eq!(
            tokens.check(Some(format!("Bearer {op}x").as_bytes())),
            Check::Wrong
        );
        assert!(add(&path, "ops", Role::Viewer)
            .unwrap_err()
            .to_string()
            .contains("exists already"));
        assert!(add(&path, "bad name", Role::Viewer).is_err());
        // A broken file fails closed, and recovers once fixed.
        std::fs::write(&path, format!("{text}oops,admin,00\n")).unwrap();
        assert_eq!(
            tokens.check(Some(format!("Bearer {op}").as_bytes())),
            Check::Unavailable
        );
        std::fs::write(&path, &text).unwrap();
        assert!(matches!(
            tokens.check(Some(format!("Bearer {op}").as_bytes())),
            Check::Allowed { .. }
        ));
        // No file configured: nothing is allowed.
        assert_eq!(
            Tokens::new(None).check(Some(format!("Bearer {op}").as_bytes())),
            Check::Wrong
        );
    }

    #[test]
    fn parse_errors_name_the_line() {
        let p = Path::new("t.csv");
        let h = "0".repeat(64);
        assert_eq!(
            parse(p, &format!("name,role,sha256\n\n# c\na,viewer,{h}\n"))
                .unwrap()
                .len(),
            1
        );
        for (text, want) in [
            (
                format!("a,viewer,{h}\nb,root,{h}\n"),
                "t.csv:2: role `root`",
            ),
            (
                format!("a,viewer,{h}\na,viewer,{h}\n"),
                "t.csv:2: token name `a`",
            ),
            ("a,viewer,12\n".to_string(), "t.csv:1: sha256 must be"),
            ("a,viewer\n".to_string(), "t.csv:1: expected 3 fields"),
        ] {
            let e = parse(p, &text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("tokens file {want}")), "{e}");
        }
    }
}
