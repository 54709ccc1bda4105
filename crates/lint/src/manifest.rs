//! From a YAML document to the pods it describes: the objects in it (items of a `List`
//! included), where each kind keeps its pod template, and the namespaces it declares.

use std::collections::BTreeMap;

use crate::field::FieldPath;
use crate::finding::Finding;
use crate::node::Node;
use crate::pod::{
    lint_pod, NamespacePolicy, PodTemplate, HOSTPROCESS_CONTAINER, POD_SECURITY_ENFORCE,
    RUN_AS_USER, RUN_AS_USER_OF_CONTAINER,
};
use crate::report::{Origin, Report};
use crate::rules::Rule;
use crate::yaml::{Data, Value};
use crate::LintOptions;

/// One Kubernetes object: a whole document, or an item of a `List` in one.
pub(crate) struct Object<'a> {
    pub(crate) doc_index: usize,
    pub(crate) kind: &'a str,
    node: Node<'a>,
}

impl<'a> Object<'a> {
    fn metadata_str(&self, key: &str) -> Option<&'a str> {
        self.node.value().get("metadata")?.get(key)?.as_str()
    }

    fn name(&self) -> &'a str {
        self.metadata_str("name")
            .or_else(|| self.metadata_str("generateName"))
            .unwrap_or("<unnamed>")
    }

    fn namespace(&self) -> Option<&'a str> {
        self.metadata_str("namespace")
    }

    fn label(&self, key: &str) -> Option<&'a str> {
        self.node
            .value()
            .get("metadata")?
            .get("labels")?
            .get(key)?
            .as_str()
    }
}

/// The objects of document `doc_index`. Items of a `List` (or `PodList`, `DeploymentList` …)
/// take the list's item kind when they carry none, as the API's typed lists do.
pub(crate) fn objects(doc_index: usize, document: &Value) -> Vec<Object<'_>> {
    let mut objects = Vec::new();
    collect(
        doc_index,
        Node::new(document, FieldPath::root()),
        None,
        &mut objects,
    );
    objects
}

fn collect<'a>(
    doc_index: usize,
    node: Node<'a>,
    item_kind: Option<&'a str>,
    objects: &mut Vec<Object<'a>>,
) {
    let Some(kind) = node
        .value()
        .get("kind")
        .and_then(Value::as_str)
        .or(item_kind)
    else {
        return;
    };
    let items = node.value().get("items").map(|items| &items.data);
    if let (Some(list_of), Some(Data::Sequence(items))) = (kind.strip_suffix("List"), items) {
        let items_path = node.path().child("items");
        let item_kind = Some(list_of).filter(|k| !k.is_empty());
        for (i, item) in items.iter().enumerate() {
            collect(
                doc_index,
                Node::new(item, items_path.index(i)),
                item_kind,
                objects,
            );
        }
        return;
    }
    objects.push(Object {
        doc_index,
        kind,
        node,
    });
}

/// Where each kind keeps its pod template, relative to the object.
fn template_location(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&[]),
        "PodTemplate" => Some(&["template"]),
        "DaemonSet"
        | "Deployment"
        | "StatefulSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => Some(&["spec", "template"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// `pod-security.kubernetes.io/enforce` of every `Namespace` object among `objects`.
pub(crate) fn namespace_enforce_levels<'a>(objects: &[Object<'a>]) -> BTreeMap<&'a str, &'a str> {
    objects
        .iter()
        .filter(|o| o.kind == "Namespace")
        .filter_map(|o| Some((o.metadata_str("name")?, o.label(POD_SECURITY_ENFORCE)?)))
        .collect()
}

/// Every finding for one object; nothing for kinds without a pod template.
pub(crate) fn lint_object(
    file: &str,
    object: &Object<'_>,
    options: &LintOptions,
    namespaces: &BTreeMap<&str, &str>,
) -> Vec<Finding> {
    let Some(location) = template_location(object.kind) else {
        return Vec::new();
    };
    let mut report = Report::new(Origin {
        file: file.to_string(),
        doc_index: object.doc_index,
        kind: object.kind.to_string(),
        name: object.name().to_string(),
    });
    let Some(template) = object.node.get_path(location, &mut report) else {
        return report.into_findings();
    };
    let metadata = template.get("metadata", &mut report);
    let metadata_path = template.path().child("metadata");
    if let Some(spec) = template.get("spec", &mut report) {
        let namespace = object.namespace().and_then(|name| {
            let enforce = namespaces.get(name)?;
            Some(NamespacePolicy { name, enforce })
        });
        let pod = PodTemplate {
            metadata,
            metadata_path,
            spec,
        };
        lint_pod(&pod, options, namespace, &mut report);
        if !location.is_empty() {
            check_annotations_reach_pods(object, &pod, &mut report);
        }
    }
    report.into_findings()
}

/// Our annotations only work on pods: on a workload's own metadata they are silently unused.
fn check_annotations_reach_pods(object: &Object<'_>, pod: &PodTemplate<'_>, report: &mut Report) {
    let annotations = object
        .node
        .value()
        .get("metadata")
        .and_then(|m| m.get("annotations"));
    let annotations_path = object.node.path().children(&["metadata", "annotations"]);
    let pod_annotations = pod
        .metadata
        .as_ref()
        .and_then(|m| m.value().get("annotations"));
    let per_container = annotations
        .map(|a| match &a.data {
            Data::Mapping(entries) => entries
                .iter()
                .map(|e| e.key.as_str())
                .filter(|k| k.starts_with(RUN_AS_USER_OF_CONTAINER))
                .collect(),
            _ => Vec::new(),
        })
        .unwrap_or_default();
    for key in [HOSTPROCESS_CONTAINER, RUN_AS_USER]
        .into_iter()
        .chain(per_container)
    {
        let on_object = annotations.and_then(|a| a.entry(key));
        let on_pod = pod_annotations.and_then(|a| a.get(key)).is_some();
        if let (Some(entry), false) = (on_object, on_pod) {
            report.info(
                Rule::AnnotationOnWorkload,
                &annotations_path.key(key).at(entry.at),
                format!(
                    "annotations of a {} do not reach its pods: set it in {}",
                    object.kind,
                    pod.metadata_path.child("annotations")
                ),
            );
        }
    }
}
