"""`modelferry pull URI --path DIR`: download one model with the node's engine, no cluster needed.

The same backends and engine the node worker runs (parallel ranged parts, digests checked while
writing, atomic placement, manifest last, resume), without Kubernetes or Temporal. `--param`
sets what `spec.storage.parameters` would, `--secret` what the storage Secret would hold
(`KEY=VALUE`, or `KEY=@FILE` to read the value from a file so it stays out of shell history).

Exit status: 0 when every file is verified and the manifest is written; 2 for a permanent
error (bad URI, access denied, not found, checksum wrong twice, disk too small): fix something,
then retry; 1 for a temporary one (network, throttling): just run it again, it resumes;
130 when interrupted (Ctrl-C / SIGTERM), also resumable.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from modelferry.settings import Settings

EXIT_OK, EXIT_TEMPORARY, EXIT_PERMANENT, EXIT_INTERRUPTED = 0, 1, 2, 130
PLAIN_INTERVAL = 5.0  # seconds between progress lines when stderr is not a terminal
MAX_FILE_LINES = 8


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "pull",
        help="download one model into a local directory (no cluster needed)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "uri", help="hf://org/repo[@rev], s3://..., oci://..., pvc://claim/path, vendor://..."
    )
    parser.add_argument("--path", required=True, type=Path, help="the model directory to fill")
    parser.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="a storage parameter"
    )
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="KEY=VALUE|KEY=@FILE",
        help="a storage Secret key (repeatable; @FILE reads the value from a file, off the command line)",
    )
    parser.add_argument("--concurrency", type=_positive_int, default=4, help="files in flight (default 4)")
    parser.add_argument("--multipart-concurrency", type=_positive_int, default=4, help="parts per file (4)")
    parser.add_argument("--download-retry", type=_non_negative_int, default=3, help="retries per part (3)")
    parser.add_argument("--num-download-worker", type=_positive_int, default=5, help="models at once (5)")
    parser.add_argument("--stall-timeout", type=_positive_float, default=60.0, help="seconds without bytes")
    parser.add_argument(
        "--connect-timeout", type=_positive_float, default=10.0, help="seconds to connect (10)"
    )
    parser.add_argument(
        "--read-timeout", type=_positive_float, default=None, help="seconds one read may see no byte (stall)"
    )
    parser.add_argument(
        "--pvc", action="append", default=[], metavar="CLAIM=DIR", help="where a claim is mounted"
    )
    parser.add_argument("--hf-endpoint", default=None, help="a Hub mirror (default: $HF_ENDPOINT or the Hub)")
    parser.add_argument("--rehash", action="store_true", help="re-hash files kept from an earlier run")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--verbose", action="store_true", help="log retries and other details")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from activities.node_options import backend_settings, download_options
    from activities.storage.diskspace import human_bytes
    from activities.storage.engine import (
        DownloadCancelledError,
        download_model,
        download_slots,
        list_with_retries,
    )
    from activities.storage.registry import open_backend
    from modelferry.errors import ModelferryError
    from modelferry.storage_uri import parse_storage_uri

    _configure_logging(quiet=args.quiet, verbose=args.verbose)
    cancel = threading.Event()
    try:
        params = _pairs(args.param, flag="--param")
        secret = _secrets(args.secret)
        settings = pull_settings(args, mounts=_pairs(args.pvc, flag="--pvc"))
        uri = parse_storage_uri(args.uri, parameters=params)
        download_slots(settings.download.num_download_worker)
        options = dataclasses.replace(download_options(settings), rehash_existing=args.rehash)
        restore = _cancel_on_signals(cancel)
        backend = open_backend(uri, parameters=params, secret=secret, settings=backend_settings(settings))
        display = _Display(stream=sys.stderr, quiet=args.quiet)
        try:
            listing = list_with_retries(backend, options=options, cancel=cancel)
            display.start(backend.describe(), {f.name: f.size for f in listing.files})
            result = download_model(
                backend,
                args.path,
                options=options,
                on_progress=display.update,
                cancel=cancel,
                listing=listing,
            )
        finally:
            display.close()
            backend.close()
            restore()
    except DownloadCancelledError:
        print("modelferry pull: interrupted; run the same command again to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ModelferryError as error:
        kind = "error" if not error.retryable else "temporary error (run it again to resume)"
        print(f"modelferry pull: {kind}: {_one_line(error.message)}", file=sys.stderr)
        return EXIT_TEMPORARY if error.retryable else EXIT_PERMANENT
    except OSError as error:
        print(f"modelferry pull: error: {_one_line(str(error))}", file=sys.stderr)
        return EXIT_TEMPORARY
    if not args.quiet:
        rate = human_bytes(result.bytes_transferred / result.elapsed if result.elapsed > 0 else 0.0)
        print(
            f"pulled {backend.describe()} into {args.path}: {len(result.files)} files, "
            f"{human_bytes(result.total_bytes)} verified, "
            f"{human_bytes(result.bytes_transferred)} transferred in {result.elapsed:.1f}s ({rate}/s)"
        )
    return EXIT_OK


# --- arguments ---------------------------------------------------------------------------------


def pull_settings(args: argparse.Namespace, *, mounts: Mapping[str, str]) -> Settings:
    """`pull` reads no config file: its flags are the `download` and `node` settings a worker's
    config holds, so the worker's functions (`activities.node_options`) turn them into options."""
    from modelferry.settings import load_settings

    return load_settings(
        environ={},
        overrides={
            "download.concurrency": args.concurrency,
            "download.multipart_concurrency": args.multipart_concurrency,
            "download.download_retry": args.download_retry,
            "download.num_download_worker": args.num_download_worker,
            "download.stall_timeout": args.stall_timeout,
            "download.connect_timeout": args.connect_timeout,
            # Unless told otherwise a read may stay silent as long as a part may stall.
            "download.read_timeout": args.read_timeout or args.stall_timeout,
            "node.hf_endpoint": args.hf_endpoint or os.environ.get("HF_ENDPOINT") or None,
            "node.pvc_mounts": dict(mounts),
        },
    )


def _pairs(items: list[str], *, flag: str) -> dict[str, str]:
    from modelferry.errors import InvalidSpecError

    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidSpecError(f"{flag} {item.split('=')[0]!r}: expected KEY=VALUE")
        pairs[key] = value
    return pairs


def _secrets(items: list[str]) -> dict[str, str] | None:
    from modelferry.errors import InvalidSpecError

    if not items:
        return None
    secret: dict[str, str] = {}
    for key, value in _pairs(items, flag="--secret").items():
        if value.startswith("@"):
            try:
                value = Path(value[1:]).read_text().rstrip("\r\n")
            except OSError as error:
                raise InvalidSpecError(f"--secret {key}: cannot read {value[1:]}: {error.strerror}") from None
        secret[key] = value
    return secret


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _configure_logging(*, quiet: bool, verbose: bool) -> None:
    level = logging.INFO if verbose else logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("activities.storage").setLevel(logging.CRITICAL if quiet else level)
    for noisy in ("httpx2", "httpx", "urllib3", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)


def _cancel_on_signals(cancel: threading.Event) -> Any:
    """SIGINT/SIGTERM set `cancel` (the engine stops within ~0.1 s); returns a restore callable."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        cancel.set()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


# --- progress display --------------------------------------------------------------------------


class _Display:
    """A bar per model plus per-file lines on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, *, stream: TextIO, quiet: bool) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self.sizes: Mapping[str, int] = {}
        self.drawn = 0
        self.last_plain = 0.0
        self.title = ""

    def start(self, title: str, sizes: Mapping[str, int]) -> None:
        self.title, self.sizes = title, sizes
        self.last_plain = time.monotonic()

    def update(self, progress: Any) -> None:
        if self.quiet:
            return
        from activities.storage.diskspace import human_bytes

        total = progress.bytes_total or 1
        percent = 100.0 * progress.bytes_done / total
        eta = "" if progress.eta_seconds is None else f" ETA {_duration(progress.eta_seconds)}"
        summary = (
            f"{percent:5.1f}% {human_bytes(progress.bytes_done)}/{human_bytes(progress.bytes_total)} "
            f"files {progress.files_done}/{progress.files_total} "
            f"{human_bytes(progress.bytes_per_second)}/s{eta}"
        )
        if not self.tty:
            now = time.monotonic()
            if now - self.last_plain >= PLAIN_INTERVAL:
                self.last_plain = now
                print(f"progress: {summary}", file=self.stream, flush=True)
            return
        width = 30
        filled = int(width * progress.bytes_done / total)
        lines = [f"{self.title}", f"[{'#' * filled}{'.' * (width - filled)}] {summary}"]
        for name in progress.current_files[:MAX_FILE_LINES]:
            size = self.sizes.get(name, 0) or 1
            done = progress.partial_bytes.get(name, 0)
            lines.append(
                f"  {100.0 * done / size:5.1f}% {human_bytes(done):>10} / {human_bytes(size):<10} {name}"
            )
        if len(progress.current_files) > MAX_FILE_LINES:
            lines.append(f"  ... and {len(progress.current_files) - MAX_FILE_LINES} more")
        erase = f"\x1b[{self.drawn}F\x1b[J" if self.drawn else ""
        self.stream.write(erase + "\n".join(lines) + "\n")
        self.stream.flush()
        self.drawn = len(lines)

    def close(self) -> None:
        self.drawn = 0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
