"""Run acmedryrun's CLI in this (sub)process under :mod:`hostile.netguard`'s audit hook.

``python tests/hostile/launch.py --net-log FILE [--umask OCTAL] -- check ...``
runs ``acmedryrun.cli.main(["check", ...])`` exactly as ``python -m acmedryrun``
would, except that every network attempt of the process is recorded (loopback
included) and every one off loopback is blocked.  At exit FILE holds
``{"events": [[event, host, port], ...], "contacts": [...]}``: the proof that a
refused input sent zero requests, or which production host a run tried.
``--umask`` sets the process umask first (issue 12: "under umask 777 the account
key is created mode 0000").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hostile import netguard


def main() -> int:
    """Parse the launcher's options, then run the CLI with the rest; returns its exit code."""
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="launch.py")
    parser.add_argument("--net-log", required=True)
    parser.add_argument("--umask")
    own = parser.parse_args(argv[:split])
    if own.umask is not None:
        os.umask(int(own.umask, 8))
    code = 70
    with netguard.record() as rec:
        try:
            from acmedryrun.cli import main as cli_main

            code = cli_main(argv[split + 1:])
        finally:
            os.umask(0o022)  # the log itself is the harness's, not the run's
            Path(own.net_log).write_text(json.dumps({
                "events": [list(e) for e in rec.events],
                "contacts": [str(c) for c in rec.contacts],
                "production": [str(c) for c in rec.production],
            }))
    return code


if __name__ == "__main__":
    sys.exit(main())
