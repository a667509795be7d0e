//! What the seed's analytics show across tenants (owner role): `tenant_memory_analytics` (a
//! materialized view) and `tenant_daily_activity`, as of their last refresh
//! (`refresh_analytics_views()`, run by the maintenance job and on demand).

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::FromRow;
use uuid::Uuid;

use crate::{Result, Store};

/// One tenant's memories, as of the last refresh.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct TenantAnalytics {
    pub tenant_id: String,
    pub project_id: Uuid,
    pub memory_count: i64,
    pub embedded_count: i64,
    pub content_bytes: i64,
    pub avg_relevance: Option<f64>,
    pub last_memory_at: Option<DateTime<Utc>>,
}

/// Every tenant's operations of one day (UTC), from the audit trail.
#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct DailyActivity {
    pub day: NaiveDate,
    pub operations: i64,
    /// Operations whose outcome was not `success` (refused, not found, invalid, …).
    pub refused: i64,
    /// Tenants with any operation that day.
    pub active_tenants: i64,
}

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct AnalyticsTotals {
    pub tenants: i64,
    pub memories: i64,
    pub embedded: i64,
    pub content_bytes: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Analytics {
    pub totals: AnalyticsTotals,
    /// The largest tenants by memories, at most `limit`.
    pub top_tenants: Vec<TenantAnalytics>,
    /// The last `days` days, oldest first (days without activity are absent).
    pub daily: Vec<DailyActivity>,
}

impl Store {
    /// The analytics as of their last refresh: totals, the `limit` largest tenants, the last
    /// `days` days of activity. Bounded reads of the precomputed tables.
    pub async fn analytics(&self, limit: i64, days: i32) -> Result<Analytics> {
        let totals: AnalyticsTotals = sqlx::query_as(
            "SELECT count(*) AS tenants, coalesce(sum(memory_count), 0)::bigint AS memories,
                    coalesce(sum(embedded_count), 0)::bigint AS embedded,
                    coalesce(sum(content_bytes), 0)::bigint AS content_bytes
             FROM tenant_memory_analytics",
        )
        .fetch_one(&self.pool)
        .await?;
        let top_tenants = sqlx::query_as(
            "SELECT tenant_key AS tenant_id, project_id, memory_count, embedded_count, content_bytes,
                    avg_relevance, last_memory_at
             FROM tenant_memory_analytics
             ORDER BY memory_count DESC, tenant_key LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let daily = sqlx::query_as(
            "SELECT day, sum(operations)::bigint AS operations,
                    coalesce(sum(operations) FILTER (WHERE outcome <> 'success'), 0)::bigint AS refused,
                    count(DISTINCT tenant_id) AS active_tenants
             FROM tenant_daily_activity
             WHERE day > (now() AT TIME ZONE 'UTC')::date - $1
             GROUP BY day ORDER BY day",
        )
        .bind(days)
        .fetch_all(&self.pool)
        .await?;
        Ok(Analytics {
            totals,
            top_tenants,
            daily,
        })
    }
}
