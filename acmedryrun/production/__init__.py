"""What a staging run cannot see about production, split by job.

* :mod:`~acmedryrun.production.compare` (pure): staging's directory against its
  production twin's, for what this run used.
* :mod:`~acmedryrun.production.twin` (I/O, read-only GETs through the transport):
  the production directory, and what one GET of it says about this machine's network.
* :mod:`~acmedryrun.production.policy` (data): the limits and issuer names each CA
  publishes, with their sources, and what a batch would hit in production.
* :mod:`~acmedryrun.production.ct` (a pure predictor plus look-ups through an injected
  GET): production's rate limits predicted from Certificate Transparency.
* :mod:`~acmedryrun.production.ari` (pure, plus one GET): ACME Renewal Information
  (RFC 9773) from production, never from staging.

Nothing here POSTs anything: production only ever sees GETs.
"""
