"""The Public Suffix List (https://publicsuffix.org/list/), as ``publicsuffixlist`` ships it.

Shared by the preflight identifier rules (Boulder refuses a name that is an ICANN
suffix) and the rate-limit estimates (a certificate counts against its registered
domain).  The list comes from the ``publicsuffixlist`` package, which pip keeps
current; its file is read here in one pass into one table for both sections (about
14 ms on first use, only on the paths that need it) instead of through the package's
two ``PublicSuffixList`` objects, which cost about 95 ms to build: each runs the
``idna`` codec on every one of the list's ten thousand rules.  Here the list keeps
its IDN rules in Unicode and a name's A-labels are decoded instead, only when it has
one.  The matching is the package's own (``PublicSuffixList._countpublic``: longest
suffix first, and at each length an exception rule, then a wildcard with its
implicit root, then an exact rule); tests/test_psl.py holds the two to the same
answers.
"""

from __future__ import annotations

import functools
import ipaddress
import os

# Bits of a rule's entry in the table: which kind of rule names this suffix, in
# which section.  A suffix can be named by several (``*.ck`` and ``!www.ck``).
_EXACT, _WILD, _EXCEPT = 1, 2, 4
_PRIVATE_SHIFT = 3  # the same three bits, for the private section
_ICANN_MASK = _EXACT | _WILD | _EXCEPT
_ALL_MASK = _ICANN_MASK | _ICANN_MASK << _PRIVATE_SHIFT


@functools.cache
def _table() -> tuple[dict[str, int], int]:
    """Every rule of the list, by its suffix (no ``!`` or ``*.``), and the most labels in one."""
    import publicsuffixlist

    # The package's own name for its copy of the list (1.x), else where 1.x keeps it.
    path = getattr(publicsuffixlist, "PSLFILE", None) or os.path.join(
        os.path.dirname(publicsuffixlist.__file__), "public_suffix_list.dat")
    table: dict[str, int] = {}
    most = 0
    shift = _PRIVATE_SHIFT  # the package counts a rule outside the ICANN section as private
    # Line by line: the file's 250 kB and its 17,000 lines are never all in memory at once.
    with open(path, encoding="utf-8", errors="surrogateescape") as file:
        for line in file:
            if line.startswith("//"):
                marker = line.rstrip()
                if marker == "// ===BEGIN ICANN DOMAINS===":
                    shift = 0
                elif marker == "// ===END ICANN DOMAINS===":
                    shift = _PRIVATE_SHIFT
                continue
            rule = line.lower().split(" ")[0].rstrip()
            if not rule:
                continue
            if rule[0] == "!":
                kind, suffix = _EXCEPT, rule[1:]
            elif rule.startswith("*."):
                kind, suffix = _WILD, rule[2:]
            else:
                kind, suffix = _EXACT, rule
            most = max(most, rule.count(".") + 1)
            table[suffix] = table.get(suffix, 0) | kind << shift
    return table, most


def _unicode(label: str) -> str:
    """An A-label as the list writes it (in Unicode); any other label as it is."""
    if label.startswith("xn--") and label.isascii():
        try:
            return label[4:].encode("ascii").decode("punycode")
        except UnicodeError:
            pass
    return label


def _public_labels(labels: list[str], mask: int, accept_unknown: bool) -> int:
    """How many of ``labels``' last labels are its public suffix; 0 when no rule names it."""
    table, most = _table()
    count = len(labels)
    keys = [_unicode(label) for label in labels] if "xn--" in "".join(labels) else labels
    if count == 1 and accept_unknown:
        return 1
    for start in range(max(0, count - (most + 1)), count):
        depth = count - start
        bits = table.get(".".join(keys[start:]), 0) & mask
        bits |= bits >> _PRIVATE_SHIFT  # either section's rule, as one kind
        if bits & _EXCEPT:
            return depth - 1
        if bits & _WILD:
            return depth + 1 if start > 0 else depth
        if bits & _EXACT:
            return depth
    return 1 if accept_unknown else 0


def _tail(name: str, *, mask: int, accept_unknown: bool, extra: int) -> str | None:
    """``name``'s public suffix and ``extra`` labels more; None when it has no such part.

    ``name`` is already :func:`_clean`; a name with an empty label has no suffix, as in
    the package.
    """
    labels = name.split(".")
    if "" in labels:
        return None
    depth = _public_labels(labels, mask, accept_unknown)
    if not depth or len(labels) < depth + extra:
        return None
    return ".".join(labels[-(depth + extra):])


def _public_suffix(name: str, *, icann_only: bool) -> str | None:
    """The list's public suffix of ``name``, or None when no rule names it (unknown TLD)."""
    return _tail(name, mask=_ICANN_MASK if icann_only else _ALL_MASK, accept_unknown=False,
                 extra=0)


def _clean(name: str) -> str:
    return name.strip().lower().rstrip(".").removeprefix("*.")


def is_icann_suffix(name: str) -> bool:
    """True when ``name`` is itself a suffix of the list's ICANN section (``co.uk``)."""
    name = _clean(name)
    return "." in name and _public_suffix(name, icann_only=True) == name


def is_private_suffix(name: str) -> bool:
    """True when ``name`` is a suffix of the list's private section (``github.io``)."""
    name = _clean(name)
    return (_public_suffix(name, icann_only=False) == name
            and _public_suffix(name, icann_only=True) != name)


def registered_domain(name: str) -> str:
    """The registered domain a name counts against for rate limits.

    Let's Encrypt counts by the registrable domain of the whole list (private
    section included: ``me.github.io`` is its own).  A wildcard counts as its base
    name; a name that is itself a suffix counts as itself.  An IPv4 address is its
    own registered domain and an IPv6 address counts as its /64, as Let's Encrypt's
    rate-limit page says.
    """
    name = _clean(name)
    try:
        ip = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        if ip.version == 6:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip)
    # The package's ``PublicSuffixList().privatesuffix(name)``: the suffix and one label.
    return _tail(name, mask=_ALL_MASK, accept_unknown=True, extra=1) or name
