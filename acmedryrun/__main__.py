"""``python -m acmedryrun``: the CLI."""

from acmedryrun.cli import entry

entry()
