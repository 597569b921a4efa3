"""`vapi-router serve PATH [--host] [--port] [--workers] …`: flags in, the server run. [edge]"""

from __future__ import annotations

import argparse
import sys

from router.tools.clicommon import add_vapi_spec_flag


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("serve", help="the webhook server")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--path", dest="webhook_path", default="/webhook/vapi", help="webhook path")
    p.add_argument("--no-watch", action="store_true", help="do not reload on file changes")
    p.add_argument(
        "--decision-log", default="-", metavar="FILE|-", help="'-' is stdout (default); 'none' disables"
    )
    p.add_argument("--capture", metavar="FILE", help="record assistant-requests as JSONL for replay")
    p.add_argument("--shadow", metavar="OTHER_PATH", help="evaluate a candidate policy beside the live one")
    p.add_argument("--insecure", action="store_true", help="allow running without webhook auth")
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="close a request head slower than this",
    )
    p.add_argument(
        "--body-timeout", type=float, default=30.0, metavar="S", help="close a request body slower than this"
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=0,
        metavar="N",
        help="open connections at most; past it the longest idle close (default: fd limit - 150)",
    )
    add_vapi_spec_flag(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from router.server.serve import ServeOptions, run  # the server's imports are not needed for lint/test

    if args.workers < 1:
        print("vapi-router serve: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.header_timeout <= 0 or args.body_timeout <= 0 or args.max_connections < 0:
        print("vapi-router serve: timeouts must be positive, --max-connections at least 0", file=sys.stderr)
        return 2
    return run(
        ServeOptions(
            policy=args.path,
            host=args.host,
            port=args.port,
            workers=args.workers,
            path=args.webhook_path,
            watch=not args.no_watch,
            decision_log=None if args.decision_log in ("none", "off") else args.decision_log,
            capture=args.capture,
            shadow=args.shadow,
            insecure=args.insecure,
            header_timeout=args.header_timeout,
            body_timeout=args.body_timeout,
            max_connections=args.max_connections,
        )
    )
