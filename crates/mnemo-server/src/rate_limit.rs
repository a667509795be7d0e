//! Request rate limits: per API key, per tenant (all its keys together), for the admin key, and
//! for failed authentication per client address (brute-force protection). GCRA buckets from the
//! `governor` crate, counted in this process's memory: several server processes each let the
//! full rate through, and a restart starts every bucket full.
//!
//! A limit is a steady rate per second and a burst (the bucket's size). A refused request answers
//! 429 `rate_limited` with `Retry-After` ([`Limited`] → [`crate::ApiError`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;

/// One request per `period` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    period: Duration,
    burst: NonZeroU32,
}

impl Rate {
    /// `per_second` requests a second; `None` when it is 0: that limit is off. A burst of 0
    /// means a burst of one.
    pub fn new(per_second: u32, burst: u32) -> Option<Rate> {
        let per_second = NonZeroU32::new(per_second)?;
        Some(Self::every(
            Duration::from_secs(1) / per_second.get(),
            burst,
        ))
    }

    /// One request per `period` (at least a nanosecond), up to `burst` at once.
    pub fn every(period: Duration, burst: u32) -> Rate {
        Rate {
            period: period.max(Duration::from_nanos(1)),
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        }
    }

    fn quota(self) -> Quota {
        Quota::with_period(self.period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(self.burst)
    }
}

/// Which limits apply; `None` turns one off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    pub per_key: Option<Rate>,
    pub per_tenant: Option<Rate>,
    pub admin: Option<Rate>,
    /// Requests presenting a key that does not authenticate, per client address.
    pub failed_auth: Option<Rate>,
}

impl RateLimits {
    /// Every limit off: [`crate::Limits::default`], so embedding the library (and its tests) is
    /// never throttled by accident. `mnemo serve` turns them on (see its configuration).
    pub const fn off() -> Self {
        Self {
            per_key: None,
            per_tenant: None,
            admin: None,
            failed_auth: None,
        }
    }
}

/// A refused request: which limit, and how long until one would pass.
#[derive(Debug, Clone, Copy)]
pub struct Limited {
    pub limit: &'static str,
    pub wait: Duration,
}

impl From<Limited> for ApiError {
    fn from(l: Limited) -> Self {
        ApiError::rate_limited(l.limit, l.wait)
    }
}

/// Requests refused so far, per limit (for `/metrics` once it exists).
#[derive(Debug, Default)]
pub struct RejectedCounters {
    pub api_key: AtomicU64,
    pub tenant: AtomicU64,
    pub admin_key: AtomicU64,
    pub failed_auth: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct RejectedCounts {
    pub api_key: u64,
    pub tenant: u64,
    pub admin_key: u64,
    pub failed_auth: u64,
}

/// Every `PRUNE_EVERY` checks, buckets that have refilled are forgotten, so memory follows the keys,
/// tenants and addresses seen recently rather than all ever seen.
const PRUNE_EVERY: u64 = 4096;

/// The buckets of one server process.
pub struct RateLimiter {
    per_key: Option<DefaultKeyedRateLimiter<Uuid>>,
    per_tenant: Option<DefaultKeyedRateLimiter<Uuid>>,
    admin: Option<DefaultDirectRateLimiter>,
    failed_auth: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Addresses over the failed-authentication limit, refused before their key is looked up
    /// until the instant stored (a governor bucket cannot be read without taking from it).
    blocked: Mutex<HashMap<IpAddr, Instant>>,
    checks: AtomicU64,
    rejected: RejectedCounters,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("rejected", &self.rejected())
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(limits: &RateLimits) -> Self {
        Self {
            per_key: limits
                .per_key
                .map(|r| governor::RateLimiter::keyed(r.quota())),
            per_tenant: limits
                .per_tenant
                .map(|r| governor::RateLimiter::keyed(r.quota())),
            admin: limits
                .admin
                .map(|r| governor::RateLimiter::direct(r.quota())),
            failed_auth: limits
                .failed_auth
                .map(|r| governor::RateLimiter::keyed(r.quota())),
            blocked: Mutex::default(),
            checks: AtomicU64::new(0),
            rejected: RejectedCounters::default(),
            clock: DefaultClock::default(),
        }
    }

    /// An authenticated tenant request: the key's bucket, then the tenant's.
    pub fn check_tenant_request(&self, key: Option<Uuid>, tenant: Uuid) -> Result<(), Limited> {
        self.tick();
        if let (Some(limiter), Some(key)) = (&self.per_key, key) {
            if let Err(not_until) = limiter.check_key(&key) {
                return Err(self.refuse(
                    "api_key",
                    &self.rejected.api_key,
                    not_until.wait_time_from(self.clock.now()),
                ));
            }
        }
        if let Some(limiter) = &self.per_tenant {
            if let Err(not_until) = limiter.check_key(&tenant) {
                return Err(self.refuse(
                    "tenant",
                    &self.rejected.tenant,
                    not_until.wait_time_from(self.clock.now()),
                ));
            }
        }
        Ok(())
    }

    /// An authenticated admin request.
    pub fn check_admin_request(&self) -> Result<(), Limited> {
        if let Some(limiter) = &self.admin {
            if let Err(not_until) = limiter.check() {
                return Err(self.refuse(
                    "admin_key",
                    &self.rejected.admin_key,
                    not_until.wait_time_from(self.clock.now()),
                ));
            }
        }
        Ok(())
    }

    /// Before a presented key is looked up: refused while `addr` is over its failed-attempt
    /// limit, whatever the key (a right guess must not get through either).
    pub fn check_address(&self, addr: IpAddr) -> Result<(), Limited> {
        if self.failed_auth.is_none() {
            return Ok(());
        }
        let now = Instant::now();
        let until = self
            .blocked
            .lock()
            .ok()
            .and_then(|b| b.get(&addr).copied())
            .filter(|until| *until > now);
        match until {
            Some(until) => Err(self.refuse("failed_auth", &self.rejected.failed_auth, until - now)),
            None => Ok(()),
        }
    }

    /// A presented key did not authenticate: counts against `addr`. Over the limit, this and
    /// every request from `addr` are refused until the bucket lets one through again.
    pub fn record_failed_auth(&self, addr: IpAddr) -> Result<(), Limited> {
        self.tick();
        let Some(limiter) = &self.failed_auth else {
            return Ok(());
        };
        match limiter.check_key(&addr) {
            Ok(_) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                if let Ok(mut blocked) = self.blocked.lock() {
                    blocked.insert(addr, Instant::now() + wait);
                }
                Err(self.refuse("failed_auth", &self.rejected.failed_auth, wait))
            }
        }
    }

    pub fn rejected(&self) -> RejectedCounts {
        let r = &self.rejected;
        RejectedCounts {
            api_key: r.api_key.load(Ordering::Relaxed),
            tenant: r.tenant.load(Ordering::Relaxed),
            admin_key: r.admin_key.load(Ordering::Relaxed),
            failed_auth: r.failed_auth.load(Ordering::Relaxed),
        }
    }

    fn refuse(&self, limit: &'static str, counter: &AtomicU64, wait: Duration) -> Limited {
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(limit, wait_ms = wait.as_millis() as u64, "rate limited");
        Limited { limit, wait }
    }

    fn tick(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY != PRUNE_EVERY - 1 {
            return;
        }
        for limiter in [&self.per_key, &self.per_tenant].into_iter().flatten() {
            limiter.retain_recent();
        }
        if let Some(limiter) = &self.failed_auth {
            limiter.retain_recent();
        }
        let now = Instant::now();
        if let Ok(mut blocked) = self.blocked.lock() {
            blocked.retain(|_, until| *until > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limits: RateLimits) -> RateLimiter {
        RateLimiter::new(&limits)
    }

    #[test]
    fn a_rate_of_zero_turns_the_limit_off() {
        assert_eq!(Rate::new(0, 10), None);
        let off = limiter(RateLimits::off());
        for _ in 0..10_000 {
            assert!(off
                .check_tenant_request(Some(Uuid::nil()), Uuid::nil())
                .is_ok());
            assert!(off.check_admin_request().is_ok());
            assert!(off.record_failed_auth(IpAddr::from([127, 0, 0, 1])).is_ok());
        }
    }

    #[test]
    fn a_key_gets_its_burst_then_is_refused_with_a_wait() {
        let l = limiter(RateLimits {
            per_key: Rate::new(1, 3),
            ..RateLimits::off()
        });
        let (key, tenant) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..3 {
            assert!(l.check_tenant_request(Some(key), tenant).is_ok());
        }
        let refused = l
            .check_tenant_request(Some(key), tenant)
            .expect_err("refused");
        assert_eq!(refused.limit, "api_key");
        assert!(refused.wait > Duration::ZERO && refused.wait <= Duration::from_secs(1));
        // Another key of the same tenant has its own bucket.
        assert!(l.check_tenant_request(Some(Uuid::new_v4()), tenant).is_ok());
        assert_eq!(l.rejected().api_key, 1);
    }

    #[test]
    fn the_tenant_bucket_is_shared_by_its_keys() {
        let l = limiter(RateLimits {
            per_tenant: Rate::new(1, 2),
            ..RateLimits::off()
        });
        let tenant = Uuid::new_v4();
        assert!(l.check_tenant_request(Some(Uuid::new_v4()), tenant).is_ok());
        assert!(l.check_tenant_request(Some(Uuid::new_v4()), tenant).is_ok());
        let refused = l
            .check_tenant_request(Some(Uuid::new_v4()), tenant)
            .expect_err("refused");
        assert_eq!(refused.limit, "tenant");
        assert!(l.check_tenant_request(None, Uuid::new_v4()).is_ok());
    }

    #[test]
    fn an_address_over_its_failed_attempts_is_refused_before_authentication() {
        let l = limiter(RateLimits {
            failed_auth: Rate::new(1, 2),
            ..RateLimits::off()
        });
        let (addr, other) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        assert!(l.check_address(addr).is_ok());
        assert!(l.record_failed_auth(addr).is_ok());
        assert!(l.record_failed_auth(addr).is_ok());
        assert!(l.check_address(addr).is_ok());
        assert_eq!(
            l.record_failed_auth(addr).expect_err("refused").limit,
            "failed_auth"
        );
        assert_eq!(
            l.check_address(addr).expect_err("refused").limit,
            "failed_auth"
        );
        assert!(l.check_address(other).is_ok());
        assert_eq!(l.rejected().failed_auth, 2);
    }

    #[test]
    fn the_retry_after_of_a_refusal_is_whole_seconds_rounded_up() {
        let e = ApiError::from(Limited {
            limit: "api_key",
            wait: Duration::from_millis(10),
        });
        assert_eq!(e.retry_after, Some(1));
        let e = ApiError::from(Limited {
            limit: "api_key",
            wait: Duration::from_millis(2001),
        });
        assert_eq!(e.retry_after, Some(3));
    }
}
