//! What a context write does before its transaction: compress the JSON as sent, cut the parsed
//! messages into chunks that fit the embedder, authorize the write (scope, policies, quota
//! headroom), embed the chunks, and summarize. Nothing is written here: the costly work holds no
//! database connection, and a failure (an embedder error, a refusal) leaves nothing behind.

use std::sync::Arc;

use mnemo_core::context::chunk::{chunk, render_transcript, ChunkParams, EmbedLimit};
use mnemo_core::context::compress::{Compressor, DEFAULT_LEVEL};
use mnemo_core::context::summary::{self, SummaryLimit};
use mnemo_core::context::{CapturedContext, Chunk, TokenizerKind};
use mnemo_embed::{Embedder, MAX_TEXTS_PER_CALL};
use mnemo_store::contexts::{NewChunk, NewContext};
use mnemo_store::memories::EMBEDDING_BYTES;

use super::Checked;
use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult};
use crate::ops::{authorize, Op};
use crate::state::AppState;

/// The chunk bound used with an embedder that does not count its own tokens (an HTTP provider):
/// this many `cl100k_base` tokens, counted by Mnemo. OpenAI's embedding models read 8,191 of
/// them; other providers' models commonly read 512 tokens of their own vocabulary, which a text of
/// 256 `cl100k_base` tokens stays under (WordPiece and SentencePiece vocabularies produce about
/// 1.2–1.5 times as many tokens on prose, up to twice as many on code). The chunker's own ceiling
/// (200 tokens of the context's tokenizer) is the tighter bound in practice.
pub const UNCOUNTED_EMBEDDER_TOKENS: usize = 256;

/// Sentences of a context embedded to choose its extractive summary from, at most (spread evenly
/// over a long context): a 100k-token context costs this many embeddings, not thousands.
const SUMMARY_CANDIDATES: usize = 64;

/// Sentences sampled for a chat model when the whole transcript is over its input bound.
const LLM_SAMPLE_SENTENCES: usize = 2000;

/// Everything of a context before it is embedded.
struct Cut {
    captured: CapturedContext,
    content: Vec<u8>,
    method: String,
    original_bytes: usize,
    chunks: Vec<Chunk>,
    tokens: usize,
}

/// Compresses, chunks and counts, off the async runtime (a large context takes a CPU-second or
/// more).
async fn cut(
    captured: CapturedContext,
    tokenizer: TokenizerKind,
    embedder: Option<Arc<dyn Embedder>>,
) -> ApiResult<Cut> {
    tokio::task::spawn_blocking(move || {
        let raw = captured.raw().get().as_bytes();
        let compressed = Compressor::new(DEFAULT_LEVEL, None)
            .and_then(|c| c.compress(raw))
            .map_err(|e| ApiError::internal(format!("compressing: {e}")))?;
        let cl100k = |t: &str| TokenizerKind::Cl100kBase.count(t);
        let counted = |t: &str| {
            embedder
                .as_deref()
                .and_then(|e| e.count_tokens(t))
                .unwrap_or(usize::MAX)
        };
        let nothing = |_: &str| 0;
        let limit = match embedder.as_deref() {
            None => EmbedLimit {
                count: &nothing,
                max: usize::MAX,
            },
            Some(e) => match (e.max_input_tokens(), e.count_tokens("")) {
                (Some(max), Some(_)) => EmbedLimit {
                    count: &counted,
                    max,
                },
                (max, _) => EmbedLimit {
                    count: &cl100k,
                    max: max.map_or(UNCOUNTED_EMBEDDER_TOKENS, |m| {
                        (m / 2).clamp(1, UNCOUNTED_EMBEDDER_TOKENS)
                    }),
                },
            },
        };
        let params = ChunkParams {
            tokenizer,
            ..ChunkParams::default()
        };
        let chunks = chunk(captured.messages(), &params, &limit)
            .map_err(|e| ApiError::internal(format!("chunking: {e}")))?;
        let tokens = tokenizer.count(&render_transcript(captured.messages()));
        Ok(Cut {
            method: compressed.method.to_string(),
            original_bytes: compressed.original_bytes,
            content: compressed.bytes,
            captured,
            chunks,
            tokens,
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("preparing the context: {e}")))?
}

/// Embeds `texts` in calls of at most [`MAX_TEXTS_PER_CALL`].
async fn embed_all(embedder: &dyn Embedder, texts: Vec<String>) -> ApiResult<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    let mut texts = texts.into_iter().peekable();
    while texts.peek().is_some() {
        let batch: Vec<String> = texts.by_ref().take(MAX_TEXTS_PER_CALL).collect();
        let n = batch.len();
        let vectors = embedder.embed(batch).await?;
        if vectors.len() != n {
            return Err(ApiError::internal("the embedder returned too few vectors"));
        }
        out.extend(vectors);
    }
    Ok(out)
}

/// The longest prefix of `text` (cut after a whole word when one ends in its second half) of at
/// most `max` tokens.
fn within_tokens(text: &str, max: usize, tokenizer: TokenizerKind) -> String {
    if tokenizer.count(text) <= max {
        return text.to_owned();
    }
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let (mut ok, mut bad) = (0usize, bounds.len());
    while bad > ok + 1 {
        let mid = (ok + bad) / 2;
        if tokenizer.count(&text[..bounds[mid]]) <= max {
            ok = mid;
        } else {
            bad = mid;
        }
    }
    let head = &text[..bounds[ok]];
    match head.rfind(char::is_whitespace) {
        Some(i) if i >= head.len() / 2 => head[..i].trim_end().to_owned(),
        _ => head.to_owned(),
    }
}

/// The summary's text and how it was made, or `None`.
async fn summarize(
    state: &AppState,
    cut: &Cut,
    tokenizer: TokenizerKind,
) -> ApiResult<Option<(String, String)>> {
    let max = state.limits.context_summary_tokens;
    let messages = cut.captured.messages();
    if let Some(llm) = &state.summarizer {
        let transcript = if cut.tokens <= llm.max_input_tokens() {
            render_transcript(messages)
        } else {
            let mut lines = Vec::new();
            let mut used = 0;
            for s in summary::candidate_sentences(messages, LLM_SAMPLE_SENTENCES) {
                used += TokenizerKind::O200kBase.count(s.text) + 1;
                if used > llm.max_input_tokens() {
                    break;
                }
                lines.push(s.text);
            }
            lines.join("\n")
        };
        match llm.summarize(&transcript, max).await {
            Ok(text) => {
                let text = within_tokens(&text, max, tokenizer);
                if !text.is_empty() {
                    return Ok(Some((text, format!("llm:{}", llm.model()))));
                }
                tracing::warn!("the chat model's summary is empty within the token limit; summarizing extractively");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the chat model could not summarize; summarizing extractively");
            }
        }
    }
    let Some(embedder) = &state.embedder else {
        return Ok(None);
    };
    let candidates = summary::candidate_sentences(messages, SUMMARY_CANDIDATES);
    if candidates.is_empty() {
        return Ok(None);
    }
    let texts: Vec<&str> = candidates.iter().map(|s| s.text).collect();
    let vectors = embed_all(
        embedder.as_ref(),
        texts.iter().map(|t| (*t).to_owned()).collect(),
    )
    .await?;
    let refs: Vec<&[f32]> = vectors.iter().map(Vec::as_slice).collect();
    let picked = summary::summarize(&texts, &refs, SummaryLimit::Tokens(max, tokenizer));
    let text = summary::render(&texts, &picked);
    Ok((!text.is_empty()).then(|| (text, "extractive".to_owned())))
}

/// The unit-length mean of `vectors`.
fn centroid(vectors: &[Vec<f32>]) -> Option<Vec<f32>> {
    let dim = vectors.first()?.len();
    let mut sum = vec![0.0f32; dim];
    for v in vectors {
        for (s, x) in sum.iter_mut().zip(v) {
            *s += x;
        }
    }
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt();
    (norm > 0.0 && norm.is_finite()).then(|| sum.iter().map(|x| x / norm).collect())
}

/// Everything the write transaction stores, computed before it opens. `op` is authorized (with
/// the quota headroom the context needs) before anything is embedded.
pub(super) async fn prepare(
    state: &AppState,
    ctx: &TenantCtx,
    op: &Op,
    req: Checked,
) -> ApiResult<NewContext> {
    let tokenizer = req.tokenizer;
    let kind = req.captured.kind();
    let cut = cut(req.captured, tokenizer, state.embedder.clone()).await?;
    let mut chunks: Vec<NewChunk> = cut
        .chunks
        .iter()
        .map(|c| NewChunk {
            messages: c.messages.map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
            chars: c.chars.map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
            tokens: i32::try_from(c.tokens).unwrap_or(i32::MAX),
            text: c.text.clone(),
            embedding: None,
        })
        .collect();
    let mut new = NewContext {
        context_id: req.context_id,
        session_id: req.session_id,
        payload_kind: kind.as_str().to_owned(),
        tokenizer: tokenizer.as_str().to_owned(),
        relevance_score: req.relevance_score,
        metadata: req.metadata,
        expires_at: req.expires_at,
        content: Vec::new(),
        compression_method: cut.method.clone(),
        original_bytes: cut.original_bytes as i64,
        token_count: cut.tokens as i64,
        message_count: i32::try_from(cut.captured.messages().len()).unwrap_or(i32::MAX),
        summary: None,
        summary_tokens: None,
        summary_method: None,
        embedding: None,
        embedding_model: None,
        chunks: Vec::new(),
    };

    // What the context will add, embeddings and a summary of the largest size included.
    let embedded = i64::from(state.embedder.is_some()) * EMBEDDING_BYTES;
    let estimate = cut.content.len() as i64
        + serde_json::to_vec(&new.metadata).map_or(0, |b| b.len() as i64)
        + chunks
            .iter()
            .map(|c| c.text.len() as i64 + embedded)
            .sum::<i64>()
        + embedded
        + (state.limits.context_summary_tokens as i64) * 4;
    authorize(state, ctx, &op.clone().grows(0, estimate)).await?;

    if let Some(embedder) = &state.embedder {
        let vectors = embed_all(
            embedder.as_ref(),
            chunks.iter().map(|c| c.text.clone()).collect(),
        )
        .await?;
        for (c, v) in chunks.iter_mut().zip(vectors) {
            c.embedding = Some(v);
        }
        new.embedding_model = Some(embedder.model_name().to_owned());
    }
    if let Some((text, method)) = summarize(state, &cut, tokenizer).await? {
        new.summary_tokens = i32::try_from(tokenizer.count(&text)).ok();
        if let Some(embedder) = &state.embedder {
            new.embedding = embed_all(embedder.as_ref(), vec![text.clone()])
                .await?
                .pop();
        }
        new.summary = Some(text);
        new.summary_method = Some(method);
    }
    if new.embedding.is_none() {
        // No summary to embed (a context of code and JSON only): its chunks' mean stands in.
        let vectors: Vec<Vec<f32>> = chunks.iter().filter_map(|c| c.embedding.clone()).collect();
        new.embedding = centroid(&vectors);
    }
    new.content = cut.content;
    new.chunks = chunks;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_over_the_limit_is_cut_after_a_word_within_it() {
        let tk = TokenizerKind::O200kBase;
        let text = "alpha bravo charlie delta echo foxtrot golf hotel india juliet";
        let cut = within_tokens(text, 4, tk);
        assert!(tk.count(&cut) <= 4, "{cut}");
        assert!(text.starts_with(&cut));
        assert!(!cut.ends_with(' '));
        assert_eq!(within_tokens(text, 1000, tk), text);
    }

    #[test]
    fn centroid_is_unit_length() {
        let c = centroid(&[vec![1.0, 0.0], vec![0.0, 1.0]]).expect("a centroid");
        assert!((c[0] - c[1]).abs() < 1e-6 && (c[0] * c[0] + c[1] * c[1] - 1.0).abs() < 1e-6);
        assert!(centroid(&[]).is_none());
    }
}
