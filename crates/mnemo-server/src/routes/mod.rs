//! One module per feature, each exporting `router()`.

pub mod admin;
pub mod contexts;
pub mod federated;
pub mod graph;
pub mod health;
pub mod maintenance;
pub mod memories;
pub mod operations;
pub mod retention;
pub mod search;
pub mod sharing;
pub mod tenant_misc;
