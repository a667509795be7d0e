//! Federated learning across the tenants of a project: what may leave a tenant is only an
//! aggregate with a stated, accounted privacy cost. Pure code: the server stores sessions,
//! contributions and the budget ledger, and calls these functions inside its transactions.
//!
//! - [`lifecycle`]: the session state machine (`forming → active → aggregating → completed |
//!   failed`), one `transition` function and the status table the database mirrors.
//! - [`aggregate`]: L2 clipping, the `weighted`, `consensus` (trimmed mean / median) and `hybrid`
//!   rules, and each rule's L2 sensitivity, derived in its docs.
//! - [`privacy`]: the OpenDP mechanisms — Gaussian (zCDP) on the centroid, discrete Laplace with a
//!   threshold on label counts, discrete Gaussian with a threshold on lessons.
//! - [`accounting`]: zCDP composition, ρ ↔ (ε, δ), per-tenant budgets, and how a session's
//!   (ε, δ) is split between its three releases.
//! - [`lessons`]: per-tenant bounding of labels and lessons, and their sensitivities.
//! - [`extract`]: the labels and lessons read out of a participant's memories, as frequencies.
//! - [`redact`]: redaction of identifying text and JSON fields (`secure` level, sharing rules).
//! - [`reputation`]: `calculate_tenant_reputation` and the agreement it averages.
//! - [`insight`]: one session's release, end to end, with its privacy statement.
//!
//! # The guarantee
//! The privacy unit is the tenant. Two sessions are neighbours when one participating tenant's
//! whole contribution (centroid, size, reputation, labels, lessons) is replaced by any other, the
//! number of participants being public. A `differential` or `secure` insight is (ε, δ)-DP under
//! that relation, for the session's (ε, δ); each participant's ledger is charged the session's
//! zCDP ρ (and the thresholds' δ), so over all its sessions a tenant's data is protected at its
//! budget's (ε, δ). `basic` releases exact aggregates and promises nothing beyond leaving tenant
//! ids out; only tenants that chose it take part in such sessions.

pub mod accounting;
pub mod aggregate;
pub mod extract;
pub mod insight;
pub mod lessons;
pub mod lifecycle;
pub mod privacy;
pub mod redact;
pub mod reputation;
