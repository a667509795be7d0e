//! The audit trail records every success and refusal; failed batches and over-quota writes leave
//! nothing behind; access policies narrow what keys may do.

use serde_json::{json, Value};

use crate::harness::{vector, Resp, TestApp};

/// The one audit record of the request that got `r`.
async fn audit_of(app: &TestApp, key: &str, r: &Resp) -> Value {
    let id = r
        .request_id
        .as_deref()
        .expect("every response has an x-request-id");
    let a = app.get(&format!("/v1/audit?request_id={id}"), key).await;
    let records = a.ok(200)["records"].as_array().expect("records").clone();
    assert_eq!(records.len(), 1, "audit rows of request {id}: {records:?}");
    records[0].clone()
}

fn assert_audited(rec: &Value, action: &str, outcome: &str, status: u16, resource: &str) {
    assert_eq!(rec["action"], action, "{rec}");
    assert_eq!(rec["outcome"], outcome, "{rec}");
    assert_eq!(rec["status_code"], status, "{rec}");
    assert_eq!(rec["resource_id"], resource, "{rec}");
}

#[tokio::test]
async fn every_success_and_refusal_is_audited_with_its_request_id() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-audit").await;
    let (ro_id, ro) = app.create_key(&t.tenant_id, &["memories:read"], None).await;

    let created = app
        .post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": "m1", "content": { "a": 1 } }),
        )
        .await;
    created.ok(201);
    let read = app.get("/v1/memories/m1", &t.key).await;
    read.ok(200);
    let listed = app.get("/v1/memories", &ro).await;
    listed.ok(200);
    let missing = app.get("/v1/memories/nope", &t.key).await;
    missing.expect(404, "memory_not_found");
    let forbidden = app
        .post(
            "/v1/memories",
            &ro,
            json!({ "memory_id": "m2", "content": { "a": 2 } }),
        )
        .await;
    forbidden.expect(403, "insufficient_scope");
    let conflict = app
        .post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": "m1", "content": { "a": 3 } }),
        )
        .await;
    conflict.expect(409, "memory_exists");
    let deleted = app
        .call("DELETE", "/v1/memories/m1", Some(&t.key), None)
        .await;
    deleted.ok(204);

    let rec = audit_of(&app, &t.key, &created).await;
    assert_audited(&rec, "memory.create", "success", 201, "m1");
    assert_eq!(rec["api_key_id"], json!(t.key_id));
    assert_eq!(rec["resource_type"], "memories");
    assert_audited(
        &audit_of(&app, &t.key, &read).await,
        "memory.get",
        "success",
        200,
        "m1",
    );
    let rec = audit_of(&app, &t.key, &listed).await;
    assert_audited(&rec, "memory.list", "success", 200, "*");
    assert_eq!(rec["api_key_id"], json!(ro_id));
    let rec = audit_of(&app, &t.key, &missing).await;
    assert_audited(&rec, "memory.get", "not_found", 404, "nope");
    assert_eq!(rec["details"]["code"], "memory_not_found");
    let rec = audit_of(&app, &t.key, &forbidden).await;
    assert_audited(&rec, "memory.create", "denied", 403, "m2");
    assert_eq!(rec["details"]["code"], "insufficient_scope");
    assert_eq!(rec["api_key_id"], json!(ro_id));
    let rec = audit_of(&app, &t.key, &conflict).await;
    assert_audited(&rec, "memory.create", "conflict", 409, "m1");
    assert_eq!(rec["details"]["code"], "memory_exists");
    assert_audited(
        &audit_of(&app, &t.key, &deleted).await,
        "memory.delete",
        "success",
        204,
        "m1",
    );
    // Even an id PostgreSQL cannot store is audited (with the NUL replaced).
    let nul = app.get("/v1/memories/a%00b", &t.key).await;
    nul.expect(422, "invalid_value");
    assert_audited(
        &audit_of(&app, &t.key, &nul).await,
        "memory.get",
        "invalid",
        422,
        "a\u{fffd}b",
    );

    // A request id the client sends is kept, answered and audited.
    let r = app
        .client
        .get(format!("{}/v1/memories/nope", app.base_url))
        .bearer_auth(&t.key)
        .header("x-request-id", "client-trace-123")
        .send()
        .await
        .expect("send");
    assert_eq!(r.headers()["x-request-id"], "client-trace-123");
    let a = app
        .get("/v1/audit?request_id=client-trace-123", &t.key)
        .await;
    assert_eq!(a.ok(200)["records"][0]["outcome"], "not_found");

    // Filters and pages of the trail itself.
    let denied = app.get("/v1/audit?outcome=denied", &t.key).await;
    assert_eq!(denied.ok(200)["records"].as_array().map(Vec::len), Some(1));
    let creates = app.get("/v1/audit?action=memory.create", &t.key).await;
    assert_eq!(creates.ok(200)["records"].as_array().map(Vec::len), Some(3));
    let mut seen = 0;
    let mut cursor = String::new();
    loop {
        let page = app.get(&format!("/v1/audit?limit=2{cursor}"), &t.key).await;
        let page = page.ok(200).clone();
        seen += page["records"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert!(seen >= 15, "{seen} audit rows");
}

#[tokio::test]
async fn a_failed_batch_writes_nothing() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-atomic").await;
    app.create_memory(&t.key, "taken", json!({ "a": 1 })).await;
    let valid = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({ "memory_id": format!("batch-{i}"), "content": { "i": i }, "embedding": vector(i as u32) }))
            .collect()
    };

    // 999 new + 1 already stored: a conflict, nothing written.
    let mut batch = valid(999);
    batch.push(json!({ "memory_id": "taken", "content": { "again": true } }));
    let r = app
        .post("/v1/memories/batch", &t.key, json!({ "memories": batch }))
        .await;
    r.expect(409, "memory_exists");
    assert!(r.body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .contains("taken"));
    assert_eq!(app.memory_count(&t.key).await, 1);
    app.get("/v1/memories/batch-0", &t.key)
        .await
        .expect(404, "memory_not_found");
    let rec = audit_of(&app, &t.key, &r).await;
    assert_audited(&rec, "memory.batch_create", "conflict", 409, "*");

    // One invalid item among 1000: 422 naming it, nothing written.
    let mut batch = valid(1000);
    batch[500]["embedding"] = json!(vec![0.1; 10]);
    let r = app
        .post("/v1/memories/batch", &t.key, json!({ "memories": batch }))
        .await;
    r.expect(422, "invalid_value");
    assert_eq!(
        r.body["error"]["details"]["field"],
        "memories[500].embedding"
    );
    let mut batch = valid(1000);
    batch[999]["relevance_score"] = json!(7);
    app.post("/v1/memories/batch", &t.key, json!({ "memories": batch }))
        .await
        .expect(422, "invalid_value");
    // The same id twice in one batch.
    let mut batch = valid(10);
    batch[9]["memory_id"] = json!("batch-0");
    app.post("/v1/memories/batch", &t.key, json!({ "memories": batch }))
        .await
        .expect(422, "invalid_value");
    assert_eq!(app.memory_count(&t.key).await, 1);

    // The valid batch of 1000 then goes through whole.
    let r = app
        .post(
            "/v1/memories/batch",
            &t.key,
            json!({ "memories": valid(1000) }),
        )
        .await;
    r.ok(201);
    assert_eq!(app.memory_count(&t.key).await, 1001);
    assert_audited(
        &audit_of(&app, &t.key, &r).await,
        "memory.batch_create",
        "success",
        201,
        "*",
    );
}

#[tokio::test]
async fn quotas_refuse_writes_that_would_exceed_them_and_write_nothing() {
    let app = TestApp::spawn().await;
    let p = app.create_project("quotas").await;
    let t = app
        .new_tenant_in(&p, "tenant-quota", json!({ "max_memories": 3 }))
        .await;
    for i in 0..3 {
        app.create_memory(&t.key, &format!("q{i}"), json!({ "i": i }))
            .await;
    }
    let r = app
        .post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": "q3", "content": { "i": 3 } }),
        )
        .await;
    r.expect(403, "quota_exceeded");
    assert_eq!(app.memory_count(&t.key).await, 3);
    app.get("/v1/memories/q3", &t.key)
        .await
        .expect(404, "memory_not_found");
    let rec = audit_of(&app, &t.key, &r).await;
    assert_audited(&rec, "memory.create", "denied", 403, "q3");
    assert_eq!(rec["details"]["code"], "quota_exceeded");
    // Upsert of a new id is a new memory; of an existing one, a replacement.
    app.call(
        "PUT",
        "/v1/memories/q9",
        Some(&t.key),
        Some(json!({ "content": { "i": 9 } })),
    )
    .await
    .expect(403, "quota_exceeded");
    app.call(
        "PUT",
        "/v1/memories/q0",
        Some(&t.key),
        Some(json!({ "content": { "i": "zero" } })),
    )
    .await
    .ok(200);
    app.post(
        "/v1/memories/batch",
        &t.key,
        json!({ "memories": [{ "content": { "x": 1 } }] }),
    )
    .await
    .expect(403, "quota_exceeded");
    assert_eq!(app.memory_count(&t.key).await, 3);

    // A batch that would cross the quota writes none of its items.
    let u = app
        .new_tenant_in(&p, "tenant-quota-2", json!({ "max_memories": 3 }))
        .await;
    for i in 0..2 {
        app.create_memory(&u.key, &format!("u{i}"), json!({ "i": i }))
            .await;
    }
    let r = app
        .post(
            "/v1/memories/batch",
            &u.key,
            json!({ "memories": [{ "memory_id": "u2", "content": {} }, { "memory_id": "u3", "content": {} }] }),
        )
        .await;
    r.expect(403, "quota_exceeded");
    assert_eq!(app.memory_count(&u.key).await, 2);
    app.get("/v1/memories/u2", &u.key)
        .await
        .expect(404, "memory_not_found");
    app.post(
        "/v1/memories/batch",
        &u.key,
        json!({ "memories": [{ "memory_id": "u2", "content": {} }] }),
    )
    .await
    .ok(201);

    // Storage bytes too.
    let s = app
        .new_tenant_in(
            &p,
            "tenant-quota-bytes",
            json!({ "max_storage_bytes": 4000 }),
        )
        .await;
    app.post(
        "/v1/memories",
        &s.key,
        json!({ "memory_id": "small", "content": { "t": "x".repeat(100) } }),
    )
    .await
    .ok(201);
    app.post(
        "/v1/memories",
        &s.key,
        json!({ "memory_id": "big", "content": { "t": "x".repeat(5000) } }),
    )
    .await
    .expect(403, "quota_exceeded");
    app.call(
        "PATCH",
        "/v1/memories/small",
        Some(&s.key),
        Some(json!({ "content": { "t": "x".repeat(5000) } })),
    )
    .await
    .expect(403, "quota_exceeded");
    let small = app.get("/v1/memories/small", &s.key).await;
    assert_eq!(
        small.ok(200)["content"]["t"].as_str().map(str::len),
        Some(100)
    );

    // Lifting the quota lets the write through.
    app.admin(
        "PATCH",
        "/v1/admin/tenants/tenant-quota",
        Some(json!({ "max_memories": null })),
    )
    .await
    .ok(200);
    app.post(
        "/v1/memories",
        &t.key,
        json!({ "memory_id": "q3", "content": { "i": 3 } }),
    )
    .await
    .ok(201);
    let usage = app.get("/v1/usage", &t.key).await;
    assert_eq!(usage.ok(200)["total_memories"], 4);
    assert_eq!(usage.body["max_memories"], Value::Null);
}

#[tokio::test]
async fn a_policy_narrows_reads_to_its_pattern() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-policy").await;
    let (other_key_id, other_key) = app.create_key(&t.tenant_id, &["*"], None).await;
    app.create_memory(&t.key, "notes-1", json!({ "t": "note" }))
        .await;
    app.create_memory(&t.key, "todo-1", json!({ "t": "todo" }))
        .await;

    let r = app
        .post(
            "/v1/policies",
            &t.key,
            json!({ "name": "notes only", "resource_type": "memories", "resource_pattern": "notes-*",
                    "permissions": ["read"] }),
        )
        .await;
    let policy = r.ok(201).clone();
    let pid = policy["id"].as_str().expect("id").to_owned();
    assert_eq!(policy["is_active"], true);
    assert_eq!(policy["resource_pattern"], "notes-*");

    app.get("/v1/memories/notes-1", &t.key).await.ok(200);
    let denied = app.get("/v1/memories/todo-1", &t.key).await;
    denied.expect(403, "policy_denied");
    let rec = audit_of(&app, &t.key, &denied).await;
    assert_audited(&rec, "memory.get", "denied", 403, "todo-1");
    assert_eq!(rec["details"]["code"], "policy_denied");
    app.get("/v1/memories/notes-1/graph", &t.key).await.ok(200);
    // The whole collection and writes are outside the policy; so is every other key's access.
    app.get("/v1/memories", &t.key)
        .await
        .expect(403, "policy_denied");
    app.post(
        "/v1/memories",
        &t.key,
        json!({ "memory_id": "notes-2", "content": {} }),
    )
    .await
    .expect(403, "policy_denied");
    app.call("DELETE", "/v1/memories/notes-1", Some(&t.key), None)
        .await
        .expect(403, "policy_denied");
    app.get("/v1/memories/todo-1", &other_key)
        .await
        .expect(403, "policy_denied");
    // Other resource types are unaffected.
    app.get("/v1/usage", &t.key).await.ok(200);
    let listed = app.get("/v1/policies", &t.key).await;
    assert_eq!(listed.ok(200)["policies"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        app.get(&format!("/v1/policies/{pid}"), &t.key)
            .await
            .ok(200),
        &policy
    );

    // Deactivated, it no longer applies; active again, it does.
    let off = app
        .call(
            "PATCH",
            &format!("/v1/policies/{pid}"),
            Some(&t.key),
            Some(json!({ "is_active": false })),
        )
        .await;
    assert_eq!(off.ok(200)["is_active"], false);
    app.get("/v1/memories/todo-1", &t.key).await.ok(200);
    app.call(
        "PATCH",
        &format!("/v1/policies/{pid}"),
        Some(&t.key),
        Some(json!({ "is_active": true })),
    )
    .await
    .ok(200);
    app.get("/v1/memories/todo-1", &t.key)
        .await
        .expect(403, "policy_denied");
    app.call("DELETE", &format!("/v1/policies/{pid}"), Some(&t.key), None)
        .await
        .ok(204);
    app.get("/v1/memories/todo-1", &t.key).await.ok(200);
    app.get(&format!("/v1/policies/{pid}"), &t.key)
        .await
        .expect(404, "policy_not_found");

    // A policy for one key leaves the others alone.
    app.post(
        "/v1/policies",
        &t.key,
        json!({ "name": "other key: todo read only", "resource_type": "memories",
                "resource_pattern": "todo-1", "permissions": ["read"], "api_key_id": other_key_id }),
    )
    .await
    .ok(201);
    app.get("/v1/memories/todo-1", &other_key).await.ok(200);
    app.get("/v1/memories/notes-1", &other_key)
        .await
        .expect(403, "policy_denied");
    app.get("/v1/memories/notes-1", &t.key).await.ok(200);
    app.post(
        "/v1/memories",
        &t.key,
        json!({ "memory_id": "notes-3", "content": {} }),
    )
    .await
    .ok(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_cannot_overshoot_a_quota() {
    let app = TestApp::spawn().await;
    let p = app.create_project("race").await;
    let t = app
        .new_tenant_in(&p, "tenant-race", json!({ "max_memories": 5 }))
        .await;
    let creates = (0..20).map(|i| {
        app.post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": format!("r{i}"), "content": { "i": i } }),
        )
    });
    let answers = futures::future::join_all(creates).await;
    let created = answers.iter().filter(|r| r.status == 201).count();
    for r in answers.iter().filter(|r| r.status != 201) {
        r.expect(403, "quota_exceeded");
    }
    assert_eq!(created, 5);
    assert_eq!(app.memory_count(&t.key).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_of_one_id_conflict_instead_of_failing() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-same-id").await;
    let creates = (0..12).map(|i| {
        app.post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": "same", "content": { "i": i } }),
        )
    });
    let answers = futures::future::join_all(creates).await;
    assert_eq!(answers.iter().filter(|r| r.status == 201).count(), 1);
    for r in answers.iter().filter(|r| r.status != 201) {
        r.expect(409, "memory_exists");
    }
    let puts = (0..12).map(|i| {
        app.call(
            "PUT",
            "/v1/memories/put-same",
            Some(&t.key),
            Some(json!({ "content": { "i": i } })),
        )
    });
    let answers = futures::future::join_all(puts).await;
    assert_eq!(answers.iter().filter(|r| r.status == 201).count(), 1);
    assert!(
        answers.iter().all(|r| r.status == 201 || r.status == 200),
        "{answers:?}"
    );
    app.create_memory(&t.key, "other", json!({})).await;
    let links = (0..12).map(|_| {
        app.post(
            "/v1/relationships",
            &t.key,
            json!({ "source": "same", "target": "other", "relationship_type": "r" }),
        )
    });
    let answers = futures::future::join_all(links).await;
    assert_eq!(answers.iter().filter(|r| r.status == 201).count(), 1);
    for r in answers.iter().filter(|r| r.status != 201) {
        r.expect(409, "relationship_exists");
    }
    assert_eq!(app.memory_count(&t.key).await, 3);
}

#[tokio::test]
async fn requests_refused_before_their_operation_runs_are_audited_too() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-rejects").await;
    let malformed = app
        .call_raw(
            "POST",
            "/v1/memories",
            Some(&t.key),
            Some(b"{oops".to_vec()),
            Some("application/json"),
        )
        .await;
    assert_eq!(malformed.status, 400);
    let invalid = app
        .post(
            "/v1/memories",
            &t.key,
            json!({ "content": { "x": 1 }, "relevance_score": 7 }),
        )
        .await;
    assert_eq!(invalid.status, 422);
    let unknown_route = app.get("/v1/nothing-here", &t.key).await;
    assert_eq!(unknown_route.status, 404);

    let audit = app.get("/v1/audit?action=request.rejected", &t.key).await;
    let records = audit.ok(200)["records"]
        .as_array()
        .expect("records")
        .clone();
    for (resp, outcome) in [
        (&malformed, "invalid"),
        (&invalid, "invalid"),
        (&unknown_route, "not_found"),
    ] {
        let id = resp.request_id.as_deref().expect("request id");
        let row = records
            .iter()
            .find(|r| r["request_id"] == id)
            .unwrap_or_else(|| panic!("no audit row for request {id}: {records:?}"));
        assert_eq!(row["status_code"], resp.status);
        assert_eq!(row["outcome"], outcome);
    }
    // A refusal audited by the operation itself is not audited twice.
    let missing = app.get("/v1/memories/absent", &t.key).await;
    assert_eq!(missing.status, 404);
    let id = missing.request_id.expect("request id");
    let rows = app.get(&format!("/v1/audit?request_id={id}"), &t.key).await;
    assert_eq!(rows.ok(200)["records"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_request_id_over_128_characters_is_replaced_and_the_request_still_audited() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-request-ids").await;
    let long = "r".repeat(3000);
    let body = serde_json::to_vec(&json!({ "memory_id": "m1", "content": { "t": 1 } }))
        .expect("serialize");
    let send = |path: &'static str, method: &'static str, body: Option<Vec<u8>>, id: String| {
        let app = &app;
        let key = t.key.clone();
        async move {
            app.call_with_headers(
                method,
                path,
                Some(&key),
                body,
                Some("application/json"),
                &[("x-request-id", &id)],
            )
            .await
        }
    };
    let created = send("/v1/memories", "POST", Some(body), long.clone()).await;
    let missing = send("/v1/memories/absent", "GET", None, long.clone()).await;
    let malformed = send(
        "/v1/memories",
        "POST",
        Some(b"{oops".to_vec()),
        long.clone(),
    )
    .await;
    for (r, status, action, outcome) in [
        (&created, 201, "memory.create", "success"),
        (&missing, 404, "memory.get", "not_found"),
        (&malformed, 400, "request.rejected", "invalid"),
    ] {
        assert_eq!(r.status, status, "{}", r.text);
        let id = r.request_id.as_deref().expect("x-request-id");
        assert!(id.parse::<uuid::Uuid>().is_ok(), "a generated id: {id}");
        assert_eq!(
            r.headers
                .get("x-request-id-replaced")
                .and_then(|v| v.to_str().ok()),
            Some("true")
        );
        let rec = audit_of(&app, &t.key, r).await;
        assert_eq!(rec["action"], action, "{rec}");
        assert_eq!(rec["outcome"], outcome, "{rec}");
        assert_eq!(rec["request_id"], id, "{rec}");
    }

    // 128 visible characters are kept; 129 or a space are not.
    let kept = "k".repeat(128);
    let r = send("/v1/usage", "GET", None, kept.clone()).await;
    assert_eq!(r.request_id.as_deref(), Some(kept.as_str()));
    assert!(r.headers.get("x-request-id-replaced").is_none());
    for bad in ["k".repeat(129), "has space".to_owned()] {
        let r = send("/v1/usage", "GET", None, bad.clone()).await;
        r.ok(200);
        assert_ne!(r.request_id.as_deref(), Some(bad.as_str()));
        assert!(r.headers.get("x-request-id-replaced").is_some(), "{bad:?}");
    }
}
