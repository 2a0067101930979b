"""`/healthz` and `/readyz` for the controller's probes: a tiny HTTP responder on the event loop.

Liveness (`/healthz`) answers as long as the event loop runs and no long-running part of the
process (the watcher, the control worker) has ended: a hung or crashed loop is what a restart
fixes. Readiness (`/readyz`) also asks the dependencies — Temporal and the Kubernetes API — each
at most every `CHECK_INTERVAL` seconds, so probes never hammer them. Either answers 200 `ok`, or
503 with one line per failing check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

CHECK_INTERVAL = 5.0  # seconds a dependency check's answer is reused (probes run every ~10 s)
CHECK_TIMEOUT = 3.0  # a dependency that takes longer is not ready
_MAX_REQUEST_LINE = 4096

Check = Callable[[], Awaitable[None]]  # raises when the dependency is not usable


@dataclass
class Health:
    """What the probes ask: parts that must keep running, and dependencies that must answer."""

    tasks: dict[str, asyncio.Task[object]] = field(default_factory=dict)
    checks: dict[str, Check] = field(default_factory=dict)
    _cached: dict[str, tuple[float, str | None]] = field(default_factory=dict)

    def live_problems(self) -> list[str]:
        problems = []
        for name, task in self.tasks.items():
            if task.done():
                error = None if task.cancelled() else task.exception()
                problems.append(f"{name}: stopped" + (f" ({error!r})" if error else ""))
        return problems

    async def ready_problems(self) -> list[str]:
        problems = self.live_problems()
        for name, check in self.checks.items():
            failure = await self._run_check(name, check)
            if failure:
                problems.append(f"{name}: {failure}")
        return problems

    async def _run_check(self, name: str, check: Check) -> str | None:
        now = time.monotonic()
        cached = self._cached.get(name)
        if cached is not None and now - cached[0] < CHECK_INTERVAL:
            return cached[1]
        try:
            await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT)
            failure = None
        except Exception as error:  # any failure means "not ready", with the reason shown
            failure = f"{type(error).__name__}: {error}"[:300]
        self._cached[name] = (now, failure)
        return failure


async def serve_health(health: Health, *, host: str, port: int) -> asyncio.Server:
    """Start answering probes on host:port (port 0: a free one; see `server.sockets`)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=CHECK_TIMEOUT)
            parts = line[:_MAX_REQUEST_LINE].decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else ""
            if path == "/healthz":
                problems = health.live_problems()
            elif path == "/readyz":
                problems = await health.ready_problems()
            else:
                await _respond(writer, 404, "not found\n")
                return
            if problems:
                await _respond(writer, 503, "".join(f"{p}\n" for p in problems))
            else:
                await _respond(writer, 200, "ok\n")
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(answer, host=host, port=port)


async def _respond(writer: asyncio.StreamWriter, status: int, body: str) -> None:
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    data = body.encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + data)
    await writer.drain()
