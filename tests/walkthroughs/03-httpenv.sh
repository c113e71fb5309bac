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
say "The seed's \`https://bret.run/shpod.yml\`, with its indentation repaired: a namespace, a ServiceAccount, a ClusterRoleBinding that makes that account a cluster-admin, and the pod running as it. skiff enforces RBAC, so the binding is what lets kubectl inside the pod (which uses the account's token, as shpod sets it up) read the cluster."
show_file shpod.yml
run 'kubectl apply -f shpod.yml'
expect 'clusterrolebinding.rbac.authorization.k8s.io/shpod created'
expect 'pod/shpod created'
run 'kubectl wait --for=condition=Ready pod/shpod --namespace=shpod --timeout=60s'
say "The seed attaches to the shell (\`kubectl attach --namespace=shpod -ti shpod\`) and types at its prompt; here the same lines go to the same shell without a local terminal (\`stty -echo\` keeps the pod's terminal from echoing them back)."
quietly 'kubectl get svc httpenv -o jsonpath={.spec.clusterIP}'
CLUSTER_IP=$OUT
# With --host-images, shpod is bash on the node itself: no image, so no service
# account token in the pod and no kubectl set up for the cluster; only the curls run.
quietly 'kubectl get pod shpod --namespace=shpod -o jsonpath={.status.containerStatuses[0].imageID}'
IN_POD_KUBECTL=1
case $OUT in skiff://builtin/*) IN_POD_KUBECTL=0 ;; esac
if [ "$IN_POD_KUBECTL" = 1 ]; then
    say "Inside, shpod's login shell has written a kubeconfig for the cluster it runs in (the \`kubernetes\` Service, the pod's service account token, namespace \`default\`), so the seed's \`kubectl\` line works as typed."
    IP_LINE="IP=\$(kubectl get svc httpenv -o go-template --template '{{ .spec.clusterIP }}')"
else
    say "(With \`--host-images\` shpod is a shell on the node, without the pod's service account token, so the seed's in-pod \`kubectl\` line, and the RBAC check after it, are left out: the address read on the node is typed in.)"
    IP_LINE="IP=$CLUSTER_IP"
fi
run_stdin 'kubectl attach --namespace=shpod -i shpod' "stty -echo
echo \"HOSTIP=\$HOSTIP\"
$IP_LINE
echo IP=\$IP
curl -s http://\$IP:8888/ | jq .HOSTNAME
curl -s http://\$IP:8888/ | jq .HOSTNAME
curl -s http://\$IP:8888/ | jq .HOSTNAME
for i in 1 2 3 4 5 6; do curl -s http://httpenv.default:8888 | jq .HOSTNAME; done
exit"
expect '^HOSTIP=[0-9.]+'
# (With the address typed in, its echo is the typed line, which the transcript drops.)
[ "$IN_POD_KUBECTL" = 0 ] || expect "^IP=${CLUSTER_IP//./\\.}\$"
HOSTNAMES=$(grep -E '^"httpenv-' <<<"$OUT" || true)
OUT=$HOSTNAMES
expect_count 9 '^"httpenv-[a-z0-9]+-[a-z0-9]{5}"$'
expect_distinct_at_least 2

if [ "$IN_POD_KUBECTL" = 1 ]; then
    section "Without the ClusterRoleBinding"
    say "The pod's kubectl reads the service only because shpod.yml binds its account to \`cluster-admin\`. Delete that binding and the same line is refused, with upstream's message."
    run 'kubectl delete clusterrolebinding shpod'
    expect 'clusterrolebinding.rbac.authorization.k8s.io "shpod" deleted'
    # RBAC changes reach the authorizer a moment later.
    until_ok 10 '[ "$(kubectl auth can-i get services --namespace=default --as=system:serviceaccount:shpod:shpod 2>/dev/null)" = no ]'
    run_fails 'kubectl auth can-i get services --namespace=default --as=system:serviceaccount:shpod:shpod'
    expect '^no$'
    # `exit` ended the shell above, and the kubelet started it again.
    until_ok 60 's=$(kubectl get pod shpod --namespace=shpod -o jsonpath={.status.containerStatuses[0].ready}/{.status.containerStatuses[0].restartCount}) && [ "${s%/*}" = true ] && [ "${s#*/}" -ge 1 ]'
    run_stdin 'kubectl attach --namespace=shpod -i shpod' "stty -echo
IP=\$(kubectl get svc httpenv -o go-template --template '{{ .spec.clusterIP }}')
echo IP=\$IP
exit"
    expect '^Error from server \(Forbidden\): services "httpenv" is forbidden: User "system:serviceaccount:shpod:shpod" cannot get resource "services" in API group "" in the namespace "default"$'
    expect '^IP=$'
fi

section "Clean up"
run 'kubectl delete namespace shpod --wait=false && kubectl delete clusterrolebinding shpod --ignore-not-found'
run 'kubectl delete service/httpenv deployment/httpenv'
