//! logrus's text format (`time="…" level=warn msg="…"`), which containerd and runc tools read
//! line by line: a quoted value escapes what would end it or the line.

use std::fmt::Write as _;

/// `value` in double quotes, with `"` and `\` escaped and control characters written as Go's
/// `%q` writes them (`\n`, `\t`, `\x1b` …), so one record stays one parsable line.
pub fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_backslashes_and_line_breaks_are_escaped() {
        assert_eq!(quoted("plain"), "\"plain\"");
        assert_eq!(
            quoted("unknown signal \"FOO\""),
            "\"unknown signal \\\"FOO\\\"\""
        );
        assert_eq!(quoted("C:\\x"), "\"C:\\\\x\"");
        assert_eq!(quoted("a\nb\tc\u{1b}"), "\"a\\nb\\tc\\x1b\"");
        assert_eq!(quoted("é"), "\"é\"");
    }
}
