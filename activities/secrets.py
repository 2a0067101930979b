"""Where a model's storage credentials come from: the Secret named by `storage.storageKey`.

A BaseModel's Secret lives in the model's namespace; cluster-scoped kinds (ClusterBaseModel,
FineTunedWeight) use the agent namespace, as OME does. The values are read by the node activity
that needs them, at the moment it needs them, and never enter workflow inputs or history.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from modelferry.errors import AccessDeniedError, KubeForbiddenError, KubeNotFoundError
from modelferry.messages import ModelRef


class SecretReader(Protocol):
    def read_secret(self, namespace: str, name: str) -> dict[str, str]: ...


def secret_name(spec: Mapping[str, Any]) -> str | None:
    storage = spec.get("storage") or {}
    return storage.get("storageKey") or storage.get("key") or None


def read_model_secret(
    *, reader: SecretReader | None, ref: ModelRef, spec: Mapping[str, Any], agent_namespace: str
) -> dict[str, str] | None:
    name = secret_name(spec)
    if not name:
        return None
    if reader is None:
        raise AccessDeniedError(f"storageKey {name!r} is set but this worker has no Kubernetes access")
    namespace = ref.namespace if ref.kind.namespaced and ref.namespace else agent_namespace
    try:
        return reader.read_secret(namespace, name)
    except KubeNotFoundError:
        raise AccessDeniedError(f"storageKey: Secret {namespace}/{name} not found") from None
    except KubeForbiddenError:
        raise AccessDeniedError(f"storageKey: not allowed to read Secret {namespace}/{name}") from None
