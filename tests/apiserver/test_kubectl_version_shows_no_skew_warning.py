"""The embedded server reports a Kubernetes version the kubectl we install accepts without a
version-skew warning (kubectl warns when the minor versions differ by more than one)."""

from __future__ import annotations

import json

from modelferry.apiserver.seed import SERVER_VERSION

from .conftest import KubectlRunner


def test_kubectl_version_prints_no_warning(kubectl: KubectlRunner) -> None:
    result = kubectl("version")
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stdout + result.stderr
    assert f"Server Version: {SERVER_VERSION['gitVersion']}" in result.stdout


def test_client_and_server_are_within_one_minor_version(kubectl: KubectlRunner) -> None:
    versions = json.loads(kubectl("version", "-o", "json").stdout)
    client, server = versions["clientVersion"], versions["serverVersion"]
    assert client["major"] == server["major"] == "1"
    assert abs(int(client["minor"].rstrip("+")) - int(server["minor"])) <= 1
