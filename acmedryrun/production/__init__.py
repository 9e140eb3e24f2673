"""What production would do that a staging run cannot show.

Modules here look at the production twin of a staging CA without ever POSTing to it:

* :mod:`acmedryrun.production.policy`: the limits and issuer names each known CA
  publishes, as data with their sources (pure);
* :mod:`acmedryrun.production.ct`: production's rate limits predicted from
  Certificate Transparency (a pure predictor plus a lookup through an injected GET).
"""

from __future__ import annotations
