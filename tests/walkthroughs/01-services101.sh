#!/usr/bin/env bash
# Seed 001: kubelabs "What are Kubernetes Services?": my-nginx behind a Service,
# endpoints that follow the pods, environment variables and DNS, NodePort and
# LoadBalancer, multi-port services, a Service without pods, a fixed nodePort and a
# requested loadBalancerIP.
. "$(dirname "$0")/lib.sh"

title "What are Kubernetes Services? (kubelabs Services101)"
say "The seed applies \`nginx-svc.yaml\` from the kubelabs repository to nginx pods labelled \`run: my-nginx\` made in an earlier step; both files are written out here."

section "Pods first, then the Service"
cat >run-my-nginx.yaml <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-nginx
spec:
  selector:
    matchLabels:
      run: my-nginx
  replicas: 2
  template:
    metadata:
      labels:
        run: my-nginx
    spec:
      containers:
      - name: my-nginx
        image: nginx
        ports:
        - containerPort: 80
EOF
cat >nginx-svc.yaml <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: my-nginx
  labels:
    run: my-nginx
spec:
  ports:
  - port: 80
    protocol: TCP
  selector:
    run: my-nginx
EOF
show_file run-my-nginx.yaml
run 'kubectl apply -f run-my-nginx.yaml'
run 'kubectl rollout status deployment/my-nginx --timeout=120s'
until_ok 30 'listening run=my-nginx 80'
show_file nginx-svc.yaml
run 'kubectl apply -f nginx-svc.yaml'
expect 'service/my-nginx created'
run 'kubectl get svc my-nginx'
expect '^my-nginx +ClusterIP +10\.[0-9.]+ +<none> +80/TCP'
quietly "kubectl get svc my-nginx -o jsonpath='{.spec.clusterIP}'"
CLUSTER_IP=$OUT

section "Endpoints follow the pods"
quietly 'pod_ips run=my-nginx'
IPS=$OUT
until_ok 30 'service_settled my-nginx 2'
run 'kubectl describe svc my-nginx'
ENDPOINTS=$(sed -n 's/^Endpoints: *//p' <<<"$OUT" | tr ',' '\n' | sed 's/:80$//' | sort)
[ "$ENDPOINTS" = "$IPS" ] || fail "Endpoints [$ENDPOINTS], pods [$IPS]"
say "The addresses in \`Endpoints\` are the pods' own."
say "The Service IP is virtual; from the node it answers like the pods behind it:"
run "curl -s http://$CLUSTER_IP:80/ | grep title"
expect '<title>Welcome to nginx!</title>'

section "Environment variables: the ordering problem"
quietly "kubectl get pods -l run=my-nginx -o jsonpath='{.items[0].metadata.name}'"
run "kubectl exec $OUT -- printenv | grep SERVICE"
expect '^KUBERNETES_SERVICE_HOST=10\.96\.0\.1$'
expect_not '^MY_NGINX_SERVICE_HOST='
say "No \`MY_NGINX_*\`: these pods were created before the Service. Recreate them and they get it:"
run 'kubectl scale deployment my-nginx --replicas=0; kubectl scale deployment my-nginx --replicas=2;'
run 'kubectl rollout status deployment/my-nginx --timeout=120s'
until_ok 30 'listening run=my-nginx 80'
run 'kubectl get pods -l run=my-nginx -o wide'
expect_count 2 '^my-nginx-[a-z0-9]+-[a-z0-9]{5} +1/1 +Running'
quietly "kubectl get pods -l run=my-nginx -o jsonpath='{.items[0].metadata.name}'"
run "kubectl exec $OUT -- printenv | grep SERVICE"
expect "^MY_NGINX_SERVICE_HOST=${CLUSTER_IP//./\\.}$"
expect '^MY_NGINX_SERVICE_PORT=80$'

section "When a pod dies"
say "Its replacement (a new pod with a new name) takes its place in the endpoints without anyone touching the Service:"
run "kubectl get endpoints my-nginx -o jsonpath='{range .subsets[*].addresses[*]}{.ip} {.targetRef.name}{\"\\n\"}{end}'"
quietly "kubectl get pods -l run=my-nginx -o jsonpath='{.items[0].metadata.name}'"
VICTIM=$OUT
run "kubectl delete pod $VICTIM"
until_ok 60 "names=\$(kubectl get endpoints my-nginx -o jsonpath='{.subsets[0].addresses[*].targetRef.name}'); [ \$(wc -w <<<\"\$names\") = 2 ] && ! grep -qw $VICTIM <<<\"\$names\""
run "kubectl get endpoints my-nginx -o jsonpath='{range .subsets[*].addresses[*]}{.ip} {.targetRef.name}{\"\\n\"}{end}'"
expect_not "$VICTIM"
expect_count 2 '^10\.[0-9.]+ my-nginx-'

section "DNS"
run 'kubectl get services kube-dns --namespace=kube-system'
expect '^kube-dns +ClusterIP +10\.96\.0\.10 +<none> +53/UDP,53/TCP'
say "The seed starts \`kubectl run curl --image=radial/busyboxplus:curl -i --tty\` and types \`nslookup my-nginx\` at its prompt:"
run_stdin 'kubectl run curl --image=radial/busyboxplus:curl -i --rm --restart=Never -- sh' 'nslookup my-nginx'
expect '^Name:[[:space:]]+my-nginx\.default\.svc\.cluster\.local$'
expect "^Address: ${CLUSTER_IP//./\\.}$"

section "Exposing the Service: NodePort"
cat >nginx-svc-nodeport.yaml <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: my-nginx
  labels:
    run: my-nginx
spec:
  type: NodePort
  ports:
  - port: 8080
    targetPort: 80
    protocol: TCP
    name: http
  - port: 443
    protocol: TCP
    name: https
  selector:
    run: my-nginx
EOF
say "The seed's service at this point is a NodePort with two named ports (the nginx stand-in serves plain HTTP only, so only \`http\` is tried below):"
show_file nginx-svc-nodeport.yaml
run 'kubectl apply -f nginx-svc-nodeport.yaml'
run 'kubectl get svc my-nginx -o yaml | grep nodePort -C 5'
expect 'nodePort: 3[0-9]{4}'
quietly "kubectl get svc my-nginx -o jsonpath='{.spec.ports[?(@.name==\"http\")].nodePort}'"
NODE_PORT=$OUT
say "skiff's node has no \`ExternalIP\`; its address on its network is the \`InternalIP\`:"
run 'kubectl get nodes -o yaml | grep InternalIP -C 1'
quietly node_ip
NODE_IP=$OUT
# Every node's proxy programs the new NodePort; the reader's first curl comes once it has.
until_ok 30 "if [ -n \"\${OUTSIDE_NETNS:-}\" ]; then ip netns exec \"\$OUTSIDE_NETNS\" curl -s -m 2 http://$NODE_IP:$NODE_PORT/; else curl -s -m 2 http://$NODE_IP:$NODE_PORT/; fi | grep -q '<h1>'"
outside "curl -s http://$NODE_IP:$NODE_PORT | grep '<h1>'"
expect '<h1>Welcome to nginx!</h1>'

section "Exposing the Service: LoadBalancer"
say "\`kubectl edit\` opens an editor; the editor here is a \`sed\` that changes the type, as a user would by hand:"
run 'KUBE_EDITOR="sed -i s/type:\ NodePort/type:\ LoadBalancer/" kubectl edit svc my-nginx'
expect 'service/my-nginx edited'
until_ok 30 '[ -n "$(kubectl get svc my-nginx -o jsonpath="{.status.loadBalancer.ingress[0].ip}")" ]'
run 'kubectl get svc my-nginx'
expect '^my-nginx +LoadBalancer +10\.[0-9.]+ +[0-9.]+ +8080:3[0-9]{4}/TCP,443:3[0-9]{4}/TCP'
quietly "kubectl get svc my-nginx -o jsonpath='{.status.loadBalancer.ingress[0].ip}'"
LB_IP=$OUT
outside "curl -s http://$LB_IP:8080 | grep '<title>'"
expect '<title>Welcome to nginx!</title>'
run 'kubectl describe service my-nginx | grep "LoadBalancer Ingress"'
expect "^LoadBalancer Ingress: +${LB_IP//./\\.}"

section "Service exposing more than one port"
cat >webserver.yaml <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: webserver
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 80
  - name: https
    port: 443
    targetPort: 443
EOF
say "The seed's manifest, with its indentation repaired:"
show_file webserver.yaml
run 'kubectl apply -f webserver.yaml'
run 'kubectl get svc webserver'
expect '^webserver +ClusterIP +10\.[0-9.]+ +<none> +80/TCP,443/TCP'
say "Without names for the ports, the API server refuses it:"
cat >webserver-unnamed.yaml <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: webserver-unnamed
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 80
  - port: 443
    targetPort: 443
EOF
show_file webserver-unnamed.yaml
run_fails 'kubectl apply -f webserver-unnamed.yaml'
expect 'spec\.ports\[0\]\.name: Required value'
expect 'spec\.ports\[1\]\.name: Required value'

section "A Service without pods"
say "A service with no selector points wherever its Endpoints say, here at a server on another machine of the node's network. Asking for a cluster IP that is taken fails (10.96.0.1 belongs to \`kubernetes\`):"
cat >external-backend.yaml <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: external-backend
spec:
  ports:
  - protocol: TCP
    port: 3000
    targetPort: 3000
  clusterIP: 10.96.0.1
EOF
show_file external-backend.yaml
run_fails 'kubectl apply -f external-backend.yaml'
expect 'provided IP is already allocated'
run "sed -i 's/clusterIP: 10.96.0.1$/clusterIP: 10.96.0.100/' external-backend.yaml && kubectl apply -f external-backend.yaml"
expect 'service/external-backend created'
quietly 'if [ -n "${OUTSIDE_NETNS:-}" ]; then ip netns exec "$OUTSIDE_NETNS" ip -4 -o addr show scope global | awk "{print \$4}" | cut -d/ -f1 | head -1; else node_ip; fi'
BACKEND_IP=$OUT
outside 'mkdir -p /tmp/backend-$$ && echo "hello from the NodeJS backend outside the cluster" >/tmp/backend-$$/index.html && cd /tmp/backend-$$ && (setsid python3 -m http.server 3000 >/dev/null 2>&1 & echo $! >/tmp/skiff-walkthrough-backend.pid) && sleep 0.5 && echo started'
cat >external-backend-endpoints.yaml <<EOF
apiVersion: v1
kind: Endpoints
metadata:
  name: external-backend
subsets:
- addresses:
  - ip: $BACKEND_IP
  ports:
  - port: 3000
EOF
show_file external-backend-endpoints.yaml
run 'kubectl apply -f external-backend-endpoints.yaml'
run 'kubectl get endpointslices -l kubernetes.io/service-name=external-backend'
expect "^external-backend-[a-z0-9]+ +IPv4 +3000 +${BACKEND_IP//./\\.}"
until_ok 30 'kubectl run probe-$RANDOM --image=busybox --rm -i --restart=Never -- timeout 2 wget -qO- http://external-backend:3000/ 2>/dev/null | grep -q hello'
run_stdin 'kubectl run client --image=busybox --rm -i --restart=Never -- sh' 'wget -qO- http://external-backend:3000/'
expect '^hello from the NodeJS backend outside the cluster$'
outside 'kill $(cat /tmp/skiff-walkthrough-backend.pid) && rm -f /tmp/skiff-walkthrough-backend.pid && echo stopped'

section "NodePort with a chosen port"
run 'kubectl create deployment web --image=nginx --replicas=2'
run 'kubectl rollout status deployment/web --timeout=120s'
until_ok 30 'listening app=web 80'
cat >frontend.yaml <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: frontend
spec:
  type: NodePort
  ports:
    - port: 80
      nodePort: 30000
      targetPort: 80
  selector:
    app: web
EOF
show_file frontend.yaml
run 'kubectl apply -f frontend.yaml'
run 'kubectl get svc frontend'
expect '^frontend +NodePort +10\.[0-9.]+ +<none> +80:30000/TCP'
outside "curl -s http://$NODE_IP:30000 | grep '<h1>'"
expect '<h1>Welcome to nginx!</h1>'
say "The port is taken now; another service asking for it is refused:"
run_fails "sed 's/name: frontend/name: frontend-2/' frontend.yaml | kubectl apply -f -"
expect 'provided port is already allocated'

section "LoadBalancer with a requested address"
cat >frontend-lb.yaml <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: frontend
spec:
  type: LoadBalancer
  loadBalancerIP: 78.11.24.19
  selector:
    app: web
  ports:
  - protocol: TCP
    port: 80
    targetPort: 80
EOF
show_file frontend-lb.yaml
run 'kubectl apply -f frontend-lb.yaml'
run 'kubectl get svc frontend'
expect '^frontend +LoadBalancer +10\.[0-9.]+ +<pending> '
say "\"If the provider supports it, it will be implemented\": skiff's load balancer hands out addresses from its pool (\`--lb-pool\`), and says why it cannot give this one:"
until_ok 30 'kubectl describe svc frontend | grep -q "is not in pool"'
run 'kubectl describe svc frontend | sed -n "/^Events:/,\$p"'
expect 'requested loadBalancerIP 78\.11\.24\.19 is not in pool'
WANT="${LB_IP%.*}.50"
run "kubectl patch svc frontend -p '{\"spec\":{\"loadBalancerIP\":\"$WANT\"}}'"
until_ok 30 "[ \"\$(kubectl get svc frontend -o jsonpath='{.status.loadBalancer.ingress[0].ip}')\" = $WANT ]"
run 'kubectl get svc frontend'
expect "^frontend +LoadBalancer +10\.[0-9.]+ +${WANT//./\\.} +80:"
outside "curl -s http://$WANT | grep '<h1>'"
expect '<h1>Welcome to nginx!</h1>'

section "Clean up"
run 'kubectl delete svc my-nginx webserver external-backend frontend && kubectl delete deployment my-nginx web'
