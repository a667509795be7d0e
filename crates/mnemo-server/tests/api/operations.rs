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

#[tokio::test]
async fn health_samples_land_in_system_health_and_the_performance_summary() {
    let mut kept = None;
    let app = TestApp::spawn_state(|store| {
        let state = AppState::new(
            store,
            None,
            Limits::default(),
            AdminKey::configured(ADMIN_KEY),
        );
        kept = Some(state.clone());
        state
    })
    .await;
    let state = kept.expect("state");
    let t = app.new_tenant("health-tenant-1").await;
    for _ in 0..3 {
        app.get("/v1/memories/none-such", &t.key)
            .await
            .expect(404, "memory_not_found");
    }
    let report = mnemo_server::jobs::sample_health(&state)
        .await
        .expect("sample");
    assert!(report.rows > 0);
    assert!(report.operations >= 1);

    let since = chrono::Utc::now() - chrono::Duration::minutes(5);
    let minutes = app.store.health_history(since).await.expect("history");
    let minute = minutes.last().expect("a sampled minute");
    assert!(minute.request_count >= 3, "{minute:?}");
    assert_eq!(minute.error_count, 0);
    assert_eq!(minute.status, "healthy");
    assert!(minute.p99_latency_ms.is_some_and(|v| v > 0.0));
    assert!(minute.pool_size.is_some_and(|v| v >= 1.0));
    assert!(minute.database_bytes.is_some_and(|v| v > 0.0));
    assert!(minute.connections.is_some_and(|v| v >= 1.0));

    let (count, p95): (i64, f64) = sqlx::query_as(
        "SELECT sample_count, p95_value FROM system_performance_summary
         WHERE metric_type = 'request' AND metric_name = 'GET /v1/memories/{memory_id}'",
    )
    .fetch_one(app.store.pool())
    .await
    .expect("summary row for the operation");
    assert_eq!(count, 1);
    assert_eq!(p95, 3.0);

    let health = app.admin("GET", "/v1/admin/health", None).await;
    let body = health.ok(200);
    assert_eq!(body["current"]["status"], "healthy");
    assert!(body["current"]["pool"]["max"]
        .as_u64()
        .is_some_and(|m| m >= 1));
    assert!(body["current"]["database"]["database_bytes"]
        .as_i64()
        .is_some_and(|b| b > 0));
    let last_hour = body["last_hour"].as_array().expect("last_hour");
    assert!(last_hour
        .iter()
        .any(|m| m["request_count"].as_i64() >= Some(3)));
}

#[tokio::test]
async fn admin_health_and_tenant_usage_are_admin_only() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("health-tenant-2").await;
    app.get("/v1/admin/health", &t.key)
        .await
        .expect(403, "admin_only");
    app.get(&format!("/v1/admin/tenants/{}/usage", t.tenant_id), &t.key)
        .await
        .expect(403, "admin_only");
}

#[tokio::test]
async fn admin_tenant_usage_reports_counters_quotas_and_daily_activity() {
    let app = TestApp::spawn().await;
    let t = app.new_tenant("usage-tenant-1").await;
    let other = app.new_tenant("usage-tenant-2").await;
    app.create_memory(&t.key, "m1", json!({"text": "one"}))
        .await;
    app.create_memory(&t.key, "m2", json!({"text": "two"}))
        .await;
    app.create_memory(&other.key, "m1", json!({"text": "other"}))
        .await;
    app.admin(
        "PATCH",
        &format!("/v1/admin/tenants/{}", t.tenant_id),
        Some(json!({"max_memories": 10})),
    )
    .await
    .ok(200);
    app.admin("POST", "/v1/admin/maintenance", None)
        .await
        .ok(200);

    let usage = app
        .admin(
            "GET",
            &format!("/v1/admin/tenants/{}/usage", t.tenant_id),
            None,
        )
        .await;
    let body = usage.ok(200);
    assert_eq!(body["tenant_id"], t.tenant_id.as_str());
    assert_eq!(body["counters"]["memories"], 2);
    assert_eq!(body["counters"]["max_memories"], 10);
    assert!(body["storage_bytes"].as_i64().is_some_and(|b| b > 0));
    let created: i64 = body["daily_activity"]
        .as_array()
        .expect("daily_activity")
        .iter()
        .filter(|d| {
            d["outcome"] == "success" && d["action"].as_str().is_some_and(|a| a.contains("create"))
        })
        .filter_map(|d| d["operations"].as_i64())
        .sum();
    assert_eq!(created, 2, "{body}");
}

#[tokio::test]
async fn maintenance_drops_whole_months_of_health_history_past_retention_and_keeps_recent_ones() {
    let app = TestApp::spawn().await;
    let pool = app.store.pool();
    sqlx::query(
        "CREATE TABLE performance_metrics_p2020_01 PARTITION OF performance_metrics
         FOR VALUES FROM ('2020-01-01 00:00:00+00') TO ('2020-02-01 00:00:00+00')",
    )
    .execute(pool)
    .await
    .expect("an old month");
    sqlx::query(
        "SELECT log_performance_metric(NULL, 'request', 'GET /x', 1, 'count')
         FROM generate_series(1, 2)",
    )
    .execute(pool)
    .await
    .expect("recent samples");
    sqlx::query(
        "INSERT INTO performance_metrics (metric_type, metric_name, metric_value, recorded_at)
         VALUES ('request', 'GET /x', 1, '2020-01-15T00:00:00Z')",
    )
    .execute(pool)
    .await
    .expect("an old sample");

    let report = app.admin("POST", "/v1/admin/maintenance", None).await;
    let dropped = report.ok(200)["metric_partitions_dropped"].clone();
    assert_eq!(dropped, json!(["performance_metrics_p2020_01"]));
    let (old, recent): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE recorded_at < '2021-01-01'),
                count(*) FILTER (WHERE recorded_at > now() - interval '1 hour')
         FROM performance_metrics",
    )
    .fetch_one(pool)
    .await
    .expect("count");
    assert_eq!((old, recent), (0, 2));
}
