//! Who may do what: deny by default, per environment and per resource.
//!
//! A person's role in an environment grants a fixed set of (resource, access) pairs; an API key
//! carries explicit grants. Nobody can hand out more than they hold: a key's grants, or a role
//! given to someone else, must be covered by the giver's own.

use serde::{Deserialize, Serialize};

use crate::users::{Role, User};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Environments,
    Connections,
    Integrations,
    Bindings,
    Tokens,
    Promotion,
    Audit,
    Users,
    ApiKeys,
    /// Calls through the proxy: read = GET and HEAD, write = every other method.
    Proxy,
    /// Webhook subscriptions and their delivery logs.
    Webhooks,
}

pub const RESOURCES: [Resource; 11] = [
    Resource::Environments,
    Resource::Connections,
    Resource::Integrations,
    Resource::Bindings,
    Resource::Tokens,
    Resource::Promotion,
    Resource::Audit,
    Resource::Users,
    Resource::ApiKeys,
    Resource::Proxy,
    Resource::Webhooks,
];

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Environments => "environments",
            Resource::Connections => "connections",
            Resource::Integrations => "integrations",
            Resource::Bindings => "bindings",
            Resource::Tokens => "tokens",
            Resource::Promotion => "promotion",
            Resource::Audit => "audit",
            Resource::Users => "users",
            Resource::ApiKeys => "api_keys",
            Resource::Proxy => "proxy",
            Resource::Webhooks => "webhooks",
        }
    }

    pub fn parse(s: &str) -> Option<Resource> {
        RESOURCES.into_iter().find(|r| r.as_str() == s)
    }

    /// Resources that can only be read (through the API).
    pub fn read_only(self) -> bool {
        matches!(self, Resource::Environments | Resource::Audit | Resource::Users)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
}

/// What a role may do in its environment. `allow_dev_api_keys` is that environment's setting
/// "Allow developers to manage API keys".
pub fn role_allows(role: Role, resource: Resource, access: Access, allow_dev_api_keys: bool) -> bool {
    use Access::*;
    use Resource::*;
    match role {
        Role::Viewer => access == Read && matches!(resource, Environments | Connections | Integrations | Bindings | Audit),
        Role::Developer => match resource {
            Environments | Audit => access == Read,
            Connections | Integrations | Bindings => true,
            Tokens | Promotion => access == Read,
            // Whoever may read a token can call with it; through the proxy the token never
            // leaves connvault, so a developer may call, read or write.
            Proxy => true,
            // A subscription hears of everything that happens in its environment: developers
            // see them and their logs; administrators decide where events go.
            Webhooks => access == Read,
            ApiKeys => allow_dev_api_keys,
            Users => false,
        },
        Role::Administrator => !(resource.read_only() && access == Write),
    }
}

/// Whether a signed-in person may do `access` on `resource` in `environment`.
pub fn user_allows(user: &User, environment: &str, allow_dev_api_keys: bool, resource: Resource, access: Access) -> bool {
    user.role_in(environment).is_some_and(|role| role_allows(role, resource, access, allow_dev_api_keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole role × resource × access table, written out, so any change to the rules is a
    /// deliberate change to this test.
    #[test]
    fn role_resource_access_table() {
        const R: (bool, bool) = (true, false);
        const RW: (bool, bool) = (true, true);
        const NO: (bool, bool) = (false, false);
        type ReadWrite = (bool, bool);
        // resource:            viewer  developer  administrator
        let table: [(Resource, ReadWrite, ReadWrite, ReadWrite); 11] = [
            (Resource::Environments, R, R, R),
            (Resource::Connections, R, RW, RW),
            (Resource::Integrations, R, RW, RW),
            (Resource::Bindings, R, RW, RW),
            (Resource::Tokens, NO, R, RW),
            (Resource::Promotion, NO, R, RW),
            (Resource::Audit, R, R, R),
            (Resource::Users, NO, NO, R),
            (Resource::ApiKeys, NO, NO, RW),
            (Resource::Proxy, NO, RW, RW),
            (Resource::Webhooks, NO, R, RW),
        ];
        for (resource, viewer, developer, admin) in table {
            for (role, (read, write)) in [(Role::Viewer, viewer), (Role::Developer, developer), (Role::Administrator, admin)] {
                assert_eq!(role_allows(role, resource, Access::Read, false), read, "{role:?} read {resource:?}");
                assert_eq!(role_allows(role, resource, Access::Write, false), write, "{role:?} write {resource:?}");
            }
        }
        // The per-environment setting lets developers manage API keys, and nothing else.
        assert!(role_allows(Role::Developer, Resource::ApiKeys, Access::Write, true));
        assert!(!role_allows(Role::Viewer, Resource::ApiKeys, Access::Read, true));
        assert!(!role_allows(Role::Developer, Resource::Users, Access::Read, true));
    }

    #[test]
    fn resources_round_trip() {
        for r in RESOURCES {
            assert_eq!(Resource::parse(r.as_str()), Some(r));
        }
        assert_eq!(Resource::parse("secrets"), None);
    }
}
