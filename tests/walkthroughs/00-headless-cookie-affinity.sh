#!/usr/bin/env bash
# Seed 000, "Session Affinity Settings for multiple Pods exposed by a single service":
# the second kind of affinity the answer describes, "Based on Cookies ... This method
# require Ingress object", through skiff's built-in ingress controller and the
# ingress-nginx annotations the answer's link shows. Several clients behind one IP
# (one machine, several cookie jars) each stay on their pod; without the cookie the
# same IP is spread over the pods.
. "$(dirname "$0")/lib.sh"

title "Session affinity based on cookies, through an Ingress"

section "The ingress controller"
say "skiff runs an ingress controller of its own, for the IngressClass \`skiff\` (the default class):"
run 'kubectl get ingressclass'
expect '^skiff +skiff\.dev/ingress'

section "Five pods behind one service"
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
EOF
show_file my-service.yaml
run 'kubectl apply -f my-service.yaml'
until_ok 30 'service_settled my-service 5'

section "An Ingress with cookie affinity"
cat >my-ingress.yaml <<'EOF'
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: my-app
  annotations:
    nginx.ingress.kubernetes.io/affinity: "cookie"
    nginx.ingress.kubernetes.io/session-cookie-name: "route"
    nginx.ingress.kubernetes.io/session-cookie-max-age: "172800"
spec:
  rules:
  - host: my-app.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: my-service
            port:
              number: 80
EOF
show_file my-ingress.yaml
run 'kubectl apply -f my-ingress.yaml'
until_ok 60 '[ -n "$(kubectl get ingress my-app -o jsonpath="{.status.loadBalancer.ingress[0].ip}")" ]'
quietly "kubectl get ingress my-app -o jsonpath='{.status.loadBalancer.ingress[0].ip}'"
LB=$OUT
run 'kubectl get ingress my-app'
expect "^my-app +[^ ]+ +my-app\.example\.com +${LB//./\\.} +80 "
say "The controller is reached through a LoadBalancer Service of its own in kube-system; its address is the Ingress's:"
run 'kubectl get svc skiff-ingress -n kube-system'
expect "^skiff-ingress +LoadBalancer +[0-9.]+ +${LB//./\\.} +80:"
say "Point the public DNS name at $LB; here curl's \`--resolve\` plays DNS:"
CURL="curl -s --resolve my-app.example.com:80:$LB"
# Tried from the outside machine, where the answers below come from.
in_outside() { if [ -n "${OUTSIDE_NETNS:-}" ]; then ip netns exec "$OUTSIDE_NETNS" bash -c "$1"; else bash -c "$1"; fi; }
export -f in_outside
until_ok 30 "in_outside '$CURL http://my-app.example.com/ | grep -q Hostname:.my-app-'"

section "One browser: the same pod every time"
say "The first answer sets the cookie; a client that sends it back is sent to the same pod, 20 times out of 20:"
outside "$CURL -c jar1.txt -b jar1.txt http://my-app.example.com/ -o /dev/null -D - | grep -i '^set-cookie'"
expect '^[Ss]et-[Cc]ookie: route='
outside "for i in \$(seq 20); do $CURL -c jar1.txt -b jar1.txt http://my-app.example.com/ | grep Hostname; done | sort | uniq -c"
expect_count 1 'Hostname: my-app-'
expect '^ +20 Hostname: my-app-'
FIRST=$(sed -n 's/.*Hostname: //p' <<<"$OUT")

section "Another browser on the same machine"
say "A second cookie jar is another browser behind the same IP address: it gets a cookie of its own and sticks to its pod just as well, which ClientIP affinity cannot do:"
outside "for i in \$(seq 20); do $CURL -c jar2.txt -b jar2.txt http://my-app.example.com/ | grep Hostname; done | sort | uniq -c"
expect_count 1 'Hostname: my-app-'
expect '^ +20 Hostname: my-app-'

section "Without the cookie"
say "Requests that do not send the cookie back, from the very same IP address, are spread over the pods:"
outside "for i in \$(seq 20); do $CURL http://my-app.example.com/ | grep Hostname; done | sort | uniq -c"
n=$(grep -c 'Hostname: my-app-' <<<"$OUT" || true)
[ "$n" -ge 2 ] || fail "expected requests without the cookie on at least 2 pods, got $n"
say "And the first browser is still on $FIRST:"
outside "for i in \$(seq 5); do $CURL -b jar1.txt http://my-app.example.com/ | grep Hostname; done | sort | uniq -c"
expect "^ +5 Hostname: ${FIRST}\$"
run 'kubectl delete ingress my-app && kubectl delete svc my-service && kubectl delete deployment my-app'
