//! Where each node of a document sits in its file: a tree of positions beside the data.
//!
//! How it works: reading builds, for every document, a [`Node`] tree that mirrors the
//! shape of its `serde_json::Value` (mappings with their keys in file order, sequences,
//! scalars) and holds only positions. For YAML the tree comes from the same parse as
//! the value: each node is deserialized as a `serde_saphyr::Spanned`, so aliases point at
//! the alias and merged keys at the merge. For JSON, `serde_json` has no positions, so
//! [`json_nodes`] rescans the text (already known to parse) with a small tokenizer.
//!
//! A field path in KubeVirt notation (`spec.domain.devices.interfaces[0].ports[0].port`)
//! is found with [`Node::locate`]; a path that goes deeper than the document (a field the
//! defaults added) ends at the deepest node that exists, so every path gets a position.
//! A position names the value when it is a scalar and the key otherwise: a block mapping's
//! value starts on the next line, and the key is what the reader looks for.
//!
//! What holds: positions are 1-based lines and columns counted in characters; no input
//! makes this panic; the JSON scanner is iterative, so nesting depth costs no stack.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

/// A 1-based line and column (characters) in a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// Positions of one document's nodes, shaped like its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub pos: Pos,
    pub shape: Shape,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    Scalar,
    Seq(Vec<Node>),
    /// Entries in file order; a repeated key is listed each time (the last one counts).
    Map(Vec<Entry>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

/// One step of a field path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[0].c` → `a`, `b`, `[0]`, `c`. Keys may themselves hold dots (annotation names);
/// [`Node::locate`] joins consecutive keys back when a mapping has such a key.
fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(end) = inner.find(']') else { break };
            match inner[..end].parse() {
                Ok(i) => out.push(Step::Index(i)),
                Err(_) => out.push(Step::Key(&inner[..end])),
            }
            rest = &inner[end + 1..];
        }
    }
    out
}

impl Node {
    fn scalar(pos: Pos) -> Node {
        Node {
            pos,
            shape: Shape::Scalar,
        }
    }

    /// The last entry with key `key`, if this is a mapping.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.shape {
            Shape::Map(entries) => entries.iter().rev().find(|e| e.key == key),
            _ => None,
        }
    }

    /// The node at `path` relative to this one, or the deepest node on the way.
    pub fn locate(&self, path: &str) -> Pos {
        self.locate_at(path).0
    }

    /// As [`Node::locate`], and whether the whole path exists.
    pub fn locate_at(&self, path: &str) -> (Pos, bool) {
        let steps = steps(path);
        let mut node = self;
        let mut key_pos = None;
        let mut i = 0;
        while i < steps.len() {
            let next = match (&node.shape, steps[i]) {
                (Shape::Seq(items), Step::Index(k)) => items.get(k).map(|n| (n, None, 1)),
                (Shape::Map(_), Step::Key(_)) => {
                    // The shortest run of keys that names an entry: `a.b` may be one key.
                    (1..=steps.len() - i).find_map(|n| {
                        let joined = join_keys(&steps[i..i + n])?;
                        node.get(&joined).map(|e| (&e.value, Some(e.key_pos), n))
                    })
                }
                _ => None,
            };
            let Some((child, kp, used)) = next else {
                break;
            };
            node = child;
            key_pos = kp;
            i += used;
        }
        let pos = match (&node.shape, key_pos) {
            (Shape::Scalar, _) | (_, None) => node.pos,
            (_, Some(k)) => k,
        };
        (pos, i == steps.len())
    }
}

/// The value at `path` in `value`, found the way [`Node::locate`] finds nodes.
pub fn value_at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let steps = steps(path);
    let mut v = value;
    let mut i = 0;
    while i < steps.len() {
        let (next, used) = match (v, steps[i]) {
            (Value::Array(items), Step::Index(k)) => (items.get(k)?, 1),
            (Value::Object(map), Step::Key(_)) => (1..=steps.len() - i)
                .find_map(|n| map.get(&join_keys(&steps[i..i + n])?).map(|c| (c, n)))?,
            _ => return None,
        };
        v = next;
        i += used;
    }
    Some(v)
}

fn join_keys(steps: &[Step]) -> Option<String> {
    let mut out = String::new();
    for (n, s) in steps.iter().enumerate() {
        let Step::Key(k) = s else { return None };
        if n > 0 {
            out.push('.');
        }
        out.push_str(k);
    }
    Some(out)
}

/// The source line at `pos` with a caret under its column, or nothing for an unknown
/// position. Tabs show as `→` so that the caret stays aligned.
pub fn snippet(text: &str, pos: Pos) -> String {
    let Some(src) = pos.line.checked_sub(1).and_then(|i| text.lines().nth(i)) else {
        return String::new();
    };
    let shown: String = src.chars().take(160).collect::<String>().replace('\t', "→");
    let pad = " ".repeat(pos.column.saturating_sub(1).min(160));
    format!("  {:>4} | {shown}\n       | {pad}^", pos.line)
}

// ---- YAML: values and positions from one parse ----

/// A YAML node as serde-saphyr hands it over: a scalar already typed as JSON, or a
/// collection of spanned children.
pub(crate) enum Raw {
    Scalar(Value),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Key>, Spanned<Raw>)>),
}

/// A mapping key as text (YAML allows `1:` or `true:`; JSON keys are strings).
pub(crate) struct Key(String);

fn pos_of(s: &serde_saphyr::Location) -> Pos {
    Pos {
        line: s.line() as usize,
        column: s.column() as usize,
    }
}

/// Splits a spanned YAML tree into its value and its positions. Iterative: the parser's
/// depth budget already bounds nesting, but the stack is not asked to.
pub(crate) fn split(root: Spanned<Raw>) -> (Value, Node) {
    enum Done {
        Seq(Vec<Value>, Vec<Node>, Pos),
        Map(serde_json::Map<String, Value>, Vec<Entry>, Pos),
    }
    // A frame: the finished part of a collection and what is left of it.
    enum Todo {
        Seq(std::vec::IntoIter<Spanned<Raw>>),
        Map(
            std::vec::IntoIter<(Spanned<Key>, Spanned<Raw>)>,
            Option<(String, Pos)>,
        ),
    }
    let mut stack: Vec<(Done, Todo)> = Vec::new();
    let mut current = Some(root);
    let mut finished: Option<(Value, Node)> = None;
    loop {
        if let Some(raw) = current.take() {
            let pos = pos_of(&raw.referenced);
            match raw.value {
                Raw::Scalar(v) => finished = Some((v, Node::scalar(pos))),
                Raw::Seq(items) => stack.push((
                    Done::Seq(Vec::new(), Vec::new(), pos),
                    Todo::Seq(items.into_iter()),
                )),
                Raw::Map(entries) => stack.push((
                    Done::Map(serde_json::Map::new(), Vec::new(), pos),
                    Todo::Map(entries.into_iter(), None),
                )),
            }
        }
        let Some((done, todo)) = stack.last_mut() else {
            return finished.unwrap_or((Value::Null, Node::scalar(Pos::default())));
        };
        // Hand a finished child to its parent.
        if let Some((v, n)) = finished.take() {
            match (done, &mut *todo) {
                (Done::Seq(vs, ns, _), _) => {
                    vs.push(v);
                    ns.push(n);
                }
                (Done::Map(vs, es, _), Todo::Map(_, key)) => {
                    if let Some((k, key_pos)) = key.take() {
                        vs.insert(k.clone(), v);
                        es.push(Entry {
                            key: k,
                            key_pos,
                            value: n,
                        });
                    }
                }
                (Done::Map(..), Todo::Seq(_)) => {}
            }
            continue;
        }
        // Next child, or close this collection.
        let next = match todo {
            Todo::Seq(items) => items.next(),
            Todo::Map(entries, key) => entries.next().map(|(k, v)| {
                *key = Some((k.value.0, pos_of(&k.referenced)));
                v
            }),
        };
        match next {
            Some(child) => current = Some(child),
            None => {
                let Some((done, _)) = stack.pop() else {
                    continue;
                };
                finished = Some(match done {
                    Done::Seq(vs, ns, pos) => (
                        Value::Array(vs),
                        Node {
                            pos,
                            shape: Shape::Seq(ns),
                        },
                    ),
                    Done::Map(vs, es, pos) => (
                        Value::Object(vs),
                        Node {
                            pos,
                            shape: Shape::Map(es),
                        },
                    ),
                });
            }
        }
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

/// Scalars become the same JSON values `serde_json::Value` would make of them.
impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::from(v)))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Scalar(match i64::try_from(v) {
            Ok(i) => Value::from(i),
            Err(_) => float(v as f64),
        }))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
        Ok(Raw::Scalar(match u64::try_from(v) {
            Ok(u) => Value::from(u),
            Err(_) => float(v as f64),
        }))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Scalar(float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Scalar(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Key>>()? {
            let value = map.next_value::<Spanned<Raw>>()?;
            entries.push((key, value));
        }
        Ok(Raw::Map(entries))
    }
}

/// As `serde_json::Value` does: a float JSON cannot hold (NaN, infinity) is null.
fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        d.deserialize_any(KeyVisitor)
    }
}

struct KeyVisitor;

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Key, E> {
        Ok(Key(v))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Key, E> {
        Ok(Key(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
        Ok(Key("null".into()))
    }
}

// ---- JSON: positions from a second scan ----

/// Positions of every top-level value of a JSON stream that `serde_json` accepted.
/// `None` if the scanner disagrees with the text (it then gives up rather than guess).
pub(crate) fn json_nodes(text: &str) -> Option<Vec<Node>> {
    let b = text.as_bytes();
    let lines = LineIndex::new(text);
    let mut out = Vec::new();
    // Open collections: position, children so far, and for a mapping the pending key.
    enum Open {
        Seq(Pos, Vec<Node>),
        Map(Pos, Vec<Entry>, Option<(String, Pos)>),
    }
    let mut stack: Vec<Open> = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n' | b',' | b':') {
            i += 1;
        }
        if i >= b.len() {
            return stack.is_empty().then_some(out);
        }
        let pos = lines.pos(text, i);
        // A string in key position is a key, not a value.
        if let Some(Open::Map(_, _, key @ None)) = stack.last_mut()
            && b[i] == b'"'
        {
            let end = string_end(b, i)?;
            *key = Some((serde_json::from_str(text.get(i..end)?).ok()?, pos));
            i = end;
            continue;
        }
        let node = match b[i] {
            b'{' => {
                stack.push(Open::Map(pos, Vec::new(), None));
                i += 1;
                None
            }
            b'[' => {
                stack.push(Open::Seq(pos, Vec::new()));
                i += 1;
                None
            }
            b'}' | b']' => {
                i += 1;
                Some(match stack.pop()? {
                    Open::Seq(pos, items) => Node {
                        pos,
                        shape: Shape::Seq(items),
                    },
                    Open::Map(pos, entries, _) => Node {
                        pos,
                        shape: Shape::Map(entries),
                    },
                })
            }
            b'"' => {
                i = string_end(b, i)?;
                Some(Node::scalar(pos))
            }
            _ => {
                while i < b.len()
                    && !matches!(b[i], b' ' | b'\t' | b'\r' | b'\n' | b',' | b']' | b'}')
                {
                    i += 1;
                }
                Some(Node::scalar(pos))
            }
        };
        let Some(node) = node else { continue };
        match stack.last_mut() {
            None => out.push(node),
            Some(Open::Seq(_, items)) => items.push(node),
            Some(Open::Map(_, entries, key)) => {
                let (key, key_pos) = key.take()?;
                entries.push(Entry {
                    key,
                    key_pos,
                    value: node,
                });
            }
        }
    }
}

/// Index just past the closing quote of the string starting at `start`.
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Byte offsets of line starts, to turn an offset into a line and column.
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex(starts)
    }

    fn pos(&self, text: &str, offset: usize) -> Pos {
        let line = self.0.partition_point(|&s| s <= offset).max(1);
        let start = self.0.get(line - 1).copied().unwrap_or(0);
        let column = text.get(start..offset).map_or(0, |s| s.chars().count()) + 1;
        Pos { line, column }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> (Value, Node) {
        let raw: Spanned<Raw> = serde_saphyr::from_str(text).unwrap();
        split(raw)
    }

    #[test]
    fn yaml_positions_follow_the_path() {
        let (value, node) = yaml(
            "kind: VirtualMachineInstance\nspec:\n  domain:\n    devices:\n      interfaces:\n      - name: a\n        ports: [{port: http}]\n",
        );
        assert_eq!(
            value["spec"]["domain"]["devices"]["interfaces"][0]["name"],
            "a"
        );
        let at = |p| node.locate(p);
        assert_eq!(at("kind"), Pos { line: 1, column: 7 });
        assert_eq!(at("spec"), Pos { line: 2, column: 1 });
        assert_eq!(
            at("spec.domain.devices.interfaces[0].ports[0].port"),
            Pos {
                line: 7,
                column: 24
            }
        );
        // A field the defaults added: the deepest node that exists.
        assert_eq!(
            node.locate_at("spec.domain.devices.interfaces[0].model"),
            (Pos { line: 6, column: 9 }, false)
        );
    }

    #[test]
    fn dotted_keys_are_found() {
        let (_, node) = yaml("metadata:\n  annotations:\n    k8s.v1.cni.cncf.io/networks: x\n");
        assert_eq!(
            node.locate("metadata.annotations.k8s.v1.cni.cncf.io/networks"),
            Pos {
                line: 3,
                column: 34
            }
        );
    }

    #[test]
    fn json_positions_match_the_text() {
        let text = "{\"a\": [1, {\"b\": \"x\\\"y\"}],\n \"c\": true}\n{\"d\": {}}";
        let nodes = json_nodes(text).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(
            nodes[0].locate("a[1].b"),
            Pos {
                line: 1,
                column: 17
            }
        );
        assert_eq!(nodes[0].locate("c"), Pos { line: 2, column: 7 });
        assert_eq!(nodes[1].locate("d"), Pos { line: 3, column: 2 });
    }

    #[test]
    fn snippet_puts_a_caret_under_the_column() {
        assert_eq!(
            snippet("a: 1\nbb: [x]\n", Pos { line: 2, column: 6 }),
            "     2 | bb: [x]\n       |      ^"
        );
        assert_eq!(snippet("a", Pos::default()), "");
    }
}
