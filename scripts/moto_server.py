#!/usr/bin/env python3
"""Single-threaded moto server (all services) for Gatehouse's DynamoDB-backed tests.

Usage: .venv/bin/python scripts/moto_server.py [--host 127.0.0.1] --port PORT

Why not `moto_server`: it runs werkzeug with threaded=True, and moto's backends are not
thread-safe, so two concurrent conditional writes can both pass their condition. Our store
conformance and concurrency tests rely on DynamoDB conditional writes and TransactWriteItems
being atomic, so here every request is handled to completion before the next is accepted
(threaded=False, one process). Werkzeug then speaks HTTP/1.0 and closes each connection, so a
client holding a pooled keep-alive connection cannot starve the others.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def _exit(signum: int, frame: Any) -> None:
    sys.exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", "-p", type=int, required=True)
    args = parser.parse_args(argv)

    # moto uses MOTO_PORT when it builds URLs that point back at itself.
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGINT, _exit)
    signal.signal(signal.SIGTERM, _exit)

    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host,
        args.port,
        app,
        threaded=False,
        processes=1,
        use_reloader=False,
        use_debugger=False,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
