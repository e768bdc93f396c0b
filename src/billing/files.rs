//! A stored document's files (`<number>.json`, the UBL `.xml`, the PDF, the QR SVG and
//! the annex JSON), derived from the ledger and rewritten when missing or different.

use std::path::{Path, PathBuf};

use super::model::*;
use super::refused;
use crate::config::Config;
use crate::store::{CloseRecord, Ledger, LedgerError};

/// Writes (or rewrites) the files of every invoice of a close from the ledger. Files
/// appear whole (temp file + rename) and are durable when this returns.
pub fn write_invoice_files(
    ledger: &Ledger,
    dir: &Path,
    record: &CloseRecord,
    psp: Option<&crate::config::Psp>,
) -> Result<(), LedgerError> {
    let io = |e: std::io::Error| {
        LedgerError::Refused(format!("cannot write invoices to {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    remove_stale_temp_files(dir).map_err(io)?;
    // Rendering (PDF, UBL, the EPC QR code) is CPU work per document: one thread per
    // core takes the next number until all are written or one fails.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(record.invoices.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let failed = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(n) = record.invoices.get(i) else {
                    break;
                };
                if let Err(e) = write_document(ledger, dir, n, psp) {
                    // Stop every thread; report the first failure (in number order).
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    let mut f = failed.lock().expect("failure lock");
                    if f.as_ref().is_none_or(|(j, _)| i < *j) {
                        *f = Some((i, e));
                    }
                    break;
                }
            });
        }
    });
    if let Some((_, e)) = failed.into_inner().expect("failure lock") {
        return Err(e);
    }
    // One filesystem flush for the whole close instead of two fsyncs per invoice. The
    // ledger is the record: re-running the close re-checks and rewrites every file.
    crate::fsutil::sync_fs(dir).map_err(io)?;
    Ok(())
}

/// Removes hidden temp files a killed writer left behind (`.<name>.tmp-<pid>`).
pub(crate) fn remove_stale_temp_files(dir: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.starts_with('.') && n.contains(".tmp-") {
            std::fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Writes `<number>.json`, `<number>.xml` (UBL), `<number>.pdf` and, for itemised
/// invoices, `<number>.annex.json` of a stored document into `dir` unless
/// they are there already with the same content (not flushed: the caller syncs). With
/// `[psp]`, an invoice's PDF carries its pay link.
pub fn write_document(
    ledger: &Ledger,
    dir: &Path,
    number: &str,
    psp: Option<&crate::config::Psp>,
) -> Result<(), LedgerError> {
    let io = |e: std::io::Error| {
        LedgerError::Refused(format!("cannot write documents to {}: {e}", dir.display()))
    };
    let json = ledger
        .invoice(number)?
        .ok_or_else(|| refused(format!("document {number} missing from the ledger")))?;
    let inv = decode_invoice(ledger, number, &json)?;
    let annex_json = ledger.annex(number)?;
    let annex: Option<crate::billing::annex::Annex> = match &annex_json {
        Some(a) => Some(serde_json::from_slice(a).map_err(|e| LedgerError::Corrupt {
            path: ledger.path().to_owned(),
            key: format!("annex/{number}"),
            message: e.to_string(),
        })?),
        None => None,
    };
    let xml = crate::billing::documents::ubl::render(&inv);
    let pay_url = psp.and_then(|p| crate::payments::psp::pay_link_for(p, number));
    let pdf =
        crate::billing::documents::pdf::render(&inv, annex.as_ref(), &xml, pay_url.as_deref())
            .map_err(|e| refused(format!("document {number}: {e}")))?;
    let mut rewritten = false;
    for (ext, bytes) in [("json", &json), ("xml", &xml), ("pdf", &pdf)] {
        let path = dir.join(format!("{number}.{ext}"));
        if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
            crate::fsutil::write_renamed(&path, bytes).map_err(io)?;
            rewritten |= ext == "json";
        }
    }
    // The itemised annex beside the invoice while its traffic detail is held; removed
    // once it was erased (dispute window, erasure request).
    let annex_path = dir.join(format!("{number}.annex.json"));
    match &annex_json {
        Some(bytes) => {
            if std::fs::read(&annex_path).ok().as_deref() != Some(bytes.as_slice()) {
                crate::fsutil::write_renamed(&annex_path, bytes).map_err(io)?;
            }
        }
        None => match std::fs::remove_file(&annex_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        },
    }
    // The EPC QR code beside the invoice (bank transfer invoices). Encoding costs about
    // 1 ms, so it is redone only when the JSON was (re)written or it is missing.
    if let Some(payload) = inv.payment.and_then(|p| p.epc_qr) {
        let qr = dir.join(format!("{number}.qr.svg"));
        if rewritten || !qr.exists() {
            let svg =
                crate::billing::documents::qr::qr_svg(&payload).map_err(LedgerError::Refused)?;
            crate::fsutil::write_renamed(&qr, svg.as_bytes()).map_err(io)?;
        }
    }
    Ok(())
}

/// Writes the files of documents committed outside a close whose files may be missing
/// (a crash between commit and writing), then forgets them.
pub fn flush_pending(cfg: &Config, ledger: &Ledger) -> Result<Vec<PathBuf>, LedgerError> {
    let pending = ledger.pending()?;
    let mut written = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for (number, dir) in &pending {
        let d = cfg.invoice_dir.join(dir);
        std::fs::create_dir_all(&d)
            .and_then(|_| remove_stale_temp_files(&d))
            .map_err(|e| refused(format!("cannot prepare {}: {e}", d.display())))?;
        write_document(ledger, &d, number, cfg.psp.as_ref())?;
        written.push(d.join(format!("{number}.json")));
        dirs.insert(d);
    }
    for d in &dirs {
        crate::fsutil::sync_fs(d)
            .map_err(|e| refused(format!("cannot flush {}: {e}", d.display())))?;
    }
    let numbers: Vec<String> = pending.into_iter().map(|(n, _)| n).collect();
    ledger.clear_pending(&numbers)?;
    Ok(written)
}

/// A stored document, decoded; a document that does not decode (an amount or date that
/// does not parse) is an error naming it, never a default.
pub fn decode_invoice(ledger: &Ledger, number: &str, json: &[u8]) -> Result<Invoice, LedgerError> {
    serde_json::from_slice(json).map_err(|e| LedgerError::Corrupt {
        path: ledger.path().to_owned(),
        key: format!("invoices/{number}"),
        message: e.to_string(),
    })
}

/// The stored document `number`, if there is one.
pub fn stored_invoice(ledger: &Ledger, number: &str) -> Result<Option<Invoice>, LedgerError> {
    match ledger.invoice(number)? {
        Some(json) => decode_invoice(ledger, number, &json).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::money::Cents;

    fn invoice(number: &str) -> Invoice {
        let s = String::new;
        let day = |d: &str| d.parse().expect("date");
        Invoice {
            number: number.into(),
            account_id: "A1".into(),
            period: "2026-10".into(),
            currency: "EUR".into(),
            issue_date: day("2026-11-01"),
            due_date: day("2026-11-15"),
            seller: crate::config::Seller {
                name: "Seller".into(),
                street: s(),
                postcode: s(),
                city: s(),
                country: "NL".into(),
                kvk: s(),
                vat_id: s(),
                iban: s(),
                bic: s(),
            },
            customer: Customer::default(),
            lines: vec![Line::Subscription {
                plan: "basic".into(),
                description: "Basic".into(),
                amount: Cents(1000),
                vat_category: "S".into(),
                vat_rate: "21".into(),
            }],
            net_total: Cents(1000),
            vat_rate: "21".into(),
            vat_total: Cents(210),
            total: Cents(1210),
            late_records: 0,
            payment_reference: None,
            payment: None,
            document_type: invoice_type(),
            period_start: "2026-10-01".into(),
            period_end: "2026-10-31".into(),
            vat_breakdown: Vec::new(),
            vat_note: s(),
            credited_invoice: None,
            replaces: None,
            reason: s(),
            final_invoice: false,
            usage_by_day: Vec::new(),
            itemised: None,
        }
    }

    /// A stored amount that does not parse is an error naming the document (what
    /// `bills show` and the file writer report), never a silent 0.00.
    #[test]
    fn a_stored_amount_that_does_not_parse_names_the_document() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(&tmp.path().join("db")).expect("ledger");
        let good = serde_json::to_vec_pretty(&invoice("2026-000001")).expect("json");
        let text =
            String::from_utf8(serde_json::to_vec_pretty(&invoice("2026-000002")).unwrap()).unwrap();
        assert!(text.contains(r#""total": "12.10""#), "{text}");
        let bad = text.replace(r#""total": "12.10""#, r#""total": "12,34""#);
        ledger
            .issue(|txn| {
                txn.put_document("2026-000001", &good, "2026-10")?;
                txn.put_document("2026-000002", bad.as_bytes(), "2026-10")
            })
            .expect("stored");
        let out = tmp.path().join("out");
        std::fs::create_dir_all(&out).unwrap();

        // The good document round-trips byte for byte and is written.
        let inv = stored_invoice(&ledger, "2026-000001").unwrap().unwrap();
        assert_eq!(inv.total, Cents(1210));
        assert_eq!(serde_json::to_vec_pretty(&inv).unwrap(), good);
        write_document(&ledger, &out, "2026-000001", None).expect("written");
        assert_eq!(std::fs::read(out.join("2026-000001.json")).unwrap(), good);

        // The broken one: `bills show` (stored_invoice) and the writer both refuse it.
        for e in [
            stored_invoice(&ledger, "2026-000002").unwrap_err(),
            write_document(&ledger, &out, "2026-000002", None).unwrap_err(),
        ] {
            match &e {
                LedgerError::Corrupt { key, message, .. } => {
                    assert_eq!(key, "invoices/2026-000002");
                    assert!(message.contains("`12,34`"), "{message}");
                }
                other => panic!("not a corrupt-document error: {other}"),
            }
            assert!(e.to_string().contains("invoices/2026-000002"), "{e}");
        }
        assert!(!out.join("2026-000002.pdf").exists());
    }
}
