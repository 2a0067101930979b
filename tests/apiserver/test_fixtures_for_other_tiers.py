"""The fixtures other test tiers import: a started server with a node, the OME CRDs and a
kubeconfig that both the official client and kubectl can use."""

from __future__ import annotations

from kubernetes import client, config

from modelferry.apiserver import EmbeddedApiServer
from modelferry.names import API_GROUP, API_VERSION, ModelKind


def test_embedded_apiserver_fixture(embedded_apiserver: EmbeddedApiServer) -> None:
    assert embedded_apiserver.kubeconfig_path is not None and embedded_apiserver.kubeconfig_path.exists()
    with config.new_client_from_config(config_file=str(embedded_apiserver.kubeconfig_path)) as api:
        assert [n.metadata.name for n in client.CoreV1Api(api).list_node().items] == ["dev-node"]
        served = {
            r.name for r in client.CustomObjectsApi(api).get_api_resources(API_GROUP, API_VERSION).resources
        }
    assert {k.plural for k in ModelKind} <= served


def test_embedded_apiserver_module_fixture(embedded_apiserver_module: EmbeddedApiServer) -> None:
    assert embedded_apiserver_module.url.startswith("http://127.0.0.1:")
