"""`make run`: serve the bundled policies/ on 127.0.0.1:8000 with a demo secret; print a curl. [edge]"""

from __future__ import annotations

import os
import sys

from router.server.serve import ServeOptions, run

DEMO_SECRET = "demo-secret"


def main() -> int:
    os.environ.setdefault("VAPI_SERVER_SECRET", DEMO_SECRET)
    secret = os.environ["VAPI_SERVER_SECRET"]
    shown = secret if secret == DEMO_SECRET else "$VAPI_SERVER_SECRET"
    print(
        "\nRoute a sample call (a VIP caller on the main line; see policies/main.yaml):\n\n"
        f"  curl -s -H 'x-vapi-secret: {shown}' -H 'content-type: application/json' \\\n"
        "       --data @policies/captured/demo-call.json http://127.0.0.1:8000/webhook/vapi\n\n"
        "Why that answer:  .venv/bin/vapi-router explain policies "
        "--request policies/captured/demo-call.json\n"
        "Ready / metrics:  curl -s 127.0.0.1:8000/readyz ; curl -s 127.0.0.1:8000/metrics\n",
        file=sys.stderr,
    )
    return run(ServeOptions(policy="policies", host="127.0.0.1", port=8000))


if __name__ == "__main__":
    sys.exit(main())
