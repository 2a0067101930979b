"""Benchmark peer delivery: how fast a node gets a version from a peer's server, against the same
engine reading the origin's files straight from the local disk (no HTTP at all: the ceiling).

Not a test. It writes a model of `--size-mb` (4 weight files and a config) into a temporary
"origin" directory, lists it with SHA-256 digests (what a Hub listing carries), and delivers it
with the download engine into node A's version directory (the origin fetch). Node A's peer
server then runs in a child process (`--serve`: its own interpreter, as on a real node), and
each round delivers the model into a fresh directory on node B twice, alternating the order:

- `local`: the engine reading the origin directory with `pread` (no network, no HTTP);
- `peer`: the engine through `PeeredBackend`, every byte from A's server over 127.0.0.1, the
  origin only listed (its bytes are counted: they must be 0).

Both verify every byte (SHA-256 while writing), fsync and rename; `sync` runs before each. The
source stays in the page cache. Medians of `--rounds`.

    .venv/bin/python bench/bench_peer_delivery.py [--size-mb 1024] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from activities.storage.base import DownloadOptions, ModelListing, RemoteFile  # noqa: E402
from activities.storage.engine import download_model  # noqa: E402
from activities.storage.peer import Peer, PeeredBackend  # noqa: E402
from modelferry.layout import model_layout  # noqa: E402
from modelferry.settings import load_settings  # noqa: E402

MODEL_PATH = "/raid/models/bench"
VERSION = "bench-v1"
TOKEN_ENV = "MODELFERRY_PEER_TOKEN"


class LocalOrigin:
    """The origin: a directory listed with SHA-256 digests, read with pread; counts its bytes."""

    scheme = "local"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bytes_served = 0
        self._lock = threading.Lock()
        self._listing: ModelListing | None = None

    def describe(self) -> str:
        return f"local://{self.root}"

    def list_files(self) -> ModelListing:
        if self._listing is None:
            files = []
            for path in sorted(p for p in self.root.rglob("*") if p.is_file()):
                digest = hashlib.sha256()
                with path.open("rb") as f:
                    while chunk := f.read(8 * 1024 * 1024):
                        digest.update(chunk)
                name = str(path.relative_to(self.root))
                files.append(RemoteFile(name=name, size=path.stat().st_size, sha256=digest.hexdigest()))
            self._listing = ModelListing(revision="bench", files=tuple(files))
        return self._listing

    def read_range(self, file: RemoteFile, start: int, end: int) -> Iterator[bytes]:
        fd = os.open(self.root / file.name, os.O_RDONLY)
        try:
            while start < end:
                chunk = os.pread(fd, min(1024 * 1024, end - start), start)
                if not chunk:
                    raise OSError(f"{file.name} ended early")
                start += len(chunk)
                with self._lock:
                    self.bytes_served += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    def close(self) -> None:
        pass


def write_model(root: Path, size_mb: int) -> None:
    root.mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "llama"}')
    per_file = size_mb * 1024 * 1024 // 4
    block = os.urandom(4 * 1024 * 1024)
    for i in range(4):
        with (root / f"model-0000{i + 1}-of-00004.safetensors").open("wb") as f:
            left = per_file
            while left:
                n = min(left, len(block))
                f.write(block[:n] if i % 2 else bytes(reversed(block[:n])))
                left -= n


def serve(node_root: str) -> None:
    """The child process: node A's peer server until stdin closes; prints its port first."""
    from activities.peer_server import PeerServer

    settings = load_settings(
        environ={}, overrides={"node.root": node_root, "peer.enabled": True, "peer.port": 0}
    )

    async def main() -> None:
        server = PeerServer(settings=settings, token=os.environ[TOKEN_ENV])
        await server.start()
        print(server.port, flush=True)
        await asyncio.to_thread(sys.stdin.read)
        await server.stop()

    asyncio.run(main())


def timed(label: str, run) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    subprocess.run(["sync"], check=True)
    cpu = time.process_time()
    wall = time.monotonic()
    run()
    return time.monotonic() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    token = secrets.token_urlsafe(24)
    options = DownloadOptions()
    work = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    child = None
    try:
        origin = LocalOrigin(work / "origin")
        write_model(origin.root, args.size_mb)
        listing = origin.list_files()
        size = listing.total_bytes
        node_a = work / "a"
        a_version = model_layout(node_root=node_a, storage_path=MODEL_PATH).version_dir(VERSION)
        download_model(origin, a_version, options=options, listing=listing)
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(node_a)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, TOKEN_ENV: token},
        )
        assert child.stdout is not None
        url = f"http://127.0.0.1:{child.stdout.readline().strip()}"
        results: dict[str, list[tuple[float, float]]] = {"local": [], "peer": []}
        origin_bytes_in_peer_runs = 0
        for round_ in range(args.rounds):
            order = ["local", "peer"] if round_ % 2 == 0 else ["peer", "local"]
            for kind in order:
                dest = work / f"b-{kind}-{round_}"
                if kind == "local":
                    results[kind].append(
                        timed(
                            kind, lambda d=dest: download_model(origin, d, options=options, listing=listing)
                        )
                    )
                else:
                    before = origin.bytes_served
                    backend = PeeredBackend(
                        origin=origin,
                        peers=[Peer(node="a", url=url, version_id=VERSION)],
                        storage_path=MODEL_PATH,
                        token=token,
                    )

                    def run(d: Path = dest, b: PeeredBackend = backend) -> None:
                        download_model(b, d, options=options, listing=listing)

                    results[kind].append(timed(kind, run))
                    origin_bytes_in_peer_runs += origin.bytes_served - before
                    assert not backend.dropped_peers, backend.dropped_peers
                    backend.close()
                shutil.rmtree(dest)
        mib = size / (1024 * 1024)
        print(f"model: {mib:.0f} MiB in {len(listing.files)} files; {args.rounds} rounds; medians")
        for kind, runs in results.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            print(f"  {kind:5s}  {wall:6.2f} s  {mib / wall:7.0f} MiB/s  fetching process CPU {cpu:5.2f} s")
        ratio = statistics.median(w for w, _ in results["local"]) / statistics.median(
            w for w, _ in results["peer"]
        )
        print(f"  peer / local throughput: {ratio:.2f}x")
        print(f"  origin bytes during the peer runs: {origin_bytes_in_peer_runs}")
        return 0
    finally:
        if child is not None and child.stdin is not None:
            child.stdin.close()
            child.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
