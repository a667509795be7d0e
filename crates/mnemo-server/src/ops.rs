//! Running one tenant operation: scope check, policy check, the tenant transaction, and the audit
//! row, written in the same transaction on success and in its own after a refusal.

use axum::http::StatusCode;
use futures::future::BoxFuture;
use serde_json::{json, Value};

use mnemo_core::{Permission, Resource};
use mnemo_store::audit::{self, AuditEntry};
use mnemo_store::policies::Rules;
use mnemo_store::{usage, TenantTx};

use crate::auth::TenantCtx;
use crate::error::{ApiError, ApiResult, AuditedRefusal};
use crate::state::AppState;

/// What an operation does, for authorization and the audit trail.
#[derive(Clone)]
pub struct Op {
    /// e.g. `memory.create`.
    pub action: &'static str,
    pub resource: Resource,
    pub permission: Permission,
    /// The resource's id, or `*` for an operation on the whole collection.
    pub resource_id: String,
    /// The status a success answers with.
    pub success: StatusCode,
    /// What a write adds at least (memories, storage bytes), for the quota pre-check of
    /// [`authorize`]; `None` for operations that may also free space (upsert, update).
    pub growth: Option<(i64, i64)>,
}

impl Op {
    pub fn new(
        action: &'static str,
        resource: Resource,
        permission: Permission,
        id: impl Into<String>,
    ) -> Self {
        Self {
            action,
            resource,
            permission,
            // PostgreSQL text cannot hold NUL, and the audit row must be written anyway.
            resource_id: id.into().replace('\0', "\u{fffd}"),
            success: StatusCode::OK,
            growth: None,
        }
    }

    /// Declares that the operation adds at least `memories` memories and `bytes` bytes, so that
    /// [`authorize`] refuses a write that cannot fit the tenant's quota before anything is
    /// embedded. An underestimate is safe ([`run`]'s transaction checks the quota exactly).
    pub fn grows(mut self, memories: i64, bytes: i64) -> Self {
        self.growth = Some((memories, bytes));
        self
    }

    pub fn created(mut self) -> Self {
        self.success = StatusCode::CREATED;
        self
    }

    pub fn no_content(mut self) -> Self {
        self.success = StatusCode::NO_CONTENT;
        self
    }
}

/// Opens the tenant transaction of a request, bounded by the configured statement timeout.
pub async fn begin(state: &AppState, ctx: &TenantCtx) -> mnemo_store::Result<TenantTx> {
    state
        .store
        .begin_tenant_within(&ctx.key.scope, state.limits.statement_timeout)
        .await
}

fn check_scope(ctx: &TenantCtx, op: &Op) -> ApiResult<()> {
    if ctx.allows(op.resource, op.permission) {
        return Ok(());
    }
    Err(ApiError::forbidden(
        "insufficient_scope",
        format!(
            "this key lacks the scope {}:{}",
            op.resource.as_str(),
            op.permission.as_str()
        ),
    ))
}

fn check_policy(rules: &Rules, op: &Op) -> ApiResult<()> {
    if rules.permits(&op.resource_id, op.permission.as_str()) {
        return Ok(());
    }
    Err(policy_denied(op.resource, op.permission, &op.resource_id))
}

/// The refusal of an access policy, for `id` of `resource`.
pub fn policy_denied(resource: Resource, permission: Permission, id: &str) -> ApiError {
    ApiError::forbidden(
        "policy_denied",
        format!(
            "an access policy of this tenant does not permit {} on {} {id:?}",
            permission.as_str(),
            resource.as_str(),
        ),
    )
}

/// Checks, before any costly preparation (embedding texts, calling a provider), that `op` would
/// be allowed: the key's scopes, then the tenant's access policies and, for a write that declares
/// its [`Op::grows`], the tenant's quota headroom, in a short transaction. A
/// refusal is audited exactly as [`run`] audits it. [`run`] checks again, authoritatively, in
/// the transaction that does the work.
pub async fn authorize(state: &AppState, ctx: &TenantCtx, op: &Op) -> ApiResult<()> {
    if let Err(err) = check_scope(ctx, op) {
        audit_refusal(state, ctx, op, &err).await;
        return Err(err.audited());
    }
    let mut tx = begin(state, ctx).await?;
    let checked = async {
        let rules = Rules::load(&mut tx, op.resource.as_str()).await?;
        check_policy(&rules, op)?;
        if let Some((memories, bytes)) = op.growth {
            usage::check_headroom(&mut tx, memories, bytes).await?;
        }
        Ok::<(), ApiError>(())
    }
    .await;
    let _ = tx.rollback().await;
    if let Err(err) = checked {
        audit_refusal(state, ctx, op, &err).await;
        return Err(err.audited());
    }
    Ok(())
}

/// Runs `work` for the tenant of `ctx` inside a [`TenantTx`]. Returns what `work` returned, after
/// committing it together with a success audit row; on any refusal the transaction is rolled back
/// (nothing partial remains) and the refusal is audited.
pub async fn run<T, F>(state: &AppState, ctx: &TenantCtx, op: Op, work: F) -> ApiResult<T>
where
    F: for<'t> FnOnce(&'t mut TenantTx) -> BoxFuture<'t, ApiResult<T>>,
{
    run_with_rules(state, ctx, op, move |tx, _| work(tx)).await
}

/// [`run`], handing `work` the access-policy [`Rules`] of the operation's resource type as well,
/// loaded once, for operations that touch more ids than the one `op` names (graph walks, search
/// expansion, both ends of a relationship).
pub async fn run_with_rules<T, F>(
    state: &AppState,
    ctx: &TenantCtx,
    op: Op,
    work: F,
) -> ApiResult<T>
where
    F: for<'t> FnOnce(&'t mut TenantTx, &'t Rules) -> BoxFuture<'t, ApiResult<T>>,
{
    if let Err(err) = check_scope(ctx, &op) {
        audit_refusal(state, ctx, &op, &err).await;
        return Err(err.audited());
    }
    let mut tx = begin(state, ctx).await?;
    let outcome = async {
        let rules = Rules::load(&mut tx, op.resource.as_str()).await?;
        check_policy(&rules, &op)?;
        work(&mut tx, &rules).await
    }
    .await;
    match outcome {
        Ok(value) => {
            audit::record(&mut tx, entry(ctx, &op, "success", op.success, Value::Null)).await?;
            tx.commit().await?;
            Ok(value)
        }
        Err(err) => {
            let _ = tx.rollback().await;
            audit_refusal(state, ctx, &op, &err).await;
            Err(err.audited())
        }
    }
}

fn entry<'a>(
    ctx: &'a TenantCtx,
    op: &'a Op,
    outcome: &'a str,
    status: StatusCode,
    details: Value,
) -> AuditEntry<'a> {
    AuditEntry {
        action: op.action,
        resource_type: op.resource.as_str(),
        resource_id: Some(op.resource_id.as_str()),
        outcome,
        status_code: status.as_u16(),
        request_id: Some(ctx.request_id.as_str()).filter(|r| !r.is_empty()),
        details: if details.is_null() {
            json!({})
        } else {
            details
        },
    }
}

async fn audit_refusal(state: &AppState, ctx: &TenantCtx, op: &Op, err: &ApiError) {
    // Nothing was decided about the request, and writing the row would only wait out another
    // acquire timeout while the database is away.
    if err.is_database_unavailable() {
        return;
    }
    let write = async {
        let mut tx = begin(state, ctx).await?;
        let details = json!({ "code": err.code });
        audit::record(&mut tx, entry(ctx, op, err.outcome(), err.status, details)).await?;
        tx.commit().await
    };
    if let Err(e) = write.await {
        tracing::error!(error = %e, action = op.action, "could not write the audit row of a refusal");
    }
}

/// Middleware: a tenant request refused before its operation ran (malformed JSON, invalid values,
/// a body over the limit, an unknown route) still leaves an audit row, attributed to the key's
/// tenant. Refusals the runner audited itself carry [`AuditedRefusal`] and are skipped; requests
/// without a valid tenant key (401) cannot be attributed; rate-limited requests (429) are not
/// written, since an audit row each would cost the database the very work the limit sheds.
pub async fn audit_rejections(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    // Only what attribution needs, not a copy of every header of every request.
    let mut headers = axum::http::HeaderMap::new();
    for name in ["authorization", "x-api-key", "x-request-id"] {
        if let Some(v) = req.headers().get(name) {
            headers.insert(name, v.clone());
        }
    }
    let response = next.run(req).await;
    let status = response.status();
    let tenant_route = path.starts_with("/v1/") && !path.starts_with("/v1/admin/");
    if !tenant_route
        || !status.is_client_error()
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::TOO_MANY_REQUESTS
        || response.extensions().get::<AuditedRefusal>().is_some()
    {
        return response;
    }
    let Ok(ctx) = TenantCtx::from_headers(&state, &headers).await else {
        return response;
    };
    let resource_id: String = path
        .chars()
        .take(255)
        .collect::<String>()
        .replace('\0', "\u{fffd}");
    let write = async {
        let mut tx = begin(&state, &ctx).await?;
        let entry = AuditEntry {
            action: "request.rejected",
            resource_type: "http",
            resource_id: Some(&resource_id),
            outcome: if status == StatusCode::NOT_FOUND {
                "not_found"
            } else {
                "invalid"
            },
            status_code: status.as_u16(),
            request_id: Some(ctx.request_id.as_str()).filter(|r| !r.is_empty()),
            details: json!({ "method": method.as_str() }),
        };
        audit::record(&mut tx, entry).await?;
        tx.commit().await
    };
    if let Err(e) = write.await {
        tracing::error!(error = %e, "could not write the audit row of a rejected request");
    }
    response
}
