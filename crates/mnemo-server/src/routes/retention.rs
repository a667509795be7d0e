//! `/v1/retention/{resource}`: the tenant's retention policies (scope `retention:*` or
//! `policies:*`), `POST /v1/retention/preview`: what the next cleanup run would remove, and
//! `POST /v1/memories/{memory_id}/restore`: an archived memory back among the live ones.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use mnemo_core::retention::{RetentionInput, RetentionResource, RetentionRule};
use mnemo_core::{Invalid, Permission, Resource};
use mnemo_store::retention::{self, Preview, RetentionPolicy};

use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::ops::{run, Op};
use crate::routes::memories::MemoryOut;
use crate::state::AppState;

/// Ids a preview lists at most per part.
const MAX_PREVIEW_IDS: i64 = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_policy, put_policy, delete_policy))
        .routes(routes!(preview))
        .routes(routes!(restore_memory))
}

/// The resource of the path; an unknown one is a 404 like any unknown resource.
fn resource(s: &str) -> ApiResult<RetentionResource> {
    RetentionResource::parse(s).ok_or_else(|| {
        ApiError::not_found(
            "retention_resource_not_found",
            "no such retention resource: use memories, contexts or audit_log",
        )
    })
}

#[utoipa::path(get, path = "/v1/retention/{resource}", tag = "retention",
    params(("resource" = String, Path, description = "memories, contexts or audit_log")),
    responses((status = 200, body = RetentionPolicy), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn get_policy(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<RetentionPolicy>> {
    let op = Op::new(
        "retention.get",
        Resource::Retention,
        Permission::Read,
        name.clone(),
    );
    let policy = run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(retention::get(tx, resource(&name)?).await?) })
    })
    .await?;
    Ok(Json(policy))
}

/// A retention policy. Without `archival_policy`, `delete`; without `basis`, `created_at`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionInputBody {
    /// Days a row is kept (1 to 36,500), counted from `basis`.
    pub retention_days: Option<i64>,
    /// Keep only the newest this many (by `basis`); not for `audit_log`.
    pub max_count: Option<i64>,
    /// delete, archive or retain.
    pub archival_policy: Option<String>,
    /// created_at or last_accessed (the later of the last write and the last read by id).
    pub basis: Option<String>,
    pub is_active: Option<bool>,
}

#[utoipa::path(put, path = "/v1/retention/{resource}", tag = "retention",
    params(("resource" = String, Path, description = "memories, contexts or audit_log")),
    request_body = RetentionInputBody,
    responses((status = 201, body = RetentionPolicy, description = "created"),
              (status = 200, body = RetentionPolicy, description = "replaced"),
              (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn put_policy(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<RetentionInputBody>,
) -> ApiResult<(StatusCode, Json<RetentionPolicy>)> {
    let op = Op::new(
        "retention.put",
        Resource::Retention,
        Permission::Write,
        name.clone(),
    );
    let (policy, created) = run(&state, &ctx, op, |tx| {
        Box::pin(async move {
            let rule = RetentionRule::parse(
                resource(&name)?,
                RetentionInput {
                    retention_days: body.retention_days,
                    max_count: body.max_count,
                    archival_policy: body.archival_policy.as_deref(),
                    basis: body.basis.as_deref(),
                    is_active: body.is_active,
                },
            )?;
            Ok(retention::put(tx, &rule).await?)
        })
    })
    .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(policy)))
}

#[utoipa::path(delete, path = "/v1/retention/{resource}", tag = "retention",
    params(("resource" = String, Path, description = "memories, contexts or audit_log")),
    responses((status = 204, description = "deleted"), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn delete_policy(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let op = Op::new(
        "retention.delete",
        Resource::Retention,
        Permission::Delete,
        name.clone(),
    )
    .no_content();
    run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(retention::delete(tx, resource(&name)?).await?) })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PreviewParams {
    /// Ids listed per part, 0 to 1,000 (default 100).
    pub limit: Option<i64>,
}

/// What the next cleanup run would remove from the tenant's memories: expired ones, and those
/// its memories policy no longer keeps; counts and the first ids, in the order the run takes them.
#[utoipa::path(post, path = "/v1/retention/preview", tag = "retention", params(PreviewParams),
    responses((status = 200, body = Preview), (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn preview(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiQuery(p): ApiQuery<PreviewParams>,
) -> ApiResult<Json<Preview>> {
    let sample = match p.limit {
        None => 100,
        Some(n) if (0..=MAX_PREVIEW_IDS).contains(&n) => n,
        Some(_) => {
            return Err(
                Invalid::new("limit", format!("must be between 0 and {MAX_PREVIEW_IDS}")).into(),
            )
        }
    };
    let op = Op::new(
        "retention.preview",
        Resource::Retention,
        Permission::Read,
        "*",
    );
    let preview = run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(retention::preview(tx, sample).await?) })
    })
    .await?;
    Ok(Json(preview))
}

/// Brings the latest archived version of the memory back, with its archived relationships whose
/// other end is live. 409 `memory_exists` when a live memory holds the id; quotas apply.
#[utoipa::path(post, path = "/v1/memories/{memory_id}/restore", tag = "memories",
    params(("memory_id" = String, Path)),
    responses((status = 200, body = MemoryOut), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn restore_memory(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(memory_id): ApiPath<String>,
) -> ApiResult<Json<MemoryOut>> {
    let op = Op::new(
        "memory.restore",
        Resource::Memories,
        Permission::Write,
        memory_id.clone(),
    );
    let m = run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(retention::restore(tx, &memory_id).await?) })
    })
    .await?;
    Ok(Json(m.into()))
}
