//! Health and performance history: the samples the service logs every minute into
//! `performance_metrics` (through the seed's `log_performance_metric`), the live figures of the
//! database they include, the `system_health` view over them, and one tenant's usage for the
//! admin. All of it runs as the owner role, across tenants.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use uuid::Uuid;

use crate::usage::Counters;
use crate::{Result, Store, StoreError};

/// One row for `performance_metrics` (tenant-less: the figures are the system's).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// `request`, `error`, `latency_p50`, `latency_p95`, `latency_p99`, `system` or `job_lag`.
    pub metric_type: &'static str,
    /// The operation (`GET /v1/memories/{memory_id}`), the system figure or the job.
    pub metric_name: String,
    pub value: f64,
    /// `count`, `ms`, `ratio`, `bytes` or `seconds`.
    pub unit: &'static str,
}

/// The database's figures at one instant.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct DatabaseFigures {
    /// Connections to this database (every client, not only this server's pool).
    pub connections: i64,
    /// Share of block reads served from shared buffers since the statistics were reset.
    pub cache_hit_ratio: Option<f64>,
    pub database_bytes: i64,
    /// Dead tuples over every table (what autovacuum has yet to reclaim).
    pub dead_tuples: i64,
    /// Tenants with an audited request in the last minute.
    pub active_tenants: i64,
    /// The largest replay lag of a connected standby; `None` without one.
    pub replication_lag_seconds: Option<f64>,
}

/// One minute of `system_health`.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct HealthMinute {
    pub timestamp: DateTime<Utc>,
    pub status: String,
    pub request_count: i64,
    pub error_count: i64,
    pub avg_latency_ms: Option<f64>,
    pub p99_latency_ms: Option<f64>,
    pub active_tenants: i64,
    pub pool_size: Option<f64>,
    pub pool_in_use: Option<f64>,
    pub connections: Option<f64>,
    pub cache_hit_ratio: Option<f64>,
    pub database_bytes: Option<f64>,
    pub dead_tuples: Option<f64>,
    pub max_job_lag_seconds: Option<f64>,
    pub replication_lag_seconds: Option<f64>,
}

/// A tenant's usage as the admin sees it: its counters with quotas, and its audited operations
/// per day (from `tenant_daily_activity`, as of the last refresh).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TenantUsage {
    pub tenant_id: String,
    pub counters: Counters,
    pub storage_bytes: i64,
    pub daily_activity: Vec<DailyActivity>,
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct DailyActivity {
    pub day: chrono::NaiveDate,
    pub action: String,
    pub outcome: String,
    pub operations: i64,
}

impl Store {
    /// Logs `samples` through `log_performance_metric`, in one statement; returns how many.
    pub async fn log_performance_metrics(&self, samples: &[MetricSample]) -> Result<u64> {
        if samples.is_empty() {
            return Ok(0);
        }
        let types: Vec<&str> = samples.iter().map(|s| s.metric_type).collect();
        let names: Vec<&str> = samples.iter().map(|s| s.metric_name.as_str()).collect();
        let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
        let units: Vec<&str> = samples.iter().map(|s| s.unit).collect();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(log_performance_metric(NULL, t, n, v, u))
             FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[]) AS x(t, n, v, u)
             WHERE v = v AND v NOT IN ('Infinity', '-Infinity')",
        )
        .bind(&types)
        .bind(&names)
        .bind(&values)
        .bind(&units)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Drops the monthly partitions of `performance_metrics` all of whose rows are older than
    /// `days` days (whole partitions, never single rows; a partition busy for 5 s waits for the
    /// next run). Returns the partitions dropped.
    pub async fn drop_metric_months(&self, days: i32) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT mnemo_drop_metric_months($1)")
            .bind(days)
            .fetch_one(&self.pool)
            .await?)
    }

    /// The database's figures now (statistics views; cheap).
    pub async fn database_figures(&self) -> Result<DatabaseFigures> {
        Ok(sqlx::query_as(
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()) AS connections,
                    (SELECT blks_hit::float8 / nullif(blks_hit + blks_read, 0)
                     FROM pg_stat_database WHERE datname = current_database()) AS cache_hit_ratio,
                    pg_database_size(current_database()) AS database_bytes,
                    (SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_all_tables) AS dead_tuples,
                    (SELECT count(DISTINCT tenant_id) FROM audit_log
                     WHERE created_at > now() - interval '1 minute') AS active_tenants,
                    (SELECT extract(epoch FROM max(replay_lag))::float8 FROM pg_stat_replication)
                        AS replication_lag_seconds",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// `system_health` from `since` on, oldest first.
    pub async fn health_history(&self, since: DateTime<Utc>) -> Result<Vec<HealthMinute>> {
        Ok(sqlx::query_as(
            "SELECT \"timestamp\", status, request_count, error_count, avg_latency_ms, p99_latency_ms,
                    active_tenants, pool_size, pool_in_use, connections, cache_hit_ratio, database_bytes,
                    dead_tuples, max_job_lag_seconds, replication_lag_seconds
             FROM system_health WHERE \"timestamp\" >= date_trunc('minute', $1::timestamptz)
             ORDER BY 1",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The usage of the tenant `tenant_id` (its external id), with its activity of the last
    /// `days` days.
    pub async fn tenant_usage(&self, tenant_id: &str, days: i32) -> Result<TenantUsage> {
        let id: Uuid = sqlx::query_scalar("SELECT id FROM tenants WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("tenant"))?;
        let counters: Counters = sqlx::query_as(
            "SELECT coalesce(u.memories, 0) AS memories, coalesce(u.content_bytes, 0) AS content_bytes,
                    coalesce(u.embedded, 0) AS embedded, coalesce(u.relationships, 0) AS relationships,
                    coalesce(u.relationship_bytes, 0) AS relationship_bytes,
                    coalesce(u.contexts, 0) AS contexts, coalesce(u.context_bytes, 0) AS context_bytes,
                    t.max_memories, t.max_storage_bytes
             FROM tenants t LEFT JOIN tenant_usage u ON u.tenant_id = t.id WHERE t.id = $1",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        let daily_activity = sqlx::query_as(
            "SELECT day, action, outcome, operations FROM tenant_daily_activity
             WHERE tenant_id = $1 AND day >= (now() AT TIME ZONE 'UTC')::date - $2
             ORDER BY day DESC, action, outcome",
        )
        .bind(id)
        .bind(days)
        .fetch_all(&self.pool)
        .await?;
        Ok(TenantUsage {
            tenant_id: tenant_id.to_owned(),
            storage_bytes: counters.storage_bytes(),
            counters,
            daily_activity,
        })
    }
}
