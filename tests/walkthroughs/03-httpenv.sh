#!/usr/bin/env bash
# Seed 003: "ClusterIP - How to talk to services": httpenv behind a ClusterIP, reached
# pod to pod by name and by address, node to ClusterIP, and from the shpod namespace.
. "$(dirname "$0")/lib.sh"

title "Talking to a ClusterIP service: httpenv"
say "Five pods of a tiny HTTP server that answers with its environment as JSON, one Service in front of them, and clients in pods, on the node, and in another namespace."

section "Create the pods and the service"
run 'kubectl create deployment httpenv --image=bretfisher/httpenv'
run 'kubectl scale deployment/httpenv --replicas=5'
run 'kubectl expose deployment/httpenv --port 8888'
expect 'service/httpenv exposed'
run 'kubectl rollout status deployment/httpenv --timeout=120s'
expect 'successfully rolled out'
until_ok 30 'listening app=httpenv 8888'
run 'kubectl get pods -l app=httpenv -o wide'
expect_count 5 '^httpenv-[a-z0-9]+-[a-z0-9]{5} +1/1 +Running'

section "Approach 1: pod to pod, by the service's name"
say "The seed types \`curl httpenv:8888\` at an interactive shell; here the same lines go to the shell's standard input."
run_stdin 'kubectl run tmp-shell --rm -i --image bretfisher/netshoot -- bash' \
    'for i in $(seq 10); do curl -s httpenv:8888 | jq -r .HOSTNAME; done'
HOSTNAMES=$(grep -E '^httpenv-' <<<"$OUT" || true)
OUT=$HOSTNAMES
expect_count 10 '^httpenv-[a-z0-9]+-[a-z0-9]{5}$'
expect_distinct_at_least 3

section "Approach 2: node to ClusterIP"
run 'kubectl get service'
expect '^httpenv +ClusterIP +10\.[0-9.]+ +<none> +8888/TCP'
run 'IP=$(kubectl get svc httpenv -o go-template --template "{{ .spec.clusterIP }}"); curl -s http://$IP:8888/ | jq .HOSTNAME'
expect '^"httpenv-[a-z0-9]+-[a-z0-9]{5}"$'

section "A shell pod in another namespace: shpod"
cat >shpod.yml <<'EOF'
apiVersion: v1
kind: Namespace
metadata:
  name: shpod
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: shpod
  namespace: shpod
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: shpod
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
- kind: ServiceAccount
  name: shpod
  namespace: shpod
---
apiVersion: v1
kind: Pod
metadata:
  name: shpod
  namespace: shpod
spec:
  serviceAccountName: shpod
  containers:
  - name: shpod
    image: bretfisher/shpod
    imagePullPolicy: Always
    stdin: true
    tty: true
    env:
    - name: HOSTIP
      valueFrom:
        fieldRef:
          fieldPath: status.hostIP
EOF
say "The seed's \`https://bret.run/shpod.yml\`, with its indentation repaired (skiff serves the RBAC kinds so the file applies as written, but does not enforce them: there is one admin user)."
show_file shpod.yml
run 'kubectl apply -f shpod.yml'
expect 'clusterrolebinding.rbac.authorization.k8s.io/shpod created'
expect 'pod/shpod created'
run 'kubectl wait --for=condition=Ready pod/shpod --namespace=shpod --timeout=60s'
say "The seed attaches to the shell (\`kubectl attach --namespace=shpod -ti shpod\`) and types at its prompt; here the same lines go to the same shell without a local terminal (\`stty -echo\` keeps the pod's terminal from echoing them back)."
run_stdin 'kubectl attach --namespace=shpod -i shpod' 'stty -echo
echo "HOSTIP=$HOSTIP"
for i in 1 2 3 4 5 6; do curl -s http://httpenv.default:8888 | jq .HOSTNAME; done
exit'
expect '^HOSTIP=[0-9.]+'
HOSTNAMES=$(grep -E '^"httpenv-' <<<"$OUT" || true)
OUT=$HOSTNAMES
expect_count 6 '^"httpenv-[a-z0-9]+-[a-z0-9]{5}"$'
expect_distinct_at_least 2

section "Clean up"
run 'kubectl delete namespace shpod --wait=false && kubectl delete clusterrolebinding shpod'
run 'kubectl delete service/httpenv deployment/httpenv'
