"""The Python `kubernetes` client lists and watches services on skiff."""
import os
import sys
import threading
import time

from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()


def svc(name):
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)], selector={"app": name}),
    )


v1.create_namespaced_service("default", svc("py-svc"))
for s in v1.list_service_for_all_namespaces().items:
    print(f"LISTED {s.metadata.namespace}/{s.metadata.name}", flush=True)

rv = v1.list_namespaced_service("default").metadata.resource_version


def churn():
    time.sleep(0.5)
    v1.create_namespaced_service("default", svc("py-watch"))
    v1.patch_namespaced_service("py-watch", "default", {"metadata": {"labels": {"x": "y"}}})
    v1.delete_namespaced_service("py-watch", "default")


churner = threading.Thread(target=churn, daemon=True)
churner.start()
w = watch.Watch()
seen = 0
for ev in w.stream(v1.list_namespaced_service, "default", resource_version=rv, timeout_seconds=20):
    print(f"{ev['type']} {ev['object'].metadata.name}", flush=True)
    if ev["object"].metadata.name == "py-watch":
        seen += 1
    if seen == 3:
        w.stop()
churner.join(timeout=10)
sys.stdout.flush()
# Skip interpreter finalization: with the client's pooled TLS connections still
# open it aborts now and then (SIGABRT after all output), which says nothing
# about the server.
os._exit(0 if seen == 3 else 1)
