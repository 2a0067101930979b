"""A Kubernetes client for `ensure_node_worker` in unit tests: every node exists, no Job does yet,
and each Job created is kept in `created` (its body)."""

from __future__ import annotations

from typing import Any

from modelferry.errors import KubeNotFoundError


class NoJobsYet:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def node_exists(self, name: str) -> bool:
        return True

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        raise KubeNotFoundError(name)

    def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append(body)
        return body
