//! Memories: create (one, a batch of 1,000), get, list with cursor pagination and filters, patch,
//! upsert, delete, expiry, and server-side embedding with the real model.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use mnemo_server::Limits;

use crate::harness::{query, vector, TestApp};

fn ids(page: &Value) -> Vec<String> {
    page["memories"]
        .as_array()
        .expect("memories")
        .iter()
        .map(|m| m["memory_id"].as_str().expect("memory_id").to_owned())
        .collect()
}

#[tokio::test]
async fn create_get_patch_upsert_delete_round_trip() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-crud").await;

    // A generated id, defaults, no vector (no embedder configured).
    let r = app
        .post(
            "/v1/memories",
            &t.key,
            json!({ "content": { "text": "generated" } }),
        )
        .await;
    let generated = r.ok(201).clone();
    let id = generated["memory_id"].as_str().expect("id");
    assert!(id.starts_with("mem_"), "{id}");
    assert_eq!(generated["relevance_score"], 0.5);
    assert_eq!(generated["has_embedding"], false);
    assert_eq!(generated["tags"], json!([]));
    assert_eq!(generated["metadata"], json!({}));

    let v = vector(9);
    let created = app
        .post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": "task-42", "content": { "task": "ship", "steps": [1, 2] },
                    "relevance_score": 0.75, "tags": ["work", "q3", "work"],
                    "metadata": { "source": "chat" }, "embedding": v }),
        )
        .await;
    let created = created.ok(201).clone();
    assert_eq!(created["tags"], json!(["work", "q3"]), "duplicates dropped");
    assert_eq!(created["has_embedding"], true);
    assert_eq!(created["embedding_model"], "client");
    assert!(created.get("embedding").is_none());

    let got = app.get("/v1/memories/task-42", &t.key).await;
    assert_eq!(got.ok(200), &created);
    let with_vec = app
        .get("/v1/memories/task-42?include_embedding=true", &t.key)
        .await;
    let stored: Vec<f32> =
        serde_json::from_value(with_vec.ok(200)["embedding"].clone()).expect("vector");
    assert_eq!(stored, v);

    // PATCH changes only what it names; null clears the vector.
    let patched = app
        .call(
            "PATCH",
            "/v1/memories/task-42",
            Some(&t.key),
            Some(json!({ "relevance_score": 0.9, "tags": ["done"], "embedding": null })),
        )
        .await;
    let patched = patched.ok(200).clone();
    assert_eq!(patched["relevance_score"], 0.9);
    assert_eq!(patched["tags"], json!(["done"]));
    assert_eq!(patched["content"], created["content"]);
    assert_eq!(patched["metadata"], created["metadata"]);
    assert_eq!(patched["has_embedding"], false);
    assert_eq!(patched["embedding_model"], Value::Null);
    app.call(
        "PATCH",
        "/v1/memories/nope",
        Some(&t.key),
        Some(json!({ "relevance_score": 0.1 })),
    )
    .await
    .expect(404, "memory_not_found");

    // PUT creates (201), then replaces (200) the whole memory.
    let put = app
        .call(
            "PUT",
            "/v1/memories/pref-1",
            Some(&t.key),
            Some(json!({ "content": { "likes": "tea" }, "tags": ["a"] })),
        )
        .await;
    assert_eq!(put.ok(201)["memory_id"], "pref-1");
    let put = app
        .call(
            "PUT",
            "/v1/memories/pref-1",
            Some(&t.key),
            Some(json!({ "memory_id": "pref-1", "content": { "likes": "coffee" }, "relevance_score": 0.2 })),
        )
        .await;
    let replaced = put.ok(200).clone();
    assert_eq!(replaced["content"], json!({ "likes": "coffee" }));
    assert_eq!(
        replaced["tags"],
        json!([]),
        "PUT replaces, absent fields reset"
    );
    assert_eq!(replaced["relevance_score"], 0.2);
    assert_eq!(app.memory_count(&t.key).await, 3);

    // A second create with the same id is a conflict, not an overwrite.
    app.post(
        "/v1/memories",
        &t.key,
        json!({ "memory_id": "pref-1", "content": {"x": 1} }),
    )
    .await
    .expect(409, "memory_exists");
    assert_eq!(
        app.get("/v1/memories/pref-1", &t.key).await.body["content"],
        json!({ "likes": "coffee" })
    );

    let del = app
        .call("DELETE", "/v1/memories/pref-1", Some(&t.key), None)
        .await;
    assert_eq!(del.status, 204, "{}", del.text);
    assert!(del.text.is_empty());
    app.get("/v1/memories/pref-1", &t.key)
        .await
        .expect(404, "memory_not_found");
    app.call("DELETE", "/v1/memories/pref-1", Some(&t.key), None)
        .await
        .expect(404, "memory_not_found");
    assert_eq!(app.memory_count(&t.key).await, 2);
}

#[tokio::test]
async fn list_pages_with_a_cursor_newest_first_without_gaps_or_repeats() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-pages").await;
    // Same created_at for all (one batch, one transaction): the id breaks ties.
    let batch: Vec<Value> = (0..7)
        .map(|i| json!({ "memory_id": format!("b-{i}"), "content": { "i": i } }))
        .collect();
    app.post("/v1/memories/batch", &t.key, json!({ "memories": batch }))
        .await
        .ok(201);
    for i in 0..4 {
        app.create_memory(&t.key, &format!("s-{i}"), json!({ "i": i }))
            .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = "/v1/memories?limit=3".to_owned();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.get(&path, &t.key).await;
        let page = page.ok(200).clone();
        let got = ids(&page);
        assert!(got.len() <= 3);
        seen.extend(got);
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 4);
    assert_eq!(seen.len(), 11);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 11, "{seen:?}");
    // Newest first: the single creates after the batch.
    assert_eq!(&seen[..4], ["s-3", "s-2", "s-1", "s-0"]);
    // The default page holds everything here; an exact page has no cursor.
    let all = app.get("/v1/memories", &t.key).await;
    assert_eq!(ids(all.ok(200)), seen);
    let exact = app.get("/v1/memories?limit=11", &t.key).await;
    assert_eq!(exact.ok(200)["next_cursor"], Value::Null);
}

#[tokio::test]
async fn list_filters_by_containment_tags_relevance_and_time() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-filters").await;
    let specs = [
        (
            "n1",
            json!({ "kind": "note", "topic": { "lang": "rust" } }),
            0.1,
            vec!["a", "b"],
        ),
        (
            "n2",
            json!({ "kind": "note", "topic": { "lang": "go" } }),
            0.5,
            vec!["a"],
        ),
        ("t1", json!({ "kind": "todo" }), 0.9, vec!["b", "c"]),
    ];
    let mut created_at = Vec::new();
    for (id, content, relevance, tags) in &specs {
        let r = app
            .post(
                "/v1/memories",
                &t.key,
                json!({ "memory_id": id, "content": content, "relevance_score": relevance, "tags": tags }),
            )
            .await;
        created_at.push(
            r.ok(201)["created_at"]
                .as_str()
                .expect("created_at")
                .to_owned(),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let list = |q: String| {
        let app = &app;
        let key = t.key.clone();
        async move {
            let r = app.get(&format!("/v1/memories{q}"), &key).await;
            let mut v = ids(r.ok(200));
            v.sort();
            v
        }
    };
    assert_eq!(
        list(query(&[("contains", r#"{"kind":"note"}"#)])).await,
        ["n1", "n2"]
    );
    assert_eq!(
        list(query(&[("contains", r#"{"topic":{"lang":"rust"}}"#)])).await,
        ["n1"]
    );
    assert!(list(query(&[("contains", r#"{"kind":"other"}"#)]))
        .await
        .is_empty());
    assert_eq!(list("?tags=a,b".into()).await, ["n1"]);
    assert_eq!(list("?tags=b".into()).await, ["n1", "t1"]);
    assert_eq!(list("?any_tags=a,c".into()).await, ["n1", "n2", "t1"]);
    assert_eq!(list("?any_tags=c,zzz".into()).await, ["t1"]);
    assert_eq!(list("?min_relevance=0.5".into()).await, ["n2", "t1"]);
    assert_eq!(list("?max_relevance=0.5".into()).await, ["n1", "n2"]);
    assert_eq!(
        list("?min_relevance=0.2&max_relevance=0.8".into()).await,
        ["n2"]
    );
    assert_eq!(
        list(query(&[("created_after", &created_at[1])])).await,
        ["n2", "t1"]
    );
    assert_eq!(
        list(query(&[("created_before", &created_at[1])])).await,
        ["n1"]
    );
    assert_eq!(
        list(query(&[
            ("created_after", &created_at[0]),
            ("created_before", &created_at[2])
        ]))
        .await,
        ["n1", "n2"]
    );
    assert_eq!(
        list(query(&[
            ("contains", r#"{"kind":"note"}"#),
            ("tags", "a"),
            ("min_relevance", "0.3")
        ]))
        .await,
        ["n2"]
    );
}

#[tokio::test]
async fn an_expired_memory_disappears_from_every_read() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-ttl").await;
    let expires: DateTime<Utc> = Utc::now() + chrono::Duration::milliseconds(4000);
    app.post(
        "/v1/memories",
        &t.key,
        json!({ "memory_id": "short", "content": { "t": 1 }, "expires_at": expires }),
    )
    .await
    .ok(201);
    app.create_memory(&t.key, "long", json!({ "t": 2 })).await;
    app.post(
        "/v1/relationships",
        &t.key,
        json!({ "source": "long", "target": "short", "relationship_type": "related_to" }),
    )
    .await
    .ok(201);
    let got = app.get("/v1/memories/short", &t.key).await;
    assert!(got.ok(200)["expires_at"].is_string());
    assert_eq!(ids(app.get("/v1/memories", &t.key).await.ok(200)).len(), 2);

    tokio::time::sleep(Duration::from_millis(4300)).await;
    app.get("/v1/memories/short", &t.key)
        .await
        .expect(404, "memory_not_found");
    assert_eq!(ids(app.get("/v1/memories", &t.key).await.ok(200)), ["long"]);
    app.call(
        "PATCH",
        "/v1/memories/short",
        Some(&t.key),
        Some(json!({ "relevance_score": 1 })),
    )
    .await
    .expect(404, "memory_not_found");
    let n = app.get("/v1/memories/long/neighbours", &t.key).await;
    assert_eq!(n.ok(200)["relationships"], json!([]));
    let g = app.get("/v1/memories/long/graph", &t.key).await;
    assert_eq!(g.ok(200)["nodes"].as_array().map(Vec::len), Some(1));
    let usage = app.get("/v1/usage", &t.key).await;
    assert_eq!(usage.ok(200)["active_memories"], 1);
    // PATCH can clear an expiry before it passes.
    let soon = Utc::now() + chrono::Duration::hours(1);
    app.post(
        "/v1/memories",
        &t.key,
        json!({ "memory_id": "kept", "content": { "t": 3 }, "expires_at": soon }),
    )
    .await
    .ok(201);
    let cleared = app
        .call(
            "PATCH",
            "/v1/memories/kept",
            Some(&t.key),
            Some(json!({ "expires_at": null })),
        )
        .await;
    assert_eq!(cleared.ok(200)["expires_at"], Value::Null);
}

#[tokio::test]
async fn a_batch_of_1000_is_stored_at_once() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-batch").await;
    let batch: Vec<Value> = (0..1000u32)
        .map(|i| {
            let mut m = json!({ "memory_id": format!("bulk-{i:04}"), "content": { "n": i, "text": format!("item {i}") },
                                "tags": ["bulk"] });
            if i % 2 == 0 {
                m["embedding"] = json!(vector(i));
            }
            m
        })
        .collect();
    let r = app
        .post("/v1/memories/batch", &t.key, json!({ "memories": batch }))
        .await;
    let out = r.ok(201)["memories"].as_array().expect("memories").clone();
    assert_eq!(out.len(), 1000);
    assert_eq!(
        out.iter().filter(|m| m["has_embedding"] == true).count(),
        500
    );
    assert_eq!(app.memory_count(&t.key).await, 1000);
    let got = app
        .get("/v1/memories/bulk-0998?include_embedding=true", &t.key)
        .await;
    let v: Vec<f32> = serde_json::from_value(got.ok(200)["embedding"].clone()).expect("vector");
    assert_eq!(v, vector(998));
    let page = app.get("/v1/memories?tags=bulk&limit=500", &t.key).await;
    assert_eq!(ids(page.ok(200)).len(), 500);
    assert!(page.body["next_cursor"].is_string());
}

#[tokio::test]
async fn the_server_embeds_content_when_no_vector_is_sent() {
    let dir = std::env::var("MNEMO_MODEL_DIR")
        .expect("MNEMO_MODEL_DIR is not set: eval \"$(bash scripts/env.sh)\" provides it");
    let model = tokio::task::spawn_blocking(move || mnemo_embed::MiniLm::load(Path::new(&dir)))
        .await
        .expect("join")
        .expect("load all-MiniLM-L6-v2");
    let app = TestApp::spawn_with(Limits::default(), Some(Arc::new(model))).await;
    let t = app.new_tenant("tenant-embed").await;

    let r = app
        .post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": "cat", "content": { "text": "The cat sat on the mat." } }),
        )
        .await;
    let m = r.ok(201);
    assert_eq!(m["has_embedding"], true);
    assert_eq!(m["embedding_model"], mnemo_embed::minilm::MODEL_NAME);
    let got = app
        .get("/v1/memories/cat?include_embedding=true", &t.key)
        .await;
    let v: Vec<f32> = serde_json::from_value(got.ok(200)["embedding"].clone()).expect("vector");
    assert_eq!(v.len(), 384);
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3, "norm {norm}");

    // A client vector is kept as sent; a batch is embedded too; PATCH of content re-embeds.
    let mine = app
        .post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": "mine", "content": { "text": "x" }, "embedding": vector(4) }),
        )
        .await;
    assert_eq!(mine.ok(201)["embedding_model"], "client");
    let batch = app
        .post(
            "/v1/memories/batch",
            &t.key,
            json!({ "memories": [{ "memory_id": "dog", "content": { "text": "A dog barked." } },
                                 { "memory_id": "sun", "content": "The sun is bright." }] }),
        )
        .await;
    for m in batch.ok(201)["memories"].as_array().expect("memories") {
        assert_eq!(m["has_embedding"], true, "{m}");
    }
    let patched = app
        .call(
            "PATCH",
            "/v1/memories/cat",
            Some(&t.key),
            Some(json!({ "content": { "text": "Quarterly revenue grew." } })),
        )
        .await;
    assert_eq!(patched.ok(200)["has_embedding"], true);
    let after = app
        .get("/v1/memories/cat?include_embedding=true", &t.key)
        .await;
    let w: Vec<f32> = serde_json::from_value(after.ok(200)["embedding"].clone()).expect("vector");
    assert_ne!(v, w, "new content, new vector");
    let ready = app.call("GET", "/readyz", None, None).await;
    assert_eq!(ready.ok(200)["embedder"], mnemo_embed::minilm::MODEL_NAME);
}

/// JSON numbers at the edges of f64 are stored as PostgreSQL numerics and must read back as the
/// same numbers (they once made every later read of the memory a 500).
#[tokio::test]
async fn extreme_json_numbers_read_back_unchanged() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-numbers").await;
    let numbers = json!([
        f64::MAX,
        f64::MIN,
        1.7976931348623155e308,
        -2.2250738585072014e-308,
        5e-324,
        1e300,
        123456789012345680000.0,
        -0.0,
        1.719255213082414e-193
    ]);
    let r = app
        .post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": "edges", "content": { "n": numbers }, "metadata": { "n": numbers } }),
        )
        .await;
    let created = r.ok(201).clone();
    assert_eq!(created["content"]["n"], numbers);
    assert_eq!(created["metadata"]["n"], numbers);
    let got = app.get("/v1/memories/edges", &t.key).await;
    assert_eq!(got.ok(200)["content"]["n"], numbers);
    assert_eq!(
        ids(app.get("/v1/memories", &t.key).await.ok(200)),
        ["edges"]
    );
    app.create_memory(&t.key, "other", json!({ "x": 1 })).await;
    let rel = app
        .post(
            "/v1/relationships",
            &t.key,
            json!({ "source": "edges", "target": "other", "relationship_type": "r", "metadata": { "n": numbers } }),
        )
        .await;
    assert_eq!(rel.ok(201)["metadata"]["n"], numbers);
    let g = app.get("/v1/memories/other/graph", &t.key).await;
    assert_eq!(g.ok(200)["nodes"].as_array().map(Vec::len), Some(2));
    let p = app
        .post(
            "/v1/policies",
            &t.key,
            json!({ "name": "n", "resource_type": "contexts", "permissions": ["read"], "conditions": { "n": numbers } }),
        )
        .await;
    assert_eq!(p.ok(201)["conditions"]["n"], numbers);
    let project = app
        .admin(
            "POST",
            "/v1/admin/projects",
            Some(json!({ "name": "numbers", "owner_id": "o", "settings": { "n": numbers } })),
        )
        .await;
    assert_eq!(project.ok(201)["settings"]["n"], numbers);
    app.admin("GET", "/v1/admin/projects", None).await.ok(200);
}

#[tokio::test]
async fn an_expired_memory_id_can_be_used_again() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-reuse").await;
    for id in ["posted", "put"] {
        let soon: DateTime<Utc> = Utc::now() + chrono::Duration::milliseconds(800);
        app.post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": id, "content": { "v": "old" }, "expires_at": soon }),
        )
        .await
        .ok(201);
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Gone for reads, so gone for writes too: a create is a create, not a conflict or a replace.
    let created = app
        .post(
            "/v1/memories",
            &t.key,
            json!({ "memory_id": "posted", "content": { "v": "new" } }),
        )
        .await;
    assert_eq!(created.ok(201)["content"], json!({ "v": "new" }));
    let put = app
        .call(
            "PUT",
            "/v1/memories/put",
            Some(&t.key),
            Some(json!({ "content": { "v": "new" } })),
        )
        .await;
    assert_eq!(put.ok(201)["content"], json!({ "v": "new" }));
    assert_eq!(app.memory_count(&t.key).await, 2);
}
