//! Background upkeep (and the federated deadline job), as plain functions: the server's loops call them, and so does
//! `POST /v1/admin/maintenance` (and tests) to run them now.

use std::time::{Instant, SystemTime};

use serde::Serialize;
use utoipa::ToSchema;

use mnemo_store::health::MetricSample;
use mnemo_store::retention::CleanupReport;
use mnemo_store::search::{IndexReport, VectorIndexPolicy};
use mnemo_store::usage::ReconcileReport;
use mnemo_store::Store;

use crate::state::{AppState, Limits};
use crate::telemetry::{job_finished, last_successes, retention_applied};

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct MaintenanceReport {
    pub partitions_created: Option<i32>,
    /// Memories the cleanup removed (expired, and due under their tenant's retention policy).
    pub expired_memories_removed: Option<i64>,
    /// Expired offloaded contexts removed, with their chunks.
    pub expired_contexts_removed: Option<i64>,
    /// The cleanup per tenant: what left, and whether it was archived.
    pub retention: Option<CleanupReport>,
    /// Audit rows moved to `audit_log_archive` (whole months older than the configured days).
    pub audit_rows_archived: Option<i32>,
    /// Archived audit months dropped (older than `audit_drop_days`, not kept by a tenant's policy).
    pub audit_partitions_dropped: Option<Vec<String>>,
    /// Months of `performance_metrics` dropped (older than `metrics_retention_days`).
    pub metric_partitions_dropped: Option<Vec<String>>,
    pub analytics_refreshed: bool,
    /// Usage counters recomputed from the rows; `corrected` lists tenants whose counters were off.
    pub usage_reconciled: Option<ReconcileReport>,
    pub vector_indexes: Option<IndexReport>,
    /// Federated sessions failed because their deadline passed.
    pub federated_sessions_expired: Option<i64>,
    /// Steps that failed, with their errors; the other steps still ran.
    pub errors: Vec<String>,
}

/// Expired memories and the tenants' retention policies (`mnemo_store::retention`): tenant by
/// tenant, in batches that lock with `FOR UPDATE SKIP LOCKED`. Its own loop in `mnemo serve`
/// (`--retention-interval-secs`); the per-tenant report goes to the log and to
/// `POST /v1/admin/maintenance`.
pub async fn retention(store: &Store, report: &mut MaintenanceReport) {
    let cleanup = step(
        "expiry",
        "retention cleanup",
        &mut report.errors,
        store.run_cleanup(),
    );
    if let Some(r) = cleanup.await {
        for t in &r.tenants {
            let action = if t.archived { "archive" } else { "delete" };
            retention_applied(t.expired_removed as u64, t.retention_removed as u64, action);
        }
        report.expired_memories_removed = Some(r.total());
        report.retention = Some(r);
    }
}

/// Runs one maintenance step: times it for the job metrics, keeps its error (after `what`) in
/// `errors`, and returns what it returned when it succeeded.
async fn step<T, E: std::fmt::Display>(
    job: &'static str,
    what: &str,
    errors: &mut Vec<String>,
    work: impl std::future::Future<Output = Result<T, E>>,
) -> Option<T> {
    let t = Instant::now();
    let outcome = work.await;
    job_finished(job, t, outcome.is_ok());
    outcome
        .map_err(|e| errors.push(format!("{what}: {e}")))
        .ok()
}

/// Partitions ahead, expired contexts, audit archival, performance history retention, analytics,
/// usage counters.
pub async fn housekeeping(store: &Store, limits: &Limits, report: &mut MaintenanceReport) {
    let errors = &mut report.errors;
    report.partitions_created = step(
        "partitions",
        "create_time_partitions",
        errors,
        store.create_time_partitions(3),
    )
    .await;
    report.expired_contexts_removed = step(
        "context_expiry",
        "clean_expired_contexts",
        errors,
        store.clean_expired_contexts(),
    )
    .await;
    report.audit_rows_archived = step(
        "audit_archive",
        "archive audit logs",
        errors,
        store.archive_audit_months(limits.audit_archive_days),
    )
    .await;
    if let Some(days) = limits.audit_drop_days {
        let dropped = step(
            "audit_drop",
            "drop archived audit months",
            errors,
            store.drop_audit_months(days),
        )
        .await;
        if let Some(dropped) = &dropped {
            if !dropped.is_empty() {
                tracing::info!(?dropped, "archived audit months dropped");
            }
        }
        report.audit_partitions_dropped = dropped;
    }
    let dropped = step(
        "metrics_retention",
        "drop performance_metrics months",
        errors,
        store.drop_metric_months(limits.metrics_retention_days),
    )
    .await;
    if let Some(dropped) = &dropped {
        if !dropped.is_empty() {
            tracing::info!(?dropped, "performance history months dropped");
        }
    }
    report.metric_partitions_dropped = dropped;
    report.analytics_refreshed = step(
        "analytics",
        "refresh_analytics_views",
        errors,
        store.refresh_analytics_views(),
    )
    .await
    .is_some();
    let reconciled = step(
        "usage_reconcile",
        "reconcile usage",
        errors,
        store.reconcile_usage(),
    )
    .await;
    if let Some(r) = &reconciled {
        if !r.corrected.is_empty() {
            tracing::warn!(tenants = ?r.corrected, "usage counters were off and are corrected");
        }
    }
    report.usage_reconciled = reconciled;
}

/// Builds the HNSW indexes (memories, context chunks) of tenants that crossed the threshold.
pub async fn vector_indexes(store: &Store, limits: &Limits, report: &mut MaintenanceReport) {
    let policy = VectorIndexPolicy {
        min_rows: limits.vector_index_min_rows,
        max_builds_per_run: 4,
    };
    report.vector_indexes = step(
        "vector_indexes",
        "vector indexes",
        &mut report.errors,
        store.maintain_vector_indexes(policy),
    )
    .await;
}

/// Fails federated sessions whose deadline passed (too few participants, or nobody aggregated),
/// deleting their contributions.
pub async fn federated_deadlines(store: &Store, report: &mut MaintenanceReport) {
    match store.expire_federated_sessions().await {
        Ok(n) => report.federated_sessions_expired = Some(n),
        Err(e) => report.errors.push(format!("federated deadlines: {e}")),
    }
}

pub async fn run_all(store: &Store, limits: &Limits) -> MaintenanceReport {
    let mut report = MaintenanceReport::default();
    housekeeping(store, limits, &mut report).await;
    retention(store, &mut report).await;
    federated_deadlines(store, &mut report).await;
    vector_indexes(store, limits, &mut report).await;
    for e in &report.errors {
        tracing::warn!(error = %e, "maintenance step failed");
    }
    tracing::info!(?report, "maintenance run done");
    report
}

/// What one health sample logged.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct HealthSampleReport {
    /// Rows written to `performance_metrics`.
    pub rows: u64,
    /// Operations with requests since the previous sample.
    pub operations: usize,
}

/// Logs, through `log_performance_metric`, the requests since the previous sample per operation
/// (`request` count, `error` count of 5xx answers, `latency_p50/p95/p99` in ms), the pool and the
/// database figures (`system` rows) and how long ago each job step last succeeded (`job_lag`).
/// `mnemo serve` runs it every minute; `system_health` and `system_performance_summary` read it.
pub async fn sample_health(state: &AppState) -> Result<HealthSampleReport, String> {
    let started = Instant::now();
    let result = sample_health_inner(state).await;
    job_finished("health_sample", started, result.is_ok());
    result
}

async fn sample_health_inner(state: &AppState) -> Result<HealthSampleReport, String> {
    let windows = state.op_windows.take();
    let mut samples = Vec::new();
    let metric = |metric_type, name: &str, value: f64, unit| MetricSample {
        metric_type,
        metric_name: name.to_owned(),
        value,
        unit,
    };
    for (operation, window) in &windows {
        samples.push(metric("request", operation, window.count() as f64, "count"));
        if window.errors() > 0 {
            samples.push(metric("error", operation, window.errors() as f64, "count"));
        }
        if let Some(p) = window.percentiles(&[0.5, 0.95, 0.99]) {
            for (kind, v) in ["latency_p50", "latency_p95", "latency_p99"]
                .into_iter()
                .zip(p)
            {
                samples.push(metric(kind, operation, v, "ms"));
            }
        }
    }
    let pool = state.store.pool();
    samples.push(metric(
        "system",
        "pool_size",
        f64::from(pool.size()),
        "count",
    ));
    let in_use = f64::from(pool.size()) - pool.num_idle() as f64;
    samples.push(metric("system", "pool_in_use", in_use.max(0.0), "count"));
    let db = state
        .store
        .database_figures()
        .await
        .map_err(|e| format!("database figures: {e}"))?;
    samples.push(metric(
        "system",
        "connections",
        db.connections as f64,
        "count",
    ));
    if let Some(r) = db.cache_hit_ratio {
        samples.push(metric("system", "cache_hit_ratio", r, "ratio"));
    }
    samples.push(metric(
        "system",
        "database_bytes",
        db.database_bytes as f64,
        "bytes",
    ));
    samples.push(metric(
        "system",
        "dead_tuples",
        db.dead_tuples as f64,
        "count",
    ));
    samples.push(metric(
        "system",
        "active_tenants",
        db.active_tenants as f64,
        "count",
    ));
    if let Some(lag) = db.replication_lag_seconds {
        samples.push(metric("system", "replication_lag_seconds", lag, "seconds"));
    }
    let now = SystemTime::now();
    for (job, at) in last_successes() {
        let age = now
            .duration_since(at)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        samples.push(metric("job_lag", job, age, "seconds"));
    }
    let rows = state
        .store
        .log_performance_metrics(&samples)
        .await
        .map_err(|e| format!("log_performance_metric: {e}"))?;
    Ok(HealthSampleReport {
        rows,
        operations: windows.len(),
    })
}
