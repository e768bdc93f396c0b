//! The pure rating core: money and its rounding points, CDR line scanning, times and
//! numbers, the tariff (source model and compiled table), the account index, and the
//! rating of one record.
//!
//! Nothing here does storage, async, HTTP or metrics: it takes bytes and tables and
//! writes into caller-owned buffers, so it could become its own crate unchanged but for
//! one import: the tariff archive is written with [`crate::fsutil`] (a test guards that no
//! module under `rate/` names any other module of this crate).

pub mod accounts;
pub mod allowance;
pub mod cdr;
pub mod hint;
pub mod iban;
pub mod money;
pub mod rating;
pub mod service;
pub mod tariff;

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The rule that makes `rate/` a crate in waiting: its files name no other module of
    /// this crate and none of the storage, async, HTTP or metrics crates.
    #[test]
    fn rate_imports_nothing_from_the_rest_of_the_crate() {
        fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).expect("src/rate") {
                let p = e.expect("entry").path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rate"),
            &mut files,
        );
        assert!(files.len() >= 10, "{files:?}");
        let forbidden = [
            "rocksdb",
            "tokio",
            "axum",
            "metrics::",
            "metrics!",
            "tracing",
        ];
        let mut bad = Vec::new();
        for f in &files {
            let mut text = std::fs::read_to_string(f).expect("read");
            if f.ends_with("rate/mod.rs") {
                // This test names what it looks for.
                text.truncate(text.find("#[cfg(test)]").unwrap_or(text.len()));
            }
            for (i, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                // `fsutil` (atomic file writes, libc only) is the one allowed outside name:
                // the tariff archive is written with it; a split crate would take it along.
                let outside = code.match_indices("crate::").any(|(at, _)| {
                    let rest = &code[at..];
                    !rest.starts_with("crate::rate::") && !rest.starts_with("crate::fsutil::")
                });
                if outside || forbidden.iter().any(|w| code.contains(w)) {
                    bad.push(format!("{}:{}: {line}", f.display(), i + 1));
                }
            }
        }
        assert!(
            bad.is_empty(),
            "rate/ must stay self-contained:\n{}",
            bad.join("\n")
        );
    }
}
