"""Create/get/list/update/patch/delete through the official client: server-set fields, the real
status codes and Status bodies, selectors, pagination, dry runs, discovery and health."""

from __future__ import annotations

import json
import urllib.request

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from modelferry.apiserver import EmbeddedApiServer

from .conftest import configmap, uniq

NS = "default"


def status_of(e: pytest.ExceptionInfo[ApiException]) -> dict[str, object]:
    body: dict[str, object] = json.loads(e.value.body)
    return body


def test_create_sets_server_fields_and_a_duplicate_is_409_already_exists(core: client.CoreV1Api) -> None:
    name = uniq("cm")
    made = core.create_namespaced_config_map(NS, configmap(name, a="1"))
    assert made.metadata.uid and made.metadata.creation_timestamp and made.metadata.namespace == NS
    assert int(made.metadata.resource_version) > 0
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(NS, configmap(name))
    assert e.value.status == 409
    body = status_of(e)
    assert body["kind"] == "Status" and body["reason"] == "AlreadyExists"
    assert body["details"] == {"name": name, "kind": "configmaps"}


def test_resource_versions_grow_across_kinds(core: client.CoreV1Api, custom: client.CustomObjectsApi) -> None:
    a = core.create_namespaced_config_map(NS, configmap(uniq("cm")))
    b = custom.create_namespaced_custom_object(
        "test.modelferry.io",
        "v1",
        NS,
        "widgets",
        {
            "apiVersion": "test.modelferry.io/v1",
            "kind": "Widget",
            "metadata": {"name": uniq("w")},
            "spec": {},
        },
    )
    c = core.create_namespaced_secret(NS, {"metadata": {"name": uniq("s")}, "stringData": {"k": "v"}})
    versions = [
        int(a.metadata.resource_version),
        int(b["metadata"]["resourceVersion"]),
        int(c.metadata.resource_version),
    ]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_update_with_a_stale_resource_version_is_409_conflict(core: client.CoreV1Api) -> None:
    name = uniq("cm")
    made = core.create_namespaced_config_map(NS, configmap(name, a="1"))
    made.data = {"a": "2"}
    updated = core.replace_namespaced_config_map(name, NS, made)
    made.data = {"a": "3"}
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map(name, NS, made)
    assert e.value.status == 409 and status_of(e)["reason"] == "Conflict"
    # Without a resourceVersion the update is unconditional.
    made.metadata.resource_version = None
    forced = core.replace_namespaced_config_map(name, NS, made)
    assert forced.data == {"a": "3"}
    assert int(forced.metadata.resource_version) > int(updated.metadata.resource_version)


def test_an_update_that_changes_nothing_writes_nothing(core: client.CoreV1Api) -> None:
    name = uniq("cm")
    made = core.create_namespaced_config_map(NS, configmap(name, a="1"))
    again = core.replace_namespaced_config_map(name, NS, made)
    assert again.metadata.resource_version == made.metadata.resource_version


def test_missing_objects_are_404_status(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map(uniq("nope"), NS)
    assert e.value.status == 404
    body = status_of(e)
    assert body["kind"] == "Status" and body["reason"] == "NotFound" and body["code"] == 404
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(uniq("ns"), configmap(uniq("cm")))
    assert e.value.status == 404 and "namespaces" in status_of(e)["message"]  # type: ignore[operator]


@pytest.mark.parametrize("name", ["Upper", "under_score", "-dash", "a" * 254])
def test_invalid_names_are_422(core: client.CoreV1Api, name: str) -> None:
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(NS, configmap(name))
    assert e.value.status == 422 and status_of(e)["reason"] == "Invalid"


def test_invalid_label_values_are_422(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(NS, configmap(uniq("cm"), labels={"k": "not valid!"}))
    assert e.value.status == 422


def test_generate_name(core: client.CoreV1Api) -> None:
    made = core.create_namespaced_config_map(NS, {"metadata": {"generateName": "gen-"}})
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) == 9


def test_delete_of_a_configmap_answers_a_success_status(core: client.CoreV1Api) -> None:
    name = uniq("cm")
    core.create_namespaced_config_map(NS, configmap(name))
    status = core.delete_namespaced_config_map(name, NS, body=client.V1DeleteOptions(grace_period_seconds=0))
    assert status.status == "Success" and status.details.name == name
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_config_map(name, NS)
    assert e.value.status == 404


def test_delete_preconditions(core: client.CoreV1Api) -> None:
    name = uniq("cm")
    made = core.create_namespaced_config_map(NS, configmap(name))
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_config_map(
            name,
            NS,
            body=client.V1DeleteOptions(
                preconditions=client.V1Preconditions(uid="00000000-0000-0000-0000-000000000000")
            ),
        )
    assert e.value.status == 409
    core.delete_namespaced_config_map(
        name, NS, body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=made.metadata.uid))
    )


def test_label_and_field_selectors_on_lists(core: client.CoreV1Api) -> None:
    tag = uniq("t")
    names = {}
    for tier in ("gold", "silver", None):
        names[tier] = uniq("cm")
        core.create_namespaced_config_map(
            NS, configmap(names[tier], labels={"suite": tag, **({"tier": tier} if tier else {})})
        )

    def listed(selector: str, **kw: str) -> set[str]:
        items = core.list_namespaced_config_map(NS, label_selector=f"suite={tag},{selector}", **kw).items
        return {i.metadata.name for i in items}

    assert listed("tier in (gold,silver)") == {names["gold"], names["silver"]}
    assert listed("!tier") == {names[None]}
    assert listed("tier", field_selector=f"metadata.name!={names['gold']}") == {names["silver"]}
    everywhere = core.list_config_map_for_all_namespaces(field_selector=f"metadata.name={names['gold']}")
    assert [i.metadata.namespace for i in everywhere.items] == [NS]
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map(NS, field_selector="data.a=1")
    assert e.value.status == 400


def test_list_has_a_resource_version_and_pages_with_limit_and_continue(core: client.CoreV1Api) -> None:
    tag = uniq("page")
    created = sorted(uniq("cm") for _ in range(5))
    for name in created:
        core.create_namespaced_config_map(NS, configmap(name, labels={"page": tag}))
    seen, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_config_map(NS, label_selector=f"page={tag}", limit=2, _continue=token)
        assert page.metadata.resource_version
        seen += [i.metadata.name for i in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
    assert seen == created and pages == 3


def test_dry_run_writes_nothing(core: client.CoreV1Api) -> None:
    name = uniq("cm")
    made = core.create_namespaced_config_map(NS, configmap(name), dry_run="All")
    assert made.metadata.name == name
    with pytest.raises(ApiException):
        core.read_namespaced_config_map(name, NS)


def test_node_labels_by_strategic_merge_patch(core: client.CoreV1Api) -> None:
    node = core.list_node().items[0].metadata.name
    core.patch_node(node, {"metadata": {"labels": {"models.ome/abc": "Ready"}}})
    assert node in {n.metadata.name for n in core.list_node(label_selector="models.ome/abc=Ready").items}
    core.patch_node(node, {"metadata": {"labels": {"models.ome/abc": None}}})
    assert "models.ome/abc" not in core.read_node(node).metadata.labels


def test_node_status_is_a_subresource(core: client.CoreV1Api) -> None:
    node = core.list_node().items[0]
    assert node.status.conditions[0].type == "Ready" and node.status.conditions[0].status == "True"
    core.patch_node(node.metadata.name, {"status": {"phase": "Ignored"}})
    assert core.read_node(node.metadata.name).status.phase is None
    core.patch_node_status(node.metadata.name, {"status": {"phase": "Running"}})
    assert core.read_node(node.metadata.name).status.phase == "Running"


def test_leases_jobs_and_events_round_trip(kube: client.ApiClient) -> None:
    leases, batch, core = client.CoordinationV1Api(kube), client.BatchV1Api(kube), client.CoreV1Api(kube)
    lease = leases.create_namespaced_lease(
        NS, {"metadata": {"name": uniq("lease")}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}
    )
    lease.spec.holder_identity = "b"
    assert leases.replace_namespaced_lease(lease.metadata.name, NS, lease).spec.holder_identity == "b"
    job = batch.create_namespaced_job(
        NS,
        {
            "metadata": {"name": uniq("job")},
            "spec": {
                "template": {
                    "spec": {
                        "nodeName": "dev-node",
                        "restartPolicy": "Never",
                        "containers": [{"name": "w", "image": "modelferry:dev", "args": ["worker"]}],
                    }
                }
            },
        },
    )
    assert job.metadata.generation == 1 and job.spec.template.spec.node_name == "dev-node"
    batch.delete_namespaced_job(job.metadata.name, NS, propagation_policy="Background")
    event = core.create_namespaced_event(
        NS,
        {
            "metadata": {"name": uniq("ev")},
            "reason": "Pulled",
            "involvedObject": {"kind": "Node", "name": "dev-node"},
        },
    )
    found = core.list_namespaced_event(NS, field_selector="involvedObject.kind=Node,reason=Pulled").items
    assert event.metadata.name in {e.metadata.name for e in found}


def test_namespaces_start_active_and_delete_with_their_contents(core: client.CoreV1Api) -> None:
    assert {"default", "kube-system", "ome"} <= {n.metadata.name for n in core.list_namespace().items}
    ns = uniq("ns")
    core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_config_map(ns, configmap("inside"))
    assert core.read_namespace(ns).status.phase == "Active"
    core.delete_namespace(ns)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("inside", ns)
    assert e.value.status == 404
    with pytest.raises(ApiException) as e:
        core.delete_namespace("default")
    assert e.value.status == 403


def test_dependents_follow_their_owner(core: client.CoreV1Api) -> None:
    owner = core.create_namespaced_config_map(NS, configmap(uniq("owner")))
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid}
    child = core.create_namespaced_config_map(
        NS, {"metadata": {"name": uniq("child"), "ownerReferences": [ref]}}
    )
    core.delete_namespaced_config_map(owner.metadata.name, NS)
    with pytest.raises(ApiException):
        core.read_namespaced_config_map(child.metadata.name, NS)


def test_discovery_documents(kube: client.ApiClient) -> None:
    core_names = {r.name for r in client.CoreV1Api(kube).get_api_resources().resources}
    assert {"nodes", "nodes/status", "configmaps", "secrets", "pods", "events", "namespaces"} <= core_names
    groups = {g.name for g in client.ApisApi(kube).get_api_versions().groups}
    assert {
        "ome.io",
        "batch",
        "coordination.k8s.io",
        "apps",
        "rbac.authorization.k8s.io",
        "apiextensions.k8s.io",
    } <= groups
    ome = {r.name: r for r in client.CustomObjectsApi(kube).get_api_resources("ome.io", "v1beta1").resources}
    assert ome["clusterbasemodels"].namespaced is False and ome["basemodels"].namespaced is True
    assert "cbm" in ome["clusterbasemodels"].short_names and "basemodels/status" in ome
    assert client.VersionApi(kube).get_code().major == "1"


def test_health_and_openapi_endpoints(server: EmbeddedApiServer) -> None:
    for path in ("/healthz", "/readyz", "/livez"):
        with urllib.request.urlopen(server.url + path) as r:
            assert r.read() == b"ok"
    with urllib.request.urlopen(server.url + "/openapi/v3") as r:
        index = json.load(r)
    assert "api/v1" in index["paths"] and "apis/ome.io/v1beta1" in index["paths"]
    with urllib.request.urlopen(server.url + index["paths"]["api/v1"]["serverRelativeURL"]) as r:
        doc = json.load(r)
    patch = doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"]["kind"] == "ConfigMap"
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
