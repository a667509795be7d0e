//! The HTTP API end to end: the real application on a random port against a fresh PostgreSQL
//! database per test (`eval "$(bash scripts/env.sh)"` provides `DATABASE_URL`).
//!
//! - [`harness`]: `TestApp` (start, call, provision projects/tenants/keys) and the OpenAPI walk.
//! - [`isolation`]: the table of every tenant endpoint; tenant B with A's ids = unknown ids.
//! - [`auth`]: missing, bad, revoked and expired keys; scopes; admin versus tenant keys.
//! - [`bad_input`]: the bad-input sweep over every endpoint, and body limits.
//! - [`memories`]: create, batch, get, list (cursor, filters), patch, upsert, delete, expiry,
//!   server-side embedding.
//! - [`graph`]: relationships, neighbours, traversal on a cycle.
//! - [`admin`]: projects, tenants and keys.
//! - [`audit_quota_policy`]: audit rows for successes and refusals, all-or-nothing batches, quotas,
//!   access policies.
//! - [`serving`]: OpenAPI document, docs page, health, unknown routes.
//! - [`data_integrity`]: expired ids reused under every retention policy, overlapping batches,
//!   maintenance that outlives its client, quotas kept by the usage counters.

mod admin;
mod audit_quota_policy;
mod auth;
mod bad_input;
mod data_integrity;
mod graph;
mod harness;
mod isolation;
mod memories;
mod serving;
