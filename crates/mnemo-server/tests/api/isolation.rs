//! Tenant isolation, table-driven: tenant B calling every tenant endpoint with tenant A's ids gets
//! exactly what it gets with ids that exist nowhere, and A's data is unchanged afterwards.
//!
//! [`ENDPOINTS`] must list every tenant operation of the OpenAPI document
//! (`every_tenant_endpoint_has_an_isolation_row` fails otherwise), so a new endpoint cannot ship
//! without its isolation check. Admin-only operations have no rows: `/v1/admin/health` and
//! `/v1/admin/tenants/{tenant_id}/usage` (a tenant key gets 403 `admin_only` there, see `operations.rs`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{openapi_operations, vector, Resp, TestApp};

/// One call of a tenant endpoint. `uri` and `body` may hold the placeholders `{mem}`, `{mem2}`
/// (memory ids), `{rel}` (relationship id), `{policy}` (policy id), `{policy_name}`, `{marker}`
/// (a value inside a memory's content), `{tag}`, `{request_id}` (of a request of the tenant) and
/// `{vector}` (the embedding of A's `{mem}`), `{key_id}` (an API key id) and `{ctx}` (a context
/// id).
pub struct Row {
    pub method: &'static str,
    /// The operation's path in the OpenAPI document.
    pub route: &'static str,
    pub uri: &'static str,
    pub body: Option<&'static str>,
    /// What B gets, with A's ids and with unknown ids alike.
    pub expect: u16,
}

const fn row(
    method: &'static str,
    route: &'static str,
    uri: &'static str,
    body: Option<&'static str>,
    expect: u16,
) -> Row {
    Row {
        method,
        route,
        uri,
        body,
        expect,
    }
}

#[rustfmt::skip]
pub const ENDPOINTS: &[Row] = &[
    // memories
    row("POST", "/v1/memories", "/v1/memories", Some(r#"{"memory_id":"{mem}","content":{"text":"b's own"}}"#), 201),
    row("GET", "/v1/memories", "/v1/memories?contains=%7B%22marker%22%3A%22{marker}%22%7D", None, 200),
    row("GET", "/v1/memories", "/v1/memories?tags={tag}&include_embedding=true", None, 200),
    row("GET", "/v1/memories", "/v1/memories?any_tags={tag},other&min_relevance=0", None, 200),
    row("POST", "/v1/memories/batch", "/v1/memories/batch", Some(r#"{"memories":[{"memory_id":"{mem}","content":{"text":"b"}},{"memory_id":"{mem2}","content":{"text":"b"}}]}"#), 201),
    row("POST", "/v1/memories/search", "/v1/memories/search", Some(r#"{"query":"{marker}","mode":"text","expand":true}"#), 200),
    row("POST", "/v1/memories/search", "/v1/memories/search", Some(r#"{"vector":{vector},"k":100,"include_embedding":true}"#), 200),
    row("POST", "/v1/memories/search", "/v1/memories/search", Some(r#"{"query":"{marker}","vector":{vector},"mode":"hybrid","filter":{"tags":["{tag}"],"contains":{"marker":"{marker}"}}}"#), 200),
    row("GET", "/v1/memories/{memory_id}", "/v1/memories/{mem}", None, 404),
    row("GET", "/v1/memories/{memory_id}", "/v1/memories/{mem}?include_embedding=true", None, 404),
    row("PATCH", "/v1/memories/{memory_id}", "/v1/memories/{mem}", Some(r#"{"relevance_score":0.9}"#), 404),
    row("PATCH", "/v1/memories/{memory_id}", "/v1/memories/{mem}", Some(r#"{"content":{"text":"overwritten"},"embedding":null,"expires_at":null}"#), 404),
    row("PUT", "/v1/memories/{memory_id}", "/v1/memories/{mem}", Some(r#"{"content":{"text":"b's own"}}"#), 201),
    row("DELETE", "/v1/memories/{memory_id}", "/v1/memories/{mem}", None, 404),
    // contexts
    row("POST", "/v1/contexts", "/v1/contexts", Some(r#"{"context_id":"{ctx}","messages":[{"role":"user","content":"b's own"}]}"#), 201),
    row("GET", "/v1/contexts", "/v1/contexts?session_id={marker}", None, 200),
    row("GET", "/v1/contexts", "/v1/contexts?contains=%7B%22marker%22%3A%22{marker}%22%7D&limit=500", None, 200),
    row("PUT", "/v1/contexts/{context_id}", "/v1/contexts/{ctx}", Some(r#"{"text":"b's own"}"#), 201),
    row("GET", "/v1/contexts/{context_id}", "/v1/contexts/{ctx}", None, 404),
    row("GET", "/v1/contexts/{context_id}", "/v1/contexts/{ctx}?raw=true", None, 404),
    row("DELETE", "/v1/contexts/{context_id}", "/v1/contexts/{ctx}", None, 404),
    row("POST", "/v1/contexts/search", "/v1/contexts/search", Some(r#"{"query":"{marker}","mode":"text","k":100}"#), 200),
    row("POST", "/v1/contexts/search", "/v1/contexts/search", Some(r#"{"vector":{vector},"k":100,"filter":{"session_id":"{marker}"}}"#), 200),
    row("POST", "/v1/contexts/search", "/v1/contexts/search", Some(r#"{"query":"{marker}","vector":{vector},"mode":"hybrid","filter":{"contains":{"marker":"{marker}"}}}"#), 200),
    row("POST", "/v1/contexts/reconstruct", "/v1/contexts/reconstruct", Some(r#"{"query":"{marker}","token_budget":100000,"include_memories":true}"#), 200),
    row("POST", "/v1/contexts/reconstruct", "/v1/contexts/reconstruct", Some(r#"{"query":"{marker} secret","token_budget":5000,"order":"chronological","session_id":"{marker}"}"#), 200),
    // the archive (alpha-archived is A's archived memory)
    row("GET", "/v1/memories", "/v1/memories?archived=true&include_embedding=true", None, 200),
    row("GET", "/v1/memories/{memory_id}", "/v1/memories/alpha-archived?archived=true", None, 404),
    row("GET", "/v1/memories/{memory_id}", "/v1/memories/{mem}?archived=true", None, 404),
    row("POST", "/v1/memories/{memory_id}/restore", "/v1/memories/alpha-archived/restore", None, 404),
    row("POST", "/v1/memories/{memory_id}/restore", "/v1/memories/{mem}/restore", None, 404),
    // retention (A has a memories policy)
    row("GET", "/v1/retention/{resource}", "/v1/retention/memories", None, 404),
    row("PUT", "/v1/retention/{resource}", "/v1/retention/memories", Some(r#"{"archival_policy":"delete"}"#), 422),
    row("DELETE", "/v1/retention/{resource}", "/v1/retention/memories", None, 404),
    row("POST", "/v1/retention/preview", "/v1/retention/preview", None, 200),
    // graph
    row("POST", "/v1/relationships", "/v1/relationships", Some(r#"{"source":"{mem}","target":"{mem2}","relationship_type":"related_to"}"#), 404),
    row("GET", "/v1/relationships/{id}", "/v1/relationships/{rel}", None, 404),
    row("DELETE", "/v1/relationships/{id}", "/v1/relationships/{rel}", None, 404),
    row("GET", "/v1/memories/{memory_id}/neighbours", "/v1/memories/{mem}/neighbours", None, 404),
    row("GET", "/v1/memories/{memory_id}/neighbours", "/v1/memories/{mem}/neighbours?direction=out&relationship_type=related_to", None, 404),
    row("GET", "/v1/memories/{memory_id}/graph", "/v1/memories/{mem}/graph?depth=3", None, 404),
    // tenant
    row("GET", "/v1/usage", "/v1/usage", None, 200),
    row("GET", "/v1/audit", "/v1/audit?request_id={request_id}", None, 200),
    row("GET", "/v1/audit", "/v1/audit?action=memory.create", None, 200),
    // policies
    row("POST", "/v1/policies", "/v1/policies", Some(r#"{"name":"{policy_name}","resource_type":"contexts","permissions":["read"]}"#), 201),
    row("POST", "/v1/policies", "/v1/policies", Some(r#"{"name":"p","resource_type":"memories","permissions":["read"],"api_key_id":"{key_id}"}"#), 422),
    row("GET", "/v1/policies", "/v1/policies", None, 200),
    row("GET", "/v1/policies", "/v1/policies?limit=1", None, 200),
    row("GET", "/v1/policies/{id}", "/v1/policies/{policy}", None, 404),
    row("PATCH", "/v1/policies/{id}", "/v1/policies/{policy}", Some(r#"{"is_active":false}"#), 404),
    row("DELETE", "/v1/policies/{id}", "/v1/policies/{policy}", None, 404),
    // federated learning (B is not registered: it joins nothing, and sees no other project)
    row("POST", "/v1/federated/participant", "/v1/federated/participant", Some(r#"{"privacy_level":"differential"}"#), 200),
    row("GET", "/v1/federated/participant", "/v1/federated/participant", None, 404),
    row("DELETE", "/v1/federated/participant", "/v1/federated/participant", None, 404),
    row("POST", "/v1/federated/sessions", "/v1/federated/sessions", Some(r#"{"session_id":"{session}","topic":{"tags":["{tag}"]},"aggregation_method":"weighted","privacy_level":"basic","deadline":"{deadline}"}"#), 403),
    row("GET", "/v1/federated/sessions", "/v1/federated/sessions", None, 200),
    row("GET", "/v1/federated/sessions", "/v1/federated/sessions?status=forming&limit=5", None, 200),
    row("GET", "/v1/federated/sessions/{session_id}", "/v1/federated/sessions/{session}", None, 404),
    row("POST", "/v1/federated/sessions/{session_id}/join", "/v1/federated/sessions/{session}/join", None, 403),
    row("POST", "/v1/federated/sessions/{session_id}/leave", "/v1/federated/sessions/{session}/leave", None, 404),
    row("POST", "/v1/federated/sessions/{session_id}/aggregate", "/v1/federated/sessions/{session}/aggregate", None, 404),
    row("POST", "/v1/federated/sessions/{session_id}/cancel", "/v1/federated/sessions/{session}/cancel", None, 404),
    row("GET", "/v1/federated/sessions/{session_id}/insights", "/v1/federated/sessions/{session}/insights", None, 404),
    // sharing rules (A's rule shares with another tenant of the project, not with B)
    row("POST", "/v1/sharing-rules", "/v1/sharing-rules", Some(r#"{"target_tenant_id":"{tenant_x}","conditions":{"tags":["{tag}"]}}"#), 404),
    row("GET", "/v1/sharing-rules", "/v1/sharing-rules", None, 200),
    row("GET", "/v1/sharing-rules/{id}", "/v1/sharing-rules/{rule}", None, 404),
    row("PATCH", "/v1/sharing-rules/{id}", "/v1/sharing-rules/{rule}", Some(r#"{"is_active":false}"#), 404),
    row("DELETE", "/v1/sharing-rules/{id}", "/v1/sharing-rules/{rule}", None, 404),
    row("POST", "/v1/memories/search", "/v1/memories/search", Some(r#"{"query":"{marker}","mode":"text","scope":"shared"}"#), 200),
    row("POST", "/v1/memories/search", "/v1/memories/search", Some(r#"{"vector":{vector},"k":100,"scope":"shared","filter":{"tags":["{tag}"]}}"#), 200),
];

/// The values substituted for the placeholders of a [`Row`].
pub struct Ids {
    pub mem: String,
    pub mem2: String,
    pub rel: String,
    pub policy: String,
    pub policy_name: String,
    pub marker: String,
    pub tag: String,
    pub request_id: String,
    pub vector: String,
    pub key_id: String,
    pub ctx: String,
    pub rule: String,
    pub session: String,
    pub tenant_x: String,
    pub deadline: String,
}

impl Ids {
    fn pairs(&self) -> [(&'static str, &str); 15] {
        [
            ("{ctx}", &self.ctx),
            ("{deadline}", &self.deadline),
            ("{session}", &self.session),
            ("{tenant_x}", &self.tenant_x),
            ("{rule}", &self.rule),
            ("{mem2}", &self.mem2),
            ("{mem}", &self.mem),
            ("{rel}", &self.rel),
            ("{policy_name}", &self.policy_name),
            ("{policy}", &self.policy),
            ("{marker}", &self.marker),
            ("{tag}", &self.tag),
            ("{request_id}", &self.request_id),
            ("{vector}", &self.vector),
            ("{key_id}", &self.key_id),
        ]
    }

    pub fn fill(&self, template: &str) -> String {
        self.pairs()
            .iter()
            .fold(template.to_owned(), |s, (k, v)| s.replace(k, v))
    }

    /// The placeholders back in place of the values, so answers about different ids compare.
    fn unfill(&self, text: &str) -> String {
        self.pairs()
            .iter()
            .fold(text.to_owned(), |s, (k, v)| s.replace(v, k))
    }

    /// Ids of the same shape that exist in no tenant.
    pub fn unknown() -> Ids {
        Ids {
            mem: "ghost-note-1".into(),
            mem2: "ghost-note-2".into(),
            rel: Uuid::new_v4().to_string(),
            policy: Uuid::new_v4().to_string(),
            policy_name: "ghost-policy".into(),
            marker: "ghost-marker".into(),
            tag: "ghost-tag".into(),
            request_id: Uuid::new_v4().to_string(),
            vector: a_vector(),
            key_id: Uuid::new_v4().to_string(),
            ctx: "ghost-context-1".into(),
            rule: Uuid::new_v4().to_string(),
            session: "ghost-session".into(),
            tenant_x: "ghost-tenant".into(),
            deadline: deadline(),
        }
    }
}

/// A deadline every session accepts (the same for A's ids and unknown ids).
fn deadline() -> String {
    static DEADLINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DEADLINE
        .get_or_init(|| (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339())
        .clone()
}

/// The vector of A's memory: searching with it would find that memory first.
fn a_vector() -> String {
    serde_json::to_string(&vector(3)).expect("serialize")
}

pub async fn send(app: &TestApp, row: &Row, ids: &Ids, key: Option<&str>) -> Resp {
    let body = row.body.map(|b| ids.fill(b).into_bytes());
    app.call_raw(
        row.method,
        &ids.fill(row.uri),
        key,
        body,
        Some("application/json"),
    )
    .await
}

/// The answer with ids replaced by placeholders and per-call values (generated ids, timestamps)
/// removed.
fn normalize(r: &Resp, ids: &Ids) -> (u16, Value) {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(o) => {
                for k in [
                    "id",
                    "created_at",
                    "updated_at",
                    "last_used_at",
                    "next_cursor",
                ] {
                    o.remove(k);
                }
                o.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut body: Value = serde_json::from_str(&ids.unfill(&r.text)).unwrap_or(Value::Null);
    strip(&mut body);
    (r.status, body)
}

/// Everything of A's that B might have touched, as A sees it.
async fn snapshot(app: &TestApp, key: &str, ids: &Ids) -> Value {
    let mut out = serde_json::Map::new();
    for path in [
        "/v1/memories?include_embedding=true&limit=500".to_owned(),
        format!("/v1/memories/{}?include_embedding=true", ids.mem),
        format!("/v1/memories/{}", ids.mem2),
        format!("/v1/relationships/{}", ids.rel),
        format!("/v1/memories/{}/neighbours", ids.mem),
        format!("/v1/memories/{}/graph?depth=3", ids.mem),
        format!("/v1/policies/{}", ids.policy),
        "/v1/policies".to_owned(),
        format!("/v1/contexts/{}", ids.ctx),
        "/v1/contexts?limit=500".to_owned(),
        "/v1/usage".to_owned(),
        format!("/v1/sharing-rules/{}", ids.rule),
        "/v1/sharing-rules".to_owned(),
        "/v1/federated/participant".to_owned(),
        "/v1/memories?archived=true&include_embedding=true".to_owned(),
        "/v1/memories/alpha-archived?archived=true".to_owned(),
        "/v1/retention/memories".to_owned(),
    ] {
        let r = app.get(&path, key).await;
        assert_eq!(r.status, 200, "A reads {path}: {}", r.text);
        out.insert(path, r.body);
    }
    Value::Object(out)
}

#[tokio::test]
async fn tenant_b_using_tenant_a_ids_gets_what_unknown_ids_get() {
    let app = TestApp::spawn().await;
    // Same project: the strongest case (nothing but the tenant separates them).
    let project = app.create_project("shared project").await;
    // Federating tenants: the strongest case for the federated and sharing endpoints too.
    let federating = json!({ "isolation_level": "federated" });
    let a = app
        .new_tenant_in(&project, "tenant-alpha", federating.clone())
        .await;
    let secret = "alpha-content-secret";
    let created = app
        .post(
            "/v1/memories",
            &a.key,
            json!({ "memory_id": "alpha-note-1", "tags": ["alpha-tag"], "embedding": vector(3),
                    "content": { "marker": "alpha-marker", "secret": secret } }),
        )
        .await;
    created.ok(201);
    app.create_memory(&a.key, "alpha-note-2", json!({ "secret": secret }))
        .await;
    let rel = app
        .post(
            "/v1/relationships",
            &a.key,
            json!({ "source": "alpha-note-1", "target": "alpha-note-2", "relationship_type": "related_to" }),
        )
        .await;
    let policy = app
        .post(
            "/v1/policies",
            &a.key,
            json!({ "name": "alpha-policy", "resource_type": "audit", "permissions": ["read"] }),
        )
        .await;
    // A context holding A's marker and secret, in a session named like the marker.
    app.post(
        "/v1/contexts",
        &a.key,
        json!({ "context_id": "alpha-context-1", "session_id": "alpha-marker",
                "metadata": { "marker": "alpha-marker" },
                "messages": [{ "role": "user", "content": format!("alpha-marker {secret}") }] }),
    )
    .await
    .ok(201);
    // A shares its memories with a tenant that is not B; a tenant of another project runs a
    // session (on A's tag, so B's shared searches would find A's memories if anything leaked).
    app.new_tenant_in(&project, "tenant-friend", federating.clone())
        .await;
    app.post(
        "/v1/federated/participant",
        &a.key,
        json!({ "privacy_level": "basic" }),
    )
    .await
    .ok(200);
    let rule = app
        .post(
            "/v1/sharing-rules",
            &a.key,
            json!({ "target_tenant_id": "tenant-friend", "conditions": { "tags": ["alpha-tag"] } }),
        )
        .await;
    let other = app.create_project("another project").await;
    let x = app
        .new_tenant_in(&other, "tenant-xproj", federating.clone())
        .await;
    app.post(
        "/v1/federated/participant",
        &x.key,
        json!({ "privacy_level": "basic" }),
    )
    .await
    .ok(200);
    app.post(
        "/v1/federated/sessions",
        &x.key,
        json!({ "session_id": "xproj-session", "topic": { "tags": ["alpha-tag"] },
                "aggregation_method": "weighted", "privacy_level": "basic", "deadline": deadline() }),
    )
    .await
    .ok(201);
    // A keeps memories 30 days and archives the rest: alpha-archived, 60 days old, is archived.
    app.call(
        "PUT",
        "/v1/retention/memories",
        Some(&a.key),
        Some(json!({ "retention_days": 30, "archival_policy": "archive" })),
    )
    .await
    .ok(201);
    app.create_memory(&a.key, "alpha-archived", json!({ "secret": secret }))
        .await;
    sqlx::query(
        "UPDATE contextual_memories SET created_at = now() - interval '60 days'
         WHERE memory_id = 'alpha-archived'",
    )
    .execute(app.store.pool())
    .await
    .expect("backdate");
    app.store.run_cleanup().await.expect("cleanup");
    app.get("/v1/memories/alpha-archived?archived=true", &a.key)
        .await
        .ok(200);
    let a_ids = Ids {
        mem: "alpha-note-1".into(),
        mem2: "alpha-note-2".into(),
        rel: rel.ok(201)["id"].as_str().expect("id").to_owned(),
        policy: policy.ok(201)["id"].as_str().expect("id").to_owned(),
        policy_name: "alpha-policy".into(),
        marker: "alpha-marker".into(),
        tag: "alpha-tag".into(),
        request_id: created.request_id.clone().expect("x-request-id"),
        vector: a_vector(),
        key_id: a.key_id.clone(),
        ctx: "alpha-context-1".into(),
        rule: rule.ok(201)["id"].as_str().expect("id").to_owned(),
        session: "xproj-session".into(),
        tenant_x: x.tenant_id.clone(),
        deadline: deadline(),
    };
    // The request id is A's: A's audit finds it.
    let own = app
        .get(
            &format!("/v1/audit?request_id={}", a_ids.request_id),
            &a.key,
        )
        .await;
    assert_eq!(own.ok(200)["records"].as_array().map(Vec::len), Some(1));
    // The search rows are meaningful: A's own searches find A's memory.
    let found = app
        .post(
            "/v1/contexts/search",
            &a.key,
            json!({ "query": "alpha-marker", "mode": "text" }),
        )
        .await;
    assert_eq!(found.ok(200)["results"][0]["context_id"], "alpha-context-1");
    for body in [
        json!({ "query": "alpha-marker", "mode": "text" }),
        json!({ "vector": vector(3), "k": 1 }),
    ] {
        let r = app.post("/v1/memories/search", &a.key, body).await;
        assert_eq!(
            r.ok(200)["results"][0]["memory"]["memory_id"],
            "alpha-note-1",
            "{}",
            r.text
        );
    }
    let before = snapshot(&app, &a.key, &a_ids).await;

    let unknown = Ids::unknown();
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for (i, row) in ENDPOINTS.iter().enumerate() {
        // A fresh B per row, so what one row writes cannot change another's answer.
        let b = app
            .new_tenant_in(&project, &format!("tenant-b{i}"), federating.clone())
            .await;
        let with_a = send(&app, row, &a_ids, Some(&b.key)).await;
        let with_unknown = send(&app, row, &unknown, Some(&b.key)).await;
        let what = format!("{} {}", row.method, row.uri);
        assert_eq!(
            with_a.status, row.expect,
            "{what} with A's ids: {}",
            with_a.text
        );
        assert_eq!(
            normalize(&with_a, &a_ids),
            normalize(&with_unknown, &unknown),
            "{what}: A's ids and unknown ids must get the same answer\nA's: {}\nunknown: {}",
            with_a.text,
            with_unknown.text
        );
        if with_a.status >= 400 {
            assert!(with_a.has_error_shape(), "{what}: {}", with_a.text);
        }
        for leak in [
            secret,
            a.tenant_id.as_str(),
            a.key_id.as_str(),
            x.tenant_id.as_str(),
            "xproj-session",
        ] {
            assert!(
                !with_a.text.contains(leak),
                "{what} leaks {leak}: {}",
                with_a.text
            );
        }
        *by_status.entry(with_a.status).or_default() += 1;
    }

    assert_eq!(
        before,
        snapshot(&app, &a.key, &a_ids).await,
        "A's data changed"
    );
    // A's audit trail holds only A's own requests.
    let audit = app.get("/v1/audit?limit=500", &a.key).await;
    let records = audit.ok(200)["records"]
        .as_array()
        .expect("records")
        .clone();
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r["api_key_id"], json!(a.key_id), "foreign audit row: {r}");
    }
    println!(
        "isolation sweep: {} rows over {} endpoints, answers by status {by_status:?}",
        ENDPOINTS.len(),
        ENDPOINTS
            .iter()
            .map(|r| (r.method, r.route))
            .collect::<BTreeSet<_>>()
            .len()
    );
}

#[tokio::test]
async fn a_tenant_key_cannot_read_a_tenants_federated_standing() {
    let app = TestApp::spawn().await;
    let a = app.new_tenant("tenant-alpha").await;
    let b = app.new_tenant("tenant-beta").await;
    for path in [
        "/v1/admin/tenants/tenant-alpha/federated",
        "/v1/admin/tenants/tenant-beta/federated",
    ] {
        app.get(path, &b.key).await.expect(403, "admin_only");
    }
    app.get("/v1/federated/participant", &a.key)
        .await
        .expect(403, "isolation_strict");
}

#[test]
fn every_tenant_endpoint_has_an_isolation_row() {
    let ops = openapi_operations();
    let tenant_ops: Vec<_> = ops
        .iter()
        .filter(|o| o.path.starts_with("/v1/") && !o.path.starts_with("/v1/admin"))
        .collect();
    let missing: Vec<String> = tenant_ops
        .iter()
        .filter(|o| {
            !ENDPOINTS
                .iter()
                .any(|r| r.method == o.method && r.route == o.path)
        })
        .map(|o| format!("{} {}", o.method, o.path))
        .collect();
    assert!(
        missing.is_empty(),
        "tenant endpoints without a row in isolation::ENDPOINTS: {missing:?}"
    );
    let stale: Vec<String> = ENDPOINTS
        .iter()
        .filter(|r| {
            !ops.iter()
                .any(|o| o.method == r.method && o.path == r.route)
        })
        .map(|r| format!("{} {}", r.method, r.route))
        .collect();
    assert!(
        stale.is_empty(),
        "rows naming no documented operation: {stale:?}"
    );
    assert!(
        tenant_ops.len() >= 17,
        "the document lost operations: {tenant_ops:?}"
    );
}
