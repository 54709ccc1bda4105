//! Field paths and values printed the way the apiserver prints them
//! (`spec.containers[0].securityContext`, `Invalid value: "x": ...`).

use std::fmt;

use serde_yaml::Value;

/// The path of a field inside one YAML document, e.g.
/// `spec.template.spec.containers[1].securityContext.runAsNonRoot`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath(String);

impl FieldPath {
    /// The document itself.
    pub(crate) fn root() -> FieldPath {
        FieldPath(String::new())
    }

    pub(crate) fn child(&self, name: &str) -> FieldPath {
        if self.0.is_empty() {
            FieldPath(name.to_string())
        } else {
            FieldPath(format!("{}.{name}", self.0))
        }
    }

    /// Chained [`FieldPath::child`] calls.
    pub(crate) fn children(&self, names: &[&str]) -> FieldPath {
        names
            .iter()
            .fold(self.clone(), |path, name| path.child(name))
    }

    pub(crate) fn index(&self, index: usize) -> FieldPath {
        FieldPath(format!("{}[{index}]", self.0))
    }

    /// A map entry, as the apiserver writes it: `metadata.annotations[example.com/key]`.
    pub(crate) fn key(&self, key: &str) -> FieldPath {
        FieldPath(format!("{}[{key}]", self.0))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => go_quote(s),
        Value::Sequence(_) => go_quote("array"),
        Value::Mapping(_) => go_quote("object"),
        Value::Tagged(tagged) => show_value(&tagged.value),
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
            invalid(show_value(&Value::String(String::new())), "empty"),
            r#"Invalid value: "": empty"#
        );
    }
}
