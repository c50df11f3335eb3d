//! The values one string attribute of a request can take (a path, the method, the Host, one
//! header, one claim, the SNI), split into the classes a set of policy values tells apart.
//!
//! A policy value compiles to one of Istio's matchers (exact, prefix, suffix, presence, a URI
//! template; [`crate::authz::string_match`]). Two request values that every one of those
//! matchers treats alike get the same decision from every rule, so one representative per
//! *signature* (which matchers match) covers the attribute. The classes are found two ways, both
//! exact:
//!
//! * **Literals** (exact, prefix, suffix and presence only): a value's signature is fixed by the
//!   longest prefix value it starts with, the longest suffix value it ends with, and whether it
//!   equals an exact value. So the candidates `P·f·S` (every prefix value or nothing, a *fresh*
//!   character no value contains, every suffix value or nothing), the exact values themselves,
//!   the empty value and absence reach every signature a real value can have.
//! * **Automata** (URI templates, regular expressions, or no fresh character left): every
//!   matcher becomes a DFA (`regex-automata`), and a breadth-first walk of their product over
//!   the characters they tell apart, constrained by the language of real values (a path after
//!   Istio's `BASE` normalisation, an upper-case method, ...), visits every reachable
//!   combination and keeps the shortest value for each signature.
//!
//! Representatives are values a real request can carry: a path is already normalised (it
//! normalises to itself), a method is an upper-case token, a header value has no surrounding
//! blanks. A policy value no real request can match (`/a/../b`, a quoted header name) simply
//! never matches a representative.

use crate::authz::path::normalize_base;
use crate::authz::string_match::StringMatcher;
use regex::Regex;
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::Anchored;
use std::collections::{HashMap, HashSet, VecDeque};

/// Which values of an attribute a real request can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Language {
    /// A path after Istio's `BASE` normalisation, of RFC 3986 path characters.
    Path,
    /// An HTTP method: an upper-case token (a lower-case method is a 400).
    Method,
    /// A Host (`:authority`).
    Host,
    /// A header value: printable ASCII without leading or trailing blanks.
    HeaderValue,
    /// A JWT claim's string value.
    Claim,
    /// A TLS server name.
    Sni,
}

/// Characters a fresh filler is taken from, per language (none a hex digit, `.`, `%` or `/`,
/// so that it can never complete an escape or a dot segment).
fn fresh_chars(lang: Language) -> &'static str {
    match lang {
        Language::Method => "ZQXJKVWYGMNPURSTOIL",
        _ => "zqxjkvwygmnpurstoil",
    }
}

/// Characters preferred as representatives of a byte class in the automaton walk.
const NICE: &[u8] = b"zqxyjkvwabcdefghilmnoprstu0123456789ZQXYJKVWABCDEFGHILMNOPRSTU-_~/.:=@!$&'()*+,;% \"#<>?[\\]^`{|}";

/// One policy value of an attribute, compiled as the evaluator compiles it.
#[derive(Clone, Debug)]
pub(crate) struct Lit {
    /// As written in the policy (`/api/*`, `GET`, `*`).
    pub(crate) shown: String,
    pub(crate) kind: LitKind,
}

#[derive(Clone, Debug)]
pub(crate) enum LitKind {
    /// A string matcher; hosts compare ignoring ASCII case.
    Str { m: StringMatcher, ignore_case: bool },
    /// A URI template (`/api/{*}/data`), as a full-match regex.
    Template(Regex),
}

impl Lit {
    /// Whether a value (`None`: absent) matches.
    pub fn matches(&self, v: Option<&str>) -> bool {
        match &self.kind {
            LitKind::Str { m, ignore_case } => m.matches(v, *ignore_case),
            LitKind::Template(re) => v.is_some_and(|v| re.is_match(v)),
        }
    }

    /// Same matcher (for deduplication): same text, same form.
    pub fn same(&self, other: &Lit) -> bool {
        self.shown == other.shown && self.key() == other.key()
    }

    fn key(&self) -> (u8, String, bool) {
        match &self.kind {
            LitKind::Str { m, ignore_case } => {
                let (k, s) = match m {
                    StringMatcher::Exact(s) => (0, s.clone()),
                    StringMatcher::Prefix(s) => (1, s.clone()),
                    StringMatcher::Suffix(s) => (2, s.clone()),
                    StringMatcher::PrefixSuffix(a, b) => (3, format!("{a}\u{0}{b}")),
                    StringMatcher::Contains(s) => (4, s.clone()),
                    StringMatcher::NonEmpty => (5, String::new()),
                    StringMatcher::Present => (6, String::new()),
                    StringMatcher::Regex(r) => (7, r.as_str().to_owned()),
                };
                (k, s, *ignore_case)
            }
            LitKind::Template(re) => (8, re.as_str().to_owned(), false),
        }
    }

    /// The regex (full match) of this matcher, for the automaton walk.
    fn pattern(&self) -> String {
        let esc = |s: &str| regex_syntax_escape(s);
        match &self.kind {
            LitKind::Template(re) => re.as_str().to_owned(),
            LitKind::Str { m, ignore_case } => {
                let body = match m {
                    StringMatcher::Exact(s) => esc(s),
                    StringMatcher::Prefix(p) => format!("{}(?s:.*)", esc(p)),
                    StringMatcher::Suffix(x) => format!("(?s:.*){}", esc(x)),
                    StringMatcher::PrefixSuffix(p, x) => {
                        format!("{}(?s:.*){}", esc(p), esc(x))
                    }
                    StringMatcher::Contains(n) => format!("(?s:.*){}(?s:.*)", esc(n)),
                    StringMatcher::NonEmpty => "[^\\n]+".to_owned(),
                    StringMatcher::Present => "(?s:.*)".to_owned(),
                    StringMatcher::Regex(r) => r.as_str().to_owned(),
                };
                if *ignore_case {
                    format!("(?i:{body})")
                } else {
                    body
                }
            }
        }
    }

    /// Exact, prefix, suffix or presence: the literal method applies.
    fn simple(&self) -> Option<Simple<'_>> {
        match &self.kind {
            LitKind::Str { m, .. } => match m {
                StringMatcher::Exact(s) => Some(Simple::Exact(s)),
                StringMatcher::Prefix(s) => Some(Simple::Prefix(s)),
                StringMatcher::Suffix(s) => Some(Simple::Suffix(s)),
                StringMatcher::NonEmpty | StringMatcher::Present => Some(Simple::Presence),
                _ => None,
            },
            LitKind::Template(_) => None,
        }
    }
}

fn regex_syntax_escape(s: &str) -> String {
    regex::escape(s)
}

enum Simple<'a> {
    Exact(&'a str),
    Prefix(&'a str),
    Suffix(&'a str),
    Presence,
}

/// Which literals a value matches, as bits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub(crate) struct Sig(pub Vec<u64>);

impl Sig {
    pub fn new(n: usize) -> Sig {
        Sig(vec![0; n.div_ceil(64).max(1)])
    }
    pub fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    pub fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    pub fn or(&self, other: &Sig) -> Sig {
        Sig(self.0.iter().zip(&other.0).map(|(a, b)| a | b).collect())
    }
    pub fn of(lits: &[Lit], v: Option<&str>) -> Sig {
        let mut s = Sig::new(lits.len());
        for (i, l) in lits.iter().enumerate() {
            if l.matches(v) {
                s.set(i);
            }
        }
        s
    }
}

/// One class of values: a representative (`None`: the attribute is absent) and its signature.
#[derive(Clone, Debug)]
pub(crate) struct StrClass {
    pub(crate) value: Option<String>,
    pub(crate) sig: Sig,
}

/// Whether a real request can carry `v` for this attribute.
pub fn valid(lang: Language, v: &str) -> bool {
    let printable = |b: u8| (0x20..0x7f).contains(&b);
    match lang {
        Language::Path => {
            v.starts_with('/')
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b))
                && normalize_base(v).is_ok_and(|n| n.path == v && n.query.is_none())
        }
        Language::Method => {
            !v.is_empty()
                && v.bytes().all(|b| {
                    b.is_ascii_uppercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
                })
        }
        Language::Host => {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"/?#@\\\"<>{}|^`".contains(&b))
        }
        Language::HeaderValue => {
            v.bytes().all(printable) && !v.starts_with([' ', '\t']) && !v.ends_with([' ', '\t'])
        }
        Language::Claim => v.bytes().all(printable),
        Language::Sni => v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._*".contains(&b)),
    }
}

/// The regex of the values a real request can carry (the automaton walk's constraint).
fn language_pattern(lang: Language) -> &'static str {
    match lang {
        // Segments of path characters and escapes BASE keeps (not an unreserved character, not
        // %00), none of them `.` or `..`.
        Language::Path => concat!(
            r"(?:/(?:",
            r"|(?:[A-Za-z0-9\-_~!$&'()*+,;=:@]|%(?:0[1-9A-Fa-f]|1[0-9A-Fa-f]|2[0-9A-Ca-cFf]|3[A-Fa-f]|40|5[B-Eb-e]|60|7[B-Db-dFf]|[89A-Fa-f][0-9A-Fa-f]))(?:[A-Za-z0-9\-_~!$&'()*+,;=:@.]|%(?:0[1-9A-Fa-f]|1[0-9A-Fa-f]|2[0-9A-Ca-cFf]|3[A-Fa-f]|40|5[B-Eb-e]|60|7[B-Db-dFf]|[89A-Fa-f][0-9A-Fa-f]))*",
            r"|\.(?:[A-Za-z0-9\-_~!$&'()*+,;=:@]|%(?:0[1-9A-Fa-f]|1[0-9A-Fa-f]|2[0-9A-Ca-cFf]|3[A-Fa-f]|40|5[B-Eb-e]|60|7[B-Db-dFf]|[89A-Fa-f][0-9A-Fa-f]))(?:[A-Za-z0-9\-_~!$&'()*+,;=:@.]|%(?:0[1-9A-Fa-f]|1[0-9A-Fa-f]|2[0-9A-Ca-cFf]|3[A-Fa-f]|40|5[B-Eb-e]|60|7[B-Db-dFf]|[89A-Fa-f][0-9A-Fa-f]))*",
            r"|\.\.(?:[A-Za-z0-9\-_~!$&'()*+,;=:@.]|%(?:0[1-9A-Fa-f]|1[0-9A-Fa-f]|2[0-9A-Ca-cFf]|3[A-Fa-f]|40|5[B-Eb-e]|60|7[B-Db-dFf]|[89A-Fa-f][0-9A-Fa-f]))+",
            r"))+"
        ),
        Language::Method => r"[A-Z0-9!#$%&'*+\-.^_`|~]+",
        Language::Host => r"[A-Za-z0-9.\-:\[\]_]+",
        Language::HeaderValue => r"(?:[!-~](?:[ -~]*[!-~])?)?",
        Language::Claim => r"[ -~]*",
        Language::Sni => r"[A-Za-z0-9.\-_*]*",
    }
}

/// At most this many product states are visited by the automaton walk.
const MAX_STATES: usize = 20_000;

/// The classes of an attribute. `absent`: a request may lack it (a header, a claim, the SNI).
/// `seeds` are tried first, so that the representatives are the values people expect (`GET`
/// rather than `A`). `Err` when the automaton walk hit its bound: the classes found are still
/// returned, with the note.
pub(crate) fn classes(
    lang: Language,
    lits: &[Lit],
    absent: bool,
    seeds: &[&str],
) -> (Vec<StrClass>, Option<String>) {
    let mut out: Vec<StrClass> = Vec::new();
    let mut seen: HashSet<Sig> = HashSet::new();
    let mut consider = |v: Option<&str>, out: &mut Vec<StrClass>| {
        if let Some(s) = v {
            if !valid(lang, s) {
                return;
            }
        }
        let sig = Sig::of(lits, v);
        if seen.insert(sig.clone()) {
            out.push(StrClass {
                value: v.map(str::to_owned),
                sig,
            });
        }
    };
    if absent {
        consider(None, &mut out);
    }
    for s in seeds {
        consider(Some(s), &mut out);
    }
    let simple: Option<Vec<Simple<'_>>> = lits.iter().map(Lit::simple).collect();
    let fresh = fresh_chars(lang).chars().find(|c| {
        !lits.iter().any(|l| {
            l.shown.contains(*c)
                || l.shown.contains(c.to_ascii_uppercase())
                || l.shown.contains(c.to_ascii_lowercase())
        })
    });
    let mut note = None;
    match (simple, fresh) {
        (Some(simple), Some(f)) => {
            // Hosts compare ignoring case, headers such as :authority do not: the lower-case
            // spellings of the values meet both.
            let lower = lang == Language::Host;
            let mut prefixes: Vec<String> = vec![String::new()];
            let mut suffixes: Vec<String> = vec![String::new()];
            let mut exact: Vec<String> = Vec::new();
            for s in &simple {
                let (list, v) = match s {
                    Simple::Exact(v) => (&mut exact, *v),
                    Simple::Prefix(v) => (&mut prefixes, *v),
                    Simple::Suffix(v) => (&mut suffixes, *v),
                    Simple::Presence => continue,
                };
                list.push(v.to_owned());
                if lower && v.to_ascii_lowercase() != *v {
                    list.push(v.to_ascii_lowercase());
                }
            }
            for e in &exact {
                consider(Some(e), &mut out);
            }
            consider(Some(""), &mut out);
            for p in &prefixes {
                for s in &suffixes {
                    let start = if p.is_empty() && lang == Language::Path {
                        "/"
                    } else {
                        p.as_str()
                    };
                    consider(Some(&format!("{start}{f}{s}")), &mut out);
                }
            }
        }
        _ => {
            // Literals first (nicer representatives), then the walk.
            for l in lits {
                if let Some(Simple::Exact(e)) = l.simple() {
                    consider(Some(e), &mut out);
                }
            }
            consider(Some(""), &mut out);
            match walk(lang, lits) {
                Ok(found) => {
                    for v in found {
                        consider(Some(&v), &mut out);
                    }
                }
                Err((found, why)) => {
                    for v in found {
                        consider(Some(&v), &mut out);
                    }
                    note = Some(why);
                }
            }
        }
    }
    (out, note)
}

type Walked = Result<Vec<String>, (Vec<String>, String)>;

/// Breadth-first walk of the product of the literals' DFAs and the language's: the shortest
/// value for every reachable signature.
fn walk(lang: Language, lits: &[Lit]) -> Walked {
    let build = |p: &str| -> Result<dense::DFA<Vec<u32>>, String> {
        dense::Builder::new()
            .configure(dense::Config::new().start_kind(StartKind::Anchored))
            .build(&format!("^(?:{p})$"))
            .map_err(|e| format!("cannot build an automaton for {p}: {e}"))
    };
    let lang_dfa = match build(language_pattern(lang)) {
        Ok(d) => d,
        Err(e) => return Err((Vec::new(), e)),
    };
    let mut dfas = Vec::with_capacity(lits.len());
    for l in lits {
        match build(&l.pattern()) {
            Ok(d) => dfas.push(d),
            Err(e) => return Err((Vec::new(), e)),
        }
    }
    let anchored = start::Config::new().anchored(Anchored::Yes);
    let start_of = |d: &dense::DFA<Vec<u32>>| d.start_state(&anchored).ok();
    let Some(lang_start) = start_of(&lang_dfa) else {
        return Err((Vec::new(), "no start state".to_owned()));
    };
    let mut start = vec![lang_start];
    for d in &dfas {
        match start_of(d) {
            Some(s) => start.push(s),
            None => return Err((Vec::new(), "no start state".to_owned())),
        }
    }
    // Printable ASCII, grouped by what every DFA does with each byte; one byte per group.
    let mut groups: HashMap<Vec<u8>, u8> = HashMap::new();
    let rank = |b: u8| NICE.iter().position(|x| *x == b).unwrap_or(NICE.len());
    for b in 0x20u8..0x7f {
        let key: Vec<u8> = std::iter::once(&lang_dfa)
            .chain(dfas.iter())
            .map(|d| d.byte_classes().get(b))
            .collect();
        groups
            .entry(key)
            .and_modify(|r| {
                if rank(b) < rank(*r) {
                    *r = b;
                }
            })
            .or_insert(b);
    }
    let mut alphabet: Vec<u8> = groups.into_values().collect();
    alphabet.sort_by_key(|b| rank(*b));

    let mut found = Vec::new();
    let mut sigs: HashSet<Vec<bool>> = HashSet::new();
    let mut visited: HashSet<Vec<StateID>> = HashSet::new();
    let mut queue: VecDeque<(Vec<StateID>, String)> = VecDeque::new();
    visited.insert(start.clone());
    queue.push_back((start, String::new()));
    while let Some((states, value)) = queue.pop_front() {
        if lang_dfa.is_match_state(lang_dfa.next_eoi_state(states[0])) {
            let sig: Vec<bool> = dfas
                .iter()
                .zip(&states[1..])
                .map(|(d, s)| d.is_match_state(d.next_eoi_state(*s)))
                .collect();
            if sigs.insert(sig) {
                found.push(value.clone());
            }
        }
        for &b in &alphabet {
            let l = lang_dfa.next_state(states[0], b);
            if lang_dfa.is_dead_state(l) {
                continue;
            }
            let mut next = Vec::with_capacity(states.len());
            next.push(l);
            for (d, s) in dfas.iter().zip(&states[1..]) {
                next.push(d.next_state(*s, b));
            }
            if visited.contains(&next) {
                continue;
            }
            if visited.len() >= MAX_STATES {
                return Err((
                    found,
                    format!(
                        "more than {MAX_STATES} combinations of these values: the classes found so far are used"
                    ),
                ));
            }
            visited.insert(next.clone());
            let mut v = value.clone();
            v.push(char::from(b));
            queue.push_back((next, v));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(v: &str, lang: Language) -> Lit {
        let kind = if lang == Language::Path && crate::authz::path::is_template(v) {
            LitKind::Template(crate::authz::path::template(v).expect("template"))
        } else {
            let m = match lang {
                Language::Method | Language::Host | Language::HeaderValue => {
                    StringMatcher::header(v)
                }
                _ => StringMatcher::istio(v),
            };
            LitKind::Str {
                m,
                ignore_case: lang == Language::Host,
            }
        };
        Lit {
            shown: v.to_owned(),
            kind,
        }
    }

    fn values(lang: Language, vs: &[&str], absent: bool) -> Vec<Option<String>> {
        let lits: Vec<Lit> = vs.iter().map(|v| lit(v, lang)).collect();
        let (cs, note) = classes(lang, &lits, absent, &[]);
        assert!(note.is_none(), "{note:?}");
        cs.into_iter().map(|c| c.value).collect()
    }

    /// Every signature some value from a brute-force pool has is found, and no two classes
    /// share one.
    fn complete(lang: Language, vs: &[&str], pool: &[&str]) {
        let lits: Vec<Lit> = vs.iter().map(|v| lit(v, lang)).collect();
        let (cs, _) = classes(lang, &lits, false, &[]);
        let sigs: HashSet<Sig> = cs.iter().map(|c| c.sig.clone()).collect();
        assert_eq!(sigs.len(), cs.len(), "duplicate classes");
        for c in &cs {
            let v = c.value.as_deref().expect("present");
            assert!(valid(lang, v), "{v} is not a real value");
            assert_eq!(Sig::of(&lits, Some(v)), c.sig);
        }
        for p in pool {
            if valid(lang, p) {
                assert!(
                    sigs.contains(&Sig::of(&lits, Some(p))),
                    "{p} has a signature no class has ({vs:?})"
                );
            }
        }
    }

    #[test]
    fn paths_prefix_and_exact() {
        let v = values(
            Language::Path,
            &["/api/*", "/api/data", "/health", "/admin*", "/admin/*"],
            false,
        );
        let v: Vec<&str> = v.iter().map(|x| x.as_deref().expect("present")).collect();
        assert!(v.contains(&"/api/data") && v.contains(&"/health"), "{v:?}");
        // /admin* without /admin/*, and with it; /api/* without /api/data; neither.
        assert!(v.contains(&"/adminz"), "{v:?}");
        assert!(v.contains(&"/admin/z"), "{v:?}");
        assert!(v.contains(&"/api/z"), "{v:?}");
        assert!(v.contains(&"/z"), "{v:?}");
        complete(
            Language::Path,
            &[
                "/api/*",
                "/api/data",
                "/health",
                "/admin*",
                "/admin/*",
                "*.json",
            ],
            &[
                "/",
                "/api",
                "/api/",
                "/api/data",
                "/api/data.json",
                "/admin",
                "/admin/",
                "/adminx.json",
                "/x.json",
                "/health",
                "/healthz",
                "/api/x/y",
            ],
        );
    }

    #[test]
    fn unreachable_values_are_never_representatives() {
        // A path with a dot segment or a query normalises to something else.
        let v = values(Language::Path, &["/a/../b", "/c?x=1", "/d/"], false);
        for p in v.iter().flatten() {
            assert!(valid(Language::Path, p), "{p}");
        }
        assert!(v.iter().flatten().any(|p| p == "/d/"));
        assert!(!v.iter().flatten().any(|p| p == "/a/../b" || p == "/c?x=1"));
    }

    #[test]
    fn templates_walk_the_automata() {
        complete(
            Language::Path,
            &["/api/{*}/data", "/api/v1*", "/static/{**}.css", "/api/*"],
            &[
                "/api/v1/data",
                "/api/v2/data",
                "/api/v1x",
                "/api//data",
                "/static/a.css",
                "/static/a/b.css",
                "/static/.css",
                "/api/v1/data/x",
                "/x",
            ],
        );
    }

    #[test]
    fn headers_presence_and_absence() {
        let v = values(Language::HeaderValue, &["v1", "v2"], true);
        assert_eq!(v[0], None, "absent comes first");
        assert!(v.contains(&Some("v1".into())) && v.contains(&Some("v2".into())));
        let v = values(Language::HeaderValue, &["*"], true);
        // Absent, and present (empty or not: `*` is present_match).
        assert_eq!(v.len(), 2, "{v:?}");
    }

    #[test]
    fn methods_are_upper_case_tokens() {
        let lits = [lit("GET", Language::Method), lit("P*", Language::Method)];
        let (cs, _) = classes(Language::Method, &lits, false, &["GET", "POST", "PUT"]);
        let v: Vec<&str> = cs.iter().filter_map(|c| c.value.as_deref()).collect();
        assert_eq!(
            v,
            ["GET", "POST", "ZQ"].map(|s| if s == "ZQ" { v[2] } else { s })
        );
        assert!(cs
            .iter()
            .all(|c| valid(Language::Method, c.value.as_deref().unwrap_or(""))));
        assert_eq!(cs.len(), 3);
    }

    #[test]
    fn hosts_ignore_case() {
        complete(
            Language::Host,
            &["api.example.com", "*.example.com", "API.*"],
            &[
                "api.example.com",
                "API.example.com",
                "x.example.com",
                "api.x",
                "API.x",
                "other",
            ],
        );
    }
}
