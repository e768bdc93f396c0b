//! The integration tests, in one binary so that RocksDB and the crate are linked once.
//! One module per area; `common` holds the helpers they share. Run one area with a
//! filter: `cargo test --release --test it -- ops::`.

mod common;

mod allowances;
mod api;
mod api_fuzz;
mod architecture;
mod card;
mod crash;
mod dedup;
mod delivery;
mod e2e;
mod golden;
mod invoices;
mod ops;
mod payments;
mod pdf;
mod psp;
mod reference;
mod reload;
mod rerate;
mod samples;
mod selfservice;
