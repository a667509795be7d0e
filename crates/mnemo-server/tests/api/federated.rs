//! Federated learning through the API: registration, the session lifecycle (and its refusals),
//! budgets (exhaustion, concurrent sessions), strict tenants, projects, the deadline job,
//! contributions that never outlive their session, and the worked example (5 tenants, one
//! poisoned) whose output docs/federated.md shows.

use chrono::{Duration, Utc};
use serde_json::{json, Value};

use crate::harness::{Resp, TenantHandle, TestApp};

const D: usize = 384;

/// Tenants of one project with isolation `federated`, each registered at `level`.
pub async fn federated_tenants(
    app: &TestApp,
    project: &str,
    names: &[&str],
    level: &str,
) -> Vec<TenantHandle> {
    let mut out = Vec::new();
    for name in names {
        let t = app
            .new_tenant_in(project, name, json!({ "isolation_level": "federated" }))
            .await;
        app.post(
            "/v1/federated/participant",
            &t.key,
            json!({ "privacy_level": level }),
        )
        .await
        .ok(200);
        out.push(t);
    }
    out
}

/// A small deterministic generator (xorshift64*), in [-1, 1).
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    fn vector(&mut self) -> Vec<f64> {
        (0..D).map(|_| self.next()).collect()
    }
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn unit(v: &[f64]) -> Vec<f64> {
    let n = norm(v);
    v.iter().map(|x| x / n).collect()
}

fn dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

fn mean(vs: &[Vec<f64>]) -> Vec<f64> {
    (0..D)
        .map(|k| vs.iter().map(|v| v[k]).sum::<f64>() / vs.len() as f64)
        .collect()
}

/// Stores memories tagged `tag` with these embeddings (as f32, as the database keeps them);
/// returns their centroid computed from the stored values.
async fn add_memories(
    app: &TestApp,
    t: &TenantHandle,
    tag: &str,
    vectors: &[Vec<f64>],
    content: impl Fn(usize) -> Value,
) -> Vec<f64> {
    let memories: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({ "memory_id": format!("{tag}-{i}"), "tags": [tag], "content": content(i),
                    "embedding": v.iter().map(|x| *x as f32).collect::<Vec<f32>>() })
        })
        .collect();
    app.post(
        "/v1/memories/batch",
        &t.key,
        json!({ "memories": memories }),
    )
    .await
    .ok(201);
    let stored: Vec<Vec<f64>> = vectors
        .iter()
        .map(|v| v.iter().map(|x| f64::from(*x as f32)).collect())
        .collect();
    mean(&stored)
}

/// A few memories on the topic for each tenant (vectors around one direction).
async fn topic_memories(app: &TestApp, tenants: &[TenantHandle], tag: &str) {
    let mut g = Gen(0xFEED_0001);
    let topic = unit(&g.vector());
    for t in tenants {
        let vectors: Vec<Vec<f64>> = (0..4)
            .map(|_| {
                let j = unit(&g.vector());
                unit(
                    &topic
                        .iter()
                        .zip(&j)
                        .map(|(a, b)| a + 0.5 * b)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        add_memories(app, t, tag, &vectors, |i| {
            json!({ "text": format!("note {i}"), "outcome": "success", "lessons": ["Pin versions"] })
        })
        .await;
    }
}

fn deadline(days: i64) -> String {
    (Utc::now() + Duration::days(days)).to_rfc3339()
}

fn session(
    id: &str,
    tag: &str,
    method: &str,
    level: &str,
    min: i32,
    epsilon: Option<f64>,
) -> Value {
    let mut b = json!({
        "session_id": id, "topic": { "tags": [tag] }, "aggregation_method": method,
        "privacy_level": level, "min_participants": min, "deadline": deadline(1),
    });
    if let Some(e) = epsilon {
        b["epsilon"] = json!(e);
    }
    b
}

async fn join(app: &TestApp, t: &TenantHandle, id: &str) -> Resp {
    app.post(
        &format!("/v1/federated/sessions/{id}/join"),
        &t.key,
        json!({}),
    )
    .await
}

async fn call(app: &TestApp, t: &TenantHandle, id: &str, what: &str) -> Resp {
    app.post(
        &format!("/v1/federated/sessions/{id}/{what}"),
        &t.key,
        json!({}),
    )
    .await
}

/// Raw contributions of a session, counted by the owner.
async fn contributions_of(app: &TestApp, session_id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM federated_contributions c JOIN federated_sessions s ON s.id = c.session_id
         WHERE s.session_id = $1",
    )
    .bind(session_id)
    .fetch_one(app.store.pool())
    .await
    .expect("count contributions")
}

#[tokio::test]
async fn a_tenant_registers_and_sees_its_level_reputation_and_budget() {
    let app = TestApp::spawn().await;
    let project = app.create_project("fed").await;
    let t = app
        .new_tenant_in(
            &project,
            "tenant-reg",
            json!({ "isolation_level": "shared" }),
        )
        .await;
    app.get("/v1/federated/participant", &t.key)
        .await
        .expect(404, "participant_not_found");
    let r = app
        .post(
            "/v1/federated/participant",
            &t.key,
            json!({ "privacy_level": "differential" }),
        )
        .await;
    let b = r.ok(200);
    assert_eq!(b["privacy_level"], "differential");
    assert_eq!(b["reputation"]["score"], 0.5);
    assert_eq!(b["reputation"]["completed"], 0);
    assert_eq!(b["budget"]["epsilon"], 10.0);
    assert_eq!(b["budget"]["delta"], 1e-6);
    assert_eq!(b["budget"]["spent_epsilon"], 0.0);
    assert_eq!(b["budget"]["remaining_epsilon"], 10.0);
    let again = app
        .post(
            "/v1/federated/participant",
            &t.key,
            json!({ "privacy_level": "secure" }),
        )
        .await;
    assert_eq!(again.ok(200)["privacy_level"], "secure");
    let gone = app
        .call("DELETE", "/v1/federated/participant", Some(&t.key), None)
        .await;
    assert_eq!(gone.ok(200)["is_active"], false);
    assert_eq!(
        app.get("/v1/federated/participant", &t.key).await.ok(200)["is_active"],
        false
    );
    // The administrator sees the same standing, and sets the budget.
    let admin = app
        .admin("GET", "/v1/admin/tenants/tenant-reg/federated", None)
        .await;
    assert_eq!(admin.ok(200)["participant"]["privacy_level"], "secure");
    let patched = app
        .admin(
            "PATCH",
            "/v1/admin/tenants/tenant-reg",
            Some(json!({ "privacy_budget": { "epsilon": 4.0, "delta": 1e-7 } })),
        )
        .await;
    assert_eq!(patched.ok(200)["privacy_budget_epsilon"], 4.0);
    let me = app.get("/v1/federated/participant", &t.key).await;
    assert_eq!(me.ok(200)["budget"]["epsilon"], 4.0);
    assert_eq!(me.body["budget"]["delta"], 1e-7);
}

#[tokio::test]
async fn strict_tenants_are_refused_from_federation_and_sharing() {
    let app = TestApp::spawn().await;
    let project = app.create_project("fed").await;
    let fed = federated_tenants(&app, &project, &["tenant-open"], "differential").await;
    let strict = app
        .new_tenant_in(&project, "tenant-strict", json!({}))
        .await;
    topic_memories(&app, &fed, "topic").await;
    app.post(
        "/v1/federated/sessions",
        &fed[0].key,
        session("s-1", "topic", "weighted", "differential", 2, Some(1.0)),
    )
    .await
    .ok(201);
    for (method, path, body) in [
        (
            "POST",
            "/v1/federated/participant",
            Some(json!({ "privacy_level": "basic" })),
        ),
        ("GET", "/v1/federated/participant", None),
        (
            "POST",
            "/v1/federated/sessions",
            Some(session(
                "s-2",
                "topic",
                "weighted",
                "differential",
                2,
                Some(1.0),
            )),
        ),
        ("GET", "/v1/federated/sessions", None),
        ("GET", "/v1/federated/sessions/s-1", None),
        ("POST", "/v1/federated/sessions/s-1/join", Some(json!({}))),
        ("GET", "/v1/federated/sessions/s-1/insights", None),
        (
            "POST",
            "/v1/sharing-rules",
            Some(json!({ "target_tenant_id": "tenant-open", "conditions": { "tags": ["x"] } })),
        ),
        ("GET", "/v1/sharing-rules", None),
        (
            "POST",
            "/v1/memories/search",
            Some(json!({ "query": "x", "mode": "text", "scope": "shared" })),
        ),
    ] {
        let r = app.call(method, path, Some(&strict.key), body).await;
        r.expect(403, "isolation_strict");
        assert!(r.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("strict"));
    }
    // Nor can a rule be made to share with a strict tenant.
    app.post(
        "/v1/sharing-rules",
        &fed[0].key,
        json!({ "target_tenant_id": "tenant-strict", "conditions": { "tags": ["x"] } }),
    )
    .await
    .expect(403, "target_isolation_strict");
    // A tenant that becomes strict after joining is left out of the release, with the reason.
    let more = federated_tenants(&app, &project, &["tenant-b", "tenant-c"], "differential").await;
    topic_memories(&app, &more, "topic").await;
    for t in fed.iter().chain(&more) {
        join(&app, t, "s-1").await.ok(200);
    }
    app.admin(
        "PATCH",
        "/v1/admin/tenants/tenant-c",
        Some(json!({ "isolation_level": "strict" })),
    )
    .await
    .ok(200);
    let r = call(&app, &fed[0], "s-1", "aggregate").await;
    assert_eq!(r.ok(200)["outcome"]["status"], "completed", "{}", r.text);
    assert_eq!(r.body["outcome"]["participants"], 2);
    assert_eq!(r.body["outcome"]["excluded"], 1);
    let m: (String, String) = sqlx::query_as(
        "SELECT m.status, m.reason FROM federated_memberships m JOIN tenants t ON t.id = m.tenant_id
         WHERE t.tenant_id = 'tenant-c'",
    )
    .fetch_one(app.store.pool())
    .await
    .expect("membership");
    assert_eq!(m.0, "excluded");
    assert!(m.1.starts_with("isolation_strict"), "{}", m.1);
}

#[tokio::test]
async fn a_session_goes_from_forming_to_completed_and_only_contributors_read_the_insight() {
    let app = TestApp::spawn().await;
    let project = app.create_project("fed").await;
    let ts = federated_tenants(
        &app,
        &project,
        &["tenant-1", "tenant-2", "tenant-3", "tenant-4"],
        "differential",
    )
    .await;
    topic_memories(&app, &ts, "topic").await;
    let created = app
        .post(
            "/v1/federated/sessions",
            &ts[0].key,
            session("s-1", "topic", "weighted", "differential", 3, Some(1.0)),
        )
        .await;
    let s = created.ok(201);
    assert_eq!(s["status"], "forming");
    assert_eq!(s["initiated_by_you"], true);
    assert_eq!(s["epsilon"], 1.0);
    assert!(s["charge"]["rho"].as_f64().is_some_and(|r| r > 0.0));
    for (i, t) in ts[..3].iter().enumerate() {
        let r = join(&app, t, "s-1").await;
        let b = r.ok(200);
        assert_eq!(b["participant_count"], i + 1);
        assert_eq!(b["membership"]["status"], "joined");
        assert_eq!(b["status"], if i < 2 { "forming" } else { "active" });
    }
    // Seen by the project's other tenant, which names nobody.
    let seen = app.get("/v1/federated/sessions/s-1", &ts[3].key).await;
    assert_eq!(seen.ok(200)["initiated_by_you"], false);
    assert!(seen.body["membership"].is_null());
    for t in &ts[..3] {
        assert!(!seen.text.contains(&t.tenant_id), "{}", seen.text);
    }
    // Only the initiator aggregates.
    call(&app, &ts[1], "s-1", "aggregate")
        .await
        .expect(403, "not_initiator");
    assert_eq!(contributions_of(&app, "s-1").await, 3);
    let r = call(&app, &ts[0], "s-1", "aggregate").await;
    let b = r.ok(200);
    assert_eq!(b["outcome"]["status"], "completed");
    assert_eq!(b["outcome"]["participants"], 3);
    assert_eq!(b["session"]["status"], "completed");
    assert_eq!(
        contributions_of(&app, "s-1").await,
        0,
        "raw contributions deleted"
    );
    // Contributors read the insight with its privacy statement; nobody else does.
    for t in &ts[..3] {
        let r = app.get("/v1/federated/sessions/s-1/insights", &t.key).await;
        let i = &r.ok(200)["insights"][0];
        assert_eq!(i["epsilon"], 1.0);
        assert_eq!(i["participants"], 3);
        let sigma = i["noise_scale"].as_f64().expect("noise scale");
        assert!(sigma > 0.0);
        let expected = i["expected_error"].as_f64().expect("expected error");
        assert!((expected - sigma * (D as f64).sqrt()).abs() < 1e-9);
        assert_eq!(i["content"]["centroid"].as_array().map(Vec::len), Some(D));
        assert!(
            i["content"]["privacy"]["centroid"]["sensitivity"]["derivation"]
                .as_str()
                .is_some_and(|d| d.contains("weighted mean"))
        );
        assert!(i["content"]["note"]
            .as_str()
            .is_some_and(|n| n.contains("essentially noise")));
        assert!((0.0..=1.0).contains(&i["confidence"].as_f64().unwrap_or(-1.0)));
        let me = app.get("/v1/federated/participant", &t.key).await;
        let budget = &me.ok(200)["budget"];
        assert!(budget["spent_epsilon"]
            .as_f64()
            .is_some_and(|e| e > 0.0 && e < 10.0));
        assert_eq!(me.body["ledger"][0]["session_id"], "s-1");
        assert_eq!(me.body["contributions"], 1);
        assert_eq!(me.body["reputation"]["completed"], 1);
    }
    app.get("/v1/federated/sessions/s-1/insights", &ts[3].key)
        .await
        .expect(403, "not_a_contributor");
    let untouched = app.get("/v1/federated/participant", &ts[3].key).await;
    assert_eq!(untouched.ok(200)["budget"]["spent_epsilon"], 0.0);
}

#[tokio::test]
async fn illegal_transitions_answer_409() {
    let app = TestApp::spawn().await;
    let project = app.create_project("fed").await;
    let ts = federated_tenants(&app, &project, &["tenant-1", "tenant-2"], "basic").await;
    topic_memories(&app, &ts, "topic").await;
    for id in ["s-1", "s-2"] {
        app.post(
            "/v1/federated/sessions",
            &ts[0].key,
            session(id, "topic", "weighted", "basic", 2, None),
        )
        .await
        .ok(201);
    }
    // Forming: nothing to aggregate.
    call(&app, &ts[0], "s-1", "aggregate")
        .await
        .expect(409, "illegal_transition");
    join(&app, &ts[0], "s-1").await.ok(200);
    join(&app, &ts[0], "s-1")
        .await
        .expect(409, "already_member");
    join(&app, &ts[1], "s-1").await.ok(200);
    call(&app, &ts[0], "s-1", "aggregate").await.ok(200);
    // Completed: no way out.
    for what in ["aggregate", "cancel"] {
        let r = call(&app, &ts[0], "s-1", what).await;
        r.expect(409, "illegal_transition");
        assert!(r.text.contains("completed"), "{}", r.text);
    }
    call(&app, &ts[1], "s-1", "leave")
        .await
        .expect(409, "not_a_member");
    // Cancelled: failed, closed to joins.
    let r = call(&app, &ts[0], "s-2", "cancel").await;
    assert_eq!(r.ok(200)["status"], "failed");
    assert_eq!(r.body["failure_reason"], "cancelled");
    join(&app, &ts[1], "s-2")
        .await
        .expect(409, "session_closed");
    call(&app, &ts[1], "s-1", "cancel")
        .await
        .expect(403, "not_initiator");
}

#[tokio::test]
async fn sessions_of_another_project_are_invisible() {
    let app = TestApp::spawn().await;
    let p1 = app.create_project("p1").await;
    let p2 = app.create_project("p2").await;
    let a = federated_tenants(&app, &p1, &["tenant-a"], "basic").await;
    let x = federated_tenants(&app, &p2, &["tenant-x"], "basic").await;
    topic_memories(&app, &[a[0].clone(), x[0].clone()], "topic").await;
    app.post(
        "/v1/federated/sessions",
        &a[0].key,
        session("shared-name", "topic", "weighted", "basic", 2, None),
    )
    .await
    .ok(201);
    let list = app.get("/v1/federated/sessions", &x[0].key).await;
    assert_eq!(list.ok(200)["sessions"].as_array().map(Vec::len), Some(0));
    app.get("/v1/federated/sessions/shared-name", &x[0].key)
        .await
        .expect(404, "session_not_found");
    for what in ["join", "leave", "aggregate", "cancel"] {
        call(&app, &x[0], "shared-name", what)
            .await
            .expect(404, "session_not_found");
    }
    app.get("/v1/federated/sessions/shared-name/insights", &x[0].key)
        .await
        .expect(404, "session_not_found");
    // Session ids are per project: the other project may use the same one.
    app.post(
        "/v1/federated/sessions",
        &x[0].key,
        session("shared-name", "topic", "weighted", "basic", 2, None),
    )
    .await
    .ok(201);
    app.post(
        "/v1/federated/sessions",
        &a[0].key,
        session("shared-name", "topic", "weighted", "basic", 2, None),
    )
    .await
    .expect(409, "session_exists");
}

#[tokio::test]
async fn the_deadline_job_fails_sessions_past_their_deadline_with_the_reason() {
    let app = TestApp::spawn().await;
    let project = app.create_project("fed").await;
    let ts = federated_tenants(&app, &project, &["tenant-1", "tenant-2"], "basic").await;
    topic_memories(&app, &ts, "topic").await;
    for (id, min) in [("s-forming", 3), ("s-active", 2)] {
        app.post(
            "/v1/federated/sessions",
            &ts[0].key,
            session(id, "topic", "weighted", "basic", min, None),
        )
        .await
        .ok(201);
        for t in &ts {
            join(&app, t, id).await.ok(200);
        }
    }
    app.post(
        "/v1/federated/sessions",
        &ts[0].key,
        session("s-later", "topic", "weighted", "basic", 2, None),
    )
    .await
    .ok(201);
    sqlx::query(
        "UPDATE federated_sessions SET deadline = now() - interval '1 second'
         WHERE session_id IN ('s-forming', 's-active')",
    )
    .execute(app.store.pool())
    .await
    .expect("backdate");
    // Before the job: joining or aggregating past the deadline is refused.
    call(&app, &ts[0], "s-active", "aggregate")
        .await
        .expect(409, "session_deadline_passed");
    let report = app.admin("POST", "/v1/admin/maintenance", None).await;
    assert_eq!(
        report.ok(200)["federated_sessions_expired"],
        2,
        "{}",
        report.text
    );
    for (id, reason) in [
        ("s-forming", "too_few_participants"),
        ("s-active", "deadline_passed"),
    ] {
        let s = app
            .get(&format!("/v1/federated/sessions/{id}"), &ts[1].key)
            .await;
        assert_eq!(s.ok(200)["status"], "failed");
        assert_eq!(s.body["failure_reason"], reason);
        assert_eq!(s.body["membership"]["status"], "ended");
        assert_eq!(contributions_of(&app, id).await, 0);
    }
    let later = app.get("/v1/federated/sessions/s-later", &ts[0].key).await;
    assert_eq!(later.ok(200)["status"], "forming");
    // Failing is not abandoning: reputations are untouched.
    let me = app.get("/v1/federated/participant", &ts[1].key).await;
    assert_eq!(me.ok(200)["reputation"]["abandoned"], 0);
}

#[tokio::test]
async fn a_tenant_whose_budget_cannot_pay_is_excluded_with_the_reason() {
    let app = TestApp::spawn().await;
    let project = app.create_project("fed").await;
    let ts = federated_tenants(
        &app,
        &project,
        &["tenant-1", "tenant-2", "tenant-3", "tenant-poor"],
        "differential",
    )
    .await;
    topic_memories(&app, &ts, "topic").await;
    app.admin(
        "PATCH",
        "/v1/admin/tenants/tenant-poor",
        Some(json!({ "privacy_budget": { "epsilon": 0.5, "delta": 1e-6 } })),
    )
    .await
    .ok(200);
    app.post(
        "/v1/federated/sessions",
        &ts[0].key,
        session("s-1", "topic", "consensus", "differential", 3, Some(1.0))
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.insert("robustness".into(), json!({ "trim": "median" }));
                Value::Object(o)
            })
            .unwrap_or_default(),
    )
    .await
    .ok(201);
    for t in &ts {
        join(&app, t, "s-1").await.ok(200);
    }
    let r = call(&app, &ts[0], "s-1", "aggregate").await;
    assert_eq!(r.ok(200)["outcome"]["status"], "completed", "{}", r.text);
    assert_eq!(r.body["outcome"]["excluded"], 1);
    let poor = app.get("/v1/federated/sessions/s-1", &ts[3].key).await;
    let m = &poor.ok(200)["membership"];
    assert_eq!(m["status"], "excluded");
    assert!(
        m["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("budget_exhausted") && r.contains("0.5")),
        "{m}"
    );
    let me = app.get("/v1/federated/participant", &ts[3].key).await;
    assert_eq!(me.ok(200)["budget"]["spent_epsilon"], 0.0);
    assert_eq!(me.body["ledger"].as_array().map(Vec::len), Some(0));
    app.get("/v1/federated/sessions/s-1/insights", &ts[3].key)
        .await
        .expect(403, "not_a_contributor");
}

#[tokio::test]
async fn concurrent_aggregations_cannot_overspend_a_budget() {
    let app = TestApp::spawn().await;
    let project = app.create_project("fed").await;
    let ts = federated_tenants(
        &app,
        &project,
        &["tenant-1", "tenant-2", "tenant-3"],
        "differential",
    )
    .await;
    topic_memories(&app, &ts, "topic").await;
    // ε = 1 at δ = 1e-6 pays one session of ε = 0.9 (ρ ≈ 0.0106 of ≈ 0.0175) but not two.
    for t in &ts {
        app.admin(
            "PATCH",
            &format!("/v1/admin/tenants/{}", t.tenant_id),
            Some(json!({ "privacy_budget": { "epsilon": 1.0, "delta": 1e-6 } })),
        )
        .await
        .ok(200);
    }
    for id in ["s-a", "s-b"] {
        app.post(
            "/v1/federated/sessions",
            &ts[0].key,
            session(id, "topic", "weighted", "differential", 3, Some(0.9)),
        )
        .await
        .ok(201);
        for t in &ts {
            join(&app, t, id).await.ok(200);
        }
    }
    let (a, b) = tokio::join!(
        call(&app, &ts[0], "s-a", "aggregate"),
        call(&app, &ts[0], "s-b", "aggregate")
    );
    let outcomes: Vec<(String, Option<String>)> = [a, b]
        .iter()
        .map(|r| {
            let o = &r.ok(200)["outcome"];
            (
                o["status"].as_str().unwrap_or("").to_owned(),
                o["failure_reason"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let completed = outcomes.iter().filter(|(s, _)| s == "completed").count();
    assert_eq!(completed, 1, "{outcomes:?}");
    assert!(
        outcomes.contains(&("failed".to_owned(), Some("budget_exhausted".to_owned()))),
        "{outcomes:?}"
    );
    for t in &ts {
        let me = app.get("/v1/federated/participant", &t.key).await;
        let b = me.ok(200);
        let spent = b["budget"]["spent_epsilon"].as_f64().unwrap_or(f64::NAN);
        assert!(spent > 0.7 && spent <= 1.0, "{}", me.text);
        assert_eq!(b["ledger"].as_array().map(Vec::len), Some(1));
    }
}

#[tokio::test]
async fn leaving_deletes_the_contribution_and_counts_as_abandoned() {
    let app = TestApp::spawn().await;
    let project = app.create_project("fed").await;
    let ts = federated_tenants(&app, &project, &["tenant-1", "tenant-2"], "basic").await;
    topic_memories(&app, &ts, "topic").await;
    app.post(
        "/v1/federated/sessions",
        &ts[0].key,
        session("s-1", "topic", "weighted", "basic", 2, None),
    )
    .await
    .ok(201);
    join(&app, &ts[0], "s-1").await.ok(200);
    assert_eq!(join(&app, &ts[1], "s-1").await.ok(200)["status"], "active");
    // A member of an open session cannot withdraw.
    app.call(
        "DELETE",
        "/v1/federated/participant",
        Some(&ts[1].key),
        None,
    )
    .await
    .expect(409, "participant_in_sessions");
    let left = call(&app, &ts[1], "s-1", "leave").await;
    assert_eq!(left.ok(200)["status"], "forming");
    assert_eq!(left.body["membership"]["status"], "left");
    assert_eq!(left.body["participant_count"], 1);
    assert_eq!(contributions_of(&app, "s-1").await, 1);
    let me = app.get("/v1/federated/participant", &ts[1].key).await;
    assert_eq!(me.ok(200)["reputation"]["abandoned"], 1);
    assert!(me.body["reputation"]["score"]
        .as_f64()
        .is_some_and(|s| s < 0.5));
    join(&app, &ts[1], "s-1")
        .await
        .expect(409, "already_member");
}

#[tokio::test]
async fn joining_needs_matching_memories_and_a_compatible_privacy_level() {
    let app = TestApp::spawn().await;
    let project = app.create_project("fed").await;
    let ts = federated_tenants(&app, &project, &["tenant-1"], "differential").await;
    let secure = federated_tenants(&app, &project, &["tenant-secure"], "secure").await;
    let empty = federated_tenants(&app, &project, &["tenant-empty"], "differential").await;
    topic_memories(&app, &[ts[0].clone(), secure[0].clone()], "topic").await;
    app.post(
        "/v1/federated/sessions",
        &ts[0].key,
        session("s-1", "topic", "weighted", "differential", 2, Some(1.0)),
    )
    .await
    .ok(201);
    join(&app, &empty[0], "s-1")
        .await
        .expect(422, "invalid_value");
    join(&app, &secure[0], "s-1")
        .await
        .expect(403, "privacy_level_too_weak");
    let unregistered = app
        .new_tenant_in(
            &project,
            "tenant-new",
            json!({ "isolation_level": "federated" }),
        )
        .await;
    join(&app, &unregistered, "s-1")
        .await
        .expect(403, "not_a_participant");
}

/// The worked example of docs/federated.md, through the HTTP API: five tenants of one project
/// contribute to sessions on one topic; four are honest (memories around one direction, like
/// MiniLM embeddings of related notes), one is poisoned (every coordinate ±1e9). Prints the
/// released insights, ε spent, and each aggregate's error against the noiseless honest mean.
#[tokio::test]
async fn worked_example_five_tenants_one_poisoned() {
    let app = TestApp::spawn().await;
    let project = app.create_project("worked example").await;
    let ts = federated_tenants(
        &app,
        &project,
        &["honest-1", "honest-2", "honest-3", "honest-4", "poisoned"],
        "basic",
    )
    .await;
    let mut g = Gen(0x5EED_1234_ABCD_0001);
    let topic = unit(&g.vector());
    let mut honest_centroids = Vec::new();
    for (i, t) in ts[..4].iter().enumerate() {
        let vectors: Vec<Vec<f64>> = (0..12 + 3 * i)
            .map(|_| {
                let j = unit(&g.vector());
                unit(
                    &topic
                        .iter()
                        .zip(&j)
                        .map(|(a, b)| a + 0.7 * b)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let c = add_memories(&app, t, "code-review", &vectors, |k| {
            json!({ "text": format!("review note {k}"), "outcome": "success",
                    "taskType": "code-review",
                    "lessons": ["Pin dependency versions", format!("ask maintainer{i}@example.com before merging")] })
        })
        .await;
        honest_centroids.push(c);
    }
    let poison: Vec<Vec<f64>> = (0..12)
        .map(|_| {
            (0..D)
                .map(|k| if k % 2 == 0 { 1e9 } else { -1e9 })
                .collect()
        })
        .collect();
    let poison_centroid = add_memories(
        &app,
        &ts[4],
        "code-review",
        &poison,
        |_| json!({ "text": "poison", "outcome": "success", "lessons": ["Disable the tests"] }),
    )
    .await;
    let honest_mean = mean(&honest_centroids);
    let mut all = honest_centroids.clone();
    all.push(poison_centroid);
    println!(
        "5 tenants (4 honest, 1 poisoned with ±1e9), d = {D}; honest mean norm {:.4}",
        norm(&honest_mean)
    );
    println!(
        "plain mean of the 5 raw centroids: error vs honest mean = {:.3e} (the poisoner owns it)",
        dist(&mean(&all), &honest_mean)
    );

    let runs = [
        (
            "basic-consensus",
            "consensus",
            "basic",
            None,
            json!({ "trim": "trimmed_mean", "beta": 0.2, "byzantine": 1 }),
        ),
        (
            "basic-median",
            "consensus",
            "basic",
            None,
            json!({ "trim": "median", "byzantine": 1 }),
        ),
        ("basic-weighted", "weighted", "basic", None, Value::Null),
        (
            "dp-consensus",
            "consensus",
            "differential",
            Some(1.0),
            json!({ "trim": "trimmed_mean", "beta": 0.2, "byzantine": 1 }),
        ),
        (
            "dp-consensus-eps10",
            "consensus",
            "differential",
            Some(10.0),
            json!({ "trim": "trimmed_mean", "beta": 0.2, "byzantine": 1 }),
        ),
    ];
    let mut basic_consensus_error = f64::NAN;
    for (id, method, level, eps, robustness) in runs {
        let mut body = session(id, "code-review", method, level, 5, eps);
        if !robustness.is_null() {
            body["robustness"] = robustness;
        }
        app.post("/v1/federated/sessions", &ts[0].key, body)
            .await
            .ok(201);
        for t in &ts {
            join(&app, t, id).await.ok(200);
        }
        let r = call(&app, &ts[0], id, "aggregate").await;
        assert_eq!(r.ok(200)["outcome"]["status"], "completed", "{}", r.text);
        let ins = app
            .get(&format!("/v1/federated/sessions/{id}/insights"), &ts[1].key)
            .await;
        let i = &ins.ok(200)["insights"][0];
        let centroid: Vec<f64> =
            serde_json::from_value(i["content"]["centroid"].clone()).expect("centroid");
        let error = dist(&centroid, &honest_mean);
        println!(
            "\n== {id}: {method}, {level}{}",
            eps.map(|e| format!(", ε = {e}")).unwrap_or_default()
        );
        if let Some(d) = i["sensitivity"]["derivation"].as_str() {
            println!("   sensitivity: {d}");
        }
        if let Some(sigma) = i["noise_scale"].as_f64().filter(|s| *s > 0.0) {
            println!(
                "   noise: σ = {sigma:.4} per coordinate, expected error σ·√d = {:.3}; ρ charged = {:.5}",
                i["expected_error"].as_f64().unwrap_or(f64::NAN),
                i["rho"].as_f64().unwrap_or(f64::NAN)
            );
        }
        println!(
            "   released centroid: error vs honest mean {error:.4} (norm {:.4}); confidence {:.3}",
            norm(&centroid),
            i["confidence"].as_f64().unwrap_or(f64::NAN)
        );
        let p = &i["content"]["privacy"];
        if p.is_object() {
            println!(
                "   label counts: Laplace scale {:.1}, threshold {}; lessons: Gaussian σ {:.1}, threshold {}",
                p["labels"]["scale"].as_f64().unwrap_or(f64::NAN),
                p["labels"]["threshold"],
                p["lessons"]["scale"].as_f64().unwrap_or(f64::NAN),
                p["lessons"]["threshold"]
            );
        }
        println!(
            "   labels: {}; lessons: {}",
            i["content"]["labels"], i["content"]["lessons"]
        );
        println!("   note: {}", i["content"]["note"].as_str().unwrap_or(""));
        if id == "basic-consensus" {
            basic_consensus_error = error;
        }
    }
    for t in &ts {
        let me = app.get("/v1/federated/participant", &t.key).await;
        let b = me.ok(200);
        println!(
            "{}: ε spent {:.4} of {} (ρ {:.5}); reputation {:.3} (agreement EMA {:.3}, {} sessions completed)",
            t.tenant_id,
            b["budget"]["spent_epsilon"].as_f64().unwrap_or(f64::NAN),
            b["budget"]["epsilon"],
            b["budget"]["rho_spent"].as_f64().unwrap_or(f64::NAN),
            b["reputation"]["score"].as_f64().unwrap_or(f64::NAN),
            b["reputation"]["agreement_ema"].as_f64().unwrap_or(f64::NAN),
            b["reputation"]["completed"],
        );
    }
    // The robust rule kept the poisoner out: each coordinate of the exact trimmed mean lies in
    // the honest values' range (mnemo_core's robustness property), so its error is at most
    // sqrt(Σ_k max_i (x_ik − μ_k)²); the plain mean is 1e9 away.
    let bound = (0..D)
        .map(|k| {
            honest_centroids
                .iter()
                .map(|c| (c[k] - honest_mean[k]).powi(2))
                .fold(0.0, f64::max)
        })
        .sum::<f64>()
        .sqrt();
    println!("\nbound on a robust aggregate's error (honest range per coordinate): {bound:.4}");
    assert!(
        basic_consensus_error <= bound + 1e-9,
        "{basic_consensus_error} > {bound}"
    );
    assert!(dist(&mean(&all), &honest_mean) > 1e8);
    // Each of the two differential sessions charged every tenant, and no budget was exceeded.
    let poisoned = app.get("/v1/federated/participant", &ts[4].key).await;
    let honest = app.get("/v1/federated/participant", &ts[0].key).await;
    assert_eq!(poisoned.ok(200)["ledger"].as_array().map(Vec::len), Some(2));
    assert!(poisoned.body["budget"]["spent_epsilon"]
        .as_f64()
        .is_some_and(|e| e <= 10.0));
    // The poisoner disagrees with what was released; its reputation falls below the honest ones.
    assert!(
        poisoned.body["reputation"]["score"].as_f64().unwrap_or(1.0)
            < honest.ok(200)["reputation"]["score"]
                .as_f64()
                .unwrap_or(0.0),
        "{} vs {}",
        poisoned.text,
        honest.text
    );
}
