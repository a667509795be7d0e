//! `POST /v1/admin/maintenance`: run the background upkeep now (admin key).

use axum::extract::State;
use axum::Json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::AdminCtx;
use crate::error::{ApiError, ApiResult};
use crate::jobs::{self, MaintenanceReport};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(run_maintenance))
}

/// Creates partitions ahead, cleans expired memories per retention policy, archives old audit
/// months, refreshes the analytics, reconciles usage counters and builds per-tenant vector indexes,
/// then reports what it did.
///
/// The run is detached from the request: a client that disconnects does not cancel it half-way (an
/// index build would otherwise stop in the middle); it finishes and its report goes to the log.
#[utoipa::path(post, path = "/v1/admin/maintenance", tag = "admin",
    responses((status = 200, body = MaintenanceReport), (status = 500, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn run_maintenance(
    State(state): State<AppState>,
    _: AdminCtx,
) -> ApiResult<Json<MaintenanceReport>> {
    let run = tokio::spawn(async move { jobs::run_all(&state.store, &state.limits).await });
    let report = run
        .await
        .map_err(|e| ApiError::internal(format!("the maintenance run failed: {e}")))?;
    Ok(Json(report))
}
