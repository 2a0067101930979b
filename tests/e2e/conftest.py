import pytest

from modelferry.dev.example import write_example_model
from tests.e2e.harness import embedded_cluster


@pytest.fixture
def model_source(tmp_path):
    """A PVC (mapped to a directory) holding the generated tiny model; returns (claim dir, params)."""
    claim = tmp_path / "claims" / "models"
    params = write_example_model(claim / "tiny")
    return claim, params


@pytest.fixture
def two_node_cluster(tmp_path):
    with embedded_cluster(
        tmp_path, {"gpu-a": {"gpu": "a100", "zone": "z1"}, "gpu-b": {"gpu": "h100", "zone": "z2"}}
    ) as c:
        yield c


@pytest.fixture
def one_node_cluster(tmp_path):
    with embedded_cluster(tmp_path, {"node-1": {"kubernetes.io/hostname": "node-1"}}) as c:
        yield c
