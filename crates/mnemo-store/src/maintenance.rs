//! The seed's maintenance functions and partition upkeep, run as the owner role across tenants.

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

    pub async fn clean_expired_memories(&self) -> Result<i32> {
        Ok(sqlx::query_scalar("SELECT clean_expired_memories()")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn archive_old_audit_logs(&self, days: i32) -> Result<i32> {
        Ok(sqlx::query_scalar("SELECT archive_old_audit_logs($1)")
            .bind(days)
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn refresh_analytics_views(&self) -> Result<()> {
        sqlx::query("SELECT refresh_analytics_views()")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
