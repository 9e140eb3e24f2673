"""A hostile CA for acmedryrun's tests (issue 12): a mutating proxy in front of a real Pebble.

* :mod:`hostile.proxy` -- `HostileProxy`, an HTTPS proxy on loopback that applies one
  mutation to one endpoint and writes its replies byte by byte (huge, slow, malformed);
* :mod:`hostile.mutations` -- the catalogue of mutations, by class (structure, types,
  problems, sizes, encodings, headers, redirects, slowness, certificates);
* :mod:`hostile.certtools` -- PEM/DER surgery on issued chains, and a strict chain oracle;
* :mod:`hostile.netguard` -- an audit hook that keeps the process on loopback and records
  every attempt to reach production (or anything else off loopback);
* :mod:`hostile.invariants` -- `check_invariants` and `run_case`, the one definition of
  "nothing a CA sends can crash, stall, fake a success or reach production";
* :mod:`hostile.launch` -- runs the CLI in a subprocess under the same audit hook;
* :mod:`hostile.survey` -- every (mutation, endpoint) once, as a table (``python -m``).

Running (from the repository root)::

    .venv/bin/pytest tests/test_hostile_cases.py tests/test_hostile_property.py  # ~2 min
    ACMEDRYRUN_HYPOTHESIS_EXAMPLES=500 .venv/bin/pytest --runxfail \\
        tests/test_hostile_property.py                                          # long mode
    PYTHONPATH=tests .venv/bin/python -m hostile.survey --json survey.jsonl      # ~8 min

Cases that fail on today's main are ``xfail(strict=True, raises=InvariantViolated)``;
``--runxfail`` shows each failure with the run's whole story (verdict, violations,
traffic through the proxy, traceback).
"""
