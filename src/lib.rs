//! tollgate: a telecom usage rating and billing daemon.
//!
//! The folders are the architecture; data flows top to bottom (see ARCHITECTURE.md for
//! the code map with its "must not" column and the invariants):
//!
//! | module          | owns                                                                  |
//! |-----------------|-----------------------------------------------------------------------|
//! | [`rate`]        | the pure core: money, CDR scanning, tariffs, account index, rating    |
//! | [`ingest`]      | spool, worker pool, per-file totals, one file to a committed checkpoint |
//! | [`store`]       | RocksDB: column families, keys, encodings, merge operators, batches   |
//! | [`billing`]     | the document model, close / credit / reissue / final, VAT, documents  |
//! | [`payments`]    | entries and their derivation, bank files, collection, dunning, outbox |
//! | [`ops`]         | the daemon, HTTP API, auth, dashboard, reports                        |
//! | [`cli`]         | the command line: clap types, the operations interface, printing      |
//! | [`config`]      | the TOML configuration, validated once into [`config::Config`]        |
//! | [`telemetry`]   | metric names and the Prometheus recorder (a leaf every layer may use) |
//! | [`fsutil`]      | atomic file writes, directory fsync                                   |
//! | [`demo`]        | `tollgate demo` and the deterministic synthetic data generator        |

pub mod billing;
pub mod cli;
pub mod config;
pub mod demo;
pub mod fsutil;
pub mod ingest;
pub mod ops;
pub mod payments;
pub mod rate;
pub mod store;
pub mod telemetry;
