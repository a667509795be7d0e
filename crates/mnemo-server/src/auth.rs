//! Authentication: `Authorization: Bearer <key>` (or `X-API-Key: <key>`). A tenant key yields a
//! [`TenantCtx`]: the tenant comes from the key, never from the URL or body. The admin key yields
//! [`AdminCtx`]. The extractors also apply the rate limits ([`crate::rate_limit`]): an address
//! over its failed-authentication limit is refused before its key is looked up; an authenticated
//! request is counted against its key and tenant, or against the admin key.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};

use mnemo_core::{scope::scopes_allow, Permission, Resource};
use mnemo_store::admin::AuthenticatedKey;

use crate::error::ApiError;
use crate::state::{AdminKey, AppState};

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, rest) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| valid_request_id(id))
        .unwrap_or_default()
        .to_owned()
}

/// Request ids are kept as sent when they are 1 to 128 visible ASCII characters; anything else
/// is replaced (see [`crate::check_request_id`]).
pub const MAX_REQUEST_ID: usize = 128;

pub fn valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An authenticated tenant request.
pub struct TenantCtx {
    pub key: AuthenticatedKey,
    pub request_id: String,
}

impl TenantCtx {
    pub fn allows(&self, resource: Resource, permission: Permission) -> bool {
        scopes_allow(&self.key.scopes, resource, permission)
    }
}

impl TenantCtx {
    /// Authenticates the tenant key in `headers`.
    pub async fn from_headers(state: &AppState, headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(secret) = presented_key(headers) else {
            return Err(ApiError::unauthorized(
                "missing API key: send `Authorization: Bearer <key>`",
            ));
        };
        if secret.is_empty() || secret.len() > 256 {
            return Err(ApiError::unauthorized(
                "invalid, revoked or expired API key",
            ));
        }
        match state.store.authenticate(secret).await? {
            Some(key) => Ok(TenantCtx {
                key,
                request_id: request_id(headers),
            }),
            None => Err(ApiError::unauthorized(
                "invalid, revoked or expired API key",
            )),
        }
    }
}

/// The peer address of the connection (absent when the app is served without
/// `ConnectInfo`, e.g. in-process).
fn client_addr(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// A 401 for a key that was presented (not a missing one) counts as a failed attempt of the
/// client's address; over its limit, the answer becomes 429.
fn count_failure(state: &AppState, parts: &Parts, addr: Option<IpAddr>, err: ApiError) -> ApiError {
    match addr {
        Some(addr)
            if err.status == StatusCode::UNAUTHORIZED
                && presented_key(&parts.headers).is_some() =>
        {
            match state.rate_limiter.record_failed_auth(addr) {
                Ok(()) => err,
                Err(limited) => limited.into(),
            }
        }
        _ => err,
    }
}

impl FromRequestParts<AppState> for TenantCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let addr = client_addr(parts);
        if let Some(addr) = addr {
            state.rate_limiter.check_address(addr)?;
        }
        match TenantCtx::from_headers(state, &parts.headers).await {
            Ok(ctx) => {
                state
                    .rate_limiter
                    .check_tenant_request(ctx.key.scope.key_id(), ctx.key.scope.tenant_id())?;
                Ok(ctx)
            }
            Err(err) => Err(count_failure(state, parts, addr, err)),
        }
    }
}

/// A request made with the admin key.
pub struct AdminCtx;

impl FromRequestParts<AppState> for AdminCtx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let addr = client_addr(parts);
        if let Some(addr) = addr {
            state.rate_limiter.check_address(addr)?;
        }
        match AdminCtx::authenticate(parts, state).await {
            Ok(ctx) => {
                state.rate_limiter.check_admin_request()?;
                Ok(ctx)
            }
            Err(err) => Err(count_failure(state, parts, addr, err)),
        }
    }
}

impl AdminCtx {
    async fn authenticate(parts: &Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(secret) = presented_key(&parts.headers) else {
            return Err(ApiError::unauthorized(
                "missing admin key: send `Authorization: Bearer <key>`",
            ));
        };
        let expected = match &state.admin_key {
            AdminKey::Configured(hash) => Some(hash.as_ref().clone()),
            AdminKey::Stored => state.store.admin_key_hash().await?,
        };
        if expected.is_some_and(|h| constant_time_eq(&Sha256::digest(secret.as_bytes()), &h)) {
            return Ok(AdminCtx);
        }
        if secret.len() <= 256 && state.store.authenticate(secret).await?.is_some() {
            return Err(ApiError::forbidden(
                "admin_only",
                "this endpoint needs the admin key, not a tenant key",
            ));
        }
        Err(ApiError::unauthorized("invalid admin key"))
    }
}
