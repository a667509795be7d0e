//! The seed's 13 tables with the fields the issue names, its 5 enums, and constraints that reject
//! nonsense.

use mnemo_store::testing::TestDb;
use sqlx::PgPool;

use super::{create_tenant, db_error, two_tenants};

/// (table, column, type as `format_type` prints it).
const SEED_FIELDS: &[(&str, &str, &str)] = &[
    ("projects", "id", "uuid"),
    ("projects", "name", "text"),
    ("projects", "description", "text"),
    ("projects", "owner_id", "text"),
    ("tenants", "id", "uuid"),
    ("tenants", "tenant_id", "text"),
    ("tenants", "project_id", "uuid"),
    ("tenants", "name", "text"),
    ("tenants", "isolation_level", "isolation_level"),
    ("tenants", "encryption_enabled", "boolean"),
    ("contextual_memories", "memory_id", "text"),
    ("contextual_memories", "tenant_id", "uuid"),
    ("contextual_memories", "relevance_score", "double precision"),
    ("contextual_memories", "content", "jsonb"),
    ("contextual_memories", "embedding", "vector(384)"),
    (
        "contextual_memories",
        "expires_at",
        "timestamp with time zone",
    ),
    ("offloaded_contexts", "context_id", "text"),
    ("offloaded_contexts", "memory_id", "text"),
    ("offloaded_contexts", "relevance_score", "double precision"),
    ("offloaded_contexts", "embedding", "vector(384)"),
    (
        "offloaded_contexts",
        "compression_ratio",
        "double precision",
    ),
    ("federated_sessions", "session_id", "text"),
    ("federated_sessions", "topic", "text"),
    ("federated_sessions", "status", "session_status"),
    ("federated_sessions", "initiator_tenant_id", "uuid"),
    (
        "federated_sessions",
        "aggregation_method",
        "aggregation_method",
    ),
    ("federated_participants", "tenant_id", "uuid"),
    ("federated_participants", "privacy_level", "privacy_level"),
    (
        "federated_participants",
        "reputation_score",
        "double precision",
    ),
    ("aggregated_insights", "session_id", "uuid"),
    ("aggregated_insights", "content", "jsonb"),
    ("tenant_access_policies", "tenant_id", "uuid"),
    ("tenant_access_policies", "permissions", "text[]"),
    ("tenant_sharing_rules", "tenant_id", "uuid"),
    ("tenant_sharing_rules", "target_tenant_id", "uuid"),
    ("data_retention_policies", "tenant_id", "uuid"),
    ("data_retention_policies", "retention_days", "integer"),
    (
        "data_retention_policies",
        "archival_policy",
        "archival_policy",
    ),
    ("memory_relationships", "tenant_id", "uuid"),
    ("memory_relationships", "source_memory_id", "uuid"),
    ("memory_relationships", "target_memory_id", "uuid"),
    ("memory_relationships", "relationship_type", "text"),
    ("audit_log", "tenant_id", "uuid"),
    ("audit_log", "action", "text"),
    ("audit_log", "created_at", "timestamp with time zone"),
    ("performance_metrics", "tenant_id", "uuid"),
    ("performance_metrics", "metric_type", "text"),
    ("performance_metrics", "metric_name", "text"),
    ("performance_metrics", "metric_value", "double precision"),
    ("performance_metrics", "metric_unit", "text"),
];

#[tokio::test]
async fn all_thirteen_seed_tables_exist() {
    let db = TestDb::new().await;
    let mut found: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p') AND NOT c.relispartition
           AND c.relname = ANY($1)",
    )
    .bind(
        [
            "projects",
            "tenants",
            "contextual_memories",
            "offloaded_contexts",
            "federated_sessions",
            "tenant_access_policies",
            "tenant_sharing_rules",
            "data_retention_policies",
            "memory_relationships",
            "federated_participants",
            "aggregated_insights",
            "audit_log",
            "performance_metrics",
        ]
        .as_slice(),
    )
    .fetch_all(db.store.pool())
    .await
    .expect("catalog");
    found.sort();
    assert_eq!(found.len(), 13, "found only {found:?}");
}

#[tokio::test]
async fn seed_tables_have_the_fields_the_seed_names_with_their_types() {
    let db = TestDb::new().await;
    let mut missing = Vec::new();
    for &(table, column, expected) in SEED_FIELDS {
        let actual: Option<String> = sqlx::query_scalar(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = to_regclass($1) AND attname = $2 AND attnum > 0 AND NOT attisdropped",
        )
        .bind(table)
        .bind(column)
        .fetch_optional(db.store.pool())
        .await
        .expect("catalog");
        if actual.as_deref() != Some(expected) {
            missing.push(format!(
                "{table}.{column}: expected {expected}, found {actual:?}"
            ));
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

#[tokio::test]
async fn the_five_enums_have_exactly_the_seed_values() {
    let db = TestDb::new().await;
    for (name, values) in [
        ("isolation_level", &["strict", "shared", "federated"][..]),
        ("privacy_level", &["basic", "differential", "secure"][..]),
        (
            "session_status",
            &["forming", "active", "aggregating", "completed", "failed"][..],
        ),
        (
            "aggregation_method",
            &["weighted", "consensus", "hybrid"][..],
        ),
        ("archival_policy", &["delete", "archive", "retain"][..]),
    ] {
        let labels: Vec<String> = sqlx::query_scalar(
            "SELECT enumlabel::text FROM pg_enum WHERE enumtypid = to_regtype($1) ORDER BY enumsortorder",
        )
        .bind(name)
        .fetch_all(db.store.pool())
        .await
        .expect("pg_enum");
        assert_eq!(labels, values, "enum {name}");
    }
}

/// Runs `sql` (autocommit) and returns the SQLSTATE it fails with.
async fn rejection(pool: &PgPool, sql: &str) -> String {
    let err = sqlx::raw_sql(sql)
        .execute(pool)
        .await
        .expect_err(&format!("accepted: {sql}"));
    db_error(&err).0
}

const CHECK_VIOLATION: &str = "23514";
const UNIQUE_VIOLATION: &str = "23505";
const INVALID_TEXT_REPRESENTATION: &str = "22P02";

#[tokio::test]
async fn relevance_outside_zero_to_one_is_rejected() {
    let db = TestDb::new().await;
    let (a, _) = two_tenants(db.store.pool()).await;
    for score in ["1.5", "-0.1", "'NaN'"] {
        let sql = format!(
            "INSERT INTO contextual_memories (tenant_id, memory_id, relevance_score, content)
             VALUES ('{a}', 'm', {score}, '{{}}')"
        );
        assert_eq!(
            rejection(db.store.pool(), &sql).await,
            CHECK_VIOLATION,
            "{score}"
        );
    }
    let sql = format!(
        "INSERT INTO offloaded_contexts (tenant_id, context_id, relevance_score) VALUES ('{a}', 'c', 1.5)"
    );
    assert_eq!(rejection(db.store.pool(), &sql).await, CHECK_VIOLATION);
}

#[tokio::test]
async fn compression_ratio_zero_or_negative_is_rejected() {
    let db = TestDb::new().await;
    let (a, _) = two_tenants(db.store.pool()).await;
    for ratio in ["0", "-2.5"] {
        let sql = format!(
            "INSERT INTO offloaded_contexts (tenant_id, context_id, compression_ratio) VALUES ('{a}', 'c', {ratio})"
        );
        assert_eq!(
            rejection(db.store.pool(), &sql).await,
            CHECK_VIOLATION,
            "{ratio}"
        );
    }
}

#[tokio::test]
async fn empty_or_blank_names_are_rejected() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    let project: uuid::Uuid = sqlx::query_scalar("SELECT project_id FROM tenants WHERE id = $1")
        .bind(a)
        .fetch_one(pool)
        .await
        .expect("project");
    for sql in [
        "INSERT INTO projects (name, owner_id) VALUES ('', 'owner')".to_owned(),
        "INSERT INTO projects (name, owner_id) VALUES ('   ', 'owner')".to_owned(),
        "INSERT INTO projects (name, owner_id) VALUES ('x', '')".to_owned(),
        format!("INSERT INTO tenants (tenant_id, project_id, name) VALUES ('t-x', '{project}', '')"),
        format!("INSERT INTO tenants (tenant_id, project_id, name) VALUES ('', '{project}', 'x')"),
        format!(
            "INSERT INTO tenant_access_policies (tenant_id, name, resource_type, permissions)
             VALUES ('{a}', ' ', 'memories', ARRAY['read'])"
        ),
        format!("INSERT INTO federated_sessions (session_id, topic, initiator_tenant_id) VALUES ('s', '', '{a}')"),
        format!("INSERT INTO contextual_memories (tenant_id, memory_id, content) VALUES ('{a}', '', '{{}}')"),
    ] {
        assert_eq!(rejection(pool, &sql).await, CHECK_VIOLATION, "{sql}");
    }
}

#[tokio::test]
async fn memory_id_is_unique_per_tenant_but_not_across_tenants() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, b) = two_tenants(pool).await;
    let insert = |tenant: uuid::Uuid| {
        format!(
            "INSERT INTO contextual_memories (tenant_id, memory_id, content) VALUES ('{tenant}', 'memory-123', '{{}}')"
        )
    };
    sqlx::raw_sql(&insert(a))
        .execute(pool)
        .await
        .expect("first");
    let err = sqlx::raw_sql(&insert(a))
        .execute(pool)
        .await
        .expect_err("a second memory-123 of tenant A");
    assert_eq!(db_error(&err).0, UNIQUE_VIOLATION);
    assert_eq!(
        err.as_database_error().and_then(|e| e.constraint()),
        Some("contextual_memories_tenant_memory_key")
    );
    sqlx::raw_sql(&insert(b))
        .execute(pool)
        .await
        .expect("tenant B may use the same memory_id");
}

#[tokio::test]
async fn values_outside_an_enum_are_rejected() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    let project: uuid::Uuid = sqlx::query_scalar("SELECT project_id FROM tenants WHERE id = $1")
        .bind(a)
        .fetch_one(pool)
        .await
        .expect("project");
    for sql in [
        format!(
            "INSERT INTO tenants (tenant_id, project_id, name, isolation_level) VALUES ('t-x', '{project}', 'x', 'paranoid')"
        ),
        format!("INSERT INTO federated_participants (tenant_id, privacy_level) VALUES ('{a}', 'none')"),
        format!(
            "INSERT INTO federated_sessions (session_id, topic, initiator_tenant_id, status) VALUES ('s', 't', '{a}', 'done')"
        ),
        format!(
            "INSERT INTO federated_sessions (session_id, topic, initiator_tenant_id, aggregation_method)
             VALUES ('s', 't', '{a}', 'average')"
        ),
        format!(
            "INSERT INTO data_retention_policies (tenant_id, resource_type, archival_policy) VALUES ('{a}', 'memories', 'shred')"
        ),
    ] {
        assert_eq!(rejection(pool, &sql).await, INVALID_TEXT_REPRESENTATION, "{sql}");
    }
}

#[tokio::test]
async fn tenant_key_is_unique_across_projects() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let p1 = super::create_project(pool, "p1").await;
    let p2 = super::create_project(pool, "p2").await;
    create_tenant(pool, p1, "tenant-001").await;
    let sql = format!(
        "INSERT INTO tenants (tenant_id, project_id, name) VALUES ('tenant-001', '{p2}', 'x')"
    );
    assert_eq!(rejection(pool, &sql).await, UNIQUE_VIOLATION);
}
