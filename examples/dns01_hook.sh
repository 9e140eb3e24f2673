#!/bin/sh
# A certbot manual hook for dns-01, usable unchanged by certbot and by acmedryrun:
#
#   certbot certonly --manual --preferred-challenges dns \
#       --manual-auth-hook 'dns01_hook.sh auth' --manual-cleanup-hook 'dns01_hook.sh cleanup' ...
#   acmedryrun check --dns-01-auth-hook 'dns01_hook.sh auth' \
#       --dns-01-cleanup-hook 'dns01_hook.sh cleanup' -d '*.example.com' -d example.com
#
# It publishes (auth) or removes (cleanup) the TXT record _acme-challenge.$CERTBOT_DOMAIN
# (RFC 8555 section 8.4) through DNS_API_URL: POST /set-txt {"host", "value"} and
# /clear-txt {"host"}, the API of pebble-challtestsrv; put your DNS provider's here.
# What auth prints on stdout, cleanup gets back as CERTBOT_AUTH_OUTPUT (a record id, say).
set -eu
: "${DNS_API_URL:?DNS_API_URL is not set}"
record="_acme-challenge.${CERTBOT_DOMAIN}."
case "${1:-}" in
    auth)
        curl --silent --show-error --fail --max-time 10 -X POST \
            --data "{\"host\": \"${record}\", \"value\": \"${CERTBOT_VALIDATION}\"}" \
            "${DNS_API_URL}/set-txt" >/dev/null
        echo "dns01_hook: set TXT ${record} (${CERTBOT_REMAINING_CHALLENGES} to go)" >&2
        echo "txt:${record}"
        ;;
    cleanup)
        curl --silent --show-error --fail --max-time 10 -X POST \
            --data "{\"host\": \"${record}\"}" "${DNS_API_URL}/clear-txt" >/dev/null
        echo "dns01_hook: cleared ${CERTBOT_AUTH_OUTPUT}" >&2
        ;;
    *)
        echo "usage: $0 auth|cleanup" >&2
        exit 2
        ;;
esac
