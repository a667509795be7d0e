//! Per-tenant partial HNSW indexes, for every table that holds tenants' embeddings
//! (`tenant_id`, `embedding vector(384)`): memories and context chunks.
//!
//! A [`VectorTable`] names a table and the prefix of its indexes (`<prefix><tenant uuid, simple>`).
//! The same policy serves all of them ([`crate::search::VectorIndexPolicy`]: a tenant gets an index
//! of its own once it holds `min_rows` embedded rows of that table), the same builder
//! ([`crate::Store::maintain_vector_indexes`]) and one cache of which tenants have which index.
//! Why per tenant and not one global index: see [`crate::search`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::search::VectorIndexPolicy;
use crate::Result;

/// A table whose tenants get HNSW indexes of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VectorTable {
    pub table: &'static str,
    /// Index names are this prefix and the tenant's uuid without dashes.
    pub prefix: &'static str,
}

/// `contextual_memories`, indexes `cm_hnsw_<tenant>`.
pub const MEMORIES: VectorTable = VectorTable {
    table: "contextual_memories",
    prefix: "cm_hnsw_",
};

/// `context_chunks`, indexes `cc_hnsw_<tenant>`.
pub const CONTEXT_CHUNKS: VectorTable = VectorTable {
    table: "context_chunks",
    prefix: "cc_hnsw_",
};

/// Every table the builder maintains.
pub const TABLES: [VectorTable; 2] = [MEMORIES, CONTEXT_CHUNKS];

/// Which tenants have a valid index, per table name.
pub(crate) type IndexCache = Arc<RwLock<HashMap<&'static str, HashSet<Uuid>>>>;

/// What one run did to one table's indexes.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct TableIndexReport {
    pub built: Vec<Uuid>,
    pub dropped: Vec<String>,
    pub indexed_tenants: usize,
}

impl VectorTable {
    /// Name of the partial HNSW index of `tenant` on this table.
    pub fn index_name(&self, tenant: Uuid) -> String {
        format!("{}{}", self.prefix, tenant.simple())
    }

    /// `LIKE` pattern of this table's index names (underscores escaped).
    fn like(&self) -> String {
        format!("{}%", self.prefix.replace('_', "\\_"))
    }

    /// Tenants that have a valid index of their own on this table.
    pub async fn indexed_tenants(&self, pool: &PgPool) -> Result<HashSet<Uuid>> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = $1::regclass AND c.relname LIKE $2 AND i.indisvalid AND i.indisready",
        )
        .bind(self.table)
        .bind(self.like())
        .fetch_all(pool)
        .await?;
        Ok(names
            .iter()
            .filter_map(|n| n.strip_prefix(self.prefix)?.parse().ok())
            .collect())
    }

    /// Drops invalid leftovers (an interrupted build) and indexes of tenants that are gone, then
    /// builds (CONCURRENTLY: writes go on meanwhile) the missing indexes of tenants over the
    /// threshold, at most `policy.max_builds_per_run`. The caller holds the builders' lock.
    pub(crate) async fn maintain(
        &self,
        pool: &PgPool,
        conn: &mut PgConnection,
        policy: VectorIndexPolicy,
    ) -> Result<TableIndexReport> {
        let mut report = TableIndexReport::default();
        let stale: Vec<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = $1::regclass AND c.relname LIKE $2
               AND (NOT i.indisvalid OR NOT EXISTS (
                    SELECT 1 FROM tenants t WHERE $3 || replace(t.id::text, '-', '') = c.relname))",
        )
        .bind(self.table)
        .bind(self.like())
        .bind(self.prefix)
        .fetch_all(&mut *conn)
        .await?;
        for name in stale {
            sqlx::query(&format!("DROP INDEX CONCURRENTLY IF EXISTS \"{name}\""))
                .execute(&mut *conn)
                .await?;
            report.dropped.push(name);
        }
        let existing = self.indexed_tenants(pool).await?;
        // The table name is one of the constants above, never input.
        let big: Vec<Uuid> = sqlx::query_scalar(&format!(
            "SELECT tenant_id FROM {} WHERE embedding IS NOT NULL
             GROUP BY tenant_id HAVING count(*) >= $1 ORDER BY count(*) DESC",
            self.table
        ))
        .bind(policy.min_rows)
        .fetch_all(&mut *conn)
        .await?;
        for tenant in big
            .into_iter()
            .filter(|t| !existing.contains(t))
            .take(policy.max_builds_per_run)
        {
            let name = self.index_name(tenant);
            tracing::info!(%tenant, index = %name, table = self.table, "building the tenant's HNSW index");
            sqlx::query("SET maintenance_work_mem = '512MB'")
                .execute(&mut *conn)
                .await?;
            // A Uuid renders only hex digits and dashes: nothing to escape.
            sqlx::query(&format!(
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"{name}\" ON {}
                 USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)
                 WHERE tenant_id = '{tenant}'::uuid",
                self.table
            ))
            .execute(&mut *conn)
            .await?;
            sqlx::query("RESET maintenance_work_mem")
                .execute(&mut *conn)
                .await?;
            report.built.push(tenant);
        }
        Ok(report)
    }
}
