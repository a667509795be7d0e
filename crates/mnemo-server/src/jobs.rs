//! Background upkeep (and the federated deadline job), as plain functions: the server's loops call them, and so does
//! `POST /v1/admin/maintenance` (and tests) to run them now.

use serde::Serialize;
use utoipa::ToSchema;

use mnemo_store::search::{IndexReport, VectorIndexPolicy};
use mnemo_store::usage::ReconcileReport;
use mnemo_store::Store;

use crate::state::Limits;

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct MaintenanceReport {
    pub partitions_created: Option<i32>,
    pub expired_memories_removed: Option<i64>,
    /// Audit rows moved to `audit_log_archive` (whole months older than the configured days).
    pub audit_rows_archived: Option<i32>,
    pub analytics_refreshed: bool,
    /// Usage counters recomputed from the rows; `corrected` lists tenants whose counters were off.
    pub usage_reconciled: Option<ReconcileReport>,
    pub vector_indexes: Option<IndexReport>,
    /// Federated sessions failed because their deadline passed.
    pub federated_sessions_expired: Option<i64>,
    /// Steps that failed, with their errors; the other steps still ran.
    pub errors: Vec<String>,
}

/// Partitions ahead, expired memories, audit archival, analytics, usage counters.
pub async fn housekeeping(store: &Store, limits: &Limits, report: &mut MaintenanceReport) {
    match store.create_time_partitions(3).await {
        Ok(n) => report.partitions_created = Some(n),
        Err(e) => report.errors.push(format!("create_time_partitions: {e}")),
    }
    match store.clean_expired_memories().await {
        Ok(n) => report.expired_memories_removed = Some(n),
        Err(e) => report.errors.push(format!("clean_expired_memories: {e}")),
    }
    match store.archive_audit_months(limits.audit_archive_days).await {
        Ok(n) => report.audit_rows_archived = Some(n),
        Err(e) => report.errors.push(format!("archive audit logs: {e}")),
    }
    match store.refresh_analytics_views().await {
        Ok(()) => report.analytics_refreshed = true,
        Err(e) => report.errors.push(format!("refresh_analytics_views: {e}")),
    }
    match store.reconcile_usage().await {
        Ok(r) => {
            if !r.corrected.is_empty() {
                tracing::warn!(tenants = ?r.corrected, "usage counters were off and are corrected");
            }
            report.usage_reconciled = Some(r);
        }
        Err(e) => report.errors.push(format!("reconcile usage: {e}")),
    }
}

/// Builds the HNSW indexes of tenants that crossed the threshold.
pub async fn vector_indexes(store: &Store, limits: &Limits, report: &mut MaintenanceReport) {
    let policy = VectorIndexPolicy {
        min_rows: limits.vector_index_min_rows,
        max_builds_per_run: 4,
    };
    match store.maintain_vector_indexes(policy).await {
        Ok(r) => report.vector_indexes = Some(r),
        Err(e) => report.errors.push(format!("vector indexes: {e}")),
    }
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
    federated_deadlines(store, &mut report).await;
    vector_indexes(store, limits, &mut report).await;
    for e in &report.errors {
        tracing::warn!(error = %e, "maintenance step failed");
    }
    tracing::info!(?report, "maintenance run done");
    report
}
