//! Mnemo's HTTP API.
//!
//! - [`app`]: the axum application (routes, limits, request ids, tracing, OpenAPI) and [`serve`].
//! - [`routes`]: one module per feature (`memories`, `graph`, `tenant_misc`, `federated`,
//!   `sharing`, `admin`, `health`), each with its request/response types and a `router()`.
//! - [`auth`]: API key extractors; the tenant always comes from the key; they apply the
//!   [`rate_limit`]s (per key, per tenant, admin key, failed authentication per address).
//! - [`ops`]: the tenant operation runner (scopes, policies, tenant transaction, audit).
//! - [`error`], [`extract`]: the one JSON error shape and extractors that produce it.
//! - [`jobs`]: background upkeep (partitions, expiry, analytics, per-tenant vector indexes).
//! - [`llm`]: context summaries from an OpenAI-compatible chat endpoint.
//! - [`jobs`]: background upkeep (partitions, expiry, analytics, per-tenant vector indexes,
//!   federated sessions past their deadline).
//! - [`state`]: shared state and configurable [`Limits`].
//! - [`telemetry`]: Prometheus metrics (`GET /metrics`) and what records them.

pub mod auth;
pub mod error;
pub mod extract;
pub mod jobs;
pub mod llm;
pub mod ops;
pub mod rate_limit;
pub mod routes;
pub mod state;
pub mod telemetry;

use std::future::Future;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

pub use error::{ApiError, ApiResult};
pub use rate_limit::{Rate, RateLimits};
pub use state::{AdminKey, AppState, Limits};

#[derive(OpenApi)]
#[openapi(
    info(title = "Mnemo", description = "Multi-tenant long-term memory for AI agents."),
    modifiers(&SecuritySchemes),
    tags(
        (name = "memories", description = "Contextual memories of the key's tenant"),
        (name = "graph", description = "Relationships between memories"),
        (name = "contexts", description = "Offloaded LLM contexts: stored byte-exact, searched, rebuilt within a token budget"),
        (name = "tenant", description = "Usage and audit trail of the key's tenant"),
        (name = "policies", description = "Access policies narrowing what keys may do"),
        (name = "retention", description = "Retention policies, their preview, and the archive"),
        (name = "federated", description = "Federated learning across the tenants of a project, with differential privacy"),
        (name = "sharing", description = "Sharing rules: what other tenants of the project may read"),
        (name = "admin", description = "Projects, tenants and API keys (admin key)"),
        (name = "health", description = "Liveness and readiness"),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for name in ["api_key", "admin_key"] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The OpenAPI document, generated from the route annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(routes::health::router())
        .merge(routes::search::router())
        .merge(routes::memories::router())
        .merge(routes::contexts::router())
        .merge(routes::graph::router())
        .merge(routes::tenant_misc::router())
        .merge(routes::federated::router())
        .merge(routes::sharing::router())
        .merge(routes::admin::router())
        .merge(routes::maintenance::router())
        .merge(routes::operations::router())
        .merge(routes::retention::router())
}

async fn not_found() -> ApiError {
    ApiError::not_found("route_not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::internal("internal error").into_response()
}

/// The whole application, ready to serve.
pub fn app(state: AppState) -> Router {
    let (router, spec) = api_router().split_for_parts();
    let spec = std::sync::Arc::new(spec);
    let request_id = HeaderName::from_static("x-request-id");
    router
        .route("/openapi.json", get(move || {
            let spec = spec.clone();
            async move { Json(spec.as_ref().clone()) }
        }))
        .route("/docs", get(|| async { Html(include_str!("docs.html")) }))
        .route("/metrics", get(telemetry::metrics_endpoint))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            telemetry::track_http,
        ))
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::audit_rejections,
        ))
        .with_state(state)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri().path(), request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(axum::middleware::from_fn(check_request_id))
}

/// Middleware: a client's `x-request-id` is kept when it is 1 to 128 visible ASCII characters
/// ([`auth::valid_request_id`]). Anything else (too long for the audit trail's index, or with
/// spaces and control characters that would garble logs) is replaced with a generated id before
/// any other layer sees it, and the answer says so with `x-request-id-replaced: true`.
pub async fn check_request_id(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let replace = req
        .headers()
        .get("x-request-id")
        .is_some_and(|v| !v.to_str().is_ok_and(auth::valid_request_id));
    if replace {
        req.headers_mut().remove("x-request-id");
        if let Ok(id) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            req.headers_mut().insert("x-request-id", id);
        }
    }
    let mut response = next.run(req).await;
    if replace {
        response
            .headers_mut()
            .insert("x-request-id-replaced", HeaderValue::from_static("true"));
    }
    response
}

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (at most `grace`). Each request carries its peer address (`ConnectInfo<SocketAddr>`), which
/// the failed-authentication limit counts by.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopped_tx.send(());
    });
    let server = tokio::spawn(async move { server.await });
    tokio::select! {
        res = server => res.map_err(std::io::Error::other)?,
        _ = async {
            let _ = stopped_rx.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("in-flight requests did not finish within {grace:?}; stopping anyway");
            Ok(())
        }
    }
}
