"""Pure helpers behind kubectl's view and the URL space: ages, JSONPath, Accept, names, paths."""

from __future__ import annotations

import pytest

from modelferry.apiserver.meta import name_problem
from modelferry.apiserver.routing import ResourceRoute, parse_resource_path
from modelferry.apiserver.tables import find, human_duration, requested_view


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (125, "2m5s"),
        (180, "3m"),
        (900, "15m"),
        (4 * 3600 + 60 * 7, "4h7m"),
        (9 * 3600, "9h"),
        (3 * 86400 + 3600, "3d1h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400 + 86400, "3y1d"),
        (10 * 365 * 86400, "10y"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


OBJ = {
    "spec": {"storage": {"storageUri": "hf://a/b"}, "list": [1, 2]},
    "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}]},
}


@pytest.mark.parametrize(
    ("path", "values"),
    [
        (".spec.storage.storageUri", ["hf://a/b"]),
        ("{.spec.list[1]}", [2]),
        (".spec.list[*]", [1, 2]),
        (".spec['storage'].storageUri", ["hf://a/b"]),
        ('.status.conditions[?(@.type=="Ready")].status', ["True"]),
        (".status.conditions[?(@.type=='Other')].status", ["False"]),
        ('.status.conditions[?(@.type!="Ready")].type', ["Other"]),
        (".spec.missing", []),
        (".spec.list[5]", []),
    ],
)
def test_jsonpath_subset(path: str, values: list[object]) -> None:
    assert find(OBJ, path) == values


@pytest.mark.parametrize(
    ("accept", "view"),
    [
        (
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
            "application/json",
            "Table",
        ),
        ("application/json", None),
        ("", None),
        ("application/vnd.kubernetes.protobuf,application/json", None),
        ("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1", "PartialObjectMetadataList"),
    ],
)
def test_requested_view(accept: str, view: str | None) -> None:
    assert requested_view(accept) == view


@pytest.mark.parametrize(
    ("name", "rule", "ok"),
    [
        ("a", "subdomain", True),
        ("a.b-c", "subdomain", True),
        ("A", "subdomain", False),
        ("-a", "subdomain", False),
        ("a" * 254, "subdomain", False),
        ("a.b", "label", False),
        ("1abc", "dns1035", False),
        ("system:controller:x", "path", True),
        ("a/b", "path", False),
    ],
)
def test_name_rules(name: str, rule: str, ok: bool) -> None:
    assert (name_problem(name, rule) is None) is ok


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/api/v1/nodes", ResourceRoute("", "v1", "nodes")),
        ("/api/v1/namespaces/ns/configmaps/c", ResourceRoute("", "v1", "configmaps", "ns", "c")),
        ("/api/v1/namespaces/ns", ResourceRoute("", "v1", "namespaces", None, "ns")),
        ("/api/v1/namespaces/ns/status", ResourceRoute("", "v1", "namespaces", None, "ns", "status")),
        ("/apis/g.io/v1/namespaces/ns/ws/w/status", ResourceRoute("g.io", "v1", "ws", "ns", "w", "status")),
        ("/apis/g.io/v1/gs/g", ResourceRoute("g.io", "v1", "gs", None, "g")),
        (
            "/api/v1/watch/namespaces/ns/configmaps",
            ResourceRoute("", "v1", "configmaps", "ns", watch_path=True),
        ),
        ("/api/v1", None),
        ("/apis/g.io", None),
        ("/healthz", None),
        ("/api/v1/a/b/c/d", None),
    ],
)
def test_resource_paths(path: str, route: ResourceRoute | None) -> None:
    assert parse_resource_path(path) == route
