"""The `vendor://` plug-in point: backends for proprietary model stores, installed as packages.

`vendor://{vendor}/{resource-type}/{path}` names a store we do not ship. A package adds one by
declaring an entry point in the group `modelferry.vendor_backends` whose *name* is the vendor and
whose object is a factory with the signature

    factory(uri: VendorUri, *, parameters: Mapping[str, str],
            secret: Mapping[str, str] | None, settings: BackendSettings) -> StorageBackend

e.g. in the plug-in's pyproject.toml:

    [project.entry-points."modelferry.vendor_backends"]
    acme = "acme_modelferry.backend:open_backend"

Without a plug-in for the vendor the answer is a permanent BackendNotAvailableError that lists what
is installed: a model we cannot fetch must never look Ready, and retrying will not install one.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping

from activities.storage.base import StorageBackend
from activities.storage.registry import BackendSettings
from modelferry.errors import BackendNotAvailableError, ModelferryError
from modelferry.storage_uri import VendorUri

ENTRY_POINT_GROUP = "modelferry.vendor_backends"


def installed_vendor_backends() -> list[str]:
    """The vendor names that have a backend installed, sorted."""
    return sorted({ep.name for ep in _entry_points()})


def open_vendor_backend(
    uri: VendorUri,
    *,
    parameters: Mapping[str, str] | None = None,
    secret: Mapping[str, str] | None = None,
    settings: BackendSettings | None = None,
) -> StorageBackend:
    """Load the vendor's factory from its entry point and build the backend for `uri`.

    The registry's factory for `vendor://` URIs.
    """
    entry_points = _entry_points()
    candidates = {ep.value: ep for ep in entry_points if ep.name == uri.vendor}  # same target twice is one
    where = f"vendor://{uri.vendor}/{uri.resource_type}/{uri.path}"
    if not candidates:
        installed = sorted({ep.name for ep in entry_points})
        raise BackendNotAvailableError(
            f"{where}: no vendor backend '{uri.vendor}' installed; installed: {installed} "
            f"(a plug-in registers one in the entry point group '{ENTRY_POINT_GROUP}')"
        )
    if len(candidates) > 1:
        raise BackendNotAvailableError(
            f"{where}: several vendor backends are named '{uri.vendor}': {sorted(candidates)}; "
            "uninstall all but one"
        )
    entry_point = next(iter(candidates.values()))
    try:
        factory = entry_point.load()
    except Exception as error:
        raise BackendNotAvailableError(
            f"{where}: the vendor backend '{uri.vendor}' ({entry_point.value}) failed to load: "
            f"{type(error).__name__}: {error}"
        ) from error
    try:
        backend = factory(uri, parameters=dict(parameters or {}), secret=secret, settings=settings)
    except ModelferryError:
        raise
    except Exception as error:
        raise BackendNotAvailableError(
            f"{where}: the vendor backend '{uri.vendor}' refused this source: {type(error).__name__}: {error}"
        ) from error
    if not isinstance(backend, StorageBackend):
        raise BackendNotAvailableError(
            f"{where}: the vendor backend '{uri.vendor}' returned a {type(backend).__name__}, "
            "which is not a StorageBackend (scheme, describe, list_files, read_range, close)"
        )
    return backend


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    # Called through the module attribute on purpose, so tests can substitute their own.
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
