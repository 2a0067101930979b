"""`--keep-versions N` on every watcher entry point (dev, controller, watch) becomes
`pipeline.keep_versions`, which the model workflows carry (`PipelineOptions.keep_versions`) and
each node's activation honours; a bad value is refused naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelferry.cli import build_parser
from modelferry.commands.watch import settings_overrides
from modelferry.dev.stack import DevOptions, dev_settings
from modelferry.options import pipeline_options


@pytest.mark.parametrize("command", ["dev", "controller", "watch"])
def test_every_watcher_entry_point_takes_the_flag(command: str) -> None:
    args = build_parser().parse_args([command, "--keep-versions", "3"])
    assert args.keep_versions == 3
    assert build_parser().parse_args([command]).keep_versions is None


@pytest.mark.parametrize("bad", ["-1", "two", "1.5"])
def test_a_bad_value_names_the_flag(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dev", "--keep-versions", bad])
    assert f"--keep-versions {bad!r}" in capsys.readouterr().err


def test_the_flag_becomes_the_option(tmp_path: Path) -> None:
    args = build_parser().parse_args(["watch", "--keep-versions", "0"])
    assert settings_overrides(args)["pipeline.keep_versions"] == 0
    settings = dev_settings(
        DevOptions(home=tmp_path, keep_versions=4), temporal_address="127.0.0.1:1", kubeconfig=tmp_path / "k"
    )
    assert pipeline_options(settings).keep_versions == 4
    default = dev_settings(
        DevOptions(home=tmp_path), temporal_address="127.0.0.1:1", kubeconfig=tmp_path / "k"
    )
    assert pipeline_options(default).keep_versions == 1
