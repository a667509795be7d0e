//! The knowledge graph: relationships, neighbours, traversal that ends on cycles and passes only
//! through live memories the key may read.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use uuid::Uuid;

use mnemo_store::policies::Rules;
use mnemo_store::relationships::{self, Direction, Walk};
use mnemo_store::TenantScope;

use crate::harness::TestApp;

fn depths(graph: &Value) -> BTreeMap<String, i64> {
    graph["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["memory"]["memory_id"]
                    .as_str()
                    .expect("memory_id")
                    .to_owned(),
                n["depth"].as_i64().expect("depth"),
            )
        })
        .collect()
}

fn edges(graph: &Value, field: &str) -> Vec<(String, String)> {
    let mut e: Vec<(String, String)> = graph[field]
        .as_array()
        .expect("edges")
        .iter()
        .map(|r| {
            (
                r["source"].as_str().expect("source").to_owned(),
                r["target"].as_str().expect("target").to_owned(),
            )
        })
        .collect();
    e.sort();
    e
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn relationships_are_created_read_and_deleted() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-rel").await;
    for id in ["a", "b"] {
        app.create_memory(&t.key, id, json!({ "id": id })).await;
    }
    let rel = app
        .post(
            "/v1/relationships",
            &t.key,
            json!({ "source": "a", "target": "b", "relationship_type": "caused_by",
                    "weight": 0.4, "metadata": { "why": "test" } }),
        )
        .await;
    let rel = rel.ok(201).clone();
    assert_eq!(rel["source"], "a");
    assert_eq!(rel["target"], "b");
    assert_eq!(rel["relationship_type"], "caused_by");
    assert_eq!(rel["weight"], 0.4);
    assert_eq!(rel["metadata"], json!({ "why": "test" }));
    let id = rel["id"].as_str().expect("id");
    assert_eq!(
        app.get(&format!("/v1/relationships/{id}"), &t.key)
            .await
            .ok(200),
        &rel
    );

    // Same (source, target, type) again: conflict; another type or direction: a new edge.
    app.post(
        "/v1/relationships",
        &t.key,
        json!({ "source": "a", "target": "b", "relationship_type": "caused_by" }),
    )
    .await
    .expect(409, "relationship_exists");
    let default_weight = app.link(&t.key, "a", "b", "related_to", 1.0).await;
    assert_eq!(default_weight["weight"], 1.0);
    app.link(&t.key, "b", "a", "caused_by", 0.5).await;
    app.post(
        "/v1/relationships",
        &t.key,
        json!({ "source": "a", "target": "missing", "relationship_type": "x" }),
    )
    .await
    .expect(404, "memory_not_found");

    let del = app
        .call(
            "DELETE",
            &format!("/v1/relationships/{id}"),
            Some(&t.key),
            None,
        )
        .await;
    assert_eq!(del.status, 204, "{}", del.text);
    app.get(&format!("/v1/relationships/{id}"), &t.key)
        .await
        .expect(404, "relationship_not_found");
    app.call(
        "DELETE",
        &format!("/v1/relationships/{id}"),
        Some(&t.key),
        None,
    )
    .await
    .expect(404, "relationship_not_found");

    // Deleting a memory takes its edges with it.
    app.call("DELETE", "/v1/memories/b", Some(&t.key), None)
        .await
        .ok(204);
    let n = app.get("/v1/memories/a/neighbours", &t.key).await;
    assert_eq!(n.ok(200)["relationships"], json!([]));
    assert_eq!(
        app.get("/v1/usage", &t.key).await.body["relationship_count"],
        0
    );
}

#[tokio::test]
async fn neighbours_follow_direction_type_and_weight() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-nb").await;
    for id in ["hub", "x", "y", "z"] {
        app.create_memory(&t.key, id, json!({ "id": id })).await;
    }
    app.link(&t.key, "hub", "x", "related_to", 0.2).await;
    app.link(&t.key, "hub", "y", "caused_by", 0.9).await;
    app.link(&t.key, "z", "hub", "related_to", 0.5).await;
    app.link(&t.key, "x", "y", "related_to", 1.0).await;

    let both = app.get("/v1/memories/hub/neighbours", &t.key).await;
    let both = both.ok(200).clone();
    assert_eq!(both["memory_id"], "hub");
    let order: Vec<&str> = both["relationships"]
        .as_array()
        .expect("relationships")
        .iter()
        .map(|r| {
            r["weight"].as_f64().map_or("?", |w| {
                if w > 0.8 {
                    "y"
                } else if w > 0.4 {
                    "z"
                } else {
                    "x"
                }
            })
        })
        .collect();
    assert_eq!(order, ["y", "z", "x"], "strongest first");
    let out = app
        .get("/v1/memories/hub/neighbours?direction=out", &t.key)
        .await;
    assert_eq!(
        edges(out.ok(200), "relationships"),
        pairs(&[("hub", "x"), ("hub", "y")])
    );
    let inn = app
        .get("/v1/memories/hub/neighbours?direction=in", &t.key)
        .await;
    assert_eq!(edges(inn.ok(200), "relationships"), pairs(&[("z", "hub")]));
    let typed = app
        .get(
            "/v1/memories/hub/neighbours?relationship_type=related_to",
            &t.key,
        )
        .await;
    assert_eq!(
        edges(typed.ok(200), "relationships"),
        pairs(&[("hub", "x"), ("z", "hub")])
    );
    let limited = app.get("/v1/memories/hub/neighbours?limit=1", &t.key).await;
    assert_eq!(
        edges(limited.ok(200), "relationships"),
        pairs(&[("hub", "y")])
    );
    app.get("/v1/memories/nobody/neighbours", &t.key)
        .await
        .expect(404, "memory_not_found");
}

#[tokio::test]
async fn traversal_on_a_cycle_ends_and_reports_depths_and_edges() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-cycle").await;
    for id in ["a", "b", "c", "d", "e"] {
        app.create_memory(&t.key, id, json!({ "id": id })).await;
    }
    // a → b → c → a, plus a tail c → d → e.
    app.link(&t.key, "a", "b", "next", 1.0).await;
    app.link(&t.key, "b", "c", "next", 1.0).await;
    app.link(&t.key, "c", "a", "next", 1.0).await;
    app.link(&t.key, "c", "d", "next", 1.0).await;
    app.link(&t.key, "d", "e", "tail", 1.0).await;

    let g = app
        .get("/v1/memories/a/graph?depth=3&direction=out", &t.key)
        .await;
    let g = g.ok(200).clone();
    assert_eq!(g["root"], "a");
    let want: BTreeMap<String, i64> = [("a", 0), ("b", 1), ("c", 2), ("d", 3)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(depths(&g), want);
    assert_eq!(
        edges(&g, "edges"),
        pairs(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")])
    );
    assert_eq!(g["nodes"][0]["memory"]["content"], json!({ "id": "a" }));

    // Both directions: c is one hop back from a.
    let both = app.get("/v1/memories/a/graph?depth=3", &t.key).await;
    let want: BTreeMap<String, i64> = [("a", 0), ("b", 1), ("c", 1), ("d", 2), ("e", 3)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(depths(both.ok(200)), want);
    assert_eq!(edges(&both.body, "edges").len(), 5);

    // Depth 1 in, a type filter, the default depth, and a node cap.
    let inn = app
        .get("/v1/memories/a/graph?depth=1&direction=in", &t.key)
        .await;
    assert_eq!(depths(inn.ok(200)).keys().collect::<Vec<_>>(), ["a", "c"]);
    let typed = app
        .get(
            "/v1/memories/c/graph?depth=3&relationship_type=tail",
            &t.key,
        )
        .await;
    assert_eq!(depths(typed.ok(200)).len(), 1, "c has no `tail` edge");
    let dflt = app.get("/v1/memories/a/graph?direction=out", &t.key).await;
    assert_eq!(depths(dflt.ok(200)).len(), 3, "default depth 2");
    let capped = app
        .get("/v1/memories/a/graph?depth=3&max_nodes=2", &t.key)
        .await;
    let capped = depths(capped.ok(200));
    assert_eq!(capped.len(), 2);
    assert_eq!(capped.get("a"), Some(&0));

    // A dense cycle at the maximum depth still answers quickly.
    for i in 0..30 {
        app.create_memory(&t.key, &format!("k{i}"), json!({ "i": i }))
            .await;
    }
    for i in 0..30 {
        for j in 0..30 {
            if i != j && (i + j) % 3 == 0 {
                app.link(&t.key, &format!("k{i}"), &format!("k{j}"), "dense", 0.5)
                    .await;
            }
        }
    }
    let started = std::time::Instant::now();
    let dense = app
        .get("/v1/memories/k0/graph?depth=3&max_nodes=500", &t.key)
        .await;
    assert!(dense.ok(200)["nodes"].as_array().expect("nodes").len() <= 30);
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
}

/// The internal id of a tenant, from the admin API.
async fn tenant_uuid(app: &TestApp, tenant_id: &str) -> Uuid {
    let t = app
        .admin("GET", &format!("/v1/admin/tenants/{tenant_id}"), None)
        .await;
    t.ok(200)["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("tenant uuid")
}

#[tokio::test]
async fn traversal_does_not_walk_through_an_expired_memory() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-walk-expired").await;
    for id in ["a", "b", "c"] {
        app.create_memory(&t.key, id, json!({ "id": id })).await;
    }
    app.link(&t.key, "a", "b", "next", 1.0).await;
    app.link(&t.key, "b", "c", "next", 1.0).await;
    let before = app.get("/v1/memories/a/graph?depth=2", &t.key).await;
    assert_eq!(depths(before.ok(200)).len(), 3);

    // b expires (backdated as the tenant, in SQL: no waiting).
    let scope = TenantScope::assume(tenant_uuid(&app, &t.tenant_id).await);
    let mut tx = app.store.begin_tenant(&scope).await.expect("tenant tx");
    sqlx::query(
        "UPDATE contextual_memories SET expires_at = now() - interval '1 second'
         WHERE memory_id = 'b'",
    )
    .execute(&mut *tx)
    .await
    .expect("expire b");
    tx.commit().await.expect("commit");

    for direction in ["out", "both"] {
        let g = app
            .get(
                &format!("/v1/memories/a/graph?depth=2&direction={direction}"),
                &t.key,
            )
            .await;
        let g = g.ok(200);
        assert_eq!(
            depths(g).keys().collect::<Vec<_>>(),
            ["a"],
            "c is reachable only through the expired b: {g}"
        );
        assert_eq!(g["edges"], json!([]));
    }
}

/// A tenant with memories `notes-1` → `secret-1` → `notes-2` and `notes-1` → `notes-3`, and a key
/// whose policy lets it read and write only `notes-*`. Returns (full key, restricted key).
async fn notes_only(app: &TestApp) -> (String, String) {
    let t = app.new_tenant("tenant-notes-only").await;
    for id in ["notes-1", "secret-1", "notes-2", "notes-3"] {
        app.create_memory(&t.key, id, json!({ "text": format!("content of {id}") }))
            .await;
    }
    app.link(&t.key, "notes-1", "secret-1", "next", 0.9).await;
    app.link(&t.key, "secret-1", "notes-2", "next", 0.9).await;
    app.link(&t.key, "notes-1", "notes-3", "next", 0.5).await;
    let (key_id, restricted) = app.create_key(&t.tenant_id, &["*"], None).await;
    app.post(
        "/v1/policies",
        &t.key,
        json!({ "name": "notes only", "resource_type": "memories", "resource_pattern": "notes-*",
                "permissions": ["read", "write"], "api_key_id": key_id }),
    )
    .await
    .ok(201);
    (t.key, restricted)
}

#[tokio::test]
async fn graph_and_neighbours_return_only_memories_the_key_may_read() {
    let app = TestApp::spawn().await;
    let (full, restricted) = notes_only(&app).await;

    let all = app.get("/v1/memories/notes-1/graph?depth=3", &full).await;
    assert_eq!(depths(all.ok(200)).len(), 4);

    let g = app
        .get("/v1/memories/notes-1/graph?depth=3", &restricted)
        .await;
    let g = g.ok(200).clone();
    // secret-1 is hidden, and notes-2, reachable only through it, is not reached.
    assert_eq!(
        depths(&g).keys().collect::<Vec<_>>(),
        ["notes-1", "notes-3"]
    );
    assert_eq!(edges(&g, "edges"), pairs(&[("notes-1", "notes-3")]));
    let n = app
        .get("/v1/memories/notes-1/neighbours", &restricted)
        .await;
    let n = n.ok(200).clone();
    assert_eq!(edges(&n, "relationships"), pairs(&[("notes-1", "notes-3")]));
    for text in [g.to_string(), n.to_string()] {
        assert!(!text.contains("secret-1"), "{text}");
    }
}

#[tokio::test]
async fn creating_a_relationship_to_a_forbidden_memory_is_refused_whether_it_exists_or_not() {
    let app = TestApp::spawn().await;
    let (_, restricted) = notes_only(&app).await;
    let link = |source: &str, target: &str| json!({ "source": source, "target": target, "relationship_type": "probe" });
    let existing = app
        .post(
            "/v1/relationships",
            &restricted,
            link("notes-1", "secret-1"),
        )
        .await;
    existing.expect(403, "policy_denied");
    let missing = app
        .post(
            "/v1/relationships",
            &restricted,
            link("notes-1", "secret-9"),
        )
        .await;
    missing.expect(403, "policy_denied");
    assert_eq!(
        existing.text.replace("secret-1", "ID"),
        missing.text.replace("secret-9", "ID"),
        "the answer must not tell whether the target exists"
    );
    app.post(
        "/v1/relationships",
        &restricted,
        link("secret-1", "notes-1"),
    )
    .await
    .expect(403, "policy_denied");
    app.post(
        "/v1/relationships",
        &restricted,
        link("secret-9", "notes-1"),
    )
    .await
    .expect(403, "policy_denied");
    // Within the policy, the usual answers.
    app.post("/v1/relationships", &restricted, link("notes-1", "notes-9"))
        .await
        .expect(404, "memory_not_found");
    app.post("/v1/relationships", &restricted, link("notes-2", "notes-3"))
        .await
        .ok(201);
}

/// The SQL form of the access-policy rule ([`mnemo_store::policies::Visibility`]) keeps exactly
/// the ids that `pattern_matches` keeps, including ids with LIKE wildcards and the id `*`.
#[tokio::test]
async fn the_walk_keeps_exactly_the_ids_the_policy_rules_permit() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-visibility").await;
    let ids = [
        "notes-1", "notes-", "notes", "NOTES-1", "notes_%", "note%s-1", "*", "**", "todo-1",
        "todo-10", "x",
    ];
    app.create_memory(&t.key, "hub", json!({})).await;
    for id in ids {
        app.create_memory(&t.key, id, json!({})).await;
        app.link(&t.key, "hub", id, "r", 0.5).await;
    }
    let scope = TenantScope::assume(tenant_uuid(&app, &t.tenant_id).await);
    let rule_sets: Vec<Vec<(&str, Vec<&str>)>> = vec![
        vec![],
        vec![("notes-*", vec!["read"])],
        vec![("todo-1", vec!["read"]), ("**", vec!["read"])],
        vec![("note%*", vec!["read"]), ("*", vec!["write"])],
        vec![("*", vec!["read"])],
        vec![("notes_%", vec!["read", "write"]), ("x*", vec!["read"])],
    ];
    for set in rule_sets {
        let rules = Rules::from_pairs(
            set.iter()
                .map(|(p, perms)| (p.to_string(), perms.iter().map(|s| s.to_string()).collect()))
                .collect(),
        );
        let visible = rules.visibility("read");
        let mut tx = app.store.begin_tenant(&scope).await.expect("tenant tx");
        let walk = Walk {
            depth: 1,
            direction: Direction::Out,
            relationship_type: None,
            max_nodes: 100,
            max_edges: 100,
            visible: &visible,
        };
        let (nodes, _) = relationships::traverse(&mut tx, "hub", walk)
            .await
            .expect("traverse");
        tx.rollback().await.expect("rollback");
        let got: BTreeSet<String> = nodes
            .into_iter()
            .filter(|n| n.depth == 1)
            .map(|n| n.memory.memory_id)
            .collect();
        let want: BTreeSet<String> = ids
            .iter()
            .filter(|id| rules.permits(id, "read"))
            .map(|id| id.to_string())
            .collect();
        assert_eq!(got, want, "rules {set:?}");
    }
}
