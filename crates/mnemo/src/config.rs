use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use mnemo_embed::{Backend, OnnxConfig};

#[derive(Parser, Debug)]
#[command(
    name = "mnemo",
    version,
    about = "Multi-tenant long-term memory for AI agents"
)]
pub struct Cli {
    /// PostgreSQL URL of the role that owns the schema (it runs the migrations).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Log format: `pretty` or `json`.
    #[arg(
        long,
        env = "MNEMO_LOG_FORMAT",
        default_value = "pretty",
        global = true
    )]
    pub log_format: String,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once at start; the size of the serve variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Apply migrations, then serve the HTTP API.
    Serve(ServeArgs),
    /// Apply pending migrations and exit.
    Migrate,
    /// Manage projects, tenants and API keys.
    #[command(subcommand)]
    Admin(crate::admin::AdminCommand),
    /// Benchmark a running server (see README).
    Bench(crate::bench::BenchArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[arg(long, env = "MNEMO_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Database connections in the pool.
    #[arg(long, env = "MNEMO_DB_POOL", default_value_t = 16)]
    pub db_pool: u32,
    /// Milliseconds a request waits for a database connection; past it (PostgreSQL down, or
    /// every connection busy) it answers 503 `database_unavailable` with `Retry-After`.
    #[arg(long, env = "MNEMO_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub db_acquire_timeout_ms: u64,

    /// Embedding provider: `local` (all-MiniLM-L6-v2 in-process), `http` (OpenAI-compatible) or
    /// `none` (only client-supplied vectors).
    #[arg(long, env = "MNEMO_EMBEDDER", default_value = "local")]
    pub embedder: String,

    /// Folder with model.safetensors, tokenizer.json and config.json (installed by `make run`).
    #[arg(long, env = "MNEMO_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,

    #[command(flatten)]
    pub local_engine: LocalEngineArgs,

    /// Base URL of the OpenAI-compatible provider, e.g. https://api.openai.com/v1.
    #[arg(long, env = "MNEMO_EMBED_URL")]
    pub embed_url: Option<String>,
    #[arg(
        long,
        env = "MNEMO_EMBED_MODEL",
        default_value = "text-embedding-3-small"
    )]
    pub embed_model: String,
    /// Must be 384 to match the schema.
    #[arg(long, env = "MNEMO_EMBED_DIM", default_value_t = 384)]
    pub embed_dim: usize,
    #[arg(long, env = "MNEMO_EMBED_API_KEY", hide_env_values = true)]
    pub embed_api_key: Option<String>,
    #[arg(long, env = "MNEMO_EMBED_TIMEOUT_SECS", default_value_t = 30)]
    pub embed_timeout_secs: u64,

    /// The admin key. When unset, one is generated on first start, printed once and stored as a
    /// hash; `mnemo admin rotate-admin-key` replaces it (refused while this is set).
    #[arg(long, env = "MNEMO_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,

    /// When set, `GET /metrics` requires `Authorization: Bearer <token>`.
    #[arg(long, env = "MNEMO_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    #[arg(long, env = "MNEMO_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    #[arg(long, env = "MNEMO_MAX_BATCH", default_value_t = 1000)]
    pub max_batch: usize,
    #[arg(long, env = "MNEMO_MAX_PAGE", default_value_t = 500)]
    pub max_page: i64,
    #[arg(long, env = "MNEMO_MAX_CONTENT_BYTES", default_value_t = 256 * 1024)]
    pub max_content_bytes: usize,
    #[arg(long, env = "MNEMO_MAX_JSON_DEPTH", default_value_t = 32)]
    pub max_json_depth: usize,
    #[arg(long, env = "MNEMO_MAX_GRAPH_DEPTH", default_value_t = 3)]
    pub max_graph_depth: i32,
    #[arg(long, env = "MNEMO_MAX_GRAPH_NODES", default_value_t = 500)]
    pub max_graph_nodes: i64,
    /// Bytes of one offloaded context's `messages`/`text` JSON (413 above). The body limit
    /// (MNEMO_MAX_BODY_BYTES) must exceed it by 1 MiB (by half the body limit below 2 MiB).
    /// Unset: 8 MiB, or less when the body limit leaves less room.
    #[arg(long, env = "MNEMO_MAX_CONTEXT_BYTES")]
    pub max_context_bytes: Option<usize>,
    /// Tokens of an offloaded context's summary at most (in the context's tokenizer).
    #[arg(long, env = "MNEMO_CONTEXT_SUMMARY_TOKENS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(16..=4096))]
    pub context_summary_tokens: u32,
    /// Base URL of an OpenAI-compatible chat API (`POST {url}/chat/completions`) that
    /// summarizes offloaded contexts; unset: extractive summaries.
    #[arg(long, env = "MNEMO_LLM_URL")]
    pub llm_url: Option<String>,
    #[arg(long, env = "MNEMO_LLM_MODEL", default_value = "gpt-4o-mini")]
    pub llm_model: String,
    #[arg(long, env = "MNEMO_LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<String>,
    /// Seconds one summary may take; past it (or on any error) the summary is extractive.
    #[arg(long, env = "MNEMO_LLM_TIMEOUT_SECS", default_value_t = 30)]
    pub llm_timeout_secs: u64,
    /// Tokens of transcript sent to the chat model at most; a longer context is represented by
    /// an even sample of its sentences.
    #[arg(long, env = "MNEMO_LLM_MAX_INPUT_TOKENS", default_value_t = 16_000)]
    pub llm_max_input_tokens: usize,
    /// PostgreSQL `statement_timeout` of every tenant request's statements, in milliseconds
    /// (0: the database's own setting). A request that runs longer answers 503 `statement_timeout`.
    #[arg(long, env = "MNEMO_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub statement_timeout_ms: u64,

    /// `hnsw.ef_search` for tenants searched through their own HNSW index.
    #[arg(long, env = "MNEMO_EF_SEARCH", default_value_t = 400)]
    pub ef_search: i32,
    /// Embedded memories at which a tenant gets its own HNSW index (smaller tenants are searched
    /// exactly).
    #[arg(long, env = "MNEMO_VECTOR_INDEX_MIN_ROWS", default_value_t = 10_000)]
    pub vector_index_min_rows: i64,
    /// Seconds between checks for tenants that need a vector index.
    #[arg(long, env = "MNEMO_VECTOR_INDEX_INTERVAL_SECS", default_value_t = 30)]
    pub vector_index_interval_secs: u64,

    /// Seconds between maintenance runs (partitions, audit archival, analytics views, usage
    /// counters).
    #[arg(long, env = "MNEMO_MAINTENANCE_INTERVAL_SECS", default_value_t = 3600)]
    pub maintenance_interval_secs: u64,
    /// Seconds between cleanup runs: expired memories and the tenants' retention policies,
    /// tenant by tenant in batches of 1,000 (`FOR UPDATE SKIP LOCKED`: several servers share the
    /// work); 0 turns the job off.
    #[arg(long, env = "MNEMO_RETENTION_INTERVAL_SECS", default_value_t = 600)]
    pub retention_interval_secs: u64,

    /// Seconds between health samples (requests and latency percentiles per operation, pool and
    /// database figures, job lag) logged into `performance_metrics`; 0 turns sampling off.
    #[arg(long, env = "MNEMO_HEALTH_SAMPLE_SECS", default_value_t = 60)]
    pub health_sample_secs: u64,

    /// Months of the health history (`performance_metrics`) older than this many days are
    /// dropped, a whole partition at a time.
    #[arg(long, env = "MNEMO_METRICS_RETENTION_DAYS", default_value_t = 90,
          value_parser = clap::value_parser!(i32).range(1..))]
    pub metrics_retention_days: i32,
    /// Seconds between runs of the job that fails federated sessions past their deadline.
    #[arg(long, env = "MNEMO_FEDERATED_INTERVAL_SECS", default_value_t = 60)]
    pub federated_interval_secs: u64,

    /// Audit rows older than this many days move to `audit_log_archive` (a month at a time, once
    /// all of its rows are that old).
    #[arg(long, env = "MNEMO_AUDIT_ARCHIVE_DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(i32).range(0..))]
    pub audit_archive_days: i32,
    /// Archived audit months older than this many days are dropped, a whole partition at a
    /// time (months a tenant's audit_log policy keeps stay); 0 keeps them for ever.
    #[arg(long, env = "MNEMO_AUDIT_DROP_DAYS", default_value_t = 0,
          value_parser = clap::value_parser!(i32).range(0..))]
    pub audit_drop_days: i32,
    /// Requests per second one API key may make on average (0: no limit). Limits are counted
    /// in this process's memory: each server process allows the full rate.
    #[arg(long, env = "MNEMO_RATE_LIMIT_PER_KEY", default_value_t = 100)]
    pub rate_limit_per_key: u32,
    /// Requests one API key may make at once, above its steady rate.
    #[arg(long, env = "MNEMO_RATE_LIMIT_BURST", default_value_t = 200)]
    pub rate_limit_burst: u32,
    /// Requests per second of all of a tenant's keys together (0: no limit).
    #[arg(long, env = "MNEMO_RATE_LIMIT_PER_TENANT", default_value_t = 300)]
    pub rate_limit_per_tenant: u32,
    #[arg(long, env = "MNEMO_RATE_LIMIT_TENANT_BURST", default_value_t = 600)]
    pub rate_limit_tenant_burst: u32,
    /// Requests per second with the admin key (0: no limit).
    #[arg(long, env = "MNEMO_RATE_LIMIT_ADMIN", default_value_t = 100)]
    pub rate_limit_admin: u32,
    #[arg(long, env = "MNEMO_RATE_LIMIT_ADMIN_BURST", default_value_t = 200)]
    pub rate_limit_admin_burst: u32,
    /// Requests per second, per client address, presenting a key that does not authenticate
    /// (0: no limit). Over it, every request from the address gets 429 until the bucket
    /// refills. Counted by the TCP peer: behind a reverse proxy all clients share its address,
    /// so limit failed attempts at the proxy and set this to 0.
    #[arg(long, env = "MNEMO_RATE_LIMIT_FAILED_AUTH", default_value_t = 10)]
    pub rate_limit_failed_auth: u32,
    #[arg(long, env = "MNEMO_RATE_LIMIT_FAILED_AUTH_BURST", default_value_t = 20)]
    pub rate_limit_failed_auth_burst: u32,
}

/// A context's `messages`/`text` at most when MNEMO_MAX_CONTEXT_BYTES is unset.
pub const DEFAULT_MAX_CONTEXT_BYTES: usize = 8 * 1024 * 1024;

/// Room in a request body of at most `max_body` bytes for the fields around a context's
/// `messages`/`text`: 1 MiB, or half of a body limit below 2 MiB.
fn context_body_slack(max_body: usize) -> usize {
    (1024 * 1024).min(max_body / 2)
}

impl ServeArgs {
    /// Bytes of one context's `messages`/`text` at most: as configured, or the default within
    /// what the body limit leaves.
    pub fn max_context_bytes(&self) -> usize {
        self.max_context_bytes.unwrap_or_else(|| {
            let room = self.max_body_bytes - context_body_slack(self.max_body_bytes);
            DEFAULT_MAX_CONTEXT_BYTES.min(room)
        })
    }

    /// Refuses limits that contradict each other.
    pub fn check(&self) -> anyhow::Result<()> {
        let slack = context_body_slack(self.max_body_bytes);
        match self.max_context_bytes {
            Some(0) => bail!("MNEMO_MAX_CONTEXT_BYTES must be at least 1"),
            Some(bytes) if self.max_body_bytes < bytes.saturating_add(slack) => bail!(
                "MNEMO_MAX_BODY_BYTES ({}) must be at least MNEMO_MAX_CONTEXT_BYTES ({bytes}) + \
                 {slack} bytes, or a context of the largest size accepted could not be sent: \
                 raise the first or lower the second",
                self.max_body_bytes,
            ),
            _ => {}
        }
        if self.max_context_bytes() == 0 {
            bail!(
                "MNEMO_MAX_BODY_BYTES ({}) leaves no room for a context",
                self.max_body_bytes
            );
        }
        Ok(())
    }

    /// The chat summarizer, when MNEMO_LLM_URL is set.
    pub fn llm(&self) -> anyhow::Result<Option<mnemo_server::llm::LlmSummarizer>> {
        let Some(url) = self.llm_url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(None);
        };
        let config = mnemo_server::llm::LlmConfig {
            base_url: url.to_owned(),
            model: self.llm_model.clone(),
            api_key: self.llm_api_key.clone().map(Into::into),
            timeout: std::time::Duration::from_secs(self.llm_timeout_secs.max(1)),
            max_input_tokens: self.llm_max_input_tokens.max(1),
        };
        Ok(Some(
            mnemo_server::llm::LlmSummarizer::new(config).context("MNEMO_LLM_URL")?,
        ))
    }

    pub fn rate_limits(&self) -> mnemo_server::RateLimits {
        use mnemo_server::Rate;
        mnemo_server::RateLimits {
            per_key: Rate::new(self.rate_limit_per_key, self.rate_limit_burst),
            per_tenant: Rate::new(self.rate_limit_per_tenant, self.rate_limit_tenant_burst),
            admin: Rate::new(self.rate_limit_admin, self.rate_limit_admin_burst),
            failed_auth: Rate::new(
                self.rate_limit_failed_auth,
                self.rate_limit_failed_auth_burst,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mnemo_serve_limits_rates_by_default() {
        let cli = Cli::try_parse_from(["mnemo", "--database-url", "postgres://x/y", "serve"])
            .expect("parse");
        let Command::Serve(args) = cli.command else {
            panic!("not serve");
        };
        use mnemo_server::Rate;
        let limits = args.rate_limits();
        assert_eq!(limits.per_key, Rate::new(100, 200));
        assert_eq!(limits.per_tenant, Rate::new(300, 600));
        assert_eq!(limits.admin, Rate::new(100, 200));
        assert_eq!(limits.failed_auth, Rate::new(10, 20));
        assert_eq!(args.db_acquire_timeout_ms, 3000);
    }

    fn serve_args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["mnemo", "--database-url", "postgres://x/y", "serve"];
        argv.extend_from_slice(extra);
        let Command::Serve(args) = Cli::try_parse_from(argv).expect("parse").command else {
            panic!("not serve");
        };
        args
    }

    #[test]
    fn default_body_limit_fits_the_largest_context() {
        let args = serve_args(&[]);
        assert_eq!(args.max_context_bytes(), 8 * 1024 * 1024);
        assert!(args.check().is_ok());
    }

    #[test]
    fn a_small_body_limit_lowers_the_default_context_limit_within_it() {
        let args = serve_args(&["--max-body-bytes", "4096"]);
        assert!(args.check().is_ok());
        assert_eq!(args.max_context_bytes(), 2048);
    }

    #[test]
    fn a_body_limit_below_a_configured_context_limit_is_refused() {
        let args = serve_args(&[
            "--max-body-bytes",
            "1048576",
            "--max-context-bytes",
            "1048576",
        ]);
        let e = args.check().expect_err("refused");
        assert!(e.to_string().contains("MNEMO_MAX_CONTEXT_BYTES"), "{e}");
    }
}

/// Which engine runs the local model, and the files ONNX Runtime needs (`make run` provisions them).
#[derive(Args, Debug, Clone)]
pub struct LocalEngineArgs {
    /// `auto`: ONNX Runtime when MNEMO_ONNX_MODEL and MNEMO_ONNX_RUNTIME name existing files,
    /// otherwise candle. `onnx` or `candle` insist on one.
    #[arg(long, env = "MNEMO_EMBED_BACKEND", value_enum, default_value_t = EngineChoice::Auto)]
    pub embed_backend: EngineChoice,
    /// The model exported to ONNX (`model.onnx`, with `export.json` beside it).
    #[arg(long, env = "MNEMO_ONNX_MODEL")]
    pub onnx_model: Option<PathBuf>,
    /// The ONNX Runtime shared library (`libonnxruntime.so.1.*`).
    #[arg(long, env = "MNEMO_ONNX_RUNTIME")]
    pub onnx_runtime: Option<PathBuf>,
    /// Threads of one ONNX Runtime forward pass (default: all cores). Candle uses
    /// RAYON_NUM_THREADS.
    #[arg(long, env = "MNEMO_EMBED_THREADS")]
    pub embed_threads: Option<usize>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    Auto,
    Onnx,
    Candle,
}

impl LocalEngineArgs {
    /// The engine to load, or why the requested one cannot be.
    pub fn backend(&self) -> anyhow::Result<Backend> {
        if self.embed_threads == Some(0) {
            bail!("MNEMO_EMBED_THREADS must be at least 1");
        }
        let onnx = match (&self.onnx_model, &self.onnx_runtime) {
            (Some(model), Some(runtime)) => Some(OnnxConfig {
                model: model.clone(),
                runtime: runtime.clone(),
                threads: match self.embed_threads {
                    Some(threads) => threads,
                    None => std::thread::available_parallelism().map_or(1, |n| n.get()),
                },
            }),
            _ => None,
        };
        let provisioned = |config: &OnnxConfig| config.model.is_file() && config.runtime.is_file();
        match self.embed_backend {
            EngineChoice::Candle => Ok(Backend::Candle),
            EngineChoice::Auto => Ok(match onnx {
                Some(config) if provisioned(&config) => Backend::Onnx(config),
                _ => Backend::Candle,
            }),
            EngineChoice::Onnx => {
                let config = onnx.context(
                    "MNEMO_EMBED_BACKEND=onnx needs MNEMO_ONNX_MODEL and MNEMO_ONNX_RUNTIME \
                     (`make run` provisions both)",
                )?;
                if !provisioned(&config) {
                    bail!(
                        "MNEMO_EMBED_BACKEND=onnx: {} or {} does not exist",
                        config.model.display(),
                        config.runtime.display()
                    );
                }
                Ok(Backend::Onnx(config))
            }
        }
    }
}
