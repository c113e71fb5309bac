# As PID 1 of a container, a process ignores SIGTERM unless it handles it; the
# programs these stand in for exit on it.
import os as _os, signal as _signal
_signal.signal(_signal.SIGTERM, lambda *_: _os._exit(0))
import http.server, os, socket, subprocess, sys
port = int(os.environ.get("WHOAMI_PORT_NUMBER", "80"))
args = sys.argv[1:]
for i, a in enumerate(args):
    if a in ("--port", "-port") and i + 1 < len(args):
        port = int(args[i + 1])
    elif a.startswith("--port=") or a.startswith("-port="):
        port = int(a.split("=", 1)[1])
def ips():
    try:
        out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
        return [l.split()[3].split("/")[0] for l in out.splitlines() if " inet" in l]
    except Exception:
        return []
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        lines = ["Hostname: " + socket.gethostname()]
        lines += ["IP: " + ip for ip in ips()]
        lines.append("RemoteAddr: %s:%d" % self.client_address[:2])
        lines.append("%s %s %s" % (self.command, self.path, self.request_version))
        for k, v in self.headers.items():
            lines.append("%s: %s" % (k, v))
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_POST = do_GET
    def log_message(self, *a):
        pass
print("Starting up on port %d" % port, flush=True)
http.server.ThreadingHTTPServer(("", port), H).serve_forever()
