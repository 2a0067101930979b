"""The continuous-verification intervals (`node.verify_interval`, `node.deep_verify_interval`)
reach the node worker's verifier from every way in: the settings file (durations or seconds),
`modelferry worker` and `modelferry dev` flags, and a Job-mode worker's flags, which carry the
controller's settings. A bad value is refused naming the value and the field or flag."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from modelferry.cli import build_parser
from modelferry.commands import runtime, worker
from modelferry.dev.stack import DevOptions, dev_settings
from modelferry.nodejob import build_worker_job
from modelferry.settings import Settings, load_settings


def test_defaults_are_ten_minutes_and_seven_days():
    assert (Settings().node.verify_interval, Settings().node.deep_verify_interval) == (600.0, 604800.0)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30m", 1800.0), ("1h30m", 5400.0), (90, 90.0), ("off", 0.0), (False, 0.0), (0, 0.0)],
)
def test_the_settings_file_reads_durations(value, seconds, tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"node": {"verify_interval": value, "deep_verify_interval": value}}))
    node = load_settings(config, environ={}).node
    assert (node.verify_interval, node.deep_verify_interval) == (seconds, seconds)


def test_the_settings_file_reads_an_unquoted_off(tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text("node:\n  deep_verify_interval: off\n")
    assert load_settings(config, environ={}).node.deep_verify_interval == 0.0


def test_a_bad_setting_names_the_field_and_the_value():
    with pytest.raises(ValidationError, match=r"node\.deep_verify_interval: '7days' is not a duration"):
        load_settings(environ={}, overrides={"node.deep_verify_interval": "7days"})


def _worker_settings(argv: list[str]) -> Settings:
    args = build_parser().parse_args(argv)
    return load_settings(args.config, environ={}, overrides=worker.settings_overrides(args))


def test_worker_flags_reach_the_verifier():
    settings = _worker_settings(
        ["worker", "--node", "n1", "--verify-interval", "2m", "--deep-verify-interval", "1d"]
    )
    verifier = runtime.build_node_verifier(client=object(), node="n1", settings=settings)  # type: ignore[arg-type]
    assert (verifier._verify_interval, verifier._deep_interval) == (120.0, 86400.0)
    assert verifier._roots == [Path("/mnt/models"), Path("/raid/models")]


def test_a_bad_flag_names_the_flag_and_the_value(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["worker", "--node", "n1", "--verify-interval", "10x"])
    err = capsys.readouterr().err
    assert "--verify-interval: '10x' is not a duration" in err


def test_dev_flags_reach_the_dev_settings(tmp_path: Path):
    args = build_parser().parse_args(["dev", "--verify-interval", "off", "--deep-verify-interval", "12h"])
    opts = DevOptions(
        home=tmp_path, verify_interval=args.verify_interval, deep_verify_interval=args.deep_verify_interval
    )
    node = dev_settings(opts, temporal_address="127.0.0.1:7233", kubeconfig=tmp_path / "kc").node
    assert (node.verify_interval, node.deep_verify_interval) == (0.0, 43200.0)
    unset = dev_settings(DevOptions(home=tmp_path), temporal_address="x:1", kubeconfig=tmp_path / "kc").node
    assert (unset.verify_interval, unset.deep_verify_interval) == (600.0, 604800.0)


@pytest.mark.parametrize(("verify", "deep"), [(90.0, 5400.0), (0.0, 0.0), (600.0, 604800.0), (1.5, 86400.0)])
def test_a_job_worker_verifies_as_the_controller_says(verify, deep):
    controller = load_settings(
        environ={}, overrides={"node.verify_interval": verify, "node.deep_verify_interval": deep}
    )
    job = build_worker_job(settings=controller, node="n1", namespace="ome")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    on_node = _worker_settings(container["args"])
    assert (on_node.node.verify_interval, on_node.node.deep_verify_interval) == (verify, deep)
