import http.client, os, sys, threading, time
ip, vhost, stop = sys.argv[1], sys.argv[2], sys.argv[3]
counts = {"keepalive": [0, 0], "new": [0, 0]}
errors = []
def run(kind):
    conn = None
    while not os.path.exists(stop):
        try:
            if conn is None or kind == "new":
                conn = http.client.HTTPConnection(ip, 80, timeout=5)
            conn.request("GET", "/", headers={"Host": vhost})
            r = conn.getresponse()
            body = r.read()
            if r.status == 200 and b"Hostname: app2-" in body:
                counts[kind][0] += 1
            else:
                counts[kind][1] += 1
                errors.append("%s %s %r" % (kind, r.status, body[:80]))
            if kind == "new":
                conn.close()
        except Exception as e:
            counts[kind][1] += 1
            errors.append("%s %r" % (kind, e))
            conn = None
        time.sleep(0.005)
ts = [threading.Thread(target=run, args=(k,)) for k in counts]
for t in ts: t.start()
for t in ts: t.join()
print("keepalive ok=%d failed=%d new ok=%d failed=%d" % (*counts["keepalive"], *counts["new"]))
for e in errors[:10]: print(e)
