"""The controller's probe endpoints: `/healthz` fails when a long-running part has stopped,
`/readyz` also when a dependency does not answer, each failure named on its own line; a
dependency is asked at most every CHECK_INTERVAL seconds."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from modelferry.commands.health import Health, serve_health


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
    assert await get(port, "/healthz") == (200, "ok\n")
    assert await get(port, "/readyz") == (200, "ok\n")
    assert (await get(port, "/metrics"))[0] == 404


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
