//! The database schema against a real PostgreSQL: the seed's SQL runs as written, tables and
//! constraints, Row Level Security as the application role, the Citus rule, maintenance
//! functions, views and migrations. Each test gets a fresh migrated database (`TestDb`).
//!
//! - `seed_examples`: the seed's "Usage Examples", "Maintenance" and "Monitoring" SQL.
//! - `tables`: the 13 tables, their fields, the 5 enums, constraints that reject nonsense.
//! - `rls`: tenant isolation as `mnemo_app`, the role's privileges, catalog flags.
//! - `citus`: every key of a tenant-owned table includes `tenant_id`; indexes and materialized views.
//! - `maintenance`: archive, clean, usage and partition functions.
//! - `views`: the reporting views exist and apply the caller's Row Level Security.
//! - `migrations`: applying them twice changes nothing.
//! - `usage`: the per-tenant usage counters follow every write path.
//! - `gin`: text, tag and containment filters use their GIN indexes as the application role.
//! - `contexts`: offloaded contexts and their chunks: storage, cascade, quotas, expiry, and the
//!   plans of their queries as the application role.
//! - `federated`: the session lifecycle in the database (every illegal change refused, even as
//!   the owner), terms and ledgers that cannot be rewritten, insights for contributors only, the
//!   privileged functions' guards, the zCDP conversion in SQL.

// The modules live in tests/schema/ (a crate root's modules would otherwise resolve in tests/).
#[path = "schema/citus.rs"]
mod citus;
#[path = "schema/contexts.rs"]
mod contexts;
#[path = "schema/federated.rs"]
mod federated;
#[path = "schema/gin.rs"]
mod gin;
#[path = "schema/maintenance.rs"]
mod maintenance;
#[path = "schema/migrations.rs"]
mod migrations;
#[path = "schema/rls.rs"]
mod rls;
#[path = "schema/seed_examples.rs"]
mod seed_examples;
#[path = "schema/tables.rs"]
mod tables;
#[path = "schema/usage.rs"]
mod usage;
#[path = "schema/views.rs"]
mod views;

use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

/// Tables whose rows belong to one tenant: distributed by `tenant_id` under Citus and isolated by
/// Row Level Security.
const TENANT_OWNED: [&str; 17] = [
    "tenant_access_policies",
    "tenant_sharing_rules",
    "data_retention_policies",
    "contextual_memories",
    "contextual_memories_archive",
    "memory_relationships",
    "memory_relationships_archive",
    "offloaded_contexts",
    "federated_participants",
    "audit_log",
    "audit_log_archive",
    "tenant_usage",
    "tenant_daily_activity",
    "context_chunks",
    "federated_memberships",
    "federated_contributions",
    "federated_privacy_ledger",
];

/// Creates a project (as the owner) and returns its id.
async fn create_project(pool: &PgPool, name: &str) -> Uuid {
    sqlx::query_scalar("INSERT INTO projects (name, owner_id) VALUES ($1, 'owner') RETURNING id")
        .bind(name)
        .fetch_one(pool)
        .await
        .expect("insert project")
}

/// Creates a tenant of `project` (as the owner) and returns its uuid.
async fn create_tenant(pool: &PgPool, project: Uuid, key: &str) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO tenants (tenant_id, project_id, name) VALUES ($1, $2, $1) RETURNING id",
    )
    .bind(key)
    .bind(project)
    .fetch_one(pool)
    .await
    .expect("insert tenant")
}

/// Two tenants of one project.
async fn two_tenants(pool: &PgPool) -> (Uuid, Uuid) {
    let project = create_project(pool, "p").await;
    (
        create_tenant(pool, project, "tenant-a").await,
        create_tenant(pool, project, "tenant-b").await,
    )
}

/// Stores a memory (as the owner) and returns its row id.
async fn create_memory(pool: &PgPool, tenant: Uuid, memory_id: &str) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO contextual_memories (tenant_id, memory_id, content)
         VALUES ($1, $2, '{\"text\": \"remember this\"}') RETURNING id",
    )
    .bind(tenant)
    .bind(memory_id)
    .fetch_one(pool)
    .await
    .expect("insert memory")
}

/// Stores an offloaded context (as the owner) and returns its row id.
async fn create_context(pool: &PgPool, tenant: Uuid, context_id: &str) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO offloaded_contexts (tenant_id, context_id) VALUES ($1, $2) RETURNING id",
    )
    .bind(tenant)
    .bind(context_id)
    .fetch_one(pool)
    .await
    .expect("insert context")
}

/// A transaction as the application role, exactly as `TenantTx` opens it, with `tenant` set (or
/// no tenant at all).
async fn app_tx(pool: &PgPool, tenant: Option<Uuid>) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SELECT set_config('role', 'mnemo_app', true)")
        .execute(&mut *tx)
        .await
        .expect("set role");
    if let Some(t) = tenant {
        sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
            .bind(t.to_string())
            .execute(&mut *tx)
            .await
            .expect("set tenant");
    }
    tx
}

/// The SQLSTATE and message of a database error (panics on any other error).
fn db_error(err: &sqlx::Error) -> (String, String) {
    let db = err
        .as_database_error()
        .unwrap_or_else(|| panic!("expected a database error, got {err}"));
    (
        db.code().map(|c| c.into_owned()).unwrap_or_default(),
        db.message().to_owned(),
    )
}

/// A pgvector literal of 384 dimensions (the schema's `vector(384)`).
fn vector_literal(value: impl Fn(usize) -> f64) -> String {
    let parts: Vec<String> = (0..384).map(|i| format!("{:.3}", value(i))).collect();
    format!("[{}]", parts.join(", "))
}
