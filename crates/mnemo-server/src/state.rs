//! Shared state of the running service and its configurable limits.

use std::sync::Arc;
use std::time::Duration;

use mnemo_embed::Embedder;
use mnemo_store::Store;

use crate::llm::LlmSummarizer;
use crate::rate_limit::{RateLimiter, RateLimits};
use crate::telemetry::{self, MeasuredEmbedder, MetricsToken, OpWindows};

/// Bounds on what one request may ask for. Exceeding one is a clear 4xx.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub max_page: i64,
    pub default_page: i64,
    pub max_content_bytes: usize,
    pub max_json_depth: usize,
    pub max_graph_depth: i32,
    pub max_graph_nodes: i64,
    /// Edges a graph answer returns at most (strongest first).
    pub max_graph_edges: i64,
    pub max_k: usize,
    /// Bytes of a memory's or relationship's `metadata` and of a policy's `conditions`.
    pub max_metadata_bytes: usize,
    /// Bytes of a `contains` filter (as JSON).
    pub max_filter_bytes: usize,
    /// JSON values in a `contains` filter (every object, array and scalar in it): containment
    /// costs up to one scan of a memory's array per element of the filter.
    pub max_filter_values: usize,
    /// Access policies a tenant may hold (each request reads the applicable ones).
    pub max_policies: i64,
    /// PostgreSQL `statement_timeout` of every tenant transaction; `None` keeps the server's.
    pub statement_timeout: Option<Duration>,
    /// `hnsw.ef_search` for tenants searched through their own HNSW index.
    pub ef_search: i32,
    /// Embedded memories at which a tenant gets its own HNSW index.
    pub vector_index_min_rows: i64,
    /// The maintenance job archives audit rows older than this many days (in whole months).
    pub audit_archive_days: i32,
    /// Bytes of one context's `messages`/`text` JSON (413 above). The body limit must allow it.
    pub max_context_bytes: usize,
    /// Tokens (the context's tokenizer) of a context's summary at most.
    pub context_summary_tokens: usize,
    /// `token_budget` of a reconstruction at most.
    pub max_token_budget: usize,
    /// The maintenance job drops archived audit months older than this many days (whole
    /// partitions; months a tenant's audit_log policy keeps stay); `None` keeps them for ever.
    pub audit_drop_days: Option<i32>,
    /// The maintenance job drops months of `performance_metrics` (the health history) older
    /// than this many days, a whole partition at a time.
    pub metrics_retention_days: i32,
    /// Request rates per key, tenant, admin key and failed authentication. Off in
    /// `Limits::default()` (a library default: tests and embedders are never throttled by
    /// accident); `mnemo serve` turns them on by default.
    pub rate: RateLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            max_batch: 1000,
            max_page: 500,
            default_page: 50,
            max_content_bytes: 256 * 1024,
            max_json_depth: 32,
            max_graph_depth: 3,
            max_graph_nodes: 500,
            max_graph_edges: 2000,
            max_k: 100,
            max_metadata_bytes: 64 * 1024,
            max_filter_bytes: 8 * 1024,
            max_filter_values: 64,
            max_policies: 1000,
            statement_timeout: Some(Duration::from_secs(5)),
            ef_search: 400,
            vector_index_min_rows: 10_000,
            audit_archive_days: 365,
            max_context_bytes: 8 * 1024 * 1024,
            context_summary_tokens: 256,
            max_token_budget: 1_000_000,
            audit_drop_days: None,
            metrics_retention_days: 90,
            rate: RateLimits::off(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Embeds memory text when a client sends no vector; `None` stores such memories without one.
    pub embedder: Option<Arc<dyn Embedder>>,
    pub limits: Arc<Limits>,
    pub admin_key: AdminKey,
    /// The buckets of `limits.rate`, shared by every request of this process.
    pub rate_limiter: Arc<RateLimiter>,
    /// Summarizes offloaded contexts with a chat model (`MNEMO_LLM_URL`); `None`: extractive
    /// summaries.
    pub summarizer: Option<Arc<LlmSummarizer>>,
    /// Required by `GET /metrics` when set ([`AppState::with_metrics_token`]).
    pub metrics_token: Option<MetricsToken>,
    /// Requests per operation since the last health sample (`jobs::sample_health`).
    pub op_windows: Arc<OpWindows>,
}

impl AppState {
    pub fn new(
        store: Store,
        embedder: Option<Arc<dyn Embedder>>,
        limits: Limits,
        admin_key: AdminKey,
    ) -> Self {
        let rate_limiter = Arc::new(RateLimiter::new(&limits.rate));
        // Installs the metrics recorder before the first request is measured.
        let _ = telemetry::handle();
        Self {
            store,
            embedder: embedder.map(MeasuredEmbedder::wrap),
            limits: Arc::new(limits),
            admin_key,
            rate_limiter,
            summarizer: None,
            metrics_token: None,
            op_windows: Arc::new(OpWindows::default()),
        }
    }

    /// Summarize contexts with `summarizer` instead of extractively.
    pub fn with_summarizer(mut self, summarizer: LlmSummarizer) -> Self {
        self.summarizer = Some(Arc::new(summarizer));
        self
    }

    /// `GET /metrics` then requires `Authorization: Bearer <token>` (`MNEMO_METRICS_TOKEN`).
    pub fn with_metrics_token(mut self, token: &str) -> Self {
        self.metrics_token = Some(MetricsToken::new(token));
        self
    }
}

/// Where admin requests are checked against.
#[derive(Clone, Debug)]
pub enum AdminKey {
    /// SHA-256 of the key from configuration (`MNEMO_ADMIN_KEY`), fixed for the process's life.
    Configured(Arc<Vec<u8>>),
    /// The hash in `mnemo_settings`, read on every admin request, so `mnemo admin
    /// rotate-admin-key` takes effect on the next one.
    Stored,
}

impl AdminKey {
    pub fn configured(secret: &str) -> AdminKey {
        use sha2::Digest;
        AdminKey::Configured(Arc::new(sha2::Sha256::digest(secret.as_bytes()).to_vec()))
    }
}
