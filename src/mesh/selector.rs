//! Kubernetes label selectors, as the mesh reads them: the engine is
//! [`crate::model::label_selector`] (meshguard's one selector engine); the mesh's code names it
//! through here.

pub use crate::model::label_selector::{
    is_dns1123_label, is_label_value, qualified_name, Labels, NamespaceLabels, NoLabels, Operator,
    Requirement, Selector, NAMESPACE_NAME_LABEL,
};
