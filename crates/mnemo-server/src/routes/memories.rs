//! `/v1/memories`: create (one, batch), get, list with filters and cursor pagination, partial
//! update, upsert by `memory_id`, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use mnemo_core::text::embedding_text;
use mnemo_core::{
    check_json, json_object, json_values, Embedding, Invalid, MemoryId, Permission, RelevanceScore,
    Resource, Tags,
};
use mnemo_store::memories::{self, Cursor, Memory, MemoryFilter, MemoryPatch, NewMemory};
use mnemo_store::retention::{self, ArchivedMemory};

use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult};
use crate::extract::{nullable, ApiJson, ApiPath, ApiQuery};
use crate::ops::{authorize, run, Op};
use crate::state::{AppState, Limits};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_memory, list_memories))
        .routes(routes!(create_batch))
        .routes(routes!(
            get_memory,
            update_memory,
            upsert_memory,
            delete_memory
        ))
}

/// A memory as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryOut {
    pub memory_id: String,
    #[schema(value_type = Object)]
    pub content: Value,
    pub relevance_score: f64,
    pub tags: Vec<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// Present only when asked for (`include_embedding=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    pub has_embedding: bool,
    pub embedding_model: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When it was archived; present only on archived memories (`archived=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<DateTime<Utc>>,
}

impl From<ArchivedMemory> for MemoryOut {
    fn from(a: ArchivedMemory) -> Self {
        Self {
            archived_at: Some(a.archived_at),
            ..a.memory.into()
        }
    }
}

impl From<Memory> for MemoryOut {
    fn from(m: Memory) -> Self {
        Self {
            memory_id: m.memory_id,
            content: m.content.0,
            relevance_score: m.relevance_score,
            tags: m.tags,
            metadata: m.metadata.0,
            embedding: m.embedding.map(|v| v.to_vec()),
            has_embedding: m.has_embedding,
            embedding_model: m.embedding_model,
            expires_at: m.expires_at,
            created_at: m.created_at,
            updated_at: m.updated_at,
            archived_at: None,
        }
    }
}

/// A memory to store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryInput {
    /// Unique within the tenant; generated (`mem_…`) when absent.
    pub memory_id: Option<String>,
    /// Any JSON value but null. Its text (see README) is embedded and full-text indexed.
    #[schema(value_type = Object)]
    pub content: Value,
    /// In [0, 1]; default 0.5.
    pub relevance_score: Option<f64>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// A JSON object.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// 384 finite numbers. When absent the server embeds the content's text.
    pub embedding: Option<Vec<f64>>,
    /// Must be in the future; the memory disappears from every read after it.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A validated memory whose embedding may still have to be computed.
struct Prepared {
    memory: NewMemory,
    text: String,
}

fn check_content(field: &str, v: &Value, limits: &Limits) -> Result<(), Invalid> {
    if v.is_null() {
        return Err(Invalid::new(field, "must not be null"));
    }
    check_json(field, v, limits.max_json_depth)?;
    let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
    if size > limits.max_content_bytes {
        return Err(Invalid::new(
            field,
            format!("must be at most {} bytes of JSON", limits.max_content_bytes),
        ));
    }
    Ok(())
}

/// A JSON object of free-form attributes (`metadata`, a policy's `conditions`): at most
/// `max_metadata_bytes` of JSON, nested at most `max_json_depth`; absent is `{}`.
pub fn check_object(field: &str, v: Option<Value>, limits: &Limits) -> Result<Value, Invalid> {
    let v = json_object(field, v, limits.max_json_depth)?;
    if serde_json::to_vec(&v)
        .map(|b| b.len())
        .unwrap_or(usize::MAX)
        > limits.max_metadata_bytes
    {
        return Err(Invalid::new(
            field,
            format!(
                "must be at most {} bytes of JSON",
                limits.max_metadata_bytes
            ),
        ));
    }
    Ok(v)
}

fn check_metadata(v: Option<Value>, limits: &Limits) -> Result<Value, Invalid> {
    check_object("metadata", v, limits)
}

fn check_expiry(t: Option<DateTime<Utc>>) -> Result<Option<DateTime<Utc>>, Invalid> {
    match t {
        Some(t) if t <= Utc::now() => Err(Invalid::new("expires_at", "must be in the future")),
        t => Ok(t),
    }
}

fn prepare(input: MemoryInput, limits: &Limits) -> Result<Prepared, Invalid> {
    let memory_id = match input.memory_id {
        Some(id) => MemoryId::parse(&id)?,
        None => MemoryId::generate(),
    };
    check_content("content", &input.content, limits)?;
    let relevance = RelevanceScore::parse("relevance_score", input.relevance_score.unwrap_or(0.5))?;
    let tags = Tags::parse("tags", input.tags)?;
    let metadata = check_metadata(input.metadata, limits)?;
    let embedding = input
        .embedding
        .map(|v| Embedding::parse_f64("embedding", &v))
        .transpose()?;
    let expires_at = check_expiry(input.expires_at)?;
    Ok(Prepared {
        text: embedding_text(&input.content),
        memory: NewMemory {
            memory_id: memory_id.into_string(),
            relevance_score: relevance.get(),
            content: input.content,
            tags: tags.into_vec(),
            metadata,
            embedding_model: embedding.as_ref().map(|_| "client".to_owned()),
            embedding: embedding.map(Embedding::into_vec),
            expires_at,
        },
    })
}

/// At least the storage bytes new memories will take, for the quota pre-check: their content as
/// compact JSON (the stored form is never shorter) and the vectors they will have.
fn min_bytes(state: &AppState, batch: &[Prepared]) -> i64 {
    batch
        .iter()
        .map(|p| {
            let content = serde_json::to_vec(&p.memory.content).map_or(0, |b| b.len() as i64);
            let embedded = p.memory.embedding.is_some() || state.embedder.is_some();
            content
                + if embedded {
                    memories::EMBEDDING_BYTES
                } else {
                    0
                }
        })
        .sum()
}

/// Computes the embeddings of memories that came without one, in batches, before any
/// transaction opens (inference never holds a database connection). Embedding costs time and,
/// with a paid provider, money: `op` is authorized first.
async fn embed_missing(
    state: &AppState,
    ctx: &TenantCtx,
    op: &Op,
    batch: &mut [Prepared],
) -> ApiResult<()> {
    let Some(embedder) = &state.embedder else {
        return Ok(());
    };
    let missing: Vec<usize> = (0..batch.len())
        .filter(|&i| batch[i].memory.embedding.is_none())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    authorize(state, ctx, op).await?;
    for chunk in missing.chunks(mnemo_embed::MAX_TEXTS_PER_CALL) {
        let texts = chunk.iter().map(|&i| batch[i].text.clone()).collect();
        let vectors = embedder.embed(texts).await?;
        for (&i, v) in chunk.iter().zip(vectors) {
            batch[i].memory.embedding = Some(v);
            batch[i].memory.embedding_model = Some(embedder.model_name().to_owned());
        }
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/memories", tag = "memories",
    request_body = MemoryInput,
    responses((status = 201, body = MemoryOut), (status = 409, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn create_memory(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(input): ApiJson<MemoryInput>,
) -> ApiResult<(StatusCode, Json<MemoryOut>)> {
    let mut batch = vec![prepare(input, &state.limits)?];
    let op = Op::new(
        "memory.create",
        Resource::Memories,
        Permission::Write,
        batch[0].memory.memory_id.clone(),
    )
    .created()
    .grows(1, min_bytes(&state, &batch));
    embed_missing(&state, &ctx, &op, &mut batch).await?;
    let new: Vec<NewMemory> = batch.into_iter().map(|p| p.memory).collect();
    let mut rows = run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(memories::create(tx, &new).await?) })
    })
    .await?;
    let row = rows
        .pop()
        .ok_or_else(|| ApiError::internal("insert returned no row"))?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    /// 1 to 1,000 memories (configurable), stored all or nothing.
    pub memories: Vec<MemoryInput>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOut {
    pub memories: Vec<MemoryOut>,
}

#[utoipa::path(post, path = "/v1/memories/batch", tag = "memories",
    request_body = BatchInput,
    responses((status = 201, body = BatchOut), (status = 409, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn create_batch(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(input): ApiJson<BatchInput>,
) -> ApiResult<(StatusCode, Json<BatchOut>)> {
    let n = input.memories.len();
    if n == 0 || n > state.limits.max_batch {
        return Err(ApiError::unprocessable(format!(
            "memories: a batch holds 1 to {} memories, got {n}",
            state.limits.max_batch
        ))
        .with_details(serde_json::json!({ "field": "memories" })));
    }
    let mut batch = Vec::with_capacity(n);
    for (i, m) in input.memories.into_iter().enumerate() {
        let p = prepare(m, &state.limits).map_err(|e| {
            ApiError::from(Invalid::new(
                format!("memories[{i}].{}", e.field),
                e.message,
            ))
        })?;
        batch.push(p);
    }
    let mut seen = std::collections::HashSet::with_capacity(n);
    if let Some(dup) = batch
        .iter()
        .find(|p| !seen.insert(p.memory.memory_id.as_str()))
    {
        return Err(ApiError::unprocessable(format!(
            "memories: memory_id {:?} appears more than once in the batch",
            dup.memory.memory_id
        )));
    }
    let op = Op::new(
        "memory.batch_create",
        Resource::Memories,
        Permission::Write,
        "*",
    )
    .created()
    .grows(batch.len() as i64, min_bytes(&state, &batch));
    embed_missing(&state, &ctx, &op, &mut batch).await?;
    let new: Vec<NewMemory> = batch.into_iter().map(|p| p.memory).collect();
    let rows = run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(memories::create(tx, &new).await?) })
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(BatchOut {
            memories: rows.into_iter().map(Into::into).collect(),
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetParams {
    /// Include the stored vector.
    #[serde(default)]
    pub include_embedding: bool,
    /// Read the archive instead (the latest archived version of the id).
    #[serde(default)]
    pub archived: bool,
}

#[utoipa::path(get, path = "/v1/memories/{memory_id}", tag = "memories",
    params(("memory_id" = String, Path), GetParams),
    responses((status = 200, body = MemoryOut), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn get_memory(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(memory_id): ApiPath<String>,
    ApiQuery(params): ApiQuery<GetParams>,
) -> ApiResult<Json<MemoryOut>> {
    let op = Op::new(
        "memory.get",
        Resource::Memories,
        Permission::Read,
        memory_id.clone(),
    );
    let out = run(&state, &ctx, op, |tx| {
        Box::pin(async move {
            let out: MemoryOut = if params.archived {
                retention::get_archived(tx, &memory_id, params.include_embedding)
                    .await?
                    .into()
            } else {
                memories::get_and_record(tx, &memory_id, params.include_embedding)
                    .await?
                    .into()
            };
            Ok(out)
        })
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// JSON that `content` must contain (JSONB `@>`), e.g. `{"outcome":"success"}`.
    pub contains: Option<String>,
    /// Comma-separated tags that must all be present.
    pub tags: Option<String>,
    /// Comma-separated tags of which at least one must be present.
    pub any_tags: Option<String>,
    pub min_relevance: Option<f64>,
    pub max_relevance: Option<f64>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    #[serde(default)]
    pub include_embedding: bool,
    /// List the archive instead, newest archived first (only `limit`, `cursor` and
    /// `include_embedding` apply there).
    #[serde(default)]
    pub archived: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryPage {
    pub memories: Vec<MemoryOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn encode_cursor(t: DateTime<Utc>, id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{}:{}",
        t.timestamp_micros(),
        id
    ))
}

pub fn decode_cursor(s: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let bad = || ApiError::bad_request("invalid_cursor", "cursor is not one this API returned");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, id) = raw.split_once(':').ok_or_else(bad)?;
    let t = DateTime::from_timestamp_micros(t.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok((t, id.parse().map_err(|_| bad())?))
}

/// Pages are fetched with one row more than `limit`: if it came, it is dropped and the cursor of
/// the page's last row is returned for the next page.
pub fn next_page<T>(
    rows: &mut Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> (DateTime<Utc>, Uuid),
) -> Option<String> {
    if rows.len() as i64 <= limit {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(|row| {
        let (t, id) = key(row);
        encode_cursor(t, id)
    })
}

fn split_tags(field: &str, s: Option<String>) -> Result<Option<Vec<String>>, Invalid> {
    s.map(|s| {
        Tags::parse(field, s.split(',').map(|t| t.trim().to_owned()).collect()).map(Tags::into_vec)
    })
    .transpose()
}

/// Builds the shared filter from its parts, validating each.
#[allow(clippy::too_many_arguments)] // one per filter field, shared by listing and search
pub fn build_filter(
    limits: &Limits,
    contains: Option<Value>,
    tags_all: Option<Vec<String>>,
    tags_any: Option<Vec<String>>,
    min_relevance: Option<f64>,
    max_relevance: Option<f64>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
) -> Result<MemoryFilter, Invalid> {
    // Containment costs up to one scan of a memory's array per value of the filter, so its
    // size is bounded like its depth (the statement timeout bounds the rest).
    if let Some(c) = &contains {
        check_json("contains", c, limits.max_json_depth.min(8))?;
        if json_values(c) > limits.max_filter_values {
            return Err(Invalid::new(
                "contains",
                format!(
                    "must hold at most {} JSON values (objects, arrays and scalars)",
                    limits.max_filter_values
                ),
            ));
        }
        if serde_json::to_vec(c).map(|b| b.len()).unwrap_or(usize::MAX) > limits.max_filter_bytes {
            return Err(Invalid::new(
                "contains",
                format!("must be at most {} bytes of JSON", limits.max_filter_bytes),
            ));
        }
    }
    let min = min_relevance
        .map(|v| RelevanceScore::parse("min_relevance", v))
        .transpose()?;
    let max = max_relevance
        .map(|v| RelevanceScore::parse("max_relevance", v))
        .transpose()?;
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo > hi {
            return Err(Invalid::new(
                "min_relevance",
                "must not exceed max_relevance",
            ));
        }
    }
    Ok(MemoryFilter {
        contains,
        tags_all: tags_all
            .map(|t| Tags::parse("tags", t).map(Tags::into_vec))
            .transpose()?,
        tags_any: tags_any
            .map(|t| Tags::parse("any_tags", t).map(Tags::into_vec))
            .transpose()?,
        min_relevance: min.map(RelevanceScore::get),
        max_relevance: max.map(RelevanceScore::get),
        created_after,
        created_before,
    })
}

pub fn check_limit(limits: &Limits, limit: Option<i64>) -> Result<i64, Invalid> {
    match limit {
        None => Ok(limits.default_page),
        Some(l) if (1..=limits.max_page).contains(&l) => Ok(l),
        Some(_) => Err(Invalid::new(
            "limit",
            format!("must be between 1 and {}", limits.max_page),
        )),
    }
}

#[utoipa::path(get, path = "/v1/memories", tag = "memories",
    params(ListParams),
    responses((status = 200, body = MemoryPage), (status = 400, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn list_memories(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<MemoryPage>> {
    let limit = check_limit(&state.limits, p.limit)?;
    let cursor = p.cursor.as_deref().map(decode_cursor).transpose()?;
    if p.archived {
        let filtered = p.contains.is_some()
            || p.tags.is_some()
            || p.any_tags.is_some()
            || p.min_relevance.is_some()
            || p.max_relevance.is_some()
            || p.created_after.is_some()
            || p.created_before.is_some();
        if filtered {
            return Err(Invalid::new(
                "archived",
                "the archive is listed without filters (limit, cursor and include_embedding apply)",
            )
            .into());
        }
        let op = Op::new(
            "memory.list_archived",
            Resource::Memories,
            Permission::Read,
            "*",
        );
        let include = p.include_embedding;
        let mut rows = run(&state, &ctx, op, |tx| {
            Box::pin(
                async move { Ok(retention::list_archived(tx, cursor, limit + 1, include).await?) },
            )
        })
        .await?;
        let next = next_page(&mut rows, limit, |a| (a.archived_at, a.memory.id));
        return Ok(Json(MemoryPage {
            memories: rows.into_iter().map(Into::into).collect(),
            next_cursor: next,
        }));
    }
    let contains = p
        .contains
        .as_deref()
        .map(serde_json::from_str::<Value>)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_query", format!("contains: not JSON: {e}")))?;
    let filter = build_filter(
        &state.limits,
        contains,
        split_tags("tags", p.tags)?,
        split_tags("any_tags", p.any_tags)?,
        p.min_relevance,
        p.max_relevance,
        p.created_after,
        p.created_before,
    )?;
    let op = Op::new("memory.list", Resource::Memories, Permission::Read, "*");
    let include = p.include_embedding;
    let rows = run(&state, &ctx, op, |tx| {
        Box::pin(async move {
            let cursor = cursor.map(|(created_at, id)| Cursor { created_at, id });
            Ok(memories::list(tx, &filter, cursor, limit + 1, include).await?)
        })
    })
    .await?;
    let mut rows = rows;
    let next = next_page(&mut rows, limit, |m| (m.created_at, m.id));
    Ok(Json(MemoryPage {
        memories: rows.into_iter().map(Into::into).collect(),
        next_cursor: next,
    }))
}

/// Fields to change; absent fields stay as they are, `null` clears `embedding` and `expires_at`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemoryPatchInput {
    #[schema(value_type = Option<Object>)]
    pub content: Option<Value>,
    pub relevance_score: Option<f64>,
    pub tags: Option<Vec<String>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// A new vector, or null to remove it. When `content` changes and no `embedding` is given,
    /// the server re-embeds the new content.
    #[serde(default, deserialize_with = "nullable")]
    pub embedding: Option<Option<Vec<f64>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

#[utoipa::path(patch, path = "/v1/memories/{memory_id}", tag = "memories",
    params(("memory_id" = String, Path)), request_body = MemoryPatchInput,
    responses((status = 200, body = MemoryOut), (status = 404, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn update_memory(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(memory_id): ApiPath<String>,
    ApiJson(input): ApiJson<MemoryPatchInput>,
) -> ApiResult<Json<MemoryOut>> {
    let limits = &state.limits;
    if input.content.is_none()
        && input.relevance_score.is_none()
        && input.tags.is_none()
        && input.metadata.is_none()
        && input.embedding.is_none()
        && input.expires_at.is_none()
    {
        return Err(ApiError::unprocessable(
            "the patch changes nothing: send at least one field",
        ));
    }
    if let Some(c) = &input.content {
        check_content("content", c, limits)?;
    }
    let mut patch = MemoryPatch {
        relevance_score: input
            .relevance_score
            .map(|v| RelevanceScore::parse("relevance_score", v).map(RelevanceScore::get))
            .transpose()?,
        tags: input
            .tags
            .map(|t| Tags::parse("tags", t).map(Tags::into_vec))
            .transpose()?,
        metadata: input
            .metadata
            .map(|m| check_metadata(Some(m), limits))
            .transpose()?,
        expires_at: input.expires_at.map(check_expiry).transpose()?,
        ..Default::default()
    };
    let op = Op::new(
        "memory.update",
        Resource::Memories,
        Permission::Write,
        memory_id.clone(),
    );
    match input.embedding {
        Some(Some(v)) => {
            patch.embedding = Some(Some(Embedding::parse_f64("embedding", &v)?.into_vec()));
            patch.embedding_model = Some(Some("client".to_owned()));
        }
        Some(None) => {
            patch.embedding = Some(None);
            patch.embedding_model = Some(None);
        }
        None => {
            if let (Some(content), Some(embedder)) = (&input.content, &state.embedder) {
                authorize(&state, &ctx, &op).await?;
                let mut v = embedder.embed(vec![embedding_text(content)]).await?;
                patch.embedding = Some(v.pop());
                patch.embedding_model = Some(Some(embedder.model_name().to_owned()));
            }
        }
    }
    patch.content = input.content;
    let row = run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(memories::update(tx, &memory_id, patch).await?) })
    })
    .await?;
    Ok(Json(row.into()))
}

#[utoipa::path(put, path = "/v1/memories/{memory_id}", tag = "memories",
    params(("memory_id" = String, Path)), request_body = MemoryInput,
    responses((status = 201, description = "created", body = MemoryOut),
              (status = 200, description = "replaced", body = MemoryOut),
              (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn upsert_memory(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(memory_id): ApiPath<String>,
    ApiJson(mut input): ApiJson<MemoryInput>,
) -> ApiResult<Response> {
    match &input.memory_id {
        Some(id) if *id != memory_id => {
            return Err(ApiError::unprocessable(
                "memory_id in the body differs from the one in the path",
            ))
        }
        _ => input.memory_id = Some(memory_id.clone()),
    }
    let mut batch = vec![prepare(input, &state.limits)?];
    let op = Op::new(
        "memory.upsert",
        Resource::Memories,
        Permission::Write,
        memory_id,
    );
    embed_missing(&state, &ctx, &op, &mut batch).await?;
    let new = batch.remove(0).memory;
    let (row, created) = run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(memories::upsert(tx, &new).await?) })
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(MemoryOut::from(row))).into_response())
}

#[utoipa::path(delete, path = "/v1/memories/{memory_id}", tag = "memories",
    params(("memory_id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn delete_memory(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(memory_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let op = Op::new(
        "memory.delete",
        Resource::Memories,
        Permission::Delete,
        memory_id.clone(),
    )
    .no_content();
    run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(memories::delete(tx, &memory_id).await?) })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
