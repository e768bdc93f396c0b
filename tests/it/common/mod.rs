//! Helpers shared by the integration tests, by concern: workspaces ([`workspace`]), the
//! real `tollgate` binary as a daemon or a one-shot command ([`daemon`]), HTTP to the
//! daemon ([`http`]), a Prometheus text parser ([`metrics`]), rejects files and invoice
//! sums ([`rejects`]), outside tools that must be there or skip visibly ([`tools`]), a
//! real SMTP server (aiosmtpd) whose messages the tests read ([`mailbox`]).
#![allow(dead_code)]

pub mod daemon;
pub mod http;
pub mod mailbox;
pub mod metrics;
pub mod rejects;
pub mod tools;
pub mod workspace;

pub use daemon::*;
pub use http::*;
pub use rejects::*;
pub use workspace::*;
