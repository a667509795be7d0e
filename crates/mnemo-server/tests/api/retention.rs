//! Retention policies (`/v1/retention/{resource}`), their preview, the cleanup run, the archive
//! (`archived=true`) and restore.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::harness::{vector, TenantHandle, TestApp};

/// The `memory_id`s of a page of memories.
fn ids(page: &Value) -> BTreeSet<String> {
    page["memories"]
        .as_array()
        .expect("memories")
        .iter()
        .map(|m| m["memory_id"].as_str().expect("memory_id").to_owned())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

/// Moves a memory's creation `days` days into the past (the API cannot).
async fn backdate(app: &TestApp, t: &TenantHandle, memory_id: &str, days: i32) {
    sqlx::query(
        "UPDATE contextual_memories m SET created_at = now() - make_interval(days => $3)
         FROM tenants t WHERE t.id = m.tenant_id AND t.tenant_id = $1 AND m.memory_id = $2",
    )
    .bind(&t.tenant_id)
    .bind(memory_id)
    .bind(days)
    .execute(app.store.pool())
    .await
    .expect("backdate");
}

async fn expire(app: &TestApp, t: &TenantHandle, memory_id: &str) {
    sqlx::query(
        "UPDATE contextual_memories m SET expires_at = now() - interval '1 minute'
         FROM tenants t WHERE t.id = m.tenant_id AND t.tenant_id = $1 AND m.memory_id = $2",
    )
    .bind(&t.tenant_id)
    .bind(memory_id)
    .execute(app.store.pool())
    .await
    .expect("expire");
}

async fn put_policy(app: &TestApp, t: &TenantHandle, resource: &str, body: Value) -> Value {
    app.call(
        "PUT",
        &format!("/v1/retention/{resource}"),
        Some(&t.key),
        Some(body),
    )
    .await
    .ok(201)
    .clone()
}

#[tokio::test]
async fn a_retention_policy_is_created_replaced_read_and_deleted() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("ret-crud").await;
    let created = put_policy(
        &app,
        &t,
        "memories",
        json!({ "retention_days": 30, "max_count": 100, "archival_policy": "archive", "basis": "last_accessed" }),
    )
    .await;
    assert_eq!(created["archival_policy"], "archive");
    assert_eq!(created["basis"], "last_accessed");
    let replaced = app
        .call(
            "PUT",
            "/v1/retention/memories",
            Some(&t.key),
            Some(json!({ "retention_days": 7 })),
        )
        .await;
    let replaced = replaced.ok(200);
    assert_eq!(
        (
            &replaced["retention_days"],
            &replaced["max_count"],
            &replaced["archival_policy"],
            &replaced["basis"]
        ),
        (
            &json!(7),
            &Value::Null,
            &json!("delete"),
            &json!("created_at")
        )
    );
    let read = app.get("/v1/retention/memories", &t.key).await;
    assert_eq!(read.ok(200)["retention_days"], 7);
    app.call("DELETE", "/v1/retention/memories", Some(&t.key), None)
        .await
        .ok(204);
    app.get("/v1/retention/memories", &t.key)
        .await
        .expect(404, "retention_policy_not_found");
    // The writes are audited like every tenant operation.
    let audit = app.get("/v1/audit?action=retention.put", &t.key).await;
    assert_eq!(audit.ok(200)["records"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn retention_needs_a_retention_or_policies_scope() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("ret-scope").await;
    let (_, memories_only) = app.create_key(&t.tenant_id, &["memories:*"], None).await;
    let (_, policies) = app
        .create_key(&t.tenant_id, &["policies:write"], None)
        .await;
    let (_, reader) = app
        .create_key(&t.tenant_id, &["retention:read"], None)
        .await;
    let body = json!({ "retention_days": 30 });
    app.call(
        "PUT",
        "/v1/retention/audit_log",
        Some(&memories_only),
        Some(body.clone()),
    )
    .await
    .expect(403, "insufficient_scope");
    app.call(
        "PUT",
        "/v1/retention/audit_log",
        Some(&reader),
        Some(body.clone()),
    )
    .await
    .expect(403, "insufficient_scope");
    app.call(
        "PUT",
        "/v1/retention/audit_log",
        Some(&policies),
        Some(body),
    )
    .await
    .ok(201);
    app.get("/v1/retention/audit_log", &reader).await.ok(200);
}

#[tokio::test]
async fn the_preview_names_exactly_what_the_next_run_removes() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("ret-preview").await;
    for i in 0..7 {
        app.create_memory(&t.key, &format!("m{i}"), json!({ "i": i }))
            .await;
    }
    app.create_memory(&t.key, "gone-1", json!({})).await;
    app.create_memory(&t.key, "gone-2", json!({})).await;
    expire(&app, &t, "gone-1").await;
    expire(&app, &t, "gone-2").await;
    put_policy(&app, &t, "memories", json!({ "max_count": 3 })).await;

    let preview = app.post("/v1/retention/preview", &t.key, json!(null)).await;
    let preview = preview.ok(200).clone();
    assert_eq!(preview["expired"]["count"], 2);
    assert_eq!(preview["retention"]["count"], 4);
    assert_eq!(preview["retention"]["action"], "delete");
    let mut due: BTreeSet<String> = strings(&preview["retention"]["first_ids"])
        .into_iter()
        .collect();
    assert_eq!(due, ["m0", "m1", "m2", "m3"].map(String::from).into());
    due.extend(strings(&preview["expired"]["first_ids"]));
    let short = app
        .post("/v1/retention/preview?limit=1", &t.key, json!(null))
        .await;
    assert_eq!(strings(&short.ok(200)["retention"]["first_ids"]), ["m0"]);

    let before = ids(app.get("/v1/memories?limit=500", &t.key).await.ok(200));
    let report = app.admin("POST", "/v1/admin/maintenance", None).await;
    let report = report.ok(200);
    assert_eq!(report["errors"], json!([]));
    let mine: Vec<&Value> = report["retention"]["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .filter(|r| r["expired_removed"] == 2)
        .collect();
    assert_eq!(mine.len(), 1, "{report}");
    assert_eq!(mine[0]["retention_removed"], 4);
    let after = ids(app.get("/v1/memories?limit=500", &t.key).await.ok(200));
    // The expired ones were already invisible; of the visible, exactly the previewed left.
    let removed: BTreeSet<String> = before.difference(&after).cloned().collect();
    assert_eq!(removed, ["m0", "m1", "m2", "m3"].map(String::from).into());
    assert_eq!(after, ["m4", "m5", "m6"].map(String::from).into());
    assert_eq!(app.memory_count(&t.key).await, 3);
    // Counted by reason and action, never by tenant.
    let metrics = app.call("GET", "/metrics", None, None).await;
    let line = metrics
        .text
        .lines()
        .find(|l| {
            l.starts_with("mnemo_retention_memories_removed_total{")
                && l.contains("reason=\"retention\"")
        })
        .unwrap_or_else(|| panic!("no retention counter in {}", metrics.text));
    assert!(
        line.contains("action=\"delete\"") && line.ends_with(" 4"),
        "{line}"
    );
    let again = app.post("/v1/retention/preview", &t.key, json!(null)).await;
    assert_eq!(again.ok(200)["retention"]["count"], 0);
    assert_eq!(again.ok(200)["expired"]["count"], 0);
}

#[tokio::test]
async fn archived_memories_are_readable_out_of_search_and_restored_with_their_relationships() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("ret-archive").await;
    for (id, seed) in [("a", 11), ("b", 12), ("c", 13)] {
        app.post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": id, "content": { "text": id }, "embedding": vector(seed) }),
        )
        .await
        .ok(201);
    }
    app.link(&t.key, "a", "b", "related_to", 0.5).await;
    app.link(&t.key, "b", "c", "related_to", 0.5).await;
    backdate(&app, &t, "a", 60).await;
    backdate(&app, &t, "b", 60).await;
    put_policy(
        &app,
        &t,
        "memories",
        json!({ "retention_days": 30, "archival_policy": "archive" }),
    )
    .await;
    let preview = app.post("/v1/retention/preview", &t.key, json!(null)).await;
    assert_eq!(preview.ok(200)["retention"]["action"], "archive");
    app.store.run_cleanup().await.expect("cleanup");

    assert_eq!(
        ids(app.get("/v1/memories", &t.key).await.ok(200)),
        ["c".to_owned()].into()
    );
    let archived = app.get("/v1/memories?archived=true", &t.key).await;
    let archived = archived.ok(200);
    assert_eq!(ids(archived), ["a", "b"].map(String::from).into());
    assert!(archived["memories"][0]["archived_at"].is_string());
    app.get("/v1/memories/a", &t.key)
        .await
        .expect(404, "memory_not_found");
    let a = app.get("/v1/memories/a?archived=true", &t.key).await;
    assert_eq!(a.ok(200)["content"], json!({ "text": "a" }));
    let hits = app
        .post(
            "/v1/memories/search",
            &t.key,
            json!({ "vector": vector(11), "k": 10 }),
        )
        .await;
    let found: Vec<&Value> = hits.ok(200)["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|h| &h["memory"]["memory_id"])
        .collect();
    assert_eq!(found, [&json!("c")]);
    assert_eq!(app.memory_count(&t.key).await, 1);

    // a comes back alone: its edge's other end (b) is still archived.
    let restored = app
        .post("/v1/memories/a/restore", &t.key, json!(null))
        .await;
    assert_eq!(restored.ok(200)["memory_id"], "a");
    let n = app.get("/v1/memories/a/neighbours", &t.key).await;
    assert_eq!(
        n.ok(200)["relationships"].as_array().map(Vec::len),
        Some(0),
        "{}",
        n.text
    );
    app.post("/v1/memories/b/restore", &t.key, json!(null))
        .await
        .ok(200);
    let n = app.get("/v1/memories/b/neighbours", &t.key).await;
    assert_eq!(
        n.ok(200)["relationships"].as_array().map(Vec::len),
        Some(2),
        "{}",
        n.text
    );
    assert_eq!(app.memory_count(&t.key).await, 3);
    let usage = app.get("/v1/usage", &t.key).await;
    assert_eq!(usage.ok(200)["relationship_count"], 2);
    assert_eq!(
        ids(app.get("/v1/memories?archived=true", &t.key).await.ok(200)),
        BTreeSet::new()
    );
    // Restoring twice: the id is live now.
    app.post("/v1/memories/a/restore", &t.key, json!(null))
        .await
        .expect(409, "memory_exists");
}

#[tokio::test]
async fn a_read_keeps_a_memory_under_retention_by_last_access() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("ret-last-access").await;
    app.create_memory(&t.key, "old", json!({})).await;
    app.create_memory(&t.key, "new", json!({})).await;
    app.get("/v1/memories/old", &t.key).await.ok(200);
    put_policy(
        &app,
        &t,
        "memories",
        json!({ "max_count": 1, "basis": "last_accessed" }),
    )
    .await;
    let p = app.post("/v1/retention/preview", &t.key, json!(null)).await;
    assert_eq!(strings(&p.ok(200)["retention"]["first_ids"]), ["new"]);
    // The read was recorded without counting as an edit.
    let old = app.get("/v1/memories/old", &t.key).await;
    let old = old.ok(200);
    assert_eq!(old["created_at"], old["updated_at"]);
}

#[tokio::test]
async fn two_concurrent_cleanups_never_remove_a_memory_twice() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("ret-concurrent").await;
    put_policy(
        &app,
        &t,
        "memories",
        json!({ "retention_days": 1, "archival_policy": "archive" }),
    )
    .await;
    sqlx::query(
        "INSERT INTO contextual_memories (tenant_id, memory_id, content, created_at)
         SELECT t.id, 'm' || g, jsonb_build_object('g', g), now() - interval '2 days' + g * interval '1 ms'
         FROM tenants t, generate_series(1, 2500) AS g WHERE t.tenant_id = $1",
    )
    .bind(&t.tenant_id)
    .execute(app.store.pool())
    .await
    .expect("insert");
    let tenant: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tenants WHERE tenant_id = $1")
        .bind(&t.tenant_id)
        .fetch_one(app.store.pool())
        .await
        .expect("tenant");
    app.store
        .reconcile_tenant_usage(tenant)
        .await
        .expect("reconcile");

    let (one, two) = tokio::join!(app.store.run_cleanup(), app.store.run_cleanup());
    let total = one.expect("first").total() + two.expect("second").total();
    assert_eq!(total, 2500);
    let (archived, live): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM contextual_memories_archive WHERE tenant_id = $1),
                (SELECT count(*) FROM contextual_memories WHERE tenant_id = $1)",
    )
    .bind(tenant)
    .fetch_one(app.store.pool())
    .await
    .expect("count");
    assert_eq!((archived, live), (2500, 0));
    assert_eq!(app.memory_count(&t.key).await, 0);
}

#[tokio::test]
async fn retention_never_touches_another_tenants_memories() {
    let app = TestApp::spawn().await;
    let a = app.new_tenant("ret-a").await;
    let b = app.new_tenant("ret-b").await;
    for i in 0..3 {
        app.create_memory(&a.key, &format!("m{i}"), json!({})).await;
        app.create_memory(&b.key, &format!("m{i}"), json!({})).await;
    }
    put_policy(&app, &a, "memories", json!({ "max_count": 1 })).await;
    let preview_b = app.post("/v1/retention/preview", &b.key, json!(null)).await;
    assert_eq!(preview_b.ok(200)["retention"], Value::Null);
    app.store.run_cleanup().await.expect("cleanup");
    assert_eq!(app.memory_count(&a.key).await, 1);
    assert_eq!(app.memory_count(&b.key).await, 3);
}

#[tokio::test]
async fn a_retain_policy_keeps_expired_memories_and_a_contexts_policy_is_noted() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("ret-retain").await;
    app.create_memory(&t.key, "kept", json!({})).await;
    expire(&app, &t, "kept").await;
    put_policy(&app, &t, "memories", json!({ "archival_policy": "retain" })).await;
    put_policy(&app, &t, "contexts", json!({ "retention_days": 5 })).await;
    let p = app.post("/v1/retention/preview", &t.key, json!(null)).await;
    let p = p.ok(200);
    assert_eq!(p["expired"]["count"], 0);
    assert_eq!(p["retention"], Value::Null);
    assert!(p["notes"][0].as_str().expect("note").contains("contexts"));
    app.store.run_cleanup().await.expect("cleanup");
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM contextual_memories WHERE memory_id = 'kept'")
            .fetch_one(app.store.pool())
            .await
            .expect("count");
    assert_eq!(left, 1);
}

#[tokio::test]
async fn admin_analytics_show_the_tenants_after_a_refresh_and_are_bounded() {
    let app = TestApp::spawn().await;
    let big = app.new_tenant("analytics-big").await;
    let small = app.new_tenant("analytics-small").await;
    for i in 0..3 {
        app.create_memory(&big.key, &format!("m{i}"), json!({}))
            .await;
    }
    app.create_memory(&small.key, "m0", json!({})).await;
    let a = app
        .admin(
            "GET",
            "/v1/admin/analytics?refresh=true&limit=1&days=7",
            None,
        )
        .await;
    let a = a.ok(200);
    assert_eq!(a["totals"]["memories"], 4, "{a}");
    assert_eq!(a["top_tenants"].as_array().map(Vec::len), Some(1));
    assert_eq!(a["top_tenants"][0]["tenant_id"], "analytics-big");
    assert_eq!(a["top_tenants"][0]["memory_count"], 3);
    let today = a["daily"]
        .as_array()
        .expect("daily")
        .last()
        .cloned()
        .expect("today");
    assert!(
        today["operations"].as_i64().expect("operations") >= 4,
        "{a}"
    );
    app.get("/v1/admin/analytics", &big.key)
        .await
        .expect(403, "admin_only");
}

/// Moves audit rows of two tenants into an old month of `audit_log` (a partition of its own).
async fn old_audit_month(app: &TestApp, tenants: &[&TenantHandle]) {
    sqlx::query(
        "CREATE TABLE audit_log_p200001 PARTITION OF audit_log
         FOR VALUES FROM ('2000-01-01 00:00:00+00') TO ('2000-02-01 00:00:00+00')",
    )
    .execute(app.store.pool())
    .await
    .expect("old month");
    for t in tenants {
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, actor, action, resource_type, outcome, details, created_at)
             SELECT id, 'test', 'memory.create', 'memories', 'success', '{}', '2000-01-15 00:00:00+00'
             FROM tenants WHERE tenant_id = $1",
        )
        .bind(&t.tenant_id)
        .execute(app.store.pool())
        .await
        .expect("old audit row");
    }
}

async fn exists(app: &TestApp, table: &str) -> bool {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(app.store.pool())
        .await
        .expect("to_regclass")
}

#[tokio::test]
async fn old_audit_months_are_dropped_whole_unless_a_tenants_policy_keeps_them() {
    let app = TestApp::spawn().await;
    let keeper = app.new_tenant("audit-keeper").await;
    let other = app.new_tenant("audit-other").await;
    old_audit_month(&app, &[&keeper, &other]).await;
    // The month moves to the archive whole, then waits for the drop.
    let moved = app.store.archive_audit_months(365).await.expect("archive");
    assert_eq!(moved, 2);
    assert!(exists(&app, "audit_log_archive_p200001").await);
    put_policy(
        &app,
        &keeper,
        "audit_log",
        json!({ "archival_policy": "retain" }),
    )
    .await;
    let dropped = app.store.drop_audit_months(400).await.expect("drop");
    assert_eq!(dropped, Vec::<String>::new(), "kept by the keeper's policy");
    assert!(exists(&app, "audit_log_archive_p200001").await);
    app.call("DELETE", "/v1/retention/audit_log", Some(&keeper.key), None)
        .await
        .ok(204);
    let dropped = app.store.drop_audit_months(400).await.expect("drop");
    assert_eq!(dropped, ["audit_log_archive_p200001"]);
    assert!(!exists(&app, "audit_log_archive_p200001").await);
}
