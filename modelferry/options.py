"""Settings → the options the model workflows carry: one function, used by every entry point.

The controller, `modelferry watch`, `modelferry dev` and the end-to-end harness all hand the watcher
`pipeline_options(settings)`; nothing builds `PipelineOptions` by hand, so a setting cannot reach
one entry point and miss another. The node side's counterpart (download options and backend
settings, whose types live with the storage engine) is `activities.node_options`.
"""

from __future__ import annotations

from modelferry.messages import PipelineOptions
from modelferry.settings import Settings


def pipeline_options(settings: Settings) -> PipelineOptions:
    """The timeouts a model workflow and its node workflows use, from `worker` and `pipeline`."""
    pipeline = settings.pipeline
    return PipelineOptions(
        node_schedule_to_start_seconds=settings.worker.schedule_to_start_seconds,
        download_timeout_seconds=pipeline.download_timeout_seconds,
        failed_node_retry_seconds=pipeline.failed_node_retry_seconds,
        download_heartbeat_seconds=pipeline.download_heartbeat_seconds,
        max_history_events=pipeline.max_history_events,
        keep_versions=pipeline.keep_versions,
        peer_delivery=settings.peer.enabled,
        peer_origin_fetchers=settings.peer.origin_fetchers,
    )
