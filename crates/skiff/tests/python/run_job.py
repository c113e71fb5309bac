"""The Python `kubernetes` client runs a Job on skiff: create, poll its status
until Complete, read a pod's log, delete it with its pods."""
import sys
import time

from kubernetes import client, config

config.load_kube_config(config_file=sys.argv[1])
batch = client.BatchV1Api()
core = client.CoreV1Api()

job = client.V1Job(
    metadata=client.V1ObjectMeta(name="py-job"),
    spec=client.V1JobSpec(
        completions=2,
        parallelism=1,
        backoff_limit=2,
        template=client.V1PodTemplateSpec(
            spec=client.V1PodSpec(
                restart_policy="Never",
                containers=[
                    client.V1Container(
                        name="c", image="busybox", command=["sh", "-c", "echo py-job says hi"]
                    )
                ],
            )
        ),
    ),
)
made = batch.create_namespaced_job("default", job)
print(f"CREATED {made.metadata.name} selector={made.spec.selector.match_labels}", flush=True)

deadline = time.time() + 120
while True:
    st = batch.read_namespaced_job_status("py-job", "default").status
    done = [c.type for c in (st.conditions or []) if c.status == "True"]
    if "Complete" in done or "Failed" in done:
        break
    if time.time() > deadline:
        sys.exit(f"job did not finish: {st}")
    time.sleep(0.5)
print(f"CONDITIONS {done}", flush=True)
print(f"SUCCEEDED {st.succeeded}", flush=True)

pods = core.list_namespaced_pod("default", label_selector="batch.kubernetes.io/job-name=py-job").items
print(f"PODS {len(pods)}", flush=True)
log = core.read_namespaced_pod_log(pods[0].metadata.name, "default")
print(f"LOG {log.strip()}", flush=True)

# Foreground, as the client's examples delete Jobs: the Job waits for its pods.
batch.delete_namespaced_job("py-job", "default", propagation_policy="Foreground")
deadline = time.time() + 60
while True:
    left = core.list_namespaced_pod("default", label_selector="batch.kubernetes.io/job-name=py-job").items
    names = [j.metadata.name for j in batch.list_namespaced_job("default").items]
    if not left and "py-job" not in names:
        break
    if time.time() > deadline:
        sys.exit(f"not collected: pods {[p.metadata.name for p in left]}, jobs {names}")
    time.sleep(0.5)
print("COLLECTED", flush=True)
