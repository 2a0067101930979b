"""CLI subcommands. Each module exposes `register(subparsers)` which adds its parser and sets
`func` to a callable taking the parsed args and returning an exit code."""
