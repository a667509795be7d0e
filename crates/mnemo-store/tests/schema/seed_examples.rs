//! The seed's "Usage Examples", "Maintenance" and "Monitoring" SQL, copied verbatim, run against a
//! migrated database as the owner. Changes, each said where it is made: the extension is `vector`
//! (the seed's `"pgvector"` does not exist) without `uuid-ossp` (the schema uses the built-in
//! `gen_random_uuid()`), the `'[0.1, 0.2, ...]'` placeholder becomes a real 384-dimension vector, and
//! the unbound `tenant_id` argument of `log_performance_metric` is supplied by a one-row `FROM`.

use mnemo_store::testing::TestDb;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::vector_literal;

const ENABLE_EXTENSION: &str = r#"CREATE EXTENSION IF NOT EXISTS "vector";"#;

const BASIC_TENANT_SETUP: &str = r#"-- Create a project
INSERT INTO projects (name, description, owner_id)
VALUES ('my-project', 'My AI project', 'user123');

-- Create a tenant
INSERT INTO tenants (tenant_id, project_id, name, isolation_level)
VALUES ('tenant-001', (SELECT id FROM projects WHERE name = 'my-project'), 'Production', 'shared');"#;

const STORING_MEMORIES: &str = r#"-- Store a contextual memory
INSERT INTO contextual_memories (
    memory_id, tenant_id, relevance_score, content
) VALUES (
    'memory-123',
    (SELECT id FROM tenants WHERE tenant_id = 'tenant-001'),
    0.85,
    '{"taskType": "learning", "outcome": "success", "lessons": ["Important lesson"]}'
);"#;

const VECTOR_SIMILARITY_SEARCH: &str = r#"-- Find similar memories using vector search
SELECT memory_id, relevance_score,
       1 - (embedding <=> '[0.1, 0.2, ...]') as similarity
FROM offloaded_contexts
ORDER BY embedding <=> '[0.1, 0.2, ...]'
LIMIT 10;"#;

const FEDERATED_LEARNING: &str = r#"-- Register as federated learning participant
INSERT INTO federated_participants (tenant_id, privacy_level)
VALUES ((SELECT id FROM tenants WHERE tenant_id = 'tenant-001'), 'differential');

-- Create a learning session
INSERT INTO federated_sessions (session_id, topic, initiator_tenant_id)
VALUES ('session-abc', 'code-review-best-practices', (SELECT id FROM tenants WHERE tenant_id = 'tenant-001'));"#;

const REFRESH_ANALYTICS_VIEWS: &str = "SELECT refresh_analytics_views();";
const CLEAN_EXPIRED_DATA: &str = "SELECT clean_expired_memories();";
const ARCHIVE_OLD_AUDIT_LOGS: &str = "SELECT archive_old_audit_logs(365);";

const CHECK_TENANT_MEMORY_USAGE: &str = r#"-- Check tenant memory usage
SELECT * FROM get_tenant_memory_usage((SELECT id FROM tenants WHERE tenant_id = 'tenant-001'));"#;

const VIEW_SYSTEM_PERFORMANCE: &str = r#"-- View system performance
SELECT * FROM system_performance_summary
WHERE hour > NOW() - INTERVAL '24 hours'
ORDER BY hour DESC;"#;

// The seed writes `SELECT log_performance_metric(tenant_id, ...)` with `tenant_id` standing for the
// caller's tenant; a bare SELECT cannot bind it, so the call (verbatim) reads it from a one-row FROM.
const LOG_CUSTOM_METRIC: &str = r#"-- Log custom metrics
SELECT log_performance_metric(tenant_id, 'memory', 'retrieval_time', 150.5, 'ms')
FROM (SELECT id AS tenant_id FROM tenants WHERE tenant_id = 'tenant-001') AS caller;"#;

const CHECK_SYSTEM_HEALTH: &str = r#"-- Check system health
SELECT * FROM system_health
WHERE timestamp > NOW() - INTERVAL '1 hour'
ORDER BY timestamp DESC;"#;

/// The seed's `'[0.1, 0.2, ...]'` is an elided placeholder (`...` is not valid pgvector syntax, and
/// a 2-dimension vector cannot be compared with the schema's `vector(384)` column), so it becomes
/// the literal vector 0.1, 0.2, 0.3, … of 384 dimensions.
fn seed_query_vector() -> String {
    vector_literal(|i| 0.1 * (i + 1) as f64)
}

async fn run_setup_examples(pool: &PgPool) {
    for sql in [
        ENABLE_EXTENSION,
        BASIC_TENANT_SETUP,
        STORING_MEMORIES,
        FEDERATED_LEARNING,
    ] {
        sqlx::raw_sql(sql)
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("seed SQL failed: {e}\n{sql}"));
    }
}

async fn tenant_001(pool: &PgPool) -> Uuid {
    sqlx::query_scalar("SELECT id FROM tenants WHERE tenant_id = 'tenant-001'")
        .fetch_one(pool)
        .await
        .expect("tenant-001 exists")
}

#[tokio::test]
async fn seed_usage_examples_run_as_written() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    run_setup_examples(pool).await;

    let (isolation, project_owner): (String, String) = sqlx::query_as(
        "SELECT t.isolation_level::text, p.owner_id FROM tenants t JOIN projects p ON p.id = t.project_id
         WHERE t.tenant_id = 'tenant-001' AND p.name = 'my-project'",
    )
    .fetch_one(pool)
    .await
    .expect("tenant-001 of my-project");
    assert_eq!(
        (isolation.as_str(), project_owner.as_str()),
        ("shared", "user123")
    );

    let (relevance, task_type): (f64, String) = sqlx::query_as(
        "SELECT relevance_score, content->>'taskType' FROM contextual_memories WHERE memory_id = 'memory-123'",
    )
    .fetch_one(pool)
    .await
    .expect("memory-123 stored");
    assert_eq!((relevance, task_type.as_str()), (0.85, "learning"));

    let tenant = tenant_001(pool).await;
    let participant: String = sqlx::query_scalar(
        "SELECT privacy_level::text FROM federated_participants WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_one(pool)
    .await
    .expect("participant registered");
    assert_eq!(participant, "differential");
    let (status, initiator): (String, Uuid) = sqlx::query_as(
        "SELECT status::text, initiator_tenant_id FROM federated_sessions WHERE session_id = 'session-abc'",
    )
    .fetch_one(pool)
    .await
    .expect("session created");
    assert_eq!((status.as_str(), initiator), ("forming", tenant));
}

#[tokio::test]
async fn seed_vector_similarity_search_runs_and_ranks_the_nearest_context_first() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    run_setup_examples(pool).await;
    let tenant = tenant_001(pool).await;
    let query_vector = seed_query_vector();
    // Two contexts: one pointing the same way as the query vector, one the opposite way.
    for (context, memory, embedding) in [
        (
            "ctx-far",
            "memory-far",
            vector_literal(|i| -0.1 * (i + 1) as f64),
        ),
        ("ctx-near", "memory-123", query_vector.clone()),
    ] {
        sqlx::query(
            "INSERT INTO offloaded_contexts (tenant_id, context_id, memory_id, relevance_score, embedding)
             VALUES ($1, $2, $3, 0.7, $4::vector)",
        )
        .bind(tenant)
        .bind(context)
        .bind(memory)
        .bind(&embedding)
        .execute(pool)
        .await
        .expect("insert offloaded context");
    }

    let sql = VECTOR_SIMILARITY_SEARCH.replace("'[0.1, 0.2, ...]'", &format!("'{query_vector}'"));
    let rows = sqlx::query(&sql)
        .fetch_all(pool)
        .await
        .expect("seed vector search");
    let ranked: Vec<(String, f64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<String, _>("memory_id"),
                r.get::<f64, _>("relevance_score"),
                r.get::<f64, _>("similarity"),
            )
        })
        .collect();
    assert_eq!(ranked.len(), 2);
    assert_eq!(ranked[0].0, "memory-123");
    assert!(
        (ranked[0].2 - 1.0).abs() < 1e-6,
        "same direction: {ranked:?}"
    );
    assert!(
        (ranked[1].2 + 1.0).abs() < 1e-6,
        "opposite direction: {ranked:?}"
    );
    assert_eq!(ranked[0].1, 0.7);
}

#[tokio::test]
async fn seed_maintenance_tasks_run_as_written() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    run_setup_examples(pool).await;

    sqlx::query(REFRESH_ANALYTICS_VIEWS)
        .execute(pool)
        .await
        .expect("refresh_analytics_views()");
    let cleaned: i32 = sqlx::query_scalar(CLEAN_EXPIRED_DATA)
        .fetch_one(pool)
        .await
        .expect("clean_expired_memories()");
    assert_eq!(cleaned, 0, "memory-123 has no expiry");
    let archived: i32 = sqlx::query_scalar(ARCHIVE_OLD_AUDIT_LOGS)
        .fetch_one(pool)
        .await
        .expect("archive_old_audit_logs(365)");
    assert_eq!(archived, 0);

    let analysed: i64 = sqlx::query_scalar(
        "SELECT memory_count FROM tenant_memory_analytics WHERE tenant_key = 'tenant-001'",
    )
    .fetch_one(pool)
    .await
    .expect("the refreshed analytics view has tenant-001");
    assert_eq!(analysed, 1);
}

#[tokio::test]
async fn seed_performance_monitoring_queries_run_as_written() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    run_setup_examples(pool).await;

    let usage = sqlx::query(CHECK_TENANT_MEMORY_USAGE)
        .fetch_one(pool)
        .await
        .expect("get_tenant_memory_usage");
    assert_eq!(usage.get::<i64, _>("total_memories"), 1);
    assert_eq!(usage.get::<Uuid, _>("tenant_id"), tenant_001(pool).await);

    let metric: Uuid = sqlx::query_scalar(LOG_CUSTOM_METRIC)
        .fetch_one(pool)
        .await
        .expect("log_performance_metric");
    let logged: (String, String, f64, Option<String>) = sqlx::query_as(
        "SELECT metric_type, metric_name, metric_value, metric_unit FROM performance_metrics WHERE id = $1",
    )
    .bind(metric)
    .fetch_one(pool)
    .await
    .expect("the metric is stored");
    assert_eq!(
        logged,
        (
            "memory".into(),
            "retrieval_time".into(),
            150.5,
            Some("ms".into())
        )
    );

    let summary = sqlx::query(VIEW_SYSTEM_PERFORMANCE)
        .fetch_all(pool)
        .await
        .expect("system_performance_summary");
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0].get::<String, _>("metric_name"), "retrieval_time");
    assert_eq!(summary[0].get::<f64, _>("avg_value"), 150.5);

    let health = sqlx::query(CHECK_SYSTEM_HEALTH)
        .fetch_all(pool)
        .await
        .expect("system_health");
    assert_eq!(health.len(), 1);
    assert_eq!(health[0].get::<i64, _>("sample_count"), 1);
    assert_eq!(
        health[0].get::<Option<f64>, _>("avg_latency_ms"),
        Some(150.5)
    );
    assert_eq!(health[0].get::<String, _>("status"), "healthy");
}
