"""The pure part of the process kubelet (podspec.py), table-driven: how a container's paths,
$(VAR)s, fieldRefs and command become a process, and which phase its exits make."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from modelferry.dev.kube.podspec import (
    ContainerRun,
    Mount,
    StartError,
    container_argv,
    container_env,
    expand,
    map_paths,
    phase,
)

OUT = Mount(path="/out", local=Path("/node/out"))
MODELS = Mount(path="/raid/models", local=Path("/node/raid/models"), host_path="/raid/models")
CLAIM = Mount(path="/mnt/modelferry-pvc/models", local=Path("/claims/models"))
POD: dict[str, Any] = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}},
    "spec": {"nodeName": "node-a", "serviceAccountName": "sa"},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("echo $X > /out/who", "echo $X > /node/out/who"),
        ("/out", "/node/out"),
        ("cat /out/a /out/b", "cat /node/out/a /node/out/b"),
        ("/output/x /outx /a/out ./out", "/output/x /outx /a/out ./out"),  # not a mount path
        ("--dir=/out/x", "--dir=/node/out/x"),
        ("/tmp/x", "/node/tmp/x"),
        ("--pvc ns:c=/mnt/c/d", "--pvc ns:c=/tmp/claims/c/d"),  # not remapped by the /tmp mount
    ],
)
def test_mount_paths_become_local_paths(text: str, expected: str) -> None:
    mounts = [
        OUT,
        Mount(path="/tmp", local=Path("/node/tmp")),
        Mount(path="/mnt/c", local=Path("/tmp/claims/c")),
    ]
    assert map_paths(text, mounts) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "1"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("kill $$$$", "kill $$"),
        ("$A ${A}", "$A ${A}"),  # shell syntax is the shell's
    ],
)
def test_var_references_expand_as_kubernetes_does(text: str, expected: str) -> None:
    assert expand(text, {"A": "1"}) == expected


def test_env_takes_values_field_refs_and_earlier_vars() -> None:
    container = {
        "env": [
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "WHERE", "value": "$(NODE)/$(POD) in /out"},
            {"name": "KEY", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
        ]
    }
    env = container_env(
        POD,
        container,
        base={"PATH": "/bin"},
        lookup=lambda kind, name, key: f"{kind}/{name}/{key}",
        lookup_all=lambda kind, name: None,
        mounts=[OUT],
    )
    assert env == {
        "PATH": "/bin",
        "NODE": "node-a",
        "POD": "p",
        "NS": "ns",
        "IP": "127.0.0.1",
        "APP": "x",
        "WHERE": "node-a/p in /node/out",
        "KEY": "configmaps/cm/k",
    }


@pytest.mark.parametrize(
    ("container", "mounts", "expected"),
    [
        ({"command": ["sh", "-c", "echo hi > /out/x"]}, [OUT], ["sh", "-c", "echo hi > /node/out/x"]),
        ({"command": ["echo"], "args": ["$(WHO)"]}, [], ["echo", "me"]),
        (
            {
                "args": [
                    "worker",
                    "--models-root",
                    "/raid/models",
                    "--pvc",
                    "ns:models=/mnt/modelferry-pvc/models",
                ]
            },
            [MODELS, CLAIM],
            # the node root maps the hostPath; the claim's mount path is mapped in the args
            [
                sys.executable,
                "-m",
                "modelferry.cli",
                "worker",
                "--models-root",
                "/raid/models",
                "--pvc",
                "ns:models=/claims/models",
            ],
        ),
    ],
)
def test_a_container_becomes_an_argv(
    container: dict[str, Any], mounts: list[Mount], expected: list[str]
) -> None:
    assert container_argv(container, env={"WHO": "me"}, mounts=mounts) == expected


@pytest.mark.parametrize(
    ("container", "mounts", "refusal"),
    [
        ({"image": "nginx", "args": ["-g", "daemon off;"]}, [], "entrypoint"),
        ({"args": ["worker"]}, [Mount(path="/models", local=Path("/n/raid"), host_path="/raid")], "own path"),
    ],
)
def test_what_cannot_run_as_a_process_is_a_start_error(
    container: dict[str, Any], mounts: list[Mount], refusal: str
) -> None:
    with pytest.raises(StartError, match=refusal):
        container_argv(container, env={}, mounts=mounts)


def _ended(*codes: int | None) -> list[ContainerRun]:
    runs = []
    for i, code in enumerate(codes):
        run = ContainerRun(name=f"c{i}", image="x")
        run.start(pid=1)
        if code is not None:
            run.finish(code)
        runs.append(run)
    return runs


@pytest.mark.parametrize(
    ("runs", "started", "final", "expected"),
    [
        ([ContainerRun(name="c", image="x")], False, False, "Pending"),
        (_ended(None), True, False, "Running"),
        (_ended(0, None), True, False, "Running"),
        (_ended(0, 0), True, False, "Succeeded"),
        (_ended(0, 1), True, False, "Failed"),
        (_ended(143), True, True, "Failed"),  # deleted while running: SIGTERM's exit
        (_ended(0), True, True, "Succeeded"),
    ],
)
def test_exits_decide_the_phase(runs: list[ContainerRun], started: bool, final: bool, expected: str) -> None:
    if final:
        for run in runs:
            run.settle()
    assert phase(runs, started=started, final=final) == expected
