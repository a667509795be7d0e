//! `POST /v1/contexts/search`: the chunks of the tenant's live contexts nearest to a query
//! (vector), matching its words (text), or both fused by reciprocal rank (hybrid), grouped by
//! context. Vector search is exact for small tenants and uses the tenant's own HNSW index over its
//! chunks above the threshold, like memory search.

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use mnemo_core::{Embedding, Invalid, Permission, Resource};
use mnemo_store::contexts::{self, ChunkHit, ContextFilter};
use mnemo_store::search::Strategy;
use mnemo_store::tenant_index::CONTEXT_CHUNKS;
use mnemo_store::TenantTx;

use super::build_filter;
use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::ops::{authorize, run, Op};
use crate::routes::search::Mode;
use crate::state::AppState;

/// Rank constant of reciprocal rank fusion (the usual 60).
const RRF_K: f64 = 60.0;

/// Characters of a query at most.
pub(super) const MAX_QUERY_CHARS: usize = 2000;

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextFilterInput {
    pub session_id: Option<String>,
    /// JSON that the context's `metadata` must contain (JSONB `@>`).
    #[schema(value_type = Option<Object>)]
    pub contains: Option<Value>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextSearchInput {
    /// Text to search for; embedded by the server for vector and hybrid modes.
    pub query: Option<String>,
    /// A 384-dimensional query vector (instead of embedding `query`).
    pub vector: Option<Vec<f64>>,
    /// Chunks wanted, 1 to 100 (default 10), grouped by context in the answer.
    pub k: Option<i64>,
    /// Default: `vector` when a vector is given, else `hybrid` (or `text` without an embedder).
    pub mode: Option<Mode>,
    pub filter: Option<ContextFilterInput>,
}

/// A chunk that matched.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkMatch {
    /// First and last message (0-based, inclusive) it reads from.
    pub messages: [i32; 2],
    /// Character span: start in the first message's content, end (exclusive) in the last's.
    pub chars: [i32; 2],
    pub tokens: i32,
    /// The chunk's text (`role: content` lines, at most 200 tokens).
    pub snippet: String,
    /// Ranking score: similarity (vector), text rank (text) or fused reciprocal rank (hybrid).
    pub score: f64,
    /// Cosine similarity to the query vector, when the vector search found this chunk.
    pub similarity: Option<f64>,
    pub vector_rank: Option<usize>,
    pub text_rank: Option<usize>,
}

/// A context with its matching chunks, best first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContextMatch {
    pub context_id: String,
    pub session_id: Option<String>,
    /// Its best chunk's score.
    pub score: f64,
    pub chunks: Vec<ChunkMatch>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContextSearchOut {
    pub mode: Mode,
    /// How the vector part was answered: `exact` or the tenant's own `hnsw` index.
    pub strategy: Option<Strategy>,
    /// Contexts in the order of their best chunk.
    pub results: Vec<ContextMatch>,
}

/// A validated query, with its vector when the mode needs one.
pub(super) struct Query {
    pub mode: Mode,
    pub text: Option<String>,
    pub vector: Option<Vec<f32>>,
}

pub(super) fn check_query(text: &Option<String>) -> Result<(), Invalid> {
    if let Some(q) = text {
        if q.trim().is_empty() || q.chars().count() > MAX_QUERY_CHARS || q.contains('\0') {
            return Err(Invalid::new(
                "query",
                format!("must be 1 to {MAX_QUERY_CHARS} characters, not blank"),
            ));
        }
    }
    Ok(())
}

/// Validates the query; embeds its text when the mode needs a vector and none was sent, after
/// authorizing `op` (embedding costs time and, with a paid provider, money).
pub(super) async fn plan(
    state: &AppState,
    ctx: &TenantCtx,
    op: &Op,
    text: Option<String>,
    vector: Option<Vec<f64>>,
    mode: Option<Mode>,
) -> ApiResult<Query> {
    check_query(&text)?;
    let given = vector
        .map(|v| Embedding::parse_f64("vector", &v))
        .transpose()?;
    if text.is_none() && given.is_none() {
        return Err(Invalid::new("query", "send `query` (text) or `vector`").into());
    }
    let mode = mode.unwrap_or(match (&given, &state.embedder) {
        (Some(_), _) => Mode::Vector,
        (None, Some(_)) => Mode::Hybrid,
        (None, None) => Mode::Text,
    });
    if mode != Mode::Vector && text.is_none() {
        return Err(Invalid::new("query", "text and hybrid modes need `query`").into());
    }
    let vector = match (mode, given) {
        (Mode::Text, _) => None,
        (_, Some(v)) => Some(v.into_vec()),
        (_, None) => {
            let embedder = state.embedder.as_ref().ok_or_else(|| {
                ApiError::unprocessable(
                    "no embedder is configured, so contexts have no embeddings and a query \
                     cannot be embedded: use mode \"text\"",
                )
                .with_details(serde_json::json!({ "field": "mode" }))
            })?;
            authorize(state, ctx, op).await?;
            let mut v = embedder
                .embed(vec![text.clone().unwrap_or_default()])
                .await?;
            Some(
                v.pop()
                    .ok_or_else(|| ApiError::internal("the embedder returned no vector"))?,
            )
        }
    };
    Ok(Query { mode, text, vector })
}

/// A chunk with its place in the vector and text rankings.
pub(super) struct Ranked {
    pub hit: ChunkHit,
    pub score: f64,
    pub similarity: Option<f64>,
    pub vector_rank: Option<usize>,
    pub text_rank: Option<usize>,
}

/// Reciprocal rank fusion of two rankings of items with ids. Equal scores keep text order, then
/// vector order: in a long transcript a chunk's embedding averages many sentences, so a chunk
/// holding the query's words is the more specific evidence than one that is merely as near.
pub(super) fn fuse<T>(
    vector: Vec<T>,
    text: Vec<T>,
    id: impl Fn(&T) -> Uuid,
) -> Vec<(T, f64, Option<usize>, Option<usize>)> {
    let rrf = |rank: usize| 1.0 / (RRF_K + rank as f64);
    let mut by_id: HashMap<Uuid, (T, f64, Option<usize>, Option<usize>)> = HashMap::new();
    let mut order = Vec::new();
    for (i, hit) in text.into_iter().enumerate() {
        let key = id(&hit);
        order.push(key);
        by_id.insert(key, (hit, rrf(i + 1), None, Some(i + 1)));
    }
    for (i, hit) in vector.into_iter().enumerate() {
        let key = id(&hit);
        match by_id.get_mut(&key) {
            Some(e) => {
                e.1 += rrf(i + 1);
                e.2 = Some(i + 1);
            }
            None => {
                order.push(key);
                by_id.insert(key, (hit, rrf(i + 1), Some(i + 1), None));
            }
        }
    }
    let mut all: Vec<_> = order.into_iter().filter_map(|k| by_id.remove(&k)).collect();
    // Stable: ties keep the order above.
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all
}

/// The best `k` chunks for `query` among live contexts matching `filter`, and the strategy that
/// answered the vector part. Hybrid fuses lists `depth` long (≥ k), so a chunk ranked well by one
/// side and modestly by the other can still surface.
pub(super) async fn find(
    tx: &mut TenantTx,
    query: &Query,
    k: i64,
    depth: i64,
    filter: &ContextFilter,
    strategy: Strategy,
    ef_search: i32,
) -> ApiResult<(Vec<Ranked>, Strategy)> {
    let depth = if query.mode == Mode::Hybrid {
        depth.max(k)
    } else {
        k
    };
    let (vector_hits, strategy) = match &query.vector {
        Some(v) if query.mode != Mode::Text => {
            contexts::vector(tx, v, depth, filter, strategy, ef_search).await?
        }
        _ => (Vec::new(), strategy),
    };
    let text_hits = match (&query.text, query.mode) {
        (Some(q), Mode::Text | Mode::Hybrid) => contexts::text(tx, q, depth, filter).await?,
        _ => Vec::new(),
    };
    let mut ranked: Vec<Ranked> = match query.mode {
        Mode::Vector => vector_hits
            .into_iter()
            .enumerate()
            .map(|(i, hit)| Ranked {
                score: 1.0 - hit.score,
                similarity: Some(1.0 - hit.score),
                vector_rank: Some(i + 1),
                text_rank: None,
                hit,
            })
            .collect(),
        Mode::Text => text_hits
            .into_iter()
            .enumerate()
            .map(|(i, hit)| Ranked {
                score: hit.score,
                similarity: None,
                vector_rank: None,
                text_rank: Some(i + 1),
                hit,
            })
            .collect(),
        Mode::Hybrid => {
            let similarity: HashMap<Uuid, f64> = vector_hits
                .iter()
                .map(|h| (h.chunk_id, 1.0 - h.score))
                .collect();
            fuse(vector_hits, text_hits, |h| h.chunk_id)
                .into_iter()
                .map(|(hit, score, vector_rank, text_rank)| Ranked {
                    similarity: similarity.get(&hit.chunk_id).copied(),
                    hit,
                    score,
                    vector_rank,
                    text_rank,
                })
                .collect()
        }
    };
    ranked.truncate(usize::try_from(k).unwrap_or(0));
    Ok((ranked, strategy))
}

/// Whether the tenant's chunk searches use its HNSW index.
pub(super) fn strategy_for(state: &AppState, ctx: &TenantCtx) -> Strategy {
    if state
        .store
        .has_table_index(&CONTEXT_CHUNKS, ctx.key.scope.tenant_id())
    {
        Strategy::Hnsw
    } else {
        Strategy::Exact
    }
}

#[utoipa::path(post, path = "/v1/contexts/search", tag = "contexts", request_body = ContextSearchInput,
    responses((status = 200, body = ContextSearchOut), (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn search_contexts(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(input): ApiJson<ContextSearchInput>,
) -> ApiResult<Json<ContextSearchOut>> {
    let k = input.k.unwrap_or(10);
    if !(1..=state.limits.max_k as i64).contains(&k) {
        return Err(
            Invalid::new("k", format!("must be between 1 and {}", state.limits.max_k)).into(),
        );
    }
    let f = input.filter.unwrap_or_default();
    let filter = build_filter(
        &state.limits,
        f.session_id,
        f.contains,
        f.created_after,
        f.created_before,
    )?;
    let op = Op::new("context.search", Resource::Contexts, Permission::Read, "*");
    let query = plan(&state, &ctx, &op, input.query, input.vector, input.mode).await?;
    let strategy = strategy_for(&state, &ctx);
    let ef_search = state.limits.ef_search.max(k as i32 * 2).min(1000);
    let mode = query.mode;
    let (ranked, strategy) = run(&state, &ctx, op, |tx| {
        Box::pin(async move {
            find(
                tx,
                &query,
                k,
                (k * 4).min(400),
                &filter,
                strategy,
                ef_search,
            )
            .await
        })
    })
    .await?;
    let mut groups: Vec<ContextMatch> = Vec::new();
    let mut at: HashMap<Uuid, usize> = HashMap::new();
    for r in ranked {
        let m = ChunkMatch {
            messages: [r.hit.first_message, r.hit.last_message],
            chars: [r.hit.char_start, r.hit.char_end],
            tokens: r.hit.token_count,
            snippet: r.hit.text,
            score: r.score,
            similarity: r.similarity,
            vector_rank: r.vector_rank,
            text_rank: r.text_rank,
        };
        match at.get(&r.hit.context) {
            Some(&i) => groups[i].chunks.push(m),
            None => {
                at.insert(r.hit.context, groups.len());
                groups.push(ContextMatch {
                    context_id: r.hit.context_id,
                    session_id: r.hit.session_id,
                    score: r.score,
                    chunks: vec![m],
                });
            }
        }
    }
    Ok(Json(ContextSearchOut {
        mode,
        strategy: (mode != Mode::Text).then_some(strategy),
        results: groups,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fusion_adds_reciprocal_ranks_and_keeps_each_item_once() {
        let [a, b, c] = [Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4()];
        let fused = fuse(vec![a, b], vec![c, b], |x| *x);
        let ids: Vec<Uuid> = fused.iter().map(|f| f.0).collect();
        assert_eq!(ids, [b, c, a], "a tie keeps text order first");
        assert_eq!((fused[0].2, fused[0].3), (Some(2), Some(2)));
        assert!((fused[1].1 - 1.0 / 61.0).abs() < 1e-12);
    }
}
