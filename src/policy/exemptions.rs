use serde::Deserialize;

use super::PolicyError;

/// Who made the request, as the API server reports it in `request.userInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default, deserialize_with = "crate::model::null_as_default")]
    pub groups: Vec<String>,
}

/// Requests a rule does not look at.
///
/// Backup tools (Velero, OADP) create restore PVCs before their snapshot is ready and rely on
/// the provisioner retrying; exempting their service account is how an operator lets them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Exemptions {
    /// Namespaces of the objects.
    pub namespaces: Vec<String>,
    /// User names, exactly as in `userInfo.username`.
    pub users: Vec<String>,
    /// Groups, e.g. `system:nodes`.
    pub groups: Vec<String>,
    /// `namespace/name`, or `namespace/*` for every service account of a namespace.
    pub service_accounts: Vec<String>,
}

const SA_PREFIX: &str = "system:serviceaccount:";

impl Exemptions {
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.users.is_empty()
            && self.groups.is_empty()
            && self.service_accounts.is_empty()
    }

    /// Whether a request from `user` about an object in `namespace` is exempt.
    pub fn matches(&self, user: &UserInfo, namespace: Option<&str>) -> bool {
        if let Some(ns) = namespace
            && self.namespaces.iter().any(|n| n == ns)
        {
            return true;
        }
        if self.users.contains(&user.username) {
            return true;
        }
        if self.groups.iter().any(|g| user.groups.contains(g)) {
            return true;
        }
        if let Some((sa_ns, sa_name)) = user
            .username
            .strip_prefix(SA_PREFIX)
            .and_then(|rest| rest.split_once(':'))
        {
            return self
                .service_accounts
                .iter()
                .any(|entry| match entry.split_once('/') {
                    Some((ns, "*")) => ns == sa_ns,
                    Some((ns, name)) => ns == sa_ns && name == sa_name,
                    None => false,
                });
        }
        false
    }

    pub(crate) fn validate(&self, field: &str) -> Result<(), PolicyError> {
        for (i, sa) in self.service_accounts.iter().enumerate() {
            let ok = sa.split_once('/').is_some_and(|(ns, name)| {
                !ns.is_empty() && !name.is_empty() && !name.contains('/')
            });
            if !ok {
                return Err(PolicyError::invalid(
                    format!("{field}.serviceAccounts[{i}]"),
                    format!("{sa:?} is not namespace/name (or namespace/*)"),
                ));
            }
        }
        for (list, name) in [
            (&self.namespaces, "namespaces"),
            (&self.users, "users"),
            (&self.groups, "groups"),
        ] {
            if let Some(i) = list.iter().position(|v| v.trim().is_empty()) {
                return Err(PolicyError::invalid(
                    format!("{field}.{name}[{i}]"),
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            uid: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn matches_namespaces_users_groups_and_service_accounts() {
        let ex = Exemptions {
            namespaces: vec!["backup".into()],
            users: vec!["admin".into()],
            groups: vec!["system:nodes".into()],
            service_accounts: vec!["velero/velero".into(), "openshift-adp/*".into()],
        };
        assert!(ex.matches(&user("bob", &[]), Some("backup")));
        assert!(ex.matches(&user("admin", &[]), Some("apps")));
        assert!(ex.matches(&user("system:node:n1", &["system:nodes"]), None));
        assert!(ex.matches(
            &user("system:serviceaccount:velero:velero", &[]),
            Some("apps")
        ));
        assert!(ex.matches(
            &user("system:serviceaccount:openshift-adp:anything", &[]),
            Some("apps")
        ));
        assert!(!ex.matches(
            &user("system:serviceaccount:velero:other", &[]),
            Some("apps")
        ));
        assert!(!ex.matches(&user("bob", &["devs"]), Some("apps")));
    }

    #[test]
    fn malformed_service_accounts_are_rejected() {
        let ex = Exemptions {
            service_accounts: vec!["velero".into()],
            ..Default::default()
        };
        let err = ex.validate("rules.x.exemptions").unwrap_err().to_string();
        assert!(
            err.contains("rules.x.exemptions.serviceAccounts[0]"),
            "{err}"
        );
    }
}
