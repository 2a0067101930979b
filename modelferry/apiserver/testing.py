"""Test helpers around the embedded API server, shared by every test tier.

`running_apiserver()` starts a server with a node and the OME CRDs and writes a kubeconfig;
the `embedded_apiserver` (per test) and `embedded_apiserver_module` (per module) pytest fixtures
wrap it. Use them from a conftest.py:

    from modelferry.apiserver.testing import embedded_apiserver, embedded_apiserver_module  # noqa: F401
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .server import EmbeddedApiServer

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

DEFAULT_NODE = "dev-node"


def ome_crds() -> list[dict[str, Any]]:
    """The project's generated OME CRDs (the same documents as deploy/crd/)."""
    from modelferry.spec.crdgen import build_crds

    return build_crds()


@contextmanager
def running_apiserver(
    *,
    nodes: Iterable[str | dict[str, Any]] = (DEFAULT_NODE,),
    crds: Iterable[dict[str, Any]] | None = None,
    kubeconfig: Path | None = None,
    **options: Any,
) -> Iterator[EmbeddedApiServer]:
    """A started server with `nodes` and `crds` (default: the OME CRDs) and a kubeconfig
    at `kubeconfig` (default: a temporary file), stopped on exit."""
    with (
        tempfile.TemporaryDirectory(prefix="modelferry-apiserver-") as tmp,
        EmbeddedApiServer(nodes=nodes, **options) as server,
    ):
        for crd in ome_crds() if crds is None else crds:
            server.apply_manifest(crd)
        server.write_kubeconfig(kubeconfig or Path(tmp) / "kubeconfig")
        yield server


def api_client(server: EmbeddedApiServer) -> ApiClient:
    """An official-client `ApiClient` for this server that leaves the global configuration alone."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = server.url
    return client.ApiClient(configuration)


@pytest.fixture
def embedded_apiserver() -> Iterator[EmbeddedApiServer]:
    """A fresh server per test: node `dev-node`, the OME CRDs, `kubeconfig_path` written."""
    with running_apiserver() as server:
        yield server


@pytest.fixture(scope="module")
def embedded_apiserver_module() -> Iterator[EmbeddedApiServer]:
    """One server shared by a test module (tests must not depend on each other's objects)."""
    with running_apiserver() as server:
        yield server
