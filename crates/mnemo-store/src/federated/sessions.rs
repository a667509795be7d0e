//! Sessions of the current tenant's project (`federated_sessions`, visible through Row Level
//! Security to the project's tenants), the tenant's memberships, the insights it may read, and the
//! job that fails sessions past their deadline.

use chrono::{DateTime, Utc};
use pgvector::Vector;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::FromRow;
use uuid::Uuid;

use mnemo_core::federated::lifecycle::{transition, SessionEvent};
use mnemo_core::{AggregationMethod, PrivacyLevel, SessionStatus};

use crate::{Result, Store, StoreError, TenantTx};

fn parse<T: std::str::FromStr<Err = mnemo_core::Invalid>>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|e: mnemo_core::Invalid| StoreError::Invalid { message: e.message })
}

/// A session as stored.
#[derive(Debug, Clone, FromRow)]
pub struct Session {
    pub id: Uuid,
    pub session_id: String,
    pub topic: String,
    pub description: Option<String>,
    pub status: String,
    pub failure_reason: Option<String>,
    pub initiator_tenant_id: Uuid,
    pub aggregation_method: String,
    pub privacy_level: String,
    pub min_participants: i32,
    pub max_participants: Option<i32>,
    pub privacy_epsilon: f64,
    pub privacy_delta: f64,
    pub plan_rho: Option<f64>,
    pub plan_delta: Option<f64>,
    pub rule: Json<Value>,
    pub topic_spec: Json<Value>,
    pub deadline: DateTime<Utc>,
    pub participant_count: i32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Session {
    pub fn status(&self) -> Result<SessionStatus> {
        parse(&self.status)
    }
    pub fn method(&self) -> Result<AggregationMethod> {
        parse(&self.aggregation_method)
    }
    pub fn level(&self) -> Result<PrivacyLevel> {
        parse(&self.privacy_level)
    }
}

const COLUMNS: &str = "s.id, s.session_id, s.topic, s.description, s.status::text AS status,
    s.failure_reason, s.initiator_tenant_id, s.aggregation_method::text AS aggregation_method,
    s.privacy_level::text AS privacy_level, s.min_participants, s.max_participants, s.privacy_epsilon,
    s.privacy_delta, s.plan_rho, s.plan_delta, s.rule, s.topic_spec, s.deadline, s.participant_count,
    s.created_at, s.started_at, s.completed_at";

/// A session to create (values validated by the caller).
#[derive(Debug, Clone)]
pub struct NewSession {
    pub session_id: String,
    pub topic: String,
    pub description: Option<String>,
    pub topic_spec: Value,
    pub topic_embedding: Option<Vec<f32>>,
    pub method: AggregationMethod,
    pub level: PrivacyLevel,
    pub min_participants: i32,
    pub max_participants: Option<i32>,
    pub epsilon: f64,
    pub delta: f64,
    /// What each contributor is charged (`None` at `basic`).
    pub charge: Option<(f64, f64)>,
    pub rule: Value,
    pub deadline: DateTime<Utc>,
}

/// Creates a session of the current tenant's project, initiated by it (`forming`).
pub async fn create(tx: &mut TenantTx, s: NewSession) -> Result<Session> {
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO federated_sessions
            (session_id, topic, description, initiator_tenant_id, aggregation_method, privacy_level,
             min_participants, max_participants, privacy_epsilon, privacy_delta, plan_rho, plan_delta,
             rule, topic_spec, topic_embedding, deadline)
         VALUES ($1, $2, $3, $4, $5::aggregation_method, $6::privacy_level, $7, $8, $9, $10, $11, $12,
                 $13, $14, $15, $16)
         RETURNING id",
    )
    .bind(&s.session_id)
    .bind(&s.topic)
    .bind(&s.description)
    .bind(tx.tenant_id())
    .bind(s.method.as_str())
    .bind(s.level.as_str())
    .bind(s.min_participants)
    .bind(s.max_participants)
    .bind(s.epsilon)
    .bind(s.delta)
    .bind(s.charge.map(|c| c.0))
    .bind(s.charge.map(|c| c.1))
    .bind(Json(&s.rule))
    .bind(Json(&s.topic_spec))
    .bind(s.topic_embedding.map(Vector::from))
    .bind(s.deadline)
    .fetch_one(&mut **tx)
    .await?;
    by_id(tx, id).await
}

async fn by_id(tx: &mut TenantTx, id: Uuid) -> Result<Session> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM federated_sessions s WHERE s.id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("session"))
}

/// The session of the current tenant's project with this `session_id`.
pub async fn get(tx: &mut TenantTx, session_id: &str) -> Result<Session> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM federated_sessions s
         WHERE s.project_id = mnemo_current_project() AND s.session_id = $1"
    ))
    .bind(session_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("session"))
}

/// The session with this `session_id`, locked until the transaction ends (joins, leaves and the
/// aggregation of one session take turns).
pub async fn lock(tx: &mut TenantTx, session_id: &str) -> Result<Session> {
    let id = get(tx, session_id).await?.id;
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM mnemo_fed_lock_session($1) s"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("session"))
}

/// Position after the last session of a page: newest first.
#[derive(Debug, Clone, Copy)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// One page of the project's sessions, newest first, optionally of one status.
pub async fn list(
    tx: &mut TenantTx,
    status: Option<SessionStatus>,
    cursor: Option<Cursor>,
    limit: i64,
) -> Result<Vec<Session>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM federated_sessions s
         WHERE s.project_id = mnemo_current_project()
           AND ($1::text IS NULL OR s.status::text = $1)
           AND ($2::timestamptz IS NULL OR (s.created_at, s.id) < ($2, $3))
         ORDER BY s.created_at DESC, s.id DESC LIMIT $4"
    ))
    .bind(status.map(|s| s.as_str()))
    .bind(cursor.map(|c| c.created_at))
    .bind(cursor.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// How many sessions the current tenant initiated that are still forming or active.
pub async fn open_initiated(tx: &mut TenantTx) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM federated_sessions
         WHERE initiator_tenant_id = $1 AND status IN ('forming', 'active')",
    )
    .bind(tx.tenant_id())
    .fetch_one(&mut **tx)
    .await?)
}

/// The current tenant's part in a session.
#[derive(Debug, Clone, FromRow, serde::Serialize, utoipa::ToSchema)]
pub struct Membership {
    /// joined, contributed, excluded, left or ended.
    pub status: String,
    /// Why it was excluded, or why the session ended.
    pub reason: Option<String>,
    /// Agreement of its contribution with the released aggregate (what its reputation took).
    pub agreement: Option<f64>,
    pub joined_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

pub async fn membership(tx: &mut TenantTx, session: Uuid) -> Result<Option<Membership>> {
    Ok(sqlx::query_as(
        "SELECT status, reason, agreement, joined_at, ended_at FROM federated_memberships
         WHERE tenant_id = $1 AND session_id = $2",
    )
    .bind(tx.tenant_id())
    .bind(session)
    .fetch_optional(&mut **tx)
    .await?)
}

/// The current tenant's memberships of these sessions, by session.
pub async fn memberships(
    tx: &mut TenantTx,
    sessions: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Membership>> {
    #[derive(FromRow)]
    struct Row {
        session_id: Uuid,
        #[sqlx(flatten)]
        m: Membership,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT session_id, status, reason, agreement, joined_at, ended_at FROM federated_memberships
         WHERE tenant_id = $1 AND session_id = ANY($2)",
    )
    .bind(tx.tenant_id())
    .bind(sessions)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().map(|r| (r.session_id, r.m)).collect())
}

/// Records that the current tenant joined the (locked) session.
pub async fn insert_membership(tx: &mut TenantTx, session: Uuid) -> Result<()> {
    sqlx::query("INSERT INTO federated_memberships (tenant_id, session_id) VALUES ($1, $2)")
        .bind(tx.tenant_id())
        .bind(session)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records that the current tenant left the session and deletes its contribution.
pub async fn leave(tx: &mut TenantTx, session: Uuid) -> Result<()> {
    sqlx::query("DELETE FROM federated_contributions WHERE tenant_id = $1 AND session_id = $2")
        .bind(tx.tenant_id())
        .bind(session)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE federated_memberships SET status = 'left', ended_at = now()
         WHERE tenant_id = $1 AND session_id = $2 AND status = 'joined'",
    )
    .bind(tx.tenant_id())
    .bind(session)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What a join or a leave did to its session.
#[derive(Debug, Clone, Copy)]
pub struct MembersChanged {
    pub members: i32,
    pub before: SessionStatus,
    pub after: SessionStatus,
}

/// After the current tenant joined or left: the session's joined members recounted and its status
/// moved between forming and active as the count says (`mnemo_fed_members_changed`). A move is
/// checked against the lifecycle: Activate or Deactivate must lead where the database went.
pub async fn members_changed(tx: &mut TenantTx, session: Uuid) -> Result<MembersChanged> {
    let (members, before, after): (i32, String, String) =
        sqlx::query_as("SELECT * FROM mnemo_fed_members_changed($1)")
            .bind(session)
            .fetch_one(&mut **tx)
            .await?;
    let (before, after): (SessionStatus, SessionStatus) = (parse(&before)?, parse(&after)?);
    if before != after {
        let event = if after == SessionStatus::Active {
            SessionEvent::Activate
        } else {
            SessionEvent::Deactivate
        };
        let next = transition(before, event).map_err(|e| StoreError::Invalid {
            message: e.to_string(),
        })?;
        if next.status != after {
            return Err(StoreError::Invalid {
                message: format!(
                    "the session went {before} → {after}, the lifecycle says {}",
                    next.status
                ),
            });
        }
    }
    Ok(MembersChanged {
        members,
        before,
        after,
    })
}

/// The initiator moves its session to `status` (aggregating); the lifecycle trigger checks it.
pub async fn set_status(tx: &mut TenantTx, session: Uuid, status: SessionStatus) -> Result<()> {
    let done = sqlx::query(
        "UPDATE federated_sessions SET status = $2::session_status
         WHERE id = $1 AND initiator_tenant_id = $3",
    )
    .bind(session)
    .bind(status.as_str())
    .bind(tx.tenant_id())
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("session"));
    }
    Ok(())
}

/// The initiator ends its session as failed (cancelled, or refused at aggregation): excluded
/// members get their reasons, the others end, every contribution is deleted.
pub async fn fail(
    tx: &mut TenantTx,
    session: Uuid,
    reason: &str,
    excluded: &[(Uuid, String)],
) -> Result<()> {
    let (ids, reasons): (Vec<Uuid>, Vec<String>) = excluded.iter().cloned().unzip();
    sqlx::query("SELECT mnemo_fed_fail($1, $2, $3, $4)")
        .bind(session)
        .bind(reason)
        .bind(ids)
        .bind(reasons)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A released insight, as its contributors read it.
#[derive(Debug, Clone, FromRow)]
pub struct InsightRow {
    pub id: Uuid,
    pub content: Json<Value>,
    pub confidence_score: f64,
    pub participant_count: i32,
    pub excluded_count: i32,
    pub privacy_budget_used: f64,
    pub method: Option<String>,
    pub privacy_level: Option<String>,
    pub epsilon: Option<f64>,
    pub delta: Option<f64>,
    pub rho: Option<f64>,
    pub noise_scale: Option<f64>,
    pub expected_error: Option<f64>,
    pub sensitivity: Option<Json<Value>>,
    pub created_at: DateTime<Utc>,
}

/// The session's insights that the current tenant may read (those its contribution is in).
pub async fn insights(tx: &mut TenantTx, session: Uuid) -> Result<Vec<InsightRow>> {
    Ok(sqlx::query_as(
        "SELECT id, content, confidence_score, participant_count, excluded_count, privacy_budget_used,
                method::text AS method, privacy_level::text AS privacy_level, epsilon, delta, rho,
                noise_scale, expected_error, sensitivity, created_at
         FROM aggregated_insights WHERE session_id = $1 ORDER BY created_at, id",
    )
    .bind(session)
    .fetch_all(&mut **tx)
    .await?)
}

/// Sessions the deadline job handles in one transaction at most.
pub const DEADLINE_BATCH: i64 = 100;

impl Store {
    /// Fails the sessions whose deadline passed while they were still forming (too few
    /// participants) or active (nobody asked for the aggregate), as the lifecycle says, deleting
    /// their contributions. Batches of [`DEADLINE_BATCH`], skipping sessions another transaction
    /// holds (a join or an aggregation in progress; the next run sees them). Returns how many
    /// sessions it failed.
    pub async fn expire_federated_sessions(&self) -> Result<i64> {
        let mut total = 0i64;
        loop {
            let mut tx = self.pool().begin().await?;
            let due: Vec<(Uuid, String)> = sqlx::query_as(
                "SELECT id, status::text FROM federated_sessions
                 WHERE status IN ('forming', 'active') AND deadline <= now()
                 ORDER BY deadline LIMIT $1 FOR UPDATE SKIP LOCKED",
            )
            .bind(DEADLINE_BATCH)
            .fetch_all(&mut *tx)
            .await?;
            for (id, status) in &due {
                let next = transition(parse(status)?, SessionEvent::Expire).map_err(|e| {
                    StoreError::Invalid {
                        message: e.to_string(),
                    }
                })?;
                let reason = next.reason.map(|r| r.as_str());
                sqlx::query("SELECT mnemo_fed_end($1, $2::session_status, $3)")
                    .bind(id)
                    .bind(next.status.as_str())
                    .bind(reason)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            total += due.len() as i64;
            if (due.len() as i64) < DEADLINE_BATCH {
                return Ok(total);
            }
        }
    }
}
