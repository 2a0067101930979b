"""Fixtures for the real control plane tier: one control plane per test module (about four seconds
to start), a kubectl runner bound to it, the OME CRDs and a Node for tests that need them.

Without the binaries the whole tier is skipped with one line; see
`modelferry.dev.kube.cluster.bin_dir` for where they are looked for (on CI they are built, and a
failed build fails the tier).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelferry.dev.kube.cluster import BinariesNotBuilt, ControlPlane, bin_dir, running_control_plane

from .product import CRD_FILES, Kubectl, apply_crds, make_kubectl

__all__ = ["CRD_FILES", "Kubectl"]
NODE = "dev-node"  # the name the embedded server's fixtures use too


def pytest_configure(config: pytest.Config) -> None:
    # Registered here because pyproject.toml is not this tier's to edit.
    config.addinivalue_line(
        "markers", "controlplane: against a real etcd, kube-apiserver, controller manager and scheduler"
    )


@functools.cache
def _binaries() -> Path | Exception:
    """bin_dir() once per session, or why not (a CI build is not retried for every test)."""
    try:
        return bin_dir()
    except Exception as e:
        return e


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Skipping here, not in a fixture, keeps the skip's location the same for every test, so
    # `-rs` reports the whole tier on one line. Any other error (a failed CI build) fails the test.
    found = _binaries()
    if isinstance(found, BinariesNotBuilt):
        pytest.skip(str(found))
    if isinstance(found, Exception):
        raise found


@pytest.fixture(scope="session")
def kube_bin() -> Path:
    found = _binaries()
    assert isinstance(found, Path), found
    return found


@pytest.fixture(scope="module")
def control_plane(kube_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_control_plane(tmp_path_factory.mktemp("controlplane"), binaries=kube_bin) as plane:
        yield plane


@pytest.fixture(scope="module")
def kubectl(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    """`kubectl(*args, kubeconfig=admin, input=None)`, never raising on a non-zero exit."""
    try:
        return make_kubectl(control_plane, cache=tmp_path_factory.mktemp("kubecache"))
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def ome_crds(kubectl: Kubectl) -> list[str]:
    """deploy/crd/ applied with kubectl and established; their names."""
    return apply_crds(kubectl)


@pytest.fixture(scope="module")
def node(kubectl: Kubectl) -> str:
    """A registered Node with no kubelet behind it (the node lifecycle controller will taint it
    unreachable after its grace period, which changes nothing for these tests)."""
    manifest = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}
    created = kubectl("apply", "--filename=-", input=json.dumps(manifest))
    assert created.returncode == 0, created.stderr
    return NODE
