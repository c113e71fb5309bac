#!/usr/bin/env bash
# Seed 002: "What is a headless service?": a regular and a headless service over the
# same three nginx pods in namespace moon, looked up from a dnsutils pod.
. "$(dirname "$0")/lib.sh"

title "A regular and a headless service side by side (namespace moon)"
say "The seed works in a namespace called \`moon\`; its lookups answer \`regular-svc.moon.svc.cluster.local\`, so the pod doing them lives there too."

section "Create the namespace and make it the current one"
run 'kubectl create namespace moon'
run 'kubectl config set-context --current --namespace=moon'

section "The deployment and the two services"
cat >app.yaml <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  labels:
    app: server
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:alpine
        ports:
        - containerPort: 80
EOF
cat >regular-svc.yaml <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: regular-svc
spec:
  selector:
    app: web
  ports:
    - protocol: TCP
      port: 80
      targetPort: 8080
EOF
cat >headless-svc.yaml <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: headless-svc
spec:
  clusterIP: None # <= Don't forget!!
  selector:
    app: web
  ports:
    - protocol: TCP
      port: 80
      targetPort: 8080
EOF
show_file app.yaml
show_file regular-svc.yaml
show_file headless-svc.yaml
run 'kubectl apply -f app.yaml -f regular-svc.yaml -f headless-svc.yaml'
expect 'deployment.apps/app created'
expect 'service/headless-svc created'
run 'kubectl rollout status deployment/app --timeout=120s'
run 'kubectl get svc'
expect '^headless-svc +ClusterIP +None +<none> +80/TCP'
expect '^regular-svc +ClusterIP +10\.[0-9.]+ +<none> +80/TCP'
quietly "kubectl get svc regular-svc -o jsonpath='{.spec.clusterIP}'"
CLUSTER_IP=$OUT
quietly "pod_ips app=web moon"
POD_IPS=$OUT

section "Look them up from a pod"
say "The seed runs a dnsutils pod and opens a shell in it (\`k exec tmp01 -it -- /bin/sh\`); here the same lookups run through \`kubectl exec\` without a terminal."
run 'k run tmp01 --image=tutum/dnsutils -- sleep infinity'
run 'k wait --for=condition=Ready pod/tmp01 --timeout=60s'
run 'k exec tmp01 -- nslookup regular-svc'
expect '^Server:[[:space:]]+10\.96\.0\.10$'
expect '^Name:[[:space:]]+regular-svc\.moon\.svc\.cluster\.local$'
expect_count 1 '^Address: '
expect "^Address: ${CLUSTER_IP//./\\.}$"
run 'k exec tmp01 -- nslookup headless-svc'
expect_count 3 '^Name:[[:space:]]+headless-svc\.moon\.svc\.cluster\.local$'
ANSWERS=$(grep -E '^Address: ' <<<"$OUT" | sed 's/^Address: //' | sort)
[ "$ANSWERS" = "$POD_IPS" ] || fail "headless-svc answered [$ANSWERS], the pods are [$POD_IPS]"
say "Three addresses for the headless service: exactly the pods' own addresses."
run 'kubectl get pods -l app=web -o wide'

section "Headless answers follow the pods"
run 'kubectl scale deployment/app --replicas=1'
until_ok 60 '[ "$(kubectl exec tmp01 -- nslookup headless-svc | grep -c "^Address: ")" = 1 ]'
run 'k exec tmp01 -- nslookup headless-svc'
expect_count 1 '^Address: '

section "Clean up"
run 'kubectl config set-context --current --namespace=default'
run 'kubectl delete namespace moon'
