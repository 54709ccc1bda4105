//! The shim's `-h`: its usage on stdout and exit 0, as Go's flag package answers (containerd
//! never passes it; a person trying the binary does).

use std::process::Command;

const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-hostprocess-v1");

#[test]
fn help_flags_print_the_usage_and_exit_0() {
    for flag in ["-h", "-help", "--help"] {
        let out = Command::new(SHIM).arg(flag).output().expect("run the shim");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{flag}: {stdout}");
        assert!(
            stdout.starts_with("Usage: containerd-shim-hostprocess-v1 "),
            "{flag}: {stdout}"
        );
        for word in ["start", "delete", "-namespace", "-address", "-version"] {
            assert!(stdout.contains(word), "{flag}: no {word} in {stdout}");
        }
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{flag}");
    }
}
