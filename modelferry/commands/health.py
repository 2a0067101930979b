"""Probes and metrics of a long-running process (`controller`, `worker`, `dev`): a tiny HTTP
responder on the event loop.

Liveness (`/livez`) answers as long as the event loop runs and no long-running part of the
process (the watcher, the control worker, a node worker) has ended: a hung or crashed loop is what
a restart fixes. `/healthz` adds the process's own local checks (a node worker: its models roots
are writable); without any it is `/livez`. Readiness (`/readyz`) also asks the dependencies —
Temporal and the Kubernetes API — each at most every `CHECK_INTERVAL` seconds, so probes never
hammer them. Each answers 200 `ok`, or 503 with one line per failing check. `/metrics` is the
Prometheus registry of `modelferry.metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from modelferry import metrics

log = logging.getLogger(__name__)

CHECK_INTERVAL = 5.0  # seconds a dependency check's answer is reused (probes run every ~10 s)
CHECK_TIMEOUT = 3.0  # a dependency that takes longer is not ready
_MAX_REQUEST_LINE = 4096

Check = Callable[[], Awaitable[None]]  # raises when the dependency is not usable


@dataclass
class Health:
    """What the probes ask: parts that must keep running, and dependencies that must answer."""

    tasks: dict[str, asyncio.Task[object]] = field(default_factory=dict)
    checks: dict[str, Check] = field(default_factory=dict)  # dependencies: /readyz
    local_checks: dict[str, Check] = field(default_factory=dict)  # this host's own: /healthz, /readyz
    _cached: dict[str, tuple[float, str | None]] = field(default_factory=dict)

    def live_problems(self) -> list[str]:
        problems = []
        for name, task in self.tasks.items():
            if task.done():
                error = None if task.cancelled() else task.exception()
                problems.append(f"{name}: stopped" + (f" ({error!r})" if error else ""))
        return problems

    async def health_problems(self) -> list[str]:
        return self.live_problems() + await self._problems(self.local_checks)

    async def ready_problems(self) -> list[str]:
        return await self.health_problems() + await self._problems(self.checks)

    async def _problems(self, checks: dict[str, Check]) -> list[str]:
        problems = []
        for name, check in checks.items():
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


def roots_writable(roots: list[Path]) -> Check:
    """A node worker's local check: every models root that exists takes a new file (a read-only
    remount or a full inode table is what this catches), and at least one exists."""

    def probe() -> None:
        existing = [root for root in roots if root.is_dir()]
        if not existing:
            raise FileNotFoundError(f"no models root exists ({', '.join(map(str, roots))})")
        for root in existing:
            fd, name = tempfile.mkstemp(prefix=".modelferry-healthz-", dir=root)
            os.close(fd)
            os.unlink(name)

    async def check() -> None:
        await asyncio.to_thread(probe)

    return check


async def serve_health(health: Health, *, host: str, port: int) -> asyncio.Server:
    """Start answering probes on host:port (port 0: a free one; see `server.sockets`)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=CHECK_TIMEOUT)
            parts = line[:_MAX_REQUEST_LINE].decode("latin-1").split()
            path = parts[1] if len(parts) >= 2 else ""
            path = path.split("?", 1)[0]
            if path == "/metrics":
                await _respond(writer, 200, metrics.render(), content_type=metrics.CONTENT_TYPE)
                return
            if path == "/livez":
                problems = health.live_problems()
            elif path == "/healthz":
                problems = await health.health_problems()
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


async def start_health_server(
    health: Health, *, host: str, port: int | None, what: str
) -> asyncio.Server | None:
    """`serve_health`, or None when `port` is None. A port already taken is said in one WARNING
    and the process goes on without probes and /metrics: delivering models matters more (and a
    liveness probe that cannot connect tells the kubelet anyway)."""
    if port is None:
        return None
    try:
        server = await serve_health(health, host=host, port=port)
    except OSError as error:
        log.warning("%s: probes and /metrics not served, cannot listen on %s:%d: %s", what, host, port, error)
        return None
    log.info("%s: /metrics, /livez, /healthz, /readyz on http://%s:%d", what, host, bound_port(server))
    return server


def bound_port(server: asyncio.Server) -> int:
    """The port the server listens on (the free one picked for port 0)."""
    return int(server.sockets[0].getsockname()[1])


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: str | bytes,
    *,
    content_type: str = "text/plain; charset=utf-8",
) -> None:
    reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
    data = body.encode() if isinstance(body, str) else body
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + data)
    await writer.drain()
