"""A real Kubernetes control plane on this machine, for the tier that proves what our embedded API
server can only imitate: real RBAC, admission and controllers (STYLE.md, "Tested where it runs"),
and for `modelferry dev --kube real` (devcluster.py).

`running_control_plane(tmp_dir)` starts etcd, kube-apiserver, kube-controller-manager and
kube-scheduler from the binaries `hack/kube/build.sh` builds, each on free 127.0.0.1 ports with its
log in `tmp_dir`, and stops all of them on exit, also when the test fails. Every credential is
generated at start (certs.py): the API server authenticates by client certificate only, and each
component has its own certificate and kubeconfig, so RBAC sees the same users as in a real cluster.

There are no nodes here: Pods stay Pending unless kubelet.py's process kubelets are running.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from modelferry.dev.children import die_with_parent
from modelferry.dev.temporal_server import describe_exit, free_port

from .certs import CertificateAuthority, KeyPair, SigningKeys, write_service_account_keys

PROJECT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = PROJECT / "hack" / "kube" / "build.sh"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
NOT_BUILT = "real control plane binaries not built: run `bash hack/kube/build.sh`"

ADMIN = "modelferry-admin"
CONTROLLER_MANAGER = "system:kube-controller-manager"  # the users the bootstrap RBAC roles bind
SCHEDULER = "system:kube-scheduler"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.0.0.0/24"  # upstream's default; its first address is the `kubernetes` Service
API_SERVER_HOSTS = ("127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default")

STOP_GRACE_SECONDS = 5.0  # after SIGTERM; the API server, the slowest, exits in about a second


class BinariesNotBuilt(RuntimeError):
    """The binaries are not there and this run may not build them: the tier is skipped."""


class ControlPlaneFailed(RuntimeError):
    """A component exited or did not become ready; the message carries the end of its log."""


def bin_dir(*, build_on_ci: bool = True) -> Path:
    """Where the four binaries are: $MODELFERRY_KUBE_BIN; else, on CI (CI=true) and if
    `build_on_ci`, whatever build.sh prints last (a failed build raises); else build.sh's cache
    when it is complete."""
    if explicit := os.environ.get("MODELFERRY_KUBE_BIN"):
        return _complete(Path(explicit), missing=f"MODELFERRY_KUBE_BIN={explicit} lacks")
    if build_on_ci and os.environ.get("CI") == "true":
        built = subprocess.run(["bash", str(BUILD_SCRIPT)], check=True, stdout=subprocess.PIPE, text=True)
        return _complete(Path(built.stdout.strip().splitlines()[-1]), missing="build.sh did not produce")
    cache = _cache_bin_dir()
    if all((cache / name).is_file() for name in BINARIES):
        return cache
    raise BinariesNotBuilt(NOT_BUILT)


def _complete(directory: Path, *, missing: str) -> Path:
    absent = [name for name in BINARIES if not (directory / name).is_file()]
    if absent:
        raise FileNotFoundError(f"{missing} {', '.join(absent)} in {directory}")
    return directory


def _cache_bin_dir() -> Path:
    """build.sh's output directory, keyed like it by the Kubernetes version in hack/kube/go.mod."""
    go_mod = PROJECT / "hack" / "kube" / "go.mod"
    found = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", go_mod.read_text(), re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no k8s.io/kubernetes version in {go_mod}")
    version = found.group(1)
    root = os.environ.get("MODELFERRY_KUBE_CACHE") or Path.home() / ".cache" / "modelferry" / "kube"
    return Path(root) / version / "bin"


@dataclass
class Component:
    """One running binary and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def exit_report(self) -> str | None:
        """None while it runs; else how it ended and the end of its log."""
        if self.process.poll() is None:
            return None
        tail = self.log.read_bytes()[-3000:].decode("utf-8", "replace").strip()
        return f"{self.name} {describe_exit(self.process.returncode)}; the end of {self.log}:\n{tail}"


@dataclass
class ControlPlane:
    directory: Path
    url: str
    ca: CertificateAuthority
    admin_kubeconfig: Path
    components: list[Component] = field(default_factory=list)
    startup_seconds: dict[str, float] = field(default_factory=dict)  # per component, until ready

    def kubeconfig_for(self, user: str, *, groups: Sequence[str] = ()) -> Path:
        """A kubeconfig that authenticates as `user` in `groups` (with no RBAC bindings of its own)."""
        path = self.directory / f"kubeconfig-{user.replace(':', '_')}"
        return write_kubeconfig(
            path, url=self.url, ca=self.ca.files.cert, client=self.ca.issue_client(user, groups=groups)
        )


def write_kubeconfig(path: Path, *, url: str, ca: Path, client: KeyPair) -> Path:
    cluster, user = "modelferry-test", path.name
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": url, "certificate-authority": str(ca)}}],
        "users": [
            {"name": user, "user": {"client-certificate": str(client.cert), "client-key": str(client.key)}}
        ],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@contextlib.contextmanager
def running_control_plane(
    tmp_dir: Path, *, binaries: Path | None = None, timeout: float = 120.0
) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler, each ready (`timeout`
    seconds per component) before the next starts; all of them stopped on exit."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    binaries = binaries or bin_dir()
    components: list[Component] = []
    try:
        yield _start(tmp_dir, binaries=binaries, components=components, timeout=timeout)
    finally:
        _stop(components)


def _start(tmp: Path, *, binaries: Path, components: list[Component], timeout: float) -> ControlPlane:
    pki = tmp / "pki"
    pki.mkdir(exist_ok=True)
    ca = CertificateAuthority(pki)
    admin = ca.issue_client(ADMIN, groups=["system:masters"])
    url = f"https://127.0.0.1:{free_port()}"
    plane = ControlPlane(
        directory=tmp,
        url=url,
        ca=ca,
        admin_kubeconfig=write_kubeconfig(tmp / "kubeconfig-admin", url=url, ca=ca.files.cert, client=admin),
        components=components,
    )

    def launch(name: str, args: list[str], ready: Callable[[], bool]) -> None:
        began = time.monotonic()
        component = _spawn(name, [str(binaries / name), *args], log=tmp / f"{name}.log")
        components.append(component)
        _wait_ready(component, ready, timeout=timeout)
        plane.startup_seconds[name] = round(time.monotonic() - began, 2)

    etcd = f"http://127.0.0.1:{free_port()}"
    launch("etcd", _etcd_args(tmp, url=etcd), lambda: _etcd_healthy(etcd))

    sa_keys = write_service_account_keys(pki)
    as_admin = _client_tls(ca=ca.files.cert, client=admin)
    launch(
        "kube-apiserver",
        _apiserver_args(tmp, url=url, etcd=etcd, ca=ca, sa_keys=sa_keys),
        lambda: _get(f"{url}/readyz", context=as_admin) == "ok",
    )

    controller_args = [
        "--controllers=*",
        "--use-service-account-credentials",
        f"--service-account-private-key-file={sa_keys.private}",
        f"--root-ca-file={ca.files.cert}",
        f"--cluster-signing-cert-file={ca.files.cert}",
        f"--cluster-signing-key-file={ca.files.key}",
    ]
    for name, user, extra in (
        ("kube-controller-manager", CONTROLLER_MANAGER, controller_args),
        ("kube-scheduler", SCHEDULER, []),
    ):
        kubeconfig = write_kubeconfig(
            tmp / f"kubeconfig-{name}", url=url, ca=ca.files.cert, client=ca.issue_client(user)
        )
        port = free_port()
        launch(
            name,
            [*_client_component_args(tmp / name, kubeconfig=kubeconfig, port=port), *extra],
            functools.partial(_healthz_ok, port),
        )
    return plane


def _etcd_args(tmp: Path, *, url: str) -> list[str]:
    peer = f"http://127.0.0.1:{free_port()}"
    return [
        "--name=modelferry-test",
        f"--data-dir={tmp / 'etcd'}",
        f"--listen-client-urls={url}",
        f"--advertise-client-urls={url}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=modelferry-test={peer}",
        "--unsafe-no-fsync",  # a throwaway store: durability only costs time here
        "--log-level=warn",
    ]


def _healthz_ok(port: int) -> bool:
    # The controller manager and the scheduler serve a self-signed certificate of their own
    # making, and /healthz needs no client certificate.
    return _get(f"https://127.0.0.1:{port}/healthz", context=_unverified_tls()) == "ok"


def _etcd_healthy(url: str) -> bool:
    return bool(json.loads(_get(f"{url}/health") or "{}").get("health") == "true")


def _apiserver_args(
    tmp: Path, *, url: str, etcd: str, ca: CertificateAuthority, sa_keys: SigningKeys
) -> list[str]:
    serving = ca.issue_serving("kube-apiserver", hosts=API_SERVER_HOSTS)
    return [
        f"--etcd-servers={etcd}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={url.rsplit(':', 1)[1]}",
        f"--cert-dir={tmp / 'kube-apiserver'}",
        f"--tls-cert-file={serving.cert}",
        f"--tls-private-key-file={serving.key}",
        f"--client-ca-file={ca.files.cert}",
        "--authorization-mode=Node,RBAC",
        # Endpoints may not hold a loopback address, so the `kubernetes` Service cannot point
        # here; without this the API server retries (and logs the refusal) every ten seconds.
        "--endpoint-reconciler-type=none",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={sa_keys.public}",
        f"--service-account-signing-key-file={sa_keys.private}",
    ]


def _client_component_args(cert_dir: Path, *, kubeconfig: Path, port: int) -> list[str]:
    """What the controller manager and the scheduler share: one identity for talking to the API
    server and for checking who calls their own /metrics, and a port on 127.0.0.1 only."""
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={cert_dir}",
        "--leader-elect=false",
    ]


def _spawn(name: str, command: list[str], *, log: Path) -> Component:
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # SIGKILL, not SIGTERM: everything is throwaway, and an API server whose etcd got
            # SIGTERM with it takes ~15 s to give up
            preexec_fn=die_with_parent(signal.SIGKILL),
        )
    return Component(name=name, process=process, log=log)


def _wait_ready(component: Component, ready: Callable[[], bool], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if report := component.exit_report():
            raise ControlPlaneFailed(report)
        if time.monotonic() > deadline:
            raise ControlPlaneFailed(f"{component.name} not ready after {timeout:.0f}s; see {component.log}")
        time.sleep(0.2)


def _stop(components: list[Component]) -> None:
    """One at a time, the last started first: SIGTERM, then SIGKILL after the grace. (An API server
    whose etcd is already gone takes seconds to give up; stopped first, it exits in about one.)"""
    for component in reversed(components):
        if component.process.poll() is None:
            component.process.terminate()
        try:
            component.process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            component.process.kill()
            component.process.wait()


def _get(url: str, *, context: ssl.SSLContext | None = None) -> str | None:
    """The body of a 200 answer; None for anything else (not listening yet, an error status)."""
    # No proxy from the environment: these are all 127.0.0.1.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    try:
        with opener.open(url, timeout=2) as response:
            return str(response.read().decode())
    except (OSError, ValueError):  # URLError and HTTPError are OSErrors
        return None


def _client_tls(*, ca: Path, client: KeyPair) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(client.cert), str(client.key))
    return context


def _unverified_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
