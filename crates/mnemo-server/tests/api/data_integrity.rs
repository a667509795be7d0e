//! What the data layer guarantees under time and concurrency: an expired memory's id is free again
//! under every retention policy, overlapping batches conflict instead of failing, a maintenance run
//! survives the client that asked for it, and quotas (kept by the usage counters) count
//! relationships and never count expired memories.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join;
use serde_json::{json, Value};
use uuid::Uuid;

use mnemo_server::Limits;

use crate::harness::{vector, TestApp};

/// The internal id of a tenant (for setting up what the API does not offer, such as retention
/// policies).
async fn tenant_uuid(app: &TestApp, tenant_id: &str) -> Uuid {
    sqlx::query_scalar("SELECT id FROM tenants WHERE tenant_id = $1")
        .bind(tenant_id)
        .fetch_one(app.store.pool())
        .await
        .expect("tenant")
}

#[tokio::test]
async fn an_expired_memory_id_is_reused_as_a_new_memory_under_a_retain_policy() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-retain").await;
    sqlx::query(
        "INSERT INTO data_retention_policies (tenant_id, resource_type, archival_policy)
         VALUES ($1, 'memories', 'retain')",
    )
    .bind(tenant_uuid(&app, &t.tenant_id).await)
    .execute(app.store.pool())
    .await
    .expect("retain policy");
    app.create_memory(&t.key, "anchor", json!({ "t": "stays" }))
        .await;
    let soon: DateTime<Utc> = Utc::now() + chrono::Duration::milliseconds(3000);
    let mut created_at = Vec::new();
    for id in ["put-me", "post-me"] {
        let old = app
            .post(
                "/v1/memories",
                &t.key,
                json!({ "memory_id": id, "content": { "v": "old" }, "expires_at": soon }),
            )
            .await;
        created_at.push(old.ok(201)["created_at"].as_str().map(str::to_owned));
        app.link(&t.key, "anchor", id, "related_to", 0.5).await;
    }
    tokio::time::sleep(Duration::from_millis(3300)).await;

    let put = app
        .call(
            "PUT",
            "/v1/memories/put-me",
            Some(&t.key),
            Some(json!({ "content": { "v": "new" } })),
        )
        .await;
    let put = put.ok(201).clone();
    let post = app
        .post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": "post-me", "content": { "v": "new" } }),
        )
        .await;
    let post = post.ok(201).clone();
    for (fresh, old_created) in [(&put, &created_at[0]), (&post, &created_at[1])] {
        assert_eq!(fresh["content"], json!({ "v": "new" }));
        assert_eq!(fresh["expires_at"], Value::Null);
        assert_ne!(fresh["created_at"].as_str(), old_created.as_deref());
    }
    // The old memories' edges did not come back with their ids.
    let n = app.get("/v1/memories/anchor/neighbours", &t.key).await;
    assert_eq!(n.ok(200)["relationships"], json!([]));
    let g = app.get("/v1/memories/put-me/graph", &t.key).await;
    assert_eq!(g.ok(200)["edges"], json!([]));
    // Retained, not lost: the expired memories are in the archive.
    let archived: Vec<String> =
        sqlx::query_scalar("SELECT memory_id FROM contextual_memories_archive ORDER BY memory_id")
            .fetch_all(app.store.pool())
            .await
            .expect("archive");
    assert_eq!(archived, ["post-me", "put-me"]);
    assert_eq!(app.memory_count(&t.key).await, 3);
}

fn batch(round: usize, ids: impl Iterator<Item = usize>) -> Value {
    let memories: Vec<Value> = ids
        .map(|i| json!({ "memory_id": format!("r{round}-{i:02}"), "content": { "i": i } }))
        .collect();
    json!({ "memories": memories })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_batches_in_opposite_orders_conflict_and_never_fail() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-overlap").await;
    for round in 0..15 {
        let (up, down) = join(
            app.post("/v1/memories/batch", &t.key, batch(round, 0..60)),
            app.post("/v1/memories/batch", &t.key, batch(round, (0..60).rev())),
        )
        .await;
        for r in [&up, &down] {
            assert!(
                r.status == 201 || r.status == 409,
                "round {round}: {} {}",
                r.status,
                r.text
            );
            if r.status == 409 {
                assert!(
                    ["memory_exists", "write_conflict"].contains(&r.code()),
                    "{}",
                    r.text
                );
            }
        }
        assert_eq!(
            [up.status, down.status]
                .iter()
                .filter(|s| **s == 201)
                .count(),
            1,
            "round {round}: one batch is stored, the other conflicts"
        );
        // The stored batch answers in the order it was sent.
        let stored = if up.status == 201 { &up } else { &down };
        let first = stored.body["memories"][0]["memory_id"].as_str();
        let sent_first = if up.status == 201 { "00" } else { "59" };
        assert_eq!(first, Some(format!("r{round}-{sent_first}").as_str()));
    }
    assert_eq!(app.memory_count(&t.key).await, 15 * 60);
}

/// Sessions of the test's database that hold or wait for the index builders' advisory lock.
async fn builder_lock_holders(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks
         WHERE locktype = 'advisory' AND objid = 727273
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(app.store.pool())
    .await
    .expect("pg_locks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_leaving_a_maintenance_run_does_not_stall_the_next_one() {
    let app = TestApp::spawn_with(
        Limits {
            vector_index_min_rows: 1000,
            ..Limits::default()
        },
        None,
    )
    .await;
    let t = app.new_tenant("tenant-big").await;
    // Enough embedded memories that building the tenant's HNSW index takes a while.
    sqlx::query(
        "INSERT INTO contextual_memories (tenant_id, memory_id, content, embedding)
         SELECT $1, 'm' || g, '{}',
                ('[' || random() || ',' || random() || ',' || random() || repeat(',0', 381) || ']')::vector
         FROM generate_series(1, 8000) AS g",
    )
    .bind(tenant_uuid(&app, &t.tenant_id).await)
    .execute(app.store.pool())
    .await
    .expect("memories");

    let (app_url, admin) = (app.base_url.clone(), app.admin_key.clone());
    let leaving = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("{app_url}/v1/admin/maintenance"))
            .bearer_auth(admin)
            .send()
            .await
    });
    // The client leaves while the index is being built.
    let mut building = false;
    for _ in 0..600 {
        building = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                            WHERE datname = current_database() AND query ILIKE 'CREATE INDEX CONCURRENTLY%'
                              AND state = 'active')",
        )
        .fetch_one(app.store.pool())
        .await
        .expect("pg_stat_activity");
        if building || leaving.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(building, "the first run never got to the index build");
    leaving.abort();
    let _ = leaving.await;

    let next = tokio::time::timeout(
        Duration::from_secs(180),
        app.call("POST", "/v1/admin/maintenance", Some(&app.admin_key), None),
    )
    .await
    .expect("the next maintenance run completes");
    let report = next.ok(200);
    assert_eq!(report["vector_indexes"]["indexed_tenants"], 1, "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");
    assert_eq!(builder_lock_holders(&app).await, 0);
}

#[tokio::test]
async fn expired_memories_never_count_against_a_quota() {
    let app = TestApp::spawn().await;
    let p = app.create_project("quota-expiry").await;
    let t = app
        .new_tenant_in(&p, "tenant-quota-expiry", json!({ "max_memories": 2 }))
        .await;
    let soon: DateTime<Utc> = Utc::now() + chrono::Duration::milliseconds(3000);
    for id in ["e1", "e2"] {
        app.post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": id, "content": {}, "expires_at": soon }),
        )
        .await
        .ok(201);
    }
    app.post(
        "/v1/memories",
        &t.key,
        json!({ "memory_id": "n0", "content": {} }),
    )
    .await
    .expect(403, "quota_exceeded");
    tokio::time::sleep(Duration::from_millis(3300)).await;
    for id in ["n1", "n2"] {
        app.post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": id, "content": {} }),
        )
        .await
        .ok(201);
    }
    app.post(
        "/v1/memories",
        &t.key,
        json!({ "memory_id": "n3", "content": {} }),
    )
    .await
    .expect(403, "quota_exceeded");
    let usage = app.get("/v1/usage", &t.key).await;
    assert_eq!(usage.ok(200)["total_memories"], 2);
}

#[tokio::test]
async fn relationship_metadata_counts_toward_the_storage_quota() {
    let app = TestApp::spawn().await;
    let p = app.create_project("quota-edges").await;
    let t = app
        .new_tenant_in(
            &p,
            "tenant-quota-edges",
            json!({ "max_storage_bytes": 3000 }),
        )
        .await;
    for id in ["a", "b", "c"] {
        app.post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": id, "content": { "id": id } }),
        )
        .await
        .ok(201);
    }
    let note = "n".repeat(2000);
    let edge = |target: &str| {
        json!({ "source": "a", "target": target, "relationship_type": "related_to",
                "metadata": { "note": note } })
    };
    let first = app.post("/v1/relationships", &t.key, edge("b")).await;
    let first_id = first.ok(201)["id"].as_str().expect("id").to_owned();
    app.post("/v1/relationships", &t.key, edge("c"))
        .await
        .expect(403, "quota_exceeded");
    let usage = app.get("/v1/usage", &t.key).await;
    let u = usage.ok(200);
    assert_eq!(u["relationship_count"], 1);
    assert_eq!(u["relationship_bytes"], 2000 + r#"{"note": ""}"#.len());
    assert_eq!(
        u["quota_bytes"].as_i64(),
        Some(u["storage_bytes"].as_i64().unwrap_or(0) + 2012)
    );
    // Deleting the first edge frees its bytes.
    app.call(
        "DELETE",
        &format!("/v1/relationships/{first_id}"),
        Some(&t.key),
        None,
    )
    .await
    .ok(204);
    app.post("/v1/relationships", &t.key, edge("c"))
        .await
        .ok(201);
}

#[tokio::test]
async fn usage_reported_from_rows_agrees_with_the_counters() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-agree").await;
    for i in 0..5 {
        app.post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": format!("m{i}"), "content": { "text": "x".repeat(i * 10) },
                    "embedding": vector(i as u32) }),
        )
        .await
        .ok(201);
    }
    app.link(&t.key, "m0", "m1", "related_to", 1.0).await;
    app.link(&t.key, "m1", "m2", "related_to", 1.0).await;
    app.call(
        "PATCH",
        "/v1/memories/m3",
        Some(&t.key),
        Some(json!({ "content": { "text": "short" }, "embedding": null })),
    )
    .await
    .ok(200);
    app.call("DELETE", "/v1/memories/m1", Some(&t.key), None)
        .await
        .ok(204);
    app.call(
        "PUT",
        "/v1/memories/m4",
        Some(&t.key),
        Some(json!({ "content": { "text": "replaced" } })),
    )
    .await
    .ok(200);
    let usage = app.get("/v1/usage", &t.key).await;
    let u = usage.ok(200).clone();
    let counters: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT memories, content_bytes, embedded, relationships FROM tenant_usage
         WHERE tenant_id = $1",
    )
    .bind(tenant_uuid(&app, &t.tenant_id).await)
    .fetch_one(app.store.pool())
    .await
    .expect("counters");
    assert_eq!(
        counters,
        (
            u["total_memories"].as_i64().unwrap_or(-1),
            u["content_bytes"].as_i64().unwrap_or(-1),
            u["embedded_memories"].as_i64().unwrap_or(-1),
            u["relationship_count"].as_i64().unwrap_or(-1),
        ),
        "{u}"
    );
    assert_eq!(counters.0, 4);
    assert_eq!(counters.2, 2, "m0 and m2 keep their vectors");
    assert_eq!(counters.3, 0, "both edges went with m1");
}

#[tokio::test]
async fn the_maintenance_run_archives_audit_months_older_than_the_configured_days() {
    let app = TestApp::spawn_with(
        Limits {
            audit_archive_days: 30,
            ..Limits::default()
        },
        None,
    )
    .await;
    let t = app.new_tenant("tenant-audit-age").await;
    let tenant = tenant_uuid(&app, &t.tenant_id).await;
    let old: Uuid = sqlx::query_scalar(
        "INSERT INTO audit_log (tenant_id, action, resource_type, outcome, created_at)
         VALUES ($1, 'memory.create', 'memories', 'success', now() - interval '70 days') RETURNING id",
    )
    .bind(tenant)
    .fetch_one(app.store.pool())
    .await
    .expect("old audit row");
    let report = app
        .call("POST", "/v1/admin/maintenance", Some(&app.admin_key), None)
        .await;
    let report = report.ok(200);
    assert!(
        report["audit_rows_archived"].as_i64() >= Some(1),
        "{report}"
    );
    let archived: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM audit_log_archive")
        .fetch_all(app.store.pool())
        .await
        .expect("archive");
    assert_eq!(archived, [old]);
    assert!(
        report["usage_reconciled"]["tenants"].as_i64() >= Some(1),
        "{report}"
    );
}
