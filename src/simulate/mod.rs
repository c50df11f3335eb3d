//! `meshguard simulate`: would this request be allowed, and why. The objects come from
//! manifests or a live cluster ([`crate::load`]); the decision is [`crate::authz`]'s. Exit code
//! ([`Exit`]) 0 when the request is allowed, 1 when it is denied, 2 on a usage or input error.
//!
//! `meshguard test` ([`policy_tests`]) runs files of such requests with expected verdicts.

mod admission_tests;
pub mod policy_tests;
pub mod results;
pub mod scenario;

use crate::authz::hops::{Destination, Route};
use crate::authz::{Explanation, PolicySet, Verdict};
use crate::exit::Exit;
use crate::load::{InputArgs, LiveArgs, Loader, MeshArgs, PolicyArgs};
use clap::{Args, ValueEnum};
use scenario::{Caller, RequestSpec, Resolved, TokenSpec, World};
use serde_json::{json, Value};
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

/// `meshguard test`: its flags (the runner is [`policy_tests`], admission cases
/// `admission_tests`).
#[derive(Clone, Debug, Args)]
#[command(mut_arg("paths", |a| a
    .value_name("TESTFILE|PATH")
    .help("Test files, then manifests (files or directories) every test file also uses")
    .required_unless_present("record")))]
pub struct TestArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Print a captured AdmissionReview (a JSON file; repeat the flag for more) as admission
    /// test cases, with what meshguard answers now as their expectations; the positional paths
    /// are the manifests the webhook would look up.
    #[arg(long, value_name = "REVIEW.json")]
    pub record: Vec<PathBuf>,
    /// Output format of the results.
    #[arg(long, value_enum, default_value = "text")]
    pub format: results::TestFormat,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Also write the results as JUnit XML to this file.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Assume the external authorizer of CUSTOM policies denies (default: allows).
    #[arg(long)]
    pub(crate) custom_deny: bool,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimulateFormat {
    Text,
    Json,
}

#[derive(Clone, Debug, Args)]
#[command(
    group(clap::ArgGroup::new("caller").required(true).args(["from", "from_workload", "plaintext"])),
    mut_arg("paths", |a| a.required_unless_present_any(["cluster", "kubeconfig", "context"])),
    mut_arg("cluster", |a| a.conflicts_with("paths"))
    // `--kubeconfig`/`--context` without `--cluster` are refused after parsing, manifests or
    // not (`load::LiveArgs::stray_flag`), in words that say how to fix it.
)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub live: LiveArgs,
    /// The caller's mesh identity: NAMESPACE/SERVICEACCOUNT.
    #[arg(long, value_name = "NS/SA")]
    pub from: Option<String>,
    /// The caller is this workload (its ServiceAccount and data plane): NAMESPACE/NAME,
    /// NAMESPACE/KIND/NAME, or NAMESPACE/Gateway/NAME for a Gateway API gateway.
    #[arg(long, value_name = "NS/NAME")]
    pub(crate) from_workload: Option<String>,
    /// The caller has no mesh identity (sends plaintext).
    #[arg(long)]
    pub plaintext: bool,
    /// The caller's IP address (source.ip, ipBlocks).
    #[arg(long, value_name = "IP")]
    pub source_ip: Option<IpAddr>,
    /// The destination: a workload's pods, NAMESPACE/NAME (or NAMESPACE/KIND/NAME), or a
    /// Service's VIP, NAMESPACE/Service/NAME.
    #[arg(long, value_name = "NS/WORKLOAD|NS/Service/NAME")]
    pub to: String,
    /// Destination port: the workload's container port (default: its only one), or the
    /// Service's port (default: its only one).
    #[arg(long)]
    pub port: Option<u16>,
    /// HTTP method. Without --method, --path, --host, --header and --jwt the request is TCP.
    #[arg(long)]
    pub method: Option<String>,
    /// HTTP path as sent (normalised as Istio's default BASE normalisation does).
    #[arg(long)]
    pub path: Option<String>,
    /// HTTP Host (:authority) as sent, with the port if the client sends one.
    #[arg(long)]
    pub host: Option<String>,
    /// A request header (repeatable).
    #[arg(long = "header", value_name = "K=V")]
    pub headers: Vec<String>,
    /// Present a JWT: ISSUER/SUBJECT (split at the last /).
    #[arg(long, value_name = "ISSUER/SUBJECT")]
    pub jwt: Option<String>,
    /// A claim of the token (repeatable; a repeated key makes a list; nest as a[b]).
    #[arg(long = "claim", value_name = "K=V", requires = "jwt")]
    pub claims: Vec<String>,
    /// An audience of the token (repeatable).
    #[arg(long = "audience", value_name = "A", requires = "jwt")]
    pub audiences: Vec<String>,
    /// Assume the external authorizer of CUSTOM policies denies (default: allows).
    #[arg(long)]
    pub(crate) custom_deny: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: SimulateFormat,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub mesh: MeshArgs,
}

impl SimulateArgs {
    /// The request as written on the command line.
    pub(crate) fn request_spec(&self) -> Result<RequestSpec, String> {
        let from = match (&self.from, &self.from_workload) {
            (Some(f), _) => Caller::Identity(f.clone()),
            (_, Some(w)) => Caller::Workload(w.clone()),
            _ => Caller::Plaintext,
        };
        let headers = self
            .headers
            .iter()
            .map(|h| scenario::key_value(h))
            .collect::<Result<Vec<_>, _>>()?;
        let jwt = match &self.jwt {
            None => None,
            Some(j) => {
                let (issuer, subject) = j
                    .rsplit_once('/')
                    .filter(|(i, s)| !i.is_empty() && !s.is_empty())
                    .ok_or_else(|| {
                        format!(
                            "--jwt {j}: want ISSUER/SUBJECT, e.g. https://auth.example.com/alice"
                        )
                    })?;
                let mut claims = Vec::new();
                for c in &self.claims {
                    let (k, v) = scenario::key_value(c)?;
                    claims.push((scenario::claim_path(&k)?, Value::String(v)));
                }
                Some(TokenSpec {
                    issuer: issuer.to_owned(),
                    subject: subject.to_owned(),
                    audiences: self.audiences.clone(),
                    claims,
                })
            }
        };
        Ok(RequestSpec {
            from,
            to: self.to.clone(),
            port: self.port,
            source_ip: self.source_ip,
            method: self.method.clone(),
            path: self.path.clone(),
            host: self.host.clone(),
            headers,
            jwt,
        })
    }
}

/// The objects and the mesh a decision runs in: manifests (`-` from `stdin`; every document
/// must parse) or the live cluster, the mesh as installed with the mesh flags, the policy's
/// overrides applied.
pub fn world(
    loader: &Loader,
    input: &InputArgs,
    live: &LiveArgs,
    stdin: &mut dyn std::io::Read,
) -> Result<World, String> {
    let loaded = if live.cluster {
        loader.cluster(&live.kube, false)?
    } else {
        loader.manifests_strict(&input.paths, stdin, &input.namespace, &[])?
    };
    Ok(World::new(
        loaded.inventory,
        loader.decision_mesh(&loaded.mesh),
    ))
}

/// The request and its explanation as JSON: the explanation's fields plus `request`.
pub(crate) fn json_of(resolved: &Resolved, ex: &Explanation) -> Value {
    let req = &resolved.request;
    let mut v = serde_json::to_value(ex).unwrap_or(Value::Null);
    let http = req.http_part().map(|h| {
        json!({
            "method": h.method(),
            "path": h.raw_path(),
            "normalizedPath": h.path(),
            "host": h.host(),
            "headers": h.headers().iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        })
    });
    if let Some(m) = v.as_object_mut() {
        m.insert(
            "request".into(),
            json!({
                "from": resolved.from_label,
                "to": resolved.to_label,
                "port": req.port(),
                "protocol": if req.is_http() { "HTTP" } else { "TCP" },
                "http": http,
                "sourceIp": req.source_ip().map(|i| i.to_string()),
                "jwt": req.jwt().map(|j| j.principal()),
                "caller": resolved.caller.as_str(),
                "addressed": match resolved.via {
                    crate::authz::hops::Addressed::Service { .. } => "service",
                    crate::authz::hops::Addressed::Pod => "pod",
                },
                "workloads": resolved.targets.iter().map(|t| json!({
                    "workload": t.label, "port": t.port, "dataPlane": t.plane.plane.as_str(),
                })).collect::<Vec<_>>(),
            }),
        );
    }
    v
}

/// The explanation as text, with the request line after the headline and, when the request
/// takes more than one hop or meets no sidecar, the path.
pub(crate) fn text_of(resolved: &Resolved, ex: &Explanation) -> String {
    let body = ex.text();
    let (head, rest) = body.split_once('\n').unwrap_or((&body, ""));
    let mut path = String::new();
    let plain_sidecar = ex.hops.len() == 1 && ex.hops[0].enforcer == "sidecar";
    if !ex.hops.is_empty() && !plain_sidecar {
        let mut chain = vec![format!("{} caller", resolved.caller.as_str())];
        chain.extend(ex.hops.iter().map(|h| h.at.clone()));
        path.push_str(&format!("  path:        {}\n", chain.join(" → ")));
        for (i, h) in ex.hops.iter().enumerate() {
            path.push_str(&format!("  hop {}:       {}\n", i + 1, h.line()));
        }
    }
    format!(
        "{head}\n  request:     {} → {}, port {}, {}\n{path}{rest}",
        resolved.from_label,
        resolved.to_label,
        resolved.request.port(),
        resolved.request.describe()
    )
}

/// Resolve and explain one request: the path it takes to each workload it can land on (one for
/// a workload, every workload a Service selects), through the waypoints the data plane sends it
/// to.
pub fn simulate(
    world: &World,
    set: &PolicySet,
    spec: &RequestSpec,
) -> Result<(Resolved, Explanation), String> {
    let resolved = scenario::resolve(world, spec)?;
    let mut explained: Vec<Explanation> = Vec::new();
    for t in &resolved.targets {
        let dest = Destination {
            namespace: &t.namespace,
            labels: &t.labels,
            label: t.label.clone(),
            plane: t.plane,
            workload_waypoint: t.workload_waypoint.clone(),
        };
        let route = Route::new(set, &world.topology, resolved.caller, resolved.via, &dest);
        let forwarded = route.forwarded(&resolved.request, t.port);
        explained.push(route.explain(&resolved.request, &forwarded));
    }
    // Several workloads behind one Service: the request lands on one of them. Report the first
    // that denies (the request can be denied), with a note when the others differ.
    let verdicts: Vec<Verdict> = explained.iter().map(|e| e.verdict).collect();
    let pick = verdicts
        .iter()
        .position(|v| *v == Verdict::Deny)
        .unwrap_or(0);
    let mut ex = explained.swap_remove(pick);
    if resolved.targets.len() > 1 && verdicts.iter().any(|v| *v != verdicts[0]) {
        let list: Vec<String> = resolved
            .targets
            .iter()
            .zip(&verdicts)
            .map(|(t, v)| format!("{} {v}", t.label))
            .collect();
        ex.notes.insert(
            0,
            format!(
                "{} load-balances over several workloads and the verdict depends on which one the request lands on ({}): shown is one that denies",
                resolved.to_label,
                list.join(", ")
            ),
        );
    }
    ex.notes.splice(0..0, resolved.notes.iter().cloned());
    Ok((resolved, ex))
}

pub fn run(args: SimulateArgs) -> Exit {
    let code = execute(&args, &mut std::io::stdout().lock(), &mut std::io::stderr());
    let _ = std::io::stdout().flush();
    code
}

/// `simulate` with its streams given. Returns the exit code: Ok when the request is allowed,
/// Findings when it is denied.
pub fn execute(args: &SimulateArgs, out: &mut dyn Write, err: &mut dyn Write) -> Exit {
    let result = (|| -> Result<(Resolved, Explanation), String> {
        let spec = args.request_spec()?;
        let loader = Loader::new(&args.policy, &args.mesh)?;
        let world = world(&loader, &args.input, &args.live, &mut std::io::stdin())?;
        let set = world.policy_set().assume_custom_deny(args.custom_deny);
        simulate(&world, &set, &spec)
    })();
    let (resolved, ex) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(err, "meshguard simulate: {e}");
            return Exit::Error;
        }
    };
    let rendered = match args.format {
        SimulateFormat::Text => text_of(&resolved, &ex),
        SimulateFormat::Json => {
            let mut s = serde_json::to_string_pretty(&json_of(&resolved, &ex)).unwrap_or_default();
            s.push('\n');
            s
        }
    };
    let _ = out.write_all(rendered.as_bytes());
    Exit::failed_if(ex.verdict == Verdict::Deny)
}
