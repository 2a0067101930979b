"""Where a node's report entries go when one ConfigMap cannot hold them all (pure).

Every model on a node has its entry in the node's ConfigMap, and Kubernetes refuses a ConfigMap
whose data (keys plus values) passes 1 MiB: a node with hundreds of models and large parsed
configs would stop taking reports altogether. So a node's report is split before the limit: the
ConfigMap named after the node (the *primary*) and overflow ConfigMaps `<node>.modelferry-2`,
`-3`, ... (`names.overflow_configmap_name`), each under `LIMIT_BYTES`, with the primary's labels
plus `names.OVERFLOW_OF_LABEL` (selecting them by node) and the annotation `names.NODE_ANNOTATION`
(the node's full name; `nodestatus.report_node`).

Which entries go where, and why: OME's BaseModel controller reads a node's report only from the
ConfigMap named after the node. It lists every ConfigMap labelled `models.ome/basemodel-status`
in its namespace, but counts one only when a Node of the ConfigMap's name exists
(`processModelStatus` in pkg/controller/v1beta1/basemodel/controller.go), so an entry in an
overflow ConfigMap never reaches `nodesReady`. Hence:

- OME-format entries (`ome_keys`, small: `ModelConfig`'s fields) always go to the primary, which
  they may fill up to `LIMIT_BYTES`. Only if the primary cannot hold one even so (thousands of
  models on one node) does it go to an overflow: OME then does not count that node for that model,
  which is still better than a refused write that loses every model's report on the node. OME's
  deletion check (`handleModelDeletion`) lists every labelled ConfigMap without the node check, so
  it sees such an entry too, and our removal clears it wherever it is.
- Documented-format entries (which carry the whole parsed config, the large ones) join the primary
  only while it stays under `PRIMARY_DOCS_BYTES`, which leaves OME's entries room; past that they
  go to the first overflow with room, or a new one. An entry stays in the ConfigMap that holds it
  while it fits there, so a write moves no one's entry but the writer's own.

A reader takes a key from the primary first, then the overflows in index order
(`merged_report`). A move writes the entry's new place before removing the old one (`plan_writes`),
so a reader sees it in one place or, for a moment, in two; the model's next write keeps one.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from modelferry.names import overflow_configmap_name

# Kubernetes' ConfigMap limit is 1 MiB of keys plus values (`data` and `binaryData`); stopping at
# 900 KiB leaves room for what a write adds on top and for the limit's own rounding.
LIMIT_BYTES = 900 * 1024
# Documented entries fill the primary only to here, so OME's entries (which must be in the primary
# to count) keep at least ~300 KiB: some 600 models downloading at once, progress included.
PRIMARY_DOCS_BYTES = 600 * 1024

_OVERFLOW_INDEX = re.compile(r"\.modelferry-(\d+)\Z")


def entry_size(key: str, value: str) -> int:
    """What one entry counts towards Kubernetes' limit."""
    return len(key.encode()) + len(value.encode())


def data_size(data: Mapping[str, str]) -> int:
    """What a ConfigMap's data counts towards Kubernetes' 1 MiB: its keys and values, in bytes."""
    return sum(entry_size(k, v) for k, v in data.items())


def overflow_index(name: str) -> int:
    """The index an overflow ConfigMap's name ends with (2, 3, ...); 0 when it has none."""
    found = _OVERFLOW_INDEX.search(name)
    return int(found.group(1)) if found else 0


@dataclass(frozen=True)
class NodeReport:
    """A node's report as read: the primary's data (None when there is no such ConfigMap) and each
    overflow ConfigMap's data by name."""

    node: str
    primary: Mapping[str, str] | None
    overflows: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def objects(self) -> dict[str, dict[str, str]]:
        """Every ConfigMap's data by name, primary first, then overflows in index order."""
        out = {self.node: dict(self.primary or {})}
        for name in sorted(self.overflows, key=lambda n: (overflow_index(n), n)):
            out[name] = dict(self.overflows[name])
        return out


def merged_report(report: NodeReport) -> dict[str, str]:
    """Every entry of the node: a key held twice (a move caught half-way) is read from the primary,
    else from the lowest-numbered overflow."""
    out: dict[str, str] = {}
    for data in report.objects().values():
        for key, value in data.items():
            out.setdefault(key, value)
    return out


@dataclass(frozen=True)
class Layout:
    """Each ConfigMap's data after a write (an empty overflow is to be deleted), and the keys that
    fit nowhere: an entry bigger than a whole ConfigMap is left out."""

    objects: dict[str, dict[str, str]]
    left_out: tuple[str, ...] = ()


def place_entries(
    report: NodeReport,
    *,
    keys: Collection[str],
    entries: Mapping[str, str],
    ome_keys: Collection[str] = (),
    taken: Collection[str] = (),
    limit: int = LIMIT_BYTES,
    primary_docs: int = PRIMARY_DOCS_BYTES,
) -> Layout:
    """The node's ConfigMaps after one model's `keys` are set to their values in `entries` (a key
    not in `entries` is removed), every other entry left where it is. `ome_keys` go to the primary
    first; other keys stay where they were while they fit, else the primary below `primary_docs`,
    else the first overflow with room, else a new overflow (its name not in `taken`)."""
    objects = report.objects()
    home: dict[str, str] = {}
    for name, data in objects.items():
        for key in keys:
            if key in data:
                home.setdefault(key, name)
                del data[key]
    sizes = {name: data_size(data) for name, data in objects.items()}
    left_out: list[str] = []

    def room(name: str, cap: int, cost: int) -> bool:
        return sizes[name] + cost <= cap

    for key in sorted((k for k in keys if k in entries), key=lambda k: (k not in ome_keys, k)):
        value = entries[key]
        cost = entry_size(key, value)
        if cost > limit:
            left_out.append(key)
            continue
        overflows = [n for n in objects if n != report.node]
        if key in ome_keys:
            candidates = [(report.node, limit)] + [(n, limit) for n in overflows]
        else:
            candidates = []
            where = home.get(key)
            if where is not None:
                candidates.append((where, primary_docs if where == report.node else limit))
            candidates += [(report.node, primary_docs)] + [(n, limit) for n in overflows]
        target = next((name for name, cap in candidates if room(name, cap, cost)), None)
        if target is None:
            target = _new_overflow_name(report.node, used=set(objects) | set(taken))
            objects[target] = {}
            sizes[target] = 0
        objects[target][key] = value
        sizes[target] += cost
    return Layout(objects=objects, left_out=tuple(left_out))


def _new_overflow_name(node: str, *, used: Collection[str]) -> str:
    index = 2
    while overflow_configmap_name(node, index) in used:
        index += 1
    return overflow_configmap_name(node, index)


@dataclass(frozen=True)
class Write:
    """One ConfigMap write: `create`, `replace` (with the data it gets) or `delete`."""

    op: str
    name: str
    data: dict[str, str]


def plan_writes(report: NodeReport, layout: Layout, *, delete_empty_primary: bool = False) -> list[Write]:
    """The writes that turn `report` into `layout`, the ones that add or change an entry first and
    those that only remove entries last, so an entry being moved is never missing in between. An
    emptied overflow is deleted; an emptied primary only when `delete_empty_primary` (its node is
    gone), else it stays, empty, as OME's agent leaves it."""
    before = report.objects()
    adding: list[Write] = []
    removing: list[Write] = []
    for name, data in layout.objects.items():
        exists = name in before if name != report.node else report.primary is not None
        old = before.get(name, {})
        if data == old:
            continue
        if not data:
            if exists and (name != report.node or delete_empty_primary):
                removing.append(Write("delete", name, {}))
            elif exists:
                removing.append(Write("replace", name, {}))
            continue
        write = Write("replace" if exists else "create", name, data)
        gains = any(old.get(k) != v for k, v in data.items())
        (adding if gains else removing).append(write)
    return adding + removing


def report_keys(objects: Iterable[Mapping[str, str]]) -> set[str]:
    """Every key in the given ConfigMaps' data."""
    return {key for data in objects for key in data}
