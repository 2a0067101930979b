"""Open the storage backend that serves a parsed storage URI.

One place maps a URI type to its backend, so the download activity, `modelferry pull` and the
tests all get the same backend for the same URI. Backend modules are imported lazily: opening an
`hf://` backend never imports boto3 or the OCI SDK, and a backend module that is not installed
(or not written yet) is a clear `BackendNotAvailableError`, not an ImportError.

The convention every backend module follows: it exposes one callable (named in `_FACTORIES`)
taking `(uri, *, parameters, secret, settings)` and returning a `StorageBackend`:

- `uri`: the typed value from `modelferry.storage_uri.parse_storage_uri`;
- `parameters`: `spec.storage.parameters` (strings; e.g. `allowPatterns`, `secretKey`, `endpoint`);
- `secret`: the storage Secret's data, already decoded (never logged);
- `settings`: a `BackendSettings` (node-level knobs; add fields with defaults as needed).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from activities.storage.base import StorageBackend
from modelferry.errors import BackendNotAvailableError
from modelferry.storage_uri import StorageUri

# scheme -> (module, factory attribute). The factory is usually the backend class itself.
_FACTORIES: dict[str, tuple[str, str]] = {
    "hf": ("activities.storage.hf", "HuggingFaceBackend"),
    "pvc": ("activities.storage.pvc", "PvcBackend"),
    "s3": ("activities.storage.s3", "S3Backend"),
    "oci": ("activities.storage.oci", "OciBackend"),
    "vendor": ("activities.storage.vendor", "open_vendor_backend"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendSettings:
    """Node-level settings every backend may read. New fields must have defaults."""

    hf_endpoint: str | None = None  # HF_ENDPOINT: a mirror or proxy of the Hub
    # claim name or "namespace:claim" -> the local directory where that claim is mounted
    pvc_mounts: Mapping[str, Path] = field(default_factory=dict)
    connect_timeout: float = 10.0
    # A read that sees no byte for this long fails (the engine's stall timeout is the other guard).
    read_timeout: float = 60.0
    concurrency: int = 4  # files in flight; backends size connection pools from these two
    multipart_concurrency: int = 4


def open_backend(
    uri: StorageUri,
    *,
    parameters: Mapping[str, str] | None = None,
    secret: Mapping[str, str] | None = None,
    settings: BackendSettings | None = None,
) -> StorageBackend:
    """Create the backend for `uri`; raises BackendNotAvailableError if none is installed."""
    factory = _factory_for(uri.scheme)
    backend = factory(
        uri,
        parameters=dict(parameters or {}),
        secret=dict(secret) if secret is not None else None,
        settings=settings or BackendSettings(),
    )
    return cast(StorageBackend, backend)


def _factory_for(scheme: str) -> Callable[..., Any]:
    if scheme not in _FACTORIES:
        raise BackendNotAvailableError(f"no storage backend handles {scheme}:// URIs")
    module_name, attribute = _FACTORIES[scheme]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise  # the backend exists but one of its own dependencies is missing: a real bug
        raise BackendNotAvailableError(
            f"the {scheme}:// backend is not installed in this build ({module_name})"
        ) from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise BackendNotAvailableError(f"the {scheme}:// backend module {module_name} has no {attribute}")
    return cast(Callable[..., Any], factory)
