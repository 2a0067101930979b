"""On a real kube-apiserver (the control plane tier): every object deploy/ renders passes the
server's schema validation (`--dry-run=server`, strict fields), the default install applies, the
roles get exactly what RBAC should give them, and admission lets in the node workers' Pods and the
manager's while refusing what the namespace's Pod Security level alone would let through."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.controlplane.conftest import Kubectl

from .manifests import DEFAULT, NAMESPACE, NODE_WORKER, find, job_template, kustomize, write_overlay

pytestmark = pytest.mark.controlplane

CONTROLLER = f"system:serviceaccount:{NAMESPACE}:modelferry-controller"
NODE_WORKER_USER = f"system:serviceaccount:{NAMESPACE}:modelferry-node-worker"
POLICY = "modelferry-node-worker-host-paths"
# What kube-apiserver --allow-privileged=false (this tier's) answers before admission runs.
PRIVILEGED_OFF = "privileged: Forbidden: disallowed by cluster policy"
POLICY_TIMEOUT = 30.0  # a new ValidatingAdmissionPolicy takes effect once the server has loaded it


def _ok(done: Any) -> str:
    assert done.returncode == 0, done.stderr
    return str(done.stdout)


def _write(path: Path, objects: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(objects))
    return path


def eventually(check: Callable[[], Any], *, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"not within {timeout:.0f}s: {what}"
        time.sleep(0.5)
    return result


@pytest.fixture(scope="module")
def with_daemonset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/default plus the node-worker Component, rendered to one file."""
    objects = kustomize(write_overlay(tmp_path_factory.mktemp("overlay"), components=[NODE_WORKER]))
    return _write(tmp_path_factory.mktemp("rendered") / "all.yaml", objects)


@pytest.fixture(scope="module")
def prerequisites(kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> None:
    """What a dry run cannot stand in for: the namespace and the CRDs, applied for real."""
    objects = [o for o in kustomize(DEFAULT) if o["kind"] in ("Namespace", "CustomResourceDefinition")]
    _ok(kubectl("apply", f"--filename={_write(tmp_path_factory.mktemp('pre') / 'pre.yaml', objects)}"))
    crds = [f"crd/{o['metadata']['name']}" for o in objects if o["kind"] == "CustomResourceDefinition"]
    _ok(kubectl("wait", "--for=condition=Established", "--timeout=30s", *crds))


@pytest.fixture(scope="module")
def installed(kubectl: Kubectl, prerequisites: None) -> None:
    """`kubectl apply -k deploy/default`, for real, and the host-path policy loaded."""
    _ok(kubectl("apply", "--kustomize", str(DEFAULT)))

    def checked() -> dict[str, Any] | None:
        policy = json.loads(_ok(kubectl("get", f"validatingadmissionpolicy/{POLICY}", "--output=json")))
        status: dict[str, Any] = policy.get("status") or {}
        return status if status.get("observedGeneration") == policy["metadata"]["generation"] else None

    status = eventually(checked, what="the policy's type checking", timeout=POLICY_TIMEOUT)
    assert not (status.get("typeChecking") or {}).get("expressionWarnings"), status


def test_every_rendered_object_passes_server_side_validation(
    kubectl: Kubectl, prerequisites: None, with_daemonset: Path
) -> None:
    done = kubectl("apply", "--dry-run=server", "--validate=strict", f"--filename={with_daemonset}")
    out = _ok(done)
    applied = [line for line in out.splitlines() if "(server dry run)" in line]
    assert len(applied) == len(list(yaml.safe_load_all(with_daemonset.read_text())))
    # The one Pod Security warning is the DaemonSet's: hostPath is beyond baseline (namespace.yaml).
    warnings = [line for line in done.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and 'violate PodSecurity "baseline' in warnings[0], warnings
    assert "hostPath volumes" in warnings[0], warnings


def test_server_validation_is_strict_so_a_misspelt_field_fails(kubectl: Kubectl, prerequisites: None) -> None:
    deployment = find(kustomize(DEFAULT), "Deployment", "modelferry-controller")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    done = kubectl(
        "apply", "--dry-run=server", "--validate=strict", "--filename=-", input=json.dumps(deployment)
    )
    assert done.returncode != 0 and "imagePullPolicyy" in done.stderr, done.stderr


def test_default_install_applies_and_its_policy_type_checks(kubectl: Kubectl, installed: None) -> None:
    deployment = json.loads(
        _ok(kubectl("get", "deployment/modelferry-controller", f"--namespace={NAMESPACE}", "--output=json"))
    )
    assert deployment["spec"]["replicas"] == 2


@pytest.mark.parametrize(
    ("user", "verb", "resource", "namespace", "allowed"),
    [
        (CONTROLLER, "watch", "basemodels.ome.io", None, True),
        (CONTROLLER, "patch", "clusterbasemodels.ome.io/status", None, True),
        (CONTROLLER, "patch", "nodes", None, True),
        (CONTROLLER, "update", "leases.coordination.k8s.io", NAMESPACE, True),
        (CONTROLLER, "update", "leases.coordination.k8s.io", "default", False),
        (CONTROLLER, "create", "jobs.batch", NAMESPACE, True),
        (CONTROLLER, "create", "jobs.batch", "default", False),
        (CONTROLLER, "update", "configmaps", NAMESPACE, True),
        (CONTROLLER, "create", "events", "team-a", True),  # a BaseModel's namespace
        (CONTROLLER, "patch", "events", "default", True),  # a cluster-scoped model's repeat
        (CONTROLLER, "delete", "events", "default", False),
        (CONTROLLER, "get", "secrets", NAMESPACE, False),
        (CONTROLLER, "create", "pods", NAMESPACE, False),
        (CONTROLLER, "delete", "basemodels.ome.io", None, False),
        (NODE_WORKER_USER, "get", "secrets", NAMESPACE, True),
        (NODE_WORKER_USER, "list", "secrets", NAMESPACE, False),
        (NODE_WORKER_USER, "get", "secrets", "default", False),
        (NODE_WORKER_USER, "get", "basemodels.ome.io", NAMESPACE, False),
        (NODE_WORKER_USER, "get", "nodes", None, False),
    ],
)
def test_rbac_grants_each_role_what_it_calls_and_no_more(
    kubectl: Kubectl,
    installed: None,
    user: str,
    verb: str,
    resource: str,
    namespace: str | None,
    allowed: bool,
) -> None:
    scope = [f"--namespace={namespace}"] if namespace else ["--all-namespaces"]
    done = kubectl("auth", "can-i", verb, resource, *scope, f"--as={user}")
    assert done.stdout.strip() == ("yes" if allowed else "no"), done.stderr


def test_controller_may_create_the_worker_job_it_builds(kubectl: Kubectl, installed: None) -> None:
    done = kubectl(
        "create", "--dry-run=server", "--filename=-", f"--as={CONTROLLER}", input=json.dumps(job_template())
    )
    _ok(done)


def _worker_pod(**changes: Any) -> dict[str, Any]:
    """The Pod a worker Job makes, with `changes` applied to its spec."""
    template = copy.deepcopy(job_template()["spec"]["template"])
    spec = {**template["spec"], **changes}
    metadata = {**template["metadata"], "name": f"worker-{uuid.uuid4().hex[:8]}", "namespace": NAMESPACE}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def _with_container(pod_changes: dict[str, Any] | None = None, **container_changes: Any) -> dict[str, Any]:
    pod = _worker_pod(**(pod_changes or {}))
    pod["spec"]["containers"][0].update(container_changes)
    return pod


def _extra_host_path(path: str) -> dict[str, Any]:
    pod = _worker_pod()
    pod["spec"]["volumes"].append({"name": "extra", "hostPath": {"path": path}})
    pod["spec"]["containers"][0]["volumeMounts"].append({"name": "extra", "mountPath": "/extra"})
    return pod


def _create(kubectl: Kubectl, pod: dict[str, Any]) -> Any:
    return kubectl("create", "--dry-run=server", "--filename=-", input=json.dumps(pod))


def test_the_worker_pod_is_admitted_in_ome(kubectl: Kubectl, installed: None) -> None:
    _ok(_create(kubectl, _worker_pod()))


@pytest.mark.parametrize(
    ("pod", "refusal"),
    [
        pytest.param(
            _extra_host_path("/etc"),
            "only host paths allowed here are the models roots",
            id="other-host-path",
        ),
        # A root's parent (a path with `..` the API server's own validation refuses).
        pytest.param(
            _extra_host_path("/raid"),
            "only host paths allowed here are the models roots",
            id="parent-of-a-root",
        ),
        pytest.param(
            _worker_pod(serviceAccountName="default"),
            "only the modelferry-node-worker ServiceAccount",
            id="other-account",
        ),
        pytest.param(_worker_pod(hostNetwork=True), "may not share the host's network", id="host-network"),
        pytest.param(
            _with_container(securityContext={"privileged": True}),
            "may not run privileged containers",
            id="privileged",
        ),
        pytest.param(
            _with_container(securityContext={"capabilities": {"add": ["SYS_ADMIN"]}}),
            "add capabilities",
            id="capabilities",
        ),
        pytest.param(
            _with_container(ports=[{"containerPort": 80, "hostPort": 80}]),
            "may not use host ports",
            id="host-port",
        ),
    ],
)
def test_what_privileged_would_allow_beyond_the_workers_needs_is_refused(
    kubectl: Kubectl, installed: None, pod: dict[str, Any], refusal: str
) -> None:
    pod = copy.deepcopy(pod)

    def refused() -> str | None:
        pod["metadata"]["name"] = f"worker-{uuid.uuid4().hex[:8]}"
        done = _create(kubectl, pod)
        return done.stderr if done.returncode != 0 else None

    stderr = eventually(refused, what=f"refusal: {refusal}", timeout=POLICY_TIMEOUT)
    if pod["spec"]["containers"][0].get("securityContext", {}).get("privileged") and PRIVILEGED_OFF in stderr:
        return  # this control plane runs without --allow-privileged: refused before admission
    assert POLICY in stderr and refusal in stderr, stderr


def _namespace_at(kubectl: Kubectl, level: str) -> str:
    name = f"pss-{level}-{uuid.uuid4().hex[:6]}"
    labels = {"pod-security.kubernetes.io/enforce": level}
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    _ok(kubectl("create", "--filename=-", input=json.dumps(manifest)))
    return name


def test_baseline_would_refuse_the_worker_so_privileged_is_the_least_that_works(
    kubectl: Kubectl, installed: None
) -> None:
    namespace = _namespace_at(kubectl, "baseline")
    pod = _worker_pod(serviceAccountName="default")  # the node worker's account exists only in ome
    pod["metadata"]["namespace"] = namespace
    done = _create(kubectl, pod)
    assert done.returncode != 0 and "violates PodSecurity" in done.stderr and "hostPath" in done.stderr, (
        done.stderr
    )


def test_the_manager_pod_meets_restricted(kubectl: Kubectl, installed: None) -> None:
    namespace = _namespace_at(kubectl, "restricted")
    template = find(kustomize(DEFAULT), "Deployment", "modelferry-controller")["spec"]["template"]
    spec = {**template["spec"], "serviceAccountName": "default"}
    spec["volumes"] = [v for v in spec["volumes"] if "configMap" not in v] + [
        {"name": "config", "emptyDir": {}}
    ]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "manager", "namespace": namespace},
        "spec": spec,
    }
    _ok(_create(kubectl, pod))
