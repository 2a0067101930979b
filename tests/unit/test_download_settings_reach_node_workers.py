"""Each `download` setting reaches what the node worker runs: the download activity's engine options
and backend settings, and the per-node cap on concurrent models. Three ways in: a `modelferry
worker` flag, the worker's config file, and a Job-mode worker, whose flags carry the controller's
settings (`modelferry.nodejob`). `modelferry pull` maps its flags through the same functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from activities.download import DownloadActivities
from modelferry.cli import build_parser
from modelferry.commands import pull, runtime, worker
from modelferry.nodejob import build_worker_job
from modelferry.settings import DownloadSettings, Settings, load_settings

# (setting, a value other than the default, where the node worker must use it)
# Targets: ("options", field) of DownloadOptions, ("backend", field) of BackendSettings, ("slots",).
DOWNLOAD: list[tuple[str, Any, list[tuple[str, ...]]]] = [
    ("concurrency", 7, [("options", "concurrency"), ("backend", "concurrency")]),
    (
        "multipart_concurrency",
        3,
        [("options", "multipart_concurrency"), ("backend", "multipart_concurrency")],
    ),
    ("download_retry", 9, [("options", "retries")]),
    ("num_download_worker", 5, [("slots",)]),
    ("stall_timeout", 12.5, [("options", "stall_timeout")]),
    ("connect_timeout", 3.5, [("backend", "connect_timeout")]),
    ("read_timeout", 17.0, [("backend", "read_timeout")]),
]
IDS = [row[0] for row in DOWNLOAD]


class _Worker:
    """Stands in for temporalio's Worker: keeps what the node worker was built with."""

    def __init__(self, client: object, **kwargs: Any) -> None:
        self.kwargs = kwargs


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _node_worker(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What `modelferry worker ARGV` hands the engine: the options, backend settings and slots."""
    args = build_parser().parse_args(argv)
    assert args.func is worker.run
    settings = load_settings(args.config, environ={}, overrides=worker.settings_overrides(args))
    slots: list[int] = []
    monkeypatch.setattr(runtime, "Worker", _Worker)
    monkeypatch.setattr(runtime, "download_slots", slots.append)
    built = runtime.build_node_worker(client=object(), node=args.node, kube=None, settings=settings)
    assert isinstance(built, _Worker)
    (download,) = [a for a in built.kwargs["activities"] if a.__name__ == "download_model"]
    activities = download.__self__
    assert isinstance(activities, DownloadActivities)
    return {
        "options": activities.download_options(),
        "backend": activities.backend_settings(),
        "slots": slots,
    }


def _assert_used(seen: dict[str, Any], value: Any, targets: list[tuple[str, ...]]) -> None:
    for target in targets:
        if target == ("slots",):
            assert seen["slots"] == [value]
        else:
            assert getattr(seen[target[0]], target[1]) == value, target


def test_every_download_setting_has_its_row() -> None:
    assert sorted(IDS) == sorted(DownloadSettings.model_fields)


@pytest.mark.parametrize(("setting", "value", "targets"), DOWNLOAD, ids=IDS)
def test_a_worker_flag_reaches_the_engine(setting, value, targets, monkeypatch) -> None:
    seen = _node_worker(["worker", "--node", "n1", _flag(setting), str(value)], monkeypatch)
    _assert_used(seen, value, targets)


@pytest.mark.parametrize(("setting", "value", "targets"), DOWNLOAD, ids=IDS)
def test_a_worker_config_setting_reaches_the_engine(
    setting, value, targets, monkeypatch, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"download": {setting: value}}))
    seen = _node_worker(["worker", "--node", "n1", "--config", str(config)], monkeypatch)
    _assert_used(seen, value, targets)


@pytest.mark.parametrize(("setting", "value", "targets"), DOWNLOAD, ids=IDS)
def test_a_controller_setting_reaches_a_job_workers_engine(setting, value, targets, monkeypatch) -> None:
    controller = load_settings(environ={}, overrides={f"download.{setting}": value})
    job = build_worker_job(settings=controller, node="n1", namespace="ome")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    seen = _node_worker(container["args"], monkeypatch)
    _assert_used(seen, value, targets)


def test_a_job_worker_runs_with_exactly_the_controllers_download_settings(monkeypatch) -> None:
    controller = load_settings(environ={}, overrides={f"download.{s}": v for s, v, _ in DOWNLOAD})
    job = build_worker_job(settings=controller, node="n1", namespace="ome")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    on_node = load_settings(environ={}, overrides=worker.settings_overrides(args))
    assert on_node.download == controller.download != Settings().download


# `modelferry pull` has no config file; its flags are the same settings.
PULL = [row for row in DOWNLOAD if row[0] != "num_download_worker"]


@pytest.mark.parametrize(("setting", "value", "targets"), PULL, ids=[row[0] for row in PULL])
def test_a_pull_flag_reaches_the_engine(setting, value, targets) -> None:
    from activities.node_options import backend_settings, download_options

    args = build_parser().parse_args(["pull", "hf://a/b", "--path", "/tmp/m", _flag(setting), str(value)])
    settings = pull.pull_settings(args, mounts={})
    _assert_used(
        {"options": download_options(settings), "backend": backend_settings(settings)}, value, targets
    )


def test_pull_reads_as_long_as_a_part_may_stall_unless_told() -> None:
    from activities.node_options import backend_settings

    args = build_parser().parse_args(["pull", "hf://a/b", "--path", "/tmp/m", "--stall-timeout", "9"])
    assert backend_settings(pull.pull_settings(args, mounts={})).read_timeout == 9.0
    assert pull.pull_settings(args, mounts={}).download.num_download_worker == args.num_download_worker
