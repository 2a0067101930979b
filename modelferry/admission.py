"""What a valid resource may still not do under this installation's policy: pure rules, no I/O.

The rules of `modelferry.spec.rules` hold for every installation. These depend on settings and
are applied by the watcher (a refused resource is marked InvalidSpec, naming the field) and again
by the node activity before it touches the disk (defence in depth: a workflow started by an older
watcher, or a spec that reached Temporal by another way, is refused too).

- Tenancy. A BaseModel reads only its own namespace's claim (and Secret: `activities.secrets`
  always looks in the resource's namespace). Only cluster-scoped kinds may name a claim in
  another namespace, and only one that `cluster_claim_namespaces` allows (`ns`, `ns:claim`, or
  `*`; default: the agent namespace).
- Placement. `storage.path` lies strictly below a models root (`modelferry.ownership`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelferry.errors import InvalidSpecError, TenancyError, UnsafePathError
from modelferry.messages import model_storage_uri
from modelferry.names import AGENT_NAMESPACE_DEFAULT, ModelKind
from modelferry.ownership import DEFAULT_MODELS_ROOTS, check_models_root
from modelferry.settings import Settings
from modelferry.spec.resources import ModelResource
from modelferry.spec.rules import Problem
from modelferry.storage_uri import PvcUri

URI_FIELD = "spec.storage.storageUri"
PATH_FIELD = "spec.storage.path"
ANY_NAMESPACE = "*"


@dataclass(frozen=True, slots=True)
class AdmissionPolicy:
    models_roots: tuple[str, ...] = DEFAULT_MODELS_ROOTS
    # Claims a cluster-scoped model may read: "ns", "ns:claim" or "*".
    cluster_claim_namespaces: tuple[str, ...] = (AGENT_NAMESPACE_DEFAULT,)


def admission_policy(settings: Settings) -> AdmissionPolicy:
    return AdmissionPolicy(
        models_roots=tuple(settings.policy.models_roots),
        cluster_claim_namespaces=tuple(settings.cluster_claim_namespaces()),
    )


def resolve_claim(*, kind: ModelKind, namespace: str | None, uri: PvcUri) -> tuple[str | None, str]:
    """(namespace, claim) a `pvc://` URI means: a BaseModel's own namespace when it names none."""
    if uri.namespace is None and kind.namespaced:
        return namespace, uri.claim_name
    return uri.namespace, uri.claim_name


def check_claim_access(
    *, kind: ModelKind, namespace: str | None, uri: PvcUri, allowed: Sequence[str]
) -> None:
    """Raise TenancyError (field spec.storage.storageUri) when the resource may not read the claim."""
    claim_ns, claim = resolve_claim(kind=kind, namespace=namespace, uri=uri)
    if kind.namespaced:
        if claim_ns != namespace:
            raise TenancyError(
                f"a {kind.value} in namespace '{namespace}' may read only claims in its own namespace; "
                f"'{uri.uri}' names claim '{claim}' in namespace '{claim_ns}'",
                field=URI_FIELD,
            )
        return
    if ANY_NAMESPACE in allowed or claim_ns in allowed or f"{claim_ns}:{claim}" in allowed:
        return
    shown = ", ".join(allowed) or "none"
    raise TenancyError(
        f"a {kind.value} may not read claim '{claim}' in namespace '{claim_ns}': claims of "
        f"cluster-scoped models are limited to {shown} (setting policy.cluster_claim_namespaces)",
        field=URI_FIELD,
    )


def check_admission(resource: ModelResource, policy: AdmissionPolicy) -> list[Problem]:
    """Every policy rule `resource` (already valid by `spec.rules`) breaks; empty when admitted."""
    problems: list[Problem] = []
    kind = resource.model_kind
    storage = resource.storage
    try:
        uri = model_storage_uri(kind, resource.spec)
        if isinstance(uri, PvcUri):
            check_claim_access(
                kind=kind,
                namespace=resource.metadata.namespace,
                uri=uri,
                allowed=policy.cluster_claim_namespaces,
            )
    except InvalidSpecError as e:
        problems.append(Problem(e.field or URI_FIELD, e.reason))
    if storage.path is not None:
        try:
            check_models_root(storage.path, models_roots=policy.models_roots)
        except UnsafePathError as e:
            problems.append(Problem(PATH_FIELD, e.message))
    return problems
