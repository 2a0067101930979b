"""Every model path on a node has one owner: the node activities refuse, before any byte is
fetched, a path that is another model's, lies inside or above one, or holds anything modelferry
did not put there; and a removal deletes only what is provably the removed model's own.

Each case here lost data or crossed a model boundary before ownership records existed.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.ownership import claim_model_path, owner_for
from modelferry.errors import PathOwnedByAnotherModelError
from modelferry.layout import model_layout
from modelferry.messages import (
    DownloadModelInput,
    ModelRef,
)
from modelferry.names import ModelKind
from modelferry.settings import Settings, load_settings
from tests.activities.node_work import deliver, remove


@pytest.fixture
def node(tmp_path: Path) -> Settings:
    claim = tmp_path / "claim"
    for name in ("alpha", "beta"):
        (claim / name).mkdir(parents=True)
        (claim / name / "config.json").write_text(f'{{"model_type": "llama", "name": "{name}"}}')
        (claim / name / "weights.bin").write_bytes(name.encode() * 1000)
    (tmp_path / "node").mkdir()
    return load_settings(
        environ={},
        overrides={"node.root": str(tmp_path / "node"), "node.pvc_mounts": {"ome:models": str(claim)}},
    )


def model(name: str, path: str, *, source: str = "alpha", uid: str | None = None) -> DownloadModelInput:
    ref = ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name=name, uid=uid or f"uid-{name}")
    spec = {"storage": {"storageUri": f"pvc://ome:models/{source}", "path": path}}
    return DownloadModelInput(ref=ref, spec=spec, node="node-1")


def refused(settings: Settings, inp: DownloadModelInput) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        deliver(settings, inp)
    return caught.value


def host(settings: Settings, path: str) -> Path:
    return settings.node.root / path.lstrip("/")


def test_a_second_model_on_the_same_path_is_refused_naming_both_and_its_delete_keeps_the_first(node):
    first, second = model("first", "/raid/models/llama"), model("second", "/raid/models/llama", source="beta")
    deliver(node, first)
    error = refused(node, second)
    assert error.type == "PathOwnedByAnotherModelError" and error.non_retryable
    assert "ClusterBaseModel first" in error.message and "ClusterBaseModel second" in error.message
    assert (
        len(list(model_layout(node_root=node.node.root, storage_path="/raid/models/llama").store.iterdir()))
        == 2
    )
    assert remove(node, second) is False
    assert (host(node, "/raid/models/llama") / "weights.bin").read_bytes() == b"alpha" * 1000


def test_a_foreign_symlink_at_the_path_is_never_swapped_or_removed(node):
    models = host(node, "/raid/models")
    models.mkdir(parents=True)
    (models / "bin").symlink_to("usr/bin")
    inp = model("bin", "/raid/models/bin")
    error = refused(node, inp)
    assert error.type == "ForeignPathError" and "usr/bin" in error.message
    assert remove(node, inp) is False
    assert os.readlink(models / "bin") == "usr/bin"
    assert not (models / ".modelferry-versions" / "bin").exists()


@pytest.mark.parametrize("path", ["/bin", "/lib", "/etc/models", "/usr", "/raid/models"])
def test_paths_outside_the_models_roots_are_refused_before_any_byte_and_deletes_touch_nothing(node, path):
    system = host(node, path)
    system.parent.mkdir(parents=True, exist_ok=True)
    if not system.exists():
        system.symlink_to("usr" + path)
    error = refused(node, model("sys", path))
    assert error.type == "UnsafePathError" and "models root" in error.message
    assert remove(node, model("sys", path)) is False
    assert system.is_symlink() or system.is_dir()
    assert not any(p.name == ".modelferry-versions" for p in node.node.root.rglob("*"))


def test_a_path_inside_another_models_path_or_versions_is_refused(node):
    deliver(node, model("outer", "/raid/models/team"))
    inside = refused(node, model("inner", "/raid/models/team/sub", source="beta"))
    assert inside.type == "PathOwnedByAnotherModelError" and "ClusterBaseModel outer" in inside.message
    store = model_layout(node_root=node.node.root, storage_path="/raid/models/team").store
    version = next(p for p in store.iterdir() if p.is_dir())
    hijack = f"/raid/models/.modelferry-versions/team/{version.name}"
    error = refused(node, model("hijack", hijack, source="beta"))
    assert error.type == "UnsafePathError" and ".modelferry-versions" in error.message
    assert (host(node, "/raid/models/team") / "weights.bin").read_bytes() == b"alpha" * 1000


def test_a_path_above_another_models_path_is_refused_naming_it(node):
    deliver(node, model("llama", "/raid/models/team/llama"))
    error = refused(node, model("team", "/raid/models/team", source="beta"))
    assert error.type == "PathOwnedByAnotherModelError"
    assert "ClusterBaseModel llama" in error.message and "lies above" in error.message


def test_a_directory_of_foreign_files_is_refused_and_left_as_it_was(node):
    foreign = host(node, "/raid/models/mine")
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("not yours")
    error = refused(node, model("mine", "/raid/models/mine"))
    assert error.type == "ForeignPathError" and error.non_retryable
    assert remove(node, model("mine", "/raid/models/mine")) is False
    assert (foreign / "notes.txt").read_text() == "not yours"


def test_a_symlinked_directory_above_the_path_is_never_written_through(node, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    models = host(node, "/raid/models")
    models.mkdir(parents=True)
    (models / "escape").symlink_to(outside)
    error = refused(node, model("esc", "/raid/models/escape/llama"))
    assert error.type == "ForeignPathError"
    assert list(outside.iterdir()) == []


def test_a_re_created_resource_takes_over_its_own_path_and_the_old_uid_removes_nothing(node):
    old = model("llama", "/raid/models/llama", uid="uid-old")
    new = model("llama", "/raid/models/llama", uid="uid-new", source="beta")
    deliver(node, old)
    deliver(node, new)
    assert remove(node, old) is False
    assert (host(node, "/raid/models/llama") / "weights.bin").read_bytes() == b"beta" * 1000
    assert remove(node, new) is True
    assert not host(node, "/raid/models/llama").is_symlink()


def test_two_models_racing_for_one_path_never_both_win(node):
    layout = model_layout(node_root=node.node.root, storage_path="/raid/models/race")
    root = node.node.root / "raid/models"
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def claim(i: int) -> None:
        owner = owner_for(ModelRef(kind=ModelKind.CLUSTER_BASE_MODEL, name=f"m{i}", uid=f"u{i}"))
        start.wait()
        try:
            claim_model_path(layout=layout, owner=owner, models_root=root)
            outcomes.append("won")
        except PathOwnedByAnotherModelError:
            outcomes.append("refused")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * 7 + ["won"]


def test_a_namespaced_model_is_refused_another_namespaces_claim_on_the_node(node):
    ref = ModelRef(kind=ModelKind.BASE_MODEL, namespace="team-a", name="thief", uid="u")
    spec = {"storage": {"storageUri": "pvc://ome:models/alpha", "path": "/raid/models/thief"}}
    error = refused(node, DownloadModelInput(ref=ref, spec=spec, node="node-1"))
    assert error.type == "TenancyError" and "team-a" in error.message
    assert not host(node, "/raid/models/thief").exists()


def test_a_namespaced_models_own_claim_is_found_under_its_namespace(node, tmp_path):
    settings = node.model_copy(
        update={"node": node.node.model_copy(update={"pvc_mounts": {"team-a:models": tmp_path / "claim"}})}
    )
    ref = ModelRef(kind=ModelKind.BASE_MODEL, namespace="team-a", name="own", uid="u")
    spec = {"storage": {"storageUri": "pvc://models/alpha", "path": "/raid/models/team-a/own"}}
    deliver(settings, DownloadModelInput(ref=ref, spec=spec, node="node-1"))
    assert (host(settings, "/raid/models/team-a/own") / "weights.bin").read_bytes() == b"alpha" * 1000


def test_a_bare_mount_name_never_serves_a_namespaced_claim(node, tmp_path):
    settings = node.model_copy(
        update={"node": node.node.model_copy(update={"pvc_mounts": {"models": tmp_path / "claim"}})}
    )
    ref = ModelRef(kind=ModelKind.BASE_MODEL, namespace="team-b", name="other", uid="u")
    spec = {"storage": {"storageUri": "pvc://models/alpha", "path": "/raid/models/other"}}
    error = refused(settings, DownloadModelInput(ref=ref, spec=spec, node="node-1"))
    assert error.type == "SourceNotFoundError" and "team-b:models is not mounted" in error.message


def test_a_last_path_part_at_the_filesystem_limit_activates(node):
    name = "m" * 250
    deliver(node, model("long", f"/raid/models/{name}"))
    assert (host(node, f"/raid/models/{name}") / "config.json").is_file()


def test_names_the_filesystem_cannot_hold_are_refused_before_any_byte(node, tmp_path):
    long_name = "w" * 250 + ".bin"
    (tmp_path / "claim" / "alpha" / long_name).write_bytes(b"x")
    error = refused(node, model("toolong", "/raid/models/toolong"))
    assert error.type == "UnsafePathError" and "this filesystem allows" in error.message
    store = model_layout(node_root=node.node.root, storage_path="/raid/models/toolong").store
    assert not any(p.is_dir() for p in store.iterdir())
