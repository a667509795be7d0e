//! The seed's maintenance functions and partition upkeep, run as the owner role across tenants.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{Result, Store};

/// Memories one cleanup transaction handles at most.
pub const CLEANUP_BATCH: i32 = 1000;

impl Store {
    /// Creates the monthly partitions of `audit_log` and `performance_metrics` up to
    /// `months_ahead` months ahead; returns how many it created.
    pub async fn create_time_partitions(&self, months_ahead: i32) -> Result<i32> {
        Ok(sqlx::query_scalar("SELECT create_time_partitions($1)")
            .bind(months_ahead)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Retires every tenant's expired memories (and those past their retention policy's
    /// `retention_days`) as the policies say, like the seed's `clean_expired_memories()`, but in
    /// transactions of [`CLEANUP_BATCH`] memories found through the indexes, each skipping rows
    /// another transaction holds: no lock outlives a batch, and a memory being updated is left for
    /// the next run. Returns how many memories left `contextual_memories`.
    pub async fn clean_expired_memories(&self) -> Result<i64> {
        type Batch = (i32, i32, Option<DateTime<Utc>>, Option<Uuid>, Option<Uuid>);
        let mut total = 0i64;
        let mut after: (Option<DateTime<Utc>>, Option<Uuid>, Option<Uuid>) = (None, None, None);
        loop {
            let (scanned, retired, at, tenant, id): Batch =
                sqlx::query_as("SELECT * FROM mnemo_clean_expired_batch($1, $2, $3, $4)")
                    .bind(CLEANUP_BATCH)
                    .bind(after.0)
                    .bind(after.1)
                    .bind(after.2)
                    .fetch_one(&self.pool)
                    .await?;
            total += i64::from(retired);
            if scanned < CLEANUP_BATCH {
                break;
            }
            after = (at, tenant, id);
        }
        loop {
            let retired: i32 = sqlx::query_scalar("SELECT mnemo_clean_aged_batch($1)")
                .bind(CLEANUP_BATCH)
                .fetch_one(&self.pool)
                .await?;
            total += i64::from(retired);
            if retired == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// The seed's `archive_old_audit_logs(days)`: every audit row older than `days` days moves to
    /// `audit_log_archive` (whole monthly partitions without copying, the rest row by row).
    pub async fn archive_old_audit_logs(&self, days: i32) -> Result<i32> {
        Ok(sqlx::query_scalar("SELECT archive_old_audit_logs($1)")
            .bind(days)
            .fetch_one(&self.pool)
            .await?)
    }

    /// What the maintenance job runs: archives the audit months (UTC) all of whose rows are older
    /// than `days` days, which moves whole partitions only. Returns how many rows moved.
    pub async fn archive_audit_months(&self, days: i32) -> Result<i32> {
        Ok(sqlx::query_scalar("SELECT mnemo_archive_audit_months($1)")
            .bind(days)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Refreshes `tenant_memory_analytics` (concurrently) and `tenant_daily_activity` (from its
    /// watermark: about the last two days).
    pub async fn refresh_analytics_views(&self) -> Result<()> {
        sqlx::query("SELECT refresh_analytics_views()")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
