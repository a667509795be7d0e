//! The reporting views exist with the seed's column names and, being `security_invoker`, show the
//! application role only what its Row Level Security lets it see.

use mnemo_store::testing::TestDb;
use sqlx::PgPool;
use uuid::Uuid;

use super::{app_tx, create_memory, create_project, create_tenant};

const VIEWS: [&str; 5] = [
    "federated_learning_stats",
    "memory_usage_stats",
    "system_health",
    "system_performance_summary",
    "tenant_overview",
];

#[tokio::test]
async fn reporting_views_exist_with_the_seed_columns_and_are_security_invoker() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let views: Vec<(String, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT relname::text, reloptions::text[] FROM pg_class
         WHERE relnamespace = 'public'::regnamespace AND relkind = 'v' AND relname = ANY($1)
         ORDER BY 1",
    )
    .bind(VIEWS.as_slice())
    .fetch_all(pool)
    .await
    .expect("catalog");
    let names: Vec<&str> = views.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, VIEWS);
    for (view, options) in &views {
        assert!(
            options
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|o| o == "security_invoker=true"),
            "{view}: {options:?}"
        );
    }
    for (view, column) in [
        ("system_performance_summary", "hour"),
        ("system_health", "timestamp"),
    ] {
        let kind: Option<String> = sqlx::query_scalar(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2",
        )
        .bind(view)
        .bind(column)
        .fetch_optional(pool)
        .await
        .expect("catalog");
        assert_eq!(
            kind.as_deref(),
            Some("timestamp with time zone"),
            "{view}.{column}"
        );
    }
}

struct World {
    a: Uuid,
    b: Uuid,
    other_project_tenant: Uuid,
}

/// Tenants A and B of one project, C of another; memories, metrics and federated sessions of each,
/// plus a system metric (no tenant).
async fn world(pool: &PgPool) -> World {
    let p1 = create_project(pool, "p1").await;
    let p2 = create_project(pool, "p2").await;
    let a = create_tenant(pool, p1, "tenant-a").await;
    let b = create_tenant(pool, p1, "tenant-b").await;
    let c = create_tenant(pool, p2, "tenant-c").await;
    for (tenant, memories) in [(a, 1), (b, 2), (c, 3)] {
        for i in 0..memories {
            create_memory(pool, tenant, &format!("m-{i}")).await;
        }
    }
    for (tenant, name) in [
        (Some(a), "a_metric"),
        (Some(b), "b_metric"),
        (None, "system_metric"),
    ] {
        sqlx::query("SELECT log_performance_metric($1, 'memory', $2, 10, 'ms')")
            .bind(tenant)
            .bind(name)
            .execute(pool)
            .await
            .expect("metric");
    }
    for (tenant, session) in [(a, "session-a"), (b, "session-b"), (c, "session-c")] {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO federated_sessions (session_id, topic, initiator_tenant_id) VALUES ($1, 'topic', $2) RETURNING id",
        )
        .bind(session)
        .bind(tenant)
        .fetch_one(pool)
        .await
        .expect("session");
        sqlx::query(
            "INSERT INTO aggregated_insights (session_id, insight_type, content, confidence_score, participant_count)
             VALUES ($1, 'pattern', '{}', 0.8, 3)",
        )
        .bind(id)
        .execute(pool)
        .await
        .expect("insight");
        // Each initiator contributed to its own session's release.
        sqlx::query(
            "INSERT INTO federated_memberships (tenant_id, session_id, status) VALUES ($1, $2, 'contributed')",
        )
        .bind(tenant)
        .bind(id)
        .execute(pool)
        .await
        .expect("membership");
    }
    World {
        a,
        b,
        other_project_tenant: c,
    }
}

#[tokio::test]
async fn the_owner_sees_every_tenant_in_the_reporting_views() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    world(pool).await;
    let counts: (i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tenant_overview), (SELECT count(*) FROM memory_usage_stats),
                (SELECT sum(sample_count)::int8 FROM system_performance_summary),
                (SELECT sum(sample_count)::int8 FROM system_health),
                (SELECT count(*) FROM federated_learning_stats)",
    )
    .fetch_one(pool)
    .await
    .expect("views as owner");
    assert_eq!(counts, (3, 3, 3, 3, 3));
}

#[tokio::test]
async fn tenant_views_show_the_application_role_only_its_tenant() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let w = world(pool).await;
    let mut tx = app_tx(pool, Some(w.b)).await;
    let overview: Vec<(Uuid, i64)> = sqlx::query_as("SELECT id, memory_count FROM tenant_overview")
        .fetch_all(&mut *tx)
        .await
        .expect("tenant_overview");
    assert_eq!(overview, [(w.b, 2)]);
    let usage: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT tenant_id, total_memories FROM memory_usage_stats")
            .fetch_all(&mut *tx)
            .await
            .expect("memory_usage_stats");
    assert_eq!(usage, [(w.b, 2)]);
}

#[tokio::test]
async fn metric_views_show_the_application_role_only_its_tenant_metrics() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let w = world(pool).await;
    let mut tx = app_tx(pool, Some(w.a)).await;
    let summary: Vec<(String, i64)> = sqlx::query_as(
        "SELECT metric_name, sample_count FROM system_performance_summary WHERE hour > now() - interval '24 hours'",
    )
    .fetch_all(&mut *tx)
    .await
    .expect("system_performance_summary");
    assert_eq!(summary, [("a_metric".to_owned(), 1)]);
    let health: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(sample_count), 0)::int8 FROM system_health WHERE timestamp > now() - interval '1 hour'",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("system_health");
    assert_eq!(health, 1);
}

#[tokio::test]
async fn federated_views_show_the_application_role_only_its_projects_sessions() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let w = world(pool).await;
    let mut tx = app_tx(pool, Some(w.a)).await;
    let sessions: Vec<(String, i64)> = sqlx::query_as(
        "SELECT session_id, insight_count FROM federated_learning_stats ORDER BY session_id",
    )
    .fetch_all(&mut *tx)
    .await
    .expect("federated_learning_stats");
    // Both sessions of the project are visible; the insight only of the one A contributed to.
    assert_eq!(
        sessions,
        [("session-a".to_owned(), 1), ("session-b".to_owned(), 0)]
    );
    let foreign_insights: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM aggregated_insights i JOIN federated_sessions s ON s.id = i.session_id
         WHERE s.initiator_tenant_id = $1",
    )
    .bind(w.other_project_tenant)
    .fetch_one(&mut *tx)
    .await
    .expect("aggregated_insights");
    assert_eq!(foreign_insights, 0);
}
