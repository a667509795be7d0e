//! `/v1/contexts`: context offloading. An agent offloads its LLM context (`messages` or `text`);
//! Mnemo keeps the JSON byte-exact and compressed, cuts it into embedded, full-text indexed
//! chunks, summarizes it, and later finds the relevant parts and rebuilds a prompt within a token
//! budget.
//!
//! - this module: create, upsert, get (`?raw=true`: the stored bytes), list, delete.
//! - [`offload`]: what a write does before its transaction: check, compress, chunk, authorize,
//!   embed, summarize.
//! - [`search`]: `POST /v1/contexts/search`, chunks grouped by context.
//! - [`reconstruct`]: `POST /v1/contexts/reconstruct`, a prompt within a token budget.

mod offload;
mod reconstruct;
mod search;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use mnemo_core::context::{decompress, CompressionMethod, ContextKind, TokenizerKind};
use mnemo_core::{
    check_json, json_values, Invalid, MemoryId, Permission, RelevanceScore, Resource,
};
use mnemo_store::contexts::{self, Context, ContextFilter, Cursor};

use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::ops::{run, Op};
use crate::routes::memories::{check_limit, check_object, decode_cursor, next_page};
use crate::state::{AppState, Limits};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_context, list_contexts))
        .routes(routes!(search::search_contexts))
        .routes(routes!(reconstruct::reconstruct))
        .routes(routes!(get_context, upsert_context, delete_context))
}

/// A context as the API returns it. `messages` or `text` are present when the context is read
/// by id, exactly as they were sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContextOut {
    pub context_id: String,
    pub session_id: Option<String>,
    /// `messages` or `text`: which of the two was sent.
    pub kind: ContextKind,
    /// The tokenizer of every token count of this context.
    pub tokenizer: TokenizerKind,
    pub relevance_score: f64,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub message_count: i32,
    pub chunk_count: i32,
    /// Tokens of the whole transcript (role labels and contents).
    pub token_count: Option<i32>,
    /// The gist, extractive or from the configured chat model (`summary_method`).
    pub summary: Option<String>,
    pub summary_tokens: Option<i32>,
    /// `extractive` or `llm:<model>`.
    pub summary_method: Option<String>,
    /// Whether the context has an embedding (its summary's) and its chunks theirs.
    pub has_embedding: bool,
    pub embedding_model: Option<String>,
    /// Bytes of the `messages`/`text` JSON as sent.
    pub original_bytes: Option<i64>,
    /// Bytes stored for it.
    pub stored_bytes: Option<i64>,
    /// `zstd-<level>`, or `none` when compressing would not have saved a byte.
    pub compression_method: String,
    /// `original_bytes / stored_bytes`.
    pub compression_ratio: f64,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The messages exactly as sent (same JSON text: key order, numbers, escapes).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub messages: Option<Box<RawValue>>,
    /// The text exactly as sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub text: Option<Box<RawValue>>,
}

impl From<Context> for ContextOut {
    fn from(c: Context) -> Self {
        Self {
            context_id: c.context_id,
            session_id: c.session_id,
            kind: c.payload_kind.parse().unwrap_or(ContextKind::Messages),
            tokenizer: c.tokenizer.parse().unwrap_or_default(),
            relevance_score: c.relevance_score,
            metadata: c.metadata.0,
            message_count: c.message_count,
            chunk_count: c.chunk_count,
            token_count: c.original_token_count,
            summary: c.summary,
            summary_tokens: c.compressed_token_count,
            summary_method: c.summary_method,
            has_embedding: c.has_embedding,
            embedding_model: c.embedding_model,
            original_bytes: c.original_size_bytes,
            stored_bytes: c.compressed_size_bytes,
            compression_method: c.compression_method,
            compression_ratio: c.compression_ratio,
            expires_at: c.expires_at,
            created_at: c.created_at,
            updated_at: c.updated_at,
            messages: None,
            text: None,
        }
    }
}

/// A context to offload: `messages` or `text`, not both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextInput {
    /// Unique within the tenant; generated (`ctx_…`) when absent.
    pub context_id: Option<String>,
    /// Groups contexts of one conversation; a filter of listing, search and reconstruction.
    pub session_id: Option<String>,
    /// Chat messages, each an object with string `role` and `content` (which may be empty) and
    /// any other fields (`name`, `tool_call_id`, `tool_calls`, …). Kept exactly as sent.
    #[schema(value_type = Option<Vec<Object>>)]
    pub messages: Option<Box<RawValue>>,
    /// Plain text instead of messages. Kept exactly as sent.
    #[schema(value_type = Option<String>)]
    pub text: Option<Box<RawValue>>,
    /// A JSON object.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// In [0, 1]; default 0.5.
    pub relevance_score: Option<f64>,
    /// Must be in the future; the context disappears from every read after it.
    pub expires_at: Option<DateTime<Utc>>,
    /// `o200k_base` (default) or `cl100k_base`: how tokens are counted for this context.
    pub tokenizer: Option<TokenizerKind>,
}

/// A checked request, before the costly work.
pub(super) struct Checked {
    pub context_id: String,
    pub session_id: Option<String>,
    pub captured: mnemo_core::context::CapturedContext,
    pub tokenizer: TokenizerKind,
    pub relevance_score: f64,
    pub metadata: Value,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A client identifier (`context_id`, `session_id`): the rules of memory ids.
pub(super) fn identifier(field: &str, s: &str) -> Result<String, Invalid> {
    MemoryId::parse(s)
        .map(MemoryId::into_string)
        .map_err(|e| Invalid::new(field, e.message))
}

fn check(input: ContextInput, limits: &Limits) -> ApiResult<Checked> {
    for raw in [&input.messages, &input.text].into_iter().flatten() {
        let size = raw.get().len();
        if size > limits.max_context_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "context_too_large",
                format!(
                    "the context is {size} bytes of JSON; at most {} are accepted",
                    limits.max_context_bytes
                ),
            ));
        }
    }
    let context_id = match input.context_id {
        Some(id) => identifier("context_id", &id)?,
        None => format!("ctx_{}", uuid::Uuid::new_v4().simple()),
    };
    let session_id = input
        .session_id
        .map(|s| identifier("session_id", &s))
        .transpose()?;
    let captured = mnemo_core::context::CapturedContext::capture(input.messages, input.text)?;
    let relevance_score =
        RelevanceScore::parse("relevance_score", input.relevance_score.unwrap_or(0.5))?.get();
    let metadata = check_object("metadata", input.metadata, limits)?;
    if let Some(t) = input.expires_at.filter(|t| *t <= Utc::now()) {
        return Err(Invalid::new("expires_at", format!("must be in the future, got {t}")).into());
    }
    Ok(Checked {
        context_id,
        session_id,
        captured,
        tokenizer: input.tokenizer.unwrap_or_default(),
        relevance_score,
        metadata,
        expires_at: input.expires_at,
    })
}

#[utoipa::path(post, path = "/v1/contexts", tag = "contexts",
    request_body = ContextInput,
    responses((status = 201, body = ContextOut), (status = 409, body = crate::error::ErrorBody),
              (status = 413, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn create_context(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(input): ApiJson<ContextInput>,
) -> ApiResult<(StatusCode, Json<ContextOut>)> {
    let checked = check(input, &state.limits)?;
    let op = Op::new(
        "context.create",
        Resource::Contexts,
        Permission::Write,
        checked.context_id.clone(),
    )
    .created();
    let new = offload::prepare(&state, &ctx, &op, checked).await?;
    let row = run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(contexts::create(tx, &new).await?) })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[utoipa::path(put, path = "/v1/contexts/{context_id}", tag = "contexts",
    params(("context_id" = String, Path)), request_body = ContextInput,
    responses((status = 201, description = "created", body = ContextOut),
              (status = 200, description = "replaced, with all its chunks", body = ContextOut),
              (status = 413, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn upsert_context(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(context_id): ApiPath<String>,
    ApiJson(mut input): ApiJson<ContextInput>,
) -> ApiResult<Response> {
    match &input.context_id {
        Some(id) if *id != context_id => {
            return Err(ApiError::unprocessable(
                "context_id in the body differs from the one in the path",
            ))
        }
        _ => input.context_id = Some(context_id.clone()),
    }
    let checked = check(input, &state.limits)?;
    let op = Op::new(
        "context.upsert",
        Resource::Contexts,
        Permission::Write,
        context_id,
    );
    let new = offload::prepare(&state, &ctx, &op, checked).await?;
    let (row, created) = run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(contexts::upsert(tx, &new).await?) })
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(ContextOut::from(row))).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GetParams {
    /// Answer with the stored `messages`/`text` bytes exactly as they were sent (content type
    /// `application/json`), nothing else.
    #[serde(default)]
    pub raw: bool,
}

#[utoipa::path(get, path = "/v1/contexts/{context_id}", tag = "contexts",
    params(("context_id" = String, Path), GetParams),
    responses((status = 200, body = ContextOut, description = "the context with its messages or text; with `raw=true`, only those bytes"),
              (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn get_context(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(context_id): ApiPath<String>,
    ApiQuery(params): ApiQuery<GetParams>,
) -> ApiResult<Response> {
    let op = Op::new(
        "context.get",
        Resource::Contexts,
        Permission::Read,
        context_id.clone(),
    );
    let content = run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(contexts::get_content(tx, &context_id).await?) })
    })
    .await?;
    let context = content.context;
    let stored = content.compressed_content.unwrap_or_default();
    let method: CompressionMethod = context
        .compression_method
        .parse()
        .map_err(|e: Invalid| ApiError::internal(format!("stored context: {e}")))?;
    let original = context
        .original_size_bytes
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(stored.len());
    let bytes = tokio::task::spawn_blocking(move || decompress(&stored, method, original, None))
        .await
        .map_err(|e| ApiError::internal(format!("decompressing: {e}")))?
        .map_err(|e| ApiError::internal(format!("stored context: {e}")))?;
    if params.raw {
        return Ok((
            [(header::CONTENT_TYPE, "application/json")],
            axum::body::Bytes::from(bytes),
        )
            .into_response());
    }
    let text =
        String::from_utf8(bytes).map_err(|_| ApiError::internal("stored context is not UTF-8"))?;
    let raw = RawValue::from_string(text)
        .map_err(|e| ApiError::internal(format!("stored context is not JSON: {e}")))?;
    let mut out = ContextOut::from(context);
    match out.kind {
        ContextKind::Messages => out.messages = Some(raw),
        ContextKind::Text => out.text = Some(raw),
    }
    Ok(Json(out).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    pub session_id: Option<String>,
    /// JSON that `metadata` must contain (JSONB `@>`), e.g. `{"agent":"planner"}`.
    pub contains: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContextPage {
    /// Newest first, without their messages or text (read a context by id for those).
    pub contexts: Vec<ContextOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// The filter of listing, search and reconstruction, each part checked (a `contains` is bounded
/// like memories' filters).
pub(super) fn build_filter(
    limits: &Limits,
    session_id: Option<String>,
    contains: Option<Value>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
) -> Result<ContextFilter, Invalid> {
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
    Ok(ContextFilter {
        session_id: session_id
            .map(|s| identifier("session_id", &s))
            .transpose()?,
        contains,
        created_after,
        created_before,
    })
}

#[utoipa::path(get, path = "/v1/contexts", tag = "contexts",
    params(ListParams),
    responses((status = 200, body = ContextPage), (status = 400, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn list_contexts(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiQuery(p): ApiQuery<ListParams>,
) -> ApiResult<Json<ContextPage>> {
    let limit = check_limit(&state.limits, p.limit)?;
    let cursor = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let contains = p
        .contains
        .as_deref()
        .map(serde_json::from_str::<Value>)
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_query", format!("contains: not JSON: {e}")))?;
    let filter = build_filter(
        &state.limits,
        p.session_id,
        contains,
        p.created_after,
        p.created_before,
    )?;
    let op = Op::new("context.list", Resource::Contexts, Permission::Read, "*");
    let mut rows = run(&state, &ctx, op, |tx| {
        Box::pin(async move {
            let cursor = cursor.map(|(created_at, id)| Cursor { created_at, id });
            Ok(contexts::list(tx, &filter, cursor, limit + 1).await?)
        })
    })
    .await?;
    let next = next_page(&mut rows, limit, |c| (c.created_at, c.id));
    Ok(Json(ContextPage {
        contexts: rows.into_iter().map(Into::into).collect(),
        next_cursor: next,
    }))
}

#[utoipa::path(delete, path = "/v1/contexts/{context_id}", tag = "contexts",
    params(("context_id" = String, Path)),
    responses((status = 204, description = "deleted, with its chunks"), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn delete_context(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(context_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let op = Op::new(
        "context.delete",
        Resource::Contexts,
        Permission::Delete,
        context_id.clone(),
    )
    .no_content();
    run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(contexts::delete(tx, &context_id).await?) })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
