"""``python -m acmedryrun``: the CLI."""

from acmedryrun.cli import main

raise SystemExit(main())
