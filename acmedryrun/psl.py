"""Excerpts of the Public Suffix List (https://publicsuffix.org/list/).  Pure data.

Shared by the preflight identifier rules (Boulder refuses a name that is an ICANN
suffix) and the rate-limit estimates (a registered domain sits one label below one).
"""

from __future__ import annotations

#: A small built-in excerpt of the ICANN section of the Public Suffix List
#: (https://publicsuffix.org/list/), the suffixes people most often type by mistake.
#: Boulder refuses a name equal to one ("Domain name is an ICANN TLD"); a bare TLD
#: is refused anyway as ``NotFullyQualified``.  Deliberately incomplete: the real
#: list has ~10,000 rules and changes weekly, and a miss only means the CA says it.
ICANN_SUFFIXES = frozenset({
    "co.uk", "org.uk", "me.uk", "ltd.uk", "plc.uk", "net.uk", "ac.uk", "gov.uk", "sch.uk",
    "com.au", "net.au", "org.au", "edu.au", "gov.au", "id.au",
    "co.nz", "net.nz", "org.nz", "govt.nz", "ac.nz",
    "co.jp", "ne.jp", "or.jp", "ac.jp", "go.jp",
    "com.br", "net.br", "org.br", "gov.br",
    "com.cn", "net.cn", "org.cn", "gov.cn",
    "co.in", "net.in", "org.in", "gov.in",
    "co.za", "org.za", "gov.za", "com.mx", "org.mx", "com.ar", "com.tr", "co.kr", "or.kr",
    "com.sg", "com.hk", "com.tw", "co.il", "com.ua", "com.pl", "co.id", "com.my",
})

#: A small excerpt of the PSL's private section: hosting providers' suffixes.  The CA
#: does not refuse them by policy, but only the provider can answer a challenge for one.
PROVIDER_SUFFIXES = frozenset({
    "github.io", "gitlab.io", "herokuapp.com", "netlify.app", "vercel.app", "pages.dev",
    "workers.dev", "azurewebsites.net", "cloudapp.net", "cloudfront.net", "appspot.com",
    "blogspot.com", "firebaseapp.com", "web.app", "s3.amazonaws.com", "duckdns.org",
    "dyndns.org", "ddns.net", "fly.dev", "onrender.com", "glitch.me", "ngrok.io",
    "ngrok-free.app", "trycloudflare.com", "myshopify.com", "readthedocs.io",
})
