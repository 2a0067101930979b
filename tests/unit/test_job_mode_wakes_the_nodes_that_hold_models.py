"""Job mode: a node has no worker once its models are Ready, so the controller sweeps every
verify interval and ensures the worker Job (the node's own queue) of each node whose labels say
it holds a model; the Job runs the checks due and exits when idle. One node's failure does not
stop the others, nor the sweep, nor the controller; other worker modes sweep nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from activities.nodeworker import wake_nodes_holding_models
from modelferry.commands.runtime import verify_sweep_interval, wake_nodes_for_verification
from modelferry.errors import KubeConflictError, KubeNotFoundError, KubeUnavailableError
from modelferry.nodejob import worker_job_name
from modelferry.settings import Settings, load_settings

NODES = [
    ("gpu-a", {"models.ome/u1": "Ready", "kubernetes.io/os": "linux"}),
    ("gpu-b", {"models.ome.io/clusterbasemodel.llama": "Ready"}),
    ("cpu-c", {"kubernetes.io/os": "linux"}),
]


class FakeKube:
    """Nodes and Jobs in memory, with a failure to inject per node or for the node list."""

    def __init__(self, nodes: list[tuple[str, dict[str, str]]] = NODES) -> None:
        self.nodes = nodes
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.created: list[str] = []
        self.failing_node: str | None = None
        self.list_fails = 0

    def list_nodes(self) -> list[tuple[str, dict[str, str]]]:
        if self.list_fails:
            self.list_fails -= 1
            raise KubeUnavailableError("list nodes: connection refused")
        return self.nodes

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        if self.failing_node and name == worker_job_name(node=self.failing_node):
            raise KubeUnavailableError(f"get job {name}: 503")
        try:
            return self.jobs[(namespace, name)]
        except KeyError:
            raise KubeNotFoundError(name) from None

    def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        if (namespace, name) in self.jobs:
            raise KubeConflictError(name)
        self.jobs[(namespace, name)] = body
        self.created.append(name)
        return body

    def delete_job(self, namespace: str, name: str) -> None:
        del self.jobs[(namespace, name)]

    def finish_all(self) -> None:
        for job in self.jobs.values():
            job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}


def _settings(mode: str = "job", **node: object) -> Settings:
    overrides: dict[str, object] = {"worker.mode": mode, "kube.agent_namespace": "ome"}
    overrides.update({f"node.{k}": v for k, v in node.items()})
    return load_settings(environ={}, overrides=overrides)


def _queue(job: dict[str, Any]) -> str:
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    return args[args.index("--task-queue") + 1]


def test_the_labelled_nodes_get_their_own_worker_job_and_the_others_none():
    kube = FakeKube()
    sweep = wake_nodes_holding_models(kube=kube, settings=_settings())  # type: ignore[arg-type]
    assert (sweep.created, sweep.running, sweep.failed) == (["gpu-a", "gpu-b"], [], [])
    assert sorted(kube.jobs) == sorted(("ome", worker_job_name(node=n)) for n in ("gpu-a", "gpu-b"))
    assert sorted(_queue(j) for j in kube.jobs.values()) == ["modelferry-node-gpu-a", "modelferry-node-gpu-b"]

    again = wake_nodes_holding_models(kube=kube, settings=_settings())  # type: ignore[arg-type]
    assert (again.created, again.running) == ([], ["gpu-a", "gpu-b"])  # running Jobs are left alone
    kube.finish_all()  # idle exit
    third = wake_nodes_holding_models(kube=kube, settings=_settings())  # type: ignore[arg-type]
    assert third.created == ["gpu-a", "gpu-b"] and len(kube.created) == 4


def test_an_error_on_one_node_does_not_stop_the_others(caplog):
    kube = FakeKube()
    kube.failing_node = "gpu-a"
    sweep = wake_nodes_holding_models(kube=kube, settings=_settings())  # type: ignore[arg-type]
    assert (sweep.created, sweep.failed) == (["gpu-b"], ["gpu-a"])
    assert "gpu-a" in caplog.text and "503" in caplog.text


@pytest.mark.parametrize(
    ("mode", "verify", "deep", "every"),
    [
        ("job", 600.0, 604800.0, 600.0),
        ("job", 0.0, 604800.0, 604800.0),  # cheap checks off: the deep ones still need a worker
        ("job", 0.0, 0.0, 0.0),
        ("daemonset", 600.0, 604800.0, 0.0),  # a worker runs on every node already
        ("static", 600.0, 604800.0, 0.0),
    ],
)
def test_only_job_mode_with_checks_sweeps(mode, verify, deep, every):
    settings = _settings(mode, verify_interval=verify, deep_verify_interval=deep)
    assert verify_sweep_interval(settings) == every


async def _wait_for(condition, *, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_the_sweep_runs_every_interval_survives_failures_and_stops_with_the_controller():
    kube = FakeKube()
    kube.list_fails = 1  # the first sweep cannot list the nodes
    stop = asyncio.Event()
    task = asyncio.create_task(
        wake_nodes_for_verification(kube=kube, settings=_settings(), stop=stop, interval=0.2)  # type: ignore[arg-type]
    )
    await asyncio.sleep(0.1)
    assert kube.list_fails == 1 and kube.created == []  # not at start: after one interval
    await _wait_for(lambda: len(kube.created) == 2)  # the failed sweep did not end the task
    kube.finish_all()
    await _wait_for(lambda: len(kube.created) == 4)
    stop.set()
    await asyncio.wait_for(task, timeout=1)


async def test_other_modes_return_at_once():
    stop = asyncio.Event()
    kube = FakeKube()
    await asyncio.wait_for(
        wake_nodes_for_verification(kube=kube, settings=_settings("daemonset"), stop=stop, interval=0.01),  # type: ignore[arg-type]
        timeout=1,
    )
    assert kube.created == []
