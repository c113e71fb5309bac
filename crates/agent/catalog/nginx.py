# As PID 1 of a container, a process ignores SIGTERM unless it handles it; the
# programs these stand in for exit on it.
import os as _os, signal as _signal
_signal.signal(_signal.SIGTERM, lambda *_: _os._exit(0))
import http.server, time
PAGE = b"""<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>
<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx/1.27.0"
    sys_version = ""
    def do_GET(self):
        if self.path.split("?")[0] not in ("/", "/index.html"):
            body = b"<html><body><h1>404 Not Found</h1></body></html>\n"
            self.send_response(404)
        else:
            body = PAGE
            self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
    do_HEAD = do_GET
    def log_message(self, fmt, *args):
        print('%s - - [%s] "%s" %s' % (self.client_address[0], time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()), self.requestline, args[1] if len(args) > 1 else "-"), flush=True)
print("nginx: ready", flush=True)
http.server.ThreadingHTTPServer(("", 80), H).serve_forever()
