"""The harness's children (Temporal, control plane, pod processes) get PR_SET_PDEATHSIG through a
`preexec_fn` that only calls a libc function looked up in the parent (`modelferry.dev.children`):
the child of a thread that ends is killed."""

from __future__ import annotations

import signal
import subprocess
import threading

from modelferry.dev.children import die_with_parent


def test_a_child_dies_with_the_thread_that_started_it() -> None:
    preexec = die_with_parent(signal.SIGKILL)
    assert preexec is not None  # glibc Linux, as every machine this runs on
    started: list[subprocess.Popen[bytes]] = []
    thread = threading.Thread(
        target=lambda: started.append(subprocess.Popen(["sleep", "30"], preexec_fn=preexec))
    )
    thread.start()
    thread.join()
    assert started[0].wait(timeout=10) == -signal.SIGKILL
