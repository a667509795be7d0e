//! `/healthz` (the process answers) and `/readyz` (the database answers, with pgvector's version,
//! and holds every migration this binary embeds).

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
    /// Versions of embedded migrations the database lacks (or holds with another checksum): a
    /// server started against a database another binary has not finished migrating is not ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_migrations: Vec<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Ready), (status = 503, body = Ready)))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Ready>) {
    let embedder = state.embedder.as_ref().map(|e| e.model_name().to_owned());
    let checked = match state.store.pgvector_version().await {
        Ok(v) => state.store.pending_migrations().await.map(|p| (v, p)),
        Err(e) => Err(e),
    };
    match checked {
        Ok((v, pending)) if pending.is_empty() => (
            StatusCode::OK,
            Json(Ready {
                status: "ready",
                database: "reachable",
                pgvector_version: Some(v),
                embedder,
                pending_migrations: pending,
                error: None,
            }),
        ),
        Ok((v, pending)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Ready {
                status: "unavailable",
                database: "reachable",
                pgvector_version: Some(v),
                embedder,
                error: Some(format!("migrations pending: {pending:?}")),
                pending_migrations: pending,
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Ready {
                status: "unavailable",
                database: "unreachable",
                pgvector_version: None,
                embedder,
                pending_migrations: Vec::new(),
                error: Some(e.to_string()),
            }),
        ),
    }
}
