//! Mnemo's domain: the values the service accepts, each parsed once at the edge so the rest of the
//! code can trust it. No IO lives here.
//!
//! - [`types`]: validated identifiers and values (`TenantKey`, `MemoryId`, `RelevanceScore`,
//!   `Embedding`, `Tags`, …) and the seed's enums (`IsolationLevel`, `PrivacyLevel`, …).
//! - [`federated`]: federated learning across tenants, pure parts: the session state machine,
//!   robust aggregation with derived sensitivities, the OpenDP noise mechanisms, zCDP budget
//!   accounting, lesson/label bounding, redaction and reputation.
//! - [`latency`]: one sampling window's request count, errors and latency percentiles.
//! - [`retention`]: retention policies (what a tenant keeps, how long, and what happens to the rest).
//! - [`scope`]: API key scopes and the permissions they grant.
//! - [`text`]: which text of a memory's JSON content is embedded and searched.
//! - [`context`]: context offloading's algorithms: byte-exact capture of `messages`/`text`, token
//!   counting (tiktoken), sentence splitting, chunking, extractive summary, budget-safe prompt
//!   packing, zstd compression, and a synthetic transcript corpus.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod context;
pub mod federated;
pub mod latency;
pub mod retention;
pub mod scope;
pub mod text;
pub mod types;

pub use scope::{Permission, Resource, Scope};
pub use types::*;

/// Why a value was refused. `field` names the offending input for the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
