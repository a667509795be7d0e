//! Retention policies (`data_retention_policies`), what their next run would do (preview), the run
//! itself (owner role, tenant by tenant, batches that lock with `FOR UPDATE SKIP LOCKED`), and the
//! archive: archived memories listed, read and restored.
//!
//! The rule lives in SQL (migration 0012: `mnemo_retention_plan`, `mnemo_retention_due`), once:
//! the preview reads the rows it names, a run locks and removes the same rows.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use uuid::Uuid;

use mnemo_core::retention::{RetentionResource, RetentionRule};

use crate::memories::{self, Memory};
use crate::usage::{self, UsageDelta};
use crate::{Result, Store, StoreError, TenantTx};

/// Memories one cleanup transaction handles at most.
pub const CLEANUP_BATCH: i32 = 1000;

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct RetentionPolicy {
    /// memories, contexts or audit_log.
    pub resource_type: String,
    pub retention_days: Option<i32>,
    /// Keep only the newest this many (by `basis`).
    pub max_count: Option<i32>,
    /// delete, archive or retain.
    pub archival_policy: String,
    /// created_at or last_accessed.
    pub basis: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "resource_type, retention_days, max_count, archival_policy::text AS archival_policy, \
                       basis, is_active, created_at, updated_at";

pub async fn get(tx: &mut TenantTx, resource: RetentionResource) -> Result<RetentionPolicy> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM data_retention_policies WHERE tenant_id = $1 AND resource_type = $2"
    ))
    .bind(tx.tenant_id())
    .bind(resource.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("retention policy"))
}

/// Creates or replaces the tenant's policy for the rule's resource; `true` when it was created.
/// (Read back by a second statement: Citus allows only immutable expressions in RETURNING, and
/// the enum's cast to text is not.)
pub async fn put(tx: &mut TenantTx, rule: &RetentionRule) -> Result<(RetentionPolicy, bool)> {
    let created: bool = sqlx::query_scalar(
        "INSERT INTO data_retention_policies AS p
             (tenant_id, resource_type, retention_days, max_count, archival_policy, basis, is_active)
         VALUES ($1, $2, $3, $4, $5::archival_policy, $6, $7)
         ON CONFLICT (tenant_id, resource_type) DO UPDATE SET
             retention_days = EXCLUDED.retention_days, max_count = EXCLUDED.max_count,
             archival_policy = EXCLUDED.archival_policy, basis = EXCLUDED.basis,
             is_active = EXCLUDED.is_active
         RETURNING (xmax = 0)",
    )
    .bind(tx.tenant_id())
    .bind(rule.resource.as_str())
    .bind(rule.retention_days)
    .bind(rule.max_count)
    .bind(rule.archival_policy.as_str())
    .bind(rule.basis.as_str())
    .bind(rule.is_active)
    .fetch_one(&mut **tx)
    .await?;
    Ok((get(tx, rule.resource).await?, created))
}

pub async fn delete(tx: &mut TenantTx, resource: RetentionResource) -> Result<()> {
    let n = sqlx::query(
        "DELETE FROM data_retention_policies WHERE tenant_id = $1 AND resource_type = $2",
    )
    .bind(tx.tenant_id())
    .bind(resource.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound("retention policy"));
    }
    Ok(())
}

/// What one part of the next run would remove.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PreviewPart {
    /// delete or archive.
    pub action: String,
    pub count: i64,
    /// The first `memory_id`s it would remove, in the order the run takes them.
    pub first_ids: Vec<String>,
}

/// What the next cleanup run would do to the tenant's memories.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Preview {
    /// Memories whose `expires_at` passed (none under a `retain` policy).
    pub expired: PreviewPart,
    /// Live memories past the policy's `retention_days` or beyond its `max_count`; absent without
    /// an active delete/archive policy for memories.
    pub retention: Option<PreviewPart>,
    /// What the run does not apply yet (e.g. a contexts policy), said plainly.
    pub notes: Vec<String>,
}

/// The plan of the tenant's memories policy, as the run fixes it.
#[derive(Debug, Clone, FromRow)]
struct Plan {
    basis: String,
    archive: bool,
    bound_at: DateTime<Utc>,
    bound_id: Uuid,
}

async fn plan(conn: &mut sqlx::PgConnection, tenant: Uuid) -> Result<Option<Plan>> {
    Ok(
        sqlx::query_as("SELECT basis, archive, bound_at, bound_id FROM mnemo_retention_plan($1)")
            .bind(tenant)
            .fetch_optional(conn)
            .await?,
    )
}

/// What the next run would remove from the tenant's memories: counts and the first `sample` ids.
pub async fn preview(tx: &mut TenantTx, sample: i64) -> Result<Preview> {
    let tenant = tx.tenant_id();
    let policy: Option<(String, bool)> = sqlx::query_as(
        "SELECT archival_policy::text, is_active FROM data_retention_policies
         WHERE tenant_id = $1 AND resource_type = 'memories'",
    )
    .bind(tenant)
    .fetch_optional(&mut **tx)
    .await?;
    let active = policy.filter(|(_, on)| *on).map(|(p, _)| p);
    let expired = if active.as_deref() == Some("retain") {
        PreviewPart {
            action: "retain".into(),
            count: 0,
            first_ids: vec![],
        }
    } else {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM contextual_memories WHERE tenant_id = $1 AND expires_at <= now()",
        )
        .bind(tenant)
        .fetch_one(&mut **tx)
        .await?;
        let first_ids: Vec<String> = sqlx::query_scalar(
            "SELECT memory_id FROM contextual_memories WHERE tenant_id = $1 AND expires_at <= now()
             ORDER BY expires_at, id LIMIT $2",
        )
        .bind(tenant)
        .bind(sample)
        .fetch_all(&mut **tx)
        .await?;
        PreviewPart {
            action: if active.as_deref() == Some("archive") {
                "archive".into()
            } else {
                "delete".into()
            },
            count,
            first_ids,
        }
    };
    let retention = match plan(tx, tenant).await? {
        None => None,
        Some(p) => {
            let (count,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM mnemo_retention_due($1, $2, $3, $4, NULL, false)",
            )
            .bind(tenant)
            .bind(&p.basis)
            .bind(p.bound_at)
            .bind(p.bound_id)
            .fetch_one(&mut **tx)
            .await?;
            let first_ids: Vec<String> = sqlx::query_scalar(
                "SELECT memory_id FROM mnemo_retention_due($1, $2, $3, $4, $5, false)",
            )
            .bind(tenant)
            .bind(&p.basis)
            .bind(p.bound_at)
            .bind(p.bound_id)
            .bind(sample as i32)
            .fetch_all(&mut **tx)
            .await?;
            Some(PreviewPart {
                action: if p.archive { "archive" } else { "delete" }.into(),
                count,
                first_ids,
            })
        }
    };
    let mut notes = Vec::new();
    let others: Vec<String> = sqlx::query_scalar(
        "SELECT resource_type FROM data_retention_policies
         WHERE tenant_id = $1 AND is_active AND resource_type <> 'memories' ORDER BY 1",
    )
    .bind(tenant)
    .fetch_all(&mut **tx)
    .await?;
    for r in others {
        notes.push(match r.as_str() {
            "contexts" => "the contexts policy is stored but not applied yet: the cleanup \
                           removes expired contexts, not contexts past retention_days"
                .to_owned(),
            _ => "the audit_log policy keeps archived audit months at least retention_days \
                  ('archive', 'retain'); months are archived and dropped whole, by the \
                  operator's schedule"
                .to_owned(),
        });
    }
    Ok(Preview {
        expired,
        retention,
        notes,
    })
}

/// What a cleanup run did to one tenant.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct TenantCleanup {
    pub tenant_id: Uuid,
    /// Expired memories removed (deleted or archived per the policy).
    pub expired_removed: i64,
    /// Memories removed under the policy's retention_days / max_count.
    pub retention_removed: i64,
    /// Whether the policy archives (else deletes).
    pub archived: bool,
}

/// What a cleanup run did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct CleanupReport {
    /// Tenants that had something to clean, with what left them.
    pub tenants: Vec<TenantCleanup>,
    /// Batches (transactions) the run took.
    pub batches: i64,
}

impl CleanupReport {
    pub fn total(&self) -> i64 {
        self.tenants
            .iter()
            .map(|t| t.expired_removed + t.retention_removed)
            .sum()
    }
}

impl Store {
    /// [`Store::run_cleanup`], counting what left `contextual_memories`.
    pub async fn clean_expired_memories(&self) -> Result<i64> {
        Ok(self.run_cleanup().await?.total())
    }

    /// Retires every tenant's expired memories and those due under its retention policy, as the
    /// policy says (the seed's `clean_expired_memories()`, run by the service). Tenant by tenant:
    /// the tenants are found by one read that locks nothing; every batch is a transaction of its
    /// own that locks at most [`CLEANUP_BATCH`] rows of one tenant with `FOR UPDATE SKIP LOCKED`
    /// (so on Citus each is a single-shard statement, and several servers running it share the
    /// work without waiting on each other or removing a row twice). A memory another transaction
    /// holds is left for the next run.
    pub async fn run_cleanup(&self) -> Result<CleanupReport> {
        let tenants: Vec<(Uuid, bool, bool, bool)> = sqlx::query_as(
            "SELECT tenant_id, expired, retention, archive FROM mnemo_cleanup_tenants()",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut report = CleanupReport::default();
        for (tenant, expired, retention, archive) in tenants {
            let mut t = TenantCleanup {
                tenant_id: tenant,
                archived: archive,
                ..Default::default()
            };
            if expired {
                loop {
                    let n: i32 = sqlx::query_scalar("SELECT mnemo_clean_expired_tenant($1, $2)")
                        .bind(tenant)
                        .bind(CLEANUP_BATCH)
                        .fetch_one(&self.pool)
                        .await?;
                    report.batches += 1;
                    t.expired_removed += i64::from(n);
                    if n < CLEANUP_BATCH {
                        break;
                    }
                }
            }
            if retention {
                let mut conn = self.pool.acquire().await?;
                let plan = plan(&mut conn, tenant).await?;
                drop(conn);
                if let Some(p) = plan {
                    loop {
                        let (n,): (i64,) = sqlx::query_as(
                            "SELECT count(*) FROM mnemo_apply_retention_batch($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(tenant)
                        .bind(&p.basis)
                        .bind(p.archive)
                        .bind(p.bound_at)
                        .bind(p.bound_id)
                        .bind(CLEANUP_BATCH)
                        .fetch_one(&self.pool)
                        .await?;
                        report.batches += 1;
                        t.retention_removed += n;
                        if n < i64::from(CLEANUP_BATCH) {
                            break;
                        }
                    }
                }
            }
            if t.expired_removed + t.retention_removed > 0 {
                tracing::info!(
                    tenant = %t.tenant_id,
                    expired = t.expired_removed,
                    retention = t.retention_removed,
                    archived = t.archived,
                    "retention applied"
                );
                report.tenants.push(t);
            }
        }
        Ok(report)
    }
}

/// An archived memory as the API returns it.
#[derive(Debug, Clone, FromRow)]
pub struct ArchivedMemory {
    #[sqlx(flatten)]
    pub memory: Memory,
    pub archived_at: DateTime<Utc>,
}

fn archive_columns(with_embedding: bool) -> String {
    format!("{}, m.archived_at", memories::columns(with_embedding))
}

/// The latest archived version of `memory_id`.
pub async fn get_archived(
    tx: &mut TenantTx,
    memory_id: &str,
    with_embedding: bool,
) -> Result<ArchivedMemory> {
    sqlx::query_as(&format!(
        "SELECT {} FROM contextual_memories_archive m
         WHERE m.tenant_id = $1 AND m.memory_id = $2
         ORDER BY m.archived_at DESC, m.id DESC LIMIT 1",
        archive_columns(with_embedding)
    ))
    .bind(tx.tenant_id())
    .bind(memory_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("memory"))
}

/// One page of the archive, newest archived first, after `(archived_at, id)`.
pub async fn list_archived(
    tx: &mut TenantTx,
    cursor: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
    with_embedding: bool,
) -> Result<Vec<ArchivedMemory>> {
    let (at, id) = cursor.unzip();
    Ok(sqlx::query_as(&format!(
        "SELECT {} FROM contextual_memories_archive m
         WHERE m.tenant_id = $1 AND ($2::timestamptz IS NULL OR (m.archived_at, m.id) < ($2, $3))
         ORDER BY m.archived_at DESC, m.id DESC LIMIT $4",
        archive_columns(with_embedding)
    ))
    .bind(tx.tenant_id())
    .bind(at)
    .bind(id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// Brings the latest archived version of `memory_id` back to the live memories, with the
/// archived relationships whose both ends are then live. 404 when nothing of that id is archived,
/// 409 when a live memory holds the id; quotas apply as to a create.
pub async fn restore(tx: &mut TenantTx, memory_id: &str) -> Result<Memory> {
    // An expired memory holding the id is retired first, as before a create.
    let (taken, mut delta) = memories::retire_expired(tx, &[memory_id]).await?;
    if !taken.is_empty() {
        return Err(StoreError::Conflict {
            constraint: "contextual_memories_tenant_memory_key".into(),
        });
    }
    #[derive(FromRow)]
    struct Restored {
        memories: i64,
        content_bytes: i64,
        embedded: i64,
        relationships: i64,
        relationship_bytes: i64,
    }
    let r: Restored = sqlx::query_as(
        "SELECT memories, content_bytes, embedded, relationships, relationship_bytes
         FROM mnemo_restore_memory($1, $2)",
    )
    .bind(tx.tenant_id())
    .bind(memory_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("memory"))?;
    delta += UsageDelta {
        memories: r.memories,
        content_bytes: r.content_bytes,
        embedded: r.embedded,
        relationships: r.relationships,
        relationship_bytes: r.relationship_bytes,
        ..Default::default()
    };
    usage::charge(tx, delta).await?;
    memories::get(tx, memory_id, false).await
}
