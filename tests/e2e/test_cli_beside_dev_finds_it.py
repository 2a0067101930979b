"""The CLI run beside `modelferry dev` finds its Temporal and API server through
`<home>/settings.yaml`, with no flags (the default home is ./.modelferry)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.processes import worker_env

pytestmark = pytest.mark.e2e


def test_status_beside_dev_needs_no_flags(tmp_path: Path) -> None:
    home = tmp_path / ".modelferry"
    log = open(tmp_path / "dev.log", "w")  # noqa: SIM115
    dev = subprocess.Popen(
        [
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
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=worker_env(),
        cwd=tmp_path,
    )
    try:
        settings_file = home / "settings.yaml"
        deadline = time.monotonic() + 90
        while "modelferry dev is up" not in (tmp_path / "dev.log").read_text():
            assert dev.poll() is None and time.monotonic() < deadline, (tmp_path / "dev.log").read_text()
            time.sleep(0.2)
        written = yaml.safe_load(settings_file.read_text())
        port = int(written["temporal"]["address"].rpartition(":")[2])
        assert port > 0, written  # the port dev bound, not the "0" it was asked for
        assert Path(written["kube"]["kubeconfig"]) == (home / "kubeconfig").resolve()
        env = worker_env()
        done = subprocess.run(
            [sys.executable, "-m", "modelferry.cli", "status"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.strip() == "no model resources"
        done = subprocess.run(
            [sys.executable, "-m", "modelferry.cli", "history", "cbm/nothing"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
        )
        assert done.returncode == 2 and "unknown model" in done.stderr, done.stdout + done.stderr
    finally:
        dev.terminate()
        dev.wait(30)
        log.close()
