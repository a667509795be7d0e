//! The knowledge graph: `/v1/relationships` and a memory's `neighbours` and `graph`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use mnemo_core::{Invalid, MemoryId, Permission, RelationType, RelevanceScore, Resource};
use mnemo_store::relationships::{self, Direction, NewRelationship, Relationship, Walk};

use crate::auth::TenantCtx;
use crate::error::ApiResult;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::ops::{policy_denied, run, run_with_rules, Op};
use crate::routes::memories::{check_limit, check_object, MemoryOut};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_relationship))
        .routes(routes!(get_relationship, delete_relationship))
        .routes(routes!(neighbours))
        .routes(routes!(graph))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationshipInput {
    /// `memory_id` of the source memory.
    pub source: String,
    /// `memory_id` of the target memory (not the source).
    pub target: String,
    /// e.g. `caused_by`, `related_to`.
    pub relationship_type: String,
    /// In [0, 1]; default 1.
    pub weight: Option<f64>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[utoipa::path(post, path = "/v1/relationships", tag = "graph", request_body = RelationshipInput,
    responses((status = 201, body = Relationship), (status = 404, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn create_relationship(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiJson(input): ApiJson<RelationshipInput>,
) -> ApiResult<(StatusCode, Json<Relationship>)> {
    let source = MemoryId::parse(&input.source).map_err(|e| Invalid::new("source", e.message))?;
    let target = MemoryId::parse(&input.target).map_err(|e| Invalid::new("target", e.message))?;
    if source == target {
        return Err(Invalid::new("target", "must differ from source").into());
    }
    let kind = RelationType::parse(&input.relationship_type)?;
    let weight = RelevanceScore::parse("weight", input.weight.unwrap_or(1.0))?;
    let metadata = check_object("metadata", input.metadata, &state.limits)?;
    let new = NewRelationship {
        source: source.into_string(),
        target: target.into_string(),
        relationship_type: kind.as_str().to_owned(),
        weight: weight.get(),
        metadata,
    };
    let op = Op::new(
        "relationship.create",
        Resource::Memories,
        Permission::Write,
        new.source.clone(),
    )
    .created();
    // The runner checks the source; the target is checked here, before either is looked up, so
    // that the answer never tells whether a memory the key may not write exists.
    let rel = run_with_rules(&state, &ctx, op, |tx, rules| {
        Box::pin(async move {
            if !rules.permits(&new.target, Permission::Write.as_str()) {
                return Err(policy_denied(
                    Resource::Memories,
                    Permission::Write,
                    &new.target,
                ));
            }
            Ok(relationships::create(tx, new).await?)
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(rel)))
}

#[utoipa::path(get, path = "/v1/relationships/{id}", tag = "graph", params(("id" = Uuid, Path)),
    responses((status = 200, body = Relationship), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn get_relationship(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<Relationship>> {
    let op = Op::new(
        "relationship.get",
        Resource::Memories,
        Permission::Read,
        id.to_string(),
    );
    let rel = run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(relationships::get(tx, id).await?) })
    })
    .await?;
    Ok(Json(rel))
}

#[utoipa::path(delete, path = "/v1/relationships/{id}", tag = "graph", params(("id" = Uuid, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn delete_relationship(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    let op = Op::new(
        "relationship.delete",
        Resource::Memories,
        Permission::Delete,
        id.to_string(),
    )
    .no_content();
    run(&state, &ctx, op, |tx| {
        Box::pin(async move { Ok(relationships::delete(tx, id).await?) })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NeighbourParams {
    /// `out`, `in` or `both` (default).
    #[param(inline)]
    pub direction: Option<Direction>,
    /// Only edges of this type.
    pub relationship_type: Option<String>,
    /// 1 to 500 (default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Neighbours {
    pub memory_id: String,
    pub relationships: Vec<Relationship>,
}

#[utoipa::path(get, path = "/v1/memories/{memory_id}/neighbours", tag = "graph",
    params(("memory_id" = String, Path), NeighbourParams),
    responses((status = 200, body = Neighbours), (status = 404, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn neighbours(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(memory_id): ApiPath<String>,
    ApiQuery(p): ApiQuery<NeighbourParams>,
) -> ApiResult<Json<Neighbours>> {
    let limit = check_limit(&state.limits, p.limit)?;
    let kind = p
        .relationship_type
        .as_deref()
        .map(RelationType::parse)
        .transpose()?;
    let op = Op::new(
        "relationship.neighbours",
        Resource::Memories,
        Permission::Read,
        memory_id.clone(),
    );
    let id = memory_id.clone();
    let rels = run_with_rules(&state, &ctx, op, |tx, rules| {
        Box::pin(async move {
            let direction = p.direction.unwrap_or(Direction::Both);
            let visible = rules.visibility(Permission::Read.as_str());
            Ok(relationships::neighbours(
                tx,
                &id,
                direction,
                kind.as_ref().map(RelationType::as_str),
                limit,
                &visible,
            )
            .await?)
        })
    })
    .await?;
    Ok(Json(Neighbours {
        memory_id,
        relationships: rels,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GraphParams {
    /// Hops from the memory, 1 to 3 (default 2).
    pub depth: Option<i32>,
    #[param(inline)]
    pub direction: Option<Direction>,
    pub relationship_type: Option<String>,
    /// At most this many nodes, nearest first (1 to 500, default 100).
    pub max_nodes: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GraphNodeOut {
    /// Hops from the root.
    pub depth: i32,
    pub memory: MemoryOut,
}

/// The memories a key may read around a root. Memories its access policies hide are neither
/// returned nor walked through.
#[derive(Debug, Serialize, ToSchema)]
pub struct Graph {
    pub root: String,
    pub nodes: Vec<GraphNodeOut>,
    /// The edges between the nodes, strongest first, at most 2,000 (configurable).
    pub edges: Vec<Relationship>,
}

#[utoipa::path(get, path = "/v1/memories/{memory_id}/graph", tag = "graph",
    params(("memory_id" = String, Path), GraphParams),
    responses((status = 200, body = Graph), (status = 404, body = crate::error::ErrorBody),
              (status = 422, body = crate::error::ErrorBody)),
    security(("api_key" = [])))]
async fn graph(
    State(state): State<AppState>,
    ctx: TenantCtx,
    ApiPath(memory_id): ApiPath<String>,
    ApiQuery(p): ApiQuery<GraphParams>,
) -> ApiResult<Json<Graph>> {
    let limits = &state.limits;
    let depth = p.depth.unwrap_or(2);
    if !(1..=limits.max_graph_depth).contains(&depth) {
        return Err(Invalid::new(
            "depth",
            format!("must be between 1 and {}", limits.max_graph_depth),
        )
        .into());
    }
    let max_nodes = p.max_nodes.unwrap_or(100);
    if !(1..=limits.max_graph_nodes).contains(&max_nodes) {
        return Err(Invalid::new(
            "max_nodes",
            format!("must be between 1 and {}", limits.max_graph_nodes),
        )
        .into());
    }
    let kind = p
        .relationship_type
        .as_deref()
        .map(RelationType::parse)
        .transpose()?;
    let op = Op::new(
        "relationship.graph",
        Resource::Memories,
        Permission::Read,
        memory_id.clone(),
    );
    let id = memory_id.clone();
    let max_edges = limits.max_graph_edges;
    let (nodes, edges) = run_with_rules(&state, &ctx, op, |tx, rules| {
        Box::pin(async move {
            let visible = rules.visibility(Permission::Read.as_str());
            let walk = Walk {
                depth,
                direction: p.direction.unwrap_or(Direction::Both),
                relationship_type: kind.as_ref().map(RelationType::as_str),
                max_nodes,
                max_edges,
                visible: &visible,
            };
            Ok(relationships::traverse(tx, &id, walk).await?)
        })
    })
    .await?;
    Ok(Json(Graph {
        root: memory_id,
        nodes: nodes
            .into_iter()
            .map(|n| GraphNodeOut {
                depth: n.depth,
                memory: n.memory.into(),
            })
            .collect(),
        edges,
    }))
}
