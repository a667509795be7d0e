//! The real application on a random port, against a fresh migrated database, with an HTTP client
//! and helpers to provision projects, tenants and keys through the admin API.

use std::sync::Arc;
use std::time::Duration;

use mnemo_embed::Embedder;
use mnemo_server::{AdminKey, AppState, Limits};
use mnemo_store::testing::TestDb;
use mnemo_store::Store;
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdef";

pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    pub admin_key: String,
    /// The test database, as its owner (for what the API cannot do, e.g. backdating an expiry).
    pub store: Store,
    _stop: oneshot::Sender<()>,
}

/// A tenant provisioned through the admin API, with a key holding every scope.
#[derive(Debug, Clone)]
pub struct TenantHandle {
    pub tenant_id: String,
    pub project_id: String,
    pub key: String,
    pub key_id: String,
}

/// One HTTP answer: status, parsed JSON body (or `Null`), raw text and response id.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
    pub request_id: Option<String>,
    pub content_type: Option<String>,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    /// Whether the body has the API's one error shape `{"error":{"code","message"}}`.
    pub fn has_error_shape(&self) -> bool {
        let e = &self.body["error"];
        self.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/json"))
            && e["code"].as_str().is_some_and(|c| !c.is_empty())
            && e["message"].is_string()
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Asserts the status and, for errors, the error shape and code.
    #[track_caller]
    pub fn expect(&self, status: u16, code: &str) -> &Self {
        assert_eq!(
            self.status, status,
            "expected {status} {code}, got {}: {}",
            self.status, self.text
        );
        if status >= 400 {
            assert!(self.has_error_shape(), "not the error shape: {}", self.text);
            assert_eq!(self.code(), code, "wrong error code: {}", self.text);
        }
        self
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(
            self.status, status,
            "expected {status}, got {}: {}",
            self.status, self.text
        );
        &self.body
    }
}

/// `?k=v&…`, percent-encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://q/").expect("static URL");
    url.query_pairs_mut().extend_pairs(pairs);
    format!("?{}", url.query().unwrap_or(""))
}

/// A 384-dimensional vector whose direction depends on `seed`.
pub fn vector(seed: u32) -> Vec<f32> {
    (0..384)
        .map(|i| (((i as u32 + 1) * (seed + 7)) % 97) as f32 / 97.0 + 0.01)
        .collect()
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(Limits::default(), None).await
    }

    pub async fn spawn_with(limits: Limits, embedder: Option<Arc<dyn Embedder>>) -> TestApp {
        Self::spawn_full(limits, embedder, AdminKey::configured(ADMIN_KEY)).await
    }

    pub async fn spawn_full(
        limits: Limits,
        embedder: Option<Arc<dyn Embedder>>,
        admin_key: AdminKey,
    ) -> TestApp {
        Self::spawn_state(|store| AppState::new(store, embedder, limits, admin_key)).await
    }

    /// The application with the state `make` builds on a fresh database's store.
    pub async fn spawn_state(make: impl FnOnce(Store) -> AppState) -> TestApp {
        let db = TestDb::new().await;
        let state = make(db.store.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a random port");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let app = mnemo_server::app(state);
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            mnemo_server::serve(listener, app, shutdown, Duration::from_secs(5))
                .await
                .expect("serve");
        });
        TestApp {
            base_url: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
            admin_key: ADMIN_KEY.to_owned(),
            store: db.store,
            _stop: stop,
        }
    }

    /// Sends `body` as JSON (when given) with `key` as the bearer token (when given).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let body = body.map(|b| serde_json::to_vec(&b).expect("serialize"));
        self.call_raw(method, path, key, body, Some("application/json"))
            .await
    }

    /// Sends raw bytes with the given content type.
    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> Resp {
        self.call_with_headers(method, path, key, body, content_type, &[])
            .await
    }

    /// [`TestApp::call_raw`] with extra request headers.
    pub async fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base_url));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            req = req.body(b);
        }
        let res = req.send().await.expect("request reaches the server");
        let status = res.status().as_u16();
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let request_id = header("x-request-id");
        let content_type = header("content-type");
        let headers = res.headers().clone();
        let text = res.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            body,
            text,
            request_id,
            content_type,
            headers,
        }
    }

    pub async fn get(&self, path: &str, key: &str) -> Resp {
        self.call("GET", path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Resp {
        self.call("POST", path, Some(key), Some(body)).await
    }

    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        self.call(method, path, Some(&self.admin_key), body).await
    }

    /// Creates a project and returns its id.
    pub async fn create_project(&self, name: &str) -> String {
        let r = self
            .admin(
                "POST",
                "/v1/admin/projects",
                Some(json!({ "name": name, "owner_id": "owner-1" })),
            )
            .await;
        r.ok(201)["id"].as_str().expect("project id").to_owned()
    }

    /// Creates a tenant in `project_id`; `extra` adds fields such as quotas.
    pub async fn create_tenant(&self, project_id: &str, tenant_id: &str, extra: Value) -> Value {
        let mut body =
            json!({ "tenant_id": tenant_id, "project_id": project_id, "name": tenant_id });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let r = self.admin("POST", "/v1/admin/tenants", Some(body)).await;
        r.ok(201).clone()
    }

    /// Issues a key for the tenant; returns (key id, secret).
    pub async fn create_key(
        &self,
        tenant_id: &str,
        scopes: &[&str],
        expires_at: Option<String>,
    ) -> (String, String) {
        let mut body = json!({ "name": format!("key of {tenant_id}"), "scopes": scopes });
        if let Some(t) = expires_at {
            body["expires_at"] = json!(t);
        }
        let r = self
            .admin(
                "POST",
                &format!("/v1/admin/tenants/{tenant_id}/keys"),
                Some(body),
            )
            .await;
        let b = r.ok(201);
        (
            b["id"].as_str().expect("key id").to_owned(),
            b["secret"].as_str().expect("secret").to_owned(),
        )
    }

    /// A tenant in its own project, with a key holding every scope.
    pub async fn new_tenant(&self, tenant_id: &str) -> TenantHandle {
        let project_id = self
            .create_project(&format!("project of {tenant_id}"))
            .await;
        self.new_tenant_in(&project_id, tenant_id, json!({})).await
    }

    pub async fn new_tenant_in(
        &self,
        project_id: &str,
        tenant_id: &str,
        extra: Value,
    ) -> TenantHandle {
        self.create_tenant(project_id, tenant_id, extra).await;
        let (key_id, key) = self.create_key(tenant_id, &["*"], None).await;
        TenantHandle {
            tenant_id: tenant_id.to_owned(),
            project_id: project_id.to_owned(),
            key,
            key_id,
        }
    }

    /// Creates a memory with a client-supplied vector; returns the response body.
    pub async fn create_memory(&self, key: &str, memory_id: &str, content: Value) -> Value {
        let r = self
            .post(
                "/v1/memories",
                key,
                json!({ "memory_id": memory_id, "content": content, "embedding": vector(1) }),
            )
            .await;
        r.ok(201).clone()
    }

    /// Creates a relationship (201 expected) and returns it.
    pub async fn link(
        &self,
        key: &str,
        source: &str,
        target: &str,
        kind: &str,
        weight: f64,
    ) -> Value {
        let r = self
            .post(
                "/v1/relationships",
                key,
                json!({ "source": source, "target": target, "relationship_type": kind, "weight": weight }),
            )
            .await;
        r.ok(201).clone()
    }

    /// How many memories the tenant of `key` can see (via `/v1/usage`).
    pub async fn memory_count(&self, key: &str) -> i64 {
        let r = self.get("/v1/usage", key).await;
        r.ok(200)["total_memories"]
            .as_i64()
            .expect("total_memories")
    }
}

/// One operation of the OpenAPI document.
#[derive(Debug, Clone)]
pub struct Operation {
    /// Upper case, e.g. `GET`.
    pub method: String,
    /// The path template, e.g. `/v1/memories/{memory_id}`.
    pub path: String,
    pub has_body: bool,
}

/// Every operation `mnemo_server::openapi()` documents.
pub fn openapi_operations() -> Vec<Operation> {
    let doc =
        serde_json::to_value(mnemo_server::openapi()).expect("serialize the OpenAPI document");
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in [
            "get", "put", "post", "delete", "patch", "head", "options", "trace",
        ] {
            if let Some(op) = item.get(method) {
                ops.push(Operation {
                    method: method.to_uppercase(),
                    path: path.clone(),
                    has_body: op.get("requestBody").is_some(),
                });
            }
        }
    }
    ops
}
