//! Prometheus metrics: the process-wide recorder, the HTTP middleware that measures every request
//! by route template, the embedder wrapper that times embeddings, the job timer, and `GET /metrics`.
//!
//! Labels are bounded: a route is its template (`/v1/memories/{memory_id}`, never the raw path),
//! unmatched requests share the label `unmatched`, and no tenant, key or memory id is ever a label.
//! Values that already live elsewhere (the database pool, the rate limiter's refusal counts) are
//! read when `/metrics` is scraped rather than mirrored on every change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rand::Rng;
use sha2::{Digest, Sha256};

use mnemo_core::latency::Window;

use mnemo_embed::{EmbedError, Embedder};

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

pub const HTTP_DURATION: &str = "http_server_request_duration_seconds";
pub const HTTP_IN_FLIGHT: &str = "http_server_active_requests";
pub const AUTH_FAILURES: &str = "mnemo_auth_failures_total";
pub const QUOTA_REFUSALS: &str = "mnemo_quota_refusals_total";
pub const RATE_LIMIT_REFUSALS: &str = "mnemo_rate_limit_refusals_total";
pub const EMBED_DURATION: &str = "mnemo_embedding_duration_seconds";
pub const EMBED_BATCH: &str = "mnemo_embedding_batch_size";
pub const EMBED_FAILURES: &str = "mnemo_embedding_failures_total";
pub const POOL_CONNECTIONS: &str = "mnemo_db_pool_connections";
pub const POOL_MAX: &str = "mnemo_db_pool_max_connections";
pub const JOB_RUNS: &str = "mnemo_job_runs_total";
pub const JOB_FAILURES: &str = "mnemo_job_failures_total";
pub const JOB_DURATION: &str = "mnemo_job_duration_seconds";
pub const JOB_LAST_SUCCESS: &str = "mnemo_job_last_success_timestamp_seconds";
const RETENTION_REMOVED: &str = "mnemo_retention_memories_removed_total";

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const JOB_BUCKETS: &[f64] = &[0.01, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed as the global `metrics` recorder on first use.
/// `None` when another global recorder was installed first (an embedding application's): then
/// `/metrics` answers 404 and the measurements go to that recorder.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for (name, buckets) in [
                (HTTP_DURATION, LATENCY_BUCKETS),
                (EMBED_DURATION, LATENCY_BUCKETS),
                (JOB_DURATION, JOB_BUCKETS),
                (EMBED_BATCH, BATCH_BUCKETS),
            ] {
                builder = match builder.set_buckets_for_metric(Matcher::Full(name.into()), buckets) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, name, "histogram buckets refused");
                        return None;
                    }
                };
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "another metrics recorder is installed; /metrics is off");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP requests by route template, method and status."
    );
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being handled now.");
    describe_counter!(
        AUTH_FAILURES,
        "Requests refused for a missing, unknown, revoked or expired key, by error code."
    );
    describe_counter!(
        QUOTA_REFUSALS,
        "Writes refused because they would exceed a tenant quota."
    );
    describe_counter!(
        RATE_LIMIT_REFUSALS,
        "Requests refused by a rate limit, by limit."
    );
    describe_histogram!(
        EMBED_DURATION,
        Unit::Seconds,
        "Time of one embedding call, by model."
    );
    describe_histogram!(
        EMBED_BATCH,
        Unit::Count,
        "Texts per embedding call, by model."
    );
    describe_counter!(EMBED_FAILURES, "Embedding calls that failed, by model.");
    describe_gauge!(
        POOL_CONNECTIONS,
        "Database pool connections, by state (idle, in_use)."
    );
    describe_gauge!(POOL_MAX, "The database pool's maximum size.");
    describe_counter!(JOB_RUNS, "Background job steps run, by job.");
    describe_counter!(JOB_FAILURES, "Background job steps that failed, by job.");
    describe_histogram!(
        JOB_DURATION,
        Unit::Seconds,
        "Duration of background job steps, by job."
    );
    describe_gauge!(
        JOB_LAST_SUCCESS,
        "Unix time of each job's last successful run."
    );
    describe_counter!(
        RETENTION_REMOVED,
        "Memories the expiry and retention cleanup removed, by reason (expired, retention) and action (delete, archive)."
    );
}

/// Counts what one cleanup run removed (never by tenant: tenant ids are not labels).
pub fn retention_applied(expired: u64, retention: u64, action: &'static str) {
    if expired > 0 {
        metrics::counter!(RETENTION_REMOVED, "reason" => "expired", "action" => action)
            .increment(expired);
    }
    if retention > 0 {
        metrics::counter!(RETENTION_REMOVED, "reason" => "retention", "action" => action)
            .increment(retention);
    }
}

/// Middleware: times each request by route template, method and status, counts the requests in
/// flight, and counts authentication failures and quota refusals from the error they end with.
/// Also adds the request to the state's [`OpWindows`], which the health sampler logs every minute.
pub async fn track_http(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    let _in_flight = InFlight::enter();
    let response = next.run(req).await;
    let status = response.status();
    let elapsed = start.elapsed();
    let operation = match &route {
        Some(r) => format!("{method} {r}"),
        None => "unmatched".to_owned(),
    };
    state.op_windows.record(
        operation,
        elapsed.as_secs_f64() * 1000.0,
        status.is_server_error(),
    );
    metrics::histogram!(HTTP_DURATION,
        "http_route" => route.unwrap_or_else(|| "unmatched".to_owned()),
        "http_request_method" => method,
        "http_response_status_code" => status.as_u16().to_string())
    .record(elapsed.as_secs_f64());
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        if status == StatusCode::UNAUTHORIZED {
            metrics::counter!(AUTH_FAILURES, "code" => *code).increment(1);
        } else if *code == "quota_exceeded" {
            metrics::counter!(QUOTA_REFUSALS).increment(1);
        }
    }
    response
}

/// The method as a label: the standard ones by name, any other as `_OTHER` (bounded labels).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

/// Values of one operation kept per window; beyond, a uniform sample of them.
const WINDOW_SAMPLE: usize = 2048;
/// Operations tracked per window (route templates are bounded; this bounds them anyway).
const WINDOW_OPERATIONS: usize = 512;

/// Requests per operation (`METHOD /route/template`) since the last health sample: count, 5xx
/// answers and latencies in milliseconds.
#[derive(Default, Debug)]
pub struct OpWindows {
    windows: Mutex<HashMap<String, Window>>,
}

impl OpWindows {
    pub fn record(&self, operation: String, millis: f64, error: bool) {
        let Ok(mut windows) = self.windows.lock() else {
            return;
        };
        if windows.len() >= WINDOW_OPERATIONS && !windows.contains_key(&operation) {
            return;
        }
        windows
            .entry(operation)
            .or_insert_with(|| Window::new(WINDOW_SAMPLE))
            .record(millis, error, |n| rand::thread_rng().gen_range(0..n));
    }

    /// The windows so far, leaving empty ones for the next sample.
    pub fn take(&self) -> HashMap<String, Window> {
        self.windows
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }
}

static LAST_SUCCESS: Mutex<Vec<(&'static str, SystemTime)>> = Mutex::new(Vec::new());

/// Each job step's last success in this process, for the job lag of the health samples.
pub fn last_successes() -> Vec<(&'static str, SystemTime)> {
    LAST_SUCCESS.lock().map(|l| l.clone()).unwrap_or_default()
}

/// Counts a request in flight until dropped (also when the client goes away mid-request).
struct InFlight;

impl InFlight {
    fn enter() -> InFlight {
        metrics::gauge!(HTTP_IN_FLIGHT).increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!(HTTP_IN_FLIGHT).decrement(1.0);
    }
}

/// An embedder that records the duration, batch size and failures of every call of `inner`.
pub struct MeasuredEmbedder {
    inner: Arc<dyn Embedder>,
}

impl MeasuredEmbedder {
    pub fn wrap(inner: Arc<dyn Embedder>) -> Arc<dyn Embedder> {
        Arc::new(MeasuredEmbedder { inner })
    }
}

impl Embedder for MeasuredEmbedder {
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    fn model_name(&self) -> &str {
        self.inner.model_name()
    }

    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let model = self.inner.model_name().to_owned();
            let n = texts.len();
            let start = Instant::now();
            let result = self.inner.embed(texts).await;
            match &result {
                Ok(_) => {
                    metrics::histogram!(EMBED_DURATION, "model" => model.clone())
                        .record(start.elapsed().as_secs_f64());
                    metrics::histogram!(EMBED_BATCH, "model" => model).record(n as f64);
                }
                Err(_) => metrics::counter!(EMBED_FAILURES, "model" => model).increment(1),
            }
            result
        })
    }
}

/// Records one run of a background job step: its duration, and a failure or the time of success.
pub fn job_finished(job: &'static str, started: Instant, ok: bool) {
    metrics::counter!(JOB_RUNS, "job" => job).increment(1);
    metrics::histogram!(JOB_DURATION, "job" => job).record(started.elapsed().as_secs_f64());
    if ok {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        metrics::gauge!(JOB_LAST_SUCCESS, "job" => job).set(now);
        if let Ok(mut last) = LAST_SUCCESS.lock() {
            last.retain(|(j, _)| *j != job);
            last.push((job, SystemTime::now()));
        }
    } else {
        metrics::counter!(JOB_FAILURES, "job" => job).increment(1);
    }
}

/// SHA-256 of the metrics token (`MNEMO_METRICS_TOKEN`); compared by hash, so the comparison's
/// timing says nothing about the token.
#[derive(Clone, Debug)]
pub struct MetricsToken(Arc<[u8; 32]>);

impl MetricsToken {
    pub fn new(token: &str) -> MetricsToken {
        MetricsToken(Arc::new(Sha256::digest(token.as_bytes()).into()))
    }

    fn admits(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| Sha256::digest(t.trim().as_bytes()).as_slice() == self.0.as_slice())
    }
}

/// `GET /metrics`: the Prometheus text exposition. Off the tenant surface: no tenant key; with a
/// metrics token configured, `Authorization: Bearer <token>` is required.
pub async fn metrics_endpoint(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        if !token.admits(&headers) {
            return ApiError::unauthorized(
                "`/metrics` needs `Authorization: Bearer <metrics token>`",
            )
            .into_response();
        }
    }
    let Some(handle) = handle() else {
        return ApiError::not_found("route_not_found", "metrics are recorded elsewhere")
            .into_response();
    };
    let pool = state.store.pool();
    let idle = pool.num_idle() as f64;
    let size = f64::from(pool.size());
    metrics::gauge!(POOL_CONNECTIONS, "state" => "idle").set(idle);
    metrics::gauge!(POOL_CONNECTIONS, "state" => "in_use").set((size - idle).max(0.0));
    metrics::gauge!(POOL_MAX).set(f64::from(pool.options().get_max_connections()));
    let refused = state.rate_limiter.rejected();
    for (limit, n) in [
        ("api_key", refused.api_key),
        ("tenant", refused.tenant),
        ("admin_key", refused.admin_key),
        ("failed_auth", refused.failed_auth),
    ] {
        metrics::counter!(RATE_LIMIT_REFUSALS, "limit" => limit).absolute(n);
    }
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}
