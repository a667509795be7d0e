//! `/v1/sharing-rules`: the key's tenant (A) lets another tenant of its project (B), or every
//! tenant of it, read A's memories that match the rule's conditions, anonymized by the rule's
//! profile (scopes `federated:read|write|delete`, access policies of resource type `federated`).
//! Never to or from a `strict` tenant.
//!
//! What rules expose reaches B only through `POST /v1/memories/search` with `scope: "shared"`
//! ([`shared_hits`]): read by the database function `mnemo_shared_memories()` for B's session
//! tenant, each hit marked with its rule (and A's tenant id only where the rule reveals it),
//! anonymized here before it is answered, and audited in A's trail as well as B's. A revoked,
//! deactivated or expired rule exposes nothing from the next request on.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use mnemo_core::federated::redact::{RedactionProfile, Redactor};
use mnemo_core::{Invalid, Permission, Resource, TenantKey};
use mnemo_store::memories::{Memory, MemoryFilter};
use mnemo_store::search::Hit;
use mnemo_store::sharing::{self, NewRule, Rule, RulePatch, SharedMemory};
use mnemo_store::{federated, StoreError, TenantTx};

use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult};
use crate::extract::{nullable, ApiJson, ApiPath, ApiQuery};
use crate::ops::{run, Op};
use crate::routes::federated::require_federating;
use crate::routes::memories::{build_filter, check_limit, decode_cursor, next_page};
use crate::routes::tenant_misc::CursorPageParams;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_rule, list_rules))
        .routes(routes!(get_rule, update_rule, delete_rule))
}

/// Sharing rules one tenant may hold.
pub const MAX_SHARING_RULES: i64 = 1000;

/// Which of the owner's memories a rule exposes: at least one condition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// Memories with all these tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Memories with at least one of these tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub any_tags: Option<Vec<String>>,
    /// JSON the memory's content contains (JSONB `@>`; at most 8 KiB and 64 JSON values). `{}`
    /// matches every memory whose content is an object.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub contains: Option<Value>,
}

fn check_conditions(c: Conditions, state: &AppState) -> Result<Value, Invalid> {
    if c.tags.is_none() && c.any_tags.is_none() && c.contains.is_none() {
        return Err(Invalid::new(
            "conditions",
            "give at least one of tags, any_tags, contains (a rule never shares everything by accident)",
        ));
    }
    let f = build_filter(
        &state.limits,
        c.contains,
        c.tags,
        c.any_tags,
        None,
        None,
        None,
        None,
    )
    .map_err(|e| Invalid::new(format!("conditions.{}", e.field), e.message))?;
    Ok(serde_json::to_value(Conditions {
        tags: f.tags_all,
        any_tags: f.tags_any,
        contains: f.contains,
    })
    .unwrap_or(Value::Null))
}

fn check_profile(p: Option<RedactionProfile>) -> Result<Value, Invalid> {
    let p = p.unwrap_or_default();
    p.compile()
        .map_err(|e| Invalid::new(format!("anonymization.{}", e.field), e.message))?;
    Ok(serde_json::to_value(p).unwrap_or(Value::Null))
}

fn check_expiry(t: Option<DateTime<Utc>>) -> Result<Option<DateTime<Utc>>, Invalid> {
    match t {
        Some(t) if t <= Utc::now() => Err(Invalid::new("expires_at", "must be in the future")),
        t => Ok(t),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    /// The public id of a tenant of this project, or `*` for every tenant of it (itself and
    /// strict tenants excluded).
    pub target_tenant_id: String,
    /// `memories` (the default; the only one so far).
    pub resource_type: Option<String>,
    /// `["read"]` (the default; the only one so far).
    pub permissions: Option<Vec<String>>,
    pub conditions: Conditions,
    /// Fields stripped or redacted and text masked in what the rule exposes (content, metadata,
    /// tags). Default: e-mail addresses and long numbers masked.
    pub anonymization: Option<RedactionProfile>,
    /// Show readers this tenant's public id on what the rule exposes (default false: hits name
    /// only the rule).
    pub reveal_source: Option<bool>,
    pub is_active: Option<bool>,
    /// The rule stops applying at this time.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A rule as its owner sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleOut {
    pub id: Uuid,
    /// The target's public tenant id, or `*` for every tenant of the project.
    pub target_tenant_id: String,
    pub resource_type: String,
    pub permissions: Vec<String>,
    #[schema(value_type = Object)]
    pub conditions: Value,
    #[schema(value_type = Object)]
    pub anonymization: Value,
    pub reveal_source: bool,
    pub is_active: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Rule> for RuleOut {
    fn from(r: Rule) -> Self {
        Self {
            id: r.id,
            target_tenant_id: r.target.unwrap_or_else(|| "*".to_owned()),
            resource_type: r.resource_type,
            permissions: r.permissions,
            conditions: r.conditions.0,
            anonymization: r.anonymization.0,
            reveal_source: r.reveal_source,
            is_active: r.is_active,
            expires_at: r.expires_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn target_not_found() -> ApiError {
    ApiError::not_found(
        "target_tenant_not_found",
        "no tenant with this id in this tenant's project",
    )
}

#[utoipa::path(post, path = "/v1/sharing-rules", tag = "sharing", request_body = RuleInput,
    responses((status = 201, body = RuleOut),
              (status = 403, description = "this tenant or the target is strict", body = crate::error::ErrorBody),
              (status = 404, description = "no such target in the project", body = crate::error::ErrorBody),
              (status = 409, description = "a rule for this target exists", body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn create_rule(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(input): ApiJson<RuleInput>,
) -> ApiResult<(StatusCode, Json<RuleOut>)> {
    let target = match input.target_tenant_id.as_str() {
        "*" => None,
        key => {
            Some(TenantKey::parse(key).map_err(|e| Invalid::new("target_tenant_id", e.message))?)
        }
    };
    if input
        .resource_type
        .as_deref()
        .is_some_and(|t| t != "memories")
    {
        return Err(Invalid::new(
            "resource_type",
            "must be memories (the only kind shared so far)",
        )
        .into());
    }
    if input
        .permissions
        .as_ref()
        .is_some_and(|p| p.as_slice() != ["read"])
    {
        return Err(
            Invalid::new("permissions", "must be [\"read\"] (sharing is read-only)").into(),
        );
    }
    let conditions = check_conditions(input.conditions, &state)?;
    let anonymization = check_profile(input.anonymization)?;
    let expires_at = check_expiry(input.expires_at)?;
    let op = Op::new(
        "sharing.rule.create",
        Resource::Federated,
        Permission::Write,
        input.target_tenant_id.clone(),
    )
    .created();
    let out = run(&state, &ctx, op, |tx| {
        Box::pin(async move {
            require_federating(tx).await?;
            let target = match target {
                None => None,
                Some(key) => {
                    let t = federated::project_tenant(tx, key.as_str())
                        .await?
                        .ok_or_else(target_not_found)?;
                    if t.id == tx.tenant_id() {
                        return Err(Invalid::new("target_tenant_id", "a tenant does not share with itself").into());
                    }
                    if t.is_strict() {
                        return Err(ApiError::forbidden(
                            "target_isolation_strict",
                            "the target tenant's isolation level is strict: nothing is shared with it",
                        ));
                    }
                    Some(t.id)
                }
            };
            if sharing::count(tx).await? >= MAX_SHARING_RULES {
                return Err(StoreError::Quota(format!(
                    "a tenant may hold at most {MAX_SHARING_RULES} sharing rules"
                ))
                .into());
            }
            let rule = sharing::create(
                tx,
                NewRule {
                    target,
                    conditions,
                    anonymization,
                    reveal_source: input.reveal_source.unwrap_or(false),
                    is_active: input.is_active.unwrap_or(true),
                    expires_at,
                },
            )
            .await?;
            Ok(RuleOut::from(rule))
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RulePage {
    /// The tenant's own rules, oldest first.
    pub rules: Vec<RuleOut>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/sharing-rules", tag = "sharing", params(CursorPageParams),
    responses((status = 200, body = RulePage)), security(("api_key" = [])))]
async fn list_rules(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiQuery(p): ApiQuery<CursorPageParams>,
) -> ApiResult<Json<RulePage>> {
    let limit = check_limit(&state.limits, p.limit)?;
    let cursor = p
        .cursor
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .map(|(created_at, id)| sharing::Cursor { created_at, id });
    let op = Op::new(
        "sharing.rule.list",
        Resource::Federated,
        Permission::Read,
        "*",
    );
    let mut rows = run(&state, &ctx, op, |tx| {
        Box::pin(async move {
            require_federating(tx).await?;
            Ok(sharing::list(tx, cursor, limit + 1).await?)
        })
    })
    .await?;
    let next = next_page(&mut rows, limit, |r| (r.created_at, r.id));
    Ok(Json(RulePage {
        rules: rows.into_iter().map(Into::into).collect(),
        next_cursor: next,
    }))
}

#[utoipa::path(get, path = "/v1/sharing-rules/{id}", tag = "sharing", params(("id" = Uuid, Path)),
    responses((status = 200, body = RuleOut), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn get_rule(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<RuleOut>> {
    let op = Op::new(
        "sharing.rule.get",
        Resource::Federated,
        Permission::Read,
        id.to_string(),
    );
    Ok(Json(
        run(&state, &ctx, op, |tx| {
            Box::pin(async move {
                require_federating(tx).await?;
                Ok(sharing::get(tx, id).await?.into())
            })
        })
        .await?,
    ))
}

/// Changes to a rule; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulePatchInput {
    pub conditions: Option<Conditions>,
    pub anonymization: Option<RedactionProfile>,
    pub reveal_source: Option<bool>,
    /// False revokes the rule (from the next request on) without deleting it.
    pub is_active: Option<bool>,
    /// A future time, or null for none.
    #[serde(default, deserialize_with = "nullable")]
    pub expires_at: Option<Option<DateTime<Utc>>>,
}

#[utoipa::path(patch, path = "/v1/sharing-rules/{id}", tag = "sharing", params(("id" = Uuid, Path)),
    request_body = RulePatchInput,
    responses((status = 200, body = RuleOut), (status = 404, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn update_rule(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(p): ApiJson<RulePatchInput>,
) -> ApiResult<Json<RuleOut>> {
    if p.conditions.is_none()
        && p.anonymization.is_none()
        && p.reveal_source.is_none()
        && p.is_active.is_none()
        && p.expires_at.is_none()
    {
        return Err(ApiError::unprocessable(
            "the patch changes nothing: send at least one field",
        ));
    }
    let patch = RulePatch {
        conditions: p
            .conditions
            .map(|c| check_conditions(c, &state))
            .transpose()?,
        anonymization: p
            .anonymization
            .map(|a| check_profile(Some(a)))
            .transpose()?,
        reveal_source: p.reveal_source,
        is_active: p.is_active,
        expires_at: p.expires_at.map(check_expiry).transpose()?,
    };
    let op = Op::new(
        "sharing.rule.update",
        Resource::Federated,
        Permission::Write,
        id.to_string(),
    );
    Ok(Json(
        run(&state, &ctx, op, |tx| {
            Box::pin(async move {
                require_federating(tx).await?;
                Ok(sharing::update(tx, id, patch).await?.into())
            })
        })
        .await?,
    ))
}

#[utoipa::path(delete, path = "/v1/sharing-rules/{id}", tag = "sharing", params(("id" = Uuid, Path)),
    responses((status = 204, description = "deleted: nothing is shared by it from the next request on"),
              (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn delete_rule(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let op = Op::new(
        "sharing.rule.delete",
        Resource::Federated,
        Permission::Delete,
        id.to_string(),
    )
    .no_content();
    run(&state, &ctx, op, |tx| {
        Box::pin(async move {
            // A strict tenant may still delete its old rules (they apply to nothing anyway).
            Ok(sharing::delete(tx, id).await?)
        })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where a shared search hit comes from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SharedFrom {
    /// The sharing rule that exposes it.
    pub rule_id: Uuid,
    /// The owner's public tenant id, only when its rule reveals it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_tenant_id: Option<String>,
}

/// What sharing rules add to a search: vector hits (score: cosine distance) and text hits (score:
/// text rank), anonymized, keyed by a handle that stands for the memory.
#[derive(Debug, Default)]
pub struct SharedHits {
    pub vector: Vec<Hit>,
    pub text: Vec<Hit>,
    pub sources: HashMap<Uuid, SharedFrom>,
}

fn anonymized(m: &SharedMemory, r: &Redactor) -> Memory {
    Memory {
        id: m.handle,
        memory_id: format!("shared-{}", m.handle.simple()),
        relevance_score: m.relevance_score,
        content: sqlx::types::Json(r.json(&m.content.0)),
        tags: m.tags.iter().map(|t| r.text(t).into_owned()).collect(),
        metadata: sqlx::types::Json(r.json(&m.metadata.0)),
        embedding: None,
        has_embedding: m.has_embedding,
        embedding_model: m.embedding_model.clone(),
        expires_at: m.expires_at,
        created_at: m.created_at,
        updated_at: m.updated_at,
    }
}

/// The hits that other tenants' sharing rules give the current tenant for a search (refusing a
/// strict tenant), anonymized by each rule's profile. A hit whose profile cannot be applied is
/// left out rather than shown as stored.
pub async fn shared_hits(
    tx: &mut TenantTx,
    vector: Option<&[f32]>,
    query: Option<&str>,
    k: i64,
    filter: &MemoryFilter,
    request_id: Option<&str>,
) -> ApiResult<SharedHits> {
    require_federating(tx).await?;
    let rows = sharing::shared_memories(tx, vector, query, k, filter, request_id).await?;
    let mut profiles: HashMap<Uuid, Option<Redactor>> = HashMap::new();
    let mut out = SharedHits::default();
    for m in rows {
        let redactor = profiles.entry(m.rule_id).or_insert_with(|| {
            serde_json::from_value::<RedactionProfile>(m.anonymization.0.clone())
                .ok()
                .and_then(|p| p.compile().ok())
        });
        let Some(redactor) = redactor.as_ref() else {
            tracing::error!(rule = %m.rule_id, "a sharing rule's anonymization profile is unusable; its hits are left out");
            continue;
        };
        let memory = anonymized(&m, redactor);
        out.sources.insert(
            m.handle,
            SharedFrom {
                rule_id: m.rule_id,
                source_tenant_id: m.source_tenant.clone(),
            },
        );
        if let Some(d) = m.distance {
            out.vector.push(Hit {
                memory: memory.clone(),
                score: d,
            });
        }
        if let Some(r) = m.text_rank {
            out.text.push(Hit { memory, score: r });
        }
    }
    out.vector.sort_by(|a, b| a.score.total_cmp(&b.score));
    out.text.sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(out)
}

/// Own hits and shared hits in one ranking of at most `k`: ascending `score` for vector hits
/// (distance), descending for text hits (rank).
pub fn merge(own: &mut Vec<Hit>, shared: Vec<Hit>, k: i64, ascending: bool) {
    own.extend(shared);
    own.sort_by(|a, b| {
        let o = a.score.total_cmp(&b.score);
        (if ascending { o } else { o.reverse() })
            .then_with(|| a.memory.memory_id.cmp(&b.memory.memory_id))
    });
    own.truncate(usize::try_from(k).unwrap_or(usize::MAX));
}
