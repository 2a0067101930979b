"""One image for every role: the reference the Dockerfile declares is the one every container in
deploy/ runs, the one the controller puts in worker Jobs (WorkerSettings.image and the shipped
config), and its tag is the project's version."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest

from modelferry.settings import WorkerSettings

from .manifests import (
    DEFAULT,
    DOCKERFILE,
    NODE_WORKER,
    PROJECT,
    dockerfile_instructions,
    image_reference,
    job_template,
    key_values,
    kustomize,
    pod_templates,
    shipped_settings,
    stages,
    write_overlay,
)


@pytest.fixture(scope="module")
def with_daemonset(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return kustomize(write_overlay(tmp_path_factory.mktemp("overlay"), components=[NODE_WORKER]))


def test_dockerfile_reference_is_tagged_with_the_project_version() -> None:
    version = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["version"]
    reference = image_reference()
    repository, _, tag = reference.rpartition(":")
    assert repository and "/" in repository and tag == version
    labels: dict[str, str] = {}
    for instruction in stages(dockerfile_instructions(DOCKERFILE.read_text()))[-1]:
        if instruction.keyword == "LABEL":
            labels.update(key_values(instruction.arguments))
    assert labels["org.opencontainers.image.version"] == version
    assert f"docker build --tag {reference} ." in DOCKERFILE.read_text()  # the documented build


def test_worker_settings_default_and_shipped_config_name_the_image() -> None:
    assert WorkerSettings().image == image_reference()
    assert shipped_settings().worker.image == image_reference()
    (container,) = job_template()["spec"]["template"]["spec"]["containers"]
    assert container["image"] == image_reference()


def test_every_container_in_deploy_runs_the_image(with_daemonset: list[dict[str, Any]]) -> None:
    workloads = dict(pod_templates(with_daemonset))
    assert set(workloads) == {"Deployment/modelferry-controller", "DaemonSet/modelferry-node-worker"}
    for where, pod in workloads.items():
        for container in pod.get("initContainers", []) + pod["containers"]:
            assert container["image"] == image_reference(), f"{where}/{container['name']}"


def test_default_install_runs_the_image_too() -> None:
    images = {c["image"] for _, pod in pod_templates(kustomize(DEFAULT)) for c in pod["containers"]}
    assert images == {image_reference()}


def _containers(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    found = [
        (f"{where}/{c['name']}", c)
        for where, pod in pod_templates(objects)
        for c in pod.get("initContainers", []) + pod["containers"]
    ]
    job_pod = job_template()["spec"]["template"]["spec"]
    return found + [(f"Job/{c['name']}", c) for c in job_pod["containers"]]


def test_every_container_runs_a_command_line_the_image_accepts(with_daemonset: list[dict[str, Any]]) -> None:
    """The image's ENTRYPOINT is `modelferry`: each container keeps it (no `command`) and its
    args parse as a modelferry command line (a flag deploy/ passes that the CLI lost would
    otherwise surface only as a crash-looping pod); a `--config` it passes is a mounted file."""
    from modelferry.cli import build_parser

    entrypoint = [
        i for i in stages(dockerfile_instructions(DOCKERFILE.read_text()))[-1] if i.keyword == "ENTRYPOINT"
    ]
    assert [i.arguments for i in entrypoint] == ['["modelferry"]']
    for where, container in _containers(with_daemonset):
        assert "command" not in container, where
        args = [arg.replace("$(NODE_NAME)", "gpu-node-1") for arg in container["args"]]
        parsed = build_parser().parse_args(args)
        assert callable(parsed.func), where
        config = getattr(parsed, "config", None)
        if config is not None:
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert any(str(config).startswith(f"{path.rstrip('/')}/") for path in mounts), where
