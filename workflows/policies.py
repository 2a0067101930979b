"""Named retry policies, timeouts and search attribute keys used by the workflows."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy, SearchAttributeKey

from modelferry.names import SearchAttribute

# Kubernetes API writes: quick, many attempts (the API server restarts, leader changes).
KUBE_WRITE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=20,
)
KUBE_WRITE_TIMEOUT = timedelta(seconds=60)
# When a control activity has exhausted its retries, the model workflow tries again after this.
CONTROL_RETRY_SECONDS = 60

# Downloads: the engine retries parts itself; an activity retry is for a crashed or lost worker,
# and resumes from the on-disk checkpoint and the last heartbeat that reached the server.
DOWNLOAD_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=8,
)
# The download heartbeat timeout is PipelineOptions.download_heartbeat_seconds (default 30 s):
# heartbeats are throttled to 0.8 x it, so a checkpoint reaches the server at least every ~24 s
# and a killed worker is noticed within 30 s.

NODE_LOCAL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=5,
)
VERIFY_TIMEOUT = timedelta(hours=2)
VERIFY_HEARTBEAT = timedelta(seconds=60)
PARSE_TIMEOUT = timedelta(minutes=10)
FILES_TIMEOUT = timedelta(minutes=30)

SA_MODEL_NAME = SearchAttributeKey.for_keyword(SearchAttribute.MODEL_NAME.value)
SA_MODEL_NAMESPACE = SearchAttributeKey.for_keyword(SearchAttribute.MODEL_NAMESPACE.value)
SA_MODEL_KIND = SearchAttributeKey.for_keyword(SearchAttribute.MODEL_KIND.value)
SA_STORAGE_URI = SearchAttributeKey.for_keyword(SearchAttribute.STORAGE_URI.value)
SA_NODE_NAMES = SearchAttributeKey.for_keyword_list(SearchAttribute.NODE_NAMES.value)
SA_MODEL_STATE = SearchAttributeKey.for_keyword(SearchAttribute.MODEL_STATE.value)
SA_NODE_STATES = SearchAttributeKey.for_keyword_list(SearchAttribute.NODE_STATES.value)
