//! Federated learning across tenants (placeholder map, completed below).

pub mod accounting;
pub mod aggregate;
pub mod lifecycle;
pub mod privacy;
pub mod reputation;
