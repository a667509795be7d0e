//! What the service serves besides the API: its OpenAPI document, the docs page, health checks,
//! and JSON answers for unknown routes and methods.

use serde_json::{json, Value};

use crate::harness::TestApp;

#[tokio::test]
async fn openapi_document_and_docs_page_are_served() {
    let app = TestApp::spawn().await;
    let r = app.call("GET", "/openapi.json", None, None).await;
    let doc = r.ok(200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')));
    assert_eq!(
        doc,
        &serde_json::to_value(mnemo_server::openapi()).expect("doc")
    );
    for path in [
        "/v1/memories",
        "/v1/memories/{memory_id}/graph",
        "/v1/admin/tenants",
        "/v1/audit",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} undocumented");
    }
    assert!(doc["components"]["securitySchemes"]
        .get("api_key")
        .is_some());

    let docs = app.call("GET", "/docs", None, None).await;
    assert_eq!(docs.status, 200);
    assert!(docs
        .content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("text/html")));
    assert!(docs.text.contains("openapi.json"));
}

/// Every `$ref` in the document names a schema it defines (clients and fuzzers cannot follow a
/// dangling one).
#[test]
fn every_schema_reference_resolves() {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    out.push(r.clone());
                }
                o.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let doc = serde_json::to_value(mnemo_server::openapi()).expect("doc");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    let dangling: Vec<&String> = all
        .iter()
        .filter(|r| {
            r.strip_prefix("#/components/schemas/")
                .is_none_or(|name| doc["components"]["schemas"].get(name).is_none())
        })
        .collect();
    assert!(dangling.is_empty(), "dangling references: {dangling:?}");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let h = app.call("GET", "/healthz", None, None).await;
    assert_eq!(h.ok(200), &json!({ "status": "ok" }));
    let r = app.call("GET", "/readyz", None, None).await;
    let ready = r.ok(200);
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["database"], "reachable");
    assert!(ready["pgvector_version"].is_string());
    assert_eq!(ready["embedder"], serde_json::Value::Null);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-routes").await;
    for (method, path) in [
        ("GET", "/nope"),
        ("GET", "/v1"),
        ("GET", "/v2/memories"),
        ("GET", "/v1/memories/a/b/c"),
        ("POST", "/v1/admin"),
    ] {
        let r = app.call(method, path, Some(&t.key), None).await;
        r.expect(404, "route_not_found");
        assert!(r.request_id.is_some(), "{path}");
    }
    for (method, path) in [
        ("POST", "/healthz"),
        ("DELETE", "/v1/memories"),
        ("PUT", "/v1/usage"),
    ] {
        let r = app.call(method, path, Some(&t.key), None).await;
        r.expect(405, "method_not_allowed");
    }
}
