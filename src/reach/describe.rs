//! A set of cells, said readably: `all`, `none`, or alternatives such as
//! `GET /api/data; GET,POST /api/* when x-api-version ∈ {v1,v2}`.
//!
//! Cells are merged into boxes (a set of classes per dimension; a box is every combination of
//! them) by repeatedly joining boxes that differ in one dimension only, which keeps the union
//! exact. Each dimension's set of classes is then written with the policies' own values: the
//! values whose classes lie inside the set (`/api/*,/health`), the values that stay outside it
//! (`any path but /admin/*`), or both (`/api/* except /api/data`); failing those, the classes
//! themselves by the values each one matches. A [`Description`] is kept as that formula, so it
//! can be evaluated on any request ([`Description::holds`]) and checked against the evaluator.

use super::dims::{Dim, DimKey, DimLit, Value};
use super::lang::Sig;
use super::space::Partition;
use crate::authz::Request;
use std::collections::HashMap;

/// A set of one dimension's values, as a formula over its literals (indexes into `lits`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Formula {
    /// Matches one of these values.
    In(Vec<usize>),
    /// Matches one of the first, none of the second.
    InExcept(Vec<usize>, Vec<usize>),
    /// Matches none of these.
    NotIn(Vec<usize>),
    /// Exactly these classes (indexes into the dimension's classes).
    Classes(Vec<usize>),
}

/// A constraint of one dimension in an alternative.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) dim: usize,
    pub(crate) formula: Formula,
}

/// One alternative: a box of requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Alt {
    pub(crate) http: bool,
    pub(crate) parts: Vec<Part>,
    /// The requests also go to this CUSTOM provider (`namespace/name (provider)`).
    pub(crate) custom: Option<String>,
}

/// A set of requests of one edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description {
    pub(crate) alts: Vec<Alt>,
    /// Every request of the partition is in the set.
    pub all: bool,
}

impl Description {
    pub fn none() -> Description {
        Description {
            alts: Vec::new(),
            all: false,
        }
    }

    pub fn is_none(&self) -> bool {
        self.alts.is_empty()
    }

    /// Whether a request is in the set, evaluated on the formulas and the policies' values
    /// alone (not on the cells).
    pub fn holds(&self, p: &Partition, req: &Request) -> bool {
        self.alts.iter().any(|alt| {
            alt.http == req.is_http()
                && alt.parts.iter().all(|part| {
                    let dim = &p.dims[part.dim];
                    let sig = dim.sig(&dim.value_of(req, p.accepted()));
                    formula_holds(dim, &part.formula, &sig)
                })
        })
    }

    /// The set in words.
    pub fn text(&self, p: &Partition) -> String {
        if self.all {
            return "all".to_owned();
        }
        if self.alts.is_empty() {
            return "none".to_owned();
        }
        self.alts
            .iter()
            .map(|a| alt_text(p, a))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn any_bit(sig: &Sig, lits: &[usize]) -> bool {
    lits.iter().any(|&l| sig.get(l))
}

fn formula_holds(dim: &Dim, f: &Formula, sig: &Sig) -> bool {
    match f {
        Formula::In(a) => any_bit(sig, a),
        Formula::InExcept(a, b) => any_bit(sig, a) && !any_bit(sig, b),
        Formula::NotIn(b) => !any_bit(sig, b),
        Formula::Classes(cs) => cs.iter().any(|&c| dim.classes[c].sig == *sig),
    }
}

/// Which classes each literal matches, as class sets.
fn lit_classes(dim: &Dim) -> Vec<Sig> {
    (0..dim.lits.len())
        .map(|l| {
            let mut s = Sig::new(dim.classes.len());
            for (c, class) in dim.classes.iter().enumerate() {
                if class.sig.get(l) {
                    s.set(c);
                }
            }
            s
        })
        .collect()
}

fn subset(a: &Sig, b: &Sig) -> bool {
    a.0.iter().zip(&b.0).all(|(x, y)| x & !y == 0)
}

fn disjoint(a: &Sig, b: &Sig) -> bool {
    a.0.iter().zip(&b.0).all(|(x, y)| x & y == 0)
}

fn empty(a: &Sig) -> bool {
    a.0.iter().all(|x| *x == 0)
}

fn minus(a: &Sig, b: &Sig) -> Sig {
    Sig(a.0.iter().zip(&b.0).map(|(x, y)| x & !y).collect())
}

fn union(lits: &[usize], cls: &[Sig], n: usize) -> Sig {
    lits.iter().fold(Sig::new(n), |acc, &l| acc.or(&cls[l]))
}

/// Keep only the literals that add classes (largest first).
fn minimal(mut lits: Vec<usize>, cls: &[Sig], n: usize) -> Vec<usize> {
    lits.sort_by_key(|&l| std::cmp::Reverse(cls[l].0.iter().map(|w| w.count_ones()).sum::<u32>()));
    let mut kept: Vec<usize> = Vec::new();
    let mut covered = Sig::new(n);
    for l in lits {
        if !subset(&cls[l], &covered) {
            covered = covered.or(&cls[l]);
            kept.push(l);
        }
    }
    kept.sort_unstable();
    kept
}

/// The formula of a set of classes of one dimension.
fn formula(dim: &Dim, set: &Sig) -> Formula {
    let n = dim.classes.len();
    let members: Vec<usize> = (0..n).filter(|&c| set.get(c)).collect();
    if dim.key == DimKey::Token {
        return Formula::Classes(members);
    }
    let cls = lit_classes(dim);
    let live: Vec<usize> = (0..cls.len()).filter(|&l| !empty(&cls[l])).collect();
    // Values wholly inside the set.
    let inside: Vec<usize> = live
        .iter()
        .copied()
        .filter(|&l| subset(&cls[l], set))
        .collect();
    if union(&inside, &cls, n) == *set {
        return Formula::In(minimal(inside, &cls, n));
    }
    // Values wholly outside it.
    let outside: Vec<usize> = live
        .iter()
        .copied()
        .filter(|&l| disjoint(&cls[l], set))
        .collect();
    let mut all = Sig::new(n);
    for c in 0..n {
        all.set(c);
    }
    if minus(&all, &union(&outside, &cls, n)) == *set {
        return Formula::NotIn(minimal(outside, &cls, n));
    }
    // Values that cover the set, less the values that stay outside it.
    let touching: Vec<usize> = live
        .iter()
        .copied()
        .filter(|&l| !disjoint(&cls[l], set))
        .collect();
    let cover = minimal(touching, &cls, n);
    let covered = union(&cover, &cls, n);
    if subset(set, &covered) {
        let out: Vec<usize> = outside
            .iter()
            .copied()
            .filter(|&l| !disjoint(&cls[l], &covered))
            .collect();
        if minus(&covered, &union(&out, &cls, n)) == *set {
            return Formula::InExcept(cover, minimal(out, &cls, n));
        }
    }
    Formula::Classes(members)
}

fn lits_text(dim: &Dim, lits: &[usize], sep: &str) -> String {
    lits.iter()
        .map(|&l| dim.lits[l].shown().to_owned())
        .collect::<Vec<_>>()
        .join(sep)
}

/// A class by the values it matches and does not.
fn class_text(dim: &Dim, c: usize) -> String {
    let class = &dim.classes[c];
    match &class.value {
        Value::Token { issuer, audiences } => {
            if audiences.is_empty() {
                format!("a token from {issuer}")
            } else {
                format!("a token from {issuer} (aud {})", audiences.join(","))
            }
        }
        Value::Absent if dim.key == DimKey::Token => "no token".to_owned(),
        _ => {
            let yes: Vec<&str> = (0..dim.lits.len())
                .filter(|&l| class.sig.get(l))
                .map(|l| dim.lits[l].shown())
                .collect();
            if yes.is_empty() {
                match &class.value {
                    Value::Absent => "absent".to_owned(),
                    _ => "other".to_owned(),
                }
            } else {
                format!("matching {}", yes.join(" and "))
            }
        }
    }
}

/// A condition on a dimension, in words.
fn part_text(dim: &Dim, f: &Formula) -> String {
    let name = dim.key.name();
    let set = |lits: &[usize]| format!("{{{}}}", lits_text(dim, lits, ","));
    let presence = |lits: &[usize]| {
        lits.len() == 1
            && matches!(&dim.lits[lits[0]], DimLit::Str(l) if matches!(&l.kind,
                super::lang::LitKind::Str { m: crate::authz::string_match::StringMatcher::Present, .. }))
    };
    let absent_too = matches!(dim.key, DimKey::Header(_) | DimKey::Claim(_))
        && dim.classes.iter().any(|c| c.value == Value::Absent);
    match (&dim.key, f) {
        (DimKey::Method | DimKey::Path, Formula::In(a)) => lits_text(dim, a, ","),
        (DimKey::Method, Formula::NotIn(b)) => format!("any method but {}", lits_text(dim, b, ",")),
        (DimKey::Path, Formula::NotIn(b)) => format!("any path but {}", lits_text(dim, b, ",")),
        (DimKey::Method | DimKey::Path, Formula::InExcept(a, b)) => {
            format!(
                "{} except {}",
                lits_text(dim, a, ","),
                lits_text(dim, b, ",")
            )
        }
        (DimKey::SourceIp, Formula::In(a)) => format!("from {}", lits_text(dim, a, ",")),
        (DimKey::SourceIp, Formula::NotIn(b)) => {
            format!("from anywhere but {}", lits_text(dim, b, ","))
        }
        (DimKey::SourceIp, Formula::InExcept(a, b)) => format!(
            "from {} except {}",
            lits_text(dim, a, ","),
            lits_text(dim, b, ",")
        ),
        (DimKey::DestinationIp, Formula::In(a)) => format!("to {}", lits_text(dim, a, ",")),
        (DimKey::DestinationIp, Formula::NotIn(b)) => {
            format!("to any address but {}", lits_text(dim, b, ","))
        }
        (_, Formula::In(a)) if presence(a) => format!("{name} present"),
        (_, Formula::NotIn(b)) if presence(b) => format!("{name} absent"),
        (_, Formula::In(a)) => format!("{name} ∈ {}", set(a)),
        (_, Formula::NotIn(b)) if absent_too => format!("{name} absent or ∉ {}", set(b)),
        (_, Formula::NotIn(b)) => format!("{name} ∉ {}", set(b)),
        (_, Formula::InExcept(a, b)) => format!("{name} ∈ {} but ∉ {}", set(a), set(b)),
        (DimKey::Token, Formula::Classes(cs)) => {
            // Whole issuers where every audience variant is in.
            let mut parts: Vec<String> = Vec::new();
            let mut done: Vec<&str> = Vec::new();
            for &c in cs {
                match &dim.classes[c].value {
                    Value::Token { issuer, .. } => {
                        if done.contains(&issuer.as_str()) {
                            continue;
                        }
                        let of_issuer: Vec<usize> = (0..dim.classes.len())
                            .filter(|&k| matches!(&dim.classes[k].value, Value::Token { issuer: i, .. } if i == issuer))
                            .collect();
                        if of_issuer.iter().all(|k| cs.contains(k)) {
                            parts.push(format!("a token from {issuer}"));
                            done.push(issuer);
                        } else {
                            parts.push(class_text(dim, c));
                        }
                    }
                    _ => parts.push("no token".to_owned()),
                }
            }
            format!("with {}", parts.join(" or "))
        }
        (_, Formula::Classes(cs)) => format!(
            "{name} {}",
            cs.iter()
                .map(|&c| class_text(dim, c))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}

fn alt_text(p: &Partition, alt: &Alt) -> String {
    let find = |k: &dyn Fn(&DimKey) -> bool| {
        alt.parts
            .iter()
            .filter(|part| k(&p.dims[part.dim].key))
            .map(|part| part_text(&p.dims[part.dim], &part.formula))
            .collect::<Vec<_>>()
    };
    let mut head: Vec<String> = Vec::new();
    if alt.http {
        head.extend(find(&|k| *k == DimKey::Method));
        head.extend(find(&|k| *k == DimKey::Path));
        if head.is_empty() {
            head.push("HTTP".to_owned());
        }
    } else {
        head.push("TCP".to_owned());
    }
    let mut s = head.join(" ");
    for t in find(&|k| *k == DimKey::Token) {
        s.push(' ');
        s.push_str(&t);
    }
    let conds = find(&|k| {
        matches!(
            k,
            DimKey::Host | DimKey::Header(_) | DimKey::Sub | DimKey::Claim(_) | DimKey::Sni
        )
    });
    if !conds.is_empty() {
        s.push_str(" when ");
        s.push_str(&conds.join(", "));
    }
    for t in find(&|k| matches!(k, DimKey::SourceIp | DimKey::DestinationIp)) {
        s.push(' ');
        s.push_str(&t);
    }
    if let Some(c) = &alt.custom {
        s.push_str(&format!(" (subject to {c})"));
    }
    s
}

/// Display order of dimensions, and the reverse merge order.
fn rank(k: &DimKey) -> u8 {
    match k {
        DimKey::Method => 0,
        DimKey::Path => 1,
        DimKey::Host => 2,
        DimKey::Header(_) => 3,
        DimKey::Token => 4,
        DimKey::Sub => 5,
        DimKey::Claim(_) => 6,
        DimKey::SourceIp => 7,
        DimKey::DestinationIp => 8,
        DimKey::Sni => 9,
    }
}

/// A cell's classes with the dimensions it does not read set to 0 (as enumerated).
fn canonical(p: &Partition, http: bool, token: Option<usize>, classes: &[u16]) -> Vec<u16> {
    let no_token =
        token.is_some_and(|t| p.dims[t].classes[classes[t] as usize].value == Value::Absent);
    classes
        .iter()
        .enumerate()
        .map(|(d, &c)| {
            let dim = &p.dims[d];
            if (!http && dim.key.http_only()) || (dim.token_only() && (token.is_none() || no_token))
            {
                0
            } else {
                c
            }
        })
        .collect()
}

/// Every cell of a box (canonical), or `None` past `budget` cells.
fn cells_of(
    p: &Partition,
    http: bool,
    token: Option<usize>,
    b: &[Sig],
    budget: &mut usize,
) -> Option<Vec<Vec<u16>>> {
    let mut out: Vec<Vec<u16>> = vec![Vec::new()];
    for (d, set) in b.iter().enumerate() {
        let classes: Vec<u16> = (0..p.dims[d].classes.len())
            .filter(|&c| set.get(c))
            .filter_map(|c| u16::try_from(c).ok())
            .collect();
        let mut next = Vec::with_capacity(out.len() * classes.len());
        for prefix in &out {
            for &c in &classes {
                let mut v = prefix.clone();
                v.push(c);
                next.push(v);
            }
        }
        if next.len() > *budget {
            return None;
        }
        out = next;
    }
    *budget = budget.saturating_sub(out.len());
    let mut canon: Vec<Vec<u16>> = out.iter().map(|c| canonical(p, http, token, c)).collect();
    canon.sort();
    canon.dedup();
    Some(canon)
}

/// Grow every box as far as the set allows in each dimension (boxes may then overlap: `GET
/// /api/data; GET,POST /api/*` reads better than three disjoint pieces), then keep the fewest
/// boxes that still cover the set.
fn prime_cover(
    p: &Partition,
    http: bool,
    token: Option<usize>,
    full: &[Sig],
    order: &[usize],
    boxes: Vec<Vec<Sig>>,
    members: &std::collections::HashSet<Vec<u16>>,
) -> Vec<Vec<Sig>> {
    let mut budget: usize = 400_000;
    let mut grown: Vec<Vec<Sig>> = Vec::new();
    for mut b in boxes.clone() {
        let mut changed = true;
        while changed {
            changed = false;
            for &d in order.iter().rev() {
                for c in 0..p.dims[d].classes.len() {
                    if b[d].get(c) || !full[d].get(c) {
                        continue;
                    }
                    let mut slice = b.clone();
                    slice[d] = Sig::new(p.dims[d].classes.len());
                    slice[d].set(c);
                    match cells_of(p, http, token, &slice, &mut budget) {
                        Some(cells) if cells.iter().all(|x| members.contains(x)) => {
                            b[d].set(c);
                            changed = true;
                        }
                        Some(_) => {}
                        None => return boxes,
                    }
                }
            }
        }
        if !grown.contains(&b) {
            grown.push(b);
        }
    }
    // Greedy cover: the box covering most uncovered cells first.
    let mut covers: Vec<(Vec<Sig>, Vec<Vec<u16>>)> = Vec::new();
    for b in grown {
        match cells_of(p, http, token, &b, &mut budget) {
            Some(cells) => covers.push((b, cells)),
            None => return boxes,
        }
    }
    let mut uncovered: std::collections::HashSet<&Vec<u16>> = members.iter().collect();
    let mut out = Vec::new();
    while !uncovered.is_empty() {
        let best = covers
            .iter()
            .enumerate()
            .max_by_key(|(i, (_, cells))| {
                (
                    cells.iter().filter(|c| uncovered.contains(c)).count(),
                    std::cmp::Reverse(*i),
                )
            })
            .map(|(i, _)| i);
        let Some(i) = best else {
            return boxes;
        };
        let (b, cells) = covers.swap_remove(i);
        let before = uncovered.len();
        for c in &cells {
            uncovered.remove(c);
        }
        if uncovered.len() == before {
            return boxes;
        }
        out.push(b);
    }
    // Shrink each chosen box by the classes whose cells the other boxes cover already
    // (a grown box may overlap its neighbours more than it needs to).
    for i in 0..out.len() {
        for &d in order {
            for c in 0..p.dims[d].classes.len() {
                // An unconstrained dimension reads best as it is.
                if !out[i][d].get(c)
                    || out[i][d] == full[d]
                    || out[i][d].0.iter().map(|w| w.count_ones()).sum::<u32>() <= 1
                {
                    continue;
                }
                let mut slice = out[i].clone();
                slice[d] = Sig::new(p.dims[d].classes.len());
                slice[d].set(c);
                let Some(cells) = cells_of(p, http, token, &slice, &mut budget) else {
                    return out;
                };
                let mut others: Vec<Vec<Vec<u16>>> = Vec::new();
                for (j, b) in out.iter().enumerate() {
                    if j == i {
                        continue;
                    }
                    match cells_of(p, http, token, b, &mut budget) {
                        Some(x) => others.push(x),
                        None => return out,
                    }
                }
                if cells
                    .iter()
                    .all(|x| others.iter().any(|o| o.binary_search(x).is_ok()))
                {
                    let mut keep = out[i][d].clone();
                    keep.0[c / 64] &= !(1 << (c % 64));
                    out[i][d] = keep;
                }
            }
        }
    }
    out
}

/// Cells described together: HTTP or TCP, and the CUSTOM label they carry.
type GroupKey = (bool, Option<String>);

/// Describe a set of cells (indexes into the partition's cells). `label` names the group a
/// cell is described in (the CUSTOM provider that also decides it, or none).
pub fn describe(
    p: &Partition,
    cells: &[usize],
    label: impl Fn(usize) -> Option<String>,
) -> Description {
    if cells.is_empty() {
        return Description::none();
    }
    let groups = {
        let mut g: Vec<(GroupKey, Vec<usize>)> = Vec::new();
        for &c in cells {
            let key = (p.cells[c].http, label(c));
            match g.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(c),
                None => g.push((key, vec![c])),
            }
        }
        g.sort_by(|a, b| (a.0 .0, &a.0 .1).cmp(&(b.0 .0, &b.0 .1)));
        g
    };
    let all = cells.len() == p.cells.len() && groups.iter().all(|((_, l), _)| l.is_none());
    let n = p.dims.len();
    let full: Vec<Sig> = p
        .dims
        .iter()
        .map(|d| {
            let mut s = Sig::new(d.classes.len());
            for c in 0..d.classes.len() {
                s.set(c);
            }
            s
        })
        .collect();
    let token = p.dims.iter().position(|d| d.key == DimKey::Token);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&d| std::cmp::Reverse(rank(&p.dims[d].key)));
    let mut alts = Vec::new();
    for ((http, custom), group) in groups {
        let mut boxes: Vec<Vec<Sig>> = group
            .iter()
            .map(|&c| {
                let cell = &p.cells[c];
                let no_token = token.is_some_and(|t| {
                    p.dims[t].classes[cell.classes[t] as usize].value == Value::Absent
                });
                (0..n)
                    .map(|d| {
                        let dim = &p.dims[d];
                        if (!http && dim.key.http_only())
                            || (dim.token_only() && (token.is_none() || no_token))
                        {
                            full[d].clone()
                        } else {
                            let mut s = Sig::new(dim.classes.len());
                            s.set(cell.classes[d] as usize);
                            s
                        }
                    })
                    .collect()
            })
            .collect();
        loop {
            let before = boxes.len();
            for &d in &order {
                let mut merged: HashMap<Vec<Sig>, Sig> = HashMap::new();
                let mut keys: Vec<Vec<Sig>> = Vec::new();
                for b in boxes.drain(..) {
                    let mut key = b.clone();
                    key[d] = Sig::default();
                    match merged.get_mut(&key) {
                        Some(s) => *s = s.or(&b[d]),
                        None => {
                            keys.push(key.clone());
                            merged.insert(key, b[d].clone());
                        }
                    }
                }
                for mut k in keys {
                    if let Some(s) = merged.remove(&k) {
                        k[d] = s;
                        boxes.push(k);
                    }
                }
            }
            if boxes.len() == before {
                break;
            }
        }
        let members: std::collections::HashSet<Vec<u16>> = group
            .iter()
            .map(|&c| canonical(p, http, token, &p.cells[c].classes))
            .collect();
        boxes = prime_cover(p, http, token, &full, &order, boxes, &members);
        boxes.sort_by(|a, b| a.iter().map(|s| &s.0).cmp(b.iter().map(|s| &s.0)));
        let mut display: Vec<usize> = (0..n).collect();
        display.sort_by_key(|&d| rank(&p.dims[d].key));
        for b in boxes {
            let parts = display
                .iter()
                .filter(|&&d| b[d] != full[d])
                .map(|&d| Part {
                    dim: d,
                    formula: formula(&p.dims[d], &b[d]),
                })
                .collect();
            alts.push(Alt {
                http,
                parts,
                custom: custom.clone(),
            });
        }
    }
    Description { alts, all }
}
