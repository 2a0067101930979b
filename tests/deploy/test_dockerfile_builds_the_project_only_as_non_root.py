"""The Dockerfile (there is no Docker engine here, so it is checked as text): a pinned base, the
project installed by pip from its own sources and nothing else, a non-root user, `modelferry` as
the entrypoint, and a build context (.dockerignore) that holds what the COPY lines need."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib

import pytest

from .manifests import (
    DOCKERFILE,
    DOCKERIGNORE,
    PROJECT,
    Instruction,
    dockerfile_instructions,
    stages,
)

PYPROJECT = tomllib.loads((PROJECT / "pyproject.toml").read_text())
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_EXACT_TAG = re.compile(r":\d+\.\d+\.\d+(-[a-z0-9.]+)*$")  # 3.11.13-slim-bookworm, not 3.11-slim


def is_pinned(reference: str) -> bool:
    """A digest, or a tag naming an exact patch release."""
    if "@" in reference:
        return bool(_DIGEST.search(reference))
    return bool(_EXACT_TAG.search(reference.rsplit("/", 1)[-1]))


def _instructions() -> list[Instruction]:
    return dockerfile_instructions(DOCKERFILE.read_text())


def _from_image(instruction: Instruction) -> str:
    words = [w for w in instruction.arguments.split() if not w.startswith("--")]
    return words[0]


@pytest.mark.parametrize(
    ("reference", "pinned"),
    [
        ("python:3.11.13-slim-bookworm", True),
        ("python:3.11-slim@sha256:" + "a" * 64, True),
        ("python:3.11.13-slim-bookworm@sha256:" + "0" * 64, True),
        ("python:3.11-slim", False),
        ("python:3.11", False),
        ("python:latest", False),
        ("python", False),
        ("registry:5000/python:3.11", False),
        ("registry:5000/python:3.11.13", True),
        ("python:3.11.13-slim-bookworm@sha256:abc", False),
    ],
)
def test_pinned_means_an_exact_release_or_a_digest(reference: str, pinned: bool) -> None:
    assert is_pinned(reference) is pinned


def test_every_base_image_is_pinned() -> None:
    froms = [i for i in _instructions() if i.keyword == "FROM"]
    assert froms
    for instruction in froms:
        image = _from_image(instruction)
        assert is_pinned(image), f"unpinned base: {image}"
    # Every stage starts from the same base, so the venv built in one runs in the other.
    assert len({_from_image(i) for i in froms}) == 1


def test_the_final_stage_runs_as_a_non_root_user_with_modelferry_as_entrypoint() -> None:
    final = stages(_instructions())[-1]
    users = [i.arguments for i in final if i.keyword == "USER"]
    assert users, "no USER in the final stage: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit() and int(user) > 0  # numeric: runAsNonRoot checks it
    (entrypoint,) = [json.loads(i.arguments) for i in final if i.keyword == "ENTRYPOINT"]
    assert entrypoint == ["modelferry"]
    assert "modelferry" in PYPROJECT["project"]["scripts"]
    # The final stage adds nothing but the built environment.
    assert not [i for i in final if i.keyword in ("RUN", "ADD")]
    (copy,) = [i for i in final if i.keyword == "COPY"]
    assert copy.arguments.startswith("--from=")


def test_the_only_thing_installed_is_the_project_by_pip() -> None:
    runs = [i.arguments for i in _instructions() if i.keyword == "RUN"]
    assert not [i for i in _instructions() if i.keyword == "ADD"]
    installs = [r for r in runs if " install " in f" {r} "]
    assert len(installs) == 1, runs
    (install,) = installs
    words = install.split()
    assert words[0].endswith("/bin/pip") and words[1] == "install"
    targets = [w for w in words[2:] if not w.startswith("-")]
    assert targets == ["/src"], "only the project itself (no extras, no other packages)"
    workdir = [i.arguments for i in _instructions() if i.keyword == "WORKDIR"]
    assert workdir[-1] == "/src"
    for run in runs:
        assert run == install or re.fullmatch(r"python -m venv /\S+", run), f"unexpected RUN: {run}"


def test_the_copied_sources_are_every_package_pip_will_look_for() -> None:
    build = stages(_instructions())[0]
    copied = {word for i in build if i.keyword == "COPY" for word in i.arguments.split()[:-1]}
    includes = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {
        p.name
        for p in PROJECT.iterdir()
        if (p / "__init__.py").is_file() and any(fnmatch.fnmatch(p.name, pattern) for pattern in includes)
    }
    assert packages == {"modelferry", "workflows", "activities", "watcher"}
    assert copied == packages | {"pyproject.toml", PYPROJECT["project"]["readme"]}


def test_dockerignore_keeps_what_the_copies_need_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "exclude everything, then re-include"
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    build = stages(_instructions())[0]
    copied = {word for i in build if i.keyword == "COPY" for word in i.arguments.split()[:-1]}
    assert kept == copied
    assert {"**/__pycache__", "**/*.egg-info"} <= set(patterns)
