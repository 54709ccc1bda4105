//! Fuzz tests on the stable toolchain (proptest): whatever text it is given, the linter
//! never panics, and every finding and every error points at a real line and column of it.
//! Bounded to a few seconds; inputs that once failed are kept in `fuzz.proptest-regressions`
//! beside this file and replayed first, and the corpus below always runs.

use std::path::Path;

use hostprocess_lint::{lint_text, LintError, LintOptions, Outcome};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// Every fixture's text: real manifests to mutate.
fn fixtures() -> Vec<String> {
    let mut texts = Vec::new();
    for dir in ["good", "bad"] {
        let dir = Path::new(FIXTURES).join(dir);
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        for path in paths {
            texts.push(
                std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            );
        }
    }
    texts
}

/// Pieces of YAML syntax and of the manifests the rules read.
const PIECES: &[&str] = &[
    "\n",
    "\n---\n",
    "---",
    "...",
    "  ",
    "- ",
    ": ",
    ":",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "<<: *a\n",
    "!!str ",
    "!tag ",
    "? ",
    "|\n  ",
    ">-\n  ",
    "'",
    "\"",
    "#",
    "\t",
    "\\",
    "~",
    "kind: Pod\n",
    "kind: List\nitems:\n",
    "spec:\n",
    "containers:\n",
    "- name: a\n",
    "hostNetwork: ",
    "hostProcess: ",
    "runAsUserName: ",
    "securityContext:\n",
    "windowsOptions:\n",
    "true",
    "yes",
    "1",
    "null",
    "template:\n",
    "metadata:\n",
    "annotations:\n",
];

fn yaml_text() -> impl Strategy<Value = String> {
    let pieces = prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(PIECES).prop_map(String::from),
            1 => "\\PC{0,8}",
        ],
        0..60,
    )
    .prop_map(|pieces| pieces.concat());
    let texts = fixtures();
    let mutated = (
        prop::sample::select(texts),
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                0usize..4,
                prop::sample::select(PIECES),
            ),
            1..6,
        ),
    )
        .prop_map(|(mut text, edits)| {
            for (at, delete, insert) in edits {
                let boundaries: Vec<usize> = (0..=text.len())
                    .filter(|i| text.is_char_boundary(*i))
                    .collect();
                let start = *at.get(&boundaries);
                let end = boundaries
                    .iter()
                    .copied()
                    .filter(|i| *i >= start)
                    .nth(delete)
                    .unwrap_or(start);
                text.replace_range(start..end, insert);
            }
            text
        });
    prop_oneof![pieces, mutated]
}

/// The property: every position is inside the text (a column may be one past a line's end).
fn check_positions(text: &str, outcome: &Outcome) -> Result<(), TestCaseError> {
    let lines: Vec<&str> = text.split('\n').collect();
    let inside = |line: usize, column: usize| {
        line >= 1
            && column >= 1
            && lines
                .get(line - 1)
                .is_some_and(|l| column <= l.chars().count() + 1)
    };
    for finding in &outcome.findings {
        prop_assert!(
            inside(finding.line, finding.column),
            "{finding} is outside the text"
        );
        prop_assert!(finding.doc_index >= 1);
    }
    for error in &outcome.errors {
        match error {
            LintError::Parse { at, doc_index, .. } => {
                prop_assert!(inside(at.line, at.column), "{error} is outside the text");
                prop_assert!(*doc_index >= 1);
            }
            LintError::Read { .. } => prop_assert!(false, "a read error from text: {error}"),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_text_is_linted_without_panic_at_valid_positions(text in yaml_text()) {
        let outcome = lint_text(&text, "fuzz.yaml", &LintOptions::default());
        check_positions(&text, &outcome)?;
    }
}

/// Inputs that once broke a YAML reader (or nearly did); they always run.
#[test]
fn the_corpus_is_linted_at_valid_positions() {
    let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let corpus = [
        "",
        "---",
        "--- |\n---\n",
        "kind: Pod\nspec:\n  hostNetwork: [\n",
        "*unknown\n",
        "a: &x 1\nb: *x\n<<: *x\n",
        "? [a]\n: b\n",
        "kind: Pod\r\nspec: {runtimeClassName: hostprocess, containers: [{name: a}]}\r\n",
        "\u{feff}kind: Pod\nspec: {runtimeClassName: hostprocess, containers: [{name: a}]}\n",
        "kind: Pod\nspec: {runtimeClassName: hostprocess, containers: [{name: é, ä: ü}]}\n",
        "\t- a\n",
        "%YAML 1.2\n---\nkind: Pod\n",
        "kind: Pod\n...\n---\nkind: Pod\n",
        // The scanner placed this error one line past the end.
        "kind: ConfigMap\ndata:\n  x: \"true\"\ntrue",
        &deep,
        &laughs,
    ];
    for text in corpus {
        let outcome = lint_text(text, "corpus.yaml", &LintOptions::default());
        if let Err(e) = check_positions(text, &outcome) {
            panic!("{text:?}: {e}");
        }
    }
}
