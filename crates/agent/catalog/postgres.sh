#!/bin/sh
# Run as `sh -c` by the host catalog, and as docker-entrypoint.sh by the stand-in
# postgres image (tests/images/standins).
set -e
if [ "$#" -gt 0 ] && [ "$1" != postgres ] && [ "${1#-}" = "$1" ]; then exec "$@"; fi
[ "$1" = postgres ] && shift
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ ! -x "$BIN/postgres" ]; then
    echo "postgres: Debian's PostgreSQL server is not installed on this node (apt-get install postgresql)" >&2
    exit 1
fi
DATA=${PGDATA:-/var/lib/postgresql/data}
ROOT=$(dirname "$DATA")
mkdir -p "$ROOT"
# A host-program pod shares the node's filesystem: a tmpfs of its own keeps each
# pod's cluster apart and gone with the pod. An image container (the stand-in
# image sets STANDIN_ROOTFS) has a root filesystem of its own already.
if [ -z "${STANDIN_ROOTFS:-}" ]; then mount -t tmpfs -o mode=0755 tmpfs "$ROOT"; fi
mkdir -m 0700 "$DATA"
chown postgres:postgres "$DATA"
AUTH=trust
PWFILE=
if [ -n "$POSTGRES_PASSWORD" ]; then
    AUTH=scram-sha-256
    PWFILE="$ROOT/.pwfile"
    printf '%s\n' "$POSTGRES_PASSWORD" > "$PWFILE"
    chown postgres "$PWFILE"
fi
/usr/bin/setpriv --reuid=postgres --regid=postgres --init-groups -- "$BIN/initdb" -D "$DATA" \
    -U "${POSTGRES_USER:-postgres}" --auth-local=trust --auth-host="$AUTH" \
    ${PWFILE:+--pwfile="$PWFILE"} >/dev/null
rm -f "$PWFILE"
echo "host all all 0.0.0.0/0 $AUTH" >> "$DATA/pg_hba.conf"
echo "host all all ::/0 $AUTH" >> "$DATA/pg_hba.conf"
echo "PostgreSQL init process complete; ready for start up."
exec /usr/bin/setpriv --reuid=postgres --regid=postgres --init-groups -- "$BIN/postgres" -D "$DATA" \
    -c listen_addresses='*' -c unix_socket_directories="$DATA" "$@"
