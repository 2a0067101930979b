"""What a process kubelet makes of a Pod, as pure functions over the Pod's JSON: the argv and the
environment of each container's process, where its volume mounts are on this machine, and the
status to report (phase, conditions, container statuses).

A process is not in a container, so paths are mapped instead of mounted. Every mount's path is
replaced by the local directory behind it wherever it appears as a path in `command`, `args`,
plain `env` values and `workingDir` (`/out/who` becomes `<node root>/out/who`). A modelferry
process is the exception: it already addresses the node's filesystem through `node.root`, so it
gets MODELFERRY_NODE_ROOT=<node root> and its hostPath mounts are left as they are, which is
exact only when a hostPath is mounted at its own path (our worker Jobs do that; anything else
is refused with a StartError rather than run against the wrong directory).
"""

from __future__ import annotations

import datetime
import functools
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

LOOPBACK = "127.0.0.1"  # every pod and every node of the harness lives here
EXIT_START_ERROR = 128  # what the real kubelet reports for a container that could not start
NODE_ROOT_ENV = "MODELFERRY_NODE_ROOT"

# (kind, name, key) -> value, or None when absent; kind is "configmaps" or "secrets".
Lookup = Callable[[str, str, str], str | None]
# (kind, name) -> all of its keys, or None when absent.
LookupAll = Callable[[str, str], dict[str, str] | None]


class StartError(RuntimeError):
    """The container cannot be run as a process (unknown entrypoint, missing reference, ...)."""


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the process --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    """A container path and the local path behind it; `host_path`: the hostPath volume's path."""

    path: str
    local: Path
    host_path: str | None = None


@functools.cache
def modelferry_commands() -> frozenset[str]:
    """The subcommands of `modelferry` (the worker image's entrypoint), from its own parser."""
    import argparse

    from modelferry.cli import build_parser

    return frozenset(
        name
        for action in build_parser()._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    )


def is_modelferry(container: Mapping[str, Any]) -> bool:
    """No command of its own (the image's entrypoint) and args that start with our subcommand."""
    args = container.get("args") or []
    return not container.get("command") and bool(args) and args[0] in modelferry_commands()


def container_argv(
    container: Mapping[str, Any], *, env: Mapping[str, str], mounts: Sequence[Mount]
) -> list[str]:
    """`command` + `args` with $(VAR) expanded and mount paths mapped; a modelferry container runs
    as `python -m modelferry.cli ARGS` with only its non-hostPath mounts mapped."""
    args = [expand(a, env) for a in container.get("args") or []]
    if is_modelferry(container):
        _check_host_paths_keep_their_paths(mounts)
        mapped = [m for m in mounts if m.host_path is None]
        return [sys.executable, "-m", "modelferry.cli", *(map_paths(a, mapped) for a in args)]
    command = [expand(c, env) for c in container.get("command") or []]
    if not command:
        raise StartError(
            f"container {container.get('name')}: no command, and the image's entrypoint "
            f"({container.get('image')}) is not known to the process kubelet"
        )
    return [map_paths(a, mounts) for a in (*command, *args)]


def _check_host_paths_keep_their_paths(mounts: Sequence[Mount]) -> None:
    for m in mounts:
        if m.host_path is not None and PurePosixPath(m.host_path) != PurePosixPath(m.path):
            raise StartError(
                f"hostPath {m.host_path} mounted at {m.path}: MODELFERRY_NODE_ROOT maps only a hostPath "
                "mounted at its own path"
            )


def working_dir(container: Mapping[str, Any], *, mounts: Sequence[Mount], default: Path) -> Path:
    given = container.get("workingDir")
    return Path(map_paths(given, mounts)) if given else default


def map_paths(text: str, mounts: Sequence[Mount]) -> str:
    """Each mount path, where it starts a path (`/out`, `/out/x`, `>/out/x`, not `/output`), is
    replaced by its local directory, in one pass (a replacement is never mapped again: `/tmp` as a
    mount must not remap a claim's local `/tmp/...` directory); nested mounts: the longest wins."""
    if not mounts:
        return text
    local = {str(PurePosixPath(m.path)): str(m.local) for m in mounts}
    alternatives = "|".join(re.escape(p) for p in sorted(local, key=len, reverse=True))
    pattern = rf"(?<![\w./-])({alternatives})(?=/|$|[^\w.-])"
    return re.sub(pattern, lambda found: local[found.group(1)], text)


# --- the environment ----------------------------------------------------------------------------

_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: a defined VAR is replaced, an undefined one kept as written,
    and $$ is a literal $."""

    def one(found: re.Match[str]) -> str:
        if found.group(0) == "$$":
            return "$"
        return env.get(found.group(1), found.group(0))

    return _REFERENCE.sub(one, text)


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """A downward-API fieldRef of this pod."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": LOOPBACK,
        "status.podIPs": LOOPBACK,
        "status.hostIP": LOOPBACK,
        "status.hostIPs": LOOPBACK,
    }
    if path in simple:
        return str(simple[path] or "")
    found = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if found:
        return str((meta.get(found.group(1)) or {}).get(found.group(2), ""))
    raise StartError(f"fieldRef {path} is not supported by the process kubelet")


def container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    base: Mapping[str, str],
    lookup: Lookup,
    lookup_all: LookupAll,
    mounts: Sequence[Mount],
) -> dict[str, str]:
    """`base` (the node's: PATH, the API server, ...), then `envFrom`, then `env` in order, each
    value expanded against what came before it, as the kubelet does."""
    env = dict(base)
    for source in container.get("envFrom") or []:
        kind, ref = _ref_kind(source, "configMapRef", "secretRef")
        values = lookup_all(kind, ref["name"])
        if values is None and not ref.get("optional"):
            raise StartError(f"{kind} {ref['name']} not found (envFrom)")
        env.update({source.get("prefix", "") + k: v for k, v in (values or {}).items()})
    for var in container.get("env") or []:
        env[var["name"]] = _env_value(pod, var, env=env, lookup=lookup, mounts=mounts)
    return env


def _env_value(
    pod: Mapping[str, Any],
    var: Mapping[str, Any],
    *,
    env: Mapping[str, str],
    lookup: Lookup,
    mounts: Sequence[Mount],
) -> str:
    source = var.get("valueFrom")
    if source is None:
        return map_paths(expand(var.get("value", ""), env), mounts)
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"])
    kind, ref = _ref_kind(source, "configMapKeyRef", "secretKeyRef")
    value = lookup(kind, ref["name"], ref["key"])
    if value is None and not ref.get("optional"):
        raise StartError(f"{kind} {ref['name']} has no key {ref['key']} (env {var['name']})")
    return value or ""


def _ref_kind(source: Mapping[str, Any], configmap: str, secret: str) -> tuple[str, Mapping[str, Any]]:
    if configmap in source:
        return "configmaps", source[configmap]
    if secret in source:
        return "secrets", source[secret]
    raise StartError(f"env source {sorted(source)} is not supported by the process kubelet")


# --- the status ---------------------------------------------------------------------------------


@dataclass
class ContainerRun:
    """What the kubelet knows of one container: its state as the API spells it."""

    name: str
    image: str
    starts: int = 0
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    container_id: str = ""

    @property
    def restart_count(self) -> int:
        return max(self.starts - 1, 0)

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def exit_code(self) -> int | None:
        terminated = self.state.get("terminated")
        return None if terminated is None else int(terminated["exitCode"])

    def start(self, pid: int | None) -> None:
        """Running (`pid` None: it could not even start, and `finish` follows at once)."""
        if "terminated" in self.state:
            self.last_state = self.state
        self.starts += 1
        self.state = {"running": {"startedAt": now()}}
        self.container_id = f"process://{pid}" if pid else ""

    def finish(self, exit_code: int, *, reason: str | None = None, message: str | None = None) -> None:
        started = (self.state.get("running") or {}).get("startedAt")
        terminated: dict[str, Any] = {
            "exitCode": exit_code,
            "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "finishedAt": now(),
            "startedAt": started or now(),
        }
        if message:
            terminated["message"] = message
        if self.container_id:
            terminated["containerID"] = self.container_id
        self.state = {"terminated": terminated}

    def settle(self) -> None:
        """The pod is over: a container waiting to restart is shown as it last ended, one that
        never ran as ContainerStatusUnknown (137, as the kubelet does)."""
        if "terminated" in self.state:
            return
        if "terminated" in self.last_state:
            self.state, self.last_state = self.last_state, {}
        else:
            self.finish(
                137,
                reason="ContainerStatusUnknown",
                message="The container could not be located when the pod was terminated",
            )

    def back_off(self) -> None:
        """Terminated, to be restarted (OnFailure/Always): the API shows CrashLoopBackOff."""
        self.last_state = self.state
        self.state = {"waiting": {"reason": "CrashLoopBackOff"}}

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "containerID": self.container_id,
            "ready": self.running,
            "started": self.running,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }


def exit_code_of(returncode: int) -> int:
    """Popen's -N for "killed by signal N" as a container runtime reports it: 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def should_restart(restart_policy: str, exit_code: int) -> bool:
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


def phase(runs: Sequence[ContainerRun], *, started: bool, final: bool = False) -> str:
    """Pending until the processes start; then Running until every container has terminated for
    good (the caller does not mark a container terminated while it will restart it), or `final`
    (the pod is being deleted): Succeeded if every exit code is 0, else Failed."""
    if not started and not final:
        return "Pending"
    if final or all(r.exit_code is not None for r in runs):
        return "Succeeded" if all(r.exit_code == 0 for r in runs) else "Failed"
    return "Running"


class Conditions:
    """Pod conditions with `lastTransitionTime` kept until the status actually changes."""

    def __init__(self) -> None:
        self._current: dict[str, dict[str, Any]] = {}

    def set(self, kind: str, true: bool, *, reason: str | None = None, message: str | None = None) -> None:
        status = "True" if true else "False"
        previous = self._current.get(kind)
        condition: dict[str, Any] = {"type": kind, "status": status}
        condition["lastTransitionTime"] = (
            previous["lastTransitionTime"] if previous and previous["status"] == status else now()
        )
        condition["lastProbeTime"] = None
        if reason:
            condition["reason"] = reason
        if message:
            condition["message"] = message
        self._current[kind] = condition

    def as_list(self) -> list[dict[str, Any]]:
        return list(self._current.values())


def set_pod_conditions(
    conditions: Conditions, runs: Sequence[ContainerRun], *, sandbox_ready: bool, pod_phase: str
) -> None:
    conditions.set("PodScheduled", True)
    conditions.set("PodReadyToStartContainers", sandbox_ready)
    conditions.set("Initialized", True)
    unready = [r.name for r in runs if not r.running]
    if pod_phase in ("Succeeded", "Failed"):
        reason, message = "PodCompleted", None
    elif unready:
        reason, message = "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
    else:
        reason, message = None, None
    conditions.set("ContainersReady", not unready, reason=reason, message=message)
    conditions.set("Ready", not unready, reason=reason, message=message)
