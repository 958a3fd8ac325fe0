#!/usr/bin/python3
"""The lab's announcement sink (issue #18): records what cutover's `announce` steps send.

Every POST is appended as one JSON line {"path", "content_type", "headers", "body"} to the file
given as the first argument (`body` is the parsed JSON, or the text when it is not JSON) and
answered 204. `GET /received` returns the file (JSON lines), `DELETE /received` empties it; any
path starting with /fail answers 500 (a webhook that is down). Tests read and reset the file
directly, or through these endpoints.
"""
import http.server
import json
import sys
import threading

RECORD = sys.argv[1]
LOCK = threading.Lock()


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8", "replace")
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        entry = {
            "path": self.path,
            "content_type": self.headers.get("Content-Type"),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
        }
        with LOCK, open(RECORD, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        self.send_response(500 if self.path.startswith("/fail") else 204)
        self.end_headers()

    def do_GET(self):
        if self.path != "/received":
            self.send_error(404)
            return
        with LOCK:
            try:
                with open(RECORD, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                data = b""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_DELETE(self):
        if self.path != "/received":
            self.send_error(404)
            return
        with LOCK:
            open(RECORD, "w").close()
        self.send_response(204)
        self.end_headers()

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


if __name__ == "__main__":
    addr, port = sys.argv[2], int(sys.argv[3])
    http.server.ThreadingHTTPServer((addr, port), Sink).serve_forever()
