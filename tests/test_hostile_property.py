"""Property: whatever one endpoint of the CA does, every invariant of issue 12 holds.

Hypothesis draws a mutation from :data:`hostile.mutations.MUTATIONS` (structure,
types, problems, sizes, encodings, headers, redirects, slowness, certificates)
and an endpoint it applies to (directory, nonce, account, order, authz,
challenge, finalize, order_poll, certificate, deactivate, and the production
twin's directory), runs one ``dry_run`` through a `HostileProxy` in front of a
real Pebble, and checks :func:`hostile.invariants.check_invariants`.

CI mode (default): ``ACMEDRYRUN_HYPOTHESIS_EXAMPLES`` examples (25), derandomized
(the same cases every run), no shrinking, no example database, each run with a
2 s deadline.  Long mode, to hunt::

    ACMEDRYRUN_HYPOTHESIS_EXAMPLES=500 .venv/bin/pytest \\
        tests/test_hostile_property.py -p no:cacheprovider

draws at random and shrinks a failure to its simplest case (about 20 minutes);
``ACMEDRYRUN_HOSTILE_KINDS=sizes,slowness`` limits the draw to those classes and
``ACMEDRYRUN_HOSTILE_TIMEOUT`` changes each run's deadline (default 2 s).
``PYTHONPATH=tests python -m hostile.survey`` runs every pair once instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hostile.invariants import DEFAULT_TIMEOUT, assert_holds, run_case
from hostile.mutations import KINDS, MUTATIONS, Mutation
from hostile.proxy import TlsMaterial
from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

from acmedryrun.testing import LocalPebble

EXAMPLES = int(os.environ.get("ACMEDRYRUN_HYPOTHESIS_EXAMPLES", "25"))
LONG = "ACMEDRYRUN_HYPOTHESIS_EXAMPLES" in os.environ
#: ``ACMEDRYRUN_HOSTILE_KINDS=sizes,slowness``: draw only from these classes (a long run
#: shrinks every failure to the simplest one, so hunt one class at a time once the
#: simple ones are fixed).
DRAWN = tuple(m for m in MUTATIONS if m.kind in (
    os.environ.get("ACMEDRYRUN_HOSTILE_KINDS") or ",".join(KINDS)).split(","))


@pytest.fixture(scope="module")
def upstream() -> Iterator[LocalPebble]:
    """One Pebble for the module.  ``always_valid``: Pebble 2.4.0 deadlocks (every later
    newAccount/newOrder hangs) when an authorization is deactivated while a failing
    validation of it is still running, which runs that stop early provoke."""
    with LocalPebble(always_valid=True) as p:
        yield p


@pytest.fixture(scope="module")
def tls() -> Iterator[TlsMaterial]:
    with TlsMaterial() as material:
        yield material


#: A mutation (uniformly over the catalogue), then one of the endpoints it applies to.
cases = st.sampled_from(DRAWN).flatmap(
    lambda m: st.tuples(st.just(m), st.sampled_from(m.endpoints)))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not LONG,
    database=None,
    phases=(Phase.explicit, Phase.generate, *((Phase.shrink,) if LONG else ())),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=LONG,
    report_multiple_bugs=False,
)
@given(case=cases)
def test_no_ca_behaviour_breaks_an_invariant(upstream: LocalPebble, tls: TlsMaterial,
                                             case: tuple[Mutation, str]) -> None:
    """No exception, deadline + 2 s, no false success, no client blame, no production."""
    mutation, endpoint = case
    event(mutation.kind)
    outcome = run_case(upstream, mutation, endpoint, tls=tls, timeout=DEFAULT_TIMEOUT)
    note(outcome.describe())
    if not outcome.proxy.fired:
        return  # nothing to change in this exchange (e.g. no such field): vacuous, fine
    assert_holds(outcome)
