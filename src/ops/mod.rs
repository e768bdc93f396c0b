//! Operating the daemon: the tokio runtime's tasks, HTTP (`/metrics`, health, the
//! `/api/v1` router), API tokens, the dashboard and the reports.

pub mod api;
pub mod auth;
pub mod daemon;
pub mod dashboard;
pub mod http;
pub mod report;
pub mod selfservice;
