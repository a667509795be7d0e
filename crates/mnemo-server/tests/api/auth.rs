//! Authentication and authorization: missing, unknown, revoked and expired keys are 401 on every
//! tenant endpoint; scopes narrow what a key may do (403); the admin surface takes only the admin
//! key.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::harness::{openapi_operations, TestApp};
use crate::isolation::{send, Ids, ENDPOINTS};

async fn assert_every_tenant_endpoint_refuses(app: &TestApp, key: Option<&str>, why: &str) {
    let ids = Ids::unknown();
    for row in ENDPOINTS {
        let r = send(app, row, &ids, key).await;
        r.expect(401, "unauthorized");
        assert!(
            r.text.len() < 300,
            "{why}: {} {}: {}",
            row.method,
            row.uri,
            r.text
        );
    }
}

#[tokio::test]
async fn requests_without_a_key_get_401_on_every_tenant_endpoint() {
    let app = TestApp::spawn().await;
    assert_every_tenant_endpoint_refuses(&app, None, "no key").await;
}

#[tokio::test]
async fn unknown_and_malformed_keys_get_401() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-keys").await;
    assert_every_tenant_endpoint_refuses(&app, Some("mnemo_sk_not-a-real-key"), "unknown key")
        .await;
    let long = "k".repeat(5000);
    app.call("GET", "/v1/usage", Some(&long), None)
        .await
        .expect(401, "unauthorized");
    // A truncated real key is an unknown key.
    app.call("GET", "/v1/usage", Some(&t.key[..t.key.len() - 1]), None)
        .await
        .expect(401, "unauthorized");
    // Not a bearer scheme.
    let r = app
        .client
        .get(format!("{}/v1/usage", app.base_url))
        .header("authorization", format!("Basic {}", t.key))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
    // The admin key is not a tenant key.
    app.call("GET", "/v1/usage", Some(&app.admin_key), None)
        .await
        .expect(401, "unauthorized");
}

#[tokio::test]
async fn the_x_api_key_header_authenticates_too() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-header").await;
    let r = app
        .client
        .get(format!("{}/v1/usage", app.base_url))
        .header("x-api-key", &t.key)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn revoked_key_gets_401_on_the_next_request() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-revoke").await;
    app.create_memory(&t.key, "m1", json!({"text": "x"})).await;
    app.get("/v1/memories/m1", &t.key).await.ok(200);
    let r = app
        .admin(
            "DELETE",
            &format!("/v1/admin/tenants/{}/keys/{}", t.tenant_id, t.key_id),
            None,
        )
        .await;
    assert!(r.ok(200)["revoked_at"].is_string());
    assert_every_tenant_endpoint_refuses(&app, Some(&t.key), "revoked key").await;
    // Another key of the tenant still works, and the data is intact.
    let (_, other) = app.create_key(&t.tenant_id, &["*"], None).await;
    app.get("/v1/memories/m1", &other).await.ok(200);
}

#[tokio::test]
async fn expired_key_gets_401() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-expiry").await;
    let expires = (Utc::now() + chrono::Duration::seconds(4)).to_rfc3339();
    let (_, key) = app
        .create_key(&t.tenant_id, &["memories:read"], Some(expires))
        .await;
    app.get("/v1/memories", &key).await.ok(200);
    tokio::time::sleep(Duration::from_millis(4300)).await;
    assert_every_tenant_endpoint_refuses(&app, Some(&key), "expired key").await;
}

#[tokio::test]
async fn keys_of_a_deactivated_tenant_get_401() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-off").await;
    app.get("/v1/usage", &t.key).await.ok(200);
    app.admin(
        "PATCH",
        &format!("/v1/admin/tenants/{}", t.tenant_id),
        Some(json!({"is_active": false})),
    )
    .await
    .ok(200);
    app.get("/v1/usage", &t.key)
        .await
        .expect(401, "unauthorized");
    app.admin(
        "PATCH",
        &format!("/v1/admin/tenants/{}", t.tenant_id),
        Some(json!({"is_active": true})),
    )
    .await
    .ok(200);
    app.get("/v1/usage", &t.key).await.ok(200);
}

#[tokio::test]
async fn read_only_key_writing_gets_403_insufficient_scope_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-ro").await;
    app.create_memory(&t.key, "m1", json!({"text": "one"}))
        .await;
    app.create_memory(&t.key, "m2", json!({"text": "two"}))
        .await;
    let rel = app.link(&t.key, "m1", "m2", "related_to", 1.0).await;
    let rel = rel["id"].as_str().expect("id").to_owned();
    let (_, ro) = app.create_key(&t.tenant_id, &["memories:read"], None).await;
    let before = app.get("/v1/memories?include_embedding=true", &t.key).await;

    let writes = [
        (
            "POST",
            "/v1/memories".to_owned(),
            Some(json!({"memory_id": "m3", "content": {"t": 1}})),
        ),
        (
            "POST",
            "/v1/memories/batch".to_owned(),
            Some(json!({"memories": [{"memory_id": "m4", "content": {"t": 1}}]})),
        ),
        (
            "PATCH",
            "/v1/memories/m1".to_owned(),
            Some(json!({"relevance_score": 0.1})),
        ),
        (
            "PUT",
            "/v1/memories/m1".to_owned(),
            Some(json!({"content": {"t": "replaced"}})),
        ),
        (
            "PUT",
            "/v1/memories/m5".to_owned(),
            Some(json!({"content": {"t": "new"}})),
        ),
        ("DELETE", "/v1/memories/m1".to_owned(), None),
        (
            "POST",
            "/v1/relationships".to_owned(),
            Some(json!({"source": "m2", "target": "m1", "relationship_type": "related_to"})),
        ),
        ("DELETE", format!("/v1/relationships/{rel}"), None),
        (
            "POST",
            "/v1/policies".to_owned(),
            Some(json!({"name": "p", "resource_type": "memories", "permissions": ["read"]})),
        ),
    ];
    for (method, path, body) in writes {
        let r = app.call(method, &path, Some(&ro), body).await;
        r.expect(403, "insufficient_scope");
    }
    // Reads outside the key's scopes are refused too.
    for path in ["/v1/usage", "/v1/audit", "/v1/policies"] {
        app.get(path, &ro).await.expect(403, "insufficient_scope");
    }
    // Reads within scope work; nothing changed.
    app.get("/v1/memories/m1", &ro).await.ok(200);
    app.get(&format!("/v1/relationships/{rel}"), &ro)
        .await
        .ok(200);
    app.get("/v1/memories/m1/graph", &ro).await.ok(200);
    let after = app.get("/v1/memories?include_embedding=true", &t.key).await;
    assert_eq!(before.body, after.body);
    // Every refusal is audited as denied, with the key that made it.
    let denied = app.get("/v1/audit?outcome=denied&limit=100", &t.key).await;
    let records = denied.ok(200)["records"]
        .as_array()
        .expect("records")
        .clone();
    assert_eq!(records.len(), 12, "{records:?}");
    assert!(records
        .iter()
        .all(|r| r["status_code"] == 403 && r["details"]["code"] == "insufficient_scope"));
}

#[tokio::test]
async fn admin_endpoints_refuse_tenant_keys_403_and_others_401() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-not-admin").await;
    let admin_ops: Vec<_> = openapi_operations()
        .into_iter()
        .filter(|o| o.path.starts_with("/v1/admin/"))
        .collect();
    assert!(admin_ops.len() >= 13, "{admin_ops:?}");
    let unknown = Uuid::new_v4().to_string();
    for op in &admin_ops {
        let path = op
            .path
            .replace("{tenant_id}", &t.tenant_id)
            .replace("{key_id}", &t.key_id)
            .replace("{id}", &t.project_id);
        let body = op.has_body.then(|| json!({}));
        let what = format!("{} {path}", op.method);
        let r = app
            .call(&op.method, &path, Some(&t.key), body.clone())
            .await;
        assert_eq!(r.status, 403, "{what} with a tenant key: {}", r.text);
        assert_eq!(r.code(), "admin_only", "{what}");
        for key in [None, Some("wrong-admin-key"), Some(unknown.as_str())] {
            let r = app.call(&op.method, &path, key, body.clone()).await;
            assert_eq!(r.status, 401, "{what} with {key:?}: {}", r.text);
            assert!(r.has_error_shape(), "{what}");
        }
    }
    // Nothing happened to the tenant or its key.
    app.get("/v1/usage", &t.key).await.ok(200);
    app.admin("GET", &format!("/v1/admin/tenants/{}", t.tenant_id), None)
        .await
        .ok(200);
}
