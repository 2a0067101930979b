"""Continuous verification end to end: `modelferry dev --verify-interval 1s --deep-verify-interval
2s` serving a model from the fake Hub. A byte flipped in a weights file of the serving version
(size and mtime kept: only the deep check sees it) and then a deleted file (the cheap check) are
each found by the node worker, reported to the model's workflow, and repaired: a new version
serves, with the right bytes, and a `Repaired` Event is on the resource (`kubectl get events`);
`modelferry history` shows the damage reports."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from tests.e2e.devstack import (
    NODE,
    DevStack,
    expected_hashes,
    hash_tree,
    hf_model,
    tiny_llama_files,
    wait_until,
)
from tests.e2e.harness import unique
from tests.servers.fake_hf import FakeHub

pytestmark = pytest.mark.e2e

SHARD = "model-00001-of-00002.safetensors"


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub() as h:
        yield h


@pytest.fixture
def stack(tmp_path) -> Iterator[DevStack]:
    dev = DevStack(tmp_path / "home", extra_args=["--verify-interval", "1s", "--deep-verify-interval", "2s"])
    dev.start()
    try:
        yield dev
    finally:
        dev.stop()


def flip_a_byte_keeping_size_and_mtime(path: os.PathLike[str] | str, offset: int) -> None:
    st = os.stat(path)
    mode = st.st_mode
    os.chmod(path, mode | 0o200)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.chmod(path, mode)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _repaired_events(stack: DevStack, name: str) -> list[dict]:
    return [e for e in stack.events(name) if e.get("reason") == "Repaired"]


def test_a_flipped_byte_and_a_deleted_file_are_repaired_with_a_new_version(
    stack: DevStack, hub: FakeHub
) -> None:
    name = unique("rot")
    files = tiny_llama_files(seed=11)
    hub.add_repo(f"acme/{name}", files)
    made = stack.apply(hf_model(name, repo=f"acme/{name}", endpoint=hub.url))
    stack.wait_state(name, "Ready")
    uid = made["metadata"]["uid"]
    first = stack.serving_version(name)
    assert hash_tree(stack.model_path(name)) == expected_hashes(files)

    # 1. one byte flipped in the middle of a weights file: the deep check finds it
    started = time.monotonic()
    served = {path: hub.served_for(path) for path in files}
    flip_a_byte_keeping_size_and_mtime(stack.versions_dir(name) / first / SHARD, len(files[SHARD]) // 2)
    assert hash_tree(stack.model_path(name)) != expected_hashes(files)
    wait_until(lambda: stack.serving_version(name) != first, timeout=120, what="a repaired version served")
    stack.wait_state(name, "Ready")
    repaired = stack.serving_version(name)
    flip_seconds = time.monotonic() - started
    assert repaired.startswith(first.split("-")[0]), (first, repaired)
    assert hash_tree(stack.model_path(name)) == expected_hashes(files)
    assert stack.entry_status(name) == "Ready" and stack.node_label(uid) == "Ready"
    fetched = {path: hub.served_for(path) - served[path] for path in files}
    assert fetched == {path: len(data) if path == SHARD else 0 for path, data in files.items()}, fetched
    events = wait_until(lambda: _repaired_events(stack, name), what="a Repaired event")
    assert [e["type"] for e in events] == ["Normal"] and "1 damaged file(s) fetched again" in events[0][
        "message"
    ]
    assert events[0]["involvedObject"]["kind"] == "ClusterBaseModel"
    assert events[0]["involvedObject"]["uid"] == uid
    found = [e for e in stack.events(name) if e.get("reason") == "DamageFound"]
    assert any(e["type"] == "Warning" and SHARD in e["message"] for e in found), found

    # 2. a file deleted: the cheap check finds it
    started = time.monotonic()
    (stack.versions_dir(name) / repaired / "generation_config.json").unlink()
    wait_until(lambda: stack.serving_version(name) != repaired, timeout=120, what="a second repair")
    stack.wait_state(name, "Ready")
    delete_seconds = time.monotonic() - started
    assert hash_tree(stack.model_path(name)) == expected_hashes(files)
    assert stack.entry_status(name) == "Ready" and stack.node_label(uid) == "Ready"
    wait_until(
        lambda: sum(int(e.get("count") or 1) for e in _repaired_events(stack, name)) >= 2,
        what="a second Repaired event",
    )

    text, rows = stack.history(name)
    damage = [r for r in rows if r["what"] == "damage reported" and r["node"] == NODE]
    assert any(SHARD in r["why"] for r in damage), text
    assert any("generation_config.json" in r["why"] for r in damage), text
    assert sum(1 for r in rows if r["node"] == NODE and r["what"] == "Ready") >= 3, text
    print(f"\nflipped byte repaired in {flip_seconds:.1f}s, deleted file in {delete_seconds:.1f}s")
