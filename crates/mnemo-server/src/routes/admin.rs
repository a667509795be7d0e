//! `/v1/admin`: projects, tenants and tenant API keys. Admin key only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use mnemo_core::federated::accounting::Budget;
use mnemo_core::{json_object, Invalid, IsolationLevel, Name, Scope, TenantKey};
use mnemo_store::admin::{
    ApiKey, NewProject, NewTenant, Project, ProjectPatch, Tenant, TenantPatch,
};

use crate::auth::AdminCtx;
use crate::error::ApiResult;
use crate::extract::{nullable, ApiJson, ApiPath, ApiQuery};
use crate::routes::federated::participant::ParticipantOut;
use crate::routes::memories::check_limit;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_project, list_projects))
        .routes(routes!(get_project, update_project, delete_project))
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant, update_tenant, delete_tenant))
        .routes(routes!(tenant_federated))
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
}

/// Project and tenant settings: a JSON object of modest depth.
fn settings(v: Option<Value>) -> Result<Value, Invalid> {
    json_object("settings", v, 16)
}

fn description(v: Option<String>) -> Result<Option<String>, Invalid> {
    match v {
        Some(d) if d.chars().count() > 10_000 || d.contains('\0') => Err(Invalid::new(
            "description",
            "must be at most 10000 characters without NUL",
        )),
        d => Ok(d),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectInput {
    pub name: String,
    pub description: Option<String>,
    pub owner_id: String,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
}

#[utoipa::path(post, path = "/v1/admin/projects", tag = "admin", request_body = ProjectInput,
    responses((status = 201, body = Project), (status = 409, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn create_project(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiJson(p): ApiJson<ProjectInput>,
) -> ApiResult<(StatusCode, Json<Project>)> {
    let new = NewProject {
        name: Name::parse("name", &p.name)?.into_string(),
        description: description(p.description)?,
        owner_id: Name::parse("owner_id", &p.owner_id)?.into_string(),
        settings: settings(p.settings)?,
    };
    Ok((
        StatusCode::CREATED,
        Json(state.store.create_project(new).await?),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    pub limit: Option<i64>,
    /// The last id of the previous page.
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/v1/admin/projects", tag = "admin", params(PageParams),
    responses((status = 200, body = Vec<Project>)), security(("admin_key" = [])))]
async fn list_projects(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<Vec<Project>>> {
    let limit = check_limit(&state.limits, p.limit)?;
    let after = p
        .after
        .map(|a| {
            a.parse::<Uuid>()
                .map_err(|_| Invalid::new("after", "must be a project id"))
        })
        .transpose()?;
    Ok(Json(state.store.list_projects(after, limit).await?))
}

#[utoipa::path(get, path = "/v1/admin/projects/{id}", tag = "admin", params(("id" = Uuid, Path)),
    responses((status = 200, body = Project), (status = 404, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn get_project(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Project>> {
    Ok(Json(state.store.get_project(id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatchInput {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub description: Option<Option<String>>,
    pub owner_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
}

#[utoipa::path(patch, path = "/v1/admin/projects/{id}", tag = "admin", params(("id" = Uuid, Path)),
    request_body = ProjectPatchInput,
    responses((status = 200, body = Project), (status = 404, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn update_project(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(p): ApiJson<ProjectPatchInput>,
) -> ApiResult<Json<Project>> {
    let patch = ProjectPatch {
        name: p
            .name
            .map(|n| Name::parse("name", &n).map(Name::into_string))
            .transpose()?,
        description: p.description.map(description).transpose()?,
        owner_id: p
            .owner_id
            .map(|n| Name::parse("owner_id", &n).map(Name::into_string))
            .transpose()?,
        settings: p.settings.map(|v| settings(Some(v))).transpose()?,
    };
    Ok(Json(state.store.update_project(id, patch).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteProjectParams {
    /// Also delete the project's tenants and all their data.
    #[serde(default)]
    pub cascade: bool,
}

#[utoipa::path(delete, path = "/v1/admin/projects/{id}", tag = "admin",
    params(("id" = Uuid, Path), DeleteProjectParams),
    responses((status = 204, description = "deleted"), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "the project has tenants", body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn delete_project(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(p): ApiQuery<DeleteProjectParams>,
) -> ApiResult<StatusCode> {
    state.store.delete_project(id, p.cascade).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantInput {
    /// Public identifier: letters, digits, `.`, `_`, `:`, `-`; at most 128.
    pub tenant_id: String,
    pub project_id: Uuid,
    pub name: String,
    pub isolation_level: Option<IsolationLevel>,
    pub encryption_enabled: Option<bool>,
    pub max_memories: Option<i64>,
    pub max_storage_bytes: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
}

fn positive(field: &str, v: Option<i64>) -> Result<Option<i64>, Invalid> {
    match v {
        Some(n) if n <= 0 => Err(Invalid::new(field, "must be a positive integer")),
        v => Ok(v),
    }
}

#[utoipa::path(post, path = "/v1/admin/tenants", tag = "admin", request_body = TenantInput,
    responses((status = 201, body = Tenant), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn create_tenant(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiJson(t): ApiJson<TenantInput>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    let new = NewTenant {
        tenant_id: TenantKey::parse(&t.tenant_id)?.as_str().to_owned(),
        project_id: t.project_id,
        name: Name::parse("name", &t.name)?.into_string(),
        isolation_level: t.isolation_level.unwrap_or(IsolationLevel::Strict),
        encryption_enabled: t.encryption_enabled.unwrap_or(false),
        max_memories: positive("max_memories", t.max_memories)?,
        max_storage_bytes: positive("max_storage_bytes", t.max_storage_bytes)?,
        settings: settings(t.settings)?,
    };
    let tenant = state.store.create_tenant(new).await.map_err(|e| match e {
        mnemo_store::StoreError::MissingReference { .. } => {
            mnemo_store::StoreError::NotFound("project")
        }
        e => e,
    })?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TenantListParams {
    pub project_id: Option<Uuid>,
    pub limit: Option<i64>,
    /// The last tenant_id of the previous page.
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/v1/admin/tenants", tag = "admin", params(TenantListParams),
    responses((status = 200, body = Vec<Tenant>)), security(("admin_key" = [])))]
async fn list_tenants(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiQuery(p): ApiQuery<TenantListParams>,
) -> ApiResult<Json<Vec<Tenant>>> {
    let limit = check_limit(&state.limits, p.limit)?;
    Ok(Json(
        state
            .store
            .list_tenants(p.project_id, p.after.as_deref(), limit)
            .await?,
    ))
}

#[utoipa::path(get, path = "/v1/admin/tenants/{tenant_id}", tag = "admin", params(("tenant_id" = String, Path)),
    responses((status = 200, body = Tenant), (status = 404, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn get_tenant(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiPath(tenant_id): ApiPath<String>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(state.store.get_tenant(&tenant_id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantPatchInput {
    pub name: Option<String>,
    pub isolation_level: Option<IsolationLevel>,
    pub encryption_enabled: Option<bool>,
    /// A positive number, or null for no limit.
    #[serde(default, deserialize_with = "nullable")]
    pub max_memories: Option<Option<i64>>,
    #[serde(default, deserialize_with = "nullable")]
    pub max_storage_bytes: Option<Option<i64>>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
    /// A deactivated tenant's keys stop working.
    pub is_active: Option<bool>,
    /// The tenant's total privacy budget for federated learning (default ε = 10 at δ = 1e-6):
    /// ε in (0, 100], δ in (0, 1e-3]. Lowering it below what the tenant spent stops its
    /// participation; the ledger itself never shrinks.
    pub privacy_budget: Option<BudgetInput>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetInput {
    pub epsilon: f64,
    pub delta: f64,
}

#[utoipa::path(patch, path = "/v1/admin/tenants/{tenant_id}", tag = "admin", params(("tenant_id" = String, Path)),
    request_body = TenantPatchInput,
    responses((status = 200, body = Tenant), (status = 404, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn update_tenant(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiPath(tenant_id): ApiPath<String>,
    ApiJson(p): ApiJson<TenantPatchInput>,
) -> ApiResult<Json<Tenant>> {
    let patch = TenantPatch {
        name: p
            .name
            .map(|n| Name::parse("name", &n).map(Name::into_string))
            .transpose()?,
        isolation_level: p.isolation_level,
        encryption_enabled: p.encryption_enabled,
        max_memories: p
            .max_memories
            .map(|v| positive("max_memories", v))
            .transpose()?,
        max_storage_bytes: p
            .max_storage_bytes
            .map(|v| positive("max_storage_bytes", v))
            .transpose()?,
        settings: p.settings.map(|v| settings(Some(v))).transpose()?,
        is_active: p.is_active,
        privacy_budget: p
            .privacy_budget
            .map(|b| {
                Budget::parse(b.epsilon, b.delta)
                    .map_err(|e| Invalid::new(format!("privacy_budget.{}", e.field), e.message))
            })
            .transpose()?,
    };
    Ok(Json(state.store.update_tenant(&tenant_id, patch).await?))
}

/// A tenant's federated standing, as the administrator sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantFederated {
    pub tenant_id: String,
    pub privacy_budget: Budget,
    /// Absent when the tenant never registered.
    pub participant: Option<ParticipantOut>,
}

#[utoipa::path(get, path = "/v1/admin/tenants/{tenant_id}/federated", tag = "admin",
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = TenantFederated), (status = 404, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn tenant_federated(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiPath(tenant_id): ApiPath<String>,
) -> ApiResult<Json<TenantFederated>> {
    let tenant = state.store.get_tenant(&tenant_id).await?;
    let participant = state
        .store
        .federated_participant(&tenant_id, 20)
        .await?
        .map(|(p, ledger)| ParticipantOut::new(p, ledger));
    Ok(Json(TenantFederated {
        tenant_id: tenant.tenant_id,
        privacy_budget: Budget {
            epsilon: tenant.privacy_budget_epsilon,
            delta: tenant.privacy_budget_delta,
        },
        participant,
    }))
}

#[utoipa::path(delete, path = "/v1/admin/tenants/{tenant_id}", tag = "admin", params(("tenant_id" = String, Path)),
    responses((status = 204, description = "deleted with all its data"), (status = 404, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn delete_tenant(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiPath(tenant_id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.store.delete_tenant(&tenant_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyInput {
    pub name: String,
    /// e.g. `memories:read`, `memories:write`, `contexts:*`, `*`.
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: ApiKey,
    /// The secret, shown only in this response.
    pub secret: String,
}

#[utoipa::path(post, path = "/v1/admin/tenants/{tenant_id}/keys", tag = "admin",
    params(("tenant_id" = String, Path)), request_body = KeyInput,
    responses((status = 201, body = CreatedKey), (status = 404, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn create_key(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiPath(tenant_id): ApiPath<String>,
    ApiJson(k): ApiJson<KeyInput>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let name = Name::parse("name", &k.name)?;
    if k.scopes.is_empty() || k.scopes.len() > 32 {
        return Err(Invalid::new("scopes", "must list 1 to 32 scopes").into());
    }
    for s in &k.scopes {
        Scope::parse(s)?;
    }
    if k.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(Invalid::new("expires_at", "must be in the future").into());
    }
    let (key, secret) = state
        .store
        .create_api_key(&tenant_id, name.as_str(), &k.scopes, k.expires_at)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, secret })))
}

#[utoipa::path(get, path = "/v1/admin/tenants/{tenant_id}/keys", tag = "admin",
    params(("tenant_id" = String, Path)),
    responses((status = 200, body = Vec<ApiKey>), (status = 404, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn list_keys(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiPath(tenant_id): ApiPath<String>,
) -> ApiResult<Json<Vec<ApiKey>>> {
    Ok(Json(state.store.list_api_keys(&tenant_id).await?))
}

#[utoipa::path(delete, path = "/v1/admin/tenants/{tenant_id}/keys/{key_id}", tag = "admin",
    params(("tenant_id" = String, Path), ("key_id" = Uuid, Path)),
    responses((status = 200, description = "revoked", body = ApiKey), (status = 404, body = crate::error::ErrorBody)),
    security(("admin_key" = [])))]
async fn revoke_key(
    State(state): State<AppState>,
    _: AdminCtx,
    ApiPath((tenant_id, key_id)): ApiPath<(String, Uuid)>,
) -> ApiResult<Json<ApiKey>> {
    Ok(Json(state.store.revoke_api_key(&tenant_id, key_id).await?))
}
