"""Cross-field rules of a model resource, checked after the types are known to be right.

These are the rules a JSON schema cannot express and the API server therefore does not enforce;
`modelferry validate` and the watcher apply them before anything is downloaded:

- `metadata.name` is a DNS-1123 subdomain and `metadata.namespace`, if given, a DNS-1123 label,
  exactly as Kubernetes' `IsDNS1123Subdomain` / `IsDNS1123Label` define them: a subdomain is at
  most 253 characters in all, and its dot-separated parts have no length limit of their own (a
  253-character name without dots is a valid custom resource name);
- `spec.storage.storageUri` is at most `STORAGE_URI_MAX` characters (the CRD's `maxLength`, which
  a real API server needs to bound the cost of the CRD's CEL rules) and parses
  (`modelferry.storage_uri.parse_storage_uri`), and a
  cluster-scoped resource (ClusterBaseModel, FineTunedWeight) names the namespace of a `pvc://`
  claim, because there is no resource namespace to fall back on;
- a BaseModel's `pvc://` claim is in its own namespace;
- `spec.storage.path`, if given, is absolute and normalised with no `..` segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelferry.errors import InvalidSpecError, UnsafePathError
from modelferry.spec.resources import ModelResource
from modelferry.storage_uri import PvcUri, parse_storage_uri, validate_model_path

# Kubernetes' regexes (k8s.io/apimachinery/pkg/util/validation), with the length limits kept apart
# so a message can say which of the two a name breaks.
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")
DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
_SHOWN_MAX = 80  # a hostile name is quoted only this far: the message ends up in the status
# Far above any real source (object keys are at most 1,024 bytes, a claim's sub-path under 4,096).
STORAGE_URI_MAX = 8192
_URI_SHOWN_MAX = 200  # as modelferry.storage_uri quotes a URI


@dataclass(frozen=True)
class Problem:
    """One broken rule: `field` is a dotted path such as `spec.storage.path` ('' for the document)."""

    field: str
    rule: str


def dns_subdomain_problems(name: str) -> list[str]:
    """What makes `name` not a DNS-1123 subdomain (Kubernetes' rule); empty when it is one."""
    if not name:
        return ["must not be empty"]
    problems = []
    if len(name) > DNS_SUBDOMAIN_MAX:
        problems.append(f"must be no more than {DNS_SUBDOMAIN_MAX} characters (it has {len(name)})")
    if not _DNS_SUBDOMAIN.fullmatch(name):
        problems.append(
            "must consist of lowercase letters, digits, '-' and '.', with each dot-separated part "
            "starting and ending with a letter or digit"
        )
    return problems


def dns_label_problems(name: str) -> list[str]:
    """What makes `name` not a DNS-1123 label (Kubernetes' rule); empty when it is one."""
    if not name:
        return ["must not be empty"]
    problems = []
    if len(name) > DNS_LABEL_MAX:
        problems.append(f"must be no more than {DNS_LABEL_MAX} characters (it has {len(name)})")
    if not _DNS_LABEL.fullmatch(name):
        problems.append(
            "must consist of lowercase letters, digits and '-', starting and ending with a letter or digit"
        )
    return problems


def is_dns_subdomain(name: str) -> bool:
    return not dns_subdomain_problems(name)


def is_dns_label(name: str) -> bool:
    return not dns_label_problems(name)


def _quoted(value: str) -> str:
    # repr escapes control and invisible characters (NUL, newlines, bidi overrides) in the message.
    return repr(value if len(value) <= _SHOWN_MAX else value[:_SHOWN_MAX] + "...")


def check_rules(resource: ModelResource) -> list[Problem]:
    """Every cross-field rule `resource` breaks, in field order; empty when it is valid."""
    problems: list[Problem] = []
    meta = resource.metadata
    name_problems = dns_subdomain_problems(meta.name)
    if name_problems:
        problems.append(
            Problem(
                "metadata.name",
                f"{_quoted(meta.name)} is not a DNS-1123 subdomain: {'; '.join(name_problems)}",
            )
        )
    namespace_problems = dns_label_problems(meta.namespace) if meta.namespace is not None else []
    if namespace_problems:
        problems.append(
            Problem(
                "metadata.namespace",
                f"{_quoted(meta.namespace or '')} is not a DNS-1123 label: {'; '.join(namespace_problems)}",
            )
        )

    storage = resource.storage
    if len(storage.storage_uri) > STORAGE_URI_MAX:
        shown = f"{storage.storage_uri[:_URI_SHOWN_MAX]}... ({len(storage.storage_uri)} characters)"
        problems.append(
            Problem(
                "spec.storage.storageUri",
                f"storage URI '{shown}': must be no more than {STORAGE_URI_MAX} characters",
            )
        )
        return problems + _path_problems(storage.path)
    try:
        uri = parse_storage_uri(
            storage.storage_uri,
            parameters=storage.parameters,
            cluster_scoped=not resource.model_kind.namespaced,
        )
    except InvalidSpecError as e:
        problems.append(Problem("spec.storage.storageUri", e.reason))
    else:
        # Tenancy that needs no settings: a BaseModel never reads another namespace's claim.
        # (Cluster-scoped kinds are judged against the installation's allow-list in admission.)
        own = meta.namespace
        foreign = isinstance(uri, PvcUri) and uri.namespace not in (None, own)
        if foreign and resource.model_kind.namespaced and own:
            problems.append(
                Problem(
                    "spec.storage.storageUri",
                    f"a BaseModel in namespace '{own}' may read only claims in its own namespace; "
                    f"'{storage.storage_uri}' names another namespace",
                )
            )
    return problems + _path_problems(storage.path)


def _path_problems(path: str | None) -> list[Problem]:
    if path is None:
        return []
    try:
        validate_model_path(path)
    except (UnsafePathError, InvalidSpecError) as e:
        return [Problem("spec.storage.path", e.message)]
    return []
