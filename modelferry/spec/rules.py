"""Cross-field rules of a model resource, checked after the types are known to be right.

These are the rules a JSON schema cannot express and the API server therefore does not enforce;
`modelferry validate` and the watcher apply them before anything is downloaded:

- `metadata.name` is a DNS-1123 subdomain and `metadata.namespace`, if given, a DNS-1123 label;
- `spec.storage.storageUri` parses (`modelferry.storage_uri.parse_storage_uri`), and a
  cluster-scoped resource (ClusterBaseModel, FineTunedWeight) names the namespace of a `pvc://`
  claim, because there is no resource namespace to fall back on;
- `spec.storage.path`, if given, is absolute and normalised with no `..` segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelferry.errors import InvalidSpecError, UnsafePathError
from modelferry.spec.resources import ModelResource
from modelferry.storage_uri import parse_storage_uri, validate_model_path

_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN_MAX = 253


@dataclass(frozen=True)
class Problem:
    """One broken rule: `field` is a dotted path such as `spec.storage.path` ('' for the document)."""

    field: str
    rule: str


def is_dns_subdomain(name: str) -> bool:
    return 0 < len(name) <= _DNS_SUBDOMAIN_MAX and all(_DNS_LABEL.fullmatch(p) for p in name.split("."))


def is_dns_label(name: str) -> bool:
    return _DNS_LABEL.fullmatch(name) is not None


def check_rules(resource: ModelResource) -> list[Problem]:
    """Every cross-field rule `resource` breaks, in field order; empty when it is valid."""
    problems: list[Problem] = []
    meta = resource.metadata
    if not is_dns_subdomain(meta.name):
        problems.append(
            Problem(
                "metadata.name",
                f"'{meta.name}' is not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', "
                "starting and ending with a letter or digit, at most 253 characters)",
            )
        )
    if meta.namespace is not None and not is_dns_label(meta.namespace):
        problems.append(Problem("metadata.namespace", f"'{meta.namespace}' is not a DNS-1123 label"))

    storage = resource.storage
    try:
        parse_storage_uri(
            storage.storage_uri,
            parameters=storage.parameters,
            cluster_scoped=not resource.model_kind.namespaced,
        )
    except InvalidSpecError as e:
        problems.append(Problem("spec.storage.storageUri", e.reason))
    if storage.path is not None:
        try:
            validate_model_path(storage.path)
        except (UnsafePathError, InvalidSpecError) as e:
            problems.append(Problem("spec.storage.path", e.message))
    return problems
