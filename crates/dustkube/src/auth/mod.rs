//! Who is calling and what they may do. Authentication: X.509 client certificates
//! ([`x509`]); authorization: the [`Authorizer`] seam, today [`MastersOnly`] (RBAC comes next and
//! plugs in here without touching the handlers).

pub mod x509;

/// Group that bypasses authorization (like Kubernetes).
pub const MASTERS: &str = "system:masters";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// User name (certificate CN).
    pub name: String,
    /// Groups (certificate O's, plus `system:authenticated`).
    pub groups: Vec<String>,
}

/// What a request wants to do, in Kubernetes' authorization terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// API group (`""` for core).
    pub group: String,
    /// Resource plural (`pods`).
    pub resource: String,
    /// Subresource (`status`), or empty.
    pub subresource: String,
    /// Namespace, if namespaced.
    pub namespace: Option<String>,
    /// Object name, if one object.
    pub name: Option<String>,
}

/// The answer of an authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refused; the reason is logged.
    Deny(String),
}

/// Decides whether a user may perform a resource request.
pub trait Authorizer: Send + Sync {
    /// The decision for `user` doing `attrs`.
    fn authorize(&self, user: &User, attrs: &Attributes) -> Decision;
}

/// Allows `system:masters` everything and everyone else nothing (until RBAC lands).
pub struct MastersOnly;

impl Authorizer for MastersOnly {
    fn authorize(&self, user: &User, _attrs: &Attributes) -> Decision {
        if user.groups.iter().any(|g| g == MASTERS) {
            Decision::Allow
        } else {
            Decision::Deny("no RBAC rules yet: only system:masters is authorized".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_only() {
        let attrs = Attributes {
            verb: "list".into(),
            group: String::new(),
            resource: "pods".into(),
            subresource: String::new(),
            namespace: None,
            name: None,
        };
        let admin = User {
            name: "admin".into(),
            groups: vec![MASTERS.into()],
        };
        let jane = User {
            name: "jane".into(),
            groups: vec!["students".into()],
        };
        assert_eq!(MastersOnly.authorize(&admin, &attrs), Decision::Allow);
        assert!(matches!(
            MastersOnly.authorize(&jane, &attrs),
            Decision::Deny(_)
        ));
    }
}
