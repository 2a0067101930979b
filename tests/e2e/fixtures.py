"""The clusters the e2e tests run on, as fixtures: the embedded API server by default, or the real
control plane of tests/controlplane (etcd, kube-apiserver, controller manager, scheduler, with
process kubelets registering the nodes and deploy/rbac installed) when `e2e_kube` is "real".

`e2e_kube` comes from MODELFERRY_E2E_KUBE (`embedded`, the default, or `real`); a module
overrides the fixture to pin it, as tests/controlplane/test_e2e_*.py do, which is how CI runs a
subset of this tier on the real control plane. A real control plane is started once per module
(about 4 s) and shared by its tests; each test gets its own nodes and leaves nothing behind.
Import these fixtures into a conftest.py or a test module to use them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from modelferry.dev.example import write_example_model
from tests.e2e.harness import Cluster, embedded_cluster

E2E_KUBE_ENV = "MODELFERRY_E2E_KUBE"
KINDS = ("embedded", "real")

ONE_NODE = {"node-1": {"kubernetes.io/hostname": "node-1"}}
# Three nodes a nodeSelector tells apart: two GPU models in two zones, and a CPU node.
THREE_NODES = {
    "gpu-a": {"gpu": "a100", "zone": "z1"},
    "gpu-b": {"gpu": "h100", "zone": "z2"},
    "cpu-c": {"zone": "z1"},
}


@pytest.fixture(scope="module")
def e2e_kube() -> str:
    kind = os.environ.get(E2E_KUBE_ENV) or "embedded"
    if kind not in KINDS:
        raise pytest.UsageError(f"{E2E_KUBE_ENV}={kind}: expected one of {', '.join(KINDS)}")
    return kind


@pytest.fixture(scope="module")
def real_product(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real control plane with modelferry installed (tests/controlplane/product.py)."""
    from modelferry.dev.kube.cluster import BinariesNotBuilt, bin_dir, running_control_plane
    from tests.controlplane.product import install_product, make_kubectl

    try:
        binaries = bin_dir()
    except BinariesNotBuilt as e:
        pytest.skip(str(e))
    directory = tmp_path_factory.mktemp("controlplane")
    with running_control_plane(directory, binaries=binaries) as plane:
        kubectl = make_kubectl(plane, cache=directory / "kubecache")
        yield install_product(plane, kubectl, directory=directory)


@contextlib.contextmanager
def e2e_cluster(
    request: pytest.FixtureRequest, tmp: Path, nodes: Mapping[str, Mapping[str, str]]
) -> Iterator[Cluster]:
    if request.getfixturevalue("e2e_kube") == "real":
        from tests.controlplane.product import product_cluster

        with product_cluster(request.getfixturevalue("real_product"), tmp, nodes) as cluster:
            yield cluster
    else:
        with embedded_cluster(tmp, {name: dict(labels) for name, labels in nodes.items()}) as cluster:
            yield cluster


@pytest.fixture
def one_node_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    with e2e_cluster(request, tmp_path, ONE_NODE) as cluster:
        yield cluster


@pytest.fixture
def three_node_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    with e2e_cluster(request, tmp_path, THREE_NODES) as cluster:
        yield cluster


@pytest.fixture
def model_source(tmp_path: Path) -> tuple[Path, int]:
    """A PVC (mapped to a directory) holding the generated tiny model; returns (claim dir, params)."""
    claim = tmp_path / "claims" / "models"
    params = write_example_model(claim / "tiny")
    return claim, params
