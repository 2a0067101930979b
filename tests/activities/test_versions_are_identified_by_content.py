"""A source that reports the same revision for other bytes (an object-store prefix rewritten in
place, a mirror) gets a new version directory beside the live one: the live version is never
written into, and a failed update leaves the path serving the old, complete version.

A directory named by the revision alone by an older release is reused when its manifest holds
exactly the listing, so upgrading downloads nothing again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.storage.base import ModelListing, RemoteFile
from modelferry.errors import PermanentError
from modelferry.layout import FileIdentity, content_version_id, model_layout, version_id_for
from modelferry.settings import Settings, load_settings
from tests.activities.node_work import MEMORY_MODEL as INPUT
from tests.activities.node_work import MEMORY_MODEL_PATH as PATH
from tests.activities.node_work import deliver as deliver_model
from tests.storage.fakes import MemoryBackend, Raise


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "node").mkdir()
    return load_settings(environ={}, overrides={"node.root": str(tmp_path / "node")})


def deliver(settings: Settings) -> str:
    return deliver_model(settings, INPUT)


def served(settings: Settings) -> dict[str, bytes]:
    link = settings.node.root / PATH.lstrip("/")
    return {p.name: p.read_bytes() for p in link.iterdir() if p.is_file()}


def test_same_revision_other_bytes_lands_beside_the_live_version(settings, source):
    source["backend"] = MemoryBackend({"a.bin": b"A" * 5000, "b.bin": b"B" * 5000}, revision="main")
    first = deliver(settings)
    source["backend"] = MemoryBackend({"a.bin": b"X" * 5000, "b.bin": b"Y" * 5000}, revision="main")
    second = deliver(settings)
    assert first != second and first.startswith("main-") and second.startswith("main-")
    assert served(settings) == {"a.bin": b"X" * 5000, "b.bin": b"Y" * 5000}


def test_a_failed_update_under_the_same_revision_keeps_serving_the_whole_old_version(settings, source):
    source["backend"] = MemoryBackend({"a.bin": b"A" * 5000, "b.bin": b"B" * 5000}, revision="main")
    deliver(settings)
    broken = MemoryBackend({"a.bin": b"X" * 5000, "b.bin": b"Y" * 5000}, revision="main")
    broken.fail("b.bin", Raise(PermanentError("b.bin: access revoked mid-update")))
    source["backend"] = broken
    with pytest.raises(ApplicationError, match="access revoked"):
        deliver(settings)
    assert served(settings) == {"a.bin": b"A" * 5000, "b.bin": b"B" * 5000}
    link = settings.node.root / PATH.lstrip("/")
    assert (link / ".modelferry" / "manifest.json").is_file()


def test_a_complete_directory_named_by_revision_alone_is_reused_without_a_download(settings, source):
    source["backend"] = MemoryBackend({"a.bin": b"A" * 5000}, revision="abc123")
    first = deliver(settings)
    layout = model_layout(node_root=settings.node.root, storage_path=PATH)
    legacy = layout.version_dir(version_id_for("abc123"))
    shutil.move(layout.version_dir(first), legacy)  # as an older release named it
    os.unlink(layout.link)
    os.symlink(layout.link_target(legacy.name), layout.link)
    again = MemoryBackend({"a.bin": b"A" * 5000}, revision="abc123")
    source["backend"] = again
    assert deliver(settings) == legacy.name
    assert again.bytes_served == 0


def _listing(revision: str, *files: tuple[str, int, str]) -> list[FileIdentity]:
    del revision
    return [FileIdentity(name=n, size=s, digests=(("sha256", d),)) for n, s, d in files]


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (("hf:o/r", "main", [("x", 1, "aa")]), ("hf:o/r", "main", [("x", 1, "aa")]), True),
        (("hf:o/r", "main", [("x", 1, "aa")]), ("hf:o/r", "main", [("x", 1, "bb")]), False),
        (("hf:o/r", "main", [("x", 1, "aa")]), ("hf:o/r", "main", [("x", 2, "aa")]), False),
        (("hf:o/r", "main", [("x", 1, "aa")]), ("hf:o/r", "main", [("y", 1, "aa")]), False),
        (("hf:o/r", "main", [("x", 1, "aa")]), ("hf:o/other", "main", [("x", 1, "aa")]), False),
        (("hf:o/r", "main", [("x", 1, "aa")]), ("hf:o/r", "v2", [("x", 1, "aa")]), False),
        (
            ("s3:/b/p", "r", [("x", 1, "aa"), ("y", 2, "bb")]),
            ("s3:/b/p", "r", [("y", 2, "bb"), ("x", 1, "aa")]),
            True,
        ),
    ],
)
def test_content_version_id_changes_with_any_part_of_the_content(a, b, same):
    ids = [
        content_version_id(source=src, revision=rev, files=_listing(rev, *files))
        for src, rev, files in (a, b)
    ]
    assert (ids[0] == ids[1]) is same
    assert all(len(i) <= 64 and "/" not in i for i in ids)


def test_content_version_id_is_directory_safe_for_hostile_revisions():
    vid = content_version_id(source="s3:/b/p", revision="../../etc/" + "x" * 300, files=[])
    assert "/" not in vid and not vid.startswith(".") and len(vid) <= 64


def test_listing_types_stay_what_content_ids_read():
    # content ids read these RemoteFile fields; renaming one would silently change every id
    fields = set(RemoteFile.__dataclass_fields__)
    assert {"sha256", "md5", "git_sha1", "multipart_md5", "etag", "name", "size"} <= fields
    assert ModelListing.__dataclass_fields__.keys() >= {"revision", "files"}
