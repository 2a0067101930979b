"""Every name that crosses a process boundary, in one place.

Task queues, workflow IDs, search attribute keys, label and annotation keys, and the ConfigMap
key format are read by other processes (the watcher, node workers, the CLI, operators' scripts and
OME-based tooling), so they must never drift apart.
"""

from __future__ import annotations

import hashlib
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
# `modelferry dev` simulates nodes on one machine: each Node it serves carries its index (1..N),
# so a nodeSelector can pick some, and the local directory that plays its filesystem root, so
# `modelferry plan` can measure the free space a real node would report.
DEV_NODE_INDEX_LABEL = "modelferry.io/dev-node-index"
DEV_NODE_ROOT_ANNOTATION = "modelferry.io/dev-node-root"
# OME's BaseModel controller adds these finalizers to every model it reconciles
# (pkg/constants/constants.go): seeing one on a model means OME's manager runs beside us.
OME_FINALIZERS = ("basemodels.ome.io/finalizer", "clusterbasemodels.ome.io/finalizer")
# A node's report overflow ConfigMaps (`nodestatus`): the label selects them by node (a label value
# stops at 63 characters, so a longer node name is shortened), the annotation holds the full name.
OVERFLOW_OF_LABEL = "modelferry.io/node-report-overflow-of"
NODE_ANNOTATION = "modelferry.io/node"


class OmeManager(StrEnum):
    """Whether OME's own manager (its BaseModel controller) also runs in the cluster.

    With OME present it owns `status.state`, `nodesReady` and `nodesFailed` (it recomputes them
    from the node ConfigMaps on every reconcile) and modelferry writes only `conditions` and
    `observedGeneration` (`modelstatus.split_status`)."""

    AUTO = "auto"  # present when OME's finalizer is on the model: its manager reconciles it
    PRESENT = "present"
    ABSENT = "absent"


def node_label_key(model_uid: str) -> str:
    """The documented node label, `models.ome/<uid>=Ready|Updating|Failed` (OME's code today reads
    `ome_node_label_key` instead)."""
    return f"models.ome/{model_uid}"


def configmap_key(*, kind: ModelKind | str, namespace: str | None, name: str) -> str:
    """The key of a model's entry in the node's ConfigMap, in the documented format (OME's code
    today reads `ome_configmap_key` instead).

    `{namespace}_{name}` for namespaced kinds, `{name}` for cluster-scoped ones.
    """
    if not ModelKind(kind).namespaced or not namespace:
        return name
    return f"{namespace}_{name}"


# --- OME's current node-report names -----------------------------------------------------------
#
# OME's code today (pkg/constants/constants.go) no longer reads the documented `models.ome/<uid>`
# label and `{namespace}_{name}` key above: its InferenceService pods select nodes by a label
# derived from the model's namespace and name, and its BaseModel controller looks up ConfigMap
# entries by a key built the same way. Both shorten long names to a fixed budget by keeping the
# name's tail behind a hash of the whole name. The functions below compute byte-for-byte what
# OME's GetBaseModelLabel, GetClusterBaseModelLabel and GetModelConfigMapKey compute.

OME_LABEL_DOMAIN = "models.ome.io"
_OME_BASE_MODEL = "basemodel"
_OME_CLUSTER_BASE_MODEL = "clusterbasemodel"
# OME's budget for the label name after `models.ome.io/`: 63 less the domain and the slash.
# Kubernetes would allow 63 for the name alone, but OME's figure is what its pods select on.
_OME_LABEL_NAME_MAX = 49
CONFIGMAP_KEY_MAX = 253  # Kubernetes' limit for a ConfigMap data key
_OME_HASH_CHARS = 8  # hex characters of the sha256 that stand in for a shortened name's head
_OME_NAMESPACE_MIN = 8  # what a long namespace is cut to when namespace and name must share


class ReportFormat(StrEnum):
    """Which node reports to write: the documented formats, OME's current ones, or both.

    Removal always removes every format, so changing this never strands an entry or a label."""

    DOCS = "docs"  # `models.ome/<uid>` labels and `{namespace}_{name}` ConfigMap keys
    OME = "ome"  # `models.ome.io/<namespace>.basemodel.<name>` labels and keys, ModelEntry values
    BOTH = "both"

    @property
    def writes_docs(self) -> bool:
        return self is not ReportFormat.OME

    @property
    def writes_ome(self) -> bool:
        return self is not ReportFormat.DOCS


def _ome_shorten(value: str, limit: int) -> str:
    """`value` if it fits in `limit`, else the first 8 hex digits of its sha256, a dash and as much
    of its tail as fits (or the hash alone, cut to `limit`, when no tail fits).

    OME measures bytes; Kubernetes names are ASCII, so characters and bytes agree."""
    if len(value) <= limit:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:_OME_HASH_CHARS]
    tail = limit - _OME_HASH_CHARS - 1
    if tail <= 0:
        return digest[:limit]
    return f"{digest}-{value[-tail:]}"


def _ome_namespaced(namespace: str, name: str, *, limit: int) -> str:
    """`{namespace}.basemodel.{name}` within `limit` characters, the way OME splits the budget: the
    name gets priority, a namespace longer than 8 is cut to 8 (its hash alone)."""
    budget = limit - len(_OME_BASE_MODEL) - 2  # the two dots around "basemodel"
    if len(namespace) + len(name) > budget:
        if budget < 2 * _OME_NAMESPACE_MIN:  # never with OME's limits; kept for fidelity
            namespace_max = budget // 2
        else:
            namespace_max = min(len(namespace), _OME_NAMESPACE_MIN)
        namespace = _ome_shorten(namespace, namespace_max)
        name = _ome_shorten(name, budget - namespace_max)
    return f"{namespace}.{_OME_BASE_MODEL}.{name}"


def _ome_cluster_scoped(name: str, *, limit: int) -> str:
    prefix = f"{_OME_CLUSTER_BASE_MODEL}."
    return prefix + _ome_shorten(name, limit - len(prefix))


def _ome_scope(kind: ModelKind | str, namespace: str | None) -> str | None:
    """The namespace OME would use (None for a cluster-scoped model); refuses what OME never names."""
    model_kind = ModelKind(kind)
    if model_kind is ModelKind.FINE_TUNED_WEIGHT:
        raise ValueError("OME reports no FineTunedWeight on nodes")
    if model_kind.namespaced:
        if not namespace:
            raise ValueError("a BaseModel needs its namespace for OME's names")
        return namespace
    return None


def ome_node_label_key(*, kind: ModelKind | str, namespace: str | None, name: str) -> str:
    """The node label OME's InferenceService pods select on (`=Ready`):
    `models.ome.io/{namespace}.basemodel.{name}` or `models.ome.io/clusterbasemodel.{name}`,
    long names shortened as OME does."""
    scope = _ome_scope(kind, namespace)
    if scope is None:
        return f"{OME_LABEL_DOMAIN}/{_ome_cluster_scoped(name, limit=_OME_LABEL_NAME_MAX)}"
    return f"{OME_LABEL_DOMAIN}/{_ome_namespaced(scope, name, limit=_OME_LABEL_NAME_MAX)}"


def ome_configmap_key(*, kind: ModelKind | str, namespace: str | None, name: str) -> str:
    """The key OME's BaseModel controller reads in each node's ConfigMap:
    `{namespace}.basemodel.{name}` or `clusterbasemodel.{name}`, at most 253 characters."""
    scope = _ome_scope(kind, namespace)
    if scope is None:
        return _ome_cluster_scoped(name, limit=CONFIGMAP_KEY_MAX)
    return _ome_namespaced(scope, name, limit=CONFIGMAP_KEY_MAX)


def _label_safe(value: str, limit: int) -> str:
    """`_ome_shorten`, then no `-` or `.` right after the hash: a DNS label starts alphanumeric."""
    short = _ome_shorten(value, limit)
    if short == value or len(short) <= _OME_HASH_CHARS:
        return short
    head, tail = short[:_OME_HASH_CHARS], short[_OME_HASH_CHARS + 1 :].lstrip("-.")
    return f"{head}-{tail}" if tail else head


_LABEL_VALUE_MAX = 63
_OBJECT_NAME_MAX = 253  # a ConfigMap's name is a DNS subdomain
_OVERFLOW_SUFFIX = ".modelferry-{index}"


def overflow_label_value(node: str) -> str:
    """The node's name as a label value: itself up to 63 characters, else shortened as OME shortens."""
    return _label_safe(node, _LABEL_VALUE_MAX)


def overflow_configmap_name(node: str, index: int) -> str:
    """The `index`th (2, 3, ...) ConfigMap of a node's report, after the one named after the node:
    `<node>.modelferry-<index>`, the node's part shortened to keep the name within 253.

    Not `<node>-2`: `worker` and `worker-2` are both common node names, and OME reads the
    ConfigMap named after a node as that node's report. A node named `x.modelferry-2` would
    collide; the writer then skips the name (it lacks our node annotation)."""
    if index < 2:
        raise ValueError("overflow ConfigMaps are numbered from 2; the first is the node's own")
    suffix = _OVERFLOW_SUFFIX.format(index=index)
    return _label_safe(node, _OBJECT_NAME_MAX - len(suffix)) + suffix


# --- Temporal ---------------------------------------------------------------------------------

CONTROL_TASK_QUEUE = "modelferry-control"
# Where every role mounts the Secret `temporal.credentials_secret` names (one file per key), and
# the key that holds the API key.
TEMPORAL_CREDENTIALS_DIR = "/etc/modelferry/temporal"
TEMPORAL_API_KEY_SECRET_KEY = "api-key"


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


# Admin actions by annotation: any new value runs the action once (rollback's value is the version).
REDOWNLOAD_ANNOTATION = "modelferry.io/redownload"
RETRY_ANNOTATION = "modelferry.io/retry"
ROLLBACK_ANNOTATION = "modelferry.io/rollback"
ADMIN_ANNOTATIONS = (REDOWNLOAD_ANNOTATION, RETRY_ANNOTATION, ROLLBACK_ANNOTATION)
# The spec fields the parser wrote, with the values it wrote (JSON): those it may refresh.
PARSED_FIELDS_ANNOTATION = "modelferry.io/parsed-fields"
ADMIN_REASON_ANNOTATION = "modelferry.io/reason"  # optional: the reason an annotation-run action records

# Model workflow Updates and signals other processes send (the CLI, the watcher, node workers).
UPDATE_REDOWNLOAD = "redownload"
UPDATE_ROLLBACK = "rollback"
UPDATE_RETRY = "retry"
SIGNAL_REPORT_DAMAGE = "report_damage"


class SearchAttribute(StrEnum):
    """Custom search attributes the Temporal namespace must have (all Keyword / KeywordList)."""

    MODEL_NAME = "ModelName"
    MODEL_NAMESPACE = "ModelNamespace"
    MODEL_KIND = "ModelKind"
    STORAGE_URI = "StorageUri"
    NODE_NAMES = "NodeNames"
    MODEL_STATE = "ModelState"
    NODE_STATES = "NodeStates"  # "node=State" per node, so a failed node is findable


SEARCH_ATTRIBUTE_TYPES: dict[SearchAttribute, str] = {
    SearchAttribute.MODEL_NAME: "Keyword",
    SearchAttribute.MODEL_NAMESPACE: "Keyword",
    SearchAttribute.MODEL_KIND: "Keyword",
    SearchAttribute.STORAGE_URI: "Keyword",
    SearchAttribute.NODE_NAMES: "KeywordList",
    SearchAttribute.MODEL_STATE: "Keyword",
    SearchAttribute.NODE_STATES: "KeywordList",
}

# --- files on the node ------------------------------------------------------------------------

# Inside a model directory: the completion marker is written last; its presence means every file
# listed in it was verified.
STATE_DIR_NAME = ".modelferry"
MANIFEST_FILE_NAME = "manifest.json"
PARTIAL_SUFFIX = ".partial"
