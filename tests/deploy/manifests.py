"""What the deploy tests read: deploy/ rendered by kustomize (as shipped, and with the node-worker
Component), the settings in deploy/config, the Job template the controller builds from them, and
the Dockerfile's instructions.

`python -m tests.deploy.manifests` rewrites deploy/node-worker/job-template.yaml, the documented
Job template, from `modelferry.nodejob.build_worker_job` (a test fails when they drift).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelferry.nodejob import build_worker_job
from modelferry.settings import Settings, load_settings

PROJECT = Path(__file__).resolve().parents[2]
DEPLOY = PROJECT / "deploy"
DEFAULT = DEPLOY / "default"
NODE_WORKER = DEPLOY / "node-worker"
CONFIG_FILE = DEPLOY / "config" / "config.yaml"
JOB_TEMPLATE_FILE = NODE_WORKER / "job-template.yaml"
DOCKERFILE = PROJECT / "Dockerfile"
DOCKERIGNORE = PROJECT / ".dockerignore"
NAMESPACE = "ome"
EXAMPLE_NODE = "gpu-node-1"  # the node the documented Job template is built for

# Kinds kustomize or this test meets that have no namespace; everything else must be in `ome`.
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
)
_JOB_TEMPLATE_HEADER = """\
# Documentation only, not a kustomize resource: the per-node worker Job the controller creates
# (worker.mode: job) with deploy/config/config.yaml, here for node gpu-node-1. Generated from
# modelferry/nodejob.py build_worker_job by `python -m tests.deploy.manifests`; tests/deploy fail
# when it drifts. The node's name comes from the controller (spec.nodeName, --node), the models
# roots are hostPath volumes at the same paths, every taint is tolerated.
"""


def kubectl_binary() -> str:
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.exists():
        return str(beside_python)
    return "kubectl"


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize DIRECTORY`, parsed (fails the test with kustomize's message)."""
    done = subprocess.run(
        [kubectl_binary(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def write_overlay(directory: Path, *, components: list[Path]) -> Path:
    """A kustomization in `directory` that adds `components` to deploy/default, as a user would.
    Kustomize refuses absolute bases, so deploy/ is reached through a symlink."""
    (directory / "deploy").symlink_to(DEPLOY)
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["deploy/default"],
        "components": [f"deploy/{c.relative_to(DEPLOY)}" for c in components],
    }
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    return directory


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def shipped_settings() -> Settings:
    """deploy/config/config.yaml as the processes load it (no environment overrides)."""
    return load_settings(CONFIG_FILE, environ={})


def job_template() -> dict[str, Any]:
    return build_worker_job(settings=shipped_settings(), node=EXAMPLE_NODE, namespace=NAMESPACE)


def render_job_template() -> str:
    plain = json.loads(json.dumps(job_template()))  # no shared dicts, so no YAML anchors
    return _JOB_TEMPLATE_HEADER + yaml.safe_dump(plain, sort_keys=False)


def pod_templates(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload among `objects`."""
    for obj in objects:
        template = (obj.get("spec") or {}).get("template")
        if obj["kind"] in ("Deployment", "DaemonSet", "Job", "StatefulSet") and template:
            yield f"{obj['kind']}/{obj['metadata']['name']}", template["spec"]


# --- the Dockerfile ------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    arguments: str  # continuation lines joined, comments dropped


def dockerfile_instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile: `\\` continuations joined, comment lines and the
    `# syntax=` directive dropped (enough for the files we write; no heredocs)."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continuation
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continuation"
    return instructions


def key_values(arguments: str) -> dict[str, str]:
    """`LABEL`/`ENV` arguments in the `key=value ...` form, quotes removed."""
    pairs = {}
    for word in shlex.split(arguments):
        key, sep, value = word.partition("=")
        assert sep, f"not key=value: {word!r}"
        pairs[key] = value
    return pairs


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The instructions per build stage, each list starting with its FROM."""
    out: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            out.append([])
        assert out, f"{instruction.keyword} before the first FROM"
        out[-1].append(instruction)
    return out


def image_reference() -> str:
    """The reference the Dockerfile says it builds (its org.opencontainers.image.ref.name)."""
    final = stages(dockerfile_instructions(DOCKERFILE.read_text()))[-1]
    labels: dict[str, str] = {}
    for instruction in final:
        if instruction.keyword == "LABEL":
            labels.update(key_values(instruction.arguments))
    return labels["org.opencontainers.image.ref.name"]


if __name__ == "__main__":
    JOB_TEMPLATE_FILE.write_text(render_job_template())
    print(f"wrote {JOB_TEMPLATE_FILE.relative_to(PROJECT)}")
