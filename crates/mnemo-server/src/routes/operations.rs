//! The admin's view of operations: `GET /v1/admin/health` (now and the last hour of
//! `system_health`), `GET /v1/admin/tenants/{tenant_id}/usage` and `GET /v1/admin/analytics`.

use axum::extract::State;
use axum::Json;
use chrono::{Duration, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use mnemo_store::health::{DatabaseFigures, HealthMinute, TenantUsage};

use crate::auth::AdminCtx;
use crate::error::ApiResult;
use crate::extract::ApiPath;
use crate::state::AppState;

/// Days of daily activity in a tenant's usage report.
const ACTIVITY_DAYS: i32 = 30;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_health))
        .routes(routes!(tenant_usage))
        .routes(routes!(analytics))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsParams {
    /// Largest tenants listed, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// Days of activity, 1 to 90 (default 14).
    pub days: Option<i32>,
    /// Refresh the analytics first (`refresh_analytics_views()`); otherwise they are as of the
    /// maintenance job's last run.
    #[serde(default)]
    pub refresh: bool,
}

/// The seed's analytics across tenants: totals, the largest tenants
/// (`tenant_memory_analytics`) and daily activity (`tenant_daily_activity`).
#[utoipa::path(get, path = "/v1/admin/analytics", tag = "admin", params(AnalyticsParams),
    responses((status = 200, body = mnemo_store::analytics::Analytics),
              (status = 422, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn analytics(
    State(state): State<AppState>,
    _: AdminCtx,
    crate::extract::ApiQuery(p): crate::extract::ApiQuery<AnalyticsParams>,
) -> ApiResult<Json<mnemo_store::analytics::Analytics>> {
    let limit = match p.limit {
        None => 50,
        Some(n) if (1..=500).contains(&n) => n,
        Some(_) => {
            return Err(mnemo_core::Invalid::new("limit", "must be between 1 and 500").into())
        }
    };
    let days = match p.days {
        None => 14,
        Some(n) if (1..=90).contains(&n) => n,
        Some(_) => return Err(mnemo_core::Invalid::new("days", "must be between 1 and 90").into()),
    };
    if p.refresh {
        state.store.refresh_analytics_views().await?;
    }
    Ok(Json(state.store.analytics(limit, days).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PoolState {
    pub size: u32,
    pub idle: usize,
    pub max: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentHealth {
    /// `healthy`, or `degraded` when a migration is pending.
    pub status: &'static str,
    pub pending_migrations: Vec<i64>,
    pub pool: PoolState,
    pub database: DatabaseFigures,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdminHealth {
    pub current: CurrentHealth,
    /// `system_health`, one row per sampled minute of the last hour, oldest first.
    pub last_hour: Vec<HealthMinute>,
}

/// The system's state now and its sampled history of the last hour.
#[utoipa::path(get, path = "/v1/admin/health", tag = "admin",
    responses((status = 200, body = AdminHealth), (status = 503, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn admin_health(State(state): State<AppState>, _: AdminCtx) -> ApiResult<Json<AdminHealth>> {
    let pending_migrations = state.store.pending_migrations().await?;
    let database = state.store.database_figures().await?;
    let last_hour = state
        .store
        .health_history(Utc::now() - Duration::hours(1))
        .await?;
    let pool = state.store.pool();
    Ok(Json(AdminHealth {
        current: CurrentHealth {
            status: if pending_migrations.is_empty() {
                "healthy"
            } else {
                "degraded"
            },
            pending_migrations,
            pool: PoolState {
                size: pool.size(),
                idle: pool.num_idle(),
                max: pool.options().get_max_connections(),
            },
            database,
        },
        last_hour,
    }))
}

/// A tenant's counters, quotas and audited operations per day (last 30 days, as of the last
/// analytics refresh).
#[utoipa::path(get, path = "/v1/admin/tenants/{tenant_id}/usage", tag = "admin",
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = TenantUsage), (status = 404, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn tenant_usage(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiPath(tenant_id): ApiPath<String>,
) -> ApiResult<Json<TenantUsage>> {
    Ok(Json(
        state.store.tenant_usage(&tenant_id, ACTIVITY_DAYS).await?,
    ))
}
