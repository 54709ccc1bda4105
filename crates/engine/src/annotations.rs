//! Annotation keys the engine reads (§2, §4, §5, §7), and the one parser of boolean
//! annotation values.

/// Set by containerd's CRI on HostProcess sandboxes and containers.
pub const HOSTPROCESS_CONTAINER: &str = "microsoft.com/hostprocess-container";
/// `true`: run as the runtime's own account instead of the spec's user.
pub const INHERIT_USER: &str = "microsoft.com/hostprocess-inherit-user";
/// Where the container volume appears (bind layout: the absolute path).
pub const ROOTFS_LOCATION: &str = "microsoft.com/hostprocess-rootfs-location";
/// Our own: `bind` (default) or `symlink`.
pub const VOLUME_LAYOUT: &str = "hostprocess.io/volume-layout";
/// Our own: a Windows-form or Linux account name for pods that cannot carry
/// `windowsOptions.runAsUserName` (Linux pods).
pub const RUN_AS_USER: &str = "hostprocess.io/run-as-user";
/// Our own, on the pod: `run-as-user.hostprocess.io/<container-name>` names one container's
/// account and wins over [`RUN_AS_USER`] for it (the convention Kubernetes used for
/// per-container AppArmor profiles: the kubelet passes pod annotations, not container ones).
pub const RUN_AS_USER_OF_CONTAINER: &str = "run-as-user.hostprocess.io/";
/// Our own, on the pod: `pod` runs every process of the pod's containers in the pod's network
/// namespace (the one containerd's CRI made and ran CNI in), `host` (the default) in the
/// host's (§7).
pub const NETWORK: &str = "hostprocess.io/network";
/// Our own: seconds between SIGTERM and SIGKILL for the rest of the job once init exits.
pub const GRACE_PERIOD: &str = "hostprocess.io/grace-period-seconds";

pub const MEMORY_SIZE_MB: &str = "io.microsoft.container.memory.sizeinmb";
pub const PROCESSOR_COUNT: &str = "io.microsoft.container.processor.count";
pub const PROCESSOR_LIMIT: &str = "io.microsoft.container.processor.limit";
pub const PROCESSOR_WEIGHT: &str = "io.microsoft.container.processor.weight";
pub const STORAGE_BANDWIDTH_MAXIMUM: &str = "io.microsoft.container.storage.qos.bandwidthmaximum";
pub const STORAGE_IOPS_MAXIMUM: &str = "io.microsoft.container.storage.qos.iopsmaximum";

/// CRI annotations used to group a pod's containers in one shim.
pub const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// Set by containerd's CRI on a container: its name in the pod spec.
pub const CRI_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
pub const RUNC_GROUP: &str = "io.containerd.runc.v2.group";

/// How a boolean annotation's value may be spelled. The readers of boolean annotations have
/// accepted different spellings since they were written, and each keeps its own; they are
/// written here, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoolSpelling {
    /// Go's `strconv.ParseBool`, as containerd writes `microsoft.com/hostprocess-container`
    /// (`FormatBool`) and hcsshim reads it: `1 t T TRUE true True` and
    /// `0 f F FALSE false False`. The shim reads the HostProcess value of pods and containers
    /// so.
    Go,
    /// The words `true` and `false`, in any case. The pod linter reads
    /// `microsoft.com/hostprocess-container` so, and the plan reads
    /// `microsoft.com/hostprocess-inherit-user` so (any other value there means `false`).
    Word,
}

/// A boolean annotation whose value is not one of its spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotABool {
    pub key: String,
    pub value: String,
}

impl std::fmt::Display for NotABool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "annotation {}={:?} is not a boolean",
            self.key, self.value
        )
    }
}

impl std::error::Error for NotABool {}

/// Reads the value of the boolean annotation `key` as `spelling` allows.
pub fn parse_bool(key: &str, value: &str, spelling: BoolSpelling) -> Result<bool, NotABool> {
    let parsed = match spelling {
        BoolSpelling::Go => match value {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
            _ => None,
        },
        BoolSpelling::Word if value.eq_ignore_ascii_case("true") => Some(true),
        BoolSpelling::Word if value.eq_ignore_ascii_case("false") => Some(false),
        BoolSpelling::Word => None,
    };
    parsed.ok_or_else(|| NotABool {
        key: key.to_string(),
        value: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(value: &str) -> Result<bool, NotABool> {
        parse_bool(HOSTPROCESS_CONTAINER, value, BoolSpelling::Go)
    }

    fn word(value: &str) -> Result<bool, NotABool> {
        parse_bool(INHERIT_USER, value, BoolSpelling::Word)
    }

    #[test]
    fn go_spellings_are_exactly_strconv_parse_bools() {
        for value in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(go(value), Ok(true), "{value}");
        }
        for value in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(go(value), Ok(false), "{value}");
        }
        for value in ["", "tRuE", "yes", "on", " true", "true ", "2", "FaLsE", "y"] {
            assert!(go(value).is_err(), "{value:?} was read as a boolean");
        }
    }

    #[test]
    fn word_spellings_are_true_and_false_in_any_case() {
        for value in ["true", "True", "TRUE", "tRuE"] {
            assert_eq!(word(value), Ok(true), "{value}");
        }
        for value in ["false", "False", "FALSE", "fAlSe"] {
            assert_eq!(word(value), Ok(false), "{value}");
        }
        for value in ["", "1", "0", "t", "f", "T", "F", "yes", " true", "truee"] {
            assert!(word(value).is_err(), "{value:?} was read as a boolean");
        }
    }

    #[test]
    fn a_value_that_is_not_a_boolean_is_named_with_its_key() {
        let err = go("yes").unwrap_err();
        assert_eq!(
            err.to_string(),
            "annotation microsoft.com/hostprocess-container=\"yes\" is not a boolean"
        );
        assert_eq!(word("1").unwrap_err().key, INHERIT_USER);
    }
}
