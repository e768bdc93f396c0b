//! Traffic data retention and data-subject requests.
//!
//! **Traffic detail** is what shows who called whom: spooled CDR files in
//! `spool_dir/done/`, rejects files in `spool_dir/rejects/`, and the itemised annexes
//! (ledger `annex` family, `<number>.annex.json`, the annex pages of a PDF). It is kept
//! for the dispute window (`[privacy] dispute_window_months`, default 6) after the due
//! date of the invoice that billed it, then erased ([`retention`], run daily by the
//! daemon and by `tollgate privacy retention`). Invoices, credit notes, their UBL, the
//! usage totals and the payments ledger are fiscal records and stay.
//!
//! A file's detail expires when every billing month it touched was billed by a close
//! (the first close with `seq >=` the file's and a period `>=` the month) whose due date
//! plus the window lies before today; a file without rated records (only rejects)
//! expires the window after its commit. A file with records not billed yet is kept.
//!
//! [`erase`] removes one account's traffic detail now: its lines are taken out of every
//! `done/` and rejects file (each rewritten atomically; the new content hash is recorded
//! so the other accounts' detail can still be re-derived), its annexes are erased and
//! its documents re-rendered without them, and its calling numbers still appearing in
//! other rejected lines are replaced by a random pseudonym. [`export`] gives everything
//! held about an account as one JSON document.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::billing::model::Invoice;
use crate::config::Config;
use crate::ingest::pipeline::Settings;
use crate::rate::accounts::Accounts;
use crate::rate::cdr::{Column, Layout, Splitter};
use crate::store::{CloseRecord, Ledger, LedgerError};

fn refused(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::Refused(e.to_string())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> LedgerError + '_ {
    move |e| refused(format!("{}: {e}", path.display()))
}

/// What a retention run erased.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RetentionReport {
    pub date: String,
    /// `done/` files erased.
    pub files: Vec<String>,
    /// Rejects files erased.
    pub rejects: Vec<String>,
    /// Invoices whose annex was erased.
    pub annexes: Vec<String>,
}

/// The due date of a close's invoices (from its first invoice; issue date + terms).
fn close_due(cfg: &Config, ledger: &Ledger, c: &CloseRecord) -> Option<NaiveDate> {
    if let Some(n) = c.invoices.first() {
        if let Ok(Some(j)) = ledger.invoice(n) {
            if let Ok(inv) = serde_json::from_slice::<Invoice>(&j) {
                return Some(inv.due_date);
            }
        }
    }
    let issue: NaiveDate = c.issue_date.parse().ok()?;
    Some(issue + chrono::Duration::days(cfg.billing.payment_terms_days as i64))
}

/// The last day traffic detail billed with due date `due` is kept.
pub fn kept_until(cfg: &Config, due: NaiveDate) -> NaiveDate {
    due.checked_add_months(chrono::Months::new(cfg.privacy.dispute_window_months))
        .unwrap_or(NaiveDate::MAX)
}

/// Erases the traffic detail whose dispute window ended before `today`.
pub fn retention(
    cfg: &Config,
    ledger: &Ledger,
    today: NaiveDate,
) -> Result<RetentionReport, LedgerError> {
    let mut rep = RetentionReport {
        date: today.to_string(),
        ..Default::default()
    };
    let mut closes = ledger.closes()?;
    closes.sort_by(|a, b| a.period.cmp(&b.period));
    let expired: Vec<(CloseRecord, bool)> = closes
        .into_iter()
        .map(|c| {
            let gone = close_due(cfg, ledger, &c).is_some_and(|d| kept_until(cfg, d) < today);
            (c, gone)
        })
        .collect();
    let spool = crate::ingest::spool::Spool::open(&cfg.spool_dir).map_err(io(&cfg.spool_dir))?;
    for cp in ledger.files()? {
        let gone = if cp.months.is_empty() {
            chrono::DateTime::parse_from_rfc3339(&cp.committed_at)
                .ok()
                .is_some_and(|t| kept_until(cfg, t.date_naive()) < today)
        } else {
            cp.months.iter().all(|m| {
                expired
                    .iter()
                    .find(|(c, _)| c.seq >= cp.seq && c.period.as_str() >= m.as_str())
                    .is_some_and(|(_, gone)| *gone)
            })
        };
        if !gone {
            continue;
        }
        let done = spool.done.join(&cp.name);
        if remove(&done)? {
            rep.files.push(cp.name.clone());
        }
        if remove(&spool.rejects_path(&cp.name))? {
            rep.rejects.push(cp.name.clone());
        }
    }
    crate::fsutil::sync_dir(&spool.done).map_err(io(&spool.done))?;
    crate::fsutil::sync_dir(&spool.rejects).map_err(io(&spool.rejects))?;
    // Annexes go the window after their own invoice's due date (closes, final invoices
    // and reissues alike).
    let mut erase = Vec::new();
    let mut rerender = Vec::new();
    for n in ledger.annex_numbers()? {
        let Some(inv) = crate::billing::files::stored_invoice(ledger, &n)? else {
            continue;
        };
        let due = Some(inv.due_date);
        if due.is_some_and(|d| kept_until(cfg, d) < today) {
            erase.push((n.clone(), None));
            rerender.push((n, inv.period));
        }
    }
    if !erase.is_empty() {
        ledger.privacy_commit(&[], &erase)?;
        for (n, period) in &rerender {
            let dir = cfg.invoice_dir.join(period);
            if dir.join(format!("{n}.json")).exists() {
                crate::billing::files::write_document(ledger, &dir, n, cfg.psp.as_ref())?;
            }
            rep.annexes.push(n.clone());
        }
    }
    Ok(rep)
}

fn remove(p: &Path) -> Result<bool, LedgerError> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io(p)(e)),
    }
}

/// A rewritten `done/` file: its content hash after an erasure (`privacy/file/<name>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rewritten {
    pub content_hash: String,
}

/// The content hash a `done/` file must have now: the committed one, or the one an
/// erasure recorded when it rewrote the file.
pub fn expected_hash(ledger: &Ledger, name: &str, committed: &str) -> String {
    ledger
        .privacy_note(&format!("file/{name}"))
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_slice::<Rewritten>(&v).ok())
        .map_or_else(|| committed.to_owned(), |r| r.content_hash)
}

/// The record of an erasure (`privacy/erased/<account>`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Erasure {
    pub account_id: String,
    pub erased_at: String,
    /// `done/` files rewritten without the account's lines, and the lines removed.
    pub files: Vec<String>,
    pub lines: u64,
    /// Rejects files rewritten, and the rejected lines removed.
    pub rejects_files: Vec<String>,
    pub rejects_lines: u64,
    /// Invoices whose annex was erased.
    pub annexes: Vec<String>,
    /// Occurrences of the account's numbers replaced by pseudonyms in other lines.
    pub pseudonymised: u64,
    /// Other accounts' itemised annexes that listed one of the account's numbers (as the
    /// called number), and the records whose number was replaced by its pseudonym.
    #[serde(default)]
    pub annexes_pseudonymised: Vec<String>,
    #[serde(default)]
    pub annex_records_pseudonymised: u64,
}

/// A file's layout (header line or configured columns) and its body offset.
fn layout(bytes: &[u8], cfg: &Config) -> Option<(Layout, usize)> {
    let settings = Settings {
        columns: cfg.columns.clone(),
        chunk_bytes: cfg.chunk_bytes,
        max_line_bytes: cfg.max_line_bytes,
        segment_bytes: crate::ingest::pipeline::SEGMENT_BYTES,
    };
    crate::ingest::pipeline::file_layout(bytes, &settings)
        .ok()
        .flatten()
        .map(|(l, body, _)| (l, body))
}

/// Lines of a body, each with its terminator.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split_inclusive(|&b| b == b'\n')
}

fn trim(line: &[u8]) -> &[u8] {
    let l = line.strip_suffix(b"\n").unwrap_or(line);
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// The value of `col` in a record, if the record splits.
fn field(sp: &mut Splitter, l: &Layout, rec: &[u8], col: Column) -> Option<Vec<u8>> {
    sp.split(rec).ok()?;
    Some(sp.field(rec, l.pos[col as usize] as usize).to_vec())
}

/// A random pseudonym for a number: `anon-` and 12 hex digits.
fn pseudonym() -> Result<String, LedgerError> {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).map_err(|e| refused(format!("no random source: {e}")))?;
    Ok(format!(
        "anon-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(hay.len());
    let mut n = 0;
    let mut i = 0;
    while i < hay.len() {
        if !from.is_empty() && hay[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            n += 1;
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    (out, n)
}

/// Removes an account's traffic detail (see the module documentation). Refused for an
/// account the ledger and the accounts file do not know.
pub fn erase(
    cfg: &Config,
    ledger: &Ledger,
    accounts: &Accounts,
    national_prefix: &str,
    account: &str,
) -> Result<Erasure, LedgerError> {
    let docs = documents(ledger, account)?;
    if accounts.get(account).is_none() && docs.is_empty() {
        return Err(refused(format!("unknown account {account}")));
    }
    let spool = crate::ingest::spool::Spool::open(&cfg.spool_dir).map_err(io(&cfg.spool_dir))?;
    let mut rec = Erasure {
        account_id: account.to_owned(),
        erased_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ..Default::default()
    };
    let mut notes = Vec::new();
    let mut numbers: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut layouts: BTreeMap<String, Layout> = BTreeMap::new();
    let mut sp = Splitter::new();
    // 1. done/ files without the account's lines.
    for cp in ledger.files()? {
        let path = spool.done.join(&cp.name);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let Some((l, body)) = layout(&bytes, cfg) else {
            continue;
        };
        let mut out = bytes[..body].to_vec();
        let mut removed = 0;
        for line in lines(&bytes[body..]) {
            let rec = trim(line);
            if field(&mut sp, &l, rec, Column::AccountId).as_deref() == Some(account.as_bytes()) {
                if let Some(n) = field(&mut sp, &l, rec, Column::CallingNumber) {
                    if !n.is_empty() {
                        numbers.insert(n);
                    }
                }
                removed += 1;
            } else {
                out.extend_from_slice(line);
            }
        }
        layouts.insert(cp.name.clone(), l);
        if removed > 0 {
            crate::fsutil::write_atomic(&path, &out).map_err(io(&path))?;
            let hash = crate::fsutil::content_hash(&out);
            notes.push((
                format!("file/{}", cp.name),
                serde_json::to_vec(&Rewritten { content_hash: hash }).expect("serializes"),
            ));
            rec.files.push(cp.name.clone());
            rec.lines += removed;
        }
    }
    // 2. Rejects files without the account's lines; its numbers pseudonymised elsewhere.
    let pseudonyms: Vec<(Vec<u8>, Vec<u8>)> = numbers
        .iter()
        .map(|n| pseudonym().map(|p| (n.clone(), p.into_bytes())))
        .collect::<Result<_, _>>()?;
    for cp in ledger.files()? {
        let path = spool.rejects_path(&cp.name);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let l = layouts.get(&cp.name).cloned().or_else(|| {
            cfg.columns
                .as_ref()
                .map(|c| Layout::from_columns(c.as_slice()))
        });
        let mut r = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(bytes.as_slice());
        let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
        let write_err = |e: csv::Error| refused(format!("{}: {e}", path.display()));
        w.write_record(["line", "reason", "record"])
            .map_err(write_err)?;
        let (mut removed, mut replaced, mut kept) = (0u64, 0u64, 0u64);
        for row in r.byte_records() {
            let row = row.map_err(|e| refused(format!("{}: {e}", path.display())))?;
            let record = row.get(2).unwrap_or_default();
            let mine = match &l {
                Some(l) => {
                    field(&mut sp, l, record, Column::AccountId).as_deref()
                        == Some(account.as_bytes())
                }
                // Without a layout: any field equal to the account id.
                None => sp
                    .split(record)
                    .is_ok_and(|n| (0..n).any(|i| sp.field(record, i) == account.as_bytes())),
            };
            if mine {
                removed += 1;
                continue;
            }
            let mut rec = record.to_vec();
            for (from, to) in &pseudonyms {
                let (r2, n) = replace_all(&rec, from, to);
                rec = r2;
                replaced += n;
            }
            w.write_record([
                row.get(0).unwrap_or_default(),
                row.get(1).unwrap_or_default(),
                &rec,
            ])
            .map_err(write_err)?;
            kept += 1;
        }
        if removed + replaced > 0 {
            let out = w
                .into_inner()
                .map_err(|e| refused(format!("{}: {e}", path.display())))?;
            if kept == 0 {
                remove(&path)?;
            } else {
                crate::fsutil::write_atomic(&path, &out).map_err(io(&path))?;
            }
            rec.rejects_files.push(cp.name.clone());
            rec.rejects_lines += removed;
            rec.pseudonymised += replaced;
        }
    }
    // 3. Annexes erased, documents re-rendered without them; the record of the erasure.
    let mut annexes = Vec::new();
    for (n, _) in &docs {
        if ledger.annex(n)?.is_some() {
            annexes.push((n.clone(), None));
            rec.annexes.push(n.clone());
        }
    }
    // 4. Other accounts' annexes that list one of its numbers: the number (as shown,
    // masked per that annex) replaced by the same pseudonym as in the rejects files.
    let shown: Vec<(String, &[u8])> = pseudonyms
        .iter()
        .filter_map(|(raw, p)| {
            let d = crate::rate::cdr::number::normalize(raw, national_prefix.as_bytes(), false)?;
            Some((d.to_string(), p.as_slice()))
        })
        .collect();
    let mut rerender = Vec::new();
    if !shown.is_empty() {
        for n in ledger.annex_numbers()? {
            if docs.iter().any(|(d, _)| *d == n) {
                continue;
            }
            let Some(bytes) = ledger.annex(&n)? else {
                continue;
            };
            let mut a: crate::billing::annex::Annex =
                serde_json::from_slice(&bytes).map_err(|e| LedgerError::Corrupt {
                    path: ledger.path().to_owned(),
                    key: format!("annex/{n}"),
                    message: e.to_string(),
                })?;
            let hide = crate::billing::annex::hidden_digits(&a.masking);
            let masked: Vec<(String, String)> = shown
                .iter()
                .map(|(digits, p)| {
                    (
                        crate::billing::annex::mask(
                            &crate::billing::annex::display_number(digits),
                            hide,
                        ),
                        String::from_utf8_lossy(p).into_owned(),
                    )
                })
                .collect();
            let mut replaced = 0;
            for r in a.lines.iter_mut().flat_map(|l| l.records.iter_mut()) {
                if let Some((_, p)) = masked.iter().find(|(m, _)| *m == r.number) {
                    r.number = p.clone();
                    replaced += 1;
                }
            }
            if replaced > 0 {
                annexes.push((
                    n.clone(),
                    Some(serde_json::to_vec_pretty(&a).expect("annex serializes")),
                ));
                rec.annexes_pseudonymised.push(n.clone());
                rec.annex_records_pseudonymised += replaced;
                rerender.push((n, a.period));
            }
        }
    }
    notes.push((
        format!("erased/{account}"),
        serde_json::to_vec(&rec).expect("serializes"),
    ));
    ledger.privacy_commit(&notes, &annexes)?;
    for (n, inv) in &docs {
        if rec.annexes.contains(n) {
            rerender.push((n.clone(), inv.period.clone()));
        }
    }
    for (n, period) in &rerender {
        let dir = cfg.invoice_dir.join(period);
        if dir.join(format!("{n}.json")).exists() {
            crate::billing::files::write_document(ledger, &dir, n, cfg.psp.as_ref())?;
        }
    }
    Ok(rec)
}

/// The account's documents (invoices and credit notes), in number order.
fn documents(ledger: &Ledger, account: &str) -> Result<Vec<(String, Invoice)>, LedgerError> {
    let mut out = Vec::new();
    for n in ledger.document_numbers()? {
        let Some(inv) = crate::billing::files::stored_invoice(ledger, &n)? else {
            continue;
        };
        if inv.account_id == account {
            out.push((n, inv));
        }
    }
    Ok(out)
}

/// Everything held about an account, as one JSON document (data-subject access): the
/// account row, its documents, annexes, unbilled usage, payments ledger, its records
/// in `done/` and rejects files, and any erasure.
pub fn export(
    cfg: &Config,
    ledger: &Ledger,
    accounts: &Accounts,
    currency: &str,
    account: &str,
    today: NaiveDate,
) -> Result<serde_json::Value, LedgerError> {
    use serde_json::{json, Value};
    let docs = documents(ledger, account)?;
    let acc = accounts.get(account);
    if acc.is_none() && docs.is_empty() {
        return Err(refused(format!("unknown account {account}")));
    }
    let mut annexes = Vec::new();
    for (n, _) in &docs {
        if let Some(a) = ledger.annex(n)? {
            annexes.push(serde_json::from_slice::<Value>(&a).unwrap_or(Value::Null));
        }
    }
    let unbilled: Vec<Value> = ledger
        .unbilled(Some(account))?
        .into_iter()
        .map(|r| {
            json!({
                "month": r.month,
                "lines": r.lines.0.iter().map(|((s, d, b), t)| json!({
                    "service": crate::rate::service::Service::from_index(*s).map_or("?", |s| s.name()),
                    "destination": d, "band": b, "records": t.count, "usage": t.usage,
                    "billed": t.billed, "charge": crate::rate::money::format_micros(t.charge_micros as i128),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let statement = crate::payments::view(ledger, account, today, currency, &[])?;
    let spool = crate::ingest::spool::Spool::open(&cfg.spool_dir).map_err(io(&cfg.spool_dir))?;
    let mut traffic = Vec::new();
    let mut rejects = Vec::new();
    let mut sp = Splitter::new();
    for cp in ledger.files()? {
        let path = spool.done.join(&cp.name);
        let mut file_layout = None;
        if let Ok(bytes) = std::fs::read(&path) {
            if let Some((l, body)) = layout(&bytes, cfg) {
                let first = if cfg.columns.is_some() { 1 } else { 2 };
                for (no, line) in (first..).zip(lines(&bytes[body..])) {
                    let rec = trim(line);
                    if field(&mut sp, &l, rec, Column::AccountId).as_deref()
                        == Some(account.as_bytes())
                    {
                        let mut o = serde_json::Map::new();
                        o.insert("file".into(), json!(cp.name));
                        o.insert("line".into(), json!(no));
                        for c in Column::ALL {
                            if let Some(v) = field(&mut sp, &l, rec, c) {
                                o.insert(c.name().into(), json!(String::from_utf8_lossy(&v)));
                            }
                        }
                        traffic.push(Value::Object(o));
                    }
                }
                file_layout = Some(l);
            }
        }
        let rpath = spool.rejects_path(&cp.name);
        let Ok(bytes) = std::fs::read(&rpath) else {
            continue;
        };
        let l = file_layout.or_else(|| {
            cfg.columns
                .as_ref()
                .map(|c| Layout::from_columns(c.as_slice()))
        });
        let Some(l) = l else { continue };
        let mut r = csv::ReaderBuilder::new()
            .flexible(true)
            .from_reader(bytes.as_slice());
        for row in r.byte_records().flatten() {
            let record = row.get(2).unwrap_or_default();
            if field(&mut sp, &l, record, Column::AccountId).as_deref() == Some(account.as_bytes())
            {
                rejects.push(json!({
                    "file": cp.name,
                    "line": String::from_utf8_lossy(row.get(0).unwrap_or_default()),
                    "reason": String::from_utf8_lossy(row.get(1).unwrap_or_default()),
                    "record": String::from_utf8_lossy(record),
                }));
            }
        }
    }
    let erasure = ledger
        .privacy_note(&format!("erased/{account}"))?
        .and_then(|v| serde_json::from_slice::<Value>(&v).ok());
    Ok(json!({
        "account_id": account,
        "exported_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "account": acc,
        "documents": docs.iter().map(|(_, d)| d).collect::<Vec<_>>(),
        "annexes": annexes,
        "unbilled_usage": unbilled,
        "statement": statement,
        "traffic": traffic,
        "rejects": rejects,
        "erasure": erasure,
        "retention": {
            "traffic_detail": format!("{} months after the invoice's due date", cfg.privacy.dispute_window_months),
            "fiscal_records": "7 years (invoices, credit notes, totals, payments)",
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence() {
        assert_eq!(
            replace_all(b"a,+3161,x+3161", b"+3161", b"anon-1"),
            (b"a,anon-1,xanon-1".to_vec(), 2)
        );
        assert_eq!(replace_all(b"abc", b"", b"x"), (b"abc".to_vec(), 0));
    }

    #[test]
    fn pseudonyms_are_random_and_shaped() {
        let (a, b) = (pseudonym().unwrap(), pseudonym().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), "anon-".len() + 12);
        assert!(a.starts_with("anon-") && a[5..].bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn the_window_counts_months_after_the_due_date() {
        let cfg = Config::parse(
            Path::new("/tmp/t.toml"),
            &format!(
                "data_dir = \"d\"\nspool_dir = \"s\"\ntariff_plans = \"p.toml\"\naccounts_file = \"a.csv\"\ninvoice_dir = \"i\"\nlisten = \"127.0.0.1:0\"\nworkers = 1\n[billing]\nvat_rate = \"21\"\npayment_terms_days = 14\n[privacy]\ndispute_window_months = 3\n{}",
                crate::demo::synth::SELLER_TOML
            ),
        )
        .unwrap();
        let due = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert_eq!(kept_until(&cfg, due).to_string(), "2027-02-28");
    }
}
