"""Claim and release a model's path on a node: the disk side of `modelferry.ownership`.

`claim_model_path` runs before any byte is fetched and again before activation. It makes the
model the recorded owner of its versions directory, or refuses, naming both owners, when:
- the versions directory belongs to another model (its `owner.json` names someone else);
- `storage.path` is a symlink modelferry did not create, a file, or a directory holding anything
  but a pre-staged modelferry model (a directory holding other models' paths names them);
- a directory between the models root and `storage.path` is a symlink (it could lead anywhere)
  or is itself a model directory (the path would lie inside another model).
`release_model_path` removes only what the record says is this model's. Claims on one directory
are serialised by an flock, so two models racing for one path cannot both win.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from activities.storage.diskspace import existing_ancestor
from modelferry.errors import ForeignPathError, PathOwnedByAnotherModelError
from modelferry.layout import VERSIONS_DIR_NAME, ModelLayout
from modelferry.messages import ModelRef
from modelferry.names import MANIFEST_FILE_NAME, STATE_DIR_NAME
from modelferry.ownership import OWNER_FILE_NAME, NameLimits, PathOwner, is_our_link_target

CLAIMS_LOCK_NAME = ".claims.lock"
_OWNER_SCAN_LIMIT = 2_000  # directory entries looked at to name the owners below a foreign path


def owner_for(ref: ModelRef) -> PathOwner:
    return PathOwner(
        kind=ref.kind.value,
        name=ref.name,
        namespace=ref.namespace if ref.kind.namespaced else None,
        uid=ref.uid,
    )


def name_limits(path: Path) -> NameLimits:
    """The name and path limits of the filesystem `path` (or its nearest existing parent) is on."""
    current = existing_ancestor(path)
    try:
        return NameLimits(
            name_max=os.pathconf(current, "PC_NAME_MAX"), path_max=os.pathconf(current, "PC_PATH_MAX")
        )
    except (OSError, ValueError):
        return NameLimits()


def is_complete_model_dir(path: Path) -> bool:
    return (path / STATE_DIR_NAME / MANIFEST_FILE_NAME).is_file()


def read_owner(store: Path) -> PathOwner | None:
    """The recorded owner of a versions directory; None when there is no record."""
    record = store / OWNER_FILE_NAME
    try:
        text = record.read_text()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise ForeignPathError(f"{record}: cannot read the owner record: {error}") from None
    owner = PathOwner.from_json(text)
    if owner is None:
        raise ForeignPathError(f"{record} is not an owner record modelferry wrote; refusing to use {store}")
    return owner


def _matches(recorded: PathOwner, owner: PathOwner) -> bool:
    if recorded.uid and owner.uid:
        return recorded.uid == owner.uid
    return recorded.same_resource(owner)


@contextlib.contextmanager
def _claims_lock(versions_root: Path) -> Iterator[None]:
    fd = os.open(versions_root / CLAIMS_LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _real_dir(path: Path, *, what: str) -> None:
    """Create `path` as a real directory, or check that it is one (never through a symlink)."""
    if path.is_symlink():
        raise ForeignPathError(
            f"{path} ({what}) is a symlink modelferry did not create; it could lead anywhere, so "
            "nothing is written through it"
        )
    try:
        path.mkdir(exist_ok=True)
    except FileExistsError:
        raise ForeignPathError(f"{path} ({what}) exists and is not a directory") from None


def _check_ancestors(layout: ModelLayout, models_root: Path) -> None:
    """Every directory between the models root and storage.path: real, not another model's."""
    models_root.mkdir(parents=True, exist_ok=True)
    relative = layout.link.parent.relative_to(models_root)
    current = models_root
    for part in relative.parts:
        current = current / part
        owner = _link_owner(current) if current.is_symlink() else None
        if owner is not None:
            raise PathOwnedByAnotherModelError(
                f"storage path {layout.link} lies inside {current}, the path of {owner}"
            )
        if current.is_dir() and not current.is_symlink() and is_complete_model_dir(current):
            raise PathOwnedByAnotherModelError(
                f"storage path {layout.link} lies inside {current}, which is a model directory"
            )
        _real_dir(current, what="a directory above storage.path")


def _link_owner(link: Path) -> str | None:
    """Who a symlink of ours (`.modelferry-versions/<name>/<id>`) belongs to, if it is one."""
    try:
        target = os.readlink(link)
    except OSError:
        return None
    if not is_our_link_target(target, link_name=link.name):
        return None
    try:
        owner = read_owner(link.parent / VERSIONS_DIR_NAME / link.name)
    except ForeignPathError:
        return None
    return owner.describe() if owner else "a model"


def _owners_below(path: Path) -> list[str]:
    """Models whose paths lie below `path`, found by their owner records (bounded scan)."""
    found: list[str] = []
    seen = 0
    for dirpath, dirnames, _ in os.walk(path):
        seen += len(dirnames)
        if VERSIONS_DIR_NAME in dirnames:
            versions = Path(dirpath) / VERSIONS_DIR_NAME
            for store in sorted(versions.iterdir()):
                with contextlib.suppress(ForeignPathError, OSError):
                    owner = read_owner(store)
                    if owner:
                        found.append(f"{owner.describe()} at {Path(dirpath) / store.name}")
            dirnames.remove(VERSIONS_DIR_NAME)
        if seen > _OWNER_SCAN_LIMIT or len(found) >= 3:
            break
    return found


def _check_link(layout: ModelLayout) -> None:
    link = layout.link
    if link.is_symlink():
        target = os.readlink(link)
        if not is_our_link_target(target, link_name=link.name):
            raise ForeignPathError(
                f"storage path {link} is a symlink to {target} that modelferry did not create; "
                "it is never replaced: choose another path, or remove the link yourself"
            )
        return
    if not link.exists():
        return
    if link.is_dir():
        if is_complete_model_dir(link):
            return  # pre-staged with `modelferry pull`: activation keeps it as a version
        entries = list(link.iterdir())
        if not entries:
            return
        owners = _owners_below(link)
        if owners:
            raise PathOwnedByAnotherModelError(
                f"storage path {link} lies above the path of " + "; ".join(owners)
            )
    raise ForeignPathError(
        f"storage path {link} already holds files that modelferry did not write; they are never "
        "touched: move them away (or pre-stage with `modelferry pull`) and the node retries"
    )


def _is_legacy_store(store: Path) -> bool:
    """A versions directory written before owner records: only our version directories inside."""
    entries = [e for e in store.iterdir() if e.name != OWNER_FILE_NAME]
    return all(e.is_dir() and not e.is_symlink() and (e / STATE_DIR_NAME).is_dir() for e in entries)


def _write_owner(store: Path, owner: PathOwner, *, replace: bool) -> None:
    tmp = store / f".{OWNER_FILE_NAME}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(owner.to_json())
    try:
        if replace:
            os.replace(tmp, store / OWNER_FILE_NAME)
        else:
            os.link(tmp, store / OWNER_FILE_NAME)  # fails if a racing claim got there first
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def claim_model_path(*, layout: ModelLayout, owner: PathOwner, models_root: Path) -> None:
    """Make `owner` the recorded owner of `layout`, or raise a PathOwnershipError naming both."""
    _check_ancestors(layout, models_root)
    versions_root = layout.store.parent
    _real_dir(versions_root, what="modelferry's versions directory")
    with _claims_lock(versions_root):
        if layout.store.is_symlink():
            raise ForeignPathError(f"{layout.store} is a symlink modelferry did not create")
        recorded = read_owner(layout.store) if layout.store.is_dir() else None
        if recorded is not None and not recorded.same_resource(owner):
            raise PathOwnedByAnotherModelError(
                f"storage path {layout.link} belongs to {recorded.describe()}; "
                f"{owner.describe()} cannot use it (give it another storage.path)"
            )
        if recorded is None and layout.store.exists() and not _is_legacy_store(layout.store):
            raise ForeignPathError(f"{layout.store} holds files that modelferry did not write")
        _check_link(layout)
        if recorded is None:
            _real_dir(layout.store, what="the model's versions")
            _write_owner(layout.store, owner, replace=False)
        elif recorded != owner:
            _write_owner(layout.store, owner, replace=True)  # a re-created resource takes over


@dataclass(frozen=True, slots=True)
class Release:
    removed: bool
    detail: str


def release_model_path(*, layout: ModelLayout, owner: PathOwner) -> Release:
    """Remove this model's link and versions; anything that is not provably its own stays."""
    store, link = layout.store, layout.link
    if not store.is_dir() or store.is_symlink():
        return Release(False, f"nothing of {owner.describe()} at {link}")
    with _claims_lock(store.parent):
        try:
            recorded = read_owner(store)
        except ForeignPathError as error:
            return Release(False, f"left in place: {error.message}")
        if recorded is None and not _is_legacy_store(store):
            return Release(False, f"left in place: {store} holds files that modelferry did not write")
        if recorded is not None and not _matches(recorded, owner):
            return Release(False, f"left in place: {link} belongs to {recorded.describe()}")
        if link.is_symlink() and is_our_link_target(os.readlink(link), link_name=link.name):
            link.unlink()
        shutil.rmtree(store)
    versions_root = store.parent
    with contextlib.suppress(OSError):
        if [e.name for e in versions_root.iterdir()] == [CLAIMS_LOCK_NAME]:
            (versions_root / CLAIMS_LOCK_NAME).unlink()
            versions_root.rmdir()  # the shared versions directory, once no model uses it
    return Release(True, f"removed {link}")
