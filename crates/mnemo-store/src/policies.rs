//! Access policies (`tenant_access_policies`): rules that narrow what a tenant's keys may do.
//!
//! A key's scopes say what it may do at most. When active policies exist for a resource type
//! (for all keys, or for this key), a request on that resource type must also be permitted by one
//! of them: its `permissions` include the request's, and its `resource_pattern` matches the
//! resource id (`*` matches everything, a trailing `*` matches a prefix, anything else matches
//! exactly). Requests on a whole collection (list, search, batch) have the resource id `*`, which
//! only the pattern `*` matches.
//!
//! A request loads the applicable policies once ([`Rules`]) and tests every id it touches against
//! them; queries that must drop what a key may not read take the same rule in SQL form
//! ([`Visibility`]).

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

/// Position after the last policy of a page: policies are listed oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// One page of the tenant's policies, oldest first, after `cursor`.
pub async fn list(
    tx: &mut TenantTx,
    cursor: Option<Cursor>,
    limit: i64,
) -> Result<Vec<AccessPolicy>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tenant_access_policies
         WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
         ORDER BY created_at, id LIMIT $4"
    ))
    .bind(tx.tenant_id())
    .bind(cursor.map(|c| c.created_at))
    .bind(cursor.map(|c| c.id))
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// How many policies the tenant holds.
pub async fn count(tx: &mut TenantTx) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM tenant_access_policies WHERE tenant_id = $1")
            .bind(tx.tenant_id())
            .fetch_one(&mut **tx)
            .await?,
    )
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

/// The active policies of one resource type that apply to the transaction's key (those for all
/// keys and those for this key), loaded once per request and then consulted for every id the
/// request touches.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// `(resource_pattern, permissions)`; empty: no applicable policy, scopes alone decide.
    rules: Vec<(String, Vec<String>)>,
}

impl Rules {
    pub async fn load(tx: &mut TenantTx, resource_type: &str) -> Result<Rules> {
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
        Ok(Rules { rules })
    }

    /// Rules from `(resource_pattern, permissions)` pairs, as [`Rules::load`] reads them.
    pub fn from_pairs(rules: Vec<(String, Vec<String>)>) -> Rules {
        Rules { rules }
    }

    /// Whether these rules let the key do `permission` on `resource_id` (see the module docs).
    pub fn permits(&self, resource_id: &str, permission: &str) -> bool {
        self.rules.is_empty()
            || self.rules.iter().any(|(pattern, perms)| {
                perms.iter().any(|p| p == permission) && pattern_matches(pattern, resource_id)
            })
    }

    /// The memory ids `permission` reaches, for queries that must drop the others.
    pub fn visibility(&self, permission: &str) -> Visibility {
        if self.rules.is_empty() {
            return Visibility::everything();
        }
        let mut v = Visibility {
            all: false,
            exact: Vec::new(),
            prefixes: Vec::new(),
        };
        for (pattern, _) in self
            .rules
            .iter()
            .filter(|(_, perms)| perms.iter().any(|p| p == permission))
        {
            match pattern.strip_suffix('*') {
                Some("") => v.all = true,
                Some(prefix) => v.prefixes.push(prefix.to_owned()),
                None => v.exact.push(pattern.clone()),
            }
        }
        v
    }
}

/// The set of resource ids a permission reaches under some [`Rules`], in the form a query can
/// test (see [`Visibility::sql`]): the same rule as [`pattern_matches`], evaluated by PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    pub all: bool,
    pub exact: Vec<String>,
    pub prefixes: Vec<String>,
}

impl Visibility {
    pub fn everything() -> Visibility {
        Visibility {
            all: true,
            exact: Vec::new(),
            prefixes: Vec::new(),
        }
    }

    /// A condition on the text `column` that holds for the visible ids, reading `$n` (bool),
    /// `$n+1` (exact ids) and `$n+2` (prefixes): bind [`Visibility::all`], `exact`, `prefixes`
    /// in that order.
    pub(crate) fn sql(column: &str, n: usize) -> String {
        format!(
            "(${n}::bool OR {column} = ANY(${}::text[]) OR ({column} <> '*' AND EXISTS (
                SELECT 1 FROM unnest(${}::text[]) AS vis(prefix) WHERE starts_with({column}, vis.prefix))))",
            n + 1,
            n + 2
        )
    }
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
    use super::{pattern_matches, Rules, Visibility};

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

    fn rules(pairs: &[(&str, &[&str])]) -> Rules {
        Rules::from_pairs(
            pairs
                .iter()
                .map(|(p, perms)| (p.to_string(), perms.iter().map(|s| s.to_string()).collect()))
                .collect(),
        )
    }

    #[test]
    fn no_rules_permit_everything() {
        let none = rules(&[]);
        assert!(none.permits("anything", "write"));
        assert_eq!(none.visibility("read"), Visibility::everything());
    }

    #[test]
    fn visibility_collects_the_patterns_that_grant_the_permission() {
        let r = rules(&[
            ("notes-*", &["read"]),
            ("todo-1", &["read", "write"]),
            ("*", &["delete"]),
        ]);
        let read = r.visibility("read");
        assert!(!read.all);
        assert_eq!(read.exact, ["todo-1"]);
        assert_eq!(read.prefixes, ["notes-"]);
        let write = r.visibility("write");
        assert!(!write.all && write.prefixes.is_empty());
        assert_eq!(write.exact, ["todo-1"]);
        assert!(r.visibility("delete").all);
        assert!(r.permits("notes-7", "read"));
        assert!(!r.permits("notes-7", "write"));
    }
}
