//! Contributions: what a participant gives a session, computed inside its own transaction from its
//! own memories matching the session's topic, and stored as its own row (no other tenant can read
//! it; it is deleted when the session ends). Also the aggregation's two privileged steps: reading a
//! session's contributions with the members' ledgers locked, and settling the release.

use chrono::{DateTime, Utc};
use pgvector::Vector;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{FromRow, QueryBuilder};
use uuid::Uuid;

use mnemo_core::federated::extract::Tally;
use mnemo_core::federated::insight::Contribution;

use crate::memories::MemoryFilter;
use crate::{Result, TenantTx};

/// A session's topic: which of a participant's memories it contributes from.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopicSpec {
    /// Text whose embedding (computed once, when the session is created) the memories must be
    /// near; they are taken nearest first.
    pub query: Option<String>,
    /// Tags the memories must all have.
    pub tags: Option<Vec<String>>,
    /// Further conditions, as in search.
    #[serde(default)]
    pub filter: TopicFilter,
    /// At most this many memories per participant.
    pub max_memories: i64,
    /// With `query`: memories less similar (cosine) are left out.
    pub min_similarity: Option<f64>,
    /// Top-level fields of content (or metadata) counted as labels.
    pub label_fields: Vec<String>,
    /// Fields holding a lesson string or a list of them.
    pub lesson_fields: Vec<String>,
}

/// Conditions on a participant's memories (the search filter's fields).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicFilter {
    #[schema(value_type = Option<Object>)]
    pub contains: Option<Value>,
    pub tags: Option<Vec<String>>,
    pub any_tags: Option<Vec<String>>,
    pub min_relevance: Option<f64>,
    pub max_relevance: Option<f64>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

impl TopicSpec {
    fn memory_filter(&self) -> MemoryFilter {
        let f = &self.filter;
        let tags_all: Option<Vec<String>> = match (&self.tags, &f.tags) {
            (None, None) => None,
            (a, b) => {
                let mut all: Vec<String> = a.iter().chain(b.iter()).flatten().cloned().collect();
                all.dedup();
                Some(all)
            }
        };
        MemoryFilter {
            contains: f.contains.clone(),
            tags_all,
            tags_any: f.any_tags.clone(),
            min_relevance: f.min_relevance,
            max_relevance: f.max_relevance,
            created_after: f.created_after,
            created_before: f.created_before,
        }
    }
}

/// A contribution computed from the tenant's memories.
#[derive(Debug, Clone)]
pub struct Computed {
    pub centroid: Vec<f64>,
    pub memory_count: i32,
    pub tally: Tally,
}

/// The current tenant's contribution to a session on `topic` (whose query embedding is
/// `embedding`): its live, embedded memories matching the topic, at most `max_memories`, nearest
/// to the query first (newest first without one). `None` when no memory matches.
pub async fn compute(
    tx: &mut TenantTx,
    topic: &TopicSpec,
    embedding: Option<&[f32]>,
) -> Result<Option<Computed>> {
    #[derive(FromRow)]
    struct Row {
        embedding: Vector,
        content: Json<Value>,
        metadata: Json<Value>,
    }
    let filter = topic.memory_filter();
    let indexed = filter.indexed(tx, None).await?;
    let mut qb = QueryBuilder::new(
        "SELECT m.embedding, m.content, m.metadata FROM contextual_memories m WHERE m.tenant_id = ",
    );
    qb.push_bind(tx.tenant_id());
    qb.push(" AND m.embedding IS NOT NULL");
    filter.push_conditions(&mut qb, &indexed);
    match embedding {
        Some(q) => {
            let q = Vector::from(q.to_vec());
            if let Some(min) = topic.min_similarity {
                qb.push(" AND m.embedding <=> ")
                    .push_bind(q.clone())
                    .push(" <= ")
                    .push_bind(1.0 - min);
            }
            qb.push(" ORDER BY m.embedding <=> ").push_bind(q);
        }
        None => {
            qb.push(" ORDER BY m.created_at DESC, m.id DESC");
        }
    }
    qb.push(" LIMIT ").push_bind(topic.max_memories);
    let rows: Vec<Row> = qb.build_query_as().fetch_all(&mut **tx).await?;
    let vectors: Vec<Vec<f32>> = rows.iter().map(|r| r.embedding.to_vec()).collect();
    let slices: Vec<&[f32]> = vectors.iter().map(Vec::as_slice).collect();
    let Some(centroid) = Contribution::centroid_of(&slices) else {
        return Ok(None);
    };
    let mut tally = Tally::default();
    for r in &rows {
        tally.add_memory(
            &r.content,
            &r.metadata,
            &topic.label_fields,
            &topic.lesson_fields,
        );
    }
    Ok(Some(Computed {
        centroid,
        memory_count: i32::try_from(rows.len()).unwrap_or(i32::MAX),
        tally,
    }))
}

/// The session's topic embedding (computed at creation from its query), if it has one.
pub async fn topic_embedding(tx: &mut TenantTx, session: Uuid) -> Result<Option<Vec<f32>>> {
    let v: Option<Option<Vector>> =
        sqlx::query_scalar("SELECT topic_embedding FROM federated_sessions WHERE id = $1")
            .bind(session)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(v.flatten().map(|v| v.to_vec()))
}

/// Stores the current tenant's contribution to a session it has joined.
pub async fn insert(tx: &mut TenantTx, session: Uuid, c: &Computed) -> Result<()> {
    sqlx::query(
        "INSERT INTO federated_contributions (tenant_id, session_id, centroid, memory_count, labels, lessons)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(tx.tenant_id())
    .bind(session)
    .bind(&c.centroid)
    .bind(c.memory_count)
    .bind(Json(c.tally.labels_json()))
    .bind(Json(c.tally.lessons_json()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One joined member of a session being aggregated: standing, budget, ledger, reputation parts
/// and contribution. `member` is an internal id that never leaves the service.
#[derive(Debug, Clone, FromRow)]
pub struct MemberInput {
    pub member: Uuid,
    /// Active and not `strict` (an administrator may have changed it since it joined).
    pub federates: bool,
    pub participant_active: bool,
    pub participant_level: String,
    pub budget_epsilon: f64,
    pub budget_delta: f64,
    pub rho_spent: f64,
    pub delta_spent: f64,
    pub agreement_ema: f64,
    pub sessions_completed: i32,
    pub sessions_abandoned: i32,
    pub centroid: Vec<f64>,
    pub memory_count: i32,
    pub labels: Json<Value>,
    pub lessons: Json<Value>,
}

impl MemberInput {
    /// The contribution in the shape the release takes.
    pub fn contribution(&self, reputation: f64) -> Contribution {
        let (labels, lessons) = Tally::from_json(&self.labels, &self.lessons)
            .expand(u64::try_from(self.memory_count).unwrap_or(0));
        Contribution {
            centroid: self.centroid.clone(),
            size: u64::try_from(self.memory_count).unwrap_or(0),
            reputation,
            labels,
            lessons,
        }
    }
}

/// The initiator, with its session aggregating: every joined member's input, in tenant order, the
/// members' participant rows locked until the transaction ends (so that two sessions charging the
/// same tenant charge it one after the other, each seeing the other's charge).
pub async fn aggregation_inputs(tx: &mut TenantTx, session: Uuid) -> Result<Vec<MemberInput>> {
    Ok(
        sqlx::query_as("SELECT * FROM mnemo_fed_aggregation_inputs($1)")
            .bind(session)
            .fetch_all(&mut **tx)
            .await?,
    )
}

/// A contributor of a release: its agreement with the released aggregate and its reputation after.
#[derive(Debug, Clone, Copy)]
pub struct Contributor {
    pub member: Uuid,
    pub agreement: f64,
    pub agreement_ema: f64,
    pub reputation: f64,
}

/// What the release of a session writes.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub insight: Value,
    pub confidence: f64,
    pub noise_scale: f64,
    pub expected_error: f64,
    /// The sensitivity of the rule used (absent at `basic`, which adds no noise).
    pub sensitivity: Option<Value>,
    pub contributors: Vec<Contributor>,
    pub excluded: Vec<(Uuid, String)>,
}

/// Settles the release (see `mnemo_fed_settle`): charges and checks every contributor's ledger,
/// writes the insight, the reputations and memberships, deletes the contributions, completes the
/// session. Returns the insight's id.
pub async fn settle(tx: &mut TenantTx, session: Uuid, s: Settlement) -> Result<Uuid> {
    let (excluded, reasons): (Vec<Uuid>, Vec<String>) = s.excluded.into_iter().unzip();
    Ok(sqlx::query_scalar(
        "SELECT mnemo_fed_settle($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(session)
    .bind(Json(s.insight))
    .bind(s.confidence)
    .bind(s.noise_scale)
    .bind(s.expected_error)
    .bind(s.sensitivity.map(Json))
    .bind(s.contributors.iter().map(|c| c.member).collect::<Vec<_>>())
    .bind(
        s.contributors
            .iter()
            .map(|c| c.agreement)
            .collect::<Vec<_>>(),
    )
    .bind(
        s.contributors
            .iter()
            .map(|c| c.agreement_ema)
            .collect::<Vec<_>>(),
    )
    .bind(
        s.contributors
            .iter()
            .map(|c| c.reputation)
            .collect::<Vec<_>>(),
    )
    .bind(excluded)
    .bind(reasons)
    .fetch_one(&mut **tx)
    .await?)
}
