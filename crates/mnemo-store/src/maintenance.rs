//! The seed's maintenance functions and partition upkeep, run as the owner role across tenants
//! (the expiry and retention cleanup is in [`crate::retention`]).

use crate::{Result, Store};

impl Store {
    /// Creates the monthly partitions of `audit_log` and `performance_metrics` up to
    /// `months_ahead` months ahead; returns how many it created.
    pub async fn create_time_partitions(&self, months_ahead: i32) -> Result<i32> {
        Ok(sqlx::query_scalar("SELECT create_time_partitions($1)")
            .bind(months_ahead)
            .fetch_one(&self.pool)
            .await?)
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

    /// Drops the archived audit months (partitions of `audit_log_archive`) older than `days`
    /// days, except months a tenant's audit_log policy ('archive' or 'retain') still keeps; a
    /// whole partition at a time, never single rows. Returns the partitions dropped.
    pub async fn drop_audit_months(&self, days: i32) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT mnemo_drop_audit_months($1)")
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
