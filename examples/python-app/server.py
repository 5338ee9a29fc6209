"""A small web app with Lambda MicroVMs lifecycle hooks.

The app answers every GET on port 8080 with 200. The hooks listen on
$HOOKS_PORT (9000): `ready` answers 503 until the app has initialised, then
200, so the build snapshots a warm app; `validate` answers 200 once the app
port serves; `run`, `resume`, `suspend` and `terminate` answer 200.
"""

import json
import os
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

APP_PORT = int(os.environ.get("PORT", "8080"))
HOOKS_PORT = int(os.environ.get("HOOKS_PORT", "9000"))
HOOK_PREFIX = "/aws/lambda-microvms/runtime/v1/"

state = {"ready": False, "started": time.time(), "requests": 0}


def initialise():
    """Stands for the slow start of a real app (loading models, caches...)."""
    time.sleep(2)
    state["table"] = {n: n * n for n in range(10000)}
    state["ready"] = True
    print("initialised", flush=True)


class App(BaseHTTPRequestHandler):
    def do_GET(self):
        state["requests"] += 1
        body = json.dumps(
            {
                "message": "hello from hearth",
                "hostname": socket.gethostname(),
                "path": self.path,
                "requests": state["requests"],
            }
        ).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        print("app:", fmt % args, flush=True)


def app_serves():
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{APP_PORT}/", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class Hooks(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        payload = self.rfile.read(length) if length else b""
        hook = self.path[len(HOOK_PREFIX):] if self.path.startswith(HOOK_PREFIX) else None
        if hook == "ready":
            status = 200 if state["ready"] else 503
        elif hook == "validate":
            status = 200 if state["ready"] and app_serves() else 503
        elif hook in ("run", "resume", "suspend", "terminate"):
            print(f"hook {hook}: {payload[:200]!r}", flush=True)
            status = 200
        else:
            status = 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, fmt, *args):
        print("hooks:", fmt % args, flush=True)


def main():
    threading.Thread(target=initialise, daemon=True).start()
    hooks = ThreadingHTTPServer(("0.0.0.0", HOOKS_PORT), Hooks)
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    print(f"serving on {APP_PORT}, hooks on {HOOKS_PORT}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", APP_PORT), App).serve_forever()


if __name__ == "__main__":
    main()
