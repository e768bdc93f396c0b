//! tollgate: a telecom usage rating and billing daemon.
//!
//! Code map (data flows top to bottom):
//!
//! | module        | owns                                                                |
//! |---------------|---------------------------------------------------------------------|
//! | [`config`]    | the TOML configuration, validated once into [`config::Config`]       |
//! | [`spool`]     | inbox → work → done / failed, rejects files                          |
//! | [`cdr`]       | zero-copy CSV line splitting, RFC 3339 times, number normalization  |
//! | [`tariff`]    | plans and decks → rkyv archive → mmap'd validated table → lookup     |
//! | [`accounts`]  | the accounts CSV and the dense account index                         |
//! | [`rating`]    | the checks, bands, row choice and charge of one record               |
//! | [`money`]     | fixed-point money and every rounding point                           |
//! | [`pipeline`]  | a file on the crossbeam worker pool: chunks, totals, duplicates      |
//! | [`totals`]    | the prefetching open-addressing table a worker sums a file into      |
//! | [`ledger`]    | RocksDB: checkpoints, unbilled usage, invoices, closes (one batch each) |
//! | [`engine`]    | one file from bytes to a committed checkpoint (shared by run/ingest) |
//! | [`billing`]   | cycle close, numbering, credit notes, final invoices, invoice JSON   |
//! | [`pdf`]       | the invoice PDF in the customer's language (hand-written PDF 1.4)    |
//! | [`ubl`]       | UBL 2.1 Invoice / CreditNote (EN 16931, Peppol BIS 3.0) beside the JSON |
//! | [`vat`]       | VAT category and rate per customer and line, the VAT breakdown       |
//! | [`daemon`]    | tokio: spool watcher, HTTP, signals; the file processor thread       |
//! | [`http`]      | `/metrics`, `/healthz`, `/readyz`                                    |
//! | [`telemetry`] | metric names and the Prometheus recorder                             |
//! | [`demo`]      | `tollgate demo`: the embedded end-to-end run                          |
//! | [`synth`]     | deterministic synthetic tariffs, accounts and CDRs                   |

pub mod accounts;
pub mod billing;
pub mod cdr;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod engine;
pub mod fsutil;
pub mod http;
pub mod ledger;
pub mod money;
pub mod pdf;
pub mod pipeline;
pub mod rating;
pub mod spool;
pub mod synth;
pub mod tariff;
pub mod telemetry;
pub mod totals;
pub mod ubl;
pub mod vat;
