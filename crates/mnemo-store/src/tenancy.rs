//! The tenant-scoped transaction.

use std::ops::{Deref, DerefMut};

use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::{Result, Store};

/// Proof that the current work belongs to one tenant, obtained by authenticating an API key
/// ([`crate::admin::authenticate`]). Store functions over tenant data require a [`TenantTx`], which
/// only a scope can open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantScope {
    tenant: Uuid,
    key: Option<Uuid>,
}

impl TenantScope {
    pub(crate) fn new(tenant: Uuid, key: Option<Uuid>) -> Self {
        Self { tenant, key }
    }

    /// A scope without a key, for tests and operator tooling that act on a tenant directly.
    #[cfg(feature = "test-support")]
    pub fn assume(tenant: Uuid) -> Self {
        Self { tenant, key: None }
    }

    pub fn tenant_id(&self) -> Uuid {
        self.tenant
    }

    pub fn key_id(&self) -> Option<Uuid> {
        self.key
    }
}

/// A transaction running as `mnemo_app` (no ownership, no BYPASSRLS) with `app.tenant_id` set:
/// PostgreSQL's Row Level Security confines every statement to the tenant, even one that forgets
/// its `WHERE tenant_id = …`.
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    scope: TenantScope,
    gin_direct: bool,
}

impl TenantTx {
    pub fn scope(&self) -> TenantScope {
        self.scope
    }

    pub fn tenant_id(&self) -> Uuid {
        self.scope.tenant
    }

    /// See [`Store::gin_direct`].
    pub(crate) fn gin_direct(&self) -> bool {
        self.gin_direct
    }

    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}

impl Deref for TenantTx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for TenantTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

impl Store {
    pub async fn begin_tenant(&self, scope: &TenantScope) -> Result<TenantTx> {
        let mut tx = self.pool.begin().await?;
        // Plain `SET LOCAL` statements: Citus forwards these to its workers, which it does not do
        // for set_config(). A Uuid renders only hex digits and dashes, so the literal cannot be an
        // injection.
        sqlx::query("SET LOCAL ROLE mnemo_app")
            .execute(&mut *tx)
            .await?;
        let set_tenant = format!("SET LOCAL app.tenant_id = '{}'", scope.tenant);
        sqlx::query(&set_tenant)
            .persistent(false)
            .execute(&mut *tx)
            .await?;
        Ok(TenantTx {
            tx,
            scope: *scope,
            gin_direct: self.gin_direct(),
        })
    }
}
