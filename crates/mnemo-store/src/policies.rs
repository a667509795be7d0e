//! Access policies (`tenant_access_policies`): rules that narrow what a tenant's keys may do.
//!
//! A key's scopes say what it may do at most. When active policies exist for a resource type
//! (for all keys, or for this key), a request on that resource type must also be permitted by one
//! of them: its `permissions` include the request's, and its `resource_pattern` matches the
//! resource id (`*` matches everything, a trailing `*` matches a prefix, anything else matches
//! exactly). Requests on a whole collection (list, search, batch) have the resource id `*`, which
//! only the pattern `*` matches.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::FromRow;
use uuid::Uuid;

use crate::{Result, StoreError, TenantTx};

#[derive(Debug, Clone, Serialize, FromRow, utoipa::ToSchema)]
pub struct AccessPolicy {
    pub id: Uuid,
    pub name: String,
    pub resource_type: String,
    pub resource_pattern: String,
    pub permissions: Vec<String>,
    /// The key this policy applies to; all keys of the tenant when absent.
    pub api_key_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub conditions: Json<Value>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewPolicy {
    pub name: String,
    pub resource_type: String,
    pub resource_pattern: String,
    pub permissions: Vec<String>,
    pub api_key_id: Option<Uuid>,
    pub conditions: Value,
    pub is_active: bool,
}

const COLUMNS: &str =
    "id, name, resource_type, resource_pattern, permissions, api_key_id, conditions, \
     is_active, created_at, updated_at";

pub async fn create(tx: &mut TenantTx, p: NewPolicy) -> Result<AccessPolicy> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO tenant_access_policies
            (tenant_id, name, resource_type, resource_pattern, permissions, api_key_id, conditions, is_active)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    ))
    .bind(tx.tenant_id())
    .bind(p.name)
    .bind(p.resource_type)
    .bind(p.resource_pattern)
    .bind(p.permissions)
    .bind(p.api_key_id)
    .bind(Json(p.conditions))
    .bind(p.is_active)
    .fetch_one(&mut **tx)
    .await?)
}

pub async fn list(tx: &mut TenantTx) -> Result<Vec<AccessPolicy>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tenant_access_policies WHERE tenant_id = $1 ORDER BY created_at, id"
    ))
    .bind(tx.tenant_id())
    .fetch_all(&mut **tx)
    .await?)
}

pub async fn get(tx: &mut TenantTx, id: Uuid) -> Result<AccessPolicy> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tenant_access_policies WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tx.tenant_id())
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("policy"))
}

pub async fn set_active(tx: &mut TenantTx, id: Uuid, active: bool) -> Result<AccessPolicy> {
    sqlx::query_as(&format!(
        "UPDATE tenant_access_policies SET is_active = $3 WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(tx.tenant_id())
    .bind(id)
    .bind(active)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or(StoreError::NotFound("policy"))
}

pub async fn delete(tx: &mut TenantTx, id: Uuid) -> Result<()> {
    let done = sqlx::query("DELETE FROM tenant_access_policies WHERE tenant_id = $1 AND id = $2")
        .bind(tx.tenant_id())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound("policy"));
    }
    Ok(())
}

/// Whether the policies let the transaction's key do `permission` on `resource_type`/`resource_id`
/// (see the module docs). No applicable active policy: allowed (scopes alone decide).
pub async fn permits(
    tx: &mut TenantTx,
    resource_type: &str,
    resource_id: &str,
    permission: &str,
) -> Result<bool> {
    let rules: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT resource_pattern, permissions FROM tenant_access_policies
         WHERE tenant_id = $1 AND is_active AND resource_type = $2
           AND (api_key_id IS NULL OR api_key_id = $3)",
    )
    .bind(tx.tenant_id())
    .bind(resource_type)
    .bind(tx.scope().key_id())
    .fetch_all(&mut **tx)
    .await?;
    if rules.is_empty() {
        return Ok(true);
    }
    Ok(rules.iter().any(|(pattern, perms)| {
        perms.iter().any(|p| p == permission) && pattern_matches(pattern, resource_id)
    }))
}

pub fn pattern_matches(pattern: &str, id: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => id != "*" && id.starts_with(prefix),
        None => pattern == id,
    }
}

#[cfg(test)]
mod tests {
    use super::pattern_matches;

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("*", "*"));
        assert!(pattern_matches("notes-*", "notes-1"));
        assert!(!pattern_matches("notes-*", "todo-1"));
        assert!(!pattern_matches("notes-*", "*"));
        assert!(pattern_matches("m1", "m1"));
        assert!(!pattern_matches("m1", "m2"));
    }
}
