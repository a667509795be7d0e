//! The tenant's own usage (`/v1/usage`), audit trail (`/v1/audit`) and access policies
//! (`/v1/policies`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use mnemo_core::{Invalid, Name, Permission, Resource};
use mnemo_store::audit::{self, AuditFilter, AuditRecord};
use mnemo_store::memories::{self, Usage};
use mnemo_store::policies::{self, AccessPolicy, NewPolicy};
use mnemo_store::StoreError;

use crate::auth::TenantCtx;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::ops::{run, Op};
use crate::routes::memories::{check_limit, check_object, decode_cursor, next_page};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(usage))
        .routes(routes!(list_audit))
        .routes(routes!(create_policy, list_policies))
        .routes(routes!(get_policy, update_policy, delete_policy))
}

#[utoipa::path(get, path = "/v1/usage", tag = "tenant",
    responses((status = 200, body = Usage)), security(("api_key" = [])))]
async fn usage(State(state): State<AppState>, ctx: TenantCtx) -> ApiResult<Json<Usage>> {
    let op = Op::new("usage.get", Resource::Usage, Permission::Read, "*");
    let u = run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(memories::usage(tx).await?) })
    })
    .await?;
    Ok(Json(u))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// e.g. `memory.create`.
    pub action: Option<String>,
    /// success, denied, not_found, invalid, conflict, error.
    pub outcome: Option<String>,
    pub request_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "tenant", params(AuditParams),
    responses((status = 200, body = AuditPage)), security(("api_key" = [])))]
async fn list_audit(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiQuery(p): ApiQuery<AuditParams>,
) -> ApiResult<Json<AuditPage>> {
    let limit = check_limit(&state.limits, p.limit)?;
    let cursor = p.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = AuditFilter {
        action: p.action,
        outcome: p.outcome,
        request_id: p.request_id,
        since: p.since,
        until: p.until,
    };
    let op = Op::new("audit.list", Resource::Audit, Permission::Read, "*");
    let mut rows = run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(audit::list(tx, &filter, cursor, limit + 1).await?) })
    })
    .await?;
    let next = next_page(&mut rows, limit, |r| (r.created_at, r.id));
    Ok(Json(AuditPage {
        records: rows,
        next_cursor: next,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    pub name: String,
    /// memories, contexts, federated, audit, usage or policies.
    pub resource_type: String,
    /// `*`, a prefix ending in `*`, or an exact resource id. Default `*`.
    pub resource_pattern: Option<String>,
    /// Some of read, write, delete.
    pub permissions: Vec<String>,
    /// Restrict the policy to one key of this tenant; all keys when absent.
    pub api_key_id: Option<Uuid>,
    #[schema(value_type = Option<Object>)]
    pub conditions: Option<Value>,
    pub is_active: Option<bool>,
}

#[utoipa::path(post, path = "/v1/policies", tag = "policies", request_body = PolicyInput,
    responses((status = 201, body = AccessPolicy), (status = 409, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn create_policy(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(p): ApiJson<PolicyInput>,
) -> ApiResult<(StatusCode, Json<AccessPolicy>)> {
    let name = Name::parse("name", &p.name)?;
    let resource = Resource::ALL
        .iter()
        .find(|r| r.as_str() == p.resource_type)
        .ok_or_else(|| {
            Invalid::new(
                "resource_type",
                "must be one of memories, contexts, federated, audit, usage, policies, retention",
            )
        })?;
    let pattern = p.resource_pattern.unwrap_or_else(|| "*".to_owned());
    if pattern.is_empty() || pattern.len() > 255 || pattern.chars().any(char::is_control) {
        return Err(Invalid::new(
            "resource_pattern",
            "must be 1 to 255 bytes without control characters",
        )
        .into());
    }
    if p.permissions.is_empty() || p.permissions.iter().any(|x| Permission::parse(x).is_none()) {
        return Err(Invalid::new(
            "permissions",
            "must be a non-empty list of read, write, delete",
        )
        .into());
    }
    let conditions = check_object("conditions", p.conditions, &state.limits)?;
    // A policy naming a key that is not the tenant's would silently narrow nothing.
    if let Some(key_id) = p.api_key_id {
        let keys = state.store.list_api_keys(&ctx.key.tenant_key).await?;
        if !keys.iter().any(|k| k.id == key_id) {
            return Err(Invalid::new("api_key_id", "is not a key of this tenant").into());
        }
    }
    let new = NewPolicy {
        name: name.into_string(),
        resource_type: resource.as_str().to_owned(),
        resource_pattern: pattern,
        permissions: p.permissions,
        api_key_id: p.api_key_id,
        conditions,
        is_active: p.is_active.unwrap_or(true),
    };
    let op = Op::new(
        "policy.create",
        Resource::Policies,
        Permission::Write,
        new.name.clone(),
    )
    .created();
    // Every request reads the applicable policies: their number is bounded.
    let max = state.limits.max_policies;
    let policy = run(&state, &ctx, op, |tx| {
        Box::pin(async move {
            if policies::count(tx).await? >= max {
                return Err(StoreError::Quota(format!(
                    "a tenant may hold at most {max} access policies"
                ))
                .into());
            }
            Ok(policies::create(tx, new).await?)
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(policy)))
}

/// The query of a list paged oldest first by an opaque cursor (policies, sharing rules).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CursorPageParams {
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyPage {
    /// Oldest first.
    pub policies: Vec<AccessPolicy>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/policies", tag = "policies", params(CursorPageParams),
    responses((status = 200, body = PolicyPage)), security(("api_key" = [])))]
async fn list_policies(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiQuery(p): ApiQuery<CursorPageParams>,
) -> ApiResult<Json<PolicyPage>> {
    let limit = check_limit(&state.limits, p.limit)?;
    let cursor = p
        .cursor
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .map(|(created_at, id)| policies::Cursor { created_at, id });
    let op = Op::new("policy.list", Resource::Policies, Permission::Read, "*");
    let mut rows = run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(policies::list(tx, cursor, limit + 1).await?) })
    })
    .await?;
    let next = next_page(&mut rows, limit, |r| (r.created_at, r.id));
    Ok(Json(PolicyPage {
        policies: rows,
        next_cursor: next,
    }))
}

#[utoipa::path(get, path = "/v1/policies/{id}", tag = "policies", params(("id" = Uuid, Path)),
    responses((status = 200, body = AccessPolicy), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn get_policy(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<AccessPolicy>> {
    let op = Op::new(
        "policy.get",
        Resource::Policies,
        Permission::Read,
        id.to_string(),
    );
    Ok(Json(
        run(&state, &ctx, op, |tx| {
            Box::pin(async move { Ok(policies::get(tx, id).await?) })
        })
        .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    pub is_active: bool,
}

#[utoipa::path(patch, path = "/v1/policies/{id}", tag = "policies", params(("id" = Uuid, Path)),
    request_body = PolicyPatch,
    responses((status = 200, body = AccessPolicy), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn update_policy(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(p): ApiJson<PolicyPatch>,
) -> ApiResult<Json<AccessPolicy>> {
    let op = Op::new(
        "policy.update",
        Resource::Policies,
        Permission::Write,
        id.to_string(),
    );
    Ok(Json(
        run(&state, &ctx, op, |tx| {
            Box::pin(async move { Ok(policies::set_active(tx, id, p.is_active).await?) })
        })
        .await?,
    ))
}

#[utoipa::path(delete, path = "/v1/policies/{id}", tag = "policies", params(("id" = Uuid, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn delete_policy(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let op = Op::new(
        "policy.delete",
        Resource::Policies,
        Permission::Delete,
        id.to_string(),
    )
    .no_content();
    run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(policies::delete(tx, id).await?) })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
