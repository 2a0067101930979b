"""Every rule of deploy/rbac is needed, and together they are enough, on the real control plane.

The scenario is the smallest that touches every rule: `modelferry controller` (leader-elected, as
`modelferry-controller`) in Job mode brings a ClusterBaseModel from a gated repo of the fake Hub to
Ready on a process kubelet's node (the worker Job's Pod runs as `modelferry-node-worker` and reads
the storageKey Secret), then the model is deleted and its finalizer released. With all rules it
passes. Then each rule of each Role/ClusterRole in deploy/rbac is removed in turn (the others left
as they are; one control plane, the full role put back after each case), and the scenario must be
refused with a 403 naming a resource of that rule, as the API server words it ('User
"system:serviceaccount:ome:<sa>" cannot <verb> resource "<resource>"'), in the controller's log,
the model's status or the worker's log (the node worker words a refused Secret itself:
`PRODUCT_WORDS`). A rule whose removal breaks nothing is needed by nothing:
the case fails saying so, and the rule should leave deploy/rbac.

About 2 minutes on 2 cores: marked `faults` with the other long tests (CI runs them).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelferry.dev.kube.cluster import ControlPlane
from modelferry.dev.kube.kubelet import ProcessKubelet, running_nodes
from modelferry.dev.temporal_server import TemporalDevServer
from tests.e2e.processes import worker_env
from tests.servers.fake_hf import FakeHub

from .product import AGENT_NAMESPACE, DEPLOY, Kubectl, Product, install_product, must, reset_product_state

pytestmark = [pytest.mark.controlplane, pytest.mark.faults]

NODE = "gpu-1"
SECRET = "hf-token"
TOKEN = "hf_good"
CONFIG = json.dumps(
    {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
        "vocab_size": 256,
        "max_position_embeddings": 1024,
    }
).encode()
SCENARIO_TIMEOUT = 90.0
# Where the product words a refusal itself instead of passing the API server's on: the node
# worker's Secret read (activities/secrets.py, an AccessDeniedError naming the Secret).
PRODUCT_WORDS = {"secrets": r"AccessDeniedError: storageKey: not allowed to read Secret \S+"}
SUBJECTS = {  # the role's name -> the ServiceAccount deploy/rbac binds it to
    "modelferry-controller": "modelferry-controller",
    "modelferry-controller-namespaced": "modelferry-controller",
    "modelferry-leader-election": "modelferry-controller",
    "modelferry-node-worker-secrets": "modelferry-node-worker",
}


@dataclass(frozen=True)
class Rule:
    document: dict[str, Any]  # the whole Role/ClusterRole, as deploy/rbac has it
    index: int

    @property
    def rule(self) -> dict[str, Any]:
        return dict(self.document["rules"][self.index])

    @property
    def role(self) -> str:
        return str(self.document["metadata"]["name"])

    @property
    def id(self) -> str:
        return f"{self.role}[{self.index}]:{','.join(self.rule['resources'])}"

    def without(self) -> dict[str, Any]:
        rules = [r for i, r in enumerate(self.document["rules"]) if i != self.index]
        return {**self.document, "rules": rules}

    def refusal(self) -> re.Pattern[str]:
        """The API server's words for refusing this rule's ServiceAccount one of its resources."""
        user = f"system:serviceaccount:{AGENT_NAMESPACE}:{SUBJECTS[self.role]}"
        resources = "|".join(re.escape(r) for r in self.rule["resources"])
        words = [rf'User \\?"{re.escape(user)}\\?" cannot \w+ resource \\?"(?:{resources})\\?"']
        words += [PRODUCT_WORDS[r] for r in self.rule["resources"] if r in PRODUCT_WORDS]
        return re.compile("|".join(words))

    def can_i(self, kubectl: Kubectl) -> bool:
        group = self.rule["apiGroups"][0]
        resource, _, sub = self.rule["resources"][0].partition("/")
        args = [
            "auth",
            "can-i",
            self.rule["verbs"][0],
            f"{resource}.{group}" if group else resource,
            f"--as=system:serviceaccount:{AGENT_NAMESPACE}:{SUBJECTS[self.role]}",
            f"--namespace={AGENT_NAMESPACE}",
        ]
        return kubectl(*args, *([f"--subresource={sub}"] if sub else [])).returncode == 0


def rbac_rules() -> list[Rule]:
    found = []
    for path in sorted((DEPLOY / "rbac").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if (
                document
                and document.get("kind") in ("Role", "ClusterRole")
                and path.name != "kustomization.yaml"
            ):
                found += [Rule(document, i) for i in range(len(document["rules"]))]
    return found


RULES = rbac_rules()


@dataclass
class Outcome:
    ready: bool = False
    removed: bool = False
    failed: str | None = None  # the model's Ready condition, had it failed without `stop_at`
    refused: str | None = None  # the 403 that stopped it, as found
    evidence: str = ""


@pytest.fixture(scope="module")
def product(
    control_plane: ControlPlane, kubectl: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Product:
    return install_product(control_plane, kubectl, directory=tmp_path_factory.mktemp("product"))


@pytest.fixture(scope="module")
def node(
    control_plane: ControlPlane, product: Product, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProcessKubelet]:
    with running_nodes(
        control_plane, nodes={NODE: {"tier": "gpu"}}, root=tmp_path_factory.mktemp("nodes")
    ) as kubelets:
        yield kubelets[NODE]


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub(redirect_lfs=False) as h:
        h.add_repo(
            "acme/gated", {"config.json": CONFIG, "weights.bin": b"w" * 4096}, gated=True, tokens={TOKEN}
        )
        yield h


def run_scenario(
    product: Product, node: ProcessKubelet, hub: FakeHub, tmp: Path, *, stop_at: re.Pattern[str] | None
) -> Outcome:
    """Deliver, then delete; stops early once `stop_at` is found in what the components said."""
    kubectl = product.kubectl
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET},
        "stringData": {"token": TOKEN},
    }
    must(kubectl("apply", f"--namespace={AGENT_NAMESPACE}", "--filename=-", input=json.dumps(secret)))
    temporal = TemporalDevServer(ui_port=None, log_file=tmp / "temporal.log")
    temporal.start()
    controller: subprocess.Popen[bytes] | None = None
    log = tmp / "controller.log"
    name = f"rbac-{uuid.uuid4().hex[:6]}"
    outcome = Outcome()
    try:
        asyncio.run(temporal.wait_ready())
        config = tmp / "controller.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "temporal": {"address": temporal.address},
                    "kube": {
                        "kubeconfig": str(product.controller_kubeconfig),
                        "agent_namespace": AGENT_NAMESPACE,
                    },
                    "worker": {"mode": "job", "idle_exit_seconds": 5.0, "schedule_to_start_seconds": 30.0},
                    "pipeline": {"download_heartbeat_seconds": 4.0, "failed_node_retry_seconds": 3600.0},
                    "health": {"port": 0},
                }
            )
        )
        with open(log, "ab") as out:
            controller = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "modelferry.cli",
                    "controller",
                    "--config",
                    str(config),
                    "--identity",
                    name,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=worker_env(),
            )
        model = {
            "apiVersion": "ome.io/v1beta1",
            "kind": "ClusterBaseModel",
            "metadata": {"name": name},
            "spec": {
                "vendor": "test",
                "version": "1.0.0",
                "storage": {
                    "storageUri": "hf://acme/gated",
                    "path": f"/raid/models/{name}",
                    "key": SECRET,
                    "parameters": {"endpoint": hub.url},
                },
            },
        }
        must(kubectl("apply", "--filename=-", input=json.dumps(model)))
        deadline = time.monotonic() + SCENARIO_TIMEOUT
        while time.monotonic() < deadline:
            got = kubectl("get", "clusterbasemodel", name, "--output=json")
            status = json.loads(got.stdout).get("status") or {} if got.returncode == 0 else {}
            outcome.evidence = "\n".join(
                [log.read_text(errors="replace"), json.dumps(status), *worker_logs(kubectl, node)]
            )
            if stop_at is not None and (found := stop_at.search(outcome.evidence)):
                outcome.refused = found.group(0)
                return outcome
            if status.get("state") == "Failed":
                outcome.failed = json.dumps(status.get("conditions"))
                return outcome
            if not outcome.ready and status.get("state") == "Ready":
                outcome.ready = True
                must(kubectl("delete", "clusterbasemodel", name, "--wait=false"))
            if outcome.ready and got.returncode != 0 and "NotFound" in got.stderr:
                outcome.removed = True
                return outcome
            time.sleep(0.5)
        return outcome
    finally:
        if controller is not None:
            controller.terminate()
            try:
                controller.wait(timeout=30)
            except subprocess.TimeoutExpired:
                controller.kill()
                controller.wait()
        temporal.stop()
        reset_product_state(kubectl, nodes=[])
        kubectl(
            "delete",
            "jobs",
            "--all",
            f"--namespace={AGENT_NAMESPACE}",
            "--cascade=foreground",
            "--timeout=30s",
        )


def worker_logs(kubectl: Kubectl, node: ProcessKubelet) -> list[str]:
    listed = kubectl("get", "pods", f"--namespace={AGENT_NAMESPACE}", "--output=json")
    pods = json.loads(listed.stdout)["items"] if listed.returncode == 0 else []
    logs = []
    for pod in pods:
        path = node.log_path(AGENT_NAMESPACE, pod["metadata"]["name"], "worker")
        if path is not None and path.exists():
            logs.append(path.read_text(errors="replace"))
    return logs


def put(kubectl: Kubectl, document: dict[str, Any]) -> None:
    must(kubectl("replace", "--filename=-", input=json.dumps(document)))


def test_all_rules_are_enough(product: Product, node: ProcessKubelet, hub: FakeHub, tmp_path: Path) -> None:
    started = time.monotonic()
    outcome = run_scenario(product, node, hub, tmp_path, stop_at=re.compile(r"cannot \w+ resource"))
    assert outcome.refused is None, f"refused with every rule: {outcome.refused}\n{outcome.evidence[-4000:]}"
    assert outcome.ready and outcome.removed, outcome.evidence[-4000:]
    print(f"all rules: {time.monotonic() - started:.1f}s")


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_each_rule_is_needed(
    product: Product, node: ProcessKubelet, hub: FakeHub, tmp_path: Path, rule: Rule
) -> None:
    kubectl = product.kubectl
    started = time.monotonic()
    put(kubectl, rule.without())
    try:
        deadline = time.monotonic() + 10
        while rule.can_i(kubectl):  # RBAC's informers catch up in milliseconds
            assert time.monotonic() < deadline, f"{rule.id}: still allowed after removing it"
            time.sleep(0.1)
        outcome = run_scenario(product, node, hub, tmp_path, stop_at=rule.refusal())
    finally:
        put(kubectl, rule.document)
        deadline = time.monotonic() + 10
        while not rule.can_i(kubectl):
            assert time.monotonic() < deadline, f"{rule.id}: not allowed again after putting it back"
            time.sleep(0.1)
    print(f"{rule.id}: {outcome.refused} ({time.monotonic() - started:.1f}s)")
    ended = "passed" if outcome.removed else outcome.failed or "timed out"
    assert outcome.refused is not None, (
        f"nothing needs {rule.id} ({json.dumps(rule.rule)}): the scenario {ended} without it\n"
        f"{outcome.evidence[-4000:]}"
    )
