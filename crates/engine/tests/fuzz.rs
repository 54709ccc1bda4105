//! Fuzz tests on the stable toolchain (proptest): whatever a bundle's `config.json` or a
//! mount table holds, the spec reader, the planner, the account-name rules and the mountinfo
//! reader answer with a value or a clear error, never a panic. Bounded to a few seconds; the
//! inputs that once failed are kept in `fuzz.proptest-regressions` beside this file and
//! replayed first, and the
//! corpora below always run.

use std::path::Path;

use hostprocess_engine::annotations;
use hostprocess_engine::plan::account::{parse_run_as_user_name, AccountError};
use hostprocess_engine::plan::run_as_user_name::run_as_user_name_errors;
use hostprocess_engine::plan::{plan, PlanOptions};
use hostprocess_engine::spec::{example_spec, Spec};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// Words the spec reader and the planner give meaning to, and their edge cases.
const WORDS: &[&str] = &[
    "",
    "/",
    ".",
    "..",
    "/hpc",
    "/a/../b",
    "rootfs",
    "bind",
    "rbind",
    "ro",
    "rshared",
    "rslave",
    "rprivate",
    "proc",
    "tmpfs",
    "symlink",
    "true",
    "false",
    "TRUE",
    "-1",
    "0",
    "18446744073709551615",
    "9223372036854775808",
    "1e400",
    "$CONTAINER_SANDBOX_MOUNT_POINT/bin",
    "${CONTAINER_SANDBOX_MOUNT_POINT}",
    "%CONTAINER_SANDBOX_MOUNT_POINT%",
    "$env:CONTAINER_SANDBOX_MOUNT_POINT",
    "NT AUTHORITY\\SYSTEM",
    "NT AUTHORITY\\Local service",
    "NetworkService",
    ".\\user",
    "a\\b\\c",
    "\\\\.\\pipe\\x",
    "slice:prefix:name",
    "a-b-c.slice:cri:x",
    "PATH=/usr/bin",
    "KEY",
    "=",
    "RLIMIT_NOFILE",
    "\u{0}",
    "é\u{85}",
];

const KEYS: &[&str] = &[
    "ociVersion",
    "root",
    "path",
    "readonly",
    "mounts",
    "destination",
    "type",
    "source",
    "options",
    "process",
    "terminal",
    "consoleSize",
    "height",
    "width",
    "user",
    "uid",
    "gid",
    "additionalGids",
    "username",
    "args",
    "commandLine",
    "env",
    "cwd",
    "rlimits",
    "hard",
    "soft",
    "noNewPrivileges",
    "annotations",
    "linux",
    "resources",
    "memory",
    "limit",
    "swap",
    "cpu",
    "shares",
    "quota",
    "period",
    "cpus",
    "mems",
    "count",
    "maximum",
    "pids",
    "blockIO",
    "cgroupsPath",
    "windows",
    "storage",
    "iops",
    "bps",
    "hostname",
];

const ANNOTATIONS: &[&str] = &[
    annotations::HOSTPROCESS_CONTAINER,
    annotations::INHERIT_USER,
    annotations::ROOTFS_LOCATION,
    annotations::VOLUME_LAYOUT,
    annotations::RUN_AS_USER,
    annotations::GRACE_PERIOD,
    annotations::MEMORY_SIZE_MB,
    annotations::PROCESSOR_COUNT,
    annotations::PROCESSOR_LIMIT,
    annotations::PROCESSOR_WEIGHT,
    annotations::STORAGE_BANDWIDTH_MAXIMUM,
    annotations::STORAGE_IOPS_MAXIMUM,
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(WORDS).prop_map(String::from),
        1 => "\\PC{0,24}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1.0e12f64..1.0e12).prop_map(Value::from),
        word().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![prop::sample::select(KEYS).prop_map(String::from), word()],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Every JSON pointer of `value`, the root included.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                pointers(child, format!("{at}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// A valid HostProcess spec with some of its values replaced and some annotations set: inputs
/// the reader accepts, so that the planner sees them.
fn mutated_spec() -> impl Strategy<Value = Value> {
    let mutations = prop::collection::vec((any::<prop::sample::Index>(), json_value()), 0..4);
    let annotations = prop::collection::btree_map(
        prop::sample::select(ANNOTATIONS).prop_map(String::from),
        word(),
        0..4,
    );
    (mutations, annotations).prop_map(|(mutations, annotations)| {
        let mut spec =
            serde_json::to_value(example_spec(vec!["/bin/sh".into()])).unwrap_or(Value::Null);
        for (index, replacement) in mutations {
            let mut all = Vec::new();
            pointers(&spec, String::new(), &mut all);
            let pointer = index.get(&all).clone();
            if let Some(slot) = spec.pointer_mut(&pointer) {
                *slot = replacement;
            }
        }
        if let Some(map) = spec.as_object_mut() {
            let set: Map<String, Value> = annotations
                .into_iter()
                .map(|(k, v)| (k, Value::from(v)))
                .collect();
            map.insert("annotations".into(), Value::Object(set));
        }
        spec
    })
}

/// The property: read, then plan; any refusal is an error with a message.
fn read_and_plan(text: &[u8]) {
    match Spec::parse(text) {
        Err(reason) => assert!(!reason.is_empty()),
        Ok(spec) => {
            let options = PlanOptions::new("/run/hostprocess-fuzz");
            let bundle = Path::new("/nonexistent/hostprocess-fuzz-bundle");
            if let Err(error) = plan("fuzz-1", bundle, &spec, &options, None) {
                assert!(!error.to_string().is_empty());
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_json_is_read_and_planned_or_refused_clearly(value in json_value()) {
        read_and_plan(&serde_json::to_vec(&value).unwrap_or_default());
    }

    #[test]
    fn a_mutated_spec_is_planned_or_refused_clearly(value in mutated_spec()) {
        read_and_plan(&serde_json::to_vec(&value).unwrap_or_default());
    }

    #[test]
    fn any_bytes_are_read_or_refused_clearly(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        read_and_plan(&bytes);
    }

    #[test]
    fn account_names_are_accepted_exactly_when_no_rule_is_broken(
        name in prop_oneof![
            prop::sample::select(WORDS).prop_map(String::from),
            "[a-zA-Z0-9 .\\\\@\"/:;|=,+*?<>\\[\\]-]{0,120}",
            "\\PC{0,30}",
            ("[A-Za-z0-9.-]{0,300}", "[A-Za-z .]{0,110}").prop_map(|(d, u)| format!("{d}\\{u}")),
        ]
    ) {
        let checked = name.strip_prefix(".\\").unwrap_or(&name);
        let errors = run_as_user_name_errors(checked);
        match parse_run_as_user_name(&name) {
            Ok(account) => {
                prop_assert!(errors.is_empty(), "{name:?} accepted despite {errors:?}");
                let rebuilt = match &account.domain {
                    Some(domain) => format!("{domain}\\{}", account.user),
                    None => account.user.clone(),
                };
                prop_assert_eq!(rebuilt, name.clone());
                prop_assert!(!account.user.is_empty() && !account.user.contains('\\'));
                prop_assert!(account.user.chars().count() <= 104, "{name:?}");
            }
            Err(AccountError::InvalidName { message, .. }) => {
                prop_assert!(!errors.is_empty());
                prop_assert_eq!(message, errors[0].message());
            }
            Err(other) => prop_assert!(false, "{name:?}: unexpected {other:?}"),
        }
    }

}

/// The mount table's reader, and the cgroup layout read from it.
mod mountinfo {
    use hostprocess_engine::sys::linuxlogic::cgroup::layout::{Kind, Layout};
    use hostprocess_engine::sys::linuxlogic::mountinfo::{escape, parse, unescape};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(super::config())]

        #[test]
        fn any_mount_table_reads_without_panic_and_keeps_only_cgroup_mounts(
            lines in prop::collection::vec(mountinfo_line(), 0..12)
        ) {
            let text = lines.join("\n");
            let layout = Layout::from_mountinfo(&text);
            let mounts = parse(&text);
            let of_type = |fstype: &str| -> Vec<&std::path::Path> {
                mounts
                    .iter()
                    .filter(|m| m.fs_type == fstype)
                    .map(|m| m.mount_point.as_path())
                    .collect()
            };
            for (_, point) in layout.v1() {
                prop_assert!(
                    of_type("cgroup").contains(&point.as_path()),
                    "{} does not come from a cgroup line of {text:?}", point.display()
                );
            }
            if layout.kind() != Kind::V1 {
                prop_assert!(
                    !of_type("cgroup2").is_empty(),
                    "a v2 tree without a cgroup2 line in {text:?}"
                );
            }
        }

        #[test]
        fn a_mount_point_reads_back_as_the_path_the_kernel_escaped(
            point in "/[ -~\t\n]{0,30}"
        ) {
            let line = format!("30 25 0:26 / {} rw shared:4 - tmpfs tmpfs rw", escape(&point));
            let mounts = parse(&line);
            prop_assert_eq!(mounts.len(), 1, "{:?}", line);
            prop_assert_eq!(mounts[0].mount_point.to_str(), Some(point.as_str()));
            prop_assert_eq!(unescape(&escape(&point)), point);
        }
    }

    /// A line of /proc/self/mountinfo, well-formed or broken.
    fn mountinfo_line() -> impl Strategy<Value = String> {
        let fstype = prop::sample::select(vec!["cgroup", "cgroup2", "tmpfs", "overlay", "", "-"]);
        let options = prop::sample::select(vec![
            "rw,memory",
            "rw,cpu,cpuacct",
            "rw,pids",
            "rw,name=systemd",
            "rw,nsdelegate",
            "",
            ",,,",
        ]);
        let point = prop_oneof![
            prop::sample::select(vec![
                "/sys/fs/cgroup",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/unified",
                "/"
            ])
            .prop_map(String::from),
            "[/a-z\\\\0-9]{0,20}",
        ];
        prop_oneof![
            4 => (point, fstype, options).prop_map(|(point, fstype, options)| {
                format!("30 25 0:26 / {point} rw,nosuid shared:4 - {fstype} {fstype} {options}")
            }),
            1 => "\\PC{0,60}",
            1 => "[0-9 /a-z:-]{0,60}",
        ]
    }

    #[test]
    fn the_corpus_reads() {
        for text in [
            "",
            " - ",
            "x - cgroup",
            "1 2 3 4 5 - cgroup",
            "- cgroup cgroup rw,memory",
        ] {
            let _ = Layout::from_mountinfo(text);
            let _ = parse(text);
        }
    }
}

/// Inputs that once broke a reader like these (or nearly did); they always run.
#[test]
fn the_corpus_reads_or_is_refused_clearly() {
    let specs: &[&str] = &[
        "",
        "null",
        "[]",
        "{}",
        r#"{"ociVersion": "1.0.2"}"#,
        r#"{"ociVersion": "1.0.2", "root": {"path": ""}, "process": {"args": [], "cwd": ""}}"#,
        r#"{"ociVersion": "1.0.2", "root": {"path": "r"}, "process": {"args": ["x"], "cwd": "/"},
            "annotations": {"hostprocess.io/grace-period-seconds": "18446744073709551615"}}"#,
        r#"{"ociVersion": "1.0.2", "root": {"path": "r"}, "process": {"args": ["x"], "cwd": "/"},
            "linux": {"resources": {"memory": {"limit": -9223372036854775808}, "cpu": {"quota": -1, "period": 0}}}}"#,
        r#"{"ociVersion": "1.0.2", "root": {"path": "r"}, "process": {"args": ["x"], "cwd": "/"},
            "windows": {"resources": {"cpu": {"count": 0, "maximum": 0, "shares": 0}}}}"#,
        r#"{"ociVersion": "1.0.2", "root": {"path": "r"}, "process": {"args": ["x"], "cwd": "/"},
            "mounts": [{"destination": "../../etc", "type": "bind", "source": "/", "options": ["rbind"]}]}"#,
        r#"{"ociVersion": "1.0.2", "root": {"path": "r"}, "process": {"args": ["x"], "cwd": "/"},
            "annotations": {"io.microsoft.container.processor.count": "99999999999999999999"}}"#,
    ];
    for text in specs {
        read_and_plan(text.as_bytes());
    }
    for name in [
        "",
        ".",
        "\\",
        ".\\",
        "a\\",
        "\\a",
        "..\\..",
        &"a".repeat(105),
        &"d".repeat(300),
    ] {
        let _ = parse_run_as_user_name(name);
    }
}
