"""Control-queue activities that report a model's state on a node in OME's formats: the node's
ConfigMap entry and node label, in the documented formats, OME's current ones or both
(`modelferry.nodestatus`, chosen by `kube.report_formats`). Removal clears every format.

ConfigMap writes are read-modify-write with the object's resourceVersion; on 409 the activity
re-reads and re-applies its one entry, so many models finishing on one node at once lose nothing.
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
from modelferry.names import MANAGED_BY_LABEL, MANAGED_BY_VALUE, ReportFormat
from modelferry.nodestatus import (
    NodeModelStatus,
    configmap_labels,
    model_labels_patch,
    with_entry,
    with_progress,
    without_entry,
)

_CONFLICT_ATTEMPTS = 50  # many writers per node ConfigMap; each retry re-reads, so this converges


class LabelActivities:
    def __init__(
        self, *, kube: KubeClient, agent_namespace: str, formats: ReportFormat = ReportFormat.BOTH
    ) -> None:
        self._kube = kube
        self._ns = agent_namespace
        self._formats = formats

    def _update_configmap(
        self, node: str, change: Callable[[dict[str, str]], dict[str, str]], *, delete_when_empty: bool
    ) -> bool:
        """Apply `change` to the node's ConfigMap data; True when that wrote something."""
        for _ in range(_CONFLICT_ATTEMPTS):
            try:
                cm = self._kube.get_configmap(self._ns, node)
            except KubeNotFoundError:
                data = change({})
                if not data:
                    return False
                body: dict[str, Any] = {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": node,
                        "namespace": self._ns,
                        "labels": {**configmap_labels(), MANAGED_BY_LABEL: MANAGED_BY_VALUE},
                    },
                    "data": data,
                }
                try:
                    self._kube.create_configmap(self._ns, body)
                    return True
                except KubeConflictError:
                    metrics.count_write_conflict("configmap")
                    continue  # someone created it first: re-read and merge
            old = dict(cm.get("data") or {})
            new = change(old)
            if new == old:
                return False
            rv = cm["metadata"]["resourceVersion"]
            try:
                if not new and delete_when_empty:
                    self._kube.delete_configmap(self._ns, node, resource_version=rv)
                else:
                    cm["data"] = new
                    self._kube.replace_configmap(self._ns, node, cm)
                return True
            except KubeConflictError:
                metrics.count_write_conflict("configmap")
                continue
            except KubeNotFoundError:
                continue
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
            inp.node, lambda data: without_entry(data, ref=inp.ref), delete_when_empty=not node_exists
        )
        patch = model_labels_patch(ref=inp.ref, status=None)  # every format, whatever is set now
        if patch["metadata"]["labels"] and node_exists:
            try:
                self._kube.patch_node(inp.node, patch)
            except KubeNotFoundError:
                pass
        return RemoveNodeModelStatusResult()
