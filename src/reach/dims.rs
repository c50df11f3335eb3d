//! The dimensions of a request the policies compare — method, path, Host, each header they name,
//! the token (issuer and audiences), its subject and each claim they name, the source and
//! destination addresses, the SNI — each split into classes by the values the policies write
//! ([`super::lang`] for strings; CIDR boundaries for addresses; list values for claims).
//!
//! Every matcher of every field of the deciding rules belongs to exactly one dimension, so a
//! request's decision depends on which class it falls in, per dimension, and on nothing else
//! (the caller and the port are fixed per edge). That is what makes one representative per
//! combination of classes (a *cell*) exact.

use super::lang::{self, Language, Lit, LitKind, Sig, StrClass};
use crate::authz::claims;
use crate::authz::field::{Attr, Field, Matcher};
use crate::authz::ip::Cidr;
use crate::authz::policy::JwtIssuer;
use crate::authz::string_match::StringMatcher;
use crate::authz::Request;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// What a dimension reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum DimKey {
    Method,
    Path,
    Host,
    /// A header, lower-cased.
    Header(String),
    /// The token: none, or one a RequestAuthentication accepts (issuer and audiences).
    Token,
    /// The token's subject.
    Sub,
    /// A claim path.
    Claim(Vec<String>),
    /// `source.ip`, `remote.ip`, `ipBlocks`, `remoteIpBlocks` (no proxy in front: one address).
    SourceIp,
    DestinationIp,
    Sni,
}

impl DimKey {
    /// Read only on HTTP requests.
    pub(crate) fn http_only(&self) -> bool {
        !matches!(self, DimKey::SourceIp | DimKey::DestinationIp | DimKey::Sni)
    }

    /// How the description names it.
    pub fn name(&self) -> String {
        match self {
            DimKey::Method => "method".into(),
            DimKey::Path => "path".into(),
            DimKey::Host => "host".into(),
            DimKey::Header(h) => h.clone(),
            DimKey::Token => "token".into(),
            DimKey::Sub => "sub".into(),
            DimKey::Claim(p) => format!("claims[{}]", p.join("][")),
            DimKey::SourceIp => "source ip".into(),
            DimKey::DestinationIp => "destination ip".into(),
            DimKey::Sni => "sni".into(),
        }
    }
}

/// A value of one dimension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Absent,
    Str(String),
    /// A list claim.
    List(Vec<String>),
    Ip(IpAddr),
    Token {
        issuer: String,
        audiences: Vec<String>,
    },
}

/// One policy value of a dimension.
#[derive(Clone, Debug)]
pub(crate) enum DimLit {
    Str(Lit),
    Cidr(String, Cidr),
    /// A token's issuer (a `requestPrincipals` issuer part, `request.auth.claims[iss]`, or an
    /// issuer a RequestAuthentication accepts).
    Iss(Lit),
    /// A token audience.
    Aud(Lit),
}

impl DimLit {
    pub fn shown(&self) -> &str {
        match self {
            DimLit::Str(l) | DimLit::Iss(l) | DimLit::Aud(l) => &l.shown,
            DimLit::Cidr(s, _) => s,
        }
    }
}

/// One class: a representative value and the literals it matches.
#[derive(Clone, Debug)]
pub(crate) struct Class {
    pub(crate) value: Value,
    pub(crate) sig: Sig,
}

/// One dimension with its classes.
#[derive(Clone, Debug)]
pub(crate) struct Dim {
    pub(crate) key: DimKey,
    pub(crate) lits: Vec<DimLit>,
    pub(crate) classes: Vec<Class>,
    /// A claim the JWT filter splits on spaces.
    split: bool,
}

fn json(v: &Value) -> Option<serde_json::Value> {
    match v {
        Value::Str(s) => Some(serde_json::Value::String(s.clone())),
        Value::List(l) => Some(serde_json::Value::Array(
            l.iter().cloned().map(serde_json::Value::String).collect(),
        )),
        _ => None,
    }
}

impl Dim {
    /// Which literals a value matches.
    pub fn sig(&self, v: &Value) -> Sig {
        let mut s = Sig::new(self.lits.len());
        for (i, l) in self.lits.iter().enumerate() {
            let hit = match (l, v) {
                (DimLit::Cidr(_, c), Value::Ip(ip)) => c.contains(*ip),
                (DimLit::Str(l), Value::Str(x)) if !matches!(self.key, DimKey::Claim(_)) => {
                    l.matches(Some(x))
                }
                (DimLit::Str(l), v @ (Value::Str(_) | Value::List(_))) => match &l.kind {
                    LitKind::Str { m, .. } => {
                        claims::value_matches(json(v).as_ref(), std::slice::from_ref(m), self.split)
                    }
                    LitKind::Template(_) => false,
                },
                (DimLit::Iss(l), Value::Token { issuer, .. }) => l.matches(Some(issuer)),
                (DimLit::Aud(l), Value::Token { audiences, .. }) => match &l.kind {
                    LitKind::Str { m, .. } => {
                        let v = match audiences.as_slice() {
                            [] => None,
                            [one] => Some(serde_json::Value::String(one.clone())),
                            many => Some(serde_json::Value::Array(
                                many.iter()
                                    .cloned()
                                    .map(serde_json::Value::String)
                                    .collect(),
                            )),
                        };
                        claims::value_matches(v.as_ref(), std::slice::from_ref(m), false)
                    }
                    LitKind::Template(_) => false,
                },
                _ => false,
            };
            if hit {
                s.set(i);
            }
        }
        s
    }

    /// This dimension's value in a request (`accepted`: the issuers whose tokens the
    /// enforcement point accepts; other tokens are ignored or refused before authorization).
    pub fn value_of(&self, req: &Request, accepted: &BTreeSet<String>) -> Value {
        let http = req.http_part();
        let token = req.jwt().filter(|j| accepted.contains(j.issuer()));
        let s = |v: Option<&str>| v.map_or(Value::Absent, |v| Value::Str(v.to_owned()));
        match &self.key {
            DimKey::Method => s(http.map(|h| h.method())),
            DimKey::Path => s(http.and_then(|h| h.path())),
            DimKey::Host => s(http.and_then(|h| h.host())),
            DimKey::Header(n) => s(http.and_then(|h| h.header(n))),
            DimKey::Token => match token {
                Some(j) => Value::Token {
                    issuer: j.issuer().to_owned(),
                    audiences: j.audiences().into_iter().map(str::to_owned).collect(),
                },
                None => Value::Absent,
            },
            DimKey::Sub => s(token.map(|j| j.subject())),
            DimKey::Claim(p) => match token.and_then(|j| claims::lookup(j.claims(), p)) {
                Some(serde_json::Value::String(x)) => Value::Str(x.clone()),
                Some(serde_json::Value::Array(a)) => Value::List(
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                ),
                _ => Value::Absent,
            },
            DimKey::SourceIp => req.source_ip().map_or(Value::Absent, Value::Ip),
            DimKey::DestinationIp => req.destination_ip().map_or(Value::Absent, Value::Ip),
            DimKey::Sni => Value::Str(req.sni().unwrap_or("").to_owned()),
        }
    }

    /// The class a value falls in (classes have distinct signatures).
    pub fn class_of(&self, v: &Value) -> Option<usize> {
        let sig = self.sig(v);
        self.classes.iter().position(|c| c.sig == sig)
    }

    /// Read only when the request carries an accepted token (the subject, claims).
    pub(crate) fn token_only(&self) -> bool {
        matches!(self.key, DimKey::Sub | DimKey::Claim(_))
    }
}

/// Collects the policy values per dimension.
#[derive(Default)]
pub(crate) struct Literals {
    str_lits: BTreeMap<DimKey, Vec<Lit>>,
    cidrs: BTreeMap<DimKey, Vec<(String, Cidr)>>,
    iss: Vec<Lit>,
    aud: Vec<Lit>,
    /// Issuer → audiences a token needs (one list per jwtRule; empty: any).
    issuers: BTreeMap<String, BTreeSet<Vec<String>>>,
    space_delimited: BTreeSet<String>,
    host_seed: Option<String>,
    pub(crate) notes: Vec<String>,
}

fn push_lit(list: &mut Vec<Lit>, l: Lit) {
    if !list.iter().any(|x| x.same(&l)) {
        list.push(l);
    }
}

fn str_lit(m: &StringMatcher, shown: &str, ignore_case: bool) -> Lit {
    Lit {
        shown: shown.to_owned(),
        kind: LitKind::Str {
            m: m.clone(),
            ignore_case,
        },
    }
}

impl Literals {
    /// A Host to prefer as the representative (the workload's Service name).
    pub(crate) fn host_seed(&mut self, host: &str) {
        self.host_seed = Some(host.to_owned());
    }

    /// Add the values of the deciding rules' fields.
    pub(crate) fn fields(&mut self, fields: &[&Field]) {
        for f in fields {
            let shown = |i: usize, not: bool| -> String {
                let list = if not { &f.shown_not } else { &f.shown };
                list.get(i).cloned().unwrap_or_default()
            };
            // Values compile one to one except principals with trust-domain aliases (identity
            // fields, not read here) — `shown` lines up with `values`.
            let all = f
                .values
                .iter()
                .enumerate()
                .map(|(i, m)| (m, shown(i, false)))
                .chain(
                    f.not_values
                        .iter()
                        .enumerate()
                        .map(|(i, m)| (m, shown(i, true))),
                );
            for (m, text) in all {
                self.matcher(&f.attr, m, &text);
            }
        }
    }

    fn matcher(&mut self, attr: &Attr, m: &Matcher, shown: &str) {
        let mut str_dim = |key: DimKey, lit: Lit| {
            push_lit(self.str_lits.entry(key).or_default(), lit);
        };
        match (attr, m) {
            (Attr::Method, Matcher::Str(s)) => str_dim(DimKey::Method, str_lit(s, shown, false)),
            (Attr::Path, Matcher::Str(s)) => str_dim(DimKey::Path, str_lit(s, shown, false)),
            (Attr::Path, Matcher::Template(re)) => str_dim(
                DimKey::Path,
                Lit {
                    shown: shown.to_owned(),
                    kind: LitKind::Template(re.clone()),
                },
            ),
            (Attr::Host, Matcher::Str(s)) => str_dim(DimKey::Host, str_lit(s, shown, true)),
            (Attr::Header(name), Matcher::Str(s)) => {
                let key = match name.as_str() {
                    ":method" => DimKey::Method,
                    // What the request line carries: no query in a representative, so the
                    // raw path is the normalised one.
                    ":path" => DimKey::Path,
                    ":authority" | "host" => DimKey::Host,
                    n => DimKey::Header(n.to_owned()),
                };
                str_dim(key, str_lit(s, shown, false))
            }
            (Attr::Sni, Matcher::Str(s)) => str_dim(DimKey::Sni, str_lit(s, shown, false)),
            (Attr::Claim(path), Matcher::Str(s)) => match path.as_slice() {
                [one] if one == "iss" => push_lit(&mut self.iss, str_lit(s, shown, false)),
                [one] if one == "aud" => push_lit(&mut self.aud, str_lit(s, shown, false)),
                [one] if one == "sub" => str_dim(DimKey::Sub, str_lit(s, shown, false)),
                _ => str_dim(DimKey::Claim(path.clone()), str_lit(s, shown, false)),
            },
            (Attr::RequestPrincipal, Matcher::JwtPrincipal(iss, sub)) => {
                let (i, s) = shown.rsplit_once('/').unwrap_or((shown, shown));
                push_lit(&mut self.iss, str_lit(iss, i, false));
                str_dim(DimKey::Sub, str_lit(sub, s, false));
            }
            (Attr::SourceIp | Attr::RemoteIp, Matcher::Cidr(c)) => {
                push_cidr(self.cidrs.entry(DimKey::SourceIp).or_default(), shown, *c)
            }
            (Attr::DestinationIp, Matcher::Cidr(c)) => push_cidr(
                self.cidrs.entry(DimKey::DestinationIp).or_default(),
                shown,
                *c,
            ),
            // Identity fields are the caller's; ports are the edge's; Envoy metadata never
            // matches.
            _ => {}
        }
    }

    /// Add the JWT issuers a RequestAuthentication accepts.
    pub(crate) fn issuers(&mut self, issuers: &[&JwtIssuer]) {
        for i in issuers {
            let auds: Vec<String> = i.audiences.iter().take(1).cloned().collect();
            self.issuers
                .entry(i.issuer.clone())
                .or_default()
                .insert(auds);
            self.space_delimited
                .extend(i.space_delimited.iter().cloned());
        }
    }

    /// The dimensions, classes found, and what could not be split exactly.
    pub fn build(mut self) -> (Vec<Dim>, Vec<String>) {
        let mut dims = Vec::new();
        let mut notes = std::mem::take(&mut self.notes);
        let mut str_classes = |lang: Language, lits: &[Lit], absent: bool, seeds: &[&str]| {
            let (cs, note) = lang::classes(lang, lits, absent, seeds);
            if let Some(n) = note {
                notes.push(n);
            }
            cs
        };
        let to_class = |c: StrClass| Class {
            value: c.value.map_or(Value::Absent, Value::Str),
            sig: c.sig,
        };
        let keys: Vec<DimKey> = [DimKey::Method, DimKey::Path, DimKey::Host]
            .into_iter()
            .chain(
                self.str_lits
                    .keys()
                    .filter(|k| matches!(k, DimKey::Header(_)))
                    .cloned(),
            )
            .collect();
        for key in keys {
            let lits = self.str_lits.remove(&key).unwrap_or_default();
            let classes: Vec<Class> = match &key {
                DimKey::Method => str_classes(
                    Language::Method,
                    &lits,
                    false,
                    &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"],
                ),
                DimKey::Path => str_classes(Language::Path, &lits, false, &["/"]),
                DimKey::Host => {
                    let seed = self
                        .host_seed
                        .clone()
                        .unwrap_or_else(|| "example.com".into());
                    str_classes(Language::Host, &lits, false, &[seed.as_str()])
                }
                DimKey::Header(name) if is_token(name) => {
                    str_classes(Language::HeaderValue, &lits, true, &[])
                }
                // A name no request can carry (quotes kept from `request.headers["x"]`, an
                // unknown pseudo-header): always absent.
                _ => vec![StrClass {
                    value: None,
                    sig: Sig::new(lits.len()),
                }],
            }
            .into_iter()
            .map(to_class)
            .collect();
            dims.push(Dim {
                key,
                lits: lits.into_iter().map(DimLit::Str).collect(),
                classes,
                split: false,
            });
        }
        // The token: none, or one per issuer and audience list, with the audience values the
        // policies name.
        if !self.issuers.is_empty() {
            let mut lits: Vec<DimLit> = Vec::new();
            for (iss, auds) in &self.issuers {
                lits.push(DimLit::Iss(str_lit(
                    &StringMatcher::Exact(iss.clone()),
                    iss,
                    false,
                )));
                for a in auds.iter().flatten() {
                    lits.push(DimLit::Aud(str_lit(
                        &StringMatcher::Exact(a.clone()),
                        a,
                        false,
                    )));
                }
            }
            lits.extend(self.iss.drain(..).map(DimLit::Iss));
            let aud_lits = std::mem::take(&mut self.aud);
            // The audiences a token may carry: the policies' values and those an issuer
            // requires (a token for one issuer may carry another's audience too).
            let mut all_aud: Vec<Lit> = aud_lits.clone();
            for a in self.issuers.values().flatten().flatten() {
                push_lit(
                    &mut all_aud,
                    str_lit(&StringMatcher::Exact(a.clone()), a, false),
                );
            }
            let aud_values = str_classes(Language::Claim, &all_aud, false, &[]);
            lits.extend(aud_lits.into_iter().map(DimLit::Aud));
            let mut dim = Dim {
                key: DimKey::Token,
                lits,
                classes: Vec::new(),
                split: false,
            };
            let mut candidates = vec![Value::Absent];
            for (iss, auds) in &self.issuers {
                for base in auds {
                    let mut lists: Vec<Vec<String>> = vec![base.clone()];
                    // Every list the audience values make (a token may carry several).
                    for v in aud_values.iter().filter_map(|c| c.value.clone()) {
                        let more: Vec<Vec<String>> = lists
                            .iter()
                            .map(|l| {
                                let mut l = l.clone();
                                if !l.contains(&v) {
                                    l.push(v.clone());
                                }
                                l
                            })
                            .collect();
                        lists.extend(more);
                        if lists.len() > 64 {
                            break;
                        }
                    }
                    for l in lists {
                        candidates.push(Value::Token {
                            issuer: iss.clone(),
                            audiences: l,
                        });
                    }
                }
            }
            dedupe_into(&mut dim, candidates);
            dims.push(dim);
            // The subject: a string (a token without one cannot be written on the command line).
            let lits = self.str_lits.remove(&DimKey::Sub).unwrap_or_default();
            let sub: Vec<Class> = str_classes(Language::Claim, &lits, false, &["alice"])
                .into_iter()
                .filter(|c| c.value.as_deref().is_some_and(|v| !v.is_empty()))
                .map(to_class)
                .collect();
            let sub = if sub.is_empty() {
                let v = Value::Str("alice".to_owned());
                let mut d = Dim {
                    key: DimKey::Sub,
                    lits: lits.iter().cloned().map(DimLit::Str).collect(),
                    classes: Vec::new(),
                    split: false,
                };
                let sig = d.sig(&v);
                d.classes.push(Class { value: v, sig });
                d.classes
            } else {
                sub
            };
            dims.push(Dim {
                key: DimKey::Sub,
                lits: lits.into_iter().map(DimLit::Str).collect(),
                classes: sub,
                split: false,
            });
            // Claims: absent, a string, or a list of them.
            let claim_keys: Vec<DimKey> = self
                .str_lits
                .keys()
                .filter(|k| matches!(k, DimKey::Claim(_)))
                .cloned()
                .collect();
            for key in claim_keys {
                let lits = self.str_lits.remove(&key).unwrap_or_default();
                let split = matches!(&key, DimKey::Claim(p) if p.len() == 1 && self.space_delimited.contains(&p[0]));
                let strings = str_classes(Language::Claim, &lits, true, &[]);
                let mut dim = Dim {
                    key,
                    lits: lits.into_iter().map(DimLit::Str).collect(),
                    classes: Vec::new(),
                    split,
                };
                let elems: Vec<String> = strings.iter().filter_map(|c| c.value.clone()).collect();
                let mut candidates = vec![Value::Absent];
                let mut lists: Vec<Vec<String>> = vec![Vec::new()];
                for e in &elems {
                    let more: Vec<Vec<String>> = lists
                        .iter()
                        .map(|l| {
                            let mut l = l.clone();
                            l.push(e.clone());
                            l
                        })
                        .collect();
                    lists.extend(more);
                    if lists.len() > 256 {
                        break;
                    }
                }
                lists.sort_by_key(Vec::len);
                for l in lists.into_iter().filter(|l| !l.is_empty()) {
                    candidates.push(match <[String; 1]>::try_from(l) {
                        Ok([one]) => Value::Str(one),
                        Err(l) => Value::List(l),
                    });
                }
                dedupe_into(&mut dim, candidates);
                dims.push(dim);
            }
        }
        // Addresses: one class per run of addresses between CIDR boundaries.
        for key in [DimKey::SourceIp, DimKey::DestinationIp] {
            let Some(cidrs) = self.cidrs.remove(&key) else {
                continue;
            };
            let mut candidates: Vec<Value> = [
                "10.1.2.3",
                "192.0.2.10",
                "198.51.100.10",
                "203.0.113.10",
                "2001:db8::10",
            ]
            .iter()
            .filter_map(|s| s.parse().ok())
            .map(Value::Ip)
            .collect();
            for (_, c) in &cidrs {
                let (first, last) = c.bounds();
                candidates.push(Value::Ip(first));
                if let Some(after) = next_ip(last) {
                    candidates.push(Value::Ip(after));
                }
            }
            candidates.push(Value::Ip(IpAddr::V4(std::net::Ipv4Addr::new(0, 0, 0, 1))));
            candidates.push(Value::Ip(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)));
            let mut dim = Dim {
                key,
                lits: cidrs.into_iter().map(|(s, c)| DimLit::Cidr(s, c)).collect(),
                classes: Vec::new(),
                split: false,
            };
            dedupe_into(&mut dim, candidates);
            dims.push(dim);
        }
        if let Some(lits) = self.str_lits.remove(&DimKey::Sni) {
            let classes = str_classes(Language::Sni, &lits, false, &[""])
                .into_iter()
                .map(to_class)
                .collect();
            dims.push(Dim {
                key: DimKey::Sni,
                lits: lits.into_iter().map(DimLit::Str).collect(),
                classes,
                split: false,
            });
        }
        // Claims and subjects without any RequestAuthentication: no token is ever validated,
        // so they never match.
        for (key, lits) in std::mem::take(&mut self.str_lits) {
            let classes = vec![Class {
                value: Value::Absent,
                sig: Sig::new(lits.len()),
            }];
            dims.push(Dim {
                key,
                lits: lits.into_iter().map(DimLit::Str).collect(),
                classes,
                split: false,
            });
        }
        if !self.iss.is_empty() || !self.aud.is_empty() {
            dims.push(Dim {
                key: DimKey::Token,
                lits: self
                    .iss
                    .into_iter()
                    .map(DimLit::Iss)
                    .chain(self.aud.into_iter().map(DimLit::Aud))
                    .collect(),
                classes: vec![Class {
                    value: Value::Absent,
                    sig: Sig::default(),
                }],
                split: false,
            });
            if let Some(d) = dims.last_mut() {
                d.classes[0].sig = Sig::new(d.lits.len());
            }
        }
        (dims, notes)
    }
}

fn push_cidr(list: &mut Vec<(String, Cidr)>, shown: &str, c: Cidr) {
    if !list.iter().any(|(s, x)| s == shown && *x == c) {
        list.push((shown.to_owned(), c));
    }
}

/// Keep the first candidate of each signature.
fn dedupe_into(dim: &mut Dim, candidates: Vec<Value>) {
    for v in candidates {
        let sig = dim.sig(&v);
        if !dim.classes.iter().any(|c| c.sig == sig) {
            dim.classes.push(Class { value: v, sig });
        }
    }
}

fn next_ip(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(a) => u32::from(a).checked_add(1).map(|n| IpAddr::V4(n.into())),
        IpAddr::V6(a) => u128::from(a).checked_add(1).map(|n| IpAddr::V6(n.into())),
    }
}

/// An HTTP token (a header name a request can carry).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}
