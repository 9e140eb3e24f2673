#!/bin/sh
# A certbot --manual hook in the style of real public ones: it branches on CERTBOT_TOKEN
# (set by certbot for http-01 only) to serve a file or publish a TXT record, and records the
# CERTBOT_* environment it got, one file per call, listed in call order in $HOOK_ENV_DIR/calls.
#   $1: auth or cleanup.  Needs HOOK_ENV_DIR, HOOK_WEBROOT (http-01), CHALLTESTSRV_URL (dns-01).
set -eu
record=$(mktemp "${HOOK_ENV_DIR}/$1-XXXXXX")
env | grep '^CERTBOT_' | sort > "$record"
echo "$record" >> "${HOOK_ENV_DIR}/calls"
here=$(dirname "$0")
if [ -n "${CERTBOT_TOKEN:-}" ]; then
    file="${HOOK_WEBROOT}/.well-known/acme-challenge/${CERTBOT_TOKEN}"
    if [ "$1" = auth ]; then
        mkdir -p "$(dirname "$file")"
        printf '%s' "$CERTBOT_VALIDATION" > "$file"
    else
        rm -f "$file"
    fi
else
    if [ "$1" = auth ]; then
        python3 "$here/_challtestsrv.py" set-txt \
            "{\"host\": \"_acme-challenge.${CERTBOT_DOMAIN}.\", \"value\": \"${CERTBOT_VALIDATION}\"}"
    else
        python3 "$here/_challtestsrv.py" clear-txt "{\"host\": \"_acme-challenge.${CERTBOT_DOMAIN}.\"}"
    fi
fi
# certbot hands this to the cleanup hook as CERTBOT_AUTH_OUTPUT (stripped).
[ "$1" = auth ] && echo "  published ${CERTBOT_DOMAIN} ${CERTBOT_REMAINING_CHALLENGES}  "
exit 0
