//! The pod template of every workload kind, typed and decoded once: Pods are their own
//! template, the controllers carry one at `spec.template`, CronJobs at
//! `spec.jobTemplate.spec.template` ([`Kind::pod_template_path`]). [`PodTemplate`] holds the
//! template's labels and annotations and the fields of its pod spec that checks read
//! ([`PodSpec`]: the ServiceAccount, `hostNetwork`, security contexts, and each container's
//! name, image, ports, security context, restart policy, command and args); the deserializer
//! skips every other field without building it. Rules, mutations, the cross checks, the data
//! plane and the inventory read workloads through it and build field paths and JSON pointers
//! from its prefix, so a finding or a patch points at the right place for each kind. The Istio
//! labels and annotations on pods (`sidecar.istio.io/inject`, `istio.io/rev`,
//! `sidecar.istio.io/status`) are read here and nowhere else. Nothing here does I/O.
//!
//! The webhook keeps a Pod's spec as its JSON text ([`RAW_SPEC`]) and decodes it here straight
//! into [`PodSpec`], with no `serde_json::Value` tree in between.

use super::{ok, shaped, Loose, Str};
use crate::json::quoted_key;
use crate::resource::{Kind, Review};
use kube::core::DynamicObject;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use crate::model::labels::{PodSetting, SettingSource};
/// Label and annotation that turn sidecar injection on or off for one pod; the pod label that
/// selects an injector revision (also an opt-in on its own).
pub use crate::model::labels::{INJECT, REV};
/// Name of the injected proxy container.
pub(crate) const PROXY_CONTAINER: &str = "istio-proxy";
/// The sidecar's UID; iptables lets traffic of this UID skip the proxy.
pub(crate) const PROXY_UID: i64 = 1337;
/// The sidecar's GID; iptables lets traffic of this GID skip the proxy too (istio-iptables
/// `--gid-owner`).
pub(crate) const PROXY_GID: i64 = 1337;
/// The init container that installs the pod's iptables capture (istio/istio
/// `pkg/kube/inject/inject.go`, `InitContainerName`).
pub(crate) const INIT_CONTAINER: &str = "istio-init";
/// The init container that checks the capture when the Istio CNI plugin installs it
/// (`ValidationContainerName`).
pub(crate) const VALIDATION_CONTAINER: &str = "istio-validation";
/// The annotation Istio's injector writes on every pod it injected, naming the containers and
/// init containers it added (`sidecar.istio.io/status`, istio/istio `pkg/kube/inject/webhook.go`
/// `getInjectionStatus`).
pub(crate) const STATUS_ANNOTATION: &str = super::labels::SIDECAR_STATUS;

/// Where the webhook keeps a Pod's `spec` as JSON text ([`crate::resource::RAW_POD_SPEC`]).
pub use crate::resource::RAW_POD_SPEC as RAW_SPEC;

/// String-valued entries of a metadata map (labels, annotations), in key order; entries whose
/// value is not a string are left out, and a map that is not an object reads as empty.
pub(crate) type StrMap<'a> = BTreeMap<Str<'a>, Str<'a>>;

/// For `deserialize_with`: a [`StrMap`] from whatever is there.
fn string_map<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<StrMap<'a>, D::Error> {
    struct V<'a>(std::marker::PhantomData<&'a ()>);
    impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
        type Value = StrMap<'a>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of strings")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrMap<'a>, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(k) = map.next_key::<Str<'a>>()? {
                match map.next_value::<Loose<Str<'a>>>()? {
                    Loose::Ok(v) => {
                        out.insert(k, v);
                    }
                    // A later entry of the same key wins, as in a JSON tree.
                    Loose::Wrong { .. } => {
                        out.remove(k.as_str());
                    }
                }
            }
            Ok(out)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<StrMap<'a>, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(StrMap::new())
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<StrMap<'a>, E> {
            Ok(StrMap::new())
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<StrMap<'a>, E> {
            Ok(StrMap::new())
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<StrMap<'a>, E> {
            Ok(StrMap::new())
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<StrMap<'a>, E> {
            Ok(StrMap::new())
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<StrMap<'a>, E> {
            Ok(StrMap::new())
        }
        fn visit_unit<E: de::Error>(self) -> Result<StrMap<'a>, E> {
            Ok(StrMap::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<StrMap<'a>, E> {
            Ok(StrMap::new())
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

/// A field that counts when it is there and not null, whatever it holds (`command`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Present;

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present)
    }
}

/// `metadata` of a pod template (a controller's; a Pod's own comes from its typed metadata).
#[derive(Clone, Debug, Default, Deserialize)]
struct TemplateMetaWire<'a> {
    #[serde(borrow, default, deserialize_with = "string_map")]
    labels: StrMap<'a>,
    #[serde(borrow, default, deserialize_with = "string_map")]
    annotations: StrMap<'a>,
}

/// A controller's pod template (`spec.template`).
#[derive(Clone, Debug, Default, Deserialize)]
struct TemplateWire<'a> {
    #[serde(borrow, default)]
    metadata: Option<Loose<TemplateMetaWire<'a>>>,
    #[serde(borrow, default)]
    spec: Option<Loose<PodSpec<'a>>>,
}

/// The fields of a pod spec that checks read (`spec` of a Pod, of a controller's template).
/// Fields of the wrong JSON type read as absent, as Kubernetes would have refused them.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec<'a> {
    #[serde(borrow, default)]
    pub(crate) service_account_name: Option<Loose<Str<'a>>>,
    /// The deprecated alias of `serviceAccountName`.
    #[serde(borrow, default)]
    pub service_account: Option<Loose<Str<'a>>>,
    #[serde(default)]
    pub(crate) host_network: Option<Loose<bool>>,
    #[serde(borrow, default)]
    pub(crate) security_context: Option<Loose<SecurityContext<'a>>>,
    #[serde(borrow, default)]
    pub containers: Option<Loose<Vec<Loose<ContainerSpec<'a>>>>>,
    #[serde(borrow, default)]
    pub(crate) init_containers: Option<Loose<Vec<Loose<ContainerSpec<'a>>>>>,
    #[serde(borrow, default)]
    pub(crate) ephemeral_containers: Option<Loose<Vec<Loose<ContainerSpec<'a>>>>>,
}

/// A pod's or a container's `securityContext`: the identities and privileges checks read.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityContext<'a> {
    #[serde(default)]
    pub(crate) run_as_user: Option<Loose<i64>>,
    #[serde(default)]
    pub(crate) run_as_group: Option<Loose<i64>>,
    /// Containers only.
    #[serde(default)]
    pub privileged: Option<Loose<bool>>,
    /// Containers only.
    #[serde(borrow, default)]
    pub capabilities: Option<Loose<Capabilities<'a>>>,
}

/// `securityContext.capabilities` of a container.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Capabilities<'a> {
    /// `add`, each entry as written (the index is part of the finding's path).
    #[serde(borrow, default)]
    pub add: Option<Loose<Vec<Loose<Str<'a>>>>>,
}

/// One entry of a container's `ports`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort<'a> {
    #[serde(default)]
    pub(crate) container_port: Option<Loose<u64>>,
    #[serde(borrow, default)]
    pub name: Option<Loose<Str<'a>>>,
}

/// One container of a pod spec, as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSpec<'a> {
    #[serde(borrow, default)]
    pub name: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub image: Option<Loose<Str<'a>>>,
    #[serde(borrow, default)]
    pub ports: Option<Loose<Vec<Loose<ContainerPort<'a>>>>>,
    #[serde(borrow, default)]
    pub(crate) security_context: Option<Loose<SecurityContext<'a>>>,
    #[serde(borrow, default)]
    pub(crate) restart_policy: Option<Loose<Str<'a>>>,
    /// Set (and not null): the container replaces its image's entrypoint.
    #[serde(default)]
    pub command: Option<Present>,
    #[serde(borrow, default)]
    pub args: Option<Loose<Vec<Loose<Str<'a>>>>>,
}

shaped!(Map: TemplateMetaWire<'_>, PodSpec<'_>, SecurityContext<'_>, Capabilities<'_>, ContainerPort<'_>, ContainerSpec<'_>);

/// What a container entry that is not an object reads as.
static NO_CONTAINER: ContainerSpec<'static> = ContainerSpec {
    name: None,
    image: None,
    ports: None,
    security_context: None,
    restart_policy: None,
    command: None,
    args: None,
};

/// The same value, owning its strings.
pub(crate) trait IntoOwned {
    type Owned;
    fn into_owned(self) -> Self::Owned;
}

impl IntoOwned for Str<'_> {
    type Owned = Str<'static>;
    fn into_owned(self) -> Str<'static> {
        Str::into_owned(self)
    }
}

macro_rules! owned_copy {
    ($($t:ty),*) => {$(
        impl IntoOwned for $t {
            type Owned = $t;
            fn into_owned(self) -> $t {
                self
            }
        }
    )*};
}
owned_copy!(bool, i64, u64, Present);

impl<T: IntoOwned> IntoOwned for Option<T> {
    type Owned = Option<T::Owned>;
    fn into_owned(self) -> Self::Owned {
        self.map(T::into_owned)
    }
}

impl<T: IntoOwned> IntoOwned for Vec<T> {
    type Owned = Vec<T::Owned>;
    fn into_owned(self) -> Self::Owned {
        self.into_iter().map(T::into_owned).collect()
    }
}

impl<T: IntoOwned> IntoOwned for Loose<T> {
    type Owned = Loose<T::Owned>;
    fn into_owned(self) -> Self::Owned {
        match self {
            Loose::Ok(t) => Loose::Ok(t.into_owned()),
            Loose::Wrong { found, text } => Loose::Wrong { found, text },
        }
    }
}

impl IntoOwned for StrMap<'_> {
    type Owned = StrMap<'static>;
    fn into_owned(self) -> StrMap<'static> {
        self.into_iter()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

macro_rules! owned_struct {
    ($t:ident { $($f:ident),* }) => {
        impl IntoOwned for $t<'_> {
            type Owned = $t<'static>;
            fn into_owned(self) -> $t<'static> {
                $t { $($f: IntoOwned::into_owned(self.$f)),* }
            }
        }
    };
}
owned_struct!(PodSpec {
    service_account_name,
    service_account,
    host_network,
    security_context,
    containers,
    init_containers,
    ephemeral_containers
});
owned_struct!(SecurityContext {
    run_as_user,
    run_as_group,
    privileged,
    capabilities
});
owned_struct!(Capabilities { add });
owned_struct!(ContainerPort {
    container_port,
    name
});
owned_struct!(ContainerSpec {
    name,
    image,
    ports,
    security_context,
    restart_policy,
    command,
    args
});

impl SecurityContext<'_> {
    /// `runAsUser` (`"runAsUser"`) or `runAsGroup` (`"runAsGroup"`), when it is an integer.
    pub fn id(&self, field: &str) -> Option<i64> {
        match field {
            "runAsUser" => ok(&self.run_as_user).copied(),
            "runAsGroup" => ok(&self.run_as_group).copied(),
            _ => None,
        }
    }
}

impl<'a> PodSpec<'a> {
    /// Decode a pod spec (a JSON tree, borrowing its strings); what is not an object has
    /// nothing set.
    pub fn of(spec: &'a Value) -> PodSpec<'a> {
        match spec {
            Value::Object(_) => PodSpec::deserialize(spec).unwrap_or_default(),
            _ => PodSpec::default(),
        }
    }

    /// Decode a pod spec from its JSON text (the webhook's [`RAW_SPEC`]), borrowing its strings
    /// where they need no unescaping.
    pub(crate) fn from_text(text: &'a str) -> PodSpec<'a> {
        // serde's derived structs would also read a list, positionally.
        if !text.trim_start().starts_with('{') {
            return PodSpec::default();
        }
        match serde_json::from_str::<PodSpec<'a>>(text) {
            Ok(spec) => spec,
            // Only a spec that repeats a key refuses to decode this way; a JSON tree keeps the
            // last of each, as kube-apiserver does.
            Err(_) => match serde_json::from_str::<Value>(text) {
                Ok(v) => PodSpec::of(&v).into_owned(),
                Err(_) => PodSpec::default(),
            },
        }
    }

    /// `securityContext`, when it is an object.
    pub(crate) fn security_context(&self) -> Option<&SecurityContext<'a>> {
        ok(&self.security_context)
    }
}

impl<'a> ContainerSpec<'a> {
    pub fn security_context(&self) -> Option<&SecurityContext<'a>> {
        ok(&self.security_context)
    }
}

/// One pod template, decoded, with the path prefix it sits at.
#[derive(Clone, Debug)]
pub struct PodTemplate<'a> {
    pub kind: Kind,
    prefix: &'static [&'static str],
    /// The template's labels (string values only).
    pub labels: StrMap<'a>,
    /// The template's annotations (string values only).
    pub annotations: StrMap<'a>,
    /// The pod spec (`spec` of the template).
    pub spec: PodSpec<'a>,
}

/// One container of the pod spec, with the list it is in and its index.
#[derive(Clone, Copy, Debug)]
pub struct Container<'t> {
    /// `containers`, `initContainers` or `ephemeralContainers`.
    pub list: &'static str,
    pub index: usize,
    pub spec: &'t ContainerSpec<'t>,
}

impl<'t> Container<'t> {
    /// `name`, empty when absent.
    pub fn name(&self) -> &'t str {
        ok(&self.spec.name).map_or("", |s| s.as_str())
    }
    /// The entries of `ports`, with their indexes (entries that are not objects read as empty).
    pub fn ports(&self) -> impl Iterator<Item = (usize, &'t ContainerPort<'t>)> + 't {
        static NONE: ContainerPort<'static> = ContainerPort {
            container_port: None,
            name: None,
        };
        super::entries(&self.spec.ports)
            .iter()
            .enumerate()
            .map(|(i, p)| (i, p.ok().unwrap_or(&NONE)))
    }
    /// An init container with `restartPolicy: Always` (a native sidecar).
    pub(crate) fn is_native_sidecar(&self) -> bool {
        self.list == "initContainers"
            && ok(&self.spec.restart_policy).map(|s| s.as_str()) == Some("Always")
    }
    /// `image`, when it is a string.
    pub fn image(&self) -> Option<&'t str> {
        ok(&self.spec.image).map(|s| s.as_str())
    }
    /// `securityContext`, when it is an object.
    pub fn security(&self) -> Option<&'t SecurityContext<'t>> {
        ok(&self.spec.security_context)
    }
    /// `securityContext.privileged: true`.
    pub fn privileged(&self) -> bool {
        self.security().and_then(|s| ok(&s.privileged)).copied() == Some(true)
    }
    /// `securityContext.capabilities.add`, each entry as written.
    pub(crate) fn added_capabilities(&self) -> &'t [Loose<Str<'t>>] {
        self.security()
            .and_then(|s| ok(&s.capabilities))
            .map_or(&[], |c| super::entries(&c.add))
    }
    /// `command` is set.
    pub(crate) fn has_command(&self) -> bool {
        self.spec.command.is_some()
    }
    /// `args` is set (not null): `Some` with its first entry when that is a string.
    pub fn args(&self) -> Option<Option<&'t str>> {
        let args = self.spec.args.as_ref()?;
        Some(
            args.ok()
                .and_then(|a| a.first())
                .and_then(Loose::ok)
                .map(|s| s.as_str()),
        )
    }
    /// Entry `i` of `args`, when it is a string.
    pub fn arg(&self, i: usize) -> Option<&'t str> {
        ok(&self.spec.args)
            .and_then(|a| a.get(i))
            .and_then(Loose::ok)
            .map(|s| s.as_str())
    }
    /// `spec.<list>[<index>]` below the template (see [`PodTemplate::path`]).
    pub fn rest(&self, field: &str) -> String {
        if field.is_empty() {
            format!("spec.{}[{}]", self.list, self.index)
        } else {
            format!("spec.{}[{}].{field}", self.list, self.index)
        }
    }
}

/// What Istio's injector recorded on a pod it injected ([`STATUS_ANNOTATION`]): the names of the
/// containers and init containers it added, borrowed from the annotation (container names need
/// no JSON escapes; an annotation that has them does not read, and lists nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InjectionStatus<'a> {
    #[serde(default, borrow, deserialize_with = "names")]
    pub(crate) containers: Vec<&'a str>,
    #[serde(default, borrow, deserialize_with = "names")]
    pub(crate) init_containers: Vec<&'a str>,
}

/// A list of names that may be JSON `null` (`"containers":null` for native sidecars).
fn names<'de: 'a, 'a, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<&'a str>, D::Error> {
    Ok(Option::<Vec<&'a str>>::deserialize(d)?.unwrap_or_default())
}

impl InjectionStatus<'_> {
    /// Whether the injector lists `name` in `list` (`containers` or `initContainers`).
    pub fn lists(&self, list: &str, name: &str) -> bool {
        let names = match list {
            "containers" => &self.containers,
            "initContainers" => &self.init_containers,
            _ => return false,
        };
        names.contains(&name)
    }
}

/// Borrow a typed metadata map.
fn borrowed(m: &Option<BTreeMap<String, String>>) -> StrMap<'_> {
    m.iter()
        .flatten()
        .map(|(k, v)| (Str(Cow::Borrowed(k)), Str(Cow::Borrowed(v))))
        .collect()
}

impl<'a> PodTemplate<'a> {
    /// The template of `obj` when `kind` is a workload kind, decoded (strings borrowed).
    pub fn of(kind: Kind, obj: &'a DynamicObject) -> Option<PodTemplate<'a>> {
        let prefix = kind.pod_template_path()?;
        if prefix.is_empty() {
            let spec = match obj.data.get(RAW_SPEC) {
                Some(Value::String(text)) => PodSpec::from_text(text),
                _ => obj.data.get("spec").map(PodSpec::of).unwrap_or_default(),
            };
            return Some(PodTemplate {
                kind,
                prefix,
                labels: borrowed(&obj.metadata.labels),
                annotations: borrowed(&obj.metadata.annotations),
                spec,
            });
        }
        let template = crate::json::get_path(&obj.data, prefix)
            .filter(|t| t.is_object())
            .and_then(|t| TemplateWire::deserialize(t).ok())
            .unwrap_or_default();
        let meta = template
            .metadata
            .and_then(Loose::into_ok)
            .unwrap_or_default();
        Some(PodTemplate {
            kind,
            prefix,
            labels: meta.labels,
            annotations: meta.annotations,
            spec: template.spec.and_then(Loose::into_ok).unwrap_or_default(),
        })
    }

    /// The template of the object being written (CREATE/UPDATE), decoded afresh; the rules
    /// read it once per review through [`crate::rules::ReviewCache::template`].
    pub fn written(review: &Review<'a>) -> Option<PodTemplate<'a>> {
        PodTemplate::of(review.kind, review.written()?)
    }

    /// The same template, owning its strings.
    pub fn into_owned(self) -> PodTemplate<'static> {
        PodTemplate {
            kind: self.kind,
            prefix: self.prefix,
            labels: self.labels.into_owned(),
            annotations: self.annotations.into_owned(),
            spec: self.spec.into_owned(),
        }
    }

    /// True for a Pod (the object is its own template).
    pub(crate) fn is_pod(&self) -> bool {
        self.prefix.is_empty()
    }

    /// Object keys from the root to the template (empty for a Pod).
    pub fn prefix(&self) -> &'static [&'static str] {
        self.prefix
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(|s| s.as_str())
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(|s| s.as_str())
    }

    /// All labels, as an owned map.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// All annotations, in key order.
    pub fn annotations(&self) -> Vec<(&str, &str)> {
        self.annotations
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// User-facing path of a field below the template: `path("spec.hostNetwork")` is
    /// `spec.template.spec.hostNetwork` on a Deployment and `spec.hostNetwork` on a Pod.
    pub fn path(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_owned()
        } else {
            format!("{}.{rest}", self.prefix.join("."))
        }
    }

    /// `metadata.labels["key"]` below the template.
    pub(crate) fn label_path(&self, key: &str) -> String {
        self.path(&format!("metadata.labels{}", quoted_key(key)))
    }

    /// `metadata.annotations["key"]` below the template.
    pub(crate) fn annotation_path(&self, key: &str) -> String {
        self.path(&format!("metadata.annotations{}", quoted_key(key)))
    }

    /// Object keys from the root to a field below the template (for JSON pointers).
    pub fn keys<'k>(&self, rest: &[&'k str]) -> Vec<&'k str> {
        self.prefix
            .iter()
            .copied()
            .chain(rest.iter().copied())
            .collect()
    }

    /// `containers` then `initContainers` (Istio's own proxy lookup order), then
    /// `ephemeralContainers` (added to running pods, e.g. by `kubectl debug`; never the proxy).
    pub fn containers(&self) -> impl Iterator<Item = Container<'_>> + '_ {
        [
            ("containers", &self.spec.containers),
            ("initContainers", &self.spec.init_containers),
            ("ephemeralContainers", &self.spec.ephemeral_containers),
        ]
        .into_iter()
        .flat_map(|(list, items)| {
            super::entries(items)
                .iter()
                .enumerate()
                .map(move |(index, c)| Container {
                    list,
                    index,
                    spec: c.ok().unwrap_or(&NO_CONTAINER),
                })
        })
    }

    /// The pod runs `istio-proxy` as a sidecar: a regular container, or a native sidecar
    /// (an init container with `restartPolicy: Always`).
    pub(crate) fn has_proxy(&self) -> bool {
        self.containers().any(|c| {
            c.name() == PROXY_CONTAINER && (c.list == "containers" || c.is_native_sidecar())
        })
    }

    /// The injector's record of what it added (`sidecar.istio.io/status`), when the annotation is
    /// there and reads as Istio writes it.
    pub(crate) fn injection_status(&self) -> Option<InjectionStatus<'_>> {
        serde_json::from_str(self.annotation(STATUS_ANNOTATION)?).ok()
    }

    /// The template's labels as a label set for selectors (the mesh's `Labels`), without
    /// copying them.
    pub(crate) fn label_view(&self) -> MetaView<'_> {
        MetaView(&self.labels)
    }

    /// The template's annotations, likewise.
    pub(crate) fn annotation_view(&self) -> MetaView<'_> {
        MetaView(&self.annotations)
    }

    /// `spec.hostNetwork: true`.
    pub(crate) fn host_network(&self) -> bool {
        ok(&self.spec.host_network).copied() == Some(true)
    }

    /// The ServiceAccount the pod runs as, when one is named: `serviceAccountName`, else the
    /// deprecated `serviceAccount`, with the field it came from.
    pub fn service_account(&self) -> Option<(&'static str, &str)> {
        self.service_account_str().map(|(f, v)| (f, v.as_str()))
    }

    /// [`PodTemplate::service_account`] as the document's string (borrowed from it when the
    /// template is).
    pub(crate) fn service_account_str(&self) -> Option<(&'static str, &Str<'a>)> {
        [
            ("serviceAccountName", &self.spec.service_account_name),
            ("serviceAccount", &self.spec.service_account),
        ]
        .into_iter()
        .find_map(|(f, v)| {
            let v = ok(v)?;
            (!v.is_empty()).then_some((f, v))
        })
    }

    /// The ServiceAccount name this workload should use, derived from its
    /// `app.kubernetes.io/name` label, else its `app` label, when that is a valid object name.
    pub(crate) fn service_account_candidate(&self) -> Option<(&'static str, &str)> {
        ["app.kubernetes.io/name", "app"].into_iter().find_map(|k| {
            let v = self.label(k)?;
            is_dns_subdomain(v).then_some((k, v))
        })
    }

    /// The effective `sidecar.istio.io/inject` setting: the label wins over the (deprecated)
    /// annotation, which counts only when the label is absent.
    pub(crate) fn inject_setting(&self) -> Option<PodSetting<'_>> {
        PodSetting::of(self.label(INJECT), || self.annotation(INJECT))
    }

    /// Where `setting` was read, below the template (`spec.template.metadata.labels[…]` in a
    /// Deployment).
    pub(crate) fn setting_path(&self, setting: &PodSetting<'_>) -> String {
        match setting.source {
            SettingSource::Label => self.label_path(INJECT),
            SettingSource::Annotation => self.annotation_path(INJECT),
        }
    }

    /// Injection is explicitly turned off for this pod. Istio's injector treats `y`, `yes`,
    /// `true` and `on` (any case) as on, an empty value as "use the default", and any other
    /// value as off.
    pub(crate) fn injection_disabled(&self) -> bool {
        self.inject_setting()
            .is_some_and(|s| value_disables(s.value))
    }

    /// The pod asks for injection itself, whatever its namespace says: the label
    /// `sidecar.istio.io/inject=true` or an `istio.io/rev` label (the injector's object selectors).
    pub(crate) fn opts_in(&self) -> bool {
        if self.injection_disabled() {
            return false;
        }
        self.label(INJECT).is_some_and(value_enables)
            || self.label(REV).is_some_and(|r| !r.is_empty())
    }
}

/// A pod template's labels (or annotations) read in place, for label selectors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MetaView<'t>(&'t StrMap<'t>);

impl MetaView<'_> {
    /// The value of `key`, when present (the mesh's selectors read the view through this).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|s| s.as_str())
    }
}

/// `sidecar.istio.io/inject` values, parsed in one place (the injector's reading).
pub use crate::model::labels::{
    inject_value_disables as value_disables, inject_value_enables as value_enables,
};

/// RFC 1123 subdomain, the syntax of a ServiceAccount name.
pub(crate) fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= 63
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn o(v: Value) -> DynamicObject {
        serde_json::from_value(v).expect("object")
    }

    #[test]
    fn finds_the_template_of_every_kind() {
        let tmpl = json!({"metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
                          "spec": {"hostNetwork": true, "containers": [{"name": "c"}]}});
        for kind in Kind::WORKLOADS {
            let obj = match kind {
                Kind::Pod => o(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "p", "labels": {"app": "web"}, "annotations": {"a": "b"}},
                    "spec": tmpl["spec"].clone()})),
                Kind::CronJob => o(json!({"apiVersion": "batch/v1", "kind": "CronJob",
                    "metadata": {"name": "c"},
                    "spec": {"jobTemplate": {"spec": {"template": tmpl.clone()}}}})),
                _ => o(json!({"apiVersion": "apps/v1", "kind": kind.as_str(),
                    "metadata": {"name": "d"}, "spec": {"template": tmpl.clone()}})),
            };
            let t = PodTemplate::of(*kind, &obj).expect("template");
            assert_eq!(t.label("app"), Some("web"), "{kind}");
            assert_eq!(t.annotation("a"), Some("b"), "{kind}");
            assert!(t.host_network(), "{kind}");
            assert_eq!(t.containers().count(), 1);
            let expected = match kind {
                Kind::Pod => "spec.hostNetwork",
                Kind::CronJob => "spec.jobTemplate.spec.template.spec.hostNetwork",
                _ => "spec.template.spec.hostNetwork",
            };
            assert_eq!(t.path("spec.hostNetwork"), expected);
        }
        assert!(PodTemplate::of(
            Kind::Service,
            &o(json!({"apiVersion": "v1", "kind": "Service", "metadata": {}}))
        )
        .is_none());
    }

    #[test]
    fn label_beats_annotation() {
        let pod = |labels: Value, annotations: Value| {
            o(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "labels": labels, "annotations": annotations}}))
        };
        let p = pod(json!({INJECT: "true"}), json!({INJECT: "false"}));
        let t = PodTemplate::of(Kind::Pod, &p).expect("t");
        assert!(!t.injection_disabled());
        assert!(t.opts_in());
        let p = pod(json!({}), json!({INJECT: "false"}));
        let t = PodTemplate::of(Kind::Pod, &p).expect("t");
        assert!(t.injection_disabled());
        assert_eq!(
            t.inject_setting().map(|s| s.path()),
            Some("metadata.annotations[\"sidecar.istio.io/inject\"]")
        );
        let p = pod(json!({INJECT: "off"}), json!({}));
        assert!(PodTemplate::of(Kind::Pod, &p)
            .expect("t")
            .injection_disabled());
        let p = pod(json!({REV: "canary"}), json!({}));
        assert!(PodTemplate::of(Kind::Pod, &p).expect("t").opts_in());
    }

    #[test]
    fn proxy_in_containers_or_native_sidecar_only() {
        let pod = |spec: Value| {
            o(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": spec}))
        };
        let has = |spec: Value| {
            PodTemplate::of(Kind::Pod, &pod(spec))
                .expect("t")
                .has_proxy()
        };
        assert!(has(
            json!({"containers": [{"name": "app"}, {"name": "istio-proxy"}]})
        ));
        assert!(has(json!({"containers": [{"name": "app"}],
            "initContainers": [{"name": "istio-proxy", "restartPolicy": "Always"}]})));
        assert!(!has(json!({"containers": [{"name": "app"}],
            "initContainers": [{"name": "istio-proxy"}]})));
        assert!(!has(json!({"containers": [{"name": "app"}]})));
    }

    #[test]
    fn service_account_names() {
        assert!(is_dns_subdomain("frontend"));
        assert!(is_dns_subdomain("a.b-c"));
        assert!(!is_dns_subdomain("Frontend"));
        assert!(!is_dns_subdomain("a_b"));
        assert!(!is_dns_subdomain("-a"));
        assert!(!is_dns_subdomain(""));
    }
}
