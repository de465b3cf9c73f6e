"""A stand-in health endpoint for the rollout demo: ``GET /health?scope=S&version=V``.

Answers 200, or 503 for the scopes named with ``--fail`` (to watch a rollout step back).
Listens on 127.0.0.1 only. ``--fail`` can be changed while it runs by writing the new
comma-separated list to the file given with ``--fail-file``.

    python3 scripts/health_server.py --port 8790 --fail usa
"""

from __future__ import annotations

import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse


def main() -> None:
    """Serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--fail", default="", help="comma-separated scopes that answer 503")
    parser.add_argument("--fail-file", type=Path, default=None)
    args = parser.parse_args()

    def failing() -> set[str]:
        text = args.fail
        if args.fail_file is not None and args.fail_file.exists():
            text = args.fail_file.read_text()
        return {s.strip() for s in text.split(",") if s.strip()}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            scope = parse_qs(url.query).get("scope", [""])[0]
            ok = url.path == "/health" and scope not in failing()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok\n" if ok else b"unhealthy\n")

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
