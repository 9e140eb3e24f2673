"""acmedryrun.psl gives the answers ``publicsuffixlist`` gives, for every rule of the list.

psl.py reads the package's own file in one pass instead of building the package's two
``PublicSuffixList`` objects (about 95 ms of every CLI run).  The package stays the
oracle: each rule of the list, names under it, its wildcard's expansions and its
exceptions, IDN names in both forms and unknown TLDs are asked of both.
"""

from __future__ import annotations

import functools
import random

import pytest
from publicsuffixlist import PublicSuffixList

from acmedryrun import psl


@functools.cache
def _oracle() -> tuple[PublicSuffixList, PublicSuffixList]:
    return PublicSuffixList(only_icann=True), PublicSuffixList()


def _expected(name: str) -> tuple[bool, bool, str]:
    """What psl.py answered, when it built the package's objects (commit ec3ca05)."""
    icann, full = _oracle()
    clean = psl._clean(name)
    is_icann = "." in clean and icann.publicsuffix(clean, accept_unknown=False) == clean
    is_private = (full.publicsuffix(clean, accept_unknown=False) == clean
                  and icann.publicsuffix(clean, accept_unknown=False) != clean)
    return is_icann, is_private, full.privatesuffix(clean) or clean


def _names() -> list[str]:
    table, _ = psl._table()
    rng = random.Random(8555)  # noqa: S311 - a fixed sample of names, not a secret
    names: set[str] = set()
    for rule in table:
        forms = [rule] if rule.isascii() else [rule, rule.encode("idna").decode("ascii")]
        for suffix in forms:  # IDN rules as the list writes them and as A-labels
            names.update({suffix, f"x.{suffix}", f"a.b.{suffix}", f"www.{suffix}"})
            parent = suffix.partition(".")[2]
            if parent:
                names.add(parent)
    for _ in range(2000):  # random names over the list's labels, unknown ones mixed in
        labels = [rng.choice(["", "xn--p1ai", "zz", "com", "ck", "www", "kawasaki", "jp",
                              "city", "github", "io", "co", "uk", "example", "公司", "cn"])
                  for _ in range(rng.randint(1, 5))]
        names.add(".".join(labels))
    names.update({"", ".", "com.", "CO.UK", "Example.Co.Uk.", "*.co.uk", "*.example.com",
                  "a..com", "localhost", "unknown-tld-zz", "a.unknown-tld-zz",
                  " github.io ", "my.github.io"})
    return sorted(names)


def test_every_rule_and_the_names_around_it_get_the_packages_answers() -> None:
    names = _names()
    assert len(names) > 45_000  # every rule (IDN ones twice), four names under it, its parent
    answers = {name: (_expected(name), (psl.is_icann_suffix(name), psl.is_private_suffix(name),
                                         psl.registered_domain(name))) for name in names}
    assert {name: pair for name, pair in answers.items() if pair[0] != pair[1]} == {}


@pytest.mark.parametrize(("name", "icann", "private", "registered"), [
    ("co.uk", True, False, "co.uk"),
    ("example.co.uk", False, False, "example.co.uk"),
    ("www.example.co.uk", False, False, "example.co.uk"),
    ("github.io", False, True, "github.io"),
    ("me.github.io", False, False, "me.github.io"),
    ("*.me.github.io", False, False, "me.github.io"),
    ("www.ck", False, False, "www.ck"),          # !www.ck: the exception is registrable
    ("anything.ck", True, False, "anything.ck"),  # *.ck
    ("a.anything.ck", False, False, "a.anything.ck"),
    ("xn--p1ai", False, False, "xn--p1ai"),       # a TLD: no dot, not "an ICANN suffix" here
    ("xn--h1alffa9f.xn--p1ai", False, False, "xn--h1alffa9f.xn--p1ai"),
    ("example.invalid-tld", False, False, "example.invalid-tld"),
    ("192.0.2.7", False, False, "192.0.2.7"),
    ("2001:db8::1", False, False, "2001:db8::/64"),
])
def test_the_rules_preflight_and_the_rate_limit_estimates_lean_on(
        name: str, icann: bool, private: bool, registered: str) -> None:
    assert (psl.is_icann_suffix(name), psl.is_private_suffix(name),
            psl.registered_domain(name)) == (icann, private, registered)
