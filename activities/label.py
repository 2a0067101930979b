"""Control-queue activities that report a model's state on a node in OME's formats: the node's
ConfigMap entry and node label, in the documented formats, OME's current ones or both
(`modelferry.nodestatus`, chosen by `kube.report_formats`). Removal clears every format.

A node's report is the ConfigMap named after the node plus, once that would pass Kubernetes' size
limit, overflow ConfigMaps (`modelferry.reportsplit` says which entries go where and why). Every
write reads them all, applies its one model's change to the merged entries, places that model's
keys and writes only the ConfigMaps that changed, each under its own resourceVersion; on 409 the
activity re-reads and re-applies, so many models finishing on one node at once lose nothing.
This is the one writer of entries: the progress reporter (`activities/progress.py`) writes a
download's progress through `write_node_progress` here too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from activities.errors import typed_failures
from activities.kube import KubeClient
from modelferry import metrics
from modelferry.errors import KubeConflictError, KubeNotFoundError
from modelferry.messages import (
    ModelRef,
    NodeProgress,
    RemoveNodeModelStatusInput,
    RemoveNodeModelStatusResult,
    SetNodeModelStatusInput,
    SetNodeModelStatusResult,
)
from modelferry.names import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    NODE_ANNOTATION,
    OVERFLOW_OF_LABEL,
    ReportFormat,
    overflow_label_value,
)
from modelferry.nodestatus import (
    NodeModelStatus,
    configmap_labels,
    entry_keys,
    model_labels_patch,
    ome_entry_key,
    with_entry,
    with_progress,
    without_entry,
)
from modelferry.reportsplit import (
    LIMIT_BYTES,
    PRIMARY_DOCS_BYTES,
    NodeReport,
    Write,
    merged_report,
    place_entries,
    plan_writes,
)

# Many writers per node ConfigMap; each retry re-reads, so this converges (`kube.node_label_retry`).
_CONFLICT_ATTEMPTS = 50


class _Retry(Exception):
    """Another writer got there first: re-read the node's report and apply the change again."""


class LabelActivities:
    def __init__(
        self,
        *,
        kube: KubeClient,
        agent_namespace: str,
        formats: ReportFormat = ReportFormat.BOTH,
        conflict_attempts: int = _CONFLICT_ATTEMPTS,
        limit_bytes: int = LIMIT_BYTES,
        primary_docs_bytes: int = PRIMARY_DOCS_BYTES,
    ) -> None:
        self._kube = kube
        self._ns = agent_namespace
        self._formats = formats
        self._attempts = conflict_attempts
        self._limit = limit_bytes
        self._primary_docs = primary_docs_bytes

    def _read_report(self, node: str) -> tuple[NodeReport, dict[str, dict[str, Any]]]:
        """The node's report and each of its ConfigMaps as read (for their resourceVersions)."""
        read: dict[str, dict[str, Any]] = {}
        try:
            read[node] = self._kube.get_configmap(self._ns, node)
        except KubeNotFoundError:
            pass
        selector = f"{OVERFLOW_OF_LABEL}={overflow_label_value(node)}"
        for cm in self._kube.list_configmaps(self._ns, label_selector=selector):
            meta = cm.get("metadata") or {}
            if (meta.get("annotations") or {}).get(NODE_ANNOTATION) == node and meta.get("name") != node:
                read[str(meta["name"])] = cm
        report = NodeReport(
            node=node,
            primary=dict(read[node].get("data") or {}) if node in read else None,
            overflows={n: dict(cm.get("data") or {}) for n, cm in read.items() if n != node},
        )
        return report, read

    def _body(self, node: str, name: str, data: dict[str, str]) -> dict[str, Any]:
        labels = {**configmap_labels(), MANAGED_BY_LABEL: MANAGED_BY_VALUE}
        meta: dict[str, Any] = {"name": name, "namespace": self._ns, "labels": labels}
        if name != node:
            labels[OVERFLOW_OF_LABEL] = overflow_label_value(node)
            meta["annotations"] = {NODE_ANNOTATION: node}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}

    def _apply(self, node: str, write: Write, read: dict[str, dict[str, Any]], taken: set[str]) -> None:
        try:
            if write.op == "create":
                try:
                    self._kube.create_configmap(self._ns, self._body(node, write.name, write.data))
                except KubeConflictError:
                    if write.name != node and not self._is_ours(node, write.name):
                        taken.add(write.name)  # a ConfigMap of that name that is not this node's
                    raise
            elif write.op == "delete":
                rv = read[write.name]["metadata"]["resourceVersion"]
                self._kube.delete_configmap(self._ns, write.name, resource_version=rv)
            else:
                cm = read[write.name]
                cm["data"] = write.data
                self._kube.replace_configmap(self._ns, write.name, cm)
        except KubeConflictError:
            metrics.count_write_conflict("configmap")
            raise _Retry from None
        except KubeNotFoundError:
            raise _Retry from None

    def _is_ours(self, node: str, name: str) -> bool:
        try:
            meta = self._kube.get_configmap(self._ns, name).get("metadata") or {}
        except KubeNotFoundError:
            return True  # gone again: try the name once more
        return (meta.get("annotations") or {}).get(NODE_ANNOTATION) == node

    def _update_configmap(
        self,
        node: str,
        ref: ModelRef,
        change: Callable[[dict[str, str]], dict[str, str]],
        *,
        delete_when_empty: bool,
    ) -> bool:
        """Apply `change` (which touches only `ref`'s entries) to the node's report; True when that
        wrote something."""
        keys = entry_keys(ref)
        ome_key = ome_entry_key(ref)
        taken: set[str] = set()
        for _ in range(self._attempts):
            report, read = self._read_report(node)
            merged = merged_report(report)
            new = change(merged)
            layout = place_entries(
                report,
                keys=keys,
                entries={k: new[k] for k in keys if k in new},
                ome_keys=[ome_key] if ome_key else [],
                taken=taken,
                limit=self._limit,
                primary_docs=self._primary_docs,
            )
            for key in layout.left_out:
                activity.logger.warning(
                    "%s: entry %s on node %s is bigger than a ConfigMap may be; left out",
                    ref.display(),
                    key,
                    node,
                )
            writes = plan_writes(report, layout, delete_empty_primary=delete_when_empty)
            if not writes:
                return False
            try:
                for write in writes:
                    self._apply(node, write, read, taken)
            except _Retry:
                continue
            return True
        raise KubeConflictError(f"ConfigMap {self._ns}/{node}: update kept conflicting")

    def write_node_progress(
        self,
        *,
        ref: ModelRef,
        node: str,
        status: NodeModelStatus,
        config: dict[str, Any] | None,
        progress: NodeProgress,
    ) -> bool:
        """Put `progress` on the model's entry on `node`, which keeps `status` and `config`; only
        over an entry that still records `status` (`nodestatus.with_progress`). True if written."""
        return self._update_configmap(
            node,
            ref,
            lambda data: with_progress(
                data, ref=ref, status=status, config=config, progress=progress, formats=self._formats
            ),
            delete_when_empty=False,
        )

    @activity.defn(name="set_node_model_status")
    @typed_failures
    def set_node_model_status(self, inp: SetNodeModelStatusInput) -> SetNodeModelStatusResult:
        status = NodeModelStatus(inp.status)
        metrics.count_node_report(status.value)
        self._update_configmap(
            inp.node,
            inp.ref,
            lambda data: with_entry(
                data, ref=inp.ref, status=status, config=inp.config, formats=self._formats
            ),
            delete_when_empty=False,
        )
        patch = model_labels_patch(ref=inp.ref, status=status, formats=self._formats)
        if patch["metadata"]["labels"]:
            try:
                self._kube.patch_node(inp.node, patch)
            except KubeNotFoundError:
                activity.logger.info("node %s is gone; label not written", inp.node)
        return SetNodeModelStatusResult()

    @activity.defn(name="remove_node_model_status")
    @typed_failures
    def remove_node_model_status(self, inp: RemoveNodeModelStatusInput) -> RemoveNodeModelStatusResult:
        node_exists = self._kube.node_exists(inp.node)
        # The per-node ConfigMap of a node that no longer exists goes once its last entry does.
        self._update_configmap(
            inp.node,
            inp.ref,
            lambda data: without_entry(data, ref=inp.ref),
            delete_when_empty=not node_exists,
        )
        patch = model_labels_patch(ref=inp.ref, status=None)  # every format, whatever is set now
        if patch["metadata"]["labels"] and node_exists:
            try:
                self._kube.patch_node(inp.node, patch)
            except KubeNotFoundError:
                pass
        return RemoveNodeModelStatusResult()
