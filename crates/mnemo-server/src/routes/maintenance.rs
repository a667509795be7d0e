//! `POST /v1/admin/maintenance`: run the background upkeep now (admin key).

use axum::extract::State;
use axum::Json;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::AdminCtx;
use crate::jobs::{self, MaintenanceReport};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(run_maintenance))
}

/// Creates partitions ahead, cleans expired memories per retention policy, refreshes the analytics
/// views and builds per-tenant vector indexes, then reports what it did.
#[utoipa::path(post, path = "/v1/admin/maintenance", tag = "admin",
    responses((status = 200, body = MaintenanceReport)), security(("admin_key" = [])))]
async fn run_maintenance(State(state): State<AppState>, _: AdminCtx) -> Json<MaintenanceReport> {
    Json(jobs::run_all(&state.store, &state.limits).await)
}
