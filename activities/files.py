"""Node-queue activities on a model's files: verify a version, activate it, remove the model.

Layout (see `modelferry.layout`): each source revision sits in its own directory in a sibling
store, and `storage.path` is a symlink swapped atomically to the verified version. The previous
version stays on disk for a rollback; older ones are pruned.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from dataclasses import dataclass

from temporalio import activity

from activities.download import active_version, metric_labels, node_placement
from activities.errors import typed_failures
from activities.ownership import claim_model_path, is_complete_model_dir, owner_for, release_model_path
from activities.verify import verify_model_dir
from modelferry import metrics
from modelferry.errors import InvalidSpecError, TemporaryError, UnsafePathError
from modelferry.layout import ModelLayout
from modelferry.messages import (
    ActivateModelVersionInput,
    ActivateModelVersionResult,
    NodeWork,
    RemoveModelFilesInput,
    RemoveModelFilesResult,
    VerifyModelInput,
    VerifyModelResult,
)
from modelferry.settings import Settings

# Kept beside the active one, for rollback, when a caller says nothing (the workflow passes
# `ActivateModelVersionInput.keep_previous`, from `pipeline.keep_versions`).
KEEP_PREVIOUS_VERSIONS = 1


class IncompleteVersionError(TemporaryError):
    """The version to activate has no manifest (yet): the download has to run again."""


def _swap_link(layout: ModelLayout, version_id: str) -> None:
    # A short temporary name: `storage.path`'s last part may be as long as the filesystem allows.
    tmp = layout.link.with_name(f".modelferry-{uuid.uuid4().hex[:12]}.link")
    os.symlink(layout.link_target(version_id), tmp)
    try:
        os.replace(tmp, layout.link)  # atomic: readers see the old or the new version, never neither
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fd = os.open(layout.link.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_room_for_link(layout: ModelLayout) -> None:
    """The claim allowed what is at storage.path: nothing, our link, an empty or a pre-staged dir."""
    link = layout.link
    if not link.exists() or link.is_symlink():
        return
    if is_complete_model_dir(link):
        # Pre-staged with `modelferry pull`: keep it as a version, so nothing verified is lost.
        os.replace(link, layout.version_dir(f"prestaged-{uuid.uuid4().hex[:8]}"))
        return
    link.rmdir()  # empty (the claim checked); fails rather than lose anything that appeared since


@dataclass(frozen=True, slots=True)
class Pruned:
    removed: list[str]  # older versions deleted: beyond the count, or incomplete
    kept: list[str]  # complete older versions still on disk, newest first


def prune_versions(layout: ModelLayout, *, keep: str, keep_previous: int = KEEP_PREVIOUS_VERSIONS) -> Pruned:
    """Keep the active version `keep` and the `keep_previous` newest complete others; remove the rest."""
    if not layout.store.is_dir():
        return Pruned(removed=[], kept=[])
    others = [p for p in layout.store.iterdir() if p.is_dir() and not p.is_symlink() and p.name != keep]
    complete = sorted(
        (p for p in others if is_complete_model_dir(p)), key=lambda p: p.stat().st_mtime, reverse=True
    )
    keep_previous = max(0, keep_previous)
    doomed = complete[keep_previous:] + [p for p in others if not is_complete_model_dir(p)]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return Pruned(removed=[p.name for p in doomed], kept=[p.name for p in complete[:keep_previous]])


class FilesActivities:
    def __init__(self, *, settings: Settings) -> None:
        self._settings = settings

    def _layout(self, inp: NodeWork) -> ModelLayout:
        return node_placement(settings=self._settings, inp=inp).layout

    @activity.defn(name="verify_model")
    @typed_failures
    def verify_model(self, inp: VerifyModelInput) -> VerifyModelResult:
        version_dir = self._layout(inp).version_dir(inp.version_id)
        with metrics.observe_verification(metric_labels(inp)):
            report = verify_model_dir(version_dir, heartbeat=activity.heartbeat)
        return VerifyModelResult(files=report.files, total_bytes=report.total_bytes)

    @activity.defn(name="activate_model_version")
    @typed_failures
    def activate_model_version(self, inp: ActivateModelVersionInput) -> ActivateModelVersionResult:
        placement = node_placement(settings=self._settings, inp=inp)
        layout = placement.layout
        if not is_complete_model_dir(layout.version_dir(inp.version_id)):
            raise IncompleteVersionError(
                f"version {inp.version_id} at {layout.store} is not complete; refusing to activate"
            )
        if active_version(layout) != inp.version_id:
            claim_model_path(layout=layout, owner=owner_for(inp.ref), models_root=placement.models_root)
            _make_room_for_link(layout)
            _swap_link(layout, inp.version_id)
        pruned = prune_versions(layout, keep=inp.version_id, keep_previous=inp.keep_previous)
        if pruned.removed:
            activity.logger.info("pruned old versions of %s: %s", layout.link, pruned.removed)
        return ActivateModelVersionResult(version_id=inp.version_id, pruned=pruned.removed, kept=pruned.kept)

    @activity.defn(name="remove_model_files")
    @typed_failures
    def remove_model_files(self, inp: RemoveModelFilesInput) -> RemoveModelFilesResult:
        try:
            placement = node_placement(settings=self._settings, inp=inp)
        except (InvalidSpecError, UnsafePathError) as error:
            # A path the rules refuse was never ours: there is nothing of this model to remove.
            activity.logger.info("%s on %s: nothing removed: %s", inp.ref.display(), inp.node, error)
            return RemoveModelFilesResult(removed=False, path=str(inp.spec.storage.path))
        release = release_model_path(layout=placement.layout, owner=owner_for(inp.ref))
        if not release.removed:
            activity.logger.info("%s on %s: %s", inp.ref.display(), inp.node, release.detail)
        return RemoveModelFilesResult(removed=release.removed, path=str(placement.layout.link))
