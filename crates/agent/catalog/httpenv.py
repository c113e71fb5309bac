# As PID 1 of a container, a process ignores SIGTERM unless it handles it; the
# programs these stand in for exit on it.
import os as _os, signal as _signal
_signal.signal(_signal.SIGTERM, lambda *_: _os._exit(0))
import http.server, json, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = json.dumps(dict(os.environ)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("", 8888), H).serve_forever()
