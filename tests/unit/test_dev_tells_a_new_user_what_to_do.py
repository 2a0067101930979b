"""What `modelferry dev` prints is something a new user can act on: the kubeconfig to export is
an absolute path (it works from any directory), and a Temporal or UI port that is already taken
says which flag picks a free one."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from modelferry.cli import main
from modelferry.dev.stack import DevOptions, _print_banner


def test_the_banner_names_an_absolute_kubeconfig(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    temporal = SimpleNamespace(address="127.0.0.1:7233", ui_port=None)
    opts = DevOptions(home=Path(".modelferry"), node_name="n1")
    _print_banner(opts, temporal=temporal, kubeconfig=Path(".modelferry/kubeconfig"), api_url="https://x")  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert f"export KUBECONFIG={tmp_path.resolve()}/.modelferry/kubeconfig)" in out


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("flag", ["--temporal-port", "--ui-port"])
def test_a_busy_port_suggests_a_free_one(flag: str, busy_port: int, tmp_path: Path, capsys) -> None:
    other = "--ui-port" if flag == "--temporal-port" else "--temporal-port"
    argv = ["dev", "--home", str(tmp_path / "home"), flag, str(busy_port), other, "0", "--port", "off"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"port {busy_port} on 127.0.0.1 is already in use" in err
    assert f"pass {flag} 0 for a free port" in err
