//! `/healthz` (the process answers) and `/readyz` (the database answers, with pgvector's version).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    pub status: &'static str,
    pub database: &'static str,
    pub pgvector_version: Option<String>,
    /// The embedding model, when one is configured.
    pub embedder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Ready), (status = 503, body = Ready)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let embedder = state.embedder.as_ref().map(|e| e.model_name().to_owned());
    match state.store.pgvector_version().await {
        Ok(v) => (
            StatusCode::OK,
            Json(Ready {
                status: "ready",
                database: "reachable",
                pgvector_version: Some(v),
                embedder,
                error: None,
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Ready {
                status: "unavailable",
                database: "unreachable",
                pgvector_version: None,
                embedder,
                error: Some(e.to_string()),
            }),
        ),
    }
}
