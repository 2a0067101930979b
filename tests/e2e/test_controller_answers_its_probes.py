"""`modelferry controller` as the manager Deployment runs it: it answers /healthz, /livez, /readyz
and /metrics, reports Temporal as not ready while Temporal is down (and alive all the same), is
ready again once Temporal is back, and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import yaml

from modelferry.commands.runtime import CONTROL_ACTIVITY_SLOTS
from modelferry.dev.temporal_server import TemporalDevServer, free_port
from tests.e2e.processes import worker_env

pytestmark = pytest.mark.e2e


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


async def until(port: int, path: str, status: int, *, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    last: tuple[int, str] = (0, "")
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(probe, port, path)
        if last[0] == status:
            return last[1]
        await asyncio.sleep(0.5)
    raise AssertionError(f"{path} never answered {status}; last: {last}")


async def test_probes_follow_the_controllers_dependencies(tmp_path, one_node_cluster):
    temporal = TemporalDevServer(db_file=tmp_path / "temporal.db", ui_port=None, log_file=tmp_path / "t.log")
    temporal.start()
    await temporal.wait_ready()
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "temporal": {"address": temporal.address},
                "kube": {"kubeconfig": str(one_node_cluster.kubeconfig)},
                "health": {"bind_address": "127.0.0.1", "port": port},
            }
        )
    )
    log = open(tmp_path / "controller.log", "ab")  # noqa: SIM115
    controller = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelferry.cli",
            "controller",
            "--config",
            str(config),
            "--no-leader-election",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=worker_env(),
    )
    try:
        assert await until(port, "/healthz", 200) == "ok\n"
        assert await until(port, "/readyz", 200) == "ok\n"
        assert await asyncio.to_thread(probe, port, "/livez") == (200, "ok\n")
        status, metrics = await asyncio.to_thread(probe, port, "/metrics")
        assert status == 200 and "# TYPE modelferry_kube_write_conflicts_total counter" in metrics
        slots = float(CONTROL_ACTIVITY_SLOTS)
        assert f'modelferry_worker_activity_slots{{task_queue="modelferry-control"}} {slots}' in metrics

        assert temporal.process is not None
        temporal.process.kill()
        temporal.process.wait()
        body = await until(port, "/readyz", 503)
        assert body.startswith("temporal: ")
        assert await asyncio.to_thread(probe, port, "/healthz") == (200, "ok\n")

        await temporal.restart()
        await until(port, "/readyz", 200)

        controller.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(controller.wait, 60) == 0
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait()
        log.close()
        temporal.stop()
