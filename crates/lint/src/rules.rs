//! The rules the linter checks, each with a stable id for machine-readable output (SARIF's
//! `ruleId`) and a one-line summary.

/// One rule; findings name the rule they come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    FieldType,
    HostProcessIdentical,
    HostProcessAllContainers,
    HostNetwork,
    RunAsUserName,
    RunAsUserContainer,
    RunAsNonRoot,
    HostProcessAnnotation,
    PodSecurityLevel,
    RuntimeClass,
    AnnotationOnWorkload,
}

impl Rule {
    pub const ALL: [Rule; 11] = [
        Rule::FieldType,
        Rule::HostProcessIdentical,
        Rule::HostProcessAllContainers,
        Rule::HostNetwork,
        Rule::RunAsUserName,
        Rule::RunAsUserContainer,
        Rule::RunAsNonRoot,
        Rule::HostProcessAnnotation,
        Rule::PodSecurityLevel,
        Rule::RuntimeClass,
        Rule::AnnotationOnWorkload,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Rule::FieldType => "field-type",
            Rule::HostProcessIdentical => "host-process-identical",
            Rule::HostProcessAllContainers => "host-process-all-containers",
            Rule::HostNetwork => "host-network",
            Rule::RunAsUserName => "run-as-user-name",
            Rule::RunAsUserContainer => "run-as-user-container",
            Rule::RunAsNonRoot => "run-as-non-root",
            Rule::HostProcessAnnotation => "host-process-annotation",
            Rule::PodSecurityLevel => "pod-security-level",
            Rule::RuntimeClass => "runtime-class",
            Rule::AnnotationOnWorkload => "annotation-on-workload",
        }
    }

    pub fn summary(self) -> &'static str {
        match self {
            Rule::FieldType => "A field has the type the apiserver decodes it as",
            Rule::HostProcessIdentical => {
                "Pod and container hostProcess values are identical where both are set"
            }
            Rule::HostProcessAllContainers => {
                "All containers of a HostProcess pod are HostProcess containers"
            }
            Rule::HostNetwork => "A HostProcess pod sets hostNetwork: true",
            Rule::RunAsUserName => "runAsUserName follows the apiserver's syntax rules",
            Rule::RunAsUserContainer => {
                "run-as-user.hostprocess.io/<name> names a container of the pod"
            }
            Rule::RunAsNonRoot => "A HostProcess container does not set runAsNonRoot: true",
            Rule::HostProcessAnnotation => {
                "microsoft.com/hostprocess-container is \"true\" or \"false\""
            }
            Rule::PodSecurityLevel => "The Pod Security level a HostProcess pod needs",
            Rule::RuntimeClass => "The annotation takes effect only under the HostProcess runtime",
            Rule::AnnotationOnWorkload => "HostProcess annotations belong on the pod template",
        }
    }
}

impl serde::Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}
