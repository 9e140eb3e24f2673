"""Production's rate limits from Certificate Transparency (issue 17, item 2).

Table tests drive the pure predictor with hand-made entries; the lookup tests run a real
``http.server`` on loopback (``ctserver.CtServer``) that serves the recorded answers
under ``fixtures/ct/``, through a urllib ``fetch`` with a timeout.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from ctserver import CtServer, Route, closed_port, crtsh_rows, fixture, urllib_fetch

from acmedryrun.production import ct
from acmedryrun.production.ct import (
    MAX_CT_BODY_BYTES,
    CtAnswer,
    CtCache,
    CtEntry,
    CtFetchError,
    SourceKind,
    check_rate_limits,
    lookup,
    parse_response,
    predict_rate_limits,
)
from acmedryrun.production.policy import (
    POLICIES,
    Limit,
    Refill,
    issuer_organization,
    production_policy,
    registered_domain,
)
from acmedryrun.report import Cause, Problem, Severity

LE = POLICIES["letsencrypt"]
E7 = "C=US, O=Let's Encrypt, CN=E7"
NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
SET = ("example.com", "www.example.com")
_serials = iter(range(1, 1_000_000))


def entry(names: Sequence[str], hours_ago: float, *, issuer: str = E7,
          logged: bool = True) -> CtEntry:
    """One issuance ``hours_ago`` before NOW (logged at that moment)."""
    issued = NOW - timedelta(hours=hours_ago)
    return CtEntry(source_id=str(next(_serials)), serial=f"{next(_serials):x}", issuer=issuer,
                   names=frozenset(names), logged=issued if logged else None,
                   not_before=issued - timedelta(hours=1),
                   not_after=issued + timedelta(days=89))


def answer(*entries: CtEntry, domain: str = "example.com") -> dict[str, CtAnswer]:
    return {domain: CtAnswer(domain, f"https://crt.sh/?q={domain}", tuple(entries))}


def names_of(problems: Sequence[Problem]) -> list[str]:
    return [p.name for p in problems]


# --------------------------------------------------------------- exact set of names


def test_five_for_the_exact_set_in_a_burst_is_a_client_error_with_the_free_up_time() -> None:
    """5 of 5 within 30 hours: production refuses; one frees 3 h 36 min from now (GCRA)."""
    forecast = predict_rate_limits(
        SET, answer(*(entry(SET, h) for h in (30, 24, 12, 6, 1))), LE, now=NOW)
    [problem] = forecast.problems
    assert problem.name == "ProductionExactSetLimit"
    assert (problem.cause, problem.severity) == (Cause.CLIENT, Severity.ERROR)
    assert forecast.production_refuses
    # TAT after the five spends: -30 h + 5 * 33.6 h = +138 h; frees at TAT + T - 168 h.
    usage = forecast.usages[0]
    assert usage.frees_at == NOW + timedelta(hours=3, minutes=36)
    assert (usage.counted, usage.capacity, usage.allowed) == (5, 0, 5)
    assert "until 2026-12-01 15:36 UTC" in problem.detail
    assert "3 hours 36 minutes from now" in problem.detail
    assert "2026-12-01 15:36 UTC" in problem.hint
    assert "5 certificates from Let's Encrypt" in problem.detail
    assert problem.help_url == ("https://letsencrypt.org/docs/rate-limits/"
                                "#new-certificates-per-exact-set-of-identifiers")


def test_four_for_the_exact_set_is_a_warning_with_the_numbers() -> None:
    forecast = predict_rate_limits(
        SET, answer(*(entry(SET, h) for h in (24, 12, 6, 1))), LE, now=NOW)
    [problem] = forecast.problems
    assert (problem.name, problem.severity) == ("ProductionExactSetNearLimit", Severity.WARNING)
    assert not forecast.production_refuses
    assert "4 certificates" in problem.detail
    assert "would issue 1 more now" in problem.detail
    # After that one: TAT = -24 + 5 * 33.6 = 144 h; frees at 144 + 33.6 - 168 = 9.6 h.
    assert "then refuse it until 2026-12-01 21:36 UTC" in problem.detail


def test_five_spread_over_the_week_are_not_refused_by_a_token_bucket() -> None:
    """LE refills one every 33.6 h: five issued 33.6 h apart leave room for one more."""
    hours = [160 - i * 33.6 for i in range(5)]  # 160, 126.4, 92.8, 59.2, 25.6 h ago
    forecast = predict_rate_limits(SET, answer(*(entry(SET, h) for h in hours)), LE, now=NOW)
    assert forecast.usages[0].counted == 5
    assert forecast.usages[0].capacity >= 1
    assert "ProductionExactSetLimit" not in names_of(forecast.problems)


def test_a_sliding_window_ca_refuses_five_in_the_week_until_the_oldest_ages_out() -> None:
    buypass = POLICIES["buypass"]
    hours = [160, 126, 92, 59, 25]
    entries = [entry(SET, h, issuer="C=NO, O=Buypass AS-983163327, CN=Buypass Class 2 CA 5")
               for h in hours]
    forecast = predict_rate_limits(SET, answer(*entries), buypass, now=NOW)
    assert names_of(forecast.problems) == ["ProductionExactSetLimit"]
    assert forecast.usages[0].frees_at == NOW - timedelta(hours=160) + timedelta(weeks=1)


def test_other_cas_staging_and_other_sets_do_not_count() -> None:
    noise = [entry(SET, 2, issuer="C=US, O=Google Trust Services, CN=WE1"),
             entry(SET, 3, issuer="C=US, O=(STAGING) Let's Encrypt, CN=(STAGING) Counterfeit"
                                  " Cashew R10"),
             entry([*SET, "blog.example.com"], 4), entry(["api.example.com"], 5)]
    forecast = predict_rate_limits(
        SET, answer(*noise, *(entry(SET, h) for h in (12, 6))), LE, now=NOW)
    assert forecast.problems == ()
    assert forecast.usages[0].counted == 2


def test_the_exact_set_ignores_case_order_and_trailing_dots() -> None:
    forecast = predict_rate_limits(
        ["WWW.Example.COM.", "example.com"],
        answer(*(entry(SET, h) for h in (30, 24, 12, 6, 1))), LE, now=NOW)
    assert names_of(forecast.problems) == ["ProductionExactSetLimit"]


def test_an_ari_replacement_is_exempt_from_every_limit() -> None:
    forecast = predict_rate_limits(
        SET, answer(*(entry(SET, h) for h in (30, 24, 12, 6, 1))), LE, now=NOW,
        ari_replacement=True)
    assert forecast.problems == ()
    assert "ARI" in forecast.reasons[0]


def test_issuance_time_falls_back_to_not_before_plus_the_backdate() -> None:
    """Cert Spotter gives no log time: notBefore + 1 h is LE's moment of issuance."""
    forecast = predict_rate_limits(
        SET, answer(*(entry(SET, h, logged=False) for h in (30, 24, 12, 6, 1))), LE, now=NOW)
    assert forecast.usages[0].frees_at == NOW + timedelta(hours=3, minutes=36)


# ----------------------------------------------------------- per registered domain


def _many(count: int, hours_ago: float = 1.0) -> list[CtEntry]:
    return [entry([f"host{i}.example.com"], hours_ago) for i in range(count)]


def test_a_registered_domain_at_its_limit_is_a_warning_with_the_free_up_time() -> None:
    forecast = predict_rate_limits(["new.example.com"], answer(*_many(50)), LE, now=NOW)
    [problem] = forecast.problems
    assert (problem.name, problem.severity, problem.cause) == (
        "ProductionDomainLimit", Severity.WARNING, Cause.CLIENT)
    assert problem.identifier == "example.com"
    usage = next(u for u in forecast.usages if u.limit == "certificates_per_registered_domain")
    # 50 spent an hour ago: TAT = -1 h + 168 h; one frees at TAT + 3.36 h - 168 h.
    assert usage.frees_at == NOW + timedelta(hours=2, minutes=21, seconds=36)
    assert (usage.counted, usage.capacity) == (50, 0)
    assert "50 new certificates" in problem.detail
    assert "until 2026-12-01 14:22 UTC" in problem.detail


def test_a_registered_domain_near_its_limit_is_a_warning_with_the_numbers() -> None:
    forecast = predict_rate_limits(["new.example.com"], answer(*_many(46)), LE, now=NOW)
    [problem] = forecast.problems
    assert problem.name == "ProductionDomainNearLimit"
    assert "would issue 4 more under example.com now" in problem.detail


def test_well_below_the_domain_limit_nothing_is_reported() -> None:
    forecast = predict_rate_limits(["new.example.com"], answer(*_many(40)), LE, now=NOW)
    assert forecast.problems == ()
    assert forecast.checked


def test_a_renewal_of_the_exact_set_is_exempt_from_the_domain_limit() -> None:
    """LE: an order for the names of a certificate issued in the last 120 days is a
    non-ARI renewal: no per-domain check (the exact-set limit still applies)."""
    earlier = entry(["new.example.com"], 24 * 30)
    forecast = predict_rate_limits(["new.example.com"], answer(earlier, *_many(50)), LE,
                                   now=NOW)
    assert forecast.problems == ()
    domain = next(u for u in forecast.usages if u.limit == "certificates_per_registered_domain")
    assert domain.exempt
    assert any("exempt from the per-domain limit" in r for r in forecast.reasons)


def test_a_certificate_older_than_the_renewal_lookback_does_not_make_a_renewal() -> None:
    earlier = entry(["new.example.com"], 24 * 121)
    forecast = predict_rate_limits(["new.example.com"], answer(earlier, *_many(50)), LE,
                                   now=NOW)
    assert names_of(forecast.problems) == ["ProductionDomainLimit"]


def test_past_renewals_do_not_spend_the_domain_limit() -> None:
    """50 issuances, 10 of them renewals of sets seen earlier: 40 counted, 10 left."""
    firsts = _many(40, hours_ago=2)
    renewals = [entry(sorted(e.names), 1) for e in firsts[:10]]
    forecast = predict_rate_limits(["new.example.com"], answer(*firsts, *renewals), LE,
                                   now=NOW)
    usage = next(u for u in forecast.usages if u.limit == "certificates_per_registered_domain")
    assert usage.counted == 40
    assert forecast.problems == ()


def test_a_certificate_spends_each_registered_domain_it_names_once() -> None:
    both = [entry([f"a{i}.example.com", f"b{i}.example.com", f"x{i}.example.net"], 1)
            for i in range(50)]
    answers = {**answer(*both), **answer(*both, domain="example.net")}
    forecast = predict_rate_limits(["new.example.com", "new.example.net"], answers, LE,
                                   now=NOW)
    counted = {u.key: u.counted for u in forecast.usages
               if u.limit == "certificates_per_registered_domain"}
    assert counted == {"example.com": 50, "example.net": 50}
    assert sorted(str(p.identifier) for p in forecast.problems) == ["example.com", "example.net"]


# ------------------------------------------------------------------- no answer


def test_no_answer_is_a_notice_and_nothing_else() -> None:
    unanswered = {"example.com": CtAnswer("example.com", "https://crt.sh/?q=example.com", None,
                                          "ConnectionRefusedError")}
    forecast = predict_rate_limits(SET, unanswered, LE, now=NOW)
    [problem] = forecast.problems
    assert problem.name == "CtUnavailable"
    assert problem.severity is Severity.INFO
    assert problem.cause is ct._NOTICE_CAUSE
    assert not forecast.production_refuses
    assert not forecast.checked
    assert "ConnectionRefusedError" in problem.detail


def test_one_domain_unanswered_still_checks_the_exact_set_from_another() -> None:
    names = ["example.com", "example.net"]
    answers = {**answer(*(entry(names, h) for h in (30, 24, 12, 6, 1))),
               "example.net": CtAnswer("example.net", "u", None, "timed out")}
    forecast = predict_rate_limits(names, answers, LE, now=NOW)
    assert sorted(names_of(forecast.problems)) == ["CtUnavailable", "ProductionExactSetLimit"]


def test_a_ca_without_published_limits_is_not_checked() -> None:
    forecast = predict_rate_limits(SET, answer(entry(SET, 1)), POLICIES["google"], now=NOW)
    assert forecast.problems == ()
    assert not forecast.checked
    assert "not checked" in forecast.reasons[0]


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        predict_rate_limits(SET, answer(), LE, now=datetime(2026, 12, 1))


# --------------------------------------------------------------------- the parsing


def test_a_precertificate_and_its_certificate_count_once() -> None:
    body = fixture("crtsh_exact_set_5.json", NOW)
    entries, skipped = parse_response(body, SourceKind.CRTSH)
    rows = json.loads(body)
    assert len(rows) == 21
    ours = [e for e in entries if frozenset(SET) == e.names and LE.issued(e.issuer)]
    assert len(ours) == 5
    assert skipped == 1  # the S/MIME row: an e-mail address is no identifier
    # The pair's earliest log time is kept (the precertificate's).
    first = min(ours, key=lambda e: e.issued())
    assert first.issued() == NOW - timedelta(hours=30) + timedelta(seconds=1, milliseconds=173)


def test_malformed_rows_are_skipped_and_the_rest_counted() -> None:
    entries, skipped = parse_response(fixture("crtsh_malformed_rows.json", NOW),
                                      SourceKind.CRTSH)
    assert skipped == 12
    assert len(entries) == 2


@pytest.mark.parametrize("body", [
    b"",
    b"<html><body>502 Bad Gateway</body></html>",
    b'{"error": "overloaded"}',
    b"[1, 2, 3]",
    b"\xff\xfe[]",
    b"[" * 5 + b"]" * 5,
    b'[{"a": "' + b"[" * 100 + b'"}]',  # brackets inside a string are data: shape error
    b"[" * 100_000,
])
def test_a_malformed_response_raises_for_the_lookup_to_call_it_no_answer(body: bytes) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_response(body, SourceKind.CRTSH)


def test_an_answer_over_the_size_cap_is_refused_unparsed() -> None:
    with pytest.raises(ValueError, match="larger than"):
        parse_response(b" " * (MAX_CT_BODY_BYTES + 1), SourceKind.CRTSH)


@pytest.mark.parametrize(("text", "ok"), [
    ("2025-10-24T18:07:24.655", True),
    ("2024-10-17T14:19:52.07", True),
    ("2025-10-24T17:08:54", True),
    ("2026-08-02T23:38:02Z", True),
    ("2026-08-02T23:38:02+00:00", True),
    ("2026-08-02T23:38:02+02:00", False),
    ("2026-02-30T00:00:00", False),
    ("2026-08-02 23:38:02", False),
    ("1730000000", False),
])
def test_timestamps_are_parsed_strictly_as_utc(text: str, ok: bool) -> None:
    if ok:
        assert ct._timestamp(text).tzinfo is timezone.utc
    else:
        with pytest.raises(ValueError, match=r"."):
            ct._timestamp(text)


def test_cert_spotter_issuances_parse_into_the_same_entries() -> None:
    entries, skipped = parse_response(fixture("certspotter_exact_set_5.json", NOW),
                                      SourceKind.CERTSPOTTER)
    assert skipped == 0
    assert sum(1 for e in entries if e.names == frozenset(SET)) == 5
    assert all(e.serial is None and e.logged is None for e in entries)


@pytest.mark.parametrize(("dn", "organization", "ours"), [
    ("C=US, O=Let's Encrypt, CN=R10", "Let's Encrypt", True),
    ("C=US, O=Let's Encrypt, CN=YE1", "Let's Encrypt", True),
    ("C=US, O=(STAGING) Let's Encrypt, CN=(STAGING) Ersatz Edamame E1",
     "(STAGING) Let's Encrypt", False),
    ("C=US, O=Google Trust Services, CN=WR1", "Google Trust Services", False),
    ("CN=R11, O=Let's Encrypt, C=US", "Let's Encrypt", True),
    ("C=US, O=Example, Inc., CN=Example CA", "Example, Inc.", False),
    ("CN=No Organization CA", None, False),
])
def test_issuers_match_by_organization(dn: str, organization: str | None, ours: bool) -> None:
    assert issuer_organization(dn) == organization
    assert LE.issued(dn) is ours


def test_buypass_test_cas_do_not_count_as_production() -> None:
    buypass = POLICIES["buypass"]
    assert buypass.issued("C=NO, O=Buypass AS-983163327, CN=Buypass Class 2 CA 5")
    assert not buypass.issued("C=NO, O=Buypass AS-983163327, CN=Buypass Class 2 Test4 CA 5")


@pytest.mark.parametrize(("name", "domain"), [
    ("www.example.com", "example.com"),
    ("*.example.com", "example.com"),
    ("new.blog.example.co.uk", "example.co.uk"),
    ("foo.github.io", "foo.github.io"),
    ("github.io", "github.io"),
    ("Sub.Example.COM.", "example.com"),
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8::1", "2001:db8::/64"),
])
def test_registered_domains_follow_the_public_suffix_list(name: str, domain: str) -> None:
    assert registered_domain(name) == domain


def test_policies_resolve_staging_aliases_to_production() -> None:
    assert production_policy("letsencrypt-staging") is LE
    assert production_policy("letsencrypt") is LE
    assert production_policy("nonesuch") is None
    limit = LE.certificates_per_exact_set
    assert limit is not None
    assert (limit.refill, limit.interval) == (Refill.TOKEN_BUCKET, timedelta(hours=33.6))
    assert Limit(20, "week").duration == timedelta(weeks=1)


# ----------------------------------------- lookups against a local CT server


@pytest.fixture
def now() -> datetime:
    return datetime.now(timezone.utc)


def test_a_local_crtsh_answer_with_five_gives_the_client_error(now: datetime) -> None:
    with CtServer({"example.com": fixture("crtsh_exact_set_5.json", now)}) as server:
        forecast = check_rate_limits(SET, LE, fetch=urllib_fetch, url=server.url, now=now)
        [path] = server.requests
    assert names_of(forecast.problems) == ["ProductionExactSetLimit"]
    assert forecast.usages[0].frees_at is not None
    assert path.startswith("/?q=example.com&output=json&exclude=expired&deduplicate=Y")


def test_a_local_crtsh_answer_with_four_gives_the_warning(now: datetime) -> None:
    with CtServer({"example.com": fixture("crtsh_exact_set_4.json", now)}) as server:
        forecast = check_rate_limits(SET, LE, fetch=urllib_fetch, url=server.url, now=now)
    assert names_of(forecast.problems) == ["ProductionExactSetNearLimit"]


def test_a_local_cert_spotter_answer_gives_the_same_prediction(now: datetime) -> None:
    with CtServer({"example.com": fixture("certspotter_exact_set_5.json", now)}) as server:
        forecast = check_rate_limits(SET, LE, fetch=urllib_fetch,
                                     url=server.certspotter_url, now=now)
        requests = list(server.requests)
    assert names_of(forecast.problems) == ["ProductionExactSetLimit"]
    assert requests[0].startswith("/v1/issuances?domain=example.com&include_subdomains=true"
                                  "&expand=dns_names&expand=issuer")
    assert "&after=" in requests[1]  # the next page was asked for, and was empty


def test_a_local_answer_at_the_domain_limit_warns_for_a_new_name(now: datetime) -> None:
    rows = [row for i in range(50) for row in crtsh_rows([f"h{i}.example.com"], [2], now=now)]
    with CtServer({"example.com": json.dumps(rows).encode()}) as server:
        forecast = check_rate_limits(["t1-42.example.com"], LE, fetch=urllib_fetch,
                                     url=server.url, now=now)
    assert names_of(forecast.problems) == ["ProductionDomainLimit"]
    assert not forecast.production_refuses


def test_an_unreachable_source_gives_a_notice_only() -> None:
    forecast = check_rate_limits(SET, LE, fetch=urllib_fetch,
                                 url=f"http://127.0.0.1:{closed_port()}/", now=NOW)
    assert names_of(forecast.problems) == ["CtUnavailable"]
    assert forecast.problems[0].severity is Severity.INFO
    assert "refused" in forecast.problems[0].detail.lower()


def test_a_source_slower_than_the_timeout_gives_a_notice_only(now: datetime) -> None:
    slow = Route(fixture("crtsh_exact_set_5.json", now), delay=5.0)
    with CtServer({"example.com": slow}) as server:
        started = datetime.now(timezone.utc)
        forecast = check_rate_limits(SET, LE, fetch=urllib_fetch, url=server.url, now=now,
                                     timeout=0.3)
        took = datetime.now(timezone.utc) - started
    assert names_of(forecast.problems) == ["CtUnavailable"]
    assert "timed out" in forecast.problems[0].detail
    assert took < timedelta(seconds=2)


def test_a_huge_body_gives_a_notice_only(now: datetime) -> None:
    row = json.loads(fixture("crtsh_exact_set_5.json", now))[0]
    rows = json.dumps([row] * (MAX_CT_BODY_BYTES // len(json.dumps(row)) + 10)).encode()
    assert len(rows) > MAX_CT_BODY_BYTES
    with CtServer({"example.com": rows}) as server:
        forecast = check_rate_limits(SET, LE, fetch=urllib_fetch, url=server.url, now=now)
    assert names_of(forecast.problems) == ["CtUnavailable"]
    assert "larger than" in forecast.problems[0].detail


@pytest.mark.parametrize("route", [
    Route(fixture("crtsh_error.html"), content_type="text/html"),
    Route(b'[{"issuer_name": "C=US, O=Let\'s Encrypt, CN=E7", "name_value": 1}]'),
    Route(b"[" * 50 + b"]" * 50),
    Route(b'{"message": "rate limited"}', status=429),
    Route(fixture("crtsh_error.html"), status=502, content_type="text/html"),
])
def test_garbage_or_an_http_error_gives_a_notice_only(route: Route) -> None:
    with CtServer({"example.com": route}) as server:
        forecast = check_rate_limits(SET, LE, fetch=urllib_fetch, url=server.url, now=NOW)
    assert names_of(forecast.problems) == ["CtUnavailable"]


def test_an_empty_answer_is_an_answer(now: datetime) -> None:
    with CtServer({"example.com": fixture("crtsh_empty.json")}) as server:
        forecast = check_rate_limits(SET, LE, fetch=urllib_fetch, url=server.url, now=now)
    assert forecast.problems == ()
    assert forecast.checked
    assert [u.counted for u in forecast.usages] == [0, 0]


def test_malformed_rows_from_the_server_are_skipped(now: datetime) -> None:
    with CtServer({"example.com": fixture("crtsh_malformed_rows.json", now)}) as server:
        result = lookup("example.com", fetch=urllib_fetch, url=server.url)
    assert result.answered
    assert result.skipped_rows == 12
    assert len(result.entries or ()) == 2


def test_an_ipv6_range_is_not_searched() -> None:
    def never(url: str, timeout: float) -> bytes:
        raise AssertionError(url)

    result = lookup("2001:db8::/64", fetch=never)
    assert not result.answered
    assert "IPv6" in (result.reason or "")


def test_a_fetch_error_keeps_its_message() -> None:
    def failing(url: str, timeout: float) -> bytes:
        raise CtFetchError("HTTP 503 from crt.sh")

    result = lookup("example.com", fetch=failing)
    assert (result.answered, result.reason) == (False, "HTTP 503 from crt.sh")


# -------------------------------------------------------------------- the cache


def test_one_lookup_per_registered_domain_is_shared_by_concurrent_runs(now: datetime) -> None:
    """Eight runs (www, api, ... under example.com) at once ask the server once."""
    slow = Route(fixture("crtsh_exact_set_5.json", now), delay=0.3)
    cache = CtCache()
    results: list[ct.CtForecast] = []
    lock = threading.Lock()
    with CtServer({"example.com": slow}) as server:

        def one_run(names: Sequence[str]) -> None:
            forecast = check_rate_limits(names, LE, fetch=urllib_fetch, url=server.url,
                                         now=now, cache=cache)
            with lock:
                results.append(forecast)

        runs = [threading.Thread(target=one_run, args=(SET,)) for _ in range(4)]
        runs += [threading.Thread(target=one_run, args=([f"h{i}.example.com"],))
                 for i in range(4)]
        for thread in runs:
            thread.start()
        for thread in runs:
            thread.join(timeout=10)
        requests = list(server.requests)
    assert len(requests) == 1
    assert cache.lookups == 1
    assert sum(names_of(f.problems) == ["ProductionExactSetLimit"] for f in results) == 4
    assert len(results) == 8


def test_an_unanswered_lookup_is_cached_too() -> None:
    calls: list[str] = []

    def failing(url: str, timeout: float) -> bytes:
        calls.append(url)
        raise CtFetchError("connection refused")

    cache = CtCache()
    for _ in range(3):
        check_rate_limits(SET, LE, fetch=failing, cache=cache, now=NOW)
    assert len(calls) == 1
    held = cache.get("example.com")
    assert held is not None
    assert not held.answered


def test_answers_are_shared_across_policies_and_clocks() -> None:
    """The cache holds every CA's entries and no clock: the predictor filters."""
    body = fixture("crtsh_exact_set_5.json", NOW)
    cache = CtCache()
    fetched: list[str] = []

    def fetch(url: str, timeout: float) -> bytes:
        fetched.append(url)
        return body

    soon = check_rate_limits(SET, LE, fetch=fetch, cache=cache, now=NOW)
    later = check_rate_limits(SET, LE, fetch=fetch, cache=cache, now=NOW + timedelta(hours=4))
    google = check_rate_limits(SET, POLICIES["google"], fetch=fetch, cache=cache, now=NOW)
    assert len(fetched) == 1
    assert names_of(soon.problems) == ["ProductionExactSetLimit"]
    assert "ProductionExactSetLimit" not in names_of(later.problems)
    assert not google.checked


def test_a_changed_policy_copy_still_filters_by_its_own_issuers() -> None:
    only_gts = replace(LE, issuer_organizations=("Google Trust Services",))
    body = fixture("crtsh_exact_set_5.json", NOW)
    forecast = check_rate_limits(SET, only_gts, fetch=lambda u, t: body, now=NOW)
    assert forecast.usages[0].counted == 1  # the one WE1 issuance of the set
