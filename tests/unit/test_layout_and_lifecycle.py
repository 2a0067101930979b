"""Versioned model directories and which spec changes need node work."""

from pathlib import Path

import pytest

from modelferry.layout import host_path, model_layout, version_id_for
from modelferry.lifecycle import delivery_fingerprint, fill_empty_spec_fields, spec_metadata
from modelferry.nodejob import build_worker_job, worker_job_name, worker_task_queue
from modelferry.settings import Settings


def test_storage_path_maps_under_the_node_root():
    assert host_path(node_root=Path("/"), storage_path="/raid/models/x") == Path("/raid/models/x")
    assert host_path(node_root=Path("/tmp/n"), storage_path="/raid/models/x") == Path("/tmp/n/raid/models/x")
    with pytest.raises(ValueError, match="absolute"):
        host_path(node_root=Path("/"), storage_path="raid/x")
    with pytest.raises(ValueError, match=r"\.\."):
        host_path(node_root=Path("/"), storage_path="/raid/../etc")


def test_versions_live_beside_the_link():
    layout = model_layout(node_root=Path("/n"), storage_path="/raid/models/meta/llama")
    assert layout.link == Path("/n/raid/models/meta/llama")
    assert layout.version_dir("abc") == Path("/n/raid/models/meta/.modelferry-versions/llama/abc")
    assert layout.link_target("abc") == ".modelferry-versions/llama/abc"


@pytest.mark.parametrize(
    ("revision", "expected"),
    [
        ("0123abcd" * 5, "0123abcd" * 5),
        ("refs/pr/1", "refs_pr_1"),
        ("", "unversioned"),
        ("..", "unversioned"),
    ],
)
def test_version_ids_are_directory_safe(revision, expected):
    assert version_id_for(revision) == expected


def test_long_version_ids_are_bounded_and_distinct():
    a, b = version_id_for("x" * 100 + "a"), version_id_for("x" * 100 + "b")
    assert len(a) <= 64 and a != b


def test_metadata_only_spec_changes_do_not_need_node_work():
    spec = {"storage": {"storageUri": "hf://a/b", "path": "/m/b"}}
    with_metadata = {**spec, "modelType": "llama", "maxTokens": 8192}
    assert delivery_fingerprint(spec) == delivery_fingerprint(with_metadata)
    moved = {"storage": {"storageUri": "hf://a/b@v2", "path": "/m/b"}}
    assert delivery_fingerprint(spec) != delivery_fingerprint(moved)


def test_parsed_metadata_fills_only_empty_fields():
    spec = {"modelType": "", "maxTokens": 4096, "modelCapabilities": ["TEXT_TO_TEXT"]}
    parsed = {
        "modelType": "llama",
        "maxTokens": 131072,
        "modelCapabilities": ["TEXT_GENERATION"],
        "modelParameterSize": "8B",
        "dtype": "bfloat16",
    }
    assert fill_empty_spec_fields(spec, parsed) == {"modelType": "llama", "modelParameterSize": "8B"}


def test_worker_job_is_pinned_tolerant_and_mounts_the_models_root():
    job = build_worker_job(settings=Settings(), node="gpu-node-1", namespace="ome")
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeName"] == "gpu-node-1"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["serviceAccountName"] == "modelferry-node-worker"
    assert pod["containers"][0]["args"][:3] == ["worker", "--node", "gpu-node-1"]
    assert {"name": "models", "mountPath": "/raid/models"} in pod["containers"][0]["volumeMounts"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--num-download-worker") + 1] == "5"  # OME's default


def test_pvc_jobs_mount_the_claim_read_only_and_poll_their_own_queue():
    job = build_worker_job(settings=Settings(), node="n1", namespace="team", claim_name="weights")
    pod = job["spec"]["template"]["spec"]
    assert {"name": "claim", "persistentVolumeClaim": {"claimName": "weights", "readOnly": True}} in pod[
        "volumes"
    ]
    queue = worker_task_queue(node="n1", claim_namespace="team", claim_name="weights")
    assert queue != worker_task_queue(node="n1")
    assert queue in pod["containers"][0]["args"]


def test_job_names_are_valid_dns_labels():
    name = worker_job_name(node="Very.Long-Node_Name" * 5)
    assert len(name) <= 63 and name == name.lower() and not name.endswith("-")


def test_skipped_parsing_reports_the_specs_own_metadata():
    spec = {"modelType": "llama", "maxTokens": 0, "vendor": "x", "modelFormat": {"name": "safetensors"}}
    assert spec_metadata(spec) == {"modelType": "llama", "modelFormat": {"name": "safetensors"}}


def test_a_typed_spec_keeps_the_fingerprint_its_wire_json_had():
    # Running workflows hold fingerprints computed from the wire dict before specs were typed:
    # the same spec must not look changed (a change re-delivers the model on every node).
    from modelferry.messages import ModelRevision

    wire = {
        "storage": {
            "storageUri": "hf://a/b",
            "path": "/raid/models/b",
            "key": "hf-token",
            "parameters": {"revision": "v1"},
            "downloadPolicy": "ReuseIfExists",
        },
        "modelType": "llama",
    }
    typed = ModelRevision(generation=1, spec=wire).spec
    assert delivery_fingerprint(typed) == delivery_fingerprint(wire)
    assert spec_metadata(typed) == spec_metadata(wire) == {"modelType": "llama"}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"node": "gpu.1"}, {"node": "gpu-1"}),
        ({"node": "GPU-1"}, {"node": "gpu-1"}),
        (
            {"node": "n", "claim_namespace": "a-b", "claim_name": "c"},
            {"node": "n", "claim_namespace": "a", "claim_name": "b-c"},
        ),
    ],
)
def test_worker_job_names_never_collide_for_different_nodes_or_claims(a, b):
    names = [worker_job_name(**a), worker_job_name(**b)]
    assert names[0] != names[1]
    assert all(len(n) <= 63 and n == n.lower() and n[0].isalnum() and n[-1].isalnum() for n in names)
    assert worker_job_name(**a) == names[0]  # stable: the Job is found again by its name
