//! The bad-input sweep: malformed JSON, wrong types, NaN/huge/wrong-length vectors, empty and
//! oversized strings, unknown fields and out-of-range numbers, on every endpoint. Every answer is
//! a 4xx with the error shape, never a 5xx, and nothing is written.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use mnemo_server::Limits;

use crate::harness::{openapi_operations, query, vector, Operation, Resp, TestApp};

enum Body {
    None,
    Json(Value),
    Raw(String),
}

struct Case {
    method: &'static str,
    path: String,
    body: Body,
    status: u16,
    code: &'static str,
    admin: bool,
}

fn case(
    method: &'static str,
    path: impl Into<String>,
    body: Body,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        method,
        path: path.into(),
        body,
        status,
        code,
        admin: false,
    }
}

fn admin(mut c: Case) -> Case {
    c.admin = true;
    c
}

fn j(v: Value) -> Body {
    Body::Json(v)
}

fn raw(s: &str) -> Body {
    Body::Raw(s.to_owned())
}

/// Tallies answers and checks the invariants every bad request must meet.
#[derive(Default)]
struct Tally {
    by_status: BTreeMap<u16, usize>,
    by_code: BTreeMap<String, usize>,
    failures: Vec<String>,
}

impl Tally {
    fn check(&mut self, what: &str, r: &Resp, status: Option<u16>, code: Option<&str>) {
        *self.by_status.entry(r.status).or_default() += 1;
        *self.by_code.entry(r.code().to_owned()).or_default() += 1;
        let mut wrong = Vec::new();
        if !(400..500).contains(&r.status) {
            wrong.push(format!("status {} is not a 4xx", r.status));
        }
        if !r.has_error_shape() {
            wrong.push("not the error shape".to_owned());
        }
        if status.is_some_and(|s| s != r.status) || code.is_some_and(|c| c != r.code()) {
            wrong.push(format!(
                "expected {} {}, got {} {}",
                status.unwrap_or(0),
                code.unwrap_or("?"),
                r.status,
                r.code()
            ));
        }
        if !wrong.is_empty() {
            let text: String = r.text.chars().take(300).collect();
            self.failures
                .push(format!("{what}: {} — {text}", wrong.join("; ")));
        }
    }

    fn total(&self) -> usize {
        self.by_status.values().sum()
    }

    fn finish(self, name: &str) {
        println!(
            "{name}: {} requests, by status {:?}, by code {:?}",
            self.total(),
            self.by_status,
            self.by_code
        );
        assert!(
            self.failures.is_empty(),
            "{} of {} answers were wrong:\n{}",
            self.failures.len(),
            self.total(),
            self.failures.join("\n")
        );
    }
}

async fn send(app: &TestApp, key: &str, c: &Case) -> Resp {
    let k = if c.admin { app.admin_key.as_str() } else { key };
    match &c.body {
        Body::None => app.call(c.method, &c.path, Some(k), None).await,
        Body::Json(v) => app.call(c.method, &c.path, Some(k), Some(v.clone())).await,
        Body::Raw(s) => {
            app.call_raw(
                c.method,
                &c.path,
                Some(k),
                Some(s.clone().into_bytes()),
                Some("application/json"),
            )
            .await
        }
    }
}

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |v, _| json!({ "a": v }))
}

/// A valid session (basic, weighted, 3 participants) with `extra` fields replacing its own.
fn fs(extra: Value) -> Value {
    let mut s = json!({
        "topic": { "tags": ["t"] }, "aggregation_method": "weighted", "privacy_level": "basic",
        "deadline": (Utc::now() + Duration::days(1)).to_rfc3339(),
    });
    if let (Some(o), Some(e)) = (s.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    s
}

fn mem(extra: Value) -> Value {
    let mut m = json!({ "memory_id": "new-1", "content": { "text": "hello" } });
    if let (Some(o), Some(e)) = (m.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    m
}

#[rustfmt::skip]
fn cases(project: &str, tenant: &str, key_id: &str, policy: &str) -> Vec<Case> {
    let long_id = "x".repeat(300);
    let big_content = json!({ "text": "x".repeat(300 * 1024) });
    let unknown = Uuid::new_v4();
    let tenants = format!("/v1/admin/tenants/{tenant}");
    let mut v = vec![
        // POST /v1/memories
        case("POST", "/v1/memories", raw(r#"{"memory_id": "#), 400, "malformed_json"),
        case("POST", "/v1/memories", raw(r#"{"content": {"a": 1},}"#), 400, "malformed_json"),
        case("POST", "/v1/memories", raw(r#"{"content": {"a": NaN}}"#), 400, "malformed_json"),
        case("POST", "/v1/memories", raw(r#"{"content": {"a": 1}, "relevance_score": 1e400}"#), 400, "malformed_json"),
        case("POST", "/v1/memories", raw(&format!(r#"{{"content": {}}}"#, "[".repeat(200) + &"]".repeat(200))), 400, "malformed_json"),
        case("POST", "/v1/memories", raw(""), 400, "malformed_json"),
        case("POST", "/v1/memories", j(json!([1, 2])), 422, "invalid_body"),
        case("POST", "/v1/memories", j(json!({ "memory_id": "x" })), 422, "invalid_body"),
        case("POST", "/v1/memories", j(mem(json!({ "content": null }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "relevance_score": "high" }))), 422, "invalid_body"),
        case("POST", "/v1/memories", j(mem(json!({ "relevance_score": 1.5 }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "relevance_score": -0.1 }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "embedding": vec![0.1; 383] }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "embedding": vec![0.1; 385] }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "embedding": vec![0.1; 100_000] }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "embedding": [] }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "embedding": vec![1e39; 384] }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "embedding": vec![0.0; 384] }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "embedding": vec!["NaN"; 384] }))), 422, "invalid_body"),
        case("POST", "/v1/memories", raw(&format!(r#"{{"content": {{"a": 1}}, "embedding": [NaN{}]}}"#, ", 0.1".repeat(383))), 400, "malformed_json"),
        case("POST", "/v1/memories", j(mem(json!({ "embedding": "0.1,0.2" }))), 422, "invalid_body"),
        case("POST", "/v1/memories", j(mem(json!({ "memory_id": "" }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "memory_id": long_id }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "memory_id": " padded" }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "memory_id": "nul\u{0}id" }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "memory_id": 42 }))), 422, "invalid_body"),
        case("POST", "/v1/memories", j(mem(json!({ "content": big_content }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "content": { "t": "nul\u{0}" } }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "content": { "nul\u{0}key": 1 } }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "content": nested(40) }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "tags": (0..65).map(|i| format!("t{i}")).collect::<Vec<_>>() }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "tags": [""] }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "tags": ["x".repeat(101)] }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "tags": "a,b" }))), 422, "invalid_body"),
        case("POST", "/v1/memories", j(mem(json!({ "tags": [1, 2] }))), 422, "invalid_body"),
        case("POST", "/v1/memories", j(mem(json!({ "metadata": [1] }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "metadata": { "m": "x".repeat(70_000) } }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "expires_at": "2001-01-01T00:00:00Z" }))), 422, "invalid_value"),
        case("POST", "/v1/memories", j(mem(json!({ "expires_at": "tomorrow" }))), 422, "invalid_body"),
        case("POST", "/v1/memories", j(mem(json!({ "tenant_id": "someone-else" }))), 422, "invalid_body"),
        case("POST", "/v1/memories", j(mem(json!({ "memory_id": "m1" }))), 409, "memory_exists"),
        // POST /v1/memories/batch
        case("POST", "/v1/memories/batch", j(json!({ "memories": [] })), 422, "invalid_value"),
        case("POST", "/v1/memories/batch", j(json!({ "memories": (0..1001).map(|i| json!({"content": {"i": i}})).collect::<Vec<_>>() })), 422, "invalid_value"),
        case("POST", "/v1/memories/batch", j(json!({ "memories": [mem(json!({})), mem(json!({"memory_id": "new-2", "relevance_score": 2}))] })), 422, "invalid_value"),
        case("POST", "/v1/memories/batch", j(json!({ "memories": [mem(json!({})), mem(json!({}))] })), 422, "invalid_value"),
        case("POST", "/v1/memories/batch", j(json!({ "memories": { "a": 1 } })), 422, "invalid_body"),
        case("POST", "/v1/memories/batch", j(json!([mem(json!({}))])), 422, "invalid_body"),
        case("POST", "/v1/memories/batch", j(json!({ "memories": [mem(json!({}))], "atomic": false })), 422, "invalid_body"),
        // POST /v1/memories/search
        case("POST", "/v1/memories/search", j(json!({})), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "" })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "   " })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "q".repeat(2001) })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "nul\u{0}" })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": 5 })), 422, "invalid_body"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "k": 0 })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "k": 101 })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "k": -1 })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "k": 1.5 })), 422, "invalid_body"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "k": "ten" })), 422, "invalid_body"),
        case("POST", "/v1/memories/search", j(json!({ "vector": vec![0.1; 383] })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "vector": vec![1e39; 384] })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "vector": vec![0.0; 384] })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "vector": [] })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", raw(&format!(r#"{{"vector": [NaN{}]}}"#, ", 0.1".repeat(383))), 400, "malformed_json"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "mode": "fuzzy" })), 422, "invalid_body"),
        case("POST", "/v1/memories/search", j(json!({ "vector": vector(1), "mode": "text" })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "mode": "vector" })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "mode": "hybrid" })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "vector": vector(1), "min_similarity": 2 })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "vector": vector(1), "min_similarity": -1.5 })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "filter": { "min_relevance": 1.5 } })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "filter": { "min_relevance": 0.9, "max_relevance": 0.1 } })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "filter": { "tags": [""] } })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "filter": { "any_tags": (0..65).map(|i| format!("t{i}")).collect::<Vec<_>>() } })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "filter": { "contains": nested(20) } })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "filter": { "contains": { "k": "nul\u{0}" } } })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "filter": { "contains": vec![1; 64] } })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "filter": { "contains": { "k": "x".repeat(9000) } } })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "filter": { "created_after": "soon" } })), 422, "invalid_body"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "filter": { "created_after": "-200000-01-01T00:00:00Z" } })), 422, "invalid_value"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "filter": { "tenant_id": "other" } })), 422, "invalid_body"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "tenant_id": "other" })), 422, "invalid_body"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "expand": "yes" })), 422, "invalid_body"),
        // GET /v1/memories
        case("GET", "/v1/memories?limit=0", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories?limit=10000", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories?limit=-1", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories?limit=abc", Body::None, 400, "invalid_query"),
        case("GET", "/v1/memories?limit=99999999999999999999", Body::None, 400, "invalid_query"),
        case("GET", "/v1/memories?cursor=garbage!!", Body::None, 400, "invalid_cursor"),
        case("GET", "/v1/memories?cursor=eDp5", Body::None, 400, "invalid_cursor"),
        case("GET", format!("/v1/memories{}", query(&[("contains", "{not json")])), Body::None, 400, "invalid_query"),
        case("GET", format!("/v1/memories{}", query(&[("contains", &nested(20).to_string())])), Body::None, 422, "invalid_value"),
        case("GET", format!("/v1/memories{}", query(&[("contains", &json!(vec![0; 500]).to_string())])), Body::None, 422, "invalid_value"),
        case("GET", format!("/v1/memories{}", query(&[("contains", &json!({ "k": "x".repeat(9000) }).to_string())])), Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories?tags=", Body::None, 422, "invalid_value"),
        case("GET", format!("/v1/memories?any_tags={}", "x".repeat(101)), Body::None, 422, "invalid_value"),
        case("GET", format!("/v1/memories?tags={}", (0..65) .map(|i| format!("t{i}")) .collect::<Vec<_>>() .join(",")), Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories?min_relevance=1.5", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories?max_relevance=-0.1", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories?min_relevance=NaN", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories?min_relevance=0.8&max_relevance=0.2", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories?created_after=yesterday", Body::None, 400, "invalid_query"),
        case("GET", format!("/v1/memories{}", query(&[("created_after", "-200000-01-01T00:00:00Z")])), Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories?include_embedding=maybe", Body::None, 400, "invalid_query"),
        case("GET", "/v1/memories?tenant_id=other", Body::None, 400, "invalid_query"),
        // GET/PATCH/PUT/DELETE /v1/memories/{memory_id}
        case("GET", format!("/v1/memories/{long_id}"), Body::None, 404, "memory_not_found"),
        case("GET", "/v1/memories/nul%00id", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories/%FF%FE", Body::None, 404, "not_found"),
        case("GET", "/v1/memories/m1?include_embedding=2", Body::None, 400, "invalid_query"),
        case("GET", "/v1/memories/m1?fields=all", Body::None, 400, "invalid_query"),
        case("PATCH", "/v1/memories/m1", j(json!({})), 422, "invalid_value"),
        case("PATCH", "/v1/memories/m1", raw("{"), 400, "malformed_json"),
        case("PATCH", "/v1/memories/m1", j(json!({ "relevance_score": 1.5 })), 422, "invalid_value"),
        case("PATCH", "/v1/memories/m1", j(json!({ "relevance_score": "1" })), 422, "invalid_body"),
        case("PATCH", "/v1/memories/m1", j(json!({ "embedding": vec![0.5; 10] })), 422, "invalid_value"),
        case("PATCH", "/v1/memories/m1", j(json!({ "embedding": vec![-1e39; 384] })), 422, "invalid_value"),
        case("PATCH", "/v1/memories/m1", j(json!({ "expires_at": "1999-01-01T00:00:00Z" })), 422, "invalid_value"),
        case("PATCH", "/v1/memories/m1", j(json!({ "tags": "x" })), 422, "invalid_body"),
        case("PATCH", "/v1/memories/m1", j(json!({ "content": big_content })), 422, "invalid_value"),
        case("PATCH", "/v1/memories/m1", j(json!({ "metadata": "x" })), 422, "invalid_value"),
        case("PATCH", "/v1/memories/m1", j(json!({ "memory_id": "renamed" })), 422, "invalid_body"),
        case("PATCH", format!("/v1/memories/{long_id}"), j(json!({ "relevance_score": 0.2 })), 404, "memory_not_found"),
        case("PUT", "/v1/memories/m1", j(json!({ "memory_id": "m2", "content": {"a": 1} })), 422, "invalid_value"),
        case("PUT", format!("/v1/memories/{long_id}"), j(json!({ "content": {"a": 1} })), 422, "invalid_value"),
        case("PUT", "/v1/memories/m1", j(json!({ "content": {"a": 1}, "relevance_score": 1.5 })), 422, "invalid_value"),
        case("PUT", "/v1/memories/m1", j(json!({ "content": {"a": 1}, "embedding": vec![f64::MAX; 384] })), 422, "invalid_value"),
        case("PUT", "/v1/memories/m1", j(json!({ "relevance_score": 0.5 })), 422, "invalid_body"),
        case("DELETE", format!("/v1/memories/{long_id}"), Body::None, 404, "memory_not_found"),
        // POST /v1/contexts
        case("POST", "/v1/contexts", raw(r#"{"messages": [{"role": "user", "content": "x"}],}"#), 400, "malformed_json"),
        case("POST", "/v1/contexts", raw(r#"{"messages": [{"role": "user", "content": "x"}"#), 400, "malformed_json"),
        case("POST", "/v1/contexts", j(json!({})), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "messages": [] })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "messages": "hello" })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "messages": [{ "role": "user" }] })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "messages": [{ "content": "x" }] })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "messages": [{ "role": 1, "content": "x" }] })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "messages": [{ "role": "user", "content": null }] })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "messages": [{ "role": "user", "content": [{ "type": "text" }] }] })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "messages": [{ "role": "user", "content": "x" }, 7] })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "messages": [{ "role": "user", "content": "x" }], "text": "y" })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "text": "" })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "text": 5 })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "text": "x", "context_id": "" })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "text": "x", "context_id": long_id })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "text": "x", "context_id": 42 })), 422, "invalid_body"),
        case("POST", "/v1/contexts", j(json!({ "text": "x", "session_id": "nul\u{0}" })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "text": "x", "relevance_score": 1.5 })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "text": "x", "metadata": [1] })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "text": "x", "metadata": nested(40) })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "text": "x", "metadata": { "m": "x".repeat(70_000) } })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "text": "x", "expires_at": "2001-01-01T00:00:00Z" })), 422, "invalid_value"),
        case("POST", "/v1/contexts", j(json!({ "text": "x", "expires_at": "later" })), 422, "invalid_body"),
        case("POST", "/v1/contexts", j(json!({ "text": "x", "tokenizer": "gpt2" })), 422, "invalid_body"),
        case("POST", "/v1/contexts", j(json!({ "text": "x", "tenant_id": "someone-else" })), 422, "invalid_body"),
        case("POST", "/v1/contexts", j(json!({ "text": "x".repeat(9 * 1024 * 1024) })), 413, "context_too_large"),
        case("POST", "/v1/contexts", j(json!({ "context_id": "c1", "text": "again" })), 409, "context_exists"),
        // PUT/GET/DELETE /v1/contexts/{context_id}
        case("PUT", "/v1/contexts/c1", j(json!({ "context_id": "c2", "text": "x" })), 422, "invalid_value"),
        case("PUT", format!("/v1/contexts/{long_id}"), j(json!({ "text": "x" })), 422, "invalid_value"),
        case("PUT", "/v1/contexts/c1", j(json!({ "text": ["x"] })), 422, "invalid_value"),
        case("PUT", "/v1/contexts/c1", j(json!({ "messages": null, "text": null })), 422, "invalid_value"),
        case("GET", format!("/v1/contexts/{long_id}"), Body::None, 404, "context_not_found"),
        case("GET", "/v1/contexts/nul%00id", Body::None, 422, "invalid_value"),
        case("GET", "/v1/contexts/c1?raw=maybe", Body::None, 400, "invalid_query"),
        case("GET", "/v1/contexts/c1?fields=all", Body::None, 400, "invalid_query"),
        case("DELETE", format!("/v1/contexts/{long_id}"), Body::None, 404, "context_not_found"),
        // GET /v1/contexts
        case("GET", "/v1/contexts?limit=0", Body::None, 422, "invalid_value"),
        case("GET", "/v1/contexts?limit=501", Body::None, 422, "invalid_value"),
        case("GET", "/v1/contexts?limit=abc", Body::None, 400, "invalid_query"),
        case("GET", "/v1/contexts?cursor=garbage!!", Body::None, 400, "invalid_cursor"),
        case("GET", format!("/v1/contexts{}", query(&[("contains", "{not json")])), Body::None, 400, "invalid_query"),
        case("GET", format!("/v1/contexts{}", query(&[("contains", &nested(20).to_string())])), Body::None, 422, "invalid_value"),
        case("GET", format!("/v1/contexts{}", query(&[("contains", &json!(vec![0; 500]).to_string())])), Body::None, 422, "invalid_value"),
        case("GET", "/v1/contexts?session_id=", Body::None, 422, "invalid_value"),
        case("GET", "/v1/contexts?created_after=yesterday", Body::None, 400, "invalid_query"),
        case("GET", "/v1/contexts?tenant_id=other", Body::None, 400, "invalid_query"),
        // POST /v1/contexts/search
        case("POST", "/v1/contexts/search", j(json!({})), 422, "invalid_value"),
        case("POST", "/v1/contexts/search", j(json!({ "query": "" })), 422, "invalid_value"),
        case("POST", "/v1/contexts/search", j(json!({ "query": "q".repeat(2001) })), 422, "invalid_value"),
        case("POST", "/v1/contexts/search", j(json!({ "query": "x", "k": 0 })), 422, "invalid_value"),
        case("POST", "/v1/contexts/search", j(json!({ "query": "x", "k": 101 })), 422, "invalid_value"),
        case("POST", "/v1/contexts/search", j(json!({ "query": "x", "k": "ten" })), 422, "invalid_body"),
        case("POST", "/v1/contexts/search", j(json!({ "vector": vec![0.1; 383] })), 422, "invalid_value"),
        case("POST", "/v1/contexts/search", j(json!({ "vector": vec![0.0; 384] })), 422, "invalid_value"),
        case("POST", "/v1/contexts/search", j(json!({ "query": "x", "mode": "fuzzy" })), 422, "invalid_body"),
        case("POST", "/v1/contexts/search", j(json!({ "query": "x", "mode": "vector" })), 422, "invalid_value"),
        case("POST", "/v1/contexts/search", j(json!({ "vector": vector(1), "mode": "text" })), 422, "invalid_value"),
        case("POST", "/v1/contexts/search", j(json!({ "query": "x", "filter": { "contains": nested(20) } })), 422, "invalid_value"),
        case("POST", "/v1/contexts/search", j(json!({ "query": "x", "filter": { "session_id": "" } })), 422, "invalid_value"),
        case("POST", "/v1/contexts/search", j(json!({ "query": "x", "filter": { "tags": ["a"] } })), 422, "invalid_body"),
        case("POST", "/v1/contexts/search", j(json!({ "query": "x", "chunks": 3 })), 422, "invalid_body"),
        // POST /v1/contexts/reconstruct
        case("POST", "/v1/contexts/reconstruct", j(json!({})), 422, "invalid_body"),
        case("POST", "/v1/contexts/reconstruct", j(json!({ "query": "x" })), 422, "invalid_body"),
        case("POST", "/v1/contexts/reconstruct", j(json!({ "query": "x", "token_budget": 0 })), 422, "invalid_value"),
        case("POST", "/v1/contexts/reconstruct", j(json!({ "query": "x", "token_budget": -5 })), 422, "invalid_value"),
        case("POST", "/v1/contexts/reconstruct", j(json!({ "query": "x", "token_budget": 1_000_001 })), 422, "invalid_value"),
        case("POST", "/v1/contexts/reconstruct", j(json!({ "query": "x", "token_budget": 1.5 })), 422, "invalid_body"),
        case("POST", "/v1/contexts/reconstruct", j(json!({ "query": "x", "token_budget": "ten" })), 422, "invalid_body"),
        case("POST", "/v1/contexts/reconstruct", j(json!({ "query": "", "token_budget": 100 })), 422, "invalid_value"),
        case("POST", "/v1/contexts/reconstruct", j(json!({ "query": "   ", "token_budget": 100 })), 422, "invalid_value"),
        case("POST", "/v1/contexts/reconstruct", j(json!({ "query": "q".repeat(2001), "token_budget": 100 })), 422, "invalid_value"),
        case("POST", "/v1/contexts/reconstruct", j(json!({ "query": "x", "token_budget": 100, "tokenizer": "gpt2" })), 422, "invalid_body"),
        case("POST", "/v1/contexts/reconstruct", j(json!({ "query": "x", "token_budget": 100, "order": "random" })), 422, "invalid_body"),
        case("POST", "/v1/contexts/reconstruct", j(json!({ "query": "x", "token_budget": 100, "session_id": "" })), 422, "invalid_value"),
        case("POST", "/v1/contexts/reconstruct", j(json!({ "query": "x", "token_budget": 100, "include_memories": "yes" })), 422, "invalid_body"),
        // relationships
        case("POST", "/v1/relationships", j(json!({ "source": "m1", "target": "m1", "relationship_type": "r" })), 422, "invalid_value"),
        case("POST", "/v1/relationships", j(json!({ "source": "m1", "target": "m2", "relationship_type": "" })), 422, "invalid_value"),
        case("POST", "/v1/relationships", j(json!({ "source": "m1", "target": "m2", "relationship_type": "has space" })), 422, "invalid_value"),
        case("POST", "/v1/relationships", j(json!({ "source": "m1", "target": "m2", "relationship_type": "r".repeat(65) })), 422, "invalid_value"),
        case("POST", "/v1/relationships", j(json!({ "source": "m1", "target": "m2", "relationship_type": "r", "weight": 1.5 })), 422, "invalid_value"),
        case("POST", "/v1/relationships", j(json!({ "source": "m1", "target": "m2", "relationship_type": "r", "weight": -0.1 })), 422, "invalid_value"),
        case("POST", "/v1/relationships", j(json!({ "source": "m1", "target": "m2", "relationship_type": "r", "metadata": [1] })), 422, "invalid_value"),
        case("POST", "/v1/relationships", j(json!({ "source": "m1", "target": "m2", "relationship_type": "r", "metadata": { "m": "x".repeat(70_000) } })), 422, "invalid_value"),
        case("POST", "/v1/relationships", j(json!({ "source": long_id, "target": "m2", "relationship_type": "r" })), 422, "invalid_value"),
        case("POST", "/v1/relationships", j(json!({ "source": "", "target": "m2", "relationship_type": "r" })), 422, "invalid_value"),
        case("POST", "/v1/relationships", j(json!({ "source": "m1", "relationship_type": "r" })), 422, "invalid_body"),
        case("POST", "/v1/relationships", j(json!({ "source": "m1", "target": "m2", "relationship_type": "r", "tenant": "x" })), 422, "invalid_body"),
        case("POST", "/v1/relationships", j(json!({ "source": "m1", "target": "nope", "relationship_type": "r" })), 404, "memory_not_found"),
        case("POST", "/v1/relationships", j(json!({ "source": "m1", "target": "m2", "relationship_type": "related_to" })), 409, "relationship_exists"),
        case("POST", "/v1/relationships", raw("[}"), 400, "malformed_json"),
        case("GET", "/v1/relationships/not-a-uuid", Body::None, 404, "not_found"),
        case("GET", format!("/v1/relationships/{unknown}"), Body::None, 404, "relationship_not_found"),
        case("DELETE", "/v1/relationships/123", Body::None, 404, "not_found"),
        case("GET", "/v1/memories/m1/neighbours?direction=sideways", Body::None, 400, "invalid_query"),
        case("GET", "/v1/memories/m1/neighbours?limit=0", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories/m1/neighbours?limit=10000", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories/m1/neighbours?relationship_type=bad!", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories/m1/neighbours?depth=2", Body::None, 400, "invalid_query"),
        case("GET", "/v1/memories/m1/graph?depth=4", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories/m1/graph?depth=0", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories/m1/graph?depth=-1", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories/m1/graph?depth=abc", Body::None, 400, "invalid_query"),
        case("GET", "/v1/memories/m1/graph?depth=99999999999", Body::None, 400, "invalid_query"),
        case("GET", "/v1/memories/m1/graph?max_nodes=0", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories/m1/graph?max_nodes=501", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories/m1/graph?direction=up", Body::None, 400, "invalid_query"),
        case("GET", format!("/v1/memories/{long_id}/graph"), Body::None, 404, "memory_not_found"),
        // audit, usage
        case("GET", "/v1/audit?limit=0", Body::None, 422, "invalid_value"),
        case("GET", "/v1/audit?limit=501", Body::None, 422, "invalid_value"),
        case("GET", "/v1/audit?cursor=%%%", Body::None, 400, "invalid_cursor"),
        case("GET", "/v1/audit?cursor=bm9wZQ", Body::None, 400, "invalid_cursor"),
        case("GET", "/v1/audit?since=last-week", Body::None, 400, "invalid_query"),
        case("GET", "/v1/audit?tenant=other", Body::None, 400, "invalid_query"),
        // policies
        case("POST", "/v1/policies", j(json!({ "name": "", "resource_type": "memories", "permissions": ["read"] })), 422, "invalid_value"),
        case("POST", "/v1/policies", j(json!({ "name": "n".repeat(201), "resource_type": "memories", "permissions": ["read"] })), 422, "invalid_value"),
        case("POST", "/v1/policies", j(json!({ "name": "p", "resource_type": "bogus", "permissions": ["read"] })), 422, "invalid_value"),
        case("POST", "/v1/policies", j(json!({ "name": "p", "resource_type": "memories", "permissions": [] })), 422, "invalid_value"),
        case("POST", "/v1/policies", j(json!({ "name": "p", "resource_type": "memories", "permissions": ["fly"] })), 422, "invalid_value"),
        case("POST", "/v1/policies", j(json!({ "name": "p", "resource_type": "memories", "permissions": "read" })), 422, "invalid_body"),
        case("POST", "/v1/policies", j(json!({ "name": "p", "resource_type": "memories", "permissions": ["read"], "resource_pattern": "" })), 422, "invalid_value"),
        case("POST", "/v1/policies", j(json!({ "name": "p", "resource_type": "memories", "permissions": ["read"], "resource_pattern": "p".repeat(300) })), 422, "invalid_value"),
        case("POST", "/v1/policies", j(json!({ "name": "p", "resource_type": "memories", "permissions": ["read"], "conditions": [1] })), 422, "invalid_value"),
        case("POST", "/v1/policies", j(json!({ "name": "p", "resource_type": "memories", "permissions": ["read"], "conditions": { "c": "x".repeat(70_000) } })), 422, "invalid_value"),
        case("GET", "/v1/policies?limit=0", Body::None, 422, "invalid_value"),
        case("GET", "/v1/policies?limit=501", Body::None, 422, "invalid_value"),
        case("GET", "/v1/policies?limit=ten", Body::None, 400, "invalid_query"),
        case("GET", "/v1/policies?cursor=garbage!!", Body::None, 400, "invalid_cursor"),
        case("GET", "/v1/policies?name=p", Body::None, 400, "invalid_query"),
        case("POST", "/v1/policies", j(json!({ "name": "p", "resource_type": "memories", "permissions": ["read"], "api_key_id": "not-a-uuid" })), 422, "invalid_body"),
        case("POST", "/v1/policies", j(json!({ "name": "p", "resource_type": "memories", "permissions": ["read"], "api_key_id": unknown })), 422, "invalid_value"),
        case("POST", "/v1/policies", j(json!({ "name": "existing-policy", "resource_type": "audit", "permissions": ["read"] })), 409, "policy_exists"),
        case("GET", "/v1/policies/not-a-uuid", Body::None, 404, "not_found"),
        case("PATCH", format!("/v1/policies/{policy}"), j(json!({})), 422, "invalid_body"),
        case("PATCH", format!("/v1/policies/{policy}"), j(json!({ "is_active": "yes" })), 422, "invalid_body"),
        case("PATCH", format!("/v1/policies/{policy}"), raw("is_active=false"), 400, "malformed_json"),
        case("DELETE", "/v1/policies/zzz", Body::None, 404, "not_found"),
        // retention and the archive
        case("GET", "/v1/retention/users", Body::None, 404, "retention_resource_not_found"),
        case("GET", "/v1/retention/memories", Body::None, 404, "retention_policy_not_found"),
        case("PUT", "/v1/retention/users", j(json!({ "retention_days": 30 })), 404, "retention_resource_not_found"),
        case("PUT", "/v1/retention/memories", j(json!({})), 422, "invalid_value"),
        case("PUT", "/v1/retention/memories", j(json!({ "archival_policy": "archive" })), 422, "invalid_value"),
        case("PUT", "/v1/retention/memories", j(json!({ "retention_days": 0 })), 422, "invalid_value"),
        case("PUT", "/v1/retention/memories", j(json!({ "retention_days": 36_501 })), 422, "invalid_value"),
        case("PUT", "/v1/retention/memories", j(json!({ "retention_days": "ten" })), 422, "invalid_body"),
        case("PUT", "/v1/retention/memories", j(json!({ "retention_days": 1.5 })), 422, "invalid_body"),
        case("PUT", "/v1/retention/memories", j(json!({ "max_count": 0 })), 422, "invalid_value"),
        case("PUT", "/v1/retention/memories", j(json!({ "max_count": 2_000_000_000i64 })), 422, "invalid_value"),
        case("PUT", "/v1/retention/memories", j(json!({ "retention_days": 30, "archival_policy": "shred" })), 422, "invalid_value"),
        case("PUT", "/v1/retention/memories", j(json!({ "retention_days": 30, "basis": "updated_at" })), 422, "invalid_value"),
        case("PUT", "/v1/retention/audit_log", j(json!({ "retention_days": 30, "max_count": 5 })), 422, "invalid_value"),
        case("PUT", "/v1/retention/audit_log", j(json!({ "retention_days": 30, "basis": "last_accessed" })), 422, "invalid_value"),
        case("DELETE", "/v1/retention/memories", Body::None, 404, "retention_policy_not_found"),
        case("DELETE", "/v1/retention/x", Body::None, 404, "retention_resource_not_found"),
        case("POST", "/v1/retention/preview?limit=-1", Body::None, 422, "invalid_value"),
        case("POST", "/v1/retention/preview?limit=1001", Body::None, 422, "invalid_value"),
        case("POST", "/v1/retention/preview?limit=ten", Body::None, 400, "invalid_query"),
        case("POST", "/v1/retention/preview?tenant=other", Body::None, 400, "invalid_query"),
        case("GET", "/v1/memories?archived=true&tags=a", Body::None, 422, "invalid_value"),
        case("GET", "/v1/memories?archived=yes", Body::None, 400, "invalid_query"),
        case("GET", "/v1/memories?archived=true&cursor=garbage!!", Body::None, 400, "invalid_cursor"),
        case("GET", "/v1/memories/m1?archived=true", Body::None, 404, "memory_not_found"),
        case("POST", "/v1/memories/m1/restore", Body::None, 409, "memory_exists"),
        case("POST", "/v1/memories/ghost/restore", Body::None, 404, "memory_not_found"),
        case("POST", format!("/v1/memories/{long_id}/restore"), Body::None, 404, "memory_not_found"),
        // federated learning (the tenant federates and is registered at `basic`)
        case("POST", "/v1/federated/participant", j(json!({ "privacy_level": "max" })), 422, "invalid_value"),
        case("POST", "/v1/federated/participant", j(json!({})), 422, "invalid_body"),
        case("POST", "/v1/federated/participant", j(json!({ "privacy_level": "basic", "budget": 100 })), 422, "invalid_body"),
        case("POST", "/v1/federated/sessions", j(json!({ "topic": { "tags": ["t"] }, "aggregation_method": "weighted", "privacy_level": "basic" })), 422, "invalid_body"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "topic": {} }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "topic": { "query": "" } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "topic": { "query": "no embedder here" } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "topic": { "tags": [""] } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "topic": { "filter": { "min_relevance": 2 } } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "topic": { "filter": { "contains": vec![1; 64] } } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "topic": { "tags": ["t"], "max_memories": 0 } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "topic": { "tags": ["t"], "max_memories": 1001 } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "topic": { "tags": ["t"], "min_similarity": 0.5 } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "topic": { "tags": ["t"], "label_fields": (0..9).map(|i| format!("f{i}")).collect::<Vec<_>>() } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "topic": { "tags": ["t"], "lesson_fields": [""] } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "topic": { "tags": ["t"], "tenant": "x" } }))), 422, "invalid_body"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "session_id": "bad id!" }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "session_id": "s".repeat(300) }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "aggregation_method": "average" }))), 422, "invalid_body"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "privacy_level": "differential" }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "privacy_level": "differential", "epsilon": 0 }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "privacy_level": "differential", "epsilon": 11 }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "privacy_level": "differential", "epsilon": -1 }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "privacy_level": "differential", "epsilon": 1, "delta": 1e-3 }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "epsilon": 1 }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "min_participants": 1 }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "min_participants": 5000 }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "min_participants": 3, "max_participants": 2 }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "min_participants": 1.5 }))), 422, "invalid_body"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "deadline": "2001-01-01T00:00:00Z" }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "deadline": (Utc::now() + Duration::days(1000)).to_rfc3339() }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "deadline": "soon" }))), 422, "invalid_body"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "aggregation_method": "consensus", "min_participants": 3 }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "robustness": { "byzantine": 1 } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "aggregation_method": "consensus", "robustness": { "beta": 0.5 } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "aggregation_method": "consensus", "robustness": { "trim": "median", "beta": 0.2 } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "aggregation_method": "hybrid", "robustness": { "trim": "median" } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "aggregation_method": "consensus", "robustness": { "byzantine": 101 } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "aggregation_method": "consensus", "robustness": { "trim": "sometimes" } }))), 422, "invalid_body"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "secure": { "min_tenants": 3 } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "privacy_level": "secure", "epsilon": 1, "secure": { "min_tenants": 0 } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "privacy_level": "secure", "epsilon": 1, "secure": { "redaction": { "patterns": ["("] } } }))), 422, "invalid_value"),
        case("POST", "/v1/federated/sessions", j(fs(json!({ "description": "nul\u{0}" }))), 422, "invalid_value"),
        case("GET", "/v1/federated/sessions?limit=0", Body::None, 422, "invalid_value"),
        case("GET", "/v1/federated/sessions?status=done", Body::None, 400, "invalid_query"),
        case("GET", "/v1/federated/sessions?cursor=garbage!!", Body::None, 400, "invalid_cursor"),
        case("GET", "/v1/federated/sessions?tenant=other", Body::None, 400, "invalid_query"),
        case("GET", "/v1/federated/sessions/nope", Body::None, 404, "session_not_found"),
        case("GET", format!("/v1/federated/sessions/{long_id}"), Body::None, 404, "session_not_found"),
        case("POST", "/v1/federated/sessions/nope/join", Body::None, 404, "session_not_found"),
        case("POST", "/v1/federated/sessions/nope/leave", Body::None, 404, "session_not_found"),
        case("POST", "/v1/federated/sessions/nope/aggregate", Body::None, 404, "session_not_found"),
        case("POST", "/v1/federated/sessions/nope/cancel", Body::None, 404, "session_not_found"),
        case("GET", "/v1/federated/sessions/nope/insights", Body::None, 404, "session_not_found"),
        // sharing rules
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": "bad id!", "conditions": { "tags": ["t"] } })), 422, "invalid_value"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": "nobody", "conditions": { "tags": ["t"] } })), 404, "target_tenant_not_found"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": tenant, "conditions": { "tags": ["t"] } })), 422, "invalid_value"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": "*", "conditions": {} })), 422, "invalid_value"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": "*", "conditions": { "tags": [""] } })), 422, "invalid_value"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": "*", "conditions": { "contains": nested(20) } })), 422, "invalid_value"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": "*", "conditions": { "contains": { "k": "x".repeat(9000) } } })), 422, "invalid_value"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": "*", "conditions": { "owner": "x" } })), 422, "invalid_body"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": "*" })), 422, "invalid_body"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": "*", "conditions": { "tags": ["t"] }, "resource_type": "contexts" })), 422, "invalid_value"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": "*", "conditions": { "tags": ["t"] }, "permissions": ["write"] })), 422, "invalid_value"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": "*", "conditions": { "tags": ["t"] }, "anonymization": { "patterns": ["("] } })), 422, "invalid_value"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": "*", "conditions": { "tags": ["t"] }, "anonymization": { "patterns": vec!["a"; 33] } })), 422, "invalid_value"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": "*", "conditions": { "tags": ["t"] }, "anonymization": { "mask": true } })), 422, "invalid_body"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": "*", "conditions": { "tags": ["t"] }, "expires_at": "2001-01-01T00:00:00Z" })), 422, "invalid_value"),
        case("POST", "/v1/sharing-rules", j(json!({ "target_tenant_id": 7, "conditions": { "tags": ["t"] } })), 422, "invalid_body"),
        case("GET", "/v1/sharing-rules?limit=0", Body::None, 422, "invalid_value"),
        case("GET", "/v1/sharing-rules?cursor=garbage!!", Body::None, 400, "invalid_cursor"),
        case("GET", "/v1/sharing-rules?target=x", Body::None, 400, "invalid_query"),
        case("GET", "/v1/sharing-rules/not-a-uuid", Body::None, 404, "not_found"),
        case("GET", format!("/v1/sharing-rules/{unknown}"), Body::None, 404, "sharing_rule_not_found"),
        case("PATCH", format!("/v1/sharing-rules/{unknown}"), j(json!({})), 422, "invalid_value"),
        case("PATCH", format!("/v1/sharing-rules/{unknown}"), j(json!({ "is_active": "no" })), 422, "invalid_body"),
        case("PATCH", format!("/v1/sharing-rules/{unknown}"), j(json!({ "expires_at": "2001-01-01T00:00:00Z" })), 422, "invalid_value"),
        case("PATCH", format!("/v1/sharing-rules/{unknown}"), j(json!({ "conditions": {} })), 422, "invalid_value"),
        case("PATCH", format!("/v1/sharing-rules/{unknown}"), j(json!({ "is_active": false })), 404, "sharing_rule_not_found"),
        case("DELETE", "/v1/sharing-rules/zzz", Body::None, 404, "not_found"),
        case("DELETE", format!("/v1/sharing-rules/{unknown}"), Body::None, 404, "sharing_rule_not_found"),
        case("POST", "/v1/memories/search", j(json!({ "query": "x", "scope": "everyone" })), 422, "invalid_body"),
    ];
    // The admin surface.
    let admin_cases = vec![
        case("POST", "/v1/admin/projects", j(json!({ "name": "", "owner_id": "o" })), 422, "invalid_value"),
        case("POST", "/v1/admin/projects", j(json!({ "name": "n".repeat(201), "owner_id": "o" })), 422, "invalid_value"),
        case("POST", "/v1/admin/projects", j(json!({ "name": "p" })), 422, "invalid_body"),
        case("POST", "/v1/admin/projects", j(json!({ "name": "p", "owner_id": "o", "settings": [1] })), 422, "invalid_value"),
        case("POST", "/v1/admin/projects", j(json!({ "name": "p", "owner_id": "o", "description": "nul\u{0}" })), 422, "invalid_value"),
        case("POST", "/v1/admin/projects", j(json!({ "name": "p", "owner_id": "o", "description": "d".repeat(10_001) })), 422, "invalid_value"),
        case("POST", "/v1/admin/projects", j(json!({ "name": "p", "owner_id": "o", "settings": nested(20) })), 422, "invalid_value"),
        case("POST", "/v1/admin/projects", j(json!({ "name": "project of tenant-bad", "owner_id": "o" })), 409, "project_exists"),
        case("POST", "/v1/admin/projects", raw("{'name': 'p'}"), 400, "malformed_json"),
        case("GET", "/v1/admin/projects?limit=0", Body::None, 422, "invalid_value"),
        case("GET", "/v1/admin/projects?after=nope", Body::None, 422, "invalid_value"),
        case("GET", "/v1/admin/projects?cascade=true", Body::None, 400, "invalid_query"),
        case("GET", "/v1/admin/projects/nope", Body::None, 404, "not_found"),
        case("GET", format!("/v1/admin/projects/{unknown}"), Body::None, 404, "project_not_found"),
        case("PATCH", format!("/v1/admin/projects/{project}"), j(json!({ "name": " " })), 422, "invalid_value"),
        case("PATCH", format!("/v1/admin/projects/{project}"), j(json!({ "settings": 5 })), 422, "invalid_value"),
        case("PATCH", format!("/v1/admin/projects/{project}"), j(json!({ "id": unknown })), 422, "invalid_body"),
        case("PATCH", format!("/v1/admin/projects/{unknown}"), j(json!({ "name": "x" })), 404, "project_not_found"),
        case("DELETE", format!("/v1/admin/projects/{project}?cascade=maybe"), Body::None, 400, "invalid_query"),
        case("DELETE", format!("/v1/admin/projects/{project}"), Body::None, 409, "project_has_tenants"),
        case("POST", "/v1/admin/tenants", j(json!({ "tenant_id": "bad id!", "project_id": project, "name": "t" })), 422, "invalid_value"),
        case("POST", "/v1/admin/tenants", j(json!({ "tenant_id": "t".repeat(200), "project_id": project, "name": "t" })), 422, "invalid_value"),
        case("POST", "/v1/admin/tenants", j(json!({ "tenant_id": "", "project_id": project, "name": "t" })), 422, "invalid_value"),
        case("POST", "/v1/admin/tenants", j(json!({ "tenant_id": "t-1", "project_id": "nope", "name": "t" })), 422, "invalid_body"),
        case("POST", "/v1/admin/tenants", j(json!({ "tenant_id": "t-1", "project_id": unknown, "name": "t" })), 404, "project_not_found"),
        case("POST", "/v1/admin/tenants", j(json!({ "tenant_id": "t-1", "project_id": project, "name": "t", "isolation_level": "secret" })), 422, "invalid_body"),
        case("POST", "/v1/admin/tenants", j(json!({ "tenant_id": "t-1", "project_id": project, "name": "t", "max_memories": 0 })), 422, "invalid_value"),
        case("POST", "/v1/admin/tenants", j(json!({ "tenant_id": "t-1", "project_id": project, "name": "t", "max_memories": -5 })), 422, "invalid_value"),
        case("POST", "/v1/admin/tenants", j(json!({ "tenant_id": "t-1", "project_id": project, "name": "t", "max_storage_bytes": 1e20 })), 422, "invalid_body"),
        case("POST", "/v1/admin/tenants", raw(&format!(r#"{{"tenant_id": "t-1", "project_id": "{project}", "name": "t", "max_memories": 99999999999999999999}}"#)), 422, "invalid_body"),
        case("POST", "/v1/admin/tenants", j(json!({ "tenant_id": tenant, "project_id": project, "name": "t" })), 409, "tenant_exists"),
        case("GET", "/v1/admin/tenants?project_id=nope", Body::None, 400, "invalid_query"),
        case("GET", "/v1/admin/tenants?limit=10000", Body::None, 422, "invalid_value"),
        case("GET", format!("/v1/admin/tenants/{}", "t".repeat(300)), Body::None, 404, "tenant_not_found"),
        case("GET", "/v1/admin/tenants/nul%00", Body::None, 422, "invalid_value"),
        case("PATCH", tenants.clone(), j(json!({ "max_memories": 0 })), 422, "invalid_value"),
        case("PATCH", tenants.clone(), j(json!({ "isolation_level": "x" })), 422, "invalid_body"),
        case("PATCH", tenants.clone(), j(json!({ "name": "" })), 422, "invalid_value"),
        case("PATCH", tenants.clone(), j(json!({ "tenant_id": "renamed" })), 422, "invalid_body"),
        case("PATCH", "/v1/admin/tenants/nobody", j(json!({ "name": "x" })), 404, "tenant_not_found"),
        case("DELETE", "/v1/admin/tenants/nobody", Body::None, 404, "tenant_not_found"),
        case("POST", format!("{tenants}/keys"), j(json!({ "name": "k", "scopes": [] })), 422, "invalid_value"),
        case("POST", format!("{tenants}/keys"), j(json!({ "name": "k", "scopes": ["bogus"] })), 422, "invalid_value"),
        case("POST", format!("{tenants}/keys"), j(json!({ "name": "k", "scopes": ["memories:fly"] })), 422, "invalid_value"),
        case("POST", format!("{tenants}/keys"), j(json!({ "name": "k", "scopes": vec!["*"; 33] })), 422, "invalid_value"),
        case("POST", format!("{tenants}/keys"), j(json!({ "name": "k", "scopes": ["*"], "expires_at": "2000-01-01T00:00:00Z" })), 422, "invalid_value"),
        case("POST", format!("{tenants}/keys"), j(json!({ "name": "", "scopes": ["*"] })), 422, "invalid_value"),
        case("POST", format!("{tenants}/keys"), j(json!({ "name": "k", "scopes": "*" })), 422, "invalid_body"),
        case("POST", "/v1/admin/tenants/nobody/keys", j(json!({ "name": "k", "scopes": ["*"] })), 404, "tenant_not_found"),
        case("GET", "/v1/admin/tenants/nobody/keys", Body::None, 404, "tenant_not_found"),
        case("DELETE", format!("{tenants}/keys/not-a-uuid"), Body::None, 404, "not_found"),
        case("DELETE", format!("{tenants}/keys/{unknown}"), Body::None, 404, "api_key_not_found"),
        case("DELETE", format!("/v1/admin/tenants/nobody/keys/{key_id}"), Body::None, 404, "api_key_not_found"),
        case("GET", "/v1/admin/tenants/nobody/usage", Body::None, 404, "tenant_not_found"),
        case("GET", "/v1/admin/tenants/nul%00/usage", Body::None, 422, "invalid_value"),
        case("GET", "/v1/admin/analytics?limit=0", Body::None, 422, "invalid_value"),
        case("GET", "/v1/admin/analytics?limit=501", Body::None, 422, "invalid_value"),
        case("GET", "/v1/admin/analytics?days=0", Body::None, 422, "invalid_value"),
        case("GET", "/v1/admin/analytics?days=91", Body::None, 422, "invalid_value"),
        case("GET", "/v1/admin/analytics?days=seven", Body::None, 400, "invalid_query"),
        case("GET", "/v1/admin/analytics?refresh=maybe", Body::None, 400, "invalid_query"),
        case("GET", "/v1/admin/analytics?tenant=x", Body::None, 400, "invalid_query"),
        case("PATCH", tenants.clone(), j(json!({ "privacy_budget": { "epsilon": 0, "delta": 1e-6 } })), 422, "invalid_value"),
        case("PATCH", tenants.clone(), j(json!({ "privacy_budget": { "epsilon": 101, "delta": 1e-6 } })), 422, "invalid_value"),
        case("PATCH", tenants.clone(), j(json!({ "privacy_budget": { "epsilon": 10, "delta": 0.01 } })), 422, "invalid_value"),
        case("PATCH", tenants.clone(), j(json!({ "privacy_budget": { "epsilon": 10 } })), 422, "invalid_body"),
        case("GET", "/v1/admin/tenants/nobody/federated", Body::None, 404, "tenant_not_found"),
        case("GET", format!("/v1/admin/tenants/{}/federated", "t".repeat(300)), Body::None, 404, "tenant_not_found"),
    ];
    v.extend(admin_cases.into_iter().map(admin));
    v
}

/// The documented operation a concrete request goes to, as `METHOD /template`.
fn route_of(ops: &[Operation], method: &str, path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    ops.iter()
        .filter(|o| o.method == method)
        .find(|o| {
            let t: Vec<&str> = o.path.split('/').collect();
            t.len() == segments.len()
                && t.iter()
                    .zip(&segments)
                    .all(|(t, s)| t == s || (t.starts_with('{') && t.ends_with('}')))
        })
        .map(|o| format!("{} {}", o.method, o.path))
}

#[tokio::test]
async fn bad_input_on_every_endpoint_is_a_4xx_with_the_error_shape() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("tenant-bad").await;
    // Federating and registered, so the federated endpoints get as far as their ids.
    app.admin(
        "PATCH",
        "/v1/admin/tenants/tenant-bad",
        Some(json!({ "isolation_level": "federated" })),
    )
    .await
    .ok(200);
    app.post(
        "/v1/federated/participant",
        &t.key,
        json!({ "privacy_level": "basic" }),
    )
    .await
    .ok(200);
    let m1 = app
        .create_memory(&t.key, "m1", json!({"text": "one"}))
        .await;
    app.create_memory(&t.key, "m2", json!({"text": "two"}))
        .await;
    let rel = app.link(&t.key, "m1", "m2", "related_to", 1.0).await;
    let rel = rel["id"].as_str().expect("id").to_owned();
    let policy = app
        .post(
            "/v1/policies",
            &t.key,
            json!({"name": "existing-policy", "resource_type": "audit", "permissions": ["read"]}),
        )
        .await;
    let policy = policy.ok(201)["id"].as_str().expect("id").to_owned();
    app.post(
        "/v1/contexts",
        &t.key,
        json!({ "context_id": "c1", "text": "one" }),
    )
    .await
    .ok(201);
    let before = app.get("/v1/memories?include_embedding=true", &t.key).await;
    let contexts_before = app.get("/v1/contexts?limit=500", &t.key).await;

    let mut tally = Tally::default();
    let cases = cases(&t.project_id, &t.tenant_id, &t.key_id, &policy);
    let ops = openapi_operations();
    let mut covered = std::collections::BTreeSet::new();
    for c in &cases {
        let r = send(&app, &t.key, c).await;
        let path: String = c.path.chars().take(80).collect();
        tally.check(
            &format!("{} {path}", c.method),
            &r,
            Some(c.status),
            Some(c.code),
        );
        covered.insert(route_of(&ops, c.method, &c.path));
    }

    // Generic rows for every operation that takes a body: broken JSON, the wrong JSON type, an
    // unknown field, the wrong media type, no body at all.
    for op in ops.iter().filter(|o| o.has_body) {
        let path = op
            .path
            .replace("{memory_id}", "m1")
            .replace("{context_id}", "c1")
            .replace("{tenant_id}", &t.tenant_id)
            .replace("{key_id}", &t.key_id)
            .replace(
                "{id}",
                if op.path.contains("policies") {
                    &policy
                } else if op.path.contains("relationships") {
                    &rel
                } else {
                    &t.project_id
                },
            );
        let key = if op.path.starts_with("/v1/admin") {
            app.admin_key.clone()
        } else {
            t.key.clone()
        };
        let what = format!("{} {}", op.method, op.path);
        for (body, ct, status, code) in [
            (Some("{"), "application/json", 400, "malformed_json"),
            (
                Some("{\"unterminated"),
                "application/json",
                400,
                "malformed_json",
            ),
            (Some("{,}"), "application/json", 400, "malformed_json"),
            (Some("["), "application/json", 400, "malformed_json"),
            (
                Some("\u{feff}{}"),
                "application/json",
                400,
                "malformed_json",
            ),
            (Some("[1, 2, 3]"), "application/json", 422, "invalid_body"),
            (Some("\"text\""), "application/json", 422, "invalid_body"),
            (Some("null"), "application/json", 422, "invalid_body"),
            (
                Some("{\"__unknown_field__\": true}"),
                "application/json",
                422,
                "invalid_body",
            ),
            (Some("{}"), "text/plain", 415, "unsupported_media_type"),
            (None, "application/json", 415, "unsupported_media_type"),
        ] {
            let r = app
                .call_raw(
                    &op.method,
                    &path,
                    Some(&key),
                    body.map(|b| b.as_bytes().to_vec()),
                    body.map(|_| ct),
                )
                .await;
            tally.check(
                &format!("{what} {body:?} as {ct}"),
                &r,
                Some(status),
                Some(code),
            );
        }
        covered.insert(Some(format!("{} {}", op.method, op.path)));
    }

    // Odd but valid input is answered, not crashed on.
    for (method, path, body) in [
        (
            "POST",
            "/v1/memories/search",
            json!({ "query": "&|!():*'\\ <-> \"unterminated", "mode": "text" }),
        ),
        (
            "POST",
            "/v1/memories/search",
            json!({ "query": "-", "mode": "text", "expand": true }),
        ),
        (
            "POST",
            "/v1/memories/search",
            json!({ "query": "ü 漢字 🦀", "vector": vector(5), "mode": "hybrid", "k": 100 }),
        ),
        (
            "POST",
            "/v1/memories/search",
            json!({ "vector": vector(5), "min_similarity": -1, "filter": { "contains": [1] } }),
        ),
        ("GET", "/v1/memories/%F0%9F%A6%80%20x", Value::Null),
        (
            "GET",
            "/v1/memories/a%2Fb/graph?depth=3&max_nodes=500",
            Value::Null,
        ),
        (
            "GET",
            &format!(
                "/v1/memories{}",
                query(&[("contains", "\"str\""), ("any_tags", "a, b ,c")])
            ),
            Value::Null,
        ),
        ("GET", "/v1/audit?action=&outcome=&request_id=", Value::Null),
    ] {
        let body = (!body.is_null()).then_some(body);
        let r = app.call(method, path, Some(&t.key), body).await;
        assert!(
            r.status == 200 || r.status == 404,
            "{method} {path}: {} {}",
            r.status,
            r.text
        );
    }

    // Nothing was written by any of it.
    let after = app.get("/v1/memories?include_embedding=true", &t.key).await;
    assert_eq!(before.body, after.body, "bad input changed the memories");
    let contexts_after = app.get("/v1/contexts?limit=500", &t.key).await;
    assert_eq!(
        contexts_before.body, contexts_after.body,
        "bad input changed the contexts"
    );
    assert_eq!(app.get("/v1/memories/m1", &t.key).await.body, m1);
    // Every operation that takes any input has bad-input cases.
    let without_input = [
        "GET /healthz",
        "GET /readyz",
        "GET /v1/usage",
        "POST /v1/admin/maintenance",
        "GET /v1/admin/health",
        "GET /v1/federated/participant",
        "DELETE /v1/federated/participant",
    ];
    let uncovered: Vec<String> = ops
        .iter()
        .map(|o| format!("{} {}", o.method, o.path))
        .filter(|o| !covered.contains(&Some(o.clone())) && !without_input.contains(&o.as_str()))
        .collect();
    assert!(
        uncovered.is_empty(),
        "operations without bad-input cases: {uncovered:?}"
    );
    println!(
        "bad-input sweep covers {} of {} documented operations",
        covered.iter().flatten().count(),
        ops.len()
    );
    tally.finish("bad-input sweep");
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_on_every_endpoint_with_a_body() {
    let app = TestApp::spawn_with(
        Limits {
            max_body_bytes: 64 * 1024,
            ..Default::default()
        },
        None,
    )
    .await;
    let t = app.new_tenant("tenant-413").await;
    app.create_memory(&t.key, "m1", json!({"text": "one"}))
        .await;
    // Just under the limit still works.
    let fits = json!({ "memory_id": "m-fits", "content": { "t": "x".repeat(60 * 1024) } });
    app.post("/v1/memories", &t.key, fits).await.ok(201);

    let mut tally = Tally::default();
    let too_big = json!({ "content": { "t": "x".repeat(100 * 1024) }, "embedding": vector(2) });
    for op in openapi_operations().into_iter().filter(|o| o.has_body) {
        let path = op
            .path
            .replace("{memory_id}", "m1")
            .replace("{context_id}", "c1")
            .replace("{tenant_id}", &t.tenant_id)
            .replace("{id}", &Uuid::new_v4().to_string());
        let key = if op.path.starts_with("/v1/admin") {
            app.admin_key.clone()
        } else {
            t.key.clone()
        };
        let r = app
            .call(&op.method, &path, Some(&key), Some(too_big.clone()))
            .await;
        tally.check(
            &format!("{} {}", op.method, op.path),
            &r,
            Some(413),
            Some("body_too_large"),
        );
        // A 1000-item batch of vectors is far over 64 KiB too.
        if op.path == "/v1/memories/batch" {
            let batch: Vec<Value> = (0..1000)
                .map(|i| json!({ "content": { "i": i }, "embedding": vector(i) }))
                .collect();
            let r = app
                .call(
                    &op.method,
                    &path,
                    Some(&key),
                    Some(json!({ "memories": batch })),
                )
                .await;
            tally.check(
                "POST /v1/memories/batch (1000 vectors)",
                &r,
                Some(413),
                Some("body_too_large"),
            );
        }
    }
    assert_eq!(app.memory_count(&t.key).await, 2);
    tally.finish("body-limit sweep");
}
