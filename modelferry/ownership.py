"""Who owns a path on a node, and where a model may be placed at all: pure rules, no I/O.

A model owns its `storage.path` and its versions directory through an owner record
(`<versions>/<name>/owner.json`) that names its kind, namespace, name and uid. The node activity
(`activities.ownership`) reads the disk and asks these functions what to do; nothing modelferry
did not create is ever swapped, moved or deleted.

Placement: `storage.path` must lie strictly below one of the configured models roots (default
`/mnt/models` and `/raid/models`, where OME's samples put models). System directories are refused
by that rule, not by a list. No path segment may be one of our own state names, so a model can
never be placed inside another model's versions or state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from modelferry.errors import UnsafePathError
from modelferry.layout import VERSIONS_DIR_NAME
from modelferry.names import STATE_DIR_NAME

DEFAULT_MODELS_ROOTS = ("/mnt/models", "/raid/models")
OWNER_FILE_NAME = "owner.json"
OWNER_RECORD_VERSION = 1
_RESERVED_SEGMENTS = (VERSIONS_DIR_NAME, STATE_DIR_NAME)


@dataclass(frozen=True, slots=True)
class PathOwner:
    """The model resource a path on a node belongs to."""

    kind: str
    name: str
    namespace: str | None = None
    uid: str = ""

    def describe(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        uid = f" (uid {self.uid})" if self.uid else ""
        return f"{self.kind} {where}{self.name}{uid}"

    def same_resource(self, other: PathOwner) -> bool:
        """The same kind, namespace and name: the same resource, or a re-creation of it.

        A name can only be reused once the old object is gone (our finalizer holds it until its
        cleanup ran), so a new uid under the same name takes over what the old one left.
        """
        return (self.kind, self.namespace, self.name) == (other.kind, other.namespace, other.name)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": OWNER_RECORD_VERSION,
                "kind": self.kind,
                "namespace": self.namespace,
                "name": self.name,
                "uid": self.uid,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> PathOwner | None:
        """The owner in `text`, or None when it is not an owner record we wrote."""
        try:
            data: Any = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
            return None
        name, namespace, uid = data.get("name"), data.get("namespace"), data.get("uid", "")
        if not isinstance(name, str) or not name or not isinstance(uid, str):
            return None
        if namespace is not None and not isinstance(namespace, str):
            return None
        return cls(kind=data["kind"], name=name, namespace=namespace, uid=uid)


def check_models_root(storage_path: str, *, models_roots: Sequence[str]) -> str:
    """The models root `storage_path` lies strictly below; UnsafePathError naming both otherwise.

    `storage_path` is already normalised (`storage_uri.validate_model_path`).
    """
    path = PurePosixPath(storage_path)
    bad = [s for s in path.parts[1:] if s in _RESERVED_SEGMENTS]
    if bad:
        raise UnsafePathError(
            f"storage path '{storage_path}': '{bad[0]}' is modelferry's own state; "
            "a model cannot be placed inside another model's versions"
        )
    for root in models_roots:
        root_path = PurePosixPath(root)
        if path != root_path and path.is_relative_to(root_path):
            return root
    roots = ", ".join(models_roots) or "none configured"
    raise UnsafePathError(
        f"storage path '{storage_path}' is not below a models root ({roots}); "
        "put the model under one, or add a root to the node settings (policy.models_roots)"
    )


def is_our_link_target(target: str, *, link_name: str) -> bool:
    """True for exactly the relative targets activation writes: `.modelferry-versions/<name>/<id>`."""
    parts = PurePosixPath(target).parts
    return (
        len(parts) == 3
        and parts[0] == VERSIONS_DIR_NAME
        and parts[1] == link_name
        and parts[2] not in ("", ".", "..")
    )


@dataclass(frozen=True, slots=True)
class NameLimits:
    """What the filesystem holding the models allows (`os.pathconf` PC_NAME_MAX / PC_PATH_MAX)."""

    name_max: int = 255
    path_max: int = 4096


# The longest suffix we add to a file's name: `<name>.parts.jsonl`, a partial file's checkpoint log.
FILE_NAME_OVERHEAD = len(".parts.jsonl")
PARTIAL_DIR_OVERHEAD = len("/.modelferry/partial/")


def check_name_lengths(*, version_dir: str, names: Sequence[str], limits: NameLimits) -> None:
    """Refuse, before the first byte, file names the filesystem would refuse half-way through."""
    for name in names:
        for segment in PurePosixPath(name).parts:
            if len(segment.encode()) + FILE_NAME_OVERHEAD > limits.name_max:
                raise UnsafePathError(
                    f"object name '{name}': the part '{segment[:40]}...' is {len(segment.encode())} bytes; "
                    f"this filesystem allows {limits.name_max - FILE_NAME_OVERHEAD} "
                    f"({limits.name_max} less {FILE_NAME_OVERHEAD} for our partial-file suffix)"
                )
        full = len(version_dir.encode()) + PARTIAL_DIR_OVERHEAD + len(name.encode()) + FILE_NAME_OVERHEAD
        if full >= limits.path_max:
            raise UnsafePathError(
                f"object name '{name[:60]}...': its path on the node would be {full} bytes; "
                f"this filesystem allows {limits.path_max - 1}"
            )


def check_link_name(*, storage_path: str, limits: NameLimits) -> None:
    """Every part of storage.path must be a name this filesystem can hold."""
    for segment in PurePosixPath(storage_path).parts[1:]:
        if len(segment.encode()) > limits.name_max:
            raise UnsafePathError(
                f"storage path '{storage_path[:80]}...': the part '{segment[:40]}...' is "
                f"{len(segment.encode())} bytes; this filesystem allows {limits.name_max}"
            )
