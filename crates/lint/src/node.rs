//! Typed reads of a YAML document: each value comes with its field path, and a value of the
//! wrong type is reported (the apiserver would refuse to decode it) and then treated as unset.

use crate::yaml::{Data, Entry, Value};

use crate::field::{invalid, show_value, FieldPath};
use crate::report::Report;
use crate::rules::Rule;

/// A value of a document and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    value: &'a Value,
    path: FieldPath,
}

impl<'a> Node<'a> {
    /// The value at `path` (the path takes the value's position).
    pub(crate) fn new(value: &'a Value, path: FieldPath) -> Node<'a> {
        Node {
            value,
            path: path.at(value.at),
        }
    }

    pub(crate) fn value(&self) -> &'a Value {
        self.value
    }

    pub(crate) fn path(&self) -> &FieldPath {
        &self.path
    }

    /// The field `key` of this object; `None` when it is absent or `null`.
    pub(crate) fn get(&self, key: &str, report: &mut Report) -> Option<Node<'a>> {
        let entry = self.find(key, report)?;
        (!entry.value.is_null()).then(|| Node::at_key(entry, self.path.child(key)))
    }

    /// An entry's value, located where its key is (where a reader looks for the field).
    fn at_key(entry: &'a Entry, path: FieldPath) -> Node<'a> {
        Node {
            value: &entry.value,
            path: path.at(entry.at),
        }
    }

    fn find(&self, key: &str, report: &mut Report) -> Option<&'a Entry> {
        self.mapping(report)?.iter().find(|e| e.key == key)
    }

    /// [`Node::get`] down several levels.
    pub(crate) fn get_path(&self, keys: &[&str], report: &mut Report) -> Option<Node<'a>> {
        keys.iter()
            .try_fold(self.clone(), |node, key| node.get(key, report))
    }

    /// The entry `key` of this map (labels, annotations): its path is `map[key]`.
    pub(crate) fn entry(&self, key: &str, report: &mut Report) -> Option<Node<'a>> {
        let entry = self.find(key, report)?;
        (!entry.value.is_null()).then(|| Node::at_key(entry, self.path.key(key)))
    }

    pub(crate) fn mapping(&self, report: &mut Report) -> Option<&'a [Entry]> {
        match &self.value.data {
            Data::Mapping(entries) => Some(entries),
            _ => {
                self.wrong_type("object", "", report);
                None
            }
        }
    }

    /// The elements of this list.
    pub(crate) fn items(&self, report: &mut Report) -> Vec<Node<'a>> {
        match &self.value.data {
            Data::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| Node::new(item, self.path.index(i)))
                .collect(),
            _ => {
                self.wrong_type("array", "", report);
                Vec::new()
            }
        }
    }

    /// A boolean. YAML 1.1 plain words (`yes`, `on`, `no`, `off` …) count, as kubectl reads
    /// them; a quoted `"true"` does not.
    pub(crate) fn bool(&self, report: &mut Report) -> Option<bool> {
        match &self.value.data {
            Data::Bool(b) => Some(*b),
            Data::String(s) => match s.as_str() {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
                _ => {
                    self.wrong_type("boolean", " (write it without quotes)", report);
                    None
                }
            },
            _ => {
                self.wrong_type("boolean", "", report);
                None
            }
        }
    }

    pub(crate) fn string(&self, report: &mut Report) -> Option<&'a str> {
        match &self.value.data {
            Data::String(s) => Some(s.as_str()),
            Data::Bool(_) | Data::Number(_) => {
                let hint = format!(" (quote it: \"{}\")", show_value(self.value));
                self.wrong_type("string", &hint, report);
                None
            }
            _ => {
                self.wrong_type("string", "", report);
                None
            }
        }
    }

    fn wrong_type(&self, expected: &str, hint: &str, report: &mut Report) {
        report.error(
            Rule::FieldType,
            &self.path,
            invalid(
                show_value(self.value),
                format!("must be of type {expected}{hint}"),
            ),
        );
    }
}
