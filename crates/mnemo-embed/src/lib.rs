//! Text embeddings for Mnemo: the [`Embedder`] trait and its providers.
//!
//! - [`error`]: [`EmbedError`], the one error type of this layer.
//! - [`minilm`]: [`MiniLm`], all-MiniLM-L6-v2 run in-process (ONNX Runtime or candle) on a
//!   dedicated worker thread that coalesces concurrent calls into batches.
//! - [`http`]: [`HttpEmbedder`], any OpenAI-compatible `POST {base_url}/embeddings` endpoint.
//!
//! Callers hold an `Arc<dyn Embedder>` and never learn which provider answers.

pub mod error;
pub mod http;
pub mod minilm;

use futures::future::BoxFuture;

pub use error::EmbedError;
pub use http::{HttpEmbedder, HttpEmbedderConfig};
pub use minilm::{Backend, MiniLm, OnnxConfig};

/// The most texts any provider accepts in one [`Embedder::embed`] call.
pub const MAX_TEXTS_PER_CALL: usize = 256;

/// Turns texts into fixed-size vectors.
///
/// The future is boxed so that the trait stays object safe: the service holds an
/// `Arc<dyn Embedder>` chosen at startup.
pub trait Embedder: Send + Sync {
    /// Length of every vector this provider returns.
    fn dim(&self) -> usize;

    /// Name of the model, stored next to the vectors so that a model change is detectable.
    fn model_name(&self) -> &str;

    /// Embeds `texts`, returning one vector of length [`Embedder::dim`] per text, in input order.
    ///
    /// Fails with [`EmbedError::TooManyTexts`] above [`MAX_TEXTS_PER_CALL`] texts. An empty
    /// `texts` yields an empty result without contacting the provider.
    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Result<Vec<Vec<f32>>, EmbedError>>;

    /// The most tokens of one text the model reads (special tokens included); the rest of a
    /// longer text is silently dropped. `None` when the provider does not say.
    fn max_input_tokens(&self) -> Option<usize> {
        None
    }

    /// Tokens of `text` exactly as the model counts them against [`Embedder::max_input_tokens`]
    /// (special tokens included, no truncation), so a caller can cut texts that fit. `None` when
    /// the provider's tokenizer is not available here. Synchronous and CPU-bound (linear in the
    /// text): call it off the async runtime for long texts.
    fn count_tokens(&self, _text: &str) -> Option<usize> {
        None
    }
}

fn check_text_count(texts: &[String]) -> Result<(), EmbedError> {
    if texts.len() > MAX_TEXTS_PER_CALL {
        return Err(EmbedError::TooManyTexts {
            got: texts.len(),
            max: MAX_TEXTS_PER_CALL,
        });
    }
    Ok(())
}
