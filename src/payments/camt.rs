//! ISO 20022 bank-to-customer messages: camt.053 (statement) and camt.054 (debit/credit
//! notification), any `.001.xx` version. I/O-free: bytes in, [`Statement`]s out.
//!
//! The XML is read with quick-xml into a small element tree (namespaces dropped: the
//! root's namespace decides the message type), then the fields tollgate needs are taken
//! from it. Every error names the file position or the entry that is wrong.

use quick_xml::events::Event;
use quick_xml::Reader;

/// One bank transaction (an entry, or one transaction of a batch entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BankTx {
    /// Stable identity for idempotent imports: the bank's references when present,
    /// else the statement id and the positions.
    pub identity: String,
    /// Always positive; see `credit`.
    pub amount_cents: i64,
    pub currency: String,
    pub credit: bool,
    /// `RvslInd` true (a reversal of an earlier entry).
    pub reversal: bool,
    /// Status BOOK (other statuses, e.g. PDNG, are not final and are skipped).
    pub booked: bool,
    /// Booking date (or value date).
    pub date: chrono::NaiveDate,
    pub end_to_end_id: Option<String>,
    /// Structured creditor references (`RmtInf/Strd/CdtrRefInf/Ref`).
    pub references: Vec<String>,
    /// Unstructured remittance text, lines joined by a space.
    pub text: String,
    /// Counterparty name.
    pub name: String,
    /// Counterparty IBAN.
    pub iban: String,
    /// Return reason code (`RtrInf/Rsn/Cd`), e.g. `MD06`, `AM04`.
    pub return_reason: Option<String>,
    /// 1-based entry number within its statement, for messages.
    pub entry_no: usize,
}

/// One statement or notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// `camt.053` or `camt.054`.
    pub kind: &'static str,
    pub id: String,
    pub iban: String,
    /// Account currency (`Acct/Ccy`), if given.
    pub currency: Option<String>,
    pub txs: Vec<BankTx>,
}

#[derive(Debug, Default)]
struct El {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<El>,
}

impl El {
    fn child(&self, name: &str) -> Option<&El> {
        self.children.iter().find(|c| c.name == name)
    }
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a El> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
    /// The element at a `/`-separated path below this one.
    fn at(&self, path: &str) -> Option<&El> {
        let mut e = self;
        for p in path.split('/') {
            e = e.child(p)?;
        }
        Some(e)
    }
    fn text_at(&self, path: &str) -> Option<String> {
        self.at(path)
            .map(|e| e.text.trim().to_owned())
            .filter(|t| !t.is_empty())
    }
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn local(name: &[u8]) -> String {
    let n = match name.iter().rposition(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    };
    String::from_utf8_lossy(n).into_owned()
}

/// Parses the whole document into a tree; the root's default namespace is returned too.
fn parse_tree(bytes: &[u8]) -> Result<(El, String), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut r = Reader::from_str(text);
    let mut stack: Vec<El> = vec![El::default()];
    let mut ns = String::new();
    let pos_err = |r: &Reader<&[u8]>, m: String| {
        format!("malformed XML at byte {}: {m}", r.buffer_position())
    };
    loop {
        let ev = r.read_event().map_err(|e| pos_err(&r, e.to_string()))?;
        let empty = matches!(ev, Event::Empty(_));
        match ev {
            Event::Start(e) | Event::Empty(e) => {
                let mut el = El {
                    name: local(e.name().as_ref()),
                    ..El::default()
                };
                for a in e.attributes() {
                    let a = a.map_err(|e| pos_err(&r, e.to_string()))?;
                    let v = a
                        .unescape_value()
                        .map_err(|e| pos_err(&r, e.to_string()))?
                        .into_owned();
                    let k = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                    if k == "xmlns" && stack.len() == 1 {
                        ns = v.clone();
                    }
                    el.attrs.push((local(k.as_bytes()), v));
                }
                if empty {
                    stack.last_mut().expect("root").children.push(el);
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack.pop().expect("balanced");
                if stack.is_empty() {
                    return Err(pos_err(&r, "unbalanced end tag".into()));
                }
                stack.last_mut().expect("parent").children.push(el);
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| pos_err(&r, e.to_string()))?;
                stack.last_mut().expect("element").text.push_str(&s);
            }
            Event::GeneralRef(g) => {
                let c = if g.is_char_ref() {
                    g.resolve_char_ref()
                        .map_err(|e| pos_err(&r, e.to_string()))?
                        .ok_or_else(|| pos_err(&r, "bad character reference".into()))?
                } else {
                    match g.decode().map_err(|e| pos_err(&r, e.to_string()))?.as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        other => return Err(pos_err(&r, format!("unknown entity &{other};"))),
                    }
                };
                stack.last_mut().expect("element").text.push(c);
            }
            Event::CData(t) => {
                let s = String::from_utf8_lossy(&t.into_inner()).into_owned();
                stack.last_mut().expect("element").text.push_str(&s);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(format!(
            "malformed XML: document ends inside <{}>",
            stack.last().map(|e| e.name.as_str()).unwrap_or("?")
        ));
    }
    let mut root = stack.pop().expect("root");
    if root.children.len() != 1 {
        return Err("malformed XML: expected exactly one root element".into());
    }
    Ok((root.children.remove(0), ns))
}

/// Parses an amount with at most 2 decimals into cents.
fn cents(s: &str, what: &str) -> Result<i64, String> {
    let c = crate::rate::money::parse_cents(s).map_err(|m| format!("{what}: {m}"))?;
    if c < 0 {
        return Err(format!("{what}: negative amount `{s}`"));
    }
    Ok(c)
}

/// Parses a camt.053 or camt.054 document.
pub fn parse(bytes: &[u8]) -> Result<Vec<Statement>, String> {
    let (doc, ns) = parse_tree(bytes)?;
    if doc.name != "Document" {
        return Err(format!("root element is <{}>, not <Document>", doc.name));
    }
    let (kind, body, part) = if ns.contains("camt.053.001.") {
        ("camt.053", "BkToCstmrStmt", "Stmt")
    } else if ns.contains("camt.054.001.") {
        ("camt.054", "BkToCstmrDbtCdtNtfctn", "Ntfctn")
    } else {
        return Err(format!(
            "namespace `{ns}` is not a camt.053 or camt.054 message"
        ));
    };
    let body = doc
        .child(body)
        .ok_or_else(|| format!("{kind}: missing <{body}>"))?;
    let mut out = Vec::new();
    for (si, st) in body.all(part).enumerate() {
        let sid = st
            .text_at("Id")
            .ok_or_else(|| format!("{kind}: {part} {} has no <Id>", si + 1))?;
        let iban = st
            .text_at("Acct/Id/IBAN")
            .ok_or_else(|| format!("{kind} {sid}: no account IBAN (Acct/Id/IBAN)"))?;
        let mut txs = Vec::new();
        for (ei, ntry) in st.all("Ntry").enumerate() {
            let no = ei + 1;
            let what = format!("{kind} {sid} entry {no}");
            let amt = ntry
                .child("Amt")
                .ok_or_else(|| format!("{what}: no <Amt>"))?;
            let ccy = amt
                .attr("Ccy")
                .ok_or_else(|| format!("{what}: <Amt> has no Ccy"))?
                .to_owned();
            let amount = cents(amt.text.trim(), &what)?;
            let credit = match ntry.text_at("CdtDbtInd").as_deref() {
                Some("CRDT") => true,
                Some("DBIT") => false,
                other => return Err(format!("{what}: CdtDbtInd is {other:?}, not CRDT or DBIT")),
            };
            let reversal = ntry.text_at("RvslInd").as_deref() == Some("true");
            // camt.053.001.02 has <Sts>BOOK</Sts>; later versions <Sts><Cd>BOOK</Cd></Sts>.
            let status = ntry
                .text_at("Sts/Cd")
                .or_else(|| ntry.text_at("Sts"))
                .unwrap_or_else(|| "BOOK".into());
            let date = ntry
                .text_at("BookgDt/Dt")
                .or_else(|| {
                    ntry.text_at("BookgDt/DtTm")
                        .map(|t| t.chars().take(10).collect())
                })
                .or_else(|| ntry.text_at("ValDt/Dt"))
                .ok_or_else(|| format!("{what}: no booking or value date"))?;
            let date = chrono::NaiveDate::parse_from_str(&date, "%Y-%m-%d")
                .map_err(|_| format!("{what}: date `{date}` is not YYYY-MM-DD"))?;
            let entry_ref = ntry
                .text_at("AcctSvcrRef")
                .or_else(|| ntry.text_at("NtryRef"));
            let details: Vec<&El> = ntry.all("NtryDtls").flat_map(|d| d.all("TxDtls")).collect();
            let batch = details.len() > 1;
            let one = |tx: Option<&El>, ti: usize| -> Result<BankTx, String> {
                let tx_amount = match tx {
                    Some(t) if batch => {
                        let a = t
                            .at("Amt")
                            .or_else(|| t.at("AmtDtls/TxAmt/Amt"))
                            .ok_or_else(|| format!("{what} transaction {}: no amount", ti + 1))?;
                        if let Some(c) = a.attr("Ccy") {
                            if c != ccy {
                                return Err(format!(
                                    "{what} transaction {}: currency {c} differs from the entry's {ccy}",
                                    ti + 1
                                ));
                            }
                        }
                        cents(a.text.trim(), &what)?
                    }
                    _ => amount,
                };
                let g = |p: &str| tx.and_then(|t| t.text_at(p));
                let tx_ref = g("Refs/AcctSvcrRef");
                let identity = match (&tx_ref, &entry_ref) {
                    (Some(r), _) if batch => format!("{iban}/tx/{r}"),
                    (_, Some(r)) => format!("{iban}/entry/{r}/{ti}"),
                    (Some(r), None) => format!("{iban}/tx/{r}"),
                    (None, None) => format!("{iban}/{kind}/{sid}/{no}/{ti}"),
                };
                let text = tx
                    .map(|t| {
                        t.all("RmtInf")
                            .flat_map(|r| r.all("Ustrd"))
                            .map(|u| u.text.trim().to_owned())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                let text = if text.is_empty() {
                    ntry.text_at("AddtlNtryInf").unwrap_or_default()
                } else {
                    text
                };
                let references = tx
                    .map(|t| {
                        t.all("RmtInf")
                            .flat_map(|r| r.all("Strd"))
                            .filter_map(|s| s.text_at("CdtrRefInf/Ref"))
                            .collect()
                    })
                    .unwrap_or_default();
                let (name, iban_cp) = if credit {
                    (
                        g("RltdPties/Dbtr/Nm").or_else(|| g("RltdPties/Dbtr/Pty/Nm")),
                        g("RltdPties/DbtrAcct/Id/IBAN"),
                    )
                } else {
                    (
                        g("RltdPties/Cdtr/Nm").or_else(|| g("RltdPties/Cdtr/Pty/Nm")),
                        g("RltdPties/CdtrAcct/Id/IBAN"),
                    )
                };
                let e2e = g("Refs/EndToEndId").filter(|e| e != "NOTPROVIDED");
                Ok(BankTx {
                    identity,
                    amount_cents: tx_amount,
                    currency: ccy.clone(),
                    credit,
                    reversal,
                    booked: status == "BOOK",
                    date,
                    end_to_end_id: e2e,
                    references,
                    text,
                    name: name.unwrap_or_default(),
                    iban: iban_cp.unwrap_or_default(),
                    return_reason: g("RtrInf/Rsn/Cd"),
                    entry_no: no,
                })
            };
            if details.is_empty() {
                txs.push(one(None, 0)?);
            } else {
                let mut sum = 0;
                for (ti, t) in details.iter().enumerate() {
                    let tx = one(Some(t), ti)?;
                    sum += tx.amount_cents;
                    txs.push(tx);
                }
                if batch && sum != amount {
                    return Err(format!(
                        "{what}: transactions add up to {}, the entry says {}",
                        crate::rate::money::format_cents(sum),
                        crate::rate::money::format_cents(amount)
                    ));
                }
            }
        }
        out.push(Statement {
            kind,
            id: sid,
            iban: crate::rate::iban::check_iban(&iban).map_err(|m| {
                format!(
                    "{kind} {}: account: {m}",
                    st.text_at("Id").unwrap_or_default()
                )
            })?,
            currency: st.text_at("Acct/Ccy"),
            txs,
        });
    }
    if out.is_empty() {
        return Err(format!("{kind}: no <{part}> in the message"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STMT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
 <BkToCstmrStmt>
  <GrpHdr><MsgId>M1</MsgId><CreDtTm>2026-10-20T18:00:00</CreDtTm></GrpHdr>
  <Stmt>
   <Id>S1</Id>
   <Acct><Id><IBAN>NL91ABNA0417164300</IBAN></Id><Ccy>EUR</Ccy></Acct>
   <Ntry>
    <Amt Ccy="EUR">12.10</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
    <BookgDt><Dt>2026-10-20</Dt></BookgDt><AcctSvcrRef>B1</AcctSvcrRef>
    <NtryDtls><TxDtls>
     <Refs><EndToEndId>NOTPROVIDED</EndToEndId></Refs>
     <RltdPties><Dbtr><Nm>A &amp; B</Nm></Dbtr><DbtrAcct><Id><IBAN>DE89370400440532013000</IBAN></Id></DbtrAcct></RltdPties>
     <RmtInf><Ustrd>5000 0567 8901 2345</Ustrd></RmtInf>
    </TxDtls></NtryDtls>
   </Ntry>
   <Ntry>
    <Amt Ccy="EUR">30.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
    <BookgDt><Dt>2026-10-21</Dt></BookgDt><AcctSvcrRef>B2</AcctSvcrRef>
    <NtryDtls>
     <TxDtls><Refs><AcctSvcrRef>T1</AcctSvcrRef><EndToEndId>E1</EndToEndId></Refs><AmtDtls><TxAmt><Amt Ccy="EUR">10.00</Amt></TxAmt></AmtDtls></TxDtls>
     <TxDtls><Refs><AcctSvcrRef>T2</AcctSvcrRef><EndToEndId>E2</EndToEndId></Refs><Amt Ccy="EUR">20.00</Amt></TxDtls>
    </NtryDtls>
   </Ntry>
  </Stmt>
 </BkToCstmrStmt>
</Document>"#;

    #[test]
    fn statement_entries_and_batches() {
        let s = parse(STMT.as_bytes()).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].kind, "camt.053");
        let t = &s[0].txs;
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].amount_cents, 1210);
        assert_eq!(t[0].name, "A & B");
        assert_eq!(t[0].end_to_end_id, None);
        assert_eq!(t[0].identity, "NL91ABNA0417164300/entry/B1/0");
        assert_eq!(t[1].amount_cents, 1000);
        assert_eq!(t[1].identity, "NL91ABNA0417164300/tx/T1");
        assert_eq!(t[2].end_to_end_id.as_deref(), Some("E2"));
    }

    #[test]
    fn refusals() {
        let e = parse(b"<Document><oops></Document>").unwrap_err();
        assert!(e.contains("malformed XML"), "{e}");
        let e = parse(STMT.replace("camt.053", "pain.008").as_bytes()).unwrap_err();
        assert!(e.contains("not a camt.053"), "{e}");
        let e = parse(STMT.replace(">20.00<", ">21.00<").as_bytes()).unwrap_err();
        assert!(e.contains("add up to 31.00, the entry says 30.00"), "{e}");
        let e = parse(STMT.replace("12.10", "12.101").as_bytes()).unwrap_err();
        assert!(
            e.contains("entry 1") && e.contains("more than 2 decimals"),
            "{e}"
        );
    }
}
