"""Process kubelets make the real control plane run workloads: nodes register as themselves and
turn Ready, the real scheduler places pods on them by label, the real job controller's Jobs
complete, restart policies hold, and a deleted pod's processes are stopped."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from modelferry.dev.kube.cluster import ControlPlane
from modelferry.dev.kube.kubelet import ProcessKubelet, running_nodes

from .conftest import Kubectl
from .test_real_control_plane_comes_up import eventually, uniq

pytestmark = pytest.mark.controlplane

NODES = {"node-a": {"pool": "a"}, "node-b": {"pool": "b"}}
POD_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def nodes(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ProcessKubelet]]:
    with running_nodes(control_plane, nodes=NODES, root=tmp_path_factory.mktemp("nodes")) as kubelets:
        print(
            "node seconds (created, schedulable):",
            {n: (k.registration_seconds, k.ready_seconds) for n, k in kubelets.items()},
        )
        yield kubelets


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    name = uniq("ns")
    assert kubectl("create", "namespace", name).returncode == 0
    eventually(  # pods are refused until the serviceaccount controller made `default`
        lambda: kubectl("get", "serviceaccount", "default", f"--namespace={name}").returncode == 0,
        what=f"the default ServiceAccount in {name}",
    )
    yield name
    kubectl("delete", "namespace", name, "--wait=false")


def get(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any]:
    got = kubectl("get", kind, name, f"--namespace={namespace}", "--output=json")
    assert got.returncode == 0, got.stderr
    return dict(json.loads(got.stdout))


def create(kubectl: Kubectl, manifest: dict[str, Any]) -> None:
    created = kubectl("create", "--filename=-", input=json.dumps(manifest))
    assert created.returncode == 0, created.stderr


def pod(name: str, namespace: str, script: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox", "command": ["sh", "-c", script]}],
            **spec,
        },
    }


def wait_phase(kubectl: Kubectl, name: str, namespace: str, *phases: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        got = get(kubectl, "pod", name, namespace)
        return got if got.get("status", {}).get("phase") in phases else None

    return dict(eventually(check, what=f"pod {name} {'/'.join(phases)}", timeout=POD_TIMEOUT))


def test_nodes_register_as_themselves_and_are_ready(
    nodes: dict[str, ProcessKubelet], kubectl: Kubectl
) -> None:
    listed = kubectl("get", "nodes", "--output=json")
    assert listed.returncode == 0, listed.stderr
    by_name = {n["metadata"]["name"]: n for n in json.loads(listed.stdout)["items"]}
    assert set(NODES) <= set(by_name)
    for name, labels in NODES.items():
        node = by_name[name]
        assert labels.items() <= node["metadata"]["labels"].items()
        assert node["metadata"]["labels"]["kubernetes.io/hostname"] == name
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]
        assert not [t for t in node["spec"].get("taints") or [] if t["key"].startswith("node.kubernetes.io/")]
        lease = get(kubectl, "lease", name, "kube-node-lease")
        assert lease["spec"]["holderIdentity"] == name
    table = kubectl("get", "nodes")
    assert all(f"{name}   Ready" in table.stdout for name in NODES), table.stdout

    # Each kubelet is a node to the Node authorizer: it may not touch another node.
    refused = kubectl("label", "node", "node-b", "stolen=yes", kubeconfig=nodes["node-a"].kubeconfig)
    assert refused.returncode != 0
    assert "Forbidden" in refused.stderr, refused.stderr


def test_the_scheduler_places_a_pod_by_node_selector_and_it_runs_there(
    nodes: dict[str, ProcessKubelet], kubectl: Kubectl, namespace: str
) -> None:
    manifest = pod("who", namespace, "echo $NODE_NAME > /out/who", nodeSelector={"pool": "b"})
    container = manifest["spec"]["containers"][0]
    container["env"] = [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    container["volumeMounts"] = [{"name": "out", "mountPath": "/out"}]
    manifest["spec"]["volumes"] = [{"name": "out", "hostPath": {"path": "/out", "type": "DirectoryOrCreate"}}]
    create(kubectl, manifest)

    done = wait_phase(kubectl, "who", namespace, "Succeeded", "Failed")
    assert done["spec"]["nodeName"] == "node-b"
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert (nodes["node-b"].root / "out" / "who").read_text() == "node-b\n"
    assert not (nodes["node-a"].root / "out" / "who").exists()
    [status] = done["status"]["containerStatuses"]
    assert status["state"]["terminated"]["exitCode"] == 0
    assert status["state"]["terminated"]["reason"] == "Completed"
    conditions = {c["type"]: c["status"] for c in done["status"]["conditions"]}
    assert conditions["PodScheduled"] == "True"
    assert conditions["Ready"] == "False"  # completed
    assert (done["status"]["podIP"], done["status"]["hostIP"]) == ("127.0.0.1", "127.0.0.1")


@pytest.mark.parametrize(
    ("policy", "script", "phase", "exit_code", "restarts"),
    [
        ("Never", "exit 0", "Succeeded", 0, 0),
        ("Never", "exit 3", "Failed", 3, 0),
        ("OnFailure", "if [ -e once ]; then exit 0; fi; touch once; exit 3", "Succeeded", 0, 1),
        ("Never", "kill -9 $$$$", "Failed", 137, 0),  # $$ is Kubernetes' escape for $
    ],
)
def test_restart_policy_decides_the_phase(
    nodes: dict[str, ProcessKubelet],
    kubectl: Kubectl,
    namespace: str,
    policy: str,
    script: str,
    phase: str,
    exit_code: int,
    restarts: int,
) -> None:
    # `once` is relative: the working directory is the pod's sandbox, which outlives a restart.
    create(kubectl, pod("p", namespace, script, restartPolicy=policy))
    done = wait_phase(kubectl, "p", namespace, "Succeeded", "Failed")
    [status] = done["status"]["containerStatuses"]
    assert (done["status"]["phase"], status["state"]["terminated"]["exitCode"], status["restartCount"]) == (
        phase,
        exit_code,
        restarts,
    ), done["status"]
    if restarts:
        assert status["lastState"]["terminated"]["exitCode"] == 3


def test_a_job_completes_on_the_chosen_node_as_its_service_account(
    nodes: dict[str, ProcessKubelet], kubectl: Kubectl, namespace: str
) -> None:
    # The process asks the API server who it is, with the kubeconfig made of its projected token.
    who_am_i = (
        "from kubernetes import client, config; config.load_kube_config(); "
        "print(client.AuthenticationV1Api().create_self_subject_review({}).status.user_info.username)"
    )
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "whoami", "namespace": namespace},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {"kubernetes.io/hostname": "node-a"},
                    "containers": [
                        {"name": "main", "image": "python", "command": [sys.executable, "-c", who_am_i]}
                    ],
                }
            },
        },
    }
    create(kubectl, job)

    def complete() -> bool:
        conditions = get(kubectl, "job", "whoami", namespace).get("status", {}).get("conditions") or []
        assert not [c for c in conditions if c["type"] == "Failed" and c["status"] == "True"], conditions
        return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)

    eventually(complete, what="Job whoami Complete", timeout=POD_TIMEOUT)
    listed = kubectl("get", "pods", f"--namespace={namespace}", "--selector=job-name=whoami", "--output=json")
    [job_pod] = json.loads(listed.stdout)["items"]
    assert job_pod["spec"]["nodeName"] == "node-a"
    log = nodes["node-a"].log_path(namespace, job_pod["metadata"]["name"], "main")
    assert log is not None
    assert log.read_text().strip() == f"system:serviceaccount:{namespace}:default"


def test_deleting_a_running_pod_stops_its_processes(
    nodes: dict[str, ProcessKubelet], kubectl: Kubectl, namespace: str
) -> None:
    # It ignores SIGTERM (and so does the sleep it starts): only SIGKILL after the grace period ends it.
    manifest = pod("sleeper", namespace, "trap '' TERM; sleep 300", terminationGracePeriodSeconds=2)
    created = time.monotonic()
    create(kubectl, manifest)
    running = wait_phase(kubectl, "sleeper", namespace, "Running")
    print(f"pod created -> Running: {time.monotonic() - created:.2f}s")
    node = nodes[running["spec"]["nodeName"]]
    runner = node.runner(namespace, "sleeper")
    assert runner is not None and runner.running_at is not None
    print(f"kubelet saw the pod -> process started: {runner.running_at - runner.seen_at:.3f}s")
    [pid] = runner.pids.values()
    assert running["status"]["containerStatuses"][0]["state"]["running"]

    began = time.monotonic()
    deleted = kubectl("delete", "pod", "sleeper", f"--namespace={namespace}", "--timeout=20s")
    assert deleted.returncode == 0, deleted.stderr
    took = time.monotonic() - began
    assert 2.0 <= took < 10.0, f"deletion took {took:.1f}s; the grace period is 2s"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not runner.pids
    gone = kubectl("get", "pod", "sleeper", f"--namespace={namespace}")
    assert "NotFound" in gone.stderr


def test_the_worker_image_entrypoint_runs_modelferry(
    nodes: dict[str, ProcessKubelet], kubectl: Kubectl, namespace: str
) -> None:
    """No command and args that start with a modelferry subcommand: `python -m modelferry.cli`."""
    manifest = pod("cli", namespace, "")
    manifest["spec"]["containers"][0] = {
        "name": "main",
        "image": "modelferry:dev",
        "args": ["validate", "--help"],
    }
    create(kubectl, manifest)
    done = wait_phase(kubectl, "cli", namespace, "Succeeded", "Failed")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    log = nodes[done["spec"]["nodeName"]].log_path(namespace, "cli", "main")
    assert log is not None and "usage: modelferry validate" in log.read_text()
