#!/bin/sh
# Writes the CERTBOT_* environment it got to $HOOK_ENV_DIR/<phase>-<validation>.env, where
# phase is its first argument (auth or cleanup); prints a line the cleanup hook sees again.
# (Keyed by CERTBOT_VALIDATION: certbot sets CERTBOT_TOKEN for http-01 only.)
set -eu
env | grep '^CERTBOT_' | sort > "${HOOK_ENV_DIR}/$1-${CERTBOT_VALIDATION}.env"
echo "  out-${CERTBOT_VALIDATION}  "
