//! The maintenance functions do what they say: archive moves audit rows (still readable), clean
//! removes only expired memories as the retention policies say, usage counts correctly, and
//! partitions are created ahead without losing rows that landed in a default partition.

use mnemo_store::testing::TestDb;
use mnemo_store::TenantScope;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{app_tx, create_project, create_tenant, two_tenants, vector_literal};

/// Writes an audit row of `tenant` dated `age_days` ago (as the owner); returns its id.
async fn audit_row(pool: &PgPool, tenant: Uuid, age_days: i32) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO audit_log (tenant_id, action, resource_type, resource_id, outcome, status_code, details, created_at)
         VALUES ($1, 'create', 'memories', 'memory-' || $2, 'success', 201, jsonb_build_object('age', $2),
                 now() - make_interval(days => $2))
         RETURNING id",
    )
    .bind(tenant)
    .bind(age_days)
    .fetch_one(pool)
    .await
    .expect("insert audit row")
}

#[tokio::test]
async fn archive_old_audit_logs_moves_old_rows_to_the_archive_and_returns_the_count() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, b) = two_tenants(pool).await;
    let mut old = vec![
        audit_row(pool, a, 400).await,
        audit_row(pool, a, 400).await,
        audit_row(pool, b, 400).await,
    ];
    let recent = [audit_row(pool, a, 1).await, audit_row(pool, b, 0).await];
    let partition: String =
        sqlx::query_scalar("SELECT tableoid::regclass::text FROM audit_log WHERE id = $1")
            .bind(old[0])
            .fetch_one(pool)
            .await
            .expect("old row");
    assert_eq!(
        partition, "audit_log_default",
        "a 400-day-old row has no monthly partition"
    );

    let moved = db.store.archive_old_audit_logs(365).await.expect("archive");
    assert_eq!(moved, 3);

    let mut remaining: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM audit_log ORDER BY id")
        .fetch_all(pool)
        .await
        .expect("audit_log");
    let mut expected_remaining = recent.to_vec();
    expected_remaining.sort();
    remaining.sort();
    assert_eq!(
        remaining, expected_remaining,
        "recent rows stay, old rows are gone"
    );

    let archived = sqlx::query(
        "SELECT id, tenant_id, resource_id, status_code, details, created_at < now() - interval '399 days' AS old_date
         FROM audit_log_archive ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("archive");
    let mut archived_ids: Vec<Uuid> = archived.iter().map(|r| r.get("id")).collect();
    archived_ids.sort();
    old.sort();
    assert_eq!(archived_ids, old);
    for row in &archived {
        assert_eq!(
            row.get::<Option<String>, _>("resource_id").as_deref(),
            Some("memory-400")
        );
        assert_eq!(row.get::<Option<i32>, _>("status_code"), Some(201));
        assert_eq!(
            row.get::<serde_json::Value, _>("details"),
            serde_json::json!({"age": 400})
        );
        assert!(row.get::<bool, _>("old_date"), "created_at is preserved");
    }

    // Archived rows stay readable by their tenant, and only by it.
    let mut tx = db
        .store
        .begin_tenant(&TenantScope::assume(a))
        .await
        .expect("begin_tenant");
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log_archive")
        .fetch_one(&mut *tx)
        .await
        .expect("archive as tenant A");
    assert_eq!(visible, 2);
    tx.rollback().await.expect("rollback");

    assert_eq!(
        db.store.archive_old_audit_logs(365).await.expect("again"),
        0
    );
}

#[tokio::test]
async fn archive_old_audit_logs_refuses_a_negative_age() {
    let db = TestDb::new().await;
    let err = db
        .store
        .archive_old_audit_logs(-1)
        .await
        .expect_err("negative days");
    match err {
        mnemo_store::StoreError::Invalid { message } => {
            assert!(message.contains("days must be >= 0"), "{message}")
        }
        other => panic!("expected invalid_parameter_value, got {other:?}"),
    }
}

/// Stores a memory of `tenant` created `age_days` ago, expiring `expires_in_days` from now
/// (negative: already expired; None: never).
async fn aged_memory(
    pool: &PgPool,
    tenant: Uuid,
    memory_id: &str,
    age_days: i32,
    expires_in_days: Option<i32>,
) {
    sqlx::query(
        "INSERT INTO contextual_memories (tenant_id, memory_id, content, tags, relevance_score, created_at, expires_at)
         VALUES ($1, $2, jsonb_build_object('id', $2), ARRAY['t'], 0.25,
                 now() - make_interval(days => $3), now() + make_interval(days => $4))",
    )
    .bind(tenant)
    .bind(memory_id)
    .bind(age_days)
    .bind(expires_in_days)
    .execute(pool)
    .await
    .expect("insert memory");
}

async fn retention_policy(
    pool: &PgPool,
    tenant: Uuid,
    days: Option<i32>,
    policy: &str,
    active: bool,
) {
    sqlx::query(
        "INSERT INTO data_retention_policies (tenant_id, resource_type, retention_days, archival_policy, is_active)
         VALUES ($1, 'memories', $2, $3::archival_policy, $4)",
    )
    .bind(tenant)
    .bind(days)
    .bind(policy)
    .bind(active)
    .execute(pool)
    .await
    .expect("insert retention policy");
}

async fn memory_ids(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(&format!("SELECT memory_id FROM {table} ORDER BY memory_id"))
        .fetch_all(pool)
        .await
        .expect("memory ids")
}

#[tokio::test]
async fn clean_expired_memories_removes_only_expired_rows_as_the_retention_policies_say() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let project = create_project(pool, "p").await;
    let plain = create_tenant(pool, project, "no-policy").await;
    let archiving = create_tenant(pool, project, "archive-30d").await;
    let retaining = create_tenant(pool, project, "retain").await;
    let deleting = create_tenant(pool, project, "delete-30d").await;
    let inactive = create_tenant(pool, project, "inactive-retain").await;
    retention_policy(pool, archiving, Some(30), "archive", true).await;
    retention_policy(pool, retaining, None, "retain", true).await;
    retention_policy(pool, deleting, Some(30), "delete", true).await;
    retention_policy(pool, inactive, None, "retain", false).await;

    // No policy: expiry alone decides; age does not matter.
    aged_memory(pool, plain, "plain-expired", 1, Some(-1)).await;
    aged_memory(pool, plain, "plain-expires-later", 1, Some(1)).await;
    aged_memory(pool, plain, "plain-no-expiry", 1, None).await;
    aged_memory(pool, plain, "plain-old", 900, None).await;
    // archive, 30 days: expired or older than 30 days moves to the archive.
    aged_memory(pool, archiving, "archive-expired", 1, Some(-1)).await;
    aged_memory(pool, archiving, "archive-old", 60, None).await;
    aged_memory(pool, archiving, "archive-recent", 10, Some(5)).await;
    // retain: kept even when expired.
    aged_memory(pool, retaining, "retain-expired", 400, Some(-100)).await;
    // delete, 30 days.
    aged_memory(pool, deleting, "delete-old", 31, None).await;
    aged_memory(pool, deleting, "delete-recent", 29, None).await;
    // An inactive policy is no policy.
    aged_memory(pool, inactive, "inactive-expired", 1, Some(-1)).await;

    let removed = db.store.clean_expired_memories().await.expect("clean");
    assert_eq!(removed, 5);
    assert_eq!(
        memory_ids(pool, "contextual_memories").await,
        [
            "archive-recent",
            "delete-recent",
            "plain-expires-later",
            "plain-no-expiry",
            "plain-old",
            "retain-expired"
        ]
    );
    assert_eq!(
        memory_ids(pool, "contextual_memories_archive").await,
        ["archive-expired", "archive-old"]
    );
    let (tenant, content, tags, relevance): (Uuid, serde_json::Value, Vec<String>, f64) = sqlx::query_as(
        "SELECT tenant_id, content, tags, relevance_score FROM contextual_memories_archive WHERE memory_id = 'archive-old'",
    )
    .fetch_one(pool)
    .await
    .expect("archived row");
    assert_eq!(tenant, archiving);
    assert_eq!(content, serde_json::json!({"id": "archive-old"}));
    assert_eq!((tags, relevance), (vec!["t".to_owned()], 0.25));

    assert_eq!(db.store.clean_expired_memories().await.expect("again"), 0);
}

#[tokio::test]
async fn get_tenant_memory_usage_returns_the_tenants_figures() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, b) = two_tenants(pool).await;
    sqlx::query("UPDATE tenants SET max_memories = 100 WHERE id = $1")
        .bind(a)
        .execute(pool)
        .await
        .expect("quota");
    let embedding = vector_literal(|i| i as f64);
    // jsonb prints these as 10, 11 and 12 bytes.
    let mut ids = Vec::new();
    for (memory_id, content, relevance, expired, embedded) in [
        ("m-1", r#"{"k": "v"}"#, 0.2, false, true),
        ("m-2", r#"{"k": "vv"}"#, 0.4, true, false),
        ("m-3", r#"{"k": "vvv"}"#, 0.6, false, false),
    ] {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO contextual_memories (tenant_id, memory_id, content, relevance_score, expires_at, embedding)
             VALUES ($1, $2, $3::jsonb, $4, CASE WHEN $5 THEN now() - interval '1 hour' END,
                     CASE WHEN $6 THEN $7::vector END)
             RETURNING id",
        )
        .bind(a)
        .bind(memory_id)
        .bind(content)
        .bind(relevance)
        .bind(expired)
        .bind(embedded)
        .bind(&embedding)
        .fetch_one(pool)
        .await
        .expect("insert memory");
        ids.push(id);
    }
    sqlx::query(
        "INSERT INTO memory_relationships (tenant_id, source_memory_id, target_memory_id, relationship_type)
         VALUES ($1, $2, $3, 'related')",
    )
    .bind(a)
    .bind(ids[0])
    .bind(ids[1])
    .execute(pool)
    .await
    .expect("relationship");
    for context in ["c-1", "c-2"] {
        sqlx::query("INSERT INTO offloaded_contexts (tenant_id, context_id) VALUES ($1, $2)")
            .bind(a)
            .bind(context)
            .execute(pool)
            .await
            .expect("context");
    }
    // Tenant B's rows must not count.
    super::create_memory(pool, b, "b-1").await;
    sqlx::query("INSERT INTO offloaded_contexts (tenant_id, context_id) VALUES ($1, 'b-c')")
        .bind(b)
        .execute(pool)
        .await
        .expect("context of B");

    let usage = sqlx::query("SELECT * FROM get_tenant_memory_usage($1)")
        .bind(a)
        .fetch_one(pool)
        .await
        .expect("usage");
    let n = |col: &str| usage.get::<i64, _>(col);
    assert_eq!(usage.get::<Uuid, _>("tenant_id"), a);
    assert_eq!(
        [
            n("total_memories"),
            n("active_memories"),
            n("expired_memories"),
            n("embedded_memories")
        ],
        [3, 2, 1, 1]
    );
    assert_eq!(
        [n("content_bytes"), n("embedding_bytes"), n("storage_bytes")],
        [33, 384 * 4, 33 + 384 * 4]
    );
    assert_eq!(
        [n("relationship_count"), n("offloaded_context_count")],
        [1, 2]
    );
    assert!((usage.get::<f64, _>("avg_relevance") - 0.4).abs() < 1e-9);
    assert_eq!(usage.get::<Option<i64>, _>("max_memories"), Some(100));
    assert_eq!(usage.get::<Option<i64>, _>("max_storage_bytes"), None);

    // As the application role, the function sees through the caller's Row Level Security.
    let mut tx = app_tx(pool, Some(b)).await;
    let seen_by_b: i64 =
        sqlx::query_scalar("SELECT total_memories FROM get_tenant_memory_usage($1)")
            .bind(a)
            .fetch_one(&mut *tx)
            .await
            .expect("usage as B");
    assert_eq!(seen_by_b, 0);
}

#[tokio::test]
async fn create_time_partitions_creates_monthly_partitions_and_moves_rows_out_of_the_default() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    // Mid-month, six months ahead (UTC), the month create_time_partitions names the partition by.
    let (when, month): (chrono::DateTime<chrono::Utc>, String) = sqlx::query_as(
        "SELECT (m + interval '14 days') AT TIME ZONE 'UTC', to_char(m, 'YYYYMM')
         FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') + interval '6 months' AS m) AS s",
    )
    .fetch_one(pool)
    .await
    .expect("month");
    let audit: Uuid = sqlx::query_scalar(
        "INSERT INTO audit_log (tenant_id, action, resource_type, outcome, created_at)
         VALUES ($1, 'create', 'memories', 'success', $2) RETURNING id",
    )
    .bind(a)
    .bind(when)
    .fetch_one(pool)
    .await
    .expect("future audit row");
    let metric: Uuid = sqlx::query_scalar(
        "INSERT INTO performance_metrics (tenant_id, metric_type, metric_name, metric_value, recorded_at)
         VALUES ($1, 'memory', 'retrieval_time', 1.5, $2) RETURNING id",
    )
    .bind(a)
    .bind(when)
    .fetch_one(pool)
    .await
    .expect("future metric");
    let count_rows = || async {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT (SELECT count(*) FROM audit_log), (SELECT count(*) FROM performance_metrics)",
        )
        .fetch_one(pool)
        .await
        .expect("counts")
    };
    let before = count_rows().await;
    let home = |table: &'static str, id: Uuid| async move {
        sqlx::query_scalar::<_, String>(&format!(
            "SELECT tableoid::regclass::text FROM {table} WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("row")
    };
    assert_eq!(home("audit_log", audit).await, "audit_log_default");
    assert_eq!(
        home("performance_metrics", metric).await,
        "performance_metrics_default"
    );

    let created = db
        .store
        .create_time_partitions(7)
        .await
        .expect("create_time_partitions(7)");
    assert!(
        created >= 2,
        "at least the partitions of month +6 and +7: {created}"
    );

    assert_eq!(
        home("audit_log", audit).await,
        format!("audit_log_p{month}")
    );
    assert_eq!(
        home("performance_metrics", metric).await,
        format!("performance_metrics_p{month}")
    );
    assert_eq!(count_rows().await, before, "no row lost");

    // A partition for every month from now to 7 months ahead, for both tables.
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT format('%s_p%s', t, to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i), 'YYYYMM'))
         FROM unnest(ARRAY['audit_log', 'performance_metrics']) AS t, generate_series(0, 7) AS i
         WHERE NOT EXISTS (
             SELECT 1 FROM pg_inherits h
             WHERE h.inhparent = t::regclass
               AND h.inhrelid::regclass::text =
                   format('%s_p%s', t, to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i), 'YYYYMM')))",
    )
    .fetch_all(pool)
    .await
    .expect("partitions");
    assert!(missing.is_empty(), "{missing:?}");

    // A new partition keeps the parent's primary key and is reached through the parent's RLS.
    let pk_on_partition: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'p')",
    )
    .bind(format!("audit_log_p{month}"))
    .fetch_one(pool)
    .await
    .expect("catalog");
    assert!(pk_on_partition);
    let mut tx = app_tx(pool, Some(a)).await;
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE id = $1")
        .bind(audit)
        .fetch_one(&mut *tx)
        .await
        .expect("as tenant A");
    assert_eq!(visible, 1);
    tx.rollback().await.expect("rollback");

    assert_eq!(db.store.create_time_partitions(7).await.expect("again"), 0);
}

#[tokio::test]
async fn new_rows_in_a_created_month_go_to_its_partition() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    db.store
        .create_time_partitions(1)
        .await
        .expect("partitions");
    let home: String = sqlx::query_scalar(
        "WITH r AS (INSERT INTO audit_log (tenant_id, action, resource_type, outcome)
                    VALUES ($1, 'create', 'memories', 'success') RETURNING tableoid)
         SELECT tableoid::regclass::text FROM r",
    )
    .bind(a)
    .fetch_one(pool)
    .await
    .expect("insert");
    let expected: String =
        sqlx::query_scalar("SELECT 'audit_log_p' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')")
            .fetch_one(pool)
            .await
            .expect("name");
    assert_eq!(home, expected);
}

/// Waits until another session of this database waits for a lock, or `task` ended (at most 20 s).
async fn until_blocked_or_done<T>(pool: &PgPool, task: &tokio::task::JoinHandle<T>) {
    for _ in 0..1000 {
        if task.is_finished() {
            return;
        }
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE NOT l.granted AND a.datname = current_database()",
        )
        .fetch_one(pool)
        .await
        .expect("pg_locks");
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the task neither finished nor waited for a lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_expired_memories_keeps_a_memory_whose_expiry_a_concurrent_update_cleared() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    aged_memory(pool, a, "kept", 1, Some(-1)).await;
    aged_memory(pool, a, "gone", 1, Some(-1)).await;
    // A PATCH clearing the expiry, still open while the cleanup runs.
    let mut update = pool.begin().await.expect("begin");
    sqlx::query("UPDATE contextual_memories SET expires_at = NULL WHERE memory_id = 'kept'")
        .execute(&mut *update)
        .await
        .expect("clear expiry");
    let store = db.store.clone();
    let cleanup = tokio::spawn(async move { store.clean_expired_memories().await });
    until_blocked_or_done(pool, &cleanup).await;
    update.commit().await.expect("commit");
    let removed = cleanup.await.expect("join").expect("clean");
    assert_eq!(removed, 1);
    assert_eq!(memory_ids(pool, "contextual_memories").await, ["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retire_memories_rechecks_the_expiry_of_the_row_it_deletes() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    aged_memory(pool, a, "kept", 1, Some(-1)).await;
    aged_memory(pool, a, "gone", 1, Some(-1)).await;
    let mut update = pool.begin().await.expect("begin");
    sqlx::query("UPDATE contextual_memories SET expires_at = NULL WHERE memory_id = 'kept'")
        .execute(&mut *update)
        .await
        .expect("clear expiry");
    // mnemo_retire_memories() waits for the row (it is what frees an id before reuse), then must
    // see the row as the update left it.
    let owner = pool.clone();
    let retire = tokio::spawn(async move {
        sqlx::query_scalar::<_, i32>("SELECT mnemo_retire_memories()")
            .fetch_one(&owner)
            .await
    });
    until_blocked_or_done(pool, &retire).await;
    update.commit().await.expect("commit");
    let removed = retire.await.expect("join").expect("retire");
    assert_eq!(removed, 1);
    assert_eq!(memory_ids(pool, "contextual_memories").await, ["kept"]);
}

#[tokio::test]
async fn clean_expired_memories_walks_the_index_in_batches_and_skips_rows_others_hold() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let project = create_project(pool, "p").await;
    let a = create_tenant(pool, project, "a").await;
    let b = create_tenant(pool, project, "b").await;
    let keeper = create_tenant(pool, project, "keeper").await;
    retention_policy(pool, keeper, None, "retain", true).await;
    // Retained expired rows first in the index: the batches must walk past them, not stop.
    for (tenant, prefix, n, minutes_ago) in [
        (keeper, "k", 1500, 300),
        (a, "a", 1300, 200),
        (b, "b", 1200, 100),
    ] {
        sqlx::query(
            "INSERT INTO contextual_memories (tenant_id, memory_id, content, expires_at)
             SELECT $1, $2 || g, jsonb_build_object('g', g), now() - make_interval(mins => $4) + g * interval '1 ms'
             FROM generate_series(1, $3) AS g",
        )
        .bind(tenant)
        .bind(prefix)
        .bind(n)
        .bind(minutes_ago)
        .execute(pool)
        .await
        .expect("insert expired memories");
    }
    aged_memory(pool, a, "live", 1, Some(1)).await;
    // Rows written by plain SQL: their counters come from a reconcile.
    for t in [a, b, keeper] {
        db.store.reconcile_tenant_usage(t).await.expect("reconcile");
    }
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM contextual_memories WHERE memory_id = 'b7' FOR UPDATE")
        .execute(&mut *holder)
        .await
        .expect("lock b7");

    let removed = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        db.store.clean_expired_memories(),
    )
    .await
    .expect("the cleanup never waits for a held row")
    .expect("clean");
    assert_eq!(removed, 1300 + 1200 - 1);
    let left: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT tenant_id, count(*) FROM contextual_memories GROUP BY 1 ORDER BY 2")
            .fetch_all(pool)
            .await
            .expect("count");
    let count = |t: Uuid| left.iter().find(|(x, _)| *x == t).map_or(0, |(_, n)| *n);
    assert_eq!((count(a), count(b), count(keeper)), (1, 1, 1500));

    holder.rollback().await.expect("release");
    assert_eq!(db.store.clean_expired_memories().await.expect("again"), 1);
    // The counters the batches kept follow the rows.
    for t in [a, b, keeper] {
        assert!(
            !db.store.reconcile_tenant_usage(t).await.expect("reconcile"),
            "counters of {t} were off"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_create_time_partitions_calls_all_succeed() {
    let db = TestDb::new().await;
    let monthly = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_inherits
             WHERE inhparent IN ('audit_log'::regclass, 'performance_metrics'::regclass)",
        )
        .fetch_one(db.store.pool())
        .await
        .expect("partitions")
    };
    let existing = monthly().await;
    let calls = (0..6).map(|_| {
        let store = db.store.clone();
        tokio::spawn(async move { store.create_time_partitions(48).await })
    });
    let mut created = 0;
    for call in futures_join(calls).await {
        created += call.expect("join").expect("create_time_partitions(48)");
    }
    let now = monthly().await;
    assert_eq!(
        i64::from(created),
        now - existing,
        "each partition made once"
    );
    // This month and 48 ahead, for both tables, plus the two default partitions.
    assert_eq!(now, 2 * 49 + 2);
}

async fn futures_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await);
    }
    out
}

/// Creates the monthly partition of `audit_log` for the month (UTC) `months_ago` months back, as
/// create_time_partitions() names them; returns its name and oid.
async fn old_audit_partition(
    pool: &PgPool,
    months_ago: i32,
) -> (String, u32, chrono::DateTime<chrono::Utc>) {
    let (name, lo, hi, mid): (String, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(
            "SELECT 'audit_log_p' || to_char(m, 'YYYYMM'), m AT TIME ZONE 'UTC',
                    (m + interval '1 month') AT TIME ZONE 'UTC', (m + interval '10 days') AT TIME ZONE 'UTC'
             FROM (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => $1) AS m) AS s",
        )
        .bind(months_ago)
        .fetch_one(pool)
        .await
        .expect("month");
    sqlx::query(&format!(
        "CREATE TABLE {name} PARTITION OF audit_log FOR VALUES FROM ('{}') TO ('{}')",
        lo.to_rfc3339(),
        hi.to_rfc3339()
    ))
    .execute(pool)
    .await
    .expect("old partition");
    let oid: sqlx::postgres::types::Oid = sqlx::query_scalar("SELECT $1::regclass::oid")
        .bind(&name)
        .fetch_one(pool)
        .await
        .expect("oid");
    (name, oid.0, mid)
}

async fn audit_row_at(pool: &PgPool, tenant: Uuid, at: chrono::DateTime<chrono::Utc>) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO audit_log (tenant_id, action, resource_type, outcome, created_at)
         VALUES ($1, 'memory.create', 'memories', 'success', $2) RETURNING id",
    )
    .bind(tenant)
    .bind(at)
    .fetch_one(pool)
    .await
    .expect("audit row")
}

#[tokio::test]
async fn archive_old_audit_logs_moves_a_whole_old_month_by_moving_its_partition() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, b) = two_tenants(pool).await;
    let (name, oid, mid) = old_audit_partition(pool, 14).await;
    let mut old = vec![
        audit_row_at(pool, a, mid).await,
        audit_row_at(pool, a, mid).await,
        audit_row_at(pool, b, mid).await,
    ];
    let recent = audit_row(pool, a, 0).await;

    assert_eq!(
        db.store.archive_old_audit_logs(365).await.expect("archive"),
        3
    );

    // The same table (same oid), now a partition of the archive: no row was copied or deleted.
    let (parent, new_name): (String, String) = sqlx::query_as(
        "SELECT h.inhparent::regclass::text, c.relname::text
         FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhrelid WHERE h.inhrelid = $1",
    )
    .bind(sqlx::postgres::types::Oid(oid))
    .fetch_one(pool)
    .await
    .expect("the partition still exists");
    assert_eq!(parent, "audit_log_archive");
    assert_eq!(new_name, name.replace("audit_log_", "audit_log_archive_"));
    let mut archived: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM audit_log_archive ORDER BY id")
            .fetch_all(pool)
            .await
            .expect("archive");
    old.sort();
    archived.sort();
    assert_eq!(archived, old);
    let remaining: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM audit_log")
        .fetch_all(pool)
        .await
        .expect("audit_log");
    assert_eq!(remaining, [recent]);
    // Readable by its tenant only, through the archive's Row Level Security.
    let mut tx = app_tx(pool, Some(a)).await;
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log_archive")
        .fetch_one(&mut *tx)
        .await
        .expect("archive as A");
    assert_eq!(visible, 2);
    let direct = sqlx::query(&format!("SELECT count(*) FROM {new_name}"))
        .execute(&mut *tx)
        .await
        .expect_err("the partition itself is out of the application role's reach");
    assert_eq!(super::db_error(&direct).0, "42501");
}

#[tokio::test]
async fn scheduled_audit_archival_moves_whole_months_only() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    // The job's cutoff: the start (UTC) of the month that holds the instant 365 days ago.
    let cutoff: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "SELECT date_trunc('month', (now() - interval '365 days') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    )
    .fetch_one(pool)
    .await
    .expect("cutoff");
    let before = audit_row_at(pool, a, cutoff - chrono::Duration::hours(1)).await;
    let after = audit_row_at(pool, a, cutoff + chrono::Duration::hours(1)).await;

    assert_eq!(
        db.store.archive_audit_months(365).await.expect("archive"),
        1
    );
    let archived: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM audit_log_archive")
        .fetch_all(pool)
        .await
        .expect("archive");
    assert_eq!(archived, [before]);
    let kept: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM audit_log")
        .fetch_all(pool)
        .await
        .expect("audit_log");
    assert_eq!(
        kept,
        [after],
        "the month the cutoff falls in waits until it is whole"
    );
}

#[tokio::test]
async fn tenant_daily_activity_refresh_recomputes_only_the_days_from_its_watermark() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let (a, _) = two_tenants(pool).await;
    let now = chrono::Utc::now();
    let ten_days_ago = now - chrono::Duration::days(10);
    audit_row_at(pool, a, ten_days_ago).await;
    audit_row_at(pool, a, ten_days_ago).await;
    audit_row_at(pool, a, now).await;
    // Rows before the first refresh of this database: it starts from all of history.
    sqlx::query("DELETE FROM mnemo_settings WHERE key = 'tenant_daily_activity_from'")
        .execute(pool)
        .await
        .expect("forget watermark");
    db.store.refresh_analytics_views().await.expect("refresh");
    let per_day = || async {
        sqlx::query_as::<_, (chrono::NaiveDate, i64)>(
            "SELECT day, operations FROM tenant_daily_activity WHERE tenant_id = $1 ORDER BY day",
        )
        .bind(a)
        .fetch_all(pool)
        .await
        .expect("activity")
    };
    let (old_day, today) = (ten_days_ago.date_naive(), now.date_naive());
    assert_eq!(per_day().await, [(old_day, 2), (today, 1)]);
    let watermark: String = sqlx::query_scalar(
        "SELECT value FROM mnemo_settings WHERE key = 'tenant_daily_activity_from'",
    )
    .fetch_one(pool)
    .await
    .expect("watermark");
    assert_eq!(watermark, (today - chrono::Duration::days(1)).to_string());

    // The old day's audit rows leave (archival); a new row arrives today.
    sqlx::query("DELETE FROM audit_log WHERE created_at < now() - interval '5 days'")
        .execute(pool)
        .await
        .expect("archive");
    audit_row_at(pool, a, now).await;
    db.store
        .refresh_analytics_views()
        .await
        .expect("refresh again");
    assert_eq!(
        per_day().await,
        [(old_day, 2), (today, 2)],
        "days before the watermark are final; the recent ones are recounted"
    );
}
