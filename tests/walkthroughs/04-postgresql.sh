#!/usr/bin/env bash
# Seed 004: "Headless Service": a PostgreSQL StatefulSet behind the headless service
# postgresql-svc in namespace k8s-training, scaled from 1 to 3 replicas.
. "$(dirname "$0")/lib.sh"

title "A PostgreSQL StatefulSet and its headless service"
say "The seed's StatefulSet comes from an earlier lesson that is not part of it; the manifests below are the ones it describes: namespace \`k8s-training\`, a headless service \`postgresql-svc\` labelled \`app=postgresql-a\` with the port \`postgresql-port\` 5432, and the StatefulSet \`postgresql-sfs\` with one replica. The \`postgres:12\` image initialises a database cluster on first start (here a stand-in built from Debian's PostgreSQL server, pulled through the \`docker.io\` mirror), so the rollout waits for its readiness probe."

section "Create the namespace, the service and the StatefulSet"
cat >10-namespace.yaml <<'EOF'
apiVersion: v1
kind: Namespace
metadata:
  name: k8s-training
EOF
cat >20-service.yaml <<'EOF'
apiVersion: v1
kind: Service
metadata:
  name: postgresql-svc
  namespace: k8s-training
  labels:
    app: postgresql-a
spec:
  clusterIP: None
  selector:
    app: postgresql-a
  ports:
  - name: postgresql-port
    port: 5432
EOF
cat >30-stateful-set.yaml <<'EOF'
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: postgresql-sfs
  namespace: k8s-training
spec:
  serviceName: postgresql-svc
  replicas: 1
  selector:
    matchLabels:
      app: postgresql-a
  template:
    metadata:
      labels:
        app: postgresql-a
    spec:
      containers:
      - name: postgresql-db
        image: postgres:12
        env:
        - name: POSTGRES_PASSWORD
          value: training
        ports:
        - containerPort: 5432
          name: postgresql-port
        readinessProbe:
          tcpSocket:
            port: 5432
          periodSeconds: 1
EOF
show_file 20-service.yaml
show_file 30-stateful-set.yaml
run 'kubectl apply -f 10-namespace.yaml -f 20-service.yaml -f 30-stateful-set.yaml'
expect 'statefulset.apps/postgresql-sfs created'
run 'kubectl rollout status statefulset/postgresql-sfs -n k8s-training --timeout=120s'
quietly 'pod_ips app=postgresql-a k8s-training'
IP0=$OUT

section "The service's endpoint is the StatefulSet's pod"
run 'kubectl describe service postgresql-svc -n k8s-training'
expect '^Labels: +app=postgresql-a$'
expect '^Selector: +app=postgresql-a$'
expect '^IP: +None$'
expect '^Port: +postgresql-port +5432/TCP$'
expect "^Endpoints: +${IP0//./\\.}:5432$"
run 'kubectl describe pod postgresql-sfs-0 -n k8s-training | grep -E "^(Name|Namespace|Status|IP):"'
expect "^IP: +${IP0//./\\.}$"

section "Go and see yourself"
say "The seed opens a shell in a utility pod and runs nslookup there; the same line goes to the shell's standard input here (and \`--rm\` deletes the pod afterwards, so the name can be used again below)."
run_stdin 'kubectl run -i --rm nspct --image=fischerjulian/nspct --restart=Never -n k8s-training -- bash' \
    'nslookup postgresql-svc.k8s-training.svc.cluster.local'
expect '^Name:[[:space:]]+postgresql-svc\.k8s-training\.svc\.cluster\.local$'
expect_count 1 '^Address: '
expect "^Address: ${IP0//./\\.}$"

section "Three replicas"
run "sed -i 's/replicas: 1/replicas: 3/' 30-stateful-set.yaml"
run 'kubectl apply -f 30-stateful-set.yaml'
expect 'statefulset.apps/postgresql-sfs configured'
run 'kubectl rollout status statefulset/postgresql-sfs -n k8s-training --timeout=180s'
run 'kubectl get statefulsets -n k8s-training'
expect '^postgresql-sfs +3/3 '
run 'kubectl get pods -n k8s-training -o wide'
expect_count 3 '^postgresql-sfs-[012] +1/1 +Running'
quietly 'pod_ips app=postgresql-a k8s-training'
IPS=$OUT
until_ok 30 'service_settled postgresql-svc 3 k8s-training'
run 'kubectl describe service postgresql-svc -n k8s-training'
ENDPOINTS=$(sed -n 's/^Endpoints: *//p' <<<"$OUT" | tr ',' '\n' | sed 's/:5432$//' | sort)
[ "$ENDPOINTS" = "$IPS" ] || fail "Endpoints [$ENDPOINTS], pods [$IPS]"
say "The Endpoints line changed without the Service being touched: three pods now."

run_stdin 'kubectl run -i --rm nspct --image=fischerjulian/nspct --restart=Never -n k8s-training -- bash' \
    'nslookup postgresql-svc.k8s-training.svc.cluster.local'
ANSWERS=$(sed -n 's/^Address: //p' <<<"$OUT" | sort)
[ "$ANSWERS" = "$IPS" ] || fail "nslookup answered [$ANSWERS], the pods are [$IPS]"

section "Each member by its own name"
say "A StatefulSet pod's hostname and the headless service make a stable name per member, \`<pod>.<service>.<namespace>.svc.cluster.local\`; and the database behind it is real."
run_stdin 'kubectl run -i --rm nspct --image=fischerjulian/nspct --restart=Never -n k8s-training -- bash' \
    'for i in 0 1 2; do host postgresql-sfs-$i.postgresql-svc.k8s-training.svc.cluster.local; done'
HOSTS=$OUT
for i in 0 1 2; do
    quietly "kubectl get pod postgresql-sfs-$i -n k8s-training -o jsonpath='{.status.podIP}'"
    IP=$OUT
    OUT=$HOSTS
    expect "^postgresql-sfs-$i\.postgresql-svc\.k8s-training\.svc\.cluster\.local has address ${IP//./\\.}$"
done
quietly "kubectl get pod postgresql-sfs-2 -n k8s-training -o jsonpath='{.status.podIP}'"
IP2=$OUT
run_stdin 'kubectl run -i --rm nspct --image=fischerjulian/nspct --restart=Never -n k8s-training -- bash' \
    'PGPASSWORD=training psql -h postgresql-sfs-2.postgresql-svc -U postgres -Atc "select inet_server_addr()"'
expect "^${IP2//./\\.}$"

section "Clean up"
run 'kubectl delete namespace k8s-training'
