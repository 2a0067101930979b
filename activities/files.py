"""Node-queue activities on a model's files: verify a version, activate it, remove the model.

Layout (see `modelferry.layout`): each source revision sits in its own directory in a sibling
store, and `storage.path` is a symlink swapped atomically to the verified version. The previous
version stays on disk for a rollback; older ones are pruned.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from temporalio import activity

from activities.download import storage_path_of
from activities.errors import typed_failures
from activities.verify import verify_model_dir
from modelferry.errors import PermanentError
from modelferry.layout import ModelLayout, model_layout
from modelferry.messages import NodeModelInput, RemoveModelFilesResult, VerifyModelResult
from modelferry.names import MANIFEST_FILE_NAME, STATE_DIR_NAME
from modelferry.settings import Settings

KEEP_PREVIOUS_VERSIONS = 1  # kept beside the active one, for rollback


class UnmanagedPathError(PermanentError):
    """storage.path holds files modelferry did not put there; we never overwrite them."""


def _is_complete(version_dir: Path) -> bool:
    return (version_dir / STATE_DIR_NAME / MANIFEST_FILE_NAME).is_file()


def active_version(layout: ModelLayout) -> str | None:
    if not layout.link.is_symlink():
        return None
    return Path(os.readlink(layout.link)).name


def _swap_link(layout: ModelLayout, version_id: str) -> None:
    tmp = layout.link.with_name(f".{layout.link.name}.{uuid.uuid4().hex[:8]}.link")
    os.symlink(layout.link_target(version_id), tmp)
    os.replace(tmp, layout.link)  # atomic: readers see the old or the new version, never neither
    fd = os.open(layout.link.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _adopt_or_refuse(layout: ModelLayout) -> None:
    """Make room for the link where storage.path is a real directory."""
    link = layout.link
    if not link.exists() or link.is_symlink():
        return
    if link.is_dir() and not any(link.iterdir()):
        link.rmdir()
        return
    if link.is_dir() and _is_complete(link):
        # Pre-staged with `modelferry pull`: keep it as a version, so nothing verified is lost.
        layout.store.mkdir(parents=True, exist_ok=True)
        os.replace(link, layout.version_dir(f"prestaged-{uuid.uuid4().hex[:8]}"))
        return
    raise UnmanagedPathError(
        f"storage.path {link} already holds files that modelferry did not write; "
        "move them away (or pre-stage with `modelferry pull`) and retry"
    )


def prune_versions(
    layout: ModelLayout, *, keep: str, keep_previous: int = KEEP_PREVIOUS_VERSIONS
) -> list[str]:
    if not layout.store.is_dir():
        return []
    others = [p for p in layout.store.iterdir() if p.is_dir() and p.name != keep]
    complete = sorted((p for p in others if _is_complete(p)), key=lambda p: p.stat().st_mtime, reverse=True)
    doomed = complete[keep_previous:] + [p for p in others if not _is_complete(p)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return [p.name for p in doomed]


class FilesActivities:
    def __init__(self, *, settings: Settings) -> None:
        self._settings = settings

    def _layout(self, inp: NodeModelInput) -> ModelLayout:
        return model_layout(node_root=self._settings.node.root, storage_path=storage_path_of(inp))

    @activity.defn(name="verify_model")
    @typed_failures
    def verify_model(self, inp: NodeModelInput) -> VerifyModelResult:
        version_dir = self._layout(inp).version_dir(inp.version_id)
        report = verify_model_dir(version_dir, heartbeat=activity.heartbeat)
        return VerifyModelResult(files=report.files, total_bytes=report.total_bytes)

    @activity.defn(name="activate_model_version")
    @typed_failures
    def activate_model_version(self, inp: NodeModelInput) -> str:
        layout = self._layout(inp)
        if not _is_complete(layout.version_dir(inp.version_id)):
            raise UnmanagedPathError(
                f"version {inp.version_id} at {layout.store} is not complete; refusing to activate"
            )
        if active_version(layout) != inp.version_id:
            layout.link.parent.mkdir(parents=True, exist_ok=True)
            _adopt_or_refuse(layout)
            _swap_link(layout, inp.version_id)
        pruned = prune_versions(layout, keep=inp.version_id)
        if pruned:
            activity.logger.info("pruned old versions of %s: %s", layout.link, pruned)
        return inp.version_id

    @activity.defn(name="remove_model_files")
    @typed_failures
    def remove_model_files(self, inp: NodeModelInput) -> RemoveModelFilesResult:
        layout = self._layout(inp)
        removed = False
        if layout.link.is_symlink():
            layout.link.unlink()
            removed = True
        elif layout.link.is_dir() and _is_complete(layout.link):
            shutil.rmtree(layout.link)
            removed = True
        if layout.store.exists():
            shutil.rmtree(layout.store)
            removed = True
            try:
                layout.store.parent.rmdir()  # the shared versions dir, once no model uses it
            except OSError:
                pass
        return RemoveModelFilesResult(removed=removed, path=str(layout.link))
