//! The one error shape of the API: `{"error": {"code", "message", "details"}}` with a 4xx/5xx
//! status. Every failure, from a store error to a malformed body, is mapped here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use mnemo_core::Invalid;
use mnemo_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// The operation runner already wrote this refusal's audit row.
    pub audited: bool,
    /// Seconds after which a retry may succeed, sent as `Retry-After` (429 and 503 answers).
    /// (`u16` keeps `ApiError` small enough to return by value everywhere.)
    pub retry_after: Option<u16>,
}

/// `Retry-After` of a `database_unavailable` answer: PostgreSQL restarting takes seconds, and
/// each retry while it is away costs the client up to the pool's acquire timeout.
pub const DATABASE_RETRY_AFTER_SECS: u16 = 2;

/// Response extension marking a refusal that is already in the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct AuditedRefusal;

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `memory_not_found`.
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            audited: false,
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, secs: u16) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// 503 `database_unavailable`: PostgreSQL cannot be reached right now.
    pub fn database_unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is unavailable or every connection is busy; retry after the \
             Retry-After delay",
        )
        .with_retry_after(DATABASE_RETRY_AFTER_SECS)
    }

    /// 429 `rate_limited`: `what` names the limit (`api_key`, `tenant`, `admin_key`,
    /// `failed_auth`), `wait` how long until a request would be let through.
    pub fn rate_limited(what: &'static str, wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let secs = u16::try_from(secs).unwrap_or(u16::MAX);
        let message = match what {
            "api_key" => "too many requests with this API key",
            "tenant" => "too many requests for this tenant",
            "admin_key" => "too many requests with the admin key",
            "failed_auth" => "too many failed authentication attempts from this address",
            _ => "too many requests",
        };
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("{message}; retry after the Retry-After delay"),
        )
        .with_details(serde_json::json!({ "limit": what }))
        .with_retry_after(secs)
    }

    /// Whether this is the database being unreachable (nothing about the request was decided).
    pub fn is_database_unavailable(&self) -> bool {
        self.code == "database_unavailable"
    }

    pub fn audited(mut self) -> Self {
        self.audited = true;
        self
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_value", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    /// The audit outcome this error stands for.
    pub fn outcome(&self) -> &'static str {
        match self.status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS => {
                "denied"
            }
            s if s.is_client_error() => "invalid",
            _ => "error",
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::unprocessable(e.to_string()).with_details(serde_json::json!({ "field": e.field }))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => {
                let code = match what {
                    "memory" => "memory_not_found",
                    "context" => "context_not_found",
                    "relationship" => "relationship_not_found",
                    "policy" => "policy_not_found",
                    "project" => "project_not_found",
                    "tenant" => "tenant_not_found",
                    "api key" => "api_key_not_found",
                    "session" => "session_not_found",
                    "participant" => "participant_not_found",
                    "sharing rule" => "sharing_rule_not_found",
                    "retention policy" => "retention_policy_not_found",
                    _ => "not_found",
                };
                ApiError::not_found(code, format!("{what} not found"))
            }
            StoreError::Conflict { constraint } => {
                let (code, message) = match constraint.as_str() {
                    "project_has_tenants" => (
                        "project_has_tenants",
                        "the project still has tenants; delete them first or pass ?cascade=true"
                            .to_owned(),
                    ),
                    "projects_name_key" => (
                        "project_exists",
                        "a project with this name exists".to_owned(),
                    ),
                    "tenants_tenant_id_key" => (
                        "tenant_exists",
                        "a tenant with this tenant_id exists".to_owned(),
                    ),
                    // PostgreSQL truncates generated constraint names to 63 bytes.
                    "memory_relationships_tenant_id_source_memory_id_target_memo_key" => (
                        "relationship_exists",
                        "this relationship (source, target, type) exists".to_owned(),
                    ),
                    "tenant_access_policies_tenant_id_name_key" => {
                        ("policy_exists", "a policy with this name exists".to_owned())
                    }
                    "admin_key_configured" => (
                        "admin_key_configured",
                        "the server takes its admin key from MNEMO_ADMIN_KEY; change that \
                         variable and restart the server instead"
                            .to_owned(),
                    ),
                    c if c.starts_with("memory_id exists")
                        || c == "contextual_memories_tenant_memory_key" =>
                    {
                        (
                            "memory_exists",
                            format!("a memory with this memory_id exists ({c})"),
                        )
                    }
                    "offloaded_contexts_tenant_id_context_id_key" => (
                        "context_exists",
                        "a context with this context_id exists; PUT replaces it".to_owned(),
                    ),
                    "federated_sessions_project_session_key" => (
                        "session_exists",
                        "a session with this session_id exists in the project".to_owned(),
                    ),
                    "federated_sessions_status_transition" | "federated_sessions_terms" => (
                        "illegal_transition",
                        "the session's status changed meanwhile and does not allow this; read it again"
                            .to_owned(),
                    ),
                    "federated_memberships_pkey" => (
                        "already_member",
                        "this tenant is already in this session".to_owned(),
                    ),
                    "tenant_sharing_rules_target_key" => (
                        "sharing_rule_exists",
                        "this tenant already has a sharing rule for this target".to_owned(),
                    ),
                    c if c.starts_with("participant_in_sessions") => (
                        "participant_in_sessions",
                        format!(
                            "leave the open sessions first ({})",
                            c.trim_start_matches("participant_in_sessions: ")
                        ),
                    ),
                    mnemo_store::CONCURRENT_WRITE => (
                        "write_conflict",
                        "a concurrent request wrote the same data; nothing of this one was kept, retry it"
                            .to_owned(),
                    ),
                    c => ("conflict", format!("conflicts with existing data ({c})")),
                };
                ApiError::new(StatusCode::CONFLICT, code, message)
            }
            StoreError::Invalid { message } => ApiError::unprocessable(message),
            StoreError::MissingReference { constraint } => ApiError::not_found(
                "reference_not_found",
                format!("a referenced resource does not exist ({constraint})"),
            ),
            StoreError::Quota(message) => {
                ApiError::new(StatusCode::FORBIDDEN, "quota_exceeded", message)
            }
            StoreError::Cancelled(e) => {
                tracing::warn!(error = %e, "a statement exceeded the statement timeout");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "statement_timeout",
                    "the request took longer than the database allows one request to run; \
                     narrow it (filters, k, depth, page size) or retry later",
                )
            }
            StoreError::Unavailable(e) => {
                tracing::warn!(error = %e, "database unavailable");
                ApiError::database_unavailable()
            }
            StoreError::Migrate(e) => {
                tracing::error!(error = %e, "migration error");
                ApiError::internal("database migration error")
            }
            StoreError::Database(e) => {
                tracing::error!(error = %e, "database error");
                ApiError::internal("internal database error")
            }
        }
    }
}

/// The provider's answer and address stay in the logs: its error body may echo what the
/// operator configured (keys, account names) and its URL may carry credentials.
impl From<mnemo_embed::EmbedError> for ApiError {
    fn from(e: mnemo_embed::EmbedError) -> Self {
        tracing::error!(error = %e, "embedding failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "embedding_unavailable",
            "the embedding provider is unavailable; retry later, or send `embedding` (`vector` \
             to search) with the request",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                details: self.details,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        if self.audited {
            response.extensions_mut().insert(AuditedRefusal);
        }
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

/// The error code of an error response, for the metrics middleware (`crate::telemetry`).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_answers_503_database_unavailable_with_retry_after() {
        let r = ApiError::from(StoreError::Unavailable("pool timed out".into())).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let retry_after = r.headers().get(axum::http::header::RETRY_AFTER);
        assert_eq!(
            retry_after.and_then(|v| v.to_str().ok()),
            Some(DATABASE_RETRY_AFTER_SECS.to_string().as_str())
        );
    }
}
