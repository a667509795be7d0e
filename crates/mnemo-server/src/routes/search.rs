//! `POST /v1/memories/search`: vector, full-text or hybrid (reciprocal rank fusion) search over the
//! key's tenant, with filters and optional depth-1 graph expansion.

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use mnemo_core::{Embedding, Invalid, Permission, Resource};
use mnemo_store::relationships::Relationship;
use mnemo_store::search::{self, Hit, Strategy};

use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::ops::{authorize, run_with_rules, Op};
use crate::routes::memories::{build_filter, MemoryOut};
use crate::routes::sharing::{self, SharedFrom};
use crate::state::AppState;

/// Rank constant of reciprocal rank fusion (the usual 60).
const RRF_K: f64 = 60.0;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search_memories))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Cosine similarity to `vector` or to the embedding of `query`.
    Vector,
    /// PostgreSQL full-text search of `query` (web-search syntax).
    Text,
    /// Both, fused by reciprocal rank.
    Hybrid,
}

/// Whose memories a search reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchScope {
    /// The key's tenant's memories.
    #[default]
    Own,
    /// Also what other tenants' sharing rules let it read (needs the scope `federated:read`;
    /// see `/v1/sharing-rules`).
    Shared,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchFilter {
    /// JSON that `content` must contain (JSONB `@>`).
    #[schema(value_type = Option<Object>)]
    pub contains: Option<Value>,
    /// Tags that must all be present.
    pub tags: Option<Vec<String>>,
    /// Tags of which at least one must be present.
    pub any_tags: Option<Vec<String>>,
    pub min_relevance: Option<f64>,
    pub max_relevance: Option<f64>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchInput {
    /// Text to search for; embedded by the server for vector and hybrid modes.
    pub query: Option<String>,
    /// A 384-dimensional query vector (instead of embedding `query`).
    pub vector: Option<Vec<f64>>,
    /// Results wanted, 1 to 100 (default 10).
    pub k: Option<i64>,
    /// Default: `vector` when a vector is given, else `hybrid` (or `text` without an embedder).
    pub mode: Option<Mode>,
    pub filter: Option<SearchFilter>,
    /// Vector results below this cosine similarity are dropped.
    pub min_similarity: Option<f64>,
    /// Attach each result's direct neighbours in the knowledge graph.
    #[serde(default)]
    pub expand: bool,
    #[serde(default)]
    pub include_embedding: bool,
    /// `own` (default) or `shared`.
    #[serde(default)]
    pub scope: SearchScope,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Related {
    pub relationship: Relationship,
    pub memory: MemoryOut,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    /// Ranking score: similarity (vector), text rank (text) or fused reciprocal rank (hybrid).
    pub score: f64,
    /// Cosine similarity to the query vector, when the vector search found this memory.
    pub similarity: Option<f64>,
    /// 1-based ranks in the vector and text result lists.
    pub vector_rank: Option<usize>,
    pub text_rank: Option<usize>,
    pub memory: MemoryOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub related: Option<Vec<Related>>,
    /// Present on a hit another tenant's sharing rule exposes (its content anonymized by the
    /// rule; its `memory_id` a handle, not the owner's id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedFrom>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchOut {
    pub mode: Mode,
    /// How the vector part was answered: `exact` or the tenant's own `hnsw` index.
    pub strategy: Option<Strategy>,
    pub results: Vec<SearchHit>,
}

struct Plan {
    mode: Mode,
    text: Option<String>,
    vector: Option<Vec<f32>>,
    k: i64,
}

/// Validates the query; embeds its text when the mode needs a vector and none was sent, after
/// authorizing `op` (embedding costs time and, with a paid provider, money).
async fn plan(
    state: &AppState,
    ctx: &TenantCtx,
    op: &Op,
    input: &mut SearchInput,
) -> ApiResult<Plan> {
    let k = input.k.unwrap_or(10);
    if !(1..=state.limits.max_k as i64).contains(&k) {
        return Err(
            Invalid::new("k", format!("must be between 1 and {}", state.limits.max_k)).into(),
        );
    }
    let text = input.query.take();
    if let Some(q) = &text {
        if q.trim().is_empty() || q.chars().count() > 2000 || q.contains('\0') {
            return Err(Invalid::new("query", "must be 1 to 2000 characters, not blank").into());
        }
    }
    let given = input
        .vector
        .take()
        .map(|v| Embedding::parse_f64("vector", &v))
        .transpose()?;
    if text.is_none() && given.is_none() {
        return Err(Invalid::new("query", "send `query` (text) or `vector`").into());
    }
    let mode = input.mode.unwrap_or(match (&given, &state.embedder) {
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
                    "no embedder is configured: send `vector`, or use mode \"text\"",
                )
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
    Ok(Plan {
        mode,
        text,
        vector,
        k,
    })
}

/// A hit with its place in the vector and text rankings.
struct Ranked {
    hit: Hit,
    score: f64,
    vector_rank: Option<usize>,
    text_rank: Option<usize>,
    similarity: Option<f64>,
}

fn vector_ranked(hits: Vec<Hit>) -> Vec<Ranked> {
    hits.into_iter()
        .enumerate()
        .map(|(i, hit)| {
            let similarity = 1.0 - hit.score;
            Ranked {
                hit,
                score: similarity,
                vector_rank: Some(i + 1),
                text_rank: None,
                similarity: Some(similarity),
            }
        })
        .collect()
}

fn text_ranked(hits: Vec<Hit>) -> Vec<Ranked> {
    hits.into_iter()
        .enumerate()
        .map(|(i, hit)| Ranked {
            score: hit.score,
            hit,
            vector_rank: None,
            text_rank: Some(i + 1),
            similarity: None,
        })
        .collect()
}

/// Reciprocal rank fusion of the two rankings.
fn fuse(vector: Vec<Hit>, text: Vec<Hit>, k: usize) -> Vec<Ranked> {
    let rrf = |rank: usize| 1.0 / (RRF_K + rank as f64);
    let mut by_id: HashMap<Uuid, Ranked> = HashMap::new();
    for mut r in vector_ranked(vector) {
        r.score = r.vector_rank.map_or(0.0, rrf);
        by_id.insert(r.hit.memory.id, r);
    }
    for r in text_ranked(text) {
        let rank = r.text_rank;
        let add = rank.map_or(0.0, rrf);
        by_id
            .entry(r.hit.memory.id)
            .and_modify(|e| {
                e.score += add;
                e.text_rank = rank;
            })
            .or_insert(Ranked { score: add, ..r });
    }
    let mut all: Vec<Ranked> = by_id.into_values().collect();
    all.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.hit.memory.memory_id.cmp(&b.hit.memory.memory_id))
    });
    all.truncate(k);
    all
}

#[utoipa::path(post, path = "/v1/memories/search", tag = "memories", request_body = SearchInput,
    responses((status = 200, body = SearchOut), (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn search_memories(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(mut input): ApiJson<SearchInput>,
) -> ApiResult<Json<SearchOut>> {
    let f = input.filter.take().unwrap_or_default();
    let filter = build_filter(
        &state.limits,
        f.contains,
        f.tags,
        f.any_tags,
        f.min_relevance,
        f.max_relevance,
        f.created_after,
        f.created_before,
    )?;
    let min_similarity = input.min_similarity;
    if min_similarity.is_some_and(|s| !(-1.0..=1.0).contains(&s)) {
        return Err(Invalid::new("min_similarity", "must be between -1 and 1").into());
    }
    let scope = input.scope;
    let action = match scope {
        SearchScope::Own => "memory.search",
        SearchScope::Shared => "memory.search_shared",
    };
    let op = Op::new(action, Resource::Memories, Permission::Read, "*");
    if scope == SearchScope::Shared {
        let sharing = Op::new(action, Resource::Federated, Permission::Read, "*");
        authorize(&state, &ctx, &sharing).await?;
    }
    let request_id = Some(ctx.request_id.clone()).filter(|r| !r.is_empty());
    let plan = plan(&state, &ctx, &op, &mut input).await?;
    let strategy = if state.store.has_vector_index(ctx.key.scope.tenant_id()) {
        Strategy::Hnsw
    } else {
        Strategy::Exact
    };
    let ef_search = state.limits.ef_search.max(plan.k as i32 * 2);
    let (expand, with_embedding) = (input.expand, input.include_embedding);
    let mode = plan.mode;
    let (hits, related, strategy, mut shared_from) =
        run_with_rules(&state, &ctx, op, |tx, rules| {
            Box::pin(async move {
                // Hybrid fuses longer lists than it returns, so a memory ranked well by one side
                // and modestly by the other can still surface.
                let depth = if mode == Mode::Hybrid {
                    (plan.k * 4).min(200)
                } else {
                    plan.k
                };
                // The strategy that answered: an HNSW search that came back short is redone exactly.
                let (mut vector_hits, strategy) = match &plan.vector {
                    Some(v) => {
                        search::vector(tx, v, depth, &filter, strategy, ef_search, with_embedding)
                            .await?
                    }
                    None => (Vec::new(), strategy),
                };
                if let Some(min) = min_similarity {
                    vector_hits.retain(|h| 1.0 - h.score >= min);
                }
                let mut text_hits = match (&plan.text, mode) {
                    (Some(q), Mode::Text | Mode::Hybrid) => {
                        search::text(tx, q, depth, &filter, with_embedding).await?
                    }
                    _ => Vec::new(),
                };
                let mut shared_from = HashMap::new();
                if scope == SearchScope::Shared {
                    let text = plan.text.as_deref().filter(|_| mode != Mode::Vector);
                    let vector = plan.vector.as_deref().filter(|_| mode != Mode::Text);
                    let mut s = sharing::shared_hits(
                        tx,
                        vector,
                        text,
                        depth,
                        &filter,
                        request_id.as_deref(),
                    )
                    .await?;
                    if let Some(min) = min_similarity {
                        s.vector.retain(|h| 1.0 - h.score >= min);
                    }
                    sharing::merge(&mut vector_hits, s.vector, depth, true);
                    sharing::merge(&mut text_hits, s.text, depth, false);
                    shared_from = s.sources;
                }
                let hits = match mode {
                    Mode::Vector => vector_ranked(vector_hits),
                    Mode::Text => text_ranked(text_hits),
                    Mode::Hybrid => fuse(vector_hits, text_hits, plan.k as usize),
                };
                let related = if expand && !hits.is_empty() {
                    let ids: Vec<Uuid> = hits.iter().map(|h| h.hit.memory.id).collect();
                    let visible = rules.visibility(Permission::Read.as_str());
                    Some(search::adjacent(tx, &ids, (ids.len() as i64) * 10, &visible).await?)
                } else {
                    None
                };
                Ok((hits, related, strategy, shared_from))
            })
        })
        .await?;

    let mut neighbours: HashMap<Uuid, Vec<Related>> = HashMap::new();
    if let Some((edges, memories)) = related {
        let by_id: HashMap<Uuid, &mnemo_store::memories::Memory> =
            memories.iter().map(|m| (m.id, m)).collect();
        let hit_by_id: HashMap<Uuid, &mnemo_store::memories::Memory> = hits
            .iter()
            .map(|h| (h.hit.memory.id, &h.hit.memory))
            .collect();
        for (source, target, rel) in edges {
            for (at, other) in [(source, target), (target, source)] {
                if !hit_by_id.contains_key(&at) {
                    continue;
                }
                let Some(m) = by_id
                    .get(&other)
                    .copied()
                    .or_else(|| hit_by_id.get(&other).copied())
                else {
                    continue;
                };
                neighbours.entry(at).or_default().push(Related {
                    relationship: rel.clone(),
                    memory: MemoryOut::from(m.clone()),
                });
            }
        }
    }
    let results = hits
        .into_iter()
        .map(|r| {
            let related = expand.then(|| neighbours.remove(&r.hit.memory.id).unwrap_or_default());
            SearchHit {
                score: r.score,
                similarity: r.similarity,
                vector_rank: r.vector_rank,
                text_rank: r.text_rank,
                shared: shared_from.remove(&r.hit.memory.id),
                memory: r.hit.memory.into(),
                related,
            }
        })
        .collect();
    Ok(Json(SearchOut {
        mode,
        strategy: (mode != Mode::Text).then_some(strategy),
        results,
    }))
}
