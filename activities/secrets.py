"""Where a model's storage credentials come from: the Secret named by `storage.storageKey`.

A BaseModel's Secret lives in the model's namespace; cluster-scoped kinds (ClusterBaseModel,
FineTunedWeight) use the agent namespace, as OME does. The values are read by the node activity
that needs them, at the moment it needs them, and never enter workflow inputs or history.
"""

from __future__ import annotations

from typing import Protocol

from modelferry.errors import AccessDeniedError, KubeForbiddenError, KubeNotFoundError
from modelferry.messages import ModelRef, ModelSpec


class SecretReader(Protocol):
    def read_secret(self, namespace: str, name: str) -> dict[str, str]: ...


def read_model_secret(
    *, reader: SecretReader | None, ref: ModelRef, spec: ModelSpec, agent_namespace: str
) -> dict[str, str] | None:
    name = spec.storage.storage_key
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
