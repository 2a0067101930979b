"""The resource kinds the server knows: built-in ones, and whatever CustomResourceDefinitions add.

A `ResourceType` is one served group/version/plural. Objects are stored per *storage key*
(`group/plural`), shared by every served version of a CRD as with a real server's "None"
conversion. `ResourceRegistry` answers discovery and routing; it holds no objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
STATUS_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class PrinterColumn:
    """One `additionalPrinterColumns` entry of a CRD (the JSONPath is evaluated by `tables`)."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    # Whether metadata.generation is maintained (CRs, workloads, CRDs; not ConfigMaps or Nodes).
    generation: bool = False
    # Name rule: "subdomain" (most kinds), "label" (namespaces), "dns1035" (services), "path" (RBAC).
    name_rule: str = "subdomain"
    # Fields beyond metadata.name/metadata.namespace that fieldSelector may use for this kind.
    selectable_fields: tuple[str, ...] = ()
    printer_columns: tuple[PrinterColumn, ...] = ()
    # An immediate delete answers with the object rather than a Status Success: the kinds whose
    # real registry sets ReturnDeletedObject (pods, services, serviceaccounts, PVs, PVCs) and the
    # ones a real delete never completes at once (namespaces, CRDs). Not CRs or Nodes: a real
    # server answers those with a Status (tests/controlplane/test_embedded_server_answers_like_...).
    delete_returns_object: bool = False
    custom: bool = False  # served because of a CRD
    # The CRD version's openAPIV3Schema: pruning, defaults and validation of its objects.
    schema: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> str:
        return f"{self.group}/{self.plural}"

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()


def _core(plural: str, kind: str, namespaced: bool, **kw: Any) -> ResourceType:
    return ResourceType(group="", version="v1", plural=plural, kind=kind, namespaced=namespaced, **kw)


_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)


def _workload(group: str, plural: str, kind: str, **kw: Any) -> ResourceType:
    """A namespaced controller kind: status subresource, generation, in `kubectl get all`."""
    return ResourceType(
        group=group,
        version="v1",
        plural=plural,
        kind=kind,
        namespaced=True,
        status_subresource=True,
        generation=True,
        categories=("all",),
        **kw,
    )


BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    _core(
        "namespaces",
        "Namespace",
        False,
        short_names=("ns",),
        status_subresource=True,
        name_rule="label",
        selectable_fields=("status.phase",),
        delete_returns_object=True,
    ),
    _core(
        "nodes",
        "Node",
        False,
        short_names=("no",),
        status_subresource=True,
        selectable_fields=("spec.unschedulable",),
    ),
    _core("configmaps", "ConfigMap", True, short_names=("cm",)),
    _core("secrets", "Secret", True, selectable_fields=("type",)),
    _core(
        "pods",
        "Pod",
        True,
        short_names=("po",),
        status_subresource=True,
        generation=True,
        categories=("all",),
        selectable_fields=_POD_FIELDS,
        delete_returns_object=True,
    ),
    _core("events", "Event", True, short_names=("ev",), selectable_fields=_EVENT_FIELDS),
    _core(
        "services",
        "Service",
        True,
        short_names=("svc",),
        status_subresource=True,
        categories=("all",),
        name_rule="dns1035",
        delete_returns_object=True,
    ),
    _core("serviceaccounts", "ServiceAccount", True, short_names=("sa",), delete_returns_object=True),
    _core(
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        True,
        short_names=("pvc",),
        status_subresource=True,
        delete_returns_object=True,
    ),
    _core(
        "persistentvolumes",
        "PersistentVolume",
        False,
        short_names=("pv",),
        status_subresource=True,
        delete_returns_object=True,
    ),
    _workload("batch", "jobs", "Job", selectable_fields=("status.successful",)),
    _workload("apps", "deployments", "Deployment", short_names=("deploy",)),
    _workload("apps", "daemonsets", "DaemonSet", short_names=("ds",)),
    ResourceType(group="coordination.k8s.io", version="v1", plural="leases", kind="Lease", namespaced=True),
    ResourceType(
        group="apiextensions.k8s.io",
        version="v1",
        plural="customresourcedefinitions",
        kind="CustomResourceDefinition",
        namespaced=False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        status_subresource=True,
        generation=True,
        delete_returns_object=True,
    ),
    *(
        ResourceType(
            group="rbac.authorization.k8s.io",
            version="v1",
            plural=plural,
            kind=kind,
            namespaced=namespaced,
            name_rule="path",
        )
        for plural, kind, namespaced in (
            ("roles", "Role", True),
            ("rolebindings", "RoleBinding", True),
            ("clusterroles", "ClusterRole", False),
            ("clusterrolebindings", "ClusterRoleBinding", False),
        )
    ),
)

CRD_STORAGE_KEY = "apiextensions.k8s.io/customresourcedefinitions"
NAMESPACE_STORAGE_KEY = "/namespaces"

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key putting versions in Kubernetes order: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > other."""
    m = _VERSION_RE.match(version)
    if not m:
        return (3, 0, 0, version)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0), version)


@dataclass
class ResourceRegistry:
    """Served resource types by (group, version, plural); CRDs add and remove theirs at run time.

    Changes (made under the store lock) replace the whole mapping, so discovery requests can read
    it without the lock and never see it change mid-iteration."""

    _types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.add(BUILTIN_RESOURCES)

    def add(self, types: Iterable[ResourceType]) -> None:
        self._types = {**self._types, **{(rt.group, rt.version, rt.plural): rt for rt in types}}

    def remove_storage_key(self, storage_key: str) -> None:
        self.replace_storage_key(storage_key, ())

    def replace_storage_key(self, storage_key: str, types: Iterable[ResourceType]) -> None:
        """Serve exactly `types` for this storage key (a CRD's versions after it changed)."""
        kept = {k: rt for k, rt in self._types.items() if rt.storage_key != storage_key}
        self._types = {**kept, **{(rt.group, rt.version, rt.plural): rt for rt in types}}

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        for rt in self._types.values():
            if rt.api_version == api_version and rt.kind == kind:
                return rt
        return None

    def any_version(self, storage_key: str) -> ResourceType | None:
        """The preferred served version of a storage key (for events about stored objects)."""
        found = [rt for rt in self._types.values() if rt.storage_key == storage_key]
        return min(found, key=lambda rt: version_priority(rt.version)) if found else None

    def resources(self, group: str, version: str) -> list[ResourceType]:
        return sorted(
            (rt for rt in self._types.values() if rt.group == group and rt.version == version),
            key=lambda rt: rt.plural,
        )

    def groups(self) -> dict[str, list[str]]:
        """Group name -> served versions, preferred first; the core group ("") included."""
        out: dict[str, set[str]] = {}
        for rt in self._types.values():
            out.setdefault(rt.group, set()).add(rt.version)
        return {g: sorted(vs, key=version_priority) for g, vs in sorted(out.items())}
