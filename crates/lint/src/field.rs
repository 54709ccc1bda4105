//! Field paths and values printed the way the apiserver prints them
//! (`spec.containers[0].securityContext`, `Invalid value: "x": ...`).

use std::fmt;

use crate::yaml::{Data, Position, Value};

/// The path of a field inside one YAML document, e.g.
/// `spec.template.spec.containers[1].securityContext.runAsNonRoot`, and where the field is in
/// the file: the field itself, or for a field that is absent the nearest one around it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath {
    path: String,
    at: Position,
}

impl FieldPath {
    /// The document itself.
    pub(crate) fn root() -> FieldPath {
        FieldPath::default()
    }

    pub(crate) fn child(&self, name: &str) -> FieldPath {
        if self.path.is_empty() {
            self.with(name.to_string())
        } else {
            self.with(format!("{}.{name}", self.path))
        }
    }

    fn with(&self, path: String) -> FieldPath {
        FieldPath { path, at: self.at }
    }

    /// This path, found at `at` in the file.
    pub(crate) fn at(mut self, at: Position) -> FieldPath {
        self.at = at;
        self
    }

    pub(crate) fn position(&self) -> Position {
        self.at
    }

    /// Chained [`FieldPath::child`] calls.
    pub(crate) fn children(&self, names: &[&str]) -> FieldPath {
        names
            .iter()
            .fold(self.clone(), |path, name| path.child(name))
    }

    pub(crate) fn index(&self, index: usize) -> FieldPath {
        self.with(format!("{}[{index}]", self.path))
    }

    /// A map entry, as the apiserver writes it: `metadata.annotations[example.com/key]`.
    pub(crate) fn key(&self, key: &str) -> FieldPath {
        self.with(format!("{}[{key}]", self.path))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

/// `Invalid value: <value>: <detail>`, the body of an apiserver `field.Invalid` error.
pub(crate) fn invalid(value: impl fmt::Display, detail: impl fmt::Display) -> String {
    format!("Invalid value: {value}: {detail}")
}

/// A string quoted as Go's `%q` does, which is how the apiserver shows string values:
/// `"NT AUTHORITY\\SYSTEM"`, `"a\tb"`.
pub(crate) fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{b}' => quoted.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_ascii_control() => {
                quoted.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A scalar shown as the apiserver would show it; collections by their JSON type name.
pub(crate) fn show_value(value: &Value) -> String {
    match &value.data {
        Data::Null => "null".to_string(),
        Data::Bool(b) => b.to_string(),
        Data::Number(n) => n.clone(),
        Data::String(s) => go_quote(s),
        Data::Sequence(_) => go_quote("array"),
        Data::Mapping(_) => go_quote("object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_children_with_dots_and_indexes_with_brackets() {
        let path = FieldPath::root()
            .children(&["spec", "template", "spec", "containers"])
            .index(1)
            .child("securityContext");
        assert_eq!(
            path.to_string(),
            "spec.template.spec.containers[1].securityContext"
        );
    }

    #[test]
    fn map_keys_are_bracketed_without_quotes() {
        let path = FieldPath::root()
            .children(&["metadata", "annotations"])
            .key("hostprocess.io/run-as-user");
        assert_eq!(
            path.as_str(),
            "metadata.annotations[hostprocess.io/run-as-user]"
        );
    }

    #[test]
    fn strings_are_quoted_like_go_percent_q() {
        assert_eq!(
            go_quote(r"NT AUTHORITY\SYSTEM"),
            r#""NT AUTHORITY\\SYSTEM""#
        );
        assert_eq!(go_quote("a\tb\u{1}\u{7f}"), r#""a\tb\x01\x7f""#);
        assert_eq!(go_quote("say \"hi\""), r#""say \"hi\"""#);
        assert_eq!(go_quote("née\u{85}"), r#""née\u0085""#);
    }

    #[test]
    fn invalid_reads_like_field_invalid() {
        assert_eq!(
            invalid(false, "must be true"),
            "Invalid value: false: must be true"
        );
        assert_eq!(
            invalid(
                show_value(&Value {
                    data: Data::String(String::new()),
                    at: Position::default()
                }),
                "empty"
            ),
            r#"Invalid value: "": empty"#
        );
    }
}
