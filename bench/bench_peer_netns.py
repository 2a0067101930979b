"""Benchmark peer delivery on a simulated network: one model onto N nodes whose origin link is slow.

Not a test. It builds network namespaces joined by veth pairs to one bridge (the bridge in a
namespace of its own, so the machine's own network is never touched):

- `origin`: a Hugging Face-like HTTP server (`--serve-origin`, below: static Hub API answers,
  `Range`, `sendfile`, every body byte counted), its link capped by `tc tbf` on its egress
  (`--origin-rate`, default 800mbit ≈ 100 MB/s of payload), shared by every node;
- `node-1..N`: one `modelferry worker` each (static mode, its own node root), its peer server
  bound on the namespace's address and advertised there, the cluster's token in
  `MODELFERRY_PEER_TOKEN`; node links unlimited unless `--node-rate` caps them.

The control plane runs in the machine's own namespace on 127.0.0.1: the Temporal dev server, the
embedded API server (`modelferry apiserver`) and `modelferry controller` (watcher + control
worker). Each node namespace reaches the first two on its own 127.0.0.1: this process holds a
listening socket inside every node namespace (created there with `setns`) and forwards each
connection to the real server, so the kubeconfig and the Temporal address are the same everywhere
and no server listens on the bridge. Only peer and origin bytes cross the veths.

For each `--modes` entry (`off`: `peer.enabled` false; `on`: true, `peer.origin_fetchers` 1) it
starts that control plane and the N workers afresh, applies one ClusterBaseModel for every node,
and measures apply → all N Ready, the origin's body bytes (and the bytes its qdisc sent, headers
included), what each node's link sent (peer bytes), and from `modelferry history --json` which
node fed which and which peers were dropped. The node roots are emptied between modes.

`--fault kill|corrupt|delete` (mode `on` only) harms the first node Ready, the only holder when
the others start: SIGKILL its worker once the others have pulled `--kill-after` of the model from
it; flip the last byte of its largest file; or delete its version directory. Every node must
still end Ready, and the bench prints the `dropped ...` part of each node's outcome. With a fault
the workers check their models every 5 s (`node.verify_interval`), so a holder whose version was
deleted finds out and fetches it again within the run.

Root is needed (`ip netns`, `tc`). Namespaces, links and processes are removed at exit, also on
failure or Ctrl-C (`finally` and `atexit`).

    sudo .venv/bin/python bench/bench_peer_netns.py --size-gb 2 [--nodes 8] [--modes off,on]
    sudo .venv/bin/python bench/bench_peer_netns.py --size-gb 0.5 --modes on --fault kill
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import yaml  # noqa: E402
from bench_download import REPO, build_site, make_model  # noqa: E402

PYTHON = sys.executable
TOKEN_ENV = "MODELFERRY_PEER_TOKEN"
PEER_PORT = 8090
ORIGIN_PORT = 8000
MODEL_ROOT = "/raid/models"
CLONE_NEWNET = 0x40000000
CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096}
_libc = ctypes.CDLL(None, use_errno=True)


def sh(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


# --- the network ---------------------------------------------------------------------------------


@dataclass
class Network:
    """An origin and N node namespaces on one bridge (in a switch namespace). Names carry this
    process's id, so two runs never collide and a leftover is recognisable."""

    nodes: int
    subnet: str = "10.213.0"  # /24; the origin is .2, node k is .(10 + k)
    origin_rate: str = "800mbit"
    node_rate: str | None = None
    tag: str = field(default_factory=lambda: f"mfb{os.getpid()}")
    created: list[str] = field(default_factory=list)

    @property
    def switch(self) -> str:
        return f"{self.tag}-sw"

    @property
    def origin(self) -> str:
        return f"{self.tag}-origin"

    def node_ns(self, k: int) -> str:
        return f"{self.tag}-n{k}"

    def node_addr(self, k: int) -> str:
        return f"{self.subnet}.{10 + k}"

    @property
    def origin_addr(self) -> str:
        return f"{self.subnet}.2"

    def create(self) -> None:
        sw = self.switch
        self._add_ns(sw)
        sh("ip", "-n", sw, "link", "add", "name", "br0", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        hosts: list[tuple[str, str, str, str | None]] = [
            (self.origin, self.origin_addr, "h-origin", self.origin_rate)
        ]
        hosts += [(self.node_ns(k), self.node_addr(k), f"h-n{k}", self.node_rate) for k in self._ks()]
        for ns, addr, port, rate in hosts:
            self._add_ns(ns)
            sh(*f"ip -n {sw} link add name {port} type veth peer name eth0 netns {ns}".split())
            sh(*f"ip -n {sw} link set {port} master br0 up".split())
            sh(*f"ip -n {ns} addr add {addr}/24 dev eth0".split())
            sh(*f"ip -n {ns} link set eth0 up".split())
            if rate:  # the host's egress: everything it sends, to every other host, shares it
                # burst: ≥ one GSO segment (64 KiB), and a few ms at these rates
                tbf = f"tbf rate {rate} burst 1mb latency 50ms"
                sh(*f"ip netns exec {ns} tc qdisc add dev eth0 root {tbf}".split())

    def _ks(self) -> range:
        return range(1, self.nodes + 1)

    def _add_ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.created.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def delete(self) -> None:
        for name in reversed(self.created):  # deleting a namespace deletes its veth ends
            sh("ip", "netns", "del", name, check=False)
        self.created.clear()

    def exec_argv(self, ns: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]  # `ip` execs the command: same pid

    def origin_qdisc_bytes(self) -> int:
        out = sh("ip", "netns", "exec", self.origin, "tc", "-s", "qdisc", "show", "dev", "eth0")
        for line in out.splitlines():
            words = line.split()
            if words[:1] == ["Sent"]:
                return int(words[1])
        return 0

    def sent_by_node(self, k: int) -> int:
        """Bytes node k's link sent (what its bridge port received): peer bytes, and requests."""
        out = sh("ip", "netns", "exec", self.switch, "cat", f"/sys/class/net/h-n{k}/statistics/rx_bytes")
        return int(out.strip())


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """This thread inside namespace `name`; sockets created meanwhile stay in it for good."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
        yield
    finally:
        if _libc.setns(own, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
        os.close(target)
        os.close(own)


class Forwarder:
    """Makes a server on this namespace's 127.0.0.1:port answer on 127.0.0.1:port inside other
    namespaces: a listening socket made in each, every connection piped to the real server."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="forwarder")
        self._thread.start()
        self._servers: list[asyncio.Server] = []

    def add(self, ns: str, port: int) -> None:
        with in_netns(ns):
            sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(128)

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(1 << 16):
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        async def start() -> asyncio.Server:
            return await asyncio.start_server(handle, sock=sock)

        self._servers.append(asyncio.run_coroutine_threadsafe(start(), self.loop).result(10))

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


# --- the origin (`--serve-origin`: runs inside the origin namespace) ----------------------------


class _OriginHandler(BaseHTTPRequestHandler):
    """Files under `site` (the layout bench_download.build_site writes), one `Range` each."""

    protocol_version = "HTTP/1.1"
    site: Path
    commit: str
    stats: Path
    counted = 0
    requests = 0
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path).lstrip("/")
        target = (self.site / path).resolve()
        if not target.is_file() or not target.is_relative_to(self.site):
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = target.stat().st_size
        start, end = 0, size
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes="):
            first, _, last = ranged[len("bytes=") :].partition("-")
            start, end = int(first), min(size, int(last) + 1 if last else size)
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Length", str(end - start))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{size}"')
        self.send_header("X-Repo-Commit", self.commit)
        ctype = "application/json" if path.startswith("api/") else "application/octet-stream"
        self.send_header("Content-Type", ctype)
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        sent = 0
        try:
            with open(target, "rb") as f:
                while start + sent < end:
                    n = os.sendfile(self.connection.fileno(), f.fileno(), start + sent, end - start - sent)
                    if n == 0:
                        break
                    sent += n
        except OSError:
            self.close_connection = True
        finally:
            if "/resolve/" in path:
                self._count(sent)

    def _count(self, sent: int) -> None:
        cls = type(self)
        with cls.lock:
            cls.counted += sent
            cls.requests += 1
            partial = self.stats.with_suffix(".partial")
            partial.write_text(json.dumps({"bytes": cls.counted, "requests": cls.requests}))
            partial.replace(self.stats)


def serve_origin(site: Path, *, bind: str, port: int, stats: Path) -> None:
    info = json.loads((site / "api/models" / REPO / "revision" / "main").read_text())

    class Handler(_OriginHandler):
        pass

    Handler.site, Handler.commit, Handler.stats = site.resolve(), info["sha"], stats
    stats.write_text(json.dumps({"bytes": 0, "requests": 0}))
    server = ThreadingHTTPServer((bind, port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


def origin_bytes(stats: Path) -> int:
    return int(json.loads(stats.read_text())["bytes"])


# --- processes -------------------------------------------------------------------------------------


class Processes:
    """Every child this bench starts, stopped (TERM, then KILL) in reverse order."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: list[str], *, log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def cli(*args: str) -> list[str]:
    return [PYTHON, "-m", "modelferry.cli", *args]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELFERRY_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, *, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not listening on 127.0.0.1:{port} after {timeout}s")


async def _pollers(address: str, queues: list[str]) -> dict[str, int]:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.client import Client

    client = await Client.connect(address)
    out = {}
    for queue in queues:
        resp = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace="default",
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
            )
        )
        out[queue] = len(resp.pollers)
    return out


# --- one delivery ----------------------------------------------------------------------------------


@dataclass
class Run:
    mode: str
    net: Network
    work: Path
    origin_url: str
    origin_stats: Path
    size: int
    fault: str = ""
    kill_after: float = 0.3
    timeout: float = 1800.0
    procs: Processes = field(default_factory=Processes)
    forwarder: Forwarder | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def node_name(self, k: int) -> str:
        return f"node-{k}"

    def node_root(self, k: int) -> Path:
        return self.work / "nodes" / self.node_name(k)

    def execute(self) -> dict[str, Any]:
        from modelferry.dev.temporal_server import TemporalDevServer

        logs = self.work / "logs" / self.mode
        logs.mkdir(parents=True, exist_ok=True)
        temporal = TemporalDevServer(port=0, ui_port=None, log_file=logs / "temporal.log")
        temporal.start()
        self.forwarder = Forwarder()
        try:
            return self._execute(temporal, logs)
        finally:
            self.procs.stop_all()
            self.forwarder.close()
            temporal.stop()

    def _execute(self, temporal: Any, logs: Path) -> dict[str, Any]:
        assert self.forwarder is not None
        n = self.net.nodes
        kube_port = free_port()
        kubeconfig = self.work / f"kubeconfig-{self.mode}"
        nodes = [self.node_name(k) for k in range(1, n + 1)]
        self.procs.start(
            cli(
                "apiserver",
                "--port",
                str(kube_port),
                "--kubeconfig",
                str(kubeconfig),
                "--manifest",
                str(ROOT / "deploy" / "crd"),
                *(a for name in nodes for a in ("--node", name)),
            ),
            log=logs / "apiserver.log",
            env=child_env(),
        )
        wait_listening(kube_port, what="the API server")
        while not kubeconfig.exists():
            time.sleep(0.1)
        temporal_port = int(temporal.address.rpartition(":")[2])
        for k in range(1, n + 1):
            for port in (temporal_port, kube_port):
                self.forwarder.add(self.net.node_ns(k), port)
        base = {
            "temporal": {"address": temporal.address},
            "kube": {"kubeconfig": str(kubeconfig)},
            "worker": {"mode": "static"},
            "health": {"port": None, "worker_port": None},
        }
        controller = base | {"peer": {"enabled": self.mode == "on", "origin_fetchers": 1}}
        (self.work / f"controller-{self.mode}.yaml").write_text(yaml.safe_dump(controller))
        token = secrets.token_urlsafe(32)
        for k in range(1, n + 1):
            root = self.node_root(k)
            root.mkdir(parents=True, exist_ok=True)
            addr = self.net.node_addr(k)
            config = base | {
                # after a fault: the holder's own cheap check finds a deleted version within seconds
                "node": {"root": str(root)} | ({"verify_interval": 5.0} if self.fault else {}),
                "peer": {
                    "enabled": self.mode == "on",  # a worker serves peers only when enabled
                    "bind_address": addr,
                    "port": PEER_PORT,
                    "advertise_url": f"http://{addr}:{PEER_PORT}",
                },
            }
            path = self.work / f"worker-{self.mode}-{k}.yaml"
            path.write_text(yaml.safe_dump(config))
            argv = cli("worker", "--node", self.node_name(k), "--config", str(path))
            self.workers[self.node_name(k)] = self.procs.start(
                self.net.exec_argv(self.net.node_ns(k), argv),
                log=logs / f"worker-{k}.log",
                env=child_env({TOKEN_ENV: token}),
            )
        self.procs.start(
            cli(
                "controller",
                "--config",
                str(self.work / f"controller-{self.mode}.yaml"),
                "--no-leader-election",
            ),
            log=logs / "controller.log",
            env=child_env(),
        )
        self._wait_workers(temporal.address, nodes)
        return self._deliver(kubeconfig, temporal.address, nodes, logs)

    def _wait_workers(self, address: str, nodes: list[str]) -> None:
        from modelferry.names import node_task_queue

        deadline = time.monotonic() + 120
        queues = [node_task_queue(n) for n in nodes]
        while time.monotonic() < deadline:
            for name, proc in self.workers.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"the worker of {name} exited with {proc.returncode}")
            polling = asyncio.run(_pollers(address, queues))
            if all(polling.values()):
                return
            time.sleep(0.5)
        raise TimeoutError(f"node workers not polling after 120 s: {polling}")

    def _deliver(self, kubeconfig: Path, address: str, nodes: list[str], logs: Path) -> dict[str, Any]:
        from kubernetes import config as kube_config
        from kubernetes.client import CustomObjectsApi

        from modelferry.names import API_GROUP, API_VERSION

        api = CustomObjectsApi(kube_config.new_client_from_config(config_file=str(kubeconfig)))
        name = f"bench-{self.mode}"
        model = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "ClusterBaseModel",
            "metadata": {"name": name},
            "spec": {
                "vendor": "bench",
                "version": "1.0.0",
                "storage": {
                    "storageUri": f"hf://{REPO}",
                    "path": f"{MODEL_ROOT}/{name}",
                    "parameters": {"endpoint": self.origin_url},
                },
            },
        }
        origin_before = origin_bytes(self.origin_stats)
        qdisc_before = self.net.origin_qdisc_bytes()
        sent_before = {k: self.net.sent_by_node(k) for k in range(1, len(nodes) + 1)}
        t0 = time.monotonic()
        api.create_cluster_custom_object(API_GROUP, API_VERSION, "clusterbasemodels", model)
        ready_at: dict[str, float] = {}
        harmed: dict[str, Any] = {}
        last: dict[str, Any] = {}
        while len(ready_at) < len(nodes):
            if time.monotonic() - t0 > self.timeout:
                raise TimeoutError(f"{name}: not Ready on every node after {self.timeout}s: {last}")
            obj = api.get_cluster_custom_object(API_GROUP, API_VERSION, "clusterbasemodels", name)
            last = obj.get("status") or {}
            for node in last.get("nodesReady") or []:
                ready_at.setdefault(node, time.monotonic() - t0)
            if last.get("nodesFailed"):
                raise RuntimeError(
                    f"{name} failed on {last['nodesFailed']}: {json.dumps(last.get('conditions'))}"
                )
            if self.fault and ready_at and not harmed:
                harmed = self._harm(
                    first=min(ready_at, key=ready_at.__getitem__), model=name, since=sent_before
                )
            elif harmed.get("pending"):
                harmed = self._harm(first=harmed["node"], model=name, since=sent_before)
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        origin = origin_bytes(self.origin_stats) - origin_before
        history = self._history(name, kubeconfig, address)
        return {
            "mode": self.mode,
            "fault": self.fault,
            "harmed": harmed,
            "seconds_to_all_ready": round(elapsed, 1),
            "ready_at": {n: round(t, 1) for n, t in sorted(ready_at.items(), key=lambda kv: kv[1])},
            "origin_body_bytes": origin,
            "origin_ratio": round(origin / self.size, 3),
            "origin_qdisc_bytes": self.net.origin_qdisc_bytes() - qdisc_before,
            "sent_by_node": {
                self.node_name(k): self.net.sent_by_node(k) - sent_before[k] for k in range(1, len(nodes) + 1)
            },
            "fed_by": history["fed_by"],
            "dropped": history["dropped"],
            "causes": history["causes"],
            "files_not_ok": self._files_settled(name),
        }

    def _files_settled(self, name: str) -> list[str]:
        """The nodes without the model's files; after a fault, given a while to heal (a deleted
        version is found by the holder's cheap check, every `node.verify_interval`, and repaired)."""
        deadline = time.monotonic() + (180 if self.fault else 0)
        while (bad := self._check_files(name)) and time.monotonic() < deadline:
            time.sleep(1)
        return bad

    def _harm(self, *, first: str, model: str, since: dict[int, int]) -> dict[str, Any]:
        """The fault, done to `first` (the one holder when the others start)."""
        k = int(first.rpartition("-")[2])
        version = (self.node_root(k) / MODEL_ROOT.lstrip("/") / model).resolve()
        if self.fault == "kill":
            fed = self.net.sent_by_node(k) - since[k]
            if fed < self.kill_after * self.size:
                return {"node": first, "pending": True, "fed": fed}
            self.workers[first].send_signal(signal.SIGKILL)
            return {"node": first, "what": f"worker SIGKILLed after feeding {fed} bytes"}
        if self.fault == "corrupt":
            largest = max((p for p in version.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)
            with open(largest, "r+b") as f:
                f.seek(-1, os.SEEK_END)
                byte = f.read(1)
                f.seek(-1, os.SEEK_END)
                f.write(bytes([byte[0] ^ 0xFF]))
            return {"node": first, "what": f"last byte of {largest.name} flipped"}
        if self.fault == "delete":
            shutil.rmtree(version)
            return {"node": first, "what": f"version directory {version.name} deleted"}
        raise ValueError(self.fault)

    def _history(self, name: str, kubeconfig: Path, address: str) -> dict[str, Any]:
        done = subprocess.run(
            cli(
                "history",
                f"cbm/{name}",
                "--json",
                "--temporal-address",
                address,
                "--kubeconfig",
                str(kubeconfig),
            ),
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=120,
        )
        rows = json.loads(done.stdout) if done.returncode == 0 else []
        (self.work / "logs" / self.mode / "history.json").write_text(done.stdout + done.stderr)
        fed_by, dropped, causes = {}, {}, {}
        for row in rows:
            why = str(row.get("why") or "")
            if row.get("what", "").startswith("deliver started"):
                causes[row["node"]] = why
            for part in why.split("; "):
                if part.startswith("fed by "):
                    fed_by[row["node"]] = part[len("fed by ") :]
                if part.startswith("dropped "):
                    dropped[row["node"]] = part[len("dropped ") :]
        return {"fed_by": fed_by, "dropped": dropped, "causes": causes}

    def _check_files(self, name: str) -> list[str]:
        """The nodes whose path does not lead to a version with the origin's files and sizes (the
        engine hashed every byte against the origin's digests already)."""
        sizes = {p.name: p.stat().st_size for p in (self.work / "origin").iterdir()}
        bad = []
        for k in range(1, self.net.nodes + 1):
            link = self.node_root(k) / MODEL_ROOT.lstrip("/") / name
            try:
                got = {p.name: p.stat().st_size for p in link.iterdir() if p.is_file()}
            except OSError:
                got = {}
            if got != sizes:
                bad.append(self.node_name(k))
        return bad


# --- main ------------------------------------------------------------------------------------------


def cleanup_leftovers(net: Network, procs: Processes | None) -> None:
    if procs is not None:
        procs.stop_all()
    net.delete()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=2.0, help="model size (4 weight files + small ones)")
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--modes", default="off,on", help="comma-separated: off (no peers), on (peers)")
    parser.add_argument("--origin-rate", default="800mbit", help="tc rate of the origin's egress")
    parser.add_argument("--node-rate", default=None, help="tc rate of each node's egress (default: none)")
    parser.add_argument("--subnet", default="10.213.0", help="first three octets of the /24 used")
    parser.add_argument("--fault", choices=("kill", "corrupt", "delete"), help="harm the first Ready node")
    parser.add_argument(
        "--kill-after", type=float, default=0.3, help="--fault kill: once it fed this x the model"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per mode to all Ready")
    parser.add_argument("--work", type=Path, help="work directory (default: a temporary one, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, histories)")
    parser.add_argument("--serve-origin", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bind", help=argparse.SUPPRESS)
    parser.add_argument("--stats", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_origin:
        serve_origin(args.serve_origin, bind=args.bind, port=ORIGIN_PORT, stats=args.stats)
        return 0
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if args.fault and modes != ["on"]:
        parser.error("--fault needs --modes on")
    if os.geteuid() != 0:
        raise SystemExit("needs root: ip netns and tc")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-peer-netns-"))
    work.mkdir(parents=True, exist_ok=True)
    net = Network(
        nodes=args.nodes, subnet=args.subnet, origin_rate=args.origin_rate, node_rate=args.node_rate
    )
    origin_procs = Processes()
    atexit.register(cleanup_leftovers, net, origin_procs)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: list[dict[str, Any]] = []
    try:
        t = time.monotonic()
        (work / "origin").mkdir(parents=True, exist_ok=True)
        files = make_model(work / "origin", size_gb=args.size_gb)
        # random bytes in the JSON files make the metadata parser warn
        files["config.json"].write_text(json.dumps(CONFIG))
        index = {"metadata": {"total_size": size_of(files)}, "weight_map": {}}
        files["model.safetensors.index.json"].write_text(json.dumps(index))
        build_site(work / "site", files)
        size = size_of(files)
        print(
            f"model: {len(files)} files, {size / 1e9:.2f} GB, built in {time.monotonic() - t:.0f} s",
            flush=True,
        )
        net.create()
        stats = work / "origin-stats.json"
        (work / "logs").mkdir(exist_ok=True)
        origin_procs.start(
            net.exec_argv(
                net.origin,
                [
                    PYTHON,
                    str(Path(__file__).resolve()),
                    "--serve-origin",
                    str(work / "site"),
                    "--bind",
                    net.origin_addr,
                    "--stats",
                    str(stats),
                ],
            ),
            log=work / "logs" / "origin.log",
            env=child_env(),
        )
        while not stats.exists():
            time.sleep(0.1)
        for mode in modes:
            shutil.rmtree(work / "nodes", ignore_errors=True)
            run = Run(
                mode=mode,
                net=net,
                work=work,
                origin_url=f"http://{net.origin_addr}:{ORIGIN_PORT}",
                origin_stats=stats,
                size=size,
                fault=args.fault or "",
                kill_after=args.kill_after,
                timeout=args.timeout,
            )
            result = run.execute()
            result |= {"nodes": args.nodes, "model_bytes": size, "origin_rate": args.origin_rate}
            results.append(result)
            print(json.dumps(result, indent=1), flush=True)
        report(results)
        out = ROOT / "bench" / "out"
        out.mkdir(exist_ok=True)
        (out / "bench_peer_netns.json").write_text(json.dumps(results, indent=1))
        return 0
    finally:
        cleanup_leftovers(net, origin_procs)
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep:
            print(f"work directory kept: {work}")


def size_of(files: dict[str, Path]) -> int:
    return sum(p.stat().st_size for p in files.values())


def report(results: list[dict[str, Any]]) -> None:
    by_mode = {r["mode"]: r for r in results}
    for r in results:
        print(
            f"\npeers {r['mode']}{' fault ' + r['fault'] if r['fault'] else ''}: {r['nodes']} nodes Ready in "
            f"{r['seconds_to_all_ready']} s; origin sent {r['origin_body_bytes'] / 1e9:.2f} GB = "
            f"{r['origin_ratio']}x the model (qdisc {r['origin_qdisc_bytes'] / 1e9:.2f} GB); "
            f"nodes without the files: {r['files_not_ok'] or 'none'}"
        )
        for node, at in r["ready_at"].items():
            fed = r["fed_by"].get(node, "the origin only")
            drop = f"; dropped {r['dropped'][node]}" if node in r["dropped"] else ""
            print(f"  {node} Ready at {at:6.1f} s, fed by {fed}{drop}")
    if "off" in by_mode and "on" in by_mode:
        off, on = by_mode["off"], by_mode["on"]
        print(
            f"\npeers on / off: time {on['seconds_to_all_ready'] / off['seconds_to_all_ready']:.2f}x, "
            f"origin bytes {on['origin_ratio']}x vs {off['origin_ratio']}x the model"
        )


if __name__ == "__main__":
    sys.exit(main())
