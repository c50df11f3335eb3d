//! A ServiceAccount as meshguard reads it: that it exists, by namespace and name (the
//! `workload-serviceaccount-missing` family of checks, and AuthorizationPolicy principals).
//! Its `secrets`, `imagePullSecrets` and `automountServiceAccountToken` are read by no check,
//! so the deserializer skips them with the rest of the object (`managedFields` included).

use super::namespace::{Metadata, Object};
use serde::{Deserialize, Deserializer};

/// What meshguard reads of a ServiceAccount.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceAccount {
    /// `metadata.namespace`.
    pub namespace: Box<str>,
    /// `metadata.name`.
    pub name: Box<str>,
}

impl From<Metadata> for ServiceAccount {
    fn from(m: Metadata) -> ServiceAccount {
        ServiceAccount {
            namespace: m.namespace,
            name: m.name,
        }
    }
}

impl<'de> Deserialize<'de> for ServiceAccount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Object::deserialize(d).map(|o| ServiceAccount::from(o.metadata))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_account_is_its_namespace_and_name() {
        let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {
                "name": "web", "namespace": "prod", "uid": "u",
                "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {}}]
            },
            "secrets": [{"name": "web-token"}],
            "automountServiceAccountToken": false
        }))
        .unwrap();
        assert_eq!(
            sa,
            ServiceAccount {
                namespace: "prod".into(),
                name: "web".into()
            }
        );
    }

    #[test]
    fn an_object_without_metadata_has_empty_names() {
        let sa: ServiceAccount = serde_json::from_str("{}").unwrap();
        assert_eq!((&*sa.namespace, &*sa.name), ("", ""));
    }
}
