use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::watch;

use mnemo_embed::{Embedder, HttpEmbedder, HttpEmbedderConfig, MiniLm};
use mnemo_server::{jobs, AdminKey, AppState, Limits};
use mnemo_store::admin::generate_secret;
use mnemo_store::{PoolConfig, Store};

use crate::config::ServeArgs;

pub async fn run(database_url: &str, args: ServeArgs) -> anyhow::Result<()> {
    args.check()?;
    let llm = args.llm()?;
    let pool = PoolConfig {
        max_connections: args.db_pool,
        acquire_timeout: Duration::from_millis(args.db_acquire_timeout_ms.max(1)),
    };
    let store = Store::connect_with(database_url, pool)
        .await
        .context("connecting to PostgreSQL")?;
    store.migrate().await.context("applying migrations")?;
    let embedder = build_embedder(&args).await?;
    let admin_key = admin_key(&store, args.admin_key.as_deref()).await?;
    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        max_batch: args.max_batch,
        max_page: args.max_page,
        max_content_bytes: args.max_content_bytes,
        max_json_depth: args.max_json_depth,
        max_graph_depth: args.max_graph_depth,
        max_graph_nodes: args.max_graph_nodes,
        statement_timeout: (args.statement_timeout_ms > 0)
            .then(|| Duration::from_millis(args.statement_timeout_ms)),
        ef_search: args.ef_search,
        vector_index_min_rows: args.vector_index_min_rows,
        audit_archive_days: args.audit_archive_days,
        max_context_bytes: args.max_context_bytes(),
        context_summary_tokens: args.context_summary_tokens as usize,
        audit_drop_days: (args.audit_drop_days > 0).then_some(args.audit_drop_days),
        metrics_retention_days: args.metrics_retention_days,
        rate: args.rate_limits(),
        ..Limits::default()
    };
    let mut state = AppState::new(store.clone(), embedder, limits, admin_key);
    if let Some(llm) = llm {
        tracing::info!(
            model = llm.model(),
            "offloaded contexts are summarized by a chat model"
        );
        state = state.with_summarizer(llm);
    }
    if let Some(token) = args.metrics_token.as_deref().filter(|t| !t.is_empty()) {
        state = state.with_metrics_token(token);
    }

    store.refresh_vector_index_cache().await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let housekeeping = {
        let (store, limits) = (store.clone(), state.limits.clone());
        let interval = Duration::from_secs(args.maintenance_interval_secs.max(1));
        tokio::spawn(every(interval, stop_rx.clone(), move || {
            let (store, limits) = (store.clone(), limits.clone());
            async move {
                let mut report = jobs::MaintenanceReport::default();
                jobs::housekeeping(&store, &limits, &mut report).await;
                tracing::info!(?report, "housekeeping done");
            }
        }))
    };
    let cleanup = (args.retention_interval_secs > 0).then(|| {
        let store = store.clone();
        let interval = Duration::from_secs(args.retention_interval_secs);
        tokio::spawn(every(interval, stop_rx.clone(), move || {
            let store = store.clone();
            async move {
                let mut report = jobs::MaintenanceReport::default();
                jobs::retention(&store, &mut report).await;
                if let Some(r) = report.retention.filter(|r| !r.tenants.is_empty()) {
                    tracing::info!(
                        tenants = r.tenants.len(),
                        removed = r.total(),
                        batches = r.batches,
                        "retention cleanup done"
                    );
                }
                for e in report.errors {
                    tracing::warn!(error = %e, "retention cleanup failed");
                }
            }
        }))
    });
    let deadlines = {
        let store = store.clone();
        let interval = Duration::from_secs(args.federated_interval_secs.max(1));
        tokio::spawn(every(interval, stop_rx.clone(), move || {
            let store = store.clone();
            async move {
                let mut report = jobs::MaintenanceReport::default();
                jobs::federated_deadlines(&store, &mut report).await;
                if let Some(n) = report.federated_sessions_expired.filter(|n| *n > 0) {
                    tracing::info!(
                        sessions = n,
                        "federated sessions past their deadline failed"
                    );
                }
                for e in report.errors {
                    tracing::warn!(error = %e, "federated deadline job failed");
                }
            }
        }))
    };
    let indexing = {
        let (store, limits) = (store.clone(), state.limits.clone());
        let interval = Duration::from_secs(args.vector_index_interval_secs.max(1));
        tokio::spawn(every(interval, stop_rx.clone(), move || {
            let (store, limits) = (store.clone(), limits.clone());
            async move {
                let mut report = jobs::MaintenanceReport::default();
                jobs::vector_indexes(&store, &limits, &mut report).await;
                if let Some(r) = report
                    .vector_indexes
                    .filter(|r| !r.built.is_empty() || !r.dropped.is_empty())
                {
                    tracing::info!(
                        built = r.built.len(),
                        dropped = r.dropped.len(),
                        "vector indexes updated"
                    );
                }
                for e in report.errors {
                    tracing::warn!(error = %e, "vector index maintenance failed");
                }
            }
        }))
    };

    let sampling = (args.health_sample_secs > 0).then(|| {
        let state = state.clone();
        let interval = Duration::from_secs(args.health_sample_secs);
        tokio::spawn(every(interval, stop_rx.clone(), move || {
            let state = state.clone();
            async move {
                match jobs::sample_health(&state).await {
                    Ok(r) => {
                        tracing::debug!(rows = r.rows, operations = r.operations, "health sampled")
                    }
                    Err(e) => tracing::warn!(error = %e, "health sample failed"),
                }
            }
        }))
    });

    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    tracing::info!(addr = %listener.local_addr()?, "mnemo listening");
    mnemo_server::serve(
        listener,
        mnemo_server::app(state),
        shutdown_signal(),
        Duration::from_secs(30),
    )
    .await?;
    let _ = stop_tx.send(true);
    let _ = housekeeping.await;
    if let Some(sampling) = sampling {
        let _ = sampling.await;
    }
    let _ = deadlines.await;
    if let Some(cleanup) = cleanup {
        let _ = cleanup.await;
    }
    // An index build can take minutes; shutdown does not wait for it. The interrupted
    // CREATE INDEX CONCURRENTLY leaves an invalid index, which the next run drops and rebuilds.
    indexing.abort();
    let _ = indexing.await;
    store.close().await;
    tracing::info!("mnemo stopped");
    Ok(())
}

async fn build_embedder(args: &ServeArgs) -> anyhow::Result<Option<Arc<dyn Embedder>>> {
    match args.embedder.as_str() {
        "none" => Ok(None),
        "local" => {
            let dir = args
                .model_dir
                .clone()
                .context("MNEMO_MODEL_DIR is not set: `make run` installs the model and sets it, or use MNEMO_EMBEDDER=none")?;
            let backend = args.local_engine.backend()?;
            let engine = backend.name();
            let model =
                tokio::task::spawn_blocking(move || MiniLm::load_with(&dir, &backend)).await??;
            tracing::info!(model = model.model_name(), engine, "local embedder loaded");
            Ok(Some(Arc::new(model)))
        }
        "http" => {
            if args.embed_dim != mnemo_core::EMBEDDING_DIM {
                bail!(
                    "MNEMO_EMBED_DIM must be {} to match the schema",
                    mnemo_core::EMBEDDING_DIM
                );
            }
            let config = HttpEmbedderConfig {
                base_url: args
                    .embed_url
                    .clone()
                    .context("MNEMO_EMBED_URL is required with MNEMO_EMBEDDER=http")?,
                model: args.embed_model.clone(),
                dim: args.embed_dim,
                api_key: args.embed_api_key.clone().map(Into::into),
                timeout: Duration::from_secs(args.embed_timeout_secs),
            };
            Ok(Some(Arc::new(HttpEmbedder::new(config)?)))
        }
        other => bail!("unknown MNEMO_EMBEDDER {other:?}: expected local, http or none"),
    }
}

/// The admin key: from MNEMO_ADMIN_KEY when given; otherwise the stored hash (read on every admin
/// request, so a rotation takes effect at once), generating a key, printed once, when none is
/// stored. Which of the two is recorded, so that `mnemo admin rotate-admin-key` can refuse to
/// print a key that this server would ignore.
async fn admin_key(store: &Store, configured: Option<&str>) -> anyhow::Result<AdminKey> {
    if let Some(key) = configured.filter(|k| !k.is_empty()) {
        if key.len() < 16 {
            bail!("MNEMO_ADMIN_KEY must be at least 16 characters");
        }
        store.record_admin_key_source(true).await?;
        return Ok(AdminKey::configured(key));
    }
    store.record_admin_key_source(false).await?;
    if store.admin_key_hash().await?.is_none() {
        let key = generate_secret("mnemo_admin_");
        if store.init_admin_key(&key).await? {
            eprintln!("\n  Mnemo admin key (shown once, stored only as a hash):\n\n    {key}\n");
        }
    }
    Ok(AdminKey::Stored)
}

/// Runs `step` now and then every `every` until `stop` flips.
async fn every<F, Fut>(every: Duration, mut stop: watch::Receiver<bool>, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        step().await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
