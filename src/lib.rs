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
//! | [`auth`]      | API bearer tokens: the tokens file, `token add`, constant-time check  |
//! | [`rating`]    | the checks, bands, row choice and charge of one record               |
//! | [`money`]     | fixed-point money and every rounding point                           |
//! | [`pipeline`]  | a file on the crossbeam worker pool: chunks, totals, duplicates      |
//! | [`totals`]    | the prefetching open-addressing table a worker sums a file into      |
//! | [`ledger`]    | RocksDB: checkpoints, unbilled usage, invoices, closes (one batch each) |
//! | [`engine`]    | one file from bytes to a committed checkpoint (shared by run/ingest) |
//! | [`billing`]   | cycle close, numbering, credit notes, final invoices, invoice JSON   |
//! | [`itemise`]   | a close's rated detail re-derived: itemised annexes, usage per day   |
//! | [`privacy`]   | dispute-window erasure, `privacy erase` / `privacy export`           |
//! | [`payments`]  | payments ledger: entries, derived balances, camt import, collect     |
//! | [`camt`]      | camt.053 / camt.054 bank messages → transactions                     |
//! | [`sepa`]      | IBAN, payment reference, EPC QR, pain.008 writer                     |
//! | [`dunning`]   | reminders, 14-day letter, late fees, the notification outbox         |
//! | [`report`]    | `tollgate report`: usage, revenue, rejects as CSV, JSON, HTML + SVG |
//! | [`dashboard`] | the live page at `/` and `GET /api/v1/dashboard`, throughput history |
//! | [`pdf`]       | the invoice PDF in the customer's language (hand-written PDF 1.4)    |
//! | [`ubl`]       | UBL 2.1 Invoice / CreditNote (EN 16931, Peppol BIS 3.0) beside the JSON |
//! | [`vat`]       | VAT category and rate per customer and line, the VAT breakdown       |
//! | [`daemon`]    | tokio: spool watcher, HTTP, signals; the file processor thread       |
//! | [`http`]      | `/metrics`, `/healthz`, `/readyz`                                    |
//! | [`api`]       | `/api/v1` (auth, OpenAPI), the operations it shares with the CLI     |
//! | [`telemetry`] | metric names and the Prometheus recorder                             |
//! | [`demo`]      | `tollgate demo`: the embedded end-to-end run                          |
//! | [`synth`]     | deterministic synthetic tariffs, accounts and CDRs                   |

pub mod accounts;
pub mod api;
pub mod auth;
pub mod billing;
pub mod camt;
pub mod cdr;
pub mod config;
pub mod daemon;
pub mod dashboard;
pub mod demo;
pub mod dunning;
pub mod engine;
pub mod fsutil;
pub mod hint;
pub mod http;
pub mod itemise;
pub mod ledger;
pub mod money;
pub mod payments;
pub mod pdf;
pub mod pipeline;
pub mod privacy;
pub mod rating;
pub mod report;
pub mod sepa;
pub mod spool;
pub mod synth;
pub mod tariff;
pub mod telemetry;
pub mod totals;
pub mod ubl;
pub mod vat;
