"""A stand-in registered as "ModelWorkflow": the admin Updates' names, types and validators, and
the `nodes` and `state` queries, over a fixed set of node outcomes. The CLI and watcher tests talk
to it on a real Temporal dev server; the real workflow's end-to-end tests live with the workflows.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from modelferry.messages import AdminAction, AdminPlan, AdminRequest, NodeOutcome
from modelferry.names import UPDATE_REDOWNLOAD, UPDATE_RETRY, UPDATE_ROLLBACK


@workflow.defn(name="ModelWorkflow")
class StandInModelWorkflow:
    @workflow.init
    def __init__(self, nodes: dict[str, NodeOutcome]) -> None:
        # From the input, so an Update that arrives with the start sees the nodes.
        self._nodes = dict(nodes)
        self._state = "Ready" if all(n.state == "Ready" for n in nodes.values()) else "Failed"
        self._tokens: set[str] = set()
        self.requests: list[AdminRequest] = []
        self._done = False

    @workflow.run
    async def run(self, nodes: dict[str, NodeOutcome]) -> str:
        await workflow.wait_condition(lambda: self._done)
        return self._state

    @workflow.signal(name="finish")
    def finish(self) -> None:
        self._done = True

    @workflow.query(name="nodes")
    def nodes(self) -> dict[str, NodeOutcome]:
        return dict(self._nodes)

    @workflow.query(name="state")
    def state(self) -> str:
        return self._state

    @workflow.query(name="requests")
    def admin_requests(self) -> list[AdminRequest]:
        return list(self.requests)

    def _check_nodes(self, request: AdminRequest) -> list[str]:
        unknown = [n for n in request.nodes if n not in self._nodes]
        if unknown:
            raise ApplicationError(
                f"unknown node(s) {', '.join(unknown)}; the model is on {', '.join(self._nodes)}"
            )
        return list(request.nodes) or sorted(self._nodes)

    def _plan(
        self, action: AdminAction, request: AdminRequest, nodes: list[str], **extra: object
    ) -> AdminPlan:
        if request.token and request.token in self._tokens:
            return AdminPlan(action=action, already_handled=True, message="already handled")
        if request.token:
            self._tokens.add(request.token)
        self.requests.append(request)
        return AdminPlan(action=action, nodes=nodes, message=f"{action.value} {', '.join(nodes)}", **extra)  # type: ignore[arg-type]

    @workflow.update(name=UPDATE_REDOWNLOAD)
    async def redownload(self, request: AdminRequest) -> AdminPlan:
        return self._plan(AdminAction.REDOWNLOAD, request, self._check_nodes(request))

    @redownload.validator
    def _validate_redownload(self, request: AdminRequest) -> None:
        self._check_nodes(request)

    @workflow.update(name=UPDATE_ROLLBACK)
    async def rollback(self, request: AdminRequest) -> AdminPlan:
        nodes = self._check_nodes(request)
        to = {n: request.to_version or (self._nodes[n].kept_versions or [""])[0] for n in nodes}
        return self._plan(AdminAction.ROLLBACK, request, nodes, to_version=to)

    @rollback.validator
    def _validate_rollback(self, request: AdminRequest) -> None:
        for node in self._check_nodes(request):
            kept = self._nodes[node].kept_versions
            if request.to_version and request.to_version not in kept:
                raise ApplicationError(
                    f"version {request.to_version} is not kept on {node} (kept: {', '.join(kept) or 'none'})"
                )
            if not kept:
                raise ApplicationError(f"no version is kept on {node}")

    @workflow.update(name=UPDATE_RETRY)
    async def retry(self, request: AdminRequest) -> AdminPlan:
        nodes = [n for n in self._check_nodes(request) if self._nodes[n].state == "Failed"]
        return self._plan(AdminAction.RETRY, request, nodes)

    @retry.validator
    def _validate_retry(self, request: AdminRequest) -> None:
        if not any(self._nodes[n].state == "Failed" for n in self._check_nodes(request)):
            raise ValueError("nothing failed to retry")
