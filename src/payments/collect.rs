//! The SEPA direct debit collection run: due invoices of direct-debit accounts into one
//! pain.008 file, each collected once.

use std::path::Path;

use chrono::NaiveDate;

use super::*;
use crate::config::Config;
use crate::rate::accounts::{Accounts, PaymentMethod};
use crate::rate::money::Cents;
use crate::store::{Ledger, PayCf};

/// What a collection run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectReport {
    pub msg_id: Option<String>,
    pub transactions: usize,
    pub total: String,
    pub frst: usize,
    pub rcur: usize,
    /// True when nothing new was due and an earlier batch of the same date was rewritten.
    pub rewritten: bool,
}

/// Writes a pain.008.001.02 file for every open invoice of a direct-debit account due
/// on or before `date`, never collected before, to be collected on `date`. The run is
/// recorded (collection state per invoice, end-to-end ids, mandates used, the XML) in
/// one batch before the file is written; re-running for the same date with nothing new
/// rewrites the last batch of that date.
pub fn collect(
    cfg: &Config,
    ledger: &Ledger,
    accounts: &Accounts,
    currency: &str,
    date: NaiveDate,
    out: &Path,
) -> Result<CollectReport, PayError> {
    let Some(sepa) = &cfg.sepa else {
        return refused(format!(
            "config {}: a [sepa] table (creditor_id, creditor_name, creditor_iban, creditor_bic) is required for collect",
            cfg.source.display()
        ));
    };
    if currency != "EUR" {
        return refused(format!(
            "SEPA direct debits are in EUR, the tariff currency is {currency}"
        ));
    }
    let d = date.to_string();
    let (report, xml) = ledger.transact(|ledger, tx| {
        let mut debits = Vec::new();
        let mut first_seen = std::collections::HashSet::new();
        for a in accounts
            .list
            .iter()
            .filter(|a| a.payment_method == PaymentMethod::DirectDebit)
        {
            let (_, items) = derive(&a.account_id, entries(ledger, &a.account_id, &[])?, date);
            for it in items {
                if it.open_cents <= 0
                    || it.due_date.as_str() > d.as_str()
                    || collection(ledger, &it.invoice)?.is_some()
                {
                    continue;
                }
                let used = ledger
                    .pay_get(
                        PayCf::Collections,
                        format!("mandate/{}", a.mandate_id).as_bytes(),
                    )?
                    .is_some();
                let sequence = if used || !first_seen.insert(a.mandate_id.clone()) {
                    "RCUR"
                } else {
                    "FRST"
                };
                debits.push((
                    it.invoice.clone(),
                    crate::payments::sepa::Debit {
                        end_to_end_id: format!("TG-{}", it.invoice),
                        amount_cents: it.open_cents,
                        mandate_id: a.mandate_id.clone(),
                        mandate_date: a.mandate_date.clone(),
                        debtor_name: if a.name.is_empty() {
                            a.account_id.clone()
                        } else {
                            a.name.clone()
                        },
                        debtor_iban: a.iban.clone(),
                        debtor_bic: a.bic.clone(),
                        remittance: format!(
                            "Invoice {} {}",
                            it.invoice,
                            crate::payments::sepa::payment_reference(&it.invoice)
                                .unwrap_or_default()
                        ),
                        sequence,
                    },
                ));
            }
        }
        if debits.is_empty() {
            let prefix = format!("batch/{d}/");
            let last = ledger
                .pay_scan(PayCf::Collections, prefix.as_bytes())?
                .pop();
            return Ok(match last {
                Some((k, v)) => (
                    CollectReport {
                        msg_id: Some(String::from_utf8_lossy(&k[prefix.len()..]).into_owned()),
                        transactions: 0,
                        total: "0.00".into(),
                        frst: 0,
                        rcur: 0,
                        rewritten: true,
                    },
                    Some(v),
                ),
                None => (
                    CollectReport {
                        msg_id: None,
                        transactions: 0,
                        total: "0.00".into(),
                        frst: 0,
                        rcur: 0,
                        rewritten: false,
                    },
                    None,
                ),
            });
        }
        let msg_id = format!("TG-{}-{:06}", date.format("%Y%m%d"), tx.next_id());
        let created = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
        let creditor = crate::payments::sepa::Creditor {
            id: sepa.creditor_id.clone(),
            name: sepa.creditor_name.clone(),
            iban: sepa.creditor_iban.clone(),
            bic: sepa.creditor_bic.clone(),
        };
        let list: Vec<crate::payments::sepa::Debit> =
            debits.iter().map(|(_, d)| d.clone()).collect();
        let xml = crate::payments::sepa::pain008(&msg_id, &created, &d, &creditor, &list);
        for (inv, dd) in &debits {
            let c = Collection {
                end_to_end_id: dd.end_to_end_id.clone(),
                msg_id: msg_id.clone(),
                date: d.clone(),
                amount: Cents(dd.amount_cents),
                sequence: dd.sequence.into(),
                status: "pending".into(),
                return_reason: None,
            };
            tx.put(
                PayCf::Collections,
                format!("inv/{inv}"),
                serde_json::to_vec(&c).expect("json"),
            );
            tx.put(
                PayCf::Refs,
                format!("e2e/{}", dd.end_to_end_id),
                inv.clone().into_bytes(),
            );
            tx.put(
                PayCf::Collections,
                format!("mandate/{}", dd.mandate_id),
                msg_id.clone().into_bytes(),
            );
        }
        tx.put(
            PayCf::Collections,
            format!("batch/{d}/{msg_id}"),
            xml.clone().into_bytes(),
        );
        let total: i64 = list.iter().map(|x| x.amount_cents).sum();
        Ok::<_, PayError>((
            CollectReport {
                msg_id: Some(msg_id),
                transactions: list.len(),
                total: Cents(total).to_string(),
                frst: list.iter().filter(|x| x.sequence == "FRST").count(),
                rcur: list.iter().filter(|x| x.sequence == "RCUR").count(),
                rewritten: false,
            },
            Some(xml.into_bytes()),
        ))
    })?;
    if let Some(xml) = xml {
        crate::fsutil::write_renamed(out, &xml)
            .map_err(|e| PayError::Refused(format!("cannot write {}: {e}", out.display())))?;
    }
    Ok(report)
}
