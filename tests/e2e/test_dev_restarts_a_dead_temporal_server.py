"""`modelferry dev` supervises its Temporal dev server: a SIGKILLed server comes back on the same
port and database and the system carries on (the model workflow from before the kill is the same
run after it); a server that cannot come back, or keeps dying, ends dev with a non-zero exit and
a message naming the cause and the Temporal log."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as kube_config
from temporalio.client import Client
from temporalio.service import RPCError

from modelferry.dev import temporal_server
from modelferry.dev.example import EXAMPLE_CLAIM, example_resource, write_example_model
from modelferry.dev.temporal_server import (
    RESTART_LIMIT,
    TemporalDevServer,
    TemporalServerFailed,
    supervise,
)
from modelferry.names import API_GROUP, API_VERSION, ModelKind, model_workflow_id
from tests.e2e.processes import worker_env
from tests.e2e.test_dev_mode_runs_the_whole_system import dev_command

pytestmark = pytest.mark.e2e


@contextmanager
def running_dev(home: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        dev = subprocess.Popen(
            dev_command(home, "--example"), stdout=out, stderr=subprocess.STDOUT, env=worker_env()
        )
    try:
        yield dev
    finally:
        if dev.poll() is None:
            dev.terminate()
            dev.wait(timeout=60)


def temporal_pid(dev_pid: int) -> int | None:
    """The `temporal server start-dev` child of `dev_pid` (Linux /proc), if one runs."""
    for children in Path(f"/proc/{dev_pid}/task").glob("*/children"):
        for pid in children.read_text().split():
            if "start-dev" in cmdline(int(pid)):
                return int(pid)
    return None


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except FileNotFoundError:
        return []


def option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


async def wait_for(
    probe: Callable[[], Any], *, dev: subprocess.Popen[bytes], log: Path, timeout: float
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := probe():
            return found
        assert dev.poll() is None, f"dev exited with {dev.returncode}:\n{log.read_text()[-4000:]}"
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s; dev log:\n{log.read_text()[-4000:]}")


async def wait_exit(dev: subprocess.Popen[bytes], *, log: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while dev.poll() is None:
        assert time.monotonic() < deadline, f"dev still running:\n{log.read_text()[-4000:]}"
        await asyncio.sleep(0.1)
    return dev.returncode


def ready(custom: k8s.CustomObjectsApi, name: str) -> bool:
    obj = custom.get_cluster_custom_object(API_GROUP, API_VERSION, ModelKind.CLUSTER_BASE_MODEL.plural, name)
    status = obj.get("status") or {}
    return (
        status.get("state") == "Ready" and status.get("observedGeneration") == obj["metadata"]["generation"]
    )


async def kill_and_wait_for_restart(
    dev: subprocess.Popen[bytes], *, log: Path, restarts: int
) -> tuple[int, int]:
    """SIGKILL the running server; return (old pid, new pid) once dev says it is back."""
    old = await wait_for(lambda: temporal_pid(dev.pid), dev=dev, log=log, timeout=30)
    os.kill(old, signal.SIGKILL)

    def back() -> int | None:
        pid = temporal_pid(dev.pid)
        return pid if pid and pid != old and log.read_text().count("is back on") >= restarts else None

    return old, await wait_for(back, dev=dev, log=log, timeout=90)


async def test_a_killed_server_is_restarted_in_place_and_models_still_become_ready(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "dev.log"
    with running_dev(home, log) as dev:
        await wait_for(
            lambda: "applied ClusterBaseModel/tiny-llama" in log.read_text(), dev=dev, log=log, timeout=120
        )
        old = temporal_pid(dev.pid)
        assert old is not None
        before = cmdline(old)
        temporal = await Client.connect(f"127.0.0.1:{option(before, '--port')}")
        workflow = temporal.get_workflow_handle(
            model_workflow_id(kind=ModelKind.CLUSTER_BASE_MODEL, namespace=None, name="tiny-llama")
        )

        deadline = time.monotonic() + 60
        while True:  # the watcher starts the model's workflow soon after the apply
            try:
                run_id = (await workflow.describe()).run_id
                break
            except RPCError:
                assert time.monotonic() < deadline, log.read_text()[-4000:]
                await asyncio.sleep(0.1)

        killed = time.monotonic()
        _, new = await kill_and_wait_for_restart(dev, log=log, restarts=1)
        back_after = time.monotonic() - killed
        text = log.read_text()
        assert f"(pid {old}) was killed by SIGKILL; restarting it" in text, text
        after = cmdline(new)
        assert option(after, "--port") == option(before, "--port")
        assert option(after, "--db-filename") == option(before, "--db-filename") == str(home / "temporal.db")

        custom = k8s.CustomObjectsApi(
            kube_config.new_client_from_config(config_file=str(home / "kubeconfig"))
        )
        await wait_for(lambda: ready(custom, "tiny-llama"), dev=dev, log=log, timeout=120)
        first_ready_after = time.monotonic() - killed
        # The same workflow run carries on: its history outlived the server.
        assert (await workflow.describe()).run_id == run_id

        # New work after the restart goes through the whole system too.
        write_example_model(home / "pvc" / EXAMPLE_CLAIM / "tiny-llama-2")
        custom.create_cluster_custom_object(
            API_GROUP, API_VERSION, ModelKind.CLUSTER_BASE_MODEL.plural, example_resource(name="tiny-llama-2")
        )
        await wait_for(lambda: ready(custom, "tiny-llama-2"), dev=dev, log=log, timeout=120)
        second_ready_after = time.monotonic() - killed
        assert dev.poll() is None
        dev.terminate()
        assert await wait_exit(dev, log=log, timeout=60) == 0, log.read_text()[-4000:]
    print(
        f"\nrecovery after SIGKILL (from the kill): server back {back_after:.2f}s, "
        f"tiny-llama Ready {first_ready_after:.2f}s, a model applied after it Ready {second_ready_after:.2f}s"
    )


async def test_dev_exits_non_zero_when_the_port_is_taken_before_the_restart(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "dev.log"
    with running_dev(home, log) as dev:
        await wait_for(lambda: "modelferry dev is up" in log.read_text(), dev=dev, log=log, timeout=120)
        pid = temporal_pid(dev.pid)
        assert pid is not None
        port = int(option(cmdline(pid), "--port"))
        squatter = socket.socket()
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while True:  # the port frees once the kernel has torn the process down
                try:
                    squatter.bind(("127.0.0.1", port))
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the killed server's port never freed"
                    time.sleep(0.005)
            squatter.listen()
            code = await wait_exit(dev, log=log, timeout=90)
        finally:
            squatter.close()
    text = log.read_text()
    assert code != 0, text
    assert "could not be restarted" in text and "in use" in text, text
    assert f"see its log {home / 'temporal.log'}" in text, text


async def test_dev_exits_non_zero_when_the_server_keeps_dying(tmp_path: Path) -> None:
    home, log = tmp_path / "home", tmp_path / "dev.log"
    with running_dev(home, log) as dev:
        await wait_for(lambda: "modelferry dev is up" in log.read_text(), dev=dev, log=log, timeout=120)
        for restarts in range(1, RESTART_LIMIT + 1):
            await kill_and_wait_for_restart(dev, log=log, restarts=restarts)
        last = temporal_pid(dev.pid)
        assert last is not None
        port = int(option(cmdline(last), "--port"))
        os.kill(last, signal.SIGKILL)
        code = await wait_exit(dev, log=log, timeout=60)
    text = log.read_text()
    assert code != 0, text
    assert f"it died {RESTART_LIMIT + 1} times within" in text and "giving up" in text, text
    assert f"see its log {home / 'temporal.log'}" in text, text
    with pytest.raises(OSError):  # no server was started again behind the error
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


async def test_supervise_gives_up_when_the_binary_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = TemporalDevServer(
        db_file=tmp_path / "temporal.db", ui_port=None, log_file=tmp_path / "temporal.log"
    )
    server.start()
    try:
        assert server.process is not None

        def gone() -> str:
            raise FileNotFoundError("the `temporal` CLI was not found")

        monkeypatch.setattr(temporal_server, "find_temporal_binary", gone)
        server.process.kill()
        with pytest.raises(TemporalServerFailed) as failed:
            await asyncio.wait_for(supervise(server, stop=asyncio.Event(), poll_seconds=0.1), 60)
        message = str(failed.value)
        assert "was killed by SIGKILL and could not be restarted" in message, message
        assert "`temporal` CLI was not found" in message and str(tmp_path / "temporal.log") in message, (
            message
        )
    finally:
        server.stop()
