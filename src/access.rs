//! Who may change the cluster: roles and the authenticated identity of a caller.
//!
//! After the separation of duties of a signer's operations (the DNS operator, the Security
//! Officer), every caller of the admin API has exactly one role:
//!
//! | role               | may                                                             |
//! |--------------------|-----------------------------------------------------------------|
//! | `monitor`          | read: status, zones, audit, key states, backup and policy checks |
//! | `operator`         | zones add/set/reload/remove, nodes add/remove/fence/unfence, leader transfer, audit notes, drills |
//! | `security-officer` | keys (rollover, ds-seen, ds-gone, clock-ok, backup commit, purge), keystore on/off, key and signing policies |
//!
//! The roles are ordered: an operator may do what a monitor may, a security officer what an
//! operator may. An identity without a role mapped in the node's config gets no access.
//!
//! Callers reach a node's admin API at a [`Target`]: its Unix socket or `https://HOST:PORT`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Monitor,
    Operator,
    SecurityOfficer,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Monitor, Role::Operator, Role::SecurityOfficer];

    pub fn name(self) -> &'static str {
        match self {
            Role::Monitor => "monitor",
            Role::Operator => "operator",
            Role::SecurityOfficer => "security-officer",
        }
    }

    pub fn parse(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| {
                format!("role {s:?}: expected \"monitor\", \"operator\" or \"security-officer\"")
            })
    }

    /// Whether a caller with this role may do what needs `needed`.
    pub fn covers(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proof {
    /// A process on this host, by its uid (SO_PEERCRED on the admin socket).
    Unix { uid: u32 },
    /// A client certificate of the operator CA, by its subject's common name.
    Certificate,
}

/// An authenticated caller: a name to audit and the role that decides what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// `unix:USER` or `cert:COMMON-NAME`.
    pub name: String,
    pub role: Role,
    pub proof: Proof,
    /// The node that authenticated the caller (a request forwarded to the leader keeps it).
    pub via: u64,
}

impl Caller {
    /// How the audit trail names the caller: `cert:alice (security-officer)`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.role)
    }
}

/// The name of the URI a role-bearing operator certificate carries as subject alternative
/// name (`cluster certs operator --role ROLE` writes it).
pub fn role_uri(role: Role) -> String {
    format!("urn:quorumsign:role:{}", role.name())
}

/// The role named by a certificate's URI SAN, if it is one of [`role_uri`]'s.
pub fn role_of_uri(uri: &str) -> Option<Role> {
    let name = uri.strip_prefix("urn:quorumsign:role:")?;
    Role::parse(name).ok()
}

/// Where the admin API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Unix(PathBuf),
    Https { host: String, port: u16 },
}

impl Target {
    /// A socket path or `https://HOST:PORT`.
    pub fn parse(s: &str) -> Result<Target, String> {
        if let Some(rest) = s.strip_prefix("https://") {
            let rest = rest.trim_end_matches('/');
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| format!("{s:?}: expected https://HOST:PORT"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| format!("{s:?}: port {port:?} is not a number"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let ok_host = host.parse::<std::net::IpAddr>().is_ok()
                || (!host.is_empty()
                    && host.len() <= 253
                    && host
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
            if !ok_host || port == 0 {
                return Err(format!("{s:?}: expected https://HOST:PORT"));
            }
            return Ok(Target::Https {
                host: host.to_string(),
                port,
            });
        }
        if s.contains("://") {
            return Err(format!(
                "{s:?}: the admin API is reached through a socket path or https://HOST:PORT"
            ));
        }
        if s.starts_with('/') || s.starts_with("./") || s.ends_with(".sock") {
            return Ok(Target::Unix(PathBuf::from(s)));
        }
        Err(format!(
            "{s:?}: give the node's admin socket (a path) or https://HOST:PORT"
        ))
    }

    /// The Host header this client sends.
    pub fn authority(&self) -> String {
        match self {
            Target::Unix(_) => "localhost".into(),
            Target::Https { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Target::Https { host, port } => format!("{host}:{port}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_round_trip() {
        assert!(Role::SecurityOfficer.covers(Role::Operator));
        assert!(Role::Operator.covers(Role::Monitor));
        assert!(!Role::Monitor.covers(Role::Operator));
        assert!(!Role::Operator.covers(Role::SecurityOfficer));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.name()), Ok(r));
            assert_eq!(role_of_uri(&role_uri(r)), Some(r));
        }
        assert!(Role::parse("admin").is_err());
        assert_eq!(role_of_uri("urn:quorumsign:role:root"), None);
        assert_eq!(role_of_uri("https://x/monitor"), None);
    }
}
