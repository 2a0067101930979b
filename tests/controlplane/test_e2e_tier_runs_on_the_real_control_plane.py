"""A representative part of the e2e tier (tests/e2e), the same test functions, run on the real
control plane instead of the embedded API server: Nodes registered by process kubelets, deploy/rbac
applied, the watcher and the control worker authenticating as `modelferry-controller`, the static
node workers as `modelferry-node-worker`, the test itself as a cluster admin.

- a model becomes Ready on the eligible nodes of three (placement by nodeSelector, relabel moves
  it), is cleaned up on delete, and an invalid one fails naming the field;
- permanent source errors fail fast with the reason, and a Secret named by storageKey, read by the
  node worker's own identity, opens a gated repo;
- restarts and removals are idempotent (a restarted watcher, a vanished node, continue-as-new);
- life after Ready: an update and a rollback by `modelferry rollback`, with the shipped processes
  (`modelferry controller` leader-elected, `modelferry worker`) instead of `modelferry dev`.

One control plane for the module (tests/e2e/fixtures.py); each test has its own nodes and Temporal
dev server and leaves the install as it found it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.fixtures import model_source, one_node_cluster, real_product, three_node_cluster
from tests.e2e.test_a_ready_model_is_updated_rolled_back_and_redownloaded_in_place import (
    hub,
    test_rollback_by_cli_restores_the_previous_bytes_and_refuses_an_unknown_version,
)
from tests.e2e.test_model_becomes_ready_on_eligible_nodes import (
    test_apply_to_ready_then_delete_cleans_up,
    test_invalid_resource_fails_with_the_field_named,
    test_placement_follows_node_labels,
)
from tests.e2e.test_permanent_errors_fail_fast_with_the_reason import (
    test_gated_and_missing_repos_fail_with_reason_and_a_secret_token_opens_the_gate,
)
from tests.e2e.test_restarts_and_removals_are_idempotent import (
    test_delete_completes_when_the_node_is_gone,
    test_long_lived_workflow_continues_as_new_and_keeps_its_state,
    test_watcher_restart_makes_no_duplicate_workflows,
)

from .product import Product, ProductStack

pytestmark = pytest.mark.controlplane

__all__ = [
    "hub",
    "model_source",
    "one_node_cluster",
    "real_product",
    "test_apply_to_ready_then_delete_cleans_up",
    "test_delete_completes_when_the_node_is_gone",
    "test_gated_and_missing_repos_fail_with_reason_and_a_secret_token_opens_the_gate",
    "test_invalid_resource_fails_with_the_field_named",
    "test_long_lived_workflow_continues_as_new_and_keeps_its_state",
    "test_placement_follows_node_labels",
    "test_rollback_by_cli_restores_the_previous_bytes_and_refuses_an_unknown_version",
    "test_watcher_restart_makes_no_duplicate_workflows",
    "three_node_cluster",
]


@pytest.fixture(scope="module")
def e2e_kube() -> str:
    return "real"


@pytest.fixture
def stack(real_product: Product, tmp_path: Path) -> Iterator[ProductStack]:
    """Per test, not per module as in tests/e2e: its Node must not outlive the test that uses it."""
    product_stack = ProductStack(tmp_path / "home", product=real_product)
    started = time.monotonic()
    product_stack.start()
    print(f"\nproduct up in {time.monotonic() - started:.1f}s")
    try:
        yield product_stack
    finally:
        product_stack.stop()
