"""What the two thin Kubernetes client modules share: how an `ApiClient` is loaded, how long a call
may take, and how the client's failures become our typed errors.

Two modules call the Kubernetes API, one per concern, and both build on this one:

- `watcher/kube.py`: the watcher's list and watch (raw JSON, watches another thread can cut),
  its Lease and its status writes.
- `activities/kube.py`: the activities' reads and writes of model resources, Nodes, ConfigMaps,
  Secrets, Jobs and Events, as plain dicts.

Here, and only here: `load_api_client` turns `KubeSettings` into an `ApiClient` for every entry point;
`Timeouts` bounds every call, so a half-open connection cannot hold a thread forever; `kube_errors`
turns an `ApiException` or a dropped connection into `KubeNotFoundError`, `KubeConflictError`, ...
through `modelferry.errors.kube_error_for_status`; `request` makes the raw calls the typed API
has no form for (a metadata-only list or get). Nothing above the two client modules sees the
`kubernetes` package's types.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelferry.errors import KubeError, KubeUnavailableError, kube_error_for_status
from modelferry.settings import KubeSettings

JSON = "application/json"
# The meta.k8s.io views that carry only apiVersion, kind and metadata (what client-go's metadata
# client asks for). Plain JSON comes after, so a server without the views still answers: readers
# use only `metadata`, which both forms have.
METADATA_LIST_ACCEPT = f"{JSON};as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,{JSON}"
METADATA_ACCEPT = f"{JSON};as=PartialObjectMetadata;g=meta.k8s.io;v=v1,{JSON}"

# More than the threads of one process that call at once (the control worker's activity threads,
# `modelferry.commands.runtime`, plus a watch per informer and the Lease and status writes), so none opens
# and drops a connection per call.
CONNECTION_POOL_SIZE = 64

_MESSAGE_LIMIT = 300  # characters of a server's message kept in ours


@dataclass(frozen=True)
class Timeouts:
    """Client-side limits on every call, in seconds (`connect`: the TCP and TLS handshake; `read`:
    each wait for the next bytes of an answer)."""

    # A reachable API server completes a handshake in milliseconds; this leaves room for a loaded
    # one on a slow network.
    connect: float = 10.0
    # Longer than a healthy API server takes to start answering, and well under the 60 s a
    # Kubernetes activity may run (`workflows.policies.KUBE_WRITE_TIMEOUT`), so a dead connection
    # frees its thread before Temporal gives up on the attempt.
    read: float = 30.0

    def request(self) -> tuple[float, float]:
        """`_request_timeout` for a call that expects a prompt answer."""
        return (self.connect, self.read)

    def watch(self, server_seconds: int) -> tuple[float, float]:
        """`_request_timeout` for a watch the server ends after `server_seconds`: a quiet watch
        reads nothing until then, so only a read that outlasts it by `read` is a dead connection."""
        return (self.connect, server_seconds + self.read)


TIMEOUTS = Timeouts()


def load_api_client(settings: KubeSettings) -> client.ApiClient:
    """An `ApiClient` from `settings.kubeconfig`, else the in-cluster service account, else
    ~/.kube/config; the process-wide default configuration is left alone."""
    configuration = client.Configuration()
    if settings.kubeconfig is not None:
        config.load_kube_config(config_file=str(settings.kubeconfig), client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    # No silent retries inside urllib3: a call takes at most one connect and one read timeout,
    # and retrying is declared where it can be seen (Temporal's RetryPolicy for activities, the
    # informer's and the elector's backoff for the watcher).
    configuration.retries = 0
    return client.ApiClient(configuration)


# --- errors ---------------------------------------------------------------------------------------

# What a broken, refused, reset or timed-out connection raises through the client.
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


def map_api_error(error: BaseException, *, what: str) -> KubeError:
    """Our typed error for a client exception; `what` names the request in the message.

    An HTTP status goes through `kube_error_for_status`; anything that kept an answer from
    arriving (refused, reset, timed out, TLS failure) is `KubeUnavailableError`.
    """
    if isinstance(error, KubeError):
        return error
    if isinstance(error, ApiException) and error.status:
        status = int(error.status)
        detail = _status_message(error.body) or str(error.reason or "")
        return kube_error_for_status(status, f"{what}: HTTP {status} {detail}".rstrip())
    if isinstance(error, ApiException):  # status 0: the client's wrapping of a TLS failure
        return KubeUnavailableError(f"{what}: {error.reason}")
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        error = error.reason  # what actually happened, not "max retries exceeded"
    return KubeUnavailableError(f"{what}: {type(error).__name__}: {error}")


@contextmanager
def kube_errors(what: str) -> Iterator[None]:
    """Within the block, a client exception or a dropped connection is raised as our typed error.

    The client's exception is not chained: its headers and body would ride along into Temporal
    failures, and the message already carries the status and the server's own message.
    """
    try:
        yield
    except (ApiException, *_TRANSPORT_ERRORS) as error:
        raise map_api_error(error, what=what) from None


def _status_message(body: Any) -> str:
    """The `message` of a Kubernetes Status body, else the start of the body."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return ""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:_MESSAGE_LIMIT]
    return str(parsed.get("message", ""))[:_MESSAGE_LIMIT] if isinstance(parsed, dict) else ""


# --- raw calls ------------------------------------------------------------------------------------


def request(
    api_client: client.ApiClient,
    method: str,
    path: str,
    *,
    what: str,
    query: Sequence[tuple[str, Any]] = (),
    accept: str = JSON,
    timeout: tuple[float, float],
) -> Any:
    """Send one request and return the unread `urllib3` response (the caller reads or streams
    it, then releases it); failures raise our typed errors, `what` naming the request.

    For calls the generated API cannot make: it always asks for plain JSON, and a
    metadata-only list or get needs its own Accept header.
    """
    with kube_errors(what):
        return api_client.call_api(
            path,
            method,
            query_params=list(query),
            header_params={"Accept": accept},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )


def get_json(
    api_client: client.ApiClient, path: str, *, what: str, accept: str = JSON, timeout: tuple[float, float]
) -> dict[str, Any]:
    """GET `path` and return the answer as a JSON object (`request`, then `read_json`)."""
    response = request(api_client, "GET", path, what=what, accept=accept, timeout=timeout)
    return read_json(response, what=what)


def read_json(response: Any, *, what: str) -> dict[str, Any]:
    """Read a whole `request` response as a JSON object and give its connection back to the pool."""
    with kube_errors(what):
        try:
            data = response.data
        finally:
            response.release_conn()
    try:
        parsed = json.loads(data) if data else {}
    except ValueError:
        raise KubeUnavailableError(f"{what}: response is not JSON") from None
    return parsed if isinstance(parsed, dict) else {}
