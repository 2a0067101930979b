"""`modelferry dev` stopped and started again on the same home (its Temporal database, API server
state and node files): the watcher re-applies every model, the node worker and its continuous
verification start afresh (`--verify-interval 1s --deep-verify-interval 2s`), and nothing flips.
No model becomes Updating (status, ConfigMap entry, node label), no version directory appears or
goes, no file is written, and not one request reaches the source."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelferry.names import STATE_DIR_NAME
from modelferry.verify_schedule import CHECKS_FILE_NAME
from tests.e2e.devstack import NODE, DevStack, hf_model, tiny_llama_files, wait_until
from tests.e2e.harness import unique
from tests.servers.fake_hf import FakeHub

pytestmark = pytest.mark.e2e

WATCH_SECONDS = 6.0  # after the restart: several cheap checks, two deep ones, the watcher's re-apply


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as h:
        yield h


def files_on_node(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under the node root: (inode, size, mtime): what a write or a re-download changes.
    The one write a restart may make is the verifier's record of when it checked a version
    (`.modelferry/checks.json`, replaced, so its directory's mtime moves too): that record is
    left out, and of its directory only the inode is kept."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            path = os.path.join(dirpath, entry)
            if entry == CHECKS_FILE_NAME or entry.startswith(f".{CHECKS_FILE_NAME}"):
                continue  # the record, and its temporary file while it is replaced
            st = os.lstat(path)
            holds_record = entry == STATE_DIR_NAME and os.path.isdir(path)
            out[path] = (st.st_ino, 0, 0) if holds_record else (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def snapshot(stack: DevStack, names: list[str], uids: dict[str, str]) -> dict[str, Any]:
    """What an observer sees of the models, minus the timestamps a status refresh may set."""
    seen: dict[str, Any] = {}
    for name in names:
        status = stack.status(name)
        seen[name] = {
            "state": status.get("state"),
            "nodesReady": status.get("nodesReady"),
            "conditions": {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []},
            "entry": (stack.configmap_entry(name) or {}).get("status"),
            "label": stack.node_label(uids[name]),
        }
    return seen


def test_a_dev_restart_on_the_same_home_flips_nothing(tmp_path: Path, hub: FakeHub) -> None:
    stack = DevStack(
        tmp_path / "home", extra_args=["--verify-interval", "1s", "--deep-verify-interval", "2s"]
    )
    stack.start()
    try:
        # One model just delivered, one updated once (a kept version beside the serving one).
        plain, updated = unique("plain"), unique("updated")
        hub.add_repo(f"acme/{plain}", tiny_llama_files(seed=21))
        hub.add_repo(f"acme/{updated}-v1", tiny_llama_files(seed=22))
        hub.add_repo(f"acme/{updated}-v2", tiny_llama_files(seed=23))
        uids = {
            plain: stack.apply(hf_model(plain, repo=f"acme/{plain}", endpoint=hub.url))["metadata"]["uid"],
            updated: stack.apply(hf_model(updated, repo=f"acme/{updated}-v1", endpoint=hub.url))["metadata"][
                "uid"
            ],
        }
        stack.wait_settled(plain)
        stack.wait_settled(updated)
        stack.patch_spec(updated, {"storage": {"storageUri": f"hf://acme/{updated}-v2"}})
        stack.wait_state(updated, "Ready", check=lambda got: len(stack.versions(updated)) == 2)
        names = [plain, updated]
        time.sleep(3)  # the verifier has found and deep-checked both: nothing is settling any more

        before = snapshot(stack, names, uids)
        assert all(
            v["state"] == "Ready" and v["entry"] == "Ready" and v["label"] == "Ready" for v in before.values()
        )
        versions = {n: stack.versions(n) for n in names}
        serving = {n: stack.serving_version(n) for n in names}
        on_disk = files_on_node(stack.node_root)
        requests = len(hub.requests)
        rows = {n: stack.history_rows(n) for n in names}
        downloads = {n: _count(rows[n], "download started") for n in names}
        applied = {n: _count(rows[n], "revision applied gen") for n in names}

        stack.stop()
        restarted = time.monotonic()
        stack.start()
        print(f"\ndev back in {time.monotonic() - restarted:.1f}s")

        # The new watcher re-applies both models (a signal each, ignored: the generation is known).
        for name in names:

            def reapplied(name: str = name) -> bool:
                return _count(stack.history_rows(name), "revision applied gen") > applied[name]

            wait_until(reapplied, timeout=60, what=f"{name} re-applied by the new watcher")
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + WATCH_SECONDS
        while time.monotonic() < deadline:
            seen.append(snapshot(stack, names, uids))
            time.sleep(0.2)
        flipped = [s for s in seen if s != before]
        assert not flipped, f"{len(flipped)} of {len(seen)} looks differed, e.g. {flipped[0]} vs {before}"

        assert {n: stack.versions(n) for n in names} == versions
        assert {n: stack.serving_version(n) for n in names} == serving
        assert files_on_node(stack.node_root) == on_disk
        assert len(hub.requests) == requests, hub.requests[requests:]
        assert {n: _count(stack.history_rows(n), "download started") for n in names} == downloads
        log = stack.log_path.read_text().rpartition("=== start 2 ===")[2]
        assert "check found damage" not in log, log
        assert stack.status(updated)["nodesReady"] == [NODE]
    finally:
        stack.stop()


def _count(rows: list[dict[str, Any]], what: str) -> int:
    return sum(1 for r in rows if r["what"].startswith(what))
