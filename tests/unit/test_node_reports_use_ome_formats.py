"""ConfigMap entries and node labels in exactly OME's formats."""

import json

import pytest

from modelferry.messages import ModelRef
from modelferry.names import ModelKind
from modelferry.nodestatus import (
    NodeModelStatus,
    configmap_labels,
    entry_key,
    node_label_patch,
    with_entry,
    without_entry,
)

BM = ModelRef(kind=ModelKind.BASE_MODEL, namespace="team-a", name="llama", uid="u-1")
CBM = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name="llama", uid="u-2")


@pytest.mark.parametrize(("ref", "key"), [(BM, "team-a_llama"), (CBM, "llama")])
def test_configmap_key(ref, key):
    assert entry_key(ref) == key


def test_entry_value_is_ome_json_and_keeps_config_across_status_changes():
    data = with_entry({}, ref=CBM, status=NodeModelStatus.READY, config={"modelType": "llama"})
    assert json.loads(data["llama"]) == {"name": "llama", "status": "Ready", "config": {"modelType": "llama"}}
    data = with_entry(data, ref=CBM, status=NodeModelStatus.UPDATING, config=None)
    assert json.loads(data["llama"]) == {
        "name": "llama",
        "status": "Updating",
        "config": {"modelType": "llama"},
    }
    assert without_entry(data, ref=CBM) == {}


def test_other_models_entries_are_untouched():
    data = with_entry({"other": "x"}, ref=BM, status=NodeModelStatus.FAILED, config=None)
    assert data["other"] == "x" and json.loads(data["team-a_llama"])["status"] == "Failed"


def test_labels():
    assert configmap_labels() == {"models.ome/basemodel-status": "true"}
    assert node_label_patch(model_uid="u-1", status=NodeModelStatus.READY) == {
        "metadata": {"labels": {"models.ome/u-1": "Ready"}}
    }
    assert node_label_patch(model_uid="u-1", status=None) == {
        "metadata": {"labels": {"models.ome/u-1": None}}
    }
    assert (
        node_label_patch(model_uid="u-1", status=NodeModelStatus.DELETED)["metadata"]["labels"][
            "models.ome/u-1"
        ]
        is None
    )
