//! The pure rating core: money and its rounding points, CDR line scanning, times and
//! numbers, the tariff (source model and compiled table), the account index, and the
//! rating of one record.
//!
//! Nothing here does storage, async, HTTP or metrics: it takes bytes and tables and
//! writes into caller-owned buffers, so it could become its own crate unchanged (a test
//! guards that no module under `rate/` names another top-level module of this crate).

pub mod accounts;
pub mod cdr;
pub mod hint;
pub mod iban;
pub mod money;
pub mod rating;
pub mod service;
pub mod tariff;
