//! Context summaries from an OpenAI-compatible chat endpoint (`MNEMO_LLM_URL`): `POST
//! {url}/chat/completions` with the transcript, answered by `choices[0].message.content`.
//!
//! The summary is an aid to retrieval, not part of what the service promises to keep (the
//! transcript is stored byte-exact either way), so a provider that fails, times out or answers
//! nonsense never fails the write: the caller falls back to the extractive summary and logs why
//! ([`LlmError`]). Every call is bounded in time (`timeout`) and in what is read back.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Bytes of an answer read at most (a summary is a few KiB; anything longer is refused).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Where and how to reach the provider.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// Base URL, e.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer <key>` when present.
    pub api_key: Option<SecretString>,
    /// For the whole call: connecting, sending, generating and reading.
    pub timeout: Duration,
    /// Tokens (o200k_base) of transcript sent at most; a longer transcript is represented by an
    /// even sample of its sentences.
    pub max_input_tokens: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
    #[error("the provider answered HTTP {status}")]
    Http { status: u16 },
    #[error("the provider's answer is not a chat completion: {0}")]
    InvalidResponse(String),
}

/// A summarizer backed by a chat model.
#[derive(Debug)]
pub struct LlmSummarizer {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    config: LlmConfig,
}

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: [ChatMessage<'a>; 2],
    max_tokens: usize,
    temperature: f32,
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: AnswerMessage,
}

#[derive(Deserialize)]
struct AnswerMessage {
    content: Option<String>,
}

impl LlmSummarizer {
    /// Checks `config` and builds the HTTP client; contacts nothing.
    pub fn new(config: LlmConfig) -> Result<Self, LlmError> {
        if config.model.trim().is_empty() {
            return Err(LlmError::Config("the model must not be empty".into()));
        }
        if config.timeout.is_zero() {
            return Err(LlmError::Config("the timeout must be positive".into()));
        }
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
        let endpoint = reqwest::Url::parse(&url)
            .map_err(|e| LlmError::Config(format!("{:?} is not a URL: {e}", config.base_url)))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(LlmError::Config(format!(
                "{:?} must be http or https",
                config.base_url
            )));
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| LlmError::Config(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            client,
            endpoint,
            config,
        })
    }

    pub fn model(&self) -> &str {
        &self.config.model
    }

    pub fn max_input_tokens(&self) -> usize {
        self.config.max_input_tokens
    }

    /// Asks for a summary of `transcript` of at most about `max_tokens` tokens. The answer's
    /// length is the caller's to enforce (models overshoot).
    pub async fn summarize(&self, transcript: &str, max_tokens: usize) -> Result<String, LlmError> {
        let instruction = format!(
            "Summarize the following conversation between a user, an AI assistant and its tools \
             for later retrieval: the task, decisions, facts, names, numbers and open questions. \
             Plain text, at most {max_tokens} tokens, no preamble."
        );
        let body = ChatRequest {
            model: &self.config.model,
            messages: [
                ChatMessage {
                    role: "system",
                    content: &instruction,
                },
                ChatMessage {
                    role: "user",
                    content: transcript,
                },
            ],
            max_tokens,
            temperature: 0.0,
        };
        let mut request = self.client.post(self.endpoint.clone()).json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| LlmError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(LlmError::Http {
                status: status.as_u16(),
            });
        }
        let mut bytes = Vec::new();
        while let Some(part) = response
            .chunk()
            .await
            .map_err(|e| LlmError::Unreachable(e.without_url().to_string()))?
        {
            bytes.extend_from_slice(&part);
            if bytes.len() > MAX_RESPONSE_BYTES {
                return Err(LlmError::InvalidResponse(format!(
                    "longer than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
        }
        let parsed: ChatResponse =
            serde_json::from_slice(&bytes).map_err(|e| LlmError::InvalidResponse(e.to_string()))?;
        let text = parsed
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .map(|t| t.trim().to_owned())
            .unwrap_or_default();
        if text.is_empty() {
            return Err(LlmError::InvalidResponse("no summary in the answer".into()));
        }
        Ok(text)
    }
}
