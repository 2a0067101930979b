"""docker-compose.temporal.yml: Temporal on PostgreSQL, the UI, and a one-shot step that registers
exactly the search attributes the code sets (modelferry.names.SEARCH_ATTRIBUTE_TYPES). There is no
Docker engine here, so the file is parsed, and the one-shot's script is run as its entrypoint
would run it, against a real dev server started without our attributes, twice."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelferry.dev.temporal_server import find_temporal_binary, free_port
from modelferry.names import SEARCH_ATTRIBUTE_TYPES

from .manifests import PROJECT

COMPOSE_FILE = PROJECT / "docker-compose.temporal.yml"
ONE_SHOT = "temporal-register-search-attributes"
_CREATE = re.compile(r"temporal operator search-attribute create --name (\S+) --type (\S+)")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def _script(compose: dict[str, Any]) -> tuple[list[str], str]:
    """The one-shot's shell and script (entrypoint `sh -ec`, command the script)."""
    service = compose["services"][ONE_SHOT]
    (script,) = service["command"]
    return service["entrypoint"], script


def test_services_are_postgres_temporal_ui_and_the_one_shot(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgresql", "temporal", "temporal-ui", ONE_SHOT}
    assert services["temporal"]["depends_on"] == {"postgresql": {"condition": "service_healthy"}}
    assert services["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgresql"
    assert "healthcheck" in services["postgresql"]
    for name in ("temporal-ui", ONE_SHOT):
        assert services[name]["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
        assert "temporal" in services[name]["depends_on"]
    assert services[ONE_SHOT]["restart"] == "no"
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: {image}"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


def test_one_shot_registers_exactly_the_codes_attributes(compose: dict[str, Any]) -> None:
    _, script = _script(compose)
    pairs = _CREATE.findall(script)
    assert len(pairs) == len(dict(pairs)), "an attribute registered twice"
    assert dict(pairs) == {name.value: kind for name, kind in SEARCH_ATTRIBUTE_TYPES.items()}
    # Every create line is one the pattern read (none hidden in a loop or a variable).
    creates = [line for line in script.splitlines() if "search-attribute create" in line]
    assert len(creates) == len(pairs)
    assert "|| true" not in script  # a refused registration must fail the step


@pytest.fixture(scope="module")
def bare_dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Temporal dev server with none of our search attributes (TemporalDevServer adds them)."""
    port = free_port()
    log = tmp_path_factory.mktemp("temporal") / "server.log"
    command = [
        find_temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
        "--port", str(port), "--http-port", str(free_port()), "--metrics-port", str(free_port()),
        "--log-level", "warn",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _temporal_env(address: str) -> dict[str, str]:
    bin_dir = str(Path(find_temporal_binary()).parent)
    path = f"{bin_dir}:{os.environ['PATH']}"
    return {**os.environ, "PATH": path, "TEMPORAL_ADDRESS": address, "TEMPORAL_NAMESPACE": "default"}


def _custom_attributes(address: str) -> dict[str, str]:
    listed = subprocess.run(
        [find_temporal_binary(), "operator", "search-attribute", "list", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=30,
        env=_temporal_env(address),
        check=True,
    )
    attributes: dict[str, str] = json.loads(listed.stdout)["customAttributes"]
    return attributes


def _indexed_type(kind: str) -> str:
    """The server's name for a type: KeywordList -> INDEXED_VALUE_TYPE_KEYWORD_LIST."""
    return "INDEXED_VALUE_TYPE_" + re.sub(r"(?<!^)(?=[A-Z])", "_", kind).upper()


def test_one_shot_script_registers_them_on_a_real_server_and_can_run_again(
    compose: dict[str, Any], bare_dev_server: str
) -> None:
    entrypoint, script = _script(compose)
    assert entrypoint == ["/bin/sh", "-ec"]
    for attempt in (1, 2):  # `docker compose up` again runs it again
        done = subprocess.run(
            [*entrypoint, script],
            capture_output=True,
            text=True,
            timeout=60,
            env=_temporal_env(bare_dev_server),
        )
        assert done.returncode == 0, f"run {attempt}: {done.stdout}{done.stderr}"
    registered = _custom_attributes(bare_dev_server)
    for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
        assert registered.get(name.value) == _indexed_type(kind), name
