//! Context offloading end to end, against the real PostgreSQL and the real model: contexts come
//! back byte-identical, reconstruction never exceeds its budget and finds a planted answer first,
//! chronological order and overlap merging hold, writes are all or nothing, expiry, quotas, the
//! chat-model summary and its fallback, and tenants never see each other's contexts.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use mnemo_core::context::corpus;
use mnemo_embed::{Backend, Embedder, HttpEmbedder, HttpEmbedderConfig, MiniLm, OnnxConfig};
use mnemo_server::llm::{LlmConfig, LlmSummarizer};
use mnemo_server::{AdminKey, AppState, Limits};

use crate::harness::{TestApp, ADMIN_KEY};

/// all-MiniLM-L6-v2, on ONNX Runtime when it is provisioned (faster), else candle. One per test
/// process: its worker thread outlives each test's runtime.
pub fn model() -> Arc<dyn Embedder> {
    static MODEL: OnceLock<Arc<MiniLm>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir =
                PathBuf::from(std::env::var_os("MNEMO_MODEL_DIR").expect(
                    "MNEMO_MODEL_DIR is not set: eval \"$(bash scripts/env.sh)\" provides it",
                ));
            let onnx = match (
                std::env::var_os("MNEMO_ONNX_MODEL"),
                std::env::var_os("MNEMO_ONNX_RUNTIME"),
            ) {
                (Some(model), Some(runtime)) => Some(OnnxConfig {
                    model: model.into(),
                    runtime: runtime.into(),
                    threads: 2,
                }),
                _ => None,
            };
            let backend = onnx
                .filter(|c| c.model.is_file() && c.runtime.is_file())
                .map_or(Backend::Candle, Backend::Onnx);
            Arc::new(MiniLm::load_with(&dir, &backend).expect("load all-MiniLM-L6-v2"))
        })
        .clone()
}

async fn with_model() -> TestApp {
    TestApp::spawn_with(Limits::default(), Some(model())).await
}

/// Counts tokens the way the budget is defined, with tiktoken itself.
fn tiktoken(tokenizer: &str, text: &str) -> usize {
    let bpe = match tokenizer {
        "cl100k_base" => tiktoken_rs::cl100k_base_singleton(),
        _ => tiktoken_rs::o200k_base_singleton(),
    };
    bpe.encode_ordinary(text).len()
}

/// Offloads `messages_json` (raw JSON text) as `context_id`; returns the answer's body.
async fn offload(
    app: &TestApp,
    key: &str,
    context_id: &str,
    messages_json: &str,
    extra: &str,
) -> Value {
    let body = format!(r#"{{"context_id":"{context_id}","messages":{messages_json}{extra}}}"#);
    let r = app
        .call_raw(
            "POST",
            "/v1/contexts",
            Some(key),
            Some(body.into_bytes()),
            Some("application/json"),
        )
        .await;
    r.ok(201).clone()
}

#[derive(Deserialize)]
struct Got {
    messages: Option<Box<RawValue>>,
    text: Option<Box<RawValue>>,
    metadata: Value,
}

// ---------------------------------------------------------------------------------------------
// Byte-exact storage
// ---------------------------------------------------------------------------------------------

/// A piece of a JSON string literal: any character but the ones JSON requires escaped, emoji,
/// and every kind of escape (control characters included).
fn string_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "[^\"\\\\\\x00-\\x1f]{1,12}",
        1 => prop_oneof![
            Just("\\\"".to_owned()), Just("\\\\".to_owned()), Just("\\/".to_owned()),
            Just("\\b".to_owned()), Just("\\f".to_owned()), Just("\\n".to_owned()),
            Just("\\r".to_owned()), Just("\\t".to_owned()),
        ],
        1 => (0u32..0x20).prop_map(|c| format!("\\u{c:04x}")),
        1 => (0x10000u32..0x10FFFF).prop_map(|c| {
            let v = c - 0x10000;
            format!("\\u{:04X}\\u{:04x}", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF))
        }),
        1 => Just("😀👩‍👩‍👧 ﷽ é".to_owned()),
    ]
}

fn string_literal(min: usize, max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(string_piece(), min..max).prop_map(|p| format!("\"{}\"", p.concat()))
}

/// Numbers as clients spell them, including ones a float cannot hold.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        Just("-0".to_owned()),
        Just("1e400".to_owned()),
        Just("1.50e+2".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
        Just("0.1000".to_owned()),
    ]
}

fn json_value(depth: u32) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        number(),
        string_literal(0, 5),
    ];
    leaf.prop_recursive(depth, 40, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[ {} ]", v.join(" , "))),
            prop::collection::vec((string_literal(0, 3), inner), 0..4).prop_map(|f| {
                let body: Vec<String> = f.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

/// A message: `role` and `content` (empty, tiny, long, or huge) among other fields, any order.
fn message() -> impl Strategy<Value = String> {
    let content = prop_oneof![
        1 => Just("\"\"".to_owned()),
        6 => string_literal(1, 20),
        2 => string_literal(200, 1500),
        1 => "[a-z ]{20,60}".prop_map(|s| format!("\"{}\"", s.repeat(2000))),
    ];
    (
        string_literal(0, 3),
        content,
        prop::collection::vec(json_value(4), 0..3),
        any::<bool>(),
    )
        .prop_map(|(role, content, extra, role_first)| {
            let mut fields: Vec<String> = extra
                .into_iter()
                .enumerate()
                .map(|(i, v)| format!("\"extra{i}\" : {v}"))
                .collect();
            let (r, c) = (
                format!("\"role\":{role}"),
                format!("\"content\" :{content}"),
            );
            if role_first {
                fields.insert(0, c);
                fields.insert(0, r);
            } else {
                fields.push(c);
                fields.push(r);
            }
            format!("{{ {} }}", fields.join(","))
        })
}

/// Metadata nested up to 30 levels, with control characters in its strings.
fn metadata() -> impl Strategy<Value = Value> {
    (1usize..30, string_literal(0, 6)).prop_map(|(depth, s)| {
        // JSONB cannot hold NUL: every other control character.
        let leaf: Value =
            serde_json::from_str(&s.replace("\\u0000", "\\u0001")).unwrap_or(Value::Null);
        let mut v = json!({ "leaf": leaf, "n": 1.5, "list": [1, "two", null] });
        for i in 0..depth {
            v = json!({ format!("level{i}"): v });
        }
        v
    })
}

#[derive(Debug, Clone)]
enum Sent {
    Messages(String),
    Text(String),
}

fn sent() -> impl Strategy<Value = Sent> {
    prop_oneof![
        4 => prop::collection::vec(message(), 1..6)
            .prop_map(|m| Sent::Messages(format!("[{}]", m.join(" ,\n")))),
        1 => string_literal(1, 40).prop_map(Sent::Text),
    ]
}

#[test]
fn arbitrary_contexts_come_back_identical_through_get_and_raw() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // No embedder: what is stored and returned does not depend on it, and the cases stay fast.
    let app = rt.block_on(TestApp::spawn());
    let t = rt.block_on(app.new_tenant("tenant-exact"));
    let mut runner = TestRunner::new(Config {
        cases: 40,
        failure_persistence: None,
        ..Config::default()
    });
    let counter = AtomicUsize::new(0);
    runner
        .run(&(sent(), metadata()), |(sent, meta)| {
            let id = format!("c{}", counter.fetch_add(1, Ordering::SeqCst));
            let (field, raw) = match &sent {
                Sent::Messages(raw) => ("messages", raw.clone()),
                Sent::Text(raw) => ("text", raw.clone()),
            };
            let body = format!(r#"{{"context_id":"{id}", "{field}" : {raw}, "metadata": {meta}}}"#);
            rt.block_on(async {
                let r = app
                    .call_raw(
                        "POST",
                        "/v1/contexts",
                        Some(&t.key),
                        Some(body.into_bytes()),
                        Some("application/json"),
                    )
                    .await;
                prop_assert_eq!(r.status, 201, "{}", r.text);
                let got = app.get(&format!("/v1/contexts/{id}"), &t.key).await;
                prop_assert_eq!(got.status, 200);
                let parsed: Got = serde_json::from_str(&got.text).expect("a context");
                let back = match field {
                    "messages" => parsed.messages.expect("messages"),
                    _ => parsed.text.expect("text"),
                };
                prop_assert_eq!(back.get(), raw.as_str());
                prop_assert_eq!(&parsed.metadata, &meta);
                let exact = app
                    .get(&format!("/v1/contexts/{id}?raw=true"), &t.key)
                    .await;
                prop_assert_eq!(exact.status, 200);
                prop_assert_eq!(exact.content_type.as_deref(), Some("application/json"));
                prop_assert_eq!(&exact.text, &raw);
                Ok::<(), proptest::test_runner::TestCaseError>(())
            })
        })
        .expect("every context comes back identical");
}

#[tokio::test]
async fn a_generated_transcript_is_stored_compressed_and_counted() {
    let app = with_model().await;
    let t = app.new_tenant("tenant-stored").await;
    let g = corpus::generate(7, 3_000);
    let c = offload(
        &app,
        &t.key,
        "t1",
        &g.messages_json,
        r#","tokenizer":"cl100k_base""#,
    )
    .await;
    assert_eq!(c["kind"], "messages");
    assert_eq!(c["tokenizer"], "cl100k_base");
    assert_eq!(c["message_count"], g.messages);
    assert_eq!(c["compression_method"], "zstd-3");
    assert!(c["compression_ratio"].as_f64().expect("ratio") > 2.0, "{c}");
    assert_eq!(c["original_bytes"], g.messages_json.len());
    assert!(c["chunk_count"].as_i64().expect("chunks") > 5);
    assert_eq!(c["has_embedding"], true);
    assert_eq!(c["summary_method"], "extractive");
    let summary = c["summary"].as_str().expect("a summary");
    assert!(tiktoken("cl100k_base", summary) <= 256, "{summary}");
    let tokens = c["token_count"].as_i64().expect("tokens") as usize;
    assert!(tokens > 2_000 && tokens < 5_000, "{tokens}");
    let usage = app.get("/v1/usage", &t.key).await;
    let u = usage.ok(200);
    assert_eq!(u["offloaded_context_count"], 1);
    assert!(
        u["context_bytes"].as_i64().expect("bytes") > c["stored_bytes"].as_i64().expect("stored")
    );
    // Listing shows it without its messages.
    let page = app.get("/v1/contexts", &t.key).await;
    let listed = &page.ok(200)["contexts"][0];
    assert_eq!(listed["context_id"], "t1");
    assert!(listed.get("messages").is_none());
}

// ---------------------------------------------------------------------------------------------
// Reconstruction
// ---------------------------------------------------------------------------------------------

const FACT: &str = "The launch code for project Nightingale is 7-alpha-tango-93.";

#[tokio::test]
async fn a_planted_answer_in_a_long_context_is_found_and_packed_first() {
    let app = with_model().await;
    let t = app.new_tenant("tenant-needle").await;
    let with_fact = corpus::generate_with_fact(11, 25_000, FACT, 0.6);
    offload(&app, &t.key, "needle", &with_fact.messages_json, "").await;
    for seed in [12, 13] {
        let other = corpus::generate(seed, 4_000);
        offload(
            &app,
            &t.key,
            &format!("hay-{seed}"),
            &other.messages_json,
            "",
        )
        .await;
    }
    let r = app
        .post(
            "/v1/contexts/reconstruct",
            &t.key,
            json!({ "query": "What is the launch code for project Nightingale?", "token_budget": 1500 }),
        )
        .await;
    let out = r.ok(200);
    let first = &out["items"][0];
    assert_eq!(first["kind"], "chunk", "{out}");
    assert_eq!(first["context_id"], "needle");
    let prompt = out["prompt"].as_str().expect("prompt");
    let first_block = prompt.split("\n\n[").next().expect("a block");
    assert!(
        first_block.contains("7-alpha-tango-93"),
        "first block: {first_block}"
    );
    assert!(tiktoken("o200k_base", prompt) <= 1500);

    // Search finds it too: first by its words, and among the results of hybrid search (reciprocal
    // rank fusion can rank a chunk that both lists hold modestly above one list's first).
    let search = |mode: &'static str| {
        app.post(
            "/v1/contexts/search",
            &t.key,
            json!({ "query": "launch code Nightingale", "mode": mode, "k": 5 }),
        )
    };
    let text = search("text").await;
    let best = &text.ok(200)["results"][0];
    assert_eq!(best["context_id"], "needle", "{}", text.text);
    assert!(best["chunks"][0]["snippet"]
        .as_str()
        .expect("snippet")
        .contains("Nightingale"));
    let hybrid = search("hybrid").await;
    let found = hybrid.ok(200)["results"]
        .as_array()
        .expect("results")
        .iter()
        .flat_map(|r| r["chunks"].as_array().expect("chunks").iter())
        .any(|c| {
            c["snippet"]
                .as_str()
                .is_some_and(|s| s.contains("7-alpha-tango-93"))
        });
    assert!(found, "hybrid: {}", hybrid.text);
}

#[tokio::test]
async fn reconstruction_never_exceeds_the_budget() {
    let app = with_model().await;
    let t = app.new_tenant("tenant-budget").await;
    for seed in 0..4u64 {
        let g = corpus::generate(100 + seed, 2_500);
        offload(&app, &t.key, &format!("ctx-{seed}"), &g.messages_json, "").await;
    }
    for i in 0..6 {
        app.post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": format!("m{i}"), "content": { "text": format!("The deployment of service {i} uses a blue-green rollout with a database migration.") } }),
        )
        .await
        .ok(201);
    }
    let words = [
        "deploy",
        "database",
        "error",
        "cache",
        "rust",
        "query",
        "latency",
        "migration",
        "test",
        "index",
    ];
    let mut rng = StdRng::seed_from_u64(5);
    let mut packed_something = 0;
    for _ in 0..40 {
        let budget: usize = match rng.gen_range(0..4) {
            0 => rng.gen_range(1..40),
            1 => rng.gen_range(40..400),
            2 => rng.gen_range(400..3000),
            _ => rng.gen_range(3000..20000),
        };
        let query: Vec<&str> = (0..rng.gen_range(1..4))
            .map(|_| words[rng.gen_range(0..words.len())])
            .collect();
        let tokenizer = if rng.gen_bool(0.5) {
            "o200k_base"
        } else {
            "cl100k_base"
        };
        let order = if rng.gen_bool(0.5) {
            "relevance"
        } else {
            "chronological"
        };
        let r = app
            .post(
                "/v1/contexts/reconstruct",
                &t.key,
                json!({ "query": query.join(" "), "token_budget": budget, "tokenizer": tokenizer,
                        "order": order, "include_memories": rng.gen_bool(0.5) }),
            )
            .await;
        let out = r.ok(200);
        let prompt = out["prompt"].as_str().expect("prompt");
        let counted = tiktoken(tokenizer, prompt);
        assert!(
            counted <= budget,
            "{counted} tokens for a budget of {budget}"
        );
        assert_eq!(out["tokens_used"], counted);
        assert_eq!(out["token_budget"], budget);
        let items = out["items"].as_array().expect("items");
        if items.is_empty() {
            assert!(out["reason"].is_string(), "{out}");
        } else {
            packed_something += 1;
        }
    }
    assert!(packed_something > 20, "most budgets hold something");
    // A budget too small for anything: 200, no items, a reason.
    let r = app
        .post(
            "/v1/contexts/reconstruct",
            &t.key,
            json!({ "query": "database", "token_budget": 3 }),
        )
        .await;
    let out = r.ok(200);
    assert_eq!(out["items"], json!([]));
    assert_eq!(out["prompt"], "");
    assert!(out["reason"]
        .as_str()
        .expect("reason")
        .contains("too small"));
}

/// A context whose one long message the chunker must cut into overlapping chunks.
fn long_message_context() -> String {
    let prose: String = (0..120)
        .map(|i| format!("Step {i} of the migration moves table shard {i} to the new cluster and verifies its checksums. "))
        .collect();
    serde_json::to_string(&json!([
        { "role": "user", "content": "Describe the migration plan." },
        { "role": "assistant", "content": prose },
        { "role": "user", "content": "Thanks, and the rollback?" },
    ]))
    .expect("json")
}

#[tokio::test]
async fn overlapping_chunks_are_merged_not_repeated() {
    let app = with_model().await;
    let t = app.new_tenant("tenant-overlap").await;
    offload(&app, &t.key, "plan", &long_message_context(), "").await;
    let r = app
        .post(
            "/v1/contexts/reconstruct",
            &t.key,
            json!({ "query": "migration shard checksums cluster", "token_budget": 50_000, "order": "chronological" }),
        )
        .await;
    let out = r.ok(200);
    let prompt = out["prompt"].as_str().expect("prompt");
    for i in [0, 37, 119] {
        let sentence = format!("Step {i} of the migration moves table shard {i} ");
        assert_eq!(
            prompt.matches(&sentence).count(),
            1,
            "{sentence:?} in\n{prompt}"
        );
    }
    let spans: Vec<([u64; 2], [u64; 2])> = out["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["kind"] == "chunk")
        .map(|i| {
            let pair = |v: &Value| [v[0].as_u64().expect("n"), v[1].as_u64().expect("n")];
            (pair(&i["messages"]), pair(&i["chars"]))
        })
        .collect();
    for (x, a) in spans.iter().enumerate() {
        for b in &spans[x + 1..] {
            if a.0 == b.0 && a.0[0] == a.0[1] {
                assert!(
                    a.1[1] < b.1[0] || b.1[1] < a.1[0],
                    "{a:?} and {b:?} overlap"
                );
            }
        }
    }
}

#[tokio::test]
async fn chronological_order_reads_contexts_by_time_and_chunks_in_order() {
    let app = with_model().await;
    let t = app.new_tenant("tenant-chrono").await;
    offload(&app, &t.key, "older", &long_message_context(), "").await;
    offload(
        &app,
        &t.key,
        "newer",
        &corpus::generate(21, 2_000).messages_json,
        "",
    )
    .await;
    let r = app
        .post(
            "/v1/contexts/reconstruct",
            &t.key,
            json!({ "query": "migration database step", "token_budget": 4_000, "order": "chronological" }),
        )
        .await;
    let out = r.ok(200);
    let items = out["items"].as_array().expect("items");
    assert!(items.len() >= 3, "{out}");
    let rank = |i: &Value| {
        let ctx = if i["context_id"] == "older" { 0 } else { 1 };
        let kind = if i["kind"] == "summary" { 0 } else { 1 };
        (
            ctx,
            kind,
            i["messages"][0].as_u64().unwrap_or(0),
            i["chars"][0].as_u64().unwrap_or(0),
        )
    };
    for w in items.windows(2) {
        assert!(rank(&w[0]) <= rank(&w[1]), "{} before {}", w[0], w[1]);
    }
}

// ---------------------------------------------------------------------------------------------
// Writes: upsert, conflicts, limits, atomicity, quotas, expiry
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn put_upserts_and_post_of_an_existing_id_conflicts() {
    let app = with_model().await;
    let t = app.new_tenant("tenant-put").await;
    let first = r#"[{"role":"user","content":"The first version of the notes."}]"#;
    let second = corpus::generate(3, 1_500).messages_json;
    let put = |body: String| {
        app.call_raw(
            "PUT",
            "/v1/contexts/notes",
            Some(&t.key),
            Some(body.into_bytes()),
            Some("application/json"),
        )
    };
    let r = put(format!(r#"{{"messages":{first},"session_id":"s-1"}}"#)).await;
    let created = r.ok(201).clone();
    assert_eq!(created["chunk_count"], 1);
    let r = put(format!(r#"{{"messages":{second}}}"#)).await;
    let replaced = r.ok(200).clone();
    assert!(replaced["chunk_count"].as_i64().expect("n") > 1);
    assert_eq!(replaced["created_at"], created["created_at"]);
    assert_eq!(replaced["session_id"], Value::Null);
    let raw = app.get("/v1/contexts/notes?raw=true", &t.key).await;
    assert_eq!(raw.text, second);
    // Only the new chunks are searched.
    let s = app
        .post(
            "/v1/contexts/search",
            &t.key,
            json!({ "query": "first version notes", "mode": "text" }),
        )
        .await;
    for r in s.ok(200)["results"].as_array().expect("results") {
        for c in r["chunks"].as_array().expect("chunks") {
            assert!(!c["snippet"]
                .as_str()
                .expect("snippet")
                .contains("first version"));
        }
    }
    let dup = app
        .post(
            "/v1/contexts",
            &t.key,
            json!({ "context_id": "notes", "text": "again" }),
        )
        .await;
    dup.expect(409, "context_exists");
    let body_mismatch = put(r#"{"context_id":"other","text":"x"}"#.to_owned()).await;
    body_mismatch.expect(422, "invalid_value");
    assert_eq!(
        app.get("/v1/usage", &t.key).await.ok(200)["offloaded_context_count"],
        1
    );
    app.call("DELETE", "/v1/contexts/notes", Some(&t.key), None)
        .await
        .ok(204);
    app.get("/v1/contexts/notes", &t.key)
        .await
        .expect(404, "context_not_found");
    let u = app.get("/v1/usage", &t.key).await;
    assert_eq!(u.ok(200)["offloaded_context_count"], 0);
    assert_eq!(u.body["context_bytes"], 0);
}

#[tokio::test]
async fn a_context_over_the_size_limit_is_refused_with_413() {
    let app = TestApp::spawn_with(
        Limits {
            max_context_bytes: 64 * 1024,
            ..Limits::default()
        },
        None,
    )
    .await;
    let t = app.new_tenant("tenant-413").await;
    let big = json!([{ "role": "user", "content": "x".repeat(70 * 1024) }]);
    let r = app
        .post(
            "/v1/contexts",
            &t.key,
            json!({ "context_id": "big", "messages": big }),
        )
        .await;
    r.expect(413, "context_too_large");
    let fits = json!([{ "role": "user", "content": "x".repeat(60 * 1024) }]);
    app.post(
        "/v1/contexts",
        &t.key,
        json!({ "context_id": "fits", "messages": fits }),
    )
    .await
    .ok(201);
}

/// An OpenAI-style embeddings endpoint that answers its first `good` calls and fails after.
async fn flaky_embedder(good: usize) -> (Arc<dyn Embedder>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/v1/embeddings",
        post(move |Json(body): Json<Value>| {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) >= good {
                    return (StatusCode::BAD_GATEWAY, "upstream down").into_response();
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
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let embedder = HttpEmbedder::new(HttpEmbedderConfig {
        base_url: format!("http://{addr}/v1"),
        model: "stub-embedding".to_owned(),
        dim: 384,
        api_key: None,
        timeout: std::time::Duration::from_secs(10),
    })
    .expect("embedder");
    (Arc::new(embedder), calls)
}

#[tokio::test]
async fn an_embedder_failure_mid_way_leaves_nothing() {
    let (embedder, calls) = flaky_embedder(1).await;
    let app = TestApp::spawn_with(Limits::default(), Some(embedder)).await;
    let t = app.new_tenant("tenant-atomic").await;
    // Over 256 chunks: the second embedding call fails.
    let g = corpus::generate(31, 60_000);
    let body = format!(r#"{{"context_id":"half","messages":{}}}"#, g.messages_json);
    let r = app
        .call_raw(
            "POST",
            "/v1/contexts",
            Some(&t.key),
            Some(body.into_bytes()),
            Some("application/json"),
        )
        .await;
    r.expect(503, "embedding_unavailable");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    app.get("/v1/contexts/half", &t.key)
        .await
        .expect(404, "context_not_found");
    let u = app.get("/v1/usage", &t.key).await;
    assert_eq!(u.ok(200)["offloaded_context_count"], 0);
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM context_chunks")
        .fetch_one(app.store.pool())
        .await
        .expect("count");
    assert_eq!(chunks, 0);
}

#[tokio::test]
async fn a_context_over_the_quota_is_refused_before_anything_is_embedded() {
    let (embedder, calls) = flaky_embedder(usize::MAX).await;
    let app = TestApp::spawn_with(Limits::default(), Some(embedder)).await;
    let project = app.create_project("quota project").await;
    let t = app
        .new_tenant_in(
            &project,
            "tenant-quota",
            json!({ "max_storage_bytes": 30_000 }),
        )
        .await;
    let small = r#"[{"role":"user","content":"A short note about the cache."}]"#;
    offload(&app, &t.key, "small", small, "").await;
    let used = calls.load(Ordering::SeqCst);
    let g = corpus::generate(41, 10_000);
    let body = format!(r#"{{"context_id":"large","messages":{}}}"#, g.messages_json);
    let r = app
        .call_raw(
            "POST",
            "/v1/contexts",
            Some(&t.key),
            Some(body.into_bytes()),
            Some("application/json"),
        )
        .await;
    r.expect(403, "quota_exceeded");
    assert_eq!(calls.load(Ordering::SeqCst), used, "nothing was embedded");
    let audit = app
        .get("/v1/audit?action=context.create&outcome=denied", &t.key)
        .await;
    assert_eq!(audit.ok(200)["records"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        app.get("/v1/usage", &t.key).await.ok(200)["offloaded_context_count"],
        1
    );
}

#[tokio::test]
async fn expired_contexts_never_appear_and_the_cleanup_removes_them() {
    let app = with_model().await;
    let t = app.new_tenant("tenant-expiry").await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
    let text = r#"[{"role":"user","content":"The ephemeral deployment token rotates hourly."}]"#;
    offload(
        &app,
        &t.key,
        "ephemeral",
        text,
        &format!(r#","expires_at":"{soon}""#),
    )
    .await;
    offload(&app, &t.key, "lasting", text, "").await;
    tokio::time::sleep(std::time::Duration::from_millis(3300)).await;
    app.get("/v1/contexts/ephemeral", &t.key)
        .await
        .expect(404, "context_not_found");
    app.get("/v1/contexts/ephemeral?raw=true", &t.key)
        .await
        .expect(404, "context_not_found");
    let page = app.get("/v1/contexts", &t.key).await;
    assert_eq!(page.ok(200)["contexts"].as_array().map(Vec::len), Some(1));
    for body in [
        json!({ "query": "ephemeral deployment token", "mode": "text" }),
        json!({ "query": "ephemeral deployment token", "mode": "vector" }),
        json!({ "query": "ephemeral deployment token" }),
    ] {
        let s = app.post("/v1/contexts/search", &t.key, body).await;
        for r in s.ok(200)["results"].as_array().expect("results") {
            assert_eq!(r["context_id"], "lasting");
        }
    }
    let rebuilt = app
        .post(
            "/v1/contexts/reconstruct",
            &t.key,
            json!({ "query": "ephemeral token", "token_budget": 2000 }),
        )
        .await;
    assert!(!rebuilt.text.contains("\"ephemeral\""), "{}", rebuilt.text);
    let report = app.admin("POST", "/v1/admin/maintenance", None).await;
    assert_eq!(
        report.ok(200)["expired_contexts_removed"],
        1,
        "{}",
        report.text
    );
    let u = app.get("/v1/usage", &t.key).await;
    assert_eq!(u.ok(200)["offloaded_context_count"], 1);
    // The id is free again.
    offload(&app, &t.key, "ephemeral", text, "").await;
}

// ---------------------------------------------------------------------------------------------
// Without an embedder; with a chat model
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn without_an_embedder_contexts_are_searched_by_text_only() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-noembed").await;
    let c = offload(
        &app,
        &t.key,
        "c1",
        &corpus::generate(51, 1_500).messages_json,
        "",
    )
    .await;
    assert_eq!(c["has_embedding"], false);
    assert_eq!(c["summary"], Value::Null);
    let s = app
        .post(
            "/v1/contexts/search",
            &t.key,
            json!({ "query": "database" }),
        )
        .await;
    assert_eq!(s.ok(200)["mode"], "text");
    let v = app
        .post(
            "/v1/contexts/search",
            &t.key,
            json!({ "query": "database", "mode": "vector" }),
        )
        .await;
    v.expect(422, "invalid_value");
    assert!(v.text.contains("text"), "{}", v.text);
    let r = app
        .post(
            "/v1/contexts/reconstruct",
            &t.key,
            json!({ "query": "database", "token_budget": 500 }),
        )
        .await;
    assert!(tiktoken("o200k_base", r.ok(200)["prompt"].as_str().expect("prompt")) <= 500);
}

/// An OpenAI-style chat endpoint: answers `summary` (or HTTP 500 when `None`), counting calls.
async fn chat_stub(summary: Option<&'static str>) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                assert_eq!(body["model"], "stub-chat");
                assert!(body["messages"][1]["content"].as_str().is_some_and(|t| t.len() > 100));
                match summary {
                    Some(s) => Json(json!({ "choices": [{ "message": { "role": "assistant", "content": s } }] })).into_response(),
                    None => (StatusCode::INTERNAL_SERVER_ERROR, "model overloaded").into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), calls)
}

async fn app_with_chat(url: String) -> TestApp {
    let llm = LlmSummarizer::new(LlmConfig {
        base_url: url,
        model: "stub-chat".to_owned(),
        api_key: None,
        timeout: std::time::Duration::from_secs(5),
        max_input_tokens: 2_000,
    })
    .expect("summarizer");
    TestApp::spawn_state(|store| {
        AppState::new(
            store,
            Some(model()),
            Limits::default(),
            AdminKey::configured(ADMIN_KEY),
        )
        .with_summarizer(llm)
    })
    .await
}

#[tokio::test]
async fn a_configured_chat_model_writes_the_summary() {
    let (url, calls) = chat_stub(Some(
        "The user and the assistant planned a database migration.",
    ))
    .await;
    let app = app_with_chat(url).await;
    let t = app.new_tenant("tenant-llm").await;
    // Over the model's input bound: it gets a sample of the sentences.
    let c = offload(
        &app,
        &t.key,
        "c1",
        &corpus::generate(61, 6_000).messages_json,
        "",
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(c["summary_method"], "llm:stub-chat");
    assert_eq!(
        c["summary"],
        "The user and the assistant planned a database migration."
    );
    assert_eq!(c["has_embedding"], true);
}

#[tokio::test]
async fn a_failing_chat_model_falls_back_to_the_extractive_summary() {
    let (url, calls) = chat_stub(None).await;
    let app = app_with_chat(url).await;
    let t = app.new_tenant("tenant-llm-down").await;
    let c = offload(
        &app,
        &t.key,
        "c1",
        &corpus::generate(62, 1_500).messages_json,
        "",
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(c["summary_method"], "extractive");
    assert!(c["summary"].as_str().is_some_and(|s| !s.is_empty()));
}

// ---------------------------------------------------------------------------------------------
// Isolation and access
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn another_tenants_contexts_chunks_and_reconstructions_never_appear() {
    let app = with_model().await;
    let project = app.create_project("shared").await;
    let a = app.new_tenant_in(&project, "tenant-a", json!({})).await;
    let b = app.new_tenant_in(&project, "tenant-b", json!({})).await;
    // The same transcript in both, and one only A has.
    let shared = corpus::generate(71, 1_500).messages_json;
    offload(&app, &a.key, "a-shared", &shared, r#","session_id":"s""#).await;
    offload(&app, &b.key, "b-shared", &shared, r#","session_id":"s""#).await;
    let secret = corpus::generate_with_fact(72, 1_500, FACT, 0.5).messages_json;
    offload(&app, &a.key, "a-secret", &secret, "").await;
    let a_search = app
        .post(
            "/v1/contexts/search",
            &a.key,
            json!({ "query": "Nightingale launch code", "mode": "text" }),
        )
        .await;
    assert_eq!(a_search.ok(200)["results"][0]["context_id"], "a-secret");

    for body in [
        json!({ "query": "Nightingale launch code", "mode": "text", "k": 100 }),
        json!({ "query": "Nightingale launch code", "mode": "vector", "k": 100 }),
        json!({ "query": "Nightingale launch code", "mode": "hybrid", "k": 100 }),
        json!({ "query": "database", "k": 100, "filter": { "session_id": "s" } }),
    ] {
        let s = app.post("/v1/contexts/search", &b.key, body.clone()).await;
        for r in s.ok(200)["results"].as_array().expect("results") {
            assert_eq!(r["context_id"], "b-shared", "{body}: {}", s.text);
        }
        assert!(!s.text.contains("7-alpha-tango-93"), "{body}");
    }
    for order in ["relevance", "chronological"] {
        let r = app
            .post(
                "/v1/contexts/reconstruct",
                &b.key,
                json!({ "query": "Nightingale launch code database", "token_budget": 100_000, "order": order, "include_memories": true }),
            )
            .await;
        let out = r.ok(200);
        assert!(
            !r.text.contains("a-secret") && !r.text.contains("a-shared"),
            "{}",
            r.text
        );
        assert!(!out["prompt"]
            .as_str()
            .expect("prompt")
            .contains("7-alpha-tango-93"));
    }
    let page = app.get("/v1/contexts?limit=500", &b.key).await;
    assert_eq!(page.ok(200)["contexts"].as_array().map(Vec::len), Some(1));
    for path in ["/v1/contexts/a-secret", "/v1/contexts/a-secret?raw=true"] {
        app.get(path, &b.key).await.expect(404, "context_not_found");
    }
}

#[tokio::test]
async fn memories_in_a_reconstruction_follow_the_keys_memory_scope_and_policies() {
    let app = with_model().await;
    let t = app.new_tenant("tenant-mixed").await;
    offload(
        &app,
        &t.key,
        "c1",
        &corpus::generate(81, 1_500).messages_json,
        "",
    )
    .await;
    for id in ["open-1", "locked-1"] {
        app.post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": id, "content": { "text": "The database failover drill is on Friday." } }),
        )
        .await
        .ok(201);
    }
    let (_, contexts_only) = app.create_key(&t.tenant_id, &["contexts:read"], None).await;
    let body = json!({ "query": "database failover drill", "token_budget": 5000, "include_memories": true });
    app.post("/v1/contexts/reconstruct", &contexts_only, body.clone())
        .await
        .expect(403, "insufficient_scope");
    let mut without = body.clone();
    without["include_memories"] = json!(false);
    app.post("/v1/contexts/reconstruct", &contexts_only, without)
        .await
        .ok(200);

    let (key_id, reader) = app
        .create_key(&t.tenant_id, &["contexts:read", "memories:read"], None)
        .await;
    app.post(
        "/v1/policies",
        &t.key,
        json!({ "name": "open memories", "resource_type": "memories", "resource_pattern": "open-*",
                "permissions": ["read"], "api_key_id": key_id }),
    )
    .await
    .ok(201);
    let r = app.post("/v1/contexts/reconstruct", &reader, body).await;
    let out = r.ok(200);
    let memories: Vec<&str> = out["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["memory_id"].as_str())
        .collect();
    assert_eq!(memories, ["open-1"], "{out}");
    assert!(!out["prompt"].as_str().expect("prompt").contains("locked-1"));
}
