"""Each setting the model workflows obey becomes its `PipelineOptions` field through the one
function every entry point calls (`modelferry.options.pipeline_options`), whether it comes from the
config file or an override; the defaults of settings and options agree. The workflow tier
(`tests/workflows/test_settings_reach_running_model_workflows.py`) shows each field used."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from activities.node_options import backend_settings, download_options
from activities.storage.base import DownloadOptions
from activities.storage.registry import BackendSettings
from modelferry.messages import PipelineOptions
from modelferry.options import pipeline_options
from modelferry.settings import Settings, load_settings

# (setting, a value other than the default, the PipelineOptions field it must become)
PIPELINE = [
    ("worker.schedule_to_start_seconds", 45.0, "node_schedule_to_start_seconds"),
    ("pipeline.download_timeout_seconds", 7200.0, "download_timeout_seconds"),
    ("pipeline.download_heartbeat_seconds", 12.0, "download_heartbeat_seconds"),
    ("pipeline.failed_node_retry_seconds", 90.0, "failed_node_retry_seconds"),
    ("pipeline.max_history_events", 800, "max_history_events"),
    ("pipeline.keep_versions", 3, "keep_versions"),
    ("peer.enabled", True, "peer_delivery"),
    ("peer.origin_fetchers", 2, "peer_origin_fetchers"),
]


def test_every_option_has_its_setting() -> None:
    assert sorted(field for _, _, field in PIPELINE) == sorted(PipelineOptions.model_fields)


@pytest.mark.parametrize(("setting", "value", "field"), PIPELINE, ids=[row[0] for row in PIPELINE])
def test_a_setting_override_becomes_its_option(setting: str, value: object, field: str) -> None:
    options = pipeline_options(load_settings(environ={}, overrides={setting: value}))
    assert getattr(options, field) == value
    assert options.model_copy(update={field: getattr(PipelineOptions(), field)}) == PipelineOptions()


@pytest.mark.parametrize(("setting", "value", "field"), PIPELINE, ids=[row[0] for row in PIPELINE])
def test_a_config_file_setting_becomes_its_option(
    tmp_path: Path, setting: str, value: object, field: str
) -> None:
    section, key = setting.split(".")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({section: {key: value}}))
    assert getattr(pipeline_options(load_settings(config, environ={})), field) == value


def test_defaults_of_settings_and_options_agree() -> None:
    assert pipeline_options(Settings()) == PipelineOptions()
    assert download_options(Settings()) == DownloadOptions()
    assert backend_settings(Settings()) == BackendSettings()


@pytest.mark.parametrize(
    "setting",
    [
        "pipeline.download_timeout_seconds",
        "pipeline.download_heartbeat_seconds",
        "pipeline.failed_node_retry_seconds",
        "pipeline.max_history_events",
        "download.connect_timeout",
        "download.read_timeout",
    ],
)
def test_a_timeout_or_limit_must_be_positive(setting: str) -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        load_settings(environ={}, overrides={setting: 0})
