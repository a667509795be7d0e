//! Sharing rules through the API: `POST /v1/memories/search` with `scope: "shared"` returns what
//! another tenant's active rules expose, anonymized and marked with the rule; revoking,
//! deactivating or expiring a rule takes effect on the next request; both sides' audit trails
//! record the read; rules never cross projects or reach strict tenants.

use serde_json::{json, Value};

use crate::harness::{vector, Resp, TenantHandle, TestApp};

async fn federated(app: &TestApp, project: &str, name: &str) -> TenantHandle {
    app.new_tenant_in(project, name, json!({ "isolation_level": "federated" }))
        .await
}

/// A (owner) with a public and a private memory, B (reader), and A's rule for B over `public`.
struct World {
    app: TestApp,
    a: TenantHandle,
    b: TenantHandle,
    rule: String,
}

async fn world(rule_extra: Value) -> World {
    let app = TestApp::spawn().await;
    let project = app.create_project("sharing").await;
    let a = federated(&app, &project, "tenant-owner").await;
    let b = federated(&app, &project, "tenant-reader").await;
    for (id, tags, content) in [
        (
            "deploy-note",
            json!(["public"]),
            json!({ "text": "Deploy with blue green switching", "owner": "jane.doe@corp.example",
                    "customer": "ACME Corp", "call": "+1 555 123 4567" }),
        ),
        (
            "secret-note",
            json!(["private"]),
            json!({ "text": "Deploy the secret merger plan" }),
        ),
    ] {
        app.post(
            "/v1/memories",
            &a.key,
            json!({ "memory_id": id, "tags": tags, "content": content, "embedding": vector(3),
                    "metadata": { "author": "jane.doe@corp.example" } }),
        )
        .await
        .ok(201);
    }
    let mut body = json!({
        "target_tenant_id": "tenant-reader",
        "conditions": { "tags": ["public"] },
        "anonymization": { "strip_fields": ["owner"], "redact_fields": ["customer"] },
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), rule_extra.as_object()) {
        b.extend(e.clone());
    }
    let r = app.post("/v1/sharing-rules", &a.key, body).await;
    let rule = r.ok(201)["id"].as_str().expect("rule id").to_owned();
    World { app, a, b, rule }
}

async fn shared_search(app: &TestApp, key: &str, body: Value) -> Resp {
    let mut body = body;
    body["scope"] = json!("shared");
    app.post("/v1/memories/search", key, body).await
}

fn shared_results(r: &Resp) -> Vec<Value> {
    r.body["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|h| !h["shared"].is_null())
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_shared_search_returns_what_the_rule_allows_anonymized_and_marked() {
    let w = world(json!({})).await;
    for body in [
        json!({ "query": "deploy", "mode": "text" }),
        json!({ "vector": vector(3), "k": 10 }),
        json!({ "query": "deploy", "vector": vector(3), "mode": "hybrid" }),
    ] {
        let r = shared_search(&w.app, &w.b.key, body.clone()).await;
        let hits = shared_results(&r);
        assert_eq!(hits.len(), 1, "{body}: {}", r.text);
        let h = &hits[0];
        assert_eq!(h["shared"]["rule_id"], json!(w.rule));
        assert!(h["shared"].get("source_tenant_id").is_none(), "{h}");
        let m = &h["memory"];
        assert!(m["memory_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("shared-")));
        assert_eq!(m["content"]["text"], "Deploy with blue green switching");
        assert!(m["content"].get("owner").is_none(), "stripped: {m}");
        assert_eq!(m["content"]["customer"], "[redacted]");
        assert_eq!(m["content"]["call"], "[number]");
        assert_eq!(m["metadata"]["author"], "[email]");
        assert!(m.get("embedding").is_none());
        for leak in [
            "tenant-owner",
            "secret merger",
            "jane.doe",
            "deploy-note",
            "ACME",
        ] {
            assert!(!r.text.contains(leak), "{body} leaks {leak}: {}", r.text);
        }
    }
    // The default scope is the tenant's own memories only.
    let own = w
        .app
        .post(
            "/v1/memories/search",
            &w.b.key,
            json!({ "query": "deploy", "mode": "text" }),
        )
        .await;
    assert_eq!(own.ok(200)["results"].as_array().map(Vec::len), Some(0));
    // The owner's own shared search does not see its rule (a rule shares with others).
    let r = shared_search(
        &w.app,
        &w.a.key,
        json!({ "query": "deploy", "mode": "text" }),
    )
    .await;
    assert!(shared_results(&r).is_empty(), "{}", r.text);
}

#[tokio::test]
async fn revoking_deactivating_or_expiring_a_rule_takes_effect_on_the_next_request() {
    let w = world(json!({})).await;
    let q = json!({ "query": "deploy", "mode": "text" });
    let count = |r: &Resp| shared_results(r).len();
    assert_eq!(count(&shared_search(&w.app, &w.b.key, q.clone()).await), 1);
    let path = format!("/v1/sharing-rules/{}", w.rule);
    w.app
        .call(
            "PATCH",
            &path,
            Some(&w.a.key),
            Some(json!({ "is_active": false })),
        )
        .await
        .ok(200);
    assert_eq!(count(&shared_search(&w.app, &w.b.key, q.clone()).await), 0);
    w.app
        .call(
            "PATCH",
            &path,
            Some(&w.a.key),
            Some(json!({ "is_active": true })),
        )
        .await
        .ok(200);
    assert_eq!(count(&shared_search(&w.app, &w.b.key, q.clone()).await), 1);
    // Expired (set in the past by the owner role: the API accepts only future times).
    sqlx::query("UPDATE tenant_sharing_rules SET expires_at = now() - interval '1 second'")
        .execute(w.app.store.pool())
        .await
        .expect("expire");
    assert_eq!(count(&shared_search(&w.app, &w.b.key, q.clone()).await), 0);
    w.app
        .call(
            "PATCH",
            &path,
            Some(&w.a.key),
            Some(json!({ "expires_at": null })),
        )
        .await
        .ok(200);
    assert_eq!(count(&shared_search(&w.app, &w.b.key, q.clone()).await), 1);
    w.app
        .call("DELETE", &path, Some(&w.a.key), None)
        .await
        .ok(204);
    assert_eq!(count(&shared_search(&w.app, &w.b.key, q).await), 0);
    w.app
        .get(&path, &w.a.key)
        .await
        .expect(404, "sharing_rule_not_found");
}

#[tokio::test]
async fn shared_reads_are_audited_on_both_sides() {
    let w = world(json!({})).await;
    let r = shared_search(
        &w.app,
        &w.b.key,
        json!({ "query": "deploy", "mode": "text" }),
    )
    .await;
    assert_eq!(shared_results(&r).len(), 1);
    let request_id = r.request_id.clone().expect("request id");
    let reader = w
        .app
        .get(&format!("/v1/audit?request_id={request_id}"), &w.b.key)
        .await;
    let rows = reader.ok(200)["records"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        rows.iter()
            .any(|r| r["action"] == "memory.search_shared" && r["outcome"] == "success"),
        "{}",
        reader.text
    );
    let owner = w.app.get("/v1/audit?action=sharing.read", &w.a.key).await;
    let rows = owner.ok(200)["records"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(rows.len(), 1, "{}", owner.text);
    assert_eq!(rows[0]["resource_id"], json!(w.rule));
    assert_eq!(rows[0]["details"]["reader"], "tenant-reader");
    assert_eq!(rows[0]["details"]["memories"], 1);
    assert_eq!(rows[0]["request_id"], json!(request_id));
    // A search that reads nothing shared writes nothing in the owner's trail.
    shared_search(
        &w.app,
        &w.b.key,
        json!({ "query": "unrelated", "mode": "text" }),
    )
    .await
    .ok(200);
    let owner = w.app.get("/v1/audit?action=sharing.read", &w.a.key).await;
    assert_eq!(owner.ok(200)["records"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_project_wide_rule_reaches_every_tenant_and_may_reveal_its_source() {
    let w = world(json!({})).await;
    let project = w.b.project_id.clone();
    let c = federated(&w.app, &project, "tenant-third").await;
    let strict = w
        .app
        .new_tenant_in(&project, "tenant-closed", json!({}))
        .await;
    let r = w
        .app
        .post(
            "/v1/sharing-rules",
            &w.a.key,
            json!({ "target_tenant_id": "*", "conditions": { "any_tags": ["private", "other"] },
                    "reveal_source": true }),
        )
        .await;
    assert_eq!(r.ok(201)["target_tenant_id"], "*");
    let q = json!({ "query": "deploy", "mode": "text" });
    let hits = shared_results(&shared_search(&w.app, &c.key, q.clone()).await);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["shared"]["source_tenant_id"], "tenant-owner");
    assert_eq!(
        hits[0]["memory"]["content"]["text"],
        "Deploy the secret merger plan"
    );
    // B gets both rules' memories, each through its own rule.
    let hits = shared_results(&shared_search(&w.app, &w.b.key, q.clone()).await);
    assert_eq!(hits.len(), 2);
    // A strict tenant of the project gets nothing, not even by asking.
    shared_search(&w.app, &strict.key, q)
        .await
        .expect(403, "isolation_strict");
}

#[tokio::test]
async fn rules_never_cross_projects_or_reach_strict_or_self() {
    let w = world(json!({})).await;
    let other = w.app.create_project("elsewhere").await;
    federated(&w.app, &other, "tenant-far").await;
    let rule =
        |target: &str| json!({ "target_tenant_id": target, "conditions": { "tags": ["public"] } });
    w.app
        .post("/v1/sharing-rules", &w.a.key, rule("tenant-far"))
        .await
        .expect(404, "target_tenant_not_found");
    w.app
        .post("/v1/sharing-rules", &w.a.key, rule("tenant-nobody"))
        .await
        .expect(404, "target_tenant_not_found");
    w.app
        .post("/v1/sharing-rules", &w.a.key, rule("tenant-owner"))
        .await
        .expect(422, "invalid_value");
    w.app
        .post("/v1/sharing-rules", &w.a.key, rule("tenant-reader"))
        .await
        .expect(409, "sharing_rule_exists");
    // The owner turning strict stops its rules at once.
    w.app
        .admin(
            "PATCH",
            "/v1/admin/tenants/tenant-owner",
            Some(json!({ "isolation_level": "strict" })),
        )
        .await
        .ok(200);
    let r = shared_search(
        &w.app,
        &w.b.key,
        json!({ "query": "deploy", "mode": "text" }),
    )
    .await;
    assert!(shared_results(&r).is_empty(), "{}", r.text);
}

#[tokio::test]
async fn a_shared_search_needs_the_federated_read_scope() {
    let w = world(json!({})).await;
    let (_, key) = w
        .app
        .create_key("tenant-reader", &["memories:read"], None)
        .await;
    shared_search(&w.app, &key, json!({ "query": "deploy", "mode": "text" }))
        .await
        .expect(403, "insufficient_scope");
    w.app
        .post(
            "/v1/memories/search",
            &key,
            json!({ "query": "deploy", "mode": "text" }),
        )
        .await
        .ok(200);
}
