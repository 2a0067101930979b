"""`modelferry watch` as a process: it takes the Lease, starts the model's workflow on a real
Temporal dev server, and on SIGTERM exits 0 having released the Lease."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from typing import Any

import pytest
from watcher_builders import model_obj
from watcher_embedded import EmbeddedBackend
from watcher_fakes import until

from modelferry.names import ModelKind, model_workflow_id

pytestmark = pytest.mark.e2e


@pytest.fixture
def temporal() -> Any:
    try:
        from modelferry.dev.temporal_server import TemporalDevServer, find_temporal_binary

        find_temporal_binary()
    except (ImportError, FileNotFoundError) as e:
        pytest.skip(f"no Temporal dev server: {e}")
    server = TemporalDevServer(ui_port=None)
    server.start()
    yield server
    server.stop()


async def test_watch_command_starts_the_workflow_and_releases_the_lease_on_sigterm(temporal: Any) -> None:
    from temporalio.client import Client

    await temporal.wait_ready()
    backend = EmbeddedBackend()
    process: subprocess.Popen[bytes] | None = None
    try:
        backend.create(model_obj("llama", kind=ModelKind.CLUSTER_BASE_MODEL))
        command = [
            sys.executable, "-m", "modelferry.cli", "watch",
            "--kubeconfig", str(backend.server.kubeconfig_path),
            "--temporal-address", temporal.address,
            "--identity", "smoke",
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        client = await Client.connect(temporal.address)
        handle = client.get_workflow_handle(
            model_workflow_id(kind=ModelKind.CLUSTER_BASE_MODEL, namespace=None, name="llama")
        )

        async def started() -> bool:
            try:
                await handle.describe()
                return True
            except Exception:
                return False

        deadline = asyncio.get_running_loop().time() + 20
        while not await started():
            assert process.poll() is None, process.communicate()[0].decode()[-3000:]
            assert asyncio.get_running_loop().time() < deadline, "workflow never started"
            await asyncio.sleep(0.2)
        lease = backend.kube.read_lease(namespace="ome", name="modelferry-watcher")
        assert lease["spec"]["holderIdentity"] == "smoke"

        process.send_signal(signal.SIGTERM)
        await until(lambda: process.poll() is not None, timeout=15, what="watch to exit")
        output = process.communicate()[0].decode()
        assert process.returncode == 0, output[-3000:]
        lease = backend.kube.read_lease(namespace="ome", name="modelferry-watcher")
        assert not lease["spec"].get("holderIdentity"), output[-3000:]
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        backend.close()
