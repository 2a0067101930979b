"""`modelferry dev --kube real`: dev's nodes on a real control plane instead of the embedded API
server. The control plane of cluster.py (fresh for each run, under `<home>/kube`, its
components' logs there too), and a process kubelet per dev node (kubelet.py) whose filesystem is
that node's dev root, so a Pod's hostPath is the directory the node's worker writes models to, and
whose claims are dev's `--pvc` directories. The nodes are labelled as dev labels them; the test
tier (tests/controlplane) runs on the same pieces.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .cluster import BINARIES, NOT_BUILT, BinariesNotBuilt, ControlPlane, bin_dir, running_control_plane
from .kubelet import ProcessKubelet


@dataclass(frozen=True)
class RealNode:
    name: str
    root: Path
    labels: Mapping[str, str]


def real_kube_binaries() -> Path:
    """The binaries' directory ($MODELFERRY_KUBE_BIN, else build.sh's cache); never builds them."""
    how = f"{NOT_BUILT}, or set MODELFERRY_KUBE_BIN to a directory holding {', '.join(BINARIES)}"
    try:
        return bin_dir(build_on_ci=False)
    except BinariesNotBuilt:
        raise RuntimeError(f"--kube real: {how}") from None
    except FileNotFoundError as e:  # an incomplete MODELFERRY_KUBE_BIN, or not a checkout
        raise RuntimeError(f"--kube real: {e}; {how}") from None


def kubelet_claims(pvcs: Mapping[str, Path]) -> dict[str, Path]:
    """dev's `NAMESPACE:NAME` claims by NAME, as a process kubelet mounts them (by claim name)."""
    claims: dict[str, Path] = {}
    for key, directory in pvcs.items():
        name = key.rpartition(":")[2]
        if claims.get(name, directory) != directory:
            raise RuntimeError(
                f"--kube real: two claims named {name} map to different directories ({claims[name]}, "
                f"{directory}); a process kubelet tells claims apart by name only"
            )
        claims[name] = directory
    return claims


@contextlib.contextmanager
def running_real_cluster(
    directory: Path, *, nodes: Sequence[RealNode], claims: Mapping[str, Path], binaries: Path
) -> Iterator[ControlPlane]:
    """The control plane in `directory` (emptied first: each run starts a new cluster) with a
    process kubelet per node, yielded once every node is schedulable; all stopped on exit."""
    shutil.rmtree(directory, ignore_errors=True)
    with running_control_plane(directory, binaries=binaries) as plane:
        kubelets = [
            ProcessKubelet(plane, name=n.name, root=n.root, labels=n.labels, claims=claims) for n in nodes
        ]
        try:
            for kubelet in kubelets:
                kubelet.start()
            for kubelet in kubelets:
                kubelet.wait_ready()
            yield plane
        finally:
            for kubelet in kubelets:
                kubelet.stop()
