"""certbot's renewal configuration, read as certbot reads it: one record per lineage.

certbot keeps every lineage's settings in ``<config-dir>/renewal/<name>.conf``
(``certbot/_internal/storage.py``, ``RenewableCert``), a ConfigObj file::

    version = 5.8.0
    archive_dir = /etc/letsencrypt/archive/example.com
    cert = /etc/letsencrypt/live/example.com/cert.pem
    privkey = /etc/letsencrypt/live/example.com/privkey.pem
    chain = /etc/letsencrypt/live/example.com/chain.pem
    fullchain = /etc/letsencrypt/live/example.com/fullchain.pem
    [renewalparams]
    account = 0123456789abcdef0123456789abcdef
    authenticator = webroot
    webroot_path = /var/www/a, /var/www/b
    server = https://acme-v02.api.letsencrypt.org/directory
    key_type = ecdsa
    [[webroot_map]]
    example.com = /var/www/a
    www.example.com = /var/www/b

The lineage's names are not in the file: certbot reads them from the current
certificate (the ``cert`` link), common name first, then the SANs.

:func:`parse_configobj` and :func:`parse_renewal_conf` are pure (text in,
records out); :func:`read_renewal_dir` only reads files.  Nothing here writes.
Where certbot's ``renewal.reconstitute`` would skip a file, the record is a
:class:`LineageError` naming the file and the reason, like certbot's log line.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Union

#: Let's Encrypt production: certbot's default ``server`` (``constants.CLI_DEFAULTS``).
CERTBOT_DEFAULT_SERVER = "https://acme-v02.api.letsencrypt.org/directory"
#: Let's Encrypt's ACMEv1 URL, which certbot replaces with its default (``renewal._restore_str``).
ACME_V1_SERVER = "https://acme-v01.api.letsencrypt.org/directory"
#: The four files every renewal configuration names (``storage.ALL_FOUR``).
ALL_FOUR = ("cert", "privkey", "chain", "fullchain")
#: Authenticators that take no plugin of their own, as certbot names them.
STANDALONE, WEBROOT, MANUAL = "standalone", "webroot", "manual"

Value = Union[str, list[str], "Section"]
Section = dict[str, Value]


class RenewalConfError(ValueError):
    """A renewal configuration file that is not valid ConfigObj syntax.

    Attributes:
        line: The 1-based line number, or None for the file as a whole.
        reason: What is wrong there.
    """

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {reason}" if line is not None else reason)
        self.line = line
        self.reason = reason


# ------------------------------------------------------------------ ConfigObj syntax


def _skip_spaces(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _value(raw: str, line: int) -> str | list[str]:
    """One ConfigObj value: a string, or a list when it has an unquoted comma.

    Items are bare (up to ``,`` or ``#``, stripped) or quoted with ``'`` or ``"``
    (no escapes); ``#`` outside quotes starts a comment; a lone ``,`` is an empty
    list and a trailing comma makes a one-item list (certbot writes
    ``pref_challs = dns-01,``).
    """
    text = raw.strip()
    if text.startswith(","):
        if _skip_spaces(text, 1) == len(text) or text[_skip_spaces(text, 1)] == "#":
            return []
        raise RenewalConfError(f"a value cannot start with a comma: {raw.strip()!r}", line)
    items: list[str] = []
    is_list = False
    i = 0
    while True:
        i = _skip_spaces(text, i)
        if i >= len(text) or text[i] == "#":
            if is_list and not items:
                raise RenewalConfError(f"empty list item in {raw.strip()!r}", line)
            break
        if text[i] in "'\"":
            end = text.find(text[i], i + 1)
            if end < 0:
                raise RenewalConfError(f"unterminated quote in {raw.strip()!r}", line)
            items.append(text[i + 1:end])
            i = end + 1
        else:
            start = i
            while i < len(text) and text[i] not in ",#":
                i += 1
            items.append(text[start:i].rstrip())
        i = _skip_spaces(text, i)
        if i < len(text) and text[i] == ",":
            is_list = True
            i = _skip_spaces(text, i + 1)
            if i < len(text) and text[i] == ",":
                raise RenewalConfError(f"empty list item in {raw.strip()!r}", line)
            continue
        if i < len(text) and text[i] != "#":
            raise RenewalConfError(f"unexpected text after a quoted value: {raw.strip()!r}",
                                   line)
        break
    if is_list:
        return items
    return items[0] if items else ""


def _key(raw: str, line: int) -> str:
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "'\"":
        key = key[1:-1]
    if not key:
        raise RenewalConfError("a key is empty", line)
    return key


def parse_configobj(text: str) -> Section:
    """Parse the ConfigObj subset certbot writes into nested dicts.

    Supported: ``key = value`` (bare, quoted, comma lists, ``'''triple'''``
    quotes spanning lines), ``#`` comments, ``[section]`` / ``[[subsection]]``
    nesting, quoted keys and section names.  Like ConfigObj, a duplicate key
    or section is an error.  Not supported: ``%(name)s`` interpolation, which
    certbot's files do not use.

    Raises:
        RenewalConfError: the text is not valid ConfigObj syntax.
    """
    root: Section = {}
    stack: list[Section] = [root]  # stack[d] is the section open at depth d
    lines = text.split("\n")
    number = 0
    while number < len(lines):
        raw = lines[number]
        number += 1
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            depth = len(stripped) - len(stripped.lstrip("["))
            rest = stripped[depth:]
            close = rest.find("]")
            after = rest[close:] if close >= 0 else ""
            closing = len(after) - len(after.lstrip("]"))
            trailer = after[closing:].strip()
            name = rest[:close].strip() if close >= 0 else ""
            if len(name) >= 2 and name[0] == name[-1] and name[0] in "'\"":
                name = name[1:-1]
            if not name or closing != depth or (trailer and not trailer.startswith("#")):
                raise RenewalConfError(f"malformed section header {stripped!r}", number)
            if depth > len(stack):
                raise RenewalConfError(f"section {stripped!r} is nested too deeply", number)
            parent = stack[depth - 1]
            if name in parent:
                raise RenewalConfError(f"duplicate section {name!r}", number)
            section: Section = {}
            parent[name] = section
            del stack[depth:]
            stack.append(section)
            continue
        key_text, eq, rest = raw.partition("=")
        if not eq:
            raise RenewalConfError(f"neither 'key = value' nor a [section]: {stripped!r}",
                                   number)
        key = _key(key_text, number)
        value: Value
        lead = rest.lstrip()
        quote = lead[:3]
        if quote in ("'''", '"""'):
            start_line = number
            body = lead[3:]
            end = body.find(quote)
            parts: list[str] = []
            while end < 0:
                parts.append(body)
                if number >= len(lines):
                    raise RenewalConfError("unterminated triple-quoted value", start_line)
                body = lines[number]
                number += 1
                end = body.find(quote)
            parts.append(body[:end])
            tail = body[end + 3:].strip()
            if tail and not tail.startswith("#"):
                raise RenewalConfError(f"unexpected text after a triple-quoted value: {tail!r}",
                                       number)
            value = "\n".join(parts)
        else:
            value = _value(rest, number)
        section = stack[-1]
        if key in section:
            raise RenewalConfError(f"duplicate key {key!r}", number)
        section[key] = value
    return root


# ------------------------------------------------------------------ lineages


@dataclass(frozen=True, slots=True)
class Lineage:
    """One certbot lineage, as ``certbot renew`` would renew it.

    Attributes:
        name: The lineage (cert) name: the configuration file's name without ``.conf``.
        conf_path: The renewal configuration file.
        cert_path: Its ``cert`` entry (``live/NAME/cert.pem``, a link to the current version).
        names: The identifiers of the current certificate, common name first (as
            certbot renews them); empty until read with :func:`lineage_names`.
        authenticator: ``standalone``, ``webroot``, ``manual``, ``nginx``, ``dns-...``.
        installer: The installer plugin, if any (``nginx``, ``apache``).
        server: The ACME directory it renews against (certbot's default when absent).
        account: certbot's account id on that server.
        key_type: ``rsa`` or ``ecdsa`` (``rsa`` when absent, as certbot before 1.25 wrote).
        rsa_key_size: RSA modulus bits (certbot's default 2048).
        elliptic_curve: ``secp256r1`` (default), ``secp384r1``, ``secp521r1``.
        http01_port: The standalone responder's port (80).
        http01_address: The standalone responder's address ("" = all).
        webroot_path: ``webroot_path``: the last one serves every name not in the map.
        webroot_map: ``[[webroot_map]]``: name -> document root.
        manual_auth_hook: The manual plugin's auth hook command.
        manual_cleanup_hook: Its cleanup hook command.
        pref_challs: Preferred challenge types, certbot's spelling normalized (``dns-01``).
        pre_hook: Run by certbot before renewing (not run by acmedryrun).
        post_hook: Run by certbot after renewing (not run by acmedryrun).
        deploy_hook: Run by certbot after a successful renewal (``renew_hook`` in the file).
        reuse_key: Whether certbot renews with the same private key.
        autorenew: False when ``certbot renew`` skips it unless forced.
        required_profile: The ACME profile certbot insists on.
        preferred_profile: The ACME profile certbot asks for when the CA offers it.
    """

    name: str
    conf_path: str
    cert_path: str
    authenticator: str
    server: str
    names: tuple[str, ...] = ()
    installer: str | None = None
    account: str | None = None
    key_type: str = "rsa"
    rsa_key_size: int = 2048
    elliptic_curve: str = "secp256r1"
    http01_port: int = 80
    http01_address: str = ""
    webroot_path: tuple[str, ...] = ()
    webroot_map: tuple[tuple[str, str], ...] = ()
    manual_auth_hook: str | None = None
    manual_cleanup_hook: str | None = None
    pref_challs: tuple[str, ...] = ()
    pre_hook: str | None = None
    post_hook: str | None = None
    deploy_hook: str | None = None
    reuse_key: bool = False
    autorenew: bool = True
    required_profile: str | None = None
    preferred_profile: str | None = None

    def webroot_for(self, name: str) -> str | None:
        """The document root certbot's webroot plugin uses for ``name``.

        The map first; else the last ``webroot_path`` (``webroot._set_webroots``);
        None when neither has one (certbot then stops: it cannot prompt).
        """
        mapped = dict(self.webroot_map).get(name)
        if mapped is not None:
            return mapped
        return self.webroot_path[-1] if self.webroot_path else None

    @property
    def hooks_not_run(self) -> tuple[str, ...]:
        """This lineage's pre/post/deploy hooks, which a dry run here does not run."""
        return tuple(kind for kind, cmd in (("pre_hook", self.pre_hook),
                                            ("post_hook", self.post_hook),
                                            ("deploy_hook", self.deploy_hook)) if cmd)


@dataclass(frozen=True, slots=True)
class LineageError:
    """A renewal configuration file certbot would skip ("parse failure"), and why.

    Attributes:
        name: The lineage name (the file's name without ``.conf``).
        conf_path: The file.
        reason: What is wrong, in the words of certbot's log where it has some.
    """

    name: str
    conf_path: str
    reason: str


_CHALLENGE_ALIASES = {"http": "http-01", "dns": "dns-01"}
_CHALLENGE_TYPES = ("http-01", "dns-01", "tls-alpn-01", "dns-persist-01")


def _text(params: Mapping[str, Value], key: str) -> str | None:
    """A string item; certbot's ``None`` string is None (``renewal._restore_str``)."""
    value = params.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RenewalConfError(f"[renewalparams] {key} must be a single value")
    return None if value == "None" else value


def _integer(params: Mapping[str, Value], key: str, default: int) -> int:
    value = _text(params, key)
    if value is None:
        return default  # certbot restores http01_port = None as its default (80)
    try:
        return int(value)
    except ValueError:
        raise RenewalConfError(f"Expected a numeric value for {key}") from None


def _boolean(params: Mapping[str, Value], key: str, default: bool) -> bool:
    value = _text(params, key)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise RenewalConfError(f"Expected True or False for {key} but found {value}")
    return value.lower() == "true"


def _strings(params: Mapping[str, Value], key: str) -> tuple[str, ...]:
    value = params.get(key)
    if value is None:
        return ()
    if isinstance(value, dict):
        raise RenewalConfError(f"[renewalparams] {key} must be a value, not a section")
    return (value,) if isinstance(value, str) else tuple(value)


def _pref_challs(params: Mapping[str, Value]) -> tuple[str, ...]:
    challs = [_CHALLENGE_ALIASES.get(c.strip(), c.strip()) for c in _strings(params,
                                                                               "pref_challs")]
    unknown = [c for c in challs if c not in _CHALLENGE_TYPES]
    if unknown:
        raise RenewalConfError(f"Unrecognized challenges: {', '.join(unknown)}")
    return tuple(challs)


def parse_renewal_conf(text: str, *, name: str, conf_path: str) -> Lineage:
    """One renewal configuration file's text -> its :class:`Lineage` (without names).

    Follows ``storage.RenewableCert.__init__`` and ``renewal.reconstitute``: the
    four file entries and ``[renewalparams]`` with an ``authenticator`` are
    required; typed items must parse; ``renew_hook`` is the deploy hook;
    an ACMEv1 ``server`` becomes certbot's default.

    Raises:
        RenewalConfError: the file is not one certbot would renew from.
    """
    conf = parse_configobj(text)
    missing = [kind for kind in ALL_FOUR if not isinstance(conf.get(kind), str)]
    if missing:
        raise RenewalConfError(
            f"renewal config file is missing a required file reference ({', '.join(missing)})")
    params = conf.get("renewalparams")
    if not isinstance(params, dict):
        raise RenewalConfError("renewal config file lacks renewalparams")
    authenticator = _text(params, "authenticator")
    if not authenticator:
        raise RenewalConfError("renewal config file does not specify an authenticator")
    server = _text(params, "server") or CERTBOT_DEFAULT_SERVER
    if server == ACME_V1_SERVER:
        server = CERTBOT_DEFAULT_SERVER
    webroot_map = params.get("webroot_map", {})
    if not isinstance(webroot_map, dict) or not all(
            isinstance(v, str) for v in webroot_map.values()):
        raise RenewalConfError("[[webroot_map]] must map names to single paths")
    return Lineage(
        name=name,
        conf_path=conf_path,
        cert_path=str(conf["cert"]),
        authenticator=authenticator,
        server=server,
        installer=_text(params, "installer"),
        account=_text(params, "account"),
        key_type=_text(params, "key_type") or "rsa",
        rsa_key_size=_integer(params, "rsa_key_size", 2048),
        elliptic_curve=_text(params, "elliptic_curve") or "secp256r1",
        http01_port=_integer(params, "http01_port", 80),
        http01_address=_text(params, "http01_address") or "",
        webroot_path=_strings(params, "webroot_path"),
        webroot_map=tuple((k, str(v)) for k, v in webroot_map.items()),
        manual_auth_hook=_text(params, "manual_auth_hook"),
        manual_cleanup_hook=_text(params, "manual_cleanup_hook"),
        pref_challs=_pref_challs(params),
        pre_hook=_text(params, "pre_hook"),
        post_hook=_text(params, "post_hook"),
        deploy_hook=_text(params, "renew_hook") or _text(params, "deploy_hook"),
        reuse_key=_boolean(params, "reuse_key", False),
        autorenew=_boolean(params, "autorenew", True),
        required_profile=_text(params, "required_profile"),
        preferred_profile=_text(params, "preferred_profile"),
    )


def lineage_names(cert_pem: bytes) -> tuple[str, ...]:
    """The identifiers certbot renews a certificate for: its CN first, then its SANs.

    As ``san.from_x509`` (via ``acme.crypto_util.get_identifiers_from_x509``):
    DNS names (the CN first, once), then IP addresses.

    Raises:
        ValueError: not a PEM certificate.
    """
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        dns_names: list[str] = []
        ips: list[str] = []
    else:
        dns_names = list(san.get_values_for_type(x509.DNSName))
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    if cns:
        cn = cns[0]
        try:
            ipaddress.ip_address(cn)
        except ValueError:
            dns_names = [cn, *(d for d in dns_names if d != cn)]
    return tuple(dns_names + ips)


def renewal_files(config_dir: str | os.PathLike[str],
                  cert_names: Sequence[str] = ()) -> list[Path]:
    """The renewal configuration files ``certbot renew`` processes, in its order.

    Every ``renewal/*.conf``, sorted (``storage.renewal_conf_files``); with
    ``cert_names``, just those, in the order given.

    Raises:
        FileNotFoundError: no ``renewal`` directory, or no file for a given name.
    """
    renewal = Path(config_dir) / "renewal"
    if not renewal.is_dir():
        raise FileNotFoundError(f"{renewal} is not a directory")
    if not cert_names:
        return sorted(renewal.glob("*.conf"))
    cert_names = tuple(dict.fromkeys(cert_names))  # each lineage once
    paths = [renewal / f"{name}.conf" for name in cert_names]
    for name, path in zip(cert_names, paths, strict=True):
        if not os.path.lexists(path):
            raise FileNotFoundError(f"No certificate found with name {name} (expected {path}).")
    return paths


def read_lineage(path: str | os.PathLike[str]) -> Lineage | LineageError:
    """Read one renewal configuration file and its current certificate's names.

    Never raises for a broken file: what certbot would skip is a :class:`LineageError`.
    """
    conf_path = os.fspath(path)
    name = Path(conf_path).name.removesuffix(".conf")
    try:
        text = Path(conf_path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        return LineageError(name, conf_path, f"cannot read it: {exc.strerror or exc}")
    except UnicodeDecodeError as exc:
        return LineageError(name, conf_path, f"not UTF-8 text: {exc}")
    try:
        lineage = parse_renewal_conf(text, name=name, conf_path=conf_path)
    except RenewalConfError as exc:
        return LineageError(name, conf_path, str(exc))
    try:
        pem = Path(lineage.cert_path).read_bytes()
    except OSError as exc:
        return LineageError(name, conf_path,
                            f"its cert {lineage.cert_path} cannot be read: {exc.strerror or exc}")
    try:
        names = lineage_names(pem)
    except ValueError as exc:
        return LineageError(name, conf_path,
                            f"its cert {lineage.cert_path} is not a PEM certificate: {exc}")
    if not names:
        return LineageError(name, conf_path, f"its cert {lineage.cert_path} names nothing")
    return replace(lineage, names=names)


def read_renewal_dir(config_dir: str | os.PathLike[str],
                     cert_names: Iterable[str] = ()) -> list[Lineage | LineageError]:
    """Every lineage of a certbot configuration directory, in ``certbot renew``'s order.

    Raises:
        FileNotFoundError: no ``renewal`` directory, or no file for a given name.
    """
    return [read_lineage(path) for path in renewal_files(config_dir, tuple(cert_names))]


__all__ = [
    "ACME_V1_SERVER",
    "CERTBOT_DEFAULT_SERVER",
    "Lineage",
    "LineageError",
    "RenewalConfError",
    "lineage_names",
    "parse_configobj",
    "parse_renewal_conf",
    "read_lineage",
    "read_renewal_dir",
    "renewal_files",
]
