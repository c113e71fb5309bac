#!/usr/bin/env bash
# Seed 000: "What is the purpose of headless service?" and the questions related to it:
# ClusterIP versus headless lookups, restricting a broker with a NetworkPolicy,
# StatefulSet pod names, session affinity, and keeping a load-balancer address when a
# service moves namespace.
. "$(dirname "$0")/lib.sh"

title "Headless services, and the questions around them"

section "A deployment behind a ClusterIP and a headless service"
cat >example.yaml <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  labels:
    app: example
  name: example
spec:
  replicas: 3
  selector:
    matchLabels:
      app: example
  template:
    metadata:
      labels:
        app: example
    spec:
      containers:
      - image: docker.io/traefik/whoami:latest
        name: whoami
        ports:
        - containerPort: 80
          name: http
---
apiVersion: v1
kind: Service
metadata:
  labels:
    app: example
  name: example
spec:
  ports:
  - name: http
    port: 80
    targetPort: http
  selector:
    app: example
---
apiVersion: v1
kind: Service
metadata:
  labels:
    app: example
  name: example-headless
spec:
  clusterIP: None
  ports:
  - name: http
    port: 80
    targetPort: http
  selector:
    app: example
EOF
say "The seed's three manifests (indentation repaired), in one file:"
show_file example.yaml
run 'kubectl apply -f example.yaml'
run 'kubectl rollout status deployment/example --timeout=120s'
until_ok 30 'listening app=example 80'
run 'kubectl run client --image=nicolaka/netshoot -- sleep infinity'
run 'kubectl wait --for=condition=Ready pod/client --timeout=60s'
quietly "kubectl get svc example -o jsonpath='{.spec.clusterIP}'"
CLUSTER_IP=$OUT
quietly 'pod_ips app=example'
POD_IPS=$OUT
say "Looking the service up in a client pod gives the address of the service proxy:"
run 'kubectl exec client -- host example'
expect_count 1 'has address'
expect "^example\.default\.svc\.cluster\.local has address ${CLUSTER_IP//./\\.}$"
say "The headless service gives the addresses of the pods:"
run 'kubectl exec client -- host example-headless'
expect_count 3 '^example-headless\.default\.svc\.cluster\.local has address '
ANSWERS=$(sed -n 's/.* has address //p' <<<"$OUT" | sort)
[ "$ANSWERS" = "$POD_IPS" ] || fail "headless answered [$ANSWERS], pods are [$POD_IPS]"
say "Through the ClusterIP, connections are spread over the pods; through the headless name, the client connects straight to a pod it picked:"
run 'kubectl exec client -- sh -c "for i in \$(seq 12); do curl -s example | grep Hostname; done | sort | uniq -c"'
expect_count 3 'Hostname: example-'
run 'kubectl exec client -- sh -c "curl -s example-headless | grep -E \"^(Hostname|IP: 10)\""'
expect '^Hostname: example-'

section "Restrict access to a service to only some pods"
say "A broker on TCP 6379 (a small TCP server stands in for mosquitto), one client pod labelled for access and one without:"
cat >broker.yaml <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broker
spec:
  replicas: 1
  selector:
    matchLabels:
      role: message-broker
  template:
    metadata:
      labels:
        role: message-broker
    spec:
      containers:
      - name: broker
        image: python:3
        command: ["python3", "-m", "http.server", "6379"]
        ports:
        - containerPort: 6379
---
apiVersion: v1
kind: Service
metadata:
  name: broker
spec:
  selector:
    role: message-broker
  ports:
  - port: 6379
EOF
show_file broker.yaml
run 'kubectl apply -f broker.yaml'
run 'kubectl rollout status deployment/broker --timeout=120s'
until_ok 30 'listening role=message-broker 6379'
run 'kubectl run allowed --image=nicolaka/netshoot --labels=broker-access=true -- sleep infinity'
run 'kubectl run other --image=nicolaka/netshoot -- sleep infinity'
run 'kubectl wait --for=condition=Ready pod/allowed pod/other --timeout=60s'
quietly 'pod_ips role=message-broker'
BROKER_IP=$OUT
TRY='curl -s -o /dev/null -m 2 -w "%{http_code}\n"'
run "kubectl exec other -- $TRY http://broker:6379/"
expect '^200$'
cat >broker-policy.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: broker-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: message-broker
  policyTypes:
  - Ingress
  ingress:
  - from:
    - podSelector:
        matchLabels:
          broker-access: true
    ports:
    - protocol: TCP
      port: 6379
EOF
say "The answer's policy, as written. YAML reads \`true\` as a boolean, and label values are strings, so the API server refuses it:"
show_file broker-policy.yaml
run_fails 'kubectl apply -f broker-policy.yaml'
expect 'NetworkPolicy'
run "sed -i 's/broker-access: true/broker-access: \"true\"/' broker-policy.yaml && kubectl apply -f broker-policy.yaml"
expect 'networkpolicy.networking.k8s.io/broker-policy created'
run 'kubectl describe networkpolicy broker-policy'
say "Now only the labelled pod gets through, by the service name and by the pod's own address; the other one times out (curl exit code 28):"
run "kubectl exec allowed -- $TRY http://broker:6379/"
expect '^200$'
run "kubectl exec allowed -- $TRY http://$BROKER_IP:6379/"
expect '^200$'
run_fails "kubectl exec other -- $TRY http://broker:6379/"
expect '^000$'
run_fails "kubectl exec other -- $TRY http://$BROKER_IP:6379/"
expect '^000$'
say "Labelling the other pod lets it in at once; removing the policy restores access for everyone:"
run 'kubectl label pod other broker-access=true'
until_ok 10 "kubectl exec other -- $TRY http://broker:6379/ | grep -q 200"
run "kubectl exec other -- $TRY http://broker:6379/"
expect '^200$'
run 'kubectl label pod other broker-access-'
until_ok 10 "! kubectl exec other -- $TRY http://broker:6379/"
run 'kubectl delete networkpolicy broker-policy'
until_ok 10 "kubectl exec other -- $TRY http://broker:6379/ | grep -q 200"
run "kubectl exec other -- $TRY http://broker:6379/"
expect '^200$'
run 'kubectl delete -f broker.yaml && kubectl delete pod allowed other --wait=false'

section "Pod to pod: a StatefulSet and its headless service"
cat >my-sts.yaml <<'EOF'
---
apiVersion: v1
kind: Service
metadata:
  name: my-service
  namespace: default
spec:
  clusterIP: None
  selector:
    app: my-test
  ports:
  - port: 80
    name: rest
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: my-sts
spec:
  serviceName: my-service
  replicas: 3
  selector:
    matchLabels:
      app: my-test
  template:
    metadata:
      labels:
        app: my-test
    spec:
      containers:
      - name: nginx
        image: nginx
        ports:
        - containerPort: 80
          name: web
---
EOF
show_file my-sts.yaml
run 'kubectl apply -f my-sts.yaml'
run 'kubectl rollout status statefulset/my-sts --timeout=120s'
until_ok 30 'listening app=my-test 80'
run 'kubectl get pods -l app=my-test -o wide'
expect_count 3 '^my-sts-[012] +1/1 +Running'
quietly "kubectl get pod my-sts-0 -o jsonpath='{.status.podIP}'"
IP0=$OUT
say "From my-sts-1, my-sts-0 by its stable name:"
run 'kubectl exec my-sts-1 -- host my-sts-0.my-service.default.svc'
expect "^my-sts-0\.my-service\.default\.svc\.cluster\.local has address ${IP0//./\\.}$"
run 'kubectl exec my-sts-1 -- curl -s my-sts-0.my-service.default.svc:80 | grep "<title>"'
expect 'Welcome to nginx!'
run 'kubectl delete -f my-sts.yaml'

section "Session affinity"
run 'kubectl create deployment my-app --image=traefik/whoami --replicas=5'
run 'kubectl rollout status deployment/my-app --timeout=120s'
until_ok 30 'listening app=my-app 80'
cat >my-service.yaml <<'EOF'
kind: Service
apiVersion: v1
metadata:
  name: my-service
spec:
  selector:
    app: my-app
  ports:
  - name: http
    protocol: TCP
    port: 80
    targetPort: 80
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP:
      timeoutSeconds: 10000
EOF
show_file my-service.yaml
run 'kubectl apply -f my-service.yaml'
run 'kubectl describe svc my-service | grep -E "^(Session Affinity|Endpoints)"'
expect '^Session Affinity: +ClientIP'
until_ok 30 'service_settled my-service 5'
say "Twenty requests from one client all land on one pod:"
run 'kubectl exec client -- sh -c "for i in \$(seq 20); do curl -s my-service | grep Hostname; done | sort | uniq -c"'
expect_count 1 'Hostname: my-app-'
expect '^ +20 Hostname: my-app-'
FIRST=$(sed -n 's/.*Hostname: //p' <<<"$OUT")
say "With \`timeoutSeconds: 10\`, a client idle for longer than that may be sent elsewhere on its next connection:"
run "kubectl patch svc my-service -p '{\"spec\":{\"sessionAffinityConfig\":{\"clientIP\":{\"timeoutSeconds\":10}}}}'"
until_ok 10 'kubectl get svc my-service -o jsonpath="{.spec.sessionAffinityConfig.clientIP.timeoutSeconds}" | grep -qx 10'
run 'kubectl exec client -- sh -c "curl -s my-service | grep Hostname"'
CURRENT=$(sed -n 's/.*Hostname: //p' <<<"$OUT")
moved=""
for round in 1 2 3 4 5 6 7 8; do
    sleep 11
    quietly 'kubectl exec client -- sh -c "curl -s my-service | grep Hostname"'
    NEXT=$(sed -n 's/.*Hostname: //p' <<<"$OUT")
    if [ "$NEXT" != "$CURRENT" ]; then
        moved="after $round idle period(s) of 11 s: $CURRENT -> $NEXT"
        break
    fi
done
[ -n "$moved" ] || fail "the client stayed on $CURRENT through 8 expired affinity periods"
say "The client moved $moved (the first pod it stuck to was $FIRST). Within the timeout it stays:"
run 'kubectl exec client -- sh -c "for i in \$(seq 10); do curl -s my-service | grep Hostname; done | sort | uniq -c"'
expect_count 1 'Hostname: my-app-'
run 'kubectl delete svc my-service && kubectl delete deployment my-app'

section "Moving a LoadBalancer service to another namespace"
cat >my-app-lb.yaml <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: my-app
  labels:
    app: my-app
spec:
  type: LoadBalancer
  ports:
  - port: 80
    protocol: TCP
  selector:
    app: my-app
EOF
say "The question's manifest lost its \`apiVersion\` and the list under \`ports\`; repaired:"
show_file my-app-lb.yaml
run 'kubectl apply -f my-app-lb.yaml'
until_ok 30 '[ -n "$(kubectl get svc my-app -o jsonpath="{.status.loadBalancer.ingress[0].ip}")" ]'
run 'kubectl get svc my-app'
quietly "kubectl get svc my-app -o jsonpath='{.status.loadBalancer.ingress[0].ip}'"
OLD_IP=$OUT
run 'kubectl create namespace my-namespace'
run 'kubectl apply -f my-app-lb.yaml --namespace my-namespace'
until_ok 30 '[ -n "$(kubectl get svc my-app -n my-namespace -o jsonpath="{.status.loadBalancer.ingress[0].ip}")" ]'
run 'kubectl get svc my-app -n my-namespace'
quietly "kubectl get svc my-app -n my-namespace -o jsonpath='{.status.loadBalancer.ingress[0].ip}'"
[ "$OUT" != "$OLD_IP" ] || fail "the second service got the same address"
say "Another service, another address, as in the question. The answer: ask for the address. Delete the old service, then recreate the new one with \`loadBalancerIP\` set to it:"
run 'kubectl delete svc my-app && kubectl delete svc my-app -n my-namespace'
run "sed '/^spec:/a\\  loadBalancerIP: $OLD_IP' my-app-lb.yaml > my-app-lb-kept.yaml && cat my-app-lb-kept.yaml"
run 'kubectl create deployment my-app --image=traefik/whoami -n my-namespace'
run 'kubectl apply -f my-app-lb-kept.yaml -n my-namespace'
until_ok 30 "[ \"\$(kubectl get svc my-app -n my-namespace -o jsonpath='{.status.loadBalancer.ingress[0].ip}')\" = $OLD_IP ]"
run 'kubectl get svc my-app -n my-namespace'
expect "^my-app +LoadBalancer +10\.[0-9.]+ +${OLD_IP//./\\.} +80:"
run 'kubectl rollout status deployment/my-app -n my-namespace --timeout=120s'
until_ok 30 "if [ -n \"\${OUTSIDE_NETNS:-}\" ]; then ip netns exec \"\$OUTSIDE_NETNS\" curl -s -m 2 http://$OLD_IP/; else curl -s -m 2 http://$OLD_IP/; fi | grep -q Hostname"
outside "curl -s http://$OLD_IP/ | grep Hostname"
expect '^Hostname: my-app-'

section "Clean up"
run 'kubectl delete namespace my-namespace && kubectl delete -f example.yaml && kubectl delete pod client'
