//! Annotation keys the engine reads (§2, §4, §5, §7).

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
