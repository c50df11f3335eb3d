//! The set computation against the evaluator, on generated policy sets: a seeded generator (the
//! same policies on every run) writes AuthorizationPolicies from pools of Istio's value forms,
//! and for each set every property below must hold for every caller and for requests drawn
//! from pools that include the policies' own values and their near misses.
//!
//! * **Cells are exact**: a drawn request falls in a cell whose representative the evaluator
//!   decides the same way.
//! * **Descriptions are exact**: the merged description, evaluated on the request with the
//!   policies' values alone, agrees with the evaluator.
//! * **Witnesses flip**: every change between two sets comes with a request the evaluator
//!   decides differently under each; a drawn request that flips is in a change.
//! * A set compared with itself has no change.

use super::describe::describe;
use super::eval::Enforcement;
use super::space::{Partition, Protocols};
use super::{compare, edge_set, ChangeKind};
use crate::authz::decision::tests::obj;
use crate::authz::{Http, Identity, Jwt, Mesh, Outcome, PolicySet, Request};
use crate::resource::Kind;
use kube::core::DynamicObject;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// SplitMix64: a small, seeded generator (the same sequence on every run and platform).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
    fn some<T: Clone>(&mut self, xs: &[T], max: usize) -> Vec<T> {
        let n = 1 + self.below(max);
        (0..n).map(|_| self.pick(xs).clone()).collect()
    }
}

const PRINCIPALS: &[&str] = &[
    "cluster.local/ns/prod/sa/web",
    "cluster.local/ns/prod/sa/admin",
    "cluster.local/ns/other/sa/client",
    "cluster.local/ns/prod/*",
    "*/sa/web",
    "*",
];
const NAMESPACES: &[&str] = &["prod", "other", "o*"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "G*", "*T", "*"];
const PATHS: &[&str] = &[
    "/api/*",
    "/api/data",
    "/admin*",
    "/admin/*",
    "/health",
    "*.json",
    "/api/{*}/data",
    "/static/{**}",
    "/",
    "/a/../b",
    "*",
];
const HOSTS: &[&str] = &[
    "api.example.com",
    "*.example.com",
    "API.*",
    "api.example.com:*",
];
const HEADER_VALUES: &[&str] = &["v1", "v2", "v*", "*", "beta"];
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "10.1.0.0/16",
    "203.0.113.0/24",
    "2001:db8::/32",
];
const ROLES: &[&str] = &["admin", "user", "a*", "*"];
const ISSUERS: &[&str] = &["https://auth.example.com", "https://other.example.com"];

fn strs(xs: Vec<&str>) -> Value {
    Value::Array(xs.into_iter().map(|s| json!(s)).collect())
}

/// One generated rule.
fn rule(r: &mut Rng) -> Value {
    let mut rule = serde_json::Map::new();
    if r.chance(70) {
        let mut src = serde_json::Map::new();
        match r.below(5) {
            0 => {
                src.insert("principals".into(), strs(r.some(PRINCIPALS, 2)));
            }
            1 => {
                src.insert("namespaces".into(), strs(r.some(NAMESPACES, 2)));
            }
            2 => {
                src.insert("notPrincipals".into(), strs(r.some(PRINCIPALS, 1)));
            }
            3 => {
                src.insert(
                    "requestPrincipals".into(),
                    json!([format!("{}/*", r.pick(ISSUERS))]),
                );
            }
            _ => {
                src.insert("ipBlocks".into(), strs(r.some(CIDRS, 2)));
            }
        }
        rule.insert("from".into(), json!([{ "source": src }]));
    }
    if r.chance(75) {
        let mut op = serde_json::Map::new();
        if r.chance(60) {
            op.insert(
                if r.chance(80) {
                    "methods"
                } else {
                    "notMethods"
                }
                .into(),
                strs(r.some(METHODS, 2)),
            );
        }
        if r.chance(70) {
            op.insert(
                if r.chance(80) { "paths" } else { "notPaths" }.into(),
                strs(r.some(PATHS, 3)),
            );
        }
        if r.chance(20) {
            op.insert("hosts".into(), strs(r.some(HOSTS, 2)));
        }
        if r.chance(15) {
            op.insert("ports".into(), json!([r.pick(&["80", "8080"])]));
        }
        rule.insert("to".into(), json!([{ "operation": op }]));
    }
    if r.chance(40) {
        let mut when = Vec::new();
        match r.below(4) {
            0 => when.push(json!({"key": "request.headers[x-v]", if r.chance(75) { "values" } else { "notValues" }: strs(r.some(HEADER_VALUES, 2))})),
            1 => when.push(json!({"key": "request.auth.claims[role]", "values": strs(r.some(ROLES, 2))})),
            2 => when.push(json!({"key": "source.ip", "values": strs(r.some(CIDRS, 1))})),
            _ => when.push(json!({"key": "request.headers[\"x-quoted\"]", "values": ["1"]})),
        }
        rule.insert("when".into(), json!(when));
    }
    Value::Object(rule)
}

/// A generated policy set for workload `app: api` in `prod`.
fn policies(r: &mut Rng) -> Vec<(Kind, DynamicObject)> {
    let mut out = Vec::new();
    let n = 1 + r.below(3);
    for i in 0..n {
        let action = *r.pick(&["ALLOW", "ALLOW", "DENY", "CUSTOM"]);
        let rules: Vec<Value> = (0..1 + r.below(2)).map(|_| rule(r)).collect();
        let mut spec = json!({"action": action, "rules": rules});
        if action == "CUSTOM" {
            spec["provider"] = json!({"name": "opa"});
        }
        if r.chance(70) {
            spec["selector"] = json!({"matchLabels": {"app": "api"}});
        }
        let created = json!({"creationTimestamp": format!("2024-01-0{}T00:00:00Z", i + 1)});
        out.push(obj(
            Kind::AuthorizationPolicy,
            "prod",
            &format!("p{i}"),
            spec,
            created,
        ));
    }
    if r.chance(50) {
        out.push(obj(
            Kind::RequestAuthentication,
            "prod",
            "jwt",
            json!({"jwtRules": [{"issuer": ISSUERS[0], "audiences": ["api"]}, {"issuer": ISSUERS[1]}]}),
            json!({}),
        ));
    }
    if r.chance(40) {
        out.push(obj(
            Kind::PeerAuthentication,
            "prod",
            "pa",
            json!({"mtls": {"mode": *r.pick(&["STRICT", "PERMISSIVE", "DISABLE"])}}),
            json!({}),
        ));
    }
    out
}

fn compile(objects: &[(Kind, DynamicObject)]) -> PolicySet {
    PolicySet::new(Mesh::default(), objects.iter().map(|(k, o)| (*k, o)))
}

fn callers() -> Vec<Option<Identity>> {
    vec![
        None,
        Some(Identity::new("cluster.local", "prod", "web")),
        Some(Identity::new("cluster.local", "prod", "admin")),
        Some(Identity::new("cluster.local", "other", "client")),
        Some(Identity::new("cluster.local", "elsewhere", "x")),
    ]
}

/// A drawn request: values from the pools, their neighbours and random ones.
fn request(r: &mut Rng, peer: Option<Identity>, port: u16) -> Request {
    let http = r.chance(80);
    let mut req = if http {
        let method = *r.pick(&[
            "GET", "POST", "PUT", "DELETE", "PATCH", "GZ", "OPTIONS", "TRACE",
        ]);
        let path = match r.below(4) {
            0 => (*r.pick(&[
                "/",
                "/api/data",
                "/health",
                "/admin",
                "/admin/",
                "/api/",
                "/x.json",
                "/api/v1/data",
                "/static/a/b.css",
                "/a/b",
                "/api/data/x.json",
            ]))
            .to_owned(),
            1 => format!(
                "{}{}",
                r.pick(&["/api/", "/admin", "/static/", "/api/v2/"]),
                r.pick(&["", "x", "data", "y/z.json", "q/data"])
            ),
            2 => format!(
                "/{}",
                r.pick(&["adminx", "healthz", "api", "b", "%61pi/data"])
            ),
            _ => "/api/./data".to_owned(),
        };
        let mut h = Http::new(method, &path).with_host(r.pick::<&str>(&[
            "api.example.com",
            "API.EXAMPLE.COM",
            "x.example.com",
            "api.example.com:8080",
            "api.internal",
            "other",
        ]));
        if r.chance(60) {
            h = h.with_header("x-v", r.pick::<&str>(&["v1", "v2", "v3", "", "beta", "vv"]));
        }
        let mut req = Request::http(peer, port, h);
        if r.chance(40) {
            let mut jwt = Jwt::new(ISSUERS[r.below(2)], r.pick::<&str>(&["alice", "bob"]));
            if r.chance(70) {
                jwt = jwt.with_audiences(&["api".to_owned()]);
            }
            if r.chance(70) {
                jwt = jwt.with_claim(
                    &["role".to_owned()],
                    json!(r.pick(&["admin", "user", "ab", "x"])),
                );
            }
            if r.chance(30) {
                jwt = jwt.with_claim(&["role".to_owned()], json!("user"));
            }
            req = req.with_jwt(jwt);
        }
        req
    } else {
        Request::tcp(peer, port)
    };
    if r.chance(50) {
        req = req.with_source_ip(
            r.pick(&[
                "10.1.2.3",
                "10.2.0.1",
                "203.0.113.9",
                "192.0.2.1",
                "2001:db8::5",
                "::1",
            ])
            .parse()
            .expect("ip"),
        );
    }
    req
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([("app".to_owned(), "api".to_owned())])
}

/// Outside the request space: refused before authorization (400, 401).
fn outside(o: Outcome) -> bool {
    matches!(o, Outcome::BadRequest | Outcome::Unauthenticated)
}

/// A token the workload's RequestAuthentications refuse (whatever refuses the request first).
fn refused_token(e: &Enforcement<'_>, req: &Request) -> bool {
    match e {
        Enforcement::Sidecar(t) => matches!(
            t.token(req),
            crate::authz::decision::TokenStep::Rejected { .. }
        ),
        Enforcement::Path(_) | Enforcement::Unenforced(_) => false,
    }
}

#[test]
fn cells_and_descriptions_agree_with_the_evaluator() {
    let mut r = Rng(0x5EED_0001);
    for round in 0..60 {
        let objects = policies(&mut r);
        let set = compile(&objects);
        let enf = Enforcement::Sidecar(set.target("prod", &labels()));
        for port in [80u16, 8080] {
            let mut p = Partition::new(
                &[&enf],
                port,
                Protocols {
                    tcp: true,
                    http: true,
                },
                "api.example.com",
            );
            assert!(p.too_large.is_none(), "round {round}: {:?}", p.notes);
            for peer in callers() {
                let space = p.evaluate(&enf, peer.clone());
                let set_ = edge_set(&p, &enf, &space);
                for c in 0..p.cells.len() {
                    // Every representative is a request the evaluator takes as it is.
                    let req = p.request(c, peer.clone());
                    assert!(
                        !outside(match enf.decide(&req) {
                            super::eval::Decision::Authz(o) => o,
                            super::eval::Decision::Unenforced => Outcome::NoAllowPolicy,
                            super::eval::Decision::Path(p) => p.outcome,
                        }),
                        "round {round}: representative {} is refused before authorization",
                        req.describe()
                    );
                    assert_eq!(
                        set_.description.holds(&p, &req),
                        space.decisions[c].allowed(),
                        "round {round}: the description {:?} misjudges its own cell {}",
                        set_.text,
                        req.describe()
                    );
                }
                for _ in 0..150 {
                    let req = request(&mut r, peer.clone(), port);
                    let super::eval::Decision::Authz(o) = enf.decide(&req) else {
                        unreachable!()
                    };
                    if outside(o) || refused_token(&enf, &req) {
                        continue;
                    }
                    let cell = p.locate(&req).unwrap_or_else(|| {
                        let dims: Vec<String> = p
                            .dims
                            .iter()
                            .map(|d| {
                                let v = d.value_of(&req, p.accepted());
                                format!(
                                    "{:?}={v:?}: {:?} of {:?}",
                                    d.key,
                                    d.class_of(&v),
                                    d.classes
                                )
                            })
                            .collect();
                        panic!(
                            "round {round}: {} falls in no cell\n{dims:#?}\n{:#?}",
                            req.describe(),
                            objects
                                .iter()
                                .map(|(_, o)| o.data.clone())
                                .collect::<Vec<_>>()
                        )
                    });
                    assert_eq!(
                        space.decisions[cell].verdict(),
                        o.verdict(),
                        "round {round}: {} decides {:?} but its cell's representative {:?}\npolicies: {:#?}",
                        req.describe(),
                        o,
                        space.decisions[cell],
                        objects.iter().map(|(_, o)| o.data.clone()).collect::<Vec<_>>()
                    );
                    assert_eq!(
                        set_.description.holds(&p, &req),
                        o.verdict() == crate::authz::Verdict::Allow,
                        "round {round}: description {:?} vs the evaluator on {} (cell {cell})",
                        set_.text,
                        req.describe()
                    );
                }
            }
        }
    }
}

#[test]
fn witnesses_flip_and_a_set_equals_itself() {
    let mut r = Rng(0x5EED_0002);
    for round in 0..60 {
        let base_objects = policies(&mut r);
        let head_objects = policies(&mut r);
        let (base, head) = (compile(&base_objects), compile(&head_objects));
        let be = Enforcement::Sidecar(base.target("prod", &labels()));
        let he = Enforcement::Sidecar(head.target("prod", &labels()));
        let mut p = Partition::new(
            &[&be, &he],
            80,
            Protocols {
                tcp: true,
                http: true,
            },
            "api.example.com",
        );
        for peer in callers() {
            let bs = p.evaluate(&be, peer.clone());
            let hs = p.evaluate(&he, peer.clone());
            assert!(compare(&p, (&be, &bs), (&be, &bs)).is_empty());
            assert!(compare(&p, (&he, &hs), (&he, &hs)).is_empty());
            let changes = compare(&p, (&be, &bs), (&he, &hs));
            for ch in &changes {
                let w = p.request(ch.witness, peer.clone());
                let (b, h) = (be.decide(&w).allowed(), he.decide(&w).allowed());
                assert_eq!(
                    h,
                    ch.kind.opens(),
                    "round {round}: witness {} of {:?} does not flip",
                    w.describe(),
                    ch.kind
                );
                assert_ne!(
                    b,
                    h,
                    "round {round}: witness {} does not flip",
                    w.describe()
                );
            }
            // A drawn request that flips is in the change of its direction.
            for _ in 0..100 {
                let req = request(&mut r, peer.clone(), 80);
                let (super::eval::Decision::Authz(b), super::eval::Decision::Authz(h)) =
                    (be.decide(&req), he.decide(&req))
                else {
                    unreachable!()
                };
                if outside(b)
                    || outside(h)
                    || refused_token(&be, &req)
                    || refused_token(&he, &req)
                    || b.verdict() == h.verdict()
                {
                    continue;
                }
                let opens = h.verdict() == crate::authz::Verdict::Allow;
                let ch = changes
                    .iter()
                    .find(|c| c.kind.opens() == opens)
                    .unwrap_or_else(|| {
                        panic!(
                            "round {round}: {} flips but no change says so",
                            req.describe()
                        )
                    });
                assert!(
                    ch.description.holds(&p, &req),
                    "round {round}: {} flips but {:?} does not hold it",
                    req.describe(),
                    ch.text
                );
                if opens {
                    assert!(matches!(ch.kind, ChangeKind::Opened | ChangeKind::Widened));
                }
            }
        }
    }
}

#[test]
fn tutorial_frontend_to_backend_reads_as_istio_writes_it() {
    let frontend_to_backend = obj(
        Kind::AuthorizationPolicy,
        "production",
        "frontend-to-backend",
        json!({"selector": {"matchLabels": {"app": "backend"}}, "rules": [{
            "from": [{"source": {"principals": ["cluster.local/ns/production/sa/frontend"]}}],
            "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/api/*", "/health"]}}],
            "when": [{"key": "request.headers[x-api-version]", "values": ["v1", "v2"]}]}]}),
        json!({}),
    );
    let rbac = obj(
        Kind::AuthorizationPolicy,
        "production",
        "backend-rbac",
        json!({"selector": {"matchLabels": {"app": "backend"}}, "rules": [{
            "from": [{"source": {"principals": ["cluster.local/ns/production/sa/frontend"]}}],
            "to": [{"operation": {"methods": ["GET"], "paths": ["/api/data"]}}]}]}),
        json!({}),
    );
    let set = compile(&[frontend_to_backend, rbac]);
    let labels = BTreeMap::from([("app".to_owned(), "backend".to_owned())]);
    let enf = Enforcement::Sidecar(set.target("production", &labels));
    let mut p = Partition::new(
        &[&enf],
        80,
        Protocols {
            tcp: true,
            http: true,
        },
        "backend",
    );
    let frontend = Identity::new("cluster.local", "production", "frontend");
    let space = p.evaluate(&enf, Some(frontend));
    let s = edge_set(&p, &enf, &space);
    assert_eq!(s.summary, super::space::Summary::Some);
    assert_eq!(
        s.text, "GET /api/data; GET,POST /api/*,/health when x-api-version ∈ {v1,v2}",
        "{:#?}",
        s.description
    );
    let space = p.evaluate(
        &enf,
        Some(Identity::new("cluster.local", "production", "admin")),
    );
    assert_eq!(edge_set(&p, &enf, &space).text, "none");
    let all: Vec<usize> = (0..p.cells.len()).collect();
    assert_eq!(describe(&p, &all, |_| None).text(&p), "all");
}

#[test]
fn callers_the_policies_cannot_tell_apart_share_one_evaluation() {
    let mut r = Rng(0x5EED_0003);
    for round in 0..25 {
        let objects = policies(&mut r);
        let set = compile(&objects);
        let enf = Enforcement::Sidecar(set.target("prod", &labels()));
        let mut reach = super::Reach::new(
            enf.clone(),
            80,
            Protocols {
                tcp: true,
                http: true,
            },
            "api.example.com",
        );
        let mut p = Partition::new(
            &[&enf],
            80,
            Protocols {
                tcp: true,
                http: true,
            },
            "api.example.com",
        );
        // Twice over, so that later callers hit the cache.
        for peer in callers().into_iter().chain(callers()) {
            let cached = reach.of(peer.as_ref());
            let direct = p.evaluate(&enf, peer.clone());
            assert_eq!(cached.0, direct, "round {round}: {peer:?}");
        }
    }
}
