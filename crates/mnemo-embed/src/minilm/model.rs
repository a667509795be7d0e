//! The sentence-transformers recipe on candle: tokenize, BERT, mean over the attention mask,
//! L2-normalize. Synchronous and CPU-bound; [`super`] runs it on the worker thread.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use sha2::{Digest, Sha256};
use tokenizers::{Tokenizer, TruncationParams};

use crate::EmbedError;

/// all-MiniLM-L6-v2 was trained with `max_seq_length` 256; later tokens are dropped.
const MAX_TOKENS: usize = 256;

/// Texts are cut to this many bytes before tokenizing. 256 tokens of ordinary text take a few
/// KiB, so the cut never changes an embedding in practice; it bounds the tokenizer's work and
/// memory on a multi-megabyte input whose tail would be truncated away anyway.
const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Rows per forward pass. Each sub-batch is padded to its longest member, and texts are sorted
/// by length first so that short texts do not pay for long ones.
const SUB_BATCH: usize = 32;

pub(super) struct SentenceEncoder {
    bert: BertModel,
    tokenizer: Tokenizer,
    pad_id: u32,
}

impl SentenceEncoder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir`, refusing weights
    /// whose SHA-256 is not `expected_sha256` or whose hidden size is not `expected_dim`.
    pub(super) fn load(
        dir: &Path,
        expected_sha256: &str,
        expected_dim: usize,
    ) -> Result<Self, EmbedError> {
        let fail = |reason: String| EmbedError::ModelLoad {
            path: dir.to_path_buf(),
            reason,
        };

        let config_path = dir.join("config.json");
        let config = std::fs::read_to_string(&config_path)
            .map_err(|e| format!("{}: {e}", config_path.display()))
            .and_then(|text| {
                serde_json::from_str::<Config>(&text)
                    .map_err(|e| format!("{}: {e}", config_path.display()))
            })
            .map_err(fail)?;
        if config.hidden_size != expected_dim {
            return Err(fail(format!(
                "config.json has hidden_size {}, expected {expected_dim}",
                config.hidden_size
            )));
        }
        let pad_id = u32::try_from(config.pad_token_id)
            .map_err(|_| fail(format!("pad_token_id {} is too large", config.pad_token_id)))?;

        let tokenizer_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| fail(format!("{}: {e}", tokenizer_path.display())))?;
        // tokenizer.json pads and truncates to a fixed 128 tokens: pad per sub-batch instead
        // (see `forward`) and truncate at the length the model was trained with.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| fail(format!("setting truncation: {e}")))?;

        let weights_path = dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path)
            .map_err(|e| fail(format!("{}: {e}", weights_path.display())))?;
        let actual_sha256 = format!("{:x}", Sha256::digest(&weights));
        if actual_sha256 != expected_sha256 {
            return Err(fail(format!(
                "model.safetensors has SHA-256 {actual_sha256}, expected {expected_sha256}"
            )));
        }
        // Buffered rather than memory-mapped: mapping is `unsafe`, which the workspace forbids,
        // and the 91 MB copy is read once at startup.
        let vars = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| fail(format!("{}: {e}", weights_path.display())))?;
        let bert = BertModel::load(vars, &config)
            .map_err(|e| fail(format!("{}: {e}", weights_path.display())))?;

        Ok(Self {
            bert,
            tokenizer,
            pad_id,
        })
    }

    /// Token ids of each text, with `[CLS]`/`[SEP]`, truncated to [`MAX_TOKENS`].
    pub(super) fn tokenize(&self, texts: &[String]) -> Result<Vec<Vec<u32>>, EmbedError> {
        let inputs: Vec<&str> = texts
            .iter()
            .map(|text| prefix_within(text, MAX_TEXT_BYTES))
            .collect();
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| EmbedError::Inference(format!("tokenizing: {e}")))?;
        Ok(encodings
            .iter()
            .map(|encoding| encoding.get_ids().to_vec())
            .collect())
    }

    /// One unit vector per token sequence, in input order.
    pub(super) fn embed(&self, sequences: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut order: Vec<usize> = (0..sequences.len()).collect();
        order.sort_by_key(|&i| sequences[i].len());

        let mut vectors = vec![Vec::new(); sequences.len()];
        for chunk in order.chunks(SUB_BATCH) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| sequences[i].as_slice()).collect();
            let embedded = self
                .forward(&batch)
                .map_err(|e| EmbedError::Inference(e.to_string()))?;
            for (&i, vector) in chunk.iter().zip(embedded) {
                vectors[i] = vector;
            }
        }
        Ok(vectors)
    }

    fn forward(&self, batch: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let rows = batch.len();
        let width = batch.iter().map(|ids| ids.len()).max().unwrap_or(0);
        if rows == 0 || width == 0 {
            return Ok(Vec::new());
        }

        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for sequence in batch {
            let padding = width - sequence.len();
            ids.extend_from_slice(sequence);
            ids.extend(std::iter::repeat_n(self.pad_id, padding));
            mask.extend(std::iter::repeat_n(1u32, sequence.len()));
            mask.extend(std::iter::repeat_n(0u32, padding));
        }
        let ids = Tensor::from_vec(ids, (rows, width), &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, (rows, width), &Device::Cpu)?;
        let token_types = ids.zeros_like()?;

        let hidden = self.bert.forward(&ids, &token_types, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        mean.broadcast_div(&norms)?.to_vec2::<f32>()
    }
}

/// The longest prefix of `text` of at most `max_bytes` bytes that ends on a char boundary.
fn prefix_within(text: &str, max_bytes: usize) -> &str {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::prefix_within;

    #[test]
    fn prefix_within_never_splits_a_char() {
        let text = "aé東"; // 1 + 2 + 3 bytes
        let prefixes: Vec<&str> = (0..=7).map(|max| prefix_within(text, max)).collect();
        assert_eq!(prefixes, ["", "a", "a", "aé", "aé", "aé", "aé東", "aé東"]);
    }
}
