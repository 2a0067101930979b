"""Every flag and positional of every `modelferry` command says what it is for in `--help`
(a new user reads the help before the README). Walks the whole argparse tree."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from modelferry.cli import build_parser


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_argument_has_help_text() -> None:
    missing = [
        f"{path} {'/'.join(action.option_strings) or action.dest}"
        for path, action in _walk(build_parser(), "modelferry")
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS
    ]
    assert missing == []


def test_every_command_has_a_one_line_summary() -> None:
    def commands(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, str | None]]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                for name, sub in action.choices.items():
                    yield f"{path} {name}", helps.get(name)
                    yield from commands(sub, f"{path} {name}")

    assert [path for path, text in commands(build_parser(), "modelferry") if not text] == []


def test_the_walk_sees_the_whole_tree() -> None:
    seen = {
        (path, opt) for path, action in _walk(build_parser(), "modelferry") for opt in action.option_strings
    }
    assert ("modelferry config show", "--download-retry") in seen
    assert ("modelferry worker", "--models-root-dir") in seen
