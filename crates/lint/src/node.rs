//! Typed reads of a YAML document: each value comes with its field path, and a value of the
//! wrong type is reported (the apiserver would refuse to decode it) and then treated as unset.

use serde_yaml::{Mapping, Value};

use crate::field::{invalid, show_value, FieldPath};
use crate::report::Report;

/// A value of a document and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Node<'a> {
    value: &'a Value,
    path: FieldPath,
}

impl<'a> Node<'a> {
    pub(crate) fn new(value: &'a Value, path: FieldPath) -> Node<'a> {
        Node { value, path }
    }

    pub(crate) fn value(&self) -> &'a Value {
        self.value
    }

    pub(crate) fn path(&self) -> &FieldPath {
        &self.path
    }

    /// The field `key` of this object; `None` when it is absent or `null`.
    pub(crate) fn get(&self, key: &str, report: &mut Report) -> Option<Node<'a>> {
        let value = self.mapping(report)?.get(key)?;
        (!value.is_null()).then(|| Node::new(value, self.path.child(key)))
    }

    /// [`Node::get`] down several levels.
    pub(crate) fn get_path(&self, keys: &[&str], report: &mut Report) -> Option<Node<'a>> {
        keys.iter()
            .try_fold(self.clone(), |node, key| node.get(key, report))
    }

    /// The entry `key` of this map (labels, annotations): its path is `map[key]`.
    pub(crate) fn entry(&self, key: &str, report: &mut Report) -> Option<Node<'a>> {
        let value = self.mapping(report)?.get(key)?;
        (!value.is_null()).then(|| Node::new(value, self.path.key(key)))
    }

    pub(crate) fn mapping(&self, report: &mut Report) -> Option<&'a Mapping> {
        match self.value {
            Value::Mapping(mapping) => Some(mapping),
            _ => {
                self.wrong_type("object", "", report);
                None
            }
        }
    }

    /// The elements of this list.
    pub(crate) fn items(&self, report: &mut Report) -> Vec<Node<'a>> {
        match self.value {
            Value::Sequence(items) => items
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
        match self.value {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.as_str() {
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
        match self.value {
            Value::String(s) => Some(s.as_str()),
            Value::Bool(_) | Value::Number(_) => {
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
            &self.path,
            invalid(
                show_value(self.value),
                format!("must be of type {expected}{hint}"),
            ),
        );
    }
}
