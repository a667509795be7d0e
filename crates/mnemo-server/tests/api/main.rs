//! The HTTP API end to end: the real application on a random port against a fresh PostgreSQL
//! database per test (`eval "$(bash scripts/env.sh)"` provides `DATABASE_URL`).
//!
//! - [`harness`]: `TestApp` (start, call, provision projects/tenants/keys) and the OpenAPI walk.
//! - [`isolation`]: the table of every tenant endpoint; tenant B with A's ids = unknown ids.
//! - [`auth`]: missing, bad, revoked and expired keys; scopes; admin versus tenant keys.
//! - [`bad_input`]: the bad-input sweep over every endpoint, and body limits.
//! - [`memories`]: create, batch, get, list (cursor, filters), patch, upsert, delete, expiry,
//!   server-side embedding.
//! - [`graph`]: relationships, neighbours, traversal on a cycle; walks pass only through live
//!   memories the key's access policies let it read.
//! - [`admin`]: projects, tenants and keys; rotation of the admin key.
//! - [`audit_quota_policy`]: audit rows for successes and refusals, all-or-nothing batches, quotas,
//!   access policies, request ids.
//! - [`serving`]: OpenAPI document, docs page, health, unknown routes.
//! - [`limits`]: bounds on what one request may cost (filter size, statement timeout, metadata
//!   size, graph edges, pages of policies).
//! - [`embedding`]: authorization before embedding; provider errors kept from tenants.
//! - [`data_integrity`]: expired ids reused under every retention policy, overlapping batches,
//!   maintenance that outlives its client, quotas kept by the usage counters.
//! - [`operations`]: `/metrics` (parsed exposition, labels), readiness, health history.
//! - [`rate_limits`]: per key, per tenant, admin key, failed authentication per address.
//! - [`contexts`]: context offloading: byte-exact round trips (a property test over HTTP),
//!   reconstruction within budgets, a planted answer found first, order and overlap merging,
//!   all-or-nothing writes, quotas, expiry, chat-model summaries, isolation.
//! - [`federated`]: federated sessions end to end (lifecycle, budgets, strict tenants, projects,
//!   the deadline job) and the worked example of docs/federated.md.
//! - [`retention`]: retention policies, preview = run, archive and restore, concurrent cleanups.
//! - [`sharing`]: sharing rules and the `shared` search scope (anonymization, revocation, audit).

mod admin;
mod audit_quota_policy;
mod auth;
mod bad_input;
mod contexts;
mod data_integrity;
mod embedding;
mod federated;
mod graph;
mod harness;
mod isolation;
mod limits;
mod memories;
mod operations;
mod rate_limits;
mod retention;
mod serving;
mod sharing;
