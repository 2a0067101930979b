"""CRDs at run time: a created CRD is served at once (scope, short names, status subresource,
printer columns), reports Established, and takes its objects with it when deleted. Generation,
the status subresource and finalizers follow the real rules."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import GROUP, VERSION, make_crd, uniq, widget

NS = "default"


def test_a_created_crd_is_served_and_established(kube: client.ApiClient) -> None:
    ext, custom = client.ApiextensionsV1Api(kube), client.CustomObjectsApi(kube)
    plural = f"things{uniq('x').split('-')[1]}"
    made = ext.create_custom_resource_definition(make_crd(plural, "Thing", "Cluster"))
    conditions = {c.type: c.status for c in made.status.conditions}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert "customresourcecleanup.apiextensions.k8s.io" in made.metadata.finalizers
    served = {r.name: r for r in custom.get_api_resources(GROUP, VERSION).resources}
    assert served[plural].namespaced is False and f"{plural}/status" in served
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        plural,
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Thing", "metadata": {"name": "one"}},
    )
    ext.delete_custom_resource_definition(f"{plural}.{GROUP}")
    assert plural not in {r.name for r in custom.get_api_resources(GROUP, VERSION).resources}
    with pytest.raises(ApiException) as e:
        custom.list_cluster_custom_object(GROUP, VERSION, plural)
    assert e.value.status == 404
    # Recreated, the kind starts empty: its objects went with the CRD.
    ext.create_custom_resource_definition(make_crd(plural, "Thing", "Cluster"))
    assert custom.list_cluster_custom_object(GROUP, VERSION, plural)["items"] == []
    ext.delete_custom_resource_definition(f"{plural}.{GROUP}")


def test_an_invalid_crd_is_422(kube: client.ApiClient) -> None:
    bad = make_crd("bits", "Bit", "Namespaced")
    bad["metadata"]["name"] = "wrong.test.modelferry.io"
    with pytest.raises(ApiException) as e:
        client.ApiextensionsV1Api(kube).create_custom_resource_definition(bad)
    assert e.value.status == 422


def test_generation_counts_spec_changes_and_status_is_a_subresource(custom: client.CustomObjectsApi) -> None:
    name = uniq("w")
    made = custom.create_namespaced_custom_object(
        GROUP, VERSION, NS, "widgets", {**widget(name), "status": {"state": "Sneaky"}}
    )
    assert made["metadata"]["generation"] == 1 and "status" not in made
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, "widgets", name, {"status": {"state": "Ready"}}
    )
    got = custom.get_namespaced_custom_object(GROUP, VERSION, NS, "widgets", name)
    assert got["status"]["state"] == "Ready" and got["metadata"]["generation"] == 1
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "widgets", name, {"spec": {"vendor": "acme"}, "status": {"state": "Failed"}}
    )
    got = custom.get_namespaced_custom_object(GROUP, VERSION, NS, "widgets", name)
    assert got["metadata"]["generation"] == 2 and got["status"]["state"] == "Ready"
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "widgets", name, {"metadata": {"labels": {"a": "b"}}}
    )
    assert (
        custom.get_namespaced_custom_object(GROUP, VERSION, NS, "widgets", name)["metadata"]["generation"]
        == 2
    )
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, "widgets", name, {"spec": {"vendor": "x"}}
    )
    got = custom.get_namespaced_custom_object(GROUP, VERSION, NS, "widgets", name)
    assert got["spec"]["vendor"] == "acme"
    got["status"] = {"state": "Replaced"}
    replaced = custom.replace_namespaced_custom_object_status(GROUP, VERSION, NS, "widgets", name, got)
    assert replaced["status"] == {"state": "Replaced"}


def test_patch_formats_on_custom_objects(custom: client.CustomObjectsApi) -> None:
    name = uniq("w")
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "widgets", widget(name, vendor="acme"))
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        "widgets",
        name,
        [
            {"op": "test", "path": "/spec/vendor", "value": "acme"},
            {"op": "replace", "path": "/spec/vendor", "value": "zeta"},
        ],
        _content_type="application/json-patch+json",
    )
    assert (
        custom.get_namespaced_custom_object(GROUP, VERSION, NS, "widgets", name)["spec"]["vendor"] == "zeta"
    )
    with pytest.raises(ApiException) as e:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            "widgets",
            name,
            [{"op": "test", "path": "/spec/vendor", "value": "acme"}],
            _content_type="application/json-patch+json",
        )
    assert e.value.status == 422
    with pytest.raises(ApiException) as e:
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            "widgets",
            name,
            {"spec": {}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert e.value.status == 415


def test_server_side_apply_creates_then_merges(custom: client.CustomObjectsApi) -> None:
    name = uniq("w")
    for vendor, code in (("acme", 201), ("zeta", 200)):
        _, status, _ = custom.patch_namespaced_custom_object_with_http_info(
            GROUP,
            VERSION,
            NS,
            "widgets",
            name,
            widget(name, vendor=vendor),
            field_manager="test",
            _content_type="application/apply-patch+yaml",
        )
        assert status == code
    got = custom.get_namespaced_custom_object(GROUP, VERSION, NS, "widgets", name)
    assert got["spec"]["vendor"] == "zeta" and got["spec"]["storage"]["storageUri"] == "hf://acme/tiny"


def test_cluster_scoped_objects_have_no_namespace(custom: client.CustomObjectsApi) -> None:
    name = uniq("g")
    made = custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "gadgets",
        {**widget(name, kind="Gadget"), "metadata": {"name": name, "namespace": "x"}},
    )
    assert "namespace" not in made["metadata"]
    assert name in {
        i["metadata"]["name"] for i in custom.list_cluster_custom_object(GROUP, VERSION, "gadgets")["items"]
    }


def test_a_finalizer_holds_deletion_until_removed(custom: client.CustomObjectsApi) -> None:
    name = uniq("w")
    custom.create_namespaced_custom_object(
        GROUP, VERSION, NS, "widgets", widget(name, finalizers=["test/hold"])
    )
    deleting = custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "widgets", name)
    assert (
        deleting["metadata"]["deletionTimestamp"] and deleting["metadata"]["deletionGracePeriodSeconds"] == 0
    )
    assert deleting["metadata"]["generation"] == 2  # as a real server: marking for deletion bumps it
    with pytest.raises(ApiException) as e:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, "widgets", name, {"metadata": {"finalizers": ["test/hold", "test/new"]}}
        )
    assert e.value.status == 422
    again = custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "widgets", name)
    assert again["metadata"]["resourceVersion"] == deleting["metadata"]["resourceVersion"]
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, "widgets", name, {"metadata": {"finalizers": None}}
    )
    with pytest.raises(ApiException) as e:
        custom.get_namespaced_custom_object(GROUP, VERSION, NS, "widgets", name)
    assert e.value.status == 404


def test_deleting_a_crd_waits_for_finalizers_of_its_objects(kube: client.ApiClient) -> None:
    ext, custom = client.ApiextensionsV1Api(kube), client.CustomObjectsApi(kube)
    plural = f"holds{uniq('x').split('-')[1]}"
    ext.create_custom_resource_definition(make_crd(plural, "Hold", "Namespaced"))
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        NS,
        plural,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Hold",
            "metadata": {"name": "h", "finalizers": ["test/x"]},
        },
    )
    ext.delete_custom_resource_definition(f"{plural}.{GROUP}")
    crd = ext.read_custom_resource_definition(f"{plural}.{GROUP}")
    assert crd.metadata.deletion_timestamp and "Terminating" in {c.type for c in crd.status.conditions}
    assert custom.get_namespaced_custom_object(GROUP, VERSION, NS, plural, "h")["metadata"][
        "deletionTimestamp"
    ]
    with pytest.raises(ApiException) as e:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            NS,
            plural,
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Hold", "metadata": {"name": "late"}},
        )
    assert e.value.status == 405
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, plural, "h", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as e:
        ext.read_custom_resource_definition(f"{plural}.{GROUP}")
    assert e.value.status == 404
