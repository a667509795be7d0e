//! `mnemo admin …`: the admin API's operations straight against the database (and a tenant's
//! privacy budget and federated standing), and backup and restore ([`crate::backup`]).

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use serde::Serialize;
use uuid::Uuid;

use mnemo_core::federated::accounting::Budget;
use mnemo_core::federated::reputation::ReputationParams;
use mnemo_core::{IsolationLevel, Name, Scope, TenantKey};
use mnemo_store::admin::{generate_secret, NewProject, NewTenant, TenantPatch};
use mnemo_store::Store;

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create a project.
    CreateProject {
        #[arg(long)]
        name: String,
        #[arg(long)]
        owner: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List projects.
    ListProjects,
    /// Delete a project (with --cascade, also its tenants and their data).
    DeleteProject {
        id: Uuid,
        #[arg(long)]
        cascade: bool,
    },
    /// Create a tenant in a project.
    CreateTenant {
        #[arg(long)]
        project: Uuid,
        #[arg(long)]
        tenant_id: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "strict")]
        isolation: String,
        #[arg(long)]
        encryption: bool,
        #[arg(long)]
        max_memories: Option<i64>,
        #[arg(long)]
        max_storage_bytes: Option<i64>,
    },
    /// Set a tenant's total privacy budget for federated learning (ε at δ; default 10 at 1e-6).
    SetPrivacyBudget {
        tenant_id: String,
        #[arg(long)]
        epsilon: f64,
        #[arg(long, default_value_t = 1e-6)]
        delta: f64,
    },
    /// Show a tenant's federated standing: budget, ledger, reputation with its parts.
    FederatedStatus { tenant_id: String },
    /// List tenants, optionally of one project.
    ListTenants {
        #[arg(long)]
        project: Option<Uuid>,
    },
    /// Delete a tenant and all its data.
    DeleteTenant { tenant_id: String },
    /// Create an API key for a tenant; prints the secret once.
    CreateKey {
        #[arg(long)]
        tenant_id: String,
        #[arg(long)]
        name: String,
        /// Repeat for several scopes, e.g. --scope memories:read --scope memories:write.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// RFC 3339 time, e.g. 2027-01-01T00:00:00Z.
        #[arg(long)]
        expires_at: Option<DateTime<Utc>>,
    },
    /// List a tenant's keys (never their secrets).
    ListKeys { tenant_id: String },
    /// Revoke a key; it stops working on the next request.
    RevokeKey { tenant_id: String, key_id: Uuid },
    /// Back the database up into FILE (pg_dump, custom format; needs PostgreSQL's client
    /// programs: MNEMO_PG_BIN or PATH).
    Backup { file: PathBuf },
    /// On a Citus coordinator: turn the migrated schema into the distributed layout (reference
    /// tables for the control plane, tenant tables distributed by tenant_id and co-located).
    /// Idempotent; prints the placement of every table. See docs/scaling.md.
    Distribute,
    /// Restore a backup into the database of DATABASE_URL, which must be empty or not exist yet.
    /// Stop the servers using it first.
    Restore {
        file: PathBuf,
        /// Drop a non-empty database and restore in its place.
        #[arg(long)]
        force: bool,
    },
    /// Replace the stored admin key with a new one and print it once; servers use it from their
    /// next admin request. Refused while MNEMO_ADMIN_KEY is set here or on the server.
    RotateAdminKey,
}

fn print<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

pub async fn run(database_url: &str, cmd: AdminCommand) -> anyhow::Result<()> {
    // Neither may migrate first: a backup records the database as it is, and a restore needs
    // an empty one.
    match cmd {
        AdminCommand::Backup { file } => return crate::backup::backup(database_url, &file).await,
        AdminCommand::Restore { file, force } => {
            return crate::backup::restore(database_url, &file, force).await
        }
        _ => {}
    }
    let store = Store::connect(database_url, 2)
        .await
        .context("connecting to PostgreSQL")?;
    store.migrate().await?;
    match cmd {
        AdminCommand::CreateProject {
            name,
            owner,
            description,
        } => {
            let p = NewProject {
                name: Name::parse("name", &name)?.into_string(),
                owner_id: Name::parse("owner", &owner)?.into_string(),
                description,
                settings: serde_json::json!({}),
            };
            print(&store.create_project(p).await?)
        }
        AdminCommand::ListProjects => print(&store.list_projects(None, 10_000).await?),
        AdminCommand::DeleteProject { id, cascade } => {
            store.delete_project(id, cascade).await?;
            println!("project {id} deleted");
            Ok(())
        }
        AdminCommand::CreateTenant {
            project,
            tenant_id,
            name,
            isolation,
            encryption,
            max_memories,
            max_storage_bytes,
        } => {
            let t = NewTenant {
                tenant_id: TenantKey::parse(&tenant_id)?.as_str().to_owned(),
                project_id: project,
                name: Name::parse("name", &name)?.into_string(),
                isolation_level: isolation.parse::<IsolationLevel>()?,
                encryption_enabled: encryption,
                max_memories,
                max_storage_bytes,
                settings: serde_json::json!({}),
            };
            print(&store.create_tenant(t).await?)
        }
        AdminCommand::SetPrivacyBudget {
            tenant_id,
            epsilon,
            delta,
        } => {
            let patch = TenantPatch {
                privacy_budget: Some(Budget::parse(epsilon, delta)?),
                ..TenantPatch::default()
            };
            print(&store.update_tenant(&tenant_id, patch).await?)
        }
        AdminCommand::FederatedStatus { tenant_id } => {
            let tenant = store.get_tenant(&tenant_id).await?;
            let params = ReputationParams::default();
            let participant =
                store
                    .federated_participant(&tenant_id, 20)
                    .await?
                    .map(|(p, ledger)| {
                        let budget = p.budget();
                        let spent = budget.spent_epsilon(&p.ledger());
                        serde_json::json!({
                            "privacy_level": p.privacy_level,
                            "is_active": p.is_active,
                            "reputation": p.reputation(&params),
                            "rho_spent": p.rho_spent,
                            "delta_spent": p.delta_spent,
                            "epsilon_spent": spent,
                            "ledger": ledger,
                        })
                    });
            print(&serde_json::json!({
                "tenant_id": tenant.tenant_id,
                "privacy_budget": { "epsilon": tenant.privacy_budget_epsilon, "delta": tenant.privacy_budget_delta },
                "participant": participant,
            }))
        }
        AdminCommand::ListTenants { project } => {
            print(&store.list_tenants(project, None, 10_000).await?)
        }
        AdminCommand::DeleteTenant { tenant_id } => {
            store.delete_tenant(&tenant_id).await?;
            println!("tenant {tenant_id} deleted");
            Ok(())
        }
        AdminCommand::CreateKey {
            tenant_id,
            name,
            scopes,
            expires_at,
        } => {
            for s in &scopes {
                Scope::parse(s)?;
            }
            let name = Name::parse("name", &name)?;
            let (key, secret) = store
                .create_api_key(&tenant_id, name.as_str(), &scopes, expires_at)
                .await?;
            print(&serde_json::json!({ "key": key, "secret": secret }))
        }
        AdminCommand::ListKeys { tenant_id } => print(&store.list_api_keys(&tenant_id).await?),
        AdminCommand::RevokeKey { tenant_id, key_id } => {
            print(&store.revoke_api_key(&tenant_id, key_id).await?)
        }
        AdminCommand::Backup { .. } | AdminCommand::Restore { .. } => Ok(()),
        AdminCommand::Distribute => {
            let started = std::time::Instant::now();
            let report = mnemo_store::citus::distribute(store.pool()).await?;
            eprintln!(
                "distributed on Citus {} with {} workers in {:.1} s ({} tables placed by this run)",
                report.citus_version,
                report.workers,
                started.elapsed().as_secs_f64(),
                report.created.len()
            );
            print(&report)
        }
        AdminCommand::RotateAdminKey => {
            if std::env::var_os("MNEMO_ADMIN_KEY").is_some_and(|v| !v.is_empty()) {
                anyhow::bail!(
                    "MNEMO_ADMIN_KEY is set: the admin key comes from that variable, and a \
                     rotated key would never take effect. Change the variable and restart the \
                     server instead."
                );
            }
            let key = generate_secret("mnemo_admin_");
            match store.rotate_admin_key(&key).await {
                Err(mnemo_store::StoreError::Conflict { constraint })
                    if constraint == "admin_key_configured" =>
                {
                    anyhow::bail!(
                        "the server was started with MNEMO_ADMIN_KEY: it would ignore a rotated \
                         key. Change that variable and restart the server instead."
                    )
                }
                other => other?,
            }
            println!("{key}");
            eprintln!("(running servers accept only this key from their next admin request on)");
            Ok(())
        }
    }
}
