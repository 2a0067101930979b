"""`modelferry dev`: the README's first command, and the API conformance suite against it while
the watcher runs (when ../shared/apiconformance is beside the project)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.processes import PROJECT_ROOT, worker_env

pytestmark = pytest.mark.e2e

CONFORMANCE = PROJECT_ROOT.parent / "shared" / "apiconformance"


def dev_command(home: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "modelferry.cli",
        "dev",
        "--home",
        str(home),
        "--headless",
        "--temporal-port",
        "0",
        "--kube-port",
        "0",
        *extra,
    ]


def test_dev_example_exits_when_ready(tmp_path):
    done = subprocess.run(
        dev_command(tmp_path / "home", "--example", "--exit-when-ready"),
        capture_output=True,
        text=True,
        timeout=180,
        env=worker_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ClusterBaseModel/tiny-llama is Ready" in done.stdout
    model = tmp_path / "home" / "node" / "raid" / "models" / "modelferry" / "tiny-llama"
    assert (model / "model.safetensors").is_file() and model.is_symlink()


@pytest.mark.skipif(not CONFORMANCE.is_dir(), reason="../shared/apiconformance is not beside the project")
def test_api_conformance_suite_passes_against_dev(tmp_path):
    home = tmp_path / "home"
    log = open(tmp_path / "dev.log", "w")  # noqa: SIM115
    dev = subprocess.Popen(
        dev_command(home, "--example"), stdout=log, stderr=subprocess.STDOUT, env=worker_env()
    )
    try:
        deadline = time.monotonic() + 60
        while "applied" not in (tmp_path / "dev.log").read_text():
            assert dev.poll() is None and time.monotonic() < deadline, (tmp_path / "dev.log").read_text()
            time.sleep(0.2)
        env = {
            **os.environ,
            "KUBECONFIG": str(home / "kubeconfig"),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(CONFORMANCE)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        # operators script readiness with kubectl wait on the Ready condition
        kubectl = Path(sys.executable).parent / "kubectl"
        waited = subprocess.run(
            [str(kubectl), "wait", "--for=condition=Ready", "clusterbasemodel/tiny-llama", "--timeout=60s"],
            capture_output=True,
            text=True,
            timeout=90,
            env=env,
        )
        assert waited.returncode == 0 and "condition met" in waited.stdout, waited.stdout + waited.stderr
    finally:
        dev.terminate()
        dev.wait(timeout=30)
        log.close()
