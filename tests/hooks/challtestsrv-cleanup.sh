#!/bin/sh
# certbot --manual-cleanup-hook for pebble-challtestsrv: remove the dns-01 TXT records.
# Needs CHALLTESTSRV_URL; HOOK_LOG, if set, gets one line per call.
set -eu
: "${CHALLTESTSRV_URL:?CHALLTESTSRV_URL is not set}"
python3 "$(dirname "$0")/_challtestsrv.py" clear-txt \
    "{\"host\": \"_acme-challenge.${CERTBOT_DOMAIN}.\"}"
if [ -n "${HOOK_LOG:-}" ]; then
    echo "cleanup ${CERTBOT_DOMAIN} output=${CERTBOT_AUTH_OUTPUT:-}" >> "$HOOK_LOG"
fi
