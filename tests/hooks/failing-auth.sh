#!/bin/sh
# An auth hook that fails the way a DNS provider script does: messages on stderr, exit 1.
for i in 1 2 3 4 5 6 7; do
    echo "provider says: line $i" >&2
done
echo "error: API token rejected for ${CERTBOT_DOMAIN}" >&2
exit 1
