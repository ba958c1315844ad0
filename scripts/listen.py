#!/usr/bin/env python3
"""A tiny local listener for Herald demos (standard library only).

Usage: python3 scripts/listen.py [PORT]      (default port: 9000, address 127.0.0.1)

Every POST is answered with 200 {"ok":true} and printed on one line: the path and the body
(compact JSON when the body is JSON, else the raw text). Other methods get 405.
Stop it with Ctrl+C.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    server_version = "herald-listen/1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        text = raw.decode("utf-8", errors="replace")
        try:
            body = json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
        except ValueError:
            body = text.replace("\n", "\\n")
        print(f"POST {self.path} {body}", flush=True)
        answer = b'{"ok":true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def _not_allowed(self):
        answer = b'{"ok":false,"error":"only POST is answered"}'
        self.send_response(405)
        self.send_header("Allow", "POST")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_PUT = do_PATCH = do_DELETE = _not_allowed

    def log_message(self, format, *args):  # the one-line print above is the log
        pass


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"listening on http://127.0.0.1:{port} (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
