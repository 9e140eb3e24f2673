"""Every problem name acmedryrun can report: whose fault it is, what it means, what to do.

The registry has two halves.  The classifier's tables (:mod:`acmedryrun.classify`:
``ACME_TYPES``, ``TRANSPORT``, ``STUCK``, ``SOLVER``, ... and its single rules) are
read as they are, so their names, causes, confidences and hints cannot drift from
what a run reports; only the words for *when* each row applies are written here,
and a table or rule without them fails the generator.  The problems that the
preflight checks, the production comparison, the rate-limit forecasts and the
certbot command build themselves are listed in :data:`_NAMED`, one :class:`Source`
each; a test greps the package for every problem-name literal and fails on one this
registry lacks (or lists in vain).

``docs/TAXONOMY.md`` is :func:`render_markdown`'s output -- regenerate it with
``python -m acmedryrun.taxonomy --write``; a test fails when the committed file
differs -- and ``acmedryrun explain NAME`` prints :func:`explain`.  Pure: no I/O
but :func:`main`'s.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acmedryrun import classify
from acmedryrun.classify import Rule, StuckState, TransportKind
from acmedryrun.deadline import Party
from acmedryrun.errors import UsageError
from acmedryrun.report import Cause, Confidence, Severity, SolverErrorKind, Step

__all__ = ["CATEGORIES", "Entry", "Source", "entry", "explain", "names", "registry",
           "render_markdown"]

CLIENT, STAGING, NOBODY = Cause.CLIENT, Cause.STAGING, None
FATAL, ERROR, WARNING, INFO = Severity.FATAL, Severity.ERROR, Severity.WARNING, Severity.INFO
HIGH, MEDIUM, LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW
#: Where the document says a problem is found (``docs/TAXONOMY.md`` is relative to it).
DOCUMENT = "docs/TAXONOMY.md"


@dataclass(frozen=True, slots=True)
class Source:
    """One way a problem of some name arises.

    Attributes:
        origin: Where it is decided: ``classify.ACME_TYPES``, ``preflight.caa``, ...
        when: What happened, in words.
        cause: ``client``, ``staging``, or None for a notice that is nobody's fault.
        severities: The severities it is reported with.
        steps: The steps it is reported at; empty: the step whose request failed.
        confidence: How sure the blame is.
        hint: What to do (the classifier's own words for its rows; for the others,
            the gist of the hint the report carries, which adds the particulars).
    """

    origin: str
    when: str
    cause: Cause | None
    severities: tuple[Severity, ...]
    steps: tuple[Step, ...]
    confidence: Confidence
    hint: str


@dataclass(frozen=True, slots=True)
class Entry:
    """One problem name: its category, meaning, and every way it arises."""

    name: str
    category: str
    meaning: str
    sources: tuple[Source, ...]

    @property
    def causes(self) -> tuple[Cause | None, ...]:
        """The causes of its sources, each once, in order."""
        return tuple(dict.fromkeys(s.cause for s in self.sources))


# --------------------------------------------------------------------------- categories

SYNTAX = "Identifier syntax (bad input)"
IDENTIFIERS = "Identifiers and the CA's policy"
DNS = "DNS"
CAA = "CAA"
SELF_CHECK = "Self-check"
CA_ANSWERS = "The CA's problem documents"
REACHING = "Reaching the CA"
VALIDATION = "Validation"
PROGRESS = "Stuck objects and deadlines"
SOLVERS = "Solvers and hooks"
ACCOUNT = "The account"
RESULT = "The issued chain and cleanup"
PRODUCTION = "The production twin"
LIMITS = "Production's rate limits"
RENEWAL = "Renewal (ARI)"
CERTBOT = "certbot installations"
#: The document's sections, in order.
CATEGORIES = (SYNTAX, IDENTIFIERS, DNS, CAA, SELF_CHECK, CA_ANSWERS, REACHING, VALIDATION,
              PROGRESS, SOLVERS, ACCOUNT, RESULT, PRODUCTION, LIMITS, RENEWAL, CERTBOT)

#: name -> (category, what it means).  Every registered name needs one.
_META: Mapping[str, tuple[str, str]] = {
    # -- identifier syntax: usage errors of dry_run() and the CLI
    "TrailingDot": (SYNTAX, "The name ends with a dot; ACME identifiers are written"
                    " without one."),
    "BadWildcard": (SYNTAX, "A '*' anywhere but as the whole leftmost label (RFC 8555"
                    " section 7.1.3)."),
    "InvalidName": (SYNTAX, "The name breaks the DNS name syntax: a label that is empty,"
                    " longer than 63 octets or not letters, digits and hyphens; an A-label"
                    " that does not decode; Unicode that IDNA 2008 cannot convert; an"
                    " all-digit last label. With a known CA, also a label in the reserved"
                    " '??--' form."),
    "NameTooLong": (SYNTAX, "The name is longer than 253 octets (RFC 1035 section 2.3.4)."),
    # -- identifiers and policy
    "NotFullyQualified": (IDENTIFIERS, "A single-label name: public CAs issue only for"
                          " fully qualified names."),
    "InternalName": (IDENTIFIERS, "A name under a reserved or internal TLD (.local, .test,"
                     " .internal, home.arpa, ...), which public CAs refuse."),
    "PublicSuffix": (IDENTIFIERS, "The name is itself a public suffix (like a TLD):"
                     " nobody can own it, so nobody can get a certificate for it."),
    "ProviderSuffix": (IDENTIFIERS, "The name is a hosting provider's public suffix"
                       " (github.io, ...): only the provider can validate it."),
    "IpNotSupported": (IDENTIFIERS, "The CA does not issue for IP addresses."),
    "IpReserved": (IDENTIFIERS, "A private or reserved IP address, which a public CA"
                   " cannot validate."),
    "TooManyLabels": (IDENTIFIERS, "More labels than the CA allows in one name."),
    "TooManyNames": (IDENTIFIERS, "More names in one certificate than the CA allows."),
    "DuplicateName": (IDENTIFIERS, "The same name is listed twice (after IDNA conversion"
                      " and lowercasing)."),
    "WildcardNeedsDns01": (IDENTIFIERS, "A wildcard name with a challenge type other than"
                           " dns-01, which can never validate it (RFC 8555 section"
                           " 7.1.3)."),
    "IpNeedsHttpOrTlsAlpn": (IDENTIFIERS, "An IP address with dns-01, which cannot"
                             " validate one (RFC 8738 section 7)."),
    # -- DNS
    "DnsNxDomain": (DNS, "The name does not exist in DNS."),
    "DnsDanglingCname": (DNS, "The name is an alias (CNAME) whose target does not exist."),
    "DnsCnameLoop": (DNS, "The name's aliases loop, or the chain is too long to follow."),
    "DnsServfail": (DNS, "The name's DNS lookup fails with SERVFAIL: broken DNSSEC or an"
                    " authoritative server that does not answer."),
    "DnsNoAddress": (DNS, "The name has no A or AAAA record, which http-01 and tls-alpn-01"
                     " need."),
    "DnsZoneMissing": (DNS, "No zone can hold the dns-01 TXT record: the domain is not"
                       " registered (the negative answer comes from the TLD or the root)."),
    "DnsAaaaFailed": (DNS, "The AAAA lookup fails while the A lookup works."),
    "DnsResolverRefused": (DNS, "The resolver refused the query (REFUSED, NOTIMP, ...), so"
                           " the name's DNS was not checked."),
    "DnsResolverUnreachable": (DNS, "The resolver did not answer, so the DNS, CAA and"
                               " self-checks were skipped."),
    "DnsCname": (DNS, "The name is an alias (CNAME): the records at the end of the chain"
                 " are the ones that count."),
    "Ipv6Preferred": (DNS, "The name has AAAA records: Let's Encrypt validates over IPv6"
                      " first."),
    # -- CAA
    "CaaForbidden": (CAA, "A CAA record forbids this CA from issuing for the name (RFC 8659"
                     " section 4.2)."),
    "CaaUnknownCriticalTag": (CAA, "A CAA record with the critical flag and a tag the CA"
                              " does not know: the CA must not issue (RFC 8659 section"
                              " 4.1)."),
    "CaaValidationMethod": (CAA, "The CAA records allow the CA only with"
                            " validationmethods this run does not use (RFC 8657 section"
                            " 4)."),
    "CaaLookupFailed": (CAA, "The CAA lookup failed (SERVFAIL, ...): CAs refuse to issue"
                        " when it does."),
    "CaaAccountUri": (CAA, "The CAA records bind issuance to one ACME account (accounturi,"
                      " RFC 8657 section 3)."),
    "CaaIdentityUnknown": (CAA, "The CAA records could not be checked: the CA's issuer"
                           " domain is unknown (no meta.caaIdentities, no"
                           " --caa-identity)."),
    "CaaAccountUriStagingOnly": (CAA, "The CAA records bind issuance to staging accounts"
                                 " only: production would refuse."),
    "CaaAccountUriProductionOnly": (CAA, "The CAA records bind issuance to a production"
                                    " account, which a staging run cannot use."),
    "CaaRefusedStagingAccount": (CAA, "Staging refused for CAA because the records bind"
                                 " issuance to the production account: an artefact of"
                                 " testing on staging."),
    # -- self-check
    "SelfCheckConnectionRefused": (SELF_CHECK, "This machine's GET of the challenge file"
                                   " was refused: nothing listens there."),
    "SelfCheckTimeout": (SELF_CHECK, "This machine's GET of the challenge file timed out."),
    "SelfCheckUnreachable": (SELF_CHECK, "This machine has no route to one of the name's"
                             " addresses."),
    "SelfCheckHttpsOnly": (SELF_CHECK, "Port 80 refuses while 443 accepts: http-01 always"
                           " starts with plain HTTP on port 80."),
    "SelfCheckTlsError": (SELF_CHECK, "The HTTPS server a redirect led to failed the TLS"
                          " handshake."),
    "SelfCheckBadResponse": (SELF_CHECK, "The server did not answer with valid HTTP."),
    "SelfCheckNotFound": (SELF_CHECK, "The web server answers 404 for the challenge file."),
    "SelfCheckHttpStatus": (SELF_CHECK, "The web server answers the challenge file with an"
                            " error status."),
    "SelfCheckWrongContent": (SELF_CHECK, "The challenge file is served with other"
                              " content than the key authorization."),
    "SelfCheckBadRedirect": (SELF_CHECK, "A redirect the CA would not follow: more than 10,"
                             " another port or scheme, an IP address, a bad status."),
    "SelfCheckNoAddress": (SELF_CHECK, "The name has no address to fetch the challenge"
                           " file from."),
    "SelfCheckTxtMissing": (SELF_CHECK, "The dns-01 TXT record did not appear at the"
                            " resolver in time."),
    # -- the CA's problem documents
    "BadNonceStorm": (CA_ANSWERS, "The CA kept rejecting fresh nonces (badNonce) after every"
                      " retry."),
    "ServerInternal": (CA_ANSWERS, "The CA reported an internal error (serverInternal)."),
    "RejectedIdentifier": (CA_ANSWERS, "The CA will not issue for this name"
                           " (rejectedIdentifier)."),
    "UnsupportedIdentifier": (CA_ANSWERS, "The CA does not issue for this kind of"
                              " identifier (unsupportedIdentifier)."),
    "BadCsr": (CA_ANSWERS, "The CA rejected the CSR (badCSR)."),
    "BadPublicKey": (CA_ANSWERS, "The CA rejected a public key (badPublicKey)."),
    "BadSignatureAlgorithm": (CA_ANSWERS, "The CA does not accept the JWS signature"
                              " algorithm (badSignatureAlgorithm)."),
    "InvalidContact": (CA_ANSWERS, "The CA rejected the contact address (invalidContact)."),
    "UnsupportedContact": (CA_ANSWERS, "The CA does not support the contact URL scheme"
                           " (unsupportedContact)."),
    "ExternalAccountRequired": (CA_ANSWERS, "The CA requires external account binding"
                                " (externalAccountRequired, RFC 8555 section 7.3.4)."),
    "UserActionRequired": (CA_ANSWERS, "The CA needs a person to act first, e.g. accept new"
                           " terms (userActionRequired)."),
    "AgreementRequired": (CA_ANSWERS, "The CA requires agreeing to its terms of service"
                          " (agreementRequired)."),
    "AccountDoesNotExist": (CA_ANSWERS, "No account exists for this key at the CA"
                            " (accountDoesNotExist)."),
    "OrderNotReady": (CA_ANSWERS, "The order was finalized before all its authorizations"
                      " were valid (orderNotReady)."),
    "AlreadyReplaced": (CA_ANSWERS, "The certificate named in 'replaces' was already"
                        " replaced (alreadyReplaced, RFC 9773)."),
    "InvalidProfile": (CA_ANSWERS, "The CA does not offer the requested profile"
                       " (invalidProfile)."),
    "AlreadyRevoked": (CA_ANSWERS, "The certificate is already revoked (alreadyRevoked)."),
    "BadRevocationReason": (CA_ANSWERS, "The CA does not accept the revocation reason"
                            " (badRevocationReason)."),
    "CaConflict": (CA_ANSWERS, "The CA reported a conflict with its own state (conflict)."),
    "Malformed": (CA_ANSWERS, "The CA rejected a request as malformed."),
    "CaLostObject": (CA_ANSWERS, "The CA answered 'not found' for a URL it handed out"
                     " itself."),
    "CaLostAccount": (CA_ANSWERS, "The CA said the account this run had just created does"
                      " not exist."),
    "ServerErrorStatus": (CA_ANSWERS, "A problem document that blames the request, sent"
                          " with a server-error status: the CA failed."),
    "RateLimited": (CA_ANSWERS, "A rate limit was hit (rateLimited, or HTTP 429)."),
    "ServiceBusy": (CA_ANSWERS, "The CA shed load ('service busy')."),
    "UnknownAcmeError": (CA_ANSWERS, "A problem type acmedryrun does not know."),
    # -- reaching the CA
    "ServerUnavailable": (REACHING, "An error page instead of an answer (HTTP 502, 503 or"
                          " 504)."),
    "ServerError": (REACHING, "A server error without a problem document."),
    "UnexpectedHttpStatus": (REACHING, "An error status without the problem document RFC"
                             " 8555 section 6.7 requires."),
    "UnexpectedRedirect": (REACHING, "A redirect, which ACME traffic never follows."),
    "DirectoryRedirected": (REACHING, "The directory URL redirects elsewhere."),
    "DirectoryNotFound": (REACHING, "Nothing answers as an ACME directory at the URL."),
    "NotAnAcmeDirectory": (REACHING, "The URL answers, but not with an ACME directory."),
    "StagingUnreachable": (REACHING, "No HTTP answer from the staging CA, while the network"
                           " itself works (or nothing can tell)."),
    "CaUnreachable": (REACHING, "Neither staging nor production can be reached from this"
                      " machine."),
    "StagingCertificateInvalid": (REACHING, "Staging's TLS certificate fails verification"
                                  " while production's passes."),
    "TrustStoreStale": (REACHING, "TLS verification fails for staging and production alike:"
                        " this machine's trust store is at fault."),
    "TlsVerificationFailed": (REACHING, "The CA's TLS certificate fails verification, and"
                              " there is no production twin to compare with."),
    "NetworkBlocksCa": (REACHING, "A proxy or filter answers in the CA's place, for staging"
                        " and production alike."),
    "MalformedResponse": (REACHING, "A response that breaks RFC 8555."),
    "CaPointedAtProduction": (REACHING, "The staging CA sent the run towards a production"
                              " CA's host."),
    "ProfileNotOffered": (REACHING, "The run asks for a profile the staging directory does"
                          " not list."),
    # -- validation
    "ValidationConnection": (VALIDATION, "The CA could not connect to the server for the"
                             " challenge (connection)."),
    "ValidationDns": (VALIDATION, "The CA's DNS lookup for the challenge failed (dns)."),
    "ValidationTls": (VALIDATION, "The TLS handshake for the challenge failed (tls)."),
    "Unauthorized": (VALIDATION, "The CA found the wrong challenge response, or refused the"
                     " account (unauthorized)."),
    "ValidationIncorrectResponse": (VALIDATION, "The challenge response did not match"
                                    " (incorrectResponse)."),
    "ValidationUnknownHost": (VALIDATION, "The CA could not resolve the name"
                              " (unknownHost)."),
    "ValidationFailed": (VALIDATION, "The CA marked a validation invalid without an error"
                         " acmedryrun knows."),
    "AuthorizationInvalid": (VALIDATION, "An authorization (or order) in a state it cannot"
                             " be in, with no error to explain it."),
    "AuthorizationReused": (VALIDATION, "The CA kept serving a valid authorization after"
                            " it was deactivated: the name was not validated today."),
    # -- progress
    "AuthorizationStuckPending": (PROGRESS, "The challenge was answered but the"
                                  " authorization stayed pending until the deadline."),
    "OrderStuckProcessing": (PROGRESS, "The order was finalized but stayed processing until"
                             " the deadline."),
    "OrderStuckPending": (PROGRESS, "Every authorization was valid but the order never"
                          " became ready."),
    "DeadlineExceeded": (PROGRESS, "The run's one deadline expired while waiting on a CA."),
    "SolverDeadlineExceeded": (PROGRESS, "The run's deadline expired while the local solver"
                               " or its hook was working."),
    "PreflightDeadlineExceeded": (PROGRESS, "The local DNS and CAA checks used up the run's"
                                  " deadline."),
    "StagingUnstable": (PROGRESS, "The run went through, but only after retrying staging"
                        " faults."),
    # -- solvers
    "SolverPortInUse": (SOLVERS, "The challenge responder's port is taken."),
    "SolverPermissionDenied": (SOLVERS, "The challenge responder may not bind its port."),
    "WebrootNotWritable": (SOLVERS, "The challenge file could not be written under the"
                           " webroot."),
    "HookFailed": (SOLVERS, "A hook script exited non-zero (its output's tail is in the"
                   " detail)."),
    "HookTimeout": (SOLVERS, "A hook script did not finish in time."),
    "ChallengeUnsupported": (SOLVERS, "The solver cannot answer this identifier."),
    "NoMatchingChallenge": (SOLVERS, "The CA offered no challenge of the solver's type."),
    "SolverFailed": (SOLVERS, "The solver failed in another way."),
    # -- the account
    "AccountDeactivated": (ACCOUNT, "The account was deactivated (RFC 8555 section 7.3.6)."),
    "AccountRevoked": (ACCOUNT, "The CA revoked the account."),
    "UnexpectedAccountStatus": (ACCOUNT, "An account status RFC 8555 does not define."),
    # -- result and cleanup
    "InvalidCertificateChain": (RESULT, "The issued chain does not parse or does not match"
                                " the request."),
    "CsrCommonNameOnly": (RESULT, "The CSR names its domain in the commonName only, which"
                          " Let's Encrypt accepts and other CAs refuse."),
    "DeactivationIgnored": (RESULT, "The CA answered a deactivation but kept the"
                            " authorization."),
    "DeactivationSkipped": (RESULT, "The run's time was up before its authorizations were"
                            " deactivated."),
    # -- the production twin
    "ProductionTwinUnavailable": (PRODUCTION, "The production twin's directory could not be"
                                  " read, so staging was not compared with it."),
    "ProfileNotInProduction": (PRODUCTION, "The run used a profile production does not"
                               " offer."),
    "EndpointNotInProduction": (PRODUCTION, "The run used a directory resource production"
                                " lacks."),
    "ProductionRequiresEab": (PRODUCTION, "Production requires external account binding and"
                              " the run used none."),
    "ProductionEabCredentials": (PRODUCTION, "Production requires external account binding"
                                 " too, with its own credentials."),
    "StagingOnlyFeature": (PRODUCTION, "A feature only staging offers (the run did not use"
                           " it)."),
    "ProductionOnlyFeature": (PRODUCTION, "A feature only production offers."),
    "CaaIdentitiesDiffer": (PRODUCTION, "Staging honours CAA identities production does"
                            " not."),
    "TermsOfServiceDiffer": (PRODUCTION, "Staging and production link different terms of"
                             " service."),
    # -- rate limits
    "ProductionNamesPerCertificate": (LIMITS, "An order names more identifiers than"
                                      " production allows per certificate."),
    "BatchNewOrdersLimit": (LIMITS, "The batch, run against production on one account,"
                            " would exceed its new-orders limit."),
    "BatchRegisteredDomainLimit": (LIMITS, "The batch would exceed production's"
                                   " certificates-per-registered-domain limit."),
    "BatchExactSetLimit": (LIMITS, "The batch orders the same set of names more often than"
                           " production allows."),
    "ProductionExactSetLimit": (LIMITS, "Certificate Transparency shows this exact set of"
                                " names at production's limit: a new order is refused."),
    "ProductionExactSetNearLimit": (LIMITS, "One more certificate for this exact set uses up"
                                    " production's limit."),
    "ProductionDomainLimit": (LIMITS, "A registered domain is at production's"
                              " per-domain limit."),
    "ProductionDomainNearLimit": (LIMITS, "A registered domain is close to production's"
                                  " per-domain limit."),
    "CtUnavailable": (LIMITS, "The Certificate Transparency source did not answer, so"
                      " production's rate limits were not checked."),
    # -- renewal
    "RenewalDue": (RENEWAL, "Production's renewalInfo says renewal is due (RFC 9773)."),
    "RenewalNotDue": (RENEWAL, "Production's renewalInfo says renewal is not due yet."),
    "ProductionRenewalInfoUnavailable": (RENEWAL, "Production's renewalInfo could not be"
                                         " read."),
    # -- certbot
    "ManualAuthHookMissing": (CERTBOT, "A certbot lineage with the manual authenticator and"
                              " no auth hook: it cannot renew unattended."),
}


# --------------------------------------------------------------------------- classify's rows

#: How each classifier table's keys read ("when").  A new table needs a line here.
_TABLE_WHEN: Mapping[str, Callable[[Any], str]] = {
    "ACME_TYPES": lambda t: f"the CA's problem document has type `{t}`",
    "TRANSPORT": lambda key: _transport_when(*key),
    "STUCK": lambda state: {
        StuckState.AUTHORIZATION_PENDING: "an answered authorization stays `pending` until"
        " the deadline",
        StuckState.ORDER_PROCESSING: "a finalized order stays `processing` until the"
        " deadline",
        StuckState.ORDER_PENDING: "an order whose authorizations are all valid stays"
        " `pending`",
    }[state],
    "_DEADLINE": lambda party: f"the run's deadline expired; most of its time was spent"
    f" {_PARTY_WHERE[party]}",
    "SOLVER": lambda kind: f"the solver reported `{SolverErrorKind(kind).value}`",
    "ACCOUNT_STATUS": lambda status: f"the account's status is `{status}`",
    "CLEANUP": lambda kind: {
        "ignored": "the CA answered a deactivation without deactivating the authorization",
        "skipped": "the deadline came before this run's authorizations were deactivated",
    }[kind],
}
_PARTY_WHERE: Mapping[Party, str] = {
    Party.CA: "waiting on the staging CA",
    Party.SOLVER: "in the local solver or its hook",
    Party.PREFLIGHT: "in the local DNS and CAA checks",
    Party.PRODUCTION: "reading the production twin",
}
#: Steps and severities of each table's rows (default: any CA step, fatal).
_TABLE_STEPS: Mapping[str, tuple[Step, ...]] = {
    "STUCK": (Step.CHALLENGE, Step.FINALIZE),
    "SOLVER": (Step.CHALLENGE,),
    "ACCOUNT_STATUS": (Step.ACCOUNT,),
    "CLEANUP": (Step.CLEANUP,),
}
_TABLE_SEVERITIES: Mapping[str, tuple[Severity, ...]] = {"CLEANUP": (WARNING,)}

#: Each single rule of the classifier (by its variable name): when, steps, severities.
#: A new rule needs a line here.
_RULE_WHEN: Mapping[str, tuple[str, tuple[Step, ...], tuple[Severity, ...]]] = {
    "_RATE_LIMITED_CLIENT": ("the CA's problem document has type `rateLimited` (not"
                             " 'service busy')", (), (FATAL,)),
    "_RATE_LIMITED_STAGING": ("`rateLimited` with HTTP 503, or whose detail says 'service"
                              " busy'", (), (FATAL,)),
    "_UNKNOWN_ACME_TYPE": ("a problem type acmedryrun does not know (or `compound` without"
                           " subproblems)", (), (FATAL,)),
    "_HTTP_UNAVAILABLE": ("HTTP 502, 503 or 504 without a problem document", (), (FATAL,)),
    "_HTTP_SERVER_ERROR": ("another HTTP 5xx without a problem document", (), (FATAL,)),
    "_HTTP_RATE_LIMITED": ("HTTP 429 without a problem document", (), (FATAL,)),
    "_HTTP_NOT_FOUND_DIRECTORY": ("HTTP 404 for a directory URL that is not a known alias",
                                  (Step.DIRECTORY,), (FATAL,)),
    "_HTTP_OTHER": ("any other error status without a problem document", (), (FATAL,)),
    "_STAGING_STOPPED": ("no HTTP response, after the staging CA had answered earlier in"
                         " this run", (), (FATAL,)),
    "_MALFORMED": ("a response that is not what RFC 8555 requires (not JSON, no"
                   " Replay-Nonce, no Location, a bad token), or a known directory that"
                   " serves no directory", (), (FATAL,)),
    "_INVALID_CHAIN": ("the chain does not parse, its leaf lacks the CSR's key or the"
                       " ordered names, or a certificate is not signed by the next",
                       (Step.CERTIFICATE,), (FATAL,)),
    "_ACCOUNT_STATUS_UNKNOWN": ("the account's status is not `valid`, `deactivated` or"
                                " `revoked`", (Step.ACCOUNT,), (FATAL,)),
    "_AUTHZ_REUSED": ("a deactivated authorization came back `valid` in the new order",
                      (Step.AUTHORIZATION,), (ERROR,)),
    "_AUTHZ_INVALID": ("an authorization neither `pending` nor `valid` before any challenge,"
                       " one that left `pending` for another state than `valid`/`invalid`,"
                       " or an order not `valid` after finalize without an error",
                       (Step.AUTHORIZATION, Step.CHALLENGE, Step.FINALIZE), (FATAL,)),
    "_VALIDATION_FAILED": ("a challenge or authorization `invalid` without an error (or with"
                           " one of an unknown type); high confidence when the self-check"
                           " failed too", (Step.CHALLENGE, Step.AUTHORIZATION), (FATAL,)),
    "_NOT_A_DIRECTORY": ("a directory URL that is not a known alias answers 200 with"
                         " something that is not an ACME directory", (Step.DIRECTORY,),
                         (FATAL,)),
    "_PROFILE_NOT_OFFERED": ("the run's profile is not in staging's meta.profiles",
                             (Step.DIRECTORY,), (FATAL,)),
    "_CA_LOST_OBJECT": ("`malformed` with HTTP 404 or 409 after the directory step", (),
                        (FATAL,)),
    "_CA_LOST_ACCOUNT": ("`accountDoesNotExist` after this run created its account (not"
                         " at the account step)", (), (FATAL,)),
    "_SERVER_STATUS": ("a problem type that blames the request (`malformed`,"
                       " `unauthorized`, ...) with an HTTP 5xx status", (), (FATAL,)),
    "_CAA_STAGING_ACCOUNT": ("`caa` (also inside a failed validation, or as every"
                             " subproblem) for names whose CAA accounturi names only the"
                             " production account", (), (FATAL,)),
    "_HTTP_BLOCKED": ("HTML 401/403/407 from staging, and the production twin blocked or"
                      " unreachable too", (), (FATAL,)),
    "_HTTP_BLOCKED_STAGING": ("HTML 401/403/407 from staging while the production twin's"
                              " directory answered", (), (FATAL,)),
    "_PRODUCTION_URL": ("a link, Location or redirect from staging points at a production"
                        " CA's host (not sent)", (), (FATAL,)),
    "_HTTP_REDIRECT": ("a 3xx from the CA after the directory step", (), (FATAL,)),
    "_HTTP_REDIRECT_DIRECTORY": ("a 3xx for a directory URL that is not a known alias",
                                 (Step.DIRECTORY,), (FATAL,)),
}

_REFERENCE_WHEN: Mapping[bool | None, str] = {
    True: "the production twin's directory answered",
    False: "the production twin failed the same way",
    None: "there is no production twin to compare with",
}


def _transport_when(kind: TransportKind, reference: bool | None) -> str:
    what = ("TLS certificate verification failed" if kind is TransportKind.TLS_VERIFY
            else f"no HTTP response (`{kind.value}`)")
    return f"{what}; {_REFERENCE_WHEN[reference]}"


def _classified() -> list[tuple[str, Source]]:
    """(name, source) for every row and single rule of the classifier, in its order."""
    found: list[tuple[str, Source]] = []
    for var, value in vars(classify).items():
        if isinstance(value, Rule):
            when, steps, severities = _RULE_WHEN[var]
            found.append((value.name, _source(f"classify.{var}", when, value, steps,
                                              severities)))
        elif (isinstance(value, Mapping) and value
              and all(isinstance(r, Rule) for r in value.values())):
            describe = _TABLE_WHEN[var]
            grouped: dict[Rule, list[Any]] = {}
            for key, rule in value.items():
                grouped.setdefault(rule, []).append(key)
            for rule, keys in grouped.items():
                found.append((rule.name, _source(
                    f"classify.{var}", _join_when(var, keys, describe), rule,
                    _TABLE_STEPS.get(var, ()), _TABLE_SEVERITIES.get(var, (FATAL,)))))
    found.append(("StagingUnstable", Source(
        "classify.survived_retries_warning", "the run succeeded after retrying transient"
        " staging faults", STAGING, (WARNING,), (), MEDIUM,
        "Staging was flaky but the run went through; production is likely fine.")))
    return found


def _join_when(var: str, keys: list[Any], describe: Callable[[Any], str]) -> str:
    if var == "TRANSPORT" and len(keys) > 1:  # the kinds of one twin outcome, together
        kinds = ", ".join(f"`{k.value}`" for k, _ in keys)
        return f"no HTTP response ({kinds}); {_REFERENCE_WHEN[keys[0][1]]}"
    if var == "ACME_TYPES" and len(keys) > 1:
        return "the CA's problem document has type " + " or ".join(f"`{k}`" for k in keys)
    return "; or ".join(describe(k) for k in keys)


def _source(origin: str, when: str, rule: Rule, steps: tuple[Step, ...],
            severities: tuple[Severity, ...]) -> Source:
    return Source(origin, when, rule.cause, severities, steps, rule.confidence, rule.hint)


# --------------------------------------------------------------------------- the others

_PRE = (Step.PREFLIGHT,)
_SYNTAX_WHEN = (" (exit 64 from the CLI, UsageError from dry_run(), before any request;"
                " a fatal problem only from preflight.check_identifiers called directly)")


def _named(origin: str, when: str, cause: Cause | None,  # noqa: PLR0917 - a table row
           severity: Severity | tuple[Severity, ...],
           steps: tuple[Step, ...], hint: str, confidence: Confidence = HIGH) -> Source:
    severities = severity if isinstance(severity, tuple) else (severity,)
    return Source(origin, when, cause, severities, steps, confidence, hint)


#: The problems built outside the classifier: (name, source).
_NAMED: Sequence[tuple[str, Source]] = (
    # -- preflight.identifiers: syntax (now usage errors) ...
    ("TrailingDot", _named("preflight.identifiers", "a name ends with '.'" + _SYNTAX_WHEN,
                           CLIENT, FATAL, _PRE, "Drop the trailing dot: ACME identifiers are"
                           " written without it.")),
    ("BadWildcard", _named("preflight.identifiers", "'*' is not the whole leftmost label"
                           + _SYNTAX_WHEN, CLIENT, FATAL, _PRE,
                           "Write a wildcard as *.example.com.")),
    ("InvalidName", _named("preflight.identifiers", "a label or the name breaks the syntax"
                           + _SYNTAX_WHEN, CLIENT, FATAL, _PRE,
                           "Labels are 1-63 letters, digits and hyphens, not starting or"
                           " ending with a hyphen; convert Unicode names with IDNA 2008.")),
    ("InvalidName", _named("preflight.identifiers", "with a known CA: a label with hyphens"
                           " in positions 3 and 4 that is not an xn-- A-label (RFC 5890"
                           " section 2.3.1)", CLIENT, FATAL, _PRE,
                           "The CA refuses such labels: rename it.")),
    ("NameTooLong", _named("preflight.identifiers", "the name is over 253 octets"
                           + _SYNTAX_WHEN, CLIENT, FATAL, _PRE,
                           "A DNS name is at most 253 octets.")),
    # ... and policy (verdicts)
    ("NotFullyQualified", _named("preflight.identifiers", "a single-label name; fatal for a"
                                 " known CA, a warning for another directory (a private CA"
                                 " may issue it)", CLIENT, (FATAL, WARNING), _PRE,
                                 "Use a fully qualified domain name such as example.com.")),
    ("InternalName", _named("preflight.identifiers", "the TLD is internal or special-use;"
                            " fatal for a known CA, a warning otherwise", CLIENT,
                            (FATAL, WARNING), _PRE, "Public CAs issue only for names under"
                            " public TLDs: use a public name.")),
    ("PublicSuffix", _named("preflight.identifiers", "the name is on the Public Suffix"
                            " List's ICANN section; fatal for a known CA, a warning"
                            " otherwise", CLIENT, (FATAL, WARNING), _PRE,
                            "Order a name under it, e.g. example.co.uk.")),
    ("ProviderSuffix", _named("preflight.identifiers", "the name is on the Public Suffix"
                              " List's private section", CLIENT, WARNING, _PRE,
                              "Only the provider can validate it: order your own name under"
                              " it.")),
    ("IpNotSupported", _named("preflight.identifiers", "an IP address with a known CA other"
                              " than Let's Encrypt", CLIENT, FATAL, _PRE, "Use a DNS name.")),
    ("IpReserved", _named("preflight.identifiers", "a non-global IP address with Let's"
                          " Encrypt", CLIENT, FATAL, _PRE,
                          "The CA issues only for public IP addresses.")),
    ("TooManyLabels", _named("preflight.identifiers", "more than 10 labels with Let's"
                             " Encrypt (Boulder's policy)", CLIENT, FATAL, _PRE,
                             "Use a shorter name.")),
    ("TooManyNames", _named("preflight.identifiers", "more names than the known CA's"
                            " production allows per certificate", CLIENT, FATAL, _PRE,
                            "Split the names over certificates within the limit.")),
    ("DuplicateName", _named("preflight.identifiers", "a name listed twice", CLIENT, WARNING,
                             _PRE, "List each name once.")),
    ("WildcardNeedsDns01", _named("preflight.identifiers", "a wildcard with http-01 or"
                                  " tls-alpn-01 (also with preflight off)", CLIENT, FATAL,
                                  _PRE, "Wildcard names can only be validated with dns-01:"
                                  " use --dns-01-auth-hook.")),
    ("IpNeedsHttpOrTlsAlpn", _named("preflight.identifiers", "an IP address with dns-01"
                                    " (also with preflight off)", CLIENT, FATAL, _PRE,
                                    "IP identifiers validate with http-01 or tls-alpn-01"
                                    " only.")),
    # -- preflight.records and .dns
    ("DnsNxDomain", _named("preflight.records", "the A lookup answers NXDOMAIN", CLIENT, FATAL,
                           _PRE, "Create an A or AAAA record pointing at the server that"
                           " answers the challenge, or fix the name's spelling.")),
    ("DnsDanglingCname", _named("preflight.records", "NXDOMAIN at the end of a CNAME chain",
                                CLIENT, FATAL, _PRE, "Fix or remove the CNAME, or create its"
                                " target: the CA gets the same NXDOMAIN.")),
    ("DnsCnameLoop", _named("preflight.records", "the CNAME chain loops or is too long",
                            CLIENT, FATAL, _PRE, "Fix the CNAME records so the chain ends"
                            " at a name with the records.")),
    ("DnsServfail", _named("preflight.records", "the A or TXT lookup answers SERVFAIL",
                           CLIENT, FATAL, _PRE, "Fix the zone's DNS (often DNSSEC or an"
                           " unreachable authoritative server): the CA's resolver fails"
                           " the same way.")),
    ("DnsNoAddress", _named("preflight.records", "http-01/tls-alpn-01 and neither A nor AAAA"
                            " records", CLIENT, FATAL, _PRE, "Add an A or AAAA record.")),
    ("DnsZoneMissing", _named("preflight.records", "dns-01 and the TXT name's negative answer"
                              " comes from a TLD or the root", CLIENT, FATAL, _PRE,
                              "Register the domain or fix the name's spelling.")),
    ("DnsAaaaFailed", _named("preflight.records", "the AAAA lookup fails while A works",
                             CLIENT, WARNING, _PRE, "Fix the name's DNS for AAAA queries: a"
                             " CA that cannot look up AAAA may refuse to validate.")),
    ("DnsResolverRefused", _named("preflight.records", "the resolver answers REFUSED,"
                                  " NOTIMP, ...", CLIENT, WARNING, _PRE,
                                  "Use --dns-resolver with a recursive resolver that serves"
                                  " this machine.")),
    ("DnsResolverUnreachable", _named("preflight.dns", "the resolver does not answer (once a"
                                      " run)", NOBODY, WARNING, _PRE,
                                      "Point --dns-resolver at a resolver this machine can"
                                      " reach; only the CA's own validation speaks for the"
                                      " names.")),
    ("DnsCname", _named("preflight.records", "the name (or its _acme-challenge TXT name) is"
                        " an alias", NOBODY, INFO, _PRE, "The CA follows the same aliases:"
                        " the records at the end of the chain count.")),
    ("Ipv6Preferred", _named("preflight.records", "the name has AAAA records", NOBODY, INFO,
                             _PRE, "Make the server answer the challenge the same over IPv6"
                             " as over IPv4: Let's Encrypt falls back to IPv4 only when the"
                             " IPv6 connection cannot be made.")),
    # -- preflight.caa
    ("CaaForbidden", _named("preflight.caa", "the relevant issue/issuewild records name"
                            " none of the CA's identities", CLIENT, FATAL, _PRE,
                            "Add an issue record naming the CA next to your other CAs'"
                            " records, or remove the CAA records.")),
    ("CaaUnknownCriticalTag", _named("preflight.caa", "a critical record with an unknown tag",
                                     CLIENT, FATAL, _PRE, "Remove these records or clear"
                                     " their critical flag (128).")),
    ("CaaValidationMethod", _named("preflight.caa", "the records that name the CA restrict"
                                   " validationmethods to others", CLIENT, FATAL, _PRE,
                                   "Add the run's challenge type to validationmethods, or"
                                   " answer with an allowed method.")),
    ("CaaLookupFailed", _named("preflight", "a CAA lookup of the tree climb fails", CLIENT,
                               FATAL, _PRE, "Fix the zone's DNS, often DNSSEC or an"
                               " unreachable authoritative server.")),
    ("CaaAccountUri", _named("preflight.caa", "every record that lets the CA issue has an"
                             " accounturi", CLIENT, WARNING, _PRE, "Make sure a record names"
                             " the production account that will order the certificate.")),
    ("CaaIdentityUnknown", _named("preflight.caa", "CAA records, but no CAA identity for the"
                                  " CA", CLIENT, WARNING, _PRE, "Pass --caa-identity with"
                                  " the CA's issuer domain.")),
    ("CaaAccountUriStagingOnly", _named("preflight.caa", "the accounturi records name only"
                                        " staging accounts, this run's among them", CLIENT,
                                        ERROR, _PRE, "Add a record whose accounturi is the"
                                        " production account's.")),
    ("CaaAccountUriProductionOnly", _named("preflight.caa", "the accounturi records name a"
                                           " production account and not this run's",
                                           NOBODY, WARNING, _PRE, "A staging refusal for"
                                           " CAA says nothing about production here.",
                                           MEDIUM)),
    # -- preflight.selfcheck (all warnings: the CA's own answer decides)
    *((name, _named("preflight.selfcheck", when, CLIENT, WARNING, _PRE, hint))
      for name, when, hint in (
          ("SelfCheckConnectionRefused", "GET of the token: connection refused", "Start the"
           " web server (or the standalone responder) on that address and port, and open"
           " the firewall."),
          ("SelfCheckTimeout", "GET of the token: timed out", "Check the firewall and port"
           " forwarding for that port."),
          ("SelfCheckUnreachable", "GET of the token: no route", "Check the address in DNS"
           " and the network (an AAAA record without working IPv6 is common)."),
          ("SelfCheckHttpsOnly", "port 80 refuses, 443 accepts", "Serve"
           " /.well-known/acme-challenge/ on port 80 (a redirect to HTTPS is fine)."),
          ("SelfCheckTlsError", "a redirect's HTTPS server fails the TLS handshake", "The CA"
           " accepts any certificate but needs TLS 1.2 or newer."),
          ("SelfCheckBadResponse", "the answer is not valid HTTP", "Fix the server on that"
           " port."),
          ("SelfCheckNotFound", "404 for the token", "Check the webroot path, and that no"
           " rewrite rule or other virtual host catches /.well-known/acme-challenge/."),
          ("SelfCheckHttpStatus", "another error status for the token", "Allow"
           " /.well-known/acme-challenge/ without authentication or IP restrictions."),
          ("SelfCheckWrongContent", "the body is not the key authorization", "Serve the file"
           " exactly as written (the CA reads at most 127 bytes and trims only trailing"
           " whitespace)."),
          ("SelfCheckBadRedirect", "a redirect the CA would not follow", "The CA follows at"
           " most 10 redirects (301, 302, 307, 308), only to http or https on ports 80 and"
           " 443 and to domain names: fix the redirect."),
          ("SelfCheckNoAddress", "no A or AAAA record to fetch from", "Add an A or AAAA"
           " record."),
          ("SelfCheckTxtMissing", "the TXT record does not hold the value before the"
           " self-check's time is up", "Check that the DNS hook or provider published the"
           " record in the right zone; a resolver's cached negative answer lasts until its"
           " TTL expires."),
      )),
    # -- production.compare
    ("ProfileNotInProduction", _named("production.compare", "the run's profile is not in"
                                      " production's meta.profiles", CLIENT, ERROR,
                                      (Step.ORDER,), "Request one of production's profiles,"
                                      " or none for the CA's default.")),
    ("EndpointNotInProduction", _named("production.compare", "the run used a resource"
                                       " (renewalInfo, ...) production's directory lacks",
                                       CLIENT, ERROR, (Step.DIRECTORY,), "Make its use"
                                       " optional, as RFC 8555 section 7.1.1 expects.")),
    ("ProductionRequiresEab", _named("production.compare", "production's"
                                     " meta.externalAccountRequired is true and the run used"
                                     " no EAB", CLIENT, ERROR, (Step.ACCOUNT,), "Get EAB"
                                     " credentials for production and pass --eab-kid and"
                                     " --eab-hmac-key.")),
    ("ProductionEabCredentials", _named("production.compare", "both require EAB", NOBODY,
                                        INFO, (Step.ACCOUNT,), "Production needs its own kid"
                                        " and HMAC key, not staging's.")),
    ("StagingOnlyFeature", _named("production.compare", "a directory feature only staging"
                                  " lists, unused by the run", NOBODY, INFO, (Step.DIRECTORY,),
                                  "Do not depend on it in production yet.")),
    ("ProductionOnlyFeature", _named("production.compare", "a directory feature only"
                                     " production lists", NOBODY, INFO, (Step.DIRECTORY,),
                                     "This dry run could not exercise it on staging.")),
    ("CaaIdentitiesDiffer", _named("production.compare", "staging's meta.caaIdentities"
                                   " include some production's do not", CLIENT, WARNING,
                                   (Step.DIRECTORY,), "Make your CAA issue records name"
                                   " production's identities.")),
    ("TermsOfServiceDiffer", _named("production.compare", "different termsOfService links",
                                    NOBODY, INFO, (Step.ACCOUNT,), "Read production's terms"
                                    " before agreeing to them there.")),
    ("ProductionTwinUnavailable", _named("production.twin", "the twin's directory GET gets no"
                                         " ACME directory", NOBODY, WARNING,
                                         (Step.DIRECTORY,), "Make --reference-directory the"
                                         " production CA's directory, reachable from this"
                                         " machine; the staging verdict stands.")),
    # -- production.policy and .ct
    ("ProductionNamesPerCertificate", _named("production.policy", "a batch order over the"
                                             " production names-per-certificate limit",
                                             CLIENT, ERROR, (Step.ORDER,), "Split these names"
                                             " across certificates within the limit.")),
    ("BatchNewOrdersLimit", _named("production.policy", "the batch's order count exceeds"
                                   " production's new orders per account", CLIENT, WARNING,
                                   (Step.ORDER,), "Spread the batch over time or request an"
                                   " override.")),
    ("BatchRegisteredDomainLimit", _named("production.policy", "the batch orders more"
                                          " certificates under one registered domain than"
                                          " production allows", CLIENT, WARNING,
                                          (Step.ORDER,), "Combine names into fewer"
                                          " certificates, spread the batch, or request an"
                                          " override.")),
    ("BatchExactSetLimit", _named("production.policy", "the batch orders one set of names"
                                  " more often than production allows", CLIENT, WARNING,
                                  (Step.ORDER,), "Order each set once.")),
    ("ProductionExactSetLimit", _named("production.ct", "CT lists as many certificates for"
                                       " the exact set as the limit allows", CLIENT, ERROR,
                                       (Step.ORDER,), "Do not order these names from"
                                       " production before the time in the detail; reuse"
                                       " the certificate already issued.")),
    ("ProductionExactSetNearLimit", _named("production.ct", "one certificate for the exact"
                                           " set left", CLIENT, WARNING, (Step.ORDER,),
                                           "Order the production certificate once and keep"
                                           " it; test on staging.")),
    ("ProductionDomainLimit", _named("production.ct", "a registered domain has no capacity"
                                     " left (a warning: the order may be exempt)", CLIENT,
                                     WARNING, (Step.ORDER,), "Wait, put more names on fewer"
                                     " certificates, or request an override.")),
    ("ProductionDomainNearLimit", _named("production.ct", "a registered domain has a tenth"
                                         " of its capacity or less left", CLIENT, WARNING,
                                         (Step.ORDER,), "Combine names on fewer certificates"
                                         " or spread them over the week.")),
    ("CsrCommonNameOnly", _named("run", "with --csr: the CSR has no subjectAltName and names"
                                 " one DNS name in its commonName", CLIENT, WARNING,
                                 (Step.FINALIZE,), "Put the names in a subjectAltName"
                                 " extension (openssl req -addext subjectAltName=DNS:...).")),
    ("CtUnavailable", _named("production.ct", "the CT source gave no answer for a registered"
                             " domain", NOBODY, INFO, (Step.ORDER,), "Look its certificates"
                             " up yourself, or run again later; this is no failure of the"
                             " setup.")),
    # -- production.ari
    ("RenewalDue", _named("production.ari", "with --renewing: now is inside or past the"
                          " suggested window", NOBODY, INFO, (Step.DIRECTORY,),
                          "Renew inside the window, with newOrder replaces (RFC 9773"
                          " section 5).")),
    ("RenewalNotDue", _named("production.ari", "with --renewing: the window is still ahead",
                             NOBODY, INFO, (Step.DIRECTORY,), "Renew when the window"
                             " opens.")),
    ("ProductionRenewalInfoUnavailable", _named("production.ari", "with --renewing: no"
                                                " renewalInfo answer", NOBODY, WARNING,
                                                (Step.DIRECTORY,), "Renew on your own"
                                                " schedule; the dry run is unaffected.")),
    # -- certbot_cmd
    ("ManualAuthHookMissing", _named("certbot_cmd", "a lineage with authenticator = manual"
                                     " and no manual_auth_hook", CLIENT, FATAL, _PRE,
                                     "Give it an auth hook (certbot reconfigure"
                                     " --manual-auth-hook ...) or another authenticator.")),
)


# --------------------------------------------------------------------------- the registry


def _build() -> dict[str, Entry]:
    sources: dict[str, list[Source]] = {}
    for name, source in (*_classified(), *_NAMED):
        sources.setdefault(name, []).append(source)
    missing = sorted(set(sources) - set(_META))
    if missing:
        raise RuntimeError(f"taxonomy: no category and meaning for {', '.join(missing)}")
    stale = sorted(set(_META) - set(sources))
    if stale:
        raise RuntimeError(f"taxonomy: a meaning but no source for {', '.join(stale)}")
    order = {c: i for i, c in enumerate(CATEGORIES)}
    entries = [Entry(name, *_META[name], tuple(srcs)) for name, srcs in sources.items()]
    entries.sort(key=lambda e: (order[e.category], e.name))
    return {e.name: e for e in entries}


_REGISTRY: dict[str, Entry] | None = None


def registry() -> Mapping[str, Entry]:
    """Every problem name, in the document's order (by category, then name)."""
    global _REGISTRY  # noqa: PLW0603 - built once, on first use: import stays cheap
    if _REGISTRY is None:
        _REGISTRY = _build()
    return _REGISTRY


def names() -> tuple[str, ...]:
    """Every problem name acmedryrun can emit."""
    return tuple(registry())


def entry(name: str) -> Entry:
    """The entry for ``name`` (case-insensitive).

    Raises:
        UsageError: no such problem; the message suggests close names.
    """
    reg = registry()
    if name in reg:
        return reg[name]
    folded = {n.casefold(): n for n in reg}
    if name.casefold() in folded:
        return reg[folded[name.casefold()]]
    close = difflib.get_close_matches(name.casefold(), list(folded), n=3, cutoff=0.6)
    also = (f" (did you mean {', '.join(folded[c] for c in close)}?)" if close
            else f" (every name is listed in {DOCUMENT})")
    raise UsageError(f"explain: no problem is named {name!r}{also}")


def _cause(cause: Cause | None) -> str:
    return cause.value if cause is not None else "nobody (a notice)"


def _steps(steps: Iterable[Step]) -> str:
    listed = [s.value for s in steps]
    return ", ".join(listed) if listed else "the step whose request failed"


def explain(name: str) -> str:
    """A problem's cause, meaning and hint, as plain text for a terminal.

    Raises:
        UsageError: no such problem (close names suggested).
    """
    e = entry(name)
    lines = [f"{e.name}: {' / '.join(_cause(c) for c in e.causes)} ({e.category})",
             f"  {e.meaning}"]
    for s in e.sources:
        lines += [
            f"  when: {s.when}",
            f"    cause {_cause(s.cause)}, {'/'.join(v.value for v in s.severities)},"
            f" step {_steps(s.steps)}, confidence {s.confidence.value} [{s.origin}]",
            f"    hint: {s.hint}",
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the document

_INTRO = """\
# Problem names: whose fault, what it means, what to do

<!-- Generated by `python -m acmedryrun.taxonomy --write` from acmedryrun/taxonomy.py and
the classifier's tables in acmedryrun/classify.py. Do not edit by hand: a test fails when
this file differs from what the generator writes. -->

Every `problems[].name` a report can carry, with its `cause`, typical `severity` and
`step`, what it means and what to do. `acmedryrun explain NAME` prints one entry.

- **client**: the subscriber's setup or the client's request: production fails the same
  way. **staging**: the staging CA was down, slow, flaky or wrong: it says nothing about
  production; retry later. **nobody**: a notice (`cause: null`), never `fatal`/`error`.
- **The verdict rule**: any `client` problem of severity `fatal`/`error` gives
  `client_error`; else any `staging` one of severity `fatal`/`error` gives
  `staging_unstable`; else `likely_success`. Warnings and survived retries lower the
  confidence, never the verdict.
- A problem the classifier names is `fatal` where it stops the run, `error` where the run
  goes on, and a `warning` when it happens during cleanup.
- **Bad input is not a problem**: a name that cannot be a DNS name or IP address at all
  (the *Identifier syntax* entries below) and every malformed option value or input file
  is a usage error (exit 64, `UsageError`): one line naming the input, before any request,
  nothing written. What a well-formed request meets in a CA's policy (a wildcard without
  dns-01, a public suffix, an internal name) is a `client_error` verdict with a hint.
- Retries: `badNonce` is retried at once with the fresh nonce; 5xx, resets, timeouts and
  bodies that are not JSON with jittered backoff (`Retry-After` honoured); a 429 only when
  its `Retry-After` fits in the deadline; client faults never.
"""


def render_markdown() -> str:
    """The whole ``docs/TAXONOMY.md``."""
    reg = registry()
    out = [_INTRO, "## Contents\n"]
    for category in CATEGORIES:
        members = [e for e in reg.values() if e.category == category]
        out.append(f"- [{category}](#{_anchor(category)}): "
                   + ", ".join(f"`{e.name}`" for e in members))
    for category in CATEGORIES:
        out.append(f"\n## {category}\n")
        for e in (e for e in reg.values() if e.category == category):
            causes = " / ".join(f"**{_cause(c)}**" for c in e.causes)
            out.append(f"### `{e.name}`\n\n{causes}. {e.meaning}\n")
            for s in e.sources:
                out.append(
                    f"- *When* {s.when}: {_cause(s.cause)},"
                    f" {'/'.join(v.value for v in s.severities)}, step {_steps(s.steps)},"
                    f" confidence {s.confidence.value} (`{s.origin}`).  \n"
                    f"  *Hint:* {s.hint}")
            out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lowercase, spaces to hyphens, punctuation dropped."""
    kept = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -")
    return kept.replace(" ", "-")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m acmedryrun.taxonomy [--write]``: print the document, or write it."""
    args = list(sys.argv[1:] if argv is None else argv)
    text = render_markdown()
    if args == ["--write"]:
        path = Path(__file__).resolve().parent.parent / DOCUMENT
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
        return 0
    if args:
        print("usage: python -m acmedryrun.taxonomy [--write]", file=sys.stderr)
        return 64
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
