//! API key scopes: `resource:permission`, with `*` for all permissions of a resource
//! (e.g. `memories:read`, `memories:write`, `contexts:*`, `federated:*`, or `*` for everything).

use crate::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Memories,
    Contexts,
    Federated,
    Audit,
    Usage,
    Policies,
    /// Retention policies and archived data; `policies:*` grants the same.
    Retention,
}

impl Resource {
    pub const ALL: &'static [Resource] = &[
        Resource::Memories,
        Resource::Contexts,
        Resource::Federated,
        Resource::Audit,
        Resource::Usage,
        Resource::Policies,
        Resource::Retention,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Memories => "memories",
            Resource::Contexts => "contexts",
            Resource::Federated => "federated",
            Resource::Audit => "audit",
            Resource::Usage => "usage",
            Resource::Policies => "policies",
            Resource::Retention => "retention",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    Read,
    Write,
    Delete,
}

impl Permission {
    pub const ALL: &'static [Permission] =
        &[Permission::Read, Permission::Write, Permission::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|p| p.as_str() == s)
    }
}

/// One granted scope. `resource: None` means every resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    resource: Option<Resource>,
    permission: Option<Permission>,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let bad = || {
            Invalid::new(
                "scopes",
                format!(
                    "unknown scope {s:?}: expected '*' or RESOURCE:PERMISSION with RESOURCE one of \
                     memories, contexts, federated, audit, usage, policies, retention and \
                     PERMISSION one of read, write, delete, *"
                ),
            )
        };
        if s == "*" {
            return Ok(Self {
                resource: None,
                permission: None,
            });
        }
        let (r, p) = s.split_once(':').ok_or_else(bad)?;
        let resource = Some(Resource::parse(r).ok_or_else(bad)?);
        let permission = match p {
            "*" => None,
            p => Some(Permission::parse(p).ok_or_else(bad)?),
        };
        Ok(Self {
            resource,
            permission,
        })
    }

    pub fn allows(&self, resource: Resource, permission: Permission) -> bool {
        // Retention policies are policies: a `policies` scope covers them too.
        self.resource.is_none_or(|r| {
            r == resource || (r == Resource::Policies && resource == Resource::Retention)
        }) && self.permission.is_none_or(|p| p == permission)
    }
}

/// Whether any of `scopes` (as stored: text) grants `permission` on `resource`.
pub fn scopes_allow(scopes: &[String], resource: Resource, permission: Permission) -> bool {
    scopes
        .iter()
        .filter_map(|s| Scope::parse(s).ok())
        .any(|s| s.allows(resource, permission))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_and_exact_scopes() {
        let read = Scope::parse("memories:read").unwrap();
        assert!(read.allows(Resource::Memories, Permission::Read));
        assert!(!read.allows(Resource::Memories, Permission::Write));
        assert!(!read.allows(Resource::Contexts, Permission::Read));
        let ctx = Scope::parse("contexts:*").unwrap();
        assert!(ctx.allows(Resource::Contexts, Permission::Delete));
        assert!(Scope::parse("*")
            .unwrap()
            .allows(Resource::Audit, Permission::Read));
        assert!(Scope::parse("memories").is_err());
        assert!(Scope::parse("policies:write")
            .unwrap()
            .allows(Resource::Retention, Permission::Write));
        assert!(!Scope::parse("retention:*")
            .unwrap()
            .allows(Resource::Policies, Permission::Read));
        assert!(Scope::parse("bogus:read").is_err());
        assert!(Scope::parse("memories:fly").is_err());
    }
}
