#!/usr/bin/env bash
# A deployment-pipeline gate: dry-run the certificate before deploying the site.
#
#   examples/setup_check.sh -d www.example.com -d example.com [more acmedryrun check options]
#
# Every argument goes to `acmedryrun check`; the script adds --json and acts on the
# exit code:
#   0   likely_success    proceed with the deployment                  -> exit 0
#   1   client_error      our setup is broken; production would fail   -> exit 1, naming the problems
#   2   staging_unstable  staging misbehaved; says nothing about us    -> retry, then skip with a warning
#   64  usage error, 70 internal error: the check itself is broken     -> exit with that code
#
# Environment:
#   ACMEDRYRUN             the command to run (default: acmedryrun)
#   PYTHON                 the Python that reads the JSON report (default: python3)
#   SETUP_CHECK_RETRIES    extra attempts while staging is unstable (default: 2)
#   SETUP_CHECK_DELAY      seconds between them (default: 300)
#   SETUP_CHECK_STRICT     1: fail (exit 2) instead of skipping when staging stays unstable
set -euo pipefail

acmedryrun=${ACMEDRYRUN:-acmedryrun}
python=${PYTHON:-python3}
retries=${SETUP_CHECK_RETRIES:-2}
delay=${SETUP_CHECK_DELAY:-300}

report=$(mktemp)
trap 'rm -f "$report"' EXIT

attempt=0
while :; do
    # `|| status=$?` keeps `set -e` from ending the script on a non-zero verdict,
    # and captures it. Human progress goes to stderr, i.e. into the pipeline's log.
    status=0
    # shellcheck disable=SC2086  # $acmedryrun may be a command with arguments
    $acmedryrun check "$@" --json >"$report" || status=$?
    if [[ $status -ne 2 || $attempt -ge $retries ]]; then
        break
    fi
    attempt=$((attempt + 1))
    echo "setup-check: staging is unstable; attempt $((attempt + 1)) of $((retries + 1)) in ${delay}s" >&2
    sleep "$delay"
done

case $status in
0)
    echo "setup-check: OK, a production certificate is likely to be issued; proceeding"
    ;;
1)
    echo "setup-check: FAILED, fix these before deploying (production would fail the same way):"
    # Read the report with Python rather than jq: it is there wherever acmedryrun is.
    "$python" -c '
import json, sys
report = json.load(open(sys.argv[1]))
for p in report["problems"]:
    if p["cause"] == "client" and p["severity"] in ("fatal", "error"):
        print("  %s [%s]: %s" % (p["name"], p["identifier"] or "-", p["hint"] or p["detail"]))
' "$report"
    exit 1
    ;;
2)
    echo "setup-check: WARNING, staging stayed unstable; this says nothing about our setup" >&2
    if [[ ${SETUP_CHECK_STRICT:-0} == 1 ]]; then
        exit 2
    fi
    echo "setup-check: skipping the certificate check; proceeding"
    ;;
*)
    echo "setup-check: acmedryrun itself failed (exit $status); see its message above" >&2
    exit "$status"
    ;;
esac
