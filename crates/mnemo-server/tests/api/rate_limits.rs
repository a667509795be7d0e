//! Rate limits: per API key, per tenant, for the admin key, and for failed authentication per
//! client address; each answers 429 `rate_limited` with `Retry-After`. The buckets refill one
//! request a minute here, so no test depends on how fast the machine is.

use std::time::Duration;

use mnemo_server::{Limits, Rate, RateLimits};

use crate::harness::{Resp, TestApp};

const SLOW: Duration = Duration::from_secs(60);

async fn app_with(rate: RateLimits) -> TestApp {
    TestApp::spawn_with(
        Limits {
            rate,
            ..Limits::default()
        },
        None,
    )
    .await
}

#[track_caller]
fn assert_rate_limited(r: &Resp, limit: &str) {
    r.expect(429, "rate_limited");
    assert_eq!(r.body["error"]["details"]["limit"], limit, "{}", r.text);
    let retry_after: u64 = r
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric Retry-After: {:?}", r.headers));
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
}

#[tokio::test]
async fn a_key_past_its_burst_gets_429_rate_limited_with_retry_after() {
    let app = app_with(RateLimits {
        per_key: Some(Rate::every(SLOW, 3)),
        ..RateLimits::off()
    })
    .await;
    let t = app.new_tenant("busy").await;
    for _ in 0..3 {
        app.get("/v1/usage", &t.key).await.ok(200);
    }
    assert_rate_limited(&app.get("/v1/usage", &t.key).await, "api_key");
    // Another key of the same tenant has a bucket of its own.
    let (_, other) = app.create_key("busy", &["*"], None).await;
    app.get("/v1/usage", &other).await.ok(200);
}

#[tokio::test]
async fn the_tenant_limit_counts_all_its_keys_together() {
    let app = app_with(RateLimits {
        per_tenant: Some(Rate::every(SLOW, 3)),
        ..RateLimits::off()
    })
    .await;
    let t = app.new_tenant("shared").await;
    let (_, second) = app.create_key("shared", &["*"], None).await;
    app.get("/v1/usage", &t.key).await.ok(200);
    app.get("/v1/usage", &second).await.ok(200);
    app.get("/v1/usage", &t.key).await.ok(200);
    assert_rate_limited(&app.get("/v1/usage", &second).await, "tenant");
    // Another tenant is not slowed down by this one.
    let other = app.new_tenant("quiet").await;
    app.get("/v1/usage", &other.key).await.ok(200);
}

#[tokio::test]
async fn the_admin_key_has_a_limit_of_its_own() {
    let app = app_with(RateLimits {
        admin: Some(Rate::every(SLOW, 5)),
        ..RateLimits::off()
    })
    .await;
    // Three admin requests: the project, the tenant and its key.
    let t = app.new_tenant("admin-limited").await;
    app.admin("GET", "/v1/admin/projects", None).await.ok(200);
    app.admin("GET", "/v1/admin/tenants", None).await.ok(200);
    assert_rate_limited(
        &app.admin("GET", "/v1/admin/projects", None).await,
        "admin_key",
    );
    // Tenant keys are counted apart.
    app.get("/v1/usage", &t.key).await.ok(200);
}

#[tokio::test]
async fn an_address_failing_authentication_is_refused_even_with_a_valid_key() {
    let app = app_with(RateLimits {
        failed_auth: Some(Rate::every(SLOW, 3)),
        ..RateLimits::off()
    })
    .await;
    let t = app.new_tenant("target").await;
    // A missing key is not a guess: it does not count.
    for _ in 0..5 {
        app.call("GET", "/v1/usage", None, None)
            .await
            .expect(401, "unauthorized");
    }
    for guess in 0..3 {
        app.get("/v1/usage", &format!("mnemo_wrong_guess_{guess}"))
            .await
            .expect(401, "unauthorized");
    }
    assert_rate_limited(
        &app.get("/v1/usage", "mnemo_wrong_guess_3").await,
        "failed_auth",
    );
    // Until the bucket refills, a right guess is refused too, before the key is looked up.
    assert_rate_limited(&app.get("/v1/usage", &t.key).await, "failed_auth");
    // Wrong admin keys count against the same address.
    assert_rate_limited(
        &app.call(
            "GET",
            "/v1/admin/projects",
            Some("wrong-admin-key-123456"),
            None,
        )
        .await,
        "failed_auth",
    );
}

#[tokio::test]
async fn rate_limited_requests_leave_no_audit_row() {
    let app = app_with(RateLimits {
        per_key: Some(Rate::every(SLOW, 1)),
        ..RateLimits::off()
    })
    .await;
    let t = app.new_tenant("unaudited").await;
    app.get("/v1/memories/missing", &t.key)
        .await
        .expect(404, "memory_not_found");
    for _ in 0..3 {
        assert_rate_limited(&app.get("/v1/memories/missing", &t.key).await, "api_key");
    }
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(app.store.pool())
        .await
        .expect("count");
    assert_eq!(audited, 1, "only the 404 is in the audit trail");
}

#[test]
fn limits_are_off_by_default_in_the_library() {
    assert_eq!(Limits::default().rate, RateLimits::off());
}
