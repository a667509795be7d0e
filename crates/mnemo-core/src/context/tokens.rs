//! Counting tokens the way the caller's LLM will: OpenAI's BPE vocabularies through `tiktoken-rs`.
//!
//! The vocabularies are compiled into the binary (`tiktoken-rs` embeds its `.tiktoken` files with
//! `include_str!`), so counting works offline. Each one is parsed once, on first use (about a
//! hundred milliseconds), and shared by all threads afterwards.
//!
//! Text is counted as ordinary text: a special-token spelling such as `<|endoftext|>` inside a
//! message counts as the several tokens of its characters, which is how a chat API reads user
//! text and never fewer than the special token's one.

use tiktoken_rs::CoreBPE;

use crate::types::text_enum;
use crate::Invalid;

/// Longest token of either vocabulary, in bytes: a text has at least `len / 128` tokens.
pub const MAX_TOKEN_BYTES: usize = 128;

/// Runs up to this many bytes are counted exactly (see [`TokenizerKind::count`]).
pub const MAX_EXACT_RUN: usize = 1 << 15;

text_enum!(
    /// A tokenizer a request may name; `o200k_base` (GPT-4o and later) unless it says otherwise.
    TokenizerKind { O200kBase => "o200k_base", Cl100kBase => "cl100k_base" }
);

// The enum comes from `text_enum!`, which has no `#[default]` variant attribute.
#[allow(clippy::derivable_impls)]
impl Default for TokenizerKind {
    fn default() -> Self {
        TokenizerKind::O200kBase
    }
}

impl TokenizerKind {
    /// Parses the optional `tokenizer` field of a request: absent means the default.
    pub fn parse(field: &str, value: Option<&str>) -> Result<Self, Invalid> {
        match value {
            None => Ok(Self::default()),
            Some(s) => s
                .parse()
                .map_err(|e: Invalid| Invalid::new(field, e.message)),
        }
    }

    /// The number of tokens of `text`.
    ///
    /// Exact for any text whose runs of whitespace, and runs without whitespace, are shorter than
    /// [`MAX_EXACT_RUN`] bytes. Longer runs are counted slice by slice plus one token per cut
    /// (a count a little high, never low): the pre-tokenizer's regex backtracks once per
    /// character of a whitespace run and gives up near a million (a panic inside `tiktoken-rs`),
    /// and BPE time grows faster than linearly with the length of a piece (8 MB of one letter
    /// took 13 s whole).
    pub fn count(self, text: &str) -> usize {
        let bpe = self.bpe();
        let mut total = 0;
        let mut start = 0;
        for cut in run_cuts(text) {
            total += bpe.encode_ordinary(&text[start..cut]).len() + 1;
            start = cut;
        }
        total + bpe.encode_ordinary(&text[start..]).len()
    }

    fn bpe(self) -> &'static CoreBPE {
        match self {
            TokenizerKind::O200kBase => tiktoken_rs::o200k_base_singleton(),
            TokenizerKind::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
        }
    }
}

/// Byte offsets inside long runs, one every [`MAX_EXACT_RUN`] bytes of a run of whitespace or of
/// a run of anything else.
fn run_cuts(text: &str) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut run_start = 0;
    let mut run_ws = None;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        if run_ws != Some(ws) {
            run_ws = Some(ws);
            run_start = i;
        } else if i - run_start >= MAX_EXACT_RUN {
            cuts.push(i);
            run_start = i;
        }
    }
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_o200k() {
        assert_eq!(TokenizerKind::default(), TokenizerKind::O200kBase);
        assert_eq!(
            TokenizerKind::parse("tokenizer", None).unwrap(),
            TokenizerKind::O200kBase
        );
    }

    #[test]
    fn request_names_parse() {
        assert_eq!(
            TokenizerKind::parse("tokenizer", Some("cl100k_base")).unwrap(),
            TokenizerKind::Cl100kBase
        );
        let json: TokenizerKind = serde_json::from_str(r#""o200k_base""#).unwrap();
        assert_eq!(json, TokenizerKind::O200kBase);
    }

    #[test]
    fn unknown_name_is_refused_with_the_field() {
        let e = TokenizerKind::parse("tokenizer", Some("gpt2")).unwrap_err();
        assert_eq!(e.field, "tokenizer");
        assert!(e.message.contains("o200k_base"), "{e}");
    }

    #[test]
    fn counts_match_the_published_vocabularies() {
        // Reference counts from OpenAI's tiktoken for the same strings.
        assert_eq!(TokenizerKind::Cl100kBase.count("hello world"), 2);
        assert_eq!(TokenizerKind::O200kBase.count("hello world"), 2);
        assert_eq!(TokenizerKind::Cl100kBase.count("tiktoken is great!"), 6);
        assert_eq!(TokenizerKind::O200kBase.count(""), 0);
    }

    #[test]
    fn huge_runs_are_counted_without_panicking() {
        for ws in [" ", "\n", "\t", " \n", "\u{3000}", "x", "..", "😀"] {
            let text = format!("a{}b", ws.repeat(2_000_000 / ws.len()));
            for kind in TokenizerKind::ALL {
                assert!(kind.count(&text) > 2);
            }
        }
    }

    #[test]
    fn sliced_runs_count_at_least_the_exact_figure() {
        // 100k characters is within what the regex handles whole, so the exact count is known.
        for text in [
            format!("x{}y", " ".repeat(100_000)),
            "z".repeat(100_000),
            "4.".repeat(50_000),
        ] {
            for kind in TokenizerKind::ALL {
                let exact = kind.bpe().encode_ordinary(&text).len();
                let counted = kind.count(&text);
                assert!(
                    counted >= exact && counted <= exact + 8,
                    "{kind}: {counted} vs {exact}"
                );
            }
        }
    }

    #[test]
    fn special_token_spelling_counts_as_text() {
        assert!(TokenizerKind::O200kBase.count("<|endoftext|>") > 1);
    }
}
