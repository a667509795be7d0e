//! Per-tenant usage counters and the quotas they enforce.
//!
//! Every write adds its effect ([`UsageDelta`]) to the tenant's `tenant_usage` row in its own
//! transaction, once, at its end ([`charge`]): one statement keyed by `tenant_id`, so a quota check
//! reads one row instead of counting the tenant's rows, and writers of a tenant queue only on that
//! row for the last moments of their transactions. Rows written outside the service are picked up by
//! [`Store::reconcile_usage`], which the maintenance job runs for every tenant.

use serde::Serialize;
use sqlx::FromRow;
use uuid::Uuid;

use crate::memories::EMBEDDING_BYTES;
use crate::{Result, Store, StoreError, TenantTx};

/// How much a write adds to (or, negative, takes off) a tenant's usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromRow)]
pub struct UsageDelta {
    pub memories: i64,
    pub content_bytes: i64,
    pub embedded: i64,
    pub relationships: i64,
    pub relationship_bytes: i64,
    pub contexts: i64,
    pub context_bytes: i64,
}

impl UsageDelta {
    /// Bytes as `max_storage_bytes` counts them.
    pub fn storage_bytes(&self) -> i64 {
        self.content_bytes
            + self.embedded * EMBEDDING_BYTES
            + self.relationship_bytes
            + self.context_bytes
    }

    /// Whether the write makes the tenant hold more of something a quota limits.
    fn grows(&self) -> bool {
        self.memories > 0 || self.storage_bytes() > 0
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

impl std::ops::Add for UsageDelta {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            memories: self.memories + o.memories,
            content_bytes: self.content_bytes + o.content_bytes,
            embedded: self.embedded + o.embedded,
            relationships: self.relationships + o.relationships,
            relationship_bytes: self.relationship_bytes + o.relationship_bytes,
            contexts: self.contexts + o.contexts,
            context_bytes: self.context_bytes + o.context_bytes,
        }
    }
}

impl std::ops::AddAssign for UsageDelta {
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}

impl std::ops::Neg for UsageDelta {
    type Output = Self;
    fn neg(self) -> Self {
        UsageDelta::default() - self
    }
}

impl std::ops::Sub for UsageDelta {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            memories: self.memories - o.memories,
            content_bytes: self.content_bytes - o.content_bytes,
            embedded: self.embedded - o.embedded,
            relationships: self.relationships - o.relationships,
            relationship_bytes: self.relationship_bytes - o.relationship_bytes,
            contexts: self.contexts - o.contexts,
            context_bytes: self.context_bytes - o.context_bytes,
        }
    }
}

/// A tenant's counters and its quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct Counters {
    pub memories: i64,
    pub content_bytes: i64,
    pub embedded: i64,
    pub relationships: i64,
    pub relationship_bytes: i64,
    pub contexts: i64,
    pub context_bytes: i64,
    pub max_memories: Option<i64>,
    pub max_storage_bytes: Option<i64>,
}

impl Counters {
    fn totals(&self) -> UsageDelta {
        UsageDelta {
            memories: self.memories,
            content_bytes: self.content_bytes,
            embedded: self.embedded,
            relationships: self.relationships,
            relationship_bytes: self.relationship_bytes,
            contexts: self.contexts,
            context_bytes: self.context_bytes,
        }
    }

    /// Bytes as `max_storage_bytes` counts them.
    pub fn storage_bytes(&self) -> i64 {
        self.totals().storage_bytes()
    }

    fn plus(&self, d: &UsageDelta) -> Counters {
        Counters {
            memories: self.memories + d.memories,
            content_bytes: self.content_bytes + d.content_bytes,
            embedded: self.embedded + d.embedded,
            relationships: self.relationships + d.relationships,
            relationship_bytes: self.relationship_bytes + d.relationship_bytes,
            contexts: self.contexts + d.contexts,
            context_bytes: self.context_bytes + d.context_bytes,
            ..*self
        }
    }

    /// The quota these figures break in a dimension that `delta` grows, if any: a write that
    /// does not add memories is not refused for their number, one that does not add bytes not
    /// for their size (an admin may have lowered a quota below what the tenant holds).
    fn excess(&self, delta: &UsageDelta) -> Option<String> {
        if let Some(max) = self
            .max_memories
            .filter(|max| delta.memories > 0 && self.memories > *max)
        {
            return Some(format!(
                "the tenant may hold at most {max} memories; this write would make {}",
                self.memories
            ));
        }
        let bytes = self.storage_bytes();
        if let Some(max) = self
            .max_storage_bytes
            .filter(|max| delta.storage_bytes() > 0 && bytes > *max)
        {
            return Some(format!(
                "the tenant may store at most {max} bytes; this write would make {bytes}"
            ));
        }
        None
    }
}

const COUNTERS: &str = "u.memories, u.content_bytes, u.embedded, u.relationships, \
     u.relationship_bytes, u.contexts, u.context_bytes, t.max_memories, t.max_storage_bytes";

/// The tenant's counters as they stand (committed writes and this transaction's), or `None` before
/// its first write through the store.
pub async fn counters(tx: &mut TenantTx) -> Result<Option<Counters>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COUNTERS} FROM tenant_usage u JOIN tenants t ON t.id = u.tenant_id
         WHERE u.tenant_id = $1"
    ))
    .bind(tx.tenant_id())
    .fetch_optional(&mut **tx)
    .await?)
}

/// Adds `delta` to the tenant's counters; returns them with the quotas.
pub async fn apply(tx: &mut TenantTx, delta: UsageDelta) -> Result<Counters> {
    // Typed parameters: Citus sends the call to a node holding `tenants`, and without the casts
    // that node cannot tell the parameters' types.
    Ok(sqlx::query_as(&format!(
        "SELECT {COUNTERS}
         FROM mnemo_usage_add($1::uuid, $2::bigint, $3::bigint, $4::bigint, $5::bigint,
                              $6::bigint, $7::bigint, $8::bigint) AS u
         JOIN tenants t ON t.id = u.tenant_id"
    ))
    .bind(tx.tenant_id())
    .bind(delta.memories)
    .bind(delta.content_bytes)
    .bind(delta.embedded)
    .bind(delta.relationships)
    .bind(delta.relationship_bytes)
    .bind(delta.contexts)
    .bind(delta.context_bytes)
    .fetch_one(&mut **tx)
    .await?)
}

/// Books a write's effect, as the last step of the write: refuses with [`StoreError::Quota`] when
/// the write grows the tenant past a quota (the caller's transaction then rolls back, so nothing of
/// the write remains). Expired memories and contexts never stand in the way: if the write would
/// not fit, the tenant's expired memories are retired first (as its retention policy says; see
/// [`release_expired`]) and its expired contexts removed ([`crate::contexts::release_expired`]),
/// and only then is the quota checked.
///
/// Concurrent writers of a tenant queue on its counter row from the update to their commit, so two
/// of them cannot both slip under a quota.
pub async fn charge(tx: &mut TenantTx, write: UsageDelta) -> Result<()> {
    if write.is_zero() {
        return Ok(());
    }
    let mut total = write;
    if write.grows() {
        // A cheap read without the row lock decides whether making room is worth trying; the
        // update below is the check that counts.
        if let Some(now) = counters(tx).await? {
            if now.plus(&write).excess(&write).is_some() {
                total += release_expired(tx, None).await?;
                total += crate::contexts::release_expired(tx, None).await?;
            }
        }
    }
    let after = apply(tx, total).await?;
    match after.excess(&write) {
        Some(message) => Err(StoreError::Quota(message)),
        None => Ok(()),
    }
}

/// Retires the tenant's expired memories so they are out of the way: with `memory_ids`, those of
/// them that expired (before the ids are used again; waits for rows another transaction holds);
/// without, up to 5,000 of any (to make room; skips rows others hold). Deleted or archived per the
/// tenant's retention policy ('retain' archives: the memory is kept, its id and quota freed).
/// Returns the (negative) change to the tenant's usage, which the caller books with its own.
pub async fn release_expired(tx: &mut TenantTx, memory_ids: Option<&[&str]>) -> Result<UsageDelta> {
    let removed: UsageDelta = sqlx::query_as(
        "SELECT memories, content_bytes, embedded, relationships, relationship_bytes,
                0::bigint AS contexts, 0::bigint AS context_bytes
         FROM mnemo_release_expired($1)",
    )
    .bind(memory_ids)
    .fetch_one(&mut **tx)
    .await?;
    Ok(-removed)
}

/// A quota pre-check before costly work (embedding): refuses with [`StoreError::Quota`] when adding
/// `add_memories` memories and `add_bytes` bytes would break a quota even after the tenant's expired
/// memories were retired and its expired contexts removed. Reads the counter row (and, only when that says no, the tenant's expired
/// rows through their index); writes nothing. The write itself is checked again by [`charge`].
pub async fn check_headroom(tx: &mut TenantTx, add_memories: i64, add_bytes: i64) -> Result<()> {
    let Some(now) = counters(tx).await? else {
        return Ok(());
    };
    let adding = UsageDelta {
        memories: add_memories,
        content_bytes: add_bytes,
        ..Default::default()
    };
    let mut after = now.plus(&adding);
    if after.excess(&adding).is_none() {
        return Ok(());
    }
    let (expired, expired_bytes): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(content_bytes), 0)::bigint + count(embedding) * $2
         FROM contextual_memories WHERE tenant_id = $1 AND expires_at <= now()",
    )
    .bind(tx.tenant_id())
    .bind(EMBEDDING_BYTES)
    .fetch_one(&mut **tx)
    .await?;
    after.memories -= expired;
    after.content_bytes -= expired_bytes;
    if after.excess(&adding).is_some() {
        let expired_contexts: i64 = sqlx::query_scalar(&format!(
            "SELECT coalesce(sum({}), 0)::bigint FROM offloaded_contexts c
             WHERE c.tenant_id = $1 AND c.expires_at <= now()",
            crate::contexts::BYTES
        ))
        .bind(tx.tenant_id())
        .fetch_one(&mut **tx)
        .await?;
        after.context_bytes -= expired_contexts;
    }
    match after.excess(&adding) {
        Some(message) => Err(StoreError::Quota(message)),
        None => Ok(()),
    }
}

/// What one [`Store::reconcile_usage`] run found.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ReconcileReport {
    pub tenants: usize,
    /// Tenants whose counters were off (or missing) and were corrected.
    pub corrected: Vec<Uuid>,
}

impl Store {
    /// Recomputes every tenant's counters from its rows, one tenant per transaction (so a tenant's
    /// writers wait at most for its own recount).
    pub async fn reconcile_usage(&self) -> Result<ReconcileReport> {
        let tenants: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let mut report = ReconcileReport {
            tenants: tenants.len(),
            ..Default::default()
        };
        for tenant in tenants {
            if self.reconcile_tenant_usage(tenant).await? {
                report.corrected.push(tenant);
            }
        }
        Ok(report)
    }

    /// Recomputes one tenant's counters from its rows; returns whether they were off (or missing).
    pub async fn reconcile_tenant_usage(&self, tenant: Uuid) -> Result<bool> {
        Ok(sqlx::query_scalar("SELECT mnemo_reconcile_usage($1)")
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?)
    }
}
