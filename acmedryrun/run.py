"""The orchestrator: one dry run, straight through, recorded step by step.

    preflight -> directory -> production checks -> nonce -> account -> order
    -> validation -> finalize -> certificate -> cleanup

:meth:`Run.run` is the whole sequence; each phase is a method a few lines long
that calls the protocol steps (:mod:`acmedryrun.acme_steps`), the local checks
(:mod:`acmedryrun.preflight`) and the production comparison
(:mod:`acmedryrun.production`).  :meth:`Run.step` is the one place a step is timed
and recorded, and :meth:`Run.fail` the one place an observation becomes the
run's fatal problem (through the pure :func:`acmedryrun.classify.classify`, with
the :class:`~acmedryrun.classify.Context` the run has gathered).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn, TypeVar

from acmedryrun import acme_steps as acme
from acmedryrun import certs, directories
from acmedryrun import classify as c
from acmedryrun.classify import RequestFailed
from acmedryrun.deadline import Deadline, Party
from acmedryrun.errors import Cancelled, UsageError
from acmedryrun.options import Plan
from acmedryrun.preflight import (
    CaaFindings,
    NameFindings,
    Preflight,
    accounturi_problems,
    check_fit,
)
from acmedryrun.production import ari, compare, twin
from acmedryrun.report import (
    Cause,
    Event,
    EventKind,
    Problem,
    ProductionTwin,
    Report,
    RequestStats,
    Retry,
    Severity,
    SolverErrorKind,
    Step,
    StepResult,
    StepStatus,
    Validation,
)
from acmedryrun.solvers import Challenge, Solver, SolverFailure
from acmedryrun.transport import Transport
from acmedryrun.urls import Url

if TYPE_CHECKING:
    from josepy.jwk import JWK

T = TypeVar("T")
R = TypeVar("R")

#: The steps of a run in order; those a run never reached are reported as skipped.
STEPS = (Step.PREFLIGHT, Step.DIRECTORY, Step.NONCE, Step.ACCOUNT, Step.ORDER,
         Step.AUTHORIZATION, Step.CHALLENGE, Step.FINALIZE, Step.CERTIFICATE)

#: Adaptive polling: quick when the CA is quick, polite when not.
POLL_FIRST = 0.01
POLL_FACTOR = 1.5
POLL_CAP = 5.0
#: While the order stays pending, the answered authorizations are read too: first after
#: this many seconds, then twice as far apart, up to the cap (RFC 8555 section 7.5.1:
#: some CAs decide in the authorization and leave the order pending).
AUTHZ_CHECK_FIRST = 1.0
AUTHZ_CHECK_CAP = 8.0
#: Parallel request streams for a many-name order (authorizations, challenge answers,
#: deactivations): each has its own connection and nonce (issue 18).
STREAMS = 8

#: A hook killed this close to the run's deadline was cut short by it (hooks are killed
#: a little before the deadline, so that they never outlive it).
DEADLINE_CUT = 1.0


class ProductionRefused(UsageError):
    """The directory turned out to be production's (by its endpoints), and that is not allowed."""


class StopRun(Exception):
    """Raised inside a step to end the run; the problem is already recorded."""


class _Outcome:
    """How a step ends: ok unless its body (or a failure) says otherwise."""

    __slots__ = ("status",)

    def __init__(self) -> None:
        self.status = StepStatus.OK


def _builtin(solver: Solver) -> bool:
    """True for acmedryrun's own solvers, whose unexpected exceptions are bugs."""
    return type(solver).__module__.startswith("acmedryrun.")


class Run:
    """One dry run of a :class:`~acmedryrun.options.Plan`.

    Args:
        plan: What to run.
        on_event: Receives progress events.
        deadline: The run's deadline (its cancel ends the run).
    """

    def __init__(self, plan: Plan, on_event: Callable[[Event], None],
                 deadline: Deadline) -> None:
        self.plan = plan
        self.on_event = on_event
        self.deadline = deadline
        self.started = time.monotonic()
        self.problems: list[Problem] = []
        self.retries: list[Retry] = []
        self.steps: list[StepResult] = []
        self.transport = Transport(verify=plan.verify, deadline=deadline,
                                   allow_production=plan.allow_production,
                                   pool=plan.connections)
        self.client: acme.AcmeClient | None = None
        self.preflight: Preflight | None = None
        self.names = NameFindings()
        self.caa = CaaFindings()
        self.account_url: str | None = None
        self.chain_pem: bytes | None = None
        self.order: acme.Order | None = None
        self.run_authzs: list[Url] = []
        #: Per identifier as ordered: the challenge type the CA validated it with today.
        self.fresh: dict[str, str] = {}
        self.prepared: list[Challenge] = []
        self.self_check_passed: frozenset[str] = frozenset()
        self.self_check_failed: frozenset[str] = frozenset()
        self.caa_production_account: frozenset[str] = frozenset()
        self.account_created = False
        self.twin = ProductionTwin(plan.target.reference_url)
        self.comparison = compare.TwinComparison()
        self._reach: c.Reach | None = None
        self._ct_thread: threading.Thread | None = None
        self._ct_problems: list[Problem] | None = None
        self._ct_reasons: tuple[str, ...] = ()

    # -- the sequence ---------------------------------------------------------------------

    def run(self) -> Report:
        """Run every step, clean up, and report.

        Raises:
            Cancelled: the deadline's cancel was set (the run has no verdict).
            ProductionRefused: the directory serves a production CA's endpoints.
        """
        try:
            if self.check_locally():
                self.start_ct()
                directory = self.get_directory()
                self.production_checks(directory)
                self.register()
                authzs = self.place_order()
                self.validate(authzs)
                self.issue()
        except StopRun:
            pass
        except KeyboardInterrupt:
            # Stop promptly: no more requests or waits; cleanup removes what the solver
            # placed and skips the deactivations (they need the CA).
            self.deadline.cancel()
            raise
        finally:
            try:
                self.cleanup()
                self.finish_ct()
                self._leave_nonces()
            finally:
                self.transport.close()
        if self.deadline.cancelled:
            raise Cancelled("the dry run was cancelled")
        return self.report()

    # -- bookkeeping: the one place steps and problems are recorded ------------------------

    def add(self, problem: Problem) -> None:
        """Record a problem and tell the listener."""
        self.problems.append(problem)
        self.on_event(Event(EventKind.PROBLEM, problem.step, problem=problem))

    def context(self, obs: c.Observation | None = None) -> c.Context:
        """What the run knows for classifying ``obs`` (asks the twin once if that decides)."""
        ctx = c.Context(
            staging_answered=self.transport.counts.answered > 0,
            reference=self._reach,
            known_directory=self.plan.target.known is not None,
            self_check_passed=self.self_check_passed,
            self_check_failed=self.self_check_failed,
            caa_production_account=self.caa_production_account,
            account_created=self.account_created,
            spent=self.deadline.spent,
        )
        if obs is not None and c.needs_reference(obs, ctx) and self.plan.target.reference_url:
            answer = twin.fetch_directory(self.transport, self.plan.target.reference_url)
            self._reach = twin.reach_of(answer)
            ctx = dataclasses.replace(ctx, reference=self._reach)
        return ctx

    def fail(self, obs: c.Observation, step: Step, identifier: str | None = None) -> StopRun:
        """Record ``obs`` as the fatal problem of ``step``; the caller raises the result."""
        if not self.deadline.cancelled:
            self.add(c.classify(obs, step=step, identifier=identifier,
                                severity=Severity.FATAL, context=self.context(obs)))
        return StopRun()

    @contextmanager
    def step(self, step: Step) -> Iterator[_Outcome]:
        """Time a step and record how it ended; a RequestFailed becomes its fatal problem.

        The body may mark the step failed without stopping the run (cleanup does).
        """
        self.on_event(Event(EventKind.STEP_START, step))
        started = time.monotonic()
        outcome = _Outcome()
        try:
            yield outcome
        except RequestFailed as exc:
            outcome.status = StepStatus.FAILED
            raise self.fail(exc.obs, step, exc.identifier) from exc
        except BaseException:
            outcome.status = StepStatus.FAILED
            raise
        finally:
            if any(p.step is step and p.severity.decisive for p in self.problems):
                outcome.status = StepStatus.FAILED
            result = StepResult(step, outcome.status, time.monotonic() - started)
            self.steps.append(result)
            self.on_event(Event(EventKind.STEP_END, step, status=outcome.status,
                                duration_s=result.duration_s))

    def _on_retry(self, r: Retry) -> None:
        self.retries.append(r)
        self.on_event(Event(EventKind.RETRY, r.step, retry=r))

    # -- the phases -------------------------------------------------------------------------

    def check_locally(self) -> bool:
        """Preflight (or, without it, the challenge fit); False when the CA must not be asked."""
        plan, solver = self.plan, self.plan.solver
        if plan.csr is not None and plan.csr.common_name_only:
            self.add(_common_name_only(plan.csr.names))
        if not plan.preflight:
            # Even without preflight, an identifier the solver can never validate (a
            # wildcard over http-01) is not worth an order at the CA.
            for problem in check_fit(plan.idents, challenge_type=solver.challenge_type,
                                     supports_wildcard=solver.supports_wildcard,
                                     supports_ip=solver.supports_ip):
                self.add(problem)
            return not self.problems
        self.preflight = Preflight(
            resolver=plan.dns_resolver, deadline=self.deadline, known=plan.target.known,
            caa_identities=plan.caa_identities, http_port=_validation_port(solver))
        with self.step(Step.PREFLIGHT):
            for problem in self.preflight.identifiers(
                    plan.idents, challenge_type=solver.challenge_type,
                    supports_wildcard=solver.supports_wildcard, supports_ip=solver.supports_ip):
                self.add(problem)
            if not any(p.severity.decisive for p in self.problems):
                self.names = self.preflight.check_names(
                    plan.idents, challenge_type=solver.challenge_type)
                for problem in self.names.problems:
                    self.add(problem)
        return not any(p.severity.decisive for p in self.problems)

    def get_directory(self) -> acme.Directory:
        """GET the directory; refuse one that serves a production CA's endpoints."""
        self.client = acme.AcmeClient(self.transport, self._account_key(),
                                      deadline=self.deadline, on_retry=self._on_retry)
        cache, url = self.plan.run_cache, self.plan.target.url
        read = cache.directory(url) if cache is not None else None
        with self.step(Step.DIRECTORY):
            if read is not None:  # read and checked by an earlier run of the batch
                directory = self.client.directory = read
            else:
                directory = acme.get_directory(self.client, url)
                if cache is not None:
                    cache.remember_directory(url, directory)
        known = directories.by_endpoints(directory.data, directories.Kind.PRODUCTION)
        if known is not None and not self.plan.allow_production:
            raise ProductionRefused(
                f"--directory: {self.plan.target.url} serves {known.alias}'s production"
                " endpoints: a dry run there counts against real rate limits and issues a"
                " trusted certificate (pass --allow-production to do it anyway)")
        return directory

    def production_checks(self, directory: acme.Directory) -> None:
        """The directory's own meta, CAA against its identities, then the production twin.

        What the run asks for and the staging directory does not offer (a profile) is
        the client's: staging's newOrder would refuse it or silently ignore it.
        """
        profile = self.plan.profile
        if profile is not None and profile not in directory.profiles:
            raise self.fail(c.ProfileNotOffered(profile, tuple(sorted(directory.profiles))),
                            Step.DIRECTORY)
        if self.preflight is not None:
            self.caa = self.preflight.judge_caa(self.names, directory.meta,
                                                challenge_type=self.plan.solver.challenge_type)
            for problem in self.caa.problems:
                self.add(problem)
            if any(p.severity.decisive for p in self.caa.problems):
                raise StopRun
        self.compare_twin(directory)

    def compare_twin(self, directory: acme.Directory) -> None:
        """Compare staging's directory with its production twin's (read-only GETs).

        What the run uses and production lacks is a client problem (production
        would refuse it); what is merely on offer is info; a twin that cannot be
        read is a warning and never changes the staging verdict.
        """
        url = self.plan.target.reference_url
        if not url:
            return
        cache = self.plan.run_cache
        reference = cache.twin(url) if cache is not None else None
        if reference is None:
            answer = twin.fetch_directory(self.transport, url)
            if isinstance(answer, twin.TwinUnavailable):
                self.add(twin.twin_unavailable_problem(url, answer))
                self.twin = ProductionTwin(url, False, (
                    f"production ({url}) could not be compared: {answer.reason}",))
                return
            # What this run saw of production now decides its blame; a batch's earlier
            # answer does not (the network may have gone since).
            self._reach = c.Reach.DIRECTORY
            reference = answer
            if cache is not None:
                cache.remember_twin(url, reference)
        used = compare.UsedFeatures(challenge_type=self.plan.solver.challenge_type,
                                    profile=self.plan.profile, eab=self.plan.eab is not None)
        self.comparison = compare.compare_directories(directory.data, reference, used=used)
        self.twin = ProductionTwin(url, True, self.comparison.reasons)
        for problem in self.comparison.problems:
            self.add(problem)
        if self.plan.renewing is not None:
            self.add(ari.renewal_info_problem(
                ari.renewal_info(self.transport, self.plan.renewing, reference)))

    def register(self) -> None:
        """A nonce, then the account (looked up first when the key is the caller's)."""
        client, cache = self._client(), self.plan.run_cache
        assert client.directory is not None  # noqa: S101 - get_directory() ran
        new_nonce, new_account = client.directory.new_nonce.text, client.directory.new_account.text
        with self.step(Step.NONCE):
            nonce = cache.take_nonce(new_nonce) if cache is not None else None
            if nonce is not None:
                client.seed_nonce(nonce)  # left by an earlier run of the batch
            else:
                acme.new_nonce(client)
        with self.step(Step.ACCOUNT):
            thumbprint = client.key.thumbprint().hex()
            known = cache.account(new_account, thumbprint) if cache is not None else None
            account: acme.Account | None = None
            if known is not None:  # an earlier run of the batch found or made it, valid
                account, self.account_created = acme.Account(known[0], "valid"), known[1]
            else:
                account = acme.find_account(client) if self.plan.account_key_given else None
                if account is None:
                    eab = (self.plan.eab.kid, self.plan.eab.hmac_key) if self.plan.eab \
                        else None
                    account = acme.new_account(client, email=self.plan.email, eab=eab)
                    self.account_created = True
            client.kid = self.account_url = account.url
            if account.status != "valid":
                raise self.fail(c.AccountStatus(account.status), Step.ACCOUNT)
            if cache is not None and known is None:
                cache.remember_account(new_account, thumbprint, account.url,
                                       created=self.account_created)
        # CAA accounturi against the account this run got (production's differs).
        for problem in accounturi_problems(self.caa, staging_account_url=self.account_url,
                                           production_url=self.plan.target.reference_url):
            self.add(problem)
            if problem.name == "CaaAccountUriProductionOnly" and problem.identifier:
                self.caa_production_account |= {problem.identifier}

    def place_order(self) -> list[acme.Authorization]:
        """Order, and make sure every authorization needs validating today.

        A valid authorization the CA reuses proves nothing about today's setup
        (certbot issue 5116): deactivate it and order again, once.
        """
        client, idents = self._client(), [(i.type, i.value) for i in self.plan.idents]
        with self.step(Step.ORDER):
            self.order = acme.new_order(client, idents, self.plan.profile)
        with self.step(Step.AUTHORIZATION):
            authzs = self.parallel(lambda u: acme.get_authorization(client, u),
                                   self.order.authorizations)
            reused = [a for a in authzs if a.status == "valid"]
            if reused:
                self.parallel(lambda a: acme.deactivate(client, a.url, Step.AUTHORIZATION),
                              reused)
                self.order = acme.new_order(client, idents, self.plan.profile)
                authzs = self.parallel(lambda u: acme.get_authorization(client, u),
                                       self.order.authorizations)
                for a in authzs:
                    if a.status == "valid":
                        # Not validated today: staging could not test this name's setup.
                        self.add(c.classify(
                            c.AuthorizationReused("the CA reused a valid authorization even"
                                                  " after it was deactivated"),
                            step=Step.AUTHORIZATION, identifier=a.domain,
                            severity=Severity.ERROR))
            self.run_authzs = [a.url for a in authzs]
        return authzs

    def validate(self, authzs: Sequence[acme.Authorization]) -> None:
        """Answer every pending challenge at once, then wait for the CA's decision."""
        for a in authzs:
            if a.status == "invalid":
                raise self.fail(c.ValidationFailed(_error_of(a), f"{a.domain}: the"
                                " authorization was invalid before any challenge"),
                                Step.AUTHORIZATION, a.domain)
            if a.status not in ("pending", "valid"):
                raise self.fail(c.AuthorizationInvalid(
                    f"authorization for {a.domain} is {a.status} before any challenge"),
                    Step.AUTHORIZATION, a.domain)
        pending = [a for a in authzs if a.status == "pending"]
        if not pending:
            return
        with self.step(Step.CHALLENGE):
            challenges = [(a, self._challenge_for(a)) for a in pending]
            for _, ch in challenges:
                self._run_solver(self.plan.solver.prepare, ch)
            for _, ch in challenges:
                self._run_solver(self.plan.solver.perform, ch)
            if self.preflight is not None:
                checked = self.preflight.self_check([ch for _, ch in challenges])
                self.self_check_passed = checked.passed
                self.self_check_failed = frozenset(
                    p.identifier for p in checked.problems if p.identifier)
                for problem in checked.problems:
                    self.add(problem)
            refs = [next(r for r in a.challenges if r.url.text == ch.url)
                    for a, ch in challenges]
            answers = self.parallel(lambda r: acme.answer_challenge(self._client(), r), refs)
            answered = []
            for (a, _), answer in zip(challenges, answers, strict=True):
                # Some CAs validate in the POST itself and answer valid or invalid there.
                if answer.status == "invalid":
                    self._invalid(a, answer)
                if answer.status == "valid":
                    self.fresh[a.domain] = answer.type
                answered.append((a, answer))
            self.await_validation(answered)

    def _invalid(self, authz: acme.Authorization,
                 challenge: acme.ChallengeRef | None) -> NoReturn:
        """A validation the CA marked invalid: the error, read from the authorization if
        the challenge does not carry one (RFC 8555 section 7.5.1)."""
        error = challenge.error if challenge is not None else None
        if error is None:
            current = acme.get_authorization(self._client(), authz.url, step=Step.CHALLENGE)
            error = _error_of(current)
        kind = challenge.type if challenge is not None else "challenge"
        raise self.fail(c.ValidationFailed(error, f"{authz.domain}: the CA marked the {kind}"
                                           " validation invalid"), Step.CHALLENGE, authz.domain)

    def await_validation(self, answered: Sequence[tuple[acme.Authorization,
                                                        acme.ChallengeRef]]) -> None:
        """Poll the order until the CA has decided; read the authorizations when it lingers.

        RFC 8555 section 7.1.6: the order turns ``ready`` once every authorization
        is valid and ``invalid`` once one fails, so one request per round covers them
        all.  Not every CA moves the order (acme2certifier leaves it pending with an
        invalid authorization; step-ca keeps the challenge pending with an error), so
        while it stays pending the answered authorizations are read now and then
        (:data:`AUTHZ_CHECK_FIRST`): an invalid one is its challenge's error; a
        challenge back at pending after a failed attempt gets one more POST.  Only a
        pending state with nothing invalid, at the deadline, is staging's.
        """
        client, order = self._client(), self._order()
        names = ", ".join(a.domain for a, _ in answered)
        started = time.monotonic()
        check_at, check_every = started + AUTHZ_CHECK_FIRST, AUTHZ_CHECK_FIRST
        seen_errors: dict[str, c.AcmeError] = {}
        left_pending = {r.url.text for _, r in answered if r.status != "pending"}
        reposted: set[str] = set()
        done: set[str] = set()

        def check_authorizations() -> None:
            for authz, ref in answered:
                if authz.url.text in done:
                    continue
                current = acme.get_authorization(client, authz.url, step=Step.CHALLENGE,
                                                 poll=True)
                mine = next((ch for ch in current.challenges if ch.url.text == ref.url.text),
                            None)
                if current.status == "valid":
                    done.add(authz.url.text)
                    self.fresh[current.domain] = ref.type
                elif current.status == "invalid" or (mine is not None
                                                     and mine.status == "invalid"):
                    self._invalid(current, mine)
                elif current.status != "pending":
                    raise self.fail(c.AuthorizationInvalid(
                        f"authorization for {current.domain} became {current.status} while"
                        " it was being validated"), Step.CHALLENGE, current.domain)
                elif mine is not None:
                    if mine.error is not None:
                        seen_errors[current.domain] = mine.error
                    if mine.status != "pending":
                        left_pending.add(mine.url.text)
                    elif (mine.error is not None or mine.url.text in left_pending) \
                            and mine.url.text not in reposted:
                        # Back at pending after a failed attempt: POSTed once more.
                        reposted.add(mine.url.text)
                        try:
                            again = acme.answer_challenge(client, mine)
                        except RequestFailed:
                            continue  # 409 "already being validated", 400 "not pending"
                        if again.status == "invalid":
                            self._invalid(current, again)

        def poll_round() -> bool:
            nonlocal order, check_at, check_every
            order = acme.get_order(client, order.url, step=Step.CHALLENGE, poll=True)
            if order.status in ("ready", "processing", "valid"):
                # RFC 8555 section 7.1.6: every authorization of the order is valid.
                self.fresh.update((a.domain, r.type) for a, r in answered)
            if order.status != "pending":
                return True
            if time.monotonic() >= check_at:
                check_authorizations()
                check_every = min(AUTHZ_CHECK_CAP, check_every * 2)
                check_at = time.monotonic() + check_every
            return len(done) == len(answered)

        def stuck() -> c.Observation:
            if seen_errors:
                domain, error = next(iter(seen_errors.items()))
                return c.ValidationFailed(error, f"{domain}: the CA's validation failed and"
                                          " it did not decide before the deadline")
            return c.Stuck(c.StuckState.AUTHORIZATION_PENDING,
                           f"the order stayed pending: the CA did not finish validating"
                           f" {names} before the deadline")

        single = answered[0][0].domain if len(answered) == 1 else None
        self._poll(poll_round, Step.CHALLENGE, stuck, single)
        self.order = order
        if order.status != "invalid":
            return
        for authz, ref in answered:
            current = acme.get_authorization(client, authz.url, step=Step.CHALLENGE)
            if current.status == "valid":
                self.fresh[current.domain] = ref.type
            if current.status not in ("valid", "pending"):
                mine = next((ch for ch in current.challenges if ch.url.text == ref.url.text),
                            None)
                self._invalid(current, mine)
        raise self.fail(c.ValidationFailed(order.error, "the order became invalid")
                        if order.error is not None
                        else c.AuthorizationInvalid("the order became invalid"), Step.CHALLENGE)

    def issue(self) -> None:
        """Finalize with the CSR, wait for the certificate, download and check it."""
        client = self._client()
        csr = self.plan.csr or certs.make_csr(tuple(i.value for i in self.plan.idents),
                                              certs.generate_key(self.plan.key_type))
        with self.step(Step.FINALIZE):
            order = self._order()
            if order.status == "pending":
                # Every authorization is valid now, so the order is ready (RFC 8555
                # section 7.1.6): finalize at once instead of re-reading it first.
                order = self._finalize_when_ready(order, csr)
            elif order.status == "ready":
                order = acme.finalize(client, order, csr.der)
            order = self._poll_order_while(order, "processing", c.StuckState.ORDER_PROCESSING)
            if order.status != "valid":
                raise self.fail(order.error or c.AuthorizationInvalid(
                    f"order is {order.status}"), Step.FINALIZE)
        with self.step(Step.CERTIFICATE):
            if order.certificate is None:
                raise self.fail(c.MalformedResponse("order", "valid order without certificate"),
                                Step.CERTIFICATE)
            pem = acme.download_certificate(client, order.certificate)
            mismatch = certs.verify_chain(pem, csr)
            if mismatch:
                raise self.fail(c.InvalidChain(acme.clean_text(mismatch)), Step.CERTIFICATE)
            self.chain_pem = pem

    def cleanup(self) -> None:
        """Remove challenge responses and deactivate this run's authorizations.

        Deactivating means the next dry run validates again instead of riding on
        today's result.  Failures here are warnings: the run's outcome stands.
        """
        if not self.prepared and not self.run_authzs:
            return
        budget = self.deadline.for_cleanup()
        with self.step(Step.CLEANUP) as outcome:
            for ch in self.prepared:
                try:
                    with self.deadline.charge(Party.SOLVER):
                        self.plan.solver.cleanup(dataclasses.replace(ch, deadline=budget))
                except Exception as exc:
                    if not isinstance(exc, SolverFailure) and _builtin(self.plan.solver):
                        raise
                    outcome.status = StepStatus.FAILED
                    obs = (c.SolverError(exc.kind, exc.detail) if isinstance(exc, SolverFailure)
                           else c.SolverError(SolverErrorKind.OTHER, acme_describe(exc)))
                    self.add(c.classify(obs, step=Step.CLEANUP, identifier=ch.domain,
                                        severity=Severity.WARNING))
            if self.run_authzs:
                self._deactivate_all(outcome)

    def _deactivate_all(self, outcome: _Outcome) -> None:
        """Deactivate this run's authorizations (RFC 8555 section 7.5.2), side by side."""
        client = self.client

        def deactivate(url: Url) -> acme.Authorization | c.Observation:
            if client is None or self.deadline.expired:
                return c.DeadlineExceeded()
            try:
                return acme.deactivate(client, url, Step.CLEANUP)
            except RequestFailed as exc:
                return exc.obs

        results = self.parallel(deactivate, self.run_authzs)
        left = [u for u, r in zip(self.run_authzs, results, strict=True)
                if isinstance(r, c.DeadlineExceeded)]
        if left:
            # The CA could not be asked any more: say so, and which were left.
            if outcome.status is StepStatus.OK:
                outcome.status = StepStatus.SKIPPED
            if not self.deadline.cancelled:
                self.add(c.classify(c.CleanupIncomplete("skipped", (
                    f"{len(left)} authorization(s) not deactivated: the run's deadline had"
                    f" passed ({', '.join(u.text for u in left[:3])}"
                    f"{', ...' if len(left) > 3 else ''})")),
                    step=Step.CLEANUP, severity=Severity.WARNING))
        for result in results:
            if isinstance(result, acme.Authorization):
                if result.status == "valid":
                    # RFC 8555 section 7.5.2: the answer is the authorization, deactivated;
                    # one still valid can be reused (an invalid one has nothing to undo).
                    outcome.status = StepStatus.FAILED
                    self.add(c.classify(c.CleanupIncomplete("ignored", (
                        f"the CA answered the deactivation of {result.domain} with status"
                        f" {result.status!r}, not 'deactivated'")), step=Step.CLEANUP,
                        identifier=result.domain, severity=Severity.WARNING))
            elif isinstance(result, c.DeadlineExceeded) or (
                    isinstance(result, c.AcmeError) and result.short_type == "malformed"):
                continue  # skipped (reported above), or already invalid: nothing to undo
            else:
                outcome.status = StepStatus.FAILED
                self.add(c.classify(result, step=Step.CLEANUP, severity=Severity.WARNING,
                                    context=self.context()))

    def start_ct(self) -> None:
        """Production's rate limits from Certificate Transparency, beside the run.

        For a known public CA (or ``--production-policy``): the certificates it issued
        lately for this run's registered domains (read-only GETs, in a thread of their
        own so that a slow CT log costs the run no time).  No answer is a notice.
        """
        plan = self.plan
        if plan.ct_policy is None:
            return
        from acmedryrun.production import ct
        from acmedryrun.transport import Purpose, Resource

        def fetch(url: str, timeout: float) -> bytes:
            try:
                resp = self.transport.request("GET", url, resource=Resource.CT,
                                              purpose=Purpose.PRODUCTION, budget=timeout,
                                              accept="application/json")
            except RequestFailed as exc:
                raise ct.CtFetchError(str(getattr(exc.obs, "detail", "") or exc.obs)) from exc
            if resp.status != 200:
                raise ct.CtFetchError(f"HTTP {resp.status}")
            return resp.body

        policy = plan.ct_policy
        names = [i.value for i in plan.idents]

        def look() -> None:
            forecast = ct.check_rate_limits(names, policy, fetch=fetch, cache=plan.ct_cache,
                                            url=plan.ct_url)
            self._ct_problems = list(forecast.problems)
            self._ct_reasons = tuple(forecast.reasons)

        self._ct_thread = threading.Thread(target=look, name="acmedryrun-ct", daemon=True)
        self._ct_thread.start()

    def finish_ct(self) -> None:
        """Wait (within the deadline) for the CT look-up and add what it predicts."""
        thread = self._ct_thread
        if thread is None:
            return
        thread.join(max(0.0, self.deadline.remaining()) + 0.5)
        if thread.is_alive() or self._ct_problems is None:
            self._ct_problems = [Problem(
                name="CtUnavailable", cause=None, severity=Severity.INFO, step=Step.ORDER,
                detail=f"no answer from {self.plan.ct_url} within the run's deadline",
                hint="Production's rate limits were not checked from Certificate"
                " Transparency; the staging verdict stands. --no-ct skips the look-up.")]
        for problem in self._ct_problems:
            self.add(problem)
        if self._ct_reasons:
            self.twin = dataclasses.replace(
                self.twin, reasons=self.twin.reasons + self._ct_reasons)

    def _leave_nonces(self) -> None:
        """Hand the run's unused nonces to the batch's next run (with a run cache)."""
        client, cache = self.client, self.plan.run_cache
        if cache is not None and client is not None and client.directory is not None \
                and not self.deadline.cancelled:
            cache.give_nonces(client.directory.new_nonce.text, client.spare_nonces())

    # -- helpers ------------------------------------------------------------------------------

    def parallel(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``fn`` over ``items`` on up to :data:`STREAMS` request streams, results in order.

        Each stream is a thread with its own connection and nonce (the client hands
        this thread's nonce to the first); the first failure, in item order, is raised
        once every stream has stopped.  One item runs here, without a thread.
        """
        if len(items) <= 1:
            return [fn(item) for item in items]
        client = self._client()
        client.share_nonce()

        def stream(item: T) -> R:
            try:
                return fn(item)
            finally:
                client.share_nonce()  # back to the pool for the next stream, or for us

        workers = min(STREAMS, len(items))
        with concurrent.futures.ThreadPoolExecutor(workers, "acmedryrun-stream") as pool:
            futures = [pool.submit(stream, item) for item in items]
            concurrent.futures.wait(futures)
        return [f.result() for f in futures]

    def _client(self) -> acme.AcmeClient:
        assert self.client is not None  # noqa: S101 - get_directory() creates it first
        return self.client

    def _order(self) -> acme.Order:
        assert self.order is not None  # noqa: S101 - place_order() sets it first
        return self.order

    def _account_key(self) -> JWK:
        plan = self.plan
        if plan.new_account_key_path is not None:
            key = certs.generate_key("ec256")
            certs.write_private_key(plan.new_account_key_path, key)
            return certs.jwk_from_private(key)
        return plan.account_key or certs.jwk_from_private(certs.generate_key("ec256"))

    def _challenge_for(self, authz: acme.Authorization) -> Challenge:
        solver = self.plan.solver
        ctype = solver.challenge_type
        found = next((ch for ch in authz.challenges if ch.type == ctype), None)
        if found is None:
            offered = ", ".join(ch.type for ch in authz.challenges)
            raise self.fail(
                c.SolverError(SolverErrorKind.NO_CHALLENGE,
                              f"{authz.domain}: no {ctype} challenge offered (offered: "
                              f"{offered or 'none'})"), Step.CHALLENGE, authz.domain)
        if found.token is None or not acme.TOKEN.fullmatch(found.token):
            # RFC 8555 section 8.1: base64url only.  Anything else could escape a webroot.
            raise self.fail(c.MalformedResponse(
                "challenge", f"{found.url.text}: the token is not base64url"),
                Step.CHALLENGE, authz.domain)
        key_auth = acme.key_authorization(found.token, self._client().key)
        return Challenge(
            type=ctype, identifier=authz.identifier, identifier_type=authz.identifier_type,
            wildcard=authz.wildcard, token=found.token, key_authorization=key_auth,
            validation=acme.challenge_validation(ctype, key_auth), url=found.url.text,
            deadline=self.deadline)

    def _run_solver(self, method: Callable[[Challenge], None], ch: Challenge) -> None:
        if method == self.plan.solver.prepare:
            self.prepared.append(ch)
        failure: c.Observation | None = None
        try:
            with self.deadline.charge(Party.SOLVER):
                method(ch)
        except SolverFailure as exc:
            failure = c.SolverError(exc.kind, exc.detail)
        except Exception as exc:
            if _builtin(self.plan.solver):
                raise  # a bug in acmedryrun's own solver: exit 70, never a verdict
            # A custom solver is the subscriber's (or their ACME client's) code.
            failure = c.SolverError(SolverErrorKind.OTHER, acme_describe(exc))
        cut = isinstance(failure, c.SolverError) and failure.kind is SolverErrorKind.HOOK_TIMEOUT \
            and self.deadline.remaining() < DEADLINE_CUT
        if (self.deadline.expired or cut) and not self.deadline.cancelled:
            # What the solver said as it was cut short (a hook's last output) is kept.
            said = f"; {failure.detail}" if isinstance(failure, c.SolverError) \
                and failure.detail else ""
            failure = c.DeadlineExceeded(
                f"the run's deadline ({self.plan.timeout:g} s, --timeout) expired while the"
                f" solver worked on {ch.domain}{said}")
        if failure is not None:
            raise self.fail(failure, Step.CHALLENGE, ch.domain)

    def _poll(self, poll_round: Callable[[], bool], step: Step,
              stuck: Callable[[], c.Observation], identifier: str | None) -> None:
        """Repeat ``poll_round`` until it returns True: adaptive, polite, deadline-bound.

        The first poll comes after :data:`POLL_FIRST`; intervals grow by
        :data:`POLL_FACTOR` up to :data:`POLL_CAP`; a ``Retry-After`` on the last
        response always wins (RFC 8555 section 7.4: "the server MAY include a
        Retry-After header").  Running out of time while waiting is the CA being
        stuck, not a transport failure.
        """
        interval = POLL_FIRST
        while True:
            if not self._client().wait(interval):
                raise self.fail(stuck(), step, identifier)
            interval = min(POLL_CAP, interval * POLL_FACTOR)
            try:
                if poll_round():
                    return
            except RequestFailed as exc:
                if isinstance(exc.obs, c.DeadlineExceeded):
                    raise self.fail(stuck(), step, identifier) from exc
                raise self.fail(exc.obs, step, identifier) from exc

    def _finalize_when_ready(self, order: acme.Order, csr: certs.CsrInfo) -> acme.Order:
        try:
            return acme.finalize(self._client(), order, csr.der)
        except RequestFailed as exc:
            if not (isinstance(exc.obs, c.AcmeError) and exc.obs.short_type == "orderNotReady"):
                raise
        order = self._poll_order_while(order, "pending", c.StuckState.ORDER_PENDING)
        return acme.finalize(self._client(), order, csr.der) if order.status == "ready" \
            else order

    def _poll_order_while(self, order: acme.Order, status: str,
                          state: c.StuckState) -> acme.Order:
        current = order

        def poll_round() -> bool:
            nonlocal current
            current = acme.get_order(self._client(), order.url, step=Step.FINALIZE, poll=True)
            return current.status != status

        if current.status == status:
            self._poll(poll_round, Step.FINALIZE,
                       lambda: c.Stuck(state, f"order still {status} at the deadline"), None)
        return current

    # -- the report ---------------------------------------------------------------------------

    def report(self) -> Report:
        """The report of what the run found."""
        from acmedryrun.classify import survived_retries_warning
        from acmedryrun.verdict import decide

        problems = list(self.problems)
        if self.retries and not any(p.severity.decisive for p in problems):
            problems.append(survived_retries_warning(len(self.retries), self.retries[0].step))
        validated = tuple(Validation(i.value, self.fresh.get(i.value), i.value in self.fresh)
                          for i in self.plan.idents)
        decision = decide(problems, self.retries,
                          validated=bool(validated) and all(v.fresh for v in validated))
        stats = self.client.stats if self.client else None
        ran = {s.step: s for s in self.steps}
        steps = tuple(ran.get(step, StepResult(step, StepStatus.SKIPPED, 0.0)) for step in STEPS)
        steps += tuple(s for s in self.steps if s.step is Step.CLEANUP)
        return Report(
            verdict=decision.verdict,
            prod_likely_to_succeed=decision.prod_likely_to_succeed,
            confidence=decision.confidence,
            directory=self.plan.target.url,
            identifiers=tuple(i.value for i in self.plan.idents),
            problems=tuple(problems),
            retries=tuple(self.retries),
            steps=steps,
            requests=RequestStats(total=self.transport.counts.ca,
                                  polls=stats.polls if stats else 0,
                                  retries=stats.retries if stats else 0),
            certificate=certs.summarize(self.chain_pem) if self.chain_pem else None,
            account_url=self.account_url,
            staging_only_features=self.comparison.staging_only_features,
            production_only_features=self.comparison.production_only_features,
            production_twin=self.twin,
            validated=validated,
            duration_s=time.monotonic() - self.started,
        )


def acme_describe(exc: BaseException) -> str:
    """``Type: message`` of a solver's exception, cut to a readable length."""
    from acmedryrun.transport import describe

    return describe(exc)


def _common_name_only(names: Sequence[str]) -> Problem:
    """The warning for a CSR whose name is in its commonName only (RFC 8555 section 7.4)."""
    return Problem(
        name="CsrCommonNameOnly", cause=Cause.CLIENT, severity=Severity.WARNING,
        step=Step.FINALIZE, identifier=names[0],
        detail=f"the CSR names {names[0]} in its commonName only, with no subjectAltName",
        hint="RFC 8555 section 7.4 allows it and Let's Encrypt accepts it (it copies the"
        " commonName into the certificate's subjectAltName), but other CAs refuse such a"
        " CSR at finalize (Pebble: unauthorized): put the names in a subjectAltName extension"
        " (openssl req -addext subjectAltName=DNS:...).")


def _validation_port(solver: Solver) -> int:
    """Where the CA's http-01 validation connects: 80, or a standalone responder's port.

    A production CA always dials port 80; a local test CA (Pebble's ``httpPort``)
    may dial another, and the standalone responder is then bound there.
    """
    from acmedryrun.solvers.http01 import HTTP01Standalone, HTTP01Webroot

    if isinstance(solver, HTTP01Standalone):
        return solver.bound_port or solver.port
    if isinstance(solver, HTTP01Webroot):
        return solver.port  # the web server behind it (--webroot-port)
    return 80


def execute(plan: Plan, on_event: Callable[[Event], None],
            deadline: Deadline) -> Report:
    """Run ``plan`` to its report (see :class:`Run`)."""
    return Run(plan, on_event, deadline).run()


def _error_of(authz: acme.Authorization) -> c.AcmeError | None:
    """The error an invalid authorization carries: its challenges', else its own."""
    failure = authz.failure()
    return failure if isinstance(failure, c.AcmeError) else None
