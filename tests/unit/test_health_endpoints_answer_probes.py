"""The probe endpoints of the long-running roles: `/livez` fails when a long-running part has
stopped, `/healthz` also when a local check fails (a node worker's models roots not writable),
`/readyz` also when a dependency does not answer, each failure named on its own line; a
dependency is asked at most every CHECK_INTERVAL seconds. `/metrics` is the Prometheus registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio

from modelferry.commands.health import Health, roots_writable, serve_health


async def get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


@pytest_asyncio.fixture(loop_scope="function")  # the tests' loop: the server must run on it
async def probes():
    forever = asyncio.create_task(asyncio.Event().wait())
    calls: list[str] = []
    state = {"kube": None}

    async def kube() -> None:
        calls.append("kube")
        if state["kube"]:
            raise ConnectionError(state["kube"])

    health = Health(tasks={"watcher": forever}, checks={"kubernetes": kube})
    server = await serve_health(health, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    yield port, health, state, calls, forever
    server.close()
    forever.cancel()


async def test_all_well_is_ok(probes):
    port, *_ = probes
    assert await get(port, "/livez") == (200, "ok\n")
    assert await get(port, "/healthz") == (200, "ok\n")
    assert await get(port, "/readyz") == (200, "ok\n")
    assert (await get(port, "/nothing"))[0] == 404


async def test_metrics_are_the_prometheus_registry(probes):
    port, *_ = probes
    status, body = await get(port, "/metrics")
    assert status == 200
    assert "# TYPE model_agent_downloads_success_total counter" in body
    assert "# TYPE model_agent_download_duration_seconds histogram" in body


async def test_an_unwritable_models_root_is_unhealthy_but_alive(probes, tmp_path):
    port, health, *_ = probes
    root = tmp_path / "raid" / "models"
    root.mkdir(parents=True)
    health.local_checks["models roots"] = roots_writable([root])
    assert await get(port, "/healthz") == (200, "ok\n")
    # A directory no one can create a file in, root included (the tests may run as root).
    health.local_checks["models roots"] = roots_writable([root, Path("/proc")])
    health._cached.clear()
    status, body = await get(port, "/healthz")
    assert status == 503 and body.startswith("models roots: ")
    assert await get(port, "/livez") == (200, "ok\n")
    assert (await get(port, "/readyz"))[0] == 503


async def test_no_models_root_at_all_is_unhealthy(probes, tmp_path):
    port, health, *_ = probes
    health.local_checks["models roots"] = roots_writable([tmp_path / "missing"])
    status, body = await get(port, "/healthz")
    assert status == 503 and "no models root exists" in body


async def test_a_failing_dependency_is_not_ready_but_still_alive(probes):
    port, _, state, _, _ = probes
    state["kube"] = "connection refused"
    assert await get(port, "/healthz") == (200, "ok\n")
    status, body = await get(port, "/readyz")
    assert status == 503 and body == "kubernetes: ConnectionError: connection refused\n"


async def test_a_stopped_part_is_neither_alive_nor_ready(probes):
    port, health, _, _, _ = probes

    async def crash() -> None:
        raise RuntimeError("boom")

    crashed = asyncio.create_task(crash())
    await asyncio.sleep(0)
    health.tasks["control worker"] = crashed
    with pytest.raises(RuntimeError):
        await crashed
    status, body = await get(port, "/healthz")
    assert status == 503 and "control worker: stopped (RuntimeError('boom'))" in body
    assert (await get(port, "/readyz"))[0] == 503


async def test_dependencies_are_asked_at_most_every_check_interval(probes):
    port, _, _, calls, _ = probes
    for _ in range(5):
        await get(port, "/readyz")
    assert calls == ["kube"]
