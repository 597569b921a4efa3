"""`make run`: serve policies/ on 127.0.0.1:8000 with demo secrets; print a curl and the console. [edge]"""

from __future__ import annotations

import os
import sys

from router.server.serve import ServeOptions, run

DEMO_SECRET = "demo-secret"
DEMO_ADMIN_TOKEN = "demo-admin-token"


def main() -> int:
    os.environ.setdefault("VAPI_SERVER_SECRET", DEMO_SECRET)
    os.environ.setdefault("ROUTER_ADMIN_TOKEN", DEMO_ADMIN_TOKEN)
    secret = os.environ["VAPI_SERVER_SECRET"]
    shown = secret if secret == DEMO_SECRET else "$VAPI_SERVER_SECRET"
    admin = os.environ["ROUTER_ADMIN_TOKEN"]
    admin_shown = admin if admin == DEMO_ADMIN_TOKEN else "$ROUTER_ADMIN_TOKEN"
    print(
        "\nRoute a sample call (a VIP caller on the main line; see policies/main.yaml):\n\n"
        f"  curl -s -H 'x-vapi-secret: {shown}' -H 'content-type: application/json' \\\n"
        "       --data @policies/captured/demo-call.json http://127.0.0.1:8000/webhook/vapi\n\n"
        "Why that answer:  .venv/bin/vapi-router explain policies "
        "--request policies/captured/demo-call.json\n"
        "Ready / metrics:  curl -s 127.0.0.1:8000/readyz ; curl -s 127.0.0.1:8000/metrics\n"
        f"Operator console: http://127.0.0.1:8000/-/console  (log in with the admin token: {admin_shown})\n"
        "Who answers when: .venv/bin/vapi-router map policies --dialled +16505550117"
        " --format html > map.html\n",
        file=sys.stderr,
    )
    return run(ServeOptions(policy="policies", host="127.0.0.1", port=8000))


if __name__ == "__main__":
    sys.exit(main())
