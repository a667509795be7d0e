//! Search: recall per tenant-size bucket against exact brute force, isolation through every mode
//! and graph expansion, expiry, read-your-writes, the plan each strategy uses, and bad queries.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use mnemo_server::{app, AdminKey, AppState, Limits};
use mnemo_store::memories::MemoryFilter;
use mnemo_store::search::{explain_vector, Strategy};
use mnemo_store::testing::TestDb;
use mnemo_store::TenantScope;

const ADMIN: &str = "search-test-admin-key";

struct App {
    url: String,
    http: reqwest::Client,
    db: TestDb,
    limits: Arc<Limits>,
}

impl App {
    async fn start(embedder: Option<Arc<dyn mnemo_embed::Embedder>>) -> App {
        let db = TestDb::new().await;
        let limits = Limits {
            vector_index_min_rows: 1000,
            ..Limits::default()
        };
        let state = AppState::new(
            db.store.clone(),
            embedder,
            limits,
            AdminKey::configured(ADMIN),
        );
        let limits = state.limits.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app(state)).await });
        App {
            url,
            http: reqwest::Client::new(),
            db,
            limits,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, key, Some(body))
            .await
    }

    /// A new tenant with an all-scopes key; returns (tenant uuid, key).
    async fn tenant(&self, name: &str) -> (uuid::Uuid, String) {
        let (s, p) = self
            .post(
                "/v1/admin/projects",
                ADMIN,
                json!({"name": format!("p-{name}"), "owner_id": "t"}),
            )
            .await;
        assert_eq!(s, 201, "{p}");
        let (s, t) = self
            .post(
                "/v1/admin/tenants",
                ADMIN,
                json!({"tenant_id": name, "project_id": p["id"], "name": name}),
            )
            .await;
        assert_eq!(s, 201, "{t}");
        let (s, k) = self
            .post(
                &format!("/v1/admin/tenants/{name}/keys"),
                ADMIN,
                json!({"name": "k", "scopes": ["*"]}),
            )
            .await;
        assert_eq!(s, 201, "{k}");
        (
            t["id"].as_str().expect("id").parse().expect("uuid"),
            k["secret"].as_str().expect("secret").to_owned(),
        )
    }

    async fn search(&self, key: &str, body: Value) -> Value {
        let (s, v) = self.post("/v1/memories/search", key, body).await;
        assert_eq!(s, 200, "{v}");
        v
    }
}

fn ids(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["memory"]["memory_id"].as_str().expect("id").to_owned())
        .collect()
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn gaussian(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.gen_range(f32::MIN_POSITIVE..1.0);
    let u2: f32 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

/// `n` clustered unit vectors.
fn clustered(rng: &mut StdRng, n: usize) -> Vec<Vec<f32>> {
    let centers: Vec<Vec<f32>> = (0..4)
        .map(|_| unit((0..384).map(|_| gaussian(rng)).collect()))
        .collect();
    (0..n)
        .map(|_| {
            let c = &centers[rng.gen_range(0..4)];
            unit(c.iter().map(|x| x + 0.06 * gaussian(rng)).collect())
        })
        .collect()
}

async fn ingest(app: &App, key: &str, prefix: &str, vectors: &[Vec<f32>]) {
    for (c, chunk) in vectors.chunks(1000).enumerate() {
        let memories: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"memory_id": format!("{prefix}{}", c * 1000 + i), "content": {"text": format!("note {i}")}, "embedding": v}))
            .collect();
        let (s, b) = app
            .post("/v1/memories/batch", key, json!({ "memories": memories }))
            .await;
        assert_eq!(s, 201, "{b}");
    }
}

fn exact_top(vectors: &[Vec<f32>], q: &[f32], prefix: &str, k: usize) -> Vec<String> {
    let mut scored: Vec<(f32, usize)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (-v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    scored
        .into_iter()
        .take(k)
        .map(|(_, i)| format!("{prefix}{i}"))
        .collect()
}

#[tokio::test]
async fn recall_at_10_holds_in_every_tenant_size_bucket() {
    let app = App::start(None).await;
    let mut rng = StdRng::seed_from_u64(1);
    let mut tenants = Vec::new();
    for (name, size) in [("small", 40), ("medium", 600), ("large", 2500)] {
        let (_, key) = app.tenant(name).await;
        let vectors = clustered(&mut rng, size);
        ingest(&app, &key, "m", &vectors).await;
        tenants.push((name, key, vectors));
    }
    // The large tenant crosses the threshold (1000 in this test) and gets its own HNSW index.
    let (s, report) = app.post("/v1/admin/maintenance", ADMIN, json!({})).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["vector_indexes"]["indexed_tenants"], 1, "{report}");

    for (name, key, vectors) in &tenants {
        let mut total = 0.0;
        let queries = 20;
        for _ in 0..queries {
            let base = &vectors[rng.gen_range(0..vectors.len())];
            let q = unit(base.iter().map(|x| x + 0.03 * gaussian(&mut rng)).collect());
            let v = app.search(key, json!({"vector": q, "k": 10})).await;
            let expected = if *name == "large" { "hnsw" } else { "exact" };
            assert_eq!(v["strategy"], expected, "{name}");
            let truth = exact_top(vectors, &q, "m", 10);
            let served = ids(&v);
            total +=
                served.iter().filter(|s| truth.contains(s)).count() as f64 / truth.len() as f64;
        }
        let recall = total / queries as f64;
        assert!(recall >= 0.98, "recall@10 of the {name} tenant is {recall}");
    }
}

#[tokio::test]
async fn each_strategy_uses_the_plan_it_claims() {
    let app = App::start(None).await;
    let (tenant, key) = app.tenant("planner").await;
    let mut rng = StdRng::seed_from_u64(2);
    ingest(&app, &key, "m", &clustered(&mut rng, 1200)).await;
    app.post("/v1/admin/maintenance", ADMIN, json!({})).await;
    let q = clustered(&mut rng, 1).remove(0);
    let scope = TenantScope::assume(tenant);
    let mut tx = app.db.store.begin_tenant(&scope).await.expect("tx");
    let hnsw = explain_vector(&mut tx, &q, 10, &MemoryFilter::default(), Strategy::Hnsw)
        .await
        .expect("explain");
    assert!(
        hnsw.contains(&mnemo_store::search::index_name(tenant)),
        "HNSW plan:\n{hnsw}"
    );
    let exact = explain_vector(&mut tx, &q, 10, &MemoryFilter::default(), Strategy::Exact)
        .await
        .expect("explain");
    assert!(
        !exact.contains("cm_hnsw_"),
        "exact plan must not use a vector index:\n{exact}"
    );
    tx.rollback().await.expect("rollback");
}

#[tokio::test]
async fn search_never_returns_another_tenants_memory() {
    let app = App::start(None).await;
    let (_, a) = app.tenant("tenant-a").await;
    let (_, b) = app.tenant("tenant-b").await;
    let mut rng = StdRng::seed_from_u64(3);
    let vectors = clustered(&mut rng, 30);
    // Same vectors and the same words in both tenants: only isolation tells them apart.
    ingest(&app, &a, "a-", &vectors).await;
    ingest(&app, &b, "b-", &vectors[..5]).await;
    for pair in [("a-0", "a-1"), ("b-0", "b-1")] {
        let key = if pair.0.starts_with('a') { &a } else { &b };
        let (s, r) = app
            .post(
                "/v1/relationships",
                key,
                json!({"source": pair.0, "target": pair.1, "relationship_type": "related_to"}),
            )
            .await;
        assert_eq!(s, 201, "{r}");
    }
    for body in [
        json!({"vector": vectors[0], "k": 100, "expand": true}),
        json!({"vector": vectors[0], "query": "note", "mode": "hybrid", "k": 100, "expand": true}),
        json!({"query": "note", "mode": "text", "k": 100, "expand": true}),
    ] {
        let v = app.search(&b, body.clone()).await;
        let found = ids(&v);
        assert!(!found.is_empty(), "{body}");
        assert!(
            found.iter().all(|id| id.starts_with("b-")),
            "{body}: {found:?}"
        );
        for r in v["results"].as_array().expect("results") {
            for rel in r["related"].as_array().expect("related") {
                let other = rel["memory"]["memory_id"].as_str().expect("id");
                assert!(other.starts_with("b-"), "expansion leaked {other}");
            }
        }
    }
}

#[tokio::test]
async fn expired_memories_never_appear_in_search() {
    let app = App::start(None).await;
    let (_, key) = app.tenant("expiry").await;
    let mut rng = StdRng::seed_from_u64(4);
    let v = clustered(&mut rng, 2);
    let soon = chrono::Utc::now() + chrono::Duration::milliseconds(4000);
    let (s, _) = app.post("/v1/memories", &key, json!({"memory_id": "short", "content": {"text": "ephemeral"}, "embedding": v[0], "expires_at": soon})).await;
    assert_eq!(s, 201);
    let (s, _) = app
        .post(
            "/v1/memories",
            &key,
            json!({"memory_id": "long", "content": {"text": "ephemeral too"}, "embedding": v[1]}),
        )
        .await;
    assert_eq!(s, 201);
    assert!(ids(&app.search(&key, json!({"vector": v[0]})).await).contains(&"short".to_owned()));
    tokio::time::sleep(Duration::from_millis(4300)).await;
    for body in [
        json!({"vector": v[0]}),
        json!({"query": "ephemeral", "mode": "text"}),
    ] {
        let found = ids(&app.search(&key, body).await);
        assert_eq!(found, vec!["long".to_owned()]);
    }
}

#[tokio::test]
async fn filters_narrow_vector_results() {
    let app = App::start(None).await;
    let (_, key) = app.tenant("filters").await;
    let mut rng = StdRng::seed_from_u64(5);
    let v = clustered(&mut rng, 3);
    for (i, (tag, rel)) in [("work", 0.9), ("home", 0.2), ("work", 0.1)]
        .iter()
        .enumerate()
    {
        let (s, b) = app
            .post("/v1/memories", &key, json!({"memory_id": format!("m{i}"), "content": {"kind": tag}, "tags": [tag], "relevance_score": rel, "embedding": v[i]}))
            .await;
        assert_eq!(s, 201, "{b}");
    }
    let found = ids(&app
        .search(
            &key,
            json!({"vector": v[1], "filter": {"tags": ["work"], "min_relevance": 0.5}}),
        )
        .await);
    assert_eq!(found, vec!["m0".to_owned()]);
    let found = ids(&app
        .search(
            &key,
            json!({"vector": v[0], "filter": {"contains": {"kind": "home"}}}),
        )
        .await);
    assert_eq!(found, vec!["m1".to_owned()]);
}

#[tokio::test]
async fn bad_queries_are_refused_with_4xx() {
    let app = App::start(None).await;
    let (_, key) = app.tenant("bad").await;
    let good = vec![0.05f32; 384];
    let cases = [
        (json!({}), 422),
        (json!({"query": ""}), 422),
        (json!({"query": "   "}), 422),
        (json!({"query": "x".repeat(2001), "mode": "text"}), 422),
        (json!({"vector": [0.1, 0.2]}), 422),
        (json!({"vector": vec![0.0; 384]}), 422),
        (json!({"vector": vec![1e39; 384]}), 422),
        (json!({"vector": good, "k": 0}), 422),
        (json!({"vector": good, "k": 10000}), 422),
        (json!({"vector": good, "k": "ten"}), 422),
        (json!({"vector": good, "mode": "fuzzy"}), 422),
        (json!({"vector": good, "mode": "text"}), 422),
        (json!({"vector": good, "min_similarity": 2}), 422),
        (json!({"vector": good, "filter": {"min_relevance": 2}}), 422),
        (json!({"vector": good, "filter": {"unknown": 1}}), 422),
        (json!({"vector": good, "surprise": true}), 422),
        // Without an embedder the server cannot embed text for vector search.
        (json!({"query": "hello", "mode": "vector"}), 422),
    ];
    for (body, status) in cases {
        let (s, v) = app.post("/v1/memories/search", &key, body.clone()).await;
        assert_eq!(s, status, "{body} → {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    // NaN is not JSON: a malformed body.
    let resp = app
        .http
        .post(format!("{}/v1/memories/search", app.url))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(format!("{{\"vector\": [NaN{}]}}", ", 0.1".repeat(383)))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 400);
    assert!(app.limits.max_k == 100);
}

#[tokio::test]
async fn local_model_makes_new_memories_searchable_by_meaning_at_once() {
    let dir =
        std::env::var("MNEMO_MODEL_DIR").expect("MNEMO_MODEL_DIR is not set: run `make test`");
    let model = mnemo_embed::MiniLm::load(std::path::Path::new(&dir)).expect("load model");
    let app = App::start(Some(Arc::new(model))).await;
    let (_, key) = app.tenant("semantic").await;
    for (id, text) in [
        ("cat", "The cat sat on the mat."),
        ("rust", "Rust's borrow checker prevents data races."),
        ("food", "A man is eating a piece of bread."),
    ] {
        let (s, b) = app
            .post(
                "/v1/memories",
                &key,
                json!({"memory_id": id, "content": {"text": text}}),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        assert_eq!(b["has_embedding"], true);
    }
    for (query, expected) in [
        ("a kitten on a rug", "cat"),
        ("someone having lunch", "food"),
        ("memory safety in systems languages", "rust"),
    ] {
        for mode in ["vector", "hybrid"] {
            let found = ids(&app
                .search(&key, json!({"query": query, "mode": mode, "k": 3}))
                .await);
            assert_eq!(
                found.first().map(String::as_str),
                Some(expected),
                "{mode} {query}: {found:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_selective_filter_on_a_tenant_with_an_hnsw_index_still_gets_k_results() {
    let app = App::start(None).await;
    let (tenant, key) = app.tenant("selective").await;
    // 30,000 memories around one direction, and 20 tagged `rare` around the opposite one: the
    // HNSW scan from a query near the crowd meets every crowd member before any rare one.
    sqlx::query(
        "INSERT INTO contextual_memories (tenant_id, memory_id, content, tags, embedding)
         SELECT $1, CASE WHEN g <= 20 THEN 'rare-' ELSE 'crowd-' END || g, '{}',
                CASE WHEN g <= 20 THEN ARRAY['rare'] ELSE ARRAY['crowd'] END,
                ('[' || CASE WHEN g <= 20 THEN -1 ELSE 1 END || ',' || random() || ',' || random()
                     || repeat(',0', 381) || ']')::vector
         FROM generate_series(1, 30000) AS g",
    )
    .bind(tenant)
    .execute(app.db.store.pool())
    .await
    .expect("memories");
    let (s, report) = app.post("/v1/admin/maintenance", ADMIN, json!({})).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["vector_indexes"]["indexed_tenants"], 1, "{report}");

    let mut q = vec![0.0f32; 384];
    q[0] = 1.0;
    q[1] = 0.05;
    let v = app
        .search(
            &key,
            json!({"vector": q, "k": 10, "filter": {"tags": ["rare"]}}),
        )
        .await;
    let found = ids(&v);
    assert_eq!(found.len(), 10, "{v}");
    assert!(found.iter().all(|id| id.starts_with("rare-")), "{found:?}");
    // Without the filter the index answers by itself.
    let v = app.search(&key, json!({"vector": q, "k": 10})).await;
    assert_eq!(v["strategy"], "hnsw");
    assert_eq!(ids(&v).len(), 10);
}

/// `vectors` as the chunks of one context (`ctx`) of `tenant`, chunk `i` reading message `i`,
/// written as the owner.
async fn ingest_chunks(app: &App, tenant: uuid::Uuid, vectors: &[Vec<f32>]) {
    let context: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO offloaded_contexts (tenant_id, context_id) VALUES ($1, 'ctx') RETURNING id",
    )
    .bind(tenant)
    .fetch_one(app.db.store.pool())
    .await
    .expect("context");
    let embeddings: Vec<pgvector::Vector> = vectors
        .iter()
        .map(|v| pgvector::Vector::from(v.clone()))
        .collect();
    sqlx::query(
        "INSERT INTO context_chunks (tenant_id, offloaded_context_id, ordinal, first_message,
             last_message, char_start, char_end, token_count, text, embedding)
         SELECT $1, $2, n - 1, n - 1, n - 1, 0, 4, 3, 'user: note ' || n, e
         FROM unnest($3::vector[]) WITH ORDINALITY AS u(e, n)",
    )
    .bind(tenant)
    .bind(context)
    .bind(embeddings)
    .execute(app.db.store.pool())
    .await
    .expect("chunks");
}

#[tokio::test]
async fn context_chunk_recall_holds_in_every_tenant_size_bucket() {
    let app = App::start(None).await;
    let mut rng = StdRng::seed_from_u64(6);
    let mut tenants = Vec::new();
    for (name, size) in [("c-small", 40), ("c-medium", 600), ("c-large", 2500)] {
        let (tenant, key) = app.tenant(name).await;
        let vectors = clustered(&mut rng, size);
        ingest_chunks(&app, tenant, &vectors).await;
        tenants.push((name, key, vectors));
    }
    // The large tenant crosses the threshold (1000 here) and gets an HNSW index over its chunks.
    let (s, report) = app.post("/v1/admin/maintenance", ADMIN, json!({})).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(
        report["vector_indexes"]["context_chunks"]["indexed_tenants"], 1,
        "{report}"
    );
    for (name, key, vectors) in &tenants {
        let mut total = 0.0;
        let queries = 20;
        for _ in 0..queries {
            let base = &vectors[rng.gen_range(0..vectors.len())];
            let q = unit(base.iter().map(|x| x + 0.03 * gaussian(&mut rng)).collect());
            let (s, v) = app
                .post("/v1/contexts/search", key, json!({"vector": q, "k": 10}))
                .await;
            assert_eq!(s, 200, "{v}");
            let expected = if *name == "c-large" { "hnsw" } else { "exact" };
            assert_eq!(v["strategy"], expected, "{name}");
            let served: Vec<String> = v["results"]
                .as_array()
                .expect("results")
                .iter()
                .flat_map(|r| r["chunks"].as_array().expect("chunks").clone())
                .map(|c| format!("m{}", c["messages"][0]))
                .collect();
            assert_eq!(served.len(), 10, "{v}");
            let truth = exact_top(vectors, &q, "m", 10);
            total +=
                served.iter().filter(|s| truth.contains(s)).count() as f64 / truth.len() as f64;
        }
        let recall = total / queries as f64;
        assert!(
            recall >= 0.99,
            "chunk recall@10 of the {name} tenant is {recall}"
        );
    }
}
