"""`modelferry validate FILE|DIR|- ...`: check BaseModel, ClusterBaseModel and FineTunedWeight manifests.

Directories are searched recursively for *.yaml, *.yml and *.json (hidden directories such as
.git are skipped); a file named explicitly is read whatever its name; `-` reads standard input.
One line per problem, `<file>[#<doc>] <kind>/<name>: <field>: <rule>`, then a summary line.
Documents of other kinds are skipped, not invalid. The rules live in `modelferry.spec.documents`.

Exit status: 0 when at least one model resource was found and all are valid, 1 when anything is
invalid (a syntax error or an unreadable file included), 2 when there was nothing to validate.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

_EXTENSIONS = (".yaml", ".yml", ".json")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "validate",
        help="validate OME model resource manifests",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="FILE|DIR|-", help="manifests to check")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also print a line for each valid or skipped document"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelferry.spec.documents import Outcome, Summary, unreadable, validate_text

    reports = []
    for source, path in _inputs(args.paths):
        try:
            text = sys.stdin.read() if path is None else path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reports.append(unreadable(source, f"cannot read: {getattr(e, 'strerror', None) or e}"))
            continue
        is_json = path is not None and path.suffix.lower() == ".json"
        reports.extend(validate_text(text, source=source, is_json=is_json))
    for report in reports:
        if args.verbose or report.outcome is Outcome.INVALID:
            for line in report.lines():
                print(line)
    summary = Summary.of(reports)
    print(summary.line())
    if summary.exit_code == 2:
        print("nothing to validate: no ome.io model resources found", file=sys.stderr)
    return summary.exit_code


def _inputs(arguments: list[str]) -> Iterator[tuple[str, Path | None]]:
    """(label, path) for every file to read; path None means standard input."""
    for argument in arguments:
        if argument == "-":
            yield "<stdin>", None
            continue
        path = Path(argument)
        if path.is_dir():
            yield from ((str(p), p) for p in _walk(path))
        else:
            yield argument, path  # a missing file is reported by the read


def _walk(root: Path) -> Iterator[Path]:
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        for name in sorted(files):
            if name.lower().endswith(_EXTENSIONS):
                yield Path(directory) / name
