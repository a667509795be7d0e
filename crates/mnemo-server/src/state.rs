//! Shared state of the running service and its configurable limits.

use std::sync::Arc;

use mnemo_embed::Embedder;
use mnemo_store::Store;

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
    pub max_k: usize,
    /// `hnsw.ef_search` for tenants searched through their own HNSW index.
    pub ef_search: i32,
    /// Embedded memories at which a tenant gets its own HNSW index.
    pub vector_index_min_rows: i64,
    /// The maintenance job archives audit rows older than this many days (in whole months).
    pub audit_archive_days: i32,
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
            max_k: 100,
            ef_search: 400,
            vector_index_min_rows: 10_000,
            audit_archive_days: 365,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Embeds memory text when a client sends no vector; `None` stores such memories without one.
    pub embedder: Option<Arc<dyn Embedder>>,
    pub limits: Arc<Limits>,
    /// SHA-256 of the admin key.
    pub admin_key_hash: Arc<Vec<u8>>,
}
