//! One CDR file from the spool to a committed checkpoint: the spool folders, the
//! worker pool that rates a mapped file, the per-file totals, and the engine that ties
//! them to the store's one WriteBatch.

pub mod dedup;
pub mod engine;
pub mod live;
pub mod pipeline;
pub mod spool;
pub mod totals;
