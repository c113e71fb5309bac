# Shared by the walkthroughs: each one is a seed document from ../shared/seeds turned
# into commands that run against a live skiff cluster, checked as they go, and written
# out as a Markdown transcript (prose, each command as typed, its real output).
#
# Environment:
#   KUBECONFIG      the cluster (required; copied, so `kubectl config` edits stay local)
#   OUTSIDE_NETNS   a network namespace acting as another machine on the node's network
#                   (the e2e harness makes one); unset: "outside" commands run right here
#   WALKTHROUGH_OUT where the transcript goes (default: standard output)
#
# A walkthrough calls `title`, `say` and `run`/`run_fails`/`outside`, then checks
# `$OUT` with `expect*`. The first failed check stops it with a message on stderr.

set -euo pipefail
shopt -s expand_aliases

: "${KUBECONFIG:?set KUBECONFIG to the admin kubeconfig of the cluster}"
WT_DIR=$(mktemp -d /tmp/skiff-walkthrough.XXXXXX)
cp "$KUBECONFIG" "$WT_DIR/kubeconfig"
export KUBECONFIG="$WT_DIR/kubeconfig"
cd "$WT_DIR"
trap 'rm -rf "$WT_DIR"' EXIT
if [ -n "${WALKTHROUGH_OUT:-}" ]; then exec 3>"$WALKTHROUGH_OUT"; else exec 3>&1; fi

# Seeds write `k` for kubectl.
k() { kubectl "$@"; }
export -f k

OUT=""
STEP=""

title() { printf '## %s\n' "$*" >&3; }
section() {
    STEP="$*"
    printf '\n### %s\n' "$*" >&3
}
# Prose for the reader; one paragraph per call.
say() { printf '\n%s\n' "$*" >&3; }

fail() {
    printf 'walkthrough failed in "%s": %s\n--- last output ---\n%s\n' "$STEP" "$*" "$OUT" >&2
    exit 1
}

_show() { # prompt, command, output
    {
        printf '\n```console\n%s %s\n' "$1" "$2"
        [ -n "$3" ] && printf '%s\n' "$3"
        printf '```\n'
    } >&3
}

# run 'CMD': runs CMD with bash exactly as written (pipes and all) and shows it with
# its output (stdout and stderr, as a terminal shows them); CMD must succeed.
run() {
    local rc=0
    OUT=$(bash -c "$1" 2>&1) || rc=$?
    _show '$' "$1" "$OUT"
    [ "$rc" -eq 0 ] || fail "\`$1\` exited with $rc"
}

# run_fails 'CMD': as run, for a command the walkthrough expects to be refused.
run_fails() {
    local rc=0
    OUT=$(bash -c "$1" 2>&1) || rc=$?
    _show '$' "$1" "$OUT"
    [ "$rc" -ne 0 ] || fail "\`$1\` succeeded but should have failed"
}

# run_stdin 'CMD' 'INPUT': CMD with INPUT typed on its standard input.
run_stdin() {
    local rc=0
    # A container with a terminal colours its output and echoes what is typed; the
    # transcript keeps the text, without the control codes or the echoed input.
    OUT=$(printf '%s\n' "$2" | bash -c "$1" 2>&1 | sed 's/\x1b\[[?0-9;]*[a-zA-Z]//g; s/\r$//') || rc=$?
    OUT=$(grep -vxF -- "$2" <<<"$OUT" || true)
    {
        printf '\n```console\n$ %s\n' "$1"
        printf '%s\n' "$2" | sed 's/^/> /'
        [ -n "$OUT" ] && printf '%s\n' "$OUT"
        printf '```\n'
    } >&3
    [ "$rc" -eq 0 ] || fail "\`$1\` exited with $rc"
    # `kubectl run --rm` deletes its pod when the session ends, and says so.
    case "$1" in
    *"kubectl run "*--rm*) grep -q '^pod ".*" deleted$' <<<"$OUT" || fail "the --rm pod was not deleted" ;;
    esac
}

# outside 'CMD': CMD on another machine on the node's network (the harness's namespace).
outside() {
    local rc=0
    if [ -n "${OUTSIDE_NETNS:-}" ]; then
        OUT=$(ip netns exec "$OUTSIDE_NETNS" bash -c "$1" 2>&1) || rc=$?
    else
        OUT=$(bash -c "$1" 2>&1) || rc=$?
    fi
    _show 'outside$' "$1" "$OUT"
    [ "$rc" -eq 0 ] || fail "\`$1\` (outside) exited with $rc"
}

# quietly 'CMD': CMD's output in $OUT, not shown (for values the next commands use).
quietly() {
    OUT=$(bash -c "$1" 2>&1) || fail "\`$1\` failed"
}

# until_ok SECONDS 'CMD': retries CMD quietly until it succeeds (for things that
# settle, like a pod's endpoint reaching the proxy); fails after SECONDS.
until_ok() {
    local deadline=$((SECONDS + $1))
    until OUT=$(bash -c "$2" 2>&1); do
        [ "$SECONDS" -lt "$deadline" ] || fail "\`$2\` still failing after $1 s"
        sleep 0.5
    done
}

# show FILE: a manifest as the reader would write it.
show_file() {
    {
        printf '\n`%s`:\n\n```yaml\n' "$1"
        cat "$1"
        printf '```\n'
    } >&3
}

expect() { # REGEX: $OUT has a line matching REGEX (extended)
    grep -Eq -- "$1" <<<"$OUT" || fail "expected a line matching /$1/"
}
expect_not() {
    ! grep -Eq -- "$1" <<<"$OUT" || fail "expected no line matching /$1/"
}
expect_count() { # N REGEX: exactly N lines match
    local n
    n=$(grep -Ec -- "$2" <<<"$OUT" || true)
    [ "$n" -eq "$1" ] || fail "expected $1 lines matching /$2/, got $n"
}
expect_distinct_at_least() { # N: $OUT has at least N distinct non-empty lines
    local n
    n=$(grep -v '^$' <<<"$OUT" | sort -u | wc -l)
    [ "$n" -ge "$1" ] || fail "expected at least $1 distinct lines, got $n"
}
expect_distinct_exactly() { # N
    local n
    n=$(grep -v '^$' <<<"$OUT" | sort -u | wc -l)
    [ "$n" -eq "$1" ] || fail "expected exactly $1 distinct lines, got $n"
}

# The IPs of the pods matching a label selector, sorted, one per line.
pod_ips() { # SELECTOR [NAMESPACE]
    kubectl get pods -l "$1" -n "${2:-default}" \
        -o jsonpath='{range .items[*]}{.status.podIP}{"\n"}{end}' | sort
}

# Every pod matching a label selector accepts TCP connections on PORT, tried from
# the node. Ready without a readiness probe means started, not yet listening: a
# server takes a moment more (until_ok 30 'listening app=web 80').
listening() { # SELECTOR PORT [NAMESPACE]
    local ips ip
    ips=$(pod_ips "$1" "${3:-default}")
    [ -n "$ips" ] || return 1
    for ip in $ips; do
        timeout 2 bash -c "exec 3<>/dev/tcp/$ip/$2" 2>/dev/null || return 1
    done
}

# The node's address on its network (what NodePorts listen on).
node_ip() {
    kubectl get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}'
}
# The ready endpoint addresses of a service's EndpointSlices, sorted, one per line
# (what `kubectl describe service`, the proxy and DNS read).
slice_ips() { # SERVICE [NAMESPACE]
    kubectl get endpointslices -n "${2:-default}" -l "kubernetes.io/service-name=$1" \
        -o jsonpath='{range .items[*].endpoints[?(@.conditions.ready==true)]}{.addresses[0]}{"\n"}{end}' | sort
}

# Whether a service's Endpoints and its EndpointSlices both list exactly N ready
# addresses: two controllers write them, so one may be a moment behind the other.
service_settled() { # SERVICE N [NAMESPACE]
    [ "$(kubectl get endpoints "$1" -n "${3:-default}" -o jsonpath='{.subsets[0].addresses[*].ip}' | wc -w)" = "$2" ] &&
        [ "$(slice_ips "$1" "${3:-default}" | wc -w)" = "$2" ]
}
export -f pod_ips node_ip slice_ips service_settled listening
