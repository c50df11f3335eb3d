//! The cluster audit, streamed: the objects of a live cluster are listed page by page, in
//! namespace order, and judged a batch of namespaces at a time; each batch's objects are dropped
//! once its findings are kept. The findings are exactly those of one [`analyze`] over the whole
//! cluster (a test compares them): every check that looks beyond one namespace gets what it reads.
//!
//! * **Context**, listed first and kept for the whole run: every Namespace (metadata only) and
//!   the names of every ServiceAccount, shared by every batch's inventory as lookups
//!   ([`Inventory::with_shared`]), never copied into one; the objects of the root namespace
//!   (mesh-wide policies apply to every batch); and the DestinationRules whose `tls.mode: DISABLE`
//!   reaches Services of other namespaces.
//! * **Batches**: every namespaced kind is listed cluster-wide, page by page (`limit`/`continue`;
//!   kube-apiserver returns objects in key order, namespace by namespace); the pages of all kinds
//!   are merged namespace by namespace, and namespaces are gathered until a batch holds
//!   `batch_objects` objects. Objects are decoded as the webhook decodes them (pod specs pruned to
//!   what checks read, no `status`, no `managedFields`, no last-applied annotation) and held
//!   compact from the page on. A batch's inventory holds its own Namespaces, the root
//!   namespace's objects and its objects: the cross checks that go over namespaces
//!   (`ap-no-default-deny`, `injector-overlap`) go over the batch's, and every other Namespace
//!   and ServiceAccount answers lookups only (existence, labels, a principal's account). A batch
//!   keeps the findings about its own namespaces; those about injector configurations (the same
//!   in every batch) once.
//! * **Mesh-wide checks**: a root-namespace AuthorizationPolicy or RequestAuthentication
//!   selects workloads in every namespace (`selector-matches-nothing`, `ra-unenforced`,
//!   `policy-unenforced`), a root-namespace PeerAuthentication with mode DISABLE applies to the
//!   ambient workloads of every namespace (`pa-ambient-disable`), and a DestinationRule may point
//!   at Services elsewhere (`dr-disable-vs-mtls`): those findings come from a final pass over the
//!   context and just the objects they read (the workloads such a policy selects or applies to,
//!   the JWT-enforcing AuthorizationPolicies of their namespaces, the Services, workloads and
//!   PeerAuthentications of the namespaces such a rule points at), collected while the batches
//!   go by.
//!
//! [`analyze`]: crate::analysis::analyze

use crate::config::exceptions::{sort_excepted, ObjectExcepted};
use crate::cross::{self, CrossContext};
use crate::engine::Engine;
use crate::finding::{subject_order, ObjectFinding, Subject};
use crate::inventory::{Inventory, Object, SharedNamespaces};
use crate::model::AuthorizationPolicy;
use crate::model::{decode_spec, DestinationRule};
use crate::mtls;
use crate::resource::Kind;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

/// Checks whose findings about root-namespace AuthorizationPolicies and RequestAuthentications
/// depend on workloads of every namespace (a root-namespace selector selects in every namespace).
const ROOT_SCOPED: &[&str] = &[
    "selector-matches-nothing",
    "ra-unenforced",
    "policy-unenforced",
];
/// The check whose findings about a root-namespace PeerAuthentication with mode DISABLE depend
/// on the ambient workloads of every namespace (it applies mesh-wide).
const ROOT_PEER_SCOPED: &str = "pa-ambient-disable";
/// The check whose findings about a DestinationRule depend on Services of other namespaces.
const DR_SCOPED: &str = "dr-disable-vs-mtls";

/// What the whole run keeps besides the findings.
#[derive(Debug, Default)]
pub struct Context {
    /// Every Namespace (metadata only) and the ServiceAccount names by namespace: shared by
    /// every batch's inventory, never copied into one.
    pub cluster: SharedNamespaces,
    /// Objects of the root namespace.
    pub(crate) root_objects: Vec<Object>,
    /// DestinationRules with a DISABLE site toward Services outside their namespace, with the
    /// namespaces they reach (`None`: a wildcard host, every namespace).
    pub(crate) deferred_rules: Vec<(Object, Option<BTreeSet<String>>)>,
    /// Gateways outside the root namespace: a Namespace or Service binds to a waypoint of
    /// another namespace (`istio.io/use-waypoint-namespace`), an HTTPRoute attaches to a Gateway
    /// elsewhere, a principal names a gateway's identity; every batch holds them (few).
    pub gateways: Vec<Object>,
}

impl Context {
    /// An object of the cluster-wide listing the context keeps (besides the root namespace's).
    pub(crate) fn consider(&mut self, o: &Object, root: &str) {
        match o.kind {
            Kind::DestinationRule => self.consider_destination_rule(o),
            Kind::Gateway if o.namespace() != root => self.gateways.push(o.clone()),
            _ => {}
        }
    }
}

impl Context {
    /// A DestinationRule to keep for the final pass, and the namespaces it reaches.
    pub(crate) fn consider_destination_rule(&mut self, o: &Object) {
        // A spec the typed decode refuses is istio-invalid-spec, judged in its batch.
        let spec = o.spec();
        let Ok(dr) = decode_spec::<DestinationRule<'_>>(&spec) else {
            return;
        };
        let Some(host) = dr.host() else { return };
        if !dr.tls_sites().any(|s| s.mode() == "DISABLE") {
            return;
        }
        // As dr-disable-vs-mtls resolves hosts: a wildcard matches Services by suffix anywhere,
        // `<svc>.<ns>.svc[.<domain>]` names one namespace, a short name the rule's own.
        let reach = if host.contains('*') {
            None
        } else if !host.contains('.') {
            return; // its own namespace: judged in its batch
        } else {
            let ns = host
                .split('.')
                .nth(1)
                .filter(|_| host.contains(".svc"))
                .map(str::to_owned);
            match ns {
                Some(ns) if ns != o.namespace() => Some(BTreeSet::from([ns])),
                _ => return,
            }
        };
        self.deferred_rules.push((o.clone(), reach));
    }
}

/// The analysis of a cluster delivered a batch of namespaces at a time.
pub struct StreamAnalysis<'e> {
    engine: &'e Engine,
    root: String,
    /// The cluster's Namespaces and ServiceAccounts (the context's, shared by the batches).
    cluster: Arc<SharedNamespaces>,
    context: Context,
    /// Root-namespace AuthorizationPolicies and RequestAuthentications whose scope is every
    /// namespace: (kind, name, selector labels, is a RequestAuthentication).
    root_scoped: Vec<(Kind, String, BTreeMap<String, String>)>,
    /// A root-namespace PeerAuthentication without a selector sets mode DISABLE somewhere: the
    /// final pass reads every ambient workload.
    root_disable: bool,
    /// Objects the final pass reads, by (kind, namespace, name).
    kept_for_final: BTreeMap<(Kind, String, String), Object>,
    findings: Vec<ObjectFinding>,
    /// Findings an exception covers, kept apart as `analyze` keeps them.
    excepted: Vec<ObjectExcepted>,
    /// Findings about subjects outside any namespace (injector configurations), once each
    /// (excepted ones apart: `true`).
    global_seen: HashSet<(String, String, String, bool)>,
    mtls: Vec<mtls::Row>,
    /// Whether the mTLS table is kept (`audit --mtls`); the periodic audit shows none.
    keep_mtls: bool,
    evaluated: usize,
    batched: BTreeSet<String>,
}

impl<'e> StreamAnalysis<'e> {
    pub fn new(engine: &'e Engine, mut context: Context) -> StreamAnalysis<'e> {
        let root = engine.mesh().root_namespace().value.clone();
        let cluster = Arc::new(std::mem::take(&mut context.cluster));
        let root_scoped = context
            .root_objects
            .iter()
            .filter(|o| {
                matches!(
                    o.kind,
                    Kind::AuthorizationPolicy | Kind::RequestAuthentication
                )
            })
            .map(|o| {
                (
                    o.kind,
                    o.name().to_owned(),
                    crate::model::Selector::of_spec(&o.spec()).to_map(),
                )
            })
            .collect();
        let root_disable = context
            .root_objects
            .iter()
            .filter(|o| o.kind == Kind::PeerAuthentication)
            .any(|o| {
                let spec = o.spec();
                let pa: crate::model::PeerAuthentication<'_> =
                    decode_spec(&spec).unwrap_or_default();
                pa.selector().is_empty() && pa.modes().any(|(_, m)| m == "DISABLE")
            });
        StreamAnalysis {
            engine,
            root,
            cluster,
            root_disable,
            context,
            root_scoped,
            kept_for_final: BTreeMap::new(),
            findings: Vec::new(),
            excepted: Vec::new(),
            global_seen: HashSet::new(),
            mtls: Vec::new(),
            keep_mtls: true,
            evaluated: 0,
            batched: BTreeSet::new(),
        }
    }

    /// Keep the mTLS table or not (a row per workload port, held until the end of the run).
    pub(crate) fn keep_mtls(mut self, keep: bool) -> StreamAnalysis<'e> {
        self.keep_mtls = keep;
        self
    }

    /// The namespaces already judged.
    pub fn batched(&self) -> &BTreeSet<String> {
        &self.batched
    }

    /// Judge the objects of `namespaces` (every object they hold, of every kind).
    pub fn batch(&mut self, namespaces: &BTreeSet<String>, objects: Vec<Object>) {
        let with_root = namespaces.contains(&self.root);
        // Every Namespace and ServiceAccount answers lookups (existence, labels) from the shared
        // context; the batch holds its own Namespaces only, so the cross checks that go over
        // namespaces go over the batch's.
        let mut inventory = Inventory::complete(Vec::new()).with_shared(Arc::clone(&self.cluster));
        for ns in namespaces {
            if let Some(o) = self.cluster.namespaces.get(ns) {
                inventory.push(o.clone());
            }
        }
        if !with_root {
            for o in &self.context.root_objects {
                inventory.push(o.clone());
            }
        }
        for o in &self.context.gateways {
            if !namespaces.contains(o.namespace()) {
                inventory.push(o.clone());
            }
        }
        let first_own = inventory.len();
        for o in objects {
            inventory.push(o);
        }
        // Admission rules on the batch's own objects (and its Namespaces).
        let own = |o: &Object| namespaces.contains(o.namespace());
        let mut batch_findings = Vec::new();
        let mut batch_excepted = Vec::new();
        for (i, o) in inventory.objects().iter().enumerate() {
            let is_own = if o.kind == Kind::Namespace {
                own(o)
            } else {
                i >= first_own || (with_root && o.namespace() == self.root)
            };
            if !is_own || o.kind == Kind::ServiceAccount {
                continue;
            }
            self.evaluated += 1;
            let object = o.object();
            let ev = self.engine.evaluate(&o.review(&object), &inventory);
            let subject = o.subject();
            batch_findings.extend(ev.findings.into_iter().map(|finding| ObjectFinding {
                subject: subject.clone(),
                finding,
            }));
            batch_excepted.extend(ev.excepted.into_iter().map(|e| ObjectExcepted {
                subject: subject.clone(),
                finding: e.finding,
                exception: e.exception,
            }));
        }
        let cx = CrossContext::new(self.engine, &inventory);
        let (cross, cross_excepted) = cross::run_all_with_exceptions(&cx);
        let seen: HashSet<(&str, &Subject)> = batch_findings
            .iter()
            .map(|f| (f.finding.rule, &f.subject))
            .collect();
        let cross_findings: Vec<ObjectFinding> = cross
            .into_iter()
            .filter(|f| !seen.contains(&(f.finding.rule, &f.subject)))
            .filter(|f| self.batch_keeps(namespaces, &f.finding, &f.subject, false))
            .collect();
        let seen: HashSet<(&str, &Subject)> = batch_excepted
            .iter()
            .map(|f| (f.finding.rule, &f.subject))
            .collect();
        let cross_excepted: Vec<ObjectExcepted> = cross_excepted
            .into_iter()
            .filter(|f| !seen.contains(&(f.finding.rule, &f.subject)))
            .filter(|f| self.batch_keeps(namespaces, &f.finding, &f.subject, true))
            .collect();
        self.findings.extend(batch_findings);
        self.findings.extend(cross_findings);
        self.excepted.extend(batch_excepted);
        self.excepted.extend(cross_excepted);
        if self.keep_mtls {
            self.mtls.extend(
                cx.mtls_rows()
                    .iter()
                    .filter(|r| namespaces.contains(&r.namespace))
                    .cloned(),
            );
        }
        self.keep_for_final(namespaces, &cx);
        self.batched.extend(namespaces.iter().cloned());
    }

    /// Judge the Namespaces no batch held (no object lives in them), `per_batch` at a time.
    pub(crate) fn batch_the_rest(&mut self, per_batch: usize) {
        let rest: Vec<String> = self
            .cluster
            .namespaces
            .keys()
            .filter(|ns| !self.batched.contains(*ns))
            .cloned()
            .collect();
        for chunk in rest.chunks(per_batch.max(1)) {
            let namespaces: BTreeSet<String> = chunk.iter().cloned().collect();
            self.batch(&namespaces, Vec::new());
        }
    }

    /// Whether a batch keeps a cross-check finding: it is about one of the batch's namespaces
    /// (or about an injector configuration, seen for the first time) and no final-pass finding.
    fn batch_keeps(
        &mut self,
        namespaces: &BTreeSet<String>,
        finding: &crate::finding::Finding,
        s: &Subject,
        excepted: bool,
    ) -> bool {
        if s.namespace.is_empty() && s.kind != "Namespace" {
            // An injector configuration: the same in every batch.
            let key = (
                finding.rule.to_owned(),
                s.name.clone(),
                finding.violation.message.clone(),
                excepted,
            );
            return self.global_seen.insert(key);
        }
        namespaces.contains(&s.namespace) && !self.deferred(finding.rule, s)
    }

    /// A finding the final pass decides instead.
    fn deferred(&self, rule: &str, s: &Subject) -> bool {
        if rule == ROOT_PEER_SCOPED
            && self.root_disable
            && s.namespace == self.root
            && s.kind == Kind::PeerAuthentication.as_str()
        {
            return true;
        }
        if ROOT_SCOPED.contains(&rule)
            && s.namespace == self.root
            && self
                .root_scoped
                .iter()
                .any(|(k, n, _)| k.as_str() == s.kind && *n == s.name)
        {
            return true;
        }
        rule == DR_SCOPED
            && self
                .context
                .deferred_rules
                .iter()
                .any(|(o, _)| o.namespace() == s.namespace && o.name() == s.name)
    }

    /// Keep what the final pass reads from this batch.
    fn keep_for_final(&mut self, namespaces: &BTreeSet<String>, cx: &CrossContext<'_>) {
        let inventory = cx.inventory;
        let mut keep = |o: &Object| {
            self.kept_for_final.insert(
                (o.kind, o.namespace().to_owned(), o.name().to_owned()),
                o.clone(),
            );
        };
        // Workloads a root-scoped policy selects, and the JWT-enforcing AuthorizationPolicies of
        // their namespaces.
        let mut jwt_namespaces = BTreeSet::new();
        for (kind, _, selector) in &self.root_scoped {
            for w in inventory.workloads() {
                if !namespaces.contains(&w.workload.namespace) {
                    continue;
                }
                if crate::model::label_selector::all_pairs_match(
                    &w.workload.labels,
                    selector.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                ) {
                    keep(inventory.workload_object(w));
                    if *kind == Kind::RequestAuthentication {
                        jwt_namespaces.insert(w.workload.namespace.clone());
                    }
                }
            }
        }
        // Ambient workloads, which a mesh-wide DISABLE PeerAuthentication applies to.
        if self.root_disable {
            for (i, w) in inventory.workloads().iter().enumerate() {
                if namespaces.contains(&w.workload.namespace)
                    && cx.plane(i).plane == crate::dataplane::Plane::Ambient
                {
                    keep(inventory.workload_object(w));
                }
            }
        }
        for o in inventory.of_kind(Kind::AuthorizationPolicy) {
            if jwt_namespaces.contains(o.namespace())
                && AuthorizationPolicy::of(&o.spec()).requires_jwt(o.is_dry_run())
            {
                keep(o);
            }
        }
        // What the deferred DestinationRules reach: Services, workloads and PeerAuthentications.
        let reached = |ns: &str| {
            self.context
                .deferred_rules
                .iter()
                .any(|(_, reach)| reach.as_ref().is_none_or(|set| set.contains(ns)))
        };
        let reached: Vec<&String> = namespaces.iter().filter(|ns| reached(ns)).collect();
        for ns in reached {
            for kind in [Kind::Service, Kind::PeerAuthentication] {
                for o in inventory
                    .of_kind(kind)
                    .filter(|o| o.namespace() == ns.as_str())
                {
                    keep(o);
                }
            }
            for &wi in inventory.workloads_in(ns) {
                keep(inventory.workload_object(&inventory.workloads()[wi]));
            }
        }
    }

    /// The final pass, then every finding, sorted as `analyze` sorts them.
    pub fn finish(mut self) -> crate::analysis::Analysis {
        // ServiceAccounts are judged by no admission rule; `analyze` counts them all the same.
        self.evaluated += self.cluster.accounts.values().map(Vec::len).sum::<usize>();
        let needs_final = !self.root_scoped.is_empty()
            || self.root_disable
            || !self.context.deferred_rules.is_empty();
        if needs_final {
            let mut inventory =
                Inventory::complete(Vec::new()).with_shared(Arc::clone(&self.cluster));
            // In the order a live listing has them (kind by kind, then namespace and name), as
            // the workloads a message lists come in inventory order.
            let mut objects: BTreeMap<(Kind, String, String), &Object> = BTreeMap::new();
            for o in self
                .context
                .root_objects
                .iter()
                .chain(self.context.deferred_rules.iter().map(|(o, _)| o))
                .chain(self.context.gateways.iter())
                .chain(self.kept_for_final.values())
            {
                objects
                    .entry((o.kind, o.namespace().to_owned(), o.name().to_owned()))
                    .or_insert(o);
            }
            for o in objects.into_values() {
                inventory.push(o.clone());
            }
            let cx = CrossContext::new(self.engine, &inventory);
            let (decided, decided_excepted) = cross::run_all_with_exceptions(&cx);
            // An admission rule of the same id may already have reported the same subject.
            let seen: HashSet<(&str, &Subject)> = self
                .findings
                .iter()
                .map(|f| (f.finding.rule, &f.subject))
                .collect();
            let decided: Vec<ObjectFinding> = decided
                .into_iter()
                .filter(|f| self.deferred(f.finding.rule, &f.subject))
                .filter(|f| !seen.contains(&(f.finding.rule, &f.subject)))
                .collect();
            let seen: HashSet<(&str, &Subject)> = self
                .excepted
                .iter()
                .map(|f| (f.finding.rule, &f.subject))
                .collect();
            let decided_excepted: Vec<ObjectExcepted> = decided_excepted
                .into_iter()
                .filter(|f| self.deferred(f.finding.rule, &f.subject))
                .filter(|f| !seen.contains(&(f.finding.rule, &f.subject)))
                .collect();
            self.findings.extend(decided);
            self.excepted.extend(decided_excepted);
        }
        // The findings are what is left: the context goes before they are sorted.
        let mut findings = std::mem::take(&mut self.findings);
        let mut excepted = std::mem::take(&mut self.excepted);
        let mtls = std::mem::take(&mut self.mtls);
        let evaluated = self.evaluated;
        drop(self);
        sort_findings_in_place(&mut findings);
        sort_excepted(&mut excepted);
        crate::analysis::Analysis {
            findings,
            excepted,
            mtls,
            evaluated,
        }
    }
}

/// [`crate::finding::sort_findings`]'s order (stable), without its scratch copy of the findings
/// (a whole audit's findings are the largest thing it holds at the end: 13,000 findings take a
/// 3 MB scratch buffer): the indexes are sorted, then each finding is moved into place once.
fn sort_findings_in_place(items: &mut [ObjectFinding]) {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| subject_order(&items[a].subject).cmp(&subject_order(&items[b].subject)));
    // `order[i]`: the finding that goes to position i. Follow each cycle of the permutation
    // once, marking the positions done.
    for start in 0..items.len() {
        let mut at = start;
        loop {
            let from = order[at];
            order[at] = at;
            if from == start {
                break;
            }
            items.swap(at, from);
            at = from;
        }
    }
}

/// Analyse an inventory the streamed way, in batches of about `batch_objects` objects of
/// consecutive namespaces (tests compare it with `analyze`; `check` has no use for it).
pub fn analyze_in_batches(
    engine: &Engine,
    objects: Vec<Object>,
    batch_objects: usize,
) -> crate::analysis::Analysis {
    let root = engine.mesh().root_namespace().value.clone();
    let mut context = Context::default();
    let mut by_namespace: BTreeMap<String, Vec<Object>> = BTreeMap::new();
    for o in objects {
        match o.kind {
            Kind::Namespace => {
                context.cluster.namespaces.insert(o.name().to_owned(), o);
            }
            Kind::ServiceAccount => context
                .cluster
                .accounts
                .entry(o.namespace().to_owned())
                .or_default()
                .push(o.name().to_owned()),
            _ => {
                context.consider(&o, &root);
                if o.namespace() == root {
                    context.root_objects.push(o.clone());
                }
                by_namespace
                    .entry(o.namespace().to_owned())
                    .or_default()
                    .push(o);
            }
        }
    }
    let mut analysis = StreamAnalysis::new(engine, context);
    let mut batch = BTreeSet::new();
    let mut held = Vec::new();
    for (ns, objects) in by_namespace {
        batch.insert(ns);
        held.extend(objects);
        if held.len() >= batch_objects {
            analysis.batch(&batch, std::mem::take(&mut held));
            batch.clear();
        }
    }
    if !batch.is_empty() {
        analysis.batch(&batch, std::mem::take(&mut held));
    }
    analysis.batch_the_rest(batch_objects);
    analysis.finish()
}

// ---------------------------------------------------------------------------------------------
// Listing a live cluster

use crate::resource::ReviewObject;

/// Why a streamed audit stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot list {what}: {source}")]
    List {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// kube-apiserver did not return a list in namespace order: audit from one whole listing.
    #[error("{0} were not listed in namespace order")]
    OutOfOrder(&'static str),
}
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::core::TypeMeta;
use kube::Client;
use std::collections::VecDeque;

/// How the streamed audit lists and batches.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Objects per list page.
    pub page_size: u32,
    /// Objects gathered before a batch is judged (at least one namespace at a time).
    pub(crate) batch_objects: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            page_size: 100,
            batch_objects: 2000,
        }
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn object(kind: Kind, ar: &ApiResource, mut o: DynamicObject) -> Object {
    if o.types.is_none() {
        o.types = Some(TypeMeta {
            api_version: ar.api_version.clone(),
            kind: ar.kind.clone(),
        });
    }
    Object::new(kind, ar.version.clone(), o, None, None)
}

/// One page of a list, decoded as the webhook decodes objects.
async fn page(
    api: &Api<ReviewObject>,
    limit: u32,
    token: Option<&str>,
) -> Result<(Vec<DynamicObject>, Option<String>), kube::Error> {
    let mut lp = ListParams::default().limit(limit);
    if let Some(t) = token {
        lp = lp.continue_token(t);
    }
    let list = api.list(&lp).await?;
    let next = list.metadata.continue_.filter(|t| !t.is_empty());
    Ok((list.items.into_iter().map(|o| o.0).collect(), next))
}

fn list_error(ar: &ApiResource, source: kube::Error) -> StreamError {
    StreamError::List {
        what: if ar.group.is_empty() {
            format!("{} ({})", ar.plural, ar.version)
        } else {
            format!("{}.{} ({})", ar.plural, ar.group, ar.version)
        },
        source,
    }
}

/// A cursor over the version of `kind` the cluster serves (the first of meshguard's whose list
/// answers), with its first page read; `None` when no version is served.
async fn open(client: &Client, kind: Kind, limit: u32) -> Result<Option<Cursor>, StreamError> {
    let f = kind.facts();
    for version in f.versions {
        let gvk = GroupVersionKind::gvk(f.group, version, kind.as_str());
        let ar = ApiResource::from_gvk_with_plural(&gvk, f.plural);
        let mut cursor = Cursor {
            kind,
            api: Api::all_with(client.clone(), &ar),
            ar,
            page: VecDeque::new(),
            token: None,
            started: false,
            last_namespace: String::new(),
            limit,
        };
        match page(&cursor.api, limit, None).await {
            Ok((items, next)) => {
                cursor.started = true;
                cursor.token = next;
                cursor.hold(items);
                return Ok(Some(cursor));
            }
            Err(e) if is_not_found(&e) => continue,
            Err(source) => return Err(list_error(&cursor.ar, source)),
        }
    }
    Ok(None)
}

/// One kind's cluster-wide list, read a page at a time, in namespace order.
struct Cursor {
    kind: Kind,
    ar: ApiResource,
    api: Api<ReviewObject>,
    /// The rest of the page read last, each object held compact as soon as it is decoded.
    page: VecDeque<Object>,
    token: Option<String>,
    started: bool,
    last_namespace: String,
    limit: u32,
}

/// kube-apiserver did not return a list in namespace order.
#[derive(Debug)]
struct OutOfOrder;

impl Cursor {
    fn hold(&mut self, items: Vec<DynamicObject>) {
        let (kind, ar) = (self.kind, &self.ar);
        self.page
            .extend(items.into_iter().map(|o| object(kind, ar, o)));
    }

    async fn fill(&mut self) -> Result<(), StreamError> {
        while self.page.is_empty() && (!self.started || self.token.is_some()) {
            let (items, next) = page(&self.api, self.limit, self.token.as_deref())
                .await
                .map_err(|e| list_error(&self.ar, e))?;
            self.started = true;
            self.token = next;
            self.hold(items);
        }
        Ok(())
    }

    async fn peek_namespace(&mut self) -> Result<Option<String>, StreamError> {
        self.fill().await?;
        Ok(self.page.front().map(|o| o.namespace().to_owned()))
    }

    /// Move the objects of `ns` into `out`; `Err(None)` when the list is out of order.
    async fn take(
        &mut self,
        ns: &str,
        out: &mut Vec<Object>,
    ) -> Result<Result<(), OutOfOrder>, StreamError> {
        loop {
            self.fill().await?;
            let Some(front) = self.page.front() else {
                return Ok(Ok(()));
            };
            let front_ns = front.namespace();
            if front_ns != ns {
                if front_ns < ns || front_ns < self.last_namespace.as_str() {
                    return Ok(Err(OutOfOrder));
                }
                return Ok(Ok(()));
            }
            if let Some(o) = self.page.pop_front() {
                out.push(o);
            }
            self.last_namespace = ns.to_owned();
        }
    }
}

/// List everything of `kind` in one namespace (the root namespace's context).
async fn list_namespace(
    client: &Client,
    kind: Kind,
    ar: &ApiResource,
    ns: &str,
    limit: u32,
) -> Result<Vec<Object>, StreamError> {
    let api: Api<ReviewObject> = Api::namespaced_with(client.clone(), ns, ar);
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let (items, next) = page(&api, limit, token.as_deref())
            .await
            .map_err(|e| list_error(ar, e))?;
        out.extend(items.into_iter().map(|o| object(kind, ar, o)));
        token = next;
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// What the checks read of an object judged by its metadata: its identity, labels, annotations
/// and deletion (tens of thousands of ServiceAccounts are listed; nothing else is kept).
pub(crate) fn identity_metadata(m: kube::core::ObjectMeta) -> kube::core::ObjectMeta {
    let m = slim_metadata(m);
    kube::core::ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        labels: m.labels.filter(|l| !l.is_empty()),
        annotations: m.annotations.filter(|a| !a.is_empty()),
        deletion_timestamp: m.deletion_timestamp,
        ..Default::default()
    }
}

/// Metadata without what no check reads and every object may carry in bulk.
pub(crate) fn slim_metadata(mut m: kube::core::ObjectMeta) -> kube::core::ObjectMeta {
    m.managed_fields = None;
    if let Some(a) = m.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    m
}

/// Metadata-only objects of `kind` (Namespaces, ServiceAccounts), page by page, each handed to
/// `each`.
async fn each_metadata(
    client: &Client,
    kind: Kind,
    ar: &ApiResource,
    limit: u32,
    mut each: impl FnMut(Object),
) -> Result<(), StreamError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(limit);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let list = api
            .list_metadata(&lp)
            .await
            .map_err(|e| list_error(ar, e))?;
        for o in list.items {
            // Kept for the whole run (Namespaces) and cloned into every batch: only what the
            // checks read (identity, labels, annotations, deletion), as the whole listing keeps.
            let dynamic = DynamicObject {
                types: o.types,
                metadata: identity_metadata(o.metadata),
                data: serde_json::Value::Object(Default::default()),
            };
            each(object(kind, ar, dynamic));
        }
        token = list.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(());
        }
    }
}

/// The streamed audit of a live cluster: every finding of one `analyze` over it, with at most a
/// batch of namespaces (and a page per kind) in memory besides the context.
/// [`StreamError::OutOfOrder`] when kube-apiserver does not return lists in namespace order
/// (the caller then audits from one whole listing).
/// `mtls`: keep the mTLS table (`audit --mtls`).
pub async fn audit(
    client: &Client,
    engine: &Engine,
    limits: Limits,
    mtls: bool,
    progress: Option<&indicatif::ProgressBar>,
) -> Result<(crate::analysis::Analysis, Vec<String>), StreamError> {
    let mut notes = Vec::new();
    let root = engine.mesh().root_namespace().value.clone();
    let mut context = Context::default();
    let mut cursors = Vec::new();
    for facts in crate::resource::KIND_FACTS {
        let kind = facts.kind;
        if let Some(pb) = progress {
            pb.set_message(format!("{} (context)", kind.as_str()));
        }
        let Some(cursor) = open(client, kind, limits.page_size).await? else {
            notes.push(format!(
                "{} skipped: {} {} not served (CRD absent)",
                kind.as_str(),
                facts.group,
                facts.versions.join("/")
            ));
            continue;
        };
        let ar = cursor.ar.clone();
        match kind {
            // Judged by their metadata, listed as such (the cursor's first page is dropped).
            Kind::Namespace => {
                each_metadata(client, kind, &ar, limits.page_size, |o| {
                    context.cluster.namespaces.insert(o.name().to_owned(), o);
                })
                .await?
            }
            Kind::ServiceAccount => {
                each_metadata(client, kind, &ar, limits.page_size, |o| {
                    context
                        .cluster
                        .accounts
                        .entry(o.namespace().to_owned())
                        .or_default()
                        .push(o.name().to_owned());
                })
                .await?
            }
            _ if !facts.namespaced => {
                notes.push(format!("{} is cluster-scoped: not audited", kind.as_str()));
            }
            _ => {
                context
                    .root_objects
                    .extend(list_namespace(client, kind, &ar, &root, limits.page_size).await?);
                if matches!(kind, Kind::DestinationRule | Kind::Gateway) {
                    let api: Api<ReviewObject> = Api::all_with(client.clone(), &ar);
                    let mut token = None;
                    loop {
                        let (items, next) = page(&api, limits.page_size, token.as_deref())
                            .await
                            .map_err(|e| list_error(&ar, e))?;
                        for o in items {
                            context.consider(&object(kind, &ar, o), &root);
                        }
                        token = next;
                        if token.is_none() {
                            break;
                        }
                    }
                }
                cursors.push(cursor);
            }
        }
        if let Some(pb) = progress {
            pb.inc(1);
        }
    }
    let mut analysis = StreamAnalysis::new(engine, context).keep_mtls(mtls);
    let mut batch = BTreeSet::new();
    let mut held: Vec<Object> = Vec::new();
    loop {
        let mut next: Option<String> = None;
        for c in cursors.iter_mut() {
            if let Some(ns) = c.peek_namespace().await? {
                if next.as_ref().is_none_or(|n| ns < *n) {
                    next = Some(ns);
                }
            }
        }
        let Some(ns) = next else { break };
        if let Some(pb) = progress {
            pb.set_message(format!("namespace {ns}"));
        }
        for c in cursors.iter_mut() {
            if c.take(&ns, &mut held).await?.is_err() {
                return Err(StreamError::OutOfOrder(c.kind.facts().plural));
            }
        }
        batch.insert(ns);
        if held.len() >= limits.batch_objects {
            analysis.batch(&batch, std::mem::take(&mut held));
            batch.clear();
            // A batch is CPU work: let the runtime's other tasks in between.
            tokio::task::yield_now().await;
        }
    }
    if !batch.is_empty() {
        analysis.batch(&batch, std::mem::take(&mut held));
    }
    analysis.batch_the_rest(limits.batch_objects);
    Ok((analysis.finish(), notes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::analyze;
    use crate::config::Policy;
    use crate::mesh::MeshContext;
    use std::sync::Arc;

    fn objects_of(yaml: &str) -> Vec<Object> {
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml).expect("yaml");
        docs.into_iter()
            .filter(|d| d.is_object())
            .filter_map(|mut d| {
                let kind = Kind::from_api_version(d["apiVersion"].as_str()?, d["kind"].as_str()?)?;
                if kind != Kind::Namespace && d["metadata"]["namespace"].is_null() {
                    d["metadata"]["namespace"] = serde_json::json!("default");
                }
                let version = d["apiVersion"].as_str()?.rsplit('/').next()?.to_owned();
                let object: DynamicObject = serde_json::from_value(d).ok()?;
                Some(Object::new(kind, version, object, None, None))
            })
            .collect()
    }

    /// A cluster: the objects, one of each (kind, namespace, name), and a Namespace for every
    /// namespace they live in.
    fn cluster(mut objects: Vec<Object>) -> Vec<Object> {
        let mut seen = HashSet::new();
        objects.retain(|o| seen.insert((o.kind, o.namespace().to_owned(), o.name().to_owned())));
        let have: BTreeSet<String> = objects
            .iter()
            .filter(|o| o.kind == Kind::Namespace)
            .map(|o| o.name().to_owned())
            .collect();
        let need: BTreeSet<String> = objects.iter().map(|o| o.namespace().to_owned()).collect();
        for ns in need.difference(&have) {
            objects.extend(objects_of(&format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n"
            )));
        }
        objects
    }

    fn fixtures() -> Vec<Object> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut out = Vec::new();
        for dir in [
            "tests/fixtures/tutorial",
            "tests/fixtures/check/cross",
            "tests/fixtures/check/tutorial",
            "tests/fixtures/check/conformance",
            "tests/fixtures/mesh/canary",
        ] {
            let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            files.sort();
            for f in files
                .into_iter()
                .filter(|f| f.extension().is_some_and(|e| e == "yaml"))
            {
                out.extend(objects_of(&std::fs::read_to_string(f).unwrap_or_default()));
            }
        }
        out
    }

    /// Cross-namespace cases: root-namespace policies with selectors and a mesh-wide
    /// RequestAuthentication, DestinationRules toward Services of other namespaces (one a wildcard).
    const ACROSS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: c, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: b}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {serviceAccountName: web, containers: [{name: app, image: app, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: b}
spec: {selector: {app: web}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: b}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: to-web, namespace: a}
spec: {host: web.b.svc.cluster.local, trafficPolicy: {tls: {mode: DISABLE}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: everything, namespace: c}
spec: {host: "*.svc.cluster.local", trafficPolicy: {tls: {mode: DISABLE}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: web-only, namespace: istio-system}
spec: {selector: {matchLabels: {app: web}}, rules: [{from: [{source: {principals: ["cluster.local/ns/a/sa/nobody"]}}]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: nothing-selected, namespace: istio-system}
spec: {selector: {matchLabels: {app: none}}, rules: [{to: [{operation: {ports: ["80"]}}]}]}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: mesh-jwt, namespace: istio-system}
spec: {jwtRules: [{issuer: "https://issuer.example", audiences: [x]}]}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: web-jwt, namespace: istio-system}
spec: {selector: {matchLabels: {app: web}}, jwtRules: [{issuer: "https://issuer.example", audiences: [x]}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: b}
spec: {selector: {matchLabels: {app: web}}, rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]}
---
apiVersion: v1
kind: Pod
metadata: {name: lone, namespace: c, labels: {app: web}}
spec: {serviceAccountName: default, containers: [{name: app, image: app}]}
"#;

    /// Root-namespace policies whose findings read workloads of other namespaces (mesh-wide
    /// checks: every batch holds the root namespace's objects, one batch may report them), and
    /// lookups across namespaces held by different batches (Namespace labels, ServiceAccounts,
    /// principals by namespace prefix).
    const MESH_WIDE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: aa-plain}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: legacy, namespace: aa-plain}
spec:
  selector: {matchLabels: {app: legacy}}
  template:
    metadata: {labels: {app: legacy}}
    spec: {serviceAccountName: legacy, containers: [{name: app, image: app}]}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: legacy, namespace: aa-plain}
---
apiVersion: v1
kind: Namespace
metadata: {name: mm-ambient, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: mm-ambient}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: app, image: app, ports: [{containerPort: 8080}]}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: zz-callers, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: caller, namespace: zz-callers}
spec:
  selector: {matchLabels: {app: caller}}
  template:
    metadata: {labels: {app: caller}}
    spec: {serviceAccountName: legacy, containers: [{name: app, image: app}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: from-elsewhere, namespace: zz-callers}
spec:
  selector: {matchLabels: {app: caller}}
  rules:
    - from:
        - source:
            principals: ["cluster.local/ns/aa-plain/sa/legacy", "cluster.local/ns/aa-plain/sa/ghost", "cluster.local/ns/nowhere/sa/x"]
            namespaces: ["mm-*", "qq-*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: legacy-only, namespace: istio-system}
spec: {selector: {matchLabels: {app: legacy}}, rules: [{to: [{operation: {ports: ["80"]}}]}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: mesh-disable, namespace: istio-system}
spec: {mtls: {mode: DISABLE}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ww-waypoints}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: ww-waypoints, labels: {istio.io/waypoint-for: service}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE, allowedRoutes: {namespaces: {from: All}}}]
status:
  addresses: [{type: IPAddress, value: 10.0.0.9}]
---
apiVersion: v1
kind: Service
metadata:
  name: api
  namespace: mm-ambient
  labels: {istio.io/use-waypoint: shared, istio.io/use-waypoint-namespace: ww-waypoints}
spec: {selector: {app: api}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata:
  name: lost
  namespace: mm-ambient
  labels: {istio.io/use-waypoint: gone, istio.io/use-waypoint-namespace: ww-waypoints}
spec: {selector: {app: api}, ports: [{name: http, port: 81, targetPort: 8080}]}
"#;

    type Key = (String, String, String, &'static str, String, String, String);

    fn keys(a: &crate::analysis::Analysis) -> Vec<Key> {
        let mut k: Vec<Key> = a
            .findings
            .iter()
            .map(|f| {
                (
                    f.subject.namespace.clone(),
                    f.subject.kind.clone(),
                    f.subject.name.clone(),
                    f.finding.rule,
                    f.finding.action.as_str().to_owned(),
                    f.finding.violation.path.clone(),
                    f.finding.violation.message.clone(),
                )
            })
            .collect();
        k.sort();
        k
    }

    /// Per-namespace actions and exceptions, for admission rules and for checks of each pass
    /// (batch, deferred DestinationRule, root-scoped policy).
    const OPERATIONS: &str = r#"
overrides:
  - namespaces: [b]
    mode: audit
  - namespaces: [c]
    rules: [wl-default-service-account]
    action: "off"
exceptions:
  - name: web-pa
    rules: [pa-permissive-mtls]
    namespaces: [b]
    reason: migrating
    owner: team-b
    expires: 2099-01-01
  - name: to-web
    rules: [dr-disable-vs-mtls]
    names: [to-web]
    reason: legacy client
    owner: team-a
    expires: 2099-01-01
  - name: root-selectors
    rules: [selector-matches-nothing]
    namespaces: [istio-system]
    reason: staged
    ticket: MESH-1
    expires: 2099-01-01
"#;

    fn excepted_keys(a: &crate::analysis::Analysis) -> Vec<(String, String, String, String)> {
        let mut k: Vec<_> = a
            .excepted
            .iter()
            .map(|e| {
                (
                    e.subject.namespace.clone(),
                    e.subject.name.clone(),
                    e.finding.rule.to_owned(),
                    e.exception.name.clone(),
                )
            })
            .collect();
        k.sort();
        k
    }

    #[test]
    fn batches_find_exactly_what_one_analysis_finds() {
        for policy in [
            Policy::default(),
            crate::catalogue::policy_from_yaml(OPERATIONS, "operations").expect("policy"),
        ] {
            let engine = Engine::new(
                policy.clone(),
                Arc::new(MeshContext::default()),
                Some("meshguard"),
            );
            batches_agree(&engine, !policy.exceptions.is_empty());
        }
    }

    fn batches_agree(engine: &Engine, with_exceptions: bool) {
        for (what, objects) in [
            ("fixtures", cluster(fixtures())),
            ("across namespaces", cluster(objects_of(ACROSS))),
            (
                "both",
                cluster(fixtures().into_iter().chain(objects_of(ACROSS)).collect()),
            ),
            ("mesh-wide", cluster(objects_of(MESH_WIDE))),
        ] {
            // In the order a live listing has them: kind by kind, then namespace and name.
            let mut objects = objects;
            objects.sort_by(|a, b| {
                (a.kind, a.namespace(), a.name()).cmp(&(b.kind, b.namespace(), b.name()))
            });
            let whole = analyze(engine, &Inventory::complete(objects.clone()));
            let expected = keys(&whole);
            assert!(!expected.is_empty(), "{what}");
            for batch in [1, 3, 10, usize::MAX] {
                let streamed = analyze_in_batches(engine, objects.clone(), batch);
                let got = keys(&streamed);
                let missing: Vec<&Key> = expected.iter().filter(|k| !got.contains(k)).collect();
                let extra: Vec<&Key> = got.iter().filter(|k| !expected.contains(k)).collect();
                assert!(
                    missing.is_empty() && extra.is_empty() && got.len() == expected.len(),
                    "{what}, batches of {batch}: missing {missing:#?}\nextra {extra:#?}"
                );
                assert_eq!(
                    streamed.evaluated, whole.evaluated,
                    "{what}, batches of {batch}"
                );
                assert_eq!(
                    streamed.mtls.len(),
                    whole.mtls.len(),
                    "{what}, batches of {batch}"
                );
                assert_eq!(
                    excepted_keys(&streamed),
                    excepted_keys(&whole),
                    "{what}, batches of {batch}"
                );
            }
            if with_exceptions && (what == "across namespaces" || what == "both") {
                let names: BTreeSet<String> = excepted_keys(&whole)
                    .into_iter()
                    .map(|(_, _, rule, name)| format!("{rule}/{name}"))
                    .collect();
                assert_eq!(
                    names,
                    BTreeSet::from([
                        "dr-disable-vs-mtls/to-web".to_owned(),
                        "pa-permissive-mtls/web-pa".to_owned(),
                        "selector-matches-nothing/root-selectors".to_owned(),
                    ]),
                    "{what}"
                );
            }
        }
    }

    #[test]
    fn findings_sorted_in_place_as_sort_findings_sorts_them() {
        let engine = Engine::new(Policy::default(), Arc::new(MeshContext::default()), None);
        let mut objects = cluster(fixtures().into_iter().chain(objects_of(ACROSS)).collect());
        objects.reverse();
        let mut findings = analyze(&engine, &Inventory::complete(objects)).findings;
        // An order with runs, ties (one subject, several rules) and cycles.
        findings.reverse();
        let n = findings.len();
        assert!(n > 20, "{n}");
        findings.rotate_left(n / 3);
        let mut expected = findings.clone();
        crate::finding::sort_findings(&mut expected);
        sort_findings_in_place(&mut findings);
        let show = |v: &[ObjectFinding]| {
            v.iter()
                .map(|f| {
                    format!(
                        "{} {} {}",
                        f.subject.label(),
                        f.finding.rule,
                        f.finding.violation.message
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(show(&findings), show(&expected));
        sort_findings_in_place(&mut []);
    }

    /// One analysis of a whole test cluster, unbatched.
    fn analyze_whole(yaml: &str) -> crate::analysis::Analysis {
        let engine = Engine::new(Policy::default(), Arc::new(MeshContext::default()), None);
        analyze(&engine, &Inventory::complete(cluster(objects_of(yaml))))
    }

    /// (rule, subject name) of every finding.
    fn rule_subjects(whole: &crate::analysis::Analysis) -> BTreeSet<(&str, &str)> {
        whole
            .findings
            .iter()
            .map(|f| (f.finding.rule, f.subject.name.as_str()))
            .collect()
    }

    #[test]
    fn the_mesh_wide_cases_are_there() {
        let whole = analyze_whole(MESH_WIDE);
        let rules = rule_subjects(&whole);
        for expected in [
            ("policy-unenforced", "legacy-only"),
            ("pa-ambient-disable", "mesh-disable"),
            ("ap-unknown-principal", "from-elsewhere"),
            ("waypoint-unbound", "lost"),
        ] {
            assert!(rules.contains(&expected), "{expected:?} not in {rules:#?}");
        }
        let messages: Vec<&str> = whole
            .findings
            .iter()
            .filter(|f| f.finding.rule == "ap-unknown-principal")
            .map(|f| f.finding.violation.message.as_str())
            .collect();
        // The account and the namespace prefix that exist (in other batches) are not reported.
        assert!(
            messages.iter().any(|m| m.contains("aa-plain/ghost")),
            "{messages:#?}"
        );
        assert!(
            messages.iter().any(|m| m.contains("\"nowhere\"")),
            "{messages:#?}"
        );
        assert!(messages.iter().any(|m| m.contains("qq-*")), "{messages:#?}");
        assert!(
            !messages.iter().any(|m| m.contains("aa-plain/legacy\"")),
            "{messages:#?}"
        );
        assert!(
            !messages.iter().any(|m| m.contains("mm-*")),
            "{messages:#?}"
        );
        // The Service bound to the waypoint of another namespace is bound.
        assert!(!rules.contains(&("waypoint-unbound", "api")), "{rules:#?}");
    }

    #[test]
    fn the_cross_namespace_cases_are_there() {
        let whole = analyze_whole(ACROSS);
        let rules = rule_subjects(&whole);
        for expected in [
            ("dr-disable-vs-mtls", "to-web"),
            ("dr-disable-vs-mtls", "everything"),
            ("selector-matches-nothing", "nothing-selected"),
            ("ra-unenforced", "mesh-jwt"),
        ] {
            assert!(rules.contains(&expected), "{expected:?} not in {rules:#?}");
        }
    }
}
