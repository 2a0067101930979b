"""Peer-delivery test helpers: a node's peer server on an event loop of its own (so the
synchronous download activity and plain HTTP clients can talk to it from the test's thread),
and a model on the fake Hub that each simulated node delivers into its own root."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from temporalio.testing import ActivityEnvironment

from activities.download import DownloadActivities
from activities.peer_server import PeerServer
from modelferry.layout import model_layout
from modelferry.messages import DownloadModelInput, DownloadModelResult, ModelRef, PeerSource
from modelferry.names import ModelKind
from modelferry.settings import Settings, load_settings
from tests.servers.fake_hf import FakeHub

TOKEN = "s3cret-peer-token"
TOKEN_ENV = "MODELFERRY_PEER_TOKEN"
REPO = "acme/peer-llm"
MODEL_PATH = "/raid/models/peer-llm"


def node_settings(root: Path, *, hub: FakeHub, **overrides: Any) -> Settings:
    root.mkdir(parents=True, exist_ok=True)
    return load_settings(
        environ={},
        overrides={
            "node.root": str(root),
            "node.hf_endpoint": hub.url,
            "peer.enabled": True,
            "peer.port": 0,
            **overrides,
        },
    )


def model_input(node: str, peers: list[PeerSource] | None = None) -> DownloadModelInput:
    return DownloadModelInput(
        ref=ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name="peer-llm", uid="u-peer"),
        spec={"storage": {"storageUri": f"hf://{REPO}", "path": MODEL_PATH}},
        node=node,
        peers=peers or [],
    )


def download(settings: Settings, inp: DownloadModelInput, *, peer_url: str = "") -> DownloadModelResult:
    activities = DownloadActivities(settings=settings, secrets=None, peer_url=peer_url)
    return ActivityEnvironment().run(activities.download_model, inp)


def version_files(settings: Settings, version_id: str) -> dict[str, bytes]:
    root = model_layout(node_root=settings.node.root, storage_path=MODEL_PATH).version_dir(version_id)
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".modelferry" not in p.relative_to(root).parts
    }


def version_dir(settings: Settings, version_id: str) -> Path:
    return model_layout(node_root=settings.node.root, storage_path=MODEL_PATH).version_dir(version_id)


class ServedPeer:
    """A PeerServer running on its own event loop in a daemon thread."""

    def __init__(self, settings: Settings, *, token: str | None, max_bytes_per_second: int | None = None):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="peer-server-loop", daemon=True)
        self.thread.start()
        self.server = PeerServer(settings=settings, token=token, max_bytes_per_second=max_bytes_per_second)
        self._call(self.server.start())

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base(self) -> str:
        """The listening address, even when the server advertises nothing (no token)."""
        return f"http://127.0.0.1:{self.server.port}"

    def source(self, node: str, version_id: str) -> PeerSource:
        return PeerSource(node=node, url=self.url, version_id=version_id)

    def kill(self) -> None:
        """Stop serving now: transfers in flight are cut after the server's shutdown grace."""
        self._call(self.server.stop())

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@contextlib.contextmanager
def served_peer(settings: Settings, **kwargs: Any) -> Iterator[ServedPeer]:
    peer = ServedPeer(settings, **kwargs)
    try:
        yield peer
    finally:
        peer.stop()
