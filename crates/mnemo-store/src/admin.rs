//! Control plane: projects, tenants, API keys, the admin key. Runs as the owner role; the
//! application role cannot read these tables (except its own tenant and project rows).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::types::Json;
use sqlx::FromRow;
use utoipa::ToSchema;
use uuid::Uuid;

use mnemo_core::IsolationLevel;

use crate::{Result, Store, StoreError, TenantScope};

#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct Project {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub owner_id: String,
    #[schema(value_type = Object)]
    pub settings: Json<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewProject {
    pub name: String,
    pub description: Option<String>,
    pub owner_id: String,
    pub settings: Value,
}

#[derive(Debug, Clone, Default)]
pub struct ProjectPatch {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub owner_id: Option<String>,
    pub settings: Option<Value>,
}

#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct Tenant {
    /// Internal id (used by SQL functions such as `get_tenant_memory_usage`).
    pub id: Uuid,
    /// The public tenant identifier, e.g. `tenant-001`.
    pub tenant_id: String,
    pub project_id: Uuid,
    pub name: String,
    #[sqlx(try_from = "String")]
    #[schema(value_type = String, example = "strict")]
    pub isolation_level: IsolationLevelText,
    pub encryption_enabled: bool,
    pub max_memories: Option<i64>,
    pub max_storage_bytes: Option<i64>,
    /// The tenant's total privacy budget for federated learning: at most this ε, at
    /// `privacy_budget_delta`, over all its releases.
    pub privacy_budget_epsilon: f64,
    pub privacy_budget_delta: f64,
    #[schema(value_type = Object)]
    pub settings: Json<Value>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An isolation level read back from the database's enum (selected as text).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(transparent)]
pub struct IsolationLevelText(pub IsolationLevel);

impl TryFrom<String> for IsolationLevelText {
    type Error = mnemo_core::Invalid;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse().map(IsolationLevelText)
    }
}

#[derive(Debug, Clone)]
pub struct NewTenant {
    pub tenant_id: String,
    pub project_id: Uuid,
    pub name: String,
    pub isolation_level: IsolationLevel,
    pub encryption_enabled: bool,
    pub max_memories: Option<i64>,
    pub max_storage_bytes: Option<i64>,
    pub settings: Value,
}

#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub isolation_level: Option<IsolationLevel>,
    pub encryption_enabled: Option<bool>,
    pub max_memories: Option<Option<i64>>,
    pub max_storage_bytes: Option<Option<i64>>,
    pub settings: Option<Value>,
    pub is_active: Option<bool>,
    /// The privacy budget (ε, δ), already validated (`Budget::parse`).
    pub privacy_budget: Option<mnemo_core::federated::accounting::Budget>,
}

#[derive(Debug, Clone, Serialize, FromRow, ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    /// Internal id of the tenant the key belongs to.
    #[serde(skip)]
    pub tenant_uuid: Uuid,
    pub name: String,
    /// The first characters of the key, to recognise it; the secret itself is never stored.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// An authenticated API key: the tenant scope and what the key may do.
#[derive(Debug, Clone)]
pub struct AuthenticatedKey {
    pub scope: TenantScope,
    pub tenant_key: String,
    pub scopes: Vec<String>,
}

/// A new random secret: `prefix` + 32 random bytes, base64url.
pub fn generate_secret(prefix: &str) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

const TENANT_COLUMNS: &str = "id, tenant_id, project_id, name, isolation_level::text AS isolation_level, \
     encryption_enabled, max_memories, max_storage_bytes, privacy_budget_epsilon, privacy_budget_delta, \
     settings, is_active, created_at, updated_at";

const KEY_COLUMNS: &str =
    "id, tenant_id AS tenant_uuid, name, prefix, scopes, expires_at, revoked_at, \
     last_used_at, created_at";

impl Store {
    // --- projects ---------------------------------------------------------------------------

    pub async fn create_project(&self, p: NewProject) -> Result<Project> {
        Ok(sqlx::query_as(
            "INSERT INTO projects (name, description, owner_id, settings) VALUES ($1, $2, $3, $4)
             RETURNING *",
        )
        .bind(p.name)
        .bind(p.description)
        .bind(p.owner_id)
        .bind(Json(p.settings))
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn list_projects(&self, after: Option<Uuid>, limit: i64) -> Result<Vec<Project>> {
        Ok(sqlx::query_as(
            "SELECT * FROM projects WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn get_project(&self, id: Uuid) -> Result<Project> {
        sqlx::query_as("SELECT * FROM projects WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("project"))
    }

    pub async fn update_project(&self, id: Uuid, p: ProjectPatch) -> Result<Project> {
        sqlx::query_as(
            "UPDATE projects SET
                name = coalesce($2, name),
                description = CASE WHEN $3 THEN $4 ELSE description END,
                owner_id = coalesce($5, owner_id),
                settings = coalesce($6, settings)
             WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .bind(p.name)
        .bind(p.description.is_some())
        .bind(p.description.flatten())
        .bind(p.owner_id)
        .bind(p.settings.map(Json))
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("project"))
    }

    /// Deletes a project. With tenants left it refuses ([`StoreError::Conflict`]) unless `cascade`,
    /// which deletes the tenants and all their data first.
    pub async fn delete_project(&self, id: Uuid, cascade: bool) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let exists: Option<Uuid> =
            sqlx::query_scalar("SELECT id FROM projects WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound("project"));
        }
        if cascade {
            sqlx::query("DELETE FROM tenants WHERE project_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let tenants: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants WHERE project_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if tenants > 0 {
            return Err(StoreError::Conflict {
                constraint: "project_has_tenants".into(),
            });
        }
        sqlx::query("DELETE FROM projects WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    // --- tenants ----------------------------------------------------------------------------

    pub async fn create_tenant(&self, t: NewTenant) -> Result<Tenant> {
        Ok(sqlx::query_as(&format!(
            // The row comes back through a CTE: Citus refuses the enum-to-text cast (not
            // IMMUTABLE) in the RETURNING clause of a write to a reference table.
            "WITH t AS (
                 INSERT INTO tenants (tenant_id, project_id, name, isolation_level, encryption_enabled,
                                      max_memories, max_storage_bytes, settings)
                 VALUES ($1, $2, $3, $4::isolation_level, $5, $6, $7, $8)
                 RETURNING *)
             SELECT {TENANT_COLUMNS} FROM t"
        ))
        .bind(t.tenant_id)
        .bind(t.project_id)
        .bind(t.name)
        .bind(t.isolation_level.as_str())
        .bind(t.encryption_enabled)
        .bind(t.max_memories)
        .bind(t.max_storage_bytes)
        .bind(Json(t.settings))
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn list_tenants(
        &self,
        project: Option<Uuid>,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Tenant>> {
        Ok(sqlx::query_as(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants
             WHERE ($1::uuid IS NULL OR project_id = $1) AND ($2::text IS NULL OR tenant_id > $2)
             ORDER BY tenant_id LIMIT $3"
        ))
        .bind(project)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn get_tenant(&self, tenant_id: &str) -> Result<Tenant> {
        sqlx::query_as(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE tenant_id = $1"
        ))
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("tenant"))
    }

    pub async fn update_tenant(&self, tenant_id: &str, p: TenantPatch) -> Result<Tenant> {
        sqlx::query_as(&format!(
            // Through a CTE, as in create_tenant.
            "WITH t AS (
                 UPDATE tenants SET
                    name = coalesce($2, name),
                    isolation_level = coalesce($3::isolation_level, isolation_level),
                    encryption_enabled = coalesce($4, encryption_enabled),
                    max_memories = CASE WHEN $5 THEN $6 ELSE max_memories END,
                    max_storage_bytes = CASE WHEN $7 THEN $8 ELSE max_storage_bytes END,
                    settings = coalesce($9, settings),
                    is_active = coalesce($10, is_active),
                    privacy_budget_epsilon = coalesce($11, privacy_budget_epsilon),
                    privacy_budget_delta = coalesce($12, privacy_budget_delta)
                 WHERE tenant_id = $1 RETURNING *)
             SELECT {TENANT_COLUMNS} FROM t"
        ))
        .bind(tenant_id)
        .bind(p.name)
        .bind(p.isolation_level.map(|l| l.as_str()))
        .bind(p.encryption_enabled)
        .bind(p.max_memories.is_some())
        .bind(p.max_memories.flatten())
        .bind(p.max_storage_bytes.is_some())
        .bind(p.max_storage_bytes.flatten())
        .bind(p.settings.map(Json))
        .bind(p.is_active)
        .bind(p.privacy_budget.map(|b| b.epsilon))
        .bind(p.privacy_budget.map(|b| b.delta))
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("tenant"))
    }

    /// Deletes a tenant and all its data (memories, relationships, keys, policies). Its audit
    /// trail stays.
    pub async fn delete_tenant(&self, tenant_id: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM tenants WHERE tenant_id = $1")
            .bind(tenant_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("tenant"));
        }
        Ok(())
    }

    // --- API keys ---------------------------------------------------------------------------

    /// Issues a key: returns it with its secret, which is shown this once; only a hash is kept.
    pub async fn create_api_key(
        &self,
        tenant_id: &str,
        name: &str,
        scopes: &[String],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(ApiKey, String)> {
        let secret = generate_secret("mnemo_sk_");
        let prefix: String = secret.chars().take(16).collect();
        let key = sqlx::query_as(&format!(
            "INSERT INTO api_keys (tenant_id, name, prefix, key_hash, scopes, expires_at)
             SELECT id, $2, $3, $4, $5, $6 FROM tenants WHERE tenant_id = $1
             RETURNING {KEY_COLUMNS}"
        ))
        .bind(tenant_id)
        .bind(name)
        .bind(prefix)
        .bind(hash_secret(&secret))
        .bind(scopes)
        .bind(expires_at)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("tenant"))?;
        Ok((key, secret))
    }

    pub async fn list_api_keys(&self, tenant_id: &str) -> Result<Vec<ApiKey>> {
        let tenant = self.get_tenant(tenant_id).await?;
        Ok(sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id"
        ))
        .bind(tenant.id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes a key of the tenant; revoking twice keeps the first revocation time.
    pub async fn revoke_api_key(&self, tenant_id: &str, key_id: Uuid) -> Result<ApiKey> {
        sqlx::query_as(
            "UPDATE api_keys k SET revoked_at = coalesce(k.revoked_at, now())
             FROM tenants t
             WHERE k.id = $2 AND k.tenant_id = t.id AND t.tenant_id = $1
             RETURNING k.id, k.tenant_id AS tenant_uuid, k.name, k.prefix, k.scopes, k.expires_at,
                       k.revoked_at, k.last_used_at, k.created_at",
        )
        .bind(tenant_id)
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("api key"))
    }

    /// Looks a presented key up by the hash of its secret. `None` for an unknown, revoked or expired
    /// key, or one whose tenant is deactivated: the caller answers all of them alike.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<AuthenticatedKey>> {
        type KeyRow = (Uuid, Uuid, String, Vec<String>, Option<DateTime<Utc>>);
        let row: Option<KeyRow> = sqlx::query_as(
            "SELECT k.id, k.tenant_id, t.tenant_id, k.scopes, k.last_used_at
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL
               AND (k.expires_at IS NULL OR k.expires_at > now()) AND t.is_active",
        )
        .bind(hash_secret(secret))
        .fetch_optional(&self.pool)
        .await?;
        let Some((key_id, tenant, tenant_key, scopes, last_used)) = row else {
            return Ok(None);
        };
        // Note use at most once a minute, off the request's path.
        if last_used.is_none_or(|t| Utc::now() - t > chrono::Duration::minutes(1)) {
            let pool = self.pool.clone();
            tokio::spawn(async move {
                let _ = sqlx::query("UPDATE api_keys SET last_used_at = now() WHERE id = $1")
                    .bind(key_id)
                    .execute(&pool)
                    .await;
            });
        }
        Ok(Some(AuthenticatedKey {
            scope: TenantScope::new(tenant, Some(key_id)),
            tenant_key,
            scopes,
        }))
    }

    // --- admin key --------------------------------------------------------------------------

    pub async fn admin_key_hash(&self) -> Result<Option<Vec<u8>>> {
        let v: Option<String> =
            sqlx::query_scalar("SELECT value FROM mnemo_settings WHERE key = 'admin_key_sha256'")
                .fetch_optional(&self.pool)
                .await?;
        Ok(v.and_then(|h| hex::decode(h).ok()))
    }

    /// Stores the hash of a new admin key, replacing any previous one.
    pub async fn set_admin_key(&self, secret: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO mnemo_settings (key, value, updated_at) VALUES ('admin_key_sha256', $1, now())
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
        )
        .bind(hex::encode(hash_secret(secret)))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces the stored admin key, unless a server runs with its admin key from configuration
    /// (`MNEMO_ADMIN_KEY`, see [`Store::record_admin_key_source`]): that server would never read
    /// the new key, and the old one would keep working. Servers that use the stored key read it
    /// on every admin request, so the new key takes effect at once.
    pub async fn rotate_admin_key(&self, secret: &str) -> Result<()> {
        if self.admin_key_configured().await? {
            return Err(StoreError::Conflict {
                constraint: "admin_key_configured".to_owned(),
            });
        }
        self.set_admin_key(secret).await
    }

    /// Records where the running server takes its admin key from: its configuration (`true`) or
    /// the stored hash (`false`).
    pub async fn record_admin_key_source(&self, configured: bool) -> Result<()> {
        sqlx::query(
            "INSERT INTO mnemo_settings (key, value, updated_at) VALUES ('admin_key_source', $1, now())
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
        )
        .bind(if configured {
            "configuration"
        } else {
            "stored"
        })
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether the last server started took its admin key from its configuration.
    pub async fn admin_key_configured(&self) -> Result<bool> {
        let v: Option<String> =
            sqlx::query_scalar("SELECT value FROM mnemo_settings WHERE key = 'admin_key_source'")
                .fetch_optional(&self.pool)
                .await?;
        Ok(v.as_deref() == Some("configuration"))
    }

    /// Stores the hash only if no admin key exists yet; returns whether it did.
    pub async fn init_admin_key(&self, secret: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO mnemo_settings (key, value) VALUES ('admin_key_sha256', $1)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(hex::encode(hash_secret(secret)))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
