//! The admin surface: projects, tenants and API keys; rotation of the admin key.

use serde_json::{json, Value};

use mnemo_server::{AdminKey, Limits};
use mnemo_store::StoreError;

use crate::harness::TestApp;

#[tokio::test]
async fn projects_crud_and_delete_refuses_while_tenants_remain() {
    let app = TestApp::spawn().await;
    let r = app
        .admin(
            "POST",
            "/v1/admin/projects",
            Some(
                json!({ "name": "Apollo", "description": "moon", "owner_id": "team-1",
                         "settings": { "region": "eu" } }),
            ),
        )
        .await;
    let p = r.ok(201).clone();
    let id = p["id"].as_str().expect("id").to_owned();
    assert_eq!(p["name"], "Apollo");
    assert_eq!(p["settings"], json!({ "region": "eu" }));
    app.admin(
        "POST",
        "/v1/admin/projects",
        Some(json!({ "name": "Apollo", "owner_id": "team-2" })),
    )
    .await
    .expect(409, "project_exists");
    let other = app.create_project("Gemini").await;

    assert_eq!(
        app.admin("GET", &format!("/v1/admin/projects/{id}"), None)
            .await
            .ok(200),
        &p
    );
    let list = app.admin("GET", "/v1/admin/projects", None).await;
    let names: Vec<&str> = list
        .ok(200)
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"Apollo") && names.contains(&"Gemini"));
    // Keyset pages.
    let first = app.admin("GET", "/v1/admin/projects?limit=1", None).await;
    let first = first.ok(200)[0]["id"].as_str().expect("id").to_owned();
    let second = app
        .admin(
            "GET",
            &format!("/v1/admin/projects?limit=1&after={first}"),
            None,
        )
        .await;
    assert_ne!(second.ok(200)[0]["id"].as_str(), Some(first.as_str()));

    let patched = app
        .admin(
            "PATCH",
            &format!("/v1/admin/projects/{id}"),
            Some(json!({ "name": "Apollo 11", "description": null })),
        )
        .await;
    let patched = patched.ok(200).clone();
    assert_eq!(patched["name"], "Apollo 11");
    assert_eq!(patched["description"], Value::Null);
    assert_eq!(patched["owner_id"], "team-1");

    let t = app.new_tenant_in(&id, "tenant-of-apollo", json!({})).await;
    app.create_memory(&t.key, "m", json!({ "x": 1 })).await;
    app.admin("DELETE", &format!("/v1/admin/projects/{id}"), None)
        .await
        .expect(409, "project_has_tenants");
    app.get("/v1/memories/m", &t.key).await.ok(200);
    let del = app
        .admin(
            "DELETE",
            &format!("/v1/admin/projects/{id}?cascade=true"),
            None,
        )
        .await;
    assert_eq!(del.status, 204, "{}", del.text);
    app.admin("GET", &format!("/v1/admin/projects/{id}"), None)
        .await
        .expect(404, "project_not_found");
    app.admin("GET", "/v1/admin/tenants/tenant-of-apollo", None)
        .await
        .expect(404, "tenant_not_found");
    app.get("/v1/memories/m", &t.key)
        .await
        .expect(401, "unauthorized");
    // An empty project deletes without cascade.
    app.admin("DELETE", &format!("/v1/admin/projects/{other}"), None)
        .await
        .ok(204);
    app.admin("DELETE", &format!("/v1/admin/projects/{other}"), None)
        .await
        .expect(404, "project_not_found");
}

#[tokio::test]
async fn tenants_crud() {
    let app = TestApp::spawn().await;
    let p1 = app.create_project("p1").await;
    let p2 = app.create_project("p2").await;
    let r = app
        .admin(
            "POST",
            "/v1/admin/tenants",
            Some(
                json!({ "tenant_id": "tenant-001", "project_id": p1, "name": "First",
                         "isolation_level": "shared", "encryption_enabled": true,
                         "max_memories": 10, "max_storage_bytes": 100000, "settings": { "a": 1 } }),
            ),
        )
        .await;
    let t = r.ok(201).clone();
    assert_eq!(t["tenant_id"], "tenant-001");
    assert_eq!(t["isolation_level"], "shared");
    assert_eq!(t["encryption_enabled"], true);
    assert_eq!(t["max_memories"], 10);
    assert_eq!(t["is_active"], true);
    let defaults = app.create_tenant(&p1, "tenant-002", json!({})).await;
    assert_eq!(defaults["isolation_level"], "strict");
    assert_eq!(defaults["max_memories"], Value::Null);
    app.create_tenant(&p2, "tenant-003", json!({})).await;
    app.admin(
        "POST",
        "/v1/admin/tenants",
        Some(json!({ "tenant_id": "tenant-001", "project_id": p2, "name": "dup" })),
    )
    .await
    .expect(409, "tenant_exists");

    let get = app.admin("GET", "/v1/admin/tenants/tenant-001", None).await;
    assert_eq!(get.ok(200), &t);
    let all = app.admin("GET", "/v1/admin/tenants", None).await;
    assert_eq!(all.ok(200).as_array().map(Vec::len), Some(3));
    let in_p1 = app
        .admin("GET", &format!("/v1/admin/tenants?project_id={p1}"), None)
        .await;
    let ids: Vec<&str> = in_p1
        .ok(200)
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["tenant_id"].as_str())
        .collect();
    assert_eq!(ids, ["tenant-001", "tenant-002"]);
    let page = app
        .admin("GET", "/v1/admin/tenants?limit=1&after=tenant-001", None)
        .await;
    assert_eq!(page.ok(200)[0]["tenant_id"], "tenant-002");

    let patched = app
        .admin(
            "PATCH",
            "/v1/admin/tenants/tenant-001",
            Some(
                json!({ "name": "Renamed", "max_memories": null, "isolation_level": "federated" }),
            ),
        )
        .await;
    let patched = patched.ok(200).clone();
    assert_eq!(patched["name"], "Renamed");
    assert_eq!(patched["max_memories"], Value::Null);
    assert_eq!(patched["max_storage_bytes"], 100000);
    assert_eq!(patched["isolation_level"], "federated");

    let del = app
        .admin("DELETE", "/v1/admin/tenants/tenant-002", None)
        .await;
    assert_eq!(del.status, 204, "{}", del.text);
    app.admin("GET", "/v1/admin/tenants/tenant-002", None)
        .await
        .expect(404, "tenant_not_found");
    app.admin("DELETE", "/v1/admin/tenants/tenant-002", None)
        .await
        .expect(404, "tenant_not_found");
}

#[tokio::test]
async fn keys_are_created_listed_without_secrets_and_revoked() {
    let app = TestApp::spawn().await;
    let p = app.create_project("keys").await;
    app.create_tenant(&p, "tenant-k", json!({})).await;
    let expires = (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339();
    let r = app
        .admin(
            "POST",
            "/v1/admin/tenants/tenant-k/keys",
            Some(json!({ "name": "reader", "scopes": ["memories:read", "audit:read"], "expires_at": expires })),
        )
        .await;
    let created = r.ok(201).clone();
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let key_id = created["id"].as_str().expect("id").to_owned();
    assert!(secret.starts_with(created["prefix"].as_str().expect("prefix")));
    assert_eq!(created["scopes"], json!(["memories:read", "audit:read"]));
    let (_, writer) = app.create_key("tenant-k", &["memories:*"], None).await;

    let list = app
        .admin("GET", "/v1/admin/tenants/tenant-k/keys", None)
        .await;
    assert!(!list.text.contains(&secret), "the list shows a secret");
    assert!(!list.text.contains(&writer), "the list shows a secret");
    let keys = list.ok(200).as_array().expect("keys").clone();
    assert_eq!(keys.len(), 2);
    for k in &keys {
        assert!(
            k.get("secret").is_none() && k.get("key_hash").is_none(),
            "{k}"
        );
        assert_eq!(k["revoked_at"], Value::Null);
    }
    // Both work; the reader can read its audit trail.
    app.get("/v1/memories", &secret).await.ok(200);
    app.get("/v1/audit", &secret).await.ok(200);
    app.post("/v1/memories", &writer, json!({ "content": { "a": 1 } }))
        .await
        .ok(201);

    let revoked = app
        .admin(
            "DELETE",
            &format!("/v1/admin/tenants/tenant-k/keys/{key_id}"),
            None,
        )
        .await;
    let revoked = revoked.ok(200).clone();
    let at = revoked["revoked_at"].clone();
    assert!(at.is_string());
    app.get("/v1/memories", &secret)
        .await
        .expect(401, "unauthorized");
    app.get("/v1/memories", &writer).await.ok(200);
    // Revoking again keeps the first time.
    let again = app
        .admin(
            "DELETE",
            &format!("/v1/admin/tenants/tenant-k/keys/{key_id}"),
            None,
        )
        .await;
    assert_eq!(again.ok(200)["revoked_at"], at);
    let list = app
        .admin("GET", "/v1/admin/tenants/tenant-k/keys", None)
        .await;
    let listed = list
        .ok(200)
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["id"] == json!(key_id))
        .cloned();
    assert_eq!(listed.expect("revoked key listed")["revoked_at"], at);
    // A key of another tenant cannot be revoked through this tenant.
    app.create_tenant(&p, "tenant-other", json!({})).await;
    let (other_id, other_secret) = app.create_key("tenant-other", &["*"], None).await;
    app.admin(
        "DELETE",
        &format!("/v1/admin/tenants/tenant-k/keys/{other_id}"),
        None,
    )
    .await
    .expect(404, "api_key_not_found");
    app.get("/v1/usage", &other_secret).await.ok(200);
}

#[tokio::test]
async fn a_rotated_admin_key_takes_effect_on_the_next_request() {
    let app = TestApp::spawn_full(Limits::default(), None, AdminKey::Stored).await;
    let old = "stored-admin-key-0001-old";
    let new = "stored-admin-key-0002-new";
    assert!(app.store.init_admin_key(old).await.expect("init"));
    app.call("GET", "/v1/admin/projects", Some(old), None)
        .await
        .ok(200);

    app.store.rotate_admin_key(new).await.expect("rotate");
    app.call("GET", "/v1/admin/projects", Some(old), None)
        .await
        .expect(401, "unauthorized");
    app.call("GET", "/v1/admin/projects", Some(new), None)
        .await
        .ok(200);
}

#[tokio::test]
async fn rotation_is_refused_while_a_server_takes_its_admin_key_from_configuration() {
    let app = TestApp::spawn().await;
    app.store
        .record_admin_key_source(true)
        .await
        .expect("record");
    let refused = app.store.rotate_admin_key("would-never-take-effect").await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict { constraint }) if constraint == "admin_key_configured"),
        "{refused:?}"
    );
    assert_eq!(app.store.admin_key_hash().await.expect("read"), None);
    // The configured key keeps working; the refused one never does.
    app.admin("GET", "/v1/admin/projects", None).await.ok(200);
    app.call(
        "GET",
        "/v1/admin/projects",
        Some("would-never-take-effect"),
        None,
    )
    .await
    .expect(401, "unauthorized");
    // A server that uses the stored key allows rotation again.
    app.store
        .record_admin_key_source(false)
        .await
        .expect("record");
    app.store
        .rotate_admin_key("now-it-takes-effect-0003")
        .await
        .expect("rotate");
}
