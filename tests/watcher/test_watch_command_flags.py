"""`modelferry watch`: the flags parse, and the given ones override settings."""

from __future__ import annotations

import argparse

from modelferry.commands import watch


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="modelferry")
    watch.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["watch", *argv])


def test_flags_become_settings_overrides() -> None:
    args = parse(
        "--kubeconfig", "/tmp/kc",
        "--temporal-address", "temporal:7233",
        "--temporal-namespace", "models",
        "--agent-namespace", "ferry",
        "--no-leader-election",
    )  # fmt: skip
    assert args.func is watch.run
    assert args.no_leader_election is True
    assert watch.settings_overrides(args) == {
        "temporal.address": "temporal:7233",
        "temporal.namespace": "models",
        "kube.kubeconfig": "/tmp/kc",
        "kube.agent_namespace": "ferry",
    }


def test_defaults_leave_settings_alone() -> None:
    args = parse()
    assert watch.settings_overrides(args) == {}
    assert args.no_leader_election is False
    assert args.resync_seconds == 300.0
    assert args.identity is None  # resolved when the command runs (POD_NAME, else the hostname)
