//! YAML documents read with the position of every value, so that findings point at a line and
//! column. The stream is cut into documents at `---` lines as kubectl cuts it, so a malformed
//! document does not hide the ones after it; scalars resolve by YAML 1.2's core schema.

use serde::Serialize;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A place in a file: line and column, both from 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One value of a document and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Value {
    pub(crate) data: Data,
    pub(crate) at: Position,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Data {
    Null,
    Bool(bool),
    /// As written, or in decimal for an integer written in another base.
    Number(String),
    String(String),
    Sequence(Vec<Value>),
    Mapping(Vec<Entry>),
}

/// A key of a mapping (scalar keys only, as Kubernetes objects have) and its value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    /// Where the key is: the place a finding about this field points at.
    pub(crate) at: Position,
    pub(crate) value: Value,
}

impl Value {
    pub(crate) fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.data {
            Data::Mapping(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.entry(key).map(|e| &e.value)
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.data {
            Data::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        self.data == Data::Null
    }

    /// How many values this one holds, itself included.
    fn weight(&self) -> usize {
        1 + match &self.data {
            Data::Sequence(items) => items.iter().map(Value::weight).sum(),
            Data::Mapping(entries) => entries.iter().map(|e| e.value.weight()).sum(),
            _ => 0,
        }
    }
}

/// Why a document could not be read, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) at: Position,
    pub(crate) reason: String,
}

/// One document of a stream: its position in the stream (from 1; empty documents count) and
/// its root value (`Null` when empty), or why it could not be read.
pub(crate) struct Document {
    pub(crate) index: usize,
    pub(crate) root: Result<Value, SyntaxError>,
}

/// Nesting deeper than this is refused (no Kubernetes object comes near it).
const MAX_DEPTH: usize = 1000;
/// Aliases may not expand a document past this many values (the "billion laughs").
const MAX_VALUES: usize = 1_000_000;

/// Every document of `text`.
pub(crate) fn documents(text: &str) -> Vec<Document> {
    let mut documents = Vec::new();
    for (first_line, chunk) in chunks(text) {
        let mut builder = Builder::new(first_line);
        let result = Parser::new_from_str(chunk).load(&mut builder, true);
        let mut roots = std::mem::take(&mut builder.documents);
        if let Err(error) = result {
            let error = SyntaxError {
                at: builder.position(error.marker()),
                reason: error.info().to_string(),
            };
            let mut error = builder.error.unwrap_or(error);
            error.at = within(chunk, first_line, error.at);
            roots.push(Err(error));
        }
        for root in roots {
            documents.push(Document {
                index: documents.len() + 1,
                root,
            });
        }
    }
    documents
}

/// `at` moved back inside its piece of text (which starts after `first_line` lines): the
/// scanner reports an error at the end of the input past the last character, on the next
/// line, which is the next document's separator or no line at all.
fn within(chunk: &str, first_line: usize, at: Position) -> Position {
    let lines: Vec<&str> = chunk
        .strip_suffix('\n')
        .unwrap_or(chunk)
        .split('\n')
        .collect();
    let relative = at.line.saturating_sub(first_line);
    let line = relative.clamp(1, lines.len());
    let width = lines
        .get(line - 1)
        .map_or(0, |l| l.trim_end_matches('\r').chars().count());
    let column = if line < relative {
        width + 1
    } else {
        at.column.clamp(1, width + 1)
    };
    Position {
        line: first_line + line,
        column,
    }
}

/// The text cut before each separator line (`---`, alone or before a comment), as
/// Kubernetes' YAML reader cuts it; each piece with the number of lines before it. A piece
/// after the first begins with its separator, so that the parser counts it as a document even
/// when it is empty.
fn chunks(text: &str) -> Vec<(usize, &str)> {
    let mut chunks = Vec::new();
    let (mut start, mut start_line, mut offset) = (0, 0, 0);
    for (line_number, line) in text.split_inclusive('\n').enumerate() {
        if is_separator(line) && line_number > 0 {
            chunks.push((start_line, &text[start..offset]));
            (start, start_line) = (offset, line_number);
        }
        offset += line.len();
    }
    chunks.push((start_line, &text[start..]));
    chunks
}

fn is_separator(line: &str) -> bool {
    line.strip_prefix("---").is_some_and(|rest| {
        let rest = rest.trim();
        rest.is_empty() || rest.starts_with('#')
    })
}

/// A collection being read.
enum Frame {
    Sequence {
        at: Position,
        anchor: usize,
        items: Vec<Value>,
    },
    Mapping {
        at: Position,
        anchor: usize,
        entries: Vec<Entry>,
        /// Values of `<<` keys, merged when the mapping ends.
        merges: Vec<Value>,
        /// The key read, waiting for its value; `None` for a merge key.
        key: Option<Option<(String, Position)>>,
    },
}

/// Builds the values of the documents of one piece from the parser's events.
struct Builder {
    first_line: usize,
    documents: Vec<Result<Value, SyntaxError>>,
    stack: Vec<Frame>,
    anchors: Vec<(usize, Value)>,
    root: Option<Value>,
    /// The first error of the current document; its remaining events are ignored.
    error: Option<SyntaxError>,
    values: usize,
}

impl Builder {
    fn new(first_line: usize) -> Builder {
        Builder {
            first_line,
            documents: Vec::new(),
            stack: Vec::new(),
            anchors: Vec::new(),
            root: None,
            error: None,
            values: 0,
        }
    }

    fn position(&self, marker: &Marker) -> Position {
        Position {
            line: self.first_line + marker.line(),
            column: marker.col() + 1,
        }
    }

    fn fail(&mut self, at: Position, reason: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                at,
                reason: reason.into(),
            });
        }
    }

    fn end_document(&mut self) {
        let root = match self.error.take() {
            Some(error) => Err(error),
            None => Ok(self.root.take().unwrap_or(Value {
                data: Data::Null,
                at: Position::default(),
            })),
        };
        self.documents.push(root);
        self.stack.clear();
        self.anchors.clear();
        self.root = None;
        self.values = 0;
    }

    fn open(&mut self, frame: Frame, at: Position) {
        if self.key_expected() {
            self.fail(at, "a mapping key must be a scalar");
        } else if self.stack.len() >= MAX_DEPTH {
            self.fail(at, format!("nested deeper than {MAX_DEPTH} levels"));
        } else {
            self.stack.push(frame);
        }
    }

    fn key_expected(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Mapping { key: None, .. }))
    }

    /// Adds a finished value to the collection being read, or makes it the document's root.
    fn add(&mut self, value: Value, anchor: usize) {
        self.values += value.weight();
        if self.values > MAX_VALUES {
            self.fail(
                value.at,
                format!("aliases expand the document past {MAX_VALUES} values"),
            );
            return;
        }
        if anchor > 0 {
            self.anchors.push((anchor, value.clone()));
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Sequence { items, .. }) => items.push(value),
            Some(Frame::Mapping {
                entries,
                merges,
                key,
                ..
            }) => match key.take() {
                None => {
                    let at = value.at;
                    match key_text(&value) {
                        Some(text) if text == "<<" => *key = Some(None),
                        Some(text) => {
                            if entries.iter().any(|e| e.key == text) {
                                self.fail(at, format!("duplicate key {text:?}"));
                            } else {
                                *key = Some(Some((text, at)));
                            }
                        }
                        None => self.fail(at, "a mapping key must be a scalar"),
                    }
                }
                Some(None) => merges.push(value),
                Some(Some((key, at))) => entries.push(Entry { key, at, value }),
            },
        }
    }

    fn alias(&mut self, id: usize, at: Position) {
        match self.anchors.iter().rev().find(|(a, _)| *a == id) {
            Some((_, value)) => {
                let value = value.clone();
                self.add(value, 0);
            }
            None => self.fail(at, "unknown anchor"),
        }
    }

    fn close(&mut self) {
        match self.stack.pop() {
            Some(Frame::Sequence { at, anchor, items }) => self.add(
                Value {
                    data: Data::Sequence(items),
                    at,
                },
                anchor,
            ),
            Some(Frame::Mapping {
                at,
                anchor,
                mut entries,
                merges,
                ..
            }) => {
                for merge in merges {
                    if let Err(reason) = apply_merge(&mut entries, merge) {
                        self.fail(at, reason);
                    }
                }
                // The parser marks a block mapping after its first key: start at that key.
                let at = entries.first().map_or(at, |first| first.at.min(at));
                self.add(
                    Value {
                        data: Data::Mapping(entries),
                        at,
                    },
                    anchor,
                )
            }
            None => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, marker: Marker) {
        let at = self.position(&marker);
        if self.error.is_some() && !matches!(event, Event::DocumentEnd) {
            return;
        }
        match event {
            Event::DocumentEnd => self.end_document(),
            Event::Scalar(text, style, anchor, tag) => {
                let key = self.key_expected();
                let data = if key {
                    Data::String(text)
                } else {
                    resolve(text, style, tag.as_ref())
                };
                self.add(Value { data, at }, anchor);
            }
            Event::SequenceStart(anchor, _) => self.open(
                Frame::Sequence {
                    at,
                    anchor,
                    items: Vec::new(),
                },
                at,
            ),
            Event::MappingStart(anchor, _) => self.open(
                Frame::Mapping {
                    at,
                    anchor,
                    entries: Vec::new(),
                    merges: Vec::new(),
                    key: None,
                },
                at,
            ),
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            Event::Alias(id) => self.alias(id, at),
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
        }
    }
}

/// The text of a scalar used as a key; `None` for a collection.
fn key_text(value: &Value) -> Option<String> {
    Some(match &value.data {
        Data::Null => "null".to_string(),
        Data::Bool(b) => b.to_string(),
        Data::Number(n) | Data::String(n) => n.clone(),
        Data::Sequence(_) | Data::Mapping(_) => return None,
    })
}

/// Adds the entries of a `<<` value that the mapping does not set itself (YAML merge keys:
/// explicit keys win, then earlier merged mappings).
fn apply_merge(entries: &mut Vec<Entry>, merge: Value) -> Result<(), &'static str> {
    let mappings = match merge.data {
        Data::Mapping(merged) => vec![merged],
        Data::Sequence(items) => items
            .into_iter()
            .map(|item| match item.data {
                Data::Mapping(merged) => Ok(merged),
                _ => Err(()),
            })
            .collect::<Result<_, _>>()
            .map_err(|()| "a merge key (<<) takes a mapping or a list of mappings")?,
        _ => return Err("a merge key (<<) takes a mapping or a list of mappings"),
    };
    for merged in mappings {
        for entry in merged {
            if !entries.iter().any(|e| e.key == entry.key) {
                entries.push(entry);
            }
        }
    }
    Ok(())
}

/// A scalar's value by YAML 1.2's core schema (Kubernetes' YAML reader resolves the same
/// way); quoted and block scalars, and `!!str`, are strings.
fn resolve(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Data {
    let core = tag.and_then(|t| {
        (t.handle == "!!" || t.handle == "tag:yaml.org,2002:").then_some(t.suffix.as_str())
    });
    if style != TScalarStyle::Plain || core == Some("str") {
        return Data::String(text);
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Data::Null,
        "true" | "True" | "TRUE" => return Data::Bool(true),
        "false" | "False" | "FALSE" => return Data::Bool(false),
        _ => {}
    }
    if let Some(number) = integer(&text) {
        return Data::Number(number);
    }
    if is_float(&text) {
        return Data::Number(text);
    }
    Data::String(text)
}

fn integer(text: &str) -> Option<String> {
    let radix = |prefix: &str, radix: u32| {
        let digits = text.strip_prefix(prefix)?;
        u64::from_str_radix(digits, radix)
            .ok()
            .map(|n| n.to_string())
    };
    radix("0x", 16).or_else(|| radix("0o", 8)).or_else(|| {
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.strip_prefix('+').unwrap_or(text).to_string())
    })
}

fn is_float(text: &str) -> bool {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(text, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (unsigned, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => {
            digits(whole) && digits(fraction) && !(whole.is_empty() && fraction.is_empty())
        }
        None => !mantissa.is_empty() && digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(text: &str) -> Vec<Result<Value, SyntaxError>> {
        documents(text).into_iter().map(|d| d.root).collect()
    }

    fn only(text: &str) -> Value {
        match roots(text).as_slice() {
            [Ok(value)] => value.clone(),
            other => panic!("{text:?}: {other:?}"),
        }
    }

    fn at(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    #[test]
    fn keys_and_values_carry_their_line_and_column() {
        let root = only("kind: Pod\nspec:\n  containers:\n  - name: a\n    image: x\n");
        assert_eq!(root.entry("kind").map(|e| e.at), Some(at(1, 1)));
        let spec = root.entry("spec").map(|e| (e.at, &e.value));
        let Some((spec_at, spec)) = spec else {
            panic!("{root:?}")
        };
        assert_eq!(spec_at, at(2, 1));
        let containers = spec.get("containers").map(|c| &c.data);
        let Some(Data::Sequence(items)) = containers else {
            panic!("{spec:?}")
        };
        assert_eq!(items[0].at, at(4, 5));
        assert_eq!(items[0].entry("image").map(|e| e.at), Some(at(5, 5)));
    }

    #[test]
    fn positions_count_lines_across_documents() {
        let docs = roots("a: 1\n---\n# c\nb: 2\n---\n\n  c: 3\n");
        let positions: Vec<Option<Position>> = docs
            .iter()
            .map(|d| d.as_ref().ok().and_then(|v| v.entry_at()))
            .collect();
        assert_eq!(
            positions,
            vec![Some(at(1, 1)), Some(at(4, 1)), Some(at(7, 3))]
        );
    }

    impl Value {
        fn entry_at(&self) -> Option<Position> {
            match &self.data {
                Data::Mapping(entries) => entries.first().map(|e| e.at),
                _ => None,
            }
        }
    }

    #[test]
    fn a_bad_document_does_not_hide_the_next_ones() {
        let docs = roots("kind: Pod\n---\nkind: [Pod\n---\nkind: Service\n");
        assert_eq!(docs.len(), 3);
        assert!(docs[0].is_ok() && docs[2].is_ok(), "{docs:?}");
        let Err(error) = &docs[1] else {
            panic!("{docs:?}")
        };
        assert_eq!(error.at, at(3, 11), "{error:?}");
    }

    #[test]
    fn an_error_at_the_end_of_the_input_points_at_its_last_line() {
        let docs = roots("a: 1\n---\nb: 2\ntrue");
        let Some(Err(error)) = docs.last() else {
            panic!("{docs:?}")
        };
        assert_eq!(error.at, at(4, 5));
    }

    #[test]
    fn an_error_at_the_end_of_a_document_points_at_its_last_line_not_the_separator() {
        let docs = roots("a: 1\n---\nb: [1\n---\nc: 3\n");
        let Some(Err(error)) = docs.get(1) else {
            panic!("{docs:?}")
        };
        assert_eq!(error.at, at(3, 6));
    }

    #[test]
    fn empty_documents_count() {
        assert_eq!(roots("").len(), 0);
        assert_eq!(roots("# only a comment\n").len(), 0);
        assert_eq!(roots("---\n").len(), 1);
        assert_eq!(roots("a: 1\n---\n---\nb: 2\n").len(), 3);
        assert_eq!(roots("--- # first\na: 1\n").len(), 1);
    }

    #[test]
    fn scalars_resolve_by_the_core_schema() {
        let root = only("a: true\nb: yes\nc: '1'\nd: 0x1F\ne: 1.5e3\nf: ~\ng: !!str 12\nh: -7\n");
        let data = |key: &str| root.get(key).map(|v| v.data.clone());
        assert_eq!(data("a"), Some(Data::Bool(true)));
        assert_eq!(data("b"), Some(Data::String("yes".into())));
        assert_eq!(data("c"), Some(Data::String("1".into())));
        assert_eq!(data("d"), Some(Data::Number("31".into())));
        assert_eq!(data("e"), Some(Data::Number("1.5e3".into())));
        assert_eq!(data("f"), Some(Data::Null));
        assert_eq!(data("g"), Some(Data::String("12".into())));
        assert_eq!(data("h"), Some(Data::Number("-7".into())));
    }

    #[test]
    fn duplicate_keys_and_collection_keys_are_errors() {
        for text in ["kind: Pod\nkind: Pod\n", "? [a]\n: b\n", "{[a]: b}\n"] {
            assert!(matches!(roots(text).as_slice(), [Err(_)]), "{text:?}");
        }
    }

    #[test]
    fn merge_keys_fill_in_what_the_mapping_does_not_set() {
        let root = only("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n");
        let m = root.get("m");
        assert_eq!(
            m.and_then(|m| m.get("x")).map(|v| &v.data),
            Some(&Data::Number("1".into()))
        );
        assert_eq!(
            m.and_then(|m| m.get("y")).map(|v| &v.data),
            Some(&Data::Number("3".into()))
        );
    }

    #[test]
    fn aliases_that_expand_without_bound_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        assert!(matches!(roots(&text).as_slice(), [Err(_)]));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(matches!(roots(&text).as_slice(), [Err(_)]));
    }
}
