//! Mnemo on a real Citus cluster (`make test-citus`: coordinator + 2 workers on this machine).
//! `MNEMO_CITUS_URL` names the coordinator's database, migrated and distributed by the script;
//! each test makes its own tenants there, so the tests run side by side.
//!
//! Ignored by `cargo test` / `make test` (no cluster there); `make test-citus` runs them with
//! `--run-ignored only`.

use std::time::Duration;

use mnemo_server::{AdminKey, AppState, Limits};
use mnemo_store::citus::{self, Placement, COLOCATION_ANCHOR, LAYOUT};
use mnemo_store::Store;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

const ADMIN_KEY: &str = "citus-admin-key-0123456789abcdef";

struct Cluster {
    store: Store,
    base_url: String,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

struct Tenant {
    uuid: Uuid,
    key: String,
}

/// The server on the coordinator, on a random port.
async fn cluster() -> Cluster {
    let url = std::env::var("MNEMO_CITUS_URL")
        .expect("MNEMO_CITUS_URL names the Citus coordinator's database (make test-citus)");
    let store = Store::connect(&url, 8).await.expect("connect to Citus");
    let tables = citus::placements(store.pool()).await.expect("placements");
    assert_eq!(
        citus::check_layout(&tables),
        Vec::<String>::new(),
        "the database is not distributed: run `mnemo admin distribute` (make test-citus does)"
    );
    let state = AppState::new(
        store.clone(),
        None,
        Limits::default(),
        AdminKey::configured(ADMIN_KEY),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let app = mnemo_server::app(state);
    tokio::spawn(async move {
        let _ = mnemo_server::serve(
            listener,
            app,
            async move {
                let _ = stopped.await;
            },
            Duration::from_secs(5),
        )
        .await;
    });
    Cluster {
        store,
        base_url: format!("http://{addr}"),
        client: reqwest::Client::new(),
        _stop: stop,
    }
}

impl Cluster {
    fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    async fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A call that must succeed. Control-plane writes (projects, tenants, keys: reference tables)
    /// from tests running side by side can meet in a distributed deadlock, which the API answers
    /// with 409 `write_conflict` and nothing kept; like a client should, retry those.
    async fn ok(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> Value {
        let mut attempt = 0;
        loop {
            let (status, answer) = self.call(method, path, key, body.clone()).await;
            if status == 409 && answer["error"]["code"] == "write_conflict" && attempt < 5 {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                continue;
            }
            assert!(status < 300, "{method} {path}: {status} {answer}");
            return answer;
        }
    }

    /// A tenant (unique name) in a new project, with a key holding every scope.
    async fn tenant(&self, prefix: &str, extra: Value) -> Tenant {
        let name = format!("{prefix}-{}", Uuid::new_v4().simple());
        let project = self
            .ok(
                "POST",
                "/v1/admin/projects",
                ADMIN_KEY,
                Some(json!({ "name": name, "owner_id": "citus" })),
            )
            .await;
        let mut body = json!({ "tenant_id": name, "project_id": project["id"], "name": name });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let t = self
            .ok("POST", "/v1/admin/tenants", ADMIN_KEY, Some(body))
            .await;
        let key = self
            .ok(
                "POST",
                &format!("/v1/admin/tenants/{name}/keys"),
                ADMIN_KEY,
                Some(json!({ "name": "k", "scopes": ["*"] })),
            )
            .await;
        Tenant {
            uuid: t["id"].as_str().and_then(|s| s.parse().ok()).expect("id"),
            key: key["secret"].as_str().expect("secret").to_owned(),
        }
    }
}

/// A unit 384-dimensional vector pointing mostly along axis `i`.
fn vector(i: usize) -> Vec<f32> {
    let mut v = vec![0.01f32; 384];
    v[i % 384] = 1.0;
    v[(i * 7 + 3) % 384] += 0.5;
    v
}

#[tokio::test]
#[ignore = "needs a Citus cluster: make test-citus"]
async fn distribute_again_changes_nothing_and_every_table_has_its_placement() {
    let c = cluster().await;
    let report = citus::distribute(c.pool()).await.expect("distribute");
    assert!(
        report.created.is_empty(),
        "re-run placed {:?}",
        report.created
    );
    assert!(report.workers >= 2);
    for (table, placement) in LAYOUT {
        let t = report
            .tables
            .iter()
            .find(|t| t.table == *table)
            .expect("every table reported");
        assert_eq!(t.placement, placement.to_string(), "{table}");
        if *placement == Placement::Distributed {
            assert!(t.shards >= 2, "{table} has {} shards", t.shards);
        }
    }
}

#[tokio::test]
#[ignore = "needs a Citus cluster: make test-citus"]
async fn the_api_works_on_the_cluster_and_keeps_tenants_apart() {
    let c = cluster().await;
    let a = c.tenant("citus-a", json!({})).await;
    let b = c.tenant("citus-b", json!({})).await;

    let memories: Vec<Value> = (0..20)
        .map(|i| {
            json!({
                "memory_id": format!("m{i}"),
                "content": { "text": format!("note number {i} about the {} garden", if i % 2 == 0 { "rose" } else { "herb" }) },
                "embedding": vector(i),
                "tags": [format!("t{}", i % 3)],
            })
        })
        .collect();
    c.ok(
        "POST",
        "/v1/memories/batch",
        &a.key,
        Some(json!({ "memories": memories })),
    )
    .await;
    c.ok(
        "POST",
        "/v1/memories",
        &b.key,
        Some(json!({ "memory_id": "secret", "content": { "text": "tenant b's rose garden" }, "embedding": vector(0) })),
    )
    .await;

    // Get, list, update, another tenant's id.
    let got = c.ok("GET", "/v1/memories/m3", &a.key, None).await;
    assert_eq!(got["memory_id"], "m3");
    let (status, _) = c.call("GET", "/v1/memories/secret", &a.key, None).await;
    assert_eq!(status, 404, "another tenant's memory must look absent");
    let page = c.ok("GET", "/v1/memories?limit=50", &a.key, None).await;
    assert_eq!(page["memories"].as_array().map(Vec::len), Some(20));
    c.ok(
        "PATCH",
        "/v1/memories/m3",
        &a.key,
        Some(json!({ "relevance_score": 0.9 })),
    )
    .await;

    // Search in every mode returns only the tenant's rows, and the exact nearest first.
    for mode in ["vector", "text", "hybrid"] {
        let mut body = json!({ "k": 10, "mode": mode });
        if mode != "text" {
            body["vector"] = json!(vector(4));
        }
        if mode != "vector" {
            body["query"] = json!("rose garden");
        }
        let r = c
            .ok("POST", "/v1/memories/search", &a.key, Some(body))
            .await;
        let ids: Vec<&str> = r["results"]
            .as_array()
            .expect("results")
            .iter()
            .filter_map(|h| h["memory"]["memory_id"].as_str())
            .collect();
        assert!(!ids.is_empty(), "{mode}: no results: {r}");
        assert!(!ids.contains(&"secret"), "{mode}: tenant b's memory leaked");
        if mode == "vector" {
            assert_eq!(ids.len(), 10);
            assert_eq!(ids[0], "m4", "exact nearest first");
        }
    }

    // Graph.
    let rel = c
        .ok(
            "POST",
            "/v1/relationships",
            &a.key,
            Some(json!({ "source": "m1", "target": "m2", "relationship_type": "relates_to" })),
        )
        .await;
    let (status, _) = c
        .call(
            "POST",
            "/v1/relationships",
            &a.key,
            Some(json!({ "source": "m1", "target": "secret", "relationship_type": "relates_to" })),
        )
        .await;
    assert_eq!(status, 404, "an edge to another tenant's memory");
    let graph = c
        .ok("GET", "/v1/memories/m1/graph?depth=2", &a.key, None)
        .await;
    assert!(graph.to_string().contains("m2"), "{graph}");
    c.ok(
        "DELETE",
        &format!("/v1/relationships/{}", rel["id"].as_str().expect("id")),
        &a.key,
        None,
    )
    .await;

    // Audit and usage.
    let audit = c.ok("GET", "/v1/audit?limit=100", &a.key, None).await;
    assert!(audit.to_string().contains("memory.search"), "{audit}");
    let usage = c.ok("GET", "/v1/usage", &a.key, None).await;
    assert_eq!(usage["total_memories"], 20, "{usage}");

    // Delete.
    c.ok("DELETE", "/v1/memories/m3", &a.key, None).await;
    let (status, _) = c.call("GET", "/v1/memories/m3", &a.key, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
#[ignore = "needs a Citus cluster: make test-citus"]
async fn quotas_hold_on_the_cluster() {
    let c = cluster().await;
    let t = c.tenant("citus-quota", json!({ "max_memories": 2 })).await;
    for i in 0..2 {
        c.ok(
            "POST",
            "/v1/memories",
            &t.key,
            Some(json!({ "content": { "n": i }, "embedding": vector(i) })),
        )
        .await;
    }
    let (status, body) = c
        .call(
            "POST",
            "/v1/memories",
            &t.key,
            Some(json!({ "content": { "n": 3 }, "embedding": vector(3) })),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
}

/// `EXPLAIN` of a statement as the application role with the tenant set, as the server runs it.
async fn explain(pool: &PgPool, tenant: Uuid, sql: &str) -> String {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(
        "SELECT set_config('role', 'mnemo_app', true), set_config('app.tenant_id', $1, true)",
    )
    .bind(tenant.to_string())
    .execute(&mut *tx)
    .await
    .expect("set role");
    let lines: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {sql}"))
        .fetch_all(&mut *tx)
        .await
        .expect("explain");
    lines.join("\n")
}

#[tokio::test]
#[ignore = "needs a Citus cluster: make test-citus"]
async fn a_tenants_search_get_and_insert_each_touch_one_shard() {
    let c = cluster().await;
    let t = c.tenant("citus-router", json!({})).await;
    let v = format!("'{:?}'::vector", vector(1)).replace(' ', "");
    let statements = [
        format!(
            "SELECT id FROM contextual_memories m WHERE m.tenant_id = '{}' ORDER BY m.embedding <=> {v} LIMIT 10",
            t.uuid
        ),
        format!(
            "SELECT id FROM contextual_memories m WHERE m.tenant_id = '{}' AND m.memory_id = 'x'",
            t.uuid
        ),
        format!(
            "INSERT INTO contextual_memories (tenant_id, memory_id, content) VALUES ('{}', 'x', '{{}}')",
            t.uuid
        ),
    ];
    for sql in statements {
        let plan = explain(c.pool(), t.uuid, &sql).await;
        assert!(
            plan.contains("Task Count: 1"),
            "not a single-shard (router) plan for {sql}:\n{plan}"
        );
    }
}

#[tokio::test]
#[ignore = "needs a Citus cluster: make test-citus"]
async fn a_tenants_rows_share_a_worker_and_tenants_spread_over_both_workers() {
    let c = cluster().await;
    let mut nodes = std::collections::BTreeSet::new();
    for i in 0..12 {
        let t = c.tenant("citus-spread", json!({})).await;
        c.ok(
            "POST",
            "/v1/memories",
            &t.key,
            Some(json!({ "memory_id": "a", "content": { "i": i }, "embedding": vector(i) })),
        )
        .await;
        let placements: Vec<(String, String)> = sqlx::query_as(
            "SELECT t.name, format('%s:%s', p.nodename, p.nodeport)
             FROM unnest(ARRAY['contextual_memories', 'memory_relationships', 'audit_log', 'tenant_usage']) AS t(name)
             JOIN pg_dist_shard_placement p
               ON p.shardid = get_shard_id_for_distribution_column(t.name::regclass, $1::uuid)",
        )
        .bind(t.uuid)
        .fetch_all(c.pool())
        .await
        .expect("placements");
        assert_eq!(placements.len(), 4);
        let first = &placements[0].1;
        assert!(
            placements.iter().all(|(_, n)| n == first),
            "a tenant's rows on different nodes: {placements:?}"
        );
        nodes.insert(first.clone());
    }
    assert!(
        nodes.len() >= 2,
        "12 tenants all on {nodes:?}: not spread over the workers"
    );
}

#[tokio::test]
#[ignore = "needs a Citus cluster: make test-citus"]
async fn schema_changes_after_distribution_reach_every_shard() {
    let c = cluster().await;
    let column = format!("probe_{}", Uuid::new_v4().simple());
    // What a later migration does: add a column and an index to a distributed table.
    for ddl in [
        format!("ALTER TABLE {COLOCATION_ANCHOR} ADD COLUMN {column} integer"),
        format!("CREATE INDEX {column}_idx ON {COLOCATION_ANCHOR} (tenant_id, {column})"),
    ] {
        sqlx::query(&ddl)
            .execute(c.pool())
            .await
            .expect("DDL on a distributed table");
    }
    let counts: Vec<String> = sqlx::query_scalar(
        "SELECT result FROM run_command_on_shards($1::regclass,
             format('SELECT count(*) FROM pg_attribute WHERE attrelid = %L::regclass AND attname = %L', '%s', $2::text))",
    )
    .bind(COLOCATION_ANCHOR)
    .bind(&column)
    .fetch_all(c.pool())
    .await
    .expect("run_command_on_shards");
    sqlx::raw_sql(&format!(
        "ALTER TABLE {COLOCATION_ANCHOR} DROP COLUMN {column}"
    ))
    .execute(c.pool())
    .await
    .expect("drop the probe");
    assert!(counts.len() >= 2);
    assert!(
        counts.iter().all(|n| n == "1"),
        "shards missing the column: {counts:?}"
    );
}

/// The seed's maintenance and monitoring functions that run on the cluster
/// (`clean_expired_memories()` has its own test below).
#[tokio::test]
#[ignore = "needs a Citus cluster: make test-citus"]
async fn the_seeds_analytics_archival_and_monitoring_functions_run_on_the_cluster() {
    let c = cluster().await;
    let t = c.tenant("citus-maint", json!({})).await;
    c.ok(
        "POST",
        "/v1/memories",
        &t.key,
        Some(json!({ "memory_id": "one", "content": { "x": 1 }, "embedding": vector(1) })),
    )
    .await;
    for sql in [
        "SELECT refresh_analytics_views()",
        "SELECT archive_old_audit_logs(365)",
        "SELECT mnemo_drop_audit_months(400)",
        "SELECT count(*) FROM system_performance_summary",
        "SELECT count(*) FROM system_health",
        "SELECT count(*) FROM tenant_overview",
        "SELECT count(*) FROM memory_usage_stats",
        "SELECT count(*) FROM tenant_memory_analytics",
    ] {
        sqlx::query(sql)
            .execute(c.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    sqlx::query("SELECT log_performance_metric($1, 'memory', 'retrieval_time', 150.5, 'ms')")
        .bind(t.uuid)
        .execute(c.pool())
        .await
        .expect("log_performance_metric");
    let total: i64 = sqlx::query_scalar("SELECT total_memories FROM get_tenant_memory_usage($1)")
        .bind(t.uuid)
        .fetch_one(c.pool())
        .await
        .expect("get_tenant_memory_usage");
    assert_eq!(total, 1);
}

/// The expiry and retention cleanup runs tenant by tenant: the tenants are found by a read that
/// locks nothing, and every statement that locks rows (`FOR UPDATE SKIP LOCKED`) names one tenant,
/// so Citus routes it to one shard (it refuses row locks in a multi-shard query). The seed's
/// `clean_expired_memories()`, the service's run, the preview and a restore all work here.
#[tokio::test]
#[ignore = "needs a Citus cluster: make test-citus"]
async fn expiry_and_retention_cleanup_run_tenant_by_tenant_on_the_cluster() {
    let c = cluster().await;
    let t = c.tenant("citus-retention", json!({})).await;
    let u = c.tenant("citus-retention-other", json!({})).await;
    for (tenant, n) in [(&t, 5), (&u, 3)] {
        for i in 0..n {
            c.ok(
                "POST",
                "/v1/memories",
                &tenant.key,
                Some(json!({ "memory_id": format!("m{i}"), "content": { "i": i }, "embedding": vector(i) })),
            )
            .await;
        }
    }
    sqlx::query(
        "UPDATE contextual_memories SET expires_at = now() - interval '1 minute'
         WHERE tenant_id = ANY($1) AND memory_id = 'm0'",
    )
    .bind(vec![t.uuid, u.uuid])
    .execute(c.pool())
    .await
    .expect("expire m0 of both tenants");
    let removed: i32 = sqlx::query_scalar("SELECT clean_expired_memories()")
        .fetch_one(c.pool())
        .await
        .expect("clean_expired_memories() on the cluster");
    assert!(removed >= 2, "removed {removed}");

    c.ok(
        "PUT",
        "/v1/retention/memories",
        &t.key,
        Some(json!({ "max_count": 2, "archival_policy": "archive" })),
    )
    .await;
    let preview = c.ok("POST", "/v1/retention/preview", &t.key, None).await;
    assert_eq!(
        preview["retention"]["first_ids"],
        json!(["m1", "m2"]),
        "{preview}"
    );
    let report = c.store.run_cleanup().await.expect("the service's cleanup");
    let mine = report
        .tenants
        .iter()
        .find(|r| r.tenant_id == t.uuid)
        .expect("the tenant in the report");
    assert_eq!((mine.retention_removed, mine.archived), (2, true));
    let ids = |page: &Value| -> Vec<String> {
        page["memories"]
            .as_array()
            .expect("memories")
            .iter()
            .map(|m| m["memory_id"].as_str().expect("id").to_owned())
            .collect()
    };
    let live = c.ok("GET", "/v1/memories", &t.key, None).await;
    assert_eq!(ids(&live), ["m4", "m3"]);
    let archived = c
        .ok("GET", "/v1/memories?archived=true", &t.key, None)
        .await;
    let mut archived = ids(&archived);
    archived.sort();
    assert_eq!(archived, ["m1", "m2"]);
    c.ok("POST", "/v1/memories/m1/restore", &t.key, None).await;
    let other = c.ok("GET", "/v1/memories", &u.key, None).await;
    assert_eq!(ids(&other), ["m2", "m1"]);
    let analytics = c
        .ok(
            "GET",
            "/v1/admin/analytics?refresh=true&limit=500",
            ADMIN_KEY,
            None,
        )
        .await;
    assert!(
        analytics["top_tenants"]
            .as_array()
            .expect("top_tenants")
            .iter()
            .any(|r| r["memory_count"] == 3),
        "{analytics}"
    );
    // The maintenance endpoint runs the same cleanup, per tenant, and reports it.
    let report = c.ok("POST", "/v1/admin/maintenance", ADMIN_KEY, None).await;
    println!("maintenance on the cluster: {report}");
    assert!(report["retention"]["tenants"].is_array(), "{report}");
    let errors = report["errors"].as_array().expect("errors");
    assert!(
        errors
            .iter()
            .all(|e| !e.as_str().unwrap_or("").starts_with("retention")),
        "{report}"
    );
}
