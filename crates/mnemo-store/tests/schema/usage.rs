//! Per-tenant usage counters (`tenant_usage`): every write path books its effect, so after any mix
//! of writes the counters equal what the rows say, `get_tenant_memory_usage` agrees, and the quota
//! pre-check reads them.

use chrono::{Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use mnemo_store::memories::{self, MemoryPatch, NewMemory};
use mnemo_store::relationships::{self, NewRelationship};
use mnemo_store::testing::TestDb;
use mnemo_store::{usage, Store, StoreError, TenantScope};

use super::{create_project, create_tenant};

fn memory(id: &str, words: usize, embedded: bool, expired: bool) -> NewMemory {
    NewMemory {
        memory_id: id.to_owned(),
        relevance_score: 0.5,
        content: json!({ "text": "word ".repeat(words) }),
        tags: vec!["t".to_owned()],
        metadata: json!({}),
        embedding: embedded.then(|| vec![0.1; 384]),
        embedding_model: embedded.then(|| "test".to_owned()),
        expires_at: expired.then(|| Utc::now() - Duration::seconds(1)),
    }
}

/// (counters as stored, counters computed from the rows) of a tenant.
async fn stored_and_true(pool: &PgPool, tenant: Uuid) -> (Vec<i64>, Vec<i64>) {
    let row = |r: sqlx::postgres::PgRow| -> Vec<i64> {
        [
            "memories",
            "content_bytes",
            "embedded",
            "relationships",
            "relationship_bytes",
            "contexts",
            "context_bytes",
        ]
        .iter()
        .map(|c| r.get::<i64, _>(*c))
        .collect()
    };
    let stored = sqlx::query("SELECT * FROM tenant_usage WHERE tenant_id = $1")
        .bind(tenant)
        .fetch_one(pool)
        .await
        .expect("the tenant has a counter row");
    let truth = sqlx::query("SELECT * FROM mnemo_usage_from_rows($1)")
        .bind(tenant)
        .fetch_one(pool)
        .await
        .expect("from rows");
    (row(stored), row(truth))
}

/// The memory_ids the mix writes to, few enough that most writes meet an existing memory.
const IDS: usize = 12;

/// One random write through the store as the application role; errors a client could cause
/// (conflicts, missing ids) are part of the mix. Returns what it tried and whether it was done.
async fn random_write(
    store: &Store,
    tenant: Uuid,
    rng: &mut StdRng,
    step: usize,
) -> (&'static str, bool) {
    let mut tx = store
        .begin_tenant(&TenantScope::assume(tenant))
        .await
        .expect("begin");
    let id = |rng: &mut StdRng| format!("m{}", rng.gen_range(0..IDS));
    let kind = rng.gen_range(0..9);
    let result: Result<(), StoreError> = match kind {
        0 | 1 => {
            let n = rng.gen_range(1..5);
            let batch: Vec<NewMemory> = (0..n)
                .map(|i| {
                    memory(
                        &format!("m{}", (step * 7 + i * 5) % IDS),
                        rng.gen_range(0..30),
                        rng.gen_bool(0.5),
                        rng.gen_bool(0.2),
                    )
                })
                .collect();
            let mut ids: Vec<&str> = batch.iter().map(|m| m.memory_id.as_str()).collect();
            ids.sort();
            ids.dedup();
            if ids.len() < batch.len() {
                Ok(())
            } else {
                memories::create(&mut tx, &batch).await.map(drop)
            }
        }
        2 => {
            let m = memory(
                &id(rng),
                rng.gen_range(0..30),
                rng.gen_bool(0.5),
                rng.gen_bool(0.2),
            );
            memories::upsert(&mut tx, &m).await.map(drop)
        }
        3 => {
            let patch = MemoryPatch {
                content: rng
                    .gen_bool(0.7)
                    .then(|| json!({ "text": "x".repeat(rng.gen_range(0..200)) })),
                embedding: rng
                    .gen_bool(0.5)
                    .then(|| rng.gen_bool(0.5).then(|| vec![0.2; 384])),
                expires_at: rng
                    .gen_bool(0.2)
                    .then(|| Some(Utc::now() - Duration::seconds(1))),
                ..Default::default()
            };
            memories::update(&mut tx, &id(rng), patch).await.map(drop)
        }
        4 => memories::delete(&mut tx, &id(rng)).await,
        5 | 6 => relationships::create(
            &mut tx,
            NewRelationship {
                source: id(rng),
                target: id(rng),
                relationship_type: ["related", "causes"][rng.gen_range(0..2)].to_owned(),
                weight: 0.5,
                metadata: json!({ "note": "n".repeat(rng.gen_range(0..50)) }),
            },
        )
        .await
        .map(drop),
        7 => {
            let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM memory_relationships")
                .fetch_all(&mut *tx)
                .await
                .expect("edges");
            match ids.get(rng.gen_range(0..ids.len().max(1))) {
                Some(e) => relationships::delete(&mut tx, *e).await,
                None => Ok(()),
            }
        }
        _ => match usage::release_expired(&mut tx, None).await {
            Ok(released) => usage::charge(&mut tx, released).await,
            Err(e) => Err(e),
        },
    };
    let name = match kind {
        0 | 1 => "create",
        2 => "upsert",
        3 => "update",
        4 => "delete",
        5 | 6 => "link",
        7 => "unlink",
        _ => "release",
    };
    match result {
        Ok(()) => {
            tx.commit().await.expect("commit");
            (name, true)
        }
        Err(
            StoreError::Conflict { .. }
            | StoreError::NotFound(_)
            | StoreError::MissingReference { .. }
            | StoreError::Invalid { .. },
        ) => {
            tx.rollback().await.expect("rollback");
            (name, false)
        }
        Err(e) => panic!("step {step}: {e}"),
    }
}

async fn assert_counters_true(db: &TestDb, tenant: Uuid) {
    let pool = db.store.pool();
    let (stored, truth) = stored_and_true(pool, tenant).await;
    assert_eq!(stored, truth, "counters of {tenant}");
    // The seed's usage function, computed from the rows, reports the same figures.
    let u = sqlx::query("SELECT * FROM get_tenant_memory_usage($1)")
        .bind(tenant)
        .fetch_one(pool)
        .await
        .expect("usage");
    let reported: Vec<i64> = [
        "total_memories",
        "content_bytes",
        "embedded_memories",
        "relationship_count",
        "relationship_bytes",
        "offloaded_context_count",
        "context_bytes",
    ]
    .iter()
    .map(|c| u.get::<i64, _>(*c))
    .collect();
    assert_eq!(reported, stored, "get_tenant_memory_usage of {tenant}");
    assert!(
        !db.store
            .reconcile_tenant_usage(tenant)
            .await
            .expect("reconcile"),
        "reconcile found drift for {tenant}"
    );
}

async fn retention_policy(pool: &PgPool, tenant: Uuid, policy: &str) {
    sqlx::query(
        "INSERT INTO data_retention_policies (tenant_id, resource_type, archival_policy)
         VALUES ($1, 'memories', $2::archival_policy)",
    )
    .bind(tenant)
    .bind(policy)
    .execute(pool)
    .await
    .expect("retention policy");
}

#[tokio::test]
async fn usage_counters_equal_the_rows_after_a_random_mix_of_writes() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let project = create_project(pool, "p").await;
    let plain = create_tenant(pool, project, "plain").await;
    let archiving = create_tenant(pool, project, "archiving").await;
    let retaining = create_tenant(pool, project, "retaining").await;
    retention_policy(pool, archiving, "archive").await;
    retention_policy(pool, retaining, "retain").await;
    let tenants = [plain, archiving, retaining];
    let mut rng = StdRng::seed_from_u64(14);
    let mut done = std::collections::BTreeMap::new();
    for step in 0..360 {
        let tenant = tenants[rng.gen_range(0..tenants.len())];
        let (kind, ok) = random_write(&db.store, tenant, &mut rng, step).await;
        *done.entry(kind).or_insert(0) += usize::from(ok);
        // The owner's cleanup between writes, both ways it runs.
        if step % 90 == 45 {
            db.store.clean_expired_memories().await.expect("clean");
        }
        if step == 200 {
            sqlx::query("SELECT mnemo_retire_memories()")
                .execute(pool)
                .await
                .expect("retire");
        }
    }
    // Every kind of write happened.
    assert_eq!(done.len(), 7, "{done:?}");
    assert!(done.values().all(|n| *n > 0), "{done:?}");
    for tenant in tenants {
        assert_counters_true(&db, tenant).await;
    }

    // A deleted tenant's counters go with it.
    db.store
        .delete_tenant("retaining")
        .await
        .expect("delete tenant");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tenant_usage WHERE tenant_id = $1")
        .bind(retaining)
        .fetch_one(pool)
        .await
        .expect("count");
    assert_eq!(rows, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_keep_the_counters_exact() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let project = create_project(pool, "p").await;
    let tenant = create_tenant(pool, project, "busy").await;
    let writers = (0..6).map(|w| {
        let store = db.store.clone();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(w);
            for step in 0..40 {
                random_write(&store, tenant, &mut rng, step * 6 + w as usize).await;
            }
        })
    });
    for w in writers.collect::<Vec<_>>() {
        w.await.expect("writer");
    }
    assert_counters_true(&db, tenant).await;
}

#[tokio::test]
async fn a_tenants_first_write_counts_the_rows_it_already_had() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let project = create_project(pool, "p").await;
    let tenant = create_tenant(pool, project, "older").await;
    for id in ["sql-1", "sql-2"] {
        super::create_memory(pool, tenant, id).await;
    }
    let mut tx = db
        .store
        .begin_tenant(&TenantScope::assume(tenant))
        .await
        .expect("begin");
    memories::create(&mut tx, &[memory("api-1", 3, true, false)])
        .await
        .expect("create");
    tx.commit().await.expect("commit");
    let (stored, truth) = stored_and_true(pool, tenant).await;
    assert_eq!(stored, truth);
    assert_eq!(stored[0], 3);
}

#[tokio::test]
async fn reconcile_corrects_counters_after_writes_outside_the_service() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let project = create_project(pool, "p").await;
    let tenant = create_tenant(pool, project, "drifting").await;
    let mut tx = db
        .store
        .begin_tenant(&TenantScope::assume(tenant))
        .await
        .expect("begin");
    memories::create(&mut tx, &[memory("api-1", 3, false, false)])
        .await
        .expect("create");
    tx.commit().await.expect("commit");
    // Plain SQL bypasses the store and its counters.
    super::create_memory(pool, tenant, "sql-1").await;
    let (stored, truth) = stored_and_true(pool, tenant).await;
    assert_ne!(stored, truth);

    let report = db.store.reconcile_usage().await.expect("reconcile");
    assert_eq!(report.corrected, [tenant]);
    let (stored, truth) = stored_and_true(pool, tenant).await;
    assert_eq!(stored, truth);
    assert!(db
        .store
        .reconcile_usage()
        .await
        .expect("again")
        .corrected
        .is_empty());
}

#[tokio::test]
async fn check_headroom_reads_the_counters_and_counts_expired_memories_as_free() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let project = create_project(pool, "p").await;
    let tenant = create_tenant(pool, project, "quota").await;
    sqlx::query("UPDATE tenants SET max_memories = 3, max_storage_bytes = 100000 WHERE id = $1")
        .bind(tenant)
        .execute(pool)
        .await
        .expect("quota");
    let mut tx = db
        .store
        .begin_tenant(&TenantScope::assume(tenant))
        .await
        .expect("begin");
    memories::create(
        &mut tx,
        &[
            memory("live-1", 3, false, false),
            memory("live-2", 3, false, false),
            memory("expired", 3, false, true),
        ],
    )
    .await
    .expect("create");
    tx.commit().await.expect("commit");

    let mut tx = db
        .store
        .begin_tenant(&TenantScope::assume(tenant))
        .await
        .expect("begin");
    usage::check_headroom(&mut tx, 1, 100)
        .await
        .expect("the expired memory does not count");
    match usage::check_headroom(&mut tx, 2, 100).await {
        Err(StoreError::Quota(m)) => assert!(m.contains("at most 3 memories"), "{m}"),
        other => panic!("expected a quota refusal, got {other:?}"),
    }
    match usage::check_headroom(&mut tx, 1, 200_000).await {
        Err(StoreError::Quota(m)) => assert!(m.contains("at most 100000 bytes"), "{m}"),
        other => panic!("expected a quota refusal, got {other:?}"),
    }
    // The write itself then retires the expired memory to fit.
    memories::create(&mut tx, &[memory("live-3", 3, false, false)])
        .await
        .expect("fits once the expired memory is retired");
    tx.commit().await.expect("commit");
    let (stored, truth) = stored_and_true(pool, tenant).await;
    assert_eq!(stored, truth);
    assert_eq!(stored[0], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_between_two_writers_is_a_conflict_not_an_error() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let project = create_project(pool, "p").await;
    let tenant = create_tenant(pool, project, "crossing").await;
    for id in ["m1", "m2"] {
        super::create_memory(pool, tenant, id).await;
    }
    let scope = TenantScope::assume(tenant);
    let touch = "UPDATE contextual_memories SET relevance_score = 0.9 WHERE memory_id = $1";
    let mut first = db.store.begin_tenant(&scope).await.expect("begin");
    let mut second = db.store.begin_tenant(&scope).await.expect("begin");
    sqlx::query(touch)
        .bind("m1")
        .execute(&mut *first)
        .await
        .expect("m1");
    sqlx::query(touch)
        .bind("m2")
        .execute(&mut *second)
        .await
        .expect("m2");
    let crossing = tokio::spawn(async move {
        let r = sqlx::query(touch).bind("m2").execute(&mut *first).await;
        (r, first)
    });
    let other = sqlx::query(touch).bind("m1").execute(&mut *second).await;
    let (crossed, _first) = crossing.await.expect("join");
    let failed = match (crossed, other) {
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
        (a, b) => panic!("exactly one of the two must be chosen as the victim: {a:?} {b:?}"),
    };
    match StoreError::from(failed) {
        StoreError::Conflict { constraint } => {
            assert_eq!(constraint, mnemo_store::CONCURRENT_WRITE)
        }
        other => panic!("a deadlock must be a conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn a_tenant_over_a_lowered_quota_may_still_write_what_does_not_grow_it() {
    let db = TestDb::new().await;
    let pool = db.store.pool();
    let project = create_project(pool, "p").await;
    let tenant = create_tenant(pool, project, "shrinking").await;
    let scope = TenantScope::assume(tenant);
    let mut tx = db.store.begin_tenant(&scope).await.expect("begin");
    memories::create(
        &mut tx,
        &[
            memory("m1", 3, false, false),
            memory("m2", 3, false, false),
            memory("m3", 3, false, false),
        ],
    )
    .await
    .expect("create");
    tx.commit().await.expect("commit");
    sqlx::query("UPDATE tenants SET max_memories = 1 WHERE id = $1")
        .bind(tenant)
        .execute(pool)
        .await
        .expect("lower the quota");

    let mut tx = db.store.begin_tenant(&scope).await.expect("begin");
    let grow_content = MemoryPatch {
        content: Some(json!({ "text": "longer ".repeat(20) })),
        ..Default::default()
    };
    memories::update(&mut tx, "m1", grow_content)
        .await
        .expect("no memory more: the number quota does not apply");
    memories::delete(&mut tx, "m2").await.expect("shrinking");
    match memories::create(&mut tx, &[memory("m4", 1, false, false)]).await {
        Err(StoreError::Quota(m)) => assert!(m.contains("at most 1 memories"), "{m}"),
        other => panic!("expected a quota refusal, got {other:?}"),
    }
}
