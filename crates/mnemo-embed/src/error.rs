use std::path::PathBuf;

/// Why an embedding call failed.
///
/// Errors carry their causes as text rather than as `source()` chains: the in-process provider
/// answers every caller of a coalesced batch with the same error, so the type must be `Clone`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedError {
    /// The caller sent more texts in one call than any provider accepts.
    #[error("too many texts in one call: {got} (at most {max})")]
    TooManyTexts { got: usize, max: usize },

    /// The provider does not accept empty texts and text `index` is empty.
    #[error("text {index} is empty")]
    EmptyText { index: usize },

    /// The provider cannot be reached or has stopped: connection refused, timeout, worker gone.
    #[error("embedding provider unavailable: {0}")]
    Unavailable(String),

    /// The remote provider answered with a non-success status.
    #[error("embedding provider answered HTTP {status}: {body}")]
    Http { status: u16, body: String },

    /// The remote provider answered 2xx with something that is not a valid set of embeddings.
    #[error("invalid response from embedding provider: {0}")]
    InvalidResponse(String),

    /// The provider's configuration is unusable (bad URL, zero dimension).
    #[error("invalid embedding provider configuration: {0}")]
    Config(String),

    /// The local model could not be loaded from its directory.
    #[error("cannot load embedding model from {}: {reason}", path.display())]
    ModelLoad { path: PathBuf, reason: String },

    /// The local forward pass failed.
    #[error("embedding inference failed: {0}")]
    Inference(String),
}
