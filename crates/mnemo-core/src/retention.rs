//! Retention policies: what a tenant keeps, for how long, and what happens to the rest. Parsed
//! once at the edge into a [`RetentionRule`] that cannot hold a combination the service would not
//! honour.

use crate::Invalid;

/// The most days a policy may name (about 100 years).
pub const MAX_RETENTION_DAYS: i64 = 36_500;
/// The largest `max_count` a policy may name.
pub const MAX_KEEP_COUNT: i64 = 1_000_000_000;

/// What a policy applies to (`/v1/retention/{resource}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionResource {
    Memories,
    /// Offloaded contexts: stored and listed now; applied by the cleanup once contexts have an API.
    Contexts,
    /// The audit trail, kept and removed a whole monthly partition at a time.
    AuditLog,
}

impl RetentionResource {
    pub const ALL: &'static [RetentionResource] = &[
        RetentionResource::Memories,
        RetentionResource::Contexts,
        RetentionResource::AuditLog,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RetentionResource::Memories => "memories",
            RetentionResource::Contexts => "contexts",
            RetentionResource::AuditLog => "audit_log",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

/// What happens to what a policy no longer keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchivalPolicy {
    Delete,
    /// Moved to the archive tables: readable and restorable, out of search.
    Archive,
    /// Kept in place: the policy removes nothing (expired memories stay, invisible).
    Retain,
}

impl ArchivalPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchivalPolicy::Delete => "delete",
            ArchivalPolicy::Archive => "archive",
            ArchivalPolicy::Retain => "retain",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Delete, Self::Archive, Self::Retain]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// Which timestamp makes a row old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    CreatedAt,
    /// The later of the last write and the last read by id.
    LastAccessed,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::CreatedAt => "created_at",
            Basis::LastAccessed => "last_accessed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::CreatedAt, Self::LastAccessed]
            .into_iter()
            .find(|b| b.as_str() == s)
    }
}

/// A policy as a client asked for it, unchecked.
#[derive(Debug, Clone, Default)]
pub struct RetentionInput<'a> {
    pub retention_days: Option<i64>,
    pub max_count: Option<i64>,
    pub archival_policy: Option<&'a str>,
    pub basis: Option<&'a str>,
    pub is_active: Option<bool>,
}

/// A valid policy for one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRule {
    pub resource: RetentionResource,
    pub retention_days: Option<i32>,
    pub max_count: Option<i32>,
    pub archival_policy: ArchivalPolicy,
    pub basis: Basis,
    pub is_active: bool,
}

impl RetentionRule {
    /// Checks every field and their combination: `delete` and `archive` need a bound
    /// (`retention_days` and/or `max_count`); the audit trail counts age by creation only and
    /// cannot keep "the newest N" (its months are shared by every tenant).
    pub fn parse(resource: RetentionResource, input: RetentionInput<'_>) -> Result<Self, Invalid> {
        let retention_days = input
            .retention_days
            .map(|d| {
                if (1..=MAX_RETENTION_DAYS).contains(&d) {
                    Ok(d as i32)
                } else {
                    Err(Invalid::new(
                        "retention_days",
                        format!("must be between 1 and {MAX_RETENTION_DAYS}"),
                    ))
                }
            })
            .transpose()?;
        let max_count = input
            .max_count
            .map(|n| {
                if (1..=MAX_KEEP_COUNT).contains(&n) {
                    Ok(n as i32)
                } else {
                    Err(Invalid::new(
                        "max_count",
                        format!("must be between 1 and {MAX_KEEP_COUNT}"),
                    ))
                }
            })
            .transpose()?;
        let archival_policy = match input.archival_policy {
            None => ArchivalPolicy::Delete,
            Some(s) => ArchivalPolicy::parse(s).ok_or_else(|| {
                Invalid::new("archival_policy", "must be one of delete, archive, retain")
            })?,
        };
        let basis = match input.basis {
            None => Basis::CreatedAt,
            Some(s) => Basis::parse(s)
                .ok_or_else(|| Invalid::new("basis", "must be one of created_at, last_accessed"))?,
        };
        if resource == RetentionResource::AuditLog {
            if max_count.is_some() {
                return Err(Invalid::new(
                    "max_count",
                    "the audit trail is kept by age only (whole months shared by every tenant)",
                ));
            }
            if basis != Basis::CreatedAt {
                return Err(Invalid::new(
                    "basis",
                    "the audit trail is kept by created_at only",
                ));
            }
        }
        if archival_policy != ArchivalPolicy::Retain
            && retention_days.is_none()
            && max_count.is_none()
        {
            return Err(Invalid::new(
                "retention_days",
                "a delete or archive policy needs retention_days, max_count or both",
            ));
        }
        Ok(Self {
            resource,
            retention_days,
            max_count,
            archival_policy,
            basis,
            is_active: input.is_active.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn input(days: Option<i64>, count: Option<i64>, policy: &str) -> RetentionInput<'_> {
        RetentionInput {
            retention_days: days,
            max_count: count,
            archival_policy: Some(policy),
            ..Default::default()
        }
    }

    #[test]
    fn a_delete_policy_without_a_bound_is_refused() {
        let e = RetentionRule::parse(RetentionResource::Memories, input(None, None, "delete"))
            .unwrap_err();
        assert_eq!(e.field, "retention_days");
    }

    #[test]
    fn a_retain_policy_needs_no_bound() {
        let r =
            RetentionRule::parse(RetentionResource::Memories, input(None, None, "retain")).unwrap();
        assert_eq!(r.archival_policy, ArchivalPolicy::Retain);
    }

    #[test]
    fn the_audit_trail_refuses_a_count_and_last_access() {
        let e = RetentionRule::parse(
            RetentionResource::AuditLog,
            input(Some(30), Some(5), "delete"),
        )
        .unwrap_err();
        assert_eq!(e.field, "max_count");
        let e = RetentionRule::parse(
            RetentionResource::AuditLog,
            RetentionInput {
                retention_days: Some(30),
                basis: Some("last_accessed"),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.field, "basis");
    }

    #[test]
    fn unknown_words_are_refused_with_their_field() {
        let e = RetentionRule::parse(RetentionResource::Memories, input(Some(1), None, "shred"))
            .unwrap_err();
        assert_eq!(e.field, "archival_policy");
        assert!(RetentionResource::parse("users").is_none());
    }

    proptest! {
        #[test]
        fn days_are_accepted_exactly_within_bounds(d in -10i64..40_000) {
            let r = RetentionRule::parse(RetentionResource::Memories, input(Some(d), None, "archive"));
            prop_assert_eq!(r.is_ok(), (1..=MAX_RETENTION_DAYS).contains(&d));
        }

        #[test]
        fn counts_are_accepted_exactly_within_bounds(n in -10i64..2_000_000_000) {
            let r = RetentionRule::parse(RetentionResource::Memories, input(None, Some(n), "delete"));
            prop_assert_eq!(r.is_ok(), (1..=MAX_KEEP_COUNT).contains(&n));
        }
    }
}
