"""The saved state holds Secrets: it is owner-only (0600, in a 0700 directory it creates) from
the moment each file exists, whatever the umask, and a file an older version left readable is
tightened when a server starts on it."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from modelferry.apiserver import EmbeddedApiServer, persistence
from modelferry.apiserver.testing import api_client


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The common default umask, under which a plain open() makes world-readable files."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def secret(name: str, value: str) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name=name),
        data={"token": base64.b64encode(value.encode()).decode()},
    )


@pytest.mark.usefixtures("permissive_umask")
def test_state_files_are_owner_only_from_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "home" / "kube-state.json"
    modes_when_written: list[int] = []
    real_fsync = os.fsync

    def spying_fsync(fd: int) -> None:  # the data is in the file: any other reader could see it now
        modes_when_written.append(stat.S_IMODE(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(persistence.os, "fsync", spying_fsync)
    with EmbeddedApiServer(state_path=state, save_delay=0.05) as api, api_client(api) as kube:
        client.CoreV1Api(kube).create_namespaced_secret("default", secret("hf-token", "hf_s3cr3t"))
    monkeypatch.undo()

    assert base64.b64encode(b"hf_s3cr3t").decode() in state.read_text()  # the Secret is in this file
    assert modes_when_written and set(modes_when_written) == {0o600}, [oct(m) for m in modes_when_written]
    assert mode(state) == 0o600
    assert mode(state.parent) == 0o700
    assert not list(state.parent.glob("*.incomplete"))


@pytest.mark.usefixtures("permissive_umask")
def test_an_existing_directory_is_left_as_it_is(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    with EmbeddedApiServer(state_path=shared / "state.json"):
        pass
    assert mode(shared) == 0o755  # may be someone else's (think /tmp): the file's mode protects it
    assert mode(shared / "state.json") == 0o600


def test_a_readable_state_file_is_tightened_on_start(tmp_path: Path) -> None:
    state = tmp_path / "kube-state.json"
    with EmbeddedApiServer(state_path=state) as api, api_client(api) as kube:
        client.CoreV1Api(kube).create_namespaced_secret("default", secret("old", "from-an-older-version"))
    os.chmod(state, 0o644)  # as an older version wrote it
    leftover = tmp_path / ".kube-state.json.0123abcd.incomplete"  # from a writer killed mid-save
    leftover.write_bytes(state.read_bytes())
    os.chmod(leftover, 0o664)

    # No save happens before the checks (a long delay): the start itself must tighten.
    with EmbeddedApiServer(state_path=state, save_delay=3600.0) as api:
        assert mode(state) == 0o600
        assert mode(leftover) == 0o600
        with api_client(api) as kube:
            assert client.CoreV1Api(kube).read_namespaced_secret("old", "default").data
