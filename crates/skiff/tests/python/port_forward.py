"""The Python `kubernetes` client's port-forward (WebSocket channels) on skiff.

Forwards ports 80 and 81 of the pod `web` in one session: an HTTP request
through 80, and upstream's error text from 81's error channel, where nothing
listens. Prints `DATA <body>` and `ERROR81 <message>`.
"""
import os
import sys
import time

from kubernetes import client, config
from kubernetes.stream import portforward

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()

pf = portforward(v1.connect_get_namespaced_pod_portforward, "web", "default", ports="80,81")
sock = pf.socket(80)
sock.setblocking(True)
sock.sendall(b"GET /py HTTP/1.0\r\nHost: web\r\n\r\n")
data = b""
while True:
    chunk = sock.recv(4096)
    if not chunk:
        break
    data += chunk
head, _, body = data.partition(b"\r\n\r\n")
print("STATUS", head.split(b"\r\n")[0].decode(), flush=True)
print("DATA", body.decode(), end="", flush=True)
sock.close()

deadline = time.time() + 10
while pf.error(81) is None and time.time() < deadline:
    time.sleep(0.05)
print("ERROR81", pf.error(81), flush=True)
ok = body == b"port 80 /py\n" and pf.error(81) is not None
sys.stdout.flush()
# Skip interpreter finalization (the client's pooled connections make it abort
# now and then after all output, which says nothing about the server).
os._exit(0 if ok else 1)
