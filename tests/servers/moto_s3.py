"""A real S3 API for tests: `moto_server` as a subprocess on 127.0.0.1, stopped on exit.

moto answers like S3 for what the s3 backend uses (ListObjectsV2, HeadObject with PartNumber and
ChecksumMode, ranged GetObject with If-Match, S3 error codes), but it cannot inject network
faults; `s3_fault_proxy` sits in front of it for those.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

REGION = "us-east-1"
# moto accepts any credentials unless IAM auth is switched on; these are fakes on purpose.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_moto_server(*, env: dict[str, str] | None = None, timeout: float = 30.0) -> Iterator[str]:
    """Start `moto_server`, yield its endpoint URL, kill it (and only it) afterwards."""
    executable = Path(sys.executable).with_name("moto_server")
    port = free_port()
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start listening") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def s3_client(endpoint: str, **credentials: str) -> Any:
    """A plain boto3 client for setting up buckets and objects (not the code under test)."""
    creds = credentials or CREDENTIALS
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )
