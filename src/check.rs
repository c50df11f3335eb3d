//! `meshguard check PATH…`: evaluate manifests offline. Every object is evaluated as a CREATE
//! by the same engine the webhook uses; the objects in the input form the cluster context
//! (Namespaces with their labels, ServiceAccounts, Istio policies, workloads), and the
//! cross-resource checks run over the whole set.

use crate::analysis::analyze;
use crate::engine::Engine;
use crate::exit::Exit;
use crate::inventory::{Inventory, Object};
use crate::load::{InputArgs, Loader, MeshArgs, PolicyArgs};
use crate::manifest::{LoadError, Loaded};
use crate::mesh::MeshContext;
use crate::report::{Format, Report};
use crate::resource::Kind;
use clap::Args;
use kube::core::DynamicObject;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Args)]
#[command(mut_arg("paths", |a| a.required(true)))]
pub struct CheckArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Print the effective mTLS of every workload and port.
    #[arg(long)]
    pub mtls: bool,
    /// Write the mutated manifests (what the mutating webhook would patch in) to stdout; the
    /// report then goes to stderr.
    #[arg(long)]
    pub fix: bool,
    /// With --fix: write the mutated manifests into this directory (same relative file names)
    /// instead of stdout.
    #[arg(long, requires = "fix", value_name = "DIR")]
    pub(crate) fix_dir: Option<PathBuf>,
    /// The input is the whole cluster: namespaces, ServiceAccounts and workloads absent from
    /// it do not exist (by default they are unknown).
    #[arg(long)]
    pub complete: bool,
    #[command(flatten)]
    pub mesh: MeshArgs,
}

/// What `check` built from its input, before evaluation.
#[derive(Debug, Default)]
pub struct Prepared {
    pub inventory: Inventory,
    /// Index into the inventory's objects for each loaded object (None: not a checked kind).
    pub(crate) object_of: Vec<Option<usize>>,
    pub errors: Vec<LoadError>,
    pub skipped: BTreeMap<String, usize>,
    /// MutatingWebhookConfigurations and ConfigMaps of the input (not checked themselves): what
    /// the mesh context is built from; and PolicyExceptions, which the engine applies.
    pub mesh_objects: Vec<DynamicObject>,
}

/// One loaded object sorted for [`Prepared`].
pub(crate) enum Prepped {
    Object(Box<Object>),
    Skipped(String),
    /// Not checked, but read for the mesh context.
    Mesh(String, Box<DynamicObject>),
}

/// Sort one loaded object: an inventory object (held compact, [`Object::new`]) of a checked
/// kind, a mesh object, or skipped. `keep_values`: leave the loaded JSON in place (needed by
/// `--fix`); otherwise it is moved out.
pub(crate) fn prepare_one(
    o: &mut crate::manifest::ManifestObject,
    default_namespace: &str,
    keep_values: bool,
) -> Prepped {
    let (api_version, kind_s) = o
        .object
        .types
        .as_ref()
        .map(|t| (t.api_version.clone(), t.kind.as_str()))
        .unwrap_or_default();
    let Some(kind) = Kind::from_api_version(&api_version, kind_s) else {
        let skipped = format!("{api_version}/{kind_s}");
        if is_mesh_object(&api_version, kind_s) {
            return Prepped::Mesh(skipped, Box::new(o.object.clone()));
        }
        return Prepped::Skipped(skipped);
    };
    let mut obj = if keep_values {
        o.object.clone()
    } else {
        std::mem::replace(
            &mut o.object,
            DynamicObject {
                types: None,
                metadata: Default::default(),
                data: Value::Null,
            },
        )
    };
    if kind.facts().namespaced && obj.metadata.namespace.is_none() {
        obj.metadata.namespace = Some(default_namespace.to_owned());
    }
    let version = api_version
        .rsplit_once('/')
        .map_or(api_version.as_str(), |(_, v)| v)
        .to_owned();
    Prepped::Object(Box::new(Object::new(
        kind,
        version,
        obj,
        Some(o.file.clone()),
        Some(o.line),
    )))
}

/// Turn loaded objects into the run's inventory; objects of other kinds are counted as
/// skipped. `keep_values`: keep the loaded JSON (needed by `--fix`); otherwise it is moved.
/// `complete`: the input is the whole cluster (what it lacks does not exist).
pub fn prepare(
    loaded: &mut Loaded,
    default_namespace: &str,
    keep_values: bool,
    complete: bool,
) -> Prepared {
    let errors = std::mem::take(&mut loaded.errors);
    let parts = crate::parallel::par_map_mut(&mut loaded.objects, |chunk| {
        chunk
            .iter_mut()
            .map(|o| prepare_one(o, default_namespace, keep_values))
            .collect::<Vec<_>>()
    });
    assemble(parts.into_iter().flatten(), errors, complete)
}

/// [`Prepared`] from sorted objects (input order) and the load errors.
pub(crate) fn assemble(
    prepped: impl IntoIterator<Item = Prepped>,
    errors: Vec<LoadError>,
    complete: bool,
) -> Prepared {
    let mut p = Prepared {
        errors,
        ..Default::default()
    };
    // Straight into the inventory, sized once: no second vector of objects, no doubling.
    let mut inventory = if complete {
        Inventory::complete(Vec::new())
    } else {
        Inventory::partial(Vec::new())
    };
    let prepped = prepped.into_iter();
    inventory.reserve(prepped.size_hint().0);
    p.object_of.reserve(prepped.size_hint().0);
    for prepped in prepped {
        match prepped {
            Prepped::Object(o) => {
                p.object_of.push(Some(inventory.len()));
                inventory.push(*o);
            }
            Prepped::Skipped(k) => {
                *p.skipped.entry(k).or_default() += 1;
                p.object_of.push(None);
            }
            Prepped::Mesh(k, o) => {
                *p.skipped.entry(k).or_default() += 1;
                p.object_of.push(None);
                p.mesh_objects.push(*o);
            }
        }
    }
    p.inventory = inventory;
    p
}

/// A kind the mesh context reads (an injector's MutatingWebhookConfiguration, Istio's ConfigMaps),
/// or a PolicyException (`config::exceptions`).
fn is_mesh_object(api_version: &str, kind: &str) -> bool {
    (kind == "MutatingWebhookConfiguration"
        && api_version.starts_with("admissionregistration.k8s.io/"))
        || (kind == "ConfigMap" && api_version == "v1")
        || (kind == crate::config::exceptions::KIND && api_version.starts_with("meshguard.io/"))
}

/// The mesh context of a `check` run: the mesh objects of the input, the `--mesh-config` file
/// (already read: path and text) and the Istio namespace flag. The policy's overrides are applied
/// by the engine.
pub fn mesh_context(
    prepared: &Prepared,
    mesh_config: Option<(&str, &str)>,
    istio_namespace: Option<&str>,
) -> MeshContext {
    let mut b = MeshContext::builder();
    if let Some(ns) = istio_namespace {
        b.istio_namespace_from_flag(ns, "--istio-namespace");
    }
    if let Some((path, text)) = mesh_config {
        b.mesh_config_file(path, text);
    }
    b.objects(&prepared.mesh_objects);
    // ztunnel's and istio-cni's DaemonSets (ambient as installed) are workloads of the input.
    let daemon_sets: Vec<DynamicObject> = prepared
        .inventory
        .of_kind(Kind::DaemonSet)
        .map(crate::inventory::Object::object)
        .collect();
    b.objects(&daemon_sets);
    b.build()
}

/// Manifests as read: the documents (for `check --fix`) and what `check` prepared of them.
#[derive(Debug)]
pub struct Manifests {
    pub documents: crate::manifest::Loaded,
    pub prepared: Prepared,
    pub mesh: MeshContext,
    pub exceptions: Vec<crate::config::exceptions::Exception>,
}

/// The manifest half of [`Loader`] (the cluster half is in [`crate::audit`]).
impl Loader {
    /// Read manifests (`-` from `stdin`), leaving out the files of `skip` (test files inside
    /// manifest directories). `keep_values`: keep the documents' JSON (`check --fix`);
    /// `complete`: the manifests are the whole cluster.
    pub fn manifests(
        &self,
        paths: &[PathBuf],
        stdin: &mut dyn std::io::Read,
        namespace: &str,
        complete: bool,
        keep_values: bool,
        skip: &[PathBuf],
    ) -> Result<Manifests, String> {
        let skipped: Vec<PathBuf> = skip.iter().filter_map(|p| p.canonicalize().ok()).collect();
        let is_skipped = |file: &str| {
            !skip.is_empty()
                && std::path::Path::new(file)
                    .canonicalize()
                    .is_ok_and(|f| skipped.contains(&f))
        };
        let (documents, prepared) = if keep_values {
            let mut documents =
                crate::manifest::load_from(paths, stdin).map_err(|e| e.to_string())?;
            documents.objects.retain(|o| !is_skipped(&o.file));
            documents.errors.retain(|e| !is_skipped(&e.file));
            let prepared = crate::check::prepare(&mut documents, namespace, true, complete);
            (documents, prepared)
        } else {
            // Without `--fix` nothing goes back to the documents: each object is sorted (and
            // held compact) as soon as it is parsed, so no two objects' JSON trees are alive
            // at once.
            let (prepped, mut errors) = crate::manifest::load_map(paths, stdin, |mut o| {
                (!is_skipped(&o.file)).then(|| prepare_one(&mut o, namespace, false))
            })
            .map_err(|e| e.to_string())?;
            errors.retain(|e| !is_skipped(&e.file));
            let prepped: Vec<Prepped> = prepped.into_iter().flatten().collect();
            let prepared = assemble(prepped, errors, complete);
            (Loaded::default(), prepared)
        };
        let mesh = self.manifests_mesh(&prepared);
        let exceptions = crate::config::exceptions::from_objects(&prepared.mesh_objects);
        Ok(Manifests {
            documents,
            prepared,
            mesh,
            exceptions,
        })
    }

    /// The mesh context of manifests: the mesh objects of the input (MeshConfig and injector
    /// ConfigMaps, injector webhooks, ztunnel's and istio-cni's DaemonSets) and the mesh flags.
    pub(crate) fn manifests_mesh(&self, prepared: &Prepared) -> MeshContext {
        crate::check::mesh_context(
            prepared,
            self.mesh_config
                .as_ref()
                .map(|(p, t)| (p.as_str(), t.as_str())),
            self.istio_namespace.as_deref(),
        )
    }

    /// Read manifests that must all parse (`simulate`, `test`, `diff`): a document that does
    /// not is an error, not a finding.
    pub fn manifests_strict(
        &self,
        paths: &[PathBuf],
        stdin: &mut dyn std::io::Read,
        namespace: &str,
        skip: &[PathBuf],
    ) -> Result<crate::load::Loaded, String> {
        let m = self.manifests(paths, stdin, namespace, false, false, skip)?;
        if !m.prepared.errors.is_empty() {
            let list: Vec<String> = m.prepared.errors.iter().map(ToString::to_string).collect();
            return Err(format!(
                "cannot read the manifests:\n  {}",
                list.join("\n  ")
            ));
        }
        Ok(crate::load::Loaded {
            inventory: m.prepared.inventory,
            mesh: m.mesh,
            exceptions: m.exceptions,
            notes: Vec::new(),
        })
    }
}

/// Check loaded manifests: the whole pipeline short of reading files and printing.
pub fn check_loaded(engine: &Engine, prepared: &Prepared, show_mtls: bool) -> Report {
    let inventory = &prepared.inventory;
    let analysis = analyze(engine, inventory);
    let mut notes = Vec::new();
    if !inventory.is_complete() {
        let defined: BTreeSet<&str> = inventory
            .of_kind(Kind::Namespace)
            .map(Object::name)
            .collect();
        let used: BTreeSet<&str> = inventory
            .objects()
            .iter()
            .filter(|e| e.kind != Kind::Namespace)
            .map(Object::namespace)
            .filter(|ns| {
                !defined.contains(ns) && !engine.exempt_namespaces().iter().any(|x| x == ns)
            })
            .collect();
        if !used.is_empty() {
            notes.push(format!(
                "namespace{} {} not in the input: labels unknown (add the Namespace manifests, or --complete if the input is the whole cluster)",
                if used.len() == 1 { "" } else { "s" },
                used.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", "),
            ));
        }
    }
    Report {
        command: "check",
        findings: analysis.findings,
        errors: prepared.errors.clone(),
        objects: analysis.evaluated,
        skipped: prepared.skipped.clone(),
        notes,
        // Only printed with --mtls.
        mtls: if show_mtls { analysis.mtls } else { Vec::new() },
        show_mtls,
        mesh: Some(engine.mesh().clone()),
        policy_warnings: crate::catalogue::policy_warnings(engine.policy()),
        excepted: analysis.excepted,
    }
}

/// One document of `--fix` output.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FixedDoc {
    /// Nothing to patch: the document exactly as written, comments included.
    Verbatim(String),
    /// A patched object, re-rendered.
    Patched(Value),
}

/// Apply the engine's mutations to every object; returns the documents per file, in input
/// order. Documents with nothing to patch (objects of other kinds too) are passed through
/// verbatim; a patched document is re-rendered (a patched `List` as its items).
pub(crate) fn fixed_documents(
    engine: &Engine,
    loaded: &Loaded,
    prepared: &Prepared,
) -> Vec<(String, Vec<FixedDoc>)> {
    let inventory = &prepared.inventory;
    // Patch per object, then group the objects of each document.
    let patches: Vec<Vec<json_patch::PatchOperation>> = loaded
        .objects
        .iter()
        .zip(&prepared.object_of)
        .map(
            |(_, idx)| match idx.and_then(|i| inventory.objects().get(i)) {
                Some(o) => engine.mutate(&o.review(&o.object()), inventory).patch,
                None => Vec::new(),
            },
        )
        .collect();
    let mut files: Vec<(String, Vec<FixedDoc>)> = Vec::new();
    let mut i = 0;
    while i < loaded.objects.len() {
        let first = &loaded.objects[i];
        let mut j = i + 1;
        while j < loaded.objects.len() && loaded.objects[j].source.same_document(&first.source) {
            j += 1;
        }
        let docs: Vec<FixedDoc> = if patches[i..j].iter().all(Vec::is_empty) {
            vec![FixedDoc::Verbatim(first.source.text().to_owned())]
        } else {
            loaded.objects[i..j]
                .iter()
                .zip(&patches[i..j])
                .filter_map(|(o, patch)| {
                    let mut value = match serde_json::to_value(&o.object) {
                        Ok(v) => v,
                        Err(err) => {
                            tracing::warn!(file = %o.file, line = o.line, error = %err, "cannot re-encode the object");
                            return None;
                        }
                    };
                    if let Err(err) = json_patch::patch(&mut value, patch) {
                        tracing::warn!(file = %o.file, line = o.line, error = %err, "mutation did not apply");
                    }
                    Some(FixedDoc::Patched(value))
                })
                .collect()
        };
        match files.last_mut() {
            Some((f, out)) if f.as_str() == &*first.file => out.extend(docs),
            _ => files.push((first.file.to_string(), docs)),
        }
        i = j;
    }
    files
}

/// Render documents as a multi-document YAML stream.
pub(crate) fn to_yaml_stream(docs: &[FixedDoc]) -> Result<String, String> {
    let mut out = String::new();
    for (i, d) in docs.iter().enumerate() {
        let text = match d {
            FixedDoc::Verbatim(t) => t.clone(),
            FixedDoc::Patched(v) => serde_saphyr::to_string(v).map_err(|e| e.to_string())?,
        };
        // A verbatim `--- content` document carries its own marker.
        if i > 0 && !text.starts_with("---") {
            out.push_str("---\n");
        }
        out.push_str(&text);
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    Ok(out)
}

fn fix_path(dir: &Path, file: &str) -> PathBuf {
    if file == "-" {
        return dir.join("stdin.yaml");
    }
    let rel: PathBuf = Path::new(file)
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    dir.join(rel)
}

pub fn run(args: CheckArgs) -> Exit {
    let code = execute(
        args,
        &mut std::io::stdin(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr(),
    );
    let _ = std::io::stdout().flush();
    code
}

/// `check` with its streams given: reads `-` from `stdin`, writes the report (and `--fix`
/// output) to `out`, diagnostics to `err`. Returns the exit code.
pub fn execute(
    args: CheckArgs,
    stdin: &mut dyn std::io::Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Exit {
    macro_rules! fail {
        ($($t:tt)*) => {{
            let _ = writeln!(err, "meshguard check: {}", format!($($t)*));
            return Exit::Error;
        }};
    }
    let loader = match Loader::new(&args.policy, &args.mesh) {
        Ok(l) => l,
        Err(e) => fail!("{e}"),
    };
    let manifests = match loader.manifests(
        &args.input.paths,
        stdin,
        &args.input.namespace,
        args.complete,
        args.fix,
        &[],
    ) {
        Ok(m) => m,
        Err(e) => fail!("{e}"),
    };
    let (mut loaded, prepared) = (manifests.documents, manifests.prepared);
    if !args.fix {
        // Only --fix goes back to the documents: without it, the emptied shells of the moved
        // objects and the file texts (~1 KB an object) need not outlive the inventory's build.
        let shells = std::mem::take(&mut loaded.objects);
        std::thread::spawn(move || drop(shells));
    }
    let engine = loader.engine(manifests.mesh, manifests.exceptions, None);
    let report = check_loaded(&engine, &prepared, args.mtls);
    if args.fix {
        let files = fixed_documents(&engine, &loaded, &prepared);
        if let Some(dir) = &args.fix_dir {
            for (file, docs) in &files {
                let path = fix_path(dir, file);
                let text = match to_yaml_stream(docs) {
                    Ok(t) => t,
                    Err(e) => fail!("cannot render {file}: {e}"),
                };
                let written = path
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&path, text));
                if let Err(e) = written {
                    fail!("cannot write {}: {e}", path.display());
                }
            }
            let _ = report.write(args.format, out);
        } else {
            let all: Vec<FixedDoc> = files.into_iter().flat_map(|(_, d)| d).collect();
            match to_yaml_stream(&all) {
                Ok(t) => {
                    let _ = out.write_all(t.as_bytes());
                }
                Err(e) => fail!("cannot render the fixed manifests: {e}"),
            }
            let _ = report.write(args.format, err);
        }
    } else {
        // Streamed: a large JSON report is never held whole.
        let _ = report.write(args.format, out);
    }
    let code = report.exit();
    // Freeing a large inventory takes a noticeable share of a run: do it off the exit path.
    if prepared.inventory.len() > 10_000 {
        std::thread::spawn(move || drop((loaded, prepared, report)));
    }
    code
}
