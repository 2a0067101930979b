"""The deploy tests: most are static (kustomize renders, the Dockerfile and the compose file
parsed); the ones marked `controlplane` run on the real control plane tier, reusing its fixtures.

The tier's own skip hook lives in tests/controlplane/conftest.py and applies to that directory
only; the hook below applies it to this directory's `controlplane` tests, so they skip on one line
without the binaries, like the tier, while the static tests here still run.
"""

from __future__ import annotations

import pytest

from tests.controlplane.conftest import control_plane, kube_bin, kubectl  # noqa: F401
from tests.controlplane.conftest import pytest_runtest_setup as _controlplane_setup


def pytest_configure(config: pytest.Config) -> None:
    # Also registered by tests/controlplane/conftest.py, which is not loaded when only this
    # directory runs.
    config.addinivalue_line(
        "markers", "controlplane: against a real etcd, kube-apiserver, controller manager and scheduler"
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("controlplane") is not None:
        _controlplane_setup(item)
