"""`modelferry config show`: the effective settings as YAML, each value's source beside it
(default | file | env VAR | flag), precedence flag > env > file > default, nothing secret printed,
and the output read back as a settings file gives the same settings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelferry.cli import build_parser
from modelferry.commands import config
from modelferry.settings import Settings, load_settings


def show(capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str]) -> str:
    args = build_parser().parse_args(["config", "show", *argv])
    assert config.run(args, environ=environ) == 0
    return capsys.readouterr().out


def sources_of(text: str) -> dict[str, str]:
    """`section.key` -> the comment on its line."""
    found: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        if re.match(r"^\w+:$", line):
            section = line[:-1]
        elif match := re.match(r"^  (\w+): .*?  # (.+)$", line):
            found[f"{section}.{match[1]}"] = match[2]  # `source`, or `source; note`
    return found


@pytest.fixture
def layered(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "download": {"download_retry": 1, "concurrency": 2, "multipart_concurrency": 3},
                "kube": {"agent_namespace": "from-file"},
            }
        )
    )
    return path


def test_precedence_is_flag_env_file_default(capsys, layered: Path, monkeypatch) -> None:
    monkeypatch.chdir(layered.parent)
    env = {
        "MODELFERRY_DOWNLOAD_CONCURRENCY": "20",
        "MODELFERRY_DOWNLOAD_MULTIPART_CONCURRENCY": "30",
    }
    text = show(capsys, ["--config", str(layered), "--multipart-concurrency", "300"], env)
    settings = yaml.safe_load(text)
    sources = sources_of(text)
    assert settings["download"]["download_retry"] == 1 and sources["download.download_retry"] == "file"
    assert settings["download"]["concurrency"] == 20
    assert sources["download.concurrency"] == "env MODELFERRY_DOWNLOAD_CONCURRENCY"
    assert settings["download"]["multipart_concurrency"] == 300
    assert sources["download.multipart_concurrency"] == "flag"
    assert settings["download"]["num_download_worker"] == 5
    assert sources["download.num_download_worker"] == "default"
    assert settings["kube"]["agent_namespace"] == "from-file"
    assert text.startswith(f"# modelferry effective settings (file {layered})")


def test_every_setting_is_shown_with_a_source(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./.modelferry/settings.yaml here
    text = show(capsys, [], {})
    shown = yaml.safe_load(text)
    assert shown == Settings().model_dump(mode="json")
    assert {source.split(";")[0] for source in sources_of(text).values()} == {"default"}
    assert len(sources_of(text)) == sum(len(section) for section in shown.values())


def test_the_shown_yaml_read_back_is_the_same_settings(capsys, layered: Path, tmp_path: Path) -> None:
    env = {"MODELFERRY_LOG_LEVEL": "debug", "MODELFERRY_POLICY_MODELS_ROOTS": "/data/models"}
    text = show(capsys, ["--config", str(layered), "--namespace", "models"], env)
    copy = tmp_path / "shown.yaml"
    copy.write_text(text)
    expected = load_settings(layered, environ=env, overrides={"kube.agent_namespace": "models"})
    assert load_settings(copy, environ={}) == expected


def test_json_for_scripts(capsys, layered: Path) -> None:
    body = json.loads(show(capsys, ["--config", str(layered), "--json", "--download-retry", "9"], {}))
    assert body["file"] == str(layered)
    assert body["settings"]["download"]["download_retry"] == 9
    assert body["sources"]["download.download_retry"] == "flag"
    assert body["sources"]["download.concurrency"] == "file"


def test_the_config_file_comes_from_the_environment_too(capsys, layered: Path) -> None:
    text = show(capsys, [], {"MODELFERRY_CONFIG": str(layered)})
    assert sources_of(text)["download.download_retry"] == "file"


def test_secret_values_are_never_printed(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {
        "MODELFERRY_TEMPORAL_API_KEY_ENV": "TEMPORAL_API_KEY",
        "TEMPORAL_API_KEY": "tk-very-secret",
        "MODELFERRY_NODE_HF_ENDPOINT": "https://user:hf_secret@hf-mirror.local/api",
        "MODELFERRY_TEMPORAL_TLS_CLIENT_KEY_PATH": "/certs/tls.key",
    }
    text = show(capsys, [], env)
    assert "tk-very-secret" not in text and "hf_secret" not in text
    assert "$TEMPORAL_API_KEY is set (not shown)" in text
    shown = yaml.safe_load(text)
    assert shown["node"]["hf_endpoint"] == "https://***@hf-mirror.local/api"
    assert shown["temporal"]["tls_client_key_path"] == "/certs/tls.key"  # a path is no secret
    assert "is not set" in show(capsys, [], {"MODELFERRY_TEMPORAL_API_KEY_ENV": "UNSET_KEY"})


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("api_key", "abc", "***"),
        ("password", "abc", "***"),
        ("token", "abc", "***"),
        ("api_key_env", "TEMPORAL_API_KEY", "TEMPORAL_API_KEY"),
        ("token_env", "PEER_TOKEN", "PEER_TOKEN"),
        ("credentials_secret", "temporal-creds", "temporal-creds"),  # a Secret's name, not its data
        ("tls_client_key_path", "/certs/tls.key", "/certs/tls.key"),
        ("address", "https://u:p@host:443", "https://***@host:443"),
        ("address", "temporal:7233", "temporal:7233"),
        ("pvc_mounts", {"ns:c": "/mnt/c"}, {"ns:c": "/mnt/c"}),
        ("models_roots", ["/a"], ["/a"]),
        ("hf_endpoint", None, None),
    ],
)
def test_what_looks_like_a_credential_is_masked(key: str, value: Any, shown: Any) -> None:
    assert config.mask_value(key, value) == shown
