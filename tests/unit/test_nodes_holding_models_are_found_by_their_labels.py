"""Job mode's verify sweep wakes the nodes that hold a model modelferry placed there: a node
label in either format it writes (`models.ome/<uid>`, `models.ome.io/...`) with a state that
leaves a version served (Ready, Updating, Failed): table tests."""

from __future__ import annotations

import pytest

from modelferry.nodestatus import holds_models, nodes_holding_models

HOLDS = [
    # (case, labels, holds)
    ("documented label Ready", {"models.ome/0f3c-uid": "Ready"}, True),
    ("OME label Ready", {"models.ome.io/team-a.basemodel.llama": "Ready"}, True),
    ("cluster-scoped OME label", {"models.ome.io/clusterbasemodel.llama": "Ready"}, True),
    ("an update running keeps the old version served", {"models.ome/u1": "Updating"}, True),
    ("a failed update keeps the old version served", {"models.ome.io/clusterbasemodel.x": "Failed"}, True),
    ("no labels", {}, False),
    ("other labels only", {"kubernetes.io/hostname": "n1", "gpu": "a100"}, False),
    ("a value that is not a state", {"models.ome/basemodel-status": "true"}, False),
    ("Deleted is no model", {"models.ome/u1": "Deleted"}, False),
    ("a look-alike domain", {"models.ome.example/u1": "Ready", "xmodels.ome/u1": "Ready"}, False),
]


@pytest.mark.parametrize(("labels", "holds"), [row[1:] for row in HOLDS], ids=[row[0] for row in HOLDS])
def test_holds_models(labels, holds):
    assert holds_models(labels) is holds


def test_only_the_nodes_holding_models_are_picked_in_name_order():
    nodes = [
        ("gpu-2", {"models.ome.io/clusterbasemodel.llama": "Ready"}),
        ("cpu-1", {"kubernetes.io/os": "linux"}),
        ("gpu-1", {"models.ome/u1": "Ready", "kubernetes.io/os": "linux"}),
        ("", {"models.ome/u1": "Ready"}),  # a nameless item cannot be woken
    ]
    assert nodes_holding_models(nodes) == ["gpu-1", "gpu-2"]
