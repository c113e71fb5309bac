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
def ws_echo(h):
    # `/echo` as traefik/whoami: a WebSocket that sends every message back.
    import base64, hashlib, struct
    key = h.headers.get("Sec-WebSocket-Key", "") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    h.send_response(101, "Switching Protocols")
    h.send_header("Upgrade", "websocket")
    h.send_header("Connection", "Upgrade")
    h.send_header("Sec-WebSocket-Accept", base64.b64encode(hashlib.sha1(key.encode()).digest()).decode())
    h.end_headers()
    h.wfile.flush()
    h.close_connection = True
    r, w = h.rfile, h.wfile
    while True:
        head = r.read(2)
        if len(head) < 2:
            return
        op, n = head[0] & 0x0F, head[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", r.read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", r.read(8))[0]
        mask = r.read(4) if head[1] & 0x80 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(r.read(n)))
        if op == 8:
            w.write(b"\x88\x00")
            w.flush()
            return
        if op == 9:
            op = 10
        size = bytes([n]) if n < 126 else (b"\x7e" + struct.pack(">H", n) if n < 65536 else b"\x7f" + struct.pack(">Q", n))
        w.write(bytes([0x80 | op]) + size + data)
        w.flush()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/echo") and self.headers.get("Upgrade", "").lower() == "websocket":
            return ws_echo(self)
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
