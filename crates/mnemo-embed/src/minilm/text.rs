//! From texts to token ids, shared by both engines: the model's own `tokenizer.json`, truncated
//! at the 256 tokens the model was trained with, and right-padding of a batch to its longest
//! member.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationParams};

use crate::EmbedError;

/// all-MiniLM-L6-v2 was trained with `max_seq_length` 256; later tokens are dropped.
pub(super) const MAX_TOKENS: usize = 256;

/// Texts are cut to this many bytes before tokenizing. 256 tokens of ordinary text take a few
/// KiB, so the cut never changes an embedding in practice; it bounds the tokenizer's work and
/// memory on a multi-megabyte input whose tail would be truncated away anyway.
const MAX_TEXT_BYTES: usize = 64 * 1024;

pub(super) struct TextEncoder {
    tokenizer: Tokenizer,
}

impl TextEncoder {
    pub(super) fn load(dir: &Path) -> Result<Self, String> {
        let path = dir.join("tokenizer.json");
        let mut tokenizer =
            Tokenizer::from_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // tokenizer.json pads and truncates to a fixed 128 tokens: pad per sub-batch instead
        // (see `Padded`) and truncate at the length the model was trained with.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| format!("setting truncation: {e}"))?;
        Ok(Self { tokenizer })
    }

    /// A counter sharing this tokenizer's vocabulary, without truncation.
    pub(super) fn counter(&self) -> Result<TokenCounter, String> {
        let mut tokenizer = self.tokenizer.clone();
        tokenizer
            .with_truncation(None)
            .map_err(|e| format!("disabling truncation: {e}"))?;
        Ok(TokenCounter { tokenizer })
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
}

/// Counts tokens as [`TextEncoder::tokenize`] produces them (`[CLS]` and `[SEP]` included) but
/// without truncation or the byte cut, so a caller can tell a text that fits [`MAX_TOKENS`] from
/// one the model would read only in part.
pub(super) struct TokenCounter {
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCounter")
    }
}

impl TokenCounter {
    /// `None` only if the tokenizer fails on the text (it does not on valid UTF-8).
    pub(super) fn count(&self, text: &str) -> Option<usize> {
        self.tokenizer.encode(text, true).ok().map(|e| e.len())
    }
}

/// A batch of token sequences padded on the right to the longest one, row-major.
pub(super) struct Padded {
    pub rows: usize,
    pub width: usize,
    pub ids: Vec<u32>,
    /// 1 for a token, 0 for padding.
    pub mask: Vec<u32>,
}

impl Padded {
    pub(super) fn new(batch: &[&[u32]], pad_id: u32) -> Self {
        let rows = batch.len();
        let width = batch.iter().map(|ids| ids.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows * width);
        let mut mask = Vec::with_capacity(rows * width);
        for sequence in batch {
            let padding = width - sequence.len();
            ids.extend_from_slice(sequence);
            ids.extend(std::iter::repeat_n(pad_id, padding));
            mask.extend(std::iter::repeat_n(1u32, sequence.len()));
            mask.extend(std::iter::repeat_n(0u32, padding));
        }
        Self {
            rows,
            width,
            ids,
            mask,
        }
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
    use super::{prefix_within, Padded};

    #[test]
    fn prefix_within_never_splits_a_char() {
        let text = "aé東"; // 1 + 2 + 3 bytes
        let prefixes: Vec<&str> = (0..=7).map(|max| prefix_within(text, max)).collect();
        assert_eq!(prefixes, ["", "a", "a", "aé", "aé", "aé", "aé東", "aé東"]);
    }

    #[test]
    fn padding_fills_each_row_to_the_longest_on_the_right() {
        let padded = Padded::new(&[&[101, 7, 102], &[101, 102]], 0);
        assert_eq!((padded.rows, padded.width), (2, 3));
        assert_eq!(padded.ids, [101, 7, 102, 101, 102, 0]);
        assert_eq!(padded.mask, [1, 1, 1, 1, 1, 0]);
    }
}
