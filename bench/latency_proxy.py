#!/usr/bin/env python3
"""The benchmark's latency mode: one `FaultProxy` with latency, in its own process.

``bench/run.py --rtt-ms 50`` starts this next to its Pebble and points every tool's ACME
traffic at it, so acmedryrun, certbot and lego all talk to a CA 25 ms away (one way):
each request/response costs one round trip, each new connection its TCP and TLS round
trips too (the model is `FaultProxy`'s, see "Latency" in acmedryrun/testing/_faultproxy.py).
Pebble's validation traffic to the tools' http-01 responders does not pass through it.

Why a process of its own: the proxy's handler threads must not share a GIL with the
in-process ``dry_run()`` the benchmark measures, nor with the benchmark's bookkeeping.

Usage (run.py does this)::

    python bench/latency_proxy.py UPSTREAM_DIRECTORY UPSTREAM_CA LATENCY_S LOG_FILE

It prints one JSON line to stdout, ``{"directory_url", "ca_bundle", "port"}``, then
appends one line per event to LOG_FILE, flushed at once (run.py counts them per run):

    conn TLS_VERSION RESUMED(0|1) SETUP_DELAY_S
    req ENDPOINT METHOD STATUS

and serves until its stdin closes (its parent went away) or SIGTERM; last, it writes
``cpu USER_S SYSTEM_S`` (its own CPU time) to LOG_FILE.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
import threading
from types import FrameType
from typing import TextIO

from acmedryrun.testing import FaultProxy
from acmedryrun.testing._faultproxy import ProxyConnection, ProxyEvent


def serve(upstream: str, upstream_ca: str, latency: float, log: TextIO) -> None:
    """Run the proxy until stdin closes or SIGTERM arrives."""
    lock = threading.Lock()

    def write(line: str) -> None:
        with lock:
            log.write(line + "\n")
            log.flush()

    def on_event(event: ProxyEvent) -> None:
        write(f"req {event.endpoint} {event.method} {event.status}")

    def on_connection(conn: ProxyConnection) -> None:
        write(f"conn {conn.tls_version} {int(conn.resumed)} {conn.setup_delay:.4f}")

    stop = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def watch_stdin() -> None:
        sys.stdin.read()  # returns when the parent closes our stdin, or dies
        stop.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    threading.Thread(target=watch_stdin, daemon=True).start()
    # upstream_keepalive: one kept connection to Pebble per client connection, so the
    # proxy does not add a loopback TLS handshake (and its CPU) to every request.
    with FaultProxy(upstream, upstream_ca_bundle=upstream_ca, latency=latency,
                    upstream_keepalive=True, on_event=on_event,
                    on_connection=on_connection) as proxy:
        print(json.dumps({"directory_url": proxy.directory_url, "ca_bundle": proxy.ca_bundle,
                          "port": proxy.port}), flush=True)
        stop.wait()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    write(f"cpu {usage.ru_utime:.3f} {usage.ru_stime:.3f}")


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    upstream, upstream_ca, latency, log_path = argv
    with open(log_path, "a", encoding="utf-8") as log:
        serve(upstream, upstream_ca, float(latency), log)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
