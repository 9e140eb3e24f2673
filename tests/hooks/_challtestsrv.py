"""POST one JSON document to pebble-challtestsrv's management API (no curl needed)."""

import json
import os
import sys
import urllib.request

endpoint, payload = sys.argv[1], json.loads(sys.argv[2])
request = urllib.request.Request(f"{os.environ['CHALLTESTSRV_URL']}/{endpoint}",
                                 data=json.dumps(payload).encode(), method="POST")
with urllib.request.urlopen(request, timeout=10) as response:
    response.read()
