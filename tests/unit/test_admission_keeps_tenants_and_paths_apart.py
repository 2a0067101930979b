"""The installation's admission policy, table-driven: a BaseModel reads only its own namespace's
claim, a cluster-scoped model only an allowed one, and storage.path lies below a models root.
The watcher marks a refused resource InvalidSpec naming the field, before anything is started."""

from __future__ import annotations

import pytest

from modelferry.admission import AdmissionPolicy, check_admission, check_claim_access, resolve_claim
from modelferry.errors import TenancyError, UnsafePathError
from modelferry.names import ModelKind
from modelferry.ownership import PathOwner, check_models_root, is_our_link_target
from modelferry.spec.parse import parse_resource
from modelferry.storage_uri import parse_storage_uri
from watcher.decide import Apply, EventType, Known, MarkInvalid, ModelEvent, decide

BM, CBM, FTW = ModelKind.BASE_MODEL, ModelKind.CLUSTER_BASE_MODEL, ModelKind.FINE_TUNED_WEIGHT


@pytest.mark.parametrize(
    ("kind", "namespace", "uri", "allowed", "error"),
    [
        (BM, "team-a", "pvc://models/m", (), None),
        (BM, "team-a", "pvc://team-a:models/m", (), None),
        (BM, "team-a", "pvc://other-ns:vault/model", ("*",), "may read only claims in its own namespace"),
        (CBM, None, "pvc://ome:models/m", ("ome",), None),
        (CBM, None, "pvc://storage:models/m", ("ome",), "limited to ome"),
        (CBM, None, "pvc://storage:models/m", ("storage:models",), None),
        (CBM, None, "pvc://storage:vault/m", ("storage:models",), "may not read claim 'vault'"),
        (CBM, None, "pvc://storage:vault/m", ("*",), None),
        (FTW, None, "pvc://team-b:loras/x", (), "limited to none"),
    ],
)
def test_claim_access(kind, namespace, uri, allowed, error):
    parsed = parse_storage_uri(uri, cluster_scoped=not kind.namespaced)
    if error is None:
        check_claim_access(kind=kind, namespace=namespace, uri=parsed, allowed=allowed)
        return
    with pytest.raises(TenancyError, match=error) as caught:
        check_claim_access(kind=kind, namespace=namespace, uri=parsed, allowed=allowed)
    assert caught.value.field == "spec.storage.storageUri"


@pytest.mark.parametrize(
    ("kind", "namespace", "uri", "expected"),
    [
        (BM, "team-a", "pvc://models/m", ("team-a", "models")),
        (BM, "team-a", "pvc://team-a:models/m", ("team-a", "models")),
        (CBM, None, "pvc://ome:models/m", ("ome", "models")),
    ],
)
def test_a_claim_without_namespace_is_the_basemodels_own(kind, namespace, uri, expected):
    parsed = parse_storage_uri(uri, cluster_scoped=not kind.namespaced)
    assert resolve_claim(kind=kind, namespace=namespace, uri=parsed) == expected


ROOTS = ("/mnt/models", "/raid/models")


@pytest.mark.parametrize(
    ("path", "root", "error"),
    [
        ("/raid/models/llama", "/raid/models", None),
        ("/mnt/models/team/llama", "/mnt/models", None),
        ("/raid/models", None, "not below a models root"),
        ("/bin", None, "not below a models root"),
        ("/etc", None, "not below a models root"),
        ("/raid/modelsx/llama", None, "not below a models root"),
        ("/raid/models/.modelferry-versions/llama/abc", None, "modelferry's own state"),
        ("/raid/models/x/.modelferry/y", None, "modelferry's own state"),
    ],
)
def test_models_roots(path, root, error):
    if error is None:
        assert check_models_root(path, models_roots=ROOTS) == root
        return
    with pytest.raises(UnsafePathError, match=error):
        check_models_root(path, models_roots=ROOTS)


@pytest.mark.parametrize(
    ("target", "ours"),
    [
        (".modelferry-versions/llama/main-0123456789abcdef", True),
        (".modelferry-versions/other/main-0123456789abcdef", False),
        ("usr/bin", False),
        ("/raid/models/.modelferry-versions/llama/v", False),
        (".modelferry-versions/llama/..", False),
        (".modelferry-versions/llama/v/extra", False),
    ],
)
def test_only_links_of_our_own_form_are_ours(target, ours):
    assert is_our_link_target(target, link_name="llama") is ours


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{}",
        "[]",
        '{"kind": 1, "name": "x"}',
        '{"kind": "BaseModel"}',
        '{"kind": "BaseModel", "name": "x", "uid": 3}',
    ],
)
def test_owner_records_we_did_not_write_are_not_owners(text):
    assert PathOwner.from_json(text) is None


def test_owner_record_round_trips():
    owner = PathOwner(kind="BaseModel", namespace="team-a", name="llama", uid="u-1")
    assert PathOwner.from_json(owner.to_json()) == owner


def resource(kind: str, uri: str, path: str, namespace: str | None = "team-a") -> dict:
    meta: dict = {"name": "m", "uid": "u", "generation": 1}
    if namespace and kind == "BaseModel":
        meta["namespace"] = namespace
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": kind,
        "metadata": meta,
        "spec": {"storage": {"storageUri": uri, "path": path}},
    }


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (resource("BaseModel", "pvc://other-ns:vault/model", "/raid/models/m"), "spec.storage.storageUri"),
        (resource("ClusterBaseModel", "pvc://vault:secrets/m", "/raid/models/m"), "spec.storage.storageUri"),
        (resource("BaseModel", "hf://org/model", "/bin"), "spec.storage.path"),
        (
            resource("BaseModel", "hf://org/model", "/raid/models/.modelferry-versions/x/y"),
            "spec.storage.path",
        ),
    ],
)
def test_the_watcher_marks_a_refused_resource_invalid_naming_the_field(obj, field):
    kind = ModelKind(obj["kind"])
    decisions = decide(ModelEvent(EventType.ADDED, kind, obj), Known(), policy=AdmissionPolicy())
    assert len(decisions) == 1 and isinstance(decisions[0], MarkInvalid)
    assert decisions[0].field == field


def test_an_allowed_resource_is_applied():
    obj = resource("ClusterBaseModel", "pvc://storage:models/m", "/raid/models/m")
    policy = AdmissionPolicy(cluster_claim_namespaces=("storage",))
    decisions = decide(ModelEvent(EventType.ADDED, CBM, obj), Known(), policy=policy)
    assert isinstance(decisions[0], Apply)
    assert check_admission(parse_resource(obj), policy) == []


def test_validation_alone_refuses_a_basemodel_naming_another_namespaces_claim():
    from modelferry.spec.parse import check_resource

    check = check_resource(resource("BaseModel", "pvc://other-ns:vault/model", "/raid/models/m"))
    assert [p.field for p in check.problems] == ["spec.storage.storageUri"]
    assert "own namespace" in check.problems[0].rule
    assert check_resource(resource("BaseModel", "pvc://team-a:vault/model", "/raid/models/m")).valid
