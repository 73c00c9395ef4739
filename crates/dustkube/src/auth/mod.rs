//! Who is calling and what they may do. Authentication: X.509 client certificates ([`x509`]),
//! bootstrap tokens ([`bootstrap`]) and service-account JWTs ([`serviceaccount`]); authorization:
//! the [`Authorizer`] seam, implemented by [`rbac::Rbac`] (with the default roles of
//! [`policy`]) and, for tests, [`MastersOnly`].

pub mod bootstrap;
pub mod policy;
pub mod rbac;
pub mod serviceaccount;
pub mod x509;

use async_trait::async_trait;

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
    /// For non-resource requests (`/version`, `/api`): the URL path; `None` for resources.
    pub path: Option<String>,
}

/// The answer of an authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refused; the reason is logged.
    Deny(String),
}

/// Decides whether a user may perform a request.
#[async_trait]
pub trait Authorizer: Send + Sync {
    /// The decision for `user` doing `attrs`.
    async fn authorize(&self, user: &User, attrs: &Attributes) -> Decision;

    /// The rules that apply to `user` in `namespace` (SelfSubjectRulesReview); `Err` when they
    /// cannot be listed.
    async fn rules(&self, _user: &User, _namespace: &str) -> Result<Vec<rbac::Rule>, String> {
        Err("this authorizer cannot list rules".into())
    }

    /// Forgets cached policy (called after an RBAC object was written).
    fn invalidate(&self) {}
}

/// Allows `system:masters` everything and everyone else nothing (until RBAC lands).
pub struct MastersOnly;

#[async_trait]
impl Authorizer for MastersOnly {
    async fn authorize(&self, user: &User, _attrs: &Attributes) -> Decision {
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

    #[tokio::test]
    async fn masters_only() {
        let attrs = Attributes {
            verb: "list".into(),
            group: String::new(),
            resource: "pods".into(),
            subresource: String::new(),
            namespace: None,
            name: None,
            path: None,
        };
        let admin = User {
            name: "admin".into(),
            groups: vec![MASTERS.into()],
        };
        let jane = User {
            name: "jane".into(),
            groups: vec!["students".into()],
        };
        assert_eq!(MastersOnly.authorize(&admin, &attrs).await, Decision::Allow);
        assert!(matches!(
            MastersOnly.authorize(&jane, &attrs).await,
            Decision::Deny(_)
        ));
    }
}
