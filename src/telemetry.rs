//! Metric names (all in one place) and the Prometheus recorder.
//!
//! Metrics are emitted once per file or chunk, never per record. Two counters hold
//! fractional seconds, which the `metrics` crate's integer counters cannot: they are kept
//! in atomics here and appended to the scrape by [`render`].

use std::sync::atomic::{AtomicU64, Ordering};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// `outcome` = rated, or rejected with a `reason` label.
pub const RECORDS: &str = "tollgate_records_total";
pub const FILES: &str = "tollgate_files_total";
pub const BYTES: &str = "tollgate_ingested_bytes_total";
pub const FILE_SECONDS: &str = "tollgate_file_processing_seconds";
pub const CHUNK_SECONDS: &str = "tollgate_chunk_processing_seconds";
pub const BACKLOG_FILES: &str = "tollgate_spool_backlog_files";
pub const BACKLOG_BYTES: &str = "tollgate_spool_backlog_bytes";
pub const OLDEST_AGE: &str = "tollgate_spool_oldest_file_age_seconds";
pub const CHARGED: &str = "tollgate_rated_charge_micros_total";
pub const CLOSE_SECONDS: &str = "tollgate_cycle_close_seconds";
pub const INVOICES: &str = "tollgate_invoices_issued_total";
pub const CREDIT_NOTES: &str = "tollgate_credit_notes_issued_total";
pub const TARIFF_INFO: &str = "tollgate_tariff_info";
pub const RELOADS: &str = "tollgate_reference_reloads_total";
pub const LAST_CLOSE: &str = "tollgate_last_cycle_close_timestamp_seconds";
pub const LAST_FILE: &str = "tollgate_last_file_timestamp_seconds";
pub const DEDUP_IDS: &str = "tollgate_dedup_ids";
pub const DEDUP_BYTES: &str = "tollgate_dedup_filter_bytes";
pub const DB_SIZE: &str = "tollgate_rocksdb_size_bytes";
pub const DB_STALL: &str = "tollgate_rocksdb_write_stall_seconds_total";
pub const DB_PENDING_COMPACTION: &str = "tollgate_rocksdb_pending_compaction_bytes";
pub const DB_RUNNING_COMPACTIONS: &str = "tollgate_rocksdb_running_compactions";
pub const WORKERS: &str = "tollgate_workers";
pub const WORKER_BUSY: &str = "tollgate_worker_busy_seconds_total";
pub const WORKER_UTILIZATION: &str = "tollgate_worker_utilization_ratio";
/// Document deliveries (docs/delivery.md), per attempt, label `channel` (`email`,
/// `peppol`): accepted by the server / written into the Peppol folder.
pub const DELIVERY_SENT: &str = "tollgate_delivery_sent_total";
/// Attempts that failed (refused, no connection, TLS or authentication failure).
pub const DELIVERY_FAILED: &str = "tollgate_delivery_failed_total";
/// Attempts whose outcome is unknown (connection lost after DATA, or a process that
/// died while sending): not retried without `bills resend`.
pub const DELIVERY_INTERRUPTED: &str = "tollgate_delivery_interrupted_total";
/// Documents not delivered yet: queued, or failed with a retry to come (after each run).
pub const DELIVERY_QUEUED: &str = "tollgate_delivery_queued_documents";
/// Age of the oldest of those, since it was queued (0 when none).
pub const DELIVERY_OLDEST_AGE: &str = "tollgate_delivery_oldest_queued_age_seconds";
/// Documents whose latest delivery failed for good or was interrupted: the operator
/// checks and uses `bills resend`.
pub const DELIVERY_NEEDS_OPERATOR: &str = "tollgate_delivery_needs_operator_documents";

/// Nanoseconds rating threads spent on chunks (added once per chunk).
pub static WORKER_BUSY_NANOS: AtomicU64 = AtomicU64::new(0);
/// RocksDB's cumulative write stall time in microseconds (refreshed by the daemon's upkeep).
pub static DB_STALL_MICROS: AtomicU64 = AtomicU64::new(0);

/// The Prometheus text of a scrape: the recorder's metrics plus the float counters.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut s = handle.render();
    let busy = WORKER_BUSY_NANOS.load(Ordering::Relaxed) as f64 / 1e9;
    let stall = DB_STALL_MICROS.load(Ordering::Relaxed) as f64 / 1e6;
    for (name, help, v) in [
        (
            WORKER_BUSY,
            "seconds rating threads spent rating chunks",
            busy,
        ),
        (
            DB_STALL,
            "cumulative time RocksDB delayed or stopped writes",
            stall,
        ),
    ] {
        s.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n\n"
        ));
    }
    s
}

/// Installs the global Prometheus recorder (once per process) and describes every metric.
pub fn install() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ];
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(FILE_SECONDS.into()), &buckets)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(CHUNK_SECONDS.into()), &buckets)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(CLOSE_SECONDS.into()), &buckets)
                })
                .expect("bucket lists are not empty")
                .install_recorder()
                .expect("one Prometheus recorder per process");
            describe();
            // Register every series at zero so rates and alerts work from the first scrape.
            metrics::counter!(RECORDS, "outcome" => "rated").absolute(0);
            for r in crate::rate::rating::Reason::ALL {
                metrics::counter!(RECORDS, "outcome" => "rejected", "reason" => r.code())
                    .absolute(0);
            }
            for outcome in ["done", "failed", "duplicate"] {
                metrics::counter!(FILES, "outcome" => outcome).absolute(0);
            }
            metrics::counter!(BYTES).absolute(0);
            metrics::counter!(CHARGED).absolute(0);
            metrics::counter!(INVOICES).absolute(0);
            metrics::counter!(CREDIT_NOTES).absolute(0);
            for outcome in ["ok", "error"] {
                metrics::counter!(RELOADS, "outcome" => outcome).absolute(0);
            }
            for channel in ["email", "peppol"] {
                for name in [DELIVERY_SENT, DELIVERY_FAILED, DELIVERY_INTERRUPTED] {
                    metrics::counter!(name, "channel" => channel).absolute(0);
                }
            }
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        RECORDS,
        Unit::Count,
        "CDR records by outcome (rated, rejected) and reject reason"
    );
    describe_counter!(
        FILES,
        Unit::Count,
        "CDR files finished, by outcome (done, failed, duplicate)"
    );
    describe_counter!(BYTES, Unit::Bytes, "bytes of CDR files rated");
    describe_histogram!(
        FILE_SECONDS,
        Unit::Seconds,
        "time to rate and commit one file"
    );
    describe_histogram!(
        CHUNK_SECONDS,
        Unit::Seconds,
        "time for a worker to rate one chunk"
    );
    describe_gauge!(
        BACKLOG_FILES,
        Unit::Count,
        "files waiting in the spool inbox"
    );
    describe_gauge!(
        BACKLOG_BYTES,
        Unit::Bytes,
        "bytes waiting in the spool inbox"
    );
    describe_gauge!(
        OLDEST_AGE,
        Unit::Seconds,
        "age of the oldest file waiting in the inbox"
    );
    describe_counter!(
        CHARGED,
        Unit::Count,
        "sum of rated charges in micro currency units"
    );
    describe_histogram!(CLOSE_SECONDS, Unit::Seconds, "duration of cycle closes");
    describe_counter!(
        INVOICES,
        Unit::Count,
        "invoices issued by this process (cycle closes, final invoices, reissues)"
    );
    describe_counter!(
        CREDIT_NOTES,
        Unit::Count,
        "credit notes issued by this process"
    );
    describe_gauge!(
        TARIFF_INFO,
        Unit::Count,
        "the tariff version in service (label version)"
    );
    describe_gauge!(
        LAST_CLOSE,
        Unit::Seconds,
        "Unix time of the last cycle close committed by this process"
    );
    describe_gauge!(
        LAST_FILE,
        Unit::Seconds,
        "Unix time the last file was committed"
    );
    describe_gauge!(
        DB_SIZE,
        Unit::Bytes,
        "RocksDB size: SST files plus memtables, all column families"
    );
    describe_gauge!(
        DB_PENDING_COMPACTION,
        Unit::Bytes,
        "RocksDB's estimate of the bytes compactions still have to rewrite, all column families"
    );
    describe_gauge!(
        DB_RUNNING_COMPACTIONS,
        Unit::Count,
        "RocksDB compactions running now"
    );
    describe_gauge!(WORKERS, Unit::Count, "rating threads");
    describe_gauge!(
        DEDUP_IDS,
        Unit::Count,
        "record ids held by the cross-file duplicate filter"
    );
    describe_gauge!(
        DEDUP_BYTES,
        Unit::Bytes,
        "memory of the cross-file duplicate filter"
    );
    describe_gauge!(
        WORKER_UTILIZATION,
        Unit::Count,
        "share of the rating threads' time spent rating over the last 5 s (0 to 1)"
    );
    describe_counter!(
        RELOADS,
        Unit::Count,
        "reloads of tariff and accounts, by outcome (ok, error)"
    );
    describe_counter!(
        DELIVERY_SENT,
        Unit::Count,
        "document deliveries accepted by the mail server or written to the Peppol folder, by channel"
    );
    describe_counter!(
        DELIVERY_FAILED,
        Unit::Count,
        "document delivery attempts that failed (retried with back-off up to max_attempts), by channel"
    );
    describe_counter!(
        DELIVERY_INTERRUPTED,
        Unit::Count,
        "document delivery attempts with an unknown outcome (not retried without bills resend), by channel"
    );
    describe_gauge!(
        DELIVERY_QUEUED,
        Unit::Count,
        "documents waiting for delivery: queued or failed with a retry to come"
    );
    describe_gauge!(
        DELIVERY_OLDEST_AGE,
        Unit::Seconds,
        "time the oldest document waiting for delivery has waited since it was queued"
    );
    describe_gauge!(
        DELIVERY_NEEDS_OPERATOR,
        Unit::Count,
        "documents whose latest delivery failed for good or was interrupted"
    );
}
