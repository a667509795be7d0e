//! `/v1/federated/sessions`: sessions of the key's tenant's project. Create, list, get, join,
//! leave, cancel, and read the insights of a session the tenant contributed to.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use mnemo_core::federated::accounting::{SessionPlan, Split};
use mnemo_core::federated::aggregate::{aggregate, Bounds, Participant};
use mnemo_core::federated::extract::{DEFAULT_LABEL_FIELDS, DEFAULT_LESSON_FIELDS};
use mnemo_core::federated::lifecycle::{transition, SessionEvent};
use mnemo_core::federated::reputation::ReputationParams;
use mnemo_core::{
    AggregationMethod, Invalid, Permission, PrivacyLevel, Resource, SessionStatus, Tags,
};
use mnemo_store::federated::contributions::{self, TopicFilter, TopicSpec};
use mnemo_store::federated::participants;
use mnemo_store::federated::sessions::{self, Membership, NewSession, Session};
use mnemo_store::{StoreError, TenantTx};

use super::{level_rank, require_federating, Robustness, SecureOptions, SessionRule};
use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::ops::{authorize, run, Op};
use crate::routes::memories::{build_filter, check_limit, decode_cursor, next_page};
use crate::routes::search::SearchFilter;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_session, list_sessions))
        .routes(routes!(get_session))
        .routes(routes!(join_session))
        .routes(routes!(leave_session))
        .routes(routes!(cancel_session))
        .routes(routes!(session_insights))
}

/// Memories one participant contributes from, at most (and by default).
pub const MAX_TOPIC_MEMORIES: i64 = 1000;
pub const DEFAULT_TOPIC_MEMORIES: i64 = 100;
/// Forming or active sessions one tenant may have initiated at a time.
pub const MAX_OPEN_SESSIONS: i64 = 100;
/// How far ahead a deadline may lie.
pub const MAX_DEADLINE_DAYS: i64 = 90;
/// Participants of one session at most.
pub const MAX_PARTICIPANTS: i32 = 10_000;

/// Which of a participant's memories a session learns from: at least one of `query`, `tags`,
/// `filter`. Only memories with an embedding take part.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicInput {
    /// Memories near this text (its embedding, computed once by the server), nearest first.
    pub query: Option<String>,
    /// Memories with all these tags.
    pub tags: Option<Vec<String>>,
    /// Conditions as in search (`contains`, `tags`, `any_tags`, relevance, creation time).
    pub filter: Option<SearchFilter>,
    /// Memories per participant, 1 to 1,000 (default 100).
    pub max_memories: Option<i64>,
    /// With `query`: leave out memories less similar than this (cosine, −1 to 1).
    pub min_similarity: Option<f64>,
    /// Top-level fields of content (or metadata) counted as labels; default `outcome`,
    /// `taskType`. At most 8.
    pub label_fields: Option<Vec<String>>,
    /// Fields holding a lesson or a list of lessons; default `lessons`, `lesson`. At most 8.
    pub lesson_fields: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionInput {
    /// Unique within the project; generated (`fs_…`) when absent. Letters, digits, `.`, `_`,
    /// `:`, `-`; at most 255.
    pub session_id: Option<String>,
    pub topic: TopicInput,
    pub description: Option<String>,
    pub aggregation_method: AggregationMethod,
    /// The session's level: tenants registered at this level or a weaker one may join.
    pub privacy_level: PrivacyLevel,
    /// 2 to 1,000 (default 3); the aggregation rule must work with this many.
    pub min_participants: Option<i32>,
    pub max_participants: Option<i32>,
    /// The whole release is (ε, δ)-DP for each participant: ε in (0, 10]. Required unless
    /// `basic`, which adds no noise and takes none.
    pub epsilon: Option<f64>,
    /// In (0, 1e-5]; default 1e-8.
    pub delta: Option<f64>,
    /// In the future, at most 90 days ahead. A session still forming or active then fails.
    pub deadline: DateTime<Utc>,
    /// `consensus` and `hybrid` only.
    pub robustness: Option<Robustness>,
    /// `secure` only.
    pub secure: Option<SecureOptions>,
}

/// What each contributor's ledger is charged by a release.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChargeOut {
    pub rho: f64,
    pub delta: f64,
}

/// A session as the tenants of its project see it. It never names a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOut {
    pub session_id: String,
    pub topic: TopicSpec,
    pub description: Option<String>,
    pub status: String,
    /// cancelled, too_few_participants, deadline_passed, budget_exhausted, aggregation_refused.
    pub failure_reason: Option<String>,
    pub aggregation_method: String,
    pub privacy_level: String,
    pub rule: SessionRule,
    pub min_participants: i32,
    pub max_participants: Option<i32>,
    /// Joined members (while open), or contributors (once completed).
    pub participant_count: i32,
    pub epsilon: Option<f64>,
    pub delta: Option<f64>,
    pub charge: Option<ChargeOut>,
    pub deadline: DateTime<Utc>,
    pub initiated_by_you: bool,
    /// The key's tenant's part in it, if it joined.
    pub membership: Option<Membership>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl SessionOut {
    pub fn new(s: Session, me: Uuid, membership: Option<Membership>) -> Self {
        let noisy = s.plan_rho.is_some();
        Self {
            topic: serde_json::from_value(s.topic_spec.0).unwrap_or_default(),
            rule: serde_json::from_value(s.rule.0).unwrap_or(SessionRule {
                robustness: None,
                secure: None,
            }),
            charge: s
                .plan_rho
                .zip(s.plan_delta)
                .map(|(rho, delta)| ChargeOut { rho, delta }),
            epsilon: noisy.then_some(s.privacy_epsilon),
            delta: noisy.then_some(s.privacy_delta),
            initiated_by_you: s.initiator_tenant_id == me,
            membership,
            session_id: s.session_id,
            description: s.description,
            status: s.status,
            failure_reason: s.failure_reason,
            aggregation_method: s.aggregation_method,
            privacy_level: s.privacy_level,
            min_participants: s.min_participants,
            max_participants: s.max_participants,
            participant_count: s.participant_count,
            deadline: s.deadline,
            created_at: s.created_at,
            started_at: s.started_at,
            completed_at: s.completed_at,
        }
    }
}

/// The session and the current tenant's membership of it, as the answer shows them.
pub async fn session_out(tx: &mut TenantTx, session_id: &str) -> ApiResult<SessionOut> {
    let s = sessions::get(tx, session_id).await?;
    let m = sessions::membership(tx, s.id).await?;
    Ok(SessionOut::new(s, tx.tenant_id(), m))
}

fn check_session_id(s: &str) -> Result<(), Invalid> {
    let ok = !s.is_empty()
        && s.len() <= 255
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            "session_id",
            "must be 1 to 255 characters: a letter or digit, then letters, digits, '.', '_', ':' or '-'",
        ))
    }
}

fn check_fields(
    field: &str,
    v: Option<Vec<String>>,
    default: &[&str],
) -> Result<Vec<String>, Invalid> {
    let v = v.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
    if v.len() > 8
        || v.iter()
            .any(|f| f.is_empty() || f.chars().count() > 64 || f.chars().any(char::is_control))
    {
        return Err(Invalid::new(
            field,
            "at most 8 field names, each 1 to 64 characters without control characters",
        ));
    }
    Ok(v)
}

/// The validated topic; the query (if any) still to be embedded.
fn topic_spec(t: TopicInput, state: &AppState) -> Result<TopicSpec, ApiError> {
    if t.query.is_none() && t.tags.is_none() && t.filter.is_none() {
        return Err(Invalid::new("topic", "give at least one of query, tags, filter").into());
    }
    if let Some(q) = &t.query {
        if q.trim().is_empty() || q.chars().count() > 2000 || q.contains('\0') {
            return Err(
                Invalid::new("topic.query", "must be 1 to 2000 characters, not blank").into(),
            );
        }
    }
    let tags = t
        .tags
        .map(|t| Tags::parse("topic.tags", t).map(Tags::into_vec))
        .transpose()?;
    let filter = match t.filter {
        Some(f) => {
            let m = build_filter(
                &state.limits,
                f.contains,
                f.tags,
                f.any_tags,
                f.min_relevance,
                f.max_relevance,
                f.created_after,
                f.created_before,
            )
            .map_err(|e| Invalid::new(format!("topic.filter.{}", e.field), e.message))?;
            TopicFilter {
                contains: m.contains,
                tags: m.tags_all,
                any_tags: m.tags_any,
                min_relevance: m.min_relevance,
                max_relevance: m.max_relevance,
                created_after: m.created_after,
                created_before: m.created_before,
            }
        }
        None => TopicFilter::default(),
    };
    let max_memories = t.max_memories.unwrap_or(DEFAULT_TOPIC_MEMORIES);
    if !(1..=MAX_TOPIC_MEMORIES).contains(&max_memories) {
        return Err(Invalid::new(
            "topic.max_memories",
            format!("must be between 1 and {MAX_TOPIC_MEMORIES}"),
        )
        .into());
    }
    match (t.min_similarity, &t.query) {
        (Some(_), None) => {
            return Err(
                Invalid::new("topic.min_similarity", "applies to a topic with a query").into(),
            )
        }
        (Some(s), Some(_)) if !(-1.0..=1.0).contains(&s) => {
            return Err(Invalid::new("topic.min_similarity", "must be between -1 and 1").into())
        }
        _ => {}
    }
    Ok(TopicSpec {
        query: t.query,
        tags,
        filter,
        max_memories,
        min_similarity: t.min_similarity,
        label_fields: check_fields("topic.label_fields", t.label_fields, DEFAULT_LABEL_FIELDS)?,
        lesson_fields: check_fields(
            "topic.lesson_fields",
            t.lesson_fields,
            DEFAULT_LESSON_FIELDS,
        )?,
    })
}

/// The human-readable topic stored in the seed's `topic` column.
fn topic_text(t: &TopicSpec) -> String {
    let text = match (&t.query, &t.tags) {
        (Some(q), _) => q.trim().to_owned(),
        (None, Some(tags)) => format!("tags: {}", tags.join(", ")),
        (None, None) => "filtered memories".to_owned(),
    };
    text.chars().take(500).collect()
}

/// Refuses a rule that cannot aggregate `n` participants (e.g. a trimmed mean with β = 0.2 that
/// must tolerate one poisoned tenant needs ⌊0.2·n⌋ ≥ 1, so n ≥ 5). For larger n it only gets
/// easier: the trimmed count never shrinks as n grows.
fn check_rule_fits(rule: &SessionRule, method: AggregationMethod, n: i32) -> Result<(), Invalid> {
    let zero = [0.0];
    let parts: Vec<Participant<'_>> = (0..n)
        .map(|_| Participant {
            vector: &zero,
            size: 1,
            reputation: 0.5,
        })
        .collect();
    aggregate(&parts, &rule.rule(method), &Bounds::default())
        .map(|_| ())
        .map_err(|e| {
            Invalid::new(
                "min_participants",
                format!("the aggregation rule cannot work with {n} participants: {e}; raise min_participants or lower robustness.byzantine"),
            )
        })
}

#[utoipa::path(post, path = "/v1/federated/sessions", tag = "federated", request_body = SessionInput,
    responses((status = 201, body = SessionOut), (status = 403, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn create_session(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(input): ApiJson<SessionInput>,
) -> ApiResult<(StatusCode, Json<SessionOut>)> {
    let session_id = match input.session_id {
        Some(id) => {
            check_session_id(&id)?;
            id
        }
        None => format!("fs_{}", Uuid::new_v4().simple()),
    };
    let topic = topic_spec(input.topic, &state)?;
    if let Some(d) = &input.description {
        if d.chars().count() > 10_000 || d.contains('\0') {
            return Err(Invalid::new(
                "description",
                "must be at most 10000 characters without NUL",
            )
            .into());
        }
    }
    let method = input.aggregation_method;
    let level = input.privacy_level;
    let min = input.min_participants.unwrap_or(3);
    if !(2..=1000).contains(&min) {
        return Err(Invalid::new("min_participants", "must be between 2 and 1000").into());
    }
    if let Some(max) = input.max_participants {
        if max < min || max > MAX_PARTICIPANTS {
            return Err(Invalid::new(
                "max_participants",
                format!("must be at least min_participants and at most {MAX_PARTICIPANTS}"),
            )
            .into());
        }
    }
    let (epsilon, delta, plan) = match level {
        PrivacyLevel::Basic => {
            if input.epsilon.is_some() || input.delta.is_some() {
                return Err(Invalid::new(
                    "epsilon",
                    "basic sessions add no noise and spend no budget: leave epsilon and delta out",
                )
                .into());
            }
            (1.0, SessionPlan::DEFAULT_DELTA, None)
        }
        _ => {
            let eps = input.epsilon.ok_or_else(|| {
                Invalid::new("epsilon", "differential and secure sessions need epsilon")
            })?;
            let delta = input.delta.unwrap_or(SessionPlan::DEFAULT_DELTA);
            let plan = SessionPlan::new(eps, delta, Split::default())?;
            (eps, delta, Some(plan))
        }
    };
    let now = Utc::now();
    if input.deadline <= now || input.deadline > now + Duration::days(MAX_DEADLINE_DAYS) {
        return Err(Invalid::new(
            "deadline",
            format!("must be in the future, at most {MAX_DEADLINE_DAYS} days ahead"),
        )
        .into());
    }
    let rule = SessionRule::resolve(method, level, input.robustness, input.secure)?;
    check_rule_fits(&rule, method, min)?;

    let op = Op::new(
        "federated.session.create",
        Resource::Federated,
        Permission::Write,
        session_id.clone(),
    )
    .created();
    let embedding = match &topic.query {
        Some(q) => {
            let embedder = state.embedder.as_ref().ok_or_else(|| {
                ApiError::unprocessable(
                    "no embedder is configured: give the topic tags or a filter instead of a query",
                )
                .with_details(serde_json::json!({ "field": "topic.query" }))
            })?;
            authorize(&state, &ctx, &op).await?;
            let mut v = embedder.embed(vec![q.clone()]).await?;
            Some(
                v.pop()
                    .ok_or_else(|| ApiError::internal("the embedder returned no vector"))?,
            )
        }
        None => None,
    };
    let new = NewSession {
        session_id,
        topic: topic_text(&topic),
        description: input.description,
        topic_spec: serde_json::to_value(&topic).unwrap_or(Value::Null),
        topic_embedding: embedding,
        method,
        level,
        min_participants: min,
        max_participants: input.max_participants,
        epsilon,
        delta,
        charge: plan.map(|p| {
            let c = p.charge();
            (c.rho, c.delta)
        }),
        rule: serde_json::to_value(&rule).unwrap_or(Value::Null),
        deadline: input.deadline,
    };
    let out = run(&state, &ctx, op, |tx| {
        Box::pin(async move {
            require_federating(tx).await?;
            let me = participants::get(tx).await.map_err(|e| match e {
                StoreError::NotFound(_) => not_registered(),
                e => e.into(),
            })?;
            if !me.is_active {
                return Err(not_registered());
            }
            if sessions::open_initiated(tx).await? >= MAX_OPEN_SESSIONS {
                return Err(StoreError::Quota(format!(
                    "a tenant may have at most {MAX_OPEN_SESSIONS} forming or active sessions it initiated"
                ))
                .into());
            }
            let s = sessions::create(tx, new).await?;
            Ok(SessionOut::new(s, tx.tenant_id(), None))
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

fn not_registered() -> ApiError {
    ApiError::forbidden(
        "not_a_participant",
        "register first: POST /v1/federated/participant (or register again after a withdrawal)",
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionListParams {
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// forming, active, aggregating, completed or failed.
    #[param(value_type = Option<String>)]
    pub status: Option<SessionStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionPage {
    /// Newest first.
    pub sessions: Vec<SessionOut>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/federated/sessions", tag = "federated", params(SessionListParams),
    responses((status = 200, body = SessionPage), (status = 403, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn list_sessions(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiQuery(p): ApiQuery<SessionListParams>,
) -> ApiResult<Json<SessionPage>> {
    let limit = check_limit(&state.limits, p.limit)?;
    let cursor = p
        .cursor
        .as_deref()
        .map(decode_cursor)
        .transpose()?
        .map(|(created_at, id)| sessions::Cursor { created_at, id });
    let op = Op::new(
        "federated.session.list",
        Resource::Federated,
        Permission::Read,
        "*",
    );
    let (mut rows, mut mine) = run(&state, &ctx, op, |tx| {
        Box::pin(async move {
            require_federating(tx).await?;
            let rows = sessions::list(tx, p.status, cursor, limit + 1).await?;
            let ids: Vec<Uuid> = rows.iter().map(|s| s.id).collect();
            let mine = sessions::memberships(tx, &ids).await?;
            Ok((rows, mine))
        })
    })
    .await?;
    let next = next_page(&mut rows, limit, |s| (s.created_at, s.id));
    let me = ctx.key.scope.tenant_id();
    Ok(Json(SessionPage {
        sessions: rows
            .into_iter()
            .map(|s| {
                let m = mine.remove(&s.id);
                SessionOut::new(s, me, m)
            })
            .collect(),
        next_cursor: next,
    }))
}

fn session_op(action: &'static str, permission: Permission, id: &str) -> Op {
    Op::new(action, Resource::Federated, permission, id)
}

#[utoipa::path(get, path = "/v1/federated/sessions/{session_id}", tag = "federated",
    params(("session_id" = String, Path)),
    responses((status = 200, body = SessionOut), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn get_session(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(session_id): ApiPath<String>,
) -> ApiResult<Json<SessionOut>> {
    let op = session_op("federated.session.get", Permission::Read, &session_id);
    Ok(Json(
        run(&state, &ctx, op, |tx| {
            Box::pin(async move {
                require_federating(tx).await?;
                session_out(tx, &session_id).await
            })
        })
        .await?,
    ))
}

/// 409 for a session that takes no more joins or leaves.
fn closed(s: &Session, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "session_closed",
        format!("a session that is {} cannot be {what}", s.status),
    )
}

fn deadline_passed(s: &Session) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "session_deadline_passed",
        format!(
            "the session's deadline ({}) has passed",
            s.deadline.to_rfc3339()
        ),
    )
}

#[utoipa::path(post, path = "/v1/federated/sessions/{session_id}/join", tag = "federated",
    params(("session_id" = String, Path)),
    responses((status = 200, description = "joined; the contribution is computed from the tenant's own memories matching the topic", body = SessionOut),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn join_session(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(session_id): ApiPath<String>,
) -> ApiResult<Json<SessionOut>> {
    let op = session_op("federated.session.join", Permission::Write, &session_id);
    Ok(Json(
        run(&state, &ctx, op, |tx| {
            Box::pin(async move {
                require_federating(tx).await?;
                let me = participants::get(tx).await.map_err(|e| match e {
                    StoreError::NotFound(_) => not_registered(),
                    e => e.into(),
                })?;
                if !me.is_active {
                    return Err(not_registered());
                }
                let s = sessions::lock(tx, &session_id).await?;
                let status = s.status()?;
                if !matches!(status, SessionStatus::Forming | SessionStatus::Active) {
                    return Err(closed(&s, "joined"));
                }
                if s.deadline <= Utc::now() {
                    return Err(deadline_passed(&s));
                }
                let mine = me.level()?;
                if level_rank(s.level()?) < level_rank(mine) {
                    return Err(ApiError::forbidden(
                        "privacy_level_too_weak",
                        format!(
                            "this tenant registered at privacy level {mine}; it joins sessions at that level or a stronger one, and this one is {}",
                            s.privacy_level
                        ),
                    ));
                }
                if let Some(m) = sessions::membership(tx, s.id).await? {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "already_member",
                        format!("this tenant is already in this session ({})", m.status),
                    ));
                }
                if s.max_participants.is_some_and(|max| s.participant_count >= max) {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "session_full",
                        "the session has its maximum number of participants",
                    ));
                }
                let topic: TopicSpec = serde_json::from_value(s.topic_spec.0.clone())
                    .map_err(|e| ApiError::internal(format!("stored topic unreadable: {e}")))?;
                let embedding = contributions::topic_embedding(tx, s.id).await?;
                let Some(c) = contributions::compute(tx, &topic, embedding.as_deref()).await? else {
                    return Err(ApiError::unprocessable(
                        "none of this tenant's memories (with an embedding) matches the session's topic: nothing to contribute",
                    )
                    .with_details(serde_json::json!({ "code": "no_matching_memories" })));
                };
                sessions::insert_membership(tx, s.id).await?;
                contributions::insert(tx, s.id, &c).await?;
                sessions::members_changed(tx, s.id).await?;
                session_out(tx, &session_id).await
            })
        })
        .await?,
    ))
}

#[utoipa::path(post, path = "/v1/federated/sessions/{session_id}/leave", tag = "federated",
    params(("session_id" = String, Path)),
    responses((status = 200, description = "left; the contribution is deleted (counts as an abandoned session in the reputation)", body = SessionOut),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn leave_session(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(session_id): ApiPath<String>,
) -> ApiResult<Json<SessionOut>> {
    let op = session_op("federated.session.leave", Permission::Write, &session_id);
    Ok(Json(
        run(&state, &ctx, op, |tx| {
            Box::pin(async move {
                require_federating(tx).await?;
                let s = sessions::lock(tx, &session_id).await?;
                let joined = sessions::membership(tx, s.id)
                    .await?
                    .is_some_and(|m| m.status == "joined");
                if !joined {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "not_a_member",
                        "this tenant is not a member of this session",
                    ));
                }
                if !matches!(s.status()?, SessionStatus::Forming | SessionStatus::Active) {
                    return Err(closed(&s, "left"));
                }
                sessions::leave(tx, s.id).await?;
                participants::record_abandoned(tx, &ReputationParams::default()).await?;
                sessions::members_changed(tx, s.id).await?;
                session_out(tx, &session_id).await
            })
        })
        .await?,
    ))
}

/// 403 for a tenant that is not the session's initiator.
pub fn not_initiator(what: &str) -> ApiError {
    ApiError::forbidden(
        "not_initiator",
        format!("only the tenant that initiated the session may {what} it"),
    )
}

/// 409 for an event the session's status does not allow (mnemo_core's lifecycle).
pub fn illegal(e: mnemo_core::federated::lifecycle::IllegalTransition) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "illegal_transition", e.to_string())
}

#[utoipa::path(post, path = "/v1/federated/sessions/{session_id}/cancel", tag = "federated",
    params(("session_id" = String, Path)),
    responses((status = 200, description = "failed with reason cancelled; contributions deleted", body = SessionOut),
              (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
              (status = 409, description = "the session's status does not allow it", body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn cancel_session(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(session_id): ApiPath<String>,
) -> ApiResult<Json<SessionOut>> {
    let op = session_op("federated.session.cancel", Permission::Write, &session_id);
    Ok(Json(
        run(&state, &ctx, op, |tx| {
            Box::pin(async move {
                require_federating(tx).await?;
                let s = sessions::lock(tx, &session_id).await?;
                if s.initiator_tenant_id != tx.tenant_id() {
                    return Err(not_initiator("cancel"));
                }
                let next = transition(s.status()?, SessionEvent::Cancel).map_err(illegal)?;
                let reason = next.reason.map_or("cancelled", |r| r.as_str());
                sessions::fail(tx, s.id, reason, &[]).await?;
                session_out(tx, &session_id).await
            })
        })
        .await?,
    ))
}

/// An insight as its contributors read it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InsightOut {
    pub method: Option<String>,
    pub privacy_level: Option<String>,
    /// Contributors whose contributions are in it.
    pub participants: i32,
    /// Members excluded at aggregation (e.g. their budget could not pay).
    pub excluded: i32,
    /// Estimated share of the released centroid's energy that is signal rather than noise.
    pub confidence: f64,
    /// The release is (ε, δ)-DP for each contributor; absent at `basic`.
    pub epsilon: Option<f64>,
    pub delta: Option<f64>,
    /// zCDP ρ charged to each contributor's ledger.
    pub rho: Option<f64>,
    /// σ of the Gaussian noise on each coordinate of the centroid.
    pub noise_scale: Option<f64>,
    /// σ·√d: the L2 error the noise is expected to add to the centroid (a centroid of unit
    /// embeddings has norm at most 1).
    pub expected_error: Option<f64>,
    /// The sensitivity of the rule used and its derivation.
    #[schema(value_type = Option<Object>)]
    pub sensitivity: Option<Value>,
    /// The released insight: centroid, label counts, lessons, the full privacy statement.
    #[schema(value_type = Object)]
    pub content: Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InsightsOut {
    pub session_id: String,
    pub status: String,
    pub insights: Vec<InsightOut>,
}

#[utoipa::path(get, path = "/v1/federated/sessions/{session_id}/insights", tag = "federated",
    params(("session_id" = String, Path)),
    responses((status = 200, description = "the session's releases (none yet while it is open)", body = InsightsOut),
              (status = 403, description = "the tenant's contribution is not in the session", body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn session_insights(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(session_id): ApiPath<String>,
) -> ApiResult<Json<InsightsOut>> {
    let op = session_op("federated.session.insights", Permission::Read, &session_id);
    Ok(Json(
        run(&state, &ctx, op, |tx| {
            Box::pin(async move {
                require_federating(tx).await?;
                let s = sessions::get(tx, &session_id).await?;
                let m = sessions::membership(tx, s.id).await?;
                match m.as_ref().map(|m| m.status.as_str()) {
                    Some("contributed") | Some("joined") => {}
                    _ => return Err(ApiError::forbidden(
                        "not_a_contributor",
                        "insights are readable only by the tenants whose contribution is in them",
                    )),
                }
                let rows = sessions::insights(tx, s.id).await?;
                Ok(InsightsOut {
                    insights: rows
                        .into_iter()
                        .map(|r| InsightOut {
                            method: r.method,
                            privacy_level: r.privacy_level,
                            participants: r.participant_count,
                            excluded: r.excluded_count,
                            confidence: r.confidence_score,
                            epsilon: r.epsilon,
                            delta: r.delta,
                            rho: r.rho,
                            noise_scale: r.noise_scale,
                            expected_error: r.expected_error,
                            sensitivity: r.sensitivity.map(|j| j.0),
                            content: r.content.0,
                            created_at: r.created_at,
                        })
                        .collect(),
                    session_id: s.session_id,
                    status: s.status,
                })
            })
        })
        .await?,
    ))
}
