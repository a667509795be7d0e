//! Bounds on what one request may cost: the size of `contains` filters, the statement timeout of
//! every tenant transaction, the size of relationship metadata and policy conditions, the edges
//! of a graph answer, and pages of policies.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use mnemo_server::Limits;

use crate::harness::{query, vector, TestApp};

/// A memory whose content is an array of 120,000 zeros and a one (240 KB, within the content
/// limit): `content @> [1, 1, …]` scans it to the end once per element of the filter, about 5 ms
/// each.
async fn store_long_array(app: &TestApp, key: &str) {
    let mut content = vec![0; 120_000];
    content.push(1);
    app.post(
        "/v1/memories",
        key,
        json!({ "memory_id": "zeros", "content": content, "embedding": vector(1) }),
    )
    .await
    .ok(201);
}

fn list_containing(filter: &Value) -> String {
    format!(
        "/v1/memories{}",
        query(&[("contains", &filter.to_string())])
    )
}

#[tokio::test]
async fn contains_filters_over_the_size_bounds_are_refused_with_422() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-contains").await;
    store_long_array(&app, &t.key).await;

    // The attack: 500 filter elements were 1.8 s of database time per such memory.
    let ones = json!(vec![1; 500]);
    let r = app
        .post(
            "/v1/memories/search",
            &t.key,
            json!({ "vector": vector(1), "filter": { "contains": ones } }),
        )
        .await;
    r.expect(422, "invalid_value");
    assert_eq!(r.body["error"]["details"]["field"], "contains");
    app.get(&list_containing(&ones), &t.key)
        .await
        .expect(422, "invalid_value");
    // 65 values (the array and 64 elements) is one over the bound.
    let over = json!(vec![1; 64]);
    app.get(&list_containing(&over), &t.key)
        .await
        .expect(422, "invalid_value");
    // Few values but many bytes.
    let wide = json!({ "k": "x".repeat(9000) });
    app.post(
        "/v1/memories/search",
        &t.key,
        json!({ "vector": vector(1), "filter": { "contains": wide } }),
    )
    .await
    .expect(422, "invalid_value");

    // Within the bounds the filter works as before.
    let fits = app.get(&list_containing(&json!(vec![1; 63])), &t.key).await;
    let found: Vec<&str> = fits.ok(200)["memories"]
        .as_array()
        .expect("memories")
        .iter()
        .filter_map(|m| m["memory_id"].as_str())
        .collect();
    assert_eq!(found, ["zeros"]);
}

#[tokio::test]
async fn a_statement_over_the_timeout_answers_503_statement_timeout() {
    let app = TestApp::spawn_with(
        Limits {
            statement_timeout: Some(Duration::from_millis(500)),
            // Filters big enough for a statement of several seconds.
            max_filter_values: 100_000,
            max_filter_bytes: 1 << 20,
            ..Limits::default()
        },
        None,
    )
    .await;
    let t = app.new_tenant("tenant-timeout").await;
    store_long_array(&app, &t.key).await;

    // 2,000 elements: about 5 s of containment checks without a timeout.
    let slow = list_containing(&json!(vec![1; 2000]));
    let r = app.get(&slow, &t.key).await;
    r.expect(503, "statement_timeout");
    let r = app
        .post(
            "/v1/memories/search",
            &t.key,
            json!({ "vector": vector(1), "filter": { "contains": vec![1; 2000] } }),
        )
        .await;
    r.expect(503, "statement_timeout");

    // Audited, and the connection serves the next request.
    let id = r.request_id.clone().expect("x-request-id");
    let audit = app.get(&format!("/v1/audit?request_id={id}"), &t.key).await;
    let rec = audit.ok(200)["records"][0].clone();
    assert_eq!(rec["action"], "memory.search", "{rec}");
    assert_eq!(rec["status_code"], 503, "{rec}");
    assert_eq!(rec["details"]["code"], "statement_timeout", "{rec}");
    app.get("/v1/memories/zeros", &t.key).await.ok(200);
}

#[tokio::test]
async fn relationship_metadata_and_policy_conditions_are_bounded_like_memory_metadata() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-meta").await;
    for id in ["a", "b"] {
        app.create_memory(&t.key, id, json!({ "id": id })).await;
    }
    let big = json!({ "m": "x".repeat(70_000) });
    let r = app
        .post(
            "/v1/relationships",
            &t.key,
            json!({ "source": "a", "target": "b", "relationship_type": "r", "metadata": big }),
        )
        .await;
    r.expect(422, "invalid_value");
    assert_eq!(r.body["error"]["details"]["field"], "metadata");
    let r = app
        .post(
            "/v1/policies",
            &t.key,
            json!({ "name": "p", "resource_type": "contexts", "permissions": ["read"],
                    "conditions": big }),
        )
        .await;
    r.expect(422, "invalid_value");
    assert_eq!(r.body["error"]["details"]["field"], "conditions");
    // Just under the bound is fine.
    let fits = json!({ "m": "x".repeat(60_000) });
    app.post(
        "/v1/relationships",
        &t.key,
        json!({ "source": "a", "target": "b", "relationship_type": "r", "metadata": fits }),
    )
    .await
    .ok(201);
}

#[tokio::test]
async fn a_graph_answer_holds_at_most_max_graph_edges_strongest_first() {
    let app = TestApp::spawn_with(
        Limits {
            max_graph_edges: 3,
            ..Limits::default()
        },
        None,
    )
    .await;
    let t = app.new_tenant("tenant-edges").await;
    let ids = ["a", "b", "c", "d"];
    for id in ids {
        app.create_memory(&t.key, id, json!({ "id": id })).await;
    }
    // Six edges, weights 0.1 … 0.6.
    let mut w = 0.0;
    for (i, s) in ids.iter().enumerate() {
        for d in &ids[i + 1..] {
            w += 0.1;
            app.link(&t.key, s, d, "r", w).await;
        }
    }
    let g = app.get("/v1/memories/a/graph?depth=2", &t.key).await;
    let g = g.ok(200);
    assert_eq!(g["nodes"].as_array().map(Vec::len), Some(4));
    let weights: Vec<f64> = g["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e["weight"].as_f64())
        .collect();
    assert_eq!(weights.len(), 3, "{weights:?}");
    assert!(
        weights.iter().all(|w| *w > 0.35),
        "strongest first: {weights:?}"
    );
}

#[tokio::test]
async fn policies_are_listed_in_pages_with_a_cursor() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-policy-pages").await;
    for i in 0..5 {
        app.post(
            "/v1/policies",
            &t.key,
            json!({ "name": format!("p{i}"), "resource_type": "contexts", "permissions": ["read"] }),
        )
        .await
        .ok(201);
    }
    let mut names = Vec::new();
    let mut pages = 0;
    let mut path = "/v1/policies?limit=2".to_owned();
    loop {
        let page = app.get(&path, &t.key).await;
        let page = page.ok(200).clone();
        pages += 1;
        names.extend(
            page["policies"]
                .as_array()
                .expect("policies")
                .iter()
                .filter_map(|p| p["name"].as_str().map(str::to_owned)),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/policies?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        names,
        ["p0", "p1", "p2", "p3", "p4"],
        "oldest first, no gaps or repeats"
    );
    let all = app.get("/v1/policies", &t.key).await;
    assert_eq!(all.ok(200)["policies"].as_array().map(Vec::len), Some(5));
    assert!(all.body["next_cursor"].is_null());
}

#[tokio::test]
async fn a_tenant_holds_at_most_max_policies() {
    let app = TestApp::spawn_with(
        Limits {
            max_policies: 2,
            ..Limits::default()
        },
        None,
    )
    .await;
    let t = app.new_tenant("tenant-policy-cap").await;
    let create = |i: usize| json!({ "name": format!("p{i}"), "resource_type": "contexts", "permissions": ["read"] });
    app.post("/v1/policies", &t.key, create(0)).await.ok(201);
    app.post("/v1/policies", &t.key, create(1)).await.ok(201);
    app.post("/v1/policies", &t.key, create(2))
        .await
        .expect(403, "quota_exceeded");
    let listed = app.get("/v1/policies", &t.key).await;
    let names: BTreeSet<&str> = listed.ok(200)["policies"]
        .as_array()
        .expect("policies")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["p0", "p1"]));
}
