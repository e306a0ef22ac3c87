"""A webhook receiver for the integration tests: an HTTP server on 127.0.0.1 that
checks every request with the `standardwebhooks` library (the independent verifier of
SPEC §13) and answers as told.

Control (JSON over HTTP, on the same port):
  POST /_control {"mode": "ok"|"fail"|"hang"|"close"|"big", "secret": "whsec_..."}
      ok: 200 at once; fail: 500; hang: never answer (the connection stays open);
      close: close the connection without an answer; big: 200 with a 50 MB body.
      Either key may be left out.
  GET /_received  every webhook request so far, oldest first:
      [{"id", "timestamp", "signature", "type", "body", "verified", "error", "answered"}]
      ("answered": the status code sent, or null for hang/close)
  POST /_reset    forget what was received.

Any other POST is a webhook request. It is recorded whatever the mode (so a test can
count the tries of a failing receiver), verified when a secret is set, and answered
by the mode (a request that fails verification is answered 400).
"""

import argparse
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

STATE = {"mode": "ok", "secret": None, "received": []}
LOCK = threading.Lock()
BIG = 50 * 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def _json(self, code, value):
        body = json.dumps(value).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length)

    def do_GET(self):
        if self.path == "/_received":
            with LOCK:
                received = list(STATE["received"])
            self._json(200, received)
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self):
        body = self._body()
        if self.path == "/_control":
            change = json.loads(body or b"{}")
            with LOCK:
                for key in ("mode", "secret"):
                    if key in change:
                        STATE[key] = change[key]
            self._json(200, {"mode": STATE["mode"], "secret_set": STATE["secret"] is not None})
            return
        if self.path == "/_reset":
            with LOCK:
                STATE["received"].clear()
            self._json(200, {})
            return
        with LOCK:
            mode, secret = STATE["mode"], STATE["secret"]
        headers = {k.lower(): v for k, v in self.headers.items()}
        entry = {
            "id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "signature": headers.get("webhook-signature"),
            "path": self.path,
            "verified": False,
            "error": None,
            "type": None,
            "body": None,
            "answered": None,
            "at": time.time(),
        }
        try:
            entry["body"] = json.loads(body)
            entry["type"] = entry["body"].get("type")
        except Exception as e:  # noqa: BLE001 - recorded for the test to see
            entry["error"] = f"not JSON: {e}"
        if secret is not None:
            try:
                Webhook(secret).verify(body, headers)
                entry["verified"] = True
            except Exception as e:  # noqa: BLE001
                entry["error"] = f"verification failed: {e!r}"
        with LOCK:
            STATE["received"].append(entry)
        if secret is not None and not entry["verified"]:
            entry["answered"] = 400
            self._json(400, {"error": entry["error"]})
            return
        if mode == "ok":
            entry["answered"] = 200
            self._json(200, {"ok": True})
        elif mode == "fail":
            entry["answered"] = 500
            self._json(500, {"error": "told to fail"})
        elif mode == "hang":
            time.sleep(3600)
        elif mode == "close":
            self.close_connection = True
            try:
                import socket

                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif mode == "big":
            entry["answered"] = 200
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(BIG))
            self.end_headers()
            chunk = b"x" * (1024 * 1024)
            try:
                for _ in range(BIG // len(chunk)):
                    self.wfile.write(chunk)
            except OSError:
                pass


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--watch-stdin", action="store_true")
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"webhook receiver listening on 127.0.0.1:{args.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.watch_stdin:
        threading.Thread(target=lambda: (sys.stdin.buffer.read(), stop.set()), daemon=True).start()
    while not stop.wait(1.0):
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
