"""`modelferry pull`: 0 only when every file is verified, 2 for permanent errors, 1 for temporary ones,
and a SIGKILLed pull resumes without fetching the model again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelferry.cli import main
from tests.servers.fake_hf import FakeHub, Stall, Status
from tests.storage.conftest import model_bytes, visible_files

REPO = "acme/pull-me"
FILES = {"config.json": b"{}", "model.safetensors": model_bytes(6_000_000, seed=5), "tok.json": b"t" * 2000}
BATCH = 1024 * 1024  # what a killed pull may have received but not yet written
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hub():
    with FakeHub() as hub:
        hub.add_repo(REPO, dict(FILES), gated=True, tokens={"hf_tok"})
        yield hub


def pull(*args: str) -> int:
    return main(["pull", *args])


def test_pull_succeeds_and_prints_a_summary(hub: FakeHub, tmp_path: Path, capsys) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("hf_tok\n")
    code = pull(
        f"hf://{REPO}",
        "--path",
        str(tmp_path / "m"),
        "--hf-endpoint",
        hub.url,
        "--secret",
        f"token=@{token_file}",
        "--concurrency",
        "2",
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert visible_files(tmp_path / "m") == FILES
    assert out.startswith(f"pulled hf://{REPO}@") and "3 files" in out
    assert "hf_tok" not in out + err


def test_gated_without_token_is_permanent(hub: FakeHub, tmp_path: Path, capsys) -> None:
    code = pull(f"hf://{REPO}", "--path", str(tmp_path / "m"), "--hf-endpoint", hub.url)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "gated" in err


def test_persistent_server_errors_are_temporary(hub: FakeHub, tmp_path: Path, capsys) -> None:
    hub.add_fault(REPO, "tok.json", *[Status(503)] * 10)
    code = pull(
        f"hf://{REPO}",
        "--path",
        str(tmp_path / "m"),
        "--hf-endpoint",
        hub.url,
        "--secret",
        "token=hf_tok",
        "--download-retry",
        "1",
    )
    assert code == 1
    assert "temporary error" in capsys.readouterr().err
    assert not (tmp_path / "m/.modelferry/manifest.json").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["bogus://x"],
        ["pvc://missing-claim/x"],
        ["hf://acme/x", "--param", "novalue"],
        ["hf://acme/x", "--secret", "token=@/nonexistent/file"],
    ],
)
def test_bad_input_is_permanent(argv: list[str], tmp_path: Path, capsys) -> None:
    assert pull(*argv, "--path", str(tmp_path / "m")) == 2
    assert capsys.readouterr().err.startswith("modelferry pull: error: ")


def test_pvc_pull(tmp_path: Path, capsys) -> None:
    (tmp_path / "claim/m").mkdir(parents=True)
    (tmp_path / "claim/m/a.bin").write_bytes(b"a" * 5000)
    assert (
        pull(
            "pvc://weights/m",
            "--path",
            str(tmp_path / "out"),
            "--pvc",
            f"weights={tmp_path / 'claim'}",
            "--quiet",
        )
        == 0
    )
    assert capsys.readouterr().out == ""
    assert visible_files(tmp_path / "out") == {"a.bin": b"a" * 5000}


def test_sigkilled_pull_resumes_without_refetching(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_fault(REPO, "model.safetensors", Stall(after=4_000_000, seconds=30))
    argv = [
        sys.executable,
        "-m",
        "modelferry.cli",
        "pull",
        f"hf://{REPO}",
        "--path",
        str(tmp_path / "m"),
        "--hf-endpoint",
        hub.url,
        "--secret",
        "token=hf_tok",
        "--multipart-concurrency",
        "1",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while hub.served_for("model.safetensors") < 4_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.2)  # past the engine's checkpoint interval
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    first = hub.bytes_served
    assert 4_000_000 <= first < sum(map(len, FILES.values()))
    assert (
        pull(
            f"hf://{REPO}",
            "--path",
            str(tmp_path / "m"),
            "--hf-endpoint",
            hub.url,
            "--secret",
            "token=hf_tok",
            "--quiet",
        )
        == 0
    )
    assert visible_files(tmp_path / "m") == FILES
    # Without the checkpoint this would be 4 MB + 6 MB; with it, at most one write batch is fetched twice.
    assert hub.served_for("model.safetensors") <= len(FILES["model.safetensors"]) + BATCH
