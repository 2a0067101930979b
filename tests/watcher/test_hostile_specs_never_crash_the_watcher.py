"""Hostile or broken model resources never crash the watcher's decision (property-based).

The objects are shaped as the API server delivers them: what the server sets or type-checks
(apiVersion, kind, uid, generation, and the *types* of name, namespace, labels and annotations) is
well formed; everything a user writes can be anything (wrong types, NaN, values nested thousands
deep or megabytes long, odd unicode, NUL, `../`, absolute paths, backslashes, over-long names).
Starting points are valid resources from OME's catalogue (tests/data/ome-models), mutated.

For every object:
- `decide` returns without raising;
- when `check_resource` finds the spec invalid, the decision is exactly one `MarkInvalid` whose
  `field` is a dotted path that exists in the object (or, for a missing required field, whose
  parent does) and whose `rule` says something; when it is valid, exactly one `Apply`;
- the same event decided again after `remember` is `Ignore`.

Hypothesis runs derandomized without an example database, so every run (and CI) tries the same
examples; the seeded rows at the end pin the crashes this test found.
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from watcher_builders import model_obj

from modelferry.names import API_GROUP_VERSION, FINALIZER, ModelKind
from modelferry.spec import check_resource
from modelferry.spec.parse import MAX_DEPTH
from watcher.decide import Apply, Delete, EventType, Ignore, Known, MarkInvalid, ModelEvent, decide, remember

CORPUS = Path(__file__).resolve().parents[1] / "data" / "ome-models"
CORPUS_FILES = sorted(CORPUS.rglob("*.yaml"))[::10]  # a spread of vendors; all 207 are checked elsewhere

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


def _seeds() -> list[tuple[ModelKind, dict[str, Any]]]:
    seeds: list[tuple[ModelKind, dict[str, Any]]] = []
    for i, path in enumerate(CORPUS_FILES):
        doc = yaml.safe_load(path.read_text())
        meta = {**doc["metadata"], "uid": f"uid-{i}", "generation": 1 + i % 3}
        seeds.append((ModelKind.CLUSTER_BASE_MODEL, {**doc, "metadata": meta}))
        namespaced = {**doc, "kind": "BaseModel", "metadata": {**meta, "namespace": "team-a"}}
        seeds.append((ModelKind.BASE_MODEL, namespaced))
    seeds.append((ModelKind.FINE_TUNED_WEIGHT, model_obj("lora", kind=ModelKind.FINE_TUNED_WEIGHT)))
    seeds.append(
        (
            ModelKind.FINE_TUNED_WEIGHT,
            model_obj("lora-s3", kind=ModelKind.FINE_TUNED_WEIGHT, uri="s3://bucket/lora"),
        )
    )
    seeds.append(
        (
            ModelKind.BASE_MODEL,
            model_obj("pvc-model", uri="pvc://models/llama", node_selector={"gpu": "a100"}),
        )
    )
    return seeds


SEEDS = _seeds()

# --- strategies -------------------------------------------------------------------------------

HOSTILE_TEXT = [
    "",
    " ",
    ".",
    "..",
    "../",
    "../../etc/passwd",
    "a/../../b",
    "/etc/passwd",
    "/",
    "//",
    "C:\\models",
    "a\\..\\..\\b",
    "\\\\server\\share",
    "\x00",
    "a\x00b",
    "\n",
    "abc\n",
    "\t",
    "\u202e",
    "\ufeff",
    "\u0130",
    "caf\u00e9",
    "\U0001f600",
    "\ud800",
    "NaN",
    "null",
    "true",
    "{}",
    "[]",
    "0",
    "-1",
    "a" * 63,
    "a" * 64,
    "a" * 253,
    "a" * 254,
    "a" * 5000,
    "x" * 100_000,
]
STORAGE_URIS = [
    "hf://",
    "hf://a",
    "hf://a/b",
    "hf://a/b@../../x",
    "hf://a/b@/abs",
    "hf://a/b\x00",
    "HF://a/b",
    "hf://" + "a" * 97 + "/b",
    "s3://bucket/../x",
    "s3://bucket/a\\..\\b",
    "s3://bucket//x",
    "s3://ab/x",
    "s3://" + "b" * 64 + "/x",
    "s3://1.2.3.4/x",
    "oci://n/ns/b/bk/o/../x",
    "oci://n//b/bk",
    "oci://x",
    "pvc://claim/../x",
    "pvc://ns:claim/../../x",
    "pvc://ns:claim/a\\..\\b",
    "pvc://:claim/x",
    "pvc://ns:/x",
    "pvc://ns:" + "c" * 253 + "/x",
    "pvc://ns:" + "c" * 254 + "/x",
    "pvc://NS:claim/x",
    "pvc://ns:claim//etc/passwd",
    "vendor://a/b/../c",
    "vendor://a/b",
    "file:///etc/passwd",
    "://x",
    "hf://a/b" + "c" * 100_000,
]
STORAGE_PATHS = [
    "models/x",
    "/",
    "/models/../etc",
    "/models/./x",
    "/models//x",
    "/models/x/",
    "/models/\x00",
    "/models\\x",
    "\\models\\x",
    "/models/" + "a" * 300,
    "/" + "a/" * 3000 + "a",
    "/models/\u202e",
]
text = st.sampled_from(HOSTILE_TEXT) | st.text(max_size=30) | st.sampled_from(STORAGE_URIS + STORAGE_PATHS)
keys = st.sampled_from(["a", "a.b/c", "", "\x00", "kubernetes.io/hostname", "x" * 300]) | st.text(max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)


def _nest(depth: int, as_list: bool) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if as_list else {"a": value}
    return value


deep_values = st.builds(_nest, st.integers(min_value=MAX_DEPTH - 5, max_value=3000), st.booleans())
huge_values = st.sampled_from(
    [list(range(20_000)), {f"k{i}": "v" for i in range(20_000)}, "[" * 50_000, '{"a":' * 50_000]
)
any_value = json_values | deep_values | huge_values | st.sampled_from(STORAGE_URIS + STORAGE_PATHS)
string_maps = st.dictionaries(keys, text, max_size=4)

# The server checks these fields' types, so only their values are the user's to choose.
TYPED_META = {
    ("metadata", "name"): text,
    ("metadata", "namespace"): text,
    ("metadata", "labels"): string_maps,
    ("metadata", "annotations"): string_maps,
}
SPEC_PATHS: list[tuple[str, ...]] = [
    ("spec",),
    ("spec", "storage"),
    ("spec", "storage", "storageUri"),
    ("spec", "storage", "path"),
    ("spec", "storage", "nodeSelector"),
    ("spec", "storage", "parameters"),
    ("spec", "storage", "parameters", "revision"),
    ("spec", "storage", "parameters", "endpoint"),
    ("spec", "storage", "nodeAffinity"),
    ("spec", "storage", "key"),
    ("spec", "storage", "storageKey"),
    ("spec", "storage", "downloadPolicy"),
    ("spec", "modelConfiguration"),
    ("spec", "maxTokens"),
    ("spec", "disabled"),
    ("spec", "modelCapabilities"),
    ("spec", "modelFormat"),
    ("spec", "hyperParameters"),
    ("spec", "baseModelRef"),
    ("spec", "storageURI"),  # misspelt
]
SERVER_OWNED = {("apiVersion",), ("kind",), ("metadata",), ("metadata", "uid"), ("metadata", "generation")}


def _has(node: Any, part: Any) -> bool:
    """Whether `node[part]` is there: a mapping's key, or a list's index."""
    if isinstance(node, Mapping):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = doc
    for part in path[:-1]:
        if isinstance(node, dict):
            node = node.setdefault(part, {})
        elif _has(node, part):
            node = node[part]
        else:
            return  # an earlier mutation replaced the parent by a scalar: nothing to set
    if isinstance(node, dict) or _has(node, path[-1]):
        node[path[-1]] = value


def _delete(doc: dict[str, Any], path: tuple[Any, ...]) -> None:
    node: Any = doc
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _user_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths a user may write, down to a few levels (deep and huge values are mutated whole)."""
    out: list[tuple[Any, ...]] = []
    if len(prefix) >= 6:
        return out
    children = list(
        node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    )
    children = children[:16]
    for key, child in children:
        path = (*prefix, key)
        if path[0] == "metadata" and path[:2] not in TYPED_META:
            continue
        if path not in SERVER_OWNED:
            out.append(path)
            out.extend(_user_paths(child, path))
    return out


@st.composite
def hostile_resources(draw: st.DrawFn) -> tuple[ModelKind, dict[str, Any]]:
    kind, seed = draw(st.sampled_from(SEEDS))
    doc = copy.deepcopy(seed)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        action = draw(st.sampled_from(["known", "known", "typed meta", "existing", "delete", "status"]))
        if action == "known":
            _set(doc, draw(st.sampled_from(SPEC_PATHS)), draw(any_value))
        elif action == "typed meta":
            path = draw(st.sampled_from(sorted(TYPED_META)))
            _set(doc, path, draw(TYPED_META[path]))
        elif action == "status":
            doc["status"] = draw(json_values)
        else:
            paths = [p for p in _user_paths(doc) if p[:2] not in TYPED_META]
            if not paths:
                continue
            path = draw(st.sampled_from(paths))
            if action == "delete":
                _delete(doc, path)
            else:
                _set(doc, path, draw(any_value))
    return kind, doc


@st.composite
def garbage_resources(draw: st.DrawFn) -> tuple[ModelKind, dict[str, Any]]:
    """Server-shaped envelope, anything at all as the spec."""
    kind = draw(st.sampled_from(list(ModelKind)))
    meta: dict[str, Any] = {"name": draw(text), "uid": "uid-g", "generation": draw(st.integers(0, 2**63 - 1))}
    if kind.namespaced:
        meta["namespace"] = draw(text)
    if draw(st.booleans()):
        meta["finalizers"] = [FINALIZER]
    doc: dict[str, Any] = {"apiVersion": API_GROUP_VERSION, "kind": kind.value, "metadata": meta}
    if draw(st.integers(0, 9)):
        doc["spec"] = draw(
            any_value | st.fixed_dictionaries({"storage": any_value}, optional={"x": any_value})
        )
    return kind, doc


# --- the properties ---------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INDEX = re.compile(r"\[(-?\d+)\]")
_QUOTED = re.compile(r"\[('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\]")


def field_parts(field: str) -> list[int | str]:
    """`spec.storage.parameters['a.b/c']` -> ['spec', 'storage', 'parameters', 'a.b/c']."""
    parts: list[int | str] = []
    pos = 0
    while pos < len(field):
        if parts and field[pos] == ".":
            pos += 1
            match = _NAME.match(field, pos)
            assert match, f"bad field path {field!r} at {pos}"
            parts.append(match.group())
        elif not parts and (match := _NAME.match(field, pos)):
            parts.append(match.group())
        elif match := _INDEX.match(field, pos):
            parts.append(int(match.group(1)))
        elif match := _QUOTED.match(field, pos):
            parts.append(ast.literal_eval(match.group(1)))
        else:
            raise AssertionError(f"bad field path {field!r} at {pos}")
        pos = match.end()
    return parts


def _exists(obj: Any, parts: list[int | str]) -> bool:
    node = obj
    for part in parts:
        if not _has(node, part):
            return False
        node = node[part]
    return True


def assert_field_in(obj: Mapping[str, Any], field: str, rule: str) -> None:
    parts = field_parts(field)
    assert parts, f"empty field for rule {rule!r}"
    if not _exists(obj, parts):
        # A missing required field is named by where it should be: its parent is there.
        assert "required" in rule and _exists(obj, parts[:-1]), f"{field!r} is not in the object ({rule})"


def check_decisions(kind: ModelKind, obj: dict[str, Any]) -> None:
    event = ModelEvent(EventType.ADDED, kind, obj)
    known = Known()
    decisions = decide(event, known)
    check = check_resource({k: v for k, v in obj.items() if k != "status"})
    if check.valid:
        assert [type(d) for d in decisions] == [Apply]
    else:
        assert [type(d) for d in decisions] == [MarkInvalid], (check.problems, decisions)
        mark = decisions[0]
        assert isinstance(mark, MarkInvalid)
        assert mark.field == check.problems[0].field
        assert mark.rule.strip() and mark.rule.startswith(check.problems[0].rule)
        assert_field_in(obj, mark.field, mark.rule)
    remember(known, event, decisions)
    assert [type(d) for d in decide(event, known)] == [Ignore]


@SETTINGS
@given(hostile_resources())
def test_mutated_catalogue_resources_are_applied_or_marked_invalid_never_crash(
    resource: tuple[ModelKind, dict[str, Any]],
) -> None:
    check_decisions(*resource)


@SETTINGS
@given(garbage_resources())
def test_garbage_specs_are_marked_invalid_never_crash(resource: tuple[ModelKind, dict[str, Any]]) -> None:
    check_decisions(*resource)


def test_unmutated_seeds_are_applied() -> None:
    for kind, doc in SEEDS:
        assert [type(d) for d in decide(ModelEvent(EventType.ADDED, kind, doc), Known())] == [Apply], doc


# --- rows the properties found, pinned ---------------------------------------------------------


def _with(path: tuple[str, ...], value: Any, **kwargs: Any) -> dict[str, Any]:
    doc = model_obj(**kwargs)
    _set(doc, path, value)
    return doc


PINNED: list[tuple[str, dict[str, Any], str]] = [
    # copy.deepcopy in decide recursed past Python's limit (RecursionError) on these.
    (
        "config nested 3000 deep",
        _with(("spec", "modelConfiguration"), _nest(3000, False)),
        "spec.modelConfiguration",
    ),
    (
        "list nested 3000 deep",
        _with(("spec", "modelConfiguration"), {"a": _nest(3000, True)}),
        "spec.modelConfiguration",
    ),
    (
        "fine-tuned hyperParameters 5000 deep",
        _with(("spec", "hyperParameters"), _nest(5000, False), kind=ModelKind.FINE_TUNED_WEIGHT),
        "spec.hyperParameters",
    ),
    ("unknown field 2000 deep", _with(("spec", "extra"), _nest(2000, True)), "spec.extra"),
    # json.loads of the string form raised RecursionError out of validation.
    ("config JSON string 100000 deep", _with(("spec", "modelConfiguration"), "[" * 100_000), "spec"),
    # pydantic's '[key]' marker leaked into the field path: spec.storage.nodeSelector[1]['[key]'].
    (
        "non-string selector key",
        _with(("spec", "storage", "nodeSelector"), {1: "a"}),
        "spec.storage.nodeSelector[1]",
    ),
    ("name of 254 characters", model_obj("a" * 254), "metadata.name"),
    (
        "huge storage URI",
        _with(("spec", "storage", "storageUri"), "hf://a/b" + "c" * 1_000_000),
        "spec.storage.storageUri",
    ),
]


@pytest.mark.parametrize(("obj", "field"), [p[1:] for p in PINNED], ids=[p[0] for p in PINNED])
def test_pinned_hostile_spec_is_marked_invalid_on_the_right_field(obj: dict[str, Any], field: str) -> None:
    (decision,) = decide(ModelEvent(EventType.ADDED, ModelKind(obj["kind"]), obj), Known())
    assert isinstance(decision, MarkInvalid)
    assert decision.field == field and decision.rule


def test_longest_valid_name_is_applied() -> None:
    (decision,) = decide(ModelEvent(EventType.ADDED, ModelKind.BASE_MODEL, model_obj("a" * 253)), Known())
    assert isinstance(decision, Apply)


def test_nesting_up_to_the_limit_is_applied() -> None:
    # The document's root is level 0, spec.modelConfiguration 2 and its innermost object MAX_DEPTH.
    obj = _with(("spec", "modelConfiguration"), _nest(MAX_DEPTH - 1, False))
    (decision,) = decide(ModelEvent(EventType.ADDED, ModelKind.BASE_MODEL, obj), Known())
    assert isinstance(decision, Apply)


# Metadata the API server owns or type-checks cannot arrive like this from a real server, but
# decide() still raises on it (watcher/decide.py reads metadata before parsing). Strict, so the
# rows flip to failures once decide() copes and the marks can go.
SERVER_GARBAGE: list[tuple[str, dict[str, Any], type[Exception]]] = [
    ("generation not a number", _with(("metadata", "generation"), "x"), ValueError),
    ("generation infinite", _with(("metadata", "generation"), float("inf")), OverflowError),
    ("finalizers not a list", _with(("metadata", "finalizers"), 5, deleting=True), TypeError),
    ("namespace not a string", _with(("metadata", "namespace"), 5), ValueError),  # pydantic's
    ("metadata not a mapping", _with(("metadata",), ["x"]), AttributeError),
]


@pytest.mark.parametrize(
    "obj",
    [pytest.param(obj) for _, obj, _error in SERVER_GARBAGE],
    ids=[g[0] for g in SERVER_GARBAGE],
)
def test_server_owned_metadata_garbage_does_not_crash_decide(obj: dict[str, Any]) -> None:
    decisions = decide(ModelEvent(EventType.MODIFIED, ModelKind.BASE_MODEL, obj), Known())
    assert decisions and all(isinstance(d, MarkInvalid | Ignore | Delete) for d in decisions)
