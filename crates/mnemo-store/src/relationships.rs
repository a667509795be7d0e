//! The knowledge graph: typed, weighted edges between two memories of one tenant.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::FromRow;
use uuid::Uuid;

use crate::memories::{columns, Memory};
use crate::policies::Visibility;
use crate::usage::{self, UsageDelta};
use crate::{Result, StoreError, TenantTx};

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct Relationship {
    pub id: Uuid,
    /// `memory_id` of the source memory.
    pub source: String,
    /// `memory_id` of the target memory.
    pub target: String,
    pub relationship_type: String,
    pub weight: f64,
    #[schema(value_type = Object)]
    pub metadata: Json<Value>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Out,
    In,
    Both,
}

/// Edges with both ends' `memory_id`s (and their internal ids, `source_uuid` / `target_uuid`).
pub(crate) const EDGE_SELECT: &str = "
    SELECT r.source_memory_id AS source_uuid, r.target_memory_id AS target_uuid,
           r.id, s.memory_id AS source, t.memory_id AS target, r.relationship_type, r.weight,
           r.metadata, r.created_at
    FROM memory_relationships r
    JOIN contextual_memories s ON s.tenant_id = r.tenant_id AND s.id = r.source_memory_id
    JOIN contextual_memories t ON t.tenant_id = r.tenant_id AND t.id = r.target_memory_id";

/// Both ends of the edge are unexpired.
pub(crate) const LIVE: &str = "(s.expires_at IS NULL OR s.expires_at > now()) AND (t.expires_at IS NULL OR t.expires_at > now())";

pub struct NewRelationship {
    pub source: String,
    pub target: String,
    pub relationship_type: String,
    pub weight: f64,
    pub metadata: Value,
}

/// Creates an edge. Both memories must exist in the tenant ([`StoreError::NotFound`] otherwise);
/// the same (source, target, type) twice is a [`StoreError::Conflict`].
pub async fn create(tx: &mut TenantTx, r: NewRelationship) -> Result<Relationship> {
    let ids: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT memory_id, id FROM contextual_memories
         WHERE tenant_id = $1 AND memory_id IN ($2, $3) AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(tx.tenant_id())
    .bind(&r.source)
    .bind(&r.target)
    .fetch_all(&mut **tx)
    .await?;
    let find = |m: &str| ids.iter().find(|(id, _)| id == m).map(|(_, u)| *u);
    let (Some(source), Some(target)) = (find(&r.source), find(&r.target)) else {
        return Err(StoreError::NotFound("memory"));
    };
    let (id, bytes): (Uuid, i64) = sqlx::query_as(
        "INSERT INTO memory_relationships
            (tenant_id, source_memory_id, target_memory_id, relationship_type, weight, metadata)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id, octet_length(metadata::text)::bigint",
    )
    .bind(tx.tenant_id())
    .bind(source)
    .bind(target)
    .bind(&r.relationship_type)
    .bind(r.weight)
    .bind(Json(&r.metadata))
    .fetch_one(&mut **tx)
    .await?;
    usage::charge(tx, edge_usage(bytes)).await?;
    get(tx, id).await
}

/// What one relationship counts in its tenant's usage.
fn edge_usage(metadata_bytes: i64) -> UsageDelta {
    UsageDelta {
        relationships: 1,
        relationship_bytes: metadata_bytes,
        ..Default::default()
    }
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<Relationship> {
    sqlx::query_as(&format!(
        "{EDGE_SELECT} WHERE r.tenant_id = $1 AND r.id = $2 AND {LIVE}"
    ))
    .bind(tx.tenant_id())
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("relationship"))
}

pub async fn delete(tx: &mut TenantTx, id: Uuid) -> Result<()> {
    get(tx, id).await?;
    let bytes: i64 = sqlx::query_scalar(
        "DELETE FROM memory_relationships WHERE tenant_id = $1 AND id = $2
         RETURNING octet_length(metadata::text)::bigint",
    )
    .bind(tx.tenant_id())
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("relationship"))?;
    usage::charge(tx, -edge_usage(bytes)).await
}

async fn memory_uuid(tx: &mut TenantTx, memory_id: &str) -> Result<Uuid> {
    sqlx::query_scalar(
        "SELECT id FROM contextual_memories
         WHERE tenant_id = $1 AND memory_id = $2 AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(tx.tenant_id())
    .bind(memory_id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("memory"))
}

/// Edges touching a memory in the given direction, optionally of one type, strongest first;
/// only edges whose both ends are `visible`.
pub async fn neighbours(
    tx: &mut TenantTx,
    memory_id: &str,
    direction: Direction,
    relationship_type: Option<&str>,
    limit: i64,
    visible: &Visibility,
) -> Result<Vec<Relationship>> {
    let node = memory_uuid(tx, memory_id).await?;
    let side = match direction {
        Direction::Out => "r.source_memory_id = $2",
        Direction::In => "r.target_memory_id = $2",
        Direction::Both => "(r.source_memory_id = $2 OR r.target_memory_id = $2)",
    };
    Ok(sqlx::query_as(&format!(
        "{EDGE_SELECT} WHERE r.tenant_id = $1 AND {side} AND {LIVE}
           AND ($3::text IS NULL OR r.relationship_type = $3) AND {} AND {}
         ORDER BY r.weight DESC, r.created_at, r.id LIMIT $4",
        Visibility::sql("s.memory_id", 5),
        Visibility::sql("t.memory_id", 5),
    ))
    .bind(tx.tenant_id())
    .bind(node)
    .bind(relationship_type)
    .bind(limit)
    .bind(visible.all)
    .bind(&visible.exact)
    .bind(&visible.prefixes)
    .fetch_all(&mut **tx)
    .await?)
}

#[derive(Debug, Clone)]
pub struct GraphNode {
    pub depth: i32,
    pub memory: Memory,
}

/// What a graph walk may reach and return.
#[derive(Debug, Clone, Copy)]
pub struct Walk<'a> {
    /// Hops from the start.
    pub depth: i32,
    pub direction: Direction,
    /// Only edges of this type.
    pub relationship_type: Option<&'a str>,
    /// At most this many nodes, nearest first.
    pub max_nodes: i64,
    /// At most this many edges between them, strongest first.
    pub max_edges: i64,
    /// Memories the walk may enter; it never passes through the others.
    pub visible: &'a Visibility,
}

/// Breadth-first walk from a memory up to `walk.depth` hops (a recursive CTE whose `UNION` keeps
/// each (node, depth) once, so cycles end) through live, visible memories only, at most
/// `walk.max_nodes` nodes nearest first, with the edges between them.
pub async fn traverse(
    tx: &mut TenantTx,
    memory_id: &str,
    walk: Walk<'_>,
) -> Result<(Vec<GraphNode>, Vec<Relationship>)> {
    let start = memory_uuid(tx, memory_id).await?;
    let step = match walk.direction {
        Direction::Out => "r.source_memory_id = w.node",
        Direction::In => "r.target_memory_id = w.node",
        Direction::Both => "(r.source_memory_id = w.node OR r.target_memory_id = w.node)",
    };
    // Liveness and visibility are conditions of each step, so an expired or hidden memory ends
    // the paths through it instead of only being left out of the answer.
    let ids: Vec<(Uuid, i32)> = sqlx::query_as(&format!(
        "WITH RECURSIVE walk(node, depth) AS (
            SELECT $2::uuid, 0
            UNION
            SELECT n.id, w.depth + 1
            FROM walk w
            JOIN memory_relationships r ON r.tenant_id = $1 AND {step}
            JOIN contextual_memories n ON n.tenant_id = $1
             AND n.id = CASE WHEN r.source_memory_id = w.node THEN r.target_memory_id ELSE r.source_memory_id END
            WHERE w.depth < $3 AND ($4::text IS NULL OR r.relationship_type = $4)
              AND (n.expires_at IS NULL OR n.expires_at > now()) AND {}
         )
         SELECT w.node, min(w.depth)::int AS depth
         FROM walk w
         GROUP BY w.node
         ORDER BY min(w.depth), w.node
         LIMIT $5",
        Visibility::sql("n.memory_id", 6)
    ))
    .bind(tx.tenant_id())
    .bind(start)
    .bind(walk.depth)
    .bind(walk.relationship_type)
    .bind(walk.max_nodes)
    .bind(walk.visible.all)
    .bind(&walk.visible.exact)
    .bind(&walk.visible.prefixes)
    .fetch_all(&mut **tx)
    .await?;
    let node_ids: Vec<Uuid> = ids.iter().map(|(id, _)| *id).collect();
    let memories: Vec<Memory> = sqlx::query_as(&format!(
        "SELECT {} FROM contextual_memories m WHERE m.tenant_id = $1 AND m.id = ANY($2)",
        columns(false)
    ))
    .bind(tx.tenant_id())
    .bind(&node_ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut nodes: Vec<GraphNode> = memories
        .into_iter()
        .filter_map(|m| {
            let depth = ids.iter().find(|(id, _)| *id == m.id)?.1;
            Some(GraphNode { depth, memory: m })
        })
        .collect();
    nodes.sort_by(|a, b| {
        a.depth
            .cmp(&b.depth)
            .then_with(|| a.memory.memory_id.cmp(&b.memory.memory_id))
    });
    let edges: Vec<Relationship> = sqlx::query_as(&format!(
        "{EDGE_SELECT} WHERE r.tenant_id = $1 AND r.source_memory_id = ANY($2) AND r.target_memory_id = ANY($2)
           AND ($3::text IS NULL OR r.relationship_type = $3)
         ORDER BY r.weight DESC, r.created_at, r.id LIMIT $4"
    ))
    .bind(tx.tenant_id())
    .bind(&node_ids)
    .bind(walk.relationship_type)
    .bind(walk.max_edges)
    .fetch_all(&mut **tx)
    .await?;
    Ok((nodes, edges))
}
