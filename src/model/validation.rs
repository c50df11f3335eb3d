//! What Istio's validation of a kind reports, in Istio's words: the error classes, the
//! collector the kinds' validations write into, and the "did you mean" helper.

use super::{Loose, Str};
use crate::finding::Violation;

/// Levenshtein distance, for "did you mean" suggestions (error paths only).
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(!ca.eq_ignore_ascii_case(cb));
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The option closest to `word`, when it is close enough to be a likely typo.
pub(crate) fn closest<'a>(word: &str, options: &[&'a str]) -> Option<&'a str> {
    options
        .iter()
        .map(|o| (distance(word, o), *o))
        .filter(|(d, o)| *d <= 2.max(o.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, o)| o)
}

/// The class of an Istio validation error; each parity rule reports one class.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Class {
    /// A value outside an enum.
    Enum,
    /// A port number or port key out of range or not a number.
    Port,
    /// Fields that must not be set together.
    Conflict,
    /// Everything else Istio's schema or webhook rejects: required or empty values, types, formats.
    Spec,
}

/// What Istio would reject in one object, by class.
pub(crate) type IstioErrors = Vec<(Class, Violation)>;

/// Collects the errors of one validation.
pub(crate) struct Errors<'o> {
    pub(crate) out: &'o mut IstioErrors,
}

impl Errors<'_> {
    /// Report an Istio error of `class` at `path`.
    pub(crate) fn report(
        &mut self,
        class: Class,
        path: impl FnOnce() -> String,
        istio: impl FnOnce() -> String,
        fix: impl FnOnce() -> String,
    ) {
        self.out.push((
            class,
            Violation::new(
                path(),
                format!("Istio rejects this object: {}", istio()),
                fix(),
            ),
        ));
    }

    /// A string that must be one of `allowed`.
    pub(crate) fn enum_str(&mut self, path: impl FnOnce() -> String, s: &str, allowed: &[&str]) {
        if allowed.contains(&s) {
            return;
        }
        let supported = allowed
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let fix = match closest(s, allowed) {
            Some(c) => format!("write {c:?} (supported: {})", allowed.join(", ")),
            None => format!("write one of {}", allowed.join(", ")),
        };
        self.report(
            Class::Enum,
            path,
            || format!("Unsupported value: {s:?}: supported values: {supported}"),
            || fix,
        );
    }

    /// An enum over a typed field (a wrong JSON type reported with it).
    pub(crate) fn enum_field(
        &mut self,
        path: impl FnOnce() -> String,
        v: Option<&Loose<Str<'_>>>,
        allowed: &[&str],
    ) {
        match v {
            None => {}
            Some(Loose::Ok(s)) => {
                self.enum_str(path, s, allowed);
            }
            Some(Loose::Wrong { found, .. }) => {
                let p = path();
                self.report(
                    Class::Spec,
                    || p.to_string(),
                    || format!("{p} in body must be of type string: {found:?}"),
                    || format!("write one of {}", allowed.join(", ")),
                );
            }
        }
    }

    /// Every entry of the string list at `key` must be non-empty (CRD `minLength: 1`).
    pub(crate) fn non_empty_entries(&mut self, list: &[Loose<Str<'_>>], base: &str, key: &str) {
        for (i, v) in list.iter().enumerate() {
            if v.ok().is_some_and(|s| s.is_empty()) {
                let p = format!("{base}.{key}[{i}]");
                self.report(
                    Class::Spec,
                    || p.to_string(),
                    || format!("{p} in body should be at least 1 chars long"),
                    || "remove the empty entry or write the value".to_owned(),
                );
            }
        }
    }
}
