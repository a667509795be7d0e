//! Operations: the Prometheus exposition at `/metrics`, readiness against pending migrations, and
//! the health history.

use std::collections::BTreeMap;

use mnemo_server::{AdminKey, AppState, Limits};
use serde_json::json;

use crate::harness::{TestApp, ADMIN_KEY};

/// One sample of the text exposition: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (0.0.4): `# TYPE` lines and samples `name{k="v",…} value`.
/// Panics on a line that is neither, so a malformed exposition fails the test.
fn parse_exposition(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample: series value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                    assert_eq!(chars.next(), Some('"'), "label value is quoted in {line:?}");
                    let mut val = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => val.push(chars.next().expect("escaped char")),
                            '"' => break,
                            c => val.push(c),
                        }
                    }
                    labels.insert(key.trim().to_owned(), val);
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                }
                (name.to_owned(), labels)
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name {name:?}"
        );
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    (types, samples)
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        s.name == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    })
}

#[tokio::test]
async fn metrics_expose_requests_by_route_template_never_by_raw_path_or_tenant() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("metrics-tenant-1").await;
    app.create_memory(&t.key, "secret-memory-id-42", json!({"a": 1}))
        .await;
    app.get("/v1/memories/secret-memory-id-42", &t.key)
        .await
        .ok(200);
    app.get("/v1/memories/secret-memory-id-42", "mnemo_wrong_key")
        .await
        .expect(401, "unauthorized");
    app.call("GET", "/no/such/route/xyz", None, None)
        .await
        .expect(404, "route_not_found");

    let resp = app.call("GET", "/metrics", None, None).await;
    assert_eq!(resp.status, 200, "{}", resp.text);
    assert!(resp
        .content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("text/plain")));
    let (types, samples) = parse_exposition(&resp.text);

    assert_eq!(
        types
            .get("http_server_request_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    let hit = find(
        &samples,
        "http_server_request_duration_seconds_count",
        &[
            ("http_route", "/v1/memories/{memory_id}"),
            ("http_request_method", "GET"),
            ("http_response_status_code", "200"),
        ],
    )
    .expect("a series for the route template");
    assert!(hit.value >= 1.0);
    assert!(find(
        &samples,
        "http_server_request_duration_seconds_bucket",
        &[("http_route", "/v1/memories/{memory_id}"), ("le", "+Inf")],
    )
    .is_some());
    assert!(find(
        &samples,
        "http_server_request_duration_seconds_count",
        &[
            ("http_route", "unmatched"),
            ("http_response_status_code", "404")
        ],
    )
    .is_some());
    for needle in [
        "secret-memory-id-42",
        "metrics-tenant-1",
        "/no/such/route",
        &t.key,
    ] {
        assert!(
            !resp.text.contains(needle),
            "{needle} leaked into the exposition"
        );
    }

    assert!(find(
        &samples,
        "mnemo_auth_failures_total",
        &[("code", "unauthorized")]
    )
    .is_some_and(|s| s.value >= 1.0));
    assert!(find(&samples, "http_server_active_requests", &[]).is_some());
    assert!(find(&samples, "mnemo_db_pool_connections", &[("state", "idle")]).is_some());
    assert!(find(
        &samples,
        "mnemo_db_pool_connections",
        &[("state", "in_use")]
    )
    .is_some());
    assert!(find(&samples, "mnemo_db_pool_max_connections", &[]).is_some_and(|s| s.value >= 1.0));
    assert!(find(
        &samples,
        "mnemo_rate_limit_refusals_total",
        &[("limit", "api_key")]
    )
    .is_some());
}

#[tokio::test]
async fn metrics_record_background_jobs_after_a_maintenance_run() {
    let app = TestApp::spawn().await;
    app.admin("POST", "/v1/admin/maintenance", None)
        .await
        .ok(200);
    let resp = app.call("GET", "/metrics", None, None).await;
    let (types, samples) = parse_exposition(&resp.text);
    assert_eq!(
        types.get("mnemo_job_duration_seconds").map(String::as_str),
        Some("histogram")
    );
    for job in [
        "partitions",
        "expiry",
        "audit_archive",
        "analytics",
        "usage_reconcile",
        "vector_indexes",
    ] {
        assert!(
            find(&samples, "mnemo_job_runs_total", &[("job", job)]).is_some_and(|s| s.value >= 1.0),
            "no runs of {job}"
        );
        assert!(
            find(
                &samples,
                "mnemo_job_last_success_timestamp_seconds",
                &[("job", job)]
            )
            .is_some_and(|s| s.value > 1.7e9),
            "no success time of {job}"
        );
    }
}

#[tokio::test]
async fn metrics_token_is_required_when_configured() {
    let app = TestApp::spawn_state(|store| {
        AppState::new(
            store,
            None,
            Limits::default(),
            AdminKey::configured(ADMIN_KEY),
        )
        .with_metrics_token("scrape-token-0123")
    })
    .await;
    app.call("GET", "/metrics", None, None)
        .await
        .expect(401, "unauthorized");
    app.call("GET", "/metrics", Some("wrong-token"), None)
        .await
        .expect(401, "unauthorized");
    let tenant = app.new_tenant("metrics-tenant-2").await;
    app.call("GET", "/metrics", Some(&tenant.key), None)
        .await
        .expect(401, "unauthorized");
    let ok = app
        .call("GET", "/metrics", Some("scrape-token-0123"), None)
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(ok.text.contains("http_server_request_duration_seconds"));
}

#[tokio::test]
async fn readyz_is_not_ready_while_a_migration_is_pending() {
    let app = TestApp::spawn().await;
    let ready = app.call("GET", "/readyz", None, None).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert!(ready.body.get("pending_migrations").is_none());

    let latest: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(app.store.pool())
        .await
        .expect("latest migration");
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(latest)
        .execute(app.store.pool())
        .await
        .expect("forget the latest migration");
    let pending = app.call("GET", "/readyz", None, None).await;
    assert_eq!(pending.status, 503, "{}", pending.text);
    assert_eq!(pending.body["status"], "unavailable");
    assert_eq!(pending.body["database"], "reachable");
    assert_eq!(pending.body["pending_migrations"], json!([latest]));
}

#[tokio::test]
async fn readyz_is_not_ready_when_an_applied_migration_has_another_checksum() {
    let app = TestApp::spawn().await;
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = 1")
        .execute(app.store.pool())
        .await
        .expect("alter a checksum");
    let pending = app.call("GET", "/readyz", None, None).await;
    assert_eq!(pending.status, 503, "{}", pending.text);
    assert_eq!(pending.body["pending_migrations"], json!([1]));
}
