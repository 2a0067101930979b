"""`modelferry dev` writes `<home>/settings.yaml`; one-shot commands run beside it read it."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest

from modelferry.commands.clicontext import DEV_SETTINGS_FILE_NAME, add_connection_args, cli_settings
from modelferry.dev.stack import write_dev_settings_file
from modelferry.settings import load_settings


def parsed(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_connection_args(parser)
    return parser.parse_args(list(argv))


def test_the_cli_reads_what_dev_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / ".modelferry"
    home.mkdir()
    kubeconfig = home / "kubeconfig"
    settings = load_settings(
        environ={}, overrides={"temporal.address": "127.0.0.1:45123", "kube.kubeconfig": str(kubeconfig)}
    )
    written = write_dev_settings_file(home, settings=settings)
    assert written == home / DEV_SETTINGS_FILE_NAME
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert not list(home.glob("*.partial"))

    monkeypatch.chdir(tmp_path)  # the default home, ./.modelferry
    read = cli_settings(parsed(), environ={})
    assert read.temporal.address == "127.0.0.1:45123"
    assert read.kube.kubeconfig == kubeconfig
    # flags still win over the file
    assert cli_settings(parsed("--temporal-address", "h:1"), environ={}).temporal.address == "h:1"


def test_a_restart_rewrites_the_file(tmp_path: Path) -> None:
    first = load_settings(environ={}, overrides={"temporal.address": "127.0.0.1:1111"})
    second = load_settings(environ={}, overrides={"temporal.address": "127.0.0.1:2222"})
    write_dev_settings_file(tmp_path, settings=first)
    path = write_dev_settings_file(tmp_path, settings=second)
    assert load_settings(path, environ={}).temporal.address == "127.0.0.1:2222"
    assert load_settings(path, environ={}).kube.kubeconfig is None
