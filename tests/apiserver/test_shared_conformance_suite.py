"""The project-wide API conformance suite (kept outside this repository) run against a fresh
embedded server with the OME CRDs and a node, as CI does. Skipped where the suite is absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelferry.apiserver.testing import running_apiserver

from .conftest import kubectl_binary

PROJECT = Path(__file__).resolve().parents[2]
CANDIDATES = (Path("/work/shared/apiconformance"), PROJECT.parent / "shared" / "apiconformance")


def suite_dir() -> Path | None:
    return next((p for p in CANDIDATES if (p / "test_api_conformance.py").is_file()), None)


@pytest.mark.skipif(
    suite_dir() is None, reason="the shared apiconformance suite is not checked out beside the project"
)
@pytest.mark.skipif(kubectl_binary() is None, reason="kubectl is not installed")
def test_the_shared_conformance_suite_passes(tmp_path: Path) -> None:
    suite = suite_dir()
    assert suite is not None
    kubectl_dir = str(Path(str(kubectl_binary())).parent)
    with running_apiserver(kubeconfig=tmp_path / "kubeconfig"):
        env = {
            **os.environ,
            "KUBECONFIG": str(tmp_path / "kubeconfig"),
            "KUBECACHEDIR": str(tmp_path / "cache"),
            "PATH": kubectl_dir + os.pathsep + os.environ.get("PATH", ""),
        }
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                str(suite),
                "-q",
                "-p",
                "no:cacheprovider",
                "--rootdir",
                str(suite),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            cwd=tmp_path,
        )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
