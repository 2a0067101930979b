"""vendor:// URIs load a backend from the `modelferry.vendor_backends` entry points, or fail permanently."""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from activities.storage.base import DownloadOptions, ModelListing, RemoteFile
from activities.storage.engine import download_model
from activities.storage.registry import BackendSettings, open_backend
from activities.storage.vendor import ENTRY_POINT_GROUP, installed_vendor_backends
from modelferry.errors import AccessDeniedError, BackendNotAvailableError, is_retryable
from modelferry.storage_uri import VendorUri, parse_storage_uri

MODULE = __name__
FILES = {"config.json": b"{}", "weights.bin": bytes(range(256)) * 1000}
calls: list[dict[str, Any]] = []


class AcmeBackend:
    """A vendor backend as a plug-in would ship it: files in memory, md5s promised."""

    scheme = "vendor"

    def __init__(self, uri: VendorUri) -> None:
        self.uri = uri

    def describe(self) -> str:
        return f"acme:{self.uri.path}"

    def list_files(self) -> ModelListing:
        files = tuple(
            RemoteFile(name=n, size=len(d), md5=hashlib.md5(d).hexdigest()) for n, d in FILES.items()
        )
        return ModelListing(revision="acme-1", files=files)

    def read_range(self, file: RemoteFile, start: int, end: int) -> Iterator[bytes]:
        yield FILES[file.name][start:end]

    def close(self) -> None:
        pass


def make_acme(uri: VendorUri, *, parameters: Mapping[str, str], secret: Any, settings: Any) -> AcmeBackend:
    calls.append({"uri": uri, "parameters": parameters, "secret": secret, "settings": settings})
    return AcmeBackend(uri)


def make_nothing(uri: VendorUri, **_: Any) -> object:
    return object()


def make_refusal(uri: VendorUri, **_: Any) -> object:
    raise ValueError("resource type 'datasets' is not supported")


def make_denial(uri: VendorUri, **_: Any) -> object:
    raise AccessDeniedError("acme: token rejected")


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """name -> 'module:attr'; what `importlib.metadata.entry_points` will report for our group."""
    registered: dict[str, str] = {}

    def fake_entry_points(**selection: Any) -> importlib.metadata.EntryPoints:
        assert selection == {"group": ENTRY_POINT_GROUP}
        return importlib.metadata.EntryPoints(
            importlib.metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)
            for name, value in registered.items()
        )

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    calls.clear()
    return registered


def open_vendor(uri: str, **kwargs: Any) -> Any:
    return open_backend(parse_storage_uri(uri), **kwargs)


def test_without_a_plugin_the_error_is_permanent_and_lists_what_is_installed(plugins: dict[str, str]) -> None:
    plugins["globex"] = f"{MODULE}:make_acme"
    with pytest.raises(BackendNotAvailableError) as caught:
        open_vendor("vendor://acme/models/llama-3")
    message = str(caught.value)
    assert "no vendor backend 'acme' installed; installed: ['globex']" in message
    assert not is_retryable(caught.value)


def test_a_registered_plugin_builds_the_backend_with_everything_it_needs(plugins: dict[str, str]) -> None:
    plugins["acme"] = f"{MODULE}:make_acme"
    settings = BackendSettings(concurrency=2)
    backend = open_vendor(
        "vendor://acme/models/org/llama-3",
        parameters={"tier": "gold"},
        secret={"token": "t"},
        settings=settings,
    )
    assert isinstance(backend, AcmeBackend)
    (call,) = calls
    assert (call["uri"].vendor, call["uri"].resource_type, call["uri"].path) == (
        "acme",
        "models",
        "org/llama-3",
    )
    assert call["parameters"] == {"tier": "gold"} and call["secret"] == {"token": "t"}
    assert call["settings"] is settings
    assert installed_vendor_backends() == ["acme"]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("no_such_module_for_modelferry:factory", "failed to load: ModuleNotFoundError"),
        (f"{MODULE}:no_such_attribute", "failed to load: AttributeError"),
        (f"{MODULE}:make_nothing", "not a StorageBackend"),
        (f"{MODULE}:make_refusal", "refused this source: ValueError: resource type 'datasets'"),
    ],
)
def test_a_broken_plugin_is_a_clear_permanent_error(plugins: dict[str, str], value: str, text: str) -> None:
    plugins["acme"] = value
    with pytest.raises(BackendNotAvailableError, match=text):
        open_vendor("vendor://acme/datasets/x")


def test_a_plugin_raising_one_of_our_errors_keeps_its_type(plugins: dict[str, str]) -> None:
    plugins["acme"] = f"{MODULE}:make_denial"
    with pytest.raises(AccessDeniedError, match="token rejected"):
        open_vendor("vendor://acme/models/x")


def test_a_vendor_backend_downloads_through_the_engine(plugins: dict[str, str], tmp_path: Path) -> None:
    plugins["acme"] = f"{MODULE}:make_acme"
    result = download_model(open_vendor("vendor://acme/models/x"), tmp_path / "m", options=DownloadOptions())
    assert {r.name: r.md5 for r in result.files} == {n: hashlib.md5(d).hexdigest() for n, d in FILES.items()}
    assert result.manifest_path.exists()
    assert (tmp_path / "m" / "weights.bin").read_bytes() == FILES["weights.bin"]
