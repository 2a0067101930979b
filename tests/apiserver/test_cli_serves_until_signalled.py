"""`modelferry apiserver` runs in the foreground, writes its kubeconfig, and on SIGTERM saves its
state and exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml


def test_cli_serves_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    kubeconfig, state = tmp_path / "kubeconfig", tmp_path / "state.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelferry.cli",
            "apiserver",
            "--port",
            "0",
            "--kubeconfig",
            str(kubeconfig),
            "--state",
            str(state),
            "--node",
            "gpu-1,gpu=h100,zone=z1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not kubeconfig.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no kubeconfig written"
            time.sleep(0.05)
        server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        with urllib.request.urlopen(server + "/readyz") as r:
            assert r.read() == b"ok"
        with urllib.request.urlopen(server + "/api/v1/nodes/gpu-1") as r:
            labels = yaml.safe_load(r.read())["metadata"]["labels"]
        assert labels["gpu"] == "h100" and labels["zone"] == "z1"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "serving http://127.0.0.1:" in out
    assert "gpu-1" in state.read_text()


def test_cli_refuses_a_manifest_it_cannot_serve(tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        "apiVersion: example.com/v1\nkind: Unknown\nmetadata: {name: x}\n---\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelferry.cli",
            "apiserver",
            "--port",
            "0",
            "--kubeconfig",
            str(tmp_path / "kubeconfig"),
            "--manifest",
            str(manifest),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "kind=Unknown" in result.stderr and "Traceback" not in result.stderr
