#!/bin/sh
# certbot --manual-auth-hook for pebble-challtestsrv: publish the dns-01 TXT record.
# Needs CHALLTESTSRV_URL (http://127.0.0.1:PORT of challtestsrv's management API).
# HOOK_LOG, if set, gets one line per call (the tests read it).
set -eu
: "${CHALLTESTSRV_URL:?CHALLTESTSRV_URL is not set}"
python3 "$(dirname "$0")/_challtestsrv.py" set-txt \
    "{\"host\": \"_acme-challenge.${CERTBOT_DOMAIN}.\", \"value\": \"${CERTBOT_VALIDATION}\"}"
if [ -n "${HOOK_LOG:-}" ]; then
    echo "auth ${CERTBOT_DOMAIN} ${CERTBOT_VALIDATION} remaining=${CERTBOT_REMAINING_CHALLENGES} all=${CERTBOT_ALL_DOMAINS}" >> "$HOOK_LOG"
fi
# certbot hands this stdout to the cleanup hook as CERTBOT_AUTH_OUTPUT (no CERTBOT_TOKEN
# here: certbot sets it for http-01 only).
echo "record-id-${CERTBOT_VALIDATION}"
