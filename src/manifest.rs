//! Loading Kubernetes manifests from files, directories and stdin: multi-document YAML and
//! JSON, `List` kinds unwrapped, every object tagged with the file and line it starts on.
//!
//! Documents are found by splitting on `---` lines ourselves (so each document's first line is
//! known), then each document is parsed by `serde-saphyr` into a `serde_json::Value`. A document
//! that does not parse is reported with its file and line, never skipped silently.

use kube::core::DynamicObject;
use serde_json::Value;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One object read from a manifest.
#[derive(Clone, Debug)]
pub struct ManifestObject {
    /// Display name of the file (`-` for stdin).
    pub file: Arc<str>,
    /// 1-based line the object starts on.
    pub line: usize,
    /// The object as parsed (any kind: kinds meshguard does not check are loaded too).
    pub object: DynamicObject,
    /// The document it came from, as written (comments and all), for `check --fix`.
    pub source: Source,
}

/// A document's text within its file: `check --fix` writes documents it does not patch back
/// exactly as they were. Objects of one `List` document share it.
#[derive(Clone, Debug)]
pub struct Source {
    /// The whole file, shared by its objects.
    pub(crate) file_text: Arc<str>,
    /// Byte range of the document (a `--- content` marker line included).
    pub start: usize,
    pub end: usize,
}

impl Source {
    pub fn text(&self) -> &str {
        self.file_text.get(self.start..self.end).unwrap_or("")
    }

    /// Whether two objects come from the same document.
    pub(crate) fn same_document(&self, other: &Source) -> bool {
        Arc::ptr_eq(&self.file_text, &other.file_text) && self.start == other.start
    }
}

/// A document (or file) that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LoadError {
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{}: {}", self.file, l, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Everything read from the inputs: objects in input order, and what could not be read.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub objects: Vec<ManifestObject>,
    pub errors: Vec<LoadError>,
}

/// A path that cannot be used at all (usage error, exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct InputError {
    pub path: String,
    pub message: String,
}

/// File extensions read when walking a directory.
const EXTENSIONS: &[&str] = &["yaml", "yml", "json"];

/// Expand the inputs into the list of files to read, in a stable order: given files as given,
/// directories walked recursively with entries sorted by name (hidden entries skipped).
pub(crate) fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, InputError> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            out.push(p.clone());
            continue;
        }
        let meta = std::fs::metadata(p).map_err(|e| InputError {
            path: p.display().to_string(),
            message: e.to_string(),
        })?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), InputError> {
    let err = |e: std::io::Error| InputError {
        path: dir.display().to_string(),
        message: e.to_string(),
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(err)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(err)?;
    entries.sort();
    for p in entries {
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk(&p, out)?;
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(p);
        }
    }
    Ok(())
}

/// Read every input (files, directories, `-` for stdin).
pub fn load(paths: &[PathBuf]) -> Result<Loaded, InputError> {
    load_from(paths, &mut std::io::stdin())
}

/// [`load`] with `-` read from `stdin`. Files are read in order, then their documents are
/// parsed on all cores; the result keeps input order.
pub(crate) fn load_from(paths: &[PathBuf], stdin: &mut dyn Read) -> Result<Loaded, InputError> {
    let (objects, errors) = load_map(paths, stdin, |o| o)?;
    Ok(Loaded { objects, errors })
}

/// [`load_from`], each object passed through `f` as soon as it is parsed (on the parsing
/// core): a caller that keeps something smaller than the parsed object never holds every
/// object's JSON tree at once. Results and errors in input order.
pub(crate) fn load_map<T: Send>(
    paths: &[PathBuf],
    stdin: &mut dyn Read,
    f: impl Fn(ManifestObject) -> T + Sync + Send,
) -> Result<(Vec<T>, Vec<LoadError>), InputError> {
    let files = expand(paths)?;
    let mut texts: Vec<(Arc<str>, Arc<str>)> = Vec::with_capacity(files.len());
    for f in files {
        if f.as_os_str() == "-" {
            let mut s = String::new();
            stdin.read_to_string(&mut s).map_err(|e| InputError {
                path: "-".into(),
                message: format!("cannot read stdin: {e}"),
            })?;
            texts.push((Arc::from("-"), without_bom(s)));
        } else {
            let name = f.display().to_string();
            let text = std::fs::read_to_string(&f).map_err(|e| InputError {
                path: name.clone(),
                message: e.to_string(),
            })?;
            texts.push((Arc::from(name), without_bom(text)));
        }
    }
    let jobs: Vec<(&Arc<str>, RawDocument<'_>, Source)> = texts
        .iter()
        .flat_map(|(name, text)| {
            documents(text)
                .into_iter()
                .map(move |(d, source)| (name, d, source))
        })
        .collect();
    let parts = crate::parallel::par_map(&jobs, |chunk| {
        let (mut objects, mut errors) = (Vec::new(), Vec::new());
        let mut out = Loaded::default();
        for (name, doc, source) in chunk {
            parse_document(name, doc, source, &mut out);
            objects.extend(out.objects.drain(..).map(&f));
            errors.append(&mut out.errors);
        }
        (objects, errors)
    });
    let (mut objects, mut errors) = (Vec::new(), Vec::new());
    for (mut o, mut e) in parts {
        objects.append(&mut o);
        errors.append(&mut e);
    }
    Ok((objects, errors))
}

fn without_bom(text: String) -> Arc<str> {
    match text.strip_prefix('\u{feff}') {
        Some(rest) => Arc::from(rest),
        None => Arc::from(text),
    }
}

/// A document of a multi-document YAML stream: its text and first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RawDocument<'a> {
    pub(crate) text: &'a str,
    /// 1-based line of the document's first line (after the `---`).
    pub(crate) first_line: usize,
}

/// Split a YAML stream on document markers (`---` at column 0, optionally followed by
/// whitespace and content) and end markers (`...`). Content after `--- ` on the marker line
/// belongs to the new document.
pub(crate) fn split_documents(text: &str) -> Vec<RawDocument<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize; // byte offset of the current document
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (line_no, line) in (1usize..).zip(text.split_inclusive('\n')) {
        let trimmed = line.trim_end_matches(['\n', '\r']);
        let is_start = trimmed == "---"
            || (trimmed.starts_with("---") && trimmed[3..].starts_with([' ', '\t']));
        let is_end = trimmed == "..." || trimmed.starts_with("... ");
        if is_start || is_end {
            docs.push(RawDocument {
                text: &text[start..offset],
                first_line: start_line,
            });
            if is_start && trimmed.len() > 3 && !trimmed[3..].trim().starts_with('#') {
                // `--- content`: keep the content (with the marker blanked out) in the new
                // document so its line numbers stay right.
                start = offset + 3;
                start_line = line_no;
            } else {
                start = offset + line.len();
                start_line = line_no + 1;
            }
        }
        offset += line.len();
    }
    docs.push(RawDocument {
        text: &text[start..],
        first_line: start_line,
    });
    docs
}

/// First line of a document that holds content (not blank, not a comment, not a directive).
fn content_line(doc: &RawDocument<'_>) -> Option<usize> {
    doc.text.lines().enumerate().find_map(|(i, l)| {
        let t = l.trim();
        (!t.is_empty() && !t.starts_with('#') && !t.starts_with('%')).then_some(doc.first_line + i)
    })
}

/// Parse one file's text into objects (and errors), appending to `out`.
pub fn parse_into(file: &str, text: &str, out: &mut Loaded) {
    let file: Arc<str> = Arc::from(file);
    let text: Arc<str> = Arc::from(text.strip_prefix('\u{feff}').unwrap_or(text));
    for (doc, source) in documents(&text) {
        parse_document(&file, &doc, &source, out);
    }
}

/// The documents of a file's text, each with its [`Source`].
fn documents(file_text: &Arc<str>) -> Vec<(RawDocument<'_>, Source)> {
    let base = file_text.as_ptr() as usize;
    split_documents(file_text)
        .into_iter()
        .map(|doc| {
            let mut start = doc.text.as_ptr() as usize - base;
            let end = start + doc.text.len();
            // `--- content`: the document starts on its marker line; keep the marker.
            if let Some(line_start) = file_text[..start].strip_suffix("---") {
                if line_start.is_empty() || line_start.ends_with('\n') {
                    start -= 3;
                }
            } else if let Some(before) = file_text[..start].strip_suffix('\n') {
                // `--- # comment`: keep the marker line with its comment.
                let line_start = before.rfind('\n').map_or(0, |i| i + 1);
                let marker = before[line_start..].trim_end_matches('\r');
                if marker
                    .strip_prefix("---")
                    .is_some_and(|rest| rest.trim_start().starts_with('#'))
                {
                    start = line_start;
                }
            }
            let source = Source {
                file_text: file_text.clone(),
                start,
                end,
            };
            (doc, source)
        })
        .collect()
}

/// Parse one document of `file`, appending its objects (or error) to `out`.
fn parse_document(file: &Arc<str>, doc: &RawDocument<'_>, source: &Source, out: &mut Loaded) {
    let Some(line) = content_line(doc) else {
        return; // empty document
    };
    // Fast path: straight into an object (no intermediate JSON tree). Lists, and anything that
    // does not deserialize cleanly, take the general path below, which also explains errors.
    if !doc.text.contains("List") {
        if let Ok(obj) = serde_saphyr::from_str::<DynamicObject>(doc.text) {
            if obj
                .types
                .as_ref()
                .is_some_and(|t| !t.kind.is_empty() && !t.api_version.is_empty())
            {
                out.objects.push(ManifestObject {
                    file: file.clone(),
                    line,
                    object: obj,
                    source: source.clone(),
                });
                return;
            }
        }
    }
    let value: Value = match serde_saphyr::from_str(doc.text) {
        Ok(v) => v,
        Err(e) => {
            let at = e
                .location()
                .map(|l| doc.first_line + (l.line() as usize).saturating_sub(1))
                .unwrap_or(line);
            let message = e.to_string();
            let mut message = message.lines().next().unwrap_or("invalid YAML").trim();
            // saphyr prefixes "error: line L column C: " relative to the document; the line
            // is reported (absolute) separately.
            if let Some(rest) = message.strip_prefix("error: ") {
                message = rest;
                if rest.starts_with("line ") {
                    if let Some((_, m)) = rest.split_once(": ") {
                        message = m;
                    }
                }
            }
            let column = e
                .location()
                .map(|l| format!(" (column {})", l.column()))
                .unwrap_or_default();
            out.errors.push(LoadError {
                file: file.to_string(),
                line: Some(at),
                message: format!("cannot parse YAML{column}: {message}"),
            });
            return;
        }
    };
    push_object(file, line, doc, source, value, out);
}

fn push_object(
    file: &Arc<str>,
    line: usize,
    doc: &RawDocument<'_>,
    source: &Source,
    value: Value,
    out: &mut Loaded,
) {
    match value {
        Value::Null => {}
        Value::Object(ref m) => {
            let kind = m.get("kind").and_then(Value::as_str);
            let is_list = kind.is_some_and(|k| k == "List" || k.ends_with("List"))
                && m.get("items").is_some_and(Value::is_array);
            if is_list {
                let item_lines = list_item_lines(doc);
                if let Some(Value::Array(items)) = value.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        let l = item_lines.get(i).copied().unwrap_or(line);
                        if item.is_object() {
                            push_value(file, l, source, item.clone(), out);
                        } else {
                            out.errors.push(LoadError {
                                file: file.to_string(),
                                line: Some(l),
                                message: format!("items[{i}] is not a Kubernetes object"),
                            });
                        }
                    }
                }
                return;
            }
            let has_kind = kind.is_some() && m.get("apiVersion").is_some_and(Value::is_string);
            if !has_kind {
                out.errors.push(LoadError {
                    file: file.to_string(),
                    line: Some(line),
                    message: "not a Kubernetes object: apiVersion and kind are required".into(),
                });
                return;
            }
            push_value(file, line, source, value, out);
        }
        _ => out.errors.push(LoadError {
            file: file.to_string(),
            line: Some(line),
            message: "not a Kubernetes object: the document is not a mapping".into(),
        }),
    }
}

fn push_value(file: &Arc<str>, line: usize, source: &Source, value: Value, out: &mut Loaded) {
    match serde_json::from_value::<DynamicObject>(value) {
        Ok(object) => out.objects.push(ManifestObject {
            file: file.clone(),
            line,
            object,
            source: source.clone(),
        }),
        Err(e) => out.errors.push(LoadError {
            file: file.to_string(),
            line: Some(line),
            message: format!("not a Kubernetes object: {e}"),
        }),
    }
}

/// Lines of the entries of a block-style `items:` sequence (best effort: flow style and JSON
/// fall back to the document's line).
fn list_item_lines(doc: &RawDocument<'_>) -> Vec<usize> {
    let mut lines = Vec::new();
    let mut in_items = false;
    let mut indent: Option<usize> = None;
    for (i, l) in doc.text.lines().enumerate() {
        if !in_items {
            if l.trim_end() == "items:" {
                in_items = true;
            }
            continue;
        }
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let ind = l.len() - t.len();
        if ind == 0 && !t.starts_with('-') {
            break; // next top-level key
        }
        if t.starts_with("- ") || t == "-" {
            match indent {
                None => {
                    indent = Some(ind);
                    lines.push(doc.first_line + i);
                }
                Some(n) if n == ind => lines.push(doc.first_line + i),
                Some(n) if ind < n => break,
                _ => {}
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Loaded {
        let mut l = Loaded::default();
        parse_into("f.yaml", text, &mut l);
        l
    }

    #[test]
    fn documents_get_their_first_content_line() {
        let l = parse(
            "# header\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\n# c\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: b, namespace: a}\n--- \n---\n",
        );
        assert!(l.errors.is_empty(), "{:?}", l.errors);
        let lines: Vec<usize> = l.objects.iter().map(|o| o.line).collect();
        assert_eq!(lines, vec![2, 8]);
    }

    #[test]
    fn broken_document_is_reported_with_its_line_and_others_still_load() {
        let l = parse(
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n",
        );
        assert_eq!(l.objects.len(), 2);
        assert_eq!(l.errors.len(), 1);
        let e = &l.errors[0];
        assert_eq!(e.file, "f.yaml");
        let line = e.line.expect("line");
        assert!((5..=9).contains(&line), "line {line}: {e}");
        assert!(e.message.starts_with("cannot parse YAML"), "{e}");
    }

    #[test]
    fn lists_are_unwrapped_with_item_lines() {
        let l = parse(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: b\n",
        );
        assert!(l.errors.is_empty());
        let got: Vec<(usize, &str)> = l
            .objects
            .iter()
            .map(|o| (o.line, o.object.metadata.name.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(got, vec![(4, "a"), (7, "b")]);
    }

    #[test]
    fn json_documents_and_json_lists_load() {
        let l = parse(
            r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}]}"#,
        );
        assert_eq!(l.objects.len(), 1);
        assert_eq!(l.objects[0].line, 1);
    }

    #[test]
    fn non_objects_are_reported() {
        let l = parse("- a\n- b\n---\nfoo: bar\n");
        assert_eq!(l.objects.len(), 0);
        assert_eq!(l.errors.len(), 2);
        assert_eq!(l.errors[1].line, Some(4));
        assert!(l.errors[1].message.contains("apiVersion and kind"));
    }

    #[test]
    fn marker_with_content_keeps_line_numbers() {
        let docs = split_documents("a: 1\n--- {b: 2}\n...\nc: 3\n");
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1].first_line, 2);
        assert_eq!(docs[2].first_line, 4);
    }
}
