"""`kubectl kustomize deploy/default` renders an install in which every object is well-formed and
in `ome`, the manager runs as a locked-down non-root process, each role has its own
ServiceAccount with only what its process calls, and the node workers (the DaemonSet Component
and the Job template) mount exactly the models roots the settings allow."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelferry.settings import WorkerMode
from watcher.leader import LEASE_NAME

from .manifests import (
    CLUSTER_SCOPED_KINDS,
    DEFAULT,
    DEPLOY,
    JOB_TEMPLATE_FILE,
    NAMESPACE,
    NODE_WORKER,
    find,
    job_template,
    kustomize,
    pod_templates,
    render_job_template,
    shipped_settings,
    write_overlay,
)

MANAGER = "modelferry-controller"
DAEMONSET = "modelferry-node-worker"
CONTROLLER_SA = "modelferry-controller"
NODE_WORKER_SA = "modelferry-node-worker"


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return kustomize(DEFAULT)


@pytest.fixture(scope="module")
def with_daemonset(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return kustomize(write_overlay(tmp_path_factory.mktemp("overlay"), components=[NODE_WORKER]))


def _manager(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return find(objects, "Deployment", MANAGER)


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _host_paths(pod: dict[str, Any]) -> dict[str, str]:
    """hostPath -> where the container mounts it."""
    volumes = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    (container,) = pod["containers"]
    return {volumes[m["name"]]: m["mountPath"] for m in container["volumeMounts"] if m["name"] in volumes}


# --- every object -----------------------------------------------------------------------------


def test_every_object_is_named_and_namespaced_objects_are_in_ome(rendered: list[dict[str, Any]]) -> None:
    assert rendered
    for obj in rendered:
        assert obj.get("apiVersion") and obj.get("kind") and obj.get("metadata", {}).get("name"), obj
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED_KINDS:
            assert namespace is None, f"{obj['kind']}/{obj['metadata']['name']} is cluster-scoped"
        else:
            assert namespace == NAMESPACE, f"{obj['kind']}/{obj['metadata']['name']} is in {namespace}"


def test_default_installs_the_manager_and_no_daemonset(rendered: list[dict[str, Any]]) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered}
    assert ("Namespace", NAMESPACE) in kinds
    assert {"basemodels.ome.io", "clusterbasemodels.ome.io", "finetunedweights.ome.io"} <= {
        name for kind, name in kinds if kind == "CustomResourceDefinition"
    }
    assert ("Deployment", MANAGER) in kinds
    assert not [k for k in kinds if k[0] == "DaemonSet"]
    assert shipped_settings().worker.mode is WorkerMode.JOB


def test_the_settings_configmap_is_what_the_processes_load(rendered: list[dict[str, Any]]) -> None:
    (configmap,) = [o for o in rendered if o["kind"] == "ConfigMap"]
    assert configmap["metadata"]["name"].startswith("modelferry-config-")  # content hash: rolls pods
    assert yaml.safe_load(configmap["data"]["config.yaml"]) == yaml.safe_load(
        (DEPLOY / "config" / "config.yaml").read_text()
    )
    manager = _manager(rendered)["spec"]["template"]["spec"]
    assert {"name": "config", "configMap": {"name": configmap["metadata"]["name"]}} in manager["volumes"]
    assert shipped_settings().kube.agent_namespace == NAMESPACE


# --- the manager ------------------------------------------------------------------------------


def test_manager_runs_two_replicas_electing_a_leader_in_the_agent_namespace(
    rendered: list[dict[str, Any]],
) -> None:
    manager = _manager(rendered)
    assert manager["spec"]["replicas"] == 2
    pod = manager["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][0] == "controller" and "--no-leader-election" not in container["args"]
    assert _env(container)["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}  # Lease identity
    role = find(rendered, "Role", "modelferry-leader-election")
    assert role["metadata"]["namespace"] == shipped_settings().kube.agent_namespace
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]
    binding = find(rendered, "RoleBinding", "modelferry-leader-election")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NAMESPACE}
    ]
    assert LEASE_NAME == "modelferry-watcher"  # the name deploy/manager/manager.yaml's comment gives


def test_manager_is_non_root_with_a_read_only_root_filesystem(rendered: list[dict[str, Any]]) -> None:
    pod = _manager(rendered)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}  # the one writable path


def test_every_container_requests_resources(with_daemonset: list[dict[str, Any]]) -> None:
    for where, pod in pod_templates(with_daemonset):
        for container in pod["containers"]:
            requests = container.get("resources", {}).get("requests", {})
            assert {"cpu", "memory"} <= set(requests), f"{where}/{container['name']}"
            assert "memory" in container["resources"].get("limits", {}), f"{where}/{container['name']}"


def test_manager_probes_only_what_the_controller_serves(rendered: list[dict[str, Any]]) -> None:
    """The probes ask the paths modelferry/commands/health.py serves, on the port and address the
    config gives the controller: a probe of anything else would restart a healthy pod forever."""
    settings = shipped_settings()
    assert settings.health.bind_address == "0.0.0.0"  # the kubelet asks on the pod's IP
    (container,) = _manager(rendered)["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": settings.health.port}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


# --- RBAC -------------------------------------------------------------------------------------


def _granted(objects: list[dict[str, Any]], service_account: str) -> set[tuple[str | None, str, str, str]]:
    """(namespace or None for cluster-wide, apiGroup, resource, verb) granted to the account."""
    granted: set[tuple[str | None, str, str, str]] = set()
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        subjects = binding.get("subjects", [])
        if {"kind": "ServiceAccount", "name": service_account, "namespace": NAMESPACE} not in subjects:
            continue
        ref = binding["roleRef"]
        role = find(objects, ref["kind"], ref["name"])
        scope = binding["metadata"].get("namespace")
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted |= {(scope, group, resource, verb) for verb in rule["verbs"]}
    return granted


def test_each_role_has_its_own_service_account(with_daemonset: list[dict[str, Any]]) -> None:
    accounts = {o["metadata"]["name"] for o in with_daemonset if o["kind"] == "ServiceAccount"}
    assert accounts == {CONTROLLER_SA, NODE_WORKER_SA}
    assert _manager(with_daemonset)["spec"]["template"]["spec"]["serviceAccountName"] == CONTROLLER_SA
    daemonset = find(with_daemonset, "DaemonSet", DAEMONSET)
    assert daemonset["spec"]["template"]["spec"]["serviceAccountName"] == NODE_WORKER_SA
    assert shipped_settings().worker.service_account == NODE_WORKER_SA  # what the Jobs run as


def test_node_worker_may_only_get_secrets_in_the_agent_namespace(rendered: list[dict[str, Any]]) -> None:
    assert _granted(rendered, NODE_WORKER_SA) == {(NAMESPACE, "", "secrets", "get")}


def test_controller_gets_what_its_activities_and_watcher_call_and_no_secrets(
    rendered: list[dict[str, Any]],
) -> None:
    granted = _granted(rendered, CONTROLLER_SA)
    models = ("basemodels", "clusterbasemodels", "finetunedweights")
    expected = (
        {(None, "ome.io", m, v) for m in models for v in ("get", "list", "watch", "patch")}
        | {(None, "ome.io", f"{m}/status", v) for m in models for v in ("get", "patch")}
        | {(None, "", "nodes", v) for v in ("get", "list", "watch", "patch")}
        | {(None, "", "events", v) for v in ("get", "create", "patch")}
        | {(NAMESPACE, "", "configmaps", v) for v in ("get", "list", "create", "update", "delete")}
        | {(NAMESPACE, "batch", "jobs", v) for v in ("get", "create", "delete")}
        | {(NAMESPACE, "coordination.k8s.io", "leases", v) for v in ("get", "create", "update")}
    )
    assert granted == expected
    assert not [g for g in granted if g[2] == "secrets" or "*" in g]


@pytest.mark.parametrize("path", sorted((DEPLOY / "rbac").glob("*.yaml")), ids=lambda p: p.name)
def test_every_rbac_rule_says_who_needs_it(path: Path) -> None:
    lines = path.read_text().splitlines()
    rules = [i for i, line in enumerate(lines) if re.match(r"\s*- apiGroups:", line)]
    for i in rules:
        assert lines[i - 1].strip().startswith("#"), f"{path.name}:{i + 1}: a rule without a comment above"


# --- node workers -----------------------------------------------------------------------------


def test_node_worker_component_adds_a_daemonset_and_switches_the_mode(
    with_daemonset: list[dict[str, Any]],
) -> None:
    (container,) = _manager(with_daemonset)["spec"]["template"]["spec"]["containers"]
    assert _env(container)["MODELFERRY_WORKER_MODE"] == WorkerMode.DAEMONSET.value
    daemonset = find(with_daemonset, "DaemonSet", DAEMONSET)
    pod = daemonset["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    assert worker["args"][:3] == ["worker", "--node", "$(NODE_NAME)"]
    assert _env(worker)["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}  # downward API
    assert {"operator": "Exists"} in pod["tolerations"]


def test_node_workers_mount_exactly_the_allowed_models_roots(with_daemonset: list[dict[str, Any]]) -> None:
    settings = shipped_settings()
    roots = {*settings.policy.models_roots, settings.worker.models_host_path}
    daemonset = find(with_daemonset, "DaemonSet", DAEMONSET)["spec"]["template"]["spec"]
    job = job_template()["spec"]["template"]["spec"]
    for pod in (daemonset, job):
        assert _host_paths(pod) == {root: root for root in roots}  # the same path inside and out


def test_daemonset_worker_has_no_capabilities_and_a_read_only_image(
    with_daemonset: list[dict[str, Any]],
) -> None:
    pod = find(with_daemonset, "DaemonSet", DAEMONSET)["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    context = worker["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in context and not pod.get("hostNetwork") and not pod.get("hostPID")


def test_documented_job_template_is_what_the_controller_builds() -> None:
    # On a mismatch run: python -m tests.deploy.manifests
    assert JOB_TEMPLATE_FILE.read_text() == render_job_template()
    resources = yaml.safe_load((NODE_WORKER / "kustomization.yaml").read_text())["resources"]
    assert JOB_TEMPLATE_FILE.name not in resources


# --- the namespace and its admission ------------------------------------------------------------


def test_namespace_enforces_privileged_only_for_host_paths_and_reports_beyond_baseline(
    rendered: list[dict[str, Any]],
) -> None:
    labels = find(rendered, "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"  # hostPath needs it
    assert labels["pod-security.kubernetes.io/audit"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == "baseline"
    binding = find(rendered, "ValidatingAdmissionPolicyBinding", "modelferry-node-worker-host-paths")
    selector = binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"]
    assert selector.items() <= labels.items()  # the policy covers the namespace
    assert binding["spec"]["validationActions"] == ["Deny"]


def test_host_path_policy_names_the_settings_service_account_and_roots(
    rendered: list[dict[str, Any]],
) -> None:
    settings = shipped_settings()
    policy = find(rendered, "ValidatingAdmissionPolicy", "modelferry-node-worker-host-paths")
    expressions = " ".join(v["expression"] for v in policy["spec"]["validations"])
    (account,) = set(re.findall(r"serviceAccountName == '([^']+)'", expressions))
    assert account == settings.worker.service_account
    (listed,) = re.findall(r"p in \[([^\]]*)\]", expressions)
    roots = {root.strip().strip("'") for root in listed.split(",")}
    assert roots == {*settings.policy.models_roots, settings.worker.models_host_path}
