//! `POST /v1/contexts/reconstruct`: a prompt rebuilt from the most relevant chunks of the
//! tenant's contexts (and memories, when asked), within a token budget.
//!
//! Candidates: the best chunks for the query (hybrid when an embedder is configured, else
//! full-text), optionally the best memories (through memory search, with the key's memory scope
//! and access policies applied), and the summaries of the contexts the best chunks come from,
//! which rank below their chunks. Chunks and memories are each scored by reciprocal rank fusion of
//! their vector and text rankings, so the two kinds compete on one scale.
//! [`mnemo_core::context::pack`] then merges overlapping chunks, takes the most relevant
//! candidate first and the rest by relevance per token, and counts the final prompt with the
//! requested tokenizer: the prompt is never over the budget.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use mnemo_core::context::{pack, Candidate, ItemKind, PackOrder, TokenizerKind};
use mnemo_core::text::embedding_text;
use mnemo_core::{Invalid, Permission, Resource};
use mnemo_store::contexts;
use mnemo_store::memories::{Memory, MemoryFilter};
use mnemo_store::policies::Rules;
use mnemo_store::search::{self as memory_search, Strategy};

use super::build_filter;
use super::search::{find, fuse, plan, strategy_for};
use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::ops::{run_with_rules, Op};
use crate::routes::search::Mode;
use crate::state::AppState;

/// Chunks retrieved for a reconstruction at most (a 200-token chunk each: 40k tokens).
const MAX_CHUNKS: i64 = 200;
/// Memories retrieved at most.
const MAX_MEMORIES: i64 = 50;
/// Contexts whose summaries compete for the prompt, at most.
const SUMMARIES: usize = 3;
/// A summary's score relative to its context's best chunk: the gist ranks below the passage
/// that answers.
const SUMMARY_WEIGHT: f64 = 0.5;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconstructInput {
    /// What the prompt is for: chunks (and memories) are chosen by relevance to it.
    pub query: String,
    /// Tokens the prompt may hold at most, separators and headers included; 1 to 1,000,000.
    pub token_budget: i64,
    /// How the budget is counted: `o200k_base` (default) or `cl100k_base`.
    pub tokenizer: Option<TokenizerKind>,
    /// Also consider the tenant's memories (needs the `memories:read` scope).
    #[serde(default)]
    pub include_memories: bool,
    /// Only contexts of this session.
    pub session_id: Option<String>,
    /// `relevance` (default): best first. `chronological`: by time, the chunks of one context in
    /// their original order.
    pub order: Option<PackOrder>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReconstructItem {
    pub kind: ItemKind,
    pub context_id: Option<String>,
    /// First and last message (inclusive) of a chunk item (merged chunks: their union).
    pub messages: Option<[u32; 2]>,
    /// Character span of a chunk item.
    pub chars: Option<[u32; 2]>,
    pub memory_id: Option<String>,
    /// Tokens of this item's block (header and text) alone.
    pub tokens: usize,
    pub score: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReconstructOut {
    /// The items' blocks (a `[context …]`, `[memory …]` or `[summary of context …]` header line,
    /// then the text), separated by blank lines.
    pub prompt: String,
    pub items: Vec<ReconstructItem>,
    /// Tokens of `prompt`, counted on the final text with `tokenizer`; never above the budget.
    pub tokens_used: usize,
    pub token_budget: usize,
    pub tokenizer: TokenizerKind,
    /// Why nothing was packed, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

fn micros(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_micros()
}

fn span(a: i32, b: i32) -> [u32; 2] {
    [u32::try_from(a).unwrap_or(0), u32::try_from(b).unwrap_or(0)]
}

#[utoipa::path(post, path = "/v1/contexts/reconstruct", tag = "contexts", request_body = ReconstructInput,
    responses((status = 200, body = ReconstructOut, description = "the prompt; with no items and a `reason` when nothing fits"),
              (status = 403, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn reconstruct(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(input): ApiJson<ReconstructInput>,
) -> ApiResult<Json<ReconstructOut>> {
    let max_budget = state.limits.max_token_budget;
    let budget = usize::try_from(input.token_budget)
        .ok()
        .filter(|b| (1..=max_budget).contains(b))
        .ok_or_else(|| {
            Invalid::new(
                "token_budget",
                format!("must be between 1 and {max_budget}"),
            )
        })?;
    let tokenizer = input.tokenizer.unwrap_or_default();
    let order = input.order.unwrap_or_default();
    let filter = build_filter(&state.limits, input.session_id, None, None, None)?;
    let op = Op::new(
        "context.reconstruct",
        Resource::Contexts,
        Permission::Read,
        "*",
    );
    let mode = if state.embedder.is_some() {
        Mode::Hybrid
    } else {
        Mode::Text
    };
    let query = plan(&state, &ctx, &op, Some(input.query), None, Some(mode)).await?;
    // Enough chunks to fill the budget about twice over with the usual 100–200-token chunks.
    let n = i64::try_from(budget / 64)
        .unwrap_or(MAX_CHUNKS)
        .clamp(16, MAX_CHUNKS);
    let m = (n / 4).clamp(4, MAX_MEMORIES);
    let chunk_strategy = strategy_for(&state, &ctx);
    let memory_strategy = if state.store.has_vector_index(ctx.key.scope.tenant_id()) {
        Strategy::Hnsw
    } else {
        Strategy::Exact
    };
    let ef_search = state.limits.ef_search.max(n as i32 * 2).min(1000);
    let include_memories = input.include_memories;
    let may_read_memories = ctx.allows(Resource::Memories, Permission::Read);
    let candidates = run_with_rules(&state, &ctx, op, |tx, _| {
        Box::pin(async move {
            let (chunks, _) = find(tx, &query, n, n, &filter, chunk_strategy, ef_search).await?;
            let mut candidates: Vec<Candidate> = Vec::new();
            // The best chunk of each context, for its summary's score.
            let mut best: HashMap<Uuid, (f64, String, i64)> = HashMap::new();
            let mut contexts_in_order: Vec<Uuid> = Vec::new();
            for r in &chunks {
                let h = &r.hit;
                if let Entry::Vacant(e) = best.entry(h.context) {
                    contexts_in_order.push(h.context);
                    e.insert((r.score, h.context_id.clone(), micros(h.context_created_at)));
                }
                candidates.push(Candidate {
                    kind: ItemKind::Chunk,
                    source: h.context_id.clone(),
                    time: micros(h.context_created_at),
                    messages: Some(span(h.first_message, h.last_message)),
                    chars: Some(span(h.char_start, h.char_end)),
                    text: h.text.clone(),
                    score: r.score,
                });
            }
            contexts_in_order.truncate(SUMMARIES);
            for g in contexts::gists(tx, &contexts_in_order).await? {
                let Some((score, source, time)) = best.get(&g.id) else {
                    continue;
                };
                candidates.push(Candidate {
                    kind: ItemKind::Summary,
                    source: source.clone(),
                    time: *time,
                    messages: None,
                    chars: None,
                    text: g.summary,
                    score: score * SUMMARY_WEIGHT,
                });
            }
            if include_memories {
                if !may_read_memories {
                    return Err(ApiError::forbidden(
                        "insufficient_scope",
                        "include_memories needs the scope memories:read",
                    ));
                }
                let rules = Rules::load(tx, Resource::Memories.as_str()).await?;
                let memories = find_memories(tx, &query, m, memory_strategy, ef_search).await?;
                let mut denied = 0;
                for (memory, score) in memories {
                    if !rules.permits(&memory.memory_id, Permission::Read.as_str()) {
                        denied += 1;
                        continue;
                    }
                    candidates.push(Candidate {
                        kind: ItemKind::Memory,
                        time: micros(memory.created_at),
                        text: embedding_text(&memory.content.0),
                        source: memory.memory_id,
                        messages: None,
                        chars: None,
                        score,
                    });
                }
                if denied > 0 {
                    tracing::debug!(denied, "memories left out of a reconstruction by policy");
                }
            }
            Ok(candidates)
        })
    })
    .await?;
    let packed = tokio::task::spawn_blocking(move || pack(&candidates, budget, tokenizer, order))
        .await
        .map_err(|e| ApiError::internal(format!("packing: {e}")))?;
    Ok(Json(ReconstructOut {
        prompt: packed.prompt,
        items: packed
            .items
            .into_iter()
            .map(|i| {
                let is_memory = i.kind == ItemKind::Memory;
                ReconstructItem {
                    kind: i.kind,
                    context_id: (!is_memory).then(|| i.source.clone()),
                    memory_id: is_memory.then_some(i.source),
                    messages: i.messages,
                    chars: i.chars,
                    tokens: i.tokens,
                    score: i.score,
                }
            })
            .collect(),
        tokens_used: packed.tokens_used,
        token_budget: packed.token_budget,
        tokenizer,
        reason: packed.reason,
    }))
}

/// The best memories for the query, scored like chunks (reciprocal rank fusion of the vector and
/// text rankings), through the memory search path.
async fn find_memories(
    tx: &mut mnemo_store::TenantTx,
    query: &super::search::Query,
    m: i64,
    strategy: Strategy,
    ef_search: i32,
) -> ApiResult<Vec<(Memory, f64)>> {
    let filter = MemoryFilter::default();
    let vector = match &query.vector {
        Some(v) => {
            memory_search::vector(tx, v, m, &filter, strategy, ef_search, false)
                .await?
                .0
        }
        None => Vec::new(),
    };
    let text = match &query.text {
        Some(q) => memory_search::text(tx, q, m, &filter, false).await?,
        None => Vec::new(),
    };
    Ok(fuse(vector, text, |h| h.memory.id)
        .into_iter()
        .map(|(hit, score, _, _)| (hit.memory, score))
        .collect())
}
