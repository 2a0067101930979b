"""`modelferry redownload|rollback|retry`, `status` and `history` against a real Temporal dev
server (a stand-in "ModelWorkflow" with the real Update names, types and validators) and the
embedded API server: what is printed, and the exit codes."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from modelferry.apiserver.testing import running_apiserver
from modelferry.cli import main
from modelferry.dev.temporal_server import TemporalDevServer
from modelferry.messages import AdminRequest, NodeOutcome
from modelferry.names import API_GROUP_VERSION, CONFIGMAP_STATUS_LABEL, model_workflow_id
from tests.cli.standin import StandInModelWorkflow

T = TypeVar("T")

NODES = {
    "n1": NodeOutcome(node="n1", state="Ready", version_id="v2", kept_versions=["v1"]),
    "n2": NodeOutcome(node="n2", state="Failed", reason="AccessDenied", message="403 from the bucket"),
}


class Background:
    """An event loop in a thread: the stand-in's worker runs there while the CLI (which runs its
    own `asyncio.run`) is called from the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Stack:
    def __init__(self, temporal: TemporalDevServer, kubeconfig: Path) -> None:
        self.temporal = temporal
        self.kubeconfig = kubeconfig
        self.bg = Background()
        self.task_queue = f"cli-{uuid.uuid4().hex[:8]}"
        self.client: Client = self.bg.run(
            Client.connect(temporal.address, data_converter=pydantic_data_converter)
        )
        self.worker = self.bg.run(self._start_worker())

    async def _start_worker(self) -> Worker:
        worker = Worker(self.client, task_queue=self.task_queue, workflows=[StandInModelWorkflow])
        self.worker_task = asyncio.create_task(worker.run())
        return worker

    def start_model(self, name: str) -> WorkflowHandle[Any, Any]:
        workflow_id = model_workflow_id(kind="ClusterBaseModel", namespace=None, name=name)
        return self.bg.run(
            self.client.start_workflow("ModelWorkflow", NODES, id=workflow_id, task_queue=self.task_queue)
        )

    def args(self) -> list[str]:
        return ["--temporal-address", self.temporal.address, "--kubeconfig", str(self.kubeconfig)]

    def close(self) -> None:
        self.bg.run(self.worker.shutdown())
        self.bg.stop()


@pytest.fixture(scope="module")
def stack(
    temporal: TemporalDevServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, Any]]:
    kubeconfig = tmp_path_factory.mktemp("kube") / "kubeconfig"
    with running_apiserver(kubeconfig=kubeconfig) as api:
        built = Stack(temporal, kubeconfig)
        try:
            yield built, api
        finally:
            built.close()


@pytest.fixture(autouse=True)
def _no_dev_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./.modelferry/settings.yaml of a developer's dev run
    monkeypatch.delenv("MODELFERRY_CONFIG", raising=False)


def model_name() -> str:
    return f"llama-{uuid.uuid4().hex[:6]}"


def test_an_accepted_rollback_prints_its_plan(
    stack: tuple[Stack, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    s, _ = stack
    name = model_name()
    handle = s.start_model(name)
    code = main(["rollback", f"cbm/{name}", "--node", "n1", "--reason", "bad output", *s.args()])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"rollback cbm/{name}: accepted for n1" in out
    assert "n1: serve version v1" in out
    requests = s.bg.run(handle.query("requests", result_type=list[AdminRequest]))
    assert len(requests) == 1
    assert requests[0].reason == "bad output" and requests[0].nodes == ["n1"]
    assert requests[0].requested_by.startswith("cli:") and "@" in requests[0].requested_by


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["redownload", "{model}", "--node", "n9"], "unknown node(s) n9"),
        (["rollback", "{model}", "--node", "n1", "--to", "v7"], "version v7 is not kept on n1"),
        (["retry", "{model}", "--node", "n1"], "nothing failed to retry"),
    ],
)
def test_a_refused_request_prints_the_validators_words_and_exits_2(
    stack: tuple[Stack, Any], capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    s, _ = stack
    name = model_name()
    s.start_model(name)
    code = main([a.format(model=f"clusterbasemodel/{name}") for a in argv] + s.args())
    err = capsys.readouterr().err
    assert code == 2
    assert says in err and "refused" in err


def test_an_unknown_model_exits_2(stack: tuple[Stack, Any], capsys: pytest.CaptureFixture[str]) -> None:
    s, _ = stack
    assert main(["retry", "cbm/nobody-here", *s.args()]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_a_bad_model_argument_names_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["retry", "bm/only-a-name"])
    assert exited.value.code == 2
    assert "'bm/only-a-name'" in capsys.readouterr().err


def test_history_shows_the_admin_action_decoded(
    stack: tuple[Stack, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    s, _ = stack
    name = model_name()
    s.start_model(name)
    assert main(["retry", f"cbm/{name}", "--reason", "bucket fixed", *s.args()]) == 0
    capsys.readouterr()
    assert main(["history", f"cbm/{name}", "--json", *s.args()]) == 0
    out = capsys.readouterr().out
    rows = json.loads(out)
    admin = [r for r in rows if r["what"].startswith("admin retry by cli:")]
    assert len(admin) == 1 and admin[0]["what"].endswith(": bucket fixed")
    assert "eyJ" not in out and "payloads" not in out
    assert main(["history", f"cbm/{name}", *s.args()]) == 0
    assert "admin retry by cli:" in capsys.readouterr().out
    assert main(["history", "cbm/nobody-here", *s.args()]) == 2


def test_status_joins_resource_workflow_and_progress(
    stack: tuple[Stack, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    s, api = stack
    name = model_name()
    s.start_model(name)
    api.apply_manifest(
        {
            "apiVersion": API_GROUP_VERSION,
            "kind": "ClusterBaseModel",
            "metadata": {"name": name},
            "spec": {"storage": {"storageUri": "hf://org/model", "path": f"/raid/models/{name}"}},
            "status": {"state": "Failed", "nodesReady": ["n1"], "nodesFailed": ["n2"]},
        }
    )
    api.apply_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ome"}})
    progress = {"phase": "Downloading", "totalBytes": 1000, "completedBytes": 250, "speedBytesPerSec": 100}
    api.apply_manifest(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "n2", "namespace": "ome", "labels": {CONFIGMAP_STATUS_LABEL: "true"}},
            "data": {
                f"clusterbasemodel.{name}": json.dumps(
                    {"name": name, "status": "Updating", "progress": progress}
                )
            },
        }
    )
    assert main(["status", f"cbm/{name}", *s.args()]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"cbm/{name}  Failed"
    n1 = next(ln for ln in lines if ln.startswith("n1 "))
    n2 = next(ln for ln in lines if ln.startswith("n2 "))
    assert "Ready" in n1 and "v2" in n1
    assert "Failed" in n2 and "25%" in n2 and "AccessDenied: 403 from the bucket" in n2

    assert main(["status", *s.args()]) == 0
    overview = capsys.readouterr().out
    assert f"cbm/{name}" in overview and "Failed" in overview

    assert main(["status", "cbm/nobody-here", *s.args()]) == 2
    assert "unknown model cbm/nobody-here" in capsys.readouterr().err
