//! §7's one exception to the host's namespaces: a pod that opts in with
//! `hostprocess.io/network: pod` runs in the network namespace containerd's CRI made for it
//! (and ran CNI in). Everything else (PID, filesystem, accounts, the volume) stays the host's.

use std::path::PathBuf;

use crate::annotations::NETWORK;
use crate::error::{Error, Result};
use crate::spec::Spec;

/// The value of [`NETWORK`] that opts in.
pub const POD: &str = "pod";
/// The value of [`NETWORK`] that says what no annotation means.
pub const HOST: &str = "host";

/// The network namespace every process of the container joins: `None` is the host's. Without
/// the opt-in, the spec's namespaces are ignored as every other isolation setting is.
pub fn pod_network(spec: &Spec) -> Result<Option<PathBuf>> {
    match spec.annotation(NETWORK) {
        None | Some(HOST) => Ok(None),
        Some(POD) => match spec.network_namespace() {
            // A host-network pod with the annotation: nothing to join.
            None => Ok(None),
            Some(None) => Err(Error::Spec(format!(
                "annotation {NETWORK}={POD:?}: the spec asks for a new network namespace, but a \
                 HostProcess container only joins its pod's; give the namespace's path in \
                 linux.namespaces (containerd's CRI does)"
            ))),
            Some(Some(path)) => {
                // A path of `linux.namespaces`: read the Linux way whatever the platform
                // planning it (a Windows build reads `C:\…` as absolute, `/…` not).
                if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
                    return Err(Error::Spec(format!(
                        "annotation {NETWORK}={POD:?}: the network namespace path {path:?} must \
                         be absolute, without '..'"
                    )));
                }
                Ok(Some(PathBuf::from(path)))
            }
        },
        Some(other) => Err(Error::Spec(format!(
            "annotation {NETWORK}={other:?}: expected {POD:?} (the pod's network namespace) or \
             {HOST:?} (the host's, the default)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Linux;

    fn spec(annotation: Option<&str>, namespaces: serde_json::Value) -> Spec {
        let mut spec = Spec {
            linux: Some(Linux {
                namespaces: serde_json::from_value(namespaces).unwrap(),
                ..Linux::default()
            }),
            ..Spec::default()
        };
        if let Some(value) = annotation {
            spec.annotations.insert(NETWORK.into(), value.into());
        }
        spec
    }

    const CRI_POD: &str = "/var/run/netns/cni-0b3c";

    fn cri_namespaces() -> serde_json::Value {
        serde_json::json!([{"type": "pid"}, {"type": "network", "path": CRI_POD}, {"type": "ipc"}])
    }

    #[test]
    fn the_pods_network_namespace_is_taken_only_with_the_annotation() {
        let joined = pod_network(&spec(Some("pod"), cri_namespaces())).unwrap();
        assert_eq!(joined, Some(PathBuf::from(CRI_POD)));
        for annotation in [None, Some("host")] {
            assert_eq!(
                pod_network(&spec(annotation, cri_namespaces())).unwrap(),
                None,
                "{annotation:?}"
            );
        }
    }

    #[test]
    fn a_host_network_pod_with_the_annotation_stays_in_the_hosts() {
        let none = serde_json::json!([{"type": "pid"}, {"type": "ipc"}]);
        assert_eq!(pod_network(&spec(Some("pod"), none)).unwrap(), None);
        let mut no_linux = spec(Some("pod"), serde_json::json!([]));
        no_linux.linux = None;
        assert_eq!(pod_network(&no_linux).unwrap(), None);
    }

    #[test]
    fn a_new_namespace_a_relative_path_or_another_value_is_refused() {
        let new = spec(Some("pod"), serde_json::json!([{"type": "network"}]));
        let message = pod_network(&new).unwrap_err().to_string();
        assert!(
            message.contains("asks for a new network namespace"),
            "{message}"
        );
        for path in ["netns/cni-1", "/var/run/netns/../cni-1"] {
            let bad = spec(
                Some("pod"),
                serde_json::json!([{"type": "network", "path": path}]),
            );
            let message = pod_network(&bad).unwrap_err().to_string();
            assert!(message.contains("must be absolute"), "{message}");
        }
        let other = spec(Some("Pod"), cri_namespaces());
        let message = pod_network(&other).unwrap_err().to_string();
        assert!(
            message.contains(r#"annotation hostprocess.io/network="Pod": expected "pod""#),
            "{message}"
        );
    }
}
