"""Every name that crosses a process boundary, in one place.

Task queues, workflow IDs, search attribute keys, label and annotation keys, and the ConfigMap
key format are read by other processes (the watcher, node workers, the CLI, operators' scripts and
OME-based tooling), so they must never drift apart.
"""

from __future__ import annotations

from enum import StrEnum

API_GROUP = "ome.io"
API_VERSION = "v1beta1"
API_GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"


class ModelKind(StrEnum):
    BASE_MODEL = "BaseModel"
    CLUSTER_BASE_MODEL = "ClusterBaseModel"
    FINE_TUNED_WEIGHT = "FineTunedWeight"

    @property
    def plural(self) -> str:
        return PLURALS[self]

    @property
    def namespaced(self) -> bool:
        # OME's CRDs make both ClusterBaseModel and FineTunedWeight cluster-scoped.
        return self is ModelKind.BASE_MODEL


# --- the keys of one model ---------------------------------------------------------------------
#
# A model resource is named four ways, each for a different job:
# - `ModelKey` (kind, namespace or None, name): the resource by name, as the watcher keys what it
#   knows and orders events (one queue per key). A name can be deleted and re-created.
# - `messages.ModelRef` (kind, namespace, name, uid): the resource's identity in every message;
#   the uid tells a re-created resource from the old one. `ref.key` is its ModelKey.
# - the workflow ID (`model_workflow_id`): the durable workflow per name, so signal-with-start is
#   idempotent across watcher restarts.
# - `watcher.informer.StoreKey` (namespace or "", name): any object in one informer's cache
#   (models and Nodes alike); it knows nothing of kinds.
ModelKey = tuple[ModelKind, str | None, str]


PLURALS: dict[ModelKind, str] = {
    ModelKind.BASE_MODEL: "basemodels",
    ModelKind.CLUSTER_BASE_MODEL: "clusterbasemodels",
    ModelKind.FINE_TUNED_WEIGHT: "finetunedweights",
}

# --- annotations, labels, finalizers ----------------------------------------------------------

SKIP_CONFIG_PARSING_ANNOTATIONS = ("ome.io/skip-config-parsing", "ome.oracle.com/skip-config-parsing")
FINALIZER = "ome.io/modelferry-cleanup"
CONFIGMAP_STATUS_LABEL = "models.ome/basemodel-status"
AGENT_NAMESPACE_DEFAULT = "ome"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "modelferry"
NODE_WORKER_LABEL = "modelferry.io/node-worker"


def node_label_key(model_uid: str) -> str:
    """The node label OME's scheduler reads: `models.ome/<uid>=Ready|Updating|Failed`."""
    return f"models.ome/{model_uid}"


def configmap_key(*, kind: ModelKind | str, namespace: str | None, name: str) -> str:
    """The key of a model's entry in the node's ConfigMap (OME format).

    `{namespace}_{name}` for namespaced kinds, `{name}` for cluster-scoped ones.
    """
    if not ModelKind(kind).namespaced or not namespace:
        return name
    return f"{namespace}_{name}"


# --- Temporal ---------------------------------------------------------------------------------

CONTROL_TASK_QUEUE = "modelferry-control"


def node_task_queue(node_name: str) -> str:
    """Each node's worker polls only its own queue, which pins node activities to that node."""
    return f"modelferry-node-{node_name}"


def model_workflow_id(*, kind: ModelKind | str, namespace: str | None, name: str) -> str:
    """Stable per resource, so signal-with-start is idempotent across watcher restarts."""
    kind_part = ModelKind(kind).value.lower()
    if ModelKind(kind).namespaced:
        return f"ome/{kind_part}/{namespace}/{name}"
    return f"ome/{kind_part}/{name}"


def node_workflow_id(*, model_workflow_id: str, node_name: str) -> str:
    return f"{model_workflow_id}/node/{node_name}"


class SearchAttribute(StrEnum):
    """Custom search attributes the Temporal namespace must have (all Keyword / KeywordList)."""

    MODEL_NAME = "ModelName"
    MODEL_NAMESPACE = "ModelNamespace"
    MODEL_KIND = "ModelKind"
    STORAGE_URI = "StorageUri"
    NODE_NAMES = "NodeNames"
    MODEL_STATE = "ModelState"


SEARCH_ATTRIBUTE_TYPES: dict[SearchAttribute, str] = {
    SearchAttribute.MODEL_NAME: "Keyword",
    SearchAttribute.MODEL_NAMESPACE: "Keyword",
    SearchAttribute.MODEL_KIND: "Keyword",
    SearchAttribute.STORAGE_URI: "Keyword",
    SearchAttribute.NODE_NAMES: "KeywordList",
    SearchAttribute.MODEL_STATE: "Keyword",
}

# --- files on the node ------------------------------------------------------------------------

# Inside a model directory: the completion marker is written last; its presence means every file
# listed in it was verified.
STATE_DIR_NAME = ".modelferry"
MANIFEST_FILE_NAME = "manifest.json"
PARTIAL_SUFFIX = ".partial"
