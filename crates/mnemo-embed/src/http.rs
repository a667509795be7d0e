//! Any OpenAI-compatible embeddings API: `POST {base_url}/embeddings` with
//! `{"model": ..., "input": [...]}`, answered by `{"data": [{"index": i, "embedding": [...]}]}`.

use std::error::Error as _;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::{check_text_count, EmbedError, Embedder};

/// Bytes of a non-2xx response body kept in [`EmbedError::Http`].
const ERROR_BODY_EXCERPT: usize = 512;

/// Generous upper bound for one JSON number, pretty-printed (`"  -0.0123456789012345,\n"`).
const MAX_BYTES_PER_VALUE: usize = 64;

/// Where and how to reach the provider.
#[derive(Debug, Clone)]
pub struct HttpEmbedderConfig {
    /// Base URL of the API, e.g. `https://api.openai.com/v1`; `/embeddings` is appended.
    pub base_url: String,
    /// Model name sent with every request and reported by [`Embedder::model_name`].
    pub model: String,
    /// Length the provider's vectors must have; any other length is an error.
    pub dim: usize,
    /// Sent as `Authorization: Bearer <key>` when present.
    pub api_key: Option<SecretString>,
    /// Limit for a whole request: connecting, sending and reading the answer.
    pub timeout: Duration,
}

/// Embeds through a remote OpenAI-compatible API.
///
/// Rejects empty texts locally ([`EmbedError::EmptyText`]) because the OpenAI API refuses them
/// with a less helpful 400.
#[derive(Debug)]
pub struct HttpEmbedder {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    model: String,
    dim: usize,
    api_key: Option<SecretString>,
    timeout: Duration,
}

impl HttpEmbedder {
    /// Checks `config` and builds the HTTP client; contacts nothing.
    pub fn new(config: HttpEmbedderConfig) -> Result<Self, EmbedError> {
        if config.dim == 0 {
            return Err(EmbedError::Config("dim must be at least 1".into()));
        }
        if config.model.trim().is_empty() {
            return Err(EmbedError::Config("model must not be empty".into()));
        }
        if config.timeout.is_zero() {
            return Err(EmbedError::Config("timeout must be positive".into()));
        }
        let endpoint_text = format!("{}/embeddings", config.base_url.trim_end_matches('/'));
        let endpoint = reqwest::Url::parse(&endpoint_text).map_err(|e| {
            EmbedError::Config(format!("base_url {:?} is not a URL: {e}", config.base_url))
        })?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(EmbedError::Config(format!(
                "base_url {:?} must be http or https",
                config.base_url
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| EmbedError::Config(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            client,
            endpoint,
            model: config.model,
            dim: config.dim,
            api_key: config.api_key,
            timeout: config.timeout,
        })
    }

    async fn request(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .json(&EmbeddingsRequest {
                model: &self.model,
                input: texts,
            });
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let mut response = request.send().await.map_err(|e| self.unavailable(&e))?;

        let status = response.status();
        if !status.is_success() {
            let (body, _) = read_body(&mut response, ERROR_BODY_EXCERPT)
                .await
                .unwrap_or_default();
            return Err(EmbedError::Http {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }

        let limit = texts.len() * self.dim * MAX_BYTES_PER_VALUE + 1024 * 1024;
        let (body, complete) = read_body(&mut response, limit)
            .await
            .map_err(|e| self.unavailable(&e))?;
        if !complete {
            return Err(EmbedError::InvalidResponse(format!(
                "response body exceeds {limit} bytes for {} texts",
                texts.len()
            )));
        }
        let parsed: EmbeddingsResponse = serde_json::from_slice(&body)
            .map_err(|e| EmbedError::InvalidResponse(format!("not an embeddings response: {e}")))?;
        vectors_by_index(parsed.data, texts.len(), self.dim)
    }

    fn unavailable(&self, error: &reqwest::Error) -> EmbedError {
        if error.is_timeout() {
            return EmbedError::Unavailable(format!(
                "no answer from {} within {:?}",
                self.endpoint, self.timeout
            ));
        }
        // reqwest's own message omits the cause ("error sending request for url (…)").
        let mut message = error.to_string();
        let mut cause = error.source();
        while let Some(inner) = cause {
            message.push_str(": ");
            message.push_str(&inner.to_string());
            cause = inner.source();
        }
        EmbedError::Unavailable(message)
    }
}

impl Embedder for HttpEmbedder {
    fn dim(&self) -> usize {
        self.dim
    }

    fn model_name(&self) -> &str {
        &self.model
    }

    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            check_text_count(&texts)?;
            if let Some(index) = texts.iter().position(|text| text.is_empty()) {
                return Err(EmbedError::EmptyText { index });
            }
            if texts.is_empty() {
                return Ok(Vec::new());
            }
            self.request(&texts).await
        })
    }
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [String],
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    index: usize,
    embedding: Vec<f32>,
}

/// Reads at most `limit` bytes of the body; the flag is false when more was left unread.
async fn read_body(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// Puts the items in input order, requiring exactly one finite `dim`-long vector per text.
fn vectors_by_index(
    items: Vec<EmbeddingItem>,
    count: usize,
    dim: usize,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let invalid = EmbedError::InvalidResponse;
    if items.len() != count {
        return Err(invalid(format!(
            "{} embeddings for {count} texts",
            items.len()
        )));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; count];
    for EmbeddingItem { index, embedding } in items {
        let slot = slots
            .get_mut(index)
            .ok_or_else(|| invalid(format!("index {index} out of range for {count} texts")))?;
        if embedding.len() != dim {
            return Err(invalid(format!(
                "embedding {index} has {} dimensions, expected {dim}",
                embedding.len()
            )));
        }
        if let Some(position) = embedding.iter().position(|value| !value.is_finite()) {
            return Err(invalid(format!(
                "embedding {index} has a non-finite value at position {position}"
            )));
        }
        if slot.replace(embedding).is_some() {
            return Err(invalid(format!("index {index} appears twice")));
        }
    }
    // Unreachable after the checks above (count items, all distinct and in range), but cheap.
    slots
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| invalid("an index is missing".into()))
}

#[cfg(test)]
mod tests {
    use super::{vectors_by_index, EmbeddingItem};
    use crate::EmbedError;

    fn item(index: usize, embedding: &[f32]) -> EmbeddingItem {
        EmbeddingItem {
            index,
            embedding: embedding.to_vec(),
        }
    }

    #[test]
    fn vectors_are_put_in_index_order() {
        let items = vec![item(2, &[2.0]), item(0, &[0.0]), item(1, &[1.0])];
        let vectors = vectors_by_index(items, 3, 1);
        assert_eq!(vectors, Ok(vec![vec![0.0], vec![1.0], vec![2.0]]));
    }

    #[test]
    fn duplicate_index_is_rejected() {
        let items = vec![item(0, &[0.0]), item(0, &[1.0])];
        assert!(matches!(
            vectors_by_index(items, 2, 1),
            Err(EmbedError::InvalidResponse(message)) if message.contains("twice")
        ));
    }

    #[test]
    fn out_of_range_index_is_rejected() {
        let items = vec![item(0, &[0.0]), item(2, &[1.0])];
        assert!(matches!(
            vectors_by_index(items, 2, 1),
            Err(EmbedError::InvalidResponse(message)) if message.contains("out of range")
        ));
    }

    #[test]
    fn missing_item_is_rejected() {
        let items = vec![item(0, &[0.0])];
        assert!(matches!(
            vectors_by_index(items, 2, 1),
            Err(EmbedError::InvalidResponse(_))
        ));
    }

    #[test]
    fn infinite_value_is_rejected() {
        let items = vec![item(0, &[0.0, f32::INFINITY])];
        assert!(matches!(
            vectors_by_index(items, 1, 2),
            Err(EmbedError::InvalidResponse(message)) if message.contains("non-finite")
        ));
    }
}
