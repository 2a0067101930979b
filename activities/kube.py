"""The one module of the activities layer that talks to the Kubernetes API.

It wraps the official client so nothing above it sees the client's types: objects cross this
boundary as plain JSON dicts, failures as our typed errors (`KubeNotFoundError`,
`KubeConflictError`, ...). Loading the client, the timeouts on every call and the mapping of
errors are shared with the watcher's client and live in `modelferry.kubeclient`. Nodes are read
as metadata only (PartialObjectMetadata) where names and labels are all a caller needs.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

from kubernetes import client

from modelferry.errors import KubeForbiddenError, KubeNotFoundError
from modelferry.kubeclient import (
    METADATA_ACCEPT,
    METADATA_LIST_ACCEPT,
    TIMEOUTS,
    Timeouts,
    get_json,
    kube_errors,
    load_api_client,
)
from modelferry.messages import ModelRef
from modelferry.names import API_GROUP, API_VERSION, ModelKind
from modelferry.settings import KubeSettings

T = TypeVar("T")


def _describe(ref: ModelRef) -> str:
    return f"{ref.kind} {ref.namespace + '/' if ref.namespace else ''}{ref.name}"


def _crd_path(name: str) -> str:
    return f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{quote(name, safe='')}"


class KubeClient:
    """The calls the activities need, as plain dicts, with typed errors; `timeouts` bounds each."""

    def __init__(self, api_client: client.ApiClient, *, timeouts: Timeouts = TIMEOUTS) -> None:
        self._api = api_client
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._batch = client.BatchV1Api(api_client)
        self._timeouts = timeouts

    @classmethod
    def from_settings(cls, settings: KubeSettings) -> KubeClient:
        return cls(load_api_client(settings))

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A generated-API call with the timeouts, its failures typed."""
        with kube_errors(what):
            return fn(*args, _request_timeout=self._timeouts.request(), **kwargs)

    def _plain(self, obj: Any) -> dict[str, Any]:
        return self._api.sanitize_for_serialization(obj)  # type: ignore[no-any-return]

    # --- model resources ------------------------------------------------------------------

    def get_model(self, ref: ModelRef) -> dict[str, Any]:
        kind = ModelKind(ref.kind)
        what = f"get {_describe(ref)}"
        if kind.namespaced:
            return self._call(
                what,
                self._custom.get_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                ref.namespace,
                kind.plural,
                ref.name,
            )
        return self._call(
            what, self._custom.get_cluster_custom_object, API_GROUP, API_VERSION, kind.plural, ref.name
        )

    def create_model(self, ref: ModelRef, body: Mapping[str, Any]) -> dict[str, Any]:
        kind = ModelKind(ref.kind)
        what = f"create {_describe(ref)}"
        if kind.namespaced:
            return self._call(
                what,
                self._custom.create_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                ref.namespace,
                kind.plural,
                dict(body),
            )
        return self._call(
            what, self._custom.create_cluster_custom_object, API_GROUP, API_VERSION, kind.plural, dict(body)
        )

    def patch_model(self, ref: ModelRef, patch: Mapping[str, Any]) -> dict[str, Any]:
        """JSON merge patch; include metadata.resourceVersion for optimistic concurrency."""
        kind = ModelKind(ref.kind)
        what = f"patch {_describe(ref)}"
        if kind.namespaced:
            return self._call(
                what,
                self._custom.patch_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                ref.namespace,
                kind.plural,
                ref.name,
                dict(patch),
            )
        return self._call(
            what,
            self._custom.patch_cluster_custom_object,
            API_GROUP,
            API_VERSION,
            kind.plural,
            ref.name,
            dict(patch),
        )

    def patch_model_status(self, ref: ModelRef, status: Mapping[str, Any]) -> dict[str, Any]:
        kind = ModelKind(ref.kind)
        what = f"patch {_describe(ref)} status"
        body = {"status": dict(status)}
        if kind.namespaced:
            return self._call(
                what,
                self._custom.patch_namespaced_custom_object_status,
                API_GROUP,
                API_VERSION,
                ref.namespace,
                kind.plural,
                ref.name,
                body,
            )
        return self._call(
            what,
            self._custom.patch_cluster_custom_object_status,
            API_GROUP,
            API_VERSION,
            kind.plural,
            ref.name,
            body,
        )

    # --- custom resource definitions (modelferry dev --kubeconfig) ---------------------------

    def install_missing_crds(self, crds: list[Mapping[str, Any]]) -> list[str]:
        """Create the CRDs the cluster lacks (a present one is left as it is); the names created.

        A cluster that refuses (403) raises KubeForbiddenError naming what is missing."""
        created = []
        for crd in crds:
            name = str(crd["metadata"]["name"])
            try:
                get_json(self._api, _crd_path(name), what=f"get CRD {name}", timeout=self._timeouts.request())
                continue
            except KubeNotFoundError:
                pass
            try:
                self._call(
                    f"create CRD {name}",
                    client.ApiextensionsV1Api(self._api).create_custom_resource_definition,
                    dict(crd),
                )
            except KubeForbiddenError as error:
                raise KubeForbiddenError(
                    f"CRD {name} is missing and this identity may not create it ({error.message}); "
                    "ask a cluster admin to run: kubectl apply -k deploy/crd",
                    status=error.status,
                ) from None
            created.append(name)
        return created

    def ensure_namespace(self, name: str) -> bool:
        """Create the namespace if it is missing; True when it was created."""
        try:
            self._call(f"get namespace {name}", self._core.read_namespace, name)
            return False
        except KubeNotFoundError:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            self._call(f"create namespace {name}", self._core.create_namespace, body)
            return True

    def crd_established(self, name: str) -> bool:
        crd = get_json(self._api, _crd_path(name), what=f"get CRD {name}", timeout=self._timeouts.request())
        conditions = (crd.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

    def ping(self) -> None:
        """Raise unless the API server answers (the controller's readiness probe)."""
        get_json(
            self._api, "/version", what="read the API server's version", timeout=self._timeouts.request()
        )

    # --- nodes ------------------------------------------------------------------------------

    def list_nodes(self) -> list[tuple[str, dict[str, str]]]:
        """Every Node's name and labels (read as metadata only)."""
        listing = get_json(
            self._api,
            "/api/v1/nodes",
            what="list nodes",
            accept=METADATA_LIST_ACCEPT,
            timeout=self._timeouts.request(),
        )
        items = listing.get("items") or []
        return [
            (str(meta.get("name", "")), dict(meta.get("labels") or {}))
            for meta in (item.get("metadata") or {} for item in items)
        ]

    def list_node_objects(self) -> list[dict[str, Any]]:
        """Every Node whole, status included (allocatable resources; `modelferry plan`)."""
        listing = get_json(self._api, "/api/v1/nodes", what="list nodes", timeout=self._timeouts.request())
        return [item for item in listing.get("items") or [] if isinstance(item, dict)]

    def node_exists(self, name: str) -> bool:
        try:
            get_json(
                self._api,
                f"/api/v1/nodes/{quote(name, safe='')}",
                what=f"get node {name} metadata",
                accept=METADATA_ACCEPT,
                timeout=self._timeouts.request(),
            )
        except KubeNotFoundError:
            return False
        return True

    def get_node(self, name: str) -> dict[str, Any]:
        return self._plain(self._call(f"get node {name}", self._core.read_node, name))

    def patch_node(self, name: str, patch: Mapping[str, Any]) -> None:
        self._call(f"patch node {name}", self._core.patch_node, name, dict(patch))

    # --- configmaps and secrets -----------------------------------------------------------

    def get_configmap(self, namespace: str, name: str) -> dict[str, Any]:
        return self._plain(
            self._call(
                f"get configmap {namespace}/{name}", self._core.read_namespaced_config_map, name, namespace
            )
        )

    def list_configmaps(self, namespace: str, *, label_selector: str) -> list[dict[str, Any]]:
        listing = self._call(
            f"list configmaps {namespace} ({label_selector})",
            self._core.list_namespaced_config_map,
            namespace,
            label_selector=label_selector,
        )
        return [self._plain(item) for item in listing.items or []]

    def create_configmap(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        what = f"create configmap {namespace}/{body.get('metadata', {}).get('name')}"
        return self._plain(self._call(what, self._core.create_namespaced_config_map, namespace, dict(body)))

    def replace_configmap(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Fails with KubeConflictError when body's resourceVersion is stale."""
        return self._plain(
            self._call(
                f"replace configmap {namespace}/{name}",
                self._core.replace_namespaced_config_map,
                name,
                namespace,
                dict(body),
            )
        )

    def delete_configmap(self, namespace: str, name: str, *, resource_version: str | None = None) -> None:
        preconditions = (
            client.V1Preconditions(resource_version=resource_version) if resource_version else None
        )
        self._call(
            f"delete configmap {namespace}/{name}",
            self._core.delete_namespaced_config_map,
            name,
            namespace,
            body=client.V1DeleteOptions(preconditions=preconditions),
        )

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        secret = self._call(
            f"read secret {namespace}/{name}", self._core.read_namespaced_secret, name, namespace
        )
        # stringData is write-only: the API server merges it into data, and a read never returns it
        return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (secret.data or {}).items()}

    # --- events -----------------------------------------------------------------------------

    def create_event(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Fails with KubeConflictError when an Event of that name exists (AlreadyExists)."""
        what = f"create event {namespace}/{body.get('metadata', {}).get('name')}"
        return self._plain(self._call(what, self._core.create_namespaced_event, namespace, dict(body)))

    def get_event(self, namespace: str, name: str) -> dict[str, Any]:
        return self._plain(
            self._call(f"get event {namespace}/{name}", self._core.read_namespaced_event, name, namespace)
        )

    def patch_event(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """JSON merge patch; include metadata.resourceVersion for optimistic concurrency."""
        return self._plain(
            self._call(
                f"patch event {namespace}/{name}",
                self._core.patch_namespaced_event,
                name,
                namespace,
                dict(patch),
                _content_type="application/merge-patch+json",
            )
        )

    # --- jobs -------------------------------------------------------------------------------

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        return self._plain(
            self._call(f"get job {namespace}/{name}", self._batch.read_namespaced_job, name, namespace)
        )

    def create_job(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        what = f"create job {namespace}/{body.get('metadata', {}).get('name')}"
        return self._plain(self._call(what, self._batch.create_namespaced_job, namespace, dict(body)))

    def delete_job(self, namespace: str, name: str) -> None:
        self._call(
            f"delete job {namespace}/{name}",
            self._batch.delete_namespaced_job,
            name,
            namespace,
            propagation_policy="Background",
        )
