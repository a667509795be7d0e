//! The server and its embedding provider: requests are authorized before any text is embedded,
//! and a failing provider's answer and address never reach tenants. The provider is the real
//! HTTP client (`HttpEmbedder`) talking to a local OpenAI-style stub that counts its calls.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use mnemo_embed::{HttpEmbedder, HttpEmbedderConfig};
use mnemo_server::Limits;
use serde_json::{json, Value};

use crate::harness::TestApp;

/// What the failing stub answers: a body echoing a secret, as some providers do.
const PROVIDER_SECRET: &str = "sk-live-TOPSECRET-4242";

/// An OpenAI-style embeddings endpoint on a random port.
struct Stub {
    /// `http://127.0.0.1:PORT/v1`
    base_url: String,
    /// `POST /v1/embeddings` requests received.
    calls: Arc<AtomicUsize>,
}

impl Stub {
    /// Answers every text with a 384-long vector, or, when `fail`, HTTP 500 with
    /// [`PROVIDER_SECRET`] in the body.
    async fn start(fail: bool) -> Stub {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let app = Router::new().route(
            "/v1/embeddings",
            post(move |Json(body): Json<Value>| {
                let counter = counter.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    if fail {
                        let detail = format!(
                            "upstream exploded for api_key={PROVIDER_SECRET} (account acct_777)"
                        );
                        return (StatusCode::INTERNAL_SERVER_ERROR, detail).into_response();
                    }
                    let n = body["input"].as_array().map_or(0, Vec::len);
                    let data: Vec<Value> = (0..n)
                        .map(|i| {
                            let mut v = vec![0.05f32; 384];
                            v[i % 384] = 1.0;
                            json!({ "index": i, "embedding": v })
                        })
                        .collect();
                    Json(json!({ "data": data })).into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the stub");
        let addr = listener.local_addr().expect("stub address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Stub {
            base_url: format!("http://127.0.0.1:{}/v1", addr.port()),
            calls,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The application with the HTTP provider at `base_url`.
async fn app_with_provider(base_url: &str) -> TestApp {
    let embedder = HttpEmbedder::new(HttpEmbedderConfig {
        base_url: base_url.to_owned(),
        model: "stub-embedding".to_owned(),
        dim: 384,
        api_key: None,
        timeout: Duration::from_secs(5),
    })
    .expect("valid provider configuration");
    TestApp::spawn_with(Limits::default(), Some(Arc::new(embedder))).await
}

fn texts(n: usize) -> Value {
    let memories: Vec<Value> = (0..n)
        .map(|i| json!({ "memory_id": format!("text-{i}"), "content": { "text": format!("note number {i}") } }))
        .collect();
    json!({ "memories": memories })
}

#[tokio::test]
async fn a_key_without_write_scope_is_refused_before_any_text_is_embedded() {
    let stub = Stub::start(false).await;
    let app = app_with_provider(&stub.base_url).await;
    let t = app.new_tenant("tenant-usage-only").await;
    let (_, usage_only) = app.create_key(&t.tenant_id, &["usage:read"], None).await;

    let r = app
        .post("/v1/memories/batch", &usage_only, texts(1000))
        .await;
    r.expect(403, "insufficient_scope");
    let one = json!({ "memory_id": "m1", "content": { "text": "hello" } });
    app.post("/v1/memories", &usage_only, one.clone())
        .await
        .expect(403, "insufficient_scope");
    app.call("PUT", "/v1/memories/m1", Some(&usage_only), Some(one))
        .await
        .expect(403, "insufficient_scope");
    app.post(
        "/v1/memories/search",
        &usage_only,
        json!({ "query": "hello", "mode": "hybrid" }),
    )
    .await
    .expect(403, "insufficient_scope");
    assert_eq!(stub.calls(), 0, "the provider was called for a refused key");

    // PATCH of content re-embeds: refused first too.
    app.post(
        "/v1/memories",
        &t.key,
        json!({ "memory_id": "m1", "content": { "text": "hello" } }),
    )
    .await
    .ok(201);
    let embedded = stub.calls();
    assert_eq!(embedded, 1, "the stub serves writes that are allowed");
    app.call(
        "PATCH",
        "/v1/memories/m1",
        Some(&usage_only),
        Some(json!({ "content": { "text": "changed" } })),
    )
    .await
    .expect(403, "insufficient_scope");
    assert_eq!(stub.calls(), embedded);

    // The refusal is audited once, as the runner audits it.
    let audit = app
        .get("/v1/audit?action=memory.batch_create", &t.key)
        .await;
    let records = audit.ok(200)["records"]
        .as_array()
        .expect("records")
        .clone();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["outcome"], "denied");
    assert_eq!(records[0]["details"]["code"], "insufficient_scope");
}

#[tokio::test]
async fn a_write_over_the_quota_is_refused_before_any_text_is_embedded() {
    let stub = Stub::start(false).await;
    let app = app_with_provider(&stub.base_url).await;
    let project = app.create_project("project of the quota").await;
    let t = app
        .new_tenant_in(&project, "tenant-quota-embed", json!({ "max_memories": 5 }))
        .await;
    app.post("/v1/memories/batch", &t.key, texts(5))
        .await
        .ok(201);
    let embedded = stub.calls();

    let more: Vec<Value> = (0..1000)
        .map(|i| json!({ "memory_id": format!("more-{i}"), "content": { "text": format!("note {i}") } }))
        .collect();
    app.post("/v1/memories/batch", &t.key, json!({ "memories": more }))
        .await
        .expect(403, "quota_exceeded");
    app.post(
        "/v1/memories",
        &t.key,
        json!({ "memory_id": "one-more", "content": { "text": "over the quota" } }),
    )
    .await
    .expect(403, "quota_exceeded");
    assert_eq!(
        stub.calls(),
        embedded,
        "texts of a write over the quota were embedded"
    );

    // A replacement does not grow the tenant: it is not refused up front.
    app.call(
        "PUT",
        "/v1/memories/text-0",
        Some(&t.key),
        Some(json!({ "content": { "text": "replaced" } })),
    )
    .await
    .ok(200);
}

#[tokio::test]
async fn a_policy_refusal_comes_before_embedding() {
    let stub = Stub::start(false).await;
    let app = app_with_provider(&stub.base_url).await;
    let t = app.new_tenant("tenant-policy-embed").await;
    app.post(
        "/v1/policies",
        &t.key,
        json!({ "name": "notes only", "resource_type": "memories", "resource_pattern": "notes-*",
                "permissions": ["read", "write"] }),
    )
    .await
    .ok(201);

    app.post("/v1/memories/batch", &t.key, texts(1000))
        .await
        .expect(403, "policy_denied");
    app.post(
        "/v1/memories",
        &t.key,
        json!({ "memory_id": "todo-1", "content": { "text": "not a note" } }),
    )
    .await
    .expect(403, "policy_denied");
    app.post(
        "/v1/memories/search",
        &t.key,
        json!({ "query": "note", "mode": "vector" }),
    )
    .await
    .expect(403, "policy_denied");
    assert_eq!(
        stub.calls(),
        0,
        "the provider was called for a refused request"
    );

    app.post(
        "/v1/memories",
        &t.key,
        json!({ "memory_id": "notes-1", "content": { "text": "a note" } }),
    )
    .await
    .ok(201);
    assert_eq!(stub.calls(), 1);
}

/// Asserts a 503 `embedding_unavailable` that names neither the provider's answer nor its address.
#[track_caller]
fn assert_generic_503(r: &crate::harness::Resp) {
    r.expect(503, "embedding_unavailable");
    for leak in [
        PROVIDER_SECRET,
        "acct_777",
        "hunter2",
        "127.0.0.1",
        "/v1/embeddings",
        "500",
    ] {
        assert!(
            !r.text.contains(leak),
            "the answer leaks {leak:?}: {}",
            r.text
        );
    }
}

#[tokio::test]
async fn embedding_provider_failures_reach_tenants_as_a_generic_503() {
    let stub = Stub::start(true).await;
    // Credentials in the provider's URL, as some deployments configure them.
    let with_credentials = stub.base_url.replace("http://", "http://mnemo:hunter2@");
    let app = app_with_provider(&with_credentials).await;
    let t = app.new_tenant("tenant-provider-down").await;

    let r = app
        .post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": "m1", "content": { "text": "hello" } }),
        )
        .await;
    assert_generic_503(&r);
    assert_eq!(stub.calls(), 1, "the provider was asked and failed");
    let r = app
        .post(
            "/v1/memories/search",
            &t.key,
            json!({ "query": "hello", "mode": "vector" }),
        )
        .await;
    assert_generic_503(&r);

    // A provider that cannot be reached at all: its address is not told either.
    let app = app_with_provider("http://mnemo:hunter2@127.0.0.1:1/v1").await;
    let t = app.new_tenant("tenant-provider-gone").await;
    let r = app
        .post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": "m1", "content": { "text": "hello" } }),
        )
        .await;
    assert_generic_503(&r);
}
