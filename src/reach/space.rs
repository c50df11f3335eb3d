//! The request space of one edge (a caller to a workload port), exactly: the cells of a
//! [`Partition`] (one representative request per combination of classes), each decided by the
//! evaluator ([`Enforcement::decide`]).
//!
//! A partition is built from every enforcement point it will be asked about, so one partition
//! serves both sides of a comparison: two policy sets decide the same cells, and a cell whose
//! verdict differs is a concrete request that flips (a *witness*).

use super::dims::{Dim, DimKey, Literals, Value};
use super::eval::{Decision, Enforcement};
use crate::authz::{Http, Identity, Jwt, Request};
use crate::rules::service::PortProtocol;
use std::collections::{BTreeSet, HashMap};

/// Above this many cells an edge is not split further: its space is reported as too large.
pub(crate) const MAX_CELLS: usize = 200_000;

/// Which kinds of request reach a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocols {
    /// Plain TCP (a port declared TCP, or sniffed and not HTTP).
    pub tcp: bool,
    /// HTTP (declared, or sniffed).
    pub http: bool,
}

impl Protocols {
    /// What reaches a port of this protocol (UDP is not proxied: one "connection" cell, which
    /// nothing checks).
    pub fn of(p: PortProtocol) -> Protocols {
        match p {
            PortProtocol::Http => Protocols {
                tcp: false,
                http: true,
            },
            PortProtocol::Tcp | PortProtocol::Udp => Protocols {
                tcp: true,
                http: false,
            },
            PortProtocol::Sniffed => Protocols {
                tcp: true,
                http: true,
            },
        }
    }
}

/// One combination of classes: per dimension, the class index (0 where the dimension is not
/// read: HTTP-only dimensions of a TCP request, claims of a request without a token).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    pub http: bool,
    pub(crate) classes: Vec<u16>,
}

/// The cells of one workload port, for the enforcement points it was built from.
#[derive(Clone, Debug)]
pub struct Partition {
    pub port: u16,
    pub protocols: Protocols,
    pub(crate) dims: Vec<Dim>,
    pub cells: Vec<Cell>,
    /// The representative request of each cell, without a caller.
    requests: Vec<Request>,
    index: HashMap<Cell, usize>,
    /// Issuers some enforcement point accepts tokens of.
    accepted: BTreeSet<String>,
    /// What could not be split exactly (bounds hit).
    pub notes: Vec<String>,
    /// More than [`MAX_CELLS`] cells: nothing was evaluated.
    pub(crate) too_large: Option<usize>,
}

/// Decisions of the cells of a partition, for one caller and one enforcement point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Space {
    pub decisions: Vec<Decision>,
    /// Per cell: the CUSTOM policy (index into the policy set) whose rule the request matches,
    /// so the external authorizer also decides.
    pub custom: Vec<Option<u32>>,
}

/// How much of an edge's request space is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Summary {
    All,
    Some,
    None,
}

impl Summary {
    pub fn as_str(self) -> &'static str {
        match self {
            Summary::All => "all",
            Summary::Some => "some",
            Summary::None => "none",
        }
    }
}

impl Space {
    pub fn summary(&self) -> Summary {
        let allowed = self.decisions.iter().filter(|d| d.allowed()).count();
        if allowed == 0 {
            Summary::None
        } else if allowed == self.decisions.len() && self.custom.iter().all(Option::is_none) {
            Summary::All
        } else {
            Summary::Some
        }
    }

    /// The allowed cells.
    pub fn allowed(&self) -> Vec<usize> {
        (0..self.decisions.len())
            .filter(|&i| self.decisions[i].allowed())
            .collect()
    }
}

impl Partition {
    /// The partition of a port for the given enforcement points (all sides of a comparison).
    /// `host`: the Host a representative request carries unless the policies name hosts.
    pub fn new(
        enforcements: &[&Enforcement<'_>],
        port: u16,
        protocols: Protocols,
        host: &str,
    ) -> Partition {
        let mut lits = Literals::default();
        lits.host_seed(host);
        let mut accepted = BTreeSet::new();
        for e in enforcements {
            let mut fields = Vec::new();
            e.fields(&mut fields);
            lits.fields(&fields);
            let issuers = e.issuers();
            accepted.extend(issuers.iter().map(|i| i.issuer.clone()));
            lits.issuers(&issuers);
        }
        let (dims, notes) = lits.build();
        let mut p = Partition {
            port,
            protocols,
            dims,
            cells: Vec::new(),
            requests: Vec::new(),
            index: HashMap::new(),
            accepted,
            notes,
            too_large: None,
        };
        let total = p.count();
        if total > MAX_CELLS {
            p.too_large = Some(total);
            p.notes.push(format!(
                "{total} combinations of the values the policies name: more than {MAX_CELLS}, so this edge was not split"
            ));
            return p;
        }
        p.enumerate();
        p.requests = p.cells.iter().map(|c| p.build(c, None)).collect();
        p.index = p
            .cells
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i))
            .collect();
        p
    }

    fn token_dim(&self) -> Option<usize> {
        self.dims.iter().position(|d| d.key == DimKey::Token)
    }

    /// The number of cells (without building them).
    fn count(&self) -> usize {
        let mut total = 0usize;
        if self.protocols.tcp {
            total = total.saturating_add(
                self.dims
                    .iter()
                    .filter(|d| !d.key.http_only())
                    .fold(1usize, |n, d| n.saturating_mul(d.classes.len().max(1))),
            );
        }
        if self.protocols.http {
            let plain: usize = self
                .dims
                .iter()
                .filter(|d| !d.token_only() && d.key != DimKey::Token)
                .fold(1usize, |n, d| n.saturating_mul(d.classes.len().max(1)));
            let token_only: usize = self
                .dims
                .iter()
                .filter(|d| d.token_only())
                .fold(1usize, |n, d| n.saturating_mul(d.classes.len().max(1)));
            let tokens = self
                .token_dim()
                .map_or(1, |t| self.dims[t].classes.len().max(1));
            // No token: the token-only dimensions are not read.
            let with = tokens.saturating_sub(1).saturating_mul(token_only);
            let per = if self.token_dim().is_some() {
                1usize.saturating_add(with)
            } else {
                1
            };
            total = total.saturating_add(plain.saturating_mul(per));
        }
        total
    }

    fn enumerate(&mut self) {
        let n = self.dims.len();
        let token = self.token_dim();
        let mut out = Vec::new();
        for http in [false, true] {
            if (http && !self.protocols.http) || (!http && !self.protocols.tcp) {
                continue;
            }
            let mut cur = vec![0u16; n];
            self.walk(http, token, 0, &mut cur, &mut out);
        }
        self.cells = out;
    }

    fn walk(
        &self,
        http: bool,
        token: Option<usize>,
        d: usize,
        cur: &mut Vec<u16>,
        out: &mut Vec<Cell>,
    ) {
        if d == self.dims.len() {
            out.push(Cell {
                http,
                classes: cur.clone(),
            });
            return;
        }
        let dim = &self.dims[d];
        let no_token =
            token.is_some_and(|t| self.dims[t].classes[cur[t] as usize].value == Value::Absent);
        let pinned =
            (!http && dim.key.http_only()) || (dim.token_only() && (token.is_none() || no_token));
        let range = if pinned { 1 } else { dim.classes.len().max(1) };
        for c in 0..range {
            cur[d] = u16::try_from(c).unwrap_or(u16::MAX);
            self.walk(http, token, d + 1, cur, out);
        }
        cur[d] = 0;
    }

    /// The representative request of a cell, from `peer`.
    pub fn build(&self, cell: &Cell, peer: Option<Identity>) -> Request {
        let mut method = "GET".to_owned();
        let mut path = "/".to_owned();
        let mut host: Option<String> = None;
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut token: Option<(String, Vec<String>)> = None;
        let mut sub = "alice".to_owned();
        let mut claims: Vec<(Vec<String>, serde_json::Value)> = Vec::new();
        let mut source_ip = None;
        let mut destination_ip = None;
        let mut sni = None;
        for (dim, &c) in self.dims.iter().zip(&cell.classes) {
            let Some(class) = dim.classes.get(c as usize) else {
                continue;
            };
            if !cell.http && dim.key.http_only() {
                continue;
            }
            match (&dim.key, &class.value) {
                (DimKey::Method, Value::Str(s)) => method.clone_from(s),
                (DimKey::Path, Value::Str(s)) => path.clone_from(s),
                (DimKey::Host, Value::Str(s)) => host = Some(s.clone()),
                (DimKey::Header(n), Value::Str(s)) => headers.push((n.clone(), s.clone())),
                (DimKey::Token, Value::Token { issuer, audiences }) => {
                    token = Some((issuer.clone(), audiences.clone()))
                }
                (DimKey::Sub, Value::Str(s)) => sub.clone_from(s),
                (DimKey::Claim(p), Value::Str(s)) => {
                    claims.push((p.clone(), serde_json::Value::String(s.clone())))
                }
                (DimKey::Claim(p), Value::List(l)) => claims.push((
                    p.clone(),
                    serde_json::Value::Array(
                        l.iter().cloned().map(serde_json::Value::String).collect(),
                    ),
                )),
                (DimKey::SourceIp, Value::Ip(ip)) => source_ip = Some(*ip),
                (DimKey::DestinationIp, Value::Ip(ip)) => destination_ip = Some(*ip),
                (DimKey::Sni, Value::Str(s)) if !s.is_empty() => sni = Some(s.clone()),
                _ => {}
            }
        }
        let mut req = if cell.http {
            let mut h = Http::new(&method, &path);
            if let Some(host) = &host {
                h = h.with_host(host);
            }
            for (k, v) in &headers {
                h = h.with_header(k, v);
            }
            let mut r = Request::http(peer, self.port, h);
            if let Some((iss, auds)) = token {
                let mut jwt = Jwt::new(&iss, &sub).with_audiences(&auds);
                for (p, v) in claims {
                    jwt = jwt.with_claim(&p, v);
                }
                r = r.with_jwt(jwt);
            }
            r
        } else {
            Request::tcp(peer, self.port)
        };
        if let Some(ip) = source_ip {
            req = req.with_source_ip(ip);
        }
        if let Some(ip) = destination_ip {
            req = req.with_destination_ip(ip);
        }
        if let Some(s) = &sni {
            req = req.with_sni(s);
        }
        req
    }

    /// The representative request of cell `i`, from `peer`.
    pub fn request(&self, i: usize, peer: Option<Identity>) -> Request {
        let mut r = self.requests[i].clone();
        r.peer = peer;
        r
    }

    /// Decide every cell at `enforcement` for a caller (`None`: a plaintext client).
    pub fn evaluate(&mut self, enforcement: &Enforcement<'_>, peer: Option<Identity>) -> Space {
        let mut decisions = Vec::with_capacity(self.requests.len());
        let mut custom = Vec::with_capacity(self.requests.len());
        let mut id = peer;
        for r in &mut self.requests {
            r.peer = id.take();
            let d = enforcement.decide(r);
            custom.push(if d.allowed() {
                enforcement.custom_match(r)
            } else {
                None
            });
            decisions.push(d);
            id = r.peer.take();
        }
        Space { decisions, custom }
    }

    /// The cell a request falls in (`None`: a request outside the partition's universe, e.g.
    /// a token no enforcement point accepts).
    pub fn locate(&self, req: &Request) -> Option<usize> {
        let http = req.is_http();
        let token = self.token_dim();
        let mut classes = vec![0u16; self.dims.len()];
        let mut no_token = true;
        if let Some(t) = token {
            let v = self.dims[t].value_of(req, &self.accepted);
            no_token = v == Value::Absent;
        }
        for (i, dim) in self.dims.iter().enumerate() {
            if (!http && dim.key.http_only()) || (dim.token_only() && (token.is_none() || no_token))
            {
                continue;
            }
            let v = dim.value_of(req, &self.accepted);
            classes[i] = u16::try_from(dim.class_of(&v)?).ok()?;
        }
        self.index.get(&Cell { http, classes }).copied()
    }

    /// Whether a dimension is constrained by some policy value (witnesses show only those).
    pub(crate) fn dim_matters(&self, d: usize) -> bool {
        !self.dims[d].lits.is_empty()
    }

    pub fn accepted(&self) -> &BTreeSet<String> {
        &self.accepted
    }
}
