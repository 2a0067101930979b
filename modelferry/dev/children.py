"""Child processes of the dev harness (Temporal, the control plane, pods on process kubelets) die
with the thread that started them, so a killed run leaves nothing behind.

`prctl(PR_SET_PDEATHSIG)` must run in the child between fork and exec (`preexec_fn`), where only
the forking thread exists: a lock another thread held at fork time (the dynamic loader's, taken
by `dlopen`) is held forever there. So libc's `prctl` is looked up once, here, in the parent, and
the child only calls it.
"""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1

try:
    _prctl: Callable[..., int] | None = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except OSError:  # not glibc Linux: children outlive a killed run there
    _prctl = None


def die_with_parent(signum: signal.Signals) -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel send `signum` to the child when its parent thread ends;
    None where that is not available."""
    prctl = _prctl
    if prctl is None:
        return None

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, signum)

    return in_child
