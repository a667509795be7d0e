use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use mnemo_embed::{EmbedError, Embedder, HttpEmbedder, HttpEmbedderConfig};
use secrecy::SecretString;
use serde_json::{json, Value};

const DIM: usize = 4;

/// Serves `app` on a random loopback port; returns the base URL (`http://127.0.0.1:PORT/v1`).
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a loopback port");
    let address = listener.local_addr().expect("bound address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}/v1")
}

fn embedder(base_url: String, api_key: Option<&str>) -> HttpEmbedder {
    HttpEmbedder::new(HttpEmbedderConfig {
        base_url,
        model: "test-embedding".to_owned(),
        dim: DIM,
        api_key: api_key.map(SecretString::from),
        timeout: Duration::from_secs(5),
    })
    .expect("valid configuration")
}

/// An OpenAI-style endpoint that answers in reverse order with `[len(text), index, 0.5, -0.5]`,
/// recording each request's body and `Authorization` header.
#[derive(Clone, Default)]
struct Recorder {
    requests: Arc<Mutex<Vec<Recorded>>>,
}

#[derive(Clone)]
struct Recorded {
    body: Value,
    authorization: Option<String>,
}

impl Recorder {
    fn router(&self) -> Router {
        let recorder = self.clone();
        Router::new().route(
            "/v1/embeddings",
            post(
                move |headers: HeaderMap, Json(body): Json<Value>| async move {
                    let authorization = headers
                        .get(header::AUTHORIZATION)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned);
                    let inputs: Vec<String> = body["input"]
                        .as_array()
                        .map(|inputs| {
                            inputs
                                .iter()
                                .filter_map(|text| text.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default();
                    recorder
                        .requests
                        .lock()
                        .expect("recorder lock")
                        .push(Recorded {
                            body,
                            authorization,
                        });
                    let data: Vec<Value> = inputs
                        .iter()
                        .enumerate()
                        .rev()
                        .map(|(index, text)| {
                            json!({
                                "object": "embedding",
                                "index": index,
                                "embedding": [text.len() as f32, index as f32, 0.5, -0.5],
                            })
                        })
                        .collect();
                    Json(json!({ "object": "list", "data": data, "model": "test-embedding" }))
                },
            ),
        )
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("recorder lock").clone()
    }
}

/// An endpoint that always answers `status` with the raw JSON `body`.
fn canned(status: StatusCode, body: &'static str) -> Router {
    Router::new().route(
        "/v1/embeddings",
        post(move || async move { (status, [(header::CONTENT_TYPE, "application/json")], body) }),
    )
}

#[tokio::test]
async fn http_embedder_returns_vectors_in_input_order() {
    let recorder = Recorder::default();
    let base_url = serve(recorder.router()).await;
    let texts = vec!["a".to_owned(), "bb".to_owned(), "ccc".to_owned()];

    let vectors = embedder(base_url, None)
        .embed(texts.clone())
        .await
        .expect("embedding");

    assert_eq!(
        vectors,
        vec![
            vec![1.0, 0.0, 0.5, -0.5],
            vec![2.0, 1.0, 0.5, -0.5],
            vec![3.0, 2.0, 0.5, -0.5],
        ]
    );
    let requests = recorder.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].body,
        json!({ "model": "test-embedding", "input": texts })
    );
}

#[tokio::test]
async fn http_embedder_sends_the_api_key_as_bearer_token() {
    let recorder = Recorder::default();
    let base_url = serve(recorder.router()).await;

    embedder(base_url.clone(), Some("sk-test-123"))
        .embed(vec!["hello".to_owned()])
        .await
        .expect("embedding with a key");
    embedder(base_url, None)
        .embed(vec!["hello".to_owned()])
        .await
        .expect("embedding without a key");

    let authorizations: Vec<Option<String>> = recorder
        .requests()
        .into_iter()
        .map(|request| request.authorization)
        .collect();
    assert_eq!(
        authorizations,
        vec![Some("Bearer sk-test-123".to_owned()), None]
    );
}

#[tokio::test]
async fn http_embedder_accepts_a_base_url_with_trailing_slash() {
    let base_url = serve(Recorder::default().router()).await;
    let vectors = embedder(format!("{base_url}/"), None)
        .embed(vec!["x".to_owned()])
        .await
        .expect("embedding");
    assert_eq!(vectors.len(), 1);
}

#[tokio::test]
async fn http_embedder_rejects_vectors_of_the_wrong_dimension() {
    let base_url = serve(canned(
        StatusCode::OK,
        r#"{"data":[{"index":0,"embedding":[0.1,0.2,0.3]}]}"#,
    ))
    .await;
    let error = embedder(base_url, None)
        .embed(vec!["hello".to_owned()])
        .await
        .expect_err("3 values where 4 are configured");
    assert!(
        matches!(&error, EmbedError::InvalidResponse(message) if message.contains("3 dimensions, expected 4")),
        "unexpected error: {error}"
    );
}

#[tokio::test]
async fn http_embedder_reports_a_server_error_with_its_status_and_body() {
    let base_url = serve(canned(
        StatusCode::INTERNAL_SERVER_ERROR,
        r#"{"error":{"message":"model overloaded"}}"#,
    ))
    .await;
    let error = embedder(base_url, None)
        .embed(vec!["hello".to_owned()])
        .await
        .expect_err("500");
    assert!(
        matches!(&error, EmbedError::Http { status: 500, body } if body.contains("model overloaded")),
        "unexpected error: {error}"
    );
}

#[tokio::test]
async fn http_embedder_rejects_values_that_overflow_f32() {
    let base_url = serve(canned(
        StatusCode::OK,
        r#"{"data":[{"index":0,"embedding":[0.1,1e39,0.3,0.4]}]}"#,
    ))
    .await;
    let error = embedder(base_url, None)
        .embed(vec!["hello".to_owned()])
        .await
        .expect_err("1e39 is infinite as f32");
    assert!(
        // Depending on serde_json's float parser (float_roundtrip is on in this workspace) the value
        // is refused while parsing ("out of range") or after it ("non-finite"): either way, invalid.
        matches!(&error, EmbedError::InvalidResponse(message)
            if message.contains("non-finite value at position 1") || message.contains("number out of range")),
        "unexpected error: {error}"
    );
}

#[tokio::test]
async fn http_embedder_rejects_nan_tokens() {
    let base_url = serve(canned(
        StatusCode::OK,
        r#"{"data":[{"index":0,"embedding":[0.1,NaN,0.3,0.4]}]}"#,
    ))
    .await;
    let error = embedder(base_url, None)
        .embed(vec!["hello".to_owned()])
        .await
        .expect_err("NaN is not JSON");
    assert!(
        matches!(error, EmbedError::InvalidResponse(_)),
        "unexpected error: {error}"
    );
}

#[tokio::test]
async fn http_embedder_rejects_a_response_with_too_few_vectors() {
    let base_url = serve(canned(
        StatusCode::OK,
        r#"{"data":[{"index":0,"embedding":[0.1,0.2,0.3,0.4]}]}"#,
    ))
    .await;
    let error = embedder(base_url, None)
        .embed(vec!["one".to_owned(), "two".to_owned()])
        .await
        .expect_err("one vector for two texts");
    assert!(
        matches!(&error, EmbedError::InvalidResponse(message) if message.contains("1 embeddings for 2 texts")),
        "unexpected error: {error}"
    );
}

#[tokio::test]
async fn http_embedder_times_out_on_a_slow_provider() {
    let slow = Router::new().route(
        "/v1/embeddings",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK.into_response()
        }),
    );
    let base_url = serve(slow).await;
    let embedder = HttpEmbedder::new(HttpEmbedderConfig {
        base_url,
        model: "test-embedding".to_owned(),
        dim: DIM,
        api_key: None,
        timeout: Duration::from_millis(200),
    })
    .expect("valid configuration");

    let error = embedder
        .embed(vec!["hello".to_owned()])
        .await
        .expect_err("slower than the timeout");
    assert!(
        matches!(&error, EmbedError::Unavailable(message) if message.contains("within")),
        "unexpected error: {error}"
    );
}

#[tokio::test]
async fn http_embedder_reports_a_refused_connection_as_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a loopback port");
    let address = listener.local_addr().expect("bound address");
    drop(listener);

    let error = embedder(format!("http://{address}/v1"), None)
        .embed(vec!["hello".to_owned()])
        .await
        .expect_err("nobody listens");
    assert!(
        matches!(error, EmbedError::Unavailable(_)),
        "unexpected error: {error}"
    );
}

#[tokio::test]
async fn http_embedder_refuses_empty_texts_and_oversized_calls_before_sending() {
    let recorder = Recorder::default();
    let embedder = embedder(serve(recorder.router()).await, None);

    let empty = embedder
        .embed(vec!["a".to_owned(), String::new()])
        .await
        .expect_err("empty text");
    assert_eq!(empty, EmbedError::EmptyText { index: 1 });

    let too_many = embedder
        .embed(vec!["a".to_owned(); mnemo_embed::MAX_TEXTS_PER_CALL + 1])
        .await
        .expect_err("too many texts");
    assert!(matches!(too_many, EmbedError::TooManyTexts { .. }));

    assert!(recorder.requests().is_empty());
}

#[test]
fn http_embedder_config_is_checked() {
    let config = |base_url: &str, dim: usize| HttpEmbedderConfig {
        base_url: base_url.to_owned(),
        model: "m".to_owned(),
        dim,
        api_key: None,
        timeout: Duration::from_secs(1),
    };
    assert!(matches!(
        HttpEmbedder::new(config("not a url", 4)),
        Err(EmbedError::Config(_))
    ));
    assert!(matches!(
        HttpEmbedder::new(config("ftp://example.com", 4)),
        Err(EmbedError::Config(_))
    ));
    assert!(matches!(
        HttpEmbedder::new(config("http://example.com/v1", 0)),
        Err(EmbedError::Config(_))
    ));
}
