"""A model's life after Ready, end to end through `modelferry dev` (real node activities on real
files, the real Temporal dev server, the embedded API server) with models from the fake Hub:

- a spec change to another repo fetches the new version beside the serving one; the new bytes
  serve and the old version directory is kept (`pipeline.keep_versions` 1);
- a spec change to a repo that does not exist leaves the previous version serving, bit for bit,
  with the node still Ready and the status `Degraded: UpdateFailed` naming the failure;
- `modelferry rollback` serves the kept version again, bit for bit; an impossible rollback is
  refused by the workflow's validator (exit 2, the validator's words);
- `kubectl annotate ... modelferry.io/redownload=...` builds a new version directory with the
  same bytes; `modelferry retry` after a permanent failure (a missing repo, then created) delivers;
- each of those is in `modelferry history` with who asked.

One dev stack serves the module; each test has its own model and repos.
"""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    with FakeHub() as h:
        yield h


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("after-ready") / "home")
    started = time.monotonic()
    dev.start()
    print(f"\ndev up in {time.monotonic() - started:.1f}s")
    try:
        yield dev
    finally:
        dev.stop()


def _ready_model(stack: DevStack, hub: FakeHub, *, seed: int) -> tuple[str, dict[str, bytes], str]:
    """A fresh model on its own repo, Ready on the node with its parsed metadata in the spec:
    (name, its files, its uid). Its generation is then 2 (the metadata write), a patch's 3."""
    name = unique("m")
    files = tiny_llama_files(seed=seed)
    hub.add_repo(f"acme/{name}-v1", files)
    made = stack.apply(hf_model(name, repo=f"acme/{name}-v1", endpoint=hub.url))
    settled = stack.wait_settled(name)
    assert settled["metadata"]["generation"] == 2, settled["metadata"]
    assert hash_tree(stack.model_path(name)) == expected_hashes(files)
    return name, files, made["metadata"]["uid"]


def test_an_override_serves_the_new_bytes_and_keeps_the_old_version(stack: DevStack, hub: FakeHub) -> None:
    started = time.monotonic()
    name, old_files, uid = _ready_model(stack, hub, seed=1)
    first = stack.serving_version(name)
    new_files = tiny_llama_files(seed=2)
    hub.add_repo(f"acme/{name}-v2", new_files)

    hub.bytes_per_second = 150_000  # the new version takes a few seconds: look at the node meanwhile
    try:
        stack.patch_spec(name, {"storage": {"storageUri": f"hf://acme/{name}-v2"}})

        def updating() -> dict | None:
            cond = stack.condition(name, "Progressing")
            ok = cond and cond["status"] == "True" and cond["reason"] == "Updating"
            return cond if ok and stack.status(name).get("observedGeneration") == 3 else None

        cond = wait_until(updating, timeout=30, what="Progressing: Updating")
        assert cond["message"] == NODE
        # ...while the serving version keeps serving: Ready everywhere, the old bytes at the path
        status = stack.status(name)
        assert status["state"] == "Ready" and status["nodesReady"] == [NODE], status
        assert stack.entry_status(name) == "Ready"
        assert stack.node_label(uid) == "Ready"
        assert stack.serving_version(name) == first
        assert hash_tree(stack.model_path(name)) == expected_hashes(old_files)
    finally:
        hub.bytes_per_second = None
    stack.wait_state(name, "Ready", check=lambda got: stack.serving_version(name) != first)

    assert hash_tree(stack.model_path(name)) == expected_hashes(new_files)
    second = stack.serving_version(name)
    assert stack.versions(name) == {first, second}, "the previous version is kept (keep_versions 1)"
    assert hash_tree(stack.versions_dir(name) / first) == expected_hashes(old_files)
    assert stack.entry_status(name) == "Ready"
    assert stack.node_label(uid) == "Ready"
    wait_until(
        lambda: (stack.condition(name, "Progressing") or {}).get("status") == "False",
        what="Progressing False again",
    )

    text, rows = stack.history(name)
    assert any(r["what"] == "revision applied gen 3" for r in rows), text
    assert any(r["node"] == NODE and r["what"] == f"activated version {second}" for r in rows), text
    print(f"override: {time.monotonic() - started:.1f}s")


def test_an_override_to_a_missing_repo_keeps_the_old_bytes_serving_and_degrades(
    stack: DevStack, hub: FakeHub
) -> None:
    started = time.monotonic()
    name, files, uid = _ready_model(stack, hub, seed=3)
    before = hash_tree(stack.model_path(name))
    serving = stack.serving_version(name)

    stack.patch_spec(name, {"storage": {"storageUri": f"hf://acme/{name}-nosuchrepo"}})

    def degraded() -> dict | None:
        cond = stack.condition(name, "Degraded")
        return cond if cond and cond.get("status") == "True" else None

    stack.wait_state(name, "Ready", check=lambda got: degraded() is not None)
    cond = degraded()
    assert cond is not None and cond["reason"] == "UpdateFailed", cond
    assert "SourceNotFoundError" in cond["message"] and f"{name}-nosuchrepo" in cond["message"], cond
    ready = stack.condition(name, "Ready")
    assert ready is not None and ready["status"] == "True", ready
    assert stack.status(name)["nodesReady"] == [NODE]
    assert hash_tree(stack.model_path(name)) == before == expected_hashes(files)
    assert stack.serving_version(name) == serving
    assert stack.entry_status(name) == "Ready"
    assert stack.node_label(uid) == "Ready"

    text, rows = stack.history(name)
    assert any(r["what"] == "revision applied gen 3" for r in rows), text
    assert any(
        r["node"] == NODE and r["what"] == "download failed" and "SourceNotFoundError" in r["why"]
        for r in rows
    ), text
    print(f"override to a missing repo: {time.monotonic() - started:.1f}s; Degraded: {cond['message']}")


def test_rollback_by_cli_restores_the_previous_bytes_and_refuses_an_unknown_version(
    stack: DevStack, hub: FakeHub
) -> None:
    started = time.monotonic()
    name, old_files, uid = _ready_model(stack, hub, seed=4)
    first = stack.serving_version(name)
    new_files = tiny_llama_files(seed=5)
    hub.add_repo(f"acme/{name}-v2", new_files)
    stack.patch_spec(name, {"storage": {"storageUri": f"hf://acme/{name}-v2"}})
    stack.wait_state(name, "Ready", check=lambda got: stack.serving_version(name) != first)
    second = stack.serving_version(name)
    assert hash_tree(stack.model_path(name)) == expected_hashes(new_files)

    done = stack.cli("rollback", f"cbm/{name}", "--reason", "v2 answers badly")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"rollback cbm/{name}: accepted for {NODE}" in done.stdout, done.stdout
    assert f"{NODE}: serve version {first}" in done.stdout, done.stdout
    wait_until(lambda: stack.serving_version(name) == first, what="the kept version served again")
    stack.wait_state(name, "Ready", check=lambda got: stack.entry_status(name) == "Ready")
    assert hash_tree(stack.model_path(name)) == expected_hashes(old_files)
    assert stack.versions(name) == {first, second}, "the version rolled away from is kept in turn"
    assert stack.node_label(uid) == "Ready"

    refused = stack.cli("rollback", f"cbm/{name}", "--to", "nosuchversion")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"rollback cbm/{name} refused: version nosuchversion is not kept on node {NODE}" in refused.stderr
    assert f"kept: {second}" in refused.stderr, refused.stderr
    assert stack.serving_version(name) == first  # nothing ran

    text, rows = stack.history(name)
    assert "admin rollback by cli:" in text and "v2 answers badly" in text, text
    admin = [r for r in rows if r["what"].startswith("admin rollback by cli:")]
    assert len(admin) == 1, rows  # the refused request is no admin action in the history
    assert any(r["node"] == NODE and r["what"] == f"rollback to version {first} started" for r in rows), text
    assert any(r["what"] == "revision applied gen 3" for r in rows), text
    print(f"rollback: {time.monotonic() - started:.1f}s")


def test_redownload_by_annotation_builds_a_new_version_with_the_same_bytes(
    stack: DevStack, hub: FakeHub
) -> None:
    started = time.monotonic()
    name, files, uid = _ready_model(stack, hub, seed=6)
    first = stack.serving_version(name)
    served_before = hub.bytes_served

    done = stack.kubectl(
        "annotate",
        f"clusterbasemodel/{name}",
        "modelferry.io/redownload=1",
        "modelferry.io/reason=suspect disk",
    )
    assert done.returncode == 0, done.stdout + done.stderr

    wait_until(lambda: stack.serving_version(name) != first, timeout=60, what="a fresh version served")
    stack.wait_state(name, "Ready")
    second = stack.serving_version(name)
    assert stack.versions(name) == {first, second}
    assert (
        hash_tree(stack.model_path(name))
        == expected_hashes(files)
        == hash_tree(stack.versions_dir(name) / first)
    )
    assert hub.bytes_served - served_before >= sum(len(d) for d in files.values()), "fetched afresh"
    assert stack.entry_status(name) == "Ready" and stack.node_label(uid) == "Ready"

    text, rows = stack.history(name)
    admin = [
        r for r in rows if r["what"].startswith("admin redownload by annotation:modelferry.io/redownload")
    ]
    assert len(admin) == 1 and "suspect disk" in admin[0]["what"], text
    assert any(
        r["node"] == NODE and r["what"] == "download started" and r["why"] == "fresh copy" for r in rows
    ), text
    assert any(r["node"] == NODE and r["what"] == f"activated version {second}" for r in rows), text
    print(f"redownload by annotation: {time.monotonic() - started:.1f}s")


def test_retry_by_cli_delivers_once_the_missing_repo_exists(stack: DevStack, hub: FakeHub) -> None:
    started = time.monotonic()
    name = unique("m")
    repo = f"acme/{name}-late"
    made = stack.apply(hf_model(name, repo=repo, endpoint=hub.url))
    failed = stack.wait_state(name, "Failed")
    ready = next(c for c in failed["status"]["conditions"] if c["type"] == "Ready")
    assert "SourceNotFoundError" in ready["message"], ready
    assert stack.entry_status(name) == "Failed"

    files = tiny_llama_files(seed=7)
    hub.add_repo(repo, files)  # the platform team publishes the repo; the failure was permanent
    done = stack.cli("retry", f"cbm/{name}", "--reason", "repo published")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"retry cbm/{name}: accepted for {NODE}" in done.stdout, done.stdout

    stack.wait_state(name, "Ready")
    assert hash_tree(stack.model_path(name)) == expected_hashes(files)
    assert stack.entry_status(name) == "Ready"
    assert stack.node_label(made["metadata"]["uid"]) == "Ready"

    again = stack.cli("retry", f"cbm/{name}")
    assert again.returncode == 2 and "no node has failed; nothing to retry" in again.stderr, again.stderr

    text, rows = stack.history(name)
    assert any(r["what"].startswith("admin retry by cli:") and "repo published" in r["what"] for r in rows), (
        text
    )
    assert any(r["node"] == NODE and r["what"].startswith("Failed: SourceNotFoundError") for r in rows), text
    assert any(r["node"] == NODE and r["what"] == "Ready" for r in rows), text
    print(f"retry by CLI: {time.monotonic() - started:.1f}s")
