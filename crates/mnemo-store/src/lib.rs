//! Mnemo's PostgreSQL layer.
//!
//! - [`Store`]: the pool ([`PoolConfig`]), migrations ([`MIGRATOR`], embedded from `migrations/`), health.
//! - [`tenancy`]: [`TenantScope`] (proof that a request belongs to a tenant) and [`TenantTx`], the
//!   transaction that runs as the non-owner role `mnemo_app` with `app.tenant_id` set, so Row Level
//!   Security applies to every statement in it.
//! - [`admin`]: projects, tenants, API keys and the admin key (owner role, control-plane tables).
//! - [`memories`], [`relationships`], [`policies`], [`audit`], [`search`]: tenant data, always
//!   through a [`TenantTx`].
//! - [`contexts`]: offloaded contexts (compressed, byte-exact) and their chunks: writes, reads,
//!   chunk search (vector and full-text), expiry.
//! - [`tenant_index`]: per-tenant HNSW indexes of memories and context chunks.
//! - [`federated`]: federated learning's participants, sessions, contributions and privacy ledger.
//! - [`sharing`]: sharing rules, and what they let another tenant read.
//! - [`usage`]: per-tenant usage counters, quotas, their reconciliation.
//! - [`retention`]: retention policies, their preview and per-tenant run, the memory archive.
//! - [`analytics`]: the seed's analytics across tenants (admin).
//! - [`maintenance`]: the seed's maintenance functions and partition upkeep.
//! - [`health`]: health samples into `performance_metrics`, database figures, `system_health`.
//! - [`citus`]: the distributed layout on a Citus cluster (`mnemo admin distribute`).
//! - `testing` (feature `test-support`): a fresh migrated database per test.

pub mod admin;
pub mod analytics;
pub mod audit;
pub mod citus;
pub mod contexts;
mod error;
pub mod federated;
pub mod health;
pub mod maintenance;
pub mod memories;
pub mod policies;
pub mod relationships;
pub mod retention;
pub mod search;
pub mod sharing;
pub mod tenancy;
pub mod tenant_index;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod usage;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

pub use error::{StoreError, CONCURRENT_WRITE};
pub use tenancy::{TenantScope, TenantTx};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    /// Tenants known to have their own HNSW index, per table (see [`tenant_index`]); refreshed
    /// by [`Store::maintain_vector_indexes`] and [`Store::refresh_vector_index_cache`].
    vector_indexes: tenant_index::IndexCache,
    /// Whether the GIN operators are LEAKPROOF in this database, so tenant queries can write
    /// their text, tag and containment conditions directly and still use the GIN indexes under
    /// Row Level Security; otherwise they ask `mnemo_gin_candidates()` (see [`memories`]).
    gin_direct: Arc<AtomicBool>,
}

/// How the pool reaches PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    pub max_connections: u32,
    /// How long a request waits for a connection before it fails with
    /// [`StoreError::Unavailable`]: while PostgreSQL is down, every request answers within this
    /// bound instead of hanging.
    pub acquire_timeout: Duration,
}

impl PoolConfig {
    pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

    pub fn new(max_connections: u32) -> Self {
        Self {
            max_connections,
            acquire_timeout: Self::DEFAULT_ACQUIRE_TIMEOUT,
        }
    }
}

impl Store {
    /// Connects with the owner's URL (the role that runs migrations). Tenant work switches to
    /// `mnemo_app` inside each [`TenantTx`].
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_with(url, PoolConfig::new(max_connections)).await
    }

    /// [`Store::connect`] with explicit pool settings. The first connection is made now (a
    /// server that cannot reach its database at start fails to start); later, connections that
    /// broke while PostgreSQL was away are found by the ping before each acquire
    /// (`test_before_acquire`, on by default) and replaced, so the pool recovers by itself.
    pub async fn connect_with(url: &str, config: PoolConfig) -> Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .test_before_acquire(true)
            .connect_with(options.application_name("mnemo"))
            .await?;
        let store = Self::from_pool(pool);
        store.detect_gin_mode().await?;
        Ok(store)
    }

    /// A store on an existing pool. It writes GIN conditions through `mnemo_gin_candidates()`
    /// until [`Store::migrate`] (or [`Store::connect`]) finds the operators LEAKPROOF.
    pub fn from_pool(pool: PgPool) -> Self {
        Self {
            pool,
            vector_indexes: Default::default(),
            gin_direct: Default::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies pending migrations; a no-op when all are applied.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        // The LEAKPROOF marks live in this database's catalog, which a dump does not carry: a
        // superuser owner puts them back at every start.
        let direct: bool = sqlx::query_scalar("SELECT mnemo_mark_leakproof()")
            .fetch_one(&self.pool)
            .await?;
        self.gin_direct.store(direct, Ordering::Relaxed);
        Ok(())
    }

    async fn detect_gin_mode(&self) -> Result<()> {
        // Before the migrations ran the function does not exist: queries take the fallback until
        // migrate() decides (the fallback is as safe, only slower for broad matches).
        let direct = sqlx::query_scalar::<_, bool>("SELECT mnemo_gin_usable_under_rls()")
            .fetch_one(&self.pool)
            .await
            .unwrap_or(false);
        self.gin_direct.store(direct, Ordering::Relaxed);
        Ok(())
    }

    /// Whether tenant queries use the GIN indexes through direct conditions (LEAKPROOF operators)
    /// rather than through `mnemo_gin_candidates()`.
    pub fn gin_direct(&self) -> bool {
        self.gin_direct.load(Ordering::Relaxed)
    }

    /// Chooses how tenant queries reach the GIN indexes; for tests of both ways.
    #[cfg(feature = "test-support")]
    pub fn set_gin_direct(&self, direct: bool) {
        self.gin_direct.store(direct, Ordering::Relaxed);
    }

    /// The pgvector version installed in the database (proves the database is reachable).
    pub async fn pgvector_version(&self) -> Result<String> {
        let v: Option<String> =
            sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                .fetch_optional(&self.pool)
                .await?;
        v.ok_or(StoreError::NotFound("the vector extension"))
    }

    /// Versions of the embedded migrations ([`MIGRATOR`]) that the database has not applied
    /// successfully, or has applied with a different checksum (an edited file); empty when the
    /// schema is the one this binary was built for.
    pub async fn pending_migrations(&self) -> Result<Vec<i64>> {
        let applied: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT version, checksum FROM _sqlx_migrations WHERE success ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await?;
        let applied: std::collections::HashMap<i64, Vec<u8>> = applied.into_iter().collect();
        Ok(MIGRATOR
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .filter(|m| {
                applied
                    .get(&m.version)
                    .is_none_or(|c| c.as_slice() != &*m.checksum)
            })
            .map(|m| m.version)
            .collect())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
