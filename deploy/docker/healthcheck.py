"""Container health check for the hemoflow images.

Healthy when a Dask HTTP endpoint in this container answers ``GET /health`` with
``ok``: the scheduler dashboard (8787) or the worker dashboard (8788). Override the
ports with ``HEMOFLOW_HEALTH_PORTS`` (comma separated). Exit 0 healthy, 1 not.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def main() -> int:
    ports = os.environ.get("HEMOFLOW_HEALTH_PORTS", "8787,8788").split(",")
    for port in (p.strip() for p in ports if p.strip()):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as r:
                if r.status == 200 and r.read().strip() == b"ok":
                    return 0
        except OSError:
            continue
    return 1


if __name__ == "__main__":
    sys.exit(main())
