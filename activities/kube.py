"""The one module of the activities layer that talks to the Kubernetes API.

It wraps the official client and maps `ApiException` to our typed errors (`KubeNotFoundError`,
`KubeConflictError`, ...), so nothing above it sees the client's types. Objects cross this
boundary as plain JSON dicts.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from modelferry.errors import KubeError, KubeNotFoundError, KubeUnavailableError, kube_error_for_status
from modelferry.messages import ModelRef
from modelferry.names import API_GROUP, API_VERSION, ModelKind
from modelferry.settings import KubeSettings

T = TypeVar("T")


def _map_api_exception(e: ApiException) -> KubeError:
    return kube_error_for_status(e.status, f"Kubernetes API {e.status} {e.reason}: {(e.body or '')[:300]!s}")


def _mapped(fn: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except ApiException as e:
            raise _map_api_exception(e) from None
        except (Urllib3HTTPError, OSError) as e:
            raise KubeUnavailableError(f"Kubernetes API unreachable: {e}") from None

    return wrapper


def load_api_client(settings: KubeSettings) -> client.ApiClient:
    if settings.kubeconfig is not None:
        return config.new_client_from_config(config_file=str(settings.kubeconfig))
    try:
        config.load_incluster_config()
        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config()


class KubeClient:
    """The calls the activities need, as plain dicts, with typed errors."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = api_client
        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self._batch = client.BatchV1Api(api_client)

    @classmethod
    def from_settings(cls, settings: KubeSettings) -> KubeClient:
        return cls(load_api_client(settings))

    def _plain(self, obj: Any) -> dict[str, Any]:
        return self._api.sanitize_for_serialization(obj)  # type: ignore[no-any-return]

    # --- model resources ------------------------------------------------------------------

    @_mapped
    def get_model(self, ref: ModelRef) -> dict[str, Any]:
        kind = ModelKind(ref.kind)
        if kind.namespaced:
            return self._custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
                API_GROUP, API_VERSION, ref.namespace, kind.plural, ref.name
            )
        return self._custom.get_cluster_custom_object(  # type: ignore[no-any-return]
            API_GROUP, API_VERSION, kind.plural, ref.name
        )

    @_mapped
    def patch_model(self, ref: ModelRef, patch: Mapping[str, Any]) -> dict[str, Any]:
        """JSON merge patch; include metadata.resourceVersion for optimistic concurrency."""
        kind = ModelKind(ref.kind)
        if kind.namespaced:
            return self._custom.patch_namespaced_custom_object(  # type: ignore[no-any-return]
                API_GROUP, API_VERSION, ref.namespace, kind.plural, ref.name, dict(patch)
            )
        return self._custom.patch_cluster_custom_object(  # type: ignore[no-any-return]
            API_GROUP, API_VERSION, kind.plural, ref.name, dict(patch)
        )

    @_mapped
    def patch_model_status(self, ref: ModelRef, status: Mapping[str, Any]) -> dict[str, Any]:
        kind = ModelKind(ref.kind)
        body = {"status": dict(status)}
        if kind.namespaced:
            return self._custom.patch_namespaced_custom_object_status(  # type: ignore[no-any-return]
                API_GROUP, API_VERSION, ref.namespace, kind.plural, ref.name, body
            )
        return self._custom.patch_cluster_custom_object_status(  # type: ignore[no-any-return]
            API_GROUP, API_VERSION, kind.plural, ref.name, body
        )

    # --- nodes ------------------------------------------------------------------------------

    @_mapped
    def list_nodes(self) -> list[tuple[str, dict[str, str]]]:
        return [(n.metadata.name, dict(n.metadata.labels or {})) for n in self._core.list_node().items]

    def node_exists(self, name: str) -> bool:
        try:
            self.get_node(name)
            return True
        except KubeNotFoundError:
            return False

    @_mapped
    def get_node(self, name: str) -> dict[str, Any]:
        return self._plain(self._core.read_node(name))

    @_mapped
    def patch_node(self, name: str, patch: Mapping[str, Any]) -> None:
        self._core.patch_node(name, dict(patch))

    # --- configmaps and secrets -----------------------------------------------------------

    @_mapped
    def get_configmap(self, namespace: str, name: str) -> dict[str, Any]:
        return self._plain(self._core.read_namespaced_config_map(name, namespace))

    @_mapped
    def create_configmap(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._plain(self._core.create_namespaced_config_map(namespace, dict(body)))

    @_mapped
    def replace_configmap(self, namespace: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Fails with KubeConflictError when body's resourceVersion is stale."""
        return self._plain(self._core.replace_namespaced_config_map(name, namespace, dict(body)))

    @_mapped
    def delete_configmap(self, namespace: str, name: str, *, resource_version: str | None = None) -> None:
        preconditions = (
            client.V1Preconditions(resource_version=resource_version) if resource_version else None
        )
        self._core.delete_namespaced_config_map(
            name, namespace, body=client.V1DeleteOptions(preconditions=preconditions)
        )

    @_mapped
    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        secret = self._core.read_namespaced_secret(name, namespace)
        out = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (secret.data or {}).items()}
        out.update(secret.string_data or {})
        return out

    # --- jobs -------------------------------------------------------------------------------

    @_mapped
    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        return self._plain(self._batch.read_namespaced_job(name, namespace))

    @_mapped
    def create_job(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._plain(self._batch.create_namespaced_job(namespace, dict(body)))

    @_mapped
    def delete_job(self, namespace: str, name: str) -> None:
        self._batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
