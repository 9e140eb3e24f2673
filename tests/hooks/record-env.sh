#!/bin/sh
# Writes the CERTBOT_* environment it got to $HOOK_ENV_DIR/<phase>-<token>.env, where
# phase is its first argument (auth or cleanup); prints a line the cleanup hook sees again.
set -eu
env | grep '^CERTBOT_' | sort > "${HOOK_ENV_DIR}/$1-${CERTBOT_TOKEN}.env"
echo "  out-${CERTBOT_TOKEN}  "
