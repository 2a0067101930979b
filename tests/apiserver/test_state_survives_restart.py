"""With `state_path`, objects (custom ones included) survive a restart, resourceVersions keep
growing, and the file is only ever replaced whole."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from modelferry.apiserver import EmbeddedApiServer
from modelferry.apiserver.persistence import load_state
from modelferry.apiserver.testing import api_client

from .conftest import GROUP, VERSION, WIDGETS, configmap, widget


def test_objects_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "home" / "kube-state.json"
    with EmbeddedApiServer(state_path=state, nodes=["n1"]) as first:
        first.apply_manifest(WIDGETS)
        with api_client(first) as api:
            core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
            core.create_namespaced_config_map("ome", configmap("kept", a="1"))
            made = custom.create_namespaced_custom_object(GROUP, VERSION, "default", "widgets", widget("w1"))
            core.patch_node("n1", {"metadata": {"labels": {"models.ome/x": "Ready"}}})
            last_rv = int(core.list_namespaced_config_map("ome").metadata.resource_version)
    assert not list(state.parent.glob("*.incomplete"))
    with EmbeddedApiServer(state_path=state, nodes=["n1"]) as second, api_client(second) as api:
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        assert core.read_namespaced_config_map("kept", "ome").data == {"a": "1"}
        again = custom.get_namespaced_custom_object(GROUP, VERSION, "default", "widgets", "w1")
        assert again["metadata"]["uid"] == made["metadata"]["uid"]
        assert core.read_node("n1").metadata.labels["models.ome/x"] == "Ready"
        assert [n.metadata.name for n in core.list_node().items] == ["n1"]
        newer = core.create_namespaced_config_map("ome", configmap("new"))
        assert int(newer.metadata.resource_version) > last_rv
        # History from before the restart is gone: resuming from it is 410, as after compaction.
        with pytest.raises(ApiException) as e:
            list(
                watch.Watch().stream(
                    core.list_namespaced_config_map,
                    "ome",
                    resource_version=str(last_rv - 1),
                    timeout_seconds=1,
                )
            )
        assert e.value.status == 410


def test_changes_are_saved_soon_without_a_stop(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with EmbeddedApiServer(state_path=state, save_delay=0.05) as api, api_client(api) as kube:
        client.CoreV1Api(kube).create_namespaced_config_map("default", configmap("early"))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            saved = load_state(state) or {}
            if any(o["metadata"]["name"] == "early" for o in saved.get("objects", {}).get("/configmaps", [])):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the change was not saved while the server ran")


def test_a_damaged_state_file_is_an_error_not_a_reset(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{not json")
    with pytest.raises(ValueError, match="state"):
        EmbeddedApiServer(state_path=state).start()
    assert state.read_text() == "{not json"


def test_the_saved_file_is_plain_json(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with EmbeddedApiServer(state_path=state, nodes=["n1"]):
        pass
    saved = json.loads(state.read_text())
    assert saved["format"] == 1 and saved["resourceVersion"] > 0
    assert {o["metadata"]["name"] for o in saved["objects"]["/namespaces"]} >= {
        "default",
        "kube-system",
        "ome",
    }
