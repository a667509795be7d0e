//! The tenant-scoped transaction.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

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
    /// Opens a tenant transaction with the server's default statement timeout.
    pub async fn begin_tenant(&self, scope: &TenantScope) -> Result<TenantTx> {
        self.begin_tenant_within(scope, None).await
    }

    /// Opens a tenant transaction whose statements are each cancelled after `statement_timeout`
    /// (PostgreSQL's `statement_timeout`, [`crate::StoreError::Cancelled`]); `None` keeps the
    /// server's default.
    pub async fn begin_tenant_within(
        &self,
        scope: &TenantScope,
        statement_timeout: Option<Duration>,
    ) -> Result<TenantTx> {
        // One round trip: BEGIN and the plain `SET LOCAL` statements in one simple query. Plain
        // SETs because Citus forwards them to its workers, which it does not do for set_config().
        // Only digits and a Uuid (hex digits and dashes) are spliced in: no injection possible.
        let mut begin = format!(
            "BEGIN; SET LOCAL ROLE mnemo_app; SET LOCAL app.tenant_id = '{}'",
            scope.tenant
        );
        if let Some(t) = statement_timeout {
            // 0 would mean "no timeout" to PostgreSQL; the smallest bound is 1 ms.
            let ms = t.as_millis().clamp(1, i32::MAX as u128);
            begin.push_str(&format!("; SET LOCAL statement_timeout = {ms}"));
        }
        let tx = self.pool.begin_with(begin).await?;
        Ok(TenantTx {
            tx,
            scope: *scope,
            gin_direct: self.gin_direct(),
        })
    }
}
