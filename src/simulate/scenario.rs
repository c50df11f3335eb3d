//! What `simulate` and `test` share: reading the objects (manifests or a live cluster) and
//! turning "from this identity to that workload, with this request" into a [`Request`] and
//! the workload's pod labels.

use crate::authz::{Http, Jwt, Mesh, Request};
use crate::context::ClusterView;
use crate::inventory::{Inventory, Object};
use crate::manifest;
use crate::mesh::MeshContext;
use crate::mtls::Workload;
use crate::pod_template::PodTemplate;
use crate::resource::Kind;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Read manifests into an inventory, with the mesh context their Istio objects describe
/// (MeshConfig, injector webhooks and ConfigMaps, as `check` reads them). Files in `skip` (test
/// files found in a manifest directory) are left out. Any unreadable document is an error: a
/// policy that cannot be read would silently change the verdict.
pub fn load_manifests(
    paths: &[PathBuf],
    default_namespace: &str,
    skip: &[PathBuf],
) -> Result<(Inventory, MeshContext), String> {
    let mut loaded =
        manifest::load_from(paths, &mut std::io::stdin()).map_err(|e| e.to_string())?;
    let skipped: Vec<PathBuf> = skip.iter().filter_map(|p| p.canonicalize().ok()).collect();
    let is_skipped = |file: &str| {
        Path::new(file)
            .canonicalize()
            .is_ok_and(|f| skipped.contains(&f))
    };
    loaded.objects.retain(|o| !is_skipped(&o.file));
    loaded.errors.retain(|e| !is_skipped(&e.file));
    let prepared = crate::check::prepare(&mut loaded, default_namespace, false, false);
    if !prepared.errors.is_empty() {
        let list: Vec<String> = prepared.errors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "cannot read the manifests:\n  {}",
            list.join("\n  ")
        ));
    }
    let mesh = crate::check::mesh_context(&prepared, None, None);
    Ok((prepared.inventory, mesh))
}

/// Read a live cluster (read-only, like `audit`), with the mesh as installed there.
pub fn load_cluster(
    kubeconfig: Option<&PathBuf>,
    context: Option<&str>,
) -> Result<(Inventory, MeshContext), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let (collected, mesh) = runtime
        .block_on(async {
            let client = crate::audit::client(kubeconfig, context).await?;
            let collected = crate::audit::collect(&client, 500, None).await?;
            // Forbidden or absent mesh objects: Istio's defaults, as `audit` falls back.
            let mesh = crate::mesh_watch::read(&client, None)
                .await
                .map(|m| m.builder.build())
                .unwrap_or_default();
            Ok::<_, crate::audit::AuditError>((collected, mesh))
        })
        .map_err(|e| e.to_string())?;
    Ok((Inventory::complete(collected.objects), mesh))
}

/// The security policies of an inventory, compiled.
pub fn policy_set(inventory: &Inventory, mesh: Mesh) -> crate::authz::PolicySet {
    crate::authz::PolicySet::new(
        mesh,
        inventory.objects().iter().map(|o| (o.kind, &o.object)),
    )
}

/// Who calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// `NS/SA`: a mesh identity.
    Identity(String),
    /// `NS/NAME`: the ServiceAccount of a workload.
    Workload(String),
    /// A client without a mesh identity.
    Plaintext,
}

/// A token to present.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenSpec {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    /// Claim paths (`["realm_access", "roles"]`) and values.
    pub claims: Vec<(Vec<String>, Value)>,
}

/// One request as a user writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestSpec {
    pub from: Caller,
    /// `NS/NAME` or `NS/KIND/NAME`.
    pub to: String,
    pub port: Option<u16>,
    pub source_ip: Option<IpAddr>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
    pub jwt: Option<TokenSpec>,
}

impl RequestSpec {
    /// Whether the request is HTTP (any HTTP part given); otherwise plain TCP.
    pub fn is_http(&self) -> bool {
        self.method.is_some()
            || self.path.is_some()
            || self.host.is_some()
            || !self.headers.is_empty()
            || self.jwt.is_some()
    }
}

/// A request resolved against the inventory.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// `deployment production/backend`.
    pub to_label: String,
    pub namespace: String,
    /// The destination's pod labels (what selectors match).
    pub labels: BTreeMap<String, String>,
    /// `production/frontend (cluster.local/ns/production/sa/frontend)`, or `plaintext client`.
    pub from_label: String,
    pub request: Request,
    /// What resolution assumed (shown with the explanation).
    pub notes: Vec<String>,
}

/// A workload by `NS/NAME` or `NS/KIND/NAME`.
pub fn find_workload<'i>(inv: &'i Inventory, spec: &str) -> Result<&'i Object, String> {
    let parts: Vec<&str> = spec.split('/').collect();
    let (ns, kind, name) = match parts.as_slice() {
        [ns, name] if !ns.is_empty() && !name.is_empty() => (*ns, None, *name),
        [ns, kind, name] if !ns.is_empty() && !name.is_empty() => (*ns, Some(*kind), *name),
        _ => {
            return Err(format!(
                "{spec}: want NAMESPACE/NAME (or NAMESPACE/KIND/NAME), e.g. production/backend"
            ))
        }
    };
    let kinds: Vec<Kind> = Kind::WORKLOADS
        .iter()
        .copied()
        .filter(|k| kind.is_none_or(|want| k.as_str().eq_ignore_ascii_case(want)))
        .collect();
    if kinds.is_empty() {
        return Err(format!(
            "{spec}: {} is not a workload kind (Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob, Pod)",
            kind.unwrap_or_default()
        ));
    }
    let found: Vec<&Object> = kinds
        .iter()
        .filter_map(|k| inv.find(*k, ns, name))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => {
            let mut known: Vec<String> = inv
                .workloads_in(ns)
                .iter()
                .map(|&i| {
                    let o = inv.workload_object(&inv.workloads()[i]);
                    format!("{}/{}", o.kind.as_str().to_ascii_lowercase(), o.name())
                })
                .collect();
            known.sort();
            Err(if known.is_empty() {
                format!("{spec}: no workload named {name} in namespace {ns}, and the input has no workloads there")
            } else {
                format!(
                    "{spec}: no workload named {name} in namespace {ns} (it has {})",
                    known.join(", ")
                )
            })
        }
        many => Err(format!(
            "{spec}: several workloads are named {name} ({}); name one as {ns}/KIND/{name}",
            many.iter()
                .map(|o| o.kind.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Resolve a request against the inventory.
pub fn resolve(inv: &Inventory, mesh: &Mesh, spec: &RequestSpec) -> Result<Resolved, String> {
    let mut notes = Vec::new();
    let target = find_workload(inv, &spec.to)?;
    let workload = Workload::from_object(target.kind, &target.object)
        .ok_or_else(|| format!("{}: not a workload", spec.to))?;
    let to_label = format!(
        "{} {}/{}",
        target.kind.as_str().to_ascii_lowercase(),
        workload.namespace,
        workload.name
    );
    let port = match (spec.port, workload.ports.as_slice()) {
        (Some(p), ports) => {
            if !ports.is_empty() && !ports.iter().any(|x| x.port == u32::from(p)) {
                notes.push(format!(
                    "{to_label} declares no container port {p} (it declares {})",
                    port_list(&workload)
                ));
            }
            p
        }
        (None, [one]) => u16::try_from(one.port)
            .map_err(|_| format!("{to_label}: container port {} is out of range", one.port))?,
        (None, []) => {
            return Err(format!(
                "{to_label} declares no container port: give the port (--port)"
            ))
        }
        (None, _) => {
            return Err(format!(
                "{to_label} declares ports {}: choose one (--port)",
                port_list(&workload)
            ))
        }
    };
    let (peer, from_label) = match &spec.from {
        Caller::Plaintext => (None, "plaintext client (no mesh identity)".to_owned()),
        Caller::Identity(s) => {
            let (ns, sa) = s
                .split_once('/')
                .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains('/'))
                .ok_or_else(|| {
                    format!("{s}: want NAMESPACE/SERVICEACCOUNT, e.g. production/frontend")
                })?;
            let id = mesh.identity(ns, sa);
            if inv.service_account(ns, sa) == crate::context::Lookup::Missing {
                notes.push(format!(
                    "ServiceAccount {ns}/{sa} is not in the input: no pod runs as this identity yet"
                ));
            }
            let label = format!("{s} ({})", id.principal());
            (Some(id), label)
        }
        Caller::Workload(s) => {
            let o = find_workload(inv, s)?;
            let t =
                PodTemplate::of(o.kind, &o.object).ok_or_else(|| format!("{s}: not a workload"))?;
            let sa = match t.service_account() {
                Some((_, sa)) => sa,
                None => {
                    notes.push(format!(
                        "{s} names no serviceAccountName, so its pods run as the ServiceAccount default"
                    ));
                    "default"
                }
            };
            let id = mesh.identity(o.namespace(), sa);
            let label = format!("{s} ({})", id.principal());
            (Some(id), label)
        }
    };
    let mut request = if spec.is_http() {
        let method = spec.method.as_deref().unwrap_or("GET");
        if !is_token(method) {
            return Err(format!("{method}: not an HTTP method"));
        }
        let path = spec.path.as_deref().unwrap_or("/");
        if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{path}: a request path starts with / and holds only visible ASCII (percent-encode the rest)"
            ));
        }
        let mut http = Http::new(method, path);
        if let Some(h) = &spec.host {
            http = http.with_host(h);
        }
        for (k, v) in &spec.headers {
            if !is_token(k) {
                return Err(format!(
                    "{k}: not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)"
                ));
            }
            http = http.with_header(k, v);
        }
        Request::http(peer, port, http)
    } else {
        Request::tcp(peer, port)
    };
    if let Some(ip) = spec.source_ip {
        request = request.with_source_ip(ip);
    }
    if let Some(t) = &spec.jwt {
        if t.issuer.is_empty() || t.subject.is_empty() {
            return Err("a token needs an issuer and a subject".to_owned());
        }
        let mut jwt = Jwt::new(&t.issuer, &t.subject).with_audiences(&t.audiences);
        for (path, value) in &t.claims {
            if path.len() == 1 && ["iss", "sub", "aud"].contains(&path[0].as_str()) {
                return Err(format!(
                    "claim {}: set the issuer, subject and audiences of the token instead",
                    path[0]
                ));
            }
            jwt = jwt.with_claim(path, value.clone());
        }
        request = request.with_jwt(jwt);
    }
    Ok(Resolved {
        to_label,
        namespace: workload.namespace.clone(),
        labels: workload.labels.clone(),
        from_label,
        request,
        notes,
    })
}

fn port_list(w: &Workload) -> String {
    w.ports
        .iter()
        .map(|p| p.port.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A claim path from a command-line key: `role`, or `realm_access[roles]` for nesting.
pub fn claim_path(key: &str) -> Result<Vec<String>, String> {
    match key.find('[') {
        None if !key.is_empty() => Ok(vec![key.to_owned()]),
        Some(i) if i > 0 => {
            let mut path = vec![key[..i].to_owned()];
            path.extend(crate::authz::claims::parse_claim_key(&key[i..])?);
            Ok(path)
        }
        _ => Err(format!(
            "{key}: want a claim name, e.g. role or realm_access[roles]"
        )),
    }
}

/// `K=V`.
pub fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s}: want KEY=VALUE"))
}
